//! UDP between two blink stacks on the in-memory wire: echo of every size, ICMP errors,
//! binding rules, RSS buckets, zero-copy paths; every test ends with no mbuf in use.

mod common;

use std::net::Ipv4Addr;

use blink_netcore::rss::{hash2cpu, Reta, Toeplitz};
use blink_netcore::snmp::{IcmpMib, UdpMib};
use blink_udp::*;
use common::*;

fn close_all_and_check(mut p: Pair, socks: &[(bool, blink_netcore::sock::SockHandle)]) {
    for &(on_a, h) in socks {
        let s = if on_a { &mut p.a } else { &mut p.b };
        udp_close(s, h).unwrap();
    }
    p.settle();
    let pool = p.pool.clone();
    drop(p);
    assert_eq!(pool.in_use(), 0, "mbufs leaked");
}

#[test]
fn echo_every_size_1_to_1472() {
    let mut p = pair(UdpConfig::default());
    let srv = udp_socket(&mut p.b).unwrap();
    udp_bind(&mut p.b, srv, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    let cli = udp_socket(&mut p.a).unwrap();
    udp_connect(&mut p.a, cli, sa(B_IP, 7)).unwrap();
    let local = udp_local_addr(&mut p.a, cli).unwrap();
    assert_eq!(*local.ip(), A_IP);
    assert!((32768..=60999).contains(&local.port()), "ephemeral port {local}");
    let mut buf = vec![0u8; 2048];
    for size in 1..=1472usize {
        let data = pattern(size, size);
        assert_eq!(udp_sendmsg(&mut p.a, cli, &data, None).unwrap(), size);
        let mut echoed = false;
        let ok = p.run_until(200, |p| {
            if !echoed {
                if let Ok(r) = udp_recvmsg(&mut p.b, srv, &mut buf) {
                    assert_eq!(r.from, local);
                    assert!(!r.truncated);
                    let d = buf[..r.len].to_vec();
                    udp_sendmsg(&mut p.b, srv, &d, Some(r.from)).unwrap();
                    echoed = true;
                }
                return false;
            }
            match udp_recvmsg(&mut p.a, cli, &mut buf) {
                Ok(r) => {
                    assert_eq!(r.from, sa(B_IP, 7));
                    assert_eq!(&buf[..r.len], &data[..], "size {size}");
                    true
                }
                Err(UdpErr::WouldBlock) => false,
                Err(e) => panic!("size {size}: {e}"),
            }
        });
        assert!(ok, "size {size} not echoed");
    }
    for s in [&p.a, &p.b] {
        assert_eq!(s.core.mib.udp[UdpMib::OutDatagrams], 1472);
        assert_eq!(s.core.mib.udp[UdpMib::InDatagrams], 1472);
        assert_eq!(s.core.mib.udp[UdpMib::InErrors], 0);
    }
    // One more byte than the MTU allows, with Don't Fragment (IP_PMTUDISC_DO): refused,
    // nothing sent, nothing leaked.
    udp_set_dontfrag(&mut p.a, cli, true).unwrap();
    let before = p.a.core.mib.udp[UdpMib::OutDatagrams];
    assert_eq!(
        udp_sendmsg(&mut p.a, cli, &[0u8; 1473], None),
        Err(UdpErr::MessageTooLong { len: 1501, mtu: 1500 })
    );
    assert_eq!(p.a.core.mib.udp[UdpMib::OutDatagrams], before);
    close_all_and_check(p, &[(true, cli), (false, srv)]);
}

#[test]
fn port_unreachable_counted_and_reported_to_connected_socket() {
    let mut p = pair(UdpConfig::default());
    let c = udp_socket(&mut p.a).unwrap();
    udp_connect(&mut p.a, c, sa(B_IP, 9999)).unwrap();
    let u = udp_socket(&mut p.a).unwrap();
    udp_sendmsg(&mut p.a, c, b"anyone?", None).unwrap();
    udp_sendmsg(&mut p.a, u, b"anyone?", Some(sa(B_IP, 9998))).unwrap();
    let mut evs = Vec::new();
    p.run_until(500, |p| {
        evs.clear();
        udp_events(&mut p.a, &mut evs).unwrap();
        evs.iter().any(|&(h, e)| h == c && e & ev::ERROR != 0)
    });
    assert_eq!(p.b.core.mib.udp[UdpMib::NoPorts], 2);
    assert_eq!(p.b.core.mib.icmp[IcmpMib::OutDestUnreachs], 2);
    assert_eq!(p.a.core.mib.icmp[IcmpMib::InDestUnreachs], 2);
    let mut buf = [0u8; 16];
    // Reported once, by the next call, then the socket works again.
    assert_eq!(
        udp_recvmsg(&mut p.a, c, &mut buf),
        Err(UdpErr::Sock(SockErr::ConnRefused))
    );
    assert_eq!(udp_recvmsg(&mut p.a, c, &mut buf), Err(UdpErr::WouldBlock));
    // The unconnected socket hears nothing (no IP_RECVERR), as on Linux.
    assert_eq!(udp_recvmsg(&mut p.a, u, &mut buf), Err(UdpErr::WouldBlock));
    assert_eq!(udp_sendmsg(&mut p.a, u, b"x", Some(sa(B_IP, 9998))), Ok(1));
    close_all_and_check(p, &[(true, c), (true, u)]);
}

#[test]
fn bind_rules_wildcard_specific_connected() {
    let mut p = pair(UdpConfig::default());
    // A second address on B so a specific bind and the wildcard can be told apart.
    p.b.add_addr(0, "10.0.0.3/24".parse().unwrap()).unwrap();
    let b = &mut p.b;
    let w = udp_socket(b).unwrap();
    udp_bind(b, w, sa(Ipv4Addr::UNSPECIFIED, 5000)).unwrap();
    let x = udp_socket(b).unwrap();
    assert_eq!(udp_bind(b, x, sa(B_IP, 5000)), Err(UdpErr::AddrInUse(sa(B_IP, 5000))));
    assert_eq!(
        udp_bind(b, x, sa(Ipv4Addr::new(10, 0, 0, 9), 5001)),
        Err(UdpErr::AddrNotAvailable(Ipv4Addr::new(10, 0, 0, 9)))
    );
    udp_close(b, x).unwrap();
    udp_close(b, w).unwrap();
    // Specific binds on different addresses coexist.
    let s2 = udp_socket(b).unwrap();
    udp_bind(b, s2, sa(B_IP, 5001)).unwrap();
    let s3 = udp_socket(b).unwrap();
    udp_bind(b, s3, sa(Ipv4Addr::new(10, 0, 0, 3), 5001)).unwrap();
    assert_eq!(udp_bind(b, s3, sa(B_IP, 5002)), Err(UdpErr::AlreadyBound));
    // With SO_REUSEADDR: wildcard, specific and connected on one port; best match wins.
    let mk = |b: &mut blink_ipv4::Stack, addr| {
        let h = udp_socket(b).unwrap();
        udp_set_reuseaddr(b, h, true).unwrap();
        udp_bind(b, h, sa(addr, 5000)).unwrap();
        h
    };
    let wild = mk(b, Ipv4Addr::UNSPECIFIED);
    let spec = mk(b, B_IP);
    let conn = mk(b, B_IP);
    udp_connect(b, conn, sa(A_IP, 6000)).unwrap();
    let send = |p: &mut Pair, sport: u16, dst: Ipv4Addr| {
        let h = udp_socket(&mut p.a).unwrap();
        udp_bind(&mut p.a, h, sa(A_IP, sport)).unwrap();
        udp_sendmsg(&mut p.a, h, &sport.to_be_bytes(), Some(sa(dst, 5000))).unwrap();
        p.settle();
        udp_close(&mut p.a, h).unwrap();
    };
    send(&mut p, 6000, B_IP);
    send(&mut p, 6001, B_IP);
    send(&mut p, 6002, Ipv4Addr::new(10, 0, 0, 3));
    send(&mut p, 6003, Ipv4Addr::new(10, 0, 0, 255));
    let mut buf = [0u8; 8];
    let mut got = |h| {
        let mut v = Vec::new();
        while let Ok(r) = udp_recvmsg(&mut p.b, h, &mut buf) {
            v.push(r.from.port());
        }
        v
    };
    assert_eq!(got(conn), vec![6000], "connected 4-tuple match");
    assert_eq!(got(spec), vec![6001], "bound address");
    assert_eq!(got(wild), vec![6002, 6003], "wildcard: other address and broadcast");
    assert_eq!(p.b.core.mib.udp[UdpMib::NoPorts], 0);
    close_all_and_check(
        p,
        &[(false, s2), (false, s3), (false, wild), (false, spec), (false, conn)],
    );
}

#[test]
fn ephemeral_ports_from_the_range() {
    let mut p = pair(UdpConfig {
        ephemeral_ports: (40000, 40002),
        ..Default::default()
    });
    let mut hs = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let h = udp_socket(&mut p.a).unwrap();
        ports.push(udp_bind(&mut p.a, h, sa(Ipv4Addr::UNSPECIFIED, 0)).unwrap().port());
        hs.push(h);
    }
    ports.sort();
    assert_eq!(ports, vec![40000, 40001, 40002]);
    let extra = udp_socket(&mut p.a).unwrap();
    // Autobind on send fails the same way.
    assert_eq!(
        udp_sendmsg(&mut p.a, extra, b"x", Some(sa(B_IP, 7))),
        Err(UdpErr::NoPorts)
    );
    udp_close(&mut p.a, hs.remove(1)).unwrap();
    assert_eq!(udp_sendmsg(&mut p.a, extra, b"x", Some(sa(B_IP, 7))), Ok(1));
    assert_eq!(udp_local_addr(&mut p.a, extra).unwrap().port(), 40001);
    p.settle();
    hs.push(extra);
    let socks: Vec<_> = hs.into_iter().map(|h| (true, h)).collect();
    close_all_and_check(p, &socks);
}

