use chrono::{TimeZone, Utc};

use super::mime::{parse, MailError};
use super::*;
use crate::model::Identity;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

fn email(address: &str) -> Identity {
    crate::identity::email(address).unwrap()
}

const FORWARD: &str = "From: Agent Smith <agent@desk.example>\r\n\
To: support@desk.example\r\n\
Subject: Fwd: My order never arrived\r\n\
Message-ID: <fwd-1@desk.example>\r\n\
Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n\
\r\n\
Please handle this one.\r\n\
\r\n\
---------- Forwarded message ---------\r\n\
From: Jane Customer <Jane@Customer.example>\r\n\
Date: Sun, 22 Nov 2026 18:00\r\n\
Subject: My order never arrived\r\n\
\r\n\
Where is my parcel?\r\n";

#[test]
fn a_forward_names_the_original_sender_as_sender_by_default() {
    let parsed = parse("mail", FORWARD.as_bytes(), at(), &EmailConfig::default()).unwrap();
    let inbound = parsed.inbound;
    assert!(inbound.flags.forwarded);
    assert!(!inbound.flags.automatic);
    assert_eq!(
        inbound.sender.identities,
        vec![email("jane@customer.example")]
    );
    assert_eq!(inbound.sender.name.as_deref(), Some("Jane Customer"));
    assert_eq!(
        inbound.flags.original_sender.as_ref().unwrap().identities,
        vec![email("jane@customer.example")]
    );
    assert_eq!(
        inbound.extra["forwarded_by"]["identities"][0]["address"],
        "agent@desk.example"
    );
}

#[test]
fn a_forward_keeps_the_forwarder_as_sender_when_configured() {
    let options = EmailConfig {
        original_sender_of_forwards: false,
        ..EmailConfig::default()
    };
    let inbound = parse("mail", FORWARD.as_bytes(), at(), &options)
        .unwrap()
        .inbound;
    assert!(inbound.flags.forwarded);
    assert_eq!(inbound.sender.identities, vec![email("agent@desk.example")]);
    assert!(inbound.extra.get("forwarded_by").is_none());
}

#[test]
fn html_only_mail_gets_text_and_keeps_its_html_and_attachments() {
    let raw = "From: a@example.com\r\nSubject: =?UTF-8?B?w6l0w6k=?=\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>there</b></p>\r\n\
--b\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\n\
Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
    let parsed = parse("mail", raw.as_bytes(), at(), &EmailConfig::default()).unwrap();
    let inbound = &parsed.inbound;
    assert_eq!(inbound.subject.as_deref(), Some("été"));
    assert!(inbound.text.contains("Hello there"), "{}", inbound.text);
    assert!(inbound.html.as_deref().unwrap().contains("<b>there</b>"));
    assert_eq!(inbound.attachments.len(), 1);
    let attachment = &inbound.attachments[0];
    assert_eq!(attachment.name.as_deref(), Some("invoice.pdf"));
    assert_eq!(attachment.content_type, "application/pdf");
    assert_eq!(attachment.size, 9);
    assert_eq!(
        parsed.contents,
        vec![(attachment.id.clone(), b"%PDF-1.4\n".to_vec())]
    );
    // Without a Message-ID the id is a stable hash of the bytes.
    assert_eq!(inbound.external_id, content_id(raw.as_bytes()));
}

#[test]
fn to_record_stores_attachments_before_naming_them_and_quarantines_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path()).unwrap();
    let raw = "From: a@example.com\r\nMessage-ID: <x@y>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n\
--b\r\nContent-Type: image/png; name=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n";
    let mailbox = MailboxRef {
        folder: "INBOX".to_owned(),
        uid_validity: 7,
        uid: 42,
    };
    let Record::Inbound(inbound) =
        to_record("mail", raw.as_bytes(), at(), &blobs, Some(&mailbox)).unwrap()
    else {
        panic!("a message")
    };
    let attachment = &inbound.attachments[0];
    assert_eq!(
        blobs.get(&attachment.id).unwrap().unwrap().len() as u64,
        attachment.size
    );
    assert_eq!(
        inbound.email.as_ref().unwrap().mailbox.as_deref(),
        Some("INBOX/7/42")
    );

    let small = EmailConfig {
        max_message_bytes: 10,
        ..EmailConfig::default()
    };
    let record = to_record_with("mail", raw.as_bytes(), at(), &blobs, None, &small).unwrap();
    let Record::Quarantine(entry) = record else {
        panic!("quarantined")
    };
    assert!(entry
        .reason
        .contains("over this channel's limit of 10 bytes"));
    let kept = blobs
        .get(entry.raw_blob.as_deref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(kept, raw.as_bytes());
}

