//! packetdrill-style scripts: one blink stack (10.0.0.2) on one end of a `wire_pair`, the test
//! playing the remote host 10.0.0.1 on the other end, under a `VirtualClock` that advances 1 ms
//! at a time with a poll after every step.
//!
//! A script has one command per line, `TIME COMMAND`; `#` starts a comment. TIME is seconds of
//! virtual time, absolute (`0.3`) or relative to the previous line (`+0.04`).
//!
//! Segments follow packetdrill's conventions:
//! - `< FLAGS SEQ:END(LEN) [ack N] [win N] [<OPTS>]` injects a segment. SEQ is the remote's own
//!   (absolute) number; ack and SACK blocks are relative to the stack's ISN. win defaults to 65535.
//! - `> FLAGS SEQ:END(LEN) [ack N] [win N] [<OPTS>]` expects the next segment the stack sends,
//!   within ±`TOL_MS` of TIME (never earlier). SEQ is relative to the stack's ISN (learned from its
//!   SYN or SYN-ACK; 0 before that); ack and SACK blocks are absolute. In `<` lines, `TS ecr *`
//!   echoes the stack's latest TS val. `*` matches anything; ack,
//!   win and options are compared only when given (`<>` means "no options").
//! - FLAGS: `S F R P` and `.` for ACK (`S.`, `P.`, `F.`, `R.`, ...).
//! - OPTS: comma-separated `mss N`, `sackOK`, `TS val N ecr N`, `nop`, `eol`, `wscale N`,
//!   `sack A:B C:D ...`.
//!
//! Application side: `socket listen PORT [backlog N]`, `connect IP:PORT`, `accept` / `accept none`,
//! `write N [=> M]` (M bytes accepted, default N), `read N` (drains, expects N bytes in total),
//! `read eof`, `read none`, `read error refused|reset|timeout|aborted`, `shutdown`, `close`,
//! `close listener`, `expect_state NAME|gone` (names as `ss` prints them), `expect_error KIND|none`,
//! `expect_counter Section.Name N`, `ports LOCAL REMOTE`.
//!
//! Payload bytes are a function of their absolute sequence number (`pattern`), so data read by the
//! application and data the stack sends are checked byte for byte. Sent segments are parsed
//! with the crate's own `TcpHdr`/`TcpOptions`, and their checksums verified with etherparse.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use blink_ipv4::{Ipv4Cidr, Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::{Burst, NetDevice};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::sock::SockHandle;
use blink_netcore::{EthAddr, Mempool, MempoolCache, MempoolConfig};
use blink_tcp::tcphdr::*;
use blink_tcp::*;
use etherparse::{IpNumber, Ipv4Header, Ipv4Slice, TcpSlice};

pub const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const STACK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const REMOTE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// How far (ms) an expected segment may be from its scripted time.
pub const TOL_MS: u64 = 5;

/// The byte at sequence number `s`.
pub fn pattern(s: u32) -> u8 {
    (s.wrapping_mul(0x9E37_79B1) >> 24) as u8
}

/// `None` is `*`.
type Val = Option<u64>;

#[derive(Debug, Clone)]
enum Opt {
    Mss(Val),
    SackOk,
    Ts(Val, Val),
    Nop,
    Eol,
    Wscale(Val),
    Sack(Vec<(u64, u64)>),
}

/// A `<` or `>` line.
#[derive(Debug)]
struct SegSpec {
    flags: u8,
    seq: Val,
    end: Val,
    len: Val,
    ack: Option<Val>,
    win: Option<Val>,
    opts: Option<Vec<Opt>>,
}

/// A segment the stack sent, parsed.
struct Out {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    opts: TcpOptions,
    payload: Vec<u8>,
}

/// Per-connection state, keyed by the remote port.
#[derive(Clone, Copy, Default)]
struct Conn {
    stack_isn: Option<u32>,
    /// The remote's first SYN was injected (its ISN is known).
    synced: bool,
    /// Remote sequence number of the next byte the application reads.
    rd_seq: u32,
    /// Stack-relative sequence number of the next byte the application writes.
    wr_rel: u32,
}

