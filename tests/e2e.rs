//! End-to-end tests of the worker on real PostgreSQL, tansu (Kafka protocol) and moto (S3).
//! Every test reads the topic back with kcat (librdkafka) and checks the values byte for
//! byte as a multiset, the keys, the `connection_ids` header, and the status row.

mod common;

use common::*;

#[test]
fn three_workers_over_s3_and_disk_in_every_compression() {
    common::needs_services!();
    let job = Job::new(3);
    job.config(r#"{"connection_ids":["conn-a","conn-b"],"batch_size":100}"#);
    let bucket = unique("bkt").to_lowercase();
    let mut expected = Vec::new();
    let mut files = Vec::new();
    let mk = |from: usize, n: usize, expected: &mut Vec<String>| -> String {
        let lines: Vec<String> = (from..from + n).map(|i| event(i, "src", "2024-03-01T10:00:00Z")).collect();
        expected.extend(lines.iter().cloned());
        lines.join("\n") + "\n"
    };
    // plain on disk
    let a = mk(0, 700, &mut expected);
    files.push((job.write("a.ndjson", a.as_bytes()), a.len() as u64));
    // gzip on S3, without a .gz suffix: detected by magic bytes
    let b = gzip(mk(1000, 800, &mut expected).as_bytes());
    files.push((put_s3(&bucket, "dir/b.ndjson", b.clone()), b.len() as u64));
    // multi-member gzip on S3
    let mut c = gzip(mk(2000, 300, &mut expected).as_bytes());
    c.extend(gzip(mk(2300, 300, &mut expected).as_bytes()));
    files.push((put_s3(&bucket, "c.ndjson.gz", c.clone()), c.len() as u64));
    // zstd on disk, two frames
    let mut d = zstd::encode_all(mk(3000, 400, &mut expected).as_bytes(), 3).unwrap();
    d.extend(zstd::encode_all(mk(3400, 100, &mut expected).as_bytes(), 3).unwrap());
    files.push((job.write("d.ndjson.zst", &d), d.len() as u64));
    // plain on S3, larger than one ranged read (64 KiB reads below)
    let e = mk(4000, 900, &mut expected);
    files.push((put_s3(&bucket, "e.ndjson", e.clone().into_bytes()), e.len() as u64));
    job.files(&files);

    let children: Vec<_> = (0..3)
        .map(|i| {
            job.command(i, 3).env("READ_CHUNK_BYTES", "65536").stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_success(&out);
    }
    let msgs = consume(&job.topic);
    assert_eq!(values(&msgs), sorted(expected.clone()), "every line exactly once, byte for byte");
    for m in &msgs {
        assert_eq!(m.headers, vec![("connection_ids".to_string(), "conn-a,conn-b".to_string())]);
    }
    // The files' lines, in files.json order: 700, 800, 600, 500 and 900 of them.
    let mut at = 0;
    let per_file: Vec<(&str, &[String])> = [700usize, 800, 600, 500, 900]
        .iter()
        .zip(&files)
        .map(|(&n, (path, _))| {
            at += n;
            (path.as_str(), &expected[at - n..at])
        })
        .collect();
    assert_keys_are_line_identities(&job.id, &per_file, &msgs);
    let partitions: std::collections::BTreeSet<i64> = msgs.iter().map(|m| m.partition).collect();
    assert_eq!(partitions.len(), 3, "batches spread over all partitions");

    // Worker i took files i and 3+i.
    let per_worker = [(0usize, vec![0usize, 3]), (1, vec![1, 4]), (2, vec![2])];
    let sizes: Vec<u64> = files.iter().map(|f| f.1).collect();
    let lines_in = [700u64, 800, 600, 500, 900];
    for (w, idx) in per_worker {
        let r = row(&job.id, w as i32);
        assert_eq!(r["status"], "completed");
        assert!(r.contains_key("started_at") && r.contains_key("completed_at"));
        let n: u64 = idx.iter().map(|&i| lines_in[i]).sum();
        assert_counts(&r, n, 0, 0);
        assert_eq!(num(&r, "assigned_files"), idx.len() as u64);
        assert_eq!(num(&r, "processed_files"), idx.len() as u64);
        assert_eq!(num(&r, "total_bytes"), idx.iter().map(|&i| sizes[i]).sum::<u64>());
        assert_eq!(num(&r, "processed_bytes"), num(&r, "total_bytes"));
        assert_eq!(r["current_ts"], "2024-03-01T10:00:00Z");
        assert_eq!(r["current_file"], files[*idx.last().unwrap()].0);
    }
}

#[test]
fn line_edge_cases_are_counted_and_good_lines_pass_unchanged() {
    common::needs_services!();
    let job = Job::new(2);
    job.config(r#"{"connection_ids":["c1"]}"#);
    let good: Vec<String> = (0..5).map(|i| event(i, "s", "2024-01-01T00:00:00Z")).collect();
    let huge = format!(r#"{{"messageId":"huge","pad":"{}"}}"#, "x".repeat(17 * 1024 * 1024));
    let body = format!(
        "{}\r\n\r\n   \n{}\n{{\"broken\":\n{}\nnot json\n{}\n{{\"a\":NaN}}\n{}\n[1,2]\n{}\n{} trailing\n{}",
        good[0], good[1], huge, good[2], good[3], good[4], good[0], good[1]
    );
    // good[1] appears twice: once valid, once with trailing bytes (an error); the last line has no newline.
    let p = job.write("edge.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    let out = job.run(0, 1);
    assert_success(&out);
    let mut want = good.clone();
    want.push(good[1].clone());
    assert_eq!(values(&consume(&job.topic)), sorted(want));
    let r = row(&job.id, 0);
    // lines: good0(crlf), blank, blank-ws, good1, broken, huge, notjson, good2, NaN, good3, [1,2], good4, good0+trailing, good1(no \n)
    assert_counts(&r, 6, 6, 2);
    assert_eq!(num(&r, "current_line"), 14);
    let log = stderr(&out);
    assert!(!log.contains(&"x".repeat(100)), "bad lines are not logged whole");
}

#[test]
fn filters_by_stream_and_inclusive_date_window() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(
        r#"{"connection_ids":["c"],"stream_ids":["keep","slug-bykey"],
            "date_from":"2024-01-10T00:00:00Z","date_to":"2024-01-20T00:00:00.5+00:00"}"#,
    );
    let lines = vec![
        (event(1, "keep", "2024-01-10T00:00:00Z"), true),   // from, inclusive
        (event(2, "keep", "2024-01-20T00:00:00.5Z"), true), // to, inclusive
        (event(3, "keep", "2024-01-20T00:00:00.500000001Z"), false),
        (event(4, "keep", "2024-01-09T23:59:59.999999999Z"), false),
        (event(5, "keep", "2024-01-10T01:00:00+02:00"), false), // 23:00 on the 9th
        (event(6, "keep", "garbage"), true),                    // unparseable passes
        (event(7, "other", "2024-01-15T00:00:00Z"), false),
        (event(8, "bykey", "2024-01-15T00:00:00Z"), true), // slug matches
        (r#"{"messageId":"x","origin":"keep"}"#.to_string(), false), // origin not an object
        (r#"{"messageId":"y","origin":{"sourceId":"keep"}}"#.to_string(), true), // no messageCreated
    ];
    let body: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, 1)]);
    assert_success(&job.run(0, 1));
    let want: Vec<String> = lines.iter().filter(|(_, k)| *k).map(|(l, _)| l.clone()).collect();
    assert_eq!(values(&consume(&job.topic)), sorted(want.clone()));
    assert_counts(&row(&job.id, 0), want.len() as u64, 0, (lines.len() - want.len()) as u64);
}

#[test]
fn dry_run_sends_nothing_and_counts_success() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"],"dry_run":true}"#);
    let body: String = (0..50).map(|i| event(i, "s", "2024-01-01T00:00:00Z") + "\n").collect::<String>() + "bad\n";
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, 1)]);
    let out = job.command(0, 1).env_remove("KAFKA_BOOTSTRAP_SERVERS").output().unwrap();
    assert_success(&out);
    assert!(consume(&job.topic).is_empty());
    assert_counts(&row(&job.id, 0), 50, 1, 0);
}

