//! `blink bench --cores 1,2`: how rr and crr scale over stack cores (shared nothing).
//!
//! For each N of the list, two glue instances of N cores each (server 10.0.0.2, client
//! 10.0.0.1) are joined by an N-queue in-memory wire in rss mode. N threads run; thread `i`
//! is pinned to the `i`-th allowed CPU and polls server core `i` and client core `i`. A client
//! core picks source ports whose replies hash back to it, and every server core listens, so
//! each connection lives on one core at each end and the threads share nothing but the
//! buffer pool.
//!
//! - rr: 64 connections in total, split over the client cores, each doing 64-byte request /
//!   64-byte response (TCP_NODELAY) back to back; counts transactions.
//! - crr: 64 connection slots in total: connect, 64 bytes each way, close, repeat; counts
//!   completed connections.
//!
//! Every message carries its connection id and sequence number and 48 pattern bytes that
//! follow from them: the server compares every request byte, the client every response byte.
//! Connections that end with an error, bytes that differ or a stall are failures, and any
//! failure fails the run. The clock runs from when all threads start (after their
//! connections, or one warm-up connection, are set up) to when the last one stops.
//!
//! Figures only: nothing here asserts a time.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::netdevice::NetDevice;
use blink_glue::netcore::rss::RSS_KEY_SYMMETRIC;
use blink_glue::netcore::snmp::TcpMib;
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::runtime::{allowed_cpus, pin_to_cpu};
use blink_glue::tcp::TcpConfig;
use blink_glue::{Closed, Glue, GlueBuilder, GlueError, GlueHandler, Socket, Steering};

use crate::args::usage;
use crate::bench::BenchArgs;
use crate::setup::SetupError;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 5010;
/// Connections (rr) or connection slots (crr) in total, over all cores.
pub const CONNS: usize = 64;
/// Bytes of a request and of a response.
const MSG: usize = 64;
/// Sequence field: the low bit tells a response from a request.
const RESP: u64 = 1;
/// Setting up, draining, or no progress for this long is a failure.
const PATIENCE: Duration = Duration::from_secs(10);
/// Failure messages kept per thread (all are counted).
const KEEP_MSGS: usize = 5;

const PAT_LEN: usize = 4096;

const fn make_pattern() -> [u8; PAT_LEN] {
    let mut p = [0u8; PAT_LEN];
    let mut i = 0;
    while i < PAT_LEN {
        p[i] = ((i as u32).wrapping_mul(2654435761) >> 13) as u8;
        i += 1;
    }
    p
}

static PATTERN: [u8; PAT_LEN] = make_pattern();

/// The message of connection `id` with sequence field `sf` (seq * 2, + RESP for a response):
/// id, sequence field, then 48 pattern bytes at an offset that follows from both.
fn message(id: u64, sf: u64) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    m[..8].copy_from_slice(&id.to_le_bytes());
    m[8..16].copy_from_slice(&sf.to_le_bytes());
    let off = ((id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ sf.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)) >> 40) as usize
        % (PAT_LEN - (MSG - 16));
    m[16..].copy_from_slice(&PATTERN[off..off + MSG - 16]);
    m
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Rr,
    Crr,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Rr => "rr",
            Workload::Crr => "crr",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::Rr => "trans/s",
            Workload::Crr => "conn/s",
        }
    }
}

/// One connection's state, at either end.
struct Conn {
    /// Client: this connection's id. Server: the id its first request carried.
    id: Option<u64>,
    /// Transactions completed on this connection.
    seq: u64,
    /// A request is out and its response not yet read (client).
    busy: bool,
    out: [u8; MSG],
    /// Bytes of `out` sent; MSG when nothing is pending.
    out_off: usize,
    inb: [u8; MSG],
    got: usize,
}

impl Conn {
    fn new(id: Option<u64>) -> Conn {
        Conn {
            id,
            seq: 0,
            busy: false,
            out: [0; MSG],
            out_off: MSG,
            inb: [0; MSG],
            got: 0,
        }
    }
}

/// Failures of one thread: all counted, the first few kept.
#[derive(Default)]
struct Failures {
    n: u64,
    msgs: Vec<String>,
}

