//! Running a subcommand on N cores: one pinned thread per core, each polling its own `Glue`
//! with the application's per-core handler; a shared board the cores publish their counters
//! to for `--stats`; and the end-of-run report, per core and in total.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blink_glue::ipv4::{Ipv4Cidr, Stack};
use blink_glue::netcore::netdevice::DevStats;
use blink_glue::netcore::snmp::Mib;
use blink_glue::netcore::EthAddr;
use blink_glue::{Glue, GlueHandler};

/// Empty polls before an idle core starts sleeping.
const IDLE_SPINS: u32 = 1024;

/// A per-core application: a glue handler that may say it is done.
pub trait CoreApp<U>: GlueHandler<U> {
    /// True once this core's work is over (a load generator that finished its requests);
    /// servers never are. The run ends when every core is done, the duration passes, or a
    /// signal arrives. A core that is done keeps polling until then: it may still carry
    /// other cores' frames (the poller, software steering).
    fn finished(&self) -> bool {
        false
    }

    /// Called once per pass of the core's loop, after `periodic`: work driven by time rather
    /// than by socket events (a pinger).
    fn on_poll(&mut self, _glue: &mut Glue<U>) {}
}

/// When a run stops and how often it reports.
pub struct RunOpts {
    pub stop: Arc<AtomicBool>,
    pub duration: Option<Duration>,
    /// Print a counter line every this many seconds (core 0 prints for all).
    pub stats: Option<f64>,
    /// Serve the control socket at this path (`blink stat|ss|neigh|link` read it).
    pub ctl: Option<std::path::PathBuf>,
}

/// One device handle as a core saw it, for the report.
#[derive(Clone)]
pub struct DevSummary {
    pub ifindex: u16,
    pub name: String,
    pub mac: EthAddr,
    pub mtu: usize,
    pub stats: DevStats,
    pub extra: Vec<(String, u64)>,
    pub link: bool,
    pub addrs: Vec<Ipv4Cidr>,
}

/// The poller a core ran (poller mode, core 0), for the report.
#[derive(Clone)]
pub struct PollerSummary {
    pub dev: DevSummary,
    pub dispatched: Vec<u64>,
    pub ring_drops: u64,
}

/// What a core leaves behind: its counters, devices, neighbours and poller.
#[derive(Clone)]
pub struct CoreSummary {
    pub cpu: u16,
    pub mib: Mib,
    pub devs: Vec<DevSummary>,
    pub pollers: Vec<PollerSummary>,
    /// The exception path's kernel TAPs of this core (`ifindex`: the port each shares); not
    /// in `devs`, whose counters are blink's own traffic.
    pub kernel: Vec<DevSummary>,
    pub neigh: Vec<String>,
    /// The route table and live path MTU exceptions, as `ip route` prints them.
    pub routes: Vec<String>,
    /// Buffers of the (shared) pool in use when the run ended, before any core tore down.
    pub pool_in_use: usize,
}

impl CoreSummary {
    pub fn of_stack(stack: &Stack) -> CoreSummary {
        CoreSummary {
            cpu: stack.core.cpu,
            mib: stack.core.mib.clone(),
            devs: stack
                .devs
                .iter()
                .map(|d| DevSummary {
                    ifindex: d.ifindex,
                    name: d.name().to_string(),
                    mac: d.mac,
                    mtu: d.mtu,
                    stats: d.dev.stats(),
                    extra: d.dev.extra_stats(),
                    link: d.dev.link_up(),
                    addrs: d.addrs().to_vec(),
                })
                .collect(),
            pollers: Vec::new(),
            kernel: Vec::new(),
            neigh: stack.neigh.show(),
            routes: stack.fib.show(stack.core.jiffies, |d| {
                stack
                    .devs
                    .get(d as usize)
                    .map_or_else(|| d.to_string(), |x| x.name().to_string())
            }),
            pool_in_use: stack.pool_in_use(),
        }
    }

