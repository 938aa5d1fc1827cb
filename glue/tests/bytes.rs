//! `bytes::Bytes` at the application edge, on the in-memory wire: received payload is a `Bytes`
//! over the mbuf it arrived in, an echo sends it back without a copy (the same address comes
//! back), and every buffer returns to the pool when the last `Bytes` drops, on any thread.

mod common;

use std::net::SocketAddrV4;

use blink_glue::bytes::Bytes;
use blink_glue::{Glue, GlueError, Socket};
use common::*;

const PORT: u16 = 7;

/// A connection A -> B: (A's end, B's end, B's listener).
fn connect(p: &mut Pair<()>) -> (Socket, Socket, Socket) {
    let l = p.b.tcp_listen(PORT, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, PORT, None).unwrap();
    let mut s = None;
    let mut up = false;
    for _ in 0..1000 {
        p.step();
        up |= p.a.next_connected() == Some(c);
        if s.is_none() && p.b.next_listener().is_some() {
            s = p.b.accept(l).unwrap();
        }
        if up && s.is_some() {
            break;
        }
    }
    assert!(up);
    (c, s.expect("accepted"), l)
}

/// Poll until `want` bytes arrived on `s` of `side` as `Bytes` (collected in order).
fn recv_all(p: &mut Pair<()>, a_side: bool, s: Socket, want: usize) -> Vec<Bytes> {
    let mut got = Vec::new();
    let mut n = 0;
    for _ in 0..100_000 {
        let g: &mut Glue<()> = if a_side { &mut p.a } else { &mut p.b };
        loop {
            match g.recv_bytes(s) {
                Ok(Some(b)) => {
                    n += b.len();
                    got.push(b);
                }
                Ok(None) => panic!("end of stream after {n} of {want}"),
                Err(GlueError::WouldBlock) => break,
                Err(e) => panic!("recv_bytes: {e}"),
            }
        }
        if n >= want {
            break;
        }
        p.step();
    }
    assert_eq!(n, want);
    got
}

fn concat(v: &[Bytes]) -> Vec<u8> {
    v.iter().flat_map(|b| b.iter().copied()).collect()
}

fn close_all(p: &mut Pair<()>, socks: (Socket, Socket, Socket)) {
    p.a.close(socks.0).unwrap();
    p.b.close(socks.1).unwrap();
    p.b.close(socks.2).unwrap();
    p.drain_and_check();
}

/// B receives `Bytes` and echoes them with `send_bytes`: no copy anywhere after A's send, so
/// the payload A gets back sits at the very addresses B received it at.
#[test]
fn echo_of_received_bytes_sends_the_same_buffers_back() {
    let mut p = pair::<()>(cfg(), cfg());
    let socks @ (c, s, _) = connect(&mut p);
    let mut data = vec![0u8; 50_000];
    fill(0, &mut data);
    let mut sent = 0;
    while sent < data.len() {
        sent += p.a.send(c, &data[sent..]).unwrap();
        p.step();
    }
    let at_b = recv_all(&mut p, false, s, data.len());
    assert_eq!(concat(&at_b), data);
    for b in &at_b {
        assert!(
            p.pool.mbuf_containing(b).is_some(),
            "received payload lies in an mbuf of the pool"
        );
    }
    let b_addrs: Vec<(usize, usize)> = at_b.iter().map(|b| (b.as_ptr() as usize, b.len())).collect();
    for b in &at_b {
        let mut off = 0;
        while off < b.len() {
            let part = b.slice(off..);
            let n = p.b.send_bytes(s, &part).unwrap();
            off += n;
            if n == 0 {
                p.step();
            }
        }
    }
    let at_a = recv_all(&mut p, true, c, data.len());
    assert_eq!(concat(&at_a), data, "the echo is intact");
    let a_addrs: Vec<(usize, usize)> = at_a.iter().map(|b| (b.as_ptr() as usize, b.len())).collect();
    assert_eq!(a_addrs, b_addrs, "the echo came back in the same buffers: no copy");
    let held = p.pool.in_use();
    drop(at_b);
    assert_eq!(p.pool.in_use(), held, "A's Bytes still hold the buffers B let go of");
    drop(at_a);
    close_all(&mut p, socks);
}

