//! End-to-end: two real mailing-list archives (fedora-devel, January 2010; dev@maven, November
//! 2017; see the corpus MANIFEST) pushed through the running daemon's raw-mail endpoint in
//! Date order, in reverse and shuffled with several seeds. The tickets the events announce are
//! scored by pairs of messages against the expected threads (connected components of the ids
//! with `@` that the mails are and refer to): precision must be 1.0 and recall at least 0.99
//! in every order.
//!
//! Each order goes to its own email channel of one daemon (threading indexes are per channel),
//! so the orders run side by side; within a channel the mails are pushed one after another.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

use serde_json::Value;
use test_kit::{corpus, Daemon};

struct Archive {
    name: &'static str,
    mails: Vec<Vec<u8>>,
    /// The expected thread label of each mail, by mbox index.
    expected: Vec<String>,
}

/// Splits an mbox as the corpus's `derive_expected.py` does: a mail starts at each line
/// beginning `From ` that opens the file or follows an empty line; the From_ line is dropped.
fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut mails: Vec<Vec<u8>> = Vec::new();
    let mut previous_empty = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") && previous_empty {
            mails.push(Vec::new());
        } else if let Some(current) = mails.last_mut() {
            current.extend_from_slice(line);
        }
        previous_empty = line.iter().all(|&b| b == b'\r' || b == b'\n');
    }
    mails
}

fn archive(name: &'static str, dir: &str, mbox: &str) -> Archive {
    let dir = corpus().join("email/threading").join(dir);
    let raw = std::fs::read(dir.join(mbox)).unwrap_or_else(|e| panic!("{mbox}: {e}"));
    let data = if mbox.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    };
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected-threads.json")).unwrap()).unwrap();
    let expected: Vec<String> = expected["by_index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    let mails = split_mbox(&data);
    assert_eq!(
        mails.len(),
        expected.len(),
        "{name}: mails and expected labels"
    );
    Archive {
        name,
        mails,
        expected,
    }
}

fn archives() -> Vec<Archive> {
    vec![
        archive(
            "fedora-devel-2010-01",
            "FreeDiscovery-jwzthreading/jwzthreading/tests/data/fedora-devel-mailman",
            "2010-January.txt.gz",
        ),
        archive(
            "maven-dev-2017-11",
            "apache-incubator-ponymail-unit-tests/corpus",
            "maven-dev-2017-11-mboxvm.mbox",
        ),
    ]
}

/// Mbox indexes in Date order (mails without a readable Date first, in file order).
fn date_order(archive: &Archive) -> Vec<usize> {
    let mut order: Vec<(i64, usize)> = archive
        .mails
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let date = mail_parser::MessageParser::default()
                .parse(raw)
                .and_then(|m| m.date().map(|d| d.to_timestamp()))
                .unwrap_or(i64::MIN);
            (date, i)
        })
        .collect();
    order.sort();
    order.into_iter().map(|(_, i)| i).collect()
}

const SEEDS: [u64; 3] = [1, 2, 3];

/// The orders each archive is pushed in, by name.
fn orders(archive: &Archive) -> Vec<(String, Vec<usize>)> {
    let by_date = date_order(archive);
    let mut orders = vec![
        ("date".to_owned(), by_date.clone()),
        (
            "reverse".to_owned(),
            by_date.iter().rev().copied().collect(),
        ),
    ];
    for seed in SEEDS {
        let mut shuffled = by_date.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        orders.push((format!("shuffled-{seed}"), shuffled));
    }
    orders
}

