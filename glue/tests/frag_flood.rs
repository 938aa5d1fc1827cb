//! Fragment flood: host A sends host B 100,000 fragments of never-completed datagrams (random
//! ids, through a raw IP_HDRINCL socket) while a TCP connection carries 4 MiB from A to B and
//! A pings B. B's reassembly memory must stay within `ipfrag_high_thresh` (the evictor drops
//! the oldest queues), the TCP bytes and the pings must get through during the flood, and
//! after `ipfrag_time` (30 s of virtual time) every queue and every buffer is gone.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_glue::ipv4::icmp::icmp_send_echo;
use blink_glue::ipv4::StackConfig;
use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::snmp::{DropReason, IpMib};
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::{Glue, GlueBuilder, GlueError};

const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const FLOOD: u32 = 100_000;
const TCP_BYTES: usize = 4 << 20;

fn byte(i: usize) -> u8 {
    (i * 13 + (i >> 11)) as u8
}

/// One fragment (MF set, never completed) of datagram `id`, IP header included.
fn fragment(id: u16, offset_units: u16) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 64];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(84u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&(0x2000 | offset_units).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    // Source 0.0.0.0: the stack fills it in (and the checksum).
    p[16..20].copy_from_slice(&B_IP.octets());
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

#[test]
fn a_flood_of_never_completed_fragments_stays_bounded_while_tcp_and_ping_work() {
    let pool = Mempool::new(&MempoolConfig {
        n: 32768,
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
            .tcp(common::seeded(Default::default()))
            .build()
            .unwrap()
    };
    let mut a = build(wa, "10.0.0.1/24");
    let mut b = build(wb, "10.0.0.2/24");
    let high = StackConfig::default().ipfrag_high_thresh;
    assert_eq!(b.stack().cfg.ipfrag_high_thresh, high);

    let raw = a.raw_socket(255, None).unwrap();
    let l = b.tcp_listen(5001, 8).unwrap();
    let c = a.tcp_connect(B_IP, 5001, None).unwrap();
    let mut server = None;
    let (mut sent, mut rcvd) = (0usize, 0usize);
    let mut buf = vec![0u8; 64 * 1024];
    let mut chunk = vec![0u8; 16 * 1024];
    let mut peak = 0usize;
    let mut x: u32 = 0x1234_5678;
    let mut pings_sent = 0u16;
    for i in 0..FLOOD {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let f = fragment(x as u16, (x >> 16) as u16 & 0x1ff);
        match a.send_to(raw, &f, Some(SocketAddrV4::new(B_IP, 0))) {
            Ok(_) | Err(GlueError::WouldBlock) | Err(GlueError::NoMemory) => {}
            Err(e) => panic!("flood send: {e}"),
        }
        if i % 32 == 31 {
            a.periodic();
            b.periodic();
            peak = peak.max(b.stack().frags.mem());
            if server.is_none() {
                server = b.accept(l).unwrap();
            }
            // TCP alongside: A sends what its buffer takes, B reads and checks every byte.
            if sent < TCP_BYTES {
                let n = chunk.len().min(TCP_BYTES - sent);
                for (k, v) in chunk[..n].iter_mut().enumerate() {
                    *v = byte(sent + k);
                }
                match a.send(c, &chunk[..n]) {
                    Ok(k) => sent += k,
                    Err(GlueError::WouldBlock) => {}
                    Err(e) => panic!("tcp send: {e}"),
                }
            }
            if let Some(s) = server {
                loop {
                    match b.recv(s, &mut buf) {
                        Ok(0) | Err(GlueError::WouldBlock) => break,
                        Ok(n) => {
                            assert!((0..n).all(|k| buf[k] == byte(rcvd + k)), "TCP bytes differ at {rcvd}");
                            rcvd += n;
                        }
                        Err(e) => panic!("tcp recv: {e}"),
                    }
                }
            }
        }
        if i % 1024 == 1023 {
            vc.advance_ms(1);
        }
        if i % 10_000 == 5_000 {
            pings_sent += 1;
            icmp_send_echo(a.stack_mut(), B_IP, 0x99, pings_sent, 1000).unwrap();
        }
    }
    for _ in 0..1000 {
        a.periodic();
        b.periodic();
        if let Some(s) = server {
            while let Ok(n) = b.recv(s, &mut buf) {
                if n == 0 {
                    break;
                }
                assert!((0..n).all(|k| buf[k] == byte(rcvd + k)), "TCP bytes differ at {rcvd}");
                rcvd += n;
            }
        }
    }
    let ip = |g: &Glue<()>, c| g.stack().core.mib.ip.get(c);
    let evicted = b.stack().core.mib.drops[DropReason::FragMemLimit];
    println!(
        "flood: {FLOOD} fragments sent, B: ReasmReqds {} ReasmFails {} evicted {evicted}, peak {peak} of {high} bytes, {} queues; TCP {rcvd} of {TCP_BYTES} bytes; pings {} of {pings_sent}",
        ip(&b, IpMib::ReasmReqds),
        ip(&b, IpMib::ReasmFails),
        b.stack().frags.queues(),
        a.stack().icmp.echo_replies.len(),
    );
    assert!(peak <= high, "reassembly memory {peak} above ipfrag_high_thresh {high}");
    assert!(evicted > 0, "the flood must have pushed the evictor");
    assert!(
        ip(&b, IpMib::ReasmReqds) >= FLOOD as u64 * 9 / 10,
        "most of the flood reached B"
    );
    assert_eq!(rcvd, TCP_BYTES, "TCP carried everything during the flood");
    assert_eq!(
        a.stack().icmp.echo_replies.len(),
        pings_sent as usize,
        "every ping answered"
    );
    // ipfrag_time later, nothing is left.
    for _ in 0..32 {
        vc.advance_ms(1000);
        a.periodic();
        b.periodic();
    }
    assert_eq!(b.stack().frags.queues(), 0);
    assert_eq!(b.stack().frags.mem(), 0);
    a.close(c).unwrap();
    if let Some(s) = server {
        b.close(s).unwrap();
    }
    a.close(raw).unwrap();
    for _ in 0..200 {
        vc.advance_ms(1000);
        a.periodic();
        b.periodic();
    }
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}
