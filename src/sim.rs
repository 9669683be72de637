//! The crash simulation: whole workers ([`crate::worker::run_with`]: resume, read-back,
//! parser, batcher, tracker, producer, lost-answer check, flusher) run in-process against a
//! simulated broker that keeps a real partition log and a simulated status store, under
//! seeded random schedules, and are crashed and restarted until they complete. After every
//! schedule the log and the rows are checked against the source:
//! - **no line lost**: every line that is to be delivered has a record with its key and its
//!   bytes in the log;
//! - **exact counters**: each worker's final row counts every line once, by outcome;
//! - **no duplicates**: no line of ours is in the log twice, besides the exact copies another
//!   producer wrote, except lines at or after the resume point of a run whose read-back was
//!   cut (drawn below): those may be sent again, never lost.
//!
//! What a schedule draws from its seed:
//! - the source: files per worker (some empty), lines repeated byte for byte (ingest writes
//!   an event again when it retries), blank and invalid lines, and lines the broker refuses;
//! - the broker's answer to every produce: acknowledged after a random delay (so out of
//!   order), refused transiently, written with its answer lost, written and throttled (a
//!   quota's answer, which rskafka reports as an error), or refused fatally;
//! - another producer writing to the same partitions: records with our bytes under other
//!   keys, exact copies of our records, and transaction markers (control records, which take
//!   an offset and are never fetched);
//! - crashes: each worker run is killed (its future dropped, its client dead) at a random
//!   event (a produce, a fetch, a listing, a row or offsets write; before or after the write
//!   lands), or stopped by SIGTERM; then restarted from what the store holds;
//! - two workers of one job, running side by side on the same partitions, or each confined
//!   to its own (`KAFKA_PARTITIONS=own`);
//! - a live topic (a quarter of the schedules): other producers' records beside every produce
//!   call, and hundreds of them on every partition while a worker is down;
//! - each run's read-back: whole, or (a tenth each) cut by a small held cap, fetches that fail
//!   now and then, or every fetch failing until its deadline.
//!
//! Every schedule runs on a current-thread runtime with tokio's paused clock, so delays and
//! backoffs cost no time and their order follows the seed; schedules run side by side, one
//! per core. The parser runs on its own
//! thread, as in production, so batch boundaries can differ between two runs of one seed;
//! the faults are drawn per broker call, in call order. A failing seed prints the command
//! that runs it alone: `SIM_SEED=<seed> cargo test --lib sim::`. `SIM_SCHEDULES=<n>` runs
//! more schedules than the default, and `SIM_SEED_BASE=<n>` others than seeds 0, 1, ….

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::status::{OwnTables, StatusError, StatusRow, StatusStore};
use crate::testutil::{small_tuning, Held, Injected, MemoryStatus, Partitions};
use rw_core::generate::Rng;
use rw_core::resume::PartitionOffset;
use rw_core::resume::StoredRow;
use rw_core::resume::WorkerStatus;
use rw_core::{
    Broker, BrokerError, Counts, ErrorCode, Failure, Fetched, JobOptions, LineKeys, ProducerId, Record, Records,
    Sequence, HEADER,
};

/// What the simulation draws besides numbers below a bound.
trait Draw {
    /// True with probability `per_mille`/1000.
    fn chance(&mut self, per_mille: u64) -> bool;
    /// A generator of its own, seeded from this one.
    fn fork(&mut self) -> Rng;
}

