//! `METRICS_ADDR` on real runs (the binary, PostgreSQL, tansu or librdkafka's mock cluster,
//! kcat): `/readyz` once the worker is connected, `/healthz` while it runs, and `/metrics`
//! scraped while the lines flow, each scrape at or ahead of the status row read just before
//! it (the row trails by at most a second; the metrics are read live) and never past the
//! file; at the end (`METRICS_LINGER_SECS`) the last scrape agrees with the row and with what
//! kcat reads back. `/readyz` turns 503 while every broker is down and 200 again once they
//! are back, while `/healthz` stays 200. The Grafana dashboard in `deploy/grafana` queries
//! only metrics that `/metrics` serves. The running worker has transparent huge pages off,
//! unless `MIMALLOC_ALLOW_THP` asks for them (src/main.rs).

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::MockCluster;
use common::{consume, consume_from, event, num, Job};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

/// The example dashboard.
const DASHBOARD: &str = include_str!("../deploy/grafana/reprocessing-worker.json");

/// One HTTP GET on loopback: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}

/// The value of metric `name` whose labels include each of `labels` (in any order).
fn value(text: &str, name: &str, labels: &[String]) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|kv| l.contains(kv.as_str())))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Whether `text` has a series of `name` (with labels or without).
fn has_series(text: &str, name: &str) -> bool {
    text.lines().any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
}

