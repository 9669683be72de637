//! The operator's subcommands: `plan` (list files, balance, print the Kubernetes manifests)
//! and `status` (the job's workers, with throughput and ETA).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use sonic_rs::{json, JsonValueMutTrait};

use super::jobs::{job_info, job_rows, JobRow, Totals};
use crate::status::PgStatus;
use rw_core::plan::{self, Listed, PlanSpec};
use rw_core::resume::WorkerStatus;
use rw_core::{FileEntry, Location, RateLimits, DEFAULT_BATCH_SIZE, DEFAULT_RETRY_ATTEMPTS};

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("source").required(true)))]
pub struct PlanArgs {
    /// List NDJSON files under this S3 prefix (s3://bucket/prefix).
    #[arg(long, group = "source")]
    pub s3_path: Option<String>,
    /// List NDJSON files under this GCS prefix (gs://bucket/prefix).
    #[arg(long, group = "source")]
    pub gcs_path: Option<String>,
    /// List NDJSON files under this local directory.
    #[arg(long, group = "source")]
    pub local_path: Option<PathBuf>,
    /// Objects per listing request (S3 and GCS).
    #[arg(long, default_value_t = crate::source::gcs::LIST_PAGE_SIZE, hide = true)]
    pub list_page_size: u32,
    /// The job id (default: `reprocess-<unix time>`).
    #[arg(long)]
    pub job_id: Option<String>,
    #[arg(long, value_delimiter = ',')]
    pub stream_ids: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    pub connection_ids: Vec<String>,
    /// RFC 3339.
    #[arg(long)]
    pub date_from: Option<String>,
    /// RFC 3339.
    #[arg(long)]
    pub date_to: Option<String>,
    /// Lines per batch (the job file's default).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE as u64)]
    pub batch_size: u64,
    /// Attempts per file, the first included (the job file's default).
    #[arg(long, default_value_t = u64::from(DEFAULT_RETRY_ATTEMPTS))]
    pub retry_attempts: u64,
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long)]
    pub start_file: Option<String>,
    #[arg(long)]
    pub start_line: Option<u64>,
    #[arg(long)]
    pub dry_run: bool,
    /// Workers (default: one per file, at most 100).
    #[arg(long)]
    pub workers: Option<u32>,
    #[arg(long)]
    pub parallelism: Option<u32>,
    /// The job's limit in lines sent a second; each worker takes its share (divided by the
    /// workers that run at once).
    #[arg(long)]
    pub max_events_per_sec: Option<u64>,
    /// The job's limit in bytes of values sent a second, shared likewise.
    #[arg(long)]
    pub max_bytes_per_sec: Option<u64>,
    #[arg(long, default_value = "jitsucom/reprocessing-worker:latest")]
    pub image: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The pods' service account, e.g. one bound to a GCS service account by Workload
    /// Identity (default: the namespace's `default`).
    #[arg(long)]
    pub service_account: Option<String>,
    /// The pods' nodeSelector, as `key=value` pairs (the admin's KUBERNETES_NODE_SELECTOR).
    #[arg(long, value_delimiter = ',', value_parser = parse_pair)]
    pub node_selector: Vec<(String, String)>,
    #[arg(long, env = "KAFKA_DESTINATIONS_TOPIC", default_value = crate::config::defaults::KAFKA_DESTINATIONS_TOPIC)]
    pub topic: String,
    /// Also write the (plain) files.json here, for a local run.
    #[arg(long)]
    pub files_out: Option<PathBuf>,
    /// Also write config.json here, for a local run.
    #[arg(long)]
    pub config_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The job to show.
    #[arg(long)]
    pub job: String,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Print JSON (one document per refresh).
    #[arg(long)]
    pub json: bool,
    /// Refresh every N seconds (default 2) until every worker has ended.
    #[arg(long, num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Also print the admin's own tables (`reprocessing_jobs`, `reprocessing_workers`), for a
    /// database without the Jitsu admin.
    #[arg(long)]
    pub with_admin_tables: bool,
    /// The role the workers connect as: adds its grants on the worker's tables.
    #[arg(long, value_name = "ROLE")]
    pub grant_to: Option<String>,
}

