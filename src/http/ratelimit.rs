//! Rate limits on public endpoints (website chat and web forms), per channel and client
//! address, with governor.
//!
//! Meta channels are never limited: their traffic is signed, and a 429 would only make Meta
//! retry or unsubscribe. Keyed limiters never forget a key by themselves, so a timer prunes
//! addresses whose quota has fully replenished.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::config::{ChannelConfig, ChannelKind, RateLimitConfig};

/// One keyed limiter per rate-limited channel.
#[derive(Clone, Default)]
pub struct RateLimits {
    limiters: Arc<HashMap<String, DefaultKeyedRateLimiter<IpAddr>>>,
}

impl RateLimits {
    /// Limiters for every chat and form channel.
    pub fn new<'a>(channels: impl IntoIterator<Item = (&'a String, &'a ChannelConfig)>) -> Self {
        let limiters = channels
            .into_iter()
            .filter_map(|(id, channel)| {
                let limits = match channel.kind {
                    ChannelKind::Chat => channel.chat.as_ref().map(|c| c.rate_limit),
                    ChannelKind::Form => channel.form.as_ref().map(|f| f.rate_limit),
                    _ => return None,
                };
                let quota = quota(limits.unwrap_or_default())?;
                Some((id.clone(), DefaultKeyedRateLimiter::keyed(quota)))
            })
            .collect();
        RateLimits {
            limiters: Arc::new(limiters),
        }
    }

    /// Admits one request from `client` on `channel`, or says when to retry.
    pub fn check(&self, channel: &str, client: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = self.limiters.get(channel) else {
            return Ok(());
        };
        limiter.check_key(&client).map_err(|not_until| {
            // The limiter's own clock: instants of different clocks do not compare.
            let wait = not_until.wait_time_from(limiter.clock().now());
            metrics::counter!("deskgate_rate_limited_total", "channel" => channel.to_owned())
                .increment(1);
            ApiError::TooManyRequests {
                retry_after_secs: retry_after_secs(wait),
            }
        })
    }

    /// Prunes idle keys every `every` until `shutdown`.
    pub async fn housekeeping(self, every: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            for limiter in self.limiters.values() {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

fn quota(limits: RateLimitConfig) -> Option<Quota> {
    let per_minute = NonZeroU32::new(limits.per_minute)?;
    let burst = NonZeroU32::new(limits.burst)?;
    Some(Quota::per_minute(per_minute).allow_burst(burst))
}

/// Whole seconds, rounded up, at least one.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn a_burst_is_admitted_then_refused_per_address_and_channel() {
        let config = crate::config::Config::parse(
            r#"
            [channels.chat]
            kind = "chat"
            chat.rate_limit = { per_minute = 1, burst = 2 }
            [channels.api]
            kind = "api"
            "#,
        )
        .unwrap();
        let limits = RateLimits::new(&config.channels);
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limits.check("chat", one).is_ok());
        assert!(limits.check("chat", one).is_ok());
        let Err(ApiError::TooManyRequests { retry_after_secs }) = limits.check("chat", one) else {
            panic!("the third request is over the burst");
        };
        assert!((1..=60).contains(&retry_after_secs), "{retry_after_secs}");
        assert!(
            limits.check("chat", two).is_ok(),
            "another address has its own quota"
        );
        for _ in 0..10 {
            assert!(
                limits.check("api", one).is_ok(),
                "API channels are not limited"
            );
        }
    }
}

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