/// The buffers behind received `Bytes` come back to the pool when the `Bytes` are dropped on
/// another thread; clones and slices keep them until the last goes.
#[test]
fn bytes_dropped_on_another_thread_return_their_buffers() {
    let mut p = pair::<()>(cfg(), cfg());
    let socks @ (c, s, _) = connect(&mut p);
    for _ in 0..300 {
        p.step();
    }
    let baseline = p.pool.in_use();
    let mut data = vec![0u8; 100_000];
    fill(7, &mut data);
    let mut sent = 0;
    while sent < data.len() {
        sent += p.a.send(c, &data[sent..]).unwrap();
        p.step();
    }
    let got = recv_all(&mut p, false, s, data.len());
    // Let the ACKs free A's copies: what stays in use is what the Bytes hold.
    for _ in 0..300 {
        p.step();
    }
    let held = p.pool.in_use() - baseline;
    assert!(
        held >= got.len(),
        "each Bytes holds its buffer: {held} for {}",
        got.len()
    );
    let one = got[3].slice(10..20);
    let n = got.len();
    let t = std::thread::spawn(move || {
        let ok = concat(&got) == data;
        drop(got);
        ok
    });
    assert!(t.join().unwrap(), "the data arrived intact");
    assert_eq!(
        p.pool.in_use(),
        baseline + 1,
        "the {n} buffers came back from the other thread; the slice keeps one"
    );
    let t = std::thread::spawn(move || drop(one));
    t.join().unwrap();
    assert_eq!(p.pool.in_use(), baseline, "and the last slice's too");
    close_all(&mut p, socks);
}

/// An application's own `Bytes` over a pool buffer (its own owner type around
/// `get_buffer()`) is recognised by address alone and sent without a copy, split at the MSS;
/// a `Bytes` from the heap is copied once.
#[test]
fn send_bytes_shares_pool_buffers_and_copies_others() {
    struct MyOwner(blink_glue::netcore::mbuf::Mbuf);
    impl AsRef<[u8]> for MyOwner {
        fn as_ref(&self) -> &[u8] {
            self.0.data()
        }
    }
    let mut p = pair::<()>(cfg(), cfg());
    let socks @ (c, s, _) = connect(&mut p);
    let mut m = p.a.get_buffer().unwrap();
    let mut payload = vec![0u8; 2000];
    fill(11, &mut payload);
    assert!(m.append_slice(&payload));
    let mine = Bytes::from_owner(MyOwner(m));
    let base = mine.as_ptr() as usize;
    assert_eq!(p.a.send_bytes(c, &mine).unwrap(), 2000);
    drop(mine);
    let got = recv_all(&mut p, false, s, 2000);
    assert_eq!(concat(&got), payload);
    let mss = got[0].len();
    assert!(mss < 2000 && got.len() == 2, "split at the MSS: {got:?}");
    assert_eq!(
        got[0].as_ptr() as usize,
        base,
        "first segment: the application's buffer"
    );
    assert_eq!(
        got[1].as_ptr() as usize,
        base + mss,
        "second: the same buffer, further on"
    );
    drop(got);

    let heap = Bytes::from(b"from the heap".to_vec());
    assert!(p.pool.mbuf_containing(&heap).is_none());
    assert_eq!(p.a.send_bytes(c, &heap).unwrap(), heap.len());
    let got = recv_all(&mut p, false, s, heap.len());
    assert_eq!(concat(&got), &heap[..]);
    assert_ne!(got[0].as_ptr(), heap.as_ptr(), "copied into a buffer of the pool");
    drop(got);

    // On a UDP socket: one datagram each way (sent with one copy, received over its mbuf).
    let u = p.a.udp_socket(None).unwrap();
    let r = p.b.udp_socket(None).unwrap();
    p.b.udp_bind(r, SocketAddrV4::new(B_IP, 9)).unwrap();
    let d = Bytes::from_static(b"datagram");
    p.a.udp_connect(u, SocketAddrV4::new(B_IP, 9)).unwrap();
    assert_eq!(p.a.send_bytes(u, &d).unwrap(), 8);
    p.step();
    let (got, from) = p.b.recv_bytes_from(r).unwrap();
    assert_eq!((&got[..], *from.ip()), (&b"datagram"[..], A_IP));
    assert!(
        p.pool.mbuf_containing(&got).is_some(),
        "a datagram as Bytes over its mbuf"
    );
    drop(got);
    assert_eq!(p.b.recv_bytes(r), Err(GlueError::WouldBlock));
    p.a.close(u).unwrap();
    p.b.close(r).unwrap();
    close_all(&mut p, socks);
}
