//! IPv4 reassembly. Linux: net/ipv4/ip_fragment.c (`ip_defrag`, `ip_frag_queue`,
//! `ip_frag_reasm`, `ip_expire`, `ip_frag_too_far`) over net/ipv4/inet_fragment.c
//! (`inet_frag_queue_insert`, the memory thresholds).
//!
//! Each core keeps its own queues: fragments carry no ports after the first, so every
//! steering path (NIC RSS, software RPS, the poller) hashes them by the 2-tuple and all
//! fragments of a datagram meet on one core. Once whole, the datagram is re-hashed on its
//! transport tuple and, when another core owns that flow, handed to it through its inbox
//! (`Softnet.ReinjectRemote` here, `ReinjectReceived` there) — see [`ip_reinject_deliver`].
//!
//! What Linux does and blink keeps:
//! - queues keyed by (saddr, daddr, id, protocol); fragments in any order;
//! - a fragment that overlaps another kills the whole datagram (`ReasmOverlaps`; Linux since
//!   2018, after FragmentSmack), an exact or contained duplicate is dropped alone (`DupFrag`);
//! - `ipfrag_time` (30 s): an incomplete datagram is dropped (`ReasmTimeout`) and, when its
//!   first fragment had arrived, answered with ICMP time exceeded, code 1;
//! - `ipfrag_high_thresh`/`low_thresh`: past high, the oldest queues go until below low
//!   (the evictor Linux had before 4.17; a flood of never-completed sets cannot grow memory);
//! - `ipfrag_max_dist` (64): a queue that saw no fragment while 64 others arrived from the
//!   same source is stale (ids wrapped) and starts again;
//! - a datagram that would exceed 65,535 bytes is dropped (ping of death).
//!
//! The reassembled skb is the first fragment's, with every later fragment's buffers added as
//! skb fragments: no payload is copied (unless a datagram arrives in more pieces than
//! `MAX_SKB_FRAGS` holds; then the later pieces are copied into as few mbufs as possible).
//!
//! Queues sit in a slab indexed by a hash map, and on a list in arrival order. Since every
//! queue lives exactly `ipfrag_time`, that list is also the expiry order: one per-core timer,
//! armed for the oldest queue, replaces Linux's timer per queue.

use std::net::Ipv4Addr;

use blink_netcore::rss::{hash2cpu, rss_hash_ipv4, RssHashType};
use blink_netcore::skbuff::{Frag, IpSummed, SkBuff, SkBuffHead, SkbCb, MAX_SKB_FRAGS};
use blink_netcore::snmp::{DropReason, IpMib, SoftnetMib};
use blink_netcore::timer::TimerId;
use hashbrown::HashMap;

use crate::icmp::icmp_send;
use crate::icmphdr::ICMP_TIME_EXCEEDED;
use crate::inbox::CoreMsg;
use crate::iphdr::{Ipv4Hdr, IPV4_MIN_HLEN};
use crate::stack::Stack;

/// ICMP time exceeded code: fragment reassembly time exceeded (Linux: ICMP_EXC_FRAGTIME).
pub const ICMP_EXC_FRAGTIME: u8 = 1;

/// Largest IPv4 datagram.
const IP_MAX_LEN: usize = 65_535;

const NIL: u32 = u32::MAX;

/// Per-fragment state in `skb->cb` (Linux: `struct ipfrag_skb_cb`): where the fragment's
/// bytes sit in the datagram, and its IP header length (pulled while it waits).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct FragCb {
    offset: u32,
    end: u32,
    ihl: u32,
}

// SAFETY: plain integers; every bit pattern is valid; 12 bytes, align 4.
unsafe impl SkbCb for FragCb {}

/// What identifies the datagram a fragment belongs to (Linux: `struct frag_v4_compare_key`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct FragKey {
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
    id: u16,
    protocol: u8,
}

