//! The demo's multi-core part (`blink demo --cores N [--mode rss|poller]`): two hosts of N
//! cores each on the in-memory wire (N queues per end in rss mode, one queue and a poller in
//! poller mode). Every core of host B runs `blink echo`'s service on the same ports; every
//! core of host A opens TCP connections to B's echo port (source ports chosen so the replies
//! hash back to it) and sends UDP datagrams to B's echo port, checking every byte that comes
//! back. Then each host reports per core: which core opened, accepted and carried what, and
//! how many frames had to be forwarded between cores.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::netdevice::NetDevice;
use blink_glue::netcore::snmp::{SoftnetMib, TcpMib};
use blink_glue::netcore::{Mempool, MempoolConfig};
use blink_glue::tcp::TcpConfig;
use blink_glue::{Closed, Glue, GlueBuilder, GlueError, GlueHandler, Socket, Steering};

use crate::cores::{report_cores, CoreSummary};
use crate::echo::{Conn, EchoArgs, EchoCore};
use crate::setup::{mac_for, SetupError};

/// TCP connections each core of host A opens, and the bytes each carries each way.
const CONNS_PER_CORE: u32 = 100;
const CONN_BYTES: usize = 16 * 1024;
/// UDP datagrams each core of host A sends.
const DGRAMS_PER_CORE: u32 = 100;
/// Datagrams over the MTU each core of host A sends: straight to B (fragmented on the wire)
/// and through the IPIP tunnel (fragmented inside it, then encapsulated).
const BIG_PER_CORE: u32 = 10;
const BIG_DIRECT: usize = 4000;
const BIG_TUNNEL: usize = 3000;
/// The tunnel's inner network: A is .1, B is .2.
const TUN_A: &str = "10.0.2.1/30";
const TUN_B: &str = "10.0.2.2/30";
const TUN_B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn pattern(id: u32, i: usize) -> u8 {
    (id as usize * 131 + i * 7 + (i >> 9)) as u8
}

/// Host A's per-core client: connections opened at most 16 at a time, each sending its
/// pattern, half-closing and checking the echo; plus one UDP socket's datagrams.
struct Client {
    b: Ipv4Addr,
    next: u32,
    last: u32,
    open: u32,
    done: u32,
    bad: Vec<String>,
    udp: Option<Socket>,
    dgrams_back: u32,
    /// Connected sockets for the big datagrams: straight to B, and through the tunnel.
    big: Option<Socket>,
    big_back: u32,
    tun: Option<Socket>,
    tun_back: u32,
    buf: Vec<u8>,
}

/// A big datagram: its number, then the pattern.
fn big_datagram(seq: u32, len: usize) -> Vec<u8> {
    let mut d: Vec<u8> = (0..len).map(|i| pattern(seq, i)).collect();
    d[..4].copy_from_slice(&seq.to_be_bytes());
    d
}

/// One client connection (user data of A's sockets): how far it sent and received.
#[derive(Default)]
struct Flow {
    id: u32,
    sent: usize,
    recvd: usize,
}

impl Client {
    fn fill(&mut self, g: &mut Glue<Flow>) {
        while self.open < 16 && self.next < self.last {
            let id = self.next;
            self.next += 1;
            match g.tcp_connect(
                self.b,
                7,
                Some(Flow {
                    id,
                    ..Default::default()
                }),
            ) {
                Ok(_) => self.open += 1,
                Err(e) => self.bad.push(format!("connect: {e}")),
            }
        }
    }

    fn send(&mut self, g: &mut Glue<Flow>, s: Socket) {
        let Some(f) = g.user_data(s) else { return };
        let (id, sent) = (f.id, f.sent);
        if sent == CONN_BYTES {
            return;
        }
        let chunk: Vec<u8> = (sent..CONN_BYTES).map(|i| pattern(id, i)).collect();
        match g.send(s, &chunk) {
            Ok(n) => {
                let f = g.user_data_mut(s).expect("open");
                f.sent += n;
                if f.sent == CONN_BYTES {
                    let _ = g.shutdown(s);
                }
            }
            Err(GlueError::WouldBlock) => {}
            Err(e) => self.bad.push(format!("send: {e}")),
        }
    }
}