#[test]
fn start_file_start_line_and_limit() {
    common::needs_services!();
    let job = Job::new(1);
    let f: Vec<(String, Vec<String>)> = (0..3)
        .map(|k| {
            let lines: Vec<String> = (0..10).map(|i| event(k * 100 + i, "s", "2024-01-01T00:00:00Z")).collect();
            (job.write(&format!("f{k}.ndjson"), (lines.join("\n") + "\n").as_bytes()), lines)
        })
        .collect();
    job.files(&f.iter().map(|(p, _)| (p.clone(), 1)).collect::<Vec<_>>());
    // start at f1 (by basename), skipping its first 4 lines; deliver at most 8 lines.
    job.config(r#"{"connection_ids":["c"],"start_file":"f1.ndjson","start_line":4,"limit":8}"#);
    assert_success(&job.run(0, 1));
    let want: Vec<String> = f[1].1[4..].iter().chain(f[2].1[..2].iter()).cloned().collect();
    assert_eq!(values(&consume(&job.topic)), sorted(want));
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_counts(&r, 8, 0, 0);
    assert_eq!(r["current_file"], f[2].0);
    assert_eq!(num(&r, "current_line"), 2);
}

#[test]
fn a_file_that_cannot_be_opened_fails_alone() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"],"retry_attempts":1}"#);
    let good = event(1, "s", "2024-01-01T00:00:00Z");
    let p = job.write("ok.ndjson", format!("{good}\n").as_bytes());
    let bucket = unique("bkt").to_lowercase();
    put_s3(&bucket, "exists.ndjson", b"{}\n".to_vec());
    job.files(&[("/nonexistent/missing.ndjson".to_string(), 10), (format!("s3://{bucket}/missing.ndjson"), 5), (p, 1)]);
    let out = job.run(0, 1);
    assert_success(&out);
    assert_eq!(values(&consume(&job.topic)), vec![good]);
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_eq!(num(&r, "processed_files"), 3, "failed files count as processed");
    assert_counts(&r, 1, 0, 0);
    assert!(r["error"].starts_with("2 files failed"), "{:?}", r.get("error"));
}

