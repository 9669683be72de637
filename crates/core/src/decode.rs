//! Decompression, detected by magic bytes: gzip (including multi-member files), zstd
//! (including concatenated frames), or plain.
//!
//! Called on the CPU stage's thread: it pulls chunks from the reader's channel with
//! `blocking_recv`, and hands decoded bytes to a callback. Plain chunks are handed over as
//! they are (no copy). Compressed input is decoded on a second thread, straight from the
//! chunks (a `BufRead` over them, no intermediate buffer), into reused buffers of
//! [`DECODED_BUF_BYTES`] that queue (at most `DECODED_QUEUE`) for the parser, so that
//! parsing hides behind decompression when a second core is there.

use std::io::{BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

/// One decoded-output buffer, in bytes. Sized to stay in L2 with the parser's working set.
pub(crate) const DECODED_BUF_BYTES: usize = 256 * 1024;

/// How a file's bytes are compressed, as [`detect`] tells from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Not compressed: the bytes are the text.
    Plain,
    /// gzip, one member or several.
    Gzip,
    /// zstd, one frame or several concatenated.
    Zstd,
}

/// Detects the codec from the first bytes of the file.
pub fn detect(head: &[u8]) -> Codec {
    if head.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Codec::Zstd
    } else {
        Codec::Plain
    }
}

/// Why decoding stopped. `E` is the error of the chunks' source (the reader's, in the worker).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError<E: std::error::Error + 'static> {
    /// The chunks' source failed: its error.
    #[error(transparent)]
    Source(E),
    /// The compressed data is not valid for its codec.
    #[error("corrupt {codec:?} data after {decoded} decoded bytes: {reason}")]
    Corrupt {
        /// The codec detected from the file's magic bytes.
        codec: Codec,
        /// Bytes decoded before the decoder failed.
        decoded: u64,
        /// The decoder's error, as text.
        reason: String,
    },
    /// The decompression thread could not be started.
    #[error("cannot start the decompression thread")]
    SpawnDecoder(#[source] std::io::Error),
    /// The decompression thread panicked.
    #[error("the decompression thread panicked")]
    DecoderPanicked,
}

/// A `BufRead` over the reader's chunks. A source error is kept aside so that it can be told
/// apart from corrupt data once the decoder reports it.
struct ChunkReader<'a, E> {
    rx: &'a mut mpsc::Receiver<Result<Bytes, E>>,
    /// A chunk taken from `rx` before the reader was built.
    queued: Option<Result<Bytes, E>>,
    cur: Bytes,
    failed: Option<E>,
    consumed: &'a AtomicU64,
}

impl<E> ChunkReader<'_, E> {
    fn next_chunk(&mut self) -> std::io::Result<bool> {
        let next = match self.queued.take() {
            Some(q) => Some(q),
            None => self.rx.blocking_recv(),
        };
        match next {
            None => Ok(false),
            Some(Ok(b)) => {
                self.consumed.fetch_add(b.len() as u64, Ordering::Relaxed);
                self.cur = b;
                Ok(true)
            }
            Some(Err(e)) => {
                self.failed = Some(e);
                Err(std::io::Error::other("source read failed"))
            }
        }
    }
}

impl<E> Read for ChunkReader<'_, E> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<E> BufRead for ChunkReader<'_, E> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.cur.is_empty() {
            if !self.next_chunk()? {
                break;
            }
        }
        Ok(&self.cur)
    }
    fn consume(&mut self, n: usize) {
        self.cur.advance(n);
    }
}

