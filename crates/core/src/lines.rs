//! Line splitting over a stream of byte chunks, without copying complete lines.
//!
//! # The terminator rule
//! A line ends at `\n`. One `\r` right before the `\n` is dropped (CRLF files). The bytes after
//! the last `\n` of the input are a line too, if there is at least one of them: `"a\nb"` is two
//! lines, `"a\n"` is one, `"a\n\n"` is two (the second empty), and `""` is none. This is Go's
//! `bufio.ScanLines`, which the original worker uses.
//!
//! # Chunks
//! Input arrives in chunks of any size. Lines that lie inside one chunk are handed out as
//! slices of it (no copy). An incomplete line at the end of a chunk is not an error: its bytes
//! are carried and joined with the start of the next chunk. The carry never holds more than
//! `max_line + 1` bytes (the `+ 1` is a possible `\r`): a line longer than `max_line` is
//! reported as [`Line::TooLong`] with its length, its bytes are dropped as they stream past,
//! and splitting goes on after its `\n`. Memory is bounded whatever the input.

use memchr::memchr;

/// One line handed to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes, without `\n` and without one trailing `\r`.
    Text(&'a [u8]),
    /// A line longer than the bound; `len` is its length without the terminator (it may
    /// include a final `\r`, which is not worth tracking for a line that is dropped anyway).
    TooLong {
        /// The line's length in bytes, without its `\n`.
        len: u64,
    },
}

/// Splits chunks into lines; see the module docs for the rule.
#[derive(Debug)]
pub struct LineSplitter {
    /// Bytes of an incomplete line, at most `max_line + 1` bytes.
    carry: Vec<u8>,
    /// While dropping an overlong line: how many of its bytes went past so far.
    overlong: Option<u64>,
    /// Longest accepted line, in bytes.
    max_line: usize,
}

#[inline]
fn strip_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

