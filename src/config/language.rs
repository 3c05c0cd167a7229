//! The languages deskgate writes its automatic mail in: `outbound.language`, a mailbox's and a
//! channel's `language`, and the customer's locale as their channel tells it.

use serde::Deserialize;

/// A language deskgate ships templates and words for (`config/templates/{code}/`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    En,
    Fr,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::En, Language::Fr];

    /// Its code, the name of its template folder.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Fr => "fr",
        }
    }

    /// The shipped language a locale names (`fr_FR`, `fr-CA`, `FR`), if deskgate has it.
    pub fn of_locale(locale: &str) -> Option<Language> {
        let primary = locale.trim().split(['_', '-']).next()?.to_ascii_lowercase();
        Language::ALL.into_iter().find(|l| l.code() == primary)
    }
}

#[cfg(test)]
mod tests {
    use super::Language;

    #[test]
    fn a_locale_names_a_shipped_language_or_none() {
        for (locale, language) in [
            ("fr_FR", Some(Language::Fr)),
            ("fr-CA", Some(Language::Fr)),
            ("FR", Some(Language::Fr)),
            ("en_GB", Some(Language::En)),
            ("de_DE", None),
            ("", None),
            ("french", None),
        ] {
            assert_eq!(Language::of_locale(locale), language, "{locale}");
        }
    }
}
