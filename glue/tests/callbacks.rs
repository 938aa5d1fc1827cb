//! Every GlueHandler callback, driven over the in-memory wire: accept, connected, readable,
//! writable, closed (normal, refused, reset), with per-socket user data carried through.

mod common;

use blink_glue::{CloseReason, Closed, Glue, GlueError, GlueHandler, Socket};
use common::*;

#[derive(Debug, Default, PartialEq)]
struct Conn {
    id: u32,
    rx: Vec<u8>,
}

#[derive(Default)]
struct Server {
    accepts: Vec<(Socket, Socket)>,
    readable: u32,
    closed_by_app: Vec<Conn>,
}

impl GlueHandler<Conn> for Server {
    fn on_accept(&mut self, glue: &mut Glue<Conn>, listener: Socket, sock: Socket) {
        assert!(glue.user_data(sock).is_none(), "an accepted socket starts without data");
        let id = self.accepts.len() as u32;
        assert!(glue.set_user_data(sock, Conn { id, rx: Vec::new() }).unwrap().is_none());
        self.accepts.push((listener, sock));
    }

    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        self.readable += 1;
        let mut buf = [0u8; 512];
        loop {
            match glue.recv(s, &mut buf) {
                Ok(0) => {
                    // The peer shut down: answer and finish our side; the data comes back.
                    let c = glue.close(s).unwrap().expect("user data set on accept");
                    self.closed_by_app.push(c);
                    return;
                }
                Ok(n) => {
                    glue.user_data_mut(s).unwrap().rx.extend_from_slice(&buf[..n]);
                    if glue.user_data(s).unwrap().rx.ends_with(b"hello") {
                        assert_eq!(glue.send(s, b"world").unwrap(), 5);
                    }
                }
                Err(GlueError::WouldBlock) => return,
                Err(e) => panic!("server recv: {e}"),
            }
        }
    }
}

#[derive(Default)]
struct Client {
    connected: Vec<Socket>,
    writable: u32,
    readable: u32,
    rx: Vec<u8>,
    eof: bool,
    closed: Vec<Closed<Conn>>,
}

impl GlueHandler<Conn> for Client {
    fn on_connected(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        self.connected.push(s);
        assert_eq!(glue.send(s, b"hello").unwrap(), 5);
    }

    fn on_writable(&mut self, _glue: &mut Glue<Conn>, _s: Socket) {
        self.writable += 1;
    }

    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        self.readable += 1;
        let mut buf = [0u8; 512];
        loop {
            match glue.recv(s, &mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => {
                    self.rx.extend_from_slice(&buf[..n]);
                    if self.rx == b"world" {
                        glue.shutdown(s).unwrap();
                    }
                }
                Err(GlueError::WouldBlock) => return,
                Err(e) => panic!("client recv: {e}"),
            }
        }
    }

    fn on_closed(&mut self, _glue: &mut Glue<Conn>, c: Closed<Conn>) {
        self.closed.push(c);
    }
}

#[test]
fn a_whole_connection_through_callbacks() {
    let mut p = pair::<Conn>(cfg(), cfg());
    let l = p.b.tcp_listen(80, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, 80, Some(Conn { id: 7, rx: Vec::new() })).unwrap();
    let (mut cl, mut sv) = (Client::default(), Server::default());
    for _ in 0..20_000 {
        p.step_with(&mut cl, &mut sv);
        if !cl.closed.is_empty() {
            break;
        }
    }
    assert_eq!(cl.connected, vec![c]);
    assert_eq!(sv.accepts.len(), 1);
    assert_eq!(sv.accepts[0].0, l);
    assert_eq!(cl.rx, b"world");
    assert!(cl.eof, "client saw the server's FIN");
    assert_eq!(sv.closed_by_app.len(), 1);
    assert_eq!(sv.closed_by_app[0].rx, b"hello");
    assert!(sv.readable >= 2, "data and then end of stream");
    // Writable once: the connection opened with send space; nothing was ever refused.
    assert_eq!(cl.writable, 1);
    // The client only shut down; the connection finished on its own (after TIME-WAIT).
    assert_eq!(cl.closed.len(), 1);
    let closed = cl.closed.pop().unwrap();
    assert_eq!(closed.sock, c);
    assert_eq!(closed.reason, CloseReason::Normal);
    assert_eq!(closed.data.unwrap().id, 7, "user data comes back with the closed event");
    assert_eq!(p.a.send(c, b"x"), Err(GlueError::BadHandle));
    p.b.close(l).unwrap();
    p.drain_and_check();
}

#[test]
fn refused_connect_reports_closed_with_reason() {
    let mut p = pair::<Conn>(cfg(), cfg());
    let c = p.a.tcp_connect(B_IP, 9, Some(Conn { id: 1, rx: Vec::new() })).unwrap();
    let (mut cl, mut sv) = (Client::default(), Server::default());
    for _ in 0..2_000 {
        p.step_with(&mut cl, &mut sv);
        if !cl.closed.is_empty() {
            break;
        }
    }
    assert!(cl.connected.is_empty());
    assert_eq!(cl.closed.len(), 1);
    assert_eq!(cl.closed[0].sock, c);
    assert_eq!(cl.closed[0].reason, CloseReason::Refused);
    assert_eq!(cl.closed[0].data.as_ref().unwrap().id, 1);
    assert_eq!(p.a.close(c), Err(GlueError::BadHandle));
    p.drain_and_check();
}

/// A server that closes as soon as it accepts, with the client's data unread: a reset.
struct Slammer;

impl GlueHandler<Conn> for Slammer {
    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        glue.close(s).unwrap();
    }
}

#[test]
fn reset_reports_closed_with_reason() {
    let mut p = pair::<Conn>(cfg(), cfg());
    let l = p.b.tcp_listen(80, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, 80, None).unwrap();
    let mut cl = Client::default();
    for _ in 0..5_000 {
        p.step_with(&mut cl, &mut Slammer);
        if !cl.closed.is_empty() {
            break;
        }
    }
    assert_eq!(cl.connected, vec![c]);
    assert_eq!(cl.closed.len(), 1);
    assert_eq!(cl.closed[0].reason, CloseReason::Reset);
    assert!(cl.closed[0].data.is_none());
    p.b.close(l).unwrap();
    p.drain_and_check();
}
