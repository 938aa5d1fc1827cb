//! Raw IPv4 sockets through glue on two instances over the in-memory wire: protocol 89
//! (OSPF's number, as IPAugenblick's raw benchmark), with and without IP_HDRINCL, the pull
//! lists and callbacks, zero-copy receive, typed user data and stale handles after close.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_glue::{Glue, GlueError, GlueHandler, SockKind, Socket};
use common::*;

const PROTO: u8 = 89;
const IP_HLEN: usize = 20;

fn wait_reader<U>(p: &mut Pair<U>, on_b: bool) -> Socket {
    for _ in 0..1000 {
        p.step();
        let r = if on_b { p.b.next_reader() } else { p.a.next_reader() };
        if let Some(s) = r {
            return s;
        }
    }
    panic!("no readable socket");
}

#[test]
fn pull_send_recv_hdrincl_and_zero_copy() {
    let mut p = pair::<&'static str>(cfg(), cfg());
    let sa = p.a.raw_socket(PROTO, Some("a")).unwrap();
    let sb = p.b.raw_socket(PROTO, None).unwrap();
    assert_eq!(sa.kind(), SockKind::Raw);
    p.step();
    assert_eq!(p.a.next_writer(), Some(sa), "a raw socket can send from the start");
    assert_eq!(p.a.next_writer(), None);
    assert_eq!(p.b.next_writer(), Some(sb));

    // Payload only: the stack builds the IP header; the receiver sees it first.
    let to = Some(SocketAddrV4::new(B_IP, 0));
    assert_eq!(p.a.send_to(sa, b"hello 89", to).unwrap(), 8);
    assert_eq!(wait_reader(&mut p, true), sb);
    let mut buf = [0u8; 256];
    let r = p.b.recv_from(sb, &mut buf).unwrap();
    assert_eq!(r.len, IP_HLEN + 8);
    assert_eq!(buf[9], PROTO, "IP header's protocol");
    assert_eq!(&buf[12..16], &A_IP.octets(), "source address");
    assert_eq!(&buf[IP_HLEN..r.len], b"hello 89");
    assert_eq!(r.from, SocketAddrV4::new(A_IP, 0));
    assert_eq!(p.b.recv_from(sb, &mut buf), Err(GlueError::WouldBlock));

    // IP_HDRINCL: B writes the whole packet (tot_len, checksum, id and source left 0 for the
    // stack to fill, as Linux does); A reads it back with a short buffer (truncated).
    p.b.raw_set_hdrincl(sb, true).unwrap();
    let mut pkt = [0u8; IP_HLEN + 40];
    pkt[0] = 0x45;
    pkt[8] = 64;
    pkt[9] = PROTO;
    pkt[16..20].copy_from_slice(&A_IP.octets());
    fill(3, &mut pkt[IP_HLEN..]);
    assert_eq!(
        p.b.send_to(sb, &pkt, Some(SocketAddrV4::new(A_IP, 0))).unwrap(),
        pkt.len()
    );
    assert_eq!(wait_reader(&mut p, false), sa);
    let mut short = [0u8; IP_HLEN + 10];
    let r = p.a.recv_from(sa, &mut short).unwrap();
    assert_eq!((r.len, r.orig_len, r.truncated), (short.len(), pkt.len(), true));
    assert_eq!(&short[IP_HLEN..], &pkt[IP_HLEN..IP_HLEN + 10]);
    assert_eq!(r.from, SocketAddrV4::new(B_IP, 0));
    assert_eq!(&short[12..16], &B_IP.octets(), "source filled by the stack");

    // Connected, zero-copy receive (data at the IP header).
    p.a.raw_connect(sa, B_IP).unwrap();
    p.b.raw_set_hdrincl(sb, false).unwrap();
    assert_eq!(p.a.send(sa, b"conn").unwrap(), 4);
    assert_eq!(wait_reader(&mut p, true), sb);
    let (skb, from) = p.b.recv_skb_from(sb).unwrap();
    assert_eq!(from, SocketAddrV4::new(A_IP, 0));
    let mut got = vec![0u8; skb.len()];
    assert!(skb.skb_copy_bits(0, &mut got));
    assert_eq!(&got[IP_HLEN..], b"conn");
    drop(skb);
    // Raw sends copy; zero-copy send is refused and the buffer comes back.
    let m = p.a.get_buffer().unwrap();
    let (m, e) = p.a.send_mbuf_to(sa, m, None).unwrap_err();
    assert!(matches!(e, GlueError::NotSupported(_)));
    assert!(m.is_some());
    drop(m);
    // UDP-only calls on a raw socket are refused.
    assert!(matches!(
        p.a.udp_bind(sa, "0.0.0.0:1".parse().unwrap()),
        Err(GlueError::NotSupported(_))
    ));

    assert_eq!(p.a.close(sa).unwrap(), Some("a"));
    assert_eq!(p.b.close(sb).unwrap(), None);
    p.drain_and_check();
}

