//! Routing: which topic a line goes to and which `connection_ids` header it carries.
//!
//! With a map selector (`stream_ids` as an object, see [`crate::select`]) a line's rule gives
//! its connection ids; a line with no rule, with no `origin` object, or whose rule gives no ids
//! is skipped. A rule that uses the repository sends a sharded stream to its shard topic; a
//! rule of explicit ids sends to the destinations topic.
//!
//! Otherwise, with `connection_ids` in the job config, every line gets them and goes to the
//! destinations topic. Otherwise the streams repository (fetched once at start-up, see
//! the worker crate's `repository`) maps a stream id to its destinations, as Jitsu ingest does:
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

use crate::extract::{Envelope, Origin};
use crate::select::{Rule, RuleIndex, RuleMode, StreamSelector};

/// The Kafka header that carries the destinations, as the Go worker names it: the value is
/// the comma-separated connection ids (`Target::header`).
pub const HEADER: &str = "connection_ids";

/// Destination types that run in the browser, which ingest does not send to Kafka.
pub(crate) const BROWSER_SIDE_TYPES: [&str; 4] = ["logrocket", "tag", "ga4-tag", "gtm"];

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
    /// No `origin` object, or one whose `sourceId` and `slug` are both missing or empty.
    #[error("no origin.sourceId or origin.slug to route by")]
    NoStreamId,
    /// The line's stream is not in the streams repository.
    #[error("stream not found in the repository")]
    UnknownStream,
    /// The line's stream has no server-side destination with a connection id (see
    /// `BROWSER_SIDE_TYPES`).
    #[error("stream has no server-side destinations")]
    NoDestinations,
}

/// The streams repository, parsed: each stream's server-side connection ids and shard.
#[derive(Debug, Clone, Default)]
pub struct Streams {
    by_id: HashMap<String, usize>,
    entries: Vec<StreamEntry>,
}

#[derive(Debug, Clone)]
struct StreamEntry {
    id: String,
    ids: Vec<String>,
    shard: i64,
}

impl Streams {
    /// Parses the repository's JSON array.
    pub fn parse(body: &[u8]) -> Result<Self, RepositoryFormatError> {
        let v: Value = sonic_rs::from_slice(body).map_err(|e| {
            RepositoryFormatError(format!("invalid JSON: {}", crate::error::first_line(&e.to_string())))
        })?;
        let arr = v.as_array().ok_or_else(|| RepositoryFormatError("expected a JSON array".into()))?;
        let mut streams = Streams::default();
        for (i, entry) in arr.iter().enumerate() {
            let Some(id) = entry.pointer(["stream", "id"]).and_then(|s| s.as_str()).filter(|s| !s.is_empty()) else {
                return Err(RepositoryFormatError(format!("entry {i}: stream.id is missing")));
            };
            let ids = entry
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
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let shard = entry.get("shard").and_then(|s| s.as_i64()).unwrap_or(0);
            streams.by_id.insert(id.to_owned(), streams.entries.len());
            streams.entries.push(StreamEntry { id: id.to_owned(), ids, shard });
        }
        Ok(streams)
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when the repository lists no stream.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
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
    Rules(Rules),
}

/// A map selector's rules, resolved: `None` targets mean "skip".
#[derive(Debug, Clone)]
struct Rules {
    index: RuleIndex,
    /// Per rule.
    targets: Vec<RuleTargets>,
    /// Stream id → its entry in the repository, the key of `RuleTargets::PerStream::known`.
    streams: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
enum RuleTargets {
    /// The rule does not use the repository: one result for every stream.
    Same(Option<Target>),
    /// The result depends on the stream's repository entry; `unknown` for a stream the
    /// repository does not list.
    PerStream { known: HashMap<usize, Target>, unknown: Option<Target> },
}

/// Why the repository's answer could not be used.
#[derive(Debug, thiserror::Error)]
#[error("streams repository: {0}")]
pub struct RepositoryFormatError(String);

/// How a job routes: its selector, what map rules mean, and its fixed `connection_ids`.
#[derive(Debug, Clone, Copy)]
pub struct JobRouting<'a> {
    /// `stream_ids`: which streams, and in map form their rules.
    pub selector: &'a StreamSelector,
    /// `connections_filter`: what a map rule's ids mean.
    pub mode: RuleMode,
    /// `connection_ids`: the ids every line gets; empty: the streams repository's.
    pub connection_ids: &'a [String],
}

impl JobRouting<'_> {
    /// True when the router needs the streams repository.
    pub fn needs_repository(&self) -> bool {
        self.selector.needs_repository(self.mode, !self.connection_ids.is_empty())
    }
}

