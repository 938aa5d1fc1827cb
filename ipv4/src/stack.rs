//! The per-core IPv4 stack: devices, addresses, routes, neighbours, the L4 protocol registry
//! and the timer wheel, all owned by one core and passed as `&mut Stack` down the packet path.
//!
//! Linux spreads this over `struct net` (the namespace: devices, fib, neighbour tables,
//! `inet_protos`) and per-CPU data (MIBs, timer bases). blink is shared-nothing, so each core
//! owns a complete `Stack` with its own device queues; cores meet only through their inboxes
//! ([`crate::inbox`]).

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blink_netcore::jiffies::Clock;
use blink_netcore::netdevice::{Burst, NetDevice, NetdevFeatures, BURST};
use blink_netcore::pcap::PcapDumper;
use blink_netcore::percpu::NetCore;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{DropReason, SoftnetMib};
use blink_netcore::timer::{run_timers, Timers};
use blink_netcore::{EthAddr, Mempool};

use crate::icmp::IcmpState;
use crate::inbox::{CoreMsg, CoreSet, INBOX_SIZE};
use crate::iphdr::Ipv4Cidr;
use crate::neighbour::NeighTable;
use crate::route::{Fib, FibRoute};
use crate::Ipv4Error;

/// A transport protocol's receive hooks (Linux: `struct net_protocol`, registered with
/// `inet_add_protocol`). IPv4 never names TCP, UDP or raw: they register here.
pub trait InetProtocol: Send {
    fn name(&self) -> &'static str;
    /// Linux: net_protocol.handler. `skb->data` is at the transport header.
    fn handler(&mut self, stack: &mut Stack, skb: SkBuff);
    /// Linux: net_protocol.err_handler. An ICMP error about a packet of this protocol;
    /// `inner` holds the quoted IP header and at least 8 bytes of the transport header.
    fn err_handler(&mut self, _stack: &mut Stack, _icmp_type: u8, _code: u8, _info: u32, _inner: &[u8]) {}
    /// Called after each receive burst has been processed (Linux: the end of a NAPI poll,
    /// where GRO flushes): per-burst work a protocol deferred, such as TCP's ACKs, which go
    /// out once per burst instead of once per pair of segments.
    fn flush(&mut self, _stack: &mut Stack) {}
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The raw-socket layer's receive hook (Linux: `raw_local_deliver()`, which
/// `ip_local_deliver_finish()` calls before the protocol handler). IPv4 never names the raw
/// crate: it registers here, as protocols do with `inet_add_protocol`.
pub trait RawDeliver: Send {
    /// Offer a locally delivered packet (`skb->data` at the IP header) to every raw socket
    /// of `protocol`; each match gets its own clone (shared buffers, no copy). True when at
    /// least one socket took it.
    fn raw_local_deliver(&mut self, stack: &mut Stack, skb: &SkBuff, protocol: u8) -> bool;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Stack-wide settings (Linux: the ipv4 sysctls).
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// net.ipv4.ip_default_ttl
    pub default_ttl: u8,
    /// net.ipv4.icmp_echo_ignore_broadcasts
    pub icmp_echo_ignore_broadcasts: bool,
    /// net.ipv4.icmp_msgs_per_sec / icmp_msgs_burst
    pub icmp_msgs_per_sec: u32,
    pub icmp_msgs_burst: u32,
    /// Send gratuitous ARP for each address when it is added.
    pub arp_announce: bool,
    /// net.ipv4.ipfrag_high_thresh / ipfrag_low_thresh: bytes of buffers (mbufs, counted
    /// whole) this core's reassembly queues may hold; past high, the oldest queues are
    /// evicted until below low.
    pub ipfrag_high_thresh: usize,
    pub ipfrag_low_thresh: usize,
    /// net.ipv4.ipfrag_time, in milliseconds (jiffies).
    pub ipfrag_time_ms: u64,
    /// net.ipv4.ipfrag_max_dist: fragments from one source that may arrive between two
    /// fragments of the same datagram before its queue is judged stale (0 disables).
    pub ipfrag_max_dist: u32,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            default_ttl: 64,
            icmp_echo_ignore_broadcasts: true,
            icmp_msgs_per_sec: 1000,
            icmp_msgs_burst: 50,
            arp_announce: true,
            ipfrag_high_thresh: 4 << 20,
            ipfrag_low_thresh: 3 << 20,
            ipfrag_time_ms: 30_000,
            ipfrag_max_dist: 64,
        }
    }
}

