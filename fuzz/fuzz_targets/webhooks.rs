//! Messenger, WhatsApp, chat and form payloads, through the same entry `deskgate inspect
//! webhook` uses: any body must give items or an error, never a panic. The first byte picks the
//! channel kind, so one target covers every payload parser.
#![no_main]

use std::sync::OnceLock;

use deskgate::channels::inspect::inspect;
use deskgate::config::ChannelKind;
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
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = match selector % 4 {
        0 => ChannelKind::Whatsapp,
        1 => ChannelKind::Messenger,
        2 => ChannelKind::Chat,
        _ => ChannelKind::Form,
    };
    let _ = inspect(kind, bytes::Bytes::copy_from_slice(body), &blobs().0);
});
