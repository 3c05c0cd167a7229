//! Mail templates (minijinja): the shipped ones in `config/templates/`, replaced or extended by
//! files in a configured directory.
//!
//! A template `NAME` is up to three files: `NAME.subject` (one line), `NAME.txt` (the plain
//! body, required) and `NAME.html` (optional; values are HTML-escaped there). Rendering is a
//! pure function of the template and its values, so the processor can render inside a step.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The templates built into the binary, so a bare install can acknowledge and notify.
const SHIPPED: &[(&str, &str)] = &[
    (
        "ticket_received.subject",
        include_str!("../../config/templates/ticket_received.subject"),
    ),
    (
        "ticket_received.txt",
        include_str!("../../config/templates/ticket_received.txt"),
    ),
    (
        "ticket_received.html",
        include_str!("../../config/templates/ticket_received.html"),
    ),
    (
        "ticket_closed.subject",
        include_str!("../../config/templates/ticket_closed.subject"),
    ),
    (
        "ticket_closed.txt",
        include_str!("../../config/templates/ticket_closed.txt"),
    ),
    (
        "forward.subject",
        include_str!("../../config/templates/forward.subject"),
    ),
    (
        "forward.txt",
        include_str!("../../config/templates/forward.txt"),
    ),
    (
        "forward.html",
        include_str!("../../config/templates/forward.html"),
    ),
    (
        "internal_notification.subject",
        include_str!("../../config/templates/internal_notification.subject"),
    ),
    (
        "internal_notification.txt",
        include_str!("../../config/templates/internal_notification.txt"),
    ),
];

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
    /// The shipped templates, then every `*.subject`/`*.txt`/`*.html` file in `dir` over them.
    pub fn load(dir: Option<&Path>) -> Result<Templates, String> {
        let mut env = Environment::new();
        // A misspelt value should fail the render loudly, not mail an empty gap.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_trim_blocks(true);
        for (name, source) in SHIPPED {
            env.add_template_owned(name.to_string(), source.to_string())
                .map_err(|e| format!("shipped template {name}: {e}"))?;
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries {
                let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
                let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let known = file
                    .rsplit_once('.')
                    .is_some_and(|(_, suffix)| SUFFIXES.contains(&suffix));
                if !known {
                    continue;
                }
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                env.add_template_owned(file.to_owned(), source)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
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

    pub fn has(&self, name: &str) -> bool {
        self.env.get_template(&format!("{name}.txt")).is_ok()
    }

    /// Renders template `name` with `values`.
    pub fn render<V: Serialize>(&self, name: &str, values: &V) -> Result<Rendered, String> {
        let text = self
            .render_file(&format!("{name}.txt"), values)?
            .ok_or_else(|| format!("no template {name:?} (needs {name}.txt)"))?;
        let subject = self
            .render_file(&format!("{name}.subject"), values)?
            .map(|s| s.lines().next().unwrap_or_default().trim().to_owned())
            .filter(|s| !s.is_empty());
        let html = self.render_file(&format!("{name}.html"), values)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
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
        let rendered = templates.render("ticket_received", &values).unwrap();
        assert_eq!(rendered.subject.as_deref(), Some("[Ticket t-1] Printer"));
        assert!(rendered.text.contains("Hello Ana,"));
        assert!(rendered.text.contains("Acme <Support>"));
        let html = rendered.html.unwrap();
        assert!(html.contains("Acme &lt;Support&gt;"), "{html}");
        for name in ["ticket_closed", "internal_notification"] {
            assert!(templates.render(name, &values).is_ok(), "{name}");
        }
        assert!(templates.render("nope", &values).is_err());
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
                &json!({"customer_name": "Bo", "ticket": {"id": "1"}, "company_name": "A"}),
            )
            .unwrap();
        assert_eq!(rendered.text, "Got it, Bo.");
    }
}
