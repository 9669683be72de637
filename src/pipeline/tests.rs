//! In-process tests of the pipeline on a fake broker: out-of-order acks, retries that skip
//! settled lines, give-up counting, the unsettled-lines bound, dead letters, shutdown, the
//! retry that used to hang, and many files in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::testutil::{lines, multiset, small_tuning, Answer, FakeBroker};
use rw_core::resume::Snapshot;
use rw_core::{Failure, JobOptions};

struct Setup {
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    paths: Vec<String>,
    /// The dead-letter writer, when there is one.
    letters_written:
        Option<tokio::task::JoinHandle<Result<crate::deadletter::Written, crate::deadletter::DeadLetterError>>>,
    _dir: tempfile::TempDir,
}

fn setup(data: &[u8], broker: Arc<FakeBroker>, job: JobOptions, max_in_flight: usize) -> Setup {
    setup_with(&[data], broker, job, small_tuning(max_in_flight), None)
}

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

fn setup_with(
    files: &[impl AsRef<[u8]>],
    broker: Arc<FakeBroker>,
    job: JobOptions,
    tuning: crate::config::Tuning,
    dead_letters: Option<std::path::PathBuf>,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let paths = files
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let path = dir.path().join(format!("f{i:04}.ndjson"));
            std::fs::write(&path, data.as_ref()).unwrap();
            path.display().to_string()
        })
        .collect();
    let progress = Arc::new(Progress::new(Snapshot::default(), Default::default()));
    broker.watch(Arc::clone(&progress));
    // The real writer: a line with a letter settles once its letter is written.
    let (dead_letters, letters_written) = match dead_letters {
        None => (None, None),
        Some(dir) => {
            let p = Arc::clone(&progress);
            let settle: crate::deadletter::Settle = Box::new(move |seqs, ok| p.settle_letters(seqs, ok));
            let (tx, done) =
                crate::deadletter::start(crate::deadletter::Destination::Dir(dir), "job".into(), 0, None, settle);
            (Some(tx), Some(done))
        }
    };
    let job = JobOptions { connection_ids: vec!["c1".into()], ..job };
    let parts = Parts {
        filter: Filter::default(),
        router: Router::fixed("t", &job.connection_ids),
        broker,
        partitions: vec![vec![0, 1, 2]],
        delivery_timeout: DELIVERY_TIMEOUT,
        sources: Sources::new(None),
        progress: Arc::clone(&progress),
        dead_letters,
        keys: rw_core::LineKeys::for_job("test-job"),
        look_for_lost_answers: true,
        spread_seed: 0,
        sequencer: None,
    };
    let engine = Arc::new(Engine::new(parts, tuning, &job));
    Setup { engine, progress, paths, letters_written, _dir: dir }
}

/// A job with `retries` after the first attempt at a file.
fn job(batch_size: usize, retries: u32) -> JobOptions {
    JobOptions { batch_size, retry_attempts: retries + 1, ..Default::default() }
}

/// Every line of `data`, once each.
fn each_once(data: &[u8]) -> std::collections::BTreeMap<Vec<u8>, usize> {
    multiset(&data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect::<Vec<_>>())
}

async fn process(s: &Setup, shutdown: &CancellationToken) -> RunEnd {
    let files = s
        .paths
        .iter()
        .enumerate()
        .map(|(index, p)| FileTask { index, path: p.clone(), first_line: 1, listed_size: 0 })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), s.engine.run(files, None, shutdown)).await.expect("hung")
}

#[tokio::test]
async fn out_of_order_acks_deliver_every_line_once_with_exact_counters() {
    let data = lines("a", 5_000);
    // Later calls answer sooner: acks arrive in reverse order within each window.
    let broker = FakeBroker::new(3, |n, _| Answer::Ack(Duration::from_millis(8 - (n % 8) as u64)));
    let s = setup(&data, Arc::clone(&broker), job(100, 0), 4);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    assert_eq!(multiset(&broker.delivered()), each_once(&data));
    let snap = s.progress.snapshot();
    assert_eq!((snap.current_line, snap.counts.total, snap.counts.success), (5_000, 5_000, 5_000));
    assert!(broker.max_in_flight() <= 4, "in flight: {}", broker.max_in_flight());
}

