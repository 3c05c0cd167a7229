//! `[channels.<id>.meta]`: a Messenger or WhatsApp Cloud API channel's secrets.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::secret::{read_secret, SecretCell};
use super::ConfigProblem;

/// Meta webhook settings. Both secrets come from files (for example under
/// `$CREDENTIALS_DIRECTORY`), never inline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// The app secret that signs every POST (`X-Hub-Signature-256`).
    pub app_secret_file: PathBuf,
    /// The verify token Meta sends in the subscription handshake (`hub.verify_token`).
    pub verify_token_file: PathBuf,
    #[serde(skip)]
    app_secret: SecretCell,
    #[serde(skip)]
    verify_token: SecretCell,
}

impl MetaConfig {
    pub fn app_secret(&self) -> Result<Arc<[u8]>, String> {
        self.app_secret.get(&self.app_secret_file)
    }

    pub fn verify_token(&self) -> Result<Arc<[u8]>, String> {
        self.verify_token.get(&self.verify_token_file)
    }

    /// Every problem, with `path` as the table's dotted path.
    pub fn validate(&self, path: &str) -> Vec<ConfigProblem> {
        [
            ("app_secret_file", &self.app_secret_file),
            ("verify_token_file", &self.verify_token_file),
        ]
        .into_iter()
        .filter_map(|(field, file)| {
            read_secret(file).err().map(|message| ConfigProblem {
                path: format!("{path}.{field}"),
                message,
            })
        })
        .collect()
    }
}
