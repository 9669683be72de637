//! Command line and environment → a validated, typed [`Config`], in one place.
//!
//! Every input of the worker is a clap argument with an `env` fallback, so `--help` documents
//! the whole contract. [`Config::load`] turns the raw arguments and the two mounted files into
//! a [`Config`] once; everything downstream takes `&Config` and never reads the environment.
//! Errors are one line and name the variable (or the file and field) at fault, and never
//! contain a secret.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use rw_core::resume::StartAt;
use rw_core::{parse_files_list, parse_job_config, FileEntry, JobFileError, JobOptions, Secret, StreamSelector};

/// Every default of the worker's settings, once: clap's defaults read these, and
/// [`Tuning::default`] reads clap's.
pub mod defaults {
    pub const KAFKA_DESTINATIONS_TOPIC: &str = "destination-messages";
    pub const KAFKA_COMPRESSION: &str = "zstd";
    pub const KAFKA_PARTITIONS: &str = "own";
    pub const KAFKA_IDEMPOTENCE: &str = "auto";
    /// Where the admin's Job mounts the two files.
    pub const FILES_CONFIG_PATH: &str = "/config/files/files.json";
    pub const JOB_CONFIG_PATH: &str = "/config/job/config.json";
    pub const LOG_FORMAT: &str = "text";
    pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
    pub const READ_CHUNK_BYTES: usize = 8 * 1024 * 1024;
    /// Ranged reads buffered ahead of the parser (not a setting).
    pub const READ_AHEAD_CHUNKS: usize = 2;
    pub const KAFKA_BATCH_BYTES: usize = 1024 * 1024;
    /// librdkafka's `message.max.bytes`, under Kafka's default `max.message.bytes` (1,048,588).
    pub const KAFKA_MAX_MESSAGE_BYTES: usize = 1_000_000;
    pub const KAFKA_MAX_IN_FLIGHT: usize = 8;
    /// Files opened ahead and not yet finished (300 small files on S3 behind 25 ms per request:
    /// 3.2 s with 8, 1.7 s with 16, no better with 32).
    pub const FILES_IN_FLIGHT: usize = 16;
    pub const KAFKA_DELIVERY_TIMEOUT_SECS: u64 = 300;
    pub const KAFKA_CONNECT_TIMEOUT_SECS: u64 = 30;
    pub const SHUTDOWN_TIMEOUT_SECS: u64 = 10;
    /// The least time between two `running` writes of the status row, in milliseconds: a pod
    /// costs its database at most one write a second, and the row trails by about that.
    pub const STATUS_MIN_INTERVAL_MS: u64 = 1000;
    /// Records a resume may read back from Kafka (about 32 bytes of memory each while held).
    pub const RESUME_READBACK_MAX_RECORDS: u64 = 1_000_000;
    pub const RESUME_READBACK_TIMEOUT_SECS: u64 = 120;
    /// Seconds `/metrics` is still served after the run, for a last scrape.
    pub const METRICS_LINGER_SECS: u64 = 0;
    /// How long the run's final row is retried before the run exits non-zero: through a
    /// database restart of a minute or two.
    pub const STATUS_FINAL_TIMEOUT_SECS: u64 = 300;

    /// The largest value each duration setting takes: past it a setting is more likely a
    /// mistake (or a unit mixed up) than a wish, and a deadline that far out would overflow.
    pub const MAX_TIMEOUT_SECS: u64 = 24 * 3600;
    /// `STATUS_MIN_INTERVAL_MS`: the row trails the run by about this.
    pub const MAX_STATUS_MIN_INTERVAL_MS: u64 = 60_000;
    /// `SHUTDOWN_TIMEOUT_SECS` and `METRICS_LINGER_SECS`: a pod is not kept that long.
    pub const MAX_LINGER_SECS: u64 = 3600;
}

/// Which partitions a worker sends to (`KAFKA_PARTITIONS`): see [`rw_core::Spread`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KafkaPartitions {
    /// Each worker of the job its own share of the partitions.
    Own,
    /// Every worker every partition.
    All,
}

