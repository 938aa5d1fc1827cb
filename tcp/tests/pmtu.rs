//! Path MTU discovery for TCP (RFC 1191, Linux tcp_v4_mtu_reduced): an ICMP "fragmentation
//! needed" about a segment in flight lowers the connection's MSS to fit the path, resends
//! what no longer fits at once, never raises the MSS, and the stream still arrives intact.

mod common;

use blink_netcore::netdevice::Burst;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{IpMib, TcpMib};
use blink_tcp::*;
use common::*;

/// An ICMP "fragmentation needed" (next-hop MTU `mtu`) about a TCP segment A:sport -> B:dport
/// with sequence `seq`, as a frame from B's wire end to A.
fn frag_needed(sport: u16, dport: u16, seq: u32, mtu: u16) -> Vec<u8> {
    let mut quoted = vec![0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 6, 0, 0];
    quoted.extend_from_slice(&A_IP.octets());
    quoted.extend_from_slice(&B_IP.octets());
    quoted.extend_from_slice(&sport.to_be_bytes());
    quoted.extend_from_slice(&dport.to_be_bytes());
    quoted.extend_from_slice(&seq.to_be_bytes());
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&quoted);
    let c = csum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4([10, 0, 0, 254], A_IP.octets(), 64)
        .write(&mut v, etherparse::IpNumber::ICMP, &icmp)
        .unwrap();
    v
}

fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Put `frame` on the wire from B towards A.
fn inject_to_a(p: &mut Pair, frame: &[u8]) {
    let skb = SkBuff::from_slice(&mut p.b.core.cache, frame).unwrap();
    let mut burst = Burst::new();
    burst.push(skb);
    assert_eq!(p.b.devs[0].dev.tx_burst(0, &mut burst), 1);
}

/// (snd_una, snd_nxt, mss_cache, sport, timestamps on) of A's socket `c`.
fn sock_state(p: &mut Pair, c: blink_netcore::sock::SockHandle) -> (u32, u32, u32, u16, bool) {
    with_tcp(&mut p.a, |t, _| {
        let s = t.socks.get(c).unwrap();
        (s.snd_una, s.snd_nxt, s.mss_cache, s.sport, s.rx_opt.tstamp_ok)
    })
    .unwrap()
}

#[test]
fn frag_needed_shrinks_mss_and_resends_in_flight_data() {
    let mut p = pair(None, TcpConfig::default());
    let l = tcp_listen(&mut p.b, 5001, 16).unwrap();
    let c = tcp_connect(&mut p.a, B_IP, 5001).unwrap();
    let mut server = None;
    assert!(p.run_until(1000, |p| {
        if server.is_none() {
            server = tcp_accept(&mut p.b, l).unwrap();
        }
        server.is_some() && matches!(tcp_state(&mut p.a, c), Ok(TcpState::Established))
    }));
    let server = server.unwrap();
    let (_, _, mss0, sport, ts) = sock_state(&mut p, c);
    assert!(mss0 > 1000);

    // A window of full-sized segments in flight, then the router's complaint about the first.
    let total = 200_000usize;
    let mut data = vec![0u8; total];
    pattern(0, &mut data);
    let mut sent = tcp_send(&mut p.a, c, &data).unwrap();
    p.a.flush_tx();
    let (una, nxt, _, _, _) = sock_state(&mut p, c);
    assert!(nxt != una, "segments in flight");
    let retrans0 = p.a.core.mib.tcp[TcpMib::RetransSegs];
    inject_to_a(&mut p, &frag_needed(sport, 5001, una, 1000));
    p.a.poll();
    let (_, _, mss, _, _) = sock_state(&mut p, c);
    let want = 1000 - 40 - if ts { 12 } else { 0 };
    assert_eq!(mss, want, "MSS fits the path MTU");
    assert!(
        p.a.core.mib.tcp[TcpMib::RetransSegs] > retrans0,
        "oversized segments in flight resent at once, not at the RTO"
    );
    assert_eq!(p.a.fib.pmtu(B_IP, p.a.core.jiffies), Some(1000));

    // A later report of a larger MTU does not raise it.
    let (una, _, _, _, _) = sock_state(&mut p, c);
    inject_to_a(&mut p, &frag_needed(sport, 5001, una, 1400));
    p.a.poll();
    assert_eq!(sock_state(&mut p, c).2, want);

    // The rest of the stream goes in segments that fit (DF: a bigger one would fail in IP
    // and count FragFails), and everything arrives intact.
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0u8; 65536];
    let done = p.run_until(200_000, |p| {
        if sent < total {
            sent += tcp_send(&mut p.a, c, &data[sent..]).unwrap();
        }
        while let Ok(n) = tcp_recv(&mut p.b, server, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == total
    });
    if !done {
        let st = with_tcp(&mut p.a, |t, _| {
            let s = t.socks.get(c).unwrap();
            format!(
                "una {} nxt {} wseq {} wq {} rtx {} po {} lost {} retr {} sacked {} cwnd {} state {:?} ca {:?}",
                s.snd_una.wrapping_sub(s.iss),
                s.snd_nxt.wrapping_sub(s.iss),
                s.write_seq.wrapping_sub(s.iss),
                s.write_queue.len(),
                s.rtx_queue.len(),
                s.packets_out,
                s.lost_out,
                s.retrans_out,
                s.sacked_out,
                s.cong.cwnd,
                s.state,
                s.ca_state
            )
        })
        .unwrap();
        panic!(
            "stuck: got {} sent {} {st} mib {:?}",
            got.len(),
            sent,
            p.a.core.mib.nonzero()
        );
    }
    assert!(got == data, "stream intact");
    assert_eq!(p.a.core.mib.ip[IpMib::FragFails], 0, "no segment exceeded the path MTU");
    assert_eq!(p.a.core.mib.ip[IpMib::FragOKs], 0, "TCP is never fragmented");
    assert_eq!(sock_state(&mut p, c).2, want, "MSS never rose");
    tcp_close(&mut p.a, c).unwrap();
    tcp_close(&mut p.b, server).unwrap();
    p.run_until(10_000, |p| {
        p.a.core.mib.tcp[TcpMib::CurrEstab] == 0 && p.b.core.mib.tcp[TcpMib::CurrEstab] == 0
    });
}
