//! UDP sockets through glue on two instances over the in-memory wire: creation, bind,
//! connect, copying and zero-copy send/receive with the peer address, the pull lists and the
//! callbacks (readable, writable, error), typed user data and stale handles after close.

mod common;

use std::net::SocketAddrV4;

use blink_glue::netcore::snmp::UdpMib;
use blink_glue::udp::SockErr;
use blink_glue::{Glue, GlueError, GlueHandler, SockKind, Socket};
use common::*;

fn steps<U>(p: &mut Pair<U>, n: usize) {
    for _ in 0..n {
        p.step();
    }
}

/// Poll (pull mode) until `glue`'s reader list yields a socket.
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
fn pull_send_recv_with_peer_address() {
    let mut p = pair::<&'static str>(cfg(), cfg());
    let sa = p.a.udp_socket(Some("a")).unwrap();
    let sb = p.b.udp_socket(None).unwrap();
    assert_eq!(sa.kind(), SockKind::Udp);
    let ab = p.a.udp_bind(sa, "0.0.0.0:5000".parse().unwrap()).unwrap();
    assert_eq!(ab.port(), 5000);
    let bb = p.b.udp_bind(sb, "0.0.0.0:0".parse().unwrap()).unwrap();
    assert_ne!(bb.port(), 0, "ephemeral port chosen");
    assert_eq!(p.b.udp_local_addr(sb).unwrap(), bb);
    let b_addr = SocketAddrV4::new(B_IP, bb.port());

    // A new datagram socket can send: listed writable once.
    p.step();
    assert_eq!(p.a.next_writer(), Some(sa));
    assert_eq!(p.b.next_writer(), Some(sb));
    steps(&mut p, 5);
    assert_eq!(p.a.next_writer(), None, "listed once, not on every poll");

    assert_eq!(p.a.send_to(sa, b"hello", Some(b_addr)).unwrap(), 5);
    assert_eq!(wait_reader(&mut p, true), sb);
    let mut buf = [0u8; 64];
    let r = p.b.recv_from(sb, &mut buf).unwrap();
    assert_eq!(&buf[..r.len], b"hello");
    assert_eq!(r.from, SocketAddrV4::new(A_IP, 5000));
    assert!(!r.truncated);
    assert_eq!(p.b.recv_from(sb, &mut buf), Err(GlueError::WouldBlock));
    steps(&mut p, 20);
    assert_eq!(p.b.next_reader(), None, "no new datagram, no new event");

    // Answer to the source; a short buffer truncates (MSG_TRUNC) and drops the rest.
    let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    assert_eq!(p.b.send_to(sb, &big, Some(r.from)).unwrap(), 300);
    assert_eq!(wait_reader(&mut p, false), sa);
    let mut small = [0u8; 10];
    let r = p.a.recv_from(sa, &mut small).unwrap();
    assert_eq!((r.len, r.orig_len, r.truncated), (10, 300, true));
    assert_eq!(&small[..], &big[..10]);
    assert_eq!(r.from, b_addr);
    assert_eq!(p.a.recv_from(sa, &mut small), Err(GlueError::WouldBlock));

    // Connected: plain send/recv go to/come from the peer.
    p.a.udp_connect(sa, b_addr).unwrap();
    assert_eq!(p.a.send(sa, b"conn").unwrap(), 4);
    assert_eq!(wait_reader(&mut p, true), sb);
    assert_eq!(p.b.recv(sb, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"conn");
    // An empty datagram is a datagram.
    assert_eq!(p.a.send(sa, b"").unwrap(), 0);
    assert_eq!(wait_reader(&mut p, true), sb);
    assert_eq!(p.b.recv(sb, &mut buf), Ok(0));
    assert_eq!(p.b.recv(sb, &mut buf), Err(GlueError::WouldBlock));

    // TCP-only calls are refused, not confused.
    assert!(matches!(p.a.shutdown(sa), Err(GlueError::NotSupported(_))));
    assert!(matches!(p.a.accept(sa), Err(GlueError::NotSupported(_))));

    assert_eq!(p.a.close(sa).unwrap(), Some("a"));
    assert_eq!(p.b.close(sb).unwrap(), None);
    p.drain_and_check();
}

#[test]
fn zero_copy_send_and_receive() {
    let mut p = pair::<()>(cfg(), cfg());
    let sa = p.a.udp_socket(None).unwrap();
    let sb = p.b.udp_socket(None).unwrap();
    p.b.udp_bind(sb, "10.0.0.2:6000".parse().unwrap()).unwrap();
    let to = SocketAddrV4::new(B_IP, 6000);
    let mut payload = vec![0u8; 1000];
    fill(7, &mut payload);
    let mut m = p.a.get_buffer().expect("pool has buffers");
    assert!(m.append_slice(&payload));
    p.a.send_mbuf_to(sa, m, Some(to)).map_err(|(_, e)| e).unwrap();
    let src = p.a.udp_local_addr(sa).unwrap();
    assert_ne!(src.port(), 0, "the first send binds an ephemeral port");

    assert_eq!(wait_reader(&mut p, true), sb);
    let (skb, from) = p.b.recv_skb_from(sb).unwrap();
    assert_eq!(from, SocketAddrV4::new(A_IP, src.port()));
    assert_eq!(skb.len(), payload.len());
    let mut got = vec![0u8; skb.len()];
    assert!(skb.skb_copy_bits(0, &mut got));
    assert_eq!(got, payload);
    drop(skb);
    assert!(matches!(p.b.recv_skb_from(sb), Err(GlueError::WouldBlock)));

    // No destination: the mbuf comes back, nothing leaks.
    let m = p.a.get_buffer().unwrap();
    let (m, e) = p.a.send_mbuf_to(sa, m, None).unwrap_err();
    assert_eq!(e, GlueError::NotConnected);
    drop(m);

    p.a.close(sa).unwrap();
    p.b.close(sb).unwrap();
    p.drain_and_check();
}

#[test]
fn icmp_port_unreachable_lists_the_error_once() {
    let mut p = pair::<()>(cfg(), cfg());
    let s = p.a.udp_socket(None).unwrap();
    // Nobody listens on B's port 9: B answers ICMP port unreachable.
    p.a.udp_connect(s, SocketAddrV4::new(B_IP, 9)).unwrap();
    p.step();
    assert_eq!(p.a.next_writer(), Some(s));
    p.a.send(s, b"anyone?").unwrap();
    let mut err = None;
    for _ in 0..1000 {
        p.step();
        if let Some(e) = p.a.next_error() {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(s), "error listed");
    assert_eq!(p.a.next_error(), None);
    let mut buf = [0u8; 16];
    assert_eq!(p.a.recv_from(s, &mut buf), Err(GlueError::Icmp(SockErr::ConnRefused)));
    assert_eq!(p.a.recv_from(s, &mut buf), Err(GlueError::WouldBlock), "reported once");
    assert_eq!(
        p.b.stack().core.mib.udp[UdpMib::NoPorts],
        1,
        "B counted the datagram to a closed port"
    );
    p.a.close(s).unwrap();
    p.drain_and_check();
}

/// B echoes datagrams from its callbacks; counts every callback it gets.
#[derive(Default)]
struct Echo {
    readable: u32,
    writable: u32,
    errors: u32,
    echoed: u32,
}

impl GlueHandler<u64> for Echo {
    fn on_readable(&mut self, glue: &mut Glue<u64>, s: Socket) {
        self.readable += 1;
        let mut buf = [0u8; 2048];
        while let Ok(r) = glue.recv_from(s, &mut buf) {
            glue.send_to(s, &buf[..r.len], Some(r.from)).unwrap();
            *glue.user_data_mut(s).unwrap() += 1;
            self.echoed += 1;
        }
    }
    fn on_writable(&mut self, _glue: &mut Glue<u64>, _s: Socket) {
        self.writable += 1;
    }
    fn on_error(&mut self, glue: &mut Glue<u64>, s: Socket) {
        self.errors += 1;
        // Consume the error so the socket goes on.
        let _ = glue.recv_from(s, &mut [0u8; 1]);
    }
}

#[test]
fn callbacks_echo_and_error() {
    let mut p = pair::<u64>(cfg(), cfg());
    let server = p.b.udp_socket(Some(0)).unwrap();
    p.b.udp_bind(server, "0.0.0.0:7".parse().unwrap()).unwrap();
    let client = p.a.udp_socket(Some(0)).unwrap();
    p.a.udp_connect(client, SocketAddrV4::new(B_IP, 7)).unwrap();
    let dead = p.a.udp_socket(Some(0)).unwrap();
    p.a.udp_connect(dead, SocketAddrV4::new(B_IP, 8)).unwrap();

    let mut ha = Echo::default();
    let mut hb = Echo::default();
    p.step_with(&mut ha, &mut hb);
    assert_eq!((ha.writable, hb.writable), (2, 1), "each new socket once");

    let mut got = 0usize;
    let mut buf = [0u8; 2048];
    for i in 0..20u32 {
        let msg = vec![i as u8; 1 + i as usize * 50];
        p.a.send(client, &msg).unwrap();
        for _ in 0..1000 {
            // A pulls its client replies itself; B runs on callbacks.
            p.a.periodic();
            p.b.periodic_with(&mut hb);
            p.vc.advance_ms(1);
            if let Some(s) = p.a.next_reader() {
                assert_eq!(s, client);
                let n = p.a.recv(s, &mut buf).unwrap();
                assert_eq!(&buf[..n], &msg[..]);
                got += 1;
                break;
            }
        }
    }
    assert_eq!(got, 20);
    assert_eq!(hb.echoed, 20);
    assert!(hb.readable >= 1 && hb.readable <= 20);
    assert_eq!(p.b.user_data(server), Some(&20));

    p.a.send(dead, b"x").unwrap();
    for _ in 0..1000 {
        p.step_with(&mut ha, &mut hb);
        if ha.errors > 0 {
            break;
        }
    }
    assert_eq!(ha.errors, 1, "on_error for the socket of the closed port");
    assert_eq!(
        p.a.recv(dead, &mut buf),
        Err(GlueError::WouldBlock),
        "error consumed by the callback"
    );

    // Typed user data, then stale handles after close: errors, never panics.
    assert_eq!(p.a.set_user_data(client, 99).unwrap(), Some(0));
    assert_eq!(p.a.take_user_data(client), Some(99));
    assert_eq!(p.a.close(client).unwrap(), None);
    assert_eq!(p.a.close(dead).unwrap(), Some(0));
    assert_eq!(p.b.close(server).unwrap(), Some(20));
    for s in [client, dead] {
        assert_eq!(p.a.send(s, b"x"), Err(GlueError::BadHandle));
        assert_eq!(p.a.recv_from(s, &mut buf), Err(GlueError::BadHandle));
        assert_eq!(p.a.udp_bind(s, "0.0.0.0:1".parse().unwrap()), Err(GlueError::BadHandle));
        assert!(matches!(p.a.recv_skb_from(s), Err(GlueError::BadHandle)));
        assert_eq!(p.a.close(s), Err(GlueError::BadHandle));
        assert_eq!(p.a.set_user_data(s, 1), Err(GlueError::BadHandle));
        assert_eq!(p.a.user_data(s), None);
        let m = p.a.get_buffer().unwrap();
        let (m, e) = p.a.send_mbuf_to(s, m, None).unwrap_err();
        assert_eq!(e, GlueError::BadHandle);
        assert!(m.is_some());
    }
    p.drain_and_check();
}
