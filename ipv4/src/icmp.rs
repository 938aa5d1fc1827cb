//! ICMPv4. Linux: net/ipv4/icmp.c (`icmp_rcv`, `icmp_echo`, `icmp_unreach`, `__icmp_send`,
//! `icmp_global_allow`).

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use blink_netcore::checksum::{csum_replace2, Csum};
use blink_netcore::skbuff::{Frag, IpSummed, PacketType, SkBuff, MAX_SKB_FRAGS};
use blink_netcore::snmp::{DropReason, IcmpMib, SoftnetMib};

use crate::icmphdr::*;
use crate::ip_output::{ip_append_data, ip_build_and_send_pkt, IpTx, IP_MAX_MTU};
use crate::iphdr::{Ipv4Hdr, IPPROTO_ICMP, IPV4_MIN_HLEN};
use crate::stack::{Stack, StackConfig};
use crate::Ipv4Error;

/// Most bytes of an ICMP error datagram (RFC 1812 4.3.2.3: as much of the original as fits
/// in 576 bytes).
const ICMP_ERR_MAX: usize = 576;

/// An echo reply the stack received (for `blink demo`'s ping and tests; raw sockets will
/// deliver them to applications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply {
    pub from: Ipv4Addr,
    pub id: u16,
    pub seq: u16,
    pub len: usize,
    /// Receive time, ns of the core's clock.
    pub tstamp: u64,
}

/// Per-core ICMP state: the global rate limiter and received echo replies.
#[derive(Debug)]
pub struct IcmpState {
    /// Token bucket (Linux: icmp_global), in tokens scaled by 1e9 to stay integral.
    tokens: u64,
    last_ns: u64,
    per_sec: u64,
    burst: u64,
    /// Most recent echo replies (bounded).
    pub echo_replies: VecDeque<EchoReply>,
}

const ECHO_REPLIES_MAX: usize = 1024;

impl IcmpState {
    pub fn new(cfg: &StackConfig, now_ns: u64) -> IcmpState {
        let burst = cfg.icmp_msgs_burst.max(1) as u64;
        IcmpState {
            tokens: burst * 1_000_000_000,
            last_ns: now_ns,
            per_sec: cfg.icmp_msgs_per_sec as u64,
            burst,
            echo_replies: VecDeque::new(),
        }
    }

    /// Linux: icmp_global_allow(). Errors are limited to `per_sec` with a `burst`.
    fn allow(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = now_ns;
        let cap = self.burst * 1_000_000_000;
        self.tokens = (self.tokens + elapsed.saturating_mul(self.per_sec)).min(cap);
        if self.tokens >= 1_000_000_000 {
            self.tokens -= 1_000_000_000;
            true
        } else {
            false
        }
    }
}

/// Checksum of the whole ICMP message (all segments).
fn icmp_csum(skb: &SkBuff) -> u16 {
    let mut c = Csum::new();
    for s in skb.segments() {
        c.add(s);
    }
    c.finish()
}

