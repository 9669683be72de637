//! Reads an object from S3 or GCS in ranged GETs of one chunk each (the first of `first`
//! bytes). The first GET's `Content-Range` gives the object's size, so an object no larger than
//! the first read costs one request, and no size probe is made. A GET that fails or is cut
//! short is retried from the exact byte where it stopped, with [`Backoff::S3_READ`]; the
//! stores' own clients do not retry, so this is the one retry policy for reads.

use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use rw_core::{Backoff, Location};

use super::{ChunkOut, SourceError};

/// Why one ranged GET failed.
pub(super) enum GetError {
    /// A range of an empty object (answered 416): the object has no bytes.
    EmptyObject,
    /// The object cannot be read (missing, forbidden, an untrusted server certificate): not
    /// worth a retry.
    Open(String),
    /// Worth a retry from the same byte.
    Failed(String),
}

/// An object that can be read by byte ranges.
pub(super) trait Ranged {
    /// The object's URL, for logs and errors.
    fn url(&self) -> String;
    /// The store's name in the metrics (`s3`, `gcs`).
    fn store(&self) -> &'static str;
    /// One ranged GET of the bytes `range`, appended to `buf`. Returns the object's size.
    async fn get_range(&self, range: std::ops::Range<u64>, buf: &mut Vec<u8>) -> Result<u64, GetError>;
}

/// Reads `obj` into `out`, chunk by chunk.
pub(super) async fn read_ranged(obj: &impl Ranged, out: &mut ChunkOut) -> Result<(), SourceError> {
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
                r = obj.get_range(from..offset + want, &mut buf) => r,
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
                    out.stats.read_retried(obj.store());
                    let url = obj.url();
                    tracing::warn!(url, offset = at, attempt = failures, error = %reason, "read failed, retrying from the same byte");
                    tokio::select! {
                        _ = out.cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                Err(GetError::Open(reason)) if offset == 0 && buf.is_empty() => {
                    return Err(SourceError::Open(format!("{}: {reason}", obj.url())));
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

/// The reason for a server certificate that failed verification, with what fixes it.
fn untrusted(shown: String) -> String {
    format!("{shown} (the server's certificate is not trusted; SSL_CERT_FILE names the CA bundle to trust)")
}

/// An S3 object.
pub(super) struct S3Object<'a> {
    pub s3: &'a aws_sdk_s3::Client,
    pub bucket: &'a str,
    pub key: &'a str,
}

impl Ranged for S3Object<'_> {
    fn url(&self) -> String {
        Location::S3 { bucket: self.bucket.to_owned(), key: self.key.to_owned() }.to_string()
    }

    fn store(&self) -> &'static str {
        "s3"
    }

    async fn get_range(&self, range: std::ops::Range<u64>, buf: &mut Vec<u8>) -> Result<u64, GetError> {
        use aws_sdk_s3::operation::get_object::GetObjectError;
        let from = range.start;
        let header = format!("bytes={from}-{}", range.end - 1);
        let resp = match self.s3.get_object().bucket(self.bucket).key(self.key).range(header).send().await {
            Ok(r) => r,
            Err(e) => {
                let shown = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                let status = e.raw_response().map(|r| r.status().as_u16());
                return Err(match (e.as_service_error(), status) {
                    (_, Some(416)) => GetError::EmptyObject,
                    (Some(GetObjectError::NoSuchKey(_)), _) | (_, Some(403 | 404)) => GetError::Open(shown),
                    _ if crate::tls::certificate_refused(&e) => GetError::Open(untrusted(shown)),
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
}

/// A GCS object, through its bucket's client.
pub(super) struct GcsObject<'a> {
    pub store: &'a dyn ObjectStore,
    pub bucket: &'a str,
    pub path: object_store::path::Path,
}

impl Ranged for GcsObject<'_> {
    fn url(&self) -> String {
        Location::Gcs { bucket: self.bucket.to_owned(), object: self.path.to_string() }.to_string()
    }

    fn store(&self) -> &'static str {
        "gcs"
    }

    async fn get_range(&self, range: std::ops::Range<u64>, buf: &mut Vec<u8>) -> Result<u64, GetError> {
        use futures::StreamExt;
        let from = range.start;
        let opts = GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() };
        let resp = match self.store.get_opts(&self.path, opts).await {
            Ok(r) => r,
            Err(e) => return Err(self.classify(from, e).await),
        };
        let total = resp.meta.size;
        let mut body = resp.into_stream();
        let before = buf.len();
        while let Some(part) = body.next().await {
            match part {
                Ok(bytes) => buf.extend_from_slice(&bytes),
                Err(e) => return Err(GetError::Failed(format!("body cut short: {}", rw_core::Chain(&e)))),
            }
        }
        if buf.len() == before {
            return Err(GetError::Failed("empty body".to_string()));
        }
        Ok(total)
    }
}

impl GcsObject<'_> {
    /// What a failed GET means. GCS answers a range of an empty object with 416, which the
    /// client reports as a generic error: a failed first read asks for the object's size.
    async fn classify(&self, from: u64, e: object_store::Error) -> GetError {
        use object_store::Error as E;
        let shown = rw_core::Chain(&e).to_string();
        if crate::tls::certificate_refused(&e) {
            return GetError::Open(untrusted(shown));
        }
        match e {
            E::NotFound { .. } | E::PermissionDenied { .. } | E::Unauthenticated { .. } => GetError::Open(shown),
            _ if from == 0 => match self.store.head(&self.path).await {
                Ok(meta) if meta.size == 0 => GetError::EmptyObject,
                Err(E::NotFound { .. }) => GetError::Open(shown),
                _ => GetError::Failed(shown),
            },
            _ => GetError::Failed(shown),
        }
    }
}
