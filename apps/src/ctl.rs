//! The control socket of a running blink, and the commands that read it: `blink stat`,
//! `blink ss`, `blink neigh`, `blink link` — the `nstat`, `ss`, `ip neigh` and `ip -s link` of
//! a live instance.
//!
//! Every long-running command (`echo`, `httpd`, `load`) listens on a Unix socket, by default
//! `$XDG_RUNTIME_DIR/blink/NAME.sock` (or `/run/blink/NAME.sock`, or `/tmp/blink-UID/...` when
//! neither is writable), NAME being `--name` or the subcommand; `--ctl PATH` chooses the path.
//! A request is one line (`stat`, `ss`, `neigh` or `link`, then optionally ` json`); the
//! answer is the text, and the connection closes.
//!
//! Cores share nothing, so no core reads another's tables: core 0 polls the socket between
//! its polls (at most every few milliseconds: an `accept` that finds nothing), puts a query on
//! every other core's request channel and answers once each core has sent its own view, taken
//! between two of its polls. A core that finds its channel empty pays one atomic load.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use blink_glue::netcore::snmp::MibEnum;
use blink_glue::netcore::trace::{TraceEvent, TraceFilter, Tracer};
use blink_glue::tcp::{self, TcpState};
use blink_glue::udp;
use blink_glue::Glue;
use clap::Args;

use crate::cores::{dev_line, total_mib, CoreSummary};
use crate::setup::SetupError;

/// Where instance `name` listens when no `--ctl` is given.
pub fn ctl_path(name: &str) -> PathBuf {
    ctl_dir().join(format!("{name}.sock"))
}

fn ctl_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("blink");
    }
    // SAFETY: geteuid() has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        PathBuf::from("/run/blink")
    } else {
        PathBuf::from(format!("/tmp/blink-{uid}"))
    }
}

/// One socket as `ss` shows it.
#[derive(Clone, Debug)]
pub struct SockLine {
    pub proto: &'static str,
    pub state: &'static str,
    pub recv_q: usize,
    pub send_q: usize,
    pub local: SocketAddrV4,
    pub peer: Option<SocketAddrV4>,
    pub cpu: u16,
    /// TCP details (`ss -i`).
    pub info: Option<TcpInfo>,
}

/// What `ss -i` adds for a TCP connection.
#[derive(Clone, Copy, Debug)]
pub struct TcpInfo {
    pub rtt_us: u32,
    pub rto_ms: u64,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub unacked: u32,
    pub retrans_out: u32,
    pub mss: u32,
}

/// What one core reports about itself.
pub struct CoreView {
    pub summary: CoreSummary,
    pub socks: Vec<SockLine>,
    /// Trace events taken since the last read (for `trace read`).
    pub trace: Vec<TraceEvent>,
}

/// `ss`'s names for the states.
fn state_name(s: TcpState) -> &'static str {
    match s {
        TcpState::Closed => "CLOSED",
        TcpState::Listen => "LISTEN",
        TcpState::SynSent => "SYN-SENT",
        TcpState::SynRecv => "SYN-RECV",
        TcpState::Established => "ESTAB",
        TcpState::FinWait1 => "FIN-WAIT-1",
        TcpState::FinWait2 => "FIN-WAIT-2",
        TcpState::CloseWait => "CLOSE-WAIT",
        TcpState::Closing => "CLOSING",
        TcpState::LastAck => "LAST-ACK",
        TcpState::TimeWait => "TIME-WAIT",
    }
}

