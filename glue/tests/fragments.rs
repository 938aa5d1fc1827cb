//! Fragmented UDP across cores: two blink instances of 2 cores each on the in-memory wire
//! (MTU 1500), in both steering modes. Every core of A sends datagrams of 1,473..65,507 bytes
//! to B's UDP echo (one socket per core, each bound to its own RSS bucket) and checks each
//! echo byte for byte. Fragments are steered by the 2-tuple, so every datagram is reassembled
//! on one core of B; the ones whose 4-tuple another core owns are re-injected there
//! (`Softnet.ReinjectRemote`), and the echo must come from the owner's socket. No wrong-core
//! segment, no failed reassembly, no mbuf left.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::netdevice::NetDevice;
use blink_glue::netcore::rss::{Reta, Toeplitz};
use blink_glue::netcore::snmp::{IpMib, SoftnetMib};
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::{Glue, GlueBuilder, GlueError, Socket, Steering};

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ECHO: u16 = 7;
const CORES: u16 = 2;
const SIZES: [usize; 8] = [1473, 2000, 2961, 4000, 8000, 20_000, 40_000, 65_507];

fn byte(seed: usize, i: usize) -> u8 {
    (seed * 131 + i * 7 + (i >> 9)) as u8
}

fn build(
    mode: Steering,
    dev: Vec<Box<dyn NetDevice>>,
    ip: &str,
    pool: &Mempool,
    impair: Option<&str>,
) -> Vec<Glue<()>> {
    let b = GlueBuilder::new();
    let mut b = if dev.len() == 1 {
        b.device(dev.into_iter().next().unwrap())
    } else {
        b.device_queues(dev)
    };
    if let Some(i) = impair {
        b = b.impair(i.parse().unwrap());
    }
    b.addr(ip.parse().unwrap())
        .cores(CORES)
        .mode(mode)
        .pool(pool.clone())
        .tcp(common::seeded(Default::default()))
        .build_cores()
        .unwrap()
}

fn boxed<D: NetDevice + 'static>(v: Vec<D>) -> Vec<Box<dyn NetDevice>> {
    v.into_iter().map(|d| Box::new(d) as Box<dyn NetDevice>).collect()
}