pub struct Script {
    pub stack: Stack,
    pub clock: VirtualClock,
    pub pool: Mempool,
    peer: WireDev,
    cache: MempoolCache,
    baseline: usize,
    /// What the stack sent and nobody matched yet: (ms, frame).
    out: VecDeque<(u64, Vec<u8>)>,
    conns: HashMap<u16, Conn>,
    lport: u16,
    rport: u16,
    pub listener: Option<SockHandle>,
    pub sock: Option<SockHandle>,
    /// Script time of the previous line, ms.
    t: u64,
    /// The stack's latest TS val (what `TS ecr *` echoes in `<` lines).
    last_tsval: Option<u32>,
}

/// Run `script` against a fresh stack with TCP configured by `cfg`; panics at the first line
/// that does not hold, naming it and what was seen instead.
pub fn run(cfg: TcpConfig, script: &str) -> Script {
    let mut s = Script::new(cfg);
    s.run(script);
    s
}

impl Script {
    pub fn new(cfg: TcpConfig) -> Script {
        let pool = Mempool::new(&MempoolConfig {
            name: "script".into(),
            n: 4096,
            cache_size: 32,
            ..Default::default()
        })
        .expect("pool");
        let clock = VirtualClock::new();
        let (a, peer) = wire_pair(
            ("blink0", "remote0"),
            (EthAddr(STACK_MAC), EthAddr(REMOTE_MAC)),
            &WireConfig::default(),
        );
        let mut stack = Stack::new(0, 1, Clock::virtual_clock(&clock), &pool, StackConfig::default());
        let dev = stack.add_device(Box::new(a), 0);
        stack
            .add_addr(dev, Ipv4Cidr::new(STACK_IP, 24).expect("prefix"))
            .expect("addr");
        blink_ipv4::neighbour::neigh_add_static(&mut stack, REMOTE_IP, EthAddr(REMOTE_MAC), dev);
        tcp_init(&mut stack, cfg);
        let cache = pool.cache();
        let mut s = Script {
            stack,
            clock,
            pool,
            peer,
            cache,
            baseline: 0,
            out: VecDeque::new(),
            conns: HashMap::new(),
            lport: 0,
            rport: 40000,
            listener: None,
            sock: None,
            t: 0,
            last_tsval: None,
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
            if let Err(e) = self.exec(text) {
                panic!(
                    "script line {}: `{text}`\n    {e}\n    (virtual time {} ms)",
                    i + 1,
                    self.now_ms()
                );
            }
        }
        self.stack.flush_tx();
        self.collect();
        if let Err(e) = self.no_unexpected() {
            panic!("after the last line: {e}");
        }
    }

