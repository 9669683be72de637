//! The line splitter across chunk boundaries: any chunking, with uneven chunks of sizes the
//! input chooses (empty ones included), gives the same lines as an independent model (a split
//! of the whole input on `\n`), the carry stays within its bound, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rw_core::{Line, LineSplitter};

fn split(chunks: &[&[u8]], max: usize) -> Vec<Result<Vec<u8>, u64>> {
    let mut s = LineSplitter::new(max);
    let mut out = Vec::new();
    let mut push = |l: Line<'_>| {
        out.push(match l {
            Line::Text(t) => Ok(t.to_vec()),
            Line::TooLong { len } => Err(len),
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

/// The model, written from the terminator rule (Go's `bufio.ScanLines`) rather than from the
/// splitter: the whole input split on `\n`, the last piece a line only if it is not empty, one
/// trailing `\r` dropped, and a line longer than `max` reported with its raw length.
fn model(body: &[u8], max: usize) -> Vec<Result<Vec<u8>, u64>> {
    let mut parts: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    if parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
        .into_iter()
        .map(|raw| {
            let text = raw.strip_suffix(b"\r").unwrap_or(raw);
            if text.len() > max {
                Err(raw.len() as u64)
            } else {
                Ok(text.to_vec())
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = 1 + data[0] as usize % 64;
    // The chunk sizes, 0 to 31, taken in turn from the next `n` bytes.
    let n = 1 + data[1] as usize % 8;
    if data.len() < 2 + n {
        return;
    }
    let mut sizes: Vec<usize> = data[2..2 + n].iter().map(|b| *b as usize % 32).collect();
    if sizes.iter().all(|&s| s == 0) {
        // Empty chunks are fed too, but the input must move on.
        sizes.push(1);
    }
    let body = &data[2 + n..];
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut rest = body;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    let whole = split(&[body], max);
    assert_eq!(split(&chunks, max), whole, "chunk sizes {sizes:?}");
    assert_eq!(whole, model(body, max));
});