impl Failures {
    fn add(&mut self, msg: impl FnOnce() -> String) {
        self.n += 1;
        if self.msgs.len() < KEEP_MSGS {
            self.msgs.push(msg());
        }
    }
}

/// Send what is pending on `s` (the rest follows the writable event).
fn push(glue: &mut Glue<Conn>, s: Socket, fail: &mut Failures) {
    let Some(c) = glue.user_data(s) else { return };
    let (out, mut off) = (c.out, c.out_off);
    while off < MSG {
        match glue.send(s, &out[off..]) {
            Ok(0) | Err(GlueError::WouldBlock) => break,
            Ok(k) => off += k,
            Err(e) => {
                fail.add(|| format!("send: {e}"));
                break;
            }
        }
    }
    if let Some(c) = glue.user_data_mut(s) {
        c.out_off = off;
    }
}

/// Read on `s` until a whole message is in (returned, and the buffer emptied), the end of
/// the stream (`Ok(None)` with `eof`), or nothing more for now (`Ok(None)`).
fn read_msg(glue: &mut Glue<Conn>, s: Socket, eof: &mut bool) -> Result<Option<[u8; MSG]>, GlueError> {
    let Some(c) = glue.user_data(s) else {
        return Err(GlueError::BadHandle);
    };
    let (mut inb, mut got) = (c.inb, c.got);
    let r = loop {
        match glue.recv(s, &mut inb[got..]) {
            Ok(0) => {
                *eof = true;
                break Ok(None);
            }
            Ok(n) => {
                got += n;
                if got == MSG {
                    got = 0;
                    break Ok(Some(inb));
                }
            }
            Err(GlueError::WouldBlock) => break Ok(None),
            Err(e) => break Err(e),
        }
    };
    if let Some(c) = glue.user_data_mut(s) {
        c.inb = inb;
        c.got = got;
    }
    r
}

/// The server end of both workloads: check each request, answer it, close at the end of
/// the stream.
#[derive(Default)]
struct Server {
    open: usize,
    accepted: u64,
    /// Connections served here (counted at their first request), and those of them whose
    /// client core is another thread's: the RSS hash of the client's direction chose this
    /// core, so the two ends of such a connection are polled by different threads.
    conns: u64,
    cross: u64,
    fail: Failures,
}

impl Server {
    /// The response to `req` on `s`, or why the request is wrong. True for a connection's
    /// first request.
    fn answer(glue: &mut Glue<Conn>, s: Socket, req: &[u8; MSG]) -> Result<bool, String> {
        let c = glue.user_data_mut(s).ok_or("no connection state")?;
        let (id, sf) = (le64(&req[..8]), le64(&req[8..16]));
        if sf & RESP != 0 || sf >> 1 != c.seq {
            return Err(format!("request {} on connection {id:#x}, expected {}", sf >> 1, c.seq));
        }
        let first = match c.id {
            Some(known) if known != id => return Err(format!("connection {known:#x} got a request of {id:#x}")),
            Some(_) => false,
            None => {
                c.id = Some(id);
                true
            }
        };
        if *req != message(id, sf) {
            return Err(format!("request {} of connection {id:#x}: bytes differ", c.seq));
        }
        if c.out_off != MSG {
            return Err(format!("connection {id:#x}: request before the last response was sent"));
        }
        c.out = message(id, sf | RESP);
        c.out_off = 0;
        c.seq += 1;
        Ok(first)
    }
}

