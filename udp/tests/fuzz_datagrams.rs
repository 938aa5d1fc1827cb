//! Hostile datagrams, beside the TCP segment fuzz test (`tcp/tests/fuzz_segments.rs`): two
//! blink stacks run a UDP echo through a relay that rewrites a share of the frames (ports, UDP
//! length, checksum zeroed or wrong, payload bytes under a fixed checksum, truncation, and the
//! IPv4 header: TTL, TOS, ID, fragment bits, header length, total length), drops some and
//! replays old ones. Nothing may panic or leak; the damage must show in the drop counters;
//! and every datagram the relay never touched (neither its request nor its echo) must come
//! back exactly once, to the socket that sent it, byte for byte.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};

use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_netcore::netdevice::{Burst, NetDevice};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::{EthAddr, MempoolCache};
use blink_udp::*;
use common::*;

/// xorshift64*: a seeded, reproducible stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Byte `i` of datagram `id`'s payload: the id itself first, then its own pattern.
fn payload(id: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(131) ^ id as usize).wrapping_add(id as usize >> 8) as u8)
        .collect();
    p[..4].copy_from_slice(&id.to_be_bytes());
    p
}

/// The datagram id of a UDP frame (its payload's first 4 bytes), if it is an unfragmented
/// UDP datagram long enough to carry one.
fn frame_id(f: &[u8]) -> Option<u32> {
    if f.len() < 14 + 20 || f[12..14] != [8, 0] || f[23] != 17 {
        return None;
    }
    let t = 14 + ((f[14] & 0x0f) as usize) * 4;
    let frag = u16::from_be_bytes([f[20], f[21]]) & 0x3fff;
    (frag == 0 && f.len() >= t + 12).then(|| u32::from_be_bytes(f[t + 8..t + 12].try_into().unwrap()))
}

#[derive(Default, Debug)]
struct Mutations {
    sport: u64,
    dport: u64,
    length: u64,
    csum_zero: u64,
    csum_bad: u64,
    payload: u64,
    truncate: u64,
    ip_ttl: u64,
    ip_tos: u64,
    ip_id: u64,
    ip_frag: u64,
    ip_ihl: u64,
    ip_len: u64,
    replay: u64,
    drop: u64,
}

struct Relay {
    ra: WireDev,
    rb: WireDev,
    cache: MempoolCache,
    rng: Rng,
    history: VecDeque<(bool, Vec<u8>)>,
    m: Mutations,
    /// Datagrams a frame of which was rewritten, dropped or replayed.
    touched: HashSet<u32>,
}

impl Relay {
    fn forward(&mut self) -> usize {
        let mut n = 0;
        for a_to_b in [true, false] {
            let mut burst = Burst::new();
            let src = if a_to_b { &mut self.ra } else { &mut self.rb };
            src.rx_burst(0, &mut burst);
            let frames: Vec<Vec<u8>> = burst
                .drain(..)
                .map(|skb| skb.segments().flatten().copied().collect())
                .collect();
            for mut f in frames {
                n += 1;
                if let Some(id) = frame_id(&f) {
                    if self.rng.chance(10) {
                        self.m.drop += 1;
                        self.touched.insert(id);
                        continue;
                    }
                    if self.history.len() == 64 {
                        self.history.pop_front();
                    }
                    self.history.push_back((a_to_b, f.clone()));
                    if self.rng.chance(50) {
                        self.touched.insert(id);
                        self.mutate(&mut f);
                    }
                }
                self.send(a_to_b, &f);
                if self.rng.chance(10) && !self.history.is_empty() {
                    let i = self.rng.below(self.history.len() as u64) as usize;
                    let (dir, old) = self.history[i].clone();
                    if dir == a_to_b {
                        self.m.replay += 1;
                        if let Some(id) = frame_id(&old) {
                            self.touched.insert(id);
                        }
                        self.send(a_to_b, &old);
                    }
                }
            }
        }
        n
    }

    fn send(&mut self, a_to_b: bool, f: &[u8]) {
        let skb = SkBuff::from_slice(&mut self.cache, f).expect("relay: no mbuf for a frame");
        let mut burst = Burst::new();
        burst.push(skb);
        let dst = if a_to_b { &mut self.rb } else { &mut self.ra };
        dst.tx_burst(0, &mut burst);
    }

