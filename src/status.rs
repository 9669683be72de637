//! The worker's row in `reprocessing_workers` (PostgreSQL), written by a background task.
//!
//! The schema is the admin service's (see `shared` contract): `INTEGER` columns bind `i32`,
//! `BIGINT` columns bind `i64`. Standalone, the worker creates the tables with the same DDL
//! (`IF NOT EXISTS`, under an advisory lock so that workers starting together do not race)
//! and the job row if it is missing. The row is upserted: the admin's `pending` row is taken
//! over, never deleted. `started_at` is set the first time the row goes `running` and kept
//! after; `completed_at` is set when the row ends (`completed`, `failed`). The column holds
//! only the admin's values ([`WorkerStatus::column`]). A role that may not create tables
//! still runs, without the worker's own tables ([`OwnTables`]).
//!
//! Failed writes reconnect and retry on the next write; the pipeline never waits for them.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_postgres::Client;

use rw_core::resume::{Assignment, JobChanged, PartitionOffset, Snapshot, StoredRow, UnknownStatus, WorkerStatus};
use rw_core::DbUrl;

/// One write of the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub status: WorkerStatus,
    pub snapshot: Snapshot,
    pub assigned_files: u32,
    pub total_bytes: u64,
    pub error: Option<String>,
}

/// What went wrong with the database. `url` is always shown without its password.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("database {url}: invalid URL")]
    InvalidUrl {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database {url}: invalid URL")]
    BadUrl {
        url: String,
        #[source]
        source: rw_core::DbUrlError,
    },
    #[error("database {url}: TLS setup failed")]
    Tls {
        url: String,
        #[source]
        source: crate::tls::TlsError,
    },
    #[error("database {url}: no connection within {after:?}")]
    ConnectTimeout { url: String, after: Duration },
    #[error("database {url}: cannot connect")]
    Connect {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database {url}: no answer within {after:?}")]
    QueryTimeout { url: String, after: Duration },
    #[error("database {url}: query failed")]
    Query {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database row")]
    BadRow(#[from] UnknownStatus),
    /// The run this one would resume was given another job (files, workers): refused before
    /// the row is claimed.
    #[error(transparent)]
    JobChanged(#[from] JobChanged),
    /// Another run of the same job and index started after this one and owns the row now.
    #[error("the row of worker {index} of job {job} was taken over by another run; this one stops without writing")]
    TakenOver { job: String, index: u32 },
    /// The row is `completed`, or ahead of this write: rows never go backwards.
    #[error(
        "the row of worker {index} of job {job} is {status} and ahead of this run; this one stops without writing"
    )]
    RowAhead { job: String, index: u32, status: WorkerStatus },
}

impl StatusError {
    /// True when this run must stop: its row belongs to, or was finished by, another run.
    pub fn row_lost(&self) -> bool {
        matches!(self, StatusError::TakenOver { .. } | StatusError::RowAhead { .. })
    }
}

/// Where the worker's row lives: PostgreSQL in production, an in-memory fake in the
/// in-process tests. Start-up reads and writes go through it as well as the flusher's.
pub trait StatusStore: Send + Sync {
    /// Creates the tables when they are missing and the role may, and the job row
    /// (standalone runs), then claims the row for this run with its `assignment`. Says
    /// whether the worker's own tables can be used: without them the offsets are neither
    /// stored nor read, and a run does not claim its row. When the run it would resume (a
    /// row that started) was given another assignment, fails with
    /// [`StatusError::JobChanged`] and claims nothing.
    fn prepare<'a>(
        &'a self,
        job_config_json: &'a str,
        assignment: &'a Assignment,
    ) -> BoxFuture<'a, Result<OwnTables, StatusError>>;
    /// This worker's row as stored, if any.
    fn read_row(&self) -> BoxFuture<'_, Result<Option<StoredRow>, StatusError>>;
    /// Upserts this worker's row, with the read-back offsets when given (taken before the
    /// row's snapshot), in one statement. A row that is `completed`, ahead of this write, or
    /// owned by a later run of the same index is left as it is, and the write fails with an
    /// error for which [`StatusError::row_lost`] is true.
    fn write<'a>(
        &'a self,
        row: &'a StatusRow,
        offsets: Option<&'a [PartitionOffset]>,
    ) -> BoxFuture<'a, Result<(), StatusError>>;
    /// The read-back start offsets stored for this worker (see [`rw_core::resume::Ledger`]).
    fn read_offsets(&self) -> BoxFuture<'_, Result<Vec<PartitionOffset>, StatusError>>;
    /// Stores the read-back start offsets alone, unless a later run owns the index (at
    /// start-up, before anything is sent).
    fn write_offsets<'a>(&'a self, offsets: &'a [PartitionOffset]) -> BoxFuture<'a, Result<(), StatusError>>;
}