/// Linux: icmp_rcv(). `skb->data` is at the ICMP header; the IP header is at the network mark.
pub fn icmp_rcv(stack: &mut Stack, mut skb: SkBuff) {
    if skb.trace {
        stack.core.mib.trace_event(&skb, "icmp_rcv", "");
    }
    let mib = &mut stack.core.mib;
    mib.icmp.inc(IcmpMib::InMsgs);
    if skb.ip_summed != IpSummed::Unnecessary && icmp_csum(&skb) != 0 {
        mib.icmp.inc(IcmpMib::InCsumErrors);
        mib.icmp.inc(IcmpMib::InErrors);
        mib.kfree_skb_reason(skb, DropReason::IcmpCsum);
        return;
    }
    if !skb.pskb_may_pull(ICMP_HLEN) {
        mib.icmp.inc(IcmpMib::InErrors);
        mib.kfree_skb_reason(skb, DropReason::IcmpHdr);
        return;
    }
    let ty = IcmpHdr::new_unchecked(skb.data()).icmp_type();
    match ty {
        ICMP_ECHO => {
            mib.icmp.inc(IcmpMib::InEchos);
            icmp_echo(stack, skb);
        }
        ICMP_ECHOREPLY => {
            mib.icmp.inc(IcmpMib::InEchoReps);
            let h = IcmpHdr::new_unchecked(skb.data());
            let from = Ipv4Hdr::new_unchecked(skb.skb_network_header()).src();
            let r = EchoReply {
                from,
                id: h.echo_id(),
                seq: h.echo_seq(),
                len: skb.len() - ICMP_HLEN,
                tstamp: skb.tstamp,
            };
            let q = &mut stack.icmp.echo_replies;
            if q.len() == ECHO_REPLIES_MAX {
                q.pop_front();
            }
            q.push_back(r);
        }
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETERPROB | ICMP_SOURCE_QUENCH | ICMP_REDIRECT => {
            let c = match ty {
                ICMP_DEST_UNREACH => IcmpMib::InDestUnreachs,
                ICMP_TIME_EXCEEDED => IcmpMib::InTimeExcds,
                ICMP_PARAMETERPROB => IcmpMib::InParmProbs,
                ICMP_SOURCE_QUENCH => IcmpMib::InSrcQuenchs,
                _ => IcmpMib::InRedirects,
            };
            mib.icmp.inc(c);
            if ty != ICMP_REDIRECT && ty != ICMP_SOURCE_QUENCH {
                icmp_unreach(stack, skb);
            }
        }
        ICMP_TIMESTAMP => mib.icmp.inc(IcmpMib::InTimestamps),
        ICMP_TIMESTAMPREPLY => mib.icmp.inc(IcmpMib::InTimestampReps),
        // Other types are counted in InMsgs and ignored, as Linux does.
        _ => {}
    }
}

/// Linux: icmp_echo() / icmp_reply(). The reply reuses the request's payload buffers as
/// fragments (no copy) and patches the checksum for the changed type field.
fn icmp_echo(stack: &mut Stack, skb: SkBuff) {
    let (src, dst, tos) = {
        let ip = Ipv4Hdr::new_unchecked(skb.skb_network_header());
        (ip.src(), ip.dst(), ip.tos())
    };
    if (matches!(skb.pkt_type, PacketType::Broadcast | PacketType::Multicast) || stack.is_broadcast_addr(dst))
        && stack.cfg.icmp_echo_ignore_broadcasts
    {
        // Consumed on purpose (smurf protection), counted as InEchos already.
        return;
    }
    let Some(mut reply) = SkBuff::alloc(&mut stack.core.cache) else {
        stack.core.mib.icmp.inc(IcmpMib::OutErrors);
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return;
    };
    let mut hdr = [0u8; ICMP_HLEN];
    hdr.copy_from_slice(&skb.data()[..ICMP_HLEN]);
    {
        let mut h = IcmpHdr::new_unchecked(&mut hdr[..]);
        let old = h.checksum();
        let old_word = u16::from_be_bytes([h.icmp_type(), h.code()]);
        h.set_icmp_type(ICMP_ECHOREPLY);
        h.set_code(0);
        // Only the type/code word changed (8/code -> 0/0; the request's code need not be 0):
        // RFC 1624 incremental update. A result of 0x0000 is ambiguous: a full sum (what Linux's
        // icmp_reply computes) gives 0x0000 when the other words sum to 0xffff, but 0xffff
        // when every other word is zero (a reply to an all-zero request with id 0, seq 0), and
        // a receiver rejects 0x0000 there. Told apart by looking (once in 65,536 replies).
        let c = csum_replace2(old, old_word, 0);
        let all_zero = || {
            let mut buf = [0u8; 64];
            (ICMP_HLEN..skb.len()).step_by(buf.len()).all(|off| {
                let n = buf.len().min(skb.len() - off);
                skb.skb_copy_bits(off, &mut buf[..n]) && buf[..n].iter().all(|&b| b == 0)
            })
        };
        let negative_zero = c == 0 && h.rest_of_header() == 0 && all_zero();
        h.set_checksum(if negative_zero { 0xffff } else { c });
    }
    reply.skb_put_data(&hdr);
    // Payload: the request's own buffers, shared by refcount (a reassembled 60 KB ping is
    // ~45 fragments; IP fragments the reply on output, still without copying).
    let payload_len = skb.headlen() - ICMP_HLEN;
    if payload_len > 0 {
        let lin = &skb.data()[ICMP_HLEN..];
        if skb.frags().len() >= MAX_SKB_FRAGS {
            // No slot left for the linear part: copy it behind the reply's header instead.
            if !reply.skb_put_data(lin) {
                stack.core.mib.icmp.inc(IcmpMib::OutErrors);
                stack.core.kfree_skb_reason(reply, DropReason::NoMem);
                return;
            }
        } else {
            let f = Frag::new(skb.head_mbuf().clone(), skb.data_offset() + ICMP_HLEN, payload_len)
                .expect("inside the buffer");
            if reply.skb_add_frag(f).is_err() {
                stack.core.kfree_skb_reason(reply, DropReason::NoMem);
                return;
            }
        }
    }
    for f in skb.frags() {
        if reply.skb_add_frag(f.clone()).is_err() {
            stack.core.mib.icmp.inc(IcmpMib::OutErrors);
            stack.core.kfree_skb_reason(reply, DropReason::NoMem);
            return;
        }
    }
    stack.core.consume_skb(skb);
    let src_ip = if stack.is_local_addr(dst) { Some(dst) } else { None };
    let tx = IpTx {
        src: src_ip,
        dst: src,
        protocol: IPPROTO_ICMP,
        ttl: None,
        tos,
        df: false,
        id: None,
    };
    if ip_build_and_send_pkt(stack, reply, tx).is_ok() {
        stack.core.mib.icmp.inc(IcmpMib::OutMsgs);
        stack.core.mib.icmp.inc(IcmpMib::OutEchoReps);
    } else {
        stack.core.mib.icmp.inc(IcmpMib::OutErrors);
    }
}

