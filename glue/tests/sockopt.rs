//! Socket options seen on the wire: two stacks on the in-memory wire with a virtual clock, A's
//! device wrapped in a sniffer that keeps every frame A sends and receives (with the virtual
//! time), parsed back by an independent parser (etherparse).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::netdevice::{Burst, DevStats, NetDevice, NetdevFeatures};
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::tcp::TcpConfig;
use blink_glue::{CloseReason, Glue, GlueBuilder, GlueError, Keepalive, SockOpt, Socket};
use etherparse::{NetHeaders, PacketHeaders, TcpOptionElement, TransportHeader};

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const A_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 1]);
const B_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 2]);
const PORT: u16 = 8080;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Sent by A.
    Out,
    /// Received by A (sent by B).
    In,
}

/// One frame as the sniffer saw it.
struct Frame {
    dir: Dir,
    at_ms: u64,
    bytes: Vec<u8>,
}

/// What the tests read from a TCP/IPv4 frame.
#[derive(Debug)]
#[allow(dead_code)]
struct Seg {
    dir: Dir,
    at_ms: u64,
    tos: u8,
    ttl: u8,
    sport: u16,
    dport: u16,
    seq: u32,
    syn: bool,
    fin: bool,
    rst: bool,
    window: u16,
    mss: Option<u16>,
    wscale: Option<u8>,
    payload: usize,
}

type Log = Arc<Mutex<Vec<Frame>>>;

/// A's wire end, keeping a copy of every frame through it.
struct Sniffer {
    inner: WireDev,
    log: Log,
    vc: VirtualClock,
}

impl Sniffer {
    fn keep(&self, dir: Dir, burst: &Burst) {
        let mut log = self.log.lock().unwrap();
        for skb in burst.iter() {
            let mut bytes = vec![0; skb.len()];
            assert!(skb.skb_copy_bits(0, &mut bytes));
            log.push(Frame {
                dir,
                at_ms: self.vc.now_ns() / 1_000_000,
                bytes,
            });
        }
    }
}

impl NetDevice for Sniffer {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn mac(&self) -> EthAddr {
        self.inner.mac()
    }
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn features(&self) -> NetdevFeatures {
        // Software checksums: the frames logged are the frames as they travel.
        NetdevFeatures::NONE
    }
    fn rx_burst(&mut self, q: u16, out: &mut Burst) -> usize {
        let before = out.len();
        let n = self.inner.rx_burst(q, out);
        let mut log = self.log.lock().unwrap();
        for skb in out.iter().skip(before) {
            let mut bytes = vec![0; skb.len()];
            assert!(skb.skb_copy_bits(0, &mut bytes));
            log.push(Frame {
                dir: Dir::In,
                at_ms: self.vc.now_ns() / 1_000_000,
                bytes,
            });
        }
        n
    }
    fn tx_burst(&mut self, q: u16, pkts: &mut Burst) -> usize {
        self.keep(Dir::Out, pkts);
        self.inner.tx_burst(q, pkts)
    }
    fn stats(&self) -> DevStats {
        self.inner.stats()
    }
}

struct Rig {
    vc: VirtualClock,
    pool: Mempool,
    a: Glue<()>,
    b: Glue<()>,
    log: Log,
}