#[tokio::test]
async fn a_file_retry_skips_the_lines_already_settled() {
    let data = lines("r", 5_000);
    let broker = FakeBroker::new(2, |n, _| Answer::Ack(Duration::from_millis(if n % 3 == 0 { 15 } else { 1 })));
    // One retry: it must succeed at once (re-recording a settled line would fail it).
    let s = setup(&data, Arc::clone(&broker), job(100, 1), 4);
    // The first read fails after its first chunk (64 KiB), with batches still in flight.
    s.engine.sources.fail_reads_after(&[1]);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    assert_eq!(multiset(&broker.delivered()), each_once(&data), "no line twice, none lost");
    assert_eq!(s.progress.snapshot().processed_bytes, data.len() as u64, "the bytes read again count once");
    assert_eq!(s.progress.snapshot().counts.success, 5_000);
}

#[tokio::test]
async fn a_file_that_cannot_be_read_is_given_up_and_its_settled_lines_stay_counted() {
    let data = lines("u", 5_000);
    let broker = FakeBroker::acking();
    let s = setup(&data, Arc::clone(&broker), job(100, 1), 4);
    s.engine.sources.fail_reads_after(&[1, 1]);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    let failed = s.progress.failed_files();
    assert!(failed.len() == 1 && failed[0].contains("injected read fault"), "{failed:?}");
    let c = s.progress.snapshot().counts;
    assert_eq!(s.progress.snapshot().processed_files, 1, "a file given up counts as processed");
    assert!(c.success > 0 && c.success < 5_000, "{c:?}");
    assert_eq!(c.total, c.success + c.error + c.skipped);
    assert_eq!(broker.delivered().len() as u64, c.success, "every success was acknowledged once");
}

#[tokio::test]
async fn transient_failures_are_retried_per_batch_and_the_file_goes_on() {
    let data = lines("t", 3_000);
    // The first ten requests fail as a moving cluster would; then everything is acknowledged.
    let broker = FakeBroker::new(3, |n, _| {
        if n < 10 {
            Answer::Fail(Failure::Transient, Duration::from_millis(2))
        } else {
            Answer::Ack(Duration::from_millis(1))
        }
    });
    let s = setup(&data, Arc::clone(&broker), job(100, 0), 4);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    assert_eq!(multiset(&broker.delivered()), each_once(&data));
    assert_eq!(s.progress.snapshot().counts.success, 3_000);
}

#[tokio::test]
async fn a_rejected_batch_is_split_and_only_the_refused_record_is_an_error() {
    let data = lines("g", 1_000);
    let poison = br#"{"messageId":"g-150","origin":{"sourceId":"s"}}"#.to_vec();
    let p = poison.clone();
    let broker = FakeBroker::new(1, move |_, records| {
        if records.iter().any(|r| r.value.as_deref() == Some(&p[..])) {
            Answer::Fail(Failure::Rejected, Duration::ZERO)
        } else {
            Answer::Ack(Duration::ZERO)
        }
    });
    let letters_dir = tempfile::tempdir().unwrap();
    let s = setup_with(&[&data], Arc::clone(&broker), job(100, 0), small_tuning(2), Some(letters_dir.path().into()));
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    let c = s.progress.snapshot().counts;
    assert_eq!((c.total, c.success, c.error), (1_000, 999, 1), "{c:?}");
    let mut expected = each_once(&data);
    expected.remove(&poison);
    assert_eq!(multiset(&broker.delivered()), expected, "every other record delivered once");
    // Halving 100 records down to one takes 7 levels: at most 2 requests per level.
    let rejected = broker.calls().iter().filter(|c| !c.acked).count();
    assert!(rejected <= 8, "{rejected} rejected requests");
    // The refused line settled only once its letter was written.
    let Setup { engine, letters_written, .. } = s;
    drop(engine);
    let written = letters_written.unwrap().await.unwrap().unwrap();
    assert_eq!(written, crate::deadletter::Written { letters: 1, lost: 0 });
    let text = std::fs::read_to_string(letters_dir.path().join("job-worker-0.ndjson")).unwrap();
    let letter: sonic_rs::Value = sonic_rs::from_str(text.trim_end()).unwrap();
    use sonic_rs::JsonValueTrait;
    assert_eq!(letter.get("line").and_then(|v| v.as_u64()), Some(150));
    assert_eq!(letter.get("data").and_then(|v| v.as_str()).map(str::as_bytes), Some(&poison[..]));
    assert_eq!(letter.get("reason").and_then(|v| v.as_str()), Some("rejected by Kafka: MESSAGE_TOO_LARGE"));
}

