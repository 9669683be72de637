//! The Kafka broker, on rskafka (pure Rust, no librdkafka).
//!
//! One [`rskafka::client::Client`] per worker; one cached `PartitionClient` per partition
//! (each multiplexes concurrent produce requests over its broker connection). TLS and SASL
//! (PLAIN, SCRAM-SHA-256/512) are configured the way Jitsu's kafkabase names them.
//!
//! **Metadata, once.** The topics are listed with one metadata request at start-up, before
//! any partition client exists, and partition clients are created one at a time. rskafka
//! keeps one metadata cache with a generation counter; every full metadata request moves it
//! forward, and a partition client's "leader moved" invalidation that carries an older
//! generation is dropped. A burst of concurrent listings at start-up therefore left partition
//! clients returning to a moved leader until their deadline. As a safety net, a produce that
//! fails because a leader moved refreshes the metadata (at most once per
//! [`METADATA_REFRESH_EVERY`]), so the next try finds the new leader.
//!
//! **Errors are classified** ([`Failure`]) from the broker's error code: the pipeline
//! retries transient ones per batch until `KAFKA_DELIVERY_TIMEOUT_SECS`, splits rejected
//! batches, and stops the run on fatal ones. Produce requests go through a second client
//! whose rskafka retries are off: rskafka would otherwise send a batch again by itself after
//! a broken connection, when the broker may have written it, and the producer could not look
//! first (see `pipeline::landed`). The other requests keep rskafka's retries, bounded by
//! [`REQUEST_DEADLINE`] per request.
//!
//! **Compression.** rskafka compresses each record batch itself, with no setting for the
//! level; its zstd is level 1 because `.cargo/config.toml` compiles zstd's default level as 1
//! (see [`zstd_default_level`], checked and logged at start-up).
//!
//! **Offsets.** A produce returns the batch's base offset; a resumed run lists partitions'
//! end offsets and fetches records back through the same partition clients (see
//! [`crate::resume::readback`]).

mod messages;
pub(crate) mod nodelay;
pub mod throttle;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use tokio::time::Instant;

use crate::config::{KafkaCompression, KafkaConfig, KafkaIdempotence, SaslMechanism, SecurityProtocol};
use rw_core::{
    Backoff, BatchCompression, BoxError, Broker, BrokerError, ErrorCode, Failure, Fetched, ProducerId, Record, Records,
    Sequence,
};

/// The longest one request (with rskafka's own retries) may take before the pipeline's
/// retry takes over.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// The least time between two metadata refreshes after leader errors.
pub const METADATA_REFRESH_EVERY: Duration = Duration::from_secs(1);

pub struct KafkaBroker {
    /// Metadata, end offsets and reads, with rskafka's retries (bounded by the deadline).
    client: Client,
    /// Produce only, one attempt per request: rskafka would send a batch again by itself
    /// after a broken connection, when the broker may have written it already; the
    /// producer retries instead, and first looks whether it landed.
    producer: Client,
    compression: Compression,
    request_deadline: Duration,
    /// Held while a partition client is created, so that they are created one at a time;
    /// keyed by topic, partition and whether it produces.
    clients: tokio::sync::Mutex<HashMap<(String, i32, bool), Arc<PartitionClient>>>,
    /// When the metadata was last refreshed (held while refreshing).
    refreshed: tokio::sync::Mutex<Option<Instant>>,
    /// Stops the task that keeps `TCP_NODELAY` on new connections when the broker is dropped.
    _nodelay: tokio_util::sync::DropGuard,
    /// The idempotent producer's path (`KAFKA_IDEMPOTENCE` not `off`); used for batches
    /// sent with a sequence.
    wire: Option<wire::Wire>,
    idempotence: KafkaIdempotence,
    connect_timeout: Duration,
    /// The bootstrap servers, as configured (comma-separated), for errors.
    bootstrap: String,
    /// Whether a producer id was given (the first is announced in the log; a later
    /// `InitProducerId` refused stops the run even with `auto`).
    has_producer_id: std::sync::atomic::AtomicBool,
}

