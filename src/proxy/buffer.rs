//! Fixed-size byte buffers from a pool bounded in bytes (`limits.buffers.max`): every
//! buffer outside the pool counts its size, the large ones a plan needs to hold a whole
//! body included, so the budget is what the loop can hold in flight. A connection holds
//! a buffer only while data is in flight; an idle keep-alive connection holds none.
//! Buffers never grow: a full buffer is back-pressure (stop reading), never a
//! reallocation.
//! Must not touch: sockets (callers read into `space()` and report `filled`).

/// A window `[start, end)` of valid bytes inside a fixed allocation.
pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    /// Free space after the data, compacting first when the front is wasted.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 && (self.end == self.data.len() || self.start >= self.data.len() / 2) {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }
    pub fn has_space(&self) -> bool {
        self.end < self.data.len() || self.start > 0
    }
    pub fn filled(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.data.len());
        self.end = (self.end + n).min(self.data.len());
    }
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
    /// The whole allocation for writing a head into; the caller then calls `filled`.
    pub fn whole_mut(&mut self) -> &mut [u8] {
        self.clear();
        &mut self.data[..]
    }
    pub fn capacity(&self) -> usize {
        self.data.len()
    }
}

/// Buffer size classes: heads are small, data moves in 16 KiB units, and only a client
/// head larger than that gets a buffer of `limits.request.head.max` (+ slack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Head,
    Data,
    Large,
}

pub const HEAD_SIZE: usize = 4 * 1024;
pub const DATA_SIZE: usize = 16 * 1024;

struct Shelf {
    size: usize,
    free: Vec<Box<[u8]>>,
    in_use: usize,
}

/// Bounded pool: at most `max_bytes` of buffers exist outside it. Free buffers are kept
/// for reuse (allocating and zeroing a buffer per request is what a pool avoids) and
/// trimmed back gradually by `trim` once the load that needed them is gone.
pub struct Pool {
    shelves: [Shelf; 3],
    max_bytes: usize,
    /// Buffers outside the pool, and their bytes.
    pub in_use: usize,
    pub bytes_in_use: usize,
}

fn index(class: Class) -> usize {
    match class {
        Class::Head => 0,
        Class::Data => 1,
        Class::Large => 2,
    }
}

impl Pool {
    pub fn new(head_max: usize, max_bytes: usize) -> Pool {
        let large = (head_max + 4096).max(DATA_SIZE);
        let shelf = |size| Shelf {
            size,
            free: Vec::new(),
            in_use: 0,
        };
        Pool {
            shelves: [shelf(HEAD_SIZE), shelf(DATA_SIZE), shelf(large)],
            max_bytes,
            in_use: 0,
            bytes_in_use: 0,
        }
    }

    pub fn size_of(&self, class: Class) -> usize {
        self.shelves[index(class)].size
    }

    /// Whether `bytes` more fit in the budget.
    fn affords(&self, bytes: usize) -> bool {
        self.bytes_in_use.saturating_add(bytes) <= self.max_bytes
    }

    /// `None` when the budget is spent: the caller sheds load.
    pub fn get(&mut self, class: Class) -> Option<Buf> {
        let size = self.size_of(class);
        if !self.affords(size) {
            return None;
        }
        self.in_use += 1;
        self.bytes_in_use += size;
        let shelf = &mut self.shelves[index(class)];
        shelf.in_use += 1;
        let data = shelf
            .free
            .pop()
            .unwrap_or_else(|| vec![0u8; shelf.size].into_boxed_slice());
        Some(Buf {
            data,
            start: 0,
            end: 0,
        })
    }

    pub fn put(&mut self, buf: Buf) {
        self.in_use = self.in_use.saturating_sub(1);
        self.bytes_in_use = self.bytes_in_use.saturating_sub(buf.data.len());
        if let Some(shelf) = self.shelves.iter_mut().find(|s| s.size == buf.data.len()) {
            shelf.in_use = shelf.in_use.saturating_sub(1);
            shelf.free.push(buf.data);
        }
    }

    pub fn put_opt(&mut self, buf: &mut Option<Buf>) {
        if let Some(b) = buf.take() {
            self.put(b);
        }
    }

    /// Moves `buf`'s bytes into a buffer of a larger class. False when none is to be had.
    pub fn grow(&mut self, buf: &mut Buf, class: Class) -> bool {
        if self.size_of(class) <= buf.capacity() {
            return false;
        }
        let Some(bigger) = self.get(class) else {
            return false;
        };
        self.replace(buf, bigger);
        true
    }

