//! The worker's shared progress: counters, the current file's low watermark, and what the
//! status row shows. One mutex, taken once per chunk by the CPU stage and once per
//! acknowledged batch by the producer, never per line.
//!
//! The counters only ever include lines up to the watermark (see [`crate::tracker`]), so
//! every snapshot is exact for its resume point. Each time [`FLUSH_EVERY_LINES`] more lines
//! settle, the status flusher is woken; it writes whenever the database lets it, so a slow
//! database delays the row, never the pipeline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::tracker::{Counts, FileTracker};

/// Settled lines between two status writes (at most; the flusher coalesces).
pub const FLUSH_EVERY_LINES: u64 = 1000;

pub use crate::resume::Snapshot;

#[derive(Debug, Default)]
struct Inner {
    snap: Snapshot,
    tracker: Option<FileTracker>,
    since_flush: u64,
}

#[derive(Debug, Default)]
pub struct Progress {
    inner: Mutex<Inner>,
    /// Woken every [`FLUSH_EVERY_LINES`] settled lines.
    pub flush: Notify,
    /// Signalled whenever lines settle (the CPU thread waits on it when too far ahead).
    settled: Condvar,
    /// Compressed bytes of the current file read so far (this attempt).
    pub file_bytes: Arc<AtomicU64>,
}

/// A locked view for the pipeline: record lines, resolve batches.
pub struct Guard<'a> {
    g: MutexGuard<'a, Inner>,
    flush: &'a Notify,
    settled: &'a Condvar,
}

impl Guard<'_> {
    pub fn tracker(&self) -> &FileTracker {
        self.g.tracker.as_ref().expect("a file is open")
    }

    /// Runs `f` on the tracker and folds the lines it settled into the counters.
    pub fn apply(&mut self, f: impl FnOnce(&mut FileTracker) -> Counts) {
        let inner = &mut *self.g;
        let t = inner.tracker.as_mut().expect("a file is open");
        let c = f(t);
        inner.snap.current_line = t.watermark();
        if c.total > 0 {
            self.settled.notify_all();
            inner.snap.counts = inner.snap.counts.plus(c);
            inner.since_flush += c.total;
            if inner.since_flush >= FLUSH_EVERY_LINES {
                inner.since_flush = 0;
                self.flush.notify_one();
            }
        }
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

impl Progress {
    /// Progress that continues from stored counters (a resumed run) or from zero.
    pub fn new(start: Snapshot) -> Self {
        Self { inner: Mutex::new(Inner { snap: start, tracker: None, since_flush: 0 }), ..Default::default() }
    }

    pub fn lock(&self) -> Guard<'_> {
        Guard { g: self.inner.lock().unwrap_or_else(|p| p.into_inner()), flush: &self.flush, settled: &self.settled }
    }

    /// Blocks until the current file's watermark reaches `line`, or `stop()`.
    pub fn wait_watermark(&self, line: u64, stop: impl Fn() -> bool) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while g.tracker.as_ref().is_some_and(|t| t.watermark() < line) && !stop() {
            g = self.settled.wait_timeout(g, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Opens `path`; lines before `first_line` are out of scope.
    pub fn start_file(&self, path: &str, first_line: u64) {
        let mut g = self.lock();
        g.g.tracker = Some(FileTracker::new(first_line));
        g.g.snap.current_file = Some(path.to_owned());
        g.g.snap.current_line = first_line.saturating_sub(1);
        self.file_bytes.store(0, Ordering::Relaxed);
    }

    /// Closes the current file: it counts as processed, whatever its outcome.
    pub fn finish_file(&self, size: u64) {
        let mut g = self.lock();
        if let Some(t) = g.g.tracker.take() {
            g.g.snap.current_line = t.watermark();
        }
        g.g.snap.processed_files += 1;
        g.g.snap.processed_bytes += size;
        self.file_bytes.store(0, Ordering::Relaxed);
        drop(g);
        self.flush.notify_one();
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let mut s = g.g.snap.clone();
        if g.g.tracker.is_some() {
            s.processed_bytes += self.file_bytes.load(Ordering::Relaxed);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::LineState;

    #[test]
    fn snapshot_follows_the_watermark() {
        let p = Progress::new(Snapshot {
            counts: Counts { total: 5, success: 5, ..Default::default() },
            ..Default::default()
        });
        p.start_file("f1", 3);
        {
            let mut g = p.lock();
            g.apply(|t| t.record(3, LineState::Pending));
            g.apply(|t| t.record(4, LineState::Skipped));
            g.set_current_ts("2024-01-01T00:00:00Z");
        }
        let s = p.snapshot();
        assert_eq!((s.current_file.as_deref(), s.current_line, s.counts.total), (Some("f1"), 2, 5));
        p.lock().apply(|t| t.resolve(&[3], LineState::Success));
        let s = p.snapshot();
        assert_eq!(s.current_line, 4);
        assert_eq!(s.counts, Counts { total: 7, success: 6, error: 0, skipped: 1 });
        assert_eq!(s.current_ts.as_deref(), Some("2024-01-01T00:00:00Z"));
        p.finish_file(100);
        let s = p.snapshot();
        assert_eq!((s.processed_files, s.processed_bytes, s.current_line), (1, 100, 4));
    }
}