/// Whether produce is idempotent (`KAFKA_IDEMPOTENCE`): see `kafka::wire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KafkaIdempotence {
    /// When the cluster offers it (`InitProducerId`, and this principal may write
    /// idempotently); else without, and the log says why.
    Auto,
    /// Always: the run stops at start-up when the cluster does not offer it.
    On,
    /// Never: the lost-answer check alone stands between a resend and a duplicate.
    Off,
}

/// Kafka record-batch compression (`KAFKA_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KafkaCompression {
    Zstd,
    Gzip,
    Snappy,
    Lz4,
    None,
}

/// The names Jitsu's bulker reads its Kafka settings by (kafkabase's fields, with the bulker's
/// `BULKER_` prefix), each an alias of ours: an operator can copy the bulker's Kafka
/// environment as it is. Ours win where both are set. kafkabase's unprefixed names
/// (`KAFKA_SSL`, `KAFKA_SSL_CA`, …) are ours already.
pub const KAFKABASE_ALIASES: [(&str, &str); 7] = [
    ("BULKER_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    ("BULKER_KAFKA_SECURITY_PROTOCOL", "KAFKA_SECURITY_PROTOCOL"),
    ("BULKER_KAFKA_SSL", "KAFKA_SSL"),
    ("BULKER_KAFKA_SSL_SKIP_VERIFY", "KAFKA_SSL_SKIP_VERIFY"),
    ("BULKER_KAFKA_SSL_CA", "KAFKA_SSL_CA"),
    ("BULKER_KAFKA_SSL_CA_FILE", "KAFKA_SSL_CA_FILE"),
    ("BULKER_KAFKA_SASL", "KAFKA_SASL"),
];

/// Sets each of our Kafka variables that is unset from its [`KAFKABASE_ALIASES`] alias, and
/// returns the aliases used. Called first thing in `main`, before any thread starts (the
/// environment is the process's).
pub fn apply_kafkabase_aliases() -> Vec<&'static str> {
    let mut used = Vec::new();
    for (alias, ours) in KAFKABASE_ALIASES {
        if std::env::var_os(ours).is_none() {
            if let Some(v) = std::env::var_os(alias) {
                std::env::set_var(ours, v);
                used.push(alias);
            }
        }
    }
    used
}