/// A pcap capture shared by the cores of one device: capturing is a debugging aid, so the
/// cores take turns on the one file (a lock per captured frame, only while capturing) and
/// Wireshark sees one trace.
pub type SharedPcap = Arc<Mutex<PcapDumper>>;

/// Inbox messages a poll handles at most, so a flood from other cores cannot starve the
/// device queue (Linux: netdev_budget for the backlog).
pub const INBOX_BUDGET: usize = 4 * BURST;

/// Buckets of IP ID counters per core (Linux: ip_idents, 2048 shared by all CPUs).
pub const IP_IDENTS: usize = 256;

/// Random counter starts (below 65,536 / `nb_cores`: see `Stack::next_ip_id`).
fn ip_idents_init(nb_cores: u16) -> Box<[u16; IP_IDENTS]> {
    let mut v = Box::new([0u16; IP_IDENTS]);
    let m = 0x1_0000 / nb_cores as u64;
    let mut r = random_u64();
    for (i, k) in v.iter_mut().enumerate() {
        if i % 4 == 0 {
            r = r.rotate_left(17).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ i as u64;
        }
        *k = ((r >> (16 * (i % 4))) as u16 as u64 % m) as u16;
    }
    v
}

/// 64 random bits from the standard library's per-process random hash keys (no extra
/// dependency; the keys come from the OS's random source).
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x6970_6964u32)
}

/// One device as the stack sees it (Linux: `struct net_device` + `struct in_device`).
pub struct NetDev {
    pub ifindex: u16,
    pub dev: Box<dyn NetDevice>,
    pub mac: EthAddr,
    pub mtu: usize,
    /// The device's offloads, read once when it is attached (Linux: dev->features): the
    /// send paths ask for every packet, and a device does not change them while attached.
    pub features: NetdevFeatures,
    /// IPv4 addresses on the device (Linux: in_device->ifa_list). Private: only
    /// `Stack::add_addr` changes them, so the stack's flat address lists cannot drift.
    addrs: Vec<Ipv4Cidr>,
    /// The queue this core polls and transmits on.
    pub queue: u16,
    /// Frames waiting for the next `tx_burst` (flushed at the end of each poll or when full).
    pub(crate) txq: Burst,
    pub pcap: Option<SharedPcap>,
    /// Received frames are re-hashed in software and forwarded to their owner core when
    /// this core is not it: several cores, and a device whose queue choice is not blink's
    /// Toeplitz (no `RSS_QUEUES`). Linux: RPS (`get_rps_cpu`).
    pub rps: bool,
    /// Set when the device is an IPIP/GRE tunnel: IP output encapsulates instead of
    /// resolving a neighbour.
    pub tunnel: Option<crate::ip_tunnel::Tunnel>,
}

impl NetDev {
    pub fn name(&self) -> &str {
        self.dev.name()
    }

    /// The device's IPv4 addresses, in the order they were added (the first is the
    /// device's primary address, Linux's `inet_select_addr` default).
    pub fn addrs(&self) -> &[Ipv4Cidr] {
        &self.addrs
    }
}

/// A registered transport protocol and the `TypeId` of its concrete type.
type ProtoSlot = Option<(Box<dyn InetProtocol>, TypeId)>;

