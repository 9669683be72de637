//! The idempotent producer's own path to the partition leaders, on rskafka's protocol layer
//! (`Messenger`: framing, version negotiation, SASL, concurrent requests on one connection).
//!
//! rskafka's producer has no producer id, copies every record into a buffer of its own and
//! builds a zstd context per batch. This path opens its own connections (TCP with
//! `TCP_NODELAY`, TLS and SASL as configured), one per broker, asks for a producer id
//! ([`Wire::init_producer_id`]), and sends each batch as one `Produce` request whose record
//! batch [`rw_core::BatchEncoder`] wrote straight from the batch's compact records, with the
//! producer id, epoch and first sequence number the pipeline's [`rw_core::Sequencer`] gave it.
//!
//! - **Leaders** come from its own metadata requests: a partition whose leader it does not
//!   know, or whose leader answered `NOT_LEADER_OR_FOLLOWER` (or whose connection failed), is
//!   looked up again (at most once per [`super::METADATA_REFRESH_EVERY`] per topic).
//! - **Throttling**: a produce answer's `throttle_time_ms` mutes the connection for that long
//!   (KIP-219: the broker answers at once and expects the client to wait); the batch itself
//!   was written, so the answer stands.
//! - **Requests in order**: Kafka handles one connection's requests in the order they came,
//!   and a leader refuses a batch that does not follow the last it appended. Each batch is a
//!   task of its own, so a partition's batches take turns ([`Turn`]): a batch goes onto the
//!   wire once the one before it in the sequence has (at most [`TURN_WAIT`] later: then it
//!   goes anyway, and a refusal is retried), and a failed batch takes the turn back, so that
//!   the resends go in order too. Without the turns, batches overtaking each other were
//!   refused with `OUT_OF_ORDER_SEQUENCE_NUMBER` and retried after a pause: 1.8 s instead of
//!   0.5 s for 150 MB into tansu.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rskafka::client::SaslConfig;
use rskafka::messenger::{Messenger, RequestError};
use rskafka::protocol::messages::{MetadataRequest, MetadataRequestTopic};
use rskafka::protocol::primitives::{Boolean, String_};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::messages::{InitProducerId, ProduceBatch};
use rw_core::{
    sequence_follows, BatchCompression, BatchEncoder, BrokerError, ErrorCode, Failure, ProducerId, Records, Sequence,
};

/// A connection's stream: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
type BoxStream = Box<dyn Stream>;

/// The largest answer read (a produce answer is small; metadata of a large cluster is not).
const MAX_MESSAGE: usize = 100 * 1024 * 1024;

/// The longest a batch waits for its turn before it goes anyway.
const TURN_WAIT: Duration = Duration::from_secs(1);

/// A partition's next batch to go onto the wire: its producer id and first sequence number.
#[derive(Debug, Clone, Copy)]
struct Turn {
    producer: i64,
    next: i32,
}

/// A broker's connection, once open.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

/// One broker connection.
struct Conn {
    messenger: Messenger<BoxStream>,
    /// Until when the broker asked this client to wait (a quota's throttle).
    muted_until: Mutex<Option<Instant>>,
}

/// What [`Wire::init_producer_id`] found when no producer id came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoProducerId {
    /// The cluster does not offer idempotence (no `InitProducerId` in its API versions), or
    /// this principal may not use it.
    #[error("{0}")]
    NotOffered(String),
    /// It could not be asked (no broker answered, or it kept answering with an error).
    #[error(transparent)]
    Failed(#[from] BrokerError),
}

