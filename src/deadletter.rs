//! Dead letters (opt-in, `DEAD_LETTER_PATH`): every line counted as an error — malformed,
//! unroutable, too long, too large for Kafka, refused by the broker — is written as one
//! NDJSON record with its source file, line number, reason and original bytes, so nothing is
//! lost even when it is bad.
//!
//! **A letter's line settles only once the letter is durable.** The pipeline records such a
//! line as in flight and queues its letter; the writer gathers what is queued (for at most
//! [`LINGER`], at most [`S3_PART_BYTES`]), writes it as one unit — an append and `fsync` to
//! a local file, or one S3 object — and only then hands the lines back (the `settle`
//! callback), which counts them as errors. A `kill -9` before that leaves them unsettled, so
//! the resumed run reads them again and writes their letters again (at least once). A write
//! that fails is retried ([`Backoff::DEAD_LETTER`], each attempt bounded by [`WRITE_TIMEOUT`]);
//! past that its letters are lost, their lines still settle as errors, and the count of lost
//! letters goes into the row's `error` — never dropped in silence, never a stuck pipeline.
//!
//! The destination is a local directory (one file per worker, appended) or an `s3://` prefix
//! (one object per write, one series per run). Records are queued through a bounded channel
//! of [`QUEUE_RECORDS`] records; a full queue slows the pipeline rather than dropping a
//! record. The original bytes are kept as a JSON string when they are UTF-8, else base64 in
//! `data_base64`; a line too long to keep has only its `length`.

use std::path::PathBuf;
use std::time::Duration;

use sonic_rs::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use rw_core::{Backoff, Location, Seq};

/// Records queued for the writer, in records.
pub(crate) const QUEUE_RECORDS: usize = 4096;
/// One write of dead letters (one S3 object), in bytes at most (one letter may pass it).
pub(crate) const S3_PART_BYTES: usize = 8 * 1024 * 1024;
/// How long the writer gathers letters before it writes them: their lines wait at most this
/// long (plus the write) to settle, and S3 gets at most a few objects a second.
pub(crate) const LINGER: Duration = Duration::from_millis(200);
/// One attempt of one write, at most.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The line's sequence number, to settle once the letter is durable; `None` for a line
    /// already settled.
    pub seq: Option<Seq>,
    pub file: String,
    pub line: u64,
    pub reason: String,
    /// The line's bytes; `None` when too long to keep.
    pub data: Option<Vec<u8>>,
    pub length: u64,
}

impl DeadLetter {
    /// The letter of line `line` of `file`, with its bytes.
    pub fn with_bytes(seq: Seq, file: String, line: u64, reason: String, data: Vec<u8>) -> Self {
        DeadLetter { seq: Some(seq), file, line, reason, length: data.len() as u64, data: Some(data) }
    }

    /// The letter of a line too long to keep: its length only.
    pub fn too_long(seq: Seq, file: String, line: u64, reason: String, length: u64) -> Self {
        DeadLetter { seq: Some(seq), file, line, reason, length, data: None }
    }

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
pub(crate) enum DeadLetterError {
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
    /// A directory or `s3://bucket/prefix`; none for an empty path, a `gs://` one (not a
    /// place dead letters can go) or an S3 one without a bucket.
    pub fn parse(s: &str) -> Option<Destination> {
        match Location::parse_prefix(s).ok()? {
            Location::S3 { bucket, key } => Some(Destination::S3 { bucket, prefix: key.trim_end_matches('/').into() }),
            Location::Gcs { .. } => None,
            Location::Local(dir) => (!s.is_empty()).then_some(Destination::Dir(dir)),
        }
    }
}

/// The sending side, cloned into the pipeline.
pub(crate) type Sender = mpsc::Sender<DeadLetter>;

/// Called with the lines whose letters were written (`true`), or given up (`false`).
pub(crate) type Settle = Box<dyn Fn(&[Seq], bool) + Send + Sync>;

/// What the writer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub letters: u64,
    /// Letters whose writes failed past their retries.
    pub lost: u64,
}

/// Where the writer puts one unit of letters.
enum Out {
    File { shown: String, file: tokio::fs::File },
    S3 { s3: aws_sdk_s3::Client, bucket: String, prefix: String, started: String, part: u32 },
}

impl Out {
    async fn open(
        dest: Destination,
        job_id: &str,
        worker: u32,
        s3: Option<aws_sdk_s3::Client>,
    ) -> Result<Out, DeadLetterError> {
        match dest {
            Destination::Dir(dir) => {
                let shown = dir.display().to_string();
                let err = |e: std::io::Error| DeadLetterError::Write(shown.clone(), e.to_string());
                tokio::fs::create_dir_all(&dir).await.map_err(err)?;
                let path = dir.join(format!("{job_id}-worker-{worker}.ndjson"));
                let file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await.map_err(err)?;
                Ok(Out::File { shown: path.display().to_string(), file })
            }
            Destination::S3 { bucket, prefix } => {
                let s3 = s3.ok_or_else(|| DeadLetterError::Write(format!("s3://{bucket}"), "no S3 client".into()))?;
                let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
                let started = chrono::Utc::now().format("%Y%m%dT%H%M%S%3f").to_string();
                Ok(Out::S3 { s3, bucket, prefix: format!("{prefix}{job_id}/worker-{worker}/"), started, part: 0 })
            }
        }
    }

