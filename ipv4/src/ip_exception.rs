//! The exception path's classifier: which received frames belong to the kernel that shares
//! blink's NIC (and its MAC and IP address) through a TAP.
//!
//! DPDK's answer to "how do we share TCP SYNs between kernel and user space" (KNI, now a
//! `virtio_user` exception path; F-Stack and mTCP do the same): ownership is decided on the
//! receive path, before the protocol code, by rules such as `tcp:22,udp:67-68,proto:89,arp`.
//! IPv4 only classifies and counts; the TAP itself is glue's (an [`ExceptionPath`] hook
//! registered with [`Stack::set_exception`]), so the dependencies still point down and TCP
//! and UDP never learn that a kernel exists: they call [`ip_exc_unclaimed`] where they would
//! otherwise answer RST or port unreachable (`unclaimed`).
//!
//! Who answers what, so that nothing is answered twice:
//! - A TCP/UDP port or protocol rule: the kernel only (blink never sees those datagrams).
//! - ICMP: blink answers echo and timestamp requests (one reply per ping); `icmp-copy` gives
//!   the kernel a copy of every other ICMP message (echo replies to the kernel's own pings,
//!   destination unreachable and fragmentation needed for its connections), which blink
//!   processes too. `proto:1` gives all ICMP to the kernel instead, and blink answers none.
//! - ARP: replies are always mirrored to both sides (both resolve neighbours on one address);
//!   `arp` mirrors requests too, so the kernel learns its peers from their requests as well
//!   (both then answer a request for the shared address with the same reply).
//! - `unclaimed`: a TCP segment or UDP datagram no blink socket wants, a protocol blink has
//!   no handler for, and frames of other EtherTypes (IPv6) go to the kernel instead of RST,
//!   port or protocol unreachable, or a drop.
//!
//! With no rules set, each hook on the packet path is one test of an empty `Option`.

use std::any::Any;
use std::str::FromStr;

use blink_netcore::if_ether::ETH_HLEN;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{DropReason, ExcMib};

use crate::icmphdr::ICMP_ECHO;
use crate::iphdr::{Ipv4Hdr, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use crate::stack::Stack;

/// ICMP timestamp request: blink answers it (see icmp.rs), so the kernel gets no copy.
const ICMP_TIMESTAMP: u8 = 13;

/// A set of 65,536 ports, one bit each (8 KiB, allocated once at configuration).
#[derive(Clone, PartialEq, Eq)]
struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    fn new() -> PortSet {
        PortSet(Box::new([0; 1024]))
    }
    fn insert_range(&mut self, lo: u16, hi: u16) {
        for p in lo..=hi {
            self.0[p as usize / 64] |= 1 << (p % 64);
        }
    }
    #[inline]
    fn contains(&self, p: u16) -> bool {
        self.0[p as usize / 64] & (1 << (p % 64)) != 0
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
}

/// The `--to-kernel` rules: which frames the kernel owns or sees a copy of.
#[derive(Clone, PartialEq, Eq)]
pub struct ExcRules {
    tcp: PortSet,
    udp: PortSet,
    /// IP protocol numbers owned by the kernel (`proto:N`).
    protos: [u64; 4],
    /// `arp`: ARP requests are mirrored to the kernel too (replies always are).
    pub arp: bool,
    /// `icmp-copy`: ICMP other than the requests blink answers is copied to the kernel.
    pub icmp_copy: bool,
    /// `unclaimed`: what no blink socket or handler wants goes to the kernel.
    pub unclaimed: bool,
    /// The rules as written, for messages and `blink link`.
    text: String,
}

impl std::fmt::Debug for ExcRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExcRules({})", self.text)
    }
}

impl std::fmt::Display for ExcRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What the classifier decided for one local datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExcVerdict {
    /// blink's own.
    Stack,
    /// The kernel's only.
    Kernel,
    /// blink processes it and the kernel gets a copy.
    Copy,
}

fn parse_port_range(kind: &str, s: &str, rule: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("`{rule}`: `{p}` is not a {kind} port (1..65535)")),
        }
    };
    match s.split_once('-') {
        None => port(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (lo, hi) = (port(a)?, port(b)?);
            if lo > hi {
                return Err(format!("`{rule}`: range {lo}-{hi} is empty (write LOW-HIGH)"));
            }
            Ok((lo, hi))
        }
    }
}

impl FromStr for ExcRules {
    type Err = String;