/// The idempotent producer's connections and what it knows of the cluster.
pub(crate) struct Wire {
    bootstrap: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<SaslConfig>,
    compression: BatchCompression,
    request_deadline: Duration,
    /// Broker node id → host:port.
    brokers: Mutex<HashMap<i32, String>>,
    /// (topic, partition) → leader node id.
    leaders: Mutex<HashMap<(String, i32), i32>>,
    /// When each topic's leaders were last looked up (held while looking).
    looked_up: tokio::sync::Mutex<HashMap<String, Instant>>,
    /// Connections by node id (`-1 - i`: the i-th bootstrap address), each in a slot of its
    /// own, held while it is opened: a broker slow to answer holds up its own requests only.
    conns: Mutex<HashMap<i32, Slot>>,
    /// Encoders (their buffers and codec contexts) and request buffers not in use.
    encoders: Mutex<Vec<(BatchEncoder, Vec<u8>)>>,
    /// Per (topic, partition), whose turn it is to go onto the wire.
    turns: Mutex<HashMap<(String, i32), Turn>>,
    /// Woken when a turn moves.
    turn_moved: tokio::sync::Notify,
}

impl Wire {
    pub(crate) fn new(
        bootstrap: Vec<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
        sasl: Option<SaslConfig>,
        compression: BatchCompression,
        request_deadline: Duration,
    ) -> Self {
        Wire {
            bootstrap,
            tls,
            sasl,
            compression,
            request_deadline,
            brokers: Mutex::default(),
            leaders: Mutex::default(),
            looked_up: tokio::sync::Mutex::default(),
            conns: Mutex::default(),
            encoders: Mutex::default(),
            turns: Mutex::default(),
            turn_moved: tokio::sync::Notify::new(),
        }
    }