/// Linux: icmp_unreach(). Pass the error to the protocol of the quoted packet.
fn icmp_unreach(stack: &mut Stack, mut skb: SkBuff) {
    if !skb.pskb_may_pull(ICMP_HLEN + IPV4_MIN_HLEN) {
        stack.core.mib.icmp.inc(IcmpMib::InErrors);
        stack.core.kfree_skb_reason(skb, DropReason::IcmpHdr);
        return;
    }
    // The quoted header must be sane and followed by the 8 bytes of transport header that
    // err_handler is promised (Linux: icmp_unreach() rejects ihl < 5, icmp_socket_deliver()
    // pulls ihl * 4 + 8 or counts InErrors).
    let inner_hlen = Ipv4Hdr::new_unchecked(&skb.data()[ICMP_HLEN..]).header_len();
    if inner_hlen < IPV4_MIN_HLEN || !skb.pskb_may_pull(ICMP_HLEN + inner_hlen + 8) {
        stack.core.mib.icmp.inc(IcmpMib::InErrors);
        stack.core.kfree_skb_reason(skb, DropReason::IcmpHdr);
        return;
    }
    let (ty, code, info) = {
        let h = IcmpHdr::new_unchecked(skb.data());
        (h.icmp_type(), h.code(), h.rest_of_header())
    };
    let inner = &skb.data()[ICMP_HLEN..];
    let proto = Ipv4Hdr::new_unchecked(inner).protocol();
    if stack.nb_cores() > 1 {
        let owner = icmp_err_owner(stack, inner);
        if owner != stack.core.cpu {
            // The flow the error is about lives on another core: its socket is there.
            let back = (-skb.skb_network_offset()).max(0) as usize;
            if skb.skb_unpull(back) && stack.post_to_core(owner, crate::inbox::CoreMsg::Reinject(skb)) {
                stack.core.mib.softnet.inc(SoftnetMib::ReinjectRemote);
            }
            return;
        }
    }
    if ty == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED {
        // Before the protocols hear of it, so TCP resizes to the new path MTU.
        icmp_frag_needed(stack, info, inner);
    }
    if stack.has_protocol(proto) {
        stack.with_protocol(proto, |s, p| p.err_handler(s, ty, code, info, inner));
    }
}

