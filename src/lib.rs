//! # reprocessing-worker
//!
//! Replays failover NDJSON event logs (Jitsu ingest's files, plain, gzip or zstd, on S3 or a
//! local disk) into Kafka, exactly as they were, with the `connection_ids` header that routes
//! them to their destinations, and reports progress in PostgreSQL. One process is one pod of
//! a Kubernetes Indexed Job: worker *i* of *N* takes files *i*, *N+i*, *2N+i*, …
//!
//! The data flow, the code map, the bounds of every queue and the invariants are in
//! `ARCHITECTURE.md` at the repository's root.
//!
//! The pure core — [`lines`], [`location`], [`decode`], [`extract`], [`filter`], [`select`], [`route`],
//! [`batcher`], [`tracker`], [`resume`] (its rule, offsets and matching; its read-back and
//! reconcile are IO), [`backoff`] — takes bytes and values, does no IO and cannot fail on IO
//! ([`decode`] takes its chunks from a channel, generic over the source's error). The IO
//! modules — [`source`], [`kafka`], [`status`], [`repository`] — each have their own error enum.
//! [`pipeline`] wires one file; [`worker`] runs the job.

// The pure core: bytes and values in, values out.
pub mod backoff;
pub mod batcher;
pub mod decode;
pub mod extract;
pub mod filter;
pub mod jobfile;
pub mod lines;
pub mod location;
pub mod ratelimit;
pub mod resume;
pub mod route;
pub mod secret;
pub mod select;
pub mod sink;
pub mod tracker;

// Test data, for the benches, the demo and the tests; not part of the production library.
#[cfg(feature = "generate")]
pub mod generate;

// The operator's tools (`plan`, `status`); their pure parts build without `io`.
pub mod admin;

// The modules that talk to the outside world.
#[cfg(feature = "io")]
pub mod bufpool;
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

/// Shows an error with its sources, `outer: inner: innermost`, for logs and the status row.
/// Each error keeps its source (`#[source]`); this is the one place that joins them.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        let mut next = self.0.source();
        while let Some(e) = next {
            let s = e.to_string();
            // Some errors already print their source's text; show each text once.
            if !s.is_empty() && !shown.ends_with(&s) {
                shown.push_str(": ");
                shown.push_str(&s);
            }
            next = e.source();
        }
        f.write_str(&shown)
    }
}

#[cfg(test)]
mod chain_tests {
    #[test]
    fn joins_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::Chain(&e).to_string(), "outer: inner");
    }
}
