//! `blink bench --workloads conns,timers`: how blink's costs grow with the number of objects
//! it holds. Both are blink-only (the other peers show "n/a").
//!
//! - conns: two blink stacks on the in-memory wire (bench.rs's pair, one thread) open N
//!   concurrent established TCP connections for each N of `--conns` (default 1k,100k; `--quick`
//!   1k,10k), then report the memory each idle connection end costs and the rate of 64-byte
//!   request/response transactions spread over all N connections, with its ratio to the rate
//!   at the first N. The targets (apps/BENCHMARKS.md): 1M connections at <= 1.5 KiB per idle end; rr
//!   at 100k >= 0.8x and at 1M >= 0.7x of rr at 1k.
//! - timers: the per-core timer wheel (netcore/src/timer.rs) on its own: cost of a
//!   `mod_timer` + `del_timer` pair with 10 and with 1,000,000 other timers armed, and the
//!   worst single tick while 1,000,000 timers expire spread over a minute. Targets: the same
//!   cost per operation at 1M armed as at 10; no tick over 1 ms.
//!
//! Figures only: nothing here asserts a time. What is checked is the data (every request and
//! response whole, as rr does), that every connection is torn down at the end, and that no
//! mbuf is left in use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blink_glue::netcore::sock::SockHandle;
use blink_glue::netcore::timer::{TimerId, Timers};
use blink_glue::tcp::{self, TcpConfig};

use crate::bench::{pair, transact, BenchResult, Limit, Meter, Pair, B_IP, MSG};

// ---- conns ----------------------------------------------------------------------------------

/// The client's local port range: all of the unprivileged ports, so one listening port gives
/// 64,512 distinct 4-tuples (the client has one address: the stack picks the source address
/// from the route, so more tuples come from more server ports).
const EPHEMERAL: (u16, u16) = (1024, 65535);
/// The first listening port; connection `i` goes to `BASE_PORT + i / span`.
const BASE_PORT: u16 = 6000;
/// Connections opened per round of polling: well under a listener's backlog (its SYN queue
/// and accept queue), and few enough in-flight handshake frames for the 64k-mbuf pool.
const BATCH: usize = 512;
/// Largest N accepted by `--conns`: 4M connections are 8M sockets, beyond what this machine
/// holds in memory (~1.5 KiB per end at best).
pub(crate) const MAX_CONNS: usize = 4_000_000;

/// One N's figures.
#[derive(Clone, Debug)]
pub struct ConnsPoint {
    pub conns: usize,
    /// Seconds to open all N (handshakes, accepts, pairing).
    pub setup_s: f64,
    /// Process RSS growth over opening the N idle connections, per connection end (2N ends).
    pub bytes_per_end: f64,
    /// Seconds for one (untimed, checked) transaction on every connection before the timed
    /// part, and the RSS growth per end measured after it (the connections idle again).
    pub warm_s: f64,
    pub bytes_per_end_used: f64,
    /// mbufs held by the idle connections (expected 0).
    pub idle_mbufs: usize,
    /// Listening ports the N connections were spread over.
    pub ports: usize,
    /// Checked transactions per second over all N connections, and how many were made.
    pub rr: f64,
    pub trans: u64,
    /// rr / rr at the first N of the list.
    pub ratio: f64,
    pub frames_per_trans: f64,
    pub cpu_us_per_trans: f64,
    /// What the extra frames were, both stacks over the rr phase (TcpExt.DelayedACKs,
    /// Tcp.RetransSegs, TcpExt.TCPLossProbes): once a connection waits longer than the
    /// delayed-ACK timer between its transactions, each response is acknowledged by a frame
    /// of its own.
    pub delayed_acks: u64,
    pub retrans: u64,
    pub loss_probes: u64,
}

/// Parse `--conns LIST`: counts separated by commas, each a plain number or with a `k` or
/// `M` suffix (1k = 1,000), between 1 and MAX_CONNS.
pub fn parse_conns(list: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (num, mul) = match w.as_bytes()[w.len() - 1] {
            b'k' | b'K' => (&w[..w.len() - 1], 1_000),
            b'm' | b'M' => (&w[..w.len() - 1], 1_000_000),
            _ => (w, 1),
        };
        let n = num
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_mul(mul))
            .ok_or_else(|| format!("--conns: `{w}` is not a count (e.g. 1000,100000 or 1k,100k,1M)"))?;
        if n == 0 || n > MAX_CONNS {
            return Err(format!("--conns: {n} is out of range (1 to {MAX_CONNS})"));
        }
        out.push(n);
    }
    if out.is_empty() {
        return Err("--conns: no count given (e.g. 1000,100000)".into());
    }
    Ok(out)
}

