#!/usr/bin/env python3
"""Self-test for scripts/mock_kafka.py using a real librdkafka client.

Starts mock_kafka.py (3 brokers) as a child process and drives it over
stdin/stdout the way a Rust test would, while confluent_kafka clients (and a
few hand-made protocol requests) talk to the brokers.  Prints one line per
check and exits 1 if any check failed.  Takes about 30 s.

    python3 scripts/mock_kafka_selftest.py [-v]
"""

import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mock_kafka  # noqa: E402  (raw protocol helpers)

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

VERBOSE = "-v" in sys.argv
TOPIC = "selftest"
PARTS = 6
MAX_REQ = 1048700


class Mock:
    def __init__(self, *args):
        t0 = time.monotonic()
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "mock_kafka.py")] + list(args),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if VERBOSE else subprocess.DEVNULL,
            text=True, bufsize=1)
        line = self.p.stdout.readline().strip()
        self.startup = time.monotonic() - t0
        if not line.startswith("bootstrap="):
            raise RuntimeError("bad start-up line %r" % line)
        self.bootstrap = line.split("=", 1)[1]
        self.addrs = [(h, int(p)) for h, p in
                      (hp.rsplit(":", 1) for hp in self.bootstrap.split(","))]

    def cmd(self, line, expect_ok=True):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        ans = self.p.stdout.readline().rstrip("\n")
        if VERBOSE:
            print("    > %s\n    < %s" % (line, ans))
        if expect_ok and not ans.startswith("ok"):
            raise AssertionError("%s -> %s" % (line, ans))
        return ans[3:] if ans.startswith("ok ") else ans

    def leaders(self, topic):
        return {int(p): int(b) for p, b in
                (x.split(":") for x in self.cmd("leaders " + topic).split(","))}

    def requests(self):
        out = {}
        data = self.cmd("requests")
        if data == "-":
            return out
        for item in data.split():
            k, n = item.split("=")
            b, key = k.split(":")
            out[(int(b), int(key))] = int(n)
        return out

    def close(self):
        try:
            ans = self.cmd("quit")
            assert ans == "ok", ans
            self.p.stdin.close()
            return self.p.wait(timeout=10)
        except Exception:
            self.p.kill()
            raise


def producer(mock, **extra):
    conf = {
        "bootstrap.servers": mock.bootstrap,
        "linger.ms": 5,
        "acks": "all",
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 200,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
        "log_level": 7 if VERBOSE else 0,
    }
    conf.update(extra)
    return Producer(conf)


class Deliveries:
    def __init__(self):
        self.ok, self.failed, self.times = [], [], {}

    def cb(self, err, msg):
        now = time.monotonic()
        if err is not None:
            self.failed.append((err, msg))
        else:
            self.ok.append(msg)
        key = msg.key()
        if key is not None:
            self.times[key] = now


def produce_wait(p, topic, partition, value, key=None, headers=None,
                 timeout=15.0):
    """Produce one record and wait for its delivery report."""
    box = {}

    def cb(err, msg):
        box["err"], box["msg"], box["t"] = err, msg, time.monotonic()

    t0 = time.monotonic()
    p.produce(topic, value=value, key=key, partition=partition,
              headers=headers, on_delivery=cb)
    while "t" not in box and time.monotonic() - t0 < timeout:
        p.poll(0.05)
    if "t" not in box:
        raise AssertionError("no delivery report within %.0fs" % timeout)
    return box["err"], box["msg"], box["t"] - t0


def read_all(mock, topic, partitions, timeout=10.0):
    """Every record of a topic, read with assign() from the beginning (no
    consumer group involved).  Returns {partition: [Message, ...]}."""
    c = Consumer({
        "bootstrap.servers": mock.bootstrap,
        "group.id": "selftest-reader",  # required by the binding, unused
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "check.crcs": True,
        "log_level": 7 if VERBOSE else 0,
    })
    c.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
    out = {p: [] for p in range(partitions)}
    eof = set()
    t0 = time.monotonic()
    while len(eof) < partitions and time.monotonic() - t0 < timeout:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise AssertionError("consume error %s" % m.error())
        out[m.partition()].append(m)
    c.close()
    if len(eof) < partitions:
        raise AssertionError("EOF on only %s of %d partitions" %
                             (sorted(eof), partitions))
    return out


