//! Resuming a worker, its pure parts: where it starts ([`rule`]), what it was given to do
//! and whether that changed ([`assignment`]), where in each partition a record of a line
//! after the resume point can be ([`offsets`]), and the matching of the lines it reads again
//! against what it finds there ([`recover`]). Reading the partitions back and the one step
//! that puts it together before the pipeline is built are the worker crate's (its
//! `resume::readback` and `resume::reconcile`). Where it cannot see what was delivered, it
//! says so: a [`Fallback`].

pub mod assignment;
mod fallback;
pub mod offsets;
pub mod recover;
pub mod rule;

pub use assignment::{Assignment, JobChanged};
pub use fallback::Fallback;
pub use rule::{start_point, Snapshot, StartAt, StartFileMissing, StartPoint, StoredRow, UnknownStatus, WorkerStatus};
