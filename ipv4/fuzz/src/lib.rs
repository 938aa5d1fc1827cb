//! The harness behind blink's IPv4 fuzz targets (and, through this library, the TCP, UDP and
//! whole-stack ones): one blink `Stack` at 10.0.0.1 on one end of an in-memory wire, the
//! fuzzer playing the peer 10.0.0.2 (and any other host) on the other end, under a virtual
//! clock.
//!
//! Inputs are decoded with [`Input`] (over `arbitrary::Unstructured`): a fixed sequence of
//! bytes and big-endian integers read from the front, so that the seed generators
//! (`tests/seeds.rs`) can encode exactly the structure they mean, and libFuzzer's mutations
//! of those bytes stay structured. Every target checks invariants, not only "no panic":
//!
//! - every frame the stack sends is well formed ([`check_output`]): Ethernet from our MAC, ARP
//!   replies from us, IPv4 headers with a valid checksum and the right total length, ICMP
//!   messages with a valid checksum, tunnel packets whose inner packet is well formed too;
//! - a packet a transport protocol receives has its data at the transport header and exactly
//!   the length its IP header announces; an ICMP error reaching a protocol's `err_handler`
//!   quotes an IP header and 8 bytes after it (the contract of `InetProtocol::err_handler`);
//! - `Ip` counters add up: every received datagram is counted once as delivered, unknown,
//!   or in error, fragments as reassembly requests ([`check_ip_counters`]);
//! - once the input is done and virtual time has run past every timer (reassembly, ARP,
//!   ICMP rate limit), every mbuf is back in the pool and reassembly holds nothing
//!   ([`Host::settle_and_check`]).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use arbitrary::Unstructured;
use blink_ipv4::iphdr::Ipv4Hdr;
use blink_ipv4::stack::{InetProtocol, RawDeliver};
pub use blink_ipv4::{Ipv4Cidr, Stack, StackConfig};
use blink_netcore::checksum::{ip_fast_csum, Csum};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::{tx_burst_from_front, Burst, DevStats, NetDevice};
use blink_netcore::skbuff::{SkBuff, SkBuffHead};
use blink_netcore::snmp::{IpMib, Mib, SoftnetMib};
use blink_netcore::{EthAddr, Mbuf, Mempool, MempoolCache, MempoolConfig};

pub use arbitrary;
pub use blink_ipv4;
pub use blink_netcore;

pub const STACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
/// A protocol number nothing in blink uses: the probe takes it where a target registers one.
pub const PROBE_PROTO: u8 = 253;

// ---------------------------------------------------------------------------------------------
// Input decoding

/// The fuzzer's bytes, read from the front. Past the end every read yields zeroes, so any
/// input decodes.
pub struct Input<'a> {
    u: Unstructured<'a>,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input {
            u: Unstructured::new(data),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.u.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        self.u.arbitrary::<u8>().unwrap_or(0)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.u.len());
        self.u.bytes(n).unwrap_or(&[])
    }

    /// A length byte (scaled by `unit`), then that many bytes.
    pub fn blob(&mut self, unit: usize) -> Vec<u8> {
        let n = self.u8() as usize * unit;
        self.bytes(n).to_vec()
    }

    /// One of `choices`, by a byte.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.u8() as usize % choices.len()]
    }
}

