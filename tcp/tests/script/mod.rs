//! packetdrill-style scripts: one blink stack (10.0.0.2) on one end of a `wire_pair`, the test
//! playing the remote host 10.0.0.1 on the other end, under a `VirtualClock` that advances 1 ms
//! at a time with a poll after every step.
//!
//! One command per line, `TIME COMMAND`; `#` starts a comment. TIME is seconds of virtual time,
//! absolute (`0.3`) or relative to the previous line (`+0.04`).
//!
//! Segments, as in packetdrill:
//! - `< FLAGS SEQ:END(LEN) [ack N] [win N] [<OPTS>]` injects a segment. SEQ is the remote's own
//!   number; ack and SACK blocks are relative to the stack's ISN; win defaults to 65535 and
//!   options to none; `TS ecr *` echoes the stack's latest TS val (raw).
//! - `> FLAGS SEQ:END(LEN) [ack N] win N <OPTS>` expects the next segment the stack sends,
//!   within ±`TOL_MS` of TIME. SEQ is relative to the stack's ISN (learned from its SYN or
//!   SYN-ACK; 0 before that); ack and SACK blocks are absolute.
//! - `urg N` (`<` lines) sets the urgent pointer.
//! - FLAGS: `S F R P U` and `.` for ACK; `-` for none. OPTS: comma-separated `mss N`, `sackOK`,
//!   `TS val N ecr N`, `nop`, `eol`, `wscale N`, `sack A:B C:D ...`, and `kind K [HEX]` for
//!   any other kind (K decimal, its data bytes in hex).
//!
//! Strictness of `>` lines: everything the stack sent is compared, and a script opts out of
//! a field only by saying so.
//! - `win` and the options must be on every `>` line (a line without them does not parse):
//!   `win *` takes any window; `<>` is no options, `<*>` any options; `*` in place of one
//!   value (`mss *`, `wscale *`, `TS val * ecr *`, `TS val N ecr *`) takes any value of
//!   that option, which must still be there. Options compare in order, and all of them:
//!   one sent and not listed, or listed and not sent, fails. Padding (`nop`, `eol`) is not
//!   compared: scripts may write it as Linux lays it out, and say nothing by omitting it.
//! - `TS val N`: N is the stack's timestamp clock in ms on this connection, which blink
//!   runs at 1 kHz from a random per-connection offset (Linux: tcp_time_stamp_ts +
//!   tsoffset); the harness learns the offset from the connection's first TS val (so that
//!   segment's N is its send time) and every later N is checked against the raw value:
//!   N is when the stack stamped the segment, in ms of virtual time (`0.3 > ... TS val
//!   300`). Failure messages print TS vals in these terms.
//! - `TS ecr N`: the raw value the stack must echo: the TS val of the remote's segment it
//!   should have recorded (RFC 7323 TS.Recent; mostly the remote's last), as the script's
//!   `<` lines state it. `ecr *` opts out.
//! - `ack N` must be on every `>` line with the ACK flag (`ack *` takes any); without the
//!   flag the field must be 0 unless the line states otherwise.
//! - Payload bytes are checked against `pattern` at their sequence numbers.
//! - IPv4, on every segment, with no opt-out (see `Script::check_ip`): IHL 5, TTL
//!   `Script::ip_ttl` (the stack's default 64; a test that sets IP_TTL sets it too), TOS
//!   `Script::ip_tos`, DF set and not a fragment, and the ID as Linux chooses it: 0 on a
//!   SYN-ACK of a request sock (and on segments sent without a socket), else one more than
//!   the connection's previous segment's. IPv4 and TCP checksums are verified; a malformed option fails the line
//!   whatever it expected.
//!
//! A tool for writing scripts: run a test with `BLINK_SCRIPT_FILL=FILE` and `>` lines that
//! leave out win or options, or write `TS val *`, are accepted and written to FILE as
//! `line \x1f line completed with what the stack sent` (how the scripts were turned strict:
//! a completed line says what blink does, not what it should do, so read each one).
//!
//! Application: `socket listen PORT [backlog N]`, `connect IP:PORT`, `accept` / `accept none`,
//! `write N [=> M]` (M bytes taken, default N), `read N` (drains; N bytes in all), `read eof`,
//! `read none`, `read error KIND`, `shutdown`, `close`, `close listener`, `expect_state NAME`
//! (as `ss` prints it, or `gone`), `expect_error KIND|none` (KIND: refused, reset, timeout,
//! aborted), `expect_counter Section.Name N`, `ports LOCAL REMOTE` (switch connection).
//!
//! Payload bytes are a function of their sequence number (`pattern`), so what the application
//! reads and what the stack sends are checked byte for byte. Sent segments are read without
//! blink's code: etherparse for the IPv4 and TCP headers and checksums, the harness's own
//! `segment::decode_options` for the TCP options.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::net::Ipv4Addr;

