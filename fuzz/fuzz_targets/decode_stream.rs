//! The decoders on whole, cut and corrupt gzip and zstd streams, in chunks of sizes the input
//! chooses. The oracle is the body the stream was made from (by flate2's and zstd's own
//! encoders, with zstd's checksum on): decoding never panics; a whole stream decodes to the
//! body; a cut one gives a prefix of it and ends in an error, never `Ok` on a silently short
//! file; a corrupt one ends in an error or, if it decodes at all (a flipped bit in a header
//! field), in the body itself. (What a corrupt stream yields before its checksum fails is not
//! the body's: gzip and zstd check at the end of a member or frame.) A stream that does not
//! start with a magic number is plain and passes through unchanged.
#![no_main]

use std::io::Write;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rw_core::{decode, detect, Codec, DecodeError};

#[derive(Debug, thiserror::Error)]
#[error("never sent")]
struct Never;

fn gzip(body: &[u8], members: usize) -> Vec<u8> {
    // Several members when asked: the worker reads multi-member files to the end.
    let mut out = Vec::new();
    let step = body.len().div_ceil(members.max(1)).max(1);
    for part in body.chunks(step) {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        out.extend(e.finish().unwrap());
    }
    if body.is_empty() {
        out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()).finish().unwrap();
    }
    out
}

fn zstd(body: &[u8]) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    e.include_checksum(true).unwrap();
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

/// Decodes `stream` handed over in chunks whose sizes cycle through `sizes`.
fn run(stream: &[u8], sizes: &[usize]) -> (Result<Codec, DecodeError<Never>>, Vec<u8>) {
    let mut chunks = Vec::new();
    let mut rest = stream;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (c, tail) = rest.split_at((*size).clamp(1, rest.len()));
        chunks.push(Bytes::copy_from_slice(c));
        rest = tail;
    }
    let mut chunks = chunks.into_iter();
    let first = chunks.next().unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::channel(chunks.len() + 1);
    for c in chunks {
        tx.try_send(Ok(c)).unwrap();
    }
    drop(tx);
    let mut out = Vec::new();
    let r = decode(first, &mut rx, &AtomicU64::new(0), |b| {
        out.extend_from_slice(b);
        true
    });
    (r, out)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (head, body) = data.split_at(6);
    let sizes: Vec<usize> = head[1..4].iter().map(|b| 1 + *b as usize * 37).collect();
    let at = u16::from_le_bytes([head[4], head[5]]) as usize;
    match head[0] % 7 {
        // Arbitrary bytes as the stream: no panic; plain input passes through.
        0 => {
            let (r, out) = run(body, &sizes);
            if detect(body) == Codec::Plain {
                assert!(r.is_ok() && out == body, "plain input changed");
            }
        }
        mode => {
            // Several gzip members only when whole or corrupt: a cut at a member boundary
            // leaves a valid, shorter gzip file, which no decoder can tell from a whole one.
            let members = if matches!(mode, 3 | 4) { 1 } else { 1 + head[1] as usize % 3 };
            let mut stream = if mode % 2 == 1 { gzip(body, members) } else { zstd(body) };
            let whole = stream.clone();
            match mode {
                // Whole.
                1 | 2 => {}
                // Cut short at `at` (when that is inside the stream and past the magic number).
                3 | 4 => {
                    if at < 4 || at >= stream.len() {
                        return;
                    }
                    stream.truncate(at);
                }
                // One byte flipped.
                _ => {
                    let i = at % stream.len();
                    stream[i] ^= 1 << (head[1] % 8);
                    if detect(&stream) == Codec::Plain {
                        return;
                    }
                }
            }
            let (r, out) = run(&stream, &sizes);
            if stream == whole {
                assert!(r.is_ok() && out == body, "a whole stream: {r:?}, {} of {} bytes", out.len(), body.len());
            } else if mode <= 4 {
                assert!(body.starts_with(&out), "a cut stream gave bytes that are not a prefix of the body");
                assert!(r.is_err(), "a stream cut at {at} of {} ended Ok with {} of {} bytes", whole.len(), out.len(), body.len());
            } else if r.is_ok() {
                assert!(out == body, "a corrupt stream ended Ok with other bytes than the body");
            }
        }
    }
});
