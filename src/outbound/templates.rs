//! Mail templates (minijinja): the shipped ones in `config/templates/{language}/`, replaced or
//! extended by files in a configured directory.
//!
//! A template `NAME` is up to three files: `NAME.subject` (one line), `NAME.txt` (the plain
//! body, required) and `NAME.html` (optional; values are HTML-escaped there). Rendering is a
//! pure function of the template and its values, so the processor can render inside a step.
//!
//! Each file of a mail in language `L` is looked up, first found wins: `DIR/L/FILE` (the
//! operator's file for that language), `DIR/FILE` (the operator's file for every language),
//! the shipped `L/FILE`, then the same three for English. The words deskgate adds by itself
//! are templates too: `from_name` ("Ana from Acme") and `reply_subject` ("Re: your message").

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::json;

use crate::config::outbound::Language;

/// The templates built into the binary, so a bare install can acknowledge and notify, each
/// named `{language}/{file}`.
const SHIPPED: &[(&str, &str)] = &[
    (
        "en/chat_transcript.subject",
        include_str!("../../config/templates/en/chat_transcript.subject"),
    ),
    (
        "en/chat_transcript.txt",
        include_str!("../../config/templates/en/chat_transcript.txt"),
    ),
    (
        "en/forward.html",
        include_str!("../../config/templates/en/forward.html"),
    ),
    (
        "en/forward.subject",
        include_str!("../../config/templates/en/forward.subject"),
    ),
    (
        "en/forward.txt",
        include_str!("../../config/templates/en/forward.txt"),
    ),
    (
        "en/from_name.txt",
        include_str!("../../config/templates/en/from_name.txt"),
    ),
    (
        "en/internal_notification.subject",
        include_str!("../../config/templates/en/internal_notification.subject"),
    ),
    (
        "en/internal_notification.txt",
        include_str!("../../config/templates/en/internal_notification.txt"),
    ),
    (
        "en/reply_subject.txt",
        include_str!("../../config/templates/en/reply_subject.txt"),
    ),
    (
        "en/ticket_closed.subject",
        include_str!("../../config/templates/en/ticket_closed.subject"),
    ),
    (
        "en/ticket_closed.txt",
        include_str!("../../config/templates/en/ticket_closed.txt"),
    ),
    (
        "en/ticket_received.html",
        include_str!("../../config/templates/en/ticket_received.html"),
    ),
    (
        "en/ticket_received.subject",
        include_str!("../../config/templates/en/ticket_received.subject"),
    ),
    (
        "en/ticket_received.txt",
        include_str!("../../config/templates/en/ticket_received.txt"),
    ),
    (
        "fr/chat_transcript.subject",
        include_str!("../../config/templates/fr/chat_transcript.subject"),
    ),
    (
        "fr/chat_transcript.txt",
        include_str!("../../config/templates/fr/chat_transcript.txt"),
    ),
    (
        "fr/forward.html",
        include_str!("../../config/templates/fr/forward.html"),
    ),
    (
        "fr/forward.subject",
        include_str!("../../config/templates/fr/forward.subject"),
    ),
    (
        "fr/forward.txt",
        include_str!("../../config/templates/fr/forward.txt"),
    ),
    (
        "fr/from_name.txt",
        include_str!("../../config/templates/fr/from_name.txt"),
    ),
    (
        "fr/internal_notification.subject",
        include_str!("../../config/templates/fr/internal_notification.subject"),
    ),
    (
        "fr/internal_notification.txt",
        include_str!("../../config/templates/fr/internal_notification.txt"),
    ),
    (
        "fr/reply_subject.txt",
        include_str!("../../config/templates/fr/reply_subject.txt"),
    ),
    (
        "fr/ticket_closed.subject",
        include_str!("../../config/templates/fr/ticket_closed.subject"),
    ),
    (
        "fr/ticket_closed.txt",
        include_str!("../../config/templates/fr/ticket_closed.txt"),
    ),
    (
        "fr/ticket_received.html",
        include_str!("../../config/templates/fr/ticket_received.html"),
    ),
    (
        "fr/ticket_received.subject",
        include_str!("../../config/templates/fr/ticket_received.subject"),
    ),
    (
        "fr/ticket_received.txt",
        include_str!("../../config/templates/fr/ticket_received.txt"),
    ),
];

/// Where shipped templates live in the environment, out of the way of the operator's names.
const SHIPPED_PREFIX: &str = "shipped/";

const SUFFIXES: &[&str] = &["subject", "txt", "html"];

pub struct Templates {
    env: Environment<'static>,
}

/// One rendered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

