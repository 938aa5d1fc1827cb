//! Two blink instances of 2 cores each on the in-memory wire, in both steering modes:
//! 2,000 TCP echo connections (half opened from each side's cores, spread over both cores),
//! every byte verified, every connection served entirely by the core its hash selects, ARP
//! learned by one core reaching the others, nothing forwarded in rss mode (the wire's RSS is
//! Toeplitz), no wrong-core segment, no failure, no mbuf left.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::netdevice::NetDevice;
use blink_glue::netcore::rss::{Reta, Toeplitz};
use blink_glue::netcore::snmp::{SoftnetMib, TcpMib};
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::tcp::TcpConfig;
use blink_glue::{Closed, Glue, GlueBuilder, GlueError, GlueHandler, Socket, Steering};

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 7;
const CORES: u16 = 2;

/// Per-socket state: a client sends `LEN` pattern bytes, half-closes, and checks the echo; a
/// server echoes until the end of the stream, then closes.
#[derive(Default)]
struct Conn {
    client: bool,
    id: u32,
    sent: usize,
    recvd: usize,
    pending: Vec<u8>,
    eof: bool,
}

const LEN: usize = 3000;

fn byte(id: u32, i: usize) -> u8 {
    (id as usize * 31 + i * 7 + (i >> 8)) as u8
}

struct App {
    peer: Ipv4Addr,
    /// Connections this core still has to open, and how many may be open at once.
    to_open: u32,
    next_id: u32,
    open: usize,
    max_open: usize,
    done: u32,
    accepted: u32,
    failed: Vec<String>,
    /// Sockets whose tuple does not hash to the core serving them.
    off_core: u32,
    toeplitz: Toeplitz,
    reta: Reta,
    buf: Vec<u8>,
}

