//! Building a glue instance: devices, addresses, routes, static neighbours, the buffer pool,
//! clock and TCP, UDP and raw settings (IPAugenblick's `app_glue_init` plus its interface file).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use blink_ipv4::neighbour::neigh_add_static;
use blink_ipv4::{Ipv4Cidr, Stack, StackConfig};
use blink_netcore::drivers::impair::{Impair, ImpairConfig};
use blink_netcore::drivers::tap::TapDev;
use blink_netcore::jiffies::Clock;
use blink_netcore::netdevice::NetDevice;
use blink_netcore::pcap::PcapDumper;
use blink_netcore::{EthAddr, Mempool, MempoolConfig};
use blink_raw::RawConfig;
use blink_tcp::TcpConfig;
use blink_udp::UdpConfig;

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
    /// A Linux TAP opened at build time (its MAC follows the device's first address unless set).
    Tap {
        name: String,
        mac: Option<EthAddr>,
        mtu: usize,
    },
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
    routes: Vec<(Ipv4Cidr, Ipv4Addr)>,
    static_arp: Vec<(Ipv4Addr, EthAddr)>,
    pool: Option<Mempool>,
    pool_size: usize,
    cores: u16,
    clock: Option<Clock>,
    stack_cfg: StackConfig,
    tcp: TcpConfig,
    udp: UdpConfig,
    raw: RawConfig,
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
            routes: Vec::new(),
            static_arp: Vec::new(),
            pool: None,
            pool_size: DEFAULT_POOL_SIZE,
            cores: 1,
            clock: None,
            stack_cfg: StackConfig::default(),
            tcp: TcpConfig::default(),
            udp: UdpConfig::default(),
            raw: RawConfig::default(),
            err: None,
        }
    }

    /// Add a device made by the caller (e.g. one end of `wire_pair`).
    pub fn device(mut self, dev: Box<dyn NetDevice>) -> Self {
        self.devs.push(DevSpec {
            src: DevSource::Ready(dev),
            addrs: Vec::new(),
            impair: None,
            pcap: None,
        });
        self
    }

    /// Add a Linux TAP device `name` (created if missing; needs CAP_NET_ADMIN).
    pub fn tap(mut self, name: &str, mtu: usize) -> Self {
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
        self.devs.last_mut()
    }

    /// Set the TAP's MAC (default: derived from its first address, see [`mac_for`]).
    pub fn mac(mut self, mac: EthAddr) -> Self {
        if let Some(d) = self.last_dev("mac") {
            match &mut d.src {
                DevSource::Tap { mac: m, .. } => *m = Some(mac),
                DevSource::Ready(_) => {
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

    /// Stack cores. Each core will own one `Glue`; the multi-core runtime is not here yet, so
    /// only 1 is accepted.
    pub fn cores(mut self, n: u16) -> Self {
        self.cores = n;
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

    fn config(field: &str, msg: impl Into<String>) -> GlueError {
        GlueError::Config {
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// Build the stack, open the devices and register the protocols.
    pub fn build<U>(self) -> Result<Glue<U>, GlueError> {
        if let Some(e) = self.err {
            return Err(e);
        }
        if self.cores != 1 {
            return Err(Self::config(
                "cores",
                format!(
                    "{} requested; the multi-core runtime is not available yet, use 1",
                    self.cores
                ),
            ));
        }
        if self.devs.is_empty() {
            return Err(Self::config("device", "at least one device is required"));
        }
        let pool = match self.pool {
            Some(p) => p,
            None => {
                if self.pool_size == 0 {
                    return Err(Self::config("pool_size", "must be at least 1"));
                }
                Mempool::new(&MempoolConfig {
                    name: "glue".into(),
                    n: self.pool_size,
                    ..Default::default()
                })
                .map_err(|e| Self::config("pool_size", e.to_string()))?
            }
        };
        let clock = self.clock.unwrap_or_else(Clock::monotonic);
        let mut stack = Stack::new(0, 1, clock, &pool, self.stack_cfg);
        for spec in self.devs {
            let dev: Box<dyn NetDevice> = match spec.src {
                DevSource::Ready(d) => d,
                DevSource::Tap { name, mac, mtu } => {
                    let mac = mac.unwrap_or_else(|| mac_for(spec.addrs.first().copied()));
                    Box::new(
                        TapDev::open(&name, 1, mac, mtu, pool.cache()).map_err(|e| GlueError::Device {
                            name: name.clone(),
                            msg: e.to_string(),
                        })?,
                    )
                }
            };
            let dev: Box<dyn NetDevice> = match spec.impair {
                Some(cfg) if !cfg.is_noop() => Box::new(Impair::new(dev, cfg, stack.core.clock.clone(), pool.cache())),
                _ => dev,
            };
            let name = dev.name().to_string();
            let ifindex = stack.add_device(dev, 0);
            if let Some(p) = spec.pcap {
                let d = PcapDumper::create(&p).map_err(|e| Self::config("pcap", format!("{}: {e}", p.display())))?;
                stack.set_pcap(ifindex, d).map_err(|e| GlueError::Device {
                    name: name.clone(),
                    msg: e.to_string(),
                })?;
            }
            for a in spec.addrs {
                stack
                    .add_addr(ifindex, a)
                    .map_err(|e| Self::config("addr", e.to_string()))?;
            }
        }
        for (dst, gw) in self.routes {
            stack
                .add_route(dst, gw)
                .map_err(|e| Self::config("route", e.to_string()))?;
        }
        for (ip, mac) in self.static_arp {
            let dev = stack
                .fib
                .lookup(ip)
                .filter(|r| r.gateway.is_none())
                .map(|r| r.dev)
                .ok_or_else(|| Self::config("static_arp", format!("{ip} is not on any connected network")))?;
            neigh_add_static(&mut stack, ip, mac, dev);
        }
        blink_tcp::tcp_init(&mut stack, self.tcp);
        blink_udp::udp_init(&mut stack, self.udp);
        blink_raw::raw_init(&mut stack, self.raw);
        Ok(Glue::from_parts(stack, pool))
    }
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