/// The encoder matching [`Input`], for the seed generators.
#[derive(Default, Clone)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A length byte counting `unit`s, then the bytes (`b.len()` must be a multiple of `unit`).
    pub fn blob(&mut self, unit: usize, b: &[u8]) -> &mut Self {
        assert!(b.len() % unit == 0 && b.len() / unit < 256);
        self.u8((b.len() / unit) as u8);
        self.bytes(b)
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses the fuzzer chooses among

/// Source addresses: the peer, other hosts on the link, a host off it, and every martian
/// class `ip_rcv_finish` must refuse.
pub const SRC_ADDRS: [Ipv4Addr; 12] = [
    PEER_IP,
    PEER_IP,
    PEER_IP,
    Ipv4Addr::new(10, 0, 0, 3),
    Ipv4Addr::new(10, 0, 0, 200),
    Ipv4Addr::new(192, 0, 2, 7),
    Ipv4Addr::new(0, 0, 0, 0),
    Ipv4Addr::new(255, 255, 255, 255),
    Ipv4Addr::new(10, 0, 0, 255),
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(224, 0, 0, 1),
    STACK_IP,
];

/// Destination addresses: us, the broadcasts, another host, a multicast group.
pub const DST_ADDRS: [Ipv4Addr; 8] = [
    STACK_IP,
    STACK_IP,
    STACK_IP,
    STACK_IP,
    Ipv4Addr::new(255, 255, 255, 255),
    Ipv4Addr::new(10, 0, 0, 255),
    Ipv4Addr::new(10, 0, 0, 9),
    Ipv4Addr::new(224, 0, 0, 1),
];

/// An address from `table`, or (selector 255) four raw bytes.
pub fn addr(inp: &mut Input, table: &[Ipv4Addr]) -> Ipv4Addr {
    let s = inp.u8();
    if s == 255 {
        return Ipv4Addr::from(inp.u32());
    }
    table[s as usize % table.len()]
}

/// Destination MACs: ours (mostly), broadcast, a multicast, another host's.
pub fn eth_dst(inp: &mut Input) -> [u8; 6] {
    match inp.u8() % 8 {
        4 => [0xff; 6],
        5 => [0x01, 0x00, 0x5e, 0, 0, 1],
        6 => [0x02, 0, 0, 0, 0, 0x99],
        _ => STACK_MAC,
    }
}

// ---------------------------------------------------------------------------------------------
// Building frames

/// The Internet checksum (RFC 1071), independent of blink's.
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

/// Checksum over the TCP/UDP pseudo-header and `seg`.
pub fn l4_csum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8]) -> u16 {
    let mut v = Vec::with_capacity(12 + seg.len());
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(&[0, proto]);
    v.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    v.extend_from_slice(seg);
    inet_csum(&v)
}

pub fn eth_frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header as the fuzzer describes it. Built by [`IpSpec::build`].
#[derive(Clone, Debug)]
pub struct IpSpec {
    pub version: u8,
    /// Header length in 32-bit words as written; options fill the words past 5.
    pub ihl: u8,
    pub tos: u8,
    /// None: the right total length; Some: this value, whatever the packet holds.
    pub tot_len: Option<u16>,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub options: Vec<u8>,
    /// False: leave the checksum field as `bad_csum`.
    pub fix_csum: bool,
    pub bad_csum: u16,
}

impl IpSpec {
    /// A plain, valid header from the peer to us.
    pub fn new(proto: u8) -> IpSpec {
        IpSpec {
            version: 4,
            ihl: 5,
            tos: 0,
            tot_len: None,
            id: 0x1234,
            frag_off: 0,
            ttl: 64,
            proto,
            src: PEER_IP,
            dst: STACK_IP,
            options: Vec::new(),
            fix_csum: true,
            bad_csum: 0,
        }
    }

    /// Decode: a mode byte says which fields are taken from the input (a valid header from the
    /// peer to us otherwise), so that most inputs reach past `ip_rcv`.
    pub fn decode(inp: &mut Input, proto: u8) -> IpSpec {
        let mut s = IpSpec::new(proto);
        let mode = inp.u8();
        if mode & 1 != 0 {
            s.src = addr(inp, &SRC_ADDRS);
            s.dst = addr(inp, &DST_ADDRS);
        }
        if mode & 2 != 0 {
            // Options: whole words (the header keeps its IHL consistent with them).
            let words = (inp.u8() % 11) as usize;
            let mut o = inp.bytes(words * 4).to_vec();
            o.resize(words * 4, 0);
            s.options = o;
            s.ihl = 5 + words as u8;
        }
        if mode & 4 != 0 {
            s.id = inp.u16();
            s.frag_off = inp.u16();
        }
        if mode & 8 != 0 {
            s.tos = inp.u8();
            s.ttl = inp.u8();
        }
        if mode & 16 != 0 {
            s.proto = inp.u8();
        }
        if mode & 32 != 0 {
            // Lies about the header itself.
            s.version = inp.u8() >> 4;
            s.ihl = inp.u8() & 0x0f;
            s.tot_len = Some(inp.u16());
        }
        if mode & 64 != 0 {
            s.fix_csum = false;
            s.bad_csum = inp.u16();
        }
        s
    }

