//! The status flusher: the background task that writes the worker's `running` row (and the
//! read-back offsets with it) while the files are read.
//!
//! The write rule: the row is written when [`crate::progress::FLUSH_EVERY_LINES`] more lines
//! settle, after a file ends, when the files' error changes, and at least every `tick` when
//! anything changed; but **at most once per `min_interval`** (`STATUS_MIN_INTERVAL_MS`). A
//! wake-up inside the interval waits for its end and then writes the newest values, so a
//! write carries everything up to it and the row trails the run by at most about
//! `min_interval` plus one write's latency. The final row, a failure and a SIGTERM's row
//! are written by the worker at once, not here. So a pod costs its database at most one
//! write a second, however fast it runs and whatever its partition count. A failed write
//! is logged once per outage and the next one carries the newest values; the pipeline never
//! waits for the database.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::status::{StatusError, StatusRow, StatusStore};
use rw_core::resume::PartitionOffset;
use rw_core::resume::Snapshot;
use rw_core::resume::WorkerStatus;

/// What the flusher reads: a run's progress. [`Progress`] in the worker; the fleet bench
/// (`rw-fleet`) feeds synthetic ones.
pub trait Progressing: Send + Sync {
    /// The row's values now.
    fn snapshot(&self) -> Snapshot;
    /// The read-back offsets, taken before [`Progressing::snapshot`] so that they are never
    /// ahead of it.
    fn read_back_starts(&self) -> Vec<PartitionOffset>;
    /// The row's `error` while the run goes on (the files given up).
    fn files_error(&self) -> Option<String>;
    /// Resolves when enough changed for a write (settled lines, a file's end).
    fn changed(&self) -> impl std::future::Future<Output = ()> + Send;
}

impl Progressing for Progress {
    fn snapshot(&self) -> Snapshot {
        Progress::snapshot(self)
    }
    fn read_back_starts(&self) -> Vec<PartitionOffset> {
        Progress::read_back_starts(self)
    }
    fn files_error(&self) -> Option<String> {
        Progress::files_error(self)
    }
    fn changed(&self) -> impl std::future::Future<Output = ()> + Send {
        self.flush.notified()
    }
}

/// One worker's flusher: its store, the row's fixed columns and the write rule's times.
pub struct Flusher<'a> {
    pub store: &'a dyn StatusStore,
    pub assigned_files: u32,
    pub total_bytes: u64,
    /// Writes are at least this far apart (`STATUS_MIN_INTERVAL_MS`).
    pub min_interval: Duration,
    /// A changed row is written at least this often, even without a wake-up.
    pub tick: Duration,
    /// Told of every turn of the loop and of each write's outcome (the `/healthz` heartbeat,
    /// and `/readyz`'s view of the database).
    pub on_turn: Option<&'a (dyn Fn(Turn) + Sync)>,
}

/// What the flusher's loop just did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// It woke (a change, or its tick), whether it writes or not.
    Woke,
    /// A write committed.
    Wrote,
    /// A write failed; the next one retries.
    WriteFailed,
}

/// What one write carried, for the fleet bench: when its values were taken and when it was
/// committed.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub taken: Instant,
    pub committed: Instant,
    pub offsets: usize,
}

impl Flusher<'_> {
    fn tell(&self, turn: Turn) {
        if let Some(f) = self.on_turn {
            f(turn);
        }
    }

    /// Writes `running` rows from `progress` until `stop` fires. A write refused because the
    /// row was lost to another run ends the flusher with that error. `on_write` sees each
    /// committed write.
    pub async fn run(
        &self,
        progress: &impl Progressing,
        stop: CancellationToken,
        mut on_write: impl FnMut(Written),
    ) -> Result<(), StatusError> {
        let mut last: Option<(Snapshot, Option<String>)> = None;
        let mut last_offsets: Vec<PartitionOffset> = Vec::new();
        let mut last_write: Option<Instant> = None;
        let mut failing = false;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                _ = progress.changed() => {}
                _ = tokio::time::sleep(self.tick) => {}
            }
            self.tell(Turn::Woke);
            // Inside the interval, wait for its end: what settles meanwhile goes in this write.
            if let Some(at) = last_write {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(at + self.min_interval) => {}
                }
            }
            let offsets = progress.read_back_starts();
            let now = (progress.snapshot(), progress.files_error());
            if last.as_ref() == Some(&now) {
                continue;
            }
            let taken = Instant::now();
            let row = StatusRow {
                status: WorkerStatus::Running,
                snapshot: now.0.clone(),
                assigned_files: self.assigned_files,
                total_bytes: self.total_bytes,
                error: now.1.clone(),
            };
            let moved = !offsets.is_empty() && last_offsets != offsets;
            last_write = Some(taken);
            match self.store.write(&row, moved.then_some(offsets.as_slice())).await {
                Ok(()) => {
                    self.tell(Turn::Wrote);
                    if failing {
                        tracing::info!("status writes recovered");
                    }
                    failing = false;
                    let carried = if moved { offsets.len() } else { 0 };
                    on_write(Written { taken, committed: Instant::now(), offsets: carried });
                    last = Some(now);
                    if moved {
                        last_offsets = offsets;
                    }
                }
                Err(e) if e.row_lost() => return Err(e),
                Err(e) => {
                    self.tell(Turn::WriteFailed);
                    if !failing {
                        tracing::warn!(error = %rw_core::Chain(&e), "status write failed; the pipeline goes on and the next write retries");
                    }
                    failing = true;
                }
            }
        }
    }
}