#[test]
fn repository_routing_with_shards_and_bearer_token() {
    common::needs_services!();
    let job = Job::new(2);
    create_topic(&format!("{}-shard3", job.topic), 2);
    let repo = r#"[
      {"stream":{"id":"s-main"},"shard":0,"destinations":[{"id":"d1","connectionId":"c1","destinationType":"clickhouse"},{"id":"d2","connectionId":"c2","destinationType":"gtm"},{"id":"d3","connectionId":"c3","destinationType":"webhook"}]},
      {"stream":{"id":"s-shard"},"shard":3,"destinations":[{"id":"d4","connectionId":"c4","destinationType":"bigquery"}]},
      {"stream":{"id":"s-browser"},"destinations":[{"id":"d5","connectionId":"c5","destinationType":"tag"}]}
    ]"#;
    let server = RepoServer::start(repo);
    job.config(r#"{"batch_size":3}"#);
    let main: Vec<String> = (0..7).map(|i| event(i, "s-main", "2024-01-01T00:00:00Z")).collect();
    let shard: Vec<String> = (10..15).map(|i| event(i, "s-shard", "2024-01-01T00:00:00Z")).collect();
    let by_slug = r#"{"messageId":"slugged","origin":{"sourceId":"","slug":"s-main"}}"#.to_string();
    let errors = [
        event(20, "s-browser", "2024-01-01T00:00:00Z"),
        event(21, "unknown", "2024-01-01T00:00:00Z"),
        r#"{"messageId":"noid"}"#.to_string(),
    ];
    let mut body = String::new();
    for (i, l) in main.iter().enumerate() {
        body += &format!("{l}\n{}\n", shard.get(i).cloned().unwrap_or_default());
    }
    body += &format!("{by_slug}\n{}\n", errors.join("\n"));
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, 1)]);
    let mut cmd = job.command(0, 1);
    cmd.env("REPOSITORY_URL", server.url()).env("REPOSITORY_AUTH_TOKEN", "tok-123");
    let out = cmd.output().unwrap();
    assert_success(&out);
    assert_eq!(server.auth(), Some("Bearer tok-123".to_string()));
    let got_main = consume(&job.topic);
    let mut want_main = main.clone();
    want_main.push(by_slug);
    assert_eq!(values(&got_main), sorted(want_main));
    assert!(got_main.iter().all(|m| m.headers == vec![("connection_ids".into(), "c1,c3".into())]));
    let got_shard = consume(&format!("{}-shard3", job.topic));
    assert_eq!(values(&got_shard), sorted(shard.clone()));
    assert!(got_shard.iter().all(|m| m.headers == vec![("connection_ids".into(), "c4".into())]));
    // 2 blank lines from the interleaving (main has 7, shard 5)
    assert_counts(&row(&job.id, 0), 13, 3, 2);
    assert!(!stderr(&out).contains("tok-123"));
}