# --------------------------------------------------------------------------
# Hand-made requests at the versions rskafka 0.6 uses (Produce v3..v7 with
# record batches v2, Fetch v4, ListOffsets v3).

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _varint(n):
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def record_batch(values, headers=()):
    """Uncompressed record batch v2 with one record per value."""
    now = int(time.time() * 1000)
    recs = b""
    for i, v in enumerate(values):
        body = b"\0" + _varint(0) + _varint(i) + _varint(-1)  # no key
        body += _varint(len(v)) + v + _varint(len(headers))
        for hk, hv in headers:
            body += _varint(len(hk)) + hk + _varint(len(hv)) + hv
        recs += _varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, now, now, -1,
                            -1, -1, len(values)) + recs
    crc_part = struct.pack(">ibI", 0, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(crc_part)) + crc_part


def raw_produce(addr, version, topic, partition, batch):
    body = struct.pack(">hhi", -1, -1, 5000)  # no txn id, acks=all
    t = topic.encode()
    body += struct.pack(">ih", 1, len(t)) + t
    body += struct.pack(">iii", 1, partition, len(batch)) + batch
    r = mock_kafka._Reader(mock_kafka._kreq(addr[0], addr[1], 0, version,
                                            body))
    r.take(">i")
    r.string()
    r.take(">i")
    _, err, base = r.take(">ihq")
    return err, base


def raw_list_offsets_v3(addr, topic, partition, ts):
    t = topic.encode()
    body = struct.pack(">ibih", -1, 0, 1, len(t)) + t
    body += struct.pack(">iiq", 1, partition, ts)
    r = mock_kafka._Reader(mock_kafka._kreq(addr[0], addr[1], 2, 3, body))
    r.take(">i")  # throttle
    r.take(">i")
    r.string()
    r.take(">i")
    _, err, _, offset = r.take(">ihqq")
    return err, offset


def raw_fetch_v4(addr, topic, partition, offset):
    t = topic.encode()
    body = struct.pack(">iiiibih", -1, 100, 1, 1 << 20, 0, 1, len(t)) + t
    body += struct.pack(">iiqi", 1, partition, offset, 1 << 20)
    r = mock_kafka._Reader(mock_kafka._kreq(addr[0], addr[1], 1, 4, body))
    r.take(">i")  # throttle
    r.take(">i")
    r.string()
    r.take(">i")
    _, err, hw, _lso = r.take(">ihqq")
    n_aborted = r.take(">i")
    r.o += 16 * max(n_aborted, 0)
    size = r.take(">i")
    records = r.d[r.o:r.o + max(size, 0)]
    return err, hw, records


def check_rskafka_versions_raw(m):
    m.cmd("create-topic rawv 1")
    assert m.cmd("leaders rawv") == "0:1"
    b1, b2 = m.addrs[0], m.addrs[1]
    err, base = raw_produce(b1, 3, "rawv", 0, record_batch([b"r0", b"r1"]))
    assert (err, base) == (0, 0), (err, base)
    err, base = raw_produce(b1, 7, "rawv", 0,
                            record_batch([b"r2"], [(b"h", b"v")]))
    assert (err, base) == (0, 2), (err, base)
    err, _ = raw_produce(b2, 7, "rawv", 0, record_batch([b"x"]))
    assert err == 6, err  # NOT_LEADER_OR_FOLLOWER from a non-leader
    err, _ = raw_produce(b1, 7, "no-such-topic", 0, record_batch([b"x"]))
    assert err == 3, err  # Produce does not auto-create
    assert raw_list_offsets_v3(b1, "rawv", 0, -1) == (0, 3)
    assert raw_list_offsets_v3(b1, "rawv", 0, -2) == (0, 0)
    err, hw, records = raw_fetch_v4(b1, "rawv", 0, 0)
    assert err == 0 and hw == 3, (err, hw)
    # The mock answers a Fetch with ONE stored batch per partition (as it
    # was produced, base offset rewritten); the client fetches again.
    assert b"r0" in records and b"r2" not in records, records
    assert struct.unpack(">q", records[:8])[0] == 0
    err, hw, records = raw_fetch_v4(b1, "rawv", 0, 2)
    assert err == 0 and b"r2" in records, (err, records)
    assert struct.unpack(">q", records[:8])[0] == 2
    err, hw, records = raw_fetch_v4(b1, "rawv", 0, 1)  # mid-batch offset
    assert err == 0 and struct.unpack(">q", records[:8])[0] == 0
    err, hw, records = raw_fetch_v4(b2, "rawv", 0, 0)
    assert err == 6, err  # follower fetch not served
    got = read_all(m, "rawv", 1)[0]
    assert [x.value() for x in got] == [b"r0", b"r1", b"r2"], got
    assert got[2].headers() == [("h", b"v")]
    return "Produce v3+v7 (batch v2), ListOffsets v3, Fetch v4 work " \
        "(one batch per Fetch); non-leader -> 6; Produce to unknown " \
        "topic -> 3 (no auto-create)"


