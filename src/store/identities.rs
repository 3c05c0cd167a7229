//! The identity index: normalised identity → contact id, packed into a fixed number of buckets.
//!
//! The layout was made for sled 0.34 (deskgate's engine before fjall), which kept a page-table
//! entry in memory for every 16 keys: one key per identity made the resident memory of a
//! million contacts grow past 300 MB. It serves fjall well too (65,536 keys whose index stays
//! small, one block read per lookup), so it stayed. Identities are not keys: each is a 32-byte entry (a 16-byte fingerprint, the first
//! half of SHA-256 of [`Identity::index_key`](crate::model::Identity::index_key), and the
//! contact's 16-byte UUID) in one of 65,536 bucket values under `identity_bucket/` + the
//! fingerprint's first two bytes. A lookup is one read of a bucket (about a KiB at a
//! million contacts) and a binary search; 65,536 keys stay a few thousand pages however many
//! contacts there are.
//!
//! A bucket's value is a format byte then its entries sorted by fingerprint, so the same
//! identities always encode to the same bytes (a replayed step writes identical state). At a
//! million contacts with two identities each a bucket holds about 30 entries (1 KiB); at ten
//! million about 300 (10 KiB), which is still one read but makes every new identity rewrite
//! that much: past that, the bucket count (part of the key layout) would need to grow by a
//! migration like [`migrate_legacy`]. Two identities share a fingerprint with a probability
//! of about n²/2¹²⁹: nil for any real number of contacts.
//!
//! Databases written before this layout kept `identity/{index key}` → JSON contact id;
//! [`migrate_legacy`] moves them into buckets when the store opens.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{decode, StateBatch, Store, StoreError};

const PREFIX: &[u8] = b"identity_bucket/";
/// The layout before buckets: `identity/{index key}` → a JSON string.
const LEGACY_PREFIX: &[u8] = b"identity/";
const FORMAT: u8 = 1;
const FINGERPRINT: usize = 16;
const ENTRY: usize = FINGERPRINT + 16;

type Fingerprint = [u8; FINGERPRINT];

fn fingerprint(index_key: &str) -> Fingerprint {
    let digest = Sha256::digest(index_key.as_bytes());
    let mut print = [0u8; FINGERPRINT];
    print.copy_from_slice(&digest[..FINGERPRINT]);
    print
}

fn bucket_key(print: &Fingerprint) -> Vec<u8> {
    let mut key = Vec::with_capacity(PREFIX.len() + 2);
    key.extend_from_slice(PREFIX);
    key.extend_from_slice(&print[..2]);
    key
}

/// A bucket's entries, checked for shape; an empty or absent value is an empty bucket.
fn entries<'v>(key: &[u8], value: &'v [u8]) -> Result<&'v [u8], StoreError> {
    match value.split_first() {
        None => Ok(&[]),
        Some((&FORMAT, entries)) if entries.len() % ENTRY == 0 => Ok(entries),
        Some((format, entries)) => Err(StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!(
                "identity bucket of format {format} with {} bytes of entries",
                entries.len()
            ),
        }),
    }
}

