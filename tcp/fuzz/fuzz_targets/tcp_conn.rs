//! One TCP connection against arbitrary segment sequences, structure-aware.
//!
//! The harness opens the connection (passively: SYN in, SYN-ACK out, ACK in; or actively:
//! SYN out, SYN-ACK in), with the options, buffer sizes and TCP settings the first bytes
//! choose, then plays the peer: segments with flags, sequence and acknowledgement numbers at,
//! near or far from where the connection stands, windows (zero included), timestamps, SACK
//! blocks over what the stack sent, raw option bytes, lying data offsets, bad checksums,
//! payloads; the application sends, reads, shuts down and closes; ICMP errors about the
//! connection arrive; virtual time passes (retransmissions, delayed ACKs, persist probes,
//! keepalives, TIME-WAIT).
//!
//! Every payload byte either side sends is a function of its sequence number, so:
//! - what the application reads is exactly the peer's bytes at those sequence numbers;
//! - what the stack sends is exactly the application's bytes at those sequence numbers, and
//!   never beyond what the application wrote;
//! - the stack never acknowledges a byte the peer did not send;
//! - the socket's own bookkeeping holds after every step: snd_una <= snd_nxt, packets_out,
//!   lost_out, retrans_out (and sacked_out with SACK) are the counts of the retransmit
//!   queue's marks, sacked_out + lost_out <= packets_out (Linux's tcp_verify_left_out);
//! - `Tcp.InSegs` counts every segment, and once the application has closed and time has run
//!   out, no socket, request sock, TIME-WAIT sock or bound port is left, `CurrEstab` is 0 and
//!   every mbuf is back (plus the harness's IP-level invariants).
//!
//! A segment that lies about its header length turns option bytes into data, and a SYN may
//! open a new incarnation of the connection: after either, the checks that follow the peer's
//! sequence space (the bytes read, the acknowledgements) are off for the rest of the input.
#![no_main]

use blink_ipv4_fuzz::*;
use blink_netcore::snmp::TcpMib;
use blink_netcore::sock::SockHandle;
use blink_tcp::tcphdr::*;
use blink_tcp::*;
use libfuzzer_sys::fuzz_target;

const PORT: u16 = 80;
const PEER_PORT: u16 = 40_000;

/// The peer's byte at sequence number `s`.
fn pat_peer(s: u32) -> u8 {
    (s.wrapping_mul(0x9E37_79B1) >> 24) as u8
}

/// The application's byte at stream offset `k`.
fn pat_app(k: u32) -> u8 {
    (k.wrapping_mul(0x85EB_CA6B) >> 24) as u8 ^ 0x5a
}

/// Sequence space the peer has covered (SYN, data, FIN), relative to its ISN.
#[derive(Default)]
struct Cover {
    ranges: Vec<(u32, u32)>,
}

impl Cover {
    fn add(&mut self, start: u32, end: u32) {
        // Relative offsets; a range starting "before" the ISN counts from 0.
        let (s, e) = (start as i32 as i64, end as i32 as i64);
        let s = s.max(0);
        if e > s {
            self.ranges.push((s as u32, e as u32));
        }
    }
    /// End of the contiguous coverage from 0.
    fn prefix(&mut self) -> u32 {
        self.ranges.sort_unstable();
        let mut end = 0u32;
        for &(s, e) in &self.ranges {
            if s > end {
                break;
            }
            end = end.max(e);
        }
        end
    }
}

struct Peer {
    h: Host,
    sock: Option<SockHandle>,
    listener: Option<SockHandle>,
    lport: u16,
    /// The peer's ISN and next sequence number.
    isn: u32,
    nxt: u32,
    cover: Cover,
    /// The stack's ISN, the highest sequence number it sent, its last TS value.
    s_isn: u32,
    s_nxt: u32,
    s_tsval: u32,
    /// The stack's last acknowledgement number: where it expects the peer's next byte.
    s_ack: u32,
    ts: bool,
    /// Our TS clock.
    tsval: u32,
    /// Bytes the application wrote and read.
    written: u32,
    read: u32,
    /// A SYN after the handshake may start another incarnation: stop checking sequence
    /// numbers and data against this one.
    reincarnated: bool,
    /// A segment lied about its header length: the stack took option bytes for data (or data
    /// for options), so the peer's stream no longer follows the pattern.
    tainted: bool,
    segs_in: u64,
    buf: Vec<u8>,
}

