//! A small pool of read buffers, so that ranged reads reuse their memory instead of asking
//! the OS for fresh pages (and paying a page fault per 4 KiB) for every 8 MiB chunk.
//!
//! A pooled buffer is filled as a `Vec<u8>` and handed on as `Bytes` (via
//! `Bytes::from_owner`); when the last `Bytes` referring to it is dropped, the `Vec` goes back
//! to the pool. The pool keeps at most `max_idle` buffers; beyond that they are freed.

use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;

#[derive(Debug, Clone)]
pub(crate) struct BufPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    idle: Mutex<Vec<Vec<u8>>>,
    /// Buffers kept for reuse, in buffers.
    max_idle: usize,
}

/// A buffer that returns to its pool when dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<Inner>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut idle = self.pool.idle.lock();
        if idle.len() < self.pool.max_idle {
            idle.push(buf);
        }
    }
}

impl BufPool {
    pub(crate) fn new(max_idle: usize) -> Self {
        Self { inner: Arc::new(Inner { idle: Mutex::new(Vec::new()), max_idle }) }
    }

    /// An empty buffer with at least `capacity` bytes of room.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = self.inner.idle.lock().pop();
        let mut buf = reused.unwrap_or_default();
        buf.reserve(capacity);
        buf
    }

    /// Freezes a filled buffer; it comes back to the pool when the `Bytes` is dropped.
    pub(crate) fn freeze(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool: Arc::clone(&self.inner) })
    }

    /// Buffers waiting for reuse (the tests' view of the pool).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.inner.idle.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_are_reused() {
        let pool = BufPool::new(2);
        let mut a = pool.take(1024);
        a.extend_from_slice(b"hello");
        let ptr = a.as_ptr();
        let bytes = pool.freeze(a);
        let slice = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a slice still holds it");
        assert_eq!(&slice[..], b"el");
        drop(slice);
        assert_eq!(pool.idle(), 1);
        let b = pool.take(1024);
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
    }

    #[test]
    fn idle_buffers_are_bounded() {
        let pool = BufPool::new(1);
        let x = pool.freeze(pool.take(8));
        let y = pool.freeze(pool.take(8));
        drop((x, y));
        assert_eq!(pool.idle(), 1);
    }
}
