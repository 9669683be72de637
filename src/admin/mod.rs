//! The operator's tools: `plan` (list a job's files, balance them over the workers, print the
//! Kubernetes manifests), `status` (a job's rows, with throughput and ETA) and `schema` (the
//! worker's own tables, for a database owner to create).
//!
//! [`plan`] is pure (listing results in, manifests out); the subcommands and the job's rows
//! talk to S3 and PostgreSQL and build with the `io` feature.

pub mod plan;

#[cfg(feature = "io")]
mod cli;
#[cfg(feature = "io")]
pub mod jobs;

#[cfg(feature = "io")]
pub use cli::{run_plan, run_status, schema_sql, AdminError, PlanArgs, SchemaArgs, StatusArgs};
