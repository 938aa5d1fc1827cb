//! `blink demo`: two blink hosts joined by the in-memory wire, each on its own core (thread).
//! Host A resolves B with ARP, pings it, and sends a datagram of a protocol B does not speak
//! (B answers ICMP "protocol unreachable"), exchanges UDP datagrams with B's UDP echo (and
//! hears "port unreachable" on a connected socket to a closed port), and a raw protocol-89
//! packet with B's raw echo; then both print their counters. It grows as TCP, fragments and
//! tunnels land.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blink_glue::raw::{raw_close, raw_init, raw_recvmsg, raw_sendmsg, raw_socket, RawConfig};
use blink_glue::tcp::{tcp_accept, tcp_close, tcp_connect, tcp_init, tcp_listen, tcp_recv, tcp_send, tcp_shutdown};
use blink_glue::tcp::{with_tcp, TcpConfig, TcpErr};
use blink_glue::udp::{udp_close, udp_connect, udp_init, udp_recvmsg, udp_sendmsg, udp_socket, UdpConfig, UdpErr};
use blink_ipv4::icmp::icmp_send_echo;
use blink_ipv4::ip_output::{ip_build_and_send_pkt, IpTx};
use blink_ipv4::{Ipv4Cidr, Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig};
use blink_netcore::jiffies::Clock;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::IcmpMib;
use blink_netcore::sock::SockHandle;
use blink_netcore::Mempool;
use clap::Args;

use crate::echo::DgramEcho;

use crate::args::{usage, DevArgs, DevKind};
use crate::setup::{configure, mac_for, new_pool, report, SetupError};

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub dev: DevArgs,
    /// Echo requests A sends to B.
    #[arg(long, default_value_t = 5)]
    pub count: u16,
    /// Run the exchange quietly and print every core's counter tables instead
    /// (/proc/net/snmp layout; with --cores N also the multi-core hosts).
    #[arg(long)]
    pub stat: bool,
    /// With --stat: one JSON object, {"cores": [{"core": N, "host": "A", "counters": {...}}]}.
    #[arg(long, requires = "stat")]
    pub json: bool,
}

/// println! unless `quiet` (`blink stat` runs the same exchange without the narration).
macro_rules! say {
    ($quiet:expr, $($t:tt)*) => {
        if !$quiet {
            println!($($t)*);
        }
    };
}

/// The two hosts after the exchange, stopped, with the pool they share.
pub struct DemoHosts {
    pub a: Stack,
    pub b: Stack,
    pub pool: Mempool,
}

