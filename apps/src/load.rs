//! `blink load`: an HTTP load generator on glue, like mTCP's epwget or ab. `-n` requests in
//! total over `-c` concurrent connections, each carrying up to `--keepalive` requests; then
//! requests/s, failures, latency percentiles (from the connect for a connection's first
//! request, like ab), bytes, and with `--sha256` the bodies' hash.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use blink_glue::{CloseReason, Closed, Glue, GlueError, GlueHandler, Socket};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::args::{usage, DevArgs, UsageError};
use crate::cores::{report_cores, run_cores, CoreApp, RunOpts};
use crate::httpd::http_tcp_config;
use crate::setup::{build_cores, stop_flag, SetupError};

#[derive(Args, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub dev: DevArgs,
    /// What to fetch: http://IP[:PORT]/PATH (an IPv4 address; blink has no resolver).
    #[arg(long)]
    pub url: String,
    /// Requests in total.
    #[arg(short = 'n', long = "requests", default_value_t = 1000)]
    pub n: u64,
    /// Connections open at once.
    #[arg(short = 'c', long = "concurrency", default_value_t = 10)]
    pub c: u32,
    /// Requests per connection (1 = a new connection for every request).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub keepalive: u32,
    /// Hash every body with SHA-256: all must match (print it once); a differing one fails.
    #[arg(long)]
    pub sha256: bool,
    /// Give up after this many seconds (what is unfinished counts as failed).
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub timeout: f64,
    /// Print the results as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The parts of an `http://` URL blink load needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Target, UsageError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| usage(format!("--url: `{url}` must start with http://")))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| usage(format!("--url: port `{p}` is not a number 0..65535")))?,
        ),
        None => (hostport, 80),
    };
    let ip = host
        .parse::<Ipv4Addr>()
        .map_err(|_| usage(format!("--url: host `{host}` must be an IPv4 address")))?;
    if port == 0 {
        return Err(usage("--url: port 0"));
    }
    Ok(Target {
        ip,
        port,
        path: path.to_string(),
    })
}

/// Where a response is in its parse.
enum Phase {
    Head,
    /// Body bytes still to come.
    Body(usize),
}

/// One connection of the generator.
struct Flow {
    /// Requests this connection may still send (keep-alive budget).
    budget: u32,
    phase: Phase,
    /// Head bytes received so far.
    head: Vec<u8>,
    started: Instant,
    /// The server answered `Connection: close`, or spoke HTTP/1.0 without keep-alive.
    server_closes: bool,
    status: u16,
    body_len: usize,
    hasher: Option<Sha256>,
    /// A request is out and its response not complete.
    in_flight: bool,
    /// Request bytes not yet taken by the socket.
    unsent: usize,
    /// No request sent yet: the first one's latency counts from the connect (as ab's does).
    fresh: bool,
}

/// Why a request failed: what `blink load` reports next to the count, as ab's "Failed
/// requests" line breaks down into connect, receive, length and exceptions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Failure {
    /// Could not open a connection (no port, no memory, no route).
    Connect,
    /// RST in reply to our SYN (ECONNREFUSED).
    Refused,
    /// RST on an established connection (ECONNRESET).
    Reset,
    /// Retransmissions ran out (ETIMEDOUT).
    TimedOut,
    /// The stack aborted the connection.
    Aborted,
    /// The server closed before the response was complete.
    Closed,
    /// A response blink load could not parse (head, length).
    BadResponse,
    /// A status other than 200.
    Status,
    /// A body whose SHA-256 differs from the first one's (`--sha256`).
    Sha256,
    /// Still unanswered when `--timeout` ran out.
    Unfinished,
}

impl Failure {
    pub const ALL: [Failure; 10] = [
        Failure::Connect,
        Failure::Refused,
        Failure::Reset,
        Failure::TimedOut,
        Failure::Aborted,
        Failure::Closed,
        Failure::BadResponse,
        Failure::Status,
        Failure::Sha256,
        Failure::Unfinished,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::TimedOut => "timed_out",
            Failure::Aborted => "aborted",
            Failure::Closed => "closed",
            Failure::BadResponse => "bad_response",
            Failure::Status => "status",
            Failure::Sha256 => "sha256",
            Failure::Unfinished => "unfinished",
        }
    }

    fn of_close(r: CloseReason) -> Failure {
        match r {
            CloseReason::Normal => Failure::Closed,
            CloseReason::Refused => Failure::Refused,
            CloseReason::Reset => Failure::Reset,
            CloseReason::TimedOut => Failure::TimedOut,
            CloseReason::Aborted => Failure::Aborted,
        }
    }
}

