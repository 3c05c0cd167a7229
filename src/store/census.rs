//! What the database holds, by tree and key prefix: the numbers behind "why is the state
//! directory this big" (`deskgate inspect state DIR`, offline).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Store, StoreError};

/// Keys and bytes under one prefix of one tree.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Share {
    pub keys: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// The whole count.
#[derive(Debug, Serialize)]
pub struct Census {
    /// The engine's files: its write-ahead log and tables, which hold old versions and
    /// deletions until compaction reclaims them.
    pub size_on_disk: u64,
    /// Keys and values alive now: what a fresh copy would hold.
    pub live_bytes: u64,
    /// `tree` → key prefix → share.
    pub trees: BTreeMap<String, BTreeMap<String, Share>>,
}

/// The prefix a key is counted under: a leading name and its `/` (`contact/`, `outbox/`), else
/// its first byte (the journal's `j` + seq and `d` + key, whose binary parts may hold a `/`).
fn prefix_of(key: &[u8]) -> String {
    let name = key
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        .count();
    let end = if key.get(name) == Some(&b'/') {
        name + 1
    } else {
        key.len().min(1)
    };
    String::from_utf8_lossy(&key[..end]).into_owned()
}

impl Store {
    /// Counts every key of every keyspace (reads the whole database).
    pub fn census(&self) -> Result<Census, StoreError> {
        let mut trees = BTreeMap::new();
        let mut live_bytes = 0;
        for name in super::KEYSPACES {
            let Some(keyspace) = self.keyspace(name) else {
                continue;
            };
            let mut shares: BTreeMap<String, Share> = BTreeMap::new();
            for entry in keyspace.iter() {
                let (key, value) = entry.into_inner()?;
                let share = shares.entry(prefix_of(&key)).or_default();
                share.keys += 1;
                share.key_bytes += key.len() as u64;
                share.value_bytes += value.len() as u64;
                live_bytes += (key.len() + value.len()) as u64;
            }
            if !shares.is_empty() {
                trees.insert(name.to_owned(), shares);
            }
        }
        Ok(Census {
            size_on_disk: self.size_on_disk()?,
            live_bytes,
            trees,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_counted_by_prefix_and_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = store.state_batch();
        batch.put_raw(b"contact/a".to_vec(), vec![0; 10]);
        batch.put_raw(b"contact/b".to_vec(), vec![0; 20]);
        batch.put_raw(b"meta/cursor".to_vec(), vec![0; 3]);
        batch.commit().unwrap();
        let census = store.census().unwrap();
        let state = &census.trees["state"];
        assert_eq!(state["contact/"].keys, 2);
        assert_eq!(state["contact/"].value_bytes, 30);
        assert_eq!(state["meta/"].keys, 1);
        assert!(census.live_bytes >= 18 + 11 + 33);
        assert_eq!(prefix_of(b"j\x00\x01"), "j");
        assert_eq!(prefix_of(b"j\x00\x2f\x01"), "j", "a seq with a '/' byte");
        assert_eq!(prefix_of(b"identity_bucket/\x2f\x00"), "identity_bucket/");
    }
}
