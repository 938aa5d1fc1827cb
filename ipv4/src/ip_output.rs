//! IPv4 transmit. Linux: net/ipv4/ip_output.c (`ip_build_and_send_pkt`, `ip_queue_xmit`,
//! `ip_local_out`, `ip_finish_output2`).

use std::net::Ipv4Addr;

use blink_netcore::if_ether::{ETH_HLEN, ETH_P_IP};
use blink_netcore::skbuff::{Frag, SkBuff};
use blink_netcore::snmp::{ArpMib, DropReason, IpMib};
use blink_netcore::EthAddr;

use crate::dev::{dev_queue_xmit, eth_header};
use crate::dst::{dst_hh_init, ip_route_output_dst, DstCache};
use crate::ip_fragment::ip_fragment;
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
    /// IP identification of a connected socket's datagram (Linux: `inet_sk(sk)->inet_id`,
    /// counted per socket). None lets the stack choose (Linux: ip_select_ident): 0 with DF
    /// (such a datagram is never reassembled, so its ID means nothing, and a counter shared by
    /// every sender would let anyone count this host's traffic: the "idle scan"), the core's
    /// counter without DF (fragments must not collide; see `Stack::next_ip_id`).
    pub id: Option<u16>,
}

/// Largest IPv4 datagram, header included (tot_len is 16 bits). Linux: IP_MAX_MTU.
pub const IP_MAX_MTU: usize = 0xFFFF;

/// Linux: ip_build_and_send_pkt(). `skb->data` is at the transport header; push the IP
/// header, route, resolve the next hop and queue the frame, fragmenting it when it exceeds
/// the path MTU and `tx.df` is clear. On error the skb is dropped and counted, and the error
/// says why: with DF, a datagram over the path MTU is refused (EMSGSIZE), as is any over
/// 65,535 bytes. The uncached path: what has no socket to cache a route in (SYN-ACKs and
/// resets, ICMP, tunnels' outer packets) or sends too rarely to bother; sockets use
/// [`ip_queue_xmit`].
pub fn ip_build_and_send_pkt(stack: &mut Stack, skb: SkBuff, tx: IpTx) -> Result<(), Ipv4Error> {
    let Some((nexthop, dev, prefsrc)) = ip_route_output(stack, tx.dst) else {
        return Err(ip_no_route(stack, skb, tx.dst));
    };
    let mtu = ip_dst_mtu(stack, dev, tx.dst);
    let skb = ip_push_header(stack, skb, &tx, prefsrc, dev, mtu)?;
    ip_finish_output(stack, skb, nexthop, dev, mtu)
}

/// Linux: ip_queue_xmit(), for a socket that caches its route in `dst` (Linux:
/// `sk_dst_cache`; see [`crate::dst`]). `skb->data` is at the transport header. While `dst`
/// holds for `tx.dst` there is no route, MTU or neighbour lookup: the IP header is pushed and
/// the cached Ethernet header copied in front of it (Linux: neigh_hh_output). Otherwise the
/// full path runs, as in [`ip_build_and_send_pkt`], and fills `dst` again. Tunnels,
/// broadcasts, unresolved neighbours (queued while ARP runs) and datagrams to fragment take
/// the full output path from the cached route. Errors as `ip_build_and_send_pkt`'s; counters
/// and tracing are the same on both paths.
#[inline]
pub fn ip_queue_xmit(stack: &mut Stack, skb: SkBuff, tx: IpTx, dst: &mut DstCache) -> Result<(), Ipv4Error> {
    if !dst.check(stack, tx.dst) && !ip_route_output_dst(stack, dst, tx.dst) {
        return Err(ip_no_route(stack, skb, tx.dst));
    }
    ip_send_skb(stack, skb, tx, dst)
}

/// Linux: ip_send_skb() / ip_local_out() with the route already attached: the output half of
/// [`ip_queue_xmit`], for a sender that resolved `dst` for `tx.dst` itself just before
/// (udp_sendmsg does, as Linux's does with ip_route_output_flow before building the skb), so
/// the route is not checked a second time per datagram. Otherwise as `ip_queue_xmit`.
#[inline]
pub fn ip_send_skb(stack: &mut Stack, skb: SkBuff, tx: IpTx, dst: &mut DstCache) -> Result<(), Ipv4Error> {
    debug_assert!(dst.check(stack, tx.dst), "ip_send_skb: the caller checks the route");
    let (dev, mtu) = (dst.dev(), dst.mtu());
    let skb = ip_push_header(stack, skb, &tx, dst.prefsrc(), dev, mtu)?;
    if let Some(hh) = dst.hh().filter(|_| skb.len() <= mtu) {
        // What ip_finish_output2 and neigh_resolve_output count for a resolved next hop.
        stack.core.mib.ip.inc(IpMib::OutTransmits);
        stack.core.mib.arp.inc(ArpMib::Lookups);
        stack.core.mib.arp.inc(ArpMib::Hits);
        neigh_hh_output(stack, skb, hh, dst.hh_dev());
        return Ok(());
    }
    let nexthop = dst.nexthop();
    if skb.len() > mtu {
        return ip_finish_output(stack, skb, nexthop, dev, mtu);
    }
    if let Some((mac, ndev)) = ip_finish_output2(stack, skb, nexthop, dev) {
        dst_hh_init(stack, dst, mac, ndev);
    }
    Ok(())
}

