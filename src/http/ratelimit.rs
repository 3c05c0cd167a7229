//! Who a request comes from, for per-client rate limits: the peer, or the client a trusted
//! reverse proxy names in `X-Forwarded-For`. The limits themselves are
//! [`crate::ratelimit`]'s.

use std::net::IpAddr;

/// The client a request comes from: the peer, unless the peer is a trusted proxy, in which case
/// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy. A client can put
/// anything in the header, so entries left of the first untrusted one are never believed.
pub fn client_addr(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(addr) if trusted.contains(&addr) => continue,
            Ok(addr) => return addr,
            // Garbage from a proxy we trust: fall back to the proxy itself.
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod client_addr_tests {
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let inner: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = [proxy, inner];
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        // An untrusted peer's header is ignored.
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_addr(stranger, &headers(&["203.0.113.7"]), &trusted),
            stranger
        );
        // Through two trusted proxies, the first untrusted address from the right.
        let spoofed = headers(&["6.6.6.6, 203.0.113.7", "10.0.0.2"]);
        assert_eq!(client_addr(proxy, &spoofed, &trusted), client);
        // No header, or garbage: the proxy itself.
        assert_eq!(client_addr(proxy, &headers(&[]), &trusted), proxy);
        assert_eq!(
            client_addr(proxy, &headers(&["not-an-ip"]), &trusted),
            proxy
        );
    }
}
