//! One IMAP connection: TCP, TLS (implicit or STARTTLS, verified against the web PKI roots),
//! the greeting and the login, each step under the command timeout.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_imap::error::Error as ImapError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::imap::{ImapConfig, TlsMode};

/// The byte stream under a session: plain TCP or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}

pub type Session = async_imap::Session<Box<dyn Io>>;

/// Why a mailbox task lost its connection or could not make progress.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// The server refused the login: retried slowly, reported as `auth_failed`.
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("the password cannot be read: {0}")]
    Password(String),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{what}: {source}")]
    Imap {
        what: &'static str,
        source: ImapError,
    },
    #[error("the server's answer makes no sense: {0}")]
    Protocol(String),
    #[error("journal: {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("state: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("blob store: {0}")]
    Blobs(std::io::Error),
}

impl MailboxError {
    /// A short label for metrics and the readiness report.
    pub fn kind(&self) -> &'static str {
        match self {
            MailboxError::Auth(_) => "auth",
            MailboxError::Password(_) => "password_file",
            MailboxError::Timeout(_) => "timeout",
            MailboxError::Connect(_) => "connect",
            MailboxError::Tls(_) => "tls",
            MailboxError::Imap { .. } => "imap",
            MailboxError::Protocol(_) => "protocol",
            MailboxError::Journal(_) => "journal",
            MailboxError::Store(_) => "state",
            MailboxError::Blobs(_) => "blobs",
        }
    }

    /// Errors a retry soon will not fix.
    pub fn is_slow_retry(&self) -> bool {
        matches!(self, MailboxError::Auth(_) | MailboxError::Password(_))
    }
}

/// Runs one IMAP step under the command timeout, naming it in the error.
pub async fn timed<T>(
    limit: Duration,
    what: &'static str,
    step: impl Future<Output = Result<T, ImapError>>,
) -> Result<T, MailboxError> {
    match tokio::time::timeout(limit, step).await {
        Err(_) => Err(MailboxError::Timeout(what)),
        Ok(Err(source)) => Err(MailboxError::Imap { what, source }),
        Ok(Ok(value)) => Ok(value),
    }
}

/// Connects, upgrades to TLS as configured, and logs in.
pub async fn open(config: &ImapConfig) -> Result<Session, MailboxError> {
    let limit = config.command_timeout();
    let password = config.password().map_err(MailboxError::Password)?;
    let address = (config.host.as_str(), config.port());
    let tcp = tokio::time::timeout(limit, TcpStream::connect(address))
        .await
        .map_err(|_| MailboxError::Timeout("connect"))?
        .map_err(MailboxError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let client = match config.tls {
        TlsMode::Plain => greeted(Box::new(tcp) as Box<dyn Io>, limit).await?,
        TlsMode::Implicit => {
            let tls = tls_wrap(tcp, config, limit).await?;
            greeted(Box::new(tls) as Box<dyn Io>, limit).await?
        }
        TlsMode::Starttls => {
            let mut client = greeted(tcp, limit).await?;
            timed(
                limit,
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let tls = tls_wrap(client.into_inner(), config, limit).await?;
            // No greeting follows STARTTLS.
            async_imap::Client::new(Box::new(tls) as Box<dyn Io>)
        }
    };
    match tokio::time::timeout(limit, client.login(&config.user, &password)).await {
        Err(_) => Err(MailboxError::Timeout("LOGIN")),
        Ok(Ok(session)) => Ok(session),
        Ok(Err((ImapError::No(reason), _))) => Err(login_refused(reason)),
        Ok(Err((source, _))) => Err(MailboxError::Imap {
            what: "LOGIN",
            source,
        }),
    }
}

/// Why the server answered NO to LOGIN. Response codes (RFC 5530) tell a temporary failure
/// (`[UNAVAILABLE]`: Dovecot's auth process is down or restarting) from refused credentials:
/// only refused credentials wait the slow `auth_retry_secs`; a temporary failure is retried
/// at the normal backoff, or a restart of the IMAP server would stop the mail for minutes.
fn login_refused(reason: String) -> MailboxError {
    // async-imap passes the response on as text (`code: None, info: Some("[UNAVAILABLE] …")`):
    // the code is found in it.
    let upper = reason.to_ascii_uppercase();
    let temporary = ["[UNAVAILABLE]", "[INUSE]", "[SERVERBUG]", "[LIMIT]"]
        .iter()
        .any(|code| upper.contains(code));
    if temporary {
        MailboxError::Imap {
            what: "LOGIN",
            source: ImapError::No(reason),
        }
    } else {
        MailboxError::Auth(reason)
    }
}

async fn greeted<T: Io>(stream: T, limit: Duration) -> Result<async_imap::Client<T>, MailboxError> {
    let mut client = async_imap::Client::new(stream);
    match tokio::time::timeout(limit, client.read_response()).await {
        Err(_) => Err(MailboxError::Timeout("greeting")),
        Ok(Err(error)) => Err(MailboxError::Connect(error)),
        Ok(Ok(None)) => Err(MailboxError::Protocol(
            "the server closed the connection before its greeting".into(),
        )),
        Ok(Ok(Some(_))) => Ok(client),
    }
}

async fn tls_wrap(
    tcp: TcpStream,
    config: &ImapConfig,
    limit: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, MailboxError> {
    let host = &config.host;
    let name = ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_owned())
        .map_err(|e| MailboxError::Tls(format!("{host:?} is not a valid server name: {e}")))?;
    let tls = if config.ca_file.is_some() {
        tls_config(config.extra_roots().map_err(MailboxError::Tls)?)
    } else {
        public_tls_config()
    };
    tokio::time::timeout(limit, TlsConnector::from(tls).connect(name, tcp))
        .await
        .map_err(|_| MailboxError::Timeout("TLS handshake"))?
        .map_err(|e| MailboxError::Tls(e.to_string()))
}

/// The client config of mailboxes without `ca_file`, built once.
fn public_tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| tls_config(Vec::new())).clone()
}

/// Trusts the Mozilla roots that webpki-roots carries, plus `extra` CA certificates.
fn tls_config(extra: Vec<CertificateDer<'static>>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // A certificate that is not a usable CA cannot verify anything: skipping it is safe, and
    // the handshake then names the failure.
    roots.add_parsable_certificates(extra);
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // The ring provider supports the safe default versions: this cannot fail.
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_login_failure_is_retried_soon_and_refused_credentials_slowly() {
        let temporary = [
            // As async-imap reports Dovecot's answer while its auth process is down.
            r#"code: None, info: Some("[UNAVAILABLE] Temporary authentication failure. [vm:2026-12-01 21:52:45]")"#,
            "[UNAVAILABLE] Temporary authentication failure. [host:2026-11-23 10:00:00]",
            "[unavailable] try later",
            "[INUSE] mailbox locked",
            "[SERVERBUG] internal error",
        ];
        for reason in temporary {
            let error = login_refused(reason.to_owned());
            assert!(!error.is_slow_retry(), "{reason}: {error}");
            assert_eq!(error.kind(), "imap");
        }
        let refused = [
            r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#,
            "[AUTHENTICATIONFAILED] Authentication failed.",
            "[AUTHORIZATIONFAILED] not allowed",
            "LOGIN failed",
            "",
        ];
        for reason in refused {
            let error = login_refused(reason.to_owned());
            assert!(error.is_slow_retry(), "{reason:?}: {error}");
            assert_eq!(error.kind(), "auth");
        }
    }
}