impl GlueHandler<Flow> for Client {
    fn on_connected(&mut self, g: &mut Glue<Flow>, s: Socket) {
        self.send(g, s);
    }

    fn on_writable(&mut self, g: &mut Glue<Flow>, s: Socket) {
        if s.kind() == blink_glue::SockKind::Tcp {
            self.send(g, s);
        }
    }

    fn on_readable(&mut self, g: &mut Glue<Flow>, s: Socket) {
        if Some(s) == self.big || Some(s) == self.tun {
            let len = if Some(s) == self.big { BIG_DIRECT } else { BIG_TUNNEL };
            while let Ok(r) = g.recv_from(s, &mut self.buf) {
                let seq = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes"));
                if r.len == len && self.buf[..len] == big_datagram(seq, len)[..] {
                    if len == BIG_DIRECT {
                        self.big_back += 1;
                    } else {
                        self.tun_back += 1;
                    }
                } else {
                    self.bad
                        .push(format!("datagram {seq} of {len} B came back different ({} B)", r.len));
                }
            }
            return;
        }
        if Some(s) == self.udp {
            while let Ok(r) = g.recv_from(s, &mut self.buf) {
                let seq = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes"));
                if r.len == 64 && (4..64).all(|i| self.buf[i] == pattern(seq, i)) {
                    self.dgrams_back += 1;
                } else {
                    self.bad.push(format!("datagram {seq} came back different"));
                }
            }
            return;
        }
        loop {
            match g.recv(s, &mut self.buf) {
                Ok(0) => {
                    let f = g.close(s).ok().flatten().unwrap_or_default();
                    if f.recvd == CONN_BYTES {
                        self.done += 1;
                    } else {
                        self.bad
                            .push(format!("connection {}: {} of {CONN_BYTES} bytes back", f.id, f.recvd));
                    }
                    self.open -= 1;
                    self.fill(g);
                    return;
                }
                Ok(n) => {
                    let f = g.user_data_mut(s).expect("open");
                    if (0..n).any(|i| self.buf[i] != pattern(f.id, f.recvd + i)) {
                        self.bad.push(format!("connection {}: bytes differ", f.id));
                    }
                    f.recvd += n;
                }
                Err(GlueError::WouldBlock) => return,
                Err(e) => {
                    self.bad.push(format!("recv: {e}"));
                    return;
                }
            }
        }
    }

    fn on_closed(&mut self, _g: &mut Glue<Flow>, c: Closed<Flow>) {
        self.open -= 1;
        self.bad.push(format!("connection ended by itself: {:?}", c.reason));
    }
}

#[allow(clippy::too_many_arguments)]
fn host<U>(
    devs: Vec<Box<dyn NetDevice>>,
    ip: &str,
    tunnel: &str,
    cores: u16,
    mode: Steering,
    rss_key: &[u8],
    pool: &Mempool,
) -> Result<Vec<Glue<U>>, SetupError> {
    let b = GlueBuilder::new();
    let b = if devs.len() == 1 {
        b.device(devs.into_iter().next().expect("one"))
    } else {
        b.device_queues(devs)
    };
    b.addr(ip.parse().expect("valid"))
        .tunnel(tunnel.parse().expect("valid tunnel"))
        .rss_key(rss_key)
        .cores(cores)
        .mode(mode)
        .pool(pool.clone())
        .tcp(TcpConfig {
            timewait_ms: 200,
            ..Default::default()
        })
        .build_cores()
        .map_err(|e| SetupError::Runtime(e.to_string()))
}

/// Run the multi-core part and print it: narration, then each host's per-core report.
pub fn run(a: &crate::demo::DemoArgs) -> Result<(), SetupError> {
    let (sa, sb, in_use) = exchange(a, false)?;
    report_cores("multi-core host A", &sa, in_use);
    report_cores("multi-core host B", &sb, in_use);
    Ok(())
}

