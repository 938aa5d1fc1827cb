//! `blink bench --peer linux-lo`: the same workloads on the Linux kernel's sockets over
//! 127.0.0.1, client and server on two threads (std::net), every byte checked by the same
//! functions as blink's (bench.rs).
//!
//! - bulk: SO_SNDBUF/SO_RCVBUF set to `--buf` (the kernel doubles it for its bookkeeping and
//!   turns autotuning off for the socket).
//! - rr, crr: TCP_NODELAY. crr's client closes first; a connection counts once the client
//!   has read the server's FIN, which the server sends only after reading the client's.
//! - udp: the sender does not wait for the receiver; datagrams the receiving socket drops
//!   are counted as lost, not an error (order and content are still checked).
//! - frag: not run: lo's MTU is 65536, so nothing is fragmented.
//!
//! Frames per unit are lo's tx_packets over the run: the whole host's traffic on lo, so
//! another process using 127.0.0.1 at the same time adds to it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::bench::{
    check_dgram, check_msg, fill_dgram, fill_msg, BenchResult, Limit, Meter, Outcome, Pattern, Stage, MSG, REQ, RESP,
};

pub(crate) fn run(w: &str, lim: Limit) -> Result<Outcome, String> {
    let r = match w {
        "bulk" => bulk(lim),
        "rr" => rr(lim),
        "crr" => crr(lim),
        "udp" => udp(lim),
        "frag" => return Ok(Outcome::NotApplicable("lo does not fragment")),
        _ => return Ok(Outcome::NotApplicable("blink only")),
    };
    r.map(Outcome::Done)
}

/// lo's tx_packets (None where /sys is not readable).
fn lo_frames() -> Option<u64> {
    std::fs::read_to_string("/sys/class/net/lo/statistics/tx_packets")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn frames_since(f0: Option<u64>) -> Option<u64> {
    Some(lo_frames()?.saturating_sub(f0?))
}

fn e(err: std::io::Error) -> String {
    err.to_string()
}

fn set_buf(s: &TcpStream, bytes: u32) -> Result<(), String> {
    let v = bytes as libc::c_int;
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: a valid socket and a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!("setsockopt: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// A listener on 127.0.0.1 with a kernel-chosen port.
fn listen() -> Result<(TcpListener, std::net::SocketAddr), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(e)?;
    let addr = l.local_addr().map_err(e)?;
    Ok((l, addr))
}

fn join<T>(h: thread::JoinHandle<Result<T, String>>) -> Result<T, String> {
    h.join().map_err(|_| "server thread panicked".to_string())?
}

fn bulk(lim: Limit) -> Result<BenchResult, String> {
    let (l, addr) = listen()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let buf = lim.buf;
    // The sender runs on its own thread; the receiver (this thread) checks every byte.
    let sender = thread::spawn(move || -> Result<u64, String> {
        let c = TcpStream::connect(addr).map_err(e)?;
        set_buf(&c, buf)?;
        let mut c = c;
        let pat = Pattern::new();
        let mut stage = Stage::new();
        let mut sent = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            sent += c.write(stage.at(&pat, sent)).map_err(e)? as u64;
        }
        c.shutdown(Shutdown::Write).map_err(e)?;
        Ok(sent)
    });
    let (mut s, _) = l.accept().map_err(e)?;
    set_buf(&s, buf)?;
    let pat = Pattern::new();
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut rcvd = 0u64;
    let f0 = lo_frames();
    let m = Meter::start();
    loop {
        if !lim.more(m.t0, rcvd >> 20) {
            stop.store(true, Ordering::Relaxed);
        }
        let n = match s.read(&mut rbuf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err.to_string()),
        };
        pat.check(rcvd, &rbuf[..n])
            .map_err(|at| format!("data mismatch at byte {at}"))?;
        rcvd += n as u64;
    }
    let (el, cpu) = m.stop();
    let frames = frames_since(f0);
    let sent = join(sender)?;
    if sent != rcvd {
        return Err(format!("{sent} bytes sent, {rcvd} received"));
    }
    Ok(BenchResult {
        workload: "bulk",
        value: rcvd as f64 * 8.0 / el / 1e9,
        unit: "Gbit/s",
        note: format!(
            "{} MiB verified in {el:.2} s, SO_SNDBUF/SO_RCVBUF {} KiB",
            rcvd >> 20,
            buf >> 10
        ),
        work: rcvd as f64 / (1u64 << 20) as f64,
        per: "MiB",
        frames,
        cpu_s: cpu,
    })
}

