//! Two glue instances on the in-memory wire, one thread, a virtual clock.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use blink_glue::netcore::drivers::impair::ImpairConfig;
use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::tcp::TcpConfig;
use blink_glue::{Glue, GlueBuilder, GlueHandler};

pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const A_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 1]);
pub const B_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 2]);

pub struct Pair<U> {
    pub pool: Mempool,
    pub vc: VirtualClock,
    pub a: Glue<U>,
    pub b: Glue<U>,
}

/// The one seed of a test run: BLINK_SEED from the environment, else 1 (as TCP's script
/// tests). Through [`seeded`] it fixes every stack's ISNs, timestamp offsets, SYN-cookie secret
/// and ephemeral-port start, so a seed replays a run. Printed once per test: libtest runs each
/// test on a thread of its own and shows what it printed only when it fails.
pub fn seed() -> u64 {
    thread_local!(static PRINTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    let seed = match std::env::var("BLINK_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("BLINK_SEED: `{v}` is not an integer")),
        Err(_) => 1,
    };
    if !PRINTED.with(|p| p.replace(true)) {
        println!("TCP seed {seed} (replay with BLINK_SEED={seed})");
    }
    seed
}

/// `cfg` with [`seed`] unless the test fixed a seed of its own. Every builder in these tests
/// passes its TcpConfig through here (a builder without `.tcp()` would get random keys).
pub fn seeded(cfg: TcpConfig) -> TcpConfig {
    TcpConfig {
        seed: cfg.seed.or_else(|| Some(seed())),
        ..cfg
    }
}

/// Short TIME-WAIT so tests can wait for every socket to be gone.
pub fn cfg() -> TcpConfig {
    TcpConfig {
        timewait_ms: 1000,
        ..Default::default()
    }
}

pub fn pair<U>(tcp_a: TcpConfig, tcp_b: TcpConfig) -> Pair<U> {
    pair_with(tcp_a, tcp_b, None, None)
}

/// A pair whose A side goes through the builder's fault injection and pcap capture.
pub fn pair_with<U>(
    tcp_a: TcpConfig,
    tcp_b: TcpConfig,
    impair_a: Option<ImpairConfig>,
    pcap_a: Option<&std::path::Path>,
) -> Pair<U> {
    let pool = Mempool::new(&MempoolConfig {
        n: 16384,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let clock = Clock::virtual_clock(&vc);
    let (wa, wb) = wire_pair(("a", "b"), (A_MAC, B_MAC), &WireConfig::default());
    let mut ab = GlueBuilder::new()
        .device(Box::new(wa))
        .addr("10.0.0.1/24".parse().unwrap())
        .static_arp(B_IP, B_MAC)
        .pool(pool.clone())
        .clock(clock.clone())
        .tcp(seeded(tcp_a));
    if let Some(cfg) = impair_a {
        ab = ab.impair(cfg);
    }
    if let Some(p) = pcap_a {
        ab = ab.pcap(p);
    }
    let a = ab.build().unwrap();
    let b = GlueBuilder::new()
        .device(Box::new(wb))
        .addr("10.0.0.2/24".parse().unwrap())
        .pool(pool.clone())
        .clock(clock)
        .tcp(seeded(tcp_b))
        .build()
        .unwrap();
    Pair { pool, vc, a, b }
}

impl<U> Pair<U> {
    fn advance(&self, n: usize) {
        // Idle: let a jiffy pass so timers (delayed ACK, RTO, TIME-WAIT) fire.
        if n == 0 {
            self.vc.advance_ms(1);
        } else {
            self.vc.advance(std::time::Duration::from_micros(20));
        }
    }

    /// One poll of each side (pull mode: events stay on the lists).
    pub fn step(&mut self) -> usize {
        let n = self.a.periodic() + self.b.periodic();
        self.advance(n);
        n
    }

    /// One poll of each side with callbacks.
    pub fn step_with(&mut self, ha: &mut impl GlueHandler<U>, hb: &mut impl GlueHandler<U>) -> usize {
        let n = self.a.periodic_with(ha) + self.b.periodic_with(hb);
        self.advance(n);
        n
    }

    /// One poll of each side, A with callbacks, B in pull mode (the test takes B's events).
    pub fn step_a_with(&mut self, ha: &mut impl GlueHandler<U>) -> usize {
        let n = self.a.periodic_with(ha) + self.b.periodic();
        self.advance(n);
        n
    }

    /// Run until every socket on both sides is gone and the frames on the wire are delivered
    /// (a datagram test can end with one in flight), then check the pool is whole: a leaked
    /// mbuf stays in use however long this runs.
    pub fn drain_and_check(&mut self) {
        for _ in 0..100_000 {
            if self.a.protocol_sockets() == 0 && self.b.protocol_sockets() == 0 && self.pool.in_use() == 0 {
                break;
            }
            self.step();
        }
        assert_eq!(self.a.protocol_sockets(), 0, "A still has sockets");
        assert_eq!(self.b.protocol_sockets(), 0, "B still has sockets");
        assert_eq!(self.a.open_sockets(), 0, "A's application still holds sockets");
        assert_eq!(self.b.open_sockets(), 0, "B's application still holds sockets");
        assert_eq!(self.pool.in_use(), 0, "mbufs leaked");
    }
}

/// Byte `i` of the test stream.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

pub fn fill(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(offset + i as u64);
    }
}
