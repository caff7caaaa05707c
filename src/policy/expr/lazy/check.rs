//! The one pass over a body that the lazy tree needs: checks plain JSON (double-quoted
//! strings, plain names, no comments) and copies it without insignificant whitespace,
//! noting where each container starts and ends in the copy and whether its text is
//! already what Newtonsoft prints compact (then printing it is one copy).
//! Anything else, including every error, is left to the eager parser, which judges and
//! words it exactly: this pass answers `None` and never errs itself.
//! Must not touch: the tree, printing, evaluation.

use super::super::json::MAX_DEPTH;

/// Objects with more names than this go to the eager parser (checking their names for
/// repeats without allocating is quadratic).
const NAMES_CHECKED: usize = 64;

/// A container of the copy: where it starts and ends, how deeply containers nest in it,
/// and whether its text is canonical compact JSON.
#[derive(Debug, Clone, Copy)]
pub struct End {
    pub start: u32,
    pub end: u32,
    pub depth: u8,
    pub canonical: bool,
}

/// Plain JSON text, checked and copied without insignificant whitespace.
pub struct Checked {
    pub text: String,
    /// Every container, in order of where it starts.
    pub ends: Vec<End>,
}

/// Checks `text` (UTF-8 or not: the copy is checked to be): `Some` when it is a plain
/// JSON object or array in UTF-8, `None` when the eager parser must judge it (an error,
/// a comment, a single quote, a repeated or escaped name, a scalar root, a document too
/// deep, bytes that are not UTF-8).
pub fn check(text: &[u8]) -> Option<Checked> {
    if u32::try_from(text.len()).is_err() {
        return None;
    }
    let mut ends = spare_ends();
    // about one container per 48 bytes in typical API bodies
    ends.reserve(text.len() / 48 + 4);
    let mut s = Scan {
        b: text,
        pos: 0,
        // the copy is never longer than the text; the slack takes a last block's tail
        out: crate::http::spare::filled(text.len() + RUN_COPY),
        written: 0,
        run: 0,
        ends,
        names: NAMES.with(|n| std::mem::take(&mut *n.borrow_mut())),
    };
    let checked = s.document();
    let mut names = std::mem::take(&mut s.names);
    names.clear();
    NAMES.with(|n| *n.borrow_mut() = names);
    let mut out = s.out;
    out.truncate(s.written);
    // blanks are ASCII, so the copy is UTF-8 exactly when the text is (the one check of
    // it: a body is not checked before)
    match (checked, String::from_utf8(out)) {
        (Some(()), Ok(text)) => Some(Checked { text, ends: s.ends }),
        (_, text) => {
            let text = text.unwrap_or_else(|e| {
                crate::http::spare::give(e.into_bytes());
                String::new()
            });
            give_back(text, s.ends);
            None
        }
    }
}

/// Runs of text up to this long are copied as one block of this size (most runs are: a
/// name or a value between blanks), which needs no call to `memcpy`.
const RUN_COPY: usize = 16;

thread_local! {
    /// The name scratch of the last check on this thread (its capacity kept).
    static NAMES: std::cell::RefCell<Vec<(usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Container lists of checked texts that are gone, for the next check on this
    /// thread (the texts themselves go to `http::spare`): a policy that reads every
    /// request's body as JSON then allocates nothing for them.
    static SPARE: std::cell::RefCell<Vec<Vec<End>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most spare container lists kept per thread, and the longest kept.
const SPARE_MAX: usize = 4;
const SPARE_ENDS: usize = 4096;

/// An emptied container list from the spares, or a new one.
fn spare_ends() -> Vec<End> {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

/// Hands `text`'s buffer to the spare body buffers and keeps `ends` (emptied) for the
/// next check, within the bounds.
pub fn give_back(text: String, mut ends: Vec<End>) {
    crate::http::spare::give_string(text);
    if ends.capacity() > SPARE_ENDS {
        return;
    }
    ends.clear();
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_MAX {
            s.push(ends);
        }
    });
}

/// What a byte means inside a string: 0 plain, QUOTE, ESCAPE, CONTROL, or SPECIAL
/// (a lead byte of U+0085, U+2028 or U+2029, which Newtonsoft prints escaped).
const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const ESCAPE: u8 = 2;
const CONTROL: u8 = 3;
const SPECIAL: u8 = 4;
const STRING_BYTES: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = CONTROL;
        i += 1;
    }
    t[b'"' as usize] = QUOTE;
    t[b'\\' as usize] = ESCAPE;
    t[0xC2] = SPECIAL;
    t[0xE2] = SPECIAL;
    t
};

