//! IPv4-in-IPv4 (RFC 2003) and GRE (RFC 2784, key from RFC 2890) tunnels. Linux:
//! net/ipv4/ipip.c, net/ipv4/ip_gre.c, net/ipv4/ip_tunnel.c (`ip_tunnel_rcv`,
//! `ip_tunnel_xmit`).
//!
//! A tunnel is a device, as Linux's `ipip0`/`gre0`: it has blink's inner address and a
//! connected route, so anything routed to the far side leaves through it. Its transmit
//! prepends the outer header (and the GRE header) and sends the packet again through IP
//! towards the remote end over the underlay ([`ip_tunnel_xmit`]).
//!
//! On receive, protocols 4 and 47 are registered with `inet_add_protocol` like any transport.
//! The handler finds the tunnel (remote = outer source, GRE key), strips the outer headers and
//! hands the inner packet back to `ip_rcv` — not by calling it (an IPIP packet inside an IPIP
//! packet would find protocol 4's slot empty while its handler runs) but through the core's
//! backlog, which the poll loop drains right after (Linux: `netif_rx` into the per-CPU
//! backlog, or gro_cells). Before that the inner packet is re-hashed on its own tuple: the
//! outer packet was steered by the tunnel endpoints' addresses, so every flow of a tunnel
//! arrives on one core; each inner flow continues on the core that owns it
//! (`Softnet.ReinjectLocal` / `ReinjectRemote`, as for reassembled datagrams).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blink_netcore::checksum::Csum;
use blink_netcore::netdevice::{Burst, DevStats, NetDevice};
use blink_netcore::skbuff::{IpSummed, PacketType, SkBuff};
use blink_netcore::snmp::{DropReason, SoftnetMib};
use blink_netcore::EthAddr;

use crate::inbox::CoreMsg;
use crate::ip_output::{ip_build_and_send_pkt, IpTx};
use crate::iphdr::{Ipv4Hdr, IPPROTO_GRE, IPPROTO_IPIP, IPV4_MIN_HLEN};
use crate::stack::{InetProtocol, Stack};
use crate::Ipv4Error;

/// GRE flag bits (first 16 bits of the header).
const GRE_CSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQ: u16 = 0x1000;
const GRE_VERSION: u16 = 0x0007;
/// GRE protocol type of an IPv4 payload (an EtherType).
const GRE_PROTO_IPV4: u16 = 0x0800;

/// Which encapsulation a tunnel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// IPv4 in IPv4, protocol 4.
    Ipip,
    /// GRE, protocol 47; with a key (RFC 2890) when set: packets must carry that key.
    Gre { key: Option<u32> },
}

impl TunnelKind {
    /// IP protocol number of the outer header.
    pub fn protocol(self) -> u8 {
        match self {
            TunnelKind::Ipip => IPPROTO_IPIP,
            TunnelKind::Gre { .. } => IPPROTO_GRE,
        }
    }

    /// Linux's device name for the `index`th tunnel of this kind: `ipip0`, `gre1`, ...
    pub fn dev_name(self, index: usize) -> String {
        match self {
            TunnelKind::Ipip => format!("ipip{index}"),
            TunnelKind::Gre { .. } => format!("gre{index}"),
        }
    }

    /// Bytes the encapsulation adds in front of the inner packet.
    pub fn overhead(self) -> usize {
        IPV4_MIN_HLEN
            + match self {
                TunnelKind::Ipip => 0,
                TunnelKind::Gre { key: None } => 4,
                TunnelKind::Gre { key: Some(_) } => 8,
            }
    }
}

/// A tunnel's configuration (Linux: `struct ip_tunnel_parm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelParms {
    pub kind: TunnelKind,
    /// The far end's underlay address.
    pub remote: Ipv4Addr,
    /// Our underlay address; None takes the route's preferred source towards `remote`.
    pub local: Option<Ipv4Addr>,
    /// Outer TTL.
    pub ttl: u8,
}

/// Packets and bytes through one tunnel on one core (what `ip -s link` shows for ipip0).
#[derive(Debug, Default)]
pub struct TunnelStats {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
}

/// The tunnel as the stack keeps it beside its device entry.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub parms: TunnelParms,
    /// Shared with the [`TunnelDev`] so the device's statistics show the traffic. Only this
    /// core writes them (relaxed atomics on a private cache line).
    pub stats: Arc<TunnelStats>,
}

/// The device side of a tunnel: it receives nothing by itself (packets come from the
/// protocol handler) and is never handed frames (IP output sends through
/// [`ip_tunnel_xmit`]); it names the tunnel and reports its statistics.
pub struct TunnelDev {
    name: String,
    mtu: usize,
    stats: Arc<TunnelStats>,
}

impl TunnelDev {
    pub fn new(name: &str, mtu: usize, stats: Arc<TunnelStats>) -> TunnelDev {
        TunnelDev {
            name: name.to_string(),
            mtu,
            stats,
        }
    }
}

