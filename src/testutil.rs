//! Fakes for the in-process tests: a [`Broker`] that can acknowledge out of order, fail chosen
//! batches, be slow, and records what it got; a [`StatusStore`] that keeps the row in memory
//! and every write made to it; and small builders for a job on a temporary disk.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::{Config, Tuning};
use crate::progress::Progress;
use crate::status::{OwnTables, StatusError, StatusRow, StatusStore};
use rw_core::resume::PartitionOffset;
use rw_core::resume::StoredRow;
use rw_core::{Broker, BrokerError, ErrorCode, Failure, Fetched, FileEntry, JobOptions, Record, Records, Sequence};

/// What the fake does with one produce call: acknowledge, or fail as the class says, after
/// the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Ack(Duration),
    Fail(Failure, Duration),
    /// Written to the partition, but the answer is lost: a transient failure.
    Lost(Duration),
}

/// One produce call as the fake saw it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub values: Vec<Vec<u8>>,
    pub acked: bool,
    /// Lines of the run settled in order when the call arrived (the watermark as a count over
    /// all files, with [`FakeBroker::watch`]).
    pub watermark: Option<u64>,
    /// Files open (read, or waiting for their lines to settle) when the call arrived.
    pub open_files: Option<usize>,
}

type Rule = dyn Fn(usize, &[Record]) -> Answer + Send + Sync;

/// A scripted broker. `rule(n, records)` decides call `n` (0-based).
pub(crate) struct FakeBroker {
    partitions: i32,
    rule: Box<Rule>,
    calls: Mutex<Vec<Call>>,
    next: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    progress: OnceLock<Arc<Progress>>,
    /// What the partitions hold: every acknowledged record, in offset order (shared by the
    /// fakes of one "cluster", see [`FakeBroker::sharing`]).
    log: Arc<Mutex<Partitions>>,
    /// The last stable offset of every partition, as another producer's open transaction
    /// sets it: fetches return nothing from there on, below the high watermark.
    last_stable: std::sync::atomic::AtomicI64,
    /// Partitions whose fetches fail (a broker that cannot serve them).
    failing_fetches: Mutex<Vec<(String, i32)>>,
}

/// The partitions' logs as a fake cluster keeps them, shared by [`FakeBroker`] and the crash
/// simulation's broker: records per (topic, partition), the offset being the position;
/// `None` is a control record (a transaction marker), which takes an offset and is never
/// fetched.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    parts: BTreeMap<(String, i32), Vec<Option<Record>>>,
    /// What a leader keeps of each idempotent producer per partition: its last
    /// [`rw_core::WINDOW`] batches (first sequence number, records, base offset).
    producers: BTreeMap<(String, i32, i64), std::collections::VecDeque<HeldBatch>>,
}

/// A batch a leader remembers of an idempotent producer: its first sequence number, its
/// records, its base offset (`-1`: never stored).
type HeldBatch = (i32, usize, i64);

/// How a leader answers a resend of a batch it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// With the batch's offset, as Kafka does.
    Offset,
    /// `DUPLICATE_SEQUENCE_NUMBER`, without an offset, as tansu does.
    Duplicate,
}

impl Partitions {
    /// One partition's log.
    pub(crate) fn part(&mut self, topic: &str, partition: i32) -> &mut Vec<Option<Record>> {
        self.parts.entry((topic.to_owned(), partition)).or_default()
    }

    /// Appends `records`; returns the offset of the first.
    pub(crate) fn append(&mut self, topic: &str, partition: i32, records: impl IntoIterator<Item = Record>) -> i64 {
        let part = self.part(topic, partition);
        let base = part.len() as i64;
        part.extend(records.into_iter().map(Some));
        base
    }

