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
use crate::route::FibRoute;
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
    let Some((route, dev, prefsrc)) = ip_route_output(stack, tx.dst) else {
        stack.core.mib.ip.inc(IpMib::OutNoRoutes);
        stack.core.mib.kfree_skb_reason(skb, DropReason::IpOutNoRoutes);
        return Err(Ipv4Error::NoRoute(tx.dst));
    };
    let src = tx.src.unwrap_or(prefsrc);
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

/// Linux: ip_route_output_key(), reduced to what a host needs: the route (None for the
/// limited broadcast, which leaves by the first device with an address), the output device
/// and the preferred source address.
fn ip_route_output(stack: &Stack, dst: Ipv4Addr) -> Option<(Option<FibRoute>, u16, Ipv4Addr)> {
    if dst.is_broadcast() {
        let d = stack.devs.iter().find(|d| !d.addrs.is_empty())?;
        return Some((None, d.ifindex, d.addrs[0].addr));
    }
    let r = stack.fib.lookup(dst)?.clone();
    let (dev, src) = (r.dev, r.prefsrc);
    Some((Some(r), dev, src))
}

/// The output half of Linux's raw_send_hdrinc(): `skb->data` is at an IP header the caller
/// built and checked (version 4, IHL >= 5, whole header present). As Linux does, the stack
/// owns tot_len and the header checksum, and fills the id and the source when they are 0;
/// everything else (options included) goes out as written. Routed by the header's
/// destination. On error the skb is dropped and counted.
pub fn ip_send_hdrincl(stack: &mut Stack, mut skb: SkBuff) -> Result<(), Ipv4Error> {
    let (dst, src, id, hlen) = {
        let h = Ipv4Hdr::new_unchecked(skb.data());
        (h.dst(), h.src(), h.id(), h.header_len())
    };
    let Some((route, dev, prefsrc)) = ip_route_output(stack, dst) else {
        stack.core.mib.ip.inc(IpMib::OutNoRoutes);
        stack.core.mib.kfree_skb_reason(skb, DropReason::IpOutNoRoutes);
        return Err(Ipv4Error::NoRoute(dst));
    };
    let (len, mtu) = (skb.len(), stack.devs[dev as usize].mtu);
    if len > mtu || len > u16::MAX as usize {
        stack.core.mib.ip.inc(IpMib::FragFails);
        stack.core.mib.kfree_skb_reason(skb, DropReason::Oversize);
        return Err(Ipv4Error::MessageTooLong { len, mtu });
    }
    let new_id = if id == 0 { stack.next_ip_id() } else { id };
    let Some(buf) = skb.data_mut() else {
        stack.core.mib.ip.inc(IpMib::OutDiscards);
        stack.core.mib.kfree_skb_reason(skb, DropReason::NoMem);
        return Err(Ipv4Error::NoBuffers);
    };
    {
        let mut h = Ipv4Hdr::new_unchecked(&mut buf[..hlen]);
        h.set_total_len(len as u16);
        h.set_id(new_id);
        if src.is_unspecified() {
            h.set_src(prefsrc);
        }
        h.fill_checksum();
    }
    skb.skb_reset_network_header();
    skb.protocol = ETH_P_IP;
    skb.dev = dev;
    stack.core.mib.ip.inc(IpMib::OutRequests);
    ip_finish_output2(stack, skb, route.map(|r| r.nexthop(dst)), dev);
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