#[tokio::test]
async fn a_cluster_unavailable_past_the_deadline_stops_the_run_with_an_exact_resume_point() {
    let data = lines("x", 2_000);
    // Lines 1..=300 are delivered, then the cluster fails every request.
    let broker = FakeBroker::new(1, |n, _| {
        if n < 3 {
            Answer::Ack(Duration::ZERO)
        } else {
            Answer::Fail(Failure::Transient, Duration::from_millis(5))
        }
    });
    let s = setup(&data, Arc::clone(&broker), job(100, 3), 1);
    let started = std::time::Instant::now();
    let outcome = process(&s, &CancellationToken::new()).await;
    assert!(matches!(&outcome, RunEnd::Stopped(AttemptError::KafkaUnavailable { .. })), "{outcome:?}");
    assert!(started.elapsed() < DELIVERY_TIMEOUT * 2, "no file retries on top of the deadline");
    let snap = s.progress.snapshot();
    assert_eq!((snap.current_line, snap.counts.total, snap.counts.success), (300, 300, 300));
}

#[tokio::test]
async fn a_fatal_error_stops_the_run_at_once() {
    let data = lines("f", 2_000);
    let broker = FakeBroker::new(2, |_, _| Answer::Fail(Failure::Fatal, Duration::ZERO));
    let s = setup(&data, Arc::clone(&broker), job(100, 3), 2);
    let started = std::time::Instant::now();
    let outcome = process(&s, &CancellationToken::new()).await;
    assert!(matches!(&outcome, RunEnd::Stopped(AttemptError::KafkaFatal(_))), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(s.progress.snapshot().counts.total, 0);
}

#[tokio::test]
async fn the_parser_never_runs_further_ahead_of_the_watermark_than_the_bound() {
    let data = lines("w", 20_000);
    // The first batch of every 50 is slow, so the watermark lags behind.
    let broker = FakeBroker::new(4, |n, _| Answer::Ack(Duration::from_millis(if n % 50 == 0 { 60 } else { 0 })));
    let s = setup(&data, Arc::clone(&broker), job(50, 0), 2);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    // The README's bound, (2 × KAFKA_MAX_IN_FLIGHT + 2) × batch_size, at in-flight 2 and
    // batches of 50: not the engine's own figure, which is what is under test.
    let bound: u64 = (2 * 2 + 2) * 50;
    assert_eq!(s.engine.max_unsettled_lines() as u64, bound);
    let mut line_of = std::collections::HashMap::new();
    for (i, l) in data.split(|b| *b == b'\n').enumerate() {
        line_of.insert(l.to_vec(), i as u64);
    }
    let mut worst = 0;
    for call in broker.calls() {
        let wm = call.watermark.unwrap();
        for v in &call.values {
            worst = worst.max(line_of[v] - wm);
        }
    }
    // `worst` lines after the watermark's: with it, `worst + 1` unsettled.
    assert!(worst < bound, "a line {worst} after the watermark's; {} unsettled, bound {bound}", worst + 1);
    assert!(worst > bound / 2, "the test never got near the bound ({worst} of {bound})");
}

#[tokio::test]
async fn shutdown_drains_the_batches_in_flight_and_stops_reading() {
    let data = lines("d", 50_000);
    let broker = FakeBroker::new(2, |_, _| Answer::Ack(Duration::from_millis(30)));
    let s = setup(&data, Arc::clone(&broker), job(100, 0), 4);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
    });
    assert!(matches!(process(&s, &shutdown).await, RunEnd::Cancelled));
    assert_eq!(broker.in_flight(), 0, "every request in flight was waited for");
    let snap = s.progress.snapshot();
    let delivered = broker.delivered().len() as u64;
    assert!(delivered < 50_000, "shutdown did not stop the file");
    assert!(snap.counts.success > 0 && snap.counts.success <= delivered, "{snap:?}");
    // The resume point is exact: every line up to it was acknowledged, none after it counted.
    assert_eq!(snap.counts.total, snap.current_line);
    let after = broker.calls().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(broker.calls().len(), after, "nothing is sent after shutdown returns");
}

