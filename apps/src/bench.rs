//! `blink bench`: workloads between two blink stacks joined by the in-memory wire and polled by
//! one thread (the arrangement PERFORMANCE.md measures smoltcp in), each verifying its data.
//!
//! - bulk: one TCP connection moving data one way; the receiver checks every byte.
//! - rr: 64-byte request / 64-byte response on one connection (TCP_NODELAY).
//! - crr: connect, 64 bytes each way, close, repeated.
//! - udp: 64-byte datagrams one way; the receiver checks every byte and the order.
//! - frag: 4,000-byte UDP datagrams one way over MTU 1500 (three fragments each), reassembled
//!   by the receiver, every byte and the order checked.
//! - fragflood: never-completed fragments with random ids at full speed beside a checked TCP
//!   request/response; flood fragments absorbed per second and peak reassembly memory.
//!
//! Figures only: nothing here asserts a time.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use blink_glue::ipv4::{Stack, StackConfig};
use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::jiffies::Clock;
use blink_glue::netcore::sock::SockHandle;
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::tcp::{self, TcpConfig, TcpErr, TcpState};
use blink_glue::udp::{self, UdpConfig, UdpErr};
use clap::Args;

use crate::args::usage;
use crate::setup::SetupError;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Seconds per workload.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Workloads to run (comma-separated): bulk, rr, crr, udp, frag, fragflood [default: all
    /// but fragflood;
    /// with --cores: rr,crr].
    #[arg(long)]
    pub workloads: Option<String>,
    /// Stop each workload after this much work instead of after --secs: MiB for bulk,
    /// transactions for rr, connections for crr, thousands of datagrams for udp. A fixed amount of work gives stable
    /// instruction counts under `valgrind --tool=callgrind`.
    #[arg(long)]
    pub iters: Option<u64>,
    /// bulk: send and receive buffer of each end, KiB. The default, 256 KiB, is the
    /// arrangement PERFORMANCE.md measured smoltcp in, so the figures compare directly.
    #[arg(long, default_value_t = 256)]
    pub buf: u32,
    /// Let the in-memory wire declare TCP/UDP checksum offload, as veth does (checksums left
    /// partial by the sender, frames marked verified on arrival). Off by default: smoltcp's
    /// figures in PERFORMANCE.md were taken with software checksums.
    #[arg(long)]
    pub offload: bool,
    /// Print `{"results": [...]}` JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Scaling over stack cores instead (e.g. `1,2`): rr and crr over 64 connections for each
    /// core count, with the ratio to the first (see bench_cores.rs).
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,
    /// With --cores: steering mode of both stacks, rss (a queue per core on the wire) or
    /// poller (a single-queue wire; core 0's loop runs the poller and load balancer).
    #[arg(long, default_value = "rss", value_parser = ["rss", "poller"])]
    pub mode: String,
}

const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

struct Pair {
    a: Stack,
    b: Stack,
    pool: Mempool,
}

fn pair(cfg: TcpConfig, lim: Limit) -> Pair {
    let pool = Mempool::new(&MempoolConfig {
        name: "bench".into(),
        n: 65536,
        ..Default::default()
    })
    .expect("static pool config");
    let clock = Clock::monotonic();
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
    Pair { a, b, pool }
}