/// Pushes the mails in `order` one after another; returns each mbox index's journal seq.
async fn push_all(daemon: &Daemon, channel: &str, archive: &Archive, order: &[usize]) -> Vec<u64> {
    let client = reqwest::Client::new();
    let url = daemon.url(&format!("/hooks/{channel}"));
    let mut seqs = vec![0; archive.mails.len()];
    for &i in order {
        let response = client
            .post(&url)
            .header("content-type", "message/rfc822")
            .body(archive.mails[i].clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert!(
            status == 200 || status == 202,
            "{channel} mail {i}: {status} {body}; log:\n{}",
            daemon.log()
        );
        seqs[i] = body["items"][0]["journal_seq"]
            .as_u64()
            .expect("the journal seq");
    }
    seqs
}

/// Pairs of mbox indexes that share a label.
fn pairs<L: Eq + std::hash::Hash>(labels: &[L]) -> HashSet<(usize, usize)> {
    let mut groups: HashMap<&L, Vec<usize>> = HashMap::new();
    for (i, label) in labels.iter().enumerate() {
        groups.entry(label).or_default().push(i);
    }
    let mut out = HashSet::new();
    for members in groups.values() {
        for (n, &a) in members.iter().enumerate() {
            for &b in &members[n + 1..] {
                out.insert((a, b));
            }
        }
    }
    out
}

/// Prints one run's figures and returns what failed: precision below 1, recall below 0.99,
/// or a split thread that no merge suggestion announced. `tickets` is by mbox index; a mail
/// without a ticket (quarantined) stands alone.
fn score(
    archive: &Archive,
    run: &str,
    tickets: &[Option<String>],
    suggested: usize,
) -> Vec<String> {
    let tickets: Vec<String> = tickets
        .iter()
        .enumerate()
        .map(|(i, t)| t.clone().unwrap_or_else(|| format!("none:{i}")))
        .collect();
    let unticketed = tickets.iter().filter(|t| t.starts_with("none:")).count();
    let got = pairs(&tickets);
    let want = pairs(&archive.expected);
    let right = got.intersection(&want).count();
    let precision = if got.is_empty() {
        1.0
    } else {
        right as f64 / got.len() as f64
    };
    let recall = right as f64 / want.len() as f64;
    let distinct: HashSet<&String> = tickets.iter().collect();
    println!(
        "threading {} {run}: mails={} tickets={} pairs_expected={} pairs_got={} precision={precision:.4} recall={recall:.4} merge_suggested={suggested} unticketed={unticketed}",
        archive.name,
        archive.mails.len(),
        distinct.len(),
        want.len(),
        got.len(),
    );
    let mut failures = Vec::new();
    if precision < 1.0 || recall < 0.99 {
        failures.push(format!(
            "{} {run}: precision {precision:.4}, recall {recall:.4}",
            archive.name
        ));
    }
    // A thread that arrival order split is announced as a merge suggestion.
    let threads: HashSet<&String> = archive.expected.iter().collect();
    let split = distinct.len().saturating_sub(threads.len());
    if suggested < split {
        failures.push(format!(
            "{} {run}: {split} split threads, {suggested} merge suggestions",
            archive.name
        ));
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_thread_the_same_in_any_order() {
    let archives = archives();
    let mut runs: Vec<(usize, String, String, Vec<usize>)> = Vec::new();
    let mut extra = String::new();
    for (a, archive) in archives.iter().enumerate() {
        for (name, order) in orders(archive) {
            let channel = format!("mail{}", runs.len());
            extra.push_str(&format!(
                "[channels.{channel}]\nkind = \"email\"\nmax_body_bytes = 4194304\n\n"
            ));
            runs.push((a, name, channel, order));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &extra).await;

    let (daemon_ref, archives_ref) = (&daemon, &archives);
    let pushes = runs.iter().map(|(a, _, channel, order)| async move {
        push_all(daemon_ref, channel, &archives_ref[*a], order).await
    });
    let seqs = futures::future::join_all(pushes).await;
    daemon.settled().await;
    let events = daemon.all_events().await;

    // journal seq -> ticket, from the message events; merge suggestions per channel.
    let mut ticket_of: HashMap<u64, String> = HashMap::new();
    let mut suggestions: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        let message = &event["data"]["message"];
        match event["type"].as_str() {
            Some("deskgate.ticket.created" | "deskgate.ticket.message_added") => {
                let seq = message["journal_seq"].as_u64().unwrap();
                let ticket = event["data"]["ticket"]["id"].as_str().unwrap();
                ticket_of.insert(seq, ticket.to_owned());
            }
            Some("deskgate.ticket.merge_suggested") => {
                let channel = event["channel"].as_str().unwrap_or("?").to_owned();
                *suggestions.entry(channel).or_default() += 1;
            }
            _ => {}
        }
    }

    let mut failures = Vec::new();
    for ((a, name, channel, _), seqs) in runs.iter().zip(&seqs) {
        let archive = &archives[*a];
        let tickets: Vec<Option<String>> =
            seqs.iter().map(|seq| ticket_of.get(seq).cloned()).collect();
        let suggested = suggestions
            .iter()
            .filter(|(of, _)| of.as_str() == channel.as_str())
            .map(|(_, n)| *n)
            .sum::<usize>();
        failures.extend(score(archive, name, &tickets, suggested));
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// The Message-ID of each mail (without angle brackets), as deskgate reads it.
fn message_ids(archive: &Archive) -> Vec<Option<String>> {
    archive
        .mails
        .iter()
        .map(|raw| {
            mail_parser::MessageParser::default()
                .parse(raw)
                .and_then(|m| m.message_id().map(str::to_owned))
        })
        .collect()
}

/// The same archive through IMAP: appended to a Dovecot mailbox shuffled, so that its UIDs are
/// not in Date order, and synced in one batch far larger than tokio's cooperative budget. The
/// mails are journaled in UID order, and the tickets are the expected threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_out_of_date_order_is_journaled_in_uid_order_and_threads_the_same() {
    use test_kit::dovecot::{Dovecot, PASSWORD};
    let archive = archives().pop().expect("the maven archive");
    let mut order = date_order(&archive);
    fastrand::Rng::with_seed(7).shuffle(&mut order);
    let shuffled: Vec<Vec<u8>> = order.iter().map(|&i| archive.mails[i].clone()).collect();
    let dovecot = Dovecot::start();
    dovecot.append("INBOX", &shuffled).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let extra = "initial_sync = \"all\"\nbatch_size = 1000";
    let daemon = Daemon::start(
        dir.path(),
        &dovecot.channel_toml("mail", "INBOX", &password, extra),
    )
    .await;
    let count = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["data"]["message"]["channel"] == "mail")
            .count()
    };
    test_kit::eventually(
        "every mail as an event",
        std::time::Duration::from_secs(120),
        || async {
            daemon.settled().await;
            count(&daemon.all_events().await) >= archive.mails.len()
        },
    )
    .await;
    let events = daemon.all_events().await;
    // (uid, journal seq, ticket) of each message event, and the ticket of each Message-ID.
    let mut journaled: Vec<(u64, u64)> = Vec::new();
    let mut by_external_id: HashMap<String, String> = HashMap::new();
    for event in &events {
        let message = &event["data"]["message"];
        if message["channel"] != "mail" {
            continue;
        }
        let mailbox = message["email"]["mailbox"]
            .as_str()
            .expect("the mailbox and uid");
        let uid: u64 = mailbox.rsplit('/').next().unwrap().parse().unwrap();
        journaled.push((uid, message["journal_seq"].as_u64().unwrap()));
        let ticket = event["data"]["ticket"]["id"].as_str().unwrap().to_owned();
        by_external_id.insert(message["external_id"].as_str().unwrap().to_owned(), ticket);
    }
    journaled.sort_by_key(|(_, seq)| *seq);
    let uids: Vec<u64> = journaled.iter().map(|(uid, _)| *uid).collect();
    let mut sorted = uids.clone();
    sorted.sort();
    assert_eq!(uids, sorted, "journaled in UID order");
    assert_eq!(uids.len(), archive.mails.len());

    let ids = message_ids(&archive);
    let hashed: Vec<&String> = by_external_id
        .keys()
        .filter(|k| k.starts_with("sha256:"))
        .collect();
    let tickets: Vec<Option<String>> = ids
        .iter()
        .map(|id| match id {
            Some(id) => by_external_id.get(id).cloned(),
            // The one mail without a Message-ID is known by a hash of its bytes.
            None => (hashed.len() == 1).then(|| by_external_id[hashed[0]].clone()),
        })
        .collect();
    let suggested = events
        .iter()
        .filter(|e| e["type"] == "deskgate.ticket.merge_suggested")
        .count();
    let failures = score(&archive, "imap-shuffled-7", &tickets, suggested);
    assert!(failures.is_empty(), "{failures:?}");
}

/// A kill -9 in the middle of a shuffled archive changes nothing: after the restart the whole
/// archive is pushed again (what was kept is answered as a duplicate) and the tickets are the
/// expected threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_a_shuffled_archive_changes_nothing() {
    let archive = archives().remove(0);
    let mut order = date_order(&archive);
    fastrand::Rng::with_seed(11).shuffle(&mut order);
    let dir = tempfile::tempdir().unwrap();
    let extra = "[channels.mail]\nkind = \"email\"\nmax_body_bytes = 4194304\n";
    let mut daemon = Daemon::start(dir.path(), extra).await;
    push_all(&daemon, "mail", &archive, &order[..order.len() / 2]).await;
    daemon.kill();
    daemon.restart().await;
    let seqs = push_all(&daemon, "mail", &archive, &order).await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let mut ticket_of: HashMap<u64, String> = HashMap::new();
    let mut suggested = 0;
    for event in &events {
        match event["type"].as_str() {
            Some("deskgate.ticket.created" | "deskgate.ticket.message_added") => {
                let seq = event["data"]["message"]["journal_seq"].as_u64().unwrap();
                let ticket = event["data"]["ticket"]["id"].as_str().unwrap().to_owned();
                assert!(ticket_of.insert(seq, ticket).is_none(), "mail {seq} twice");
            }
            Some("deskgate.ticket.merge_suggested") => suggested += 1,
            _ => {}
        }
    }
    let tickets: Vec<Option<String>> = seqs.iter().map(|seq| ticket_of.get(seq).cloned()).collect();
    let failures = score(&archive, "shuffled-11-killed", &tickets, suggested);
    assert!(failures.is_empty(), "{failures:?}");
}