fn run(mode: Steering, impair: Option<&str>) {
    let pool = Mempool::new(&MempoolConfig {
        n: 16384,
        ..Default::default()
    })
    .unwrap();
    let (wa, wb) = match mode {
        Steering::Rss => {
            let cfg = WireConfig {
                queues: CORES,
                ..Default::default()
            };
            let (wa, wb) = wire_pair(
                ("a", "b"),
                (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
                &cfg,
            );
            (boxed(wa.into_queues()), boxed(wb.into_queues()))
        }
        Steering::Poller => {
            let (wa, wb) = wire_pair(
                ("a", "b"),
                (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
                &WireConfig::default(),
            );
            (boxed(vec![wa]), boxed(vec![wb]))
        }
    };
    let mut a = build(mode, wa, "10.0.0.1/24", &pool, impair);
    let mut b = build(mode, wb, "10.0.0.2/24", &pool, impair);
    // B: an echo socket per core, each taking the datagrams its core owns.
    let mut echo = Vec::new();
    for g in b.iter_mut() {
        let s = g.udp_socket(None).unwrap();
        let cpu = g.cpu();
        g.udp_set_rss_bucket(s, cpu).unwrap();
        g.udp_bind(s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ECHO)).unwrap();
        echo.push(s);
    }
    // A: on every core, 8 connected sockets (their ports hash back to the core).
    let mut senders: Vec<Vec<Socket>> = Vec::new();
    for g in a.iter_mut() {
        let mut v = Vec::new();
        for _ in 0..8 {
            let s = g.udp_socket(None).unwrap();
            g.udp_connect(s, SocketAddrV4::new(B_IP, ECHO)).unwrap();
            v.push(s);
        }
        senders.push(v);
    }
    let poll_all = |a: &mut Vec<Glue<()>>, b: &mut Vec<Glue<()>>| {
        for g in a.iter_mut().chain(b.iter_mut()) {
            g.periodic();
        }
    };
    let t = Toeplitz::default();
    let reta = Reta::new(CORES).unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut echoed_by = [0u32; CORES as usize];
    let mut got = 0;
    let mut want = 0;
    for (round, &size) in SIZES.iter().enumerate() {
        // Socket k of every core of A sends one datagram of this size at a time (a few
        // 65,507-byte datagrams at once would pass a socket's receive buffer on B).
        for k in 0..8 {
            for (cpu, socks) in senders.iter().enumerate() {
                let seed = round * 64 + cpu * 8 + k;
                let data: Vec<u8> = (0..size).map(|i| byte(seed, i)).collect();
                assert_eq!(a[cpu].send_to(socks[k], &data, None).unwrap(), size);
                want += 1;
            }
            let t0 = Instant::now();
            while got < want && t0.elapsed() < Duration::from_secs(20) {
                poll_all(&mut a, &mut b);
                // B echoes what each core's socket received.
                for (cpu, g) in b.iter_mut().enumerate() {
                    while let Ok(r) = g.recv_from(echo[cpu], &mut buf) {
                        assert!(!r.truncated);
                        let h = t.hash_ipv4_l4(A_IP.octets(), B_IP.octets(), r.from.port(), ECHO);
                        assert_eq!(
                            reta.lookup(h) as usize,
                            cpu,
                            "datagram of {} bytes on the wrong core",
                            r.len
                        );
                        g.send_to(echo[cpu], &buf[..r.len], Some(r.from)).unwrap();
                        echoed_by[cpu] += 1;
                    }
                }
                for (cpu, socks) in senders.iter().enumerate() {
                    match a[cpu].recv_from(socks[k], &mut buf) {
                        Ok(r) => {
                            assert_eq!(r.len, size, "core {cpu} socket {k}");
                            let seed = round * 64 + cpu * 8 + k;
                            assert!(
                                (0..size).all(|i| buf[i] == byte(seed, i)),
                                "datagram of {size} bytes came back altered"
                            );
                            got += 1;
                        }
                        Err(GlueError::WouldBlock) => {}
                        Err(e) => panic!("core {cpu} socket {k}: {e}"),
                    }
                }
            }
            assert_eq!(got, want, "{mode:?}: size {size}: {got} of {want} echoed");
        }
    }
    let sum = |v: &Vec<Glue<()>>, f: &dyn Fn(&Glue<()>) -> u64| v.iter().map(f).sum::<u64>();
    let ip = |c| move |g: &Glue<()>| g.stack().core.mib.ip.get(c);
    let sn = |c| move |g: &Glue<()>| g.stack().core.mib.softnet.get(c);
    for (name, side) in [("A", &a), ("B", &b)] {
        assert_eq!(sum(side, &ip(IpMib::ReasmFails)), 0, "{name}");
        assert_eq!(sum(side, &sn(SoftnetMib::WrongCore)), 0, "{name}");
        assert_eq!(
            sum(side, &sn(SoftnetMib::ReinjectRemote)),
            sum(side, &sn(SoftnetMib::ReinjectReceived)),
            "{name}: every re-injected datagram arrived"
        );
        let per_core: Vec<String> = side
            .iter()
            .map(|g| {
                let m = &g.stack().core.mib;
                format!(
                    "core {}: ReasmOKs {} ReinjectLocal {} ReinjectRemote {} ReinjectReceived {} FragOKs {} FragCreates {}",
                    g.cpu(),
                    m.ip.get(IpMib::ReasmOKs),
                    m.softnet.get(SoftnetMib::ReinjectLocal),
                    m.softnet.get(SoftnetMib::ReinjectRemote),
                    m.softnet.get(SoftnetMib::ReinjectReceived),
                    m.ip.get(IpMib::FragOKs),
                    m.ip.get(IpMib::FragCreates),
                )
            })
            .collect();
        println!("{mode:?} {name}: {}", per_core.join("; "));
    }
    if impair.is_some() {
        let reordered: u64 = a
            .iter()
            .chain(b.iter())
            .flat_map(|g| g.stack().devs[0].dev.extra_stats())
            .filter(|(k, _)| k == "impair.reordered")
            .map(|(_, v)| v)
            .sum();
        println!("{mode:?}: {reordered} frames reordered");
        assert!(reordered > 1000, "the impairment reordered frames: {reordered}");
    }
    // Datagrams over the MTU: every size but none fit in 1500 bytes.
    let fragmented = (SIZES.len() * 16) as u64;
    assert_eq!(
        sum(&b, &ip(IpMib::ReasmOKs)),
        fragmented,
        "B reassembled every datagram"
    );
    assert_eq!(sum(&a, &ip(IpMib::ReasmOKs)), fragmented, "A reassembled every echo");
    assert!(
        sum(&b, &sn(SoftnetMib::ReinjectRemote)) > 0,
        "some datagrams crossed cores on B"
    );
    assert!(
        echoed_by.iter().all(|&n| n > 0),
        "both cores of B echoed: {echoed_by:?}"
    );

    for (g, socks) in a.iter_mut().zip(senders) {
        for s in socks {
            g.close(s).unwrap();
        }
    }
    for (g, s) in b.iter_mut().zip(echo) {
        g.close(s).unwrap();
    }
    poll_all(&mut a, &mut b);
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn rss_two_cores_fragmented_udp_echo_reinjected_to_owner() {
    run(Steering::Rss, None);
}

/// The same with both hosts' devices reordering frames (each held back with probability
/// 0.4 and released after later ones): fragments arrive shuffled on both sides.
#[test]
fn rss_two_cores_fragments_reordered() {
    run(Steering::Rss, Some("reorder=0.4,seed=17"));
}

#[test]
fn poller_two_cores_fragmented_udp_echo_reinjected_to_owner() {
    run(Steering::Poller, None);
}

/// Bad fragment sets on 2 cores per stack, with a virtual clock: A crafts them with a raw
/// IP_HDRINCL socket. B (whichever core the 2-tuple picks) reassembles an echo request sent
/// with a duplicated fragment and answers it, kills the datagram of an overlapping set, drops
/// a set that would pass 65,535 bytes, and after 30 s of virtual time gives up the incomplete
/// one with ICMP time exceeded, which A receives. Counters summed over cores; no mbuf left.
#[test]
fn bad_fragment_sets_on_two_cores() {
    use blink_glue::netcore::jiffies::{Clock, VirtualClock};
    use blink_glue::netcore::snmp::{DropReason, IcmpMib};
    let pool = Mempool::new(&MempoolConfig {
        n: 8192,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let cfg = WireConfig {
        queues: CORES,
        ..Default::default()
    };
    let (wa, wb) = wire_pair(
        ("a", "b"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &cfg,
    );
    let build = |dev: Vec<Box<dyn NetDevice>>, ip: &str| -> Vec<Glue<()>> {
        GlueBuilder::new()
            .device_queues(dev)
            .addr(ip.parse().unwrap())
            .cores(CORES)
            .pool(pool.clone())
            .clock(Clock::virtual_clock(&vc))
            .tcp(common::seeded(Default::default()))
            .build_cores()
            .unwrap()
    };
    let mut a = build(boxed(wa.into_queues()), "10.0.0.1/24");
    let mut b = build(boxed(wb.into_queues()), "10.0.0.2/24");
    let poll = |a: &mut Vec<Glue<()>>, b: &mut Vec<Glue<()>>| {
        for _ in 0..20 {
            for g in a.iter_mut().chain(b.iter_mut()) {
                g.periodic();
            }
        }
    };
    let raw = a[0].raw_socket(255, None).unwrap();
    // An IPv4 fragment: `payload` at byte `off` of datagram `id`, protocol 1.
    let frag = |id: u16, off: usize, more: bool, payload: &[u8]| -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6..8].copy_from_slice(&(((off / 8) as u16) | if more { 0x2000 } else { 0 }).to_be_bytes());
        p[8] = 64;
        p[9] = 1;
        p[16..20].copy_from_slice(&B_IP.octets());
        p.extend_from_slice(payload);
        p
    };
    // An echo request of 200 bytes (8-byte header + 192 of data), checksum filled in.
    let mut echo = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    echo.extend((0..192).map(|i| i as u8));
    let sum = {
        let mut s = 0u32;
        for c in echo.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    };
    echo[2..4].copy_from_slice(&sum.to_be_bytes());
    let to = Some(SocketAddrV4::new(B_IP, 0));
    let sets: Vec<Vec<u8>> = vec![
        // Completes despite a duplicate fragment: answered.
        frag(1, 0, true, &echo[..96]),
        frag(1, 0, true, &echo[..96]),
        frag(1, 96, false, &echo[96..]),
        // Overlap: the second starts inside the first and runs past it.
        frag(2, 0, true, &[7; 64]),
        frag(2, 56, true, &[7; 64]),
        // Ping of death.
        frag(3, 0, true, &[0; 64]),
        frag(3, 65_512, false, &[0; 16]),
        // Never completed, first fragment present.
        frag(4, 0, true, &[1; 64]),
        frag(4, 128, false, &[1; 16]),
    ];
    for f in &sets {
        a[0].send_to(raw, f, to).unwrap();
        poll(&mut a, &mut b);
    }
    let sum_b = |b: &Vec<Glue<()>>, f: &dyn Fn(&Glue<()>) -> u64| b.iter().map(f).sum::<u64>();
    let ip = |c| move |g: &Glue<()>| g.stack().core.mib.ip.get(c);
    let drops = |r| move |g: &Glue<()>| g.stack().core.mib.drops[r];
    assert_eq!(sum_b(&b, &ip(IpMib::ReasmOKs)), 1, "the duplicated set completed");
    assert_eq!(sum_b(&b, &drops(DropReason::DupFrag)), 1);
    assert_eq!(sum_b(&b, &ip(IpMib::ReasmOverlaps)), 1);
    assert_eq!(sum_b(&b, &drops(DropReason::FragOverlap)), 2);
    assert_eq!(sum_b(&b, &drops(DropReason::Oversize)), 2);
    let replies: usize = a.iter().map(|g| g.stack().icmp.echo_replies.len()).sum();
    assert_eq!(replies, 1, "the reassembled echo request was answered");
    // 30 s later the incomplete set is given up, and A hears of it.
    for _ in 0..31 {
        vc.advance_ms(1000);
        poll(&mut a, &mut b);
    }
    assert_eq!(sum_b(&b, &ip(IpMib::ReasmTimeout)), 1);
    assert_eq!(sum_b(&b, &drops(DropReason::FragReasmTimeout)), 2);
    assert_eq!(
        sum_b(&b, &|g: &Glue<()>| g.stack().core.mib.icmp.get(IcmpMib::OutTimeExcds)),
        1
    );
    assert_eq!(
        sum_b(&a, &|g: &Glue<()>| g.stack().core.mib.icmp.get(IcmpMib::InTimeExcds)),
        1
    );
    assert!(b.iter().all(|g| g.stack().frags.queues() == 0));
    a[0].close(raw).unwrap();
    poll(&mut a, &mut b);
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}
