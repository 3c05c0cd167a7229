//! What Prometheus sees at start-up: one scrape of a daemon with a channel of every kind, a
//! mailbox and a webhook sink, before any traffic. `promtool check metrics` accepts it, every
//! series the README and `docs/metrics.md` name is on it (at zero, with the configured channel
//! and sink names as labels), and nothing on it is undocumented. The docs' table is the
//! registration list in `src/telemetry.rs`, and every series the source records is on that list.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use deskgate::telemetry::{reference, Type, SERIES};

use super::metric_values;
use test_kit::{free_port, Daemon};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `deskgate_*` family names with their `# TYPE`, and those with a `# HELP`, on a scrape.
fn families(text: &str) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut types = BTreeMap::new();
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("TYPE"), Some(name)) if name.starts_with("deskgate_") => {
                types.insert(name.to_owned(), words.next().unwrap_or("").to_owned());
            }
            (Some("#"), Some("HELP"), Some(name)) if name.starts_with("deskgate_") => {
                helped.insert(name.to_owned());
            }
            _ => {}
        }
    }
    (types, helped)
}

/// Every `deskgate_*` name the README and the pages under `docs/` mention; a histogram's
/// `_bucket`, `_sum` and `_count` (as in a PromQL example) count as the histogram.
fn documented(histograms: &BTreeSet<&str>) -> BTreeSet<String> {
    let mut files = vec![Path::new(ROOT).join("README.md")];
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (start, _) in text.match_indices("deskgate_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // `deskgate_` alone is the prefix, talked about, not a series.
            if name.ends_with('_') {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| histograms.contains(base));
            names.insert(base.map_or(name.clone(), str::to_owned));
        }
    }
    names
}

fn secret(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{name}-not-a-real-secret")).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn the_first_scrape_passes_promtool_and_shows_every_documented_series() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Nothing answers on the mailbox's or the sink's port: neither matters before traffic.
    let extra = format!(
        "[channels.mail]\nkind = \"email\"\n[channels.mail.imap]\nhost = \"127.0.0.1\"\n\
         port = {}\ntls = \"plain\"\nuser = \"support\"\npassword_file = \"{}\"\n\
         [channels.chat]\nkind = \"chat\"\n\
         [channels.web]\nkind = \"form\"\n\
         [channels.wa]\nkind = \"whatsapp\"\nmeta = {{ app_secret_file = \"{}\", verify_token_file = \"{}\" }}\n\
         [channels.fb]\nkind = \"messenger\"\nmeta = {{ app_secret_file = \"{}\", verify_token_file = \"{}\" }}\n\
         [sinks.crm]\nkind = \"webhook\"\n[sinks.crm.webhook]\nurl = \"http://127.0.0.1:{}/events\"\n\
         secret_files = [\"{}\"]\n",
        free_port(),
        secret(d, "imap.password"),
        secret(d, "app.secret"),
        secret(d, "verify.token"),
        secret(d, "app.secret"),
        secret(d, "verify.token"),
        free_port(),
        secret(d, "crm.secret"),
    );
    std::fs::write(
        d.join("crm.secret"),
        "whsec_c3RhcnQtdXAgc2NyYXBlIHRlc3Qgc2VjcmV0",
    )
    .unwrap();
    let daemon = Daemon::start(d, &extra).await;
    let text = reqwest::get(daemon.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs the prometheus package)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let verdict = promtool.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&verdict.stdout).into_owned()
        + &String::from_utf8_lossy(&verdict.stderr);
    assert!(
        verdict.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\non:\n{text}"
    );

    let (types, helped) = families(&text);
    let histograms: BTreeSet<&str> = types
        .iter()
        .filter(|(_, kind)| *kind == "histogram")
        .map(|(name, _)| name.as_str())
        .collect();
    let documented = documented(&histograms);
    let scraped: BTreeSet<String> = types.keys().cloned().collect();
    let missing: Vec<&String> = documented.difference(&scraped).collect();
    assert!(missing.is_empty(), "documented, not scraped: {missing:?}");
    let undocumented: Vec<&String> = scraped.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "scraped, undocumented: {undocumented:?}"
    );
    assert_eq!(helped, scraped, "every series has a HELP line");

    // The configured names are labels already, at zero.
    let zero = |name: &str, labels: &str| {
        let values = metric_values(&text, name);
        assert_eq!(
            values.get(labels),
            Some(&0.0),
            "{name}{{{labels}}} in {values:?}"
        );
    };
    for channel in ["api", "chat", "fb", "mail", "wa", "web"] {
        zero(
            "deskgate_inbound_total",
            &format!("channel={channel},outcome=accepted"),
        );
        zero("deskgate_quarantined_total", &format!("channel={channel}"));
    }
    zero("deskgate_webhook_signature_failures_total", "channel=wa");
    zero("deskgate_webhook_items_total", "channel=fb,kind=message");
    zero("deskgate_rate_limited_total", "channel=web");
    zero(
        "deskgate_email_parsed_total",
        "channel=mail,outcome=message",
    );
    zero("deskgate_imap_fetched_total", "channel=mail");
    zero("deskgate_sink_delivered_total", "sink=crm");
    zero("deskgate_sink_dead_lettered_total", "sink=crm");
    zero("deskgate_outbound_total", "outcome=failed,via=email");
    zero("deskgate_config_reloads_total", "outcome=rejected");
    zero("deskgate_tickets_forgotten_total", "");
    // Histograms show with no observations.
    let hooks = metric_values(&text, "deskgate_hook_duration_seconds");
    assert!(hooks.contains_key("channel=wa"), "{hooks:?}");
    let requests = metric_values(&text, "deskgate_sink_request_duration_seconds");
    assert!(requests.contains_key("sink=crm"), "{requests:?}");
    // Only what can happen is there: no IMAP series for a channel without a mailbox.
    let connected = metric_values(&text, "deskgate_imap_connected");
    assert_eq!(
        connected.keys().collect::<Vec<_>>(),
        ["channel=mail"],
        "{connected:?}"
    );
}

