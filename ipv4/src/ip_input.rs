//! IPv4 receive. Linux: net/ipv4/ip_input.c (`ip_rcv`, `ip_rcv_finish`, `ip_local_deliver`,
//! `ip_local_deliver_finish`).

use blink_netcore::checksum::ip_fast_csum;
use blink_netcore::skbuff::{IpSummed, SkBuff};
use blink_netcore::snmp::{DropReason, IpMib};

use crate::icmp::icmp_send;
use crate::icmphdr::{ICMP_DEST_UNREACH, ICMP_PARAMETERPROB, ICMP_PROT_UNREACH};
use crate::iphdr::{Ipv4Hdr, IPV4_MIN_HLEN};
use crate::stack::Stack;

/// Linux: ip_rcv(). Validate the header (length, version, IHL, checksum, total length), trim
/// link-layer padding, then route the packet. `skb->data` is at the IP header.
///
/// A TTL of 0 or 1 is not an error for a packet addressed to us (RFC 1122 3.2.1.7: a host
/// must not discard a datagram because its TTL is low); TTL only matters when forwarding,
/// which blink does not do, and on output, where it is never 0.
pub fn ip_rcv(stack: &mut Stack, mut skb: SkBuff) {
    let mib = &mut stack.core.mib;
    if skb.trace {
        mib.trace_event(&skb, "ip_rcv", "");
    }
    mib.ip.inc(IpMib::InReceives);
    if !skb.pskb_may_pull(IPV4_MIN_HLEN) {
        mib.ip.inc(IpMib::InHdrErrors);
        mib.kfree_skb_reason(skb, DropReason::PktTooSmall);
        return;
    }
    // The fixed header, read once: every later step of the input path (route, local
    // delivery, protocol demux) takes its fields from here instead of re-slicing the skb.
    let hdr = IpRcvHdr::parse(&skb);
    let (version, hlen, tot_len) = (hdr.version, hdr.hlen, hdr.tot_len);
    if version != 4 || hlen < IPV4_MIN_HLEN {
        mib.ip.inc(IpMib::InHdrErrors);
        mib.kfree_skb_reason(skb, DropReason::IpInHdr);
        return;
    }
    if !skb.pskb_may_pull(hlen) {
        mib.ip.inc(IpMib::InHdrErrors);
        mib.kfree_skb_reason(skb, DropReason::PktTooSmall);
        return;
    }
    if skb.ip_summed != IpSummed::Unnecessary && ip_fast_csum(&skb.data()[..hlen]) != 0 {
        mib.ip.inc(IpMib::InCsumErrors);
        mib.ip.inc(IpMib::InHdrErrors);
        mib.kfree_skb_reason(skb, DropReason::IpCsum);
        return;
    }
    if skb.len() < tot_len {
        mib.ip.inc(IpMib::InTruncatedPkts);
        mib.kfree_skb_reason(skb, DropReason::PktTooSmall);
        return;
    }
    if tot_len < hlen {
        mib.ip.inc(IpMib::InHdrErrors);
        mib.kfree_skb_reason(skb, DropReason::IpInHdr);
        return;
    }
    // Ethernet pads short frames to 60 bytes: drop the padding (Linux: pskb_trim_rcsum).
    skb.skb_trim(tot_len);
    skb.skb_reset_network_header();
    skb.skb_set_transport_header(hlen);
    ip_rcv_finish(stack, skb, &hdr);
}

/// The fields of a received packet's fixed header the input path acts on, parsed once by
/// `ip_rcv` (the header bytes do not change until the protocol handler gets the packet).
#[derive(Clone, Copy)]
struct IpRcvHdr {
    version: u8,
    hlen: usize,
    tot_len: usize,
    protocol: u8,
    frag: bool,
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
}

impl IpRcvHdr {
    /// From the first 20 bytes of `skb.data()`, which the caller made linear.
    #[inline(always)]
    fn parse(skb: &SkBuff) -> IpRcvHdr {
        // One bounds check for the whole fixed header; the accessors then index an array.
        let b: &[u8; IPV4_MIN_HLEN] = skb.data()[..IPV4_MIN_HLEN].try_into().expect("20 bytes");
        let h = Ipv4Hdr::new_unchecked(&b[..]);
        IpRcvHdr {
            version: h.version(),
            hlen: h.header_len(),
            tot_len: h.total_len() as usize,
            protocol: h.protocol(),
            frag: h.is_fragment(),
            src: h.src(),
            dst: h.dst(),
        }
    }
}

/// Linux: ip_rcv_finish(). The input route: ours (unicast or broadcast) or not. blink is a
/// host: anything else is counted in InAddrErrors and dropped (Linux does the same with
/// forwarding off).
fn ip_rcv_finish(stack: &mut Stack, skb: SkBuff, hdr: &IpRcvHdr) {
    let (src, dst) = (hdr.src, hdr.dst);
    // Martian sources (Linux: ip_route_input_slow, "martian source"): multicast or broadcast,
    // loopback, 0.0.0.0/8 (allowed only towards the limited broadcast, for DHCP clients), and
    // our own address (fib_validate_source without accept_local): answering those would send
    // replies to ourselves or to nowhere.
    let zeronet = src.octets()[0] == 0;
    if src.is_multicast()
        || src.is_broadcast()
        || stack.is_broadcast_addr(src)
        || src.is_loopback()
        || (zeronet && !dst.is_broadcast())
        || stack.is_local_addr(src)
    {
        stack.core.mib.ip.inc(IpMib::InAddrErrors);
        stack.core.kfree_skb_reason(skb, DropReason::IpInAddrErrors);
        return;
    }
    // Linux checks options right after the route lookup (ip_rcv_finish_core), so a malformed
    // list is refused whoever the packet is for. Only headers longer than 20 bytes pay.
    let hlen = hdr.hlen;
    if hlen > IPV4_MIN_HLEN {
        if let Err(reason) = ip_rcv_options(stack, &skb, hlen) {
            stack.core.kfree_skb_reason(skb, reason);
            return;
        }
    }
    if stack.is_local_addr(dst) || stack.is_broadcast_addr(dst) {
        ip_local_deliver_hdr(stack, skb, hdr);
        return;
    }
    stack.core.mib.ip.inc(IpMib::InAddrErrors);
    stack.core.kfree_skb_reason(skb, DropReason::IpInAddrErrors);
}