#[test]
fn bad_config_records_failed_and_exits_non_zero() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"],"batch_size":"many"}"#);
    job.files(&[]);
    let out = job.run(0, 1);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err_line = stderr(&out).lines().find(|l| l.contains("configuration error")).unwrap().to_string();
    assert!(err_line.contains("config.json: field batch_size"), "{err_line}");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "failed");
    assert!(r["error"].contains("config.json: field batch_size: expected an integer"), "{r:?}");
}

#[test]
fn unreachable_broker_is_fatal_within_the_deadline() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"]}"#);
    job.files(&[]);
    let started = std::time::Instant::now();
    let out = job
        .command(0, 1)
        .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env("KAFKA_CONNECT_TIMEOUT_SECS", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 30);
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "failed");
    assert!(r["error"].contains("cannot connect to Kafka"), "{r:?}");
}

#[test]
fn admin_pending_row_is_taken_over() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"]}"#);
    let p = job.write("f.ndjson", format!("{}\n", event(1, "s", "2024-01-01T00:00:00Z")).as_bytes());
    job.files(&[(p, 1)]);
    // The admin's inserts, before any worker runs.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&env("DATABASE_URL"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c.batch_execute(reprocessing_worker::status::DDL).await.unwrap();
        c.execute("INSERT INTO reprocessing_jobs (id, config, status, created_at, total_files, total_workers) VALUES ($1, '{}', 'running', NOW(), 1, 1)", &[&job.id]).await.unwrap();
        c.execute("INSERT INTO reprocessing_workers (job_id, worker_index, status, updated_at, assigned_files) VALUES ($1, 0, 'pending', NOW(), 1)", &[&job.id]).await.unwrap();
    });
    assert_success(&job.run(0, 1));
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_eq!(num(&r, "assigned_files"), 1);
    assert_counts(&r, 1, 0, 0);
}