impl App {
    fn new(peer: Ipv4Addr, to_open: u32, first_id: u32) -> App {
        App {
            peer,
            to_open,
            next_id: first_id,
            open: 0,
            max_open: 64,
            done: 0,
            accepted: 0,
            failed: Vec::new(),
            off_core: 0,
            toeplitz: Toeplitz::default(),
            reta: Reta::new(CORES).unwrap(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// The core a connection belongs to: its received tuple through Toeplitz and the RETA.
    fn check_core(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        let (local, remote): (SocketAddrV4, SocketAddrV4) = glue.addrs(s).unwrap();
        let h = self
            .toeplitz
            .hash_ipv4_l4(remote.ip().octets(), local.ip().octets(), remote.port(), local.port());
        if self.reta.lookup(h) != glue.cpu() {
            self.off_core += 1;
        }
    }

    fn open_more(&mut self, glue: &mut Glue<Conn>) {
        while self.to_open > 0 && self.open < self.max_open {
            let id = self.next_id;
            let c = Conn {
                client: true,
                id,
                ..Default::default()
            };
            match glue.tcp_connect(self.peer, PORT, Some(c)) {
                Ok(s) => {
                    self.check_core(glue, s);
                    self.next_id += 1;
                    self.to_open -= 1;
                    self.open += 1;
                }
                Err(e) => {
                    self.failed.push(format!("connect: {e}"));
                    self.to_open -= 1;
                }
            }
        }
    }

    fn client_send(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        let (id, sent) = {
            let c = glue.user_data(s).unwrap();
            (c.id, c.sent)
        };
        if sent == LEN {
            return;
        }
        let n = (LEN - sent).min(self.buf.len());
        for i in 0..n {
            self.buf[i] = byte(id, sent + i);
        }
        match glue.send(s, &self.buf[..n]) {
            Ok(k) => {
                let c = glue.user_data_mut(s).unwrap();
                c.sent += k;
                if c.sent == LEN {
                    glue.shutdown(s).unwrap();
                }
            }
            Err(GlueError::WouldBlock) => {}
            Err(e) => self.failed.push(format!("send {id}: {e}")),
        }
    }

    fn server_flush(&mut self, glue: &mut Glue<Conn>, s: Socket) -> bool {
        let pending = std::mem::take(&mut glue.user_data_mut(s).unwrap().pending);
        if pending.is_empty() {
            return true;
        }
        let n = match glue.send(s, &pending) {
            Ok(n) => n,
            Err(GlueError::WouldBlock) => 0,
            Err(e) => {
                self.failed.push(format!("echo: {e}"));
                return false;
            }
        };
        glue.user_data_mut(s).unwrap().pending = pending[n..].to_vec();
        n == pending.len()
    }
}

impl GlueHandler<Conn> for App {
    fn on_accept(&mut self, glue: &mut Glue<Conn>, _l: Socket, s: Socket) {
        self.accepted += 1;
        self.check_core(glue, s);
        glue.set_user_data(s, Conn::default()).unwrap();
    }

    fn on_connected(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        self.client_send(glue, s);
    }

    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        loop {
            let client = glue.user_data(s).is_some_and(|c| c.client);
            if !client && !self.server_flush(glue, s) {
                return;
            }
            match glue.recv(s, &mut self.buf) {
                Ok(0) => {
                    let c = glue.user_data_mut(s).unwrap();
                    c.eof = true;
                    if client {
                        if c.recvd != LEN {
                            self.failed
                                .push(format!("conn {}: {} of {LEN} bytes echoed", c.id, c.recvd));
                        } else {
                            self.done += 1;
                        }
                        self.open -= 1;
                        glue.close(s).unwrap();
                        self.open_more(glue);
                    } else if c.pending.is_empty() {
                        glue.close(s).unwrap();
                    }
                    return;
                }
                Ok(n) => {
                    let c = glue.user_data_mut(s).unwrap();
                    if client {
                        for i in 0..n {
                            if self.buf[i] != byte(c.id, c.recvd + i) {
                                self.failed.push(format!("conn {}: byte {} differs", c.id, c.recvd + i));
                                break;
                            }
                        }
                        c.recvd += n;
                    } else {
                        c.pending.extend_from_slice(&self.buf[..n]);
                    }
                }
                Err(GlueError::WouldBlock) => return,
                Err(e) => {
                    self.failed.push(format!("recv: {e}"));
                    let _ = glue.close(s);
                    return;
                }
            }
        }
    }

    fn on_writable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        if glue.user_data(s).is_some_and(|c| c.client) {
            self.client_send(glue, s);
        } else if self.server_flush(glue, s) && glue.user_data(s).is_some_and(|c| c.eof) {
            glue.close(s).unwrap();
        } else {
            self.on_readable(glue, s);
        }
    }

    fn on_closed(&mut self, _glue: &mut Glue<Conn>, c: Closed<Conn>) {
        let what = c.data.map(|d| {
            if d.client {
                format!("client {}", d.id)
            } else {
                "server".into()
            }
        });
        self.failed.push(format!("{what:?} ended by itself: {:?}", c.reason));
    }
}

fn build(mode: Steering, dev: Vec<Box<dyn NetDevice>>, ip: &str, pool: &Mempool) -> Vec<Glue<Conn>> {
    let b = GlueBuilder::new();
    let b = if dev.len() == 1 {
        b.device(dev.into_iter().next().unwrap())
    } else {
        b.device_queues(dev)
    };
    let mut cores: Vec<Glue<Conn>> = b
        .addr(ip.parse().unwrap())
        .cores(CORES)
        .mode(mode)
        .pool(pool.clone())
        .tcp(common::seeded(TcpConfig {
            timewait_ms: 500,
            ..Default::default()
        }))
        .build_cores()
        .unwrap();
    for g in &mut cores {
        g.tcp_listen(PORT, 1024).unwrap();
    }
    cores
}

fn boxed<D: NetDevice + 'static>(v: Vec<D>) -> Vec<Box<dyn NetDevice>> {
    v.into_iter().map(|d| Box::new(d) as Box<dyn NetDevice>).collect()
}

fn run(mode: Steering) {
    run_with(mode, false)
}

