//! The status row's guards on PostgreSQL itself. The in-process tests check the same rules on
//! the in-memory store; these run the real upsert: a completed row is never written over, the
//! counters never go back, and a later run of the same job and index takes the row over, so
//! that the earlier run's writes are refused from then on.

mod common;

use std::time::Duration;

use reprocessing_worker::secret::Secret;
use reprocessing_worker::status::{PgStatus, Snapshot, StatusError, StatusRow, StatusStore, WorkerStatus};
use reprocessing_worker::tracker::Counts;

fn row(status: WorkerStatus, total: u64) -> StatusRow {
    StatusRow {
        status,
        snapshot: Snapshot { counts: Counts { total, success: total, ..Default::default() }, ..Default::default() },
        assigned_files: 1,
        total_bytes: 0,
        error: None,
    }
}

/// A run of worker 0 of `job` on the test database, with its tables and its run registered.
async fn run_of(job: &str) -> PgStatus {
    let url = Secret::new(common::env("DATABASE_URL"));
    let store = PgStatus::connect(&url, job, 0, Duration::from_secs(10)).await.unwrap();
    store.prepare(r#"{"connection_ids":["c"]}"#, 1, 1).await.unwrap();
    store
}

async fn stored(store: &PgStatus) -> (WorkerStatus, u64) {
    let r = store.read_row().await.unwrap().expect("the row is there");
    (r.status, r.snapshot.counts.total)
}

#[tokio::test]
async fn a_completed_row_is_never_written_over_in_postgres() {
    if common::skip_without_services("a_completed_row_is_never_written_over_in_postgres") {
        return;
    }
    let job = common::unique("guard");
    let store = run_of(&job).await;
    store.write(&row(WorkerStatus::Running, 10)).await.unwrap();
    assert_eq!(stored(&store).await, (WorkerStatus::Running, 10));
    let e = store.write(&row(WorkerStatus::Running, 5)).await.unwrap_err();
    assert!(e.row_lost(), "counters never go down: {e}");
    assert_eq!(stored(&store).await, (WorkerStatus::Running, 10), "the lower write left no trace");
    store.write(&row(WorkerStatus::Completed, 20)).await.unwrap();
    for later in [WorkerStatus::Cancelled, WorkerStatus::Failed, WorkerStatus::Running] {
        let e = store.write(&row(later, 30)).await.unwrap_err();
        assert!(matches!(e, StatusError::RowAhead { status: WorkerStatus::Completed, .. }), "{later}: {e}");
    }
    assert_eq!(stored(&store).await, (WorkerStatus::Completed, 20));
}

#[tokio::test]
async fn a_later_run_of_the_same_index_takes_the_row_over_in_postgres() {
    if common::skip_without_services("a_later_run_of_the_same_index_takes_the_row_over_in_postgres") {
        return;
    }
    let job = common::unique("takeover");
    let first = run_of(&job).await;
    first.write(&row(WorkerStatus::Running, 10)).await.unwrap();
    // The pod is started again while the first one still runs (an overlapping Job pod).
    let second = run_of(&job).await;
    second.write(&row(WorkerStatus::Running, 10)).await.unwrap();
    let e = first.write(&row(WorkerStatus::Running, 50)).await.unwrap_err();
    assert!(matches!(e, StatusError::TakenOver { .. }), "{e}");
    let e = first.write(&row(WorkerStatus::Completed, 50)).await.unwrap_err();
    assert!(matches!(e, StatusError::TakenOver { .. }), "not even its final row: {e}");
    assert_eq!(stored(&second).await, (WorkerStatus::Running, 10));
    second.write(&row(WorkerStatus::Completed, 60)).await.unwrap();
    assert_eq!(stored(&first).await, (WorkerStatus::Completed, 60));
}