/// The metric names the dashboard's queries use (`rw_...`, with a histogram's `_bucket` or
/// `_sum` as written).
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let v: sonic_rs::Value = sonic_rs::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    let panels = v.get("panels").and_then(|p| p.as_array()).expect("panels");
    for panel in panels.iter() {
        for t in panel.get("targets").and_then(|t| t.as_array()).expect("targets").iter() {
            exprs.push(t.get("expr").and_then(|e| e.as_str()).expect("expr").to_owned());
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("rw_") {
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    assert!(names.len() >= 10, "the dashboard's queries name the metrics: {names:?}");
    names
}

/// Whether process `pid` may use transparent huge pages (`THP_enabled` in its status, Linux
/// 5.0 and later).
fn thp_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("THP_enabled:"))?;
    Some(line.trim() == "1")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn metrics_follow_the_run_and_agree_with_the_row_and_the_topic() {
    common::needs_services!();
    const N: u64 = 20_000;
    let job = Job::new(3);
    job.config(r#"{"connection_ids":["c"],"batch_size":500}"#);
    let body: String = (0..N as usize).map(|i| event(i, "s", "2024-01-01T00:00:00Z") + "\n").collect();
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    let port = free_port();
    let mut cmd = job.command(0, 1);
    // 5,000 lines a second: about 4 s of run to scrape; then a minute to scrape the end.
    cmd.env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("MAX_EVENTS_PER_SEC", "5000")
        .env("METRICS_LINGER_SECS", "60");
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let ours = [format!(r#"job_id="{}""#, job.id), r#"worker="0""#.to_owned()];
    let acked = [ours[0].clone(), ours[1].clone(), r#"outcome="acknowledged""#.to_owned()];
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ready_seen, mut scrapes) = (false, Vec::new());
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the worker ended before its linger");
        assert!(Instant::now() < deadline, "the run did not end within 60 s");
        let row = common::try_row(&job.id, 0);
        if row.as_ref().is_some_and(|r| r["status"] == "completed") {
            break;
        }
        let row_success = row.map_or(0, |r| num(&r, "success_count"));
        if let Some((200, text)) = get(port, "/metrics") {
            if let Some(v) = value(&text, "rw_lines_total", &acked) {
                assert!(v >= row_success, "scraped {v} acknowledged lines, behind the row's {row_success}");
                assert!(v <= N, "scraped {v} of {N} lines");
                scrapes.push(v);
            }
            assert!(matches!(get(port, "/healthz"), Some((200, _)) | None), "healthy while it runs");
        }
        ready_seen |= matches!(get(port, "/readyz"), Some((200, _)));
        std::thread::sleep(Duration::from_millis(250));
    }
    // The run has ended and its final row is written: the last scrape agrees with it.
    let row = common::row(&job.id, 0);
    let (code, text) = get(port, "/metrics").expect("/metrics is served after the run");
    assert_eq!(code, 200);
    let at_end = |name: &str| value(&text, name, &ours).unwrap_or_else(|| panic!("{name} in {text}"));
    assert_eq!(value(&text, "rw_lines_total", &acked), Some(num(&row, "success_count")), "{text}");
    assert_eq!(at_end("rw_lines_sent_total"), N, "each line sent once");
    assert_eq!(at_end("rw_bytes_read_total"), num(&row, "processed_bytes"));
    assert_eq!(at_end("rw_bytes_assigned"), body.len() as u64);
    assert_eq!((at_end("rw_files_done"), at_end("rw_files_assigned")), (1, 1));
    assert_eq!((at_end("rw_unsettled_lines"), at_end("rw_batches_in_flight")), (0, 0), "{text}");
    assert_eq!(at_end("rw_produce_latency_seconds_count"), N / 500, "one produce request per batch of 500");
    assert!(at_end("rw_rate_limited_batches_total") > 0 && has_series(&text, "rw_rate_limit_wait_seconds_sum"));
    assert_eq!(at_end("rw_ready"), 0, "not ready once the run ended");
    assert!(matches!(get(port, "/readyz"), Some((503, _))), "/readyz is 503 after the run");
    assert!(matches!(get(port, "/healthz"), Some((200, _))), "/healthz is 200 after the run");
    if let Some(own) = thp_enabled(std::process::id()) {
        assert!(own, "huge pages are allowed in this test process, so the worker turned them off itself");
        assert_eq!(thp_enabled(child.id()), Some(false), "the worker runs without transparent huge pages");
    }
    // SIGTERM ends the linger at once, and the completed run still exits 0.
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let waited = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(waited.elapsed() < Duration::from_secs(10), "SIGTERM ended the linger: {:?}", waited.elapsed());
    assert!(ready_seen, "/readyz said ready while the worker ran");
    let during: Vec<u64> = scrapes.iter().copied().filter(|&v| v > 0 && v < N).collect();
    assert!(during.len() >= 3, "at least three scrapes saw the lines flowing: {scrapes:?}");
    assert!(scrapes.windows(2).all(|w| w[0] <= w[1]), "the counter never goes back: {scrapes:?}");
    assert_eq!(num(&row, "success_count"), N);
    assert_eq!(consume(&job.topic).len() as u64, N, "the topic holds every line");
}

/// Every broker goes down mid-run for a while: `/readyz` turns 503 (the produce requests get
/// no answer) and back to 200 once they answer again, while `/healthz` stays 200 all along (a
/// liveness probe never kills a worker that Kafka holds back). Every line arrives once; the
/// retries show in `/metrics` by their reason; and the dashboard's metrics are all served.
#[test]
fn readyz_follows_the_brokers_while_healthz_holds() {
    common::needs_services!();
    const N: u64 = 30_000;
    let mut cluster = MockCluster::start(3);
    let job = cluster.job(3);
    job.config(r#"{"connection_ids":["c"],"batch_size":500}"#);
    let body: String = (0..N as usize).map(|i| event(i, "s", "2024-01-01T00:00:00Z") + "\n").collect();
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    let port = free_port();
    // Its log to a file: a pipe nobody reads while the brokers are down would fill and stall it.
    let log = job.path("worker.log");
    let child = job
        .command(0, 1)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("MAX_EVENTS_PER_SEC", "3000")
        .env("METRICS_LINGER_SECS", "60")
        // Huge pages asked for: the worker leaves them on.
        .env("MIMALLOC_ALLOW_THP", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let ours = [format!(r#"job_id="{}""#, job.id), r#"worker="0""#.to_owned()];
    let status = |path: &str| get(port, path).map(|(code, _)| code);
    // Wait until it is ready and lines flow.
    let until = |what: &str, secs: u64, mut ok: Box<dyn FnMut() -> bool + '_>| {
        let end = Instant::now() + Duration::from_secs(secs);
        while !ok() {
            assert!(Instant::now() < end, "{what} within {secs} s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    until(
        "3,000 lines acknowledged and ready",
        60,
        Box::new(|| {
            common::try_row(&job.id, 0).is_some_and(|r| num(&r, "success_count") >= 3_000)
                && status("/readyz") == Some(200)
        }),
    );
    if thp_enabled(std::process::id()) == Some(true) {
        assert_eq!(thp_enabled(child.id()), Some(true), "MIMALLOC_ALLOW_THP=1 keeps huge pages on");
    }
    for b in 1..=3 {
        cluster.cmd(&format!("down {b}"));
    }
    let down = Instant::now();
    until("/readyz 503 with every broker down", 30, Box::new(|| status("/readyz") == Some(503)));
    let noticed = down.elapsed();
    // Down for 8 s in all; alive all along.
    while down.elapsed() < Duration::from_secs(8) {
        assert_eq!(status("/healthz"), Some(200), "healthy while Kafka is away");
        assert_eq!(status("/readyz"), Some(503), "not ready while Kafka is away");
        std::thread::sleep(Duration::from_millis(250));
    }
    let held = common::try_row(&job.id, 0).map_or(0, |r| num(&r, "success_count"));
    assert!(held < N, "the brokers went down while the worker ran ({held} of {N} lines)");
    for b in 1..=3 {
        cluster.cmd(&format!("up {b}"));
    }
    let up = Instant::now();
    until("/readyz 200 once the brokers are back", 30, Box::new(|| status("/readyz") == Some(200)));
    println!("readyz: 503 {noticed:?} after the brokers went down, 200 {:?} after they came back", up.elapsed());
    until("the run's end", 90, Box::new(|| common::try_row(&job.id, 0).is_some_and(|r| r["status"] == "completed")));
    let (_, text) = get(port, "/metrics").expect("/metrics after the run");
    let retries: u64 = text
        .lines()
        .filter(|l| l.starts_with("rw_produce_retries_total{") && l.contains(&ours[0]))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(retries > 0, "the retries while the brokers were down are counted: {text}");
    let acked = [ours[0].clone(), ours[1].clone(), r#"outcome="acknowledged""#.to_owned()];
    assert_eq!(value(&text, "rw_lines_total", &acked), Some(N));
    // A run without a failed read has no read retries; every other metric the dashboard
    // queries has a series.
    for name in dashboard_metrics() {
        if name != "rw_read_retries_total" {
            assert!(has_series(&text, &name), "the dashboard queries {name}, which /metrics does not serve: {text}");
        }
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let msgs = consume_from(&cluster.bootstrap, &job.topic);
    let distinct: std::collections::BTreeSet<&str> = msgs.iter().map(|m| m.value.as_str()).collect();
    assert_eq!((msgs.len() as u64, distinct.len() as u64), (N, N), "every line once");
}

/// A resume after `kill -9`: the records it reads back and the dead letters it writes show in
/// `/metrics` as the log and the letters' directory say.
#[test]
fn a_resume_shows_the_records_read_back_and_the_dead_letters_written() {
    common::needs_services!();
    const N: usize = 20_000;
    let job = Job::new(3);
    job.config(r#"{"connection_ids":["c"],"batch_size":250}"#);
    // Three lines that are not JSON, near the end: the resumed run reaches them.
    let body: String = (0..N)
        .map(|i| if i >= N - 3 { format!("not json {i}\n") } else { event(i, "s", "2024-01-01T00:00:00Z") + "\n" })
        .collect();
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    let letters = job.path("letters");
    std::fs::create_dir(&letters).unwrap();
    // The first run dies mid-way, with batches after its row in the topic.
    let mut first = job
        .command(0, 1)
        .env("MAX_EVENTS_PER_SEC", "4000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the topic holds lines past its row, which only the read-back can find.
    common::kill_past_its_row(&mut first, &job, 0, |r| num(r, "success_count") >= 5_000, || common::topic_keys(&job));
    first.wait().unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let port = free_port();
    let log = job.path("second.log");
    let mut second = job
        .command(0, 1)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_LINGER_SECS", "60")
        .env("DEAD_LETTER_PATH", &letters)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    while common::try_row(&job.id, 0).is_none_or(|r| r["status"] != "completed") {
        assert!(Instant::now() < end && second.try_wait().unwrap().is_none(), "the resumed run completes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, text) = get(port, "/metrics").expect("/metrics after the run");
    let _ = std::process::Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    assert!(second.wait().unwrap().success());
    let logged = std::fs::read_to_string(&log).unwrap();
    let read_back: u64 = logged
        .lines()
        .find(|l| l.contains("read back the topic"))
        .and_then(|l| l.split("records=").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("the resume read the topic back: {logged}"));
    assert!(read_back > 0, "the killed run left records after its row: {logged}");
    let ours = [format!(r#"job_id="{}""#, job.id), r#"worker="0""#.to_owned()];
    assert_eq!(value(&text, "rw_read_back_records_total", &ours), Some(read_back), "{text}");
    assert!(!text.contains("rw_fallbacks_total{"), "a whole read-back falls back nowhere: {text}");
    let written: usize = std::fs::read_dir(&letters)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().lines().count())
        .sum();
    assert_eq!(written, 3, "the three lines that are not JSON are dead letters");
    assert_eq!(value(&text, "rw_dead_letters_written_total", &ours), Some(3), "{text}");
    assert_eq!(value(&text, "rw_dead_letters_lost_total", &ours), Some(0));
    let distinct: std::collections::BTreeSet<String> = consume(&job.topic).into_iter().map(|m| m.value).collect();
    assert_eq!(distinct.len(), N - 3, "every JSON line is in the topic");
}

/// The dashboard queries only metrics that `/metrics` serves once each has something to
/// show (a retry of each kind, a produce request, a batch held back by the rate limit).
#[test]
fn the_dashboard_queries_only_metrics_that_are_served() {
    use reprocessing_worker::metrics::{Telemetry, METRICS};
    let t = Telemetry::new("j", 0, 1, 1);
    t.set_progress(std::sync::Arc::new(reprocessing_worker::progress::Progress::default()));
    let stats = t.stats();
    stats.produce_retried("NOT_LEADER_OR_FOLLOWER");
    stats.read_retried("s3");
    stats.produced(Duration::from_millis(2), true);
    stats.rate_limit_waited(Duration::from_millis(20));
    let text = t.render();
    let families: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
    for name in dashboard_metrics() {
        assert!(has_series(&text, &name), "the dashboard queries {name}, which /metrics does not serve: {text}");
        let family = ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(families.contains(&family), "{name} is documented (METRICS)");
    }
}

#[test]
fn a_port_in_use_is_an_error_that_names_the_variable() {
    common::needs_services!();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"]}"#);
    let p = job.write("f.ndjson", (event(0, "s", "2024-01-01T00:00:00Z") + "\n").as_bytes());
    job.files(&[(p, 1)]);
    let out = job.command(0, 1).env("METRICS_ADDR", format!("127.0.0.1:{port}")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains(&format!("METRICS_ADDR 127.0.0.1:{port}: cannot listen")), "{err}");
}
