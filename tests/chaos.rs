//! The CI-sized chaos run: the harness of `deskgate-bench chaos` (one place,
//! `src/bin/deskgate-bench/chaos/`) with small parameters: mixed load on every channel kind
//! (API, form, signed chat, signed WhatsApp and Messenger, mail pulled from a real Dovecot)
//! with the NATS sink and SMTP acknowledgements on, while deskgate is killed with SIGKILL a
//! few times, the power is cut under it twice (its state on the lazy filesystem of
//! `tests/common/lazyfs.rs`, which keeps only what was fsynced), and each other fault strikes
//! once: Dovecot restarted, its IMAP connection cut mid-fetch, NATS down, SMTP down, the state
//! directory's disk full (a real tmpfs: root).
//! Passes only when the run prints `lost=0 duplicated=0 invented=0` and checks nothing else
//! went wrong.

use std::process::Command;
use std::time::Instant;

#[test]
fn mixed_load_under_faults_loses_duplicates_and_invents_nothing() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_deskgate-bench"))
        .args(["chaos", "--secs", "40", "--rate", "40", "--kills", "4"])
        .args(["--power-cuts", "2"])
        .args([
            "--rounds",
            "1",
            "--nats-outage-secs",
            "5",
            "--smtp-outage-secs",
            "5",
        ])
        .args([
            "--disk-full-secs",
            "3",
            "--burst",
            "150",
            "--disk-mb",
            "512",
        ])
        .arg("--deskgate")
        .arg(env!("CARGO_BIN_EXE_deskgate"))
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the chaos run failed ({}):\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("chaos: "))
        .expect("the chaos line");
    assert!(
        line.contains(" lost=0 duplicated=0 invented=0 kills=4 power_cuts=2"),
        "{line}"
    );
    println!("chaos test took {:.0?}", started.elapsed());
}
