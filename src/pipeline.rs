//! The run's files, end to end: the opener task, the CPU stage (`cpu`) and the producer
//! (`producer`), wired by [`Engine::run`]. The data flow and the bound of every queue are
//! drawn once, in ARCHITECTURE.md.
//!
//! Several files are in flight at once. The opener starts the reads of the next files (up to
//! `FILES_IN_FLIGHT`, each holding at most one chunk until its turn), the CPU stage parses
//! them one after another, and the producer delivers batches whichever file they came from,
//! so the acknowledgements of one file's last batches overlap the reading and parsing of the
//! next. A file's slot is free again only when the watermark passes its end.
//!
//! Every queue is bounded, so slow acknowledgements fill the batch queue, which blocks the
//! CPU thread, which stops draining the chunk queue, which stops the reads. The CPU stage also
//! never runs more than [`Engine::max_unsettled_lines`] lines ahead of the watermark, over all
//! files in flight: at that bound it sends every open batch and waits for the watermark to
//! move. That bounds the tracker's memory and the lines re-sent after a crash.
//!
//! A file is read up to `retry_attempts` times in all; each pass re-reads it and skips the lines
//! already handed on, so a delivered line is never sent again by this process. A file given
//! up ends where its reading stopped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Tuning;
use crate::progress::Progress;
use crate::source::{Chunks, SourceError, Sources};
use rw_core::{Backoff, Batch, Broker, BrokerError, DecodeError, Filter, JobOptions, Location, Router};

mod cpu;
mod landed;
mod producer;

use cpu::{CpuEnd, CpuStage};
use producer::{Producer, ProducerSettings};

/// The pipeline's fixed parts, built once per worker.
pub struct Engine {
    filter: Filter,
    router: Router,
    /// The keys of lines without a `messageId`.
    keys: rw_core::LineKeys,
    sources: Sources,
    progress: Arc<Progress>,
    tuning: Tuning,
    /// Records per batch (the job's `batch_size`).
    batch_size: usize,
    /// Retries of a failed pass over a file.
    file_retry: Backoff,
    /// Most lines to deliver over the whole job (the job's `limit`), over every run of
    /// this worker.
    limit: Option<u64>,
    /// Lines delivered by earlier runs (up to the resume point), queued for delivery by this
    /// one (first sends only), or found in the topic by its read-back.
    queued: AtomicU64,
    producer: Arc<Producer>,
    /// Dead letters, when `DEAD_LETTER_PATH` is set.
    dead_letters: Option<crate::deadletter::Sender>,
}

/// What the engine works with, built by the worker at start-up.
pub struct Parts {
    pub filter: Filter,
    pub router: Router,
    pub broker: Arc<dyn Broker>,
    /// Per topic of the router, the partitions this worker sends to (see [`rw_core::Spread`]).
    pub partitions: Vec<Vec<i32>>,
    /// How long one batch may keep failing transiently before the cluster counts as
    /// unavailable (`KAFKA_DELIVERY_TIMEOUT_SECS`).
    pub delivery_timeout: std::time::Duration,
    pub sources: Sources,
    pub progress: Arc<Progress>,
    /// Where lines counted as errors go, when `DEAD_LETTER_PATH` is set.
    pub dead_letters: Option<crate::deadletter::Sender>,
    /// The keys of lines without a `messageId`.
    pub keys: rw_core::LineKeys,
    /// Whether a batch whose answer was lost is looked for before it is sent again: false
    /// when this worker may not read the topic (no READ permission).
    pub look_for_lost_answers: bool,
    /// This worker's seed for the spread of its retry pauses
    /// ([`rw_core::spread_seed`]).
    pub spread_seed: u64,
    /// The sequences of the run's producer id, when produce is idempotent.
    pub sequencer: Option<Arc<rw_core::Sequencer>>,
}

/// One file of the run, in files.json order.
#[derive(Debug, Clone)]
pub struct FileTask {
    /// Its position in files.json (part of its lines' keys).
    pub index: usize,
    pub path: String,
    /// Lines before this one are skipped (the resume point, or `start_line`).
    pub first_line: u64,
    /// The size files.json lists (a hint; the file is read as it is).
    pub listed_size: u64,
}

