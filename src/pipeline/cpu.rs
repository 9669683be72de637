//! The CPU stage, on its own thread: takes the opened files in order, decodes their chunks,
//! splits them into lines, decides each line, batches, and hands full batches to the
//! producer. Batches span files; they are sent when full, when the stage would otherwise
//! wait for the next file, at the window bound, and at the end.
//!
//! [`CpuStage`] keeps the splitter and the line core as separate fields, so that the
//! splitter's callback can borrow the core mutably while the splitter itself is borrowed.
//! [`LineCore`] holds everything a line touches: the batcher, the states decided since the
//! last hand-over to the tracker, the file pass, and how the stage ended.
//!
//! Three rules live here:
//! - **Passes skip what was handed on.** A line before the file's first line, or one an
//!   earlier pass already recorded (unless its batch failed and released it), is passed over.
//! - **The window bound.** The stage never runs more than [`Engine::max_unsettled_lines`]
//!   lines ahead of the watermark, over every file in flight, exactly: a check of the
//!   watermark allows every line up to it plus the bound, and the next check comes at the
//!   first line past that (one comparison a line). At the bound it sends every open batch, so
//!   that everything before the current line is in flight or settled, and waits for the
//!   watermark to move.
//!   Because the wait is measured from the current line, a pass whose earlier lines lie ahead
//!   of the parser never waits on them.
//! - **A file ends before the next opens.** Its last lines are recorded and it is ended in
//!   the tracker (read to its end, given up, or cut by the limit) before the next file opens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AttemptError, Engine, Opened};
use crate::progress::OpenFile;
use crate::source::Chunks;
use rw_core::{
    decode, Advance, Batch, BatchLimits, Batcher, Decision, DecodeError, Line, LineSplitter, LineState, Location, Seq,
};

/// Bad lines logged per file pass; the rest are only counted.
const LOGGED_BAD_LINES: u32 = 5;

/// How the stage, or one pass over a file, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CpuEnd {
    /// The whole input was read.
    Eof,
    /// The run's `limit` was reached.
    Limit,
    /// Shutdown, or the run was stopped by a failed batch.
    Cancelled,
}

/// The stage: the splitter and the line core, borrowed separately.
pub(super) struct CpuStage<'a> {
    splitter: LineSplitter,
    core: LineCore<'a>,
    /// To start the reader of a file read again.
    rt: tokio::runtime::Handle,
}

/// The file being read, and where this pass is in it.
#[derive(Debug, Default)]
struct FilePass {
    path: String,
    first_line: u64,
    /// The sequence number of `first_line`.
    start: Seq,
    line_no: u64,
    /// Lines numbered from here on were never seen by an earlier pass.
    known_until: Seq,
    bad_lines: u32,
}

impl FilePass {
    fn seq(&self, line: u64) -> Seq {
        self.start + (line - self.first_line)
    }
}

/// Everything one line touches.
struct LineCore<'a> {
    engine: &'a Engine,
    batches: &'a mpsc::Sender<Batch>,
    cancel: &'a CancellationToken,
    batcher: Batcher<'a>,
    /// Decisions not yet handed to the tracker (at most one chunk's lines).
    states: Vec<(Seq, LineState)>,
    /// Dead letters of those lines, sent once they are recorded.
    letters: Vec<crate::deadletter::DeadLetter>,
    file: FilePass,
    /// What stopped this pass early: `None` while it runs (and when it read its input to the
    /// end), else [`CpuEnd::Limit`] or [`CpuEnd::Cancelled`].
    stopped: Option<CpuEnd>,
    /// The producer is gone: no batch can be handed over any more.
    producer_gone: bool,
    /// Lines before this one are within the window bound of the watermark last seen: the
    /// next check of the window comes at this line.
    window_free_until: Seq,
}