/// Linux: neigh_hh_output(). Put the cached Ethernet header in front of the IP header and
/// queue the frame: what neigh_output does, with the header copied instead of built.
#[inline(always)]
fn neigh_hh_output(stack: &mut Stack, mut skb: SkBuff, hh: &[u8; ETH_HLEN], dev: u16) {
    skb.dev = dev;
    let Some(h) = skb.skb_push(ETH_HLEN) else {
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return;
    };
    h.copy_from_slice(hh);
    skb.skb_reset_mac_header();
    dev_queue_xmit(stack, skb);
}

/// No route to `dst`: count, drop, say so.
#[cold]
fn ip_no_route(stack: &mut Stack, skb: SkBuff, dst: Ipv4Addr) -> Ipv4Error {
    stack.core.mib.ip.inc(IpMib::OutNoRoutes);
    stack.core.kfree_skb_reason(skb, DropReason::IpOutNoRoutes);
    Ipv4Error::NoRoute(dst)
}

/// The part of ip_build_and_send_pkt / ip_queue_xmit between routing and output: check the
/// length against `mtu` and IP's limit, and push the header (source `tx.src`, else
/// `prefsrc`), leaving `skb->data` at it. Counts OutRequests; on error drops and counts.
#[inline(always)]
fn ip_push_header(
    stack: &mut Stack,
    mut skb: SkBuff,
    tx: &IpTx,
    prefsrc: Ipv4Addr,
    dev: u16,
    mtu: usize,
) -> Result<SkBuff, Ipv4Error> {
    let src = tx.src.unwrap_or(prefsrc);
    let payload_len = skb.len();
    let len = payload_len + IPV4_MIN_HLEN;
    if len > IP_MAX_MTU {
        // Linux: ip_append_data()'s EMSGSIZE; no fragment count applies.
        stack.core.mib.ip.inc(IpMib::OutDiscards);
        stack.core.kfree_skb_reason(skb, DropReason::Oversize);
        return Err(Ipv4Error::MessageTooLong { len, mtu });
    }
    if len > mtu && tx.df {
        // Linux: ip_fragment() with IP_DF set (the local sender learns EMSGSIZE instead of
        // an ICMP from itself).
        stack.core.mib.ip.inc(IpMib::FragFails);
        stack.core.kfree_skb_reason(skb, DropReason::Oversize);
        return Err(Ipv4Error::MessageTooLong { len, mtu });
    }
    let repr = Ipv4Repr {
        src,
        dst: tx.dst,
        protocol: tx.protocol,
        ttl: tx.ttl.unwrap_or(stack.cfg.default_ttl).max(1),
        tos: tx.tos,
        id: match tx.id {
            Some(id) => id,
            None if tx.df => 0,
            None => stack.next_ip_id(tx.dst, tx.protocol),
        },
        df: tx.df,
        payload_len,
    };
    let Some(h) = skb.skb_push(IPV4_MIN_HLEN) else {
        stack.core.mib.ip.inc(IpMib::OutDiscards);
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return Err(Ipv4Error::NoBuffers);
    };
    // Emit writes the header checksum too: TAP and the wire take no IP checksum offload.
    repr.emit(&mut Ipv4Hdr::new_unchecked(h));
    skb.skb_reset_network_header();
    skb.protocol = ETH_P_IP;
    skb.dev = dev;
    stack.core.mib.ip.inc(IpMib::OutRequests);
    Ok(skb)
}

/// Linux: __ip_append_data(), for a datagram built in one go. Append `len` bytes to `skb`,
/// written by `getfrag(offset, buf)` (Linux's getfrag callback: the copy from the user's
/// buffer): first into the linear tailroom, then into fresh mbufs added as fragments, so a
/// datagram of up to 65,535 bytes needs no contiguous buffer. On error `skb` keeps what was
/// added (the caller drops it): NoBuffers when the pool is empty, MessageTooLong when the
/// fragment slots run out.
pub fn ip_append_data(
    stack: &mut Stack,
    skb: &mut SkBuff,
    len: usize,
    mut getfrag: impl FnMut(usize, &mut [u8]),
) -> Result<(), Ipv4Error> {
    let first = len.min(skb.skb_tailroom());
    if first > 0 {
        let Some(buf) = skb.skb_put(first) else {
            return Err(Ipv4Error::NoBuffers);
        };
        getfrag(0, buf);
    }
    let mut done = first;
    while done < len {
        let Some(mut m) = stack.core.cache.alloc() else {
            return Err(Ipv4Error::NoBuffers);
        };
        // The whole buffer: fragments need no headroom.
        let n = (len - done).min(m.buf_len());
        if !m.set_data(0, 0) {
            return Err(Ipv4Error::NoBuffers);
        }
        let Some(buf) = m.append(n) else {
            return Err(Ipv4Error::NoBuffers);
        };
        getfrag(done, buf);
        if skb.skb_add_frag(Frag::from_mbuf(m)).is_err() {
            return Err(Ipv4Error::MessageTooLong {
                len: skb.len() + (len - done),
                mtu: IP_MAX_MTU,
            });
        }
        done += n;
    }
    Ok(())
}

