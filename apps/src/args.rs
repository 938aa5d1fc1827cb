//! Device options shared by every subcommand (the README's "Try it" sections); the
//! `--config` file's syntax is in config.rs.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use blink_ipv4::ip_exception::ExcRules;
use blink_ipv4::iphdr::Ipv4Cidr;
use blink_netcore::drivers::impair::ImpairConfig;
use clap::Args;

use crate::config::{check_ifname, parse_config_file, ConfigFile};

/// A configuration error: names the field, exits with code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    // The help says which devices this build can open (dpdk only with the feature).
    #[arg(long, value_name = "DEV", help = DEV_HELP)]
    pub dev: Option<String>,
    // The value itself starts with `--`: let clap take it as a value.
    #[arg(long, value_name = "EAL ARGS", allow_hyphen_values = true, help = EAL_HELP)]
    pub eal: Option<String>,
    /// Address and prefix length of the stack, e.g. 10.200.0.2/24.
    #[arg(long, value_name = "A.B.C.D/LEN", value_parser = parse_cidr)]
    pub ip: Option<Ipv4Cidr>,
    /// Default gateway.
    #[arg(long, value_name = "A.B.C.D")]
    pub gw: Option<Ipv4Addr>,
    /// Link MTU.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(68..=9000))]
    pub mtu: u32,
    /// Stack cores: one pinned thread each, with its own stack, tables, timers and counters.
    #[arg(long, default_value_t = 1)]
    pub cores: u16,
    /// Steering mode: rss (each core polls its own device queue; frames whose queue does not
    /// follow blink's hash are forwarded to their owner) or poller (one poller in core 0's
    /// loop drives a single-queue device and dispatches frames to the cores).
    #[arg(long, default_value = "rss", value_parser = ["rss", "poller"])]
    pub mode: String,
    /// RSS key the cores hash flows with (and the key programmed into a DPDK NIC): `default`
    /// (the standard Microsoft key) or `symmetric` (0x6d5a repeated: both directions of a
    /// flow hash alike).
    #[arg(long, value_name = "KEY", default_value = "default", value_parser = ["default", "symmetric"])]
    pub rss_key: String,
    /// Configuration file: IPAugenblick's `<port> <ip> <mask>` lines, `arp <ip> <mac>`,
    /// `route <dst>/<len> via <gw>`, `to-kernel RULES`, `kernel-if NAME` (see config.rs).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Share the device with the kernel (the exception path): frames matching RULES go to a
    /// kernel TAP with blink's MAC, and what the kernel sends there leaves through blink's
    /// device. RULES: tcp:PORT[-PORT], udp:PORT[-PORT], proto:N, arp (mirror ARP requests
    /// too; replies always are), icmp-copy (ICMP other than the echo requests blink answers),
    /// unclaimed (what no blink socket wants, instead of RST or port unreachable); e.g.
    /// `tcp:22,udp:67-68,arp`.
    #[arg(long = "to-kernel", value_name = "RULES")]
    pub to_kernel: Option<String>,
    /// Names of the exception path's kernel TAPs, one per port: NAME[,NAME2...] (default:
    /// blink-kni0 for port 0, blink-kni1 for port 1, ...). blink brings each up with its
    /// port's MAC and MTU.
    #[arg(long = "kernel-if", value_name = "NAME[,NAME...]")]
    pub kernel_if: Option<String>,
    /// Also give each kernel TAP its port's first address (what `ip addr add` would), so the
    /// host's services answer on blink's address with no further commands.
    #[arg(long = "kernel-addr")]
    pub kernel_addr: bool,
    /// Capture every frame of the device into this pcap file (with several ports, port 0's;
    /// port N's goes to STEM-portN.EXT beside it).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Print a counter line every SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub stats: Option<f64>,
    /// Seeded fault injection on the device, both directions:
    /// loss=P,reorder=P,dup=P,corrupt=P,delay=MS[,seed=N].
    #[arg(long, value_parser = parse_impair)]
    pub impair: Option<ImpairConfig>,
    /// Tunnel endpoint, repeatable: `ipip:REMOTE:ADDR/LEN` or `gre:REMOTE:ADDR/LEN[,key=K]`
    /// (an IPIP or GRE tunnel device towards REMOTE, with blink's address ADDR/LEN inside it;
    /// replies to the tunnel's network go back through it).
    #[arg(long, value_name = "KIND:REMOTE:ADDR/LEN")]
    pub tunnel: Vec<String>,
    /// Name of this instance for `blink stat|ss|neigh|link NAME` (default: the subcommand).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Control socket path (default: $XDG_RUNTIME_DIR/blink/NAME.sock, or /run/blink/NAME.sock
    /// as root).
    #[arg(long, value_name = "PATH")]
    pub ctl: Option<PathBuf>,
}