/// zstd's level for the batches the idempotent path writes: librdkafka's default, and what
/// rskafka's path compresses at in this build ([`zstd_default_level`]).
pub const ZSTD_LEVEL: i32 = 1;

/// One fetch of a read-back: at most this many bytes (a batch larger than this is still
/// returned whole by the broker), waiting at most this long for data (tansu answers a fetch
/// that may not wait with no topic at all).
const FETCH_MAX_BYTES: i32 = 4 * 1024 * 1024;
const FETCH_MAX_WAIT_MS: i32 = 500;
/// rskafka 0.6's error for a transaction marker it cannot parse (see `KafkaBroker::fetch`).
const CONTROL_BATCH_UNREADABLE: &str = "Unknown control batch record version";
/// The most transaction markers one fetch steps over, one request each.
const MARKERS_PER_FETCH: usize = 64;

/// A produce slower than this may have met a new connection (rskafka reconnects inside a
/// request): look for sockets without `TCP_NODELAY` again.
const SLOW_PRODUCE: Duration = Duration::from_millis(20);

/// The zstd level Kafka batches are compressed at. rskafka 0.6 asks zstd for level 0, which
/// is zstd's compile-time default (`ZSTD_CLEVEL_DEFAULT`, 3 unless defined); the project's
/// `.cargo/config.toml` compiles zstd with 1 (BENCHMARKS.md, "The zstd level"). Found by
/// compressing a sample at level 0 and at the levels it could mean; `None` when none matches.
pub fn zstd_default_level() -> Option<i32> {
    let sample = zstd_sample();
    let default = zstd::bulk::compress(&sample, 0).ok()?;
    (1..=zstd::compression_level_range().end().to_owned())
        .find(|&level| zstd::bulk::compress(&sample, level).is_ok_and(|c| c == default))
}

/// 64 KiB of lines like the worker's (JSON with varying ids and numbers), on which zstd's
/// levels 1 to 3 all compress differently.
fn zstd_sample() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(70_000);
    let mut i = 0u64;
    while out.len() < 65_536 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            r#"{{"messageId":"{:016x}","type":"{}","n":{},"path":"/p/{}","ua":"agent {}"}}"#,
            x,
            ["track", "page", "identify"][(x % 3) as usize],
            x % 100_000,
            (x >> 20) % 977,
            i % 13
        );
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

fn batch_compression(c: KafkaCompression) -> BatchCompression {
    match c {
        KafkaCompression::Zstd => BatchCompression::Zstd,
        KafkaCompression::Gzip => BatchCompression::Gzip,
        KafkaCompression::Snappy => BatchCompression::Snappy,
        KafkaCompression::Lz4 => BatchCompression::Lz4,
        KafkaCompression::None => BatchCompression::None,
    }
}

fn compression(c: KafkaCompression) -> Compression {
    match c {
        KafkaCompression::Zstd => Compression::Zstd,
        KafkaCompression::Gzip => Compression::Gzip,
        KafkaCompression::Snappy => Compression::Snappy,
        KafkaCompression::Lz4 => Compression::Lz4,
        KafkaCompression::None => Compression::NoCompression,
    }
}

/// rskafka's form of a backoff policy, with its overall deadline.
fn rskafka_backoff(b: Backoff, deadline: Duration) -> rskafka::BackoffConfig {
    rskafka::BackoffConfig {
        init_backoff: b.initial,
        max_backoff: b.max,
        base: f64::from(b.factor.max(1)),
        deadline: Some(deadline),
    }
}

/// A batch's records as rskafka takes them.
pub fn to_rskafka(records: &Records) -> Vec<rskafka::record::Record> {
    let to =
        |r: Record| rskafka::record::Record { key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp };
    records.to_kafka().map(to).collect()
}

/// A fetched record as the core reads it.
fn from_rskafka(r: rskafka::record::Record) -> Record {
    Record { key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp }
}

