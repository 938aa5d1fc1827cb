//! Reassembly (ip_defrag): a fragmented echo request is answered whatever the fragments'
//! order; duplicates, overlaps, oversize and never-completed sets are dropped and counted;
//! the incomplete ones give ICMP time exceeded at 30 s of virtual time; a flood of
//! never-completed sets stays within `ipfrag_high_thresh`; no buffer is left behind.

mod common;

use blink_ipv4::StackConfig;
use blink_netcore::snmp::{DropReason, IpMib};
use common::*;
use etherparse::Icmpv4Type;

/// Split the IPv4 packet of `frame` (Ethernet + IPv4, no options) into fragments carrying
/// `size` payload bytes each (a multiple of 8), as frames.
fn fragment(frame: &[u8], size: usize) -> Vec<Vec<u8>> {
    assert_eq!(size % 8, 0);
    let (eth, ip) = frame.split_at(14);
    let (hdr, payload) = ip.split_at(20);
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let n = size.min(payload.len() - off);
        let more = off + n < payload.len();
        let mut f = eth.to_vec();
        let mut h = hdr.to_vec();
        h[2..4].copy_from_slice(&((20 + n) as u16).to_be_bytes());
        let fo = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(&payload[off..off + n]);
        fix_ip_csum(&mut f);
        out.push(f);
        off += n;
    }
    out
}

