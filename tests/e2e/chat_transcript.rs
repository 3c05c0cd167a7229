//! Chat transcripts by mail, through the real binary and the real SMTP server (aiosmtpd): a
//! visitor who gave an email address gets one mail when their conversation closes (closed
//! through the control API, or with its ticket), from the channel's transcript address, with
//! every visitor message and agent chat reply in order; a French channel writes it in French;
//! no email means no mail; closing twice, reopening without news and a kill -9 right after the
//! close still send one; erasing the visitor's contact drops what was kept for the transcript;
//! check-config names a bad transcript table by its path.

use std::time::Duration;

use crate::outbound_support::{control_post, control_toml, header, of_type, text_body, TOKEN};
use serde_json::{json, Value};
use test_kit::smtpd::Smtpd;
use test_kit::{eventually, free_port, Daemon};

const WAIT: Duration = Duration::from_secs(30);

/// Chat channels `web` (English, transcripts), `web_fr` (French, transcripts, a pipeline whose
/// `closed` status closes conversations) and `plain` (no transcripts), one mailbox.
fn config(dir: &std::path::Path, smtp_port: u16) -> String {
    format!(
        r#"{control}
[channels.web]
kind = "chat"
[channels.web.chat.transcript]
from = "chat@acme.test"
from_name = "Acme Chat"
mailbox = "support"
max_messages = 3

[channels.web_fr]
kind = "chat"
language = "fr"
[channels.web_fr.chat.transcript]
from = "discussion@acme.test"
mailbox = "support"
[channels.web_fr.chat.hours]
time_zone = "Europe/Paris"
open = [{{ days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], from = "00:00", to = "24:00" }}]
[channels.web_fr.tickets]
pipeline = "support"

[channels.plain]
kind = "chat"

[routing.pipelines.support]
label = "Support"
statuses = [
  {{ id = "new", label = "New", open = true }},
  {{ id = "waiting_on_contact", label = "Waiting on contact", open = true }},
  {{ id = "waiting_on_us", label = "Waiting on us", open = true }},
  {{ id = "closed", label = "Closed", open = false }},
]

[outbound]
retry_base_ms = 100
retry_max_secs = 1
chat_channels = ["web", "web_fr", "plain"]

[outbound.mailboxes.support]
address = "support@acme.test"
company_name = "Acme"
channels = ["api"]
[outbound.mailboxes.support.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "plain"
"#,
        control = control_toml(dir)
    )
}

struct Desk {
    _dir: tempfile::TempDir,
    smtpd: Smtpd,
    daemon: Daemon,
    client: reqwest::Client,
}

async fn start() -> Desk {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let daemon = Daemon::start(dir.path(), &config(dir.path(), smtpd.port)).await;
    Desk {
        _dir: dir,
        smtpd,
        daemon,
        client: reqwest::Client::new(),
    }
}

impl Desk {
    /// A visitor's chat message; `who` adds `name` and `email` to the payload.
    async fn visitor_says(&self, channel: &str, visitor: &str, id: &str, text: &str, who: Value) {
        let mut body = json!({ "visitor_token": visitor, "message_id": id, "text": text });
        body.as_object_mut()
            .unwrap()
            .extend(who.as_object().unwrap().clone());
        let url = self.daemon.url(&format!("/hooks/{channel}"));
        let response = self.client.post(url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
    }

    /// The conversation and ticket of a visitor, once the processor has threaded them.
    async fn conversation_of(&self, visitor: &str) -> (String, String) {
        let created = self
            .poll("the visitor's ticket", |events| {
                let found = of_type(events, "deskgate.ticket.created")
                    .into_iter()
                    .filter(|e| e["data"]["conversation"]["thread_id"] == visitor);
                found.cloned().collect()
            })
            .await;
        let id = |v: &Value| v.as_str().unwrap().to_owned();
        let data = &created[0]["data"];
        (id(&data["conversation"]["id"]), id(&data["ticket"]["id"]))
    }

    /// What `pick` finds in the outbox, once it finds something (polled with a deadline).
    async fn poll(&self, what: &str, pick: impl Fn(&[Value]) -> Vec<Value>) -> Vec<Value> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let found = pick(&self.daemon.all_events().await);
            if !found.is_empty() {
                return found;
            }
            assert!(std::time::Instant::now() < deadline, "no {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn agent_replies(&self, conversation: &str, key: &str, text: &str) {
        let url = (self.daemon).url(&format!("/v1/control/conversations/{conversation}/replies"));
        let reply = json!({"agent": {"id": "a1", "name": "Alice Martin"}, "text": text});
        let (status, body) = control_post(&self.client, &url, Some(key), &reply).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (202, Some("handed_over")),
            "{body}"
        );
    }

