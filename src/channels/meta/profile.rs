//! Messenger customers' profiles (name and locale) through the Graph API's User Profile API,
//! for pages whose `fetch_profile` is on.
//!
//! The lookup happens before a message is journaled, so the journal holds what the processor
//! uses (the contact's name and locale, the language of the instant reply) and a replay never
//! calls out. It never costs the message: a lookup that fails or takes longer than the page's
//! `fetch_profile_timeout_ms` leaves the message as it came. Answers are kept in memory per
//! page and customer (`KEEP_FOUND`), failures for a while (`KEEP_FAILED`) so that a page
//! without access to the API is not asked again for every message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::OutboundConfig;
use crate::identity;
use crate::model::{Identity, MessageKind, Record};
use crate::outbound::graph::Graph;

/// How long a profile found is used before it is asked for again (a locale rarely changes).
const KEEP_FOUND: Duration = Duration::from_secs(24 * 3600);
/// How long a failed lookup is not tried again for the same customer.
const KEEP_FAILED: Duration = Duration::from_secs(600);
/// The most customers remembered; past it the memory starts again empty.
const MAX_REMEMBERED: usize = 100_000;

/// What was found per (channel, PSID), `None` for a failed lookup, and until when it holds.
type Remembered = HashMap<(String, String), (Option<Profile>, Instant)>;

/// What the User Profile API told of a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: Option<String>,
    pub locale: Option<String>,
}

impl Profile {
    /// From the API's answer (`first_name`, `last_name`, `locale`).
    pub fn of_answer(answer: &Value) -> Profile {
        let text = |field: &str| {
            answer[field]
                .as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let names: Vec<&str> = [text("first_name"), text("last_name")]
            .into_iter()
            .flatten()
            .collect();
        Profile {
            name: (!names.is_empty()).then(|| names.join(" ")),
            locale: text("locale").map(str::to_owned),
        }
    }
}

/// The lookups of every Messenger page with `fetch_profile`, and what they found.
pub struct Profiles {
    graph: Option<Graph>,
    /// The lookup timeout of each channel that looks profiles up.
    pages: BTreeMap<String, Duration>,
    remembered: Mutex<Remembered>,
}

impl Profiles {
    /// Fails when a page's token file cannot be read.
    pub fn new(config: &OutboundConfig) -> Result<Profiles, String> {
        let pages: BTreeMap<String, Duration> = config
            .messenger
            .iter()
            .filter(|(_, page)| page.fetch_profile)
            .map(|(channel, page)| {
                let timeout = Duration::from_millis(page.fetch_profile_timeout_ms);
                (channel.clone(), timeout)
            })
            .collect();
        let graph = if pages.is_empty() {
            None
        } else {
            Some(Graph::new(config)?)
        };
        Ok(Profiles {
            graph,
            pages,
            remembered: Mutex::default(),
        })
    }

    /// Looks nothing up (for tools and tests).
    pub fn disabled() -> Profiles {
        Profiles {
            graph: None,
            pages: BTreeMap::new(),
            remembered: Mutex::default(),
        }
    }

    /// Gives each customer message of `records` on `channel` its sender's profile name (when
    /// it has none) and locale, when the page looks profiles up.
    pub async fn enrich(&self, channel: &str, records: &mut [Record]) {
        let (Some(graph), Some(timeout)) = (&self.graph, self.pages.get(channel)) else {
            return;
        };
        let mut psids: Vec<String> = records
            .iter()
            .filter_map(|record| customer_psid(channel, record))
            .map(str::to_owned)
            .collect();
        psids.sort();
        psids.dedup();
        let lookups = psids.into_iter().map(|psid| async move {
            let profile = self.profile(graph, channel, &psid, *timeout).await;
            (psid, profile)
        });
        let found: HashMap<String, Profile> = futures::future::join_all(lookups)
            .await
            .into_iter()
            .filter_map(|(psid, profile)| Some((psid, profile?)))
            .collect();
        for record in records.iter_mut() {
            let Some(profile) = customer_psid(channel, record).and_then(|p| found.get(p)) else {
                continue;
            };
            let Record::Inbound(inbound) = record else {
                continue;
            };
            let sender = &mut inbound.sender;
            if sender.name.is_none() {
                sender.name = profile.name.clone();
            }
            sender.locale = profile.locale.clone().or(sender.locale.take());
        }
    }

    /// One customer's profile: remembered, or looked up now.
    async fn profile(
        &self,
        graph: &Graph,
        channel: &str,
        psid: &str,
        timeout: Duration,
    ) -> Option<Profile> {
        let key = (channel.to_owned(), psid.to_owned());
        if let Some((profile, until)) = self.lock().get(&key) {
            if *until > Instant::now() {
                return profile.clone();
            }
        }
        let answer = tokio::time::timeout(timeout, graph.user_profile(channel, psid)).await;
        let profile = match answer {
            Ok(Ok(answer)) => Some(Profile::of_answer(&answer)),
            Ok(Err(failure)) => {
                tracing::warn!(channel, error = ?failure, "Messenger profile lookup failed");
                None
            }
            Err(_) => {
                tracing::warn!(channel, ?timeout, "Messenger profile lookup timed out");
                None
            }
        };
        let keep = if profile.is_some() {
            KEEP_FOUND
        } else {
            KEEP_FAILED
        };
        let mut remembered = self.lock();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(key, (profile.clone(), Instant::now() + keep));
        profile
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered
            .lock()
            .expect("no code panics while holding the profiles' lock")
    }
}

/// The PSID of a customer's own message on `channel` (not an echo, receipt or notice).
fn customer_psid<'r>(channel: &str, record: &'r Record) -> Option<&'r str> {
    let Record::Inbound(inbound) = record else {
        return None;
    };
    if inbound.kind == MessageKind::Echo {
        return None;
    }
    inbound
        .sender
        .identities
        .iter()
        .find_map(|identity| match identity {
            Identity::Channel { channel: on, .. } if on == channel => {
                identity::platform_user_id(identity)
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_profile_answer_gives_a_name_and_a_locale() {
        let answer =
            json!({"first_name": "Léa", "last_name": "Roux", "locale": "fr_FR", "id": "1"});
        assert_eq!(
            Profile::of_answer(&answer),
            Profile {
                name: Some("Léa Roux".into()),
                locale: Some("fr_FR".into())
            }
        );
        assert_eq!(Profile::of_answer(&json!({"id": "1"})), Profile::default());
    }
}
