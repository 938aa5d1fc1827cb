//! TIME-WAIT on the active side over the wire: the closing side keeps the tuple (and its port)
//! for the TIME-WAIT period, and `tw_reuse` lets a new connection take it over once the old
//! connection's timestamps are a second old (Linux: tcp_tw_reuse).

mod common;

use blink_netcore::snmp::TcpExtMib;
use blink_tcp::*;
use common::*;

/// Open a connection A -> B:7000, exchange a byte, close A first then B; A ends in TIME-WAIT.
fn connect_and_close(p: &mut Pair, l: blink_netcore::sock::SockHandle) -> Result<(), TcpErr> {
    let c = tcp_connect(&mut p.a, B_IP, 7000)?;
    assert!(p.run_until(10_000, |p| matches!(tcp_state(&mut p.a, c), Ok(TcpState::Established))));
    let mut s = None;
    assert!(p.run_until(10_000, |p| {
        s = tcp_accept(&mut p.b, l).unwrap();
        s.is_some()
    }));
    let s = s.unwrap();
    assert_eq!(tcp_send(&mut p.a, c, b"x").unwrap(), 1);
    let mut buf = [0u8; 8];
    assert!(p.run_until(10_000, |p| tcp_recv(&mut p.b, s, &mut buf) == Ok(1)));
    tcp_close(&mut p.a, c).unwrap();
    assert!(p.run_until(10_000, |p| tcp_recv(&mut p.b, s, &mut buf) == Ok(0)));
    tcp_close(&mut p.b, s).unwrap();
    assert!(
        p.run_until(10_000, |p| with_tcp(&mut p.a, |t, _| t.socks.len()).unwrap() == 0
            && with_tcp(&mut p.b, |t, _| t.socks.len()).unwrap() == 1)
    );
    Ok(())
}

fn one_port(tw_reuse: bool) -> TcpConfig {
    TcpConfig {
        ephemeral_ports: (40000, 40000),
        tw_reuse,
        ..Default::default()
    }
}

fn tw_count(p: &mut Pair) -> usize {
    with_tcp(&mut p.a, |t, _| t.tw.len()).unwrap()
}

#[test]
fn time_wait_holds_the_port_for_60s_without_reuse() {
    let mut p = pair(None, one_port(false));
    let l = tcp_listen(&mut p.b, 7000, 8).unwrap();
    connect_and_close(&mut p, l).unwrap();
    assert_eq!(tw_count(&mut p), 1, "A is in TIME-WAIT");
    // The only ephemeral port is held by TIME-WAIT.
    assert_eq!(tcp_connect(&mut p.a, B_IP, 7000), Err(TcpErr::NoPorts));
    // 59 s later it still is; after 60 s it is free (the default TIME-WAIT length).
    p.run_until(usize::MAX, |p| p.vc.now_ns() >= 59_000_000_000);
    assert_eq!(tw_count(&mut p), 1);
    assert!(p.run_until(5_000, |p| tw_count(p) == 0));
    assert_eq!(p.a.core.mib.tcp_ext[TcpExtMib::TW], 1);
    connect_and_close(&mut p, l).unwrap();
    assert_eq!(p.a.core.mib.tcp_ext[TcpExtMib::TWRecycled], 0);
    finish(&mut p, l);
}

#[test]
fn tw_reuse_takes_over_the_tuple_after_a_second() {
    let mut p = pair(None, one_port(true));
    let l = tcp_listen(&mut p.b, 7000, 8).unwrap();
    connect_and_close(&mut p, l).unwrap();
    assert_eq!(tw_count(&mut p), 1);
    // Too soon: the last timestamp is younger than a second.
    assert_eq!(tcp_connect(&mut p.a, B_IP, 7000), Err(TcpErr::NoPorts));
    let t0 = p.vc.now_ns();
    p.run_until(usize::MAX, |p| p.vc.now_ns() >= t0 + 1_100_000_000);
    // Now the same tuple is taken over, many times in a row.
    for i in 1..=5 {
        connect_and_close(&mut p, l).unwrap();
        assert_eq!(p.a.core.mib.tcp_ext[TcpExtMib::TWRecycled], i);
        let t0 = p.vc.now_ns();
        p.run_until(usize::MAX, |p| p.vc.now_ns() >= t0 + 1_100_000_000);
    }
    assert_eq!(p.a.core.mib.tcp_ext[TcpExtMib::TW], 0);
    finish(&mut p, l);
}

fn finish(p: &mut Pair, l: blink_netcore::sock::SockHandle) {
    tcp_close(&mut p.b, l).unwrap();
    assert!(p.run_until(usize::MAX, |p| tw_count(p) == 0
        && with_tcp(&mut p.b, |t, _| t.socks.len() + t.tw.len()).unwrap() == 0));
    assert_eq!(with_tcp(&mut p.a, |t, _| t.tables.bound_ports()).unwrap(), 0);
    assert_eq!(p.pool.in_use(), 0, "mbufs leaked");
}

/// A closed connection's retransmit queue keeps its storage for the next connection: one
/// spare queue per stack after a connection, still one after the next (taken and given back,
/// not allocated again).
#[test]
fn a_closed_connections_rtx_queue_is_reused() {
    let mut p = pair(None, one_port(true));
    let l = tcp_listen(&mut p.b, 7000, 8).unwrap();
    let spares = |p: &mut Pair| {
        (
            with_tcp(&mut p.a, |t, _| t.spare_rtx_queues()).unwrap(),
            with_tcp(&mut p.b, |t, _| t.spare_rtx_queues()).unwrap(),
        )
    };
    assert_eq!(spares(&mut p), (0, 0));
    connect_and_close(&mut p, l).unwrap();
    assert_eq!(
        spares(&mut p),
        (1, 1),
        "both ends sent data, so both queues had storage"
    );
    for _ in 0..3 {
        let t0 = p.vc.now_ns();
        p.run_until(usize::MAX, |p| p.vc.now_ns() >= t0 + 1_100_000_000);
        connect_and_close(&mut p, l).unwrap();
        assert_eq!(spares(&mut p), (1, 1));
    }
    finish(&mut p, l);
}
