//! The low watermark over the run's files: which lines are settled, which files are finished,
//! and the exact counters that go with them.
//!
//! Several files are in flight at once: the CPU stage reads file N+1 while the batches of file
//! N are still being acknowledged. Every line the run sees gets a sequence number ([`Seq`]),
//! increasing over the files in files.json order, and a [`LineState`]. A line is *settled*
//! once it is skipped, counted as an error, or acknowledged by the broker. Batches are
//! acknowledged in any order, so the settled lines are not always a prefix. The tracker keeps
//! the states after the watermark in a ring and advances the watermark over the settled
//! prefix only, file by file:
//!
//! > **Invariant.** Every line up to the watermark is settled, and the counters count exactly
//! > those lines, each once. A file is *finished* once it was read to its end (or given up)
//! > and the watermark passed its last line; files finish strictly in order.
//!
//! The watermark's position is a file and a line of it ([`Tracker::position`]), which is the
//! status row's `current_file`/`current_line`: it moves to file N+1 only when every line of
//! file N is settled. A line of a later file that is acknowledged early holds no place in the
//! counters until the watermark reaches it. A batch that failed *releases* its lines: they
//! are unsettled again and a later pass over the file sends them again; lines that already
//! settled are not sent or counted twice.
//!
//! Each open file carries a tag (`T`) that the tracker hands back when the file finishes, so
//! the caller's per-file state (its path, its slot among the files in flight) ends exactly
//! then.

use std::collections::VecDeque;

/// A line's number over the whole run: lines of earlier files have smaller numbers.
pub type Seq = u64;

/// The state of one line after the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    /// Handed to a batch; not acknowledged yet.
    Pending,
    /// Its batch failed; the next pass over the file sends it again.
    Released,
    /// Delivered: its batch was acknowledged, or a resumed run found it in the topic.
    Success,
    /// Counted as an error; not sent again.
    Error,
    /// Skipped: blank, or filtered out; not sent.
    Skipped,
}

impl LineState {
    /// True for a line that is done with: a success, an error or skipped.
    pub(crate) fn is_settled(self) -> bool {
        matches!(self, LineState::Success | LineState::Error | LineState::Skipped)
    }
}

/// Line counters. `total == success + error + skipped` always holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// All the lines counted: `success + error + skipped`.
    pub total: u64,
    /// Lines delivered: acknowledged, or found in the topic by a resumed run.
    pub success: u64,
    /// Lines counted as errors.
    pub error: u64,
    /// Lines skipped.
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

    /// The sum of both, counter by counter.
    pub fn plus(mut self, o: Counts) -> Counts {
        self.total += o.total;
        self.success += o.success;
        self.error += o.error;
        self.skipped += o.skipped;
        self
    }
}

/// A file whose lines are all settled, with every file before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished<T> {
    /// The tag the file was opened with ([`Tracker::open`]).
    pub tag: T,
    /// Its lines, from its first line in scope to its end.
    pub counts: Counts,
    /// Its last line (`first_line - 1` when it had none in scope).
    pub last_line: u64,
}

/// What one change let the watermark pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance<T> {
    /// The lines that passed the watermark.
    pub counts: Counts,
    /// The files that finished, in order.
    pub finished: Vec<Finished<T>>,
}

impl<T> Advance<T> {
    /// Both changes, in order.
    pub fn and(mut self, later: Advance<T>) -> Self {
        self.counts = self.counts.plus(later.counts);
        self.finished.extend(later.finished);
        self
    }
}

impl<T> Default for Advance<T> {
    fn default() -> Self {
        Self { counts: Counts::default(), finished: Vec::new() }
    }
}

#[derive(Debug)]
struct FileSpan<T> {
    tag: T,
    /// Lines before this one are out of scope (done before, or skipped by `start_line`).
    first_line: u64,
    /// The sequence number of `first_line`.
    start: Seq,
    /// One past its last line's number, once it was read to its end.
    end: Option<Seq>,
    /// Its lines that passed the watermark.
    counts: Counts,
}

impl<T> FileSpan<T> {
    fn line(&self, seq: Seq) -> u64 {
        self.first_line + (seq - self.start)
    }
}

/// Tracks the lines of the files in flight.
#[derive(Debug)]
pub struct Tracker<T> {
    /// The first line not yet folded into the counters: the watermark is just before it.
    base: Seq,
    /// `states[i]` is the state of line `base + i`. The pipeline keeps it below
    /// `Engine::max_unsettled_lines`.
    states: VecDeque<LineState>,
    /// The files not finished yet, in order; the last one is the file being read.
    files: VecDeque<FileSpan<T>>,
}

