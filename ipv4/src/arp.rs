//! ARP for IPv4 over Ethernet (RFC 826). Linux: net/ipv4/arp.c (`arp_rcv`, `arp_process`,
//! `arp_send`). The table itself is in neighbour.rs.

use std::net::Ipv4Addr;

use blink_netcore::if_ether::ETH_P_ARP;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{ArpMib, DropReason};
use blink_netcore::EthAddr;

pub use crate::arphdr::ArpOp;
use crate::arphdr::{ArpHdr, ArpRepr, ARP_HLEN};
use crate::dev::{dev_queue_xmit, eth_header};
use crate::neighbour::neigh_update;
use crate::stack::Stack;

/// Linux: arp_rcv() + arp_process(). `skb->data` is at the ARP header.
pub fn arp_rcv(stack: &mut Stack, mut skb: SkBuff) {
    if !skb.pskb_may_pull(ARP_HLEN) {
        stack.core.kfree_skb_reason(skb, DropReason::ArpHdr);
        return;
    }
    let repr = match ArpRepr::parse(&ArpHdr::new_unchecked(skb.data())) {
        Ok(r) => r,
        Err(_) => {
            stack.core.kfree_skb_reason(skb, DropReason::ArpHdr);
            return;
        }
    };
    let dev = skb.dev;
    // Martians: a sender claiming a multicast/broadcast address or a multicast MAC.
    if repr.spa.is_multicast() || repr.spa.is_broadcast() || repr.sha.is_multicast() {
        stack.core.kfree_skb_reason(skb, DropReason::ArpHdr);
        return;
    }
    match repr.op {
        ArpOp::Request => stack.core.mib.arp.inc(ArpMib::InRequests),
        ArpOp::Reply => stack.core.mib.arp.inc(ArpMib::InReplies),
        ArpOp::Other(_) => {
            stack.core.kfree_skb_reason(skb, DropReason::ArpHdr);
            return;
        }
    }
    let for_us = stack.devs[dev as usize].addrs().iter().any(|a| a.addr == repr.tpa);
    let sender_is_us = stack.devs[dev as usize].addrs().iter().any(|a| a.addr == repr.spa);
    if sender_is_us {
        // Someone else claims our address (or our own gratuitous ARP echoed back).
        if repr.sha != stack.devs[dev as usize].mac {
            log::warn!("arp: {} claims our address {} on dev {dev}", repr.sha, repr.spa);
        }
        stack.core.kfree_skb_reason(skb, DropReason::ArpNotForUs);
        return;
    }
    if !repr.spa.is_unspecified() {
        // A request or reply aimed at us creates the sender's entry (the kernel does the same
        // so its reply needs no resolution); other ARP only refreshes an existing entry.
        neigh_update(stack, repr.spa, repr.sha, dev, for_us);
        // Every core resolves through its own table: tell the others, so a packet queued
        // for this neighbour on another core leaves now.
        crate::neighbour::neigh_broadcast(stack, repr.spa, repr.sha, dev, for_us);
    }
    if !for_us {
        stack.core.kfree_skb_reason(skb, DropReason::ArpNotForUs);
        return;
    }
    if repr.op == ArpOp::Request {
        arp_send(stack, ArpOp::Reply, dev, repr.sha, repr.spa, repr.sha, repr.tpa);
    }
    // Processed: a normal free, not a drop.
    stack.core.consume_skb(skb);
}

/// Linux: arp_send(). Build and queue an ARP packet: Ethernet destination `eth_dst`, target
/// protocol address `tpa`, target hardware address `tha`, sender `spa` with our MAC.
pub fn arp_send(stack: &mut Stack, op: ArpOp, dev: u16, eth_dst: EthAddr, tpa: Ipv4Addr, tha: EthAddr, spa: Ipv4Addr) {
    let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
        stack.core.mib.drop_count(DropReason::NoMem);
        return;
    };
    let sha = stack.devs[dev as usize].mac;
    let repr = ArpRepr { op, sha, spa, tha, tpa };
    let Some(buf) = skb.skb_put(ARP_HLEN) else {
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return;
    };
    repr.emit(&mut ArpHdr::new_unchecked(buf));
    skb.skb_reset_network_header();
    skb.dev = dev;
    if !eth_header(&mut skb, sha, eth_dst, ETH_P_ARP) {
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return;
    }
    match op {
        ArpOp::Request => stack.core.mib.arp.inc(ArpMib::OutRequests),
        ArpOp::Reply => stack.core.mib.arp.inc(ArpMib::OutReplies),
        ArpOp::Other(_) => {}
    }
    dev_queue_xmit(stack, skb);
}

/// Gratuitous ARP: announce `addr` on `dev` so peers update stale caches (a request with
/// sender and target both set to our address, broadcast).
pub fn arp_announce(stack: &mut Stack, dev: u16, addr: Ipv4Addr) {
    stack.core.mib.arp.inc(ArpMib::GratuitousSent);
    arp_send(
        stack,
        ArpOp::Request,
        dev,
        EthAddr::BROADCAST,
        addr,
        EthAddr::ZERO,
        addr,
    );
}
