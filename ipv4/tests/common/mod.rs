//! Shared test harness: one blink `Stack` on one end of an in-memory `wire_pair`, driven by a
//! `VirtualClock`; the test holds the other end as a raw "peer" that injects hand-made frames
//! and reads what the stack sends. Frames are built with literal bytes or etherparse, and what
//! blink sends is parsed with etherparse as an independent oracle.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use blink_ipv4::{Ipv4Cidr, Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::{Burst, NetDevice};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{DropReason, Mib};
use blink_netcore::{EthAddr, Mempool, MempoolCache, MempoolConfig};
use etherparse::{
    ArpEthIpv4Packet, ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv4Header, IpNumber,
    Ipv4Header, LinkHeader, NetHeaders, PacketBuilder, PacketHeaders, TransportHeader,
};

pub const STACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
pub const BCAST_MAC: [u8; 6] = [0xff; 6];
pub const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const SUBNET_BCAST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 255);
pub const PREFIX_LEN: u8 = 24;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;

/// A stack on one wire end, the peer on the other, a virtual clock, and the pool's baseline.
pub struct Harness {
    pub stack: Stack,
    pub peer: WireDev,
    pub clock: VirtualClock,
    pub pool: Mempool,
    /// The peer's allocation cache (frames it injects come from the stack's pool too, so leak
    /// checks cover them).
    pub cache: MempoolCache,
    /// Frames the stack sent while being set up (the gratuitous ARP).
    pub setup_frames: Vec<Vec<u8>>,
    baseline: usize,
}

impl Harness {
    /// Default configuration, address 10.0.0.1/24.
    pub fn new() -> Harness {
        Self::with_config(StackConfig::default())
    }

    pub fn with_config(cfg: StackConfig) -> Harness {
        let mut h = Self::unaddressed(cfg);
        let cidr = Ipv4Cidr::new(STACK_IP, PREFIX_LEN).expect("valid prefix");
        h.stack.add_addr(0, cidr).expect("add_addr");
        h.stack.flush_tx();
        h.setup_frames = h.recv();
        h.baseline = h.pool.in_use();
        h
    }

    /// A stack with its device attached but no address yet (time 0, nothing sent).
    pub fn unaddressed(cfg: StackConfig) -> Harness {
        let pool = Mempool::new(&MempoolConfig {
            name: "test".into(),
            n: 4096,
            cache_size: 32,
            ..Default::default()
        })
        .expect("pool");
        let clock = VirtualClock::new();
        let (a, b) = wire_pair(
            ("blink0", "peer0"),
            (EthAddr(STACK_MAC), EthAddr(PEER_MAC)),
            &WireConfig::default(),
        );
        let mut stack = Stack::new(0, 1, Clock::virtual_clock(&clock), &pool, cfg);
        assert_eq!(stack.add_device(Box::new(a), 0), 0);
        let cache = pool.cache();
        let baseline = pool.in_use();
        Harness {
            stack,
            peer: b,
            clock,
            pool,
            cache,
            setup_frames: Vec::new(),
            baseline,
        }
    }

    /// Record the current pool usage as the level every test must return to.
    pub fn reset_baseline(&mut self) {
        self.baseline = self.pool.in_use();
    }

    pub fn baseline(&self) -> usize {
        self.baseline
    }

    /// Static neighbour entry for the peer, so the stack's answers leave without ARP.
    pub fn with_static_peer(mut self) -> Harness {
        blink_ipv4::neighbour::neigh_add_static(&mut self.stack, PEER_IP, EthAddr(PEER_MAC), 0);
        self
    }

    /// Put `frame` on the wire towards the stack (no poll). Returns the address of the buffer
    /// that carries it (for zero-copy checks).
    pub fn send(&mut self, frame: &[u8]) -> usize {
        let skb = SkBuff::from_slice(&mut self.cache, frame).expect("frame fits one mbuf");
        let addr = skb.head_mbuf().buf_addr();
        let mut burst = Burst::new();
        burst.push(skb);
        assert_eq!(self.peer.tx_burst(0, &mut burst), 1, "wire ring full");
        addr
    }

    /// Send `frame` and let the stack process it.
    pub fn inject(&mut self, frame: &[u8]) {
        self.send(frame);
        self.stack.poll();
    }

    /// Send `frame`, poll, and return what the stack sent in answer.
    pub fn exchange(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        self.inject(frame);
        self.recv()
    }

