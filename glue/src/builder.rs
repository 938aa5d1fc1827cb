//! Building a glue instance: devices, addresses, routes, static neighbours, the buffer pool,
//! clock and TCP, UDP and raw settings (IPAugenblick's `app_glue_init` plus its interface file).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use blink_ipv4::inbox::{CoreSet, INBOX_SIZE};
use blink_ipv4::ip_exception::ExcRules;
use blink_ipv4::ip_tunnel::{ip_tunnel_add, TunnelSpec};
use blink_ipv4::neighbour::neigh_add_static;
use blink_ipv4::{Ipv4Cidr, Stack, StackConfig};
use blink_netcore::drivers::impair::{Impair, ImpairConfig};
use blink_netcore::drivers::tap::TapDev;
use blink_netcore::jiffies::Clock;
use blink_netcore::netdevice::NetDevice;
use blink_netcore::pcap::PcapDumper;
use blink_netcore::rss::Toeplitz;
use blink_netcore::{EthAddr, Mempool, MempoolConfig};
use blink_raw::RawConfig;
use blink_tcp::TcpConfig;
use blink_udp::UdpConfig;

use crate::exception::{KernelIf, KernelSide};
use crate::poller::Poller;
use crate::runtime::{allowed_cpus, Steering};
use crate::{Glue, GlueError};

/// Buffers in the pool when the builder is not told otherwise.
pub const DEFAULT_POOL_SIZE: usize = 8192;

/// A stack's MAC derived from its address: locally administered 02:62:6c ("bl") + the low
/// three octets, so two blink hosts on a link never collide and captures are easy to read.
pub fn mac_for(ip: Option<Ipv4Cidr>) -> EthAddr {
    let o = ip.map(|c| c.addr.octets()).unwrap_or([0, 0, 0, 1]);
    EthAddr([0x02, 0x62, 0x6c, o[1], o[2], o[3]])
}

/// Where a device comes from.
enum DevSource {
    /// Already made by the caller (the in-memory wire, or any driver).
    Ready(Box<dyn NetDevice>),
    /// One handle per queue, made by the caller (`WireDev::into_queues`, ...): core `i`
    /// drives handle `i` on queue `i`.
    Queues(Vec<Box<dyn NetDevice>>),
    /// A Linux TAP opened at build time (its MAC follows the device's first address unless set).
    Tap {
        name: String,
        mac: Option<EthAddr>,
        mtu: usize,
    },
    /// A DPDK port (EAL initialised by [`GlueBuilder::dpdk`]), started at build time with a
    /// queue pair per core (rss) or one (poller).
    #[cfg(feature = "dpdk")]
    Dpdk { port: u16, mtu: usize },
}

struct DevSpec {
    src: DevSource,
    addrs: Vec<Ipv4Cidr>,
    impair: Option<ImpairConfig>,
    pcap: Option<PathBuf>,
}

/// Builder for [`Glue`]. Settings that name a device apply to the device added last.
///
/// ```
/// use blink_glue::{GlueBuilder, netcore::drivers::wire::{wire_pair, WireConfig}, netcore::EthAddr};
/// let (a, _b) = wire_pair(("a", "b"), (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])), &WireConfig::default());
/// let glue = GlueBuilder::new()
///     .device(Box::new(a))
///     .addr("10.0.0.1/24".parse().unwrap())
///     .pool_size(1024)
///     .build::<()>()
///     .unwrap();
/// assert_eq!(glue.stack().devs.len(), 1);
/// ```
pub struct GlueBuilder {
    devs: Vec<DevSpec>,
    /// The device per-device settings apply to ([`GlueBuilder::on_device`]); None: the last.
    cur: Option<usize>,
    /// The RSS key as given, for a NIC to be programmed with.
    rss_key: Vec<u8>,
    routes: Vec<(Ipv4Cidr, Ipv4Addr)>,
    tunnels: Vec<TunnelSpec>,
    static_arp: Vec<(Ipv4Addr, EthAddr)>,
    pool: Option<Mempool>,
    pool_size: usize,
    cores: u16,
    mode: Steering,
    toeplitz: Toeplitz,
    clock: Option<Clock>,
    stack_cfg: StackConfig,
    tcp: TcpConfig,
    udp: UdpConfig,
    raw: RawConfig,
    exception: Option<(ExcRules, KernelSide)>,
    kernel_addr: bool,
    err: Option<GlueError>,
}