fn run_with(mode: Steering, foreign_rss: bool) {
    const PER_CORE: u32 = 500;
    let pool = Mempool::new(&MempoolConfig {
        n: 65536,
        ..Default::default()
    })
    .unwrap();
    let queues = if mode == Steering::Rss { CORES } else { 1 };
    let cfg = WireConfig {
        queues,
        foreign_rss,
        ..Default::default()
    };
    let (wa, wb) = wire_pair(
        ("a", "b"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &cfg,
    );
    let a = build(mode, boxed(wa.into_queues()), "10.0.0.1/24", &pool);
    let b = build(mode, boxed(wb.into_queues()), "10.0.0.2/24", &pool);
    // Thread i drives core i of both instances (2 threads on this 2-CPU machine).
    let results: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = a
            .into_iter()
            .zip(b)
            .enumerate()
            .map(|(i, (mut ga, mut gb))| {
                scope.spawn(move || {
                    let i = i as u32;
                    let mut app_a = App::new(B_IP, PER_CORE, i * 100_000);
                    let mut app_b = App::new(A_IP, PER_CORE, 1_000_000 + i * 100_000);
                    app_a.open_more(&mut ga);
                    app_b.open_more(&mut gb);
                    let t0 = Instant::now();
                    let mut quiet_since: Option<Instant> = None;
                    loop {
                        let n = ga.periodic_with(&mut app_a) + gb.periodic_with(&mut app_b);
                        let finished = app_a.to_open == 0 && app_a.open == 0 && app_b.to_open == 0 && app_b.open == 0;
                        // After the last connection: poll on until TIME-WAIT is over and the
                        // wire is quiet, so every buffer is back.
                        if finished && ga.protocol_sockets() <= 1 && gb.protocol_sockets() <= 1 && n == 0 {
                            let q = *quiet_since.get_or_insert_with(Instant::now);
                            if q.elapsed() > Duration::from_millis(200) {
                                break;
                            }
                        } else {
                            quiet_since = None;
                        }
                        if t0.elapsed() > Duration::from_secs(120) {
                            app_a.failed.push(format!(
                                "timeout on core {i}: a {}/{} open {}, b {}/{} open {}",
                                app_a.done, PER_CORE, app_a.open, app_b.done, PER_CORE, app_b.open
                            ));
                            break;
                        }
                    }
                    (ga, gb, app_a, app_b)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut done = 0;
    for (cpu, (ga, gb, app_a, app_b)) in results.iter().enumerate() {
        for (name, g, app) in [("a", ga, app_a), ("b", gb, app_b)] {
            let m = &g.stack().core.mib;
            let sn = |c| m.softnet.get(c);
            println!(
                "{mode:?} {name} core {cpu}: done {} accepted {} ActiveOpens {} PassiveOpens {} InSegs {} Processed {} RssForwarded {} ReceivedRps {} NeighSent {} NeighReceived {} RingDrops {} WrongCore {} lb {:?}",
                app.done,
                app.accepted,
                m.tcp.get(TcpMib::ActiveOpens),
                m.tcp.get(TcpMib::PassiveOpens),
                m.tcp.get(TcpMib::InSegs),
                sn(SoftnetMib::Processed),
                sn(SoftnetMib::RssForwarded),
                sn(SoftnetMib::ReceivedRps),
                sn(SoftnetMib::NeighSent),
                sn(SoftnetMib::NeighReceived),
                sn(SoftnetMib::RingDrops),
                sn(SoftnetMib::WrongCore),
                g.pollers().iter().map(|p| p.dispatched()).collect::<Vec<_>>(),
            );
            assert!(
                app.failed.is_empty(),
                "{mode:?} {name} core {cpu}: {:?}",
                &app.failed[..app.failed.len().min(10)]
            );
            assert_eq!(app.done, PER_CORE, "{mode:?} {name} core {cpu}: connections completed");
            assert_eq!(
                app.off_core, 0,
                "{mode:?} {name} core {cpu}: connections off their core"
            );
            assert!(app.accepted > 0, "{mode:?} {name} core {cpu}: accepted none");
            assert_eq!(
                sn(SoftnetMib::WrongCore),
                0,
                "{mode:?} {name} core {cpu}: wrong-core segments"
            );
            assert_eq!(sn(SoftnetMib::RingDrops), 0, "{mode:?} {name} core {cpu}: ring drops");
            if mode == Steering::Rss && !foreign_rss {
                assert_eq!(sn(SoftnetMib::RssForwarded), 0, "{mode:?} {name} core {cpu}: forwarded");
            }
            if foreign_rss {
                // About half the frames land on the wrong queue and are forwarded.
                assert!(
                    sn(SoftnetMib::RssForwarded) > 1000,
                    "{mode:?} {name} core {cpu}: forwarded"
                );
                assert!(
                    sn(SoftnetMib::ReceivedRps) > 1000,
                    "{mode:?} {name} core {cpu}: received"
                );
            }
            assert_eq!(m.tcp.get(TcpMib::ActiveOpens), PER_CORE as u64);
            assert!(m.tcp.get(TcpMib::PassiveOpens) > 0);
            done += app.done;
        }
    }
    // The core that answered ARP told the other one.
    let neigh_received: u64 = results
        .iter()
        .flat_map(|(ga, gb, _, _)| [ga, gb])
        .map(|g| g.stack().core.mib.softnet.get(SoftnetMib::NeighReceived))
        .sum();
    assert!(neigh_received > 0, "no neighbour update crossed cores");
    assert_eq!(done, 2 * CORES as u32 * PER_CORE);
    drop(results);
    assert_eq!(pool.in_use(), 0, "{mode:?}: mbufs left in use");
}

#[test]
fn rss_two_cores_each_side_2000_connections() {
    run(Steering::Rss);
}

#[test]
fn poller_two_cores_each_side_2000_connections() {
    run(Steering::Poller);
}

/// A device whose queue choice is not blink's Toeplitz (as TAP's or virtio's): the receiving
/// core forwards what it does not own, and still every connection stays on its core.
#[test]
fn rss_with_foreign_queue_choice_forwards_to_the_owner() {
    run_with(Steering::Rss, true);
}

/// UDP sockets bound to RSS buckets (one per core, same port) each get exactly the datagrams
/// their bucket owns; a core cannot bind another core's bucket; application messages cross
/// cores through the inboxes. One thread drives all four cores here.
#[test]
fn udp_rss_buckets_and_messages_between_cores() {
    let pool = Mempool::new(&MempoolConfig {
        n: 8192,
        ..Default::default()
    })
    .unwrap();
    let cfg = WireConfig {
        queues: CORES,
        ..Default::default()
    };
    let (wa, wb) = wire_pair(
        ("a", "b"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &cfg,
    );
    let mut a = build(Steering::Rss, boxed(wa.into_queues()), "10.0.0.1/24", &pool);
    let mut b = build(Steering::Rss, boxed(wb.into_queues()), "10.0.0.2/24", &pool);
    let mut bound = Vec::new();
    for g in b.iter_mut() {
        let s = g.udp_socket(None).unwrap();
        let cpu = g.cpu();
        g.udp_set_rss_bucket(s, cpu).unwrap();
        g.udp_bind(s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9)).unwrap();
        bound.push(s);
    }
    let other = b[0].udp_socket(None).unwrap();
    assert!(matches!(
        b[0].udp_set_rss_bucket(other, 1),
        Err(GlueError::InvalidArgument(_))
    ));
    b[0].close(other).unwrap();

    // 64 sockets on A's core 0, one datagram each, naming its source port.
    let mut senders = Vec::new();
    for _ in 0..64 {
        let s = a[0].udp_socket(None).unwrap();
        let local = a[0].udp_bind(s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        senders.push((s, local.port()));
    }
    let poll_all = |a: &mut Vec<Glue<Conn>>, b: &mut Vec<Glue<Conn>>| {
        for g in a.iter_mut().chain(b.iter_mut()) {
            g.periodic();
        }
    };
    for &(s, port) in &senders {
        a[0].send_to(s, &port.to_be_bytes(), Some(SocketAddrV4::new(B_IP, 9)))
            .unwrap();
        poll_all(&mut a, &mut b);
    }
    let t = Toeplitz::default();
    let reta = Reta::new(CORES).unwrap();
    let mut got = [0u32; CORES as usize];
    let t0 = Instant::now();
    while got.iter().sum::<u32>() < 64 && t0.elapsed() < Duration::from_secs(10) {
        poll_all(&mut a, &mut b);
        for (cpu, g) in b.iter_mut().enumerate() {
            let mut buf = [0u8; 16];
            while let Ok(r) = g.recv_from(bound[cpu], &mut buf) {
                let port = u16::from_be_bytes([buf[0], buf[1]]);
                assert_eq!(r.from.port(), port);
                let h = t.hash_ipv4_l4(A_IP.octets(), B_IP.octets(), port, 9);
                assert_eq!(
                    reta.lookup(h) as usize,
                    cpu,
                    "datagram from port {port} on the wrong bucket"
                );
                got[cpu] += 1;
            }
        }
    }
    assert_eq!(got.iter().sum::<u32>(), 64, "received per core {got:?}");
    assert!(got.iter().all(|&n| n > 0), "both buckets received: {got:?}");

    // Application messages: core 0 -> core 1, and to a core that does not exist.
    a[0].post(1, Box::new(42u32)).unwrap();
    assert!(matches!(a[0].post(7, Box::new(0u32)), Err(GlueError::Config { .. })));
    poll_all(&mut a, &mut b);
    let m = a[1].next_message().expect("message delivered");
    assert_eq!(*m.downcast::<u32>().unwrap(), 42);
    assert!(a[1].next_message().is_none());
    assert_eq!(a[0].stack().core.mib.softnet.get(SoftnetMib::AppMsgsSent), 1);
    assert_eq!(a[1].stack().core.mib.softnet.get(SoftnetMib::AppMsgsReceived), 1);

    for (s, _) in senders {
        a[0].close(s).unwrap();
    }
    for (g, s) in b.iter_mut().zip(bound) {
        g.close(s).unwrap();
    }
    poll_all(&mut a, &mut b);
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}

/// An ICMP error reaches the socket it is about even when it lands on another core: in poller
/// mode ICMP goes to core 0, which re-injects the error into the core that owns the quoted
/// flow (`Softnet.ReinjectRemote`), where the connected UDP socket reports it.
#[test]
fn icmp_error_reaches_the_socket_on_its_own_core() {
    let pool = Mempool::new(&MempoolConfig {
        n: 8192,
        ..Default::default()
    })
    .unwrap();
    let (wa, wb) = wire_pair(
        ("a", "b"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig::default(),
    );
    let mut a = build(Steering::Poller, boxed(vec![wa]), "10.0.0.1/24", &pool);
    let mut b = build(Steering::Poller, boxed(vec![wb]), "10.0.0.2/24", &pool);
    let poll_all = |a: &mut Vec<Glue<Conn>>, b: &mut Vec<Glue<Conn>>| {
        for g in a.iter_mut().chain(b.iter_mut()) {
            g.periodic();
        }
    };
    // Core 1 of A: a UDP socket connected to a port nobody listens on (its ephemeral port
    // hashes back to core 1).
    let s = a[1].udp_socket(None).unwrap();
    a[1].udp_connect(s, SocketAddrV4::new(B_IP, 4444)).unwrap();
    let mut err = None;
    for _ in 0..50 {
        let _ = a[1].send_to(s, b"anyone?", None);
        for _ in 0..20 {
            poll_all(&mut a, &mut b);
        }
        let mut buf = [0u8; 64];
        if let Err(GlueError::Icmp(e)) = a[1].recv_from(s, &mut buf) {
            err = Some(e);
            break;
        }
    }
    assert!(err.is_some(), "no ICMP error reported on core 1");
    let sn = |g: &Glue<Conn>, c| g.stack().core.mib.softnet.get(c);
    assert!(
        sn(&a[0], SoftnetMib::ReinjectRemote) > 0,
        "core 0 re-injected the error"
    );
    assert!(sn(&a[1], SoftnetMib::ReinjectReceived) > 0);
    a[1].close(s).unwrap();
    poll_all(&mut a, &mut b);
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}