impl Draw for Rng {
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// The partitions, as the broker keeps them, and what the simulation notes of them.
#[derive(Default)]
struct Log {
    parts: Partitions,
    /// Keys of ours that another producer wrote an exact copy of, and how often.
    copied: BTreeMap<Vec<u8>, usize>,
    /// Live records written so far (their keys are numbered).
    live: u64,
    /// Producer ids given out so far (idempotent produce).
    producer_ids: i64,
}

/// One record of live traffic: another producer's key, an event, the header of another
/// destination or of ours.
fn live_record(i: u64) -> Record {
    let header: &[u8] = if i % 2 == 0 { b"c1" } else { b"live" };
    Record {
        key: Some(format!("foreign-live-{i}").into_bytes()),
        value: Some(format!(r#"{{"messageId":"live-{i}","origin":{{"sourceId":"s"}}}}"#).into_bytes()),
        headers: [(HEADER.to_owned(), header.to_vec())].into(),
        timestamp: chrono::Utc::now(),
    }
}

impl Log {
    fn part(&mut self, topic: &str, partition: i32) -> &mut Vec<Option<Record>> {
        self.parts.part(topic, partition)
    }
}

/// How often the broker misbehaves, per mille of produce calls.
#[derive(Debug, Clone, Copy)]
struct Faults {
    transient: u64,
    lost: u64,
    /// Written, and answered with a quota's throttle (rskafka reports it as an error).
    throttled: u64,
    fatal: u64,
    foreign: u64,
    /// Idempotent produce: answered `UNKNOWN_PRODUCER_ID`, not written (a leader that lost
    /// the producer's state).
    forgot: u64,
    /// Idempotent produce on a leader that answers resends `DUPLICATE_SEQUENCE_NUMBER`: the
    /// sequence moved past the batch, the batch never stored, no answer (tansu killed
    /// between its two writes).
    torn: u64,
}

/// One run of one worker: its crash countdown and whether it was killed.
struct Life {
    /// Events (broker calls, store writes) left before the crash; none when negative.
    left: AtomicI64,
    crashed: CancellationToken,
    /// SIGTERM instead of a kill.
    sigterm: Option<CancellationToken>,
    /// Whether a write that meets the crash lands before it.
    lands: AtomicBool,
}

impl Life {
    /// One more event. True when this is where the process dies: nothing after it happens.
    fn dies_here(&self) -> bool {
        if self.left.fetch_sub(1, Ordering::SeqCst) != 1 {
            return self.crashed.is_cancelled();
        }
        match &self.sigterm {
            Some(term) => {
                term.cancel();
                false
            }
            None => {
                self.crashed.cancel();
                true
            }
        }
    }
}

/// The broker as one worker run sees it.
struct SimBroker {
    log: Arc<Mutex<Log>>,
    partitions: i32,
    life: Arc<Life>,
    rng: Mutex<Rng>,
    faults: Faults,
    /// A live topic: other producers' records written beside every produce call, this many.
    busy: u64,
    /// Fetches that fail (transiently), per mille; 1000: every fetch of this run.
    fetch_fails: u64,
    /// Whether it gives producer ids, and so checks sequence numbers and drops resends; how
    /// it answers a resend.
    idempotent: Option<Held>,
}

/// A dead process sends and writes nothing more.
async fn dead<T>() -> T {
    std::future::pending().await
}

fn produce_error(topic: &str, partition: i32, failure: Failure) -> BrokerError {
    let code = match failure {
        Failure::Rejected => ErrorCode::MessageTooLarge,
        Failure::Fatal => ErrorCode::TopicAuthorizationFailed,
        Failure::Transient => ErrorCode::NotEnoughReplicas,
    };
    coded_error(topic, partition, failure, code)
}

fn coded_error(topic: &str, partition: i32, failure: Failure, code: ErrorCode) -> BrokerError {
    let code = Some(code);
    BrokerError::Produce {
        topic: topic.to_owned(),
        partition,
        failure,
        code,
        answered: true,
        source: Box::new(Injected(0)),
    }
}

impl Broker for SimBroker {
    fn topics<'a>(&'a self, topics: &'a [String]) -> BoxFuture<'a, Result<Vec<i32>, BrokerError>> {
        Box::pin(async move { Ok(vec![self.partitions; topics.len()]) })
    }

    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        batch: &'a Records,
        sequence: Option<Sequence>,
    ) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async move {
            // The records as Kafka would store them.
            let records = &batch.to_kafka().collect::<Vec<_>>()[..];
            self.live(topic, partition);
            let (delay, roll, foreign) = {
                let mut rng = self.rng.lock().unwrap();
                (
                    Duration::from_millis(rng.below(20)),
                    rng.below(1000),
                    rng.chance(self.faults.foreign).then(|| rng.next_u64()),
                )
            };
            let f = self.faults;
            // A record the broker refuses for what it is (a line marked REJECT).
            let refused =
                records.iter().any(|r| r.value.as_deref().is_some_and(|v| v.windows(6).any(|w| w == b"REJECT")));
            // Another producer copies what a broker takes, not what it refuses.
            if let Some(r) = foreign.filter(|_| !refused) {
                self.write_foreign(topic, partition, records, r);
            }
            let fail = |failure| Err(produce_error(topic, partition, failure));
            let forgot = self.idempotent.is_some() && roll >= 1000 - f.forgot;
            let torn = self.idempotent == Some(Held::Duplicate) && !forgot && roll >= 1000 - f.forgot - f.torn;
            // The sequence moves past the batch, which is not stored, and no answer comes.
            let tear = |s: &Self| match sequence {
                Some(seq) => {
                    note("batch lost by a leader past its sequence");
                    s.log.lock().unwrap().parts.lose_sequenced(topic, partition, seq, records.len())
                }
                None => unreachable!("torn only with a sequence"),
            };
            let (writes, answer) = if forgot && !refused {
                let unknown = coded_error(topic, partition, Failure::Transient, ErrorCode::UnknownProducerId);
                (false, Err(unknown))
            } else if torn && !refused {
                (false, fail(Failure::Transient))
            } else if refused {
                (false, fail(Failure::Rejected))
            } else if roll < f.fatal {
                (false, fail(Failure::Fatal))
            } else if roll < f.fatal + f.transient {
                (false, fail(Failure::Transient))
            } else if roll < f.fatal + f.transient + f.lost {
                (true, fail(Failure::Transient))
            } else if roll < f.fatal + f.transient + f.lost + f.throttled {
                let pause = Duration::from_millis(1 + roll % 500);
                (true, Err(BrokerError::Throttled { topic: topic.to_owned(), partition, pause }))
            } else {
                (true, Ok(()))
            };
            let lands = self.life.dies_here().then(|| self.life.lands.load(Ordering::SeqCst));
            if torn && !refused && lands != Some(false) {
                tear(self);
            }
            if let Some(lands) = lands {
                if writes && lands {
                    let _ = self.write(topic, partition, records, sequence);
                }
                return dead().await;
            }
            let base = writes.then(|| self.write(topic, partition, records, sequence));
            tokio::time::sleep(delay).await;
            if self.life.crashed.is_cancelled() {
                return dead().await;
            }
            match (answer, base) {
                (Ok(()), Some(Ok(base))) => Ok(base),
                // The leader's sequence check refused it: nothing written.
                (Ok(()), Some(Err(code))) => Err(coded_error(topic, partition, Failure::Transient, code)),
                (Err(e), _) => Err(e),
                (Ok(()), None) => unreachable!("an acknowledged batch is written"),
            }
        })
    }

