//! Two blink hosts with UDP on the in-memory wire, driven by one thread under a virtual clock,
//! and a single host whose wire peer is the test itself (to inject hand-made frames).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_ipv4::{Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::{Burst, NetDevice};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::{EthAddr, Mempool, MempoolCache, MempoolConfig};
use blink_udp::{udp_init, UdpConfig};

pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const A_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const B_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn pool() -> Mempool {
    Mempool::new(&MempoolConfig {
        n: 8192,
        ..Default::default()
    })
    .unwrap()
}

pub struct Pair {
    pub pool: Mempool,
    pub vc: VirtualClock,
    pub a: Stack,
    pub b: Stack,
}

pub fn pair(cfg: UdpConfig) -> Pair {
    pair_with_mtu(cfg, 1500)
}

pub fn pair_with_mtu(cfg: UdpConfig, mtu: usize) -> Pair {
    let pool = pool();
    let vc = VirtualClock::new();
    let clock = Clock::virtual_clock(&vc);
    let wcfg = WireConfig {
        mtu,
        ..Default::default()
    };
    let (wa, wb) = wire_pair(("a", "b"), (EthAddr(A_MAC), EthAddr(B_MAC)), &wcfg);
    let mut a = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
    let mut b = Stack::new(0, 1, clock, &pool, StackConfig::default());
    let ia = a.add_device(Box::new(wa), 0);
    let ib = b.add_device(Box::new(wb), 0);
    a.add_addr(ia, "10.0.0.1/24".parse().unwrap()).unwrap();
    b.add_addr(ib, "10.0.0.2/24".parse().unwrap()).unwrap();
    udp_init(&mut a, cfg.clone());
    udp_init(&mut b, cfg);
    Pair { pool, vc, a, b }
}

impl Pair {
    /// Poll both stacks once; when nothing moved let 1 ms of virtual time pass.
    pub fn step(&mut self) -> usize {
        let n = self.a.poll() + self.b.poll();
        if n == 0 {
            self.vc.advance_ms(1);
        }
        n
    }

    pub fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Let everything in flight settle.
    pub fn settle(&mut self) {
        for _ in 0..20 {
            self.step();
        }
    }
}

/// One stack on a wire whose other end the test drives by hand.
pub struct Host {
    pub pool: Mempool,
    pub vc: VirtualClock,
    pub stack: Stack,
    pub peer: WireDev,
    pub cache: MempoolCache,
}

pub fn host(cfg: UdpConfig) -> Host {
    let pool = pool();
    let vc = VirtualClock::new();
    let (wa, wb) = wire_pair(
        ("blink0", "peer0"),
        (EthAddr(A_MAC), EthAddr(B_MAC)),
        &WireConfig::default(),
    );
    let mut stack = Stack::new(0, 1, Clock::virtual_clock(&vc), &pool, StackConfig::default());
    stack.add_device(Box::new(wa), 0);
    stack.add_addr(0, "10.0.0.1/24".parse().unwrap()).unwrap();
    blink_ipv4::neighbour::neigh_add_static(&mut stack, B_IP, EthAddr(B_MAC), 0);
    udp_init(&mut stack, cfg);
    let cache = pool.cache();
    let mut h = Host {
        pool,
        vc,
        stack,
        peer: wb,
        cache,
    };
    h.stack.flush_tx();
    h.recv();
    h
}

impl Host {
    /// Put `frame` on the wire towards the stack and let it process it.
    pub fn inject(&mut self, frame: &[u8]) {
        let skb = SkBuff::from_slice(&mut self.cache, frame).expect("frame fits one mbuf");
        let mut burst = Burst::new();
        burst.push(skb);
        assert_eq!(self.peer.tx_burst(0, &mut burst), 1);
        self.stack.poll();
    }

    /// Every frame the stack sent, as bytes.
    pub fn recv(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut burst = Burst::new();
            if self.peer.rx_burst(0, &mut burst) == 0 {
                break;
            }
            for skb in burst {
                let mut v = Vec::new();
                for s in skb.segments() {
                    v.extend_from_slice(s);
                }
                out.push(v);
            }
        }
        out
    }

    /// Drain the wire and prove every buffer is back in the pool.
    pub fn assert_no_leak(mut self) {
        self.stack.flush_tx();
        self.recv();
        drop(self.cache);
        let pool = self.pool.clone();
        drop(self.stack);
        assert_eq!(pool.in_use(), 0, "mbufs leaked");
    }
}

/// An Ethernet + IPv4 + UDP frame from the peer (10.0.0.2) to the stack (10.0.0.1), built by
/// etherparse with a correct checksum.
pub fn udp_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_frame_to(A_IP, sport, dport, payload)
}

pub fn udp_frame_to(dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let dmac = if dst.is_broadcast() || dst.octets()[3] == 255 {
        [0xff; 6]
    } else {
        A_MAC
    };
    let b = etherparse::PacketBuilder::ethernet2(B_MAC, dmac)
        .ipv4(B_IP.octets(), dst.octets(), 64)
        .udp(sport, dport);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

/// Offsets in a frame from `udp_frame`.
pub const IP_OFF: usize = 14;
pub const UDP_OFF: usize = 34;

/// Fix the IPv4 header checksum after editing the header.
pub fn fix_ip_csum(frame: &mut [u8]) {
    blink_ipv4::iphdr::Ipv4Hdr::new_unchecked(&mut frame[IP_OFF..IP_OFF + 20]).fill_checksum();
}

pub fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed * 7) ^ (i >> 8)) as u8).collect()
}
