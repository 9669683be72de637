//! The ways the worker can fall back from "no line twice" to "no line lost": each is a point
//! where it cannot see what an earlier attempt delivered, and so sends lines again unseen.
//! Every fallback is logged once where it happens, as a warning with a `fallback` field of
//! [`Fallback::name`] (one pattern to look for in a log: `fallback=`), and counted in
//! `rw_fallbacks_total` by that name; the README's duplicate bound covers each.

/// One fallback to at least once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fallback {
    /// A resumed run found no read-back offsets stored for this worker: its unsettled lines
    /// after the resume point are sent again.
    NoOffsets,
    /// The read-back failed as a whole (or is turned off): as for `NoOffsets`.
    Off,
    /// One partition could not be read to its end: this worker's lines whose records lie
    /// past where its reading stopped are sent again.
    Partition,
    /// A batch's answer was lost, and this worker may not read its topic to look for it: the
    /// batch is sent again.
    NoReadPermission,
    /// A batch's answer was lost in a partition the ledger does not know: sent again.
    NoLedger,
}

impl Fallback {
    /// The name in the log's `fallback` field and the metric's label.
    pub fn name(self) -> &'static str {
        match self {
            Fallback::NoOffsets => "no_offsets",
            Fallback::Off => "off",
            Fallback::Partition => "partition",
            Fallback::NoReadPermission => "no_read_permission",
            Fallback::NoLedger => "no_ledger",
        }
    }
}