impl<T> Default for Tracker<T> {
    fn default() -> Self {
        Self { base: 0, states: VecDeque::new(), files: VecDeque::new() }
    }
}

impl<T> Tracker<T> {
    /// Opens the next file; its lines before `first_line` are out of scope. The file before
    /// it must have ended. Returns the sequence number its line `first_line` gets.
    pub fn open(&mut self, tag: T, first_line: u64) -> Seq {
        debug_assert!(self.files.back().is_none_or(|f| f.end.is_some()), "the previous file is still being read");
        let start = self.next_seq();
        self.files.push_back(FileSpan {
            tag,
            first_line: first_line.max(1),
            start,
            end: None,
            counts: Counts::default(),
        });
        start
    }

    /// The file being read ends here (its input ended, or it was given up).
    pub fn end_file(&mut self) -> Advance<T> {
        let next = self.next_seq();
        if let Some(f) = self.files.back_mut() {
            f.end.get_or_insert(next);
        }
        self.fold()
    }

    /// Gives the file being read up: its released lines count as errors, and it ends.
    pub fn give_up(&mut self) -> Advance<T> {
        let skip = self.current_from();
        for s in self.states.iter_mut().skip(skip) {
            if *s == LineState::Released {
                *s = LineState::Error;
            }
        }
        self.end_file()
    }

    /// Where the file being read starts in `states`.
    fn current_from(&self) -> usize {
        self.files.back().map_or(0, |f| f.start.saturating_sub(self.base) as usize)
    }

    /// The next sequence number never seen before.
    pub fn next_seq(&self) -> Seq {
        self.base + self.states.len() as u64
    }

    /// Lines seen after the watermark, over every file in flight.
    pub fn unsettled(&self) -> usize {
        self.states.len()
    }

    /// The watermark: every line before this sequence number is settled.
    pub fn base(&self) -> Seq {
        self.base
    }

    /// Files open and not finished.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// The state of line `seq`; `None` when it is before the watermark or was never seen.
    pub fn state(&self, seq: Seq) -> Option<LineState> {
        seq.checked_sub(self.base).and_then(|i| self.states.get(i as usize).copied())
    }

    /// True when the line needs work: never seen, or released by a failed batch.
    pub fn needs(&self, seq: Seq) -> bool {
        seq >= self.next_seq() || self.state(seq) == Some(LineState::Released)
    }

    /// Lines of the file being read whose batch failed and that were not sent again.
    pub fn released(&self) -> usize {
        self.states.iter().skip(self.current_from()).filter(|s| **s == LineState::Released).count()
    }

    /// Where the watermark is: the first unfinished file and its last settled line.
    pub fn position(&self) -> Option<(&T, u64)> {
        self.files.front().map(|f| (&f.tag, f.line(self.base.max(f.start)) - 1))
    }

    /// The file and line of a sequence number among the files in flight.
    pub fn locate(&self, seq: Seq) -> Option<(&T, u64)> {
        let next = self.next_seq();
        self.files
            .iter()
            .find(|f| f.start <= seq && seq < f.end.unwrap_or(next).max(f.start))
            .map(|f| (&f.tag, f.line(seq)))
    }

    /// The tags of the files in flight, in order.
    pub fn files(&self) -> impl Iterator<Item = &T> {
        self.files.iter().map(|f| &f.tag)
    }

    /// The tag of the file being read.
    pub fn current_mut(&mut self) -> Option<&mut T> {
        self.files.back_mut().map(|f| &mut f.tag)
    }

    /// Records the state of a line of the file being read: the next new line, or one being
    /// sent again.
    pub fn record(&mut self, seq: Seq, state: LineState) -> Advance<T> {
        let idx = seq.checked_sub(self.base).expect("line before the watermark") as usize;
        if idx == self.states.len() {
            self.states.push_back(state);
        } else {
            let slot = self.states.get_mut(idx).expect("lines are recorded in order");
            debug_assert!(!slot.is_settled(), "line {seq} settled twice");
            *slot = state;
        }
        self.fold()
    }

    /// Sets the state of lines already recorded (a batch's acknowledgement or failure).
    /// Settled lines stay as they are.
    pub fn resolve(&mut self, seqs: &[Seq], state: LineState) -> Advance<T> {
        for &seq in seqs {
            if let Some(slot) = seq.checked_sub(self.base).and_then(|i| self.states.get_mut(i as usize)) {
                if !slot.is_settled() {
                    *slot = state;
                }
            }
        }
        self.fold()
    }