/// Linux: ip_rcv_options(). A malformed option list is answered with a parameter problem
/// pointing at the bad byte and counted in InHdrErrors; a source route is refused (Linux's
/// default `accept_source_route = 0`: a host must not let a sender pick the return path).
#[cold]
fn ip_rcv_options(stack: &mut Stack, skb: &SkBuff, hlen: usize) -> Result<(), DropReason> {
    let opts = crate::ip_options::ip_options_compile(&skb.data()[IPV4_MIN_HLEN..hlen]);
    match opts {
        Err(ptr) => {
            stack.core.mib.ip.inc(IpMib::InHdrErrors);
            icmp_send(stack, skb, ICMP_PARAMETERPROB, 0, (ptr as u32) << 24);
            Err(DropReason::IpInHdr)
        }
        Ok(o) if o.srr != 0 => {
            // Linux counts no Ip counter here; InDiscards (a datagram refused by policy) keeps
            // every InReceives ending in exactly one Ip counter.
            stack.core.mib.ip.inc(IpMib::InDiscards);
            Err(DropReason::IpSourceRoute)
        }
        Ok(_) => Ok(()),
    }
}

/// Linux: ip_local_deliver(). Fragments go to reassembly (`ip_defrag`); a datagram they
/// complete is re-hashed on its transport tuple and delivered here or on its owner core.
pub fn ip_local_deliver(stack: &mut Stack, skb: SkBuff) {
    let hdr = IpRcvHdr::parse(&skb);
    ip_local_deliver_hdr(stack, skb, &hdr);
}

/// `ip_local_deliver` with the header as `ip_rcv` parsed it.
#[inline(always)]
fn ip_local_deliver_hdr(stack: &mut Stack, skb: SkBuff, hdr: &IpRcvHdr) {
    if skb.trace {
        stack.core.mib.trace_event(&skb, "ip_local_deliver", "");
    }
    if hdr.frag {
        let Some(whole) = crate::ip_defrag::ip_defrag(stack, skb) else {
            return;
        };
        if let Some(mine) = crate::ip_defrag::ip_reinject_deliver(stack, whole) {
            ip_local_deliver_finish(stack, mine);
        }
        return;
    }
    ip_local_deliver_proto(stack, skb, hdr.protocol, hdr.hlen);
}

/// Linux: ip_local_deliver_finish() / ip_protocol_deliver_rcu(). Raw sockets get their copies
/// first (raw_local_deliver), then the IP header is pulled and the packet goes to the
/// registered transport protocol; "protocol unreachable" only when neither took it.
pub(crate) fn ip_local_deliver_finish(stack: &mut Stack, skb: SkBuff) {
    let (proto, hlen) = {
        let h = Ipv4Hdr::new_unchecked(skb.data());
        (h.protocol(), h.header_len())
    };
    ip_local_deliver_proto(stack, skb, proto, hlen);
}

/// `ip_local_deliver_finish` with the protocol and header length known (the exception path
/// may make more of the packet linear, but it does not change the header).
#[inline(always)]
fn ip_local_deliver_proto(stack: &mut Stack, skb: SkBuff, proto: u8, hlen: usize) {
    // The exception path decides first: a datagram the kernel owns is never seen by blink's
    // raw sockets or protocols.
    let Some(mut skb) = crate::ip_exception::ip_exc_local(stack, skb) else {
        return;
    };
    // Before the pull, so each clone starts at the IP header as raw sockets deliver it
    // (Linux's raw_rcv pushes back to the network header; a clone here cannot push).
    let raw = stack.has_raw_handler() && stack.with_raw(|s, r| r.raw_local_deliver(s, &skb, proto)) == Some(true);
    skb.skb_pull(hlen);
    skb.skb_reset_transport_header();
    if proto == crate::iphdr::IPPROTO_ICMP {
        stack.core.mib.ip.inc(IpMib::InDelivers);
        crate::icmp::icmp_rcv(stack, skb);
        return;
    }
    if stack.has_protocol(proto) {
        stack.core.mib.ip.inc(IpMib::InDelivers);
        stack.with_protocol(proto, |s, p| p.handler(s, skb));
        return;
    }
    if raw {
        // Delivered to raw sockets only: consumed, not dropped (Linux: consume_skb).
        stack.core.mib.ip.inc(IpMib::InDelivers);
        stack.core.consume_skb(skb);
        return;
    }
    let Some(skb) = crate::ip_exception::ip_exc_unclaimed(stack, skb) else {
        return;
    };
    stack.core.mib.ip.inc(IpMib::InUnknownProtos);
    icmp_send(stack, &skb, ICMP_DEST_UNREACH, ICMP_PROT_UNREACH, 0);
    stack.core.kfree_skb_reason(skb, DropReason::IpNoProto);
}