pub const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS reprocessing_jobs (
    id VARCHAR(64) PRIMARY KEY,
    config JSONB NOT NULL,
    status VARCHAR(32) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    k8s_job_name VARCHAR(255),
    total_files INTEGER DEFAULT 0,
    total_workers INTEGER DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS reprocessing_jobs_created_at_idx ON reprocessing_jobs (created_at DESC);
CREATE TABLE IF NOT EXISTS reprocessing_workers (
    job_id VARCHAR(64) NOT NULL REFERENCES reprocessing_jobs(id) ON DELETE CASCADE,
    worker_index INTEGER NOT NULL,
    status VARCHAR(32) NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMP WITH TIME ZONE,
    current_file TEXT,
    current_line BIGINT DEFAULT 0,
    current_ts TEXT,
    assigned_files INTEGER DEFAULT 0,
    processed_files INTEGER DEFAULT 0,
    total_lines BIGINT DEFAULT 0,
    success_count BIGINT DEFAULT 0,
    error_count BIGINT DEFAULT 0,
    skipped_count BIGINT DEFAULT 0,
    total_bytes BIGINT DEFAULT 0,
    processed_bytes BIGINT DEFAULT 0,
    error TEXT,
    PRIMARY KEY (job_id, worker_index)
);
CREATE INDEX IF NOT EXISTS reprocessing_workers_job_id_idx ON reprocessing_workers (job_id);
CREATE INDEX IF NOT EXISTS reprocessing_workers_status_idx ON reprocessing_workers (job_id, status);
"#;

/// The worker's own tables, beside the admin's (whose schema stays untouched): which run of
/// each index owns its row (a run claims it at start-up; the row's writes check it), with
/// that run's own status (`cancelled` too, which the admin's column shows as `failed`); and
/// the read-back offsets of [`rw_core::resume::Ledger`]. `reprocessing-worker schema` prints
/// it for a database owner to apply when the worker's role may not create tables.
pub const RUNS_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS reprocessing_worker_runs (
    job_id VARCHAR(64) NOT NULL REFERENCES reprocessing_jobs(id) ON DELETE CASCADE,
    worker_index INTEGER NOT NULL,
    run_id VARCHAR(36) NOT NULL,
    claimed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    outcome VARCHAR(32),
    readback_topics TEXT[],
    readback_partitions INTEGER[],
    readback_offsets BIGINT[],
    readback_at TIMESTAMP WITH TIME ZONE,
    total_workers INTEGER,
    total_files INTEGER,
    assigned_files INTEGER,
    files_fingerprint VARCHAR(64),
    PRIMARY KEY (job_id, worker_index)
);
ALTER TABLE reprocessing_worker_runs ADD COLUMN IF NOT EXISTS outcome VARCHAR(32),
    ADD COLUMN IF NOT EXISTS readback_topics TEXT[], ADD COLUMN IF NOT EXISTS readback_partitions INTEGER[],
    ADD COLUMN IF NOT EXISTS readback_offsets BIGINT[], ADD COLUMN IF NOT EXISTS readback_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS total_workers INTEGER, ADD COLUMN IF NOT EXISTS total_files INTEGER,
    ADD COLUMN IF NOT EXISTS assigned_files INTEGER, ADD COLUMN IF NOT EXISTS files_fingerprint VARCHAR(64);
"#;

/// Sets the read-back offsets of this run's row in `reprocessing_worker_runs` ($3, $4, $5:
/// topics, partitions, offsets), while the run ($6) owns it.
const WRITE_OFFSETS: &str = r#"
UPDATE reprocessing_worker_runs SET readback_topics = $3, readback_partitions = $4, readback_offsets = $5,
    readback_at = NOW()
WHERE job_id = $1 AND worker_index = $2 AND run_id = $6
"#;

/// The row's upsert; `$guard` adds the ownership check of [`RUNS_DDL`]'s table.
macro_rules! upsert {
    ($with:literal, $guard:literal) => {
        concat!(
            $with,
            r#"
INSERT INTO reprocessing_workers AS w (job_id, worker_index, status, started_at, updated_at, completed_at,
    current_file, current_line, current_ts, assigned_files, processed_files, total_lines, success_count,
    error_count, skipped_count, total_bytes, processed_bytes, error)
VALUES ($1, $2, $3::varchar, NOW(), NOW(),
    CASE WHEN $3::varchar IN ('completed', 'failed') THEN NOW() END,
    $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (job_id, worker_index) DO UPDATE SET
    status = EXCLUDED.status,
    started_at = COALESCE(w.started_at, EXCLUDED.started_at),
    updated_at = NOW(),
    completed_at = EXCLUDED.completed_at,
    current_file = EXCLUDED.current_file,
    current_line = EXCLUDED.current_line,
    current_ts = EXCLUDED.current_ts,
    assigned_files = EXCLUDED.assigned_files,
    processed_files = EXCLUDED.processed_files,
    total_lines = EXCLUDED.total_lines,
    success_count = EXCLUDED.success_count,
    error_count = EXCLUDED.error_count,
    skipped_count = EXCLUDED.skipped_count,
    total_bytes = EXCLUDED.total_bytes,
    processed_bytes = EXCLUDED.processed_bytes,
    error = EXCLUDED.error
WHERE w.status <> 'completed'
    AND EXCLUDED.total_lines >= COALESCE(w.total_lines, 0)
    AND EXCLUDED.processed_files >= COALESCE(w.processed_files, 0)"#,
            $guard
        )
    };
}

/// The upsert when this run owns the row in `reprocessing_worker_runs`: one statement that
/// records the run's own status there (`cancelled` included) and, when given ($18–$20, else
/// NULL), the read-back offsets, and writes the row only while the run owns it. So a write
/// costs one statement and two rows, whatever the partition count.
const UPSERT: &str = upsert!(
    "WITH run AS (UPDATE reprocessing_worker_runs SET outcome = $17,
        readback_topics = COALESCE($18::text[], readback_topics),
        readback_partitions = COALESCE($19::int[], readback_partitions),
        readback_offsets = COALESCE($20::bigint[], readback_offsets),
        readback_at = CASE WHEN $18::text[] IS NULL THEN readback_at ELSE NOW() END
    WHERE job_id = $1 AND worker_index = $2 AND run_id = $16 RETURNING 1)",
    "\n    AND EXISTS (SELECT 1 FROM run)"
);
/// The upsert without the worker's own tables: the row never goes backwards, but a second
/// run of the same index is not told apart.
const UPSERT_ROW_ONLY: &str = upsert!("", "");

/// The advisory lock held while the tables are created.
const DDL_LOCK: i64 = 7262635483;

/// Which tables exist, and what this role may do (no privilege needed to ask).
const PROBE: &str = r#"
SELECT to_regclass('reprocessing_jobs') IS NOT NULL AND to_regclass('reprocessing_workers') IS NOT NULL,
    EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('reprocessing_worker_runs')
        AND attname = 'files_fingerprint' AND NOT attisdropped),
    COALESCE(bool_and(has_table_privilege(to_regclass('reprocessing_worker_runs'), p)), false),
    COALESCE(has_table_privilege(to_regclass('reprocessing_jobs'), 'INSERT'), false),
    COALESCE(has_table_privilege(to_regclass('reprocessing_jobs'), 'SELECT')
        AND has_table_privilege(to_regclass('reprocessing_jobs'), 'UPDATE'), false)
FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE']) AS p
"#;

/// What [`PROBE`] found.
struct Probe {
    admin_tables: bool,
    own_tables: bool,
    own_writable: bool,
    may_add_jobs: bool,
    may_end_jobs: bool,
}

/// Whether the worker could use its own tables ([`RUNS_DDL`]) beside the admin's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnTables {
    /// Present and writable: exact resume, and one run owns each row.
    Present,
    /// The role may write only the admin's tables; why.
    Unavailable { why: String },
}

impl OwnTables {
    /// What the worker gives up without its own tables, said once at start-up.
    pub const GIVEN_UP: &'static str = "the worker's own table (reprocessing_worker_runs) is not \
        available, so two guarantees are given up: a resumed run sends again the lines after its resume point \
        that an earlier run may have delivered (at least once, at most the unsettled window, instead of the \
        read-back's exactly once), and a second run of the same index is not stopped (the row still never goes \
        backwards). A database owner restores both by applying `reprocessing-worker schema` once";
}

/// Read-back offsets as the three array columns of the run's row.
#[derive(Debug, Clone)]
struct OffsetColumns {
    topics: Vec<String>,
    partitions: Vec<i32>,
    starts: Vec<i64>,
}

impl OffsetColumns {
    fn of(offsets: &[PartitionOffset]) -> Self {
        OffsetColumns {
            topics: offsets.iter().map(|o| o.topic.clone()).collect(),
            partitions: offsets.iter().map(|o| o.partition).collect(),
            starts: offsets.iter().map(|o| o.offset).collect(),
        }
    }