#[test]
fn rss_bucket_binding_follows_the_reta() {
    let mut p = pair(UdpConfig::default());
    // B's device pretends to have 4 queues: buckets 0..4 through a 128-entry RETA.
    p.b.core.reta = Reta::new(4).unwrap();
    let mut socks = Vec::new();
    for bucket in 0..4u16 {
        let h = udp_socket(&mut p.b).unwrap();
        udp_set_rss_bucket(&mut p.b, h, bucket).unwrap();
        udp_bind(&mut p.b, h, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
        socks.push(h);
    }
    let dup = udp_socket(&mut p.b).unwrap();
    udp_set_rss_bucket(&mut p.b, dup, 2).unwrap();
    assert!(matches!(
        udp_bind(&mut p.b, dup, sa(Ipv4Addr::UNSPECIFIED, 7)),
        Err(UdpErr::AddrInUse(_))
    ));
    udp_close(&mut p.b, dup).unwrap();
    let toeplitz = Toeplitz::default();
    let reta = Reta::new(4).unwrap();
    let mut expect = [0usize; 4];
    for sport in 20000..20064u16 {
        let h = udp_socket(&mut p.a).unwrap();
        udp_bind(&mut p.a, h, sa(A_IP, sport)).unwrap();
        udp_sendmsg(&mut p.a, h, &sport.to_be_bytes(), Some(sa(B_IP, 7))).unwrap();
        p.settle();
        udp_close(&mut p.a, h).unwrap();
        let want = hash2cpu(&reta, toeplitz.hash_ipv4_l4(A_IP.octets(), B_IP.octets(), sport, 7));
        expect[want as usize] += 1;
        let mut buf = [0u8; 2];
        let r = udp_recvmsg(&mut p.b, socks[want as usize], &mut buf).unwrap();
        assert_eq!(r.from.port(), sport, "bucket {want}");
        for (i, &s) in socks.iter().enumerate() {
            if i != want as usize {
                assert_eq!(udp_recvmsg(&mut p.b, s, &mut buf), Err(UdpErr::WouldBlock));
            }
        }
    }
    assert!(
        expect.iter().all(|&n| n > 0),
        "64 flows should cover all 4 buckets: {expect:?}"
    );
    let socks: Vec<_> = socks.into_iter().map(|h| (false, h)).collect();
    close_all_and_check(p, &socks);
}

#[test]
fn zero_copy_send_and_receive() {
    let mut p = pair(UdpConfig::default());
    let srv = udp_socket(&mut p.b).unwrap();
    udp_bind(&mut p.b, srv, sa(B_IP, 9)).unwrap();
    let cli = udp_socket(&mut p.a).unwrap();
    // No destination: the mbuf comes back.
    let mut m = p.a.core.cache.alloc().unwrap();
    m.append_slice(&pattern(1, 1000));
    let (back, e) = udp_send_mbuf(&mut p.a, cli, m, None).unwrap_err();
    assert_eq!(e, UdpErr::NotConnected);
    let m = back.expect("not consumed");
    udp_send_mbuf(&mut p.a, cli, m, Some(sa(B_IP, 9))).unwrap();
    let mut got = None;
    p.run_until(100, |p| {
        got = udp_recv_skb(&mut p.b, srv).ok();
        got.is_some()
    });
    let (skb, from) = got.expect("datagram arrives");
    assert_eq!(from, sa(A_IP, udp_local_addr(&mut p.a, cli).unwrap().port()));
    let mut v = Vec::new();
    for s in skb.segments() {
        v.extend_from_slice(s);
    }
    assert_eq!(v, pattern(1, 1000));
    drop(skb);
    // Truncating copy receive.
    udp_sendmsg(&mut p.a, cli, &pattern(2, 100), Some(sa(B_IP, 9))).unwrap();
    p.settle();
    let mut small = [0u8; 10];
    let r = udp_recvmsg(&mut p.b, srv, &mut small).unwrap();
    assert_eq!((r.len, r.datagram_len, r.truncated), (10, 100, true));
    assert_eq!(&small[..], &pattern(2, 100)[..10]);
    // Stale handles are errors.
    udp_close(&mut p.b, srv).unwrap();
    assert_eq!(udp_recvmsg(&mut p.b, srv, &mut small), Err(UdpErr::BadHandle));
    assert_eq!(udp_close(&mut p.b, srv), Err(UdpErr::BadHandle));
    assert_eq!(
        udp_sendmsg(&mut p.b, srv, b"x", Some(sa(A_IP, 1))),
        Err(UdpErr::BadHandle)
    );
    close_all_and_check(p, &[(true, cli)]);
}

#[test]
fn rcvbuf_overflow_is_counted() {
    let mut p = pair(UdpConfig::default());
    let buf_size = p.pool.buf_size();
    let srv = udp_socket(&mut p.b).unwrap();
    udp_bind(&mut p.b, srv, sa(B_IP, 9)).unwrap();
    with_udp(&mut p.b, |u, _| u.socks.get_mut(srv).unwrap().rcvbuf = 3 * buf_size).unwrap();
    let cli = udp_socket(&mut p.a).unwrap();
    for i in 0..10u8 {
        udp_sendmsg(&mut p.a, cli, &[i; 100], Some(sa(B_IP, 9))).unwrap();
    }
    p.settle();
    assert_eq!(p.b.core.mib.udp[UdpMib::RcvbufErrors], 7);
    assert_eq!(p.b.core.mib.udp[UdpMib::InErrors], 7);
    assert_eq!(p.b.core.mib.drops[blink_netcore::snmp::DropReason::SocketRcvBuff], 7);
    let mut buf = [0u8; 200];
    for i in 0..3u8 {
        let r = udp_recvmsg(&mut p.b, srv, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], &[i; 100][..]);
    }
    assert_eq!(udp_recvmsg(&mut p.b, srv, &mut buf), Err(UdpErr::WouldBlock));
    // Space again after reading.
    udp_sendmsg(&mut p.a, cli, b"again", Some(sa(B_IP, 9))).unwrap();
    p.settle();
    assert_eq!(udp_recvmsg(&mut p.b, srv, &mut buf).unwrap().len, 5);
    // Datagrams still queued at close are freed with the socket.
    udp_sendmsg(&mut p.a, cli, b"left", Some(sa(B_IP, 9))).unwrap();
    p.settle();
    close_all_and_check(p, &[(true, cli), (false, srv)]);
}