impl Router {
    /// Every line gets `ids`, on `topic`.
    pub fn fixed(topic: &str, ids: &[String]) -> Self {
        let header: Arc<[u8]> = ids.join(",").into_bytes().into();
        Self { topics: vec![topic.to_owned()], mode: Mode::Fixed(Target { topic: 0, header }) }
    }

    /// Builds the table from the repository's JSON array.
    pub fn from_repository(topic: &str, body: &[u8]) -> Result<Self, RepositoryFormatError> {
        Ok(Self::table(topic, &Streams::parse(body)?))
    }

    /// The router for a job; `streams` is the repository, when [`JobRouting::needs_repository`].
    pub fn for_job(topic: &str, job: JobRouting<'_>, streams: Option<&Streams>) -> Self {
        let none = Streams::default();
        let streams = streams.unwrap_or(&none);
        match job.selector.rules() {
            Some(rules) => Self::rules(topic, rules, job.mode, streams),
            None if !job.connection_ids.is_empty() => Self::fixed(topic, job.connection_ids),
            None => Self::table(topic, streams),
        }
    }

    /// Routing by the repository alone.
    fn table(topic: &str, streams: &Streams) -> Self {
        let mut topics = vec![topic.to_owned()];
        // In the repository's order, so that the topics' order is too; a repeated id keeps its
        // last entry.
        let table = streams
            .entries
            .iter()
            .map(|e| {
                let ids: Vec<&str> = e.ids.iter().map(String::as_str).collect();
                (e.id.clone(), Target::new(&mut topics, e.shard, &ids).ok_or(RouteError::NoDestinations))
            })
            .collect();
        Self { topics, mode: Mode::Table(table) }
    }

    /// Routing by a map selector's rules. A rule that uses the repository is resolved for every
    /// stream it lists (and goes to that stream's shard topic); other rules go to `topic`.
    fn rules(topic: &str, rules: &[Rule], mode: RuleMode, streams: &Streams) -> Self {
        let mut topics = vec![topic.to_owned()];
        let index = RuleIndex::new(rules);
        let targets = rules
            .iter()
            .enumerate()
            .map(|(r, rule)| {
                if !rule.uses_repository(mode) {
                    return RuleTargets::Same(Target::new(&mut topics, 0, &rule.resolve(mode, &[])));
                }
                // A stream with a rule of its own never reaches another rule: its lines match
                // that rule by id (or by slug, when the id is empty). So only the topics a line
                // can reach are listed, and must exist.
                let known = streams
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| index.own(&e.id).is_none_or(|own| own == r))
                    .filter_map(|(i, e)| Some((i, Target::new(&mut topics, e.shard, &rule.resolve(mode, &e.ids))?)))
                    .collect();
                RuleTargets::PerStream { known, unknown: Target::new(&mut topics, 0, &rule.resolve(mode, &[])) }
            })
            .collect();
        let rules = Rules { index, targets, streams: streams.by_id.clone() };
        Self { topics, mode: Mode::Rules(rules) }
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
            Mode::Rules(r) => r.streams.len(),
        }
    }

    /// Routes one line: `Ok(None)` when a map selector skips it (no rule for its stream, or
    /// a rule that gives it no connection ids).
    #[inline]
    pub fn route(&self, env: &Envelope<'_>) -> Result<Option<&Target>, RouteError> {
        match &self.mode {
            Mode::Fixed(t) => Ok(Some(t)),
            Mode::Table(table) => {
                let origin = env.origin.as_ref().ok_or(RouteError::NoStreamId)?;
                let id = stream_key(origin).ok_or(RouteError::NoStreamId)?;
                match table.get(id) {
                    Some(Ok(t)) => Ok(Some(t)),
                    Some(Err(e)) => Err(*e),
                    None => Err(RouteError::UnknownStream),
                }
            }
            Mode::Rules(rules) => {
                let Some(origin) = env.origin.as_ref() else { return Ok(None) };
                let (id, slug) = (origin.source_id.as_deref().unwrap_or(""), origin.slug.as_deref().unwrap_or(""));
                let Some(r) = rules.index.lookup(id, slug) else { return Ok(None) };
                Ok(match &rules.targets[r] {
                    RuleTargets::Same(t) => t.as_ref(),
                    RuleTargets::PerStream { known, unknown } => {
                        match stream_key(origin).and_then(|k| rules.streams.get(k)) {
                            Some(i) => known.get(i),
                            None => unknown.as_ref(),
                        }
                    }
                })
            }
        }
    }
}