/// This core's view: its counters and devices, and every socket of its tables.
pub fn core_view<U>(glue: &mut Glue<U>) -> CoreView {
    let mut summary = CoreSummary::of(glue);
    summary.kernel = glue
        .with_kernel_if(|k| {
            k.devices()
                .map(|(port, d)| crate::cores::DevSummary {
                    ifindex: port,
                    name: d.name().to_string(),
                    mac: d.mac(),
                    mtu: d.mtu(),
                    stats: d.stats(),
                    extra: Vec::new(),
                    link: d.link_up(),
                    addrs: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let cpu = glue.cpu();
    let mut socks = Vec::new();
    let stack = glue.stack_mut();
    let _ = tcp::with_tcp(stack, |t, _| {
        for h in t.socks.handles() {
            let Some(sk) = t.socks.get(h) else { continue };
            let listen = sk.state == TcpState::Listen;
            socks.push(SockLine {
                proto: "tcp",
                state: state_name(sk.state),
                // A listener's queues are its accept queue and its backlog, as in ss.
                recv_q: if listen {
                    sk.accept_queue.len()
                } else {
                    sk.receive_queue.bytes()
                },
                send_q: if listen {
                    sk.backlog as usize
                } else {
                    sk.write_queue.bytes() + sk.rtx_queue.iter().map(|s| s.len()).sum::<usize>()
                },
                local: SocketAddrV4::new(sk.saddr, sk.sport),
                peer: (!listen).then(|| SocketAddrV4::new(sk.daddr, sk.dport)),
                cpu,
                info: (!listen).then(|| TcpInfo {
                    rtt_us: sk.srtt_us >> 3,
                    rto_ms: sk.rto_ms,
                    cwnd: sk.cong.cwnd,
                    ssthresh: sk.cong.ssthresh,
                    unacked: sk.packets_out,
                    retrans_out: sk.retrans_out,
                    mss: sk.mss_cache,
                }),
            });
        }
        for h in t.tw.handles() {
            let Some(tw) = t.tw.get(h) else { continue };
            let q = tw.tuple;
            socks.push(SockLine {
                proto: "tcp",
                state: "TIME-WAIT",
                recv_q: 0,
                send_q: 0,
                local: SocketAddrV4::new(q.laddr, q.lport),
                peer: Some(SocketAddrV4::new(q.raddr, q.rport)),
                cpu,
                info: None,
            });
        }
    });
    let _ = udp::with_udp(stack, |u, _| {
        for h in u.socks.handles() {
            let Some(sk) = u.socks.get(h) else { continue };
            socks.push(SockLine {
                proto: "udp",
                state: if sk.peer().is_some() { "ESTAB" } else { "UNCONN" },
                recv_q: sk.rx_queued_bytes(),
                send_q: 0,
                local: sk.local(),
                peer: sk.peer(),
                cpu,
                info: None,
            });
        }
    });
    CoreView {
        summary,
        socks,
        trace: Vec::new(),
    }
}

/// What core 0 asks the other cores to do before they answer with their view.
#[derive(Clone, Debug)]
pub enum CoreCmd {
    View,
    TraceStart(TraceFilter, u32),
    TraceRead,
    TraceStop,
}

/// Do `cmd` on this core, then describe it.
pub fn core_apply<U>(glue: &mut Glue<U>, cmd: &CoreCmd) -> CoreView {
    let cpu = glue.cpu();
    let mib = &mut glue.stack_mut().core.mib;
    let mut trace = Vec::new();
    match cmd {
        CoreCmd::View => {}
        CoreCmd::TraceStart(f, n) => mib.trace.0 = Some(Box::new(Tracer::new(f.clone(), *n, cpu))),
        CoreCmd::TraceRead => {
            if let Some(t) = mib.trace.0.as_mut() {
                trace = std::mem::take(&mut t.events);
            }
        }
        CoreCmd::TraceStop => mib.trace.0 = None,
    }
    let mut v = core_view(glue);
    v.trace = trace;
    v
}

/// A query from core 0 to another core: do `cmd`, answer with the view on `reply`.
pub struct CtlQuery {
    pub cmd: CoreCmd,
    pub reply: mpsc::Sender<CoreView>,
}

/// What a client asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Request {
    Stat,
    Ss,
    Neigh,
    Route,
    Link,
    Drops,
    /// Started, stopped or read the packet tracer.
    Trace,
}

struct Pending {
    stream: UnixStream,
    req: Request,
    json: bool,
    views: Vec<CoreView>,
    rx: mpsc::Receiver<CoreView>,
    since: Instant,
}

/// Core 0's side: the listening socket, the other cores' request channels, and the requests
/// waiting for their answers.
pub struct CtlServer {
    listener: UnixListener,
    path: PathBuf,
    cores: Vec<mpsc::Sender<CtlQuery>>,
    pending: Vec<Pending>,
    next_check: Instant,
}

/// How often core 0 looks for a new client: an `accept` per poll would cost a syscall per
/// packet burst.
const CHECK_EVERY: Duration = Duration::from_millis(5);

impl CtlServer {
    /// Listen on `path` (a stale socket file of a dead instance is replaced; a live one is an
    /// error). `cores` are the request channels of cores 1..n.
    pub fn bind(path: &Path, cores: Vec<mpsc::Sender<CtlQuery>>) -> Result<CtlServer, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{}: another blink is listening there (use --name or --ctl)",
                    path.display()
                ));
            }
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(CtlServer {
            listener,
            path: path.to_path_buf(),
            cores,
            pending: Vec::new(),
            next_check: Instant::now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Core 0, between polls: take new requests, ask the other cores, answer what is complete.
    pub fn poll<U>(&mut self, glue: &mut Glue<U>) {
        let now = Instant::now();
        if self.pending.is_empty() && now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        while let Ok((stream, _)) = self.listener.accept() {
            self.start(stream, glue);
        }
        let n = self.cores.len() + 1;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            while let Ok(v) = p.rx.try_recv() {
                p.views.push(v);
            }
            // A core that does not answer within a second (stopping) is left out.
            if p.views.len() == n || p.since.elapsed() > Duration::from_secs(1) {
                let mut p = self.pending.swap_remove(i);
                p.views.sort_by_key(|v| v.summary.cpu);
                let text = render(p.req, p.json, &p.views);
                let _ = p.stream.write_all(text.as_bytes());
            } else {
                i += 1;
            }
        }
    }

    fn start<U>(&mut self, mut stream: UnixStream, glue: &mut Glue<U>) {
        // The client writes its one line at once; don't let a silent one stall core 0.
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 128];
        let mut len = 0;
        while len < buf.len() {
            match stream.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => {
                    len += n;
                    if buf[..len].contains(&b'\n') {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let line = String::from_utf8_lossy(&buf[..len]);
        let mut words = line.split_whitespace();
        let req = match words.next() {
            Some("stat") => Request::Stat,
            Some("ss") => Request::Ss,
            Some("neigh") => Request::Neigh,
            Some("route") => Request::Route,
            Some("link") => Request::Link,
            Some("drops") => Request::Drops,
            Some("trace") => Request::Trace,
            other => {
                let _ = stream.write_all(
                    format!("error: unknown request {other:?} (stat, ss, neigh, route, link, drops, trace)\n")
                        .as_bytes(),
                );
                return;
            }
        };
        let rest: Vec<&str> = words.collect();
        let json = rest.contains(&"json");
        let cmd = if req == Request::Trace {
            // trace start COUNT FILTER... | trace read | trace stop
            match rest.first().copied() {
                Some("start") => {
                    let count = rest.get(1).and_then(|c| c.parse().ok()).unwrap_or(0u32);
                    match rest[2.min(rest.len())..].join(" ").parse::<TraceFilter>() {
                        Ok(f) if count > 0 => CoreCmd::TraceStart(f, count),
                        Ok(_) => {
                            let _ = stream.write_all(b"error: trace start needs a count\n");
                            return;
                        }
                        Err(e) => {
                            let _ = stream.write_all(format!("error: filter: {e}\n").as_bytes());
                            return;
                        }
                    }
                }
                Some("read") => CoreCmd::TraceRead,
                Some("stop") => CoreCmd::TraceStop,
                _ => {
                    let _ = stream.write_all(b"error: trace start COUNT FILTER | trace read | trace stop\n");
                    return;
                }
            }
        } else {
            CoreCmd::View
        };
        let (tx, rx) = mpsc::channel();
        for c in &self.cores {
            let _ = c.send(CtlQuery {
                cmd: cmd.clone(),
                reply: tx.clone(),
            });
        }
        let _ = tx.send(core_apply(glue, &cmd));
        self.pending.push(Pending {
            stream,
            req,
            json,
            views: Vec::new(),
            rx,
            since: Instant::now(),
        });
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn sock_json(s: &SockLine) -> String {
    let peer = s.peer.map_or("null".to_string(), |p| format!("\"{p}\""));
    let info = match s.info {
        Some(i) => format!(
            ", \"rtt_us\": {}, \"rto_ms\": {}, \"cwnd\": {}, \"ssthresh\": {}, \"unacked\": {}, \"retrans\": {}, \"mss\": {}",
            i.rtt_us, i.rto_ms, i.cwnd, i.ssthresh, i.unacked, i.retrans_out, i.mss
        ),
        None => String::new(),
    };
    format!(
        "{{\"proto\": \"{}\", \"state\": \"{}\", \"recv_q\": {}, \"send_q\": {}, \"local\": \"{}\", \"peer\": {peer}, \"core\": {}{info}}}",
        s.proto, s.state, s.recv_q, s.send_q, s.local, s.cpu
    )
}

/// The answer to `req` over every core's view, as text shaped like the Linux tool or JSON.
fn render(req: Request, json: bool, views: &[CoreView]) -> String {
    let summaries: Vec<CoreSummary> = views.iter().map(|v| v.summary.clone()).collect();
    let mut out = String::new();
    match (req, json) {
        (Request::Stat, false) => {
            for v in views {
                out += &format!("# core {}\n{}", v.summary.cpu, v.summary.mib.snmp());
            }
            out += &format!("# total\n{}", total_mib(&summaries).snmp());
        }
        (Request::Stat, true) => {
            let cores: Vec<String> = views
                .iter()
                .map(|v| {
                    format!(
                        "{{\"core\": {}, \"counters\": {}}}",
                        v.summary.cpu,
                        crate::stat::mib_json(&v.summary.mib)
                    )
                })
                .collect();
            out += &format!(
                "{{\"cores\": [{}], \"total\": {}}}\n",
                cores.join(", "),
                crate::stat::mib_json(&total_mib(&summaries))
            );
        }
        (Request::Ss, false) => {
            out += &format!(
                "{:<6}{:<12}{:>8} {:>8} {:<22}{:<22}{}\n",
                "Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Core"
            );
            for s in views.iter().flat_map(|v| v.socks.iter()) {
                let peer = s.peer.map_or("*:*".to_string(), |p| p.to_string());
                let local = if s.local.ip().is_unspecified() {
                    format!("*:{}", s.local.port())
                } else {
                    s.local.to_string()
                };
                out += &format!(
                    "{:<6}{:<12}{:>8} {:>8} {:<22}{:<22}{}\n",
                    s.proto, s.state, s.recv_q, s.send_q, local, peer, s.cpu
                );
                if let Some(i) = s.info {
                    out += &format!(
                        "\t rtt:{:.3}ms rto:{} mss:{} cwnd:{} ssthresh:{} unacked:{} retrans:{}\n",
                        i.rtt_us as f64 / 1000.0,
                        i.rto_ms,
                        i.mss,
                        i.cwnd,
                        i.ssthresh,
                        i.unacked,
                        i.retrans_out
                    );
                }
            }
        }
        (Request::Ss, true) => {
            let all: Vec<String> = views.iter().flat_map(|v| v.socks.iter()).map(sock_json).collect();
            out += &format!("{{\"sockets\": [{}]}}\n", all.join(", "));
        }
        (Request::Neigh, json) => {
            // Each core keeps its own copy of the table: show each entry once, with the cores
            // that hold it.
            let lines = per_core_lines(views, |v| &v.summary.neigh);
            if json {
                let items: Vec<String> = lines
                    .iter()
                    .map(|(l, cs)| format!("{{\"entry\": \"{l}\", \"cores\": {cs:?}}}"))
                    .collect();
                out += &format!("{{\"neighbours\": [{}]}}\n", items.join(", "));
            } else {
                for (l, cs) in &lines {
                    out += &format!("{l} cores {cs:?}\n");
                }
            }
        }
        (Request::Route, json) => {
            // Every core holds the same table (routes are configured on all of them); path MTU
            // exceptions are learnt per core. One line per entry, with the cores holding it.
            let lines = per_core_lines(views, |v| &v.summary.routes);
            if json {
                let items: Vec<String> = lines
                    .iter()
                    .map(|(l, cs)| format!("{{\"route\": \"{l}\", \"cores\": {cs:?}}}"))
                    .collect();
                out += &format!("{{\"routes\": [{}]}}\n", items.join(", "));
            } else {
                for (l, cs) in &lines {
                    out += &format!("{l} cores {cs:?}\n");
                }
            }
        }
        (Request::Drops, json) => {
            // dropwatch's view: how many packets died of what, and where in the code.
            let total = total_mib(&summaries);
            let reasons: Vec<(String, u64)> = total
                .drops
                .iter()
                .filter(|(_, v)| *v != 0)
                .map(|(r, v)| (r.name().to_string(), v))
                .collect();
            let sites = total.drop_sites.list();
            if json {
                let r: Vec<String> = reasons.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                let w: Vec<String> = sites
                    .iter()
                    .map(|(f, l, r, n)| {
                        format!(
                            "{{\"file\": \"{f}\", \"line\": {l}, \"reason\": \"{}\", \"count\": {n}}}",
                            r.name()
                        )
                    })
                    .collect();
                out += &format!("{{\"reasons\": {{{}}}, \"sites\": [{}]}}\n", r.join(", "), w.join(", "));
            } else {
                out += "reason                      count\n";
                for (k, v) in &reasons {
                    out += &format!("{k:<24}{v:>9}\n");
                }
                out += "\nwhere                                             reason                  count\n";
                for (f, l, r, n) in &sites {
                    out += &format!("{:<50}{:<22}{n:>7}\n", format!("{f}:{l}"), r.name());
                }
            }
        }
        (Request::Trace, _) => {
            // One event per line: skb, core, ns since the core's tracer started, function,
            // detail (the drop reason, or -).
            let mut ev: Vec<&TraceEvent> = views.iter().flat_map(|v| v.trace.iter()).collect();
            ev.sort_by_key(|e| (e.cpu, e.ns));
            for e in ev {
                let d = if e.detail.is_empty() { "-" } else { e.detail };
                out += &format!("{:#x} {} {} {} {d}\n", e.skb, e.cpu, e.ns, e.func);
            }
        }
        (Request::Link, false) => {
            let multi = views.len() > 1;
            for v in views {
                for p in &v.summary.pollers {
                    out += &format!("{} (poller)\n", dev_line(&p.dev, None));
                }
                for d in &v.summary.devs {
                    out += &format!("{}\n", dev_line(d, multi.then_some(v.summary.cpu)));
                    for a in &d.addrs {
                        out += &format!("  inet {a}\n");
                    }
                }
                // The kernel's TAPs, as blink's handle counts them: tx is what blink handed the
                // kernel, rx what the kernel sent out through the port (`dev N`, shared).
                for d in &v.summary.kernel {
                    out += &format!(
                        "{} (kernel side of dev {})\n",
                        dev_line(d, multi.then_some(v.summary.cpu)),
                        d.ifindex
                    );
                }
            }
        }
        (Request::Link, true) => {
            let items: Vec<String> = views
                .iter()
                .flat_map(|v| {
                    let devs = v.summary.devs.iter().map(move |d| (v.summary.cpu, d, false));
                    devs.chain(v.summary.kernel.iter().map(move |d| (v.summary.cpu, d, true)))
                })
                .map(|(cpu, d, kernel)| {
                    let s = d.stats;
                    format!(
                        "{{\"core\": {cpu}, \"ifindex\": {}, \"name\": \"{}\", \"mtu\": {}, \"rx_packets\": {}, \"tx_packets\": {}, \"rx_bytes\": {}, \"tx_bytes\": {}, \"rx_dropped\": {}, \"link\": {}, \"kernel_side\": {kernel}}}",
                        d.ifindex, d.name, d.mtu, s.rx_packets, s.tx_packets, s.rx_bytes, s.tx_bytes, s.rx_dropped, d.link
                    )
                })
                .collect();
            out += &format!("{{\"links\": [{}]}}\n", items.join(", "));
        }
    }
    out
}

/// Lines that each core reports (its neighbours, its routes), each once with the cores that
/// hold it, in the order first seen.
fn per_core_lines(views: &[CoreView], lines_of: impl Fn(&CoreView) -> &Vec<String>) -> Vec<(String, Vec<u16>)> {
    let mut lines: Vec<(String, Vec<u16>)> = Vec::new();
    for v in views {
        for l in lines_of(v) {
            match lines.iter_mut().find(|(x, _)| x == l) {
                Some((_, cs)) => cs.push(v.summary.cpu),
                None => lines.push((l.clone(), vec![v.summary.cpu])),
            }
        }
    }
    lines
}

/// Client side: `blink stat|ss|neigh|route|link [NAME]`.
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The instance (its `--name`, by default the subcommand it runs: echo, httpd, load).
    pub name: Option<String>,
    /// Control socket path instead of the one NAME gives.
    #[arg(long, value_name = "PATH")]
    pub ctl: Option<PathBuf>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl CtlArgs {
    fn path(&self) -> Result<PathBuf, SetupError> {
        if let Some(p) = &self.ctl {
            return Ok(p.clone());
        }
        if let Some(n) = &self.name {
            return Ok(ctl_path(n));
        }
        // No name: the one instance running, if there is exactly one.
        let dir = ctl_dir();
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|r| {
                r.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "sock") && UnixStream::connect(p).is_ok())
                    .collect()
            })
            .unwrap_or_default();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(SetupError::Runtime(format!(
                "no running blink (no control socket in {})",
                dir.display()
            ))),
            _ => Err(SetupError::Runtime(format!(
                "several blinks are running ({}): name one",
                found
                    .iter()
                    .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// Send `request` to the instance and return its answer.
pub fn ask(a: &CtlArgs, request: &str) -> Result<String, SetupError> {
    let path = a.path()?;
    let mut s = UnixStream::connect(&path).map_err(|e| {
        SetupError::Runtime(format!(
            "no running blink at {} ({e}); start one with --name, or give --ctl PATH",
            path.display()
        ))
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let line = format!("{request}{}\n", if a.json { " json" } else { "" });
    s.write_all(line.as_bytes())
        .map_err(|e| SetupError::Runtime(e.to_string()))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| SetupError::Runtime(e.to_string()))?;
    if let Some(e) = out.strip_prefix("error: ") {
        return Err(SetupError::Runtime(e.trim().to_string()));
    }
    Ok(out)
}

/// `blink ss|neigh|route|link|drops`: print the answer.
pub fn run(a: CtlArgs, request: &str) -> Result<(), SetupError> {
    print!("{}", ask(&a, request)?);
    Ok(())
}

/// `blink trace`: follow packets through the stack of a running blink (pwru's view).
#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(flatten)]
    pub ctl: CtlArgs,
    /// Which packets: tcp, udp, icmp, proto N, port N, host A.B.C.D, joined by `and`.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Packets to follow (per core), then stop.
    #[arg(long, default_value_t = 10)]
    pub count: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

pub fn trace(a: TraceArgs) -> Result<(), SetupError> {
    a.filter
        .parse::<TraceFilter>()
        .map_err(|e| SetupError::Usage(crate::args::usage(format!("--filter: {e}"))))?;
    if a.count == 0 || !(a.timeout > 0.0 && a.timeout.is_finite()) {
        return Err(SetupError::Usage(crate::args::usage(
            "--count and --timeout must be positive",
        )));
    }
    let plain = CtlArgs {
        name: a.ctl.name.clone(),
        ctl: a.ctl.ctl.clone(),
        json: false,
    };
    ask(&plain, &format!("trace start {} {}", a.count, a.filter))?;
    println!(
        "{:<16} {:>4} {:>12}  {:<20} {}",
        "SKB", "CPU", "TIME(us)", "FUNC", "DETAIL"
    );
    let t0 = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    let mut quiet = 0;
    let res = loop {
        std::thread::sleep(Duration::from_millis(100));
        let text = match ask(&plain, "trace read") {
            Ok(t) => t,
            Err(e) => break Err(e),
        };
        quiet += 1;
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [skb, cpu, ns, func, detail] = f[..] else { continue };
            quiet = 0;
            let us = ns.parse::<u64>().unwrap_or(0) as f64 / 1000.0;
            println!("{skb:<16} {cpu:>4} {us:>12.3}  {func:<20} {detail}");
            if !seen.iter().any(|s| s == skb) {
                seen.push(skb.to_string());
            }
        }
        // Done when enough packets were seen and the last reads brought nothing new (their
        // later steps have been recorded), or on timeout.
        if (seen.len() >= a.count as usize && quiet >= 2) || t0.elapsed().as_secs_f64() > a.timeout {
            break Ok(());
        }
    };
    let _ = ask(&plain, "trace stop");
    res
}