impl GlueHandler<Conn> for Server {
    fn on_accept(&mut self, glue: &mut Glue<Conn>, _l: Socket, s: Socket) {
        self.open += 1;
        self.accepted += 1;
        let _ = glue.set_user_data(s, Conn::new(None));
    }

    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        let mut eof = false;
        loop {
            match read_msg(glue, s, &mut eof) {
                Ok(Some(req)) => match Server::answer(glue, s, &req) {
                    Ok(first) => {
                        if first {
                            self.conns += 1;
                            // The client's thread number is in the id's high bits.
                            if le64(&req[..8]) >> 48 != glue.cpu() as u64 {
                                self.cross += 1;
                            }
                        }
                        push(glue, s, &mut self.fail)
                    }
                    Err(e) => {
                        self.fail.add(|| format!("server: {e}"));
                        let _ = glue.close(s);
                        self.open -= 1;
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    self.fail.add(|| format!("server recv: {e}"));
                    let _ = glue.close(s);
                    self.open -= 1;
                    return;
                }
            }
        }
        if eof {
            if glue.user_data(s).is_some_and(|c| c.got != 0) {
                self.fail.add(|| "server: end of stream inside a request".into());
            }
            // Graceful: FIN after anything still queued.
            let _ = glue.close(s);
            self.open -= 1;
        }
    }

    fn on_writable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        push(glue, s, &mut self.fail);
    }

    fn on_closed(&mut self, _glue: &mut Glue<Conn>, c: Closed<Conn>) {
        self.open -= 1;
        self.fail
            .add(|| format!("server connection ended by itself: {:?}", c.reason));
    }
}

/// The client end: rr keeps its connections and issues requests on them; crr opens, does one
/// transaction and closes, keeping `slots` connections under way.
struct Client {
    work: Workload,
    /// Id of the next connection (the thread's number in the high bits).
    next_id: u64,
    /// rr: connections to open; crr: connections under way at most.
    slots: usize,
    /// Requests (rr) or connections (crr) that may still be started.
    allow: u64,
    /// Connections open (connecting or established).
    open: usize,
    /// rr: the established connections.
    socks: Vec<Socket>,
    /// Requests (rr) or connections (crr) under way.
    in_flight: usize,
    /// Completed transactions (rr) or connections (crr).
    done: u64,
    fail: Failures,
}

impl Client {
    fn new(work: Workload, thread: usize, slots: usize) -> Client {
        Client {
            work,
            next_id: (thread as u64) << 48,
            slots,
            allow: 0,
            open: 0,
            socks: Vec::new(),
            in_flight: 0,
            done: 0,
            fail: Failures::default(),
        }
    }

    fn connect(&mut self, glue: &mut Glue<Conn>) -> bool {
        let id = self.next_id;
        match glue.tcp_connect(SERVER_IP, PORT, Some(Conn::new(Some(id)))) {
            Ok(_) => {
                self.next_id += 1;
                self.open += 1;
                true
            }
            Err(e) => {
                self.fail.add(|| format!("connect: {e}"));
                false
            }
        }
    }

    /// crr: open connections while slots are free and the allowance lasts.
    fn open_more(&mut self, glue: &mut Glue<Conn>) {
        while self.work == Workload::Crr && self.open < self.slots && self.allow > 0 {
            if !self.connect(glue) {
                break;
            }
            self.allow -= 1;
            self.in_flight += 1;
        }
    }

    /// rr: the next request on `s` if the allowance lasts.
    fn request(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        if self.allow == 0 {
            return;
        }
        let Some(c) = glue.user_data_mut(s) else { return };
        if c.busy {
            return;
        }
        let id = c.id.expect("a client connection has an id");
        c.out = message(id, c.seq << 1);
        c.out_off = 0;
        c.busy = true;
        self.allow -= 1;
        self.in_flight += 1;
        push(glue, s, &mut self.fail);
    }

    /// Start the timed phase: rr issues a request on every connection, crr opens its slots.
    fn start(&mut self, glue: &mut Glue<Conn>, allow: u64) {
        self.allow = allow;
        match self.work {
            Workload::Rr => {
                for s in self.socks.clone() {
                    self.request(glue, s);
                }
            }
            Workload::Crr => self.open_more(glue),
        }
    }

    fn drop_conn(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        let busy = glue.user_data(s).is_some_and(|c| c.busy || self.work == Workload::Crr);
        if busy {
            self.in_flight -= 1;
        }
        let _ = glue.close(s);
        self.open -= 1;
        self.socks.retain(|&x| x != s);
    }
}

