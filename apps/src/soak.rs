//! `blink soak`: two blink stacks on the in-memory wire, through seeded loss, reordering,
//! duplication and corruption, carrying mixed traffic for minutes while every byte is checked:
//!
//! - TCP churn: `--conns` short connections kept in flight, each opened, sending a request of
//!   random length that the server checks and echoes and the client checks again, then closed
//!   (the client half-closes first, or the server closes first, or, now and then, the client
//!   aborts mid-request);
//! - TCP bulk: `--streams` long-lived connections (alternating directions) streaming a
//!   pattern the receiver checks by its position in the stream;
//! - UDP request/response, some datagrams fragmented, checked at both ends;
//! - raw IP (protocol 253) request/response, checked at both ends; raw IP has no checksum of
//!   its own, so the payload carries a CRC-32 and a corrupted packet is told apart from a
//!   wrong one.
//!
//! One line per `--interval`; the run fails (exit 1, with the seed) on a byte mismatch, a
//! connection that ends unexpectedly, no progress in an interval, mbufs in use or the RSS
//! growing past their bounds, or buffers or sockets left once everything has closed.
//!
//! Time inside the stacks is a virtual clock that advances by a fixed step per poll round
//! (as glue's tests do), so a seed replays the same run whatever the machine's speed; the
//! run's length is wall-clock time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use blink_glue::ipv4::StackConfig;
use blink_glue::netcore::drivers::impair::ImpairConfig;
use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::snmp::TcpMib;
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::tcp::TcpConfig;
use blink_glue::{CloseReason, Glue, GlueBuilder, GlueError, Socket};
use clap::Args;

use crate::args::usage;
use crate::setup::SetupError;

#[macro_use]
mod traffic;
use traffic::*;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const A_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 1]);
const B_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 2]);
const CHURN_PORT: u16 = 5001;
const BULK_PORT: u16 = 5002;
const UDP_PORT: u16 = 5003;
const RAW_PROTO: u8 = 253;
/// Buffers in the pool both stacks share.
const POOL: usize = 32768;
/// UDP and raw requests outstanding at once; one unanswered for 50 ms of virtual time (plus
/// four times the wire's one-way delay) counts as lost. A round trip takes tens of
/// microseconds here: a longer wait would leave the window stuck behind losses.
const DGRAM_WINDOW: usize = 16;
const DGRAM_TIMEOUT_NS: u64 = 50_000_000;
/// Virtual time per poll round that moved frames, and per idle round (timers fire).
const BUSY_STEP: Duration = Duration::from_micros(20);
const IDLE_STEP_MS: u64 = 1;
/// The default faults on the wire (both directions).
const DEFAULT_IMPAIR: &str = "loss=0.01,reorder=0.02,dup=0.005,corrupt=0.002";

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How long to run, minutes (fractions allowed: 0.5). Default 1.
    #[arg(long, value_name = "N", conflicts_with = "secs")]
    pub minutes: Option<f64>,
    /// How long to run, seconds (instead of --minutes).
    #[arg(long, value_name = "SECS")]
    pub secs: Option<f64>,
    /// Seconds between report lines.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub interval: f64,
    /// Seed of the faults, of the traffic's choices (sizes, close modes) and of TCP's
    /// secrets (ISNs, cookies, ports); printed on failure so the run can be replayed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Faults on the wire, both directions: loss=P,reorder=P,dup=P,corrupt=P,delay=MS (a
    /// seed=N in it overrides --seed for the faults only).
    #[arg(long, value_name = "SPEC", default_value = DEFAULT_IMPAIR)]
    pub impair: String,
    /// Short TCP connections kept in flight (opened, used once, closed, replaced).
    #[arg(long, default_value_t = 32)]
    pub conns: usize,
    /// Long-lived bulk TCP streams (even ones A to B, odd ones B to A).
    #[arg(long, default_value_t = 2)]
    pub streams: usize,
    /// Growth bound: the RSS may exceed the first interval's by at most this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    pub rss_slack: u64,
}

/// Which stack a connection lives on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
enum Side {
    A,
    B,
}

/// Datagram requests of one kind (UDP or raw) from A to B's echo.
struct Dgram {
    a: Socket,
    b: Socket,
    next_seq: u64,
    /// seq -> (length, virtual send time)
    outstanding: HashMap<u64, (usize, u64)>,
}

