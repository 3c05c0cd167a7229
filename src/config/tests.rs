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
