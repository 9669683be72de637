//! The line splitter across chunk boundaries: any chunking gives the same lines as one chunk,
//! the carry stays within its bound, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprocessing_worker::lines::{Line, LineSplitter};

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

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = 1 + data[0] as usize % 64;
    let step = 1 + data[1] as usize % 17;
    let body = &data[2..];
    let whole = split(&[body], max);
    let chunks: Vec<&[u8]> = body.chunks(step).collect();
    assert_eq!(split(&chunks, max), whole);
});
