//! Moving bytes between a socket and the connection's buffers: reads and writes that
//! track edge-triggered readiness, head and body refills, the interim 100 Continue.
//! Sans-IO where it can be: everything takes `impl Wire`, so tests drive it with a
//! scripted socket.
//! Must not touch: connection state, policies, the loop.

use super::*;

pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Advances an interim 100 Continue on `wire`. `None` = nothing (more) to write;
/// `Some` = the step to stop with (blocked until writable, or the client is gone).
pub(super) fn write_interim(
    interim: &mut Interim,
    wire: &mut impl Wire,
    writable: &mut bool,
) -> Option<Step> {
    let Interim::Pending(left) = *interim else {
        return None;
    };
    if !*writable {
        return Some(Step::Blocked);
    }
    match write_some(wire, &CONTINUE[CONTINUE.len() - left..], writable) {
        Io::Done(n) if n >= left => {
            *interim = Interim::Sent;
            None
        }
        Io::Done(n) => {
            *interim = Interim::Pending(left - n);
            Some(Step::Progress)
        }
        Io::Blocked => Some(Step::Blocked),
        Io::Eof | Io::Failed => Some(Step::Close),
    }
}

pub(super) enum Io {
    Done(usize),
    Eof,
    Blocked,
    Failed,
}

/// Whether the client hung up while its request is being answered. Peeks, so that
/// pipelined bytes stay in the socket for later (`pipelined` then says so).
pub(super) fn client_gone(sock: &mut Transport, readable: &mut bool, pipelined: &mut bool) -> bool {
    if !*readable || *pipelined {
        return false;
    }
    let mut probe = [0u8; 1];
    match sock.peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => {
            *pipelined = true;
            false
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            *readable = false;
            false
        }
        Err(e) => e.kind() != io::ErrorKind::Interrupted,
    }
}

