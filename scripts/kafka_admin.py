#!/usr/bin/env python3
"""Administration of the tests' Apache Kafka cluster (``scripts/services.sh start-kafka``).

Through confluent-kafka's AdminClient (librdkafka), as the cluster's super user on the
PLAINTEXT listener; what AdminClient cannot do (client quotas, partition reassignment) goes
through Kafka's own tools from the cluster's jars (``RW_AK_LIBS``). Every command waits
until its effect is visible in the cluster's metadata, and prints one JSON line when it has
something to say.

    kafka_admin.py topic NAME PARTITIONS [KEY=VALUE ...]   RF 3 (rf=N to change it), the configs given
    kafka_admin.py describe NAME                            {partition: {leader, replicas, isr}}
    kafka_admin.py wait-isr NAME SIZE                        every partition's ISR has SIZE
    kafka_admin.py reassign NAME PARTITION B1,B2,B3          new replica order, then waits
    kafka_admin.py elect-preferred NAME                      preferred leader election
    kafka_admin.py topic-config NAME KEY=VALUE ...           set topic configs
    kafka_admin.py broker-config KEY=VALUE | KEY=            on every broker (empty: delete)
    kafka_admin.py quota CLIENT_ID BYTES_PER_SEC|none        producer_byte_rate of a client id
    kafka_admin.py allow-only NAME USER                      ACL: only USER may use topic NAME
    kafka_admin.py write-only NAME USER                      ACL: USER may write and describe NAME,
                                                             not read it
    kafka_admin.py count NAME [PARTITION...]                 records in NAME (the partitions' ends), or in
                                                             the partitions named
    kafka_admin.py tail-keys NAME N                          the keys of each partition's last N
                                                             records, one a line (read to the ends
                                                             the partitions had when it began)
    kafka_admin.py transactions NAME SECONDS                 a transactional producer: commits and
                                                             aborts; prints what it committed
    kafka_admin.py live NAME                                 live ingest: small records, steered by
                                                             its standard input (`rate N`, `wrote`)
                                                             until it closes
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from confluent_kafka import ElectionType, TopicPartition

BOOTSTRAP = os.environ["RW_AK_BOOTSTRAP"]


_ADMIN = None


def admin():
    """One client for the command (its futures fail once the client is gone)."""
    global _ADMIN
    if _ADMIN is None:
        _ADMIN = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 0})
    return _ADMIN


def until(what, check, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except KafkaException as e:
            last = e
        time.sleep(0.2)
    sys.exit(f"kafka_admin: {what} not reached within {timeout} s (last: {last})")


def describe(name):
    md = admin().list_topics(topic=name, timeout=10).topics[name]
    if md.error is not None:
        raise KafkaException(md.error)
    return {
        p.id: {"leader": p.leader, "replicas": list(p.replicas), "isr": sorted(p.isrs)}
        for p in md.partitions.values()
    }


def configs(pairs):
    return dict(p.split("=", 1) for p in pairs)


def tool(cls, *args):
    libs = os.environ["RW_AK_LIBS"]
    out = subprocess.run(
        ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", f"{libs}/*", cls, "--bootstrap-server", BOOTSTRAP, *args],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"kafka_admin: {cls} {' '.join(args)} failed: {out.stdout}{out.stderr}")
    return out.stdout


def cmd_topic(name, partitions, *pairs):
    # rf=N (not a topic config): the replication factor, 3 unless given.
    rf = int(next((p.split("=", 1)[1] for p in pairs if p.startswith("rf=")), 3))
    pairs = [p for p in pairs if not p.startswith("rf=")]
    fs = admin().create_topics(
        [NewTopic(name, num_partitions=int(partitions), replication_factor=rf, config=configs(pairs))]
    )
    fs[name].result()
    until(f"topic {name} with leaders", lambda: (d := describe(name)) and len(d) == int(partitions) and all(p["leader"] >= 0 for p in d.values()))


def cmd_describe(name):
    print(json.dumps(describe(name)))


def cmd_wait_isr(name, size):
    until(f"ISR of {size} on every partition of {name}", lambda: all(len(p["isr"]) == int(size) for p in describe(name).values()))


def cmd_reassign(name, partition, replicas):
    order = [int(b) for b in replicas.split(",")]
    plan = {"version": 1, "partitions": [{"topic": name, "partition": int(partition), "replicas": order}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
    tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand", "--reassignment-json-file", f.name, "--execute")
    until(f"replicas {order} of {name}/{partition}", lambda: describe(name)[int(partition)]["replicas"] == order)
    os.unlink(f.name)


def cmd_elect_preferred(name):
    parts = [TopicPartition(name, p) for p in describe(name)]
    try:
        admin().elect_leaders(ElectionType.PREFERRED, parts).result()
    except KafkaException:
        pass  # ELECTION_NOT_NEEDED for partitions already led by their preferred replica
    until(f"preferred leaders of {name}", lambda: all(p["leader"] == p["replicas"][0] for p in describe(name).values()))


def alter(resource, pairs, op=AlterConfigOpType.SET):
    entries = []
    for k, v in configs(pairs).items():
        if v == "":
            entries.append(ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE))
        else:
            entries.append(ConfigEntry(k, v, incremental_operation=op))
    res = ConfigResource(resource[0], resource[1], incremental_configs=entries)
    for f in admin().incremental_alter_configs([res]).values():
        f.result()


def cmd_topic_config(name, *pairs):
    alter((ConfigResource.Type.TOPIC, name), pairs)


def cmd_broker_config(*pairs):
    for broker in admin().list_topics(timeout=10).brokers:
        alter((ConfigResource.Type.BROKER, str(broker)), pairs)


def cmd_quota(client_id, rate):
    change = ["--delete-config", "producer_byte_rate"] if rate == "none" else ["--add-config", f"producer_byte_rate={rate}"]
    tool("kafka.admin.ConfigCommand", "--alter", "--entity-type", "clients", "--entity-name", client_id, *change)
    # Quotas reach the brokers through the metadata log: wait until Kafka describes it.
    want = None if rate == "none" else float(rate)

    def seen():
        text = tool("kafka.admin.ConfigCommand", "--describe", "--entity-type", "clients", "--entity-name", client_id)
        found = None
        for word in text.replace(",", " ").split():
            if word.startswith("producer_byte_rate="):
                found = float(word.split("=", 1)[1])
        return found == want

    until(f"quota {rate} on client id {client_id}", seen)
    time.sleep(1)  # every broker has applied the record by now; one metadata round more


def cmd_allow_only(name, user):
    acl = AclBinding(
        ResourceType.TOPIC, name, ResourcePatternType.LITERAL, f"User:{user}", "*", AclOperation.ALL, AclPermissionType.ALLOW
    )
    for f in admin().create_acls([acl]).values():
        f.result()
    time.sleep(1)


def cmd_write_only(name, user):
    acls = [
        AclBinding(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, f"User:{user}", "*", op, AclPermissionType.ALLOW)
        for op in (AclOperation.WRITE, AclOperation.DESCRIBE)
    ]
    for f in admin().create_acls(acls).values():
        f.result()
    time.sleep(1)


def cmd_count(name, *partitions):
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "rw-count", "log_level": 0})
    total = 0
    for p in [int(p) for p in partitions] or describe(name):
        low, high = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
        total += high - low
    c.close()
    print(total)


def cmd_tail_keys(name, n):
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": "rw-tail-keys",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
            "log_level": 0,
        }
    )
    ends, assign = {}, []
    for p in describe(name):
        low, high = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
        if high > low:
            ends[p] = high
            assign.append(TopicPartition(name, p, max(low, high - int(n))))
    c.assign(assign)
    out = sys.stdout
    deadline = time.time() + 120
    while ends:
        if time.time() > deadline:
            sys.exit(f"tail-keys: partitions {sorted(ends)} not read to their ends in 120 s")
        batch = c.consume(10000, timeout=1)
        if not batch:
            # Past a control record (a transaction's marker) no message comes: the position says.
            for tp in c.position([TopicPartition(name, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        for m in batch:
            if m.error():
                continue
            p = m.partition()
            if p not in ends or m.offset() >= ends[p]:
                continue
            key = m.key()
            out.write((key or b"").decode("utf-8", "replace") + "\n")
            if m.offset() + 1 >= ends[p]:
                del ends[p]
    c.close()


def cmd_transactions(name, seconds):
    """Transactions of 10 records each on NAME for SECONDS, every third one aborted. Prints
    the committed and aborted counts and the committed values' prefix."""
    txn_id = f"rw-test-txn-{os.getpid()}"

    def start():
        p = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": txn_id, "log_level": 0})
        # On a fresh cluster the transaction coordinator (its 50-partition topic) may not be
        # ready at the first call: retriable errors are tried again for a minute.
        deadline = time.time() + 60
        while True:
            try:
                p.init_transactions(30)
                return p
            except KafkaException as e:
                if not e.args[0].retriable() or time.time() > deadline:
                    raise
                time.sleep(1)

    p = start()
    committed = aborted = 0
    n = 0
    end = time.time() + float(seconds)
    while time.time() < end:
        p.begin_transaction()
        abort = n % 3 == 2
        for i in range(10):
            value = json.dumps({"txn": n, "i": i, "aborted": abort})
            p.produce(name, value=value.encode(), key=f"txn-{n}-{i}".encode(), headers=[("connection_ids", b"other")])
        if abort:
            try:
                p.abort_transaction(30)
            except KafkaException as e:
                # librdkafka's abort can fail, fatally, with INVALID_TXN_STATE after a good
                # begin (confluentinc/librdkafka#4849). A new producer with the same
                # transactional.id fences the old one: its init makes the coordinator abort
                # the open transaction, so these records stay aborted all the same.
                if e.args[0].code() != KafkaError.INVALID_TXN_STATE:
                    raise
                print(f"abort failed ({e}); aborted by a new producer instead", file=sys.stderr)
                p = start()
            aborted += 10
        else:
            p.commit_transaction(30)
            committed += 10
        n += 1
        time.sleep(0.05)
    print(json.dumps({"committed": committed, "aborted": aborted}))


