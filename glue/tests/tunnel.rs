//! Two blink instances of 2 cores each as the two ends of an IPIP tunnel and of a GRE tunnel
//! (with and without a key) over the in-memory wire: ping, fragmented UDP echo and 64 MiB
//! of TCP through each tunnel, bit-exact. The outer packets are steered by the tunnel
//! endpoints' addresses, so all of a tunnel's traffic lands on one core; every inner flow
//! must still be served by the core its own tuple hashes to (re-injected there), no segment
//! on a wrong core, no mbuf left.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use blink_glue::ipv4::icmp::icmp_send_echo;
use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::netdevice::NetDevice;
use blink_glue::netcore::rss::{Reta, Toeplitz};
use blink_glue::netcore::snmp::SoftnetMib;
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::tcp::TcpConfig;
use blink_glue::{Closed, Glue, GlueBuilder, GlueError, GlueHandler, SockKind, Socket, Steering, TunnelSpec};

const CORES: u16 = 2;
const A_IN: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const B_IN: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
const SINK: u16 = 9;
const ECHO: u16 = 7;
const TOTAL: usize = 64 << 20;
const CONNS: usize = 8;

fn byte(id: usize, i: usize) -> u8 {
    (id * 37 + i * 11 + (i >> 10)) as u8
}

#[derive(Default)]
struct Conn {
    client: bool,
    id: usize,
    sent: usize,
    recvd: usize,
}

#[derive(Default)]
struct App {
    to_send: usize,
    done: usize,
    received: usize,
    failed: Vec<String>,
    off_core: u32,
    buf: Vec<u8>,
}

impl App {
    fn check_core(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        let (local, remote): (SocketAddrV4, SocketAddrV4) = glue.addrs(s).unwrap();
        let h =
            Toeplitz::default().hash_ipv4_l4(remote.ip().octets(), local.ip().octets(), remote.port(), local.port());
        if Reta::new(CORES).unwrap().lookup(h) != glue.cpu() {
            self.off_core += 1;
        }
    }

    fn push(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        loop {
            let (id, sent) = match glue.user_data(s) {
                Some(c) if c.client => (c.id, c.sent),
                _ => return,
            };
            if sent == self.to_send {
                return;
            }
            let n = (self.to_send - sent).min(self.buf.len());
            for i in 0..n {
                self.buf[i] = byte(id, sent + i);
            }
            match glue.send(s, &self.buf[..n]) {
                Ok(k) => {
                    let c = glue.user_data_mut(s).unwrap();
                    c.sent += k;
                    if c.sent == self.to_send {
                        glue.shutdown(s).unwrap();
                    }
                    if k < n {
                        return;
                    }
                }
                Err(GlueError::WouldBlock) => return,
                Err(e) => {
                    self.failed.push(format!("send {id}: {e}"));
                    return;
                }
            }
        }
    }
}

impl GlueHandler<Conn> for App {
    fn on_accept(&mut self, glue: &mut Glue<Conn>, _l: Socket, s: Socket) {
        self.check_core(glue, s);
        glue.set_user_data(s, Conn::default()).unwrap();
    }

    fn on_connected(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        self.check_core(glue, s);
        self.push(glue, s);
    }

    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        if s.kind() != SockKind::Tcp {
            // The UDP echo part of the test reads its sockets itself.
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            match glue.recv(s, &mut buf) {
                Ok(0) => {
                    let c = glue.user_data(s).unwrap();
                    if c.client {
                        self.done += 1;
                    }
                    glue.close(s).unwrap();
                    break;
                }
                Ok(n) => {
                    // The sink checks every byte against the pattern of the connection, whose
                    // number is the first byte's position in it.
                    let Some(c) = glue.user_data_mut(s) else {
                        let a = glue.addrs(s);
                        self.failed
                            .push(format!("core {}: data on {s:?} {a:?} without user data", glue.cpu()));
                        break;
                    };
                    if c.recvd == 0 {
                        c.id = (0..CONNS).find(|&id| byte(id, 0) == buf[0]).unwrap_or(usize::MAX);
                    }
                    let (id, at) = (c.id, c.recvd);
                    if let Some(k) = (0..n).find(|&k| buf[k] != byte(id, at + k)) {
                        self.failed.push(format!("conn {id}: byte {} differs", at + k));
                    }
                    c.recvd += n;
                    self.received += n;
                }
                Err(GlueError::WouldBlock) => break,
                Err(e) => {
                    self.failed.push(format!("recv: {e}"));
                    let _ = glue.close(s);
                    break;
                }
            }
        }
        self.buf = buf;
    }

    fn on_writable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        self.push(glue, s);
    }

    fn on_closed(&mut self, _glue: &mut Glue<Conn>, c: Closed<Conn>) {
        self.failed.push(format!("connection ended by itself: {:?}", c.reason));
    }
}

