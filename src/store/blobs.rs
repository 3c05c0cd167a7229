//! Content-addressed blobs on disk: attachment contents and the raw bytes of quarantined input.
//! Erasure deletes a contact's; journal retention deletes those nothing can name any more
//! (`housekeeping::blobs`).
//!
//! Each blob is a file named by the SHA-256 of its content under `<state>/blobs/`, written to a
//! temporary name, fsynced, renamed into place, and the directory fsynced, so a blob that a
//! journal record names is on disk before the record is. Writing the same content twice is
//! harmless, which makes a retried ingest idempotent. Large contents stay out of the database,
//! whose compactions would rewrite them again and again.
//!
//! An attachment's blob may have a description beside it, `<id>.meta` (JSON: the content type
//! and file name it first arrived with), so that the control API answers with them. It is a
//! hint, written without fsync (the journal record holds the same), and goes with its blob.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Numbers each temporary file this process writes, so that concurrent writes of the same
/// content never share one.
static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub fn open(state_dir: &Path) -> std::io::Result<Blobs> {
        let dir = state_dir.join("blobs");
        fs::create_dir_all(&dir)?;
        Ok(Blobs { dir })
    }

    /// Stores `content` durably and returns its id (lower-case hex SHA-256).
    pub fn put(&self, content: &[u8]) -> std::io::Result<String> {
        let id = hex::encode(Sha256::digest(content));
        // Retention goes by a blob's age: the same content arriving again is new again.
        if self.claim(&id)?.is_some() {
            return Ok(id);
        }
        let path = self.dir.join(&id);
        // Two requests can carry the same content at once (one attachment mailed to two
        // mailboxes): each writes its own temporary file, or one's rename finds none.
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{id}.{}.{n}.tmp", std::process::id()));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(id)
    }

    /// Records the content type and file name the blob arrived with, unless it has some.
    pub fn describe(
        &self,
        id: &str,
        content_type: &str,
        name: Option<&str>,
    ) -> std::io::Result<()> {
        let description = BlobDescription {
            content_type: content_type.to_owned(),
            name: name.map(str::to_owned),
        };
        let path = self.meta_path(id);
        if !is_blob_id(id) || path.exists() {
            return Ok(());
        }
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{id}.meta.{}.{n}.tmp", std::process::id()));
        fs::write(&tmp, serde_json::to_vec(&description).unwrap_or_default())?;
        fs::rename(&tmp, &path)
    }

    /// What [`Blobs::describe`] recorded for a blob: its content type and file name.
    pub fn description(&self, id: &str) -> Option<(String, Option<String>)> {
        if !is_blob_id(id) {
            return None;
        }
        let text = fs::read(self.meta_path(id)).ok()?;
        let description: BlobDescription = serde_json::from_slice(&text).ok()?;
        Some((description.content_type, description.name))
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.meta"))
    }

    /// The content of a blob, `None` when there is no such blob (or the id is not one of ours).
    pub fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_blob_id(id) {
            return Ok(None);
        }
        match fs::read(self.dir.join(id)) {
            Ok(content) => Ok(Some(content)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Copies every blob into another state directory (a backup being made), each synced to
    /// disk; `progress` hears the count so far. A blob erased meanwhile is skipped. Returns
    /// how many blobs and bytes were copied.
    pub fn copy_to(
        &self,
        state_dir: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> std::io::Result<(u64, u64)> {
        let target = Blobs::open(state_dir)?;
        let (mut count, mut bytes) = (0, 0);
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            // Temporary files of blobs being written are not blobs yet.
            let Some(id) = name.to_str().filter(|id| is_blob_id(id)) else {
                continue;
            };
            let path = target.dir.join(id);
            match fs::copy(entry.path(), &path) {
                Ok(copied) => bytes += copied,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            fs::File::open(&path)?.sync_all()?;
            if let Some((content_type, name)) = self.description(id) {
                target.describe(id, &content_type, name.as_deref())?;
            }
            count += 1;
            progress(count);
        }
        fs::File::open(&target.dir)?.sync_all()?;
        Ok((count, bytes))
    }

    /// The size of a blob that something new is about to name (an agent's reply attaching
    /// it), made new again so that retention keeps it as long as that; `None` when there is no
    /// such blob.
    pub fn claim(&self, id: &str) -> std::io::Result<Option<u64>> {
        if !is_blob_id(id) {
            return Ok(None);
        }
        match fs::File::options().append(true).open(self.dir.join(id)) {
            Ok(file) => {
                file.set_modified(std::time::SystemTime::now())?;
                Ok(Some(file.metadata()?.len()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The blobs last written before `before` (by their files' modification time).
    pub fn written_before(&self, before: std::time::SystemTime) -> std::io::Result<Vec<String>> {
        let mut old = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .filter(|id| is_blob_id(id))
                .map(str::to_owned)
            else {
                continue;
            };
            match entry.metadata() {
                Ok(meta) if meta.modified()? < before => old.push(id),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(old)
    }

    /// Deletes a blob (for erasure); deleting a missing blob is not an error.
    pub fn delete(&self, id: &str) -> std::io::Result<()> {
        if !is_blob_id(id) {
            return Ok(());
        }
        let _ = fs::remove_file(self.meta_path(id));
        match fs::remove_file(self.dir.join(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Only 64 lower-case hex characters name a blob, so an id from a request can never reach
/// outside the blob directory.
/// How an attachment's blob arrived: its content type and file name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BlobDescription {
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn is_blob_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_refuse_foreign_ids() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let id = blobs.put(b"hello").unwrap();
        assert_eq!(
            id,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blobs.put(b"hello").unwrap(), id, "idempotent");
        assert_eq!(blobs.get(&id).unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(blobs.get("../../etc/passwd").unwrap(), None);
        blobs
            .describe(&id, "text/plain", Some("hello.txt"))
            .unwrap();
        assert_eq!(
            blobs.description(&id),
            Some(("text/plain".to_owned(), Some("hello.txt".to_owned())))
        );
        blobs.delete(&id).unwrap();
        assert_eq!(blobs.get(&id).unwrap(), None);
        assert_eq!(blobs.description(&id), None);
        blobs.delete(&id).unwrap();
    }
}