/// Poll `stack` until `done` says so or `timeout` passes.
fn poll_until(stack: &mut Stack, timeout: Duration, mut done: impl FnMut(&mut Stack) -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        stack.poll();
        if done(stack) {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

pub fn run(a: DemoArgs) -> Result<(), SetupError> {
    if a.stat {
        return crate::stat::demo_tables(&a, a.json);
    }
    let h = exchange(&a, false)?;
    report(&h.a, "host A (core 0)");
    report(&h.b, "host B (core 1)");
    let pool = h.pool.clone();
    drop(h);
    println!("mbufs in use after both hosts stopped: {}", pool.in_use());
    if a.dev.cores > 1 {
        crate::demo_cores::run(&a)?;
    }
    Ok(())
}

/// The demo's exchange (ARP, ping, ICMP errors, UDP and raw echo), narrated unless `quiet`;
/// returns both hosts stopped, their counters final.
pub fn exchange(a: &DemoArgs, quiet: bool) -> Result<DemoHosts, SetupError> {
    a.dev.check_supported()?;
    if a.dev.dev_kind()? != DevKind::Wire {
        return Err(usage("--dev: the demo runs on the in-memory wire only (use `blink echo` for TAP)").into());
    }
    if a.count == 0 {
        return Err(usage("--count: must be at least 1").into());
    }
    let net: Ipv4Cidr = a.dev.ip.unwrap_or_else(|| "10.0.0.1/24".parse().expect("valid"));
    let a_ip = net;
    let b_addr = Ipv4Addr::from(u32::from(net.network()) + if u32::from(net.addr) & 0xff == 2 { 1 } else { 2 });
    let b_ip = Ipv4Cidr::new(b_addr, net.prefix_len).map_err(|e| usage(format!("--ip: {e}")))?;

    let pool = new_pool(8192);
    let clock = Clock::monotonic();
    let cfg = WireConfig {
        mtu: a.dev.mtu as usize,
        ..Default::default()
    };
    let (wa, wb) = wire_pair(("wire0", "wire1"), (mac_for(Some(a_ip)), mac_for(Some(b_ip))), &cfg);
    let mut sa = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
    let mut sb = Stack::new(1, 1, clock, &pool, StackConfig::default());
    configure(&mut sa, Box::new(wa), &a.dev, &[a_ip])?;
    let b_args = DevArgs {
        pcap: None,
        impair: None,
        gw: None,
        ..a.dev.clone()
    };
    configure(&mut sb, Box::new(wb), &b_args, &[b_ip])?;
    say!(
        quiet,
        "blink demo: host A {a_ip} (core 0) <-> wire <-> host B {b_ip} (core 1)"
    );

    // Host B echoes UDP port 7 and raw protocol 89 (OSPF's number, unused here) on its own
    // core until A is done.
    let mut echo_b = DgramEcho::open(&mut sb, Some(7), Some(89)).map_err(usage)?;
    let mut tcp_b = TcpEcho::open(&mut sb);
    tcp_init(&mut sa, TcpConfig::default());
    udp_init(&mut sa, UdpConfig::default());
    raw_init(&mut sa, RawConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stop_b = stop.clone();
    let b = std::thread::spawn(move || {
        // The poll loop plus the echo service after each poll.
        let mut idle = 0u32;
        while !stop_b.load(Ordering::Relaxed) {
            let n = sb.poll();
            echo_b.service(&mut sb);
            tcp_b.service(&mut sb);
            sb.flush_tx();
            if n > 0 {
                idle = 0;
            } else {
                idle = idle.saturating_add(1);
                if idle > 256 {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
        sb.flush_tx();
        if let Some(h) = echo_b.udp {
            let _ = udp_close(&mut sb, h);
        }
        if let Some(h) = echo_b.raw {
            let _ = raw_close(&mut sb, h);
        }
        say!(
            quiet,
            "host B echoed {} UDP datagrams, {} raw packets and {} TCP bytes",
            echo_b.udp_echoed,
            echo_b.raw_echoed,
            tcp_b.echoed
        );
        sb
    });

    let mut answered = 0;
    for seq in 0..a.count {
        let t0 = sa.core.clock.now_ns();
        if let Err(e) = icmp_send_echo(&mut sa, b_addr, 0x626c, seq, 56) {
            say!(quiet, "ping {b_addr}: seq={seq}: {e}");
            continue;
        }
        let got = poll_until(&mut sa, Duration::from_secs(1), |s| {
            s.icmp.echo_replies.iter().any(|r| r.seq == seq)
        });
        if got {
            let r = *sa.icmp.echo_replies.iter().find(|r| r.seq == seq).expect("found");
            say!(
                quiet,
                "ping {}: {} bytes, seq={} time={:.1} us{}",
                r.from,
                r.len,
                r.seq,
                (r.tstamp.saturating_sub(t0)) as f64 / 1e3,
                if seq == 0 { " (includes ARP resolution)" } else { "" }
            );
            answered += 1;
        } else {
            say!(quiet, "ping {b_addr}: seq={seq}: no reply within 1 s");
        }
    }
    say!(
        quiet,
        "ping: {} sent, {} received, {:.0}% loss",
        a.count,
        answered,
        100.0 * (a.count - answered) as f64 / a.count as f64
    );

    // A datagram of protocol 253 (RFC 3692 experimental): B has no handler for it.
    let before = sa.core.mib.icmp[IcmpMib::InDestUnreachs];
    if let Some(mut skb) = SkBuff::alloc(&mut sa.core.cache) {
        skb.skb_put_data(b"who speaks protocol 253?");
        let tx = IpTx {
            src: None,
            dst: b_addr,
            protocol: 253,
            ttl: None,
            tos: 0,
            df: true,
            id: None,
        };
        if ip_build_and_send_pkt(&mut sa, skb, tx).is_ok() {
            let ok = poll_until(&mut sa, Duration::from_secs(2), |s| {
                s.core.mib.icmp[IcmpMib::InDestUnreachs] > before
            });
            say!(
                quiet,
                "protocol 253 to {b_addr}: {}",
                if ok {
                    "ICMP protocol unreachable received"
                } else {
                    "no answer within 2 s"
                }
            );
        }
    }

    udp_exchange(&mut sa, b_addr, a.dev.mtu as usize, quiet);
    raw_exchange(&mut sa, b_addr, quiet);
    tcp_exchange(&mut sa, b_addr, quiet);

    stop.store(true, Ordering::Relaxed);
    let sb = b
        .join()
        .map_err(|_| SetupError::Runtime("host B's core panicked".into()))?;
    sa.flush_tx();
    // Drain what is still in flight so the buffer report is exact.
    sa.poll();
    Ok(DemoHosts { a: sa, b: sb, pool })
}

/// UDP: datagrams of a few sizes up to the MTU to B's echo port, each checked on return; then
/// one to a closed port from a connected socket, whose ICMP error the next call reports.
fn udp_exchange(sa: &mut Stack, b_addr: Ipv4Addr, mtu: usize, quiet: bool) {
    let Ok(h) = udp_socket(sa) else { return };
    if let Err(e) = udp_connect(sa, h, SocketAddrV4::new(b_addr, 7)) {
        say!(quiet, "udp: connect {b_addr}:7: {e}");
        return;
    }
    let max = mtu.saturating_sub(28);
    let mut buf = vec![0u8; max.max(1)];
    let (mut ok, mut sizes) = (0, 0);
    for len in [1usize, 64, 512, max] {
        if len == 0 || len > max {
            continue;
        }
        sizes += 1;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        if let Err(e) = udp_sendmsg(sa, h, &data, None) {
            say!(quiet, "udp: send {len} bytes: {e}");
            continue;
        }
        let t0 = sa.core.clock.now_ns();
        let mut got = None;
        poll_until(sa, Duration::from_secs(1), |s| {
            got = udp_recvmsg(s, h, &mut buf).ok();
            got.is_some()
        });
        match got {
            Some(r) if buf[..r.len] == data[..] => {
                ok += 1;
                say!(
                    quiet,
                    "udp echo {b_addr}:7: {len} bytes back intact in {:.1} us",
                    sa.core.clock.now_ns().saturating_sub(t0) as f64 / 1e3
                );
            }
            Some(r) => say!(
                quiet,
                "udp echo {b_addr}:7: {len} bytes sent, {} different bytes back",
                r.len
            ),
            None => say!(quiet, "udp echo {b_addr}:7: {len} bytes: no echo within 1 s"),
        }
    }
    say!(quiet, "udp: {ok} of {sizes} datagrams echoed");
    let _ = udp_close(sa, h);

    let Ok(c) = udp_socket(sa) else { return };
    if udp_connect(sa, c, SocketAddrV4::new(b_addr, 9)).is_ok() && udp_sendmsg(sa, c, b"anyone on 9?", None).is_ok() {
        let mut err = None;
        poll_until(sa, Duration::from_secs(2), |s| match udp_recvmsg(s, c, &mut buf) {
            Err(UdpErr::WouldBlock) => false,
            r => {
                err = Some(r);
                true
            }
        });
        match err {
            Some(Err(e)) => say!(quiet, "udp to closed port {b_addr}:9: {e}"),
            Some(Ok(_)) => say!(quiet, "udp to closed port {b_addr}:9: unexpected answer"),
            None => say!(quiet, "udp to closed port {b_addr}:9: no error within 2 s"),
        }
    }
    let _ = udp_close(sa, c);
}

/// Raw: one protocol-89 packet to B's raw echo; the answer arrives IP header first.
fn raw_exchange(sa: &mut Stack, b_addr: Ipv4Addr, quiet: bool) {
    let Ok(h) = raw_socket(sa, 89) else { return };
    let msg = b"hello, protocol 89";
    if let Err(e) = raw_sendmsg(sa, h, msg, Some(b_addr)) {
        say!(quiet, "raw: send: {e}");
        let _ = raw_close(sa, h);
        return;
    }
    let mut buf = [0u8; 256];
    let mut got = None;
    poll_until(sa, Duration::from_secs(1), |s| {
        got = raw_recvmsg(s, h, &mut buf).ok();
        got.is_some()
    });
    match got {
        Some(r) => {
            let ihl = ((buf[0] & 0x0f) as usize * 4).min(r.len);
            say!(
                quiet,
                "raw protocol 89 from {}: {} bytes ({}-byte IP header + payload), payload {}",
                r.from,
                r.len,
                ihl,
                if &buf[ihl..r.len] == msg { "intact" } else { "DIFFERENT" }
            );
        }
        None => say!(quiet, "raw protocol 89 to {b_addr}: no echo within 1 s"),
    }
    let _ = raw_close(sa, h);
}

/// Host B's TCP echo (RFC 862) on port 7: each connection's bytes go back as they arrive, with
/// back-pressure (what the send buffer refuses waits; nothing more is read meanwhile).
struct TcpEcho {
    listener: Option<SockHandle>,
    /// (connection, bytes read but not yet sent back, end of stream seen)
    conns: Vec<(SockHandle, Vec<u8>, bool)>,
    echoed: u64,
}

impl TcpEcho {
    fn open(s: &mut Stack) -> TcpEcho {
        tcp_init(s, TcpConfig::default());
        TcpEcho {
            listener: tcp_listen(s, 7, 16).ok(),
            conns: Vec::new(),
            echoed: 0,
        }
    }

    fn service(&mut self, s: &mut Stack) {
        if let Some(l) = self.listener {
            while let Ok(Some(c)) = tcp_accept(s, l) {
                self.conns.push((c, Vec::new(), false));
            }
        }
        let mut buf = [0u8; 16 * 1024];
        let echoed = &mut self.echoed;
        self.conns.retain_mut(|(h, pending, eof)| {
            loop {
                if !pending.is_empty() {
                    match tcp_send(s, *h, pending) {
                        Ok(n) => {
                            pending.drain(..n);
                            *echoed += n as u64;
                        }
                        Err(TcpErr::WouldBlock) => {}
                        Err(_) => {
                            let _ = tcp_close(s, *h);
                            return false;
                        }
                    }
                    if !pending.is_empty() {
                        break;
                    }
                }
                if *eof {
                    break;
                }
                match tcp_recv(s, *h, &mut buf) {
                    Ok(0) => *eof = true,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(TcpErr::WouldBlock) => break,
                    Err(_) => {
                        let _ = tcp_close(s, *h);
                        return false;
                    }
                }
            }
            if *eof && pending.is_empty() {
                let _ = tcp_close(s, *h);
                return false;
            }
            true
        });
    }
}

/// TCP: 1 MiB to B's echo port and back, compared byte for byte; A shuts down its side when
/// everything is written, B closes after echoing it all, and A waits for the handshake to end.
fn tcp_exchange(sa: &mut Stack, b_addr: Ipv4Addr, quiet: bool) {
    const TOTAL: usize = 1 << 20;
    let c = match tcp_connect(sa, b_addr, 7) {
        Ok(c) => c,
        Err(e) => {
            say!(quiet, "tcp: connect {b_addr}:7: {e}");
            return;
        }
    };
    let data: Vec<u8> = (0..TOTAL).map(|i| (i.wrapping_mul(7) ^ (i >> 8)) as u8).collect();
    let mut back = Vec::with_capacity(TOTAL);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut sent, mut shut, mut eof) = (0, false, false);
    let t0 = Instant::now();
    while !eof && t0.elapsed() < Duration::from_secs(10) {
        sa.poll();
        if sent < TOTAL {
            match tcp_send(sa, c, &data[sent..]) {
                Ok(n) => sent += n,
                Err(TcpErr::WouldBlock) => {}
                Err(e) => {
                    say!(quiet, "tcp: send: {e}");
                    break;
                }
            }
        } else if !shut {
            shut = tcp_shutdown(sa, c).is_ok();
        }
        loop {
            match tcp_recv(sa, c, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => back.extend_from_slice(&buf[..n]),
                Err(TcpErr::WouldBlock) => break,
                Err(e) => {
                    say!(quiet, "tcp: recv: {e}");
                    eof = true;
                    break;
                }
            }
        }
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    say!(
        quiet,
        "tcp echo {b_addr}:7: {} of {} bytes back, {} ({ms:.1} ms, connect included)",
        back.len(),
        TOTAL,
        if back == data { "intact" } else { "DIFFERENT" }
    );
    let _ = tcp_close(sa, c);
    // A closed first: it ends in TIME-WAIT (a small sock, no buffers); wait for the rest.
    poll_until(sa, Duration::from_secs(2), |s| {
        with_tcp(s, |t, _| t.socks.len()).unwrap_or(0) == 0
    });
}
