#!/usr/bin/env bash
# The whole thing on one machine: installs and starts the services, generates realistic
# failover files (Jitsu IngestMessage lines), puts some on S3, runs a 3-worker job the way
# Kubernetes would (indices 0..2), then prints the reprocessing_workers rows and a sample of
# what a librdkafka consumer (kcat) reads back.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/cache.sh
"$ROOT/scripts/services.sh" start
eval "$("$ROOT/scripts/services.sh" env)"
cargo build --release --locked --features generate --bin reprocessing-worker --bin rw-gen 2>&1 | tail -n 1

WORK="$(mktemp -d)"
JOB_ID="demo-$(date +%s)"
TOPIC="${KAFKA_DESTINATIONS_TOPIC:-destination-messages}"
BUCKET="failover-demo"
echo "== generating 6 failover files in $WORK"
for i in 0 1 2 3 4 5; do
  args=(--bytes 4000000 --seed "$i" --start $((1714550400 + i * 3600)))
  name="ingest_2024_05_01T0${i}_00_00.ndjson"
  if ((i % 2)); then "$RW_TARGET_DIR/release/rw-gen" "$WORK/$name.gz" --gzip "${args[@]}" 2>/dev/null
  else "$RW_TARGET_DIR/release/rw-gen" "$WORK/$name" "${args[@]}" 2>/dev/null; fi
done
echo "== uploading three of them to s3://$BUCKET/ (moto)"
python3 - "$WORK" "$BUCKET" <<'PY'
import boto3, json, os, sys, gzip
work, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
try:
    s3.create_bucket(Bucket=bucket)
except Exception:
    pass
entries = []
for i, name in enumerate(sorted(os.listdir(work))):
    path = os.path.join(work, name)
    size = os.path.getsize(path)
    if i < 3:
        s3.upload_file(path, bucket, "failover/" + name)
        entries.append({"path": f"s3://{bucket}/failover/{name}", "size": size})
    else:
        entries.append({"path": path, "size": size})
# The admin service gzips files.json; the worker detects it by magic bytes.
with gzip.open(os.path.join(work, "files.json"), "wt") as f:
    json.dump(entries, f)
with open(os.path.join(work, "config.json"), "w") as f:
    json.dump({"connection_ids": ["demo-clickhouse", "demo-webhook"], "stream_ids": ["stream-0", "stream-1", "stream-2"], "batch_size": 1000}, f)
PY
"$RW_TANSU_BIN" topic create "$TOPIC" --partitions 3 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" >/dev/null 2>&1 || true

echo "== running job $JOB_ID with 3 workers"
export JOB_ID KAFKA_DESTINATIONS_TOPIC="$TOPIC" FILES_CONFIG_PATH="$WORK/files.json" JOB_CONFIG_PATH="$WORK/config.json"
RW_LOG_DIR="$WORK/logs" "$ROOT/scripts/run-local-job.sh" 3
tail -n 1 "$WORK"/logs/worker-*.log

echo "== reprocessing_workers"
PGPASSWORD="$(sed -E 's#.*://[^:]+:([^@]+)@.*#\1#' <<<"$DATABASE_URL")" psql -h 127.0.0.1 -p "$RW_PG_PORT" -U postgres -P pager=off -c \
  "SELECT worker_index, status, processed_files || '/' || assigned_files AS files, total_lines, success_count, error_count, skipped_count, processed_bytes, completed_at - started_at AS took FROM reprocessing_workers WHERE job_id = '$JOB_ID' ORDER BY worker_index"

echo "== a sample of what kcat (librdkafka) reads back from $TOPIC"
LD_LIBRARY_PATH="$RW_KCAT_LD_LIBRARY_PATH" kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$TOPIC" -o beginning -c 3 -e -q -J 2>/dev/null \
  | cut -c 1-360 | sed 's/$/ .../'