/// One core's IPv4 stack.
pub struct Stack {
    pub core: NetCore,
    /// The jiffy of the last `flush_deferred` of the core's buffer cache (see `poll`).
    deferred_flushed_at: u64,
    pub timers: Timers<Stack>,
    pub devs: Vec<NetDev>,
    pub fib: Fib,
    pub neigh: NeighTable,
    pub icmp: IcmpState,
    pub cfg: StackConfig,
    /// This core's IP reassembly queues (Linux: the netns `fqdir` of ipv4).
    pub frags: crate::ip_defrag::IpFrags,
    /// Handlers by protocol number, each with the `TypeId` of its concrete type (recorded at
    /// registration, so `with_protocol_as` reaches the concrete protocol without a virtual
    /// `as_any_mut` + `type_id` pair on every user call). A fixed array, one slot per
    /// protocol number: a u8 indexes it with no bounds check (a datagram goes through it
    /// three or four times: the demux, and each user call on its sockets).
    protos: Box<[ProtoSlot; 256]>,
    /// Numbers of the registered protocols, for the per-burst flush.
    proto_nums: Vec<u8>,
    raw: Option<Box<dyn RawDeliver>>,
    /// The exception path's rules (None: everything is blink's, one test per frame) and the
    /// kernel's side, set together by [`Stack::set_exception`].
    pub(crate) exc_rules: Option<Box<crate::ip_exception::ExcRules>>,
    exc_hook: Option<Box<dyn crate::ip_exception::ExceptionPath>>,
    /// Every core's inbox (this one's included), shared by the cores of this instance.
    pub cores: Arc<CoreSet>,
    /// Packets to go through `ip_rcv` again on this core once the current one is done:
    /// decapsulated tunnel packets (Linux: the per-CPU backlog `netif_rx` fills).
    pub backlog: blink_netcore::skbuff::SkBuffHead,
    /// Application messages that arrived in the inbox, for glue to hand over.
    pub app_msgs: VecDeque<Box<dyn Any + Send>>,
    /// IP ID counters for datagrams without a socket counter (Linux: ip_idents), one per
    /// bucket of destinations, and the random key that spreads destinations over them.
    ip_idents: Box<[u16; IP_IDENTS]>,
    ip_idents_key: u32,
    /// Wall-clock time at clock zero, for pcap timestamps.
    epoch: Duration,
    /// Every device's addresses, and the directed broadcasts of their subnets, as flat lists
    /// kept by `add_addr` (Linux: the local table's RTN_LOCAL / RTN_BROADCAST entries).
    /// Asked several times per packet (ip_rcv, UDP's source choice, ip_finish_output2):
    /// a scan of a few words instead of walking each device's prefixes.
    local_addrs: Vec<Ipv4Addr>,
    bcast_addrs: Vec<Ipv4Addr>,
}

impl Stack {
    /// A stack for core `cpu` of `nb_cores`, with buffers from `pool` and time from `clock`.
    pub fn new(cpu: u16, nb_cores: u16, clock: Clock, pool: &Mempool, cfg: StackConfig) -> Stack {
        let core = NetCore::new(cpu, nb_cores, clock, pool);
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(Duration::from_nanos(core.now_ns));
        let icmp = IcmpState::new(&cfg, core.now_ns);
        Stack {
            deferred_flushed_at: core.jiffies,
            timers: Timers::new(core.jiffies),
            core,
            devs: Vec::new(),
            fib: Fib::default(),
            neigh: NeighTable::default(),
            icmp,
            cfg,
            frags: crate::ip_defrag::IpFrags::default(),
            protos: Box::new(std::array::from_fn(|_| None)),
            proto_nums: Vec::new(),
            raw: None,
            exc_rules: None,
            exc_hook: None,
            cores: Arc::new(CoreSet::new(nb_cores, INBOX_SIZE)),
            backlog: blink_netcore::skbuff::SkBuffHead::new(),
            app_msgs: VecDeque::new(),
            ip_idents: ip_idents_init(nb_cores.max(1)),
            ip_idents_key: random_u64() as u32,
            epoch,
            local_addrs: Vec::new(),
            bcast_addrs: Vec::new(),
        }
    }

