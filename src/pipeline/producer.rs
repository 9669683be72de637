//! The producer stage: takes batches from the CPU stage, picks their partitions
//! round-robin, keeps at most `max_in_flight` produce requests in flight, and settles the
//! lines of each batch as its acknowledgement (or failure) arrives.
//!
//! [`Producer`] owns its state: the sink, the partition cursors, and (with dead letters on)
//! the bytes of lines whose batch failed, which the file's give-up hands to the dead
//! letters. Those bytes are bounded by the unsettled-lines bound of one file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::AttemptError;
use crate::progress::Progress;
use crate::sink::{Batch, Sink, SinkError};
use crate::tracker::LineState;

/// The bytes of undelivered lines, by line number, with the reason.
pub(super) type FailedBytes = HashMap<u64, (Vec<u8>, String)>;

type Finished = (Vec<u64>, Result<(), SinkError>);

/// The producer's state, one per worker.
pub(super) struct Producer {
    sink: Arc<dyn Sink>,
    /// The router's topics, by index.
    topics: Vec<String>,
    progress: Arc<Progress>,
    max_in_flight: usize,
    shutdown_timeout: Duration,
    /// Per topic: (partitions, next partition). 0 partitions = not asked yet.
    cursors: Mutex<Vec<(i32, i32)>>,
    /// With dead letters on: the bytes of lines whose batch failed (current file only).
    failed_bytes: Option<Mutex<FailedBytes>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Producer {
    pub(super) fn new(
        sink: Arc<dyn Sink>,
        topics: Vec<String>,
        progress: Arc<Progress>,
        max_in_flight: usize,
        shutdown_timeout: Duration,
        keep_failed_bytes: bool,
    ) -> Self {
        let cursors = Mutex::new(vec![(0, 0); topics.len()]);
        let failed_bytes = keep_failed_bytes.then(Mutex::default);
        Self { sink, topics, progress, max_in_flight, shutdown_timeout, cursors, failed_bytes }
    }

    /// Drops the bytes kept for the previous file.
    pub(super) fn forget_failed_bytes(&self) {
        if let Some(m) = &self.failed_bytes {
            lock(m).clear();
        }
    }

    /// Hands over the bytes kept for the current file.
    pub(super) fn take_failed_bytes(&self) -> FailedBytes {
        self.failed_bytes.as_ref().map(|m| std::mem::take(&mut *lock(m))).unwrap_or_default()
    }

    /// Picks the partition for a batch of `topic`: round-robin, one batch per partition.
    async fn partition_for(&self, topic: usize, name: &str) -> Result<i32, SinkError> {
        if lock(&self.cursors)[topic].0 == 0 {
            let n = self.sink.partitions(name).await?;
            lock(&self.cursors)[topic].0 = n;
        }
        let mut c = lock(&self.cursors);
        let (n, next) = &mut c[topic];
        let p = *next % *n;
        *next = (p + 1) % *n;
        Ok(p)
    }

    /// Sends one batch and waits for its acknowledgement; keeps its bytes if it failed.
    async fn deliver(&self, batch: Batch) -> Finished {
        let copies: Option<Vec<Vec<u8>>> = self
            .failed_bytes
            .as_ref()
            .map(|_| batch.records.iter().map(|r| r.value.clone().unwrap_or_default()).collect());
        let topic = &self.topics[batch.topic];
        let r = async {
            let p = self.partition_for(batch.topic, topic).await?;
            self.sink.produce(topic, p, batch.records).await
        }
        .await;
        if let (Err(e), Some(copies), Some(kept)) = (&r, copies, &self.failed_bytes) {
            let why = crate::Chain(e).to_string();
            lock(kept).extend(batch.lines.iter().copied().zip(copies.into_iter().map(|d| (d, why.clone()))));
        }
        (batch.lines, r)
    }

    /// A batch not sent because the attempt already failed: its lines are released when the
    /// attempt ends; keep their bytes like those of a failed batch.
    pub(super) fn set_aside(&self, batch: Batch, failure: &dyn std::fmt::Display) {
        if let Some(kept) = &self.failed_bytes {
            let why = format!("not sent: {failure}");
            let values = batch.records.into_iter().map(|r| (r.value.unwrap_or_default(), why.clone()));
            lock(kept).extend(batch.lines.into_iter().zip(values));
        }
    }

    /// Sends batches with at most `max_in_flight` unacknowledged; settles their lines on ack.
    /// On a failed batch it stops the attempt (`cancel`) and returns the error once the
    /// requests in flight have ended. On shutdown it waits at most `shutdown_timeout` for them.
    pub(super) async fn run(
        self: &Arc<Self>,
        mut batches: mpsc::Receiver<Batch>,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<(), AttemptError> {
        let mut inflight: JoinSet<Finished> = JoinSet::new();
        let mut failure: Option<AttemptError> = None;
        let mut open = true;
        while (open || !inflight.is_empty()) && !shutdown.is_cancelled() {
            tokio::select! {
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Some(e) = self.settle(joined) {
                        if failure.is_none() {
                            failure = Some(e);
                            cancel.cancel();
                            batches.close();
                        }
                    }
                }
                batch = batches.recv(), if open && inflight.len() < self.max_in_flight => match batch {
                    None => open = false,
                    Some(batch) if failure.is_some() => self.set_aside(batch, &crate::Chain(failure.as_ref().expect("checked"))),
                    Some(batch) => {
                        let me = Arc::clone(self);
                        inflight.spawn(async move { me.deliver(batch).await });
                    }
                },
                _ = shutdown.cancelled() => {}
            }
        }
        // Shutdown: stop taking batches and give the requests in flight a bounded time.
        batches.close();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inflight.join_next()).await {
                Ok(Some(joined)) => {
                    if let Some(e) = self.settle(joined) {
                        failure.get_or_insert(e);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        abandoned = inflight.len(),
                        "shutdown timeout: abandoning batches in flight (they will be resent on resume)"
                    );
                    inflight.abort_all();
                    break;
                }
            }
        }
        while let Some(batch) = batches.recv().await {
            if let Some(f) = &failure {
                self.set_aside(batch, &crate::Chain(f));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Settles one finished batch; returns its error if it failed.
    fn settle(&self, joined: Result<Finished, tokio::task::JoinError>) -> Option<AttemptError> {
        match joined {
            Ok((lines, Ok(()))) => {
                self.progress.lock().apply(|t| t.resolve(&lines, LineState::Success));
                None
            }
            Ok((lines, Err(e))) => {
                self.progress.lock().apply(|t| t.resolve(&lines, LineState::Released));
                Some(e.into())
            }
            Err(e) => Some(AttemptError::ProduceTaskPanicked(e)),
        }
    }
}