#[test]
fn broadcast_reaches_every_matching_socket() {
    let mut p = pair(UdpConfig::default());
    let mut socks = Vec::new();
    for addr in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, B_IP] {
        let h = udp_socket(&mut p.b).unwrap();
        udp_set_reuseaddr(&mut p.b, h, true).unwrap();
        udp_bind(&mut p.b, h, sa(addr, 6767)).unwrap();
        socks.push(h);
    }
    let c = udp_socket(&mut p.a).unwrap();
    udp_sendmsg(
        &mut p.a,
        c,
        b"to everyone",
        Some(sa(Ipv4Addr::new(10, 0, 0, 255), 6767)),
    )
    .unwrap();
    udp_sendmsg(&mut p.a, c, b"limited", Some(sa(Ipv4Addr::BROADCAST, 6767))).unwrap();
    p.settle();
    let mut buf = [0u8; 32];
    for &h in &socks[..2] {
        let r = udp_recvmsg(&mut p.b, h, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"to everyone");
        let r = udp_recvmsg(&mut p.b, h, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"limited");
    }
    // Bound to the unicast address: no broadcasts (Linux compute_score).
    assert_eq!(udp_recvmsg(&mut p.b, socks[2], &mut buf), Err(UdpErr::WouldBlock));
    // Unicast goes to one socket only (the specific bind wins).
    udp_sendmsg(&mut p.a, c, b"just one", Some(sa(B_IP, 6767))).unwrap();
    p.settle();
    assert!(udp_recvmsg(&mut p.b, socks[2], &mut buf).is_ok());
    assert_eq!(udp_recvmsg(&mut p.b, socks[0], &mut buf), Err(UdpErr::WouldBlock));
    let mut all: Vec<_> = socks.into_iter().map(|h| (false, h)).collect();
    all.push((true, c));
    close_all_and_check(p, &all);
}

