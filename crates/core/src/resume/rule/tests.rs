//! The resume rule: start_file/start_line, resuming from a stored row, and its properties.

use proptest::prelude::*;

use super::*;

fn files(paths: &[&str]) -> Vec<FileEntry> {
    paths.iter().map(|p| FileEntry { path: p.to_string(), size: 1 }).collect()
}

fn all(f: &[FileEntry]) -> Vec<usize> {
    (0..f.len()).collect()
}

fn row(status: WorkerStatus, file: &str, line: u64, processed: u32) -> StoredRow {
    StoredRow {
        status,
        snapshot: Snapshot {
            current_file: Some(file.into()),
            current_line: line,
            processed_files: processed,
            counts: Counts { total: 10, success: 10, ..Default::default() },
            ..Default::default()
        },
    }
}

/// `start_file` named `file` (found in `f`) after `line`.
fn at(f: &[FileEntry], file: &str, line: u64) -> StartAt {
    StartAt { file: Some(find_start_file(f, file).unwrap()), line }
}

#[test]
fn start_file_by_path_key_or_basename() {
    let f = files(&["s3://b/a.ndjson", "s3://b/day/b.ndjson", "/x/c.ndjson", "gs://g/day/d.ndjson.gz"]);
    let s = start_point(&f, &all(&f), at(&f, "b.ndjson", 7), None);
    assert_eq!((s.file, s.first_line), (1, 8));
    assert_eq!((s.snapshot.processed_files, s.snapshot.processed_bytes), (1, 1), "a was passed over");
    let s = start_point(&f, &all(&f), at(&f, "/x/c.ndjson", 0), None);
    assert_eq!((s.file, s.first_line), (2, 1));
    for typed in ["s3://b/day/b.ndjson", "day/b.ndjson", "/day/b.ndjson", " b.ndjson "] {
        assert_eq!(find_start_file(&f, typed), Ok(1), "{typed}");
    }
    assert_eq!(find_start_file(&f, "day/d.ndjson.gz"), Ok(3), "a GCS object key");
}

