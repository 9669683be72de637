#!/usr/bin/env bash
# Runs the worker side by side with its competitors, in one run, alternating and repeated,
# and prints the median of each, the ratio, the target and pass/fail. Nothing is hidden: a
# missed target is printed as missed.
#
#   scripts/bench.sh                 # ~1 GB of data (and its gzip), 5 runs per figure
#   scripts/bench.sh --size 200M --runs 3
#
# Figures:
#   dry-run plain  vs  split + 3-field-extract floor (rw-floor split-extract)   target ≥ 0.70
#   dry-run gzip   vs  zlib-rs decompression alone (rw-floor gunzip)            target ≥ 0.85
#   end to end into tansu (zstd)  vs  kcat -P (librdkafka, zstd, 1 MiB batches) target ≥ 1.0
#   tansu's own produce ceiling (tansu perf), for reading a tie at the ceiling
#   peak RSS, dry run, plain and gzip, at 1/10 of the size and at the full size  ≤ 256 MiB
#   scaling: 4 files, 1 worker vs 2 workers
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SIZE=1000M
RUNS=5
while (($#)); do
  case "$1" in
    --size) SIZE="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) echo "usage: $0 [--size 1000M] [--runs 5]" >&2; exit 2 ;;
  esac
done
bytes=$(numfmt --from=iec "$SIZE" 2>/dev/null || numfmt --from=si "$SIZE")
small=$((bytes / 10))

scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
# Loopback database: skip TLS so the figures measure the pipeline, not a handshake.
export DATABASE_URL="$DATABASE_URL?sslmode=disable"
echo "building (release, LTO)" >&2
cargo build --release --locked --bins --features generate 2>&1 | tail -n 1 >&2
BIN="$ROOT/target/release"
DATA="$ROOT/bench-data/$SIZE"
mkdir -p "$DATA"
gen() { [[ -s "$1" ]] || "$BIN/rw-gen" "$1" --bytes "$2" --seed 42 ${3:-} 2>/dev/null; }
gen "$DATA/big.ndjson" "$bytes"
gen "$DATA/big.ndjson.gz" "$bytes" --gzip
gen "$DATA/small.ndjson" "$small"
gen "$DATA/small.ndjson.gz" "$small" --gzip
for i in 0 1 2 3; do gen "$DATA/part$i.ndjson.gz" $((bytes / 4)) --gzip; done
LINES=$(wc -l <"$DATA/big.ndjson")

files_json() { # files.json for the given paths
  python3 -c 'import json,os,sys; print(json.dumps([{"path":p,"size":os.path.getsize(p)} for p in sys.argv[1:]]))' "$@"
}
echo '{"connection_ids":["bench-a","bench-b"],"dry_run":true}' >"$DATA/dry.json"
echo '{"connection_ids":["bench-a","bench-b"]}' >"$DATA/send.json"
for f in big.ndjson big.ndjson.gz small.ndjson small.ndjson.gz; do files_json "$DATA/$f" >"$DATA/$f.files.json"; done
files_json "$DATA"/part{0,1,2,3}.ndjson.gz >"$DATA/parts.files.json"

# Seconds (wall) of one command.
timeit() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }

worker() { # files.json, config.json, [total workers]
  local n=${3:-1} i pids=()
  for ((i = 0; i < n; i++)); do
    JOB_ID="bench-$RANDOM$RANDOM" WORKER_INDEX=$i TOTAL_WORKERS=$n FILES_CONFIG_PATH="$1" JOB_CONFIG_PATH="$2" \
      KAFKA_DESTINATIONS_TOPIC="${TOPIC:-bench}" RUST_LOG=warn "$BIN/reprocessing-worker" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}

median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

declare -A RESULT
pair() { # name, ours-cmd..., --, theirs-cmd...
  local name=$1; shift
  local ours=() theirs=() t a=() b=() i
  while [[ $1 != -- ]]; do ours+=("$1"); shift; done; shift
  theirs=("$@")
  for ((i = 0; i < RUNS; i++)); do
    a+=("$(timeit "${ours[@]}")")
    b+=("$(timeit "${theirs[@]}")")
  done
  RESULT[$name]="$(median "${a[@]}") $(median "${b[@]}")"
  echo "  $name: ours ${a[*]} | theirs ${b[*]}" >&2
}

echo "== dry run, plain ($SIZE) vs split+extract floor" >&2
pair plain worker "$DATA/big.ndjson.files.json" "$DATA/dry.json" -- "$BIN/rw-floor" split-extract "$DATA/big.ndjson"
echo "== dry run, gzip vs zlib-rs decompression alone" >&2
pair gzip worker "$DATA/big.ndjson.gz.files.json" "$DATA/dry.json" -- "$BIN/rw-floor" gunzip "$DATA/big.ndjson.gz"

