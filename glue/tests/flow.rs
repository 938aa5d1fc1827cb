//! Flow control through glue: a slow reader (the window closes and reopens, every byte
//! arrives), a slow writer (writable events only after a refusal, never on every poll),
//! zero-copy send and receive, and handles used after close.

mod common;

use blink_glue::netcore::mbuf::Mbuf;
use blink_glue::tcp::TcpConfig;
use blink_glue::{Glue, GlueError, GlueHandler, Socket};
use common::*;

/// Connect A -> B:port and accept; returns (client, server).
fn open(p: &mut Pair<()>, port: u16) -> (Socket, Socket, Socket) {
    let l = p.b.tcp_listen(port, 16).unwrap();
    let c = p.a.tcp_connect(B_IP, port, None).unwrap();
    for _ in 0..1000 {
        p.step();
        if let Some(ls) = p.b.next_listener() {
            let s = p.b.accept(ls).unwrap().unwrap();
            // Settle the handshake's events.
            for _ in 0..10 {
                p.step();
            }
            while p.a.next_connected().is_some() || p.a.next_writer().is_some() {}
            while p.b.next_writer().is_some() {}
            return (l, c, s);
        }
    }
    panic!("no connection");
}

fn snd_wnd(g: &mut Glue<()>, s: Socket) -> u32 {
    blink_glue::tcp::with_tcp(g.stack_mut(), |t, _| t.socks.get(s.handle()).unwrap().snd_wnd).unwrap()
}

