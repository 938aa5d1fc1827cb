//! `blink echo`: an echo host. Answers ping, echoes TCP on `--tcp PORT`, discards TCP on
//! `--discard PORT`, echoes UDP datagrams on `--udp PORT` to their sender, and sends each raw
//! packet of protocol `--raw PROTO` back to its sender with the same protocol.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::time::Duration;

use blink_glue::ipv4::Stack;
use blink_glue::netcore::sock::SockHandle;
use blink_glue::raw::{self, RawConfig, RawErr};
use blink_glue::tcp::TcpConfig;
use blink_glue::udp::{self, UdpConfig, UdpErr};
use blink_glue::{Glue, GlueError, GlueHandler, SockKind, Socket};
use clap::Args;

use crate::args::{usage, DevArgs};
use crate::cores::{report_cores, run_cores, CoreApp, CoreSummary, RunOpts};
use crate::setup::{build_cores, stop_flag, SetupError};

#[derive(Args, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    pub dev: DevArgs,
    /// Echo TCP connections on this port (RFC 862).
    #[arg(long, value_name = "PORT")]
    pub tcp: Option<u16>,
    /// Accept TCP on this port and throw the data away (RFC 863).
    #[arg(long, value_name = "PORT")]
    pub discard: Option<u16>,
    /// Echo UDP datagrams on this port back to their sender (RFC 862).
    #[arg(long, value_name = "PORT")]
    pub udp: Option<u16>,
    /// Send each raw IPv4 packet of this protocol number back to its sender (payload only,
    /// same protocol).
    #[arg(long, value_name = "PROTO")]
    pub raw: Option<u8>,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Also ping this address from core 0, once a second, printing each reply (`ping` as a
    /// client: a payload over the MTU goes out in fragments).
    #[arg(long, value_name = "A.B.C.D")]
    pub ping: Option<Ipv4Addr>,
    /// Echo payload bytes of --ping (ICMP data, as `ping -s`).
    #[arg(long, value_name = "BYTES", default_value_t = 56, value_parser = clap::value_parser!(u16).range(0..=65507))]
    pub ping_size: u16,
    /// Echo requests --ping sends.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub ping_count: u16,
}

/// `--ping`: echo requests from core 0, one a second; any core prints the replies it gets
/// (they arrive where the NIC or the balancer steers the ICMP flow).
struct Pinger {
    dst: Ipv4Addr,
    size: usize,
    count: u16,
    sent: u16,
    next: std::time::Instant,
}

/// ICMP echo id of `--ping` (any value; replies are matched on it).
const PING_ID: u16 = 0xb1c;

/// The datagram side of the echo service: one UDP socket and/or one raw socket, served from
/// their readable events. Shared with `blink demo`, whose host B runs it.
pub struct DgramEcho {
    pub udp: Option<SockHandle>,
    pub raw: Option<SockHandle>,
    buf: Vec<u8>,
    events: Vec<(SockHandle, u8)>,
    pub udp_echoed: u64,
    pub raw_echoed: u64,
    pub errors: u64,
}