/// How the worker talks to Kafka (`KAFKA_SECURITY_PROTOCOL`), as Jitsu's kafkabase names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The worker's inputs. Names match the admin service and the Kubernetes Job exactly.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The job's id (the primary key of reprocessing_jobs).
    #[arg(long, env = "JOB_ID")]
    pub job_id: Option<String>,
    /// This worker's index, 0-based. Falls back to JOB_COMPLETION_INDEX.
    #[arg(long, env = "WORKER_INDEX")]
    pub worker_index: Option<String>,
    /// Set by Kubernetes in Indexed Jobs; used when WORKER_INDEX is not set.
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    pub job_completion_index: Option<String>,
    /// Number of workers in the job (at least 1, greater than the index).
    #[arg(long, env = "TOTAL_WORKERS")]
    pub total_workers: Option<String>,
    /// PostgreSQL URL for the status tables; sslmode=require/verify-full use TLS.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Comma-separated host:port list. Required unless the job is a dry run.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// Topic that ingest's destinations consumers read.
    #[arg(long, env = "KAFKA_DESTINATIONS_TOPIC", default_value = defaults::KAFKA_DESTINATIONS_TOPIC)]
    pub kafka_destinations_topic: String,
    /// Record-batch compression. kafkajs (Jitsu's consumer) cannot read lz4.
    #[arg(long, env = "KAFKA_COMPRESSION", value_enum, default_value = defaults::KAFKA_COMPRESSION, ignore_case = true)]
    pub kafka_compression: KafkaCompression,
    /// Which partitions this worker sends to: `own`, its share (worker i of N: the
    /// partitions p with p mod N = i, or partition i mod n when the topic has fewer than N),
    /// so that a resume reads back only those; `all`, every partition.
    #[arg(long, env = "KAFKA_PARTITIONS", value_enum, default_value = defaults::KAFKA_PARTITIONS, ignore_case = true)]
    pub kafka_partitions: KafkaPartitions,
    /// Idempotent produce (a producer id, sequence numbers, resends dropped by the leader):
    /// `auto`, when the cluster offers it; `on`, or stop at start-up; `off`.
    #[arg(long, env = "KAFKA_IDEMPOTENCE", value_enum, default_value = defaults::KAFKA_IDEMPOTENCE, ignore_case = true)]
    pub kafka_idempotence: KafkaIdempotence,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. Unset: SSL (SASL_SSL with KAFKA_SASL) when
    /// KAFKA_SSL is true, else PLAINTEXT, as kafkabase decides.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_enum, ignore_case = true)]
    pub kafka_security_protocol: Option<SecurityProtocol>,
    /// Jitsu kafkabase's TLS switch (used when KAFKA_SECURITY_PROTOCOL is unset).
    #[arg(long, env = "KAFKA_SSL", action = clap::ArgAction::Set)]
    pub kafka_ssl: Option<bool>,
    /// SASL settings as JSON: {"mechanism":"PLAIN|SCRAM-SHA-256|SCRAM-SHA-512","username","password"}.
    #[arg(long, env = "KAFKA_SASL", hide_env_values = true)]
    pub kafka_sasl: Option<String>,
    /// Skip verification of the broker's TLS certificate.
    #[arg(long, env = "KAFKA_SSL_SKIP_VERIFY", default_value_t = false, action = clap::ArgAction::Set)]
    pub kafka_ssl_skip_verify: bool,
    /// PEM CA bundle for the broker's certificate (default: the system store / SSL_CERT_FILE).
    #[arg(long, env = "KAFKA_SSL_CA_FILE")]
    pub kafka_ssl_ca_file: Option<PathBuf>,
    /// PEM CA certificates as text, as kafkabase takes them (beside KAFKA_SSL_CA_FILE).
    #[arg(long, env = "KAFKA_SSL_CA", hide_env_values = true)]
    pub kafka_ssl_ca: Option<String>,
    /// Streams repository URL. Required only when the job's routing needs it: no
    /// `connection_ids`, or a `stream_ids` map whose rules use `"*"` or `connections_filter`.
    #[arg(long, env = "REPOSITORY_URL")]
    pub repository_url: Option<String>,
    /// Bearer token for the streams repository.
    #[arg(long, env = "REPOSITORY_AUTH_TOKEN", hide_env_values = true)]
    pub repository_auth_token: Option<String>,
    /// The job's file list (JSON array, plain, gzip or zstd).
    #[arg(long, env = "FILES_CONFIG_PATH", default_value = defaults::FILES_CONFIG_PATH)]
    pub files_config_path: PathBuf,
    /// The job's options (JSON object, plain, gzip or zstd).
    #[arg(long, env = "JOB_CONFIG_PATH", default_value = defaults::JOB_CONFIG_PATH)]
    pub job_config_path: PathBuf,
    /// Log format; RUST_LOG sets the level.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = defaults::LOG_FORMAT, ignore_case = true)]
    pub log_format: LogFormat,
    /// Longest accepted line, in bytes; longer lines count as errors.
    #[arg(long, env = "MAX_LINE_BYTES", default_value_t = defaults::MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Size of one ranged read from S3 or disk, in bytes.
    #[arg(long, env = "READ_CHUNK_BYTES", default_value_t = defaults::READ_CHUNK_BYTES)]
    pub read_chunk_bytes: usize,
    /// Upper bound of one Kafka record batch, in bytes of record values.
    #[arg(long, env = "KAFKA_BATCH_BYTES", default_value_t = defaults::KAFKA_BATCH_BYTES)]
    pub kafka_batch_bytes: usize,
    /// Largest record batch sent, in encoded bytes before compression (keep it at or below
    /// the topic's `max.message.bytes`); a line whose record alone is larger is an error.
    #[arg(long, env = "KAFKA_MAX_MESSAGE_BYTES", default_value_t = defaults::KAFKA_MAX_MESSAGE_BYTES)]
    pub kafka_max_message_bytes: usize,
    /// Produce requests in flight at once, over all partitions.
    #[arg(long, env = "KAFKA_MAX_IN_FLIGHT", default_value_t = defaults::KAFKA_MAX_IN_FLIGHT)]
    pub kafka_max_in_flight: usize,
    /// How long one batch may keep failing transiently (leader moves, replicas behind,
    /// disconnects) before the cluster counts as unavailable and the run stops, in seconds.
    #[arg(long, env = "KAFKA_DELIVERY_TIMEOUT_SECS", default_value_t = defaults::KAFKA_DELIVERY_TIMEOUT_SECS)]
    pub kafka_delivery_timeout_secs: u64,
    /// How long to wait for the broker at start-up, in seconds.
    #[arg(long, env = "KAFKA_CONNECT_TIMEOUT_SECS", default_value_t = defaults::KAFKA_CONNECT_TIMEOUT_SECS)]
    pub kafka_connect_timeout_secs: u64,
    /// Opt-in: write every line counted as an error (with file, line, reason and original
    /// bytes) as NDJSON to this local directory or s3://bucket/prefix.
    #[arg(long, env = "DEAD_LETTER_PATH")]
    pub dead_letter_path: Option<String>,
    /// Most lines this worker sends a second (overrides its share of the job's
    /// `max_events_per_sec`).
    #[arg(long, env = "MAX_EVENTS_PER_SEC")]
    pub max_events_per_sec: Option<u64>,
    /// Most bytes of values this worker sends a second (overrides its share of the job's
    /// `max_bytes_per_sec`).
    #[arg(long, env = "MAX_BYTES_PER_SEC")]
    pub max_bytes_per_sec: Option<u64>,
    /// Files read ahead and not finished yet (all their lines settled), in files. Each one
    /// waiting for its turn holds at most one read chunk.
    #[arg(long, env = "FILES_IN_FLIGHT", default_value_t = defaults::FILES_IN_FLIGHT)]
    pub files_in_flight: usize,
    /// On SIGTERM, how long in-flight batches may take to finish, in seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = defaults::SHUTDOWN_TIMEOUT_SECS)]
    pub shutdown_timeout_secs: u64,
    /// The least time between two `running` writes of the status row, in milliseconds (the
    /// final row, a failure and a SIGTERM's row are written at once).
    #[arg(long, env = "STATUS_MIN_INTERVAL_MS", default_value_t = defaults::STATUS_MIN_INTERVAL_MS)]
    pub status_min_interval_ms: u64,
    /// How long the final row (completed, failed, or SIGTERM's, which has the shutdown time
    /// instead) is retried when the database is away, in seconds; past it the worker exits 1
    /// so that Kubernetes runs it again.
    #[arg(long, env = "STATUS_FINAL_TIMEOUT_SECS", default_value_t = defaults::STATUS_FINAL_TIMEOUT_SECS)]
    pub status_final_timeout_secs: u64,
    /// On resume, the most records read back from Kafka to find the lines already delivered;
    /// past it the resume sends them again (at least once). 0 turns the read-back off.
    #[arg(long, env = "RESUME_READBACK_MAX_RECORDS", default_value_t = defaults::RESUME_READBACK_MAX_RECORDS)]
    pub resume_readback_max_records: u64,
    /// On resume, the longest the read-back may take, in seconds; past it the resume sends
    /// the lines again (at least once).
    #[arg(long, env = "RESUME_READBACK_TIMEOUT_SECS", default_value_t = defaults::RESUME_READBACK_TIMEOUT_SECS)]
    pub resume_readback_timeout_secs: u64,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address (e.g. 0.0.0.0:9464);
    /// off when unset.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// With METRICS_ADDR: keep serving /metrics this many seconds after the run ends (not
    /// after SIGTERM), so that the next scrape sees the final values.
    #[arg(long, env = "METRICS_LINGER_SECS", default_value_t = defaults::METRICS_LINGER_SECS)]
    pub metrics_linger_secs: u64,
}