    /// Waits until `seq` may go onto the wire: the batches before it in its partition's
    /// sequence have (a resend of an earlier batch goes at once), or [`TURN_WAIT`] passed.
    async fn wait_turn(&self, key: &(String, i32), seq: Sequence) {
        let deadline = Instant::now() + TURN_WAIT;
        loop {
            let moved = self.turn_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            {
                let mut turns = self.turns.lock();
                let turn = turns.entry(key.clone()).or_insert(Turn { producer: seq.producer.id, next: 0 });
                if turn.producer != seq.producer.id && seq.base == 0 {
                    // A new producer id's first batch here.
                    *turn = Turn { producer: seq.producer.id, next: 0 };
                }
                if turn.producer == seq.producer.id && !sequence_follows(seq.base, turn.next) {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return;
            }
        }
    }

    /// `seq`'s batch of `len` records is on its way: the next one's turn.
    fn went(&self, key: &(String, i32), seq: Sequence, len: usize) {
        let end = seq.end(len);
        let mut turns = self.turns.lock();
        let turn = turns.entry(key.clone()).or_insert(Turn { producer: seq.producer.id, next: 0 });
        if turn.producer == seq.producer.id && sequence_follows(end, turn.next) {
            turn.next = end;
        }
        drop(turns);
        self.turn_moved.notify_waiters();
    }

    /// `seq`'s batch failed: it goes again before the batches after it.
    fn failed(&self, key: &(String, i32), seq: Sequence) {
        let mut turns = self.turns.lock();
        if let Some(turn) = turns.get_mut(key).filter(|t| t.producer == seq.producer.id) {
            if sequence_follows(turn.next, seq.base) {
                turn.next = seq.base;
            }
        }
        drop(turns);
        self.turn_moved.notify_waiters();
    }

    /// Opens a connection to `addr`: TCP, TLS, API versions, SASL.
    async fn open(&self, addr: &str) -> Result<Messenger<BoxStream>, crate::kafka::BoxError> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream: BoxStream = match &self.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(|c| c == '[' || c == ']');
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
                Box::new(tokio_rustls::TlsConnector::from(Arc::clone(cfg)).connect(name, tcp).await?)
            }
        };
        let mut messenger = Messenger::new(stream, MAX_MESSAGE, Arc::from("reprocessing-worker"));
        messenger.sync_versions().await?;
        if let Some(sasl) = &self.sasl {
            messenger.do_sasl(sasl.clone()).await?;
        }
        Ok(messenger)
    }

    /// The connection to node `node` (negative: a bootstrap address), opened on first use.
    async fn conn(&self, node: i32) -> Result<Arc<Conn>, crate::kafka::BoxError> {
        let slot = Arc::clone(self.conns.lock().entry(node).or_default());
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(Arc::clone(c));
        }
        let addr = match node {
            n if n < 0 => self.bootstrap[(-1 - n) as usize % self.bootstrap.len().max(1)].clone(),
            n => self.brokers.lock().get(&n).cloned().ok_or_else(|| format!("broker {n} is not in the metadata"))?,
        };
        let messenger = tokio::time::timeout(self.request_deadline, self.open(&addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))??;
        let conn = Arc::new(Conn { messenger, muted_until: Mutex::new(None) });
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// Forgets a connection that failed (the next request opens a new one).
    async fn drop_conn(&self, node: i32, conn: &Arc<Conn>) {
        let Some(slot) = self.conns.lock().get(&node).cloned() else { return };
        let mut slot = slot.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    /// Any broker that answers: a known one first, else the bootstrap addresses.
    async fn any_conn(&self) -> Result<(i32, Arc<Conn>), crate::kafka::BoxError> {
        let known: Vec<i32> = self.conns.lock().keys().copied().collect();
        let nodes = known.into_iter().chain((0..self.bootstrap.len() as i32).map(|i| -1 - i));
        let mut last: crate::kafka::BoxError = "no bootstrap server".into();
        for node in nodes {
            match self.conn(node).await {
                Ok(c) => return Ok((node, c)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Asks the cluster for a producer id (any broker allocates one for an idempotent
    /// producer); retries what may pass (a coordinator loading, a broker away) until
    /// `deadline`.
    pub(crate) async fn init_producer_id(&self, deadline: Duration) -> Result<ProducerId, NoProducerId> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = match self.try_init().await {
                Ok(Ok(id)) => return Ok(id),
                Ok(Err(code)) if code.is_authorization() => {
                    return Err(NoProducerId::NotOffered(format!(
                        "InitProducerId refused: {code} (this principal may not write idempotently)"
                    )))
                }
                Ok(Err(code)) => format!("InitProducerId answered {code}"),
                Err(e) if is_not_offered(&e) => {
                    return Err(NoProducerId::NotOffered("the cluster does not offer InitProducerId".into()))
                }
                Err(e) => rw_core::Chain(&*e).to_string(),
            };
            let pause = rw_core::Backoff::KAFKA.delay(attempt).unwrap_or(rw_core::Backoff::KAFKA.max);
            if started.elapsed() + pause >= deadline {
                let source: crate::kafka::BoxError = last.into();
                return Err(BrokerError::Connect { bootstrap: self.bootstrap.join(","), source }.into());
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// One `InitProducerId`: the id, or the error code it was answered with.
    async fn try_init(&self) -> Result<Result<ProducerId, ErrorCode>, crate::kafka::BoxError> {
        let (node, conn) = self.any_conn().await?;
        let answer = tokio::time::timeout(self.request_deadline, conn.messenger.request(InitProducerId)).await;
        let answer = match answer {
            Err(_) => return Err("InitProducerId timed out".into()),
            Ok(Err(e)) => {
                if !matches!(e, RequestError::NoVersionMatch { .. }) {
                    self.drop_conn(node, &conn).await;
                }
                return Err(Box::new(e));
            }
            Ok(Ok(a)) => a,
        };
        Ok(match answer.error {
            None => Ok(ProducerId { id: answer.producer_id, epoch: answer.producer_epoch }),
            Some(code) => Err(super::error_code(&code)),
        })
    }

    /// Looks up the leaders of `topic`'s partitions (at most once per
    /// [`super::METADATA_REFRESH_EVERY`], unless `force`d by a missing leader).
    async fn look_up(&self, topic: &str) -> Result<(), crate::kafka::BoxError> {
        let mut looked = self.looked_up.lock().await;
        if looked.get(topic).is_some_and(|t| t.elapsed() < super::METADATA_REFRESH_EVERY)
            && self.leaders.lock().keys().any(|(t, _)| t == topic)
        {
            return Ok(());
        }
        let (node, conn) = self.any_conn().await?;
        let request = MetadataRequest {
            topics: Some(vec![MetadataRequestTopic { name: String_(topic.to_owned()) }]),
            allow_auto_topic_creation: Some(Boolean(false)),
        };
        let answer = match tokio::time::timeout(self.request_deadline, conn.messenger.request(request)).await {
            Err(_) => return Err("metadata request timed out".into()),
            Ok(Err(e)) => {
                self.drop_conn(node, &conn).await;
                return Err(Box::new(e));
            }
            Ok(Ok(a)) => a,
        };
        looked.insert(topic.to_owned(), Instant::now());
        {
            let mut brokers = self.brokers.lock();
            for b in &answer.brokers {
                brokers.insert(b.node_id.0, format!("{}:{}", b.host.0, b.port.0));
            }
        }
        let mut leaders = self.leaders.lock();
        leaders.retain(|(t, _), _| t != topic);
        for t in answer.topics.iter().filter(|t| t.name.0 == topic) {
            for p in t.partitions.iter().filter(|p| p.error.is_none() && p.leader_id.0 >= 0) {
                leaders.insert((topic.to_owned(), p.partition_index.0), p.leader_id.0);
            }
        }
        Ok(())
    }

    /// The leader of the partition, looked up when not known.
    async fn leader(&self, topic: &str, partition: i32) -> Result<i32, crate::kafka::BoxError> {
        let key = (topic.to_owned(), partition);
        if let Some(&l) = self.leaders.lock().get(&key) {
            return Ok(l);
        }
        self.look_up(topic).await?;
        self.leaders.lock().get(&key).copied().ok_or_else(|| format!("no leader of {topic}[{partition}]").into())
    }

    /// Sends one batch, under `sequence`, to the partition's leader; its base offset once
    /// acknowledged.
    pub(crate) async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &Records,
        sequence: Sequence,
    ) -> Result<i64, BrokerError> {
        let key = (topic.to_owned(), partition);
        let result = self.produce_in_turn(&key, records, sequence).await;
        // A batch that will be sent again under this producer id goes before the ones after
        // it; one refused for good (its sequence ends) does not hold them.
        if result.as_ref().is_err_and(|e| e.failure() == Failure::Transient) {
            self.failed(&key, sequence);
        }
        result
    }

    async fn produce_in_turn(
        &self,
        key: &(String, i32),
        records: &Records,
        sequence: Sequence,
    ) -> Result<i64, BrokerError> {
        let (topic, partition) = (key.0.as_str(), key.1);
        let unanswered = |source: crate::kafka::BoxError| BrokerError::Produce {
            topic: topic.to_owned(),
            partition,
            failure: Failure::Transient,
            code: Some(ErrorCode::RetryFailed),
            answered: false,
            source,
        };
        let leader = match self.leader(topic, partition).await {
            Ok(l) => l,
            Err(e) => return Err(unanswered(e)),
        };
        let conn = match self.conn(leader).await {
            Ok(c) => c,
            Err(e) => {
                self.forget_leader(topic, partition);
                return Err(unanswered(e));
            }
        };
        let muted = *conn.muted_until.lock();
        if let Some(until) = muted {
            tokio::time::sleep_until(until).await;
        }
        let (mut encoder, mut buf) = self
            .encoders
            .lock()
            .pop()
            .unwrap_or_else(|| (BatchEncoder::new(self.compression, super::ZSTD_LEVEL), Vec::new()));
        buf.clear();
        let encoded = encoder.encode(records, Some(sequence), &mut buf);
        let sent = match encoded {
            Err(e) => Sent::Failed(Box::new(e)),
            Ok(_) => {
                let timeout_ms = self.request_deadline.as_millis().min(i32::MAX as u128) as i32;
                let request = ProduceBatch { topic, partition, acks: -1, timeout_ms, batch: &buf };
                self.wait_turn(key, sequence).await;
                let call = conn.messenger.request(request);
                tokio::pin!(call);
                // Polled once, the request is queued on the connection (the messenger writes
                // requests in the order they ask): the next batch's turn.
                let first = futures::poll!(call.as_mut());
                self.went(key, sequence, records.len());
                let answered = match first {
                    std::task::Poll::Ready(a) => Ok(a),
                    std::task::Poll::Pending => tokio::time::timeout(self.request_deadline, call).await,
                };
                match answered {
                    Err(_) => Sent::NoAnswer,
                    Ok(Err(e)) => {
                        self.drop_conn(leader, &conn).await;
                        self.forget_leader(topic, partition);
                        Sent::Failed(Box::new(e))
                    }
                    Ok(Ok(a)) => Sent::Answered(a),
                }
            }
        };
        self.encoders.lock().push((encoder, buf));
        let answer = match sent {
            Sent::NoAnswer => {
                let after = self.request_deadline;
                return Err(BrokerError::NotAcknowledged { topic: topic.to_owned(), partition, after });
            }
            Sent::Failed(e) => return Err(unanswered(e)),
            Sent::Answered(a) => a,
        };
        if let Some(ms) = answer.throttle_time_ms.map(|t| t.0).filter(|&ms| ms > 0) {
            *conn.muted_until.lock() = Some(Instant::now() + Duration::from_millis(ms as u64));
        }
        let part = answer
            .responses
            .iter()
            .filter(|t| t.name.0 == topic)
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.index.0 == partition);
        let Some(part) = part else {
            return Err(unanswered(format!("the answer has no {topic}[{partition}]").into()));
        };
        match part.error {
            // Written, or a resend of a batch the leader holds: answered with its offset.
            // DUPLICATE_SEQUENCE_NUMBER carries none, and is not believed until the batch is
            // found (`ErrorCode::DuplicateSequenceNumber`): it is the producer's to look.
            None => Ok(part.base_offset.0),
            Some(code) => {
                let (failure, named) = (super::failure_of(code), super::error_code(&code));
                if named.leaders_may_have_moved() {
                    self.forget_leader(topic, partition);
                }
                Err(BrokerError::Produce {
                    topic: topic.to_owned(),
                    partition,
                    failure,
                    code: Some(named),
                    answered: true,
                    source: Box::new(code),
                })
            }
        }
    }

    fn forget_leader(&self, topic: &str, partition: i32) {
        self.leaders.lock().remove(&(topic.to_owned(), partition));
    }
}

/// How a produce request ended.
enum Sent {
    NoAnswer,
    /// Not sent, or its connection failed.
    Failed(crate::kafka::BoxError),
    Answered(rskafka::protocol::messages::ProduceResponse),
}

/// Whether a request failed because the broker does not offer its API.
fn is_not_offered(e: &crate::kafka::BoxError) -> bool {
    e.downcast_ref::<RequestError>().is_some_and(|r| matches!(r, RequestError::NoVersionMatch { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of one partition go in sequence order whatever order their tasks arrive in,
    /// and a failed one takes the turn back.
    #[tokio::test(start_paused = true)]
    async fn batches_take_turns_and_a_failed_one_goes_again_first() {
        let wire = Arc::new(Wire::new(vec![], None, None, BatchCompression::None, Duration::from_secs(5)));
        let key = ("t".to_owned(), 0);
        let p = ProducerId { id: 9, epoch: 0 };
        let seq = move |base| Sequence { producer: p, base };
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for base in [20, 10, 0] {
            let (wire, key, order) = (Arc::clone(&wire), key.clone(), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                wire.wait_turn(&key, seq(base)).await;
                order.lock().push(base);
                wire.went(&key, seq(base), 10);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), [0, 10, 20]);
        wire.failed(&key, seq(10));
        let started = Instant::now();
        wire.wait_turn(&key, seq(10)).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "the failed batch goes at once");
        wire.wait_turn(&key, seq(20)).await;
        assert_eq!(started.elapsed(), TURN_WAIT, "the one after it waits for it, at most TURN_WAIT");
    }
}