#[test]
fn slow_reader_closes_and_reopens_the_window() {
    let rcvbuf = 64 * 1024;
    let b_cfg = TcpConfig { rcvbuf, ..cfg() };
    let a_cfg = TcpConfig {
        sndbuf: 64 * 1024,
        ..cfg()
    };
    let mut p = pair::<()>(a_cfg, b_cfg);
    let (l, c, s) = open(&mut p, 5000);
    let total: u64 = 1 << 20;
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    // Phase 1: B does not read. A sends until the window is shut.
    let mut stalled_for = 0;
    for _ in 0..50_000 {
        p.step();
        let n = ((total - sent) as usize).min(buf.len());
        fill(sent, &mut buf[..n]);
        let k = p.a.send(c, &buf[..n]).unwrap();
        sent += k as u64;
        if k == 0 && snd_wnd(&mut p.a, c) == 0 {
            stalled_for += 1;
            if stalled_for > 2000 {
                break;
            }
        }
    }
    assert_eq!(snd_wnd(&mut p.a, c), 0, "A sees the window closed");
    let queued = p.b.recv_queued(s).unwrap();
    assert!(
        queued as u32 <= rcvbuf && queued as u32 > rcvbuf / 2,
        "B holds {queued} bytes"
    );
    assert!(sent < total, "the slow reader held the sender back");
    let sent_while_stalled = sent;
    // Phase 2: B drains every poll; A keeps sending; everything arrives in order.
    let mut rcvd = 0u64;
    let mut rbuf = vec![0u8; 4096];
    let mut eof = false;
    let mut closed = false;
    for _ in 0..200_000 {
        p.step();
        if sent < total {
            let n = ((total - sent) as usize).min(buf.len());
            fill(sent, &mut buf[..n]);
            sent += p.a.send(c, &buf[..n]).unwrap() as u64;
        } else if !closed {
            p.a.close(c).unwrap();
            closed = true;
        }
        loop {
            match p.b.recv(s, &mut rbuf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    for (i, &b) in rbuf[..n].iter().enumerate() {
                        assert_eq!(b, pattern_byte(rcvd + i as u64), "byte {} corrupted", rcvd + i as u64);
                    }
                    rcvd += n as u64;
                }
                Err(GlueError::WouldBlock) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        if eof {
            break;
        }
    }
    assert!(sent > sent_while_stalled, "the window reopened");
    assert!(eof);
    assert_eq!(rcvd, total);
    p.b.close(s).unwrap();
    p.b.close(l).unwrap();
    p.drain_and_check();
}

/// Writes only when told it may: on connect and on every writable event.
struct Writer {
    total: u64,
    sent: u64,
    buf: Vec<u8>,
    /// A send was refused (or no space was reported) since the last writable event.
    blocked: bool,
    writable: u32,
    spurious: u32,
    refusals: u32,
}

impl Writer {
    fn push(&mut self, g: &mut Glue<()>, s: Socket) {
        while self.sent < self.total {
            let space = g.calc_size_of_data_to_send(s).unwrap();
            if space == 0 {
                self.blocked = true;
                self.refusals += 1;
                return;
            }
            let n = ((self.total - self.sent) as usize).min(self.buf.len()).min(space);
            fill(self.sent, &mut self.buf[..n]);
            let k = g.send(s, &self.buf[..n]).unwrap();
            assert_eq!(k, n, "send takes what calc_size_of_data_to_send promised");
            self.sent += k as u64;
        }
        if self.sent == self.total {
            g.close(s).unwrap();
            self.sent += 1;
        }
    }
}

impl GlueHandler<()> for Writer {
    fn on_writable(&mut self, g: &mut Glue<()>, s: Socket) {
        self.writable += 1;
        if !self.blocked {
            self.spurious += 1;
        }
        self.blocked = false;
        self.push(g, s);
    }
}

/// Reads everything it is told about, checking the pattern.
#[derive(Default)]
struct Reader {
    rcvd: u64,
    eof: bool,
    /// Ignore readable events (a stalled application).
    paused: bool,
}

impl GlueHandler<()> for Reader {
    fn on_readable(&mut self, g: &mut Glue<()>, s: Socket) {
        if self.paused {
            return;
        }
        let mut buf = [0u8; 8192];
        loop {
            match g.recv(s, &mut buf) {
                Ok(0) => {
                    self.eof = true;
                    g.close(s).unwrap();
                    return;
                }
                Ok(n) => {
                    for (i, &b) in buf[..n].iter().enumerate() {
                        assert_eq!(b, pattern_byte(self.rcvd + i as u64));
                    }
                    self.rcvd += n as u64;
                }
                Err(GlueError::WouldBlock) => return,
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
}

#[test]
fn slow_writer_is_woken_only_when_space_opens() {
    let a_cfg = TcpConfig {
        sndbuf: 32 * 1024,
        ..cfg()
    };
    let b_cfg = TcpConfig {
        rcvbuf: 64 * 1024,
        ..cfg()
    };
    let mut p = pair::<()>(a_cfg, b_cfg);
    let (l, c, s) = open(&mut p, 5001);
    let total = 4u64 << 20;
    let mut w = Writer {
        total,
        sent: 0,
        buf: vec![0u8; 16 * 1024],
        blocked: false,
        writable: 0,
        spurious: 0,
        refusals: 0,
    };
    w.push(&mut p.a, c);
    assert!(w.blocked, "32 KiB of send buffer cannot take 4 MiB at once");
    // Phase 1: the reader stalls. The window closes, and from then on the writer hears
    // nothing however often the stacks poll.
    let mut r = Reader {
        paused: true,
        ..Default::default()
    };
    for _ in 0..500 {
        p.step_with(&mut w, &mut r);
    }
    assert_eq!(snd_wnd(&mut p.a, c), 0, "the stalled reader closed the window");
    let before = w.writable;
    for _ in 0..3000 {
        p.step_with(&mut w, &mut r);
    }
    assert_eq!(w.writable, before, "no writable events while the window stays shut");
    assert!(w.blocked);
    // Phase 2: the reader catches up (its event passed while it was stalled, so it reads
    // once by itself); the window opens and the writer is woken as space appears.
    r.paused = false;
    r.on_readable(&mut p.b, s);
    for _ in 0..500_000 {
        p.step_with(&mut w, &mut r);
        if r.eof {
            break;
        }
    }
    assert!(r.eof, "all data and the FIN arrived");
    assert_eq!(r.rcvd, total);
    assert!(w.writable > before, "the writer was woken when the window opened");
    assert_eq!(w.spurious, 0, "writable fired without a refused send");
    assert!(w.writable <= w.refusals, "at most one wake-up per refusal");
    p.b.close(l).unwrap();
    p.drain_and_check();
}

#[test]
fn zero_copy_send_and_receive() {
    let a_cfg = TcpConfig {
        sndbuf: 64 * 1024,
        ..cfg()
    };
    let mut p = pair::<()>(a_cfg, cfg());
    let (l, c, s) = open(&mut p, 5002);
    let mss = p.a.max_mbuf_payload(c).unwrap();
    assert!(mss >= 536);
    let total = 300 * 1024u64;
    let mut sent = 0u64;
    let mut held: Option<Mbuf> = None;
    let mut rcvd = 0u64;
    let mut eof = false;
    let mut closed = false;
    let mut would_block = 0;
    for _ in 0..100_000 {
        p.step();
        while sent < total {
            let mut m = match held.take() {
                Some(m) => m,
                None => {
                    let mut m = p.a.get_buffer().expect("pool has buffers");
                    assert!(m.headroom() >= 64, "headroom reserved");
                    let n = ((total - sent) as usize).min(mss);
                    let d = m.append(n).expect("room for one MSS");
                    fill(sent, d);
                    m
                }
            };
            let n = m.data_len();
            match p.a.send_mbuf(c, m) {
                Ok(()) => sent += n as u64,
                Err((back, GlueError::WouldBlock)) => {
                    would_block += 1;
                    m = back;
                    held = Some(m);
                    break;
                }
                Err((_, e)) => panic!("send_mbuf: {e}"),
            }
        }
        if sent == total && !closed {
            p.a.close(c).unwrap();
            closed = true;
        }
        loop {
            match p.b.recv_skb(s) {
                Ok(Some(skb)) => {
                    let mut bytes = vec![0u8; skb.len()];
                    assert!(skb.skb_copy_bits(0, &mut bytes));
                    for (i, &b) in bytes.iter().enumerate() {
                        assert_eq!(b, pattern_byte(rcvd + i as u64));
                    }
                    rcvd += bytes.len() as u64;
                }
                Ok(None) => {
                    eof = true;
                    break;
                }
                Err(GlueError::WouldBlock) => break,
                Err(e) => panic!("recv_skb: {e}"),
            }
        }
        if eof {
            break;
        }
    }
    assert!(eof);
    assert_eq!(rcvd, total);
    assert!(would_block > 0, "the send buffer filled at least once: mbufs came back");
    p.b.close(s).unwrap();
    p.b.close(l).unwrap();
    p.drain_and_check();
}

#[test]
fn handles_after_close_are_errors() {
    let mut p = pair::<()>(cfg(), cfg());
    let (l, c, s) = open(&mut p, 5003);
    assert_eq!(p.a.close(c).unwrap(), None);
    let mut buf = [0u8; 8];
    assert_eq!(p.a.send(c, b"x"), Err(GlueError::BadHandle));
    assert_eq!(p.a.recv(c, &mut buf), Err(GlueError::BadHandle));
    assert_eq!(p.a.recv_skb(c).err(), Some(GlueError::BadHandle));
    assert_eq!(p.a.calc_size_of_data_to_send(c), Err(GlueError::BadHandle));
    assert_eq!(p.a.shutdown(c), Err(GlueError::BadHandle));
    assert_eq!(p.a.close(c), Err(GlueError::BadHandle));
    assert_eq!(p.a.tcp_state(c).err(), Some(GlueError::BadHandle));
    assert_eq!(p.a.set_user_data(c, ()), Err(GlueError::BadHandle));
    assert_eq!(p.a.accept(c), Err(GlueError::BadHandle));
    let m = p.a.get_buffer().unwrap();
    let (m, e) = p.a.send_mbuf(c, m).unwrap_err();
    assert_eq!(e, GlueError::BadHandle);
    drop(m);
    // A handle of one side means nothing on the other.
    assert_eq!(p.a.send(s, b"x"), Err(GlueError::BadHandle));
    // accept on a connection is refused, not a crash.
    assert!(matches!(p.b.accept(s), Err(GlueError::InvalidArgument(_))));
    for _ in 0..100 {
        p.step();
    }
    assert_eq!(p.b.recv(s, &mut buf), Ok(0), "the peer saw the FIN");
    p.b.close(s).unwrap();
    p.b.close(l).unwrap();
    p.drain_and_check();
}