/// One datagram being reassembled (Linux: `struct ipq` / `inet_frag_queue`).
struct FragQueue {
    key: FragKey,
    /// Fragments sorted by offset, IP headers pulled.
    fragments: SkBuffHead,
    /// Datagram payload length: exact once the last fragment came, else the furthest end seen.
    len: u32,
    /// Payload bytes received (Linux: `meat`).
    meat: u32,
    first_in: bool,
    last_in: bool,
    /// Buffer bytes held (whole mbufs), charged to the core's `mem`.
    mem: usize,
    /// Jiffies when the datagram gives up.
    expires: u64,
    /// The source's fragment counter at this queue's last fragment (ipfrag_max_dist).
    rid: u32,
    /// Arrival-order list (oldest first).
    prev: u32,
    next: u32,
}

/// Per-source fragment counter (Linux: `inet_peer.rid`), kept while the source has queues.
#[derive(Clone, Copy)]
struct Peer {
    rid: u32,
    queues: u32,
}

/// One core's reassembly state (Linux: the ipv4 `fqdir`).
pub struct IpFrags {
    map: HashMap<FragKey, u32>,
    slab: Vec<Option<FragQueue>>,
    free: Vec<u32>,
    oldest: u32,
    newest: u32,
    peers: HashMap<Ipv4Addr, Peer>,
    /// Buffer bytes held by all queues (Linux: `fqdir->mem`).
    mem: usize,
    timer: Option<TimerId>,
}

impl Default for IpFrags {
    fn default() -> Self {
        IpFrags {
            map: HashMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            oldest: NIL,
            newest: NIL,
            peers: HashMap::new(),
            mem: 0,
            timer: None,
        }
    }
}

impl IpFrags {
    /// Datagrams waiting for fragments.
    pub fn queues(&self) -> usize {
        self.map.len()
    }

    /// Buffer bytes the queues hold (compare with `ipfrag_high_thresh`).
    pub fn mem(&self) -> usize {
        self.mem
    }

    fn q(&mut self, i: u32) -> &mut FragQueue {
        self.slab[i as usize].as_mut().expect("live queue index")
    }

    fn lru_unlink(&mut self, i: u32) {
        let (p, n) = {
            let q = self.q(i);
            (q.prev, q.next)
        };
        if p == NIL {
            self.oldest = n;
        } else {
            self.q(p).next = n;
        }
        if n == NIL {
            self.newest = p;
        } else {
            self.q(n).prev = p;
        }
    }

    fn lru_push(&mut self, i: u32) {
        let last = self.newest;
        {
            let q = self.q(i);
            q.prev = last;
            q.next = NIL;
        }
        if last == NIL {
            self.oldest = i;
        } else {
            self.q(last).next = i;
        }
        self.newest = i;
    }

    /// Take queue `i` out of every index; the caller disposes of its fragments.
    fn unlink(&mut self, i: u32) -> FragQueue {
        self.lru_unlink(i);
        let q = self.slab[i as usize].take().expect("live queue index");
        self.free.push(i);
        self.map.remove(&q.key);
        self.mem -= q.mem;
        if let Some(p) = self.peers.get_mut(&q.key.saddr) {
            p.queues -= 1;
            if p.queues == 0 {
                self.peers.remove(&q.key.saddr);
            }
        }
        q
    }

    fn create(&mut self, key: FragKey, expires: u64) -> u32 {
        let peer = self.peers.entry(key.saddr).or_insert(Peer { rid: 0, queues: 0 });
        peer.queues += 1;
        let rid = peer.rid;
        let q = FragQueue {
            key,
            fragments: SkBuffHead::new(),
            len: 0,
            meat: 0,
            first_in: false,
            last_in: false,
            mem: 0,
            expires,
            rid,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(q);
                i
            }
            None => {
                self.slab.push(Some(q));
                (self.slab.len() - 1) as u32
            }
        };
        self.map.insert(key, i);
        self.lru_push(i);
        i
    }
}

