#!/usr/bin/env bash
# Runs every check and test deskgate has, on a bare machine: installs what the tests need
# (Debian packages), then formatting, lints, the test suite, and every shipped config.
#
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start as real peers.
packages=()
need() { dpkg -s "$1" >/dev/null 2>&1 || packages+=("$1"); }
need systemd            # systemd-analyze verifies the unit file
need dovecot-imapd # tests/e2e/email_imap.rs and bench mode imap: a real IMAP server
need openssl # tests/e2e/email_imap.rs: a test CA and certificate for the TLS mailboxes
need python3-aiosmtpd # the SMTP server the outbound tests deliver to
need nats-server         # the NATS sink tests and the `nats` bench start a JetStream server
need python3-fusepy # tests/e2e/power_loss.rs and bench chaos: the lazy FUSE filesystem that cuts the power
need fuse3 # its mount helpers
need e2fsprogs # tests/e2e/power_loss.rs: mkfs.ext4 and e2fsck for ext4 on a loop device
need mount # losetup
need prometheus # tests/e2e/ops/prometheus.rs: promtool checks a scrape (the server is not wanted)
if [ ${#packages[@]} -gt 0 ]; then
  echo "==> installing ${packages[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}"
  # Debian's prometheus package brings promtool with a whole server that starts on :9090
  # where systemd runs; the tests need only promtool.
  if [[ " ${packages[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus.service || true
  fi
fi

# The RustSec advisory database, offline: CI and the developers' machines keep a snapshot in
# shared/ beside the repository (they cannot fetch it). .cargo/audit.toml fails the run on any
# vulnerability and on every warning it does not list with its reason.
advisory_db="${DESKGATE_ADVISORY_DB:-$(dirname "$PWD")/shared/advisory-db}"
[ -d "$advisory_db/crates" ] || {
  echo "audit: the RustSec advisory database is missing at $advisory_db" >&2
  echo "audit: put a snapshot there (shared/advisory-db beside the repository) or set DESKGATE_ADVISORY_DB" >&2
  exit 1
}
command -v cargo-audit >/dev/null || cargo install cargo-audit --locked --version 0.22.2
# An out-of-date lockfile would be audited as it stands, not as it builds: both must be current.
cargo metadata --locked --format-version 1 >/dev/null
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null \
  || { echo "fuzz/Cargo.lock is out of date: run 'cargo update -p deskgate' in fuzz/" >&2; exit 1; }
echo "==> cargo audit (advisories from $advisory_db)"
cargo audit --db "$advisory_db" --no-fetch
cargo audit --db "$advisory_db" --no-fetch --file fuzz/Cargo.lock

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo doc (a link the docs cannot resolve, or one to a private item, fails the run)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

echo "==> cargo test"
log="$(mktemp)"
# The end-to-end suites note every event type they read in target/tmp/emitted-event-types
# (crates/test-kit/src/schemas.rs).
target_dir="$(cargo metadata --locked --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
emitted="$target_dir/tmp/emitted-event-types"
rm -rf "$emitted"
# --workspace: the daemon's tests (unit and tests/e2e), the test kit's and the bench's.
# --no-fail-fast: a failing test binary must not hide the failures of the binaries after it.
cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$log"
summary="$(awk '/^test result:/ { p += $4; f += $6 } END { print p " passed, " f " failed" }' "$log")"
rm -f "$log"

# A documented event type that no end-to-end test ever saw is a promise nothing checks. Only
# on a whole run: a filtered one (arguments given) sees some types by design.
if [ $# -eq 0 ]; then
  echo "==> every event type with a schema was emitted and checked by an end-to-end test"
  missing=()
  for schema in schemas/events/*.json; do
    type="$(basename "$schema" .json)"
    [ -e "$emitted/$type" ] || missing+=("$type")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "event types no end-to-end test emitted: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "==> check-config on every shipped config"
for config in config/*.toml; do
  cargo run --quiet --locked --bin deskgate -- check-config "$config"
done

echo "==> fuzz every parser of outside input briefly (scripts/fuzz.sh 3600 for a long run)"
scripts/fuzz.sh 10

# One plain closing line for whoever reads this log last: every cargo test binary, added up.
echo "tests: $summary"
