//! Fetches the streams repository once at start-up (`REPOSITORY_URL`, bearer token).
//!
//! The token is sent in the `Authorization` header and never appears in an error: errors
//! name the URL without its query string and the HTTP status.

use std::time::Duration;

use rw_core::{RepositoryFormatError, Secret, Streams};

/// Bound on the repository's answer, in bytes.
const MAX_REPOSITORY_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("streams repository {url}: {reason}")]
    Http { url: String, reason: String },
    #[error(transparent)]
    Format(#[from] RepositoryFormatError),
}

/// The URL without query or fragment (tokens sometimes ride there).
fn display_url(url: &str) -> String {
    rw_core::redact_url(url.split(['?', '#']).next().unwrap_or(url))
}

/// GETs the repository and parses it.
pub(crate) async fn fetch_streams(url: &str, token: &Secret, timeout: Duration) -> Result<Streams, RepositoryError> {
    let shown = display_url(url);
    let http = |reason: String| RepositoryError::Http { url: shown.clone(), reason };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| http(format!("cannot build HTTP client: {e}")))?;
    let mut req = client.get(url);
    if !token.is_empty() {
        req = req.bearer_auth(token.expose());
    }
    let resp = req.send().await.map_err(|e| http(without_url(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(http(format!("HTTP {status}")));
    }
    if resp.content_length().is_some_and(|n| n as usize > MAX_REPOSITORY_BYTES) {
        return Err(http(format!("answer larger than {MAX_REPOSITORY_BYTES} bytes")));
    }
    let body = resp.bytes().await.map_err(|e| http(without_url(&e)))?;
    Ok(Streams::parse(&body)?)
}

/// reqwest's message, without the URL it embeds (the caller shows a redacted one).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "cannot read the answer"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_url_drops_query_and_password() {
        assert_eq!(display_url("http://u:pw@repo/api?token=abc"), "http://u:***@repo/api");
    }
}