#[test]
fn connect_picks_a_port_whose_replies_hash_to_this_core() {
    let mut p = pair(UdpConfig::default());
    // A is core 2 of 4: replies must come back to queue 2.
    p.a.core.cpu = 2;
    p.a.core.reta = Reta::new(4).unwrap();
    let toeplitz = Toeplitz::default();
    let mut socks = Vec::new();
    let mut ports = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let h = udp_socket(&mut p.a).unwrap();
        udp_connect(&mut p.a, h, sa(B_IP, 53)).unwrap();
        let port = udp_local_addr(&mut p.a, h).unwrap().port();
        let hash = toeplitz.hash_ipv4_l4(B_IP.octets(), A_IP.octets(), 53, port);
        assert_eq!(hash2cpu(&p.a.core.reta, hash), 2, "port {port}");
        assert!(ports.insert(port), "port {port} handed out twice");
        socks.push((true, h));
    }
    close_all_and_check(p, &socks);
}

#[test]
fn jumbo_datagrams_span_several_mbufs() {
    let mut p = pair_with_mtu(UdpConfig::default(), 9000);
    let srv = udp_socket(&mut p.b).unwrap();
    udp_bind(&mut p.b, srv, sa(B_IP, 9)).unwrap();
    let cli = udp_socket(&mut p.a).unwrap();
    let mut buf = vec![0u8; 9000];
    for n in [2049usize, 4000, 8972] {
        let data = pattern(n, n);
        udp_sendmsg(&mut p.a, cli, &data, Some(sa(B_IP, 9))).unwrap();
        p.settle();
        let r = udp_recvmsg(&mut p.b, srv, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], &data[..], "size {n}");
    }
    udp_set_dontfrag(&mut p.a, cli, true).unwrap();
    assert_eq!(
        udp_sendmsg(&mut p.a, cli, &vec![0u8; 8973], Some(sa(B_IP, 9))),
        Err(UdpErr::MessageTooLong { len: 9001, mtu: 9000 })
    );
    assert_eq!(p.b.core.mib.udp[UdpMib::InCsumErrors], 0);
    close_all_and_check(p, &[(true, cli), (false, srv)]);
}
