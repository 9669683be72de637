//! A whole worker in-process: fake broker, in-memory row, files on a temporary disk.

use std::time::Duration;

use super::*;
use crate::config::Tuning;
use crate::testutil::{config, lines, multiset, small_tuning, FakeBroker, MemoryStatus};
use rw_core::resume::StoredRow;
use rw_core::{Counts, JobOptions};

#[tokio::test]
async fn a_run_delivers_every_file_and_ends_completed_with_exact_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (lines("a", 300), lines("b", 700));
    let cfg = config(dir.path(), &[("a", &a), ("b", &b), ("empty", b"")], JobOptions::default(), small_tuning(4));
    let (store, broker) = (MemoryStatus::default(), FakeBroker::acking());
    let summary = run_with(&cfg, &store, Some(broker.clone()), CancellationToken::new()).await.unwrap();
    assert_eq!(summary.status, WorkerStatus::Completed);
    assert_eq!(broker.delivered().len(), 1_000);
    let last = store.last();
    assert_eq!(last.status, WorkerStatus::Completed);
    assert_eq!(last.snapshot.counts, Counts { total: 1_000, success: 1_000, error: 0, skipped: 0 });
    assert_eq!((last.snapshot.processed_files, last.assigned_files), (3, 3));
    assert_eq!(last.snapshot.processed_bytes, (a.len() + b.len()) as u64);
    assert_eq!(store.writes.lock().unwrap()[0].status, WorkerStatus::Running);
}

#[tokio::test]
async fn a_resumed_run_sends_only_what_follows_the_stored_point() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (lines("a", 100), lines("b", 100), lines("c", 100));
    let cfg = config(dir.path(), &[("a", &a), ("b", &b), ("c", &c)], JobOptions::default(), small_tuning(4));
    let stored = StoredRow {
        status: WorkerStatus::Cancelled,
        snapshot: Snapshot {
            current_file: Some(cfg.files[1].path.clone()),
            current_line: 40,
            processed_files: 1,
            counts: Counts { total: 140, success: 140, ..Default::default() },
            ..Default::default()
        },
    };
    let (store, broker) = (MemoryStatus::with_row(stored), FakeBroker::acking());
    run_with(&cfg, &store, Some(broker.clone()), CancellationToken::new()).await.unwrap();
    let got = multiset(&broker.delivered());
    assert_eq!(got.len(), 160, "b's lines 41..100 and all of c");
    assert!(got.keys().all(|v| !v.starts_with(br#"{"messageId":"a-"#)), "a was done");
    assert!(!got.contains_key(br#"{"messageId":"b-40","origin":{"sourceId":"s"}}"#.as_slice()));
    assert!(got.contains_key(br#"{"messageId":"b-41","origin":{"sourceId":"s"}}"#.as_slice()));
    let last = store.last();
    assert_eq!(last.snapshot.counts.total, 300, "counters continue from the row");
    assert_eq!(last.snapshot.processed_files, 3);
}

#[tokio::test]
async fn a_completed_row_ends_the_run_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("a", &lines("a", 10))], JobOptions::default(), small_tuning(2));
    let done = StoredRow { status: WorkerStatus::Completed, snapshot: Snapshot::default() };
    let (store, broker) = (MemoryStatus::with_row(done), FakeBroker::acking());
    let s = run_with(&cfg, &store, Some(broker.clone()), CancellationToken::new()).await.unwrap();
    assert_eq!(s.status, WorkerStatus::Completed);
    assert!(broker.calls().is_empty() && store.writes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn shutdown_ends_cancelled_at_an_exact_resume_point() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("a", &lines("a", 50_000))], JobOptions::default(), small_tuning(2));
    let store = MemoryStatus::default();
    let broker = crate::testutil::FakeBroker::new(2, |_, _| crate::testutil::Answer::Ack(Duration::from_millis(20)));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop.cancel();
    });
    let s = run_with(&cfg, &store, Some(broker.clone()), shutdown).await.unwrap();
    assert_eq!(s.status, WorkerStatus::Cancelled);
    let last = store.last();
    assert_eq!((last.status, last.status.column()), (WorkerStatus::Cancelled, "failed"));
    let point = format!("line {} is delivered", last.snapshot.current_line);
    assert!(
        last.error.as_deref().is_some_and(|e| e.starts_with("cancelled by SIGTERM") && e.contains(&point)),
        "{last:?}"
    );
    assert!(last.snapshot.counts.total < 50_000 && last.snapshot.counts.total == last.snapshot.current_line);
    assert_eq!(last.snapshot.processed_files, 0, "the file was not finished");
}

#[tokio::test]
async fn a_run_whose_row_is_taken_over_stops_without_writing_again() {
    let dir = tempfile::tempdir().unwrap();
    // Writes 50 ms apart at most: the takeover is seen at the next write.
    let tuning = Tuning { status_min_interval: Duration::from_millis(50), ..small_tuning(2) };
    let cfg = config(dir.path(), &[("a", &lines("a", 50_000))], JobOptions::default(), tuning);
    let store = std::sync::Arc::new(MemoryStatus::default());
    // Acks slow enough that the file takes well over the takeover's 300 ms.
    let broker = crate::testutil::FakeBroker::new(2, |_, _| crate::testutil::Answer::Ack(Duration::from_millis(30)));
    let s2 = std::sync::Arc::clone(&store);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s2.taken_over.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let started = std::time::Instant::now();
    let e = run_with(&cfg, store.as_ref(), Some(broker.clone()), CancellationToken::new()).await.unwrap_err();
    assert!(matches!(e, RunError::Status(StatusError::TakenOver { .. })), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped promptly");
    assert!(broker.delivered().len() < 50_000, "stopped before the end of the file");
    let writes = store.writes.lock().unwrap();
    assert!(writes.iter().all(|w| w.status == WorkerStatus::Running), "no final row over the new owner's");
}

#[tokio::test]
async fn a_completed_row_is_never_written_over() {
    let store = MemoryStatus::default();
    let row = |status, total| StatusRow {
        status,
        snapshot: Snapshot { counts: Counts { total, success: total, ..Default::default() }, ..Default::default() },
        assigned_files: 1,
        total_bytes: 0,
        error: None,
    };
    store.write(&row(WorkerStatus::Running, 10), None).await.unwrap();
    assert!(store.write(&row(WorkerStatus::Running, 5), None).await.unwrap_err().row_lost(), "counters never go down");
    store.write(&row(WorkerStatus::Completed, 20), None).await.unwrap();
    let e = store.write(&row(WorkerStatus::Cancelled, 20), None).await.unwrap_err();
    assert!(matches!(e, StatusError::RowAhead { status: WorkerStatus::Completed, .. }), "{e}");
    assert_eq!(store.read_row().await.unwrap().unwrap().status, WorkerStatus::Completed);
}