#[test]
fn secrets_never_reach_logs_errors_or_the_row() {
    common::needs_services!();
    let pg_password = env("DATABASE_URL").split(':').nth(2).unwrap().split('@').next().unwrap().to_string();
    let secrets = ["sasl-pw-Q7x9Zt", "repo-tok-K2m8Wp", "aws-secret-V5n3Rr", &pg_password];
    let mut outputs = Vec::new();
    let mut rows = Vec::new();
    let mut failing = |config: &str, env: &[(&str, &str)], code: i32| {
        let job = Job::new(1);
        job.config(config);
        job.files(&[]);
        let mut cmd = job.command(0, 1);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        rows.push(row(&job.id, 0));
        outputs.push(out);
    };
    // 1. The repository fails (the token is in the header and in the URL's query).
    failing(
        "{}",
        &[
            ("REPOSITORY_URL", "http://127.0.0.1:1/streams?token=repo-tok-K2m8Wp"),
            ("REPOSITORY_AUTH_TOKEN", "repo-tok-K2m8Wp"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-V5n3Rr"),
        ],
        1,
    );
    // 2. Kafka with SASL cannot be reached.
    failing(
        r#"{"connection_ids":["c"]}"#,
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("KAFKA_CONNECT_TIMEOUT_SECS", "2"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL", r#"{"mechanism":"SCRAM-SHA-256","username":"u","password":"sasl-pw-Q7x9Zt"}"#),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-V5n3Rr"),
        ],
        1,
    );
    // 3. A malformed KAFKA_SASL that contains the password.
    failing(
        r#"{"connection_ids":["c"]}"#,
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL", r#"{"mechanism":"PLAIN","password":"sasl-pw-Q7x9Zt""#),
        ],
        2,
    );
    // 4. A wrong database password: fatal at start-up, and the URL is shown redacted.
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"]}"#);
    job.files(&[]);
    let bad_url = env("DATABASE_URL").replace(&pg_password, "db-pw-J4h6Lq");
    let out = job.command(0, 1).env("DATABASE_URL", &bad_url).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("postgres:***@"), "{}", stderr(&out));
    outputs.push(out);
    for out in &outputs {
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
        for s in secrets.iter().chain(["db-pw-J4h6Lq"].iter()) {
            assert!(!all.contains(s), "secret {s} in output: {all}");
        }
    }
    for r in &rows {
        assert_eq!(r["status"], "failed");
        let text = format!("{r:?}");
        for s in &secrets {
            assert!(!text.contains(s), "secret {s} in row: {text}");
        }
    }
}

#[test]
fn postgres_over_tls_with_sslmode() {
    common::needs_services!();
    // rw_tls_only may connect over TLS only (pg_hba: hostssl; hostnossl reject).
    let tls_url = env("RW_TLS_DATABASE_URL");
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"]}"#);
    let p = job.write("f.ndjson", format!("{}\n", event(1, "s", "2024-01-01T00:00:00Z")).as_bytes());
    job.files(&[(p, 1)]);
    // sslmode=disable: the server refuses; fatal at start-up, exit 1, password not shown.
    let out = job.command(0, 1).env("DATABASE_URL", format!("{tls_url}?sslmode=disable")).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no encryption"), "{}", stderr(&out));
    // sslmode=verify-full: the snakeoil certificate is not trusted, so it must fail.
    let out = job.command(0, 1).env("DATABASE_URL", format!("{tls_url}?sslmode=verify-full")).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "verification must reject an untrusted certificate: {}", stderr(&out));
    // sslmode=require: encrypted (the only way this role gets in), the job completes.
    let out = job.command(0, 1).env("DATABASE_URL", format!("{tls_url}?sslmode=require")).output().unwrap();
    assert_success(&out);
    assert_eq!(row(&job.id, 0)["status"], "completed");
    assert_eq!(values(&consume(&job.topic)).len(), 1);
}

