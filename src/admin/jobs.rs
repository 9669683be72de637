//! A whole job's rows, for the `status` subcommand.

use crate::status::{PgStatus, StatusError};
use rw_core::resume::WorkerStatus;

/// One worker's row, for `status`.
#[derive(Debug, Clone, Default)]
pub struct JobRow {
    pub worker_index: i32,
    pub status: WorkerStatus,
    pub assigned_files: i64,
    pub processed_files: i64,
    pub total_lines: i64,
    pub success: i64,
    pub errors: i64,
    pub skipped: i64,
    pub total_bytes: u64,
    pub processed_bytes: u64,
    /// Seconds between started_at and updated_at.
    pub elapsed_secs: f64,
    pub current_file: Option<String>,
    pub error: Option<String>,
}

impl JobRow {
    pub fn ended(&self) -> bool {
        self.status.is_final()
    }
    pub fn lines_per_sec(&self) -> Option<f64> {
        (self.elapsed_secs > 0.0).then(|| self.total_lines as f64 / self.elapsed_secs)
    }
    pub fn bytes_per_sec(&self) -> Option<f64> {
        (self.elapsed_secs > 0.0 && !self.ended()).then(|| self.processed_bytes as f64 / self.elapsed_secs)
    }
    pub fn add(&mut self, o: &JobRow) {
        self.assigned_files += o.assigned_files;
        self.processed_files += o.processed_files;
        self.total_lines += o.total_lines;
        self.success += o.success;
        self.errors += o.errors;
        self.skipped += o.skipped;
        self.total_bytes += o.total_bytes;
        self.processed_bytes += o.processed_bytes;
    }
    pub fn to_json(&self) -> sonic_rs::Value {
        sonic_rs::json!({
            "worker_index": self.worker_index, "status": self.status.as_str(),
            "assigned_files": self.assigned_files, "processed_files": self.processed_files,
            "total_lines": self.total_lines, "success_count": self.success, "error_count": self.errors,
            "skipped_count": self.skipped, "total_bytes": self.total_bytes, "processed_bytes": self.processed_bytes,
            "lines_per_sec": self.lines_per_sec(), "current_file": self.current_file.as_deref(), "error": self.error.as_deref(),
        })
    }
}

/// The job's row in `reprocessing_jobs`: its status and rate limits.
#[derive(Debug, Clone)]
pub struct JobInfo {
    /// The job row's status (the same five values as a worker's).
    pub status: WorkerStatus,
    /// From its config (`max_events_per_sec`, `max_bytes_per_sec`), if set.
    pub limits: rw_core::RateLimits,
}

/// The job's row, or `None` when there is no job with that id.
pub async fn job_info(store: &PgStatus, job: &str) -> Result<Option<JobInfo>, StatusError> {
    let rows = query_job(
        store,
        "SELECT status, (config->>'max_events_per_sec')::bigint, (config->>'max_bytes_per_sec')::bigint
         FROM reprocessing_jobs WHERE id = $1",
        job,
    )
    .await?;
    let Some(r) = rows.first() else { return Ok(None) };
    let limit = |i: usize| r.get::<_, Option<i64>>(i).filter(|&n| n > 0).map(|n| n as u64);
    Ok(Some(JobInfo {
        status: r.get::<_, String>(0).parse()?,
        limits: rw_core::RateLimits { events_per_sec: limit(1), bytes_per_sec: limit(2) },
    }))
}

/// The workers' rows summed: what `status` prints as its total line.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub sum: JobRow,
    pub workers: usize,
    pub ended: usize,
    /// Lines a second, summed over the workers.
    pub lines_per_sec: f64,
    /// Time left at the current byte rate, while any worker runs.
    pub eta: Option<std::time::Duration>,
}

impl Totals {
    pub fn of(rows: &[JobRow]) -> Self {
        let mut t = Totals { workers: rows.len(), ..Default::default() };
        for r in rows {
            t.sum.add(r);
        }
        t.ended = rows.iter().filter(|r| r.ended()).count();
        t.lines_per_sec = rows.iter().filter_map(JobRow::lines_per_sec).sum();
        let rate: f64 = rows.iter().filter_map(JobRow::bytes_per_sec).sum();
        let left: u64 =
            rows.iter().filter(|r| !r.ended()).map(|r| r.total_bytes.saturating_sub(r.processed_bytes)).sum();
        t.eta = (rate > 0.0 && t.ended < t.workers).then(|| std::time::Duration::from_secs_f64(left as f64 / rate));
        t
    }

    pub fn to_json(&self) -> sonic_rs::Value {
        let s = &self.sum;
        sonic_rs::json!({
            "workers": self.workers, "ended": self.ended,
            "assigned_files": s.assigned_files, "processed_files": s.processed_files,
            "total_lines": s.total_lines, "success_count": s.success, "error_count": s.errors,
            "skipped_count": s.skipped, "total_bytes": s.total_bytes, "processed_bytes": s.processed_bytes,
            "lines_per_sec": self.lines_per_sec, "eta_seconds": self.eta.map(|d| d.as_secs()),
        })
    }
}

/// Runs `sql` with the job id as its one parameter.
async fn query_job(store: &PgStatus, sql: &str, job: &str) -> Result<Vec<tokio_postgres::Row>, StatusError> {
    store.with_client(move |c| async move { c.query(sql, &[&job]).await }).await
}

/// The status a worker's run ended with: the column, but `cancelled` where the worker's own
/// table says that its `failed` was a SIGTERM (when the table exists).
async fn status_expression(store: &PgStatus) -> Result<&'static str, StatusError> {
    let exists = "SELECT to_regclass('reprocessing_worker_runs') IS NOT NULL";
    let found = store.with_client(move |c| async move { c.query_one(exists, &[]).await }).await?;
    Ok(match found.get::<_, bool>(0) {
        true => {
            "CASE WHEN w.status = 'failed' AND EXISTS (SELECT 1 FROM reprocessing_worker_runs r
                WHERE r.job_id = w.job_id AND r.worker_index = w.worker_index AND r.outcome = 'cancelled')
             THEN 'cancelled' ELSE w.status END"
        }
        false => "w.status",
    })
}

/// Every worker row of `job`, by index.
pub async fn job_rows(store: &PgStatus, job: &str) -> Result<Vec<JobRow>, StatusError> {
    let sql = format!(
        "SELECT worker_index, {}, COALESCE(assigned_files, 0)::bigint, COALESCE(processed_files, 0)::bigint,
                COALESCE(total_lines, 0), COALESCE(success_count, 0), COALESCE(error_count, 0),
                COALESCE(skipped_count, 0), COALESCE(total_bytes, 0), COALESCE(processed_bytes, 0),
                COALESCE(EXTRACT(EPOCH FROM (COALESCE(completed_at, updated_at) - started_at)), 0)::float8,
                current_file, error
         FROM reprocessing_workers w WHERE job_id = $1 ORDER BY worker_index",
        status_expression(store).await?
    );
    let rows = query_job(store, &sql, job).await?;
    rows.iter()
        .map(|r| {
            Ok(JobRow {
                worker_index: r.get(0),
                status: r.get::<_, String>(1).parse()?,
                assigned_files: r.get(2),
                processed_files: r.get(3),
                total_lines: r.get(4),
                success: r.get(5),
                errors: r.get(6),
                skipped: r.get(7),
                total_bytes: r.get::<_, i64>(8).max(0) as u64,
                processed_bytes: r.get::<_, i64>(9).max(0) as u64,
                elapsed_secs: r.get(10),
                current_file: r.get(11),
                error: r.get(12),
            })
        })
        .collect()
}