    fn mutate(&mut self, f: &mut Vec<u8>) {
        let t = 14 + ((f[14] & 0x0f) as usize) * 4;
        let r = &mut self.rng;
        // Whether to make the checksums right again afterwards (else the damage is caught
        // there: what the rest of the stack must survive needs valid sums).
        let mut fix_udp = true;
        match r.below(13) {
            0 => {
                self.m.sport += 1;
                f[t..t + 2].copy_from_slice(&(r.next() as u16).to_be_bytes());
            }
            1 => {
                self.m.dport += 1;
                f[t + 2..t + 4].copy_from_slice(&(r.next() as u16).to_be_bytes());
            }
            2 => {
                self.m.length += 1;
                let l = u16::from_be_bytes([f[t + 4], f[t + 5]]);
                let d = r.below(32) as u16;
                let l = if r.chance(500) {
                    l.wrapping_add(d)
                } else {
                    l.wrapping_sub(d)
                };
                f[t + 4..t + 6].copy_from_slice(&l.to_be_bytes());
            }
            3 => {
                // No checksum (legal in IPv4): the datagram is delivered as it is.
                self.m.csum_zero += 1;
                f[t + 6..t + 8].copy_from_slice(&[0, 0]);
                fix_udp = false;
            }
            4 => {
                self.m.csum_bad += 1;
                f[t + 6] ^= 1 + r.below(255) as u8;
                fix_udp = false;
            }
            5 => {
                // Past the id: a changed id would pass for another datagram's.
                self.m.payload += 1;
                let i = t + 12 + r.below((f.len() - t - 12) as u64) as usize;
                f[i] ^= 1 << r.below(8);
            }
            6 => {
                self.m.truncate += 1;
                let keep = r.below((f.len() - 14) as u64) as usize;
                f.truncate(14 + keep);
            }
            7 => {
                self.m.ip_ttl += 1;
                f[22] = r.next() as u8;
            }
            8 => {
                self.m.ip_tos += 1;
                f[15] = r.next() as u8;
            }
            9 => {
                self.m.ip_id += 1;
                f[18..20].copy_from_slice(&(r.next() as u16).to_be_bytes());
            }
            10 => {
                // A lone "fragment" waits for reassembly, then expires.
                self.m.ip_frag += 1;
                f[20..22].copy_from_slice(&(r.next() as u16).to_be_bytes());
            }
            11 => {
                self.m.ip_ihl += 1;
                f[14] = 0x40 | r.below(16) as u8;
            }
            _ => {
                self.m.ip_len += 1;
                let tot = u16::from_be_bytes([f[16], f[17]]);
                let d = r.below(64) as u16;
                let tot = if r.chance(500) {
                    tot.wrapping_add(d)
                } else {
                    tot.saturating_sub(d)
                };
                f[16..18].copy_from_slice(&tot.to_be_bytes());
            }
        }
        fix_checksums(f, fix_udp);
    }
}

