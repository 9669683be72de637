//! Routing: which topic a line goes to and which `connection_ids` header it carries.
//!
//! With `connection_ids` in the job config, every line gets them and goes to the destinations
//! topic. Otherwise the streams repository (fetched once at start-up, see
//! [`crate::repository`]) maps a stream id to its destinations, as Jitsu ingest does:
//! - a line is looked up by `origin.sourceId`, or by `origin.slug` when `sourceId` is empty;
//! - its connection ids are the `connectionId`s of the destinations that have an `id` and a
//!   `destinationType`, leaving out the browser-side types [`BROWSER_SIDE_TYPES`];
//! - a stream with `shard > 0` goes to the topic `<topic>-shard<n>`.
//!
//! An unknown stream, a stream with no such destination, or a line with no stream id is an
//! error: a line is never sent without its header. Pure: built from parsed values.

use std::collections::HashMap;
use std::sync::Arc;

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

use crate::extract::Envelope;

/// Destination types that run in the browser, which ingest does not send to Kafka.
pub const BROWSER_SIDE_TYPES: [&str; 4] = ["logrocket", "tag", "ga4-tag", "gtm"];

/// Where a routed line goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into [`Router::topics`].
    pub topic: usize,
    /// The `connection_ids` header value: the ids joined with `,`.
    pub header: Arc<[u8]>,
}

/// Why a line cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no origin.sourceId or origin.slug to route by")]
    NoStreamId,
    #[error("stream not found in the repository")]
    UnknownStream,
    #[error("stream has no server-side destinations")]
    NoDestinations,
}

/// The routing table, built once.
#[derive(Debug, Clone)]
pub struct Router {
    topics: Vec<String>,
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    Fixed(Target),
    Table(HashMap<String, Result<Target, RouteError>>),
}

/// Why the repository's answer could not be used.
#[derive(Debug, thiserror::Error)]
#[error("streams repository: {0}")]
pub struct RepositoryFormatError(String);

impl Router {
    /// Every line gets `ids`, on `topic`.
    pub fn fixed(topic: &str, ids: &[String]) -> Self {
        let header: Arc<[u8]> = ids.join(",").into_bytes().into();
        Self { topics: vec![topic.to_owned()], mode: Mode::Fixed(Target { topic: 0, header }) }
    }

    /// Builds the table from the repository's JSON array.
    pub fn from_repository(topic: &str, body: &[u8]) -> Result<Self, RepositoryFormatError> {
        let v: Value = sonic_rs::from_slice(body).map_err(|e| {
            RepositoryFormatError(format!("invalid JSON: {}", crate::jobfile::first_line(&e.to_string())))
        })?;
        let arr = v.as_array().ok_or_else(|| RepositoryFormatError("expected a JSON array".into()))?;
        let mut topics = vec![topic.to_owned()];
        let mut table = HashMap::with_capacity(arr.len());
        for (i, entry) in arr.iter().enumerate() {
            let Some(id) = entry.pointer(["stream", "id"]).and_then(|s| s.as_str()).filter(|s| !s.is_empty()) else {
                return Err(RepositoryFormatError(format!("entry {i}: stream.id is missing")));
            };
            let ids: Vec<&str> = entry
                .get("destinations")
                .and_then(|d| d.as_array())
                .map(|ds| {
                    ds.iter()
                        .filter(|d| d.get("id").and_then(|x| x.as_str()).is_some_and(|s| !s.is_empty()))
                        .filter(|d| {
                            d.get("destinationType")
                                .and_then(|x| x.as_str())
                                .is_some_and(|t| !t.is_empty() && !BROWSER_SIDE_TYPES.contains(&t))
                        })
                        .filter_map(|d| d.get("connectionId").and_then(|x| x.as_str()).filter(|s| !s.is_empty()))
                        .collect()
                })
                .unwrap_or_default();
            let route = if ids.is_empty() {
                Err(RouteError::NoDestinations)
            } else {
                let shard = entry.get("shard").and_then(|s| s.as_i64()).unwrap_or(0);
                let name = if shard > 0 { format!("{topic}-shard{shard}") } else { topic.to_owned() };
                let topic_idx = topics.iter().position(|t| *t == name).unwrap_or_else(|| {
                    topics.push(name);
                    topics.len() - 1
                });
                Ok(Target { topic: topic_idx, header: ids.join(",").into_bytes().into() })
            };
            table.insert(id.to_owned(), route);
        }
        Ok(Self { topics, mode: Mode::Table(table) })
    }

