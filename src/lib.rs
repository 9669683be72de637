//! # reprocessing-worker
//!
//! Replays failover NDJSON event logs (Jitsu ingest's files, plain, gzip or zstd, on S3, GCS or a
//! local disk) into Kafka, exactly as they were, with the `connection_ids` header that routes
//! them to their destinations, and reports progress in PostgreSQL. One process is one pod of
//! a Kubernetes Indexed Job: worker *i* of *N* takes files *i*, *N+i*, *2N+i*, …
//!
//! The data flow, the code map, the bounds of every queue and the invariants are in
//! `ARCHITECTURE.md` at the repository's root.
//!
//! The modules fall in three layers: the pure core is its own crate, `rw_core` (bytes and
//! values in, values out; no IO), and this crate holds IO (each module with its own error
//! enum) and the wiring ([`pipeline`] wires one file, [`worker`] runs the job). Imports run
//! down only: the compiler holds the core's side, and `tests/layers.rs` holds IO below the
//! wiring; the code map in `ARCHITECTURE.md` lists each module in its layer.

#![warn(unreachable_pub)]

// Kafka (with its socket options and throttle watcher).
pub mod kafka;
pub(crate) mod tls;

// The sources: local files, S3 and GCS (with the read buffers).
pub mod source;

// The worker's bookkeeping: progress (with its counters and the terminal's line), status
// rows, metrics.
pub mod metrics;
pub mod progress;
pub mod status;

// Dead letters, the configuration, the resume's IO, and the wiring.
pub mod admin;
pub mod cli;
pub mod config;
pub(crate) mod deadletter;
pub mod pipeline;
pub(crate) mod repository;
pub mod resume;
pub mod worker;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod testutil;

pub use config::Config;
pub use worker::{run, RunError, RunSummary};

/// A token cancelled on SIGTERM (Kubernetes stopping the pod) or ctrl-c.
pub fn shutdown_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutdown requested: stopping reads, finishing batches in flight");
        t.cancel();
    });
    token
}
