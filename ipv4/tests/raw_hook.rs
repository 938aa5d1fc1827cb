//! The raw-delivery hook (Linux: raw_local_deliver() in ip_local_deliver_finish()): a hook
//! that takes a packet of an unhandled protocol suppresses "protocol unreachable"; one that
//! declines leaves it; ICMP is offered to the hook and still answered by the stack.

mod common;

use std::any::Any;
use std::sync::{Arc, Mutex};

use blink_ipv4::{RawDeliver, Stack};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::IpMib;
use common::*;

/// (protocol, first byte at skb->data) of every packet offered to the hook.
type Seen = Arc<Mutex<Vec<(u8, u8)>>>;

/// A hook that keeps clones of what it is offered (when `take` is set) and records
/// (protocol, first byte at skb->data) of every offer.
struct Hook {
    take: bool,
    seen: Seen,
    kept: Vec<SkBuff>,
}

impl RawDeliver for Hook {
    fn raw_local_deliver(&mut self, stack: &mut Stack, skb: &SkBuff, protocol: u8) -> bool {
        self.seen.lock().unwrap().push((protocol, skb.data()[0]));
        if !self.take {
            return false;
        }
        let c = skb.skb_clone(&mut stack.core.cache).expect("clone");
        self.kept.push(c);
        true
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

fn harness(take: bool) -> (Harness, Seen) {
    let mut h = Harness::new().with_static_peer();
    let seen = Arc::new(Mutex::new(Vec::new()));
    assert!(h
        .stack
        .set_raw_handler(Box::new(Hook {
            take,
            seen: seen.clone(),
            kept: Vec::new(),
        }))
        .is_none());
    assert!(h.stack.has_raw_handler());
    (h, seen)
}

fn proto89_frame() -> Vec<u8> {
    eth_frame(
        STACK_MAC,
        PEER_MAC,
        ETH_P_IP,
        &ipv4_packet(PEER_IP, STACK_IP, 89, b"ospf-ish payload"),
    )
}

#[test]
fn taken_by_raw_means_no_protocol_unreachable() {
    let (mut h, seen) = harness(true);
    let out = h.exchange(&proto89_frame());
    assert!(out.is_empty(), "no ICMP when a raw socket took the packet: {out:02x?}");
    // The hook saw the packet from its IP header (0x45).
    assert_eq!(seen.lock().unwrap().as_slice(), &[(89, 0x45)]);
    assert_eq!(h.stack.core.mib.ip[IpMib::InUnknownProtos], 0);
    assert_eq!(h.stack.core.mib.ip[IpMib::InDelivers], 1);
    // The clone the hook keeps shares the buffer: freeing the hook returns everything.
    let n = h
        .stack
        .with_raw(|_, r| r.as_any_mut().downcast_mut::<Hook>().unwrap().kept.len())
        .unwrap();
    assert_eq!(n, 1);
    h.stack
        .with_raw(|_, r| r.as_any_mut().downcast_mut::<Hook>().unwrap().kept.clear())
        .unwrap();
    h.assert_pool_baseline();
}

#[test]
fn declined_by_raw_still_protocol_unreachable() {
    let (mut h, seen) = harness(false);
    let out = h.exchange(&proto89_frame());
    assert_eq!(out.len(), 1);
    parse_icmp(&out[0]);
    // Type 3 (destination unreachable), code 2 (protocol unreachable).
    assert_eq!((out[0][34], out[0][35]), (3, 2));
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(h.stack.core.mib.ip[IpMib::InUnknownProtos], 1);
    h.assert_pool_baseline();
}

#[test]
fn icmp_offered_to_raw_and_still_answered() {
    let (mut h, seen) = harness(true);
    let out = h.exchange(&ping_frame(7, 1, b"ping payload"));
    assert_eq!(out.len(), 1, "echo reply still sent");
    parse_icmp(&out[0]);
    assert_eq!(out[0][34], 0, "echo reply");
    assert_eq!(seen.lock().unwrap().as_slice(), &[(1, 0x45)]);
    h.stack
        .with_raw(|_, r| r.as_any_mut().downcast_mut::<Hook>().unwrap().kept.clear())
        .unwrap();
    h.assert_pool_baseline();
}