    /// Appends `records` as a leader does for an idempotent producer: a batch it holds
    /// already (among the producer's last five here) is not written again, and is answered
    /// as `held` says; one that does not start right after the producer's last batch (at 0
    /// for a producer new here) is refused with `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    pub(crate) fn append_sequenced(
        &mut self,
        topic: &str,
        partition: i32,
        records: Vec<Record>,
        seq: Sequence,
        held: Held,
    ) -> Result<i64, ErrorCode> {
        let n = records.len();
        match self.take_sequence(topic, partition, seq, n)? {
            Some(base) if held == Held::Duplicate || base < 0 => Err(ErrorCode::DuplicateSequenceNumber),
            Some(base) => Ok(base),
            None => {
                let base = self.append(topic, partition, records);
                self.hold(topic, partition, seq, n, base);
                Ok(base)
            }
        }
    }

    /// A leader that moves the producer's sequence past a batch of `n` records and never
    /// stores it (tansu, killed between its sequence write and its batch write): a resend is
    /// answered `DUPLICATE_SEQUENCE_NUMBER`, and the batch is not in the partition.
    pub(crate) fn lose_sequenced(&mut self, topic: &str, partition: i32, seq: Sequence, n: usize) {
        if let Ok(None) = self.take_sequence(topic, partition, seq, n) {
            self.hold(topic, partition, seq, n, -1);
        }
    }

    /// The sequence check: `Some(base)` for a batch the producer's window holds (`-1` when it
    /// was never stored), `None` for the next one, out of order otherwise.
    fn take_sequence(
        &mut self,
        topic: &str,
        partition: i32,
        seq: Sequence,
        n: usize,
    ) -> Result<Option<i64>, ErrorCode> {
        let held = self.producers.entry((topic.to_owned(), partition, seq.producer.id)).or_default();
        if let Some(&(_, _, base)) = held.iter().find(|(first, len, _)| *first == seq.base && *len == n) {
            return Ok(Some(base));
        }
        // Sequence numbers wrap from i32::MAX to 0.
        let expected = held.back().map_or(0, |&(first, len, _)| ((first as i64 + len as i64) % (1i64 << 31)) as i32);
        if seq.base != expected {
            return Err(ErrorCode::OutOfOrderSequenceNumber);
        }
        Ok(None)
    }

    /// Remembers the batch of `n` records at `seq` (stored at `base`, `-1` if never) as the
    /// producer's last, keeping its last [`rw_core::WINDOW`] batches.
    fn hold(&mut self, topic: &str, partition: i32, seq: Sequence, n: usize, base: i64) {
        let held = self.producers.get_mut(&(topic.to_owned(), partition, seq.producer.id)).expect("taken");
        held.push_back((seq.base, n, base));
        if held.len() > rw_core::WINDOW {
            held.pop_front();
        }
    }

    /// Where the partition ends (its high watermark).
    pub(crate) fn end(&self, topic: &str, partition: i32) -> i64 {
        self.parts.get(&(topic.to_owned(), partition)).map_or(0, |r| r.len() as i64)
    }

    /// A fetch from `offset`: at most `page` offsets scanned (a broker's byte-limited fetch),
    /// none at or past `stable` (another producer's open transaction); markers skipped.
    pub(crate) fn fetch(&self, topic: &str, partition: i32, offset: i64, page: usize, stable: i64) -> Fetched {
        let records = self.parts.get(&(topic.to_owned(), partition)).map(Vec::as_slice).unwrap_or_default();
        let stable = (stable.max(0) as usize).min(records.len());
        let from = (offset.max(0) as usize).min(stable);
        let scanned = &records[from..stable.min(from + page)];
        let found = scanned.iter().enumerate().filter_map(|(i, r)| r.clone().map(|r| ((from + i) as i64, r)));
        let next = if scanned.is_empty() { offset } else { (from + scanned.len()) as i64 };
        Fetched { records: found.collect(), high_watermark: records.len() as i64, next }
    }

    /// Every record of every partition, in order.
    pub(crate) fn records(&self) -> impl Iterator<Item = &Record> {
        self.parts.values().flatten().flatten()
    }

    /// The values in the partitions of `topic`, over all partitions.
    pub(crate) fn values(&self, topic: &str) -> Vec<Vec<u8>> {
        let of_topic = self.parts.iter().filter(|((t, _), _)| t == topic);
        of_topic.flat_map(|(_, r)| r.iter().flatten().map(|r| r.value.clone().unwrap_or_default())).collect()
    }
}

