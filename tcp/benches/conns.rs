//! Many concurrent connections (the targets in apps/BENCHMARKS.md: "100 k concurrent connections — ≤ 4 KiB per
//! idle connection; rr at 100 k ≥ 80% of rr at 1 k").
//!
//! Two blink stacks on the in-memory wire, one thread. Opens N connections (default 1,000 and
//! 100,000), lets them go idle, and reports the heap each one costs (both ends, measured by a
//! counting allocator: sockets, hash-table entries, timers — everything the stacks allocated)
//! and the mbufs it holds. Then runs 64-byte request/response transactions round-robin over all
//! N connections, so each transaction looks up a different socket and timer, and compares the
//! rate with N = 1,000. Every response is checked.
//!
//! `cargo bench -p blink-tcp --bench conns` (`BLINK_CONNS=20000` to change the large N).

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use blink_netcore::sock::SockHandle;
use blink_tcp::{tcp_accept, tcp_connect, tcp_listen, tcp_recv, tcp_send, TcpConfig, TcpErr};
use common::{pair, Pair, B_IP};

/// Bytes currently allocated on the heap.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Server ports: each gives the client one ephemeral range of tuples.
const PORTS: [u16; 2] = [5001, 5002];

struct Conns {
    p: Pair,
    /// (client, server) socket pairs.
    conns: Vec<(SockHandle, SockHandle)>,
}

fn open(n: usize) -> Conns {
    let cfg = TcpConfig {
        nodelay: true,
        ephemeral_ports: (1024, 65535),
        max_backlog: 4096,
        ..Default::default()
    };
    let mut p = pair(None, cfg);
    let ls: Vec<SockHandle> = PORTS
        .iter()
        .map(|&port| tcp_listen(&mut p.b, port, 4096).expect("listen"))
        .collect();
    let mut conns = Vec::with_capacity(n);
    let mut pending = Vec::with_capacity(256);
    while conns.len() < n {
        let batch = (n - conns.len()).min(256);
        for i in 0..batch {
            let port = PORTS[(conns.len() + i) % PORTS.len()];
            pending.push(tcp_connect(&mut p.a, B_IP, port).expect("connect"));
        }
        // Accept in connect order per listener: the handshakes complete in order on the wire.
        let mut accepted: Vec<Vec<SockHandle>> = vec![Vec::new(); PORTS.len()];
        let ok = p.run_until(100_000, |p| {
            for (k, &l) in ls.iter().enumerate() {
                while let Some(s) = tcp_accept(&mut p.b, l).expect("accept") {
                    accepted[k].push(s);
                }
            }
            accepted.iter().map(Vec::len).sum::<usize>() == batch
        });
        assert!(ok, "handshakes did not complete");
        let mut next = vec![0usize; PORTS.len()];
        for (i, c) in pending.drain(..).enumerate() {
            let k = i % PORTS.len();
            let s = accepted[k][next[k]];
            next[k] += 1;
            conns.push((c, s));
        }
    }
    Conns { p, conns }
}

fn recv(stack: &mut blink_ipv4::Stack, h: SockHandle, buf: &mut [u8]) -> usize {
    match tcp_recv(stack, h, buf) {
        Ok(n) => n,
        Err(TcpErr::WouldBlock) => 0,
        Err(e) => panic!("recv: {e}"),
    }
}

/// One 64-byte request/response transaction on connection `i`, checked.
fn transaction(c: &mut Conns, i: usize, tag: u8) {
    let (ch, sh) = c.conns[i];
    let req = [tag; 64];
    let mut buf = [0u8; 64];
    assert_eq!(tcp_send(&mut c.p.a, ch, &req).expect("send"), 64);
    let mut got = 0;
    while got < 64 {
        c.p.step();
        got += recv(&mut c.p.b, sh, &mut buf[got..]);
    }
    assert_eq!(buf, req, "request corrupted");
    assert_eq!(tcp_send(&mut c.p.b, sh, &buf).expect("send"), 64);
    let mut got = 0;
    while got < 64 {
        c.p.step();
        got += recv(&mut c.p.a, ch, &mut buf[got..]);
    }
    assert_eq!(buf, req, "response corrupted");
}

fn settle(c: &mut Conns) {
    // Let delayed ACKs and everything else in flight finish: one second of idle virtual time.
    for _ in 0..1000 {
        c.p.step();
    }
}

/// Returns (heap bytes per connection, mbufs per connection, transactions/s).
fn run(n: usize, transactions: usize) -> (f64, f64, f64) {
    let before = LIVE.load(Ordering::Relaxed);
    // The pair itself (pool, wire, tables) is measured empty and subtracted.
    let empty = {
        let c = open(0);
        LIVE.load(Ordering::Relaxed) - before - (c.conns.capacity() * 16) as isize
    };
    let mut c = open(n);
    settle(&mut c);
    let heap = LIVE.load(Ordering::Relaxed) - before - empty - (c.conns.capacity() * 16) as isize;
    let mbufs = c.p.pool.in_use();
    let t0 = Instant::now();
    for k in 0..transactions {
        transaction(&mut c, k % n, k as u8);
    }
    let rate = transactions as f64 / t0.elapsed().as_secs_f64();
    (heap as f64 / n as f64, mbufs as f64 / n as f64, rate)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("conns: bench");
        return;
    }
    let big: usize = std::env::var("BLINK_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let transactions = 200_000;
    let (h1, m1, r1) = run(1000, transactions);
    println!("conns 1000   : {h1:8.0} B heap per connection (both ends), {m1:.3} mbufs, rr {r1:10.0} trans/s");
    let (h2, m2, r2) = run(big, transactions);
    println!("conns {big:<7}: {h2:8.0} B heap per connection (both ends), {m2:.3} mbufs, rr {r2:10.0} trans/s");
    println!(
        "per idle connection end: {:.0} B (target <= 4096); rr at {big} / rr at 1000 = {:.2} (target >= 0.80)",
        h2 / 2.0,
        r2 / r1
    );
}
