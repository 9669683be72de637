//! The low watermark: which lines of the current file are settled, and the counters that
//! go with them.
//!
//! Every line of a file gets a [`LineState`]. A line is *settled* once it is skipped,
//! counted as an error, or acknowledged by the broker. Lines are sent in batches that are
//! acknowledged in any order, so the settled lines are not always a prefix. The tracker
//! keeps the states of the lines after the watermark in a ring and advances the watermark
//! over the settled prefix only:
//!
//! > **Invariant.** Every line `≤ watermark()` is settled, and the counters (`total`,
//! > `success`, `error`, `skipped`) count exactly the lines `≤ watermark()`, each once.
//!
//! So `current_file`/`current_line` in the status row is always a safe resume point, and the
//! counters stored next to it are exact for it. A line that is in a batch still in flight (or
//! in one not yet sent) holds the watermark back. A batch that failed *releases* its lines:
//! they are unsettled again and the next attempt at the file sends them again; lines after
//! the watermark that already settled are not sent or counted twice.

use std::collections::VecDeque;

/// The state of one line after the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    /// Handed to a batch; not acknowledged yet.
    Pending,
    /// Its batch failed; the next attempt sends it again.
    Released,
    Success,
    Error,
    Skipped,
}

impl LineState {
    pub fn is_settled(self) -> bool {
        matches!(self, LineState::Success | LineState::Error | LineState::Skipped)
    }
}

/// Line counters. `total == success + error + skipped` always holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub success: u64,
    pub error: u64,
    pub skipped: u64,
}

impl Counts {
    fn add(&mut self, s: LineState) {
        self.total += 1;
        match s {
            LineState::Success => self.success += 1,
            LineState::Error => self.error += 1,
            LineState::Skipped => self.skipped += 1,
            LineState::Pending | LineState::Released => unreachable!("only settled lines are counted"),
        }
    }

    pub fn plus(mut self, o: Counts) -> Counts {
        self.total += o.total;
        self.success += o.success;
        self.error += o.error;
        self.skipped += o.skipped;
        self
    }
}

/// Tracks the lines of one file. Line numbers are 1-based.
#[derive(Debug)]
pub struct FileTracker {
    /// The first line not yet folded into the counters: the watermark is `base - 1`.
    base: u64,
    /// `states[i]` is the state of line `base + i`. Bounded by the lines in flight plus the
    /// lines held by unsent batches; the pipeline keeps it below `Engine::max_unsettled_lines`.
    states: VecDeque<LineState>,
}

impl FileTracker {
    /// A tracker whose lines `< first` are out of scope (already done, or skipped by
    /// `start_line`): they are neither processed nor counted.
    pub fn new(first: u64) -> Self {
        Self { base: first.max(1), states: VecDeque::new() }
    }

    /// Every line up to this one is settled and counted.
    pub fn watermark(&self) -> u64 {
        self.base - 1
    }

    /// The next line never seen before.
    pub fn next_new_line(&self) -> u64 {
        self.base + self.states.len() as u64
    }

    /// Lines tracked after the watermark.
    pub fn window(&self) -> usize {
        self.states.len()
    }

    /// True when `line` needs no more work: settled or before the watermark.
    pub fn is_settled(&self, line: u64) -> bool {
        line < self.base || self.state(line).is_some_and(LineState::is_settled)
    }

    pub fn state(&self, line: u64) -> Option<LineState> {
        line.checked_sub(self.base).and_then(|i| self.states.get(i as usize).copied())
    }

    /// Records the state of `line`: the next new line, or an unsettled one being retried.
    /// Returns the counts of the lines this let the watermark pass.
    pub fn record(&mut self, line: u64, state: LineState) -> Counts {
        let idx = line.checked_sub(self.base).expect("line before the watermark") as usize;
        if idx == self.states.len() {
            self.states.push_back(state);
        } else {
            let slot = self.states.get_mut(idx).expect("lines are recorded in order");
            debug_assert!(!slot.is_settled(), "line {line} settled twice");
            *slot = state;
        }
        self.fold()
    }

    /// Sets the state of lines already recorded (a batch's acknowledgement or failure).
    pub fn resolve(&mut self, lines: &[u64], state: LineState) -> Counts {
        for &line in lines {
            if let Some(idx) = line.checked_sub(self.base) {
                if let Some(slot) = self.states.get_mut(idx as usize) {
                    if !slot.is_settled() {
                        *slot = state;
                    }
                }
            }
        }
        self.fold()
    }

