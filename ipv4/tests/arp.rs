//! ARP and the neighbour table under the virtual clock: announcements, replies, resolution with
//! retries and failure, queueing, NUD state changes, static entries and the table bound.

mod common;

use std::net::Ipv4Addr;

use blink_ipv4::icmp::icmp_send_echo;
use blink_ipv4::neighbour::{neigh_add_static, NudState};
use blink_ipv4::StackConfig;
use blink_netcore::snmp::{ArpMib, DropReason};
use blink_netcore::EthAddr;
use common::*;
use etherparse::{ArpOperation, Icmpv4Type};

fn now_ms(h: &Harness) -> u64 {
    h.clock.now_ns() / 1_000_000
}

fn state(h: &Harness, ip: Ipv4Addr) -> Option<NudState> {
    h.stack.neigh.lookup(ip).map(|n| n.state)
}

/// Advance 1 ms at a time for `ms` ms, polling each time; returns `(time, frame)` of every frame
/// the stack sent on the way.
fn run_for(h: &mut Harness, ms: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..ms {
        h.advance(1);
        let t = now_ms(h);
        out.extend(h.recv().into_iter().map(|f| (t, f)));
    }
    out
}

/// Check `f` is a broadcast "who-has `target` tell 10.0.0.1".
fn assert_broadcast_request(f: &[u8], target: Ipv4Addr) {
    let (eth, a) = parse_arp(f);
    assert_eq!(eth.destination, BCAST_MAC);
    assert_eq!(eth.source, STACK_MAC);
    assert_eq!(a.operation, ArpOperation::REQUEST);
    assert_eq!(a.sender_mac, STACK_MAC);
    assert_eq!(a.sender_ipv4_addr(), STACK_IP);
    assert_eq!(a.target_mac, [0; 6]);
    assert_eq!(a.target_ipv4_addr(), target);
}

/// Check `f` is a unicast probe "who-has PEER_IP" sent to the peer's known MAC.
fn assert_unicast_probe(f: &[u8]) {
    let (eth, a) = parse_arp(f);
    assert_eq!(eth.destination, PEER_MAC, "probes are unicast");
    assert_eq!(a.operation, ArpOperation::REQUEST);
    assert_eq!(a.sender_ipv4_addr(), STACK_IP);
    assert_eq!(a.target_ipv4_addr(), PEER_IP);
}

/// Check `f` is our echo request to the peer with sequence `seq`.
fn assert_echo_to_peer(f: &[u8], seq: u16) {
    let r = parse_icmp(f);
    assert_eq!(r.eth.destination, PEER_MAC);
    assert_eq!(r.eth.source, STACK_MAC);
    assert_eq!(r.ip.source, STACK_IP.octets());
    assert_eq!(r.ip.destination, PEER_IP.octets());
    match r.icmp.icmp_type {
        Icmpv4Type::EchoRequest(e) => assert_eq!((e.id, e.seq), (0xabcd, seq)),
        t => panic!("not an echo request: {t:?}"),
    }
}

/// Learn the peer through a request/reply exchange started by the peer; returns at the time
/// the entry became REACHABLE.
fn learn_peer(h: &mut Harness) {
    let out = h.exchange(&arp_request(PEER_IP, STACK_IP));
    assert_eq!(out.len(), 1);
    assert_eq!(state(h, PEER_IP), Some(NudState::Reachable));
}

#[test]
fn gratuitous_arp_on_add_addr() {
    let h = Harness::new();
    assert_eq!(h.setup_frames.len(), 1, "exactly one announcement");
    let (eth, a) = parse_arp(&h.setup_frames[0]);
    assert_eq!(eth.destination, BCAST_MAC);
    assert_eq!(eth.source, STACK_MAC);
    assert_eq!(a.operation, ArpOperation::REQUEST);
    assert_eq!(a.sender_mac, STACK_MAC);
    assert_eq!(a.sender_ipv4_addr(), STACK_IP);
    assert_eq!(a.target_ipv4_addr(), STACK_IP, "gratuitous: target = sender");
    assert_eq!(a.target_mac, [0; 6]);
    assert_eq!(h.stack.core.mib.arp[ArpMib::GratuitousSent], 1);
    assert_eq!(h.stack.core.mib.arp[ArpMib::OutRequests], 1);
    let mut h = h;
    h.assert_pool_baseline();

    // Off by configuration: nothing is sent.
    let mut h = Harness::with_config(StackConfig {
        arp_announce: false,
        ..Default::default()
    });
    assert!(h.setup_frames.is_empty());
    assert_eq!(h.stack.core.mib.arp[ArpMib::GratuitousSent], 0);
    h.assert_pool_baseline();
}