/// One core's figures (merged over the cores at the end).
#[derive(Default)]
pub struct LoadStats {
    pub ok: u64,
    pub failed: u64,
    /// `failed` by reason, indexed like `Failure::ALL`.
    pub failures: [u64; Failure::ALL.len()],
    pub body_bytes: u64,
    pub latencies_us: Vec<u64>,
    pub sha256: Option<[u8; 32]>,
    pub sha_mismatch: u64,
    pub connections: u64,
}

impl LoadStats {
    /// Add another core's figures (latencies appended, unsorted).
    pub fn merge(&mut self, o: LoadStats) {
        self.ok += o.ok;
        self.failed += o.failed;
        for (a, b) in self.failures.iter_mut().zip(o.failures) {
            *a += b;
        }
        self.body_bytes += o.body_bytes;
        self.latencies_us.extend(o.latencies_us);
        self.sha256 = self.sha256.or(o.sha256);
        self.sha_mismatch += o.sha_mismatch;
        self.connections += o.connections;
    }

    fn fail(&mut self, n: u64, why: Failure) {
        self.failed += n;
        let i = Failure::ALL
            .iter()
            .position(|&f| f == why)
            .expect("every failure is in ALL");
        self.failures[i] += n;
    }

    /// The failures by reason, non-zero ones only: `refused 3, reset 1`.
    pub fn failure_summary(&self) -> String {
        let parts: Vec<String> = Failure::ALL
            .iter()
            .zip(self.failures)
            .filter(|(_, n)| *n > 0)
            .map(|(f, n)| format!("{} {n}", f.name()))
            .collect();
        parts.join(", ")
    }

