#!/usr/bin/env bash
# Runs every fuzz target for a while, seeded with the shared corpus where one fits.
#
# Usage: scripts/fuzz.sh [seconds per target]   (default 10; the test suite uses that)
# A long run: scripts/fuzz.sh 3600
# A crash leaves its input under fuzz/artifacts/<target>/; turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
corpus="${DESKGATE_CORPUS:-$PWD/../shared/corpus}"
[ -d "$corpus" ] || { echo "fuzz: the shared corpus is missing at $corpus" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# cargo fuzz needs nightly flags; the machine's stable toolchain allows them with this.
export RUSTC_BOOTSTRAP=1

seeds_for() {
  case "$1" in
    mime) echo "$corpus/email" ;;
    webhooks) echo "$corpus/webhooks" ;;
    *) echo "" ;;
  esac
}

cd fuzz
cargo fuzz build --release
for target in $(cargo fuzz list); do
  work="$(mktemp -d)"
  mkdir -p "$work/corpus"
  seeds="$(seeds_for "$target")"
  echo "==> fuzz $target for ${seconds}s ${seeds:+(seeded from $seeds)}"
  # Seeds are read, never written: new inputs go to the temporary first directory.
  if ! cargo fuzz run --release "$target" "$work/corpus" $seeds -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      > "$work/log" 2>&1; then
    tail -n 60 "$work/log" >&2
    echo "fuzz: $target failed; the crashing input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units" "$work/log" || true
  rm -rf "$work"
done
