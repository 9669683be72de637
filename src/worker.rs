//! One worker's run, start to end: status row, routing, broker, the file loop, the final row.
//!
//! Start-up order: database (fatal if unreachable) → tables and job row → the stored row
//! (a `completed` row ends the run at once; an unfinished one is resumed by the rule in
//! [`crate::resume`]) → `running` → routing table → Kafka (fatal if no broker answers in time)
//! → files, in files.json order → final row.
//!
//! [`run`] connects to PostgreSQL and Kafka from the config; [`run_with`] takes the status
//! store and, optionally, the broker, which is how the in-process tests run a whole worker on
//! fakes.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Telemetry;
use crate::pipeline::{Engine, FileTask, Parts, RunEnd};
use crate::progress::Progress;
use crate::resume::Reconciled;
use crate::source::Sources;
use crate::status::{OwnTables, PgStatus, StatusError, StatusRow, StatusStore};
use rw_core::resume::{start_point, PartitionOffset, Recovered, Snapshot, StartPoint, WorkerStatus};
use rw_core::{Backoff, Broker, BrokerError, DryRun, Filter, Router};

/// How long start-up waits for the database and the repository.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a changed `running` row is written even without a wake-up (fewer than
/// [`crate::progress::FLUSH_EVERY_LINES`] lines settled).
const STATUS_TICK: Duration = Duration::from_secs(2);
/// The dry-run broker never fails; its deadline is never reached.
const DRY_RUN_DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the dead-letter writer may take to flush at the end.
const DEAD_LETTER_DRAIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Kafka(#[from] BrokerError),
    #[error(transparent)]
    Repository(#[from] crate::repository::RepositoryError),
    #[error(transparent)]
    Gcs(#[from] crate::source::gcs::GcsError),
    /// `METRICS_ADDR` could not be bound.
    #[error("METRICS_ADDR {addr}: cannot listen")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Delivery stopped mid-run (the cluster refuses this worker, or is unavailable). The
    /// resume point was written.
    /// The run's last row could not be written within `STATUS_FINAL_TIMEOUT_SECS`: the
    /// admin would never see the job end, so the run fails and is run again.
    #[error("the final row ({}) could not be written within {after:?}", status.as_str())]
    FinalRow {
        status: WorkerStatus,
        after: Duration,
        #[source]
        source: StatusError,
    },
    #[error("delivery stopped at {file} line {line}")]
    Delivery {
        file: String,
        line: u64,
        #[source]
        source: crate::pipeline::AttemptError,
    },
}

/// What a worker without READ on its topics gives up, said once at start-up.
/// Logged once the pipeline starts, before its first line is read: a run that did not log it
/// sent nothing (a test's check that every resume that sent read its topic back first).
pub const SENDING: &str = "the pipeline starts: lines are read and sent from the resume point";

const NO_READ_GIVES_UP: &str = "this worker may not read its topic (Kafka READ permission), so the resume's \
    read-back and the lost-answer check are off, and two guarantees are given up: a resumed run sends again the \
    lines after its resume point that an earlier run may have delivered (at most the bound of the README's \
    Guarantees), and a batch whose answer was lost is sent again (a duplicate of it when it had been written). \
    Grant READ on the topic (and DESCRIBE) to have them back";

/// What a run ended with (exit code 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub status: WorkerStatus,
    pub snapshot: Snapshot,
    pub failed_files: u32,
}

impl RunError {
    /// True when the run was refused for its configuration (exit code 2): the job it is
    /// given differs from the one its row was written by.
    pub fn is_config(&self) -> bool {
        matches!(self, RunError::Status(StatusError::JobChanged(_)))
    }
}

/// Runs the worker until it completes, fails fatally, or `shutdown` fires.
pub async fn run(cfg: &Config, shutdown: CancellationToken) -> Result<RunSummary, RunError> {
    let store = PgStatus::connect(&cfg.database, &cfg.job_id, cfg.worker_index, STARTUP_TIMEOUT).await?;
    run_with(cfg, &store, None, shutdown).await
}

/// Runs the worker with `store` for its row and `broker` for its batches (`None`: Kafka from
/// the config, or the dry-run broker).
pub async fn run_with(
    cfg: &Config,
    store: &dyn StatusStore,
    broker: Option<Arc<dyn Broker>>,
    shutdown: CancellationToken,
) -> Result<RunSummary, RunError> {
    let run = Run::new(cfg, store);
    // The endpoints live as long as this call.
    let serving = CancellationToken::new();
    let _serving = serving.clone().drop_guard();
    let telemetry = match cfg.metrics_addr {
        None => None,
        Some(addr) => {
            let t = Telemetry::new(&cfg.job_id, cfg.worker_index, run.assigned.len() as u32, run.total_bytes);
            let bound = crate::metrics::serve(addr, Arc::clone(&t), serving.clone())
                .await
                .map_err(|source| RunError::Metrics { addr, source })?;
            tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
            Some(t)
        }
    };
    let stats = telemetry.as_ref().map_or_else(Default::default, |t| t.stats());
    tracing::info!(
        job = cfg.job_id,
        worker = cfg.worker_index,
        of = cfg.total_workers,
        files = run.assigned.len(),
        rate_limit = %cfg.tuning.rate,
        "starting"
    );
    if let OwnTables::Unavailable { why } = store.prepare(&cfg.job.raw_json, &run.assignment()).await? {
        tracing::warn!(why, "{}", OwnTables::GIVEN_UP);
    }
    let start = match run.start_point().await {
        Ok(Ok(start)) => start,
        Ok(Err(done)) => return Ok(run.already_completed(done)),
        Err(e) => return Err(run.fail(Snapshot::default(), e).await),
    };
    store.write(&run.row(WorkerStatus::Running, start.snapshot.clone(), None), None).await?;
    let built = async {
        let connected = run.connect(broker).await?;
        if let Some(t) = &telemetry {
            t.connected();
        }
        let reconciled = run.reconcile(&connected, &start).await?;
        if let Some(r) = &reconciled.read_back {
            stats.read_back(r);
        }
        for &f in &reconciled.fallbacks {
            stats.fell_back(f);
        }
        let progress = Arc::new(Progress::new(start.snapshot.clone(), reconciled.ledger).with_stats(stats));
        if let Some(t) = &telemetry {
            t.set_progress(Arc::clone(&progress));
        }
        let (engine, dead_letters) = run.build_engine(connected, Arc::clone(&progress)).await?;
        Ok::<_, RunError>((engine, dead_letters, progress, reconciled.recovered))
    };
    let (engine, dead_letters, progress, recovered) = match built.await {
        Ok(built) => built,
        Err(e) => return Err(run.fail(start.snapshot, e).await),
    };
    tracing::info!(resumed = start.resumed, matching = recovered.is_some(), "{}", SENDING);
    let end = run.files_with_flusher(&engine, &progress, &start, recovered, &shutdown, telemetry.as_deref()).await;
    // The engine holds the dead-letter sender: dropping it lets the writer flush and end.
    drop(engine);
    if let Some(w) = dead_letters {
        drain_dead_letters(w).await;
    }
    let summary = run.finish(end, &progress).await;
    if telemetry.is_some() && !cfg.metrics_linger.is_zero() && !shutdown.is_cancelled() {
        tracing::info!(secs = cfg.metrics_linger.as_secs(), "serving the final metrics for a last scrape");
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(cfg.metrics_linger) => {}
        }
    }
    summary
}

