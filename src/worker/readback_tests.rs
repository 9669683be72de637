//! Zero duplicates across a crash, in-process: a first run stops with acknowledged lines
//! after its resume point and a batch lost in flight; a second run over the same partitions
//! reads them back and sends only what is missing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::testutil::{config, lines, multiset, small_tuning, Answer, FakeBroker, MemoryStatus};
use rw_core::JobOptions;

/// Tuning for a first run that stops quickly, abandoning what hangs.
fn tuning() -> crate::config::Tuning {
    crate::config::Tuning { shutdown_timeout: Duration::from_millis(200), ..small_tuning(4) }
}

/// Runs until `stop_after`, then shuts down (the hanging calls are abandoned, like a crash).
async fn first_run(cfg: &Config, store: &MemoryStatus, broker: Arc<FakeBroker>, stop_after: Duration) {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(stop_after).await;
        stop.cancel();
    });
    let s = run_with(cfg, store, Some(broker), shutdown).await.unwrap();
    assert_eq!(s.status, WorkerStatus::Cancelled);
}

/// The restarted worker, over the same partitions, runs to the end.
async fn restart(cfg: &Config, store: &MemoryStatus, broker: &FakeBroker) {
    let again = broker.sharing(|_, _| Answer::Ack(Duration::ZERO));
    let s = run_with(cfg, store, Some(again), CancellationToken::new()).await.unwrap();
    assert_eq!(s.status, WorkerStatus::Completed);
}

/// How often each value of `expected` is in the topic, and anything else in it.
fn copies(broker: &FakeBroker, expected: &[u8]) -> (std::collections::BTreeMap<Vec<u8>, usize>, usize) {
    let got = multiset(&broker.stored_values("t"));
    let want: Vec<Vec<u8>> = expected.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    let others = got.iter().filter(|(v, _)| !want.contains(v)).map(|(_, n)| n).sum();
    (got.into_iter().filter(|(v, _)| want.contains(v)).collect(), others)
}

/// The batch with `a-1` never comes back; every other batch is acknowledged at once.
fn a1_lost(_: usize, records: &[rw_core::Record]) -> Answer {
    let a1 = records.iter().any(|r| r.value.as_deref().is_some_and(|v| v.starts_with(br#"{"messageId":"a-1""#)));
    Answer::Ack(if a1 { Duration::from_secs(60) } else { Duration::ZERO })
}

/// A first run where the resume point stays before line 1 while later lines are in the topic.
fn hanging_first_line() -> Arc<FakeBroker> {
    FakeBroker::new(2, a1_lost)
}

#[tokio::test]
async fn lines_acknowledged_after_the_resume_point_are_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = lines("a", 3_000);
    let job = JobOptions { batch_size: 100, ..Default::default() };
    let cfg = config(dir.path(), &[("a", &data)], job, tuning());
    let store = MemoryStatus::default();
    let broker = hanging_first_line();
    first_run(&cfg, &store, Arc::clone(&broker), Duration::from_millis(500)).await;
    let row = store.last();
    let (before, _) = copies(&broker, &data);
    assert_eq!(row.snapshot.counts.total, 0, "the lost batch holds the resume point");
    assert!(before.len() >= 500, "lines after the resume point are in the topic: {}", before.len());
    assert!(!store.offsets.lock().unwrap().is_empty(), "offsets were stored");

    restart(&cfg, &store, &broker).await;
    let (after, others) = copies(&broker, &data);
    assert_eq!((after.len(), others), (3_000, 0), "every line is in the topic");
    assert!(after.values().all(|&n| n == 1), "no line twice: {:?}", after.iter().find(|(_, &n)| n > 1));
    assert_eq!(store.last().snapshot.counts.success, 3_000);
}

#[tokio::test]
async fn identical_lines_are_each_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    // a-1, then the same line twice, then more lines.
    let same = br#"{"messageId":"same","origin":{"sourceId":"s"}}"#;
    let mut data = lines("a", 1);
    for _ in 0..2 {
        data.extend_from_slice(same);
        data.push(b'\n');
    }
    data.extend_from_slice(&lines("b", 50));
    let job = JobOptions { batch_size: 1, ..Default::default() };
    let cfg = config(dir.path(), &[("a", &data)], job, tuning());
    let store = MemoryStatus::default();
    // The first copy is acknowledged, the second is lost in flight, and so is a-1.
    let seen = Arc::new(AtomicUsize::new(0));
    let broker = FakeBroker::new(2, move |_, records| {
        let v = records[0].value.as_deref().unwrap_or_default();
        let lost = v.starts_with(br#"{"messageId":"a-1""#)
            || (v == same.as_slice() && seen.fetch_add(1, Ordering::SeqCst) == 1);
        Answer::Ack(if lost { Duration::from_secs(60) } else { Duration::ZERO })
    });
    first_run(&cfg, &store, Arc::clone(&broker), Duration::from_millis(400)).await;
    assert_eq!(copies(&broker, &data).0.get(same.as_slice()), Some(&1), "one copy before the crash");

    restart(&cfg, &store, &broker).await;
    let (after, _) = copies(&broker, &data);
    assert_eq!(after.get(same.as_slice()), Some(&2), "both copies, once each");
    assert!(after.iter().filter(|(v, _)| v.as_slice() != same).all(|(_, &n)| n == 1));
    assert_eq!(after.len(), 52);
}

#[tokio::test]
async fn other_producers_records_are_read_past_and_never_matched() {
    let dir = tempfile::tempdir().unwrap();
    let data = lines("a", 2_000);
    let cfg = config(dir.path(), &[("a", &data)], JobOptions { batch_size: 100, ..Default::default() }, tuning());
    let store = MemoryStatus::default();
    let broker = hanging_first_line();
    first_run(&cfg, &store, Arc::clone(&broker), Duration::from_millis(500)).await;
    // Live traffic during the crash window: near-misses of our own records, and a line of
    // ours that was never sent, written with another key.
    let record = |key: &str, value: &[u8], header: &[u8]| rw_core::Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.to_vec()),
        headers: [(rw_core::HEADER.to_owned(), header.to_vec())].into(),
        timestamp: chrono::Utc::now(),
    };
    let a1 = br#"{"messageId":"a-1","origin":{"sourceId":"s"}}"#;
    let live = vec![record("a-1", a1, b"c2"), record("other", a1, b"c1"), record("x", b"{}", b"c1")];
    broker.append("t", 0, live.clone());
    broker.append("t", 1, live);
    restart(&cfg, &store, &broker).await;
    let (after, others) = copies(&broker, &data);
    assert_eq!(after.len(), 2_000);
    assert!(after.iter().filter(|(v, _)| v.as_slice() != a1).all(|(_, &n)| n == 1), "each of ours once");
    // Its bytes are in four live records (other key, other header): a-1 itself was sent.
    assert_eq!(after.get(a1.as_slice()), Some(&5), "a-1 once, besides the live records");
    assert_eq!(others, 2, "the live records stay");
}