/// The default `--conns`: 1k and 100k, or 1k and 10k with `--quick`.
pub fn default_conns(quick: bool) -> Vec<usize> {
    if quick {
        vec![1_000, 10_000]
    } else {
        vec![1_000, 100_000]
    }
}

/// Resident set size of this process, bytes (None where /proc is not readable).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as u64)
}

/// Hand memory freed earlier back to the kernel, so that RSS measures what is live: without
/// it, a previous N's freed memory would be reused silently and the growth undercounted.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Write every buffer of `pool` once. The pool's memory is allocated when the pool is made
/// but its pages become resident only when first written, which would otherwise happen
/// during the workload and count as the connections' memory (about 140 MB for the pair's
/// 65,536 mbufs, depending on how many different buffers the traffic happens to touch).
fn prefault(pool: &blink_glue::netcore::Mempool) {
    let mut held = Vec::with_capacity(pool.capacity());
    while let Some(mut m) = pool.alloc() {
        if let Some(b) = m.buf_mut() {
            b.fill(0);
        }
        held.push(m);
    }
}

/// Listening ports needed for `n` connections with `span` local ports per server port.
fn ports_needed(n: usize, span: usize) -> usize {
    n.div_ceil(span).max(1)
}

/// Step through the N connections in a scattered order that still visits each one once per
/// N transactions: a stride near N times the golden ratio, coprime to N.
fn stride_for(n: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if n <= 2 {
        return 1;
    }
    let mut s = ((n as f64 * 0.618_033_988_75) as usize).max(1);
    while gcd(s, n) != 1 {
        s += 1;
    }
    s
}

/// Collect and forget the sockets' pending events, as an application's poll loop would (the
/// ready list otherwise holds an entry per socket with news).
fn drain_events(p: &mut Pair, evs: &mut Vec<(SockHandle, u8)>) {
    evs.clear();
    let _ = tcp::tcp_events(&mut p.a, evs);
    evs.clear();
    let _ = tcp::tcp_events(&mut p.b, evs);
    evs.clear();
}

/// (local port, remote port) of socket `h`.
fn ports_of(st: &mut blink_glue::ipv4::Stack, h: SockHandle) -> Result<(u16, u16), String> {
    tcp::with_tcp(st, |t, _| t.socks.get(h).map(|s| (s.sport, s.dport)))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "a socket vanished during set-up".to_string())
}

/// Sockets of both stacks: live, in SYN-RECV, in TIME-WAIT.
fn socks_left(p: &mut Pair) -> usize {
    let mut n = 0;
    for st in [&mut p.a, &mut p.b] {
        n += tcp::with_tcp(st, |t, _| t.socks.len() + t.reqs.len() + t.tw.len()).unwrap_or(0);
    }
    n
}

/// Counters that say why handshakes stalled.
fn stall_report(p: &mut Pair) -> String {
    use blink_glue::netcore::snmp::{TcpExtMib, TcpMib};
    let b = &p.b.core.mib;
    format!(
        "server: Tcp.PassiveOpens {}, TcpExt.ListenOverflows {}, TcpExt.ListenDrops {}, TcpExt.SyncookiesSent {}; {} mbufs in use of {}",
        b.tcp[TcpMib::PassiveOpens],
        b.tcp_ext[TcpExtMib::ListenOverflows],
        b.tcp_ext[TcpExtMib::ListenDrops],
        b.tcp_ext[TcpExtMib::SyncookiesSent],
        p.pool.in_use(),
        p.pool.capacity()
    )
}

/// N established connections between the pair's two stacks.
struct Opened {
    p: Pair,
    listeners: Vec<SockHandle>,
    /// (client, server) of every connection.
    conns: Vec<(SockHandle, SockHandle)>,
}

