//! Helpers for the integration tests: they run the real binary against the real services
//! started by `scripts/services.sh` (PostgreSQL, tansu, moto) and read Kafka back with kcat,
//! a librdkafka client nobody here wrote.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use sonic_rs::{JsonContainerTrait, JsonValueTrait};

pub mod cluster;
pub mod fault_proxy;
pub mod tcp_proxy;

/// True when this test must be skipped because the services are not configured: a plain
/// `cargo test` on a fresh checkout. It says so on the terminal, with the way to run them.
/// Under CI (`CI=true`) or `scripts/test.sh` (`RW_REQUIRE_SERVICES=1`), missing services are
/// a failure instead.
pub fn skip_without_services(test: &str) -> bool {
    let missing: Vec<&str> = ["DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "RW_TANSU_BIN"]
        .into_iter()
        .filter(|v| std::env::var(v).is_err())
        .collect();
    if missing.is_empty() {
        return false;
    }
    let required = |v: &str| std::env::var(v).is_ok_and(|x| x == "true" || x == "1");
    if required("CI") || required("RW_REQUIRE_SERVICES") {
        panic!("{test}: the services are required here, but {} is not set", missing.join(", "));
    }
    // Straight to the terminal: the test harness captures println! of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: needs PostgreSQL, Kafka and S3 ({} not set); run scripts/test.sh",
        missing.join(", ")
    );
    true
}

