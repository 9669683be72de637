//! # reprocessing-worker
//!
//! Replays failover NDJSON event logs (Jitsu ingest's files, plain, gzip or zstd, on S3 or a
//! local disk) into Kafka, exactly as they were, with the `connection_ids` header that routes
//! them to their destinations, and reports progress in PostgreSQL. One process is one pod of
//! a Kubernetes Indexed Job: worker *i* of *N* takes files *i*, *N+i*, *2N+i*, …
//!
//! ## Data flow
//! ```text
//!  files.json ─▶ assigned files (i mod N) ─▶ for each file, in order:
//!
//!   S3 / disk ──ranged reads──▶ [chunks ≤ 2 × 8 MiB] ──▶ CPU thread ──▶ [batches ≤ in-flight] ──▶ producer ──▶ Kafka
//!   (source)                                         decode (gzip/zstd)                          rskafka, acks
//!                                                    split (memchr)                                  │
//!                                                    validate + 4 fields (sonic-rs)                  │
//!                                                    filter, route, batch                            │
//!                                                         │ line states            acks (any order)  │
//!                                                         └───────────▶ Progress: low watermark ◀────┘
//!                                                                       + exact counters
//!                                                                             │ every 1000 lines
//!                                                                             ▼
//!                                                               status flusher ──▶ PostgreSQL row
//! ```
//!
//! The pure core — [`lines`], [`extract`], [`filter`], [`route`], [`batcher`], [`tracker`] —
//! takes bytes and values, does no IO and cannot fail on IO. The IO modules — [`source`],
//! [`decode`], [`kafka`], [`status`], [`repository`] — each have their own error enum.
//! [`pipeline`] wires one file; [`worker`] runs the job.

// The pure core: bytes and values in, values out.
pub mod batcher;
pub mod extract;
pub mod filter;
pub mod generate;
pub mod jobfile;
pub mod lines;
pub mod plan;
pub mod route;
pub mod secret;
pub mod sink;
pub mod tracker;

/// Declares the modules that talk to the outside world, all behind the `io` feature.
macro_rules! io_modules {
    ($($m:ident),* $(,)?) => { $( #[cfg(feature = "io")] pub mod $m; )* };
}
io_modules!(
    admin, bufpool, config, deadletter, decode, display, kafka, pipeline, progress, repository, source, status, tls,
    worker,
);

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