/// Open `n` connections, `BATCH` at a time, connection `i` to port `BASE_PORT + i / span`.
/// Connections are paired by their ports (the client's local port and the server port), not
/// by the order of accepts.
fn open(mut p: Pair, n: usize, span: usize) -> Result<Opened, String> {
    let ports = ports_needed(n, span);
    let mut listeners = Vec::with_capacity(ports);
    for k in 0..ports {
        let port = BASE_PORT + k as u16;
        listeners.push(tcp::tcp_listen(&mut p.b, port, 4096).map_err(|e| format!("listen on {port}: {e}"))?);
    }
    let mut conns = Vec::with_capacity(n);
    let mut pending: HashMap<(u16, u16), SockHandle> = HashMap::with_capacity(BATCH);
    let mut evs = Vec::new();
    while conns.len() < n {
        // The first connection goes alone: its SYN waits for ARP, and the neighbour entry
        // holds only ~100 packets while unresolved (the rest would wait for their RTO).
        let batch = if conns.is_empty() {
            1
        } else {
            (n - conns.len()).min(BATCH)
        };
        for j in 0..batch {
            let i = conns.len() + j;
            let port = BASE_PORT + (i / span) as u16;
            let c = tcp::tcp_connect(&mut p.a, B_IP, port).map_err(|e| {
                format!(
                    "connection {i} (to port {port}): {e}; {span} local ports from {}",
                    EPHEMERAL.0
                )
            })?;
            let (lport, _) = ports_of(&mut p.a, c)?;
            pending.insert((lport, port), c);
        }
        // The listeners this batch went to.
        let first = conns.len() / span;
        let last = (conns.len() + batch - 1) / span;
        let t0 = Instant::now();
        while !pending.is_empty() {
            p.poll();
            for &l in &listeners[first..=last] {
                while let Some(s) = tcp::tcp_accept(&mut p.b, l).map_err(|e| e.to_string())? {
                    // The server's (local, remote) ports are the client's (remote, local).
                    let (sport, dport) = ports_of(&mut p.b, s)?;
                    let c = pending.remove(&(dport, sport)).ok_or_else(|| {
                        format!("accepted a connection from port {dport} to {sport} that was not opened")
                    })?;
                    conns.push((c, s));
                }
            }
            // Long enough for lost SYNs to be sent again (initial RTO 1 s, then 2 s...).
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "handshakes stalled for 10 s with {} of {n} connections open, {} pending ({})",
                    conns.len(),
                    pending.len(),
                    stall_report(&mut p)
                ));
            }
        }
        drain_events(&mut p, &mut evs);
    }
    Ok(Opened { p, listeners, conns })
}

/// Close every connection (both ends, `BATCH` pairs at a time so the FINs fit the pool) and
/// the listeners, wait for TIME-WAIT to end, and check that no socket and no mbuf is left.
fn close_all(o: &mut Opened) -> Result<(), String> {
    let mut evs = Vec::new();
    for chunk in o.conns.chunks(BATCH) {
        for &(c, s) in chunk {
            tcp::tcp_close(&mut o.p.a, c).map_err(|e| format!("close (client): {e}"))?;
            tcp::tcp_close(&mut o.p.b, s).map_err(|e| format!("close (server): {e}"))?;
        }
        // Every FIN acknowledged (none left in a retransmit queue or on the wire).
        let t0 = Instant::now();
        while o.p.pool.in_use() > 0 {
            o.p.poll();
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(format!("closing: {} mbufs still in use after 10 s", o.p.pool.in_use()));
            }
        }
        drain_events(&mut o.p, &mut evs);
    }
    for &l in &o.listeners {
        tcp::tcp_close(&mut o.p.b, l).map_err(|e| format!("close (listener): {e}"))?;
    }
    // TIME-WAIT is short in this workload's configuration (10 ms): wait it out.
    let t = Instant::now();
    while socks_left(&mut o.p) > 0 {
        if t.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "conns: {} sockets (live, SYN-RECV or TIME-WAIT) left 30 s after closing",
                socks_left(&mut o.p)
            ));
        }
        o.p.poll();
    }
    o.p.drain("conns")
}

/// The TCP configuration of both stacks: `span` local ports for active opens (all of the
/// unprivileged ones in the real run).
fn conns_config(span: usize) -> TcpConfig {
    TcpConfig {
        nodelay: true,
        ephemeral_ports: (
            EPHEMERAL.0,
            (EPHEMERAL.0 as usize + span - 1).min(u16::MAX as usize) as u16,
        ),
        // Only the teardown at the end meets TIME-WAIT: keep it short so the check that
        // every socket is gone does not wait a minute.
        timewait_ms: 10,
        ..Default::default()
    }
}