    /// Attach a device handle that this core drives on `queue`; returns its ifindex. With
    /// several cores every core attaches its own handle of the same device, in the same
    /// order, so an ifindex means the same device on every core.
    pub fn add_device(&mut self, dev: Box<dyn NetDevice>, queue: u16) -> u16 {
        let ifindex = self.devs.len() as u16;
        let rps = self.needs_rps(dev.as_ref());
        self.devs.push(NetDev {
            ifindex,
            mac: dev.mac(),
            mtu: dev.mtu(),
            features: dev.features(),
            dev,
            addrs: Vec::new(),
            queue,
            txq: Burst::new(),
            pcap: None,
            rps,
            tunnel: None,
        });
        // Linux: a NETDEV_* event flushes the route cache (rt_cache_flush).
        self.fib.rt_genid_bump();
        ifindex
    }

    /// Join the cores of one instance: `set` holds every core's inbox (this core is
    /// `self.core.cpu` in it). Call before adding devices.
    pub fn set_core_set(&mut self, set: Arc<CoreSet>) -> Result<(), Ipv4Error> {
        if set.nb_cores() != self.core.reta.nb_queues() || self.core.cpu >= set.nb_cores() {
            return Err(Ipv4Error::Config {
                field: "cores".into(),
                msg: format!(
                    "core {} of {} cannot join a set of {} inboxes",
                    self.core.cpu,
                    self.core.reta.nb_queues(),
                    set.nb_cores()
                ),
            });
        }
        self.cores = set;
        for i in 0..self.devs.len() {
            self.devs[i].rps = self.needs_rps(self.devs[i].dev.as_ref());
        }
        Ok(())
    }

    /// Whether frames from `dev` need software steering here: several cores, and a queue
    /// choice that is not blink's Toeplitz (see `NetDev::rps`).
    fn needs_rps(&self, dev: &dyn NetDevice) -> bool {
        self.cores.nb_cores() > 1 && !dev.features().has(NetdevFeatures::RSS_QUEUES)
    }

    /// Number of cores of this instance.
    pub fn nb_cores(&self) -> u16 {
        self.cores.nb_cores()
    }

    /// Capture every frame the device receives or sends into a pcap file.
    pub fn set_pcap(&mut self, ifindex: u16, dumper: PcapDumper) -> Result<(), Ipv4Error> {
        self.set_shared_pcap(ifindex, Arc::new(Mutex::new(dumper)))
    }

    /// Capture into a file shared with the other cores of the device.
    pub fn set_shared_pcap(&mut self, ifindex: u16, pcap: SharedPcap) -> Result<(), Ipv4Error> {
        let d = self
            .devs
            .get_mut(ifindex as usize)
            .ok_or(Ipv4Error::NoDevice(ifindex))?;
        d.pcap = Some(pcap);
        Ok(())
    }

    /// Send `msg` to core `cpu`'s inbox. A full inbox drops it, counted (`RingDrops`; frames
    /// also as `Drop.RingFull`), and says so.
    pub fn post_to_core(&mut self, cpu: u16, msg: CoreMsg) -> bool {
        match self.cores.post(cpu, msg) {
            Ok(()) => true,
            Err(m) => {
                self.core.mib.softnet.inc(SoftnetMib::RingDrops);
                if let CoreMsg::Frame { skb, .. } | CoreMsg::Reinject(skb) | CoreMsg::LocalDeliver(skb) = m {
                    self.core.mib.kfree_skb_reason(skb, DropReason::RingFull);
                }
                false
            }
        }
    }