/// Read one message into `buf` (cleared first): Ok(false) at a clean end of stream.
fn read_msg(s: &mut TcpStream, buf: &mut [u8; MSG]) -> Result<bool, String> {
    *buf = [0; MSG];
    let mut got = 0;
    while got < MSG {
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(format!("end of stream after {got} bytes of a message")),
            Ok(n) => got += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err.to_string()),
        }
    }
    Ok(true)
}

/// Serve transactions on `s` from number `n`: check each request whole, answer the response
/// of the same number; returns at the end of stream with the next number.
fn serve(s: &mut TcpStream, mut n: u64, once: bool) -> Result<u64, String> {
    let mut buf = [0u8; MSG];
    let mut resp = [0u8; MSG];
    while read_msg(s, &mut buf)? {
        check_msg(n, REQ, &buf)?;
        fill_msg(n, RESP, &mut resp);
        s.write_all(&resp).map_err(e)?;
        n += 1;
        if once {
            break;
        }
    }
    Ok(n)
}

/// Client side of transaction `n`.
fn transact(c: &mut TcpStream, n: u64) -> Result<(), String> {
    let mut msg = [0u8; MSG];
    fill_msg(n, REQ, &mut msg);
    c.write_all(&msg).map_err(e)?;
    if !read_msg(c, &mut msg)? {
        return Err(format!("end of stream instead of response {n}"));
    }
    check_msg(n, RESP, &msg)
}

fn rr(lim: Limit) -> Result<BenchResult, String> {
    let (l, addr) = listen()?;
    let server = thread::spawn(move || -> Result<u64, String> {
        let (mut s, _) = l.accept().map_err(e)?;
        s.set_nodelay(true).map_err(e)?;
        serve(&mut s, 0, false)
    });
    let mut c = TcpStream::connect(addr).map_err(e)?;
    c.set_nodelay(true).map_err(e)?;
    let mut n = 0u64;
    let f0 = lo_frames();
    let m = Meter::start();
    while lim.more(m.t0, n) {
        for _ in 0..64 {
            transact(&mut c, n)?;
            n += 1;
        }
    }
    let (el, cpu) = m.stop();
    let frames = frames_since(f0);
    drop(c);
    let served = join(server)?;
    if served != n {
        return Err(format!("{n} transactions made, {served} served"));
    }
    Ok(BenchResult {
        workload: "rr",
        value: n as f64 / el,
        unit: "trans/s",
        note: format!("{n} transactions of 64 B each way, each checked whole; TCP_NODELAY"),
        work: n as f64,
        per: "trans",
        frames,
        cpu_s: cpu,
    })
}

