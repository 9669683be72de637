//! The command line's root: the worker's arguments (the default) and the subcommands `run`,
//! `plan`, `status` and `schema`. The top of the imports, beside `main.rs`: it joins the
//! worker's [`WorkerArgs`] (in [`crate::config`]) and the operator's tools (in [`crate::admin`]).

use clap::{Parser, Subcommand};

use crate::config::WorkerArgs;

#[derive(Debug, Parser)]
#[command(name = "reprocessing-worker", version, about = "Replays failover NDJSON event logs into Kafka")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one worker of a job (the default when no subcommand is given).
    Run(WorkerArgs),
    /// List a job's files, balance them over N workers and print the Kubernetes manifests
    /// (ConfigMap, Secrets, Indexed Job) for `kubectl apply -f -`.
    Plan(crate::admin::PlanArgs),
    /// Show a job's workers: status, files, lines, bytes, throughput and ETA.
    Status(crate::admin::StatusArgs),
    /// Print the SQL that creates the worker's own tables, for a database owner to apply once
    /// when the worker's role may not create tables (`| psql`).
    Schema(crate::admin::SchemaArgs),
}
