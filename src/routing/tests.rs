use super::*;
use crate::config::RuleKind;

const CONFIG: &str = r#"
[channels.api]
kind = "api"
[channels.web]
kind = "api"
[channels.web.tickets]
create = false
priority = "high"
[channels.web.tickets.routing]
rule = "contact_owner"

[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "new", label = "New", open = true },
  { id = "waiting_on_contact", label = "Waiting on contact", open = true },
  { id = "waiting_on_us", label = "Waiting on us", open = true },
  { id = "closed", label = "Closed", open = false },
]
"#;

#[test]
fn compiling_fills_in_the_only_pipeline_and_the_channel_defaults() {
    let config = Config::parse(CONFIG).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let rules = RuleSet::compile(&config);
    let api = rules.channel("api");
    assert!(api.create);
    assert_eq!(api.pipeline.as_deref(), Some("support"));
    assert_eq!(api.routing.rule, RuleKind::Nobody);
    assert!(api.routing.available_only, "available_only defaults on");
    assert!(!api.chat);
    let web = rules.channel("web");
    assert!(!web.create);
    assert_eq!(web.priority.as_deref(), Some("high"));
    assert_eq!(web.routing.rule, RuleKind::ContactOwner);
    assert!(web.routing.fallback_to_users_and_teams);
    // A channel no longer configured (a replayed record) still gets a ticket in the pipeline.
    let gone = rules.channel("old");
    assert!(gone.create);
    assert_eq!(gone.pipeline.as_deref(), Some("support"));
    assert_eq!(rules.spam_retention, Duration::days(90));
}