const DEV_HELP: &str = if cfg!(feature = "dpdk") {
    "Device: `tap:NAME` (Linux TAP) or `dpdk`; required by echo, httpd and load. `wire` (the \
     in-memory wire) is the demo's, and its default"
} else {
    "Device: `tap:NAME` (Linux TAP); required by echo, httpd and load. `wire` (the in-memory \
     wire) is the demo's, and its default. [`dpdk`: not in this build, which lacks the `dpdk` \
     feature: cargo build --release --features dpdk]"
};

const EAL_HELP: &str = if cfg!(feature = "dpdk") {
    "DPDK EAL arguments (with --dev dpdk), as one string, e.g. \"--no-huge -m 512 --no-pci \
     --vdev=net_tap0,iface=dtap0 -l 0 --file-prefix=blink1\""
} else {
    "[not in this build: needs the `dpdk` feature] DPDK EAL arguments (with --dev dpdk), as \
     one string"
};

fn parse_cidr(s: &str) -> Result<Ipv4Cidr, String> {
    // The parser's own message already says what form it expects.
    s.parse::<Ipv4Cidr>().map_err(|e| {
        let m = e.to_string();
        if m.contains("A.B.C.D/LEN") {
            m
        } else {
            format!("{m} (expected A.B.C.D/LEN)")
        }
    })
}

fn parse_impair(s: &str) -> Result<ImpairConfig, String> {
    s.parse::<ImpairConfig>().map_err(|e| e.to_string())
}

impl DevArgs {
    /// The RSS key chosen with --rss-key.
    pub fn rss_key_bytes(&self) -> [u8; 40] {
        match self.rss_key.as_str() {
            "symmetric" => blink_netcore::rss::RSS_KEY_SYMMETRIC,
            _ => blink_netcore::rss::RSS_KEY_DEFAULT,
        }
    }

    /// The steering mode chosen with --mode.
    pub fn steering(&self) -> Result<blink_glue::Steering, UsageError> {
        self.mode.parse().map_err(|e| usage(format!("--mode: {e}")))
    }
}

/// The device kind chosen with --dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevKind {
    Wire,
    /// One TAP per port, port `i` the `i`-th name.
    Tap(Vec<String>),
    Dpdk,
}

impl DevArgs {
    /// The device chosen with --dev; without one, the demo's in-memory wire.
    pub fn dev_kind(&self) -> Result<DevKind, UsageError> {
        match self.dev.as_deref().unwrap_or("wire") {
            "wire" => Ok(DevKind::Wire),
            "dpdk" => Ok(DevKind::Dpdk),
            // Several ports: `tap:A,tap:B` (port 0 is A, port 1 is B).
            s => {
                let mut names: Vec<String> = Vec::new();
                for one in s.split(',') {
                    match one.strip_prefix("tap:") {
                        Some(n) if !n.is_empty() && n.len() < 16 => {
                            if names.iter().any(|x| x == n) {
                                return Err(usage(format!("--dev: tap:{n} is given twice")));
                            }
                            names.push(n.to_string())
                        }
                        _ => {
                            return Err(usage(format!(
                                "--dev: `{one}` is not one of wire, tap:NAME[,tap:NAME2...] (NAME 1..15 chars), dpdk"
                            )))
                        }
                    }
                }
                Ok(DevKind::Tap(names))
            }
        }
    }

    /// Reject options whose machinery is not in this build yet, naming them.
    pub fn check_supported(&self) -> Result<(), UsageError> {
        if self.cores == 0 {
            return Err(usage("--cores: must be at least 1"));
        }
        let cpus = blink_glue::runtime::allowed_cpus().len();
        if self.cores as usize > cpus {
            return Err(usage(format!(
                "--cores: {} cores requested but this process may run on {cpus} CPU(s)",
                self.cores
            )));
        }
        self.tunnels()?;
        if let Some(n) = &self.name {
            if n.is_empty()
                || n.len() > 64
                || !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || n.starts_with('.')
            {
                return Err(usage(format!(
                    "--name: `{n}` must be 1..64 letters, digits, `-`, `_` or `.`"
                )));
            }
        }
        self.exception()?;
        if self.eal.is_some() && self.dev_kind()? != DevKind::Dpdk {
            return Err(usage("--eal: only meaningful with --dev dpdk"));
        }
        if let Some(s) = self.stats {
            if !(s > 0.0 && s.is_finite()) {
                return Err(usage(format!("--stats: `{s}` must be a positive number of seconds")));
            }
        }
        Ok(())
    }

