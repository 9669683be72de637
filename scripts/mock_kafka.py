#!/usr/bin/env python3
"""Multi-broker Kafka mock cluster for tests, driven over stdin/stdout.

Uses librdkafka's built-in mock cluster (``rd_kafka_mock_*`` in
``src/rdkafka_mock.h``) through ctypes, loading the librdkafka shared library
bundled with the ``confluent-kafka`` wheel (override with the environment
variable ``MOCK_KAFKA_LIBRDKAFKA=/path/to/librdkafka.so.1``).  The brokers
listen on 127.0.0.1 only, on ephemeral ports.

Usage::

    mock_kafka.py [--brokers N] [--topic NAME:PARTITIONS[:RF]]...
                  [--max-request-bytes BYTES] [--port-file PATH]
                  [--replication-factor RF] [--debug] [--pdeathsig]

Protocol
--------
Once the cluster and the ``--topic`` topics exist, exactly one line is printed
to stdout::

    bootstrap=127.0.0.1:PORT1,127.0.0.1:PORT2,...

(the same line, with a trailing newline, is written to ``--port-file`` if
given).  If start-up fails, the process prints ``error <message>`` instead
and exits with status 1.

Then one command per line is read from stdin; every command gets exactly one
answer line on stdout: ``ok``, ``ok <data>`` or ``error <message>``.  Empty
lines and lines starting with ``#`` are ignored (no answer).  Diagnostics
and librdkafka logs go to stderr only.

ERR may be a number or a name (``NOT_ENOUGH_REPLICAS``, ``19``,
``MESSAGE_TOO_LARGE``, ``_TRANSPORT`` ...; librdkafka's own names, with or
without the ``ERR_`` / ``RD_KAFKA_RESP_ERR_`` prefix, plus a few aliases).
APIKEY may be a number or a name (``Produce``=0, ``Fetch``=1,
``ListOffsets``=2, ``Metadata``=3, ``ApiVersions``=18, ``CreateTopics``=19,
``InitProducerId``=22 ...; case-insensitive).

Commands:

``ping``                                   -> ``ok``
``bootstrap``                              -> ``ok <bootstrap list>``
``create-topic NAME PARTITIONS [RF]``      create a topic; partition p is led
                                           by broker (p % N) + 1.
``delete-topic NAME``
``leader TOPIC PARTITION BROKER_ID``       move a partition leader (-1: none).
``leaders TOPIC``                          -> ``ok 0:1,1:2,...`` (partition:leader,
                                           as set by this fixture).
``leaders-rotate TOPIC``                   every partition moves to the next
                                           broker id (N wraps to 1);
                                           -> ``ok 0:2,1:3,...``
``down BROKER_ID`` / ``up BROKER_ID``      broker stops / resumes listening
                                           (connections are closed, port kept).
``rtt BROKER_ID MS``                       delay every response of a broker.
``errors APIKEY ERR COUNT``                push COUNT copies of ERR onto the
                                           cluster-wide error stack for APIKEY.
``broker-errors BROKER_ID APIKEY ERR RTT_MS COUNT``
                                           push COUNT (ERR, RTT) pairs onto a
                                           broker's stack; ERR 0 with RTT_MS > 0
                                           is a late acknowledgement (the
                                           request is applied, the answer is
                                           delayed).
``broker-error-count BROKER_ID APIKEY``    -> ``ok <n>`` errors still queued.
``partition-errors TOPIC PARTITION APIKEY ERR COUNT``
                                           per-partition error codes (only
                                           that partition of a request fails).
``clear-errors APIKEY``                    empty the cluster-wide stack for
                                           APIKEY (broker stacks are NOT
                                           cleared: librdkafka has no API).
``topic-error TOPIC ERR``                  topic-level error in Metadata (0 to
                                           reset).
``apiversion APIKEY MIN MAX``              change the advertised version range
                                           (-1 -1 disables the API).
``track-start`` / ``track-stop`` / ``track-clear``
                                           request tracking on/off/clear.
``requests``                               -> ``ok <broker>:<apikey>=<n> ...``
                                           counts of tracked requests.
``topics``                                 -> ``ok name:partitions,...`` read
                                           through a Metadata v1 request for
                                           all topics (no auto-creation; it
                                           does consume an injected Metadata
                                           error, and shows in ``requests``).
``delete-records TOPIC PARTITION OFFSET``
``quit``                                   -> ``ok``, then destroy and exit 0.

Behaviour of the librdkafka mock worth knowing (2.16, see the self-test):

* Metadata for a named unknown topic AUTO-CREATES it (4 partitions) when the
  request allows it: always for v1..v3, and for v4+ when
  AllowAutoTopicCreation=true (rskafka 0.6 sends v4 with true).  Produce to
  an unknown topic answers UNKNOWN_TOPIC_OR_PART without creating it.  A
  name can be made to look absent with ``topic-error NAME
  UNKNOWN_TOPIC_OR_PART``; ``topics`` shows what exists.  ``leader``,
  ``partition-errors`` and ``topic-error`` on an unknown topic create it.
* Error stacks are FIFO, one entry per request of that ApiKey.  A broker's
  own stack takes precedence; once a broker has had a stack for an ApiKey
  (even an emptied one) it never consumes the cluster-wide stack for that
  ApiKey again.
* No replication, no leader election: a partition whose leader is down is
  unavailable until ``up`` or ``leader``.  A request frame larger than
  --max-request-bytes closes the connection (no MESSAGE_TOO_LARGE).
* A Fetch answer carries one stored batch per partition.

End of file on stdin also destroys the cluster and exits 0.  The process
also exits when its parent process goes away (re-parenting is checked twice
a second).  ``--pdeathsig`` additionally asks Linux for SIGTERM when the
*thread* that spawned it exits (careful: a Rust test's thread, or a tokio
blocking-pool thread, may end long before the process does).
"""