    fn producer_id(&self) -> BoxFuture<'_, Result<Option<ProducerId>, BrokerError>> {
        Box::pin(async move {
            if self.idempotent.is_none() {
                return Ok(None);
            }
            let mut log = self.log.lock().unwrap();
            log.producer_ids += 1;
            Ok(Some(ProducerId { id: log.producer_ids, epoch: 0 }))
        })
    }

    fn end_offset<'a>(&'a self, topic: &'a str, partition: i32) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async move {
            if self.life.dies_here() {
                return dead().await;
            }
            Ok(self.log.lock().unwrap().parts.end(topic, partition))
        })
    }

    fn fetch<'a>(&'a self, topic: &'a str, partition: i32, offset: i64) -> BoxFuture<'a, Result<Fetched, BrokerError>> {
        Box::pin(async move {
            if self.life.dies_here() {
                return dead().await;
            }
            if self.fetch_fails > 0 && self.rng.lock().unwrap().chance(self.fetch_fails) {
                let source = Box::new(Injected(1));
                return Err(BrokerError::ReadBack { topic: topic.to_owned(), partition, source });
            }
            Ok(self.log.lock().unwrap().parts.fetch(topic, partition, offset, 50, i64::MAX))
        })
    }
}

impl SimBroker {
    /// A live topic: [`SimBroker::busy`] records of other producers, keys of their own.
    fn live(&self, topic: &str, partition: i32) {
        if self.busy == 0 {
            return;
        }
        let mut log = self.log.lock().unwrap();
        let n = log.live;
        log.live += self.busy;
        let part = log.part(topic, partition);
        part.extend((n..n + self.busy).map(|i| Some(live_record(i))));
    }