/// The TLS settings of `cfg`, when it uses TLS.
fn tls_config(cfg: &KafkaConfig, bootstrap: &str) -> Result<Option<Arc<rustls::ClientConfig>>, BrokerError> {
    if !matches!(cfg.security, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl) {
        return Ok(None);
    }
    let tls = crate::tls::client_config(&cfg.ssl_ca, cfg.ssl_skip_verify)
        .map_err(|e| BrokerError::Connect { bootstrap: bootstrap.to_owned(), source: Box::new(e) })?;
    Ok(Some(Arc::new(tls)))
}

/// The SASL login of `cfg`, when it has one.
fn sasl_config(cfg: &KafkaConfig) -> Option<SaslConfig> {
    cfg.sasl.as_ref().map(|s| {
        let creds = Credentials::new(s.username.clone(), s.password.expose().to_owned());
        match s.mechanism {
            SaslMechanism::Plain => SaslConfig::Plain(creds),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(creds),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(creds),
        }
    })
}

/// The rskafka client builder for `cfg` with its TLS settings `tls`, retrying with `backoff`.
fn client_builder(
    cfg: &KafkaConfig,
    tls: &Option<Arc<rustls::ClientConfig>>,
    backoff: rskafka::BackoffConfig,
) -> ClientBuilder {
    let mut builder =
        ClientBuilder::new(cfg.bootstrap.clone()).client_id("reprocessing-worker").backoff_config(backoff);
    if let Some(tls) = tls {
        builder = builder.tls_config(Arc::clone(tls));
    }
    if let Some(sasl) = sasl_config(cfg) {
        builder = builder.sasl_config(sasl);
    }
    builder
}

/// rskafka retries a refused SASL login like an unreachable broker, until its deadline, and
/// keeps the refusal inside an error list that has no `source()`. So with SASL the worker
/// first connects one attempt at a time itself (rskafka's retries off), until the connect
/// deadline, and stops at the first refused login, naming the mechanism and the user.
async fn check_login(
    cfg: &KafkaConfig,
    tls: &Option<Arc<rustls::ClientConfig>>,
    bootstrap: &str,
) -> Result<(), BrokerError> {
    let sasl = cfg.sasl.as_ref().expect("called with SASL");
    // A deadline of zero: one attempt per build.
    let once = rskafka_backoff(Backoff::KAFKA, Duration::ZERO);
    let deadline = Instant::now() + cfg.connect_timeout;
    let mut failures = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(left, client_builder(cfg, tls, once.clone()).build()).await;
        let e = match attempt {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(BrokerError::ConnectTimeout { bootstrap: bootstrap.to_owned(), after: cfg.connect_timeout })
            }
        };
        if login_refused(&e) {
            return Err(BrokerError::LoginRefused {
                bootstrap: bootstrap.to_owned(),
                mechanism: sasl.mechanism.as_str(),
                user: sasl.username.clone(),
                source: Box::new(e),
            });
        }
        failures += 1;
        let pause = Backoff::KAFKA.delay(failures).unwrap_or(Backoff::KAFKA.max);
        if Instant::now() + pause >= deadline {
            return Err(BrokerError::ConnectTimeout { bootstrap: bootstrap.to_owned(), after: cfg.connect_timeout });
        }
        tokio::time::sleep(pause).await;
    }
}

/// rskafka's message for a failed SASL exchange (`ConnectionError::SaslFailed`), the only
/// trace of it once it sits in rskafka's list of connection errors.
const RSKAFKA_SASL_FAILED: &str = "Sasl handshake failed";

/// True when the broker refused the SASL login (a wrong password, an unknown user, a
/// mechanism it does not offer), as opposed to a connection that could not be made.
fn login_refused(e: &ClientError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<rskafka::SaslError>().is_some() || err.to_string().contains(RSKAFKA_SASL_FAILED) {
            return true;
        }
        next = err.source();
    }
    false
}

