//! The CPU stage of one file attempt, on its own thread: decode the chunks, split them into
//! lines, decide each line, batch, and hand full batches to the producer.
//!
//! [`CpuStage`] keeps the splitter and the line core as separate fields, so that the
//! splitter's callback can borrow the core mutably while the splitter itself is borrowed.
//! [`LineCore`] holds everything a line touches: the batcher, the states decided since the
//! last hand-over to the tracker, the line number, and how the stage ended.
//!
//! Two rules live here:
//! - **Retries skip settled lines.** A line before the resume point, or one the tracker
//!   already settled in an earlier attempt, is passed over.
//! - **The window bound.** The stage never runs more than [`Engine::max_unsettled_lines`]
//!   lines ahead of the watermark (checked every [`WINDOW_CHECK_LINES`] lines). At the bound
//!   it sends every open batch, so that everything before the current line is in flight or
//!   settled, and waits for the watermark to move. Because the wait is measured from the
//!   current line, a retry whose released lines lie ahead of the parser never waits on them.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AttemptError, Engine};
use crate::batcher::{BatchLimits, Batcher, Decision};
use crate::decode::{decode, DecodeError};
use crate::lines::{Line, LineSplitter};
use crate::sink::Batch;
use crate::source::SourceError;
use crate::tracker::{Counts, LineState};

/// How often (in lines) the stage checks how far it is ahead of the watermark.
pub(super) const WINDOW_CHECK_LINES: u64 = 256;

/// Bad lines logged per file attempt; the rest are only counted.
const LOGGED_BAD_LINES: u32 = 5;

/// How the stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CpuEnd {
    /// The whole input was read.
    Eof,
    /// The run's `limit` was reached.
    Limit,
    /// Shutdown, or the attempt was stopped by a failed batch.
    Cancelled,
}

/// The stage: the splitter and the line core, borrowed separately.
pub(super) struct CpuStage<'a> {
    splitter: LineSplitter,
    core: LineCore<'a>,
}

/// Everything one line touches.
struct LineCore<'a> {
    engine: &'a Engine,
    path: &'a str,
    batches: &'a mpsc::Sender<Batch>,
    cancel: &'a CancellationToken,
    batcher: Batcher<'a>,
    /// Decisions not yet handed to the tracker (at most one chunk's lines).
    states: Vec<(u64, LineState)>,
    line_no: u64,
    /// Lines before this one are done (the watermark when the attempt started).
    resume_from: u64,
    /// Lines from here on were never seen by an earlier attempt.
    known_until: u64,
    end: CpuEnd,
    /// The producer is gone: no batch can be handed over any more.
    producer_gone: bool,
    bad_lines: u32,
}

