//! Mail out over SMTP with lettre: one pooled transport per team mailbox.
//!
//! lettre's own timeout covers only the connect, so every send runs under the mailbox's
//! `send_timeout_secs`; a pooled connection the server has closed fails its first command, so
//! a connection-level failure is retried once at once before it counts as an attempt.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::sender::Failure;
use super::EmailPayload;
use crate::config::outbound::{MailboxConfig, SmtpTls};
use crate::store::Blobs;

struct Transport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

/// Transports by mailbox name.
pub struct Smtp {
    transports: BTreeMap<String, Transport>,
    blobs: Blobs,
}

impl Smtp {
    /// Builds every mailbox's transport (reading password files now, so a missing one stops
    /// start-up rather than the first send).
    pub fn new(mailboxes: &BTreeMap<String, MailboxConfig>, blobs: Blobs) -> Result<Smtp, String> {
        let mut transports = BTreeMap::new();
        for (name, mailbox) in mailboxes {
            let smtp = &mailbox.smtp;
            let path = format!("outbound.mailboxes.{name}.smtp");
            let builder = match smtp.tls {
                SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
                SmtpTls::Starttls => {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                }
                SmtpTls::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                    &smtp.host,
                )),
            }
            .map_err(|e| format!("{path}: {e}"))?;
            let mut builder = builder
                .port(smtp.port())
                .timeout(Some(Duration::from_secs(smtp.send_timeout_secs)))
                .pool_config(PoolConfig::new().max_size(smtp.pool_max));
            if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
                let password = crate::config::read_secret_file(file)
                    .map_err(|e| format!("{path}.password_file: {e}"))?;
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.trim_end_matches(['\r', '\n']).to_owned(),
                ));
            }
            let transport = Transport {
                transport: builder.build(),
                timeout: Duration::from_secs(smtp.send_timeout_secs),
            };
            transports.insert(name.clone(), transport);
        }
        Ok(Smtp { transports, blobs })
    }

    /// Sends one mail; the provider id is the server's acceptance line (it names its queue id).
    pub async fn send(&self, mail: &EmailPayload) -> Result<String, Failure> {
        let transport = self.transports.get(&mail.mailbox).ok_or_else(|| {
            Failure::Permanent(format!("no SMTP transport for mailbox {:?}", mail.mailbox))
        })?;
        let message = build(mail, &self.blobs).map_err(Failure::Permanent)?;
        let mut stale_retry = true;
        loop {
            let sent =
                tokio::time::timeout(transport.timeout, transport.transport.send(message.clone()))
                    .await;
            return match sent {
                Err(_) => Err(Failure::Transient(format!(
                    "SMTP send did not finish within {}s",
                    transport.timeout.as_secs()
                ))),
                Ok(Ok(response)) => Ok(response.message().collect::<Vec<_>>().join(" ")),
                Ok(Err(error)) if error.is_permanent() => Err(Failure::Refused {
                    recipient_unknown: recipient_unknown(&error),
                    error: format!("SMTP server refused the mail: {error}"),
                }),
                Ok(Err(error)) if error.is_transient() => Err(Failure::Transient(format!(
                    "SMTP server deferred the mail: {error}"
                ))),
                Ok(Err(error)) if stale_retry && !error.is_timeout() => {
                    // Possibly a pooled connection the server closed: one immediate retry.
                    stale_retry = false;
                    tracing::debug!(%error, "SMTP send failed; retrying once on a new connection");
                    continue;
                }
                Ok(Err(error)) => Err(Failure::Transient(format!("SMTP: {error}"))),
            };
        }
    }
}

/// Whether a permanent refusal says the mailbox does not exist: 550/551/553 with an enhanced
/// status 5.1.x (bad destination mailbox or address).
fn recipient_unknown(error: &lettre::transport::smtp::Error) -> bool {
    let code = error.status().map(|c| c.to_string()).unwrap_or_default();
    let text = error.to_string();
    matches!(code.as_str(), "550" | "551" | "553") && text.contains(" 5.1.")
}

fn raw(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_owned())
}