/// A simple failure, standing in for a broker's.
#[derive(Debug, thiserror::Error)]
#[error("injected failure of call {0}")]
pub(crate) struct Injected(pub usize);

impl FakeBroker {
    pub(crate) fn new(partitions: i32, rule: impl Fn(usize, &[Record]) -> Answer + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            partitions,
            rule: Box::new(rule),
            calls: Mutex::default(),
            next: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            progress: OnceLock::new(),
            log: Arc::default(),
            last_stable: std::sync::atomic::AtomicI64::new(i64::MAX),
            failing_fetches: Mutex::default(),
        })
    }

    /// A new fake (a restarted worker's) over the same partitions as this one.
    pub(crate) fn sharing(&self, rule: impl Fn(usize, &[Record]) -> Answer + Send + Sync + 'static) -> Arc<Self> {
        let fake = Self::new(self.partitions, rule);
        Arc::new(FakeBroker { log: Arc::clone(&self.log), ..Arc::into_inner(fake).expect("new") })
    }

    /// Appends records written by someone else (another producer).
    pub(crate) fn append(&self, topic: &str, partition: i32, records: Vec<Record>) {
        self.log.lock().unwrap().append(topic, partition, records);
    }

    /// Appends a transaction marker (a control record: it takes an offset, no fetch returns it).
    pub(crate) fn append_marker(&self, topic: &str, partition: i32) {
        self.log.lock().unwrap().part(topic, partition).push(None);
    }

    /// Another producer's transaction, open from `offset` on: reads stop there.
    pub(crate) fn open_transaction_at(&self, offset: i64) {
        self.last_stable.store(offset, Ordering::SeqCst);
    }

    /// From now on every fetch of this partition fails (transiently).
    pub(crate) fn fail_fetches(&self, topic: &str, partition: i32) {
        self.failing_fetches.lock().unwrap().push((topic.to_owned(), partition));
    }

    /// The values in the partitions of `topic`, over all partitions.
    pub(crate) fn stored_values(&self, topic: &str) -> Vec<Vec<u8>> {
        self.log.lock().unwrap().values(topic)
    }

    /// Acknowledges everything at once.
    pub(crate) fn acking() -> Arc<Self> {
        Self::new(3, |_, _| Answer::Ack(Duration::ZERO))
    }

    /// Records the watermark seen by each call.
    pub(crate) fn watch(&self, progress: Arc<Progress>) {
        let _ = self.progress.set(progress);
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Values of the acknowledged records, each as often as it was acknowledged.
    pub(crate) fn delivered(&self) -> Vec<Vec<u8>> {
        self.calls().into_iter().filter(|c| c.acked).flat_map(|c| c.values).collect()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Broker for FakeBroker {
    fn topics<'a>(&'a self, topics: &'a [String]) -> BoxFuture<'a, Result<Vec<i32>, BrokerError>> {
        Box::pin(async move { Ok(vec![self.partitions; topics.len()]) })
    }

    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        batch: &'a Records,
        _: Option<Sequence>,
    ) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async move {
            // The records as Kafka would store them.
            let records = &batch.to_kafka().collect::<Vec<_>>()[..];
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let (watermark, open_files) = match self.progress.get() {
                Some(p) => {
                    let g = p.lock();
                    (Some(g.tracker().base()), Some(g.tracker().open_files()))
                }
                None => (None, None),
            };
            let answer = (self.rule)(n, records);
            let (delay, failure) = match answer {
                Answer::Ack(d) => (d, None),
                Answer::Fail(f, d) => (d, Some(f)),
                Answer::Lost(d) => (d, Some(Failure::Transient)),
            };
            if matches!(answer, Answer::Lost(_)) {
                self.append(topic, partition, records.to_vec());
            }
            let ok = failure.is_none();
            tokio::time::sleep(delay).await;
            let values = records.iter().map(|r| r.value.clone().unwrap_or_default()).collect();
            let call = Call { values, acked: ok, watermark, open_files };
            self.calls.lock().unwrap().push(call);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            match failure {
                None => Ok(self.log.lock().unwrap().append(topic, partition, records.iter().cloned())),
                Some(failure) => {
                    let code = Some(if failure == Failure::Rejected {
                        ErrorCode::MessageTooLarge
                    } else {
                        ErrorCode::Other("INJECTED".into())
                    });
                    let source = Box::new(Injected(n));
                    Err(BrokerError::Produce {
                        topic: topic.to_owned(),
                        partition,
                        failure,
                        code,
                        answered: true,
                        source,
                    })
                }
            }
        })
    }

    fn end_offset<'a>(&'a self, topic: &'a str, partition: i32) -> BoxFuture<'a, Result<i64, BrokerError>> {
        Box::pin(async move { Ok(self.log.lock().unwrap().end(topic, partition)) })
    }

    fn fetch<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
    ) -> BoxFuture<'a, Result<rw_core::Fetched, BrokerError>> {
        Box::pin(async move {
            if self.failing_fetches.lock().unwrap().iter().any(|(t, p)| t == topic && *p == partition) {
                let source = Box::new(Injected(usize::MAX));
                return Err(BrokerError::ReadBack { topic: topic.to_owned(), partition, source });
            }
            // Pages of at most 100 records, like a broker's byte-limited fetch.
            let stable = self.last_stable.load(Ordering::SeqCst);
            Ok(self.log.lock().unwrap().fetch(topic, partition, offset, 100, stable))
        })
    }
}