/// Linux: the ICMP_FRAG_NEEDED case of icmp_unreach() + ipv4_update_pmtu() /
/// __ip_rt_update_pmtu(). A router could not forward a datagram of ours with DF set: lower
/// the path MTU towards its destination to the next-hop MTU the router reports (the low 16
/// bits of the rest of the header), or, from a router too old to say (0), the RFC 1191
/// plateau below the refused datagram's length. Only about datagrams we sent (the quoted
/// source is one of our addresses). The FIB never raises the MTU and clamps it to 552.
fn icmp_frag_needed(stack: &mut Stack, info: u32, inner: &[u8]) {
    let ip = Ipv4Hdr::new_unchecked(inner);
    let (src, dst, tot_len) = (ip.src(), ip.dst(), ip.total_len() as usize);
    if !stack.is_local_addr(src) || dst.is_broadcast() || dst.is_multicast() {
        return;
    }
    let Some(r) = stack.fib.lookup(dst) else { return };
    let dev_mtu = stack.devs[r.dev as usize].mtu;
    let mtu = match (info & 0xffff) as usize {
        0 => crate::route::mtu_plateau(tot_len),
        m => m,
    };
    let now = stack.core.jiffies;
    if let Some(m) = stack.fib.update_pmtu(dst, mtu, dev_mtu, now) {
        log::debug!("path MTU to {dst} lowered to {m}");
    }
}

/// The core that owns the flow an ICMP error quotes (`inner`: the quoted IP header and at
/// least 8 bytes after it): the reply direction of the quoted TCP/UDP packet through the
/// Toeplitz hash and the RETA, as its segments are steered. Other protocols: this core.
fn icmp_err_owner(stack: &Stack, inner: &[u8]) -> u16 {
    let ip = Ipv4Hdr::new_unchecked(inner);
    let (hl, proto) = (ip.header_len(), ip.protocol());
    if !(proto == 6 || proto == 17) || inner.len() < hl + 4 {
        return stack.core.cpu;
    }
    // TCP and UDP headers both start with the source and destination ports.
    let sport = u16::from_be_bytes([inner[hl], inner[hl + 1]]);
    let dport = u16::from_be_bytes([inner[hl + 2], inner[hl + 3]]);
    stack.core.l4_owner(ip.dst(), ip.src(), dport, sport)
}

/// Linux: __icmp_send(). Send an ICMP error about `skb_in` (whose network mark points at its
/// IP header) unless the rules forbid it: never about an ICMP error, a non-first fragment, a
/// broadcast or multicast, or a packet from an unspecified/broadcast source; rate-limited.
pub fn icmp_send(stack: &mut Stack, skb_in: &SkBuff, ty: u8, code: u8, info: u32) {
    let nh = skb_in.skb_network_header();
    if nh.len() < IPV4_MIN_HLEN {
        return;
    }
    let ip = Ipv4Hdr::new_unchecked(nh);
    let (src, dst, hlen) = (ip.src(), ip.dst(), ip.header_len());
    if matches!(skb_in.pkt_type, PacketType::Broadcast | PacketType::Multicast)
        || stack.is_broadcast_addr(dst)
        || dst.is_multicast()
        || src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || ip.frag_offset() != 0
    {
        return;
    }
    if ip.protocol() == IPPROTO_ICMP {
        // Never answer an error with an error (RFC 1122 3.2.2).
        match nh.get(hlen) {
            Some(&t) if !icmp_is_err(t) => {}
            _ => return,
        }
    }
    if !stack.icmp.allow(stack.core.now_ns) {
        stack.core.mib.icmp.inc(IcmpMib::OutRateLimitGlobal);
        return;
    }
    let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
        stack.core.mib.icmp.inc(IcmpMib::OutErrors);
        stack.core.mib.drop_count(DropReason::NoMem);
        return;
    };
    // Quote as much of the original (from its IP header) as fits.
    let quote = (nh.len() + skb_in.data_len()).min(ICMP_ERR_MAX - IPV4_MIN_HLEN - ICMP_HLEN);
    let Some(buf) = skb.skb_put(ICMP_HLEN + quote) else {
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return;
    };
    let lin = quote.min(nh.len());
    buf[ICMP_HLEN..ICMP_HLEN + lin].copy_from_slice(&nh[..lin]);
    let mut off = ICMP_HLEN + lin;
    for f in skb_in.frags() {
        if off == buf.len() {
            break;
        }
        let n = f.len().min(buf.len() - off);
        buf[off..off + n].copy_from_slice(&f.bytes()[..n]);
        off += n;
    }
    {
        let mut h = IcmpHdr::new_unchecked(&mut buf[..]);
        h.set_icmp_type(ty);
        h.set_code(code);
        h.set_rest_of_header(info);
        h.fill_checksum();
    }
    // The source is the address the offending packet was sent to, when it is ours.
    let from = if stack.is_local_addr(dst) { Some(dst) } else { None };
    // Linux sends errors with IPTOS_PREC_INTERNETCONTROL.
    let tx = IpTx {
        src: from,
        dst: src,
        protocol: IPPROTO_ICMP,
        ttl: None,
        tos: 0xc0,
        df: false,
        id: None,
    };
    if ip_build_and_send_pkt(stack, skb, tx).is_ok() {
        let mib = &mut stack.core.mib;
        mib.icmp.inc(IcmpMib::OutMsgs);
        mib.icmp.inc(match ty {
            ICMP_DEST_UNREACH => IcmpMib::OutDestUnreachs,
            ICMP_TIME_EXCEEDED => IcmpMib::OutTimeExcds,
            ICMP_PARAMETERPROB => IcmpMib::OutParmProbs,
            _ => IcmpMib::OutRedirects,
        });
    } else {
        stack.core.mib.icmp.inc(IcmpMib::OutErrors);
    }
}

