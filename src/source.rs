//! Reads one file, from S3, GCS or the local disk, as a stream of large `Bytes` chunks.
//!
//! A reader task issues ranged reads of `read_chunk_bytes` and sends each chunk into a
//! bounded channel of `read_ahead_chunks` chunks, so the next range is fetched while the
//! current one is parsed, and a slow consumer (ultimately: slow Kafka acks) stops the reads.
//! Memory held here is at most `(read_ahead_chunks + 1) × read_chunk_bytes`.
//!
//! A ranged S3 or GCS read that fails or is cut short is retried from the exact byte where it
//! stopped, with the backoff [`rw_core::Backoff::S3_READ`] (a bounded number of times
//! in a row): see `source::remote`.

pub(crate) mod bufpool;
pub(crate) mod gcs;
mod remote;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use std::collections::HashMap;

use crate::progress::stats::Stats;
use crate::source::bufpool::BufPool;
use tokio_util::sync::CancellationToken;

use rw_core::Location;

/// The GCS clients, one per bucket.
pub type GcsStores = HashMap<String, Arc<dyn object_store::ObjectStore>>;

impl From<rw_core::BadLocation> for SourceError {
    fn from(e: rw_core::BadLocation) -> Self {
        SourceError::Open(e.to_string())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The file cannot be opened (missing, forbidden, bad path).
    #[error("cannot open: {0}")]
    Open(String),
    /// A read failed after its retries.
    #[error("read failed at byte {offset}: {reason}")]
    Read { offset: u64, reason: String },
}

/// A file's chunks, in order; an `Err` is the last item.
pub type Chunks = mpsc::Receiver<Result<Bytes, SourceError>>;

/// Opens files; holds the S3 client when the job has S3 files, and a GCS client per bucket of
/// its GCS files.
#[derive(Clone)]
pub struct Sources {
    s3: Option<aws_sdk_s3::Client>,
    gcs: Arc<GcsStores>,
    /// Chunk buffers, reused across reads and files.
    pool: BufPool,
    /// Where read retries are counted.
    stats: Arc<Stats>,
    /// Test hook: local reads to fail, each after this many chunks.
    #[cfg(test)]
    faults: Arc<std::sync::Mutex<Vec<u32>>>,
}

/// The S3 client from the standard AWS environment. With a custom endpoint
/// (`AWS_ENDPOINT_URL[_S3]`: MinIO, moto, Ceph) it uses path-style addressing.
pub async fn s3_client() -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if std::env::var_os("AWS_REGION").is_none() {
        let region = std::env::var("AWS_DEFAULT_REGION").unwrap_or_else(|_| "us-east-1".into());
        loader = loader.region(aws_config::Region::new(region));
    }
    let shared = loader.load().await;
    let custom_endpoint =
        std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(custom_endpoint).build();
    aws_sdk_s3::Client::from_conf(conf)
}

impl Sources {
    pub fn new(s3: Option<aws_sdk_s3::Client>) -> Self {
        // Read-ahead chunks + the one being parsed + the one being filled.
        Self {
            s3,
            gcs: Arc::default(),
            pool: BufPool::new(4),
            stats: Arc::default(),
            #[cfg(test)]
            faults: Default::default(),
        }
    }

    /// The readers for `paths`, each client built once, here: the S3 client when a path is on
    /// S3 or `s3_too` (dead letters to S3), and a GCS client per bucket of the paths on GCS.
    pub async fn for_paths<'a>(
        paths: impl IntoIterator<Item = &'a str>,
        s3_too: bool,
    ) -> Result<Self, crate::source::gcs::GcsError> {
        let mut needs_s3 = s3_too;
        let mut gcs = GcsStores::new();
        for path in paths {
            match Location::parse(path) {
                Ok(Location::S3 { .. }) => needs_s3 = true,
                Ok(Location::Gcs { bucket, .. }) if !gcs.contains_key(&bucket) => {
                    let store = crate::source::gcs::store(&bucket)?;
                    gcs.insert(bucket, store);
                }
                // A local path, a bucket seen already, or a bad path (which fails when opened).
                _ => {}
            }
        }
        let s3 = if needs_s3 { Some(s3_client().await) } else { None };
        Ok(Self::new(s3).with_gcs(gcs))
    }

    /// The S3 client, when one was built.
    pub fn s3(&self) -> Option<&aws_sdk_s3::Client> {
        self.s3.as_ref()
    }

    /// Counting read retries into `stats`.
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// With these GCS clients.
    pub fn with_gcs(mut self, stores: GcsStores) -> Self {
        self.gcs = Arc::new(stores);
        self
    }

    /// Test hook: the next local reads fail, the first after `chunks[0]` chunks, and so on.
    #[cfg(test)]
    pub(crate) fn fail_reads_after(&self, chunks: &[u32]) {
        self.faults.lock().unwrap().extend(chunks.iter().rev());
    }

    #[cfg(test)]
    fn take_fault(&self) -> Option<u32> {
        self.faults.lock().unwrap().pop()
    }

    /// Starts the reader task for `loc`. Chunks arrive on the returned channel in order; an
    /// `Err` is the last item. The file is read as it is now, whatever size files.json lists.
    /// The first read is of at most `first_bytes`, the others of `chunk_bytes`. With a `gate`
    /// (a file opened ahead of its turn), only the first chunk is read until the gate is
    /// notified, so a file waiting in line holds at most `first_bytes`. The task stops when
    /// `cancel` fires or the receiver is dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_reader(
        &self,
        loc: Location,
        chunk_bytes: usize,
        first_bytes: usize,
        ahead_chunks: usize,
        cancel: CancellationToken,
        gate: Option<Arc<Notify>>,
    ) -> Chunks {
        let (tx, rx) = mpsc::channel(ahead_chunks.max(1));
        let s3 = self.s3.clone();
        let gcs = Arc::clone(&self.gcs);
        #[cfg(test)]
        let chunks_before_fault = self.take_fault();
        #[cfg(not(test))]
        let chunks_before_fault = None;
        let first = first_bytes.clamp(1, chunk_bytes);
        let out = ChunkOut {
            tx,
            pool: self.pool.clone(),
            cancel,
            gate,
            chunk: chunk_bytes,
            first,
            sent: 0,
            chunks_before_fault,
            stats: Arc::clone(&self.stats),
        };
        tokio::spawn(async move {
            let mut out = out;
            let result = match loc {
                Location::Local(path) => read_local(path, &mut out).await,
                Location::S3 { bucket, key } => match s3 {
                    Some(s3) => {
                        remote::read_ranged(&remote::S3Object { s3: &s3, bucket: &bucket, key: &key }, &mut out).await
                    }
                    None => Err(SourceError::Open("no S3 client".into())),
                },
                Location::Gcs { bucket, object } => match gcs.get(&bucket) {
                    Some(store) => {
                        let obj = remote::GcsObject { store: store.as_ref(), bucket: &bucket, path: object.into() };
                        remote::read_ranged(&obj, &mut out).await
                    }
                    None => Err(SourceError::Open(format!("gs://{bucket}/{object}: no GCS client for the bucket"))),
                },
            };
            if let Err(e) = result {
                let _ = out.tx.send(Err(e)).await;
            }
        });
        rx
    }
}

