//! Config validation of users, teams, pipelines and channels' ticket options: each case is a
//! config and the exact problems it must be reported with, paths included.

use deskgate::config::Config;

const PIPELINE: &str = r#"
[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "new", label = "New", open = true },
  { id = "waiting_on_contact", label = "Waiting on contact", open = true },
  { id = "waiting_on_us", label = "Waiting on us", open = true },
  { id = "closed", label = "Closed", open = false },
]
"#;

fn problems(text: &str) -> Vec<String> {
    let config = Config::parse(text).unwrap_or_else(|p| panic!("does not parse: {p}"));
    config.validate().iter().map(|p| p.to_string()).collect()
}

#[test]
fn validation_cases_report_every_problem_with_its_path() {
    let cases: &[(&str, String, &[&str])] = &[
        ("a valid pipeline and channel", format!("{PIPELINE}\n[channels.api]\nkind = \"api\"\n[channels.api.tickets]\npipeline = \"support\"\nstatus = \"new\"\n"), &[]),
        (
            "no open status and no closed status",
            r#"
            [routing.pipelines.only_open]
            label = "Open"
            statuses = [{ id = "new", label = "New", open = true }]
            triggers = { customer_replied = { enabled = false }, agent_emailed = { enabled = false } }
            [routing.pipelines.only_closed]
            label = "Closed"
            statuses = [{ id = "done", label = "Done", open = false }]
            triggers = { customer_replied = { enabled = false }, agent_emailed = { enabled = false } }
            "#.to_owned(),
            &[
                "routing.pipelines.only_closed.statuses: needs at least one open status",
                "routing.pipelines.only_open.statuses: needs at least one closed status",
            ],
        ),
        (
            "unknown statuses in triggers, actions and channel defaults",
            format!("{PIPELINE}
            [routing.pipelines.support.triggers]
            customer_replied = {{ target = \"replied\" }}
            [[routing.pipelines.support.actions]]
            status = \"solved\"
            action = \"acknowledge\"
            template = \"ticket_closed\"
            [channels.api]
            kind = \"api\"
            [channels.api.tickets]
            status = \"open\"
            "),
            &[
                "routing.pipelines.support.triggers.customer_replied.target: unknown status \"replied\"",
                "routing.pipelines.support.actions[0].status: unknown status \"solved\"",
                "channels.api.tickets.status: unknown status \"open\"",
            ],
        ),
        (
            "default trigger targets missing from a pipeline",
            r#"
            [routing.pipelines.simple]
            label = "Simple"
            statuses = [{ id = "open", label = "Open", open = true }, { id = "done", label = "Done", open = false }]
            "#.to_owned(),
            &[
                "routing.pipelines.simple.triggers.customer_replied.target: unset, and the pipeline has no default status \"waiting_on_us\"",
                "routing.pipelines.simple.triggers.agent_emailed.target: unset, and the pipeline has no default status \"waiting_on_contact\"",
            ],
        ),
        (
            "unknown pipeline, users and teams",
            format!("{PIPELINE}
            [routing.users.alice]
            name = \"Alice\"
            teams = [\"sales\"]
            [channels.api]
            kind = \"api\"
            [channels.api.tickets]
            pipeline = \"billing\"
            [channels.api.tickets.routing]
            rule = \"users_and_teams\"
            users = [\"alice\", \"zoe\"]
            teams = [\"support\"]
            "),
            &[
                "routing.users.alice.teams[0]: unknown team \"sales\"",
                "channels.api.tickets.pipeline: unknown pipeline \"billing\"",
                "channels.api.tickets.routing.users[1]: unknown user \"zoe\"",
                "channels.api.tickets.routing.teams[0]: unknown team \"support\"",
            ],
        ),
        (
            "an empty users_and_teams rule, a notify action without recipients, zero retention",
            format!("{PIPELINE}
            [routing]
            spam_retention_days = 0
            [[routing.pipelines.support.actions]]
            status = \"new\"
            action = \"notify\"
            template = \"new_ticket\"
            [channels.api]
            kind = \"api\"
            [channels.api.tickets.routing]
            rule = \"users_and_teams\"
            "),
            &[
                "routing.spam_retention_days: must be > 0",
                "routing.pipelines.support.actions[0]: a notify action needs users, teams or owner = true",
                "channels.api.tickets.routing: users_and_teams needs at least one user or team",
            ],
        ),
        (
            "duplicate status ids",
            r#"
            [routing.pipelines.p]
            label = "P"
            statuses = [
              { id = "waiting_on_us", label = "A", open = true },
              { id = "waiting_on_us", label = "B", open = true },
              { id = "waiting_on_contact", label = "C", open = false },
            ]
            "#.to_owned(),
            &["routing.pipelines.p.statuses: status ids must be unique"],
        ),
        (
            "ids that cannot appear in URLs and keys",
            "[routing.users.\"Alice B\"]\nname = \"Alice\"\n[routing.teams.\"t/1\"]\n".to_owned(),
            &[
                "routing.users.Alice B: ids must be 1-64 characters of a-z, 0-9, '-' and '_'",
                "routing.teams.t/1: ids must be 1-64 characters of a-z, 0-9, '-' and '_'",
            ],
        ),
    ];
    for (about, text, expected) in cases {
        assert_eq!(&problems(text), expected, "{about}");
    }
}

#[test]
fn unknown_options_are_refused_with_their_path() {
    let error = Config::parse(&format!(
        "{PIPELINE}\n[channels.api]\nkind = \"api\"\n[channels.api.tickets.routing]\nrule = \"random\"\n"
    ))
    .unwrap_err();
    assert_eq!(error.path, "channels.api.tickets.routing.rule");
    assert!(
        error.message.contains("unknown variant `random`"),
        "{error}"
    );
    let error = Config::parse("[routing.users.alice]\nname = \"A\"\nseats = 1\n").unwrap_err();
    assert_eq!(error.path, "routing.users.alice.seats");
    assert!(error.message.contains("unknown field `seats`"), "{error}");
}

#[test]
fn the_shipped_config_routes_the_api_channel_through_the_support_pipeline() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/deskgate.toml");
    let config = Config::load(std::path::Path::new(path)).expect("the shipped config validates");
    let pipeline = &config.routing.pipelines["support"];
    let labels: Vec<_> = pipeline.statuses.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        ["New", "Waiting on contact", "Waiting on us", "Closed"]
    );
    let tickets = config.channels["api"]
        .tickets
        .as_ref()
        .expect("api has ticket options");
    assert_eq!(tickets.pipeline.as_deref(), Some("support"));
    assert_eq!(config.routing.spam_retention_days, 90);
}
