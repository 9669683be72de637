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
//! The modules fall in three layers, the pure core (bytes and values in, values out; no IO),
//! IO (each module with its own error enum) and the wiring ([`pipeline`] wires one file,
//! [`worker`] runs the job). Imports run down only; the code map in `ARCHITECTURE.md` lists
//! each module in its layer and `tests/layers.rs` holds the code to it.

// Built without the `io` feature too (the fuzz targets): no network, no files.
pub mod backoff;
pub mod batcher;
pub mod broker;
pub mod dburl;
pub mod decode;
pub mod error;
pub mod extract;
pub mod filter;
pub mod jobfile;
pub mod keys;
pub mod lines;
pub mod location;
pub mod ratelimit;
pub mod resume;
pub mod route;
pub mod secret;
pub mod select;
pub mod tracker;

// Test data, for the benches, the demo and the tests; not part of the production library.
#[cfg(feature = "generate")]
pub mod generate;

// The operator's tools (`plan`, `status`); their pure parts build without `io`.
pub mod admin;

// The `io` feature: the modules that talk to the outside world, and the wiring.
#[cfg(feature = "io")]
pub mod bufpool;
#[cfg(feature = "io")]
pub mod cli;
#[cfg(feature = "io")]
pub mod config;
#[cfg(feature = "io")]
pub mod deadletter;
#[cfg(feature = "io")]
pub mod display;
#[cfg(feature = "io")]
pub mod gcs;
#[cfg(feature = "io")]
pub mod kafka;
#[cfg(feature = "io")]
pub mod metrics;
#[cfg(feature = "io")]
pub mod nodelay;
#[cfg(feature = "io")]
pub mod pipeline;
#[cfg(feature = "io")]
pub mod progress;
#[cfg(feature = "io")]
pub mod repository;
#[cfg(feature = "io")]
pub mod source;
#[cfg(feature = "io")]
pub mod stats;
#[cfg(feature = "io")]
pub mod status;
#[cfg(feature = "io")]
pub mod throttle;
#[cfg(feature = "io")]
pub mod tls;
#[cfg(feature = "io")]
pub mod worker;

#[cfg(all(test, feature = "io"))]
mod sim;
#[cfg(all(test, feature = "io"))]
mod testutil;

#[cfg(feature = "io")]
pub use config::Config;
#[cfg(feature = "io")]
pub use worker::{run, RunError, RunSummary};

/// A token cancelled on SIGTERM (Kubernetes stopping the pod) or ctrl-c.
#[cfg(feature = "io")]
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