import argparse
import contextlib
import ctypes
import ctypes.util
import glob
import importlib.util
import os
import signal
import socket
import struct
import sys
import threading
import time

# --------------------------------------------------------------------------
# Library loading

RD_KAFKA_PRODUCER = 0


def find_librdkafka():
    env = os.environ.get("MOCK_KAFKA_LIBRDKAFKA")
    if env:
        return env
    spec = importlib.util.find_spec("confluent_kafka")
    if spec is not None and spec.origin:
        pkg = os.path.dirname(spec.origin)
        site = os.path.dirname(pkg)
        for pattern in (
            os.path.join(site, "confluent_kafka.libs", "librdkafka*.so*"),
            os.path.join(pkg, ".dylibs", "librdkafka*.dylib"),
            os.path.join(pkg, "librdkafka*.so*"),
        ):
            hits = sorted(glob.glob(pattern))
            if hits:
                return hits[0]
    found = ctypes.util.find_library("rdkafka")
    if found:
        return found
    raise RuntimeError(
        "librdkafka not found: pip install confluent-kafka, "
        "or set MOCK_KAFKA_LIBRDKAFKA")


class ErrDesc(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int),
                ("name", ctypes.c_char_p),
                ("desc", ctypes.c_char_p)]


def load_lib(path):
    lib = ctypes.CDLL(path)
    vp, cp, i16, i32, i64, ci, sz = (ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.c_int16, ctypes.c_int32,
                                     ctypes.c_int64, ctypes.c_int,
                                     ctypes.c_size_t)

    def sig(name, res, *args):
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = list(args)

    sig("rd_kafka_version_str", cp)
    sig("rd_kafka_conf_new", vp)
    sig("rd_kafka_conf_set", ci, vp, cp, cp, ctypes.c_char_p, sz)
    sig("rd_kafka_conf_destroy", None, vp)
    sig("rd_kafka_new", vp, ci, vp, ctypes.c_char_p, sz)
    sig("rd_kafka_destroy", None, vp)
    sig("rd_kafka_err2str", cp, ci)
    sig("rd_kafka_err2name", cp, ci)
    sig("rd_kafka_get_err_descs", None,
        ctypes.POINTER(ctypes.POINTER(ErrDesc)), ctypes.POINTER(sz))

    sig("rd_kafka_mock_cluster_new", vp, vp, ci)
    sig("rd_kafka_mock_cluster_destroy", None, vp)
    sig("rd_kafka_mock_cluster_bootstraps", cp, vp)
    sig("rd_kafka_mock_topic_create", ci, vp, cp, ci, ci)
    sig("rd_kafka_mock_topic_delete", ci, vp, cp)
    sig("rd_kafka_mock_topic_set_error", None, vp, cp, ci)
    sig("rd_kafka_mock_partition_set_leader", ci, vp, cp, i32, i32)
    sig("rd_kafka_mock_partition_delete_records", ci, vp, cp, i32, i64)
    sig("rd_kafka_mock_broker_set_down", ci, vp, i32)
    sig("rd_kafka_mock_broker_set_up", ci, vp, i32)
    sig("rd_kafka_mock_broker_set_rtt", ci, vp, i32, ci)
    sig("rd_kafka_mock_clear_request_errors", None, vp, i16)
    sig("rd_kafka_mock_push_request_errors_array", None, vp, i16, sz,
        ctypes.POINTER(ci))
    # Variadic: the fixed part only; the (err, rtt) pairs are passed as c_int.
    sig("rd_kafka_mock_broker_push_request_error_rtts", ci, vp, i32, i16, sz)
    sig("rd_kafka_mock_partition_push_request_errors", ci, vp, cp, i32, i16,
        sz)
    sig("rd_kafka_mock_broker_error_stack_cnt", ci, vp, i32, i16,
        ctypes.POINTER(sz))
    sig("rd_kafka_mock_set_apiversion", ci, vp, i16, i16, i16)
    sig("rd_kafka_mock_start_request_tracking", None, vp)
    sig("rd_kafka_mock_stop_request_tracking", None, vp)
    sig("rd_kafka_mock_clear_requests", None, vp)
    sig("rd_kafka_mock_get_requests", ctypes.POINTER(vp), vp,
        ctypes.POINTER(sz))
    sig("rd_kafka_mock_request_destroy_array", None, ctypes.POINTER(vp), sz)
    sig("rd_kafka_mock_request_id", i32, vp)
    sig("rd_kafka_mock_request_api_key", i16, vp)
    return lib


