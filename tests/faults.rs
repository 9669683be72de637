//! The fault suite, on the real services: kill -9 at random points, SIGTERM and resume,
//! broker kill and restart, PostgreSQL restart, S3 faults through a fault-injecting proxy.
//!
//! Each case checks with kcat (librdkafka) that the union of everything delivered contains
//! every expected line (zero lost), counts the duplicates, asserts them against the bound
//! the worker guarantees, and prints one `FAULT|…` line for `scripts/faults.sh`'s table.
//! The cases restart shared services, so they are `#[ignore]`d in the normal run and
//! `scripts/faults.sh` runs them one at a time:
//! `cargo test --test faults -- --ignored --test-threads 1 --nocapture`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fault_proxy::FaultProxy;
use common::*;
use reprocessing_worker::generate::{ndjson, Rng, Shape};

const BATCH: u64 = 500;
const IN_FLIGHT: u64 = 4;
/// The worker's duplicate bound per interruption: (2 × in-flight + 2) × batch_size.
const BOUND: u64 = (2 * IN_FLIGHT + 2) * BATCH;

/// Three files (plain, gzip, zstd) of `per_file` generated lines each.
fn dataset(job: &Job, per_file: u64) -> Vec<String> {
    let mut all = Vec::new();
    let mut files = Vec::new();
    for (k, name) in ["a.ndjson", "b.ndjson.gz", "c.ndjson.zst"].iter().enumerate() {
        let data = ndjson(100 + k as u64, &Shape::default(), per_file);
        all.extend(String::from_utf8(data.clone()).unwrap().lines().map(str::to_owned));
        let bytes = match k {
            0 => data,
            1 => gzip(&data),
            _ => zstd::encode_all(&data[..], 3).unwrap(),
        };
        files.push((job.write(name, &bytes), bytes.len() as u64));
    }
    job.files(&files);
    job.config(&format!(r#"{{"connection_ids":["c1"],"batch_size":{BATCH},"retry_attempts":5}}"#));
    all
}

fn tuned(job: &Job, index: u32) -> Command {
    let mut c = job.command(index, 1);
    c.env("KAFKA_MAX_IN_FLIGHT", IN_FLIGHT.to_string()).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Checks the union of deliveries; returns (lost, duplicates) after asserting them.
fn check(case: &str, runs: u32, expected: &[String], msgs: &[Msg], interruptions: u64) -> (u64, u64) {
    let bound = interruptions * BOUND;
    let (lost, unexpected, dups) = tally(case, runs, expected, msgs, bound);
    assert_eq!(lost, 0, "{case}: lines lost");
    assert_eq!(unexpected, 0, "{case}: values that were never in the input");
    assert!(dups <= bound, "{case}: {dups} duplicates > bound {bound}");
    (lost, dups)
}

fn wait_progress(job: &Job, child: &mut Child, min_lines: u64, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if try_row(&job.id, 0)
            .is_some_and(|r| r.get("success_count").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) >= min_lines)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn finish(job: &Job, expected_total: u64) {
    let out = tuned(job, 0).output().unwrap();
    assert_success(&out);
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    // Counters are exact across restarts: each line counted once.
    assert_counts(&r, expected_total, 0, 0);
    assert_eq!(num(&r, "processed_bytes"), num(&r, "total_bytes"));
    assert_eq!(num(&r, "processed_files"), 3);
}

#[test]
#[ignore]
fn kill_9_at_random_points_then_resume() {
    if common::skip_without_services("kill_9_at_random_points_then_resume") {
        return;
    }
    let job = Job::new(3);
    let expected = dataset(&job, 20_000);
    let seed = std::env::var("RW_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut rng = Rng::new(seed);
    let mut kills = 0;
    for _ in 0..8 {
        let mut child = tuned(&job, 0).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    finish(&job, expected.len() as u64);
    println!("kill -9 seed {seed}: {kills} kills");
    check("kill -9 at random points + restart", kills as u32 + 1, &expected, &consume(&job.topic), kills);
}

#[test]
#[ignore]
fn sigterm_records_cancelled_and_resumes() {
    if common::skip_without_services("sigterm_records_cancelled_and_resumes") {
        return;
    }
    let job = Job::new(3);
    let expected = dataset(&job, 20_000);
    let mut child = tuned(&job, 0).spawn().unwrap();
    assert!(wait_progress(&job, &mut child, 2_000, Duration::from_secs(60)), "worker made progress");
    let term = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let took = term.elapsed();
    // 143: Kubernetes must not count this index as done.
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(took < Duration::from_secs(12), "drained within the shutdown timeout: {took:?}");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "cancelled");
    assert!(r.contains_key("completed_at"));
    let at = num(&r, "current_line");
    println!("after SIGTERM: {r:?}");
    assert_eq!(num(&r, "total_lines"), num(&r, "success_count"));
    finish(&job, expected.len() as u64);
    println!("SIGTERM: stopped in {took:?} at line {at} of {}", r["current_file"]);
    check("SIGTERM + resume", 2, &expected, &consume(&job.topic), 1);
}

/// A second tansu whose data lives in S3 (moto), so it survives its own restart.
struct DurableBroker {
    child: Option<Child>,
    port: u16,
    bucket: String,
}

impl DurableBroker {
    fn start(port: u16) -> DurableBroker {
        let bucket = unique("tansu").to_lowercase();
        put_s3(&bucket, "init", Vec::new());
        let mut b = DurableBroker { child: None, port, bucket };
        b.up();
        b
    }
    fn up(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(env("RW_TANSU_BIN"))
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", &format!("s3://{}/", self.bucket)])
            .env("AWS_ENDPOINT", env("AWS_ENDPOINT_URL"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(15), "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DurableBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
#[ignore]
fn broker_killed_and_restarted_mid_run() {
    if common::skip_without_services("broker_killed_and_restarted_mid_run") {
        return;
    }
    let mut broker = DurableBroker::start(19094);
    let job = Job { extra_env: vec![("KAFKA_BOOTSTRAP_SERVERS".into(), broker.bootstrap())], ..Job::new(1) };
    let topic = unique("topic");
    create_topic_on(&broker.bootstrap(), &topic, 3);
    let job = Job { topic, ..job };
    let expected = dataset(&job, 20_000);
    // The outage (4 s) is shorter than the delivery deadline: requests are retried through it.
    let mut child = tuned(&job, 0).env("KAFKA_DELIVERY_TIMEOUT_SECS", "30").spawn().unwrap();
    assert!(wait_progress(&job, &mut child, 3_000, Duration::from_secs(60)), "worker made progress");
    broker.kill();
    std::thread::sleep(Duration::from_secs(4));
    broker.up();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_counts(&r, expected.len() as u64, 0, 0);
    // Retried per request (rskafka reconnects, then the pipeline's own retry), never per file.
    assert!(!stderr(&out).contains("retrying file"), "Kafka's outage never fails a file");
    check("broker kill -9 (4 s down) + restart", 1, &expected, &consume_from(&broker.bootstrap(), &job.topic), 1);
}

#[test]
#[ignore]
fn postgres_restart_mid_run() {
    if common::skip_without_services("postgres_restart_mid_run") {
        return;
    }
    let job = Job::new(3);
    let expected = dataset(&job, 20_000);
    let mut child = tuned(&job, 0).spawn().unwrap();
    assert!(wait_progress(&job, &mut child, 2_000, Duration::from_secs(60)), "worker made progress");
    let restart = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh"))
        .arg("restart-postgres")
        .output()
        .unwrap();
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_counts(&r, expected.len() as u64, 0, 0);
    check("PostgreSQL restart mid-run", 1, &expected, &consume(&job.topic), 0);
}

#[test]
#[ignore]
fn s3_faults_resume_from_the_exact_byte() {
    if common::skip_without_services("s3_faults_resume_from_the_exact_byte") {
        return;
    }
    let proxy = FaultProxy::start(&env("AWS_ENDPOINT_URL"));
    let job = Job::new(2);
    let bucket = unique("bkt").to_lowercase();
    let data = ndjson(7, &Shape::default(), 3_000);
    let other = ndjson(8, &Shape::default(), 3_000);
    let mut expected: Vec<String> = String::from_utf8(data.clone()).unwrap().lines().map(str::to_owned).collect();
    expected.extend(String::from_utf8(other.clone()).unwrap().lines().map(str::to_owned));
    let gz = gzip(&other);
    let files = [
        (put_s3(&bucket, "plain.ndjson", data.clone()), data.len() as u64),
        (put_s3(&bucket, "z.ndjson.gz", gz.clone()), gz.len() as u64),
    ];
    job.files(&files);
    job.config(r#"{"connection_ids":["c1"]}"#);
    let out = job.command(0, 1).env("AWS_ENDPOINT_URL", proxy.url()).env("READ_CHUNK_BYTES", "65536").output().unwrap();
    assert_success(&out);
    let (faults, resumed) = proxy.faults_and_resumes();
    let log = proxy.log();
    assert!(faults >= 4, "faults injected: {log:?}");
    assert!(resumed >= 1, "a cut read resumed at the exact byte: {log:?}");
    let want = expected.clone();
    let msgs = consume(&job.topic);
    assert_eq!(values(&msgs), sorted(want.clone()), "every line exactly once: no loss, no duplicate");
    println!("S3 proxy: {} requests, {faults} faults injected, {resumed} reads resumed at the exact byte", log.len());
    check("S3 500s and cut bodies via proxy", 1, &want, &msgs, 0);
}