/// Decodes the stream that starts with `first` and continues on `rx`, calling `f` with each
/// run of decoded bytes. `f` returns `false` to stop; decoding then ends with `Ok`.
/// `consumed` counts the compressed bytes taken from the source.
pub fn decode<E: std::error::Error + Send + 'static>(
    first: Bytes,
    rx: &mut mpsc::Receiver<Result<Bytes, E>>,
    consumed: &AtomicU64,
    mut f: impl FnMut(&[u8]) -> bool,
) -> Result<Codec, DecodeError<E>> {
    // The magic bytes may span chunks (a first read of a few bytes): gather them first.
    let mut first = first;
    while first.len() < MAGIC_BYTES {
        match rx.blocking_recv() {
            Some(Ok(more)) => first = [first, more].concat().into(),
            Some(Err(e)) => return Err(DecodeError::Source(e)),
            None => break,
        }
    }
    let codec = detect(&first);
    consumed.fetch_add(first.len() as u64, Ordering::Relaxed);
    // A small compressed file usually arrives whole in its first chunk: decode it on this
    // thread, without starting a decoder thread for it.
    let mut queued = None;
    if codec != Codec::Plain && first.len() <= WHOLE_INLINE_BYTES {
        match rx.blocking_recv() {
            None => return decode_whole(codec, &first, f),
            next => queued = next,
        }
    }
    if codec == Codec::Plain {
        if !f(&first) {
            return Ok(codec);
        }
        while let Some(chunk) = rx.blocking_recv() {
            let chunk = chunk.map_err(DecodeError::Source)?;
            consumed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if !f(&chunk) {
                break;
            }
        }
        return Ok(codec);
    }
    // Decompression runs on its own thread and hands decoded buffers to the caller's thread
    // through a bounded queue, so parsing overlaps decompression when there is a second core.
    // Buffers go back to the decoder for reuse (no fresh pages per buffer).
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(DECODED_QUEUE);
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(DECODED_QUEUE + 2);
    std::thread::scope(|scope| {
        let decoder = std::thread::Builder::new()
            .name("decompress".into())
            .spawn_scoped(scope, move || decompress(codec, first, queued, rx, consumed, &full_tx, &free_rx))
            .map_err(DecodeError::SpawnDecoder)?;
        for buf in full_rx.iter() {
            if !f(&buf) {
                break;
            }
            let _ = free_tx.try_send(buf);
        }
        drop(full_rx);
        decoder.join().unwrap_or(Err(DecodeError::DecoderPanicked))
    })
}

/// The longest magic number [`detect`] looks at, in bytes.
const MAGIC_BYTES: usize = 4;

/// A compressed file whose first chunk is its whole and is at most this long is decoded on the
/// caller's thread, in bytes.
const WHOLE_INLINE_BYTES: usize = 4 * 1024 * 1024;

