//! `blink echo`: an echo host. Answers ping, and echoes TCP on `--tcp PORT` and discards TCP
//! on `--discard PORT`. UDP and raw echo arrive with their protocols.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blink_glue::ipv4::Stack;
use blink_glue::netcore::sock::SockHandle;
use blink_glue::tcp::{self, tcp::ev, TcpConfig, TcpErr};
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

pub fn run(a: EchoArgs) -> Result<(), SetupError> {
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
    let d = &stack.devs[0];
    let mut what = vec!["ping".to_string()];
    if let Some(p) = a.tcp {
        what.push(format!("tcp echo {p}"));
    }
    if let Some(p) = a.discard {
        what.push(format!("tcp discard {p}"));
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
    report(&stack, "blink echo");
    // Tear everything down (sockets, queues, impairment lanes) and prove every buffer came back.
    let pool = stack.core.cache.pool().clone();
    drop(stack);
    println!("mbufs in use after shutdown: {}", pool.in_use());
    Ok(())
}
