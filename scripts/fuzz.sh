#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (FUZZ_SECONDS, default 60) on the corpus
# kept in fuzz/corpus. cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable
# toolchain (the only one on our machines) use them. Fails on any crash.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_EACH="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz >&2
export RUSTC_BOOTSTRAP=1
log="$(mktemp)"
for t in split_chunks extract_filter config_parse; do
  echo "== fuzz $t (${SECONDS_EACH}s)"
  set +e
  cargo fuzz run --release --debug-assertions "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [[ $rc != 0 ]]; then
    echo "fuzz target $t failed:" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
done
rm -f "$log"