/// One fragment frame built by hand: `payload` at byte `offset` of datagram `id`.
fn frag_frame(id: u16, offset: usize, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = ping_frame(0x77, 1, &[])[..34].to_vec();
    f[14 + 2..14 + 4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    f[14 + 4..14 + 6].copy_from_slice(&id.to_be_bytes());
    let fo = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
    f[14 + 6..14 + 8].copy_from_slice(&fo.to_be_bytes());
    f.extend_from_slice(payload);
    fix_ip_csum(&mut f);
    f
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Inject `frames` (one poll each) and return the echo reply's payload, checked.
fn echo_through(h: &mut Harness, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in frames {
        out.extend(h.exchange(f));
    }
    out
}

fn expect_reply(out: &[Vec<u8>], want: &[u8]) {
    assert_eq!(out.len(), 1, "one echo reply, got {}", out.len());
    let r = parse_icmp(&out[0]);
    assert!(
        matches!(r.icmp.icmp_type, Icmpv4Type::EchoReply(_)),
        "{:?}",
        r.icmp.icmp_type
    );
    assert_eq!(r.payload, want, "echo payload intact");
}

#[test]
fn fragments_in_order_reversed_and_shuffled_are_reassembled() {
    let data = payload(1400);
    let frame = ping_frame(0x1234, 1, &data);
    let frags = fragment(&frame, 184);
    assert_eq!(frags.len(), 8);
    let mut orders: Vec<Vec<usize>> = vec![(0..8).collect(), (0..8).rev().collect()];
    orders.push(vec![3, 7, 0, 5, 1, 6, 2, 4]);
    orders.push(vec![7, 1, 6, 2, 5, 3, 4, 0]);
    for order in orders {
        let mut h = Harness::new().with_static_peer();
        let before = h.mib();
        let set: Vec<Vec<u8>> = order.iter().map(|&i| frags[i].clone()).collect();
        let out = echo_through(&mut h, &set);
        expect_reply(&out, &data);
        let d = h.diff(&before);
        assert_eq!(d.get("Ip.ReasmReqds"), Some(&8), "{order:?}: {d:?}");
        assert_eq!(d.get("Ip.ReasmOKs"), Some(&1), "{order:?}: {d:?}");
        assert_eq!(d.get("Ip.ReasmFails"), None, "{order:?}: {d:?}");
        assert_eq!(d.get("Softnet.ReinjectLocal"), Some(&1), "{order:?}: {d:?}");
        assert_eq!(h.total_drops(), 0, "{d:?}");
        assert_eq!(h.stack.frags.queues(), 0);
        assert_eq!(h.stack.frags.mem(), 0);
        h.assert_pool_baseline();
    }
}

#[test]
fn duplicates_are_dropped_alone_and_reassembly_completes() {
    let data = payload(600);
    let frags = fragment(&ping_frame(9, 2, &data), 200);
    let mut h = Harness::new().with_static_peer();
    let set = vec![
        frags[0].clone(),
        frags[0].clone(),
        frags[1].clone(),
        frags[1].clone(),
        frags[2].clone(),
        frags[3].clone(),
    ];
    let out = echo_through(&mut h, &set);
    expect_reply(&out, &data);
    assert_eq!(h.drops(DropReason::DupFrag), 2);
    // A fragment contained in one already queued is a duplicate too.
    let mut h = Harness::new().with_static_peer();
    let before = h.mib();
    let inner = frag_frame(0x55, 8, true, &[0xab; 16]);
    let out = echo_through(&mut h, &[frag_frame(0x55, 0, true, &[0xab; 64]), inner]);
    assert!(out.is_empty());
    let d = h.diff(&before);
    assert_eq!(d.get("Drop.DupFrag"), Some(&1), "{d:?}");
    assert_eq!(h.stack.frags.queues(), 1);
}

#[test]
fn an_overlapping_fragment_kills_the_datagram() {
    let mut h = Harness::new().with_static_peer();
    let before = h.mib();
    let out = echo_through(
        &mut h,
        &[
            frag_frame(0x99, 0, true, &[1; 64]),
            // Starts inside the first fragment and runs past it: FragmentSmack's shape.
            frag_frame(0x99, 56, true, &[2; 64]),
            // The rest arrives: there is no datagram left to complete.
            frag_frame(0x99, 64, false, &[3; 56]),
        ],
    );
    assert!(out.is_empty(), "nothing answered");
    let d = h.diff(&before);
    assert_eq!(d.get("Ip.ReasmOverlaps"), Some(&1), "{d:?}");
    assert_eq!(d.get("Ip.ReasmFails"), Some(&1), "{d:?}");
    // The overlapping fragment and the one it hit.
    assert_eq!(d.get("Drop.FragOverlap"), Some(&2), "{d:?}");
    assert_eq!(d.get("Ip.ReasmOKs"), None, "{d:?}");
    // The third fragment opened a new queue, which times out.
    assert_eq!(h.stack.frags.queues(), 1);
    h.advance(30_001);
    assert_eq!(h.stack.frags.queues(), 0);
    h.assert_pool_baseline();
}

#[test]
fn a_datagram_past_65535_bytes_is_dropped() {
    let mut h = Harness::new().with_static_peer();
    let before = h.mib();
    // Ping of death: the last fragment ends past 65,535 bytes.
    let out = echo_through(
        &mut h,
        &[
            frag_frame(0x4444, 0, true, &[0; 64]),
            frag_frame(0x4444, 65_512, false, &[0; 16]),
        ],
    );
    assert!(out.is_empty());
    let d = h.diff(&before);
    assert_eq!(d.get("Ip.ReasmFails"), Some(&1), "{d:?}");
    assert_eq!(d.get("Drop.Oversize"), Some(&2), "{d:?}");
    assert_eq!(h.stack.frags.queues(), 0);
    h.assert_pool_baseline();
}

#[test]
fn an_incomplete_datagram_times_out_with_icmp_time_exceeded() {
    let mut h = Harness::new().with_static_peer();
    let data = payload(800);
    let frags = fragment(&ping_frame(0x10, 3, &data), 400);
    assert_eq!(frags.len(), 3);
    // First fragment present, one missing: ICMP time exceeded (fragment reassembly).
    let before = h.mib();
    assert!(echo_through(&mut h, &[frags[0].clone(), frags[2].clone()]).is_empty());
    h.advance(29_000);
    assert!(h.recv().is_empty(), "not before 30 s");
    assert_eq!(h.stack.frags.queues(), 1);
    h.advance(1_001);
    let out = h.recv();
    assert_eq!(out.len(), 1, "one ICMP error");
    let r = parse_icmp(&out[0]);
    match r.icmp.icmp_type {
        Icmpv4Type::TimeExceeded(c) => assert_eq!(c.code_u8(), 1, "fragment reassembly time exceeded"),
        other => panic!("{other:?}"),
    }
    // It quotes the first fragment's IP header.
    assert_eq!(&r.payload[..20], &frags[0][14..34]);
    let d = h.diff(&before);
    assert_eq!(d.get("Ip.ReasmTimeout"), Some(&1), "{d:?}");
    assert_eq!(d.get("Ip.ReasmFails"), Some(&1), "{d:?}");
    assert_eq!(d.get("Drop.FragReasmTimeout"), Some(&2), "{d:?}");
    assert_eq!(d.get("Icmp.OutTimeExcds"), Some(&1), "{d:?}");
    // Without the first fragment nobody is told.
    let before = h.mib();
    assert!(echo_through(&mut h, &[frags[1].clone()]).is_empty());
    h.advance(30_001);
    assert!(h.recv().is_empty());
    let d = h.diff(&before);
    assert_eq!(d.get("Ip.ReasmTimeout"), Some(&1), "{d:?}");
    assert_eq!(d.get("Icmp.OutTimeExcds"), None, "{d:?}");
    h.assert_pool_baseline();
}

#[test]
fn tiny_fragments_past_the_frag_slots_are_reassembled_by_copy() {
    // 76 fragments of 8 bytes: more pieces than an skb has fragment slots.
    let data = payload(600);
    let frags = fragment(&ping_frame(0x21, 4, &data), 8);
    assert!(frags.len() > blink_netcore::skbuff::MAX_SKB_FRAGS);
    let mut h = Harness::new().with_static_peer();
    let mut shuffled = frags.clone();
    shuffled.reverse();
    let out = echo_through(&mut h, &shuffled);
    expect_reply(&out, &data);
    assert_eq!(h.stack.core.mib.ip.get(IpMib::ReasmOKs), 1);
    h.assert_pool_baseline();
}

#[test]
fn a_flood_of_never_completed_sets_stays_within_high_thresh() {
    let cfg = StackConfig {
        ipfrag_high_thresh: 256 << 10,
        ipfrag_low_thresh: 192 << 10,
        ..Default::default()
    };
    let mut h = Harness::with_config(cfg).with_static_peer();
    let mut peak = 0;
    let mut x: u32 = 12345;
    for i in 0..20_000u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let id = (x >> 16) as u16;
        h.send(&frag_frame(id, 8 * (i as usize % 100), true, &[0x5a; 32]));
        if i % 32 == 31 {
            h.poll();
            peak = peak.max(h.stack.frags.mem());
        }
    }
    h.poll();
    assert!(peak <= 256 << 10, "peak {peak}");
    assert!(h.drops(DropReason::FragMemLimit) > 0);
    // A fragmented ping still gets through during the flood.
    let data = payload(1000);
    let out = echo_through(&mut h, &fragment(&ping_frame(0x31, 5, &data), 504));
    expect_reply(&out, &data);
    // Everything goes when the time is up.
    h.advance(30_001);
    assert_eq!(h.stack.frags.queues(), 0);
    assert_eq!(h.stack.frags.mem(), 0);
    h.assert_pool_baseline();
}

#[test]
fn a_queue_left_behind_by_max_dist_fragments_starts_again() {
    let mut h = Harness::new().with_static_peer();
    let data = payload(800);
    let frags = fragment(&ping_frame(0x41, 6, &data), 400);
    h.inject(&frags[0]);
    // 65 fragments of other datagrams from the same source.
    for id in 0..65u16 {
        h.inject(&frag_frame(1000 + id, 0, true, &[1; 8]));
    }
    let before = h.mib();
    let out = echo_through(&mut h, &[frags[1].clone(), frags[2].clone()]);
    assert!(out.is_empty(), "the stale first fragment was thrown away");
    let d = h.diff(&before);
    assert_eq!(d.get("Drop.FragTooFar"), Some(&1), "{d:?}");
    // Sent again in full, it completes.
    let out = echo_through(&mut h, &frags);
    expect_reply(&out, &data);
    h.advance(30_001);
    h.assert_pool_baseline();
}