impl KafkaBroker {
    /// Connects to the cluster; fails after `connect_timeout` if no broker answers, and at
    /// once if a broker refuses the SASL login.
    pub async fn connect(cfg: &KafkaConfig) -> Result<Self, BrokerError> {
        let request_deadline = cfg.delivery_timeout.min(REQUEST_DEADLINE);
        let bootstrap = cfg.bootstrap.join(",");
        let started = Instant::now();
        let tls = tls_config(cfg, &bootstrap)?;
        if cfg.sasl.is_some() {
            check_login(cfg, &tls, &bootstrap).await?;
        }
        let left = cfg.connect_timeout.saturating_sub(started.elapsed());
        let builder = client_builder(cfg, &tls, rskafka_backoff(Backoff::KAFKA, request_deadline));
        let client = tokio::time::timeout(left, builder.build())
            .await
            .map_err(|_| BrokerError::ConnectTimeout { bootstrap: bootstrap.clone(), after: cfg.connect_timeout })?
            .map_err(|e| BrokerError::Connect { bootstrap: bootstrap.clone(), source: Box::new(e) })?;
        let left = cfg.connect_timeout.saturating_sub(started.elapsed());
        let once = client_builder(cfg, &tls, rskafka_backoff(Backoff::KAFKA, Duration::ZERO));
        let producer = tokio::time::timeout(left, once.build())
            .await
            .map_err(|_| BrokerError::ConnectTimeout { bootstrap: bootstrap.clone(), after: cfg.connect_timeout })?
            .map_err(|e| BrokerError::Connect { bootstrap, source: Box::new(e) })?;
        if cfg.compression == KafkaCompression::Zstd {
            let level = zstd_default_level();
            match level {
                Some(1) => tracing::info!(zstd_level = 1, "Kafka batches are compressed with zstd at level 1"),
                _ => tracing::warn!(
                    zstd_level = ?level,
                    "Kafka batches are compressed with zstd at another level than the build's 1 (zstd was compiled without .cargo/config.toml's CFLAGS): more CPU a batch"
                ),
            }
        }
        crate::kafka::nodelay::apply();
        let nodelay = tokio_util::sync::CancellationToken::new();
        tokio::spawn(crate::kafka::nodelay::keep_applying(nodelay.clone()));
        let wire = match cfg.idempotence {
            KafkaIdempotence::Off => None,
            KafkaIdempotence::Auto | KafkaIdempotence::On => Some(wire::Wire::new(
                cfg.bootstrap.clone(),
                tls,
                sasl_config(cfg),
                batch_compression(cfg.compression),
                request_deadline,
            )),
        };
        Ok(Self {
            client,
            producer,
            compression: compression(cfg.compression),
            request_deadline,
            clients: Default::default(),
            refreshed: Default::default(),
            _nodelay: nodelay.drop_guard(),
            wire,
            idempotence: cfg.idempotence,
            connect_timeout: cfg.connect_timeout,
            bootstrap: cfg.bootstrap.join(","),
            has_producer_id: Default::default(),
        })
    }

    fn produce_error(&self, topic: &str, partition: i32, e: ClientError) -> BrokerError {
        let (failure, code) = classify(&e);
        let answered = code.as_ref().is_some_and(|c| *c != ErrorCode::RetryFailed);
        BrokerError::Produce { topic: topic.to_owned(), partition, failure, code, answered, source: Box::new(e) }
    }

    /// Lists the topics again (at most once per [`METADATA_REFRESH_EVERY`]), which fills
    /// rskafka's metadata cache with the current leaders.
    async fn refresh_metadata(&self) {
        let mut last = self.refreshed.lock().await;
        if last.is_some_and(|t| t.elapsed() < METADATA_REFRESH_EVERY) {
            return;
        }
        match tokio::time::timeout(self.request_deadline, self.producer.list_topics()).await {
            Ok(Ok(_)) => tracing::debug!("metadata refreshed after a leader error"),
            Ok(Err(e)) => tracing::debug!(error = %rw_core::Chain(&e), "metadata refresh failed"),
            Err(_) => tracing::debug!("metadata refresh timed out"),
        }
        *last = Some(Instant::now());
    }

