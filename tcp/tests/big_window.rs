//! More than 1 MiB in flight: a peer written here (not blink) offers window scale 7 and a
//! 4 MiB window, ACKs blink's slow start round by round until a single flight carries more
//! than 1 MiB, then loses three segments of that flight and reports the rest with SACK.
//! blink must use the scaled window (without the scale the window is 64 KiB), never send past
//! its right edge, retransmit exactly the holes (no SACKed byte again, no RTO), and finish
//! the stream; every byte is compared with what the application wrote, and at the end no
//! socket and no mbuf is left.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use blink_ipv4::{Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::{Burst, NetDevice};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{TcpExtMib, TcpMib};
use blink_netcore::{EthAddr, Mempool, MempoolCache, MempoolConfig};
use blink_tcp::{tcp_close, tcp_connect, tcp_init, tcp_send, tcp_state, with_tcp, TcpConfig, TcpState};
use etherparse::{SlicedPacket, TcpOptionElement, TransportSlice};

const BLINK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const BLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER_PORT: u16 = 9000;
const PEER_ISN: u32 = 0x1000;
/// The peer's window scale and window: 32768 << 7 = 4 MiB.
const WSCALE: u8 = 7;
const WINDOW: u64 = 4 << 20;
const MSS: usize = 1460;

/// The test's TCP peer: it keeps the byte ranges it holds (stream offsets, 0 = first data
/// byte) and acknowledges like a Linux receiver would, with SACK blocks for what lies above
/// a hole.
struct Peer {
    wire: WireDev,
    cache: MempoolCache,
    /// Received ranges, start -> end, merged.
    have: BTreeMap<u64, u64>,
    data: Vec<u8>,
    /// blink's ISN + 1: stream offset 0.
    base: u32,
    lport: u16,
    fin: Option<u64>,
    /// What the peer's last ACK acknowledged.
    acked: u64,
    /// Bytes that arrived again although the peer already held (and had SACKed) them.
    dup_bytes: u64,
}