    pub fn poll(&mut self) -> usize {
        self.stack.poll()
    }

    /// Advance virtual time by `ms` and run one poll.
    pub fn advance(&mut self, ms: u64) {
        self.clock.advance_ms(ms);
        self.stack.poll();
    }

    /// Every frame the stack has sent so far, as skbs (not linearized).
    pub fn recv_skbs(&mut self) -> Vec<SkBuff> {
        let mut out = Vec::new();
        loop {
            let mut burst = Burst::new();
            if self.peer.rx_burst(0, &mut burst) == 0 {
                break;
            }
            out.extend(burst);
        }
        out
    }

    /// Every frame the stack has sent so far, linearized into bytes (the skbs are freed).
    pub fn recv(&mut self) -> Vec<Vec<u8>> {
        self.recv_skbs().iter().map(linearize).collect()
    }

    pub fn mib(&self) -> Mib {
        self.stack.core.mib.clone()
    }

    pub fn drops(&self, r: DropReason) -> u64 {
        self.stack.core.mib.drops[r]
    }

    pub fn total_drops(&self) -> u64 {
        self.stack.core.mib.drops.total()
    }

    /// Counters that changed since `before`, as `Section.Name -> delta`.
    pub fn diff(&self, before: &Mib) -> BTreeMap<String, u64> {
        mib_diff(before, &self.stack.core.mib)
    }

    /// Flush, drain the wire, and check every buffer is back: the pool's in_use() equals the
    /// baseline recorded after set-up.
    pub fn assert_pool_baseline(&mut self) {
        self.stack.flush_tx();
        drop(self.recv_skbs());
        assert_eq!(
            self.pool.in_use(),
            self.baseline,
            "mbuf leak: in_use {} != baseline {}",
            self.pool.in_use(),
            self.baseline
        );
    }
}

/// `Section.Name -> after - before` for every counter that changed.
pub fn mib_diff(before: &Mib, after: &Mib) -> BTreeMap<String, u64> {
    let b: BTreeMap<String, u64> = before.nonzero().into_iter().collect();
    after
        .nonzero()
        .into_iter()
        // Every received frame counts in Softnet.Processed: not what these tests are about.
        .filter(|(k, _)| k != "Softnet.Processed")
        .filter_map(|(k, v)| {
            let d = v.wrapping_sub(b.get(&k).copied().unwrap_or(0));
            (d != 0).then_some((k, d))
        })
        .collect()
}