/// The hang of a retry: the oldest batch fails while the window is full. The failed
/// attempt leaves the tracker holding lines up to the bound; the retry must send the
/// released lines again instead of waiting for the window to drain.
#[tokio::test]
async fn a_retry_after_the_oldest_batch_failed_with_a_full_window_does_not_hang() {
    let data = lines("h", 5_000);
    let failed = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&failed);
    let broker = FakeBroker::new(3, move |n, _| {
        if n == 0 && !f.swap(true, Ordering::SeqCst) {
            // Long enough for the parser to reach the bound and wait.
            Answer::Fail(Failure::Transient, Duration::from_millis(300))
        } else {
            Answer::Ack(Duration::ZERO)
        }
    });
    let s = setup(&data, Arc::clone(&broker), job(20, 3), 2);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    assert!(failed.load(Ordering::SeqCst));
    assert_eq!(multiset(&broker.delivered()), each_once(&data));
    assert_eq!(s.progress.snapshot().counts.success, 5_000);
}

/// Files of `lines` lines each (0 for an empty file), each line unique.
fn many(counts: &[usize]) -> Vec<Vec<u8>> {
    counts.iter().enumerate().map(|(i, &n)| if n == 0 { Vec::new() } else { lines(&format!("m{i}-"), n) }).collect()
}

fn all_once(files: &[Vec<u8>]) -> std::collections::BTreeMap<Vec<u8>, usize> {
    each_once(&files.concat())
}

fn tuning(max_in_flight: usize, files_in_flight: usize) -> crate::config::Tuning {
    crate::config::Tuning { files_in_flight, ..small_tuning(max_in_flight) }
}

#[tokio::test]
async fn many_files_acked_out_of_order_finish_in_order_with_exact_counters() {
    let counts: Vec<usize> = (0..60).map(|i| [0, 1, 7, 23, 150][i % 5]).collect();
    let files = many(&counts);
    let broker = FakeBroker::new(3, |n, _| Answer::Ack(Duration::from_millis(6 - (n % 6) as u64)));
    let s = setup_with(&files, Arc::clone(&broker), job(16, 0), tuning(4, 6), None);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    assert_eq!(multiset(&broker.delivered()), all_once(&files));
    let snap = s.progress.snapshot();
    let total: u64 = counts.iter().sum::<usize>() as u64;
    assert_eq!((snap.counts.total, snap.counts.success, snap.processed_files), (total, total, 60));
    assert_eq!(snap.current_file.as_deref(), Some(s.paths[59].as_str()));
    assert_eq!(snap.current_line, 150);
    let open = broker.calls().iter().filter_map(|c| c.open_files).max().unwrap();
    assert!(open > 1 && open <= 6, "files open at once: {open} (bound 6)");
}

#[tokio::test]
async fn the_last_batches_of_a_file_are_in_flight_while_the_next_files_are_read() {
    // One batch per file, every acknowledgement slow: one file at a time would have one
    // request in flight; overlapping files keep several.
    let files = many(&[5; 20]);
    let broker = FakeBroker::new(1, |_, _| Answer::Ack(Duration::from_millis(40)));
    let s = setup_with(&files, Arc::clone(&broker), job(5, 0), tuning(4, 8), None);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    assert_eq!(multiset(&broker.delivered()), all_once(&files));
    assert!(broker.max_in_flight() >= 3, "requests in flight at once: {}", broker.max_in_flight());
    assert_eq!(s.progress.snapshot().processed_files, 20);
}