# --------------------------------------------------------------------------
# checks

def check_startup(m):
    assert all(h == "127.0.0.1" for h, _ in m.addrs), m.bootstrap
    assert len(m.addrs) == 3
    assert m.cmd("ping") == "ok"
    assert m.cmd("bootstrap") == m.bootstrap
    return "bootstrap=%s in %.2fs" % (m.bootstrap, m.startup)


def check_api_versions(m):
    h, p = m.addrs[0]
    err, ranges = mock_kafka.api_versions(h, p)
    assert err == 0
    names = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata",
             18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
             21: "DeleteRecords"}
    # What rskafka 0.6 wants: Produce 3..7, Fetch 4, ListOffsets 0..3,
    # Metadata 0..4, ApiVersions 0..3.
    want = {0: (3, 7), 1: (4, 4), 2: (0, 3), 3: (0, 4), 18: (0, 3)}
    for key, (lo, hi) in want.items():
        mlo, mhi = ranges[key]
        assert mlo <= hi and mhi >= lo, (names[key], ranges[key])
    # An ApiVersions v3 request (rskafka tries it first) is answered with
    # UNSUPPORTED_VERSION, so the client falls back to v2.
    s = socket.create_connection((h, p), timeout=5)
    cid = b"rskafka"
    payload = (struct.pack(">hhih", 18, 3, 1, len(cid)) + cid + b"\x00" +
               b"\x08rskafka" + b"\x060.6." + b"\x00")
    s.sendall(struct.pack(">i", len(payload)) + payload)
    n = struct.unpack(">i", mock_kafka._recv_exact(s, 4))[0]
    data = mock_kafka._recv_exact(s, n)
    s.close()
    v3err = struct.unpack(">h", data[4:6])[0]
    assert v3err == 35, v3err
    return "; ".join("%s %s" % (names[k], "%d..%d" % ranges[k] if k in ranges
                                else "absent")
                     for k in sorted(names)) + "; ApiVersions v3 -> err 35"


def check_metadata_autocreate(m):
    h, p = m.addrs[1]
    md = mock_kafka.metadata(h, p, ["ghost-a"], version=4,
                             allow_auto_create=False)
    assert md["topics"]["ghost-a"][0] == 3, md   # UNKNOWN_TOPIC_OR_PART
    md = mock_kafka.metadata(h, p, ["ghost-b"], version=4,
                             allow_auto_create=True)
    err, parts = md["topics"]["ghost-b"]
    assert err == 0 and len(parts) == 4, md  # auto-created, 4 partitions
    md = mock_kafka.metadata(h, p, ["ghost-c"], version=1)
    assert md["topics"]["ghost-c"][0] == 0, md  # v1 with a list creates too
    # A guard: a topic error makes the name look absent to clients.
    m.cmd("topic-error ghost-d UNKNOWN_TOPIC_OR_PART")
    md = mock_kafka.metadata(h, p, ["ghost-d"], version=4,
                             allow_auto_create=True)
    assert md["topics"]["ghost-d"] == (3, {}), md
    topics = m.cmd("topics")
    assert "ghost-a" not in topics and "ghost-b:4" in topics, topics
    assert "ghost-d:0" in topics, topics
    for t in ("ghost-b", "ghost-c", "ghost-d"):
        m.cmd("delete-topic " + t)
    return ("v4 allow=false -> UNKNOWN_TOPIC_OR_PART; v4 allow=true and v1 "
            "auto-create 4 partitions; topic-error guard hides a name")


