use std::path::Path;

use super::*;

#[test]
fn the_shipped_config_is_valid() {
    let config = Config::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/deskgate.toml"
    )))
    .expect("config/deskgate.toml validates");
    assert_eq!(config.channels["api"].kind, ChannelKind::Api);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let config = Config::parse(
        r#"
        [journal]
        queue_capacity = 0
        max_batch = 0
        retention_secs = 59
        [channels.web]
        kind = "api"
        max_body_bytes = 0
        [channels."Bad Id"]
        kind = "api"
        "#,
    )
    .expect("parses");
    let problems: Vec<String> = config.validate().iter().map(|p| p.to_string()).collect();
    assert_eq!(
        problems,
        [
            "journal.queue_capacity: must be > 0",
            "journal.max_batch: must be > 0",
            "journal.retention_secs: must be at least 60 (and above the longest resend window of every source)",
            "channels.Bad Id: channel ids must be 1-64 characters of a-z, 0-9, '-' and '_'",
            "channels.web.max_body_bytes: must be > 0",
        ]
    );
}

#[test]
fn unknown_fields_and_wrong_types_name_their_path() {
    let problem = Config::parse("[channels.web]\nkind = \"api\"\nmax_body_byte = 3\n").unwrap_err();
    assert_eq!(problem.path, "channels.web.max_body_byte");
    assert!(
        problem.message.contains("unknown field `max_body_byte`"),
        "{problem}"
    );
    assert!(problem.message.contains("line 3"), "{problem}");

    let problem =
        Config::parse("[channels.web]\nkind = \"api\"\nmax_body_bytes = \"big\"\n").unwrap_err();
    assert_eq!(problem.path, "channels.web.max_body_bytes");

    let problem = Config::parse("[channels.web]\nkind = \"carrier-pigeon\"\n").unwrap_err();
    assert_eq!(problem.path, "channels.web.kind");
}

#[test]
fn an_empty_file_is_a_valid_config_with_defaults() {
    let config = Config::parse("").expect("parses");
    assert!(config.validate().is_empty());
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert!(config.channels.is_empty());
}

/// Broken configs and the message each must produce, as `check-config` prints them.
#[test]
fn broken_configs_and_their_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "[server]\nlisten = \"0.0.0.0:8080\"\n[events]\nrequire_token = false\n",
            "events.require_token: may be false only when the events API listens on a loopback address",
        ),
        (
            "[control]\ntoken_files = [\"/nonexistent/token\"]\n",
            "control.token_files[0]: cannot read secret file /nonexistent/token",
        ),
        ("[server]\nlisten = \"nowhere\"\n", "server.listen: invalid socket address"),
        ("[events]\ninstance = \"Has Spaces\"\n", "events.instance: must be 1-64 characters"),
        ("[events]\nsource = \"/deskgate\"\n", "events.source: must be an absolute URI"),
        ("[events]\nsource = \"https://x.example/?a=1\"\n", "events.source: must be an absolute URI"),
        ("[events]\nsource = \"urn:\"\n", "events.source: must be an absolute URI"),
        ("[log]\nformat = \"xml\"\n", "log.format: unknown variant `xml`"),
        ("[server]\nshutdown_grace_secs = 0\n", "server.shutdown_grace_secs: must be > 0"),
        ("[server]\nheader_read_timeout_secs = 0\n", "server.header_read_timeout_secs: must be > 0"),
        ("[server]\nbody_read_timeout_secs = 0\n", "server.body_read_timeout_secs: must be > 0"),
        (
            "[server]\nlisten = \"127.0.0.1:8080\"\ncontrol_listen = \"127.0.0.1:8080\"\n",
            "server.control_listen: must differ from server.listen",
        ),
        ("[server]\ncontrol_listen = \"localhost\"\n", "server.control_listen: invalid socket address"),
        (
            "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n",
            "server.trusted_proxies[1]: invalid IP address syntax",
        ),
        ("[server]\ntrusted_proxies = \"127.0.0.1\"\n", "server.trusted_proxies: invalid type"),
        ("[control]\ntoken_files = \"/etc/token\"\n", "control.token_files: invalid type"),
        ("[log]\nfilter = \"deskgate=loud\"\n", "log.filter: is not a valid tracing filter"),
        ("[log]\nformats = \"json\"\n", "log.formats: unknown field `formats`"),
    ];
    for (text, expected) in cases {
        let problems: Vec<String> = match Config::parse(text) {
            Err(problem) => vec![problem.to_string()],
            Ok(config) => config.validate().iter().map(ToString::to_string).collect(),
        };
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{text:?}: expected {expected:?} in {problems:?}"
        );
    }
}