/// Kafka connection settings; absent in a dry run.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: Vec<String>,
    pub compression: KafkaCompression,
    pub idempotence: KafkaIdempotence,
    pub security: SecurityProtocol,
    pub sasl: Option<SaslSettings>,
    pub ssl_skip_verify: bool,
    /// `KAFKA_SSL_CA_FILE` and `KAFKA_SSL_CA`, trusted beside the system roots.
    pub ssl_ca: Vec<crate::tls::Ca>,
    pub connect_timeout: Duration,
    pub delivery_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    /// Kafka's name for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SaslSettings {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

/// The streams repository, fetched once at start-up when the job's routing needs it.
#[derive(Debug, Clone)]
pub struct RepositoryAccess {
    pub url: String,
    pub token: Secret,
}

/// Bounds of the pipeline's buffers and queues, with their units.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Longest line, in bytes.
    pub max_line_bytes: usize,
    /// One ranged read, in bytes.
    pub read_chunk_bytes: usize,
    /// Ranged reads buffered ahead of the parser, in chunks.
    pub read_ahead_chunks: usize,
    /// One record batch, in bytes of values.
    pub batch_max_bytes: usize,
    /// One record batch, in encoded bytes before compression.
    pub max_message_bytes: usize,
    /// Produce requests in flight, in requests.
    pub max_in_flight: usize,
    /// Files opened and not finished, in files.
    pub files_in_flight: usize,
    /// What this worker may send a second (its own setting, or its share of the job's).
    pub rate: rw_core::RateLimits,
    pub shutdown_timeout: Duration,
    /// The least time between two `running` writes of the status row.
    pub status_min_interval: Duration,
    /// How long the final row is retried.
    pub status_final_timeout: Duration,
    /// The resume read-back's caps (records, time).
    pub readback: crate::resume::readback::Caps,
}

