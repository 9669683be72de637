//! The idempotent producer's sequence numbers (KIP-98), kept by the producer for every
//! partition it writes to.
//!
//! A run asks the cluster for one producer id ([`ProducerId`]). Each batch sent to a
//! partition takes the next range of sequence numbers there, from 0 on, and keeps it over all
//! its attempts: the partition's leader appends a batch only if it starts right after the last
//! one it appended for this producer id, and answers a batch it already holds with that
//! batch's offset instead of appending it again. So a batch whose answer was lost can be sent
//! again as it was, and it is never written twice.
//!
//! **The window.** A leader remembers the last five batches of each producer per partition
//! (`max.in.flight.requests.per.connection` ≤ 5 in the Java producer). A batch whose
//! delivery has not ended must stay among them, or its resend would no longer be recognised:
//! so a new batch takes a place only while fewer than [`WINDOW`] batches of the partition are
//! unsettled, counted from the oldest unsettled one ([`Sequencer::reserve`] waits for one).
//!
//! **Generations.** Some answers end a producer id's sequences for good: a batch refused for
//! its size leaves a gap no later batch can close, a leader that lost the producer's state
//! answers `UNKNOWN_PRODUCER_ID`, the first unsettled batch of a partition answered
//! `OUT_OF_ORDER_SEQUENCE_NUMBER`. The producer then asks for a new id and installs it
//! ([`Sequencer::renew`]), which starts a new generation: every partition's sequence starts at
//! 0 again, and each unsettled batch takes a new place when it is next sent. A batch sent under
//! an older id may have been written then; it is looked for in its partition before it is
//! sent again (the lost-answer check), as on the path without idempotence.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Batches of one partition that may be unsettled at once: the batches a Kafka leader
/// remembers per producer and partition to recognise a resend.
pub const WINDOW: usize = 5;

/// A producer id and its epoch, as `InitProducerId` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerId {
    /// The producer id.
    pub id: i64,
    /// Its epoch.
    pub epoch: i16,
}

/// Where a batch stands in its partition's sequence: the producer id it is written under, and
/// the sequence number of its first record (the next ones follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    /// The producer id and epoch.
    pub producer: ProducerId,
    /// The first record's sequence number.
    pub base: i32,
}

/// The sequence numbers of a run's producer id, per partition (see the module's
/// documentation).
#[derive(Debug)]
pub struct Sequencer {
    state: Mutex<State>,
    /// Woken when a place may have come free, or a generation began.
    freed: Notify,
}

#[derive(Debug)]
struct State {
    producer: ProducerId,
    generation: u64,
    /// Per (topic index, partition).
    partitions: HashMap<(usize, i32), Window>,
}

/// One partition's sequence in the current generation.
#[derive(Debug, Default)]
struct Window {
    /// The sequence number the next batch starts at.
    next: i32,
    /// The batches from the oldest unsettled one on, by ticket, and whether each has settled.
    open: VecDeque<(u64, bool)>,
    /// The next batch's ticket.
    tickets: u64,
}

/// A batch's place in its partition's sequence, held from its first attempt until its
/// delivery ends (dropping it settles the place).
#[derive(Debug)]
pub struct Place {
    sequencer: Arc<Sequencer>,
    key: (usize, i32),
    generation: u64,
    ticket: u64,
    sequence: Sequence,
}

/// Sequence numbers run from 0 to `i32::MAX` and wrap to 0, as Kafka counts them.
fn advance(seq: i32, by: usize) -> i32 {
    ((i64::from(seq) + by as i64) % (i64::from(i32::MAX) + 1)) as i32
}

impl Sequence {
    /// Where the next batch starts after this one's `records` records.
    pub fn end(&self, records: usize) -> i32 {
        advance(self.base, records)
    }
}

/// Whether sequence number `a` comes after `b` in a partition's order: less than half the
/// range ahead of it, across the wrap to 0.
pub fn sequence_follows(a: i32, b: i32) -> bool {
    let d = (i64::from(a) - i64::from(b)).rem_euclid(i64::from(i32::MAX) + 1);
    d > 0 && d <= i64::from(i32::MAX) / 2
}

impl Sequencer {
    /// Sequences of `producer`, every partition starting at 0.
    pub fn new(producer: ProducerId) -> Arc<Self> {
        Arc::new(Sequencer {
            state: Mutex::new(State { producer, generation: 0, partitions: HashMap::new() }),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current generation (it begins at 0 and grows by one at each [`Sequencer::renew`]).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Takes the next place of `records` records in partition `partition` of topic `topic`,
    /// waiting while [`WINDOW`] batches of the partition are unsettled.
    pub async fn reserve(self: &Arc<Self>, topic: usize, partition: i32, records: usize) -> Place {
        let key = (topic, partition);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.lock();
                let (producer, generation) = (state.producer, state.generation);
                let w = state.partitions.entry(key).or_default();
                if w.open.len() < WINDOW {
                    let ticket = w.tickets;
                    w.tickets += 1;
                    w.open.push_back((ticket, false));
                    let base = w.next;
                    w.next = advance(w.next, records);
                    let sequence = Sequence { producer, base };
                    return Place { sequencer: Arc::clone(self), key, generation, ticket, sequence };
                }
            }
            freed.await;
        }
    }

    /// Installs `producer` as the run's new producer id and begins a new generation, unless
    /// one already began after `seen` (another batch renewed it first); true when installed.
    pub fn renew(&self, seen: u64, producer: ProducerId) -> bool {
        let mut state = self.lock();
        if state.generation != seen {
            return false;
        }
        state.producer = producer;
        state.generation += 1;
        state.partitions.clear();
        drop(state);
        self.freed.notify_waiters();
        true
    }

    fn settle(&self, key: (usize, i32), generation: u64, ticket: u64) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        let Some(w) = state.partitions.get_mut(&key) else { return };
        if let Some(entry) = w.open.iter_mut().find(|(t, _)| *t == ticket) {
            entry.1 = true;
        }
        let mut freed = false;
        while w.open.front().is_some_and(|(_, settled)| *settled) {
            w.open.pop_front();
            freed = true;
        }
        drop(state);
        if freed {
            self.freed.notify_waiters();
        }
    }
}

