//! Resuming a worker, its pure parts: where it starts ([`start_point`]), what it was given to
//! do and whether that changed ([`Assignment`], [`check_row`]), where in each partition a
//! record of a line after the resume point can be ([`Ledger`]), and the matching of the lines
//! it reads again against what it finds there ([`Recovered`]). Reading the partitions back and
//! the one step that puts it together before the pipeline is built are the worker crate's (its
//! `resume::readback` and `resume::reconcile`). Where it cannot see what was delivered, it
//! says so: a [`Fallback`].
//!
//! The submodules (`rule`, `assignment`, `offsets`, `recover`, `fallback`) are the crate's
//! own (`pub(crate)`, for the batcher and the tests); what the worker crate uses is
//! re-exported here, and this list is `resume`'s public surface.

pub(crate) mod assignment;
mod fallback;
pub(crate) mod offsets;
pub(crate) mod recover;
pub(crate) mod rule;

pub use assignment::{check_row, Assignment, JobChanged};
pub use fallback::Fallback;
pub use offsets::{Ledger, PartitionOffset};
pub use recover::{Ended, Recovered, Signature, Signer};
pub use rule::{
    find_start_file, start_point, Snapshot, StartAt, StartFileMissing, StartPoint, StoredRow, UnknownStatus,
    WorkerStatus,
};