impl NetDevice for TunnelDev {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> EthAddr {
        EthAddr([0; 6])
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn rx_burst(&mut self, _queue: u16, _out: &mut Burst) -> usize {
        0
    }

    fn tx_burst(&mut self, _queue: u16, pkts: &mut Burst) -> usize {
        // Unreachable by construction (see the type's comment); a frame that got here anyway
        // is dropped, and counted by the caller's queue accounting.
        let n = pkts.len();
        pkts.clear();
        n
    }

    fn stats(&self) -> DevStats {
        DevStats {
            rx_packets: self.stats.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.stats.rx_bytes.load(Ordering::Relaxed),
            tx_packets: self.stats.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.stats.tx_bytes.load(Ordering::Relaxed),
            ..Default::default()
        }
    }
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// The receive handler of one encapsulation (registered for protocol 4 or 47).
pub struct IpTunnelRcv {
    protocol: u8,
}

impl IpTunnelRcv {
    pub fn new(protocol: u8) -> IpTunnelRcv {
        IpTunnelRcv { protocol }
    }
}

/// Parsed GRE header: its length and key.
struct GreHdr {
    hlen: usize,
    key: Option<u32>,
}

/// Linux: gre_parse_header(). None (with the drop reason) when the header is malformed,
/// carries something other than IPv4, or fails its checksum.
fn gre_parse_header(skb: &mut SkBuff) -> Result<GreHdr, DropReason> {
    if !skb.pskb_may_pull(4) {
        return Err(DropReason::PktTooSmall);
    }
    let (flags, proto) = {
        let d = skb.data();
        (u16::from_be_bytes([d[0], d[1]]), u16::from_be_bytes([d[2], d[3]]))
    };
    // Version 0 only (1 is PPTP's enhanced GRE); source routing is deprecated (RFC 2784).
    if flags & (GRE_VERSION | GRE_ROUTING) != 0 {
        return Err(DropReason::TunnelHdr);
    }
    let mut hlen = 4;
    let csum_at = (flags & GRE_CSUM != 0).then(|| {
        hlen += 4;
        4
    });
    let key_at = (flags & GRE_KEY != 0).then(|| {
        let at = hlen;
        hlen += 4;
        at
    });
    if flags & GRE_SEQ != 0 {
        hlen += 4;
    }
    if !skb.pskb_may_pull(hlen) {
        return Err(DropReason::PktTooSmall);
    }
    if proto != GRE_PROTO_IPV4 {
        return Err(DropReason::UnhandledProto);
    }
    if csum_at.is_some() {
        // The checksum covers the GRE header and payload.
        let mut c = Csum::new();
        for seg in skb.segments() {
            c.add(seg);
        }
        if c.finish() != 0 {
            return Err(DropReason::TunnelCsum);
        }
    }
    let key = key_at.map(|at| {
        let d = skb.data();
        u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
    });
    Ok(GreHdr { hlen, key })
}

impl InetProtocol for IpTunnelRcv {
    fn name(&self) -> &'static str {
        if self.protocol == IPPROTO_GRE {
            "gre"
        } else {
            "ipip"
        }
    }

