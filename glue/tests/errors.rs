//! glue's error paths, over the in-memory wire with a virtual clock: a refused connect, a
//! connect into a black hole that times out, a reset in the middle of a transfer, and an
//! exhausted mempool. Each failure must reach the application the way app_glue reports it
//! (the closed callback or list with its reason, the error of the next call on the socket),
//! the handle must go stale once the closed event is taken, and nothing may leak.

mod common;

use blink_glue::netcore::snmp::{TcpExtMib, TcpMib};
use blink_glue::netcore::EthAddr;
use blink_glue::{CloseReason, Closed, Glue, GlueError, GlueHandler, Socket};
use common::*;
use std::net::Ipv4Addr;

/// What the client side was told, in order.
#[derive(Default)]
struct Events {
    connected: Vec<Socket>,
    writable: u32,
    closed: Vec<Closed<u32>>,
}

impl GlueHandler<u32> for Events {
    fn on_connected(&mut self, _glue: &mut Glue<u32>, s: Socket) {
        self.connected.push(s);
    }
    fn on_writable(&mut self, _glue: &mut Glue<u32>, _s: Socket) {
        self.writable += 1;
    }
    fn on_closed(&mut self, _glue: &mut Glue<u32>, c: Closed<u32>) {
        self.closed.push(c);
    }
}

/// Pull mode: between the RST and the moment the application takes the closed event, every
/// call on the socket returns the connection's error (Linux: sk_err, ECONNREFUSED); taking the
/// event releases the socket and hands back its user data.
#[test]
fn refused_connect_seen_by_the_next_call_and_the_closed_list() {
    let mut p = pair::<u32>(cfg(), cfg());
    let c = p.a.tcp_connect(B_IP, 9, Some(41)).unwrap();
    assert!(
        (0..2_000).any(|_| {
            p.step();
            p.a.tcp_state(c) == Ok(blink_glue::tcp::TcpState::Closed)
        }),
        "the RST closed the connection"
    );
    let refused = Err(GlueError::Connection(CloseReason::Refused));
    assert_eq!(p.a.send(c, b"x"), refused.clone());
    assert_eq!(p.a.recv(c, &mut [0u8; 8]), refused.clone());
    assert_eq!(p.a.calc_size_of_data_to_send(c), refused);
    assert_eq!(p.a.next_connected(), None, "a refused connect never connected");
    let closed = p.a.next_closed().expect("the closed list has it");
    assert_eq!(
        (closed.sock, closed.reason, closed.data),
        (c, CloseReason::Refused, Some(41))
    );
    assert_eq!(p.a.next_closed().map(|c| c.sock), None, "reported once");
    assert_eq!(p.a.send(c, b"x"), Err(GlueError::BadHandle));
    let m = &p.a.stack().core.mib;
    assert_eq!((m.tcp[TcpMib::ActiveOpens], m.tcp[TcpMib::AttemptFails]), (1, 1));
    assert_eq!(p.b.stack().core.mib.tcp[TcpMib::OutRsts], 1);
    p.drain_and_check();
}

