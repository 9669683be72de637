//! The worker against Apache Kafka itself: the three-node KRaft cluster of
//! `scripts/services.sh start-kafka` (PLAINTEXT, SASL_PLAINTEXT with PLAIN and SCRAM, SSL with a
//! CA made at start-up, the StandardAuthorizer). The logins and TLS are in
//! `tests/kafka_security.rs`, which runs with the other end-to-end tests. Topics are replicated three times with
//! `min.insync.replicas` 2 unless a case says otherwise, and every case reads what the worker
//! delivered back with kcat (librdkafka).
//!
//! The cases stop, kill and restart nodes, change quotas and broker defaults, so they are
//! `#[ignore]`d in the normal run and `scripts/test.sh` runs them one at a time:
//! `cargo test --test apache_kafka -- --ignored --test-threads 1 --nocapture`. Each case that
//! disturbs the cluster leaves it whole again (every node up, every replica in sync) before it
//! asserts, so that a failure does not spread to the next case.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rw_core::generate::{ndjson, Rng, Shape};

const BATCH: u64 = 500;
const IN_FLIGHT: u64 = 4;
/// The worker's duplicate bound per interruption: (2 × in-flight + 2) × batch_size.
const BOUND: u64 = (2 * IN_FLIGHT + 2) * BATCH;