struct Soak {
    vc: VirtualClock,
    pool: Mempool,
    a: Glue<()>,
    b: Glue<()>,
    rng: Rng,
    /// Ordered, so every run visits them in the same order (a seed replays the run).
    conns: BTreeMap<(Side, Socket), Conn>,
    listeners: Vec<(Side, Socket)>,
    churn_live: usize,
    want_churn: usize,
    next_id: u32,
    /// Bytes each bulk stream's sender handed to TCP before closing (id first), by stream id.
    bulk_sent: HashMap<u32, u64>,
    udp: Dgram,
    raw: Dgram,
    dgram_timeout_ns: u64,
    t: Totals,
    buf: Vec<u8>,
    /// The run's end: no new connections or datagrams.
    draining: bool,
    /// The datagram sockets are closed (the last phase of the end).
    dgrams_closed: bool,
}

/// Write into every buffer of the pool once, so its pages are resident from the start: the
/// RSS check then sees the process growing, not the pool's pages being touched for the first
/// time as traffic reaches deeper into it.
fn prefault(pool: &Mempool) {
    let mut held = Vec::with_capacity(pool.capacity());
    while let Some(mut m) = pool.alloc() {
        let room = m.tailroom();
        if let Some(d) = m.append(room) {
            d.fill(0xa5);
        }
        held.push(m);
    }
}

fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as u64
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

pub fn run(a: SoakArgs) -> Result<(), SetupError> {
    let secs = match (a.minutes, a.secs) {
        (Some(m), _) => {
            if !(m > 0.0 && m.is_finite() && m <= 7.0 * 24.0 * 60.0) {
                return Err(usage(format!("--minutes: `{m}` must be a positive number of minutes")).into());
            }
            m * 60.0
        }
        (None, Some(s)) => {
            if !(s > 0.0 && s.is_finite() && s <= 7.0 * 24.0 * 3600.0) {
                return Err(usage(format!("--secs: `{s}` must be a positive number of seconds")).into());
            }
            s
        }
        (None, None) => 60.0,
    };
    if !(a.interval > 0.0 && a.interval.is_finite()) {
        return Err(usage(format!(
            "--interval: `{}` must be a positive number of seconds",
            a.interval
        ))
        .into());
    }
    if a.conns == 0 || a.conns > 4096 {
        return Err(usage(format!("--conns: `{}` must be 1..=4096", a.conns)).into());
    }
    if a.streams > 64 {
        return Err(usage(format!("--streams: `{}` must be 0..=64", a.streams)).into());
    }
    let mut imp: ImpairConfig = a
        .impair
        .parse()
        .map_err(|e: blink_glue::netcore::drivers::impair::ImpairError| usage(e.to_string()))?;
    if !a.impair.contains("seed=") {
        imp.seed = a.seed;
    }
    println!(
        "blink soak: {secs:.0} s, seed {}, faults {imp}, {} short connections in flight, {} bulk streams, UDP and raw request/response",
        a.seed, a.conns, a.streams
    );
    let mut s = Soak::new(&a, imp).map_err(|e| SetupError::Runtime(format!("soak setup: {e}")))?;
    match s.run(&a, Duration::from_secs_f64(secs)) {
        Ok(()) => Ok(()),
        Err(Fail(m)) => Err(SetupError::Runtime(format!(
            "soak FAILED (seed {}, faults {imp}): {m}",
            a.seed
        ))),
    }
}

