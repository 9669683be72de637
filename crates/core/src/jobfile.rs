//! The two mounted files, parsed from bytes: `config.json` (the job options) and `files.json`
//! (the job's file list). Pure: the caller reads the files; errors name the file and field.
//!
//! Both files may be gzip- or zstd-compressed (the admin service gzips `files.json`);
//! compression is detected by the magic bytes, never by the name. Unknown fields are ignored, and so are
//! `s3_path`, `gcs_path`, `local_path` and `files` in `config.json`, which only the admin uses,
//! and `last_modified` in `files.json`. `stream_ids` is a selector: see [`crate::select`]. A JSON
//! `null` is the same as a missing field, and Go's zero values (`0`, `""`, the zero time
//! `0001-01-01T00:00:00Z`) mean "unset", as they do for the admin that writes these files.

use chrono::{DateTime, FixedOffset};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

use crate::error::first_line;
use crate::route::JobRouting;
use crate::select::{Rule, RuleMode, StreamSelector};

/// A parse error. `Display` is one line naming the file and, where there is one, the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {what}")]
pub struct JobFileError {
    /// The file's name: `config.json` or `files.json`.
    pub file: &'static str,
    /// What is wrong, naming the field or entry where there is one.
    pub what: String,
}

fn err(file: &'static str, what: impl Into<String>) -> JobFileError {
    JobFileError { file, what: what.into() }
}

/// Bound on the decompressed size of a mounted file, in bytes: both are small, and a hostile
/// or corrupt gzip must not expand without limit.
pub(crate) const MAX_MOUNTED_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Default `batch_size` (records per Kafka batch) when the config leaves it unset.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Default `retry_attempts` (attempts at a file in all) when the config leaves it unset or 0.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 3;

/// The job options from `config.json`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOptions {
    /// `batch_size`: records per Kafka batch ([`DEFAULT_BATCH_SIZE`] when unset or 0).
    pub batch_size: usize,
    /// `stream_ids`: which streams, and in map form their connection ids.
    pub stream_ids: StreamSelector,
    /// `connections_filter`: what a map rule's ids mean.
    pub rule_mode: RuleMode,
    /// `connection_ids`: the ids every line is routed to (empty entries dropped); empty: the
    /// streams repository's. Never given with a `stream_ids` map.
    pub connection_ids: Vec<String>,
    /// `events`: the event types that pass (trimmed, empty entries dropped); empty: all.
    pub events: Vec<String>,
    /// `date_from`: lines whose `messageCreated` is earlier are skipped; `None` when unset.
    pub date_from: Option<DateTime<FixedOffset>>,
    /// `date_to`: lines whose `messageCreated` is later are skipped; `None` when unset.
    pub date_to: Option<DateTime<FixedOffset>>,
    /// Attempts at a file in all, the first included, as the Go worker counts them (≥ 1).
    pub retry_attempts: u32,
    /// `dry_run`: the same pipeline without Kafka; lines that would be sent count as success.
    pub dry_run: bool,
    /// `start_file`: the file to start at, as the operator typed it (matched against
    /// files.json by [`crate::resume::rule::find_start_file`]); `None` when unset or empty.
    pub start_file: Option<String>,
    /// `start_line`: how many of `start_file`'s first lines are skipped (the last line already
    /// done); 0: none.
    pub start_line: u64,
    /// Most lines this worker delivers; `None` means no limit.
    pub limit: Option<u64>,
    /// The job's rate limit in lines a second, shared by the workers that run at once.
    pub max_events_per_sec: Option<u64>,
    /// The job's rate limit in bytes of values a second, shared likewise.
    pub max_bytes_per_sec: Option<u64>,
    /// How many workers the admin runs at once (the Job's `parallelism`).
    pub parallel_workers: Option<u64>,
    /// The config as JSON text (decompressed), stored in the job row when the worker creates it.
    pub raw_json: String,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            stream_ids: StreamSelector::All,
            rule_mode: RuleMode::Override,
            connection_ids: Vec::new(),
            events: Vec::new(),
            date_from: None,
            date_to: None,
            retry_attempts: DEFAULT_RETRY_ATTEMPTS,
            dry_run: false,
            start_file: None,
            start_line: 0,
            limit: None,
            max_events_per_sec: None,
            max_bytes_per_sec: None,
            parallel_workers: None,
            raw_json: "{}".into(),
        }
    }
}

