//! Many files, most of them small, with several in flight at once (`FILES_IN_FLIGHT`), on
//! the real services: ~200 tiny S3 files in every compression (empty ones, and sizes listed
//! wrong in files.json) into tansu, read back byte for byte; kill -9 and SIGTERM while several
//! files are in flight, then a restart. Every case reads the topic back with kcat
//! (librdkafka), checks the row's resume point against the files (the low watermark over
//! files in files.json order: every line before it is settled and counted exactly once) and
//! the final counters.
//!
//! The kill and SIGTERM cases deliver to librdkafka's mock cluster (`tests/common/cluster.rs`)
//! with every response delayed: against tansu the worker's debug build is bound by parsing, so
//! the unsettled-lines window would rarely be full; with slow acknowledgements it is, and that
//! window (1,800 lines here) spans several files of ~500 lines.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::MockCluster;
use common::*;
use futures::StreamExt;

/// Records per batch in these jobs: small, so that many batches are in flight at a kill.
const BATCH: u64 = 100;
const IN_FLIGHT: u64 = 8;
const FILES_IN_FLIGHT: u64 = 8;
/// Delay of every response of the mock brokers in the kill and SIGTERM cases: each broker
/// answers its requests one after another, so 3 brokers deliver ~3 × 100 lines per 20 ms
/// (~15,000 lines/s), slower than the parser.
const RTT_MS: u32 = 20;

type Row = BTreeMap<String, String>;

/// The worker, tuned as the bound above assumes; its log goes to `log` in the job's directory
/// (a killed worker's pipe would never be drained).
fn worker(job: &Job, log: &str) -> Command {
    let mut c = job.command(0, 1);
    c.env("KAFKA_MAX_IN_FLIGHT", IN_FLIGHT.to_string())
        .env("FILES_IN_FLIGHT", FILES_IN_FLIGHT.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(job.path(log)).unwrap()));
    c
}

fn log(job: &Job, name: &str) -> String {
    std::fs::read_to_string(job.path(name)).unwrap_or_default()
}

/// Uploads every object with one client, a few at a time; returns their s3:// URLs in order.
fn put_all(bucket: &str, objects: Vec<(String, Vec<u8>)>) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s3 = reprocessing_worker::source::s3_client().await;
        let _ = s3.create_bucket().bucket(bucket).send().await;
        let s3 = &s3;
        futures::stream::iter(objects.iter())
            .map(|(key, bytes)| async move {
                s3.put_object().bucket(bucket).key(key).body(bytes.clone().into()).send().await.expect("put_object");
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
    });
    objects.iter().map(|(k, _)| format!("s3://{bucket}/{k}")).collect()
}

/// True once the worker created its tables (`try_row` panics on a missing table).
fn tables_exist() -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&env("DATABASE_URL"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let r = client.query_one("SELECT to_regclass('reprocessing_workers') IS NOT NULL", &[]).await.unwrap();
        r.get::<_, bool>(0)
    })
}

