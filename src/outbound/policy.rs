//! Who may receive automatic mail, and the messaging windows for replies.
//!
//! Pure functions of their inputs: the processor calls them with times from journal records.

use chrono::{DateTime, Duration, Utc};

use crate::model::{Identity, Inbound};

/// Local parts of addresses that belong to machines; automatic mail to them only feeds loops.
const MACHINE_LOCAL_PARTS: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "no-reply",
    "noreply",
    "no_reply",
    "do-not-reply",
    "donotreply",
    "do_not_reply",
    "bounce",
    "bounces",
    "auto-reply",
    "autoreply",
];

/// Why an address must not get automatic mail by its form alone, if it must not.
pub fn machine_address(address: &str) -> Option<String> {
    let local = address.split('@').next().unwrap_or_default().to_lowercase();
    let base = local.split('+').next().unwrap_or_default();
    let machine = MACHINE_LOCAL_PARTS.iter().any(|m| {
        base.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    });
    machine.then(|| format!("{address} is a machine address (mailer-daemon, no-reply or alike)"))
}

/// Why a customer message means no automatic answer to its sender, if it does.
pub fn automatic_inbound(inbound: &Inbound) -> Option<String> {
    if inbound.flags.bounce.is_some() {
        return Some("the customer's last mail was a delivery failure report".to_owned());
    }
    if inbound.flags.automatic {
        return Some(
            "the customer's last mail was automatic (an auto-reply or bulk mail)".to_owned(),
        );
    }
    inbound
        .sender
        .identities
        .iter()
        .find_map(|identity| match identity {
            Identity::Email { address } => machine_address(address),
            _ => None,
        })
}

/// A hard bounce: a permanent (5.x.x) failure, or a report without a status.
pub fn hard_bounce(inbound: &Inbound) -> Option<String> {
    let bounce = inbound.flags.bounce.as_ref()?;
    let recipient = bounce.recipient.as_ref()?.trim().to_lowercase();
    let hard = bounce.status.as_deref().is_none_or(|s| s.starts_with('5'));
    (hard && !recipient.is_empty()).then_some(recipient)
}

/// How a Messenger reply may be sent, measured from the customer's last message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessengerWindow {
    /// Inside 24 hours: `messaging_type = RESPONSE`.
    Response,
    /// Inside 7 days: `messaging_type = MESSAGE_TAG`, `tag = HUMAN_AGENT`.
    HumanAgent,
}

pub fn messenger_window(
    last_customer_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<MessengerWindow, String> {
    let Some(last) = last_customer_at else {
        return Err("Messenger allows a reply only after the customer has written: no message from this customer is known".to_owned());
    };
    let age = now - last;
    if age <= Duration::hours(24) {
        Ok(MessengerWindow::Response)
    } else if age <= Duration::days(7) {
        Ok(MessengerWindow::HumanAgent)
    } else {
        Err(format!(
            "Messenger allows a human agent's reply only within 7 days of the customer's last message (HUMAN_AGENT tag); the last was at {}",
            last.to_rfc3339()
        ))
    }
}

pub fn whatsapp_window(
    last_customer_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    match last_customer_at {
        Some(last) if now - last <= Duration::hours(24) => Ok(()),
        Some(last) => Err(format!(
            "outside WhatsApp's 24-hour customer service window (the customer last wrote at {}): only an approved message template can be sent now, and deskgate does not send templates yet",
            last.to_rfc3339()
        )),
        None => Err("outside WhatsApp's 24-hour customer service window (no message from this customer is known): only an approved message template can be sent".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bounce, Sender};

    #[test]
    fn machine_addresses_are_recognised() {
        for a in [
            "MAILER-DAEMON@example.com",
            "noreply@x.io",
            "no-reply+abc@x.io",
            "postmaster@x.io",
            "bounces-123@lists.x.io",
        ] {
            assert!(machine_address(a).is_some(), "{a}");
        }
        for a in ["ana@example.com", "norah@x.io", "bounceback.fan@x.io"] {
            assert!(machine_address(a).is_none(), "{a}");
        }
    }

    #[test]
    fn windows_follow_meta_rules() {
        let t = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let at = |h: i64| t + Duration::hours(h);
        assert_eq!(
            messenger_window(Some(t), at(23)),
            Ok(MessengerWindow::Response)
        );
        assert_eq!(
            messenger_window(Some(t), at(25)),
            Ok(MessengerWindow::HumanAgent)
        );
        assert!(messenger_window(Some(t), at(24 * 7 + 1))
            .unwrap_err()
            .contains("7 days"));
        assert!(messenger_window(None, at(1)).is_err());
        assert!(whatsapp_window(Some(t), at(23)).is_ok());
        assert!(whatsapp_window(Some(t), at(25))
            .unwrap_err()
            .contains("template"));
    }

    #[test]
    fn bounces_are_hard_only_when_permanent() {
        let mut inbound = Inbound::new("m", "1", "1", Sender::default(), "", Utc::now());
        inbound.flags.bounce = Some(Bounce {
            recipient: Some("Gone@Example.com".into()),
            status: Some("4.2.2".into()),
            ..Bounce::default()
        });
        assert_eq!(hard_bounce(&inbound), None);
        inbound.flags.bounce.as_mut().unwrap().status = Some("5.1.1".into());
        assert_eq!(hard_bounce(&inbound).as_deref(), Some("gone@example.com"));
        assert!(automatic_inbound(&inbound).is_some());
    }
}