impl Place {
    /// The batch's producer id and first sequence number.
    pub fn sequence(&self) -> Sequence {
        self.sequence
    }

    /// The generation it was taken in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether its generation is still the current one: false once the producer id was
    /// renewed, when the batch must take a new place before it is sent again.
    pub fn is_current(&self) -> bool {
        self.sequencer.lock().generation == self.generation
    }

    /// Whether it is the oldest unsettled batch of its partition: a batch that follows no
    /// unsettled one, and is still answered `OUT_OF_ORDER_SEQUENCE_NUMBER`, shows that the
    /// leader lost batches it had acknowledged to this producer id.
    pub fn is_first(&self) -> bool {
        let state = self.sequencer.lock();
        state.generation == self.generation
            && state.partitions.get(&self.key).and_then(|w| w.open.front()).is_some_and(|(t, _)| *t == self.ticket)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.sequencer.settle(self.key, self.generation, self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProducerId = ProducerId { id: 7, epoch: 0 };

    fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
        futures::FutureExt::now_or_never(f)
    }

    #[test]
    fn each_partition_counts_from_zero_and_batches_take_ranges() {
        let s = Sequencer::new(P);
        let a = now(s.reserve(0, 0, 500)).unwrap();
        let b = now(s.reserve(0, 0, 3)).unwrap();
        let c = now(s.reserve(0, 1, 10)).unwrap();
        let d = now(s.reserve(1, 0, 10)).unwrap();
        assert_eq!(a.sequence(), Sequence { producer: P, base: 0 });
        assert_eq!(b.sequence().base, 500);
        assert_eq!(c.sequence().base, 0, "another partition");
        assert_eq!(d.sequence().base, 0, "another topic");
        drop((a, b));
        assert_eq!(now(s.reserve(0, 0, 1)).unwrap().sequence().base, 503, "settling frees the place, not the range");
    }

    #[test]
    fn sequence_numbers_wrap_to_zero_past_i32_max() {
        assert_eq!(advance(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(advance(i32::MAX, 1), 0);
        assert_eq!(advance(i32::MAX - 2, 5), 2);
        assert_eq!(Sequence { producer: P, base: i32::MAX - 2 }.end(5), 2);
        assert!(sequence_follows(5, 0) && !sequence_follows(0, 5) && !sequence_follows(7, 7));
        assert!(sequence_follows(2, i32::MAX - 1), "2 follows i32::MAX - 1 after the wrap");
        assert!(!sequence_follows(i32::MAX - 1, 2));
    }

    /// A sixth batch waits while the oldest of five is unsettled, even when the four after it
    /// settled: the leader remembers five batches, so the oldest must stay among them.
    #[test]
    fn the_window_is_counted_from_the_oldest_unsettled_batch() {
        let s = Sequencer::new(P);
        let mut places: Vec<Place> = (0..WINDOW).map(|_| now(s.reserve(0, 3, 1)).unwrap()).collect();
        assert!(now(s.reserve(0, 3, 1)).is_none(), "five unsettled: the sixth waits");
        assert!(now(s.reserve(0, 4, 1)).is_some(), "another partition does not wait");
        let oldest = places.remove(0);
        assert!(oldest.is_first() && !places[0].is_first());
        places.clear();
        assert!(now(s.reserve(0, 3, 1)).is_none(), "the oldest unsettled still holds the window");
        drop(oldest);
        let next = now(s.reserve(0, 3, 1)).expect("the window is free");
        assert_eq!(next.sequence().base, WINDOW as i32);
        assert!(next.is_first());
    }

    #[tokio::test]
    async fn a_waiting_batch_goes_on_when_the_oldest_settles() {
        let s = Sequencer::new(P);
        let places: Vec<Place> = (0..WINDOW).map(|_| now(s.reserve(0, 0, 2)).unwrap()).collect();
        let s2 = Arc::clone(&s);
        let waiting = tokio::spawn(async move { s2.reserve(0, 0, 2).await.sequence().base });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(places);
        assert_eq!(waiting.await.unwrap(), 2 * WINDOW as i32);
    }

    #[tokio::test]
    async fn renewing_starts_every_partition_again_once_per_generation() {
        let s = Sequencer::new(P);
        let old: Vec<Place> = (0..WINDOW).map(|_| now(s.reserve(0, 0, 4)).unwrap()).collect();
        let s2 = Arc::clone(&s);
        let waiting = tokio::spawn(async move { s2.reserve(0, 0, 4).await.sequence() });
        tokio::task::yield_now().await;
        let q = ProducerId { id: 8, epoch: 0 };
        assert!(s.renew(0, q));
        assert!(!s.renew(0, ProducerId { id: 9, epoch: 0 }), "a second renewal of the same generation is dropped");
        assert_eq!(waiting.await.unwrap(), Sequence { producer: q, base: 0 }, "the waiter starts the new generation");
        assert!(old.iter().all(|p| !p.is_current() && !p.is_first()));
        let next = now(s.reserve(0, 0, 1)).unwrap();
        drop(old);
        assert_eq!(next.sequence().base, 4, "old places settle into nothing");
        assert_eq!(s.generation(), 1);
    }
}