#[test]
fn a_short_token_is_refused_and_credentials_directory_paths_expand() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short"), "abc\n").unwrap();
    std::fs::write(dir.path().join("good"), "0123456789abcdef0123\n").unwrap();
    let config = ControlConfig {
        token_files: vec![dir.path().join("short")],
    };
    let problem = config.load_tokens().unwrap_err().remove(0);
    assert!(
        problem.message.contains("at least 16 characters"),
        "{problem}"
    );
    assert!(
        !problem.message.contains("abc"),
        "the secret is never echoed"
    );

    // Only this test sets the variable; other tests do not read it.
    std::env::set_var("CREDENTIALS_DIRECTORY", dir.path());
    let config = ControlConfig {
        token_files: vec![PathBuf::from("$CREDENTIALS_DIRECTORY/good")],
    };
    assert_eq!(config.load_tokens().unwrap(), ["0123456789abcdef0123"]);
    // Every other secret (channel secrets, mailbox and SMTP passwords, Graph tokens, webhook
    // sink secrets) is read through the same reader, so the same path works for each.
    let under_credentials = Path::new("$CREDENTIALS_DIRECTORY/good");
    assert_eq!(
        super::secret::read_secret(under_credentials).unwrap(),
        b"0123456789abcdef0123"
    );
    assert_eq!(
        super::read_secret_file(under_credentials).unwrap().trim(),
        "0123456789abcdef0123"
    );
    let missing = super::read_secret_file(Path::new("$CREDENTIALS_DIRECTORY/none")).unwrap_err();
    assert!(
        missing.contains(&dir.path().join("none").display().to_string()),
        "the error names the real file: {missing}"
    );
}

#[test]
fn a_channel_of_every_kind_can_be_built_with_defaults() {
    for kind in [
        ChannelKind::Api,
        ChannelKind::Email,
        ChannelKind::Messenger,
        ChannelKind::Whatsapp,
        ChannelKind::Chat,
        ChannelKind::Form,
    ] {
        assert_eq!(ChannelConfig::of_kind(kind).kind, kind);
    }
}

#[test]
fn the_event_source_is_the_configured_uri_or_the_instance_urn() {
    let id = uuid::Uuid::nil();
    let mut events = super::EventsConfig::default();
    assert_eq!(
        events.source(id),
        "urn:deskgate:00000000-0000-0000-0000-000000000000"
    );
    events.source = Some("https://desk.example.com/deskgate/".to_owned());
    assert_eq!(events.source(id), "https://desk.example.com/deskgate");
}

/// A chat transcript's table is checked field by field and its mailbox against
/// `[outbound.mailboxes]`; a valid one passes.
#[test]
fn chat_transcripts_are_checked_with_their_paths() {
    let config = Config::parse(
        r#"
        [channels.talk]
        kind = "chat"
        [channels.talk.chat.transcript]
        from = "chat at acme"
        from_name = " "
        mailbox = "ghost"
        max_messages = 0
        max_bytes = 0
        [channels.fine]
        kind = "chat"
        chat = { transcript = { from = "chat@acme.test", mailbox = "support" } }
        [outbound.mailboxes.support]
        address = "support@acme.test"
        company_name = "Acme"
        [outbound.mailboxes.support.smtp]
        host = "127.0.0.1"
        tls = "plain"
        "#,
    )
    .expect("parses");
    let problems: Vec<String> = config.validate().iter().map(|p| p.to_string()).collect();
    assert_eq!(
        problems,
        [
            "channels.talk.chat.transcript.from: \"chat at acme\" is not an email address",
            "channels.talk.chat.transcript.from_name: must be one non-empty line",
            "channels.talk.chat.transcript.max_messages: must be > 0",
            "channels.talk.chat.transcript.max_bytes: must be > 0",
            "channels.talk.chat.transcript.mailbox: names mailbox \"ghost\", which is not in \
             [outbound.mailboxes] (transcripts are sent through a mailbox's SMTP server)",
        ]
    );
    let missing = Config::parse("[channels.talk]\nkind = \"chat\"\nchat = { transcript = {} }\n");
    assert!(
        missing.is_err_and(|p| p.message.contains("missing field `from`")),
        "from is required"
    );
}