    /// Handle what other cores sent (at most [`INBOX_BUDGET`] messages); returns the frames
    /// among them.
    fn process_inbox(&mut self) -> usize {
        let cpu = self.core.cpu;
        let mut frames = 0;
        for _ in 0..INBOX_BUDGET {
            // Borrowed per message, not cloned per poll: cloning the Arc would write its shared
            // count from every core on every poll.
            let Some(msg) = self.cores.inbox(cpu).dequeue() else {
                break;
            };
            match msg {
                CoreMsg::Frame { ifindex, skb } => {
                    self.core.mib.softnet.inc(SoftnetMib::ReceivedRps);
                    frames += 1;
                    if (ifindex as usize) < self.devs.len() {
                        crate::dev::netif_receive_skb(self, ifindex, skb);
                    } else {
                        self.core.mib.kfree_skb_reason(skb, DropReason::DevNotUp);
                    }
                }
                CoreMsg::Reinject(skb) => {
                    self.core.mib.softnet.inc(SoftnetMib::ReinjectReceived);
                    frames += 1;
                    if (skb.dev as usize) < self.devs.len() {
                        crate::ip_input::ip_rcv(self, skb);
                    } else {
                        self.core.mib.kfree_skb_reason(skb, DropReason::DevNotUp);
                    }
                }
                CoreMsg::LocalDeliver(skb) => {
                    self.core.mib.softnet.inc(SoftnetMib::ReinjectReceived);
                    frames += 1;
                    if (skb.dev as usize) < self.devs.len() {
                        crate::ip_input::ip_local_deliver_finish(self, skb);
                    } else {
                        self.core.mib.kfree_skb_reason(skb, DropReason::DevNotUp);
                    }
                }
                CoreMsg::Neigh { ip, mac, dev, create } => {
                    self.core.mib.softnet.inc(SoftnetMib::NeighReceived);
                    if (dev as usize) < self.devs.len() {
                        crate::neighbour::neigh_update(self, ip, mac, dev, create);
                    }
                }
                CoreMsg::App(m) => {
                    self.core.mib.softnet.inc(SoftnetMib::AppMsgsReceived);
                    self.app_msgs.push_back(m);
                }
            }
        }
        self.process_backlog();
        if frames > 0 {
            self.flush_protocols();
        }
        frames
    }

    /// Linux: process_backlog(). Run what tunnel decapsulation queued here through `ip_rcv`;
    /// a packet nested deeper queues its inner packet again, handled in the same call.
    #[inline]
    pub fn process_backlog(&mut self) {
        if !self.backlog.is_empty() {
            self.process_backlog_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn process_backlog_slow(&mut self) {
        while let Some(skb) = self.backlog.skb_dequeue() {
            if (skb.dev as usize) < self.devs.len() {
                crate::ip_input::ip_rcv(self, skb);
            } else {
                self.core.mib.kfree_skb_reason(skb, DropReason::DevNotUp);
            }
        }
    }

    /// Add an address to a device with its connected route (Linux: `ip addr add`), and
    /// announce it with a gratuitous ARP.
    pub fn add_addr(&mut self, ifindex: u16, addr: Ipv4Cidr) -> Result<(), Ipv4Error> {
        let d = self
            .devs
            .get_mut(ifindex as usize)
            .ok_or(Ipv4Error::NoDevice(ifindex))?;
        if addr.addr.is_unspecified() || addr.addr.is_broadcast() || addr.addr.is_multicast() {
            return Err(Ipv4Error::Config {
                field: "ip".into(),
                msg: format!("{} cannot be a host address", addr.addr),
            });
        }
        d.addrs.push(addr);
        self.local_addrs.push(addr.addr);
        if addr.prefix_len < 31 {
            self.bcast_addrs.push(addr.broadcast());
        }
        self.fib.add(FibRoute {
            dst: Ipv4Cidr::new(addr.network(), addr.prefix_len).expect("prefix already valid"),
            gateway: None,
            dev: ifindex,
            prefsrc: addr.addr,
        });
        if self.cfg.arp_announce && self.devs[ifindex as usize].tunnel.is_none() {
            crate::arp::arp_announce(self, ifindex, addr.addr);
        }
        Ok(())
    }

    /// Add a route via a gateway (Linux: `ip route add DST via GW`); `0.0.0.0/0` is the
    /// default route. The gateway must be reachable on a connected route.
    pub fn add_route(&mut self, dst: Ipv4Cidr, gateway: Ipv4Addr) -> Result<(), Ipv4Error> {
        let conn = self
            .fib
            .lookup(gateway)
            .filter(|r| r.gateway.is_none())
            .cloned()
            .ok_or_else(|| Ipv4Error::Config {
                field: "gw".into(),
                msg: format!("gateway {gateway} is not on any connected network"),
            })?;
        self.fib.add(FibRoute {
            dst: Ipv4Cidr::new(dst.network(), dst.prefix_len).expect("prefix already valid"),
            gateway: Some(gateway),
            dev: conn.dev,
            prefsrc: conn.prefsrc,
        });
        Ok(())
    }

    /// Linux: inet_add_protocol().
    pub fn inet_add_protocol<P: InetProtocol + 'static>(
        &mut self,
        proto: u8,
        handler: Box<P>,
    ) -> Result<(), Ipv4Error> {
        let slot = &mut self.protos[proto as usize];
        if slot.is_some() {
            return Err(Ipv4Error::ProtocolTaken(proto));
        }
        *slot = Some((handler, TypeId::of::<P>()));
        self.proto_nums.push(proto);
        Ok(())
    }

    pub fn has_protocol(&self, proto: u8) -> bool {
        self.protos[proto as usize].is_some()
    }

    /// Run `f` with the protocol registered for `proto` and the stack, both mutable. The
    /// handler is taken out of its slot for the call, so it may use every part of the stack.
    #[inline(always)]
    pub fn with_protocol<R>(&mut self, proto: u8, f: impl FnOnce(&mut Stack, &mut dyn InetProtocol) -> R) -> Option<R> {
        let (mut h, ty) = self.protos[proto as usize].take()?;
        let r = f(self, h.as_mut());
        self.protos[proto as usize] = Some((h, ty));
        Some(r)
    }

    /// `with_protocol` for a protocol of concrete type `P` (what `tcp`, `udp` and their users
    /// call on every socket operation): None when nothing, or something else, is registered
    /// for `proto`.
    #[inline(always)]
    pub fn with_protocol_as<P: InetProtocol + 'static, R>(
        &mut self,
        proto: u8,
        f: impl FnOnce(&mut Stack, &mut P) -> R,
    ) -> Option<R> {
        let slot = &mut self.protos[proto as usize];
        if slot.as_ref()?.1 != TypeId::of::<P>() {
            return None;
        }
        let (mut h, ty) = slot.take()?;
        let p: *mut dyn InetProtocol = h.as_mut();
        // SAFETY: the slot's TypeId was recorded from the concrete type of this very box when
        // it was registered (`inet_add_protocol::<P>`) and equals `P`'s, so the trait object's
        // data pointer points at a `P` (what `Any::downcast_mut` checks the same way).
        let r = f(self, unsafe { &mut *(p as *mut P) });
        self.protos[proto as usize] = Some((h, ty));
        Some(r)
    }

