//! The whole stack behind app_glue: arbitrary frames into a host with a TCP listener, a UDP
//! socket, raw sockets (ICMP and protocol 253), an IPIP tunnel, and two established TCP
//! connections (one accepted, one it opened), while an echo application serves them through
//! glue's callbacks.
//!
//! Frames are built from structured descriptions so that most reach the sockets: TCP
//! segments on either connection (sequence and acknowledgement numbers at or near where the
//! connection stands, or anywhere), new SYNs to the listener, UDP datagrams, ICMP echoes and
//! errors quoting the connections, raw-protocol packets, ARP; any of them wrapped in IPIP or
//! cut into IP fragments; frames the stack sent, reflected back with a byte changed; and raw
//! bytes. The application also sends, shuts down and closes, and virtual time passes.
//!
//! Invariants: every frame the stack sends is well formed (the harness's `check_output`);
//! `Ip` counters add up; once the application has closed everything and time has run out,
//! no protocol socket is left, the application holds none, `Tcp.CurrEstab` is 0, and every
//! mbuf is back in the pool.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::snmp::{SoftnetMib, TcpMib};
use blink_glue::netcore::EthAddr;
use blink_glue::tcp::TcpConfig;
use blink_glue::{Closed, Glue, GlueBuilder, GlueHandler, SockKind, Socket, TunnelSpec};
use blink_ipv4_fuzz::*;
use libfuzzer_sys::fuzz_target;

const INNER_PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
const INNER_US: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

/// An echo application: TCP and UDP echo, raw sockets read and discarded.
struct Echo {
    buf: Vec<u8>,
    /// Sockets glue accepted for us (dispatch accepts from listeners with news).
    accepted: Vec<Socket>,
}

impl GlueHandler<()> for Echo {
    fn on_accept(&mut self, _g: &mut Glue<()>, _l: Socket, s: Socket) {
        self.accepted.push(s);
    }

    fn on_readable(&mut self, g: &mut Glue<()>, s: Socket) {
        match s.kind() {
            SockKind::Tcp => loop {
                match g.recv(s, &mut self.buf) {
                    Ok(0) => {
                        let _ = g.shutdown(s);
                        break;
                    }
                    Ok(n) => {
                        let _ = g.send(s, &self.buf[..n]);
                    }
                    Err(_) => break,
                }
            },
            SockKind::Udp => {
                while let Ok(r) = g.recv_from(s, &mut self.buf) {
                    assert!(r.len <= r.orig_len);
                    let _ = g.send_to(s, &self.buf[..r.len], Some(r.from));
                }
            }
            _ => while g.recv_from(s, &mut self.buf).is_ok() {},
        }
    }

    fn on_closed(&mut self, _g: &mut Glue<()>, _c: Closed<()>) {}
}

/// One TCP connection as the peer sees it.
#[derive(Clone, Copy, Default)]
struct Conn {
    /// The stack's port and ours.
    lport: u16,
    rport: u16,
    nxt: u32,
    s_nxt: u32,
    s_tsval: u32,
    /// The stack's last acknowledgement number.
    s_ack: u32,
}

struct World {
    g: Glue<()>,
    link: Arc<Mutex<Link>>,
    clock: VirtualClock,
    echo: Echo,
    conns: [Conn; 2],
    /// Frames the stack sent lately (for reflection).
    last_sent: Vec<Vec<u8>>,
    injected: u64,
}

impl World {
    fn step(&mut self) {
        self.g.periodic_with(&mut self.echo);
        self.collect();
    }

    fn collect(&mut self) {
        loop {
            let Some(skb) = self.link.lock().unwrap().from_stack.pop_front() else {
                break;
            };
            let mut f = vec![0u8; skb.len()];
            assert!(skb.skb_copy_bits(0, &mut f));
            drop(skb);
            check_output(&f);
            self.learn(&f);
            if self.last_sent.len() == 8 {
                self.last_sent.remove(0);
            }
            self.last_sent.push(f);
        }
    }

