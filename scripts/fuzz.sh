#!/usr/bin/env bash
# Runs each cargo-fuzz target on the corpus kept in fuzz/corpus, and fails on any crash.
#   scripts/fuzz.sh          a smoke run: each target replays its corpus, then fuzzes for
#                            FUZZ_SECONDS (default 15), two targets at a time — about 45 s
#                            in all, run by test.sh;
#                            what it finds goes to a scratch folder, never into the tracked corpus
#   scripts/fuzz.sh --long   a campaign: FUZZ_SECONDS (default 1800) per target; the inputs
#                            it finds that reach new code are added to fuzz/corpus/<target>,
#                            to be committed so that every smoke run replays them
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable toolchain (the only one on
# our machines) use them. The fuzz build's target directory is in the machine's cache folder
# (scripts/cache.sh), so clones share its compiled dependencies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
default=15
long=false
case "${1:-}" in
  --long) default=1800 long=true ;;
  "") ;;
  *) echo "usage: scripts/fuzz.sh [--long]" >&2; exit 2 ;;
esac
SECONDS_EACH="${FUZZ_SECONDS:-$default}"
source scripts/cache.sh
TARGET_DIR="$RW_CACHE/target-fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz >&2
export RUSTC_BOOTSTRAP=1
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# fuzz_one TARGET: one target's run, its summary and (on a crash) its log's tail; fails when
# the target found a crash.
fuzz_one() {
  local t="$1" log="$scratch/$1.log" corpora rc
  echo "== fuzz $t (corpus of $(find "fuzz/corpus/$t" -type f | wc -l) inputs, then ${SECONDS_EACH}s)"
  # libFuzzer adds what it finds to the first corpus folder and only reads the others.
  if $long; then
    corpora=("fuzz/corpus/$t")
  else
    mkdir -p "$scratch/$t"
    corpora=("$scratch/$t" "fuzz/corpus/$t")
  fi
  rc=0
  cargo fuzz run --target-dir "$TARGET_DIR" --release --debug-assertions "$t" "${corpora[@]}" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [[ $rc != 0 ]]; then
    echo "fuzz target $t failed:"
    tail -n 60 "$log"
    return 1
  fi
}
# Each target is one process on one core: two run at a time.
source scripts/parallel.sh
in_parallel 2 fuzz_one split_chunks extract_filter config_parse decode_stream