impl Templates {
    /// The shipped templates, then every `*.subject`/`*.txt`/`*.html` file in `dir` and in its
    /// language folders (`dir/en/`, `dir/fr/`) over them.
    pub fn load(dir: Option<&Path>) -> Result<Templates, String> {
        let mut env = Environment::new();
        // A misspelt value should fail the render loudly, not mail an empty gap.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_trim_blocks(true);
        for (name, source) in SHIPPED {
            env.add_template_owned(format!("{SHIPPED_PREFIX}{name}"), source.to_string())
                .map_err(|e| format!("shipped template {name}: {e}"))?;
        }
        if let Some(dir) = dir {
            add_dir(&mut env, dir, "")?;
            for language in Language::ALL {
                let folder = dir.join(language.code());
                if folder.is_dir() {
                    add_dir(&mut env, &folder, &format!("{}/", language.code()))?;
                }
            }
        }
        Ok(Templates { env })
    }

    /// Adds (or replaces) one template file, such as a mailbox's signature.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), String> {
        self.env
            .add_template_owned(name.to_owned(), source.to_owned())
            .map_err(|e| format!("template {name}: {e}"))
    }

    /// Whether template `name` has a body in some language.
    pub fn has(&self, name: &str) -> bool {
        let file = format!("{name}.txt");
        Language::ALL
            .into_iter()
            .any(|language| self.find(&file, language).is_some())
    }

    /// Renders template `name` in `language` with `values`.
    pub fn render<V: Serialize>(
        &self,
        name: &str,
        language: Language,
        values: &V,
    ) -> Result<Rendered, String> {
        let part = |suffix: &str| self.render_in(&format!("{name}.{suffix}"), language, values);
        let text =
            part("txt")?.ok_or_else(|| format!("no template {name:?} (needs {name}.txt)"))?;
        let subject = part("subject")?
            .map(|s| first_line(&s))
            .filter(|s| !s.is_empty());
        let html = part("html")?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    /// "Ana from Acme" in `language` (the `from_name` template).
    pub fn from_name(
        &self,
        language: Language,
        agent_full_name: &str,
        company_name: &str,
    ) -> Result<String, String> {
        let values = json!({"agent_full_name": agent_full_name, "company_name": company_name});
        self.word("from_name.txt", language, &values)
    }

    /// "Re: subject" in `language` (the `reply_subject` template), "Re: your message" without one.
    pub fn reply_subject(
        &self,
        language: Language,
        subject: Option<&str>,
    ) -> Result<String, String> {
        self.word(
            "reply_subject.txt",
            language,
            &json!({ "subject": subject }),
        )
    }

    /// One line of words deskgate adds itself.
    fn word<V: Serialize>(
        &self,
        file: &str,
        language: Language,
        values: &V,
    ) -> Result<String, String> {
        self.render_in(file, language, values)?
            .map(|s| first_line(&s))
            .ok_or_else(|| format!("no template {file}"))
    }

    /// The first of the places `file` is looked up in for `language` (see the module docs).
    fn find(&self, file: &str, language: Language) -> Option<String> {
        let mut languages = vec![language];
        if language != Language::En {
            languages.push(Language::En);
        }
        languages
            .into_iter()
            .flat_map(|l| {
                let code = l.code();
                [
                    format!("{code}/{file}"),
                    file.to_owned(),
                    format!("{SHIPPED_PREFIX}{code}/{file}"),
                ]
            })
            .find(|name| self.env.get_template(name).is_ok())
    }

    /// Renders `file` for `language`; `None` when no place has it.
    fn render_in<V: Serialize>(
        &self,
        file: &str,
        language: Language,
        values: &V,
    ) -> Result<Option<String>, String> {
        match self.find(file, language) {
            Some(name) => self.render_file(&name, values),
            None => Ok(None),
        }
    }

    /// Renders one file; `None` when there is no such file.
    pub fn render_file<V: Serialize>(
        &self,
        file: &str,
        values: &V,
    ) -> Result<Option<String>, String> {
        let Ok(template) = self.env.get_template(file) else {
            return Ok(None);
        };
        template
            .render(values)
            .map(Some)
            .map_err(|e| format!("template {file}: {e}"))
    }
}