/// A SYN into a black hole (a neighbour whose MAC nobody has: the frames leave and vanish) is
/// retransmitted with exponential backoff, TCP_SYN_RETRIES times, then the connect fails with
/// TimedOut (Linux: ETIMEDOUT after 1+2+4+...+64 = 127 s with the 1 s initial RTO). The
/// virtual clock runs the two minutes without waiting.
#[test]
fn connect_into_a_black_hole_times_out() {
    let mut p = pair::<u32>(cfg(), cfg());
    let hole = Ipv4Addr::new(10, 0, 0, 9);
    blink_glue::ipv4::neighbour::neigh_add_static(p.a.stack_mut(), hole, EthAddr([2, 0, 0, 0, 0, 9]), 0);
    let t0 = p.vc.now_ns();
    let c = p.a.tcp_connect(hole, 80, Some(7)).unwrap();
    let mut ev = Events::default();
    // Bounded: 200 s of idle 1 ms steps, well past the 127 s the retries take.
    for _ in 0..200_000 {
        p.step_a_with(&mut ev);
        if !ev.closed.is_empty() {
            break;
        }
    }
    let secs = (p.vc.now_ns() - t0) / 1_000_000_000;
    assert!(ev.connected.is_empty());
    assert_eq!(ev.closed.len(), 1, "closed once, after {secs} s");
    let closed = ev.closed.pop().unwrap();
    assert_eq!(
        (closed.sock, closed.reason, closed.data),
        (c, CloseReason::TimedOut, Some(7))
    );
    assert!((127..=130).contains(&secs), "gave up after {secs} s, not 127");
    let m = &p.a.stack().core.mib;
    assert_eq!(m.tcp[TcpMib::RetransSegs], blink_glue::tcp::TCP_SYN_RETRIES as u64);
    assert_eq!(m.tcp[TcpMib::AttemptFails], 1);
    assert_eq!(m.tcp[TcpMib::OutSegs], 1 + blink_glue::tcp::TCP_SYN_RETRIES as u64);
    assert_eq!(p.a.tcp_state(c), Err(GlueError::BadHandle));
    // Every SYN reached B's device and was dropped there as not its MAC, counted.
    assert_eq!(p.b.stack().core.mib.tcp[TcpMib::InSegs], 0);
    assert!(p.b.stack().core.mib.drops.total() >= 1 + blink_glue::tcp::TCP_SYN_RETRIES as u64);
    p.drain_and_check();
}

/// The server reads part of a long stream and closes with data unread: an RST while the
/// client still has megabytes queued. The client hears of it once, through on_closed with
/// Reset, its queued data is freed, and the bytes the server did read are the right ones.
#[test]
fn reset_in_the_middle_of_a_transfer() {
    let mut p = pair::<u32>(cfg(), cfg());
    let l = p.b.tcp_listen(80, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, 80, Some(3)).unwrap();
    let total: u64 = 8 << 20;
    let stop_at: u64 = 300 << 10;
    let (mut sent, mut read) = (0u64, 0u64);
    let mut srv = None;
    let mut ev = Events::default();
    let mut chunk = vec![0u8; 64 << 10];
    let mut buf = vec![0u8; 16 << 10];
    for _ in 0..200_000 {
        if ev.connected.contains(&c) && ev.closed.is_empty() && sent < total {
            let n = (total - sent).min(chunk.len() as u64) as usize;
            fill(sent, &mut chunk[..n]);
            match p.a.send(c, &chunk[..n]) {
                Ok(k) => sent += k as u64,
                Err(e) => panic!("send before the reset: {e}"),
            }
        }
        p.step_a_with(&mut ev);
        if srv.is_none() {
            srv = p.b.accept(l).unwrap();
        }
        if let Some(s) = srv {
            while read < stop_at {
                match p.b.recv(s, &mut buf) {
                    Ok(n) if n > 0 => {
                        for (i, &b) in buf[..n].iter().enumerate() {
                            assert_eq!(b, pattern_byte(read + i as u64), "byte {}", read + i as u64);
                        }
                        read += n as u64;
                    }
                    Err(GlueError::WouldBlock) => break,
                    r => panic!("server recv: {r:?}"),
                }
            }
            if read >= stop_at {
                // Unread data in the receive queue: close sends an RST (RFC 2525, Linux's
                // tcp_close with data pending).
                assert!(p.b.recv_queued(s).unwrap() > 0, "data left unread");
                p.b.close(s).unwrap();
                srv = None;
                break;
            }
        }
    }
    assert!(read >= stop_at, "the server read {read} bytes");
    assert!(sent > read + (64 << 10), "the client had data in flight or queued");
    for _ in 0..10_000 {
        if !ev.closed.is_empty() {
            break;
        }
        p.step_a_with(&mut ev);
    }
    assert!(srv.is_none());
    assert_eq!(ev.closed.len(), 1);
    let closed = ev.closed.pop().unwrap();
    assert_eq!(
        (closed.sock, closed.reason, closed.data),
        (c, CloseReason::Reset, Some(3))
    );
    assert_eq!(p.a.send(c, b"x"), Err(GlueError::BadHandle));
    assert_eq!(p.a.stack().core.mib.tcp[TcpMib::EstabResets], 1);
    // Linux counts a close that discards unread data as TCPAbortOnClose, and the side that
    // sent the RST leaves ESTABLISHED for CLOSE as well.
    let b = &p.b.stack().core.mib;
    assert_eq!(b.tcp_ext[TcpExtMib::TCPAbortOnClose], 1);
    assert_eq!(b.tcp[TcpMib::EstabResets], 1);
    // The client's segments still in flight find only the listener: each is reset, and none
    // counts as a failed SYN cookie, since the listener never sent one (Linux checks for a
    // cookie only after a recent SYN queue overflow).
    assert!(b.tcp[TcpMib::OutRsts] > 1);
    assert_eq!(b.tcp_ext[TcpExtMib::SyncookiesFailed], 0);
    p.b.close(l).unwrap();
    p.drain_and_check();
}

