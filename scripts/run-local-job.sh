#!/usr/bin/env bash
# Runs an N-pod job on this machine the way a Kubernetes Indexed Job would: N worker
# processes with JOB_COMPLETION_INDEX=0..N-1 and TOTAL_WORKERS=N, all other settings from
# the environment (JOB_ID, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, FILES_CONFIG_PATH,
# JOB_CONFIG_PATH, ...). Exits non-zero if any worker did. Logs go to $RW_LOG_DIR (or stderr).
#
#   JOB_ID=j1 FILES_CONFIG_PATH=files.json JOB_CONFIG_PATH=config.json scripts/run-local-job.sh 3
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:?usage: run-local-job.sh N}"
source "$ROOT/scripts/cache.sh"
BIN="${RW_BIN:-$RW_TARGET_DIR/release/reprocessing-worker}"
if [[ ! -x "$BIN" ]]; then
  (cd "$ROOT" && cargo build --release --locked --bin reprocessing-worker >&2)
fi
: "${JOB_ID:?set JOB_ID}"
pids=()
for ((i = 0; i < N; i++)); do
  if [[ -n "${RW_LOG_DIR:-}" ]]; then
    mkdir -p "$RW_LOG_DIR"
    env -u WORKER_INDEX JOB_COMPLETION_INDEX="$i" TOTAL_WORKERS="$N" "$BIN" 2>"$RW_LOG_DIR/worker-$i.log" &
  else
    env -u WORKER_INDEX JOB_COMPLETION_INDEX="$i" TOTAL_WORKERS="$N" "$BIN" &
  fi
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "worker $i failed" >&2
    status=1
  fi
done
exit $status