impl GlueHandler<Conn> for Client {
    fn on_connected(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        match self.work {
            Workload::Rr => self.socks.push(s),
            Workload::Crr => {
                let Some(c) = glue.user_data_mut(s) else { return };
                let id = c.id.expect("a client connection has an id");
                c.out = message(id, 0);
                c.out_off = 0;
                c.busy = true;
                push(glue, s, &mut self.fail);
            }
        }
    }

    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        let mut eof = false;
        loop {
            let resp = match read_msg(glue, s, &mut eof) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.fail.add(|| format!("client recv: {e}"));
                    self.drop_conn(glue, s);
                    return;
                }
            };
            let Some(c) = glue.user_data_mut(s) else { return };
            let id = c.id.expect("a client connection has an id");
            if !c.busy || resp != message(id, c.seq << 1 | RESP) {
                let seq = c.seq;
                self.fail
                    .add(|| format!("response {seq} of connection {id:#x}: bytes differ (or unasked)"));
                self.drop_conn(glue, s);
                return;
            }
            c.busy = false;
            c.seq += 1;
            self.in_flight -= 1;
            self.done += 1;
            match self.work {
                Workload::Rr => self.request(glue, s),
                Workload::Crr => {
                    // Close after the response: the client takes the TIME-WAIT.
                    let _ = glue.close(s);
                    self.open -= 1;
                    self.open_more(glue);
                    return;
                }
            }
        }
        if eof {
            self.fail.add(|| "client: the server ended the stream early".into());
            self.drop_conn(glue, s);
        }
    }

    fn on_writable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        push(glue, s, &mut self.fail);
    }

    fn on_closed(&mut self, _glue: &mut Glue<Conn>, c: Closed<Conn>) {
        let id = c.data.as_ref().and_then(|d| d.id).unwrap_or(0);
        self.fail
            .add(|| format!("client connection {id:#x} ended by itself: {:?}", c.reason));
        self.open -= 1;
        if self.work == Workload::Crr || c.data.is_some_and(|d| d.busy) {
            self.in_flight -= 1;
        }
        self.socks.retain(|&x| x != c.sock);
    }
}

/// When the timed phase ends.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub dur: Duration,
    /// Total transactions (rr) or connections (crr) instead of a time.
    pub iters: Option<u64>,
    /// The wire declares checksum offload.
    pub offload: bool,
    /// Steering mode of both stacks.
    pub mode: Steering,
}

/// What one thread did.
struct ThreadOut {
    start: Instant,
    stop: Instant,
    done: u64,
    failures: u64,
    msgs: Vec<String>,
    polls: u64,
    idle_polls: u64,
    retrans: u64,
    conns: u64,
    cross: u64,
    cpu_share: f64,
}

/// One workload on N cores.
pub struct Measure {
    pub workload: Workload,
    pub cores: usize,
    /// Transactions or connections per second.
    pub value: f64,
    pub done: u64,
    pub secs: f64,
    pub failures: u64,
    pub msgs: Vec<String>,
    pub note: String,
}

/// A barrier that keeps polling both cores while it waits (a thread stuck in a blocking wait
/// could hold up ARP for another core); gives up after PATIENCE.
fn spin_barrier(
    count: &AtomicUsize,
    n: usize,
    c: &mut Glue<Conn>,
    ca: &mut Client,
    s: &mut Glue<Conn>,
    sa: &mut Server,
    what: &str,
) {
    count.fetch_add(1, Ordering::AcqRel);
    let t = Instant::now();
    while count.load(Ordering::Acquire) < n {
        c.periodic_with(ca);
        s.periodic_with(sa);
        if t.elapsed() > PATIENCE {
            ca.fail.add(|| format!("{what}: other threads did not arrive"));
            return;
        }
    }
}

struct Sync {
    n: usize,
    ready: AtomicUsize,
    /// Threads past their timed phase: a server core may serve another thread's clients, so
    /// a thread's drain can end only after every thread has stopped.
    stopped: AtomicUsize,
    finished: AtomicUsize,
}