const BEGIN: &str = "<!-- BEGIN generated from SERIES in src/telemetry.rs -->\n";
const END: &str = "<!-- END generated -->";

/// `docs/metrics.md` shows exactly the registration list. On a mismatch the expected table is
/// printed, to paste between the markers.
#[test]
fn the_metrics_page_lists_exactly_the_registered_series() {
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/metrics.md")).unwrap();
    let start = page.find(BEGIN).expect("begin marker in docs/metrics.md") + BEGIN.len();
    let end = page.find(END).expect("end marker in docs/metrics.md");
    let expected = reference();
    assert!(
        page[start..end] == expected,
        "docs/metrics.md is out of date; between the markers it should read:\n{expected}"
    );
}

/// The `"deskgate_…"` string literals under `src/` (outside the list itself) are exactly the
/// registration list: a series added in code without registration fails here, not on a
/// dashboard, and a registered series nothing records any more is not left on the page.
#[test]
fn every_series_the_source_records_is_registered() {
    let registered: BTreeSet<&str> = SERIES.iter().map(|s| s.name).collect();
    let mut recorded = BTreeSet::new();
    let mut pending = vec![Path::new(ROOT).join("src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("telemetry.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                for (start, _) in text.match_indices("\"deskgate_") {
                    let name: String = text[start + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    recorded.insert(name);
                }
            }
        }
    }
    let recorded: BTreeSet<&str> = recorded.iter().map(String::as_str).collect();
    let unregistered: Vec<_> = recorded.difference(&registered).collect();
    assert!(
        unregistered.is_empty(),
        "recorded, not in SERIES: {unregistered:?}"
    );
    let unused: Vec<_> = registered.difference(&recorded).collect();
    assert!(unused.is_empty(), "in SERIES, recorded nowhere: {unused:?}");

    for series in SERIES {
        assert_eq!(
            series.kind == Type::Counter,
            series.name.ends_with("_total"),
            "counters and only counters end in _total: {}",
            series.name
        );
    }
}