#[test]
fn bind_filters_by_destination() {
    let mut p = pair::<()>(cfg(), cfg());
    let other = p.b.raw_socket(PROTO, None).unwrap();
    // Bound to an address B does not have: refused.
    assert_eq!(
        p.b.raw_bind(other, Ipv4Addr::new(10, 0, 0, 77)),
        Err(GlueError::AddrNotAvailable(Ipv4Addr::new(10, 0, 0, 77)))
    );
    p.b.raw_bind(other, B_IP).unwrap();
    // A socket of another protocol sees nothing of protocol 89.
    let proto90 = p.b.raw_socket(90, None).unwrap();
    let sa = p.a.raw_socket(PROTO, None).unwrap();
    p.a.send_to(sa, b"x", Some(SocketAddrV4::new(B_IP, 0))).unwrap();
    assert_eq!(wait_reader(&mut p, true), other);
    for _ in 0..20 {
        p.step();
    }
    assert_eq!(p.b.next_reader(), None);
    assert_eq!(p.b.recv_from(proto90, &mut [0u8; 64]), Err(GlueError::WouldBlock));
    for s in [other, proto90] {
        p.b.close(s).unwrap();
    }
    p.a.close(sa).unwrap();
    p.drain_and_check();
}

/// Echo protocol-89 payloads back from callbacks; count each callback.
#[derive(Default)]
struct Echo89 {
    readable: u32,
    writable: u32,
    echoed: u32,
}

impl GlueHandler<u32> for Echo89 {
    fn on_readable(&mut self, glue: &mut Glue<u32>, s: Socket) {
        self.readable += 1;
        let mut buf = [0u8; 2048];
        while let Ok(r) = glue.recv_from(s, &mut buf) {
            glue.send_to(s, &buf[IP_HLEN..r.len], Some(r.from)).unwrap();
            *glue.user_data_mut(s).unwrap() += 1;
            self.echoed += 1;
        }
    }
    fn on_writable(&mut self, _glue: &mut Glue<u32>, _s: Socket) {
        self.writable += 1;
    }
}

#[test]
fn callbacks_echo_then_stale_handles() {
    let mut p = pair::<u32>(cfg(), cfg());
    let server = p.b.raw_socket(PROTO, Some(0)).unwrap();
    let client = p.a.raw_socket(PROTO, Some(7)).unwrap();
    p.a.raw_connect(client, B_IP).unwrap();
    let mut ha = Echo89::default();
    let mut hb = Echo89::default();
    p.step_with(&mut ha, &mut hb);
    assert_eq!((ha.writable, hb.writable), (1, 1));

    let mut buf = [0u8; 2048];
    for i in 0..10usize {
        let mut msg = vec![0u8; 1 + i * 100];
        fill(i as u64, &mut msg);
        p.a.send(client, &msg).unwrap();
        let mut echoed = false;
        for _ in 0..1000 {
            p.a.periodic();
            p.b.periodic_with(&mut hb);
            p.vc.advance_ms(1);
            if p.a.next_reader() == Some(client) {
                let r = p.a.recv_from(client, &mut buf).unwrap();
                assert_eq!(&buf[IP_HLEN..r.len], &msg[..]);
                echoed = true;
                break;
            }
        }
        assert!(echoed, "datagram {i} echoed");
    }
    assert_eq!(hb.echoed, 10);
    assert!(hb.readable >= 1);
    assert_eq!(p.b.user_data(server), Some(&10));

    assert_eq!(p.a.close(client).unwrap(), Some(7));
    assert_eq!(p.b.close(server).unwrap(), Some(10));
    for (g, s) in [(&mut p.a, client), (&mut p.b, server)] {
        assert_eq!(g.send(s, b"x"), Err(GlueError::BadHandle));
        assert_eq!(g.recv(s, &mut buf), Err(GlueError::BadHandle));
        assert_eq!(g.raw_connect(s, B_IP), Err(GlueError::BadHandle));
        assert_eq!(g.raw_set_hdrincl(s, true), Err(GlueError::BadHandle));
        assert!(matches!(g.recv_skb_from(s), Err(GlueError::BadHandle)));
        assert_eq!(g.close(s), Err(GlueError::BadHandle));
        assert_eq!(g.user_data(s), None);
    }
    p.drain_and_check();
}