    /// Install the raw-socket receive hook; returns the one it replaces.
    pub fn set_raw_handler(&mut self, h: Box<dyn RawDeliver>) -> Option<Box<dyn RawDeliver>> {
        self.raw.replace(h)
    }

    pub fn has_raw_handler(&self) -> bool {
        self.raw.is_some()
    }

    /// Run `f` with the raw hook and the stack, both mutable (taken out for the call, like
    /// `with_protocol`).
    pub fn with_raw<R>(&mut self, f: impl FnOnce(&mut Stack, &mut dyn RawDeliver) -> R) -> Option<R> {
        let mut h = self.raw.take()?;
        let r = f(self, h.as_mut());
        self.raw = Some(h);
        Some(r)
    }

    /// Share this core's device with the kernel: frames the `rules` give it go to `hook`
    /// (see [`crate::ip_exception`]), and `hook` is polled with the devices.
    pub fn set_exception(
        &mut self,
        rules: crate::ip_exception::ExcRules,
        hook: Box<dyn crate::ip_exception::ExceptionPath>,
    ) {
        self.exc_rules = Some(Box::new(rules));
        self.exc_hook = Some(hook);
    }

    /// The exception path's rules, when one is set.
    pub fn exception_rules(&self) -> Option<&crate::ip_exception::ExcRules> {
        self.exc_rules.as_deref()
    }

    /// True when a kernel side is attached (and not taken out for a call).
    pub fn has_exception_hook(&self) -> bool {
        self.exc_hook.is_some()
    }

    /// Run `f` with the exception hook and the stack, both mutable (taken out for the call,
    /// like `with_protocol`; the hook only transmits while out, so nothing is handed to the
    /// kernel meanwhile).
    pub fn with_exception<R>(
        &mut self,
        f: impl FnOnce(&mut Stack, &mut dyn crate::ip_exception::ExceptionPath) -> R,
    ) -> Option<R> {
        let mut h = self.exc_hook.take()?;
        let r = f(self, h.as_mut());
        self.exc_hook = Some(h);
        Some(r)
    }

