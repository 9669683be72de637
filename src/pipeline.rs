//! One file, end to end: the reader task, the CPU stage (`cpu`) and the producer
//! (`producer`), wired by [`Engine::process_file`]. The data flow and the bound of every
//! queue are drawn once, in ARCHITECTURE.md.
//!
//! Every queue is bounded, so slow acknowledgements fill the batch queue, which blocks the
//! CPU thread, which stops draining the chunk queue, which stops the reads. The CPU stage also
//! never runs more than [`Engine::max_unsettled_lines`] lines ahead of the watermark: at that
//! bound it sends every open batch and waits for the watermark to move. That bounds the
//! tracker's memory and the lines re-sent after a crash.
//!
//! A file is tried up to `1 + retry_attempts` times; each attempt re-reads the file and skips
//! the lines the tracker already settled, so a delivered line is never sent again by this
//! process. A file given up counts the lines of its failed batches as errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Tuning;
use crate::decode::DecodeError;
use crate::filter::Filter;
use crate::jobfile::JobOptions;
use crate::progress::Progress;
use crate::route::Router;
use crate::sink::{Batch, Sink, SinkError};
use crate::source::{Location, Sources};
use crate::tracker::LineState;

mod cpu;
mod producer;

use cpu::{CpuEnd, CpuStage};
use producer::{Producer, ProducerSettings};

/// Stack of the CPU thread, in bytes: room for JSON nested to `extract::MAX_DEPTH`.
pub const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// The pipeline's fixed parts, built once per worker.
pub struct Engine {
    filter: Filter,
    router: Router,
    sources: Sources,
    progress: Arc<Progress>,
    tuning: Tuning,
    /// Records per batch (the job's `batch_size`).
    batch_size: usize,
    /// Retries of a failed file attempt.
    file_retry: Backoff,
    /// Most lines to queue for delivery over the whole run (the job's `limit`).
    limit: Option<u64>,
    /// Lines queued for delivery so far (first sends only).
    queued: AtomicU64,
    producer: Arc<Producer>,
    /// Dead letters, when `DEAD_LETTER_PATH` is set.
    dead_letters: Option<crate::deadletter::Sender>,
}

/// What the engine works with, built by the worker at start-up.
pub struct Parts {
    pub filter: Filter,
    pub router: Router,
    pub sink: Arc<dyn Sink>,
    /// Partitions of each of the router's topics, as the cluster listed them at start-up.
    pub partitions: Vec<i32>,
    /// How long one batch may keep failing transiently before the cluster counts as
    /// unavailable (`KAFKA_DELIVERY_TIMEOUT_SECS`).
    pub delivery_timeout: std::time::Duration,
    pub sources: Sources,
    pub progress: Arc<Progress>,
    /// Where lines counted as errors go, when `DEAD_LETTER_PATH` is set.
    pub dead_letters: Option<crate::deadletter::Sender>,
}

/// How one file ended.
#[derive(Debug)]
pub enum FileOutcome {
    Done,
    /// Given up after its attempts (the file could not be read); the reason of the last one.
    Failed(String),
    /// The run's `limit` was reached in this file.
    LimitReached,
    /// Shutdown was requested.
    Cancelled,
    /// The run must stop: the cluster refuses this worker, or is unavailable. Not a fault of
    /// the file, which is neither retried nor given up.
    RunStopped(AttemptError),
}

