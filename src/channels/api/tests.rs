use super::*;
use http::HeaderMap;

fn parse_body(body: &str) -> Result<Inbound, ChannelError> {
    let headers = HeaderMap::new();
    let dir = tempfile::tempdir().unwrap();
    let blobs = crate::store::Blobs::open(dir.path()).unwrap();
    parse(&HookRequest {
        channel_id: "api",
        headers: &headers,
        body: bytes::Bytes::from(body.to_owned()),
        received_at: chrono::DateTime::UNIX_EPOCH,
        blobs: &blobs,
        region: Default::default(),
    })
}

#[test]
fn a_full_message_is_normalised() {
    let inbound = parse_body(
        r#"{"external_id":"m1","thread_id":"t1","from":{"email":" Ana@Example.com","phone":"+1 415 555 0100","name":"Ana","external_id":"c-1"},"subject":"Hi","text":"Hello","sent_at":"2026-11-23T10:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(inbound.external_id, "m1");
    assert_eq!(inbound.thread_key, "t1");
    assert_eq!(
        inbound.sender.identities,
        [
            Identity::Channel {
                channel: "api".into(),
                id: "c-1".into()
            },
            Identity::Email {
                address: "ana@example.com".into()
            },
            Identity::Phone {
                number: "+14155550100".into()
            },
        ]
    );
    assert_eq!(inbound.sender.name.as_deref(), Some("Ana"));
    assert_eq!(
        inbound.sent_at.unwrap().to_rfc3339(),
        "2026-11-23T10:00:00+00:00"
    );
}

/// Bad bodies and the error each must produce: the field is always named.
#[test]
fn bad_bodies_name_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("", "invalid JSON"),
        ("{", "invalid JSON"),
        ("[]", "invalid JSON"),
        (
            r#"{"thread_id":"t","from":{"email":"a@b.co"},"text":"x"}"#,
            "missing field `external_id`",
        ),
        (
            r#"{"external_id":1,"thread_id":"t","from":{},"text":"x"}"#,
            "external_id: invalid type",
        ),
        (
            r#"{"external_id":"m","thread_id":"t","from":{"email":5},"text":"x"}"#,
            "from.email: invalid type",
        ),
        (
            r#"{"external_id":"m","thread_id":"t","from":{"mail":"a@b.co"},"text":"x"}"#,
            "from.mail: unknown field `mail`",
        ),
        (
            r#"{"external_id":"m","thread_id":"t","from":{"email":"a@b.co"},"text":"x","sent_at":"yesterday"}"#,
            "sent_at: ",
        ),
        (
            r#"{"external_id":"m","thread_id":"t","from":{"email":"a@b.co"},"text":"x"} trailing"#,
            "invalid JSON: trailing characters",
        ),
        (
            r#"{"external_id":" ","thread_id":"t","from":{"email":"a@b.co"},"text":"x"}"#,
            "external_id: must not be empty",
        ),
        (
            r#"{"external_id":"m","thread_id":"t","from":{},"text":"x"}"#,
            "from: needs at least one of email, phone or external_id",
        ),
        (
            r#"{"external_id":"m","thread_id":"t","from":{"email":"nope"},"text":"x"}"#,
            "from.email: \"nope\" is not an email address",
        ),
        (
            r#"{"external_id":"m","thread_id":"t","from":{"phone":"call me"},"text":"x"}"#,
            "from.phone: \"call me\" is not a phone number",
        ),
    ];
    for (body, expected) in cases {
        let error = parse_body(body).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{body:?}: expected {expected:?} in {error:?}"
        );
    }
    // Deep nesting is refused without recursing (and without a stack overflow).
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(parse_body(&deep), Err(ChannelError::Malformed(_))));
    let deep = format!(
        r#"{{"external_id":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(parse_body(&deep), Err(ChannelError::Malformed(_))));
}