impl<'a> CpuStage<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        batches: &'a mpsc::Sender<Batch>,
        cancel: &'a CancellationToken,
        rt: tokio::runtime::Handle,
        recovered: Option<rw_core::resume::Recovered>,
    ) -> Self {
        let limits = BatchLimits {
            records: engine.batch_size,
            value_bytes: engine.tuning.batch_max_bytes,
            message_bytes: engine.tuning.max_message_bytes,
        };
        let mut batcher = Batcher::new(&engine.filter, &engine.router, limits);
        if let Some(r) = recovered {
            batcher.match_against(r);
        }
        CpuStage {
            splitter: LineSplitter::new(engine.tuning.max_line_bytes),
            core: LineCore {
                engine,
                batches,
                cancel,
                batcher,
                states: Vec::with_capacity(8192),
                letters: Vec::new(),
                file: FilePass::default(),
                stopped: None,
                producer_gone: false,
                window_free_until: 0,
            },
            rt,
        }
    }

    /// Runs the stage over the opened files until they end or something stops it.
    pub(super) fn run(mut self, mut files: mpsc::Receiver<Opened>) -> Result<CpuEnd, AttemptError> {
        let end = loop {
            let opened = match files.try_recv() {
                Ok(o) => Some(o),
                // Nothing ready: send what is batched rather than let it wait for the next file.
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.core.flush_all();
                    files.blocking_recv()
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some(opened) = opened else {
                break Ok(if self.core.cancel.is_cancelled() { CpuEnd::Cancelled } else { CpuEnd::Eof });
            };
            if self.core.engine.limit_reached() {
                break Ok(CpuEnd::Limit);
            }
            match self.file(opened) {
                Ok(CpuEnd::Eof) => {}
                other => break other,
            }
        };
        // Every decided line to the tracker, every open batch sent.
        self.core.flush_all();
        end
    }

    /// One file, with its retries: read to its end, given up, or cut short.
    fn file(&mut self, opened: Opened) -> Result<CpuEnd, AttemptError> {
        let Opened { task, source, gate, slot, held } = opened;
        let file = OpenFile::new(task.path.clone(), task.listed_size, Some(slot));
        let bytes_read = Arc::clone(&file.bytes_read);
        let start = self.core.engine.progress.lock().open(file, task.first_line);
        // Its turn: it reads on, under the current file's read-ahead bound.
        gate.notify_one();
        drop(held);
        let first_line = task.first_line.max(1);
        self.core.batcher.start_file(self.core.engine.keys.file(task.index, &task.path), start, first_line);
        self.core.file = FilePass { path: task.path, first_line, start, known_until: start, ..Default::default() };
        let (location, mut chunks) = match source {
            Ok(opened) => opened,
            Err(e) => return Ok(self.core.give_up(&AttemptError::Open(e), 1)),
        };
        let mut attempt = 0;
        loop {
            let error = match self.pass(chunks, &bytes_read) {
                Ok(CpuEnd::Eof) => {
                    self.core.end_file();
                    return Ok(CpuEnd::Eof);
                }
                Ok(CpuEnd::Limit) => {
                    self.core.end_file();
                    return Ok(CpuEnd::Limit);
                }
                Ok(CpuEnd::Cancelled) => return Ok(CpuEnd::Cancelled),
                Err(_) if self.core.cancel.is_cancelled() => return Ok(CpuEnd::Cancelled),
                Err(e) => e,
            };
            if self.core.producer_gone {
                return Err(AttemptError::ProducerStopped);
            }
            // What this pass batched goes out now; the next pass skips it.
            self.core.flush_all();
            attempt += 1;
            let retry = if error.permanent() { None } else { self.core.engine.file_retry.delay(attempt) };
            let Some(pause) = retry else {
                return Ok(self.core.give_up(&error, attempt));
            };
            let path = &self.core.file.path;
            tracing::warn!(file = path, attempt, error = %rw_core::Chain(&error), "reading the file again (lines already handed on are skipped)");
            if !self.core.pause(pause) {
                return Ok(CpuEnd::Cancelled);
            }
            chunks = self.reopen(&location);
        }
    }

    /// Starts a new reader for the file being read, from its first byte.
    fn reopen(&self, location: &Location) -> Chunks {
        let _rt = self.rt.enter();
        let t = &self.core.engine.tuning;
        self.core.engine.sources.spawn_reader(
            location.clone(),
            t.read_chunk_bytes,
            t.read_chunk_bytes,
            t.read_ahead_chunks,
            self.core.cancel.clone(),
            None,
        )
    }

    /// One pass over the file's chunks until they end or something stops it.
    fn pass(&mut self, mut rx: Chunks, bytes_read: &AtomicU64) -> Result<CpuEnd, AttemptError> {
        self.splitter = LineSplitter::new(self.core.engine.tuning.max_line_bytes);
        self.core.file.line_no = 0;
        self.core.file.bad_lines = 0;
        self.core.file.known_until = self.core.engine.progress.lock().tracker().next_seq();
        self.core.stopped = None;
        bytes_read.store(0, Ordering::Relaxed);
        let first = match rx.blocking_recv() {
            None if self.core.cancel.is_cancelled() => return Ok(CpuEnd::Cancelled),
            None => return Ok(CpuEnd::Eof),
            Some(Err(e)) => return Err(DecodeError::Source(e).into()),
            Some(Ok(b)) => b,
        };
        let decoded = decode(first, &mut rx, bytes_read, |chunk| self.on_chunk(chunk));
        if decoded.is_ok() && self.core.running() {
            let core = &mut self.core;
            self.splitter.finish(|line| core.on_line(line));
        }
        self.core.record();
        self.core.log_more_bad_lines();
        decoded?;
        self.core.outcome()
    }

    /// Splits one decoded chunk; false stops the decoding.
    fn on_chunk(&mut self, chunk: &[u8]) -> bool {
        if self.core.cancel.is_cancelled() {
            self.core.stopped = Some(CpuEnd::Cancelled);
            return false;
        }
        let core = &mut self.core;
        let go = self.splitter.feed(chunk, |line| core.on_line(line));
        self.core.record();
        go && self.core.running()
    }
}

