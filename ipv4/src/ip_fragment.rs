//! IPv4 fragmentation on output. Linux: net/ipv4/ip_output.c (`ip_fragment`, `ip_do_fragment`
//! and its slow path, `ip_frag_init` / `ip_frag_next`), and `skb_checksum_help` from
//! net/core/dev.c.
//!
//! Linux's slow path copies every fragment's payload into a fresh skb. blink does not copy:
//! each fragment is a fresh header skb (its own IP header in the linear area, with the pool's
//! headroom left for the Ethernet header) whose fragments reference slices of the original's
//! buffers by refcount, as the echo reply and TCP's segments already do. The original's buffers
//! are freed when the last fragment has left the device.

use blink_netcore::checksum::Csum;
use blink_netcore::if_ether::ETH_P_IP;
use blink_netcore::skbuff::{Frag, IpSummed, SkBuff, MAX_SKB_FRAGS};
use blink_netcore::snmp::{DropReason, IpMib};
use blink_netcore::Mbuf;

use crate::iphdr::{Ipv4Hdr, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN, IP_DF, IP_MF, IP_OFFSET};
use crate::stack::Stack;
use crate::Ipv4Error;

/// Linux: ip_fragment() + ip_do_fragment(). `skb->data` is at a complete IP header (no
/// options: blink builds 20-byte headers), the transport header and payload follow across the
/// linear area and the fragments. Cut the datagram into fragments of at most `mtu` bytes and
/// hand each to `output` (the device path, `ip_finish_output2`). Every fragment but the last
/// carries a multiple of 8 payload bytes.
///
/// Counters: FragOKs per datagram, FragCreates per fragment, FragFails (and the skb dropped
/// with a reason) on failure. A failure after some fragments left leaves them sent: the
/// receiver's reassembly times out, as with a fragment lost on the wire.
pub fn ip_fragment(
    stack: &mut Stack,
    mut skb: SkBuff,
    mtu: usize,
    mut output: impl FnMut(&mut Stack, SkBuff),
) -> Result<(), Ipv4Error> {
    let len = skb.len();
    let hdr_ok = skb.headlen() >= IPV4_MIN_HLEN && Ipv4Hdr::new_unchecked(skb.data()).header_len() == IPV4_MIN_HLEN;
    if !hdr_ok {
        // Options would need ip_options_fragment(); nothing in blink sends any.
        return frag_fail(
            stack,
            skb,
            DropReason::FragOptions,
            Ipv4Error::MessageTooLong { len, mtu },
        );
    }
    let hlen = IPV4_MIN_HLEN;
    let mut hdr = [0u8; IPV4_MIN_HLEN];
    hdr.copy_from_slice(&skb.data()[..hlen]);
    let orig_frag_off = Ipv4Hdr::new_unchecked(&hdr[..]).frag_off();
    if orig_frag_off & IP_DF != 0 || mtu < hlen + 8 {
        // Linux sends itself an ICMP "fragmentation needed"; a local sender gets EMSGSIZE.
        return frag_fail(stack, skb, DropReason::Oversize, Ipv4Error::MessageTooLong { len, mtu });
    }
    if skb.ip_summed == IpSummed::Partial {
        // The device would sum the whole datagram, but it will only ever see fragments: fill
        // the transport checksum now, before the header is shared by the first fragment.
        if !skb_checksum_help(&mut skb, hlen, hdr[9]) {
            return frag_fail(stack, skb, DropReason::NoMem, Ipv4Error::NoBuffers);
        }
    }

    // Payload bytes per fragment: what fits after the header, rounded down to 8.
    let per_frag = (mtu - hlen) & !7;
    // Re-fragmenting the non-last fragment of something keeps MF on every piece.
    let not_last = orig_frag_off & IP_MF;
    let base_offset = ((orig_frag_off & IP_OFFSET) as usize) << 3;
    let mut cursor = FragCursor::new(&skb, hlen);
    let mut offset = 0;
    let mut left = len - hlen;
    let mut sent = 0u64;
    while left > 0 {
        let n = left.min(per_frag);
        let more = n < left;
        let Some(mut frag) = SkBuff::alloc(&mut stack.core.cache) else {
            return frag_fail(stack, skb, DropReason::NoMem, Ipv4Error::NoBuffers);
        };
        let Some(h) = frag.skb_put(hlen) else {
            stack.core.kfree_skb_reason(frag, DropReason::NoMem);
            return frag_fail(stack, skb, DropReason::NoMem, Ipv4Error::NoBuffers);
        };
        h.copy_from_slice(&hdr);
        {
            let mut ip = Ipv4Hdr::new_unchecked(h);
            ip.set_total_len((hlen + n) as u16);
            let flags = (orig_frag_off & !(IP_OFFSET | IP_MF)) | if more { IP_MF } else { not_last };
            ip.set_frag_off(flags | (((base_offset + offset) >> 3) as u16 & IP_OFFSET));
            ip.fill_checksum();
        }
        if !cursor.attach(&skb, &mut frag, n) {
            stack.core.kfree_skb_reason(frag, DropReason::NoMem);
            return frag_fail(stack, skb, DropReason::NoMem, Ipv4Error::NoBuffers);
        }
        frag.skb_reset_network_header();
        frag.protocol = ETH_P_IP;
        frag.dev = skb.dev;
        frag.tstamp = skb.tstamp;
        stack.core.mib.ip.inc(IpMib::FragCreates);
        sent += 1;
        output(stack, frag);
        offset += n;
        left -= n;
    }
    debug_assert!(sent > 1, "ip_fragment on a datagram that fits");
    stack.core.mib.ip.inc(IpMib::FragOKs);
    // Consumed, not dropped: the fragments hold what they need of its buffers.
    stack.core.consume_skb(skb);
    Ok(())
}

