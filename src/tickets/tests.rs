use chrono::Utc;

use super::*;

#[test]
fn customer_replies_exclude_automatic_mail_bounces_forwards_and_echoes() {
    use crate::model::{Bounce, Inbound, MessageKind, Sender};
    let plain = Inbound::new("api", "m1", "t1", Sender::default(), "hi", Utc::now());
    assert!(is_customer_reply(&plain));
    let mut automatic = plain.clone();
    automatic.flags.automatic = true;
    let mut bounce = plain.clone();
    bounce.flags.bounce = Some(Bounce::default());
    let mut forwarded = plain.clone();
    forwarded.flags.forwarded = true;
    let mut echo = plain.clone();
    echo.kind = MessageKind::Echo;
    for inbound in [automatic, bounce, forwarded, echo] {
        assert!(!is_customer_reply(&inbound), "{inbound:?}");
    }
}
