//! HMAC-SHA256 request signatures (`sha256=<hex>`), checked over the raw body in constant time.
//!
//! Meta signs every webhook POST with the app secret in `X-Hub-Signature-256`; chat and form
//! channels with a configured shared secret use the same scheme in `X-Deskgate-Signature`.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::channels::ChannelError;

/// Meta's signature header.
pub const META_HEADER: &str = "x-hub-signature-256";
/// The header chat and form channels read when they have a shared secret.
pub const DESKGATE_HEADER: &str = "x-deskgate-signature";

/// `sha256=<lower-case hex>` of `body` with `secret`, as a sender would compute it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks the signature in `header` over the raw `body`. Missing, malformed or wrong: an
/// `Unauthorized` error that says which, without revealing the expected value.
pub fn verify(
    headers: &HeaderMap,
    header: &str,
    secret: &[u8],
    body: &[u8],
) -> Result<(), ChannelError> {
    let value = headers
        .get(header)
        .ok_or_else(|| ChannelError::Unauthorized(format!("missing {header} header")))?;
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .and_then(|hex_digest| hex::decode(hex_digest.trim()).ok())
        .ok_or_else(|| {
            ChannelError::Unauthorized(format!("{header} must be sha256=<hex digest>"))
        })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    // Length differences are not secret; the comparison of equal lengths is constant-time.
    if given.len() == expected.len() && bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(ChannelError::Unauthorized(format!(
            "{header} does not match the body"
        )))
    }
}

/// Whether `given` equals `expected`, in time independent of where they differ.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(META_HEADER, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let body = br#"{"object":"page","entry":[]}"#;
        let signature = sign(b"app-secret", body);
        assert!(verify(&headers(&signature), META_HEADER, b"app-secret", body).is_ok());
    }

    #[test]
    fn wrong_missing_or_malformed_signatures_are_refused() {
        let body = b"{}";
        let other = sign(b"another-secret", body);
        for value in [other.as_str(), "sha256=zz", "md5=abc", "sha256=00"] {
            assert!(matches!(
                verify(&headers(value), META_HEADER, b"app-secret", body),
                Err(ChannelError::Unauthorized(_))
            ));
        }
        assert!(verify(&HeaderMap::new(), META_HEADER, b"app-secret", body).is_err());
        // A changed body no longer matches.
        let signature = sign(b"app-secret", body);
        assert!(verify(&headers(&signature), META_HEADER, b"app-secret", b"{ }").is_err());
    }
}
