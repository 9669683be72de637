//! A drop-in under today's Jitsu admin, on the real services: the row's status holds only the
//! admin's values (the SIGTERM cases of the fault suites check the cancelled row), a role
//! that may write only `reprocessing_workers` still replays the job, `start_file` is found
//! in the forms an operator types or fails the job as a configuration error, `retry_attempts`
//! counts every attempt as the Go worker does, and `files.json` may be zstd.

mod common;

use std::process::Command;

use common::*;

const CREATED: &str = "2024-05-01T10:00:00Z";

/// One plain file of `n` events; its path and lines.
fn one_file(job: &Job, name: &str, n: usize) -> (String, Vec<String>) {
    let lines: Vec<String> = (0..n).map(|i| event(i, "s", CREATED)).collect();
    let body = lines.join("\n") + "\n";
    (job.write(name, body.as_bytes()), lines)
}

#[test]
fn a_role_that_may_only_write_the_worker_rows_replays_the_job() {
    common::needs_services!();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (schema, url) = rt.block_on(locked_schema());
    let job = Job::new(2);
    // The admin's rows, written by the admin's role.
    rt.block_on(as_owner(&format!(
        "INSERT INTO {schema}.reprocessing_jobs (id, config, status, created_at) VALUES ('{}', '{{}}', 'running', NOW());
         INSERT INTO {schema}.reprocessing_workers (job_id, worker_index, status, updated_at, assigned_files)
         VALUES ('{}', 0, 'pending', NOW(), 1);",
        job.id, job.id
    )));
    job.config(r#"{"connection_ids":["c"]}"#);
    let (p, lines) = one_file(&job, "a.ndjson", 400);
    job.files(&[(p, 1)]);
    let out = job.command(0, 1).env("DATABASE_URL", &url).output().unwrap();
    assert_success(&out);
    let log = stderr(&out);
    let given_up = reprocessing_worker::status::OwnTables::GIVEN_UP;
    assert_eq!(log.matches(&given_up[..60]).count(), 1, "said once, plainly:\n{log}");
    assert!(!log.contains("locked-role-pass"), "no password in the log");
    assert_eq!(values(&consume(&job.topic)), sorted(lines.clone()), "every line, once");
    let status = format!("SELECT status FROM {schema}.reprocessing_workers WHERE job_id = '{}'", job.id);
    assert_eq!(rt.block_on(owner_value(&status)).as_deref(), Some("completed"));
    let tables = format!("SELECT count(*)::text FROM pg_tables WHERE schemaname = '{schema}'");
    assert_eq!(rt.block_on(owner_value(&tables)).as_deref(), Some("2"), "the role created nothing");

    // `schema`, applied once by the database owner, gives the next run its tables back.
    let sql = Command::new(env!("CARGO_BIN_EXE_reprocessing-worker"))
        .args(["schema", "--grant-to", LOCKED_ROLE])
        .output()
        .unwrap();
    assert!(sql.status.success());
    rt.block_on(as_owner(&format!("SET search_path = {schema}; {}", String::from_utf8(sql.stdout).unwrap())));
    let again = Job::new(1);
    rt.block_on(as_owner(&format!(
        "INSERT INTO {schema}.reprocessing_jobs (id, config, status, created_at) VALUES ('{}', '{{}}', 'running', NOW())",
        again.id
    )));
    again.config(r#"{"connection_ids":["c"]}"#);
    let (p, lines) = one_file(&again, "b.ndjson", 50);
    again.files(&[(p, 1)]);
    let out = again.command(0, 1).env("DATABASE_URL", &url).output().unwrap();
    assert_success(&out);
    assert!(!stderr(&out).contains(&given_up[..60]), "{}", stderr(&out));
    assert_eq!(values(&consume(&again.topic)), sorted(lines));
    let runs = format!("SELECT outcome FROM {schema}.reprocessing_worker_runs WHERE job_id = '{}'", again.id);
    assert_eq!(rt.block_on(owner_value(&runs)).as_deref(), Some("completed"));
    rt.block_on(as_owner(&format!("DROP SCHEMA {schema} CASCADE")));
}

#[test]
fn a_start_file_not_in_the_list_fails_the_job_as_a_configuration_error() {
    common::needs_services!();
    let job = Job::new(1);
    let (a, _) = one_file(&job, "day_01.ndjson", 10);
    let (b, _) = one_file(&job, "day_02.ndjson", 10);
    job.files(&[(a, 1), (b.clone(), 1)]);
    job.config(r#"{"connection_ids":["c"],"start_file":"day_2.ndjson"}"#);
    let out = job.run(0, 1);
    assert_eq!(out.status.code(), Some(2), "a configuration error: {}", stderr(&out));
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "failed", "{r:?}");
    let error = &r["error"];
    assert!(error.contains(r#"field start_file "day_2.ndjson" is not in files.json"#), "{error}");
    assert!(error.contains(&format!("the nearest paths there: {b:?}")), "the nearest first: {error}");
    assert!(consume(&job.topic).is_empty(), "nothing sent");

    // The forms an operator types: here the base name.
    let ok = Job::new(1);
    let (a, _) = one_file(&ok, "day_01.ndjson", 10);
    let (b, lines) = one_file(&ok, "day_02.ndjson", 10);
    ok.files(&[(a, 1), (b, 1)]);
    ok.config(r#"{"connection_ids":["c"],"start_file":"day_02.ndjson","start_line":4}"#);
    assert_success(&ok.run(0, 1));
    assert_eq!(values(&consume(&ok.topic)), sorted(lines[4..].to_vec()));
}

#[test]
fn retry_attempts_counts_every_attempt_as_the_go_worker_does() {
    common::needs_services!();
    for (attempts, expected) in [(Some(2), 2), (None, 3)] {
        let job = Job::new(1);
        let lines: Vec<String> = (0..3000).map(|i| event(i, "s", CREATED)).collect();
        let mut cut = gzip((lines.join("\n") + "\n").as_bytes());
        cut.truncate(cut.len() / 2);
        let p = job.write("cut.ndjson.gz", &cut);
        job.files(&[(p, cut.len() as u64)]);
        match attempts {
            Some(n) => job.config(&format!(r#"{{"connection_ids":["c"],"retry_attempts":{n}}}"#)),
            None => job.config(r#"{"connection_ids":["c"],"retry_attempts":0}"#),
        }
        let out = job.run(0, 1);
        assert_success(&out);
        let again = stderr(&out).matches("reading the file again").count();
        assert_eq!(again, expected - 1, "{attempts:?}: {}", stderr(&out));
        let r = row(&job.id, 0);
        assert!(r["error"].contains(&format!("(after {expected} attempts)")), "{attempts:?}: {r:?}");
    }
}

#[test]
fn a_zstd_files_list_is_read_like_a_gzip_one() {
    common::needs_services!();
    let job = Job::new(1);
    let (p, lines) = one_file(&job, "a.ndjson", 100);
    let list = format!(r#"[{{"path":"{p}","size":1}}]"#);
    job.write("files.json", &zstd::encode_all(list.as_bytes(), 3).unwrap());
    job.config(r#"{"connection_ids":["c"]}"#);
    assert_success(&job.run(0, 1));
    assert_eq!(values(&consume(&job.topic)), sorted(lines));
    assert_eq!(row(&job.id, 0)["status"], "completed");
}
