//! `blink bench`: workloads between two blink stacks joined by the in-memory wire and polled by
//! one thread (the arrangement smoltcp's reference figures in apps/BENCHMARKS.md were taken in), each verifying its data,
//! and the same workloads on other peers in the same run (`--peer`): smoltcp 0.14 in the same
//! arrangement (bench_smoltcp.rs) and the Linux kernel over 127.0.0.1 (bench_linux.rs).
//!
//! - bulk: one TCP connection moving data one way; the receiver checks every byte by its
//!   position in the stream (a pattern that never repeats at a power-of-two period).
//! - rr: 64-byte request / 64-byte response on one connection (TCP_NODELAY); each message
//!   carries its transaction number and bytes derived from it, checked whole.
//! - crr: connect, 64 bytes each way (checked as rr's), close; counted once the close has
//!   completed at both ends.
//! - udp: 64-byte datagrams one way; the receiver checks every byte and the order.
//! - frag: 4,000-byte UDP datagrams one way over MTU 1500 (three fragments each), reassembled
//!   by the receiver, every byte and the order checked.
//! - fragflood: never-completed fragments with random ids at full speed beside a checked TCP
//!   request/response; flood fragments absorbed per second and peak reassembly memory.
//!
//! Every result also says how it was reached: frames on the wire per unit of work and CPU
//! time (user + system, whole process) per unit. blink's workloads fail when mbufs are left
//! in use afterwards.
//!
//! Figures only: nothing here asserts a time.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use blink_glue::ipv4::{Stack, StackConfig};
use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::sock::SockHandle;
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::tcp::{self, TcpConfig, TcpErr, TcpState};
use blink_glue::udp::{self, UdpConfig, UdpErr};
use clap::Args;

use crate::args::usage;
use crate::setup::SetupError;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Seconds per workload (and per peer).
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Workloads to run (comma-separated): bulk, rr, crr, udp, frag, fragflood, conns, timers
    /// [default: bulk,rr,crr,udp,frag; with --cores: rr,crr]. conns and timers are blink only
    /// (see bench_conns.rs).
    #[arg(long)]
    pub workloads: Option<String>,
    /// Stop each workload after this much work instead of after --secs: MiB for bulk,
    /// transactions for rr, connections for crr, thousands of datagrams for udp, transactions
    /// per connection count for conns, thousands of operation pairs per measurement for timers.
    /// A fixed amount of work gives stable
    /// instruction counts under `valgrind --tool=callgrind`.
    #[arg(long)]
    pub iters: Option<u64>,
    /// bulk: send and receive buffer of each end, KiB (blink and smoltcp; linux-lo sets
    /// SO_SNDBUF/SO_RCVBUF to it). The default, 256 KiB, is the arrangement smoltcp's reference
    /// figures (apps/BENCHMARKS.md) were measured in, so the figures compare directly.
    #[arg(long, default_value_t = 256)]
    pub buf: u32,
    /// Let the in-memory wire declare TCP/UDP checksum offload, as veth does (checksums left
    /// partial by the sender, frames marked verified on arrival). Off by default: smoltcp's
    /// reference figures (apps/BENCHMARKS.md) were taken with software checksums. blink only.
    #[arg(long)]
    pub offload: bool,
    /// Print `{"results": [...]}` JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Peers to run every workload on, in turn (comma-separated): blink, smoltcp (smoltcp 0.14,
    /// two interfaces on an in-memory Ethernet pair polled by one thread, as blink's stacks
    /// are), linux-lo (kernel sockets over 127.0.0.1, client and server on two threads),
    /// linux-veth (root only: kernel sockets in two network namespaces joined by a veth pair,
    /// MTU 1500). The table shows blink's ratio to each other peer.
    #[arg(long, value_name = "LIST", default_value = "blink,smoltcp")]
    pub peer: String,
    /// Short runs: at most 0.5 s per workload and peer (every workload on three peers in well
    /// under two minutes).
    #[arg(long)]
    pub quick: bool,
    /// Scaling over stack cores instead (e.g. `1,2`): rr and crr over 64 connections for each
    /// core count, with the ratio to the first (see bench_cores.rs).
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,
    /// With --cores: steering mode of both stacks, rss (a queue per core on the wire) or
    /// poller (a single-queue wire; core 0's loop runs the poller and load balancer).
    #[arg(long, default_value = "rss", value_parser = ["rss", "poller"])]
    pub mode: String,
    /// Also draw the results as PNG charts into DIR (created if missing): one bar chart per
    /// workload, blink's ratios to the other peers, and the conns workload's curves.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<std::path::PathBuf>,
    /// conns workload: numbers of concurrent connections, in order (e.g. 1000,100000,1000000
    /// or 1k,100k,1M) [default: 1k,100k; with --quick: 1k,10k]. rr is compared with the first.
    #[arg(long, value_name = "LIST")]
    pub conns: Option<String>,
}

pub(crate) const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

pub(crate) struct Pair {
    pub(crate) a: Stack,
    pub(crate) b: Stack,
    pub(crate) pool: Mempool,
    /// fragflood's clock: real time plus `skew_ns`, so the run can jump over ipfrag_time at
    /// the end instead of waiting 30 s for the flood's queues to expire.
    vclock: Option<(VirtualClock, Instant)>,
    skew_ns: u64,
}

pub(crate) fn pair(cfg: TcpConfig, lim: Limit) -> Pair {
    pair_with(cfg, lim, false)
}

