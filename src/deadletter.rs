//! Dead letters (opt-in, `DEAD_LETTER_PATH`): every line counted as an error — malformed,
//! unroutable, too long, too large for Kafka, refused by the broker — is written as one
//! NDJSON record with its source file, line number, reason and original bytes, so nothing is lost even when it is bad.
//!
//! The destination is a local directory (one file per worker, appended) or an `s3://` prefix
//! (objects of up to [`S3_PART_BYTES`], one series per worker). Records are queued through a
//! bounded channel of [`QUEUE_RECORDS`] records; a full queue slows the pipeline rather than
//! dropping a record. The original bytes are kept as a JSON string when they are UTF-8, else
//! base64 in `data_base64`; a line too long to keep has only its `length`.

use std::path::PathBuf;

use sonic_rs::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Records queued for the writer, in records.
pub const QUEUE_RECORDS: usize = 4096;
/// One S3 object of dead letters, in bytes.
pub const S3_PART_BYTES: usize = 8 * 1024 * 1024;

/// One bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub file: String,
    pub line: u64,
    pub reason: String,
    /// The line's bytes; `None` when too long to keep.
    pub data: Option<Vec<u8>>,
    pub length: u64,
}

impl DeadLetter {
    /// The NDJSON record (with its newline).
    pub fn to_ndjson(&self, job_id: &str, worker: u32) -> Vec<u8> {
        use base64::Engine as _;
        let mut v = json!({
            "job_id": job_id, "worker_index": worker, "file": self.file.as_str(), "line": self.line,
            "reason": self.reason.as_str(), "length": self.length,
        });
        if let Some(d) = &self.data {
            let obj = sonic_rs::JsonValueMutTrait::as_object_mut(&mut v).expect("an object");
            match std::str::from_utf8(d) {
                Ok(s) => obj.insert(&"data", s),
                Err(_) => obj.insert(&"data_base64", base64::engine::general_purpose::STANDARD.encode(d).as_str()),
            };
        }
        let mut out = sonic_rs::to_vec(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead letters {0}: {1}")]
    Write(String, String),
}

/// Where dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Destination {
    pub fn parse(s: &str) -> Option<Destination> {
        match s.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                (!bucket.is_empty())
                    .then(|| Destination::S3 { bucket: bucket.into(), prefix: prefix.trim_end_matches('/').into() })
            }
            None => (!s.is_empty()).then(|| Destination::Dir(PathBuf::from(s))),
        }
    }
}

/// The sending side, cloned into the pipeline.
pub type Sender = mpsc::Sender<DeadLetter>;

/// Starts the writer; it ends (flushing) when every [`Sender`] is dropped.
pub fn start(
    dest: Destination,
    job_id: String,
    worker: u32,
    s3: Option<aws_sdk_s3::Client>,
) -> (Sender, tokio::task::JoinHandle<Result<u64, DeadLetterError>>) {
    let (tx, mut rx) = mpsc::channel::<DeadLetter>(QUEUE_RECORDS);
    let handle = tokio::spawn(async move {
        let mut written = 0u64;
        match dest {
            Destination::Dir(dir) => {
                let shown = dir.display().to_string();
                let err = |e: std::io::Error| DeadLetterError::Write(shown.clone(), e.to_string());
                tokio::fs::create_dir_all(&dir).await.map_err(err)?;
                let path = dir.join(format!("{job_id}-worker-{worker}.ndjson"));
                let mut f = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await.map_err(err)?;
                while let Some(d) = rx.recv().await {
                    f.write_all(&d.to_ndjson(&job_id, worker)).await.map_err(err)?;
                    written += 1;
                }
                f.flush().await.map_err(err)?;
            }
            Destination::S3 { bucket, prefix } => {
                let s3 = s3.ok_or_else(|| DeadLetterError::Write(format!("s3://{bucket}"), "no S3 client".into()))?;
                let mut buf = Vec::new();
                let mut part = 0u32;
                let started = chrono::Utc::now().format("%Y%m%dT%H%M%S");
                let put = |buf: Vec<u8>, part: u32| {
                    let (s3, bucket) = (s3.clone(), bucket.clone());
                    let key = format!(
                        "{}{job_id}/worker-{worker}/{started}-{part:05}.ndjson",
                        if prefix.is_empty() { String::new() } else { format!("{prefix}/") }
                    );
                    async move {
                        s3.put_object().bucket(&bucket).key(&key).body(buf.into()).send().await.map(|_| ()).map_err(
                            |e| {
                                DeadLetterError::Write(
                                    format!("s3://{bucket}/{key}"),
                                    aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                                )
                            },
                        )
                    }
                };
                while let Some(d) = rx.recv().await {
                    buf.extend_from_slice(&d.to_ndjson(&job_id, worker));
                    written += 1;
                    if buf.len() >= S3_PART_BYTES {
                        put(std::mem::take(&mut buf), part).await?;
                        part += 1;
                    }
                }
                if !buf.is_empty() {
                    put(buf, part).await?;
                }
            }
        }
        Ok(written)
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_the_original_bytes() {
        let d = DeadLetter {
            file: "f".into(),
            line: 7,
            reason: "invalid JSON".into(),
            data: Some(b"{\"a\":1} x".to_vec()),
            length: 9,
        };
        let v: sonic_rs::Value = sonic_rs::from_slice(&d.to_ndjson("j", 2)).unwrap();
        use sonic_rs::JsonValueTrait;
        assert_eq!(v.get("data").and_then(|x| x.as_str()), Some("{\"a\":1} x"));
        assert_eq!(v.get("line").and_then(|x| x.as_u64()), Some(7));
        let bin = DeadLetter { data: Some(vec![0xff, 0x00]), ..d.clone() };
        let v: sonic_rs::Value = sonic_rs::from_slice(&bin.to_ndjson("j", 2)).unwrap();
        assert_eq!(v.get("data_base64").and_then(|x| x.as_str()), Some("/wA="));
        let long = DeadLetter { data: None, length: 1 << 30, ..d };
        let v: sonic_rs::Value = sonic_rs::from_slice(&long.to_ndjson("j", 2)).unwrap();
        assert!(v.get("data").is_none() && v.get("length").and_then(|x| x.as_u64()) == Some(1 << 30));
    }

    #[test]
    fn destinations() {
        assert_eq!(
            Destination::parse("s3://b/p/q/"),
            Some(Destination::S3 { bucket: "b".into(), prefix: "p/q".into() })
        );
        assert_eq!(Destination::parse("/var/dl"), Some(Destination::Dir("/var/dl".into())));
        assert_eq!(Destination::parse(""), None);
    }

    #[tokio::test]
    async fn local_writer_appends_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, done) = start(Destination::Dir(dir.path().join("dl")), "job".into(), 1, None);
        for i in 0..10 {
            tx.send(DeadLetter { file: "f".into(), line: i, reason: "r".into(), data: Some(b"x".to_vec()), length: 1 })
                .await
                .unwrap();
        }
        drop(tx);
        assert_eq!(done.await.unwrap().unwrap(), 10);
        let text = std::fs::read_to_string(dir.path().join("dl/job-worker-1.ndjson")).unwrap();
        assert_eq!(text.lines().count(), 10);
    }
}