/// Measure one N: open, let it go idle, measure memory, run transactions, close.
fn conns_at(n: usize, span: usize, lim: Limit) -> Result<(ConnsPoint, BenchResult), String> {
    // Memory freed by an earlier N goes back first, and the pair exists, its mbuf pool made
    // resident, before the first reading: the growth is what the connections added
    // (sockets, hash entries, timers, and the tables' growth), less the bench's own list of
    // handles.
    trim_heap();
    let p = pair(conns_config(span), lim);
    prefault(&p.pool);
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    let mut o = open(p, n, span)?;
    let setup_s = t0.elapsed().as_secs_f64();
    // Idle: let anything still in flight (the handshakes' last ACKs) settle.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(50) {
        o.p.poll();
    }
    let mut evs = Vec::new();
    drain_events(&mut o.p, &mut evs);
    let idle_mbufs = o.p.pool.in_use();
    trim_heap();
    let rss1 = rss_bytes();
    // The handle list is the bench's, not the connections': left out.
    let list_bytes = (o.conns.capacity() * std::mem::size_of::<(SockHandle, SockHandle)>()) as f64;
    let per_end = |rss: Option<u64>| match (rss0, rss) {
        (Some(a), Some(b)) => (b as f64 - a as f64 - list_bytes).max(0.0) / (2 * n) as f64,
        _ => f64::NAN,
    };
    let bytes_per_end = per_end(rss1);

    // One transaction on every connection first, untimed: a connection's first exchange
    // differs from the later ones (the server's first read opens the window the SYN-ACK
    // announced unscaled, with an ACK of its own), and a timed part too short to reach every
    // connection would otherwise measure mostly first exchanges at large N.
    let (mut req, mut resp, mut buf) = ([0u8; MSG], [0u8; MSG], [0u8; MSG]);
    let t = Instant::now();
    for (i, &(c, s)) in o.conns.iter().enumerate() {
        transact(&mut o.p, c, s, i as u64, &mut req, &mut resp, &mut buf)
            .map_err(|e| format!("connection {i}, first transaction: {e}"))?;
        if i % 64 == 63 {
            drain_events(&mut o.p, &mut evs);
        }
    }
    let warm_s = t.elapsed().as_secs_f64();
    // Idle again: the delayed ACKs of the last responses go out.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(100) {
        o.p.poll();
    }
    drain_events(&mut o.p, &mut evs);
    trim_heap();
    let bytes_per_end_used = per_end(rss_bytes());

    let counters = |p: &Pair| {
        use blink_glue::netcore::snmp::{TcpExtMib, TcpMib};
        let (a, b) = (&p.a.core.mib, &p.b.core.mib);
        [
            a.tcp_ext[TcpExtMib::DelayedACKs] + b.tcp_ext[TcpExtMib::DelayedACKs],
            a.tcp[TcpMib::RetransSegs] + b.tcp[TcpMib::RetransSegs],
            a.tcp_ext[TcpExtMib::TCPLossProbes] + b.tcp_ext[TcpExtMib::TCPLossProbes],
        ]
    };
    let c0 = counters(&o.p);
    let stride = stride_for(n);
    let (mut k, mut at) = (0u64, 0usize);
    let f0 = o.p.frames();
    let m = Meter::start();
    while lim.more(m.t0, k) {
        for _ in 0..64 {
            let (c, s) = o.conns[at];
            transact(&mut o.p, c, s, k, &mut req, &mut resp, &mut buf).map_err(|e| format!("connection {at}: {e}"))?;
            k += 1;
            at = (at + stride) % n;
        }
        drain_events(&mut o.p, &mut evs);
    }
    let (el, cpu) = m.stop();
    let frames = o.p.frames() - f0;
    let c1 = counters(&o.p);
    close_all(&mut o)?;
    let rr = k as f64 / el;
    let point = ConnsPoint {
        conns: n,
        setup_s,
        bytes_per_end,
        warm_s,
        bytes_per_end_used,
        idle_mbufs,
        ports: o.listeners.len(),
        rr,
        trans: k,
        ratio: 1.0,
        frames_per_trans: frames as f64 / k.max(1) as f64,
        cpu_us_per_trans: cpu * 1e6 / k.max(1) as f64,
        delayed_acks: c1[0] - c0[0],
        retrans: c1[1] - c0[1],
        loss_probes: c1[2] - c0[2],
    };
    let r = BenchResult {
        workload: "conns",
        value: rr,
        unit: "trans/s",
        note: String::new(),
        work: k as f64,
        per: "trans",
        frames: Some(frames),
        cpu_s: cpu,
    };
    Ok((point, r))
}

/// The conns workload over every N of `list`, in order: the table row (the last N's rr, with
/// its ratio to the first N's) and one point per N.
pub(crate) fn conns(list: &[usize], lim: Limit) -> Result<(BenchResult, Vec<ConnsPoint>), String> {
    conns_with_span(list, lim, (EPHEMERAL.1 - EPHEMERAL.0) as usize + 1)
}

