//! What a run was given to do, so that a resume can tell that it is given the same.
//!
//! A row's resume point is a position in the worker's file list (`processed_files`, and the
//! file it names), and a line's key is its file's position in files.json with its path. A
//! resume given another list would read that position in the new list: a file dropped from
//! the front makes the next one look finished, and its lines are never sent. So a run stores
//! its [`Assignment`] with its claim of the row, and a later run of the same index compares
//! its own ([`Assignment::changed_from`]); the row itself is checked too ([`check_row`]), for
//! rows stored without one.

use crate::jobfile::FileEntry;
use crate::resume::StoredRow;

/// A run's share of the job: how many workers and files the job had, and a fingerprint of
/// this worker's files (their positions in files.json and their paths, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// `TOTAL_WORKERS`: the workers the job's files are divided among.
    pub total_workers: u32,
    /// Entries in files.json, every worker's.
    pub total_files: u32,
    /// This worker's files.
    pub files: u32,
    /// SHA-256 of the worker's (position, path) pairs, hex, 32 characters (128 bits).
    pub fingerprint: String,
}

/// Why a resume was refused: the job it is given is not the one its row was written by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the job changed since the run this one resumes: {what}; a changed job must be a new job (another JOB_ID), or its worker rows deleted first")]
pub struct JobChanged {
    /// What differs between this run's job and the one its row was written by.
    pub what: String,
}

impl Assignment {
    /// The assignment of the worker whose files are `assigned` (positions in `files`).
    pub fn of(files: &[FileEntry], assigned: &[usize], total_workers: u32) -> Assignment {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for &i in assigned {
            h.update((i as u64).to_le_bytes());
            h.update((files[i].path.len() as u64).to_le_bytes());
            h.update(files[i].path.as_bytes());
        }
        let digest = h.finalize();
        let fingerprint = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Assignment {
            total_workers,
            total_files: u32::try_from(files.len()).unwrap_or(u32::MAX),
            files: u32::try_from(assigned.len()).unwrap_or(u32::MAX),
            fingerprint,
        }
    }

    /// What differs from `before`, the assignment of the run whose row this one resumes.
    pub fn changed_from(&self, before: &Assignment) -> Option<JobChanged> {
        let what = if self.total_workers != before.total_workers {
            format!("TOTAL_WORKERS is {}, it was {}", self.total_workers, before.total_workers)
        } else if self.total_files != before.total_files {
            format!("files.json lists {} files, it listed {}", self.total_files, before.total_files)
        } else if self.fingerprint != before.fingerprint {
            format!("files.json lists other files for this worker than it did (the same count, {})", self.files)
        } else {
            return None;
        };
        Some(JobChanged { what })
    }
}

/// Checks that the stored row's resume point is where it says in this worker's files: its
/// `current_file` among them, at `processed_files` (not finished) or just before it
/// (finished). A row without a file, or one a new run may start over (`pending`), passes.
/// It cannot tell a file dropped just before the current one from the current one finished
/// (both read "one more file done"): the [`Assignment`] stored with the run tells them apart.
pub fn check_row(files: &[FileEntry], assigned: &[usize], stored: Option<&StoredRow>) -> Result<(), JobChanged> {
    let Some(row) = stored.filter(|r| r.status.is_resumable() || r.status == crate::resume::WorkerStatus::Completed)
    else {
        return Ok(());
    };
    let Some(cur) = row.snapshot.current_file.as_deref() else { return Ok(()) };
    let done = row.snapshot.processed_files as usize;
    let what = match assigned.iter().position(|&p| files[p].path == cur) {
        None => format!("the row's current file {cur} is not among this worker's files"),
        Some(at) if done == at || done == at + 1 => return Ok(()),
        Some(at) => format!(
            "the row's current file {cur} is this worker's file {} now, and {} files before it were done",
            at + 1,
            done
        ),
    };
    Err(JobChanged { what })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resume::{Snapshot, WorkerStatus};

    fn files(paths: &[&str]) -> Vec<FileEntry> {
        paths.iter().map(|p| FileEntry { path: (*p).to_owned(), size: 1 }).collect()
    }

    fn row(file: &str, processed: u32) -> StoredRow {
        let snapshot =
            Snapshot { current_file: Some(file.to_owned()), processed_files: processed, ..Snapshot::default() };
        StoredRow { status: WorkerStatus::Running, snapshot }
    }

    #[test]
    fn any_change_to_the_workers_files_or_the_job_shape_is_named() {
        let abc = files(&["a", "b", "c"]);
        let before = Assignment::of(&abc, &[0, 1, 2], 1);
        assert_eq!(before.fingerprint.len(), 32);
        assert_eq!(Assignment::of(&abc, &[0, 1, 2], 1).changed_from(&before), None);
        let e = |now: Assignment| now.changed_from(&before).expect("a change").what;
        assert!(e(Assignment::of(&abc, &[0, 1, 2], 2)).starts_with("TOTAL_WORKERS is 2, it was 1"));
        assert!(e(Assignment::of(&files(&["b", "c"]), &[0, 1], 1)).starts_with("files.json lists 2 files, it listed 3"));
        assert!(e(Assignment::of(&files(&["a", "c", "b"]), &[0, 1, 2], 1)).contains("other files"));
        // The same paths at other positions have other keys: a change too.
        let moved = Assignment::of(&files(&["x", "a", "b", "c"]), &[1, 2, 3], 1);
        assert_ne!(moved.fingerprint, before.fingerprint);
        // A path split differently between its bytes is another list.
        assert_ne!(Assignment::of(&files(&["ab", "c"]), &[0, 1], 1), Assignment::of(&files(&["a", "bc"]), &[0, 1], 1));
    }

    #[test]
    fn a_row_whose_file_moved_or_went_is_refused() {
        let abc = files(&["a", "b", "c"]);
        // In the middle of b (one file done), or b just finished (two done): as stored.
        assert_eq!(check_row(&abc, &[0, 1, 2], Some(&row("b", 1))), Ok(()));
        assert_eq!(check_row(&abc, &[0, 1, 2], Some(&row("b", 2))), Ok(()));
        // a dropped from the list: b is the first file now, yet one file was done.
        let bc = files(&["b", "c"]);
        let e = check_row(&bc, &[0, 1], Some(&row("b", 2))).unwrap_err();
        assert!(e.what.contains("file 1 now, and 2 files before it were done"), "{e}");
        assert!(check_row(&files(&["x", "a", "b", "c"]), &[0, 1, 2, 3], Some(&row("b", 1))).is_err());
        assert!(check_row(&files(&["a", "c"]), &[0, 1], Some(&row("b", 1))).unwrap_err().what.contains("not among"));
        assert_eq!(check_row(&bc, &[0, 1], None), Ok(()));
    }
}
