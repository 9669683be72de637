#!/usr/bin/env bash
# The fault suite, on the real services:
# - tests/faults.rs: kill -9 at random points, SIGTERM and resume, broker kill and restart,
#   PostgreSQL restart, S3 faults through a fault-injecting proxy (tansu, moto, PostgreSQL);
# - tests/cluster.rs: a three-broker Kafka cluster that pushes back (librdkafka's mock
#   cluster): leader moves, a broker down, NOT_ENOUGH_REPLICAS, a late acknowledgement, an
#   answer lost after the write, MESSAGE_TOO_LARGE, a line too large for Kafka, batch sizes, missing and denied topics, the
#   cluster down past the delivery deadline, SIGTERM, two overlapping runs of one index.
# - tests/faults.rs also: a broker restart then kill -9, other producers' traffic while the
#   worker is down, the resume read-back's cap, and a batch tansu lost after it moved the
#   producer's sequence past it (its object store refused the batch's write).
# Every case checks with kcat that nothing was lost and that duplicates stay within the
# bound the worker guarantees (0 where the read-back completes), then this prints one table.
# Called by scripts/test.sh; runs alone too (it starts the services).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
export RW_REQUIRE_SERVICES=1
log="$(mktemp)"
status=0
# Each case has its own job, topic and, where it stops one, its own broker or mock cluster, so
# four run side by side; the PostgreSQL restart touches every case's rows, so it runs alone.
# (Run one at a time, the cases took 422 s; four at a time, about 170 s.)
# Each run states how many cases it runs: a filter that matches fewer (a renamed test) or more
# (a case added without a line here) fails the suite, as a failed case does.
runs=(
  "9 faults --skip postgres_restart_mid_run --test-threads 4"
  "14 cluster --test-threads 4"
  "1 faults --exact postgres_restart_mid_run --test-threads 1"
)
for run in "${runs[@]}"; do
  read -r expected suite args <<<"$run"
  one="$(mktemp)"
  # shellcheck disable=SC2086 # $args is a list of words
  cargo test --locked --test "$suite" -- --ignored $args --nocapture 2>&1 | tee "$one" |
    grep -E '^(test |FAULT\||kill -9 seed|SIGTERM:|S3 proxy:|late answer:|test result)' || true
  cat "$one" >>"$log"
  passed="$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$one")"
  if [[ "$passed" != "$expected" ]]; then
    echo "== $suite $args: ${passed:-no} cases passed, $expected expected" >&2
    status=1
  fi
  rm -f "$one"
done
if ((status != 0)) || [[ $(grep -c '^test result: ok' "$log") != "${#runs[@]}" ]]; then
  status=1
  echo "== failures"
  sed -n '/^failures:$/,/^test result/p' "$log" | grep -v ' INFO ' | head -n 80
  # With --nocapture a panic's message is printed where it happened, not under "failures:".
  echo "== panics"
  grep -A 12 'panicked at' "$log" | grep -v ' INFO ' | cut -c1-2000 | head -n 120
fi
echo
echo "| case | runs | expected lines | messages read | lost | duplicates | guaranteed bound |"
echo "|---|---|---|---|---|---|---|"
grep '^FAULT|' "$log" | awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8}'
echo
echo "bound: 0 where the resume read-back completes; else interruptions x (2 x KAFKA_MAX_IN_FLIGHT + 2) x batch_size"
rm -f "$log"
exit $status