use blink_ipv4::{Ipv4Cidr, Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::{Burst, NetDevice};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::sock::SockHandle;
use blink_netcore::{EthAddr, Mempool, MempoolCache, MempoolConfig};
use blink_tcp::*;
use etherparse::{IpNumber, Ipv4Header, TcpSlice};

pub mod segment;
use segment::*;

/// See [`Script::tamper`].
pub type Tamper = Box<dyn FnMut(&mut Vec<u8>)>;

pub const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const STACK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const REMOTE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// How far (ms) a segment may be from its scripted time.
pub const TOL_MS: u64 = 5;

/// The byte at sequence number `s`.
pub fn pattern(s: u32) -> u8 {
    (s.wrapping_mul(0x9E37_79B1) >> 24) as u8
}

/// Per-connection state, keyed by the remote port.
#[derive(Clone, Copy, Default)]
struct Conn {
    stack_isn: Option<u32>,
    /// The remote's SYN was injected: `rd_seq` is set.
    synced: bool,
    /// Sequence number of the next byte the application reads.
    rd_seq: u32,
    /// Stack-relative sequence number of the next byte the application writes.
    wr_rel: u32,
    /// The stack's timestamp clock minus virtual time (ms) on this connection, learned from
    /// the first TS val it sent: blink stamps `jiffies + ts_offset` (Linux: tcp_time_stamp_ts
    /// plus tp->tsoffset), so every later TS val is this plus its send time.
    ts_off: Option<u32>,
    /// The stack sent a SYN on this connection (active or simultaneous open): its SYN-ACK,
    /// if any, comes from the socket, not from a request sock.
    active: bool,
    /// The IP ID of the connection's last segment sent from its socket.
    ip_id: Option<u16>,
}

pub struct Script {
    pub stack: Stack,
    pub clock: VirtualClock,
    pub pool: Mempool,
    peer: WireDev,
    cache: MempoolCache,
    baseline: usize,
    /// Sent by the stack, not matched yet: (ms, frame).
    out: VecDeque<(u64, Vec<u8>)>,
    conns: HashMap<u16, Conn>,
    lport: u16,
    rport: u16,
    pub listener: Option<SockHandle>,
    pub sock: Option<SockHandle>,
    /// Script time of the previous line, ms.
    t: u64,
    last_tsval: Option<u32>,
    /// TCP's seed (`TcpConfig::seed`), named when a line fails so the run can be replayed.
    seed: Option<u64>,
    /// The IPv4 TTL every segment must carry: the stack's `default_ttl` (64, Linux's
    /// net.ipv4.ip_default_ttl) unless a test sets a socket's TTL and changes this to match.
    pub ip_ttl: u8,
    /// The IPv4 TOS byte every segment must carry (0 unless a test sets IP_TOS).
    pub ip_tos: u8,
    /// `BLINK_SCRIPT_FILL`: a file to which `>` lines missing win/options (or with `TS val
    /// *`) are written completed with what the stack sent, instead of failing to parse; the
    /// tool that turned the scripts strict (see the header).
    fill: Option<String>,
    /// The script line being run, as written (for `fill`).
    raw: String,
    /// Self-tests only: rewrites each frame the stack sends before the harness reads it, to
    /// play a stack that gets something wrong (see [`segment::fix_checksums`]).
    pub tamper: Option<Tamper>,
}

/// Run `script` against a fresh stack with TCP configured by `cfg`; panics at the first line
/// that does not hold, naming it and what was seen instead.
pub fn run(cfg: TcpConfig, script: &str) -> Script {
    let mut s = Script::new(cfg);
    s.run(script);
    s
}

fn err(e: impl Display) -> String {
    e.to_string()
}

impl Script {
    pub fn new(cfg: TcpConfig) -> Script {
        let seed = cfg.seed;
        let pool = Mempool::new(&MempoolConfig {
            name: "script".into(),
            n: 4096,
            cache_size: 32,
            ..Default::default()
        })
        .expect("pool");
        let clock = VirtualClock::new();
        let macs = (EthAddr(STACK_MAC), EthAddr(REMOTE_MAC));
        let (a, peer) = wire_pair(("blink0", "remote0"), macs, &WireConfig::default());
        let mut stack = Stack::new(0, 1, Clock::virtual_clock(&clock), &pool, StackConfig::default());
        let dev = stack.add_device(Box::new(a), 0);
        stack.add_addr(dev, Ipv4Cidr::new(STACK_IP, 24).unwrap()).unwrap();
        blink_ipv4::neighbour::neigh_add_static(&mut stack, REMOTE_IP, EthAddr(REMOTE_MAC), dev);
        tcp_init(&mut stack, cfg);
        let cache = pool.cache();
        let (out, conns) = (VecDeque::new(), HashMap::new());
        let mut s = Script {
            stack,
            clock,
            pool,
            peer,
            cache,
            baseline: 0,
            out,
            conns,
            lport: 0,
            rport: 40000,
            listener: None,
            sock: None,
            t: 0,
            last_tsval: None,
            seed,
            ip_ttl: StackConfig::default().default_ttl,
            ip_tos: 0,
            fill: std::env::var("BLINK_SCRIPT_FILL").ok(),
            raw: String::new(),
            tamper: None,
        };
        s.stack.flush_tx();
        s.collect();
        s.out.clear(); // the gratuitous ARP
        s.baseline = s.pool.in_use();
        s
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ns() / 1_000_000
    }

    pub fn run(&mut self, script: &str) {
        for (i, raw) in script.lines().enumerate() {
            let text = raw.split('#').next().unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            self.raw = raw.to_string();
            if let Err(e) = self.exec(text) {
                let now = self.now_ms();
                panic!(
                    "script line {}: `{text}`\n    {e}\n    (virtual time {now} ms, TCP seed {:?})",
                    i + 1,
                    self.seed
                );
            }
        }
        self.stack.flush_tx();
        self.collect();
        if let Err(e) = self.no_unexpected() {
            panic!("after the last line: {e} (TCP seed {:?})", self.seed);
        }
    }

    fn exec(&mut self, text: &str) -> Result<(), String> {
        let (ts, rest) = text.split_once(char::is_whitespace).ok_or("no command")?;
        let secs: f64 = ts
            .trim_start_matches('+')
            .parse()
            .map_err(|_| format!("bad time `{ts}`"))?;
        let ms = (secs * 1000.0).round() as u64;
        self.t = if ts.starts_with('+') { self.t + ms } else { ms };
        let rest = rest.trim();
        if let Some(seg) = rest.strip_prefix('>') {
            let want = parse_seg(seg)?;
            if self.fill.is_none() {
                if want.win.is_none() {
                    return Err("a `>` line must state `win N` (or `win *`)".into());
                }
                if want.flags & TCPHDR_ACK != 0 && want.ack.is_none() {
                    return Err("a `>` line with `.` must state `ack N` (or `ack *`)".into());
                }
                if want.opts == Opts::Missing {
                    return Err("a `>` line must state its options: `<...>`, `<>` for none, `<*>` for any".into());
                }
            }
            return self.expect(&want);
        }
        self.advance_to(self.t);
        self.no_unexpected()?;
        match rest.strip_prefix('<') {
            Some(seg) => self.inject(&parse_seg(seg)?)?,
            None => self.command(rest)?,
        }
        self.stack.flush_tx();
        self.collect();
        Ok(())
    }

    /// Let time pass 1 ms at a time until `t` ms, polling after each step.
    pub fn advance_to(&mut self, t: u64) {
        while self.now_ms() < t {
            self.step();
        }
    }

    fn step(&mut self) {
        self.clock.advance_ms(1);
        self.stack.poll();
        self.collect();
    }

    fn collect(&mut self) {
        let mut burst = Burst::new();
        while self.peer.rx_burst(0, &mut burst) > 0 {
            for skb in burst.drain(..) {
                let mut frame: Vec<u8> = skb.segments().flatten().copied().collect();
                if let Some(t) = self.tamper.as_mut() {
                    t(&mut frame);
                }
                self.out.push_back((self.now_ms(), frame));
            }
        }
    }

    fn no_unexpected(&mut self) -> Result<(), String> {
        match self.out.pop_front() {
            None => Ok(()),
            Some((t, f)) => Err(format!("unexpected segment at {t} ms: {}", self.describe(&f))),
        }
    }

    fn conn(&mut self, rport: u16) -> &mut Conn {
        self.conns.entry(rport).or_insert(Conn {
            wr_rel: 1,
            ..Default::default()
        })
    }

    /// The stack's ISN on the current connection, once its SYN or SYN-ACK was seen.
    pub fn stack_isn(&mut self) -> Option<u32> {
        self.conn(self.rport).stack_isn
    }

    fn isn(&mut self, rport: u16) -> u32 {
        self.conn(rport).stack_isn.unwrap_or(0)
    }

    fn inject(&mut self, s: &SegSpec) -> Result<(), String> {
        let need = |v: Val| v.map(|v| v as u32).ok_or("`*` in a `<` line");
        let opts = match &s.opts {
            Opts::Any => return Err("`<*>` in a `<` line".into()),
            Opts::Missing => &[][..],
            Opts::List(o) => &o[..],
        };
        let (rport, seq, len) = (self.rport, need(s.seq)?, need(s.len)?);
        let isn = self.isn(rport);
        let ack = s.ack.map_or(Ok(0), |a| need(a).map(|a| isn.wrapping_add(a)))?;
        let win = s.win.map_or(Ok(65535), need)? as u16;
        let c = self.conn(rport);
        if s.flags & TCPHDR_SYN != 0 && !c.synced {
            (c.synced, c.rd_seq) = (true, seq.wrapping_add(1));
        }
        let mut tcp = vec![0u8; 20];
        for o in opts {
            match o {
                Opt::Mss(v) => tcp.extend([[2, 4], (need(*v)? as u16).to_be_bytes()].concat()),
                Opt::SackOk => tcp.extend([4, 2]),
                Opt::Ts(v, e) => {
                    let ecr = e
                        .map(|e| e as u32)
                        .or(self.last_tsval)
                        .ok_or("TS ecr `*` before any TS val")?;
                    tcp.extend([8, 10]);
                    tcp.extend([need(*v)?.to_be_bytes(), ecr.to_be_bytes()].concat());
                }
                Opt::Nop => tcp.push(1),
                Opt::Eol => tcp.push(0),
                Opt::Wscale(v) => tcp.extend([3, 3, need(*v)? as u8]),
                Opt::Raw(kind, data) => {
                    tcp.extend([*kind, 2 + data.len() as u8]);
                    tcp.extend(data);
                }
                Opt::Sack(blocks) => {
                    tcp.extend([5, 2 + 8 * blocks.len() as u8]);
                    for &(a, b) in blocks {
                        tcp.extend(
                            [isn.wrapping_add(a as u32), isn.wrapping_add(b as u32)]
                                .map(u32::to_be_bytes)
                                .concat(),
                        );
                    }
                }
            }
        }
        tcp.resize(tcp.len().next_multiple_of(4), 0);
        tcp[0..4].copy_from_slice(&[rport.to_be_bytes(), self.lport.to_be_bytes()].concat());
        tcp[4..12].copy_from_slice(&[seq.to_be_bytes(), ack.to_be_bytes()].concat());
        let doff = (tcp.len() as u8 / 4) << 4;
        tcp[12..16].copy_from_slice(&[doff, s.flags, (win >> 8) as u8, win as u8]);
        tcp[18..20].copy_from_slice(&s.urg.to_be_bytes());
        let data_seq = seq.wrapping_add((s.flags & TCPHDR_SYN != 0) as u32);
        tcp.extend((0..len).map(|i| pattern(data_seq.wrapping_add(i))));
        let csum = TcpSlice::from_slice(&tcp).map_err(err)?;
        let csum = csum
            .calc_checksum_ipv4(REMOTE_IP.octets(), STACK_IP.octets())
            .map_err(err)?;
        tcp[16..18].copy_from_slice(&csum.to_be_bytes());
        let (src, dst) = (REMOTE_IP.octets(), STACK_IP.octets());
        let mut ip = Ipv4Header::new(tcp.len() as u16, 64, IpNumber::TCP, src, dst).map_err(err)?;
        ip.dont_fragment = true;
        ip.header_checksum = ip.calc_header_checksum();
        let mut frame = [&STACK_MAC[..], &REMOTE_MAC[..], &[8, 0][..]].concat();
        ip.write(&mut frame).map_err(err)?;
        frame.extend(tcp);
        let mut burst = Burst::new();
        burst.push(SkBuff::from_slice(&mut self.cache, &frame).ok_or("frame does not fit an mbuf")?);
        if self.peer.tx_burst(0, &mut burst) != 1 {
            return Err("wire ring full".into());
        }
        self.stack.poll();
        Ok(())
    }

    fn expect(&mut self, want: &SegSpec) -> Result<(), String> {
        let t = self.t;
        while self.out.is_empty() && self.now_ms() < t + TOL_MS {
            self.step();
        }
        let (at, frame) = self
            .out
            .pop_front()
            .ok_or(format!("nothing sent by {} ms", t + TOL_MS))?;
        let o = parse_out(&frame)?;
        if self.lport == 0 {
            self.lport = o.sport;
        }
        if o.flags & TCPHDR_SYN != 0 {
            self.conn(o.dport).stack_isn.get_or_insert(o.seq);
            if o.flags & TCPHDR_ACK == 0 {
                self.conn(o.dport).active = true;
            }
        }
        let tsval = o.opts.iter().find_map(|o| match o {
            Opt::Ts(Some(v), _) => Some(*v as u32),
            _ => None,
        });
        if let Some(v) = tsval {
            self.last_tsval = Some(v);
            self.conn(o.dport).ts_off.get_or_insert(v.wrapping_sub(at as u32));
        }
        let seen = self.fmt(&o);
        let mut bad = self.check_ip(&o.ip, o.dport, o.flags);
        if !bad.is_empty() {
            return Err(format!("IPv4 header: {}\n    in {seen}", bad.join(", ")));
        }
        if at + TOL_MS < t {
            return Err(format!("sent too early, at {at} ms: {seen}"));
        }
        if (o.sport, o.dport) != (self.lport, self.rport) {
            return Err(format!("expected ports {}>{}, got {seen}", self.lport, self.rport));
        }
        let rel = o.seq.wrapping_sub(self.isn(o.dport)) as u64;
        let plen = o.payload.len() as u64;
        let checks = [
            ("seq", Some(want.seq), rel),
            ("end", Some(want.end), rel + plen),
            ("len", Some(want.len), plen),
        ];
        let checks = checks
            .into_iter()
            .chain([("ack", want.ack, o.ack as u64), ("win", want.win, o.win as u64)]);
        for (what, w, got) in checks {
            if let Some(Some(w)) = w.filter(|w| w.is_some_and(|w| w as u32 != got as u32)) {
                bad.push(format!("{what} {w}"));
            }
        }
        if o.flags & TCPHDR_ACK == 0 && want.ack.is_none() && o.ack != 0 {
            // Linux zeroes the field when ACK is off (tcp_v4_send_reset, tcp_transmit_skb).
            bad.push("ack field 0 (no ACK flag)".into());
        }
        if want.flags != o.flags {
            bad.push(format!("flags {}", fmt_flags(want.flags)));
        }
        // TS vals compare in script terms: ms of the stack's timestamp clock on this
        // connection (see `Conn::ts_off`).
        let got_opts = self.script_opts(o.dport, &o.opts);
        if let Opts::List(w) = &want.opts {
            let (w, g) = (unpadded(w), unpadded(&got_opts));
            if w.len() != g.len() || w.iter().zip(&g).any(|(w, g)| !opt_matches(w, g)) {
                bad.push(format!("options <{}>", join(w)));
            }
        }
        let data_seq = o.seq.wrapping_add((o.flags & TCPHDR_SYN != 0) as u32);
        if let Some(i) = (0..o.payload.len()).find(|&i| o.payload[i] != pattern(data_seq.wrapping_add(i as u32))) {
            bad.push(format!("payload byte {i} to be the one written at its sequence number"));
        }
        if !bad.is_empty() {
            return Err(format!("expected {}\n    got at {at} ms: {seen}", bad.join(", ")));
        }
        if self.fill.is_some() {
            self.fill_line(want, &o, &got_opts);
        }
        Ok(())
    }

    /// The IPv4 rules every segment the stack sends must keep; what breaks them, as text.
    /// - IHL 5: blink sends no IP options on TCP.
    /// - TTL and TOS as configured ([`Script::ip_ttl`], [`Script::ip_tos`]).
    /// - DF set, MF clear, offset 0: blink's TCP always does path MTU discovery (Linux's
    ///   default, IP_PMTUDISC_WANT with net.ipv4.ip_no_pmtu_disc 0) and never fragments.
    /// - ID, as Linux's ip_select_ident: a segment of a connection's socket takes the socket's
    ///   own counter (`inet_id`, +1 per segment, start unpredictable), so each carries the ID
    ///   after that connection's previous one; a SYN-ACK of a request sock carries 0, and so
    ///   may any segment sent without a socket (resets, TIME-WAIT ACKs), told apart by its 0.
    fn check_ip(&mut self, ip: &IpFields, dport: u16, flags: u8) -> Vec<String> {
        let mut bad = Vec::new();
        if ip.ihl != 5 {
            bad.push(format!("IHL {} (expected 5: no IP options)", ip.ihl));
        }
        if ip.ttl != self.ip_ttl {
            bad.push(format!("TTL {} (expected {})", ip.ttl, self.ip_ttl));
        }
        if ip.tos != self.ip_tos {
            bad.push(format!("TOS {:#04x} (expected {:#04x})", ip.tos, self.ip_tos));
        }
        if !ip.df || ip.mf || ip.frag_off != 0 {
            bad.push(format!(
                "DF {} MF {} offset {} (expected DF set, not a fragment)",
                ip.df as u8, ip.mf as u8, ip.frag_off
            ));
        }
        let c = self.conn(dport);
        let syn_ack = flags & (TCPHDR_SYN | TCPHDR_ACK) == TCPHDR_SYN | TCPHDR_ACK;
        if syn_ack && !c.active {
            if ip.id != 0 {
                bad.push(format!("ID {} (expected 0: a request sock's SYN-ACK)", ip.id));
            }
        } else if ip.id != 0 || c.ip_id == Some(u16::MAX) {
            match c.ip_id {
                Some(last) if ip.id != last.wrapping_add(1) => bad.push(format!(
                    "ID {} (expected {}: the connection's previous segment's + 1)",
                    ip.id,
                    last.wrapping_add(1)
                )),
                _ => c.ip_id = Some(ip.id),
            }
        }
        bad
    }

    /// `opts` with each TS val as the script states it: ms of the connection's timestamp
    /// clock (the raw value minus `Conn::ts_off`), once that is known.
    fn script_opts(&mut self, dport: u16, opts: &[Opt]) -> Vec<Opt> {
        let off = self.conn(dport).ts_off;
        opts.iter()
            .map(|o| match (o, off) {
                (Opt::Ts(Some(v), e), Some(off)) => Opt::Ts(Some((*v as u32).wrapping_sub(off) as u64), *e),
                (o, _) => o.clone(),
            })
            .collect()
    }

    /// `BLINK_SCRIPT_FILL`: append `raw line \x1f completed line` to the fill file when the
    /// line lacks win or options or has `TS val *`.
    fn fill_line(&mut self, want: &SegSpec, o: &Out, got: &[Opt]) {
        let raw = self.raw.clone();
        let (code, comment) = raw.split_at(raw.find('#').unwrap_or(raw.len()));
        let body = code.trim_end();
        let gap = &code[body.len()..];
        let mut body = body.to_string();
        if want.win.is_none() {
            let at = body.find(" <").unwrap_or(body.len());
            body.insert_str(at, &format!(" win {}", o.win));
        }
        if want.opts == Opts::Missing {
            body += &format!(" <{}>", join(got));
        }
        if let Some(v) = got.iter().find_map(|o| match o {
            Opt::Ts(Some(v), _) => Some(*v),
            _ => None,
        }) {
            body = body.replace("TS val * ", &format!("TS val {v} "));
        }
        if body != code.trim_end() {
            use std::io::Write;
            let line = format!("{raw}\x1f{body}{gap}{comment}\n");
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.fill.as_ref().unwrap())
                .expect("BLINK_SCRIPT_FILL");
            f.write_all(line.as_bytes()).expect("BLINK_SCRIPT_FILL");
        }
    }

    /// A sent segment in script syntax (seq relative to the stack's ISN).
    fn fmt(&mut self, o: &Out) -> String {
        let seq = o.seq.wrapping_sub(self.isn(o.dport));
        let end = seq.wrapping_add(o.payload.len() as u32);
        let mut s = format!(
            "[{}>{}] {} {seq}:{end}({})",
            o.sport,
            o.dport,
            fmt_flags(o.flags),
            o.payload.len()
        );
        if o.flags & TCPHDR_ACK != 0 {
            s += &format!(" ack {}", o.ack);
        }
        let opts = self.script_opts(o.dport, &o.opts);
        s + &format!(" win {} <{}>", o.win, join(&opts))
    }

    fn describe(&mut self, frame: &[u8]) -> String {
        parse_out(frame).map_or_else(|e| e, |o| self.fmt(&o))
    }

    fn command(&mut self, cmd: &str) -> Result<(), String> {
        let w: Vec<&str> = cmd.split_whitespace().collect();
        let num = |i: usize| {
            w.get(i)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(format!("`{cmd}`: number expected"))
        };
        let sock = self
            .sock
            .ok_or_else(|| "no socket (connect or accept first)".to_string());
        let listener = self.listener.ok_or_else(|| "no listener".to_string());
        let st = &mut self.stack;
        match w.as_slice() {
            ["socket", "listen", ..] => {
                let backlog = if w.get(3) == Some(&"backlog") { num(4)? } else { 16 };
                self.lport = num(2)? as u16;
                self.listener = Some(tcp_listen(st, self.lport, backlog as u32).map_err(err)?);
            }
            ["connect", addr] => {
                let (ip, port) = addr.split_once(':').ok_or("connect IP:PORT")?;
                let ip: Ipv4Addr = ip.parse().map_err(err)?;
                self.rport = port.parse().map_err(err)?;
                self.sock = Some(tcp_connect(st, ip, self.rport).map_err(err)?);
            }
            ["accept", rest @ ..] => match (rest, tcp_accept(st, listener?).map_err(err)?) {
                ([], Some(h)) => self.sock = Some(h),
                (["none"], None) => {}
                (_, got) => return Err(format!("accept returned {got:?}")),
            },
            ["write", ..] => {
                let n = num(1)? as u32;
                let want = if w.get(2) == Some(&"=>") { num(3)? as u32 } else { n };
                let (rel, isn) = (self.conn(self.rport).wr_rel, self.isn(self.rport));
                let data: Vec<u8> = (0..n).map(|i| pattern(isn.wrapping_add(rel + i))).collect();
                let k = tcp_send(&mut self.stack, sock?, &data).map_err(err)? as u32;
                self.conn(self.rport).wr_rel += k;
                if k != want {
                    return Err(format!("tcp_send took {k} bytes"));
                }
            }
            ["read", "error", kind] => {
                let r = tcp_recv(st, sock?, &mut [0u8; 16]);
                if r != Err(TcpErr::Connection(error_kind(kind)?)) {
                    return Err(format!("recv returned {r:?}"));
                }
            }
            ["read", what] => {
                let (h, mut buf, mut total) = (sock?, vec![0u8; 1 << 16], 0usize);
                let last = loop {
                    match tcp_recv(&mut self.stack, h, &mut buf) {
                        Ok(n) if n > 0 => {
                            let c = self.conn(self.rport);
                            let seq = c.rd_seq;
                            c.rd_seq = seq.wrapping_add(n as u32);
                            if let Some(i) = (0..n).find(|&i| buf[i] != pattern(seq.wrapping_add(i as u32))) {
                                return Err(format!("byte {} read is not the one sent", total + i));
                            }
                            total += n;
                        }
                        r => break r,
                    }
                };
                let ok = match *what {
                    "eof" => total == 0 && last == Ok(0),
                    "none" => total == 0 && last == Err(TcpErr::WouldBlock),
                    n => n.parse() == Ok(total),
                };
                if !ok {
                    return Err(format!("read {total} bytes, then {last:?}"));
                }
            }
            ["shutdown"] => tcp_shutdown(st, sock?).map_err(err)?,
            ["close"] => tcp_close(st, sock?).map_err(err)?,
            ["close", "listener"] => tcp_close(st, listener?).map_err(err)?,
            ["expect_state", want] => {
                // A connection in TIME-WAIT lives on as a TIME-WAIT sock (its full socket is
                // closed, or gone once the application closed it): look it up by tuple.
                let t = blink_tcp::inet_hashtables::FourTuple {
                    laddr: STACK_IP,
                    lport: self.lport,
                    raddr: REMOTE_IP,
                    rport: self.rport,
                };
                let tw = with_tcp(st, |tcp, _| tcp.in_time_wait(&t)).map_err(err)?;
                let got = match tcp_state(st, sock?) {
                    _ if tw => "TIME-WAIT",
                    Err(TcpErr::BadHandle) => "gone",
                    r => r.map_err(err)?.name(),
                };
                if got != *want {
                    return Err(format!("state is {got}"));
                }
            }
            ["expect_error", kind] => {
                let h = sock?;
                let got = with_tcp(st, |t, _| t.socks.get(h).map(|s| s.error)).map_err(err)?;
                let want = if *kind == "none" { None } else { Some(error_kind(kind)?) };
                if got != Some(want) {
                    return Err(format!("socket error is {got:?}"));
                }
            }
            ["expect_counter", name, _] => {
                if self.counter(name) != num(2)? {
                    return Err(format!("{name} is {}", self.counter(name)));
                }
            }
            ["ports", ..] => (self.lport, self.rport) = (num(1)? as u16, num(2)? as u16),
            _ => return Err(format!("unknown command `{cmd}`")),
        }
        Ok(())
    }

    /// A counter by its `Section.Name` (`Tcp.ActiveOpens`, `TcpExt.TCPTimeouts`, ...). A name
    /// no counter has fails the test: read as 0 it would pass every `== 0` check.
    pub fn counter(&self, name: &str) -> u64 {
        self.stack
            .core
            .mib
            .by_name(name)
            .unwrap_or_else(|| panic!("no counter named `{name}` (Section.Name, as in `blink stat`)"))
    }

    /// Check counters (the stack starts from zero, so values are deltas since the start).
    pub fn assert_counters(&self, want: &[(&str, u64)]) {
        let bad: Vec<String> = want
            .iter()
            .filter(|(k, v)| self.counter(k) != *v)
            .map(|(k, v)| format!("{k} = {} (expected {v})", self.counter(k)))
            .collect();
        assert!(
            bad.is_empty(),
            "counters: {}\n  all: {:?}",
            bad.join(", "),
            self.stack.core.mib.nonzero()
        );
    }

    /// No TCP socket left, nothing more sent, and every mbuf back in the pool.
    pub fn assert_clean(&mut self) {
        let n = with_tcp(&mut self.stack, |t, _| t.socks.len()).unwrap();
        assert_eq!(n, 0, "sockets left at the end");
        let (tw, ports) = with_tcp(&mut self.stack, |t, _| (t.tw.len(), t.tables.bound_ports())).unwrap();
        assert_eq!(tw, 0, "TIME-WAIT socks left at the end");
        let reqs = with_tcp(&mut self.stack, |t, _| t.reqs.len()).unwrap();
        assert_eq!(reqs, 0, "request socks left at the end");
        assert_eq!(ports, 0, "ports still bound at the end");
        self.stack.flush_tx();
        self.collect();
        if let Err(e) = self.no_unexpected() {
            panic!("at the end: {e}");
        }
        assert_eq!(self.pool.in_use(), self.baseline, "mbuf leak");
    }
}