#[test]
fn our_own_gratuitous_arp_echoed_back_is_ignored() {
    let mut h = Harness::new();
    let frame = h.setup_frames[0].clone();
    let before = h.mib();
    let out = h.exchange(&frame);
    assert!(out.is_empty());
    assert_eq!(drop_part(&h.diff(&before)), counters(&[("Drop.ArpNotForUs", 1)]));
    assert!(h.stack.neigh.is_empty(), "no entry for our own address");
    h.assert_pool_baseline();
}

#[test]
fn answers_request_for_our_address() {
    let mut h = Harness::new();
    let before = h.mib();
    let out = h.exchange(&arp_request(PEER_IP, STACK_IP));
    assert_eq!(out.len(), 1);
    let (eth, a) = parse_arp(&out[0]);
    assert_eq!(eth.destination, PEER_MAC);
    assert_eq!(eth.source, STACK_MAC);
    assert_eq!(a.operation, ArpOperation::REPLY);
    assert_eq!(a.sender_mac, STACK_MAC);
    assert_eq!(a.sender_ipv4_addr(), STACK_IP);
    assert_eq!(a.target_mac, PEER_MAC);
    assert_eq!(a.target_ipv4_addr(), PEER_IP);
    assert_eq!(out[0].len(), 42, "14 + 28, unpadded");
    let d = h.diff(&before);
    assert_eq!(d.get("Arp.InRequests"), Some(&1));
    assert_eq!(d.get("Arp.OutReplies"), Some(&1));
    assert_eq!(drop_part(&d), counters(&[]));
    // The asker's entry is created so our own traffic needs no resolution.
    let n = h.stack.neigh.lookup(PEER_IP).expect("entry created");
    assert_eq!(n.state, NudState::Reachable);
    assert_eq!(n.mac, EthAddr(PEER_MAC));
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn answers_padded_request() {
    // Real ARP frames are padded to 60 bytes; the junk must not matter.
    let mut h = Harness::new();
    let mut f = arp_request(PEER_IP, STACK_IP);
    f.resize(60, 0xee);
    let out = h.exchange(&f);
    assert_eq!(out.len(), 1);
    let (_, a) = parse_arp(&out[0]);
    assert_eq!((a.operation, a.target_ipv4_addr()), (ArpOperation::REPLY, PEER_IP));
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn answers_arp_probe_from_unspecified_sender() {
    // RFC 5227 probe: sender 0.0.0.0. Answered (to 0.0.0.0 at the asker's MAC) and no entry.
    let mut h = Harness::new();
    let out = h.exchange(&arp_request(Ipv4Addr::UNSPECIFIED, STACK_IP));
    assert_eq!(out.len(), 1);
    let (eth, a) = parse_arp(&out[0]);
    assert_eq!(eth.destination, PEER_MAC);
    assert_eq!(a.operation, ArpOperation::REPLY);
    assert_eq!(a.target_ipv4_addr(), Ipv4Addr::UNSPECIFIED);
    assert!(h.stack.neigh.is_empty());
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn ignores_request_for_another_address() {
    let mut h = Harness::new();
    let before = h.mib();
    let out = h.exchange(&arp_request(PEER_IP, Ipv4Addr::new(10, 0, 0, 3)));
    assert!(out.is_empty(), "not our address: no reply");
    let d = h.diff(&before);
    assert_eq!(d.get("Arp.InRequests"), Some(&1));
    assert_eq!(d.get("Arp.OutReplies"), None);
    assert_eq!(drop_part(&d), counters(&[("Drop.ArpNotForUs", 1)]));
    assert!(
        h.stack.neigh.lookup(PEER_IP).is_none(),
        "ARP not for us creates no entry"
    );
    h.assert_pool_baseline();
}

#[test]
fn arp_not_for_us_refreshes_an_existing_entry() {
    let mut h = Harness::new();
    learn_peer(&mut h);
    // The peer moves to a new MAC and announces it (gratuitous ARP, not aimed at us).
    let new_mac = [0x02, 0, 0, 0, 0, 0x22];
    let garp = arp_frame(ArpOperation::REQUEST, BCAST_MAC, new_mac, PEER_IP, [0; 6], PEER_IP);
    assert!(h.exchange(&garp).is_empty());
    let n = h.stack.neigh.lookup(PEER_IP).unwrap();
    assert_eq!(n.mac, EthAddr(new_mac));
    assert_eq!(h.stack.core.mib.arp[ArpMib::Updates], 1);
    h.assert_pool_baseline();
}

#[test]
fn unresolved_neighbour_retries_then_fails() {
    let mut h = Harness::new();
    icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, 0, 56).expect("queued");
    h.stack.flush_tx();
    let first = h.recv();
    assert_eq!(first.len(), 1, "only the ARP request leaves, the ping waits");
    assert_broadcast_request(&first[0], PEER_IP);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Incomplete));
    let held = h.pool.in_use();
    assert!(held > h.baseline(), "the queued ping holds a buffer");

    // Retries exactly every retrans_time (1000 ms): at 1000 and 2000, then the entry fails
    // at 3000 after mcast_solicit (3) requests.
    let sent = run_for(&mut h, 2999);
    let times: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![1000, 2000]);
    for (_, f) in &sent {
        assert_broadcast_request(f, PEER_IP);
    }
    assert_eq!(state(&h, PEER_IP), Some(NudState::Incomplete));
    assert_eq!(h.drops(DropReason::NeighFailed), 0);

    let sent = run_for(&mut h, 1);
    assert!(sent.is_empty());
    assert_eq!(state(&h, PEER_IP), Some(NudState::Failed));
    assert_eq!(h.drops(DropReason::NeighFailed), 1);
    assert_eq!(h.stack.core.mib.arp[ArpMib::ResFailed], 1);
    assert_eq!(h.stack.core.mib.arp[ArpMib::UnresolvedDiscards], 1);
    assert_eq!(
        h.stack.core.mib.arp[ArpMib::OutRequests],
        1 + 3,
        "announcement + 3 requests"
    );
    assert_eq!(h.pool.in_use(), h.baseline(), "the queued ping was freed");

    // Nothing more is sent; the failed entry is collected after gc_stale_time (60 s).
    h.advance(59_999);
    assert!(h.recv().is_empty());
    assert_eq!(state(&h, PEER_IP), Some(NudState::Failed));
    h.advance(1);
    assert_eq!(state(&h, PEER_IP), None);
    h.assert_pool_baseline();
}