/// FragFails, the drop counted with `reason`, and the error for the caller.
fn frag_fail(stack: &mut Stack, skb: SkBuff, reason: DropReason, err: Ipv4Error) -> Result<(), Ipv4Error> {
    stack.core.mib.ip.inc(IpMib::FragFails);
    stack.core.kfree_skb_reason(skb, reason);
    Err(err)
}

/// Linux: skb_checksum_help(). The transport checksum field of a CHECKSUM_PARTIAL skb holds
/// the pseudo-header sum; add the sum of the transport header and payload and store the
/// result, as the device would have. `hlen` is the IP header's length, `proto` its protocol.
/// False when the header is not linear or not writable (shared with a clone).
pub fn skb_checksum_help(skb: &mut SkBuff, hlen: usize, proto: u8) -> bool {
    let field = match proto {
        IPPROTO_UDP => 6,
        IPPROTO_TCP => 16,
        _ => return false,
    };
    if skb.headlen() < hlen + field + 2 || skb.skb_header_cloned() {
        return false;
    }
    let mut c = Csum::new();
    c.add(&skb.data()[hlen..]);
    for f in skb.frags() {
        c.add(f.bytes());
    }
    // A UDP checksum that sums to 0 is sent as all ones (0 means "none", RFC 768); for TCP
    // the two are the same number in ones' complement.
    let sum = match c.finish() {
        0 => 0xffff,
        v => v,
    };
    let Some(d) = skb.data_mut() else { return false };
    d[hlen + field..hlen + field + 2].copy_from_slice(&sum.to_be_bytes());
    skb.ip_summed = IpSummed::None;
    true
}

/// Where the next fragment's payload starts in the original: a segment (0 = the linear
/// area, i = frags[i - 1]) and a byte offset inside it. Linux walks the same way with
/// `ip_frag_state`'s ptr.
struct FragCursor {
    seg: usize,
    off: usize,
}

impl FragCursor {
    /// Positioned `skip` bytes into the packet (past the IP header).
    fn new(skb: &SkBuff, skip: usize) -> FragCursor {
        let mut c = FragCursor { seg: 0, off: 0 };
        c.advance(skb, skip);
        c
    }

    /// (buffer, offset in it, length) of segment `i`.
    fn segment(skb: &SkBuff, i: usize) -> Option<(&Mbuf, usize, usize)> {
        if i == 0 {
            return Some((skb.head_mbuf(), skb.data_offset(), skb.headlen()));
        }
        skb.frags().get(i - 1).map(|f| (f.mbuf(), f.offset(), f.len()))
    }