/// Drop every fragment of a dead queue with `reason`.
fn free_queue(stack: &mut Stack, mut q: FragQueue, reason: DropReason) {
    while let Some(skb) = q.fragments.skb_dequeue() {
        stack.core.kfree_skb_reason(skb, reason);
    }
}

/// Kill queue `i`: ReasmFails, fragments dropped with `reason` (Linux: inet_frag_kill +
/// the `discard_qp` path).
fn ip_frag_kill(stack: &mut Stack, i: u32, reason: DropReason) {
    let q = stack.frags.unlink(i);
    stack.core.mib.ip.inc(IpMib::ReasmFails);
    free_queue(stack, q, reason);
}

/// Buffer bytes an skb pins: every mbuf it references, whole (Linux: `skb->truesize`).
fn frag_truesize(stack: &Stack, skb: &SkBuff) -> usize {
    stack.core.cache.pool().buf_size() * (1 + skb.frags().len())
}

/// Linux: ip_defrag(). `skb->data` is at the IP header of a fragment (MF set or offset > 0)
/// that passed `ip_rcv`. Returns the whole datagram (data at its IP header, total length and
/// fragment fields rewritten) when this fragment completed it; otherwise the fragment is
/// queued or dropped, counted either way.
pub fn ip_defrag(stack: &mut Stack, skb: SkBuff) -> Option<SkBuff> {
    stack.core.mib.ip.inc(IpMib::ReasmReqds);
    let truesize = frag_truesize(stack, &skb);
    // Linux 4.16's evictor: make room before taking more.
    if stack.frags.mem + truesize > stack.cfg.ipfrag_high_thresh {
        ip_evictor(stack, truesize);
    }
    let (key, ihl, offset, end, more) = {
        let h = Ipv4Hdr::new_unchecked(skb.data());
        let ihl = h.header_len();
        let key = FragKey {
            saddr: h.src(),
            daddr: h.dst(),
            id: h.id(),
            protocol: h.protocol(),
        };
        let offset = h.frag_offset();
        (key, ihl, offset, offset + h.total_len() as usize - ihl, h.more_frags())
    };
    let now = stack.core.jiffies;
    let i = match stack.frags.map.get(&key) {
        Some(&i) => i,
        None => {
            let i = stack.frags.create(key, now + stack.cfg.ipfrag_time_ms);
            ip_frag_arm_timer(stack);
            i
        }
    };
    // Linux: ip_frag_too_far(). Every fragment from the source moves its counter; a queue
    // left behind by more than max_dist of them is stale (its ids have likely wrapped).
    let max_dist = stack.cfg.ipfrag_max_dist;
    if max_dist > 0 {
        let rid = {
            let p = stack.frags.peers.get_mut(&key.saddr).expect("a queue keeps its peer");
            p.rid = p.rid.wrapping_add(1);
            p.rid
        };
        let q = stack.frags.q(i);
        let stale = rid.wrapping_sub(q.rid) > max_dist && (q.meat > 0);
        q.rid = rid;
        if stale {
            // Linux: ip_frag_reinit(). Drop what the queue holds and start it again with this
            // fragment.
            ip_frag_kill(stack, i, DropReason::FragTooFar);
            let i = stack.frags.create(key, now + stack.cfg.ipfrag_time_ms);
            ip_frag_arm_timer(stack);
            return ip_frag_queue(stack, i, skb, ihl, offset, end, more, truesize);
        }
    }
    ip_frag_queue(stack, i, skb, ihl, offset, end, more, truesize)
}