    /// Moves `buf`'s bytes to the front of `bigger`, which takes its place; the old
    /// allocation goes back to the pool.
    fn replace(&mut self, buf: &mut Buf, mut bigger: Buf) {
        let n = buf.len();
        bigger.data[..n].copy_from_slice(buf.bytes());
        bigger.end = n;
        let old = std::mem::replace(buf, bigger);
        self.put(old);
    }

    /// Moves `buf`'s bytes into a buffer of exactly `size` bytes, made for one request
    /// whose whole body policies need (counted in the budget; freed, not shelved, on
    /// `put`). False when `size` is not larger or the budget cannot hold it.
    pub fn grow_exact(&mut self, buf: &mut Buf, size: usize) -> bool {
        if size <= buf.capacity() || !self.affords(size) {
            return false;
        }
        let bigger = Buf {
            data: vec![0u8; size].into_boxed_slice(),
            start: 0,
            end: 0,
        };
        self.in_use += 1;
        self.bytes_in_use += size;
        self.replace(buf, bigger);
        true
    }

    /// Called periodically: frees an eighth of the free buffers beyond what the current
    /// load could use, so memory follows the load down without thrashing.
    pub fn trim(&mut self) {
        for shelf in &mut self.shelves {
            let keep = shelf.in_use / 2 + 8;
            if shelf.free.len() > keep {
                let excess = shelf.free.len() - keep;
                let target = shelf.free.len() - excess.div_ceil(8);
                shelf.free.truncate(target);
                shelf.free.shrink_to(target.max(keep));
            }
        }
    }

    pub fn free_buffers(&self) -> usize {
        self.shelves.iter().map(|s| s.free.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_compaction() {
        let mut pool = Pool::new(32 * 1024, HEAD_SIZE + DATA_SIZE);
        let mut b = pool.get(Class::Head).unwrap();
        let cap = b.capacity();
        b.space()[..6].copy_from_slice(b"abcdef");
        b.filled(6);
        b.consume(4);
        assert_eq!(b.bytes(), b"ef");
        assert_eq!(
            b.space().len(),
            cap - 6,
            "no compaction while the front waste is small"
        );
        assert_eq!(b.bytes(), b"ef");
        b.consume(2);
        assert!(b.is_empty());
        let c = pool.get(Class::Data).unwrap();
        assert!(pool.get(Class::Data).is_none(), "bounded");
        pool.put(b);
        pool.put(c);
        assert_eq!(pool.in_use, 0);
        assert_eq!(pool.free_buffers(), 2);
    }

    #[test]
    fn grow_keeps_bytes_and_trim_decays() {
        let mut pool = Pool::new(32 * 1024, 100 * 36 * 1024);
        let mut b = pool.get(Class::Data).unwrap();
        b.space()[..3].copy_from_slice(b"xyz");
        b.filled(3);
        assert!(pool.grow(&mut b, Class::Large));
        assert_eq!(b.bytes(), b"xyz");
        assert_eq!(b.capacity(), 36 * 1024);
        assert!(!pool.grow(&mut b, Class::Data), "never shrinks");
        pool.put(b);
        let bufs: Vec<Buf> = (0..60).map(|_| pool.get(Class::Data).unwrap()).collect();
        for b in bufs {
            pool.put(b);
        }
        let before = pool.free_buffers();
        for _ in 0..100 {
            pool.trim();
        }
        assert!(pool.free_buffers() < before);
        assert!(pool.free_buffers() >= 8);
    }

    /// Before, the pool counted buffers: a 4 MiB body buffer counted as one of
    /// thousands. Now every byte counts.
    #[test]
    fn the_budget_counts_bytes_large_body_buffers_included() {
        let mut pool = Pool::new(32 * 1024, 1 << 20);
        let mut body = pool.get(Class::Head).unwrap();
        assert!(pool.grow_exact(&mut body, 900 * 1024));
        assert_eq!(pool.bytes_in_use, 900 * 1024, "the head buffer went back");
        let mut other = pool.get(Class::Head).unwrap();
        assert!(!pool.grow_exact(&mut other, 200 * 1024), "over the budget");
        let held: Vec<Buf> = std::iter::from_fn(|| pool.get(Class::Data)).collect();
        assert_eq!(
            held.len(),
            (1024 - 900 - 4) / 16,
            "what is left, in 16 KiB buffers"
        );
        assert_eq!(pool.bytes_in_use, (900 + 4 + 7 * 16) * 1024);
        let heads: Vec<Buf> = std::iter::from_fn(|| pool.get(Class::Head)).collect();
        assert_eq!(heads.len(), 2, "the last 8 KiB");
        assert!(pool.get(Class::Data).is_none());
        pool.put(body);
        assert!(
            pool.get(Class::Data).is_some(),
            "freed bytes are spendable again"
        );
    }
}
