//! The device layer: Ethernet receive demux and transmit queueing.
//!
//! Linux: net/core/dev.c (`netif_receive_skb`, `__netif_receive_skb_core`, `dev_queue_xmit`)
//! and net/ethernet/eth.c (`eth_type_trans`, `eth_header`). Only IPv4 and ARP have packet
//! handlers in blink, so the `dev_add_pack` list is a match on the EtherType.

use blink_netcore::if_ether::{EthHdr, ETH_HLEN, ETH_P_ARP, ETH_P_IP};
use blink_netcore::rss::{hash2cpu, rss_hash_frame};
use blink_netcore::skbuff::{PacketType, SkBuff};
use blink_netcore::snmp::{DropReason, SoftnetMib};
use blink_netcore::EthAddr;

use crate::inbox::CoreMsg;
use crate::stack::Stack;

/// Capture a frame at the device boundary if the device has a pcap attached.
#[inline]
fn pcap_frame(stack: &mut Stack, ifindex: u16, skb: &SkBuff) {
    let ts = stack.pcap_ts();
    if let Some(p) = stack.devs[ifindex as usize].pcap.as_ref() {
        let mut segs: arrayvec::ArrayVec<&[u8], { blink_netcore::skbuff::MAX_SKB_FRAGS + 1 }> =
            arrayvec::ArrayVec::new();
        segs.extend(skb.segments());
        let r = match p.lock() {
            Ok(mut p) => p.write_frame(ts, &segs).map_err(|e| e.to_string()),
            Err(_) => Err("pcap: another core panicked while writing".to_string()),
        };
        if let Err(e) = r {
            log::warn!("{e}; capture stopped");
            stack.devs[ifindex as usize].pcap = None;
        }
    }
}

/// Linux: get_rps_cpu(). The core that owns `skb`'s flow: the Toeplitz hash of its tuple
/// (the device's when it supplied one, else computed here and stored in the skb, as
/// `skb_get_hash()` does) through the RETA. Frames without an IPv4 tuple (ARP) stay on the
/// receiving core.
#[inline]
pub fn get_rps_cpu(stack: &Stack, skb: &mut SkBuff) -> u16 {
    if skb.hash_type == blink_netcore::rss::RssHashType::None {
        match rss_hash_frame(&stack.core.toeplitz, skb.data()) {
            Some((h, t)) => {
                skb.rss_hash = h;
                skb.hash_type = t;
            }
            None => return stack.core.cpu,
        }
    }
    hash2cpu(&stack.core.reta, skb.rss_hash)
}

/// Receive with software steering (Linux: `netif_receive_skb()` with RPS on): a frame whose
/// flow another core owns goes to that core's inbox (`Softnet.RssForwarded` here,
/// `ReceivedRps` there) — Seastar's answer to a device whose queues do not follow blink's
/// hash. Own frames are received at once.
pub fn netif_receive_skb_rps(stack: &mut Stack, ifindex: u16, mut skb: SkBuff) {
    let cpu = get_rps_cpu(stack, &mut skb);
    if cpu == stack.core.cpu {
        netif_receive_skb(stack, ifindex, skb);
        return;
    }
    // Linux: enqueue_to_backlog().
    if stack.post_to_core(cpu, CoreMsg::Frame { ifindex, skb }) {
        stack.core.mib.softnet.inc(SoftnetMib::RssForwarded);
    }
}

/// Linux: eth_type_trans() + __netif_receive_skb_core(). `skb->data` is at the Ethernet
/// header; consumes the skb (delivered or dropped with a reason).
pub fn netif_receive_skb(stack: &mut Stack, ifindex: u16, mut skb: SkBuff) {
    if stack.devs[ifindex as usize].pcap.is_some() {
        pcap_frame(stack, ifindex, &skb);
    }
    skb.dev = ifindex;
    skb.tstamp = stack.core.now_ns;
    stack.core.mib.trace_select(&mut skb, ETH_HLEN, "netif_receive_skb");
    if !skb.pskb_may_pull(ETH_HLEN) {
        stack.core.kfree_skb_reason(skb, DropReason::PktTooSmall);
        return;
    }
    skb.skb_reset_mac_header();
    let (dst, ethertype) = {
        let eth = EthHdr::new_unchecked(skb.data());
        (eth.dst(), eth.ethertype())
    };
    let mac = stack.devs[ifindex as usize].mac;
    skb.pkt_type = if dst == mac {
        PacketType::Host
    } else if dst.is_broadcast() {
        PacketType::Broadcast
    } else if dst.is_multicast() {
        PacketType::Multicast
    } else {
        PacketType::OtherHost
    };
    if skb.pkt_type == PacketType::OtherHost {
        // A TAP or a switch may show us frames for other hosts; we do not forward.
        stack.core.kfree_skb_reason(skb, DropReason::OtherHost);
        return;
    }
    skb.protocol = ethertype;
    skb.skb_pull(ETH_HLEN);
    skb.skb_reset_network_header();
    match ethertype {
        ETH_P_IP => crate::ip_input::ip_rcv(stack, skb),
        ETH_P_ARP => {
            if stack.exc_rules.is_some() {
                crate::ip_exception::exc_arp(stack, &skb);
            }
            crate::arp::arp_rcv(stack, skb)
        }
        _ => {
            if let Some(skb) = crate::ip_exception::exc_unhandled_ethertype(stack, skb) {
                stack.core.kfree_skb_reason(skb, DropReason::UnhandledProto);
            }
        }
    }
}

/// Linux: eth_header(). Push the Ethernet header for `dst`/`ethertype` in front of `skb->data`.
pub fn eth_header(skb: &mut SkBuff, src: EthAddr, dst: EthAddr, ethertype: u16) -> bool {
    let Some(h) = skb.skb_push(ETH_HLEN) else {
        return false;
    };
    let mut eth = EthHdr::new_unchecked(h);
    eth.set_dst(dst);
    eth.set_src(src);
    eth.set_ethertype(ethertype);
    skb.skb_reset_mac_header();
    true
}

/// Linux: dev_queue_xmit(). Queue a complete frame on `skb->dev`'s transmit queue; a full
/// queue is flushed to the device at once, and if the device still refuses, the frame is
/// dropped and counted.
pub fn dev_queue_xmit(stack: &mut Stack, mut skb: SkBuff) {
    stack.core.mib.trace_select(&mut skb, ETH_HLEN, "dev_queue_xmit");
    let ifindex = skb.dev;
    if ifindex as usize >= stack.devs.len() {
        stack.core.kfree_skb_reason(skb, DropReason::DevNotUp);
        return;
    }
    if stack.devs[ifindex as usize].pcap.is_some() {
        pcap_frame(stack, ifindex, &skb);
    }
    let d = &mut stack.devs[ifindex as usize];
    if d.txq.is_full() {
        let q = d.queue;
        d.dev.tx_burst(q, &mut d.txq);
    }
    if d.txq.is_full() {
        stack.core.kfree_skb_reason(skb, DropReason::TxQueueFull);
        return;
    }
    d.txq.push(skb);
}
