//! The producer stage: takes batches from the CPU stage, picks their partitions
//! round-robin, keeps at most `max_in_flight` produce requests in flight (over all
//! partitions, so a slow partition holds one slot, not the others), and settles the lines of
//! each batch when its delivery ends.
//!
//! One batch's delivery ([`Producer::deliver`]) follows the error's [`Failure`]:
//! - **transient** (leader moves, replicas behind, time-outs, disconnects): the same records
//!   again, with [`Backoff::DELIVERY`], until `KAFKA_DELIVERY_TIMEOUT_SECS` has passed since
//!   the first failure; then the cluster counts as unavailable and the run stops;
//! - **rejected** (too large, invalid): the batch is split in halves, down to single records;
//!   a single record refused is an error and a dead letter, every other record is delivered;
//! - **fatal** (authorization, login, a missing topic): the run stops.
//!
//! A run that stops leaves the lines of unfinished batches unsettled, so the resume point
//! stays exact.
//!
//! **Idempotent produce.** When the broker gave the run a producer id, each batch takes a
//! place in its partition's sequence ([`Sequencer`]) before its first attempt and keeps it
//! over its retries: the leader drops a resend of a batch it holds, so within a generation a
//! retry goes out as it was, without the lost-answer check. Answers that end the sequence
//! (a batch refused for its size, `UNKNOWN_PRODUCER_ID`, `INVALID_PRODUCER_EPOCH`,
//! `OUT_OF_ORDER_SEQUENCE_NUMBER` to a partition's oldest unsettled batch) renew the producer
//! id; a batch sent under the old one is looked for before it is sent again.
//! `DUPLICATE_SEQUENCE_NUMBER` is believed only once the batch is found in the partition: a
//! broker that moved the sequence on and lost the batch (tansu killed between its two
//! writes) says it too, and the batch then goes out under a new producer id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::landed::Landed;
use super::AttemptError;
use crate::progress::Progress;
use rw_core::resume::Fallback;
use rw_core::{
    Backoff, Batch, Broker, BrokerError, ErrorCode, Failure, Limits, LineState, Place, RateLimits, Records, Seq,
    Sequencer,
};

/// How one batch's delivery ended.
#[derive(Debug, Default)]
struct Delivered {
    acked: Vec<Seq>,
    /// Lines refused one by one, with their bytes and the broker's reason.
    rejected: Vec<(Seq, Vec<u8>, String)>,
    /// Lines not delivered because the run must stop, and why.
    stopped: Option<(Vec<Seq>, AttemptError)>,
}

/// The producer's state, one per worker.
pub(super) struct Producer {
    broker: Arc<dyn Broker>,
    /// The router's topics, by index, and the partitions this worker sends to (from start-up).
    topics: Vec<(String, Vec<i32>)>,
    progress: Arc<Progress>,
    max_in_flight: usize,
    shutdown_timeout: Duration,
    delivery_timeout: Duration,
    /// Per topic: the next partition.
    cursors: Mutex<Vec<usize>>,
    /// The rate limits' buckets; `None` when there is no limit.
    limits: Option<Mutex<Limits>>,
    /// The limits' clock starts here.
    started: Instant,
    dead_letters: Option<crate::deadletter::Sender>,
    /// False when the topic cannot be read (no READ permission): a lost answer is sent again.
    look_for_lost_answers: bool,
    /// The seed of this worker's retry pauses' spread.
    spread_seed: u64,
    /// The sequences of the run's producer id, when produce is idempotent.
    sequencer: Option<Arc<Sequencer>>,
    /// Held while the producer id is renewed, so that one batch renews it.
    renewing: tokio::sync::Mutex<()>,
}

/// The settings of a [`Producer`].
pub(super) struct ProducerSettings {
    pub max_in_flight: usize,
    pub shutdown_timeout: Duration,
    pub delivery_timeout: Duration,
    pub rate: RateLimits,
    pub look_for_lost_answers: bool,
    /// This worker's seed for the spread of its retry pauses ([`Backoff::delay_spread`]).
    pub spread_seed: u64,
    /// The sequences of the run's producer id, when produce is idempotent.
    pub sequencer: Option<Arc<Sequencer>>,
}

