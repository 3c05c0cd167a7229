//! `[contacts]`: how identities are normalised and contacts recognised.

use serde::Deserialize;

use super::ConfigProblem;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactsConfig {
    /// ISO 3166 region (such as `GB` or `US`) for phone numbers written without a country
    /// code; without it, such numbers are not phone identities.
    pub default_region: Option<String>,
}

impl ContactsConfig {
    pub fn validate(&self, problems: &mut Vec<ConfigProblem>) {
        if let Some(region) = &self.default_region {
            if let Err(message) = phone_region(region) {
                problems.push(ConfigProblem {
                    path: "contacts.default_region".to_owned(),
                    message,
                });
            }
        }
    }
}

/// Config imports nothing of ours, so the region check goes to the phone library directly.
fn phone_region(code: &str) -> Result<(), String> {
    use std::str::FromStr;
    phonenumber::country::Id::from_str(&code.trim().to_ascii_uppercase())
        .map(|_| ())
        .map_err(|_| format!("{code:?} is not a region code libphonenumber knows (such as GB)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_region_must_be_one_libphonenumber_knows() {
        let mut problems = Vec::new();
        for ok in [None, Some("GB"), Some("us")] {
            let config = ContactsConfig {
                default_region: ok.map(str::to_owned),
            };
            config.validate(&mut problems);
        }
        assert!(problems.is_empty(), "{problems:?}");
        let config = ContactsConfig {
            default_region: Some("Atlantis".into()),
        };
        config.validate(&mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "contacts.default_region");
    }
}
