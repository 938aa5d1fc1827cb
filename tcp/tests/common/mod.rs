//! Two blink hosts on the in-memory wire, driven by one thread under a virtual clock.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use blink_ipv4::{Stack, StackConfig};
use blink_netcore::drivers::impair::{Impair, ImpairConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::NetDevice;
use blink_netcore::{EthAddr, Mempool, MempoolConfig};
use blink_tcp::{tcp_init, TcpConfig};

pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

pub struct Pair {
    pub pool: Mempool,
    pub vc: VirtualClock,
    pub a: Stack,
    pub b: Stack,
}

/// The one seed of a test run: BLINK_SEED from the environment, else 1 (as the script tests'
/// `seed()`). Through [`seeded`] it fixes every stack's ISNs, timestamp offsets, SYN-cookie
/// secret and ephemeral-port start, so a seed replays a run. Printed once per test: libtest
/// runs each test on a thread of its own and shows what it printed only when it fails.
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

/// `cfg` with [`seed`] unless the test fixed a seed of its own.
pub fn seeded(cfg: TcpConfig) -> TcpConfig {
    TcpConfig {
        seed: cfg.seed.or_else(|| Some(seed())),
        ..cfg
    }
}

/// Two stacks A (10.0.0.1) and B (10.0.0.2), both with `tcp` [`seeded`].
pub fn pair(impair: Option<ImpairConfig>, tcp: TcpConfig) -> Pair {
    let tcp = seeded(tcp);
    let pool = Mempool::new(&MempoolConfig {
        n: 32768,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let clock = Clock::virtual_clock(&vc);
    let (wa, wb) = wire_pair(
        ("a", "b"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig::default(),
    );
    let mut a = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
    let mut b = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
    let da: Box<dyn NetDevice> = match impair {
        Some(cfg) => Box::new(Impair::new(wa, cfg, clock.clone(), pool.cache())),
        None => Box::new(wa),
    };
    let ia = a.add_device(da, 0);
    let ib = b.add_device(Box::new(wb), 0);
    a.add_addr(ia, "10.0.0.1/24".parse().unwrap()).unwrap();
    b.add_addr(ib, "10.0.0.2/24".parse().unwrap()).unwrap();
    tcp_init(&mut a, tcp.clone());
    tcp_init(&mut b, tcp);
    Pair { pool, vc, a, b }
}

impl Pair {
    /// Poll both stacks once; when neither moved a frame, let 1 ms of virtual time pass so
    /// timers (delayed ACK, RTO) fire without real waiting.
    pub fn step(&mut self) -> usize {
        let n = self.a.poll() + self.b.poll();
        if n == 0 {
            self.vc.advance_ms(1);
        } else {
            self.vc.advance(std::time::Duration::from_micros(20));
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
}

/// FNV-1a, enough to compare streams.
pub fn fnv(h: &mut u64, data: &[u8]) {
    for &b in data {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x100000001b3);
    }
}

pub fn pattern(off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = off + i as u64;
        *b = (x ^ (x >> 8) ^ (x >> 16)).wrapping_mul(31) as u8;
    }
}