#[test]
fn hostile_input_is_counted_never_crashes() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"],"retry_attempts":1}"#);
    let good: Vec<String> = (0..2000).map(|i| event(i, "s", "2024-01-01T00:00:00Z")).collect();
    // A gzip cut at 60%: the lines before the cut are delivered, the file is recorded failed.
    let mut cut = gzip((good.join("\n") + "\n").as_bytes());
    cut.truncate(cut.len() * 6 / 10);
    let p_cut = job.write("cut.ndjson.gz", &cut);
    // Invalid UTF-8, NUL bytes, 100,000 levels of nesting, a line of 1 GiB of NUL bytes
    // with no newline (a sparse file: nothing is written to disk).
    let mut weird = b"{\"a\":\"\xff\xfe\"}\n{\"a\":\"x\x00y\"}\n\x00\x00\x00\n".to_vec();
    weird.extend(std::iter::repeat_n(b'[', 100_000));
    weird.extend(b"\n");
    weird.extend(format!("{}\n", good[0]).as_bytes());
    let p_weird = job.write("weird.ndjson", &weird);
    let p_big = job.path("big.ndjson").display().to_string();
    std::fs::File::create(&p_big).unwrap().set_len(1 << 30).unwrap();
    job.files(&[(p_cut.clone(), 1), (p_weird, 1), (p_big, 1 << 30)]);
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("maxrss_kb=%M")
        .args(job.command(0, 1).get_program().to_str())
        .envs(job.command(0, 1).get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))))
        .output()
        .unwrap();
    assert_success(&out);
    let log = stderr(&out);
    let rss_kb: u64 = log.lines().find_map(|l| l.strip_prefix("maxrss_kb=")).unwrap().trim().parse().unwrap();
    assert!(rss_kb < 256 * 1024, "bounded memory with a 1 GiB line: {rss_kb} KiB");
    let delivered = consume(&job.topic);
    let n = delivered.len();
    assert!(n > 100 && n < 2001, "lines before the gzip cut were delivered: {n}");
    let got = values(&delivered);
    let mut want: Vec<String> = good[..n - 1].to_vec();
    want.push(good[0].clone());
    assert_eq!(got, sorted(want), "the prefix of the cut file, and the one good line of weird.ndjson");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert!(r["error"].contains("cut.ndjson.gz") && r["error"].contains("corrupt"), "{r:?}");
    assert!(r["error"].contains(&format!("settled up to line {}", n - 1)), "the failed file's resume point: {r:?}");
    // weird.ndjson: 4 errors (UTF-8, NUL in string, bare NULs, too deep); big: 1 error (too long).
    assert_counts(&r, n as u64, 5, 0);
}