impl Tuning {
    /// The bounds from the flags, checked, with this worker's rate (its own limits, or its
    /// share of the job's): the one mapping from the environment to [`Tuning`].
    pub fn from_args(args: &WorkerArgs, rate: rw_core::RateLimits) -> Result<Tuning, ConfigError> {
        if args.max_line_bytes == 0 {
            return Err(invalid("MAX_LINE_BYTES", "must be at least 1"));
        }
        if args.kafka_max_message_bytes < 1024 {
            return Err(invalid("KAFKA_MAX_MESSAGE_BYTES", "must be at least 1024"));
        }
        if args.read_chunk_bytes < 64 * 1024 {
            return Err(invalid("READ_CHUNK_BYTES", "must be at least 64 KiB"));
        }
        if args.kafka_max_in_flight == 0 {
            return Err(invalid("KAFKA_MAX_IN_FLIGHT", "must be at least 1"));
        }
        if args.files_in_flight == 0 {
            return Err(invalid("FILES_IN_FLIGHT", "must be at least 1"));
        }
        if args.max_events_per_sec == Some(0) {
            return Err(invalid("MAX_EVENTS_PER_SEC", "must be at least 1 (unset it for no limit)"));
        }
        if args.max_bytes_per_sec == Some(0) {
            return Err(invalid("MAX_BYTES_PER_SEC", "must be at least 1 (unset it for no limit)"));
        }
        use defaults::{MAX_LINGER_SECS, MAX_STATUS_MIN_INTERVAL_MS, MAX_TIMEOUT_SECS};
        let secs = |var, v, max| at_most(var, v, max, "seconds").map(Duration::from_secs);
        Ok(Tuning {
            max_line_bytes: args.max_line_bytes,
            read_chunk_bytes: args.read_chunk_bytes,
            read_ahead_chunks: defaults::READ_AHEAD_CHUNKS,
            batch_max_bytes: args.kafka_batch_bytes.max(1024),
            max_message_bytes: args.kafka_max_message_bytes,
            max_in_flight: args.kafka_max_in_flight,
            files_in_flight: args.files_in_flight,
            rate,
            shutdown_timeout: secs("SHUTDOWN_TIMEOUT_SECS", args.shutdown_timeout_secs, MAX_LINGER_SECS)?,
            status_min_interval: at_most(
                "STATUS_MIN_INTERVAL_MS",
                args.status_min_interval_ms,
                MAX_STATUS_MIN_INTERVAL_MS,
                "milliseconds",
            )
            .map(Duration::from_millis)?,
            status_final_timeout: secs("STATUS_FINAL_TIMEOUT_SECS", args.status_final_timeout_secs, MAX_TIMEOUT_SECS)?,
            readback: crate::resume::readback::Caps {
                max_records: args.resume_readback_max_records,
                timeout: secs("RESUME_READBACK_TIMEOUT_SECS", args.resume_readback_timeout_secs, MAX_TIMEOUT_SECS)?,
            },
        })
    }

