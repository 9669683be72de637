//! The status row's guards on PostgreSQL itself. The in-process tests check the same rules on
//! the in-memory store; these run the real upsert: a completed row is never written over, the
//! counters never go back, and a later run of the same job and index takes the row over, so
//! that the earlier run's writes are refused from then on. A cancelled run shows `failed` in
//! the admin's column; a role that may write only the worker rows still runs.

mod common;

use std::time::Duration;

use reprocessing_worker::status::{OwnTables, PgStatus, StatusError, StatusRow, StatusStore};
use rw_core::resume::PartitionOffset;
use rw_core::resume::{Snapshot, WorkerStatus};
use rw_core::Counts;

/// The assignment of worker 0 of 1 with no files.
fn one_worker() -> rw_core::resume::Assignment {
    rw_core::resume::Assignment::of(&[], &[], 1)
}

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
    let store = PgStatus::connect_to(&common::env("DATABASE_URL"), job, 0, Duration::from_secs(10)).await.unwrap();
    store.prepare(r#"{"connection_ids":["c"]}"#, &one_worker()).await.unwrap();
    store
}

async fn stored(store: &PgStatus) -> (WorkerStatus, u64) {
    let r = store.read_row().await.unwrap().expect("the row is there");
    (r.status, r.snapshot.counts.total)
}

#[tokio::test]
async fn a_completed_row_is_never_written_over_in_postgres() {
    common::needs_services!();
    let job = common::unique("guard");
    let store = run_of(&job).await;
    store.write(&row(WorkerStatus::Running, 10), None).await.unwrap();
    assert_eq!(stored(&store).await, (WorkerStatus::Running, 10));
    let e = store.write(&row(WorkerStatus::Running, 5), None).await.unwrap_err();
    assert!(e.row_lost(), "counters never go down: {e}");
    assert_eq!(stored(&store).await, (WorkerStatus::Running, 10), "the lower write left no trace");
    store.write(&row(WorkerStatus::Completed, 20), None).await.unwrap();
    for later in [WorkerStatus::Cancelled, WorkerStatus::Failed, WorkerStatus::Running] {
        let e = store.write(&row(later, 30), None).await.unwrap_err();
        assert!(matches!(e, StatusError::RowAhead { status: WorkerStatus::Completed, .. }), "{later}: {e}");
    }
    // The final write again, as a retry after its answer was lost: the row is already that.
    store.write(&row(WorkerStatus::Completed, 20), None).await.expect("a final write that landed before");
    let e = store.write(&row(WorkerStatus::Completed, 25), None).await.unwrap_err();
    assert!(matches!(e, StatusError::RowAhead { .. }), "another final row is refused: {e}");
    assert_eq!(stored(&store).await, (WorkerStatus::Completed, 20));
}

#[tokio::test]
async fn a_later_run_of_the_same_index_takes_the_row_over_in_postgres() {
    common::needs_services!();
    let job = common::unique("takeover");
    let first = run_of(&job).await;
    first.write(&row(WorkerStatus::Running, 10), None).await.unwrap();
    // The pod is started again while the first one still runs (an overlapping Job pod).
    let second = run_of(&job).await;
    second.write(&row(WorkerStatus::Running, 10), None).await.unwrap();
    let e = first.write(&row(WorkerStatus::Running, 50), None).await.unwrap_err();
    assert!(matches!(e, StatusError::TakenOver { .. }), "{e}");
    let e = first.write(&row(WorkerStatus::Completed, 50), None).await.unwrap_err();
    assert!(matches!(e, StatusError::TakenOver { .. }), "not even its final row: {e}");
    assert_eq!(stored(&second).await, (WorkerStatus::Running, 10));
    second.write(&row(WorkerStatus::Completed, 60), None).await.unwrap();
    assert_eq!(stored(&first).await, (WorkerStatus::Completed, 60));
}

#[tokio::test]
async fn a_cancelled_run_shows_failed_to_the_admin_and_cancelled_in_its_own_table() {
    common::needs_services!();
    let job = common::unique("cancel");
    let store = run_of(&job).await;
    store.write(&row(WorkerStatus::Running, 10), None).await.unwrap();
    store.write(&row(WorkerStatus::Cancelled, 12), None).await.unwrap();
    let column =
        format!("SELECT status || ' ' || (completed_at IS NOT NULL) FROM reprocessing_workers WHERE job_id = '{job}'");
    assert_eq!(
        common::owner_value(&column).await.as_deref(),
        Some("failed true"),
        "the admin's column holds only its values"
    );
    let outcome = format!("SELECT outcome FROM reprocessing_worker_runs WHERE job_id = '{job}'");
    assert_eq!(common::owner_value(&outcome).await.as_deref(), Some("cancelled"));
    let rows = reprocessing_worker::admin::jobs::job_rows(&store, &job).await.unwrap();
    assert_eq!(rows[0].status, WorkerStatus::Cancelled, "`status` keeps the distinction");
    // A failed run is failed everywhere.
    let other = common::unique("fail");
    let store = run_of(&other).await;
    store.write(&row(WorkerStatus::Failed, 3), None).await.unwrap();
    let rows = reprocessing_worker::admin::jobs::job_rows(&store, &other).await.unwrap();
    assert_eq!(rows[0].status, WorkerStatus::Failed);
}