    /// Where this run's control socket listens: --ctl, else NAME's default path.
    pub fn ctl_path(&self, subcommand: &str) -> PathBuf {
        self.ctl
            .clone()
            .unwrap_or_else(|| crate::ctl::ctl_path(self.name.as_deref().unwrap_or(subcommand)))
    }

    /// The --tunnel endpoints.
    pub fn tunnels(&self) -> Result<Vec<blink_glue::TunnelSpec>, UsageError> {
        self.tunnel
            .iter()
            .map(|t| t.parse().map_err(|e| usage(format!("--tunnel: {e}"))))
            .collect()
    }

    /// The --config file, parsed (None without one). Its port numbers are checked against
    /// the devices by [`DevArgs::port_addresses`].
    pub fn config_file(&self) -> Result<Option<ConfigFile>, UsageError> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        let at = || format!("--config {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| usage(format!("{}: cannot read: {e}", at())))?;
        let c = parse_config_file(&text).map_err(|e| usage(format!("{}: {e}", at())))?;
        Ok(Some(c))
    }

    /// The ports' addresses, port `i` at index `i` of `nports`: --ip is port 0's, each
    /// `<port> <ip> <mask>` line its port's. A line for a port with no device is an error
    /// naming it.
    pub fn port_addresses(&self, nports: usize, devs: &str) -> Result<Vec<Vec<Ipv4Cidr>>, UsageError> {
        let mut v = vec![Vec::new(); nports.max(1)];
        v[0].extend(self.ip_arg()?);
        if let Some(c) = self.config_file()? {
            for &(port, cidr) in &c.ports {
                let Some(slot) = v.get_mut(port as usize).filter(|_| (port as usize) < nports) else {
                    let path = self.config.as_ref().expect("a config file was read").display();
                    return Err(usage(format!(
                        "--config {path}: port {port}: no such port ({nports} device(s): {devs})"
                    )));
                };
                slot.push(cidr);
            }
        }
        Ok(v)
    }

    /// Every port's addresses: --ip plus the --config lines.
    pub fn addresses(&self) -> Result<Vec<Ipv4Cidr>, UsageError> {
        let mut v = self.ip_arg()?;
        if let Some(c) = self.config_file()? {
            v.extend(c.ports.iter().map(|&(_, cidr)| cidr));
        }
        Ok(v)
    }

    /// --ip, checked.
    fn ip_arg(&self) -> Result<Vec<Ipv4Cidr>, UsageError> {
        let mut v = Vec::new();
        if let Some(ip) = self.ip {
            // A host address, not the subnet's own or its broadcast (except on /31 and /32,
            // where every address is a host, RFC 3021).
            if ip.prefix_len < 31 && (ip.addr == ip.network() || ip.addr == ip.broadcast()) {
                let what = if ip.addr == ip.network() {
                    "network"
                } else {
                    "broadcast"
                };
                return Err(usage(format!(
                    "--ip: {ip} is the {what} address of its subnet, not a host address"
                )));
            }
            v.push(ip);
        }
        Ok(v)
    }

    /// Static neighbours and routes of the --config file, each checked against the
    /// addresses: a gateway or neighbour must be on a connected network.
    pub fn static_entries(&self) -> Result<StaticEntries, UsageError> {
        let Some(c) = self.config_file()? else {
            return Ok(StaticEntries::default());
        };
        let addrs = self.addresses()?;
        let path = self.config.as_ref().expect("a config file was read").display();
        let connected = |ip: Ipv4Addr| addrs.iter().any(|a| a.contains(ip));
        for (ip, mac) in &c.arp {
            if !connected(*ip) {
                return Err(usage(format!(
                    "--config {path}: arp {ip} {mac}: {ip} is not on any connected network"
                )));
            }
        }
        for (dst, gw) in &c.routes {
            if !connected(*gw) {
                return Err(usage(format!(
                    "--config {path}: route {dst} via {gw}: gateway {gw} is not on any connected network"
                )));
            }
        }
        Ok(StaticEntries {
            arp: c.arp,
            routes: c.routes,
        })
    }