/// The row in memory: reads see the last write, and every write is kept. Like the
/// PostgreSQL store, it refuses writes to a `completed` row, writes that lower the counters,
/// and every write once `taken_over` is set (another run claimed the index); and a run
/// whose assignment differs from the one stored by the run it resumes.
#[derive(Debug, Default)]
pub(crate) struct MemoryStatus {
    pub stored: Mutex<Option<StoredRow>>,
    /// The assignment the last run claimed the row with.
    pub assignment: Mutex<Option<rw_core::resume::Assignment>>,
    pub offsets: Mutex<Vec<PartitionOffset>>,
    pub writes: Mutex<Vec<StatusRow>>,
    pub taken_over: std::sync::atomic::AtomicBool,
}

impl MemoryStatus {
    pub(crate) fn with_row(row: StoredRow) -> Self {
        Self { stored: Mutex::new(Some(row)), ..Default::default() }
    }

    pub(crate) fn last(&self) -> StatusRow {
        self.writes.lock().unwrap().last().cloned().expect("a row was written")
    }
}

impl StatusStore for MemoryStatus {
    fn prepare<'a>(
        &'a self,
        _: &'a str,
        assignment: &'a rw_core::resume::Assignment,
    ) -> BoxFuture<'a, Result<OwnTables, StatusError>> {
        Box::pin(async move {
            let started = self
                .stored
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|r| r.status != rw_core::resume::WorkerStatus::Pending);
            let mut stored = self.assignment.lock().unwrap();
            if let Some(changed) = stored.as_ref().filter(|_| started).and_then(|b| assignment.changed_from(b)) {
                return Err(changed.into());
            }
            *stored = Some(assignment.clone());
            Ok(OwnTables::Present)
        })
    }
    fn read_row(&self) -> BoxFuture<'_, Result<Option<StoredRow>, StatusError>> {
        Box::pin(async move { Ok(self.stored.lock().unwrap().clone()) })
    }
    fn write<'a>(
        &'a self,
        row: &'a StatusRow,
        offsets: Option<&'a [PartitionOffset]>,
    ) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move {
            let (job, index) = ("job".to_owned(), 0);
            if self.taken_over.load(Ordering::SeqCst) {
                return Err(StatusError::TakenOver { job, index });
            }
            {
                let mut stored = self.stored.lock().unwrap();
                if let Some(s) = stored.as_ref() {
                    let behind = row.snapshot.counts.total < s.snapshot.counts.total
                        || row.snapshot.processed_files < s.snapshot.processed_files;
                    if s.status == rw_core::resume::WorkerStatus::Completed || behind {
                        return Err(StatusError::RowAhead { job, index, status: s.status });
                    }
                }
                *stored = Some(StoredRow { status: row.status, snapshot: row.snapshot.clone() });
                self.writes.lock().unwrap().push(row.clone());
            }
            match offsets {
                Some(offsets) => self.write_offsets(offsets).await,
                None => Ok(()),
            }
        })
    }
    fn read_offsets(&self) -> BoxFuture<'_, Result<Vec<PartitionOffset>, StatusError>> {
        Box::pin(async move { Ok(self.offsets.lock().unwrap().clone()) })
    }
    fn write_offsets<'a>(&'a self, offsets: &'a [PartitionOffset]) -> BoxFuture<'a, Result<(), StatusError>> {
        Box::pin(async move {
            if self.taken_over.load(Ordering::SeqCst) {
                return Err(StatusError::TakenOver { job: "job".into(), index: 0 });
            }
            let mut stored = self.offsets.lock().unwrap();
            for o in offsets {
                match stored.iter_mut().find(|s| s.topic == o.topic && s.partition == o.partition) {
                    Some(s) => s.offset = o.offset,
                    None => stored.push(o.clone()),
                }
            }
            Ok(())
        })
    }
}