/// A line's stream: `origin.sourceId`, or `origin.slug` when the id is empty.
fn stream_key<'a>(origin: &'a Origin<'_>) -> Option<&'a str> {
    origin.source_id.as_deref().filter(|s| !s.is_empty()).or_else(|| origin.slug.as_deref().filter(|s| !s.is_empty()))
}

impl Target {
    /// The target for `ids` on the stream's topic (`<topic>-shard<n>` for `shard > 0`), adding
    /// the topic to `topics` if it is new; `None` when there are no ids.
    fn new(topics: &mut Vec<String>, shard: i64, ids: &[&str]) -> Option<Self> {
        if ids.is_empty() {
            return None;
        }
        let name = if shard > 0 { format!("{}-shard{shard}", topics[0]) } else { topics[0].clone() };
        let topic = topics.iter().position(|t| *t == name).unwrap_or_else(|| {
            topics.push(name);
            topics.len() - 1
        });
        Some(Target { topic, header: ids.join(",").into_bytes().into() })
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
        let t = r.route(&extract(line.as_bytes()).unwrap())?.expect("routed");
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

    /// Routes `line` under a map selector: `Some((topic, header))`, or `None` when skipped.
    fn rule_route(r: &Router, line: &str) -> Option<(String, String)> {
        let t = r.route(&extract(line.as_bytes()).unwrap()).expect("a map selector never errs")?;
        Some((r.topics()[t.topic].clone(), String::from_utf8(t.header.to_vec()).unwrap()))
    }

    fn map_router(json: &str, mode: RuleMode, with_repo: bool) -> Router {
        let c = crate::jobfile::parse_job_config(json.as_bytes()).unwrap();
        let job = JobRouting { selector: &c.stream_ids, mode, connection_ids: &[] };
        assert_eq!(job.needs_repository(), with_repo, "{json}");
        let streams = Streams::parse(REPO.as_bytes()).unwrap();
        Router::for_job("dest", job, with_repo.then_some(&streams))
    }

    fn to(topic: &str, header: &str) -> Option<(String, String)> {
        Some((topic.to_string(), header.to_string()))
    }

    #[test]
    fn map_selector_override_mode() {
        let r = map_router(
            r#"{"stream_ids":{"s1":["x1","*"],"s2":"x2","s4":[],"s3":"*","*":"*"}}"#,
            RuleMode::Override,
            true,
        );
        let cases = [
            (r#"{"origin":{"sourceId":"s1"}}"#, to("dest", "x1,c1,c3")),
            (r#"{"origin":{"slug":"s2"}}"#, to("dest", "x2")),
            (r#"{"origin":{"sourceId":"s4"}}"#, None),
            (r#"{"origin":{"sourceId":"s3"}}"#, None),
            (r#"{"origin":{"sourceId":"nope","slug":"s2"}}"#, to("dest", "x2")),
            (r#"{"origin":{"sourceId":"s2","slug":"s1"}}"#, to("dest", "x2")),
            (r#"{"origin":{"sourceId":"nope"}}"#, None),
            (r#"{"origin":"s1"}"#, None),
            (r#"{}"#, None),
        ];
        for (line, want) in cases {
            assert_eq!(rule_route(&r, line), want, "{line}");
        }
        // "*" picks the shard topic of the stream; the catch-all resolves per stream.
        // A sharded stream with an explicit rule of its own needs no shard topic.
        let r = map_router(r#"{"stream_ids":{"s2":"x2","s4":"x4","*":"*"}}"#, RuleMode::Override, true);
        assert_eq!(r.topics(), ["dest"], "s2 and s4 (shard 2) have explicit rules");
        let r = map_router(r#"{"stream_ids":{"s1":"x1","*":["*","x9"]}}"#, RuleMode::Override, true);
        assert_eq!(rule_route(&r, r#"{"origin":{"sourceId":"s2"}}"#), to("dest-shard2", "c6,x9"));
        assert_eq!(rule_route(&r, r#"{"origin":{"sourceId":"unknown"}}"#), to("dest", "x9"));
        assert_eq!(rule_route(&r, r#"{"origin":{"sourceId":"s1"}}"#), to("dest", "x1"));
    }

    #[test]
    fn map_selector_without_the_repository() {
        let r = map_router(r#"{"stream_ids":{"s1":["a","b"],"s2":"c","*":"d"}}"#, RuleMode::Override, false);
        assert_eq!(r.topics(), ["dest"]);
        assert_eq!(rule_route(&r, r#"{"origin":{"sourceId":"s1"}}"#), to("dest", "a,b"));
        assert_eq!(rule_route(&r, r#"{"origin":{"sourceId":"s2"}}"#), to("dest", "c"), "explicit ids: no shard topic");
        assert_eq!(rule_route(&r, r#"{"origin":{"sourceId":"zzz"}}"#), to("dest", "d"));
        let none = map_router(r#"{"stream_ids":{}}"#, RuleMode::Override, false);
        assert_eq!(rule_route(&none, r#"{"origin":{"sourceId":"s1"}}"#), None, "an empty map selects nothing");
    }

    #[test]
    fn map_selector_filter_mode() {
        let r = map_router(r#"{"stream_ids":{"s1":["c3","zz"],"s2":"*","s3":"*","*":"c10"}}"#, RuleMode::Filter, true);
        let cases = [
            (r#"{"origin":{"sourceId":"s1"}}"#, to("dest", "c3")),
            (r#"{"origin":{"sourceId":"s2"}}"#, to("dest-shard2", "c6")),
            (r#"{"origin":{"sourceId":"s3"}}"#, None),
            (r#"{"origin":{"sourceId":"s4"}}"#, to("dest-shard2", "c10")),
            (r#"{"origin":{"sourceId":"s5"}}"#, None),
            (r#"{"origin":{"sourceId":"unknown"}}"#, None),
        ];
        for (line, want) in cases {
            assert_eq!(rule_route(&r, line), want, "{line}");
        }
    }

    #[test]
    fn list_selector_and_connection_ids_route_as_before() {
        let streams = Streams::parse(REPO.as_bytes()).unwrap();
        let list = StreamSelector::List(vec!["s1".into()]);
        let ids = ["c1".to_string()];
        let fixed = JobRouting { selector: &list, mode: RuleMode::Override, connection_ids: &ids };
        assert!(!fixed.needs_repository());
        let r = Router::for_job("dest", fixed, None);
        assert_eq!(route(&r, r#"{"origin":{"sourceId":"s2"}}"#), Ok(("dest", "c1".into())));
        let by_repo = JobRouting { connection_ids: &[], ..fixed };
        assert!(by_repo.needs_repository());
        let r = Router::for_job("dest", by_repo, Some(&streams));
        assert_eq!(route(&r, r#"{"origin":{"sourceId":"s2"}}"#), Ok(("dest-shard2", "c6".into())));
        assert_eq!(route(&r, r#"{"origin":{"sourceId":"x"}}"#), Err(RouteError::UnknownStream));
    }

    #[test]
    fn malformed_repository_answers() {
        assert!(Router::from_repository("t", b"{}").is_err());
        assert!(Router::from_repository("t", b"[{\"stream\":{}}]").is_err());
        assert!(Router::from_repository("t", b"not json").is_err());
        assert_eq!(Router::from_repository("t", b"[]").unwrap().streams(), 0);
    }
}