thread_local! {
    /// The caller's buffer for whole files decoded on its thread, reused from file to file.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decodes a whole compressed file held in `data` on this thread, in runs of
/// [`DECODED_BUF_BYTES`].
fn decode_whole<E: std::error::Error>(
    codec: Codec,
    data: &[u8],
    mut f: impl FnMut(&[u8]) -> bool,
) -> Result<Codec, DecodeError<E>> {
    SCRATCH.with_borrow_mut(|buf| {
        let mut decoded = 0u64;
        let result = decompressing(codec, data, |dec| loop {
            let filled = fill(dec, buf)?;
            if filled == 0 || !f(&buf[..filled]) {
                return Ok(());
            }
            decoded += filled as u64;
        });
        result.map(|()| codec).map_err(|e| DecodeError::Corrupt { codec, decoded, reason: e.to_string() })
    })
}

/// Decodes all of `data` (its codec detected by [`detect`]) into memory, up to `limit` bytes:
/// `Ok(None)` when it is larger. For small files read whole (the mounted file list).
pub(crate) fn decode_bounded(data: &[u8], limit: u64) -> Result<Option<Vec<u8>>, (Codec, std::io::Error)> {
    let codec = detect(data);
    if codec == Codec::Plain {
        return Ok((data.len() as u64 <= limit).then(|| data.to_vec()));
    }
    let mut out = Vec::new();
    decompressing(codec, data, |dec| dec.take(limit + 1).read_to_end(&mut out).map(drop)).map_err(|e| (codec, e))?;
    Ok((out.len() as u64 <= limit).then_some(out))
}

/// Runs `body` on a decoder of `codec` that reads `input`.
fn decompressing<R: BufRead>(
    codec: Codec,
    input: R,
    body: impl FnOnce(&mut dyn Read) -> std::io::Result<()>,
) -> std::io::Result<()> {
    match codec {
        Codec::Gzip => body(&mut flate2::bufread::MultiGzDecoder::new(input)),
        Codec::Zstd => body(&mut zstd::stream::read::Decoder::with_buffer(input)?),
        Codec::Plain => Ok(()),
    }
}

/// Fills `buf` with up to [`DECODED_BUF_BYTES`] decoded bytes; returns how many (0 at the end).
fn fill(dec: &mut dyn Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.resize(DECODED_BUF_BYTES, 0);
    let mut filled = 0;
    while filled < buf.len() {
        match dec.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Decoded buffers queued between the decoder and the parser, in buffers of
/// [`DECODED_BUF_BYTES`].
const DECODED_QUEUE: usize = 4;

/// The decoder thread: fills buffers of [`DECODED_BUF_BYTES`] and sends them on `out`; stops
/// quietly when the receiver is gone.
fn decompress<E: std::error::Error>(
    codec: Codec,
    first: Bytes,
    queued: Option<Result<Bytes, E>>,
    rx: &mut mpsc::Receiver<Result<Bytes, E>>,
    consumed: &AtomicU64,
    out: &std::sync::mpsc::SyncSender<Vec<u8>>,
    free: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<Codec, DecodeError<E>> {
    let mut reader = ChunkReader { rx, queued, cur: first, failed: None, consumed };
    let mut decoded = 0u64;
    let result = decompressing(codec, &mut reader, |dec| loop {
        let mut buf = free.try_recv().unwrap_or_else(|_| Vec::with_capacity(DECODED_BUF_BYTES));
        let filled = fill(dec, &mut buf)?;
        if filled == 0 {
            return Ok(());
        }
        buf.truncate(filled);
        decoded += filled as u64;
        if out.send(buf).is_err() {
            return Ok(());
        }
    });
    match result {
        Ok(()) => Ok(codec),
        Err(e) => match reader.failed.take() {
            Some(src) => Err(DecodeError::Source(src)),
            None => Err(DecodeError::Corrupt { codec, decoded, reason: e.to_string() }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The source's error in these tests.
    #[derive(Debug, thiserror::Error)]
    #[error("connection reset at byte {0}")]
    struct Reset(u64);

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn run(data: Vec<u8>, chunk: usize) -> (Result<Codec, DecodeError<Reset>>, Vec<u8>, u64) {
        let (tx, mut rx) = mpsc::channel(data.len() / chunk + 2);
        let mut chunks = data.chunks(chunk).map(Bytes::copy_from_slice);
        let first = chunks.next().unwrap_or_default();
        for c in chunks {
            tx.try_send(Ok(c)).unwrap();
        }
        drop(tx);
        let consumed = AtomicU64::new(0);
        let mut out = Vec::new();
        let r = decode(first, &mut rx, &consumed, |b| {
            out.extend_from_slice(b);
            true
        });
        (r, out, consumed.load(Ordering::Relaxed))
    }

    fn payload() -> Vec<u8> {
        (0..300_000u32).flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes()).collect()
    }

    #[test]
    fn plain_gzip_multigzip_zstd() {
        let p = payload();
        let (half1, half2) = p.split_at(p.len() / 2);
        let mut multi = gzip(half1);
        multi.extend(gzip(half2));
        let mut zmulti = zstd::encode_all(half1, 1).unwrap();
        zmulti.extend(zstd::encode_all(half2, 1).unwrap());
        for (data, codec) in [
            (p.clone(), Codec::Plain),
            (gzip(&p), Codec::Gzip),
            (multi, Codec::Gzip),
            (zstd::encode_all(&p[..], 3).unwrap(), Codec::Zstd),
            (zmulti, Codec::Zstd),
        ] {
            for chunk in [7, 4096, 1 << 20, 1 << 22] {
                let len = data.len() as u64;
                let (r, out, consumed) = run(data.clone(), chunk);
                assert_eq!(r.unwrap(), codec);
                assert!(out == p, "{codec:?} chunk {chunk}");
                assert_eq!(consumed, len);
            }
        }
    }

    #[test]
    fn truncated_and_corrupt_input_is_a_corrupt_error() {
        let p = payload();
        let mut g = gzip(&p);
        g.truncate(g.len() / 2);
        let mut z = zstd::encode_all(&p[..], 3).unwrap();
        let mid = z.len() / 2;
        z[mid..mid + 64].iter_mut().for_each(|b| *b ^= 0x5a);
        // In many chunks (the decoder thread) and whole in one (decoded on the caller's thread).
        for chunk in [4096, 1 << 22] {
            let (r, out, _) = run(g.clone(), chunk);
            assert!(matches!(r, Err(DecodeError::Corrupt { codec: Codec::Gzip, .. })), "{r:?}");
            assert!(!out.is_empty() && p.starts_with(&out), "keeps what decoded before the cut");
            let (r, _, _) = run(z.clone(), chunk);
            assert!(matches!(r, Err(DecodeError::Corrupt { codec: Codec::Zstd, .. })), "{r:?}");
        }
    }

    #[test]
    fn magic_bytes_split_over_tiny_chunks_are_still_recognised() {
        let p = payload();
        for (data, codec) in [(gzip(&p), Codec::Gzip), (zstd::encode_all(&p[..], 3).unwrap(), Codec::Zstd)] {
            for chunk in [1, 3] {
                let (r, out, _) = run(data.clone(), chunk);
                assert_eq!(r.unwrap(), codec, "chunks of {chunk}");
                assert!(out == p);
            }
        }
    }

    #[test]
    fn source_errors_are_told_apart_from_corruption() {
        let g = gzip(&payload());
        let (tx, mut rx) = mpsc::channel(4);
        tx.try_send(Err(Reset(10))).unwrap();
        drop(tx);
        let r = decode(Bytes::copy_from_slice(&g[..10]), &mut rx, &AtomicU64::new(0), |_| true);
        assert!(matches!(r, Err(DecodeError::Source(Reset(10)))), "{r:?}");
    }
}