/// The SQL `schema` prints: the worker's own tables and, as asked, the admin's and the grants.
pub fn schema_sql(a: &SchemaArgs) -> String {
    use crate::status::{DDL, RUNS_DDL};
    let mut out = String::from("-- reprocessing-worker: its own table, beside the Jitsu admin's\n");
    if a.with_admin_tables {
        out.push_str(DDL.trim());
        out.push('\n');
    }
    out.push_str(RUNS_DDL.trim());
    out.push('\n');
    if let Some(role) = &a.grant_to {
        let role = format!("\"{}\"", role.replace('"', "\"\""));
        out.push_str(&format!("GRANT SELECT, INSERT, UPDATE ON reprocessing_worker_runs TO {role};\n"));
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Input(String),
    #[error("listing {0}: {1}")]
    List(String, String),
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error("writing {0}: {1}")]
    Write(String, std::io::Error),
    #[error("no job {0:?} in reprocessing_jobs")]
    NoSuchJob(String),
    #[error("job {0:?} has no worker rows yet")]
    NoWorkers(String),
}

/// Variables copied into the credentials Secret when set.
const PASSED_ENV: &[&str] = &[
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_COMPRESSION",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL",
    "KAFKA_SSL",
    "KAFKA_SSL_CA",
    "KAFKA_SSL_SKIP_VERIFY",
    "REPOSITORY_URL",
    "REPOSITORY_AUTH_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "STORAGE_EMULATOR_HOST",
];

fn utc(var: &str, s: &Option<String>) -> Result<Option<chrono::DateTime<chrono::Utc>>, AdminError> {
    s.as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.to_utc())
                .map_err(|e| AdminError::Input(format!("--{var}: {e}")))
        })
        .transpose()
}

async fn list_s3(url: &str, page_size: u32) -> Result<Vec<Listed>, AdminError> {
    let Ok(Location::S3 { bucket, key: prefix }) = Location::parse_prefix(url) else {
        return Err(AdminError::Input("--s3-path must be s3://bucket/prefix".into()));
    };
    let s3 = crate::source::s3_client().await;
    let page_size = page_size.clamp(1, 1000) as i32;
    let mut pages = s3.list_objects_v2().bucket(&bucket).prefix(&prefix).max_keys(page_size).into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| AdminError::List(url.into(), aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let modified = o.last_modified().and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
            out.push(Listed {
                path: Location::S3 { bucket: bucket.clone(), key: key.to_owned() }.to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                modified,
            });
        }
    }
    Ok(out)
}

async fn list_gcs(url: &str, page_size: u32) -> Result<Vec<Listed>, AdminError> {
    let Ok(Location::Gcs { bucket, object: prefix }) = Location::parse_prefix(url) else {
        return Err(AdminError::Input("--gcs-path must be gs://bucket/prefix".into()));
    };
    let objects = crate::source::gcs::list(&bucket, &prefix, page_size)
        .await
        .map_err(|e| AdminError::List(url.into(), rw_core::Chain(&e).to_string()))?;
    Ok(objects.into_iter().map(|o| Listed { path: o.url, size: o.size, modified: o.modified }).collect())
}

