//! Reads one file, from S3 or the local disk, as a stream of large `Bytes` chunks.
//!
//! A reader task issues ranged reads of `read_chunk_bytes` and sends each chunk into a
//! bounded channel of `read_ahead_chunks` chunks, so the next range is fetched while the
//! current one is parsed, and a slow consumer (ultimately: slow Kafka acks) stops the reads.
//! Memory held here is at most `(read_ahead_chunks + 1) × read_chunk_bytes`.
//!
//! A ranged S3 read that fails or is cut short is retried from the exact byte where it
//! stopped, with the backoff [`Backoff::S3_READ`] (a bounded number of times in a row).

use std::path::PathBuf;
#[cfg(test)]
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

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

    /// The file's size in bytes (HEAD for S3, metadata for local files).
    pub async fn size(&self, loc: &Location) -> Result<u64, SourceError> {
        match loc {
            Location::Local(p) => tokio::fs::metadata(p)
                .await
                .map(|m| m.len())
                .map_err(|e| SourceError::Open(format!("{}: {e}", p.display()))),
            Location::S3 { bucket, key } => {
                let s3 = self.s3.as_ref().ok_or_else(|| SourceError::Open("no S3 client".into()))?;
                let head = s3.head_object().bucket(bucket).key(key).send().await.map_err(|e| {
                    SourceError::Open(format!("s3://{bucket}/{key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))
                })?;
                Ok(head.content_length().unwrap_or(0).max(0) as u64)
            }
        }
    }

    /// Starts the reader task for `loc` (of `size` bytes). Chunks arrive on the returned
    /// channel in order; an `Err` is the last item. The task stops when `cancel` fires or
    /// the receiver is dropped.
    pub fn spawn_reader(
        &self,
        loc: Location,
        size: u64,
        chunk_bytes: usize,
        ahead_chunks: usize,
        cancel: CancellationToken,
    ) -> mpsc::Receiver<Result<Bytes, SourceError>> {
        let (tx, rx) = mpsc::channel(ahead_chunks.max(1));
        let s3 = self.s3.clone();
        let pool = self.pool.clone();
        #[cfg(test)]
        let chunks_before_fault = self.take_fault();
        #[cfg(not(test))]
        let chunks_before_fault = None;
        tokio::spawn(async move {
            let result = match loc {
                Location::Local(path) => read_local(path, chunk_bytes, &pool, &tx, &cancel, chunks_before_fault).await,
                Location::S3 { bucket, key } => match s3 {
                    Some(s3) => read_s3(&s3, &bucket, &key, size, chunk_bytes, &pool, &tx, &cancel).await,
                    None => Err(SourceError::Open("no S3 client".into())),
                },
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }
}

type ChunkSender = mpsc::Sender<Result<Bytes, SourceError>>;

async fn read_local(
    path: PathBuf,
    chunk: usize,
    pool: &BufPool,
    tx: &ChunkSender,
    cancel: &CancellationToken,
    chunks_before_fault: Option<u32>,
) -> Result<(), SourceError> {
    let shown = path.display().to_string();
    let mut chunks = 0u32;
    let mut f = tokio::fs::File::open(&path).await.map_err(|e| SourceError::Open(format!("{shown}: {e}")))?;
    let mut offset = 0u64;
    loop {
        let mut buf = pool.take(chunk);
        while buf.len() < chunk {
            let n = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = f.read_buf(&mut buf) => r.map_err(|e| SourceError::Read { offset: offset + buf.len() as u64, reason: e.to_string() })?,
            };
            if n == 0 {
                break;
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        if chunks_before_fault == Some(chunks) {
            return Err(SourceError::Read { offset, reason: "injected read fault".into() });
        }
        chunks += 1;
        offset += buf.len() as u64;
        let short = buf.len() < chunk;
        if tx.send(Ok(pool.freeze(buf))).await.is_err() || short {
            return Ok(());
        }
        // A file that grew or shrank under us is read as it is now.
        let _ = f.seek(std::io::SeekFrom::Start(offset)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn read_s3(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    size: u64,
    chunk: usize,
    pool: &BufPool,
    tx: &ChunkSender,
    cancel: &CancellationToken,
) -> Result<(), SourceError> {
    let mut offset = 0u64;
    while offset < size {
        let end = (offset + chunk as u64).min(size); // exclusive
        let mut buf = pool.take((end - offset) as usize);
        let mut failures = 0u32;
        while (buf.len() as u64) < end - offset {
            let from = offset + buf.len() as u64;
            let attempt = async {
                let resp = s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .range(format!("bytes={from}-{}", end - 1))
                    .send()
                    .await
                    .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())?;
                let mut body = resp.body;
                let before = buf.len();
                loop {
                    match body.next().await {
                        Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                        Some(Err(e)) => return Err(format!("body cut short: {e}")),
                        None => break,
                    }
                }
                if buf.len() == before {
                    return Err("empty body".to_string());
                }
                Ok(())
            };
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = attempt => r,
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(reason) => {
                    failures += 1;
                    let at = offset + buf.len() as u64;
                    let Some(pause) = Backoff::S3_READ.delay(failures) else {
                        return Err(SourceError::Read { offset: at, reason });
                    };
                    tracing::warn!(bucket, key, offset = at, attempt = failures, error = %reason, "S3 read failed, retrying from the same byte");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        buf.truncate((end - offset) as usize);
        offset = end;
        if tx.send(Ok(pool.freeze(buf))).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
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
        assert_eq!(sources.size(&loc).await.unwrap(), 200_000);
        let mut rx = sources.spawn_reader(loc, 200_000, 65_536, 2, CancellationToken::new());
        let mut got = Vec::new();
        while let Some(c) = rx.recv().await {
            let c = c.unwrap();
            assert!(c.len() <= 65_536);
            got.extend_from_slice(&c);
        }
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn missing_local_file_cannot_be_opened() {
        let sources = Sources::new(None);
        let mut rx =
            sources.spawn_reader(Location::Local("/nonexistent/x".into()), 0, 65_536, 2, CancellationToken::new());
        assert!(matches!(rx.recv().await, Some(Err(SourceError::Open(_)))));
    }
}
