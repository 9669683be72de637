//! One worker's run, start to end: status row, routing, sink, the file loop, the final row.
//!
//! Start-up order: database (fatal if unreachable) → tables and job row → the stored row
//! (a `completed` row ends the run at once; an unfinished one is resumed from its
//! `current_file`/`current_line`, counters continuing) → `running` → routing table → Kafka
//! (fatal if no broker answers in time) → files, in files.json order → final row.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, RoutingSource};
use crate::filter::Filter;
use crate::pipeline::{Engine, FileOutcome};
use crate::progress::{Progress, Snapshot};
use crate::route::Router;
use crate::sink::{DryRun, Sink, SinkError};
use crate::source::Sources;
use crate::status::{PgStatus, StatusError, StatusRow, StatusStore, WorkerStatus};

/// How long start-up waits for the database and the repository.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the `running` row is refreshed even when fewer than 1000 lines settled.
const STATUS_TICK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Kafka(#[from] SinkError),
    #[error(transparent)]
    Repository(#[from] crate::repository::RepositoryError),
    #[error("start_file {0:?} is not in files.json")]
    StartFile(String),
}

/// What a run ended with (exit code 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub status: WorkerStatus,
    pub snapshot: Snapshot,
    pub failed_files: u32,
}

/// Where this worker starts: an index into its assigned files and the first line there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPoint {
    pub file: usize,
    pub first_line: u64,
    pub snapshot: Snapshot,
}

/// Applies `start_file`/`start_line` and a stored resume point to the assigned files.
/// `assigned` holds (position in files.json, path). Pure.
pub fn start_point(
    cfg: &Config,
    assigned: &[(usize, &str)],
    stored: Option<&crate::status::StoredRow>,
) -> Result<StartPoint, RunError> {
    let base_name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    let mut start = StartPoint { file: 0, first_line: 1, snapshot: Snapshot::default() };
    if let Some(sf) = &cfg.job.start_file {
        let pos = cfg
            .files
            .iter()
            .position(|f| f.path == *sf || base_name(&f.path) == *sf)
            .ok_or_else(|| RunError::StartFile(sf.clone()))?;
        start.file = assigned.iter().position(|(p, _)| *p >= pos).unwrap_or(assigned.len());
        if assigned.get(start.file).is_some_and(|(p, _)| *p == pos) {
            start.first_line = cfg.job.start_line + 1;
        }
    }
    let Some(row) = stored else { return Ok(start) };
    if !matches!(row.status.as_str(), "running" | "failed" | "cancelled") {
        return Ok(start);
    }
    let Some(cur) = row.snapshot.current_file.as_deref() else { return Ok(start) };
    let Some(idx) = assigned.iter().position(|(_, p)| *p == cur) else { return Ok(start) };
    if idx < start.file {
        return Ok(start);
    }
    // processed_files counts the files attempted from the start file on; if it already
    // covers `cur`, that file was finished and the run goes on with the next one.
    let finished_cur = row.snapshot.processed_files as usize > idx - start.file;
    let first_line = if finished_cur {
        1
    } else if idx == start.file {
        (row.snapshot.current_line + 1).max(start.first_line)
    } else {
        row.snapshot.current_line + 1
    };
    let file = if finished_cur { idx + 1 } else { idx };
    let mut snapshot = row.snapshot.clone();
    // Bytes of the files before the resume point; a partly read file counts again from 0.
    snapshot.processed_bytes = assigned[start.file..file].iter().map(|(p, _)| cfg.files[*p].size).sum();
    Ok(StartPoint { file, first_line, snapshot })
}