    pub fn of<U>(glue: &Glue<U>) -> CoreSummary {
        let mut s = Self::of_stack(glue.stack());
        s.pollers = glue
            .pollers()
            .iter()
            .map(|p| {
                let d = p.dev();
                PollerSummary {
                    dev: DevSummary {
                        ifindex: 0,
                        name: d.name().to_string(),
                        mac: d.mac(),
                        mtu: d.mtu(),
                        stats: d.stats(),
                        extra: d.extra_stats(),
                        link: d.link_up(),
                        addrs: Vec::new(),
                    },
                    dispatched: p.dispatched(),
                    ring_drops: p.ring_drops(),
                }
            })
            .collect();
        s
    }

    /// Device counters of this core's handles, summed (the poller's device when there is one,
    /// since the cores' lanes only carry what it received).
    pub fn dev_total(&self) -> DevStats {
        let mut t = DevStats::default();
        if self.pollers.is_empty() {
            for d in &self.devs {
                t.merge(&d.stats);
            }
        } else {
            for p in &self.pollers {
                t.merge(&p.dev.stats);
            }
        }
        t
    }
}

/// Counters of every core and their sum.
pub fn total_mib(cores: &[CoreSummary]) -> Mib {
    let mut m = Mib::default();
    for c in cores {
        m.merge(&c.mib);
    }
    m
}