#[tokio::test]
async fn the_window_bound_holds_over_all_files_in_flight() {
    let files = many(&[100; 200]);
    let broker = FakeBroker::new(4, |n, _| Answer::Ack(Duration::from_millis(if n % 50 == 0 { 60 } else { 0 })));
    let s = setup_with(&files, Arc::clone(&broker), job(50, 0), tuning(2, 64), None);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    // Sequence numbers: the index of a line over all files.
    let seq_of: std::collections::HashMap<Vec<u8>, u64> = files
        .concat()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| (l.to_vec(), i as u64))
        .collect();
    // The README's bound, (2 × KAFKA_MAX_IN_FLIGHT + 2) × batch_size, at in-flight 2 and
    // batches of 50: not the engine's own figure, which is what is under test.
    let bound: u64 = (2 * 2 + 2) * 50;
    assert_eq!(s.engine.max_unsettled_lines() as u64, bound);
    let worst =
        broker.calls().iter().flat_map(|c| c.values.iter().map(|v| seq_of[v] - c.watermark.unwrap())).max().unwrap();
    // `worst` lines after the watermark's: with it, `worst + 1` unsettled.
    assert!(worst < bound, "a line {worst} after the watermark's; {} unsettled, bound {bound}", worst + 1);
    assert!(worst > bound / 2, "the test never got near the bound ({worst} of {bound})");
}

#[tokio::test]
async fn a_file_read_again_while_later_files_are_in_flight_loses_and_doubles_nothing() {
    let files = many(&[3_000, 3_000, 40, 0, 3_000]);
    let broker = FakeBroker::new(2, |n, _| Answer::Ack(Duration::from_millis(if n % 3 == 0 { 10 } else { 1 })));
    let s = setup_with(&files, Arc::clone(&broker), job(100, 1), tuning(4, 4), None);
    // The second file's first read fails after one chunk (64 KiB); the files after it are
    // already open when it is read again.
    s.engine.sources.fail_reads_after(&[u32::MAX, 1]);
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    assert_eq!(multiset(&broker.delivered()), all_once(&files), "no line twice, none lost");
    let snap = s.progress.snapshot();
    assert_eq!((snap.counts.success, snap.processed_files), (9_040, 5));
    assert!(s.progress.failed_files().is_empty());
}

#[tokio::test]
async fn shutdown_with_files_in_flight_leaves_an_exact_resume_point() {
    let files = many(&[400; 100]);
    let broker = FakeBroker::new(2, |_, _| Answer::Ack(Duration::from_millis(20)));
    let s = setup_with(&files, Arc::clone(&broker), job(100, 0), tuning(4, 8), None);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
    });
    assert!(matches!(process(&s, &shutdown).await, RunEnd::Cancelled));
    let snap = s.progress.snapshot();
    let at = s.paths.iter().position(|p| Some(p.as_str()) == snap.current_file.as_deref()).expect("a current file");
    assert!(snap.processed_files < 100 && snap.counts.total > 0, "{snap:?}");
    // Every file before the current one is processed, and the counters are exact for the point.
    let finished = if snap.current_line == 400 { at + 1 } else { at };
    assert_eq!(snap.processed_files as usize, finished, "{snap:?}");
    assert_eq!(snap.counts.total, 400 * at as u64 + snap.current_line);
    assert_eq!(snap.counts.total, snap.counts.success);
}

#[tokio::test]
async fn the_rate_limit_spaces_the_batches() {
    let data = lines("q", 3_000);
    let broker = FakeBroker::acking();
    let rate = rw_core::RateLimits { events_per_sec: Some(10_000), bytes_per_sec: None };
    let s =
        setup_with(&[&data], Arc::clone(&broker), job(100, 0), crate::config::Tuning { rate, ..tuning(4, 4) }, None);
    let started = std::time::Instant::now();
    assert!(matches!(process(&s, &CancellationToken::new()).await, RunEnd::Done));
    // The first batch goes at once, the other 2,900 lines at 10,000 a second.
    assert!(started.elapsed() >= Duration::from_millis(285), "took {:?}", started.elapsed());
    assert_eq!(multiset(&broker.delivered()), each_once(&data));
}