    /// Moves the watermark over the settled prefix, finishing files as it passes their ends.
    fn fold(&mut self) -> Advance<T> {
        let mut adv = Advance::default();
        loop {
            while self.files.front().is_some_and(|f| f.end.is_some_and(|e| self.base >= e)) {
                let f = self.files.pop_front().expect("checked");
                let last_line = f.line(f.end.expect("checked")) - 1;
                adv.finished.push(Finished { tag: f.tag, counts: f.counts, last_line });
            }
            match self.states.front() {
                Some(&s) if s.is_settled() => {
                    adv.counts.add(s);
                    if let Some(f) = self.files.front_mut() {
                        f.counts.add(s);
                    }
                    self.states.pop_front();
                    self.base += 1;
                }
                _ => return adv,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn watermark_waits_for_the_oldest_pending_line() {
        let mut t = Tracker::default();
        let s = t.open("f", 1);
        assert_eq!(t.record(s, LineState::Skipped).counts.total, 1);
        t.record(s + 1, LineState::Pending);
        t.record(s + 2, LineState::Error);
        t.record(s + 3, LineState::Pending);
        assert_eq!(t.position(), Some((&"f", 1)));
        let a = t.resolve(&[s + 3], LineState::Success);
        assert_eq!((t.position(), a.counts), (Some((&"f", 1)), Counts::default()));
        let a = t.resolve(&[s + 1], LineState::Success);
        assert_eq!(t.position(), Some((&"f", 4)));
        assert_eq!(a.counts, Counts { total: 3, success: 2, error: 1, skipped: 0 });
    }

    #[test]
    fn a_later_file_waits_for_the_earlier_one_and_files_finish_in_order() {
        let mut t = Tracker::default();
        let a = t.open("a", 5);
        t.record(a, LineState::Pending);
        assert!(t.end_file().finished.is_empty());
        let b = t.open("b", 1);
        t.record(b, LineState::Pending);
        t.record(b + 1, LineState::Skipped);
        t.end_file();
        let empty = t.open("empty", 1);
        assert_eq!(empty, b + 2);
        t.end_file();
        // The later file settles first: nothing moves, nothing is counted.
        let adv = t.resolve(&[b], LineState::Success);
        assert_eq!(adv, Advance::default());
        assert_eq!(t.position(), Some((&"a", 4)));
        assert_eq!(t.locate(b + 1), Some((&"b", 2)));
        // The earlier file settles: all three finish, in order, with their own counts.
        let adv = t.resolve(&[a], LineState::Success);
        let got: Vec<_> = adv.finished.iter().map(|f| (f.tag, f.counts.total, f.last_line)).collect();
        assert_eq!(got, [("a", 1, 5), ("b", 2, 2), ("empty", 0, 0)]);
        assert_eq!(adv.counts, Counts { total: 3, success: 2, error: 0, skipped: 1 });
        assert_eq!((t.position(), t.open_files(), t.unsettled()), (None, 0, 0));
    }

    #[test]
    fn released_lines_hold_the_watermark_until_retried_or_given_up() {
        let mut t = Tracker::default();
        let s = t.open("f", 11);
        t.record(s, LineState::Pending);
        t.record(s + 1, LineState::Pending);
        t.resolve(&[s], LineState::Released);
        t.resolve(&[s + 1], LineState::Success);
        assert_eq!(t.position(), Some((&"f", 10)));
        assert!(t.needs(s) && !t.needs(s + 1) && t.needs(s + 2));
        t.record(s, LineState::Pending);
        t.resolve(&[s], LineState::Released);
        assert_eq!(t.released(), 1);
        let adv = t.give_up();
        assert_eq!(adv.finished[0].counts, Counts { total: 2, success: 1, error: 1, skipped: 0 });
        assert_eq!(adv.finished[0].last_line, 12);
    }

    proptest! {
        /// Over files of any length (empty ones too) and under any acknowledgement order
        /// across them: the watermark never passes an unsettled line, every line is counted
        /// exactly once, the counts at the watermark are exact, and files finish in order,
        /// each only once all of its lines and those of every earlier file are settled.
        #[test]
        fn low_watermark_over_files_under_any_ack_order(
            files in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..60), 1..8),
            batch in 1usize..20,
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..400),
        ) {
            let mut t: Tracker<usize> = Tracker::default();
            let mut counted = Counts::default();
            let mut finished: Vec<Finished<usize>> = Vec::new();
            let mut batches: Vec<Vec<Seq>> = Vec::new();
            // Every line: (file, line, state now).
            let mut truth: Vec<(usize, u64, LineState)> = Vec::new();
            let take = |adv: Advance<usize>, counted: &mut Counts, finished: &mut Vec<Finished<usize>>| {
                *counted = counted.plus(adv.counts);
                finished.extend(adv.finished);
            };
            for (fi, kinds) in files.iter().enumerate() {
                let start = t.open(fi, 1);
                let mut open = Vec::new();
                for (i, k) in kinds.iter().enumerate() {
                    let st = match k { 0 => LineState::Skipped, 1 => LineState::Error, _ => LineState::Pending };
                    truth.push((fi, i as u64 + 1, st));
                    take(t.record(start + i as u64, st), &mut counted, &mut finished);
                    if st == LineState::Pending {
                        open.push(start + i as u64);
                        if open.len() == batch { batches.push(std::mem::take(&mut open)); }
                    }
                }
                if !open.is_empty() { batches.push(open); }
                take(t.end_file(), &mut counted, &mut finished);
            }
            let check = |t: &Tracker<usize>, counted: &Counts, finished: &[Finished<usize>], truth: &[(usize, u64, LineState)]| {
                let w = truth.iter().take_while(|l| l.2.is_settled()).count();
                let mut exact = Counts::default();
                for l in &truth[..w] { exact.add(l.2); }
                prop_assert_eq!(*counted, exact);
                prop_assert_eq!(t.base(), w as u64);
                // Finished: exactly the files whose lines all lie before the watermark.
                let done = (0..files.len()).take_while(|&f| truth.iter().filter(|l| l.0 == f).all(|l| l.2.is_settled())
                    && truth.iter().take(w).filter(|l| l.0 == f).count() == files[f].len()).count();
                prop_assert_eq!(finished.iter().map(|f| f.tag).collect::<Vec<_>>(), (0..done).collect::<Vec<_>>());
                for f in finished {
                    prop_assert_eq!(f.counts.total, files[f.tag].len() as u64);
                    prop_assert_eq!(f.last_line, files[f.tag].len() as u64);
                }
                match t.position() {
                    Some((&f, line)) => {
                        prop_assert_eq!(f, done);
                        let settled_in_f = truth[..w].iter().filter(|l| l.0 == f).count() as u64;
                        prop_assert_eq!(line, settled_in_f);
                    }
                    None => prop_assert_eq!(done, files.len()),
                }
                Ok(())
            };
            check(&t, &counted, &finished, &truth)?;
            let set = |truth: &mut Vec<(usize, u64, LineState)>, b: &[Seq]| for &s in b { truth[s as usize].2 = LineState::Success; };
            for ix in order {
                if batches.is_empty() { break; }
                let b = batches.swap_remove(ix.index(batches.len()));
                set(&mut truth, &b);
                take(t.resolve(&b, LineState::Success), &mut counted, &mut finished);
                check(&t, &counted, &finished, &truth)?;
            }
            for b in std::mem::take(&mut batches) {
                set(&mut truth, &b);
                take(t.resolve(&b, LineState::Success), &mut counted, &mut finished);
            }
            check(&t, &counted, &finished, &truth)?;
            prop_assert_eq!(counted.total, truth.len() as u64);
            prop_assert_eq!((t.unsettled(), t.open_files()), (0, 0));
        }
    }