    /// Next IP identification of a datagram to `dst` that may be fragmented (Linux:
    /// __ip_select_ident over ip_idents). Destinations share [`IP_IDENTS`] counters by a keyed
    /// hash, so the IDs seen at one destination do not count the datagrams sent to others
    /// (the "idle scan"). The receiver reassembles by (source, destination, id, protocol), so
    /// two cores sending fragmented datagrams to one host must not hand out the same id at
    /// the same time: core `c` of `n` hands out only `k * n + c` for `k` below 65,536 / n,
    /// so no two cores ever share an ID (each bucket counts `k` round that cycle).
    pub(crate) fn next_ip_id(&mut self, dst: Ipv4Addr, protocol: u8) -> u16 {
        let n = self.cores.nb_cores().max(1) as u32;
        let h = (u32::from(dst) ^ self.ip_idents_key ^ ((protocol as u32) << 8)).wrapping_mul(0x9E37_79B1);
        let k = &mut self.ip_idents[(h >> (32 - IP_IDENTS.trailing_zeros())) as usize];
        if n == 1 {
            // One core: the formula below with n = 1 (every 16-bit value in turn), without its
            // two divisions by a number the compiler cannot see.
            *k = k.wrapping_add(1);
            return *k;
        }
        let next = (*k as u32 + 1) % (0x1_0000 / n);
        *k = next as u16;
        (next * n + (self.core.cpu as u32 % n)) as u16
    }

    /// True if `ip` is one of our addresses (Linux: inet_addr_type() == RTN_LOCAL).
    #[inline]
    pub fn is_local_addr(&self, ip: Ipv4Addr) -> bool {
        self.local_addrs.contains(&ip)
    }

    /// True if `ip` is the limited broadcast or the directed broadcast of one of our subnets.
    #[inline]
    pub fn is_broadcast_addr(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast() || self.bcast_addrs.contains(&ip)
    }

    /// First address of a device (the source of ARP and ICMP it originates).
    pub fn dev_addr(&self, ifindex: u16) -> Option<Ipv4Addr> {
        self.devs
            .get(ifindex as usize)
            .and_then(|d| d.addrs.first())
            .map(|a| a.addr)
    }

    /// Pcap timestamp for "now".
    pub(crate) fn pcap_ts(&self) -> Duration {
        self.epoch + Duration::from_nanos(self.core.now_ns)
    }

    /// One pass of the poll loop (IPAugenblick's `app_glue_periodic` core): refresh time, run
    /// due timers, receive a burst from every device and process it to completion, then
    /// flush what was queued for transmit. Returns the number of frames received.
    pub fn poll(&mut self) -> usize {
        self.core.update_time();
        let now = self.core.jiffies;
        if now != self.deferred_flushed_at {
            // Other stacks' buffers freed here go home when a batch is full (as Linux's
            // per-cpu skb cache), and at least once a jiffy, so an idle core holds none long.
            self.deferred_flushed_at = now;
            self.core.cache.flush_deferred();
        }
        run_timers(self, |s| &mut s.timers, now);
        let mut rx = 0;
        if self.cores.nb_cores() > 1 {
            rx += self.process_inbox();
        }
        for i in 0..self.devs.len() {
            let mut burst = Burst::new();
            let q = self.devs[i].queue;
            let n = self.devs[i].dev.rx_burst(q, &mut burst);
            rx += n;
            self.core.mib.softnet.add(SoftnetMib::Processed, n as u64);
            let rps = self.devs[i].rps;
            // drain, not into_iter: moving the burst into an iterator copies its whole array.
            for skb in burst.drain(..) {
                if rps {
                    crate::dev::netif_receive_skb_rps(self, i as u16, skb);
                } else {
                    crate::dev::netif_receive_skb(self, i as u16, skb);
                }
            }
            if n > 0 {
                self.process_backlog();
                self.flush_protocols();
            }
        }
        if self.exc_hook.is_some() {
            rx += self.with_exception(|s, h| h.poll(s)).unwrap_or(0);
        }
        self.flush_tx();
        rx
    }

