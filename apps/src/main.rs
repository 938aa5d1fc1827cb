//! The `blink` command.

use blink_apps::setup::SetupError;
use blink_apps::{bench, ctl, demo, echo, httpd, load, soak, stat};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "blink",
    version,
    about = "blink: a user-space TCP/IPv4 stack built the way Linux builds its own"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Two blink hosts on the in-memory wire: ARP, ping, ICMP errors, per-core counters.
    Demo(demo::DemoArgs),
    /// Echo host on a device (answers ping, TCP echo and discard).
    Echo(echo::EchoArgs),
    /// Benchmarks between two blink stacks on the in-memory wire: TCP bulk, rr, crr.
    Bench(bench::BenchArgs),
    /// HTTP/1.1 server with keep-alive on a device (like mTCP's epserver).
    Httpd(httpd::HttpdArgs),
    /// HTTP load generator: requests/s, failures, latency percentiles (like epwget/ab).
    Load(load::LoadArgs),
    /// Counters of a running blink, per core and in total (/proc/net/snmp names plus blink's
    /// own), like nstat; `--watch SECS` for deltas. The demo's: `blink demo --stat`.
    Stat(stat::StatArgs),
    /// Sockets of a running blink, like `ss -tuan` with `-i` details (rtt, rto, cwnd, ...).
    Ss(ctl::CtlArgs),
    /// Neighbour (ARP) table of a running blink, like `ip neigh`.
    Neigh(ctl::CtlArgs),
    /// Routes of a running blink with its path MTU exceptions, like `ip route` and
    /// `ip route show cache`.
    Route(ctl::CtlArgs),
    /// Devices of a running blink with their counters, like `ip -s link`.
    Link(ctl::CtlArgs),
    /// Drops of a running blink by reason and by the code that dropped (like dropwatch).
    Drops(ctl::CtlArgs),
    /// Follow matching packets through a running blink, function by function (like pwru).
    Trace(ctl::TraceArgs),
    /// Two blink stacks on a lossy, reordering, duplicating, corrupting wire for minutes:
    /// TCP churn and bulk, UDP and raw, every byte checked; fails on leaks or growth.
    Soak(soak::SoakArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Demo(a) => demo::run(a),
        Cmd::Echo(a) => echo::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Httpd(a) => httpd::run(a),
        Cmd::Load(a) => load::run(a),
        Cmd::Stat(a) => stat::run(a),
        Cmd::Ss(a) => ctl::run(a, "ss"),
        Cmd::Neigh(a) => ctl::run(a, "neigh"),
        Cmd::Route(a) => ctl::run(a, "route"),
        Cmd::Link(a) => ctl::run(a, "link"),
        Cmd::Drops(a) => ctl::run(a, "drops"),
        Cmd::Trace(a) => ctl::trace(a),
        Cmd::Soak(a) => soak::run(a),
    };
    match r {
        Ok(()) => {}
        Err(SetupError::Usage(e)) => {
            eprintln!("blink: {e}");
            std::process::exit(2);
        }
        Err(SetupError::Runtime(e)) => {
            eprintln!("blink: {e}");
            std::process::exit(1);
        }
    }
}