impl Soak {
    fn new(args: &SoakArgs, imp: ImpairConfig) -> Result<Soak, GlueError> {
        let pool = Mempool::new(&MempoolConfig {
            name: "soak".into(),
            n: POOL,
            ..Default::default()
        })
        .expect("static pool config");
        prefault(&pool);
        let vc = VirtualClock::new();
        let clock = Clock::virtual_clock(&vc);
        let tcp = TcpConfig {
            sndbuf: 256 << 10,
            rcvbuf: 256 << 10,
            // Short TIME-WAIT: churn recycles ports quickly, and the end of the run waits
            // every socket out before checking that nothing is left.
            timewait_ms: 2000,
            // TCP's secrets (ISNs, timestamp offsets, cookies, port start) from the seed too,
            // so a seed replays the whole run; B's differ from A's.
            seed: Some(args.seed),
            ..Default::default()
        };
        // Reassembly queues a lost fragment leaves behind hold their buffers until this
        // timeout: 2 s instead of Linux's 30 lets them reach their steady state within the
        // first interval, which the growth check compares the later ones with.
        let stack = StackConfig {
            ipfrag_time_ms: 2000,
            ..Default::default()
        };
        let (wa, wb) = wire_pair(("a", "b"), (A_MAC, B_MAC), &WireConfig::default());
        // One impairment, on A's device, covers both directions of the wire.
        let mut a: Glue<()> = GlueBuilder::new()
            .device(Box::new(wa))
            .addr("10.0.0.1/24".parse().expect("valid"))
            .pool(pool.clone())
            .clock(clock.clone())
            .tcp(tcp.clone())
            .stack_config(stack.clone())
            .impair(imp)
            .build()?;
        let mut b: Glue<()> = GlueBuilder::new()
            .device(Box::new(wb))
            .addr("10.0.0.2/24".parse().expect("valid"))
            .pool(pool.clone())
            .clock(clock)
            .tcp(TcpConfig {
                seed: Some(args.seed ^ 0xB),
                ..tcp
            })
            .stack_config(stack)
            .build()?;
        let listeners = vec![
            (Side::B, b.tcp_listen(CHURN_PORT, 1024)?),
            (Side::B, b.tcp_listen(BULK_PORT, 64)?),
            (Side::A, a.tcp_listen(BULK_PORT, 64)?),
        ];
        let ua = a.udp_socket(None)?;
        let ub = b.udp_socket(None)?;
        b.udp_bind(ub, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, UDP_PORT))?;
        let ra = a.raw_socket(RAW_PROTO, None)?;
        let rb = b.raw_socket(RAW_PROTO, None)?;
        Ok(Soak {
            vc,
            pool,
            a,
            b,
            rng: Rng::new(args.seed),
            conns: BTreeMap::new(),
            listeners,
            churn_live: 0,
            want_churn: args.conns,
            next_id: 0,
            bulk_sent: HashMap::new(),
            udp: Dgram {
                a: ua,
                b: ub,
                next_seq: 0,
                outstanding: HashMap::new(),
            },
            raw: Dgram {
                a: ra,
                b: rb,
                next_seq: 0,
                outstanding: HashMap::new(),
            },
            t: Totals::default(),
            dgram_timeout_ns: DGRAM_TIMEOUT_NS + 4 * imp.delay_ms * 1_000_000,
            buf: vec![0u8; 64 * 1024],
            draining: false,
            dgrams_closed: false,
        })
    }

    fn glue(&mut self, side: Side) -> &mut Glue<()> {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn retrans(&self) -> u64 {
        self.a.stack().core.mib.tcp[TcpMib::RetransSegs] + self.b.stack().core.mib.tcp[TcpMib::RetransSegs]
    }

    /// One poll of both stacks, then every application's turn; virtual time moves on.
    fn round(&mut self) -> Result<(), Fail> {
        let n = self.a.periodic() + self.b.periodic();
        if n == 0 {
            self.vc.advance_ms(IDLE_STEP_MS);
        } else {
            self.vc.advance(BUSY_STEP);
        }
        self.accept()?;
        self.service_conns()?;
        self.closed()?;
        // Events the loop above does not wait for: it visits every connection each round.
        for g in [&mut self.a, &mut self.b] {
            while g.next_reader().is_some() {}
            while g.next_writer().is_some() {}
            while g.next_connected().is_some() {}
            while g.next_error().is_some() {}
        }
        if !self.draining {
            self.open_churn()?;
        }
        if !self.dgrams_closed {
            self.dgrams()?;
        }
        self.a.flush();
        self.b.flush();
        Ok(())
    }

    fn accept(&mut self) -> Result<(), Fail> {
        for i in 0..self.listeners.len() {
            let (side, l) = self.listeners[i];
            while let Some(l2) = self.glue(side).next_listener() {
                // Every listener's queue is drained below; the list only says which.
                let _ = l2;
            }
            loop {
                match self.glue(side).accept(l) {
                    Ok(Some(c)) => {
                        let (local, _) = self
                            .glue(side)
                            .addrs(c)
                            .map_err(|e| Fail(format!("addrs of an accepted connection: {e}")))?;
                        let conn = if local.port() == CHURN_PORT {
                            Conn::ChurnServer(ChurnServer {
                                hdr: Vec::with_capacity(HDR),
                                id: 0,
                                len: 0,
                                mode: CloseMode::ClientFirst,
                                got: 0,
                                pending: VecDeque::new(),
                                eof: false,
                            })
                        } else {
                            Conn::BulkRx(BulkRx {
                                hdr: Vec::with_capacity(4),
                                got: 0,
                            })
                        };
                        self.conns.insert((side, c), conn);
                    }
                    Ok(None) => break,
                    Err(e) => fail!("accept on {side:?}: {e}"),
                }
            }
        }
        Ok(())
    }

    fn open_churn(&mut self) -> Result<(), Fail> {
        while self.churn_live < self.want_churn {
            let id = self.next_id;
            let len = 1 + self.rng.below(MAX_REQUEST as u64) as u32;
            let mode = match self.rng.below(100) {
                0..=1 => CloseMode::Abort,
                2..=49 => CloseMode::ClientFirst,
                _ => CloseMode::ServerFirst,
            };
            let abort_at = self.rng.below(len as u64 + HDR as u64) as u32;
            match self.a.tcp_connect(B_IP, CHURN_PORT, None) {
                Ok(c) => {
                    self.next_id = self.next_id.wrapping_add(1);
                    self.churn_live += 1;
                    self.conns.insert(
                        (Side::A, c),
                        Conn::ChurnClient(ChurnClient {
                            id,
                            len,
                            mode,
                            abort_at,
                            sent: 0,
                            echoed: 0,
                            shut: false,
                        }),
                    );
                }
                // Every local port is in use (TIME-WAIT included): try again next round.
                Err(GlueError::NoPorts) => {
                    self.t.no_ports += 1;
                    break;
                }
                Err(e) => fail!("connect to {B_IP}:{CHURN_PORT}: {e}"),
            }
        }
        Ok(())
    }
}