    /// The failures by reason as a JSON object (every reason, zeros included).
    pub fn failure_json(&self) -> String {
        let parts: Vec<String> = Failure::ALL
            .iter()
            .zip(self.failures)
            .map(|(f, n)| format!("\"{}\": {n}", f.name()))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

/// What a core hands back when the run ends.
struct CoreResult {
    stats: LoadStats,
    /// Requests of this core's share that never completed (counted as failed).
    unfinished: u64,
    /// When its last request completed (None: it had none, or did not finish).
    finished_at: Option<Instant>,
    /// When its loop ended.
    ended: Instant,
}

/// One core's generator: its share of the requests and connections.
struct Load {
    target: Target,
    request: Vec<u8>,
    last_request: Vec<u8>,
    /// This core's share of `-n`.
    total: u64,
    /// Requests handed to connections (sent or to be sent).
    issued: u64,
    concurrency: u32,
    keepalive: u32,
    sha: bool,
    open: u32,
    stats: LoadStats,
    scratch: Vec<u8>,
    /// Shared by the cores (indicatif's bar is thread-safe).
    pb: ProgressBar,
    /// Connections to start once the current callback is over (a failed connect is counted
    /// in one place, `fill`).
    want_new: u32,
    /// The first good body's digest, on whichever core it came: every other body, on every
    /// core, must match it.
    sha_ref: Arc<OnceLock<[u8; 32]>>,
    finished_at: Option<Instant>,
}

impl Load {
    fn done(&self) -> u64 {
        self.stats.ok + self.stats.failed
    }

    fn fail(&mut self, n: u64, why: Failure) {
        self.stats.fail(n, why);
        self.pb.inc(n);
        self.note_done();
    }

    fn note_done(&mut self) {
        if self.finished_at.is_none() && self.done() >= self.total {
            self.finished_at = Some(Instant::now());
        }
    }

    /// Open the replacements of connections retired during a callback.
    fn refill(&mut self, glue: &mut Glue<Flow>) {
        if self.want_new > 0 {
            self.want_new = 0;
            self.fill(glue);
        }
    }

    /// Start connections until `concurrency` are open or every request is issued.
    fn fill(&mut self, glue: &mut Glue<Flow>) {
        while self.open < self.concurrency && self.issued < self.total {
            let budget = (self.keepalive as u64).min(self.total - self.issued) as u32;
            self.issued += budget as u64;
            let flow = Flow {
                budget,
                phase: Phase::Head,
                head: Vec::with_capacity(512),
                started: Instant::now(),
                server_closes: false,
                status: 0,
                body_len: 0,
                hasher: None,
                in_flight: false,
                unsent: 0,
                fresh: true,
            };
            match glue.tcp_connect(self.target.ip, self.target.port, Some(flow)) {
                Ok(_) => {
                    self.open += 1;
                    self.stats.connections += 1;
                }
                Err(e) => {
                    log::warn!("connect: {e}");
                    self.fail(budget as u64, Failure::Connect);
                }
            }
        }
    }

    /// Send the next request on `s` (or the rest of the current one).
    fn send_request(&mut self, glue: &mut Glue<Flow>, s: Socket, f: &mut Flow) -> Result<(), GlueError> {
        if !f.in_flight {
            if f.budget == 0 {
                return Ok(());
            }
            f.budget -= 1;
            f.in_flight = true;
            f.phase = Phase::Head;
            f.head.clear();
            if !f.fresh {
                f.started = Instant::now();
            }
            f.fresh = false;
            f.hasher = self.sha.then(Sha256::new);
            f.body_len = 0;
            f.unsent = if f.budget == 0 {
                self.last_request.len()
            } else {
                self.request.len()
            };
        }
        if f.unsent > 0 {
            let req = if f.budget == 0 {
                &self.last_request
            } else {
                &self.request
            };
            let off = req.len() - f.unsent;
            f.unsent -= glue.send(s, &req[off..])?;
        }
        Ok(())
    }

    /// Read and parse what arrived; Ok(false) when the connection is finished.
    fn receive(&mut self, glue: &mut Glue<Flow>, s: Socket, f: &mut Flow) -> Result<bool, GlueError> {
        // Out of self while parsing, which needs self mutably (put back, so no allocation).
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.receive_into(glue, s, f, &mut scratch);
        self.scratch = scratch;
        r
    }

    fn receive_into(
        &mut self,
        glue: &mut Glue<Flow>,
        s: Socket,
        f: &mut Flow,
        scratch: &mut [u8],
    ) -> Result<bool, GlueError> {
        loop {
            let n = match glue.recv(s, scratch) {
                Ok(0) => {
                    if f.in_flight {
                        return Err(GlueError::NotConnected);
                    }
                    return Ok(false);
                }
                Ok(n) => n,
                Err(GlueError::WouldBlock) => return Ok(true),
                Err(e) => return Err(e),
            };
            let mut data = &scratch[..n];
            while !data.is_empty() {
                if !f.in_flight {
                    // Bytes nobody asked for.
                    return Err(GlueError::InvalidArgument("unexpected data from the server"));
                }
                match f.phase {
                    Phase::Head => {
                        f.head.extend_from_slice(data);
                        data = &[];
                        let mut headers = [httparse::EMPTY_HEADER; 64];
                        let mut resp = httparse::Response::new(&mut headers);
                        let hl = match resp.parse(&f.head) {
                            Ok(httparse::Status::Complete(hl)) => hl,
                            Ok(httparse::Status::Partial) if f.head.len() < 64 * 1024 => break,
                            _ => return Err(GlueError::InvalidArgument("bad response head")),
                        };
                        f.status = resp.code.unwrap_or(0);
                        let mut len = None;
                        let mut closes = resp.version == Some(0);
                        for h in resp.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                len = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse::<usize>().ok());
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                                closes = v.contains("close") || (closes && !v.contains("keep-alive"));
                            }
                        }
                        f.server_closes |= closes;
                        let Some(len) = len else {
                            return Err(GlueError::InvalidArgument("response without Content-Length"));
                        };
                        // What followed the head in the same read is body.
                        let extra = f.head.split_off(hl);
                        f.phase = Phase::Body(len);
                        self.body(f, &extra)?;
                    }
                    Phase::Body(left) => {
                        let k = left.min(data.len());
                        let (now, rest) = data.split_at(k);
                        self.body(f, now)?;
                        data = rest;
                    }
                }
                if let Phase::Body(0) = f.phase {
                    self.finish_request(f);
                    if f.budget > 0 && !f.server_closes {
                        self.send_request(glue, s, f)?;
                    }
                }
            }
            if !f.in_flight && (f.budget == 0 || f.server_closes) {
                return Ok(false);
            }
        }
    }

    fn body(&mut self, f: &mut Flow, bytes: &[u8]) -> Result<(), GlueError> {
        let Phase::Body(left) = f.phase else { return Ok(()) };
        if bytes.len() > left {
            return Err(GlueError::InvalidArgument("more body than Content-Length"));
        }
        if let Some(h) = f.hasher.as_mut() {
            h.update(bytes);
        }
        f.body_len += bytes.len();
        f.phase = Phase::Body(left - bytes.len());
        Ok(())
    }

    fn finish_request(&mut self, f: &mut Flow) {
        f.in_flight = false;
        f.phase = Phase::Head;
        self.stats.body_bytes += f.body_len as u64;
        let mut why = (f.status != 200).then_some(Failure::Status);
        if let Some(h) = f.hasher.take() {
            let d: [u8; 32] = h.finalize().into();
            let r = if why.is_none() {
                Some(*self.sha_ref.get_or_init(|| d))
            } else {
                self.sha_ref.get().copied()
            };
            match r {
                Some(r) if r != d => {
                    self.stats.sha_mismatch += 1;
                    why = why.or(Some(Failure::Sha256));
                }
                Some(r) => self.stats.sha256 = Some(r),
                None => {}
            }
        }
        match why {
            None => {
                self.stats.ok += 1;
                self.stats.latencies_us.push(f.started.elapsed().as_micros() as u64);
                self.pb.inc(1);
                self.note_done();
            }
            Some(w) => self.fail(1, w),
        }
    }

    /// The connection is over (`why`: what a request it was carrying failed of): count what
    /// it still owed as failed, open a replacement.
    fn retire(&mut self, f: &Flow, why: Failure) {
        let owed = f.budget as u64 + f.in_flight as u64;
        if owed > 0 {
            // Requests this connection could not carry (the server closed early) are given
            // to a new connection, unless the connection failed mid-request.
            self.issued -= f.budget as u64;
            if f.in_flight {
                self.fail(1, why);
            }
        }
        self.open -= 1;
        self.want_new += 1;
    }

    fn step(&mut self, glue: &mut Glue<Flow>, s: Socket, write_only: bool) {
        let Some(mut f) = glue.take_user_data(s) else { return };
        let r = self.send_request(glue, s, &mut f).and_then(|()| {
            if write_only {
                Ok(true)
            } else {
                self.receive(glue, s, &mut f)
            }
        });
        match r {
            Ok(true) => {
                let _ = glue.set_user_data(s, f);
            }
            Ok(false) => {
                let _ = glue.close(s);
                // A request still in flight here: the server closed mid-response.
                self.retire(&f, Failure::Closed);
            }
            Err(e) => {
                log::debug!("flow failed: {e}");
                let _ = glue.close(s);
                if !f.in_flight {
                    // Failed between requests: the next one would have been lost.
                    f.in_flight = f.budget > 0;
                    f.budget = f.budget.saturating_sub(1);
                }
                let why = match e {
                    GlueError::Connection(r) => Failure::of_close(r),
                    GlueError::Shutdown | GlueError::NotConnected => Failure::Closed,
                    _ => Failure::BadResponse,
                };
                self.retire(&f, why);
            }
        }
        self.refill(glue);
    }
}

