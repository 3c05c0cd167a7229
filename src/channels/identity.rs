//! Normalising the identities channels report, so that the same person is found again.

use crate::model::Identity;

/// An email address, trimmed and lower-cased, if it looks like one (`local@domain`).
pub fn email(raw: &str) -> Option<Identity> {
    let address = raw.trim().to_lowercase();
    let (local, domain) = address.rsplit_once('@')?;
    let plausible = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>');
    plausible.then_some(Identity::Email { address })
}

/// A phone number as `+` and digits, if it has a plausible number of digits.
pub fn phone(raw: &str) -> Option<Identity> {
    let trimmed = raw.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let allowed = trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    (allowed && (5..=15).contains(&digits.len())).then(|| Identity::Phone {
        number: format!("+{digits}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            email("  Ana@Example.COM "),
            Some(Identity::Email {
                address: "ana@example.com".into()
            })
        );
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "ana@localhost",
            "a b@example.com",
            "ana@example.",
        ] {
            assert_eq!(email(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn phones_keep_only_digits() {
        assert_eq!(
            phone("+1 (415) 555-0100"),
            Some(Identity::Phone {
                number: "+14155550100".into()
            })
        );
        assert_eq!(phone("call me"), None);
        assert_eq!(phone("123"), None);
    }

    #[test]
    fn normalising_twice_equals_normalising_once() {
        for raw in [" Ana@Example.com", "+44 20 7946 0958"] {
            let once = email(raw).or_else(|| phone(raw)).expect("valid");
            let text = match &once {
                Identity::Email { address } => address.clone(),
                Identity::Phone { number } => number.clone(),
                Identity::Channel { id, .. } => id.clone(),
            };
            assert_eq!(email(&text).or_else(|| phone(&text)), Some(once));
        }
    }
}
