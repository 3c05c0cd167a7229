//! The mixed load of `chaos` and `soak`: lanes that each send one kind of input at a steady pace, every input with
//! its own idempotency key, retried until acknowledged as a real sender would (Meta retries,
//! an MTA retries, an integration retries), and written into a ledger first.
//!
//! HTTP inputs are acknowledged by a 2xx; a mail is acknowledged once Dovecot has it (an IMAP
//! APPEND or `doveadm save` that succeeded). Inputs of one thread go one after the other, so
//! the first of a thread is the one that must open its ticket.
//!
//! By default every thread comes from a customer of its own. With a customer population (the
//! soak's), each lane's threads cycle over that many customers, as returning customers do,
//! while threads stay apart in the ledger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::RwLock;

use crate::dovecot::Dovecot;

/// The app secret the load signs its Meta and chat webhooks with, and that the deskgate of the
/// rig (and of the bench's modes) is configured with.
pub const APP_SECRET: &str = "bench-app-secret-0123456789";

/// Writes the Meta secret files into `dir` and returns the channel's `meta` line.
pub fn write_secrets(dir: &std::path::Path) -> anyhow::Result<String> {
    Ok(crate::meta::write_secrets(
        dir,
        APP_SECRET,
        "bench-verify-token",
    )?)
}

/// `body`'s signature with [`APP_SECRET`].
pub fn sign(body: &[u8]) -> String {
    crate::meta::sign(APP_SECRET, body)
}

/// Messages per thread (conversation) before a lane opens the next one.
const PER_THREAD: u64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Api,
    Form,
    Chat,
    Whatsapp,
    Messenger,
    Mail,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Api,
        Kind::Form,
        Kind::Chat,
        Kind::Whatsapp,
        Kind::Messenger,
        Kind::Mail,
    ];

    /// The channel id the rig configures for this kind.
    pub fn channel(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Form => "form",
            Kind::Chat => "chat",
            Kind::Whatsapp => "wa",
            Kind::Messenger => "fb",
            Kind::Mail => "mail",
        }
    }

    /// Lanes of this kind and its share of the whole rate.
    fn lanes_and_share(self) -> (usize, f64) {
        match self {
            Kind::Api => (2, 0.30),
            Kind::Form => (1, 0.15),
            Kind::Chat => (1, 0.15),
            Kind::Whatsapp => (2, 0.20),
            Kind::Messenger => (1, 0.10),
            Kind::Mail => (1, 0.10),
        }
    }
}

/// What the ledger knows of one input.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// The thread (conversation) the harness meant it for, unique across channels.
    pub thread: String,
    /// The input's place in its thread (0 opens it).
    pub position: u64,
    pub acked: bool,
}

/// Every input ever attempted, by (channel, external id as deskgate reports it).
#[derive(Default)]
pub struct Ledger {
    pub entries: HashMap<(&'static str, String), Entry>,
}

/// What the load shares with the harness: the ledger, the stop flags and the counters.
pub struct Load {
    pub base: String,
    pub ledger: Mutex<Ledger>,
    /// No new inputs after this is set; inputs in flight still retry.
    pub stopping: AtomicBool,
    /// Inputs still unacknowledged give up once this is set.
    pub give_up: AtomicBool,
    /// 503 answers seen (a full disk; the journal closing).
    pub unavailable: AtomicU64,
    /// Answers that are neither 2xx nor 503: none is expected.
    pub errors: Mutex<Vec<String>>,
    pub acked: AtomicU64,
    /// Customers per lane that threads cycle over; `None`: a new customer for every thread.
    population: Option<u64>,
    client: reqwest::Client,
}

impl Load {
    pub fn new(base: String) -> Arc<Load> {
        Load::with_population(base, None)
    }

    /// A load whose threads, per lane, come from `population` customers (all of them new
    /// when `None`).
    pub fn with_population(base: String, population: Option<u64>) -> Arc<Load> {
        Arc::new(Load {
            base,
            ledger: Mutex::default(),
            stopping: AtomicBool::new(false),
            give_up: AtomicBool::new(false),
            unavailable: AtomicU64::new(0),
            errors: Mutex::default(),
            acked: AtomicU64::new(0),
            population,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a reqwest client builds"),
        })
    }

    fn attempt(&self, input: &Input) {
        let entry = Entry {
            kind: input.kind,
            thread: input.thread.clone(),
            position: input.position,
            acked: false,
        };
        self.lock_ledger()
            .entries
            .insert((input.kind.channel(), input.external_id.clone()), entry);
    }

    fn ack(&self, input: &Input) {
        let key = (input.kind.channel(), input.external_id.clone());
        if let Some(entry) = self.lock_ledger().entries.get_mut(&key) {
            entry.acked = true;
        }
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    pub fn lock_ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .expect("no panic while holding the ledger")
    }