#[test]
fn a_start_file_not_in_the_list_names_the_nearest_paths() {
    let f = files(&[
        "s3://b/day/f_01.ndjson",
        "s3://b/day/f_02.ndjson",
        "s3://b/other/zzz.ndjson",
        "s3://b/day/f_03.ndjson",
    ]);
    let e = find_start_file(&f, "day/f_2.ndjson").unwrap_err();
    assert!(!e.ambiguous);
    assert_eq!(e.nearest[0], "s3://b/day/f_02.ndjson", "{e}");
    assert_eq!(e.nearest.len(), NEAREST);
    assert!(!e.nearest.contains(&"s3://b/other/zzz.ndjson".to_owned()), "{e}");
    assert!(e.to_string().starts_with(r#"start_file "day/f_2.ndjson" is not in files.json"#), "{e}");
    // A base name that two entries share: neither is guessed.
    let f = files(&["s3://b/d1/x.ndjson", "s3://b/d2/x.ndjson"]);
    let e = find_start_file(&f, "x.ndjson").unwrap_err();
    assert!(e.ambiguous && e.nearest == ["s3://b/d1/x.ndjson", "s3://b/d2/x.ndjson"], "{e}");
    assert_eq!(find_start_file(&f, "d2/x.ndjson"), Ok(1), "the key tells them apart");
}

#[test]
fn start_file_assigned_to_another_worker() {
    let f = files(&["f0", "f1", "f2", "f3", "f4"]);
    // This worker has positions 1 and 3 (worker 1 of 2).
    let s = start_point(&f, &[1, 3], at(&f, "f2", 9), None);
    assert_eq!((s.file, s.first_line, s.snapshot.processed_files), (1, 1, 1));
}

#[test]
fn resumes_inside_the_current_file() {
    let f = files(&["a", "b", "c"]);
    let s = start_point(&f, &all(&f), StartAt::default(), Some(&row(WorkerStatus::Running, "b", 41, 1)));
    assert_eq!((s.file, s.first_line, s.snapshot.counts.total), (1, 42, 10));
    assert_eq!(s.snapshot.processed_bytes, 1, "the size of a only");
    let s = start_point(&f, &all(&f), StartAt::default(), Some(&row(WorkerStatus::Cancelled, "b", 41, 2)));
    assert_eq!((s.file, s.first_line), (2, 1), "b was finished");
    let s = start_point(&f, &all(&f), StartAt::default(), Some(&row(WorkerStatus::Pending, "b", 41, 1)));
    assert_eq!((s.file, s.first_line, s.snapshot.counts.total), (0, 1, 0));
}

#[test]
fn a_row_before_the_start_file_is_ignored() {
    let f = files(&["a", "b", "c"]);
    let s = start_point(&f, &all(&f), at(&f, "c", 5), Some(&row(WorkerStatus::Failed, "a", 3, 0)));
    assert_eq!((s.file, s.first_line, s.snapshot.counts.total, s.snapshot.processed_files), (2, 6, 0, 2));
    // A row inside the start file resumes after the later of the two points.
    let s = start_point(&f, &all(&f), at(&f, "b", 5), Some(&row(WorkerStatus::Failed, "b", 3, 1)));
    assert_eq!((s.file, s.first_line, s.snapshot.processed_files), (1, 6, 1));
}

#[test]
fn statuses_parse_and_print() {
    for s in ["pending", "running", "completed", "failed", "cancelled"] {
        assert_eq!(s.parse::<WorkerStatus>().unwrap().as_str(), s);
    }
    assert_eq!("done".parse::<WorkerStatus>(), Err(UnknownStatus("done".into())));
    assert!(WorkerStatus::Cancelled.is_final() && !WorkerStatus::Running.is_final());
    assert!(!WorkerStatus::Pending.is_resumable() && !WorkerStatus::Completed.is_resumable());
}

proptest! {
    /// A row written by a run that started at `start` and got to (`cur`, `line`) resumes
    /// exactly there: the same file after the settled lines, or the next file when the row
    /// says the file was finished; never before the start point; bytes are those of the
    /// files before it, passed over or finished.
    #[test]
    fn resume_point_follows_the_row(
        n in 1usize..12,
        start_ix in 0usize..12,
        ahead in 0usize..12,
        line in 0u64..10_000,
        finished in any::<bool>(),
        sizes in proptest::collection::vec(0u64..1_000, 12),
    ) {
        let f: Vec<FileEntry> = (0..n).map(|i| FileEntry { path: format!("f{i}"), size: sizes[i] }).collect();
        let start_ix = start_ix % n;
        let cur = (start_ix + ahead).min(n - 1);
        let name = format!("f{start_ix}");
        let processed = cur as u32 + u32::from(finished);
        let stored = row(WorkerStatus::Running, &format!("f{cur}"), line, processed);
        let s = start_point(&f, &all(&f), at(&f, &name, 0), Some(&stored));
        prop_assert!(s.file >= start_ix);
        if finished {
            prop_assert_eq!((s.file, s.first_line), (cur + 1, 1));
        } else {
            prop_assert_eq!((s.file, s.first_line), (cur, line + 1));
        }
        prop_assert_eq!(s.snapshot.processed_bytes, sizes[..s.file].iter().sum::<u64>());
        prop_assert_eq!(s.snapshot.processed_files as usize, s.file, "every file before the resume point");
        prop_assert_eq!(s.snapshot.counts, stored.snapshot.counts);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    /// The whole rule against a model of it in positions: worker `index` of `total` owns every
    /// `total`-th file; `start_file`/`start_line` give one position (this worker's first file
    /// at or after the start file, after `start_line` if it is that very file); a row left by
    /// a run that did not finish (running, failed, cancelled), on a file of this worker, gives
    /// another (after its line, or the next file when it says the file was finished). The run
    /// starts at the later of the two; the row's counters carry over only when its file is
    /// not before the start's (a row before the start file is ignored); the bytes and files
    /// passed are those of this worker's files before the position. Rows
    /// of every status, on files of any worker or on none, and any start line.
    #[test]
    fn the_later_of_the_start_and_the_row_wins(
        n in 1usize..10,
        total in 1usize..4,
        index in 0usize..4,
        start in proptest::option::of((0usize..10, 0u64..50)),
        status in prop_oneof![
            Just(WorkerStatus::Pending), Just(WorkerStatus::Running), Just(WorkerStatus::Completed),
            Just(WorkerStatus::Failed), Just(WorkerStatus::Cancelled),
        ],
        stored in proptest::option::of((0usize..11, 0u64..50, any::<bool>())),
        sizes in proptest::collection::vec(0u64..1_000, 10),
    ) {
        let index = index % total;
        let f: Vec<FileEntry> = (0..n).map(|i| FileEntry { path: format!("f{i}"), size: sizes[i] }).collect();
        let assigned: Vec<usize> = (0..n).filter(|i| i % total == index).collect();
        let start_name = start.map(|(s, _)| format!("f{}", s % n));
        let at = StartAt {
            file: start_name.map(|name| find_start_file(&f, &name).unwrap()),
            line: start.map_or(0, |(_, l)| l),
        };
        // The row: on file `cur` (f10 is in no files.json), `finished` meaning processed_files
        // already counts it.
        let row = stored.map(|(cur, line, finished)| {
            let idx = assigned.iter().position(|&p| p == cur).unwrap_or(0);
            row(status, &format!("f{cur}"), line, (idx + usize::from(finished)) as u32)
        });
        let got = start_point(&f, &assigned, at, row.as_ref());

        // The model, in (position among this worker's files, first line).
        let from_start = match start {
            None => (0, 1),
            Some((s, line)) => {
                let s = s % n;
                match assigned.iter().position(|&p| p >= s) {
                    Some(k) if assigned[k] == s => (k, line + 1),
                    Some(k) => (k, 1),
                    None => (assigned.len(), 1),
                }
            }
        };
        let resumable = matches!(status, WorkerStatus::Running | WorkerStatus::Failed | WorkerStatus::Cancelled);
        // The row's file, when it counts, and the position it gives.
        let from_row = stored.filter(|_| resumable).and_then(|(cur, line, finished)| {
            let k = assigned.iter().position(|&p| p == cur).filter(|&k| k >= from_start.0)?;
            Some(if finished { (k + 1, 1) } else { (k, line + 1) })
        });
        let want = from_row.map_or(from_start, |r| r.max(from_start));
        let row_used = from_row.is_some();
        prop_assert_eq!((got.file, got.first_line), want);
        prop_assert_eq!(got.resumed, row.is_some() && resumable);
        prop_assert_eq!(got.snapshot.processed_files as usize, want.0);
        prop_assert_eq!(got.snapshot.processed_bytes, assigned[..want.0].iter().map(|&p| sizes[p]).sum::<u64>());
        let counts = if row_used { row.as_ref().unwrap().snapshot.counts } else { Counts::default() };
        prop_assert_eq!(got.snapshot.counts, counts);
    }
}

#[test]
fn only_an_unfinished_row_is_a_resume() {
    let f = files(&["a", "b"]);
    let fresh = |stored: Option<&StoredRow>| start_point(&f, &all(&f), StartAt::default(), stored).resumed;
    assert!(!fresh(None), "no row");
    assert!(!fresh(Some(&row(WorkerStatus::Pending, "a", 5, 0))), "a row the admin reset to pending");
    for status in [WorkerStatus::Running, WorkerStatus::Failed, WorkerStatus::Cancelled] {
        assert!(fresh(Some(&row(status, "a", 5, 0))), "{status}");
    }
    let mut no_file = row(WorkerStatus::Running, "a", 0, 0);
    no_file.snapshot.current_file = None;
    assert!(fresh(Some(&no_file)), "a run that crashed before its first file still sent nothing it can vouch for");
}