/// Opens a test that needs the services: `needs_services!()` returns from the test when
/// [`skip_without_services`] says so (a skip said on the terminal, or a panic where the services
/// are required); `needs_services!(check)` asks `check(test name)` instead. The test's name is
/// its function's.
macro_rules! needs_services {
    () => {
        $crate::common::needs_services!($crate::common::skip_without_services)
    };
    ($skip:path) => {
        if $skip({
            fn here() {}
            $crate::common::test_name(std::any::type_name_of_val(&here))
        }) {
            return;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use needs_services;

/// The test function's name from the type name of an item in it (`e2e::a_test::here`, or
/// `e2e::a_test::{{closure}}::here` in an async test).
pub fn test_name(path: &'static str) -> &'static str {
    path.rsplit("::").find(|s| *s != "here" && *s != "{{closure}}").unwrap_or(path)
}

pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the integration tests through scripts/test.sh"))
}

/// A name unique to this test run.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    format!("{prefix}-{}-{t}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn create_topic(name: &str, partitions: u32) {
    create_topic_on(&env("KAFKA_BOOTSTRAP_SERVERS"), name, partitions)
}

pub fn create_topic_on(bootstrap: &str, name: &str, partitions: u32) {
    let out = Command::new(env("RW_TANSU_BIN"))
        .args(["topic", "create", name, "--partitions", &partitions.to_string(), "--broker"])
        .arg(format!("tcp://{bootstrap}"))
        .output()
        .expect("tansu topic create");
    assert!(out.status.success(), "topic create: {}", String::from_utf8_lossy(&out.stderr));
}

/// One message as kcat saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Msg {
    pub topic: String,
    pub partition: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub value: String,
    /// The record's timestamp, in milliseconds since the epoch.
    pub ts: i64,
}

/// Reads a whole topic with kcat (`-J`: header values may contain commas).
pub fn consume(topic: &str) -> Vec<Msg> {
    consume_from(&env("KAFKA_BOOTSTRAP_SERVERS"), topic)
}

/// The records of a topic whose `connection_ids` header is `header`, read with kcat and
/// filtered as they stream by (a live topic holds millions of other records; `-J` and a
/// parse of each would take minutes).
pub fn consume_header(bootstrap: &str, topic: &str, header: &str) -> Vec<Msg> {
    let out = Command::new("kcat")
        .env("LD_LIBRARY_PATH", env("RW_KCAT_LD_LIBRARY_PATH"))
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%h\t%p\t%T\t%k\t%s\n"])
        .output()
        .expect("kcat");
    assert!(out.status.success(), "kcat: {}", String::from_utf8_lossy(&out.stderr));
    let want = format!("connection_ids={header}\t");
    let text = String::from_utf8(out.stdout).expect("kcat output is UTF-8");
    text.lines()
        .filter_map(|l| l.strip_prefix(want.as_str()))
        .map(|rest| {
            let mut f = rest.splitn(4, '\t');
            let mut next = || f.next().unwrap_or_else(|| panic!("kcat line {rest}"));
            let (partition, ts, key, value) = (next().parse().unwrap(), next().parse().unwrap(), next(), next());
            Msg {
                topic: topic.to_owned(),
                partition,
                key: Some(key.to_owned()),
                headers: vec![("connection_ids".to_owned(), header.to_owned())],
                value: value.to_owned(),
                ts,
            }
        })
        .collect()
}

/// Reads a whole topic of the broker at `bootstrap`.
pub fn consume_from(bootstrap: &str, topic: &str) -> Vec<Msg> {
    consume_with(bootstrap, topic, &[])
}

/// Reads a whole topic with extra kcat arguments (`-X security.protocol=ssl`, ...).
pub fn consume_with(bootstrap: &str, topic: &str, extra: &[&str]) -> Vec<Msg> {
    let out = Command::new("kcat")
        .env("LD_LIBRARY_PATH", env("RW_KCAT_LD_LIBRARY_PATH"))
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J"])
        .args(extra)
        .output()
        .expect("kcat");
    assert!(out.status.success(), "kcat: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("kcat output is UTF-8");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: sonic_rs::Value = sonic_rs::from_str(l).unwrap_or_else(|e| panic!("kcat line {l}: {e}"));
            let headers = v
                .get("headers")
                .and_then(|h| h.as_array())
                .map(|a| {
                    let items: Vec<String> = a.iter().map(|x| x.as_str().unwrap_or("").to_string()).collect();
                    items.chunks(2).map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default())).collect()
                })
                .unwrap_or_default();
            Msg {
                topic: v.get("topic").and_then(|x| x.as_str()).unwrap().to_string(),
                partition: v.get("partition").and_then(|x| x.as_i64()).unwrap(),
                key: v.get("key").and_then(|x| x.as_str()).map(str::to_string),
                headers,
                value: v.get("payload").and_then(|x| x.as_str()).unwrap_or("").to_string(),
                ts: v.get("ts").and_then(|x| x.as_i64()).unwrap_or(0),
            }
        })
        .collect()
}

