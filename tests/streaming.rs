//! Large bodies stream through with back-pressure: 1 GiB up and 1 GiB down (Content-Length
//! and chunked) while the gateway's resident memory stays flat.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use crate::common::*;

const GIB: u64 = 1 << 30;
const BLOCK: usize = 256 * 1024;

/// An origin that sinks uploads (counting bytes, checking the pattern) and generates
/// downloads of the size asked for in the path, without holding them in memory.
fn streaming_origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { break };
            thread::spawn(move || serve(s));
        }
    });
    addr
}

fn pattern(offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = ((offset + i as u64) % 251) as u8;
    }
}

fn serve(s: std::net::TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut r = BufReader::with_capacity(BLOCK, s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut length = 0u64;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if lower.starts_with("transfer-encoding: chunked") {
                chunked = true;
            }
        }
        if target.starts_with("/up") {
            let mut got = 0u64;
            let mut buf = vec![0u8; BLOCK];
            let mut want = vec![0u8; BLOCK];
            let mut ok = true;
            while got < length {
                let n = r
                    .read(&mut buf[..BLOCK.min((length - got) as usize)])
                    .unwrap();
                assert!(n > 0);
                pattern(got, &mut want[..n]);
                ok &= buf[..n] == want[..n];
                got += n as u64;
            }
            let body = format!("{got} {ok}");
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        } else {
            let size: u64 = target.rsplit('/').next().unwrap().parse().unwrap();
            let mut buf = vec![0u8; BLOCK];
            if chunked || target.starts_with("/chunked") {
                write!(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
            } else {
                write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").unwrap();
            }
            let mut sent = 0u64;
            while sent < size {
                let n = BLOCK.min((size - sent) as usize);
                pattern(sent, &mut buf[..n]);
                if target.starts_with("/chunked") {
                    write!(w, "{n:x}\r\n").unwrap();
                    w.write_all(&buf[..n]).unwrap();
                    w.write_all(b"\r\n").unwrap();
                } else {
                    w.write_all(&buf[..n]).unwrap();
                }
                sent += n as u64;
            }
            if target.starts_with("/chunked") {
                w.write_all(b"0\r\n\r\n").unwrap();
            }
        }
    }
}

/// Reads `size` body bytes, checking the pattern, sampling the gateway's RSS as it goes.
fn read_body(r: &mut impl Read, size: u64, gw: &Gateway, max_rss: &mut u64) -> bool {
    let mut buf = vec![0u8; BLOCK];
    let mut want = vec![0u8; BLOCK];
    let mut got = 0u64;
    let mut ok = true;
    let mut next_sample = 0u64;
    while got < size {
        let n = r
            .read(&mut buf[..BLOCK.min((size - got) as usize)])
            .unwrap();
        assert!(n > 0, "body ended early at {got}");
        pattern(got, &mut want[..n]);
        ok &= buf[..n] == want[..n];
        got += n as u64;
        if got >= next_sample {
            *max_rss = (*max_rss).max(gw.rss_kib());
            next_sample += 64 << 20;
        }
    }
    ok
}

#[test]
fn one_gib_each_way_with_flat_memory() {
    let origin = streaming_origin();
    let gw = Gateway::start(
        &simple_config("1", "", &format!("http://{origin}")),
        &["telemetry.logs.std=text"],
    );
    // warm up: one small exchange so buffers and pools exist
    assert_eq!(get(gw.addr, "/down/10").status, 200);
    let baseline = gw.rss_kib();
    let mut max_rss = baseline;

    // download, Content-Length
    let s = gw.connect();
    (&s).write_all(format!("GET /down/{GIB} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
        .unwrap();
    let mut r = BufReader::with_capacity(BLOCK, s.try_clone().unwrap());
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        r.read_line(&mut head).unwrap();
    }
    assert!(head.contains(&format!("Content-Length: {GIB}")), "{head}");
    assert!(
        read_body(&mut r, GIB, &gw, &mut max_rss),
        "download bytes intact"
    );

    // download, chunked (passed through as is)
    (&s).write_all(b"GET /chunked/268435456 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let resp_head = {
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            r.read_line(&mut head).unwrap();
        }
        head
    };
    assert!(resp_head.contains("Transfer-Encoding: chunked"));
    let mut total = 0u64;
    loop {
        let mut size = String::new();
        r.read_line(&mut size).unwrap();
        let n = u64::from_str_radix(size.trim(), 16).unwrap();
        let mut chunk = vec![0u8; n as usize + 2];
        r.read_exact(&mut chunk).unwrap();
        total += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(total, 268_435_456);
    max_rss = max_rss.max(gw.rss_kib());

    // upload, Content-Length
    let up = gw.connect();
    (&up)
        .write_all(
            format!("PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: {GIB}\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let writer = {
        let up = up.try_clone().unwrap();
        thread::spawn(move || {
            let mut buf = vec![0u8; BLOCK];
            let mut sent = 0u64;
            while sent < GIB {
                let n = BLOCK.min((GIB - sent) as usize);
                pattern(sent, &mut buf[..n]);
                (&up).write_all(&buf[..n]).unwrap();
                sent += n as u64;
            }
        })
    };
    while !writer.is_finished() {
        max_rss = max_rss.max(gw.rss_kib());
        thread::sleep(Duration::from_millis(100));
    }
    writer.join().unwrap();
    let mut r = BufReader::new(up.try_clone().unwrap());
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.text(), format!("{GIB} true"));

    let growth = max_rss.saturating_sub(baseline);
    eprintln!("gateway RSS baseline {baseline} KiB, peak {max_rss} KiB, growth {growth} KiB");
    assert!(
        growth < 8 * 1024,
        "RSS grew by {growth} KiB while streaming 2.25 GiB"
    );
}