    pub fn encode_default(e: &mut Enc) {
        e.u8(0);
    }

    /// Header + `payload`.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let hl = 20 + self.options.len();
        let mut p = vec![0u8; hl];
        p[0] = (self.version << 4) | (self.ihl & 0x0f);
        p[1] = self.tos;
        let tot = self.tot_len.unwrap_or((hl + payload.len()).min(65535) as u16);
        p[2..4].copy_from_slice(&tot.to_be_bytes());
        p[4..6].copy_from_slice(&self.id.to_be_bytes());
        p[6..8].copy_from_slice(&self.frag_off.to_be_bytes());
        p[8] = self.ttl;
        p[9] = self.proto;
        p[12..16].copy_from_slice(&self.src.octets());
        p[16..20].copy_from_slice(&self.dst.octets());
        p[20..].copy_from_slice(&self.options);
        let c = if self.fix_csum {
            // Over the header as its IHL says, when it is inside what we wrote.
            let n = ((self.ihl & 0x0f) as usize * 4).clamp(20, hl);
            inet_csum(&p[..n])
        } else {
            self.bad_csum
        };
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }
}

/// An ICMP message (header + body) with a correct checksum.
pub fn icmp_msg(ty: u8, code: u8, rest: u32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(body);
    let c = inet_csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An Ethernet/IPv4 ARP packet body (28 bytes).
#[allow(clippy::too_many_arguments)]
pub fn arp_body(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut b = vec![0, 1, 8, 0, 6, 4];
    b.extend_from_slice(&op.to_be_bytes());
    b.extend_from_slice(&sha);
    b.extend_from_slice(&spa.octets());
    b.extend_from_slice(&tha);
    b.extend_from_slice(&tpa.octets());
    b
}

// ---------------------------------------------------------------------------------------------
// The probe protocol and raw hook

/// What the probes saw.
#[derive(Default, Debug)]
pub struct ProbeLog {
    /// Packets received per protocol number.
    pub received: std::collections::BTreeMap<u8, u64>,
    /// (IP header, transport payload) of every packet received by the probe protocols, when
    /// `keep` is set.
    pub packets: Vec<(Vec<u8>, Vec<u8>)>,
    pub keep: bool,
    /// ICMP errors delivered to `err_handler`, and what they quoted.
    pub errors: Vec<(u8, u8, Vec<u8>)>,
    pub raw_clones: u64,
}

pub type Log = Arc<Mutex<ProbeLog>>;

/// A transport protocol that checks what IP hands it, then consumes it.
pub struct Probe {
    pub proto: u8,
    pub log: Log,
}

impl InetProtocol for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn handler(&mut self, _stack: &mut Stack, skb: SkBuff) {
        let nh = skb.skb_network_header();
        let ip = Ipv4Hdr::new_checked(nh).expect("delivered packet: network header readable");
        let hl = ip.header_len();
        assert!(hl >= 20 && nh.len() >= hl, "delivered packet: header length {hl}");
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.protocol(), self.proto, "delivered to the wrong protocol");
        assert!(!ip.is_fragment(), "a fragment was delivered to a protocol");
        assert_eq!(ip_fast_csum(&nh[..hl]), 0, "delivered packet: IP checksum");
        assert_eq!(
            ip.total_len() as usize,
            hl + skb.len(),
            "delivered packet: the IP total length and the skb disagree (data at the transport header)"
        );
        assert_eq!(skb.skb_transport_offset(), 0, "data must sit at the transport header");
        let mut payload = vec![0u8; skb.len()];
        assert!(skb.skb_copy_bits(0, &mut payload));
        let mut log = self.log.lock().unwrap();
        *log.received.entry(self.proto).or_default() += 1;
        if log.keep {
            log.packets.push((nh[..hl].to_vec(), payload));
        }
    }

    fn err_handler(&mut self, _stack: &mut Stack, ty: u8, code: u8, _info: u32, inner: &[u8]) {
        // The contract: the quoted IP header and at least 8 bytes of transport header.
        assert!(inner.len() >= 20, "err_handler: quote shorter than an IP header");
        let ihl = (inner[0] & 0x0f) as usize * 4;
        assert!(ihl >= 20, "err_handler: quoted IHL {ihl}");
        assert!(
            inner.len() >= ihl + 8,
            "err_handler: fewer than 8 bytes after the quoted header"
        );
        assert_eq!(inner[9], self.proto, "err_handler: called for another protocol");
        self.log
            .lock()
            .unwrap()
            .errors
            .push((ty, code, inner[..ihl + 8].to_vec()));
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// A raw-socket hook that keeps a clone of every packet of `proto` (sharing its buffers, as
/// raw sockets do) until the harness lets them go: clones that outlive the packet's trip
/// through the stack are what make buffers shared.
pub struct RawProbe {
    pub protos: Vec<u8>,
    pub held: SkBuffHead,
    pub log: Log,
}

impl RawDeliver for RawProbe {
    fn raw_local_deliver(&mut self, stack: &mut Stack, skb: &SkBuff, protocol: u8) -> bool {
        if !self.protos.contains(&protocol) {
            return false;
        }
        let Some(c) = skb.skb_clone(&mut stack.core.cache) else {
            return false;
        };
        assert!(
            Ipv4Hdr::new_checked(c.data()).is_ok(),
            "raw delivery: data at the IP header"
        );
        self.held.skb_queue_tail(c);
        self.log.lock().unwrap().raw_clones += 1;
        true
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Let the raw probe's clones go.
pub fn raw_release(stack: &mut Stack) {
    stack.with_raw(|_, r| {
        if let Some(p) = r.as_any_mut().downcast_mut::<RawProbe>() {
            p.held.purge();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The device

/// What the fuzzer's device holds: frames for the stack, frames from it.
#[derive(Default)]
pub struct Link {
    pub to_stack: std::collections::VecDeque<SkBuff>,
    pub from_stack: std::collections::VecDeque<SkBuff>,
}

/// A minimal in-memory device (the wire's behaviour without its RSS emulation, whose
/// Toeplitz tables would cost more to set up than most inputs take to run): frames cross as
/// skbs, their per-layer state reset as the wire does.
pub struct FuzzDev {
    pub link: Arc<Mutex<Link>>,
    pub mac: EthAddr,
}

impl NetDevice for FuzzDev {
    fn name(&self) -> &str {
        "fuzz0"
    }
    fn mac(&self) -> EthAddr {
        self.mac
    }
    fn mtu(&self) -> usize {
        1500
    }
    fn rx_burst(&mut self, _queue: u16, out: &mut Burst) -> usize {
        let mut l = self.link.lock().unwrap();
        let mut n = 0;
        while !out.is_full() {
            let Some(skb) = l.to_stack.pop_front() else { break };
            out.push(skb);
            n += 1;
        }
        n
    }
    fn tx_burst(&mut self, _queue: u16, pkts: &mut Burst) -> usize {
        let mut l = self.link.lock().unwrap();
        tx_burst_from_front(pkts, |mut skb| {
            skb.reset_for_rx();
            l.from_stack.push_back(skb);
            Ok(())
        })
        .0
    }
    fn stats(&self) -> DevStats {
        DevStats::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The host under test

pub struct Host {
    pub stack: Stack,
    pub link: Arc<Mutex<Link>>,
    pub clock: VirtualClock,
    pub pool: Mempool,
    /// The peer's buffers come from the stack's pool, so leak checks cover them too.
    pub cache: MempoolCache,
    pub baseline: usize,
    pub log: Log,
    /// Frames injected so far (each reaches the stack's device: the ring is drained per poll).
    pub injected: u64,
    /// Every frame the stack sent.
    pub sent: Vec<Vec<u8>>,
    /// Keep what the stack sends in `sent` (targets with an oracle on the answers).
    pub keep_sent: bool,
}

/// Options of [`Host::new`].
pub struct HostOpts {
    pub cfg: StackConfig,
    pub pool_n: usize,
    /// Register the probe for these protocol numbers.
    pub probes: Vec<u8>,
    /// Install the raw probe for these protocol numbers (empty: no raw hook).
    pub raw: Vec<u8>,
    /// A static neighbour entry for the peer (answers leave without ARP).
    pub static_peer: bool,
}

impl Default for HostOpts {
    fn default() -> Self {
        HostOpts {
            cfg: StackConfig::default(),
            pool_n: 512,
            probes: vec![PROBE_PROTO],
            raw: Vec::new(),
            static_peer: true,
        }
    }
}

/// A pool of `n` buffers, made once per process and reused by every input: creating one
/// (zeroing megabytes of data rooms) would cost more than most inputs take to run. Each
/// input checks that it gives back every buffer it took, so nothing carries over but the
/// order of the free list.
pub fn shared_pool(n: usize) -> Mempool {
    static POOLS: Mutex<Vec<(usize, Mempool)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = pools.iter().find(|(k, _)| *k == n) {
        return p.clone();
    }
    let p = Mempool::new(&MempoolConfig {
        name: "fuzz".into(),
        n,
        cache_size: 32,
        ..Default::default()
    })
    .expect("pool");
    pools.push((n, p.clone()));
    p
}

impl Host {
    pub fn new(o: HostOpts) -> Host {
        Self::with_setup(o, |_| {})
    }

    /// A host, with `setup` run on the stack (tunnels, sockets) before the baseline is taken.
    pub fn with_setup(o: HostOpts, setup: impl FnOnce(&mut Stack)) -> Host {
        let pool = shared_pool(o.pool_n);
        let clock = VirtualClock::new();
        let link: Arc<Mutex<Link>> = Arc::default();
        let a = FuzzDev {
            link: link.clone(),
            mac: EthAddr(STACK_MAC),
        };
        let mut stack = Stack::new(0, 1, Clock::virtual_clock(&clock), &pool, o.cfg);
        let dev = stack.add_device(Box::new(a), 0);
        stack.add_addr(dev, Ipv4Cidr::new(STACK_IP, 24).unwrap()).unwrap();
        if o.static_peer {
            blink_ipv4::neighbour::neigh_add_static(&mut stack, PEER_IP, EthAddr(PEER_MAC), dev);
        }
        let log: Log = Arc::default();
        for &p in &o.probes {
            stack
                .inet_add_protocol(
                    p,
                    Box::new(Probe {
                        proto: p,
                        log: log.clone(),
                    }),
                )
                .unwrap();
        }
        if !o.raw.is_empty() {
            stack.set_raw_handler(Box::new(RawProbe {
                protos: o.raw.clone(),
                held: SkBuffHead::new(),
                log: log.clone(),
            }));
        }
        setup(&mut stack);
        let cache = pool.cache();
        let mut h = Host {
            stack,
            link,
            clock,
            pool,
            cache,
            baseline: 0,
            log,
            injected: 0,
            sent: Vec::new(),
            keep_sent: false,
        };
        h.stack.flush_tx();
        h.drain();
        h.sent.clear();
        h.baseline = h.pool.in_use();
        h
    }

    /// Put `frame` on the wire, split into a chain of mbufs at `splits` (offsets, each a
    /// segment boundary; a received multi-segment frame becomes a non-linear skb), and let
    /// the stack process it. Frames that do not fit the buffers are cut short. False when the
    /// pool had no buffer for it (the stack holds them all, e.g. TCP under memory pressure):
    /// then nothing was sent, as a NIC drops what it has no descriptor for.
    pub fn inject_split(&mut self, frame: &[u8], splits: &[usize]) -> bool {
        let room = self.pool.buf_size() - 128;
        let mut cuts: Vec<usize> = splits.iter().copied().filter(|&s| s > 0 && s < frame.len()).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut segs: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain(std::iter::once(frame.len())) {
            let mut piece = &frame[at..c];
            while piece.len() > room {
                segs.push(&piece[..room]);
                piece = &piece[room..];
            }
            segs.push(piece);
            at = c;
        }
        segs.truncate(8);
        let mut chain: Option<Mbuf> = None;
        for s in segs.iter().rev() {
            let Some(mut m) = self.cache.alloc() else { return false };
            assert!(m.append_slice(s));
            if let Some(rest) = chain.take() {
                m.set_next(Some(rest)).expect("fresh mbuf is unique");
            }
            chain = Some(m);
        }
        let Some(head) = chain else { return false };
        let skb = SkBuff::from_mbuf(head).expect("a fresh chain is an skb");
        self.send_skb(skb);
        true
    }

    /// [`Harness::inject_split`] in one buffer.
    pub fn inject(&mut self, frame: &[u8]) -> bool {
        self.inject_split(frame, &[])
    }

    pub fn send_skb(&mut self, mut skb: SkBuff) {
        skb.reset_for_rx();
        self.link.lock().unwrap().to_stack.push_back(skb);
        self.injected += 1;
        self.poll();
    }

    /// One poll of the stack, then collect (and check) what it sent.
    pub fn poll(&mut self) {
        self.stack.poll();
        self.drain();
    }

    /// Let `ms` of virtual time pass (in steps of at most a second, polling after each).
    pub fn advance(&mut self, ms: u64) {
        let mut left = ms;
        while left > 0 {
            let step = left.min(1000);
            self.clock.advance_ms(step);
            self.poll();
            left -= step;
        }
    }

    /// Collect every frame the stack sent, checking each.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        loop {
            let Some(skb) = self.link.lock().unwrap().from_stack.pop_front() else {
                break;
            };
            let mut f = vec![0u8; skb.len()];
            assert!(skb.skb_copy_bits(0, &mut f));
            drop(skb);
            check_output(&f);
            if self.keep_sent {
                self.sent.push(f);
            }
            n += 1;
        }
        n
    }

    pub fn mib(&self) -> &Mib {
        &self.stack.core.mib
    }

    /// Run virtual time past every timer that holds buffers (reassembly's 30 s, ARP's
    /// retries, queued packets waiting for a neighbour), let the raw probe's clones go, then
    /// check the end state: nothing in reassembly, every mbuf back, counters consistent.
    pub fn settle_and_check(&mut self) {
        raw_release(&mut self.stack);
        // Steps of 2 s: each poll runs every timer due by then (an ARP retry re-arms for a
        // second later, so each step moves a resolution one retry on). Time is what costs
        // here (the wheel ticks every jiffy), so stop as soon as nothing is held.
        let steps = (self.stack.cfg.ipfrag_time_ms + 10_000) / 2000;
        for _ in 0..steps {
            if self.stack.frags.queues() == 0 && self.pool.in_use() == self.baseline {
                break;
            }
            self.clock.advance_ms(2000);
            self.poll();
            raw_release(&mut self.stack);
        }
        assert_eq!(self.stack.frags.queues(), 0, "reassembly queues left after ipfrag_time");
        assert_eq!(self.stack.frags.mem(), 0, "reassembly memory left after ipfrag_time");
        assert!(self.stack.backlog.is_empty(), "backlog left after a poll");
        self.stack.flush_tx();
        self.drain();
        check_ip_counters(self.mib());
        assert_eq!(
            self.mib().softnet.get(SoftnetMib::Processed),
            self.injected,
            "Softnet.Processed counts every frame the device received"
        );
        assert_eq!(
            self.pool.in_use(),
            self.baseline,
            "mbuf leak: {} in use, {} at the start",
            self.pool.in_use(),
            self.baseline
        );
    }
}

/// Every datagram `ip_rcv` counted in `InReceives` ends in exactly one place: a header or
/// address error, truncated, refused by policy (`InDiscards`: a source route), queued for
/// reassembly (`ReasmReqds`, per fragment), or handed
/// to a protocol (`InDelivers`) or refused as unknown (`InUnknownProtos`) — reassembled
/// datagrams (`ReasmOKs`) going through the last two once more.
pub fn check_ip_counters(mib: &Mib) {
    let g = |c| mib.ip.get(c);
    let ends = g(IpMib::InHdrErrors)
        + g(IpMib::InTruncatedPkts)
        + g(IpMib::InAddrErrors)
        + g(IpMib::InDiscards)
        + g(IpMib::ReasmReqds)
        + g(IpMib::InDelivers)
        + g(IpMib::InUnknownProtos);
    assert_eq!(
        g(IpMib::InReceives) + g(IpMib::ReasmOKs),
        ends,
        "Ip counters do not add up: {}",
        mib.snmp()
    );
    assert!(g(IpMib::InCsumErrors) <= g(IpMib::InHdrErrors));
    assert!(g(IpMib::ReasmOKs) <= g(IpMib::ReasmReqds));
}

// ---------------------------------------------------------------------------------------------
// Checking what the stack sends

/// A frame blink sent must be well formed: see the module documentation.
pub fn check_output(f: &[u8]) {
    assert!(f.len() >= 14, "runt frame sent: {f:02x?}");
    assert_eq!(f[6..12], STACK_MAC, "frame not from our MAC");
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    match ethertype {
        ETH_P_ARP => {
            let a = &f[14..];
            assert!(a.len() >= 28, "short ARP sent");
            assert_eq!(a[..6], [0, 1, 8, 0, 6, 4], "ARP header");
            let op = u16::from_be_bytes([a[6], a[7]]);
            assert!(op == 1 || op == 2, "ARP op {op}");
            assert_eq!(a[8..14], STACK_MAC, "ARP sender MAC");
            assert_eq!(a[14..18], STACK_IP.octets(), "ARP sender IP");
            if op == 2 {
                assert_eq!(f[0..6], a[18..24], "ARP reply sent to its target");
            }
        }
        ETH_P_IP => check_ip_out(&f[14..], 0),
        other => panic!("frame of ethertype {other:#06x} sent"),
    }
}

/// An IPv4 packet blink sent (at `depth` inside tunnels).
pub fn check_ip_out(p: &[u8], depth: usize) {
    assert!(depth < 8, "tunnels nested too deep in output");
    assert!(p.len() >= 20, "short IP packet sent");
    let ip = Ipv4Hdr::new_checked(p).expect("IP header sent");
    let hl = ip.header_len();
    assert_eq!(ip.version(), 4);
    assert!(hl >= 20 && hl <= p.len());
    assert_eq!(ip_fast_csum(&p[..hl]), 0, "IP header checksum sent: {:02x?}", &p[..hl]);
    assert_eq!(ip.total_len() as usize, p.len(), "IP total length sent (no padding)");
    assert!(ip.ttl() > 0, "TTL 0 sent");
    assert!(p.len() <= 1500 || depth > 0, "packet over the MTU sent");
    if ip.is_fragment() {
        return;
    }
    let body = &p[hl..];
    match ip.protocol() {
        1 => {
            assert!(body.len() >= 8, "short ICMP sent");
            let mut c = Csum::new();
            c.add(body);
            assert_eq!(c.finish(), 0, "ICMP checksum sent");
        }
        6 | 17 => {
            let min = if ip.protocol() == 6 { 20 } else { 8 };
            assert!(body.len() >= min, "short transport header sent");
            let c = l4_csum(ip.src(), ip.dst(), ip.protocol(), body);
            let stored = u16::from_be_bytes([
                body[if ip.protocol() == 6 { 16 } else { 6 }],
                body[if ip.protocol() == 6 { 17 } else { 7 }],
            ]);
            assert!(c == 0 || (ip.protocol() == 17 && stored == 0), "TCP/UDP checksum sent");
            if ip.protocol() == 17 {
                assert_eq!(
                    u16::from_be_bytes([body[4], body[5]]) as usize,
                    body.len(),
                    "UDP length sent"
                );
            }
        }
        4 => check_ip_out(body, depth + 1),
        47 => {
            assert!(body.len() >= 4, "short GRE sent");
            let flags = u16::from_be_bytes([body[0], body[1]]);
            let hl = 4 + 4
                * ((flags & 0x8000 != 0) as usize + (flags & 0x2000 != 0) as usize + (flags & 0x1000 != 0) as usize);
            assert!(body.len() >= hl);
            check_ip_out(&body[hl..], depth + 1);
        }
        _ => {}
    }
}

/// Parse what the stack sent: (IP header, payload) of IPv4 frames.
pub fn ip_of(f: &[u8]) -> Option<(&[u8], &[u8])> {
    if f.len() < 34 || u16::from_be_bytes([f[12], f[13]]) != ETH_P_IP {
        return None;
    }
    let p = &f[14..];
    let hl = (p[0] & 0x0f) as usize * 4;
    Some((&p[..hl], &p[hl..]))
}