    /// Run every protocol's end-of-burst work (`InetProtocol::flush`). `poll` calls it after
    /// each receive burst; a loop that feeds `netif_receive_skb` itself should call it after
    /// each batch.
    pub fn flush_protocols(&mut self) {
        for i in 0..self.proto_nums.len() {
            let p = self.proto_nums[i];
            self.with_protocol(p, |s, h| h.flush(s));
        }
    }

    /// Hand every queued frame to its device (`dev_queue_xmit`'s deferred half). Frames the
    /// device refuses stay queued for the next poll.
    pub fn flush_tx(&mut self) {
        for d in &mut self.devs {
            if !d.txq.is_empty() {
                let q = d.queue;
                d.dev.tx_burst(q, &mut d.txq);
            }
        }
    }

    /// Buffers of the stack's pool currently in use (for leak checks).
    pub fn pool_in_use(&self) -> usize {
        self.core.cache.pool().in_use()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for d in &mut self.devs {
            if let Some(p) = d.pcap.as_ref() {
                if let Ok(mut p) = p.lock() {
                    let _ = p.flush();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blink_netcore::jiffies::VirtualClock;
    use blink_netcore::MempoolConfig;

    fn stack(cpu: u16, nb_cores: u16) -> Stack {
        let pool = Mempool::new(&MempoolConfig {
            name: format!("ipid{cpu}"),
            n: 64,
            ..Default::default()
        })
        .expect("pool");
        let clock = VirtualClock::new();
        Stack::new(
            cpu,
            nb_cores,
            Clock::virtual_clock(&clock),
            &pool,
            StackConfig::default(),
        )
    }

    /// The ID after `id` on a core of `n`: `n` more, cycling below 65,536 / n * n.
    fn step(id: u16, n: u16) -> u16 {
        let m = (0x1_0000 / n as u32) * n as u32;
        ((id as u32 + n as u32) % m) as u16
    }

    /// Datagrams to one destination step its bucket only: what is sent elsewhere does not show
    /// in its IDs (no global counter to sample), and each core keeps its residue class.
    #[test]
    fn ip_ids_count_per_destination_bucket_and_core() {
        for (cpu, n) in [(0u16, 1u16), (1, 2), (2, 3)] {
            let mut s = stack(cpu, n);
            let a = Ipv4Addr::new(10, 0, 0, 1);
            let first = s.next_ip_id(a, 17);
            // Another destination in a different bucket.
            let b = (2..=255u8)
                .map(|i| Ipv4Addr::new(10, 0, 1, i))
                .find(|&b| {
                    let mut t = stack(cpu, n);
                    t.ip_idents_key = s.ip_idents_key;
                    let (x, y) = (t.next_ip_id(a, 17), t.next_ip_id(a, 17));
                    let _ = t.next_ip_id(b, 17);
                    t.next_ip_id(a, 17) == step(y, n) && step(x, n) == y
                })
                .expect("some destination hashes to another bucket");
            for _ in 0..10 {
                let id = s.next_ip_id(b, 17);
                assert_eq!(id % n, cpu % n, "core {cpu} of {n}: ID {id} out of its class");
            }
            assert_eq!(
                s.next_ip_id(a, 17),
                step(first, n),
                "ten datagrams to {b} moved {a}'s IDs"
            );
            assert_eq!(first % n, cpu % n);
        }
    }

    /// One core's shortcut (no divisions) runs through every 16-bit value and wraps to 0, as
    /// the general formula does with n = 1.
    #[test]
    fn one_core_ip_ids_wrap_as_the_formula_does() {
        let mut s = stack(0, 1);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        s.ip_idents.fill(0xfffe);
        assert_eq!(s.next_ip_id(a, 17), 0xffff);
        assert_eq!(s.next_ip_id(a, 17), 0);
        assert_eq!(s.next_ip_id(a, 17), 1);
    }
}
