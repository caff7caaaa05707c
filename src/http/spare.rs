//! Spare body buffers, per thread. A body read whole for a policy, the JSON text an
//! expression checked, the JSON it printed for `set-body`: each is a heap buffer about
//! the size of a body that lives for one call. Given back when the call ends, the next
//! call takes it again, so a chain that reads and rewrites every request's body does
//! not allocate for it in the steady state (and glibc's malloc, which tidies its small
//! bins on every allocation of 1 KiB or more, is not asked for one per body).
//! Bounded: at most `SPARES` buffers of at most `SPARE_BYTES` each per thread; larger
//! buffers are freed as usual.
//! Must not touch: what the buffers held (they come back emptied), the event loop.

use std::cell::RefCell;

/// Most buffers kept per thread, and the largest capacity kept.
const SPARES: usize = 8;
const SPARE_BYTES: usize = 64 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Below this, a buffer is not worth a spare (small allocations are cheap).
const SMALLEST: usize = 1024;

/// An empty buffer with room for at least `capacity` bytes: a spare (`spare`) or a new
/// one. Small requests always get a new one.
pub fn bytes(capacity: usize) -> Vec<u8> {
    if capacity < SMALLEST {
        return Vec::with_capacity(capacity);
    }
    let mut buf = spare(capacity).unwrap_or_else(|| Vec::with_capacity(capacity));
    buf.clear();
    buf
}

/// A buffer of exactly `len` bytes whose content is unspecified (what a spare held, or
/// zeros), for a writer that fills it and truncates it to what it wrote: a spare's
/// bytes need no zeroing.
pub fn filled(len: usize) -> Vec<u8> {
    let mut buf = if len < SMALLEST {
        Vec::new()
    } else {
        spare(len).unwrap_or_default()
    };
    buf.resize(len, 0);
    buf
}

/// The smallest spare with room for `capacity` bytes that is at most four times that
/// (a short string must not hold on to a large buffer).
fn spare(capacity: usize) -> Option<Vec<u8>> {
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let fits = (0..s.len())
            .filter(|&i| (capacity..=capacity.saturating_mul(4)).contains(&s[i].capacity()))
            .min_by_key(|&i| s[i].capacity());
        fits.map(|i| s.swap_remove(i))
    })
}

/// `bytes` as an empty `String`.
pub fn string(capacity: usize) -> String {
    // an empty buffer is valid UTF-8
    String::from_utf8(bytes(capacity)).unwrap_or_default()
}

/// Keeps `buf`'s allocation for a later call on this thread, within bounds. Its bytes
/// stay as they are (a taker clears or overwrites them; none are read first).
pub fn give(buf: Vec<u8>) {
    if buf.capacity() < SMALLEST || buf.capacity() > SPARE_BYTES {
        return;
    }
    // a thread that is ending drops the buffer instead
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARES {
            s.push(buf);
        }
    });
}

/// `give` for a `String`.
pub fn give_string(s: String) {
    give(s.into_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the buffer `bytes(capacity)` gives lives (it is dropped, not given back).
    fn taken(capacity: usize) -> usize {
        let buf = bytes(capacity);
        buf.as_ptr() as usize
    }

    fn empty_spares() {
        SPARE.with(|s| s.borrow_mut().clear());
    }

    #[test]
    fn buffers_come_back_emptied_and_bounded() {
        empty_spares();
        let mut a = bytes(2000);
        a.extend_from_slice(b"secret");
        let at = a.as_ptr() as usize;
        give(a);
        // the same allocation, emptied, for a request that fits
        let b = bytes(1500);
        assert_eq!(b.as_ptr() as usize, at);
        assert!(b.is_empty() && b.capacity() >= 2000);
        give(b);
        let s = string(1200);
        assert_eq!(s.as_ptr() as usize, at);
        assert!(s.is_empty() && s.capacity() >= 2000);
        give_string(s);
        // not for a small request, nor one it is too small for
        assert_ne!(taken(100), at);
        assert_ne!(taken(8000), at);
        // the smallest spare that fits is taken, never one over four times too large
        let larger = bytes(4000);
        let larger_at = larger.as_ptr() as usize;
        let huge = bytes(16_000);
        let huge_at = huge.as_ptr() as usize;
        give(larger);
        give(huge);
        assert_eq!(taken(1800), at);
        assert_eq!(taken(1800), larger_at);
        assert_ne!(taken(1800), huge_at);
        // a filled buffer has the length asked for, from a spare when one fits
        empty_spares();
        let mut c = bytes(3000);
        c.extend_from_slice(&[7; 3000]);
        let c_at = c.as_ptr() as usize;
        give(c);
        let f = filled(2500);
        assert_eq!((f.as_ptr() as usize, f.len()), (c_at, 2500));
        give(f);
        assert_eq!(filled(2900).len(), 2900);
        assert_eq!(filled(10), [0; 10]);
        // too large to keep, and at most SPARES kept
        empty_spares();
        give(Vec::with_capacity(SPARE_BYTES + 1));
        assert_eq!(SPARE.with(|s| s.borrow().len()), 0);
        for _ in 0..SPARES + 4 {
            give(Vec::with_capacity(1024));
        }
        assert_eq!(SPARE.with(|s| s.borrow().len()), SPARES);
    }
}