echo "== end to end into tansu (zstd) vs kcat -P" >&2
TOPIC="bench-e2e-$RANDOM"
"$RW_TANSU_BIN" topic create "$TOPIC" --partitions 3 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" >/dev/null 2>&1
KTOPIC="bench-kcat-$RANDOM"
"$RW_TANSU_BIN" topic create "$KTOPIC" --partitions 3 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" >/dev/null 2>&1
# Half the data set: long enough that start-up (connections, metadata) is noise.
gen "$DATA/e2e.ndjson" $((bytes / 2))
files_json "$DATA/e2e.ndjson" >"$DATA/e2e.ndjson.files.json"
kcat_produce() {
  LD_LIBRARY_PATH="$RW_KCAT_LD_LIBRARY_PATH" kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$KTOPIC" -z zstd \
    -X batch.size=1048576 -X linger.ms=5 -H connection_ids=bench-a,bench-b -l "$DATA/e2e.ndjson"
}
TOPIC="$TOPIC" pair e2e worker "$DATA/e2e.ndjson.files.json" "$DATA/send.json" -- kcat_produce
SMALL_LINES=$(wc -l <"$DATA/e2e.ndjson")
CTOPIC="bench-ceiling-$RANDOM"
"$RW_TANSU_BIN" topic create "$CTOPIC" --partitions 3 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" >/dev/null 2>&1
ceiling=$( { timeout 40 "$RW_TANSU_BIN" perf "$CTOPIC" --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" produce \
  --batch-size 1000 --record-size 1400 --producers 2 --duration 10s 2>&1 || true; } | tail -n 3 | tr '\n' ' ')

echo "== peak RSS" >&2
rss() { /usr/bin/time -f %M env JOB_ID="bench-$RANDOM$RANDOM" WORKER_INDEX=0 TOTAL_WORKERS=1 FILES_CONFIG_PATH="$1" \
  JOB_CONFIG_PATH="$DATA/dry.json" RUST_LOG=warn "$BIN/reprocessing-worker" 2>&1 >/dev/null | tail -n 1; }
rss_plain_small=$(rss "$DATA/small.ndjson.files.json"); rss_plain_big=$(rss "$DATA/big.ndjson.files.json")
rss_gz_small=$(rss "$DATA/small.ndjson.gz.files.json"); rss_gz_big=$(rss "$DATA/big.ndjson.gz.files.json")

echo "== scaling: 4 gzip files, 1 worker vs 2 workers" >&2
one() { worker "$DATA/parts.files.json" "$DATA/dry.json" 1; }
two() { worker "$DATA/parts.files.json" "$DATA/dry.json" 2; }
pair scaling two -- one

python3 - "$bytes" "$LINES" "$SMALL_LINES" "${RESULT[plain]}" "${RESULT[gzip]}" "${RESULT[e2e]}" "${RESULT[scaling]}" \
  "$rss_plain_small" "$rss_plain_big" "$rss_gz_small" "$rss_gz_big" "$SIZE" "$RUNS" "$ceiling" <<'PY'
import sys
a = sys.argv[1:]
size, lines, small_lines = int(a[0]), int(a[1]), int(a[2])
plain, gz, e2e, scaling = [tuple(map(float, x.split())) for x in a[3:7]]
rss = [int(x) / 1024 for x in a[7:11]]
label, runs, ceiling = a[11], a[12], a[13]
rows = []
def row(fig, ours, theirs, ratio, target, ok):
    rows.append((fig, ours, theirs, ratio, target, "pass" if ok else "MISSED"))
gbs = lambda t: f"{size / t / 1e9:.2f} GB/s"
r = plain[1] / plain[0]
row("dry run plain vs split+extract floor", f"{gbs(plain[0])} ({lines/plain[0]/1e3:.0f}k lines/s)", gbs(plain[1]), f"{r:.2f}", ">= 0.70", r >= 0.70)
row("dry run plain, absolute", gbs(plain[0]), "-", "-", ">= 1.0 GB/s", size / plain[0] >= 1e9)
r = gz[1] / gz[0]
row("dry run gzip vs zlib-rs alone", gbs(gz[0]), gbs(gz[1]), f"{r:.2f}", ">= 0.85", r >= 0.85)
ours_eps, theirs_eps = small_lines / e2e[0], small_lines / e2e[1]
r = ours_eps / theirs_eps
row("end to end zstd into tansu vs kcat -P (half the data)", f"{ours_eps/1e3:.0f}k ev/s", f"{theirs_eps/1e3:.0f}k ev/s", f"{r:.2f}", ">= 1.0", r >= 1.0)
row("end to end, absolute", f"{ours_eps/1e3:.0f}k ev/s", "-", "-", ">= 150k ev/s", ours_eps >= 150e3)
# Flat: the full size may exceed the small one by at most the read-ahead window
# (4 chunks of 8 MiB), which a small compressed file never fills.
for name, small, big in (("plain", rss[0], rss[1]), ("gzip", rss[2], rss[3])):
    row(f"peak RSS dry run {name} (1/10 -> full size)", f"{small:.0f} -> {big:.0f} MiB", "-", f"{big/small:.2f}", "<= 256 MiB, flat", big <= 256 and big <= small + 32 + 8)
r = scaling[1] / scaling[0]
row("scaling 4 files: 2 workers vs 1", f"{scaling[0]:.2f} s", f"{scaling[1]:.2f} s", f"{r:.2f}x", "> 1 (2 cores)", r > 1.0)
print(f"\nmedians of {runs} alternating runs; data: {label} generated IngestMessage lines (~1.4 KB), seed 42; machine: {__import__('os').cpu_count()} cores")
print(f"tansu perf produce (1000 x 1400 B batches, 10 s): {ceiling.strip() or 'n/a'}\n")
w = [max(len(str(x[i])) for x in rows + [("figure", "ours", "theirs", "ratio", "target", "result")]) for i in range(6)]
hdr = ("figure", "ours", "theirs", "ratio", "target", "result")
print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)) + " |")
print("|" + "|".join("-" * (w[i] + 2) for i in range(6)) + "|")
for x in rows:
    print("| " + " | ".join(str(v).ljust(w[i]) for i, v in enumerate(x)) + " |")
PY