/// Where `print` is among a bucket's sorted entries: `Ok(i)` found at entry `i`, `Err(i)`
/// where it would go.
fn search(entries: &[u8], print: &Fingerprint) -> Result<usize, usize> {
    let count = entries.len() / ENTRY;
    let (mut low, mut high) = (0, count);
    while low < high {
        let mid = (low + high) / 2;
        let at = &entries[mid * ENTRY..mid * ENTRY + FINGERPRINT];
        match at.cmp(print.as_slice()) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(low)
}

fn find(key: &[u8], value: &[u8], print: &Fingerprint) -> Result<Option<String>, StoreError> {
    let entries = entries(key, value)?;
    Ok(search(entries, print).ok().map(|i| {
        let id = &entries[i * ENTRY + FINGERPRINT..(i + 1) * ENTRY];
        // Sixteen bytes are always a UUID.
        Uuid::from_slice(id)
            .expect("a 16-byte slice")
            .hyphenated()
            .to_string()
    }))
}

fn contact_uuid(contact_id: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(contact_id).map_err(|e| StoreError::Corrupt {
        key: format!("contact/{contact_id}"),
        reason: format!("contact ids are UUIDs: {e}"),
    })
}

/// A bucket's value with `print` set to `contact` (or removed, for `None`).
fn edit(
    key: &[u8],
    value: Option<Vec<u8>>,
    print: &Fingerprint,
    contact: Option<Uuid>,
) -> Result<Vec<u8>, StoreError> {
    let mut value = value.unwrap_or_default();
    if value.is_empty() {
        value.push(FORMAT);
    }
    let found = search(entries(key, &value)?, print);
    // Entry `i` starts after the format byte.
    let at = |i: usize| 1 + i * ENTRY;
    match (found, contact) {
        (Ok(i), Some(id)) => value[at(i) + FINGERPRINT..at(i + 1)].copy_from_slice(id.as_bytes()),
        (Ok(i), None) => {
            value.drain(at(i)..at(i + 1));
        }
        (Err(i), Some(id)) => {
            let mut entry = [0u8; ENTRY];
            entry[..FINGERPRINT].copy_from_slice(print);
            entry[FINGERPRINT..].copy_from_slice(id.as_bytes());
            value.splice(at(i)..at(i), entry);
        }
        (Err(_), None) => {}
    }
    Ok(value)
}

impl StateBatch<'_> {
    /// The contact id indexed under an identity's index key, seeing this step's own writes.
    pub fn identity_get(&self, index_key: &str) -> Result<Option<String>, StoreError> {
        let print = fingerprint(index_key);
        let key = bucket_key(&print);
        match self.get_raw(&key)? {
            Some(value) => find(&key, &value, &print),
            None => Ok(None),
        }
    }

    /// Indexes an identity under a contact (replacing whichever contact held it).
    pub fn identity_put(&mut self, index_key: &str, contact_id: &str) -> Result<(), StoreError> {
        self.identity_set(index_key, Some(contact_uuid(contact_id)?))
    }

    pub fn identity_remove(&mut self, index_key: &str) -> Result<(), StoreError> {
        self.identity_set(index_key, None)
    }

    fn identity_set(&mut self, index_key: &str, contact: Option<Uuid>) -> Result<(), StoreError> {
        let print = fingerprint(index_key);
        let key = bucket_key(&print);
        let value = edit(&key, self.get_raw(&key)?, &print, contact)?;
        if value.len() > 1 {
            self.put_raw(key, value);
        } else {
            self.remove(key);
        }
        Ok(())
    }
}

impl Store {
    /// The contact id indexed under an identity's index key, outside a processor step.
    pub fn identity_get(&self, index_key: &str) -> Result<Option<String>, StoreError> {
        let print = fingerprint(index_key);
        let key = bucket_key(&print);
        match self.state.get(&key)? {
            Some(value) => find(&key, &value, &print),
            None => Ok(None),
        }
    }
}

/// Legacy entries moved per committed batch, so that a large index never builds one huge batch.
const MIGRATE_BATCH: usize = 10_000;

