#!/usr/bin/env bash
# Runs the worker side by side with its competitors, in one run, alternating and repeated,
# and prints the median of each, the ratio, the target and pass/fail. Nothing is hidden: a
# missed target is printed as missed.
#
#   scripts/bench.sh                 # ~1 GB of data (and its gzip), 5 runs per figure, then small files
#   scripts/bench.sh --size 200M --runs 3
#   scripts/bench.sh --only small --runs 3    # the small-files figures alone
#   scripts/bench.sh --only big               # the figures below without the small files
#   scripts/bench.sh --only apache --size 400M   # end to end on Apache Kafka alone (see below)
#   scripts/bench.sh --only fleet             # 100 and 500 pods' status writes on one PostgreSQL
#   scripts/bench.sh --only readback          # a resume's read-back of 5 x --size vs kcat -C (below)
#   scripts/bench.sh --no-build ...           # use target/release as it is (no cargo build)
#   scripts/bench.sh --check ...              # exit 1 when a figure misses its target (by hand;
#                                             # the shared CI machine is too noisy for targets)
#
# Figures:
#   dry-run plain  vs  split + 3-field-extract floor (rw-floor split-extract)   target ≥ 0.70
#   dry-run gzip   vs  zlib-rs decompression alone (rw-floor gunzip)            target ≥ 0.85
#   end to end into tansu (zstd)  vs  kcat -P (librdkafka, zstd, 1 MiB batches) target ≥ 1.3
#   (both idempotent: the worker takes tansu's producer ids, kcat has enable.idempotence)
#   the same runs' CPU seconds (user + system) per GB, ours vs kcat's            target ≤ 0.90
#   the dry run plain serving /metrics, scraped every 0.1 s, vs without          target ≤ 1.03
#   tansu's own produce ceiling (tansu perf), for reading a tie at the ceiling
#   peak RSS, dry run, plain and gzip, at 1/10 of the size and at the full size  ≤ 256 MiB
#   scaling: 4 files, 1 worker vs 2 workers
#
# Small files (--only small): 300 gzip files of 150 lines each (45,000 lines), cut from one
# generated stream, so that "one file" below holds exactly the same lines; on moto S3 and on
# local disk. Ratios are wall time, many files ÷ one file:
#   300 S3 files end to end into tansu  vs  the same lines in one S3 gzip file  target ≤ 2
#   the same 300 S3 files through scripts/latency_proxy.py (25 ms per request)  target ≤ 3 s
#   dry run, 300 local files  vs  one local file                                target ≤ 1.5
#   peak RSS, dry run, 2,000 local files of 150 lines                           ≤ 256 MiB
# Apache Kafka (--only apache; also part of all): the three-node KRaft cluster of
# `scripts/services.sh start-kafka`, a fresh topic per run (3 partitions, replication factor 3,
# min.insync.replicas 2), zstd, acks=all, 1 MiB batches; the same half data set:
#   the worker end to end  vs  kcat -P                                         target ≥ 1.0
#   the worker end to end  vs  Kafka's ProducerPerformance (--payload-file)    target ≥ 1.0
#   CPU seconds (user + system) per GB of lines, each of the three; ours vs kcat's  target ≤ 0.75
#   (kcat with enable.idempotence, as the worker takes the cluster's producer ids)
# The read-back (--only readback; also part of all): on the Apache Kafka cluster, one topic of
# 5 x --size of records (8 partitions, RF 1), this job's lines 3% of them, the rest live
# records; rw-readback (the worker's read-back alone) vs kcat -C over the whole topic:
#   records a second                                                           target >= 1.0
#   peak RSS of the read-back                                                  <= 256 MiB
#   records read per record of ours found: 1 pod; pod 0 of 8, own partitions vs all
# The fleet (--only fleet; also part of all): rw-fleet runs N status flushers in one process,
# each with its own connection and row, fed 500,000 lines a second over 96 partitions, against
# the PostgreSQL of scripts/services.sh, for FLEET_SECONDS (15), at N = 100 and 500, with the
# write interval (STATUS_MIN_INTERVAL_MS, 1 s) and without it (0: the old rule):
#   writes a second per pod                                              target ≤ 1.0
#   transactions and rows a second (the database's own statistics), its CPU, the p99 write
#   latency, and how stale a row gets                                    target ≤ 2 s
# Every timed run must exit 0, or the script fails; what it delivered is checked: one record per
# line in its topic (the worker's and kcat's), a completed row with every line for the dry runs.
# FILES_IN_FLIGHT, when set, is passed on to the worker (unset: the worker's default).
# RW_BENCH_PROXY_PORT moves the proxy (default 15099).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SIZE=1000M
RUNS=5
ONLY=all
BUILD=1
CHECK=0
usage() { echo "usage: $0 [--size 1000M] [--runs 5] [--only all|big|small|apache|fleet|readback] [--no-build] [--check]" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --size) SIZE="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --check) CHECK=1; shift ;;
    *) usage ;;
  esac
done
case "$ONLY" in all | big | small | apache | fleet | readback) ;; *) usage ;; esac
bytes=$(numfmt --from=iec "$SIZE" 2>/dev/null || numfmt --from=si "$SIZE")
small=$((bytes / 10))

scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
# Loopback database: skip TLS so the figures measure the pipeline, not a handshake.
export DATABASE_URL="$DATABASE_URL?sslmode=disable"
if ((BUILD)); then
  echo "building (release, LTO)" >&2
  cargo build --release --locked --bins --features generate 2>&1 | tail -n 1 >&2
fi
source "$ROOT/scripts/cache.sh"
BIN="$RW_TARGET_DIR/release"
for b in reprocessing-worker rw-gen rw-floor rw-fleet rw-readback; do
  [[ $b == rw-floor && ($ONLY == small || $ONLY == apache || $ONLY == fleet || $ONLY == readback) ]] && continue
  [[ $b == rw-fleet && $ONLY != all && $ONLY != fleet ]] && continue
  [[ -x "$BIN/$b" ]] || { echo "$BIN/$b is missing (cargo build --release --bins --features generate)" >&2; exit 1; }
done
DATA="$ROOT/bench-data/$SIZE"