fn pair_with(cfg: TcpConfig, lim: Limit, virtual_clock: bool) -> Pair {
    let pool = Mempool::new(&MempoolConfig {
        name: "bench".into(),
        n: 65536,
        ..Default::default()
    })
    .expect("static pool config");
    let vclock = virtual_clock.then(|| (VirtualClock::new(), Instant::now()));
    let clock = match &vclock {
        Some((vc, _)) => Clock::virtual_clock(vc),
        None => Clock::monotonic(),
    };
    let (wa, wb) = wire_pair(
        ("a", "b"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig {
            csum_offload: lim.offload,
            ..Default::default()
        },
    );
    let mut a = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
    let mut b = Stack::new(0, 1, clock, &pool, StackConfig::default());
    let ia = a.add_device(Box::new(wa), 0);
    let ib = b.add_device(Box::new(wb), 0);
    a.add_addr(ia, "10.0.0.1/24".parse().expect("valid")).expect("address");
    b.add_addr(ib, "10.0.0.2/24".parse().expect("valid")).expect("address");
    tcp::tcp_init(&mut a, cfg.clone());
    tcp::tcp_init(&mut b, cfg);
    Pair {
        a,
        b,
        pool,
        vclock,
        skew_ns: 0,
    }
}

impl Pair {
    pub(crate) fn poll(&mut self) {
        if let Some((vc, t0)) = &self.vclock {
            vc.set_ns(t0.elapsed().as_nanos() as u64 + self.skew_ns);
        }
        self.a.poll();
        self.b.poll();
    }

    /// Connect A -> B:port and accept it; returns (client, server, listener).
    fn connect(&mut self, l: SockHandle, port: u16) -> Result<(SockHandle, SockHandle), String> {
        let c = tcp::tcp_connect(&mut self.a, B_IP, port).map_err(|e| e.to_string())?;
        for _ in 0..100_000 {
            self.poll();
            if let Ok(Some(s)) = tcp::tcp_accept(&mut self.b, l) {
                if tcp::tcp_state(&mut self.a, c) == Ok(TcpState::Established) {
                    return Ok((c, s));
                }
            }
        }
        Err("connection did not establish".into())
    }

    /// Frames both stacks put on the wire so far.
    pub(crate) fn frames(&self) -> u64 {
        self.a.devs[0].dev.stats().tx_packets + self.b.devs[0].dev.stats().tx_packets
    }

    /// Poll until every mbuf is back in the pool: an error if some never come back.
    pub(crate) fn drain(&mut self, what: &str) -> Result<(), String> {
        for _ in 0..10_000 {
            if self.pool.in_use() == 0 {
                return Ok(());
            }
            self.poll();
        }
        Err(format!(
            "{what}: {} mbufs still in use after the workload",
            self.pool.in_use()
        ))
    }
}

/// When a workload stops: after a time, or after a fixed amount of work (`--iters`).
#[derive(Clone, Copy)]
pub(crate) struct Limit {
    pub(crate) dur: Duration,
    pub(crate) iters: Option<u64>,
    /// bulk's socket buffers, bytes.
    pub(crate) buf: u32,
    /// The wire declares checksum offload (`--offload`).
    pub(crate) offload: bool,
}

impl Limit {
    /// True while the workload should go on, having done `done` units of work.
    pub(crate) fn more(&self, t0: Instant, done: u64) -> bool {
        match self.iters {
            Some(n) => done < n,
            None => t0.elapsed() < self.dur,
        }
    }
}

/// One result line (`blink bench --json`: `{"results": [{"workload", "peer", "value", "unit", ...}]}`).
pub struct BenchResult {
    pub workload: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub note: String,
    /// Units of work done in the timed part (MiB for bulk, transactions, connections,
    /// datagrams).
    pub work: f64,
    /// The unit of work `work` counts: "MiB", "trans", "conn", "dgram", "frag".
    pub per: &'static str,
    /// Frames put on the wire (both directions) in the timed part, where the peer can count
    /// them (linux-lo: lo's tx_packets, the whole host's).
    pub frames: Option<u64>,
    /// CPU seconds (user + system, the whole process: every thread) in the timed part.
    pub cpu_s: f64,
}

impl BenchResult {
    pub fn frames_per_unit(&self) -> Option<f64> {
        self.frames.map(|f| f as f64 / self.work.max(1e-9))
    }
    pub fn cpu_us_per_unit(&self) -> f64 {
        self.cpu_s * 1e6 / self.work.max(1e-9)
    }
}

/// A workload's outcome on one peer: a result, or why the peer cannot run it.
pub(crate) enum Outcome {
    Done(BenchResult),
    NotApplicable(&'static str),
}

/// CPU seconds (user + system) of the whole process so far.
pub(crate) fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes the struct it is given; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall clock and CPU time of a workload's timed part.
pub(crate) struct Meter {
    pub(crate) t0: Instant,
    cpu0: f64,
}

impl Meter {
    pub(crate) fn start() -> Meter {
        Meter {
            cpu0: cpu_secs(),
            t0: Instant::now(),
        }
    }
    /// Process CPU seconds when the meter started.
    pub(crate) fn cpu0(&self) -> f64 {
        self.cpu0
    }
    /// (elapsed seconds, CPU seconds).
    pub(crate) fn stop(&self) -> (f64, f64) {
        (self.t0.elapsed().as_secs_f64(), cpu_secs() - self.cpu0)
    }
}

// ---- What every peer sends, and the checks every receiver makes ----------------------------

/// Period of the bulk table: a prime, so that no shift by a power of two lines the stream up
/// with itself.
const PAT_PERIOD: usize = 65521;

/// The bulk byte stream both ends agree on: byte `i` is `table[i % P] ^ tag(i / P)`, with
/// the table from a 64-bit xorshift and a different tag for every pass over the table, so the
/// stream does not repeat at any power-of-two period (a segment delivered twice or at the
/// wrong offset fails the check), and the receiver checks every byte by its position.
pub(crate) struct Pattern {
    table: Vec<u8>,
}

fn pass_tag(q: u64) -> u8 {
    (q.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

impl Pattern {
    pub(crate) fn new() -> Pattern {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let table = (0..PAT_PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        Pattern { table }
    }

    /// Write the stream's bytes from position `pos` into `out`.
    pub(crate) fn fill(&self, pos: u64, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let p = pos + done as u64;
            let off = (p % PAT_PERIOD as u64) as usize;
            let tag = pass_tag(p / PAT_PERIOD as u64);
            let k = (PAT_PERIOD - off).min(out.len() - done);
            for (o, t) in out[done..done + k].iter_mut().zip(&self.table[off..off + k]) {
                *o = t ^ tag;
            }
            done += k;
        }
    }

    /// Check `buf` against the stream from position `pos`: Err(position of the first byte
    /// that differs).
    pub(crate) fn check(&self, pos: u64, buf: &[u8]) -> Result<(), u64> {
        let mut done = 0;
        while done < buf.len() {
            let p = pos + done as u64;
            let off = (p % PAT_PERIOD as u64) as usize;
            let tag = pass_tag(p / PAT_PERIOD as u64);
            let k = (PAT_PERIOD - off).min(buf.len() - done);
            let seg = &buf[done..done + k];
            let tab = &self.table[off..off + k];
            // An OR over the whole segment (vectorises), then the position if it failed.
            let diff = seg.iter().zip(tab).fold(0u8, |acc, (b, t)| acc | (b ^ t ^ tag));
            if diff != 0 {
                let i = seg.iter().zip(tab).position(|(b, t)| b ^ t ^ tag != 0).unwrap_or(0);
                return Err(p + i as u64);
            }
            done += k;
        }
        Ok(())
    }
}

/// Size of rr's and crr's messages.
pub(crate) const MSG: usize = 64;
/// `dir` of a request and of a response.
pub(crate) const REQ: u8 = b'Q';
pub(crate) const RESP: u8 = b'R';

/// Message `n` in direction `dir`: the number, the direction, then 55 bytes derived from
/// both (a xorshift seeded from them), so a stale, echoed or shifted message fails.
pub(crate) fn fill_msg(n: u64, dir: u8, out: &mut [u8; MSG]) {
    out[..8].copy_from_slice(&n.to_le_bytes());
    out[8] = dir;
    let mut x = (n ^ ((dir as u64) << 56)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in out[9..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Check a received message against message `n` in direction `dir`, whole.
pub(crate) fn check_msg(n: u64, dir: u8, buf: &[u8; MSG]) -> Result<(), String> {
    let mut want = [0u8; MSG];
    fill_msg(n, dir, &mut want);
    if *buf == want {
        return Ok(());
    }
    let i = buf.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
    let what = if dir == REQ { "request" } else { "response" };
    Err(format!("{what} {n}: byte {i} differs"))
}

/// Where datagram `seq`'s pattern bytes start in the stream (a different place per datagram).
fn dgram_pos(seq: u64) -> u64 {
    seq.wrapping_mul(7919)
}

/// Datagram `seq` of `out.len()` bytes: the number, then pattern bytes from a place that
/// moves with `seq`.
pub(crate) fn fill_dgram(pat: &Pattern, seq: u64, out: &mut [u8]) {
    out[..8].copy_from_slice(&seq.to_le_bytes());
    pat.fill(dgram_pos(seq), &mut out[8..]);
}

/// Check a received datagram: `len` bytes, a number in `next..sent` (in order: none
/// before one already seen), every byte. Returns its number.
pub(crate) fn check_dgram(pat: &Pattern, buf: &[u8], len: usize, next: u64, sent: u64) -> Result<u64, String> {
    if buf.len() != len {
        return Err(format!("datagram of {} bytes, not {len}", buf.len()));
    }
    let seq = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    if seq < next || seq >= sent {
        return Err(format!("datagram {seq} out of order (expected {next}..{sent})"));
    }
    pat.check(dgram_pos(seq), &buf[8..])
        .map_err(|p| format!("datagram {seq}: byte {} differs", p - dgram_pos(seq) + 8))?;
    Ok(seq)
}

/// The bulk sender's staging buffer: stream bytes from `pos`, regenerated when used up.
pub(crate) struct Stage {
    buf: Vec<u8>,
    pos: u64,
}

impl Stage {
    pub(crate) fn new() -> Stage {
        Stage {
            buf: Vec::new(),
            pos: 0,
        }
    }
    /// The stream's bytes from `sent` on (at least one).
    pub(crate) fn at(&mut self, pat: &Pattern, sent: u64) -> &[u8] {
        let end = self.pos + self.buf.len() as u64;
        if sent < self.pos || sent >= end {
            self.buf.resize(256 * 1024, 0);
            pat.fill(sent, &mut self.buf);
            self.pos = sent;
        }
        &self.buf[(sent - self.pos) as usize..]
    }
}

fn bulk(lim: Limit) -> Result<BenchResult, String> {
    let mut p = pair(
        TcpConfig {
            sndbuf: lim.buf,
            rcvbuf: lim.buf,
            ..Default::default()
        },
        lim,
    );
    let l = tcp::tcp_listen(&mut p.b, 5001, 16).map_err(|e| e.to_string())?;
    let (c, s) = p.connect(l, 5001)?;
    let pat = Pattern::new();
    let mut stage = Stage::new();
    let mut rbuf = vec![0u8; 256 * 1024];
    let (mut sent, mut rcvd) = (0u64, 0u64);
    let f0 = p.frames();
    let m = Meter::start();
    let mut sending = true;
    // Send until the time (or --iters) is up, then receive what is still in flight: every
    // byte sent is received and checked.
    while sending || rcvd < sent {
        sending = sending && lim.more(m.t0, rcvd >> 20);
        if sending {
            loop {
                let n = tcp::tcp_send(&mut p.a, c, stage.at(&pat, sent)).map_err(|e| e.to_string())?;
                sent += n as u64;
                if n == 0 {
                    break;
                }
            }
        }
        p.poll();
        loop {
            match tcp::tcp_recv(&mut p.b, s, &mut rbuf) {
                Ok(0) => return Err("unexpected end of stream".into()),
                Ok(n) => {
                    pat.check(rcvd, &rbuf[..n])
                        .map_err(|at| format!("data mismatch at byte {at}"))?;
                    rcvd += n as u64;
                }
                Err(TcpErr::WouldBlock) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    tcp::tcp_close(&mut p.a, c).map_err(|e| e.to_string())?;
    tcp::tcp_close(&mut p.b, s).map_err(|e| e.to_string())?;
    tcp::tcp_close(&mut p.b, l).map_err(|e| e.to_string())?;
    p.drain("bulk")?;
    let gbit = rcvd as f64 * 8.0 / el / 1e9;
    let retrans = p.a.core.mib.tcp[blink_glue::netcore::snmp::TcpMib::RetransSegs];
    Ok(BenchResult {
        workload: "bulk",
        value: gbit,
        unit: "Gbit/s",
        note: format!(
            "{} MiB verified in {:.2} s, {} KiB buffers, {} retransmits, 0 mbufs left",
            rcvd >> 20,
            el,
            lim.buf >> 10,
            retrans
        ),
        work: rcvd as f64 / (1u64 << 20) as f64,
        per: "MiB",
        frames: Some(frames),
        cpu_s: cpu,
    })
}

fn rr(lim: Limit) -> Result<BenchResult, String> {
    let mut p = pair(
        TcpConfig {
            nodelay: true,
            ..Default::default()
        },
        lim,
    );
    let l = tcp::tcp_listen(&mut p.b, 5002, 16).map_err(|e| e.to_string())?;
    let (c, s) = p.connect(l, 5002)?;
    let (mut req, mut resp, mut buf) = ([0u8; MSG], [0u8; MSG], [0u8; MSG]);
    let mut n_trans = 0u64;
    let f0 = p.frames();
    let m = Meter::start();
    while lim.more(m.t0, n_trans) {
        for _ in 0..64 {
            transact(&mut p, c, s, n_trans, &mut req, &mut resp, &mut buf)?;
            n_trans += 1;
        }
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    tcp::tcp_close(&mut p.a, c).map_err(|e| e.to_string())?;
    tcp::tcp_close(&mut p.b, s).map_err(|e| e.to_string())?;
    tcp::tcp_close(&mut p.b, l).map_err(|e| e.to_string())?;
    p.drain("rr")?;
    Ok(BenchResult {
        workload: "rr",
        value: n_trans as f64 / el,
        unit: "trans/s",
        note: format!("{n_trans} transactions of 64 B each way, each checked whole; 0 mbufs left"),
        work: n_trans as f64,
        per: "trans",
        frames: Some(frames),
        cpu_s: cpu,
    })
}

/// One transaction `n` on client `c` / server `s`: the client sends request `n`, the server
/// checks it whole and answers response `n`, the client checks that whole. Receive buffers
/// are cleared before each read.
pub(crate) fn transact(
    p: &mut Pair,
    c: SockHandle,
    s: SockHandle,
    n: u64,
    req: &mut [u8; MSG],
    resp: &mut [u8; MSG],
    buf: &mut [u8; MSG],
) -> Result<(), String> {
    fill_msg(n, REQ, req);
    if tcp::tcp_send(&mut p.a, c, req).map_err(|e| e.to_string())? != MSG {
        return Err("request not accepted".into());
    }
    *buf = [0; MSG];
    recv_exact(p, false, s, buf)?;
    check_msg(n, REQ, buf)?;
    fill_msg(n, RESP, resp);
    if tcp::tcp_send(&mut p.b, s, resp).map_err(|e| e.to_string())? != MSG {
        return Err("response not accepted".into());
    }
    *buf = [0; MSG];
    recv_exact(p, true, c, buf)?;
    check_msg(n, RESP, buf)
}

/// Poll until `buf.len()` bytes arrive on `h` (on A when `on_a`, else on B).
fn recv_exact(p: &mut Pair, on_a: bool, h: SockHandle, buf: &mut [u8]) -> Result<(), String> {
    let mut got = 0;
    for _ in 0..1_000_000 {
        p.poll();
        let st = if on_a { &mut p.a } else { &mut p.b };
        match tcp::tcp_recv(st, h, &mut buf[got..]) {
            Ok(0) => return Err("end of stream".into()),
            Ok(n) => {
                got += n;
                if got == buf.len() {
                    return Ok(());
                }
            }
            Err(TcpErr::WouldBlock) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("timed out waiting for data".into())
}

/// Poll until `h` reads end of stream (an error if data comes instead).
fn recv_eof(p: &mut Pair, on_a: bool, h: SockHandle) -> Result<(), String> {
    let mut b = [0u8; 16];
    for _ in 0..1_000_000 {
        p.poll();
        let st = if on_a { &mut p.a } else { &mut p.b };
        match tcp::tcp_recv(st, h, &mut b) {
            Ok(0) => return Ok(()),
            Ok(n) => return Err(format!("{n} bytes where the end of stream was expected")),
            Err(TcpErr::WouldBlock) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("timed out waiting for the end of stream".into())
}

fn crr(lim: Limit) -> Result<BenchResult, String> {
    // Short TIME-WAIT so the client's ports recycle within the run (TIME-WAIT reuse is not
    // implemented yet); everything else is the default configuration.
    let mut p = pair(
        TcpConfig {
            nodelay: true,
            timewait_ms: 10,
            ..Default::default()
        },
        lim,
    );
    let l = tcp::tcp_listen(&mut p.b, 5003, 4096).map_err(|e| e.to_string())?;
    let (mut req, mut resp, mut buf) = ([0u8; MSG], [0u8; MSG], [0u8; MSG]);
    let mut n = 0u64;
    let f0 = p.frames();
    let m = Meter::start();
    while lim.more(m.t0, n) {
        let (c, s) = p.connect(l, 5003)?;
        transact(&mut p, c, s, n, &mut req, &mut resp, &mut buf)?;
        // The client closes first; the connection counts once both FINs are acknowledged:
        // the client in TIME-WAIT (or closed) and the server closed.
        tcp::tcp_shutdown(&mut p.a, c).map_err(|e| e.to_string())?;
        recv_eof(&mut p, false, s)?;
        tcp::tcp_shutdown(&mut p.b, s).map_err(|e| e.to_string())?;
        recv_eof(&mut p, true, c)?;
        let mut closed = false;
        for _ in 0..100_000 {
            let sc = tcp::tcp_state(&mut p.a, c).map_err(|e| e.to_string())?;
            let ss = tcp::tcp_state(&mut p.b, s).map_err(|e| e.to_string())?;
            if matches!(sc, TcpState::TimeWait | TcpState::Closed) && ss == TcpState::Closed {
                closed = true;
                break;
            }
            p.poll();
        }
        if !closed {
            return Err(format!("connection {n}: close did not complete at both ends"));
        }
        tcp::tcp_close(&mut p.a, c).map_err(|e| e.to_string())?;
        tcp::tcp_close(&mut p.b, s).map_err(|e| e.to_string())?;
        n += 1;
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    tcp::tcp_close(&mut p.b, l).map_err(|e| e.to_string())?;
    // TIME-WAIT (10 ms) ends on the timer: wait it out before counting the mbufs.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(50) {
        p.poll();
    }
    p.drain("crr")?;
    Ok(BenchResult {
        workload: "crr",
        value: n as f64 / el,
        unit: "conn/s",
        note: format!("{n} connections, 64 B each way checked whole, each closed at both ends; 0 mbufs left"),
        work: n as f64,
        per: "conn",
        frames: Some(frames),
        cpu_s: cpu,
    })
}

/// udp and frag: datagrams of `len` bytes one way, `burst` per round.
fn dgrams_oneway(lim: Limit, len: usize, burst: usize) -> Result<(BenchResult, Pair), String> {
    let mut p = pair(TcpConfig::default(), lim);
    udp::udp_init(&mut p.a, UdpConfig::default());
    udp::udp_init(&mut p.b, UdpConfig::default());
    let e = |e: UdpErr| e.to_string();
    let rx = udp::udp_socket(&mut p.b).map_err(e)?;
    let dst = std::net::SocketAddrV4::new(B_IP, 5004);
    udp::udp_bind(&mut p.b, rx, dst).map_err(e)?;
    let tx = udp::udp_socket(&mut p.a).map_err(e)?;
    udp::udp_connect(&mut p.a, tx, dst).map_err(e)?;
    let pat = Pattern::new();
    let (mut out, mut buf) = (vec![0u8; len], vec![0u8; len + 1]);
    let (mut sent, mut rcvd, mut lost) = (0u64, 0u64, 0u64);
    let f0 = p.frames();
    let m = Meter::start();
    while lim.more(m.t0, rcvd / 1000) {
        // One receive burst's worth per round: the receiver drains its socket every round,
        // so its buffer never overflows in the steady state (losses would be counted below).
        for _ in 0..burst {
            fill_dgram(&pat, sent, &mut out);
            udp::udp_sendmsg(&mut p.a, tx, &out, None).map_err(e)?;
            sent += 1;
        }
        p.poll();
        loop {
            buf.fill(0);
            match udp::udp_recvmsg(&mut p.b, rx, &mut buf) {
                Ok(r) => {
                    let seq = check_dgram(&pat, &buf[..r.len], len, rcvd + lost, sent)?;
                    lost += seq - (rcvd + lost);
                    rcvd += 1;
                }
                Err(UdpErr::WouldBlock) => break,
                Err(err) => return Err(err.to_string()),
            }
        }
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    udp::udp_close(&mut p.a, tx).map_err(e)?;
    udp::udp_close(&mut p.b, rx).map_err(e)?;
    let r = BenchResult {
        workload: "udp",
        value: rcvd as f64 / el,
        unit: "pkt/s",
        note: format!("{rcvd} datagrams of {len} B verified, {lost} lost"),
        work: rcvd as f64,
        per: "dgram",
        frames: Some(frames),
        cpu_s: cpu,
    };
    Ok((r, p))
}

fn udp_oneway(lim: Limit) -> Result<BenchResult, String> {
    let (mut r, mut p) = dgrams_oneway(lim, 64, 32)?;
    p.drain("udp")?;
    r.note.push_str("; 0 mbufs left");
    Ok(r)
}

/// Payload of the frag workload: over the 1500-byte MTU, so each datagram leaves as three
/// fragments (1480 + 1480 + 1048 bytes of IP payload) and is reassembled by the receiver.
pub(crate) const FRAG_DGRAM: usize = 4000;

/// frag: 4,000-byte UDP datagrams one way over MTU 1500: fragmented by A (zero copy),
/// reassembled by B, every byte and the order checked.
fn frag_oneway(lim: Limit) -> Result<BenchResult, String> {
    // Eight datagrams (24 fragments) per round: within one receive burst, and within the
    // receiving socket's buffer (a reassembled datagram holds six mbufs).
    let (mut r, mut p) = dgrams_oneway(lim, FRAG_DGRAM, 8)?;
    p.drain("frag")?;
    use blink_glue::netcore::snmp::IpMib;
    let (frags, reasm) = (
        p.a.core.mib.ip.get(IpMib::FragCreates),
        p.b.core.mib.ip.get(IpMib::ReasmOKs),
    );
    r.workload = "frag";
    r.unit = "dgram/s";
    r.note
        .push_str(&format!(", {frags} fragments sent, {reasm} reassembled; 0 mbufs left"));
    Ok(r)
}

/// fragflood: A floods B with fragments of datagrams that never complete (random ids, a raw
/// IP_HDRINCL socket) while a TCP connection carries a request/response every round. Figures:
/// flood fragments B absorbed per second, and B's peak reassembly memory against
/// `ipfrag_high_thresh`; the TCP exchange must go on (every response checked) and every queue
/// must be gone after `ipfrag_time`.
fn frag_flood(lim: Limit) -> Result<BenchResult, String> {
    use blink_glue::netcore::snmp::{DropReason, IpMib};
    use blink_glue::raw::{self, RawConfig};
    let mut p = pair_with(
        TcpConfig {
            nodelay: true,
            ..Default::default()
        },
        lim,
        true,
    );
    raw::raw_init(&mut p.a, RawConfig::default());
    let flood = raw::raw_socket(&mut p.a, 255).map_err(|e| e.to_string())?;
    let l = tcp::tcp_listen(&mut p.b, 5003, 16).map_err(|e| e.to_string())?;
    let (c, s) = p.connect(l, 5003)?;
    let high = p.b.cfg.ipfrag_high_thresh;
    let mut frag = [0u8; 20 + 64];
    frag[0] = 0x45;
    frag[2..4].copy_from_slice(&(84u16).to_be_bytes());
    frag[8] = 64;
    frag[9] = 17;
    frag[16..20].copy_from_slice(&B_IP.octets());
    let (mut x, mut sent, mut rounds, mut peak) = (0x9e37_79b9u32, 0u64, 0u64, 0usize);
    let mut req = [0u8; MSG];
    let f0 = p.frames();
    let m = Meter::start();
    while lim.more(m.t0, sent / 1000) {
        for _ in 0..32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            frag[4..6].copy_from_slice(&(x as u16).to_be_bytes());
            frag[6..8].copy_from_slice(&(0x2000 | ((x >> 16) as u16 & 0x1fff)).to_be_bytes());
            raw::raw_sendmsg(&mut p.a, flood, &frag, Some(B_IP)).map_err(|e| e.to_string())?;
            sent += 1;
        }
        // One request/response per round beside the flood: B checks request `rounds` whole
        // and answers response `rounds`, A checks that whole (buffers cleared first).
        fill_msg(rounds, REQ, &mut req);
        tcp::tcp_send(&mut p.a, c, &req).map_err(|e| e.to_string())?;
        let (mut at_b, mut at_a, mut spins) = (0, 0, 0);
        let mut resp = [0u8; 64];
        let mut mid = [0u8; 64];
        while at_a < 64 {
            p.poll();
            peak = peak.max(p.b.frags.mem());
            if at_b < 64 {
                match tcp::tcp_recv(&mut p.b, s, &mut mid[at_b..]) {
                    Ok(n) => {
                        at_b += n;
                        if at_b == 64 {
                            check_msg(rounds, REQ, &mid)?;
                            fill_msg(rounds, RESP, &mut mid);
                            tcp::tcp_send(&mut p.b, s, &mid).map_err(|e| e.to_string())?;
                        }
                    }
                    Err(TcpErr::WouldBlock) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            match tcp::tcp_recv(&mut p.a, c, &mut resp[at_a..]) {
                Ok(n) => at_a += n,
                Err(TcpErr::WouldBlock) => {}
                Err(e) => return Err(e.to_string()),
            }
            spins += 1;
            if spins > 100_000 {
                return Err("fragflood: a request/response did not get through the flood".into());
            }
        }
        check_msg(rounds, RESP, &resp)?;
        rounds += 1;
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    let absorbed = p.b.core.mib.ip.get(IpMib::ReasmReqds);
    let evicted = p.b.core.mib.drops[DropReason::FragMemLimit];
    if peak > high {
        return Err(format!(
            "fragflood: reassembly memory {peak} above ipfrag_high_thresh {high}"
        ));
    }
    let queues = p.b.frags.queues();
    tcp::tcp_close(&mut p.a, c).map_err(|e| e.to_string())?;
    tcp::tcp_close(&mut p.b, s).map_err(|e| e.to_string())?;
    tcp::tcp_close(&mut p.b, l).map_err(|e| e.to_string())?;
    raw::raw_close(&mut p.a, flood).map_err(|e| e.to_string())?;
    // The flood's incomplete queues hold mbufs until ipfrag_time: jump the clock past it,
    // then every queue must be gone and every mbuf back.
    p.skew_ns += (p.b.cfg.ipfrag_time_ms + 1000) * 1_000_000;
    p.drain("fragflood")?;
    if p.b.frags.queues() != 0 {
        return Err(format!(
            "fragflood: {} reassembly queues left after ipfrag_time",
            p.b.frags.queues()
        ));
    }
    Ok(BenchResult {
        workload: "fragflood",
        value: absorbed as f64 / el,
        unit: "frag/s",
        note: format!(
            "{absorbed} flood fragments absorbed, {evicted} evicted, peak {} KiB of {} KiB, {queues} queues left for ipfrag_time; {rounds} TCP round trips checked during it",
            peak >> 10,
            high >> 10
        ),
        work: sent as f64,
        per: "frag",
        frames: Some(frames),
        cpu_s: cpu,
    })
}

/// The peers `--peer` accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Peer {
    Blink,
    Smoltcp,
    LinuxLo,
    LinuxVeth,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Blink => "blink",
            Peer::Smoltcp => "smoltcp",
            Peer::LinuxLo => "linux-lo",
            Peer::LinuxVeth => "linux-veth",
        }
    }
}

/// Parse `--peer LIST`: known names, none twice, at least one.
pub fn parse_peers(list: &str) -> Result<Vec<Peer>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let p = match name {
            "blink" => Peer::Blink,
            "smoltcp" => Peer::Smoltcp,
            "linux-lo" => Peer::LinuxLo,
            "linux-veth" => Peer::LinuxVeth,
            _ => {
                return Err(format!(
                    "--peer: unknown peer `{name}` (blink, smoltcp, linux-lo, linux-veth)"
                ))
            }
        };
        if out.contains(&p) {
            return Err(format!("--peer: `{name}` given twice"));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err("--peer: no peer given (blink, smoltcp, linux-lo, linux-veth)".into());
    }
    Ok(out)
}

const WORKLOADS: [&str; 8] = ["bulk", "rr", "crr", "udp", "frag", "fragflood", "conns", "timers"];

/// What the conns and timers workloads report beyond their table row.
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) conns: Option<Vec<crate::bench_conns::ConnsPoint>>,
    pub(crate) timers: Option<crate::bench_conns::TimersReport>,
}

fn run_blink(w: &str, lim: Limit, conns: &[usize], extras: &mut Extras) -> Result<Outcome, String> {
    let r = match w {
        "conns" => crate::bench_conns::conns(conns, lim).map(|(r, points)| {
            extras.conns = Some(points);
            r
        }),
        "timers" => crate::bench_conns::timers(lim).map(|(r, report)| {
            extras.timers = Some(report);
            r
        }),
        "bulk" => bulk(lim),
        "rr" => rr(lim),
        "crr" => crr(lim),
        "udp" => udp_oneway(lim),
        "frag" => frag_oneway(lim),
        "fragflood" => frag_flood(lim),
        _ => unreachable!("workload names are checked before running"),
    };
    r.map(Outcome::Done)
}

fn run_one(peer: Peer, w: &str, lim: Limit, conns: &[usize], extras: &mut Extras) -> Result<Outcome, String> {
    match peer {
        Peer::Blink => run_blink(w, lim, conns, extras),
        Peer::Smoltcp => crate::bench_smoltcp::run(w, lim),
        Peer::LinuxLo => crate::bench_linux::run(w, lim),
        Peer::LinuxVeth => crate::bench_linux::run_veth(w, lim),
    }
}

/// `12.3`, `0.456`, `1.23 M`: three significant figures or so.
fn fmt_value(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.3} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The text table: per workload a line of values and blink's ratios, a line of frames per
/// unit of work and a line of CPU microseconds per unit; then every result's note.
fn print_table(peers: &[Peer], rows: &[(&str, Vec<Outcome>)], offload: bool) {
    const W: usize = 24;
    let others: Vec<Peer> = if peers.contains(&Peer::Blink) {
        peers.iter().copied().filter(|p| *p != Peer::Blink).collect()
    } else {
        Vec::new()
    };
    let mut head = format!("{:<10}", "workload");
    for p in peers {
        head.push_str(&format!(" {:<W$}", p.name()));
    }
    for o in &others {
        head.push_str(&format!(" {:>16}", format!("blink/{}", o.name())));
    }
    println!("{}", head.trim_end());
    let blink_at = peers.iter().position(|p| *p == Peer::Blink);
    for (w, outs) in rows {
        let mut l1 = format!("{w:<10}");
        let mut l2 = format!("{:<10}", "");
        let mut l3 = format!("{:<10}", "");
        for o in outs {
            match o {
                Outcome::Done(r) => {
                    l1.push_str(&format!(" {:<W$}", format!("{} {}", fmt_value(r.value), r.unit)));
                    let f = match r.frames_per_unit() {
                        Some(f) => format!("{f:.2} frames/{}", r.per),
                        None => "frames: -".into(),
                    };
                    l2.push_str(&format!(" {f:<W$}"));
                    l3.push_str(&format!(
                        " {:<W$}",
                        format!("{:.3} CPU-us/{}", r.cpu_us_per_unit(), r.per)
                    ));
                }
                Outcome::NotApplicable(why) => {
                    l1.push_str(&format!(" {:<W$}", format!("n/a ({why})")));
                    l2.push_str(&format!(" {:<W$}", ""));
                    l3.push_str(&format!(" {:<W$}", ""));
                }
            }
        }
        for o in &others {
            let i = peers.iter().position(|p| p == o).expect("listed");
            let ratio = match (blink_at.map(|b| &outs[b]), &outs[i]) {
                (Some(Outcome::Done(b)), Outcome::Done(x)) if x.value > 0.0 => {
                    format!("{:.2}x", b.value / x.value)
                }
                _ => "-".into(),
            };
            l1.push_str(&format!(" {ratio:>16}"));
        }
        println!("{}", l1.trim_end());
        println!("{}", l2.trim_end());
        println!("{}", l3.trim_end());
    }
    println!();
    for (w, outs) in rows {
        for (p, o) in peers.iter().zip(outs) {
            if let Outcome::Done(r) = o {
                let csum = if offload && *p == Peer::Blink {
                    "; checksum offload"
                } else {
                    ""
                };
                println!("{w}/{}: {}{csum}", p.name(), r.note);
            }
        }
    }
}

pub fn run(a: BenchArgs) -> Result<(), SetupError> {
    if !(a.secs > 0.0 && a.secs.is_finite()) {
        return Err(usage("--secs: must be a positive number").into());
    }
    if !(4..=1 << 20).contains(&a.buf) {
        return Err(usage("--buf: must be between 4 and 1048576 KiB").into());
    }
    if a.iters == Some(0) {
        return Err(usage("--iters: must be at least 1").into());
    }
    let peers = parse_peers(&a.peer).map_err(usage)?;
    let conns = match &a.conns {
        Some(list) => crate::bench_conns::parse_conns(list).map_err(usage)?,
        None => crate::bench_conns::default_conns(a.quick),
    };
    if a.plot.is_some() && a.cores.is_some() {
        return Err(usage("--plot: not available with --cores").into());
    }
    if let Some(dir) = &a.plot {
        // Before the runs, so that a bad directory fails at once and not after them.
        std::fs::create_dir_all(dir).map_err(|e| usage(format!("--plot: cannot create {}: {e}", dir.display())))?;
    }
    if let Some(cores) = &a.cores {
        return crate::bench_cores::run(&a, cores);
    }
    let secs = if a.quick { a.secs.min(0.5) } else { a.secs };
    let lim = Limit {
        dur: Duration::from_secs_f64(secs),
        iters: a.iters,
        buf: a.buf.saturating_mul(1024),
        offload: a.offload,
    };
    let workloads: Vec<&'static str> = {
        let mut v = Vec::new();
        let list = a.workloads.as_deref().unwrap_or("bulk,rr,crr,udp,frag");
        for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match WORKLOADS.iter().find(|k| **k == w) {
                Some(k) => v.push(*k),
                None => {
                    return Err(usage(format!(
                        "--workloads: unknown workload `{w}` (bulk, rr, crr, udp, frag, fragflood, conns, timers)"
                    ))
                    .into())
                }
            }
        }
        v
    };
    let mut rows: Vec<(&str, Vec<Outcome>)> = Vec::new();
    let mut extras = Extras::default();
    for w in workloads {
        let mut outs = Vec::new();
        for &peer in &peers {
            if !a.json {
                eprintln!("bench: {w} on {}...", peer.name());
            }
            let o = run_one(peer, w, lim, &conns, &mut extras)
                .map_err(|e| SetupError::Runtime(format!("bench {w} ({}): {e}", peer.name())))?;
            outs.push(o);
        }
        rows.push((w, outs));
    }
    if a.json {
        let mut items: Vec<String> = Vec::new();
        for (w, outs) in &rows {
            for (p, o) in peers.iter().zip(outs) {
                let Outcome::Done(r) = o else { continue };
                let frames = match r.frames_per_unit() {
                    Some(f) => format!("{f:.3}"),
                    None => "null".into(),
                };
                items.push(format!(
                    "{{\"workload\": \"{w}\", \"peer\": \"{}\", \"value\": {:.3}, \"unit\": \"{}\", \"per\": \"{}\", \"frames_per_unit\": {frames}, \"cpu_us_per_unit\": {:.4}}}",
                    p.name(),
                    r.value,
                    r.unit,
                    r.per,
                    r.cpu_us_per_unit()
                ));
            }
        }
        let mut extra = String::new();
        if let Some(points) = &extras.conns {
            extra.push_str(&format!(", \"conns\": {}", crate::bench_conns::conns_json(points)));
        }
        if let Some(t) = &extras.timers {
            extra.push_str(&format!(", \"timers\": {}", crate::bench_conns::timers_json(t)));
        }
        println!("{{\"results\": [{}]{extra}}}", items.join(", "));
    } else {
        print_table(&peers, &rows, a.offload);
        if let Some(points) = &extras.conns {
            crate::bench_conns::print_conns(points);
        }
        if let Some(t) = &extras.timers {
            crate::bench_conns::print_timers(t);
        }
    }
    if let Some(dir) = &a.plot {
        let files = crate::bench_plot::write_plots(dir, &peers, &rows, extras.conns.as_deref())
            .map_err(|e| SetupError::Runtime(format!("--plot {}: {e}", dir.display())))?;
        for f in files {
            eprintln!("bench: wrote {}", f.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every check accepts what the sender produced and rejects it with any one byte flipped.
    #[test]
    fn bulk_check_fails_on_one_flipped_byte() {
        let pat = Pattern::new();
        // Across a pass boundary of the table, at an odd position.
        let pos = PAT_PERIOD as u64 * 3 - 1000;
        let mut buf = vec![0u8; 5000];
        pat.fill(pos, &mut buf);
        assert_eq!(pat.check(pos, &buf), Ok(()));
        for i in [0, 1, 999, 1000, 2500, 4999] {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert_eq!(pat.check(pos, &bad), Err(pos + i as u64), "byte {i}");
        }
    }

    /// The stream does not line up with itself at any power-of-two shift (a segment
    /// delivered twice, or at the wrong offset, fails), nor one table period later.
    #[test]
    fn bulk_pattern_has_no_power_of_two_period() {
        let pat = Pattern::new();
        let mut a = vec![0u8; 4096];
        pat.fill(12345, &mut a);
        for k in 0..40 {
            assert!(pat.check(12345 + (1u64 << k), &a).is_err(), "shift 2^{k}");
        }
        assert!(pat.check(12345 + PAT_PERIOD as u64, &a).is_err(), "shift of one period");
    }

    #[test]
    fn msg_check_fails_on_one_flipped_byte() {
        for (n, dir) in [(0u64, REQ), (7, RESP), (123_456_789, REQ)] {
            let mut m = [0u8; MSG];
            fill_msg(n, dir, &mut m);
            assert_eq!(check_msg(n, dir, &m), Ok(()));
            for i in 0..MSG {
                let mut bad = m;
                bad[i] ^= 0x80;
                assert!(check_msg(n, dir, &bad).is_err(), "message {n} byte {i}");
            }
            // Neither another transaction's message nor the other direction passes.
            assert!(check_msg(n + 1, dir, &m).is_err());
            let other = if dir == REQ { RESP } else { REQ };
            assert!(check_msg(n, other, &m).is_err());
        }
    }

    #[test]
    fn dgram_check_fails_on_one_flipped_byte() {
        let pat = Pattern::new();
        for len in [64, FRAG_DGRAM] {
            let mut d = vec![0u8; len];
            fill_dgram(&pat, 41, &mut d);
            assert_eq!(check_dgram(&pat, &d, len, 40, 50), Ok(41));
            for i in [0, 7, 8, 9, len / 2, len - 1] {
                let mut bad = d.clone();
                bad[i] ^= 0x10;
                assert!(check_dgram(&pat, &bad, len, 0, 1 << 40).is_err(), "{len} B byte {i}");
            }
            // Out of order, not yet sent, or the wrong length.
            assert!(check_dgram(&pat, &d, len, 42, 50).is_err());
            assert!(check_dgram(&pat, &d, len, 0, 41).is_err());
            assert!(check_dgram(&pat, &d[..len - 1], len, 0, 50).is_err());
        }
    }

    #[test]
    fn stage_hands_out_the_stream_in_order() {
        let pat = Pattern::new();
        let mut st = Stage::new();
        let mut sent = 0u64;
        let mut all = Vec::new();
        // Take odd amounts, as a socket's send would accept.
        for take in [1usize, 70_000, 300_000, 3, 65_521] {
            let s = st.at(&pat, sent);
            let k = take.min(s.len());
            all.extend_from_slice(&s[..k]);
            sent += k as u64;
        }
        assert_eq!(pat.check(0, &all), Ok(()));
    }

    #[test]
    fn peers_parse() {
        assert_eq!(
            parse_peers("blink,smoltcp,linux-lo"),
            Ok(vec![Peer::Blink, Peer::Smoltcp, Peer::LinuxLo])
        );
        assert_eq!(parse_peers("linux-veth, blink"), Ok(vec![Peer::LinuxVeth, Peer::Blink]));
        assert!(parse_peers("linux-veth,linux-veth").is_err());
        assert!(parse_peers("nonsense").unwrap_err().contains("--peer"));
        assert!(parse_peers("blink,blink").is_err());
        assert!(parse_peers("").is_err());
    }
}