impl LineSplitter {
    /// A splitter with nothing carried, whose longest accepted line is `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self { carry: Vec::new(), overlong: None, max_line }
    }

    #[inline]
    fn classify<'a>(&self, raw: &'a [u8]) -> Line<'a> {
        let text = strip_cr(raw);
        if text.len() > self.max_line {
            Line::TooLong { len: raw.len() as u64 }
        } else {
            Line::Text(text)
        }
    }

    /// Feeds one chunk and calls `f` for every line it completes, in order. `f` returns
    /// `false` to stop early; `feed` then returns `false` and the rest of the chunk is dropped.
    pub fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(Line<'_>) -> bool) -> bool {
        let mut rest = chunk;
        // Finish the line carried over from the previous chunk, if any.
        if self.overlong.is_some() || !self.carry.is_empty() {
            match memchr(b'\n', rest) {
                None => {
                    self.absorb_tail(rest);
                    return true;
                }
                Some(i) => {
                    let head = &rest[..i];
                    rest = &rest[i + 1..];
                    let keep_going = if let Some(n) = self.overlong.take() {
                        f(Line::TooLong { len: n + head.len() as u64 })
                    } else if self.carry.len() + head.len() > self.max_line + 1 {
                        let len = (self.carry.len() + head.len()) as u64;
                        self.carry.clear();
                        f(Line::TooLong { len })
                    } else {
                        self.carry.extend_from_slice(head);
                        let carry = std::mem::take(&mut self.carry);
                        let go = f(self.classify(&carry));
                        self.carry = carry;
                        self.carry.clear();
                        go
                    };
                    if !keep_going {
                        return false;
                    }
                }
            }
        }
        // Lines wholly inside this chunk: slices, no copy.
        while let Some(i) = memchr(b'\n', rest) {
            if !f(self.classify(&rest[..i])) {
                return false;
            }
            rest = &rest[i + 1..];
        }
        self.absorb_tail(rest);
        true
    }

    /// Keeps the incomplete tail, or counts it as part of an overlong line.
    fn absorb_tail(&mut self, tail: &[u8]) {
        if tail.is_empty() {
            return;
        }
        if let Some(n) = self.overlong.as_mut() {
            *n += tail.len() as u64;
        } else if self.carry.len() + tail.len() > self.max_line + 1 {
            self.overlong = Some((self.carry.len() + tail.len()) as u64);
            self.carry.clear();
            self.carry.shrink_to(64 * 1024);
        } else {
            self.carry.extend_from_slice(tail);
        }
    }

    /// Ends the input: the last line, if it had no `\n`, is handed to `f`.
    pub fn finish(&mut self, mut f: impl FnMut(Line<'_>) -> bool) -> bool {
        if let Some(n) = self.overlong.take() {
            return f(Line::TooLong { len: n });
        }
        if self.carry.is_empty() {
            return true;
        }
        let carry = std::mem::take(&mut self.carry);
        f(self.classify(&carry))
    }

    /// Bytes currently carried (for tests and memory accounting).
    pub fn carried(&self) -> usize {
        self.carry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Owned {
        Text(Vec<u8>),
        TooLong(u64),
    }

    fn split_chunks(chunks: &[&[u8]], max: usize) -> Vec<Owned> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut push = |l: Line<'_>| {
            out.push(match l {
                Line::Text(t) => Owned::Text(t.to_vec()),
                Line::TooLong { len } => Owned::TooLong(len),
            });
            true
        };
        for c in chunks {
            s.feed(c, &mut push);
            assert!(s.carried() <= max + 1);
        }
        s.finish(&mut push);
        out
    }

    fn t(s: &str) -> Owned {
        Owned::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn terminator_rule() {
        assert_eq!(split_chunks(&[b""], 100), vec![]);
        assert_eq!(split_chunks(&[b"a"], 100), vec![t("a")]);
        assert_eq!(split_chunks(&[b"a\n"], 100), vec![t("a")]);
        assert_eq!(split_chunks(&[b"a\n\n"], 100), vec![t("a"), t("")]);
        assert_eq!(split_chunks(&[b"a\r\nb\r\n"], 100), vec![t("a"), t("b")]);
        assert_eq!(split_chunks(&[b"a\r\r\nb\r"], 100), vec![t("a\r"), t("b")]);
        assert_eq!(split_chunks(&[b"\n"], 100), vec![t("")]);
    }

    #[test]
    fn joins_across_chunks() {
        assert_eq!(split_chunks(&[b"ab", b"c\nd", b"", b"e\r", b"\nf"], 100), vec![t("abc"), t("de"), t("f")]);
    }

    #[test]
    fn overlong_lines_are_reported_and_skipped() {
        assert_eq!(split_chunks(&[b"12345\nab\n"], 4), vec![Owned::TooLong(5), t("ab")]);
        assert_eq!(split_chunks(&[b"123", b"45", b"6\nab"], 4), vec![Owned::TooLong(6), t("ab")]);
        assert_eq!(split_chunks(&[b"1234\r\n"], 4), vec![t("1234")]);
        assert_eq!(split_chunks(&[b"123", b"4567"], 4), vec![Owned::TooLong(7)]);
        assert_eq!(split_chunks(&[b"1234"], 4), vec![t("1234")]);
    }

    #[test]
    fn stops_early() {
        let mut s = LineSplitter::new(10);
        let mut n = 0;
        assert!(!s.feed(b"a\nb\nc\n", |_| {
            n += 1;
            n < 2
        }));
        assert_eq!(n, 2);
    }

    proptest! {
        /// Any chunking of the input gives the same lines as one chunk.
        #[test]
        fn any_chunking_gives_the_same_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'x'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..12),
            max in 1usize..40,
        ) {
            let whole = split_chunks(&[&data], max);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for c in cuts { chunks.push(&data[prev..c]); prev = c; }
            chunks.push(&data[prev..]);
            prop_assert_eq!(split_chunks(&chunks, max), whole.clone());

            // And it matches a plain reference implementation of the rule.
            let mut reference = Vec::new();
            if !data.is_empty() {
                let body = data.strip_suffix(b"\n").unwrap_or(&data);
                for raw in body.split(|&b| b == b'\n') {
                    let text = raw.strip_suffix(b"\r").unwrap_or(raw);
                    reference.push(if text.len() > max { Owned::TooLong(raw.len() as u64) } else { Owned::Text(text.to_vec()) });
                }
            }
            prop_assert_eq!(whole, reference);
        }
    }
}
