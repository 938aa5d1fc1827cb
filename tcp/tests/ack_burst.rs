//! ACKs are coalesced per receive burst (what GRO gives Linux): a receiver that gets many
//! full segments in one poll sends one ACK for them, not one per pair.

mod common;

use blink_netcore::snmp::TcpMib;
use blink_tcp::*;
use common::*;

#[test]
fn one_ack_per_receive_burst() {
    let mut p = pair(
        None,
        TcpConfig {
            sndbuf: 256 << 10,
            rcvbuf: 256 << 10,
            timewait_ms: 100,
            ..Default::default()
        },
    );
    let l = tcp_listen(&mut p.b, 5001, 16).unwrap();
    let c = tcp_connect(&mut p.a, B_IP, 5001).unwrap();
    assert!(p.run_until(1000, |p| tcp_state(&mut p.a, c) == Ok(TcpState::Established)));
    // Bounded: a connection that never reaches the accept queue fails here, not hangs.
    let s = (0..1000)
        .find_map(|_| {
            let s = tcp_accept(&mut p.b, l).unwrap();
            p.step();
            s
        })
        .expect("the established connection is accepted");
    let (out_a0, out_b0) = (p.a.core.mib.tcp[TcpMib::OutSegs], p.b.core.mib.tcp[TcpMib::OutSegs]);
    let total = 4usize << 20;
    let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 251) as u8).collect();
    let (mut sent, mut got) = (0, Vec::with_capacity(total));
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..1_000_000 {
        if sent < total {
            sent += tcp_send(&mut p.a, c, &data[sent..]).unwrap();
        }
        p.step();
        loop {
            match tcp_recv(&mut p.b, s, &mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                Err(TcpErr::WouldBlock) => break,
                r => panic!("recv: {r:?}"),
            }
        }
        if got.len() == total {
            break;
        }
    }
    assert!(
        got == data,
        "stream corrupted or short ({} of {total} bytes)",
        got.len()
    );
    let data_segs = p.a.core.mib.tcp[TcpMib::OutSegs] - out_a0;
    let acks = p.b.core.mib.tcp[TcpMib::OutSegs] - out_b0;
    eprintln!("{data_segs} data segments, {acks} ACKs");
    assert!(data_segs >= (total / 1460) as u64);
    // One ACK per two segments would be data_segs / 2; bursts of up to 32 segments make it
    // a small fraction of that (window updates after reads add a few).
    assert!(
        acks * 4 < data_segs,
        "{acks} ACKs for {data_segs} segments: not coalesced"
    );
    assert_eq!(p.a.core.mib.tcp[TcpMib::RetransSegs], 0);
    tcp_close(&mut p.a, c).unwrap();
    tcp_close(&mut p.b, s).unwrap();
    tcp_close(&mut p.b, l).unwrap();
    p.run_until(100_000, |p| {
        p.pool.in_use() == 0
            && with_tcp(&mut p.a, |t, _| t.socks.len()).unwrap() == 0
            && with_tcp(&mut p.b, |t, _| t.socks.len()).unwrap() == 0
    });
    assert_eq!(p.pool.in_use(), 0, "mbufs leaked");
}
