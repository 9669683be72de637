//! `METRICS_ADDR` on a real run (the binary, PostgreSQL, tansu, kcat): `/readyz` once the
//! worker is connected, `/healthz` while it runs, and `/metrics` scraped while the lines flow,
//! each scrape at or ahead of the status row read just before it (the row trails by at most
//! a second; the metrics are read live) and never past the file; at the end the row and the
//! topic hold every line.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{consume, event, num, Job};

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
    // 5,000 lines a second: about 4 s of run to scrape.
    cmd.env("METRICS_ADDR", format!("127.0.0.1:{port}")).env("MAX_EVENTS_PER_SEC", "5000");
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let acked = [format!(r#"job="{}""#, job.id), r#"worker="0""#.to_owned(), r#"outcome="acknowledged""#.to_owned()];
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ready_seen, mut scrapes) = (false, Vec::new());
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run did not end within 60 s");
        let row_success = common::try_row(&job.id, 0).map_or(0, |r| num(&r, "success_count"));
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
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ready_seen, "/readyz said ready while the worker ran");
    let during: Vec<u64> = scrapes.iter().copied().filter(|&v| v > 0 && v < N).collect();
    assert!(during.len() >= 3, "at least three scrapes saw the lines flowing: {scrapes:?}");
    assert!(scrapes.windows(2).all(|w| w[0] <= w[1]), "the counter never goes back: {scrapes:?}");
    let row = common::row(&job.id, 0);
    assert_eq!(num(&row, "success_count"), N);
    assert_eq!(consume(&job.topic).len() as u64, N, "the topic holds every line");
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
