//! What a resumed run found of its own lines in the topic, and the rule that matches the
//! lines it reads again against it. Pure: hashes and counts, no IO.
//!
//! **A record is matched only to the line that produced it.** Every record's key is its
//! line's identity, the job, the file and the line number ([`crate::keys::LineKeys`]), so
//! two lines with the same bytes are two different records, and a record of a line before
//! the resume point, or of another worker's file, is never taken by a line after it. (The
//! other way, re-reading from the earliest line that can own a record in the range and
//! using up the records of the lines before the resume point, needs that earliest line,
//! which the offsets alone do not give, and re-reads and re-parses all of them; a key per
//! line costs nothing and makes every read, however partial, safe.) Content alone is not
//! identity: a failover log repeats events, and matching by content lost lines.
//!
//! A record's **signature** is a 128-bit hash of its key, its value and its
//! `connection_ids` header, each with its length, so that no two different triples run
//! together. The read-back (the worker crate's `resume::readback`) adds the signature of every record it reads
//! after the stored start offsets. As the files are read again, a line that would be sent
//! and whose signature has an entry left takes it and counts as delivered; it is not sent
//! again. An entry is counted with multiplicity: a line written twice by earlier runs (a
//! fallback to at least once) is two entries, of which it takes one.
//!
//! Because a match is exact, a read-back that stopped early (a cap, a stalled partition)
//! still only finds lines that are in the topic: what it missed is sent again (a duplicate),
//! never skipped (a loss).
//!
//! Matching ends, and the set is dropped, when no entry is left, or when
//! [`Recovered::window`] lines in a row that would be sent found none. The second rule is
//! what ends it when other producers' records, or the records of lines before the resume
//! point, are in the set: before the crash's watermark every sendable line was acknowledged
//! and so is found, and after it the lines that may have been sent lie within the
//! unsettled-lines bound, which is the window. After the end nothing is hashed.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

use crate::tracker::Seq;

/// A record's signature: key, value and `connection_ids` header, hashed.
pub type Signature = u128;

/// Hashes records into signatures (two independent 64-bit SipHash keys, per process).
#[derive(Debug, Clone, Default)]
pub struct Signer {
    a: RandomState,
    b: RandomState,
}

impl Signer {
    /// The signature of a record with this key, value and `connection_ids` header.
    pub fn sign(&self, key: &[u8], value: &[u8], header: &[u8]) -> Signature {
        let one = |s: &RandomState| {
            let mut h = s.build_hasher();
            for part in [key, value, header] {
                h.write_usize(part.len());
                h.write(part);
            }
            h.finish()
        };
        (u128::from(one(&self.a)) << 64) | u128::from(one(&self.b))
    }

    /// A record's signature; `None` without a key or a `connection_ids` header (not one of
    /// this worker's records).
    pub fn sign_record(&self, r: &crate::broker::Record) -> Option<Signature> {
        let (key, header) = (r.key.as_deref()?, r.headers.get(crate::route::HEADER)?);
        Some(self.sign(key, r.value.as_deref().unwrap_or_default(), header))
    }
}

/// The signatures read back, and how the matching is going.
#[derive(Debug, Default)]
pub struct Recovered {
    signer: Signer,
    counts: HashMap<Signature, u32>,
    /// Entries left, counted with multiplicity.
    left: u64,
    /// Lines that would be sent, in a row, that found no entry.
    misses: u64,
    /// After this many misses in a row, matching ends.
    window: u64,
    last_matched: Option<Seq>,
    matched: u64,
}

/// How the matching ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Lines found in the topic and not sent again.
    pub matched: u64,
    /// The last of them, if any.
    pub last_matched: Option<Seq>,
    /// Entries never matched (other producers' records, or lines before the resume point).
    pub unmatched: u64,
}

impl Recovered {
    /// An empty set whose matching ends after `window` misses in a row.
    pub fn new(window: u64) -> Self {
        Recovered { window, ..Default::default() }
    }

    /// Adds the signature of one record read back, made with [`Recovered::signer`].
    pub fn insert_signature(&mut self, sig: Signature) {
        *self.counts.entry(sig).or_default() += 1;
        self.left += 1;
    }