/// A file opened ahead of its turn: its reader started, its slot taken.
struct Opened {
    task: FileTask,
    /// Where it is and its reader's chunks, or why it cannot be opened.
    source: Result<(Location, Chunks), SourceError>,
    /// Lets the reader read past its first chunk.
    gate: Arc<Notify>,
    slot: OwnedSemaphorePermit,
    /// Its share of [`OPEN_AHEAD_KIB`] (its first chunk), until its turn.
    held: OwnedSemaphorePermit,
}

/// The smallest first read of a file opened ahead, whatever size files.json lists, in bytes.
pub const MIN_FIRST_READ: usize = 64 * 1024;

/// What the files opened ahead of their turn may hold together (their first chunks), in KiB.
/// A file's first read is no larger than its share: its listed size (most files are read
/// whole by it; at least [`MIN_FIRST_READ`]), else one read chunk.
pub const OPEN_AHEAD_KIB: u32 = 64 * 1024;

/// How the run's files ended.
#[derive(Debug)]
pub enum RunEnd {
    /// Every file was read and every line settled (some files may have been given up).
    Done,
    /// The run's `limit` was reached.
    LimitReached,
    /// Shutdown was requested.
    Cancelled,
    /// The run must stop: the cluster refuses this worker, or is unavailable, or a stage
    /// failed.
    Stopped(AttemptError),
}

