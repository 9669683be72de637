//! One file, end to end: reader task → CPU thread (decode, split, decide, batch) → producer.
//!
//! ```text
//!  reader task ──Bytes──▶ CPU thread ──Batch──▶ producer ──▶ Sink (Kafka)
//!   (ranged reads)  [read_ahead_chunks]    [max_in_flight]   ≤ max_in_flight requests
//!                          │ line states, per chunk                │ acks, per batch
//!                          └──────────────▶ Progress (watermark) ◀─┘
//! ```
//!
//! Every queue is bounded, so slow acknowledgements fill the batch queue, which blocks the
//! CPU thread, which stops draining the chunk queue, which stops the reads. The CPU thread
//! also never runs more than [`Engine::max_unsettled_lines`] lines ahead of the watermark:
//! at that bound it sends every open batch and waits for acks. That bounds the tracker's
//! memory and the lines re-sent after a crash. A file is tried
//! up to `1 + retry_attempts` times; each attempt re-reads the file and skips the lines the
//! tracker already settled, so a delivered line is never sent again by this process.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::batcher::{Batcher, Decision};
use crate::decode::{decode, DecodeError};
use crate::filter::Filter;
use crate::lines::LineSplitter;
use crate::progress::Progress;
use crate::route::Router;
use crate::sink::{Batch, Sink, SinkError};
use crate::source::{Location, SourceError, Sources};
use crate::tracker::{Counts, LineState};

mod producer;

/// Stack of the CPU thread, in bytes: room for JSON nested to `extract::MAX_DEPTH`.
pub const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// How often (in lines) the CPU thread checks how far it is ahead of the watermark.
const WINDOW_CHECK_LINES: u64 = 256;

/// Bad lines logged per file attempt; the rest are only counted.
const LOGGED_BAD_LINES: u32 = 5;

/// Bounds and options of the pipeline (from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Records per batch.
    pub batch_size: usize,
    /// Bytes of values per batch.
    pub batch_max_bytes: usize,
    /// Longest line, in bytes.
    pub max_line: usize,
    /// One ranged read, in bytes.
    pub read_chunk_bytes: usize,
    /// Reads buffered ahead, in chunks.
    pub read_ahead_chunks: usize,
    /// Produce requests in flight (and batches queued), in batches.
    pub max_in_flight: usize,
    pub retry_attempts: u32,
    pub shutdown_timeout: Duration,
    /// Most lines to queue for delivery over the whole run.
    pub limit: Option<u64>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            batch_size: crate::jobfile::DEFAULT_BATCH_SIZE,
            batch_max_bytes: 1 << 20,
            max_line: 16 << 20,
            read_chunk_bytes: 8 << 20,
            read_ahead_chunks: 2,
            max_in_flight: 8,
            retry_attempts: crate::jobfile::DEFAULT_RETRY_ATTEMPTS,
            shutdown_timeout: Duration::from_secs(10),
            limit: None,
        }
    }
}

impl From<&crate::config::Config> for EngineOptions {
    fn from(cfg: &crate::config::Config) -> Self {
        Self {
            batch_size: cfg.job.batch_size,
            batch_max_bytes: cfg.tuning.batch_max_bytes,
            max_line: cfg.tuning.max_line_bytes,
            read_chunk_bytes: cfg.tuning.read_chunk_bytes,
            read_ahead_chunks: cfg.tuning.read_ahead_chunks,
            max_in_flight: cfg.tuning.max_in_flight,
            retry_attempts: cfg.job.retry_attempts,
            shutdown_timeout: cfg.tuning.shutdown_timeout,
            limit: cfg.job.limit,
        }
    }
}

/// The pipeline's fixed parts, built once per worker.
pub struct Engine {
    pub filter: Filter,
    pub router: Router,
    pub sink: Arc<dyn Sink>,
    pub sources: Sources,
    pub progress: Arc<Progress>,
    pub opts: EngineOptions,
    /// Lines queued for delivery so far (first sends only).
    pub queued: AtomicU64,
    cursors: std::sync::Mutex<Vec<(i32, i32)>>,
    /// Dead letters, when `DEAD_LETTER_PATH` is set.
    pub dead_letters: Option<crate::deadletter::Sender>,
    /// With dead letters on: the bytes of lines whose batch failed (current file only;
    /// bounded by the unsettled-lines bound).
    undelivered: std::sync::Mutex<std::collections::HashMap<u64, (Vec<u8>, String)>>,
}

/// How one file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    Done,
    /// Given up after its attempts; the reason of the last one.
    Failed(String),
    /// The run's `limit` was reached in this file.
    LimitReached,
    /// Shutdown was requested.
    Cancelled,
}

#[derive(Debug, Clone, Copy)]
enum CpuEnd {
    Eof,
    Limit,
    Cancelled,
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("parser thread failed: {0}")]
    Thread(String),
}

impl Engine {
    pub fn new(filter: Filter, router: Router, sink: Arc<dyn Sink>, sources: Sources, progress: Arc<Progress>, opts: EngineOptions) -> Self {
        let topics = router.topics().len();
        Self {
            filter,
            router,
            sink,
            sources,
            progress,
            opts,
            queued: AtomicU64::new(0),
            cursors: std::sync::Mutex::new(vec![(0, 0); topics]),
            dead_letters: None,
            undelivered: Default::default(),
        }
    }