impl Soak {
    /// Every connection's turn: send what it may, read and check what arrived.
    fn service_conns(&mut self) -> Result<(), Fail> {
        let keys: Vec<(Side, Socket)> = self.conns.keys().copied().collect();
        for key in keys {
            let Some(mut conn) = self.conns.remove(&key) else {
                continue;
            };
            let (side, s) = key;
            let g = match side {
                Side::A => &mut self.a,
                Side::B => &mut self.b,
            };
            let turn = match &mut conn {
                Conn::ChurnClient(c) => {
                    let t = churn_client(g, s, c, &mut self.t, &mut self.buf)?;
                    if let Turn::Done = t {
                        self.churn_live -= 1;
                    }
                    t
                }
                Conn::ChurnServer(c) => churn_server(g, s, c, &mut self.t, &mut self.buf)?,
                Conn::BulkTx(c) => {
                    let t = bulk_tx(g, s, c, self.draining, &mut self.buf)?;
                    if let Turn::Done = t {
                        self.bulk_sent.insert(c.id, c.sent);
                    }
                    t
                }
                Conn::BulkRx(c) => bulk_rx(g, s, c, &self.bulk_sent, &mut self.t, &mut self.buf)?,
            };
            if let Turn::Keep = turn {
                self.conns.insert(key, conn);
            }
        }
        Ok(())
    }

    /// Connections that ended by themselves. Every connection read what it could first, so
    /// one still here ended before its end of stream was read.
    fn closed(&mut self) -> Result<(), Fail> {
        for side in [Side::A, Side::B] {
            while let Some(c) = self.glue(side).next_closed() {
                let Some(conn) = self.conns.remove(&(side, c.sock)) else {
                    continue;
                };
                match conn {
                    // An aborted client's reset; counted against the aborts at the end.
                    Conn::ChurnServer(sv) if c.reason != CloseReason::Normal || sv.got < sv.len => {
                        self.t.server_early_ends += 1;
                    }
                    Conn::ChurnServer(_) => {}
                    Conn::ChurnClient(cl) => fail!(
                        "churn connection {} ({:?}, {} of {} request bytes sent, {} echoed) ended: {:?}",
                        cl.id,
                        cl.mode,
                        cl.sent,
                        cl.len as usize + HDR,
                        cl.echoed,
                        c.reason
                    ),
                    Conn::BulkTx(b) => fail!(
                        "bulk stream {} ended on its sender after {} bytes: {:?}",
                        b.id,
                        b.sent,
                        c.reason
                    ),
                    Conn::BulkRx(b) => fail!(
                        "bulk stream ended on its receiver after {} bytes: {:?}",
                        b.got,
                        c.reason
                    ),
                }
            }
        }
        Ok(())
    }