    /// `tcp:PORT[-PORT]`, `udp:PORT[-PORT]`, `proto:N`, `arp`, `icmp-copy`, `unclaimed`,
    /// separated by commas. Errors name the rule.
    fn from_str(s: &str) -> Result<ExcRules, String> {
        let mut r = ExcRules {
            tcp: PortSet::new(),
            udp: PortSet::new(),
            protos: [0; 4],
            arp: false,
            icmp_copy: false,
            unclaimed: false,
            text: s.trim().to_string(),
        };
        if s.trim().is_empty() {
            return Err("no rules given (e.g. tcp:22,udp:67-68,proto:89,arp,icmp-copy,unclaimed)".into());
        }
        for rule in s.split(',').map(str::trim) {
            match rule.split_once(':') {
                Some(("tcp", p)) => {
                    let (lo, hi) = parse_port_range("TCP", p, rule)?;
                    r.tcp.insert_range(lo, hi);
                }
                Some(("udp", p)) => {
                    let (lo, hi) = parse_port_range("UDP", p, rule)?;
                    r.udp.insert_range(lo, hi);
                }
                Some(("proto", p)) => {
                    let n: u8 = p
                        .parse()
                        .map_err(|_| format!("`{rule}`: `{p}` is not an IP protocol number (0..255)"))?;
                    r.protos[n as usize / 64] |= 1 << (n % 64);
                }
                None if rule == "arp" => r.arp = true,
                None if rule == "icmp-copy" => r.icmp_copy = true,
                None if rule == "unclaimed" => r.unclaimed = true,
                _ => {
                    return Err(format!(
                        "`{rule}` is not a rule (tcp:PORT[-PORT], udp:PORT[-PORT], proto:N, arp, icmp-copy, unclaimed)"
                    ))
                }
            }
        }
        Ok(r)
    }
}

impl ExcRules {
    /// True when `proto` belongs to the kernel as a whole (`proto:N`).
    #[inline]
    pub fn owns_proto(&self, proto: u8) -> bool {
        self.protos[proto as usize / 64] & (1 << (proto % 64)) != 0
    }

    /// True when some rule names TCP or UDP ports (the classifier needs the ports then).
    fn has_ports(&self) -> bool {
        !self.tcp.is_empty() || !self.udp.is_empty()
    }

    /// Classify a local datagram of protocol `proto` whose transport header starts `l4`
    /// (at least its first 4 bytes when there are any).
    pub fn classify(&self, proto: u8, l4: &[u8]) -> ExcVerdict {
        if self.owns_proto(proto) {
            return ExcVerdict::Kernel;
        }
        match proto {
            IPPROTO_TCP | IPPROTO_UDP if l4.len() >= 4 => {
                let dport = u16::from_be_bytes([l4[2], l4[3]]);
                let set = if proto == IPPROTO_TCP { &self.tcp } else { &self.udp };
                if set.contains(dport) {
                    ExcVerdict::Kernel
                } else {
                    ExcVerdict::Stack
                }
            }
            IPPROTO_ICMP if self.icmp_copy => match l4.first() {
                Some(&t) if t != ICMP_ECHO && t != ICMP_TIMESTAMP => ExcVerdict::Copy,
                _ => ExcVerdict::Stack,
            },
            _ => ExcVerdict::Stack,
        }
    }
}