/// `n` valid lines `{"messageId":"<tag>-<i>","origin":{"sourceId":"s"}}`, newline-terminated.
pub(crate) fn lines(tag: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(format!(r#"{{"messageId":"{tag}-{i}","origin":{{"sourceId":"s"}}}}"#).as_bytes());
        out.push(b'\n');
    }
    out
}

/// Counts each value: how often it was delivered.
pub(crate) fn multiset(values: &[Vec<u8>]) -> BTreeMap<Vec<u8>, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v.clone()).or_default() += 1;
    }
    m
}

/// Small bounds, so that the tests reach them with few lines.
pub(crate) fn small_tuning(max_in_flight: usize) -> Tuning {
    Tuning { read_chunk_bytes: 64 * 1024, max_in_flight, shutdown_timeout: Duration::from_secs(5), ..Tuning::default() }
}

/// A job over `files` (written to `dir`) with `connection_ids`, one worker.
pub(crate) fn config(dir: &std::path::Path, files: &[(&str, &[u8])], job: JobOptions, tuning: Tuning) -> Config {
    let files = files
        .iter()
        .map(|(name, data)| {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            FileEntry { path: p.display().to_string(), size: data.len() as u64 }
        })
        .collect::<Vec<_>>();
    let job = JobOptions { connection_ids: vec!["c1".into()], ..job };
    Config {
        start: crate::config::start_at(&files, &job).expect("start_file is in the files"),
        job_id: "job".into(),
        worker_index: 0,
        total_workers: 1,
        database: rw_core::DbUrl::parse("postgres://unused").expect("a valid URL"),
        kafka: None,
        topic: "t".into(),
        spread: rw_core::Spread::Own { worker: 0, workers: 1 },
        repository: None,
        files,
        job,
        tuning,
        dead_letter: None,
        metrics_addr: None,
        metrics_linger: Duration::ZERO,
    }
}

/// The text of `file` (a path under `src/`) in the rskafka this crate is built with: the
/// version in Cargo.lock, in cargo's registry (`CARGO_HOME`). For the tests that check that
/// the texts the worker matches in rskafka's events and errors are still the ones it emits.
pub(crate) fn rskafka_source(file: &str) -> String {
    let lock = include_str!("../Cargo.lock");
    let at = lock.find("name = \"rskafka\"\nversion = \"").expect("rskafka in Cargo.lock");
    let version = lock[at..].lines().nth(1).unwrap().trim_start_matches("version = ").trim_matches('"');
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let registries = std::fs::read_dir(home.join("registry").join("src")).expect("cargo's registry sources");
    for registry in registries.flatten() {
        let path = registry.path().join(format!("rskafka-{version}")).join("src").join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text;
        }
    }
    panic!("rskafka {version}'s src/{file} is not in {}", home.display())
}