/// The IPv4 header checksum, and the UDP one over the datagram as its header now reads (when
/// `udp` and the frame still holds a UDP header with a checksum).
fn fix_checksums(f: &mut [u8], udp: bool) {
    if f.len() < 14 + 20 {
        return;
    }
    let ihl = ((f[14] & 0x0f) as usize) * 4;
    if ihl < 20 || 14 + ihl > f.len() {
        return;
    }
    fix_ip_csum(f);
    let t = 14 + ihl;
    if !udp || f.len() < t + 8 || f[t + 6..t + 8] == [0, 0] {
        return;
    }
    let ulen = u16::from_be_bytes([f[t + 4], f[t + 5]]) as usize;
    if ulen < 8 || t + ulen > f.len() {
        return;
    }
    f[t + 6..t + 8].copy_from_slice(&[0, 0]);
    let mut sum: u32 = 0;
    for w in f[26..34].chunks(2) {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    sum += 17 + ulen as u32;
    for w in f[t..t + ulen].chunks(2) {
        sum += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    f[t + 6..t + 8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
}

#[test]
fn hostile_datagrams_never_panic_or_leak_and_clean_ones_echo_whole() {
    let seed: u64 = std::env::var("BLINK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_da7a);
    println!("relay seed {seed} (replay with BLINK_FUZZ_SEED={seed})");
    // A and B each face the relay on a wire of their own.
    let mut p = pair(UdpConfig::default());
    let (wa, ra) = wire_pair(
        ("a2", "ra"),
        (EthAddr(A_MAC), EthAddr([2, 0, 0, 0, 1, 1])),
        &WireConfig::default(),
    );
    let (wb, rb) = wire_pair(
        ("b2", "rb"),
        (EthAddr(B_MAC), EthAddr([2, 0, 0, 0, 1, 2])),
        &WireConfig::default(),
    );
    let ia = p.a.add_device(Box::new(wa), 0);
    let ib = p.b.add_device(Box::new(wb), 0);
    p.a.add_addr(ia, "10.0.1.1/24".parse().unwrap()).unwrap();
    p.b.add_addr(ib, "10.0.1.2/24".parse().unwrap()).unwrap();
    let (a_ip, b_ip) = ("10.0.1.1".parse().unwrap(), "10.0.1.2".parse().unwrap());
    blink_ipv4::neighbour::neigh_add_static(&mut p.a, b_ip, EthAddr(B_MAC), ia);
    blink_ipv4::neighbour::neigh_add_static(&mut p.b, a_ip, EthAddr(A_MAC), ib);
    let mut relay = Relay {
        ra,
        rb,
        cache: p.pool.cache(),
        rng: Rng(seed | 1),
        history: VecDeque::new(),
        m: Mutations::default(),
        touched: HashSet::new(),
    };
    for _ in 0..5 {
        relay.forward();
        p.step();
    }
    let baseline = p.pool.in_use();

    let server = udp_socket(&mut p.b).unwrap();
    udp_bind(&mut p.b, server, sa(b_ip, 7)).unwrap();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let h = udp_socket(&mut p.a).unwrap();
            udp_bind(&mut p.a, h, sa(a_ip, 0)).unwrap();
            h
        })
        .collect();
    let mut rng = Rng(seed.rotate_left(21) | 1);
    let mut sent_by: HashMap<u32, (usize, usize)> = HashMap::new();
    let mut got: HashSet<u32> = HashSet::new();
    let mut buf = vec![0u8; 2048];
    let (mut next_id, mut verified, mut touched_back) = (0u32, 0u64, 0u64);
    let to_b = sa(b_ip, 7);
    const STEPS: usize = 6_000;
    for step in 0..STEPS + 2_000 {
        if step < STEPS {
            for (ci, &h) in clients.iter().enumerate() {
                let len = 8 + rng.below(1393) as usize;
                udp_sendmsg(&mut p.a, h, &payload(next_id, len), Some(to_b)).unwrap();
                sent_by.insert(next_id, (ci, len));
                next_id += 1;
            }
        }
        let n = p.a.poll() + relay.forward() + p.b.poll();
        // The server echoes every datagram to where it came from.
        while let Ok(r) = udp_recvmsg(&mut p.b, server, &mut buf) {
            let _ = udp_sendmsg(&mut p.b, server, &buf[..r.len], Some(r.from));
        }
        let n = n + relay.forward() + p.a.poll();
        for (ci, &h) in clients.iter().enumerate() {
            while let Ok(r) = udp_recvmsg(&mut p.a, h, &mut buf) {
                let d = &buf[..r.len];
                let id = (d.len() >= 4).then(|| u32::from_be_bytes(d[..4].try_into().unwrap()));
                match id {
                    Some(id) if !relay.touched.contains(&id) => {
                        let &(sender, len) = sent_by
                            .get(&id)
                            .unwrap_or_else(|| panic!("echo of datagram {id}, never sent (seed {seed})"));
                        assert_eq!(sender, ci, "datagram {id} came back to another socket (seed {seed})");
                        assert_eq!(r.from, to_b, "datagram {id}'s echo source (seed {seed})");
                        assert!(
                            d == payload(id, len).as_slice(),
                            "datagram {id}: the echo differs (seed {seed})"
                        );
                        assert!(got.insert(id), "datagram {id} came back twice (seed {seed})");
                        verified += 1;
                    }
                    _ => touched_back += 1,
                }
            }
        }
        if n == 0 {
            p.vc.advance_ms(1);
        }
    }
    // Every untouched datagram came back (nothing lost without the relay's doing).
    let lost: Vec<u32> = (0..next_id)
        .filter(|id| !relay.touched.contains(id) && !got.contains(id))
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "untouched datagrams never echoed: {lost:?} (seed {seed})"
    );
    let m = &relay.m;
    println!(
        "sent {next_id}, verified {verified}, touched {} ({touched_back} of them came back); relay {m:?}",
        relay.touched.len()
    );
    assert!(verified > 40_000, "only {verified} datagrams verified");
    for (what, n) in [
        ("sport", m.sport),
        ("dport", m.dport),
        ("length", m.length),
        ("csum_zero", m.csum_zero),
        ("csum_bad", m.csum_bad),
        ("payload", m.payload),
        ("truncate", m.truncate),
        ("ip_ttl", m.ip_ttl),
        ("ip_tos", m.ip_tos),
        ("ip_id", m.ip_id),
        ("ip_frag", m.ip_frag),
        ("ip_ihl", m.ip_ihl),
        ("ip_len", m.ip_len),
        ("replay", m.replay),
    ] {
        assert!(n >= 20, "only {n} `{what}` mutations");
    }
    // The damage shows in the counters of the stack that received it.
    for (name, st) in [("A", &p.a), ("B", &p.b)] {
        let mib = st.core.mib.nonzero();
        let c = |k: &str| mib.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
        assert!(c("Udp.InCsumErrors") > 0, "{name}: {mib:?}");
        assert!(c("Ip.InHdrErrors") + c("Ip.InTruncatedPkts") > 0, "{name}: {mib:?}");
        assert!(c("Ip.ReasmReqds") > 0, "{name}: {mib:?}");
    }
    assert!(
        p.b.core.mib.nonzero().iter().any(|(n, v)| n == "Udp.NoPorts" && *v > 0),
        "a rewritten port reaches no socket"
    );
    // Close everything; let the lone fragments expire; every buffer comes back.
    for h in clients {
        udp_close(&mut p.a, h).unwrap();
    }
    udp_close(&mut p.b, server).unwrap();
    for _ in 0..40_000 {
        let n = p.a.poll() + relay.forward() + p.b.poll() + relay.forward();
        if n == 0 {
            p.vc.advance_ms(1);
        }
    }
    assert_eq!(p.pool.in_use(), baseline, "mbuf leak");
}