/// Send an echo request (what `ping` does through a raw socket) with `len` payload bytes
/// (a counting pattern). Up to 65,507 bytes: what does not fit the first mbuf goes in further
/// mbufs as fragments, and IP fragments the datagram when it exceeds the path MTU.
pub fn icmp_send_echo(stack: &mut Stack, dst: Ipv4Addr, id: u16, seq: u16, len: usize) -> Result<(), Ipv4Error> {
    let max = IP_MAX_MTU - IPV4_MIN_HLEN - ICMP_HLEN;
    if len > max {
        return Err(Ipv4Error::MessageTooLong {
            len: IPV4_MIN_HLEN + ICMP_HLEN + len,
            mtu: IP_MAX_MTU,
        });
    }
    let Some(mut skb) = SkBuff::alloc(&mut stack.core.cache) else {
        return Err(Ipv4Error::NoBuffers);
    };
    let fill = |off: usize, buf: &mut [u8]| {
        // Bytes 0..ICMP_HLEN are the header, written below; the pattern counts from the payload.
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (off + i).wrapping_sub(ICMP_HLEN) as u8;
        }
    };
    if let Err(e) = ip_append_data(stack, &mut skb, ICMP_HLEN + len, fill) {
        stack.core.kfree_skb_reason(skb, DropReason::NoMem);
        return Err(e);
    }
    {
        let Some(buf) = skb.data_mut() else {
            stack.core.kfree_skb_reason(skb, DropReason::NoMem);
            return Err(Ipv4Error::NoBuffers);
        };
        let mut h = IcmpHdr::new_unchecked(&mut buf[..ICMP_HLEN]);
        h.set_icmp_type(ICMP_ECHO);
        h.set_code(0);
        h.set_echo_id(id);
        h.set_echo_seq(seq);
        h.set_checksum(0);
    }
    // The checksum covers the fragments too.
    let c = icmp_csum(&skb);
    skb.data_mut().expect("checked writable above")[2..4].copy_from_slice(&c.to_be_bytes());
    let tx = IpTx {
        src: None,
        dst,
        protocol: IPPROTO_ICMP,
        ttl: None,
        tos: 0,
        df: false,
        id: None,
    };
    ip_build_and_send_pkt(stack, skb, tx)?;
    stack.core.mib.icmp.inc(IcmpMib::OutMsgs);
    stack.core.mib.icmp.inc(IcmpMib::OutEchos);
    Ok(())
}