#[test]
fn a_thousand_files_or_none() {
    common::needs_services!();
    let job = Job::new(2);
    job.config(r#"{"connection_ids":["c"]}"#);
    let mut files = Vec::new();
    let mut want = Vec::new();
    for i in 0..1000 {
        let l = event(i, "s", "2024-01-01T00:00:00Z");
        files.push((job.write(&format!("f{i}.ndjson"), format!("{l}\n").as_bytes()), 1));
        want.push(l);
    }
    job.files(&files);
    let children: Vec<_> =
        (0..2).map(|i| job.command(i, 2).stderr(std::process::Stdio::null()).spawn().unwrap()).collect();
    for c in children {
        assert!(c.wait_with_output().unwrap().status.success());
    }
    assert_eq!(values(&consume(&job.topic)), sorted(want));
    assert_eq!(num(&row(&job.id, 0), "processed_files") + num(&row(&job.id, 1), "processed_files"), 1000);

    let empty = Job::new(1);
    empty.config(r#"{"connection_ids":["c"]}"#);
    empty.files(&[]);
    assert_success(&empty.run(0, 1));
    let r = row(&empty.id, 0);
    assert_eq!(r["status"], "completed");
    assert_counts(&r, 0, 0, 0);
    assert_eq!(num(&r, "assigned_files"), 0);
}

#[test]
fn dead_letters_keep_every_error_line_with_its_reason() {
    common::needs_services!();
    let job = Job::new(1);
    let repo = r#"[
      {"stream":{"id":"s-ok"},"destinations":[{"id":"d1","connectionId":"c1","destinationType":"clickhouse"}]}
    ]"#;
    let server = RepoServer::start(repo);
    job.config(r#"{"retry_attempts":1,"batch_size":10}"#);
    let ok = event(1, "s-ok", "2024-01-01T00:00:00Z");
    let unroutable = event(2, "nobody", "2024-01-01T00:00:00Z");
    let broken = r#"{"messageId":"b","origin":{"sourceId":"s-ok"} trailing"#.to_string();
    let huge = format!(r#"{{"pad":"{}"}}"#, "y".repeat(17 << 20));
    let mut body = format!("{ok}\n{unroutable}\n{broken}\n{huge}\n").into_bytes();
    body.extend(b"\x00\xff\n");
    let p1 = job.write("bad.ndjson", &body);
    // Every line of this file is valid and routable, but its record is larger than
    // KAFKA_MAX_MESSAGE_BYTES: never sent, an error, a dead letter with its bytes.
    let pad = "z".repeat(6_000);
    let big: Vec<String> = (10..13)
        .map(|i| format!(r#"{{"messageId":"big-{i}","origin":{{"sourceId":"s-ok"}},"pad":"{pad}"}}"#))
        .collect();
    let p2 = job.write("big.ndjson", (big.join("\n") + "\n").as_bytes());
    job.files(&[(p1.clone(), 1), (p2.clone(), 1)]);
    let dl_dir = job.path("dead");
    let out = job
        .command(0, 1)
        .env("REPOSITORY_URL", server.url())
        .env("DEAD_LETTER_PATH", &dl_dir)
        .env("KAFKA_MAX_MESSAGE_BYTES", "5000")
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(values(&consume(&job.topic)), vec![ok.clone()]);
    let text = std::fs::read_to_string(dl_dir.join(format!("{}-worker-0.ndjson", job.id))).unwrap();
    let recs: Vec<sonic_rs::Value> = text.lines().map(|l| sonic_rs::from_str(l).unwrap()).collect();
    use sonic_rs::JsonValueTrait;
    let get = |v: &sonic_rs::Value, k: &str| v.get(k).and_then(|x| x.as_str().map(str::to_owned));
    let by_line = |file: &str, line: u64| {
        recs.iter()
            .find(|r| get(r, "file").as_deref() == Some(file) && r.get("line").and_then(|x| x.as_u64()) == Some(line))
            .unwrap_or_else(|| panic!("no dead letter for {file}:{line}: {text}"))
    };
    assert_eq!(get(by_line(&p1, 2), "data").as_deref(), Some(unroutable.as_str()));
    assert!(get(by_line(&p1, 2), "reason").unwrap().contains("not found"));
    assert_eq!(get(by_line(&p1, 3), "data").as_deref(), Some(broken.as_str()));
    assert!(get(by_line(&p1, 3), "reason").unwrap().contains("invalid JSON"));
    assert!(by_line(&p1, 4).get("data").is_none());
    assert_eq!(by_line(&p1, 4).get("length").and_then(|x| x.as_u64()), Some(huge.len() as u64));
    assert_eq!(get(by_line(&p1, 5), "data_base64").as_deref(), Some("AP8="));
    for (i, l) in big.iter().enumerate() {
        let r = by_line(&p2, i as u64 + 1);
        assert_eq!(get(r, "data").as_deref(), Some(l.as_str()));
        assert!(get(r, "reason").unwrap().starts_with("too large for Kafka"), "{r:?}");
    }
    assert_eq!(recs.len(), 7);
    let r = row(&job.id, 0);
    assert_counts(&r, 1, 7, 0);

    // The same to an s3:// prefix.
    let job2 = Job::new(1);
    job2.config(r#"{"connection_ids":["c"]}"#);
    let p = job2.write("bad.ndjson", b"not json\n{\"ok\":1}\n");
    job2.files(&[(p, 1)]);
    let bucket = unique("dl").to_lowercase();
    put_s3(&bucket, "keep", vec![]);
    assert_success(&job2.command(0, 1).env("DEAD_LETTER_PATH", format!("s3://{bucket}/dead/")).output().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = rt.block_on(async {
        let s3 = reprocessing_worker::source::s3_client().await;
        let list =
            s3.list_objects_v2().bucket(&bucket).prefix(format!("dead/{}/worker-0/", job2.id)).send().await.unwrap();
        let key = list.contents()[0].key().unwrap().to_string();
        let obj = s3.get_object().bucket(&bucket).key(key).send().await.unwrap();
        String::from_utf8(obj.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
    });
    assert!(body.contains("\"data\":\"not json\"") && body.contains("\"line\":1"), "{body}");
}
