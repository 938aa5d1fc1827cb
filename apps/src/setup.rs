//! Building the stack's cores from the command line (device options, `--cores`, `--mode`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use blink_ipv4::{Ipv4Cidr, Stack};
use blink_netcore::drivers::impair::Impair;
use blink_netcore::netdevice::NetDevice;
use blink_netcore::pcap::PcapDumper;
use blink_netcore::{Mempool, MempoolConfig};

use crate::args::{usage, DevArgs, DevKind, UsageError};

pub use blink_glue::mac_for;

/// Errors while building: bad usage (exit 2) or a runtime failure (exit 1).
pub enum SetupError {
    Usage(UsageError),
    Runtime(String),
}

impl From<UsageError> for SetupError {
    fn from(e: UsageError) -> Self {
        SetupError::Usage(e)
    }
}

pub fn new_pool(n: usize) -> Mempool {
    Mempool::new(&MempoolConfig {
        name: "blink".into(),
        n,
        ..Default::default()
    })
    .expect("static pool config is valid")
}

/// Attach `dev` (wrapped in --impair if given), addresses, gateway and pcap to `stack`.
pub fn configure(
    stack: &mut Stack,
    dev: Box<dyn NetDevice>,
    args: &DevArgs,
    addrs: &[Ipv4Cidr],
) -> Result<(), SetupError> {
    let dev: Box<dyn NetDevice> = match args.impair {
        Some(cfg) if !cfg.is_noop() => {
            eprintln!("impair: {cfg}");
            let cache = stack.core.cache.pool().cache();
            Box::new(Impair::new(dev, cfg, stack.core.clock.clone(), cache))
        }
        _ => dev,
    };
    let ifindex = stack.add_device(dev, 0);
    if let Some(p) = &args.pcap {
        let d = PcapDumper::create(p).map_err(|e| SetupError::Runtime(format!("--pcap: {e}")))?;
        stack
            .set_pcap(ifindex, d)
            .map_err(|e| SetupError::Runtime(e.to_string()))?;
    }
    for a in addrs {
        stack.add_addr(ifindex, *a).map_err(|e| usage(e.to_string()))?;
    }
    if let Some(gw) = args.gw {
        stack
            .add_route("0.0.0.0/0".parse().expect("valid"), gw)
            .map_err(|e| usage(e.to_string()))?;
    }
    for (i, t) in args.tunnels()?.into_iter().enumerate() {
        blink_ipv4::ip_tunnel::ip_tunnel_add(stack, &t.kind.dev_name(i), t.parms(), t.addr)
            .map_err(|e| usage(e.to_string()))?;
    }
    Ok(())
}

/// Install SIGINT/SIGTERM handlers that set the returned flag.
pub fn stop_flag() -> Arc<AtomicBool> {
    let f = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, f.clone());
    }
    f
}

/// The end-of-run report of one stack: device counters, non-zero MIB counters, neighbours,
/// buffers.
pub fn report(stack: &Stack, label: &str) {
    crate::cores::report_cores(
        label,
        &[crate::cores::CoreSummary::of_stack(stack)],
        stack.pool_in_use(),
    );
}

/// A glue instance on the device chosen with --dev (TAP, or DPDK with its feature; the wire
/// needs a peer in this process), for the subcommands written on glue. One core: see
/// [`build_cores`] for several.
pub fn build_glue<U>(
    args: &DevArgs,
    tcp: blink_glue::tcp::TcpConfig,
    pool_size: usize,
) -> Result<blink_glue::Glue<U>, SetupError> {
    if args.cores != 1 {
        return Err(usage("--cores: this subcommand runs on one core").into());
    }
    Ok(build_cores(args, tcp, pool_size)?.pop().expect("one core"))
}

