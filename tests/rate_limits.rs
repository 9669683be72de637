//! Rate limits on the real services: `MAX_EVENTS_PER_SEC`, `MAX_BYTES_PER_SEC`, both, a job
//! limit shared by four workers, and a resume with a new limit. The worker stamps each batch
//! when it sends it, so the topic's record timestamps show the rate it was sent at; every
//! one-second window of them must hold at most the limit and one batch, the README's promise
//! (a worker never sends more than one batch ahead of the rate). The timestamps come from the
//! worker under test, so each run is also timed on this side: a run cannot end sooner than its
//! lines take at the limit (less the one batch a bucket lets go at once).

mod common;

use std::time::{Duration, Instant};

use common::{assert_success, consume, event, num, row, Job};

/// One worker's limit in the tests of one worker, in lines a second. It leaves the worker
/// ample headroom: the tests run the debug build, which on a quiet machine sends about
/// 20,000 of these lines a second and no more (at 20,000/s the tests measured the build's
/// speed, not the limit, and failed when the machine was busy).
const LIMIT: u64 = 5_000;
/// Lines a batch (`batch_size`): what a bucket lets go at once.
const BATCH: u64 = 250;
/// Lines of one run: five seconds at [`LIMIT`].
const LINES: usize = 25_000;

/// The tests measure time: one at a time, so that they do not slow each other down.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// `n` distinct lines, starting at `from`.
fn lines(from: usize, n: usize) -> String {
    (from..from + n).map(|i| event(i, "s", "2024-01-01T00:00:00Z") + "\n").collect()
}

/// Bytes of one line of [`lines`] (they differ by a digit or two).
fn line_bytes() -> u64 {
    event(50_000, "s", "2024-01-01T00:00:00Z").len() as u64
}