/// The multi-core exchange (narrated unless `quiet`): every core of A against every core of
/// B. Returns each host's per-core summaries and the buffers still in use once both stopped;
/// an error if any byte, connection or datagram went wrong.
pub fn exchange(
    a: &crate::demo::DemoArgs,
    quiet: bool,
) -> Result<(Vec<CoreSummary>, Vec<CoreSummary>, usize), SetupError> {
    let n = a.dev.cores;
    let mode = a.dev.steering()?;
    let pool = Mempool::new(&MempoolConfig {
        name: "demo-cores".into(),
        n: 32768,
        ..Default::default()
    })
    .map_err(|e| SetupError::Runtime(e.to_string()))?;
    let (a_ip, b_ip) = ("10.0.1.1/24", "10.0.1.2/24");
    let b_addr = Ipv4Addr::new(10, 0, 1, 2);
    let cfg = WireConfig {
        queues: if mode == Steering::Rss { n } else { 1 },
        mtu: a.dev.mtu as usize,
        rss_key: a.dev.rss_key_bytes(),
        ..Default::default()
    };
    let macs = (
        mac_for(Some(a_ip.parse().expect("valid"))),
        mac_for(Some(b_ip.parse().expect("valid"))),
    );
    let (wa, wb) = wire_pair(("mc0", "mc1"), macs, &cfg);
    let key = a.dev.rss_key_bytes();
    let boxed = |v: Vec<blink_glue::netcore::drivers::wire::WireDev>| {
        v.into_iter()
            .map(|d| Box::new(d) as Box<dyn NetDevice>)
            .collect::<Vec<_>>()
    };
    let tun_a = format!("ipip:10.0.1.2:{TUN_A}");
    let tun_b = format!("ipip:10.0.1.1:{TUN_B}");
    let mut hosts_a: Vec<Glue<Flow>> = host(boxed(wa.into_queues()), a_ip, &tun_a, n, mode, &key, &pool)?;
    let mut hosts_b: Vec<Glue<Conn>> = host(boxed(wb.into_queues()), b_ip, &tun_b, n, mode, &key, &pool)?;
    if !quiet {
        println!();
        println!(
            "multi-core: host A {a_ip} and host B {b_ip}, {n} cores each ({mode:?} steering), {} TCP connections of {} KiB each way and {} UDP datagrams from every core of A",
            CONNS_PER_CORE,
            CONN_BYTES / 1024,
            DGRAMS_PER_CORE
        );
        println!(
            "multi-core: and an IPIP tunnel between them (A {TUN_A}, B {TUN_B}); every core of A sends {BIG_PER_CORE} UDP datagrams of {BIG_DIRECT} B to B (fragmented) and {BIG_PER_CORE} of {BIG_TUNNEL} B through the tunnel (fragmented inside it)"
        );
    }
    let echo_args = EchoArgs {
        dev: a.dev.clone(),
        tcp: Some(7),
        discard: None,
        udp: Some(7),
        raw: None,
        duration: None,
        ping: None,
        ping_size: 56,
        ping_count: 0,
    };
    let mut servers = Vec::new();
    for g in &mut hosts_b {
        servers.push(Some(EchoCore::open(g, &echo_args).map_err(SetupError::Runtime)?));
    }
    let finished = AtomicU32::new(0);
    let t0 = Instant::now();
    // Core i of both hosts on thread i (pinned): each thread polls one client and one
    // server core, as `blink bench --cores` does.
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = hosts_a
            .drain(..)
            .zip(hosts_b.drain(..))
            .zip(servers.drain(..))
            .enumerate()
            .map(|(i, ((mut ga, mut gb), server))| {
                let finished = &finished;
                scope.spawn(move || {
                    if let Some(&cpu) = blink_glue::runtime::allowed_cpus().get(i) {
                        let _ = blink_glue::runtime::pin_to_cpu(cpu);
                    }
                    let mut server = server.expect("opened");
                    let first = i as u32 * 1_000_000;
                    let mut client = Client {
                        b: b_addr,
                        next: first,
                        last: first + CONNS_PER_CORE,
                        open: 0,
                        done: 0,
                        bad: Vec::new(),
                        udp: None,
                        dgrams_back: 0,
                        big: None,
                        big_back: 0,
                        tun: None,
                        tun_back: 0,
                        buf: vec![0; 64 * 1024],
                    };
                    client.fill(&mut ga);
                    // The datagrams go once B's address is resolved on this core: the SYNs
                    // already wait for it, and a neighbour queues at most 101 packets.
                    let t = Instant::now();
                    while !ga.stack().neigh.lookup(b_addr).is_some_and(|e| e.state.is_valid())
                        && t.elapsed() < Duration::from_secs(3)
                    {
                        ga.periodic_with(&mut client);
                        gb.periodic_with(&mut server);
                    }
                    match ga.udp_socket(None) {
                        Ok(s) => {
                            client.udp = Some(s);
                            for seq in first..first + DGRAMS_PER_CORE {
                                let mut d = [0u8; 64];
                                d[..4].copy_from_slice(&seq.to_be_bytes());
                                for (j, b) in d.iter_mut().enumerate().skip(4) {
                                    *b = pattern(seq, j);
                                }
                                if let Err(e) = ga.send_to(s, &d, Some(SocketAddrV4::new(b_addr, 7))) {
                                    client.bad.push(format!("udp send: {e}"));
                                }
                                ga.periodic_with(&mut client);
                                gb.periodic_with(&mut server);
                            }
                        }
                        Err(e) => client.bad.push(format!("udp socket: {e}")),
                    }
                    // Big datagrams from connected sockets (their ports hash back here): the
                    // fragments of each meet on one core of B, which re-injects the datagram
                    // into the core that owns its flow; through the tunnel, the outer packets
                    // all go where the tunnel endpoints hash, and the inner ones move on.
                    for (to, len) in [(b_addr, BIG_DIRECT), (TUN_B_ADDR, BIG_TUNNEL)] {
                        let s = match ga.udp_socket(None) {
                            Ok(s) => s,
                            Err(e) => {
                                client.bad.push(format!("udp socket: {e}"));
                                continue;
                            }
                        };
                        if let Err(e) = ga.udp_connect(s, SocketAddrV4::new(to, 7)) {
                            client.bad.push(format!("udp connect {to}: {e}"));
                        }
                        if len == BIG_DIRECT {
                            client.big = Some(s);
                        } else {
                            client.tun = Some(s);
                        }
                        for seq in first..first + BIG_PER_CORE {
                            if let Err(e) = ga.send_to(s, &big_datagram(seq, len), None) {
                                client.bad.push(format!("udp send {len} B to {to}: {e}"));
                            }
                            for _ in 0..4 {
                                ga.periodic_with(&mut client);
                                gb.periodic_with(&mut server);
                            }
                        }
                    }
                    let mut marked = false;
                    let mut quiet_polls = 0u32;
                    loop {
                        let work = ga.periodic_with(&mut client) + gb.periodic_with(&mut server);
                        let mine = client.next == client.last
                            && client.open == 0
                            && client.dgrams_back == DGRAMS_PER_CORE
                            && client.big_back == BIG_PER_CORE
                            && client.tun_back == BIG_PER_CORE
                            || t0.elapsed() > Duration::from_secs(20);
                        if mine && !marked {
                            marked = true;
                            finished.fetch_add(1, Ordering::Relaxed);
                        }
                        // Every core polls until all are done (a core carries others' frames),
                        // then until TIME-WAIT has passed and the wire is quiet.
                        if finished.load(Ordering::Relaxed) as usize == n as usize
                            && ga.protocol_sockets() <= 3
                            && gb.protocol_sockets() <= 2
                        {
                            quiet_polls = if work == 0 { quiet_polls + 1 } else { 0 };
                            if quiet_polls > 1000 {
                                break;
                            }
                        }
                    }
                    for s in [client.udp.take(), client.big.take(), client.tun.take()]
                        .into_iter()
                        .flatten()
                    {
                        let _ = ga.close(s);
                    }
                    let served = server.close(&mut gb);
                    ga.periodic();
                    gb.periodic();
                    (
                        CoreSummary::of(&ga),
                        CoreSummary::of(&gb),
                        client.done,
                        client.dgrams_back,
                        client.bad,
                        served,
                        (client.big_back, client.tun_back),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("core thread")).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut bad = Vec::new();
    let (mut conns, mut dgrams) = (0, 0);
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    let mut big = (0, 0);
    for (cpu, (ca, cb, done, back, errs, served, (big_back, tun_back))) in results.into_iter().enumerate() {
        if !quiet {
            println!(
                "core {cpu}: A opened {} connections ({} echoed intact), {back} of {DGRAMS_PER_CORE} datagrams back; B accepted {} connections, echoed {} datagrams; A forwarded {} / B forwarded {} frames to another core",
                ca.mib.tcp[TcpMib::ActiveOpens],
                done,
                cb.mib.tcp[TcpMib::PassiveOpens],
                served.udp_echoed,
                ca.mib.softnet[SoftnetMib::RssForwarded],
                cb.mib.softnet[SoftnetMib::RssForwarded],
            );
        }
        if !quiet {
            use blink_glue::netcore::snmp::IpMib;
            let tun_rx = |c: &CoreSummary| {
                c.devs
                    .iter()
                    .find(|d| d.name.starts_with("ipip"))
                    .map_or(0, |d| d.stats.rx_packets)
            };
            println!(
                "core {cpu}: A got back {big_back} of {BIG_PER_CORE} datagrams of {BIG_DIRECT} B and {tun_back} of {BIG_PER_CORE} through the tunnel; B reassembled {} datagrams (of {} fragments), decapsulated {} tunnel packets, re-injected {} here / {} to another core, received {} from another core",
                cb.mib.ip[IpMib::ReasmOKs],
                cb.mib.ip[IpMib::ReasmReqds],
                tun_rx(&cb),
                cb.mib.softnet[SoftnetMib::ReinjectLocal],
                cb.mib.softnet[SoftnetMib::ReinjectRemote],
                cb.mib.softnet[SoftnetMib::ReinjectReceived],
            );
        }
        big.0 += big_back;
        big.1 += tun_back;
        conns += done;
        dgrams += back;
        bad.extend(errs.into_iter().map(|e| format!("core {cpu}: {e}")));
        sa.push(ca);
        sb.push(cb);
    }
    let wrong: u64 = sa
        .iter()
        .chain(sb.iter())
        .map(|c| c.mib.softnet[SoftnetMib::WrongCore])
        .sum();
    if !quiet {
        println!(
            "multi-core: {conns} of {} connections and {dgrams} of {} datagrams echoed intact in {secs:.2} s; wrong-core segments {wrong}",
            CONNS_PER_CORE * n as u32,
            DGRAMS_PER_CORE * n as u32
        );
        println!(
            "multi-core: {} of {} datagrams of {BIG_DIRECT} B and {} of {} through the IPIP tunnel echoed intact",
            big.0,
            BIG_PER_CORE * n as u32,
            big.1,
            BIG_PER_CORE * n as u32
        );
        for e in bad.iter().take(5) {
            println!("  {e}");
        }
    }
    let bigs = BIG_PER_CORE * n as u32;
    if !bad.is_empty()
        || conns != CONNS_PER_CORE * n as u32
        || dgrams != DGRAMS_PER_CORE * n as u32
        || big != (bigs, bigs)
        || wrong != 0
    {
        return Err(SetupError::Runtime(format!(
            "multi-core part: {} problem(s), {conns} connections and {dgrams} datagrams intact",
            bad.len()
        )));
    }
    Ok((sa, sb, pool.in_use()))
}