impl Pair {
    fn poll(&mut self) {
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
}

/// When a workload stops: after a time, or after a fixed amount of work (`--iters`).
#[derive(Clone, Copy)]
struct Limit {
    dur: Duration,
    iters: Option<u64>,
    /// bulk's socket buffers, bytes.
    buf: u32,
    /// The wire declares checksum offload (`--offload`).
    offload: bool,
}

impl Limit {
    /// True while the workload should go on, having done `done` units of work.
    fn more(&self, t0: Instant, done: u64) -> bool {
        match self.iters {
            Some(n) => done < n,
            None => t0.elapsed() < self.dur,
        }
    }
}

/// One result line (DESIGN.md's `blink bench --json` schema).
pub struct BenchResult {
    pub workload: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub note: String,
}

/// The repeating byte pattern both ends agree on: the receiver compares against it.
fn pattern() -> Vec<u8> {
    (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
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
    let pat = pattern();
    let mut rbuf = vec![0u8; 256 * 1024];
    let (mut sent, mut rcvd) = (0usize, 0usize);
    let t0 = Instant::now();
    while lim.more(t0, (rcvd >> 20) as u64) {
        loop {
            let off = sent % pat.len();
            let n = tcp::tcp_send(&mut p.a, c, &pat[off..]).map_err(|e| e.to_string())?;
            sent += n;
            if n == 0 {
                break;
            }
        }
        p.poll();
        loop {
            match tcp::tcp_recv(&mut p.b, s, &mut rbuf) {
                Ok(0) => return Err("unexpected end of stream".into()),
                Ok(n) => {
                    // Verify every byte against the pattern (two slices when it wraps).
                    let mut done = 0;
                    while done < n {
                        let off = (rcvd + done) % pat.len();
                        let k = (pat.len() - off).min(n - done);
                        if rbuf[done..done + k] != pat[off..off + k] {
                            return Err(format!("bulk: data mismatch at byte {}", rcvd + done));
                        }
                        done += k;
                    }
                    rcvd += n;
                }
                Err(TcpErr::WouldBlock) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let _ = (tcp::tcp_close(&mut p.a, c), tcp::tcp_close(&mut p.b, s));
    let gbit = rcvd as f64 * 8.0 / el / 1e9;
    let retrans = p.a.core.mib.tcp[blink_glue::netcore::snmp::TcpMib::RetransSegs];
    Ok(BenchResult {
        workload: "bulk",
        value: gbit,
        unit: "Gbit/s",
        note: format!(
            "{} MiB verified in {:.2} s, {} KiB buffers, {} retransmits",
            rcvd >> 20,
            el,
            lim.buf >> 10,
            retrans
        ),
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
    let req = [0x5au8; 64];
    let mut buf = [0u8; 64];
    let mut n_trans = 0u64;
    let t0 = Instant::now();
    while lim.more(t0, n_trans) {
        for _ in 0..64 {
            if tcp::tcp_send(&mut p.a, c, &req).map_err(|e| e.to_string())? != 64 {
                return Err("rr: request not accepted".into());
            }
            recv_exact(&mut p, false, s, &mut buf)?;
            if buf != req {
                return Err("rr: request corrupted".into());
            }
            tcp::tcp_send(&mut p.b, s, &buf).map_err(|e| e.to_string())?;
            recv_exact(&mut p, true, c, &mut buf)?;
            if buf != req {
                return Err("rr: response corrupted".into());
            }
            n_trans += 1;
        }
    }
    let el = t0.elapsed().as_secs_f64();
    Ok(BenchResult {
        workload: "rr",
        value: n_trans as f64 / el,
        unit: "trans/s",
        note: format!("{n_trans} transactions of 64 B each way"),
    })
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
    let req = [0xa5u8; 64];
    let mut buf = [0u8; 64];
    let mut n = 0u64;
    let t0 = Instant::now();
    while lim.more(t0, n) {
        let (c, s) = p.connect(l, 5003)?;
        tcp::tcp_send(&mut p.a, c, &req).map_err(|e| e.to_string())?;
        recv_exact(&mut p, false, s, &mut buf)?;
        tcp::tcp_send(&mut p.b, s, &buf).map_err(|e| e.to_string())?;
        recv_exact(&mut p, true, c, &mut buf)?;
        if buf != req {
            return Err("crr: data corrupted".into());
        }
        tcp::tcp_close(&mut p.a, c).map_err(|e| e.to_string())?;
        tcp::tcp_close(&mut p.b, s).map_err(|e| e.to_string())?;
        n += 1;
    }
    let el = t0.elapsed().as_secs_f64();
    for _ in 0..1000 {
        p.poll();
    }
    Ok(BenchResult {
        workload: "crr",
        value: n as f64 / el,
        unit: "conn/s",
        note: format!("{n} connections, 64 B each way; {} mbufs in use after", p.pool.in_use()),
    })
}

/// The 64-byte datagram number `seq`: the number itself, then 56 bytes of `pat` at an offset
/// that moves with `seq`, so the receiver can check both the order and every byte (a slice
/// copy and compare: the bench must not cost more than the stack it measures).
fn datagram(pat: &[u8], seq: u64, out: &mut [u8; 64]) {
    out[..8].copy_from_slice(&seq.to_le_bytes());
    let off = (seq as usize).wrapping_mul(8) % (pat.len() - 56);
    out[8..].copy_from_slice(&pat[off..off + 56]);
}

fn udp_oneway(lim: Limit) -> Result<BenchResult, String> {
    let mut p = pair(TcpConfig::default(), lim);
    udp::udp_init(&mut p.a, UdpConfig::default());
    udp::udp_init(&mut p.b, UdpConfig::default());
    let e = |e: UdpErr| e.to_string();
    let rx = udp::udp_socket(&mut p.b).map_err(e)?;
    let dst = std::net::SocketAddrV4::new(B_IP, 5004);
    udp::udp_bind(&mut p.b, rx, dst).map_err(e)?;
    let tx = udp::udp_socket(&mut p.a).map_err(e)?;
    udp::udp_connect(&mut p.a, tx, dst).map_err(e)?;
    let pat = pattern();
    let (mut out, mut want, mut buf) = ([0u8; 64], [0u8; 64], [0u8; 128]);
    let (mut sent, mut rcvd, mut lost) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while lim.more(t0, rcvd / 1000) {
        // One receive burst's worth per round: the receiver drains its socket every round,
        // so its buffer never overflows in the steady state (losses would be counted below).
        for _ in 0..32 {
            datagram(&pat, sent, &mut out);
            udp::udp_sendmsg(&mut p.a, tx, &out, None).map_err(e)?;
            sent += 1;
        }
        p.poll();
        loop {
            match udp::udp_recvmsg(&mut p.b, rx, &mut buf) {
                Ok(r) => {
                    if r.len != 64 {
                        return Err(format!("udp: datagram of {} bytes", r.len));
                    }
                    let seq = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                    if seq < rcvd + lost || seq >= sent {
                        return Err(format!("udp: datagram {seq} out of order"));
                    }
                    lost += seq - (rcvd + lost);
                    datagram(&pat, seq, &mut want);
                    if buf[..64] != want {
                        return Err(format!("udp: datagram {seq} corrupted"));
                    }
                    rcvd += 1;
                }
                Err(UdpErr::WouldBlock) => break,
                Err(err) => return Err(err.to_string()),
            }
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let _ = (udp::udp_close(&mut p.a, tx), udp::udp_close(&mut p.b, rx));
    for _ in 0..100 {
        p.poll();
    }
    Ok(BenchResult {
        workload: "udp",
        value: rcvd as f64 / el,
        unit: "pkt/s",
        note: format!(
            "{rcvd} datagrams of 64 B verified, {lost} lost; {} mbufs in use after",
            p.pool.in_use()
        ),
    })
}

/// Payload of the frag workload: over the 1500-byte MTU, so each datagram leaves as three
/// fragments (1480 + 1480 + 1048 bytes of IP payload) and is reassembled by the receiver.
const FRAG_DGRAM: usize = 4000;

/// frag: 4,000-byte UDP datagrams one way over MTU 1500: fragmented by A (zero copy),
/// reassembled by B, every byte and the order checked.
fn frag_oneway(lim: Limit) -> Result<BenchResult, String> {
    let mut p = pair(TcpConfig::default(), lim);
    udp::udp_init(&mut p.a, UdpConfig::default());
    udp::udp_init(&mut p.b, UdpConfig::default());
    let e = |e: UdpErr| e.to_string();
    let rx = udp::udp_socket(&mut p.b).map_err(e)?;
    let dst = std::net::SocketAddrV4::new(B_IP, 5004);
    udp::udp_bind(&mut p.b, rx, dst).map_err(e)?;
    let tx = udp::udp_socket(&mut p.a).map_err(e)?;
    udp::udp_connect(&mut p.a, tx, dst).map_err(e)?;
    let pat = pattern();
    let (mut out, mut buf) = (vec![0u8; FRAG_DGRAM], vec![0u8; FRAG_DGRAM + 1]);
    let fill = |seq: u64, out: &mut [u8]| {
        out[..8].copy_from_slice(&seq.to_le_bytes());
        let off = (seq as usize).wrapping_mul(8) % (pat.len() - FRAG_DGRAM);
        out[8..].copy_from_slice(&pat[off..off + FRAG_DGRAM - 8]);
    };
    let (mut sent, mut rcvd, mut lost) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while lim.more(t0, rcvd / 1000) {
        // Eight datagrams (24 fragments) per round: within one receive burst, and within the
        // receiving socket's buffer (a reassembled datagram holds six mbufs).
        for _ in 0..8 {
            fill(sent, &mut out);
            udp::udp_sendmsg(&mut p.a, tx, &out, None).map_err(e)?;
            sent += 1;
        }
        p.poll();
        loop {
            match udp::udp_recvmsg(&mut p.b, rx, &mut buf) {
                Ok(r) => {
                    if r.len != FRAG_DGRAM {
                        return Err(format!("frag: datagram of {} bytes", r.len));
                    }
                    let seq = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                    if seq < rcvd + lost || seq >= sent {
                        return Err(format!("frag: datagram {seq} out of order"));
                    }
                    lost += seq - (rcvd + lost);
                    fill(seq, &mut out);
                    if buf[..FRAG_DGRAM] != out[..] {
                        return Err(format!("frag: datagram {seq} corrupted"));
                    }
                    rcvd += 1;
                }
                Err(UdpErr::WouldBlock) => break,
                Err(err) => return Err(err.to_string()),
            }
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let _ = (udp::udp_close(&mut p.a, tx), udp::udp_close(&mut p.b, rx));
    for _ in 0..100 {
        p.poll();
    }
    use blink_glue::netcore::snmp::IpMib;
    let (frags, reasm) = (
        p.a.core.mib.ip.get(IpMib::FragCreates),
        p.b.core.mib.ip.get(IpMib::ReasmOKs),
    );
    Ok(BenchResult {
        workload: "frag",
        value: rcvd as f64 / el,
        unit: "dgram/s",
        note: format!(
            "{rcvd} datagrams of {FRAG_DGRAM} B verified, {lost} lost, {frags} fragments sent, {reasm} reassembled; {} mbufs in use after",
            p.pool.in_use()
        ),
    })
}

/// fragflood: A floods B with fragments of datagrams that never complete (random ids, a raw
/// IP_HDRINCL socket) while a TCP connection carries a request/response every round. Figures:
/// flood fragments B absorbed per second, and B's peak reassembly memory against
/// `ipfrag_high_thresh`; the TCP exchange must go on (every response checked) and every queue
/// must be gone after `ipfrag_time`.
fn frag_flood(lim: Limit) -> Result<BenchResult, String> {
    use blink_glue::netcore::snmp::{DropReason, IpMib};
    use blink_glue::raw::{self, RawConfig};
    let mut p = pair(
        TcpConfig {
            nodelay: true,
            ..Default::default()
        },
        lim,
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
    let mut req = [0u8; 64];
    let t0 = Instant::now();
    while lim.more(t0, sent / 1000) {
        for _ in 0..32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            frag[4..6].copy_from_slice(&(x as u16).to_be_bytes());
            frag[6..8].copy_from_slice(&(0x2000 | ((x >> 16) as u16 & 0x1fff)).to_be_bytes());
            raw::raw_sendmsg(&mut p.a, flood, &frag, Some(B_IP)).map_err(|e| e.to_string())?;
            sent += 1;
        }
        // One request/response per round beside the flood: B echoes the request, A checks
        // the answer (its buffer cleared first).
        req[..8].copy_from_slice(&rounds.to_le_bytes());
        req[8] = rounds as u8 ^ 0x5a;
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
        if resp != req {
            return Err(format!("fragflood: request/response {rounds} altered"));
        }
        rounds += 1;
    }
    let el = t0.elapsed().as_secs_f64();
    let absorbed = p.b.core.mib.ip.get(IpMib::ReasmReqds);
    let evicted = p.b.core.mib.drops[DropReason::FragMemLimit];
    if peak > high {
        return Err(format!(
            "fragflood: reassembly memory {peak} above ipfrag_high_thresh {high}"
        ));
    }
    // The leftovers time out (30 s of ipfrag_time, on the monotonic clock: run the expiry by
    // hand instead of waiting).
    let queues = p.b.frags.queues();
    let _ = (
        tcp::tcp_close(&mut p.a, c),
        tcp::tcp_close(&mut p.b, s),
        raw::raw_close(&mut p.a, flood),
    );
    for _ in 0..100 {
        p.poll();
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
    })
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
    if let Some(cores) = &a.cores {
        return crate::bench_cores::run(&a, cores);
    }
    let lim = Limit {
        dur: Duration::from_secs_f64(a.secs),
        iters: a.iters,
        buf: a.buf.saturating_mul(1024),
        offload: a.offload,
    };
    let mut results = Vec::new();
    let workloads = a.workloads.as_deref().unwrap_or("bulk,rr,crr,udp,frag");
    for w in workloads.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let r = match w {
            "bulk" => bulk(lim),
            "rr" => rr(lim),
            "crr" => crr(lim),
            "udp" => udp_oneway(lim),
            "frag" => frag_oneway(lim),
            "fragflood" => frag_flood(lim),
            _ => {
                return Err(usage(format!(
                    "--workloads: unknown workload `{w}` (bulk, rr, crr, udp, frag, fragflood)"
                ))
                .into())
            }
        };
        let r = r.map_err(|e| SetupError::Runtime(format!("bench {w}: {e}")))?;
        if !a.json {
            let csum = if a.offload { "; checksum offload" } else { "" };
            println!(
                "{:<5} blink  {:>12.3} {:<8} ({}{csum})",
                r.workload, r.value, r.unit, r.note
            );
        }
        results.push(r);
    }
    if a.json {
        let items: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "{{\"workload\": \"{}\", \"peer\": \"blink\", \"value\": {:.3}, \"unit\": \"{}\"}}",
                    r.workload, r.value, r.unit
                )
            })
            .collect();
        println!("{{\"results\": [{}]}}", items.join(", "));
    }
    Ok(())
}