    /// Most lines of the run that may be unsettled at once, with batches of `batch_size`:
    /// enough to keep every queue and request full, and the bound on lines sent again after a
    /// crash when the read-back cannot tell (the duplicate window).
    pub fn max_unsettled_lines(&self, batch_size: usize) -> usize {
        (2 * self.max_in_flight + 2) * batch_size
    }
}

/// The settings' defaults: the one mapping ([`Tuning::from_args`]) applied to the flags'
/// defaults, so a default and a bound are stated once.
impl Default for Tuning {
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let defaults = WorkerArgs::augment_args(clap::Command::new("defaults"))
            .mut_args(|a| a.env(None::<&'static str>))
            .get_matches_from(["defaults"]);
        let args = WorkerArgs::from_arg_matches(&defaults).expect("the flags have defaults");
        Tuning::from_args(&args, Default::default()).expect("the defaults are valid")
    }
}

impl KafkaConfig {
    /// The Kafka settings, checked: the bootstrap list, the security protocol with its SASL
    /// login, the CAs and the timeouts.
    pub fn from_args(args: &WorkerArgs) -> Result<KafkaConfig, ConfigError> {
        let raw = required("KAFKA_BOOTSTRAP_SERVERS", &args.kafka_bootstrap_servers)?;
        let bootstrap: Vec<String> =
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if let Some(bad) = bootstrap.iter().find(|b| !b.contains(':')) {
            return Err(invalid("KAFKA_BOOTSTRAP_SERVERS", format!("expected host:port, got {bad:?}")));
        }
        let security = args.security_protocol();
        let wants_sasl = matches!(security, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl);
        let sasl = match (&args.kafka_sasl, wants_sasl) {
            (Some(raw), true) => Some(parse_sasl(raw)?),
            (None, true) => return Err(ConfigError::Missing("KAFKA_SASL (for a SASL security protocol)")),
            (_, false) => None,
        };
        Ok(KafkaConfig {
            bootstrap,
            compression: args.kafka_compression,
            idempotence: args.kafka_idempotence,
            security,
            sasl,
            ssl_skip_verify: args.kafka_ssl_skip_verify,
            ssl_ca: (args.kafka_ssl_ca_file.clone().map(crate::tls::Ca::File).into_iter())
                .chain(args.kafka_ssl_ca.clone().map(crate::tls::Ca::Pem))
                .collect(),
            connect_timeout: Duration::from_secs(
                at_most(
                    "KAFKA_CONNECT_TIMEOUT_SECS",
                    args.kafka_connect_timeout_secs,
                    defaults::MAX_TIMEOUT_SECS,
                    "seconds",
                )?
                .max(1),
            ),
            delivery_timeout: Duration::from_secs(
                at_most(
                    "KAFKA_DELIVERY_TIMEOUT_SECS",
                    args.kafka_delivery_timeout_secs,
                    defaults::MAX_TIMEOUT_SECS,
                    "seconds",
                )?
                .max(1),
            ),
        })
    }
}

/// The validated configuration of one worker.
#[derive(Debug, Clone)]
pub struct Config {
    pub job_id: String,
    pub worker_index: u32,
    pub total_workers: u32,
    /// `DATABASE_URL`, parsed.
    pub database: rw_core::DbUrl,
    pub kafka: Option<KafkaConfig>,
    pub topic: String,
    /// Which partitions of each topic this worker sends to.
    pub spread: rw_core::Spread,
    /// `Some` exactly when the job's routing needs the streams repository.
    pub repository: Option<RepositoryAccess>,
    /// Every entry of files.json, in order; [`Config::assigned_files`] picks this worker's.
    pub files: Vec<FileEntry>,
    pub job: JobOptions,
    /// `start_file` found in files.json, and `start_line`.
    pub start: StartAt,
    pub tuning: Tuning,
    /// `DEAD_LETTER_PATH`, if set.
    pub dead_letter: Option<crate::deadletter::Destination>,
    /// `METRICS_ADDR`, if set.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `METRICS_LINGER_SECS`.
    pub metrics_linger: Duration,
}

/// `start_file` and `start_line` of `job`, with the file found in `files`
/// ([`rw_core::resume::find_start_file`]). A `start_file` that is not there, or names
/// several entries, is a configuration error naming the field and the nearest paths.
pub fn start_at(files: &[FileEntry], job: &JobOptions) -> Result<StartAt, JobFileError> {
    let file = match job.start_file.as_deref() {
        None => None,
        Some(given) => Some(
            rw_core::resume::find_start_file(files, given)
                .map_err(|e| JobFileError { file: "config.json", what: format!("field {e}") })?,
        ),
    };
    Ok(StartAt { file, line: job.start_line })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{var}: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("cannot read {var} file {path}: {source}")]
    Read { var: &'static str, path: String, source: std::io::Error },
    #[error(transparent)]
    File(#[from] JobFileError),
}

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { var, reason: reason.into() }
}

fn required(var: &'static str, v: &Option<String>) -> Result<String, ConfigError> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).ok_or(ConfigError::Missing(var))
}

/// `v` when it is at most `max` (a duration setting's bound, in `unit`).
fn at_most(var: &'static str, v: u64, max: u64, unit: &str) -> Result<u64, ConfigError> {
    match v <= max {
        true => Ok(v),
        false => Err(invalid(var, format!("{v} is more than the largest allowed, {max} {unit}"))),
    }
}

fn parse_u32(var: &'static str, s: &str) -> Result<u32, ConfigError> {
    s.trim().parse::<u32>().map_err(|_| invalid(var, format!("expected a non-negative integer, got {s:?}")))
}

impl WorkerArgs {
    /// `KAFKA_SECURITY_PROTOCOL`, else what kafkabase derives from `KAFKA_SSL` and
    /// `KAFKA_SASL`.
    pub fn security_protocol(&self) -> SecurityProtocol {
        match (self.kafka_security_protocol, self.kafka_ssl, &self.kafka_sasl) {
            (Some(p), _, _) => p,
            (None, Some(true), Some(_)) => SecurityProtocol::SaslSsl,
            (None, Some(true), None) => SecurityProtocol::Ssl,
            (None, _, _) => SecurityProtocol::Plaintext,
        }
    }