# Each section appends its table rows (JSON lines) and its notes; the table is printed at the end.
ROWS=$(mktemp)
NOTES=$(mktemp)
PROXY_PID=
cleanup() {
  [[ -z $PROXY_PID ]] || kill "$PROXY_PID" 2>/dev/null || true
  rm -f "$ROWS" "$NOTES" "${SCRAPES:-}"
}
trap cleanup EXIT

gen() { [[ -s "$1" ]] || "$BIN/rw-gen" "$1" --bytes "$2" --seed 42 ${3:+"$3"} 2>/dev/null; }

files_json() { # files.json for the given paths
  python3 -c 'import json,os,sys; print(json.dumps([{"path":p,"size":os.path.getsize(p)} for p in sys.argv[1:]]))' "$@"
}

# Wall and CPU seconds (user + sys, its child processes included) of one command, as
# "wall cpu"; a command that fails stops the script (its figure would mean nothing: a run
# that fails fast would score as fast).
timeit() {
  local TIMEFORMAT='%R %U %S' t
  t=$( { time "$@" >/dev/null 2>&1; } 2>&1) || { echo "timed run failed: $*" >&2; return 1; }
  awk '{ printf "%s %.3f\n", $1, $2 + $3 }' <<<"$t"
}

worker() { # files.json, config.json, [total workers]; BENCH_JOB_ID fixes the job id (1 worker)
  local n=${3:-1} i pids=() rc=0
  for ((i = 0; i < n; i++)); do
    JOB_ID="${BENCH_JOB_ID:-bench-$RANDOM$RANDOM}" WORKER_INDEX=$i TOTAL_WORKERS=$n FILES_CONFIG_PATH="$1" JOB_CONFIG_PATH="$2" \
      KAFKA_DESTINATIONS_TOPIC="${TOPIC:-bench}" RUST_LOG=warn "$BIN/reprocessing-worker" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  return "$rc"
}

# Records in a topic of the broker at $1, read back by librdkafka (kcat), not the partitions'
# end offsets: tansu's undercount what a consumer reads.
records() {
  LD_LIBRARY_PATH="$RW_KCAT_LD_LIBRARY_PATH" kcat -C -b "$1" -t "$2" -o beginning -e -q -f '%p\n' | wc -l
}

# One untimed run whose rows must say completed with every line a success (the generated lines
# are all valid: a run that turned lines into errors or skips fails the check): what a figure
# of runs like it delivered. (The timed runs of the dry figures write rows too; checking one is enough to know
# the command does the work, and each timed run's exit code is checked.)
dry_check() { # what, files.json, lines, [total workers]
  local job="bench-check-$RANDOM$RANDOM" n=${4:-1} got want
  BENCH_JOB_ID=$job worker "$2" "$DATA/dry.json" "$n" >/dev/null 2>&1 || { echo "$1: the worker failed" >&2; exit 1; }
  got=$(psql "$DATABASE_URL" -XAtc "SELECT count(*) FILTER (WHERE status = 'completed') || ' ' \
    || sum(success_count) || ' ' || sum(error_count + skipped_count) FROM reprocessing_workers WHERE job_id = '$job'")
  want="$n $3 0"
  [[ $got == "$want" ]] || { echo "$1: rows say '$got', expected '$want' (rows completed, successes, errors and skips)" >&2; exit 1; }
  echo "  check $1: $n row(s) completed, $3 lines" >&2
}

median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

declare -A RESULT CPU
pair() { # name, ours-cmd..., --, theirs-cmd...
  local name=$1; shift
  local ours=() theirs=() t a=() b=() ca=() cb=() i
  while [[ $1 != -- ]]; do ours+=("$1"); shift; done; shift
  theirs=("$@")
  for ((i = 0; i < RUNS; i++)); do
    t=$(timeit "${ours[@]}") || exit 1
    a+=("${t% *}") ca+=("${t#* }")
    t=$(timeit "${theirs[@]}") || exit 1
    b+=("${t% *}") cb+=("${t#* }")
  done
  RESULT[$name]="$(median "${a[@]}") $(median "${b[@]}")"
  CPU[$name]="$(median "${ca[@]}") $(median "${cb[@]}")"
  echo "  $name: ours ${a[*]} | theirs ${b[*]} (wall s); cpu ours ${ca[*]} | theirs ${cb[*]}" >&2
}

# Peak RSS (KiB) of one dry run. BENCH_JOB_ID fixes the job id.
rss() { # files.json, [config.json]
  /usr/bin/time -f %M env JOB_ID="${BENCH_JOB_ID:-bench-$RANDOM$RANDOM}" WORKER_INDEX=0 TOTAL_WORKERS=1 FILES_CONFIG_PATH="$1" \
  JOB_CONFIG_PATH="${2:-$DATA/dry.json}" RUST_LOG=warn "$BIN/reprocessing-worker" 2>&1 >/dev/null | tail -n 1; }

