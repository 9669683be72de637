//! # rw-core
//!
//! The pure core of reprocessing-worker: bytes and values in, values out. Splitting a file's
//! bytes into lines ([`LineSplitter`]) after decompressing them ([`decode()`]), extracting and
//! checking a line's fields ([`extract()`]), the job's filters ([`Filter`], [`StreamSelector`])
//! and routing ([`Router`]), batching ([`Batcher`]) under the broker's types ([`Broker`]), the
//! low watermark ([`Tracker`]), the resume's rule, offsets and matching ([`resume`]), the rate
//! limiter ([`Limits`]), backoff policies ([`Backoff`]), the mounted job files
//! ([`parse_job_config`], [`parse_files_list`]), the record keys ([`LineKeys`]), the `plan`
//! command's listing and manifests ([`plan`]), and the parse of the database's URL ([`DbUrl`]).
//!
//! This crate depends on no network, database or runtime IO crate (no Kafka client, no
//! PostgreSQL, no HTTP, no filesystem or socket of tokio's): the worker crate above it does
//! the IO and the wiring, and the compiler keeps the imports running that one way. The fuzz
//! targets build it alone.
//!
//! # The public surface
//!
//! The modules are private; the items the worker crate (its library, binaries, tests,
//! benches and examples) and the fuzz targets use are re-exported here, at the crate root,
//! so that a path reads `rw_core::LineSplitter`, not `rw_core::lines::LineSplitter`, and the
//! compiler reports what nobody uses (`unreachable_pub`, dead code). The list holds what that
//! code names, and the types the listed items take or give back (`unnameable_types` keeps
//! every such type nameable and documented). An item not listed here is the crate's own.
//!
//! Three modules stay public, each with its own curated surface, because their items read
//! better as a namespace:
//!
//! - [`resume`]: the resume's rule, assignment, read-back offsets and matching, a family of
//!   its own (`resume::Snapshot`, `resume::Recovered`, `resume::Ledger`); its submodules are
//!   the crate's own (`pub(crate)`) and `resume` re-exports what is used.
//! - [`plan`]: the `plan` command's steps, called as `plan::select`, `plan::balance`,
//!   `plan::manifests`; flattened, `select` would read as the job's stream selector. What
//!   only the crate uses (`MAX_WORKERS`, `label_value`, ...) is `pub(crate)`.
//! - `generate` (with the `generate` feature): deterministic test data, kept apart from the
//!   production surface (`generate::ndjson`, `generate::Shape`).

#![warn(missing_docs)]
#![warn(unreachable_pub)]
#![warn(unnameable_types)]

mod backoff;
mod batcher;
mod broker;
mod dburl;
mod decode;
mod error;
mod extract;
mod filter;
mod jobfile;
mod keys;
mod lines;
mod location;
pub mod plan;
mod ratelimit;
mod recordbatch;
pub mod resume;
mod route;
mod secret;
mod select;
mod sequence;
mod tracker;

/// Deterministic test data, for the benches, the demo and the tests; not part of the
/// production build.
#[cfg(feature = "generate")]
pub mod generate;

pub use backoff::{spread_seed, Backoff};
pub use batcher::{BatchLimits, Batcher, Decision, LineError};
pub use broker::{
    Batch, BoxError, Broker, BrokerError, DryRun, ErrorCode, Failure, Fetched, Page, PartitionRange, Record, RecordRef,
    Records, Spread, KEY_LEN,
};
pub use dburl::{DbUrl, DbUrlError, PgTls, Roots, SslMode, Verify};
pub use decode::{decode, detect, Codec, DecodeError};
pub use error::Chain;
pub use extract::{extract, extract_with, Envelope, ExtractError, Fields, Origin, PARSER_STACK_BYTES};
pub use filter::{parse_time, Filter, SkipReason};
pub use jobfile::{
    parse_files_list, parse_job_config, FileEntry, JobFileError, JobOptions, DEFAULT_BATCH_SIZE, DEFAULT_RETRY_ATTEMPTS,
};
pub use keys::{FileKeys, LineKeys, Ours};
pub use lines::{Line, LineSplitter};
pub use location::{BadLocation, Location};
pub use ratelimit::{worker_limit, Limits, RateLimits};
pub use recordbatch::{BatchCompression, BatchEncoder, EncodeError};
pub use route::{JobRouting, RepositoryFormatError, RouteError, Router, Streams, Target, HEADER};
pub use secret::{redact_url, Secret};
pub use select::{Rule, RuleMode, StreamSelector};
pub use sequence::{sequence_follows, Place, ProducerId, Sequence, Sequencer, WINDOW};
pub use tracker::{Advance, Counts, Finished, LineState, Seq, Tracker};
