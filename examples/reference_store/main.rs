//! A reference consumer of deskgate's events: it follows `GET /v1/events` with its own durable
//! cursor and materialises contacts, tickets, conversations and messages into SQLite. It is the
//! ticket store engineers' starting point: a store that applies events this way ends with the
//! same tickets (status, pipeline, owner, number, contact) and contacts (identities, merges,
//! erasures) as deskgate's own view, across kill -9 of either side
//! (`tests/e2e/reference_store.rs` checks exactly that).
//!
//! # Running it
//!
//! ```sh
//! cargo run --example reference_store -- --url http://127.0.0.1:8080 --db store.sqlite \
//!     --token-file /run/credentials/deskgate-consumer/token
//! ```
//!
//! `--token-file` holds a control token of deskgate (`[control] token_files`): with
//! `events.require_token` (the default) `/v1/events` answers 401 without it. The consumer runs
//! until killed; it can be killed at any moment (kill -9 included) and started again on the same
//! database. It logs to stderr; `SELECT last_sequence FROM cursor` says how far it got.
//!
//! With a NATS JetStream sink configured in deskgate (`[sinks.<name>] kind = "nats"`), the same
//! store follows the stream through a durable pull consumer instead:
//!
//! ```sh
//! cargo run --example reference_store -- --nats nats://127.0.0.1:4222 --stream DESKGATE \
//!     --durable ticket-store --db store.sqlite
//! ```
//!
//! JetStream keeps one ticket's events in order but not the order between tickets; the store
//! waits for the events it lacks and applies in `sequence` order all the same, acknowledging
//! messages only after their transaction commits (`jetstream.rs` says how).
//!
//! The code: `store.rs` (the tables, and the cursor rule below), `apply.rs` (what each event
//! does to the tables), `jetstream.rs`, and this file (the command line and the HTTP follower).
//!
//! # The cursor rule
//!
//! Each page of events is applied, and the cursor (`cursor.last_sequence`, the CloudEvent
//! `sequence` of the last event applied) moved, in ONE SQLite transaction (WAL journal,
//! `synchronous = FULL`, so a commit is on disk before the next request). A crash before the
//! commit leaves neither the effects nor the cursor; after it, both. The next request asks for
//! `after = last_sequence`, so nothing is lost or applied twice. Each applied event's `id` is
//! kept too (`applied_events`) and an event whose id is there is skipped: the same guarantee
//! again for a store fed by a second path (the JetStream consumer delivers the same events,
//! `Nats-Msg-Id` = event `id`).
//!
//! # Ordering relied on
//!
//! - Events of one deskgate instance (one `source`) have contiguous sequence numbers, and are in
//!   the order deskgate applied their causes. This consumer applies them in that order, one at a
//!   time, so it never sees a ticket event before the ticket exists or a merge before its
//!   contacts. A jump in `sequence` means outbox retention removed events this consumer never
//!   read: it is logged (`gap`), and the store should be rebuilt or reconciled through the
//!   control API.
//! - Events of one processor step come out together and in a fixed order: a message's contact
//!   events (`contact.created`, `.updated`, `.merged`) before its message event, whose `ticket`
//!   is the ticket's state *after* the step (routing included), then the step's
//!   `ticket.assigned` / `status_trigger` events. Applying each as "set to this value" is
//!   therefore right whatever the order inside the step.
//! - The cursor must belong to one `source`: a consumer pointed at another instance (or at a
//!   state directory that was recreated, whose sequence starts again at 1) stops with an error
//!   instead of mixing two histories.
//!
//! # What each event does to the tables
//!
//! | event | effect |
//! | --- | --- |
//! | `contact.created`, `contact.updated` | the contact is replaced by `data.contact` (name, owner, identities) |
//! | `contact.merged` | the survivor is replaced by `data.contact`; each absorbed contact gets `merged_into`, loses its identities, and its tickets and messages move to the survivor |
//! | `contact.erased` | the contact keeps its id only (`erased = 1`); its identities go; the messages of `data.conversations` and of the contact lose subject, text, HTML and sender name |
//! | `contact.spam_undone` | the contact's and the named conversations' spam flags are lifted |
//! | `ticket.created`, `ticket.message_added`, `conversation.message_added` | the ticket is replaced by `data.ticket` (number, contact, pipeline, status, owner, …), the conversation is put on that ticket, the message is added (sender's contact looked up by identity) |
//! | `ticket.assigned` | owner |
//! | `ticket.status_trigger`, `ticket.status_changed` | status and pipeline |
//! | `ticket.merged` | the merged ticket gets `merged_into`; its conversations move to the survivor |
//! | `ticket.split` | a new ticket with the old one's contact, channel and subject, its own number and `data.routing`; the conversation (or for a split by message, a new conversation with the moved messages) goes to it |
//! | `ticket.deleted` | the ticket and its conversations get `deleted = 1` |
//! | `conversation.closed`, `conversation.reopened`, `conversation.spam`, `conversation.spam_undone` | the conversation's `closed` / `spam` flags (and the sender's spam flag) |
//! | `message.delivery_status` | a row in `deliveries` for each platform message id |
//!
//! Deliberately ignored, each for a reason:
//! - `contact.merge_suggested`, `ticket.merge_suggested`: suggestions for people; nothing
//!   changed (a store would show them to agents).
//! - `ticket.action_requested`, `outbound.sent`, `.failed`, `.suppressed`, `.chat_message`:
//!   mail and replies deskgate sends; they change no ticket or contact (a `status_trigger`
//!   follows when an agent's reply moved the ticket).
//! - `channel.event`: platform notices that are not messages (templates, account updates).
//! - `inbound.quarantined`, `sink.dead_lettered`, `sink.disabled`: operations, for people and
//!   alerts, not for the store's data.
//!
//! Nothing in the events says when deskgate forgets a ticket closed longer than
//! `routing.closed_retention_secs` or purges a spam conversation after
//! `routing.spam_retention_days`: the store keeps its copy, as it should.
//!
//! # No rule of deskgate's copied
//!
//! A conversation's `closed` flag changes only by `conversation.closed` and
//! `conversation.reopened`: this store does not decide which messages or status changes reopen
//! a conversation (deskgate's rule: a customer's own message on a conversation that did not
//! start with a forward, a reopened ticket's only conversation), it follows the events. A
//! ticket's contact changes only by `contact.merged`, which moves every ticket of an absorbed
//! contact, whichever conversations the ticket holds (deskgate moves them all too).
//!
//! # Why its own types and not `deskgate::events::data`
//!
//! The event data types in deskgate (`deskgate::events::data`) are the producer's: they only
//! serialise (no `Deserialize`), and their fields are deskgate's internal types (`Contact`,
//! `Ticket`, `TicketState`) that change with the daemon. A ticket store is another program,
//! usually in another language, built against the JSON Schemas in `schemas/events/`. So this
//! example declares, with serde, only the fields it reads and ignores the rest: a field added
//! to an event later does not break it, which is how every store should read the contract.

