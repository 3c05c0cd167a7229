//! The config loader: any text must parse and validate to a config or to problems, never panic.
#![no_main]

use deskgate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = Config::parse(text) {
            let _ = config.validate();
        }
    }
});