/// get_buffer on an exhausted pool returns None (nothing is taken, nothing panics); a copying
/// send then takes what fits in the buffers it already has and reports the rest as a short
/// write; while the pool stays empty the stacks keep running (timers fire, frames that cannot
/// be received are dropped and counted); once the buffers return, the writable event comes,
/// the transfer completes byte for byte and the pool is whole again.
#[test]
fn get_buffer_exhaustion_and_recovery() {
    let mut p = pair::<u32>(cfg(), cfg());
    let l = p.b.tcp_listen(80, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, 80, None).unwrap();
    let mut ev = Events::default();
    let mut srv = None;
    for _ in 0..1_000 {
        p.step_a_with(&mut ev);
        srv = srv.or_else(|| p.b.accept(l).unwrap());
        if srv.is_some() && !ev.connected.is_empty() {
            break;
        }
    }
    let s = srv.expect("accepted");
    // Take every buffer A can get, also those of A's frames that B freed and holds back to
    // hand home in one batch (MempoolCache::flush_deferred: at the latest a jiffy later).
    let mut held = Vec::new();
    for _ in 0..3 {
        while let Some(m) = p.a.get_buffer() {
            held.push(m);
            assert!(held.len() <= 16384, "get_buffer hands out more than the pool holds");
        }
        p.step_a_with(&mut ev);
    }
    assert!(held.len() > 16000, "only {} buffers before exhaustion", held.len());
    assert!(p.a.get_buffer().is_none(), "still exhausted");
    let total: u64 = 1 << 20;
    let data: Vec<u8> = (0..total).map(pattern_byte).collect();
    // No buffer for a segment: a short write (here nothing at all), not an error.
    let mut sent = p.a.send(c, &data).unwrap() as u64;
    assert!(sent < total);
    let writable0 = ev.writable;
    let drops0 = p.a.stack().core.mib.drops.total() + p.b.stack().core.mib.drops.total();
    // A second of virtual time with the pool empty: no deadlock, no panic.
    for _ in 0..1_000 {
        p.step_a_with(&mut ev);
        assert!(p.a.get_buffer().is_none());
    }
    let drops_dry = p.a.stack().core.mib.drops.total() + p.b.stack().core.mib.drops.total() - drops0;
    assert!(ev.closed.is_empty(), "the connection survives the shortage");
    drop(held);
    let (mut got, mut buf) = (Vec::with_capacity(total as usize), vec![0u8; 64 << 10]);
    for _ in 0..200_000 {
        if sent < total && ev.writable > writable0 {
            sent += p.a.send(c, &data[sent as usize..]).unwrap() as u64;
        }
        p.step_a_with(&mut ev);
        loop {
            match p.b.recv(s, &mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                Err(GlueError::WouldBlock) => break,
                r => panic!("server recv: {r:?}"),
            }
        }
        if got.len() as u64 == total {
            break;
        }
    }
    assert!(
        ev.writable > writable0,
        "the writable event followed the buffers' return"
    );
    assert_eq!(got.len() as u64, total, "transfer completed after recovery");
    assert!(got == data, "stream corrupted");
    eprintln!("{drops_dry} frames dropped while the pool was empty");
    p.a.close(c).unwrap();
    p.b.close(s).unwrap();
    p.b.close(l).unwrap();
    p.drain_and_check();
}