    fn advance(&mut self, skb: &SkBuff, mut n: usize) {
        while let Some((_, _, len)) = Self::segment(skb, self.seg) {
            let here = len - self.off;
            if n < here {
                self.off += n;
                return;
            }
            n -= here;
            self.seg += 1;
            self.off = 0;
            if n == 0 {
                return;
            }
        }
    }

    /// Pieces the next `n` bytes span.
    fn pieces(&self, skb: &SkBuff, mut n: usize) -> usize {
        let (mut i, mut off, mut count) = (self.seg, self.off, 0);
        while n > 0 {
            let Some((_, _, len)) = Self::segment(skb, i) else {
                break;
            };
            let take = (len - off).min(n);
            if take > 0 {
                count += 1;
            }
            n -= take;
            i += 1;
            off = 0;
        }
        count
    }

    /// Attach the next `n` bytes of `skb` to `frag` and move past them: as references to the
    /// original's buffers, or, when they span more pieces than an skb has fragment slots (a
    /// datagram reassembled from many tiny fragments), as one copy in `frag`'s linear area
    /// (the header skb has room for a whole fragment: the MTU is below the buffer size).
    fn attach(&mut self, skb: &SkBuff, frag: &mut SkBuff, n: usize) -> bool {
        if self.pieces(skb, n) > MAX_SKB_FRAGS {
            let at = self.byte_offset(skb);
            let ok = frag.skb_put(n).is_some_and(|dst| skb.skb_copy_bits(at, dst));
            self.advance(skb, n);
            return ok;
        }
        let mut left = n;
        while left > 0 {
            let Some((m, base, len)) = Self::segment(skb, self.seg) else {
                return false;
            };
            let take = (len - self.off).min(left);
            if take > 0 {
                let Some(f) = Frag::new(m.clone(), base + self.off, take) else {
                    return false;
                };
                if frag.skb_add_frag(f).is_err() {
                    return false;
                }
            }
            left -= take;
            // Also steps over an empty segment (take == 0).
            self.advance(skb, take);
        }
        true
    }