def check_produce_consume(m):
    p = producer(m)
    d = Deliveries()
    n = 600
    for i in range(n):
        p.produce(TOPIC, key=b"k%d" % i, value=b"v%d" % i, partition=i % PARTS,
                  headers=[("idx", str(i).encode()), ("src", b"selftest")],
                  on_delivery=d.cb)
        p.poll(0)
    p.flush(15)
    assert len(d.ok) == n and not d.failed, (len(d.ok), d.failed[:3])
    got = read_all(m, TOPIC, PARTS)
    total = sum(len(v) for v in got.values())
    assert total == n, total
    for part, msgs in got.items():
        for msg in msgs:
            hdrs = dict(msg.headers())
            i = int(hdrs["idx"])
            assert i % PARTS == part and msg.value() == b"v%d" % i, msg
            assert hdrs["src"] == b"selftest"
    leaders = m.leaders(TOPIC)
    assert sorted(set(leaders.values())) == [1, 2, 3], leaders
    return "%d records with headers over leaders %s" % (n, leaders)


def check_leader_moves(m):
    m.cmd("track-clear")
    p = producer(m)
    d = Deliveries()
    rotations = 0
    t_end = time.monotonic() + 3.0
    i = 0
    last_rot = time.monotonic()
    while time.monotonic() < t_end:
        p.produce(TOPIC, value=b"move%d" % i, partition=i % PARTS,
                  on_delivery=d.cb)
        i += 1
        p.poll(0.01)
        if time.monotonic() - last_rot > 0.5:
            m.cmd("leaders-rotate " + TOPIC)
            rotations += 1
            last_rot = time.monotonic()
    p.flush(20)
    assert len(d.ok) == i and not d.failed, (len(d.ok), i, d.failed[:3])
    reqs = m.requests()
    produce_per_broker = {b: n for (b, k), n in reqs.items() if k == 0}
    assert len(produce_per_broker) == 3, reqs
    return "%d records delivered across %d leader rotations; produce " \
           "requests per broker %s" % (i, rotations, produce_per_broker)


def check_broker_down_up(m):
    leaders = m.leaders(TOPIC)
    part = [pp for pp, b in leaders.items() if b == 2][0]
    p = producer(m)
    produce_wait(p, TOPIC, part, b"warm-up")
    m.cmd("down 2")
    h, port = m.addrs[1]
    try:
        socket.create_connection((h, port), timeout=2).close()
        raise AssertionError("broker 2 still accepts connections while down")
    except ConnectionRefusedError:
        pass
    box = {}
    p.produce(TOPIC, value=b"while-down", partition=part,
              on_delivery=lambda e, msg: box.setdefault("r", (e, msg)))
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        p.poll(0.1)
    assert "r" not in box, box
    m.cmd("up 2")
    t1 = time.monotonic()
    while "r" not in box and time.monotonic() - t1 < 10:
        p.poll(0.05)
    assert "r" in box and box["r"][0] is None, box
    socket.create_connection((h, port), timeout=2).close()  # same port
    return "partition %d stalled while broker 2 down (connection refused), " \
           "delivered %.2fs after up, same port" % (part, time.monotonic() - t1)


def check_not_enough_replicas_retry(m):
    m.cmd("track-clear")
    p = producer(m)
    produce_wait(p, TOPIC, 0, b"warm-up")
    m.cmd("track-clear")
    m.cmd("errors Produce NOT_ENOUGH_REPLICAS 5")
    err, msg, dt = produce_wait(p, TOPIC, 0, b"through-ner")
    assert err is None, err
    n = sum(c for (b, k), c in m.requests().items() if k == 0)
    assert n >= 6, n
    return "delivered after %d produce requests (5 x err 19) in %.2fs" % (n, dt)