/// `conns` with a different number of local ports (the tests use a small range so that a
/// few dozen connections already need several listening ports and reuse every local port).
fn conns_with_span(list: &[usize], lim: Limit, span: usize) -> Result<(BenchResult, Vec<ConnsPoint>), String> {
    let mut points: Vec<ConnsPoint> = Vec::new();
    let mut last = None;
    for &n in list {
        let ports = ports_needed(n, span);
        if BASE_PORT as usize + ports > u16::MAX as usize {
            return Err(format!(
                "{n} connections need {ports} listening ports from {BASE_PORT}: too many"
            ));
        }
        eprintln!("bench: conns: opening {n} connections over {ports} listening port(s)...");
        let (mut pt, r) = conns_at(n, span, lim).map_err(|e| format!("{n} connections: {e}"))?;
        if let Some(first) = points.first() {
            pt.ratio = pt.rr / first.rr;
        }
        points.push(pt);
        last = Some(r);
    }
    let mut result = last.ok_or("--conns: no count given")?;
    let (first, end) = (&points[0], &points[points.len() - 1]);
    result.note = format!(
        "rr over {} connections = {:.2}x rr over {}; {:.0} B per idle connection end (process RSS); every transaction checked, every socket closed, 0 mbufs left",
        end.conns, end.ratio, first.conns, end.bytes_per_end
    );
    Ok((result, points))
}