impl Default for GlueBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GlueBuilder {
    pub fn new() -> GlueBuilder {
        GlueBuilder {
            devs: Vec::new(),
            cur: None,
            rss_key: blink_netcore::rss::RSS_KEY_DEFAULT.to_vec(),
            routes: Vec::new(),
            tunnels: Vec::new(),
            static_arp: Vec::new(),
            pool: None,
            pool_size: DEFAULT_POOL_SIZE,
            cores: 1,
            mode: Steering::Rss,
            toeplitz: Toeplitz::default(),
            clock: None,
            stack_cfg: StackConfig::default(),
            tcp: TcpConfig::default(),
            udp: UdpConfig::default(),
            raw: RawConfig::default(),
            exception: None,
            kernel_addr: false,
            err: None,
        }
    }

    /// Add a device made by the caller (e.g. one end of `wire_pair`).
    pub fn device(mut self, dev: Box<dyn NetDevice>) -> Self {
        self.cur = None;
        self.devs.push(DevSpec {
            src: DevSource::Ready(dev),
            addrs: Vec::new(),
            impair: None,
            pcap: None,
        });
        self
    }

    /// Add a device as one handle per queue (e.g. `WireDev::into_queues`): in rss mode core
    /// `i` drives handle `i`, so give as many handles as cores; in poller mode give one.
    pub fn device_queues(mut self, queues: Vec<Box<dyn NetDevice>>) -> Self {
        self.cur = None;
        self.devs.push(DevSpec {
            src: DevSource::Queues(queues),
            addrs: Vec::new(),
            impair: None,
            pcap: None,
        });
        self
    }

    /// Add a Linux TAP device `name` (created if missing; needs CAP_NET_ADMIN). With several
    /// cores in rss mode it is opened multi-queue, one queue per core.
    pub fn tap(mut self, name: &str, mtu: usize) -> Self {
        self.cur = None;
        self.devs.push(DevSpec {
            src: DevSource::Tap {
                name: name.to_string(),
                mac: None,
                mtu,
            },
            addrs: Vec::new(),
            impair: None,
            pcap: None,
        });
        self
    }

    fn last_dev(&mut self, field: &str) -> Option<&mut DevSpec> {
        if self.devs.is_empty() && self.err.is_none() {
            self.err = Some(GlueError::Config {
                field: field.into(),
                msg: "add a device first".into(),
            });
        }
        match self.cur {
            Some(i) => self.devs.get_mut(i),
            None => self.devs.last_mut(),
        }
    }

    /// Make the per-device settings that follow (addr, mac, impair, pcap) apply to device `i`
    /// (0-based, in the order added; [`GlueBuilder::dpdk`] adds several at once) instead of
    /// the last one, until another device is added.
    pub fn on_device(mut self, i: usize) -> Self {
        if i >= self.devs.len() {
            self.err.get_or_insert(GlueError::Config {
                field: "device".into(),
                msg: format!("device {i}: only {} device(s) added", self.devs.len()),
            });
        }
        self.cur = Some(i);
        self
    }

    /// Devices added so far.
    pub fn nb_devices(&self) -> usize {
        self.devs.len()
    }

    /// The first configuration error met so far (reported by build too): lets a caller say
    /// it before checks of its own that depend on the devices added (e.g. EAL failed).
    pub fn error(&self) -> Option<&GlueError> {
        self.err.as_ref()
    }

