//! The resume rule, pure: where a worker starts, from `start_file`/`start_line` and the row it
//! finds in `reprocessing_workers`. Also the row's values the rule reads: [`WorkerStatus`] and
//! [`Snapshot`].
//!
//! The rule (ARCHITECTURE.md, "Resume rule"):
//! - `completed`: nothing to do (the caller ends the run);
//! - `pending`, or no row: start at `start_file`/`start_line`, or at the first file;
//! - `running`, `failed` or `cancelled` with a `current_file` among the assigned files, at or
//!   after the start file: if `processed_files` shows that `current_file` was finished, start
//!   at the next file; else re-open `current_file` and skip its lines `≤ current_line`.
//!
//! `processed_files` counts every assigned file before the resume point, including the files
//! passed over by `start_file`, so that it reaches `assigned_files` when the worker completes.
//! Counters continue from the stored values, which are exact for that point (the tracker's
//! invariant). `processed_bytes` is recomputed from the listed sizes of the files before the
//! resume point, so a file that was partly read counts again from 0.

use std::fmt;
use std::str::FromStr;

use crate::jobfile::FileEntry;
use crate::location::Location;
use crate::tracker::Counts;

/// A worker's status: the `status` column of its row, and how a run ended.
///
/// The column holds only the admin's four values: the admin judges a job whose Kubernetes
/// Job is gone by counting `completed` and `failed` rows, so a row it does not know would
/// show the job as running forever. [`WorkerStatus::Cancelled`] (stopped by SIGTERM at an
/// exact resume point) is therefore written to the column as `failed`, with the cancellation
/// in `error` ([`WorkerStatus::column`]); the worker's own table, `status` and the exit code
/// 143 keep the distinction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkerStatus {
    /// Written by the admin before the pod starts.
    #[default]
    Pending,
    /// A run claimed the row and is going on, or died without writing how it ended.
    Running,
    /// Every assigned file was finished (failed files too), or `limit` was reached.
    Completed,
    /// The run stopped on an error; the row is a point to resume from.
    Failed,
    /// The run was stopped by SIGTERM at an exact resume point; the column shows `failed`.
    Cancelled,
}

impl WorkerStatus {
    /// The status's own name, `cancelled` included (the column's value is [`WorkerStatus::column`]).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Pending => "pending",
            WorkerStatus::Running => "running",
            WorkerStatus::Completed => "completed",
            WorkerStatus::Failed => "failed",
            WorkerStatus::Cancelled => "cancelled",
        }
    }

    /// The value of the `status` column: one of the admin's four (`cancelled` is `failed`).
    pub fn column(self) -> &'static str {
        match self {
            WorkerStatus::Cancelled => WorkerStatus::Failed.as_str(),
            other => other.as_str(),
        }
    }

    /// True for the statuses a run ends with (`completed_at` is set).
    pub fn is_final(self) -> bool {
        matches!(self, WorkerStatus::Completed | WorkerStatus::Failed | WorkerStatus::Cancelled)
    }

    /// True when a stored row with this status is a point to resume from.
    pub(crate) fn is_resumable(self) -> bool {
        matches!(self, WorkerStatus::Running | WorkerStatus::Failed | WorkerStatus::Cancelled)
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A `status` value that is none of the five (`cancelled` is still read: earlier versions
/// wrote it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown worker status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for WorkerStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "pending" => WorkerStatus::Pending,
            "running" => WorkerStatus::Running,
            "completed" => WorkerStatus::Completed,
            "failed" => WorkerStatus::Failed,
            "cancelled" => WorkerStatus::Cancelled,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

/// What the status row shows, at one instant: the resume point and the counters exact for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The line counters, exact for the resume point: every line up to it, each once.
    pub counts: Counts,
    /// `current_file`: the path of the file the resume point is in; `None` before any file.
    pub current_file: Option<String>,
    /// `current_line`: every line of `current_file` up to this one is settled.
    pub current_line: u64,
    /// `current_ts`: `messageCreated` of the latest line that had one.
    pub current_ts: Option<String>,
    /// `processed_files`: assigned files finished, failed ones and those passed over included.
    pub processed_files: u32,
    /// `processed_bytes`: bytes of the assigned files read, each once.
    pub processed_bytes: u64,
}

/// A worker's row as stored, for resuming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// The `status` column.
    pub status: WorkerStatus,
    /// The resume point and the counters stored with it.
    pub snapshot: Snapshot,
}

/// Where this worker starts: an index into its assigned files and the first line there, and
/// the counters to continue from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPoint {
    /// Index into the worker's assigned files (their count when nothing is left).
    pub file: usize,
    /// The first line of that file to read (1-based); the lines before are skipped.
    pub first_line: u64,
    /// The counters and resume point to continue from.
    pub snapshot: Snapshot,
    /// An unfinished run of this worker came before (its row was resumable): what it may
    /// have sent is in the topic. False for a fresh start (no row, or one the admin set to
    /// `pending`), which owes nothing to anything an earlier run of the same job id left.
    pub resumed: bool,
}

