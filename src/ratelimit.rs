//! Rate limits on public channels (website chat and web forms), per channel and client
//! address, with governor.
//!
//! Meta channels are never limited: their traffic is signed, and a 429 would only make Meta
//! retry or unsubscribe. Keyed limiters never forget a key by themselves, so a timer prunes
//! addresses whose quota has fully replenished ([`RateLimits::prune`]). A config reload builds
//! a new set with [`RateLimits::reconfigured`], which keeps the counters of every channel whose
//! limits did not change.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::{ChannelConfig, ChannelKind, RateLimitConfig};

/// A client over its channel's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests; retry after {retry_after_secs} s")]
pub struct RateLimited {
    /// Whole seconds until the next request would be admitted, at least 1.
    pub retry_after_secs: u64,
}

/// One channel's limiter and the limits it was built with.
struct Limiter {
    limits: RateLimitConfig,
    keyed: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

/// One keyed limiter per rate-limited channel. Cheap to clone.
#[derive(Clone, Default)]
pub struct RateLimits {
    limiters: Arc<HashMap<String, Limiter>>,
}

impl RateLimits {
    /// Limiters for every chat and form channel.
    pub fn new<'a>(channels: impl IntoIterator<Item = (&'a String, &'a ChannelConfig)>) -> Self {
        RateLimits::default().reconfigured(channels)
    }

    /// Limiters for `channels`, sharing this set's limiter (and so its clients' counts) for
    /// every channel whose limits are unchanged.
    pub fn reconfigured<'a>(
        &self,
        channels: impl IntoIterator<Item = (&'a String, &'a ChannelConfig)>,
    ) -> Self {
        let limiters = channels
            .into_iter()
            .filter_map(|(id, channel)| {
                let limits = match channel.kind {
                    ChannelKind::Chat => channel.chat.as_ref().map(|c| c.rate_limit),
                    ChannelKind::Form => channel.form.as_ref().map(|f| f.rate_limit),
                    _ => return None,
                }
                .unwrap_or_default();
                let keyed = match self.limiters.get(id) {
                    Some(old) if old.limits == limits => Arc::clone(&old.keyed),
                    _ => Arc::new(DefaultKeyedRateLimiter::keyed(quota(limits)?)),
                };
                Some((id.clone(), Limiter { limits, keyed }))
            })
            .collect();
        RateLimits {
            limiters: Arc::new(limiters),
        }
    }

    /// Admits one request from `client` on `channel`, or says when to retry.
    pub fn check(&self, channel: &str, client: IpAddr) -> Result<(), RateLimited> {
        let Some(limiter) = self.limiters.get(channel) else {
            return Ok(());
        };
        let keyed = &limiter.keyed;
        keyed.check_key(&client).map_err(|not_until| {
            // The limiter's own clock: instants of different clocks do not compare.
            let wait = not_until.wait_time_from(keyed.clock().now());
            metrics::counter!("deskgate_rate_limited_total", "channel" => channel.to_owned())
                .increment(1);
            RateLimited {
                retry_after_secs: retry_after_secs(wait),
            }
        })
    }

    /// Forgets client addresses whose quota has fully replenished.
    pub fn prune(&self) {
        for limiter in self.limiters.values() {
            limiter.keyed.retain_recent();
            limiter.keyed.shrink_to_fit();
        }
    }
}

fn quota(limits: RateLimitConfig) -> Option<Quota> {
    let per_minute = NonZeroU32::new(limits.per_minute)?;
    let burst = NonZeroU32::new(limits.burst)?;
    Some(Quota::per_minute(per_minute).allow_burst(burst))
}

/// Whole seconds, rounded up, at least one.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    fn channels(chat_limit: &str) -> crate::config::Config {
        crate::config::Config::parse(&format!(
            r#"
            [channels.chat]
            kind = "chat"
            chat.rate_limit = {chat_limit}
            [channels.form]
            kind = "form"
            form.rate_limit = {{ per_minute = 1, burst = 1 }}
            [channels.api]
            kind = "api"
            "#
        ))
        .unwrap()
    }

    #[test]
    fn a_burst_is_admitted_then_refused_per_address_and_channel() {
        let config = channels("{ per_minute = 1, burst = 2 }");
        let limits = RateLimits::new(&config.channels);
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limits.check("chat", one).is_ok());
        assert!(limits.check("chat", one).is_ok());
        let Err(RateLimited { retry_after_secs }) = limits.check("chat", one) else {
            panic!("the third request is over the burst");
        };
        assert!((1..=60).contains(&retry_after_secs), "{retry_after_secs}");
        assert!(
            limits.check("chat", two).is_ok(),
            "another address has its own quota"
        );
        for _ in 0..10 {
            assert!(
                limits.check("api", one).is_ok(),
                "API channels are not limited"
            );
        }
    }

    #[test]
    fn a_reconfigured_set_keeps_the_counts_of_unchanged_channels_only() {
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let old = RateLimits::new(&channels("{ per_minute = 1, burst = 1 }").channels);
        assert!(old.check("chat", client).is_ok());
        assert!(old.check("form", client).is_ok());
        let new = old.reconfigured(&channels("{ per_minute = 1, burst = 3 }").channels);
        assert!(
            new.check("form", client).is_err(),
            "the form's limits did not change: its client is still over them"
        );
        assert!(
            new.check("chat", client).is_ok(),
            "the chat's new limits apply"
        );
        assert!(new.check("chat", client).is_ok());
        assert!(new.check("chat", client).is_ok());
        assert!(new.check("chat", client).is_err(), "a burst of three");
    }
}