    /// Linux: ipip_rcv() / gre_rcv() + ip_tunnel_rcv(). `skb->data` is at the inner IP header
    /// (IPIP) or the GRE header.
    fn handler(&mut self, stack: &mut Stack, mut skb: SkBuff) {
        let (src, dst) = {
            let h = Ipv4Hdr::new_unchecked(skb.skb_network_header());
            (h.src(), h.dst())
        };
        let key = if self.protocol == IPPROTO_GRE {
            match gre_parse_header(&mut skb) {
                Ok(g) => {
                    skb.skb_pull(g.hlen);
                    Some(g.key)
                }
                Err(r) => {
                    stack.core.kfree_skb_reason(skb, r);
                    return;
                }
            }
        } else {
            None
        };
        // Linux: ip_tunnel_lookup(). The tunnel whose far end sent this, to our address.
        let found = stack.devs.iter().find_map(|d| {
            let t = d.tunnel.as_ref()?;
            let p = &t.parms;
            let kind_ok = match (p.kind, key) {
                (TunnelKind::Ipip, None) => true,
                (TunnelKind::Gre { key: k }, Some(got)) => k == got,
                _ => false,
            };
            (kind_ok && p.remote == src && p.local.is_none_or(|l| l == dst)).then(|| (d.ifindex, t.stats.clone()))
        });
        let Some((ifindex, stats)) = found else {
            stack.core.kfree_skb_reason(skb, DropReason::TunnelNoMatch);
            return;
        };
        bump(&stats.rx_packets, 1);
        bump(&stats.rx_bytes, skb.len() as u64);
        ip_tunnel_rcv(stack, skb, ifindex);
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// The inner packet (`skb->data` at its IP header) enters IP again as received on tunnel
/// `ifindex`, on the core that owns its flow.
fn ip_tunnel_rcv(stack: &mut Stack, mut skb: SkBuff, ifindex: u16) {
    skb.dev = ifindex;
    skb.skb_reset_network_header();
    skb.pkt_type = PacketType::Host;
    // The device vouched for the outer packet at most.
    skb.ip_summed = IpSummed::None;
    skb.hash_type = blink_netcore::rss::RssHashType::None;
    // Not IPv4, or too short: this core, where ip_rcv will count what is wrong with it.
    let owner = crate::ip_defrag::ip_flow_owner(stack, &mut skb);
    if owner == stack.core.cpu {
        stack.core.mib.softnet.inc(SoftnetMib::ReinjectLocal);
        stack.backlog.skb_queue_tail(skb);
    } else if stack.post_to_core(owner, CoreMsg::Reinject(skb)) {
        stack.core.mib.softnet.inc(SoftnetMib::ReinjectRemote);
    }
}

/// Linux: ip_tunnel_xmit(). `skb->data` is at a complete inner IP header, routed to tunnel
/// `ifindex`: add the GRE header (if GRE) and the outer IP header, and send it to the remote
/// end over the underlay. The outer header copies the inner TOS and DF (Linux's default
/// `pmtudisc`); the tunnel's MTU already left room for the encapsulation.
pub fn ip_tunnel_xmit(stack: &mut Stack, mut skb: SkBuff, ifindex: u16) {
    let Some(t) = stack.devs.get(ifindex as usize).and_then(|d| d.tunnel.clone()) else {
        stack.core.kfree_skb_reason(skb, DropReason::DevNotUp);
        return;
    };
    let p = t.parms;
    // A remote reached through the tunnel itself would loop forever (Linux: "recursion").
    if stack.fib.lookup(p.remote).is_none_or(|r| r.dev == ifindex) {
        stack.core.kfree_skb_reason(skb, DropReason::IpOutNoRoutes);
        return;
    }
    let (tos, df) = {
        let h = Ipv4Hdr::new_unchecked(skb.data());
        (h.tos(), h.dont_frag())
    };
    let inner_len = skb.len() as u64;
    if let TunnelKind::Gre { key } = p.kind {
        let hlen = if key.is_some() { 8 } else { 4 };
        let Some(h) = skb.skb_push(hlen) else {
            stack.core.kfree_skb_reason(skb, DropReason::NoMem);
            return;
        };
        let flags = if key.is_some() { GRE_KEY } else { 0 };
        h[0..2].copy_from_slice(&flags.to_be_bytes());
        h[2..4].copy_from_slice(&GRE_PROTO_IPV4.to_be_bytes());
        if let Some(k) = key {
            h[4..8].copy_from_slice(&k.to_be_bytes());
        }
    }
    let tx = IpTx {
        src: p.local,
        dst: p.remote,
        protocol: p.kind.protocol(),
        ttl: Some(p.ttl),
        tos,
        df,
        // Linux: iptunnel_xmit takes the counter even with DF (the outer ID is all a middlebox
        // has to tell encapsulated packets apart).
        id: Some(stack.next_ip_id(p.remote, p.kind.protocol())),
    };
    if ip_build_and_send_pkt(stack, skb, tx).is_ok() {
        bump(&t.stats.tx_packets, 1);
        bump(&t.stats.tx_bytes, inner_len);
    }
}

/// Add a tunnel device named `name` with blink's inner address `addr` (Linux: `ip tunnel
/// add` + `ip addr add`). The underlay must already route to the remote end; the tunnel's
/// MTU is that route's device MTU less the encapsulation. Registers the protocol's receive
/// handler on first use. Returns the tunnel's ifindex.
pub fn ip_tunnel_add(
    stack: &mut Stack,
    name: &str,
    parms: TunnelParms,
    addr: crate::Ipv4Cidr,
) -> Result<u16, Ipv4Error> {
    let field = |msg: String| Ipv4Error::Config {
        field: "tunnel".into(),
        msg,
    };
    let under = stack
        .fib
        .lookup(parms.remote)
        .cloned()
        .ok_or_else(|| field(format!("no route to the remote end {}", parms.remote)))?;
    if stack.devs[under.dev as usize].tunnel.is_some() {
        return Err(field(format!(
            "the remote end {} is routed through a tunnel",
            parms.remote
        )));
    }
    if let Some(l) = parms.local {
        if !stack.is_local_addr(l) {
            return Err(field(format!("local address {l} is not one of ours")));
        }
    }
    if stack.devs.iter().any(|d| {
        d.tunnel
            .as_ref()
            .is_some_and(|t| t.parms.remote == parms.remote && t.parms.kind.protocol() == parms.kind.protocol())
    }) {
        return Err(field(format!("a tunnel of that kind to {} exists", parms.remote)));
    }
    let mtu = stack.devs[under.dev as usize].mtu.saturating_sub(parms.kind.overhead());
    if mtu < 68 {
        return Err(field(format!("underlay MTU leaves {mtu} bytes, less than IPv4's 68")));
    }
    let stats = Arc::new(TunnelStats::default());
    let ifindex = stack.add_device(Box::new(TunnelDev::new(name, mtu, stats.clone())), 0);
    stack.devs[ifindex as usize].tunnel = Some(Tunnel { parms, stats });
    // A device that changes kind changes how routes through it transmit.
    stack.fib.rt_genid_bump();
    // Tunnel devices have no link layer: nothing to resolve, nothing to steer.
    stack.devs[ifindex as usize].rps = false;
    stack.add_addr(ifindex, addr)?;
    let proto = parms.kind.protocol();
    if !stack.has_protocol(proto) {
        stack.inet_add_protocol(proto, Box::new(IpTunnelRcv::new(proto)))?;
    }
    Ok(ifindex)
}

/// A tunnel as the command line names it: `ipip:REMOTE:ADDR/LEN` or
/// `gre:REMOTE:ADDR/LEN[,key=K]` — blink owns ADDR/LEN inside the tunnel to REMOTE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSpec {
    pub kind: TunnelKind,
    pub remote: Ipv4Addr,
    pub addr: crate::Ipv4Cidr,
}

impl TunnelSpec {
    /// The tunnel's parameters (underlay source from the route, TTL 64).
    pub fn parms(&self) -> TunnelParms {
        TunnelParms {
            kind: self.kind,
            remote: self.remote,
            local: None,
            ttl: 64,
        }
    }
}

impl std::str::FromStr for TunnelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<TunnelSpec, String> {
        let (main, opts) = match s.split_once(',') {
            Some((m, o)) => (m, Some(o)),
            None => (s, None),
        };
        let f: Vec<&str> = main.split(':').collect();
        if f.len() != 3 {
            return Err(format!(
                "`{s}`: expected ipip:REMOTE:ADDR/LEN or gre:REMOTE:ADDR/LEN[,key=K]"
            ));
        }
        let remote: Ipv4Addr = f[1]
            .parse()
            .map_err(|_| format!("`{s}`: REMOTE `{}` is not an IPv4 address", f[1]))?;
        if remote.is_unspecified() || remote.is_broadcast() || remote.is_multicast() {
            return Err(format!("`{s}`: REMOTE {remote} cannot be a tunnel end"));
        }
        let addr: crate::Ipv4Cidr = f[2].parse().map_err(|e| format!("`{s}`: ADDR/LEN `{}`: {e}", f[2]))?;
        let mut key = None;
        if let Some(o) = opts {
            for kv in o.split(',') {
                match kv.split_once('=') {
                    Some(("key", v)) => {
                        key = Some(
                            v.parse::<u32>()
                                .map_err(|_| format!("`{s}`: key `{v}` is not a 32-bit number"))?,
                        )
                    }
                    _ => return Err(format!("`{s}`: unknown option `{kv}` (only key=K, for gre)")),
                }
            }
        }
        let kind = match f[0] {
            "ipip" if key.is_none() => TunnelKind::Ipip,
            "ipip" => return Err(format!("`{s}`: ipip tunnels have no key")),
            "gre" => TunnelKind::Gre { key },
            k => return Err(format!("`{s}`: kind `{k}` is not ipip or gre")),
        };
        Ok(TunnelSpec { kind, remote, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let s: TunnelSpec = "ipip:10.200.0.1:10.201.0.2/30".parse().unwrap();
        assert_eq!(s.kind, TunnelKind::Ipip);
        assert_eq!(s.remote, Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(s.addr.to_string(), "10.201.0.2/30");
        let s: TunnelSpec = "gre:10.200.0.1:10.202.0.2/24,key=42".parse().unwrap();
        assert_eq!(s.kind, TunnelKind::Gre { key: Some(42) });
        assert_eq!(s.kind.overhead(), 28);
        for (bad, why) in [
            ("vxlan:1.2.3.4:10.0.0.1/24", "kind"),
            ("ipip:1.2.3:10.0.0.1/24", "REMOTE"),
            ("ipip:1.2.3.4:10.0.0.1", "ADDR/LEN"),
            ("ipip:1.2.3.4:10.0.0.1/24,key=1", "no key"),
            ("gre:1.2.3.4:10.0.0.1/24,key=x", "key"),
            ("gre:1.2.3.4:10.0.0.1/24,ttl=3", "unknown option"),
            ("gre:0.0.0.0:10.0.0.1/24", "cannot be"),
        ] {
            let e = bad.parse::<TunnelSpec>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