impl CoreApp<Flow> for Load {
    /// This core's share is over: every request answered or failed.
    fn finished(&self) -> bool {
        self.done() >= self.total
    }
}

impl GlueHandler<Flow> for Load {
    fn on_connected(&mut self, glue: &mut Glue<Flow>, s: Socket) {
        self.step(glue, s, true);
    }

    fn on_readable(&mut self, glue: &mut Glue<Flow>, s: Socket) {
        self.step(glue, s, false);
    }

    fn on_writable(&mut self, glue: &mut Glue<Flow>, s: Socket) {
        self.step(glue, s, true);
    }

    fn on_closed(&mut self, glue: &mut Glue<Flow>, c: Closed<Flow>) {
        if c.reason != CloseReason::Normal {
            log::debug!("connection {:?}: {:?}", c.sock, c.reason);
        }
        if let Some(mut f) = c.data {
            if !f.in_flight && f.budget > 0 && c.reason != CloseReason::Normal {
                // Refused or reset before the request went out: that request failed.
                f.in_flight = true;
                f.budget -= 1;
            }
            self.retire(&f, Failure::of_close(c.reason));
        }
        self.refill(glue);
    }
}

/// httpd's TCP settings, with the local ports starting at a random point of the range.
///
/// Why: blink's TCP hands out ephemeral ports from the bottom of the range in every new
/// process, so a second run reuses the first run's 4-tuples while the server still holds
/// them in TIME-WAIT (the server closes first in HTTP/1.0), and each such SYN stalls for a
/// retransmission. Linux avoids this with RFC 6056 port randomization in the kernel; until
/// blink's TCP does the same, a random window start keeps consecutive runs apart.
fn load_tcp_config() -> blink_glue::tcp::TcpConfig {
    use std::hash::{BuildHasher, Hasher};
    let mut cfg = http_tcp_config();
    let (lo, hi) = cfg.ephemeral_ports;
    // At least 8192 ports stay in the window; RandomState is seeded per process.
    let span = (hi - lo).saturating_sub(8192).max(1) as u64;
    let r = std::collections::hash_map::RandomState::new().build_hasher().finish();
    cfg.ephemeral_ports = (lo + (r % span) as u16, hi);
    cfg
}