/// Where the run of plain string bytes starting at `i` ends: eight bytes at a time
/// while none of them is a quote, a backslash, a control or a non-ASCII byte, then one
/// at a time.
#[inline(always)]
fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    while let Some(word) = b.get(i..i + 8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes);
        let quote = has_zero(x ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(x ^ (ONES * u64::from(b'\\')));
        // bytes below 0x20, and bytes with the high bit set
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        let stop = quote | backslash | control | (x & HIGHS);
        if stop != 0 {
            // the lowest flagged byte is a real stop; flags above it may be false
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|&c| STRING_BYTES[usize::from(c)] == PLAIN)
    {
        i += 1;
    }
    i
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

struct Scan<'t> {
    b: &'t [u8],
    pos: usize,
    /// The copy: its first `written` bytes are the text before `run` without blanks;
    /// the rest is room (of arbitrary content) for the runs still to come.
    out: Vec<u8>,
    written: usize,
    /// Where the run of text not yet copied to `out` starts.
    run: usize,
    ends: Vec<End>,
    /// Spans of the names of the objects open now, to find a repeated name.
    names: Vec<(usize, usize)>,
}

impl Scan<'_> {
    /// The whole text: one container and nothing but blanks around it.
    fn document(&mut self) -> Option<()> {
        self.blank();
        if !matches!(self.b.get(self.pos), Some(b'{' | b'[')) {
            return None;
        }
        self.value(0)?;
        self.blank();
        if self.pos != self.b.len() {
            return None;
        }
        self.flush();
        Some(())
    }

    /// Where the cursor is in the copy.
    fn at(&self) -> u32 {
        // the text's length was checked to fit
        (self.written + self.pos - self.run) as u32
    }

    /// Copies the run before the cursor: a short one as a block of `RUN_COPY` bytes
    /// whose tail the next run overwrites.
    fn flush(&mut self) {
        let (at, len) = (self.written, self.pos - self.run);
        let block = self
            .b
            .get(self.run..self.run + RUN_COPY)
            .and_then(|b| <&[u8; RUN_COPY]>::try_from(b).ok());
        match (block, self.out.get_mut(at..at + RUN_COPY)) {
            (Some(block), Some(to)) if len <= RUN_COPY => to.copy_from_slice(block),
            // `out` is as long as the text (and a block): the copy always has room
            _ => match self.out.get_mut(at..at + len) {
                Some(to) => to.copy_from_slice(&self.b[self.run..self.pos]),
                None => debug_assert!(false, "the copy is shorter than the text"),
            },
        }
        self.written += len;
    }

    /// Skips whitespace, copying the run before it.
    #[inline]
    fn blank(&mut self) {
        if self.b.get(self.pos).is_some_and(|&c| is_blank(c)) {
            self.flush();
            while self.b.get(self.pos).is_some_and(|&c| is_blank(c)) {
                self.pos += 1;
            }
            self.run = self.pos;
        }
    }

    /// One value; `Some(canonical)` when it is plain JSON. Containers push their ends.
    #[inline(always)]
    fn value(&mut self, depth: usize) -> Option<bool> {
        match *self.b.get(self.pos)? {
            b'"' => self.string(false),
            b'-' | b'0'..=b'9' => self.number(),
            c @ (b'{' | b'[') if depth < MAX_DEPTH => self.container(c == b'{', depth),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<bool> {
        self.b[self.pos..].starts_with(word).then(|| {
            self.pos += word.len();
            true
        })
    }

    fn container(&mut self, object: bool, depth: usize) -> Option<bool> {
        let index = self.ends.len();
        let start = self.at();
        self.ends.push(End {
            start,
            end: start,
            depth: 1,
            canonical: true,
        });
        let close = if object { b'}' } else { b']' };
        self.pos += 1;
        self.blank();
        let mark = self.names.len();
        // the names of this object, hashed to one bit each: a name whose bit is clear
        // repeats none of them, and is not compared
        let mut seen = 0u64;
        let mut canonical = true;
        let mut deepest = 0u8;
        if self.b.get(self.pos) != Some(&close) {
            loop {
                if object {
                    self.name(mark, &mut seen)?;
                }
                let first = self.ends.len();
                canonical &= self.value(depth + 1)?;
                if let Some(child) = self.ends.get(first) {
                    deepest = deepest.max(child.depth);
                }
                self.blank();
                match self.b.get(self.pos) {
                    Some(b',') => {
                        self.pos += 1;
                        self.blank();
                    }
                    Some(&c) if c == close => break,
                    _ => return None,
                }
            }
        }
        self.names.truncate(mark);
        self.pos += 1;
        let end = self.at();
        self.ends[index] = End {
            start,
            end,
            depth: deepest.saturating_add(1),
            canonical,
        };
        Some(canonical)
    }

    /// A property name and the colon after it: plain (no escape), not repeated in its
    /// object, and the object not too large to check for repeats.
    fn name(&mut self, mark: usize, seen: &mut u64) -> Option<()> {
        if self.b.get(self.pos) != Some(&b'"') || self.names.len() - mark >= NAMES_CHECKED {
            return None;
        }
        let start = self.pos + 1;
        if !self.string(true)? {
            return None;
        }
        let end = self.pos - 1;
        let name = &self.b[start..end];
        let bit = name_bit(name);
        if *seen & bit != 0
            && self.names[mark..]
                .iter()
                .any(|&(s, e)| &self.b[s..e] == name)
        {
            return None;
        }
        *seen |= bit;
        self.names.push((start, end));
        self.blank();
        if self.b.get(self.pos) != Some(&b':') {
            return None;
        }
        self.pos += 1;
        self.blank();
        Some(())
    }

    #[inline(always)]
    /// A double-quoted string; canonical when it holds nothing Newtonsoft would print
    /// escaped. A name must hold no escape at all.
    fn string(&mut self, name: bool) -> Option<bool> {
        let b = self.b;
        let mut i = self.pos + 1;
        let mut canonical = true;
        loop {
            i = plain_run(b, i);
            match STRING_BYTES[usize::from(*b.get(i)?)] {
                QUOTE => break,
                ESCAPE if !name => {
                    let skip = match b.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                        b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                        _ => return None,
                    };
                    canonical = false;
                    i += skip;
                }
                SPECIAL => {
                    canonical = false;
                    i += 1;
                }
                // a non-ASCII byte the word-at-a-time run stopped at
                PLAIN => i += 1,
                _ => return None,
            }
        }
        self.pos = i + 1;
        Some(canonical)
    }

    #[inline(always)]
    fn number(&mut self) -> Option<bool> {
        let (end, canonical) = number_at(self.b, self.pos)?;
        self.pos = end;
        Some(canonical)
    }
}