/// Reads into `buf`; a short read clears the readiness flag (edge-triggered epoll
/// reports new data with a new event).
pub(super) fn read_some(sock: &mut impl Wire, buf: &mut Buf, ready: &mut bool) -> Io {
    let space = buf.space();
    let want = space.len();
    if want == 0 {
        return Io::Blocked;
    }
    loop {
        match sock.read(space) {
            Ok(0) => return Io::Eof,
            Ok(n) => {
                if n < want && sock.short_io_is_final() {
                    *ready = false;
                }
                buf.filled(n);
                return Io::Done(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                return Io::Blocked;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Io::Failed,
        }
    }
}

pub(super) fn write_some(sock: &mut impl Wire, data: &[u8], ready: &mut bool) -> Io {
    loop {
        match sock.write(data) {
            Ok(0) => return Io::Failed,
            Ok(n) => {
                if n < data.len() && sock.short_io_is_final() {
                    *ready = false;
                }
                return Io::Done(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                return Io::Blocked;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Io::Failed,
        }
    }
}

/// Writes `first` then `second` with one `writev`, so a head and the body bytes already
/// at hand leave in one segment.
pub(super) fn write_pair(
    sock: &mut impl Wire,
    first: &[u8],
    second: &[u8],
    ready: &mut bool,
) -> Io {
    if second.is_empty() {
        return write_some(sock, first, ready);
    }
    let total = first.len() + second.len();
    loop {
        match sock.write_vectored(&[io::IoSlice::new(first), io::IoSlice::new(second)]) {
            Ok(0) => return Io::Failed,
            Ok(n) => {
                if n < total && sock.short_io_is_final() {
                    *ready = false;
                }
                return Io::Done(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                return Io::Blocked;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Io::Failed,
        }
    }
}

/// Marks the next run of request body bytes at the front of `inbuf` as sendable,
/// validating chunked framing and the body limit on the way.
pub(super) fn refill_request(
    req: &mut ReqBody,
    inbuf: &Buf,
    sendable: &mut usize,
    body_max: u64,
) -> Result<(), Failure> {
    match req {
        ReqBody::Length(rem) => {
            let n = (*rem).min(inbuf.len() as u64);
            *rem -= n;
            *sendable = n as usize;
        }
        ReqBody::Chunked(dec) => {
            let step = dec
                .feed(inbuf.bytes())
                .map_err(|e| Failure::BadRequest(e.reason()))?;
            if body_max > 0 && dec.payload > body_max {
                return Err(Failure::BodyTooLarge);
            }
            *sendable = step.consumed;
        }
        ReqBody::Done => {}
    }
    Ok(())
}

/// Marks the next run of response bytes at the front of `rbuf` as sendable (for a
/// de-chunked body, framing bytes are dropped first). `Err` = the backend broke framing.
pub(super) fn refill_response(
    body: &mut RespBody,
    reusable: &mut bool,
    rbuf: &mut Buf,
    sendable: &mut usize,
) -> Result<(), ()> {
    match body {
        RespBody::Done => {
            // bytes after a complete response: the backend is confused
            *reusable = false;
        }
        RespBody::Length(rem) => {
            let n = (*rem).min(rbuf.len() as u64);
            *rem -= n;
            *sendable = n as usize;
        }
        RespBody::Chunked(dec) => *sendable = dec.feed(rbuf.bytes()).map_err(|_| ())?.consumed,
        RespBody::Dechunk(dec) => {
            let s = dec.feed(rbuf.bytes()).map_err(|_| ())?;
            rbuf.consume(s.data.0);
            *sendable = s.data.1 - s.data.0;
        }
        RespBody::UntilClose => *sendable = rbuf.len(),
    }
    Ok(())
}

/// Moves a full buffer to the next class up (head → data → large); false at the top.
pub(super) fn grow_full(pool: &mut Pool, buf: &mut Buf) -> bool {
    if buf.capacity() < pool.size_of(Class::Data) {
        pool.grow(buf, Class::Data)
    } else {
        pool.grow(buf, Class::Large)
    }
}

/// Writes a head with `write` into `out` (a `Class::Head` buffer), moving to a
/// `Class::Large` buffer when it does not fit. `Err` = too large even for that.
pub(super) fn write_head(
    pool: &mut Pool,
    out: &mut Buf,
    write: impl Fn(&mut SliceWriter) -> Result<(), forward::Full>,
) -> Result<(), forward::Full> {
    loop {
        let mut w = SliceWriter::new(out.whole_mut());
        match write(&mut w) {
            Ok(()) => {
                let len = w.len;
                out.filled(len);
                return Ok(());
            }
            Err(full) => {
                if !pool.grow(out, Class::Large) {
                    return Err(full);
                }
            }
        }
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Appends `bytes` after the head in `out` (a request body a policy set or read whole).
pub(super) fn append(pool: &mut Pool, out: &mut Buf, bytes: &[u8]) -> bool {
    let need = out.len() + bytes.len();
    if out.capacity() < need && !pool.grow_exact(out, need) {
        return false;
    }
    let space = out.space();
    if space.len() < bytes.len() {
        return false;
    }
    space[..bytes.len()].copy_from_slice(bytes);
    out.filled(bytes.len());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::memory;

    /// Before: the result of writing 100 Continue was ignored, so a short write or a
    /// full socket lost it (and the client waited for it forever).
    #[test]
    fn an_interim_continue_survives_short_writes_and_a_full_socket() {
        let (mut wire, peer) = memory::pair();
        peer.limit_writes(&[5, 0, 7, 100]);
        let mut interim = Interim::Pending(CONTINUE.len());
        let mut writable = true;
        // 5 bytes, then the socket is full until the next writable event
        assert_eq!(
            write_interim(&mut interim, &mut wire, &mut writable),
            Some(Step::Progress)
        );
        assert_eq!(interim, Interim::Pending(CONTINUE.len() - 5));
        assert!(!writable);
        assert_eq!(
            write_interim(&mut interim, &mut wire, &mut writable),
            Some(Step::Blocked)
        );
        writable = true;
        assert_eq!(
            write_interim(&mut interim, &mut wire, &mut writable),
            Some(Step::Blocked)
        );
        assert!(!writable);
        writable = true;
        assert_eq!(
            write_interim(&mut interim, &mut wire, &mut writable),
            Some(Step::Progress)
        );
        writable = true;
        assert_eq!(write_interim(&mut interim, &mut wire, &mut writable), None);
        assert_eq!(interim, Interim::Sent);
        assert_eq!(peer.take_written().as_bytes(), CONTINUE);
        // sent once: nothing more
        assert_eq!(write_interim(&mut interim, &mut wire, &mut writable), None);
        assert_eq!(peer.take_written(), "");
    }

    fn buf_with(bytes: &[u8]) -> (Pool, Buf) {
        let mut pool = Pool::new(32 * 1024, 1 << 20);
        let mut b = pool.get(Class::Head).unwrap();
        b.space()[..bytes.len()].copy_from_slice(bytes);
        b.filled(bytes.len());
        (pool, b)
    }

    #[test]
    fn reads_track_readiness_and_the_peer_closing() {
        let (mut wire, peer) = memory::pair();
        peer.send(b"abc");
        peer.pause();
        peer.close();
        let (_pool, mut buf) = buf_with(b"");
        let mut ready = true;
        assert!(matches!(
            read_some(&mut wire, &mut buf, &mut ready),
            Io::Done(3)
        ));
        assert!(!ready, "a short read drains edge-triggered readiness");
        ready = true;
        assert!(matches!(
            read_some(&mut wire, &mut buf, &mut ready),
            Io::Blocked
        ));
        assert!(!ready);
        ready = true;
        assert!(matches!(
            read_some(&mut wire, &mut buf, &mut ready),
            Io::Eof
        ));
        assert_eq!(buf.bytes(), b"abc");
    }

    #[test]
    fn a_head_and_body_pair_reports_partial_writes() {
        let (mut wire, peer) = memory::pair();
        peer.limit_writes(&[4, 0]);
        let mut ready = true;
        let io = write_pair(&mut wire, b"HEAD", b"body", &mut ready);
        assert!(matches!(io, Io::Done(4)));
        assert!(!ready, "the rest waits for the next writable event");
        assert_eq!(peer.take_written(), "HEAD");
        let mut ready = true;
        assert!(matches!(
            write_pair(&mut wire, b"", b"x", &mut ready),
            Io::Blocked
        ));
    }

    /// Request bodies: a length is counted exactly (the next pipelined request is never
    /// sent with this one), chunked framing is checked and the body limit holds.
    #[test]
    fn request_bodies_are_framed_exactly() {
        let (_pool, buf) = buf_with(b"12345GET / HTTP/1.1\r\n");
        let mut req = ReqBody::Length(5);
        let mut sendable = 0;
        refill_request(&mut req, &buf, &mut sendable, 0).unwrap();
        assert_eq!(sendable, 5);
        assert!(matches!(req, ReqBody::Length(0)));

        // refilled and sent step by step, as the exchange does
        let (_pool, mut buf) = buf_with(b"5\r\nhello\r\n0\r\n\r\nNEXT");
        let mut req = ReqBody::Chunked(ChunkedDecoder::new());
        let mut sent = Vec::new();
        for _ in 0..10 {
            refill_request(&mut req, &buf, &mut sendable, 0).unwrap();
            sent.extend_from_slice(&buf.bytes()[..sendable]);
            buf.consume(sendable);
            if matches!(&req, ReqBody::Chunked(d) if d.is_done()) {
                break;
            }
        }
        assert_eq!(sent, b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(buf.bytes(), b"NEXT", "the next request stays");
        let (_pool, buf) = buf_with(b"5\r\nhello\r\n0\r\n\r\n");
        let mut req = ReqBody::Chunked(ChunkedDecoder::new());
        assert_eq!(
            refill_request(&mut req, &buf, &mut sendable, 4),
            Err(Failure::BodyTooLarge)
        );
        let (_pool, bad) = buf_with(b"zz\r\nhello\r\n");
        let mut req = ReqBody::Chunked(ChunkedDecoder::new());
        assert!(matches!(
            refill_request(&mut req, &bad, &mut sendable, 0),
            Err(Failure::BadRequest(_))
        ));
    }

    /// Response bodies: chunks pass through as they are, or lose their framing for an
    /// HTTP/1.0 client; bytes after a complete response make the connection unusable.
    #[test]
    fn response_bodies_pass_through_or_are_dechunked() {
        let mut sendable = 0;
        let mut reusable = true;
        let drain = |body: &mut RespBody, wire: &[u8]| -> Vec<u8> {
            let (_pool, mut buf) = buf_with(wire);
            let (mut out, mut sendable, mut reusable) = (Vec::new(), 0, true);
            for _ in 0..10 {
                refill_response(body, &mut reusable, &mut buf, &mut sendable).unwrap();
                out.extend_from_slice(&buf.bytes()[..sendable]);
                buf.consume(sendable);
                if buf.is_empty() {
                    break;
                }
            }
            out
        };
        let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let mut body = RespBody::Dechunk(ChunkedDecoder::new());
        assert_eq!(drain(&mut body, chunked), b"hello world");
        let mut body = RespBody::Chunked(ChunkedDecoder::new());
        assert_eq!(
            drain(&mut body, chunked),
            chunked,
            "framing kept for HTTP/1.1"
        );
        let (_pool, mut buf) = buf_with(b"extra");
        let mut body = RespBody::Done;
        refill_response(&mut body, &mut reusable, &mut buf, &mut sendable).unwrap();
        assert!(
            !reusable,
            "a backend that says more than it framed is not reused"
        );

        let (_pool, mut buf) = buf_with(b"nonsense\r\n");
        let mut body = RespBody::Chunked(ChunkedDecoder::new());
        assert!(refill_response(&mut body, &mut reusable, &mut buf, &mut sendable).is_err());
    }
}