    /// UDP and raw: replies checked and matched, B's echo, timeouts, new requests.
    fn dgrams(&mut self) -> Result<(), Fail> {
        let now = self.vc.now_ns();
        for raw in [false, true] {
            // B's echo first, then A's side.
            let sb = if raw { self.raw.b } else { self.udp.b };
            loop {
                let r = match self.b.recv_from(sb, &mut self.buf) {
                    Ok(r) => r,
                    Err(GlueError::WouldBlock) => break,
                    Err(e) => fail!("{} echo on B: receive: {e}", kind(raw)),
                };
                let off = if raw {
                    ((self.buf[0] & 0x0f) as usize * 4).min(r.len)
                } else {
                    0
                };
                let vt = self.vc.now_ns();
                let Some(_) = check_dgram(raw, &self.buf[off..r.len], &mut self.t).map_err(|Fail(m)| {
                    Fail(format!(
                        "on B (the request), {} bytes, virtual time {vt} ns: {m}",
                        r.len
                    ))
                })?
                else {
                    continue;
                };
                let to = if raw {
                    SocketAddrV4::new(*r.from.ip(), 0)
                } else {
                    r.from
                };
                let payload = self.buf[off..r.len].to_vec();
                match self.b.send_to(sb, &payload, Some(to)) {
                    // The reply is lost like any other datagram: A times it out.
                    Ok(_) | Err(GlueError::NoMemory) | Err(GlueError::WouldBlock) => {}
                    Err(e) => fail!("{} echo on B: send: {e}", kind(raw)),
                }
            }
            let timeout = self.dgram_timeout_ns;
            let d = if raw { &mut self.raw } else { &mut self.udp };
            loop {
                let r = match self.a.recv_from(d.a, &mut self.buf) {
                    Ok(r) => r,
                    Err(GlueError::WouldBlock) => break,
                    Err(e) => fail!("{} on A: receive: {e}", kind(raw)),
                };
                let off = if raw {
                    ((self.buf[0] & 0x0f) as usize * 4).min(r.len)
                } else {
                    0
                };
                let vt = self.vc.now_ns();
                let Some(seq) = check_dgram(raw, &self.buf[off..r.len], &mut self.t)
                    .map_err(|Fail(m)| Fail(format!("on A (the reply), {} bytes, virtual time {vt} ns: {m}", r.len)))?
                else {
                    continue;
                };
                if seq >= d.next_seq {
                    fail!(
                        "{} reply with sequence {seq}, never sent (next {})",
                        kind(raw),
                        d.next_seq
                    );
                }
                let answered = d.outstanding.remove(&seq).is_some();
                match (raw, answered) {
                    (false, true) => self.t.udp_answered += 1,
                    (true, true) => self.t.raw_answered += 1,
                    // A duplicate, or a reply after its request timed out.
                    (false, false) => self.t.udp_extra += 1,
                    (true, false) => {}
                }
            }
            let before = d.outstanding.len();
            d.outstanding.retain(|_, (_, t)| now.saturating_sub(*t) < timeout);
            let lost = (before - d.outstanding.len()) as u64;
            if raw {
                self.t.raw_lost += lost;
            } else {
                self.t.udp_lost += lost;
            }
            while !self.draining && d.outstanding.len() < DGRAM_WINDOW {
                let seq = d.next_seq;
                // Raw stays within one frame; one UDP datagram in ten is fragmented.
                let len = if raw {
                    1 + self.rng.below(1400) as usize
                } else if self.rng.below(10) == 0 {
                    1473 + self.rng.below(2500) as usize
                } else {
                    1 + self.rng.below(1400) as usize
                };
                let pkt = build_dgram(raw, seq, len);
                let (sock, to) = if raw {
                    (d.a, SocketAddrV4::new(B_IP, 0))
                } else {
                    (d.a, SocketAddrV4::new(B_IP, UDP_PORT))
                };
                match self.a.send_to(sock, &pkt, Some(to)) {
                    Ok(_) => {}
                    Err(GlueError::NoMemory) | Err(GlueError::WouldBlock) => break,
                    Err(e) => fail!("{} on A: send {} bytes: {e}", kind(raw), pkt.len()),
                }
                d.next_seq += 1;
                d.outstanding.insert(seq, (len, now));
                if raw {
                    self.t.raw_sent += 1;
                } else {
                    self.t.udp_sent += 1;
                }
            }
        }
        Ok(())
    }
}