fn list_local(dir: &Path, out: &mut Vec<Listed>) -> Result<(), AdminError> {
    let err = |e: std::io::Error| AdminError::List(dir.display().to_string(), e.to_string());
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let meta = entry.metadata().map_err(err)?;
        if meta.is_dir() {
            list_local(&entry.path(), out)?;
        } else {
            let modified = meta.modified().ok().map(chrono::DateTime::<chrono::Utc>::from);
            out.push(Listed { path: entry.path().display().to_string(), size: meta.len(), modified });
        }
    }
    Ok(())
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Runs `plan`: prints the manifests on stdout; returns the number of files planned.
pub async fn run_plan(a: &PlanArgs) -> Result<usize, AdminError> {
    let (from, to) = (utc("date-from", &a.date_from)?, utc("date-to", &a.date_to)?);
    let listed = match (&a.s3_path, &a.gcs_path, &a.local_path) {
        (Some(url), _, _) => list_s3(url, a.list_page_size).await?,
        (None, Some(url), _) => list_gcs(url, a.list_page_size).await?,
        (None, None, Some(dir)) => {
            let mut v = Vec::new();
            list_local(dir, &mut v)?;
            v
        }
        (None, None, None) => {
            return Err(AdminError::Input("--s3-path, --gcs-path or --local-path is required".into()))
        }
    };
    let total = listed.len();
    let selected = plan::select(listed, from, to);
    let untimed = plan::untimed(&selected, from, to);
    if !untimed.is_empty() {
        const SHOWN: usize = 10;
        let more = untimed.len().saturating_sub(SHOWN);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        eprintln!(
            "warning: kept {} files whose names carry no time (the admin skips them when a date range is set; \
             the workers filter their lines by messageCreated): {}{more}",
            untimed.len(),
            untimed[..untimed.len().min(SHOWN)].join(", ")
        );
    }
    if let Some(given) = &a.start_file {
        let entries: Vec<FileEntry> =
            selected.iter().map(|f| FileEntry { path: f.path.clone(), size: f.size }).collect();
        rw_core::resume::find_start_file(&entries, given)
            .map_err(|e| AdminError::Input(format!("--start-file: {e}")))?;
    }
    let workers = plan::worker_count(a.workers, selected.len());
    let files = plan::balance(selected, workers);
    let job_id = a.job_id.clone().unwrap_or_else(|| format!("reprocess-{}", chrono::Utc::now().timestamp()));
    let mut config = json!({
        "connection_ids": a.connection_ids, "dry_run": a.dry_run,
        "batch_size": a.batch_size, "retry_attempts": a.retry_attempts,
        "limit": a.limit.unwrap_or(0), "start_line": a.start_line.unwrap_or(0),
        // The workers that run at once: the pods' share of the job's rate limits.
        "parallel_workers": a.parallelism.map_or(workers, |p| (p as usize).min(workers)),
    });
    for (k, v) in [("max_events_per_sec", a.max_events_per_sec), ("max_bytes_per_sec", a.max_bytes_per_sec)] {
        if let Some(v) = v.filter(|&v| v > 0) {
            config.as_object_mut().expect("an object").insert(&k, v);
        }
    }
    for (k, v) in [("date_from", &a.date_from), ("date_to", &a.date_to), ("start_file", &a.start_file)] {
        if let Some(v) = v {
            config.as_object_mut().expect("an object").insert(&k, v.as_str());
        }
    }
    // An empty stream_ids list would select no stream: leave it out for "every stream".
    if !a.stream_ids.is_empty() {
        config.as_object_mut().expect("an object").insert(&"stream_ids", json!(a.stream_ids));
    }
    for (k, v) in [("s3_path", &a.s3_path), ("gcs_path", &a.gcs_path)] {
        if let Some(p) = v {
            config.as_object_mut().expect("an object").insert(&k, p.as_str());
        }
    }
    let job_config = sonic_rs::to_string(&config).unwrap_or_default();
    let env: Vec<(String, String)> =
        PASSED_ENV.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
    let spec = PlanSpec {
        job_id,
        namespace: a.namespace.clone(),
        image: a.image.clone(),
        workers: Some(workers as u32),
        parallelism: a.parallelism,
        job_config: job_config.clone(),
        env,
        topic: a.topic.clone(),
        service_account: a.service_account.clone(),
        node_selector: a.node_selector.clone(),
    };
    print!("{}", plan::manifests(&spec, &files));
    if let Some(p) = &a.files_out {
        let list: Vec<_> = files.iter().map(|f| json!({"path": f.path.as_str(), "size": f.size})).collect();
        std::fs::write(p, sonic_rs::to_string(&list).unwrap_or_default())
            .map_err(|e| AdminError::Write(p.display().to_string(), e))?;
    }
    if let Some(p) = &a.config_out {
        std::fs::write(p, &job_config).map_err(|e| AdminError::Write(p.display().to_string(), e))?;
    }
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    eprintln!("planned {} of {total} listed files ({bytes} bytes) for {workers} workers", files.len());
    Ok(files.len())
}