    /// Settles every released line as an error (the file is given up).
    pub fn give_up(&mut self) -> Counts {
        for s in self.states.iter_mut() {
            if *s == LineState::Released {
                *s = LineState::Error;
            }
        }
        self.fold()
    }

    /// Lines whose batch failed and that were not sent again.
    pub fn released(&self) -> usize {
        self.states.iter().filter(|s| **s == LineState::Released).count()
    }

    fn fold(&mut self) -> Counts {
        let mut c = Counts::default();
        while let Some(&s) = self.states.front() {
            if !s.is_settled() {
                break;
            }
            c.add(s);
            self.states.pop_front();
            self.base += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn watermark_waits_for_the_oldest_pending_line() {
        let mut t = FileTracker::new(1);
        assert_eq!(t.record(1, LineState::Skipped).total, 1);
        t.record(2, LineState::Pending);
        t.record(3, LineState::Error);
        t.record(4, LineState::Pending);
        assert_eq!(t.watermark(), 1);
        let c = t.resolve(&[4], LineState::Success);
        assert_eq!((t.watermark(), c), (1, Counts::default()));
        let c = t.resolve(&[2], LineState::Success);
        assert_eq!(t.watermark(), 4);
        assert_eq!(c, Counts { total: 3, success: 2, error: 1, skipped: 0 });
    }

    #[test]
    fn released_lines_hold_the_watermark_until_retried_or_given_up() {
        let mut t = FileTracker::new(11);
        t.record(11, LineState::Pending);
        t.record(12, LineState::Pending);
        t.resolve(&[11], LineState::Released);
        t.resolve(&[12], LineState::Success);
        assert_eq!(t.watermark(), 10);
        assert!(!t.is_settled(11) && t.is_settled(12) && t.is_settled(5));
        t.record(11, LineState::Pending);
        t.resolve(&[11], LineState::Released);
        let c = t.give_up();
        assert_eq!(t.watermark(), 12);
        assert_eq!(c, Counts { total: 2, success: 1, error: 1, skipped: 0 });
    }

    proptest! {
        /// Under any acknowledgement order, the watermark never passes an unsettled line,
        /// every line is counted exactly once, and the counts at the watermark are exact.
        #[test]
        fn low_watermark_under_any_ack_order(
            kinds in proptest::collection::vec(0u8..4, 1..300),
            batch in 1usize..20,
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..400),
        ) {
            let mut t = FileTracker::new(1);
            let mut counted = Counts::default();
            let mut batches: Vec<Vec<u64>> = Vec::new();
            let mut open: Vec<u64> = Vec::new();
            let mut truth = vec![LineState::Pending; kinds.len() + 1];
            for (i, k) in kinds.iter().enumerate() {
                let line = i as u64 + 1;
                let st = match k { 0 => LineState::Skipped, 1 => LineState::Error, _ => LineState::Pending };
                truth[line as usize] = st;
                counted = counted.plus(t.record(line, st));
                if st == LineState::Pending {
                    open.push(line);
                    if open.len() == batch { batches.push(std::mem::take(&mut open)); }
                }
            }
            if !open.is_empty() { batches.push(open); }
            let check = |t: &FileTracker, counted: &Counts, truth: &[LineState]| {
                let w = t.watermark() as usize;
                for s in &truth[1..=w] { prop_assert!(s.is_settled()); }
                if w + 1 < truth.len() { prop_assert!(!truth[w + 1].is_settled()); }
                let mut exact = Counts::default();
                for s in &truth[1..=w] { exact.add(*s); }
                prop_assert_eq!(*counted, exact);
                prop_assert_eq!(counted.total, counted.success + counted.error + counted.skipped);
                Ok(())
            };
            check(&t, &counted, &truth)?;
            for ix in order {
                if batches.is_empty() { break; }
                let b = batches.swap_remove(ix.index(batches.len()));
                for &l in &b { truth[l as usize] = LineState::Success; }
                counted = counted.plus(t.resolve(&b, LineState::Success));
                check(&t, &counted, &truth)?;
            }
            for b in batches.drain(..) {
                for &l in &b { truth[l as usize] = LineState::Success; }
                counted = counted.plus(t.resolve(&b, LineState::Success));
            }
            prop_assert_eq!(t.watermark(), kinds.len() as u64);
            prop_assert_eq!(counted.total, kinds.len() as u64);
            prop_assert_eq!(t.window(), 0);
        }
    }
}