/// Linux: ip_frag_queue(). Place one fragment in queue `i`; reassemble when it completes it.
#[allow(clippy::too_many_arguments)]
fn ip_frag_queue(
    stack: &mut Stack,
    i: u32,
    mut skb: SkBuff,
    ihl: usize,
    offset: usize,
    mut end: usize,
    more: bool,
    truesize: usize,
) -> Option<SkBuff> {
    // Ping of death: no datagram may grow past 65,535 bytes.
    if end + ihl > IP_MAX_LEN {
        stack.core.kfree_skb_reason(skb, DropReason::Oversize);
        ip_frag_kill(stack, i, DropReason::Oversize);
        return None;
    }
    let q = stack.frags.q(i);
    if !more {
        // The last fragment fixes the length; it may neither shrink nor contradict it.
        if (end as u32) < q.len || (q.last_in && end as u32 != q.len) {
            stack.core.kfree_skb_reason(skb, DropReason::IpFrag);
            ip_frag_kill(stack, i, DropReason::IpFrag);
            return None;
        }
        q.last_in = true;
        q.len = end as u32;
    } else {
        // Every fragment but the last carries a multiple of 8 bytes; trim a stray tail as
        // Linux does (the checksum is verified later, over the reassembled datagram).
        end &= !7;
        if end as u32 > q.len {
            if q.last_in {
                stack.core.kfree_skb_reason(skb, DropReason::IpFrag);
                ip_frag_kill(stack, i, DropReason::IpFrag);
                return None;
            }
            q.len = end as u32;
        }
    }
    if end == offset {
        // Nothing in it (Linux: an empty fragment is dropped, the queue lives on).
        stack.core.kfree_skb_reason(skb, DropReason::IpFrag);
        return None;
    }
    // Overlaps (Linux: inet_frag_queue_insert): one inside an existing fragment is a
    // duplicate, dropped alone; any partial overlap kills the datagram.
    let mut dup = false;
    let mut overlap = false;
    for f in q.fragments.iter() {
        let c = f.cb::<FragCb>();
        let (fo, fe) = (c.offset as usize, c.end as usize);
        if fe <= offset || fo >= end {
            continue;
        }
        if fo <= offset && end <= fe {
            dup = true;
        } else {
            overlap = true;
        }
        break;
    }
    if dup {
        stack.core.kfree_skb_reason(skb, DropReason::DupFrag);
        return None;
    }
    if overlap {
        stack.core.mib.ip.inc(IpMib::ReasmOverlaps);
        stack.core.kfree_skb_reason(skb, DropReason::FragOverlap);
        ip_frag_kill(stack, i, DropReason::FragOverlap);
        return None;
    }
    // Keep only the fragment's own payload: the IP header goes (the first fragment's comes
    // back at reassembly), and so does anything past `end`.
    skb.skb_pull(ihl);
    skb.skb_trim(end - offset);
    {
        let cb = skb.cb_mut::<FragCb>();
        cb.offset = offset as u32;
        cb.end = end as u32;
        cb.ihl = ihl as u32;
    }
    if offset == 0 {
        q.first_in = true;
    }
    q.meat += (end - offset) as u32;
    q.mem += truesize;
    // In-order arrival appends; anything else walks back from the tail.
    q.fragments
        .skb_insert_sorted_from_tail(skb, |f| f.cb::<FragCb>().offset as usize > offset);
    let complete = q.first_in && q.last_in && q.meat == q.len;
    stack.frags.mem += truesize;
    if !complete {
        return None;
    }
    let q = stack.frags.unlink(i);
    ip_frag_reasm(stack, q)
}

