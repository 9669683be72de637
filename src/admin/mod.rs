//! The operator's tools: `plan` (list a job's files, balance them over the workers, print the
//! Kubernetes manifests; its pure part is `rw_core::plan`), `status` (a job's rows, with
//! throughput and ETA) and `schema` (the worker's own tables, for a database owner to create).

mod cli;
pub mod jobs;

pub use cli::{run_plan, run_status, schema_sql, AdminError, PlanArgs, SchemaArgs, StatusArgs};