fn csum(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    for c in data.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

impl Peer {
    /// One TCP segment from the peer with `opts` (already padded to 4 bytes).
    fn send(&mut self, seq: u32, ack: u32, flags: u8, window: u16, opts: &[u8]) {
        assert_eq!(opts.len() % 4, 0);
        let mut t = Vec::new();
        t.extend_from_slice(&PEER_PORT.to_be_bytes());
        t.extend_from_slice(&self.lport.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.push(((20 + opts.len()) / 4 << 4) as u8);
        t.push(flags);
        t.extend_from_slice(&window.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(opts);
        let mut pseudo = 6 + t.len() as u32;
        for a in [PEER_IP.octets(), BLINK_IP.octets()] {
            pseudo += u16::from_be_bytes([a[0], a[1]]) as u32 + u16::from_be_bytes([a[2], a[3]]) as u32;
        }
        let c = csum(&t, pseudo);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&((20 + t.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&PEER_IP.octets());
        ip.extend_from_slice(&BLINK_IP.octets());
        let c = csum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = Vec::with_capacity(14 + ip.len() + t.len());
        f.extend_from_slice(&BLINK_MAC);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&t);
        let skb = SkBuff::from_slice(&mut self.cache, &f).expect("frame fits one mbuf");
        let mut b = Burst::new();
        b.push(skb);
        assert_eq!(self.wire.tx_burst(0, &mut b), 1, "wire ring full");
    }

    /// Every frame blink sent since the last call, linearized.
    fn frames(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut b = Burst::new();
            if self.wire.rx_burst(0, &mut b) == 0 {
                return out;
            }
            for skb in b {
                let mut v = Vec::with_capacity(skb.len());
                for s in skb.segments() {
                    v.extend_from_slice(s);
                }
                out.push(v);
            }
        }
    }

    /// The first byte the peer lacks.
    fn ack_off(&self) -> u64 {
        match self.have.first_key_value() {
            Some((&0, &e)) => e,
            _ => 0,
        }
    }

    /// The highest byte received + 1.
    fn hi(&self) -> u64 {
        self.have.last_key_value().map_or(0, |(_, &e)| e)
    }

    fn holds(&self, s: u64, e: u64) -> u64 {
        self.have
            .range(..e)
            .map(|(&a, &b)| b.min(e).saturating_sub(a.max(s)))
            .sum()
    }

    fn insert(&mut self, s: u64, e: u64) {
        let (mut s, mut e) = (s, e);
        let overlapping: Vec<(u64, u64)> = self
            .have
            .range(..=e)
            .filter(|&(_, &b)| b >= s)
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in overlapping {
            self.have.remove(&a);
            s = s.min(a);
            e = e.max(b);
        }
        self.have.insert(s, e);
    }

    fn forget(&mut self, s: u64, e: u64) {
        let (&a, &b) = self.have.range(..=s).next_back().expect("held");
        assert!(a <= s && e <= b, "forgetting bytes not held");
        self.have.remove(&a);
        if a < s {
            self.have.insert(a, s);
        }
        if e < b {
            self.have.insert(e, b);
        }
    }

    /// Take in blink's segments: check each against the window's right edge and the stream,
    /// remember the bytes. Returns the (start, end) of each data segment.
    fn take(&mut self, frames: &[Vec<u8>]) -> Vec<(u64, u64)> {
        let mut segs = Vec::new();
        let right_edge = self.acked + WINDOW;
        for f in frames {
            let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("etherparse: {e}: {f:02x?}"));
            let Some(TransportSlice::Tcp(t)) = p.transport else {
                continue; // ARP
            };
            let s = t.sequence_number().wrapping_sub(self.base) as u64;
            let pl = t.payload();
            if t.fin() {
                self.fin = Some(s + pl.len() as u64);
            }
            if pl.is_empty() {
                continue;
            }
            let e = s + pl.len() as u64;
            assert!(pl.len() <= MSS, "segment of {} bytes above the MSS", pl.len());
            assert!(
                e <= right_edge,
                "sent [{s}, {e}) past the window's right edge {right_edge}"
            );
            assert_eq!(
                pl,
                &self.data[s as usize..e as usize],
                "bytes [{s}, {e}) differ from what was written"
            );
            self.dup_bytes += self.holds(s, e);
            self.insert(s, e);
            segs.push((s, e));
        }
        segs
    }

    /// An ACK for everything contiguous, with SACK blocks (most recent first is what RFC 2018
    /// asks; the order does not matter to the sender's scoreboard) for up to 4 ranges above.
    fn ack(&mut self, ack_seq: u32) {
        let ack = self.ack_off();
        self.acked = ack;
        let mut opts = Vec::new();
        let blocks: Vec<(u64, u64)> = self.have.range(ack + 1..).take(4).map(|(&a, &b)| (a, b)).collect();
        if !blocks.is_empty() {
            opts.extend_from_slice(&[1, 1, 5, 2 + 8 * blocks.len() as u8]);
            for (a, b) in blocks {
                opts.extend_from_slice(&(self.base.wrapping_add(a as u32)).to_be_bytes());
                opts.extend_from_slice(&(self.base.wrapping_add(b as u32)).to_be_bytes());
            }
        }
        while opts.len() % 4 != 0 {
            opts.push(1);
        }
        let fin_acked = self.fin.is_some_and(|f| f == ack);
        let a = self.base.wrapping_add(ack as u32).wrapping_add(fin_acked as u32);
        self.send(ack_seq, a, 0x10, (WINDOW >> WSCALE) as u16, &opts);
    }
}

struct Rig {
    stack: Stack,
    vc: VirtualClock,
    pool: Mempool,
    peer: Peer,
}

impl Rig {
    /// Let blink run without the peer doing anything: polls, and 1 ms of virtual time per idle
    /// poll (far below the 200 ms minimum RTO, so no timer fires unless blink is stuck).
    fn run(&mut self, polls: usize) {
        for _ in 0..polls {
            if self.stack.poll() == 0 {
                self.vc.advance_ms(1);
                return;
            }
            self.vc.advance(std::time::Duration::from_micros(10));
        }
    }
}

#[test]
fn more_than_a_mib_in_flight_with_sack_holes() {
    let pool = Mempool::new(&MempoolConfig {
        n: 16384,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let (dev, wire) = wire_pair(
        ("blink0", "peer0"),
        (EthAddr(BLINK_MAC), EthAddr(PEER_MAC)),
        &WireConfig::default(),
    );
    let mut stack = Stack::new(0, 1, Clock::virtual_clock(&vc), &pool, StackConfig::default());
    let d = stack.add_device(Box::new(dev), 0);
    stack.add_addr(d, "10.0.0.1/24".parse().unwrap()).unwrap();
    blink_ipv4::neighbour::neigh_add_static(&mut stack, PEER_IP, EthAddr(PEER_MAC), d);
    tcp_init(
        &mut stack,
        common::seeded(TcpConfig {
            sndbuf: 4 << 20,
            timestamps: false,
            timewait_ms: 100,
            ..Default::default()
        }),
    );
    stack.flush_tx();
    let total: usize = 12 << 20;
    let data: Vec<u8> = (0..total)
        .map(|i| (i ^ (i >> 9) ^ (i >> 17)).wrapping_mul(131) as u8)
        .collect();
    let mut r = Rig {
        peer: Peer {
            wire,
            cache: pool.cache(),
            have: BTreeMap::new(),
            data: data.clone(),
            base: 0,
            lport: 0,
            fin: None,
            dup_bytes: 0,
            acked: 0,
        },
        stack,
        vc,
        pool,
    };
    r.peer.frames(); // the gratuitous ARP
    let baseline = r.pool.in_use();

    // Handshake: blink's SYN offers a scale of its own; the peer answers with MSS, SACK and
    // window scale 7 (the SYN-ACK's window is never scaled: 65535).
    let c = tcp_connect(&mut r.stack, PEER_IP, PEER_PORT).unwrap();
    r.stack.flush_tx();
    let syn = r.peer.frames().pop().expect("SYN");
    let p = SlicedPacket::from_ethernet(&syn).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    assert!(t.syn() && !t.ack());
    let opts: Vec<_> = t.options_iterator().map(|o| o.unwrap()).collect();
    assert!(opts.contains(&TcpOptionElement::SelectiveAcknowledgementPermitted));
    assert!(opts.iter().any(|o| matches!(o, TcpOptionElement::WindowScale(_))));
    r.peer.base = t.sequence_number().wrapping_add(1);
    r.peer.lport = t.source_port();
    let syn_ack_opts = [2, 4, (MSS >> 8) as u8, MSS as u8, 1, 3, 3, WSCALE, 4, 2, 1, 1];
    let base = r.peer.base;
    r.peer.send(PEER_ISN, base, 0x12, 65535, &syn_ack_opts);
    r.run(4);
    assert_eq!(tcp_state(&mut r.stack, c), Ok(TcpState::Established));
    let snd_wnd = |r: &mut Rig| with_tcp(&mut r.stack, |t, _| t.socks.get(c).unwrap().snd_wnd).unwrap();
    // The SYN-ACK's 65535 is not scaled (RFC 7323 2.2): 8 MiB would let blink overrun a
    // receiver that offered 64 KiB.
    assert_eq!(snd_wnd(&mut r), 65535, "the SYN-ACK's window taken unscaled");
    r.peer.frames(); // the handshake's ACK

    let mut written = 0usize;
    let write = |r: &mut Rig, written: &mut usize| {
        while *written < total {
            match tcp_send(&mut r.stack, c, &data[*written..]) {
                Ok(0) => break,
                Ok(n) => *written += n,
                Err(e) => panic!("send: {e}"),
            }
        }
    };

    // Slow start: the peer ACKs each round whole (one cumulative ACK, as a receiver that
    // coalesces), so the congestion window doubles, until one round's flight exceeds 1 MiB.
    let seq = PEER_ISN + 1;
    let mut rounds = 0;
    let flight = loop {
        rounds += 1;
        assert!(rounds <= 20, "the flight never exceeded 1 MiB");
        write(&mut r, &mut written);
        r.run(50);
        let frames = r.peer.frames();
        r.peer.take(&frames);
        let ack_before = r.peer.acked;
        let flight = r.peer.hi() - ack_before;
        // Nothing is lost yet: the flight is contiguous.
        assert_eq!(r.peer.have.len(), 1, "round {rounds}: holes without loss");
        if flight > 1 << 20 {
            break (ack_before, flight);
        }
        r.peer.ack(seq);
        r.run(2);
    };
    let (flight_start, flight_len) = flight;
    let snd_wnd = snd_wnd(&mut r);
    eprintln!(
        "round {rounds}: {flight_len} bytes in flight before any ACK for them (window {snd_wnd}, scaled by {WSCALE})"
    );
    assert_eq!(snd_wnd, WINDOW as u32, "the scale was applied to the ACKs' windows");
    // blink sent more than the unscaled maximum window without an ACK: the scale is in use.
    assert!(flight_len > 65535 * 16);

    // Three segments of that flight were lost: near its start, middle and end.
    let segs: Vec<(u64, u64)> = {
        let mut v = Vec::new();
        let mut s = flight_start;
        while s < flight_start + flight_len {
            let e = (s + MSS as u64).min(flight_start + flight_len);
            v.push((s, e));
            s = e;
        }
        v
    };
    let holes = [segs[5], segs[segs.len() / 2], segs[segs.len() - 10]];
    for &(s, e) in &holes {
        r.peer.forget(s, e);
    }
    let (rto0, retrans0) = (
        r.stack.core.mib.tcp_ext[TcpExtMib::TCPTimeouts],
        r.stack.core.mib.tcp[TcpMib::RetransSegs],
    );

    // Recovery: duplicate ACKs with SACK blocks, as a receiver sends one per out-of-order
    // segment; then the stream goes on with the peer ACKing every batch.
    for _ in 0..3 {
        r.peer.ack(seq);
    }
    let mut retransmitted = Vec::new();
    let mut fin_sent = false;
    for step in 0..200_000 {
        if r.peer.ack_off() == total as u64 && r.peer.fin.is_some() {
            break;
        }
        write(&mut r, &mut written);
        if written == total && !fin_sent {
            tcp_close(&mut r.stack, c).unwrap();
            fin_sent = true;
        }
        r.run(50);
        let frames = r.peer.frames();
        let before: Vec<(u64, u64)> = r.peer.have.iter().map(|(&a, &b)| (a, b)).collect();
        for (s, e) in r.peer.take(&frames) {
            if before.iter().all(|&(a, b)| e <= a || s >= b) && s < flight_start + flight_len {
                retransmitted.push((s, e));
            }
        }
        if !frames.is_empty() {
            r.peer.ack(seq);
        }
        assert!(step < 199_999, "stream stuck at {} of {total}", r.peer.ack_off());
    }
    assert_eq!(r.peer.ack_off(), total as u64, "every byte arrived");
    assert_eq!(r.peer.dup_bytes, 0, "no byte the peer held and SACKed was sent again");
    assert_eq!(retransmitted, holes.to_vec(), "exactly the holes were retransmitted");
    let m = &r.stack.core.mib;
    assert_eq!(m.tcp[TcpMib::RetransSegs] - retrans0, 3);
    assert_eq!(m.tcp_ext[TcpExtMib::TCPTimeouts], rto0, "recovered without an RTO");
    assert!(m.tcp_ext[TcpExtMib::TCPSackRecovery] >= 1);
    assert_eq!(m.tcp_ext[TcpExtMib::TCPTimeouts], 0);

    // The peer closes too; blink's TIME-WAIT (100 ms here) runs out, and everything is freed.
    let fin = r.peer.fin.unwrap();
    let a = r.peer.base.wrapping_add(fin as u32 + 1);
    r.peer.send(seq, a, 0x11, (WINDOW >> WSCALE) as u16, &[]);
    for _ in 0..1000 {
        r.run(10);
        r.peer.frames();
        if with_tcp(&mut r.stack, |t, _| t.socks.len() + t.tw.len()).unwrap() == 0 {
            break;
        }
    }
    assert_eq!(with_tcp(&mut r.stack, |t, _| t.socks.len() + t.tw.len()).unwrap(), 0);
    r.peer.frames();
    assert_eq!(r.pool.in_use(), baseline, "mbufs leaked");
}