impl Peer {
    fn seg(&mut self, flags: u8, seq: u32, ack: u32, win: u16, opts: &[u8], plen: usize, doff: Option<u8>, bad: bool) {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&PEER_PORT.to_be_bytes());
        t[2..4].copy_from_slice(&self.lport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[13] = flags;
        t[14..16].copy_from_slice(&win.to_be_bytes());
        let mut o = opts.to_vec();
        o.resize(o.len().next_multiple_of(4).min(40), 0);
        t.extend_from_slice(&o);
        t[12] = doff.unwrap_or((t.len() / 4) as u8) << 4;
        let data_seq = seq.wrapping_add((flags & TCPHDR_SYN != 0) as u32);
        t.extend((0..plen as u32).map(|i| pat_peer(data_seq.wrapping_add(i))));
        let c = l4_csum(PEER_IP, STACK_IP, 6, &t);
        t[16..18].copy_from_slice(&(if bad { c ^ 0x0101 } else { c }).to_be_bytes());
        if flags & TCPHDR_RST == 0 {
            let end = data_seq
                .wrapping_add(plen as u32)
                .wrapping_add((flags & TCPHDR_FIN != 0) as u32);
            self.cover.add(seq.wrapping_sub(self.isn), end.wrapping_sub(self.isn));
        }
        let ip = IpSpec::new(6).build(&t);
        // Counted only when the harness found a buffer for it (under memory pressure the
        // stack may hold them all).
        if self.h.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ip)) {
            self.segs_in += 1;
        }
        self.learn();
    }

    fn ts_opt(&self) -> Vec<u8> {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&self.tsval.to_be_bytes());
        o.extend_from_slice(&self.s_tsval.to_be_bytes());
        o
    }

    /// Read what the stack sent: learn its sequence numbers and check them.
    fn learn(&mut self) {
        for f in std::mem::take(&mut self.h.sent) {
            let Some((iph, t)) = ip_of(&f) else { continue };
            if iph[9] != 6 || t.len() < 20 {
                continue;
            }
            let th = TcpHdr::new_checked(t).expect("stack sent a bad TCP header");
            if th.dst_port() != PEER_PORT {
                continue;
            }
            let o = TcpOptions::parse(th.options(), th.syn());
            if let Some((v, _)) = o.ts {
                self.s_tsval = v;
            }
            if th.syn() {
                if self.lport == 0 {
                    self.lport = th.src_port();
                }
                if self.s_nxt == 0 && self.s_isn == 0 {
                    self.s_isn = th.seq();
                    self.s_nxt = th.seq().wrapping_add(1);
                } else if th.seq() != self.s_isn {
                    self.reincarnated = true;
                }
            }
            if self.reincarnated || th.rst() {
                continue;
            }
            let data = th.payload();
            let dseq = th.seq().wrapping_add(th.syn() as u32);
            // Data only from what the application wrote, each byte in its place.
            for (i, &b) in data.iter().enumerate() {
                let k = dseq.wrapping_add(i as u32).wrapping_sub(self.s_isn.wrapping_add(1));
                assert!(k < self.written, "stack sent byte {k} the application never wrote");
                assert_eq!(b, pat_app(k), "stack sent a wrong byte at stream offset {k}");
            }
            let end = dseq.wrapping_add(data.len() as u32).wrapping_add(th.fin() as u32);
            assert!(
                !after(end, self.s_isn.wrapping_add(2).wrapping_add(self.written)),
                "stack sent past what the application wrote (+FIN)"
            );
            if after(end, self.s_nxt) {
                self.s_nxt = end;
            }
            if th.ack() {
                self.s_ack = th.ack_seq();
            }
            // Never acknowledge what the peer did not send.
            if th.ack() && self.nxt != self.isn && !self.tainted {
                let rel = th.ack_seq().wrapping_sub(self.isn);
                let covered = self.cover.prefix();
                assert!(
                    rel <= covered,
                    "stack acknowledged {rel} bytes of the peer's sequence space, the peer covered {covered}"
                );
            }
        }
    }

    /// The socket's own bookkeeping (Linux's WARN_ONs in tcp_verify_left_out and friends).
    fn check_sock(&mut self) {
        let Some(s) = self.sock else { return };
        let _ = with_tcp(&mut self.h.stack, |t, _| {
            if let Some(sk) = t.socks.get(s) {
                assert!(!after(sk.snd_una, sk.snd_nxt), "snd_una after snd_nxt");
                // The scoreboard counters are the counts of the retransmit queue's marks.
                let (mut sacked, mut lost, mut retrans) = (0, 0, 0);
                for skb in &sk.rtx_queue {
                    let c = skb.cb::<blink_tcp::tcp::TcpSkbCb>();
                    sacked += (c.sacked & blink_tcp::tcp::TCPCB_SACKED_ACKED != 0) as u32;
                    lost += (c.sacked & blink_tcp::tcp::TCPCB_LOST != 0) as u32;
                    retrans += (c.sacked & blink_tcp::tcp::TCPCB_SACKED_RETRANS != 0) as u32;
                }
                assert_eq!(
                    (sk.packets_out, sk.lost_out, sk.retrans_out),
                    (sk.rtx_queue.len() as u32, lost, retrans),
                    "(packets_out, lost_out, retrans_out) against the retransmit queue's marks"
                );
                if sk.rx_opt.sack_ok {
                    assert_eq!(sk.sacked_out, sacked, "sacked_out against the SACK marks");
                }
                // Linux: tcp_verify_left_out() (without SACK, sacked_out counts duplicate
                // ACKs, limited by tcp_limit_reno_sacked() to what is not marked lost).
                assert!(
                    sk.sacked_out + sk.lost_out <= sk.packets_out,
                    "left_out > packets_out: sacked_out {} lost_out {} packets_out {} (sack {})",
                    sk.sacked_out,
                    sk.lost_out,
                    sk.packets_out,
                    sk.rx_opt.sack_ok
                );
            }
        });
    }

    fn recv(&mut self) {
        let Some(s) = self.sock else { return };
        loop {
            match tcp_recv(&mut self.h.stack, s, &mut self.buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for i in 0..n {
                        let want = pat_peer(self.isn.wrapping_add(1).wrapping_add(self.read));
                        assert!(
                            self.tainted || self.buf[i] == want,
                            "application read a wrong byte at offset {}: {} instead of {want}",
                            self.read,
                            self.buf[i]
                        );
                        self.read += 1;
                    }
                }
            }
        }
        self.h.poll();
        self.learn();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let c1 = inp.u8();
    let c2 = inp.u8();
    let mut cfg = TcpConfig {
        timewait_ms: 2000,
        fin_timeout_ms: 5000,
        ..Default::default()
    };
    if c1 & 0x10 != 0 {
        cfg.sndbuf = 8 * 1024;
        cfg.rcvbuf = 4 * 1024;
    }
    cfg.sack = c1 & 0x20 == 0;
    cfg.timestamps = c1 & 0x40 == 0;
    cfg.window_scaling = c1 & 0x80 == 0;
    if c2 & 1 != 0 {
        cfg.congestion = "reno".into();
    }
    cfg.nodelay = c2 & 2 != 0;
    if c2 & 4 != 0 {
        cfg.keepalive = Some((5000, 1000, 3));
    }
    cfg.tlp = c2 & 8 == 0;
    cfg.syncookies = c2 & 16 == 0;
    let passive = c1 & 1 == 0;
    // The peer's SYN options.
    let (p_ts, p_sack, p_ws, p_mss) = (c1 & 2 == 0, c1 & 4 == 0, c1 & 8 == 0, 536 + (inp.u16() % 9000));
    let p_wscale = inp.u8() % 16;
    let isn = inp.u32();
    let opts = HostOpts {
        probes: Vec::new(),
        ..Default::default()
    };
    let tcfg = cfg.clone();
    let mut h = Host::with_setup(opts, move |st| tcp_init(st, tcfg));
    h.keep_sent = true;
    let mut p = Peer {
        h,
        sock: None,
        listener: None,
        lport: if passive { PORT } else { 0 },
        isn,
        nxt: isn,
        cover: Cover::default(),
        s_isn: 0,
        s_nxt: 0,
        s_tsval: 0,
        s_ack: 0,
        ts: false,
        tsval: 1000,
        written: 0,
        read: 0,
        reincarnated: false,
        tainted: false,
        segs_in: 0,
        buf: vec![0u8; 65536],
    };
    let mut syn_opts = Vec::new();
    syn_opts.extend_from_slice(&[2, 4]);
    syn_opts.extend_from_slice(&p_mss.to_be_bytes());
    if p_sack {
        syn_opts.extend_from_slice(&[1, 1, 4, 2]);
    }
    if p_ts {
        syn_opts.extend_from_slice(&[1, 1, 8, 10]);
        syn_opts.extend_from_slice(&p.tsval.to_be_bytes());
        syn_opts.extend_from_slice(&0u32.to_be_bytes());
    }
    if p_ws {
        syn_opts.extend_from_slice(&[1, 3, 3, p_wscale]);
    }
    // The handshake.
    if passive {
        p.listener = Some(tcp_listen(&mut p.h.stack, PORT, 8).expect("listen"));
        p.seg(TCPHDR_SYN, isn, 0, 65535, &syn_opts, 0, None, false);
        assert!(p.s_nxt != 0 || p.s_isn != 0, "no SYN-ACK");
        p.nxt = isn.wrapping_add(1);
        p.ts = p_ts && cfg.timestamps;
        let o = if p.ts { p.ts_opt() } else { Vec::new() };
        p.seg(TCPHDR_ACK, p.nxt, p.s_nxt, 65535, &o, 0, None, false);
        p.sock = tcp_accept(&mut p.h.stack, p.listener.unwrap()).expect("accept");
        assert!(p.sock.is_some(), "handshake did not complete");
    } else {
        p.sock = Some(tcp_connect(&mut p.h.stack, PEER_IP, PEER_PORT).expect("connect"));
        p.h.poll();
        p.learn();
        assert!(p.lport != 0, "no SYN sent");
        // The peer listens on PEER_PORT: swap the roles of the ports in `seg`.
        p.ts = p_ts && cfg.timestamps;
        p.seg(TCPHDR_SYN | TCPHDR_ACK, isn, p.s_nxt, 65535, &syn_opts, 0, None, false);
        p.nxt = isn.wrapping_add(1);
    }
    assert_eq!(tcp_state(&mut p.h.stack, p.sock.unwrap()), Ok(TcpState::Established));
    // The fuzzer's steps.
    let mut steps = 0;
    while !inp.is_empty() && steps < 64 {
        steps += 1;
        match inp.u8() % 16 {
            0..=6 => {
                let flags = match inp.u8() % 16 {
                    0..=4 => TCPHDR_ACK,
                    5..=7 => TCPHDR_ACK | TCPHDR_PSH,
                    8 => TCPHDR_ACK | TCPHDR_FIN,
                    9 => TCPHDR_RST,
                    10 => TCPHDR_RST | TCPHDR_ACK,
                    11 => TCPHDR_SYN,
                    12 => TCPHDR_SYN | TCPHDR_ACK,
                    13 => TCPHDR_FIN,
                    14 => 0,
                    _ => inp.u8(),
                };
                let sm = inp.u8() % 8;
                let seq = match sm {
                    0..=3 => p.nxt,
                    4 => p.nxt.wrapping_add(inp.u16() as u32 % 8192),
                    5 => p.nxt.wrapping_sub(inp.u16() as u32 % 8192),
                    6 => inp.u32(),
                    _ => p.isn.wrapping_add(inp.u16() as u32),
                };
                let ack = match inp.u8() % 8 {
                    0..=4 => p.s_nxt,
                    5 => p.s_nxt.wrapping_add((inp.u16() as i16) as u32),
                    6 => inp.u32(),
                    _ => p.s_isn.wrapping_add(1),
                };
                let win = match inp.u8() % 8 {
                    0..=5 => 65535,
                    6 => 0,
                    _ => inp.u16(),
                };
                let opts = match inp.u8() % 8 {
                    0..=3 if p.ts => p.ts_opt(),
                    4 => {
                        // SACK blocks over what the stack sent.
                        let mut o = if p.ts { p.ts_opt() } else { Vec::new() };
                        let n = 1 + inp.u8() as u32 % 3;
                        o.extend_from_slice(&[1, 1, 5, 2 + 8 * n as u8]);
                        let span = p.s_nxt.wrapping_sub(p.s_isn).max(1);
                        for _ in 0..n {
                            let a = p.s_isn.wrapping_add(inp.u16() as u32 % span);
                            let b = a.wrapping_add(inp.u16() as u32 % 4096);
                            o.extend_from_slice(&a.to_be_bytes());
                            o.extend_from_slice(&b.to_be_bytes());
                        }
                        o.truncate(40);
                        o
                    }
                    5 => {
                        let n = inp.u8() as usize % 41;
                        inp.bytes(n).to_vec()
                    }
                    6 => {
                        // A TS from the past or the future.
                        let mut o = vec![1, 1, 8, 10];
                        o.extend_from_slice(&inp.u32().to_be_bytes());
                        o.extend_from_slice(&inp.u32().to_be_bytes());
                        o
                    }
                    _ => Vec::new(),
                };
                let plen = match inp.u8() % 8 {
                    0..=3 => 0,
                    4..=6 => inp.u16() as usize % 1460,
                    _ => inp.u16() as usize % 4000,
                };
                let doff = if inp.u8() == 0xd0 { Some(inp.u8() % 16) } else { None };
                let bad = inp.u8() == 0xbd;
                p.tsval = p.tsval.wrapping_add(1);
                if doff.is_some() {
                    p.tainted = true;
                }
                if flags & TCPHDR_SYN != 0 {
                    // A SYN may open a new incarnation of the 4-tuple (after a reset, or
                    // through TIME-WAIT), with its own sequence space (and, with the same
                    // virtual time, possibly the same ISN): stop following this one.
                    p.reincarnated = true;
                }
                p.seg(flags, seq, ack, win, &opts, plen, doff, bad);
                if sm <= 3 && flags & TCPHDR_RST == 0 && doff.is_none() && !bad {
                    p.nxt = seq
                        .wrapping_add(plen as u32)
                        .wrapping_add((flags & TCPHDR_SYN != 0) as u32)
                        .wrapping_add((flags & TCPHDR_FIN != 0) as u32);
                }
            }
            7 | 8 => {
                if let Some(s) = p.sock {
                    let n = inp.u16() as usize % 20_000;
                    let data: Vec<u8> = (0..n as u32).map(|i| pat_app(p.written.wrapping_add(i))).collect();
                    if let Ok(k) = tcp_send(&mut p.h.stack, s, &data) {
                        p.written += k as u32;
                    }
                    p.h.poll();
                    p.learn();
                }
            }
            9 => p.recv(),
            10 => {
                if let Some(s) = p.sock {
                    let _ = tcp_shutdown(&mut p.h.stack, s);
                    p.h.poll();
                    p.learn();
                }
            }
            11 => {
                if let Some(s) = p.sock.take() {
                    let _ = tcp_close(&mut p.h.stack, s);
                    p.h.poll();
                    p.learn();
                }
            }
            12 | 13 => {
                let ms = if inp.bool() { inp.u8() as u64 } else { inp.u16() as u64 };
                p.tsval = p.tsval.wrapping_add(ms as u32);
                p.h.advance(ms);
                p.learn();
            }
            14 => {
                // An ICMP error about the connection: fragmentation needed (path MTU) or
                // unreachable, quoting a segment in flight or not.
                let (ty, code) = inp.pick(&[(3u8, 4u8), (3, 4), (3, 3), (3, 1), (11, 0), (12, 0)]);
                let mtu = inp.u16();
                let seq = if inp.bool() { p.s_nxt.wrapping_sub(1) } else { inp.u32() };
                let mut q = IpSpec::new(6);
                (q.src, q.dst) = (STACK_IP, PEER_IP);
                q.tot_len = Some(1500);
                let mut th = Vec::new();
                th.extend_from_slice(&p.lport.to_be_bytes());
                th.extend_from_slice(&PEER_PORT.to_be_bytes());
                th.extend_from_slice(&seq.to_be_bytes());
                let ip = IpSpec::new(1).build(&icmp_msg(ty, code, mtu as u32, &q.build(&th)));
                p.h.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ip));
                p.learn();
            }
            _ => {
                if let Some(l) = p.listener {
                    while let Ok(Some(s)) = tcp_accept(&mut p.h.stack, l) {
                        let _ = tcp_close(&mut p.h.stack, s);
                    }
                }
                p.h.poll();
                p.learn();
            }
        }
        p.check_sock();
    }
    // The end: read what is left, close, and let every timer run out.
    p.recv();
    if let Some(s) = p.sock.take() {
        let _ = tcp_close(&mut p.h.stack, s);
    }
    if let Some(l) = p.listener.take() {
        while let Ok(Some(s)) = tcp_accept(&mut p.h.stack, l) {
            let _ = tcp_close(&mut p.h.stack, s);
        }
        let _ = tcp_close(&mut p.h.stack, l);
    }
    let left = |h: &mut Host| {
        with_tcp(&mut h.stack, |t, _| {
            (t.socks.len(), t.reqs.len(), t.tw.len(), t.tables.bound_ports())
        })
        .unwrap()
    };
    // The peer closes too (FIN where the stack expects it, acknowledging all it sent), so
    // most inputs end in a few virtual seconds; time spent costs (the wheel ticks each ms).
    for _ in 0..8 {
        if left(&mut p.h) == (0, 0, 0, 0) || p.reincarnated {
            break;
        }
        let o = if p.ts { p.ts_opt() } else { Vec::new() };
        p.tsval = p.tsval.wrapping_add(1);
        p.seg(TCPHDR_FIN | TCPHDR_ACK, p.s_ack, p.s_nxt, 65535, &o, 0, None, false);
        for _ in 0..6 {
            p.h.advance(500);
            p.learn();
        }
    }
    for _ in 0..400 {
        if left(&mut p.h) == (0, 0, 0, 0) {
            break;
        }
        // Big steps: each poll runs whatever timer is due (a retransmission re-arms for
        // later, so the 15 retries up to 120 s apart take a poll each).
        p.h.clock.advance_ms(10_000);
        p.h.poll();
        p.learn();
    }
    let states = with_tcp(&mut p.h.stack, |t, st| {
        t.socks
            .handles()
            .filter_map(|h| t.socks.get(h))
            .map(|s| {
                format!(
                    "{:?} orphan {} una {} nxt {} write_seq {} snd_wnd {} probe0 {} retransmits {} packets_out {} \
                     timers rtx {:?} ka {:?}",
                    s.state,
                    s.orphan,
                    s.snd_una.wrapping_sub(s.iss),
                    s.snd_nxt.wrapping_sub(s.iss),
                    s.write_seq.wrapping_sub(s.iss),
                    s.snd_wnd,
                    s.probe0,
                    s.retransmits,
                    s.packets_out,
                    s.retransmit_timer.map(|t| st.timers.timer_pending(t)),
                    s.keepalive_timer.map(|t| st.timers.timer_pending(t)),
                )
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(
        left(&mut p.h),
        (0, 0, 0, 0),
        "sockets, request socks, TIME-WAIT socks, ports left: {states:?}"
    );
    let mib = p.h.mib();
    assert_eq!(mib.tcp.get(TcpMib::CurrEstab), 0, "CurrEstab with no connection left");
    assert_eq!(
        mib.tcp.get(TcpMib::InSegs),
        p.segs_in,
        "Tcp.InSegs counts every segment: {:?}",
        mib.nonzero()
    );
    p.h.settle_and_check();
});
