#!/usr/bin/env bash
# Tests what the scratch image would contain, for both of its platforms: the static binary
# (scripts/build-static.sh, the stripped `dist` profile) alone in an empty root (chroot into a
# directory with only the binary, a CA bundle and the job's two files), with `env -i` and only
# the job's variables, as a non-root user, against the real services on loopback. Each binary
# must complete a small job from S3, proving it needs no libc, no /etc files and no DNS for
# loopback addresses:
#   linux/amd64  x86_64-unknown-linux-musl, run directly;
#   linux/arm64  aarch64-unknown-linux-musl, run under QEMU user-mode emulation (Debian's
#                qemu-user-static: a static qemu-aarch64 copied into the empty root).
# Each binary must be statically linked for its CPU (`file`) and at most 30 MB (the image is
# the binary plus a CA bundle). Also validates the Kubernetes manifests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
MAX_BYTES=$((30 * 1024 * 1024))

if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq qemu-user-static >&2
fi
QEMU_AARCH64="$(command -v qemu-aarch64-static)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== build (scripts/build-static.sh, profile dist)"
t=$SECONDS
{ read -r BIN_AMD64; read -r BIN_ARM64; } < <(scripts/build-static.sh --target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl)
[[ -n "${BIN_AMD64:-}" && -n "${BIN_ARM64:-}" ]] || { echo "the static build failed" >&2; exit 1; }
echo "x86_64-unknown-linux-musl and aarch64-unknown-linux-musl, in one build: $((SECONDS - t))s"

# check_binary NAME BIN ARCH: `file` names ARCH and static linking; ldd finds nothing to load;
# the size is printed and at most MAX_BYTES.
check_binary() {
  local name="$1" bin="$2" arch="$3" desc ldd_out size
  echo "== static binary: $name"
  desc="$(file "$bin")"
  echo "$desc"
  grep -q "$arch" <<<"$desc" || { echo "$name: not built for $arch" >&2; exit 1; }
  grep -Eq 'statically linked|static-pie linked' <<<"$desc" || { echo "$name: not static" >&2; exit 1; }
  ldd_out="$(ldd "$bin" 2>&1 || true)"
  grep -Eq 'statically linked|not a dynamic executable' <<<"$ldd_out" || { echo "$name: ldd found dynamic dependencies: $ldd_out" >&2; exit 1; }
  echo "ldd: $ldd_out"
  size="$(stat -c %s "$bin")"
  echo "size: $(awk -v b="$size" 'BEGIN { printf "%.1f MB (%d bytes)", b / 1048576, b }')"
  ((size <= MAX_BYTES)) || { echo "$name: $size bytes, over the limit of $MAX_BYTES (30 MB)" >&2; exit 1; }
}
check_binary linux/amd64 "$BIN_AMD64" 'x86-64'
check_binary linux/arm64 "$BIN_ARM64" 'ARM aarch64'

