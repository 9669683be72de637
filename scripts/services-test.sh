#!/usr/bin/env bash
# Checks that scripts/services.sh never takes a busy port for its own service:
# - with a stranger (python3 -m http.server) on the broker's port, start-broker fails with a
#   message that names the port and the stranger's pid and command, and starts nothing;
# - a pid file that names the stranger (a reused pid) does not count as a running broker;
# - on a free port, start-broker starts tansu and its pid is the one listening; a second
#   start-broker finds it running; kill-broker stops it.
# Uses its own state directory and ports, so it runs beside the services the tests use. Needs
# the virtual environment that `scripts/services.sh start` makes (tansu comes from it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

fail() { echo "services-test: FAILED: $*" >&2; exit 1; }
source scripts/cache.sh
[[ -x "${RW_VENV:-$RW_CACHE/venv}/bin/python3" ]] || fail "no virtual environment yet (run scripts/services.sh start)"

STATE="$(mktemp -d)"
STRANGER=
cleanup() {
  [[ -z $STRANGER ]] || kill "$STRANGER" 2>/dev/null || true
  RW_STATE_DIR="$STATE" scripts/services.sh kill-broker 2>/dev/null || true
  rm -rf "$STATE"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Alive and not a zombie (an init that does not reap leaves killed daemons as zombies).
alive() { [[ -r "/proc/$1/stat" && "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
listener() { ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | paste -sd' ' -; }
broker() { # port, then services.sh's arguments; prints what it said, indented; returns its exit code
  local port=$1 out rc=0; shift
  out="$(RW_STATE_DIR="$STATE" RW_KAFKA_PORT="$port" scripts/services.sh "$@" 2>&1)" || rc=$?
  OUT="$out"
  [[ -z "$out" ]] || printf '%s\n' "$out" | sed 's/^/    /'
  return $rc
}

busy="$(free_port)"
python3 -m http.server "$busy" --bind 127.0.0.1 >/dev/null 2>&1 &
STRANGER=$!
for _ in $(seq 1 100); do port_open "$busy" && break; sleep 0.1; done
port_open "$busy" || fail "the stranger (python3 -m http.server) did not listen on port $busy"

refused() { # what
  if broker "$busy" start-broker; then fail "$1: start-broker succeeded with a stranger on port $busy"; fi
  grep -q "port $busy is held by another process: pid $STRANGER (.*http.server $busy" <<<"$OUT" ||
    fail "$1: the message does not name port $busy and the stranger (pid $STRANGER, http.server)"
  if grep -q 'all services up' <<<"$OUT"; then fail "$1: said 'all services up'"; fi
  [[ "$(listener "$busy")" == "$STRANGER" ]] || fail "$1: port $busy is held by $(listener "$busy"), not the stranger alone"
  [[ ! -e "$STATE/tansu.pid" ]] || fail "$1: left a pid file"
  alive "$STRANGER" || fail "$1: the stranger was killed"
  echo "ok: $1"
}

echo "== a stranger on port $busy (pid $STRANGER)"
refused "start-broker on a busy port"
echo "$STRANGER" >"$STATE/tansu.pid"
refused "start-broker with a pid file that names the stranger"

free="$(free_port)"
echo "== a free port, $free"
broker "$free" start-broker || fail "start-broker on free port $free failed"
pid="$(cat "$STATE/tansu.pid")"
[[ "$(listener "$free")" == "$pid" ]] || fail "port $free is held by $(listener "$free"), not tansu (pid $pid)"
echo "ok: tansu (pid $pid) listens on port $free"
broker "$free" start-broker || fail "a second start-broker failed"
if grep -q starting <<<"$OUT"; then fail "a second start-broker started another broker"; fi
[[ "$(cat "$STATE/tansu.pid")" == "$pid" ]] || fail "a second start-broker changed the pid file"
echo "ok: a second start-broker finds it running"
broker "$free" kill-broker || fail "kill-broker failed"
if alive "$pid"; then fail "kill-broker left tansu (pid $pid) running"; fi
if port_open "$free"; then fail "port $free is still open after kill-broker"; fi
echo "ok: kill-broker stopped it"
echo "== Apache Kafka: a stranger on node 2's SASL_PLAINTEXT port"
base=$((busy - 12))
out="$(RW_STATE_DIR="$STATE" RW_AK_PORT_BASE="$base" scripts/services.sh start-kafka 2>&1)" &&
  fail "start-kafka succeeded with a stranger on port $busy"
printf '%s\n' "$out" | sed 's/^/    /'
grep -q "port $busy is held by another process: pid $STRANGER (.*http.server $busy.*Apache Kafka node 2" <<<"$out" ||
  fail "start-kafka: the message does not name port $busy, the stranger and the node"
for n in 1 2 3; do
  [[ ! -e "$STATE/kafka$n.pid" ]] || fail "start-kafka started node $n although a port was held"
done
alive "$STRANGER" || fail "start-kafka: the stranger was killed"
echo "ok: start-kafka refuses before it starts any node"
echo "services-test: all passed"
