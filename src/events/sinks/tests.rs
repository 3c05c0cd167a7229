use super::webhook::sign;

#[test]
fn nats_subjects_put_the_ticket_in_one_token() {
    use super::nats::nats_subject;
    assert_eq!(
        nats_subject("deskgate.events", "6f1c-7a", "deskgate.ticket.created"),
        "deskgate.events.6f1c-7a.ticket.created"
    );
    assert_eq!(
        nats_subject("p", "journal/7 a.b*>", "deskgate.inbound.quarantined"),
        "p.journal/7_a_b__.inbound.quarantined"
    );
    assert_eq!(nats_subject("p", "", "other.kind"), "p._.other.kind");
}

#[test]
fn retry_after_takes_seconds_and_http_dates() {
    use super::webhook::parse_retry_after;
    use std::time::{Duration, SystemTime};
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
        Some(Duration::from_secs(30))
    );
    // Already past: retry on the schedule.
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
}

#[test]
fn signatures_match_the_standard_webhooks_example() {
    // The example from the Standard Webhooks specification's reference libraries.
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let signature = sign(
        &[key.clone(), b"another secret of some length".to_vec()],
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    let mut parts = signature.split(' ');
    assert_eq!(
        parts.next(),
        Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    );
    assert!(parts.next().unwrap().starts_with("v1,"));
    assert_eq!(parts.next(), None);
}