/// One of 64 bits for a name, from its length and its first and last bytes.
#[inline(always)]
fn name_bit(name: &[u8]) -> u64 {
    let (first, last) = match name {
        [] => (0, 0),
        [only] => (*only, *only),
        [first, .., last] => (*first, *last),
    };
    let h = (name.len() as u32).wrapping_mul(0x9E37_79B1)
        ^ u32::from(first).wrapping_mul(0x85EB_CA6B)
        ^ u32::from(last).wrapping_mul(0xC2B2_AE35);
    1u64 << (h >> 26)
}

/// A number in JSON's grammar at `start`: where it ends, and whether its text is what
/// Newtonsoft prints: an integer without leading zeros (up to 18 digits, not -0), or a
/// decimal with 1 to 15 digits, no trailing zero and no exponent, at least 1E-04 (there
/// the shortest round-trip form is the text itself).
#[inline(always)]
pub fn number_at(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + usize::from(b.get(start) == Some(&b'-'));
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_len = i - int_start;
    if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut canonical = int_len <= 18 && !(start != int_start && &b[int_start..i] == b"0");
    if b.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        i = frac_start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac_len = i - frac_start;
        if frac_len == 0 {
            return None;
        }
        let small = b[int_start] == b'0' && b[frac_start..i].starts_with(b"000");
        canonical = b[i - 1] != b'0' && int_len + frac_len <= 15 && !small;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        canonical = false;
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    Some((i, canonical))
}