    /// The signer whose signatures this set matches (for readers on other tasks).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Entries held, with multiplicity.
    pub fn len(&self) -> u64 {
        self.left
    }

    /// True when no entry is left.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The misses in a row that end the matching.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Line `seq` would be sent as this record: true when it was found (one entry taken).
    pub fn take(&mut self, seq: Seq, key: &[u8], value: &[u8], header: &[u8]) -> bool {
        let sig = self.signer.sign(key, value, header);
        match self.counts.get_mut(&sig) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&sig);
                }
                self.left -= 1;
                self.misses = 0;
                self.matched += 1;
                self.last_matched = Some(seq);
                true
            }
            None => {
                self.misses += 1;
                false
            }
        }
    }

    /// Whether matching is over: nothing left, or `window` misses in a row.
    pub(crate) fn is_over(&self) -> bool {
        self.left == 0 || self.misses > self.window
    }

    /// How the matching stands: final once `Recovered::is_over`.
    pub fn ended(&self) -> Ended {
        Ended { matched: self.matched, last_matched: self.last_matched, unmatched: self.left }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_tell_key_value_and_header_apart() {
        let s = Signer::default();
        let base = s.sign(b"k", b"{}", b"c1");
        assert_eq!(base, s.sign(b"k", b"{}", b"c1"));
        assert_ne!(base, s.sign(b"k2", b"{}", b"c1"));
        assert_ne!(base, s.sign(b"k", b"{ }", b"c1"));
        assert_ne!(base, s.sign(b"k", b"{}", b"c2"));
        // The parts' lengths are hashed: moving a byte from one to the next is different.
        assert_ne!(s.sign(b"ab", b"c", b""), s.sign(b"a", b"bc", b""));
    }

    /// Adds a record read back, as the read-back does: signed if it can be ours.
    fn insert(r: &mut Recovered, record: &crate::broker::Record) {
        if let Some(sig) = r.signer().sign_record(record) {
            r.insert_signature(sig);
        }
    }

    fn record(key: &str, value: &str, header: Option<&str>) -> crate::broker::Record {
        crate::broker::Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: header.map(|h| (crate::route::HEADER.to_owned(), h.as_bytes().to_vec())).into_iter().collect(),
            timestamp: chrono::Utc::now(),
        }
    }

    #[test]
    fn identical_records_are_matched_as_often_as_they_were_read() {
        let mut r = Recovered::new(10);
        insert(&mut r, &record("k", "{}", Some("c")));
        insert(&mut r, &record("k", "{}", Some("c")));
        insert(&mut r, &record("x", "{}", Some("c")));
        insert(&mut r, &record("k", "{}", None));
        assert_eq!(r.len(), 3);
        assert!(r.take(1, b"k", b"{}", b"c"));
        assert!(r.take(2, b"k", b"{}", b"c"));
        assert!(!r.take(3, b"k", b"{}", b"c"), "a third copy was never read back");
        assert_eq!(r.ended(), Ended { matched: 2, last_matched: Some(2), unmatched: 1 });
        assert!(!r.is_over());
    }

    #[test]
    fn matching_ends_when_empty_or_after_a_window_of_misses() {
        let mut r = Recovered::new(2);
        insert(&mut r, &record("k", "v", Some("h")));
        insert(&mut r, &record("other producer", "v", Some("h")));
        assert!(!r.take(1, b"a", b"v", b"h"));
        assert!(!r.take(2, b"b", b"v", b"h"));
        assert!(!r.is_over(), "a miss run as long as the window can still be followed by a match");
        assert!(r.take(3, b"k", b"v", b"h"));
        for seq in 4..=6 {
            r.take(seq, b"new", b"v", b"h");
        }
        assert!(r.is_over());
        assert_eq!(r.ended(), Ended { matched: 1, last_matched: Some(3), unmatched: 1 });
        let mut r = Recovered::new(100);
        insert(&mut r, &record("k", "v", Some("h")));
        r.take(7, b"k", b"v", b"h");
        assert!(r.is_over(), "nothing left");
    }
}
