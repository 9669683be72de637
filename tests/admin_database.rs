//! The admin's database, as the Jitsu admin has it: its `DATABASE_URL` (a schema in it, a
//! TLS PostgreSQL with `sslmode=verify-full`, a CA and a client certificate), its own three
//! queries run after every kind of run (they scan into Go values, so one NULL in a column
//! they read hides every job), a database that is away when the run ends, and a job whose
//! files change under a resume. All on the real PostgreSQL; the database cut goes through a
//! TCP proxy in front of it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tcp_proxy::TcpProxy;
use common::*;

/// `DATABASE_URL` with `params` added to its query.
fn url_with(params: &str) -> String {
    let url = env("DATABASE_URL");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// A schema of its own for one test, so that the admin's list query sees only its jobs.
fn fresh_schema(prefix: &str) -> String {
    unique(prefix).replace('-', "_")
}

fn owner<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Rows of a simple-protocol query, each column as text (NULL is `None`).
async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let msgs = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// How the admin scans a column (jitsucom/bulker `admin/reprocessing_db.go`): into a Go
/// value, which a NULL fails, or a pointer, which takes one.
#[derive(Clone, Copy)]
enum Go {
    String,
    Json,
    Time,
    Int,
    PtrTime,
    PtrString,
    PtrInt,
}

/// Runs the admin's `GetReprocessingJob`, `ListReprocessingJobs` and `GetAllWorkerStatuses`
/// (their SQL, in `schema`) for `job`, and says every value that the admin's Go types could
/// not take. Returns the jobs listed.
fn admin_scan_problems(schema: &str, job: &str) -> (Vec<String>, usize) {
    const JOB_COLUMNS: [(&str, Go); 10] = [
        ("id", Go::String),
        ("config", Go::Json),
        ("status", Go::String),
        ("created_at", Go::Time),
        ("started_at", Go::PtrTime),
        ("completed_at", Go::PtrTime),
        ("k8s_job_name", Go::String),
        ("total_files", Go::Int),
        ("total_workers", Go::Int),
        ("error", Go::PtrString),
    ];
    const SUMS: [(&str, Go); 6] = [
        ("processed_files", Go::Int),
        ("total_lines", Go::Int),
        ("success_count", Go::Int),
        ("error_count", Go::Int),
        ("skipped_count", Go::Int),
        ("processed_bytes", Go::Int),
    ];
    const POSITION: [(&str, Go); 3] =
        [("current_file", Go::PtrString), ("current_line", Go::PtrInt), ("current_ts", Go::PtrString)];
    const WORKER_COLUMNS: [(&str, Go); 16] = [
        ("worker_index", Go::Int),
        ("status", Go::String),
        ("started_at", Go::PtrTime),
        ("updated_at", Go::PtrTime),
        ("completed_at", Go::PtrTime),
        ("current_file", Go::PtrString),
        ("current_line", Go::Int),
        ("current_ts", Go::PtrString),
        ("assigned_files", Go::Int),
        ("processed_files", Go::Int),
        ("total_lines", Go::Int),
        ("success_count", Go::Int),
        ("error_count", Go::Int),
        ("skipped_count", Go::Int),
        ("processed_bytes", Go::Int),
        ("error", Go::PtrString),
    ];
    let check = |query: &str, cols: &[(&str, Go)], rows: &[Vec<Option<String>>], problems: &mut Vec<String>| {
        for row in rows {
            for ((name, go), v) in cols.iter().zip(row) {
                let bad = match (go, v.as_deref()) {
                    (Go::PtrTime | Go::PtrString | Go::PtrInt, None) => None,
                    (_, None) => Some("NULL into a non-pointer".to_owned()),
                    (Go::Int | Go::PtrInt, Some(s)) => s.parse::<i64>().err().map(|e| format!("{s:?}: {e}")),
                    (Go::Json, Some(s)) => sonic_rs::from_str::<sonic_rs::Value>(s).err().map(|e| format!("{e}")),
                    (Go::Time | Go::PtrTime, Some(s)) => {
                        let t = format!("{s}00");
                        let parsed = chrono::DateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f%z")
                            .or_else(|_| chrono::DateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%z"));
                        parsed.err().map(|e| format!("{s:?}: {e}"))
                    }
                    (Go::String | Go::PtrString, Some(_)) => None,
                };
                if let Some(bad) = bad {
                    problems.push(format!("{query}: column {name}: {bad}"));
                }
            }
        }
    };
    owner(async {
        let (client, conn) = tokio_postgres::connect(&env("DATABASE_URL"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("SET search_path = {schema}; SET TIME ZONE 'UTC'")).await.unwrap();
        let mut problems = Vec::new();
        let job_sql = "SELECT id, config, status, created_at, started_at, completed_at, k8s_job_name, total_files, \
                       total_workers, error FROM reprocessing_jobs";
        let one = text_rows(&client, &format!("{job_sql} WHERE id = '{job}'")).await;
        if one.len() != 1 {
            problems.push(format!("GetReprocessingJob: {} rows for {job}", one.len()));
        }
        check("GetReprocessingJob", &JOB_COLUMNS, &one, &mut problems);
        let sums = text_rows(
            &client,
            &format!(
                "SELECT COALESCE(SUM(processed_files), 0), COALESCE(SUM(total_lines), 0), \
                 COALESCE(SUM(success_count), 0), COALESCE(SUM(error_count), 0), COALESCE(SUM(skipped_count), 0), \
                 COALESCE(SUM(processed_bytes), 0) FROM reprocessing_workers WHERE job_id = '{job}'"
            ),
        )
        .await;
        check("GetReprocessingJob (sums)", &SUMS, &sums, &mut problems);
        let position = text_rows(
            &client,
            &format!(
                "SELECT current_file, current_line, current_ts FROM reprocessing_workers \
                 WHERE job_id = '{job}' AND status = 'running' ORDER BY updated_at DESC LIMIT 1"
            ),
        )
        .await;
        check("GetReprocessingJob (position)", &POSITION, &position, &mut problems);
        let all = text_rows(&client, &format!("{job_sql} ORDER BY created_at DESC")).await;
        check("ListReprocessingJobs", &JOB_COLUMNS, &all, &mut problems);
        let workers = text_rows(
            &client,
            &format!(
                "SELECT worker_index, status, started_at, updated_at, completed_at, current_file, current_line, \
                 current_ts, assigned_files, processed_files, total_lines, success_count, error_count, \
                 skipped_count, processed_bytes, error FROM reprocessing_workers WHERE job_id = '{job}' \
                 ORDER BY worker_index"
            ),
        )
        .await;
        if workers.is_empty() {
            problems.push(format!("GetAllWorkerStatuses: no rows for {job}"));
        }
        check("GetAllWorkerStatuses", &WORKER_COLUMNS, &workers, &mut problems);
        (problems, all.len())
    })
}

/// One value of `sql` in `schema`, as the owner.
fn value_in(schema: &str, sql: &str) -> Option<String> {
    owner(async {
        let (client, conn) = tokio_postgres::connect(&env("DATABASE_URL"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("SET search_path = {schema}")).await.unwrap();
        client.query_opt(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")).and_then(|r| r.get(0))
    })
}

fn lines(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| event(i, tag, "2024-01-01T00:00:00Z")).collect()
}

/// A job of `files` files of `per_file` lines each.
fn job_of(files: usize, per_file: usize) -> (Job, Vec<Vec<String>>) {
    let job = Job::new(2);
    job.config(r#"{"connection_ids":["c"],"batch_size":250}"#);
    let mut listed = Vec::new();
    let mut all = Vec::new();
    for f in 0..files {
        let ls = lines(per_file, &format!("f{f}"));
        let p = job.write(&format!("f{f}.ndjson"), (ls.join("\n") + "\n").as_bytes());
        listed.push((p, 0));
        all.push(ls);
    }
    job.files(&listed);
    (job, all)
}

#[test]
fn a_schema_in_the_url_holds_the_tables_the_rows_and_what_the_admin_reads() {
    common::needs_services!();
    let schema = fresh_schema("adm");
    let (job, _) = job_of(1, 50);
    // Jitsu's URLs carry `schema` (its pool turns it into the search_path).
    let out =
        job.command(0, 1).env("DATABASE_URL", url_with(&format!("schema={schema}&sslmode=disable"))).output().unwrap();
    assert_success(&out);
    let in_schema = |sql: &str| value_in(&schema, sql);
    assert_eq!(
        in_schema(&format!("SELECT status FROM reprocessing_workers WHERE job_id = '{}'", job.id)).as_deref(),
        Some("completed")
    );
    assert_eq!(
        in_schema("SELECT to_regclass('reprocessing_worker_runs')::text").as_deref(),
        Some("reprocessing_worker_runs")
    );
    let elsewhere = format!(
        "SELECT count(*)::text FROM pg_tables t WHERE t.tablename LIKE 'reprocessing_%' AND t.schemaname = '{schema}'"
    );
    assert_eq!(owner(owner_value(&elsewhere)).as_deref(), Some("3"), "the three tables in the URL's schema");
    assert!(try_row(&job.id, 0).is_none(), "nothing written to the default schema");
    let (problems, listed) = admin_scan_problems(&schema, &job.id);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(listed, 1);
    // A parameter neither pgx nor libpq knows is a configuration error naming it.
    let out = job.command(0, 1).env("DATABASE_URL", url_with("shema=adm")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(r#"DATABASE_URL: unknown parameter "shema""#), "{}", stderr(&out));
    assert!(!stderr(&out).contains("rwtest-db-pass"), "no password in the error");
    owner(as_owner(&format!("DROP SCHEMA {schema} CASCADE")));
}

#[test]
fn verify_full_with_a_ca_and_a_client_certificate() {
    common::needs_services!();
    let (port, ca) = (env("RW_PG_PORT"), env("RW_PG_CA_FILE"));
    let (cert, key) = (env("RW_PG_CLIENT_CERT"), env("RW_PG_CLIENT_KEY"));
    // rw_cert_user logs in with its certificate alone (pg_hba `cert`): no password anywhere.
    let url = |host: &str, mode: &str, root: &str| {
        format!("postgresql://rw_cert_user@{host}:{port}/postgres?sslmode={mode}&sslrootcert={root}&sslcert={cert}&sslkey={key}&application_name=rw-tls-test")
    };
    let run = |url: String| {
        let (job, _) = job_of(1, 20);
        let out = job.command(0, 1).env("DATABASE_URL", url).output().unwrap();
        (job, out)
    };
    // The server's certificate names localhost, signed by the test CA.
    let (job, out) = run(url("localhost", "verify-full", &ca));
    assert_success(&out);
    assert_eq!(row(&job.id, 0)["status"], "completed");
    // Dialled by address, the name does not match: verify-full refuses, verify-ca does not.
    let (_, out) = run(url("127.0.0.1", "verify-full", &ca));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not valid for name"), "{}", stderr(&out));
    let (job, out) = run(url("127.0.0.1", "verify-ca", &ca));
    assert_success(&out);
    assert_eq!(row(&job.id, 0)["status"], "completed");
    // Another CA: refused by both, and by `require`, which verifies when given a root (libpq).
    for mode in ["verify-full", "verify-ca", "require"] {
        let (_, out) = run(url("localhost", mode, "/etc/ssl/certs/ssl-cert-snakeoil.pem"));
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", stderr(&out));
        assert!(stderr(&out).contains("invalid peer certificate"), "{mode}: {}", stderr(&out));
    }
    // Without its certificate the role cannot log in: the certificate was what let it in.
    let bare = format!("postgresql://rw_cert_user@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}");
    let (_, out) = run(bare);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// Spawns worker 0 of 1 of `job` with `url`, its log to a file the test can read while it
/// runs.
fn spawn_logged(job: &Job, cmd: &mut Command) -> (Child, std::path::PathBuf) {
    let log = job.path(&format!("worker-{}.log", unique("run")));
    let file = std::fs::File::create(&log).unwrap();
    let child = cmd.stderr(Stdio::from(file)).stdout(Stdio::null()).spawn().unwrap();
    (child, log)
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn success_in(schema: &str, job: &str) -> u64 {
    value_in(schema, &format!("SELECT success_count::text FROM reprocessing_workers WHERE job_id = '{job}'"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_admins_queries_scan_every_kind_of_run() {
    common::needs_services!();
    let schema = fresh_schema("scan");
    let url = url_with(&format!("schema={schema}"));
    let mut jobs = Vec::new();

    // Standalone: no job row; the worker writes one.
    let (job, _) = job_of(1, 30);
    assert_success(&job.command(0, 1).env("DATABASE_URL", &url).output().unwrap());
    jobs.push(job.id.clone());

    // Created by the admin: its job row and its pending worker rows, as it inserts them.
    let (job, _) = job_of(1, 30);
    owner(as_owner(&format!(
        "SET search_path = {schema};
         INSERT INTO reprocessing_jobs (id, config, status, created_at, k8s_job_name, total_files, total_workers)
             VALUES ('{id}', '{{\"connection_ids\":[\"c\"]}}', 'running', NOW(), 'reprocess-{id}', 1, 1);
         INSERT INTO reprocessing_workers (job_id, worker_index, status, updated_at, assigned_files)
             VALUES ('{id}', 0, 'pending', NOW(), 1);",
        id = job.id
    )));
    assert_success(&job.command(0, 1).env("DATABASE_URL", &url).output().unwrap());
    jobs.push(job.id.clone());

    // Failed on its configuration (exit 2), recorded `failed` with no job row before it.
    let (job, _) = job_of(1, 30);
    job.config(r#"{"batch_size":"many"}"#);
    let out = job.command(0, 1).env("DATABASE_URL", &url).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    jobs.push(job.id.clone());

    // SIGTERM'd mid-run (exit 143).
    let (job, _) = job_of(1, 20_000);
    let (mut child, log) =
        spawn_logged(&job, job.command(0, 1).env("DATABASE_URL", &url).env("MAX_EVENTS_PER_SEC", "4000"));
    wait_until("lines delivered", Duration::from_secs(60), || success_in(&schema, &job.id) >= 1000);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143), "{}", read_to_string(&log));
    jobs.push(job.id.clone());

    for (kind, id) in ["standalone", "admin-created", "failed on config", "SIGTERM'd"].iter().zip(&jobs) {
        let (problems, listed) = admin_scan_problems(&schema, id);
        assert_eq!(problems, Vec::<String>::new(), "after a {kind} run");
        assert_eq!(listed, 4, "every job listed");
    }
    let status =
        |id: &str| value_in(&schema, &format!("SELECT status FROM reprocessing_workers WHERE job_id = '{id}'"));
    assert_eq!(status(&jobs[0]).as_deref(), Some("completed"));
    assert_eq!(status(&jobs[1]).as_deref(), Some("completed"));
    assert_eq!(status(&jobs[2]).as_deref(), Some("failed"));
    assert_eq!(status(&jobs[3]).as_deref(), Some("failed"));
    let name = |id: &str| value_in(&schema, &format!("SELECT k8s_job_name FROM reprocessing_jobs WHERE id = '{id}'"));
    assert_eq!(name(&jobs[0]).as_deref(), Some(""), "the worker's own job row: no Kubernetes Job");
    assert_eq!(name(&jobs[1]), Some(format!("reprocess-{}", jobs[1])), "the admin's row is left as it is");
    // The job row the worker wrote ends with its only worker; the admin's is the admin's to end.
    let job_status = |id: &str| value_in(&schema, &format!("SELECT status FROM reprocessing_jobs WHERE id = '{id}'"));
    assert_eq!(job_status(&jobs[0]).as_deref(), Some("completed"));
    assert_eq!(job_status(&jobs[1]).as_deref(), Some("running"));
    assert_eq!(job_status(&jobs[3]).as_deref(), Some("running"), "a SIGTERM'd worker has a rerun to come");
    owner(as_owner(&format!("DROP SCHEMA {schema} CASCADE")));
}

/// Consumes `job`'s topic and checks that every line was delivered exactly once, each under
/// its own key.
fn assert_delivered_once(job: &Job, files: &[Vec<String>]) {
    let msgs = consume(&job.topic);
    let listed: Vec<(String, &[String])> = files
        .iter()
        .enumerate()
        .map(|(i, ls)| (job.path(&format!("f{i}.ndjson")).display().to_string(), ls.as_slice()))
        .collect();
    let listed: Vec<(&str, &[String])> = listed.iter().map(|(p, l)| (p.as_str(), *l)).collect();
    assert_keys_are_line_identities(&job.id, &listed, &msgs);
}

#[test]
fn postgres_away_at_the_end_of_a_run_fails_it_and_the_rerun_completes_it_at_once() {
    common::needs_services!();
    let proxy = TcpProxy::start(&format!("127.0.0.1:{}", env("RW_PG_PORT")));
    let through_proxy =
        env("DATABASE_URL").replace(&format!(":{}/", env("RW_PG_PORT")), &format!(":{}/", proxy.port()));
    let (job, files) = job_of(2, 6_000);
    let total = 12_000u64;
    let run = |final_secs: &str| {
        let mut cmd = job.command(0, 1);
        cmd.env("DATABASE_URL", &through_proxy)
            .env("MAX_EVENTS_PER_SEC", "6000")
            .env("STATUS_FINAL_TIMEOUT_SECS", final_secs);
        spawn_logged(&job, &mut cmd)
    };

    // Cut from the moment half the lines are in the row, for longer than the final row's
    // window: every line is delivered, the row cannot say so, and the run must not exit 0.
    let (mut child, log) = run("4");
    wait_until("half the lines", Duration::from_secs(60), || success_in("public", &job.id) >= total / 2);
    proxy.cut();
    let at_cut = row(&job.id, 0);
    assert_eq!(at_cut["status"], "running");
    let code = child.wait().unwrap().code();
    let log1 = read_to_string(&log);
    assert_eq!(code, Some(1), "the final row unwritten is a failed run: {log1}");
    assert!(log1.contains("final status write failed; giving up"), "{log1}");
    assert!(log1.contains("the final row (completed) could not be written"), "{log1}");
    assert!(proxy.refused() > 0, "the worker met the cut");
    assert!(num(&at_cut, "success_count") < total, "the cut came before the run's end: {at_cut:?}");
    assert_eq!(consume(&job.topic).len() as u64, total, "every line was delivered before the exit");
    assert_eq!(row(&job.id, 0)["status"], "running", "the row could not be ended");

    // Kubernetes runs the index again: it finds every line in the topic and ends the row at
    // once, with exact counters, sending nothing.
    proxy.restore();
    let (mut child, log) = run("4");
    assert!(child.wait().unwrap().success(), "{}", read_to_string(&log));
    let log2 = read_to_string(&log);
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed");
    assert_counts(&r, total, 0, 0);
    let (_, ours, incomplete) = read_back_line(&log2).expect("the rerun read its topic back");
    assert_eq!(incomplete, 0, "{log2}");
    assert!(ours > 0, "the rerun found the lines after its row in the topic: {log2}");
    assert_delivered_once(&job, &files);

    // A cut shorter than the window is ridden out: the final row is written when the
    // database is back, and the run ends 0.
    let (job, files) = job_of(1, 3_000);
    let mut cmd = job.command(0, 1);
    cmd.env("DATABASE_URL", &through_proxy).env("STATUS_FINAL_TIMEOUT_SECS", "60").env("MAX_EVENTS_PER_SEC", "1000");
    let (mut child, log) = spawn_logged(&job, &mut cmd);
    wait_until("lines settled", Duration::from_secs(60), || success_in("public", &job.id) > 0);
    proxy.cut();
    wait_until("a failed final write", Duration::from_secs(60), || {
        read_to_string(&log).contains("final status write failed")
    });
    proxy.restore();
    assert!(child.wait().unwrap().success(), "{}", read_to_string(&log));
    assert_eq!(row(&job.id, 0)["status"], "completed");
    assert_counts(&row(&job.id, 0), 3_000, 0, 0);
    assert_delivered_once(&job, &files);
}

#[test]
fn a_resume_given_another_file_list_or_worker_count_is_refused_and_loses_nothing() {
    common::needs_services!();
    let (job, files) = job_of(3, 4_000);
    let listed: Vec<(String, u64)> =
        (0..3).map(|i| (job.path(&format!("f{i}.ndjson")).display().to_string(), 0)).collect();
    // Killed -9 in the middle of its second file.
    let mut cmd = job.command(0, 1);
    cmd.env("MAX_EVENTS_PER_SEC", "2000");
    let (mut child, _log) = spawn_logged(&job, &mut cmd);
    wait_until("the second file begun", Duration::from_secs(60), || {
        try_row(&job.id, 0)
            .is_some_and(|r| r.get("current_file") == Some(&listed[1].0) && num(&r, "success_count") > 4_000)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = row(&job.id, 0);

    // The first file dropped from files.json: refused, naming what changed; the row untouched.
    job.files(&listed[1..]);
    let out = job.run(0, 1);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("files.json lists 2 files, it listed 3"), "{}", stderr(&out));
    // The same list, two workers now.
    job.files(&listed);
    let out = job.run(0, 2);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("TOTAL_WORKERS is 2, it was 1"), "{}", stderr(&out));
    // The same count, another order.
    job.files(&[listed[1].clone(), listed[0].clone(), listed[2].clone()]);
    let out = job.run(0, 1);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("other files for this worker"), "{}", stderr(&out));
    let after = row(&job.id, 0);
    for col in ["status", "current_file", "current_line", "success_count", "processed_files"] {
        assert_eq!(before.get(col), after.get(col), "{col}: the refused runs wrote nothing");
    }

    // The job as it was: it resumes and completes, every line once.
    job.files(&listed);
    assert_success(&job.run(0, 1));
    assert_counts(&row(&job.id, 0), 12_000, 0, 0);
    assert_delivered_once(&job, &files);

    // The same path twice in files.json: refused at load.
    let twice = Job::bare();
    twice.config(r#"{"connection_ids":["c"]}"#);
    twice.files(&[listed[0].clone(), listed[0].clone()]);
    let out = twice.run(0, 1);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("entries 0 and 1: the same path"), "{}", stderr(&out));
}