    /// The exception path: (rules, kernel TAP names) from --to-kernel/--kernel-if, or else the
    /// config file's `to-kernel`/`kernel-if` lines (the command line wins). The names are a
    /// comma-separated list, one per port; None when not given (see [`kernel_if_names`]).
    /// The exception path's rules and kernel TAP names (`--to-kernel`/`--kernel-if`, else the
    /// config file's lines), and whether the TAPs take their ports' addresses.
    #[allow(clippy::type_complexity)]
    pub fn exception(&self) -> Result<Option<(ExcRules, Option<Vec<String>>, bool)>, UsageError> {
        let file = self.config_file()?;
        let kernel_addr = self.kernel_addr || file.as_ref().is_some_and(|c| c.kernel_addr);
        let rules = match &self.to_kernel {
            Some(r) => Some(r.parse::<ExcRules>().map_err(|e| usage(format!("--to-kernel: {e}")))?),
            None => file.as_ref().and_then(|c| c.to_kernel.clone()),
        };
        if let Some(n) = &self.kernel_if {
            for one in n.split(',') {
                check_ifname(one).map_err(|e| usage(format!("--kernel-if: {e}")))?;
            }
        }
        let name = self
            .kernel_if
            .clone()
            .or_else(|| file.as_ref().and_then(|c| c.kernel_if.clone()));
        let Some(rules) = rules else {
            if self.kernel_if.is_some() {
                return Err(usage("--kernel-if: only meaningful with --to-kernel RULES"));
            }
            if let (Some(n), Some(p)) = (&name, &self.config) {
                return Err(usage(format!(
                    "--config {}: kernel-if {n}: only meaningful with --to-kernel RULES (or a `to-kernel` line)",
                    p.display()
                )));
            }
            return Ok(None);
        };
        let names: Option<Vec<String>> = name.map(|n| n.split(',').map(str::to_string).collect());
        match self.dev_kind()? {
            DevKind::Wire => {
                return Err(usage(
                    "--to-kernel: the in-memory wire has no kernel to share it with; use --dev tap:NAME or dpdk",
                ))
            }
            DevKind::Tap(t) => {
                let names = kernel_if_names(names.clone(), t.len())?;
                if let Some(n) = names.iter().find(|n| t.contains(n)) {
                    return Err(usage(format!(
                        "--kernel-if: `{n}` is blink's own device (--dev tap:{n})"
                    )));
                }
            }
            _ => {}
        }
        Ok(Some((rules, names, kernel_addr)))
    }
}

/// The kernel TAPs of `nports` ports: the names given (one per port), or by default
/// `blink-kni0`, `blink-kni1`, ... (port `i`'s is `blink-kni{i}`).
pub fn kernel_if_names(given: Option<Vec<String>>, nports: usize) -> Result<Vec<String>, UsageError> {
    match given {
        None => Ok((0..nports)
            .map(|i| {
                let base = blink_glue::DEFAULT_KERNEL_IF.trim_end_matches('0');
                format!("{base}{i}")
            })
            .collect()),
        Some(v) if v.len() == nports => {
            if let Some((_, n)) = v.iter().enumerate().find(|(i, n)| v[..*i].contains(n)) {
                return Err(usage(format!("--kernel-if: `{n}` is given twice")));
            }
            Ok(v)
        }
        Some(v) => Err(usage(format!(
            "--kernel-if: {nports} port(s) need {nports} name(s), one per port (a,b,...), got {}",
            v.len()
        ))),
    }
}

/// The config file's static neighbours and routes.
#[derive(Debug, Default)]
pub struct StaticEntries {
    pub arp: Vec<(Ipv4Addr, blink_netcore::EthAddr)>,
    pub routes: Vec<(Ipv4Cidr, Ipv4Addr)>,
}

/// Parse IPAugenblick's interface lines (`<port> <ip> <mask>`) of a config file.
pub fn parse_config(text: &str) -> Result<Vec<(u16, Ipv4Cidr)>, String> {
    parse_config_file(text).map(|c| c.ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines() {
        let v = parse_config("# ports\n0 192.168.1.1 255.255.255.0\n\n0 10.0.0.1 255.0.0.0 # second\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1.to_string(), "192.168.1.1/24");
        assert_eq!(v[1].1.prefix_len, 8);
        assert!(parse_config("0 192.168.1.1").unwrap_err().contains("line 1"));
        assert!(parse_config("x 1.2.3.4 255.0.0.0").unwrap_err().contains("`port`"));
        assert!(parse_config("0 1.2.3 255.0.0.0").unwrap_err().contains("`ip`"));
        assert!(parse_config("0 1.2.3.4 255.0.255.0").unwrap_err().contains("`mask`"));
        assert!(parse_config("0 255.255.255.255 255.0.0.0")
            .unwrap_err()
            .contains("`ip`"));
    }
}
