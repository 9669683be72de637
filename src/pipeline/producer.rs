//! The producer side of [`Engine`]: sends batches with a bounded number in flight, picks
//! partitions round-robin, and settles lines as acknowledgements (or failures) arrive.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::sink::{Batch, SinkError};
use crate::tracker::LineState;

impl Engine {
    /// Picks the partition for a batch of `topic`: round-robin, one batch per partition.
    async fn partition_for(&self, topic: usize) -> Result<i32, SinkError> {
        let known = self.cursors.lock().unwrap_or_else(|p| p.into_inner())[topic].0;
        if known == 0 {
            let n = self.sink.partitions(&self.router.topics()[topic]).await?;
            self.cursors.lock().unwrap_or_else(|p| p.into_inner())[topic].0 = n;
        }
        let mut c = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        let (n, next) = &mut c[topic];
        let p = *next % *n;
        *next = (p + 1) % *n;
        Ok(p)
    }

    /// Sends batches with at most `max_in_flight` unacknowledged; settles their lines on ack.
    /// On a failed batch it stops the attempt (`cancel`) and returns the error once the
    /// requests in flight have ended. On shutdown it waits at most `shutdown_timeout` for them.
    pub(super) async fn run_producer(self: &Arc<Self>, mut brx: mpsc::Receiver<Batch>, cancel: &CancellationToken, shutdown: &CancellationToken) -> Result<(), SinkError> {
        let mut inflight: JoinSet<(Vec<u64>, Result<(), SinkError>)> = JoinSet::new();
        let mut failure: Option<SinkError> = None;
        let mut open = true;
        while open || !inflight.is_empty() {
            if shutdown.is_cancelled() {
                break;
            }
            tokio::select! {
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Some(e) = self.settle(joined) {
                        if failure.is_none() {
                            failure = Some(e);
                            cancel.cancel();
                            brx.close();
                        }
                    }
                }
                batch = brx.recv(), if open && inflight.len() < self.opts.max_in_flight => match batch {
                    None => open = false,
                    Some(batch) if failure.is_some() => drop(batch),
                    Some(batch) => {
                        let me = Arc::clone(self);
                        let copies: Option<Vec<Vec<u8>>> = self.dead_letters.as_ref().map(|_| {
                            batch.records.iter().map(|r| r.value.clone().unwrap_or_default()).collect()
                        });
                        inflight.spawn(async move {
                            let r = async {
                                let p = me.partition_for(batch.topic).await?;
                                me.sink.produce(&me.router.topics()[batch.topic], p, batch.records).await
                            }.await;
                            if let (Err(e), Some(copies)) = (&r, copies) {
                                let mut kept = me.undelivered.lock().unwrap_or_else(|p| p.into_inner());
                                for (line, data) in batch.lines.iter().zip(copies) {
                                    kept.insert(*line, (data, e.to_string()));
                                }
                            }
                            (batch.lines, r)
                        });
                    }
                },
                _ = shutdown.cancelled() => {}
            }
        }
        // Shutdown: stop taking batches and give the requests in flight a bounded time.
        brx.close();
        let deadline = tokio::time::Instant::now() + self.opts.shutdown_timeout;
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inflight.join_next()).await {
                Ok(Some(joined)) => {
                    if let Some(e) = self.settle(joined) {
                        failure.get_or_insert(e);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(abandoned = inflight.len(), "shutdown timeout: abandoning batches in flight (they will be resent on resume)");
                    inflight.abort_all();
                    break;
                }
            }
        }
        while brx.recv().await.is_some() {}
        failure.map_or(Ok(()), Err)
    }

    /// Settles one finished batch; returns its error if it failed.
    fn settle(&self, joined: Result<(Vec<u64>, Result<(), SinkError>), tokio::task::JoinError>) -> Option<SinkError> {
        match joined {
            Ok((lines, Ok(()))) => {
                self.progress.lock().apply(|t| t.resolve(&lines, LineState::Success));
                None
            }
            Ok((lines, Err(e))) => {
                self.progress.lock().apply(|t| t.resolve(&lines, LineState::Released));
                Some(e)
            }
            Err(e) => Some(SinkError::Connect(format!("produce task failed: {e}"))),
        }
    }
}
