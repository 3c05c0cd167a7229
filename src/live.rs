//! The settings a SIGHUP replaces while the daemon runs, compiled together from one config:
//! the routing rules (users, teams, pipelines, each channel's ticket options), the sending plan
//! with its templates, and the public channels' rate limits.
//!
//! Readers take the whole set once ([`LiveHandle::current`]) and keep it for one unit of work:
//! the processor for one step, an HTTP handler for one request. A reload compiles the new set
//! completely before swapping it in, so no step or request sees parts of two versions, and a
//! config that does not compile changes nothing.
//!
//! Replay stays deterministic: a step applies the set in force when it starts, and committed
//! steps are never applied again, so a reload changes only what records applied after it do,
//! exactly as a restart with the new config would. The directory routing decides with is the
//! config's users and teams overlaid with those the control API stored in state
//! ([`crate::tickets`]): a reload replaces the config layer only, and a user the control API
//! put keeps its stored values.

use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::config::{Config, ConfigError, ConfigProblem, Reloaded};
use crate::outbound::Planner;
use crate::ratelimit::RateLimits;
use crate::routing::RuleSet;

/// One version of the live settings. Cloning shares its parts.
#[derive(Clone)]
pub struct Live {
    pub rules: Arc<RuleSet>,
    pub planner: Arc<Planner>,
    pub rate_limits: RateLimits,
}

impl Live {
    /// Compiles a validated config. `previous` lends its rate limiters (and their clients'
    /// counts) to channels whose limits did not change.
    pub fn compile(config: &Config, previous: Option<&Live>) -> Result<Live, String> {
        let planner = Planner::new(&config.outbound)?.with_channels(&config.channels);
        let rate_limits = match previous {
            Some(previous) => previous.rate_limits.reconfigured(&config.channels),
            None => RateLimits::new(&config.channels),
        };
        Ok(Live {
            rules: Arc::new(RuleSet::compile(config)),
            planner: Arc::new(planner),
            rate_limits,
        })
    }

    /// Routes nothing, sends nothing, limits nothing (for tools and tests).
    pub fn empty() -> Live {
        Live {
            rules: Arc::new(RuleSet::default()),
            planner: Arc::new(Planner::disabled()),
            rate_limits: RateLimits::default(),
        }
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file itself is not a valid config (every problem listed).
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The new file is valid, but its live settings do not fit the settings that keep their
    /// running values until a restart (a routing rule for a channel that a restart would add).
    #[error("its live settings do not fit the running settings that need a restart:{}",
        .0.iter().map(|p| format!("\n  {p}")).collect::<String>())]
    NeedsRestart(Vec<ConfigProblem>),
    /// A template (or another compiled part) failed.
    #[error("{0}")]
    Compile(String),
}

/// The current version, shared by everyone who reads it. Cheap to clone.
#[derive(Clone)]
pub struct LiveHandle(Arc<RwLock<Arc<Live>>>);

impl LiveHandle {
    pub fn new(live: Live) -> LiveHandle {
        LiveHandle(Arc::new(RwLock::new(Arc::new(live))))
    }

    /// The version in force; keep it for the whole step or request.
    pub fn current(&self) -> Arc<Live> {
        // Only whole `Arc`s are ever stored: a writer that panicked left a complete version.
        let guard = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    /// Puts a new version in force for every later reader.
    pub fn replace(&self, live: Live) {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Arc::new(live);
    }

    /// Reads the config file at `path` and, when it is valid and its live settings compile
    /// together with the running ones, puts them in force. Returns the config now running
    /// and the settings that wait for a restart; on any error nothing changes.
    pub fn reload(&self, running: &Config, path: &Path) -> Result<Reloaded, ReloadError> {
        let new = Config::load(path)?;
        let reloaded = running.reloaded(&new);
        let problems = reloaded.running.validate();
        if !problems.is_empty() {
            return Err(ReloadError::NeedsRestart(problems));
        }
        let live = Live::compile(&reloaded.running, Some(&self.current()))
            .map_err(ReloadError::Compile)?;
        self.replace(live);
        Ok(reloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINES: &str = r#"
[routing.pipelines.old]
label = "Old"
statuses = [{ id = "waiting_on_us", label = "Us", open = true },
            { id = "waiting_on_contact", label = "Them", open = true },
            { id = "closed", label = "Closed", open = false }]
"#;

    fn running(text: &str) -> Config {
        let config = Config::parse(text).unwrap();
        assert_eq!(config.validate(), vec![]);
        config
    }

    #[test]
    fn a_valid_file_whose_live_part_needs_a_removed_channel_changes_nothing() {
        let old = running(&format!(
            "{PIPELINES}[channels.api]\nkind = \"api\"\ntickets = {{ pipeline = \"old\" }}\n\
             [channels.web]\nkind = \"api\"\ntickets = {{ pipeline = \"old\" }}\n"
        ));
        let handle = LiveHandle::new(Live::compile(&old, None).unwrap());
        // The new file drops channel web (a restart-only change) and renames the pipeline web
        // still names while it keeps running.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.toml");
        let renamed = PIPELINES.replace("pipelines.old", "pipelines.new");
        std::fs::write(
            &path,
            format!(
                "{renamed}[channels.api]\nkind = \"api\"\ntickets = {{ pipeline = \"new\" }}\n"
            ),
        )
        .unwrap();
        let before = handle.current();
        let error = handle.reload(&old, &path).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ReloadError::NeedsRestart(_)), "{message}");
        assert!(
            message.contains("channels.web.tickets.pipeline"),
            "{message}"
        );
        assert!(Arc::ptr_eq(&before, &handle.current()), "nothing changed");
    }

    #[test]
    fn a_template_that_does_not_parse_changes_nothing() {
        let old = running("");
        let handle = LiveHandle::new(Live::compile(&old, None).unwrap());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ticket_received.txt"), "{{ broken").unwrap();
        let path = dir.path().join("new.toml");
        let text = format!("[outbound]\ntemplates_dir = {:?}\n", dir.path());
        std::fs::write(&path, text).unwrap();
        let error = handle.reload(&old, &path).unwrap_err();
        assert!(matches!(error, ReloadError::Compile(_)), "{error}");
        assert!(error.to_string().contains("ticket_received.txt"), "{error}");

        std::fs::write(dir.path().join("ticket_received.txt"), "Got it.").unwrap();
        let reloaded = handle.reload(&old, &path).unwrap();
        assert_eq!(reloaded.restart_needed, Vec::<String>::new());
        let rendered = handle
            .current()
            .planner
            .templates
            .render(
                "ticket_received",
                crate::config::outbound::Language::En,
                &serde_json::json!({}),
            )
            .unwrap();
        assert_eq!(rendered.text, "Got it.");
    }
}