/// Whether the Apache Kafka cluster is configured; like `skip_without_services`, a failure
/// under `scripts/test.sh` and CI, a skip (said on the terminal) in a plain `cargo test`.
fn skip(test: &str) -> bool {
    if skip_without_services(test) {
        return true;
    }
    let problem = match std::env::var("RW_AK_BOOTSTRAP") {
        Err(_) => "RW_AK_BOOTSTRAP is not set".to_string(),
        Ok(b) if b.split(',').any(|a| std::net::TcpStream::connect(a).is_err()) => format!("a node of {b} is down"),
        Ok(_) => return false,
    };
    let required = |v: &str| std::env::var(v).is_ok_and(|x| x == "true" || x == "1");
    if required("CI") || required("RW_REQUIRE_SERVICES") {
        panic!("{test}: Apache Kafka is required here, but {problem}: run scripts/services.sh start-kafka");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped {test}: {problem}; run scripts/services.sh start-kafka");
    true
}

fn bootstrap() -> String {
    env("RW_AK_BOOTSTRAP")
}

/// `scripts/kafka_admin.py` with `args`, not started.
fn admin_command(args: &[&str]) -> Command {
    let mut c = Command::new(env("RW_PYTHON"));
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka_admin.py")).args(args);
    c
}

/// `RW_FAULT_SEED`, else the case's own seed: a failing case's seed is printed, and replays.
fn fault_seed(default: u64) -> u64 {
    std::env::var("RW_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// `scripts/kafka_admin.py` (the cluster's administration); returns its output.
fn admin(args: &[&str]) -> String {
    let out = admin_command(args).output().expect("kafka_admin.py");
    assert!(out.status.success(), "kafka_admin.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `scripts/services.sh {start,stop,kill}-kafka-node N`.
fn node(action: &str, n: u32) {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh"))
        .args([&format!("{action}-kafka-node"), &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{action} node {n}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The leader of each partition.
fn leaders(topic: &str) -> Vec<i64> {
    let v: sonic_rs::Value = sonic_rs::from_str(&admin(&["describe", topic])).unwrap();
    use sonic_rs::{JsonContainerTrait, JsonValueTrait};
    let obj = v.as_object().unwrap();
    (0..obj.len()).map(|p| obj.get(&p.to_string()).unwrap().get("leader").unwrap().as_i64().unwrap()).collect()
}

/// Every node up again and every replica of `topic` in sync.
fn heal(topic: &str) {
    for n in 1..=3 {
        node("start", n);
    }
    admin(&["wait-isr", topic, "3"]);
}

/// Starts every node again when dropped, also when the case failed halfway (the next case
/// needs the whole cluster).
struct Healer;

impl Drop for Healer {
    fn drop(&mut self) {
        for n in 1..=3 {
            let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh"))
                .args(["start-kafka-node", &n.to_string()])
                .output();
        }
    }
}

/// Waits until no partition of `topic` is led by node `n`; returns the leaders.
fn leaders_without(topic: &str, n: u32) -> Vec<i64> {
    let start = Instant::now();
    loop {
        let now = leaders(topic);
        if !now.contains(&(n as i64)) {
            return now;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "node {n} still leads a partition: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A job whose topic lives on the Apache Kafka cluster: `partitions`, replication factor 3,
/// `min.insync.replicas` 2 and the `configs` given.
fn job(partitions: u32, configs: &[&str]) -> Job {
    let mut job = Job::bare();
    let p = partitions.to_string();
    let mut args = vec!["topic", job.topic.as_str(), p.as_str(), "min.insync.replicas=2"];
    args.extend_from_slice(configs);
    admin(&args);
    job.extra_env.push(("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap()));
    job
}

/// Three files (plain, gzip, zstd) of `per_file` generated lines each, every 50th line twice;
/// returns each file's path and lines.
fn dataset(job: &Job, seed: u64, per_file: u64) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut listed = Vec::new();
    for (k, name) in ["a.ndjson", "b.ndjson.gz", "c.ndjson.zst"].iter().enumerate() {
        let mut data = Vec::new();
        for (i, line) in
            ndjson(seed + k as u64, &Shape::default(), per_file).split_inclusive(|&b| b == b'\n').enumerate()
        {
            data.extend_from_slice(line);
            if i % 50 == 0 {
                data.extend_from_slice(line);
            }
        }
        let lines = String::from_utf8(data.clone()).unwrap().lines().map(str::to_owned).collect();
        let bytes = match k {
            0 => data,
            1 => gzip(&data),
            _ => zstd::encode_all(&data[..], 3).unwrap(),
        };
        let path = job.write(name, &bytes);
        listed.push((path.clone(), bytes.len() as u64));
        out.push((path, lines));
    }
    job.files(&listed);
    job.config(&format!(r#"{{"connection_ids":["c1"],"batch_size":{BATCH},"retry_attempts":6}}"#));
    out
}

/// Every line of `files` (in files.json order) under its key, for `job`.
fn all_lines(job: &Job, files: &[(String, Vec<String>)]) -> Expected {
    Expected::of(&job.id, files)
}

/// The worker, with the suite's in-flight bound and its log piped; `rate` lines a second
/// (so that a run lasts long enough to be disturbed), unlimited when 0.
fn worker(job: &Job, rate: u32) -> Command {
    let mut c = job.command(0, 1);
    c.env("KAFKA_MAX_IN_FLIGHT", IN_FLIGHT.to_string()).stdout(Stdio::null()).stderr(Stdio::piped());
    if rate > 0 {
        c.env("MAX_EVENTS_PER_SEC", rate.to_string());
    }
    c
}

fn success_count(job: &Job) -> u64 {
    try_row(&job.id, 0).and_then(|r| r.get("success_count").and_then(|v| v.parse().ok())).unwrap_or(0)
}

/// Waits until the row shows `lines` successes; fails if the worker ended first (a fault
/// injected then would not land while it runs).
fn wait_for(job: &Job, child: &mut Child, lines: u64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the worker ended ({status}) before it delivered {lines} lines");
        }
        if success_count(job) >= lines {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no progress to {lines} lines");
}

/// The worker is still running: the fault landed while it ran.
fn still_running(child: &mut Child, what: &str) {
    assert!(child.try_wait().unwrap().is_none(), "the worker ended before {what} was over");
}

fn completed(job: &Job, out: &Output, lines: u64) {
    assert_success(out);
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed", "{r:?}");
    assert_counts(&r, lines, 0, 0);
}

/// Only the worker's records (another producer writes the topic in one case).
fn ours(msgs: Vec<Msg>) -> Vec<Msg> {
    msgs.into_iter().filter(|m| m.headers == vec![("connection_ids".to_string(), "c1".to_string())]).collect()
}

fn read_back(job: &Job) -> Vec<Msg> {
    consume_from(&bootstrap(), &job.topic)
}

/// Asserts nothing lost and nothing foreign, and at most `bound` duplicates; returns them.
fn check(case: &str, runs: u32, expected: &Expected, msgs: &[Msg], bound: u64) -> u64 {
    let (lost, unexpected, dups) = tally(case, runs, expected, msgs, bound);
    assert_eq!(lost, 0, "{case}: lines lost");
    assert_eq!(unexpected, 0, "{case}: records never in the input, or under another line's key");
    assert!(dups <= bound, "{case}: {dups} duplicates > bound {bound}");
    dups
}

#[test]
#[ignore]
fn replicated_topic_every_line_byte_for_byte() {
    common::needs_services!(skip);
    let job = job(6, &[]);
    let files = dataset(&job, 10, 10_000);
    let expected = all_lines(&job, &files);
    let out = worker(&job, 0).output().unwrap();
    completed(&job, &out, expected.len() as u64);
    let msgs = read_back(&job);
    check("Apache Kafka, RF 3, min ISR 2", 1, &expected, &msgs, 0);
    assert_eq!(sorted(values(&msgs)), expected.values(), "byte for byte");
    let by_file: Vec<(&str, &[String])> = files.iter().map(|(p, l)| (p.as_str(), l.as_slice())).collect();
    assert_keys_are_line_identities(&job.id, &by_file, &msgs);
    assert!(msgs.iter().all(|m| m.headers == vec![("connection_ids".to_string(), "c1".to_string())]));
    let parts: std::collections::BTreeSet<i64> = msgs.iter().map(|m| m.partition).collect();
    assert_eq!(parts.len(), 6, "every partition used");
}

/// Moves leaders with `mv` while a rate-limited run is in its middle (`mv` asserts that the
/// worker still runs once the move landed); asserts every line delivered once, by key and
/// value: the worker never crashes, and a lost answer is looked for before a resend (README,
/// Guarantees). Returns the run's log.
fn leaders_move_mid_run(case: &str, seed: u64, mv: impl FnOnce(&Job, &[i64], &mut Child)) -> String {
    let job = job(3, &[]);
    let expected = all_lines(&job, &dataset(&job, seed, 10_000));
    let before = leaders(&job.topic);
    let _healer = Healer;
    let mut child = worker(&job, 2_500).spawn().unwrap();
    wait_for(&job, &mut child, 3_000);
    // `mv` proves the move landed while the worker ran (`still_running` right after the new
    // leaders are in place); what it does after that (a stopped broker started again, a JVM
    // that takes seconds on a cold machine) is recovery, which the run may outlast or not.
    mv(&job, &before, &mut child);
    let out = child.wait_with_output().unwrap();
    heal(&job.topic);
    completed(&job, &out, expected.len() as u64);
    check(case, 1, &expected, &read_back(&job), 0);
    let log = stderr(&out);
    assert!(!log.contains("the batch is sent again"), "{case}: every lost answer was looked for");
    assert_eq!(idempotence_in(&log), "on", "{case}: Apache Kafka offers idempotence, and auto takes it");
    log
}

/// Asserts that a produce failed and was retried in `log`: the lost leader met the worker.
fn a_produce_was_retried(case: &str, log: &str) {
    let retried: Vec<&str> = log.lines().filter(|l| l.contains("produce failed; retrying")).collect();
    assert!(!retried.is_empty(), "{case}: no produce met the lost leader");
    println!("{case}: {} retried partitions, the first: {:.300}", retried.len(), retried[0]);
}

#[test]
#[ignore]
fn leader_moved_by_reassignment_and_preferred_election() {
    common::needs_services!(skip);
    leaders_move_mid_run("reassignment + preferred election", 20, |job, before, child| {
        for (p, &leader) in before.iter().enumerate() {
            // The same replicas, with the next node first: its preferred leader changes.
            let first = leader % 3 + 1;
            let order: Vec<String> = (0..3).map(|k| ((first - 1 + k) % 3 + 1).to_string()).collect();
            admin(&["reassign", &job.topic, &p.to_string(), &order.join(",")]);
        }
        admin(&["elect-preferred", &job.topic]);
        let now = leaders(&job.topic);
        assert!(now.iter().zip(before).all(|(a, b)| a != b), "every leader moved: {before:?} -> {now:?}");
        still_running(child, "the election");
    });
}

#[test]
#[ignore]
fn leader_moved_by_sigterm_of_its_broker() {
    common::needs_services!(skip);
    let case = "broker SIGTERM (controlled shutdown)";
    let log = leaders_move_mid_run(case, 30, |job, before, child| {
        let n = before[0] as u32;
        node("stop", n);
        leaders_without(&job.topic, n);
        still_running(child, "the controlled shutdown");
        std::thread::sleep(Duration::from_secs(2));
        node("start", n);
    });
    a_produce_was_retried(case, &log);
}

#[test]
#[ignore]
fn leader_lost_by_kill_9_of_its_broker_that_comes_back() {
    common::needs_services!(skip);
    let case = "broker kill -9, back after 3 s";
    let log = leaders_move_mid_run(case, 40, |job, before, child| {
        let n = before[0] as u32;
        node("kill", n);
        // The controller elects new leaders once the node's session times out.
        leaders_without(&job.topic, n);
        still_running(child, "the new leaders' election");
        std::thread::sleep(Duration::from_secs(3));
        node("start", n);
    });
    a_produce_was_retried(case, &log);
}

/// The log line that says which produce path runs: the idempotent one (`on`) or not.
fn idempotence_in(log: &str) -> &'static str {
    let said =
        log.lines().find(|l| l.contains("idempotence=")).unwrap_or_else(|| panic!("no idempotence line: {log:.2000}"));
    if said.contains("idempotence=\"on\"") || said.contains("idempotence=on") {
        "on"
    } else {
        "off"
    }
}

/// Two of three brokers killed under acks=all while the worker runs; it stops at its
/// delivery deadline, and a resume completes. Returns the duplicates.
fn two_brokers_down(idempotence: &str, seed: u64) -> u64 {
    let job = job(3, &[]);
    let expected = all_lines(&job, &dataset(&job, seed, 10_000));
    let _healer = Healer;
    let mut child = worker(&job, 6_000)
        .env("KAFKA_DELIVERY_TIMEOUT_SECS", "10")
        .env("KAFKA_IDEMPOTENCE", idempotence)
        .spawn()
        .unwrap();
    wait_for(&job, &mut child, 6_000);
    node("kill", 2);
    node("kill", 3);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = started.elapsed();
    let log = stderr(&out);
    heal(&job.topic);
    assert_eq!(out.status.code(), Some(1), "exit 1 once the cluster is unavailable: {log}");
    assert!(waited >= Duration::from_secs(10), "not before the delivery deadline: {waited:?}");
    assert_eq!(idempotence_in(&log), idempotence, "the path that ran");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "failed", "{r:?}");
    assert!(r.get("error").is_some_and(|e| e.contains("Kafka unavailable")), "{r:?}");
    println!("two brokers down, idempotence {idempotence}: the worker stopped after {waited:?}; what it said:");
    for l in log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("not sent again")) {
        println!("    {l:.400}");
    }
    let retried = log.contains("produce failed; retrying");
    let resumed = worker(&job, 0).env("KAFKA_IDEMPOTENCE", idempotence).output().unwrap();
    completed(&job, &resumed, expected.len() as u64);
    assert_each_run_kept_the_promise(&[log, stderr(&resumed)], true, "two brokers down, then resumed");
    // Without idempotence a retry during the outage may double a batch: one the leader had
    // appended without the replicas' acknowledgement (acks=all) is invisible to readers until
    // they come back, so the lost-answer check finds nothing, the batch is sent again, and
    // both copies commit when they return. The README's bound for it: one copy of each batch
    // in flight per 30 s of the delivery timeout (10 s here: one). With idempotence the
    // leader drops the resend: none.
    let bound = if idempotence == "on" { 0 } else { IN_FLIGHT * BATCH };
    let case = format!("two brokers down past the deadline, resumed, idempotence {idempotence}");
    let dups = check(&case, 2, &expected, &read_back(&job), bound);
    println!("two brokers down, idempotence {idempotence}: {dups} duplicates");
    assert!(retried, "{case}: no produce met the outage");
    dups
}

#[test]
#[ignore]
fn two_brokers_down_past_the_delivery_deadline_then_resume() {
    common::needs_services!(skip);
    two_brokers_down("on", 50);
}

#[test]
#[ignore]
fn two_brokers_down_without_idempotence_keeps_the_readme_bound() {
    common::needs_services!(skip);
    two_brokers_down("off", 51);
}

/// Lines of random (incompressible) text of `len` bytes, as JSON events.
fn big_line(rng: &mut Rng, i: usize, len: usize) -> String {
    let body: String = (0..len).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
    format!(r#"{{"messageId":"big-{i}","body":"{body}"}}"#)
}

/// 2,000 small lines and 5 of 12 kB; a topic (or the cluster) that takes records up to
/// 4 KiB: the 5 are dead letters naming Kafka's error, every other line is delivered.
fn oversized(case: &str, job: Job) {
    let mut rng = Rng::new(7);
    let mut lines: Vec<String> =
        String::from_utf8(ndjson(60, &Shape::default(), 2_000)).unwrap().lines().map(str::to_owned).collect();
    for k in 0..5 {
        lines.insert(300 + k * 350, big_line(&mut rng, k, 12_000));
    }
    let data = lines.join("\n") + "\n";
    let path = job.write("a.ndjson", data.as_bytes());
    // Every line under its key but the five large ones, which are errors.
    let mut small = Expected::of(&job.id, &[(path.clone(), lines.clone())]);
    small.records.retain(|(_, l)| !l.contains("big-"));
    job.files(&[(path, data.len() as u64)]);
    job.config(&format!(r#"{{"connection_ids":["c1"],"batch_size":{BATCH}}}"#));
    let letters = job.path("letters");
    std::fs::create_dir_all(&letters).unwrap();
    let out = worker(&job, 0).env("DEAD_LETTER_PATH", &letters).output().unwrap();
    assert_success(&out);
    let r = row(&job.id, 0);
    assert_counts(&r, 2_000, 5, 0);
    check(case, 1, &small, &read_back(&job), 0);
    let mut written = String::new();
    for e in std::fs::read_dir(&letters).unwrap() {
        written.push_str(&read_to_string(&e.unwrap().path()));
    }
    let reasons: Vec<String> = written
        .lines()
        .map(|l| {
            let v: sonic_rs::Value = sonic_rs::from_str(l).unwrap();
            use sonic_rs::JsonValueTrait;
            let data = v.get("data").and_then(|d| d.as_str()).unwrap_or("");
            assert!(data.contains("big-"), "{case}: only the oversized lines are letters: {l:.200}");
            v.get("reason").and_then(|d| d.as_str()).unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(reasons.len(), 5, "{case}: one letter per oversized line");
    assert!(
        reasons.iter().all(|r| r.contains("MESSAGE_TOO_LARGE") || r.contains("RECORD_LIST_TOO_LARGE")),
        "{reasons:?}"
    );
}

#[test]
#[ignore]
fn records_over_max_message_bytes_are_dead_letters() {
    common::needs_services!(skip);
    oversized("topic max.message.bytes=4096", job(3, &["max.message.bytes=4096"]));
    // The broker's own limit, for topics without one of their own.
    admin(&["broker-config", "message.max.bytes=4096"]);
    std::thread::sleep(Duration::from_secs(1));
    let case = std::panic::catch_unwind(|| oversized("broker message.max.bytes=4096", job(3, &[])));
    admin(&["broker-config", "message.max.bytes="]);
    if let Err(e) = case {
        std::panic::resume_unwind(e);
    }
}

#[test]
#[ignore]
fn producer_quota_slows_the_run_without_duplicates() {
    common::needs_services!(skip);
    // Uncompressed, so that the quota's bytes are the lines' bytes.
    let run = |job: &Job| {
        let start = Instant::now();
        let out = worker(job, 0).env("KAFKA_COMPRESSION", "none").output().unwrap();
        (start.elapsed(), out)
    };
    let free = job(3, &[]);
    let expected = all_lines(&free, &dataset(&free, 70, 1_500));
    let bytes: u64 = expected.records.iter().map(|(_, l)| l.len() as u64).sum();
    let (unthrottled, out) = run(&free);
    completed(&free, &out, expected.len() as u64);

    // A quota holds per broker: the three partitions' leaders are on the three nodes, so the
    // run may send three times the rate (after a first burst: Kafka measures the rate over
    // at least ten one-second windows).
    const RATE: u64 = 100_000;
    admin(&["quota", "reprocessing-worker", &RATE.to_string()]);
    let limited = job(3, &[]);
    let expected = all_lines(&limited, &dataset(&limited, 70, 1_500));
    let (took, out) = run(&limited);
    admin(&["quota", "reprocessing-worker", "none"]);
    completed(&limited, &out, expected.len() as u64);
    let allowed = 3 * RATE;
    // Kafka measures a client's rate over at least (quota.window.num - 1) x
    // quota.window.size.seconds = 10 s, however young the client: what a run sends in its
    // first 10 s counts against 10 s of quota, a burst it may send unthrottled. Past that, a
    // client that waits as each answer's throttle_time_ms says goes at the quota.
    let burst = allowed * 10;
    let floor = Duration::from_secs_f64(bytes.saturating_sub(burst) as f64 / allowed as f64 * 0.6);
    assert!(bytes > 2 * burst, "enough bytes to be held past Kafka's first window: {bytes}");
    println!(
        "producer quota {RATE} B/s a broker: {bytes} bytes in {took:?}, {:.0} B/s against {allowed} allowed (without the quota {unthrottled:?})",
        bytes as f64 / took.as_secs_f64()
    );
    assert!(unthrottled < floor, "without the quota the run is faster than the quota allows: {unthrottled:?}");
    assert!(took >= floor, "the quota held the run to about {allowed} B/s: {took:?} < {floor:?}");
    check("producer quota", 1, &expected, &read_back(&limited), 0);
}

fn sasl(mechanism: &str, user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS", env("RW_AK_SASL_BOOTSTRAP")),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".into()),
        ("KAFKA_SASL", format!(r#"{{"mechanism":"{mechanism}","username":"{user}","password":"{password}"}}"#)),
    ]
}

#[test]
#[ignore]
fn topic_authorization_failed_exits_1_naming_the_topic() {
    common::needs_services!(skip);
    let mut job = job(3, &[]);
    admin(&["allow-only", &job.topic, &env("RW_AK_ADMIN_USER")]);
    let data = ndjson(95, &Shape::default(), 100);
    let path = job.write("a.ndjson", &data);
    job.files(&[(path, data.len() as u64)]);
    job.config(r#"{"connection_ids":["c1"]}"#);
    for (k, v) in sasl("PLAIN", &env("RW_AK_PLAIN_USER"), &env("RW_AK_PLAIN_PASSWORD")) {
        job.extra_env.push((k.to_string(), v));
    }
    let out = worker(&job, 0).output().unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "exit 1: {log}");
    assert!(log.contains(&job.topic), "the error names the topic: {log}");
    assert!(log.contains("AUTHORIZATION"), "the error names Kafka's error: {log}");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "failed", "{r:?}");
    assert!(read_back(&job).is_empty(), "nothing delivered");
}

/// A principal that may write the topic and not read it (the Go worker needs no more): the
/// worker runs, says once what it gives up (the read-back, the lost-answer check), and a
/// resume after kill -9 goes on at once, at least once, instead of waiting out the
/// read-back's timeout or stopping with "Kafka unavailable".
#[test]
#[ignore]
fn a_principal_without_read_runs_and_says_what_it_gives_up() {
    common::needs_services!(skip);
    let mut job = job(3, &[]);
    admin(&["write-only", &job.topic, &env("RW_AK_PLAIN_USER")]);
    let expected = all_lines(&job, &dataset(&job, 77, 4_000));
    for (k, v) in sasl("PLAIN", &env("RW_AK_PLAIN_USER"), &env("RW_AK_PLAIN_PASSWORD")) {
        job.extra_env.push((k.to_string(), v));
    }
    // A read-back would wait this long for partitions it may not read.
    job.extra_env.push(("RESUME_READBACK_TIMEOUT_SECS".into(), "100".into()));
    let mut child = worker(&job, 4_000).spawn().unwrap();
    let start = Instant::now();
    while success_count(&job) < 2_000 {
        assert!(start.elapsed() < Duration::from_secs(60), "the first run delivers");
        assert!(child.try_wait().unwrap().is_none(), "the first run is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    let first = stderr(&child.wait_with_output().unwrap());
    assert!(first.contains("may not read its topic"), "said at start-up: {first}");
    let started = Instant::now();
    let out = worker(&job, 0).output().unwrap();
    let took = started.elapsed();
    let log = stderr(&out);
    assert_success(&out);
    assert!(log.contains("may not read its topic") && log.contains("TOPIC_AUTHORIZATION_FAILED"), "{log}");
    assert!(log.contains(r#"fallback="off""#) || log.contains("fallback=off"), "the read-back is off: {log}");
    assert!(took < Duration::from_secs(60), "no read-back waited out: {took:?}");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_counts(&r, expected.len() as u64, 0, 0);
    // At least once: the resume sends again what the killed run delivered after its row, at
    // most the README's bound: the unsettled window plus the lines of one status interval.
    let bound = BOUND + 4_000;
    check("no READ permission, kill -9, resume", 2, &expected, &read_back(&job), bound);
}

#[test]
#[ignore]
fn kill_9_at_random_points_beside_a_transactional_producer() {
    common::needs_services!(skip);
    let job = job(3, &[]);
    let expected = all_lines(&job, &dataset(&job, 100, 10_000));
    let txn = admin_command(&["transactions", &job.topic, "25"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seed = fault_seed(0x5eed);
    let mut rng = Rng::new(seed);
    let mut kills = 0;
    // Every run's log, each checked on its own: a resume killed before it sent needs no
    // read-back, one that sent must have read back first.
    let mut logs = Vec::new();
    let mut last = None;
    for _ in 0..6 {
        let mut child = worker(&job, 8_000).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300 + rng.below(1_500)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        logs.push(stderr(&out));
        if out.status.success() {
            last = Some(out);
            break;
        }
    }
    let out = last.unwrap_or_else(|| {
        let out = worker(&job, 0).output().unwrap();
        logs.push(stderr(&out));
        out
    });
    let txn = txn.wait_with_output().unwrap();
    assert!(txn.status.success(), "the transactional producer: {}", String::from_utf8_lossy(&txn.stderr));
    completed(&job, &out, expected.len() as u64);
    println!("kill -9 beside transactions, seed {seed}: {kills} kills");
    assert!(kills >= 2, "the worker was killed mid-run at least twice: {kills}");
    assert_each_run_kept_the_promise(&logs, true, "kill -9 beside transactions");
    let all = read_back(&job);
    // The other producer's transactions: what it committed is there (read committed), what
    // it aborted is not; they interleaved with the worker's batches.
    let report: sonic_rs::Value = sonic_rs::from_slice(&txn.stdout).unwrap();
    use sonic_rs::JsonValueTrait;
    let committed = report.get("committed").and_then(|v| v.as_u64()).unwrap();
    let theirs: Vec<&Msg> = all.iter().filter(|m| m.value.contains("\"txn\"")).collect();
    assert!(committed > 0 && theirs.len() as u64 == committed, "committed {committed}, read {}", theirs.len());
    assert!(theirs.iter().all(|m| !m.value.contains("\"aborted\": true")), "no aborted record is read");
    check("kill -9 beside a transactional producer", kills + 1, &expected, &ours(all), 0);
}

/// Another producer writing the job's topic throughout, as live ingest does
/// (`kafka_admin.py live`: kcat -P, small records, acks=all); stopped when dropped.
struct Live(Option<Child>);

impl Live {
    fn start(topic: &str) -> Live {
        let child = admin_command(&["live", topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Live(Some(child))
    }

    /// From now on `n` records a second; 0: as fast as the cluster takes them.
    fn rate(&mut self, n: u64) {
        use std::io::Write;
        let stdin = self.0.as_mut().unwrap().stdin.as_mut().unwrap();
        writeln!(stdin, "rate {n}").unwrap();
        stdin.flush().unwrap();
    }

    /// Stops it (its standard input closes); returns how many records it wrote.
    fn stop(mut self) -> u64 {
        let mut child = self.0.take().unwrap();
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "the live producer failed");
        let last = out.stdout.split(|&b| b == b'\n').rev().find(|l| !l.is_empty()).unwrap_or_default().to_vec();
        let v: sonic_rs::Value = sonic_rs::from_slice(&last).unwrap();
        use sonic_rs::JsonValueTrait;
        v.get("produced").and_then(|n| n.as_u64()).unwrap()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Records in the topic (the partitions' ends).
fn records_in(topic: &str) -> u64 {
    admin(&["count", topic]).trim().parse().unwrap()
}

/// Waits until the topic holds `n` records.
fn wait_for_records(topic: &str, n: u64) {
    let start = Instant::now();
    loop {
        let now = records_in(topic);
        if now >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the live producer wrote {now} of {n} records in 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Live records a restart waits behind: a pod's back-off on a busy topic. The live producer
/// writes them as fast as the cluster takes them while the worker is down (minutes of a busy
/// topic, in seconds), and [`LIVE_RATE`] while a worker runs.
const LIVE_BEHIND: u64 = 2_000_000;
const LIVE_RATE: u64 = 5_000;

/// The back-off: the live producer at full speed until the topic holds [`LIVE_BEHIND`] more
/// records, then back to [`LIVE_RATE`].
fn back_off(live: &mut Live, topic: &str) {
    live.rate(0);
    wait_for_records(topic, records_in(topic) + LIVE_BEHIND);
    live.rate(LIVE_RATE);
}

/// Kills worker `index` of `job` once it has delivered `min_lines` and the topic holds lines
/// of it past its stored row, which only the read-back can find (see
/// [`common::kill_past_its_row`]; the live records make the last [`TAIL`] of each partition
/// the place to look: a second of the live producer and the worker is far less).
fn kill_behind_its_row(job: &Job, index: i32, child: &mut Child, min_lines: u64) {
    let tail = || admin(&["tail-keys", &job.topic, &TAIL.to_string()]).lines().map(str::to_owned).collect();
    common::kill_past_its_row(child, job, index, |r| num(r, "success_count") >= min_lines, tail);
}

/// How many of each partition's last records [`kill_behind_its_row`] reads.
const TAIL: u64 = 20_000;

/// Each resumed run read its topic back whole (none incomplete), behind the live records
/// that landed in its partitions (`share` of them: [`LIVE_BEHIND`] spread by key over all the
/// topic's partitions, so nine tenths of the even share at least), and found records of its
/// own there; returns the records read and found over all of them.
fn every_resume_read_behind_the_live_records(logs: &[String], share: f64) -> (u64, u64) {
    let least = (LIVE_BEHIND as f64 * share * 0.9) as u64;
    let (mut read, mut found) = (0, 0);
    for (i, log) in logs.iter().enumerate() {
        assert_duplicate_promise_kept(log, true, &format!("resumed run {i}"));
        let (records, ours, incomplete) = read_back_line(log).unwrap();
        assert_eq!(incomplete, 0, "resumed run {i}");
        assert!(
            records >= least,
            "resumed run {i} read back {records} records, not {least}: the live ones were not in its range"
        );
        assert!(ours > 0, "resumed run {i} found none of its records: the kill did not leave lines past the row");
        (read, found) = (read + records, found + ours);
    }
    (read, found)
}

#[test]
#[ignore]
fn live_topic_kill_9_three_times_each_restart_behind_two_million_live_records() {
    common::needs_services!(skip);
    let job = job(6, &[]);
    let files = dataset(&job, 300, 10_000);
    let expected = all_lines(&job, &files);
    let mut live = Live::start(&job.topic);
    live.rate(LIVE_RATE);
    let seed = fault_seed(0x11fe);
    let mut rng = Rng::new(seed);
    let mut resumed_logs = Vec::new();
    let mut at = 0;
    for kill in 0..3 {
        let mut child = worker(&job, 4_000).spawn().unwrap();
        at += 2_000 + rng.below(4_000);
        kill_behind_its_row(&job, 0, &mut child, at);
        let out = child.wait_with_output().unwrap();
        if kill > 0 {
            resumed_logs.push(stderr(&out));
        }
        // Kubernetes' back-off: the restart comes after two million live records.
        back_off(&mut live, &job.topic);
    }
    let out = worker(&job, 0).output().unwrap();
    resumed_logs.push(stderr(&out));
    let produced = live.stop();
    completed(&job, &out, expected.len() as u64);
    let (read, found) = every_resume_read_behind_the_live_records(&resumed_logs, 1.0);
    println!(
        "live topic, seed {seed}: {produced} live records; 3 resumes read {read} records back, {found} of them ours \
         ({:.0} read per one found)",
        read as f64 / found.max(1) as f64
    );
    let msgs = consume_header(&bootstrap(), &job.topic, "c1");
    check("live topic, 3 kills -9 behind 2M live records each", 4, &expected, &msgs, 0);
    let by_file: Vec<(&str, &[String])> = files.iter().map(|(p, l)| (p.as_str(), l.as_slice())).collect();
    assert_keys_are_line_identities(&job.id, &by_file, &msgs);
}

#[test]
#[ignore]
fn live_topic_four_workers_of_one_job_killed_and_each_reads_back_only_its_partitions() {
    common::needs_services!(skip);
    const WORKERS: u32 = 4;
    let job = job(8, &[]);
    let files = dataset(&job, 400, 30_000);
    let expected = all_lines(&job, &files);
    // The files of worker w are those at positions w, w + 4, …: three files, one worker each
    // for three of them; the fourth gets none and must still complete.
    let mut live = Live::start(&job.topic);
    live.rate(LIVE_RATE);
    let seed = fault_seed(0x4444);
    let mut rng = Rng::new(seed);
    let spawn = |w: u32| {
        let mut c = job.command(w, WORKERS);
        c.env("KAFKA_MAX_IN_FLIGHT", IN_FLIGHT.to_string())
            .env("MAX_EVENTS_PER_SEC", "1500")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let mut children: Vec<Option<Child>> = (0..WORKERS).map(|w| Some(spawn(w))).collect();
    // Each resumed run's log, and its worker's index.
    let mut resumed_logs = Vec::new();
    let mut resumed_workers = Vec::new();
    let mut resumed = vec![false; WORKERS as usize];
    let mut kills = 0;
    while kills < 3 {
        // One of the three workers with files that is still running, killed behind its row.
        let running: Vec<usize> =
            (0..3).filter(|&w| children[w].as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())).collect();
        assert!(!running.is_empty(), "every worker finished after {kills} kills: the files are too short");
        let w = running[rng.below(running.len() as u64) as usize];
        let mut child = children[w].take().unwrap();
        let at = try_row(&job.id, w as i32).map_or(0, |r| num(&r, "success_count")) + 500 + rng.below(1_500);
        kill_behind_its_row(&job, w as i32, &mut child, at);
        kills += 1;
        let out = child.wait_with_output().unwrap();
        if resumed[w] {
            resumed_logs.push(stderr(&out));
            resumed_workers.push(w as u32);
        }
        back_off(&mut live, &job.topic);
        children[w] = Some(spawn(w as u32));
        resumed[w] = true;
    }
    for (w, child) in children.into_iter().enumerate() {
        let out = child.unwrap().wait_with_output().unwrap();
        assert_success(&out);
        if resumed[w] {
            resumed_logs.push(stderr(&out));
            resumed_workers.push(w as u32);
        }
    }
    let produced = live.stop();
    // Each worker sends to, and reads back, 2 of the 8 partitions: w and w + 4. How far back
    // depends on its stored floor (a run killed again before its matching ended keeps the
    // earlier run's, so it reads two back-offs), but only its own partitions and never more
    // than they hold.
    let (read, found) = every_resume_read_behind_the_live_records(&resumed_logs, 0.25);
    for (i, (log, w)) in resumed_logs.iter().zip(&resumed_workers).enumerate() {
        let own = [w.to_string(), (w + WORKERS).to_string()];
        let held: u64 = admin(&["count", &job.topic, &own[0], &own[1]]).trim().parse().unwrap();
        let (records, ..) = read_back_line(log).unwrap();
        let partitions = read_back_field(log, "partitions").unwrap();
        assert_eq!(partitions, 2, "resumed run {i} (worker {w}) read back {partitions} partitions, not its own 2");
        assert!(
            records <= held,
            "resumed run {i} (worker {w}) read back {records}: its partitions {own:?} hold {held}"
        );
    }
    println!(
        "live topic, 4 workers, seed {seed}: {produced} live records; {} resumes read {read} back, {found} ours \
         ({:.0} read per one found)",
        resumed_logs.len(),
        read as f64 / found.max(1) as f64
    );
    let mut total = 0;
    for w in 0..WORKERS as i32 {
        let r = row(&job.id, w);
        assert_eq!(r["status"], "completed", "worker {w}: {r:?}");
        let lines: u64 = files.iter().skip(w as usize).step_by(WORKERS as usize).map(|(_, l)| l.len() as u64).sum();
        assert_counts(&r, lines, 0, 0);
        total += lines;
    }
    assert_eq!(total, expected.len() as u64);
    let msgs = consume_header(&bootstrap(), &job.topic, "c1");
    check("live topic, 4 workers, 3 kills -9 behind 2M live records each", 7, &expected, &msgs, 0);
    let by_file: Vec<(&str, &[String])> = files.iter().map(|(p, l)| (p.as_str(), l.as_slice())).collect();
    assert_keys_are_line_identities(&job.id, &by_file, &msgs);
    // Each worker wrote only to its own partitions (p mod 4 = its index).
    for (index, (path, lines)) in files.iter().enumerate() {
        let keys: std::collections::BTreeSet<String> =
            (1..=lines.len() as u64).map(|l| line_key(&job.id, index, path, l)).collect();
        let w = (index % WORKERS as usize) as i64;
        let wrong: Vec<i64> = msgs
            .iter()
            .filter(|m| keys.contains(m.key.as_deref().unwrap()))
            .map(|m| m.partition)
            .filter(|p| p % 4 != w)
            .collect();
        assert!(wrong.is_empty(), "worker {w}'s lines in partitions {wrong:?}");
    }
}
