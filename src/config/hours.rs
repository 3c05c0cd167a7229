//! `[channels.<id>.chat.hours]`: a chat channel's office hours in its own time zone, which
//! the chat widget's availability answer (`GET /v1/channels/{id}/availability`) respects.

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use super::ConfigProblem;

/// When the desk answers chats: spans of the week in `time_zone`. Without it, always.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeHours {
    /// An IANA time zone name, such as `Europe/Paris`.
    pub time_zone: String,
    /// The open spans; the desk is open when any of them holds.
    pub open: Vec<OpenSpan>,
}

/// Open from `from` to `to` (local `HH:MM`, `to` may be `24:00`) on each of `days`
/// (`mon` ... `sun`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSpan {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

/// Office hours checked and ready to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct Hours {
    zone: Tz,
    /// (day, minute of day from, minute of day to), `to` exclusive.
    spans: Vec<(Weekday, u32, u32)>,
}

impl Hours {
    /// Whether the desk is open at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.zone);
        let minute = local.hour() * 60 + local.minute();
        self.spans
            .iter()
            .any(|(day, from, to)| *day == local.weekday() && (*from..*to).contains(&minute))
    }
}

impl OfficeHours {
    /// Every problem, with its path under `path`.
    pub fn validate(&self, path: &str) -> Vec<ConfigProblem> {
        match self.compile() {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .into_iter()
                .map(|(field, message)| ConfigProblem {
                    path: format!("{path}.{field}"),
                    message,
                })
                .collect(),
        }
    }

    /// The checked form, or each problem as (field path, message).
    pub fn compile(&self) -> Result<Hours, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let zone = self.time_zone.parse::<Tz>().map_err(|_| {
            (
                "time_zone".to_owned(),
                format!(
                    "unknown time zone {:?} (an IANA name such as \"Europe/Paris\")",
                    self.time_zone
                ),
            )
        });
        if self.open.is_empty() {
            problems.push((
                "open".to_owned(),
                "needs at least one span (leave [hours] out for always open)".to_owned(),
            ));
        }
        let mut spans = Vec::new();
        for (i, span) in self.open.iter().enumerate() {
            let at = |field: &str| format!("open[{i}].{field}");
            let from = minute_of_day(&span.from, false).map_err(|m| (at("from"), m));
            let to = minute_of_day(&span.to, true).map_err(|m| (at("to"), m));
            if span.days.is_empty() {
                problems.push((at("days"), "names no day".to_owned()));
            }
            let mut days = Vec::new();
            for day in &span.days {
                match weekday(day) {
                    Some(day) => days.push(day),
                    None => problems.push((
                        at("days"),
                        format!("{day:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"),
                    )),
                }
            }
            match (from, to) {
                (Ok(from), Ok(to)) if from < to => {
                    spans.extend(days.into_iter().map(|day| (day, from, to)));
                }
                (Ok(_), Ok(_)) => problems.push((
                    at("to"),
                    format!("{:?} is not after from = {:?}", span.to, span.from),
                )),
                (from, to) => problems.extend(from.err().into_iter().chain(to.err())),
            }
        }
        match zone {
            Ok(zone) if problems.is_empty() => Ok(Hours { zone, spans }),
            Ok(_) => Err(problems),
            Err(problem) => {
                problems.insert(0, problem);
                Err(problems)
            }
        }
    }
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// `HH:MM` as minutes since midnight; `24:00` (the end of the day) only where `end`.
fn minute_of_day(text: &str, end: bool) -> Result<u32, String> {
    if end && text == "24:00" {
        return Ok(24 * 60);
    }
    NaiveTime::parse_from_str(text, "%H:%M")
        .map(|t| t.hour() * 60 + t.minute())
        .map_err(|_| format!("{text:?} is not a time of day as HH:MM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(zone: &str, days: &[&str], from: &str, to: &str) -> OfficeHours {
        OfficeHours {
            time_zone: zone.to_owned(),
            open: vec![OpenSpan {
                days: days.iter().map(|d| (*d).to_owned()).collect(),
                from: from.to_owned(),
                to: to.to_owned(),
            }],
        }
    }

    #[test]
    fn open_is_read_in_the_channels_time_zone() {
        let paris = hours(
            "Europe/Paris",
            &["mon", "tue", "wed", "thu", "fri"],
            "09:00",
            "18:00",
        )
        .compile()
        .unwrap();
        // Monday 2026-12-07 07:30 UTC is 08:30 in Paris: closed; 08:00 UTC is 09:00: open.
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(!paris.is_open(at("2026-12-07T07:30:00Z")));
        assert!(paris.is_open(at("2026-12-07T08:00:00Z")));
        assert!(paris.is_open(at("2026-12-07T16:59:00Z")));
        assert!(!paris.is_open(at("2026-12-07T17:00:00Z")));
        // Saturday.
        assert!(!paris.is_open(at("2026-12-05T10:00:00Z")));
        let all_day = hours("UTC", &["sat"], "00:00", "24:00").compile().unwrap();
        assert!(all_day.is_open(at("2026-12-05T23:59:59Z")));
    }

    #[test]
    fn every_problem_is_named() {
        let bad = OfficeHours {
            time_zone: "Mars/Olympus".to_owned(),
            open: vec![
                OpenSpan {
                    days: vec!["monday".to_owned()],
                    from: "9am".to_owned(),
                    to: "18:00".to_owned(),
                },
                OpenSpan {
                    days: vec!["sat".to_owned()],
                    from: "12:00".to_owned(),
                    to: "11:00".to_owned(),
                },
            ],
        };
        let problems = bad.validate("channels.web.chat.hours");
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(
            text,
            [
                "channels.web.chat.hours.time_zone: unknown time zone \"Mars/Olympus\" (an IANA name such as \"Europe/Paris\")",
                "channels.web.chat.hours.open[0].days: \"monday\" is not a day (mon, tue, wed, thu, fri, sat, sun)",
                "channels.web.chat.hours.open[0].from: \"9am\" is not a time of day as HH:MM",
                "channels.web.chat.hours.open[1].to: \"11:00\" is not after from = \"12:00\"",
            ]
        );
    }
}