/// How the file loop ended.
struct FilesEnd {
    status: WorkerStatus,
    /// The files given up, with why.
    failed: Vec<String>,
    /// Why delivery stopped the run, if it did.
    stopped: Option<RunError>,
}

/// The routing table and the broker, with the partition count of each of the router's topics.
struct Connected {
    router: Router,
    broker: Arc<dyn Broker>,
    partitions: Vec<i32>,
    /// Whether this worker may read its topics back (the read-back, the lost-answer check).
    readable: bool,
    /// The sequences of the run's producer id, when the broker produces idempotently.
    sequencer: Option<Arc<rw_core::Sequencer>>,
}

impl Connected {
    /// The router's topics and their partition counts.
    fn topics(&self) -> Vec<(String, i32)> {
        self.router.topics().iter().cloned().zip(self.partitions.iter().copied()).collect()
    }

    /// The router's topics and the partitions of each this worker sends to.
    fn own(&self, spread: rw_core::Spread) -> Vec<(String, Vec<i32>)> {
        self.topics().into_iter().map(|(t, n)| (t, spread.partitions(n))).collect()
    }
}

/// One run's fixed facts, and its steps.
struct Run<'a> {
    cfg: &'a Config,
    store: &'a dyn StatusStore,
    /// This worker's files, as positions in files.json.
    assigned: Vec<usize>,
    total_bytes: u64,
}