#[test]
fn failed_entry_restarts_resolution_on_new_traffic() {
    let mut h = Harness::new();
    icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, 0, 8).unwrap();
    h.stack.flush_tx();
    h.recv();
    run_for(&mut h, 3000);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Failed));
    icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, 1, 8).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    assert_broadcast_request(&out[0], PEER_IP);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Incomplete));
    // This time the peer answers after the second request.
    let sent = run_for(&mut h, 1000);
    assert_eq!(sent.len(), 1);
    let out = h.exchange(&arp_reply(PEER_MAC, PEER_IP));
    assert_eq!(out.len(), 1);
    assert_echo_to_peer(&out[0], 1);
    assert_eq!(h.drops(DropReason::NeighFailed), 1, "only the first ping was lost");
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn reply_releases_queued_packets_in_order() {
    let mut h = Harness::new();
    for seq in 0..3 {
        icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, seq, 56).unwrap();
    }
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1, "one request for three packets");
    assert_broadcast_request(&out[0], PEER_IP);
    run_for(&mut h, 500);
    let out = h.exchange(&arp_reply(PEER_MAC, PEER_IP));
    assert_eq!(out.len(), 3);
    for (seq, f) in out.iter().enumerate() {
        assert_echo_to_peer(f, seq as u16);
        assert_eq!(parse_icmp(f).payload.len(), 56);
    }
    assert_eq!(state(&h, PEER_IP), Some(NudState::Reachable));
    assert_eq!(h.stack.neigh.lookup(PEER_IP).unwrap().mac, EthAddr(PEER_MAC));
    // No more requests once resolved (the retransmit timer now counts reachable_time).
    assert!(run_for(&mut h, 5000).is_empty());
    // Later traffic leaves at once.
    icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, 9, 0).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    assert_echo_to_peer(&out[0], 9);
    assert_eq!(h.total_drops(), 0);
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn queue_bound_drops_with_neigh_queue_full() {
    let mut h = Harness::new();
    h.stack.neigh.parms.unres_qlen = 3;
    for seq in 0..5 {
        icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, seq, 16).unwrap();
    }
    h.stack.flush_tx();
    assert_eq!(h.recv().len(), 1);
    assert_eq!(h.drops(DropReason::NeighQueueFull), 2);
    assert_eq!(h.stack.core.mib.arp[ArpMib::UnresolvedDiscards], 2);
    let out = h.exchange(&arp_reply(PEER_MAC, PEER_IP));
    let seqs: Vec<u16> = out
        .iter()
        .map(|f| match parse_icmp(f).icmp.icmp_type {
            Icmpv4Type::EchoRequest(e) => e.seq,
            t => panic!("{t:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![0, 1, 2], "the first unres_qlen packets are kept");
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn reachable_becomes_stale_after_reachable_time() {
    let mut h = Harness::new();
    learn_peer(&mut h);
    h.advance(29_999);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Reachable));
    h.advance(1);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Stale));
    assert!(h.recv().is_empty(), "going stale sends nothing");
    // An unused stale entry is collected after gc_stale_time.
    h.advance(59_999);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Stale));
    h.advance(1);
    assert_eq!(state(&h, PEER_IP), None);
    h.assert_pool_baseline();
}