    fn offsets(self) -> Vec<PartitionOffset> {
        let parts = self.topics.into_iter().zip(self.partitions).zip(self.starts);
        parts.map(|((topic, partition), offset)| PartitionOffset { topic, partition, offset }).collect()
    }
}

/// The PostgreSQL store for one worker's row.
pub struct PgStatus {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    shown_url: String,
    /// The schema `CREATE TABLE` uses, when the URL names one: created with the tables.
    schema: Option<String>,
    job_id: String,
    worker_index: i32,
    /// The connection; its lock is held for each query, so queries run one at a time.
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    timeout: Duration,
    /// This run's id in `reprocessing_worker_runs`.
    run_id: String,
    /// Set by `prepare`: true when the worker's own tables are used.
    own_tables: std::sync::OnceLock<bool>,
    /// Set by `prepare`: true when this role may end a standalone job's row (it may read
    /// and update `reprocessing_jobs`); a role that may write only the worker rows leaves
    /// the job row to the admin.
    may_end_job: std::sync::OnceLock<bool>,
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// tokio-postgres's config for `url` (its TLS half is `crate::tls::postgres_config`'s):
/// parsing it at start-up finds a bad port or timeout before anything runs.
pub fn pg_config(url: &DbUrl) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    url.connection_string().expose().parse()
}

impl PgStatus {
    /// Parses `url` and connects; see [`PgStatus::connect`].
    pub async fn connect_to(
        url: &str,
        job_id: &str,
        worker_index: u32,
        timeout: Duration,
    ) -> Result<Self, StatusError> {
        let shown = rw_core::redact_url(url);
        let url = DbUrl::parse(url).map_err(|source| StatusError::BadUrl { url: shown, source })?;
        Self::connect(&url, job_id, worker_index, timeout).await
    }

    /// Connects once, within `timeout`. Errors show the URL without its password.
    pub async fn connect(url: &DbUrl, job_id: &str, worker_index: u32, timeout: Duration) -> Result<Self, StatusError> {
        let shown_url = url.shown.clone();
        let mut config = pg_config(url).map_err(|source| StatusError::InvalidUrl { url: shown_url.clone(), source })?;
        if config.get_connect_timeout().is_none_or(|t| *t > timeout) {
            config.connect_timeout(timeout);
        }
        let tls_config = crate::tls::postgres_config(&url.tls)
            .map_err(|source| StatusError::Tls { url: shown_url.clone(), source })?;
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
        if !url.no_effect.is_empty() {
            tracing::info!(
                parameters = url.no_effect.join(","),
                "DATABASE_URL parameters without effect on the worker"
            );
        }
        let me = Self {
            config,
            tls,
            shown_url,
            schema: url.schema(),
            job_id: job_id.to_owned(),
            worker_index: i32_of(worker_index),
            client: tokio::sync::Mutex::new(None),
            timeout,
            run_id: uuid::Uuid::new_v4().to_string(),
            own_tables: std::sync::OnceLock::new(),
            may_end_job: std::sync::OnceLock::new(),
        };
        let client = me.open().await?;
        *me.client.lock().await = Some(Arc::new(client));
        Ok(me)
    }

    // tokio-postgres errors never include the password; the URL is shown redacted.
    fn query_failed(&self, source: tokio_postgres::Error) -> StatusError {
        StatusError::Query { url: self.shown_url.clone(), source }
    }