/// Writes records as another producer would, with librdkafka (kcat): each `(key, value)`
/// with the header `connection_ids` = `header`, spread by librdkafka's partitioner.
pub fn produce_as_another(bootstrap: &str, topic: &str, header: &str, records: &[(String, String)]) {
    use std::io::Write;
    let mut child = Command::new("kcat")
        .env("LD_LIBRARY_PATH", env("RW_KCAT_LD_LIBRARY_PATH"))
        .args(["-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-H"])
        .arg(format!("connection_ids={header}"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kcat");
    let mut stdin = child.stdin.take().unwrap();
    for (k, v) in records {
        writeln!(stdin, "{k}\t{v}").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "kcat -P failed");
}

/// A job on disk: its config.json and files.json, and a directory for data files.
pub struct Job {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub topic: String,
    pub extra_env: Vec<(String, String)>,
}

impl Job {
    pub fn new(topic_partitions: u32) -> Job {
        let job = Job::bare();
        create_topic(&job.topic, topic_partitions);
        job
    }

    /// A job whose topic is not created (on another cluster, or missing on purpose).
    pub fn bare() -> Job {
        Job { id: unique("job"), dir: tempfile::tempdir().unwrap(), topic: unique("topic"), extra_env: Vec::new() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.path(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p.display().to_string()
    }

    pub fn config(&self, json: &str) {
        self.write("config.json", json.as_bytes());
    }

    /// files.json from (path, size) pairs.
    pub fn files(&self, files: &[(String, u64)]) {
        let entries: Vec<String> = files.iter().map(|(p, s)| format!(r#"{{"path":"{p}","size":{s}}}"#)).collect();
        self.write("files.json", format!("[{}]", entries.join(",")).as_bytes());
    }

    /// The paths files.json lists, in order.
    pub fn listed(&self) -> Vec<String> {
        let json = std::fs::read_to_string(self.path("files.json")).expect("files.json");
        let v: sonic_rs::Value = sonic_rs::from_str(&json).expect("files.json is JSON");
        let files = v.as_array().expect("files.json is an array");
        files.iter().map(|f| f.get("path").and_then(|p| p.as_str()).expect("a path").to_owned()).collect()
    }

    /// Runs worker `index` of `total` to its end.
    pub fn run(&self, index: u32, total: u32) -> Output {
        self.command(index, total).output().expect("run worker")
    }

    pub fn command(&self, index: u32, total: u32) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_reprocessing-worker"));
        for v in [
            "JOB_ID",
            "WORKER_INDEX",
            "JOB_COMPLETION_INDEX",
            "TOTAL_WORKERS",
            "REPOSITORY_URL",
            "REPOSITORY_AUTH_TOKEN",
            "KAFKA_SASL",
            "KAFKA_SECURITY_PROTOCOL",
        ] {
            c.env_remove(v);
        }
        c.env("JOB_ID", &self.id)
            .env("WORKER_INDEX", index.to_string())
            .env("TOTAL_WORKERS", total.to_string())
            .env("DATABASE_URL", env("DATABASE_URL"))
            .env("KAFKA_BOOTSTRAP_SERVERS", env("KAFKA_BOOTSTRAP_SERVERS"))
            .env("KAFKA_DESTINATIONS_TOPIC", &self.topic)
            .env("FILES_CONFIG_PATH", self.path("files.json"))
            .env("JOB_CONFIG_PATH", self.path("config.json"))
            .env("KAFKA_CONNECT_TIMEOUT_SECS", "10")
            .env("RUST_LOG", "info");
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "worker exited with {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The worker's row, as a map of column name to text (NULL is absent).
pub fn row(job: &str, index: i32) -> BTreeMap<String, String> {
    try_row(job, index).unwrap_or_else(|| panic!("no row for {job}/{index}"))
}

/// The worker's row, if there is one yet.
pub fn try_row(job: &str, index: i32) -> Option<BTreeMap<String, String>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&env("DATABASE_URL"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let r = client
            .query_opt(
                "SELECT status, started_at::text, completed_at::text, current_file, current_line::text, current_ts,
                        assigned_files::text, processed_files::text, total_lines::text, success_count::text,
                        error_count::text, skipped_count::text, total_bytes::text, processed_bytes::text, error,
                        (EXTRACT(EPOCH FROM NOW() - updated_at) * 1000)::bigint::text
                 FROM reprocessing_workers WHERE job_id = $1 AND worker_index = $2",
                &[&job, &index],
            )
            .await
            .unwrap_or_else(|e| panic!("reading the row of {job}/{index}: {e:?}"))?;
        let names = [
            "status",
            "started_at",
            "completed_at",
            "current_file",
            "current_line",
            "current_ts",
            "assigned_files",
            "processed_files",
            "total_lines",
            "success_count",
            "error_count",
            "skipped_count",
            "total_bytes",
            "processed_bytes",
            "error",
            // Milliseconds since the row was last written (the database's clock).
            "age_ms",
        ];
        names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| r.get::<_, Option<String>>(i).map(|v| (n.to_string(), v)))
            .collect::<BTreeMap<_, _>>()
            .into()
    })
}

/// A row a SIGTERM ended: `failed` in the admin's column (which knows no `cancelled`), with
/// the cancellation and the row's own resume point in `error`.
pub fn assert_cancelled(row: &BTreeMap<String, String>) {
    assert_eq!(row["status"], "failed", "{row:?}");
    let error = row.get("error").map(String::as_str).unwrap_or_default();
    assert!(error.starts_with("cancelled by SIGTERM"), "{row:?}");
    if let Some(file) = row.get("current_file") {
        let point = format!("{file} line {}", row["current_line"]);
        assert!(error.contains(&point), "the resume point {point:?} is in the error: {row:?}");
    }
}

/// Runs `sql` as the test database's superuser.
pub async fn as_owner(sql: &str) {
    let (client, conn) = tokio_postgres::connect(&env("DATABASE_URL"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// One value of a query, as text, run by the superuser.
pub async fn owner_value(sql: &str) -> Option<String> {
    let (client, conn) = tokio_postgres::connect(&env("DATABASE_URL"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.query_opt(sql, &[]).await.unwrap().and_then(|r| r.get(0))
}

/// The role of [`locked_schema`].
pub const LOCKED_ROLE: &str = "rw_locked_role";

/// A schema holding only the admin's tables, and the URL of a role that may write only the
/// worker rows there: the locked-down database of an operator whose workers may not create
/// tables. Returns the schema and the URL (its `search_path` is the schema).
pub async fn locked_schema() -> (String, String) {
    let schema = unique("locked").replace('-', "_");
    let ddl = reprocessing_worker::status::DDL;
    as_owner(&format!(
        "DO $$ BEGIN CREATE ROLE {LOCKED_ROLE} LOGIN PASSWORD 'locked-role-pass';
             EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         CREATE SCHEMA {schema}; SET search_path = {schema}; {ddl}
         GRANT USAGE ON SCHEMA {schema} TO {LOCKED_ROLE};
         GRANT SELECT, INSERT, UPDATE ON {schema}.reprocessing_workers TO {LOCKED_ROLE};"
    ))
    .await;
    let url = env("DATABASE_URL");
    let (_, at) = url.split_once('@').unwrap();
    (schema.clone(), format!("postgres://{LOCKED_ROLE}:locked-role-pass@{at}?options=-c%20search_path%3D{schema}"))
}

pub fn num(row: &BTreeMap<String, String>, col: &str) -> u64 {
    row.get(col).unwrap_or_else(|| panic!("{col} is NULL")).parse().unwrap()
}

/// Asserts the row's counters add up and match.
pub fn assert_counts(row: &BTreeMap<String, String>, success: u64, error: u64, skipped: u64) {
    assert_eq!(
        (num(row, "success_count"), num(row, "error_count"), num(row, "skipped_count")),
        (success, error, skipped),
        "row {row:?}"
    );
    assert_eq!(num(row, "total_lines"), success + error + skipped, "row {row:?}");
}

/// Uploads `bytes` to S3 (moto) and returns the s3:// URL.
pub fn put_s3(bucket: &str, key: &str, bytes: Vec<u8>) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s3 = reprocessing_worker::source::s3_client().await;
        let _ = s3.create_bucket().bucket(bucket).send().await;
        s3.put_object().bucket(bucket).key(key).body(bytes.into()).send().await.expect("put_object");
    });
    format!("s3://{bucket}/{key}")
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A realistic Jitsu IngestMessage line.
pub fn event(i: usize, source: &str, created: &str) -> String {
    format!(
        concat!(
            r#"{{"ingestType":"s2s","messageCreated":"{created}","messageId":"msg-{i}","writeKey":"wk","#,
            r#""type":"track","origin":{{"baseUrl":"https://ex.com","slug":"slug-{source}","#,
            r#""sourceId":"{source}","domain":"ex.com"}},"httpHeaders":{{"user-agent":"test"}},"#,
            r#""httpPayload":{{"type":"track","event":"e{i}","properties":{{"n":{i},"s":"\u00e9\"q"}},"#,
            r#""context":{{"ip":"1.2.3.4"}}}}}}"#
        ),
        created = created,
        i = i,
        source = source,
    )
}

/// The condition of the README's "no duplicates" promise, from one run's log (never several
/// joined: one run's read-back would stand for another's): a run that resumed and started
/// sending (`resumed=true` on the pipeline's start line) read its topic back first (`read back
/// the topic …`), or had nothing to (no earlier run sent a line: `NOTHING_SENT_BEFORE`), and
/// the run never fell back to sending lines again unseen (a warning with a `fallback=` field:
/// an incomplete read-back, a lost answer not looked for). `resumed`: this run must have
/// resumed and sent. Returns why not, if it does not hold.
pub fn duplicate_promise_broken(log: &str, resumed: bool) -> Option<String> {
    let sending = reprocessing_worker::worker::SENDING;
    let started = log.lines().find(|l| l.contains(sending));
    if resumed && !started.is_some_and(|l| l.contains("resumed=true")) {
        return Some("the run did not resume and send".into());
    }
    let nothing_sent_before = log.contains(reprocessing_worker::resume::NOTHING_SENT_BEFORE);
    if started.is_some_and(|l| l.contains("resumed=true"))
        && !log.contains("read back the topic")
        && !nothing_sent_before
    {
        return Some("a resume sent lines without reading its topic back".into());
    }
    if let Some(l) = log.lines().find(|l| l.contains(" fallback=")) {
        return Some(format!("the run fell back to sending lines again unseen: {l}"));
    }
    None
}

/// Each run's log (`logs`, in order) kept the promise's condition, `resumed`: whether the last
/// run must have resumed.
#[track_caller]
pub fn assert_each_run_kept_the_promise(logs: &[String], resumed_last: bool, what: &str) {
    for (i, log) in logs.iter().enumerate() {
        assert_duplicate_promise_kept(log, resumed_last && i + 1 == logs.len(), &format!("{what}, run {i}"));
    }
}

/// Panics when [`duplicate_promise_broken`], with `what` and the reason first, then the log's
/// warnings and errors and the lines about resuming and reading back (a long run's INFO lines
/// would bury them).
#[track_caller]
pub fn assert_duplicate_promise_kept(log: &str, resumed: bool, what: &str) {
    let Some(why) = duplicate_promise_broken(log, resumed) else { return };
    let telling = |l: &&str| {
        [" WARN ", " ERROR ", "read back", "read-back", "sent again", "resum", "pipeline starts"]
            .iter()
            .any(|p| l.contains(p))
    };
    let short = log.lines().count() <= 80;
    let lines: Vec<&str> = log.lines().filter(|l| short || telling(l)).take(80).collect();
    panic!(
        "{what}: the promise's condition is broken: {why}\n{} of the log's {} lines:\n{}",
        lines.len(),
        log.lines().count(),
        lines.join("\n")
    );
}

/// The resume's read-back in one run's log: (records read, this worker's records found,
/// partitions incomplete), from its `read back the topic` line; `None` without one.
pub fn read_back_line(log: &str) -> Option<(u64, u64, u64)> {
    let field = |name| read_back_field(log, name);
    Some((field("records")?, field("ours")?, field("incomplete")?))
}

/// The field `name` of the `read back the topic` line in one run's log (`partitions`: how
/// many it read); `None` without the line.
pub fn read_back_field(log: &str, name: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("read back the topic"))?;
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.trim_matches('"').parse().ok());
    Some(value.unwrap_or_else(|| panic!("no {name}= in {line}")))
}

/// The key the worker gives line `line` (1-based) of the file at `index` of files.json listed
/// as `path`: the line's identity.
pub fn line_key(job_id: &str, index: usize, path: &str, line: u64) -> String {
    let keys = rw_core::LineKeys::for_job(job_id);
    String::from_utf8(keys.file(index, path).key(line).to_vec()).unwrap()
}

/// Asserts that every message's key is the identity of the line its value came from:
/// `files` lists each file of files.json (its path and its lines, in order), and every value
/// must be one line of them (values repeated in the input must appear with each line's key).
pub fn assert_keys_are_line_identities(job_id: &str, files: &[(&str, &[String])], msgs: &[Msg]) {
    let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (index, (path, lines)) in files.iter().enumerate() {
        for (i, line) in lines.iter().enumerate() {
            *want.entry((line.clone(), line_key(job_id, index, path, i as u64 + 1))).or_default() += 1;
        }
    }
    let mut got: BTreeMap<(String, String), u64> = BTreeMap::new();
    for m in msgs {
        let key = m.key.clone().unwrap_or_default();
        let id = uuid::Uuid::parse_str(&key).unwrap_or_else(|e| panic!("key {key:?} is not a UUID: {e}"));
        assert_eq!(id.get_version_num(), 8, "key {key}");
        *got.entry((m.value.clone(), key)).or_default() += 1;
    }
    assert_eq!(got, want, "each message keyed by its line's identity");
}

pub fn values(msgs: &[Msg]) -> Vec<String> {
    let mut v: Vec<String> = msgs.iter().map(|m| m.value.clone()).collect();
    v.sort();
    v
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn read_to_string(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// A tiny HTTP server for the streams repository; records the Authorization header and
/// counts the requests it answered.
pub struct RepoServer {
    addr: std::net::SocketAddr,
    auth: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RepoServer {
    pub fn start(body: &'static str) -> RepoServer {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let auth = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = auth.clone();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) =
                        line.strip_prefix("authorization: ").or_else(|| line.strip_prefix("Authorization: "))
                    {
                        *seen.lock().unwrap() = Some(v.trim().to_string());
                    }
                    line.clear();
                }
                // Counted before the answer is written: a client that got it sees the count.
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            }
        });
        RepoServer { addr, auth, hits }
    }
    pub fn url(&self) -> String {
        format!("http://{}/api/admin/export/streams-with-destinations", self.addr)
    }
    pub fn auth(&self) -> Option<String> {
        self.auth.lock().unwrap().clone()
    }
    /// How many requests the server has answered.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Every record a job must leave in its topic: each line of its files under the line's key
/// (its identity), and whatever another producer wrote there under its own key.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    /// (key, value) pairs, a line repeated in the input once per copy.
    pub records: Vec<(String, String)>,
}

impl Expected {
    /// The lines of `files` (each listed path in files.json order, with its lines), keyed as
    /// the worker keys them for job `job_id`.
    pub fn of(job_id: &str, files: &[(String, Vec<String>)]) -> Expected {
        let mut e = Expected::default();
        for (index, (path, lines)) in files.iter().enumerate() {
            e.file(job_id, index, path, lines);
        }
        e
    }

    /// Adds the lines of the file at `index` of files.json, listed as `path`.
    pub fn file(&mut self, job_id: &str, index: usize, path: &str, lines: &[String]) {
        let keys = rw_core::LineKeys::for_job(job_id);
        let file = keys.file(index, path);
        for (i, line) in lines.iter().enumerate() {
            let key = String::from_utf8(file.key(i as u64 + 1).to_vec()).unwrap();
            self.records.push((key, line.clone()));
        }
    }

    /// A record another producer wrote.
    pub fn foreign(&mut self, key: &str, value: &str) {
        self.records.push((key.to_owned(), value.to_owned()));
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The values, sorted.
    pub fn values(&self) -> Vec<String> {
        sorted(self.records.iter().map(|(_, v)| v.clone()).collect())
    }
}

/// What the topic holds against what it must: (lost, unexpected, duplicates), each counted by
/// key and value, so that every copy of a repeated line is checked under its own key (a
/// resume that matched one copy's record to another, skipped one and sent the other twice
/// shows as one lost and one duplicate). Prints the fault table's row.
pub fn tally(case: &str, runs: u32, expected: &Expected, msgs: &[Msg], bound: u64) -> (u64, usize, u64) {
    fn count<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> std::collections::HashMap<(&'a str, &'a str), u64> {
        let mut m = std::collections::HashMap::new();
        pairs.for_each(|p| *m.entry(p).or_default() += 1);
        m
    }
    let seen = count(msgs.iter().map(|m| (m.key.as_deref().unwrap_or(""), m.value.as_str())));
    let wanted = count(expected.records.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let lost = wanted.iter().map(|(p, n)| n.saturating_sub(seen.get(p).copied().unwrap_or(0))).sum();
    let unexpected = seen.keys().filter(|p| !wanted.contains_key(*p)).count();
    let dups: u64 = seen.iter().map(|(p, n)| n.saturating_sub(wanted.get(p).copied().unwrap_or(*n))).sum();
    let shown = if bound == u64::MAX { "none promised".to_string() } else { bound.to_string() };
    println!("FAULT|{case}|{runs}|{}|{}|{lost}|{dups}|{shown}", expected.len(), msgs.len());
    (lost, unexpected, dups)
}

/// The keys of the records in the job's topic, on the broker the job uses.
pub fn topic_keys(job: &Job) -> std::collections::HashSet<String> {
    let bootstrap = job
        .extra_env
        .iter()
        .find(|(k, _)| k == "KAFKA_BOOTSTRAP_SERVERS")
        .map_or_else(|| env("KAFKA_BOOTSTRAP_SERVERS"), |(_, v)| v.clone());
    let out = Command::new("kcat")
        .env("LD_LIBRARY_PATH", env("RW_KCAT_LD_LIBRARY_PATH"))
        .args(["-C", "-b", &bootstrap, "-t", &job.topic, "-o", "beginning", "-e", "-q", "-f", "%k\n"])
        .output()
        .expect("kcat");
    assert!(out.status.success(), "kcat: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// Where a kill must land for a resume to have work to do: `kill -9` once the row is `ready`
/// and the topic holds a record of a line past the row's resume point (delivered, but only the
/// read-back can know it). The condition is established, not hoped for from the row's age:
/// the worker is stopped (SIGSTOP), so that neither its row nor its records change, the row
/// and the topic's keys (`keys`: all of them, [`topic_keys`], or where the topic is live the
/// last records of each partition) are read, and it is killed, or let go on and looked at
/// again. Returns how many records of lines past the row the topic held.
pub fn kill_past_its_row(
    child: &mut std::process::Child,
    job: &Job,
    index: i32,
    ready: impl Fn(&BTreeMap<String, String>) -> bool,
    keys_in_topic: impl Fn() -> std::collections::HashSet<String>,
) -> usize {
    let files = job.listed();
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, pid.as_str()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    let keys = rw_core::LineKeys::for_job(&job.id);
    let running_and_ready = |r: &BTreeMap<String, String>| r["status"] == "running" && ready(r);
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("worker {index} ended ({status}) before it could be killed past its row");
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(180),
            "worker {index}: never ready with a record past its row in the topic"
        );
        if !try_row(&job.id, index).is_some_and(|r| running_and_ready(&r)) {
            std::thread::sleep(std::time::Duration::from_millis(5));
            continue;
        }
        signal("-STOP");
        // Stopped: the row read now is the one a resume starts from.
        let r = row(&job.id, index);
        let at = files.iter().position(|p| r.get("current_file") == Some(p)).filter(|_| running_and_ready(&r));
        let past = at.map_or(0, |at| {
            let file = keys.file(at, &files[at]);
            let line = num(&r, "current_line");
            let seen = keys_in_topic();
            (line + 1..=line + 100_000).filter(|&l| seen.contains(std::str::from_utf8(&file.key(l)).unwrap())).count()
        });
        if past > 0 {
            child.kill().unwrap(); // SIGKILL, which a stopped process takes too
            return past;
        }
        signal("-CONT");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