    /// The cursor as a byte offset from `skb->data`.
    fn byte_offset(&self, skb: &SkBuff) -> usize {
        (0..self.seg)
            .filter_map(|i| Self::segment(skb, i))
            .map(|s| s.2)
            .sum::<usize>()
            + self.off
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_output::{ip_build_and_send_pkt, IpTx};
    use crate::iphdr::IPPROTO_ICMP;
    use crate::neighbour::neigh_add_static;
    use crate::{Ipv4Cidr, StackConfig};
    use blink_netcore::checksum::{csum_fold, pseudo_header_ipv4};
    use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
    use blink_netcore::jiffies::{Clock, VirtualClock};
    use blink_netcore::netdevice::{Burst, NetDevice};
    use blink_netcore::{EthAddr, Mempool, MempoolConfig};
    use std::net::Ipv4Addr;

    /// (offset, length, MF) of each fragment of a datagram of `tot_len` bytes.
    fn fragment_bounds(tot_len: usize, mtu: usize) -> Vec<(usize, usize, bool)> {
        let per = (mtu - IPV4_MIN_HLEN) & !7;
        let mut v = Vec::new();
        let (mut off, mut left) = (0, tot_len - IPV4_MIN_HLEN);
        while left > 0 {
            let n = left.min(per);
            v.push((off, n, n < left));
            off += n;
            left -= n;
        }
        v
    }

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    struct H {
        stack: Stack,
        peer: WireDev,
        #[allow(dead_code)]
        clock: VirtualClock,
        pool: Mempool,
    }

    fn harness(mtu: usize) -> H {
        let pool = Mempool::new(&MempoolConfig {
            name: "frag".into(),
            n: 1024,
            cache_size: 32,
            ..Default::default()
        })
        .unwrap();
        let clock = VirtualClock::new();
        let (a, b) = wire_pair(
            ("blink0", "peer0"),
            (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr(PEER_MAC)),
            &WireConfig {
                mtu,
                ..Default::default()
            },
        );
        let mut stack = Stack::new(0, 1, Clock::virtual_clock(&clock), &pool, StackConfig::default());
        stack.add_device(Box::new(a), 0);
        stack.add_addr(0, Ipv4Cidr::new(US, 24).unwrap()).unwrap();
        neigh_add_static(&mut stack, PEER, EthAddr(PEER_MAC), 0);
        let mut h = H {
            stack,
            peer: b,
            clock,
            pool,
        };
        h.frames();
        h
    }

    impl H {
        /// Frames the stack sent, as skbs (their buffers still referenced).
        fn frames(&mut self) -> Vec<SkBuff> {
            self.stack.flush_tx();
            let mut out = Vec::new();
            loop {
                let mut b = Burst::new();
                if self.peer.rx_burst(0, &mut b) == 0 {
                    break;
                }
                out.extend(b);
            }
            out
        }

        fn counter(&self, c: IpMib) -> u64 {
            self.stack.core.mib.ip[c]
        }
    }

    fn linear(skb: &SkBuff) -> Vec<u8> {
        skb.segments().flat_map(|s| s.iter().copied()).collect()
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 256) as u8).collect()
    }

    /// An skb with `data` as transport payload: `lin` bytes linear, the rest in mbufs of at
    /// most `chunk` bytes as fragments.
    fn payload_skb(stack: &mut Stack, data: &[u8], lin: usize, chunk: usize) -> SkBuff {
        let mut skb = SkBuff::alloc(&mut stack.core.cache).unwrap();
        skb.skb_put_data(&data[..lin]);
        for c in data[lin..].chunks(chunk) {
            let mut m = stack.core.cache.alloc().unwrap();
            m.append_slice(c);
            skb.skb_add_frag(Frag::from_mbuf(m)).unwrap();
        }
        skb
    }

    /// Parse frames with etherparse; check each fragment's header, return (id, offset, MF,
    /// payload) per frame.
    fn parse(frames: &[SkBuff]) -> Vec<(u16, usize, bool, Vec<u8>)> {
        frames
            .iter()
            .map(|f| {
                let bytes = linear(f);
                let (eth, rest) = etherparse::Ethernet2Header::from_slice(&bytes).unwrap();
                assert_eq!(eth.ether_type, etherparse::EtherType::IPV4);
                let (ip, payload) = etherparse::Ipv4Header::from_slice(rest).unwrap();
                assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "header checksum");
                assert_eq!(ip.total_len as usize, 20 + payload.len());
                assert!(!ip.dont_fragment);
                (
                    ip.identification,
                    ip.fragment_offset.value() as usize * 8,
                    ip.more_fragments,
                    payload.to_vec(),
                )
            })
            .collect()
    }

    fn tx(df: bool) -> IpTx {
        IpTx {
            src: None,
            dst: PEER,
            protocol: 253,
            ttl: None,
            tos: 0,
            df,
            id: None,
        }
    }

    #[test]
    fn fragments_cover_datagram_exactly() {
        for (mtu, total, lin, chunk) in [
            (1500, 4000, 100, 2048),
            (1500, 1481, 1481, 2048),
            (1500, 65_515, 1000, 2048),
            (576, 3000, 0, 700),
            (1006, 9000, 13, 333),
            (68, 200, 50, 2048),
        ] {
            let mut h = harness(mtu);
            let data = pattern(total);
            let skb = payload_skb(&mut h.stack, &data, lin, chunk);
            let before = (h.counter(IpMib::FragOKs), h.counter(IpMib::FragCreates));
            ip_build_and_send_pkt(&mut h.stack, skb, tx(false)).unwrap();
            let frames = h.frames();
            let want = fragment_bounds(total + 20, mtu);
            assert_eq!(frames.len(), want.len(), "mtu {mtu} total {total}");
            let parsed = parse(&frames);
            let id = parsed[0].0;
            let mut joined = Vec::new();
            for ((pid, off, mf, p), (woff, wlen, wmf)) in parsed.iter().zip(&want) {
                assert_eq!(*pid, id, "same id");
                assert_eq!(off, woff);
                assert_eq!(off % 8, 0);
                assert_eq!(p.len(), *wlen);
                assert_eq!(mf, wmf);
                assert!(p.len() + 20 <= mtu);
                if *mf {
                    assert_eq!(p.len() % 8, 0, "non-last fragments carry multiples of 8");
                }
                joined.extend_from_slice(p);
            }
            assert_eq!(joined, data, "payloads concatenate to the original");
            assert_eq!(
                (h.counter(IpMib::FragOKs), h.counter(IpMib::FragCreates)),
                (before.0 + 1, before.1 + want.len() as u64)
            );
            assert_eq!(h.counter(IpMib::OutRequests), 1);
            assert_eq!(h.counter(IpMib::OutTransmits), want.len() as u64);
            drop(frames);
            assert_eq!(h.pool.in_use(), 0, "mtu {mtu}: leak");
        }
    }

    #[test]
    fn payload_is_shared_not_copied() {
        let mut h = harness(1500);
        let data = pattern(5000);
        let skb = payload_skb(&mut h.stack, &data, 600, 2048);
        // Addresses only: holding a reference would make the header read-only.
        let addrs: Vec<usize> = std::iter::once(skb.head_mbuf().buf_addr())
            .chain(skb.frags().iter().map(|f| f.mbuf().buf_addr()))
            .collect();
        let in_use = h.pool.in_use();
        ip_build_and_send_pkt(&mut h.stack, skb, tx(false)).unwrap();
        let frames = h.frames();
        assert_eq!(frames.len(), 4);
        // One header mbuf per fragment is all that was allocated.
        assert_eq!(h.pool.in_use(), in_use + frames.len());
        let refs = frames.iter().flat_map(|f| f.frags()).collect::<Vec<_>>();
        for fr in &refs {
            let a = fr.mbuf().buf_addr();
            assert!(addrs.contains(&a), "payload references the original's buffers");
            // The original is gone: each buffer is held exactly by the fragments using it.
            let users = refs.iter().filter(|o| o.mbuf().buf_addr() == a).count();
            assert_eq!(fr.mbuf().refcnt() as usize, users);
        }
        assert!(refs.len() > frames.len(), "some buffer spans two fragments");
        drop(refs);
        drop(frames);
        assert_eq!(h.pool.in_use(), 0);
    }

    #[test]
    fn df_oversize_refused() {
        let mut h = harness(1500);
        let skb = payload_skb(&mut h.stack, &pattern(1481), 1481, 2048);
        assert_eq!(
            ip_build_and_send_pkt(&mut h.stack, skb, tx(true)),
            Err(Ipv4Error::MessageTooLong { len: 1501, mtu: 1500 })
        );
        assert_eq!(h.counter(IpMib::FragFails), 1);
        assert_eq!(h.counter(IpMib::FragOKs), 0);
        assert_eq!(h.stack.core.mib.drops[DropReason::Oversize], 1);
        assert!(h.frames().is_empty());
        // Exactly the MTU goes with DF, unfragmented.
        let skb = payload_skb(&mut h.stack, &pattern(1480), 1480, 2048);
        ip_build_and_send_pkt(&mut h.stack, skb, tx(true)).unwrap();
        assert_eq!(h.frames().len(), 1);
        assert_eq!(h.pool.in_use(), 0);
    }

    #[test]
    fn over_65535_refused() {
        let mut h = harness(1500);
        let skb = payload_skb(&mut h.stack, &pattern(65_516), 0, 2048);
        assert_eq!(
            ip_build_and_send_pkt(&mut h.stack, skb, tx(false)),
            Err(Ipv4Error::MessageTooLong { len: 65_536, mtu: 1500 })
        );
        assert_eq!(h.stack.core.mib.drops[DropReason::Oversize], 1);
        assert!(h.frames().is_empty());
        let skb = payload_skb(&mut h.stack, &pattern(65_515), 0, 2048);
        ip_build_and_send_pkt(&mut h.stack, skb, tx(false)).unwrap();
        assert_eq!(h.frames().len(), 45);
        assert_eq!(h.pool.in_use(), 0);
    }

    #[test]
    fn many_tiny_pieces_fall_back_to_copy() {
        // 48 fragments of 30 bytes + 20 linear: a 1500-MTU fragment spans up to 49 pieces.
        let mut h = harness(1500);
        let data = pattern(20 + 48 * 30 + 1000);
        let mut skb = payload_skb(&mut h.stack, &data[..20 + 48 * 30], 20, 30);
        assert_eq!(skb.frags().len(), 48);
        // Make the last piece big so the datagram needs fragmenting.
        skb.skb_trim(20 + 47 * 30);
        let mut m = h.stack.core.cache.alloc().unwrap();
        m.append_slice(&data[20 + 47 * 30..]);
        skb.skb_add_frag(Frag::from_mbuf(m)).unwrap();
        assert_eq!(skb.len(), data.len());
        ip_build_and_send_pkt(&mut h.stack, skb, tx(false)).unwrap();
        let frames = h.frames();
        let joined: Vec<u8> = parse(&frames).into_iter().flat_map(|p| p.3).collect();
        assert_eq!(joined, data);
        drop(frames);
        assert_eq!(h.pool.in_use(), 0);
    }

    #[test]
    fn partial_checksum_filled_before_fragmenting() {
        let mut h = harness(1500);
        // A UDP datagram left CHECKSUM_PARTIAL: its checksum field holds the pseudo sum.
        let body = pattern(3000);
        let ulen = 8 + body.len();
        let mut data = vec![0x12, 0x34, 0x00, 0x35];
        data.extend_from_slice(&(ulen as u16).to_be_bytes());
        let pseudo = !csum_fold(pseudo_header_ipv4(US.octets(), PEER.octets(), IPPROTO_UDP, ulen as u16));
        data.extend_from_slice(&pseudo.to_be_bytes());
        data.extend_from_slice(&body);
        let mut skb = payload_skb(&mut h.stack, &data, 8, 2048);
        skb.ip_summed = IpSummed::Partial;
        let mut t = tx(false);
        t.protocol = IPPROTO_UDP;
        ip_build_and_send_pkt(&mut h.stack, skb, t).unwrap();
        let frames = h.frames();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.ip_summed != IpSummed::Unnecessary));
        let joined: Vec<u8> = parse(&frames).into_iter().flat_map(|p| p.3).collect();
        let udp = etherparse::UdpHeaderSlice::from_slice(&joined).unwrap().to_header();
        let want = udp
            .calc_checksum_ipv4_raw(US.octets(), PEER.octets(), &joined[8..])
            .unwrap();
        assert_eq!(udp.checksum, want, "checksum of the whole datagram");
        drop(frames);
        assert_eq!(h.pool.in_use(), 0);
    }

    #[test]
    fn direct_call_with_collecting_output() {
        let mut h = harness(1500);
        let data = pattern(2000);
        let mut skb = payload_skb(&mut h.stack, &data, 2000, 2048);
        {
            let p = skb.skb_push(20).unwrap();
            let mut ip = Ipv4Hdr::new_unchecked(p);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len(2020);
            ip.set_id(0x4242);
            ip.set_ttl(64);
            ip.set_protocol(IPPROTO_ICMP);
            ip.set_src(US);
            ip.set_dst(PEER);
            ip.fill_checksum();
        }
        let mut out = Vec::new();
        ip_fragment(&mut h.stack, skb, 1000, |_, f| out.push(f)).unwrap();
        assert_eq!(out.len(), 3);
        let mut joined = Vec::new();
        for (i, f) in out.iter().enumerate() {
            let b = linear(f);
            let ip = Ipv4Hdr::new_checked(&b[..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.id(), 0x4242);
            assert_eq!(ip.frag_offset(), i * 976);
            assert_eq!(ip.more_frags(), i < 2);
            assert!(f.skb_headroom() >= 14, "room for the Ethernet header");
            joined.extend_from_slice(ip.payload());
        }
        assert_eq!(joined, data);
        drop(out);
        assert_eq!(h.pool.in_use(), 0);
    }
}