/// Linux: ip_frag_reasm(). Join the fragments of a complete queue into one skb: the first
/// fragment's, its IP header restored and rewritten, the others' buffers as its fragments.
fn ip_frag_reasm(stack: &mut Stack, mut q: FragQueue) -> Option<SkBuff> {
    let mut head = q.fragments.skb_dequeue().expect("a complete queue has fragments");
    let ihl = head.cb::<FragCb>().ihl as usize;
    // Each fragment was held to 65,535 bytes with its own header; the datagram gets the first
    // one's, which may be longer (Linux: the out_oversize check of ip_frag_reasm).
    if ihl + q.len as usize > IP_MAX_LEN {
        stack.core.mib.ip.inc(IpMib::ReasmFails);
        free_queue(stack, q, DropReason::Oversize);
        stack.core.kfree_skb_reason(head, DropReason::Oversize);
        return None;
    }
    let need: usize = q
        .fragments
        .iter()
        .map(|f| usize::from(f.headlen() > 0) + f.frags().len())
        .sum::<usize>()
        + head.frags().len();
    let joined = if need <= MAX_SKB_FRAGS {
        // Zero copy: every later fragment's linear area and fragments become references.
        while let Some(f) = q.fragments.skb_dequeue() {
            if f.headlen() > 0 {
                let r = Frag::new(f.head_mbuf().clone(), f.data_offset(), f.headlen()).expect("inside the buffer");
                let _ = head.skb_add_frag(r);
            }
            for r in f.frags() {
                let _ = head.skb_add_frag(r.clone());
            }
            // `f` goes now; its buffers live on through the references.
        }
        true
    } else {
        ip_frag_reasm_copy(stack, &mut head, &mut q.fragments)
    };
    if !joined || !head.skb_unpull(ihl) {
        stack.core.mib.ip.inc(IpMib::ReasmFails);
        free_queue(stack, q, DropReason::NoMem);
        stack.core.kfree_skb_reason(head, DropReason::NoMem);
        return None;
    }
    let tot = head.len();
    let Some(buf) = head.data_mut() else {
        // The first fragment's header is shared with a clone (a raw socket holds it).
        stack.core.mib.ip.inc(IpMib::ReasmFails);
        stack.core.kfree_skb_reason(head, DropReason::NoMem);
        return None;
    };
    {
        let mut h = Ipv4Hdr::new_unchecked(&mut buf[..ihl]);
        h.set_total_len(tot as u16);
        h.set_frag_off(0);
        h.fill_checksum();
    }
    head.skb_reset_network_header();
    head.skb_set_transport_header(ihl);
    // Whatever the device said about the first fragment's checksum covers none of the rest.
    head.ip_summed = IpSummed::None;
    head.hash_type = RssHashType::None;
    stack.core.mib.ip.inc(IpMib::ReasmOKs);
    Some(head)
}

/// Reassembly of a datagram that came in more pieces than an skb has fragment slots (tiny
/// fragments): copy the later fragments' bytes into fresh mbufs, filled whole. The only
/// copy in reassembly, for a case no sane sender produces at speed.
#[cold]
fn ip_frag_reasm_copy(stack: &mut Stack, head: &mut SkBuff, rest: &mut SkBuffHead) -> bool {
    let mut cur: Option<blink_netcore::Mbuf> = None;
    while let Some(f) = rest.skb_dequeue() {
        for seg in f.segments() {
            let mut seg = seg;
            while !seg.is_empty() {
                if cur.as_ref().is_none_or(|m| m.tailroom() == 0) {
                    if let Some(m) = cur.take() {
                        if head.skb_add_frag(Frag::from_mbuf(m)).is_err() {
                            return false;
                        }
                    }
                    let Some(mut m) = stack.core.cache.alloc() else {
                        return false;
                    };
                    // The whole buffer is payload: no headers go in front of a fragment.
                    m.set_data(0, 0);
                    cur = Some(m);
                }
                let m = cur.as_mut().expect("just filled");
                let n = seg.len().min(m.tailroom());
                m.append_slice(&seg[..n]);
                seg = &seg[n..];
            }
        }
    }
    match cur {
        Some(m) => head.skb_add_frag(Frag::from_mbuf(m)).is_ok(),
        None => true,
    }
}

/// Linux's evictor (inet_frag_evictor, before 4.17): drop the oldest queues until the
/// memory, with `incoming` more, is under the low threshold.
fn ip_evictor(stack: &mut Stack, incoming: usize) {
    while stack.frags.mem + incoming > stack.cfg.ipfrag_low_thresh && stack.frags.oldest != NIL {
        let i = stack.frags.oldest;
        ip_frag_kill(stack, i, DropReason::FragMemLimit);
    }
}