    async fn close(&self, conversation: &str, key: &str) {
        let url = (self.daemon).url(&format!("/v1/control/conversations/{conversation}/close"));
        let (status, body) = control_post(&self.client, &url, Some(key), &json!({})).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Proves a negative without sleeping: another visitor's transcript, queued after
    /// everything before it, is the `n`th to be sent; returns the mails once `n` arrived.
    async fn marker(&self, visitor: &str, n: usize) -> Vec<Vec<u8>> {
        let email = json!({ "email": format!("{visitor}@example.com") });
        self.visitor_says("web", visitor, "1", "Marker.", email)
            .await;
        let (marker, _) = self.conversation_of(visitor).await;
        self.close(&marker, &format!("close-{visitor}")).await;
        self.transcripts_sent(n).await;
        self.smtpd.wait_for(n, WAIT).await
    }

    /// The `deskgate.outbound.sent` events of transcripts, once `n` of them are in the outbox.
    async fn transcripts_sent(&self, n: usize) -> Vec<Value> {
        self.poll("transcripts sent", |events| {
            let sent: Vec<Value> = of_type(events, "deskgate.outbound.sent")
                .into_iter()
                .filter(|e| e["data"]["purpose"] == "transcript")
                .cloned()
                .collect();
            if sent.len() >= n {
                sent
            } else {
                Vec::new()
            }
        })
        .await
    }
}

fn mails_to<'m>(mails: &'m [Vec<u8>], to: &str) -> Vec<&'m Vec<u8>> {
    mails
        .iter()
        .filter(|m| header(m, "To").as_deref() == Some(to))
        .collect()
}

fn subject(raw: &[u8]) -> String {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    message.subject().unwrap_or_default().to_owned()
}