/// What the end of the run compares with.
struct Rest {
    /// mbufs in use at rest, before the traffic.
    baseline: usize,
    /// RSS at the first interval's end, and at the last.
    rss0: u64,
    rss_last: u64,
}

/// Figures of one reporting interval.
struct Interval {
    peak_mbufs: usize,
}

impl Soak {
    fn line(&self, elapsed: Duration, prev: &Totals, iv: &Interval, rss: u64) {
        let t = &self.t;
        println!(
            "[{:>6.0}s] conns {} (+{}, {} aborted)  verified {:.1} MiB  udp {}/{} answered  raw {}/{} answered ({} bad crc)  retrans {}  mbufs {} (peak {})  rss {:.1} MiB  vtime {:.0}s",
            elapsed.as_secs_f64(),
            t.conns_done,
            t.conns_done - prev.conns_done,
            t.conns_aborted,
            mib(t.bytes_verified),
            t.udp_answered,
            t.udp_sent,
            t.raw_answered,
            t.raw_sent,
            t.raw_bad_crc,
            self.retrans(),
            self.pool.in_use(),
            iv.peak_mbufs,
            mib(rss),
            self.vc.now_ns() as f64 / 1e9,
        );
    }

    fn impair_corrupted(&self) -> u64 {
        self.a.stack().devs[0]
            .dev
            .extra_stats()
            .iter()
            .find(|(k, _)| k == "impair.corrupted")
            .map(|(_, v)| *v)
            .expect("the impairment reports impair.corrupted")
    }

    fn run(&mut self, args: &SoakArgs, dur: Duration) -> Result<(), Fail> {
        let rest = self.traffic(args, dur)?;
        self.finish(rest)
    }

    /// The traffic for `dur` of wall-clock time, a line per interval and the growth checks.
    fn traffic(&mut self, args: &SoakArgs, dur: Duration) -> Result<Rest, Fail> {
        // What the stacks hold at rest, once their start-up frames (gratuitous ARP) are
        // through: the end of the run must come back to it.
        for _ in 0..1000 {
            self.a.periodic();
            self.b.periodic();
            self.vc.advance_ms(IDLE_STEP_MS);
        }
        let baseline = self.pool.in_use();
        for i in 0..args.streams {
            let (side, glue, dst) = if i % 2 == 0 {
                (Side::A, &mut self.a, B_IP)
            } else {
                (Side::B, &mut self.b, A_IP)
            };
            let c = glue
                .tcp_connect(dst, BULK_PORT, None)
                .map_err(|e| send_err("connect (bulk)", e))?;
            self.conns.insert(
                (side, c),
                Conn::BulkTx(BulkTx {
                    id: 1_000_000 + i as u32,
                    sent: 0,
                }),
            );
        }
        let interval = Duration::from_secs_f64(args.interval);
        let start = Instant::now();
        let mut next = start + interval;
        let mut prev = self.t;
        let mut iv = Interval { peak_mbufs: 0 };
        let mut first: Option<(usize, u64)> = None;
        let mut rounds = 0u64;
        let mut last_rss;
        // Progress watchdog, in virtual time: a stall is a failure however fast the machine.
        const STALL_NS: u64 = 60_000_000_000;
        let (mut churn_vt, mut bytes_vt) = (0u64, 0u64);
        let (mut churn_seen, mut bytes_seen) = (0u64, 0u64);
        loop {
            self.round()?;
            rounds += 1;
            iv.peak_mbufs = iv.peak_mbufs.max(self.pool.in_use());
            if !rounds.is_multiple_of(64) {
                continue;
            }
            let vt = self.vc.now_ns();
            if self.t.conns_done != churn_seen {
                (churn_seen, churn_vt) = (self.t.conns_done, vt);
            }
            if self.t.bytes_verified != bytes_seen {
                (bytes_seen, bytes_vt) = (self.t.bytes_verified, vt);
            }
            if vt - churn_vt > STALL_NS || vt - bytes_vt > STALL_NS {
                fail!(
                    "no progress for {} s of virtual time: last churn completion at {:.1} s, last verified byte at {:.1} s",
                    STALL_NS / 1_000_000_000,
                    churn_vt as f64 / 1e9,
                    bytes_vt as f64 / 1e9
                );
            }
            let now = Instant::now();
            let end = now >= start + dur;
            if now < next && !end {
                continue;
            }
            next += interval;
            let rss = rss_bytes();
            last_rss = rss;
            self.line(now - start, &prev, &iv, rss);
            match first {
                None => first = Some((iv.peak_mbufs, rss)),
                Some((peak0, rss0)) => {
                    let mbuf_bound = 2 * peak0 + 1024;
                    if iv.peak_mbufs > mbuf_bound {
                        fail!(
                            "growth: mbufs in use peaked at {} this interval, bound {mbuf_bound} (twice the first interval's peak {peak0}, plus 1024)",
                            iv.peak_mbufs
                        );
                    }
                    let rss_bound = rss0 + (args.rss_slack << 20);
                    if rss > rss_bound {
                        fail!(
                            "growth: RSS {:.1} MiB, bound {:.1} MiB (the first interval's {:.1} MiB plus --rss-slack {} MiB)",
                            mib(rss),
                            mib(rss_bound),
                            mib(rss0),
                            args.rss_slack
                        );
                    }
                }
            }
            prev = self.t;
            iv = Interval { peak_mbufs: 0 };
            if end {
                break;
            }
        }
        Ok(Rest {
            baseline,
            rss0: first.map(|f| f.1).unwrap_or(0),
            rss_last: last_rss,
        })
    }