    /// Appends `records`, as a leader checks an idempotent producer's sequence numbers when
    /// there are some; returns the base offset, or the error code of a refused sequence.
    fn write(&self, topic: &str, partition: i32, records: &[Record], seq: Option<Sequence>) -> Result<i64, ErrorCode> {
        let parts = &mut self.log.lock().unwrap().parts;
        match seq {
            Some(seq) => {
                let held = self.idempotent.expect("a sequence comes with a producer id");
                parts.append_sequenced(topic, partition, records.to_vec(), seq, held)
            }
            None => Ok(parts.append(topic, partition, records.iter().cloned())),
        }
    }

    /// Another producer: a record with the bytes and header of one of ours under another
    /// key, sometimes after a transaction marker (never a marker last: every read-back in
    /// the simulation can reach its end), and now and then an exact copy of one of ours.
    fn write_foreign(&self, topic: &str, partition: i32, ours: &[Record], r: u64) {
        let Some(copy) = ours.get(r as usize % ours.len().max(1)) else { return };
        let mut log = self.log.lock().unwrap();
        if r % 11 == 0 {
            let key = copy.key.clone().unwrap_or_default();
            *log.copied.entry(key).or_default() += 1;
            log.part(topic, partition).push(Some(copy.clone()));
            return;
        }
        let foreign = Record { key: Some(format!("foreign-{r}").into_bytes()), ..copy.clone() };
        let part = log.part(topic, partition);
        if r % 3 == 0 {
            part.push(None);
        }
        part.push(Some(foreign));
    }
}

/// How the database misbehaves for one worker run.
#[derive(Debug, Clone, Copy, Default)]
struct StoreFaults {
    /// Reads and writes that fail (a timeout, a cut connection), per mille.
    transient: u64,
    /// The database away for this long, from this long after the run starts (on the paused
    /// clock): every read and write fails meanwhile.
    outage: Option<(Duration, Duration)>,
    /// Every final row (`completed`, `failed`, a SIGTERM's) fails: the run must not end as if
    /// its row said so.
    final_fails: bool,
}

/// The status store as one worker run sees it: every write is an event that can meet the
/// crash, and every call can meet the database's faults.
struct SimStore<'a> {
    mem: &'a MemoryStatus,
    life: Arc<Life>,
    faults: StoreFaults,
    rng: Mutex<Rng>,
    started: tokio::time::Instant,
}

impl SimStore<'_> {
    /// A write that may meet the crash: then it lands before it, or not, as drawn.
    async fn event<T>(&self, write: BoxFuture<'_, Result<T, StatusError>>) -> Result<T, StatusError> {
        if self.life.dies_here() {
            if self.life.lands.load(Ordering::SeqCst) {
                let _ = write.await;
            }
            return dead().await;
        }
        write.await
    }

    /// The database's answer before the call reaches the rows: an error when it is away or
    /// a fault is drawn.
    fn fault(&self, is_final: bool) -> Result<(), StatusError> {
        let away = self.faults.outage.is_some_and(|(from, lasts)| {
            let now = self.started.elapsed();
            now >= from && now < from + lasts
        });
        let failed =
            away || (is_final && self.faults.final_fails) || self.rng.lock().unwrap().chance(self.faults.transient);
        match failed {
            true => Err(StatusError::QueryTimeout { url: "sim".into(), after: Duration::from_secs(1) }),
            false => Ok(()),
        }
    }
}

impl StatusStore for SimStore<'_> {
    fn prepare<'a>(
        &'a self,
        json: &'a str,
        assignment: &'a rw_core::resume::Assignment,
    ) -> BoxFuture<'a, Result<OwnTables, StatusError>> {
        Box::pin(async move {
            self.fault(false)?;
            self.mem.prepare(json, assignment).await
        })
    }
    fn read_row(&self) -> BoxFuture<'_, Result<Option<StoredRow>, StatusError>> {
        Box::pin(async move {
            self.fault(false)?;
            self.mem.read_row().await
        })
    }
    fn write<'a>(
        &'a self,
        row: &'a StatusRow,
        offsets: Option<&'a [PartitionOffset]>,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        let is_final = row.status != WorkerStatus::Running;
        Box::pin(self.event(Box::pin(async move {
            self.fault(is_final)?;
            self.mem.write(row, offsets).await
        })))
    }
    fn read_offsets(&self) -> BoxFuture<'_, Result<Vec<PartitionOffset>, StatusError>> {
        Box::pin(async move {
            self.fault(false)?;
            self.mem.read_offsets().await
        })
    }
    fn write_offsets<'a>(&'a self, offsets: &'a [PartitionOffset]) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(self.event(Box::pin(async move {
            self.fault(false)?;
            self.mem.write_offsets(offsets).await
        })))
    }
}