impl<'a> CpuStage<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        path: &'a str,
        batches: &'a mpsc::Sender<Batch>,
        cancel: &'a CancellationToken,
    ) -> Self {
        let (resume_from, known_until) = {
            let g = engine.progress.lock();
            (g.tracker().watermark() + 1, g.tracker().next_new_line())
        };
        let limits = BatchLimits {
            records: engine.batch_size,
            value_bytes: engine.tuning.batch_max_bytes,
            message_bytes: engine.tuning.max_message_bytes,
        };
        let batcher = Batcher::new(&engine.filter, &engine.router, limits);
        CpuStage {
            splitter: LineSplitter::new(engine.tuning.max_line_bytes),
            core: LineCore {
                engine,
                path,
                batches,
                cancel,
                batcher,
                states: Vec::with_capacity(8192),
                line_no: 0,
                resume_from,
                known_until,
                end: CpuEnd::Eof,
                producer_gone: false,
                bad_lines: 0,
            },
        }
    }

    /// Runs the stage over the chunks of `rx` until the input ends or something stops it.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Result<Bytes, SourceError>>) -> Result<CpuEnd, AttemptError> {
        let first = match rx.blocking_recv() {
            None if self.core.cancel.is_cancelled() => return Ok(CpuEnd::Cancelled),
            None => return Ok(CpuEnd::Eof),
            Some(Err(e)) => return Err(DecodeError::Source(e).into()),
            Some(Ok(b)) => b,
        };
        let file_bytes = std::sync::Arc::clone(&self.core.engine.progress.file_bytes);
        let decoded = decode(first, &mut rx, &file_bytes, |chunk| self.on_chunk(chunk));
        if decoded.is_ok() && self.core.running() {
            let core = &mut self.core;
            self.splitter.finish(|line| core.on_line(line));
        }
        self.core.finish();
        decoded?;
        self.core.outcome()
    }

    /// Splits one decoded chunk; false stops the decoding.
    fn on_chunk(&mut self, chunk: &[u8]) -> bool {
        if self.core.cancel.is_cancelled() {
            self.core.end = CpuEnd::Cancelled;
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
        self.end == CpuEnd::Eof && !self.producer_gone && !self.cancel.is_cancelled()
    }

    /// Decides one line; false stops the splitting.
    fn on_line(&mut self, line: Line<'_>) -> bool {
        self.line_no += 1;
        let no = self.line_no;
        if no < self.resume_from || (no < self.known_until && self.engine.progress.lock().tracker().is_settled(no)) {
            return true;
        }
        if no % WINDOW_CHECK_LINES == 0 && !self.hold_window(no) {
            return false;
        }
        let allow = !self.engine.limit_reached();
        let mut full = None;
        let Some(decision) = self.batcher.line(no, line, allow, |b| full = Some(b)) else {
            self.end = CpuEnd::Limit;
            return false;
        };
        if decision == Decision::Queued && no >= self.known_until {
            self.engine.queued.fetch_add(1, Ordering::Relaxed);
        }
        if let Decision::Error(e) = &decision {
            self.bad_line(no, &line, &e.to_string());
        }
        self.states.push((no, decision.state()));
        match full {
            Some(b) => self.send(b),
            None => true,
        }
    }

    /// At the window bound: hands every open batch over and waits until the watermark is
    /// within the bound of line `no`. False when the wait was cut short by a stop.
    fn hold_window(&mut self, no: u64) -> bool {
        let max = self.engine.max_unsettled_lines() as u64;
        let target = no.saturating_sub(max);
        if self.engine.progress.lock().tracker().watermark() >= target {
            return true;
        }
        self.flush_all();
        let (cancel, batches) = (self.cancel, self.batches);
        self.engine.progress.wait_watermark(target, || cancel.is_cancelled() || batches.is_closed());
        !self.producer_gone
    }

    fn bad_line(&mut self, no: u64, line: &Line<'_>, reason: &str) {
        self.bad_lines += 1;
        if self.bad_lines <= LOGGED_BAD_LINES {
            tracing::warn!(line = no, error = reason, "bad line");
        }
        if let Some(tx) = &self.engine.dead_letters {
            let (data, length) = match line {
                Line::Text(t) => (Some(t.to_vec()), t.len() as u64),
                Line::TooLong { len } => (None, *len),
            };
            let letter = crate::deadletter::DeadLetter {
                file: self.path.to_owned(),
                line: no,
                reason: reason.to_owned(),
                data,
                length,
            };
            let _ = tx.blocking_send(letter);
        }
    }

    /// Hands the decided lines to the tracker (once per chunk, and before any batch is sent,
    /// so that the tracker knows a batch's lines before its ack can arrive).
    fn record(&mut self) {
        let mut g = self.engine.progress.lock();
        let states = &mut self.states;
        g.apply(|t| states.drain(..).fold(Counts::default(), |c, (l, s)| c.plus(t.record(l, s))));
        if !self.batcher.last_created.is_empty() {
            g.set_current_ts(&self.batcher.last_created);
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

    /// The end of the attempt: every decided line to the tracker, every open batch sent.
    fn finish(&mut self) {
        self.flush_all();
        if self.bad_lines > LOGGED_BAD_LINES {
            tracing::warn!(
                more = self.bad_lines - LOGGED_BAD_LINES,
                "more bad lines in this file (not logged one by one)"
            );
        }
    }

    /// The end of the input only counts as the end of the file if nothing stopped early.
    fn outcome(&self) -> Result<CpuEnd, AttemptError> {
        match self.end {
            CpuEnd::Limit => Ok(CpuEnd::Limit),
            _ if self.cancel.is_cancelled() => Ok(CpuEnd::Cancelled),
            _ if self.producer_gone => Err(AttemptError::ProducerStopped),
            e => Ok(e),
        }
    }
}
