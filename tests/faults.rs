//! The fault suite, on the real services: kill -9 at random points, SIGTERM and resume,
//! broker kill and restart, PostgreSQL restart, S3 faults through a fault-injecting proxy.
//!
//! Each case checks with kcat (librdkafka) that the union of everything delivered contains
//! every expected line (zero lost), counts the duplicates, asserts them against the bound
//! the worker guarantees, and prints one `FAULT|…` line for `scripts/faults.sh`'s table.
//! They take time and one restarts a shared service, so they are `#[ignore]`d in the normal
//! run. Each case has its own job and topic, and the cases that stop a broker start one of
//! their own, so `scripts/faults.sh` runs four at a time; `postgres_restart_mid_run` restarts
//! the PostgreSQL every case writes to and runs alone:
//! `cargo test --test faults -- --ignored --skip postgres_restart_mid_run --test-threads 4`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fault_proxy::{Fault, FaultProxy, Plan};
use common::*;
use rw_core::generate::{ndjson, Rng, Shape};

const BATCH: u64 = 500;
const IN_FLIGHT: u64 = 4;
/// The worker's duplicate bound per interruption: (2 × in-flight + 2) × batch_size.
const BOUND: u64 = (2 * IN_FLIGHT + 2) * BATCH;

/// Three files (plain, gzip, zstd) of `per_file` generated lines each, and in each file every
/// 50th line once more right after itself: identical lines must each be delivered once, each
/// under its own key.
fn dataset(job: &Job, per_file: u64) -> Expected {
    let mut all = Expected::default();
    let mut files = Vec::new();
    for (k, name) in ["a.ndjson", "b.ndjson.gz", "c.ndjson.zst"].iter().enumerate() {
        let mut data = Vec::new();
        for (i, line) in
            ndjson(100 + k as u64, &Shape::default(), per_file).split_inclusive(|&b| b == b'\n').enumerate()
        {
            data.extend_from_slice(line);
            if i % 50 == 0 {
                data.extend_from_slice(line);
            }
        }
        let lines: Vec<String> = String::from_utf8(data.clone()).unwrap().lines().map(str::to_owned).collect();
        let bytes = match k {
            0 => data,
            1 => gzip(&data),
            _ => zstd::encode_all(&data[..], 3).unwrap(),
        };
        let path = job.write(name, &bytes);
        all.file(&job.id, k, &path, &lines);
        files.push((path, bytes.len() as u64));
    }
    job.files(&files);
    job.config(&format!(r#"{{"connection_ids":["c1"],"batch_size":{BATCH},"retry_attempts":6}}"#));
    all
}

/// Worker `index` of one.
fn tuned(job: &Job, index: u32) -> Command {
    tuned_of(job, index, 1)
}

/// Worker `index` of `total`, with the suite's in-flight bound, its log piped.
fn tuned_of(job: &Job, index: u32, total: u32) -> Command {
    let mut c = job.command(index, total);
    c.env("KAFKA_MAX_IN_FLIGHT", IN_FLIGHT.to_string()).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Checks the union of deliveries against `bound` duplicates; returns (lost, duplicates)
/// after asserting them.
fn check(case: &str, runs: u32, expected: &Expected, msgs: &[Msg], bound: u64) -> (u64, u64) {
    let (lost, unexpected, dups) = tally(case, runs, expected, msgs, bound);
    assert_eq!(lost, 0, "{case}: lines lost (by key and value)");
    assert_eq!(unexpected, 0, "{case}: records that were never in the input, or under another line's key");
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

/// The last run, to the end; returns its log.
fn finish(job: &Job, expected_total: u64) -> String {
    let out = tuned(job, 0).output().unwrap();
    assert_success(&out);
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    // Counters are exact across restarts: each line counted once.
    assert_counts(&r, expected_total, 0, 0);
    assert_eq!(num(&r, "processed_bytes"), num(&r, "total_bytes"));
    assert_eq!(num(&r, "processed_files"), 3);
    stderr(&out)
}

/// Runs the worker until it has delivered `min_lines`, then kills it with SIGKILL; returns
/// its log.
fn run_and_kill(job: &Job, command: &mut Command, min_lines: u64) -> String {
    let mut child = command.spawn().unwrap();
    assert!(wait_progress(job, &mut child, min_lines, Duration::from_secs(60)), "worker made progress");
    child.kill().unwrap();
    stderr(&child.wait_with_output().unwrap())
}

/// The `records=` field of the resumed run's read-back line.
fn records_read_back(log: &str) -> u64 {
    let line = log.lines().find(|l| l.contains("read back the topic")).unwrap_or_else(|| panic!("no read-back: {log}"));
    let field = line.split_whitespace().find_map(|w| w.strip_prefix("records=")).expect("records=");
    field.parse().unwrap()
}

#[test]
#[ignore]
fn kill_9_at_random_points_then_resume() {
    common::needs_services!();
    let job = Job::new(3);
    let expected = dataset(&job, 20_000);
    let seed = std::env::var("RW_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut rng = Rng::new(seed);
    // The first run is killed once it has delivered lines, so their read-back offsets are
    // stored (before anything is sent) and every later run resumes with a topic to read back,
    // however slow the start-ups are on a busy machine. The other seven kills land at random,
    // start-ups included.
    let mut logs = vec![run_and_kill(&job, &mut tuned(&job, 0), 500)];
    let mut kills = 1;
    for _ in 0..7 {
        let mut child = tuned(&job, 0).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
        if child.try_wait().unwrap().is_some() {
            logs.push(stderr(&child.wait_with_output().unwrap()));
            break;
        }
        child.kill().unwrap(); // SIGKILL
        logs.push(stderr(&child.wait_with_output().unwrap()));
        kills += 1;
    }
    logs.push(finish(&job, expected.len() as u64));
    println!("kill -9 seed {seed}: {kills} kills");
    assert!(kills >= 2, "the worker was killed mid-run at least twice: {kills}");
    assert_each_run_kept_the_promise(&logs, true, "kill -9 at random points");
    // Each restart reads back what the killed run delivered: not one line twice.
    check("kill -9 at random points + restart", kills as u32 + 1, &expected, &consume(&job.topic), 0);
}

/// Two workers' files (plain and zstd) in which about a third of the lines are exact copies of
/// a line a few thousand lines earlier, in the same file or the other worker's: a failover log
/// of an ingest that retried. Returns each worker's lines, repeats included, and every line
/// under its key.
fn repeating_dataset(job: &Job, per_file: u64, rng: &mut Rng) -> ([Vec<String>; 2], Expected) {
    let mut lines: Vec<String> = Vec::new();
    let mut per_worker: [Vec<String>; 2] = Default::default();
    let mut expected = Expected::default();
    let mut files = Vec::new();
    for (k, name) in ["r0.ndjson", "r1.ndjson.zst", "r2.ndjson", "r3.ndjson.zst"].iter().enumerate() {
        let mut data = Vec::new();
        for line in ndjson(200 + k as u64, &Shape::default(), per_file).split_inclusive(|&b| b == b'\n') {
            let line = String::from_utf8(line.to_vec()).unwrap();
            // A third are repeats of a line 1,000 to 5,000 lines back.
            let line = if lines.len() > 5_000 && rng.below(3) == 0 {
                lines[lines.len() - 1_000 - rng.below(4_000) as usize].clone()
            } else {
                line
            };
            data.extend_from_slice(line.as_bytes());
            lines.push(line);
        }
        let file_lines: Vec<String> = String::from_utf8(data.clone()).unwrap().lines().map(str::to_owned).collect();
        per_worker[k % 2].extend(file_lines.iter().cloned());
        let bytes = if k % 2 == 1 { zstd::encode_all(&data[..], 3).unwrap() } else { data };
        let path = job.write(name, &bytes);
        expected.file(&job.id, k, &path, &file_lines);
        files.push((path, bytes.len() as u64));
    }
    job.files(&files);
    job.config(&format!(r#"{{"connection_ids":["c1"],"batch_size":{BATCH},"retry_attempts":6}}"#));
    (per_worker, expected)
}

#[test]
#[ignore]
fn repeated_lines_two_workers_kill_9_at_random_points() {
    common::needs_services!();
    let job = Job::new(3);
    let seed = std::env::var("RW_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x2e9e);
    let mut rng = Rng::new(seed);
    let (per_worker, expected) = repeating_dataset(&job, 30_000, &mut rng);
    let command = |index: u32| tuned_of(&job, index, 2);
    let success = |index: i32| try_row(&job.id, index).map_or(0, |r| num(&r, "success_count"));
    // Both workers run side by side; each is killed several times, each kill after it has
    // delivered more since the last one (so every kill lands mid-run).
    let mut kills = [0u32; 2];
    for _ in 0..4 {
        let mut children: Vec<Child> = (0..2).map(|i| command(i).spawn().unwrap()).collect();
        for (i, child) in children.iter_mut().enumerate() {
            let before = success(i as i32);
            let start = Instant::now();
            let goal = before + 2_000 + rng.below(8_000);
            while success(i as i32) < goal
                && child.try_wait().unwrap().is_none()
                && start.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(rng.below(200)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills[i] += 1;
            }
            child.wait().unwrap();
        }
    }
    assert!(kills.iter().all(|&k| k >= 2), "each worker was killed mid-run at least twice: {kills:?}");
    for (i, lines) in per_worker.iter().enumerate() {
        let out = command(i as u32).output().unwrap();
        assert_success(&out);
        let r = row(&job.id, i as i32);
        assert_eq!(r["status"], "completed");
        // Exact across the kills: each line counted once, repeats included.
        assert_counts(&r, lines.len() as u64, 0, 0);
    }
    println!("repeated lines, two workers, seed {seed}: kills {kills:?}");
    let runs = kills.iter().sum::<u32>() + 2;
    check("repeated lines, 2 workers, kill -9 at random points", runs, &expected, &consume(&job.topic), 0);
}

#[test]
#[ignore]
fn sigterm_records_cancelled_and_resumes() {
    common::needs_services!();
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
    common::assert_cancelled(&r);
    assert!(r.contains_key("completed_at"));
    let at = num(&r, "current_line");
    println!("after SIGTERM: {r:?}");
    assert_eq!(num(&r, "total_lines"), num(&r, "success_count"));
    finish(&job, expected.len() as u64);
    println!("SIGTERM: stopped in {took:?} at line {at} of {}", r["current_file"]);
    check("SIGTERM + resume", 2, &expected, &consume(&job.topic), 0);
}

/// A second tansu whose data lives in S3 (moto), so it survives its own restart.
struct DurableBroker {
    child: Option<Child>,
    port: u16,
    bucket: String,
    /// Its object store's endpoint (moto's, or a proxy's in front of it).
    store: String,
}

impl DurableBroker {
    /// A broker of its own on a free port, so that cases can run side by side.
    fn start() -> DurableBroker {
        DurableBroker::start_on(&env("AWS_ENDPOINT_URL"))
    }
    /// One whose object store is reached at `store`.
    fn start_on(store: &str) -> DurableBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let bucket = unique("tansu").to_lowercase();
        put_s3(&bucket, "init", Vec::new());
        let mut b = DurableBroker { child: None, port, bucket, store: store.to_owned() };
        b.up();
        b
    }
    fn up(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(env("RW_TANSU_BIN"))
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", &format!("s3://{}/", self.bucket)])
            .env("AWS_ENDPOINT", &self.store)
            .env("AWS_ENDPOINT_URL", &self.store)
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

/// A job on its own topic of `broker`, and its expected lines.
fn durable_job(broker: &DurableBroker) -> (Job, Expected) {
    let job = Job { extra_env: vec![("KAFKA_BOOTSTRAP_SERVERS".into(), broker.bootstrap())], ..Job::new(1) };
    let topic = unique("topic");
    create_topic_on(&broker.bootstrap(), &topic, 3);
    let job = Job { topic, ..job };
    let expected = dataset(&job, 20_000);
    (job, expected)
}

/// Once the worker made progress, the broker is killed and restarted 4 s later, while the
/// worker runs throughout (the fault lands mid-run, not after it).
fn outage(job: &Job, child: &mut Child, broker: &mut DurableBroker) {
    assert!(wait_progress(job, child, 3_000, Duration::from_secs(60)), "worker made progress");
    broker.kill();
    std::thread::sleep(Duration::from_secs(4));
    assert!(child.try_wait().unwrap().is_none(), "the worker was running when the broker died");
    broker.up();
}

/// A run that lasts long enough for a fault to land mid-run: [`tuned`] at [`FAULT_RATE`]
/// lines a second.
fn paced(job: &Job) -> Command {
    let mut c = tuned(job, 0);
    c.env("MAX_EVENTS_PER_SEC", FAULT_RATE.to_string());
    c
}

/// The rate of [`paced`]: the 60,000 lines of [`durable_job`] take 12 s.
const FAULT_RATE: u64 = 5_000;

/// The log line of a produce request that failed and is sent again (the fault reached Kafka's
/// client, not only the test).
const PRODUCE_RETRIED: &str = "produce failed; retrying";

impl Drop for DurableBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
#[ignore]
fn broker_killed_and_restarted_mid_run() {
    common::needs_services!();
    let mut broker = DurableBroker::start();
    let (job, expected) = durable_job(&broker);
    // The outage (4 s) is shorter than the delivery deadline: requests are retried through it.
    let mut child = paced(&job).env("KAFKA_DELIVERY_TIMEOUT_SECS", "30").spawn().unwrap();
    outage(&job, &mut child, &mut broker);
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    assert!(stderr(&out).contains(PRODUCE_RETRIED), "the outage failed a produce: {}", stderr(&out));
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_counts(&r, expected.len() as u64, 0, 0);
    // Retried per request (rskafka reconnects, then the pipeline's own retry), never per file.
    assert!(!stderr(&out).contains("retrying file"), "Kafka's outage never fails a file");
    assert_duplicate_promise_kept(&stderr(&out), false, "the run");
    check("broker kill -9 (4 s down) + restart", 1, &expected, &consume_from(&broker.bootstrap(), &job.topic), 0);
}

/// tansu moves an idempotent producer's sequence on (a write of its metadata) before it
/// stores the batch (a write of its own). When the second write fails, here because the
/// object store refuses the batch's PUT (a kill between the two does the same), the batch is
/// lost, and its resend is answered `DUPLICATE_SEQUENCE_NUMBER`. The worker believes that
/// answer only once it finds the batch; it does not, and sends it under a new producer id.
#[test]
#[ignore]
fn a_batch_the_broker_lost_past_its_sequence_goes_out_under_a_new_producer_id() {
    common::needs_services!();
    let refuse = Plan::RefusePuts { containing: "/records/".into(), times: 1 };
    let proxy = FaultProxy::with(&env("AWS_ENDPOINT_URL"), refuse);
    let broker = DurableBroker::start_on(&proxy.url());
    let (job, expected) = durable_job(&broker);
    let out = tuned(&job, 0).env("KAFKA_IDEMPOTENCE", "on").output().unwrap();
    assert_success(&out);
    let refused = proxy.log().iter().filter(|e| matches!(e.fault, Some(Fault::Refused))).count();
    assert_eq!(refused, 1, "the broker's write of a batch was refused");
    let case = "a batch the broker lost past its sequence";
    check(case, 1, &expected, &consume_from(&broker.bootstrap(), &job.topic), 0);
    assert_counts(&row(&job.id, 0), expected.len() as u64, 0, 0);
    let log = stderr(&out);
    assert!(log.contains("DUPLICATE_SEQUENCE_NUMBER"), "the resend was called a duplicate: {log}");
    assert!(log.contains("sequences ended"), "the batch went out under a new producer id: {log}");
}

#[test]
#[ignore]
fn postgres_restart_mid_run() {
    common::needs_services!();
    let job = Job::new(3);
    let expected = dataset(&job, 20_000);
    let mut child = paced(&job).spawn().unwrap();
    assert!(wait_progress(&job, &mut child, 2_000, Duration::from_secs(60)), "worker made progress");
    let restart = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh"))
        .arg("restart-postgres")
        .output()
        .unwrap();
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
    let during = try_row(&job.id, 0).map(|r| num(&r, "success_count"));
    assert!(child.try_wait().unwrap().is_none(), "the worker was running when PostgreSQL came back");
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    // The restart cut the worker's connection: the worker reconnected (and a write that came
    // while the database was down failed, and the next one retried it).
    let log = stderr(&out);
    assert!(log.contains("the database connection was lost; reconnected"), "the restart cut the connection: {log}");
    assert!(during.is_some_and(|n| n < expected.len() as u64), "the worker was sending through the restart");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_counts(&r, expected.len() as u64, 0, 0);
    check("PostgreSQL restart mid-run", 1, &expected, &consume(&job.topic), 0);
}

#[test]
#[ignore]
fn s3_faults_resume_from_the_exact_byte() {
    common::needs_services!();
    let proxy = FaultProxy::start(&env("AWS_ENDPOINT_URL"));
    let job = Job::new(2);
    let bucket = unique("bkt").to_lowercase();
    let data = ndjson(7, &Shape::default(), 3_000);
    let other = ndjson(8, &Shape::default(), 3_000);
    let lines_of = |d: &[u8]| String::from_utf8(d.to_vec()).unwrap().lines().map(str::to_owned).collect::<Vec<_>>();
    let gz = gzip(&other);
    let files = [
        (put_s3(&bucket, "plain.ndjson", data.clone()), data.len() as u64),
        (put_s3(&bucket, "z.ndjson.gz", gz.clone()), gz.len() as u64),
    ];
    let expected =
        Expected::of(&job.id, &[(files[0].0.clone(), lines_of(&data)), (files[1].0.clone(), lines_of(&other))]);
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
    assert_eq!(values(&msgs), want.values(), "every line exactly once: no loss, no duplicate");
    println!("S3 proxy: {} requests, {faults} faults injected, {resumed} reads resumed at the exact byte", log.len());
    check("S3 500s and cut bodies via proxy", 1, &want, &msgs, 0);
}

#[test]
#[ignore]
fn broker_restarted_then_worker_killed() {
    common::needs_services!();
    let mut broker = DurableBroker::start();
    let (job, expected) = durable_job(&broker);
    let mut child = paced(&job).env("KAFKA_DELIVERY_TIMEOUT_SECS", "30").spawn().unwrap();
    outage(&job, &mut child, &mut broker);
    // Through the outage, then killed with lines on the restarted broker past its row.
    let past =
        common::kill_past_its_row(&mut child, &job, 0, |r| num(r, "success_count") >= 12_000, || topic_keys(&job));
    let first = child.wait_with_output().unwrap();
    assert!(stderr(&first).contains(PRODUCE_RETRIED), "the outage failed a produce: {}", stderr(&first));
    let landed = stderr(&first).matches("had been written before its answer was lost").count();
    let log = finish(&job, expected.len() as u64);
    let (read, ours, _) = read_back_line(&log).expect("the resume read its topic back");
    println!(
        "broker restart then kill: {landed} batches found written after a lost answer; {past} lines past the row \
         at the kill, {read} records read back, {ours} of them ours"
    );
    assert!(ours >= past as u64, "the resume found the {past} lines past its row ({ours} of its records read back)");
    // 0 duplicates is promised when the resume read its topic back to the end, and every
    // batch whose answer was lost in the outage was looked for rather than sent again unseen.
    assert_duplicate_promise_kept(&stderr(&first), false, "the first run");
    assert_duplicate_promise_kept(&log, true, "the resume");
    check("broker restart, then kill -9", 2, &expected, &consume_from(&broker.bootstrap(), &job.topic), 0);
}

#[test]
#[ignore]
fn live_traffic_in_the_crash_window_is_read_past() {
    common::needs_services!();
    let job = Job::new(3);
    let mut expected = dataset(&job, 20_000);
    run_and_kill(&job, &mut tuned(&job, 0), 5_000);
    // Another producer writes to the topic while the worker is down: records of its own,
    // and the bytes of one of our lines not sent yet under another key.
    let ours = expected.records.last().unwrap().1.clone();
    let mut live: Vec<(String, String)> =
        (0..200).map(|i| (format!("live-{i}"), format!(r#"{{"live":{i}}}"#))).collect();
    live.push(("live-copy".into(), ours.clone()));
    produce_as_another(&env("KAFKA_BOOTSTRAP_SERVERS"), &job.topic, "c1", &live);
    let log = finish(&job, expected.len() as u64);
    let read = records_read_back(&log);
    assert!(read >= live.len() as u64, "the live records were in the read-back range: {read}");
    for (key, value) in &live {
        expected.foreign(key, value);
    }
    // Our line twice (ours and the copy), every other line once, the live records once.
    check("live traffic while down, then resume", 2, &expected, &consume(&job.topic), 0);
}

/// The status interval the fallback case runs with (the default), and its rate limit.
const INTERVAL_MS: u64 = 1_000;
const FALLBACK_RATE: u64 = 10_000;

/// The README's bound for a resume that cannot read its topic back, per crash: the
/// unsettled lines ((2 × in-flight + 2) × batch_size), plus the lines delivered since the
/// last row written, which with a healthy database is at most one status interval and one
/// write of lines: here the rate limit over the interval, with 100 ms for the write, plus the
/// one batch the rate limit lets through at once.
const FALLBACK_BOUND: u64 = BOUND + FALLBACK_RATE * (INTERVAL_MS + 100) / 1_000 + BATCH;

#[test]
#[ignore]
fn read_back_off_killed_just_before_a_status_write_stays_within_the_fallback_bound() {
    common::needs_services!();
    let job = Job::new(3);
    // Long enough (12 s a run at the rate) that a run is never over before its kill's moment.
    let expected = dataset(&job, 40_000);
    let worker = || {
        let mut c = tuned(&job, 0);
        c.env("RESUME_READBACK_MAX_RECORDS", "0")
            .env("MAX_EVENTS_PER_SEC", FALLBACK_RATE.to_string())
            .env("STATUS_MIN_INTERVAL_MS", INTERVAL_MS.to_string());
        c
    };
    let mut logs = Vec::new();
    let mut at = 0;
    for _ in 0..3 {
        let mut child = worker().spawn().unwrap();
        at += 8_000;
        // Near the worst moment: the row is half an interval old or more, so every line
        // delivered since it was written is past the resume point; killed once such lines
        // are seen in the topic (a resume without its read-back sends them again).
        let age = |r: &std::collections::BTreeMap<String, String>| r["age_ms"].parse::<u64>().unwrap_or(0);
        let ready = |r: &std::collections::BTreeMap<String, String>| {
            num(r, "success_count") >= at && (INTERVAL_MS / 2..INTERVAL_MS).contains(&age(r))
        };
        common::kill_past_its_row(&mut child, &job, 0, ready, || topic_keys(&job));
        logs.push(stderr(&child.wait_with_output().unwrap()));
    }
    let out = worker().output().unwrap();
    assert_success(&out);
    logs.push(stderr(&out));
    assert_counts(&row(&job.id, 0), expected.len() as u64, 0, 0);
    for (i, log) in logs.iter().enumerate().skip(1) {
        assert!(
            log.lines().any(|l| l.contains("read-back incomplete") && l.contains("fallback=\"off\"")),
            "resumed run {i} says it sends the unsettled lines again: {log}"
        );
    }
    let kills = 3;
    let bound = kills * FALLBACK_BOUND;
    let (_, dups) = check(
        "read-back off, 3 kills late in a status interval",
        kills as u32 + 1,
        &expected,
        &consume(&job.topic),
        bound,
    );
    println!("read-back off: {kills} kills late in a status interval, {dups} duplicates (bound {bound}; without the status lag {})", kills * BOUND);
    // Lines past the stored row were in the topic at each kill (kill_past_its_row saw them),
    // and a resume without its read-back sends them again.
    assert!(dups >= kills, "{dups} lines sent again: each kill left lines past its row");
}
