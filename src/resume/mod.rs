//! Resuming a worker, its IO parts on the pure ones of `rw_core::resume` (the start rule, the
//! offsets ledger, the matching): reading the partitions back ([`readback`]) and
//! [`reconcile`], the one step the worker takes before it builds its pipeline: it lists the
//! partitions' ends, reads back what an unfinished earlier run may have written, and hands
//! the pipeline its ledger and the records to match.

pub mod readback;
mod reconcile;

pub use reconcile::{reconcile, Reconciled, Topics, NOTHING_SENT_BEFORE};
