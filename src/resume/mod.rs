//! Resuming a worker, as one unit. Pure parts: where it starts ([`rule`]), where in each
//! partition a record of a line after the resume point can be ([`offsets`]), and the
//! matching of the lines it reads again against what it finds there ([`recover`]). IO parts:
//! reading the partitions back ([`readback`]) and [`reconcile`], the one step the worker
//! takes before it builds its pipeline: it lists the partitions' ends, reads back what an
//! unfinished earlier run may have written, and hands the pipeline its ledger and the
//! records to match. Where it cannot see what was delivered, it says so: a [`Fallback`].

pub mod assignment;
mod fallback;
pub mod offsets;
#[cfg(feature = "io")]
pub mod readback;
#[cfg(feature = "io")]
mod reconcile;
pub mod recover;
pub mod rule;

pub use assignment::{Assignment, JobChanged};
pub use fallback::Fallback;
#[cfg(feature = "io")]
pub use reconcile::{reconcile, Reconciled, Topics, NOTHING_SENT_BEFORE};
pub use rule::{start_point, Snapshot, StartAt, StartFileMissing, StartPoint, StoredRow, UnknownStatus, WorkerStatus};
