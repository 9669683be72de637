//! The worker's shared progress: the tracker of the files in flight, the counters, and what
//! the status row shows. One mutex, taken once per chunk by the CPU stage and once per
//! acknowledged batch by the producer, never per line.
//!
//! The counters only ever include lines up to the watermark (see [`rw_core::Tracker`]), so
//! every snapshot is exact for its resume point. A file counts as processed, and its
//! `file done` line is logged, when the watermark passes its end, so files finish in
//! files.json order whatever order their batches were acknowledged in. Each time
//! [`FLUSH_EVERY_LINES`] more lines settle, the status flusher is woken; it writes at most
//! once per interval (`worker::flusher`), in the background, so a slow database delays the
//! row, never the pipeline.

pub(crate) mod display;
pub(crate) mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::progress::stats::Stats;
use rw_core::resume::{Ledger, PartitionOffset};
use rw_core::{Advance, Finished, Seq, Tracker};

/// Settled lines between two status writes (at most; the flusher coalesces).
pub const FLUSH_EVERY_LINES: u64 = 1000;

use rw_core::resume::Snapshot;

/// What the run keeps about one file in flight, until the watermark passes its end.
#[derive(Debug)]
pub struct OpenFile {
    pub path: String,
    /// The size files.json lists (0: not listed).
    pub listed_size: u64,
    /// Compressed bytes read so far, by the latest pass.
    pub bytes_read: Arc<AtomicU64>,
    /// Why it was given up, if it was.
    pub failed: Option<String>,
    pub opened: Instant,
    /// Its place among the files in flight, free again when it finishes.
    pub slot: Option<OwnedSemaphorePermit>,
}

impl OpenFile {
    pub fn new(path: String, listed_size: u64, slot: Option<OwnedSemaphorePermit>) -> Self {
        OpenFile { path, listed_size, bytes_read: Arc::default(), failed: None, opened: Instant::now(), slot }
    }

    /// The size it counts for in `processed_bytes`: as listed (`total_bytes` is their sum),
    /// else as read.
    fn size(&self) -> u64 {
        match self.listed_size {
            0 => self.bytes_read.load(Ordering::Relaxed),
            n => n,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    snap: Snapshot,
    tracker: Tracker<OpenFile>,
    since_flush: u64,
    /// Files given up, with where and why.
    failed: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Progress {
    inner: Mutex<Inner>,
    /// Woken every [`FLUSH_EVERY_LINES`] settled lines.
    pub flush: Notify,
    /// Signalled whenever lines settle (the CPU thread waits on it when too far ahead).
    settled: Condvar,
    /// Where a resumed run would have to read back from, per partition. Its own mutex,
    /// taken per batch sent and acknowledged and per status write, never with `inner`.
    ledger: Mutex<Ledger>,
    /// The run's counters for the metrics beyond the row's.
    stats: Arc<Stats>,
}

/// A locked view for the pipeline: record lines, resolve batches.
pub struct Guard<'a> {
    g: MutexGuard<'a, Inner>,
    progress: &'a Progress,
}

impl Guard<'_> {
    pub fn tracker(&self) -> &Tracker<OpenFile> {
        &self.g.tracker
    }

    /// Runs `f` on the tracker and folds what it settled into the counters and the files
    /// processed.
    pub fn apply(&mut self, f: impl FnOnce(&mut Tracker<OpenFile>) -> Advance<OpenFile>) {
        let inner = &mut *self.g;
        let adv = f(&mut inner.tracker);
        let Advance { counts, finished } = adv;
        for file in finished {
            inner.finish(file);
        }
        if counts.total > 0 {
            self.progress.settled.notify_all();
            inner.snap.counts = inner.snap.counts.plus(counts);
            inner.since_flush += counts.total;
            if inner.since_flush >= FLUSH_EVERY_LINES {
                inner.since_flush = 0;
                self.progress.flush.notify_one();
            }
        }
    }

    /// Opens the next file; returns the sequence number of its line `first_line`.
    pub fn open(&mut self, file: OpenFile, first_line: u64) -> Seq {
        self.g.tracker.open(file, first_line)
    }

    /// The file being read.
    pub fn current_file(&mut self) -> Option<&mut OpenFile> {
        self.g.tracker.current_mut()
    }

    pub fn set_current_ts(&mut self, ts: &str) {
        match &mut self.g.snap.current_ts {
            Some(s) => {
                s.clear();
                s.push_str(ts);
            }
            slot => *slot = Some(ts.to_owned()),
        }
    }
}

impl Inner {
    /// A file the watermark passed: it counts as processed, whatever its outcome. It is the
    /// resume point until the next file opens.
    fn finish(&mut self, done: Finished<OpenFile>) {
        let Finished { tag: file, counts: c, last_line } = done;
        self.snap.processed_files += 1;
        self.snap.processed_bytes += file.size();
        self.snap.current_file = Some(file.path.clone());
        self.snap.current_line = last_line;
        let secs = format_args!("{:.2}", file.opened.elapsed().as_secs_f64());
        match &file.failed {
            Some(reason) => {
                tracing::error!(file = file.path, resume_line = last_line, error = %reason, success = c.success, "file failed");
                self.failed.push(format!("{} (settled up to line {last_line}): {reason}", file.path));
            }
            None => tracing::info!(
                file = file.path,
                lines = c.total,
                success = c.success,
                errors = c.error,
                skipped = c.skipped,
                secs,
                "file done"
            ),
        }
    }
}

impl Progress {
    /// Progress that continues from stored counters (a resumed run) or from zero, with the
    /// read-back ledger the run starts from (see [`crate::resume::reconcile`]).
    pub fn new(start: Snapshot, ledger: Ledger) -> Self {
        Self {
            inner: Mutex::new(Inner { snap: start, ..Default::default() }),
            ledger: Mutex::new(ledger),
            ..Default::default()
        }
    }