    fn exec(&mut self, text: &str) -> Result<(), String> {
        let (ts, rest) = text.split_once(char::is_whitespace).ok_or("no command")?;
        let (rel, num) = match ts.strip_prefix('+') {
            Some(n) => (true, n),
            None => (false, ts),
        };
        let secs: f64 = num.parse().map_err(|_| format!("bad time `{ts}`"))?;
        let ms = (secs * 1000.0).round() as u64;
        self.t = if rel { self.t + ms } else { ms };
        let rest = rest.trim();
        if let Some(seg) = rest.strip_prefix('>') {
            return self.expect(&parse_seg(seg)?);
        }
        self.advance_to(self.t);
        self.no_unexpected()?;
        if let Some(seg) = rest.strip_prefix('<') {
            self.inject(&parse_seg(seg)?)?;
        } else {
            self.command(rest)?;
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
        let now = self.now_ms();
        loop {
            let mut burst = Burst::new();
            if self.peer.rx_burst(0, &mut burst) == 0 {
                break;
            }
            for skb in burst {
                let mut v = Vec::with_capacity(skb.len());
                for s in skb.segments() {
                    v.extend_from_slice(s);
                }
                self.out.push_back((now, v));
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

    fn isn(&mut self, rport: u16) -> u32 {
        self.conn(rport).stack_isn.unwrap_or(0)
    }

    fn inject(&mut self, s: &SegSpec) -> Result<(), String> {
        let need = |v: Val, what: &str| v.ok_or(format!("`*` is not allowed for {what} in `<`"));
        let seq = need(s.seq, "seq")? as u32;
        let len = need(s.len, "len")? as u32;
        let rport = self.rport;
        let isn = self.isn(rport);
        let ack = match s.ack {
            Some(a) => isn.wrapping_add(need(a, "ack")? as u32),
            None => 0,
        };
        let win = s.win.map(|w| need(w, "win")).transpose()?.unwrap_or(65535) as u16;
        let c = self.conn(rport);
        if s.flags & TCPHDR_SYN != 0 && !c.synced {
            c.synced = true;
            c.rd_seq = seq.wrapping_add(1);
        }
        let mut opts = Vec::new();
        for o in s.opts.iter().flatten() {
            match o {
                Opt::Mss(v) => opts.extend([2, 4].iter().chain(&(need(*v, "mss")? as u16).to_be_bytes())),
                Opt::SackOk => opts.extend([4, 2]),
                Opt::Ts(v, e) => {
                    opts.extend([8, 10]);
                    opts.extend((need(*v, "TS val")? as u32).to_be_bytes());
                    let ecr = e
                        .map(|e| e as u32)
                        .or(self.last_tsval)
                        .ok_or("TS ecr `*` before any TS val")?;
                    opts.extend(ecr.to_be_bytes());
                }
                Opt::Nop => opts.push(1),
                Opt::Eol => opts.push(0),
                Opt::Wscale(v) => opts.extend([3, 3, need(*v, "wscale")? as u8]),
                Opt::Sack(blocks) => {
                    opts.extend([5, 2 + 8 * blocks.len() as u8]);
                    for &(a, b) in blocks {
                        opts.extend(isn.wrapping_add(a as u32).to_be_bytes());
                        opts.extend(isn.wrapping_add(b as u32).to_be_bytes());
                    }
                }
            }
        }
        while opts.len() % 4 != 0 {
            opts.push(0);
        }
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&rport.to_be_bytes());
        tcp[2..4].copy_from_slice(&self.lport.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12] = (((20 + opts.len()) / 4) as u8) << 4;
        tcp[13] = s.flags;
        tcp[14..16].copy_from_slice(&win.to_be_bytes());
        tcp.extend(opts);
        let data_seq = seq.wrapping_add((s.flags & TCPHDR_SYN != 0) as u32);
        tcp.extend((0..len).map(|i| pattern(data_seq.wrapping_add(i))));
        let csum = TcpSlice::from_slice(&tcp)
            .map_err(|e| format!("etherparse: {e}"))?
            .calc_checksum_ipv4(REMOTE_IP.octets(), STACK_IP.octets())
            .map_err(|e| e.to_string())?;
        tcp[16..18].copy_from_slice(&csum.to_be_bytes());
        let mut ip = Ipv4Header::new(
            tcp.len() as u16,
            64,
            IpNumber::TCP,
            REMOTE_IP.octets(),
            STACK_IP.octets(),
        )
        .map_err(|e| e.to_string())?;
        ip.dont_fragment = true;
        ip.header_checksum = ip.calc_header_checksum();
        let mut frame = Vec::with_capacity(34 + tcp.len());
        frame.extend(STACK_MAC);
        frame.extend(REMOTE_MAC);
        frame.extend(0x0800u16.to_be_bytes());
        ip.write(&mut frame).map_err(|e| e.to_string())?;
        frame.extend(tcp);
        let skb = SkBuff::from_slice(&mut self.cache, &frame).ok_or("frame does not fit an mbuf")?;
        let mut burst = Burst::new();
        burst.push(skb);
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
        let Some((at, frame)) = self.out.pop_front() else {
            return Err(format!("nothing sent by {} ms", t + TOL_MS));
        };
        let o = parse_out(&frame)?;
        if self.lport == 0 {
            self.lport = o.sport;
        }
        if o.flags & TCPHDR_SYN != 0 && self.conn(o.dport).stack_isn.is_none() {
            self.conn(o.dport).stack_isn = Some(o.seq);
        }
        if let Some((v, _)) = o.opts.ts {
            self.last_tsval = Some(v);
        }
        let seen = self.fmt(&o);
        if at + TOL_MS < t {
            return Err(format!("sent too early, at {at} ms: {seen}"));
        }
        if (o.sport, o.dport) != (self.lport, self.rport) {
            return Err(format!(
                "ports {}->{}, expected {}->{}: {seen}",
                o.sport, o.dport, self.lport, self.rport
            ));
        }
        let isn = self.isn(o.dport);
        let rel = o.seq.wrapping_sub(isn) as u64;
        let mut bad = Vec::new();
        let mut check = |what: &str, want: Val, got: u64| {
            if matches!(want, Some(w) if w as u32 != got as u32) {
                bad.push(format!("{what} {}", want.unwrap()));
            }
        };
        check("seq", want.seq, rel);
        check("end", want.end, rel + o.payload.len() as u64);
        check("len", want.len, o.payload.len() as u64);
        if let Some(a) = want.ack {
            check("ack", a, o.ack as u64);
        }
        if let Some(w) = want.win {
            check("win", w, o.win as u64);
        }
        if want.flags != o.flags {
            bad.push(format!("flags {}", fmt_flags(want.flags)));
        }
        if let Some(opts) = &want.opts {
            if let Err(e) = match_opts(opts, &o.opts) {
                bad.push(e);
            }
        }
        let data_seq = o.seq.wrapping_add((o.flags & TCPHDR_SYN != 0) as u32);
        let pos = (0..o.payload.len()).find(|&i| o.payload[i] != pattern(data_seq.wrapping_add(i as u32)));
        if let Some(i) = pos {
            bad.push(format!(
                "payload byte {i} is not the byte written at that sequence number"
            ));
        }
        if !bad.is_empty() {
            return Err(format!("expected {}\n    got at {at} ms: {seen}", bad.join(", ")));
        }
        Ok(())
    }

    /// A segment in script syntax, seq relative to the stack's ISN.
    fn fmt(&mut self, o: &Out) -> String {
        let isn = self.isn(o.dport);
        let seq = o.seq.wrapping_sub(isn);
        let mut s = format!(
            "[{}>{}] {} {}:{}({})",
            o.sport,
            o.dport,
            fmt_flags(o.flags),
            seq,
            seq.wrapping_add(o.payload.len() as u32),
            o.payload.len()
        );
        if o.flags & TCPHDR_ACK != 0 {
            s += &format!(" ack {}", o.ack);
        }
        s += &format!(" win {} <", o.win);
        let mut v = Vec::new();
        let t = &o.opts;
        t.mss.map(|m| v.push(format!("mss {m}")));
        t.sack_ok.then(|| v.push("sackOK".into()));
        t.ts.map(|(a, b)| v.push(format!("TS val {a} ecr {b}")));
        t.wscale.map(|w| v.push(format!("wscale {w}")));
        if t.num_sacks > 0 {
            let b: Vec<String> = t
                .sack_blocks()
                .iter()
                .map(|b| format!("{}:{}", b.start, b.end))
                .collect();
            v.push(format!("sack {}", b.join(" ")));
        }
        s + &v.join(",") + ">"
    }

    fn describe(&mut self, frame: &[u8]) -> String {
        match parse_out(frame) {
            Ok(o) => self.fmt(&o),
            Err(e) => e,
        }
    }

    fn command(&mut self, cmd: &str) -> Result<(), String> {
        let w: Vec<&str> = cmd.split_whitespace().collect();
        let num = |i: usize| -> Result<u64, String> {
            w.get(i)
                .and_then(|s| s.parse().ok())
                .ok_or(format!("`{cmd}`: number expected"))
        };
        let sock = self
            .sock
            .ok_or_else(|| "no socket (connect or accept first)".to_string());
        let st = &mut self.stack;
        match w.as_slice() {
            ["socket", "listen", ..] => {
                let backlog = if w.get(3) == Some(&"backlog") { num(4)? } else { 16 };
                self.lport = num(2)? as u16;
                self.listener = Some(tcp_listen(st, self.lport, backlog as u32).map_err(|e| e.to_string())?);
            }
            ["connect", addr] => {
                let (ip, port) = addr.split_once(':').ok_or("connect IP:PORT")?;
                let ip: Ipv4Addr = ip.parse().map_err(|_| "bad address")?;
                self.rport = port.parse().map_err(|_| "bad port")?;
                self.sock = Some(tcp_connect(st, ip, self.rport).map_err(|e| e.to_string())?);
            }
            ["accept", rest @ ..] => {
                let l = self.listener.ok_or("no listener")?;
                let got = tcp_accept(st, l).map_err(|e| e.to_string())?;
                match (rest, got) {
                    ([], Some(h)) => self.sock = Some(h),
                    (["none"], None) => {}
                    (_, g) => return Err(format!("accept returned {g:?}")),
                }
            }
            ["write", ..] => {
                let n = num(1)? as u32;
                let want = if w.get(2) == Some(&"=>") { num(3)? as u32 } else { n };
                let h = sock?;
                let rel = self.conn(self.rport).wr_rel;
                let isn = self.isn(self.rport);
                let data: Vec<u8> = (0..n).map(|i| pattern(isn.wrapping_add(rel + i))).collect();
                let k = tcp_send(&mut self.stack, h, &data).map_err(|e| format!("tcp_send: {e}"))? as u32;
                self.conn(self.rport).wr_rel += k;
                if k != want {
                    return Err(format!("tcp_send took {k} bytes, expected {want}"));
                }
            }
            ["read", what] => {
                let h = sock?;
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0usize;
                let first = loop {
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
                    "eof" => total == 0 && first == Ok(0),
                    "none" => total == 0 && first == Err(TcpErr::WouldBlock),
                    n => n.parse() == Ok(total),
                };
                if !ok {
                    return Err(format!("read {total} bytes, then {first:?}"));
                }
            }
            ["read", "error", kind] => {
                let h = sock?;
                let r = tcp_recv(st, h, &mut [0u8; 16]);
                if r != Err(TcpErr::Connection(error_kind(kind)?)) {
                    return Err(format!("recv returned {r:?}"));
                }
            }
            ["shutdown"] => tcp_shutdown(st, sock?).map_err(|e| e.to_string())?,
            ["close"] => tcp_close(st, sock?).map_err(|e| e.to_string())?,
            ["close", "listener"] => tcp_close(st, self.listener.ok_or("no listener")?).map_err(|e| e.to_string())?,
            ["expect_state", want] => {
                let got = match tcp_state(st, sock?) {
                    Ok(s) => s.name(),
                    Err(TcpErr::BadHandle) => "gone",
                    Err(e) => return Err(e.to_string()),
                };
                if got != *want {
                    return Err(format!("state is {got}"));
                }
            }
            ["expect_error", kind] => {
                let h = sock?;
                let got = with_tcp(st, |t, _| t.socks.get(h).map(|s| s.error)).map_err(|e| e.to_string())?;
                let want = if *kind == "none" { None } else { Some(error_kind(kind)?) };
                if got != Some(want) {
                    return Err(format!("socket error is {got:?}"));
                }
            }
            ["expect_counter", name, _] => {
                let want = num(2)?;
                let got = self.counter(name);
                if got != want {
                    return Err(format!("{name} is {got}"));
                }
            }
            ["ports", ..] => (self.lport, self.rport) = (num(1)? as u16, num(2)? as u16),
            _ => return Err(format!("unknown command `{cmd}`")),
        }
        Ok(())
    }

    /// A counter by its `Section.Name` (e.g. `Tcp.ActiveOpens`, `TcpExt.TCPTimeouts`).
    pub fn counter(&self, name: &str) -> u64 {
        self.stack
            .core
            .mib
            .nonzero()
            .into_iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| v)
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

const FLAG_CHARS: [(u8, char); 6] = [
    (TCPHDR_SYN, 'S'),
    (TCPHDR_FIN, 'F'),
    (TCPHDR_RST, 'R'),
    (TCPHDR_PSH, 'P'),
    (TCPHDR_URG, 'U'),
    (TCPHDR_ACK, '.'),
];

fn fmt_flags(f: u8) -> String {
    FLAG_CHARS.iter().filter(|(b, _)| f & b != 0).map(|&(_, c)| c).collect()
}

fn val(s: &str) -> Result<Val, String> {
    if s == "*" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| format!("bad number `{s}`"))
}

fn parse_seg(s: &str) -> Result<SegSpec, String> {
    let (main, opts) = match s.find('<') {
        Some(i) => {
            let o = s[i + 1..]
                .trim_end()
                .strip_suffix('>')
                .ok_or("options must end with `>`")?;
            (
                &s[..i],
                Some(
                    o.split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(parse_opt)
                        .collect::<Result<_, _>>()?,
                ),
            )
        }
        None => (s, None),
    };
    let w: Vec<&str> = main.split_whitespace().collect();
    let [flags, range, rest @ ..] = w.as_slice() else {
        return Err("segment: FLAGS SEQ:END(LEN) ...".into());
    };
    let mut f = 0;
    for c in flags.chars() {
        f |= FLAG_CHARS
            .iter()
            .find(|(_, ch)| *ch == c)
            .ok_or(format!("bad flag `{c}`"))?
            .0;
    }
    let (seq, r) = range.split_once(':').ok_or("SEQ:END(LEN)")?;
    let (end, r) = r.split_once('(').ok_or("SEQ:END(LEN)")?;
    let len = r.strip_suffix(')').ok_or("SEQ:END(LEN)")?;
    let mut spec = SegSpec {
        flags: f,
        seq: val(seq)?,
        end: val(end)?,
        len: val(len)?,
        ack: None,
        win: None,
        opts,
    };
    if let (Some(a), Some(b), Some(l)) = (spec.seq, spec.end, spec.len) {
        if b.wrapping_sub(a) != l {
            return Err(format!("{range}: END - SEQ != LEN"));
        }
    }
    for kv in rest.chunks(2) {
        match kv {
            ["ack", v] => spec.ack = Some(val(v)?),
            ["win", v] => spec.win = Some(val(v)?),
            _ => return Err(format!("unexpected `{}`", kv.join(" "))),
        }
    }
    Ok(spec)
}

fn parse_opt(o: &str) -> Result<Opt, String> {
    let w: Vec<&str> = o.split_whitespace().collect();
    Ok(match w.as_slice() {
        ["mss", v] => Opt::Mss(val(v)?),
        ["sackOK"] => Opt::SackOk,
        ["TS", "val", v, "ecr", e] => Opt::Ts(val(v)?, val(e)?),
        ["nop"] => Opt::Nop,
        ["eol"] => Opt::Eol,
        ["wscale", v] => Opt::Wscale(val(v)?),
        ["sack", blocks @ ..] => Opt::Sack(
            blocks
                .iter()
                .map(|b| {
                    let (a, e) = b.split_once(':').ok_or("sack A:B")?;
                    Ok((val(a)?.ok_or("sack block `*`")?, val(e)?.ok_or("sack block `*`")?))
                })
                .collect::<Result<_, String>>()?,
        ),
        _ => return Err(format!("unknown option `{o}`")),
    })
}

/// Expected options against what the stack sent: every option listed must be there with the
/// given values, and nothing else (NOP and EOL are layout, not compared).
fn match_opts(want: &[Opt], got: &TcpOptions) -> Result<(), String> {
    let eq = |w: &Val, g: u64| w.map_or(true, |w| w == g);
    let (mut mss, mut sack_ok, mut ts, mut ws, mut sack) = (false, false, false, false, false);
    for o in want {
        let ok = match o {
            Opt::Mss(v) => {
                mss = true;
                got.mss.is_some_and(|m| eq(v, m as u64))
            }
            Opt::SackOk => {
                sack_ok = true;
                got.sack_ok
            }
            Opt::Ts(v, e) => {
                ts = true;
                got.ts.is_some_and(|(a, b)| eq(v, a as u64) && eq(e, b as u64))
            }
            Opt::Wscale(v) => {
                ws = true;
                got.wscale.is_some_and(|w| eq(v, w as u64))
            }
            Opt::Sack(blocks) => {
                sack = true;
                let g: Vec<(u64, u64)> = got
                    .sack_blocks()
                    .iter()
                    .map(|b| (b.start as u64, b.end as u64))
                    .collect();
                let w: Vec<(u64, u64)> = blocks
                    .iter()
                    .map(|&(a, b)| (a as u32 as u64, b as u32 as u64))
                    .collect();
                g == w
            }
            Opt::Nop | Opt::Eol => true,
        };
        if !ok {
            return Err(format!("option {o:?}"));
        }
    }
    let extra = (!mss && got.mss.is_some())
        || (!sack_ok && got.sack_ok)
        || (!ts && got.ts.is_some())
        || (!ws && got.wscale.is_some())
        || (!sack && got.num_sacks > 0);
    if extra {
        return Err("no other options".into());
    }
    Ok(())
}

/// Parse a frame the stack sent: IPv4 and TCP checksums verified by etherparse, TCP fields and
/// options read with blink's own views (and cross-checked).
fn parse_out(frame: &[u8]) -> Result<Out, String> {
    if frame.len() < 14 || frame[12..14] != [8, 0] || frame[0..6] != REMOTE_MAC {
        return Err(format!("not an IPv4 frame to the remote: {frame:02x?}"));
    }
    let ip = Ipv4Slice::from_slice(&frame[14..]).map_err(|e| format!("etherparse IPv4: {e}"))?;
    let h = ip.header().to_header();
    if h.header_checksum != h.calc_header_checksum() || h.protocol != IpNumber::TCP {
        return Err("bad IPv4 checksum or not TCP".into());
    }
    if h.source != STACK_IP.octets() || h.destination != REMOTE_IP.octets() {
        return Err(format!("addresses {:?} -> {:?}", h.source, h.destination));
    }
    let seg = ip.payload().payload;
    let ep = TcpSlice::from_slice(seg).map_err(|e| format!("etherparse TCP: {e}"))?;
    let csum = ep
        .calc_checksum_ipv4(h.source, h.destination)
        .map_err(|e| e.to_string())?;
    if csum != ep.checksum() {
        return Err(format!(
            "TCP checksum {:#06x}, etherparse computes {csum:#06x}",
            ep.checksum()
        ));
    }
    let th = TcpHdr::new_checked(seg).map_err(|e| format!("TcpHdr: {e:?}"))?;
    assert_eq!(
        (th.seq(), th.ack_seq(), th.window()),
        (ep.sequence_number(), ep.acknowledgment_number(), ep.window_size())
    );
    Ok(Out {
        sport: th.src_port(),
        dport: th.dst_port(),
        seq: th.seq(),
        ack: th.ack_seq(),
        flags: th.flags(),
        win: th.window(),
        opts: TcpOptions::parse(th.options(), th.syn()),
        payload: th.payload().to_vec(),
    })
}

/// The configuration most scripts use: a 65535-byte receive buffer (so blink offers window
/// scale 0 and windows read as plain byte counts) and a 1 s TIME-WAIT.
pub fn cfg() -> TcpConfig {
    TcpConfig {
        rcvbuf: 65535,
        timewait_ms: 1000,
        ..Default::default()
    }
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
