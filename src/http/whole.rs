//! A response read whole into memory, for the gateway's own requests (a policy's
//! send-request on the loop, the agent's OpenID key fetches): bytes are fed as they
//! arrive, 1xx interim responses are skipped, the body is framed as RFC 9112 says
//! (length, chunked, until close) and bounded; the head is at most `HEAD_MAX` bytes.
//! Must not touch: sockets (callers read and feed), what the response means.

use super::chunked::ChunkedDecoder;
use super::response::{self, ResponseBody, MAX_RESPONSE_HEADERS};

/// Most bytes of a response head.
pub const HEAD_MAX: usize = 64 * 1024;

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whole {
    pub status: u16,
    pub reason: String,
    /// Header names as received, each with its values joined by ", ".
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The connection may carry another request (framed, nothing after the body).
    pub reusable: bool,
}

impl Whole {
    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why the bytes are not a response the reader can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WholeError {
    /// Not HTTP it can frame, with why.
    Bad(&'static str),
    /// The body is larger than the bound.
    TooLarge(u64),
}

/// The response head, once read.
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    head_len: usize,
    body: ResponseBody,
    reusable: bool,
}

/// Reads one response fed in pieces.
pub struct Reader {
    buf: Vec<u8>,
    head: Option<Head>,
    /// A chunked body: its decoder, the bytes of the body fed to it, the payload.
    chunked: Option<(ChunkedDecoder, usize, Vec<u8>)>,
    is_head: bool,
    max_body: u64,
}

impl Reader {
    /// A reader for the response to a request with `method`, its body at most
    /// `max_body` bytes.
    pub fn new(is_head: bool, max_body: u64) -> Reader {
        Reader {
            buf: Vec::new(),
            head: None,
            chunked: None,
            is_head,
            max_body,
        }
    }

    /// Whether nothing has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.head.is_none()
    }

    /// Takes `bytes` (`eof`: the peer closed after them): the response once whole.
    pub fn feed(&mut self, bytes: &[u8], eof: bool) -> Result<Option<Whole>, WholeError> {
        self.buf.extend_from_slice(bytes);
        if self.head.is_none() && !self.read_head()? {
            return Ok(None);
        }
        let Some(h) = self.head.as_ref() else {
            return Ok(None);
        };
        let body_bytes = &self.buf[h.head_len..];
        let max = self.max_body;
        let body = match h.body {
            ResponseBody::None => Some((Vec::new(), body_bytes.is_empty())),
            ResponseBody::Length(n) => {
                if n > max {
                    return Err(WholeError::TooLarge(max));
                }
                (body_bytes.len() as u64 >= n).then(|| {
                    let n = n as usize;
                    (body_bytes[..n].to_vec(), body_bytes.len() == n)
                })
            }
            ResponseBody::UntilClose => {
                if body_bytes.len() as u64 > max {
                    return Err(WholeError::TooLarge(max));
                }
                eof.then(|| (body_bytes.to_vec(), false))
            }
            ResponseBody::Chunked => {
                let (decoder, fed, payload) = self
                    .chunked
                    .get_or_insert_with(|| (ChunkedDecoder::new(), 0, Vec::new()));
                let mut done = decoder.is_done();
                while !done && *fed < body_bytes.len() {
                    let input = &body_bytes[*fed..];
                    let step = decoder
                        .feed(input)
                        .map_err(|e| WholeError::Bad(e.reason()))?;
                    payload.extend_from_slice(&input[step.data.0..step.data.1]);
                    *fed += step.consumed;
                    done = step.done;
                    if payload.len() as u64 > max {
                        return Err(WholeError::TooLarge(max));
                    }
                    if step.consumed == 0 {
                        break;
                    }
                }
                done.then(|| (std::mem::take(payload), *fed == body_bytes.len()))
            }
        };
        let Some((body, exact)) = body else {
            return Ok(None);
        };
        let Some(h) = self.head.take() else {
            return Ok(None);
        };
        Ok(Some(Whole {
            status: h.status,
            reason: h.reason,
            headers: h.headers,
            body,
            reusable: h.reusable && exact && !eof,
        }))
    }

    /// Parses the head once it is whole (skipping interim responses). False: not yet.
    fn read_head(&mut self) -> Result<bool, WholeError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let parsed = match response::parse(&self.buf, &mut headers, self.is_head, HEAD_MAX) {
                Ok(Some(h)) => h,
                Ok(None) if self.buf.len() >= HEAD_MAX => {
                    return Err(WholeError::Bad("the response head is too large"))
                }
                Ok(None) => return Ok(false),
                Err(_) => return Err(WholeError::Bad("malformed response head")),
            };
            if (100..200).contains(&parsed.status) {
                // an interim response: the final one follows
                let n = parsed.head_len;
                self.buf.drain(..n);
                continue;
            }
            let mut joined: Vec<(String, String)> = Vec::new();
            for h in parsed.headers {
                let value = String::from_utf8_lossy(h.value);
                match joined
                    .iter_mut()
                    .find(|(n, _)| n.eq_ignore_ascii_case(h.name))
                {
                    Some((_, v)) => {
                        v.push_str(", ");
                        v.push_str(&value);
                    }
                    None => joined.push((h.name.to_string(), value.into_owned())),
                }
            }
            self.head = Some(Head {
                status: parsed.status,
                reason: parsed.reason.to_string(),
                headers: joined,
                head_len: parsed.head_len,
                body: parsed.body,
                reusable: parsed.reusable,
            });
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    /// Feeds `wire` in pieces of `step` bytes; the outcome once complete.
    fn feed(wire: &[u8], step: usize, eof_at_end: bool) -> Result<Option<Whole>, WholeError> {
        let mut reader = Reader::new(false, MAX);
        for piece in wire.chunks(step) {
            let got = reader.feed(piece, false);
            if !matches!(got, Ok(None)) {
                return got;
            }
        }
        reader.feed(&[], eof_at_end)
    }

    #[test]
    fn responses_are_read_as_framed() {
        for step in [1, 7, 4096] {
            let m = feed(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 5\r\n\r\nhello",
                step,
                false,
            )
            .unwrap()
            .unwrap();
            let reusable = m.reusable;
            assert_eq!(
                (m.status, m.reason.as_str(), &m.body[..]),
                (201, "Created", &b"hello"[..])
            );
            assert_eq!(
                m.headers,
                vec![
                    ("X-A".to_string(), "1, 2".to_string()),
                    ("Content-Length".to_string(), "5".to_string())
                ]
            );
            assert!(reusable);
            let m = feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
                step,
                false,
            )
            .unwrap()
            .unwrap();
            let reusable = m.reusable;
            assert_eq!(m.body, b"Wikipedia");
            assert!(reusable);
            let m = feed(b"HTTP/1.0 200 OK\r\n\r\nuntil close", step, true)
                .unwrap()
                .unwrap();
            assert_eq!(m.body, b"until close");
            assert!(!m.reusable);
        }
        // cut short, too large, not HTTP
        assert!(matches!(
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf", 3, true),
            Ok(None)
        ));
        let big = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX + 1);
        assert_eq!(
            feed(big.as_bytes(), 4096, false).err(),
            Some(WholeError::TooLarge(MAX))
        );
        assert!(matches!(
            feed(b"SMTP ready\r\n\r\n", 4096, false),
            Err(WholeError::Bad(_))
        ));
        assert!(matches!(
            feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                4096,
                false
            ),
            Err(WholeError::Bad(_))
        ));
    }
}