    /// The same, counting for the metrics into `stats`.
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// The run's counters for the metrics.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Lines read and not yet behind the watermark (sent, waiting, or not yet decided).
    pub fn unsettled(&self) -> usize {
        self.lock().tracker().unsettled()
    }

    pub fn lock(&self) -> Guard<'_> {
        Guard { g: self.inner.lock(), progress: self }
    }

    /// Blocks until the watermark reaches sequence number `seq` (every line before it is
    /// settled), or `stop()`.
    pub fn wait_watermark(&self, seq: Seq, stop: impl Fn() -> bool) {
        let mut g = self.inner.lock();
        while g.tracker.base() < seq && !stop() {
            self.settled.wait_for(&mut g, Duration::from_millis(50));
        }
    }

    /// The read-back start offsets.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock()
    }

    /// The read-back start of every partition, for a snapshot taken after this call: the
    /// watermark is read first, so the offsets are never ahead of the row.
    pub fn read_back_starts(&self) -> Vec<PartitionOffset> {
        let watermark = self.lock().tracker().base();
        self.ledger().starts(watermark)
    }

    /// Lines whose dead letters were written (`written`), or could not be: they settle as
    /// errors either way, and the lost ones are counted for the row.
    pub fn settle_letters(&self, seqs: &[rw_core::Seq], written: bool) {
        self.stats.letters_settled(seqs.len() as u64, written);
        self.lock().apply(|t| t.resolve(seqs, rw_core::LineState::Error));
    }

    /// The files given up so far, each with where and why.
    pub fn failed_files(&self) -> Vec<String> {
        self.lock().g.failed.clone()
    }

    /// The row's `error` for the files given up so far (the latest, and how many) and for the
    /// dead letters lost.
    pub fn files_error(&self) -> Option<String> {
        let failed = {
            let g = self.lock();
            let failed = &g.g.failed;
            match failed.len() {
                0 => None,
                1 => Some(format!("1 file failed: {}", failed[0])),
                n => Some(format!("{n} files failed; last: {}", failed[n - 1])),
            }
        };
        let lost = match self.stats.dead_letters_lost() {
            0 => None,
            n => Some(format!("{n} dead letters could not be written (their lines count as errors)")),
        };
        match (failed, lost) {
            (Some(f), Some(l)) => Some(format!("{f}; {l}")),
            (f, l) => f.or(l),
        }
    }

    /// The row's view: the counters and the resume point (where the tracker's watermark is,
    /// else the last file finished), with the bytes read of the files still in flight added
    /// to `processed_bytes`.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let mut s = g.g.snap.clone();
        if let Some((f, line)) = g.g.tracker.position() {
            s.current_file = Some(f.path.clone());
            s.current_line = line;
        }
        // The bytes read of the open files (at most `FILES_IN_FLIGHT` of them).
        s.processed_bytes += g.g.tracker.files().map(|f| f.bytes_read.load(Ordering::Relaxed)).sum::<u64>();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rw_core::{Counts, LineState};

    #[test]
    fn snapshot_follows_the_watermark_across_files() {
        let p = Progress::new(
            Snapshot { counts: Counts { total: 5, success: 5, ..Default::default() }, ..Default::default() },
            Ledger::default(),
        );
        let (a, b) = {
            let mut g = p.lock();
            let a = g.open(OpenFile::new("f1".into(), 100, None), 3);
            g.apply(|t| t.record(a, LineState::Pending));
            g.apply(|t| t.record(a + 1, LineState::Skipped));
            g.apply(|t| t.end_file());
            let b = g.open(OpenFile::new("f2".into(), 0, None), 1);
            g.apply(|t| t.record(b, LineState::Pending));
            g.apply(|t| t.end_file());
            g.set_current_ts("2024-01-01T00:00:00Z");
            (a, b)
        };
        let s = p.snapshot();
        assert_eq!((s.current_file.as_deref(), s.current_line, s.counts.total), (Some("f1"), 2, 5));
        p.lock().apply(|t| t.resolve(&[b], LineState::Success));
        assert_eq!(p.snapshot().counts.total, 5, "a later file's lines wait for the earlier file");
        p.lock().apply(|t| t.resolve(&[a], LineState::Success));
        let s = p.snapshot();
        assert_eq!((s.current_file.as_deref(), s.current_line), (Some("f2"), 1));
        assert_eq!(s.counts, Counts { total: 8, success: 7, error: 0, skipped: 1 });
        assert_eq!((s.processed_files, s.processed_bytes), (2, 100));
        assert_eq!(s.current_ts.as_deref(), Some("2024-01-01T00:00:00Z"));
    }
}