# --------------------------------------------------------------------------
# Names

API_KEYS = {
    "produce": 0, "fetch": 1, "listoffsets": 2, "metadata": 3,
    "offsetcommit": 8, "offsetfetch": 9, "findcoordinator": 10,
    "joingroup": 11, "heartbeat": 12, "leavegroup": 13, "syncgroup": 14,
    "saslhandshake": 17, "apiversions": 18, "apiversion": 18,
    "createtopics": 19, "deletetopics": 20, "deleterecords": 21,
    "initproducerid": 22, "offsetforleaderepoch": 23,
    "addpartitionstotxn": 24, "addoffsetstotxn": 25, "endtxn": 26,
    "txnoffsetcommit": 28, "saslauthenticate": 36,
}

# Kafka protocol names that differ from librdkafka's enum names.
ERR_ALIASES = {
    "MESSAGE_TOO_LARGE": 10,
    "NOT_LEADER_OR_FOLLOWER": 6,
    "UNKNOWN_TOPIC_OR_PARTITION": 3,
    "RECORD_LIST_TOO_LARGE": 18,
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND": 20,
    "KAFKA_STORAGE_ERROR": 56,
    "CORRUPT_MESSAGE": 2,
    "TRANSPORT": -195,
}


def build_err_names(lib):
    descs = ctypes.POINTER(ErrDesc)()
    cnt = ctypes.c_size_t()
    lib.rd_kafka_get_err_descs(ctypes.byref(descs), ctypes.byref(cnt))
    names = {}
    for i in range(cnt.value):
        d = descs[i]
        if d.name:
            names[d.name.decode().upper()] = d.code
    names.update(ERR_ALIASES)
    return names