/// One source line and what must become of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Delivered,
    Error,
    Skipped,
}

/// A schedule's source: the files (name, bytes), and each file's lines' fates.
struct Source {
    files: Vec<(String, Vec<u8>)>,
    fates: Vec<Vec<Fate>>,
}

fn source(rng: &mut Rng, n_files: usize) -> Source {
    let mut files = Vec::new();
    let mut fates = Vec::new();
    // Earlier lines, to repeat byte for byte (also across files and workers).
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for f in 0..n_files {
        let n = if rng.chance(150) { 0 } else { rng.below(400) };
        let (mut bytes, mut fate) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (line, f8) = match rng.below(100) {
                0..=29 if !seen.is_empty() => (seen[rng.below(seen.len() as u64) as usize].clone(), Fate::Delivered),
                30..=32 => (b"   ".to_vec(), Fate::Skipped),
                33..=34 => (b"{not json".to_vec(), Fate::Error),
                35 => (format!(r#"{{"messageId":"r{f}-{i}","REJECT":1}}"#).into_bytes(), Fate::Error),
                _ => {
                    let line =
                        format!(r#"{{"messageId":"m{}","origin":{{"sourceId":"s"}},"n":{i}}}"#, rng.below(1 << 20));
                    seen.push(line.clone().into_bytes());
                    (line.into_bytes(), Fate::Delivered)
                }
            };
            bytes.extend_from_slice(&line);
            bytes.push(b'\n');
            fate.push(f8);
        }
        files.push((format!("f{f}.ndjson"), bytes));
        fates.push(fate);
    }
    Source { files, fates }
}

/// How the runs of all schedules ended, for the summary line.
static STATS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Counts one more of `what` in [`STATS`].
fn note(what: &'static str) {
    *STATS.lock().unwrap().entry(what).or_default() += 1;
}

/// What one schedule found wrong.
type Findings = Vec<String>;

/// Runs one worker from its first run until a run completes: each run but the last is
/// crashed or stopped at a random event. Returns the final row's counts.
async fn worker_lifecycle(
    cfg: Config,
    mem: &MemoryStatus,
    log: Arc<Mutex<Log>>,
    mut rng: Rng,
    busy: u64,
    idempotent: Option<Held>,
) -> Result<Lifecycle, String> {
    let crashes = rng.below(5);
    let mut fallbacks = Vec::new();
    for run in 0..=crashes + 8 {
        let last = run >= crashes;
        // The read-back of this run, if it resumes: whole, cut by the held cap, or failed by
        // Kafka (some fetches, or all of them until the deadline).
        let mut cfg = cfg.clone();
        // (what it is, fetches that fail per mille)
        let (degraded, fetch_fails) = match rng.below(10) {
            0 => {
                cfg.tuning.readback.max_records = 1 + rng.below(30);
                (Some("read-back capped"), 0)
            }
            1 => (Some("read-back failing"), 300),
            2 => (Some("read-back failed"), 1000),
            _ => (None, 0),
        };
        cfg.tuning.readback.timeout = Duration::from_secs(1 + rng.below(20));
        let stored = mem.stored.lock().unwrap().clone();
        if let (Some(why), Some(row)) = (degraded, stored.filter(|r| r.status != WorkerStatus::Pending)) {
            // Lines from the row's resume point on may be sent again by this run.
            let file = row.snapshot.current_file.as_deref().and_then(|p| cfg.files.iter().position(|f| f.path == p));
            fallbacks.push((file.unwrap_or(0), if file.is_some() { row.snapshot.current_line } else { 0 }));
            note(why);
        }
        if busy > 0 && run > 0 {
            // The back-off: other producers keep writing while the worker is down.
            let mut live = log.lock().unwrap();
            for partition in 0..2 {
                let n = live.live;
                live.live += 200 * busy;
                live.part("t", partition).extend((n..n + 200 * busy).map(|i| Some(live_record(i))));
            }
        }
        let life = Arc::new(Life {
            left: AtomicI64::new(if last { -1 } else { 1 + rng.below(60) as i64 }),
            crashed: CancellationToken::new(),
            sigterm: (!last && rng.chance(200)).then(CancellationToken::new),
            lands: AtomicBool::new(rng.chance(500)),
        });
        let faults = if last {
            Faults { transient: 30, lost: 30, throttled: 20, fatal: 0, foreign: 50, forgot: 10, torn: 10 }
        } else {
            Faults { transient: 100, lost: 100, throttled: 50, fatal: 15, foreign: 100, forgot: 20, torn: 20 }
        };
        let broker = Arc::new(SimBroker {
            log: Arc::clone(&log),
            partitions: 2,
            life: Arc::clone(&life),
            rng: Mutex::new(rng.fork()),
            faults,
            busy,
            fetch_fails,
            idempotent,
        });
        // The database: now and then a failed call; in a run of five an outage of up to ten
        // minutes; in a crashed run of ten, every final row refused (the run must then stop
        // without claiming it ended, and the next one write it).
        let store_faults = StoreFaults {
            transient: if last { 10 } else { 40 },
            outage: rng
                .chance(200)
                .then(|| (Duration::from_millis(rng.below(5_000)), Duration::from_secs(rng.below(600)))),
            final_fails: !last && rng.chance(100),
        };
        if store_faults.final_fails {
            note("final row refused");
        }
        let store = SimStore {
            mem,
            life: Arc::clone(&life),
            faults: store_faults,
            rng: Mutex::new(rng.fork()),
            started: tokio::time::Instant::now(),
        };
        let shutdown = life.sigterm.clone().unwrap_or_default();
        let ran = tokio::select! {
            r = crate::worker::run_with(&cfg, &store, Some(broker), shutdown) => Some(r),
            _ = life.crashed.cancelled() => None,
        };
        let end = match &ran {
            Some(Ok(s)) => s.status.as_str(),
            Some(Err(_)) => "stopped",
            None => "killed",
        };
        note(end);
        match ran {
            Some(Ok(s)) if s.status == WorkerStatus::Completed => {
                // What the admin reads is the stored row, not what the run says of itself.
                let Some(row) = mem.stored.lock().unwrap().clone() else {
                    return Err(format!("worker {}: a completed run left no row", cfg.worker_index));
                };
                if row.status != WorkerStatus::Completed || row.snapshot != s.snapshot {
                    return Err(format!(
                        "ROW: worker {} ended completed ({:?}) but its row says {} ({:?})",
                        cfg.worker_index, s.snapshot, row.status, row.snapshot
                    ));
                }
                return Ok(Lifecycle { row: row.snapshot, fallbacks });
            }
            Some(Ok(_)) | Some(Err(_)) | None => {}
        }
    }
    Err(format!("worker {} did not complete after {} runs", cfg.worker_index, crashes + 9))
}

/// How one worker's runs ended: its final row as stored, and the resume points of the runs
/// whose read-back was cut or failed (position in files.json, line), from which it may send
/// lines again.
struct Lifecycle {
    row: rw_core::resume::Snapshot,
    fallbacks: Vec<(usize, u64)>,
}

/// Runs schedule `seed`; returns what it found wrong.
fn schedule(seed: u64) -> Findings {
    let mut rng = Rng::new(seed);
    let workers = 1 + rng.below(2) as u32;
    let confined = rng.chance(500);
    // A live topic in a quarter of the schedules: other producers write beside every call
    // of the worker's, and hundreds of records while it is down.
    let busy = if rng.chance(250) { 1 + rng.below(10) } else { 0 };
    // Idempotent produce in half the schedules: a producer id per run, and the broker checks
    // sequence numbers and drops resends; half of those answer a resend without its offset
    // (`DUPLICATE_SEQUENCE_NUMBER`), and now and then of a batch they lost.
    let idempotent = rng.chance(500).then(|| if rng.chance(500) { Held::Duplicate } else { Held::Offset });
    let dir = tempfile::tempdir().unwrap();
    let n_files = 1 + rng.below(4) as usize;
    let src = source(&mut rng, n_files);
    let files: Vec<(&str, &[u8])> = src.files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let batch_size = 1 + rng.below(40) as usize;
    let tuning = crate::config::Tuning {
        shutdown_timeout: Duration::from_millis(50),
        files_in_flight: 1 + rng.below(3) as usize,
        ..small_tuning(1 + rng.below(4) as usize)
    };
    let base = crate::testutil::config(dir.path(), &files, JobOptions { batch_size, ..Default::default() }, tuning);
    let log = Arc::new(Mutex::new(Log::default()));
    let stores: Vec<MemoryStatus> = (0..workers).map(|_| MemoryStatus::default()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let results = rt.block_on(futures::future::join_all((0..workers).map(|w| {
        // Confined or not, drawn per schedule: two workers share the partitions, or each has its own.
        let spread = if confined { rw_core::Spread::Own { worker: w, workers } } else { rw_core::Spread::All };
        let cfg = Config { worker_index: w, total_workers: workers, spread, ..base.clone() };
        worker_lifecycle(cfg, &stores[w as usize], Arc::clone(&log), rng.fork(), busy, idempotent)
    })));
    drop(rt);
    let log = log.lock().unwrap();
    check(&base, &src, workers, &log, &results)
}

/// The promises, checked against the source.
fn check(cfg: &Config, src: &Source, workers: u32, log: &Log, results: &[Result<Lifecycle, String>]) -> Findings {
    let mut findings = Vec::new();
    let keys = LineKeys::for_job(&cfg.job_id);
    // Our records in the log, by key, with their bytes.
    let mut in_log: BTreeMap<Vec<u8>, Vec<&Record>> = BTreeMap::new();
    for r in log.parts.records() {
        if let Some(k) = r.key.as_ref().filter(|k| !k.starts_with(b"foreign-")) {
            in_log.entry(k.clone()).or_default().push(r);
        }
    }
    // Independently of the keys: every value is in the log at least as often as the source
    // has it to deliver, over all workers.
    let mut values: BTreeMap<&[u8], i64> = BTreeMap::new();
    for recs in in_log.values() {
        for r in recs {
            *values.entry(r.value.as_deref().unwrap_or_default()).or_default() += 1;
        }
    }
    for (fates, (_, bytes)) in src.fates.iter().zip(&src.files) {
        for (fate, line) in fates.iter().zip(bytes.split(|&b| b == b'\n')) {
            if *fate == Fate::Delivered {
                *values.entry(line).or_default() -= 1;
            }
        }
    }
    for (value, n) in values.iter().filter(|(_, &n)| n < 0) {
        findings.push(format!("LOST: {} of the copies of {}", -n, String::from_utf8_lossy(value)));
    }
    // Every record of ours is a delivered line's, under that line's key, with its bytes: none
    // for a skipped or an error line, none of our keys on other bytes.
    let mut delivered: BTreeMap<Vec<u8>, &[u8]> = BTreeMap::new();
    for (i, (fates, (_, bytes))) in src.fates.iter().zip(&src.files).enumerate() {
        let file_keys = keys.file(i, &cfg.files[i].path);
        for (no, (fate, line)) in fates.iter().zip(bytes.split(|&b| b == b'\n')).enumerate() {
            if *fate == Fate::Delivered {
                delivered.insert(file_keys.key(no as u64 + 1).to_vec(), line);
            }
        }
    }
    for (key, recs) in &in_log {
        match delivered.get(key) {
            None => findings
                .push(format!("EXTRA: a record under key {} of no delivered line", String::from_utf8_lossy(key))),
            Some(line) if recs.iter().any(|r| r.value.as_deref() != Some(*line)) => {
                findings.push(format!("EXTRA: key {} on other bytes than its line's", String::from_utf8_lossy(key)))
            }
            Some(_) => {}
        }
    }
    for w in 0..workers {
        let mut want = Counts::default();
        let (mut files, mut bytes_assigned) = (0u32, 0u64);
        // A line at or after the resume point of a run whose read-back was cut may be sent
        // again: at least once there, never lost.
        let fallbacks = results[w as usize].as_ref().map(|l| l.fallbacks.clone()).unwrap_or_default();
        let excused = |i: usize, line: u64| fallbacks.iter().any(|&(f, l)| (f, l) <= (i, line));
        for i in crate::config::assigned_positions(src.files.len(), w, workers) {
            let path = &cfg.files[i].path;
            files += 1;
            bytes_assigned += cfg.files[i].size;
            let file_keys = keys.file(i, path);
            let lines = src.files[i].1.split(|&b| b == b'\n');
            for (no, (fate, bytes)) in src.fates[i].iter().zip(lines).enumerate() {
                let line = no as u64 + 1;
                want.total += 1;
                match fate {
                    Fate::Skipped => want.skipped += 1,
                    Fate::Error => want.error += 1,
                    Fate::Delivered => {
                        want.success += 1;
                        let found = in_log.get(&file_keys.key(line)[..]).map(Vec::as_slice).unwrap_or_default();
                        let exact = found
                            .iter()
                            .filter(|r| {
                                r.value.as_deref() == Some(bytes) && r.headers.get(HEADER).is_some_and(|h| h == b"c1")
                            })
                            .count();
                        // Another producer's exact copies stand for the line, and are not ours.
                        let copies = log.copied.get(&file_keys.key(line)[..]).copied().unwrap_or(0);
                        match exact {
                            0 => findings.push(format!("LOST: worker {w} {path} line {line}")),
                            n if n > 1 + copies && !excused(i, line) => findings.push(format!(
                                "DUPLICATE: worker {w} {path} line {line} is in the log {n} times, {copies} of them copies"
                            )),
                            _ => {}
                        }
                    }
                }
            }
        }
        match &results[w as usize] {
            Err(e) => findings.push(e.clone()),
            Ok(got) if got.row.counts != want => {
                findings.push(format!("COUNTERS: worker {w} row {:?}, source {want:?}", got.row.counts))
            }
            Ok(got) if (got.row.processed_files, got.row.processed_bytes) != (files, bytes_assigned) => {
                findings.push(format!(
                    "PROGRESS: worker {w} row has {} files and {} bytes processed, of {files} and {bytes_assigned}",
                    got.row.processed_files, got.row.processed_bytes
                ))
            }
            Ok(_) => {}
        }
    }
    findings
}

/// How many schedules a plain `cargo test` runs.
const SCHEDULES: u64 = 3_000;

#[test]
fn schedules_lose_nothing_duplicate_nothing_and_count_exactly() {
    let env = |name: &str| {
        std::env::var(name).ok().map(|s| s.parse::<u64>().unwrap_or_else(|_| panic!("{name} is a number")))
    };
    let seeds: Vec<u64> = match env("SIM_SEED") {
        Some(seed) => vec![seed],
        // The same schedules on every run; SIM_SEED_BASE explores others.
        None => {
            let base = env("SIM_SEED_BASE").unwrap_or(0);
            (base..base + env("SIM_SCHEDULES").unwrap_or(SCHEDULES)).collect()
        }
    };
    if env("SIM_VERBOSE").is_some() {
        // The workers' logs too (RUST_LOG picks them).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    // The schedules are independent (each seeds its own generator and runtime): they run on
    // every core, each thread taking the next seed.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(seeds.len());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let began = std::time::Instant::now();
                    let findings = schedule(seed);
                    if env("SIM_VERBOSE").is_some() {
                        eprintln!("seed {seed}: {:?}", began.elapsed());
                    }
                    if !findings.is_empty() {
                        eprintln!("seed {seed}: {} findings, the first: {}", findings.len(), findings[0]);
                        eprintln!("  replay: SIM_SEED={seed} cargo test --lib sim::");
                        failed.lock().unwrap().push(seed);
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap();
    failed.sort_unstable();
    eprintln!("{} schedules; what the runs met and how they ended: {:?}", seeds.len(), STATS.lock().unwrap());
    assert!(failed.is_empty(), "{} of {} schedules failed: {failed:?}", failed.len(), seeds.len());
}