    /// DPDK: initialise EAL with `eal_args` (one string, split on white space, e.g.
    /// `--no-huge -m 512 --no-pci --vdev=net_tap0,iface=dtap0 -l 0`) unless this process
    /// already did, and add every port EAL probed as a device, port `i` as device `i` (use
    /// [`GlueBuilder::on_device`] to address each). The ports are started at build time, one
    /// queue pair per core (rss, steered with the builder's RSS key) or one (poller), with
    /// buffers from a DPDK mempool the builder makes (or the DPDK pool given with
    /// [`GlueBuilder::pool`]). EAL pins the calling thread; the CPU mask is restored.
    #[cfg(feature = "dpdk")]
    pub fn dpdk(mut self, eal_args: &str, mtu: usize) -> Self {
        use blink_netcore::drivers::dpdk::{eal_init, eth_dev_ports, DpdkError};
        let cpus = allowed_cpus();
        match eal_init(eal_args) {
            Ok(()) | Err(DpdkError::EalAgain) => {}
            Err(e) => {
                self.err.get_or_insert(dpdk_err(e));
                return self;
            }
        }
        if let Err(e) = crate::runtime::set_allowed_cpus(&cpus) {
            log::warn!("dpdk: cannot restore the CPU mask after EAL init: {e}");
        }
        let ports = eth_dev_ports();
        if ports.is_empty() {
            self.err.get_or_insert(dpdk_err(DpdkError::NoPorts));
        }
        for port in ports {
            self.cur = None;
            self.devs.push(DevSpec {
                src: DevSource::Dpdk { port, mtu },
                addrs: Vec::new(),
                impair: None,
                pcap: None,
            });
        }
        self
    }

    /// Set the TAP's MAC (default: derived from its first address, see [`mac_for`]).
    pub fn mac(mut self, mac: EthAddr) -> Self {
        if let Some(d) = self.last_dev("mac") {
            match &mut d.src {
                DevSource::Tap { mac: m, .. } => *m = Some(mac),
                _ => {
                    self.err.get_or_insert(GlueError::Config {
                        field: "mac".into(),
                        msg: "only a TAP's MAC is chosen here; a ready device has its own".into(),
                    });
                }
            }
        }
        self
    }

    /// Add an address (with its connected route) to the last device.
    pub fn addr(mut self, a: Ipv4Cidr) -> Self {
        if let Some(d) = self.last_dev("addr") {
            d.addrs.push(a);
        }
        self
    }

    /// Wrap the last device in seeded fault injection (both directions).
    pub fn impair(mut self, cfg: ImpairConfig) -> Self {
        if let Some(d) = self.last_dev("impair") {
            d.impair = Some(cfg);
        }
        self
    }

    /// Capture every frame of the last device into a pcap file.
    pub fn pcap(mut self, path: impl Into<PathBuf>) -> Self {
        let p = path.into();
        if let Some(d) = self.last_dev("pcap") {
            d.pcap = Some(p);
        }
        self
    }

    /// A route via a gateway; `0.0.0.0/0` is the default route.
    pub fn route(mut self, dst: Ipv4Cidr, gw: Ipv4Addr) -> Self {
        self.routes.push((dst, gw));
        self
    }

    /// An IPIP or GRE tunnel device (on every core), added after the devices and routes:
    /// its remote end must be reachable over them.
    pub fn tunnel(mut self, spec: TunnelSpec) -> Self {
        self.tunnels.push(spec);
        self
    }