def parse_int(text, what, minimum=None, maximum=None):
    try:
        v = int(text, 0)
    except ValueError:
        raise CmdError("bad %s %r" % (what, text))
    if (minimum is not None and v < minimum) or \
            (maximum is not None and v > maximum):
        raise CmdError("%s %d out of range" % (what, v))
    return v


class CmdError(Exception):
    pass


# --------------------------------------------------------------------------
# Minimal raw Kafka client (for `topics`, and for tests that want to look)

def _kreq(host, port, api_key, api_version, body, corr=1, timeout=5.0):
    client_id = b"mock_kafka.py"
    hdr = struct.pack(">hhih", api_key, api_version, corr, len(client_id))
    payload = hdr + client_id + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        data = _recv_exact(s, size)
    rcorr = struct.unpack(">i", data[:4])[0]
    if rcorr != corr:
        raise IOError("correlation id mismatch")
    return data[4:]


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise IOError("connection closed by broker")
        buf += chunk
    return buf


class _Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.o)
        self.o += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.d[self.o:self.o + n].decode()
        self.o += n
        return s


def api_versions(host, port, timeout=5.0):
    """ApiVersions v0 -> (error_code, {api_key: (min, max)})."""
    r = _Reader(_kreq(host, port, 18, 0, b"", timeout=timeout))
    err = r.take(">h")
    out = {}
    for _ in range(r.take(">i")):
        k, lo, hi = r.take(">hhh")
        out[k] = (lo, hi)
    return err, out


def metadata(host, port, topics=None, version=1, allow_auto_create=False,
             timeout=5.0):
    """Metadata v1 or v4.  topics=None asks for all topics (never creates).
    With a topic list, v1 lets the mock auto-create unknown topics; v4 sends
    allow_auto_create."""
    if version not in (1, 4):
        raise ValueError("only Metadata v1 and v4 are implemented")
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics))
        for t in topics:
            tb = t.encode()
            body += struct.pack(">h", len(tb)) + tb
    if version >= 4:
        body += struct.pack(">b", 1 if allow_auto_create else 0)
    r = _Reader(_kreq(host, port, 3, version, body, timeout=timeout))
    if version >= 3:
        r.take(">i")  # throttle_time_ms
    brokers = {}
    for _ in range(r.take(">i")):
        node = r.take(">i")
        h = r.string()
        p = r.take(">i")
        r.string()  # rack
        brokers[node] = (h, p)
    if version >= 2:
        r.string()  # cluster_id
    controller = r.take(">i")
    out = {}
    for _ in range(r.take(">i")):
        terr = r.take(">h")
        name = r.string()
        r.take(">b")  # is_internal
        parts = {}
        for _ in range(r.take(">i")):
            perr, pid, leader = r.take(">hii")
            for _ in range(2):  # replicas, isr
                n = r.take(">i")
                r.o += 4 * n
            parts[pid] = (perr, leader)
        out[name] = (terr, parts)
    return {"brokers": brokers, "controller": controller, "topics": out}


# --------------------------------------------------------------------------
# The fixture

def _fd_table():
    """{fd: (kind, inode, writable)} for pipes and sockets (Linux /proc)."""
    out = {}
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink("/proc/self/fd/" + fd)
            kind = link.split(":", 1)[0]
            if kind not in ("pipe", "socket"):
                continue
            inode = int(link.split("[", 1)[1].rstrip("]"))
            with open("/proc/self/fdinfo/" + fd) as f:
                flags = [int(line.split()[1], 8) for line in f
                         if line.startswith("flags:")][0]
            out[int(fd)] = (kind, inode, flags & 3 == os.O_WRONLY)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _find_wakeup_fd(before, after):
    """The mock cluster's op wake-up pipe is the last pipe that
    rd_kafka_mock_cluster_new() creates, after the broker listen sockets
    (an internal broker it adds first has a pipe of its own).  Inode numbers
    grow with creation order."""
    new = {fd: v for fd, v in after.items() if fd not in before}
    sockets = [v[1] for v in new.values() if v[0] == "socket"]
    pipes = [(v[1], fd) for fd, v in new.items() if v[0] == "pipe" and v[2]]
    if not sockets or not pipes:
        return None
    inode, fd = max(pipes)
    return fd if inode > max(sockets) else None


