//! `blink echo`: an echo host. Answers ping, echoes TCP on `--tcp PORT`, discards TCP on
//! `--discard PORT`, echoes UDP datagrams on `--udp PORT` to their sender, and sends each raw
//! packet of protocol `--raw PROTO` back to its sender with the same protocol.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_glue::ipv4::Stack;
use blink_glue::netcore::sock::SockHandle;
use blink_glue::raw::{self, RawConfig, RawErr};
use blink_glue::tcp::{self, tcp::ev, TcpConfig, TcpErr};
use blink_glue::udp::{self, UdpConfig, UdpErr};
use clap::Args;

use crate::args::{usage, DevArgs};
use crate::setup::{build_stack, report, stats_line, stop_flag, SetupError};

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
}

/// One TCP connection of the echo service.
#[derive(Default)]
struct Conn {
    /// Received bytes not yet accepted by the send buffer.
    pending: Vec<u8>,
    eof: bool,
    discard: bool,
}

struct TcpService {
    echo: Option<SockHandle>,
    discard: Option<SockHandle>,
    conns: HashMap<SockHandle, Conn>,
    buf: Vec<u8>,
    events: Vec<(SockHandle, u8)>,
    served: u64,
    bytes: u64,
}

impl TcpService {
    fn service(&mut self, stack: &mut Stack, h: SockHandle) {
        let Some(c) = self.conns.get_mut(&h) else { return };
        loop {
            // Flush what is waiting first: back-pressure, not buffering without bound.
            if !c.pending.is_empty() {
                match tcp::tcp_send(stack, h, &c.pending) {
                    Ok(n) => {
                        c.pending.drain(..n);
                    }
                    Err(TcpErr::WouldBlock) => {}
                    Err(_) => {
                        let _ = tcp::tcp_close(stack, h);
                        self.conns.remove(&h);
                        return;
                    }
                }
                if !c.pending.is_empty() {
                    return;
                }
            }
            if c.eof {
                let _ = tcp::tcp_close(stack, h);
                self.conns.remove(&h);
                return;
            }
            match tcp::tcp_recv(stack, h, &mut self.buf) {
                Ok(0) => c.eof = true,
                Ok(n) => {
                    self.bytes += n as u64;
                    if !c.discard {
                        c.pending.extend_from_slice(&self.buf[..n]);
                    }
                }
                Err(TcpErr::WouldBlock) => return,
                Err(_) => {
                    let _ = tcp::tcp_close(stack, h);
                    self.conns.remove(&h);
                    return;
                }
            }
        }
    }

    fn on_events(&mut self, stack: &mut Stack) {
        self.events.clear();
        let _ = tcp::tcp_events(stack, &mut self.events);
        for i in 0..self.events.len() {
            let (h, e) = self.events[i];
            if Some(h) == self.echo || Some(h) == self.discard {
                if e & ev::ACCEPT != 0 {
                    while let Ok(Some(c)) = tcp::tcp_accept(stack, h) {
                        self.served += 1;
                        self.conns.insert(
                            c,
                            Conn {
                                discard: Some(h) == self.discard,
                                ..Default::default()
                            },
                        );
                        self.service(stack, c);
                    }
                }
                continue;
            }
            self.service(stack, h);
        }
    }
}

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

pub fn run(a: EchoArgs) -> Result<(), SetupError> {
    if let Some(p @ (0 | 255)) = a.raw {
        return Err(usage(format!("--raw {p}: not a protocol a raw socket receives (use 1..=254)")).into());
    }
    let mut stack = build_stack(&a.dev)?;
    let mut svc = TcpService {
        echo: None,
        discard: None,
        conns: HashMap::new(),
        buf: vec![0u8; 256 * 1024],
        events: Vec::new(),
        served: 0,
        bytes: 0,
    };
    if a.tcp.is_some() || a.discard.is_some() {
        tcp::tcp_init(&mut stack, TcpConfig::default());
        if let Some(p) = a.tcp {
            svc.echo = Some(tcp::tcp_listen(&mut stack, p, 1024).map_err(|e| usage(format!("--tcp {p}: {e}")))?);
        }
        if let Some(p) = a.discard {
            svc.discard = Some(tcp::tcp_listen(&mut stack, p, 1024).map_err(|e| usage(format!("--discard {p}: {e}")))?);
        }
    }
    let mut dgram = DgramEcho::open(&mut stack, a.udp, a.raw).map_err(usage)?;
    let d = &stack.devs[0];
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
    println!(
        "blink echo: {} mac {} addr {} (answering {})",
        d.name(),
        d.mac,
        d.addrs.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
        what.join(", ")
    );
    let stop = stop_flag();
    let dur = a.duration.filter(|d| *d > 0.0).map(Duration::from_secs_f64);
    let start = Instant::now();
    let mut next_stats = a.dev.stats.map(|s| start + Duration::from_secs_f64(s));
    let mut idle = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if dur.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let n = stack.poll();
        if svc.echo.is_some() || svc.discard.is_some() {
            svc.on_events(&mut stack);
            stack.flush_tx();
        }
        if dgram.udp.is_some() || dgram.raw.is_some() {
            dgram.service(&mut stack);
            stack.flush_tx();
        }
        if n > 0 {
            idle = 0;
        } else {
            idle = idle.saturating_add(1);
            if idle > 256 {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        if let (Some(t), Some(s)) = (next_stats, a.dev.stats) {
            if Instant::now() >= t {
                println!("[{:>8.1}s] {}", start.elapsed().as_secs_f64(), stats_line(&stack));
                next_stats = Some(t + Duration::from_secs_f64(s));
            }
        }
    }
    stack.flush_tx();
    if a.tcp.is_some() || a.discard.is_some() {
        println!("tcp: {} connections served, {} bytes received", svc.served, svc.bytes);
    }
    if a.udp.is_some() {
        println!("udp: {} datagrams echoed", dgram.udp_echoed);
    }
    if a.raw.is_some() {
        println!("raw: {} packets echoed", dgram.raw_echoed);
    }
    if dgram.errors > 0 {
        println!("datagram echo errors: {}", dgram.errors);
    }
    // Close the sockets so their queues are freed before the buffer check below.
    if let Some(h) = dgram.udp {
        let _ = udp::udp_close(&mut stack, h);
    }
    if let Some(h) = dgram.raw {
        let _ = raw::raw_close(&mut stack, h);
    }
    report(&stack, "blink echo");
    // Tear everything down (sockets, queues, impairment lanes) and prove every buffer came back.
    let pool = stack.core.cache.pool().clone();
    drop(stack);
    println!("mbufs in use after shutdown: {}", pool.in_use());
    Ok(())
}