/// The RFC 5322 message for a payload.
pub fn build(mail: &EmailPayload, blobs: &Blobs) -> Result<Message, String> {
    let from = Mailbox::new(
        Some(mail.from_name.clone()),
        mail.from_address
            .parse()
            .map_err(|e| format!("from address: {e}"))?,
    );
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| format!("recipient {:?}: {e}", mail.to))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(crate::message_id::bracketed(&mail.message_id)));
    // lettre replaces these headers on each call: pass the whole list at once.
    if let Some(parent) = &mail.in_reply_to {
        builder = builder.in_reply_to(crate::message_id::bracketed(parent));
    }
    if !mail.references.is_empty() {
        let refs = mail
            .references
            .iter()
            .map(|r| crate::message_id::bracketed(r))
            .collect::<Vec<_>>();
        builder = builder.references(refs.join(" "));
    }
    if let Some(reply_to) = &mail.reply_to {
        let reply_to: Mailbox = reply_to
            .parse()
            .map_err(|e| format!("reply-to address {reply_to:?}: {e}"))?;
        builder = builder.reply_to(reply_to);
    }
    if let Some(auto) = &mail.auto_submitted {
        builder = builder
            .raw_header(raw("Auto-Submitted", auto))
            .raw_header(raw("X-Auto-Response-Suppress", "All"))
            .raw_header(raw("Precedence", "auto_reply"));
    }
    let text = SinglePart::plain(mail.text.clone());
    let body = match &mail.html {
        Some(html) => MultiPart::alternative()
            .singlepart(text)
            .singlepart(SinglePart::html(html.clone())),
        None if mail.attachments.is_empty() => {
            return builder.singlepart(text).map_err(|e| e.to_string())
        }
        None => MultiPart::mixed().singlepart(text),
    };
    if mail.attachments.is_empty() {
        return builder.multipart(body).map_err(|e| e.to_string());
    }
    let mut mixed = MultiPart::mixed().multipart(body);
    for attachment in &mail.attachments {
        let content = blobs
            .get(&attachment.id)
            .map_err(|e| format!("attachment {}: {e}", attachment.id))?
            .ok_or_else(|| format!("attachment {}: no such blob", attachment.id))?;
        let content_type = attachment
            .content_type
            .parse()
            .map_err(|_| format!("attachment {}: bad content type", attachment.id))?;
        let name = attachment
            .name
            .clone()
            .unwrap_or_else(|| "attachment".to_owned());
        mixed = mixed.singlepart(Attachment::new(name).body(content, content_type));
    }
    builder.multipart(mixed).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Attachment as AttachmentMeta;
    use mail_parser::MimeHeaders;

    #[test]
    fn a_mail_carries_its_alternatives_attachments_and_thread() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let blob = blobs.put(b"%PDF-1.4 invoice").unwrap();
        let mail = EmailPayload {
            mailbox: "support".into(),
            from_name: "Ana from Acme".into(),
            from_address: "help@acme.test".into(),
            to: "bo@example.com".into(),
            subject: "Re: invoice".into(),
            text: "Attached.".into(),
            html: Some("<p>Attached.</p>".into()),
            message_id: "deskgate.c1.3@acme.test".into(),
            in_reply_to: Some("x@y".into()),
            references: vec!["a@b".into(), "<x@y>".into()],
            reply_to: None,
            auto_submitted: None,
            attachments: vec![AttachmentMeta {
                id: blob,
                name: Some("invoice.pdf".into()),
                content_type: "application/pdf".into(),
                size: 16,
            }],
        };
        let raw = build(&mail, &blobs).unwrap().formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.message_id(), Some("deskgate.c1.3@acme.test"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("x@y"));
        let refs = parsed.references().as_text_list().unwrap();
        assert_eq!(refs, ["a@b", "x@y"]);
        assert_eq!(parsed.body_text(0).unwrap().trim(), "Attached.");
        assert!(parsed.body_html(0).unwrap().contains("<p>Attached.</p>"));
        let attachment = parsed.attachments().next().unwrap();
        assert_eq!(attachment.attachment_name(), Some("invoice.pdf"));
        assert_eq!(attachment.contents(), b"%PDF-1.4 invoice");
        assert!(parsed.header_raw("Auto-Submitted").is_none());
    }
}
