//! A listener whose backlog overflows answers with SYN cookies, and the connections rebuilt
//! from the returning ACKs carry data.

mod common;

use blink_netcore::snmp::TcpExtMib;
use blink_tcp::*;
use common::*;

#[test]
fn backlog_overflow_uses_syn_cookies() {
    let mut p = pair(
        None,
        TcpConfig {
            timewait_ms: 100,
            ..Default::default()
        },
    );
    let l = tcp_listen(&mut p.b, 7000, 2).unwrap();
    // Resolved neighbours, so the SYNs leave in the order the connects are made.
    blink_ipv4::neighbour::neigh_add_static(&mut p.a, B_IP, blink_netcore::EthAddr([2, 0, 0, 0, 0, 2]), 0);
    blink_ipv4::neighbour::neigh_add_static(&mut p.b, A_IP, blink_netcore::EthAddr([2, 0, 0, 0, 0, 1]), 0);
    // Two connections fill the backlog of 2 while still in SYN-RECV; two more SYNs arrive
    // before their handshakes complete and are answered with cookies.
    let mut clients: Vec<_> = (0..2).map(|_| tcp_connect(&mut p.a, B_IP, 7000).unwrap()).collect();
    p.a.flush_tx();
    p.b.poll();
    clients.extend((0..2).map(|_| tcp_connect(&mut p.a, B_IP, 7000).unwrap()));
    p.a.poll();
    p.b.poll();
    // Clients see their handshakes complete (cookie SYN-ACKs included), then send at once, the
    // way applications do; the server accepts as connections appear.
    let mut servers = Vec::new();
    let mut got: Vec<usize> = Vec::new();
    p.run_until(10_000, |p| {
        while let Ok(Some(s)) = tcp_accept(&mut p.b, l) {
            servers.push(s);
            got.push(0);
        }
        clients
            .iter()
            .all(|&c| tcp_state(&mut p.a, c) == Ok(TcpState::Established))
    });
    for (i, &c) in clients.iter().enumerate() {
        let msg = vec![i as u8; 3000];
        assert_eq!(tcp_send(&mut p.a, c, &msg).unwrap(), 3000);
    }
    p.run_until(20_000, |p| {
        while let Ok(Some(s)) = tcp_accept(&mut p.b, l) {
            servers.push(s);
            got.push(0);
        }
        for (i, &s) in servers.iter().enumerate() {
            let mut b = [0u8; 4096];
            while let Ok(n) = tcp_recv(&mut p.b, s, &mut b) {
                if n == 0 {
                    break;
                }
                got[i] += n;
            }
        }
        servers.len() == clients.len() && got.iter().all(|&g| g == 3000)
    });
    assert_eq!(servers.len(), 4, "every connection accepted");
    assert!(got.iter().all(|&g| g == 3000), "{got:?}");
    let m = &p.b.core.mib.tcp_ext;
    assert_eq!(m[TcpExtMib::SyncookiesSent], 2);
    assert_eq!(m[TcpExtMib::SyncookiesRecv], 2);
    assert_eq!(m[TcpExtMib::ListenOverflows], 0);
    assert_eq!(m[TcpExtMib::SyncookiesFailed], 0);
    for c in clients {
        tcp_close(&mut p.a, c).unwrap();
    }
    for s in servers {
        tcp_close(&mut p.b, s).unwrap();
    }
    tcp_close(&mut p.b, l).unwrap();
    p.run_until(100_000, |p| {
        with_tcp(&mut p.a, |t, _| t.socks.len()).unwrap() == 0 && with_tcp(&mut p.b, |t, _| t.socks.len()).unwrap() == 0
    });
    assert_eq!(p.pool.in_use(), 0);
}