type DeadLetterWriter = tokio::task::JoinHandle<Result<crate::deadletter::Written, crate::deadletter::DeadLetterError>>;

impl<'a> Run<'a> {
    fn new(cfg: &'a Config, store: &'a dyn StatusStore) -> Self {
        let assigned: Vec<usize> = cfg.assigned_files().into_iter().map(|(i, _)| i).collect();
        let total_bytes = assigned.iter().map(|&i| cfg.files[i].size).sum();
        Run { cfg, store, assigned, total_bytes }
    }

    /// What this run is given, stored with its claim of the row.
    fn assignment(&self) -> rw_core::resume::Assignment {
        rw_core::resume::Assignment::of(&self.cfg.files, &self.assigned, self.cfg.total_workers)
    }

    fn path(&self, i: usize) -> &'a str {
        &self.cfg.files[self.assigned[i]].path
    }

    fn row(&self, status: WorkerStatus, snapshot: Snapshot, error: Option<String>) -> StatusRow {
        StatusRow { status, snapshot, assigned_files: self.assigned.len() as u32, total_bytes: self.total_bytes, error }
    }

    /// Where to start, or the stored snapshot when the row says this worker completed.
    async fn start_point(&self) -> Result<Result<StartPoint, Snapshot>, RunError> {
        let stored = self.store.read_row().await?;
        rw_core::resume::check_row(&self.cfg.files, &self.assigned, stored.as_ref()).map_err(StatusError::from)?;
        if let Some(done) = stored.as_ref().filter(|r| r.status == WorkerStatus::Completed) {
            return Ok(Err(done.snapshot.clone()));
        }
        let start = start_point(&self.cfg.files, &self.assigned, self.cfg.start, stored.as_ref());
        if start.snapshot.counts.total > 0 || start.first_line > 1 || start.file > 0 {
            let lines_done = start.snapshot.counts.total;
            tracing::info!(file = start.file, line = start.first_line, lines_done, "resuming");
        }
        Ok(Ok(start))
    }

    fn already_completed(&self, snapshot: Snapshot) -> RunSummary {
        tracing::info!(
            files = snapshot.processed_files,
            lines = snapshot.counts.total,
            "this worker already completed; nothing to do"
        );
        RunSummary { status: WorkerStatus::Completed, snapshot, failed_files: 0 }
    }

    /// Records `failed` with the error (best effort) and hands the error back.
    async fn fail(&self, snapshot: Snapshot, e: impl Into<RunError>) -> RunError {
        let e = e.into();
        let row = self.row(WorkerStatus::Failed, snapshot, Some(rw_core::Chain(&e).to_string()));
        let _ = self.store.write(&row, None).await;
        e
    }

    /// The routing table, and the broker with every topic the routing can use (which must
    /// exist before anything is read).
    async fn connect(&self, broker: Option<Arc<dyn Broker>>) -> Result<Connected, RunError> {
        let cfg = self.cfg;
        let streams = match &cfg.repository {
            None => None,
            Some(repo) => {
                let s = crate::repository::fetch_streams(&repo.url, &repo.token, STARTUP_TIMEOUT * 4).await?;
                tracing::info!(streams = s.len(), "loaded the streams repository");
                Some(s)
            }
        };
        let router = Router::for_job(&cfg.topic, cfg.job.routing(), streams.as_ref());
        let broker: Arc<dyn Broker> = match (broker, &cfg.kafka) {
            (Some(s), _) => s,
            (None, None) => Arc::new(DryRun),
            (None, Some(k)) => Arc::new(crate::kafka::KafkaBroker::connect(k).await?),
        };
        let partitions = broker.topics(router.topics()).await?;
        let sequencer = broker.producer_id().await?.map(rw_core::Sequencer::new);
        let mut connected = Connected { router, broker, partitions, readable: true, sequencer };
        connected.readable = self.may_read(&connected).await;
        Ok(connected)
    }

    /// Whether the cluster lets this worker read its topics (one fetch of one of its
    /// partitions of each, from just before the end). Without READ it still runs, and says
    /// once what it gives up. Any other failure is for the read-back to meet.
    async fn may_read(&self, c: &Connected) -> bool {
        for (topic, own) in c.own(self.cfg.spread) {
            let Some(&partition) = own.first() else { continue };
            let end = match c.broker.end_offset(&topic, partition).await {
                Ok(end) => end,
                Err(_) => continue,
            };
            if let Err(e @ BrokerError::ReadRefused { .. }) = c.broker.fetch(&topic, partition, (end - 1).max(0)).await
            {
                tracing::warn!(error = %e, "{}", NO_READ_GIVES_UP);
                return false;
            }
        }
        true
    }

    /// The resume step (see [`crate::resume::reconcile`]), with the stored offsets read and,
    /// where it says so, the new ones stored before anything is sent.
    async fn reconcile(&self, c: &Connected, start: &StartPoint) -> Result<Reconciled, RunError> {
        let (all, own) = (c.topics(), c.own(self.cfg.spread));
        let stored = self.store.read_offsets().await?;
        let window = self.cfg.tuning.max_unsettled_lines(self.cfg.job.batch_size) as u64;
        let caps = match c.readable {
            true => self.cfg.tuning.readback,
            false => crate::resume::readback::Caps { max_records: 0, ..self.cfg.tuning.readback },
        };
        let topics = crate::resume::Topics { all: &all, own: &own };
        let reconciled =
            crate::resume::reconcile(&c.broker, topics, start, &stored, self.ours(start), window, caps).await?;
        if let Some(offsets) = &reconciled.store_now {
            self.store.write_offsets(offsets).await?;
        }
        Ok(reconciled)
    }

    /// The keys of the lines this run may find in the topic: its files from the start point
    /// on, and in the first of them the lines from where it starts.
    fn ours(&self, start: &StartPoint) -> rw_core::Ours {
        let keys = rw_core::LineKeys::for_job(&self.cfg.job_id);
        rw_core::Ours::new((start.file..self.assigned.len()).map(|i| {
            let first = if i == start.file { start.first_line } else { 1 };
            (keys.file(self.assigned[i], self.path(i)), first)
        }))
    }

    async fn build_engine(
        &self,
        connected: Connected,
        progress: Arc<Progress>,
    ) -> Result<(Arc<Engine>, Option<DeadLetterWriter>), RunError> {
        let cfg = self.cfg;
        let partitions = connected.own(cfg.spread).into_iter().map(|(_, own)| own).collect();
        let Connected { router, broker, readable, sequencer, .. } = connected;
        let delivery_timeout = cfg.kafka.as_ref().map_or(DRY_RUN_DELIVERY_TIMEOUT, |k| k.delivery_timeout);
        let dead_letters_on_s3 = matches!(cfg.dead_letter, Some(crate::deadletter::Destination::S3 { .. }));
        let paths = self.assigned.iter().map(|&i| cfg.files[i].path.as_str());
        let sources = Sources::for_paths(paths, dead_letters_on_s3).await?.with_stats(Arc::clone(progress.stats()));
        let (dead_letters, writer) = match &cfg.dead_letter {
            None => (None, None),
            Some(dest) => {
                let p = Arc::clone(&progress);
                let settle: crate::deadletter::Settle = Box::new(move |seqs, written| p.settle_letters(seqs, written));
                let s3 = sources.s3().cloned();
                let (tx, handle) =
                    crate::deadletter::start(dest.clone(), cfg.job_id.clone(), cfg.worker_index, s3, settle);
                (Some(tx), Some(handle))
            }
        };
        let filter = Filter::new(&cfg.job.stream_ids, cfg.job.date_from, cfg.job.date_to).with_events(&cfg.job.events);
        let keys = rw_core::LineKeys::for_job(&cfg.job_id);
        let parts = Parts {
            filter,
            router,
            broker,
            partitions,
            delivery_timeout,
            sources,
            progress,
            dead_letters,
            keys,
            look_for_lost_answers: readable,
            spread_seed: cfg.spread_seed(),
            sequencer,
        };
        Ok((Arc::new(Engine::new(parts, cfg.tuning.clone(), &cfg.job)), writer))
    }

    /// The file loop, with the status flusher and the progress line beside it.
    async fn files_with_flusher(
        &self,
        engine: &Arc<Engine>,
        progress: &Arc<Progress>,
        start: &StartPoint,
        recovered: Option<Recovered>,
        shutdown: &CancellationToken,
        telemetry: Option<&Telemetry>,
    ) -> FilesEnd {
        let stop = CancellationToken::new();
        let on_turn = |turn: Turn| {
            if let Some(t) = telemetry {
                match turn {
                    Turn::Woke => t.turned(),
                    Turn::Wrote => t.database(true),
                    Turn::WriteFailed => t.database(false),
                }
            }
        };
        // Stopped by shutdown, or by the flusher when another run took the row over.
        let files_stop = shutdown.child_token();
        let n_assigned = self.assigned.len() as u32;
        let flusher = async {
            let flusher = Flusher {
                store: self.store,
                assigned_files: n_assigned,
                total_bytes: self.total_bytes,
                min_interval: self.cfg.tuning.status_min_interval,
                tick: STATUS_TICK,
                on_turn: Some(&on_turn),
            };
            let r = flusher.run(progress.as_ref(), stop.clone(), drop).await;
            if r.is_err() {
                files_stop.cancel();
            }
            r
        };
        let display = async {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                crate::progress::display::run(Arc::clone(progress), n_assigned, self.total_bytes, stop.clone()).await;
            }
        };
        let files = async {
            let r = self.process_files(engine, progress, start, recovered, &files_stop).await;
            stop.cancel();
            r
        };
        let (mut end, flushed, ()) = tokio::join!(files, flusher, display);
        if let Some(t) = telemetry {
            t.run_ended();
        }
        if let Err(lost) = flushed {
            end.stopped = Some(lost.into());
        }
        end
    }

    /// Every assigned file from the start point on, in order, several in flight.
    async fn process_files(
        &self,
        engine: &Arc<Engine>,
        progress: &Progress,
        start: &StartPoint,
        recovered: Option<Recovered>,
        shutdown: &CancellationToken,
    ) -> FilesEnd {
        let files = (start.file..self.assigned.len())
            .map(|i| FileTask {
                index: self.assigned[i],
                path: self.path(i).to_owned(),
                first_line: if i == start.file { start.first_line } else { 1 },
                listed_size: self.cfg.files[self.assigned[i]].size,
            })
            .collect();
        let end = engine.run(files, recovered, shutdown).await;
        let failed = progress.failed_files();
        match end {
            RunEnd::Cancelled => FilesEnd { status: WorkerStatus::Cancelled, failed, stopped: None },
            RunEnd::Stopped(source) => {
                let s = progress.snapshot();
                let file = s.current_file.unwrap_or_default();
                let e = RunError::Delivery { file, line: s.current_line, source };
                FilesEnd { status: WorkerStatus::Failed, failed, stopped: Some(e) }
            }
            RunEnd::LimitReached => {
                tracing::info!(limit = engine.limit(), "limit reached");
                FilesEnd { status: WorkerStatus::Completed, failed, stopped: None }
            }
            RunEnd::Done => FilesEnd { status: WorkerStatus::Completed, failed, stopped: None },
        }
    }

    /// Writes the final row (retried: it matters most) and logs the summary.
    async fn finish(&self, end: FilesEnd, progress: &Progress) -> Result<RunSummary, RunError> {
        let FilesEnd { status, failed, stopped } = end;
        let offsets = progress.read_back_starts();
        let (snapshot, files_error) = (progress.snapshot(), progress.files_error());
        if let Some(RunError::Status(e)) = &stopped {
            if e.row_lost() {
                tracing::error!(error = %e, "stopping; the row is left to the run that owns it");
                return Err(stopped.expect("checked"));
            }
        }
        let error = match &stopped {
            Some(e) => Some(rw_core::Chain(e).to_string()),
            None if status == WorkerStatus::Cancelled => Some(cancelled_error(&snapshot, files_error.as_deref())),
            None => files_error,
        };
        // An unfinished run's offsets go with its final row, for the run that resumes it.
        let offsets = (status != WorkerStatus::Completed && !offsets.is_empty()).then_some(offsets.as_slice());
        // After SIGTERM the pod has its grace period, not the final row's whole deadline.
        let deadline = match status {
            WorkerStatus::Cancelled => self.cfg.tuning.shutdown_timeout,
            _ => self.cfg.tuning.status_final_timeout,
        };
        let row = self.row(status, snapshot.clone(), error);
        if let Err(e) = write_final(self.store, &row, offsets, deadline, self.cfg.spread_seed()).await {
            if let RunError::Status(lost) = &e {
                tracing::error!(error = %lost, "stopping; the row is left to the run that owns it");
            }
            return Err(e);
        }
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
        match stopped {
            Some(e) => Err(e),
            None => Ok(RunSummary { status, snapshot, failed_files: failed.len() as u32 }),
        }
    }
}