/// The most that any one-second window of the timestamps holds, weighed by `weight`.
fn busiest_second(mut points: Vec<(i64, u64)>) -> u64 {
    points.sort();
    let (mut best, mut sum, mut lo) = (0, 0, 0);
    for hi in 0..points.len() {
        sum += points[hi].1;
        while points[hi].0 - points[lo].0 >= 1000 {
            sum -= points[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

/// The number in a line's `messageId` (`msg-<n>`, see [`event`]).
fn message_number(value: &str) -> usize {
    let rest = value.split(r#""messageId":"msg-"#).nth(1).expect("a messageId");
    rest[..rest.find('"').expect("its end")].parse().expect("a number")
}

/// The batches as the timestamps show them (one stamp per batch): `ms after the first: lines`,
/// with the gaps longer than twice the median marked, for a failure's message.
fn schedule(msgs: &[common::Msg]) -> String {
    let mut by_ts = std::collections::BTreeMap::<i64, u64>::new();
    for m in msgs {
        *by_ts.entry(m.ts).or_default() += 1;
    }
    let first = by_ts.keys().next().copied().unwrap_or(0);
    let stamps: Vec<(i64, u64)> = by_ts.into_iter().collect();
    let mut gaps: Vec<i64> = stamps.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort();
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    let long: Vec<String> = stamps
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > 2 * median.max(1))
        .map(|w| format!("{} ms at +{} ms", w[1].0 - w[0].0, w[0].0 - first))
        .collect();
    format!("{} stamps, median gap {median} ms, {} long gaps: {}", stamps.len(), long.len(), long.join(", "))
}

/// First to last record timestamp, in seconds.
fn span(msgs: &[common::Msg]) -> f64 {
    let (lo, hi) = msgs.iter().fold((i64::MAX, i64::MIN), |(lo, hi), m| (lo.min(m.ts), hi.max(m.ts)));
    (hi - lo) as f64 / 1000.0
}

/// The wall clock's check: `took` is at least what `amount` (lines or bytes) takes at `limit` a
/// second, less one batch of `burst` that may go at once, and (for the runs that are not
/// held back by anything else) not more than twice that plus 5 s of start-up.
fn assert_wall_time(took: Duration, amount: u64, burst: u64, limit: u64) {
    let least = amount.saturating_sub(burst) as f64 / limit as f64;
    let secs = took.as_secs_f64();
    assert!(secs >= least, "the run took {secs:.2} s of wall time; at {limit}/s it needs at least {least:.2} s");
    assert!(secs <= 2.0 * least + 5.0, "the run took {secs:.2} s of wall time for {least:.2} s at the limit");
}

/// One worker over one file of `n` lines with `env` set; returns the messages and the wall time.
fn run_one(n: usize, env: &[(&str, String)]) -> (Job, Vec<common::Msg>, Duration) {
    let job = Job::new(3);
    job.config(&format!(r#"{{"connection_ids":["c"],"batch_size":{BATCH}}}"#));
    let body = lines(0, n);
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    let mut cmd = job.command(0, 1);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    assert_success(&out);
    assert!(common::stderr(&out).contains("rate_limit="), "the start-up line states the limits");
    let msgs = consume(&job.topic);
    assert_eq!(msgs.len(), n, "every line once");
    (job, msgs, took)
}

#[test]
fn max_events_per_sec_holds_over_the_run_and_in_every_second() {
    common::needs_services!();
    let _serial = serial();
    let (job, msgs, took) = run_one(LINES, &[("MAX_EVENTS_PER_SEC", LIMIT.to_string())]);
    let s = span(&msgs);
    println!("{LINES} lines at {LIMIT}/s: timestamps span {s:.2} s, the run took {took:?}");
    assert_wall_time(took, LINES as u64, BATCH, LIMIT);
    assert!(
        (4.5..=5.5).contains(&s),
        "{LINES} lines at {LIMIT}/s took {s:.2} s of timestamps (5 s ± 10%): {}",
        schedule(&msgs)
    );
    let busiest = busiest_second(msgs.iter().map(|m| (m.ts, 1)).collect());
    assert!(busiest <= LIMIT + BATCH, "{busiest} lines in one second (limit {LIMIT}, one batch {BATCH} ahead)");
    assert_eq!(num(&row(&job.id, 0), "success_count"), LINES as u64);
}

#[test]
fn max_bytes_per_sec_holds_in_bytes() {
    common::needs_services!();
    let _serial = serial();
    let per_line = line_bytes();
    let limit = LIMIT * per_line;
    let (_, msgs, took) = run_one(LINES, &[("MAX_BYTES_PER_SEC", limit.to_string())]);
    assert_wall_time(took, msgs.iter().map(|m| m.value.len() as u64).sum(), BATCH * (per_line + 1), limit);
    let s = span(&msgs);
    assert!((4.5..=5.5).contains(&s), "{limit} bytes/s took {s:.2} s of timestamps (5 s ± 10%): {}", schedule(&msgs));
    let busiest = busiest_second(msgs.iter().map(|m| (m.ts, m.value.len() as u64)).collect());
    // One batch ahead: its lines differ from `per_line` by a digit or two.
    let batch_bytes = BATCH * (per_line + 2);
    assert!(busiest <= limit + batch_bytes, "{busiest} bytes in one second (limit {limit}, one batch {batch_bytes})");
}

#[test]
fn with_both_limits_the_lower_one_holds() {
    common::needs_services!();
    let _serial = serial();
    let per_line = line_bytes();
    // The bytes limit allows half as many lines a second: it is the lower one.
    let env = [("MAX_EVENTS_PER_SEC", LIMIT.to_string()), ("MAX_BYTES_PER_SEC", (LIMIT / 2 * per_line).to_string())];
    let n = LINES / 2;
    let (_, msgs, took) = run_one(n, &env);
    assert_wall_time(took, n as u64, BATCH, LIMIT / 2);
    let s = span(&msgs);
    let half = LIMIT / 2;
    assert!(
        (4.5..=5.5).contains(&s),
        "the bytes limit ({half} lines/s) must hold: {s:.2} s for {n} lines: {}",
        schedule(&msgs)
    );
    let busiest = busiest_second(msgs.iter().map(|m| (m.ts, 1)).collect());
    assert!(busiest <= LIMIT / 2 + BATCH, "{busiest} lines in one second (limit {half}, one batch {BATCH} ahead)");
}

#[test]
fn a_job_limit_is_shared_by_the_workers_that_run_at_once() {
    common::needs_services!();
    let _serial = serial();
    // The job's limit, shared by four workers at once: 2,500 lines a second each, over
    // 12,500 lines each (five seconds).
    const JOB_LIMIT: u64 = 2 * LIMIT;
    const EACH: usize = LINES / 2;
    let job = Job::new(3);
    job.config(&format!(
        r#"{{"connection_ids":["c"],"batch_size":{BATCH},"max_events_per_sec":{JOB_LIMIT},"parallel_workers":4}}"#
    ));
    let files: Vec<(String, u64)> = (0..4)
        .map(|w| {
            let body = lines(w * EACH, EACH);
            (job.write(&format!("f{w}.ndjson"), body.as_bytes()), body.len() as u64)
        })
        .collect();
    job.files(&files);
    let started = Instant::now();
    let children: Vec<_> =
        (0..4).map(|w| job.command(w, 4).stdout(std::process::Stdio::null()).spawn().unwrap()).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_success(&out);
    }
    // Four buckets, each letting one batch go at once.
    assert_wall_time(started.elapsed(), 4 * EACH as u64, 4 * BATCH, JOB_LIMIT);
    let msgs = consume(&job.topic);
    assert_eq!(msgs.len(), 4 * EACH);
    // Each worker's share holds over its own lines (the lines of worker w are msg-(w·EACH)
    // onwards). Measured per worker: the four start a few tenths of a second apart, which
    // would stretch the job's span without changing any rate.
    for w in 0..4 {
        let own: Vec<common::Msg> = msgs.iter().filter(|m| message_number(&m.value) / EACH == w).cloned().collect();
        assert_eq!(own.len(), EACH, "worker {w}'s lines");
        let s = span(&own);
        assert!(
            (4.5..=5.5).contains(&s),
            "worker {w}'s share of the job's {JOB_LIMIT}/s: {s:.2} s for {EACH} lines: {}",
            schedule(&own)
        );
    }
    let busiest = busiest_second(msgs.iter().map(|m| (m.ts, 1)).collect());
    // Each of the four workers one batch ahead of its share at most.
    assert!(
        busiest <= JOB_LIMIT + 4 * BATCH,
        "{busiest} lines in one second for the whole job (limit {JOB_LIMIT}, four workers a batch ahead each)"
    );
    // `status` shows the job's rate next to its limit.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_reprocessing-worker"))
        .args(["status", "--job", &job.id])
        .env("DATABASE_URL", common::env("DATABASE_URL"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&format!("(limit {JOB_LIMIT} lines/s)")), "{text}");
}

#[test]
fn a_resume_with_a_new_limit_loses_and_duplicates_nothing() {
    common::needs_services!();
    let _serial = serial();
    let job = Job::new(3);
    job.config(r#"{"connection_ids":["c"],"batch_size":500}"#);
    let body = lines(0, 60_000);
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    // Slow at first; SIGTERM part-way, as `kubectl delete pod` would.
    let child = job.command(0, 1).env("MAX_EVENTS_PER_SEC", "10000").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2_500));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "cancelled by SIGTERM");
    let r = row(&job.id, 0);
    common::assert_cancelled(&r);
    let done = num(&r, "success_count");
    assert!(done > 0 && done < 60_000, "stopped part-way: {done}");
    // The new limit is four times higher; the restart resumes from the row.
    let out = job.command(0, 1).env("MAX_EVENTS_PER_SEC", "40000").output().unwrap();
    assert_success(&out);
    let msgs = consume(&job.topic);
    let want: Vec<String> = body.lines().map(str::to_owned).collect();
    let got: Vec<String> = msgs.iter().map(|m| m.value.clone()).collect();
    assert_eq!(multiset(&got), multiset(&want), "every line exactly once");
    assert_eq!(num(&row(&job.id, 0), "success_count"), 60_000);
}

fn multiset(v: &[String]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for l in v {
        *m.entry(l.clone()).or_insert(0) += 1;
    }
    m
}