/// Every `*.subject`/`*.txt`/`*.html` file directly in `dir`, named `{prefix}{file}`.
fn add_dir(env: &mut Environment<'static>, dir: &Path, prefix: &str) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let known = file
            .rsplit_once('.')
            .is_some_and(|(_, suffix)| SUFFIXES.contains(&suffix));
        if !known || !path.is_file() {
            continue;
        }
        let source =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        env.add_template_owned(format!("{prefix}{file}"), source)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn first_line(rendered: &str) -> String {
    rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn shipped_templates_render_and_html_is_escaped() {
        let templates = Templates::load(None).unwrap();
        let values = json!({
            "company_name": "Acme <Support>", "customer_name": "Ana",
            "subject": "Printer", "ticket": {"id": "t-1"},
        });
        let rendered = templates
            .render("ticket_received", Language::En, &values)
            .unwrap();
        assert_eq!(rendered.subject.as_deref(), Some("[Ticket t-1] Printer"));
        assert!(rendered.text.contains("Hello Ana,"));
        assert!(rendered.text.contains("Acme <Support>"));
        let html = rendered.html.unwrap();
        assert!(html.contains("Acme &lt;Support&gt;"), "{html}");
        for name in ["ticket_closed", "internal_notification"] {
            assert!(
                templates.render(name, Language::En, &values).is_ok(),
                "{name}"
            );
        }
        assert!(templates.render("nope", Language::En, &values).is_err());
    }

    #[test]
    fn a_configured_directory_overrides_a_shipped_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ticket_received.txt"),
            "Got it, {{ customer_name }}.",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.md"), "{{ broken").unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let rendered = templates
            .render(
                "ticket_received",
                Language::En,
                &json!({"customer_name": "Bo", "ticket": {"id": "1"}, "company_name": "A"}),
            )
            .unwrap();
        assert_eq!(rendered.text, "Got it, Bo.");
    }

    /// Every shipped language has every file English has, and each renders.
    #[test]
    fn every_shipped_language_has_every_template() {
        let templates = Templates::load(None).unwrap();
        let values = json!({
            "company_name": "Acme", "customer_name": "Ana", "subject": "Printer",
            "ticket": {"id": "t-1", "number": 7}, "mailbox_address": "help@acme.test",
            "original": {"from": "ana@x.test", "subject": "Printer", "text": "Hi"},
        });
        let english: Vec<&str> = SHIPPED
            .iter()
            .filter_map(|(name, _)| name.strip_prefix("en/"))
            .collect();
        for language in Language::ALL {
            for file in &english {
                let name = format!("{SHIPPED_PREFIX}{}/{file}", language.code());
                let rendered = templates.render_file(&name, &values).unwrap();
                assert!(rendered.is_some_and(|r| !r.trim().is_empty()), "{name}");
            }
        }
        assert_eq!(SHIPPED.len(), english.len() * Language::ALL.len());
    }

    /// A conversation without a subject or a customer without a name gets the template's
    /// words, never "none" (minijinja's `default` passes `none` through unless told not to).
    #[test]
    fn missing_values_get_the_default_words() {
        let templates = Templates::load(None).unwrap();
        let values = json!({
            "company_name": "Acme", "customer_name": null, "customer_address": null,
            "subject": null, "ticket": {"id": "t-1"},
        });
        for language in Language::ALL {
            for name in ["ticket_received", "ticket_closed", "internal_notification"] {
                let rendered = templates.render(name, language, &values).unwrap();
                let subject = rendered.subject.unwrap_or_default();
                let html = rendered.html.unwrap_or_default();
                let all = format!("{subject} {} {html}", rendered.text);
                assert!(
                    !all.to_lowercase().contains("none"),
                    "{name} {language:?}: {all}"
                );
            }
        }
    }

    #[test]
    fn french_mail_and_words_are_french() {
        let templates = Templates::load(None).unwrap();
        let values =
            json!({"company_name": "Acme", "customer_name": "Ana", "ticket": {"id": "t-1"}});
        let rendered = templates
            .render("ticket_received", Language::Fr, &values)
            .unwrap();
        assert_eq!(
            rendered.subject.as_deref(),
            Some("[Ticket t-1] Nous avons bien reçu votre message")
        );
        assert!(
            rendered.text.starts_with("Bonjour Ana,"),
            "{}",
            rendered.text
        );
        assert_eq!(
            templates
                .from_name(Language::Fr, "Alice Martin", "Acme")
                .unwrap(),
            "Alice Martin chez Acme"
        );
        assert_eq!(
            templates
                .from_name(Language::En, "Alice Martin", "Acme")
                .unwrap(),
            "Alice Martin from Acme"
        );
    }

    /// An operator's file in a language folder wins for that language only; a file directly
    /// in the directory wins for every language; a template only in English serves French mail.
    #[test]
    fn operator_files_are_looked_up_by_language_then_for_all() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("fr")).unwrap();
        std::fs::create_dir(dir.path().join("en")).unwrap();
        std::fs::write(dir.path().join("fr/ticket_closed.txt"), "Fermé.").unwrap();
        std::fs::write(dir.path().join("ticket_received.subject"), "Got it").unwrap();
        std::fs::write(dir.path().join("en/vip.txt"), "VIP").unwrap();
        std::fs::write(
            dir.path().join("fr/from_name.txt"),
            "{{ agent_full_name }} de {{ company_name }}",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let values = json!({"company_name": "Acme", "ticket": {"id": "t-1"}});
        let render = |name, language| templates.render(name, language, &values).unwrap();
        assert_eq!(render("ticket_closed", Language::Fr).text, "Fermé.");
        assert!(render("ticket_closed", Language::En)
            .text
            .starts_with("Hello"));
        let received = render("ticket_received", Language::Fr);
        assert_eq!(received.subject.as_deref(), Some("Got it"));
        assert!(received.text.starts_with("Bonjour"), "{}", received.text);
        assert_eq!(render("vip", Language::Fr).text, "VIP");
        assert!(templates.has("vip"));
        assert_eq!(
            templates.from_name(Language::Fr, "Ana", "Acme").unwrap(),
            "Ana de Acme"
        );
    }
}