/// `1.23 M`-style counts for the per-N lines.
fn fmt_count(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// One line per N after the table.
pub fn print_conns(points: &[ConnsPoint]) {
    let Some(first) = points.first() else { return };
    println!();
    println!(
        "{:<12} {:>6} {:>8} {:>11} {:>6} {:>7} {:>11} {:>12} {:>10} {:>13} {:>13} {:>13} {:>8}",
        "connections",
        "ports",
        "setup s",
        "B/conn end",
        "mbufs",
        "warm s",
        "B/end used",
        "rr trans/s",
        format!("rr/rr({})", fmt_count(first.conns)),
        "frames/trans",
        "CPU-us/trans",
        "delack/trans",
        "retrans"
    );
    for p in points {
        let per = |x: u64| x as f64 / p.trans.max(1) as f64;
        println!(
            "{:<12} {:>6} {:>8.2} {:>11.0} {:>6} {:>7.2} {:>11.0} {:>12.0} {:>10.2} {:>13.2} {:>13.3} {:>13.2} {:>8}",
            p.conns,
            p.ports,
            p.setup_s,
            p.bytes_per_end,
            p.idle_mbufs,
            p.warm_s,
            p.bytes_per_end_used,
            p.rr,
            p.ratio,
            p.frames_per_trans,
            p.cpu_us_per_trans,
            per(p.delayed_acks),
            p.retrans
        );
    }
    println!("(targets: <= 1536 B per idle connection end at 1M; rr at 100k >= 0.80x and at 1M >= 0.70x rr at 1k)");
}

/// The per-N points as a JSON array.
pub fn conns_json(points: &[ConnsPoint]) -> String {
    let items: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{{\"connections\": {}, \"ports\": {}, \"setup_s\": {:.3}, \"bytes_per_conn_end\": {:.1}, \"idle_mbufs\": {}, \"warm_s\": {:.3}, \"bytes_per_conn_end_used\": {:.1}, \"rr_trans_per_s\": {:.1}, \"transactions\": {}, \"ratio\": {:.4}, \"frames_per_trans\": {:.3}, \"cpu_us_per_trans\": {:.4}, \"delayed_acks\": {}, \"retrans\": {}, \"loss_probes\": {}}}",
                p.conns,
                p.ports,
                p.setup_s,
                json_num(p.bytes_per_end),
                p.idle_mbufs,
                p.warm_s,
                json_num(p.bytes_per_end_used),
                p.rr,
                p.trans,
                p.ratio,
                p.frames_per_trans,
                p.cpu_us_per_trans,
                p.delayed_acks,
                p.retrans,
                p.loss_probes
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// NaN (RSS unreadable) is not JSON: -1 instead.
fn json_num(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        -1.0
    }
}

// ---- timers ---------------------------------------------------------------------------------

/// Timers armed in the large case and expired in the tick measurement.
const ONE_M: usize = 1_000_000;
/// The 1M timers' expiries are spread over this many jiffies (a minute at HZ = 1000): about
/// 17 due per tick, and two of the wheel's 2^15-jiffy block boundaries crossed.
const SPREAD: u64 = 60_000;
/// The first level of blink's wheel (netcore timer.rs, `TVR_SIZE`): 64 one-jiffy buckets;
/// each time it wraps, the next second-level bucket cascades down into it.
const WRAP: u64 = 64;
/// Timers the measured operations cycle through (so they stay in cache: this measures the
/// wheel, not cache misses on a million timers).
const PROBES: usize = 1024;
/// Operation pairs per measurement without `--iters`.
const OPS: usize = 2_000_000;

struct TCtx {
    timers: Timers<TCtx>,
    fired: u64,
}

fn on_fire(ctx: &mut TCtx, _data: u64) {
    ctx.fired += 1;
}

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

/// A wheel with `n` timers armed at random expiries in 1..=SPREAD jiffies.
fn armed(n: usize, rng: &mut XorShift) -> TCtx {
    let mut ctx = TCtx {
        timers: Timers::with_capacity(0, n + PROBES),
        fired: 0,
    };
    for i in 0..n {
        let id = ctx.timers.timer_setup(on_fire, i as u64);
        let e = 1 + rng.below(SPREAD);
        ctx.timers.mod_timer(id, e);
    }
    ctx
}

/// A wheel with `n` timers armed, and the timers and expiries the measured operations use.
struct OpBench {
    ctx: TCtx,
    probes: Vec<TimerId>,
    delays: Vec<u64>,
}

impl OpBench {
    fn new(n: usize, seed: u64) -> OpBench {
        let mut rng = XorShift(seed);
        let mut ctx = armed(n, &mut rng);
        let probes = (0..PROBES).map(|i| ctx.timers.timer_setup(on_fire, i as u64)).collect();
        let delays = (0..4096).map(|_| 1 + rng.below(SPREAD)).collect();
        OpBench { ctx, probes, delays }
    }

    /// Time `count` pairs of `mod_timer` (an idle timer, a random expiry) + `del_timer`.
    fn run(&mut self, count: usize) -> Duration {
        let timers = &mut self.ctx.timers;
        let t = Instant::now();
        for i in 0..count {
            let id = self.probes[i % PROBES];
            std::hint::black_box(timers.mod_timer(id, self.delays[i % 4096]));
            std::hint::black_box(timers.del_timer(id));
        }
        t.elapsed()
    }
}

/// ns per mod_timer + del_timer pair with 10 and with 1M other timers armed: the best of five
/// rounds of `ops` pairs each, the two wheels taking turns (so that a busy moment on this
/// shared machine does not fall on one of them only); also the CPU seconds of the 1M rounds.
fn op_costs(small: usize, large: usize, ops: usize) -> (f64, f64, f64) {
    let mut s = OpBench::new(small, 0x1234_5678);
    let mut l = OpBench::new(large, 0x8765_4321);
    s.run(ops / 10); // warm up
    l.run(ops / 10);
    let (mut bs, mut bl, mut cpu) = (Duration::MAX, Duration::MAX, 0.0);
    for _ in 0..5 {
        bs = bs.min(s.run(ops));
        let c0 = crate::bench::cpu_secs();
        bl = bl.min(l.run(ops));
        cpu += crate::bench::cpu_secs() - c0;
    }
    let ns = |d: Duration| d.as_nanos() as f64 / ops as f64;
    (ns(bs), ns(bl), cpu)
}

/// CPU time this thread has used, ns: unlike the wall clock, it stops while the thread waits
/// for a core (this machine is shared, and a preempted tick looks 4 ms long on the wall).
fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime writes the timespec it is given; zeroed is a valid timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Ticks of the expiry run, each timed on the wall clock and in thread CPU time.
pub struct TickStats {
    pub ticks: u64,
    pub fired: u64,
    /// Wall clock: the slowest tick, where, the 99.99th percentile, the mean, how many took
    /// over 1 ms.
    pub worst_us: f64,
    pub worst_at: u64,
    pub p9999_us: f64,
    pub mean_us: f64,
    pub over_1ms: usize,
    /// CPU time: the slowest tick and where, how many took over 1 ms.
    pub worst_cpu_us: f64,
    pub worst_cpu_at: u64,
    pub cpu_over_1ms: usize,
    /// The CPU time of the slowest tick at a multiple of `WRAP` jiffies (where the wheel's
    /// first level wraps and the next `WRAP` jiffies' timers are cascaded down) and of
    /// the slowest elsewhere.
    pub worst_cpu_wrap_us: f64,
    pub worst_cpu_other_us: f64,
}

/// Arm ONE_M timers over SPREAD jiffies, then advance one jiffy at a time until all have run,
/// timing each tick: the wheel's advance plus running the callbacks due.
fn tick_run(seed: u64) -> Result<TickStats, String> {
    let mut rng = XorShift(seed);
    let mut ctx = armed(ONE_M, &mut rng);
    // (wall ns, CPU ns, jiffy) per tick.
    let mut samples: Vec<(u64, u64, u64)> = Vec::with_capacity(SPREAD as usize);
    let t0 = Instant::now();
    for j in 1..=SPREAD {
        let c = thread_cpu_ns();
        let t = Instant::now();
        ctx.timers.advance(j);
        while let Some((func, data)) = ctx.timers.next_expired() {
            func(&mut ctx, data);
        }
        let wall = t.elapsed().as_nanos() as u64;
        samples.push((wall, thread_cpu_ns().saturating_sub(c), j));
    }
    let total = t0.elapsed();
    if ctx.fired != ONE_M as u64 || ctx.timers.armed() != 0 {
        return Err(format!(
            "timers: {} of {ONE_M} timers ran, {} still armed after {SPREAD} ticks",
            ctx.fired,
            ctx.timers.armed()
        ));
    }
    let us = |ns: u64| ns as f64 / 1e3;
    samples.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    let (worst, _, worst_at) = samples[0];
    let p9999 = samples[samples.len() / 10_000].0;
    let over_1ms = samples.iter().take_while(|s| s.0 > 1_000_000).count();
    samples.sort_unstable_by_key(|s| std::cmp::Reverse(s.1));
    let (_, worst_cpu, worst_cpu_at) = samples[0];
    let worst_cpu_of = |wrap: bool| {
        samples
            .iter()
            .find(|s| (s.2 % WRAP == 0) == wrap)
            .map_or(0.0, |s| us(s.1))
    };
    Ok(TickStats {
        ticks: SPREAD,
        fired: ctx.fired,
        worst_us: us(worst),
        worst_at,
        p9999_us: us(p9999),
        mean_us: total.as_nanos() as f64 / SPREAD as f64 / 1e3,
        over_1ms,
        worst_cpu_us: us(worst_cpu),
        worst_cpu_at,
        cpu_over_1ms: samples.iter().take_while(|s| s.1 > 1_000_000).count(),
        worst_cpu_wrap_us: worst_cpu_of(true),
        worst_cpu_other_us: worst_cpu_of(false),
    })
}

/// The timers workload's figures.
pub struct TimersReport {
    /// ns per mod_timer + del_timer pair with 10 and with 1M timers armed.
    pub ns_small: f64,
    pub ns_large: f64,
    pub ticks: TickStats,
}

/// The timers workload: the table row (ns per pair at 1M armed) and the figures.
/// `--iters N` sets the operation pairs per measurement to N thousand.
pub(crate) fn timers(lim: Limit) -> Result<(BenchResult, TimersReport), String> {
    let ops = lim.iters.map_or(OPS, |k| (k as usize).saturating_mul(1000).max(1000));
    let (ns_small, ns_large, cpu) = op_costs(10, ONE_M, ops);
    let ticks = tick_run(0x00C0_FFEE)?;
    let result = BenchResult {
        workload: "timers",
        value: ns_large,
        unit: "ns/op pair",
        note: format!(
            "mod_timer + del_timer {ns_small:.1} ns at 10 armed, {ns_large:.1} ns at 1M armed ({:.2}x); worst tick {:.0} us of CPU ({:.0} us on the wall) while 1M timers expired over {} ticks",
            ns_large / ns_small,
            ticks.worst_cpu_us,
            ticks.worst_us,
            ticks.ticks
        ),
        work: 5.0 * ops as f64,
        per: "pair",
        frames: None,
        cpu_s: cpu,
    };
    Ok((
        result,
        TimersReport {
            ns_small,
            ns_large,
            ticks,
        },
    ))
}

/// The timers lines after the table.
pub fn print_timers(t: &TimersReport) {
    println!();
    println!(
        "timers: mod_timer + del_timer {:.1} ns at 10 armed, {:.1} ns at 1,000,000 armed: ratio {:.2} (target 1.00)",
        t.ns_small,
        t.ns_large,
        t.ns_large / t.ns_small
    );
    let k = &t.ticks;
    println!(
        "timers: {} timers expiring over {} ticks: worst tick {:.1} us of CPU at jiffy {} (target <= 1000 us), {} ticks over 1 ms of CPU; at a multiple of {WRAP} jiffies (first level wraps) {:.1} us, elsewhere {:.1} us",
        k.fired, k.ticks, k.worst_cpu_us, k.worst_cpu_at, k.cpu_over_1ms, k.worst_cpu_wrap_us, k.worst_cpu_other_us
    );
    println!(
        "timers: on the wall clock (with waits for a core): worst {:.1} us at jiffy {}, p99.99 {:.1} us, mean {:.2} us, {} ticks over 1 ms",
        k.worst_us, k.worst_at, k.p9999_us, k.mean_us, k.over_1ms
    );
}

/// The timers figures as a JSON object.
pub fn timers_json(t: &TimersReport) -> String {
    let k = &t.ticks;
    format!(
        "{{\"ns_per_pair_10\": {:.2}, \"ns_per_pair_1m\": {:.2}, \"ratio\": {:.4}, \"ticks\": {}, \"fired\": {}, \"worst_tick_cpu_us\": {:.1}, \"ticks_over_1ms_cpu\": {}, \"worst_wrap_tick_cpu_us\": {:.1}, \"worst_other_tick_cpu_us\": {:.1}, \"worst_tick_wall_us\": {:.1}, \"p9999_tick_wall_us\": {:.1}, \"mean_tick_wall_us\": {:.3}, \"ticks_over_1ms_wall\": {}}}",
        t.ns_small,
        t.ns_large,
        t.ns_large / t.ns_small,
        k.ticks,
        k.fired,
        k.worst_cpu_us,
        k.cpu_over_1ms,
        k.worst_cpu_wrap_us,
        k.worst_cpu_other_us,
        k.worst_us,
        k.p9999_us,
        k.mean_us,
        k.over_1ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(iters: u64) -> Limit {
        Limit {
            dur: Duration::from_secs(1),
            iters: Some(iters),
            buf: 256 * 1024,
            offload: false,
        }
    }

    #[test]
    fn conns_parse() {
        assert_eq!(parse_conns("1000,100000"), Ok(vec![1000, 100_000]));
        assert_eq!(parse_conns("1k, 100k,1M"), Ok(vec![1000, 100_000, 1_000_000]));
        for bad in ["", "0", "x", "1k5", "-3", "5000000", "99999999999999999999"] {
            assert!(parse_conns(bad).unwrap_err().starts_with("--conns"), "{bad}");
        }
    }

    #[test]
    fn ports_cover_a_million() {
        let span = (EPHEMERAL.1 - EPHEMERAL.0) as usize + 1;
        assert_eq!(ports_needed(1_000_000, span), 16);
        assert_eq!(ports_needed(span, span), 1);
        assert_eq!(ports_needed(span + 1, span), 2);
    }

    /// The scattered order visits every connection once per N transactions.
    #[test]
    fn stride_visits_every_connection() {
        for n in [1usize, 2, 3, 10, 1000, 4096, 100_000] {
            let s = stride_for(n);
            let mut seen = vec![false; n];
            let mut at = 0;
            for _ in 0..n {
                assert!(!seen[at], "n {n}: {at} twice");
                seen[at] = true;
                at = (at + s) % n;
            }
        }
    }

    /// A few connections over several listening ports (8 local ports, each used once per
    /// listening port):
    /// every transaction checked, every socket closed, 0 mbufs left (conns_at fails
    /// otherwise).
    #[test]
    fn conns_tiny_checks_data_and_ends_clean() {
        let (r, points) = conns_with_span(&[3, 20], lim(200), 8).expect("conns");
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].ports, 1);
        assert_eq!(points[1].ports, 3);
        for p in &points {
            assert_eq!(p.idle_mbufs, 0);
            assert!(p.rr > 0.0);
            // Two frames per transaction at least (request and response).
            assert!(p.frames_per_trans >= 2.0, "{}", p.frames_per_trans);
        }
        assert_eq!(r.workload, "conns");
        assert_eq!(r.work, 256.0); // rounds of 64 until 200 were done
    }

    #[test]
    fn timer_ticks_run_every_timer() {
        // The full tick run (1M timers) takes ~1 s in a test build: check the op cost on a
        // small wheel instead, and that a short expiry run fires everything.
        let (small, large, _) = op_costs(10, 1000, 10_000);
        assert!(small > 0.0 && large > 0.0);
        let mut rng = XorShift(3);
        let mut ctx = armed(5000, &mut rng);
        for j in 1..=SPREAD {
            ctx.timers.advance(j);
            while let Some((f, d)) = ctx.timers.next_expired() {
                f(&mut ctx, d);
            }
        }
        assert_eq!(ctx.fired, 5000);
    }
}