    /// The customer of a lane's `k`-th thread (or mail), as a number within the lane.
    fn customer(&self, k: u64) -> u64 {
        match self.population {
            Some(population) => k % population,
            None => k,
        }
    }

    fn error(&self, message: String) {
        let mut errors = self.errors.lock().expect("no panic while holding errors");
        if errors.len() < 50 {
            errors.push(message);
        }
    }

    /// Starts every lane of every kind at `rate` inputs per second in all; `run` keeps ids
    /// apart between runs.
    pub fn spawn_lanes(
        self: &Arc<Load>,
        run: &str,
        rate: f64,
        dovecot: &Arc<RwLock<Dovecot>>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut lanes = Vec::new();
        for kind in Kind::ALL {
            let (count, share) = kind.lanes_and_share();
            let per_lane = (rate * share / count as f64).max(0.1);
            let interval = Duration::from_secs_f64(1.0 / per_lane);
            for lane in 0..count {
                let lane = Lane {
                    load: Arc::clone(self),
                    kind,
                    name: format!("{run}-{}{lane}", kind.channel()),
                    interval,
                };
                lanes.push(tokio::spawn(lane.run(Arc::clone(dovecot))));
            }
        }
        lanes
    }

    /// Stops new inputs and waits for every lane; inputs still unacknowledged after `grace`
    /// give up.
    pub async fn stop(
        self: &Arc<Load>,
        lanes: Vec<tokio::task::JoinHandle<()>>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        self.stopping.store(true, Ordering::Relaxed);
        let give_up = {
            let load = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                load.give_up.store(true, Ordering::Relaxed);
            })
        };
        for lane in lanes {
            lane.await?;
        }
        give_up.abort();
        Ok(())
    }

    /// Delivers `count` mails at once (each opening its own thread) with `doveadm import`: a
    /// burst that keeps deskgate fetching for a while. Returns when Dovecot has them all.
    pub async fn mail_burst(self: &Arc<Load>, dovecot: &RwLock<Dovecot>, name: &str, count: u64) {
        let lane = Lane {
            load: Arc::clone(self),
            kind: Kind::Mail,
            name: name.to_owned(),
            interval: Duration::ZERO,
        };
        let inputs: Vec<Input> = (0..count)
            .map(|n| {
                let thread = format!("{name}-t{n}");
                let from = format!("{thread}@example.org");
                lane.mail(&thread, &from, &[], &format!("{name}-m{n}@example.org"))
            })
            .collect();
        for input in &inputs {
            self.attempt(input);
        }
        let mails: Vec<Vec<u8>> = inputs.iter().map(|i| i.body.to_vec()).collect();
        let mut backoff = Backoff::default();
        loop {
            let dovecot = dovecot.read().await;
            if tokio::task::block_in_place(|| dovecot.import(&mails)).is_ok() {
                break;
            }
            if self.give_up.load(Ordering::Relaxed) {
                return;
            }
            backoff.wait().await;
        }
        for input in &inputs {
            self.ack(input);
        }
    }
}

/// One input: its ledger key and where it belongs.
struct Input {
    kind: Kind,
    external_id: String,
    thread: String,
    position: u64,
    body: Bytes,
    content_type: String,
    signature: Option<(&'static str, String)>,
}

struct Lane {
    load: Arc<Load>,
    kind: Kind,
    /// Unique per lane and run: every id the lane makes starts with it.
    name: String,
    interval: Duration,
}

type ImapSession = async_imap::Session<TcpStream>;

impl Lane {
    /// Sends the lane's inputs one after the other at its pace until the load stops.
    async fn run(self, dovecot: Arc<RwLock<Dovecot>>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut session = None;
        for n in 0.. {
            ticker.tick().await;
            if self.load.stopping.load(Ordering::Relaxed) {
                break;
            }
            if self.kind == Kind::Mail {
                let (input, by_doveadm) = self.mail_input(n);
                self.load.attempt(&input);
                self.deliver_mail(&dovecot, &mut session, &input, by_doveadm)
                    .await;
            } else {
                let input = self.http_input(n);
                self.load.attempt(&input);
                self.send_until_acked(&input).await;
            }
        }
        if let Some(mut session) = session {
            let _ = session.logout().await;
        }
    }

    /// Posts until a 2xx (acked), giving up only once the harness says so.
    async fn send_until_acked(&self, input: &Input) {
        let url = format!("{}/hooks/{}", self.load.base, self.kind.channel());
        let mut backoff = Backoff::default();
        loop {
            let mut request = self
                .load
                .client
                .post(&url)
                .header("content-type", &input.content_type)
                .body(input.body.clone());
            if let Some((name, value)) = &input.signature {
                request = request.header(*name, value);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    self.load.ack(input);
                    return;
                }
                Ok(response) if response.status() == 503 => {
                    self.load.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    self.load.error(format!(
                        "{} {}: answered {status}: {body}",
                        self.kind.channel(),
                        input.external_id
                    ));
                    return;
                }
                // The daemon is down (killed) or the connection was cut: retry.
                Err(_) => {}
            }
            if self.load.give_up.load(Ordering::Relaxed) {
                return;
            }
            backoff.wait().await;
        }
    }