fn build(dev: Vec<Box<dyn NetDevice>>, ip: &str, tunnel: &str, pool: &Mempool) -> Vec<Glue<Conn>> {
    GlueBuilder::new()
        .device_queues(dev)
        .addr(ip.parse().unwrap())
        .tunnel(tunnel.parse::<TunnelSpec>().unwrap())
        .cores(CORES)
        .mode(Steering::Rss)
        .pool(pool.clone())
        .tcp(common::seeded(TcpConfig {
            timewait_ms: 500,
            ..Default::default()
        }))
        .build_cores()
        .unwrap()
}

fn through(kind: &str, key: &str) {
    let pool = Mempool::new(&MempoolConfig {
        n: 32768,
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
    let boxed = |v: Vec<_>| {
        v.into_iter()
            .map(|d| Box::new(d) as Box<dyn NetDevice>)
            .collect::<Vec<_>>()
    };
    let mut a = build(
        boxed(wa.into_queues()),
        "10.0.0.1/24",
        &format!("{kind}:10.0.0.2:10.201.0.1/30{key}"),
        &pool,
    );
    let mut b = build(
        boxed(wb.into_queues()),
        "10.0.0.2/24",
        &format!("{kind}:10.0.0.1:10.201.0.2/30{key}"),
        &pool,
    );
    let mut apps_a: Vec<App> = (0..CORES)
        .map(|_| App {
            to_send: TOTAL / CONNS,
            buf: vec![0; 64 * 1024],
            ..Default::default()
        })
        .collect();
    let mut apps_b: Vec<App> = (0..CORES)
        .map(|_| App {
            buf: vec![0; 64 * 1024],
            ..Default::default()
        })
        .collect();
    let poll = |a: &mut Vec<Glue<Conn>>, b: &mut Vec<Glue<Conn>>, aa: &mut Vec<App>, ab: &mut Vec<App>| {
        let mut n = 0;
        for (g, app) in a.iter_mut().zip(aa.iter_mut()) {
            n += g.periodic_with(app);
        }
        for (g, app) in b.iter_mut().zip(ab.iter_mut()) {
            n += g.periodic_with(app);
        }
        n
    };

    // Ping through the tunnel, 3,000 bytes (fragmented inside the tunnel).
    icmp_send_echo(a[0].stack_mut(), B_IN, 0x77, 1, 3000).unwrap();
    let t0 = Instant::now();
    while a.iter().all(|g| g.stack().icmp.echo_replies.is_empty()) && t0.elapsed() < Duration::from_secs(5) {
        poll(&mut a, &mut b, &mut apps_a, &mut apps_b);
    }
    let r = a.iter().find_map(|g| g.stack().icmp.echo_replies.back().copied());
    let r = r.unwrap_or_else(|| panic!("{kind}{key}: no echo reply through the tunnel"));
    assert_eq!((r.from, r.id, r.seq, r.len), (B_IN, 0x77, 1, 3000));

    // UDP: every core of A sends datagrams of several sizes to B's per-core echo sockets.
    let mut echo = Vec::new();
    for g in b.iter_mut() {
        let s = g.udp_socket(None).unwrap();
        let cpu = g.cpu();
        g.udp_set_rss_bucket(s, cpu).unwrap();
        g.udp_bind(s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ECHO)).unwrap();
        echo.push(s);
    }
    let mut buf = vec![0u8; 65536];
    for size in [100, 1452, 3000, 9000] {
        for cpu in 0..CORES as usize {
            let s = a[cpu].udp_socket(None).unwrap();
            a[cpu].udp_connect(s, SocketAddrV4::new(B_IN, ECHO)).unwrap();
            let data: Vec<u8> = (0..size).map(|i| byte(cpu + size, i)).collect();
            a[cpu].send_to(s, &data, None).unwrap();
            let t0 = Instant::now();
            let mut back = None;
            while back.is_none() && t0.elapsed() < Duration::from_secs(5) {
                poll(&mut a, &mut b, &mut apps_a, &mut apps_b);
                for (c, g) in b.iter_mut().enumerate() {
                    while let Ok(r) = g.recv_from(echo[c], &mut buf) {
                        let h = Toeplitz::default().hash_ipv4_l4(A_IN.octets(), B_IN.octets(), r.from.port(), ECHO);
                        assert_eq!(
                            Reta::new(CORES).unwrap().lookup(h) as usize,
                            c,
                            "UDP flow on the wrong core of B"
                        );
                        g.send_to(echo[c], &buf[..r.len], Some(r.from)).unwrap();
                    }
                }
                if let Ok(r) = a[cpu].recv_from(s, &mut buf) {
                    back = Some(buf[..r.len].to_vec());
                }
            }
            assert_eq!(
                back.as_deref(),
                Some(&data[..]),
                "{kind}{key}: UDP {size} bytes from core {cpu}"
            );
            a[cpu].close(s).unwrap();
        }
    }
    for (g, s) in b.iter_mut().zip(echo) {
        g.close(s).unwrap();
    }

    // TCP: 8 connections (4 from each core of A) carry 64 MiB to B's sink on both cores.
    for g in b.iter_mut() {
        g.tcp_listen(SINK, 64).unwrap();
    }
    for (cpu, g) in a.iter_mut().enumerate() {
        for k in 0..CONNS / CORES as usize {
            let id = cpu * (CONNS / CORES as usize) + k;
            g.tcp_connect(
                B_IN,
                SINK,
                Some(Conn {
                    client: true,
                    id,
                    ..Default::default()
                }),
            )
            .unwrap();
        }
    }
    let t0 = Instant::now();
    while apps_a.iter().map(|x| x.done).sum::<usize>() < CONNS && t0.elapsed() < Duration::from_secs(120) {
        poll(&mut a, &mut b, &mut apps_a, &mut apps_b);
        if apps_a.iter().chain(apps_b.iter()).any(|x| !x.failed.is_empty()) {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let failed: Vec<&String> = apps_a
        .iter()
        .chain(apps_b.iter())
        .flat_map(|x| x.failed.iter())
        .collect();
    assert!(failed.is_empty(), "{kind}{key}: {failed:?}");
    let received: usize = apps_b.iter().map(|x| x.received).sum();
    assert_eq!(received, TOTAL, "{kind}{key}: bytes at the sink");
    assert!(
        apps_b.iter().all(|x| x.received > 0),
        "both cores of B served connections"
    );
    let off: u32 = apps_a.iter().chain(apps_b.iter()).map(|x| x.off_core).sum();
    assert_eq!(off, 0, "connections served off their core");
    let sn = |v: &Vec<Glue<Conn>>, c| v.iter().map(|g| g.stack().core.mib.softnet.get(c)).sum::<u64>();
    assert_eq!(sn(&a, SoftnetMib::WrongCore) + sn(&b, SoftnetMib::WrongCore), 0);
    assert!(sn(&b, SoftnetMib::ReinjectRemote) > 0, "inner flows crossed cores on B");
    for (name, side) in [("A", &a), ("B", &b)] {
        for g in side.iter() {
            let d = &g.stack().devs[1];
            let st = d.dev.stats();
            println!(
                "{kind}{key} {name} core {}: {} rx {} pkts tx {} pkts; ReinjectLocal {} ReinjectRemote {} ReinjectReceived {}",
                g.cpu(),
                d.name(),
                st.rx_packets,
                st.tx_packets,
                g.stack().core.mib.softnet.get(SoftnetMib::ReinjectLocal),
                g.stack().core.mib.softnet.get(SoftnetMib::ReinjectRemote),
                g.stack().core.mib.softnet.get(SoftnetMib::ReinjectReceived),
            );
        }
    }
    println!("{kind}{key}: {} MiB through the tunnel in {secs:.2} s", TOTAL >> 20);
    // Let TIME-WAIT and the wire drain, then everything must be back.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(70) {
        let n = poll(&mut a, &mut b, &mut apps_a, &mut apps_b);
        if n == 0 && a.iter_mut().chain(b.iter_mut()).all(|g| g.protocol_sockets() <= 1) {
            break;
        }
    }
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn ipip_tunnel_ping_udp_and_64_mib_of_tcp() {
    through("ipip", "");
}

#[test]
fn gre_tunnel_ping_udp_and_64_mib_of_tcp() {
    through("gre", "");
}

#[test]
fn gre_tunnel_with_key() {
    through("gre", ",key=77");
}
