//! Start-point tests: start_file/start_line, and resuming from a stored row.

use super::*;
use crate::jobfile::{FileEntry, JobOptions};
use crate::status::StoredRow;
use crate::tracker::Counts;

fn cfg(files: &[&str], start_file: Option<&str>, start_line: u64) -> Config {
    Config {
        job_id: "j".into(),
        worker_index: 0,
        total_workers: 1,
        database_url: crate::secret::Secret::new("postgres://x"),
        kafka: None,
        topic: "t".into(),
        routing: crate::config::RoutingSource::Fixed(vec!["c".into()]),
        files: files.iter().map(|p| FileEntry { path: p.to_string(), size: 1 }).collect(),
        job: JobOptions { start_file: start_file.map(str::to_owned), start_line, ..Default::default() },
        tuning: crate::config::Tuning {
            max_line_bytes: 1 << 24,
            read_chunk_bytes: 1 << 20,
            read_ahead_chunks: 2,
            batch_max_bytes: 1 << 20,
            max_in_flight: 4,
            shutdown_timeout: Duration::from_secs(1),
        },
        dead_letter: None,
    }
}

fn assigned(c: &Config) -> Vec<(usize, &str)> {
    c.files.iter().enumerate().map(|(i, f)| (i, f.path.as_str())).collect()
}

fn row(status: &str, file: &str, line: u64, processed: u32) -> StoredRow {
    StoredRow {
        status: status.into(),
        snapshot: Snapshot {
            current_file: Some(file.into()),
            current_line: line,
            processed_files: processed,
            counts: Counts { total: 10, success: 10, ..Default::default() },
            ..Default::default()
        },
    }
}

#[test]
fn start_file_by_path_or_basename() {
    let c = cfg(&["s3://b/a.ndjson", "s3://b/b.ndjson", "/x/c.ndjson"], Some("b.ndjson"), 7);
    let s = start_point(&c, &assigned(&c), None).unwrap();
    assert_eq!((s.file, s.first_line), (1, 8));
    let c = cfg(&["s3://b/a.ndjson", "s3://b/b.ndjson", "/x/c.ndjson"], Some("/x/c.ndjson"), 0);
    let s = start_point(&c, &assigned(&c), None).unwrap();
    assert_eq!((s.file, s.first_line), (2, 1));
    let c = cfg(&["a"], Some("zzz"), 0);
    assert!(matches!(start_point(&c, &assigned(&c), None), Err(RunError::StartFile(_))));
}

#[test]
fn start_file_assigned_to_another_worker() {
    let c = cfg(&["f0", "f1", "f2", "f3", "f4"], Some("f2"), 9);
    // This worker has positions 1 and 3 (worker 1 of 2).
    let mine = vec![(1usize, "f1"), (3, "f3")];
    let s = start_point(&c, &mine, None).unwrap();
    assert_eq!((s.file, s.first_line), (1, 1));
}

#[test]
fn resumes_inside_the_current_file() {
    let c = cfg(&["a", "b", "c"], None, 0);
    let s = start_point(&c, &assigned(&c), Some(&row("running", "b", 41, 1))).unwrap();
    assert_eq!((s.file, s.first_line, s.snapshot.counts.total), (1, 42, 10));
    assert_eq!(s.snapshot.processed_bytes, 1, "the size of a only");
    let s = start_point(&c, &assigned(&c), Some(&row("cancelled", "b", 41, 2))).unwrap();
    assert_eq!((s.file, s.first_line), (2, 1), "b was finished");
    let s = start_point(&c, &assigned(&c), Some(&row("pending", "b", 41, 1))).unwrap();
    assert_eq!((s.file, s.first_line, s.snapshot.counts.total), (0, 1, 0));
}