    /// The worker index: WORKER_INDEX, else JOB_COMPLETION_INDEX.
    pub fn index(&self) -> Result<u32, ConfigError> {
        match (&self.worker_index, &self.job_completion_index) {
            (Some(s), _) if !s.trim().is_empty() => parse_u32("WORKER_INDEX", s),
            (_, Some(s)) if !s.trim().is_empty() => parse_u32("JOB_COMPLETION_INDEX", s),
            _ => Err(ConfigError::Missing("WORKER_INDEX (or JOB_COMPLETION_INDEX)")),
        }
    }
}

fn read_mounted(var: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read { var, path: path.display().to_string(), source })
}

/// Parses `KAFKA_SASL` (`{"mechanism","username","password"}`).
pub fn parse_sasl(raw: &str) -> Result<SaslSettings, ConfigError> {
    use sonic_rs::JsonValueTrait;
    const V: &str = "KAFKA_SASL";
    // Never echo the input: it holds the password.
    let v: sonic_rs::Value = sonic_rs::from_str(raw).map_err(|_| invalid(V, "not a valid JSON object"))?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str().map(str::to_owned));
    let mechanism = match s("mechanism").unwrap_or_else(|| "PLAIN".into()).to_ascii_uppercase().as_str() {
        "PLAIN" => SaslMechanism::Plain,
        "SCRAM-SHA-256" | "SCRAM_SHA_256" => SaslMechanism::ScramSha256,
        "SCRAM-SHA-512" | "SCRAM_SHA_512" => SaslMechanism::ScramSha512,
        other => {
            return Err(invalid(V, format!("unsupported mechanism {other:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")))
        }
    };
    let username = s("username").filter(|u| !u.is_empty()).ok_or_else(|| invalid(V, "field username is missing"))?;
    let password = s("password").ok_or_else(|| invalid(V, "field password is missing"))?;
    Ok(SaslSettings { mechanism, username, password: Secret::new(password) })
}