/// Run `setup` then the poll loop on every core (see [`CoreApp`]); when the run ends, each
/// core calls `finish` with its glue and app and leaves a [`CoreSummary`]. The glue is
/// dropped on its core (sockets and queues freed there). Returns per core, in core order.
pub fn run_cores<U, A, R, S, F>(cores: Vec<Glue<U>>, opts: &RunOpts, setup: S, finish: F) -> Vec<(CoreSummary, R)>
where
    U: Send,
    R: Send,
    A: CoreApp<U>,
    S: Fn(&mut Glue<U>) -> A + Sync,
    F: Fn(&mut Glue<U>, A) -> R + Sync,
{
    let n = cores.len();
    let board: Arc<Vec<Mutex<Option<CoreSummary>>>> = Arc::new((0..n).map(|_| Mutex::new(None)).collect());
    let finished = AtomicUsize::new(0);
    // Cores that decided to stop. Each goes on polling until all have (a core may still carry
    // the others' frames: the poller runs in core 0, software steering forwards), then
    // drains what is in flight and tears down.
    let leaving = AtomicUsize::new(0);
    let meet = Rendezvous::new(n);
    let start = Instant::now();
    // The control socket: core 0 serves it, the other cores answer its queries on their own
    // channel (see ctl.rs). A socket that cannot be made is reported, not fatal.
    let (mut ctl_server, mut ctl_rx) = (None, Vec::new());
    if let Some(path) = &opts.ctl {
        let (txs, rxs): (Vec<_>, Vec<_>) = (1..n).map(|_| std::sync::mpsc::channel()).unzip();
        match crate::ctl::CtlServer::bind(path, txs) {
            Ok(s) => {
                // On stderr: stdout may be a JSON document (`load --json`).
                eprintln!("control socket: {}", s.path().display());
                ctl_server = Some(s);
                ctl_rx = rxs.into_iter().map(Some).collect();
            }
            Err(e) => eprintln!("control socket: {e}; blink stat/ss cannot reach this run"),
        }
    }
    let ctl_server = Mutex::new(ctl_server);
    let ctl_rx: Vec<Mutex<Option<std::sync::mpsc::Receiver<crate::ctl::CtlQuery>>>> =
        ctl_rx.into_iter().map(Mutex::new).collect();
    blink_glue::run_cores(cores, |mut glue| {
        let cpu = glue.cpu() as usize;
        let mut app = setup(&mut glue);
        let mut ctl = if cpu == 0 {
            ctl_server.lock().ok().and_then(|mut s| s.take())
        } else {
            None
        };
        let queries = ctl_rx
            .get(cpu.wrapping_sub(1))
            .and_then(|m| m.lock().ok().and_then(|mut r| r.take()));
        let mut next_stats = opts.stats.map(|s| start + Duration::from_secs_f64(s));
        let mut idle = 0u32;
        let mut done = false;
        let mut left = false;
        let mut left_at = start;
        let mut quiet = 0u32;
        loop {
            if !left
                && (opts.stop.load(Ordering::Relaxed)
                    || opts.duration.is_some_and(|d| start.elapsed() >= d)
                    || finished.load(Ordering::Relaxed) == n)
            {
                left = true;
                left_at = Instant::now();
                leaving.fetch_add(1, Ordering::Relaxed);
            }
            let work = glue.periodic_with(&mut app);
            app.on_poll(&mut glue);
            if let Some(c) = ctl.as_mut() {
                c.poll(&mut glue);
            }
            if let Some(q) = &queries {
                while let Ok(q) = q.try_recv() {
                    let _ = q.reply.send(crate::ctl::core_apply(&mut glue, &q.cmd));
                }
            }
            if left && leaving.load(Ordering::Relaxed) == n {
                // Everyone is stopping: leave once this core has been quiet for a while.
                quiet = if work == 0 { quiet + 1 } else { 0 };
                // A peer that keeps sending is not waited for beyond a second.
                if quiet > 64 || left_at.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
            if work > 0 {
                idle = 0;
            } else {
                idle = idle.saturating_add(1);
                // Busy-poll while traffic flows; when idle, sleep in steps growing from 50 us
                // to one jiffy (F-Stack's idle sleep), so quiet cores leave the CPU to the
                // kernel peer on a small machine. The first frame after a long pause waits
                // at most 1 ms; timers still run every jiffy.
                if idle > IDLE_SPINS {
                    let us = (50 + u64::from(idle - IDLE_SPINS)).min(1000);
                    std::thread::sleep(Duration::from_micros(us));
                }
            }
            if !done && app.finished() {
                done = true;
                finished.fetch_add(1, Ordering::Relaxed);
            }
            if let (Some(t), Some(s)) = (next_stats, opts.stats) {
                if Instant::now() >= t {
                    next_stats = Some(t + Duration::from_secs_f64(s));
                    // Published once per interval, not per packet: the lock is off the fast path.
                    if let Ok(mut slot) = board[cpu].lock() {
                        *slot = Some(CoreSummary::of(&glue));
                    }
                    let snaps: Vec<CoreSummary> = board
                        .iter()
                        .filter_map(|m| m.lock().ok().and_then(|s| s.clone()))
                        .collect();
                    // Core 0 prints once every core has posted (the others' figures are at
                    // most one interval old).
                    if cpu == 0 && snaps.len() == n {
                        println!(
                            "[{:>8.1}s] {}",
                            start.elapsed().as_secs_f64(),
                            stats_line_cores(&snaps, glue.pool_in_use())
                        );
                    }
                }
            }
        }
        glue.flush();
        // Read the shared pool once every core has stopped polling and before any tears
        // down: drain together, stop together, read, then go.
        meet.wait(1, || {
            glue.periodic();
        });
        meet.wait(2, std::thread::yield_now);
        let mut summary = CoreSummary::of(&glue);
        let r = finish(&mut glue, app);
        meet.wait(3, std::thread::yield_now);
        summary.mib = glue.stack().core.mib.clone();
        (summary, r)
    })
}

/// A meeting point for the cores as their runs end (in the `finish` of
/// [`run_cores`]): round `k` returns once every core has called `wait` `k`
/// times, so what one core reads of the shared pool is not disturbed by another tearing its
/// glue down. Gives up after a few seconds (a core that panicked never arrives).
pub struct Rendezvous {
    n: usize,
    arrived: AtomicUsize,
}

impl Rendezvous {
    pub fn new(n: usize) -> Rendezvous {
        Rendezvous {
            n,
            arrived: AtomicUsize::new(0),
        }
    }

    /// This core's `round`-th call (1, 2, ...): call `idle` until every core has made it.
    /// False on timeout.
    pub fn wait(&self, round: usize, mut idle: impl FnMut()) -> bool {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.arrived.load(Ordering::Acquire) < round * self.n {
            if Instant::now() >= deadline {
                log::warn!("rendezvous round {round}: not every core arrived");
                return false;
            }
            idle();
        }
        true
    }
}

/// One compact counter line for --stats: the totals, then per core when there are several.
pub fn stats_line_cores(cores: &[CoreSummary], in_use: usize) -> String {
    use blink_glue::netcore::snmp::{IcmpMib, IpMib, SoftnetMib, TcpMib};
    let m = total_mib(cores);
    let mut d = DevStats::default();
    for c in cores {
        d.merge(&c.dev_total());
    }
    let mut line = format!(
        "rx {} tx {} missed {} nombuf {} errors {} | Ip.InReceives {} Ip.InDelivers {} Ip.OutRequests {} | Icmp.InEchos {} Icmp.OutEchoReps {} | drops {} | mbufs in use {}",
        d.rx_packets,
        d.tx_packets,
        d.rx_missed,
        d.rx_nombuf,
        d.rx_errors + d.tx_errors,
        m.ip[IpMib::InReceives],
        m.ip[IpMib::InDelivers],
        m.ip[IpMib::OutRequests],
        m.icmp[IcmpMib::InEchos],
        m.icmp[IcmpMib::OutEchoReps],
        m.drops.total(),
        in_use
    );
    if cores.len() > 1 {
        for c in cores {
            let s = &c.mib.softnet;
            line.push_str(&format!(
                " | core{} rx {} fwd {} rps {} estab {}",
                c.cpu,
                s[SoftnetMib::Processed],
                s[SoftnetMib::RssForwarded],
                s[SoftnetMib::ReceivedRps],
                c.mib.tcp[TcpMib::CurrEstab],
            ));
        }
    }
    line
}

pub fn dev_line(d: &DevSummary, core: Option<u16>) -> String {
    let s = &d.stats;
    let core = core.map(|c| format!(" core {c}")).unwrap_or_default();
    format!(
        "dev {} ({}){core} mac {} mtu {}: rx {} pkts {} bytes, tx {} pkts {} bytes, rx_dropped {} rx_nombuf {} rx_missed {} rx_errors {} tx_errors {} link {}",
        d.ifindex,
        d.name,
        d.mac,
        d.mtu,
        s.rx_packets,
        s.rx_bytes,
        s.tx_packets,
        s.tx_bytes,
        s.rx_dropped,
        s.rx_nombuf,
        s.rx_missed,
        s.rx_errors,
        s.tx_errors,
        if d.link { "up" } else { "down" }
    )
}

/// The end-of-run report: device counters, non-zero MIB counters summed over the cores,
/// neighbours, buffers; with several cores, then one line per core of its non-zero counters
/// (`core N: Tcp.PassiveOpens 12 ...`) and what the poller dispatched to each.
pub fn report_cores(label: &str, cores: &[CoreSummary], in_use: usize) {
    println!("== {label} ==");
    let multi = cores.len() > 1;
    for c in cores {
        for p in &c.pollers {
            println!("{} (poller)", dev_line(&p.dev, None));
            for (k, v) in &p.dev.extra {
                if *v != 0 {
                    println!("  {k} {v}");
                }
            }
        }
    }
    for c in cores {
        for d in &c.devs {
            println!("{}", dev_line(d, multi.then_some(c.cpu)));
            for (k, v) in &d.extra {
                if *v != 0 {
                    println!("  {k} {v}");
                }
            }
            if c.cpu == 0 {
                for a in &d.addrs {
                    println!("  inet {a}");
                }
            }
        }
    }
    for (k, v) in total_mib(cores).nonzero() {
        println!("{k} {v}");
    }
    println!("neighbours:");
    for l in cores.first().map(|c| c.neigh.as_slice()).unwrap_or(&[]) {
        println!("  {l}");
    }
    println!("mbufs in use: {in_use}");
    if multi {
        println!("per core:");
        for c in cores {
            let kv: Vec<String> = c.mib.nonzero().into_iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("core {}: {}", c.cpu, kv.join(" "));
        }
        for c in cores {
            for p in &c.pollers {
                println!(
                    "poller {}: dispatched per core {:?}, ring drops {}",
                    p.dev.name, p.dispatched, p.ring_drops
                );
            }
        }
    }
}
