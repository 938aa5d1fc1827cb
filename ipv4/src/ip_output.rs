//! IPv4 transmit. Linux: net/ipv4/ip_output.c (`ip_build_and_send_pkt`, `ip_queue_xmit`,
//! `ip_local_out`, `ip_finish_output2`).

use std::net::Ipv4Addr;

use blink_netcore::if_ether::ETH_P_IP;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{DropReason, IpMib};
use blink_netcore::EthAddr;

use crate::dev::{dev_queue_xmit, eth_header};
use crate::iphdr::{Ipv4Hdr, Ipv4Repr, IPV4_MIN_HLEN};
use crate::neighbour::neigh_resolve_output;
use crate::stack::Stack;
use crate::Ipv4Error;

/// What the transport layer asks of IP for one packet (Linux: the flowi4 + inet_sock fields
/// ip_build_and_send_pkt reads).
#[derive(Debug, Clone, Copy)]
pub struct IpTx {
    /// Source address; None picks the route's preferred source.
    pub src: Option<Ipv4Addr>,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// None uses the stack's default TTL.
    pub ttl: Option<u8>,
    pub tos: u8,
    /// Set Don't Fragment.
    pub df: bool,
}

/// Linux: ip_build_and_send_pkt(). `skb->data` is at the transport header; push the IP
/// header, route, resolve the next hop and queue the frame. On error the skb is dropped and
/// counted, and the error says why.
pub fn ip_build_and_send_pkt(stack: &mut Stack, mut skb: SkBuff, tx: IpTx) -> Result<(), Ipv4Error> {
    let route = if tx.dst.is_broadcast() {
        None
    } else {
        match stack.fib.lookup(tx.dst) {
            Some(r) => Some(r.clone()),
            None => {
                stack.core.mib.ip.inc(IpMib::OutNoRoutes);
                stack.core.mib.kfree_skb_reason(skb, DropReason::IpOutNoRoutes);
                return Err(Ipv4Error::NoRoute(tx.dst));
            }
        }
    };
    // The limited broadcast leaves by the first device with an address.
    let (dev, src) = match &route {
        Some(r) => (r.dev, tx.src.unwrap_or(r.prefsrc)),
        None => {
            let Some(d) = stack.devs.iter().find(|d| !d.addrs.is_empty()) else {
                stack.core.mib.ip.inc(IpMib::OutNoRoutes);
                stack.core.mib.kfree_skb_reason(skb, DropReason::IpOutNoRoutes);
                return Err(Ipv4Error::NoRoute(tx.dst));
            };
            (d.ifindex, tx.src.unwrap_or(d.addrs[0].addr))
        }
    };
    let mtu = stack.devs[dev as usize].mtu;
    let payload_len = skb.len();
    if payload_len + IPV4_MIN_HLEN > mtu {
        // ip_fragment() slots in here for !df; until then oversized packets are refused.
        stack.core.mib.ip.inc(IpMib::FragFails);
        stack.core.mib.kfree_skb_reason(skb, DropReason::Oversize);
        return Err(Ipv4Error::MessageTooLong {
            len: payload_len + IPV4_MIN_HLEN,
            mtu,
        });
    }
    let repr = Ipv4Repr {
        src,
        dst: tx.dst,
        protocol: tx.protocol,
        ttl: tx.ttl.unwrap_or(stack.cfg.default_ttl).max(1),
        tos: tx.tos,
        id: stack.next_ip_id(),
        df: tx.df,
        payload_len,
    };
    let Some(h) = skb.skb_push(IPV4_MIN_HLEN) else {
        stack.core.mib.ip.inc(IpMib::OutDiscards);
        stack.core.mib.kfree_skb_reason(skb, DropReason::NoMem);
        return Err(Ipv4Error::NoBuffers);
    };
    // Emit writes the header checksum too: TAP and the wire take no IP checksum offload.
    repr.emit(&mut Ipv4Hdr::new_unchecked(h));
    skb.skb_reset_network_header();
    skb.protocol = ETH_P_IP;
    skb.dev = dev;
    stack.core.mib.ip.inc(IpMib::OutRequests);
    ip_finish_output2(stack, skb, route.map(|r| r.nexthop(tx.dst)), dev);
    Ok(())
}

/// Linux: ip_finish_output2(). Broadcasts go straight to the Ethernet broadcast address;
/// everything else through the neighbour layer.
fn ip_finish_output2(stack: &mut Stack, mut skb: SkBuff, nexthop: Option<Ipv4Addr>, dev: u16) {
    stack.core.mib.ip.inc(IpMib::OutTransmits);
    match nexthop {
        Some(nh) if !stack.is_broadcast_addr(nh) => neigh_resolve_output(stack, skb, nh, dev),
        _ => {
            let src = stack.devs[dev as usize].mac;
            if !eth_header(&mut skb, src, EthAddr::BROADCAST, ETH_P_IP) {
                stack.core.mib.kfree_skb_reason(skb, DropReason::NoMem);
                return;
            }
            dev_queue_xmit(stack, skb);
        }
    }
}