impl Producer {
    pub(super) fn new(
        broker: Arc<dyn Broker>,
        topics: Vec<(String, Vec<i32>)>,
        progress: Arc<Progress>,
        settings: ProducerSettings,
        dead_letters: Option<crate::deadletter::Sender>,
    ) -> Self {
        let cursors = Mutex::new(vec![0; topics.len()]);
        let ProducerSettings {
            max_in_flight,
            shutdown_timeout,
            delivery_timeout,
            rate,
            look_for_lost_answers,
            spread_seed,
            sequencer,
        } = settings;
        let started = Instant::now();
        let limits = (!rate.is_unlimited()).then(|| Mutex::new(Limits::new(rate, Duration::ZERO)));
        Self {
            broker,
            topics,
            progress,
            max_in_flight,
            shutdown_timeout,
            delivery_timeout,
            cursors,
            limits,
            started,
            dead_letters,
            look_for_lost_answers,
            spread_seed,
            sequencer,
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    /// Picks the partition for a batch of `topic`: round-robin over this worker's
    /// partitions, one batch per partition.
    fn partition_for(&self, topic: usize) -> i32 {
        let own = &self.topics[topic].1;
        let mut c = self.cursors.lock();
        let i = c[topic] % own.len().max(1);
        c[topic] = i + 1;
        own.get(i).copied().unwrap_or(0)
    }

    /// Delivers one batch: retries transient failures, splits rejected batches, stops on a
    /// fatal error or an unavailable cluster.
    async fn deliver(&self, mut batch: Batch, cancel: &CancellationToken) -> Delivered {
        let mut out = Delivered::default();
        if !self.wait_for_rate(&batch, cancel).await {
            out.stopped = Some((batch.seqs, AttemptError::Stopped));
            return out;
        }
        self.progress.stats().lines_sent.fetch_add(batch.seqs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Stamped when sent, so the topic's timestamps show the rate it was sent at.
        batch.records.stamp(chrono::Utc::now());
        let topic = &self.topics[batch.topic].0;
        let partition = self.partition_for(batch.topic);
        // Registered before the first attempt: from now on its records may be in the topic.
        let last_seq = batch.seqs.iter().copied().max().unwrap_or_default();
        let low = self.progress.ledger().sent(batch.topic, partition, last_seq);
        let at = Target { topic: batch.topic, partition, low };
        // Parts still to send, the next one last.
        let mut parts = vec![(batch.records, batch.seqs)];
        while let Some((records, seqs)) = parts.pop() {
            match self.send(topic, at, &records, cancel).await {
                Ok(base) => {
                    self.progress.ledger().acked(batch.topic, partition, base, records.len());
                    out.acked.extend(seqs)
                }
                Err(Stop::Rejected(e)) if records.len() > 1 => {
                    let mut first = records;
                    let second = first.split_off(first.len() / 2);
                    let mut later = seqs;
                    let earlier = later.drain(..first.len()).collect::<Vec<_>>();
                    tracing::debug!(topic, partition, error = %rw_core::Chain(&e), "batch rejected; splitting it");
                    parts.push((second, later));
                    parts.push((first, earlier));
                }
                Err(Stop::Rejected(e)) => {
                    let reason = format!("rejected by Kafka: {}", e.code().map_or("refused", |c| c.name()));
                    let value = records.get(0).value.to_vec();
                    out.rejected.push((seqs[0], value, reason));
                }
                Err(Stop::Run(e)) => {
                    let mut left = seqs;
                    left.extend(parts.drain(..).flat_map(|(_, l)| l));
                    out.stopped = Some((left, e));
                    break;
                }
            }
        }
        out
    }

    /// Waits until the rate limits let `batch` go; false when stopped while waiting.
    async fn wait_for_rate(&self, batch: &Batch, cancel: &CancellationToken) -> bool {
        let Some(limits) = &self.limits else { return true };
        let wait =
            limits.lock().take(batch.records.len() as u64, batch.records.value_bytes() as u64, self.started.elapsed());
        if wait.is_zero() {
            return true;
        }
        self.progress.stats().rate_limit_waited(wait);
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Sends `records` until acknowledged (their base offset), rejected, or the run must stop.
    /// Before each new attempt after a transient failure, looks for them in the partition
    /// (see [`super::landed`]): an attempt whose answer was lost may have been written.
    async fn send(
        &self,
        topic: &str,
        mut at: Target,
        records: &Records,
        cancel: &CancellationToken,
    ) -> Result<i64, Stop> {
        let partition = at.partition;
        // Each partition's batches pause apart too (the seed mixed with the partition).
        let seed = self.spread_seed ^ u64::from(partition as u32).rotate_left(32);
        let mut retry = Retry { topic, partition, attempt: 0, first_failure: None, unsure: None, seed };
        // Idempotent: the batch's place in the partition's sequence, and the generation of
        // the producer id its last attempt went out under.
        let mut place: Option<Place> = None;
        let mut sent_under: Option<u64> = None;
        loop {
            if let Some(sequencer) = &self.sequencer {
                if place.as_ref().is_none_or(|p| !p.is_current()) {
                    // An old generation's place settles into nothing.
                    drop(place.take());
                    let reserved = sequencer.reserve(at.topic, partition, records.len());
                    place = Some(tokio::select! {
                        _ = cancel.cancelled() => return Err(retry.stop(PauseEnd::Stopped)),
                        p = reserved => p,
                    });
                }
            }
            // A resend under the producer id of the last attempt is dropped by the leader if
            // that attempt was written; under another, it is looked for first.
            let same_producer = place.as_ref().is_some_and(|p| sent_under == Some(p.generation()));
            if retry.unsure.is_some() && !same_producer {
                match self.landed(topic, at, records).await {
                    Landed::At(base) => {
                        let attempt = retry.attempt;
                        tracing::info!(
                            topic,
                            partition,
                            base,
                            attempt,
                            "the batch had been written before its answer was lost; not sent again"
                        );
                        return Ok(base);
                    }
                    Landed::Absent => {}
                    // Not known yet: asked again after the next pause, until the deadline,
                    // from where this check got to.
                    Landed::Unknown(from) => {
                        at.low = at.low.map(|low| low.max(from));
                        retry.pause(self.delivery_timeout, cancel).await?;
                        continue;
                    }
                }
            }
            let asked = Instant::now();
            sent_under = place.as_ref().map(Place::generation);
            let answer = self.broker.produce(topic, partition, records, place.as_ref().map(Place::sequence)).await;
            self.progress
                .stats()
                .produced(asked.elapsed(), answer.as_ref().map_or_else(BrokerError::answered, |_| true));
            let e = match answer {
                Ok(base) => {
                    if retry.first_failure.is_some() {
                        tracing::info!(topic, partition, attempt = retry.attempt, "delivered after retries");
                    }
                    return Ok(base);
                }
                Err(e) => e,
            };
            if let BrokerError::Throttled { pause, .. } = e {
                // A quota: the batch was written unless the answer also carried an error.
                // Wait as the broker asked, then look for it, without counting a failure.
                tracing::debug!(topic, partition, ?pause, "throttled by Kafka");
                retry.unsure = Some(e);
                tokio::select! {
                    _ = cancel.cancelled() => return Err(retry.stop(PauseEnd::Stopped)),
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
            let mut ends_sequence = place.as_ref().is_some_and(|p| {
                e.failure() == Failure::Rejected
                    || e.code().is_some_and(ErrorCode::ends_the_sequence)
                    || (e.code() == Some(&ErrorCode::OutOfOrderSequenceNumber) && p.is_first())
            });
            if e.code() == Some(&ErrorCode::DuplicateSequenceNumber) {
                // The leader says it holds the batch, and gives no offset: believed once found.
                // A broker whose sequence moved on before it stored the batch says the same of
                // a batch it lost, and drops every resend under this producer id: the batch
                // then goes out under a new one.
                match self.landed(topic, at, records).await {
                    Landed::At(base) => {
                        tracing::info!(
                            topic,
                            partition,
                            base,
                            "a batch the leader called a duplicate is in the partition"
                        );
                        return Ok(base);
                    }
                    Landed::Absent => ends_sequence = place.is_some(),
                    Landed::Unknown(from) => at.low = at.low.map(|low| low.max(from)),
                }
            }
            let renewed = match (ends_sequence, &place) {
                (true, Some(p)) => self.renew(p.generation(), &e).await,
                _ => Ok(()),
            };
            match e.failure() {
                Failure::Rejected => return Err(Stop::Rejected(e)),
                Failure::Fatal => return Err(Stop::Run(AttemptError::KafkaFatal(e))),
                Failure::Transient => {}
            }
            self.progress.stats().produce_retried(e.reason());
            retry.unsure = Some(match renewed {
                Ok(()) => e,
                Err(failed) => failed,
            });
            retry.pause(self.delivery_timeout, cancel).await?;
        }
    }

    /// Asks for a new producer id after `why` ended the sequences of generation `seen`, and
    /// installs it (one batch does, the others find it installed). Its failure is the
    /// attempt's: the batch pauses and tries again.
    async fn renew(&self, seen: u64, why: &BrokerError) -> Result<(), BrokerError> {
        let Some(sequencer) = &self.sequencer else { return Ok(()) };
        let _one = self.renewing.lock().await;
        if sequencer.generation() != seen {
            return Ok(());
        }
        match self.broker.producer_id().await? {
            Some(producer) => {
                sequencer.renew(seen, producer);
                tracing::warn!(
                    producer_id = producer.id,
                    epoch = producer.epoch,
                    reason = why.reason(),
                    "the producer id's sequences ended; produce goes on under a new producer id, and batches sent under the old one are looked for before they are sent again"
                );
                self.progress.stats().producer_renewed();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether an earlier attempt wrote `records`; [`Landed::Absent`] when the ledger does
    /// not know the partition.
    async fn landed(&self, topic: &str, at: Target, records: &Records) -> Landed {
        if !self.look_for_lost_answers {
            tracing::warn!(
                fallback = Fallback::NoReadPermission.name(),
                topic,
                partition = at.partition,
                "lost answer not looked for: this worker may not read the topic; the batch is sent again"
            );
            self.progress.stats().lost_answer_checked("not_looked_for");
            self.progress.stats().fell_back(Fallback::NoReadPermission);
            return Landed::Absent;
        }
        let Some(low) = at.low else {
            tracing::warn!(
                fallback = Fallback::NoLedger.name(),
                topic,
                partition = at.partition,
                "lost answer not looked for: the ledger does not know the partition; the batch is sent again"
            );
            self.progress.stats().lost_answer_checked("not_looked_for");
            self.progress.stats().fell_back(Fallback::NoLedger);
            return Landed::Absent;
        };
        let landed = super::landed::find(self.broker.as_ref(), topic, at.partition, low, records).await;
        self.progress.stats().lost_answer_checked(landed.name());
        landed
    }

    /// Sends batches with at most `max_in_flight` in flight; settles their lines as they
    /// end. When a batch says the run must stop, it stops the attempt (`cancel`) and returns
    /// that error once the requests in flight have ended. On shutdown it waits at most
    /// `shutdown_timeout` for them.
    pub(super) async fn run(
        self: &Arc<Self>,
        mut batches: mpsc::Receiver<Batch>,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<(), AttemptError> {
        let mut inflight: JoinSet<Delivered> = JoinSet::new();
        let mut failure: Option<AttemptError> = None;
        let mut open = true;
        while (open || !inflight.is_empty()) && !shutdown.is_cancelled() {
            tokio::select! {
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Some(e) = self.settle(joined).await {
                        if failure.is_none() {
                            failure = Some(e);
                            cancel.cancel();
                            batches.close();
                        }
                    }
                }
                batch = batches.recv(), if open && inflight.len() < self.max_in_flight => match batch {
                    None => open = false,
                    Some(_) if failure.is_some() => {}
                    Some(batch) => {
                        let (me, cancel) = (Arc::clone(self), cancel.clone());
                        let slot = InFlight::take(Arc::clone(self.progress.stats()));
                        inflight.spawn(async move {
                            let _slot = slot;
                            me.deliver(batch, &cancel).await
                        });
                    }
                },
                _ = shutdown.cancelled() => {}
            }
        }
        // Shutdown: stop taking batches and give the requests in flight a bounded time.
        batches.close();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inflight.join_next()).await {
                Ok(Some(joined)) => {
                    if let Some(e) = self.settle(joined).await {
                        failure.get_or_insert(e);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        abandoned = inflight.len(),
                        "shutdown timeout: abandoning batches in flight (they will be resent on resume)"
                    );
                    inflight.abort_all();
                    break;
                }
            }
        }
        while batches.recv().await.is_some() {}
        failure.map_or(Ok(()), Err)
    }

    /// Settles one finished delivery; returns the error that stops the run, if any.
    async fn settle(&self, joined: Result<Delivered, tokio::task::JoinError>) -> Option<AttemptError> {
        let d = match joined {
            Ok(d) => d,
            Err(e) => return Some(AttemptError::ProduceTaskPanicked(e)),
        };
        self.progress.lock().apply(|t| t.resolve(&d.acked, LineState::Success));
        if !d.rejected.is_empty() {
            self.reject(d.rejected).await;
        }
        let (unsent, e) = d.stopped?;
        self.progress.lock().apply(|t| t.resolve(&unsent, LineState::Released));
        Some(e)
    }

    /// Lines the broker refused one by one: logged, and errors — once their dead letters
    /// are written when there are dead letters (see `crate::deadletter`), else at once.
    async fn reject(&self, rejected: Vec<(Seq, Vec<u8>, String)>) {
        let places: Vec<(String, u64)> = {
            let g = self.progress.lock();
            let t = g.tracker();
            rejected
                .iter()
                .map(|(seq, ..)| t.locate(*seq).map(|(f, l)| (f.path.clone(), l)).unwrap_or_default())
                .collect()
        };
        for ((file, line), (_, _, reason)) in places.iter().zip(&rejected) {
            tracing::warn!(file, line, reason, "record rejected");
        }
        let Some(tx) = &self.dead_letters else {
            let seqs: Vec<Seq> = rejected.iter().map(|(l, ..)| *l).collect();
            self.progress.lock().apply(|t| t.resolve(&seqs, LineState::Error));
            return;
        };
        for ((file, line), (seq, data, reason)) in places.into_iter().zip(rejected) {
            let letter = crate::deadletter::DeadLetter::with_bytes(seq, file, line, reason, data);
            if tx.send(letter).await.is_err() {
                self.progress.settle_letters(&[seq], false);
            }
        }
    }
}

/// A slot of the requests in flight, counted in the metrics while held (a delivery's task
/// holds it until it ends or is aborted).
struct InFlight(Arc<crate::progress::stats::Stats>);

impl InFlight {
    fn take(stats: Arc<crate::progress::stats::Stats>) -> Self {
        stats.batch_started();
        InFlight(stats)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.batch_ended();
    }
}

/// Where a batch goes.
#[derive(Debug, Clone, Copy)]
struct Target {
    /// Index into the router's topic list.
    topic: usize,
    partition: i32,
    /// The lowest offset it can land at, from the ledger.
    low: Option<i64>,
}

/// One batch's retries while [`Producer::send`] sends it.
struct Retry<'a> {
    topic: &'a str,
    partition: i32,
    /// Failed attempts so far.
    attempt: u32,
    /// When the attempts began to fail (for the deadline, and for the error's "since"), on
    /// tokio's clock: the crash simulation's paused clock runs the deadline too.
    first_failure: Option<(tokio::time::Instant, chrono::DateTime<chrono::Utc>)>,
    /// The last transient failure; while set, the last attempt may have been written.
    unsure: Option<BrokerError>,
    /// The seed of its pauses' spread.
    seed: u64,
}

impl Retry<'_> {
    /// One more failed attempt: stops the run past the delivery deadline, else logs and
    /// waits the next backoff pause.
    async fn pause(&mut self, delivery_timeout: Duration, cancel: &CancellationToken) -> Result<(), Stop> {
        let (since, since_utc) =
            *self.first_failure.get_or_insert_with(|| (tokio::time::Instant::now(), chrono::Utc::now()));
        self.attempt += 1;
        if since.elapsed() >= delivery_timeout {
            let since = since_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            return Err(self.stop(PauseEnd::Deadline(since)));
        }
        let (topic, partition, attempt) = (self.topic, self.partition, self.attempt);
        if attempt == 1 || attempt % 10 == 0 {
            let error = self.unsure.as_ref().map(|e| rw_core::Chain(e).to_string()).unwrap_or_default();
            tracing::warn!(topic, partition, attempt, error, "produce failed; retrying");
        }
        let pause = Backoff::DELIVERY.delay_spread(attempt, self.seed).unwrap_or(Backoff::DELIVERY.max);
        let left = delivery_timeout.saturating_sub(since.elapsed());
        tokio::select! {
            _ = cancel.cancelled() => Err(self.stop(PauseEnd::Stopped)),
            _ = tokio::time::sleep(pause.min(left)) => Ok(()),
        }
    }

    /// The run stops: past the deadline with the last failure, or stopped.
    fn stop(&mut self, end: PauseEnd) -> Stop {
        match (end, self.unsure.take()) {
            (PauseEnd::Deadline(since), Some(last)) => Stop::Run(AttemptError::KafkaUnavailable { since, last }),
            _ => Stop::Run(AttemptError::Stopped),
        }
    }
}

/// Why [`Retry::pause`] ended the retries.
enum PauseEnd {
    /// The delivery deadline passed; failing since then.
    Deadline(String),
    Stopped,
}

/// Why [`Producer::send`] stopped trying.
enum Stop {
    /// The broker refused the records for their contents.
    Rejected(BrokerError),
    /// The run must stop.
    Run(AttemptError),
}