    /// What the model of the property below expects of the tracker, from the lines' states
    /// alone: the watermark is the settled prefix, the counts count exactly that prefix, the
    /// files whose lines all lie in it finished in order, and the lines that need work are
    /// the released ones.
    fn matches_model(
        t: &Tracker<usize>,
        counted: &Counts,
        finished: &[Finished<usize>],
        truth: &[(usize, LineState)],
        lens: &[usize],
        ended: usize,
    ) -> Result<(), TestCaseError> {
        let w = truth.iter().take_while(|l| l.1.is_settled()).count();
        let mut exact = Counts::default();
        for l in &truth[..w] {
            exact.add(l.1);
        }
        prop_assert_eq!(*counted, exact);
        prop_assert_eq!(t.base(), w as u64);
        let done = (0..ended).take_while(|&f| truth[..w].iter().filter(|l| l.0 == f).count() == lens[f]).count();
        prop_assert_eq!(finished.iter().map(|f| f.tag).collect::<Vec<_>>(), (0..done).collect::<Vec<_>>());
        for f in finished {
            let lines = truth.iter().filter(|l| l.0 == f.tag);
            let mut c = Counts::default();
            lines.for_each(|l| c.add(l.1));
            prop_assert_eq!(f.counts, c);
        }
        for (seq, l) in truth.iter().enumerate() {
            prop_assert_eq!(t.needs(seq as Seq), l.1 == LineState::Released, "line {}", seq);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Batches fail as well as succeed: a failed batch releases its lines, a later pass
        /// over the file sends them again in new batches (which can fail again), or the file
        /// is given up and its released lines become errors. Checked after every step against
        /// a model that keeps each line's state: the watermark, the exact counts, the files
        /// finished in order with their own counts, which lines need work; and at the end
        /// every line counted once.
        #[test]
        fn released_lines_are_sent_again_or_given_up_and_counted_once(
            files in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..40), 1..6),
            batch in 1usize..8,
            steps in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..10), 0..200),
        ) {
            let mut t: Tracker<usize> = Tracker::default();
            let mut counted = Counts::default();
            let mut finished: Vec<Finished<usize>> = Vec::new();
            // (file, state) of every line, by sequence number.
            let mut truth: Vec<(usize, LineState)> = Vec::new();
            // Batches in flight: (file, lines).
            let mut batches: Vec<(usize, Vec<Seq>)> = Vec::new();
            let lens: Vec<usize> = files.iter().map(Vec::len).collect();
            let mut steps = steps.into_iter();
            let take = |adv: Advance<usize>, counted: &mut Counts, finished: &mut Vec<Finished<usize>>| {
                *counted = counted.plus(adv.counts);
                finished.extend(adv.finished);
            };
            let send = |seqs: Vec<Seq>, fi: usize, batches: &mut Vec<(usize, Vec<Seq>)>| {
                for chunk in seqs.chunks(batch) {
                    batches.push((fi, chunk.to_vec()));
                }
            };
            for (fi, kinds) in files.iter().enumerate() {
                let start = t.open(fi, 1);
                let mut pending = Vec::new();
                for (i, k) in kinds.iter().enumerate() {
                    let st = match k { 0 => LineState::Skipped, 1 => LineState::Error, _ => LineState::Pending };
                    truth.push((fi, st));
                    take(t.record(start + i as u64, st), &mut counted, &mut finished);
                    if st == LineState::Pending { pending.push(start + i as u64); }
                }
                send(pending, fi, &mut batches);
                // Acknowledgements and failures arrive while this file is the one being read.
                for (ix, what) in steps.by_ref() {
                    if what == 9 || batches.is_empty() { break; }
                    let (bf, b) = batches.swap_remove(ix.index(batches.len()));
                    // Only a batch of the file being read can come back failed: the pipeline
                    // retries the others until they land, or stops the run.
                    let st = if bf == fi && what < 3 { LineState::Released } else { LineState::Success };
                    for &s in &b { truth[s as usize].1 = st; }
                    take(t.resolve(&b, st), &mut counted, &mut finished);
                    matches_model(&t, &counted, &finished, &truth, &lens, fi)?;
                }
                // The file's released lines: sent again in a pass over it, or given up.
                let released: Vec<Seq> = (start..start + kinds.len() as u64).filter(|&s| truth[s as usize].1 == LineState::Released).collect();
                prop_assert_eq!(t.released(), released.len());
                if fi % 2 == 0 {
                    for &s in &released {
                        truth[s as usize].1 = LineState::Pending;
                        take(t.record(s, LineState::Pending), &mut counted, &mut finished);
                    }
                    send(released, fi, &mut batches);
                    take(t.end_file(), &mut counted, &mut finished);
                } else {
                    for &s in &released { truth[s as usize].1 = LineState::Error; }
                    take(t.give_up(), &mut counted, &mut finished);
                }
                matches_model(&t, &counted, &finished, &truth, &lens, fi + 1)?;
            }
            // The rest land, in the order given.
            while !batches.is_empty() {
                let ix = steps.next().map_or(0, |(ix, _)| ix.index(batches.len()));
                let (_, b) = batches.swap_remove(ix);
                for &s in &b { truth[s as usize].1 = LineState::Success; }
                take(t.resolve(&b, LineState::Success), &mut counted, &mut finished);
                matches_model(&t, &counted, &finished, &truth, &lens, files.len())?;
            }
            prop_assert_eq!(counted.total, truth.len() as u64);
            prop_assert_eq!((t.unsettled(), t.open_files()), (0, 0));
        }
    }
}