/// A run's progress made up from the clock: `lines_per_sec` lines settle evenly, spread over
/// `partitions` partitions of one topic, and a change is signalled every
/// [`crate::progress::FLUSH_EVERY_LINES`] lines, as [`Progress`] does. For the fleet bench
/// (`rw-fleet`) and the write rule's tests.
pub struct Synthetic {
    started: Instant,
    lines_per_sec: f64,
    partitions: i32,
}

impl Synthetic {
    pub fn new(lines_per_sec: u64, partitions: i32) -> Self {
        Synthetic { started: Instant::now(), lines_per_sec: lines_per_sec as f64, partitions: partitions.max(1) }
    }

    /// The lines settled at `at`.
    pub fn lines_at(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.started).as_secs_f64() * self.lines_per_sec) as u64
    }
}

impl Progressing for Synthetic {
    fn snapshot(&self) -> Snapshot {
        let lines = self.lines_at(Instant::now());
        let counts = rw_core::Counts { total: lines, success: lines, ..Default::default() };
        Snapshot {
            counts,
            current_file: Some("s3://fleet/synthetic.ndjson".into()),
            current_line: lines,
            ..Default::default()
        }
    }
    fn read_back_starts(&self) -> Vec<PartitionOffset> {
        let per = (self.lines_at(Instant::now()) / self.partitions as u64) as i64;
        (0..self.partitions).map(|p| PartitionOffset { topic: "fleet".into(), partition: p, offset: per }).collect()
    }
    fn files_error(&self) -> Option<String> {
        None
    }
    fn changed(&self) -> impl std::future::Future<Output = ()> + Send {
        let every = crate::progress::FLUSH_EVERY_LINES as f64 / self.lines_per_sec.max(1.0);
        tokio::time::sleep(Duration::from_secs_f64(every))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MemoryStatus;

    /// Runs a flusher over `progress` for `secs` of the paused clock; the writes it made.
    async fn flush_for(progress: &Synthetic, store: &MemoryStatus, min_interval: Duration, secs: u64) -> Vec<Written> {
        let flusher = Flusher {
            store,
            assigned_files: 1,
            total_bytes: 0,
            min_interval,
            tick: Duration::from_secs(2),
            on_turn: None,
        };
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stopper.cancel();
        });
        let mut writes = Vec::new();
        flusher.run(progress, stop, |w| writes.push(w)).await.unwrap();
        writes
    }

    /// The rule: 500,000 lines a second, woken every 1,000 lines (500 times a second), is
    /// written once a second, each write 1 s after the one before, every write with the
    /// newest values and the offsets that moved; the row is never more than the interval
    /// (and no write latency here) behind the run.
    #[tokio::test(start_paused = true)]
    async fn a_fast_run_is_written_once_per_interval_with_its_newest_values() {
        let progress = Synthetic::new(500_000, 96);
        let store = MemoryStatus::default();
        let writes = flush_for(&progress, &store, Duration::from_secs(1), 30).await;
        assert!((29..=31).contains(&writes.len()), "{} writes in 30 s", writes.len());
        for pair in writes.windows(2) {
            assert!(pair[1].taken - pair[0].taken >= Duration::from_secs(1), "at most one a second");
            assert!(pair[1].taken - pair[0].taken < Duration::from_millis(1_010), "and no later");
        }
        assert!(writes.iter().all(|w| w.offsets == 96), "the offsets moved every time, and went with the row");
        let rows = store.writes.lock().unwrap();
        for (row, w) in rows.iter().zip(&writes) {
            assert_eq!(row.snapshot.counts.total, progress.lines_at(w.taken), "the newest values at the write");
        }
    }

    /// Without the interval (0), every wake-up writes: the old rule, which a fast database
    /// pays for with a write per 1,000 lines.
    #[tokio::test(start_paused = true)]
    async fn without_the_interval_every_wake_up_writes() {
        let progress = Synthetic::new(500_000, 4);
        let store = MemoryStatus::default();
        let writes = flush_for(&progress, &store, Duration::ZERO, 1).await;
        assert!(writes.len() >= 400, "{} writes in 1 s", writes.len());
    }

    /// A slow run is written when it changes, at least every tick, never when nothing moved.
    #[tokio::test(start_paused = true)]
    async fn a_slow_run_is_written_on_its_tick_and_an_idle_one_not_at_all() {
        let progress = Synthetic::new(100, 1);
        let store = MemoryStatus::default();
        let writes = flush_for(&progress, &store, Duration::from_secs(1), 20).await;
        assert!((9..=11).contains(&writes.len()), "every 2 s tick: {}", writes.len());
        let idle = Synthetic::new(0, 1);
        let store = MemoryStatus::default();
        let writes = flush_for(&idle, &store, Duration::from_secs(1), 20).await;
        assert_eq!(writes.len(), 1, "the first row only: nothing moved after it");
    }
}