#[test]
fn a_person_without_a_sender_address_is_quarantined_but_a_bounce_is_not() {
    let anonymous = "Subject: hello\r\n\r\nwho am I\r\n";
    assert_eq!(
        parse("mail", anonymous.as_bytes(), at(), &EmailConfig::default()).unwrap_err(),
        MailError::NoSender
    );
    let bounce = "From: MAILER-DAEMON <>\r\nReturn-Path: <>\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n\
<gone@example.org>: host mx.example.org said: 550 5.1.1 user unknown\r\n";
    let inbound = parse("mail", bounce.as_bytes(), at(), &EmailConfig::default())
        .unwrap()
        .inbound;
    assert!(inbound.sender.identities.is_empty());
    assert_eq!(inbound.extra["from_text"], "MAILER-DAEMON <>");
    let flags = inbound.flags;
    assert!(flags.automatic);
    let bounce = flags.bounce.unwrap();
    assert_eq!(bounce.recipient.as_deref(), Some("gone@example.org"));
    assert_eq!(bounce.status.as_deref(), Some("5.1.1"));
}

#[test]
fn auto_submitted_no_is_a_person() {
    let raw = "From: a@example.com\r\nAuto-Submitted: no\r\nSubject: hi\r\n\r\nhello\r\n";
    let inbound = parse("mail", raw.as_bytes(), at(), &EmailConfig::default())
        .unwrap()
        .inbound;
    assert!(!inbound.flags.automatic);
    for header in [
        "Auto-Submitted: auto-generated",
        "Precedence: bulk",
        "X-Autoreply: yes",
        "List-Id: <support.lists.example>",
        "X-Auto-Response-Suppress: All",
    ] {
        let raw = format!("From: a@example.com\r\n{header}\r\nSubject: hi\r\n\r\nhello\r\n");
        let inbound = parse("mail", raw.as_bytes(), at(), &EmailConfig::default())
            .unwrap()
            .inbound;
        assert!(inbound.flags.automatic, "{header}");
    }
}

#[test]
fn a_customer_forwarding_their_bounce_is_a_forward_not_a_bounce() {
    let raw = "From: Jane <jane@customer.example>\r\nSubject: Fwd: Undelivered Mail Returned to Sender\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nMy mail to you bounced, why?\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\n\
From: MAILER-DAEMON@mx.customer.example\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n\
550 5.1.1 <support@desk.example>: user unknown\r\n--b--\r\n";
    let inbound = parse("mail", raw.as_bytes(), at(), &EmailConfig::default())
        .unwrap()
        .inbound;
    assert!(inbound.flags.bounce.is_none());
    assert!(!inbound.flags.automatic);
    assert!(inbound.flags.forwarded);
    // The original author is the mailer-daemon; a machine never becomes the sender.
    assert_eq!(
        inbound.sender.identities,
        vec![email("jane@customer.example")]
    );
}

/// Raw 8-bit headers in a legacy charset (declared by the text part, or found by detection)
/// and loosely written senders read as a person's client shows them.
#[test]
fn legacy_charset_headers_and_loose_senders_read_as_clients_show_them() {
    let read = |raw: &[u8]| {
        parse("mail", raw, at(), &EmailConfig::default())
            .unwrap()
            .inbound
    };
    // GB2312 bytes of 中文 in the subject and the display name; the part declares gb2312.
    let mut gb =
        b"From: \xd6\xd0\xce\xc4 <li@example.cn>\r\nSubject: \xd6\xd0\xce\xc4\r\n".to_vec();
    gb.extend_from_slice(b"Content-Type: text/plain; charset=gb2312\r\n\r\n\xd6\xd0\xce\xc4\r\n");
    let inbound = read(&gb);
    assert_eq!(inbound.subject.as_deref(), Some("中文"));
    assert_eq!(inbound.sender.name.as_deref(), Some("中文"));
    assert_eq!(inbound.sender.identities, vec![email("li@example.cn")]);
    // Shift_JIS with no charset anywhere: detection.
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("日本語のお問い合わせについて");
    let mut raw = b"From: taro@example.jp\r\nSubject: ".to_vec();
    raw.extend_from_slice(&sjis);
    raw.extend_from_slice(b"\r\n\r\n");
    raw.extend_from_slice(&sjis);
    assert_eq!(
        read(&raw).subject.as_deref(),
        Some("日本語のお問い合わせについて")
    );
    // A loose From is repaired and flagged; a bare MAILER-DAEMON is machine mail.
    let loose = read(b"From: Test test@example.com\r\nSubject: hi\r\n\r\nhi\r\n");
    assert_eq!(loose.sender.identities, vec![email("test@example.com")]);
    assert_eq!(loose.extra["sender_repaired"], true);
    assert_eq!(loose.extra["from_text"], "Test test@example.com");
    let daemon = read(b"From: MAILER-DAEMON\r\nSubject: failure\r\n\r\nNo.\r\n");
    assert!(daemon.flags.automatic);
}