/// Moves `identity/{index key}` entries of databases written before buckets into buckets.
/// Each batch removes the entries it moved in the same atomic write, so a crash part-way
/// resumes where it stopped. Returns how many entries moved.
pub(super) fn migrate_legacy(store: &Store) -> Result<usize, StoreError> {
    let mut moved = 0;
    loop {
        let mut chunk = Vec::with_capacity(MIGRATE_BATCH);
        for entry in store.state.prefix(LEGACY_PREFIX).take(MIGRATE_BATCH) {
            chunk.push(entry.into_inner()?);
        }
        if chunk.is_empty() {
            break;
        }
        let mut batch = store.state_batch();
        for (key, value) in &chunk {
            let index_key = String::from_utf8_lossy(&key[LEGACY_PREFIX.len()..]).into_owned();
            let contact: String = decode(&super::KeyName(key), value)?;
            batch.identity_put(&index_key, &contact)?;
            batch.remove(key.to_vec());
        }
        batch.commit()?;
        store.flush()?;
        moved += chunk.len();
        tracing::info!(moved, "identity index: moved legacy entries into buckets");
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> String {
        Uuid::from_u128(n).to_string()
    }

    #[test]
    fn identities_are_found_replaced_and_removed_in_sorted_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = store.state_batch();
        // Enough keys that many share a bucket with another.
        let keys: Vec<String> = (0..200_000).map(|i| format!("email:p{i}@x.test")).collect();
        for (i, key) in keys.iter().enumerate() {
            batch.identity_put(key, &id(i as u128)).unwrap();
        }
        assert_eq!(batch.identity_get(&keys[7]).unwrap(), Some(id(7)));
        batch.commit().unwrap();
        for (i, key) in keys.iter().enumerate().step_by(997) {
            assert_eq!(
                store.identity_get(key).unwrap(),
                Some(id(i as u128)),
                "{key}"
            );
        }
        assert_eq!(store.identity_get("email:nobody@x.test").unwrap(), None);

        let mut batch = store.state_batch();
        batch.identity_put(&keys[1], &id(99)).unwrap();
        batch.identity_remove(&keys[2]).unwrap();
        batch.identity_remove("email:nobody@x.test").unwrap();
        batch.commit().unwrap();
        assert_eq!(store.identity_get(&keys[1]).unwrap(), Some(id(99)));
        assert_eq!(store.identity_get(&keys[2]).unwrap(), None);
        assert_eq!(store.identity_get(&keys[3]).unwrap(), Some(id(3)));

        // Every bucket is sorted and whole.
        for entry in store.state.prefix(PREFIX) {
            let (key, value) = entry.into_inner().unwrap();
            let entries = entries(&key, &value).unwrap();
            let prints: Vec<&[u8]> = entries.chunks(ENTRY).map(|e| &e[..16]).collect();
            assert!(prints.windows(2).all(|w| w[0] < w[1]), "bucket sorted");
            assert!(prints.iter().all(|p| p[..2] == key[PREFIX.len()..]));
        }
    }

    #[test]
    fn the_same_identities_encode_to_the_same_bytes_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys: Vec<String> = (0..3000).map(|i| format!("phone:+4420{i:07}")).collect();
        let write = |order: &mut dyn Iterator<Item = usize>| {
            let mut batch = store.state_batch();
            for i in order {
                batch.identity_put(&keys[i], &id(i as u128)).unwrap();
            }
            let mut buckets = std::collections::BTreeMap::new();
            for key in &keys {
                let print = fingerprint(key);
                let bucket = bucket_key(&print);
                buckets.insert(bucket.clone(), batch.get_raw(&bucket).unwrap());
            }
            buckets
        };
        assert_eq!(write(&mut (0..3000)), write(&mut (0..3000).rev()));
    }

    #[test]
    fn legacy_entries_move_into_buckets_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = store.state_batch();
            for i in 0..25_000u128 {
                let mut key = LEGACY_PREFIX.to_vec();
                key.extend_from_slice(format!("email:p{i}@x.test").as_bytes());
                batch.put(key, &id(i));
            }
            batch.commit().unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.state.prefix(LEGACY_PREFIX).count(), 0);
        for i in (0..25_000u128).step_by(101) {
            let key = format!("email:p{i}@x.test");
            assert_eq!(store.identity_get(&key).unwrap(), Some(id(i)));
        }
    }

    #[test]
    fn a_damaged_bucket_is_reported_not_panicked_on() {
        let print = fingerprint("email:a@x.test");
        let key = bucket_key(&print);
        assert!(find(&key, &[FORMAT, 1, 2, 3], &print).is_err());
        assert!(find(&key, &[9], &print).is_err());
        assert!(edit(&key, Some(vec![FORMAT, 0]), &print, None).is_err());
        assert!(contact_uuid("not-a-uuid").is_err());
    }
}
