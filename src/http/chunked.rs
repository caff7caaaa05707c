//! Incremental, strict chunked transfer-coding decoder. It is fed whatever bytes have
//! arrived and says how many it consumed, which of them are payload, and when the
//! message (last chunk + trailers) ends. The proxy forwards chunked bodies verbatim and
//! uses this only to find the end and count payload bytes; it decodes for HTTP/1.0
//! clients. Bare LF, whitespace around sizes, oversized sizes and overlong trailer
//! sections are errors: ambiguity is rejected, never guessed.
//!
//! ```text
//!  Size ──hex──▶ Size ──';'──▶ Ext ──CR──▶ SizeLf ──LF──▶ Data(n) ──n bytes──▶ DataCr ─CR─▶ DataLf ─LF─▶ Size
//!                                         (size 0) ─LF──▶ TrailerStart ──CR──▶ EndLf ──LF──▶ Done
//!                                                         TrailerStart ──byte──▶ Trailer ──CR──▶ TrailerLf ──LF──▶ TrailerStart
//! ```
//! Must not touch: sockets, buffers it does not own.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    SizeTooLarge,
    BadExtension,
    BadLineEnd,
    TrailerTooLarge,
}

impl ChunkError {
    pub fn reason(self) -> &'static str {
        match self {
            ChunkError::BadSize => "bad_chunk_size",
            ChunkError::SizeTooLarge => "chunk_size_too_large",
            ChunkError::BadExtension => "bad_chunk_extension",
            ChunkError::BadLineEnd => "bad_chunk_framing",
            ChunkError::TrailerTooLarge => "trailer_too_large",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { digits: u8 },
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Bytes allowed in chunk extensions and trailer lines (after the size / before CRLF).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    remaining: u64,
    side_bytes: usize,
    /// Payload bytes seen so far.
    pub payload: u64,
}

/// The result of one `feed`: `consumed` bytes of input were used; `data` is the payload
/// range inside them (possibly empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub data: (usize, usize),
    pub done: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            remaining: 0,
            side_bytes: 0,
            payload: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing bytes until it reaches payload, the end of `input` or the end
    /// of the message; then returns at most one run of payload.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    let v = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        b';' | b'\r' if digits > 0 => {
                            self.state = if b == b';' { State::Ext } else { State::SizeLf };
                            i += 1;
                            continue;
                        }
                        _ => return Err(ChunkError::BadSize),
                    };
                    if digits >= 15 {
                        return Err(ChunkError::SizeTooLarge);
                    }
                    self.size = self.size * 16 + u64::from(v);
                    self.state = State::Size { digits: digits + 1 };
                }
                State::Ext => {
                    self.side_bytes += 1;
                    if self.side_bytes > MAX_TRAILER_BYTES {
                        return Err(ChunkError::TrailerTooLarge);
                    }
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\t' | b' '..=b'~' => {}
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.remaining = self.size;
                        self.state = State::Data;
                    }
                    self.size = 0;
                }
                State::Data => {
                    let n = (input.len() - i)
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    self.remaining -= n as u64;
                    self.payload += n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Step {
                        consumed: i + n,
                        data: (i, i + n),
                        done: false,
                    });
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else if b == b'\n' {
                        return Err(ChunkError::BadLineEnd);
                    } else {
                        self.state = State::Trailer;
                        continue;
                    }
                }
                State::Trailer => {
                    self.side_bytes += 1;
                    if self.side_bytes > MAX_TRAILER_BYTES {
                        return Err(ChunkError::TrailerTooLarge);
                    }
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        _ => return Err(ChunkError::BadLineEnd),
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    self.state = State::Done;
                    return Ok(Step {
                        consumed: i + 1,
                        data: (i + 1, i + 1),
                        done: true,
                    });
                }
                State::Done => {
                    return Ok(Step {
                        consumed: i,
                        data: (i, i),
                        done: true,
                    })
                }
            }
            i += 1;
        }
        Ok(Step {
            consumed: i,
            data: (i, i),
            done: self.state == State::Done,
        })
    }
}

/// Decodes a whole chunked body held in memory (tests and fuzzing).
pub fn decode_all(mut input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut used = 0;
    loop {
        let step = d.feed(input)?;
        out.extend_from_slice(&input[step.data.0..step.data.1]);
        used += step.consumed;
        input = &input[step.consumed..];
        if step.done || (step.consumed == 0) || input.is_empty() {
            return Ok((out, used));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bytewise_and_whole() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, used) = decode_all(body).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&body[used..], b"NEXT");
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for (i, b) in body.iter().enumerate() {
            let s = d.feed(std::slice::from_ref(b)).unwrap();
            out.extend_from_slice(&std::slice::from_ref(b)[s.data.0..s.data.1]);
            if s.done {
                assert_eq!(i + 1, used);
                break;
            }
        }
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(d.payload, 23);
    }

    #[test]
    fn rejects_bad_framing() {
        let cases: &[(&[u8], ChunkError)] = &[
            (b"x\r\n", ChunkError::BadSize),
            (b" 4\r\n", ChunkError::BadSize),
            (b"4 \r\n", ChunkError::BadSize),
            (b"\r\n", ChunkError::BadSize),
            (b"4\nWiki", ChunkError::BadSize),
            (b"4\r\nWikiX\r\n", ChunkError::BadLineEnd),
            (b"4\r\nWiki\n", ChunkError::BadLineEnd),
            (b"1000000000000000\r\n", ChunkError::SizeTooLarge),
            (b"0\r\n\n", ChunkError::BadLineEnd),
            (b"1;a\x01\r\n", ChunkError::BadExtension),
            (b"-1\r\n", ChunkError::BadSize),
            (b"0x1\r\n", ChunkError::BadSize),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_all(input).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
