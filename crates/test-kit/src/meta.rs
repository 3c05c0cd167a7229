//! Meta's webhook secrets as a channel's config names them, and the signature Meta puts on a
//! webhook, computed here independently of deskgate.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Writes `app_secret` and `verify_token` into files in `dir` (created if missing) and returns
/// the channel's `meta = { ... }` line naming them.
pub fn write_secrets(dir: &Path, app_secret: &str, verify_token: &str) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    let secret = dir.join("app_secret");
    let token = dir.join("verify_token");
    std::fs::write(&secret, app_secret)?;
    std::fs::write(&token, verify_token)?;
    Ok(format!(
        "meta = {{ app_secret_file = \"{}\", verify_token_file = \"{}\" }}",
        secret.display(),
        token.display()
    ))
}

/// `sha256=<hex HMAC-SHA256>` of `body` with `secret`, as Meta signs webhooks in
/// `X-Hub-Signature-256` (and as deskgate's chat channel is configured to require).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