    /// The default route.
    pub fn gateway(self, gw: Ipv4Addr) -> Self {
        self.route(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is valid"), gw)
    }

    /// A permanent neighbour entry (Linux: `ip neigh add IP lladdr MAC nud permanent`), on the
    /// device whose connected route covers `ip`.
    pub fn static_arp(mut self, ip: Ipv4Addr, mac: EthAddr) -> Self {
        self.static_arp.push((ip, mac));
        self
    }

    /// Buffers to allocate for a pool of the glue's own (ignored with [`GlueBuilder::pool`]).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// Use an existing pool (several instances in one process may share one).
    pub fn pool(mut self, pool: Mempool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Stack cores: [`GlueBuilder::build_cores`] makes one `Glue` per core, each with its
    /// own stack, device queue, timers, tables and counters. At most one per CPU this
    /// process may run on.
    pub fn cores(mut self, n: u16) -> Self {
        self.cores = n;
        self
    }

    /// The RSS key the cores hash flows with (default: the standard Microsoft key; 40 or 52
    /// bytes). It must be the key the device steers with: a wire made with the same
    /// `WireConfig::rss_key`, or the key programmed into the NIC.
    pub fn rss_key(mut self, key: &[u8]) -> Self {
        match Toeplitz::new(key) {
            Ok(t) => {
                self.toeplitz = t;
                self.rss_key = key.to_vec();
            }
            Err(e) => {
                self.err.get_or_insert(GlueError::Config {
                    field: "rss_key".into(),
                    msg: e.to_string(),
                });
            }
        }
        self
    }

    /// How frames reach their owner core (default: rss).
    pub fn mode(mut self, mode: Steering) -> Self {
        self.mode = mode;
        self
    }

    /// The time source (default: the monotonic clock; tests pass a virtual one).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn stack_config(mut self, cfg: StackConfig) -> Self {
        self.stack_cfg = cfg;
        self
    }

    pub fn tcp(mut self, cfg: TcpConfig) -> Self {
        self.tcp = cfg;
        self
    }

    /// UDP settings (receive buffer, checksum, ...).
    pub fn udp(mut self, cfg: UdpConfig) -> Self {
        self.udp = cfg;
        self
    }

    /// Raw socket settings.
    pub fn raw(mut self, cfg: RawConfig) -> Self {
        self.raw = cfg;
        self
    }

    /// Share the first device with the kernel (the exception path): frames the `rules` give
    /// the kernel go to `side`, which is polled with the devices, and what the kernel sends
    /// there leaves through the first device unchanged. A TAP side gets the first device's
    /// MAC and MTU (and takes the same IP address when the user configures it), one queue per
    /// core.
    pub fn to_kernel(mut self, rules: ExcRules, side: KernelSide) -> Self {
        self.exception = Some((rules, side));
        self
    }

    /// Give each kernel TAP of [`GlueBuilder::to_kernel`] the first address of the device it
    /// shares (default: off; the TAP is always brought up with the device's MAC and MTU). Off,
    /// the user addresses it, e.g. after moving it into a namespace.
    pub fn kernel_addr(mut self, on: bool) -> Self {
        self.kernel_addr = on;
        self
    }

    fn config(field: &str, msg: impl Into<String>) -> GlueError {
        GlueError::Config {
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// Build a single-core stack, open the devices and register the protocols.
    pub fn build<U>(self) -> Result<Glue<U>, GlueError> {
        if self.err.is_none() && self.cores != 1 {
            return Err(Self::config(
                "cores",
                format!("{} cores: use build_cores(), which makes one Glue per core", self.cores),
            ));
        }
        Ok(self.build_cores()?.pop().expect("one core"))
    }

    /// Build one `Glue` per core (core `i` at index `i`): each core gets its own stack on
    /// its own queue of every device (rss) or its ring from the poller (poller mode, the
    /// poller itself runs in core 0's `periodic`), the same addresses, routes and static
    /// neighbours, and TCP, UDP and raw registered. The cores share the buffer pool (each
    /// with its own cache) and their inboxes. Run them with [`crate::runtime::run_cores`],
    /// or poll them from threads of your own.
    pub fn build_cores<U>(self) -> Result<Vec<Glue<U>>, GlueError> {
        if let Some(e) = self.err {
            return Err(e);
        }
        let n = self.cores;
        if n == 0 {
            return Err(Self::config("cores", "must be at least 1"));
        }
        let cpus = allowed_cpus().len();
        if n as usize > cpus {
            return Err(Self::config(
                "cores",
                format!("{n} cores requested but this process may run on {cpus} CPU(s)"),
            ));
        }
        if self.devs.is_empty() {
            return Err(Self::config("device", "at least one device is required"));
        }
        #[cfg(feature = "dpdk")]
        let dpdk = self.devs.iter().any(|d| matches!(d.src, DevSource::Dpdk { .. }));
        let pool = match self.pool {
            Some(p) => p,
            None => {
                if self.pool_size == 0 {
                    return Err(Self::config("pool_size", "must be at least 1"));
                }
                let cfg = MempoolConfig {
                    name: "glue".into(),
                    n: self.pool_size,
                    ..Default::default()
                };
                // A DPDK port receives into rte_mbufs of a DPDK mempool.
                #[cfg(feature = "dpdk")]
                let p = if dpdk {
                    Mempool::new_dpdk(&cfg)
                } else {
                    Mempool::new(&cfg)
                };
                #[cfg(not(feature = "dpdk"))]
                let p = Mempool::new(&cfg);
                p.map_err(|e| Self::config("pool_size", e.to_string()))?
            }
        };
        #[cfg(feature = "dpdk")]
        if dpdk && pool.rte_mempool().is_null() {
            return Err(Self::config("pool", "DPDK ports need a DPDK pool (Mempool::new_dpdk)"));
        }
        #[allow(unused_mut)] // only DPDK ports have notes
        let mut notes: Vec<String> = Vec::new();
        let clock = self.clock.unwrap_or_else(Clock::monotonic);
        let set = Arc::new(CoreSet::new(n, INBOX_SIZE));
        let mut stacks = Vec::new();
        for cpu in 0..n {
            let mut cfg = self.stack_cfg.clone();
            // One gratuitous ARP per address, not one per core.
            cfg.arp_announce &= cpu == 0;
            let mut s = Stack::new(cpu, n, clock.clone(), &pool, cfg);
            s.core.toeplitz = self.toeplitz.clone();
            s.set_core_set(set.clone())
                .map_err(|e| Self::config("cores", e.to_string()))?;
            stacks.push(s);
        }
        // Each device's first address, for a kernel TAP that takes it (kernel_addr).
        let first_addrs: Vec<Option<Ipv4Cidr>> = self.devs.iter().map(|d| d.addrs.first().copied()).collect();
        let kernel_addr = self.kernel_addr;
        let kaddr = |port: u16| {
            first_addrs
                .get(port as usize)
                .copied()
                .flatten()
                .filter(|_| kernel_addr)
        };
        let mut pollers = Vec::new();
        let poller = self.mode == Steering::Poller;
        for spec in self.devs {
            let handles: Vec<Box<dyn NetDevice>> = match spec.src {
                DevSource::Ready(d) if n == 1 => vec![d],
                DevSource::Ready(d) => {
                    if !poller {
                        return Err(Self::config(
                            "device",
                            format!(
                                "{}: {n} cores in rss mode need one handle per queue (device_queues), or poller mode",
                                d.name()
                            ),
                        ));
                    }
                    vec![d]
                }
                DevSource::Queues(v) => v,
                DevSource::Tap { name, mac, mtu } => {
                    let mac = mac.unwrap_or_else(|| mac_for(spec.addrs.first().copied()));
                    let queues = if poller { 1 } else { n };
                    let tap = TapDev::open(&name, queues, mac, mtu, pool.cache()).map_err(|e| GlueError::Device {
                        name: name.clone(),
                        msg: e.to_string(),
                    })?;
                    if blink_netcore::drivers::tap::tap_kernel_side_up(&name) == Some(false) {
                        // Not an error (the kernel side may be brought up later), but nothing
                        // passes until it is: say so where the user is looking.
                        log::warn!("tap {name}: the kernel side is down, nothing passes until `ip link set {name} up`");
                    }
                    tap.into_queues()
                        .into_iter()
                        .map(|q| Box::new(q) as Box<dyn NetDevice>)
                        .collect()
                }
                #[cfg(feature = "dpdk")]
                DevSource::Dpdk { port, mtu } => {
                    use blink_netcore::drivers::dpdk::{DpdkConfig, DpdkDev};
                    let nb_queues = if poller { 1 } else { n };
                    let Ok(rss_key) = <[u8; 40]>::try_from(self.rss_key.as_slice()) else {
                        return Err(Self::config("rss_key", "a DPDK port is programmed with a 40-byte key"));
                    };
                    let cfg = DpdkConfig {
                        port,
                        nb_queues,
                        mtu,
                        rss_key,
                        ..Default::default()
                    };
                    let dev = DpdkDev::open(&cfg, &pool).map_err(dpdk_err)?;
                    notes.push(format!(
                        "dpdk: port {} ({}) mac {} link {}, {} queue(s); offloads: {}",
                        dev.port(),
                        dev.driver(),
                        dev.mac(),
                        if dev.link_up() { "up" } else { "down" },
                        nb_queues,
                        dev.offloads()
                    ));
                    dev.into_queues()
                        .into_iter()
                        .map(|q| Box::new(q) as Box<dyn NetDevice>)
                        .collect()
                }
            };
            let name = handles.first().map(|h| h.name().to_string()).unwrap_or_default();
            let want = if poller { 1 } else { n as usize };
            if handles.len() != want || handles.iter().any(|h| poller && h.nb_queues() != 1) {
                let field = if poller { "mode" } else { "cores" };
                let msg = if poller {
                    format!(
                        "poller mode drives a single-queue device as one; {name} has {} queue(s): use rss mode",
                        handles
                            .first()
                            .map(|h| h.nb_queues())
                            .unwrap_or(0)
                            .max(handles.len() as u16)
                    )
                } else {
                    format!("{n} cores in rss mode need {n} queues of {name}, got {}", handles.len())
                };
                return Err(Self::config(field, msg));
            }
            let handles: Vec<Box<dyn NetDevice>> = handles
                .into_iter()
                .enumerate()
                .map(|(q, dev)| match spec.impair {
                    Some(cfg) if !cfg.is_noop() => {
                        // Each queue its own seeded fault stream.
                        let cfg = ImpairConfig {
                            seed: cfg.seed.wrapping_add(q as u64),
                            ..cfg
                        };
                        Box::new(Impair::new(dev, cfg, clock.clone(), pool.cache())) as Box<dyn NetDevice>
                    }
                    _ => dev,
                })
                .collect();
            let handles: Vec<Box<dyn NetDevice>> = if poller {
                let phys = handles.into_iter().next().expect("one handle");
                let (p, devs) = Poller::new(phys, n, self.toeplitz.clone());
                pollers.push(p);
                devs.into_iter().map(|d| Box::new(d) as Box<dyn NetDevice>).collect()
            } else {
                handles
            };
            let pcap = match spec.pcap {
                Some(p) => Some(Arc::new(Mutex::new(
                    PcapDumper::create(&p).map_err(|e| Self::config("pcap", format!("{}: {e}", p.display())))?,
                ))),
                None => None,
            };
            for (cpu, dev) in handles.into_iter().enumerate() {
                let stack = &mut stacks[cpu];
                // Core i polls queue i of a multi-queue device; a poller lane is queue 0.
                let queue = if poller || n == 1 { 0 } else { cpu as u16 };
                let ifindex = stack.add_device(dev, queue);
                if let Some(p) = &pcap {
                    stack
                        .set_shared_pcap(ifindex, p.clone())
                        .map_err(|e| GlueError::Device {
                            name: name.clone(),
                            msg: e.to_string(),
                        })?;
                }
                for a in &spec.addrs {
                    stack
                        .add_addr(ifindex, *a)
                        .map_err(|e| Self::config("addr", e.to_string()))?;
                }
            }
        }
        if let Some((rules, side)) = self.exception {
            // Per core, the kernel sides of the shared ports: (device, its queue, ifindex).
            let mut per_core: Vec<KernelIf> = Vec::new();
            let mut add = |cpu: usize, dev: Box<dyn NetDevice>, q: u16, out: u16| {
                if cpu < per_core.len() {
                    per_core[cpu].add_port(dev, q, out);
                } else {
                    per_core.push(KernelIf::new(dev, q, out));
                }
            };
            match side {
                KernelSide::Tap(name) => {
                    for (cpu, (dev, q)) in open_kernel_tap(&stacks[0], 0, &name, n, &pool, kaddr(0))?
                        .into_iter()
                        .enumerate()
                    {
                        add(cpu, dev, q, 0);
                    }
                }
                KernelSide::Taps(names) => {
                    let ports = stacks[0].devs.len();
                    if names.len() != ports {
                        return Err(Self::config(
                            "kernel_if",
                            format!(
                                "{ports} device(s) need {ports} kernel interface name(s), got {}",
                                names.len()
                            ),
                        ));
                    }
                    for (port, name) in names.iter().enumerate() {
                        let port = port as u16;
                        for (cpu, (dev, q)) in open_kernel_tap(&stacks[0], port, name, n, &pool, kaddr(port))?
                            .into_iter()
                            .enumerate()
                        {
                            add(cpu, dev, q, port);
                        }
                    }
                }
                KernelSide::Devices(v) => {
                    if v.len() != n as usize {
                        return Err(Self::config(
                            "kernel_if",
                            format!("{n} cores need {n} kernel-side devices, got {}", v.len()),
                        ));
                    }
                    for (cpu, dev) in v.into_iter().enumerate() {
                        add(cpu, dev, 0, 0);
                    }
                }
            }
            for (stack, k) in stacks.iter_mut().zip(per_core) {
                stack.set_exception(rules.clone(), Box::new(k));
            }
        }
        for stack in &mut stacks {
            for &(dst, gw) in &self.routes {
                stack
                    .add_route(dst, gw)
                    .map_err(|e| Self::config("route", e.to_string()))?;
            }
            for (i, t) in self.tunnels.iter().enumerate() {
                ip_tunnel_add(stack, &t.kind.dev_name(i), t.parms(), t.addr).map_err(|e| match e {
                    blink_ipv4::Ipv4Error::Config { msg, .. } => Self::config("tunnel", msg),
                    e => Self::config("tunnel", e.to_string()),
                })?;
            }
            for &(ip, mac) in &self.static_arp {
                let dev = stack
                    .fib
                    .lookup(ip)
                    .filter(|r| r.gateway.is_none())
                    .map(|r| r.dev)
                    .ok_or_else(|| Self::config("static_arp", format!("{ip} is not on any connected network")))?;
                neigh_add_static(stack, ip, mac, dev);
            }
            blink_tcp::tcp_init(stack, self.tcp.clone());
            blink_udp::udp_init(stack, self.udp.clone());
            blink_raw::raw_init(stack, self.raw.clone());
        }
        let mut glues: Vec<Glue<U>> = stacks.into_iter().map(|s| Glue::from_parts(s, pool.clone())).collect();
        glues[0].pollers = pollers;
        glues[0].notes = notes;
        Ok(glues)
    }
}

/// A DPDK error as the builder reports it: bad EAL arguments or port setup the user chose are
/// configuration errors (field `dpdk`), the rest device errors.
#[cfg(feature = "dpdk")]
fn dpdk_err(e: blink_netcore::drivers::dpdk::DpdkError) -> GlueError {
    if e.is_usage() {
        GlueBuilder::config("dpdk", e.to_string())
    } else {
        GlueError::Device {
            name: "dpdk".into(),
            msg: e.to_string(),
        }
    }
}

/// Open the kernel's TAP `name` for ifindex `port` with one queue per core, give the kernel's
/// side that device's MAC and MTU and bring it up, and give it that device's first address when
/// `addr` is given (so one address serves blink and the kernel with no `ip` commands).
fn open_kernel_tap(
    stack: &Stack,
    port: u16,
    name: &str,
    cores: u16,
    pool: &Mempool,
    addr: Option<Ipv4Cidr>,
) -> Result<Vec<(Box<dyn NetDevice>, u16)>, GlueError> {
    let (mac, mtu) = {
        let d = &stack.devs[port as usize];
        (d.mac, d.mtu)
    };
    let tap = TapDev::open(name, cores, mac, mtu, pool.cache()).map_err(|e| GlueError::Device {
        name: name.to_string(),
        msg: e.to_string(),
    })?;
    if let Err(e) = blink_netcore::drivers::tap::tap_set_kernel_link(name, mac, mtu) {
        return Err(GlueError::Device {
            name: name.to_string(),
            msg: format!("cannot give the kernel's side blink's MAC {mac} and MTU {mtu}: {e}"),
        });
    }
    let derr = |what: String, e: std::io::Error| GlueError::Device {
        name: name.to_string(),
        msg: format!("cannot {what} the kernel's side: {e}"),
    };
    blink_netcore::drivers::tap::tap_set_kernel_up(name).map_err(|e| derr("bring up".into(), e))?;
    if let Some(a) = addr {
        blink_netcore::drivers::tap::tap_set_kernel_addr(name, a.addr, a.prefix_len)
            .map_err(|e| derr(format!("give {a} to"), e))?;
    }
    Ok(tap
        .into_queues()
        .into_iter()
        .enumerate()
        .map(|(q, t)| (Box::new(t) as Box<dyn NetDevice>, q as u16))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blink_netcore::drivers::wire::{wire_pair, WireConfig};

    fn dev() -> Box<dyn NetDevice> {
        let (a, _b) = wire_pair(
            ("a", "b"),
            (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
            &WireConfig::default(),
        );
        Box::new(a)
    }

    fn field(r: Result<Glue<()>, GlueError>) -> String {
        match r {
            Err(GlueError::Config { field, .. }) => field,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("built"),
        }
    }

    #[test]
    fn configuration_errors_name_the_field() {
        assert_eq!(field(GlueBuilder::new().build()), "device");
        assert_eq!(field(GlueBuilder::new().device(dev()).cores(2).build()), "cores");
        assert_eq!(field(GlueBuilder::new().device(dev()).cores(0).build()), "cores");
        assert_eq!(field(GlueBuilder::new().device(dev()).cores(4096).build()), "cores");
        assert_eq!(
            field(GlueBuilder::new().addr("10.0.0.1/24".parse().unwrap()).build()),
            "addr"
        );
        assert_eq!(
            field(
                GlueBuilder::new()
                    .device(dev())
                    .addr("10.0.0.1/24".parse().unwrap())
                    .gateway(Ipv4Addr::new(192, 168, 0, 1))
                    .build()
            ),
            "route"
        );
        assert_eq!(
            field(
                GlueBuilder::new()
                    .device(dev())
                    .addr("10.0.0.1/24".parse().unwrap())
                    .static_arp(Ipv4Addr::new(10, 9, 0, 1), EthAddr([2, 0, 0, 0, 0, 9]))
                    .build()
            ),
            "static_arp"
        );
        assert_eq!(
            field(GlueBuilder::new().device(dev()).mac(EthAddr([2; 6])).build()),
            "mac"
        );
    }

    #[test]
    fn static_arp_is_permanent() {
        let g: Glue<()> = GlueBuilder::new()
            .device(dev())
            .addr("10.0.0.1/24".parse().unwrap())
            .static_arp(Ipv4Addr::new(10, 0, 0, 2), EthAddr([2, 0, 0, 0, 0, 2]))
            .pool_size(256)
            .build()
            .unwrap();
        let n = g.stack().neigh.lookup(Ipv4Addr::new(10, 0, 0, 2)).expect("entry");
        assert_eq!(n.mac, EthAddr([2, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn mac_follows_address() {
        assert_eq!(
            mac_for(Some("10.200.1.2/24".parse().unwrap())),
            EthAddr([2, 0x62, 0x6c, 200, 1, 2])
        );
    }
}