    async fn open(&self) -> Result<Client, StatusError> {
        let connect = self.config.connect(self.tls.clone());
        let (client, conn) = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| StatusError::ConnectTimeout { url: self.shown_url.clone(), after: self.timeout })?
            .map_err(|source| StatusError::Connect { url: self.shown_url.clone(), source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %rw_core::Chain(&e), "database connection closed");
            }
        });
        Ok(client)
    }

    /// Runs `f` with a live client, reconnecting once if the connection is gone. `f` takes
    /// the client by `Arc`, so its future borrows only what the caller lends it.
    pub(crate) async fn with_client<T, Fut>(&self, f: impl Fn(Arc<Client>) -> Fut) -> Result<T, StatusError>
    where
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            match tokio::time::timeout(self.timeout, f(Arc::clone(c))).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !e.is_closed() && e.as_db_error().is_some() => return Err(self.query_failed(e)),
                _ => {}
            }
        }
        let lost = slot.take().is_some();
        let c = Arc::new(self.open().await?);
        if lost {
            tracing::warn!(url = %self.shown_url, "the database connection was lost; reconnected");
        }
        let r = tokio::time::timeout(self.timeout, f(Arc::clone(&c))).await;
        *slot = Some(c);
        match r {
            Ok(r) => r.map_err(|e| self.query_failed(e)),
            Err(_) => Err(StatusError::QueryTimeout { url: self.shown_url.clone(), after: self.timeout }),
        }
    }

    /// What the tables are, and what this role may do with them: nothing here needs a
    /// privilege, so a locked-down role learns it without an error in the database's log.
    async fn probe(&self) -> Result<Probe, StatusError> {
        let r = self.with_client(move |c| async move { c.query_one(PROBE, &[]).await }).await?;
        Ok(Probe {
            admin_tables: r.get(0),
            own_tables: r.get(1),
            own_writable: r.get(2),
            may_add_jobs: r.get(3),
            may_end_jobs: r.get(4),
        })
    }

    /// Runs `sql` in one transaction under the advisory lock that keeps workers starting
    /// together from racing on `CREATE`. A refusal for want of privilege is told apart.
    async fn create(&self, sql: &str) -> Result<Result<(), tokio_postgres::Error>, StatusError> {
        let locked = &format!("BEGIN; SELECT pg_advisory_xact_lock({DDL_LOCK}); {sql} COMMIT;");
        let r = self
            .with_client(move |c| async move {
                let r = c.batch_execute(locked).await;
                if r.is_err() {
                    c.batch_execute("ROLLBACK").await?;
                }
                Ok(r)
            })
            .await?;
        match r {
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => Ok(Err(e)),
            Err(e) => Err(self.query_failed(e)),
            Ok(()) => Ok(Ok(())),
        }
    }

    async fn create_tables(&self, job_config_json: &str, assignment: &Assignment) -> Result<OwnTables, StatusError> {
        let mut probe = self.probe().await?;
        if !probe.admin_tables {
            // Standalone: the admin's tables as the admin creates them (in the URL's schema,
            // created first), then ours.
            let ddl = match &self.schema {
                Some(schema) => format!("CREATE SCHEMA IF NOT EXISTS \"{}\"; {DDL}", schema.replace('"', "\"\"")),
                None => DDL.to_owned(),
            };
            if let Err(e) = self.create(&ddl).await? {
                return Err(self.query_failed(e));
            }
            probe = self.probe().await?;
        }
        let own = if probe.own_tables && probe.own_writable {
            OwnTables::Present
        } else if probe.own_tables {
            OwnTables::Unavailable { why: "this role may not write reprocessing_worker_runs".into() }
        } else {
            match self.create(RUNS_DDL).await? {
                Ok(()) => OwnTables::Present,
                Err(e) => OwnTables::Unavailable {
                    why: format!("this role may not create it ({})", e.as_db_error().map_or("", |d| d.message())),
                },
            }
        };
        let (job, run, idx) = (&self.job_id, &self.run_id, self.worker_index);
        let (files, workers) = (i32_of(assignment.total_files), i32_of(assignment.total_workers));
        let (add_job, claim) = (probe.may_add_jobs, own == OwnTables::Present);
        if claim {
            if let Some(before) = self.resumed_assignment().await? {
                if let Some(changed) = assignment.changed_from(&before) {
                    return Err(changed.into());
                }
            }
        }
        let (mine, print) = (i32_of(assignment.files), &assignment.fingerprint);
        self.with_client(move |c| async move {
            // The admin writes the job row before it starts a worker; standalone, the worker
            // does, with every column the admin scans into a Go value set (its
            // `k8s_job_name` is '' as the admin's own before it has a Kubernetes Job).
            if add_job {
                c.execute(
                    "INSERT INTO reprocessing_jobs (id, config, status, created_at, started_at, k8s_job_name,
                         total_files, total_workers)
                     VALUES ($1, $2::text::jsonb, 'running', NOW(), NOW(), '', $3, $4) ON CONFLICT (id) DO NOTHING",
                    &[job, &job_config_json, &files, &workers],
                )
                .await?;
            }
            // This run owns the row from now on; an older run of the same index stops.
            if claim {
                c.execute(
                    "INSERT INTO reprocessing_worker_runs (job_id, worker_index, run_id, total_workers, total_files,
                         assigned_files, files_fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (job_id, worker_index) DO UPDATE SET run_id = EXCLUDED.run_id,
                         claimed_at = NOW(), outcome = NULL, total_workers = EXCLUDED.total_workers,
                         total_files = EXCLUDED.total_files, assigned_files = EXCLUDED.assigned_files,
                         files_fingerprint = EXCLUDED.files_fingerprint",
                    &[job, &idx, run, &workers, &files, &mine, print],
                )
                .await?;
            }
            Ok(())
        })
        .await?;
        let _ = self.own_tables.set(claim);
        let _ = self.may_end_job.set(probe.may_end_jobs);
        Ok(own)
    }

    /// The assignment stored by the last run of this index, when its row shows that it
    /// started (`running`, `failed` or `completed`): what a resume must match.
    async fn resumed_assignment(&self) -> Result<Option<Assignment>, StatusError> {
        let (job, idx) = (&self.job_id, self.worker_index);
        let row = self
            .with_client(move |c| async move {
                c.query_opt(
                    "SELECT r.total_workers, r.total_files, r.assigned_files, r.files_fingerprint
                     FROM reprocessing_worker_runs r JOIN reprocessing_workers w
                         ON w.job_id = r.job_id AND w.worker_index = r.worker_index
                     WHERE r.job_id = $1 AND r.worker_index = $2 AND r.files_fingerprint IS NOT NULL
                         AND w.status IN ('running', 'failed', 'completed')",
                    &[job, &idx],
                )
                .await
            })
            .await?;
        let n = |r: &tokio_postgres::Row, i: usize| r.get::<_, Option<i32>>(i).unwrap_or(0).max(0) as u32;
        Ok(row.map(|r| Assignment {
            total_workers: n(&r, 0),
            total_files: n(&r, 1),
            files: n(&r, 2),
            fingerprint: r.get(3),
        }))
    }

    async fn select_row(&self) -> Result<Option<StoredRow>, StatusError> {
        let (job, idx) = (&self.job_id, self.worker_index);
        let row = self
            .with_client(move |c| async move {
                c.query_opt(
                    "SELECT status, current_file, current_line, current_ts, processed_files, total_lines,
                            success_count, error_count, skipped_count, processed_bytes
                     FROM reprocessing_workers WHERE job_id = $1 AND worker_index = $2",
                    &[job, &idx],
                )
                .await
            })
            .await?;
        let Some(r) = row else { return Ok(None) };
        let n = |i: usize| r.get::<_, Option<i64>>(i).unwrap_or(0).max(0) as u64;
        Ok(Some(StoredRow {
            status: r.get::<_, String>(0).parse()?,
            snapshot: Snapshot {
                current_file: r.get(1),
                current_line: n(2),
                current_ts: r.get(3),
                processed_files: r.get::<_, Option<i32>>(4).unwrap_or(0).max(0) as u32,
                counts: rw_core::Counts { total: n(5), success: n(6), error: n(7), skipped: n(8) },
                processed_bytes: n(9),
            },
        }))
    }

    /// True when `prepare` found the worker's own tables usable.
    fn owns_tables(&self) -> bool {
        self.own_tables.get().copied().unwrap_or(false)
    }

    async fn upsert(&self, row: &StatusRow, offsets: Option<&[PartitionOffset]>) -> Result<(), StatusError> {
        let (job, idx, run, owned) = (&self.job_id, self.worker_index, &self.run_id, self.owns_tables());
        let offsets = offsets.map(OffsetColumns::of);
        let s = &row.snapshot;
        let (topics, partitions, starts) = match &offsets {
            Some(o) => (Some(&o.topics), Some(&o.partitions), Some(&o.starts)),
            None => (None, None, None),
        };
        // Typed parameters: one round trip, where a statement given as text costs a prepare
        // round trip (and an empty transaction) first.
        use tokio_postgres::types::{ToSql, Type};
        let params: [(&(dyn ToSql + Sync), Type); 20] = [
            (job, Type::VARCHAR),
            (&idx, Type::INT4),
            (&row.status.column(), Type::VARCHAR),
            (&s.current_file, Type::TEXT),
            (&i64_of(s.current_line), Type::INT8),
            (&s.current_ts, Type::TEXT),
            (&i32_of(row.assigned_files), Type::INT4),
            (&i32_of(s.processed_files), Type::INT4),
            (&i64_of(s.counts.total), Type::INT8),
            (&i64_of(s.counts.success), Type::INT8),
            (&i64_of(s.counts.error), Type::INT8),
            (&i64_of(s.counts.skipped), Type::INT8),
            (&i64_of(row.total_bytes), Type::INT8),
            (&i64_of(s.processed_bytes), Type::INT8),
            (&row.error, Type::TEXT),
            (run, Type::VARCHAR),
            (&row.status.as_str(), Type::VARCHAR),
            (&topics, Type::TEXT_ARRAY),
            (&partitions, Type::INT4_ARRAY),
            (&starts, Type::INT8_ARRAY),
        ];
        let params = &params;
        let written = self
            .with_client(move |c| async move {
                match owned {
                    true => c.execute_typed(UPSERT, params).await,
                    false => c.execute_typed(UPSERT_ROW_ONLY, &params[..15]).await,
                }
            })
            .await?;
        if written != 1 && !self.landed_before(row).await? {
            return Err(self.why_refused().await?);
        }
        if row.status == WorkerStatus::Completed && self.may_end_job.get() == Some(&true) {
            self.end_own_job().await?;
        }
        Ok(())
    }

    /// Whether the stored row already is `row`, final: an earlier attempt of this write
    /// committed and its answer was lost (a retried final write must not take its own row
    /// for another run's). The resume point and every counter must match.
    async fn landed_before(&self, row: &StatusRow) -> Result<bool, StatusError> {
        if row.status == WorkerStatus::Running {
            return Ok(false);
        }
        let same = |s: &Snapshot| {
            let ours = &row.snapshot;
            (s.counts, &s.current_file, s.current_line, s.processed_files, s.processed_bytes)
                == (ours.counts, &ours.current_file, ours.current_line, ours.processed_files, ours.processed_bytes)
        };
        Ok(self.select_row().await?.is_some_and(|stored| stored.status == row.status && same(&stored.snapshot)))
    }

    /// Marks the job `completed` when the worker wrote its row (a standalone run: no
    /// Kubernetes Job, which the admin would judge it by) and every worker's row is
    /// `completed`. Each worker asks after its own final write, so the last to commit sees
    /// every row; a job with a `failed` worker stays `running`, for its rerun to end.
    async fn end_own_job(&self) -> Result<(), StatusError> {
        let job = &self.job_id;
        self.with_client(move |c| async move {
            c.execute(
                "UPDATE reprocessing_jobs j SET status = 'completed', completed_at = NOW()
                 WHERE j.id = $1 AND j.status = 'running' AND j.k8s_job_name = ''
                     AND (SELECT count(*) FROM reprocessing_workers w
                          WHERE w.job_id = j.id AND w.status = 'completed') >= j.total_workers",
                &[job],
            )
            .await
        })
        .await
        .map(drop)
    }

    async fn select_offsets(&self) -> Result<Vec<PartitionOffset>, StatusError> {
        if !self.owns_tables() {
            return Ok(Vec::new());
        }
        let (job, idx) = (&self.job_id, self.worker_index);
        let rows = self
            .with_client(move |c| async move {
                // The offsets of this index's last run; an earlier version kept them in a
                // table of their own, read when the run's row has none.
                let found = c
                    .query_opt(
                        "SELECT readback_topics, readback_partitions, readback_offsets FROM reprocessing_worker_runs
                             WHERE job_id = $1 AND worker_index = $2 AND readback_offsets IS NOT NULL",
                        &[job, &idx],
                    )
                    .await?;
                if let Some(r) = found {
                    let (t, p, o): (Vec<String>, Vec<i32>, Vec<i64>) = (r.get(0), r.get(1), r.get(2));
                    return Ok(OffsetColumns { topics: t, partitions: p, starts: o }.offsets());
                }
                let old = c.query_one("SELECT to_regclass('reprocessing_worker_offsets') IS NOT NULL", &[]).await?;
                if !old.get::<_, bool>(0) {
                    return Ok(Vec::new());
                }
                let rows = c
                    .query(
                        "SELECT topic, kafka_partition, start_offset FROM reprocessing_worker_offsets
                             WHERE job_id = $1 AND worker_index = $2",
                        &[job, &idx],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| PartitionOffset { topic: r.get(0), partition: r.get(1), offset: r.get(2) })
                    .collect())
            })
            .await?;
        let mut rows: Vec<PartitionOffset> = rows;
        rows.sort();
        Ok(rows)
    }

    async fn upsert_offsets(&self, offsets: &[PartitionOffset]) -> Result<(), StatusError> {
        if !self.owns_tables() {
            return Ok(());
        }
        let (job, idx, run) = (&self.job_id, self.worker_index, &self.run_id);
        let cols = OffsetColumns::of(offsets);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [job, &idx, &cols.topics, &cols.partitions, &cols.starts, run];
        let params = &params;
        self.with_client(move |c| async move { c.execute(WRITE_OFFSETS, params).await }).await.map(drop)
    }

    /// Why the guarded upsert left the row alone: another run owns it, or it is ahead.
    async fn why_refused(&self) -> Result<StatusError, StatusError> {
        let (job, idx, owned) = (&self.job_id, self.worker_index, self.owns_tables());
        let found = self
            .with_client(move |c| async move {
                let sql = match owned {
                    true => {
                        "SELECT w.status, r.run_id FROM reprocessing_workers w
                             LEFT JOIN reprocessing_worker_runs r
                                 ON r.job_id = w.job_id AND r.worker_index = w.worker_index
                             WHERE w.job_id = $1 AND w.worker_index = $2"
                    }
                    false => {
                        "SELECT status, NULL::varchar FROM reprocessing_workers WHERE job_id = $1 AND worker_index = $2"
                    }
                };
                c.query_opt(sql, &[job, &idx]).await
            })
            .await?;
        let (job, index) = (self.job_id.clone(), self.worker_index as u32);
        let Some(r) = found else { return Ok(StatusError::TakenOver { job, index }) };
        let owner: Option<String> = r.get(1);
        if self.owns_tables() && owner.as_deref() != Some(self.run_id.as_str()) {
            return Ok(StatusError::TakenOver { job, index });
        }
        Ok(StatusError::RowAhead { job, index, status: r.get::<_, String>(0).parse()? })
    }
}