    /// Delivers until Dovecot has the mail. A delivery cut off by a fault may have landed
    /// anyway; the retry then stores a second copy with the same Message-ID, which deskgate
    /// must recognise.
    async fn deliver_mail(
        &self,
        dovecot: &RwLock<Dovecot>,
        session: &mut Option<ImapSession>,
        input: &Input,
        local: bool,
    ) {
        let mut backoff = Backoff::default();
        loop {
            let delivered = if local {
                let dovecot = dovecot.read().await;
                tokio::task::block_in_place(|| dovecot.save("INBOX", &input.body)).is_ok()
            } else {
                if session.is_none() {
                    *session = dovecot.read().await.try_session().await.ok();
                }
                match session.as_mut() {
                    Some(open) => {
                        let appended = tokio::time::timeout(
                            Duration::from_secs(10),
                            open.append("INBOX", None, None, &input.body),
                        )
                        .await;
                        let ok = matches!(appended, Ok(Ok(())));
                        if !ok {
                            *session = None;
                        }
                        ok
                    }
                    None => false,
                }
            };
            if delivered {
                self.load.ack(input);
                return;
            }
            if self.load.give_up.load(Ordering::Relaxed) {
                return;
            }
            backoff.wait().await;
        }
    }

    /// Input `n` of an HTTP lane.
    fn http_input(&self, n: u64) -> Input {
        let lane = &self.name;
        let (thread_no, position) = (n / PER_THREAD, n % PER_THREAD);
        let thread = format!("{lane}-t{thread_no}");
        let text = format!("message {n} of lane {lane}: where is my order?");
        let (external_id, content_type, body, thread, position) = match self.kind {
            Kind::Api => {
                let id = format!("{lane}-m{n}");
                let body = json!({
                    "external_id": id, "thread_id": thread,
                    "from": { "email": format!("{lane}-c{}@example.com", thread_no % 50), "name": "Api Customer" },
                    "subject": format!("Order {thread_no}"), "text": text,
                });
                (id, "application/json", json_bytes(&body), thread, position)
            }
            Kind::Form => {
                // Each submission is a ticket of its own, in one of the three encodings.
                let id = format!("{lane}-s{n}");
                let fields = [
                    ("submission_id", id.clone()),
                    ("email", format!("{lane}-c{}@example.com", n % 50)),
                    ("first_name", "Form".to_owned()),
                    ("subject", format!("Form {n}")),
                    ("description", text),
                ]
                .map(|(k, v)| (k.to_owned(), v));
                let (content_type, body) = form_body(&fields, n);
                (id.clone(), content_type, body, id, 0)
            }
            Kind::Chat => {
                let visitor = format!("{lane}-v{}", self.load.customer(thread_no));
                let body = json!({
                    "visitor_token": visitor, "message_id": format!("m{n}"), "text": text,
                    "page_url": "https://shop.example/checkout",
                });
                let id = format!("{visitor}:m{n}");
                (id, "application/json", json_bytes(&body), thread, position)
            }
            Kind::Whatsapp => {
                let customer = 5_511_900_000_000u64
                    + lane_number(lane) * 1_000_000
                    + self.load.customer(thread_no);
                let id = format!("wamid.{lane}-m{n}");
                let body = json!({
                    "object": "whatsapp_business_account",
                    "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
                        "contacts": [{ "profile": { "name": format!("Customer {customer}") }, "wa_id": customer.to_string() }],
                        "messages": [{ "from": customer.to_string(), "id": id, "timestamp": Utc::now().timestamp().to_string(),
                                      "type": "text", "text": { "body": text } }],
                    }}]}],
                });
                (id, "application/json", json_bytes(&body), thread, position)
            }
            Kind::Messenger => {
                let psid = format!(
                    "{}{:07}",
                    7000 + lane_number(lane),
                    self.load.customer(thread_no)
                );
                let id = format!("m.{lane}-m{n}");
                let now = Utc::now().timestamp_millis();
                let body = json!({ "object": "page", "entry": [{ "id": "104857600", "time": now, "messaging": [{
                    "sender": { "id": psid }, "recipient": { "id": "104857600" }, "timestamp": now,
                    "message": { "mid": id, "text": text },
                }]}]});
                (id, "application/json", json_bytes(&body), thread, position)
            }
            Kind::Mail => unreachable!("mail lanes deliver through Dovecot"),
        };
        let signature = match self.kind {
            Kind::Whatsapp | Kind::Messenger => Some("x-hub-signature-256"),
            Kind::Chat => Some("x-deskgate-signature"),
            _ => None,
        }
        .map(|header| (header, sign(&body)));
        Input {
            kind: self.kind,
            external_id,
            thread,
            position,
            body,
            content_type: content_type.to_owned(),
            signature,
        }
    }

    /// Mail `n` of a mail lane, and whether it goes by `doveadm save` (else IMAP APPEND).
    ///
    /// Every fifth mail is saved by doveadm and opens a thread of its own. The others go by
    /// IMAP APPEND in threads of a few mails, each a reply to the one before: Dovecot's Maildir
    /// can give a mail saved by doveadm a higher UID than one appended over IMAP after it (seen
    /// about once in 150 pairs), and deskgate reads in UID order, so a thread mixing the two
    /// could have its reply read first.
    fn mail_input(&self, n: u64) -> (Input, bool) {
        let lane = &self.name;
        let id = |i: u64| format!("{lane}-m{i}@example.org");
        // Without a population, a thread's sender is named after the thread: a new customer.
        let from = |thread: &str, k: u64| match self.load.population {
            Some(_) => format!("{lane}-c{}@example.org", self.load.customer(k)),
            None => format!("{thread}@example.org"),
        };
        if n % 5 == 4 {
            let thread = format!("{lane}-s{n}");
            return (self.mail(&thread, &from(&thread, n), &[], &id(n)), true);
        }
        // The k-th appended mail is mail k + k/4 of the lane (every fifth is saved).
        let k = n - n / 5;
        let (thread_no, position) = (k / PER_THREAD, k % PER_THREAD);
        let earlier: Vec<String> = (k - position..k).map(|j| id(j + j / 4)).collect();
        let thread = format!("{lane}-t{thread_no}");
        let mut input = self.mail(&thread, &from(&thread, thread_no), &earlier, &id(n));
        input.position = position;
        (input, false)
    }

    /// A mail of `thread` from `from` with Message-ID `id`, replying to the last of `earlier`
    /// (the thread's mails so far) when there are any.
    fn mail(&self, thread: &str, from: &str, earlier: &[String], id: &str) -> Input {
        let mut mail = format!(
            "From: Mail Customer <{from}>\r\nTo: support@example.test\r\n\
             Subject: {}Parcel {thread}\r\nDate: {}\r\nMessage-ID: <{id}>\r\n",
            if earlier.is_empty() { "" } else { "Re: " },
            Utc::now().to_rfc2822(),
        );
        if let Some(parent) = earlier.last() {
            let references: Vec<String> = earlier.iter().map(|i| format!("<{i}>")).collect();
            mail.push_str(&format!(
                "In-Reply-To: <{parent}>\r\nReferences: {}\r\n",
                references.join(" ")
            ));
        }
        mail.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\n\r\nMail {id} of {thread}.\r\n"
        ));
        Input {
            kind: Kind::Mail,
            external_id: id.to_owned(),
            thread: thread.to_owned(),
            position: earlier.len() as u64,
            body: Bytes::from(mail),
            content_type: "message/rfc822".to_owned(),
            signature: None,
        }
    }
}

