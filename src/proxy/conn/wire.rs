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