    /// Sends every line counted as an error to `tx` as well.
    pub fn with_dead_letters(mut self, tx: crate::deadletter::Sender) -> Self {
        self.dead_letters = Some(tx);
        self
    }

    /// Most lines of a file that may be unsettled at once: enough to keep every queue and
    /// request full, and the bound on lines re-sent after a crash (the duplicate window).
    pub fn max_unsettled_lines(&self) -> usize {
        (2 * self.opts.max_in_flight + 2) * self.opts.batch_size
    }

    fn limit_reached(&self) -> bool {
        self.opts.limit.is_some_and(|l| self.queued.load(Ordering::Relaxed) >= l)
    }

    /// Processes `path` from line `first_line` on. The file's lines are settled (or given
    /// up) when this returns; the caller records the file as processed.
    pub async fn process_file(self: &Arc<Self>, path: &str, first_line: u64, shutdown: &CancellationToken) -> (FileOutcome, u64) {
        self.progress.start_file(path, first_line);
        self.undelivered.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if self.limit_reached() {
            return (FileOutcome::LimitReached, 0);
        }
        let loc = match Location::parse(path) {
            Ok(l) => l,
            Err(e) => return (self.give_up(path, e.to_string()).await, 0),
        };
        let mut size = 0;
        let mut last_error = String::new();
        for attempt in 0..=self.opts.retry_attempts {
            if attempt > 0 {
                let pause = Duration::from_millis(200u64 << attempt.min(5));
                tracing::warn!(file = path, attempt, error = %last_error, "retrying file from line {}", self.progress.snapshot().current_line + 1);
                tokio::select! {
                    _ = shutdown.cancelled() => return (FileOutcome::Cancelled, size),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            if shutdown.is_cancelled() {
                return (FileOutcome::Cancelled, size);
            }
            size = match self.sources.size(&loc).await {
                Ok(s) => s,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            match self.attempt(path, &loc, size, shutdown).await {
                Ok(CpuEnd::Eof) => return (FileOutcome::Done, size),
                Ok(CpuEnd::Limit) => return (FileOutcome::LimitReached, size),
                Ok(CpuEnd::Cancelled) => return (FileOutcome::Cancelled, size),
                Err(e) => last_error = e.to_string(),
            }
        }
        (self.give_up(path, last_error).await, size)
    }

    /// Gives the file up: lines whose batch failed count as errors (and go to the dead
    /// letters, with the bytes kept for them).
    async fn give_up(&self, path: &str, reason: String) -> FileOutcome {
        let released: Vec<u64> = {
            let g = self.progress.lock();
            let t = g.tracker();
            (t.watermark() + 1..t.next_new_line()).filter(|&l| t.state(l) == Some(LineState::Released)).collect()
        };
        if let Some(tx) = &self.dead_letters {
            let kept = std::mem::take(&mut *self.undelivered.lock().unwrap_or_else(|p| p.into_inner()));
            for line in released {
                if let Some((data, why)) = kept.get(&line) {
                    let d = crate::deadletter::DeadLetter {
                        file: path.to_owned(),
                        line,
                        reason: format!("undeliverable: {why}"),
                        length: data.len() as u64,
                        data: Some(data.clone()),
                    };
                    let _ = tx.send(d).await;
                }
            }
        }
        self.progress.lock().apply(|t| t.give_up());
        FileOutcome::Failed(reason)
    }

    async fn attempt(self: &Arc<Self>, path: &str, loc: &Location, size: u64, shutdown: &CancellationToken) -> Result<CpuEnd, AttemptError> {
        let cancel = shutdown.child_token();
        let mut rx = self.sources.spawn_reader(loc.clone(), size, self.opts.read_chunk_bytes, self.opts.read_ahead_chunks, cancel.clone());
        // Bound: max_in_flight batches of at most batch_max_bytes each.
        let (btx, brx) = mpsc::channel::<Batch>(self.opts.max_in_flight);
        let (done_tx, done_rx) = oneshot::channel();
        let me = Arc::clone(self);
        let cpu_cancel = cancel.clone();
        let file = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name("parser".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn(move || {
                let r = me.run_cpu(&file, &mut rx, &btx, &cpu_cancel);
                let _ = done_tx.send(r);
            });
        if let Err(e) = spawned {
            return Err(AttemptError::Thread(e.to_string()));
        }
        let produced = self.run_producer(brx, &cancel, shutdown).await;
        let cpu = done_rx.await.unwrap_or_else(|_| Err(AttemptError::Thread("parser thread panicked".into())));
        // Nothing is in flight now: a line still pending was in a batch that never got an ack.
        self.progress.lock().apply(|t| {
            let pending: Vec<u64> = (t.watermark() + 1..t.next_new_line()).filter(|&l| t.state(l) == Some(LineState::Pending)).collect();
            t.resolve(&pending, LineState::Released)
        });
        produced?;
        cpu
    }

    /// The CPU stage, on its own thread.
    fn run_cpu(
        &self,
        path: &str,
        rx: &mut mpsc::Receiver<Result<Bytes, SourceError>>,
        btx: &mpsc::Sender<Batch>,
        cancel: &CancellationToken,
    ) -> Result<CpuEnd, AttemptError> {
        let first = match rx.blocking_recv() {
            None if cancel.is_cancelled() => return Ok(CpuEnd::Cancelled),
            None => return Ok(CpuEnd::Eof),
            Some(Err(e)) => return Err(DecodeError::Source(e).into()),
            Some(Ok(b)) => b,
        };
        let (resume_from, known_until) = {
            let g = self.progress.lock();
            (g.tracker().watermark() + 1, g.tracker().next_new_line())
        };
        let mut batcher = Batcher::new(&self.filter, &self.router, self.opts.batch_size, self.opts.batch_max_bytes);
        let mut splitter = LineSplitter::new(self.opts.max_line);
        let mut states: Vec<(u64, LineState)> = Vec::with_capacity(8192);
        let mut line_no = 0u64;
        let end = Cell::new(CpuEnd::Eof);
        let bad_lines = Cell::new(0u32);
        let send_failed = Cell::new(false);
        let record = |states: &mut Vec<(u64, LineState)>, created: &str| {
            let mut g = self.progress.lock();
            g.apply(|t| states.drain(..).fold(Counts::default(), |c, (l, s)| c.plus(t.record(l, s))));
            if !created.is_empty() {
                g.set_current_ts(created);
            }
        };
        let handle = |no: u64, line: crate::lines::Line<'_>, batcher: &mut Batcher, states: &mut Vec<(u64, LineState)>| -> bool {
            if no < resume_from {
                return true;
            }
            if no < known_until && self.progress.lock().tracker().is_settled(no) {
                return true;
            }
            if no % WINDOW_CHECK_LINES == 0 && self.progress.lock().tracker().window() + states.len() > self.max_unsettled_lines() {
                // Too far ahead of the watermark: send whatever holds it, then wait for acks.
                record(states, &batcher.last_created);
                batcher.flush_all(|b| {
                    if btx.blocking_send(b).is_err() {
                        send_failed.set(true);
                    }
                });
                self.progress.wait_window(self.max_unsettled_lines(), || cancel.is_cancelled() || btx.is_closed());
                if send_failed.get() {
                    return false;
                }
            }
            let allow = !self.limit_reached();
            let mut out = None;
            let decision = batcher.line(no, line, allow, |b| out = Some(b));
            let Some(decision) = decision else {
                end.set(CpuEnd::Limit);
                return false;
            };
            if decision == Decision::Queued && no >= known_until {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            if let Decision::Error(e) = &decision {
                bad_lines.set(bad_lines.get() + 1);
                if bad_lines.get() <= LOGGED_BAD_LINES {
                    tracing::warn!(line = no, error = %e, "bad line");
                }
                if let Some(tx) = &self.dead_letters {
                    let (data, length) = match line {
                        crate::lines::Line::Text(t) => (Some(t.to_vec()), t.len() as u64),
                        crate::lines::Line::TooLong { len } => (None, len),
                    };
                    let _ = tx.blocking_send(crate::deadletter::DeadLetter { file: path.to_owned(), line: no, reason: e.to_string(), data, length });
                }
            }
            states.push((no, decision.state()));
            if let Some(b) = out {
                // The tracker must know a batch's lines before its ack can arrive.
                record(states, &batcher.last_created);
                if btx.blocking_send(b).is_err() {
                    send_failed.set(true);
                    return false;
                }
            }
            true
        };
        let decoded = decode(first, rx, &self.progress.file_bytes, |chunk| {
            if cancel.is_cancelled() {
                end.set(CpuEnd::Cancelled);
                return false;
            }
            let go = splitter.feed(chunk, |line| {
                line_no += 1;
                handle(line_no, line, &mut batcher, &mut states)
            });
            record(&mut states, &batcher.last_created);
            go && !send_failed.get()
        });
        let decoded = decoded.map(|_| ());
        let at_eof = decoded.is_ok() && matches!(end.get(), CpuEnd::Eof) && !send_failed.get() && !cancel.is_cancelled();
        if at_eof {
            splitter.finish(|line| {
                line_no += 1;
                handle(line_no, line, &mut batcher, &mut states)
            });
        }
        record(&mut states, &batcher.last_created);
        batcher.flush_all(|b| {
            if btx.blocking_send(b).is_err() {
                send_failed.set(true);
            }
        });
        if bad_lines.get() > LOGGED_BAD_LINES {
            tracing::warn!(more = bad_lines.get() - LOGGED_BAD_LINES, "more bad lines in this file (not logged one by one)");
        }
        decoded?;
        // The end of the input only counts as the end of the file if nothing stopped early.
        match end.get() {
            CpuEnd::Limit => Ok(CpuEnd::Limit),
            _ if cancel.is_cancelled() => Ok(CpuEnd::Cancelled),
            _ if send_failed.get() => Err(AttemptError::Thread("the producer stopped taking batches".into())),
            e => Ok(e),
        }
    }
}