/// One glue instance per core (`--cores N`, `--mode rss|poller`) on the device chosen with
/// --dev: a multi-queue TAP (rss) or a single-queue one (poller); with DPDK, N queue pairs
/// (rss) or one (poller). `pool_size` buffers per core.
pub fn build_cores<U>(
    args: &DevArgs,
    tcp: blink_glue::tcp::TcpConfig,
    pool_size: usize,
) -> Result<Vec<blink_glue::Glue<U>>, SetupError> {
    use blink_glue::GlueBuilder;
    if args.dev.is_none() {
        // Said before anything else: the demo's default device cannot serve here.
        return Err(usage(
            "--dev: required here: tap:NAME (a Linux TAP) or dpdk; the in-memory wire (the demo's \
             default) needs a peer stack in this process",
        )
        .into());
    }
    args.check_supported()?;
    let mode = args.steering()?;
    if args.addresses()?.is_empty() {
        return Err(usage("--ip: an address is required (or a --config file with `0 <ip> <mask>` lines)").into());
    }
    let pool_size = pool_size * args.cores as usize;
    // One device per port; port i gets --config's `i <ip> <mask>` lines (and --ip, port 0).
    let (mut b, ports) = match args.dev_kind()? {
        DevKind::Tap(names) => {
            let ports = args.port_addresses(names.len(), &format!("tap:{}", names.join(",tap:")))?;
            let mut b = GlueBuilder::new();
            for (name, addrs) in names.iter().zip(&ports) {
                b = b.tap(name, args.mtu as usize);
                for a in addrs {
                    b = b.addr(*a);
                }
            }
            (b, ports.len())
        }
        DevKind::Wire => {
            return Err(
                usage("--dev wire: the in-memory wire needs a peer stack in this process; use --dev tap:NAME").into(),
            )
        }
        DevKind::Dpdk => dpdk_builder(args, mode, pool_size)?,
    };
    // Fault injection on every port, and a capture file per port (port_pcap_path).
    if let Some(cfg) = args.impair.filter(|c| !c.is_noop()) {
        eprintln!("impair: {cfg}");
        for i in 0..ports {
            b = b.on_device(i).impair(cfg);
        }
    }
    if let Some(p) = &args.pcap {
        for i in 0..ports {
            b = b.on_device(i).pcap(port_pcap_path(p, i));
        }
    }
    if let Some(gw) = args.gw {
        b = b.gateway(gw);
    }
    for t in args.tunnels()? {
        b = b.tunnel(t);
    }
    let st = args.static_entries()?;
    for (ip, mac) in st.arp {
        b = b.static_arp(ip, mac);
    }
    for (dst, gw) in st.routes {
        b = b.route(dst, gw);
    }
    if let Some((rules, names, kernel_addr)) = args.exception()? {
        let names = crate::args::kernel_if_names(names, ports)?;
        eprintln!("exception path: {rules} -> kernel interface(s) {}", names.join(", "));
        b = b
            .to_kernel(rules, blink_glue::KernelSide::Taps(names))
            .kernel_addr(kernel_addr);
    }
    let glues = b
        .pool_size(pool_size)
        .rss_key(&args.rss_key_bytes())
        .cores(args.cores)
        .mode(mode)
        .tcp(tcp)
        .build_cores()
        .map_err(glue_err)?;
    for note in glues[0].device_notes() {
        eprintln!("{note}");
    }
    Ok(glues)
}

/// Port `i`'s capture file for `--pcap FILE`: FILE itself for port 0, `STEM-portI.EXT` for
/// the others (classic pcap has no interface field, so one file per port keeps each trace
/// whole in Wireshark; the cores of one port share its file).
pub fn port_pcap_path(p: &std::path::Path, i: usize) -> std::path::PathBuf {
    if i == 0 {
        return p.to_path_buf();
    }
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match p.extension() {
        Some(e) => format!("{stem}-port{i}.{}", e.to_string_lossy()),
        None => format!("{stem}-port{i}"),
    };
    p.with_file_name(name)
}

/// A builder error as the command line says it: configuration errors name the option.
fn glue_err(e: blink_glue::GlueError) -> SetupError {
    match e {
        blink_glue::GlueError::Config { field, msg } => {
            // Name the command-line option, not the builder method.
            let opt = match field.as_str() {
                "route" => "gw",
                "addr" => "ip",
                "device" => "dev",
                "kernel_if" => "kernel-if",
                "dpdk" => "eal",
                f => f,
            };
            SetupError::Usage(usage(format!("--{opt}: {msg}")))
        }
        e => SetupError::Runtime(e.to_string()),
    }
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_builder(
    _args: &DevArgs,
    _mode: blink_glue::Steering,
    _pool: usize,
) -> Result<(blink_glue::GlueBuilder, usize), SetupError> {
    Err(usage("--dev dpdk: this blink was built without the `dpdk` feature (cargo build --features dpdk)").into())
}

/// --dev dpdk: glue initialises EAL with --eal and adds every port it probed (port i is
/// config port i), one queue pair per core (rss) or one (poller), on a DPDK mempool.
#[cfg(feature = "dpdk")]
fn dpdk_builder(
    args: &DevArgs,
    _mode: blink_glue::Steering,
    _pool_size: usize,
) -> Result<(blink_glue::GlueBuilder, usize), SetupError> {
    let eal = args.eal.as_deref().ok_or_else(|| {
        usage("--dev dpdk needs --eal \"EAL ARGS\", e.g. --eal \"--no-huge -m 512 --no-pci --vdev=net_tap0,iface=dtap0 -l 0\"")
    })?;
    let mut b = blink_glue::GlueBuilder::new().dpdk(eal, args.mtu as usize);
    if let Some(e) = b.error() {
        return Err(glue_err(e.clone()));
    }
    let n = b.nb_devices();
    let ports = args.port_addresses(n, &format!("dpdk ports 0..{}", n.saturating_sub(1)))?;
    for (i, addrs) in ports.iter().enumerate() {
        b = b.on_device(i);
        for a in addrs {
            b = b.addr(*a);
        }
    }
    Ok((b, n))
}

#[cfg(test)]
mod tests {
    use super::port_pcap_path;
    use std::path::Path;

    #[test]
    fn one_capture_file_per_port() {
        let p = Path::new("/tmp/cap.pcap");
        assert_eq!(port_pcap_path(p, 0), Path::new("/tmp/cap.pcap"));
        assert_eq!(port_pcap_path(p, 1), Path::new("/tmp/cap-port1.pcap"));
        assert_eq!(port_pcap_path(Path::new("trace"), 2), Path::new("trace-port2"));
    }
}