/// Runs the worker until it completes, fails fatally, or `shutdown` fires.
pub async fn run(cfg: &Config, shutdown: CancellationToken) -> Result<RunSummary, RunError> {
    let store = PgStatus::connect(&cfg.database_url, &cfg.job_id, cfg.worker_index, STARTUP_TIMEOUT).await?;
    let assigned_entries = cfg.assigned_files();
    let assigned: Vec<(usize, &str)> = assigned_entries.iter().map(|(i, f)| (*i, f.path.as_str())).collect();
    let total_bytes: u64 = assigned_entries.iter().map(|(_, f)| f.size).sum();
    let n_assigned = assigned.len() as u32;
    store.prepare(&cfg.job.raw_json, cfg.files.len() as u32, cfg.total_workers).await?;
    let stored = store.read_row().await?;
    if let Some(row) = stored.as_ref().filter(|r| r.status == "completed") {
        tracing::info!(files = row.snapshot.processed_files, lines = row.snapshot.counts.total, "this worker already completed; nothing to do");
        return Ok(RunSummary { status: WorkerStatus::Completed, snapshot: row.snapshot.clone(), failed_files: 0 });
    }
    let fail = |snapshot: Snapshot, e: &RunError| StatusRow {
        status: WorkerStatus::Failed,
        snapshot,
        assigned_files: n_assigned,
        total_bytes,
        error: Some(e.to_string()),
    };
    let start = match start_point(cfg, &assigned, stored.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            let _ = store.write(&fail(Snapshot::default(), &e)).await;
            return Err(e);
        }
    };
    if start.snapshot.counts.total > 0 || start.first_line > 1 || start.file > 0 {
        tracing::info!(file = start.file, line = start.first_line, lines_done = start.snapshot.counts.total, "resuming");
    }
    let progress = Arc::new(Progress::new(start.snapshot.clone()));
    let running = StatusRow { status: WorkerStatus::Running, snapshot: start.snapshot.clone(), assigned_files: n_assigned, total_bytes, error: None };
    store.write(&running).await?;

    let (engine, dead_letter_writer) = match build_engine(cfg, Arc::clone(&progress), &assigned).await {
        Ok((e, w)) => (Arc::new(e), w),
        Err(e) => {
            let _ = store.write(&fail(start.snapshot.clone(), &e)).await;
            return Err(e);
        }
    };

    let stop_flusher = CancellationToken::new();
    let flusher = {
        let (progress, stop) = (Arc::clone(&progress), stop_flusher.clone());
        let store = &store;
        async move { crate::status::run_flusher(store, &progress, n_assigned, total_bytes, STATUS_TICK, stop).await }
    };
    let files = async {
        let mut failed = Vec::new();
        let mut status = WorkerStatus::Completed;
        for (i, (pos, path)) in assigned.iter().enumerate().skip(start.file) {
            let first_line = if i == start.file { start.first_line } else { 1 };
            let before = progress.snapshot().counts;
            let started = std::time::Instant::now();
            let (outcome, size) = engine.process_file(path, first_line, &shutdown).await;
            if outcome == FileOutcome::Cancelled {
                status = WorkerStatus::Cancelled;
                break;
            }
            // A failed file's resume point, for a later retry (start_file/start_line).
            let failed_at = progress.snapshot().current_line;
            // Count the size the job listed (total_bytes is their sum); the real size if unlisted.
            let listed = cfg.files[*pos].size;
            progress.finish_file(if listed > 0 { listed } else { size });
            let c = progress.snapshot().counts;
            let secs = started.elapsed().as_secs_f64();
            match &outcome {
                FileOutcome::Failed(reason) => {
                    tracing::error!(file = *path, resume_line = failed_at, error = %reason, success = c.success - before.success, "file failed");
                    failed.push(format!("{path} (settled up to line {failed_at}): {reason}"));
                }
                _ => tracing::info!(
                    file = *path,
                    lines = c.total - before.total,
                    success = c.success - before.success,
                    errors = c.error - before.error,
                    skipped = c.skipped - before.skipped,
                    secs = format_args!("{secs:.2}"),
                    "file done"
                ),
            }
            if outcome == FileOutcome::LimitReached {
                tracing::info!(limit = engine.opts.limit, "limit reached");
                break;
            }
        }
        stop_flusher.cancel();
        (status, failed)
    };
    let display = async {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            crate::display::run(Arc::clone(&progress), n_assigned, total_bytes, stop_flusher.clone()).await;
        }
    };
    let ((status, failed), (), ()) = tokio::join!(files, flusher, display);

    // The engine holds the dead-letter sender: dropping it lets the writer flush and end.
    drop(engine);
    if let Some(w) = dead_letter_writer {
        match tokio::time::timeout(Duration::from_secs(60), w).await {
            Ok(Ok(Ok(n))) if n > 0 => tracing::info!(records = n, "dead letters written"),
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "dead letters could not be written"),
            Ok(Err(e)) => tracing::error!(error = %e, "dead-letter writer failed"),
            Err(_) => tracing::error!("dead-letter writer did not finish within 60 s"),
        }
    }
    let snapshot = progress.snapshot();
    let error = match failed.len() {
        0 => None,
        1 => Some(format!("1 file failed: {}", failed[0])),
        n => Some(format!("{n} files failed; last: {}", failed[n - 1])),
    };
    let last = StatusRow { status, snapshot: snapshot.clone(), assigned_files: n_assigned, total_bytes, error };
    write_final(&store, &last).await;
    tracing::info!(
        status = status.as_str(),
        lines = snapshot.counts.total,
        success = snapshot.counts.success,
        errors = snapshot.counts.error,
        skipped = snapshot.counts.skipped,
        files = snapshot.processed_files,
        failed_files = failed.len(),
        "worker finished"
    );
    Ok(RunSummary { status, snapshot, failed_files: failed.len() as u32 })
}