def cmd_live(name):
    """Another producer on the topic throughout, as live ingest: small records, batched and
    compressed, acks=all (kcat -P, librdkafka). Its standard input steers it, a line each:
    `rate N` writes N records a second from then on (0: as fast as the cluster takes them,
    the start), `wrote` prints how many it has handed to kcat so far; at its end it stops,
    waits for kcat to deliver everything, and prints how many it wrote."""
    import threading

    env = dict(os.environ, LD_LIBRARY_PATH=os.environ.get("RW_KCAT_LD_LIBRARY_PATH", ""))
    kcat = subprocess.Popen(
        ["kcat", "-P", "-b", BOOTSTRAP, "-t", name, "-K", "\t", "-H", "connection_ids=live", "-z", "lz4",
         "-X", "linger.ms=20", "-X", "batch.size=1048576", "-X", "queue.buffering.max.messages=1000000"],
        stdin=subprocess.PIPE, env=env)
    state = {"rate": 0, "stop": False, "n": 0}

    def steer():
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["rate"]:
                state["rate"] = int(words[1])
            elif words[:1] == ["wrote"]:
                print(state["n"], flush=True)
        state["stop"] = True

    threading.Thread(target=steer, daemon=True).start()
    w = kcat.stdin.write
    chunk = 1000
    while not state["stop"]:
        began = time.time()
        n = state["n"]
        for i in range(n, n + chunk):
            w(b'live-%d\t{"live":%d,"type":"page","pad":"0123456789abcdef0123456789abcdef"}\n' % (i, i))
        state["n"] = n + chunk
        rate = state["rate"]
        if rate > 0:
            kcat.stdin.flush()
            time.sleep(max(0.0, chunk / rate - (time.time() - began)))
    kcat.stdin.close()
    if kcat.wait() != 0:
        sys.exit(f"kcat -P exited {kcat.returncode}")
    print(json.dumps({"produced": state["n"]}), flush=True)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd = "cmd_" + sys.argv[1].replace("-", "_")
    if cmd not in globals():
        sys.exit(f"kafka_admin: unknown command {sys.argv[1]}\n{__doc__}")
    globals()[cmd](*sys.argv[2:])


if __name__ == "__main__":
    main()