/// The `error` of a row whose run SIGTERM stopped: the column says `failed` (the admin knows
/// no other end), so the cancellation and its resume point are told here.
fn cancelled_error(at: &Snapshot, files_error: Option<&str>) -> String {
    let point = match &at.current_file {
        Some(file) => format!("every line up to {file} line {} is delivered", at.current_line),
        None => "before its first line".to_owned(),
    };
    let mut e = format!("cancelled by SIGTERM: {point}; a new run of this worker resumes after it");
    if let Some(files) = files_error {
        e.push_str("; ");
        e.push_str(files);
    }
    e
}

/// Waits a bounded time for the dead-letter writer to flush.
async fn drain_dead_letters(writer: DeadLetterWriter) {
    match tokio::time::timeout(DEAD_LETTER_DRAIN, writer).await {
        Ok(Ok(Ok(w))) if w.lost > 0 => {
            tracing::error!(records = w.letters, lost = w.lost, "dead letters written, some lost")
        }
        Ok(Ok(Ok(w))) if w.letters > 0 => tracing::info!(records = w.letters, "dead letters written"),
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %rw_core::Chain(&e), "dead letters could not be written"),
        Ok(Err(e)) => tracing::error!(error = %e, "dead-letter writer failed"),
        Err(_) => tracing::error!("dead-letter writer did not finish within {DEAD_LETTER_DRAIN:?}"),
    }
}