bench_big() {
  mkdir -p "$DATA"
  gen "$DATA/big.ndjson" "$bytes"
  gen "$DATA/big.ndjson.gz" "$bytes" --gzip
  gen "$DATA/small.ndjson" "$small"
  gen "$DATA/small.ndjson.gz" "$small" --gzip
  for i in 0 1 2 3; do gen "$DATA/part$i.ndjson.gz" $((bytes / 4)) --gzip; done
  LINES=$(wc -l <"$DATA/big.ndjson")

  echo '{"connection_ids":["bench-a","bench-b"],"dry_run":true}' >"$DATA/dry.json"
  echo '{"connection_ids":["bench-a","bench-b"]}' >"$DATA/send.json"
  for f in big.ndjson big.ndjson.gz small.ndjson small.ndjson.gz; do files_json "$DATA/$f" >"$DATA/$f.files.json"; done
  files_json "$DATA"/part{0,1,2,3}.ndjson.gz >"$DATA/parts.files.json"

  dry_check "dry run plain" "$DATA/big.ndjson.files.json" "$LINES"
  dry_check "dry run gzip" "$DATA/big.ndjson.gz.files.json" "$(zcat "$DATA/big.ndjson.gz" | wc -l)"
  dry_check "dry run, 4 files, 2 workers" "$DATA/parts.files.json" "$(zcat "$DATA"/part{0,1,2,3}.ndjson.gz | wc -l)" 2
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
      -X enable.idempotence=true -X batch.size=1048576 -X linger.ms=5 -H connection_ids=bench-a,bench-b -l "$DATA/e2e.ndjson"
  }
  TOPIC="$TOPIC" pair e2e worker "$DATA/e2e.ndjson.files.json" "$DATA/send.json" -- kcat_produce
  SMALL_LINES=$(wc -l <"$DATA/e2e.ndjson")
  # Each of the RUNS runs sent every line once: the topics hold RUNS records per line.
  for t in "$TOPIC" "$KTOPIC"; do
    got=$(records "$KAFKA_BOOTSTRAP_SERVERS" "$t")
    ((got == RUNS * SMALL_LINES)) || { echo "end to end: $t holds $got records, expected $RUNS x $SMALL_LINES" >&2; exit 1; }
  done
  echo "  check e2e: $TOPIC and $KTOPIC hold $RUNS x $SMALL_LINES records" >&2
  CTOPIC="bench-ceiling-$RANDOM"
  "$RW_TANSU_BIN" topic create "$CTOPIC" --partitions 3 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" >/dev/null 2>&1
  ceiling=$( { timeout 40 "$RW_TANSU_BIN" perf "$CTOPIC" --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" produce \
    --batch-size 1000 --record-size 1400 --producers 2 --duration 10s 2>&1 || true; } | tail -n 3 | tr '\n' ' ')

  echo "== peak RSS" >&2
  rss_plain_small=$(rss "$DATA/small.ndjson.files.json"); rss_plain_big=$(rss "$DATA/big.ndjson.files.json")
  rss_gz_small=$(rss "$DATA/small.ndjson.gz.files.json"); rss_gz_big=$(rss "$DATA/big.ndjson.gz.files.json")

  echo "== scaling: 4 gzip files, 1 worker vs 2 workers" >&2
  one() { worker "$DATA/parts.files.json" "$DATA/dry.json" 1; }
  two() { worker "$DATA/parts.files.json" "$DATA/dry.json" 2; }
  pair scaling two -- one

  echo "== the metrics' cost: the dry run serving /metrics, scraped every 0.1 s, vs without" >&2
  MPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  SCRAPES=$(mktemp)
  scraped() { # the plain dry run with METRICS_ADDR, scraped every 0.1 s until it ends; fails when no scrape answered
    METRICS_ADDR="127.0.0.1:$MPORT" worker "$DATA/big.ndjson.files.json" "$DATA/dry.json" &
    local w=$! s rc=0
    : >"$SCRAPES"
    # The scraper in the background: the time ends when the worker does, not at the scraper's
    # next look (up to 0.1 s later, a bias of several percent on a run of about a second).
    (while kill -0 "$w" 2>/dev/null; do
      curl -sf "http://127.0.0.1:$MPORT/metrics" >/dev/null && echo >>"$SCRAPES"
      sleep 0.1
    done) &
    s=$!
    wait "$w" || rc=$?
    kill "$s" 2>/dev/null; wait "$s" 2>/dev/null || true
    ((rc == 0)) && [[ -s $SCRAPES ]]
  }
  unscraped() { worker "$DATA/big.ndjson.files.json" "$DATA/dry.json"; }
  # What the scraped run delivered: its last scrape (kept for it by METRICS_LINGER_SECS) counts
  # every line.
  (METRICS_ADDR="127.0.0.1:$MPORT" METRICS_LINGER_SECS=60 JOB_ID="bench-check-$RANDOM$RANDOM" WORKER_INDEX=0 TOTAL_WORKERS=1 \
    FILES_CONFIG_PATH="$DATA/big.ndjson.files.json" JOB_CONFIG_PATH="$DATA/dry.json" RUST_LOG=warn \
    "$BIN/reprocessing-worker" >/dev/null 2>&1 &
    w=$! # the worker itself, so that SIGTERM ends its linger and frees the port
    for _ in $(seq 600); do
      got=$(curl -sf "http://127.0.0.1:$MPORT/metrics" | awk '/^rw_lines_total\{.*outcome="acknowledged"/ {print $NF}')
      [[ $got == "$LINES" ]] && break
      sleep 0.5
    done
    kill -TERM "$w"; wait "$w" || true
    [[ $got == "$LINES" ]] || { echo "metrics: the last scrape says ${got:-nothing} lines acknowledged, expected $LINES" >&2; exit 1; }
    echo "  check metrics: the last scrape counts $LINES lines acknowledged" >&2) || exit 1
  pair metrics scraped -- unscraped

  python3 - "$bytes" "$LINES" "$SMALL_LINES" "${RESULT[plain]}" "${RESULT[gzip]}" "${RESULT[e2e]}" "${RESULT[scaling]}" \
    "$rss_plain_small" "$rss_plain_big" "$rss_gz_small" "$rss_gz_big" "$SIZE" "$RUNS" "$ceiling" "$ROWS" "$NOTES" \
    "${RESULT[metrics]}" "${CPU[e2e]}" "$(stat -c %s "$DATA/e2e.ndjson")" <<'PY'
import json, sys
a = sys.argv[1:]
size, lines, small_lines = int(a[0]), int(a[1]), int(a[2])
plain, gz, e2e, scaling = [tuple(map(float, x.split())) for x in a[3:7]]
rss = [int(x) / 1024 for x in a[7:11]]
label, runs, ceiling = a[11], a[12], a[13]
rows_path, notes_path = a[14], a[15]
metrics = tuple(map(float, a[16].split()))
e2e_cpu, e2e_bytes = tuple(map(float, a[17].split())), int(a[18])
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
row("end to end zstd into tansu vs kcat -P (half the data)", f"{ours_eps/1e3:.0f}k ev/s", f"{theirs_eps/1e3:.0f}k ev/s", f"{r:.2f}", ">= 1.3", r >= 1.3)
per_gb = [c / (e2e_bytes / 1e9) for c in e2e_cpu]
r = per_gb[0] / per_gb[1]
row("end to end: CPU s per GB (user + sys) vs kcat -P", f"{per_gb[0]:.2f} s", f"{per_gb[1]:.2f} s", f"{r:.2f}", "<= 0.90", r <= 0.90)
row("end to end, absolute", f"{ours_eps/1e3:.0f}k ev/s", "-", "-", ">= 150k ev/s", ours_eps >= 150e3)
# Flat: the full size may exceed the small one by at most the read-ahead window
# (4 chunks of 8 MiB), which a small compressed file never fills.
for name, small, big in (("plain", rss[0], rss[1]), ("gzip", rss[2], rss[3])):
    row(f"peak RSS dry run {name} (1/10 -> full size)", f"{small:.0f} -> {big:.0f} MiB", "-", f"{big/small:.2f}", "<= 256 MiB, flat", big <= 256 and big <= small + 32 + 8)
r = metrics[0] / metrics[1]
row("dry run plain: /metrics served and scraped every 0.1 s vs off (time ratio)", f"{metrics[0]:.2f} s", f"{metrics[1]:.2f} s", f"{r:.3f}", "<= 1.03", r <= 1.03)
r = scaling[1] / scaling[0]
row("scaling 4 files: 2 workers vs 1", f"{scaling[0]:.2f} s", f"{scaling[1]:.2f} s", f"{r:.2f}x", "> 1 (2 cores)", r > 1.0)
with open(notes_path, "a") as f:
    f.write(f"medians of {runs} alternating runs; data: {label} generated IngestMessage lines (~1.4 KB), seed 42; machine: {__import__('os').cpu_count()} cores\n")
    f.write(f"tansu perf produce (1000 x 1400 B batches, 10 s): {ceiling.strip() or 'n/a'}\n")
with open(rows_path, "a") as f:
    for x in rows:
        f.write(json.dumps(x) + "\n")
PY
}

# ---- small files ---------------------------------------------------------------------------
SF_FILES=300          # files in the end-to-end, proxy and dry-run figures
SF_LINES=150          # lines per file
SF_RSS_FILES=2000     # files in the peak-RSS figure
SF_DELAY_MS=25        # latency_proxy.py, per request
SF_PROXY_PORT="${RW_BENCH_PROXY_PORT:-15099}"
SF_BUCKET=bench-small-files
SF_DIR="$ROOT/bench-data/small-files"
SF_FAILS="$SF_DIR/failed-runs"

sf_split() { # dir, n: n gzip files of SF_LINES lines each, cut in order from one generated stream (seed 42)
  local dir=$1 n=$2
  [[ -f "$dir/complete" ]] && return
  rm -rf "$dir"
  mkdir -p "$dir"
  # shellcheck disable=SC2016 # $FILE is split's, expanded by the filter's shell
  "$BIN/rw-gen" /dev/stdout --lines $((n * SF_LINES)) --bytes 1000000000000 --seed 42 2>/dev/null |
    split -l "$SF_LINES" -a 4 -d --additional-suffix=.ndjson --filter='gzip -n >"$FILE.gz"' - "$dir/part-"
  local got
  got=$(find "$dir" -name 'part-*.ndjson.gz' | wc -l)
  ((got == n)) || { echo "$dir: $got files, expected $n" >&2; exit 1; }
  touch "$dir/complete"
}

sf_row() { # job id, lines, files, what: the worker's row must be completed with every line a success
  local got want="completed $2 0 0 $3"
  got=$(psql "$DATABASE_URL" -XAtc "SELECT status || ' ' || success_count || ' ' || error_count || ' ' || skipped_count \
    || ' ' || processed_files FROM reprocessing_workers WHERE job_id = '$1' AND worker_index = 0")
  [[ $got == "$want" ]] || { echo "$4: row of $1 is '$got', expected '$want' (status successes errors skipped files)" >&2; exit 1; }
}

sf_check() { # what, files.json, config.json, files: one untimed run that must complete with every line
  local job="bench-check-$RANDOM$RANDOM" rc=0
  BENCH_JOB_ID=$job worker "$2" "$3" >"$SF_DIR/check.log" 2>&1 || rc=$?
  if ((rc)); then echo "$1: the worker exited $rc" >&2; tail -n 20 "$SF_DIR/check.log" >&2; exit 1; fi
  sf_row "$job" $((SF_FILES * SF_LINES)) "$4" "$1"
  echo "  check $1: completed, $((SF_FILES * SF_LINES)) successes, $4 files" >&2
}

# The timed runs; a run that fails is recorded (timeit hides exit codes) and fails its figure.
sf_run() { # name, files.json, config.json
  local name=$1; shift
  worker "$@" || echo "$name" >>"$SF_FAILS"
}
sf_e2e_many() { TOPIC=$SF_TOPIC_MANY sf_run e2e-many "$SF_DIR/s3-many.files.json" "$SF_DIR/send.json"; }
sf_e2e_one() { TOPIC=$SF_TOPIC_ONE sf_run e2e-one "$SF_DIR/s3-one.files.json" "$SF_DIR/send.json"; }
sf_proxy_many() { TOPIC=$SF_TOPIC_MANY sf_run proxy-many "$SF_DIR/s3-many.files.json" "$SF_DIR/send.json"; }
sf_proxy_one() { TOPIC=$SF_TOPIC_ONE sf_run proxy-one "$SF_DIR/s3-one.files.json" "$SF_DIR/send.json"; }
sf_dry_many() { sf_run dry-many "$SF_DIR/local-many.files.json" "$SF_DIR/dry.json"; }
sf_dry_one() { sf_run dry-one "$SF_DIR/local-one.files.json" "$SF_DIR/dry.json"; }

sf_proxy_start() {
  local target=${AWS_ENDPOINT_URL#*://}
  target=${target%%/*}
  python3 "$ROOT/scripts/latency_proxy.py" --listen "127.0.0.1:$SF_PROXY_PORT" --target "$target" \
    --delay-ms "$SF_DELAY_MS" 2>"$SF_DIR/proxy.log" &
  PROXY_PID=$!
  for _ in $(seq 1 100); do
    grep -q '^listening on' "$SF_DIR/proxy.log" && return 0
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "latency_proxy.py did not start:" >&2
  cat "$SF_DIR/proxy.log" >&2
  exit 1
}

sf_proxy_stop() {
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=
}

bench_small() {
  local lines=$((SF_FILES * SF_LINES)) many="$SF_DIR/f$SF_FILES"
  mkdir -p "$SF_DIR"
  rm -f "$SF_FAILS"
  echo "== small files: $SF_FILES and $SF_RSS_FILES gzip files of $SF_LINES lines, and one file of the same $lines lines" >&2
  sf_split "$many" "$SF_FILES"
  sf_split "$SF_DIR/f$SF_RSS_FILES" "$SF_RSS_FILES"
  [[ -s "$SF_DIR/one.ndjson.gz" ]] ||
    "$BIN/rw-gen" "$SF_DIR/one.ndjson.gz" --lines "$lines" --bytes 1000000000000 --seed 42 --gzip 2>/dev/null
  if [[ "$(cat "$many"/part-*.ndjson.gz | gzip -dc | md5sum)" != "$(gzip -dc "$SF_DIR/one.ndjson.gz" | md5sum)" ]]; then
    echo "$many and one.ndjson.gz do not hold the same lines (delete $SF_DIR and run again)" >&2
    exit 1
  fi
  echo '{"connection_ids":["bench-a","bench-b"],"dry_run":true}' >"$SF_DIR/dry.json"
  echo '{"connection_ids":["bench-a","bench-b"]}' >"$SF_DIR/send.json"
  files_json "$many"/part-*.ndjson.gz >"$SF_DIR/local-many.files.json"
  files_json "$SF_DIR/one.ndjson.gz" >"$SF_DIR/local-one.files.json"
  files_json "$SF_DIR/f$SF_RSS_FILES"/part-*.ndjson.gz >"$SF_DIR/local-rss.files.json"

  # moto keeps objects in memory: upload what it does not hold (again after a restart).
  python3 - "$SF_DIR" "$many" "$SF_BUCKET" <<'PY'
import json, os, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
root, many, bucket = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ.get("AWS_REGION", "us-east-1"))
try:
    s3.create_bucket(Bucket=bucket)
except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
    pass
have = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for o in page.get("Contents", []):
        have[o["Key"]] = o["Size"]
def objects(paths, prefix):
    return [(p, prefix + os.path.basename(p), os.path.getsize(p)) for p in paths]
many_files = objects(sorted(os.path.join(many, n) for n in os.listdir(many) if n.endswith(".ndjson.gz")), "many/")
one_file = objects([os.path.join(root, "one.ndjson.gz")], "one/")
todo = [(p, k) for p, k, size in many_files + one_file if have.get(k) != size]
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda pk: s3.upload_file(pk[0], bucket, pk[1]), todo))
for name, files in (("s3-many", many_files), ("s3-one", one_file)):
    with open(os.path.join(root, name + ".files.json"), "w") as f:
        json.dump([{"path": f"s3://{bucket}/{k}", "size": size} for _, k, size in files], f)
print(f"  s3://{bucket}/: {len(todo)} objects uploaded, {len(many_files) + len(one_file) - len(todo)} already there", file=sys.stderr)
PY

  SF_TOPIC_MANY="bench-small-many-$RANDOM"
  SF_TOPIC_ONE="bench-small-one-$RANDOM"
  local t
  for t in "$SF_TOPIC_MANY" "$SF_TOPIC_ONE"; do
    "$RW_TANSU_BIN" topic create "$t" --partitions 3 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" >/dev/null 2>&1
  done

  echo "== small files: untimed check runs (each must complete with all $lines lines)" >&2
  TOPIC=$SF_TOPIC_MANY sf_check "$SF_FILES S3 files" "$SF_DIR/s3-many.files.json" "$SF_DIR/send.json" "$SF_FILES"
  TOPIC=$SF_TOPIC_ONE sf_check "one S3 file" "$SF_DIR/s3-one.files.json" "$SF_DIR/send.json" 1
  sf_check "$SF_FILES local files, dry run" "$SF_DIR/local-many.files.json" "$SF_DIR/dry.json" "$SF_FILES"

  echo "== small files: $SF_FILES S3 files vs one S3 file, end to end into tansu" >&2
  pair small_e2e sf_e2e_many -- sf_e2e_one

  # The floor under the first figure: the same ranged GETs without the worker (16 at once,
  # Python's http.client), which is what moto itself can serve.
  echo "== small files: moto's floor, $SF_FILES ranged GETs, 16 at once" >&2
  local floor=() i
  for ((i = 0; i < RUNS; i++)); do
    floor+=("$(python3 - "$AWS_ENDPOINT_URL" "$SF_DIR/s3-many.files.json" <<'PY'
import http.client, json, sys, time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
paths = ["/" + f["path"][len("s3://"):] for f in json.load(open(sys.argv[2]))]
def get(path):
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request("GET", path, headers={"Range": "bytes=0-8388607"})
    c.getresponse().read()
    c.close()
t = time.monotonic()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(get, paths))
print(f"{time.monotonic() - t:.3f}")
PY
)")
  done
  SF_FLOOR=$(printf '%s\n' "${floor[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "  floor: ${floor[*]}" >&2

  echo "== small files: the same through latency_proxy.py, $SF_DELAY_MS ms per request" >&2
  sf_proxy_start
  local proxied="http://127.0.0.1:$SF_PROXY_PORT"
  AWS_ENDPOINT_URL=$proxied AWS_ENDPOINT_URL_S3=$proxied TOPIC=$SF_TOPIC_MANY \
    sf_check "$SF_FILES S3 files through the proxy" "$SF_DIR/s3-many.files.json" "$SF_DIR/send.json" "$SF_FILES"
  AWS_ENDPOINT_URL=$proxied AWS_ENDPOINT_URL_S3=$proxied pair small_proxy sf_proxy_many -- sf_proxy_one
  sf_proxy_stop
  local proxy_stats
  proxy_stats=$(grep '^latency_proxy:' "$SF_DIR/proxy.log" | tail -n 1 | sed 's/^latency_proxy: //')
  echo "  proxy: ${proxy_stats:-no statistics} (1 check run + $RUNS x ($SF_FILES files + 1 file))" >&2

  echo "== small files: dry run, $SF_FILES local files vs one local file" >&2
  pair small_dry sf_dry_many -- sf_dry_one

  echo "== small files: peak RSS, dry run, $SF_RSS_FILES local files" >&2
  local job="bench-rss-$RANDOM$RANDOM" rss_many
  rss_many=$(BENCH_JOB_ID=$job rss "$SF_DIR/local-rss.files.json" "$SF_DIR/dry.json")
  sf_row "$job" $((SF_RSS_FILES * SF_LINES)) "$SF_RSS_FILES" "peak RSS run"

  local fails=""
  [[ -s $SF_FAILS ]] && fails=$(sort "$SF_FAILS" | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1}')
  python3 - "${RESULT[small_e2e]}" "${RESULT[small_proxy]}" "${RESULT[small_dry]}" "$rss_many" "$RUNS" \
    "$SF_FILES" "$SF_LINES" "$SF_RSS_FILES" "$SF_DELAY_MS" "$(du -sb "$many" | cut -f1)" "${FILES_IN_FLIGHT:-}" \
    "$proxy_stats" "$fails" "$ROWS" "$NOTES" "$SF_FLOOR" <<'PY'
import json, sys
a = sys.argv[1:]
floor = float(a[15])
e2e, proxy, dry = [tuple(map(float, x.split())) for x in a[0:3]]
rss = int(a[3]) / 1024
runs, files, per_file, rss_files, delay_ms, many_bytes = a[4], int(a[5]), int(a[6]), int(a[7]), a[8], int(a[9])
in_flight, proxy_stats, fails, rows_path, notes_path = a[10], a[11], a[12], a[13], a[14]
lines = files * per_file
failed = {f.split(" x")[0] for f in fails.split(", ") if f}
rows = []
def row(fig, ours, theirs, ratio, target, ok, *names):
    bad = [n for n in names if n in failed]
    result = "FAILED RUN" if bad else ("-" if target == "-" else ("pass" if ok else "MISSED"))
    rows.append((fig, ours, theirs, ratio, target, result))
s = lambda t: f"{t:.2f} s"
r = e2e[0] / e2e[1]
row(f"small files e2e: {files} S3 files vs 1 (time ratio)", f"{s(e2e[0])} ({lines/e2e[0]/1e3:.0f}k ev/s)", s(e2e[1]), f"{r:.2f}", "<= 2", r <= 2, "e2e-many", "e2e-one")
row(f"small files e2e vs moto's floor ({files} GETs, 16 at once)", s(e2e[0]), s(floor), f"{e2e[0]/floor:.2f}", "-", True)
row(f"small files e2e via proxy ({delay_ms} ms/request)", f"{s(proxy[0])} ({lines/proxy[0]/1e3:.0f}k ev/s)", f"{s(proxy[1])} (1 file)", f"{proxy[0]/proxy[1]:.2f}", "<= 3 s", proxy[0] <= 3.0, "proxy-many", "proxy-one")
r = dry[0] / dry[1]
row(f"small files dry run: {files} local files vs 1 (time ratio)", s(dry[0]), s(dry[1]), f"{r:.2f}", "<= 1.5", r <= 1.5, "dry-many", "dry-one")
row(f"peak RSS dry run, {rss_files} small files", f"{rss:.0f} MiB", "-", "-", "<= 256 MiB", rss <= 256)
with open(notes_path, "a") as f:
    f.write(f"small files: medians of {runs} alternating runs; {files} gzip files x {per_file} lines (~{many_bytes/files/1e3:.0f} KB each) vs one gzip file of the same {lines} lines; S3: moto; FILES_IN_FLIGHT={in_flight or 'default'}\n")
    f.write(f"latency proxy ({delay_ms} ms per request): {proxy_stats or 'n/a'}\n")
    if fails:
        f.write(f"FAILED timed runs (exit code not 0): {fails}\n")
with open(rows_path, "a") as f:
    for x in rows:
        f.write(json.dumps(x) + "\n")
PY
}

# ---- Apache Kafka: the worker vs kcat vs Kafka's own Java producer --------------------------
bench_apache() {
  scripts/services.sh start-kafka >&2
  eval "$(scripts/services.sh env)"
  mkdir -p "$DATA"
  gen "$DATA/e2e.ndjson" $((bytes / 2))
  files_json "$DATA/e2e.ndjson" >"$DATA/e2e.ndjson.files.json"
  echo '{"connection_ids":["bench-a","bench-b"]}' >"$DATA/send.json"
  local lines size
  lines=$(wc -l <"$DATA/e2e.ndjson")
  size=$(stat -c %s "$DATA/e2e.ndjson")
  local out="$DATA/apache-times"
  : >"$out"
  ak_topic() { local t="bench-ak-$RANDOM$RANDOM"; python3 scripts/kafka_admin.py topic "$t" 3 min.insync.replicas=2 >&2; echo "$t"; }
  ak_ours() {
    KAFKA_BOOTSTRAP_SERVERS="$RW_AK_BOOTSTRAP" TOPIC="$1" worker "$DATA/e2e.ndjson.files.json" "$DATA/send.json"
  }
  ak_kcat() {
    LD_LIBRARY_PATH="$RW_KCAT_LD_LIBRARY_PATH" kcat -P -b "$RW_AK_BOOTSTRAP" -t "$1" -z zstd -X acks=all \
      -X enable.idempotence=true -X batch.size=1048576 -X linger.ms=5 -H connection_ids=bench-a,bench-b -l "$DATA/e2e.ndjson"
  }
  # It picks its records at random from the file's lines: the same lines, not each once.
  ak_java() {
    java -Xmx1g -cp "$RW_AK_LIBS/*" org.apache.kafka.tools.ProducerPerformance --topic "$1" \
      --num-records "$lines" --payload-file "$DATA/e2e.ndjson" --payload-delimiter $'\n' --throughput -1 \
      --producer-props bootstrap.servers="$RW_AK_BOOTSTRAP" compression.type=zstd acks=all batch.size=1048576 linger.ms=5
  }
  # One run: a fresh topic, wall and CPU seconds, then the topic must hold one record per line.
  ak_run() { # name
    local t got times
    t=$(ak_topic)
    # bash's time: wall, and the user and system CPU of every process the function ran.
    times=$( { TIMEFORMAT='%R %U %S'; time "ak_$1" "$t" >/dev/null 2>&1; } 2>&1 | tail -n 1)
    got=$(records "$RW_AK_BOOTSTRAP" "$t")
    ((got == lines)) || { echo "apache $1: the topic holds $got records, expected $lines" >&2; exit 1; }
    echo "$1 $times" >>"$out"
    echo "  apache $1: $times (wall user sys), $got records" >&2
  }
  echo "== Apache Kafka: the worker vs kcat -P vs ProducerPerformance ($lines lines, $size bytes)" >&2
  local i
  for ((i = 0; i < RUNS; i++)); do
    ak_run ours
    ak_run kcat
    ak_run java
  done
  python3 - "$out" "$lines" "$size" "$RUNS" "$ROWS" "$NOTES" <<'PY'
import json, statistics, sys
path, lines, size, runs, rows_path, notes_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
t = {}
for l in open(path):
    name, wall, user, sys_ = l.split()
    t.setdefault(name, []).append((float(wall), float(user) + float(sys_)))
wall = {k: statistics.median(w for w, _ in v) for k, v in t.items()}
cpu = {k: statistics.median(c for _, c in v) for k, v in t.items()}
gb = size / 1e9
rows = []
for other, label in (("kcat", "kcat -P"), ("java", "ProducerPerformance")):
    r = wall[other] / wall["ours"]
    rows.append((f"end to end into Apache Kafka vs {label}", f"{lines/wall['ours']/1e3:.0f}k ev/s", f"{lines/wall[other]/1e3:.0f}k ev/s", f"{r:.2f}", ">= 1.0", "pass" if r >= 1.0 else "MISSED"))
for other, label in (("kcat", "kcat -P"), ("java", "ProducerPerformance")):
    r = cpu[other] / cpu["ours"]
    target = "<= 0.75" if other == "kcat" else "-"
    verdict = ("pass" if 1 / r <= 0.75 else "MISSED") if other == "kcat" else "-"
    rows.append((f"CPU s per GB, Apache Kafka: ours vs {label}", f"{cpu['ours']/gb:.2f}", f"{cpu[other]/gb:.2f}", f"{1/r:.2f}", target, verdict))
with open(notes_path, "a") as f:
    f.write(f"Apache Kafka: medians of {runs} alternating runs, {lines} lines ({size/1e6:.0f} MB), a fresh topic each (3 partitions, RF 3, min ISR 2), zstd, acks=all; each run checked: one record per line; ProducerPerformance includes its JVM start and picks lines at random\n")
with open(rows_path, "a") as f:
    for x in rows:
        f.write(json.dumps(x) + "\n")
PY
}

bench_readback() {
  scripts/services.sh start-kafka >&2
  eval "$(scripts/services.sh env)"
  mkdir -p "$DATA"
  # A range of 5 x --size (5 GB by default): this job's lines a few percent of it, sent by the
  # worker itself, among live records (the generator's lines under keys of their own and
  # another header, written by kcat -P) on 8 partitions. Replication factor 1: setting up
  # 5 GB three times over on two cores takes minutes, and a read-back reads the leaders only.
  local range=$((bytes * 5)) job="bench-rb-$RANDOM$RANDOM" rb_topic="bench-rb-$RANDOM$RANDOM" i f
  gen "$DATA/rb-live.ndjson" $((range / 10))
  rm -f "$DATA"/rb-ours-*.ndjson
  for i in 0 1 2 3 4 5 6 7; do
    "$BIN/rw-gen" "$DATA/rb-ours-$i.ndjson" --bytes $((range * 3 / 100 / 8)) --seed $((100 + i)) 2>/dev/null
  done
  files_json "$DATA"/rb-ours-{0,1,2,3,4,5,6,7}.ndjson >"$DATA/rb.files.json"
  echo '{"connection_ids":["bench-a"]}' >"$DATA/rb.json"
  python3 scripts/kafka_admin.py topic "$rb_topic" 8 rf=1 >&2
  echo "== the read-back: setting up $rb_topic (8 workers' lines, then 9 passes of live records)" >&2
  BENCH_JOB_ID=$job KAFKA_BOOTSTRAP_SERVERS="$RW_AK_BOOTSTRAP" TOPIC="$rb_topic" worker "$DATA/rb.files.json" "$DATA/rb.json" 8 >&2
  for i in 1 2 3 4 5 6 7 8 9; do
    LD_LIBRARY_PATH="$RW_KCAT_LD_LIBRARY_PATH" kcat -P -b "$RW_AK_BOOTSTRAP" -t "$rb_topic" -z zstd -X batch.size=1048576 \
      -X linger.ms=5 -H connection_ids=live -l "$DATA/rb-live.ndjson"
  done
  local total ours_lines
  total=$(python3 scripts/kafka_admin.py count "$rb_topic")
  ours_lines=$(cat "$DATA"/rb-ours-*.ndjson | wc -l)
  local files=()
  i=0
  for f in "$DATA"/rb-ours-{0,1,2,3,4,5,6,7}.ndjson; do files+=(--file "$i:$f"); i=$((i + 1)); done
  # (timeit and pair have locals of their own, t among them: these read rb_topic, files, job.)
  rb() { "$BIN/rw-readback" --bootstrap "$RW_AK_BOOTSTRAP" --topic "$rb_topic" --job "$job" "${files[@]}" "$@"; }
  kc() { LD_LIBRARY_PATH="$RW_KCAT_LD_LIBRARY_PATH" kcat -C -b "$RW_AK_BOOTSTRAP" -t "$rb_topic" -o beginning -e -q; }
  # What each side delivers, before anything is timed: the read-back reads every record and
  # finds every line of the job; kcat reads every record.
  local got
  got=$(rb | tee "$DATA/rb-check.json")
  python3 - "$got" "$total" "$ours_lines" <<'PY' || exit 1
import json, sys
r, total, ours = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if (r["records"], r["ours"], r["incomplete"]) != (total, ours, 0):
    sys.exit(f"read-back check: {r}, expected {total} records, {ours} ours, none incomplete")
PY
  got=$(kc | wc -l)
  ((got == total)) || { echo "kcat -C read $got records of $total" >&2; exit 1; }
  echo "  check: both read $total records; the read-back found all $ours_lines of the job's lines" >&2
  echo "== the read-back of $total records vs kcat -C" >&2
  pair readback rb -- kc
  local rss_kib
  rss_kib=$(/usr/bin/time -f %M "$BIN/rw-readback" --bootstrap "$RW_AK_BOOTSTRAP" --topic "$rb_topic" --job "$job" "${files[@]}" 2>&1 >/dev/null | tail -n 1)
  # A fleet: worker 0 of 8, its own partitions (KAFKA_PARTITIONS=own) and all of them.
  local own all
  own=$(rb --worker 0/8)
  all=$(rb --worker 0/8 --all-partitions)
  RB_RESULT="${RESULT[readback]}" python3 - "$total" "$range" "$rss_kib" "$got" "$own" "$all" "$(cat "$DATA/rb-check.json")" "$ROWS" "$NOTES" "$RUNS" <<'PY'
import json, sys
total, rng, rss, _, own, allp, one, rows_path, notes_path, runs = sys.argv[1:]
total, rng, rss = int(total), int(rng), int(rss)
one, own, allp = json.loads(one), json.loads(own), json.loads(allp)
import os
res = os.environ["RB_RESULT"].split()
ours_s, kcat_s = float(res[0]), float(res[1])
r = kcat_s / ours_s
rows = [
    (f"read-back of {total} records ({one['bytes']/1e9:.1f} GB decoded) vs kcat -C", f"{total/ours_s/1e3:.0f}k rec/s", f"{total/kcat_s/1e3:.0f}k rec/s", f"{r:.2f}", ">= 1.0", "pass" if r >= 1.0 else "MISSED"),
    ("read-back peak RSS, MiB", f"{rss/1024:.0f}", "-", "-", "<= 256", "pass" if rss <= 256 * 1024 else "MISSED"),
    ("records read per record of ours: 1 pod", f"{one['records']/max(one['ours'],1):.0f}", "-", "-", "-", "-"),
    ("records read per record of ours: pod 0 of 8, own partitions", f"{own['records']/max(own['ours'],1):.0f}", f"{allp['records']/max(allp['ours'],1):.0f} (all)", f"{(allp['records']/max(allp['ours'],1))/(own['records']/max(own['ours'],1)):.1f}", "-", "-"),
]
with open(notes_path, "a") as f:
    f.write(f"The read-back: medians of {runs} alternating runs over one topic of {total} records (8 partitions, RF 1, zstd), this job's lines {one['ours']} of them; rw-readback is the worker's read-back alone (keys checked, ours kept), kcat -C prints every value to /dev/null\n")
with open(rows_path, "a") as f:
    for x in rows:
        f.write(json.dumps(x) + "\n")
PY
}

bench_fleet() {
  local out n iv
  out=$(mktemp)
  echo "== the fleet: N status flushers on one PostgreSQL (rw-fleet, ${FLEET_SECONDS:-15} s each)" >&2
  for n in 100 500; do
    for iv in 1000 0; do
      "$BIN/rw-fleet" --workers "$n" --seconds "${FLEET_SECONDS:-15}" --min-interval-ms "$iv" >>"$out"
      echo "  fleet $n pods, interval $iv ms: $(tail -n 1 "$out")" >&2
    done
  done
  python3 - "$out" "$ROWS" "$NOTES" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = []
for n in sorted({r["workers"] for r in runs}):
    ours = next(r for r in runs if r["workers"] == n and r["min_interval_ms"] > 0)
    old = next(r for r in runs if r["workers"] == n and r["min_interval_ms"] == 0)
    def row(what, key, fmt, target="-", ok=None):
        a, b = ours[key], old[key]
        ratio = f"{b / a:.1f}" if a else "-"
        result = "-" if ok is None else ("pass" if ok(a) else "MISSED")
        rows.append((f"fleet {n} pods: {what} (1 s interval vs none)", fmt.format(a), fmt.format(b), ratio, target, result))
    row("writes a second per pod", "writes_per_sec_per_worker", "{:.2f}", "<= 1.0", lambda a: a <= 1.01)
    row("transactions a second", "transactions_per_sec", "{:.0f}")
    row("rows written a second", "rows_per_sec", "{:.0f}")
    row("rows per transaction", "rows_per_transaction", "{:.2f}")
    row("database CPU, cores", "db_cpu_cores", "{:.2f}")
    row("p99 write latency, ms", "latency_p99_ms", "{:.0f}")
    row("row at most stale, s", "stale_max_s", "{:.2f}", "<= 2", lambda a: a <= 2.0)
with open(sys.argv[3], "a") as f:
    f.write("The fleet: one process, N connections, 500,000 lines/s per pod over 96 partitions; transactions and rows from pg_stat_database and pg_stat_user_tables (autovacuum's included), CPU of every postgres process\n")
with open(sys.argv[2], "a") as f:
    for x in rows:
        f.write(json.dumps(x) + "\n")
PY
  rm -f "$out"
}

case "$ONLY" in
  all) bench_big; bench_small; bench_apache; bench_readback; bench_fleet ;;
  fleet) bench_fleet ;;
  big) bench_big ;;
  small) bench_small ;;
  apache) bench_apache ;;
  readback) bench_readback ;;
esac

python3 - "$ROWS" "$NOTES" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
notes = open(sys.argv[2]).read().rstrip("\n")
print(f"\n{notes}\n")
hdr = ("figure", "ours", "theirs", "ratio", "target", "result")
w = [max(len(str(x[i])) for x in rows + [hdr]) for i in range(6)]
print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)) + " |")
print("|" + "|".join("-" * (w[i] + 2) for i in range(6)) + "|")
for x in rows:
    print("| " + " | ".join(str(v).ljust(w[i]) for i, v in enumerate(x)) + " |")
missed = [x[0] for x in rows if x[5] not in ("pass", "-")]
if missed:
    print(f"\nmissed: {'; '.join(missed)}")
PY
if ((CHECK)) && grep -qv '"pass"\]$\|"-"\]$' "$ROWS"; then
  echo "bench.sh --check: a figure missed its target" >&2
  exit 1
fi