/// Only the `Drop.*` entries of a diff.
pub fn drop_part(d: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    d.iter()
        .filter(|(k, _)| k.starts_with("Drop."))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// A map literal for assertions: `counters(&[("Drop.IpCsum", 1)])`.
pub fn counters(items: &[(&str, u64)]) -> BTreeMap<String, u64> {
    items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

pub fn linearize(skb: &SkBuff) -> Vec<u8> {
    let mut v = Vec::with_capacity(skb.len());
    for s in skb.segments() {
        v.extend_from_slice(s);
    }
    assert_eq!(v.len(), skb.len());
    v
}

// ---------------------------------------------------------------------------------------------
// Building frames

/// The Internet checksum (RFC 1071), written here independently of blink's.
pub fn inet_csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame around `payload`.
pub fn eth_frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A 20-byte IPv4 header + payload with a correct checksum (literal bytes).
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let tot = 20 + payload.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(tot as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = inet_csum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Recompute the IPv4 header checksum of an Ethernet frame in place (using its IHL, clamped
/// to the frame).
pub fn fix_ip_csum(frame: &mut [u8]) {
    let ihl = ((frame[14] & 0x0f) as usize * 4).min(frame.len() - 14);
    frame[24] = 0;
    frame[25] = 0;
    let c = inet_csum(&frame[14..14 + ihl]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

/// An ICMP message (header + payload) with a correct checksum.
pub fn icmp_msg(ty: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(payload);
    let c = inet_csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An echo request `src -> dst` from the peer's MAC to the stack's MAC (built with etherparse).
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, STACK_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(id, seq)
        .write(&mut v, payload)
        .expect("build echo request");
    v
}

/// An echo request from the peer to the stack.
pub fn ping_frame(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    echo_request(PEER_IP, STACK_IP, id, seq, payload)
}

/// An Ethernet/IPv4 ARP frame (built with etherparse).
pub fn arp_frame(
    op: ArpOperation,
    eth_dst: [u8; 6],
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sha,
        &spa.octets(),
        &tha,
        &tpa.octets(),
    )
    .expect("arp packet");
    let mut v = Vec::new();
    PacketBuilder::ethernet2(sha, eth_dst)
        .arp(arp)
        .write(&mut v)
        .expect("build arp");
    v
}

/// The peer asks who has `tpa` (broadcast).
pub fn arp_request(spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    arp_frame(ArpOperation::REQUEST, BCAST_MAC, PEER_MAC, spa, [0; 6], tpa)
}

/// The peer answers "`spa` is at `sha`" to the stack.
pub fn arp_reply(sha: [u8; 6], spa: Ipv4Addr) -> Vec<u8> {
    arp_frame(ArpOperation::REPLY, STACK_MAC, sha, spa, STACK_MAC, STACK_IP)
}

// ---------------------------------------------------------------------------------------------
// Parsing what blink sends (etherparse is the oracle)

pub fn parse(frame: &[u8]) -> PacketHeaders<'_> {
    PacketHeaders::from_ethernet_slice(frame).unwrap_or_else(|e| panic!("etherparse rejects {frame:02x?}: {e}"))
}

pub fn eth_of(frame: &[u8]) -> Ethernet2Header {
    match parse(frame).link {
        Some(LinkHeader::Ethernet2(e)) => e,
        other => panic!("not Ethernet II: {other:?}"),
    }
}

/// The ARP packet of a frame blink sent, with its Ethernet header.
pub fn parse_arp(frame: &[u8]) -> (Ethernet2Header, ArpEthIpv4Packet) {
    let p = parse(frame);
    let eth = match p.link {
        Some(LinkHeader::Ethernet2(e)) => e,
        other => panic!("not Ethernet II: {other:?}"),
    };
    assert_eq!(eth.ether_type, EtherType::ARP);
    match p.net {
        Some(NetHeaders::Arp(a)) => (eth, a.try_eth_ipv4().expect("Ethernet/IPv4 ARP")),
        other => panic!("not ARP: {other:?}"),
    }
}

pub fn is_arp(frame: &[u8]) -> bool {
    frame.len() >= 14 && u16::from_be_bytes([frame[12], frame[13]]) == ETH_P_ARP
}

/// An ICMP message blink sent, checked: IP header checksum and ICMP checksum valid.
pub struct IcmpOut {
    pub eth: Ethernet2Header,
    pub ip: Ipv4Header,
    pub icmp: Icmpv4Header,
    pub payload: Vec<u8>,
}

pub fn parse_icmp(frame: &[u8]) -> IcmpOut {
    let p = parse(frame);
    let eth = match p.link {
        Some(LinkHeader::Ethernet2(e)) => e,
        other => panic!("not Ethernet II: {other:?}"),
    };
    assert_eq!(eth.ether_type, EtherType::IPV4);
    let ip = match p.net {
        Some(NetHeaders::Ipv4(h, _)) => h,
        other => panic!("not IPv4: {other:?}"),
    };
    assert_eq!(ip.protocol, IpNumber::ICMP);
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IP header checksum of {frame:02x?}"
    );
    assert_eq!(
        ip.total_len as usize + 14,
        frame.len(),
        "no padding on what blink sends"
    );
    let icmp = match p.transport {
        Some(TransportHeader::Icmpv4(i)) => i,
        other => panic!("not ICMP: {other:?}"),
    };
    let payload = p.payload.slice().to_vec();
    let ok = Icmpv4Header::with_checksum(icmp.icmp_type.clone(), &payload).checksum;
    assert_eq!(icmp.checksum, ok, "ICMP checksum of {frame:02x?}");
    assert_eq!(inet_csum(&frame[14 + ip.header_len()..]), 0, "ICMP checksum (RFC 1071)");
    IcmpOut { eth, ip, icmp, payload }
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/// xorshift64* — small, seeded, reproducible.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// The seed for randomized tests: `BLINK_SEED` if set (the one seed every crate's wire tests
/// read), else the test's fixed default. Printed with the test's output, which libtest shows
/// when it fails, so a failure can be replayed.
pub fn test_seed(default: u64) -> u64 {
    let seed = match std::env::var("BLINK_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("BLINK_SEED: `{v}` is not an integer")),
        Err(_) => default,
    };
    println!("seed = {seed} (replay with BLINK_SEED={seed})");
    seed
}