fn crr(lim: Limit) -> Result<BenchResult, String> {
    let (l, addr) = listen()?;
    let server = thread::spawn(move || -> Result<u64, String> {
        let mut n = 0u64;
        loop {
            let (mut s, _) = l.accept().map_err(e)?;
            s.set_nodelay(true).map_err(e)?;
            let next = serve(&mut s, n, true)?;
            if next == n {
                // A connection that closed without a request: the client is done.
                return Ok(n);
            }
            n = next;
            // The client's FIN next, then ours.
            let mut b = [0u8; 16];
            match s.read(&mut b) {
                Ok(0) => {}
                Ok(k) => return Err(format!("{k} bytes after the request of connection {n}")),
                Err(err) => return Err(err.to_string()),
            }
            s.shutdown(Shutdown::Write).map_err(e)?;
        }
    });
    let mut n = 0u64;
    let f0 = lo_frames();
    let m = Meter::start();
    while lim.more(m.t0, n) {
        let mut c = TcpStream::connect(addr).map_err(e)?;
        c.set_nodelay(true).map_err(e)?;
        transact(&mut c, n)?;
        c.shutdown(Shutdown::Write).map_err(e)?;
        let mut b = [0u8; 16];
        match c.read(&mut b) {
            Ok(0) => {}
            Ok(k) => return Err(format!("{k} bytes after response {n}")),
            Err(err) => return Err(err.to_string()),
        }
        n += 1;
    }
    let (el, cpu) = m.stop();
    let frames = frames_since(f0);
    drop(TcpStream::connect(addr).map_err(e)?);
    let served = join(server)?;
    if served != n {
        return Err(format!("{n} connections made, {served} served"));
    }
    Ok(BenchResult {
        workload: "crr",
        value: n as f64 / el,
        unit: "conn/s",
        note: format!("{n} connections, 64 B each way checked whole, each closed at both ends; TCP_NODELAY"),
        work: n as f64,
        per: "conn",
        frames,
        cpu_s: cpu,
    })
}

fn udp(lim: Limit) -> Result<BenchResult, String> {
    const LEN: usize = 64;
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(e)?;
    rx.set_read_timeout(Some(Duration::from_millis(50))).map_err(e)?;
    let dst = rx.local_addr().map_err(e)?;
    let sent = Arc::new(AtomicU64::new(0));
    let rcvd = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent2, rcvd2, stop2) = (sent.clone(), rcvd.clone(), stop.clone());
    let receiver = thread::spawn(move || -> Result<(u64, u64), String> {
        let pat = Pattern::new();
        let mut buf = [0u8; LEN + 1];
        let (mut got, mut lost) = (0u64, 0u64);
        loop {
            buf.fill(0);
            match rx.recv(&mut buf) {
                Ok(n) => {
                    let hi = sent2.load(Ordering::Acquire);
                    let seq = check_dgram(&pat, &buf[..n], LEN, got + lost, hi)?;
                    lost += seq - (got + lost);
                    got += 1;
                    rcvd2.store(got, Ordering::Relaxed);
                }
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stop2.load(Ordering::Acquire) {
                        return Ok((got, lost));
                    }
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err.to_string()),
            }
        }
    });
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(e)?;
    tx.connect(dst).map_err(e)?;
    let pat = Pattern::new();
    let mut out = [0u8; LEN];
    let mut seq = 0u64;
    let f0 = lo_frames();
    let m = Meter::start();
    while lim.more(m.t0, rcvd.load(Ordering::Relaxed) / 1000) {
        for _ in 0..32 {
            fill_dgram(&pat, seq, &mut out);
            // Counted as sent before it is: the receiver may see it before send returns.
            sent.store(seq + 1, Ordering::Release);
            match tx.send(&out) {
                Ok(_) => {}
                // Loopback reports a full receiver as ECONNREFUSED/ENOBUFS at times: lost.
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(err) => return Err(err.to_string()),
            }
            seq += 1;
        }
    }
    let (el, _) = m.stop();
    stop.store(true, Ordering::Release);
    let (got, lost) = join(receiver)?;
    // The receiver's CPU time up to its last datagram counts: measure after it finished (it
    // waits at most one read timeout, idle).
    let cpu = crate::bench::cpu_secs() - m.cpu0();
    let frames = frames_since(f0);
    let lost = lost + (seq - got - lost);
    Ok(BenchResult {
        workload: "udp",
        value: got as f64 / el,
        unit: "pkt/s",
        note: format!(
            "{got} datagrams of 64 B verified, {lost} of {seq} lost (the sender does not wait for the receiver)"
        ),
        work: got as f64,
        per: "dgram",
        frames,
        cpu_s: cpu,
    })
}