#[test]
fn stale_entry_in_use_is_probed_by_unicast() {
    let mut h = Harness::new();
    learn_peer(&mut h);
    h.advance(30_000);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Stale));
    let t0 = now_ms(&h);

    // Used while stale: the packet leaves at once with the cached MAC, no ARP yet.
    icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, 1, 8).unwrap();
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    assert_echo_to_peer(&out[0], 1);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Probe));

    // delay_first_probe_time (5 s), then ucast_solicit (3) unicast probes retrans_time apart,
    // then FAILED.
    let sent = run_for(&mut h, 8000);
    let times: Vec<u64> = sent.iter().map(|(t, _)| *t - t0).collect();
    assert_eq!(times, vec![5000, 6000, 7000]);
    for (_, f) in &sent {
        assert_unicast_probe(f);
    }
    assert_eq!(state(&h, PEER_IP), Some(NudState::Failed));
    assert_eq!(h.stack.core.mib.arp[ArpMib::ResFailed], 1);
    h.assert_pool_baseline();
}

#[test]
fn probe_answered_makes_entry_reachable_again() {
    let mut h = Harness::new();
    learn_peer(&mut h);
    h.advance(30_000);
    icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, 1, 8).unwrap();
    h.stack.flush_tx();
    h.recv();
    let sent = run_for(&mut h, 5000);
    assert_eq!(sent.len(), 1);
    assert_unicast_probe(&sent[0].1);
    assert!(h.exchange(&arp_reply(PEER_MAC, PEER_IP)).is_empty());
    assert_eq!(state(&h, PEER_IP), Some(NudState::Reachable));
    assert!(run_for(&mut h, 10_000).is_empty(), "no more probes");
    assert_eq!(h.stack.core.mib.arp[ArpMib::ResFailed], 0);
    h.assert_pool_baseline();
}

