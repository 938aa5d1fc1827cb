//! The pull API: next_listener / accept, next_connected, next_reader, next_writer,
//! next_closed, without any callbacks.

mod common;

use blink_glue::{CloseReason, GlueError};
use common::*;

#[test]
fn every_pull_function() {
    let mut p = pair::<&'static str>(cfg(), cfg());
    let l = p.b.tcp_listen(8080, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, 8080, Some("client")).unwrap();
    assert_eq!(p.a.user_data(c), Some(&"client"));

    // Handshake: the client is connected (and writable), the server has one to accept.
    let mut server = None;
    let mut connected = false;
    for _ in 0..1000 {
        p.step();
        if let Some(s) = p.a.next_connected() {
            assert_eq!(s, c);
            connected = true;
        }
        if let Some(ls) = p.b.next_listener() {
            assert_eq!(ls, l);
            server = p.b.accept(ls).unwrap();
            assert!(p.b.accept(ls).unwrap().is_none(), "one connection only");
        }
        if connected && server.is_some() {
            break;
        }
    }
    let s = server.expect("accepted");
    assert!(connected);
    // Events of the accepted socket are collected by the next poll.
    p.step();
    assert_eq!(p.a.next_writer(), Some(c), "a new connection may send");
    assert_eq!(p.a.next_writer(), None, "listed once, not on every poll");
    assert_eq!(p.b.next_writer(), Some(s));
    assert_eq!(*p.b.addrs(s).unwrap().1.ip(), A_IP);
    assert!(p.b.set_user_data(s, "server").unwrap().is_none());

    // Data: the server becomes a reader.
    assert_eq!(p.a.send(c, b"ping").unwrap(), 4);
    let mut got = Vec::new();
    for _ in 0..1000 {
        p.step();
        while let Some(r) = p.b.next_reader() {
            assert_eq!(r, s);
            let mut buf = [0u8; 64];
            while let Ok(n) = p.b.recv(r, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        if got.len() == 4 {
            break;
        }
    }
    assert_eq!(got, b"ping");
    for _ in 0..50 {
        p.step();
    }
    assert_eq!(p.b.next_reader(), None, "no new data, no new event");
    assert_eq!(p.b.recv(s, &mut [0u8; 8]), Err(GlueError::WouldBlock));

    // The server shuts down; the client reads the end of stream and closes too; the server
    // side then finishes on its own and shows up on the closed list with its data.
    p.b.shutdown(s).unwrap();
    let mut eof = false;
    let mut closed = None;
    for _ in 0..20_000 {
        p.step();
        if let Some(r) = p.a.next_reader() {
            if p.a.recv(r, &mut [0u8; 8]) == Ok(0) {
                eof = true;
                assert_eq!(p.a.close(r).unwrap(), Some("client"));
            }
        }
        // Readers first, so the end of stream is not lost when the closed event comes.
        while p.b.next_reader().is_some() {}
        if let Some(cl) = p.b.next_closed() {
            closed = Some(cl);
            break;
        }
    }
    assert!(eof);
    let cl = closed.expect("server socket reported closed");
    assert_eq!(cl.sock, s);
    assert_eq!(cl.reason, CloseReason::Normal);
    assert_eq!(cl.data, Some("server"));
    assert!(p.a.next_closed().is_none(), "the application closed it: no news");
    assert_eq!(p.b.recv(s, &mut [0u8; 8]), Err(GlueError::BadHandle));
    p.b.close(l).unwrap();
    p.drain_and_check();
}
