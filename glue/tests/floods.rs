//! Floods on the in-memory wire with a virtual clock. Host A crafts the attack with a raw
//! IP_HDRINCL socket while its own TCP/UDP sockets are the legitimate users:
//!
//! - SYN flood: 1,000,000 SYNs from 100 spoofed hosts (random ports and sequence numbers) at a
//!   listener of backlog 128: the SYN queue stays bounded, cookies engage, and a legitimate
//!   client connects and moves 1 MiB through the same listener during the flood; everything
//!   is freed afterwards.
//! - UDP flood at a closed port: ICMP port unreachable stays within the rate limit
//!   (`Icmp.OutRateLimitGlobal` counts the rest) while a UDP echo on another port keeps
//!   answering.
//! - RST/ACK floods at an established connection's own tuple (RFC 5961), and the mbuf pool
//!   running dry in the middle of a transfer.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::snmp::{IcmpMib, TcpExtMib, TcpMib, UdpMib};
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::tcp::TcpConfig;
use blink_glue::{Glue, GlueBuilder, GlueError, Socket};

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

struct Pair {
    a: Glue<()>,
    b: Glue<()>,
    vc: VirtualClock,
    pool: Mempool,
}

fn pair() -> Pair {
    let pool = Mempool::new(&MempoolConfig {
        n: 16384,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let (wa, wb) = wire_pair(
        ("a", "b"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig::default(),
    );
    let build = |dev, ip: &str| -> Glue<()> {
        GlueBuilder::new()
            .device(Box::new(dev))
            .addr(ip.parse().unwrap())
            .pool(pool.clone())
            .clock(Clock::virtual_clock(&vc))
            .tcp(common::seeded(TcpConfig {
                timewait_ms: 1000,
                ..Default::default()
            }))
            .build()
            .unwrap()
    };
    let a = build(wa, "10.0.0.1/24");
    let mut b = build(wb, "10.0.0.2/24");
    // The spoofed sources "exist" on B's link (a MAC nobody has), so B's SYN-ACKs leave and
    // are lost, as with a real spoofed flood.
    for i in 100..200u8 {
        blink_glue::ipv4::neighbour::neigh_add_static(
            b.stack_mut(),
            Ipv4Addr::new(10, 0, 0, i),
            EthAddr([2, 0, 0, 0, 0, 0x99]),
            0,
        );
    }
    Pair { a, b, vc, pool }
}

impl Pair {
    fn poll(&mut self) -> usize {
        self.a.periodic() + self.b.periodic()
    }
}

fn csum(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A SYN from `src:sport` to B:`dport`, IP header included, checksums filled.
fn syn(src: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&B_IP.octets());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let mut pseudo = 0u32;
    for w in [&src.octets()[..], &B_IP.octets()[..]] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]])) + u32::from(u16::from_be_bytes([w[2], w[3]]));
    }
    pseudo += 6 + 20;
    let c = csum(&p[20..], pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn byte(i: usize) -> u8 {
    (i * 31 + (i >> 10)) as u8
}

/// The legitimate traffic beside a flood: `len` bytes A -> B on one connection, every byte
/// checked at B.
struct Bulk {
    len: usize,
    sent: usize,
    rcvd: usize,
    chunk: Vec<u8>,
    buf: Vec<u8>,
}

impl Bulk {
    fn new(len: usize) -> Bulk {
        Bulk {
            len,
            sent: 0,
            rcvd: 0,
            chunk: vec![0; 16 * 1024],
            buf: vec![0; 64 * 1024],
        }
    }

    /// Offer A's socket `c` the next bytes; what its send answered (nothing offered once all
    /// is sent).
    fn send(&mut self, a: &mut Glue<()>, c: Socket) -> Option<Result<usize, GlueError>> {
        if self.sent == self.len {
            return None;
        }
        let n = self.chunk.len().min(self.len - self.sent);
        for (k, v) in self.chunk[..n].iter_mut().enumerate() {
            *v = byte(self.sent + k);
        }
        let r = a.send(c, &self.chunk[..n]);
        if let Ok(k) = r {
            self.sent += k;
        }
        Some(r)
    }

    /// Read what B's socket `s` has, checking every byte.
    fn recv(&mut self, b: &mut Glue<()>, s: Socket) {
        while let Ok(n) = b.recv(s, &mut self.buf) {
            if n == 0 {
                break;
            }
            let at = self.rcvd;
            assert!((0..n).all(|k| self.buf[k] == byte(at + k)), "bytes differ at {at}");
            self.rcvd += n;
        }
    }

    /// Both: a send whose refusal for lack of room is normal, then the reads.
    fn step(&mut self, a: &mut Glue<()>, c: Socket, b: &mut Glue<()>, s: Socket) {
        match self.send(a, c) {
            None | Some(Ok(_)) | Some(Err(GlueError::WouldBlock)) => {}
            Some(Err(e)) => panic!("client send: {e}"),
        }
        self.recv(b, s);
    }

    fn done(&self) -> bool {
        self.rcvd == self.len
    }
}

#[test]
fn syn_flood_of_a_million_while_a_client_moves_a_mib() {
    const FLOOD: usize = 1_000_000;
    const LEGIT: usize = 1 << 20;
    let mut p = pair();
    let l = p.b.tcp_listen(80, 128).unwrap();
    let raw = p.a.raw_socket(255, None).unwrap();
    let mut rng = Rng(0x5eed_f100d);
    let (mut client, mut server): (Option<Socket>, Option<Socket>) = (None, None);
    let mut bulk = Bulk::new(LEGIT);
    let mut peak_reqs = 0usize;
    let mut peak_in_use = 0usize;
    for i in 0..FLOOD {
        let r = rng.next();
        let src = Ipv4Addr::new(10, 0, 0, 100 + (r % 100) as u8);
        let f = syn(src, 1024 + (r >> 8) as u16 % 60000, 80, (r >> 32) as u32);
        match p.a.send_to(raw, &f, Some(SocketAddrV4::new(B_IP, 0))) {
            Ok(_) | Err(GlueError::NoMemory) | Err(GlueError::WouldBlock) => {}
            Err(e) => panic!("flood: {e}"),
        }
        if i % 32 != 31 {
            continue;
        }
        p.poll();
        if i % 4096 == 4095 {
            p.vc.advance_ms(1);
        }
        peak_reqs = peak_reqs.max(blink_glue::tcp::with_tcp(p.b.stack_mut(), |t, _| t.reqs.len()).unwrap());
        peak_in_use = peak_in_use.max(p.pool.in_use());
        // The legitimate client starts a tenth into the flood.
        if i == FLOOD / 10 - 1 {
            client = Some(p.a.tcp_connect(B_IP, 80, None).unwrap());
        }
        if server.is_none() {
            server = p.b.accept(l).unwrap();
        }
        if let (Some(c), Some(s)) = (client, server) {
            bulk.step(&mut p.a, c, &mut p.b, s);
        } else if let Some(c) = client {
            // Data may go ahead of the accept; it waits in the child's queue.
            let _ = bulk.send(&mut p.a, c);
        }
    }
    // Let the legitimate transfer finish (a few virtual seconds at most).
    for _ in 0..20_000 {
        if bulk.done() {
            break;
        }
        p.poll();
        p.vc.advance_ms(1);
        if let (Some(c), Some(s)) = (client, server) {
            bulk.step(&mut p.a, c, &mut p.b, s);
        }
    }
    let rcvd = bulk.rcvd;
    let ext = |g: &Glue<()>, c| g.stack().core.mib.tcp_ext.get(c);
    let cookies = ext(&p.b, TcpExtMib::SyncookiesSent);
    println!(
        "SYN flood: {FLOOD} SYNs, SyncookiesSent {cookies}, peak SYN queue {peak_reqs}, peak mbufs in use {peak_in_use}, legit {rcvd} of {LEGIT} bytes, B PassiveOpens {}",
        p.b.stack().core.mib.tcp.get(TcpMib::PassiveOpens)
    );
    assert!(server.is_some(), "the legitimate client was accepted during the flood");
    assert_eq!(rcvd, LEGIT, "the legitimate client moved its MiB");
    assert!(cookies > FLOOD as u64 / 2, "cookies engaged: {cookies}");
    assert!(peak_reqs <= 128, "the SYN queue stays within its backlog: {peak_reqs}");
    assert!(peak_in_use < 4096, "memory bounded: {peak_in_use} mbufs");
    // Afterwards: the request socks time out, the connection closes, nothing is left.
    for s in [client, server].into_iter().flatten() {
        let _ = if Some(s) == client { p.a.close(s) } else { p.b.close(s) };
    }
    p.a.close(raw).unwrap();
    for _ in 0..120 {
        p.vc.advance_ms(1000);
        p.poll();
    }
    assert_eq!(
        blink_glue::tcp::with_tcp(p.b.stack_mut(), |t, _| t.reqs.len()).unwrap(),
        0
    );
    let Pair { a, b, pool, .. } = p;
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn udp_flood_at_a_closed_port_is_rate_limited_and_echo_keeps_answering() {
    let mut p = pair();
    let echo = p.b.udp_socket(None).unwrap();
    p.b.udp_bind(echo, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    let flood = p.a.udp_socket(None).unwrap();
    let asker = p.a.udp_socket(None).unwrap();
    p.a.udp_connect(asker, SocketAddrV4::new(B_IP, 7)).unwrap();
    let mut buf = [0u8; 64];
    let (mut asked, mut answered) = (0u32, 0u32);
    const FLOOD: u32 = 100_000;
    for i in 0..FLOOD {
        let _ = p.a.send_to(flood, b"flood", Some(SocketAddrV4::new(B_IP, 9)));
        if i % 32 == 31 {
            p.poll();
            // Drain the ICMP errors the flood socket collects.
            while !matches!(p.a.recv_from(flood, &mut buf), Err(GlueError::WouldBlock)) {}
        }
        if i % 1000 == 999 {
            // 100 ms of virtual time per 1,000 datagrams: 10 s in all.
            p.vc.advance_ms(100);
            asked += 1;
            p.a.send_to(asker, &i.to_be_bytes(), None).unwrap();
            for _ in 0..4 {
                p.poll();
                if let Ok(n) = p.b.recv_from(echo, &mut buf) {
                    p.b.send_to(echo, &buf[..n.len], Some(n.from)).unwrap();
                }
            }
            for _ in 0..4 {
                p.poll();
            }
            if let Ok(r) = p.a.recv_from(asker, &mut buf) {
                assert_eq!(&buf[..r.len], &i.to_be_bytes());
                answered += 1;
            }
        }
    }
    let icmp = |g: &Glue<()>, c| g.stack().core.mib.icmp.get(c);
    let unreach = icmp(&p.b, IcmpMib::OutDestUnreachs);
    let limited = icmp(&p.b, IcmpMib::OutRateLimitGlobal);
    let noports = p.b.stack().core.mib.udp.get(UdpMib::NoPorts);
    println!(
        "UDP flood: {FLOOD} datagrams to a closed port over 10 s: NoPorts {noports}, port unreachable sent {unreach}, rate limited {limited}; echo answered {answered} of {asked}"
    );
    assert_eq!(noports, FLOOD as u64);
    // icmp_msgs_per_sec 1000 with a burst of 50, over 10 s of virtual time.
    assert!(
        unreach <= 50 + 1000 * 10 + 100,
        "ICMP errors within the rate limit: {unreach}"
    );
    assert!(
        limited >= FLOOD as u64 - unreach - 10,
        "the rest counted as rate limited: {limited}"
    );
    assert_eq!(answered, asked, "the echo kept answering during the flood");
    let Pair { a, b, pool, .. } = p;
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}

/// A segment of the connection `sport` -> B:`dport` with the given flags and numbers.
fn segment(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let mut p = syn(A_IP, sport, dport, seq);
    p[20 + 8..20 + 12].copy_from_slice(&ack.to_be_bytes());
    p[20 + 13] = flags;
    p[36] = 0;
    p[37] = 0;
    let mut pseudo = 0u32;
    for w in [&A_IP.octets()[..], &B_IP.octets()[..]] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]])) + u32::from(u16::from_be_bytes([w[2], w[3]]));
    }
    pseudo += 6 + 20;
    let c = csum(&p[20..], pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// RST and ACK floods with random sequence and acknowledgment numbers at an established
/// connection's own 4-tuple (RFC 5961): the connection survives and moves its MiB intact,
/// and the challenge ACKs it sends stay within the out-of-window rate limit.
#[test]
fn rst_and_ack_floods_at_an_established_connection() {
    const FLOOD: usize = 200_000;
    const LEGIT: usize = 1 << 20;
    let mut p = pair();
    let l = p.b.tcp_listen(80, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, 80, None).unwrap();
    let mut s = None;
    for _ in 0..100 {
        p.poll();
        if let Ok(Some(x)) = p.b.accept(l) {
            s = Some(x);
            break;
        }
    }
    let s = s.expect("connected");
    let (local, _) = p.a.addrs(c).unwrap();
    let raw = p.a.raw_socket(255, None).unwrap();
    let mut rng = Rng(0xacc0_5eed);
    let mut bulk = Bulk::new(LEGIT);
    let mut ms = 0u64;
    for i in 0..FLOOD + 50_000 {
        if i < FLOOD {
            let r = rng.next();
            let flags = if i % 2 == 0 { 0x04 } else { 0x10 };
            let f = segment(local.port(), 80, r as u32, (r >> 32) as u32, flags);
            let _ = p.a.send_to(raw, &f, Some(SocketAddrV4::new(B_IP, 0)));
        }
        if i % 32 != 31 {
            continue;
        }
        p.poll();
        if i % 1024 == 1023 {
            p.vc.advance_ms(1);
            ms += 1;
        }
        bulk.step(&mut p.a, c, &mut p.b, s);
        if i >= FLOOD && bulk.done() {
            break;
        }
    }
    let rcvd = bulk.rcvd;
    let ext = |g: &Glue<()>, c| g.stack().core.mib.tcp_ext.get(c);
    let (challenges, skipped) = (
        ext(&p.b, TcpExtMib::TCPChallengeACK),
        ext(&p.b, TcpExtMib::TCPACKSkippedChallenge),
    );
    println!(
        "RST/ACK flood: {FLOOD} segments over {ms} ms: TCPChallengeACK {challenges}, skipped {skipped}, EstabResets {}, legit {rcvd} of {LEGIT}",
        p.b.stack().core.mib.tcp.get(TcpMib::EstabResets)
    );
    assert_eq!(rcvd, LEGIT, "the connection survived and carried everything");
    assert_eq!(p.b.stack().core.mib.tcp.get(TcpMib::EstabResets), 0);
    assert!(skipped > 0, "challenge ACKs were rate limited");
    // Linux's tcp_invalid_ratelimit: one per 500 ms per socket.
    assert!(challenges <= ms / 500 + 5, "{challenges} challenge ACKs in {ms} ms");
    p.a.close(c).unwrap();
    p.b.close(s).unwrap();
    p.a.close(raw).unwrap();
    for _ in 0..30 {
        p.vc.advance_ms(1000);
        p.poll();
    }
    let Pair { a, b, pool, .. } = p;
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}

/// The mbuf pool runs dry in the middle of a transfer (the test takes every free buffer for
/// 2 s of virtual time): the sender's writes are refused (TCP's share of the pool is gone),
/// nothing deadlocks; once the buffers are back the transfer completes intact and nothing is
/// leaked.
#[test]
fn pool_exhaustion_mid_transfer_recovers() {
    const LEGIT: usize = 1 << 20;
    let mut p = pair();
    let l = p.b.tcp_listen(80, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, 80, None).unwrap();
    let mut s = None;
    for _ in 0..100 {
        p.poll();
        if let Ok(Some(x)) = p.b.accept(l) {
            s = Some(x);
            break;
        }
    }
    let s = s.expect("connected");
    let mut bulk = Bulk::new(LEGIT);
    let mut held = Vec::new();
    let mut refused = 0u64;
    let mut step = 0u64;
    let mut cache = p.pool.cache();
    while !bulk.done() && step < 200_000 {
        step += 1;
        if step == 10 {
            // Take every buffer the pool still has.
            while let Some(m) = cache.alloc() {
                held.push(m);
            }
            assert!(
                p.pool.in_use() >= 16384 - 600, // the rest sits in the two stacks' own caches
                "the pool is dry: {} in use",
                p.pool.in_use()
            );
        }
        if step == 2010 {
            held.clear();
        }
        p.poll();
        p.vc.advance_ms(1);
        match bulk.send(&mut p.a, c) {
            // Nothing taken: the buffers (or TCP's share of them) are gone.
            Some(Ok(0) | Err(GlueError::WouldBlock) | Err(GlueError::NoMemory)) if !held.is_empty() => refused += 1,
            None | Some(Ok(_)) | Some(Err(GlueError::WouldBlock)) => {}
            Some(Err(e)) => panic!("client send: {e}"),
        }
        bulk.recv(&mut p.b, s);
    }
    let rcvd = bulk.rcvd;
    drop(cache);
    assert!(step > 2010, "the transfer waited for the buffers (done at {step} ms)");
    let nomem: u64 = [&p.a, &p.b]
        .iter()
        .map(|g| g.stack().core.mib.drops[blink_glue::netcore::snmp::DropReason::NoMem])
        .sum();
    println!("pool exhaustion: {rcvd} of {LEGIT} bytes after {step} ms, sends refused {refused}, Drop.NoMem {nomem}");
    assert_eq!(rcvd, LEGIT, "the transfer completed once the buffers were back");
    assert!(refused > 0, "the dry pool was noticed by the sender");
    p.a.close(c).unwrap();
    p.b.close(s).unwrap();
    for _ in 0..30 {
        p.vc.advance_ms(1000);
        p.poll();
    }
    let Pair { a, b, pool, .. } = p;
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}
