//! The `sinks` keyspace.
//!
//! Each sink task is the single writer of its own keys here: `c/<sink>` (its cursor, the last
//! event seq delivered), `d/<sink>` (set while its endpoint has disabled it) and
//! `x/<sink>\0<seq>` (its dead letters). The processor never touches this tree.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode, encode, keys, Store, StoreError};

fn cursor_key(sink: &str) -> Vec<u8> {
    format!("c/{sink}").into_bytes()
}

fn disabled_key(sink: &str) -> Vec<u8> {
    format!("d/{sink}").into_bytes()
}

fn dead_prefix(sink: &str) -> Vec<u8> {
    format!("x/{sink}\0").into_bytes()
}

fn dead_key(sink: &str, seq: u64) -> Vec<u8> {
    let mut key = dead_prefix(sink);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl Store {
    /// The last event seq this sink has delivered, if it ever delivered one.
    pub fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .sinks
            .get(cursor_key(sink))?
            .map(|value| keys::be_u64(&value)))
    }

    /// Moves the sink's cursor (not flushed: a lost move only repeats deliveries, which
    /// consumers deduplicate by event id; compaction flushes before it trusts cursors).
    pub fn sink_set_cursor(&self, sink: &str, seq: u64) -> Result<(), StoreError> {
        self.wrote(self.sinks.insert(cursor_key(sink), seq.to_be_bytes()))
    }

    /// Why the sink is disabled, if it is.
    pub fn sink_disabled<T: DeserializeOwned>(&self, sink: &str) -> Result<Option<T>, StoreError> {
        match self.sinks.get(disabled_key(sink))? {
            Some(value) => decode(&format_args!("sinks/{sink}/disabled"), &value).map(Some),
            None => Ok(None),
        }
    }

    /// Marks the sink disabled (`Some`) or enabled (`None`); not flushed.
    pub fn sink_set_disabled<T: Serialize>(
        &self,
        sink: &str,
        why: Option<&T>,
    ) -> Result<(), StoreError> {
        match why {
            Some(why) => self.wrote(self.sinks.insert(disabled_key(sink), encode(why))),
            None => self.wrote(self.sinks.remove(disabled_key(sink))),
        }
    }

    /// Forgets cursors and dead letters of sinks no longer configured.
    pub fn sink_forget_others(&self, keep: &[String]) -> Result<(), StoreError> {
        for entry in self.sinks.iter() {
            let key = entry.key()?;
            let name = key
                .get(2..)
                .map(|rest| rest.split(|b| *b == 0).next().unwrap_or(rest))
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            if !keep.iter().any(|k| *k == name) {
                self.wrote(self.sinks.remove(key))?;
            }
        }
        Ok(())
    }

    /// Stores a dead letter under its event seq.
    pub fn sink_dead_put<T: Serialize>(
        &self,
        sink: &str,
        seq: u64,
        value: &T,
    ) -> Result<(), StoreError> {
        self.wrote(self.sinks.insert(dead_key(sink, seq), encode(value)))
    }

    pub fn sink_dead_get<T: DeserializeOwned>(
        &self,
        sink: &str,
        seq: u64,
    ) -> Result<Option<T>, StoreError> {
        match self.sinks.get(dead_key(sink, seq))? {
            Some(value) => decode(&format_args!("sinks/{sink}/dead/{seq}"), &value).map(Some),
            None => Ok(None),
        }
    }

    pub fn sink_dead_remove(&self, sink: &str, seq: u64) -> Result<(), StoreError> {
        self.wrote(self.sinks.remove(dead_key(sink, seq)))?;
        Ok(())
    }

    /// Dead letters after event seq `after`, at most `limit`.
    pub fn sink_dead_list<T: DeserializeOwned>(
        &self,
        sink: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let prefix = dead_prefix(sink);
        let start = dead_key(sink, after.saturating_add(1));
        let mut found = Vec::new();
        for entry in self.sinks.range(start..) {
            let (key, value) = entry.into_inner()?;
            if !key.starts_with(&prefix) || found.len() >= limit {
                break;
            }
            let seq = keys::be_u64(&key[prefix.len()..]);
            found.push((
                seq,
                decode(&format_args!("sinks/{sink}/dead/{seq}"), &value)?,
            ));
        }
        Ok(found)
    }
}
