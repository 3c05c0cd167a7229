//! The API channel's JSON reader: any body must give a message or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use deskgate::channels::{self, HookRequest};
use deskgate::config::Config;
use deskgate::store::Blobs;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    config: Config,
    blobs: Blobs,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        Fixture {
            config: Config::parse("[channels.api]\nkind = \"api\"\n").expect("valid"),
            blobs: Blobs::open(dir.path()).expect("blobs"),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let request = HookRequest {
        channel_id: "api",
        headers: &headers,
        body: bytes::Bytes::copy_from_slice(data),
        received_at: chrono::DateTime::UNIX_EPOCH,
        blobs: &fixture.blobs,
        region: deskgate::identity::Region::default(),
    };
    let _ = channels::parse(&fixture.config.channels["api"], &request);
});