impl DgramEcho {
    /// Register UDP/raw on `stack` as needed and open the sockets. UDP and raw must not
    /// already be initialised with other settings.
    pub fn open(stack: &mut Stack, udp_port: Option<u16>, raw_proto: Option<u8>) -> Result<DgramEcho, String> {
        let mut d = DgramEcho {
            udp: None,
            raw: None,
            buf: vec![0u8; 65536],
            events: Vec::new(),
            udp_echoed: 0,
            raw_echoed: 0,
            errors: 0,
        };
        if let Some(p) = udp_port {
            udp::udp_init(stack, UdpConfig::default());
            let h = udp::udp_socket(stack).map_err(|e| format!("--udp {p}: {e}"))?;
            udp::udp_bind(stack, h, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p))
                .map_err(|e| format!("--udp {p}: {e}"))?;
            d.udp = Some(h);
        }
        if let Some(proto) = raw_proto {
            raw::raw_init(stack, RawConfig::default());
            d.raw = Some(raw::raw_socket(stack, proto).map_err(|e| format!("--raw {proto}: {e}"))?);
        }
        Ok(d)
    }

    /// Echo everything queued on the sockets that reported news.
    pub fn service(&mut self, stack: &mut Stack) {
        if let Some(h) = self.udp {
            self.events.clear();
            let _ = udp::udp_events(stack, &mut self.events);
            if self
                .events
                .iter()
                .any(|&(e, bits)| e == h && bits & udp::ev::READABLE != 0)
            {
                loop {
                    match udp::udp_recvmsg(stack, h, &mut self.buf) {
                        Ok(r) => match udp::udp_sendmsg(stack, h, &self.buf[..r.len], Some(r.from)) {
                            Ok(_) => self.udp_echoed += 1,
                            Err(_) => self.errors += 1,
                        },
                        Err(UdpErr::WouldBlock) => break,
                        // An ICMP error reported to the socket: counted, and the socket goes on.
                        Err(UdpErr::Sock(_)) => self.errors += 1,
                        Err(_) => {
                            self.errors += 1;
                            break;
                        }
                    }
                }
            }
        }
        if let Some(h) = self.raw {
            self.events.clear();
            let _ = raw::raw_events(stack, &mut self.events);
            if self
                .events
                .iter()
                .any(|&(e, bits)| e == h && bits & raw::ev::READABLE != 0)
            {
                loop {
                    match raw::raw_recvmsg(stack, h, &mut self.buf) {
                        Ok(r) => {
                            // Received data starts at the IP header; echo only the payload.
                            let ihl = ((self.buf[0] & 0x0f) as usize * 4).min(r.len);
                            match raw::raw_sendmsg(stack, h, &self.buf[ihl..r.len], Some(r.from)) {
                                Ok(_) => self.raw_echoed += 1,
                                Err(_) => self.errors += 1,
                            }
                        }
                        Err(RawErr::WouldBlock) => break,
                        Err(_) => {
                            self.errors += 1;
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// One TCP connection of the echo service (the socket's user data).
#[derive(Default)]
pub struct Conn {
    /// Received bytes not yet accepted by the send buffer.
    pending: Vec<u8>,
    eof: bool,
    discard: bool,
}

/// What one core of `blink echo` serves, and what it counted.
pub struct EchoCore {
    echo: Option<Socket>,
    discard: Option<Socket>,
    udp: Option<Socket>,
    raw: Option<Socket>,
    buf: Vec<u8>,
    pub stats: EchoStats,
    ping: Option<Pinger>,
}

/// Per-core counts, summed at the end.
#[derive(Default, Debug, Clone, Copy)]
pub struct EchoStats {
    pub served: u64,
    pub bytes: u64,
    pub udp_echoed: u64,
    pub raw_echoed: u64,
    pub errors: u64,
}

impl EchoStats {
    fn add(&mut self, o: &EchoStats) {
        self.served += o.served;
        self.bytes += o.bytes;
        self.udp_echoed += o.udp_echoed;
        self.raw_echoed += o.raw_echoed;
        self.errors += o.errors;
    }
}

impl EchoCore {
    /// Open this core's sockets: every core listens and binds the same ports (per-core
    /// tables; each flow reaches the core its hash selects). Uses the ports of `a`'s
    /// `--tcp`, `--discard`, `--udp` and `--raw`.
    pub fn open(glue: &mut Glue<Conn>, a: &EchoArgs) -> Result<EchoCore, String> {
        let mut c = EchoCore {
            echo: None,
            discard: None,
            udp: None,
            raw: None,
            buf: vec![0u8; 256 * 1024],
            stats: EchoStats::default(),
            ping: a.ping.filter(|_| glue.cpu() == 0).map(|dst| Pinger {
                dst,
                size: a.ping_size as usize,
                count: a.ping_count,
                sent: 0,
                next: std::time::Instant::now() + Duration::from_millis(200),
            }),
        };
        if let Some(p) = a.tcp {
            c.echo = Some(glue.tcp_listen(p, 1024).map_err(|e| format!("--tcp {p}: {e}"))?);
        }
        if let Some(p) = a.discard {
            c.discard = Some(glue.tcp_listen(p, 1024).map_err(|e| format!("--discard {p}: {e}"))?);
        }
        if let Some(p) = a.udp {
            let s = glue.udp_socket(None).map_err(|e| format!("--udp {p}: {e}"))?;
            glue.udp_bind(s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p))
                .map_err(|e| format!("--udp {p}: {e}"))?;
            c.udp = Some(s);
        }
        if let Some(proto) = a.raw {
            c.raw = Some(
                glue.raw_socket(proto, None)
                    .map_err(|e| format!("--raw {proto}: {e}"))?,
            );
        }
        Ok(c)
    }

    /// Echo (or discard) what a connection has, as far as its send buffer takes it.
    fn service(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        loop {
            let Some(c) = glue.user_data_mut(s) else { return };
            // Flush what is waiting first: back-pressure, not buffering without bound.
            if !c.pending.is_empty() {
                let pending = std::mem::take(&mut c.pending);
                match glue.send(s, &pending) {
                    Ok(n) => glue.user_data_mut(s).expect("open").pending = pending[n..].to_vec(),
                    Err(GlueError::WouldBlock) => glue.user_data_mut(s).expect("open").pending = pending,
                    Err(_) => {
                        let _ = glue.close(s);
                        return;
                    }
                }
                if !glue.user_data(s).expect("open").pending.is_empty() {
                    return;
                }
            }
            if glue.user_data(s).expect("open").eof {
                let _ = glue.close(s);
                return;
            }
            match glue.recv(s, &mut self.buf) {
                Ok(0) => glue.user_data_mut(s).expect("open").eof = true,
                Ok(n) => {
                    self.stats.bytes += n as u64;
                    let c = glue.user_data_mut(s).expect("open");
                    if !c.discard {
                        c.pending.extend_from_slice(&self.buf[..n]);
                    }
                }
                Err(GlueError::WouldBlock) => return,
                Err(_) => {
                    let _ = glue.close(s);
                    return;
                }
            }
        }
    }

    fn udp_echo(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        loop {
            match glue.recv_from(s, &mut self.buf) {
                Ok(r) => match glue.send_to(s, &self.buf[..r.len], Some(r.from)) {
                    Ok(_) => self.stats.udp_echoed += 1,
                    Err(_) => self.stats.errors += 1,
                },
                Err(GlueError::WouldBlock) => break,
                // An ICMP error reported to the socket: counted, and the socket goes on.
                Err(GlueError::Icmp(_)) => self.stats.errors += 1,
                Err(_) => {
                    self.stats.errors += 1;
                    break;
                }
            }
        }
    }

    fn raw_echo(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        loop {
            match glue.recv_from(s, &mut self.buf) {
                Ok(r) => {
                    // Received data starts at the IP header; echo only the payload.
                    let ihl = ((self.buf[0] & 0x0f) as usize * 4).min(r.len);
                    let to = SocketAddrV4::new(*r.from.ip(), 0);
                    match glue.send_to(s, &self.buf[ihl..r.len], Some(to)) {
                        Ok(_) => self.stats.raw_echoed += 1,
                        Err(_) => self.stats.errors += 1,
                    }
                }
                Err(GlueError::WouldBlock) => break,
                Err(_) => {
                    self.stats.errors += 1;
                    break;
                }
            }
        }
    }

    /// Close the datagram sockets so their queues are freed before the buffer check.
    pub fn close(self, glue: &mut Glue<Conn>) -> EchoStats {
        for s in [self.udp, self.raw].into_iter().flatten() {
            let _ = glue.close(s);
        }
        self.stats
    }
}

impl GlueHandler<Conn> for EchoCore {
    fn on_accept(&mut self, glue: &mut Glue<Conn>, l: Socket, s: Socket) {
        self.stats.served += 1;
        let discard = Some(l) == self.discard;
        let _ = glue.set_user_data(
            s,
            Conn {
                discard,
                ..Default::default()
            },
        );
        self.service(glue, s);
    }

    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        if Some(s) == self.udp {
            self.udp_echo(glue, s);
        } else if Some(s) == self.raw {
            self.raw_echo(glue, s);
        } else {
            self.service(glue, s);
        }
    }

    fn on_writable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        if s.kind() == SockKind::Tcp {
            self.service(glue, s);
        }
    }

    fn on_error(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        // The pending ICMP error is returned once by the next call: take it and go on.
        self.on_readable(glue, s);
    }
}

impl CoreApp<Conn> for EchoCore {
    fn on_poll(&mut self, glue: &mut Glue<Conn>) {
        if let Some(p) = self.ping.as_mut() {
            let now = std::time::Instant::now();
            if p.sent < p.count && now >= p.next {
                p.next = now + Duration::from_secs(1);
                p.sent += 1;
                let cpu = glue.cpu();
                match blink_ipv4::icmp::icmp_send_echo(glue.stack_mut(), p.dst, PING_ID, p.sent, p.size) {
                    Ok(()) => println!("ping {}: sent seq={} ({} bytes) from core {cpu}", p.dst, p.sent, p.size),
                    Err(e) => println!("ping {}: seq={} not sent: {e}", p.dst, p.sent),
                }
                glue.flush();
            }
        }
        let stack = glue.stack_mut();
        if stack.icmp.echo_replies.is_empty() {
            return;
        }
        let cpu = stack.core.cpu;
        while let Some(r) = stack.icmp.echo_replies.pop_front() {
            if r.id == PING_ID {
                println!(
                    "ping reply from {}: {} bytes seq={} on core {cpu}",
                    r.from, r.len, r.seq
                );
            }
        }
    }
}

pub fn run(a: EchoArgs) -> Result<(), SetupError> {
    if let Some(p @ (0 | 255)) = a.raw {
        return Err(usage(format!("--raw {p}: not a protocol a raw socket receives (use 1..=254)")).into());
    }
    let mut cores: Vec<Glue<Conn>> = build_cores(&a.dev, TcpConfig::default(), 8192)?;
    // Open every core's sockets here, before the cores start, so a bad port is a usage
    // error (exit 2) rather than a failure on some core's thread.
    let mut apps = Vec::new();
    for g in &mut cores {
        apps.push(Some(EchoCore::open(g, &a).map_err(usage)?));
    }
    let apps: Vec<Mutex<Option<EchoCore>>> = apps.into_iter().map(Mutex::new).collect();
    let pool = cores[0].pool().clone();
    let d = &cores[0].stack().devs[0];
    let mut what = vec!["ping".to_string()];
    if let Some(p) = a.tcp {
        what.push(format!("tcp echo {p}"));
    }
    if let Some(p) = a.discard {
        what.push(format!("tcp discard {p}"));
    }
    if let Some(p) = a.udp {
        what.push(format!("udp echo {p}"));
    }
    if let Some(p) = a.raw {
        what.push(format!("raw echo protocol {p}"));
    }
    let cores_note = if cores.len() > 1 {
        format!(" on {} cores ({} mode)", cores.len(), a.dev.mode)
    } else {
        String::new()
    };
    println!(
        "blink echo: {} mac {} addr {} (answering {}){cores_note}",
        d.name(),
        d.mac,
        d.addrs().iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
        what.join(", ")
    );
    let opts = RunOpts {
        stop: stop_flag(),
        duration: a.duration.filter(|d| *d > 0.0).map(Duration::from_secs_f64),
        stats: a.dev.stats,
        ctl: Some(a.dev.ctl_path("echo")),
    };
    let res = run_cores(
        cores,
        &opts,
        |g| {
            apps[g.cpu() as usize]
                .lock()
                .expect("not poisoned")
                .take()
                .expect("opened above")
        },
        |g, app| app.close(g),
    );
    let mut total = EchoStats::default();
    for (_, st) in &res {
        total.add(st);
    }
    if a.tcp.is_some() || a.discard.is_some() {
        println!(
            "tcp: {} connections served, {} bytes received",
            total.served, total.bytes
        );
    }
    if a.udp.is_some() {
        println!("udp: {} datagrams echoed", total.udp_echoed);
    }
    if a.raw.is_some() {
        println!("raw: {} packets echoed", total.raw_echoed);
    }
    if total.errors > 0 {
        println!("datagram echo errors: {}", total.errors);
    }
    let summaries: Vec<CoreSummary> = res.into_iter().map(|(s, _)| s).collect();
    let in_use = summaries.first().map(|c| c.pool_in_use).unwrap_or(0);
    report_cores("blink echo", &summaries, in_use);
    // Every core has dropped its stack (sockets, queues, impairment lanes): prove every
    // buffer came back.
    println!("mbufs in use after shutdown: {}", pool.in_use());
    Ok(())
}