    /// Why a topic is not in the listing of all topics: asked for by name, a broker with an
    /// authorizer answers TOPIC_AUTHORIZATION_FAILED for a topic this login may not describe
    /// (Apache Kafka leaves such topics out of the full listing); otherwise it is missing.
    async fn why_unlisted(&self, topic: &str) -> BrokerError {
        let missing = || BrokerError::TopicMissing { topic: topic.to_owned() };
        match tokio::time::timeout(
            self.request_deadline,
            self.client.partition_client(topic, 0, UnknownTopicHandling::Error),
        )
        .await
        {
            Ok(Err(e)) => match classify(&e) {
                (Failure::Fatal, Some(code)) if code.is_authorization() => {
                    BrokerError::TopicRefused { topic: topic.to_owned(), code }
                }
                _ => missing(),
            },
            _ => missing(),
        }
    }

    /// The partition's client for producing or for reading, created on first use (one at a
    /// time).
    async fn partition_client(
        &self,
        topic: &str,
        partition: i32,
        produce: bool,
    ) -> Result<Arc<PartitionClient>, BrokerError> {
        let key = (topic.to_owned(), partition, produce);
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(Arc::clone(c));
        }
        let after = self.request_deadline;
        let client = if produce { &self.producer } else { &self.client };
        let pc = tokio::time::timeout(after, client.partition_client(topic, partition, UnknownTopicHandling::Error))
            .await
            .map_err(|_| BrokerError::NoLeader { topic: topic.into(), partition, after })?
            .map_err(|e| self.produce_error(topic, partition, e))?;
        crate::kafka::nodelay::apply();
        let pc = Arc::new(pc);
        clients.insert(key, Arc::clone(&pc));
        Ok(pc)
    }
}