fn json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values serialise"))
}

/// A number from a lane's name (its last digit run), to keep customers of lanes apart.
fn lane_number(lane: &str) -> u64 {
    let digits: String = lane
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(0)
}

/// A form submission as JSON, urlencoded or multipart (with a small file), by turns.
fn form_body(fields: &[(String, String)], n: u64) -> (&'static str, Bytes) {
    match n % 3 {
        0 => {
            let object: serde_json::Map<String, serde_json::Value> =
                fields.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            ("application/json", json_bytes(&object.into()))
        }
        1 => {
            let body = serde_urlencoded::to_string(fields).expect("strings urlencode");
            ("application/x-www-form-urlencoded", Bytes::from(body))
        }
        _ => {
            let mut body = String::new();
            for (name, value) in fields {
                body.push_str(&format!(
                    "--chaosboundary\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                ));
            }
            body.push_str(&format!(
                "--chaosboundary\r\nContent-Disposition: form-data; name=\"receipt\"; filename=\"receipt-{n}.txt\"\r\n\
                 Content-Type: text/plain\r\n\r\nreceipt number {n}\r\n--chaosboundary--\r\n"
            ));
            (
                "multipart/form-data; boundary=chaosboundary",
                Bytes::from(body),
            )
        }
    }
}

/// Retry delays: 25 ms doubling to 500 ms, with jitter.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    async fn wait(&mut self) {
        let base = 25u64 << self.attempt.min(5);
        self.attempt += 1;
        let jitter = fastrand::u64(0..=base / 2);
        tokio::time::sleep(Duration::from_millis(base.min(500) + jitter)).await;
    }
}