/// The kernel's side of the exception path (glue's TAP, or a test's device): a hook, like
/// `InetProtocol`, so that IPv4 never opens a device of its own.
pub trait ExceptionPath: Send {
    /// Hand `skb` to the kernel; `skb->data` is at the Ethernet header, the frame as it
    /// arrived. The hook counts and frees what it cannot pass on.
    fn to_kernel(&mut self, stack: &mut Stack, skb: SkBuff);
    /// Send what the kernel transmitted out of blink's device, unchanged, and flush what is
    /// queued for the kernel. Returns the frames taken from the kernel.
    fn poll(&mut self, stack: &mut Stack) -> usize;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Bytes from the MAC header to `skb->data` when the frame's Ethernet header directly
/// precedes its IP header (not for a packet decapsulated from a tunnel, whose MAC header is
/// the outer frame's: that one stays blink's).
#[inline]
fn frame_rewind(skb: &SkBuff) -> Option<usize> {
    if !skb.skb_mac_header_was_set() || !skb.skb_network_header_was_set() {
        return None;
    }
    let (mac, net) = (skb.skb_mac_offset(), skb.skb_network_offset());
    (net - mac == ETH_HLEN as isize && mac <= 0).then_some((-mac) as usize)
}

/// Rewind `skb` to its Ethernet header and hand it to the kernel, counted as `why`.
fn exc_deliver(stack: &mut Stack, mut skb: SkBuff, why: ExcMib) {
    let Some(back) = frame_rewind(&skb) else {
        stack.core.kfree_skb_reason(skb, DropReason::ExcNoMacHeader);
        return;
    };
    if !skb.skb_unpull(back) {
        stack.core.kfree_skb_reason(skb, DropReason::ExcNoMacHeader);
        return;
    }
    if skb.trace {
        stack.core.mib.trace_event(&skb, "ip_exc_deliver", why_name(why));
    }
    exc_to_kernel(stack, skb, why);
}

/// Count and hand over; without a kernel side (rules set by hand, no hook) the frame is a
/// drop with a reason like any other, never lost silently.
fn exc_to_kernel(stack: &mut Stack, skb: SkBuff, why: ExcMib) {
    if !stack.has_exception_hook() {
        stack.core.kfree_skb_reason(skb, DropReason::DevNotUp);
        return;
    }
    stack.core.mib.exc.inc(why);
    stack.core.mib.exc.inc(ExcMib::ToKernel);
    stack.with_exception(|s, h| h.to_kernel(s, skb));
}

fn why_name(why: ExcMib) -> &'static str {
    use blink_netcore::snmp::MibEnum;
    why.name()
}

/// A private copy for the kernel (ARP, ICMP): blink goes on with the original, and may
/// rewrite its buffer before the copy is written to the TAP, so the copy shares nothing.
fn exc_copy(stack: &mut Stack, skb: &SkBuff) {
    let Some(back) = frame_rewind(skb) else {
        return;
    };
    let mut whole = skb.skb_clone(&mut stack.core.cache);
    let copy = whole.as_mut().and_then(|c| {
        if c.skb_unpull(back) {
            c.skb_copy(&mut stack.core.cache)
        } else {
            None
        }
    });
    drop(whole);
    let Some(copy) = copy else {
        stack.core.mib.drop_count(DropReason::NoMem);
        return;
    };
    exc_to_kernel(stack, copy, ExcMib::ToKernelCopy);
}

/// Called by `ip_local_deliver_finish` before raw sockets and the protocols see a datagram
/// (`skb->data` at the IP header). Returns the skb when blink is to process it; a copy may
/// have gone to the kernel meanwhile.
#[inline]
pub(crate) fn ip_exc_local(stack: &mut Stack, skb: SkBuff) -> Option<SkBuff> {
    if stack.exc_rules.is_none() {
        return Some(skb);
    }
    ip_exc_local_slow(stack, skb)
}

#[cold]
#[inline(never)]
fn ip_exc_local_slow(stack: &mut Stack, mut skb: SkBuff) -> Option<SkBuff> {
    let Some(rules) = stack.exc_rules.as_deref() else {
        return Some(skb);
    };
    let (proto, hlen) = {
        let h = Ipv4Hdr::new_unchecked(skb.data());
        (h.protocol(), h.header_len())
    };
    let need = if rules.has_ports() || rules.icmp_copy {
        hlen + 4
    } else {
        hlen
    };
    // A datagram too short for ports is left to the protocol, which drops it with a reason.
    let l4_ok = skb.len() >= need && skb.pskb_may_pull(need);
    let rules = stack.exc_rules.as_deref().expect("checked above");
    let l4: &[u8] = if l4_ok { &skb.data()[hlen..need] } else { &[] };
    match rules.classify(proto, l4) {
        ExcVerdict::Stack => Some(skb),
        ExcVerdict::Kernel => {
            exc_deliver(stack, skb, ExcMib::ToKernelRule);
            None
        }
        ExcVerdict::Copy => {
            exc_copy(stack, &skb);
            Some(skb)
        }
    }
}

/// The `unclaimed` fallback, for the places that would answer RST, port or protocol
/// unreachable, or drop an unknown EtherType: the skb goes to the kernel instead (`skb->data`
/// anywhere after the MAC header). Gives the skb back when there is no such rule, or when it
/// is not a frame as received (a tunnel's inner packet).
#[inline]
pub fn ip_exc_unclaimed(stack: &mut Stack, skb: SkBuff) -> Option<SkBuff> {
    match stack.exc_rules.as_deref() {
        Some(r) if r.unclaimed => ip_exc_unclaimed_slow(stack, skb),
        _ => Some(skb),
    }
}