#[tokio::test]
async fn a_role_that_may_only_write_the_worker_rows_still_runs_and_says_what_it_gives_up() {
    common::needs_services!();
    let (schema, url) = common::locked_schema().await;
    let job = common::unique("locked-job");
    common::as_owner(&format!(
        "INSERT INTO {schema}.reprocessing_jobs (id, config, status, created_at) VALUES ('{job}', '{{}}', 'running', NOW());
         INSERT INTO {schema}.reprocessing_workers (job_id, worker_index, status, assigned_files) VALUES ('{job}', 0, 'pending', 1);"
    ))
    .await;
    let store = PgStatus::connect_to(&url, &job, 0, Duration::from_secs(10)).await.unwrap();
    let own = store.prepare("{}", &one_worker()).await.unwrap();
    assert!(matches!(&own, OwnTables::Unavailable { why } if why.contains("permission denied")), "{own:?}");
    let tables =
        format!("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = '{schema}'");
    assert_eq!(
        common::owner_value(&tables).await.as_deref(),
        Some("reprocessing_jobs,reprocessing_workers"),
        "nothing created"
    );
    store.write(&row(WorkerStatus::Running, 10), None).await.unwrap();
    let offsets = [PartitionOffset { topic: "t".into(), partition: 0, offset: 7 }];
    store.write_offsets(&offsets).await.unwrap();
    assert_eq!(store.read_offsets().await.unwrap(), vec![], "no offsets without the table");
    let e = store.write(&row(WorkerStatus::Running, 5), None).await.unwrap_err();
    assert!(matches!(e, StatusError::RowAhead { .. }), "the row still never goes backwards: {e}");
    store.write(&row(WorkerStatus::Cancelled, 20), None).await.unwrap();
    assert_eq!(stored(&store).await, (WorkerStatus::Failed, 20));
    // Completed, by a role that may not touch the job row (left to the admin), and the same
    // final write retried.
    let other = common::unique("locked-job");
    common::as_owner(&format!(
        "INSERT INTO {schema}.reprocessing_jobs (id, config, status, created_at, k8s_job_name, total_workers)
             VALUES ('{other}', '{{}}', 'running', NOW(), '', 1);
         INSERT INTO {schema}.reprocessing_workers (job_id, worker_index, status, assigned_files)
             VALUES ('{other}', 0, 'pending', 1);"
    ))
    .await;
    let done = PgStatus::connect_to(&url, &other, 0, Duration::from_secs(10)).await.unwrap();
    done.prepare("{}", &one_worker()).await.unwrap();
    done.write(&row(WorkerStatus::Completed, 30), None).await.expect("completed without the job row");
    done.write(&row(WorkerStatus::Completed, 30), None).await.expect("the same final write again");
    assert_eq!(stored(&done).await, (WorkerStatus::Completed, 30));

    // A database owner applies `schema` once; the next run has its guarantees back.
    let sql = reprocessing_worker::admin::schema_sql(&reprocessing_worker::admin::SchemaArgs {
        with_admin_tables: false,
        grant_to: Some(common::LOCKED_ROLE.into()),
    });
    common::as_owner(&format!("SET search_path = {schema}; {sql}")).await;
    let again = PgStatus::connect_to(&url, &job, 0, Duration::from_secs(10)).await.unwrap();
    assert_eq!(again.prepare("{}", &one_worker()).await.unwrap(), OwnTables::Present);
    again.write(&row(WorkerStatus::Running, 21), None).await.unwrap();
    again.write_offsets(&offsets).await.unwrap();
    assert_eq!(again.read_offsets().await.unwrap(), offsets.to_vec());
    common::as_owner(&format!("DROP SCHEMA {schema} CASCADE")).await;
}

#[tokio::test]
async fn the_offsets_go_with_the_row_in_one_statement_and_an_older_table_is_still_read() {
    common::needs_services!();
    let job = common::unique("offsets");
    let first = run_of(&job).await;
    let at = |offset| {
        vec![
            PartitionOffset { topic: "t".into(), partition: 0, offset },
            PartitionOffset { topic: "t".into(), partition: 1, offset: offset + 1 },
        ]
    };
    first.write(&row(WorkerStatus::Running, 10), Some(&at(5))).await.unwrap();
    assert_eq!(first.read_offsets().await.unwrap(), at(5));
    first.write(&row(WorkerStatus::Running, 11), None).await.unwrap();
    assert_eq!(first.read_offsets().await.unwrap(), at(5), "a write without offsets keeps them");
    // A later run takes the index over: the earlier one's write changes neither the row nor
    // the offsets.
    let second = run_of(&job).await;
    assert_eq!(second.read_offsets().await.unwrap(), at(5), "the next run reads what the last one stored");
    let e = first.write(&row(WorkerStatus::Running, 50), Some(&at(40))).await.unwrap_err();
    assert!(matches!(e, StatusError::TakenOver { .. }), "{e}");
    assert_eq!(second.read_offsets().await.unwrap(), at(5));

    // A job an earlier version ran kept its offsets in a table of their own.
    let old = common::unique("old-offsets");
    let store = run_of(&old).await;
    common::as_owner(&format!(
        "CREATE TABLE IF NOT EXISTS reprocessing_worker_offsets (job_id VARCHAR(64) NOT NULL, worker_index INTEGER NOT NULL,
             topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL, start_offset BIGINT NOT NULL,
             updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(), PRIMARY KEY (job_id, worker_index, topic, kafka_partition));
         INSERT INTO reprocessing_worker_offsets (job_id, worker_index, topic, kafka_partition, start_offset)
         VALUES ('{old}', 0, 't', 1, 8), ('{old}', 0, 't', 0, 7)"
    ))
    .await;
    assert_eq!(store.read_offsets().await.unwrap(), at(7));
}