def check_cluster_errors_fifo_any_broker(m):
    """Cluster-wide errors are consumed one per request, by any broker."""
    leaders = m.leaders(TOPIC)
    by_broker = {}
    for part, b in sorted(leaders.items()):
        by_broker.setdefault(b, part)
    p = producer(m, retries=0)
    for b in (1, 2, 3):
        produce_wait(p, TOPIC, by_broker[b], b"warm-up")
    m.cmd("errors 0 NOT_ENOUGH_REPLICAS 1")
    m.cmd("errors 0 KAFKA_STORAGE_ERROR 1")
    m.cmd("errors 0 19 1")
    got = []
    for b in (3, 1, 2, 3):
        err, _, _ = produce_wait(p, TOPIC, by_broker[b], b"fifo")
        got.append(err.code() if err else 0)
    assert got == [19, 56, 19, 0], got
    return "3 pushed errors hit the next 3 Produce requests on brokers " \
           "3,1,2 in push order %s, 4th ok" % got[:3]


def check_late_ack(m):
    leaders = m.leaders(TOPIC)
    part = [pp for pp, b in leaders.items() if b == 1][0]
    before = len(read_all(m, TOPIC, PARTS)[part])
    p = producer(m)
    produce_wait(p, TOPIC, part, b"warm-up")
    m.cmd("broker-errors 1 Produce 0 3000 1")
    assert m.cmd("broker-error-count 1 Produce") == "1"
    err, msg, dt = produce_wait(p, TOPIC, part, b"late-ack")
    assert err is None, err
    assert 2.9 <= dt <= 4.5, dt
    assert m.cmd("broker-error-count 1 Produce") == "0"
    after = read_all(m, TOPIC, PARTS)[part]
    assert len(after) == before + 2, (before, len(after))
    assert [x.value() for x in after[-2:]] == [b"warm-up", b"late-ack"]
    return "ack of partition %d (broker 1) arrived after %.2fs; record " \
           "written once" % (part, dt)


def check_broker_stack_shadows_cluster_stack(m):
    """Once a broker has an error stack for an ApiKey (even emptied), that
    broker never consumes the cluster-wide stack for the ApiKey again."""
    leaders = m.leaders(TOPIC)
    p1 = [pp for pp, b in leaders.items() if b == 1][0]
    p2 = [pp for pp, b in leaders.items() if b == 2][0]
    p = producer(m, retries=0)
    m.cmd("errors Produce NOT_ENOUGH_REPLICAS 1")
    e1, _, _ = produce_wait(p, TOPIC, p1, b"shadow-1")  # broker 1
    e2, _, _ = produce_wait(p, TOPIC, p2, b"shadow-2")  # broker 2
    e3, _, _ = produce_wait(p, TOPIC, p2, b"shadow-3")
    got = [x.code() if x else 0 for x in (e1, e2, e3)]
    assert got == [0, 19, 0], got
    return "broker 1 (had broker-errors before) ignored the cluster error; " \
           "broker 2 took it"


def check_clear_errors(m):
    p = producer(m, retries=0)
    m.cmd("errors Produce NOT_ENOUGH_REPLICAS 3")
    m.cmd("clear-errors Produce")
    leaders = m.leaders(TOPIC)
    p3 = [pp for pp, b in leaders.items() if b == 3][0]
    err, _, _ = produce_wait(p, TOPIC, p3, b"after-clear")
    assert err is None, err
    return "clear-errors emptied the cluster stack"


def check_partition_errors(m):
    p = producer(m, retries=0)
    # (NOT_LEADER_OR_FOLLOWER would be retried by librdkafka even with
    # retries=0, so use an error it hands back.)
    m.cmd("partition-errors %s 4 Produce NOT_ENOUGH_REPLICAS 1" % TOPIC)
    e5, _, _ = produce_wait(p, TOPIC, 5, b"perr")
    e4, _, _ = produce_wait(p, TOPIC, 4, b"perr")
    e4b, _, _ = produce_wait(p, TOPIC, 4, b"perr")
    assert e5 is None and e4 is not None and e4.code() == 19 and \
        e4b is None, (e5, e4, e4b)
    return "per-partition error waited for, and hit, partition 4 only"