/// Why a pass over a file failed, or why the run stopped.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("cannot open the file")]
    Open(#[source] crate::source::SourceError),
    #[error(transparent)]
    Decode(#[from] DecodeError<crate::source::SourceError>),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("cannot start the parser thread")]
    SpawnParser(#[source] std::io::Error),
    #[error("the parser thread panicked")]
    ParserPanicked,
    #[error("a produce task panicked")]
    ProduceTaskPanicked(#[source] tokio::task::JoinError),
    #[error("the producer stopped taking batches")]
    ProducerStopped,
    #[error("the cluster refuses this worker")]
    KafkaFatal(#[source] BrokerError),
    #[error("Kafka unavailable since {since}")]
    KafkaUnavailable {
        since: String,
        #[source]
        last: BrokerError,
    },
    #[error("delivery stopped")]
    Stopped,
}

impl AttemptError {
    /// True when reading the file again cannot help: it cannot be opened (missing, forbidden,
    /// an untrusted server certificate), however far the read got.
    pub fn permanent(&self) -> bool {
        use crate::source::SourceError;
        matches!(self, AttemptError::Open(_) | AttemptError::Decode(DecodeError::Source(SourceError::Open(_))))
    }
}

impl Engine {
    /// The engine for one worker: `tuning` bounds its queues, `job` gives the batch size,
    /// the file retries and the run's limit.
    pub fn new(parts: Parts, tuning: Tuning, job: &JobOptions) -> Self {
        let Parts {
            filter,
            router,
            broker,
            partitions,
            delivery_timeout,
            sources,
            progress,
            dead_letters,
            keys,
            look_for_lost_answers,
            spread_seed,
            sequencer,
        } = parts;
        let topics =
            router.topics().iter().cloned().zip(partitions.into_iter().chain(std::iter::repeat(vec![0]))).collect();
        let settings = ProducerSettings {
            max_in_flight: tuning.max_in_flight,
            shutdown_timeout: tuning.shutdown_timeout,
            delivery_timeout,
            rate: tuning.rate,
            look_for_lost_answers,
            spread_seed,
            sequencer,
        };
        // A resumed run continues the count: the stored counters are exact for its start.
        let delivered_before = progress.snapshot().counts.success;
        let producer = Producer::new(broker, topics, Arc::clone(&progress), settings, dead_letters.clone());
        Self {
            filter,
            router,
            keys,
            sources,
            progress,
            tuning,
            batch_size: job.batch_size,
            file_retry: Backoff::FILE.with_retries(job.retry_attempts.saturating_sub(1)),
            limit: job.limit,
            queued: AtomicU64::new(delivered_before),
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
        self.tuning.max_unsettled_lines(self.batch_size)
    }

    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|l| self.queued.load(Ordering::Relaxed) >= l)
    }

    /// Replays `files` in order: the opener task, the CPU stage on its own thread, and the
    /// producer on this task, until every file is done, the limit is reached, the run must
    /// stop, or shutdown. A resumed run's lines are matched against `recovered` first (see
    /// [`crate::resume::reconcile`]).
    pub async fn run(
        self: &Arc<Self>,
        files: Vec<FileTask>,
        recovered: Option<rw_core::resume::Recovered>,
        shutdown: &CancellationToken,
    ) -> RunEnd {
        let cancel = shutdown.child_token();
        // Bound: FILES_IN_FLIGHT files (the slots), each holding at most one chunk until its turn.
        let (ftx, frx) = mpsc::channel::<Opened>(self.tuning.files_in_flight);
        let opener = tokio::spawn(Arc::clone(self).open_ahead(files, ftx, cancel.clone()));
        // Bound: max_in_flight batches of at most batch_max_bytes each.
        let (btx, brx) = mpsc::channel::<Batch>(self.tuning.max_in_flight);
        let (done_tx, done_rx) = oneshot::channel();
        let me = Arc::clone(self);
        let cpu_cancel = cancel.clone();
        let rt = tokio::runtime::Handle::current();
        let spawned = std::thread::Builder::new().name("parser".into()).stack_size(rw_core::PARSER_STACK_BYTES).spawn(
            move || {
                let stage = CpuStage::new(&me, &btx, &cpu_cancel, rt, recovered);
                let _ = done_tx.send(stage.run(frx));
            },
        );
        if let Err(e) = spawned {
            opener.abort();
            return RunEnd::Stopped(AttemptError::SpawnParser(e));
        }
        let produced = self.producer.run(brx, &cancel, shutdown).await;
        let cpu = done_rx.await.unwrap_or(Err(AttemptError::ParserPanicked));
        cancel.cancel();
        opener.abort();
        match (produced, cpu) {
            (Err(e), _) if !matches!(e, AttemptError::Stopped) => RunEnd::Stopped(e),
            _ if shutdown.is_cancelled() => RunEnd::Cancelled,
            (_, Err(e)) => RunEnd::Stopped(e),
            (_, Ok(CpuEnd::Eof)) => RunEnd::Done,
            (_, Ok(CpuEnd::Limit)) => RunEnd::LimitReached,
            (_, Ok(CpuEnd::Cancelled)) => RunEnd::Cancelled,
        }
    }

    /// Opens the files in order, each as soon as a slot is free: starts its reader (which
    /// reads the first chunk, for a small file all of it) and queues it for the CPU stage.
    async fn open_ahead(self: Arc<Self>, files: Vec<FileTask>, tx: mpsc::Sender<Opened>, cancel: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.tuning.files_in_flight));
        let budget = Arc::new(Semaphore::new(OPEN_AHEAD_KIB as usize));
        let t = &self.tuning;
        for task in files {
            // The listed size is a hint: no first read below MIN_FIRST_READ.
            let first = match task.listed_size {
                0 => t.read_chunk_bytes,
                n => (n as usize).max(MIN_FIRST_READ).min(t.read_chunk_bytes),
            }
            .min(OPEN_AHEAD_KIB as usize * 1024);
            let kib = first.div_ceil(1024) as u32;
            let taken = async {
                let slot = Arc::clone(&slots).acquire_owned().await?;
                let held = Arc::clone(&budget).acquire_many_owned(kib).await?;
                Ok::<_, tokio::sync::AcquireError>((slot, held))
            };
            let (slot, held) = tokio::select! {
                _ = cancel.cancelled() => return,
                s = taken => match s { Ok(s) => s, Err(_) => return },
            };
            let gate = Arc::new(Notify::new());
            let source = Location::parse(&task.path).map_err(SourceError::from).map(|loc| {
                let (chunk, ahead, g) = (t.read_chunk_bytes, t.read_ahead_chunks, Some(Arc::clone(&gate)));
                let chunks = self.sources.spawn_reader(loc.clone(), chunk, first, ahead, cancel.clone(), g);
                (loc, chunks)
            });
            if tx.send(Opened { task, source, gate, slot, held }).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