/// Why one attempt at a file failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("cannot open the file")]
    Open(#[source] crate::source::SourceError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot start the parser thread")]
    SpawnParser(#[source] std::io::Error),
    #[error("the parser thread panicked")]
    ParserPanicked,
    #[error("a produce task panicked")]
    ProduceTaskPanicked(#[source] tokio::task::JoinError),
    #[error("the producer stopped taking batches")]
    ProducerStopped,
    #[error("the cluster refuses this worker")]
    KafkaFatal(#[source] SinkError),
    #[error("Kafka unavailable since {since}")]
    KafkaUnavailable {
        since: String,
        #[source]
        last: SinkError,
    },
    #[error("delivery stopped")]
    Stopped,
}

impl AttemptError {
    /// True when the run must stop rather than retry the file.
    fn stops_the_run(&self) -> bool {
        matches!(self, AttemptError::KafkaFatal(_) | AttemptError::KafkaUnavailable { .. })
    }
}

impl Engine {
    /// The engine for one worker: `tuning` bounds its queues, `job` gives the batch size,
    /// the file retries and the run's limit.
    pub fn new(parts: Parts, tuning: Tuning, job: &JobOptions) -> Self {
        let Parts { filter, router, sink, partitions, delivery_timeout, sources, progress, dead_letters } = parts;
        let topics = router.topics().iter().cloned().zip(partitions.into_iter().chain(std::iter::repeat(1))).collect();
        let settings = ProducerSettings {
            max_in_flight: tuning.max_in_flight,
            shutdown_timeout: tuning.shutdown_timeout,
            delivery_timeout,
        };
        let producer = Producer::new(sink, topics, Arc::clone(&progress), settings, dead_letters.clone());
        Self {
            filter,
            router,
            sources,
            progress,
            tuning,
            batch_size: job.batch_size,
            file_retry: Backoff::FILE.with_retries(job.retry_attempts),
            limit: job.limit,
            queued: AtomicU64::new(0),
            producer: Arc::new(producer),
            dead_letters,
        }
    }

    /// The run's `limit`, if any.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Most lines of a file that may be unsettled at once: enough to keep every queue and
    /// request full, and the bound on lines re-sent after a crash (the duplicate window).
    pub fn max_unsettled_lines(&self) -> usize {
        (2 * self.tuning.max_in_flight + 2) * self.batch_size
    }

    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|l| self.queued.load(Ordering::Relaxed) >= l)
    }

    /// Processes `path` from line `first_line` on. The file's lines are settled (or given
    /// up) when this returns; the caller records the file as processed. Returns the outcome
    /// and the file's size.
    pub async fn process_file(
        self: &Arc<Self>,
        path: &str,
        first_line: u64,
        shutdown: &CancellationToken,
    ) -> (FileOutcome, u64) {
        self.progress.start_file(path, first_line);
        if self.limit_reached() {
            return (FileOutcome::LimitReached, 0);
        }
        let loc = match Location::parse(path) {
            Ok(l) => l,
            Err(e) => return (self.give_up(path, &AttemptError::Open(e)).await, 0),
        };
        let mut size = 0;
        let mut attempt = 0;
        loop {
            if shutdown.is_cancelled() {
                return (FileOutcome::Cancelled, size);
            }
            let result = match self.sources.size(&loc).await {
                Ok(s) => {
                    size = s;
                    self.attempt(path, &loc, size, shutdown).await
                }
                Err(e) => Err(AttemptError::Open(e)),
            };
            let error = match result {
                Ok(CpuEnd::Eof) => return (FileOutcome::Done, size),
                Ok(CpuEnd::Limit) => return (FileOutcome::LimitReached, size),
                Ok(CpuEnd::Cancelled) => return (FileOutcome::Cancelled, size),
                Err(e) if e.stops_the_run() => return (FileOutcome::RunStopped(e), size),
                Err(_) if shutdown.is_cancelled() => return (FileOutcome::Cancelled, size),
                Err(e) => e,
            };
            attempt += 1;
            let Some(pause) = self.file_retry.delay(attempt) else {
                return (self.give_up(path, &error).await, size);
            };
            let from = self.progress.snapshot().current_line + 1;
            tracing::warn!(file = path, attempt, error = %crate::Chain(&error), "retrying file from line {from}");
            tokio::select! {
                _ = shutdown.cancelled() => return (FileOutcome::Cancelled, size),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Gives the file up (it could not be read to its end). Lines still unsettled would be
    /// lines whose delivery was cut short; they count as errors, so the counts add up.
    async fn give_up(&self, path: &str, error: &AttemptError) -> FileOutcome {
        let released = self.progress.lock().tracker().released();
        if released > 0 {
            tracing::warn!(file = path, lines = released, "lines left undelivered by the failed file count as errors");
        }
        self.progress.lock().apply(|t| t.give_up());
        FileOutcome::Failed(crate::Chain(error).to_string())
    }

    /// One pass over the file: the reader task, the CPU stage on its own thread, and the
    /// producer on this task, until the input ends, a batch fails, or shutdown.
    async fn attempt(
        self: &Arc<Self>,
        path: &str,
        loc: &Location,
        size: u64,
        shutdown: &CancellationToken,
    ) -> Result<CpuEnd, AttemptError> {
        let cancel = shutdown.child_token();
        let t = &self.tuning;
        let rx = self.sources.spawn_reader(loc.clone(), size, t.read_chunk_bytes, t.read_ahead_chunks, cancel.clone());
        // Bound: max_in_flight batches of at most batch_max_bytes each.
        let (btx, brx) = mpsc::channel::<Batch>(self.tuning.max_in_flight);
        let (done_tx, done_rx) = oneshot::channel();
        let me = Arc::clone(self);
        let cpu_cancel = cancel.clone();
        let file = path.to_owned();
        std::thread::Builder::new()
            .name("parser".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn(move || {
                let stage = CpuStage::new(&me, &file, &btx, &cpu_cancel);
                let _ = done_tx.send(stage.run(rx));
            })
            .map_err(AttemptError::SpawnParser)?;
        let produced = self.producer.run(brx, &cancel, shutdown).await;
        let cpu = done_rx.await.unwrap_or(Err(AttemptError::ParserPanicked));
        // Nothing is in flight now: a line still pending was in a batch that never got an ack.
        self.progress.lock().apply(|t| {
            let pending: Vec<u64> =
                (t.watermark() + 1..t.next_new_line()).filter(|&l| t.state(l) == Some(LineState::Pending)).collect();
            t.resolve(&pending, LineState::Released)
        });
        produced?;
        cpu
    }
}

#[cfg(test)]
mod tests;