/// The visitor's messages and the agent's chat reply reach the visitor in one mail from the
/// transcript address, in order, when the conversation is closed through the control API; a
/// message past `max_messages` is left out and the mail says so; the ticket store sees the
/// mail as a `deskgate.outbound.sent` with purpose `transcript`.
#[tokio::test]
async fn a_closed_chat_mails_its_transcript_to_the_visitor_once() {
    let desk = start().await;
    let ana = json!({"name": "Ana Lopez", "email": "Ana@Example.com"});
    desk.visitor_says("web", "v-ana", "1", "My order has not arrived.", ana)
        .await;
    let (conversation, ticket) = desk.conversation_of("v-ana").await;
    desk.agent_replies(&conversation, "r1", "It ships today.")
        .await;
    desk.visitor_says("web", "v-ana", "2", "Thanks!", json!({}))
        .await;
    // Past the channel's max_messages = 3: counted, not kept.
    desk.visitor_says("web", "v-ana", "3", "P.S. one more thing", json!({}))
        .await;
    desk.close(&conversation, "close-1").await;

    let mails = desk.smtpd.wait_for(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(header(mail, "To").unwrap(), "ana@example.com");
    assert_eq!(
        header(mail, "From").unwrap(),
        "\"Acme Chat\" <chat@acme.test>"
    );
    assert_eq!(header(mail, "Auto-Submitted").unwrap(), "auto-generated");
    assert_eq!(subject(mail), "[#1] Your chat with Acme");
    let text = text_body(mail);
    assert!(text.starts_with("Hello Ana Lopez,"), "{text}");
    let order = [
        "] Ana Lopez:\nMy order has not arrived.",
        "] Alice Martin:\nIt ships today.",
        "] Ana Lopez:\nThanks!",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|line| {
            text.find(line)
                .unwrap_or_else(|| panic!("{line:?} in {text}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "in order: {text}");
    assert!(text.contains("(times in UTC)"), "{text}");
    assert!(!text.contains("P.S."), "{text}");
    assert!(
        text.contains("The transcript stops here: 1 later message is not included."),
        "{text}"
    );

    let sent = desk.transcripts_sent(1).await;
    let data = &sent[0]["data"];
    assert_eq!(data["recipient"], "ana@example.com");
    assert_eq!(data["via"], "email");
    assert_eq!(data["conversation_id"], conversation.as_str());
    assert_eq!(data["ticket_id"], ticket.as_str());
    assert_eq!(
        data["message_id"].as_str().map(|id| format!("<{id}>")),
        header(mail, "Message-ID")
    );
}

/// A French channel's transcript is French, with times in the channel's time zone; closing
/// the ticket (its `closed` status) closes the conversation and sends it.
#[tokio::test]
async fn a_french_channel_mails_a_french_transcript_when_the_ticket_closes() {
    let desk = start().await;
    let lea = json!({"name": "Léa Roux", "email": "lea@example.com"});
    desk.visitor_says("web_fr", "v-lea", "1", "Bonjour, une question.", lea)
        .await;
    let (conversation, ticket) = desk.conversation_of("v-lea").await;
    desk.agent_replies(&conversation, "r1", "Je vous écoute.")
        .await;
    let url = desk
        .daemon
        .url(&format!("/v1/control/tickets/{ticket}/status"));
    let response = (desk.client.put(url).bearer_auth(TOKEN))
        .header("Idempotency-Key", "status-1")
        .json(&json!({"status": "closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);

    let mails = desk.smtpd.wait_for(1, WAIT).await;
    let mail = &mails[0];
    assert_eq!(header(mail, "From").unwrap(), "Acme <discussion@acme.test>");
    assert_eq!(subject(mail), "[#1] Votre conversation avec Acme");
    let text = text_body(mail);
    assert!(text.starts_with("Bonjour Léa Roux,"), "{text}");
    assert!(text.contains("(heures : Europe/Paris)"), "{text}");
    assert!(text.contains("] Alice Martin :\nJe vous écoute."), "{text}");
    desk.transcripts_sent(1).await;
}

/// A visitor who gave no email gets no transcript, nor does anyone on a channel without
/// transcripts: the proof is a later transcript that arrives alone.
#[tokio::test]
async fn no_email_or_no_transcript_table_means_no_mail() {
    let desk = start().await;
    desk.visitor_says(
        "web",
        "v-anon",
        "1",
        "Just looking.",
        json!({"name": "Anon"}),
    )
    .await;
    let (anonymous, _) = desk.conversation_of("v-anon").await;
    desk.agent_replies(&anonymous, "r1", "Welcome!").await;
    desk.close(&anonymous, "close-anon").await;
    let bo = json!({"email": "bo@example.com"});
    desk.visitor_says("plain", "v-plain", "1", "Hello?", bo)
        .await;
    let (plain, _) = desk.conversation_of("v-plain").await;
    desk.close(&plain, "close-plain").await;

    let mails = desk.marker("v-cy", 1).await;
    assert_eq!(mails.len(), 1, "only the marker's transcript");
    assert_eq!(header(&mails[0], "To").unwrap(), "v-cy@example.com");
    let events = desk.daemon.all_events().await;
    let about = |conversation: &str| {
        events.iter().any(|e| {
            e["type"]
                .as_str()
                .unwrap()
                .starts_with("deskgate.outbound.")
                && e["data"]["conversation_id"] == conversation
        })
    };
    assert!(!about(&anonymous) && !about(&plain), "no outbound event");
}

/// Closing twice, a kill -9 while the transcript waits to be sent, and a reopen with no new
/// message then a second close send one transcript; a new message after that sends a second
/// one with only what is new.
#[tokio::test]
async fn closing_again_or_crashing_after_the_close_sends_one_transcript() {
    let mut desk = start().await;
    let dee = json!({"email": "dee@example.com"});
    desk.visitor_says("web_fr", "v-dee", "1", "First question.", dee.clone())
        .await;
    let (conversation, ticket) = desk.conversation_of("v-dee").await;
    desk.agent_replies(&conversation, "r1", "First answer.")
        .await;
    // No SMTP server while the transcript is queued: the crash finds it not yet sent.
    desk.smtpd.stop();
    desk.close(&conversation, "close-1").await;
    desk.daemon.kill();
    desk.daemon.restart().await;
    desk.smtpd.restart();
    desk.close(&conversation, "close-2").await;
    // The ticket store closes the ticket and opens it again (which reopens its only
    // conversation), then closes the conversation: nothing new was said.
    for (status, key) in [("closed", "status-1"), ("new", "status-2")] {
        let path = format!("/v1/control/tickets/{ticket}/status");
        let url = desk.daemon.url(&path);
        let body = json!({ "status": status });
        let response = (desk.client.put(url).bearer_auth(TOKEN))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    desk.close(&conversation, "close-3").await;

    let mails = desk.marker("v-eve", 2).await;
    let to_dee = mails_to(&mails, "dee@example.com");
    assert_eq!(to_dee.len(), 1, "one transcript for one close");
    assert!(text_body(to_dee[0]).contains("First answer."));

    // A new message reopens the conversation; its close sends what is new.
    desk.visitor_says("web_fr", "v-dee", "2", "Second question.", dee)
        .await;
    eventually("the conversation to reopen", WAIT, || async {
        let events = desk.daemon.all_events().await;
        let reopened = of_type(&events, "deskgate.conversation.reopened");
        reopened.iter().any(|e| {
            e["data"]["conversation"] == conversation.as_str()
                && e["data"]["reason"] == "customer_replied"
        })
    })
    .await;
    desk.close(&conversation, "close-4").await;
    let mails = desk.smtpd.wait_for(3, WAIT).await;
    let to_dee = mails_to(&mails, "dee@example.com");
    assert_eq!(to_dee.len(), 2);
    let second = text_body(to_dee[1]);
    assert!(second.contains("Second question."), "{second}");
    assert!(!second.contains("First question."), "{second}");
}

/// The keys under each prefix of the state keyspace on disk (`deskgate inspect state`, run
/// on the stopped daemon's state directory).
fn state_census(desk: &Desk) -> Value {
    let output = std::process::Command::new(test_kit::daemon_bin())
        .args(["inspect", "state"])
        .arg(desk._dir.path().join("state"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let census: Value = serde_json::from_slice(&output.stdout).unwrap();
    census["trees"]["state"].clone()
}

/// Erasing the visitor's contact drops what deskgate kept for the transcript (the state on
/// disk has no transcript keys left), and closing the conversation afterwards mails nothing.
#[tokio::test]
async fn erasing_the_visitor_drops_the_kept_transcript_and_mails_nothing() {
    let mut desk = start().await;
    let gus = json!({"name": "Gus", "email": "gus@example.com"});
    desk.visitor_says("web", "v-gus", "1", "My secret question.", gus)
        .await;
    let (conversation, _) = desk.conversation_of("v-gus").await;
    desk.agent_replies(&conversation, "r1", "My answer.").await;
    desk.daemon.settled().await;
    desk.daemon.terminate();
    let kept = state_census(&desk);
    assert_eq!(kept["transcript_line/"]["keys"], 2, "{kept}");
    desk.daemon.restart().await;

    let events = desk.daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created");
    let contact = created[0]["data"]["ticket"]["contact_id"].as_str().unwrap();
    let (status, body) = (desk.daemon)
        .control(
            TOKEN,
            "DELETE",
            &format!("/v1/control/contacts/{contact}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    desk.daemon.settled().await;
    desk.daemon.terminate();
    let kept = state_census(&desk);
    for prefix in ["transcript/", "transcript_line/"] {
        assert!(kept.get(prefix).is_none(), "{prefix} left: {kept}");
    }
    desk.daemon.restart().await;
    desk.close(&conversation, "close-erased").await;

    let mails = desk.marker("v-hal", 1).await;
    assert_eq!(mails.len(), 1, "only the marker's transcript");
    assert_eq!(header(&mails[0], "To").unwrap(), "v-hal@example.com");
}

/// check-config names each bad transcript setting by its path.
#[test]
fn check_config_names_a_bad_transcript_by_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deskgate.toml");
    std::fs::write(
        &path,
        format!(
            "[state]\ndir = \"{}\"\n\n\
             [channels.web]\nkind = \"chat\"\n\
             [channels.web.chat.transcript]\nfrom = \"not an address\"\nmailbox = \"ghost\"\nmax_messages = 0\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let check = test_kit::check_config(&path, None);
    assert!(!check.ok);
    let stderr = check.stderr;
    for wanted in [
        "channels.web.chat.transcript.from: \"not an address\" is not an email address",
        "channels.web.chat.transcript.mailbox: names mailbox \"ghost\", which is not in [outbound.mailboxes]",
        "channels.web.chat.transcript.max_messages: must be > 0",
    ] {
        assert!(stderr.contains(wanted), "{wanted:?} in {stderr}");
    }
}