/// The final row matters most: the job ends only when its row says so. It is retried with
/// [`Backoff::FINAL_ROW`] until `deadline` (a database restart of a minute or two is ridden
/// out); past it the run fails ([`RunError::FinalRow`], a non-zero exit) so that Kubernetes
/// runs the index again, and that run finds everything delivered and writes the row at once.
/// Fails at once when the row was lost to another run (then this run must not claim it
/// ended).
async fn write_final(
    store: &dyn StatusStore,
    row: &StatusRow,
    offsets: Option<&[PartitionOffset]>,
    deadline: Duration,
    seed: u64,
) -> Result<(), RunError> {
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        let e = match store.write(row, offsets).await {
            Ok(()) => return Ok(()),
            Err(e) if e.row_lost() => return Err(e.into()),
            Err(e) => e,
        };
        attempt += 1;
        let pause = Backoff::FINAL_ROW.delay_spread(attempt, seed).unwrap_or(Backoff::FINAL_ROW.max);
        if started.elapsed() + pause > deadline {
            tracing::error!(
                attempts = attempt,
                secs = started.elapsed().as_secs(),
                error = %rw_core::Chain(&e),
                "final status write failed; giving up, the run exits non-zero so that it is run again"
            );
            return Err(RunError::FinalRow { status: row.status, after: started.elapsed(), source: e });
        }
        tracing::warn!(attempt, error = %rw_core::Chain(&e), "final status write failed");
        tokio::time::sleep(pause).await;
    }
}

/// Best effort, for errors before a [`Config`] exists: records `failed` with the error when
/// the database and the worker's identity are known.
pub async fn report_config_failure(args: &crate::config::WorkerArgs, error: &str) {
    let (Some(job), Ok(idx), Some(url)) = (args.job_id.as_deref(), args.index(), args.database_url.as_deref()) else {
        return;
    };
    let Ok(store) = PgStatus::connect_to(url, job, idx, Duration::from_secs(5)).await else { return };
    let workers = args.total_workers.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
    let nothing = rw_core::resume::Assignment::of(&[], &[], workers);
    if store.prepare("{}", &nothing).await.is_err() {
        return;
    }
    let row = StatusRow {
        status: WorkerStatus::Failed,
        snapshot: Snapshot::default(),
        assigned_files: 0,
        total_bytes: 0,
        error: Some(error.to_owned()),
    };
    let _ = store.write(&row, None).await;
}

pub mod flusher;
use flusher::{Flusher, Turn};

#[cfg(test)]
mod readback_tests;
#[cfg(test)]
mod tests;
