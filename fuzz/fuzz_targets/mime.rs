//! Raw mail to a journal record, as IMAP and the MTA push deliver it: any bytes must become a
//! message or a quarantine entry, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use deskgate::channels::email;
use deskgate::store::Blobs;
use libfuzzer_sys::fuzz_target;

fn blobs() -> &'static (Blobs, tempfile::TempDir) {
    static BLOBS: OnceLock<(Blobs, tempfile::TempDir)> = OnceLock::new();
    BLOBS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        (Blobs::open(dir.path()).expect("blobs"), dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let (blobs, _) = blobs();
    let _ = email::to_record("mail", data, chrono::DateTime::UNIX_EPOCH, blobs, None);
});