#[cold]
#[inline(never)]
fn ip_exc_unclaimed_slow(stack: &mut Stack, skb: SkBuff) -> Option<SkBuff> {
    frame_rewind(&skb)?;
    exc_deliver(stack, skb, ExcMib::ToKernelUnclaimed);
    None
}

/// Frames of an EtherType blink does not handle (`skb->data` after the Ethernet header):
/// the kernel's with `unclaimed`.
pub(crate) fn exc_unhandled_ethertype(stack: &mut Stack, mut skb: SkBuff) -> Option<SkBuff> {
    match stack.exc_rules.as_deref() {
        Some(r) if r.unclaimed => {
            // The network header is where the EtherType's payload starts.
            skb.skb_reset_network_header();
            ip_exc_unclaimed_slow(stack, skb)
        }
        _ => Some(skb),
    }
}

/// ARP as both sides see it (`skb->data` at the ARP header): replies always, requests with
/// the `arp` rule, copied to the kernel; blink processes the original.
#[inline]
pub(crate) fn exc_arp(stack: &mut Stack, skb: &SkBuff) {
    let Some(rules) = stack.exc_rules.as_deref() else {
        return;
    };
    // Operation at bytes 6..8 of the ARP header; 2 is a reply.
    let d = skb.data();
    let reply = d.len() >= 8 && u16::from_be_bytes([d[6], d[7]]) == 2;
    if reply || rules.arp {
        exc_copy(stack, skb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_classify() {
        let r: ExcRules = "tcp:22, udp:67-68,proto:89,arp,icmp-copy".parse().unwrap();
        let ports = |d: u16| [0, 0, (d >> 8) as u8, d as u8];
        assert_eq!(r.classify(IPPROTO_TCP, &ports(22)), ExcVerdict::Kernel);
        assert_eq!(r.classify(IPPROTO_TCP, &ports(80)), ExcVerdict::Stack);
        assert_eq!(r.classify(IPPROTO_UDP, &ports(67)), ExcVerdict::Kernel);
        assert_eq!(r.classify(IPPROTO_UDP, &ports(68)), ExcVerdict::Kernel);
        assert_eq!(r.classify(IPPROTO_UDP, &ports(69)), ExcVerdict::Stack);
        assert_eq!(r.classify(IPPROTO_UDP, &ports(22)), ExcVerdict::Stack);
        assert_eq!(r.classify(89, &[]), ExcVerdict::Kernel);
        // Echo requests are blink's (answered once); an echo reply or an error is copied.
        assert_eq!(r.classify(IPPROTO_ICMP, &[ICMP_ECHO, 0, 0, 0]), ExcVerdict::Stack);
        assert_eq!(r.classify(IPPROTO_ICMP, &[0, 0, 0, 0]), ExcVerdict::Copy);
        assert_eq!(r.classify(IPPROTO_ICMP, &[3, 4, 0, 0]), ExcVerdict::Copy);
        assert!(r.arp && r.icmp_copy && !r.unclaimed);
        // A truncated TCP header is left to TCP, which drops it with its own reason.
        assert_eq!(r.classify(IPPROTO_TCP, &[]), ExcVerdict::Stack);
        let all_icmp: ExcRules = "proto:1".parse().unwrap();
        assert_eq!(
            all_icmp.classify(IPPROTO_ICMP, &[ICMP_ECHO, 0, 0, 0]),
            ExcVerdict::Kernel
        );
        let edge: ExcRules = "tcp:65535,tcp:1".parse().unwrap();
        assert_eq!(edge.classify(IPPROTO_TCP, &ports(65535)), ExcVerdict::Kernel);
        assert_eq!(edge.classify(IPPROTO_TCP, &ports(1)), ExcVerdict::Kernel);
        assert_eq!(edge.classify(IPPROTO_TCP, &ports(2)), ExcVerdict::Stack);
    }

    #[test]
    fn bad_rules_are_named() {
        for (bad, says) in [
            ("tcp:0", "`tcp:0`"),
            ("tcp:70000", "`tcp:70000`"),
            ("udp:68-67", "range 68-67"),
            ("proto:300", "`proto:300`"),
            ("sctp:5", "`sctp:5` is not a rule"),
            ("tcp:22,bogus", "`bogus` is not a rule"),
            ("", "no rules"),
            ("tcp:", "`tcp:`"),
        ] {
            let e = bad.parse::<ExcRules>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