/// CPU time this thread has used (Linux: CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Thread `i`: set up, run the timed phase, drain.
#[allow(clippy::too_many_arguments)]
fn drive(
    work: Workload,
    i: usize,
    mut c: Glue<Conn>,
    mut s: Glue<Conn>,
    slots: usize,
    quota: Option<u64>,
    lim: Limit,
    sync: &Sync,
) -> ThreadOut {
    if let Some(&cpu) = allowed_cpus().get(i) {
        if let Err(e) = pin_to_cpu(cpu) {
            log::warn!("bench thread {i}: cannot pin to CPU {cpu}: {e}");
        }
    }
    let mut ca = Client::new(work, i, slots);
    let mut sa = Server::default();

    // Set up: rr opens its connections; crr does one warm-up connection (ARP, caches).
    match work {
        Workload::Rr => {
            for _ in 0..slots {
                ca.connect(&mut c);
            }
        }
        Workload::Crr => {
            ca.allow = 1;
            ca.open_more(&mut c);
        }
    }
    let t = Instant::now();
    loop {
        c.periodic_with(&mut ca);
        s.periodic_with(&mut sa);
        let ready = match work {
            Workload::Rr => ca.socks.len() == slots,
            Workload::Crr => ca.done == 1 && ca.open == 0,
        };
        if ready {
            break;
        }
        if t.elapsed() > PATIENCE {
            ca.fail
                .add(|| format!("set-up: {} of {slots} connections after {PATIENCE:?}", ca.socks.len()));
            break;
        }
    }
    ca.done = 0;
    spin_barrier(&sync.ready, sync.n, &mut c, &mut ca, &mut s, &mut sa, "start");

    // Timed phase.
    let start = Instant::now();
    let cpu0 = thread_cpu_time();
    let end = start + lim.dur;
    ca.start(&mut c, quota.unwrap_or(u64::MAX));
    let (mut polls, mut idle_polls) = (0u64, 0u64);
    let mut progress = (0u64, start);
    let stop = loop {
        let n = c.periodic_with(&mut ca) + s.periodic_with(&mut sa);
        polls += 1;
        idle_polls += (n == 0) as u64;
        let now = Instant::now();
        let over = match quota {
            Some(q) => ca.done >= q,
            None => now >= end,
        };
        if over {
            break now;
        }
        if ca.done != progress.0 {
            progress = (ca.done, now);
        } else if now - progress.1 > PATIENCE {
            ca.fail
                .add(|| format!("stalled: no progress for {PATIENCE:?} after {} done", ca.done));
            break now;
        }
    };
    let done = ca.done;
    // The share of the wall time this thread was on its CPU (others' work takes the rest).
    let cpu_share = (thread_cpu_time().saturating_sub(cpu0)).as_secs_f64() / (stop - start).as_secs_f64().max(1e-9);
    ca.allow = 0;
    sync.stopped.fetch_add(1, Ordering::AcqRel);

    // Drain (not timed): finish what is under way, close, wait out TIME-WAIT until only the
    // listener is left and the wire is quiet. Patience counts from when all have stopped.
    let mut t = Instant::now();
    let mut all_stopped = false;
    let mut closed = false;
    let mut quiet: Option<Instant> = None;
    loop {
        let n = c.periodic_with(&mut ca) + s.periodic_with(&mut sa);
        if !closed && ca.in_flight == 0 {
            for sock in std::mem::take(&mut ca.socks) {
                let _ = c.close(sock);
                ca.open -= 1;
            }
            closed = true;
        }
        if closed && ca.open == 0 && sa.open == 0 && c.protocol_sockets() == 0 && s.protocol_sockets() == 1 && n == 0 {
            let q = *quiet.get_or_insert_with(Instant::now);
            if q.elapsed() > Duration::from_millis(20) {
                break;
            }
        } else {
            quiet = None;
        }
        if !all_stopped && sync.stopped.load(Ordering::Acquire) == sync.n {
            all_stopped = true;
            t = Instant::now();
        }
        if all_stopped && t.elapsed() > PATIENCE {
            ca.fail.add(|| {
                format!(
                    "drain: after {PATIENCE:?} client {} open ({} under way), server {} open, protocol sockets {}/{}",
                    ca.open,
                    ca.in_flight,
                    sa.open,
                    c.protocol_sockets(),
                    s.protocol_sockets()
                )
            });
            break;
        }
    }
    spin_barrier(&sync.finished, sync.n, &mut c, &mut ca, &mut s, &mut sa, "finish");

    let retrans = [&c, &s]
        .iter()
        .map(|g| g.stack().core.mib.tcp.get(TcpMib::RetransSegs))
        .sum();
    let mut msgs = ca.fail.msgs;
    msgs.extend(sa.fail.msgs);
    msgs.truncate(KEEP_MSGS);
    ThreadOut {
        start,
        stop,
        done,
        failures: ca.fail.n + sa.fail.n,
        msgs,
        polls,
        idle_polls,
        retrans,
        conns: sa.conns,
        cross: sa.cross,
        cpu_share,
    }
}

