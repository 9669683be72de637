#!/usr/bin/env bash
# Tests what the scratch image would contain: the static binary alone in an empty root
# (chroot into a directory with only the binary, a CA bundle and the job's two files),
# with `env -i` and only the job's variables, as a non-root user, against the real
# services on loopback. It must complete a small job from S3, proving it needs no libc,
# no /etc files and no DNS for loopback addresses. Also validates the Kubernetes manifests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
BIN="$(scripts/build-static.sh)"

echo "== static binary"
file "$BIN"
file "$BIN" | grep -Eq 'statically linked|static-pie linked' || { echo "not static" >&2; exit 1; }
LDD="$(ldd "$BIN" 2>&1 || true)"
grep -Eq 'statically linked|not a dynamic executable' <<<"$LDD" || { echo "ldd found dynamic dependencies: $LDD" >&2; exit 1; }
echo "ldd: $LDD"

echo "== empty root"
JAIL="$(mktemp -d)"
trap 'rm -rf "$JAIL"' EXIT
mkdir -p "$JAIL/etc/ssl/certs" "$JAIL/config/files" "$JAIL/config/job"
cp "$BIN" "$JAIL/reprocessing-worker"
cp /etc/ssl/certs/ca-certificates.crt "$JAIL/etc/ssl/certs/" 2>/dev/null || touch "$JAIL/etc/ssl/certs/ca-certificates.crt"
JOB_ID="static-$(date +%s)-$RANDOM"
TOPIC="static-$RANDOM"
BUCKET="static-test"
"$RW_TANSU_BIN" topic create "$TOPIC" --partitions 2 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" >/dev/null
LINES=2000
python3 - "$JAIL" "$BUCKET" "$LINES" <<'PY'
import boto3, gzip, json, os, sys
jail, bucket, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
try: s3.create_bucket(Bucket=bucket)
except Exception: pass
lines = [json.dumps({"messageId": f"static-{i}", "messageCreated": "2024-05-01T00:00:00Z", "origin": {"sourceId": "s"}}) for i in range(n)]
body = gzip.compress(("\n".join(lines) + "\n").encode())
s3.put_object(Bucket=bucket, Key="static.ndjson.gz", Body=body)
json.dump([{"path": f"s3://{bucket}/static.ndjson.gz", "size": len(body)}], open(f"{jail}/config/files/files.json", "w"))
json.dump({"connection_ids": ["static-c"]}, open(f"{jail}/config/job/config.json", "w"))
PY
chmod -R a+rX "$JAIL"
ls -R "$JAIL" | head -20
env -i JOB_ID="$JOB_ID" WORKER_INDEX=0 TOTAL_WORKERS=1 DATABASE_URL="$DATABASE_URL" \
  KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" KAFKA_DESTINATIONS_TOPIC="$TOPIC" \
  AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  AWS_REGION=us-east-1 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  "$(command -v chroot)" --userspec=65532:65532 "$JAIL" /reprocessing-worker
GOT=$(LD_LIBRARY_PATH="$RW_KCAT_LD_LIBRARY_PATH" kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$TOPIC" -o beginning -e -q -f '%s\n' | sort -u | wc -l)
ROW=$(PGPASSWORD="$(sed -E 's#.*://[^:]+:([^@]+)@.*#\1#' <<<"$DATABASE_URL")" psql -h 127.0.0.1 -p "$RW_PG_PORT" -U postgres -Atc \
  "SELECT status || ' ' || success_count FROM reprocessing_workers WHERE job_id = '$JOB_ID'")
echo "read back $GOT distinct messages; row: $ROW"
[[ "$GOT" == "$LINES" && "$ROW" == "completed $LINES" ]] || { echo "static run failed" >&2; exit 1; }

echo "== Kubernetes manifests (schema validation)"
kubernetes-validate --strict -k 1.30.0 deploy/k8s/indexed-job.yaml
# The validator must reject a broken manifest, or it proves nothing.
sed 's/completionMode: Indexed/completionMode: Indexd/; s/backoffLimit: 6/backoffLimit: "six"/' deploy/k8s/indexed-job.yaml >"$JAIL/bad.yaml"
if kubernetes-validate --strict -k 1.30.0 "$JAIL/bad.yaml" >/dev/null 2>&1; then echo "validator accepted a broken manifest" >&2; exit 1; fi
echo "static binary and manifests: ok"
