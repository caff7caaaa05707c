//! A map bounded in bytes, keyed by (group, caller key), with CLOCK eviction: the
//! store behind the policy counters (`limits`) and the built-in cache (`cache`).
//! Each entry is charged its key's length, what its value may hold and a fixed
//! overhead; when a new entry does not fit, the clock hand walks the entries and the
//! first one that is expired, or not touched since the hand last passed, goes (an
//! entry in use can be kept by the caller's rule). A lookup with a borrowed `&str` key
//! allocates nothing.
//! Must not touch: what the values mean, the clock (time comes in as an argument).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;

/// What an entry costs besides its key and value (slot, index entry, key pointer).
const ENTRY_OVERHEAD: usize = 96;

struct Slot<G, T> {
    group: G,
    key: Rc<str>,
    value: T,
    /// What this entry is charged: key, value (at its largest) and overhead.
    bytes: usize,
    /// When the entry holds nothing worth keeping any more (ms since the epoch).
    expires_ms: u64,
    /// Touched since the clock hand last passed.
    referenced: bool,
}

/// Values keyed by (group, caller key), bounded in bytes: a map per group, so a lookup
/// with a borrowed `&str` key allocates nothing; entries live in a slab the CLOCK hand
/// walks when room is needed.
pub(crate) struct Keyed<G, T> {
    index: HashMap<G, HashMap<Rc<str>, usize>>,
    slots: Vec<Option<Slot<G, T>>>,
    free: Vec<usize>,
    hand: usize,
    len: usize,
    bytes: usize,
    max_bytes: usize,
    /// Entries evicted to make room, ever (expired ones included).
    pub(crate) evicted: u64,
}

impl<G: Hash + Eq + Clone, T> Keyed<G, T> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Keyed {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            len: 0,
            bytes: 0,
            max_bytes,
            evicted: 0,
        }
    }

    pub(crate) fn slot_of<Q>(&self, group: &Q, key: &str) -> Option<usize>
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.get(group)?.get(key).copied()
    }

    pub(crate) fn get<Q>(&self, group: &Q, key: &str) -> Option<&T>
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.slot_of(group, key)?;
        self.slots.get(i)?.as_ref().map(|s| &s.value)
    }

    /// The entry in slot `i`, marked as used; `expires_ms` moves to what the caller says.
    pub(crate) fn touch(&mut self, i: usize, expires_ms: u64) -> Option<&mut T> {
        let slot = self.slots.get_mut(i)?.as_mut()?;
        slot.referenced = true;
        slot.expires_ms = slot.expires_ms.max(expires_ms);
        Some(&mut slot.value)
    }

    pub(crate) fn get_mut<Q>(&mut self, group: &Q, key: &str) -> Option<&mut T>
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.slot_of(group, key)?;
        self.slots.get_mut(i)?.as_mut().map(|s| &mut s.value)
    }

    /// The value for (group, key), inserted with `make` (charged `value_bytes`) when
    /// absent. Room is made by evicting entries `evictable` allows; `None` only when
    /// nothing can go (every entry is in use) or the entry alone exceeds the budget.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn entry<Q>(
        &mut self,
        group: &Q,
        key: &str,
        value_bytes: usize,
        expires_ms: u64,
        now_ms: u64,
        evictable: impl Fn(&T) -> bool,
        make: impl FnOnce() -> T,
    ) -> Option<&mut T>
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = G> + ?Sized,
    {
        // one hash lookup for a known key (the request path's usual case)
        if let Some(i) = self.slot_of(group, key) {
            return self.touch(i, expires_ms);
        }
        let bytes = key.len() + value_bytes + ENTRY_OVERHEAD;
        if bytes > self.max_bytes {
            return None;
        }
        while self.bytes + bytes > self.max_bytes {
            if !self.evict_one(now_ms, &evictable) {
                return None;
            }
        }
        let key: Rc<str> = Rc::from(key);
        let slot = Slot {
            group: group.to_owned(),
            key: Rc::clone(&key),
            value: make(),
            bytes,
            expires_ms,
            referenced: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.index
            .entry(group.to_owned())
            .or_default()
            .insert(key, i);
        self.len += 1;
        self.bytes += bytes;
        self.slots.get_mut(i)?.as_mut().map(|s| &mut s.value)
    }

    /// The value for (group, key) unless it expired by `now_ms` (then it is dropped);
    /// marked as used.
    pub(crate) fn live<Q>(&mut self, group: &Q, key: &str, now_ms: u64) -> Option<&T>
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.slot_of(group, key)?;
        let expired = self.slots.get(i)?.as_ref()?.expires_ms <= now_ms;
        if expired {
            self.remove(i);
            return None;
        }
        let slot = self.slots.get_mut(i)?.as_mut()?;
        slot.referenced = true;
        Some(&slot.value)
    }

    /// Puts `value` under (group, key) in place of what was there, charged
    /// `value_bytes`, until `expires_ms`. False when it cannot fit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replace<Q>(
        &mut self,
        group: &Q,
        key: &str,
        value_bytes: usize,
        expires_ms: u64,
        now_ms: u64,
        value: T,
    ) -> bool
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = G> + ?Sized,
    {
        self.remove_key(group, key);
        self.entry(
            group,
            key,
            value_bytes,
            expires_ms,
            now_ms,
            |_| true,
            || value,
        )
        .is_some()
    }

    /// Drops (group, key); whether it was there.
    pub(crate) fn remove_key<Q>(&mut self, group: &Q, key: &str) -> bool
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.slot_of(group, key) {
            Some(i) => {
                self.remove(i);
                true
            }
            None => false,
        }
    }

    /// Bytes charged now, and entries held.
    pub(crate) fn usage(&self) -> (usize, usize) {
        (self.bytes, self.len)
    }

    pub(crate) fn remove(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::take) else {
            return;
        };
        if let Some(map) = self.index.get_mut(&slot.group) {
            map.remove(&*slot.key);
            if map.is_empty() {
                self.index.remove(&slot.group);
            }
        }
        self.free.push(i);
        self.len -= 1;
        self.bytes -= slot.bytes;
    }

    /// One CLOCK step set: the first evictable entry that is expired or not referenced
    /// since the hand last passed goes. False when none can go.
    pub(crate) fn evict_one(&mut self, now_ms: u64, evictable: &impl Fn(&T) -> bool) -> bool {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand % n.max(1);
            self.hand = (i + 1) % n.max(1);
            let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !evictable(&slot.value) {
                continue;
            }
            if slot.expires_ms <= now_ms || !slot.referenced {
                self.remove(i);
                self.evicted += 1;
                return true;
            }
            slot.referenced = false;
        }
        false
    }

    /// Keeps the entries `keep` accepts (expired ones are dropped by the caller's rule).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T, u64) -> bool) {
        for i in 0..self.slots.len() {
            let drop = self.slots[i]
                .as_ref()
                .is_some_and(|s| !keep(&s.value, s.expires_ms));
            if drop {
                self.remove(i);
            }
        }
        if self.len == 0 {
            self.slots.clear();
            self.free.clear();
            self.hand = 0;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.hand = 0;
        self.len = 0;
        self.bytes = 0;
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&G, &str, &mut T)> {
        self.slots
            .iter_mut()
            .flatten()
            .map(|s| (&s.group, &*s.key, &mut s.value))
    }
}
