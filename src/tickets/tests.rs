use chrono::Utc;

use super::*;

#[test]
fn customer_replies_exclude_automatic_mail_bounces_forwards_and_echoes() {
    use crate::model::{Bounce, Inbound, MessageKind, Sender};
    let plain = Inbound::new("api", "m1", "t1", Sender::default(), "hi", Utc::now());
    assert!(is_customer_reply(&plain));
    let mut automatic = plain.clone();
    automatic.flags.automatic = true;
    let mut bounce = plain.clone();
    bounce.flags.bounce = Some(Bounce::default());
    let mut forwarded = plain.clone();
    forwarded.flags.forwarded = true;
    let mut echo = plain.clone();
    echo.kind = MessageKind::Echo;
    for inbound in [automatic, bounce, forwarded, echo] {
        assert!(!is_customer_reply(&inbound), "{inbound:?}");
    }
}

#[test]
fn a_move_of_a_status_wins_and_what_no_move_covers_stays_stranded() {
    use crate::config::Config;
    let config = Config::parse(
        r#"
        [routing.pipelines.support]
        label = "Support"
        statuses = [
          { id = "open", label = "Open", open = true },
          { id = "closed", label = "Closed", open = false },
        ]
        triggers = { customer_replied = { target = "open" }, agent_emailed = { target = "open" } }
        [[routing.moves]]
        from_pipeline = "billing"
        to_pipeline = "support"
        to_status = "open"
        [[routing.moves]]
        from_pipeline = "billing"
        from_status = "paid"
        to_pipeline = "support"
        to_status = "closed"
        [[routing.moves]]
        from_pipeline = "sales"
        from_status = "won"
        to_pipeline = "support"
        to_status = "closed"
        "#,
    )
    .expect("parses");
    assert_eq!(config.validate(), []);
    let moves = moves_of(&config);
    let found = |pipeline, status| {
        crate::model::PipelineMove::find(&moves, pipeline, status).map(|m| m.to_status.as_str())
    };
    assert_eq!(found("billing", Some("paid")), Some("closed"));
    assert_eq!(found("billing", Some("due")), Some("open"));
    assert_eq!(found("billing", None), Some("open"));
    assert_eq!(found("sales", Some("lost")), None);

    let usage: Usage = [
        ("billing", vec![(Some("paid"), 2), (None, 1)]),
        ("sales", vec![(Some("won"), 3), (Some("lost"), 4)]),
        ("support", vec![(Some("open"), 5)]),
    ]
    .into_iter()
    .map(|(pipeline, statuses)| {
        let statuses = statuses
            .into_iter()
            .map(|(status, n)| (status.map(str::to_owned), n))
            .collect();
        (pipeline.to_owned(), statuses)
    })
    .collect();
    assert_eq!(moves_due(&moves, &usage), 6);
    let problems: Vec<String> = stranded(&config, &usage)
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("routing.pipelines.sales: is gone, but 4 stored tickets are in it"),
        "{problems:?}"
    );
}
