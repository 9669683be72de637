//! The operator's side, on the real services: `plan` against S3 with thousands of keys over
//! several ListObjectsV2 pages, its manifests validated against the Kubernetes schemas and
//! fed back into a local N-worker run; `status` on a live job; the progress line in a real
//! terminal (tmux).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reprocessing-worker"))
}

#[test]
fn plan_lists_pages_balances_validates_and_runs_every_file_once() {
    common::needs_services!();
    let bucket = unique("plan").to_lowercase();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut expected = Vec::new();
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..2_200usize {
        let line = event(i, "s", "2024-05-01T00:00:00Z");
        let body = format!("{line}\n{}\n", " ".repeat(i % 50)).into_bytes();
        expected.push(line);
        if i % 10 == 0 {
            objects.push((format!("in/2024/part-{i:05}.ndjson.gz"), gzip(&body)));
        } else if i % 10 == 5 {
            objects.push((format!("in/2024/part-{i:05}.ndjson.zst"), zstd::encode_all(&body[..], 3).unwrap()));
        } else {
            objects.push((format!("in/2024/part-{i:05}.ndjson"), body));
        }
    }
    for i in 0..300 {
        objects.push((format!("in/2024/other-{i}.json"), b"{}".to_vec()));
    }
    rt.block_on(async {
        let s3 = reprocessing_worker::source::s3_client().await;
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        let mut set = tokio::task::JoinSet::new();
        for (key, body) in objects {
            let (s3, bucket, permit) = (s3.clone(), bucket.clone(), sem.clone().acquire_owned().await.unwrap());
            set.spawn(async move {
                s3.put_object().bucket(bucket).key(key).body(body.into()).send().await.unwrap();
                drop(permit);
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    let job = Job::new(3);
    let out = bin()
        .args(["plan", "--s3-path", &format!("s3://{bucket}/in/"), "--workers", "4", "--connection-ids", "c1,c2"])
        .args(["--job-id", &job.id, "--namespace", "replay", "--image", "example/rw:1"])
        .args(["--service-account", "gcs-reader", "--node-selector", "pool=replay,arch=any"])
        .args(["--date-from", "2024-01-01T00:00:00Z"])
        .args(["--max-events-per-sec", "4000000", "--max-bytes-per-sec", "4000000000"])
        .arg("--files-out")
        .arg(job.path("files.json"))
        .arg("--config-out")
        .arg(job.path("config.json"))
        .env("KAFKA_DESTINATIONS_TOPIC", &job.topic)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The zstd files too (one in ten), which the admin's listing misses.
    assert!(stderr(&out).contains("planned 2200 of 2500 listed files"), "{}", stderr(&out));
    // A date range keeps the files whose names carry no time, and says which.
    assert!(
        stderr(&out).contains("warning: kept 2200 files whose names carry no time")
            && stderr(&out).contains(&format!("s3://{bucket}/in/2024/part-00005.ndjson.zst")),
        "{}",
        stderr(&out)
    );
    // The job's rate limits, and the workers that share them, are where the pods read them.
    let config: sonic_rs::Value = sonic_rs::from_str(&read_to_string(&job.path("config.json"))).unwrap();
    let field = |k: &str| config.get(k).and_then(|v| v.as_u64());
    assert_eq!(
        (field("max_events_per_sec"), field("max_bytes_per_sec"), field("parallel_workers")),
        (Some(4_000_000), Some(4_000_000_000), Some(4))
    );
    let yaml = job.write("plan.yaml", &out.stdout);
    let v = Command::new("kubernetes-validate").args(["--strict", "-k", "1.30.0", &yaml]).output().unwrap();
    assert!(v.status.success(), "schema validation: {}{}", String::from_utf8_lossy(&v.stdout), stderr(&v));
    let docs: Vec<sonic_rs::Value> =
        String::from_utf8(out.stdout).unwrap().split("\n---\n").map(|d| sonic_rs::from_str(d).unwrap()).collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d.get("kind").and_then(|k| k.as_str()).unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "ConfigMap", "Secret", "Job"]);
    // What the admin's tools look for: its names, and the `job-id` label its log viewer selects.
    let label =
        |d: &sonic_rs::Value, k: &str| d.pointer(["metadata", "labels", k]).and_then(|v| v.as_str()).map(str::to_owned);
    for (d, suffix) in docs.iter().zip(["-files", "-config", "-credentials", ""]) {
        let name = d.pointer(["metadata", "name"]).and_then(|v| v.as_str()).unwrap();
        assert!(name.starts_with("reprocess-") && name.ends_with(suffix), "{name}");
        assert_eq!(label(d, "job-id").as_deref(), Some(job.id.as_str()));
        assert_eq!(label(d, "app").as_deref(), Some("bulker-reprocessing"));
    }
    let pod = docs[3].pointer(["spec", "template"]).unwrap();
    assert_eq!(label(pod, "job-id").as_deref(), Some(job.id.as_str()), "the pods carry the job-id label");
    assert_eq!(pod.pointer(["spec", "serviceAccountName"]).and_then(|v| v.as_str()), Some("gcs-reader"));
    let spec = docs[3].get("spec").unwrap();
    assert_eq!(spec.get("completionMode").and_then(|v| v.as_str()), Some("Indexed"));
    assert_eq!(spec.get("completions").and_then(|v| v.as_u64()), Some(4));
    // The ConfigMap's gzipped files.json is the list written for the local run.
    use base64::Engine as _;
    let b64 = docs[0].pointer(["binaryData", "files.json"]).and_then(|v| v.as_str()).unwrap();
    let gz = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let listed = rw_core::parse_files_list(&gz).unwrap();
    let written = rw_core::parse_files_list(&std::fs::read(job.path("files.json")).unwrap()).unwrap();
    assert_eq!(listed, written);
    assert_eq!(listed.len(), 2200);
    let loads: Vec<u64> = (0..4).map(|w| listed.iter().skip(w).step_by(4).map(|f| f.size).sum()).collect();
    let (min, max) = (*loads.iter().min().unwrap(), *loads.iter().max().unwrap());
    assert!(max - min <= listed.iter().map(|f| f.size).max().unwrap(), "balanced bytes: {loads:?}");

    // Fed back into a local 4-worker run, every file is processed exactly once.
    let run = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/run-local-job.sh"))
        .arg("4")
        .env("RW_BIN", env!("CARGO_BIN_EXE_reprocessing-worker"))
        .env("JOB_ID", &job.id)
        .env("DATABASE_URL", env("DATABASE_URL"))
        .env("KAFKA_DESTINATIONS_TOPIC", &job.topic)
        .env("FILES_CONFIG_PATH", job.path("files.json"))
        .env("JOB_CONFIG_PATH", job.path("config.json"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(values(&consume(&job.topic)), sorted(expected), "every line of every file exactly once");
    let mut files = 0;
    for w in 0..4 {
        let r = row(&job.id, w);
        assert_eq!(r["status"], "completed");
        assert_eq!(num(&r, "processed_files"), num(&r, "assigned_files"));
        files += num(&r, "processed_files");
    }
    assert_eq!(files, 2200);
}

#[test]
fn status_shows_a_live_job_then_its_totals() {
    common::needs_services!();
    let job = Job::new(3);
    let data = rw_core::generate::ndjson(3, &Default::default(), 60_000);
    let p = job.write("f.ndjson", &data);
    job.files(&[(p, data.len() as u64)]);
    job.config(r#"{"connection_ids":["c"],"batch_size":200}"#);
    let mut child =
        job.command(0, 1).env("KAFKA_MAX_IN_FLIGHT", "1").stderr(std::process::Stdio::null()).spawn().unwrap();
    let try_status = |extra: &[&str]| {
        let out = bin()
            .args(["status", "--job", &job.id])
            .args(extra)
            .env("DATABASE_URL", env("DATABASE_URL"))
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
    };
    let status = |extra: &[&str]| try_status(extra).expect("status succeeds");
    let start = Instant::now();
    let mut live = None;
    while start.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none() {
        // Until the worker has written its rows, status says so and fails.
        let Some(text) = try_status(&["--json"]) else { continue };
        let j: sonic_rs::Value = sonic_rs::from_str(text.trim()).unwrap_or_default();
        let w = j.get("workers").and_then(|w| w.as_array()).and_then(|a| a.first().cloned());
        if let Some(w) = w {
            if w.get("status").and_then(|s| s.as_str()) == Some("running")
                && w.get("total_lines").and_then(|n| n.as_u64()).unwrap_or(0) > 0
            {
                live = Some(w);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(live.is_some(), "status saw the job running with progress");
    assert!(child.wait().unwrap().success());
    let table = status(&["--watch", "1"]);
    assert!(table.contains("completed") && table.contains("60000") && table.contains("1 ended"), "{table}");
    let j: sonic_rs::Value = sonic_rs::from_str(status(&["--json"]).trim()).unwrap();
    let w = &j.get("workers").and_then(|w| w.as_array()).unwrap()[0];
    assert_eq!(w.get("success_count").and_then(|n| n.as_u64()), Some(60_000));
    // A standalone job (no Kubernetes Job for the admin to judge it by) is ended by its
    // workers once every row is completed.
    assert_eq!(j.get("status").and_then(|s| s.as_str()), Some("completed"), "the job row's status");
}

#[test]
fn status_json_totals_match_the_rows_and_unknown_jobs_fail() {
    common::needs_services!();
    let job = Job::new(2);
    let mut files = Vec::new();
    for i in 0..5 {
        let mut data = rw_core::generate::ndjson(10 + i, &Default::default(), 500 + 100 * i);
        data.extend_from_slice(b"not json\n\n");
        files.push((job.write(&format!("f{i}.ndjson"), &data), data.len() as u64));
    }
    job.files(&files);
    job.config(r#"{"connection_ids":["c"]}"#);
    for w in 0..3 {
        assert_success(&job.run(w, 3));
    }
    let status = |id: &str| {
        bin().args(["status", "--job", id, "--json"]).env("DATABASE_URL", env("DATABASE_URL")).output().unwrap()
    };
    let out = status(&job.id);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: sonic_rs::Value = sonic_rs::from_slice(&out.stdout).unwrap();
    let workers = j.get("workers").and_then(|w| w.as_array()).unwrap();
    assert_eq!(workers.len(), 3);
    let total = j.get("total").expect("a total object");
    for field in [
        "assigned_files",
        "processed_files",
        "total_lines",
        "success_count",
        "error_count",
        "skipped_count",
        "total_bytes",
        "processed_bytes",
    ] {
        let sum: u64 = workers.iter().map(|w| w.get(field).and_then(|n| n.as_u64()).unwrap()).sum();
        assert_eq!(total.get(field).and_then(|n| n.as_u64()), Some(sum), "total.{field}");
    }
    let lps: f64 = workers.iter().map(|w| w.get("lines_per_sec").and_then(|n| n.as_f64()).unwrap_or(0.0)).sum();
    let got = total.get("lines_per_sec").and_then(|n| n.as_f64()).unwrap();
    assert!((got - lps).abs() < 1e-6 * lps.max(1.0), "total.lines_per_sec {got} vs {lps}");
    assert_eq!(total.get("ended").and_then(|n| n.as_u64()), Some(3));
    assert!(total.get("eta_seconds").is_some_and(|v| v.is_null()), "no ETA once every worker ended");
    assert_eq!(total.get("processed_files").and_then(|n| n.as_u64()), Some(5));
    assert_eq!(total.get("error_count").and_then(|n| n.as_u64()), Some(5), "one bad line per file");
    // The worker creates the job row as running; the admin marks it completed, not the worker.
    assert!(j.get("status").and_then(|s| s.as_str()).is_some(), "the job's status: {j:?}");

    // An unknown id, and a job with no worker rows: said clearly, and a failure.
    let out = status("no-such-job-here");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no job \"no-such-job-here\""), "{}", stderr(&out));
    let empty = unique("job");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&env("DATABASE_URL"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c.execute(
            "INSERT INTO reprocessing_jobs (id, config, status, created_at) VALUES ($1, '{}', 'pending', NOW())",
            &[&empty],
        )
        .await
        .unwrap();
    });
    let out = status(&empty);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has no worker rows"), "{}", stderr(&out));
}

#[test]
fn progress_line_in_a_terminal_and_never_in_a_pipe() {
    common::needs_services!();
    let job = Job::new(1);
    let data = rw_core::generate::ndjson(4, &Default::default(), 30_000);
    let p = job.write("f.ndjson", &data);
    job.files(&[(p, data.len() as u64)]);
    job.config(r#"{"connection_ids":["c"],"dry_run":true}"#);
    let session = unique("rw");
    let mut cmd = job.command(0, 1);
    let envs: Vec<String> =
        cmd.get_envs().filter_map(|(k, v)| Some(format!("{}='{}'", k.to_str()?, v?.to_str()?))).collect();
    let line = format!("env {} {} ; sleep 30", envs.join(" "), env!("CARGO_BIN_EXE_reprocessing-worker"));
    let ok = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "220", "-y", "30", &line])
        .status()
        .unwrap();
    assert!(ok.success());
    let start = Instant::now();
    let mut seen = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &session]).output().unwrap();
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if seen.contains("lines/s") && seen.contains("worker finished") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("tmux").args(["kill-session", "-t", &session]).status();
    assert!(
        seen.contains("files 1/1") && seen.contains("lines/s") && seen.contains("MB/s") && seen.contains("ETA"),
        "pane: {seen}"
    );
    // Not a terminal: no progress line.
    let out = cmd.output().unwrap();
    assert_success(&out);
    assert!(!stderr(&out).contains("lines/s"));
}

#[test]
fn the_progress_line_says_when_the_rate_limit_holds_the_worker_back() {
    common::needs_services!();
    let job = Job::new(1);
    let body: String = (0..8_000).map(|i| event(i, "s", "2024-01-01T00:00:00Z") + "\n").collect();
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    job.config(r#"{"connection_ids":["c"],"dry_run":true,"batch_size":100}"#);
    let session = unique("rw");
    let mut cmd = job.command(0, 1);
    cmd.env("MAX_EVENTS_PER_SEC", "2000");
    let envs: Vec<String> =
        cmd.get_envs().filter_map(|(k, v)| Some(format!("{}='{}'", k.to_str()?, v?.to_str()?))).collect();
    let line = format!("env {} {} ; sleep 30", envs.join(" "), env!("CARGO_BIN_EXE_reprocessing-worker"));
    let ok = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "250", "-y", "30", &line])
        .status()
        .unwrap();
    assert!(ok.success());
    let start = Instant::now();
    let mut seen = String::new();
    while start.elapsed() < Duration::from_secs(30) && !seen.contains("held back by the rate limit") {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &session]).output().unwrap();
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("tmux").args(["kill-session", "-t", &session]).status();
    assert!(seen.contains("held back by the rate limit"), "pane: {seen}");
    assert!(seen.contains("rate_limit=2000 lines/s"), "the start-up line states the limit: {seen}");
}