/// Polls the row until `ready` holds; panics if the worker ends first or nothing happens in 90 s.
fn wait_row(job: &Job, child: &mut Child, log_name: &str, what: &str, ready: impl Fn(&Row) -> bool) -> Row {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the worker ended ({status}) before {what}; make the run longer\n{}", log(job, log_name));
        }
        if let Some(r) = tables_exist().then(|| try_row(&job.id, 0)).flatten() {
            if ready(&r) {
                return r;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(90), "no progress to {what}\n{}", log(job, log_name));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lines_done(r: &Row) -> u64 {
    r.get("total_lines").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A mock cluster of 3 brokers with a topic of 3 partitions, one per broker, every response
/// delayed by `RTT_MS`; and a job delivering there.
fn slow_cluster() -> (MockCluster, Job) {
    let mut cluster = MockCluster::start(3);
    let job = cluster.job(3);
    pace(&mut cluster, RTT_MS);
    (cluster, job)
}

fn pace(cluster: &mut MockCluster, ms: u32) {
    for b in 1..=3 {
        cluster.cmd(&format!("rtt {b} {ms}"));
    }
}

/// Everything on the job's topic, read at full speed.
fn read_back(cluster: &mut MockCluster, job: &Job) -> Vec<Msg> {
    pace(cluster, 0);
    consume_from(&cluster.bootstrap, &job.topic)
}

/// Files of generated lines on local disk (every third one gzip; 300 to 700 lines each, so
/// that rows written every 1000 lines land inside files), and the job's config.
struct Dataset {
    paths: Vec<String>,
    lines: Vec<Vec<String>>,
}

impl Dataset {
    fn on_disk(job: &Job, files: usize, seed: usize) -> Dataset {
        let mut paths = Vec::new();
        let mut lines = Vec::new();
        for f in 0..files {
            let n = 300 + (f * 137) % 401;
            let ls: Vec<String> = (0..n)
                .map(|i| event(seed * 10_000_000 + f * 1000 + i, &format!("src{}", f % 7), "2024-05-01T12:00:00Z"))
                .collect();
            let text = ls.join("\n") + "\n";
            let (name, bytes) = if f % 3 == 1 {
                (format!("f{f:04}.ndjson.gz"), gzip(text.as_bytes()))
            } else {
                (format!("f{f:04}.ndjson"), text.into_bytes())
            };
            paths.push(job.write(&name, &bytes));
            lines.push(ls);
        }
        let listed: Vec<(String, u64)> =
            paths.iter().map(|p| (p.clone(), std::fs::metadata(p).unwrap().len())).collect();
        job.files(&listed);
        job.config(&format!(r#"{{"connection_ids":["c1"],"batch_size":{BATCH},"retry_attempts":4}}"#));
        Dataset { paths, lines }
    }

    /// Every line under its key, for job `job_id`.
    fn all(&self, job_id: &str) -> Expected {
        let files: Vec<(String, Vec<String>)> = self.paths.iter().cloned().zip(self.lines.iter().cloned()).collect();
        Expected::of(job_id, &files)
    }

    fn total(&self) -> u64 {
        self.lines.iter().map(|l| l.len() as u64).sum()
    }

    /// Asserts that `r`'s resume point is one the files can have: `current_file` is one of
    /// them, the files before it are the ones counted in `processed_files` (it may count the
    /// current file too once that file is whole), and the counters count exactly the lines
    /// before the point (lines are numbered from 1 in each file; no line is blank, skipped or
    /// an error). Returns the current file's position.
    fn assert_resume_point(&self, r: &Row) -> usize {
        let cur = r.get("current_file").unwrap_or_else(|| panic!("no current_file: {r:?}"));
        let idx = self.paths.iter().position(|p| p == cur).unwrap_or_else(|| panic!("{cur} is not a file: {r:?}"));
        let line = num(r, "current_line");
        let in_file = self.lines[idx].len() as u64;
        assert!(line <= in_file, "current_line {line} past the end of {cur} ({in_file} lines): {r:?}");
        let processed = num(r, "processed_files") as usize;
        assert!(
            processed == idx || (processed == idx + 1 && line == in_file),
            "processed_files {processed} disagrees with the resume point (file #{idx}, line {line} of {in_file}): {r:?}"
        );
        let before: u64 = self.lines[..idx].iter().map(|l| l.len() as u64).sum();
        assert_counts(r, before + line, 0, 0);
        idx
    }

    /// Runs the worker to its end and checks the final row: completed, exact.
    fn finish(&self, job: &Job, log_name: &str) -> Row {
        let status = worker(job, log_name).status().unwrap();
        assert!(status.success(), "worker exited with {status}\n{}", log(job, log_name));
        let r = row(&job.id, 0);
        assert_eq!(r["status"], "completed", "{r:?}");
        assert!(!r.contains_key("error"), "no file failed: {r:?}");
        assert_counts(&r, self.total(), 0, 0);
        assert_eq!(num(&r, "assigned_files"), self.paths.len() as u64);
        assert_eq!(num(&r, "processed_files"), self.paths.len() as u64);
        assert_eq!(r["current_file"], *self.paths.last().unwrap());
        assert_eq!(num(&r, "current_line"), self.lines.last().unwrap().len() as u64);
        assert_eq!(num(&r, "processed_bytes"), num(&r, "total_bytes"));
        r
    }
}

/// Every expected line read back exactly once, byte for byte (as multisets); on a mismatch,
/// says how many lines are missing and extra, with a few of each.
fn assert_same_lines(expected: &[String], msgs: &[Msg]) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for l in expected {
        *count.entry(l.as_str()).or_default() += 1;
    }
    for m in msgs {
        *count.entry(m.value.as_str()).or_default() -= 1;
    }
    let missing: Vec<&str> = count.iter().filter(|(_, &n)| n > 0).map(|(l, _)| *l).collect();
    let extra: Vec<&str> = count.iter().filter(|(_, &n)| n < 0).map(|(l, _)| *l).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} expected lines, {} read back: {} missing, e.g. {:?}; {} extra or doubled, e.g. {:?}",
        expected.len(),
        msgs.len(),
        missing.len(),
        &missing[..missing.len().min(3)],
        extra.len(),
        &extra[..extra.len().min(3)]
    );
    assert_eq!(values(msgs), sorted(expected.to_vec()), "every line exactly once, byte for byte");
}

/// No line lost, nothing foreign, duplicates within `bound`.
fn check(case: &str, runs: u32, expected: &Expected, msgs: &[Msg], bound: u64) -> u64 {
    let (lost, unexpected, dups) = tally(case, runs, expected, msgs, bound);
    assert_eq!(lost, 0, "{case}: lines lost");
    assert_eq!(unexpected, 0, "{case}: records never in the input, or under another line's key");
    assert!(dups <= bound, "{case}: {dups} duplicates > bound {bound}");
    dups
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Empty,
    GzipOfNothing,
    Plain,
    PlainNoFinalNewline,
    Gzip,
    Zstd,
}

#[test]
fn many_small_files_byte_for_byte() {
    common::needs_services!();
    let t0 = Instant::now();
    const FILES: usize = 200;
    let job = Job::new(3);
    job.config(&format!(r#"{{"connection_ids":["c1"],"batch_size":{BATCH}}}"#));
    let bucket = unique("small").to_lowercase();
    let kind = |k: usize| match k {
        0 | 198 => Kind::Empty,
        1 => Kind::GzipOfNothing,
        _ if k % 23 == 5 => Kind::Empty,
        _ => [Kind::Gzip, Kind::Plain, Kind::PlainNoFinalNewline, Kind::Zstd][k % 4],
    };
    let mut expected = Vec::new();
    let mut per_file = Vec::new();
    let mut objects = Vec::new();
    let mut kinds = Vec::new();
    let mut file_lines = Vec::new();
    for k in 0..FILES {
        let kd = kind(k);
        let n = match kd {
            Kind::Empty | Kind::GzipOfNothing => 0,
            _ => 1 + (k * 7) % 6,
        };
        let lines: Vec<String> =
            (0..n).map(|i| event(k * 100 + i, &format!("src{}", k % 5), "2024-06-01T12:00:00Z")).collect();
        let mut text = lines.join("\n");
        if kd != Kind::PlainNoFinalNewline && n > 0 {
            text.push('\n');
        }
        let (ext, bytes) = match kd {
            Kind::Empty => ("ndjson", Vec::new()),
            Kind::GzipOfNothing => ("ndjson.gz", gzip(b"")),
            Kind::Plain | Kind::PlainNoFinalNewline => ("ndjson", text.into_bytes()),
            Kind::Gzip => ("ndjson.gz", gzip(text.as_bytes())),
            Kind::Zstd => ("ndjson.zst", zstd::encode_all(text.as_bytes(), 3).unwrap()),
        };
        expected.extend(lines.iter().cloned());
        file_lines.push(lines);
        per_file.push(n as u64);
        kinds.push(kd);
        objects.push((format!("d{}/k{k:03}.{ext}", k % 4), bytes));
    }
    let real: Vec<u64> = objects.iter().map(|(_, b)| b.len() as u64).collect();
    // Sizes in files.json that are wrong: the worker must read what is there, not what is listed.
    let listed: Vec<u64> = (0..FILES)
        .map(|k| match k {
            0 => 1000,                 // an empty file listed as 1000 bytes
            10 | 12 => real[k] - 7,    // listed smaller than it is (plain without a final newline, gzip)
            20 | 21 => real[k] + 4096, // listed larger than it is (gzip, plain)
            30 | 31 => 0,              // listed as 0 (plain, zstd)
            _ => real[k],
        })
        .collect();
    assert!(per_file[10] > 0 && per_file[12] > 0 && per_file[20] > 0 && per_file[30] > 0 && per_file[31] > 0);
    assert_eq!(
        [kinds[10], kinds[12], kinds[20], kinds[21], kinds[30], kinds[31]],
        [Kind::PlainNoFinalNewline, Kind::Gzip, Kind::Gzip, Kind::Plain, Kind::PlainNoFinalNewline, Kind::Zstd]
    );
    let urls = put_all(&bucket, objects);
    let files: Vec<(String, u64)> = urls.iter().cloned().zip(listed.iter().copied()).collect();
    job.files(&files);
    let empty = per_file.iter().filter(|&&n| n == 0).count();
    let setup = t0.elapsed();

    let t1 = Instant::now();
    let out = job.command(0, 1).output().unwrap();
    let took = t1.elapsed();
    assert_success(&out);

    let msgs = consume(&job.topic);
    assert_same_lines(&expected, &msgs);
    for m in &msgs {
        assert_eq!(m.headers, vec![("connection_ids".to_string(), "c1".to_string())]);
    }
    let in_list: Vec<(&str, &[String])> =
        urls.iter().map(String::as_str).zip(file_lines.iter().map(Vec::as_slice)).collect();
    assert_keys_are_line_identities(&job.id, &in_list, &msgs);
    let partitions: std::collections::BTreeSet<i64> = msgs.iter().map(|m| m.partition).collect();
    assert_eq!(partitions.len(), 3, "batches spread over all partitions");

    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed", "{r:?}");
    assert!(!r.contains_key("error"), "no file failed: {r:?}");
    assert_counts(&r, expected.len() as u64, 0, 0);
    assert_eq!(num(&r, "assigned_files"), FILES as u64);
    assert_eq!(num(&r, "processed_files"), FILES as u64);
    assert_eq!(num(&r, "total_bytes"), listed.iter().sum::<u64>(), "total_bytes is the sum of the listed sizes");
    assert_eq!(r["current_file"], urls[FILES - 1]);
    assert_eq!(num(&r, "current_line"), per_file[FILES - 1]);
    assert_eq!(r["current_ts"], "2024-06-01T12:00:00Z");
    println!(
        "{FILES} files ({empty} empty), {} lines: setup {setup:.1?}, worker {took:.1?}, total {:.1?}",
        expected.len(),
        t0.elapsed()
    );
}

#[test]
fn kill_9_with_files_in_flight_loses_nothing() {
    common::needs_services!();
    let t0 = Instant::now();
    let (mut cluster, job) = slow_cluster();
    let data = Dataset::on_disk(&job, 120, 2);
    let setup = t0.elapsed();
    let total = data.total();
    // Two crashes, each a good way past where the previous run started.
    let mut kills = 0u64;
    let mut at = 0;
    for (k, step) in [12_000u64, 15_000].into_iter().enumerate() {
        let name = format!("run{k}.log");
        let mut child = worker(&job, &name).spawn().unwrap();
        let target = at + step;
        wait_row(&job, &mut child, &name, &format!("{target} lines"), |r| lines_done(r) >= target);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let r = row(&job.id, 0);
        assert_eq!(r["status"], "running", "a killed worker leaves its row running: {r:?}");
        assert!(num(&r, "total_lines") < total, "killed before the end: {r:?}");
        let idx = data.assert_resume_point(&r);
        println!("kill -9 #{kills}: row at file #{idx} line {} ({} lines)", r["current_line"], r["total_lines"]);
        at = num(&r, "total_lines");
    }
    data.finish(&job, "final.log");
    let runs = t0.elapsed() - setup;
    // Each restart reads back what the killed run delivered: not one line twice.
    let bound = 0;
    let msgs = read_back(&mut cluster, &job);
    let dups = check("kill -9 with files in flight", kills as u32 + 1, &data.all(&job.id), &msgs, bound);
    println!(
        "kill -9: {kills} kills, {dups} duplicates (bound {bound}); setup {setup:.1?}, runs {runs:.1?}, total {:.1?}",
        t0.elapsed()
    );
}

#[test]
fn sigterm_with_files_in_flight_resumes_exactly() {
    common::needs_services!();
    let t0 = Instant::now();
    let (mut cluster, job) = slow_cluster();
    let data = Dataset::on_disk(&job, 80, 3);
    let setup = t0.elapsed();
    let total = data.total();
    let mut child = worker(&job, "run0.log").spawn().unwrap();
    wait_row(&job, &mut child, "run0.log", "8000 lines", |r| lines_done(r) >= 8_000);
    let term = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let took = term.elapsed();
    // 143: Kubernetes must not count this index as done.
    assert_eq!(status.code(), Some(143), "{}", log(&job, "run0.log"));
    assert!(took < Duration::from_secs(12), "drained within the shutdown timeout: {took:?}");
    let r = row(&job.id, 0);
    common::assert_cancelled(&r);
    assert!(r.contains_key("completed_at"), "{r:?}");
    let stopped_at = num(&r, "total_lines");
    assert!(stopped_at >= 8_000 && stopped_at < total, "stopped mid-run: {r:?}");
    let idx = data.assert_resume_point(&r);
    println!("after SIGTERM ({took:.1?}): file #{idx} line {}, {stopped_at} lines, {r:?}", r["current_line"]);

    data.finish(&job, "run1.log");
    let runs = t0.elapsed() - setup;
    let msgs = read_back(&mut cluster, &job);
    let dups = check("SIGTERM with files in flight + resume", 2, &data.all(&job.id), &msgs, 0);
    println!("SIGTERM: {dups} duplicates (bound 0); setup {setup:.1?}, runs {runs:.1?}, total {:.1?}", t0.elapsed());
}