    /// Follow the connections' sequence numbers in what the stack sends.
    fn learn(&mut self, f: &[u8]) {
        let Some((iph, t)) = ip_of(f) else { return };
        if iph[9] != 6 || t.len() < 20 {
            return;
        }
        let (sport, dport) = (u16::from_be_bytes([t[0], t[1]]), u16::from_be_bytes([t[2], t[3]]));
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        let doff = (t[12] >> 4) as usize * 4;
        let plen = t.len().saturating_sub(doff) as u32;
        let flags = t[13];
        for c in self.conns.iter_mut() {
            if c.rport == dport && (c.lport == sport || c.lport == 0) {
                c.lport = sport;
                let end = seq.wrapping_add(plen + (flags & 3 != 0) as u32);
                if c.s_nxt == 0 || (end.wrapping_sub(c.s_nxt) as i32) > 0 {
                    c.s_nxt = end;
                }
                let opts =
                    blink_glue::tcp::tcphdr::TcpOptions::parse(&t[20..doff.min(t.len()).max(20)], flags & 2 != 0);
                if let Some((v, _)) = opts.ts {
                    c.s_tsval = v;
                }
                if flags & 0x10 != 0 {
                    c.s_ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
                }
            }
        }
    }

    fn inject(&mut self, frame: &[u8]) {
        let mut cache = self.g.pool().cache();
        if let Some(mut skb) = blink_glue::netcore::SkBuff::from_slice(&mut cache, frame) {
            skb.reset_for_rx();
            self.link.lock().unwrap().to_stack.push_back(skb);
            self.injected += 1;
        }
        drop(cache);
        self.step();
    }