mod apply;
mod jetstream;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(about = "Follows deskgate's events into a SQLite ticket store")]
struct Args {
    /// deskgate's base URL (`http://127.0.0.1:8080`), to follow `GET /v1/events`.
    #[arg(long, required_unless_present = "nats")]
    url: Option<String>,
    /// The SQLite database (created when missing).
    #[arg(long)]
    db: PathBuf,
    /// A file holding a control token, sent as a bearer token to `/v1/events`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Events per page (per JetStream fetch).
    #[arg(long, default_value_t = 500)]
    limit: usize,
    /// How long one request (or fetch) waits for new events, in seconds.
    #[arg(long, default_value_t = 10)]
    wait_secs: u64,
    /// A NATS server (`nats://127.0.0.1:4222`): follow deskgate's JetStream sink through a
    /// durable pull consumer instead of `GET /v1/events`.
    #[arg(long, conflicts_with = "url")]
    nats: Option<String>,
    /// The JetStream stream deskgate's sink publishes to (`[sinks.<name>.nats] stream`).
    #[arg(long, default_value = "DESKGATE")]
    stream: String,
    /// The durable consumer's name: JetStream remembers what it acknowledged.
    #[arg(long, default_value = "reference-store")]
    durable: String,
}

/// The CloudEvents envelope, as far as the store reads it.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    time: String,
    sequence: String,
    #[serde(default)]
    data: Value,
}

impl Envelope {
    /// The `sequence` extension as a number.
    fn seq(&self) -> Result<u64> {
        self.sequence
            .parse()
            .map_err(|e| format!("sequence {:?}: {e}", self.sequence).into())
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let followed = async {
        let mut db = store::open(&args.db)?;
        match (&args.nats, &args.url) {
            (Some(url), _) => jetstream::follow(&args, url, &mut db).await,
            (None, Some(url)) => follow_http(&args, url, &mut db).await,
            (None, None) => Err("give --url or --nats".into()),
        }
    };
    match followed.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reference_store: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Deserialize)]
struct Page {
    events: Vec<Envelope>,
}

/// Follows `GET /v1/events` from the cursor, for ever; returns only on an error that a retry
/// cannot mend (the database, events of another instance).
async fn follow_http(args: &Args, base: &str, db: &mut rusqlite::Connection) -> Result<()> {
    let token = match &args.token_file {
        Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
        None => None,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.wait_secs + 10))
        .build()?;
    let (mut after, _) = store::cursor(db)?;
    eprintln!("reference_store: following {base} after {after}");
    let mut backoff = Duration::from_millis(100);
    loop {
        let url = format!(
            "{}/v1/events?after={after}&limit={}&wait={}",
            base.trim_end_matches('/'),
            args.limit,
            args.wait_secs
        );
        let mut request = client.get(url);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let page = async {
            request
                .send()
                .await?
                .error_for_status()?
                .json::<Page>()
                .await
        };
        match page.await {
            Ok(page) => {
                backoff = Duration::from_millis(100);
                if !page.events.is_empty() {
                    after = store::apply_page(db, &page.events)?;
                }
            }
            Err(error) => {
                // deskgate restarting, or the network: try again, a little later each time.
                eprintln!("reference_store: reading events: {error}; again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