#[tokio::test]
async fn a_restart_behind_far_more_live_records_than_the_cap_still_finds_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = lines("a", 3_000);
    let mut tuning = tuning();
    // The read-back holds at most 2,000 of this worker's records, and the range holds
    // 60,000 of other producers' besides (a busy topic during the back-off): before, the cap
    // counted every record of the range and the resume sent everything again.
    tuning.readback.max_records = 2_000;
    let cfg = config(dir.path(), &[("a", &data)], JobOptions { batch_size: 100, ..Default::default() }, tuning);
    let store = MemoryStatus::default();
    let broker = hanging_first_line();
    first_run(&cfg, &store, Arc::clone(&broker), Duration::from_millis(500)).await;
    let in_topic = copies(&broker, &data).0.len();
    assert!(in_topic >= 500, "lines after the resume point are in the topic: {in_topic}");
    for partition in 0..2 {
        let live = (0..30_000).map(|i| rw_core::Record {
            key: Some(format!("live-{partition}-{i}").into_bytes()),
            value: Some(br#"{"messageId":"live"}"#.to_vec()),
            headers: [(rw_core::HEADER.to_owned(), b"c1".to_vec())].into(),
            timestamp: chrono::Utc::now(),
        });
        broker.append("t", partition, live.collect());
    }
    restart(&cfg, &store, &broker).await;
    let (after, _) = copies(&broker, &data);
    assert_eq!(after.len(), 3_000);
    assert!(after.values().all(|&n| n == 1), "no line twice: {:?}", after.iter().find(|(_, &n)| n > 1));
}

#[tokio::test]
async fn past_the_read_back_cap_lines_are_sent_again_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = lines("a", 3_000);
    let mut tuning = tuning();
    // This worker's own records held, at most.
    tuning.readback.max_records = 5;
    let cfg = config(dir.path(), &[("a", &data)], JobOptions { batch_size: 100, ..Default::default() }, tuning);
    let store = MemoryStatus::default();
    let broker = hanging_first_line();
    first_run(&cfg, &store, Arc::clone(&broker), Duration::from_millis(500)).await;
    let in_topic = copies(&broker, &data).0.len();
    restart(&cfg, &store, &broker).await;
    let (after, _) = copies(&broker, &data);
    let twice = after.values().filter(|&&n| n == 2).count();
    assert_eq!(after.len(), 3_000);
    // Each partition's read stops after the page that passed the cap (pages of at most 100
    // here): what those pages held is found, the rest is sent again, at least once.
    let found = in_topic - twice;
    assert!(found > 0 && found <= 2 * 100, "found {found} of {in_topic}: one page a partition");
    assert!(twice > 0 && twice as u64 <= (2 * 4 + 2) * 100 + 256, "within the bound: {twice}");
}