impl Broker for KafkaBroker {
    fn topics<'a>(&'a self, topics: &'a [String]) -> BoxFuture<'a, Result<Vec<i32>, BrokerError>> {
        Box::pin(async move {
            let first = topics.first().cloned().unwrap_or_default();
            let listed = tokio::time::timeout(self.request_deadline, self.client.list_topics())
                .await
                .map_err(|_| BrokerError::MetadataTimeout { topic: first.clone(), after: self.request_deadline })?
                .map_err(|e| BrokerError::Metadata { topic: first, source: Box::new(e) })?;
            *self.refreshed.lock().await = Some(Instant::now());
            let mut counts = Vec::with_capacity(topics.len());
            for name in topics {
                match listed.iter().find(|t| t.name == *name).map(|t| t.partitions.len() as i32) {
                    Some(n) if n > 0 => counts.push(n),
                    _ => return Err(self.why_unlisted(name).await),
                }
            }
            Ok(counts)
        })
    }

    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: &'a Records,
        sequence: Option<Sequence>,
    ) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async move {
            if let (Some(wire), Some(sequence)) = (&self.wire, sequence) {
                return wire.produce(topic, partition, records, sequence).await;
            }
            let pc = self.partition_client(topic, partition, true).await?;
            let after = self.request_deadline;
            let started = Instant::now();
            // rskafka takes the records by value: built for this attempt, from the batch,
            // which stays whole to be sent again.
            // Watched: rskafka would send a throttled request again by itself (crate::kafka::throttle).
            let call = crate::kafka::throttle::watch(pc.produce(to_rskafka(records), self.compression));
            let result = match tokio::time::timeout(after, call).await {
                Err(_) => Err(BrokerError::NotAcknowledged { topic: topic.to_owned(), partition, after }),
                Ok(Err(pause)) => Err(BrokerError::Throttled { topic: topic.to_owned(), partition, pause }),
                Ok(Ok(r)) => r.map_err(|e| self.produce_error(topic, partition, e)),
            };
            if result.is_err() || started.elapsed() > SLOW_PRODUCE {
                crate::kafka::nodelay::apply();
            }
            if let Err(e) = &result {
                if e.code().is_some_and(ErrorCode::leaders_may_have_moved)
                    || matches!(e, BrokerError::NotAcknowledged { .. })
                {
                    self.refresh_metadata().await;
                }
            }
            result.map(|offsets| offsets.first().copied().unwrap_or(-1))
        })
    }

    /// `InitProducerId`, unless `KAFKA_IDEMPOTENCE` is `off`. With `auto`, a cluster that does
    /// not offer it (or refuses this principal) is produced to without, and the log says so;
    /// with `on`, that stops the run.
    fn producer_id(&self) -> BoxFuture<'_, Result<Option<ProducerId>, BrokerError>> {
        Box::pin(async move {
            let Some(wire) = &self.wire else {
                tracing::info!(idempotence = "off", "produce without idempotence (KAFKA_IDEMPOTENCE=off): a resend after a lost answer is looked for first");
                return Ok(None);
            };
            let first = !self.has_producer_id.load(std::sync::atomic::Ordering::Relaxed);
            match wire.init_producer_id(self.connect_timeout).await {
                Ok(id) => {
                    self.has_producer_id.store(true, std::sync::atomic::Ordering::Relaxed);
                    if first {
                        tracing::info!(
                            idempotence = "on",
                            producer_id = id.id,
                            epoch = id.epoch,
                            "idempotent produce: the partition leaders drop a resent batch they hold"
                        );
                    }
                    Ok(Some(id))
                }
                Err(wire::NoProducerId::NotOffered(why)) if self.idempotence == KafkaIdempotence::Auto && first => {
                    tracing::warn!(
                        idempotence = "off",
                        reason = %why,
                        "produce without idempotence (KAFKA_IDEMPOTENCE=auto): a resend after a lost answer is looked for first"
                    );
                    Ok(None)
                }
                Err(wire::NoProducerId::NotOffered(why)) => Err(BrokerError::Connect {
                    bootstrap: self.bootstrap.clone(),
                    source: format!("KAFKA_IDEMPOTENCE=on, but {why}").into(),
                }),
                Err(wire::NoProducerId::Failed(e)) => Err(e),
            }
        })
    }

    /// ListOffsets (latest). Some brokers list less than the end (tansu lists the first
    /// offset of its last batch plus one, or less after a restart); readers take the high
    /// watermark of their first fetch too (see [`crate::resume::readback`]).
    fn end_offset<'a>(&'a self, topic: &'a str, partition: i32) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async move {
            let pc = self.partition_client(topic, partition, false).await?;
            let failed = |source: BoxError| BrokerError::ReadBack { topic: topic.to_owned(), partition, source };
            tokio::time::timeout(self.request_deadline, pc.get_offset(OffsetAt::Latest))
                .await
                .map_err(|e| failed(Box::new(e)))?
                .map_err(|e| failed(Box::new(e)))
        })
    }

    /// rskafka 0.6 cannot parse a real control batch (a transaction marker): it reads the
    /// marker's key where the record starts and fails the whole fetch with "Unknown control
    /// batch record version". From such a failure on, the partition is read one batch at a
    /// time (a fetch of at most 1 byte returns exactly the first batch): a batch that fails
    /// again is a marker, which holds one offset, and is stepped over.
    fn fetch<'a>(&'a self, topic: &'a str, partition: i32, offset: i64) -> BoxFuture<'a, Result<Fetched, BrokerError>> {
        Box::pin(async move {
            let pc = self.partition_client(topic, partition, false).await?;
            let failed = |source: BoxError| BrokerError::ReadBack { topic: topic.to_owned(), partition, source };
            let mut at = offset;
            let mut one_batch = false;
            for _ in 0..MARKERS_PER_FETCH {
                let max_bytes = if one_batch { 1 } else { FETCH_MAX_BYTES };
                let fetched =
                    tokio::time::timeout(self.request_deadline, pc.fetch_records(at, 1..max_bytes, FETCH_MAX_WAIT_MS))
                        .await
                        .map_err(|e| failed(Box::new(e)))?;
                match fetched {
                    Ok((records, high_watermark)) => {
                        // A compressed batch is returned whole, from before `at` too.
                        let records: Vec<(i64, Record)> = records
                            .into_iter()
                            .filter(|r| r.offset >= at)
                            .map(|r| (r.offset, from_rskafka(r.record)))
                            .collect();
                        let next = records.last().map_or(at, |(last, _)| last + 1);
                        return Ok(Fetched { records, high_watermark, next });
                    }
                    Err(e) if rw_core::Chain(&e).to_string().contains(CONTROL_BATCH_UNREADABLE) => {
                        if one_batch {
                            at += 1;
                        }
                        one_batch = true;
                    }
                    Err(e) => match classify(&e) {
                        (Failure::Fatal, Some(code)) if code.is_authorization() => {
                            return Err(BrokerError::ReadRefused { topic: topic.to_owned(), partition, code })
                        }
                        _ => return Err(failed(Box::new(e))),
                    },
                }
            }
            // Markers only, so far: the next fetch goes on from here.
            Ok(Fetched { records: Vec::new(), high_watermark: at, next: at })
        })
    }
}