fn rig() -> Rig {
    let pool = Mempool::new(&MempoolConfig {
        n: 8192,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let clock = Clock::virtual_clock(&vc);
    let (wa, wb) = wire_pair(("a", "b"), (A_MAC, B_MAC), &WireConfig::default());
    let log: Log = Arc::default();
    let tcp = common::seeded(TcpConfig {
        timewait_ms: 1000,
        ..Default::default()
    });
    let a = GlueBuilder::new()
        .device(Box::new(Sniffer {
            inner: wa,
            log: log.clone(),
            vc: vc.clone(),
        }))
        .addr("10.0.0.1/24".parse().unwrap())
        .static_arp(B_IP, B_MAC)
        .pool(pool.clone())
        .clock(clock.clone())
        .tcp(tcp.clone())
        .build()
        .unwrap();
    let b = GlueBuilder::new()
        .device(Box::new(wb))
        .addr("10.0.0.2/24".parse().unwrap())
        .static_arp(A_IP, A_MAC)
        .pool(pool.clone())
        .clock(clock)
        .tcp(tcp)
        .build()
        .unwrap();
    Rig { vc, pool, a, b, log }
}

impl Rig {
    /// One poll of both sides, then 1 ms of virtual time.
    fn step(&mut self) {
        self.a.periodic();
        self.b.periodic();
        self.vc.advance_ms(1);
    }

    /// `ms` ms in which only A runs (B is silent: its frames wait on the wire unread).
    fn run_a_only(&mut self, ms: u64) {
        for _ in 0..ms {
            self.a.periodic();
            self.vc.advance_ms(1);
        }
    }

    fn steps(&mut self, n: usize) {
        for _ in 0..n {
            self.step();
        }
    }

    fn now_ms(&self) -> u64 {
        self.vc.now_ns() / 1_000_000
    }

    /// The TCP segments of the log from `from` on (frames of other kinds skipped).
    fn segs(&self, from: usize) -> Vec<Seg> {
        self.log.lock().unwrap()[from..].iter().filter_map(parse_tcp).collect()
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// A listener on B (with `opts` set on it), a connection from `client` (or a new socket
    /// of A's), both ends returned once established.
    fn connect(&mut self, client: Option<Socket>, listener_opts: &[SockOpt]) -> (Socket, Socket, Socket) {
        let l = self.b.tcp_listen(PORT, 16).unwrap();
        for &o in listener_opts {
            self.b.set_option(l, o).unwrap();
        }
        let c = match client {
            Some(c) => {
                self.a.tcp_connect_sock(c, SocketAddrV4::new(B_IP, PORT)).unwrap();
                c
            }
            None => self.a.tcp_connect(B_IP, PORT, None).unwrap(),
        };
        let mut server = None;
        let mut connected = false;
        for _ in 0..1000 {
            self.step();
            connected |= self.a.next_connected() == Some(c);
            if server.is_none() && self.b.next_listener().is_some() {
                server = self.b.accept(l).unwrap();
            }
            if connected && server.is_some() {
                break;
            }
        }
        assert!(connected, "A connected");
        // Let the handshake's last ACK and any delayed ACK settle.
        self.steps(300);
        (c, server.expect("B accepted"), l)
    }

    /// Read everything B has for `s`; returns the bytes read.
    fn b_read(&mut self, s: Socket) -> usize {
        let mut buf = [0u8; 65536];
        let mut n = 0;
        while let Ok(k) = self.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    }
}

fn parse_tcp(f: &Frame) -> Option<Seg> {
    let p = PacketHeaders::from_ethernet_slice(&f.bytes).ok()?;
    let Some(NetHeaders::Ipv4(ip, _)) = p.net else {
        return None;
    };
    let Some(TransportHeader::Tcp(t)) = p.transport else {
        return None;
    };
    let mut mss = None;
    let mut wscale = None;
    for o in t.options_iterator() {
        match o {
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => mss = Some(m),
            Ok(TcpOptionElement::WindowScale(w)) => wscale = Some(w),
            _ => {}
        }
    }
    Some(Seg {
        dir: f.dir,
        at_ms: f.at_ms,
        tos: (ip.dscp.value() << 2) | ip.ecn.value(),
        ttl: ip.time_to_live,
        sport: t.source_port,
        dport: t.destination_port,
        seq: t.sequence_number,
        syn: t.syn,
        fin: t.fin,
        rst: t.rst,
        window: t.window_size,
        mss,
        wscale,
        payload: p.payload.slice().len(),
    })
}

fn data_out(segs: &[Seg]) -> Vec<usize> {
    segs.iter()
        .filter(|s| s.dir == Dir::Out && s.payload > 0)
        .map(|s| s.payload)
        .collect()
}

/// Close everything and check nothing is left: sockets gone, every mbuf back in the pool.
fn finish(r: &mut Rig, socks_a: &[Socket], socks_b: &[Socket]) {
    for &s in socks_a {
        let _ = r.a.close(s);
    }
    for &s in socks_b {
        let _ = r.b.close(s);
    }
    for _ in 0..10_000 {
        if r.a.protocol_sockets() == 0 && r.b.protocol_sockets() == 0 && r.pool.in_use() == 0 {
            break;
        }
        r.step();
        while r.a.next_closed().is_some() {}
        while r.b.next_closed().is_some() {}
    }
    assert_eq!(r.a.protocol_sockets(), 0, "A still has sockets");
    assert_eq!(r.b.protocol_sockets(), 0, "B still has sockets");
    assert_eq!(r.pool.in_use(), 0, "mbufs leaked");
}

/// Two small writes back to back, before any ACK can come: Nagle holds the second (a small
/// segment is in flight), TCP_NODELAY sends it at once.
#[test]
fn nodelay_sends_a_small_write_at_once() {
    for nodelay in [false, true] {
        let mut r = rig();
        let (c, s, l) = r.connect(None, &[]);
        r.a.set_option(c, SockOpt::NoDelay(nodelay)).unwrap();
        let mark = r.log_len();
        assert_eq!(r.a.send(c, b"first").unwrap(), 5);
        assert_eq!(r.a.send(c, b"second").unwrap(), 6);
        r.a.flush();
        let sent = data_out(&r.segs(mark));
        if nodelay {
            assert_eq!(sent, vec![5, 6], "TCP_NODELAY: both small writes out at once");
        } else {
            assert_eq!(sent, vec![5], "Nagle: the second small write waits for the ACK");
            r.steps(300);
            assert_eq!(data_out(&r.segs(mark)), vec![5, 6], "and goes once the first is acked");
        }
        r.steps(50);
        assert_eq!(r.b_read(s), 11);
        finish(&mut r, &[c], &[s, l]);
    }
}

/// TCP_CORK holds partial segments (full ones go), removing it pushes the rest.
#[test]
fn cork_holds_partial_segments_until_uncorked() {
    let mut r = rig();
    let (c, s, l) = r.connect(None, &[]);
    r.a.set_option(c, SockOpt::NoDelay(true)).unwrap();
    r.a.set_option(c, SockOpt::Cork(true)).unwrap();
    let mark = r.log_len();
    assert_eq!(r.a.send(c, &[7u8; 100]).unwrap(), 100);
    r.steps(500);
    assert_eq!(
        data_out(&r.segs(mark)),
        Vec::<usize>::new(),
        "corked: 100 bytes held for 500 ms"
    );
    // Enough for two full segments: those go, the tail stays.
    assert_eq!(r.a.send(c, &[7u8; 3000]).unwrap(), 3000);
    r.steps(50);
    let sent = data_out(&r.segs(mark));
    let mss = sent.first().copied().expect("full segments go while corked");
    assert!(
        sent.iter().all(|&n| n == mss),
        "only full segments while corked: {sent:?}"
    );
    assert_eq!(sent.len(), 3100 / mss);
    r.a.set_option(c, SockOpt::Cork(false)).unwrap();
    r.a.flush();
    let sent = data_out(&r.segs(mark));
    assert_eq!(sent.iter().sum::<usize>(), 3100, "uncorking pushes the rest: {sent:?}");
    r.steps(50);
    assert_eq!(r.b_read(s), 3100);
    finish(&mut r, &[c], &[s, l]);
}

/// SO_LINGER 0: close resets (RST, no FIN); the peer sees a reset.
#[test]
fn linger_zero_closes_with_rst_instead_of_fin() {
    for linger in [None, Some(Duration::ZERO)] {
        let mut r = rig();
        let (c, s, l) = r.connect(None, &[]);
        r.a.set_option(c, SockOpt::Linger(linger)).unwrap();
        let mark = r.log_len();
        r.a.close(c).unwrap();
        r.a.flush();
        let out: Vec<Seg> = r.segs(mark).into_iter().filter(|s| s.dir == Dir::Out).collect();
        let rst = out.iter().filter(|s| s.rst).count();
        let fin = out.iter().filter(|s| s.fin).count();
        if linger.is_some() {
            assert_eq!((rst, fin), (1, 0), "SO_LINGER 0: RST, no FIN: {out:?}");
            let mut reason = None;
            for _ in 0..50 {
                r.step();
                if let Some(cl) = r.b.next_closed() {
                    reason = Some(cl.reason);
                    break;
                }
            }
            assert_eq!(reason, Some(CloseReason::Reset), "B sees the reset");
            let tcp_ext = &r.a.stack().core.mib.tcp_ext;
            assert_eq!(tcp_ext[blink_glue::netcore::snmp::TcpExtMib::TCPAbortOnData], 1);
            finish(&mut r, &[], &[l]);
        } else {
            assert_eq!((rst, fin), (0, 1), "default close: FIN, no RST: {out:?}");
            finish(&mut r, &[], &[s, l]);
        }
    }
}

/// SO_LINGER with a time: a close whose FIN is never acknowledged (the peer went silent) is
/// reset when the time runs out, not retried for minutes.
#[test]
fn linger_time_bounds_an_unacknowledged_close() {
    let mut r = rig();
    let (c, s, l) = r.connect(None, &[]);
    r.a.set_option(c, SockOpt::Linger(Some(Duration::from_secs(3))))
        .unwrap();
    assert_eq!(r.a.send(c, &[1u8; 1000]).unwrap(), 1000);
    let mark = r.log_len();
    let closed_at = r.now_ms();
    r.a.close(c).unwrap();
    r.run_a_only(2900);
    let out: Vec<Seg> = r.segs(mark).into_iter().filter(|s| s.dir == Dir::Out).collect();
    assert!(out.iter().any(|s| s.fin), "the FIN went out");
    assert!(!out.iter().any(|s| s.rst), "no RST before the linger time");
    assert_eq!(r.a.protocol_sockets(), 1, "still trying within the linger time");
    r.run_a_only(200);
    let rst: Vec<u64> = r
        .segs(mark)
        .iter()
        .filter(|s| s.dir == Dir::Out && s.rst)
        .map(|s| s.at_ms)
        .collect();
    assert_eq!(rst.len(), 1, "one RST when the linger time ran out");
    // The deadline counts from the jiffies of the close (refreshed once per poll, up to 1 ms
    // behind the clock).
    assert!(
        (closed_at + 2999..=closed_at + 3001).contains(&rst[0]),
        "at close + 3 s: {} vs {closed_at}",
        rst[0]
    );
    assert_eq!(r.a.protocol_sockets(), 0, "the orphan is gone");
    let tcp_ext = &r.a.stack().core.mib.tcp_ext;
    assert_eq!(tcp_ext[blink_glue::netcore::snmp::TcpExtMib::TCPAbortOnLinger], 1);
    finish(&mut r, &[], &[s, l]);
}

/// Both ends send 20 kB to each other; returns the largest payload each way (A's, B's).
fn exchange(r: &mut Rig, c: Socket, s: Socket) -> (usize, usize) {
    let mark = r.log_len();
    let data = vec![5u8; 20_000];
    let mut sent = 0;
    let mut back = 0;
    let mut got = 0;
    for _ in 0..2000 {
        if sent < data.len() {
            sent += r.a.send(c, &data[sent..]).unwrap_or(0);
        }
        if back < data.len() {
            back += r.b.send(s, &data[back..]).unwrap_or(0);
        }
        r.step();
        got += r.b_read(s);
        let mut buf = [0u8; 65536];
        while let Ok(n) = r.a.recv(c, &mut buf) {
            if n == 0 {
                break;
            }
        }
        if got == data.len() && back == data.len() {
            break;
        }
    }
    assert_eq!(got, data.len());
    r.steps(300);
    let segs = r.segs(mark);
    let out_max = segs
        .iter()
        .filter(|s| s.dir == Dir::Out)
        .map(|s| s.payload)
        .max()
        .unwrap();
    let in_max = segs
        .iter()
        .filter(|s| s.dir == Dir::In)
        .map(|s| s.payload)
        .max()
        .unwrap();
    (out_max, in_max)
}

/// TCP_MAXSEG before connect: the SYN announces it, and no segment either way is larger
/// (the peer keeps to the MSS announced, we to our own cap); the device's MTU would allow
/// 1460. On a connection it lowers the size from then on.
#[test]
fn maxseg_caps_the_mss_option_and_segment_size() {
    let mut r = rig();
    let c = r.a.tcp_socket(None).unwrap();
    r.a.set_option(c, SockOpt::MaxSeg(1000)).unwrap();
    let mark = r.log_len();
    let (c, s, l) = r.connect(Some(c), &[]);
    let segs = r.segs(mark);
    let syn = segs.iter().find(|s| s.dir == Dir::Out && s.syn).expect("SYN");
    assert_eq!(syn.mss, Some(1000), "the SYN announces TCP_MAXSEG");
    let synack = segs.iter().find(|s| s.dir == Dir::In && s.syn).expect("SYN-ACK");
    assert_eq!(synack.mss, Some(1460), "B announces its device's MSS");
    // Each segment carries the 12-byte timestamp option inside the MSS.
    let (out_max, in_max) = exchange(&mut r, c, s);
    assert_eq!(out_max, 1000 - 12, "A keeps to its TCP_MAXSEG");
    assert_eq!(in_max, 1000 - 12, "B keeps to the MSS A announced");
    let data = vec![5u8; 5000];
    r.a.set_option(c, SockOpt::MaxSeg(300)).unwrap();
    let mark = r.log_len();
    assert_eq!(r.a.send(c, &data[..5000]).unwrap(), 5000);
    r.steps(300);
    assert_eq!(r.b_read(s), 5000);
    let sizes = data_out(&r.segs(mark));
    assert_eq!(sizes.iter().max(), Some(&(300 - 12)), "{sizes:?}");
    finish(&mut r, &[c], &[s, l]);
}

/// SO_KEEPALIVE: after `idle` without traffic, probes every `interval`; answered probes keep
/// the connection; `count` unanswered ones reset it (closed: TimedOut).
#[test]
fn keepalive_probes_after_idle_and_gives_up_after_count() {
    let mut r = rig();
    let (c, s, l) = r.connect(None, &[]);
    let k = Keepalive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        count: 3,
    };
    r.a.set_option(c, SockOpt::KeepAlive(Some(k))).unwrap();
    let mark = r.log_len();
    let start = r.now_ms();
    // B answers: probes every `idle` (each answer resets the idle time).
    r.steps(25_000);
    let probes: Vec<u64> = r
        .segs(mark)
        .iter()
        .filter(|s| s.dir == Dir::Out && s.payload == 0 && !s.syn && !s.fin && !s.rst)
        .map(|s| s.at_ms - start)
        .collect();
    assert!(probes.len() >= 2, "probes while B answers: {probes:?}");
    assert!(
        (9_000..=10_500).contains(&probes[0]),
        "first probe after ~10 s idle: {probes:?}"
    );
    assert!(
        (9_000..=10_500).contains(&(probes[1] - probes[0])),
        "answered: the next after another idle period: {probes:?}"
    );
    assert_eq!(r.a.tcp_state(c).unwrap(), blink_glue::tcp::TcpState::Established);
    // B goes silent: 3 probes 2 s apart, then a reset.
    let mark = r.log_len();
    let silent = r.now_ms();
    let mut reason = None;
    for _ in 0..20_000 {
        r.a.periodic();
        r.vc.advance_ms(1);
        if let Some(cl) = r.a.next_closed() {
            reason = Some(cl.reason);
            break;
        }
    }
    assert_eq!(reason, Some(CloseReason::TimedOut));
    let out: Vec<Seg> = r.segs(mark).into_iter().filter(|s| s.dir == Dir::Out).collect();
    let probes: Vec<u64> = out.iter().filter(|s| !s.rst).map(|s| s.at_ms - silent).collect();
    assert_eq!(probes.len(), 3, "three unanswered probes: {probes:?}");
    assert!(
        (1_900..=2_100).contains(&(probes[2] - probes[1])),
        "2 s apart: {probes:?}"
    );
    assert!(out.last().unwrap().rst, "then a reset");
    // A's socket was released by next_closed; B still holds its end (it got the RST late).
    finish(&mut r, &[], &[s, l]);
}

/// IP_TOS and IP_TTL land in the IP header of TCP segments and UDP datagrams.
#[test]
fn tos_and_ttl_in_the_ip_header() {
    let mut r = rig();
    let c = r.a.tcp_socket(None).unwrap();
    r.a.set_option(c, SockOpt::Tos(0x2b)).unwrap();
    r.a.set_option(c, SockOpt::Ttl(7)).unwrap();
    let mark = r.log_len();
    let (c, s, l) = r.connect(Some(c), &[SockOpt::Tos(0x48), SockOpt::Ttl(9)]);
    assert_eq!(r.a.send(c, b"hello").unwrap(), 5);
    assert_eq!(r.b.send(s, b"hi").unwrap(), 2);
    r.steps(50);
    let out: Vec<Seg> = r.segs(mark).into_iter().filter(|s| s.dir == Dir::Out).collect();
    assert!(out.len() >= 3, "SYN, ACK, data");
    for seg in &out {
        assert_eq!(seg.ttl, 7, "{seg:?}");
        assert_eq!(seg.tos, 0x28, "TOS with TCP's ECN bits cleared: {seg:?}");
    }
    // B's listener had its own: its SYN-ACK and its connection's segments carry them.
    let inb: Vec<Seg> = r.segs(mark).into_iter().filter(|s| s.dir == Dir::In).collect();
    assert!(
        inb.iter().any(|s| s.syn) && inb.iter().any(|s| s.payload == 2),
        "{inb:?}"
    );
    assert!(inb.iter().all(|s| s.ttl == 9 && s.tos == 0x48), "{inb:?}");
    // A socket without them: the defaults.
    let mark = r.log_len();
    let d = r.a.tcp_connect(B_IP, PORT, None).unwrap();
    r.steps(50);
    let out: Vec<Seg> = r.segs(mark).into_iter().filter(|s| s.dir == Dir::Out).collect();
    assert!(out.iter().any(|s| s.syn), "{out:?}");
    assert!(out.iter().all(|s| s.ttl == 64 && s.tos == 0), "{out:?}");
    let d2 = r.b.accept(l).unwrap().expect("accepted");

    let u = r.a.udp_socket(None).unwrap();
    r.a.set_option(u, SockOpt::Tos(0xb8)).unwrap();
    r.a.set_option(u, SockOpt::Ttl(3)).unwrap();
    let mark = r.log_len();
    r.a.send_to(u, b"datagram", Some(SocketAddrV4::new(B_IP, 9))).unwrap();
    r.a.flush();
    let log = r.log.lock().unwrap();
    let udp: Vec<(u8, u8)> = log[mark..]
        .iter()
        .filter_map(|f| {
            let p = PacketHeaders::from_ethernet_slice(&f.bytes).ok()?;
            let (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(_))) = (p.net, p.transport) else {
                return None;
            };
            Some(((ip.dscp.value() << 2) | ip.ecn.value(), ip.time_to_live))
        })
        .collect();
    drop(log);
    assert_eq!(udp, vec![(0xb8, 3)], "UDP keeps the whole TOS byte");
    r.a.close(u).unwrap();
    finish(&mut r, &[c, d], &[s, d2, l]);
}

/// A SYN-ACK sent as a SYN cookie (the listener's SYN queue full) carries the listener's
/// IP_TOS and IP_TTL as a request sock's does, and the connection it completes keeps them.
#[test]
fn cookie_syn_ack_carries_the_listeners_tos_and_ttl() {
    let mut r = rig();
    // Backlog 1: the first SYN takes the only request sock, the second is answered with a
    // cookie.
    let l = r.b.tcp_listen(PORT, 1).unwrap();
    r.b.set_option(l, SockOpt::Tos(0x48)).unwrap();
    r.b.set_option(l, SockOpt::Ttl(9)).unwrap();
    let mark = r.log_len();
    let c1 = r.a.tcp_connect(B_IP, PORT, None).unwrap();
    let c2 = r.a.tcp_connect(B_IP, PORT, None).unwrap();
    let ext = |g: &Glue<()>| {
        g.stack()
            .core
            .mib
            .tcp_ext
            .get(blink_glue::netcore::snmp::TcpExtMib::SyncookiesSent)
    };
    let mut accepted = Vec::new();
    let mut sent = false;
    for i in 0..1000 {
        r.step();
        while r.b.next_listener().is_some() {}
        while let Ok(Some(s)) = r.b.accept(l) {
            accepted.push(s);
        }
        if accepted.len() == 2 {
            break;
        }
        // The cookie's ACK may have met the accept queue still full (the first connection
        // not yet accepted) and been dropped, as Linux drops it; A's first data segment
        // carries the cookie again.
        if i >= 20 && !sent {
            assert_eq!(r.a.send(c2, b"x").unwrap(), 1);
            sent = true;
        }
    }
    assert_eq!(ext(&r.b), 1, "one SYN-ACK was a cookie");
    assert_eq!(accepted.len(), 2, "both connections completed");
    let synacks: Vec<Seg> = r.segs(mark).into_iter().filter(|s| s.dir == Dir::In && s.syn).collect();
    assert_eq!(synacks.len(), 2, "{synacks:?}");
    assert!(synacks.iter().all(|s| s.ttl == 9 && s.tos == 0x48), "{synacks:?}");
    // The cookie's connection sends with them too.
    let mark = r.log_len();
    for &s in &accepted {
        assert_eq!(r.b.send(s, b"hi").unwrap(), 2);
    }
    r.steps(50);
    let data: Vec<Seg> = r
        .segs(mark)
        .into_iter()
        .filter(|s| s.dir == Dir::In && s.payload == 2)
        .collect();
    assert_eq!(data.len(), 2, "{data:?}");
    assert!(data.iter().all(|s| s.ttl == 9 && s.tos == 0x48), "{data:?}");
    let mut socks_b = accepted.clone();
    socks_b.push(l);
    finish(&mut r, &[c1, c2], &socks_b);
}

/// SO_SNDBUF bounds what a send takes; SO_RCVBUF bounds the window the receiver offers and
/// so what the sender may have outstanding while the receiver does not read.
#[test]
fn sndbuf_and_rcvbuf_bound_the_buffers_and_window() {
    let mut r = rig();
    let (c, s, l) = r.connect(None, &[SockOpt::RcvBuf(8192)]);
    r.a.set_option(c, SockOpt::SndBuf(16384)).unwrap();
    let data = vec![9u8; 100_000];
    let mark = r.log_len();
    let took = r.a.send(c, &data).unwrap();
    assert_eq!(took, 16384, "the send buffer takes SO_SNDBUF bytes");
    r.steps(2000); // B never reads
    let segs = r.segs(mark);
    let sent: usize = data_out(&segs).iter().sum();
    assert!(sent <= 8192, "no more than B's SO_RCVBUF in flight unread: {sent}");
    assert!(sent >= 4096, "but the window was used: {sent}");
    let max_win = segs
        .iter()
        .filter(|s| s.dir == Dir::In)
        .map(|s| s.window as usize)
        .max()
        .unwrap();
    assert!(max_win <= 8192, "B's window (unscaled: 8 KiB needs no scale) {max_win}");
    // Reading opens the window and the rest follows.
    let mut got = 0;
    for _ in 0..5000 {
        got += r.b_read(s);
        r.step();
        if got == took {
            break;
        }
    }
    assert_eq!(got, took);
    finish(&mut r, &[c], &[s, l]);
}

/// A listener's SO_RCVBUF is the window its SYN-ACK offers, with the scale it needs; a
/// client's, set before connect, is its SYN's.
#[test]
fn rcvbuf_before_connect_sets_the_syn_window_and_scale() {
    let mut r = rig();
    let c = r.a.tcp_socket(None).unwrap();
    r.a.set_option(c, SockOpt::RcvBuf(8192)).unwrap();
    let mark = r.log_len();
    let (c, s, l) = r.connect(Some(c), &[SockOpt::RcvBuf(4 << 20)]);
    let segs = r.segs(mark);
    let syn = segs.iter().find(|s| s.dir == Dir::Out && s.syn).unwrap();
    assert_eq!((syn.window, syn.wscale), (8192, Some(0)), "{syn:?}");
    let synack = segs.iter().find(|s| s.dir == Dir::In && s.syn).unwrap();
    assert_eq!((synack.window, synack.wscale), (65535, Some(7)), "{synack:?}");
    finish(&mut r, &[c], &[s, l]);
}

/// bind before connect: the SYN leaves from the chosen port; a port in use or an address not
/// ours is refused.
#[test]
fn bind_before_connect_uses_the_chosen_address_and_port() {
    let mut r = rig();
    let c = r.a.tcp_socket(None).unwrap();
    r.a.tcp_bind(c, SocketAddrV4::new(A_IP, 40_000)).unwrap();
    let mark = r.log_len();
    let (c, s, l) = r.connect(Some(c), &[]);
    let syn = r.segs(mark).into_iter().find(|s| s.dir == Dir::Out && s.syn).unwrap();
    assert_eq!(syn.sport, 40_000);
    assert_eq!(r.a.addrs(c).unwrap().0, SocketAddrV4::new(A_IP, 40_000));
    assert_eq!(r.b.addrs(s).unwrap().1, SocketAddrV4::new(A_IP, 40_000));

    let d = r.a.tcp_socket(None).unwrap();
    assert_eq!(
        r.a.tcp_bind(d, SocketAddrV4::new(A_IP, 40_000)),
        Err(GlueError::AddrInUse(40_000))
    );
    let other = Ipv4Addr::new(10, 0, 0, 9);
    assert_eq!(
        r.a.tcp_bind(d, SocketAddrV4::new(other, 40_001)),
        Err(GlueError::AddrNotAvailable(other))
    );
    // Port 0: the address is kept, the port is an ephemeral one.
    r.a.tcp_bind(d, SocketAddrV4::new(A_IP, 0)).unwrap();
    r.a.tcp_connect_sock(d, SocketAddrV4::new(B_IP, PORT)).unwrap();
    r.steps(50);
    let (local, _) = r.a.addrs(d).unwrap();
    assert_eq!(*local.ip(), A_IP);
    assert!((32768..=60999).contains(&local.port()), "{local}");
    let d2 = r.b.accept(l).unwrap().expect("second connection");
    // A closed socket that never connected just goes.
    let e = r.a.tcp_socket(None).unwrap();
    r.a.close(e).unwrap();
    finish(&mut r, &[c, d], &[s, d2, l]);
}

#[test]
fn invalid_values_are_refused_with_the_option_named() {
    let mut r = rig();
    let c = r.a.tcp_socket(None).unwrap();
    let bad = |e: Result<(), GlueError>, name: &str| match e {
        Err(GlueError::InvalidArgument(m)) => assert!(m.contains(name), "{m} names {name}"),
        other => panic!("{name}: {other:?}"),
    };
    bad(r.a.set_option(c, SockOpt::MaxSeg(87)), "TCP_MAXSEG");
    bad(r.a.set_option(c, SockOpt::MaxSeg(32768)), "TCP_MAXSEG");
    bad(r.a.set_option(c, SockOpt::Ttl(0)), "IP_TTL");
    bad(r.a.set_option(c, SockOpt::SndBuf(100)), "SO_SNDBUF");
    bad(r.a.set_option(c, SockOpt::RcvBuf(usize::MAX)), "SO_RCVBUF");
    let k = Keepalive {
        idle: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        count: 0,
    };
    bad(r.a.set_option(c, SockOpt::KeepAlive(Some(k))), "TCP_KEEPCNT");
    let k = Keepalive {
        idle: Duration::from_millis(10),
        count: 1,
        ..k
    };
    bad(r.a.set_option(c, SockOpt::KeepAlive(Some(k))), "TCP_KEEPIDLE");
    bad(
        r.a.set_option(c, SockOpt::Linger(Some(Duration::from_secs(100_000)))),
        "SO_LINGER",
    );
    // Valid bounds pass.
    r.a.set_option(c, SockOpt::MaxSeg(88)).unwrap();
    r.a.set_option(c, SockOpt::Ttl(255)).unwrap();
    let u = r.a.udp_socket(None).unwrap();
    bad(r.a.set_option(u, SockOpt::Ttl(0)), "IP_TTL");
    bad(r.a.set_option(u, SockOpt::RcvBuf(10)), "SO_RCVBUF");
    assert!(matches!(
        r.a.set_option(u, SockOpt::Cork(true)),
        Err(GlueError::NotSupported(_))
    ));
    r.a.close(u).unwrap();
    assert_eq!(r.a.set_option(c, SockOpt::NoDelay(true)), Ok(()));
    r.a.close(c).unwrap();
    assert_eq!(r.a.set_option(c, SockOpt::NoDelay(true)), Err(GlueError::BadHandle));
    finish(&mut r, &[], &[]);
}

/// TCP_MAXSEG on a listener: the SYN-ACK of every connection it accepts announces it, and its
/// connections send no larger segments.
#[test]
fn maxseg_on_a_listener_shapes_its_connections() {
    let mut r = rig();
    let mark = r.log_len();
    let (c, s, l) = r.connect(None, &[SockOpt::MaxSeg(600)]);
    let segs = r.segs(mark);
    let syn = segs.iter().find(|s| s.dir == Dir::Out && s.syn).expect("SYN");
    assert_eq!(syn.mss, Some(1460));
    let synack = segs.iter().find(|s| s.dir == Dir::In && s.syn).expect("SYN-ACK");
    assert_eq!(synack.mss, Some(600), "the listener's TCP_MAXSEG is the SYN-ACK's");
    let (out_max, in_max) = exchange(&mut r, c, s);
    assert_eq!(out_max, 600 - 12, "A keeps to the MSS B announced");
    assert_eq!(in_max, 600 - 12, "B's connection keeps to its listener's TCP_MAXSEG");
    finish(&mut r, &[c], &[s, l]);
}
