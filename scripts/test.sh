#!/usr/bin/env bash
# Runs every test: lints, unit, property and in-process tests, the end-to-end tests on the
# real services, and the extra suites. Installs and starts what is missing. Fails if any test
# or lint fails, and prints how long each suite took, how many tests ran, and whether the
# machine's cache folder (scripts/cache.sh) was warm. Its cargo commands build into the cache
# folder's target/ (CARGO_TARGET_DIR, unless set), so that a fresh clone compiles only this
# crate, not its dependencies.
#   scripts/test.sh           everything (the README's test command, and CI's)
#   scripts/test.sh --quick   lints, unit, property and in-process tests, and the end-to-end
#                             tests on the services that start in seconds (not Apache Kafka):
#                             what a contributor runs often, in a few minutes
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac

source scripts/cache.sh
cache_state=cold
[[ -d "$RW_CACHE" ]] && [[ -n "$(ls -A "$RW_CACHE" 2>/dev/null)" ]] && cache_state=warm
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RW_CACHE/target}"

# Everything printed is also kept, to count the tests that ran at the end.
out_log="$(mktemp)"
exec > >(tee "$out_log") 2>&1

# Here a missing service is a failure, never a skip (see tests/common/mod.rs).
export RW_REQUIRE_SERVICES=1
# Property tests without a case count of their own run 1,024 cases, not proptest's 256.
export PROPTEST_CASES="${PROPTEST_CASES:-1024}"

timings=()
suite_start=0
suite_name=""
step() {
  end_step
  suite_name="$*"
  suite_start=$SECONDS
  printf '\n=== %s\n' "$suite_name"
}
end_step() {
  if [[ -n "$suite_name" ]]; then
    timings+=("$(printf '%6ds  %s' $((SECONDS - suite_start)) "$suite_name")")
  fi
  suite_name=""
}
report() {
  local rc=$?
  end_step
  printf '\n=== time per suite\n'
  printf '%s\n' "${timings[@]}"
  # Every cargo "test result:" line printed above, summed.
  local passed failed
  passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$out_log" | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')
  failed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$out_log" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')
  printf '\n=== total %ds (%s), cache folder %s: %s\n' "$SECONDS" "$($quick && echo quick || echo full)" "$cache_state" \
    "$([[ $rc == 0 ]] && echo passed || echo FAILED)"
  printf 'tests: %d passed, %d failed\n' "${passed:-0}" "${failed:-0}"
}
trap report EXIT

source scripts/parallel.sh
# cargo_tests TARGET: one test target ("--lib --bins", "--test=e2e"), four threads.
cargo_tests() {
  # shellcheck disable=SC2086 # $1 is a list of words
  cargo test --locked $1 -- --test-threads 4
}

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required" >&2; exit 1; }
cargo --version
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "lints: cargo fmt --check, clippy -D warnings, cargo doc -D warnings; the core crate alone"
cargo fmt --all --check
# The pure core built by itself, without the features the worker crate adds to their shared
# dependencies: an IO import there fails here even where the workspace's build would take it.
cargo check --locked -p rw-core --all-targets 2>&1 | tail -n 1
cargo clippy --locked --all-targets -- -D warnings 2>&1 | tail -n 3
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps 2>&1 | tail -n 1

step "services (PostgreSQL 15, tansu, moto, fake-gcs-server)"
scripts/services.sh start
eval "$(scripts/services.sh env)"

if $quick; then
  step "build"
  cargo build --all-targets --locked 2>&1 | tail -n 3
  # Every end-to-end suite but those on Apache Kafka.
  suites=()
  for f in tests/*.rs; do
    name="$(basename "$f" .rs)"
    [[ "$name" == kafka_security || "$name" == apache_kafka ]] || suites+=(--test "$name")
  done
  step "unit, property, in-process and end-to-end tests (quick: without Apache Kafka's suites)"
  cargo test --locked --lib --bins "${suites[@]}" -- --test-threads 4
  end_step
  printf '\n=== quick tests passed\n'
  exit 0
fi

# Its own step, so its time shows: the first run fetches the jars into the cache folder.
step "Apache Kafka: three KRaft nodes (tests/kafka_security.rs, tests/apache_kafka.rs)"
scripts/services.sh start-kafka
eval "$(scripts/services.sh env)"

step "services.sh refuses a port another process holds (scripts/services-test.sh)"
scripts/services-test.sh

step "build"
cargo build --all-targets --locked 2>&1 | tail -n 3

step "unit, property, in-process and end-to-end tests"
# Three test binaries at a time: the end-to-end suites mostly wait on the services and on the
# worker processes they start.
in_parallel 3 cargo_tests "--lib --bins" $(for f in tests/*.rs; do printf -- '--test=%s ' "$(basename "$f" .rs)"; done)

step "the Kafka mock cluster fixture (self-test)"
python3 scripts/mock_kafka_selftest.py

# One case at a time: they stop, kill and restart the cluster's nodes. The static binaries
# (scripts/static-test.sh's build: two fat-LTO links, minutes of CPU) build beside the cases
# that mostly wait on nodes that are down, elected or throttling, and static-test.sh then finds
# them built; the live-topic cases, which need the CPU for millions of records, run after it.
# (Beside the live-topic cases the build made the suite 231 s slower and saved 180 s.)
step "Apache Kafka suite (tests/apache_kafka.rs)"
static_log="$(mktemp)"
scripts/build-static.sh --target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl >"$static_log" 2>&1 &
static_build=$!
cargo test --locked --test apache_kafka -- --ignored --test-threads 1 --nocapture --skip live_topic
if ! wait "$static_build"; then
  # static-test.sh's own build fails the same way, with the error in its step's output.
  tail -n 20 "$static_log"
fi
cargo test --locked --test apache_kafka -- --ignored --test-threads 1 --nocapture live_topic

# Each criterion bench once, as a test (the test profile: no LTO build of its own).
step "benches, each run once"
cargo test --locked --benches 2>&1 | tail -n 3

# Each of them must be there: a missing suite fails the run rather than skip it.
for extra in scripts/faults.sh scripts/fuzz.sh scripts/static-test.sh; do
  [[ -f "$extra" ]] || { echo "missing test suite: $extra" >&2; exit 1; }
  step "$extra"
  bash "$extra"
done

end_step
printf '\n=== all tests passed\n'