    /// Writes `buf` durably: appended and synced, or one object.
    async fn write(&mut self, buf: &[u8]) -> Result<(), DeadLetterError> {
        match self {
            Out::File { shown, file } => {
                let err = |e: std::io::Error| DeadLetterError::Write(shown.clone(), e.to_string());
                file.write_all(buf).await.map_err(err)?;
                file.flush().await.map_err(err)?;
                file.sync_data().await.map_err(err)
            }
            Out::S3 { s3, bucket, prefix, started, part } => {
                let key = format!("{prefix}{started}-{part:05}.ndjson");
                let sent = s3.put_object().bucket(bucket.as_str()).key(&key).body(buf.to_vec().into()).send().await;
                sent.map_err(|e| {
                    DeadLetterError::Write(
                        Location::S3 { bucket: bucket.clone(), key: key.clone() }.to_string(),
                        aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                    )
                })?;
                *part += 1;
                Ok(())
            }
        }
    }

    /// [`Out::write`] with its retries, each attempt bounded by [`WRITE_TIMEOUT`].
    async fn write_retried(&mut self, buf: &[u8]) -> Result<(), DeadLetterError> {
        let mut attempt = 0;
        loop {
            let e = match tokio::time::timeout(WRITE_TIMEOUT, self.write(buf)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => DeadLetterError::Write("dead letters".into(), format!("no answer within {WRITE_TIMEOUT:?}")),
            };
            attempt += 1;
            let Some(pause) = Backoff::DEAD_LETTER.delay(attempt) else { return Err(e) };
            tracing::warn!(attempt, error = %e, "writing dead letters failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }
}

/// Starts the writer; it ends (writing what is queued) when every [`Sender`] is dropped.
/// `settle` is called with the lines of every unit written or given up.
pub(crate) fn start(
    dest: Destination,
    job_id: String,
    worker: u32,
    s3: Option<aws_sdk_s3::Client>,
    settle: Settle,
) -> (Sender, tokio::task::JoinHandle<Result<Written, DeadLetterError>>) {
    let (tx, mut rx) = mpsc::channel::<DeadLetter>(QUEUE_RECORDS);
    let handle = tokio::spawn(async move {
        let mut done = Written::default();
        let mut out = match Out::open(dest, &job_id, worker, s3).await {
            Ok(o) => o,
            Err(e) => {
                // Nothing can be written: every letter is lost, and its line still settles.
                while let Some(d) = rx.recv().await {
                    settle(d.seq.as_slice(), false);
                }
                return Err(e);
            }
        };
        let mut open = true;
        while open {
            let Some(first) = rx.recv().await else { break };
            let mut unit = vec![first];
            let mut buf = unit[0].to_ndjson(&job_id, worker);
            let until = tokio::time::Instant::now() + LINGER;
            while buf.len() < S3_PART_BYTES {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(d)) => {
                        buf.extend_from_slice(&d.to_ndjson(&job_id, worker));
                        unit.push(d);
                    }
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let seqs: Vec<Seq> = unit.iter().filter_map(|d| d.seq).collect();
            match out.write_retried(&buf).await {
                Ok(()) => {
                    done.letters += unit.len() as u64;
                    settle(&seqs, true);
                }
                Err(e) => {
                    done.lost += unit.len() as u64;
                    tracing::error!(letters = unit.len(), lost = done.lost, error = %e, "dead letters lost");
                    settle(&seqs, false);
                }
            }
        }
        Ok(done)
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_the_original_bytes() {
        let d = DeadLetter {
            seq: None,
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
        assert_eq!(Destination::parse("gs://b/p"), None, "not a directory named gs:");
        assert_eq!(Destination::parse("s3:///p"), None);
    }

    #[tokio::test]
    async fn lines_settle_only_once_their_letters_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let settled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = std::sync::Arc::clone(&settled);
        let settle: Settle = Box::new(move |seqs, ok| s.lock().unwrap().push((seqs.to_vec(), ok)));
        let (tx, done) = start(Destination::Dir(dir.path().join("dl")), "job".into(), 1, None, settle);
        let path = dir.path().join("dl/job-worker-1.ndjson");
        for i in 0..10 {
            let d = DeadLetter {
                seq: Some(i),
                file: "f".into(),
                line: i,
                reason: "r".into(),
                data: Some(b"x".to_vec()),
                length: 1,
            };
            tx.send(d).await.unwrap();
            // Whatever was settled is on disk.
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default().lines().count();
            let settled_now: usize = settled.lock().unwrap().iter().map(|(s, _)| s.len()).sum();
            assert!(settled_now <= on_disk, "{settled_now} settled, {on_disk} written");
        }
        drop(tx);
        assert_eq!(done.await.unwrap().unwrap(), Written { letters: 10, lost: 0 });
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 10);
        let all: Vec<Seq> = settled
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(s, ok)| {
                assert!(ok);
                s.clone()
            })
            .collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_destination_that_cannot_be_written_loses_letters_counted_and_settles_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let blocked = dir.path().join("dl");
        std::fs::write(&blocked, b"").unwrap();
        let settled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = std::sync::Arc::clone(&settled);
        let settle: Settle = Box::new(move |seqs, ok| s.lock().unwrap().push((seqs.to_vec(), ok)));
        let (tx, done) = start(Destination::Dir(blocked), "job".into(), 1, None, settle);
        for i in 0..3 {
            let d = DeadLetter { seq: Some(i), file: "f".into(), line: i, reason: "r".into(), data: None, length: 1 };
            let _ = tx.send(d).await;
        }
        drop(tx);
        assert!(done.await.unwrap().is_err());
        let got = settled.lock().unwrap().clone();
        assert_eq!(got.iter().flat_map(|(s, _)| s.clone()).collect::<Vec<_>>(), vec![0, 1, 2], "every line settles");
        assert!(got.iter().all(|(_, ok)| !ok), "as lost letters");
    }
}