impl JobOptions {
    /// How the job routes lines.
    pub fn routing(&self) -> JobRouting<'_> {
        JobRouting { selector: &self.stream_ids, mode: self.rule_mode, connection_ids: &self.connection_ids }
    }
}

/// One entry of `files.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// `s3://bucket/key` or a local path.
    pub path: String,
    /// Size in bytes as the admin listed it (0 when unknown).
    pub size: u64,
}

/// `raw`, decompressed when it is gzip or zstd (by its magic bytes, as the data files are),
/// at most [`MAX_MOUNTED_FILE_BYTES`].
pub(crate) fn decompressed(file: &'static str, raw: &[u8]) -> Result<Vec<u8>, JobFileError> {
    match crate::decode::decode_bounded(raw, MAX_MOUNTED_FILE_BYTES) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(err(file, format!("larger than {MAX_MOUNTED_FILE_BYTES} bytes when decompressed"))),
        Err((codec, e)) => Err(err(file, format!("invalid {codec:?} data: {e}"))),
    }
}

fn parse_json(file: &'static str, bytes: &[u8]) -> Result<Value, JobFileError> {
    sonic_rs::from_slice::<Value>(bytes).map_err(|e| err(file, format!("invalid JSON: {}", first_line(&e.to_string()))))
}

fn type_name(v: &Value) -> &'static str {
    if v.is_null() {
        "null"
    } else if v.is_boolean() {
        "a boolean"
    } else if v.is_number() {
        "a number"
    } else if v.is_str() {
        "a string"
    } else if v.is_array() {
        "an array"
    } else {
        "an object"
    }
}

/// A field that is absent or `null` is `None`.
fn field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn int_field(file: &'static str, obj: &Value, name: &str) -> Result<Option<i64>, JobFileError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| err(file, format!("field {name}: expected an integer, got {}", type_name(v)))),
    }
}

fn str_field<'a>(file: &'static str, obj: &'a Value, name: &str) -> Result<Option<&'a str>, JobFileError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| err(file, format!("field {name}: expected a string, got {}", type_name(v)))),
    }
}

fn string_list(file: &'static str, obj: &Value, name: &str) -> Result<Vec<String>, JobFileError> {
    let Some(v) = field(obj, name) else { return Ok(Vec::new()) };
    let arr = v
        .as_array()
        .ok_or_else(|| err(file, format!("field {name}: expected an array of strings, got {}", type_name(v))))?;
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| err(file, format!("field {name}[{i}]: expected a string, got {}", type_name(item))))
        })
        .filter(|r| !matches!(r, Ok(s) if s.is_empty()))
        .collect()
}

fn bool_field(file: &'static str, obj: &Value, name: &str) -> Result<bool, JobFileError> {
    match field(obj, name) {
        None => Ok(false),
        Some(b) => {
            b.as_bool().ok_or_else(|| err(file, format!("field {name}: expected a boolean, got {}", type_name(b))))
        }
    }
}

