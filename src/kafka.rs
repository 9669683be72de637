//! The Kafka sink, on rskafka (pure Rust, no librdkafka).
//!
//! One [`rskafka::client::Client`] per worker; one cached `PartitionClient` per partition
//! (each multiplexes concurrent produce requests over the broker connection). rskafka
//! retries transient errors with backoff up to a deadline (`KAFKA_DELIVERY_TIMEOUT_SECS`);
//! each produce call is also bounded by that deadline, so nothing retries forever. TLS and
//! SASL (PLAIN, SCRAM-SHA-256/512) are configured the way Jitsu's kafkabase names them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;

use crate::backoff::Backoff;
use crate::config::{KafkaCompression, KafkaConfig, SaslMechanism, SecurityProtocol};
use crate::sink::{Sink, SinkError};

pub struct KafkaSink {
    client: Client,
    compression: Compression,
    delivery_timeout: Duration,
    partitions: tokio::sync::Mutex<HashMap<String, i32>>,
    clients: tokio::sync::Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
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

impl KafkaSink {
    /// Connects to the cluster; fails after `connect_timeout` if no broker answers.
    pub async fn connect(cfg: &KafkaConfig) -> Result<Self, SinkError> {
        let backoff = Backoff::KAFKA.to_rskafka(cfg.delivery_timeout);
        let bootstrap = cfg.bootstrap.join(",");
        let mut builder =
            ClientBuilder::new(cfg.bootstrap.clone()).client_id("reprocessing-worker").backoff_config(backoff);
        if matches!(cfg.security, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl) {
            let tls = crate::tls::client_config(cfg.ssl_ca_file.as_deref(), cfg.ssl_skip_verify)
                .map_err(|e| SinkError::Connect { bootstrap: bootstrap.clone(), source: Box::new(e) })?;
            builder = builder.tls_config(Arc::new(tls));
        }
        if let Some(s) = &cfg.sasl {
            let creds = Credentials::new(s.username.clone(), s.password.expose().to_owned());
            builder = builder.sasl_config(match s.mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(creds),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(creds),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(creds),
            });
        }
        let client = tokio::time::timeout(cfg.connect_timeout, builder.build())
            .await
            .map_err(|_| SinkError::ConnectTimeout { bootstrap: bootstrap.clone(), after: cfg.connect_timeout })?
            .map_err(|e| SinkError::Connect { bootstrap, source: Box::new(e) })?;
        Ok(Self {
            client,
            compression: compression(cfg.compression),
            delivery_timeout: cfg.delivery_timeout,
            partitions: Default::default(),
            clients: Default::default(),
        })
    }

    async fn partition_client(&self, topic: &str, partition: i32) -> Result<Arc<PartitionClient>, SinkError> {
        let key = (topic.to_owned(), partition);
        if let Some(c) = self.clients.lock().await.get(&key) {
            return Ok(Arc::clone(c));
        }
        let pc = tokio::time::timeout(
            self.delivery_timeout,
            self.client.partition_client(topic, partition, UnknownTopicHandling::Error),
        )
        .await
        .map_err(|_| SinkError::NoLeader { topic: topic.into(), partition, after: self.delivery_timeout })?
        .map_err(|e| SinkError::Produce { topic: topic.into(), partition, source: Box::new(e) })?;
        let pc = Arc::new(pc);
        self.clients.lock().await.insert(key, Arc::clone(&pc));
        Ok(pc)
    }
}

impl Sink for KafkaSink {
    fn partitions<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32, SinkError>> {
        Box::pin(async move {
            if let Some(n) = self.partitions.lock().await.get(topic) {
                return Ok(*n);
            }
            let topics = tokio::time::timeout(self.delivery_timeout, self.client.list_topics())
                .await
                .map_err(|_| SinkError::MetadataTimeout { topic: topic.to_owned(), after: self.delivery_timeout })?
                .map_err(|e| SinkError::Metadata { topic: topic.to_owned(), source: Box::new(e) })?;
            let n = topics
                .iter()
                .find(|t| t.name == topic)
                .map(|t| t.partitions.len() as i32)
                .filter(|&n| n > 0)
                .ok_or_else(|| SinkError::TopicMissing { topic: topic.to_owned() })?;
            self.partitions.lock().await.insert(topic.to_owned(), n);
            Ok(n)
        })
    }

    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: Vec<Record>,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let pc = self.partition_client(topic, partition).await?;
            let after = self.delivery_timeout;
            tokio::time::timeout(after, pc.produce(records, self.compression))
                .await
                .map_err(|_| SinkError::NotAcknowledged { topic: topic.to_owned(), partition, after })?
                .map_err(|e| SinkError::Produce { topic: topic.to_owned(), partition, source: Box::new(e) })?;
            Ok(())
        })
    }
}