fn human_bytes(n: u64) -> String {
    let (mut v, mut unit) = (n as f64, "B");
    for u in ["KB", "MB", "GB", "TB"] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// The job's rate next to its limits: lines/s and bytes/s summed over the workers running.
fn rate_line(rows: &[JobRow], limits: &RateLimits) -> String {
    let running = |r: &&JobRow| !r.ended();
    let lines: f64 = rows.iter().filter(running).filter_map(JobRow::lines_per_sec).sum();
    let bytes: f64 = rows.iter().filter(running).filter_map(JobRow::bytes_per_sec).sum();
    let limit = |l: Option<u64>, unit: &str| l.map_or("no limit".to_string(), |n| format!("limit {n} {unit}"));
    format!(
        "rate {lines:.0} lines/s ({}), {} ({})\n",
        limit(limits.events_per_sec, "lines/s"),
        human_bytes(bytes as u64) + "/s",
        limit(limits.bytes_per_sec, "bytes/s")
    )
}

/// One line of the `status` table, its nine columns laid out here only.
fn table_line(c: [&dyn std::fmt::Display; 9]) -> String {
    format!(
        "{:>6}  {:<10} {:>9} {:>12} {:>12} {:>9} {:>9} {:>21} {:>10}\n",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    )
}

fn table(job: &str, status: WorkerStatus, rows: &[JobRow]) -> String {
    let mut s = format!("job {job} ({})\n", status.as_str());
    let head = ["worker", "status", "files", "lines", "success", "errors", "skipped", "bytes", "lines/s"];
    s += &table_line(head.each_ref().map(|h| h as &dyn std::fmt::Display));
    // A worker's row, or the total's: its first two columns, its counters and its rate.
    let row = |who: &dyn std::fmt::Display, status: &dyn std::fmt::Display, r: &JobRow, rate: f64| {
        table_line([
            who,
            status,
            &format!("{}/{}", r.processed_files, r.assigned_files),
            &r.total_lines,
            &r.success,
            &r.errors,
            &r.skipped,
            &format!("{}/{}", human_bytes(r.processed_bytes), human_bytes(r.total_bytes)),
            &format!("{rate:.0}"),
        ])
    };
    for r in rows {
        s += &row(&r.worker_index, &r.status, r, r.lines_per_sec().unwrap_or(0.0));
    }
    let t = Totals::of(rows);
    s += &row(&"total", &format!("{} ended", t.ended), &t.sum, t.lines_per_sec);
    if let Some(d) = t.eta {
        s += &format!("ETA {}s\n", d.as_secs());
    }
    s
}

/// Runs `status`: prints the job's rows once, or until every worker ended with `--watch`.
pub async fn run_status(a: &StatusArgs) -> Result<(), AdminError> {
    let store = PgStatus::connect_to(&a.database_url, &a.job, 0, Duration::from_secs(10)).await?;
    loop {
        let info = job_info(&store, &a.job).await?.ok_or_else(|| AdminError::NoSuchJob(a.job.clone()))?;
        let rows = job_rows(&store, &a.job).await?;
        if rows.is_empty() {
            return Err(AdminError::NoWorkers(a.job.clone()));
        }
        if a.json {
            let v: Vec<_> = rows.iter().map(JobRow::to_json).collect();
            let limits = &info.limits;
            let limits =
                json!({"max_events_per_sec": limits.events_per_sec, "max_bytes_per_sec": limits.bytes_per_sec});
            let totals = Totals::of(&rows);
            println!(
                "{}",
                sonic_rs::to_string(&json!({
                    "job_id": a.job.as_str(), "status": info.status.as_str(), "workers": v,
                    "total": totals.to_json(), "eta_seconds": totals.eta.map(|d| d.as_secs()),
                    "rate_limits": limits,
                }))
                .unwrap_or_default()
            );
        } else {
            if a.watch.is_some() {
                print!("\x1b[2J\x1b[H");
            }
            print!("{}{}", table(&a.job, info.status, &rows), rate_line(&rows, &info.limits));
        }
        match a.watch {
            Some(secs) if !rows.iter().all(JobRow::ended) => tokio::time::sleep(Duration::from_secs(secs.max(1))).await,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header, the workers and the total share one layout: their columns line up, and
    /// the total adds the workers' counters.
    #[test]
    fn the_status_table_lines_up_and_totals_its_rows() {
        let row = |i: i32, status, lines: i64, bytes: u64, secs: f64| JobRow {
            worker_index: i,
            status,
            assigned_files: 2,
            processed_files: 1,
            total_lines: lines,
            success: lines - 1,
            errors: 1,
            skipped: 0,
            total_bytes: 2 * bytes,
            processed_bytes: bytes,
            elapsed_secs: secs,
            ..JobRow::default()
        };
        let rows =
            [row(0, WorkerStatus::Running, 1_000, 5 << 20, 2.0), row(1, WorkerStatus::Completed, 250_000, 7, 10.0)];
        let text = table("j", WorkerStatus::Running, &rows);
        let lines: Vec<&str> = text.lines().skip(1).filter(|l| !l.starts_with("ETA")).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "columns line up:\n{text}");
        let total: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(total[..6], ["total", "1", "ended", "2/4", "251000", "250998"], "{text}");
    }
}