/// How the pipeline treats an rskafka error, and the broker's error code name if there is
/// one. Looks through rskafka's "retries exceeded" wrapper at the last error inside.
pub fn classify(e: &ClientError) -> (Failure, Option<ErrorCode>) {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut retry_failed = false;
    while let Some(err) = next {
        if let Some(ce) = err.downcast_ref::<ClientError>() {
            match ce {
                ClientError::ServerError { protocol_error, .. } => {
                    return (failure_of(*protocol_error), Some(error_code(protocol_error)));
                }
                ClientError::RetryFailed(_) => retry_failed = true,
                _ => {}
            }
        }
        if err.downcast_ref::<rskafka::SaslError>().is_some() {
            return (Failure::Fatal, Some(ErrorCode::SaslAuthenticationFailed));
        }
        next = err.source();
    }
    (Failure::Transient, retry_failed.then_some(ErrorCode::RetryFailed))
}

/// The failure class of a broker error code. `INVALID_TIMESTAMP` is fatal, not a rejected
/// record: the worker stamps every record with its own clock when it sends it, so the broker
/// refusing the timestamp (`message.timestamp.*.max.ms`) says this machine's clock is off,
/// and would refuse every line alike; the run stops, resumable, rather than turn every line
/// into a dead letter.
fn failure_of(code: ProtocolError) -> Failure {
    use ProtocolError as P;
    match code {
        P::MessageTooLarge | P::RecordListTooLarge | P::InvalidRecord | P::CorruptMessage => Failure::Rejected,
        P::InvalidTimestamp
        | P::TopicAuthorizationFailed
        | P::ClusterAuthorizationFailed
        | P::TransactionalIdAuthorizationFailed
        | P::SaslAuthenticationFailed
        | P::UnsupportedSaslMechanism
        | P::IllegalSaslState
        | P::UnknownTopicOrPartition
        | P::InvalidTopicException
        | P::InvalidRequiredAcks
        | P::UnsupportedCompressionType
        | P::UnsupportedVersion
        | P::PolicyViolation => Failure::Fatal,
        _ => Failure::Transient,
    }
}

/// The worker's form of a broker error code.
fn error_code(code: &ProtocolError) -> ErrorCode {
    use ProtocolError as P;
    match code {
        P::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower,
        P::LeaderNotAvailable => ErrorCode::LeaderNotAvailable,
        P::NotEnoughReplicas => ErrorCode::NotEnoughReplicas,
        P::MessageTooLarge => ErrorCode::MessageTooLarge,
        P::TopicAuthorizationFailed => ErrorCode::TopicAuthorizationFailed,
        P::ClusterAuthorizationFailed => ErrorCode::ClusterAuthorizationFailed,
        P::SaslAuthenticationFailed => ErrorCode::SaslAuthenticationFailed,
        P::OutOfOrderSequenceNumber => ErrorCode::OutOfOrderSequenceNumber,
        P::DuplicateSequenceNumber => ErrorCode::DuplicateSequenceNumber,
        P::UnknownProducerId => ErrorCode::UnknownProducerId,
        P::InvalidProducerEpoch => ErrorCode::InvalidProducerEpoch,
        other => ErrorCode::Other(code_name(other)),
    }
}

