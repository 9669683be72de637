//! Google Cloud Storage: the client for a bucket, and listing a `gs://` prefix for `plan`.
//!
//! Reads go through Apache Arrow's `object_store` (its `gcp` client: ranged GETs, and
//! Application Default Credentials — `GOOGLE_APPLICATION_CREDENTIALS`, then the metadata
//! server, which is how Workload Identity reaches a GKE pod). Its retries are turned off: the
//! reader retries from the exact byte with the one read backoff ([`crate::source`]).
//!
//! With `STORAGE_EMULATOR_HOST` set (the convention of Google's own clients), requests go to
//! that endpoint, without credentials.
//!
//! Listing uses the JSON API (`storage/v1/b/{bucket}/o`) page by page, with the bearer token
//! from the same credentials, so the page size can be chosen and paging shows in tests.

use std::sync::Arc;

use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};
use object_store::RetryConfig;
use serde::Deserialize;

use rw_core::Location;

/// The variable that points every GCS request at an emulator.
pub(crate) const EMULATOR_ENV: &str = "STORAGE_EMULATOR_HOST";
/// Google's endpoint, when no emulator is set.
const GCS_ENDPOINT: &str = "https://storage.googleapis.com";
/// Objects per listing page, unless `plan` is told otherwise (the JSON API's maximum).
pub(crate) const LIST_PAGE_SIZE: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum GcsError {
    #[error("{0}: expected gs://bucket/path")]
    BadUrl(String),
    #[error("gs://{bucket}: cannot set up the GCS client")]
    Client {
        bucket: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot list {url}: no credentials")]
    Credentials {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot list {url}")]
    List {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot list {url}: HTTP {status}")]
    ListStatus { url: String, status: u16 },
    #[error("cannot list {url}: the answer is not a listing")]
    BadPage { url: String },
}

/// The emulator's base URL, from `STORAGE_EMULATOR_HOST` (`host:port` or a URL).
fn emulator() -> Option<String> {
    let host = std::env::var(EMULATOR_ENV).ok().filter(|h| !h.trim().is_empty())?;
    let host = host.trim().trim_end_matches('/');
    Some(if host.contains("://") { host.to_owned() } else { format!("http://{host}") })
}

/// The client for `bucket`.
pub(crate) fn store(bucket: &str) -> Result<Arc<GoogleCloudStorage>, GcsError> {
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(RetryConfig { max_retries: 0, ..Default::default() });
    if let Some(base) = emulator() {
        b = b.with_base_url(&base).with_skip_signature(true);
    }
    b.build().map(Arc::new).map_err(|source| GcsError::Client { bucket: bucket.to_owned(), source })
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// `gs://bucket/name`.
    pub url: String,
    pub size: u64,
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(rename = "nextPageToken")]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    name: String,
    /// The JSON API sends sizes as strings.
    size: String,
    updated: Option<String>,
}

/// Every object under `gs://bucket/prefix`, `page_size` per request, in name order.
pub(crate) async fn list(bucket: &str, prefix: &str, page_size: u32) -> Result<Vec<Listed>, GcsError> {
    let url = &Location::Gcs { bucket: bucket.to_owned(), object: prefix.to_owned() }.to_string();
    let (base, token) = match emulator() {
        Some(base) => (base, None),
        None => {
            let store = store(bucket)?;
            let cred = store
                .credentials()
                .get_credential()
                .await
                .map_err(|source| GcsError::Credentials { url: url.to_owned(), source })?;
            (GCS_ENDPOINT.to_owned(), Some(cred.bearer.clone()))
        }
    };
    let http = reqwest::Client::new();
    let list_err = |source| GcsError::List { url: url.to_owned(), source };
    let mut out = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut req_url = reqwest::Url::parse(&format!("{base}/storage/v1/b/{bucket}/o"))
            .map_err(|_| GcsError::BadUrl(url.to_owned()))?;
        {
            let mut q = req_url.query_pairs_mut();
            q.append_pair("prefix", prefix).append_pair("maxResults", &page_size.max(1).to_string());
            q.append_pair("fields", "items(name,size,updated),nextPageToken");
            if let Some(t) = &page_token {
                q.append_pair("pageToken", t);
            }
        }
        let mut req = http.get(req_url);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(list_err)?;
        if !resp.status().is_success() {
            return Err(GcsError::ListStatus { url: url.to_owned(), status: resp.status().as_u16() });
        }
        let body = resp.bytes().await.map_err(list_err)?;
        let page: Page = sonic_rs::from_slice(&body).map_err(|_| GcsError::BadPage { url: url.to_owned() })?;
        out.extend(page.items.into_iter().map(|i| Listed {
            url: Location::Gcs { bucket: bucket.to_owned(), object: i.name }.to_string(),
            size: i.size.parse().unwrap_or(0),
            modified: i.updated.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.to_utc()),
        }));
        match page.next.filter(|t| !t.is_empty()) {
            Some(t) => page_token = Some(t),
            None => return Ok(out),
        }
    }
}