    /// The topics lines can go to; [`Target::topic`] indexes this.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Number of streams in the table (0 for fixed routing).
    pub fn streams(&self) -> usize {
        match &self.mode {
            Mode::Fixed(_) => 0,
            Mode::Table(t) => t.len(),
        }
    }

    /// Routes one line.
    #[inline]
    pub fn route(&self, env: &Envelope<'_>) -> Result<&Target, RouteError> {
        match &self.mode {
            Mode::Fixed(t) => Ok(t),
            Mode::Table(table) => {
                let origin = env.origin.as_ref().ok_or(RouteError::NoStreamId)?;
                let id = origin
                    .source_id
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .or_else(|| origin.slug.as_deref().filter(|s| !s.is_empty()))
                    .ok_or(RouteError::NoStreamId)?;
                match table.get(id) {
                    Some(Ok(t)) => Ok(t),
                    Some(Err(e)) => Err(*e),
                    None => Err(RouteError::UnknownStream),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract;

    const REPO: &str = r#"[
      {"stream":{"id":"s1","name":"web"},"shard":0,"destinations":[
         {"id":"d1","connectionId":"c1","destinationType":"clickhouse"},
         {"id":"d2","connectionId":"c2","destinationType":"tag"},
         {"id":"d3","connectionId":"c3","destinationType":"postgres"},
         {"connectionId":"c4","destinationType":"bigquery"},
         {"id":"d5","connectionId":"c5"}]},
      {"stream":{"id":"s2"},"shard":2,"destinations":[{"id":"d6","connectionId":"c6","destinationType":"s3"}]},
      {"stream":{"id":"s3"},"destinations":[{"id":"d7","connectionId":"c7","destinationType":"gtm"},
                                            {"id":"d8","connectionId":"c8","destinationType":"logrocket"},
                                            {"id":"d9","connectionId":"c9","destinationType":"ga4-tag"}]},
      {"stream":{"id":"s4"},"shard":2,"destinations":[{"id":"d10","connectionId":"c10","destinationType":"mixpanel"}]},
      {"stream":{"id":"s5"}}
    ]"#;

    fn route<'a>(r: &'a Router, line: &str) -> Result<(&'a str, String), RouteError> {
        let t = r.route(&extract(line.as_bytes()).unwrap())?;
        Ok((r.topics()[t.topic].as_str(), String::from_utf8(t.header.to_vec()).unwrap()))
    }

    #[test]
    fn repository_routing_table() {
        let r = Router::from_repository("dest", REPO.as_bytes()).unwrap();
        assert_eq!(r.topics(), ["dest", "dest-shard2"]);
        assert_eq!(r.streams(), 5);
        let cases = [
            (r#"{"origin":{"sourceId":"s1"}}"#, Ok(("dest", "c1,c3".to_string()))),
            (r#"{"origin":{"sourceId":"","slug":"s1"}}"#, Ok(("dest", "c1,c3".to_string()))),
            (r#"{"origin":{"slug":"s2"}}"#, Ok(("dest-shard2", "c6".to_string()))),
            (r#"{"origin":{"sourceId":"s4","slug":"s1"}}"#, Ok(("dest-shard2", "c10".to_string()))),
            (r#"{"origin":{"sourceId":"s3"}}"#, Err(RouteError::NoDestinations)),
            (r#"{"origin":{"sourceId":"s5"}}"#, Err(RouteError::NoDestinations)),
            (r#"{"origin":{"sourceId":"nope"}}"#, Err(RouteError::UnknownStream)),
            (r#"{"origin":{"sourceId":""}}"#, Err(RouteError::NoStreamId)),
            (r#"{"origin":"s1"}"#, Err(RouteError::NoStreamId)),
            (r#"{}"#, Err(RouteError::NoStreamId)),
        ];
        for (line, want) in cases {
            let got = route(&r, line).map(|(t, h)| (t.to_string(), h));
            assert_eq!(got, want.map(|(t, h)| (t.to_string(), h)), "{line}");
        }
    }

    #[test]
    fn fixed_routing_gives_every_line_the_ids() {
        let r = Router::fixed("dest", &["a".into(), "b".into()]);
        assert_eq!(route(&r, "{}").unwrap(), ("dest", "a,b".into()));
        assert_eq!(route(&r, r#"{"origin":{"sourceId":"x"}}"#).unwrap(), ("dest", "a,b".into()));
    }

    #[test]
    fn malformed_repository_answers() {
        assert!(Router::from_repository("t", b"{}").is_err());
        assert!(Router::from_repository("t", b"[{\"stream\":{}}]").is_err());
        assert!(Router::from_repository("t", b"not json").is_err());
        assert_eq!(Router::from_repository("t", b"[]").unwrap().streams(), 0);
    }
}