/// `stream_ids`: absent or `null`, a list of stream ids, or a map from stream id (or `"*"`) to
/// a connection id or a list of them. Empty strings are dropped from lists.
fn stream_selector(file: &'static str, obj: &Value) -> Result<StreamSelector, JobFileError> {
    const NAME: &str = "stream_ids";
    let Some(v) = field(obj, NAME) else { return Ok(StreamSelector::All) };
    if v.is_array() {
        return string_list(file, obj, NAME).map(StreamSelector::List);
    }
    let map = v.as_object().ok_or_else(|| {
        err(file, format!("field {NAME}: expected null, an array of strings or an object, got {}", type_name(v)))
    })?;
    let rules = map
        .iter()
        .map(|(stream, value)| {
            let at = |what: &str| err(file, format!("field {NAME}.{stream}: {what}"));
            let ids = if let Some(s) = value.as_str() {
                vec![s.to_owned()]
            } else if value.is_null() {
                Vec::new()
            } else if let Some(arr) = value.as_array() {
                arr.iter()
                    .map(|id| {
                        id.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| at(&format!("expected strings, got {}", type_name(id))))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                return Err(at(&format!("expected a string or an array of strings, got {}", type_name(value))));
            };
            Ok(Rule { stream: stream.to_owned(), ids: ids.into_iter().filter(|s| !s.is_empty()).collect() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StreamSelector::Map(rules))
}

/// Parses an RFC 3339 time; Go's zero time and the empty string mean unset.
fn date_field(file: &'static str, obj: &Value, name: &str) -> Result<Option<DateTime<FixedOffset>>, JobFileError> {
    let Some(s) = str_field(file, obj, name)? else { return Ok(None) };
    if s.is_empty() {
        return Ok(None);
    }
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| err(file, format!("field {name}: not an RFC 3339 time ({e}): {s:?}")))?;
    Ok((t.timestamp() != ZERO_TIME_UNIX).then_some(t))
}

/// `0001-01-01T00:00:00Z` as Unix seconds: Go's `time.Time{}`, which the admin writes for unset.
const ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// Parses `config.json` (plain, gzip or zstd).
pub fn parse_job_config(raw: &[u8]) -> Result<JobOptions, JobFileError> {
    const F: &str = "config.json";
    let bytes = decompressed(F, raw)?;
    let v = parse_json(F, &bytes)?;
    if !v.is_object() {
        return Err(err(F, format!("expected a JSON object, got {}", type_name(&v))));
    }
    let non_negative = |name: &str| -> Result<Option<u64>, JobFileError> {
        match int_field(F, &v, name)? {
            Some(n) if n < 0 => Err(err(F, format!("field {name}: must not be negative, got {n}"))),
            other => Ok(other.map(|n| n as u64)),
        }
    };
    let batch_size = match non_negative("batch_size")? {
        None | Some(0) => DEFAULT_BATCH_SIZE,
        Some(n) => usize::try_from(n).map_err(|_| err(F, "field batch_size: too large"))?,
    };
    let retry_attempts = match non_negative("retry_attempts")? {
        None | Some(0) => DEFAULT_RETRY_ATTEMPTS,
        Some(n) => u32::try_from(n).map_err(|_| err(F, "field retry_attempts: too large"))?,
    };
    let opts = JobOptions {
        batch_size,
        stream_ids: stream_selector(F, &v)?,
        rule_mode: RuleMode::from_flag(bool_field(F, &v, "connections_filter")?),
        connection_ids: string_list(F, &v, "connection_ids")?,
        events: string_list(F, &v, "events")?
            .into_iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect(),
        date_from: date_field(F, &v, "date_from")?,
        date_to: date_field(F, &v, "date_to")?,
        retry_attempts,
        dry_run: bool_field(F, &v, "dry_run")?,
        start_file: str_field(F, &v, "start_file")?.filter(|s| !s.is_empty()).map(str::to_owned),
        start_line: non_negative("start_line")?.unwrap_or(0),
        limit: non_negative("limit")?.filter(|&n| n > 0),
        max_events_per_sec: non_negative("max_events_per_sec")?.filter(|&n| n > 0),
        max_bytes_per_sec: non_negative("max_bytes_per_sec")?.filter(|&n| n > 0),
        parallel_workers: non_negative("parallel_workers")?.filter(|&n| n > 0),
        raw_json: String::from_utf8_lossy(&bytes).into_owned(),
    };
    if matches!(opts.stream_ids, StreamSelector::Map(_)) && !opts.connection_ids.is_empty() {
        return Err(err(
            F,
            "fields connection_ids and stream_ids: connection_ids cannot be combined with a stream_ids map \
             (the map's rules give each stream its connection ids)",
        ));
    }
    if opts.start_line > 0 && opts.start_file.is_none() {
        return Err(err(F, "field start_line: needs start_file (the file whose first lines it skips)"));
    }
    if let (Some(from), Some(to)) = (opts.date_from, opts.date_to) {
        if from > to {
            return Err(err(F, format!("date_from ({from}) is after date_to ({to})")));
        }
    }
    Ok(opts)
}

/// Parses `files.json` (plain, gzip or zstd): a JSON array of `{"path", "size", ...}`.
pub fn parse_files_list(raw: &[u8]) -> Result<Vec<FileEntry>, JobFileError> {
    const F: &str = "files.json";
    let bytes = decompressed(F, raw)?;
    let v = parse_json(F, &bytes)?;
    let arr = v.as_array().ok_or_else(|| err(F, format!("expected a JSON array, got {}", type_name(&v))))?;
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(arr.len());
    arr.iter()
        .enumerate()
        .map(|(i, entry)| {
            if !entry.is_object() {
                return Err(err(F, format!("entry {i}: expected an object, got {}", type_name(entry))));
            }
            let at = |e: JobFileError| err(F, format!("entry {i}: {}", e.what));
            let path = str_field(F, entry, "path").map_err(at)?.unwrap_or_default();
            if path.is_empty() {
                return Err(err(F, format!("entry {i}: field path is missing or empty")));
            }
            // Refused here rather than when the worker reaches the file.
            crate::location::Location::parse(path).map_err(|e| err(F, format!("entry {i}: field path: {e}")))?;
            // One file twice would be read twice, and its lines would have two identities.
            if let Some(first) = seen.insert(path, i) {
                return Err(err(F, format!("entries {first} and {i}: the same path {path} twice")));
            }
            let size = match int_field(F, entry, "size").map_err(at)? {
                Some(n) if n < 0 => return Err(err(F, format!("entry {i}: field size: must not be negative"))),
                other => other.unwrap_or(0) as u64,
            };
            Ok(FileEntry { path: path.to_owned(), size })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn defaults_when_empty() {
        assert_eq!(parse_job_config(b"{}").unwrap(), JobOptions::default());
        assert_eq!(parse_job_config(b"{ }").unwrap().raw_json, "{ }");
    }

    #[test]
    fn full_config_and_ignored_admin_fields() {
        let c = parse_job_config(
            br#"{"batch_size":50,"stream_ids":["s1","s2"],"connection_ids":["c1"],
                "date_from":"2024-01-01T00:00:00Z","date_to":"2024-01-02T00:00:00.5+02:00",
                "retry_attempts":5,"dry_run":true,"start_file":"a.ndjson","start_line":7,"limit":100,
                "max_events_per_sec":20000,"max_bytes_per_sec":0,"parallel_workers":4,
                "s3_path":"s3://b/p","local_path":"/x","files":["a"],"unknown":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(c.batch_size, 50);
        assert_eq!(c.stream_ids, StreamSelector::List(vec!["s1".into(), "s2".into()]));
        assert_eq!(c.connection_ids, vec!["c1"]);
        assert_eq!(c.date_from.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(c.date_to.unwrap().timestamp_subsec_millis(), 500);
        assert_eq!((c.retry_attempts, c.dry_run, c.start_line, c.limit), (5, true, 7, Some(100)));
        assert_eq!((c.max_events_per_sec, c.max_bytes_per_sec, c.parallel_workers), (Some(20_000), None, Some(4)));
        assert_eq!(c.start_file.as_deref(), Some("a.ndjson"));
    }

    #[test]
    fn go_zero_values_mean_unset() {
        let c = parse_job_config(
            br#"{"batch_size":0,"retry_attempts":0,"limit":0,"date_from":"0001-01-01T00:00:00Z",
                "date_to":"","start_file":"","stream_ids":null,"connection_ids":[]}"#,
        )
        .unwrap();
        assert_eq!(c, JobOptions { raw_json: c.raw_json.clone(), ..JobOptions::default() });
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (json, needle) in [
            (r#"{"batch_size":"10"}"#, "field batch_size: expected an integer, got a string"),
            (r#"{"stream_ids":"s1"}"#, "field stream_ids: expected null, an array of strings or an object"),
            (r#"{"stream_ids":{"s1":1}}"#, "field stream_ids.s1: expected a string or an array of strings"),
            (r#"{"stream_ids":{"s1":["c1",2]}}"#, "field stream_ids.s1: expected strings, got a number"),
            (r#"{"connections_filter":"yes"}"#, "field connections_filter: expected a boolean"),
            (r#"{"events":"track"}"#, "field events: expected an array of strings"),
            (r#"{"stream_ids":{"s1":"c1"},"connection_ids":["c2"]}"#, "fields connection_ids and stream_ids"),
            (r#"{"stream_ids":[1]}"#, "field stream_ids[0]: expected a string, got a number"),
            (r#"{"dry_run":"yes"}"#, "field dry_run: expected a boolean"),
            (r#"{"date_from":"yesterday"}"#, "field date_from: not an RFC 3339 time"),
            (r#"{"limit":-1}"#, "field limit: must not be negative"),
            (r#"{"start_line":10}"#, "field start_line: needs start_file"),
            (r#"{"max_events_per_sec":-5}"#, "field max_events_per_sec: must not be negative"),
            (r#"{"max_bytes_per_sec":"fast"}"#, "field max_bytes_per_sec: expected an integer"),
            (r#"{"start_line":1.5}"#, "field start_line: expected an integer"),
            (r#"[]"#, "expected a JSON object, got an array"),
            (r#"{"#, "invalid JSON"),
            (r#"{"date_from":"2024-02-01T00:00:00Z","date_to":"2024-01-01T00:00:00Z"}"#, "is after date_to"),
        ] {
            let e = parse_job_config(json.as_bytes()).unwrap_err();
            assert_eq!(e.file, "config.json");
            assert!(e.to_string().contains(needle), "{json}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn stream_selector_shapes() {
        let sel = |json: &str| parse_job_config(json.as_bytes()).unwrap().stream_ids;
        let list = |v: &[&str]| StreamSelector::List(v.iter().map(|s| s.to_string()).collect());
        let rule = |s: &str, ids: &[&str]| Rule { stream: s.into(), ids: ids.iter().map(|i| i.to_string()).collect() };
        assert_eq!(sel("{}"), StreamSelector::All);
        assert_eq!(sel(r#"{"stream_ids":null}"#), StreamSelector::All);
        assert_eq!(sel(r#"{"stream_ids":[]}"#), list(&[]), "explicitly empty selects no stream");
        assert_eq!(sel(r#"{"stream_ids":{}}"#), StreamSelector::Map(vec![]));
        assert_eq!(sel(r#"{"stream_ids":["s1","","s2"]}"#), list(&["s1", "s2"]));
        assert_eq!(
            sel(r#"{"stream_ids":{"s1":["c1","c2"],"s2":"c3","s3":[],"s4":null,"*":"*"}}"#),
            StreamSelector::Map(vec![
                rule("s1", &["c1", "c2"]),
                rule("s2", &["c3"]),
                rule("s3", &[]),
                rule("s4", &[]),
                rule("*", &["*"]),
            ])
        );
        // A list selector with connection_ids keeps its meaning.
        let c = parse_job_config(br#"{"stream_ids":["s1"],"connection_ids":["c1"]}"#).unwrap();
        assert_eq!((c.stream_ids, c.connection_ids), (list(&["s1"]), vec!["c1".to_string()]));
    }

    #[test]
    fn connections_filter_and_events() {
        let c = parse_job_config(br#"{"connections_filter":true,"events":[" page ","","track","  "]}"#).unwrap();
        assert_eq!(c.rule_mode, RuleMode::Filter);
        assert_eq!(c.events, vec!["page", "track"]);
        let c = parse_job_config(br#"{"connections_filter":false,"events":[]}"#).unwrap();
        assert_eq!((c.rule_mode, c.events.len()), (RuleMode::Override, 0));
        assert_eq!(parse_job_config(br#"{"events":null}"#).unwrap().events.len(), 0);
    }

    /// A config as today's admin writes it: every field it sets, Go's zero values included.
    #[test]
    fn admin_written_config() {
        let c = parse_job_config(
            br#"{"s3_path":"","gcs_path":"gs://b/failover/","local_path":"","files":null,
                "stream_ids":{"s1":["c1"],"*":"*"},"connections_filter":false,"connection_ids":null,
                "events":["track"],"date_from":"0001-01-01T00:00:00Z","date_to":"0001-01-01T00:00:00Z",
                "batch_size":0,"retry_attempts":0,"dry_run":false,"start_file":"","start_line":0,
                "limit":0,"parallel_workers":4}"#,
        )
        .unwrap();
        assert!(matches!(c.stream_ids, StreamSelector::Map(ref r) if r.len() == 2));
        assert_eq!(
            (c.date_from, c.date_to, c.batch_size, c.parallel_workers),
            (None, None, DEFAULT_BATCH_SIZE, Some(4))
        );
    }

    #[test]
    fn files_list_plain_and_gzip() {
        let json = br#"[{"path":"s3://b/k1.ndjson.gz","size":10,"last_modified":"2024-01-01T00:00:00Z"},{"path":"/data/f.ndjson"}]"#;
        let want = vec![
            FileEntry { path: "s3://b/k1.ndjson.gz".into(), size: 10 },
            FileEntry { path: "/data/f.ndjson".into(), size: 0 },
        ];
        assert_eq!(parse_files_list(json).unwrap(), want);
        assert_eq!(parse_files_list(&gzip(json)).unwrap(), want);
        assert_eq!(parse_files_list(&zstd::encode_all(&json[..], 3).unwrap()).unwrap(), want);
        assert_eq!(parse_files_list(b"[]").unwrap(), vec![]);
    }

    #[test]
    fn files_list_errors_name_entry_and_field() {
        for (json, needle) in [
            (r#"{}"#, "expected a JSON array"),
            (r#"[1]"#, "entry 0: expected an object"),
            (r#"[{"path":"a"},{"size":1}]"#, "entry 1: field path is missing"),
            (r#"[{"path":5}]"#, "entry 0: field path: expected a string"),
            (r#"[{"path":"a","size":"big"}]"#, "entry 0: field size: expected an integer"),
            (r#"[{"path":"s3://bucket"}]"#, "entry 0: field path: s3://bucket: expected s3://bucket/key"),
            (r#"[{"path":"gs:///o"}]"#, "entry 0: field path: gs:///o: expected gs://bucket/"),
            (r#"[{"path":"a"},{"path":"b"},{"path":"a"}]"#, "entries 0 and 2: the same path a twice"),
        ] {
            let e = parse_files_list(json.as_bytes()).unwrap_err();
            assert!(e.to_string().starts_with("files.json: "), "{e}");
            assert!(e.to_string().contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut g = gzip(b"[]");
        g.truncate(g.len() - 4);
        assert!(parse_files_list(&g).unwrap_err().to_string().contains("invalid Gzip data"));
        let mut z = zstd::encode_all(&b"[]"[..], 3).unwrap();
        z.truncate(z.len() - 2);
        assert!(parse_files_list(&z).unwrap_err().to_string().contains("invalid Zstd data"));
    }
}
