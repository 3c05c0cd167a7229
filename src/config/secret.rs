//! Secrets named by file in the config (never inline): one reader for every secret file, and
//! a cell for the channel secrets that are read once, on first use, and kept.
//!
//! Every secret path may start with `$CREDENTIALS_DIRECTORY/`: under systemd the files that the
//! unit's `LoadCredential=` names are there, readable by the service alone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Where a secret file really is: a path starting with `$CREDENTIALS_DIRECTORY/` is under the
/// directory systemd's `LoadCredential=` fills.
pub fn secret_path(path: &Path) -> PathBuf {
    match path.strip_prefix("$CREDENTIALS_DIRECTORY") {
        Ok(rest) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => PathBuf::from(dir).join(rest),
            None => path.to_owned(),
        },
        Err(_) => path.to_owned(),
    }
}

/// Reads a secret file named in the config, as it is (callers trim what their secret allows).
/// The error names the file, never the content.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let real = secret_path(path);
    std::fs::read_to_string(&real)
        .map_err(|e| format!("cannot read secret file {}: {e}", real.display()))
}

/// A secret read from a file on first use. Cloning shares the cached value; `Debug` never
/// shows it.
#[derive(Clone, Default)]
pub struct SecretCell(Arc<OnceLock<Arc<[u8]>>>);

impl fmt::Debug for SecretCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCell(..)")
    }
}

/// The cell only caches the content of the file named beside it in the config: two configs
/// are the same when they name the same files, whatever either has read so far.
impl PartialEq for SecretCell {
    fn eq(&self, _: &SecretCell) -> bool {
        true
    }
}

impl SecretCell {
    /// The secret in `path` (surrounding whitespace ignored), read once.
    pub fn get(&self, path: &Path) -> Result<Arc<[u8]>, String> {
        if let Some(secret) = self.0.get() {
            return Ok(Arc::clone(secret));
        }
        let secret: Arc<[u8]> = read_secret(path)?.into();
        // Another request may have won the race; both read the same file.
        Ok(Arc::clone(self.0.get_or_init(|| secret)))
    }
}

/// Reads a secret file; the problem names the file.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = read_secret_file(path)?;
    let secret = text.trim();
    if secret.len() < 8 {
        return Err(format!(
            "the secret in {} must be at least 8 characters",
            path.display()
        ));
    }
    Ok(secret.as_bytes().to_vec())
}
