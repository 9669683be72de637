//! Reads one file, from S3 or the local disk, as a stream of large `Bytes` chunks.
//!
//! A reader task issues ranged reads of `read_chunk_bytes` and sends each chunk into a
//! bounded channel of `read_ahead_chunks` chunks, so the next range is fetched while the
//! current one is parsed, and a slow consumer (ultimately: slow Kafka acks) stops the reads.
//! Memory held here is at most `(read_ahead_chunks + 1) × read_chunk_bytes`.
//!
//! A ranged S3 read that fails or is cut short is retried from the exact byte where it
//! stopped, with the backoff [`Backoff::S3_READ`] (a bounded number of times in a row).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::backoff::Backoff;
use crate::bufpool::BufPool;
use tokio_util::sync::CancellationToken;

/// Where a file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, key: String },
    Local(PathBuf),
}

impl Location {
    pub fn parse(path: &str) -> Result<Self, SourceError> {
        match path.strip_prefix("s3://") {
            Some(rest) => match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(Location::S3 { bucket: bucket.to_owned(), key: key.to_owned() })
                }
                _ => Err(SourceError::Open(format!("{path}: expected s3://bucket/key"))),
            },
            None => Ok(Location::Local(PathBuf::from(path))),
        }
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

/// Opens files; holds the S3 client when the job has S3 files.
#[derive(Clone)]
pub struct Sources {
    s3: Option<aws_sdk_s3::Client>,
    /// Chunk buffers, reused across reads and files.
    pool: BufPool,
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
            pool: BufPool::new(4),
            #[cfg(test)]
            faults: Default::default(),
        }
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
        };
        tokio::spawn(async move {
            let mut out = out;
            let result = match loc {
                Location::Local(path) => read_local(path, &mut out).await,
                Location::S3 { bucket, key } => match s3 {
                    Some(s3) => read_s3(&s3, &bucket, &key, &mut out).await,
                    None => Err(SourceError::Open("no S3 client".into())),
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

/// Reads an S3 object in ranged GETs of one chunk each (the first of `first` bytes). The first GET's
/// `Content-Range` gives the object's size, so an object no larger than the first read costs
/// one request, and no size probe is made. A GET that fails or is cut short is retried from
/// the exact byte.
async fn read_s3(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, out: &mut ChunkOut) -> Result<(), SourceError> {
    let mut offset = 0u64;
    // Known after the first response.
    let mut size: Option<u64> = None;
    loop {
        if size.is_some_and(|s| offset >= s) {
            return Ok(());
        }
        let chunk = out.read_len(offset);
        let end = offset + chunk as u64; // exclusive, before the size is known
        let mut buf = out.pool.take(size.map_or(chunk as u64, |s| end.min(s) - offset) as usize);
        let mut failures = 0u32;
        loop {
            let want = size.map_or(end, |s| end.min(s)) - offset;
            if buf.len() as u64 >= want {
                break;
            }
            let from = offset + buf.len() as u64;
            let outcome = tokio::select! {
                _ = out.cancel.cancelled() => return Ok(()),
                r = get_range(s3, bucket, key, from..offset + want, &mut buf) => r,
            };
            match outcome {
                Ok(total) => {
                    failures = 0;
                    size.get_or_insert(total);
                }
                Err(GetError::EmptyObject) => {
                    size = Some(0);
                    break;
                }
                Err(GetError::Failed(reason)) => {
                    failures += 1;
                    let at = offset + buf.len() as u64;
                    let Some(pause) = Backoff::S3_READ.delay(failures) else {
                        return Err(SourceError::Read { offset: at, reason });
                    };
                    tracing::warn!(bucket, key, offset = at, attempt = failures, error = %reason, "S3 read failed, retrying from the same byte");
                    tokio::select! {
                        _ = out.cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                Err(GetError::Open(reason)) if offset == 0 && buf.is_empty() => {
                    return Err(SourceError::Open(format!("s3://{bucket}/{key}: {reason}")));
                }
                Err(GetError::Open(reason)) => return Err(SourceError::Read { offset, reason }),
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len() as u64;
        if !out.send(buf, offset).await? {
            return Ok(());
        }
        offset += len;
    }
}

/// Why one ranged GET failed.
enum GetError {
    /// A range of an empty object (S3 answers 416): the object has no bytes.
    EmptyObject,
    /// The object cannot be read (missing, forbidden): not worth a retry.
    Open(String),
    /// Worth a retry from the same byte.
    Failed(String),
}

/// One ranged GET of the bytes `range`, appended to `buf`. Returns the object's size.
async fn get_range(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    range: std::ops::Range<u64>,
    buf: &mut Vec<u8>,
) -> Result<u64, GetError> {
    use aws_sdk_s3::operation::get_object::GetObjectError;
    let from = range.start;
    let header = format!("bytes={from}-{}", range.end - 1);
    let resp = match s3.get_object().bucket(bucket).key(key).range(header).send().await {
        Ok(r) => r,
        Err(e) => {
            let shown = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            let status = e.raw_response().map(|r| r.status().as_u16());
            return Err(match (e.as_service_error(), status) {
                (_, Some(416)) => GetError::EmptyObject,
                (Some(GetObjectError::NoSuchKey(_)), _) | (_, Some(403 | 404)) => GetError::Open(shown),
                _ => GetError::Failed(shown),
            });
        }
    };
    // "bytes 0-99/1234": the size after the slash. Without it the server sent the whole object.
    let total = resp
        .content_range()
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, t)| t.parse::<u64>().ok())
        .or_else(|| resp.content_length().map(|n| from + n.max(0) as u64));
    let mut body = resp.body;
    let before = buf.len();
    loop {
        match body.next().await {
            Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
            Some(Err(e)) => return Err(GetError::Failed(format!("body cut short: {e}"))),
            None => break,
        }
    }
    if buf.len() == before {
        return Err(GetError::Failed("empty body".to_string()));
    }
    total.ok_or_else(|| GetError::Failed("no object size in the response".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("s3://b/dir/k.ndjson.gz").unwrap(),
            Location::S3 { bucket: "b".into(), key: "dir/k.ndjson.gz".into() }
        );
        assert_eq!(Location::parse("/data/x.ndjson").unwrap(), Location::Local("/data/x.ndjson".into()));
        assert!(Location::parse("s3://bucket-only").is_err());
        assert!(Location::parse("s3:///key").is_err());
    }

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
