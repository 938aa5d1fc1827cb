//! Device options shared by every subcommand (the README's "Try it" sections), and the
//! IPAugenblick-style `--config` file (`<port> <ip> <mask>` per line).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use blink_ipv4::iphdr::{mask_to_prefix, Ipv4Cidr};
use blink_netcore::drivers::impair::ImpairConfig;
use clap::Args;

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
    /// IPAugenblick-style interface file: lines of `<port> <ip> <mask>`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Capture every frame of the device into this pcap file.
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
    Tap(String),
    Dpdk,
}

impl DevArgs {
    /// The device chosen with --dev; without one, the demo's in-memory wire.
    pub fn dev_kind(&self) -> Result<DevKind, UsageError> {
        match self.dev.as_deref().unwrap_or("wire") {
            "wire" => Ok(DevKind::Wire),
            "dpdk" => Ok(DevKind::Dpdk),
            s => match s.strip_prefix("tap:") {
                Some(n) if !n.is_empty() && n.len() < 16 => Ok(DevKind::Tap(n.to_string())),
                _ => Err(usage(format!(
                    "--dev: `{s}` is not one of wire, tap:NAME (NAME 1..15 chars), dpdk"
                ))),
            },
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

    /// Addresses of port 0: --ip plus the --config lines.
    pub fn addresses(&self) -> Result<Vec<Ipv4Cidr>, UsageError> {
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
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--config {}: cannot read: {e}", path.display())))?;
            for (port, cidr) in parse_config(&text).map_err(|e| usage(format!("--config {}: {e}", path.display())))? {
                if port != 0 {
                    return Err(usage(format!(
                        "--config {}: port {port}: only port 0 exists (one device)",
                        path.display()
                    )));
                }
                v.push(cidr);
            }
        }
        Ok(v)
    }
}

/// Parse IPAugenblick's interface lines: `<port> <ip> <mask>`; `#` starts a comment.
pub fn parse_config(text: &str) -> Result<Vec<(u16, Ipv4Cidr)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            return Err(format!("line {n}: expected `<port> <ip> <mask>`, got `{line}`"));
        }
        let port: u16 = f[0]
            .parse()
            .map_err(|_| format!("line {n}: field `port`: `{}` is not a port number", f[0]))?;
        let ip: Ipv4Addr = f[1]
            .parse()
            .map_err(|_| format!("line {n}: field `ip`: `{}` is not an IPv4 address", f[1]))?;
        let len = mask_to_prefix(f[2])
            .ok_or_else(|| format!("line {n}: field `mask`: `{}` is not a contiguous netmask", f[2]))?;
        let cidr = Ipv4Cidr::new(ip, len).map_err(|e| format!("line {n}: {e}"))?;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(format!("line {n}: field `ip`: {ip} cannot be a host address"));
        }
        out.push((port, cidr));
    }
    Ok(out)
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