#[test]
fn static_entries_are_never_probed() {
    let mut h = Harness::new();
    neigh_add_static(&mut h.stack, PEER_IP, EthAddr(PEER_MAC), 0);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Permanent));
    for seq in 0..200u16 {
        icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, seq, 8).unwrap();
        h.advance(1000);
        let out = h.recv();
        assert_eq!(out.len(), 1, "at {} s: {out:02x?}", seq);
        assert_echo_to_peer(&out[0], seq);
    }
    // ARP cannot change a permanent entry.
    assert!(h.exchange(&arp_reply([0x02, 0, 0, 0, 0, 0x66], PEER_IP)).is_empty());
    let n = h.stack.neigh.lookup(PEER_IP).unwrap();
    assert_eq!((n.state, n.mac), (NudState::Permanent, EthAddr(PEER_MAC)));
    assert_eq!(h.stack.core.mib.arp[ArpMib::OutRequests], 1, "only the announcement");
    h.assert_pool_baseline();
}

#[test]
fn static_entry_releases_packets_waiting_for_resolution() {
    // `ip neigh replace ... nud permanent` while a ping waits: Linux's neigh_update() sends
    // the queued packets to the new address; they must not be dropped as NeighFailed.
    let mut h = Harness::new();
    icmp_send_echo(&mut h.stack, PEER_IP, 0xabcd, 4, 8).unwrap();
    h.stack.flush_tx();
    assert_eq!(h.recv().len(), 1);
    neigh_add_static(&mut h.stack, PEER_IP, EthAddr(PEER_MAC), 0);
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 1);
    assert_echo_to_peer(&out[0], 4);
    assert_eq!(h.drops(DropReason::NeighFailed), 0);
    assert_eq!(state(&h, PEER_IP), Some(NudState::Permanent));
    assert!(run_for(&mut h, 5000).is_empty(), "the old entry's timer is gone");
    drop(out);
    h.assert_pool_baseline();
}

#[test]
fn table_bound_is_respected_on_output() {
    let mut h = Harness::new();
    h.stack.neigh.parms.max_entries = 4;
    for last in 10..16u8 {
        icmp_send_echo(&mut h.stack, Ipv4Addr::new(10, 0, 0, last), 1, last as u16, 8).unwrap();
    }
    h.stack.flush_tx();
    let out = h.recv();
    assert_eq!(out.len(), 4, "one request per entry that fits");
    for (f, last) in out.iter().zip(10u8..) {
        assert_broadcast_request(f, Ipv4Addr::new(10, 0, 0, last));
    }
    assert_eq!(h.stack.neigh.len(), 4);
    assert_eq!(h.stack.core.mib.arp[ArpMib::TableFulls], 2);
    assert_eq!(h.drops(DropReason::NeighFailed), 2);
    // Let them fail; their queued pings are dropped too.
    run_for(&mut h, 3000);
    assert_eq!(h.drops(DropReason::NeighFailed), 6);
    // Failed entries are collectable: a new destination evicts one.
    icmp_send_echo(&mut h.stack, Ipv4Addr::new(10, 0, 0, 20), 1, 20, 8).unwrap();
    assert_eq!(h.stack.neigh.len(), 4);
    assert_eq!(state(&h, Ipv4Addr::new(10, 0, 0, 20)), Some(NudState::Incomplete));
    assert_eq!(h.stack.core.mib.arp[ArpMib::TableFulls], 2);
    run_for(&mut h, 3000);
    h.assert_pool_baseline();
}

#[test]
fn table_bound_is_respected_on_input() {
    let mut h = Harness::new();
    h.stack.neigh.parms.max_entries = 4;
    for last in 10..20u8 {
        let mut f = arp_request(Ipv4Addr::new(10, 0, 0, last), STACK_IP);
        f[6 + 5] = last; // Ethernet source
        f[14 + 8 + 5] = last; // sender hardware address
        let out = h.exchange(&f);
        assert_eq!(out.len(), 1, "every request is still answered");
        let (eth, a) = parse_arp(&out[0]);
        assert_eq!(eth.destination[5], last);
        assert_eq!(a.target_ipv4_addr(), Ipv4Addr::new(10, 0, 0, last));
    }
    assert_eq!(h.stack.neigh.len(), 4);
    assert_eq!(h.stack.core.mib.arp[ArpMib::TableFulls], 6);
    assert_eq!(h.total_drops(), 0);
    h.assert_pool_baseline();
}
