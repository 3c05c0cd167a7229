//! What a SIGHUP may change in a running daemon, and what waits for a restart.
//!
//! A reload never runs the new file as it is: it runs the old config with the settings that
//! can change live taken from the new one ([`Config::reloaded`]), and names every other
//! difference as needing a restart. Live settings: `[routing]` (users, teams, pipelines),
//! each channel's `tickets` table (ticket defaults and routing rule), `rate_limit` and chat
//! office `hours`, the outbound templates (`templates_dir`, re-read on every reload) with each
//! mailbox's wording (company name, From name, signatures, acknowledgements, languages: the
//! channels', the mailboxes' and `outbound.language`) and forwards
//! (`forward_to`, `forward_template`), each Messenger page's `greeting` and consent settings
//! (`consent`, `consent_text`, `consent_version`, `consent_agree_label`), and `log.filter`.

use super::Config;

/// The outcome of comparing the running config with a new file.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The config to run from now on: the running one with the live settings of the new one.
    pub running: Config,
    /// Settings that differ in the new file and take effect only after a restart.
    pub restart_needed: Vec<String>,
}

impl Config {
    /// The config to run after a reload with `new` (see the module docs).
    pub fn reloaded(&self, new: &Config) -> Reloaded {
        let mut running = self.clone();
        running.routing = new.routing.clone();
        running.log.filter = new.log.filter.clone();
        for (id, channel) in &mut running.channels {
            let Some(next) = new.channels.get(id) else {
                continue;
            };
            if channel.kind != next.kind {
                continue;
            }
            channel.tickets = next.tickets.clone();
            channel.language = next.language;
            if channel.chat.is_some() || next.chat.is_some() {
                let limit = next.chat.as_ref().map(|c| c.rate_limit).unwrap_or_default();
                let hours = next.chat.as_ref().and_then(|c| c.hours.clone());
                let chat = channel.chat.get_or_insert_with(Default::default);
                chat.rate_limit = limit;
                chat.hours = hours;
            }
            if channel.form.is_some() || next.form.is_some() {
                let limit = next.form.as_ref().map(|f| f.rate_limit).unwrap_or_default();
                channel.form.get_or_insert_with(Default::default).rate_limit = limit;
            }
        }
        let outbound = &mut running.outbound;
        outbound.templates_dir = new.outbound.templates_dir.clone();
        outbound.language = new.outbound.language;
        for (name, mailbox) in &mut outbound.mailboxes {
            let Some(next) = new.outbound.mailboxes.get(name) else {
                continue;
            };
            mailbox.company_name = next.company_name.clone();
            mailbox.from_name = next.from_name;
            mailbox.language = next.language;
            mailbox.signature_text = next.signature_text.clone();
            mailbox.signature_html = next.signature_html.clone();
            mailbox.acknowledge_new_tickets = next.acknowledge_new_tickets;
            mailbox.acknowledgement_template = next.acknowledgement_template.clone();
            mailbox.forward_to = next.forward_to.clone();
            mailbox.forward_template = next.forward_template.clone();
        }
        for (channel, page) in &mut outbound.messenger {
            if let Some(next) = new.outbound.messenger.get(channel) {
                page.greeting = next.greeting.clone();
                page.consent = next.consent;
                page.consent_text = next.consent_text.clone();
                page.consent_version = next.consent_version;
                page.consent_agree_label = next.consent_agree_label.clone();
            }
        }
        let restart_needed = running.differences(new);
        Reloaded {
            running,
            restart_needed,
        }
    }