/// `total` split over `n` parts as evenly as can be (the first parts get the remainder).
fn split(total: u64, n: usize, i: usize) -> u64 {
    total / n as u64 + ((i as u64) < total % n as u64) as u64
}

/// Thread `i`'s share of `total` units of work, in proportion to its connections (the shares
/// add up to `total`).
fn share_of(total: u64, cores: usize, i: usize) -> u64 {
    let base = |j: usize| (total as u128 * split(CONNS as u64, cores, j) as u128 / CONNS as u128) as u64;
    let rem = total - (0..cores).map(base).sum::<u64>();
    base(i) + ((i as u64) < rem) as u64
}

fn boxed<D: NetDevice + 'static>(v: Vec<D>) -> Vec<Box<dyn NetDevice>> {
    v.into_iter().map(|d| Box::new(d) as Box<dyn NetDevice>).collect()
}

/// Run `work` on two instances of `cores` cores each.
pub fn run_one(work: Workload, cores: usize, lim: Limit) -> Result<Measure, String> {
    let pool = Mempool::new(&MempoolConfig {
        name: "bench-cores".into(),
        // 64 connections of 64-byte messages hold a few hundred buffers; the rest is for the
        // per-core caches.
        n: 16384,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let (wc, ws) = wire_pair(
        ("c", "s"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig {
            // Poller mode drives one queue per end; rss one per core.
            queues: if lim.mode == Steering::Poller { 1 } else { cores as u16 },
            // The emulated NIC hashes every frame at every core count (as hardware does), so
            // the runs differ only in cores.
            rxhash: true,
            csum_offload: lim.offload,
            // Both directions of a connection hash alike, so each connection lives on core i
            // at both ends and thread i serves it alone (shared nothing end to end).
            rss_key: RSS_KEY_SYMMETRIC,
            ..Default::default()
        },
    );
    let tcp = TcpConfig {
        nodelay: true,
        // Short TIME-WAIT so crr's client ports recycle within the run.
        timewait_ms: 10,
        ..Default::default()
    };
    let build = |queues: Vec<Box<dyn NetDevice>>, addr: &str| -> Result<Vec<Glue<Conn>>, String> {
        GlueBuilder::new()
            .device_queues(queues)
            .addr(addr.parse().expect("valid address"))
            .cores(cores as u16)
            .mode(lim.mode)
            .rss_key(&RSS_KEY_SYMMETRIC)
            .pool(pool.clone())
            .tcp(tcp.clone())
            .build_cores()
            .map_err(|e| e.to_string())
    };
    let client = build(boxed(wc.into_queues()), "10.0.0.1/24")?;
    let mut server = build(boxed(ws.into_queues()), "10.0.0.2/24")?;
    for g in &mut server {
        g.tcp_listen(PORT, 1024).map_err(|e| e.to_string())?;
    }
    let sync = Sync {
        n: cores,
        ready: AtomicUsize::new(0),
        stopped: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
    };
    let outs: Vec<ThreadOut> = std::thread::scope(|scope| {
        let handles: Vec<_> = client
            .into_iter()
            .zip(server)
            .enumerate()
            .map(|(i, (c, s))| {
                let slots = split(CONNS as u64, cores, i) as usize;
                let quota = lim.iters.map(|total| share_of(total, cores, i));
                let sync = &sync;
                std::thread::Builder::new()
                    .name(format!("bench-core{i}"))
                    .spawn_scoped(scope, move || drive(work, i, c, s, slots, quota, lim, sync))
                    .expect("spawn a bench thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let start = outs.iter().map(|o| o.start).min().expect("at least one thread");
    let stop = outs.iter().map(|o| o.stop).max().expect("at least one thread");
    let secs = (stop - start).as_secs_f64().max(1e-9);
    let done: u64 = outs.iter().map(|o| o.done).sum();
    let failures = outs.iter().map(|o| o.failures).sum();
    let msgs = outs
        .iter()
        .flat_map(|o| o.msgs.iter().cloned())
        .take(KEEP_MSGS)
        .collect();
    let polls: u64 = outs.iter().map(|o| o.polls).sum();
    let idle: u64 = outs.iter().map(|o| o.idle_polls).sum();
    let retrans: u64 = outs.iter().map(|o| o.retrans).sum();
    let conns: u64 = outs.iter().map(|o| o.conns).sum();
    let cross: u64 = outs.iter().map(|o| o.cross).sum();
    let per_thread: Vec<String> = outs.iter().map(|o| o.done.to_string()).collect();
    let cpu: Vec<String> = outs.iter().map(|o| format!("{:.0}%", 100.0 * o.cpu_share)).collect();
    let what = match work {
        Workload::Rr => format!("{done} transactions over {CONNS} connections"),
        Workload::Crr => format!("{done} connections, {CONNS} at a time"),
    };
    let in_use = pool.in_use();
    let note = format!(
        "{what} in {secs:.2} s, per core {} with CPU {}, idle polls {:.1}%, server core on another thread for {:.0}% of connections, {retrans} retransmits, {in_use} mbufs in use after",
        per_thread.join("/"),
        cpu.join("/"),
        100.0 * idle as f64 / polls.max(1) as f64,
        100.0 * cross as f64 / conns.max(1) as f64,
    );
    Ok(Measure {
        workload: work,
        cores,
        value: done as f64 / secs,
        done,
        secs,
        failures,
        msgs,
        note,
    })
}

/// `--cores LIST`: the core counts to run, each between 1 and the CPUs this process may use.
pub fn parse_cores(list: &str) -> Result<Vec<usize>, String> {
    let cpus = allowed_cpus().len();
    let mut v = Vec::new();
    for t in list.split(',').map(str::trim) {
        let n: usize = t
            .parse()
            .map_err(|_| format!("--cores: `{t}` is not a number of cores (e.g. --cores 1,2)"))?;
        if n == 0 {
            return Err("--cores: a stack needs at least 1 core".into());
        }
        if n > cpus {
            return Err(format!("--cores: {n} cores but this process may run on {cpus} CPU(s)"));
        }
        if n > CONNS {
            return Err(format!("--cores: at most {CONNS} (one connection per core at least)"));
        }
        v.push(n);
    }
    Ok(v)
}

fn cores_label(n: usize) -> String {
    format!("{n} core{}", if n == 1 { "" } else { "s" })
}

/// `blink bench --cores LIST`: the hook in `bench::run` calls this once the common options
/// are checked.
pub fn run(a: &BenchArgs, cores: &str) -> Result<(), SetupError> {
    let list = parse_cores(cores).map_err(usage)?;
    let mut works = Vec::new();
    for w in a
        .workloads
        .as_deref()
        .unwrap_or("rr,crr")
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        works.push(match w {
            "rr" => Workload::Rr,
            "crr" => Workload::Crr,
            "bulk" | "udp" => {
                return Err(usage(format!("--workloads: `{w}` does not run with --cores (rr and crr do)")).into())
            }
            _ => return Err(usage(format!("--workloads: unknown workload `{w}` (rr, crr with --cores)")).into()),
        });
    }
    if works.is_empty() {
        return Err(usage("--workloads: nothing to run (rr, crr with --cores)").into());
    }
    let lim = Limit {
        dur: Duration::from_secs_f64(a.secs),
        iters: a.iters,
        offload: a.offload,
        mode: a.mode.parse().map_err(|e: String| usage(format!("--mode: {e}")))?,
    };
    // (workload, peer, value, unit) rows for --json.
    let mut rows: Vec<(String, f64, &'static str)> = Vec::new();
    let mut errors = Vec::new();
    for &w in &works {
        let mut ms: Vec<Measure> = Vec::new();
        for &n in &list {
            let m =
                run_one(w, n, lim).map_err(|e| SetupError::Runtime(format!("bench {} --cores {n}: {e}", w.name())))?;
            if !a.json {
                println!(
                    "{:<5} blink {:<8} {:>8.3} M {:<8} ({})",
                    w.name(),
                    cores_label(n),
                    m.value / 1e6,
                    w.unit(),
                    m.note
                );
            }
            if m.failures > 0 {
                errors.push(format!(
                    "{} on {}: {} failure(s): {}",
                    w.name(),
                    cores_label(n),
                    m.failures,
                    m.msgs.join("; ")
                ));
            }
            rows.push((
                format!("{}@{}", w.name(), cores_label(n).replace(' ', "")),
                m.value,
                w.unit(),
            ));
            ms.push(m);
        }
        let base = &ms[0];
        let others = ms.len() - 1;
        for m in &ms[1..] {
            let ratio = m.value / base.value.max(1e-9);
            if !a.json {
                println!("{:<5} scaling {}/{} cores {:.2}x", w.name(), m.cores, base.cores, ratio);
            }
            let name = if others == 1 {
                format!("{}-scaling", w.name())
            } else {
                format!("{}-scaling@{}/{}", w.name(), m.cores, base.cores)
            };
            rows.push((name, ratio, "x"));
        }
    }
    if a.json {
        let items: Vec<String> = rows
            .iter()
            .map(|(w, v, u)| {
                format!("{{\"workload\": \"{w}\", \"peer\": \"blink\", \"value\": {v:.3}, \"unit\": \"{u}\"}}")
            })
            .collect();
        println!("{{\"results\": [{}]}}", items.join(", "));
    }
    if !errors.is_empty() {
        return Err(SetupError::Runtime(format!("bench --cores: {}", errors.join(" | "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(iters: u64, mode: Steering) -> Limit {
        Limit {
            dur: Duration::from_secs(60),
            iters: Some(iters),
            offload: false,
            mode,
        }
    }

    fn check(work: Workload, cores: usize, iters: u64) {
        for mode in [Steering::Rss, Steering::Poller] {
            check_mode(work, cores, iters, mode);
        }
    }

    fn check_mode(work: Workload, cores: usize, iters: u64, mode: Steering) {
        let m = run_one(work, cores, tiny(iters, mode)).unwrap();
        assert_eq!(m.failures, 0, "{work:?} on {cores} core(s): {:?}", m.msgs);
        assert_eq!(m.done, iters, "{work:?} on {cores} core(s): {}", m.note);
        assert!(m.note.contains(" 0 mbufs in use after"), "{}", m.note);
    }

    #[test]
    fn bench_cores_rr_and_crr_complete_on_1_and_2_cores() {
        let max = allowed_cpus().len().min(2);
        for cores in 1..=max {
            check(Workload::Rr, cores, 500);
            check(Workload::Crr, cores, 200);
        }
    }

    #[test]
    fn bench_cores_messages_differ_per_connection_and_direction() {
        assert_ne!(message(1, 0), message(2, 0));
        assert_ne!(message(1, 0), message(1, RESP));
        assert_ne!(message(1, 2), message(1, 4));
    }

    #[test]
    fn bench_cores_shares_add_up() {
        for cores in 1..=5 {
            for total in [1, 7, 64, 1000, 1 << 40] {
                assert_eq!((0..cores).map(|i| share_of(total, cores, i)).sum::<u64>(), total);
            }
            assert_eq!(
                (0..cores).map(|i| split(CONNS as u64, cores, i)).sum::<u64>(),
                CONNS as u64
            );
        }
    }

    #[test]
    fn bench_cores_list_is_checked() {
        assert_eq!(parse_cores("1").unwrap(), [1]);
        for bad in ["0", "x", "1,", "100000"] {
            assert!(parse_cores(bad).unwrap_err().contains("--cores"), "{bad}");
        }
    }
}
