//! Fixed-size byte buffers from a bounded pool. A connection holds a buffer only while
//! data is in flight; an idle keep-alive connection holds none. Buffers never grow: a
//! full buffer is back-pressure (stop reading), never a reallocation.
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

/// Bounded pool: at most `max_in_use` buffers exist outside it, at most `max_free` wait
/// inside it; the rest are freed.
pub struct Pool {
    free: Vec<Box<[u8]>>,
    size: usize,
    max_free: usize,
    max_in_use: usize,
    pub in_use: usize,
}

impl Pool {
    pub fn new(size: usize, max_free: usize, max_in_use: usize) -> Pool {
        Pool {
            free: Vec::new(),
            size,
            max_free,
            max_in_use,
            in_use: 0,
        }
    }
    pub fn buffer_size(&self) -> usize {
        self.size
    }
    /// `None` when the pool is exhausted: the caller sheds load.
    pub fn get(&mut self) -> Option<Buf> {
        if self.in_use >= self.max_in_use {
            return None;
        }
        self.in_use += 1;
        let data = self
            .free
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice());
        Some(Buf {
            data,
            start: 0,
            end: 0,
        })
    }
    pub fn put(&mut self, buf: Buf) {
        self.in_use = self.in_use.saturating_sub(1);
        if self.free.len() < self.max_free && buf.data.len() == self.size {
            self.free.push(buf.data);
        }
    }
    pub fn put_opt(&mut self, buf: &mut Option<Buf>) {
        if let Some(b) = buf.take() {
            self.put(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_compaction() {
        let mut pool = Pool::new(8, 1, 2);
        let mut b = pool.get().unwrap();
        b.space()[..6].copy_from_slice(b"abcdef");
        b.filled(6);
        b.consume(4);
        assert_eq!(b.bytes(), b"ef");
        assert_eq!(b.space().len(), 6);
        assert_eq!(b.bytes(), b"ef");
        b.consume(2);
        assert!(b.is_empty());
        let c = pool.get().unwrap();
        assert!(pool.get().is_none(), "bounded");
        pool.put(b);
        pool.put(c);
        assert_eq!(pool.in_use, 0);
        assert_eq!(pool.free.len(), 1, "at most max_free kept");
    }
}
