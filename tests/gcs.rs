//! `gs://` files end to end, against the fake GCS server that `scripts/services.sh` starts
//! (`STORAGE_EMULATOR_HOST`): plain, gzip and zstd files (names that lie about their
//! compression too) over several workers, reads cut mid-body that resume at the exact byte,
//! and `plan --gcs-path` listing over several pages. Read back from Kafka with kcat.

mod common;

use std::process::Command;

use common::fault_proxy::FaultProxy;
use common::*;
use rw_core::generate::{ndjson, Shape};

/// Uploads `bytes` to the fake GCS server (creating the bucket) and returns the gs:// URL.
fn put_gcs(bucket: &str, name: &str, bytes: &[u8]) -> String {
    let host = env("STORAGE_EMULATOR_HOST");
    let run = |args: &[&str], input: Option<&[u8]>| {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"]).args(args);
        let out = match input {
            None => c.output().unwrap(),
            Some(data) => {
                use std::io::Write;
                let mut child =
                    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
                child.stdin.take().unwrap().write_all(data).unwrap();
                child.wait_with_output().unwrap()
            }
        };
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let body = format!(r#"{{"name":"{bucket}"}}"#);
    let buckets = format!("{host}/storage/v1/b");
    let created = run(&["-X", "POST", "-H", "content-type: application/json", "-d", &body, &buckets], None);
    assert!(created == "200" || created == "409", "create bucket {bucket}: HTTP {created}");
    let code = run(
        &[
            "-X",
            "POST",
            "--data-binary",
            "@-",
            &format!("{host}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"),
        ],
        Some(bytes),
    );
    assert_eq!(code, "200", "upload gs://{bucket}/{name}");
    format!("gs://{bucket}/{name}")
}

fn lines_of(data: &[u8]) -> Vec<String> {
    String::from_utf8(data.to_vec()).unwrap().lines().map(str::to_owned).collect()
}

fn bucket() -> String {
    unique("gcs").to_lowercase()
}

#[test]
fn gcs_files_plain_gzip_and_zstd_over_two_workers() {
    common::needs_services!();
    let job = Job::new(2);
    let b = bucket();
    let shape = Shape::default();
    let (plain, gz, zst, lies_gz, lies_plain) = (
        ndjson(1, &shape, 2_000),
        ndjson(2, &shape, 1_500),
        ndjson(3, &shape, 1_500),
        ndjson(4, &shape, 300),
        ndjson(5, &shape, 300),
    );
    let mut expected = Vec::new();
    for d in [&plain, &gz, &zst, &lies_gz, &lies_plain] {
        expected.extend(lines_of(d));
    }
    let objects: Vec<(String, Vec<u8>)> = vec![
        ("in/plain.ndjson".into(), plain.clone()),
        ("in/b.ndjson.gz".into(), gzip(&gz)),
        ("in/c.ndjson.zst".into(), zstd::encode_all(&zst[..], 3).unwrap()),
        // Names that lie: zstd called .gz, gzip called plain.
        ("in/lies.ndjson.gz".into(), zstd::encode_all(&lies_gz[..], 3).unwrap()),
        ("in/lies.ndjson".into(), gzip(&lies_plain)),
        ("in/empty.ndjson".into(), Vec::new()),
    ];
    let files: Vec<(String, u64)> =
        objects.iter().map(|(name, body)| (put_gcs(&b, name, body), body.len() as u64)).collect();
    job.files(&files);
    job.config(r#"{"connection_ids":["c1"]}"#);
    for w in 0..2 {
        let out = job.command(w, 2).env("READ_CHUNK_BYTES", "65536").output().unwrap();
        assert_success(&out);
    }
    let msgs = consume(&job.topic);
    assert_eq!(values(&msgs), sorted(expected.clone()), "every line of every gs:// file, byte for byte");
    let c1 = vec![("connection_ids".to_string(), "c1".to_string())];
    assert!(msgs.iter().all(|m| m.headers == c1), "the header on every message");
    let mut success = 0;
    for w in 0..2 {
        let r = row(&job.id, w);
        assert_eq!(r["status"], "completed", "{r:?}");
        assert_eq!(num(&r, "processed_files"), num(&r, "assigned_files"), "{r:?}");
        assert_eq!(num(&r, "processed_bytes"), num(&r, "total_bytes"), "each byte once: {r:?}");
        success += num(&r, "success_count");
    }
    assert_eq!(success, expected.len() as u64);
}

#[test]
fn gcs_reads_cut_mid_body_resume_at_the_exact_byte() {
    common::needs_services!();
    let proxy = FaultProxy::start(&env("STORAGE_EMULATOR_HOST"));
    let job = Job::new(2);
    let b = bucket();
    let (data, other) = (ndjson(7, &Shape::default(), 3_000), ndjson(8, &Shape::default(), 3_000));
    let mut expected = lines_of(&data);
    expected.extend(lines_of(&other));
    let gz = gzip(&other);
    let files =
        [(put_gcs(&b, "plain.ndjson", &data), data.len() as u64), (put_gcs(&b, "z.ndjson.gz", &gz), gz.len() as u64)];
    job.files(&files);
    job.config(r#"{"connection_ids":["c1"]}"#);
    let out =
        job.command(0, 1).env("STORAGE_EMULATOR_HOST", proxy.url()).env("READ_CHUNK_BYTES", "65536").output().unwrap();
    assert_success(&out);
    let (faults, resumed) = proxy.faults_and_resumes();
    let log = proxy.log();
    assert!(faults >= 4, "faults injected: {log:?}");
    assert!(resumed >= 1, "a cut read resumed at the exact byte: {log:?}");
    assert_eq!(values(&consume(&job.topic)), sorted(expected.clone()), "every line exactly once");
    let r = row(&job.id, 0);
    assert_counts(&r, expected.len() as u64, 0, 0);
    assert_eq!(num(&r, "processed_bytes"), num(&r, "total_bytes"), "bytes read again are not counted twice: {r:?}");
    println!("GCS proxy: {} requests, {faults} faults injected, {resumed} reads resumed at the exact byte", log.len());
}

#[test]
fn plan_lists_a_gcs_prefix_over_several_pages() {
    common::needs_services!();
    let b = bucket();
    let mut want = Vec::new();
    for i in 0..7 {
        let body = vec![b'x'; 10 + i];
        want.push((put_gcs(&b, &format!("failover/2024-05-0{i}.ndjson.gz"), &body), body.len() as u64));
    }
    put_gcs(&b, "elsewhere/x.ndjson", b"{}\n");
    let job = Job::bare();
    let out = Command::new(env!("CARGO_BIN_EXE_reprocessing-worker"))
        .args(["plan", "--gcs-path", &format!("gs://{b}/failover/"), "--list-page-size", "3", "--workers", "2"])
        .args(["--job-id", &job.id])
        .arg("--files-out")
        .arg(job.path("files.json"))
        .arg("--config-out")
        .arg(job.path("config.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = rw_core::parse_files_list(&std::fs::read(job.path("files.json")).unwrap()).unwrap();
    let mut got: Vec<(String, u64)> = listed.into_iter().map(|f| (f.path, f.size)).collect();
    got.sort();
    assert_eq!(got, want, "all 7 objects under the prefix, over 3 pages, with their sizes");
    let config = read_to_string(&job.path("config.json"));
    assert!(config.contains(&format!(r#""gcs_path":"gs://{b}/failover/""#)), "{config}");
    assert!(!config.contains("stream_ids"), "no stream_ids means every stream: {config}");
}