    /// Stop new work, let every connection end, close every socket, wait out TIME-WAIT and
    /// the wire, then check that the buffers and sockets are back where they started.
    fn finish(&mut self, rest: Rest) -> Result<(), Fail> {
        let Rest {
            baseline,
            rss0,
            rss_last,
        } = rest;
        self.draining = true;
        let t0 = self.vc.now_ns();
        let wall = Instant::now();
        // Virtual bound: retransmissions under loss, the FIN timeout and TIME-WAIT all fit.
        const DRAIN_NS: u64 = 300_000_000_000;
        while !self.conns.is_empty() || !self.udp.outstanding.is_empty() || !self.raw.outstanding.is_empty() {
            self.round()?;
            if self.vc.now_ns() - t0 > DRAIN_NS || wall.elapsed() > Duration::from_secs(300) {
                fail!(
                    "end of run: {} connections and {} datagrams still open after {:.0} s of virtual time",
                    self.conns.len(),
                    self.udp.outstanding.len() + self.raw.outstanding.len(),
                    (self.vc.now_ns() - t0) as f64 / 1e9
                );
            }
        }
        for (side, l) in std::mem::take(&mut self.listeners) {
            self.glue(side).close(l).map_err(|e| send_err("close listener", e))?;
        }
        for (side, s) in [
            (Side::A, self.udp.a),
            (Side::B, self.udp.b),
            (Side::A, self.raw.a),
            (Side::B, self.raw.b),
        ] {
            self.glue(side)
                .close(s)
                .map_err(|e| send_err("close datagram socket", e))?;
        }
        self.dgrams_closed = true;
        let mut done = false;
        while self.vc.now_ns() - t0 < DRAIN_NS && wall.elapsed() < Duration::from_secs(300) {
            self.round()?;
            if self.a.protocol_sockets() == 0 && self.b.protocol_sockets() == 0 && self.pool.in_use() == baseline {
                done = true;
                break;
            }
        }
        let t = self.t;
        println!(
            "end: {} connections completed, {} aborted, {:.1} MiB verified, udp {}/{} answered ({} lost, {} extra, {} damaged past the UDP checksum), raw {}/{} answered ({} lost, {} bad crc), retrans {}, {} connects waited for a port",
            t.conns_done,
            t.conns_aborted,
            mib(t.bytes_verified),
            t.udp_answered,
            t.udp_sent,
            t.udp_lost,
            t.udp_extra,
            t.udp_csum_blind,
            t.raw_answered,
            t.raw_sent,
            t.raw_lost,
            t.raw_bad_crc,
            self.retrans(),
            t.no_ports
        );
        let (sa, sb) = (self.a.protocol_sockets(), self.b.protocol_sockets());
        let in_use = self.pool.in_use();
        println!(
            "end: mbufs in use {in_use} (baseline {baseline}), sockets left A {sa} B {sb}, application sockets A {} B {}, RSS first interval {:.1} MiB, last {:.1} MiB",
            self.a.open_sockets(),
            self.b.open_sockets(),
            mib(rss0),
            mib(rss_last)
        );
        if !done {
            fail!("leak: after everything closed, {in_use} mbufs in use (baseline {baseline}), sockets left A {sa} B {sb}");
        }
        if self.a.open_sockets() + self.b.open_sockets() != 0 {
            fail!("leak: glue still holds sockets after every one was closed");
        }
        if t.server_early_ends > t.conns_aborted {
            fail!(
                "{} churn requests ended early on the server, but only {} clients aborted",
                t.server_early_ends,
                t.conns_aborted
            );
        }
        let corrupted = self.impair_corrupted();
        if t.raw_bad_crc > corrupted {
            fail!(
                "{} raw packets failed their CRC, but the wire corrupted only {corrupted} frames",
                t.raw_bad_crc
            );
        }
        // Each needs two damaged frames of one datagram.
        if 2 * t.udp_csum_blind > corrupted {
            fail!(
                "{} UDP datagrams damaged past their checksum, but the wire corrupted only {corrupted} frames",
                t.udp_csum_blind
            );
        }
        if t.conns_done == 0 || t.udp_answered == 0 || t.raw_answered == 0 {
            fail!(
                "a kind of traffic never completed: connections {}, udp {}, raw {}",
                t.conns_done,
                t.udp_answered,
                t.raw_answered
            );
        }
        println!("soak passed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(secs: f64) -> SoakArgs {
        SoakArgs {
            minutes: None,
            secs: Some(secs),
            interval: secs / 2.0,
            seed: 7,
            impair: DEFAULT_IMPAIR.into(),
            conns: 8,
            streams: 2,
            // RSS is the whole test process's, which the other tests running beside these
            // (threads of the same binary) grow too: not a measure of this soak here.
            rss_slack: 1 << 16,
        }
    }

    fn soak(a: &SoakArgs) -> Soak {
        let mut imp: ImpairConfig = a.impair.parse().unwrap();
        imp.seed = a.seed;
        Soak::new(a, imp).unwrap()
    }

    /// The end-of-run check is not a formality: one buffer held past the end fails the run.
    #[test]
    fn a_held_mbuf_fails_the_leak_check() {
        let a = args(1.0);
        let mut s = soak(&a);
        let rest = s
            .traffic(&a, Duration::from_secs_f64(1.0))
            .unwrap_or_else(|Fail(m)| panic!("seed 7: {m}"));
        assert!(s.t.conns_done > 0 && s.t.udp_answered > 0 && s.t.raw_answered > 0);
        let held = s.pool.alloc().expect("a buffer");
        let Err(Fail(m)) = s.finish(rest) else {
            panic!("seed 7: the run passed with a buffer held");
        };
        assert!(m.contains("leak") && m.contains("1 mbufs in use"), "{m}");
        drop(held);
    }

    /// Time inside the stacks is virtual and every choice seeded: the same seed, the same run.
    #[test]
    fn a_seed_replays_the_run() {
        let a = args(1.0);
        let figures = || {
            let mut s = soak(&a);
            for _ in 0..20_000 {
                s.round().unwrap_or_else(|Fail(m)| panic!("seed 7: {m}"));
            }
            let t = s.t;
            (
                t.conns_done,
                t.bytes_verified,
                t.udp_answered,
                t.raw_bad_crc,
                s.retrans(),
                s.pool.in_use(),
            )
        };
        let first = figures();
        assert!(first.0 > 0 && first.4 > 0, "{first:?}");
        assert_eq!(first, figures());
    }

    #[test]
    fn a_short_run_passes_and_checks_every_kind_of_traffic() {
        let a = args(1.0);
        let mut s = soak(&a);
        s.run(&a, Duration::from_secs_f64(1.0))
            .unwrap_or_else(|Fail(m)| panic!("seed 7: {m}"));
        assert_eq!(s.pool.in_use(), 0);
        assert!(s.t.bytes_verified > 0 && s.retrans() > 0, "the faults were in the path");
    }
}