impl Config {
    /// Validates the arguments and reads the two mounted files.
    pub fn load(args: &WorkerArgs) -> Result<Config, ConfigError> {
        let job_id = required("JOB_ID", &args.job_id)?;
        if job_id.len() > 64 {
            return Err(invalid("JOB_ID", "longer than 64 characters (reprocessing_jobs.id is VARCHAR(64))"));
        }
        let worker_index = args.index()?;
        let total_workers = parse_u32("TOTAL_WORKERS", &required("TOTAL_WORKERS", &args.total_workers)?)?;
        if total_workers == 0 {
            return Err(invalid("TOTAL_WORKERS", "must be at least 1"));
        }
        if worker_index >= total_workers {
            return Err(invalid(
                "WORKER_INDEX",
                format!("{worker_index} is not below TOTAL_WORKERS ({total_workers})"),
            ));
        }
        if i32::try_from(total_workers).is_err() {
            return Err(invalid("TOTAL_WORKERS", "too large"));
        }
        let database = rw_core::DbUrl::parse(&required("DATABASE_URL", &args.database_url)?)
            .map_err(|e| invalid("DATABASE_URL", e.to_string()))?;
        // The connection parameters' values too (a port, a timeout), before anything runs.
        crate::status::pg_config(&database).map_err(|e| invalid("DATABASE_URL", e.to_string()))?;

        let job = parse_job_config(&read_mounted("JOB_CONFIG_PATH", &args.job_config_path)?)?;
        let files = parse_files_list(&read_mounted("FILES_CONFIG_PATH", &args.files_config_path)?)?;
        let start = start_at(&files, &job)?;

        let kafka = if job.dry_run { None } else { Some(KafkaConfig::from_args(args)?) };

        let repository = if job.routing().needs_repository() {
            let url = required("REPOSITORY_URL", &args.repository_url).map_err(|_| {
                ConfigError::Missing(match job.stream_ids {
                    StreamSelector::Map(_) => {
                        "REPOSITORY_URL (a stream_ids rule uses \"*\" or connections_filter is on)"
                    }
                    _ => "REPOSITORY_URL (the job config has no connection_ids)",
                })
            })?;
            let token = Secret::new(args.repository_auth_token.clone().unwrap_or_default());
            Some(RepositoryAccess { url, token })
        } else {
            None
        };

        let tuning = Tuning::from_args(args, {
            use rw_core::{worker_limit, RateLimits};
            let share = |pod, of_job| worker_limit(pod, of_job, job.parallel_workers, total_workers);
            RateLimits {
                events_per_sec: share(args.max_events_per_sec, job.max_events_per_sec),
                bytes_per_sec: share(args.max_bytes_per_sec, job.max_bytes_per_sec),
            }
        })?;
        let topic = args.kafka_destinations_topic.trim().to_owned();
        if topic.is_empty() {
            return Err(invalid("KAFKA_DESTINATIONS_TOPIC", "must not be empty"));
        }
        let dead_letter = match args.dead_letter_path.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(p) => Some(
                crate::deadletter::Destination::parse(p)
                    .ok_or_else(|| invalid("DEAD_LETTER_PATH", "expected a directory or s3://bucket/prefix"))?,
            ),
        };
        let spread = match args.kafka_partitions {
            KafkaPartitions::Own => rw_core::Spread::Own { worker: worker_index, workers: total_workers },
            KafkaPartitions::All => rw_core::Spread::All,
        };
        Ok(Config {
            job_id,
            worker_index,
            total_workers,
            database,
            kafka,
            topic,
            spread,
            repository,
            files,
            job,
            start,
            tuning,
            dead_letter,
            metrics_addr: args.metrics_addr,
            metrics_linger: Duration::from_secs(at_most(
                "METRICS_LINGER_SECS",
                args.metrics_linger_secs,
                defaults::MAX_LINGER_SECS,
                "seconds",
            )?),
        })
    }

    /// This worker's seed for the spread of its retry pauses (from its job and index).
    pub fn spread_seed(&self) -> u64 {
        rw_core::spread_seed(&self.job_id, self.worker_index)
    }

    /// This worker's files, with their positions in files.json: i, N+i, 2N+i, …
    pub fn assigned_files(&self) -> Vec<(usize, &FileEntry)> {
        assigned_positions(self.files.len(), self.worker_index, self.total_workers)
            .map(|i| (i, &self.files[i]))
            .collect()
    }
}

/// Positions `index, index+total, index+2·total, …` below `len`.
pub fn assigned_positions(len: usize, index: u32, total: u32) -> impl Iterator<Item = usize> {
    (index as usize..len).step_by(total.max(1) as usize)
}

#[cfg(test)]
mod tests;