/// Arm the core's reassembly timer for the oldest queue (or leave it off when none).
fn ip_frag_arm_timer(stack: &mut Stack) {
    let oldest = stack.frags.oldest;
    if oldest == NIL {
        return;
    }
    let expires = stack.frags.q(oldest).expires;
    let id = match stack.frags.timer {
        Some(id) => id,
        None => {
            let id = stack.timers.timer_setup(ip_expire, 0);
            stack.frags.timer = Some(id);
            id
        }
    };
    if stack.timers.timer_expires(id) != Some(expires) {
        stack.timers.mod_timer(id, expires);
    }
}

/// Linux: ip_expire(). Every queue whose time is up goes: ReasmTimeout + ReasmFails, and an
/// ICMP time exceeded (fragment reassembly) to the sender when its first fragment had come
/// (RFC 792; without it the sender could not be told which datagram it was).
fn ip_expire(stack: &mut Stack, _data: u64) {
    let now = stack.core.jiffies;
    while stack.frags.oldest != NIL {
        let i = stack.frags.oldest;
        if stack.frags.q(i).expires > now {
            break;
        }
        let mut q = stack.frags.unlink(i);
        stack.core.mib.ip.inc(IpMib::ReasmTimeout);
        stack.core.mib.ip.inc(IpMib::ReasmFails);
        if q.first_in {
            if let Some(mut first) = q.fragments.skb_dequeue() {
                let ihl = first.cb::<FragCb>().ihl as usize;
                if first.skb_unpull(ihl) {
                    icmp_send(stack, &first, ICMP_TIME_EXCEEDED, ICMP_EXC_FRAGTIME, 0);
                }
                stack.core.kfree_skb_reason(first, DropReason::FragReasmTimeout);
            }
        }
        free_queue(stack, q, DropReason::FragReasmTimeout);
    }
    ip_frag_arm_timer(stack);
}

/// The core that owns a whole packet's flow (`skb->data` at its IP header): TCP and UDP by
/// the Toeplitz hash of their 4-tuple (stored in the skb, as the NIC would have), anything
/// else — other protocols, fragments — stays here: it was steered by the 2-tuple, which is
/// what a whole packet of it would get too.
pub(crate) fn ip_flow_owner(stack: &Stack, skb: &mut SkBuff) -> u16 {
    if stack.nb_cores() < 2 || !skb.pskb_may_pull(IPV4_MIN_HLEN) {
        return stack.core.cpu;
    }
    // The ports must be linear to be read.
    let want = (Ipv4Hdr::new_unchecked(skb.data()).header_len() + 4).min(skb.len());
    let _ = skb.pskb_may_pull(want);
    match rss_hash_ipv4(&stack.core.toeplitz, skb.data()) {
        Some((hash, ty)) if ty.is_l4() => {
            skb.rss_hash = hash;
            skb.hash_type = ty;
            hash2cpu(&stack.core.reta, hash)
        }
        _ => stack.core.cpu,
    }
}

/// After reassembly: re-hash the datagram on its transport tuple and deliver it here when
/// this core owns the flow (`Softnet.ReinjectLocal`), else through the owner's inbox
/// (`ReinjectRemote`), where it continues at `ip_local_deliver`. Returns the skb when it
/// is this core's to deliver.
pub fn ip_reinject_deliver(stack: &mut Stack, mut skb: SkBuff) -> Option<SkBuff> {
    let owner = ip_flow_owner(stack, &mut skb);
    if owner == stack.core.cpu {
        stack.core.mib.softnet.inc(SoftnetMib::ReinjectLocal);
        return Some(skb);
    }
    if stack.post_to_core(owner, CoreMsg::LocalDeliver(skb)) {
        stack.core.mib.softnet.inc(SoftnetMib::ReinjectRemote);
    }
    None
}