def check_max_request(m):
    h, port = m.addrs[0]
    # Frame size field counts the bytes after itself; the mock refuses a
    # frame when size + 4 > --max-request-bytes.
    results = {}
    for total in (MAX_REQ, MAX_REQ + 1):
        cid = b"x"
        hdr = struct.pack(">hhih", 18, 0, 5, len(cid)) + cid
        body = hdr + b"\0" * (total - 4 - len(hdr))
        s = socket.create_connection((h, port), timeout=5)
        try:
            s.sendall(struct.pack(">i", len(body)) + body)
            size = s.recv(4)
            results[total] = "answered" if len(size) == 4 else "closed"
        except (ConnectionResetError, BrokenPipeError):
            results[total] = "closed"
        finally:
            s.close()
    assert results == {MAX_REQ: "answered", MAX_REQ + 1: "closed"}, results
    # A real client: a 1.1 MB record in one Produce request.
    p = producer(m, **{"message.max.bytes": 2000000,
                       "message.timeout.ms": 3000, "retries": 2})
    leaders = m.leaders(TOPIC)
    part = [pp for pp, b in leaders.items() if b == 1][0]
    err, _, dt = produce_wait(p, TOPIC, part, b"x" * 1100000)
    assert err is not None, "oversized request accepted"
    ok_err, _, _ = produce_wait(p, TOPIC, part, b"y" * 1000000)
    assert ok_err is None, ok_err
    return "raw frame of %d bytes answered, %d -> connection closed; " \
           "librdkafka 1.1 MB record -> %s after %.1fs, 1.0 MB record ok" % (
               MAX_REQ, MAX_REQ + 1, err.name(), dt)


def check_kcat(m):
    import shutil
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if not kcat:
        return "SKIP (no kcat)"
    out = subprocess.run(
        [kcat, "-C", "-b", m.bootstrap, "-t", TOPIC, "-p", "0", "-o",
         "beginning", "-e", "-c", "3", "-f", "%p|%o|%k|%h|%s\\n"],
        capture_output=True, text=True, timeout=20)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3 and "idx=0" in lines[0], (lines, out.stderr[-300:])
    return "kcat: %s" % lines[0]


def check_bad_commands(m):
    for bad in ("nope", "leader %s 0 9" % TOPIC, "errors Produce BOGUS 1",
                "down", "leaders unknown-topic"):
        ans = m.cmd(bad, expect_ok=False)
        assert ans.startswith("error "), (bad, ans)
    return "unknown command / bad args -> 'error ...'"


def check_eof_exit():
    t0 = time.monotonic()
    mk = Mock("--brokers", "2")
    mk.p.stdin.close()
    rc = mk.p.wait(timeout=10)
    assert rc == 0, rc
    return "stdin EOF -> exit %d after %.2fs (startup %.2fs)" % (
        rc, time.monotonic() - t0, mk.startup)


def main():
    t_start = time.monotonic()
    failures = 0
    m = Mock("--brokers", "3", "--topic", "%s:%d" % (TOPIC, PARTS),
             "--max-request-bytes", str(MAX_REQ))
    m.cmd("track-start")
    checks = [
        check_startup, check_api_versions, check_metadata_autocreate,
        check_rskafka_versions_raw,
        check_produce_consume, check_leader_moves, check_broker_down_up,
        check_not_enough_replicas_retry, check_cluster_errors_fifo_any_broker,
        check_late_ack, check_broker_stack_shadows_cluster_stack,
        check_clear_errors, check_partition_errors, check_max_request,
        check_kcat, check_bad_commands,
    ]
    for chk in checks:
        t0 = time.monotonic()
        try:
            info = chk(m)
            print("PASS %-42s %5.2fs  %s" % (chk.__name__[6:],
                                              time.monotonic() - t0, info))
        except Exception as e:  # noqa: BLE001
            failures += 1
            print("FAIL %-42s %5.2fs  %s: %s" % (
                chk.__name__[6:], time.monotonic() - t0, type(e).__name__, e))
        sys.stdout.flush()
    rc = m.close()
    print("%s %-42s        mock exit code %s" % (
        "PASS" if rc == 0 else "FAIL", "quit", rc))
    failures += rc != 0
    try:
        print("PASS %-42s        %s" % ("eof_exit", check_eof_exit()))
    except Exception as e:  # noqa: BLE001
        failures += 1
        print("FAIL eof_exit: %s" % e)
    print("%d failure(s), %.1fs" % (failures, time.monotonic() - t_start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