#[tokio::test]
async fn a_second_crash_while_matching_still_finds_the_first_runs_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = lines("a", 3_000);
    let cfg = config(dir.path(), &[("a", &data)], JobOptions { batch_size: 100, ..Default::default() }, tuning());
    let store = MemoryStatus::default();
    let broker = hanging_first_line();
    first_run(&cfg, &store, Arc::clone(&broker), Duration::from_millis(500)).await;
    // The second run loses a-1's batch again: it matches the first run's lines but its
    // resume point cannot move, so its stored offsets must still reach them.
    first_run(&cfg, &store, broker.sharing(a1_lost), Duration::from_millis(500)).await;
    restart(&cfg, &store, &broker).await;
    let (after, _) = copies(&broker, &data);
    assert_eq!(after.len(), 3_000);
    assert!(after.values().all(|&n| n == 1), "no line twice after two crashes");
}

#[tokio::test]
async fn a_batch_written_before_its_answer_was_lost_is_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = lines("a", 2_000);
    let cfg = config(dir.path(), &[("a", &data)], JobOptions { batch_size: 100, ..Default::default() }, tuning());
    let store = MemoryStatus::default();
    // Every fifth call is written but its answer is lost.
    let broker =
        FakeBroker::new(2, |n, _| if n % 5 == 2 { Answer::Lost(Duration::ZERO) } else { Answer::Ack(Duration::ZERO) });
    run_with(&cfg, &store, Some(Arc::clone(&broker) as Arc<dyn rw_core::Broker>), CancellationToken::new())
        .await
        .unwrap();
    assert!(broker.calls().iter().filter(|c| !c.acked).count() >= 3, "answers were lost");
    let (after, _) = copies(&broker, &data);
    assert_eq!(after.len(), 2_000);
    assert!(after.values().all(|&n| n == 1), "a lost answer did not make a second copy");
}

#[tokio::test]
async fn a_fresh_start_of_the_same_job_sends_every_line_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = lines("a", 2_000);
    let cfg = config(dir.path(), &[("a", &data)], JobOptions { batch_size: 100, ..Default::default() }, tuning());
    let store = MemoryStatus::default();
    let broker = FakeBroker::new(2, |_, _| Answer::Ack(Duration::ZERO));
    let s = run_with(&cfg, &store, Some(Arc::clone(&broker) as Arc<dyn rw_core::Broker>), CancellationToken::new());
    assert_eq!(s.await.unwrap().status, WorkerStatus::Completed);
    assert!(!store.offsets.lock().unwrap().is_empty(), "the first run stored offsets");
    // The admin runs the job again: the row back to pending, the offsets left as they were.
    *store.stored.lock().unwrap() = Some(rw_core::resume::StoredRow {
        status: WorkerStatus::Pending,
        snapshot: rw_core::resume::Snapshot::default(),
    });
    restart(&cfg, &store, &broker).await;
    let (after, _) = copies(&broker, &data);
    assert_eq!(after.len(), 2_000);
    assert!(after.values().all(|&n| n == 2), "every line a second time: nothing was taken as already sent");
    assert_eq!(store.last().snapshot.counts.success, 2_000);
}

#[tokio::test]
async fn the_limit_counts_the_lines_of_earlier_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = lines("a", 3_000);
    let job = JobOptions { batch_size: 100, limit: Some(1_000), ..Default::default() };
    let cfg = config(dir.path(), &[("a", &data)], job, tuning());
    let store = MemoryStatus::default();
    // The first run delivers some lines, then hangs and stops.
    let broker = FakeBroker::new(2, |n, _| Answer::Ack(if n < 3 { Duration::ZERO } else { Duration::from_secs(60) }));
    first_run(&cfg, &store, Arc::clone(&broker), Duration::from_millis(400)).await;
    let before = store.last().snapshot.counts.success;
    assert!(before > 0 && before < 1_000, "{before}");
    restart(&cfg, &store, &broker).await;
    let (after, _) = copies(&broker, &data);
    assert_eq!(after.len(), 1_000, "the limit over both runs, not per run");
    assert!(after.values().all(|&n| n == 1));
    assert_eq!(store.last().snapshot.counts.success, 1_000);
}