class MockKafka:
    def __init__(self, lib, brokers, max_request_bytes, default_rf, debug):
        self.lib = lib
        self.n = brokers
        self.default_rf = default_rf
        self.err_names = build_err_names(lib)
        self.leaders = {}  # topic -> [leader id per partition]
        self.tracking = False

        conf = lib.rd_kafka_conf_new()
        settings = [
            ("receive.message.max.bytes", str(max_request_bytes)),
            ("client.id", "mock_kafka_owner"),
            ("log_level", "7" if debug else "4"),
        ]
        if debug:
            settings.append(("debug", "mock,broker"))
        errstr = ctypes.create_string_buffer(512)
        for k, v in settings:
            if lib.rd_kafka_conf_set(conf, k.encode(), v.encode(), errstr,
                                     len(errstr)) != 0:
                lib.rd_kafka_conf_destroy(conf)
                raise RuntimeError("conf %s=%s: %s" %
                                   (k, v, errstr.value.decode()))
        self.rk = lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                   len(errstr))
        if not self.rk:
            lib.rd_kafka_conf_destroy(conf)
            raise RuntimeError("rd_kafka_new: %s" % errstr.value.decode())
        before = _fd_table()
        self.mc = lib.rd_kafka_mock_cluster_new(self.rk, brokers)
        self.wakeup_fd = _find_wakeup_fd(before, _fd_table())
        if not self.mc:
            lib.rd_kafka_destroy(self.rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(
            self.mc).decode()

    @contextlib.contextmanager
    def awake(self):
        """Run mock API calls, waking the mock thread if it dozes off.

        librdkafka's mock thread can miss the wake-up for a control op that
        is queued right after it served the previous one (it drains its
        wake-up pipe *after* serving the op queue), and then serves the op
        only at its 1 s poll timeout.  While a command runs, a helper thread
        pokes it every 10 ms: by writing a byte to that wake-up pipe when it
        was identified at start-up, else by opening and closing a TCP
        connection to a broker that is up (any socket event makes the mock
        thread serve its op queue).
        """
        done = threading.Event()

        def kick():
            while not done.wait(0.01):
                if self.wakeup_fd is not None:
                    try:
                        os.write(self.wakeup_fd, b"1")
                    except OSError:  # BlockingIOError: pipe full is fine
                        pass
                    continue
                for hp in self.bootstrap.split(","):
                    host, port = hp.rsplit(":", 1)
                    try:
                        socket.create_connection((host, int(port)),
                                                 timeout=0.2).close()
                        break
                    except OSError:
                        continue

        t = threading.Thread(target=kick, daemon=True)
        t.start()
        try:
            yield
        finally:
            done.set()
            t.join()

    def close(self):
        if self.mc:
            self.lib.rd_kafka_mock_cluster_destroy(self.mc)
            self.mc = None
        if self.rk:
            self.lib.rd_kafka_destroy(self.rk)
            self.rk = None

    # -- helpers --
    def err(self, text):
        t = text.upper()
        if t.lstrip("-").isdigit() or t.startswith("0X"):
            return parse_int(text, "error code")
        for prefix in ("RD_KAFKA_RESP_ERR_", "ERR_"):
            if t.startswith(prefix):
                t = t[len(prefix):]
        if t in self.err_names:
            return self.err_names[t]
        if "_" + t in self.err_names:  # e.g. TRANSPORT -> _TRANSPORT
            return self.err_names["_" + t]
        raise CmdError("unknown error code %r" % text)

    @staticmethod
    def apikey(text):
        t = text.lower().replace("_", "").replace("-", "")
        if t in API_KEYS:
            return API_KEYS[t]
        if t.removesuffix("request") in API_KEYS:
            return API_KEYS[t.removesuffix("request")]
        return parse_int(text, "api key")

    def broker(self, text):
        b = parse_int(text, "broker id")
        if not 1 <= b <= self.n:
            raise CmdError("no broker %d (ids are 1..%d)" % (b, self.n))
        return b

    def check(self, code, what):
        if code != 0:
            raise CmdError("%s: %s (%s)" % (
                what, self.lib.rd_kafka_err2name(code).decode(),
                self.lib.rd_kafka_err2str(code).decode()))

    def errname(self, code):
        return self.lib.rd_kafka_err2name(code).decode()

    # -- operations --
    def create_topic(self, name, partitions, rf=None):
        rf = rf or self.default_rf
        self.check(self.lib.rd_kafka_mock_topic_create(
            self.mc, name.encode(), partitions, rf), "create-topic")
        # The mock puts every leader on broker 1 when rf == brokers; spread.
        leaders = []
        for p in range(partitions):
            b = p % self.n + 1
            self.set_leader(name, p, b, track=False)
            leaders.append(b)
        self.leaders[name] = leaders

    def set_leader(self, topic, partition, broker, track=True):
        self.check(self.lib.rd_kafka_mock_partition_set_leader(
            self.mc, topic.encode(), partition, broker), "leader")
        if track and topic in self.leaders:
            lst = self.leaders[topic]
            if partition < len(lst):
                lst[partition] = broker

    def leaders_str(self, topic):
        return ",".join("%d:%d" % (p, b)
                        for p, b in enumerate(self.leaders[topic]))

    def push_broker_errors(self, broker, apikey, err, rtt, count):
        left = count
        while left > 0:
            chunk = min(left, 128)
            extra = []
            for _ in range(chunk):
                extra += [ctypes.c_int(err), ctypes.c_int(rtt)]
            self.check(self.lib.rd_kafka_mock_broker_push_request_error_rtts(
                self.mc, broker, apikey, chunk, *extra), "broker-errors")
            left -= chunk

    def requests(self):
        cnt = ctypes.c_size_t()
        arr = self.lib.rd_kafka_mock_get_requests(self.mc, ctypes.byref(cnt))
        counts = {}
        try:
            for i in range(cnt.value):
                key = (self.lib.rd_kafka_mock_request_id(arr[i]),
                       self.lib.rd_kafka_mock_request_api_key(arr[i]))
                counts[key] = counts.get(key, 0) + 1
        finally:
            if arr:
                self.lib.rd_kafka_mock_request_destroy_array(arr, cnt.value)
        return counts

    def topics(self):
        last = None
        for hp in self.bootstrap.split(","):
            host, port = hp.rsplit(":", 1)
            try:
                return metadata(host, int(port), None, timeout=3.0)
            except (OSError, IOError, struct.error) as e:
                last = e
        raise CmdError("no broker answered Metadata: %s" % last)

    # -- command dispatch --
    def handle(self, line):
        parts = line.split()
        cmd, a = parts[0].lower(), parts[1:]

        def need(n, usage):
            optional = usage.count("[")
            if not n <= len(a) <= n + optional:
                raise CmdError("usage: %s %s" % (cmd, usage))

        lib, mc = self.lib, self.mc
        if cmd == "ping":
            need(0, "")
            return None
        if cmd == "bootstrap":
            need(0, "")
            return self.bootstrap
        if cmd == "create-topic":
            need(2, "NAME PARTITIONS [RF]")
            rf = parse_int(a[2], "replication factor", 1) if len(a) > 2 else None
            self.create_topic(a[0], parse_int(a[1], "partitions", 1), rf)
            return self.leaders_str(a[0])
        if cmd == "delete-topic":
            need(1, "NAME")
            self.check(lib.rd_kafka_mock_topic_delete(mc, a[0].encode()),
                       "delete-topic")
            self.leaders.pop(a[0], None)
            return None
        if cmd == "leader":
            need(3, "TOPIC PARTITION BROKER_ID")
            b = parse_int(a[2], "broker id")
            if b != -1:
                self.broker(a[2])
            self.set_leader(a[0], parse_int(a[1], "partition", 0), b)
            return None
        if cmd == "leaders":
            need(1, "TOPIC")
            if a[0] not in self.leaders:
                raise CmdError("topic %s not created by this fixture" % a[0])
            return self.leaders_str(a[0])
        if cmd == "leaders-rotate":
            need(1, "TOPIC")
            if a[0] not in self.leaders:
                raise CmdError("topic %s not created by this fixture" % a[0])
            for p, b in enumerate(list(self.leaders[a[0]])):
                nb = 1 if b < 1 else b % self.n + 1
                self.set_leader(a[0], p, nb)
            return self.leaders_str(a[0])
        if cmd in ("down", "up"):
            need(1, "BROKER_ID")
            fn = (lib.rd_kafka_mock_broker_set_down if cmd == "down"
                  else lib.rd_kafka_mock_broker_set_up)
            self.check(fn(mc, self.broker(a[0])), cmd)
            return None
        if cmd == "rtt":
            need(2, "BROKER_ID MS")
            self.check(lib.rd_kafka_mock_broker_set_rtt(
                mc, self.broker(a[0]), parse_int(a[1], "rtt", 0, 2**31 - 1)),
                "rtt")
            return None
        if cmd == "errors":
            need(3, "APIKEY ERR COUNT")
            key, err = self.apikey(a[0]), self.err(a[1])
            cnt = parse_int(a[2], "count", 0, 100000)
            arr = (ctypes.c_int * max(cnt, 1))(*([err] * cnt))
            lib.rd_kafka_mock_push_request_errors_array(mc, key, cnt, arr)
            return None
        if cmd == "broker-errors":
            need(5, "BROKER_ID APIKEY ERR RTT_MS COUNT")
            self.push_broker_errors(self.broker(a[0]), self.apikey(a[1]),
                                    self.err(a[2]), parse_int(a[3], "rtt", 0, 2**31 - 1),
                                    parse_int(a[4], "count", 0, 100000))
            return None
        if cmd == "broker-error-count":
            need(2, "BROKER_ID APIKEY")
            n = ctypes.c_size_t()
            self.check(lib.rd_kafka_mock_broker_error_stack_cnt(
                mc, self.broker(a[0]), self.apikey(a[1]), ctypes.byref(n)),
                "broker-error-count")
            return str(n.value)
        if cmd == "partition-errors":
            need(5, "TOPIC PARTITION APIKEY ERR COUNT")
            err, cnt = self.err(a[3]), parse_int(a[4], "count", 0, 1000)
            self.check(lib.rd_kafka_mock_partition_push_request_errors(
                mc, a[0].encode(), parse_int(a[1], "partition"),
                self.apikey(a[2]), cnt, *([ctypes.c_int(err)] * cnt)),
                "partition-errors")
            return None
        if cmd == "clear-errors":
            need(1, "APIKEY")
            lib.rd_kafka_mock_clear_request_errors(mc, self.apikey(a[0]))
            return None
        if cmd == "topic-error":
            need(2, "TOPIC ERR")
            lib.rd_kafka_mock_topic_set_error(mc, a[0].encode(),
                                              self.err(a[1]))
            return None
        if cmd == "apiversion":
            need(3, "APIKEY MIN MAX")
            self.check(lib.rd_kafka_mock_set_apiversion(
                mc, self.apikey(a[0]), parse_int(a[1], "min"),
                parse_int(a[2], "max")), "apiversion")
            return None
        if cmd == "track-start":
            lib.rd_kafka_mock_start_request_tracking(mc)
            return None
        if cmd == "track-stop":
            lib.rd_kafka_mock_stop_request_tracking(mc)
            return None
        if cmd == "track-clear":
            lib.rd_kafka_mock_clear_requests(mc)
            return None
        if cmd == "requests":
            counts = self.requests()
            return " ".join("%d:%d=%d" % (b, k, n)
                            for (b, k), n in sorted(counts.items())) or "-"
        if cmd == "topics":
            md = self.topics()
            return ",".join("%s:%d" % (t, len(p))
                            for t, (_, p) in sorted(md["topics"].items())) \
                or "-"
        if cmd == "delete-records":
            need(3, "TOPIC PARTITION OFFSET")
            self.check(lib.rd_kafka_mock_partition_delete_records(
                mc, a[0].encode(), parse_int(a[1], "partition"),
                parse_int(a[2], "offset")), "delete-records")
            return None
        raise CmdError("unknown command %r" % cmd)


# --------------------------------------------------------------------------

def parent_watch(ppid):
    while True:
        time.sleep(0.5)
        if os.getppid() != ppid:
            sys.stderr.write("mock_kafka: parent %d gone, exiting\n" % ppid)
            sys.stderr.flush()
            os._exit(0)


def set_pdeathsig():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="librdkafka mock Kafka cluster, controlled via stdin")
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--topic", action="append", default=[],
                    metavar="NAME:PARTITIONS[:RF]")
    ap.add_argument("--max-request-bytes", type=int, default=1048700,
                    help="largest request frame accepted (incl. 4-byte size)")
    ap.add_argument("--replication-factor", type=int, default=None,
                    help="default RF for topics (default min(3, brokers))")
    ap.add_argument("--port-file")
    ap.add_argument("--debug", action="store_true",
                    help="librdkafka mock debug logs to stderr")
    ap.add_argument("--pdeathsig", action="store_true",
                    help="PR_SET_PDEATHSIG=SIGTERM (fires when the spawning "
                         "thread exits)")
    args = ap.parse_args(argv)

    ppid = os.getppid()
    if args.pdeathsig and sys.platform.startswith("linux"):
        set_pdeathsig()
    if os.getppid() != ppid:
        return 0
    threading.Thread(target=parent_watch, args=(ppid,), daemon=True).start()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    out = sys.stdout
    try:
        if args.brokers < 1:
            raise RuntimeError("--brokers must be >= 1")
        lib = load_lib(find_librdkafka())
        rf = args.replication_factor or min(3, args.brokers)
        mk = MockKafka(lib, args.brokers, args.max_request_bytes, rf,
                       args.debug)
    except Exception as e:  # noqa: BLE001 - report any start-up failure
        out.write("error %s\n" % str(e).replace("\n", " "))
        out.flush()
        return 1

    try:
        with mk.awake():
            for spec in args.topic:
                bits = spec.split(":")
                if len(bits) not in (2, 3):
                    raise CmdError(
                        "bad --topic %r (NAME:PARTITIONS[:RF])" % spec)
                mk.create_topic(bits[0], parse_int(bits[1], "partitions"),
                                parse_int(bits[2], "rf") if len(bits) > 2
                                else None)
    except Exception as e:  # noqa: BLE001
        out.write("error %s\n" % e)
        out.flush()
        mk.close()
        return 1

    line = "bootstrap=%s\n" % mk.bootstrap
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(line)
        os.replace(tmp, args.port_file)
    out.write(line)
    out.flush()
    sys.stderr.write("mock_kafka: librdkafka %s, %d brokers, %s\n" % (
        lib.rd_kafka_version_str().decode(), args.brokers, mk.bootstrap))
    sys.stderr.flush()

    rc = 0
    try:
        for raw in sys.stdin:
            cmd = raw.strip()
            if not cmd or cmd.startswith("#"):
                continue
            if cmd.split()[0].lower() in ("quit", "exit"):
                out.write("ok\n")
                out.flush()
                break
            try:
                with mk.awake():
                    data = mk.handle(cmd)
                out.write("ok\n" if data is None else "ok %s\n" % data)
            except CmdError as e:
                out.write("error %s\n" % e)
            except Exception as e:  # noqa: BLE001 - keep serving
                out.write("error %s: %s\n" % (type(e).__name__, e))
            out.flush()
    except KeyboardInterrupt:
        rc = 130
    finally:
        mk.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