/// Where a reader's chunks go, and when it may read on.
struct ChunkOut {
    tx: mpsc::Sender<Result<Bytes, SourceError>>,
    pool: BufPool,
    cancel: CancellationToken,
    /// Notified when the file's turn comes (files opened ahead of their turn).
    gate: Option<Arc<Notify>>,
    /// One read, in bytes; the first one reads `first`.
    chunk: usize,
    first: usize,
    sent: u32,
    /// Test hook: fail the read after this many chunks.
    chunks_before_fault: Option<u32>,
    /// Where read retries are counted.
    stats: Arc<Stats>,
}

impl ChunkOut {
    /// How many bytes the read at `offset` asks for.
    fn read_len(&self, offset: u64) -> usize {
        if offset == 0 {
            self.first
        } else {
            self.chunk
        }
    }

    /// Sends one chunk; false when the reader should stop (cancelled, receiver gone).
    async fn send(&mut self, buf: Vec<u8>, offset: u64) -> Result<bool, SourceError> {
        if self.chunks_before_fault == Some(self.sent) {
            return Err(SourceError::Read { offset, reason: "injected read fault".into() });
        }
        self.sent += 1;
        if self.tx.send(Ok(self.pool.freeze(buf))).await.is_err() {
            return Ok(false);
        }
        if let Some(gate) = self.gate.take() {
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(false),
                _ = gate.notified() => {}
            }
        }
        Ok(!self.cancel.is_cancelled())
    }
}

/// Reads a local file in chunks, each one blocking call on tokio's blocking pool (the first
/// also opens the file), so a small file costs one hop, not one per system call.
async fn read_local(path: PathBuf, out: &mut ChunkOut) -> Result<(), SourceError> {
    let shown = path.display().to_string();
    let mut file: Option<std::fs::File> = None;
    let mut offset = 0u64;
    loop {
        let want = out.read_len(offset);
        let mut buf = out.pool.take(want);
        let path = path.clone();
        let filled = tokio::task::spawn_blocking(move || {
            let mut f = match file {
                Some(f) => f,
                None => std::fs::File::open(&path).map_err(LocalError::Open)?,
            };
            // Up to `want` bytes, or to the end of the file as it is now.
            std::io::Read::take(&mut f, want as u64)
                .read_to_end(&mut buf)
                .map_err(|e| LocalError::Read(e, buf.len()))?;
            Ok((f, buf))
        })
        .await;
        let (f, buf) = match filled {
            Ok(Ok(done)) => done,
            Ok(Err(LocalError::Open(e))) => return Err(SourceError::Open(format!("{shown}: {e}"))),
            Ok(Err(LocalError::Read(e, n))) => {
                return Err(SourceError::Read { offset: offset + n as u64, reason: e.to_string() })
            }
            Err(e) => return Err(SourceError::Read { offset, reason: format!("read task failed: {e}") }),
        };
        file = Some(f);
        if buf.is_empty() || out.cancel.is_cancelled() {
            return Ok(());
        }
        let len = buf.len() as u64;
        let short = buf.len() < want;
        if !out.send(buf, offset).await? || short {
            return Ok(());
        }
        offset += len;
    }
}

/// Why a blocking local read failed.
enum LocalError {
    Open(std::io::Error),
    /// With the bytes read into the chunk before the error.
    Read(std::io::Error, usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_reads_come_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let sources = Sources::new(None);
        let loc = Location::Local(p);
        let mut rx = sources.spawn_reader(loc, 65_536, 1_000, 2, CancellationToken::new(), None);
        let mut got = Vec::new();
        while let Some(c) = rx.recv().await {
            let c = c.unwrap();
            assert!(c.len() <= if got.is_empty() { 1_000 } else { 65_536 });
            got.extend_from_slice(&c);
        }
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn missing_local_file_cannot_be_opened() {
        let sources = Sources::new(None);
        let mut rx = sources.spawn_reader(
            Location::Local("/nonexistent/x".into()),
            65_536,
            65_536,
            2,
            CancellationToken::new(),
            None,
        );
        assert!(matches!(rx.recv().await, Some(Err(SourceError::Open(_)))));
    }
}