impl StatusStore for PgStatus {
    fn prepare<'a>(
        &'a self,
        json: &'a str,
        assignment: &'a Assignment,
    ) -> BoxFuture<'a, Result<OwnTables, StatusError>> {
        Box::pin(self.create_tables(json, assignment))
    }
    fn read_row(&self) -> BoxFuture<'_, Result<Option<StoredRow>, StatusError>> {
        Box::pin(self.select_row())
    }
    fn write<'a>(
        &'a self,
        row: &'a StatusRow,
        offsets: Option<&'a [PartitionOffset]>,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(self.upsert(row, offsets))
    }
    fn read_offsets(&self) -> BoxFuture<'_, Result<Vec<PartitionOffset>, StatusError>> {
        Box::pin(self.select_offsets())
    }
    fn write_offsets<'a>(&'a self, offsets: &'a [PartitionOffset]) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(self.upsert_offsets(offsets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_matches_the_contract_types() {
        for col in [
            "worker_index INTEGER",
            "assigned_files INTEGER",
            "processed_files INTEGER",
            "current_line BIGINT",
            "total_lines BIGINT",
            "success_count BIGINT",
            "error_count BIGINT",
            "skipped_count BIGINT",
            "total_bytes BIGINT",
            "processed_bytes BIGINT",
            "total_files INTEGER",
            "total_workers INTEGER",
        ] {
            assert!(DDL.contains(col), "{col}");
        }
    }
}