/// `start_file` names no entry of files.json, or more than one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("start_file {given:?} {}; the nearest paths there: {}", match .ambiguous {
    true => "names several files.json entries",
    false => "is not in files.json (as the path there, its object key, or its base name)",
}, quoted(.nearest))]
pub struct StartFileMissing {
    /// `start_file` as the config gives it.
    pub given: String,
    /// True when several entries match: the nearest are those.
    pub ambiguous: bool,
    /// The closest paths in files.json (at most `NEAREST`).
    pub nearest: Vec<String>,
}

/// How many of the nearest paths a missing `start_file` error names.
pub(crate) const NEAREST: usize = 3;

fn quoted(paths: &[String]) -> String {
    paths.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
}

/// `start_file` (its position in files.json) and `start_line` (the last line already done).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartAt {
    /// `start_file`'s position in files.json; `None` to start at the first file.
    pub file: Option<usize>,
    /// `start_line`: the last line of that file already done (0: none).
    pub line: u64,
}

fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Finds `start_file` in files.json, in the forms an operator types: the path exactly as
/// there, the object key without scheme and bucket (`dir/f.ndjson.gz` for
/// `s3://bucket/dir/f.ndjson.gz`), or the base name. The first form that matches decides;
/// a form that matches several entries is an error, as is no match. Either error names the
/// nearest paths.
pub fn find_start_file(files: &[FileEntry], given: &str) -> Result<usize, StartFileMissing> {
    let typed = given.trim();
    let key = typed.trim_start_matches('/');
    let forms: [&dyn Fn(&FileEntry) -> bool; 3] = [
        &|f| f.path == typed,
        &|f| Location::parse(&f.path).ok().as_ref().and_then(Location::key) == Some(key),
        &|f| base_name(&f.path) == typed,
    ];
    for matches in forms {
        let found: Vec<usize> = (0..files.len()).filter(|&i| matches(&files[i])).collect();
        match found.as_slice() {
            [] => continue,
            [one] => return Ok(*one),
            several => {
                let nearest = several.iter().take(NEAREST).map(|&i| files[i].path.clone()).collect();
                return Err(StartFileMissing { given: given.to_owned(), ambiguous: true, nearest });
            }
        }
    }
    // The nearest by edit distance to the path, its key or its base name, whichever is closest.
    let distance = |f: &FileEntry| {
        let loc = Location::parse(&f.path).ok();
        let key = loc.as_ref().and_then(Location::key).unwrap_or(&f.path);
        [&f.path, key, base_name(&f.path)].into_iter().map(|form| strsim::levenshtein(form, typed)).min()
    };
    let mut by_distance: Vec<(Option<usize>, &str)> = files.iter().map(|f| (distance(f), f.path.as_str())).collect();
    by_distance.sort();
    let nearest = by_distance.into_iter().take(NEAREST).map(|(_, p)| p.to_owned()).collect();
    Err(StartFileMissing { given: given.to_owned(), ambiguous: false, nearest })
}

/// Applies `start` and a stored row to this worker's files. `assigned` holds positions in
/// `files`, in order.
pub fn start_point(files: &[FileEntry], assigned: &[usize], start: StartAt, stored: Option<&StoredRow>) -> StartPoint {
    let resumed = stored.is_some_and(|r| r.status.is_resumable());
    let mut point = StartPoint { file: 0, first_line: 1, snapshot: Snapshot::default(), resumed };
    if let Some(pos) = start.file {
        point.file = assigned.iter().position(|&p| p >= pos).unwrap_or(assigned.len());
        if assigned.get(point.file) == Some(&pos) {
            point.first_line = start.line + 1;
        }
    }
    let passed_over = |point: StartPoint| {
        let mut point = point;
        point.snapshot.processed_files = point.file as u32;
        point.snapshot.processed_bytes = assigned[..point.file].iter().map(|&p| files[p].size).sum();
        point
    };
    let Some(row) = stored.filter(|r| r.status.is_resumable()) else { return passed_over(point) };
    let Some(cur) = row.snapshot.current_file.as_deref() else { return passed_over(point) };
    let Some(idx) = assigned.iter().position(|&p| files[p].path == cur) else { return passed_over(point) };
    if idx < point.file {
        return passed_over(point);
    }
    // processed_files counts the assigned files before the resume point; if it already covers
    // `cur`, that file was finished and the run goes on with the next one.
    let finished_cur = row.snapshot.processed_files as usize > idx;
    let first_line = if finished_cur {
        1
    } else if idx == point.file {
        (row.snapshot.current_line + 1).max(point.first_line)
    } else {
        row.snapshot.current_line + 1
    };
    let file = if finished_cur { idx + 1 } else { idx };
    passed_over(StartPoint { file, first_line, snapshot: row.snapshot.clone(), resumed })
}

#[cfg(test)]
mod tests;