/// The final row matters most: retry it for a while before giving up.
async fn write_final(store: &dyn StatusStore, row: &StatusRow) {
    for attempt in 0..10u32 {
        match store.write(row).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(attempt, error = %e, "final status write failed");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt + 1))).await;
            }
        }
    }
}

type DeadLetterWriter = tokio::task::JoinHandle<Result<u64, crate::deadletter::DeadLetterError>>;

async fn build_engine(cfg: &Config, progress: Arc<Progress>, assigned: &[(usize, &str)]) -> Result<(Engine, Option<DeadLetterWriter>), RunError> {
    let router = match &cfg.routing {
        RoutingSource::Fixed(ids) => Router::fixed(&cfg.topic, ids),
        RoutingSource::Repository { url, token } => {
            let r = crate::repository::fetch_router(url, token, &cfg.topic, STARTUP_TIMEOUT * 4).await?;
            tracing::info!(streams = r.streams(), topics = r.topics().len(), "loaded the streams repository");
            r
        }
    };
    let sink: Arc<dyn Sink> = match &cfg.kafka {
        None => Arc::new(DryRun),
        Some(k) => Arc::new(crate::kafka::KafkaSink::connect(k).await?),
    };
    let needs_s3 = assigned.iter().any(|(_, p)| p.starts_with("s3://"));
    let s3 = if needs_s3 { Some(crate::source::s3_client().await) } else { None };
    let filter = Filter::new(&cfg.job.stream_ids, cfg.job.date_from, cfg.job.date_to);
    let mut engine = Engine::new(filter, router, sink, Sources::new(s3.clone()), progress, cfg.into());
    let mut writer = None;
    if let Some(dest) = &cfg.dead_letter {
        let s3 = match (dest, s3) {
            (crate::deadletter::Destination::S3 { .. }, None) => Some(crate::source::s3_client().await),
            (_, s3) => s3,
        };
        let (tx, handle) = crate::deadletter::start(dest.clone(), cfg.job_id.clone(), cfg.worker_index, s3);
        engine = engine.with_dead_letters(tx);
        writer = Some(handle);
    }
    Ok((engine, writer))
}

/// Best effort, for errors before a [`Config`] exists: records `failed` with the error when
/// the database and the worker's identity are known.
pub async fn report_config_failure(args: &crate::config::WorkerArgs, error: &str) {
    let (Some(job), Ok(idx), Some(url)) = (args.job_id.as_deref(), args.index(), args.database_url.as_deref()) else {
        return;
    };
    let url = crate::secret::Secret::new(url);
    let Ok(store) = PgStatus::connect(&url, job, idx, Duration::from_secs(5)).await else { return };
    if store.prepare("{}", 0, args.total_workers.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)).await.is_err() {
        return;
    }
    let row = StatusRow { status: WorkerStatus::Failed, snapshot: Snapshot::default(), assigned_files: 0, total_bytes: 0, error: Some(error.to_owned()) };
    let _ = store.write(&row).await;
}

#[cfg(test)]
mod tests;