    /// The sections (each channel on its own) in which two configs differ.
    fn differences(&self, other: &Config) -> Vec<String> {
        let mut changed = Vec::new();
        let mut section = |name: &str, same: bool| {
            if !same {
                changed.push(name.to_owned());
            }
        };
        section("server", self.server == other.server);
        section("state", self.state == other.state);
        section("journal", self.journal == other.journal);
        section("events", self.events == other.events);
        section("log", self.log == other.log);
        section("control", self.control == other.control);
        section("contacts", self.contacts == other.contacts);
        section("sinks", self.sinks == other.sinks);
        section("retention", self.retention == other.retention);
        section("outbound", self.outbound == other.outbound);
        let ids = self.channels.keys().chain(other.channels.keys());
        let ids: std::collections::BTreeSet<&String> = ids.collect();
        for id in ids {
            let same = self.channels.get(id) == other.channels.get(id);
            section(&format!("channels.{id}"), same);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        let config = Config::parse(text).expect("parses");
        assert_eq!(config.validate(), vec![], "{text}");
        config
    }

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[log]
filter = "info"
[routing.users.alice]
name = "Alice"
[channels.api]
kind = "api"
[channels.chat]
kind = "chat"
chat = { rate_limit = { per_minute = 60, burst = 20 } }
"#;

    #[test]
    fn live_settings_apply_and_nothing_is_named() {
        let old = parse(BASE);
        let new = parse(
            &(BASE
                .replace("filter = \"info\"", "filter = \"warn\"")
                .replace("per_minute = 60, burst = 20", "per_minute = 1, burst = 1")
                .replace(
                    "[channels.api]\nkind = \"api\"",
                    "[channels.api]\nkind = \"api\"\ntickets = { create = false }\nlanguage = \"fr\"",
                )
                + "[routing.users.bob]\nname = \"Bob\"\n[outbound]\nlanguage = \"fr\"\n"),
        );
        let reloaded = old.reloaded(&new);
        assert_eq!(reloaded.restart_needed, Vec::<String>::new());
        assert_eq!(reloaded.running, new, "every change was a live one");
    }

    #[test]
    fn restart_only_settings_keep_their_running_values_and_are_named() {
        let old = parse(BASE);
        let new = parse(
            &(BASE
                .replace("127.0.0.1:8080", "127.0.0.1:9090")
                .replace(
                    "[channels.api]\nkind = \"api\"",
                    "[channels.api]\nkind = \"api\"\nmax_body_bytes = 10",
                )
                .replace("per_minute = 60, burst = 20", "per_minute = 5, burst = 5")
                .replace("filter = \"info\"", "filter = \"info\"\nformat = \"json\"")
                + "[channels.web]\nkind = \"form\"\n"),
        );
        let reloaded = old.reloaded(&new);
        assert_eq!(
            reloaded.restart_needed,
            ["server", "log", "channels.api", "channels.web"]
        );
        let running = reloaded.running;
        assert_eq!(running.server.listen.port(), 8080, "the listener stays");
        assert_eq!(running.channels["api"].max_body_bytes, 1024 * 1024);
        assert!(!running.channels.contains_key("web"), "no new channel");
        let chat = running.channels["chat"].chat.as_ref().unwrap();
        assert_eq!(
            chat.rate_limit.per_minute, 5,
            "the live part of a channel applies"
        );
    }

    #[test]
    fn mailbox_wording_is_live_and_its_transport_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("smtp.password");
        std::fs::write(&password, "smtp-password-1234\n").unwrap();
        let mailbox = |company: &str, host: &str| {
            format!(
                "[channels.mail]\nkind = \"email\"\n[outbound.mailboxes.support]\n\
                 address = \"support@example.com\"\ncompany_name = \"{company}\"\n\
                 channels = [\"mail\"]\n[outbound.mailboxes.support.smtp]\nhost = \"{host}\"\n\
                 tls = \"plain\"\nusername = \"support\"\npassword_file = \"{}\"\n",
                password.display()
            )
        };
        let old = parse(&mailbox("Acme", "127.0.0.1"));
        let french = mailbox("Acme Ltd", "127.0.0.1").replace(
            "channels = [\"mail\"]",
            "channels = [\"mail\"]\nlanguage = \"fr\"",
        );
        let reloaded = old.reloaded(&parse(&french));
        assert_eq!(reloaded.restart_needed, Vec::<String>::new());
        let running = &reloaded.running.outbound.mailboxes["support"];
        assert_eq!(running.company_name, "Acme Ltd");
        assert_eq!(
            running.language,
            Some(crate::config::outbound::Language::Fr)
        );
        let reloaded = old.reloaded(&parse(&mailbox("Acme", "localhost")));
        assert_eq!(reloaded.restart_needed, ["outbound"]);
        assert_eq!(
            reloaded.running.outbound.mailboxes["support"].smtp.host,
            "127.0.0.1"
        );
    }
}
