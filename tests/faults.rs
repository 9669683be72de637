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
    let log = proxy.log();
    let faults = log.iter().filter(|e| e.fault.is_some()).count();
    assert!(faults >= 4, "faults injected: {log:?}");
    // After a body cut short, the next request for that object starts where the cut was.
    let mut resumed = 0;
    for w in log.windows(2) {
        if let (Some(Fault::Cut(sent)), Some((a, _))) = (w[0].fault, w[0].range) {
            if w[1].path == w[0].path && w[1].range.map(|r| r.0) == Some(a + sent as u64) {
                resumed += 1;
            }
        }
    }
    assert!(resumed >= 1, "a cut read resumed at the exact byte: {log:?}");
    let want = expected.clone();
    let msgs = consume(&job.topic);
    assert_eq!(values(&msgs), sorted(want.clone()), "every line exactly once: no loss, no duplicate");
    println!("S3 proxy: {} requests, {faults} faults injected, {resumed} reads resumed at the exact byte", log.len());
    check("S3 500s and cut bodies via proxy", 1, &want, &msgs, 0);
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Error500,
    Cut(usize),
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    range: Option<(u64, u64)>,
    fault: Option<Fault>,
}

/// An HTTP proxy in front of the S3 server that, for ranged GETs, answers every 3rd with a
/// 500 and cuts every 4th body short after half of it (then closes the connection).
struct FaultProxy {
    addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<Entry>>>,
}

impl FaultProxy {
    fn start(upstream: &str) -> FaultProxy {
        use std::io::{BufRead, BufReader, Read, Write};
        let up = upstream.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Entry>::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            let mut gets = 0u64;
            for stream in listener.incoming() {
                let Ok(mut client) = stream else { continue };
                let mut r = BufReader::new(client.try_clone().unwrap());
                // One request per connection: read it, forward it, answer, close.
                let mut head = String::new();
                let mut line = String::new();
                let mut len = 0usize;
                let mut range = None;
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = lower.strip_prefix("range: bytes=") {
                        let (a, b) = v.trim().split_once('-').unwrap();
                        range = Some((a.parse().unwrap(), b.parse().unwrap()));
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if !lower.starts_with("connection:") {
                        head.push_str(&line);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let is_get = head.starts_with("GET ") && range.is_some();
                let mut fault = None;
                if is_get {
                    gets += 1;
                    if gets % 3 == 0 {
                        fault = Some(Fault::Error500);
                    }
                }
                if let Some(Fault::Error500) = fault {
                    let msg = "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
                    let _ = write!(client, "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}", msg.len());
                    l2.lock().unwrap().push(Entry { path, range, fault });
                    continue;
                }
                let mut upstream = std::net::TcpStream::connect(&up).unwrap();
                upstream.write_all(head.as_bytes()).unwrap();
                upstream.write_all(b"connection: close\r\n\r\n").unwrap();
                upstream.write_all(&body).unwrap();
                let mut resp = Vec::new();
                let _ = upstream.read_to_end(&mut resp);
                if is_get && gets % 4 == 0 {
                    if let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                        let body_len = resp.len() - (split + 4);
                        let sent = body_len / 2;
                        let _ = client.write_all(&resp[..split + 4 + sent]);
                        fault = Some(Fault::Cut(sent));
                        l2.lock().unwrap().push(Entry { path, range, fault });
                        continue; // dropping the socket cuts the body short
                    }
                }
                let _ = client.write_all(&resp);
                l2.lock().unwrap().push(Entry { path, range, fault });
            }
        });
        FaultProxy { addr, log }
    }
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn log(&self) -> Vec<Entry> {
        self.log.lock().unwrap().clone()
    }
}