# run_job NAME BIN [EMULATOR]: the binary (under EMULATOR, copied into the root, if given) in
# an empty root completes a job of its own (its own JOB_ID, topic and S3 object); every line
# is read back from Kafka and the worker's row says completed.
BUCKET="static-test"
LINES=2000
run_job() {
  local name="$1" bin="$2" emulator="${3:-}"
  local jail="$WORK/$name" job_id topic="static-$name-$RANDOM" key="static-$name-$RANDOM.ndjson.gz" got row t
  job_id="static-$name-$(date +%s)-$RANDOM"
  local cmd=(/reprocessing-worker)
  echo "== empty root: $name${emulator:+ (under $(basename "$emulator"))}"
  mkdir -p "$jail/etc/ssl/certs" "$jail/config/files" "$jail/config/job"
  cp "$bin" "$jail/reprocessing-worker"
  if [[ -n "$emulator" ]]; then
    cp "$emulator" "$jail/$(basename "$emulator")"
    cmd=("/$(basename "$emulator")" /reprocessing-worker)
  fi
  cp /etc/ssl/certs/ca-certificates.crt "$jail/etc/ssl/certs/" 2>/dev/null || touch "$jail/etc/ssl/certs/ca-certificates.crt"
  "$RW_TANSU_BIN" topic create "$topic" --partitions 2 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" >/dev/null
  python3 - "$jail" "$BUCKET" "$key" "$LINES" <<'PY'
import boto3, gzip, json, os, sys
jail, bucket, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
try: s3.create_bucket(Bucket=bucket)
except Exception: pass
lines = [json.dumps({"messageId": f"static-{i}", "messageCreated": "2024-05-01T00:00:00Z", "origin": {"sourceId": "s"}}) for i in range(n)]
body = gzip.compress(("\n".join(lines) + "\n").encode())
s3.put_object(Bucket=bucket, Key=key, Body=body)
json.dump([{"path": f"s3://{bucket}/{key}", "size": len(body)}], open(f"{jail}/config/files/files.json", "w"))
json.dump({"connection_ids": ["static-c"]}, open(f"{jail}/config/job/config.json", "w"))
PY
  chmod -R a+rX "$jail"
  (cd "$jail" && find . | sort)
  t=$SECONDS
  env -i JOB_ID="$job_id" WORKER_INDEX=0 TOTAL_WORKERS=1 DATABASE_URL="$DATABASE_URL" \
    KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" KAFKA_DESTINATIONS_TOPIC="$topic" \
    AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
    AWS_REGION=us-east-1 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    "$(command -v chroot)" --userspec=65532:65532 "$jail" "${cmd[@]}" 2>"$WORK/$name.log" ||
    { cat "$WORK/$name.log" >&2; echo "$name: the worker failed" >&2; exit 1; }
  cat "$WORK/$name.log" >&2
  # The static build compiles zstd with .cargo/config.toml's default level too.
  grep -q 'zstd_level=1' "$WORK/$name.log" || { echo "$name: Kafka batches are not zstd level 1 (.cargo/config.toml)" >&2; exit 1; }
  # zstd's contexts come from mimalloc, not from musl's malloc (Cargo.toml, mimalloc's override).
  grep -q 'c_malloc="\?mimalloc' "$WORK/$name.log" || { echo "$name: C's malloc is not mimalloc's (Cargo.toml)" >&2; exit 1; }
  got=$(LD_LIBRARY_PATH="$RW_KCAT_LD_LIBRARY_PATH" kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -o beginning -e -q -f '%s\n' | sort -u | wc -l)
  row=$(PGPASSWORD="$(sed -E 's#.*://[^:]+:([^@]+)@.*#\1#' <<<"$DATABASE_URL")" psql -h 127.0.0.1 -p "$RW_PG_PORT" -U postgres -Atc \
    "SELECT status || ' ' || success_count FROM reprocessing_workers WHERE job_id = '$job_id'")
  echo "$name: job ran in $((SECONDS - t))s; read back $got distinct messages; row: $row"
  [[ "$got" == "$LINES" && "$row" == "completed $LINES" ]] || { echo "$name: static run failed" >&2; exit 1; }
}
run_job amd64 "$BIN_AMD64"
run_job arm64 "$BIN_ARM64" "$QEMU_AARCH64"

echo "== Kubernetes manifests (schema validation)"
kubernetes-validate --strict -k 1.30.0 deploy/k8s/indexed-job.yaml
# The validator must reject a broken manifest, or it proves nothing.
sed 's/completionMode: Indexed/completionMode: Indexd/; s/backoffLimit: 6/backoffLimit: "six"/' deploy/k8s/indexed-job.yaml >"$WORK/bad.yaml"
if kubernetes-validate --strict -k 1.30.0 "$WORK/bad.yaml" >/dev/null 2>&1; then echo "validator accepted a broken manifest" >&2; exit 1; fi
echo "static binaries (amd64, arm64) and manifests: ok"