/// Linux: dst_mtu() of the route to `dst` leaving by `dev`: the device MTU, lowered by a
/// path MTU exception an ICMP "fragmentation needed" installed (RFC 1191).
#[inline(always)]
pub fn ip_dst_mtu(stack: &Stack, dev: u16, dst: Ipv4Addr) -> usize {
    let dev_mtu = stack.devs[dev as usize].mtu;
    stack.fib.dst_mtu(dst, dev_mtu, stack.core.jiffies)
}

/// Linux: ip_finish_output() / __ip_finish_output(). A packet over `mtu` is fragmented, each
/// fragment then taking the same way out as a packet that fits.
#[inline(always)]
fn ip_finish_output(
    stack: &mut Stack,
    skb: SkBuff,
    nexthop: Option<Ipv4Addr>,
    dev: u16,
    mtu: usize,
) -> Result<(), Ipv4Error> {
    if skb.len() > mtu {
        return ip_fragment(stack, skb, mtu, |s, frag| {
            ip_finish_output2(s, frag, nexthop, dev);
        });
    }
    ip_finish_output2(stack, skb, nexthop, dev);
    Ok(())
}

/// Linux: ip_route_output_key(), reduced to what a host needs: the next hop (None for the
/// limited broadcast, which leaves by the first device with an address), the output device
/// and the preferred source address.
#[inline]
pub(crate) fn ip_route_output(stack: &Stack, dst: Ipv4Addr) -> Option<(Option<Ipv4Addr>, u16, Ipv4Addr)> {
    if dst.is_broadcast() {
        let d = stack.devs.iter().find(|d| !d.addrs().is_empty())?;
        return Some((None, d.ifindex, d.addrs()[0].addr));
    }
    let r = stack.fib.lookup(dst)?;
    Some((Some(r.nexthop(dst)), r.dev, r.prefsrc))
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
    let protocol = Ipv4Hdr::new_unchecked(skb.data()).protocol();
    let Some((nexthop, dev, prefsrc)) = ip_route_output(stack, dst) else {
        return Err(ip_no_route(stack, skb, dst));
    };
    // Linux: raw_send_hdrinc() refuses what exceeds the path MTU rather than fragment a
    // header the application wrote.
    let (len, mtu) = (skb.len(), ip_dst_mtu(stack, dev, dst));
    if len > mtu || len > IP_MAX_MTU {
        stack.core.mib.ip.inc(IpMib::FragFails);
        stack.core.kfree_skb_reason(skb, DropReason::Oversize);
        return Err(Ipv4Error::MessageTooLong { len, mtu });
    }
    let new_id = if id == 0 { stack.next_ip_id(dst, protocol) } else { id };
    let Some(buf) = skb.data_mut() else {
        stack.core.mib.ip.inc(IpMib::OutDiscards);
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
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
    ip_finish_output2(stack, skb, nexthop, dev);
    Ok(())
}

/// Linux: ip_finish_output2(). One packet or fragment, `skb->data` at its IP header.
/// Broadcasts go straight to the Ethernet broadcast address; everything else through the
/// neighbour layer, whose resolved MAC and device (when it has them) are returned for a
/// cached route to keep.
fn ip_finish_output2(
    stack: &mut Stack,
    mut skb: SkBuff,
    nexthop: Option<Ipv4Addr>,
    dev: u16,
) -> Option<(EthAddr, u16)> {
    stack.core.mib.ip.inc(IpMib::OutTransmits);
    if stack.devs[dev as usize].tunnel.is_some() {
        // A tunnel has no neighbours: it encapsulates and sends over the underlay.
        crate::ip_tunnel::ip_tunnel_xmit(stack, skb, dev);
        return None;
    }
    match nexthop {
        Some(nh) if !stack.is_broadcast_addr(nh) => neigh_resolve_output(stack, skb, nh, dev),
        _ => {
            let src = stack.devs[dev as usize].mac;
            if !eth_header(&mut skb, src, EthAddr::BROADCAST, ETH_P_IP) {
                stack.core.kfree_skb_reason(skb, DropReason::NoMem);
                return None;
            }
            dev_queue_xmit(stack, skb);
            None
        }
    }
}