fn error_kind(k: &str) -> Result<TcpError, String> {
    Ok(match k {
        "refused" => TcpError::ConnectionRefused,
        "reset" => TcpError::ConnectionReset,
        "timeout" => TcpError::TimedOut,
        "aborted" => TcpError::Aborted,
        _ => return Err(format!("unknown error kind `{k}`")),
    })
}

/// The configuration most scripts use: a 65535-byte receive buffer (so blink offers window
/// scale 0 and windows read as plain byte counts) and a 1 s TIME-WAIT. Tail loss probes are
/// off (as packetdrill tests of other mechanisms set net.ipv4.tcp_early_retrans): with the
/// scripts' zero-time handshake the probe timeout is its 10 ms floor, and a probe would come
/// before every scripted ACK. [`cfg_tlp`] turns them on.
pub fn cfg() -> TcpConfig {
    TcpConfig {
        rcvbuf: 65535,
        timewait_ms: 1000,
        tlp: false,
        seed: Some(seed()),
        ..Default::default()
    }
}

/// The TCP seed of [`cfg`]: BLINK_SEED from the environment (to replay a run a failure named),
/// else 1. Scripts number the stack's sequence space from its ISN, so they pass whatever the
/// seed; it fixes ISNs, timestamp offsets, cookies and ports.
pub fn seed() -> u64 {
    match std::env::var("BLINK_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("BLINK_SEED: `{v}` is not an integer")),
        Err(_) => 1,
    }
}

/// [`cfg`] with tail loss probes (RACK-TLP, Linux's default).
pub fn cfg_tlp() -> TcpConfig {
    TcpConfig { tlp: true, ..cfg() }
}

/// Passive open on port 8080 at time 0, accepted. The remote offers MSS 1000 and SACK (no
/// timestamps, no window scaling) and uses ISN 0, so data on both sides starts at sequence 1.
/// The handshake takes no time: blink's first RTT sample is ~0 and its RTO the 200 ms floor.
pub const ACCEPTED_SACK: &str = "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
0     < . 1:1(0) ack 1 win 65535
0     accept
0     expect_state ESTAB
";

/// As [`ACCEPTED_SACK`] without SACK (Reno-style loss recovery).
pub const ACCEPTED_PLAIN: &str = "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0     < . 1:1(0) ack 1 win 65535
0     accept
0     expect_state ESTAB
";