/// The `p`-th percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Core `i`'s share of `total` spread over `n` cores (the first `total % n` get one more).
fn share(total: u64, n: u64, i: u64) -> u64 {
    total / n + u64::from(i < total % n)
}

pub fn run(a: LoadArgs) -> Result<(), SetupError> {
    let target = parse_url(&a.url)?;
    if a.n == 0 || a.c == 0 || a.keepalive == 0 {
        return Err(usage("-n, -c and --keepalive must be at least 1").into());
    }
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        return Err(usage("--timeout: must be a positive number of seconds").into());
    }
    let cores: Vec<Glue<Flow>> = build_cores(&a.dev, load_tcp_config(), 65536)?;
    let nb = cores.len();
    // Cores that get connections (all unless -c is smaller); each opens its share of the
    // connections and requests, from source ports that hash back to it.
    let active = nb.min(a.c as usize) as u64;
    let host = format!("{}:{}", target.ip, target.port);
    let req = |close: bool| {
        format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: blink-load\r\nAccept: */*\r\nConnection: {}\r\n\r\n",
            target.path,
            if close { "close" } else { "keep-alive" }
        )
        .into_bytes()
    };
    let (request, last_request) = (req(false), req(true));
    let pb = ProgressBar::new(a.n);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} requests {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let sha_ref: Arc<OnceLock<[u8; 32]>> = Arc::default();
    // With --json, stdout carries only the result document.
    let banner = format!(
        "blink load: {} requests to {} over {} connections, {} per connection{}",
        a.n,
        a.url,
        a.c,
        a.keepalive,
        if nb > 1 {
            format!(", on {nb} cores ({} mode)", a.dev.mode)
        } else {
            String::new()
        }
    );
    if a.json {
        eprintln!("{banner}");
    } else {
        println!("{banner}");
    }
    let stop = stop_flag();
    let opts = RunOpts {
        stop: stop.clone(),
        duration: Some(Duration::from_secs_f64(a.timeout)),
        stats: a.dev.stats,
        ctl: Some(a.dev.ctl_path("load")),
    };
    let start = Instant::now();
    let results = run_cores(
        cores,
        &opts,
        |glue| {
            let i = glue.cpu() as u64;
            let (total, concurrency) = if i < active {
                (share(a.n, active, i), share(a.c as u64, active, i) as u32)
            } else {
                (0, 0)
            };
            let mut load = Load {
                request: request.clone(),
                last_request: last_request.clone(),
                target: target.clone(),
                total,
                issued: 0,
                concurrency,
                keepalive: a.keepalive,
                sha: a.sha256,
                open: 0,
                stats: LoadStats::default(),
                scratch: vec![0u8; 64 * 1024],
                pb: pb.clone(),
                want_new: 0,
                sha_ref: sha_ref.clone(),
                finished_at: None,
            };
            load.fill(glue);
            load
        },
        |_glue, load| {
            // run_cores kept every core polling until all had stopped and the last FINs
            // were out (in poller mode core 0's poller carries the other cores' frames).
            let ended = Instant::now();
            CoreResult {
                unfinished: load.total - load.done().min(load.total),
                finished_at: load.finished_at,
                ended,
                stats: load.stats,
            }
        },
    );
    pb.finish_and_clear();
    // The run lasted until the last core finished its share (or gave up).
    let end = results
        .iter()
        .map(|(_, r)| {
            if r.unfinished > 0 {
                r.ended
            } else {
                r.finished_at.unwrap_or(start)
            }
        })
        .max()
        .unwrap_or(start);
    let elapsed = end.saturating_duration_since(start).as_secs_f64();
    let mut unfinished = 0;
    let mut st = LoadStats::default();
    let mut summaries = Vec::new();
    let mut in_use = 0;
    for (i, (sum, r)) in results.into_iter().enumerate() {
        unfinished += r.unfinished;
        st.merge(r.stats);
        if i == 0 {
            in_use = sum.pool_in_use;
        }
        summaries.push(sum);
    }
    if unfinished > 0 && !stop.load(Ordering::Relaxed) {
        eprintln!("blink load: timed out after {:.1} s", a.timeout);
    }
    st.fail(unfinished, Failure::Unfinished);
    st.latencies_us.sort_unstable();
    let l = &st.latencies_us;
    let ms = |us: u64| us as f64 / 1000.0;
    if a.json {
        let sha = match (a.sha256, sha_ref.get()) {
            (true, Some(d)) => format!("\"{}\"", hex(d)),
            _ => "null".to_string(),
        };
        println!(
            "{{\"requests_ok\": {}, \"failed\": {}, \"failures\": {}, \"sha256_mismatches\": {}, \"seconds\": {:.3}, \"connections\": {}, \"requests_per_sec\": {:.1}, \"latency_ms\": {{\"p50\": {:.3}, \"p90\": {:.3}, \"p99\": {:.3}, \"max\": {:.3}}}, \"body_bytes\": {}, \"sha256\": {sha}}}",
            st.ok,
            st.failed,
            st.failure_json(),
            st.sha_mismatch,
            elapsed,
            st.connections,
            st.ok as f64 / elapsed,
            ms(percentile(l, 50.0)),
            ms(percentile(l, 90.0)),
            ms(percentile(l, 99.0)),
            ms(l.last().copied().unwrap_or(0)),
            st.body_bytes
        );
        if st.failed > 0 {
            return Err(SetupError::Runtime(format!(
                "{} requests failed ({})",
                st.failed,
                st.failure_summary()
            )));
        }
        return Ok(());
    }
    let why = if st.failed > 0 {
        format!(": {}", st.failure_summary())
    } else {
        String::new()
    };
    println!(
        "requests: {} ok, {} failed{why} ({} sha256 mismatches) in {:.3} s over {} connections",
        st.ok, st.failed, st.sha_mismatch, elapsed, st.connections
    );
    println!("requests/s: {:.1}", st.ok as f64 / elapsed);
    println!(
        "latency ms: p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}",
        ms(percentile(l, 50.0)),
        ms(percentile(l, 90.0)),
        ms(percentile(l, 99.0)),
        ms(l.last().copied().unwrap_or(0))
    );
    println!(
        "bytes: {} body ({:.1} MB/s)",
        st.body_bytes,
        st.body_bytes as f64 / elapsed / 1e6
    );
    if a.sha256 {
        match sha_ref.get() {
            Some(d) => println!("sha256: {}", hex(d)),
            None => println!("sha256: none (no successful response)"),
        }
    }
    if nb > 1 {
        report_cores("blink load", &summaries, in_use);
    }
    if st.failed > 0 {
        return Err(SetupError::Runtime(format!(
            "{} requests failed ({})",
            st.failed,
            st.failure_summary()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_reason() {
        let mut st = LoadStats::default();
        st.fail(3, Failure::of_close(CloseReason::Refused));
        st.fail(1, Failure::of_close(CloseReason::Reset));
        st.fail(2, Failure::Unfinished);
        assert_eq!(st.failed, 6);
        assert_eq!(st.failure_summary(), "refused 3, reset 1, unfinished 2");
        let j = st.failure_json();
        assert!(j.starts_with("{\"connect\": 0, \"refused\": 3, \"reset\": 1,"), "{j}");
        assert!(j.ends_with("\"unfinished\": 2}"), "{j}");
        let mut other = LoadStats::default();
        other.fail(1, Failure::Status);
        st.merge(other);
        assert_eq!(st.failure_summary(), "refused 3, reset 1, status 1, unfinished 2");
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://10.200.0.1:8000/f.bin").unwrap(),
            Target {
                ip: Ipv4Addr::new(10, 200, 0, 1),
                port: 8000,
                path: "/f.bin".into()
            }
        );
        assert_eq!(parse_url("http://10.0.0.1").unwrap().path, "/");
        assert_eq!(parse_url("http://10.0.0.1").unwrap().port, 80);
        assert!(parse_url("https://10.0.0.1/").is_err());
        assert!(parse_url("http://example.com/").unwrap_err().0.contains("IPv4"));
        assert!(parse_url("http://10.0.0.1:99999/").unwrap_err().0.contains("port"));
    }

    #[test]
    fn shares_add_up() {
        assert_eq!((0..2).map(|i| share(400, 2, i)).collect::<Vec<_>>(), [200, 200]);
        assert_eq!((0..2).map(|i| share(5, 2, i)).collect::<Vec<_>>(), [3, 2]);
        assert_eq!((0..3).map(|i| share(1, 3, i)).sum::<u64>(), 1);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 90.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