impl LineCore<'_> {
    /// True while lines should keep coming.
    fn running(&self) -> bool {
        self.stopped.is_none() && !self.producer_gone && !self.cancel.is_cancelled()
    }

    /// Decides one line; false stops the splitting.
    fn on_line(&mut self, line: Line<'_>) -> bool {
        self.file.line_no += 1;
        let no = self.file.line_no;
        if no < self.file.first_line {
            return true;
        }
        let seq = self.file.seq(no);
        if seq < self.file.known_until && !self.engine.progress.lock().tracker().needs(seq) {
            return true;
        }
        if seq >= self.window_free_until && !self.hold_window(seq) {
            return false;
        }
        let allow = !self.engine.limit_reached();
        let mut full = None;
        let Some(decision) = self.batcher.line(seq, line, allow, |b| full = Some(b)) else {
            self.stopped = Some(CpuEnd::Limit);
            return false;
        };
        if matches!(decision, Decision::Queued | Decision::Found) && seq >= self.file.known_until {
            self.engine.queued.fetch_add(1, Ordering::Relaxed);
        }
        let mut state = decision.state();
        if let Decision::Error(e) = &decision {
            if self.bad_line(seq, no, &line, &e.to_string()) {
                // Settled as an error once its dead letter is written (see `crate::deadletter`).
                state = LineState::Pending;
            }
        }
        self.states.push((seq, state));
        match full {
            Some(b) => self.send(b),
            None => true,
        }
    }

    /// At the window bound: hands every open batch over and waits until the watermark is
    /// within the bound of line `seq`. False when the wait was cut short by a stop.
    fn hold_window(&mut self, seq: Seq) -> bool {
        // Line `seq` may go when the lines from the watermark to it, itself included, are at
        // most the bound: the watermark at `seq + 1 - bound` or later.
        let bound = self.engine.max_unsettled_lines() as u64;
        let target = (seq + 1).saturating_sub(bound);
        let base = self.engine.progress.lock().tracker().base();
        if base < target {
            self.flush_all();
            let (cancel, batches) = (self.cancel, self.batches);
            self.engine.progress.wait_watermark(target, || cancel.is_cancelled() || batches.is_closed());
            if self.producer_gone || self.cancel.is_cancelled() || self.batches.is_closed() {
                return !self.producer_gone;
            }
        }
        // Every line up to the watermark now seen plus the bound may go without another look.
        let base = self.engine.progress.lock().tracker().base();
        self.window_free_until = base.max(target) + bound;
        true
    }

    /// Logs a bad line; with dead letters on, queues its letter and returns true (the line
    /// then waits for it).
    fn bad_line(&mut self, seq: Seq, no: u64, line: &Line<'_>, reason: &str) -> bool {
        self.file.bad_lines += 1;
        if self.file.bad_lines <= LOGGED_BAD_LINES {
            tracing::warn!(file = self.file.path, line = no, error = reason, "bad line");
        }
        if self.engine.dead_letters.is_none() {
            return false;
        }
        use crate::deadletter::DeadLetter;
        let (file, reason) = (self.file.path.clone(), reason.to_owned());
        self.letters.push(match line {
            Line::Text(t) => DeadLetter::with_bytes(seq, file, no, reason, t.to_vec()),
            Line::TooLong { len } => DeadLetter::too_long(seq, file, no, reason, *len),
        });
        true
    }

    fn log_more_bad_lines(&self) {
        if self.file.bad_lines > LOGGED_BAD_LINES {
            let more = self.file.bad_lines - LOGGED_BAD_LINES;
            tracing::warn!(file = self.file.path, more, "more bad lines in this file (not logged one by one)");
        }
    }

    /// Hands the decided lines to the tracker (once per chunk, and before any batch is sent,
    /// so that the tracker knows a batch's lines before its ack can arrive).
    fn record(&mut self) {
        let mut g = self.engine.progress.lock();
        let states = &mut self.states;
        g.apply(|t| states.drain(..).fold(Advance::default(), |a, (seq, s)| a.and(t.record(seq, s))));
        if !self.batcher.last_created.is_empty() {
            g.set_current_ts(&self.batcher.last_created);
        }
        drop(g);
        // Letters go out only once their lines are recorded: the writer settles them.
        if let Some(tx) = &self.engine.dead_letters {
            for letter in self.letters.drain(..) {
                if let Err(unsent) = tx.blocking_send(letter) {
                    self.engine.progress.settle_letters(unsent.0.seq.as_slice(), false);
                }
            }
        }
        if let Some(ended) = self.batcher.take_recovery_ended() {
            let rw_core::resume::Ended { matched, last_matched, unmatched } = ended;
            tracing::info!(matched, unmatched, "matching against the read-back ended; lines are sent from here on");
            self.engine.progress.ledger().release_floor(last_matched);
        }
    }

    /// Sends one batch to the producer (waiting while its queue is full).
    fn send(&mut self, batch: Batch) -> bool {
        self.record();
        if self.batches.blocking_send(batch).is_err() {
            self.producer_gone = true;
        }
        !self.producer_gone
    }

    /// Sends every open batch.
    fn flush_all(&mut self) {
        self.record();
        let mut open = Vec::new();
        self.batcher.flush_all(|b| open.push(b));
        for b in open {
            if !self.send(b) {
                break;
            }
        }
    }

    /// The file being read ends here.
    fn end_file(&mut self) {
        self.record();
        self.engine.progress.lock().apply(|t| t.end_file());
    }

    /// Gives the file being read up after `attempts` reads, the last one failing with `error`:
    /// it ends where its reading stopped.
    fn give_up(&mut self, error: &AttemptError, attempts: u32) -> CpuEnd {
        self.record();
        let mut g = self.engine.progress.lock();
        let released = g.tracker().released();
        if released > 0 {
            tracing::warn!(
                file = self.file.path,
                lines = released,
                "lines left undelivered by the failed file count as errors"
            );
        }
        if let Some(f) = g.current_file() {
            let s = if attempts == 1 { "" } else { "s" };
            f.failed = Some(format!("{} (after {attempts} attempt{s})", rw_core::Chain(error)));
        }
        g.apply(|t| t.give_up());
        CpuEnd::Eof
    }

    /// Sleeps `pause` unless stopped; false when stopped.
    fn pause(&self, pause: Duration) -> bool {
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until {
            if self.cancel.is_cancelled() || self.batches.is_closed() {
                return false;
            }
            std::thread::sleep(
                until.saturating_duration_since(std::time::Instant::now()).min(Duration::from_millis(50)),
            );
        }
        true
    }

    /// The end of the input only counts as the end of the file if nothing stopped early.
    fn outcome(&self) -> Result<CpuEnd, AttemptError> {
        match self.stopped {
            Some(CpuEnd::Limit) => Ok(CpuEnd::Limit),
            _ if self.cancel.is_cancelled() => Ok(CpuEnd::Cancelled),
            _ if self.producer_gone => Err(AttemptError::ProducerStopped),
            stopped => Ok(stopped.unwrap_or(CpuEnd::Eof)),
        }
    }
}