    fn tcp(&mut self, c: usize, flags: u8, seq: u32, ack: u32, win: u16, opts: &[u8], plen: usize) -> Vec<u8> {
        let k = self.conns[c];
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&k.rport.to_be_bytes());
        t[2..4].copy_from_slice(&k.lport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[13] = flags;
        t[14..16].copy_from_slice(&win.to_be_bytes());
        let mut o = opts.to_vec();
        o.resize(o.len().next_multiple_of(4).min(40), 0);
        t.extend_from_slice(&o);
        t[12] = ((t.len() / 4) as u8) << 4;
        t.extend((0..plen).map(|i| (i as u8).wrapping_mul(7)));
        let c = l4_csum(PEER_IP, STACK_IP, 6, &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    fn ts(&self, c: usize) -> Vec<u8> {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&((self.clock.now_ns() / 1_000_000) as u32).to_be_bytes());
        o.extend_from_slice(&self.conns[c].s_tsval.to_be_bytes());
        o
    }
}

/// An IP packet (from its header) the fuzzer describes.
fn ip_packet(w: &mut World, inp: &mut Input) -> Vec<u8> {
    match inp.u8() % 8 {
        0..=2 => {
            // A segment on one of the connections (or a new SYN to the listener).
            let c = inp.u8() as usize % 2;
            let k = w.conns[c];
            let flags = inp.pick(&[0x10u8, 0x18, 0x18, 0x11, 0x04, 0x14, 0x02, 0x12, 0x01, 0x10]);
            let seq = match inp.u8() % 4 {
                0 | 1 => k.nxt,
                2 => k.nxt.wrapping_add(inp.u16() as u32),
                _ => inp.u32(),
            };
            let ack = match inp.u8() % 4 {
                0 | 1 => k.s_nxt,
                2 => k.s_nxt.wrapping_sub(inp.u16() as u32),
                _ => inp.u32(),
            };
            let win = if inp.u8() % 8 == 0 { 0 } else { 65535 };
            let opts = if inp.bool() { w.ts(c) } else { inp.blob(4) };
            let plen = match inp.u8() % 4 {
                0 | 1 => 0,
                _ => inp.u16() as usize % 2000,
            };
            let t = w.tcp(c, flags, seq, ack, win, &opts, plen);
            if seq == k.nxt && flags & 0x04 == 0 {
                w.conns[c].nxt = seq.wrapping_add(plen as u32 + (flags & 1) as u32);
            }
            let mut spec = IpSpec::new(6);
            spec.id = inp.u16();
            spec.build(&t)
        }
        3 => {
            // UDP to the echo socket or a closed port.
            let dport = inp.pick(&[53u16, 53, 9, 5353]);
            let payload = inp.blob(1);
            let mut u = Vec::new();
            u.extend_from_slice(&inp.u16().to_be_bytes());
            u.extend_from_slice(&dport.to_be_bytes());
            u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u.extend_from_slice(&payload);
            if inp.bool() {
                let c = l4_csum(PEER_IP, STACK_IP, 17, &u);
                u[6..8].copy_from_slice(&c.to_be_bytes());
            }
            IpSpec::new(17).build(&u)
        }
        4 => {
            // ICMP: an echo, or an error quoting one of the connections.
            if inp.bool() {
                let payload = inp.blob(1);
                IpSpec::new(1).build(&icmp_msg(8, 0, inp.u32(), &payload))
            } else {
                let k = w.conns[inp.u8() as usize % 2];
                let (ty, code) = inp.pick(&[(3u8, 4u8), (3, 3), (3, 1), (11, 0), (4, 0)]);
                let mut q = IpSpec::new(6);
                (q.src, q.dst) = (STACK_IP, PEER_IP);
                let mut th = Vec::new();
                th.extend_from_slice(&k.lport.to_be_bytes());
                th.extend_from_slice(&k.rport.to_be_bytes());
                th.extend_from_slice(&k.s_nxt.wrapping_sub(1).to_be_bytes());
                IpSpec::new(1).build(&icmp_msg(ty, code, inp.u16() as u32, &q.build(&th)))
            }
        }
        5 => {
            let payload = inp.blob(1);
            IpSpec::new(253).build(&payload)
        }
        _ => {
            let proto = inp.pick(&[6u8, 17, 1, 253, 4, 47]);
            let spec = IpSpec::decode(inp, proto);
            let payload = inp.blob(1);
            spec.build(&payload)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfgb = inp.u8();
    let clock = VirtualClock::new();
    let link: Arc<Mutex<Link>> = Arc::default();
    let dev = FuzzDev {
        link: link.clone(),
        mac: EthAddr(STACK_MAC),
    };
    let pool = shared_pool(1024);
    let baseline = pool.in_use();
    let tcp = TcpConfig {
        timewait_ms: 2000,
        fin_timeout_ms: 5000,
        sndbuf: if cfgb & 1 != 0 { 8192 } else { 1 << 20 },
        rcvbuf: if cfgb & 1 != 0 { 4096 } else { 1 << 20 },
        timestamps: cfgb & 2 == 0,
        ..Default::default()
    };
    let g: Glue<()> = GlueBuilder::new()
        .device(Box::new(dev))
        .addr(Ipv4Cidr::new(STACK_IP, 24).unwrap())
        .static_arp(PEER_IP, EthAddr(PEER_MAC))
        .tunnel("ipip:10.0.0.2:192.168.1.1/24".parse::<TunnelSpec>().unwrap())
        .pool(pool.clone())
        .clock(Clock::virtual_clock(&clock))
        .tcp(tcp)
        .build()
        .expect("glue");
    let mut w = World {
        g,
        link,
        clock,
        echo: Echo {
            buf: vec![0u8; 70_000],
            accepted: Vec::new(),
        },
        conns: [
            Conn {
                lport: 80,
                rport: 40_000,
                ..Default::default()
            },
            Conn {
                rport: 7,
                ..Default::default()
            },
        ],
        last_sent: Vec::new(),
        injected: 0,
    };
    w.step();
    let listener = w.g.tcp_listen(80, 16).unwrap();
    let udp = w.g.udp_socket(None).unwrap();
    w.g.udp_bind(udp, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53)).unwrap();
    let raw1 = w.g.raw_socket(1, None).unwrap();
    let raw253 = w.g.raw_socket(253, None).unwrap();
    // The accepted connection: SYN, SYN-ACK, ACK.
    let syn_opts = [
        2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let t = w.tcp(0, 0x02, 1_000_000, 0, 65535, &syn_opts, 0);
    w.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &IpSpec::new(6).build(&t)));
    w.conns[0].nxt = 1_000_001;
    let o = w.ts(0);
    let t = w.tcp(0, 0x10, 1_000_001, w.conns[0].s_nxt, 65535, &o, 0);
    w.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &IpSpec::new(6).build(&t)));
    let mut socks: Vec<Socket> = std::mem::take(&mut w.echo.accepted);
    while let Ok(Some(s)) = w.g.accept(listener) {
        socks.push(s);
    }
    // The connection the host opens: SYN, SYN-ACK, ACK.
    let active = w.g.tcp_connect(PEER_IP, 7, None).unwrap();
    socks.push(active);
    w.step();
    let t = w.tcp(1, 0x12, 7_000_000, w.conns[1].s_nxt, 65535, &syn_opts, 0);
    w.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &IpSpec::new(6).build(&t)));
    w.conns[1].nxt = 7_000_001;
    let mut steps = 0;
    while !inp.is_empty() && steps < 48 {
        steps += 1;
        match inp.u8() % 12 {
            0..=4 => {
                let p = ip_packet(&mut w, &mut inp);
                let dst = if inp.u8() % 8 == 0 {
                    eth_dst(&mut inp)
                } else {
                    STACK_MAC
                };
                w.inject(&eth_frame(dst, PEER_MAC, ETH_P_IP, &p));
            }
            5 => {
                // Through the tunnel: the same packet between the inner addresses, in IPIP.
                let mut p = ip_packet(&mut w, &mut inp);
                p[12..16].copy_from_slice(&INNER_PEER.octets());
                p[16..20].copy_from_slice(&INNER_US.octets());
                p[10] = 0;
                p[11] = 0;
                let hl = ((p[0] & 0x0f) as usize * 4).clamp(20, p.len());
                let c = inet_csum(&p[..hl]);
                p[10..12].copy_from_slice(&c.to_be_bytes());
                w.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &IpSpec::new(4).build(&p)));
            }
            6 => {
                // In IP fragments, in order or not.
                let p = ip_packet(&mut w, &mut inp);
                let hl = ((p[0] & 0x0f) as usize * 4).clamp(20, p.len());
                let body = &p[hl..];
                let size = 8 * (1 + inp.u8() as usize % 64);
                let mut offs: Vec<usize> = (0..body.len().max(1)).step_by(size).collect();
                if inp.bool() {
                    offs.reverse();
                }
                let id = inp.u16();
                for off in offs {
                    let end = (off + size).min(body.len());
                    let mut spec = IpSpec::new(p[9]);
                    spec.id = id;
                    spec.frag_off = (off / 8) as u16 | if end < body.len() { 0x2000 } else { 0 };
                    let f = spec.build(&body[off..end]);
                    w.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &f));
                }
            }
            7 => {
                // A frame the stack sent, back at it with addresses swapped and a byte changed.
                if w.last_sent.is_empty() {
                    continue;
                }
                let mut f = w.last_sent[inp.u8() as usize % w.last_sent.len()].clone();
                let (a, b) = (f[0..6].to_vec(), f[6..12].to_vec());
                f[0..6].copy_from_slice(&b);
                f[6..12].copy_from_slice(&a);
                if f.len() >= 34 && f[12..14] == [8, 0] {
                    let (s, d) = (f[26..30].to_vec(), f[30..34].to_vec());
                    f[26..30].copy_from_slice(&d);
                    f[30..34].copy_from_slice(&s);
                }
                let i = inp.u16() as usize % f.len();
                f[i] ^= inp.u8();
                w.inject(&f);
            }
            8 => {
                // ARP, or any bytes at all.
                if inp.bool() {
                    let op = inp.pick(&[1u16, 2]);
                    let spa = addr(&mut inp, &SRC_ADDRS);
                    let body = arp_body(op, PEER_MAC, spa, [0; 6], STACK_IP);
                    w.inject(&eth_frame([0xff; 6], PEER_MAC, ETH_P_ARP, &body));
                } else {
                    let f = inp.blob(1);
                    w.inject(&f);
                }
            }
            9 => {
                // The application: send, shut down or close one of its sockets.
                if socks.is_empty() {
                    continue;
                }
                let i = inp.u8() as usize % socks.len();
                match inp.u8() % 4 {
                    0 | 1 => {
                        let n = inp.u16() as usize % 20_000;
                        let data = vec![0x61u8; n];
                        let _ = w.g.send(socks[i], &data);
                    }
                    2 => {
                        let _ = w.g.shutdown(socks[i]);
                    }
                    _ => {
                        let _ = w.g.close(socks.swap_remove(i));
                    }
                }
                w.step();
            }
            10 => {
                let ms = inp.u16() as u64;
                w.clock.advance_ms(ms);
                w.step();
            }
            _ => {
                while let Ok(Some(s)) = w.g.accept(listener) {
                    socks.push(s);
                }
                w.step();
            }
        }
        socks.append(&mut w.echo.accepted);
    }
    socks.append(&mut w.echo.accepted);
    // Close everything; let time run out.
    for s in socks {
        let _ = w.g.close(s);
    }
    while let Ok(Some(s)) = w.g.accept(listener) {
        let _ = w.g.close(s);
    }
    for s in [listener, udp, raw1, raw253] {
        let _ = w.g.close(s);
    }
    // The peer closes too (FIN where the stack expects it, acknowledging all it sent), so
    // most inputs end in a few virtual seconds.
    for _ in 0..8 {
        if w.g.protocol_sockets() == 0 && w.g.open_sockets() == 0 {
            break;
        }
        for c in 0..2 {
            let k = w.conns[c];
            let o = w.ts(c);
            let t = w.tcp(c, 0x11, k.s_ack, k.s_nxt, 65535, &o, 0);
            w.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &IpSpec::new(6).build(&t)));
        }
        for _ in 0..6 {
            w.clock.advance_ms(500);
            w.step();
            while w.g.next_closed().is_some() {}
        }
    }
    for _ in 0..400 {
        if w.g.protocol_sockets() == 0 && w.g.open_sockets() == 0 {
            break;
        }
        w.clock.advance_ms(10_000);
        w.step();
        // Sockets the peer's segments or timeouts closed are released when taken; what glue
        // accepted meanwhile is closed.
        while w.g.next_closed().is_some() {}
        for s in std::mem::take(&mut w.echo.accepted) {
            let _ = w.g.close(s);
        }
    }
    let states = blink_glue::tcp::with_tcp(w.g.stack_mut(), |t, _| {
        t.socks
            .handles()
            .filter_map(|h| t.socks.get(h))
            .map(|s| {
                format!(
                    "{:?} {}:{} -> {}:{} orphan {}",
                    s.state, s.saddr, s.sport, s.daddr, s.dport, s.orphan
                )
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(w.g.protocol_sockets(), 0, "protocol sockets left: TCP {states:?}");
    assert_eq!(w.g.open_sockets(), 0, "the application still holds sockets");
    // Reassembly (30 s) and ARP.
    for _ in 0..25 {
        w.clock.advance_ms(2000);
        w.step();
    }
    let mib = &w.g.stack().core.mib;
    assert_eq!(mib.tcp.get(TcpMib::CurrEstab), 0, "CurrEstab with no connection left");
    assert_eq!(mib.softnet.get(SoftnetMib::Processed), w.injected, "Softnet.Processed");
    check_ip_counters(mib);
    assert_eq!(w.g.stack().frags.queues(), 0, "reassembly queues left");
    drop(w);
    assert_eq!(pool.in_use(), baseline, "mbuf leak");
});