/// Kafka's name for an error code: `MessageTooLarge` → `MESSAGE_TOO_LARGE`.
fn code_name(code: &ProtocolError) -> String {
    if let ProtocolError::Unknown(n) = code {
        return format!("UNKNOWN_ERROR_CODE_{n}");
    }
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {

    /// rskafka's zstd batches are level 1, as `.cargo/config.toml` builds zstd; the sample
    /// tells the levels apart, so a build without the define (level 3) fails here.
    #[test]
    fn kafka_batches_are_compressed_at_zstd_level_1() {
        let sample = zstd_sample();
        let at = |level| zstd::bulk::compress(&sample, level).unwrap();
        assert!(at(1) != at(2) && at(2) != at(3) && at(1) != at(3), "the sample tells levels 1 to 3 apart");
        assert_eq!(zstd_default_level(), Some(1));
    }

    use super::*;

    /// The fetch's step over transaction markers matches rskafka's error text for them; the
    /// error names are rskafka's `ProtocolError` variants, as `code_name` spells them.
    #[test]
    fn rskafka_still_fails_a_control_batch_with_the_text_matched() {
        let source = crate::testutil::rskafka_source("protocol/record.rs");
        assert!(
            source.contains(&format!("\"{CONTROL_BATCH_UNREADABLE}: {{}}\"")),
            "rskafka's control-batch error changed"
        );
        let errors = crate::testutil::rskafka_source("protocol/error.rs");
        for variant in ["TopicAuthorizationFailed", "NotLeaderOrFollower", "MessageTooLarge", "ThrottlingQuotaExceeded"]
        {
            assert!(errors.contains(&format!("Self::{variant})")), "ProtocolError::{variant} in rskafka");
        }
        assert_eq!(code_name(&ProtocolError::TopicAuthorizationFailed), "TOPIC_AUTHORIZATION_FAILED");
    }

    #[test]
    fn the_named_error_codes_are_kafka_s_names() {
        use ProtocolError as P;
        let named = [
            P::NotLeaderOrFollower,
            P::LeaderNotAvailable,
            P::NotEnoughReplicas,
            P::MessageTooLarge,
            P::TopicAuthorizationFailed,
            P::ClusterAuthorizationFailed,
            P::SaslAuthenticationFailed,
        ];
        for p in named {
            let code = error_code(&p);
            assert!(!matches!(code, ErrorCode::Other(_)), "{p:?} has a variant of its own");
            assert_eq!(code.name(), code_name(&p));
        }
        assert_eq!(error_code(&P::InvalidRecord), ErrorCode::Other("INVALID_RECORD".into()));
        assert!(error_code(&P::GroupAuthorizationFailed).is_authorization());
        assert!(!error_code(&P::NotEnoughReplicas).is_authorization());
        assert!(error_code(&P::NotLeaderOrFollower).leaders_may_have_moved());
        assert!(!error_code(&P::MessageTooLarge).leaders_may_have_moved());
    }

    #[test]
    fn code_names_and_classes() {
        assert_eq!(code_name(&ProtocolError::MessageTooLarge), "MESSAGE_TOO_LARGE");
        assert_eq!(code_name(&ProtocolError::NotEnoughReplicasAfterAppend), "NOT_ENOUGH_REPLICAS_AFTER_APPEND");
        assert_eq!(code_name(&ProtocolError::Unknown(999)), "UNKNOWN_ERROR_CODE_999");
        assert_eq!(failure_of(ProtocolError::RecordListTooLarge), Failure::Rejected);
        assert_eq!(failure_of(ProtocolError::TopicAuthorizationFailed), Failure::Fatal);
        assert_eq!(
            failure_of(ProtocolError::InvalidTimestamp),
            Failure::Fatal,
            "our clock, not the line: stop, never dead-letter every line"
        );
        for transient in [
            ProtocolError::NotEnoughReplicas,
            ProtocolError::NotEnoughReplicasAfterAppend,
            ProtocolError::KafkaStorageError,
            ProtocolError::RequestTimedOut,
            ProtocolError::NotLeaderOrFollower,
            ProtocolError::LeaderNotAvailable,
            ProtocolError::ThrottlingQuotaExceeded,
        ] {
            assert_eq!(failure_of(transient), Failure::Transient, "{transient:?}");
        }
    }
}
