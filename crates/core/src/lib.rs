//! # rw-core
//!
//! The pure core of reprocessing-worker: bytes and values in, values out. Splitting a file's
//! bytes into lines ([`lines`]) after decompressing them ([`decode`]), extracting and checking
//! a line's fields ([`extract`]), the job's filters ([`filter`], [`select`]) and routing
//! ([`route`]), batching ([`batcher`]) under the broker's types ([`broker`]), the low
//! watermark ([`tracker`]), the resume's rule, offsets and matching ([`resume`]), the rate
//! limiter ([`ratelimit`]), backoff policies ([`backoff`]), the mounted job files
//! ([`jobfile`]), the record keys ([`keys`]), the `plan` command's listing and manifests
//! ([`plan`]), and the parse of the database's URL ([`dburl`]).
//!
//! This crate depends on no network, database or runtime IO crate (no Kafka client, no
//! PostgreSQL, no HTTP, no filesystem or socket of tokio's): the worker crate above it does
//! the IO and the wiring, and the compiler keeps the imports running that one way. The fuzz
//! targets build it alone.

#![warn(missing_docs)]

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
pub mod plan;
pub mod ratelimit;
pub mod resume;
pub mod route;
pub mod secret;
pub mod select;
pub mod tracker;

/// Deterministic test data, for the benches, the demo and the tests; not part of the
/// production build.
#[cfg(feature = "generate")]
pub mod generate;
