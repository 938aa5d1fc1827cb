//! MIB counters and drop reasons.
//!
//! Linux: include/uapi/linux/snmp.h (the `/proc/net/snmp` and `netstat` names) and
//! include/net/dropreason-core.h (`SKB_DROP_REASON_*`, `kfree_skb_reason()`).
//!
//! Every core owns one [`Mib`]; nothing is shared or atomic on the packet path. `blink stat`
//! and `--stats` sum the cores. Drops go through [`Mib::kfree_skb_reason`], so every dropped
//! packet lands in a named counter by construction.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use crate::skbuff::SkBuff;

/// A counter enum: its variants index a per-core array.
pub trait MibEnum: Copy + 'static {
    /// Section name as in /proc/net/snmp (`Ip`, `Icmp`, `Tcp`, ...).
    const PREFIX: &'static str;
    const ALL: &'static [Self];
    fn index(self) -> usize;
    fn name(self) -> &'static str;
}

macro_rules! mib_enum {
    ($(#[$m:meta])* $name:ident, $prefix:literal, [$($v:ident),* $(,)?]) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($v),* }
        impl MibEnum for $name {
            const PREFIX: &'static str = $prefix;
            const ALL: &'static [Self] = &[$($name::$v),*];
            #[inline]
            fn index(self) -> usize { self as usize }
            fn name(self) -> &'static str { match self { $($name::$v => stringify!($v)),* } }
        }
    };
}

mib_enum!(
    /// `Ip:` in /proc/net/snmp (RFC 4293 ipSystemStats).
    IpMib, "Ip", [InReceives, InHdrErrors, InAddrErrors, ForwDatagrams, InUnknownProtos,
    InDiscards, InDelivers, OutRequests, OutDiscards, OutNoRoutes, ReasmTimeout, ReasmReqds,
    ReasmOKs, ReasmFails, FragOKs, FragFails, FragCreates, InNoRoutes, InTruncatedPkts,
    InCsumErrors, OutTransmits, ReasmOverlaps]
);

mib_enum!(
    /// `Icmp:` in /proc/net/snmp.
    IcmpMib, "Icmp", [InMsgs, InErrors, InCsumErrors, InDestUnreachs, InTimeExcds, InParmProbs,
    InSrcQuenchs, InRedirects, InEchos, InEchoReps, InTimestamps, InTimestampReps, OutMsgs,
    OutErrors, OutRateLimitGlobal, OutDestUnreachs, OutTimeExcds, OutParmProbs, OutRedirects,
    OutEchos, OutEchoReps, OutTimestampReps]
);

mib_enum!(
    /// `Tcp:` in /proc/net/snmp (CurrEstab is a gauge, kept as a counter pair by TCP).
    TcpMib, "Tcp", [ActiveOpens, PassiveOpens, AttemptFails, EstabResets, CurrEstab, InSegs,
    OutSegs, RetransSegs, InErrs, OutRsts, InCsumErrors]
);

mib_enum!(
    /// `Udp:` in /proc/net/snmp.
    UdpMib, "Udp", [InDatagrams, NoPorts, InErrors, OutDatagrams, RcvbufErrors, SndbufErrors,
    InCsumErrors, IgnoredMulti, MemErrors]
);

mib_enum!(
    /// `TcpExt:` in /proc/net/netstat (the subset TCP maintains).
    TcpExtMib, "TcpExt", [SyncookiesSent, SyncookiesRecv, SyncookiesFailed, EmbryonicRsts,
    ListenOverflows, ListenDrops, TCPTimeouts, TCPSackRecovery, TCPRenoRecovery, TCPFastRetrans,
    TCPLossProbes, DelayedACKs, TCPChallengeACK, PAWSEstab, TCPAbortOnData, TCPAbortOnTimeout,
    TW, TWRecycled, TCPAbortOnClose, TCPACKSkippedChallenge, TCPSynRetrans, TCPACKSkippedSynRecv,
    TCPReqQFullDrop, TCPReqQFullDoCookies, TCPRcvQDrop, TCPOFODrop, OfoPruned,
    TCPSACKReneging, TCPLossProbeRecovery, TCPLostRetransmit,
    TCPSACKReorder, TCPDSACKRecv, TCPDSACKOfoRecv, TCPDSACKOldSent, TCPDSACKOfoSent, TCPDSACKIgnoredDubious,
    TCPDSACKUndo, TCPLossUndo, TCPFullUndo, TCPAbortOnLinger, TCPSYNChallenge]
);

mib_enum!(
    /// ARP / neighbour statistics (Linux: /proc/net/stat/arp_cache plus arp_rcv counts).
    ArpMib, "Arp", [InRequests, InReplies, OutRequests, OutReplies, Lookups, Hits, ResFailed,
    UnresolvedDiscards, TableFulls, GratuitousSent, Updates]
);

mib_enum!(
    /// Per-core steering counters (Linux: /proc/net/softnet_stat, whose `received_rps` counts
    /// frames another CPU steered here). `WrongCore` counts segments that reached a core with
    /// no socket for them while the tuple hashes to another core: impossible by construction,
    /// so tests assert it stays zero. `ReinjectLocal`/`ReinjectRemote` count packets whose
    /// flow was found only after reassembly, decapsulation or inside an ICMP error, and that
    /// this core then handled itself or sent to the owner core (`ReinjectReceived` there).
    SoftnetMib, "Softnet", [Processed, RssForwarded, ReceivedRps, RingDrops, NeighSent,
    NeighReceived, AppMsgsSent, AppMsgsReceived, ReinjectLocal, ReinjectRemote, ReinjectReceived,
    WrongCore]
);

mib_enum!(
    /// Why a packet was dropped (Linux: `enum skb_drop_reason`, names without the
    /// SKB_DROP_REASON_ prefix, in CamelCase).
    DropReason, "Drop", [NotSpecified, NoMem, PktTooSmall, OtherHost, UnhandledProto, EthHdr,
    ArpHdr, ArpNotForUs, IpCsum, IpInHdr, IpInAddrErrors, IpNoProto, IpOutNoRoutes, IpFrag,
    IpTtlZero, NeighFailed, NeighQueueFull, TxQueueFull, TxError, IcmpCsum, IcmpHdr,
    IcmpRateLimit, TcpCsum, UdpCsum, NoSocket, SocketRcvBuff, DevNotUp, RingFull, Oversize,
    ProtoMem, TcpOfoDrop, DupFrag, FragReasmTimeout, FragTooFar, FragOverlap, FragMemLimit,
    TunnelHdr, TunnelCsum, TunnelNoMatch, TcpFlags, TcpRfc7323Paws, TcpInvalidSequence,
    TcpInvalidAckSequence, TcpAckUnsentData, TcpTooOldAck, FragOptions, TcpOldData, TcpOfoMerge,
    TcpOverWindow, ExcNoMacHeader, ExcKernelTxFull, ExcKernelTxError, ExcFromKernelRunt,
    IpSourceRoute]
);

mib_enum!(
    /// The exception path (frames shared with the kernel through its TAP): `ToKernel` counts
    /// every frame handed to the kernel, split by why into `ToKernelRule` (a `--to-kernel`
    /// port or protocol rule took it), `ToKernelUnclaimed` (no socket in blink wanted it) and
    /// `ToKernelCopy` (an ARP or ICMP message both sides see); `FromKernel` counts the
    /// frames the kernel sent out through blink's device. Drops: `Drop.Exc*`.
    ExcMib, "Exc", [ToKernel, ToKernelRule, ToKernelUnclaimed, ToKernelCopy, FromKernel]
);

/// Counters a MIB section may have: the size of every section's array (a power of two).
const MIB_MAX: usize = 64;

/// Per-core counters of one MIB section.
///
/// A fixed-size array, indexed through [`Counters::slot`]: the index is masked into the array,
/// so a counter update is one add to memory, with no slice length to load and no bounds check
/// (a packet updates ten or so counters on its way through both ends of a connection). Slots
/// past the section's own counters stay zero.
#[derive(Clone)]
pub struct Counters<E: MibEnum> {
    v: Box<[u64; MIB_MAX]>,
    _e: PhantomData<E>,
}

impl<E: MibEnum> Default for Counters<E> {
    fn default() -> Self {
        const { assert!(E::ALL.len() <= MIB_MAX, "a MIB section outgrew MIB_MAX") };
        Counters {
            v: Box::new([0; MIB_MAX]),
            _e: PhantomData,
        }
    }
}

impl<E: MibEnum> Counters<E> {
    /// `e`'s slot. Its index is below `E::ALL.len()`, so the mask changes nothing; it only
    /// lets the compiler see that the index is in the array.
    #[inline(always)]
    fn slot(e: E) -> usize {
        e.index() & (MIB_MAX - 1)
    }

    #[inline]
    pub fn inc(&mut self, e: E) {
        self.v[Self::slot(e)] += 1;
    }

    #[inline]
    pub fn add(&mut self, e: E, n: u64) {
        self.v[Self::slot(e)] += n;
    }

    #[inline]
    pub fn dec(&mut self, e: E) {
        let i = Self::slot(e);
        self.v[i] = self.v[i].wrapping_sub(1);
    }

    #[inline]
    pub fn get(&self, e: E) -> u64 {
        self.v[Self::slot(e)]
    }

    /// (name, value) of every counter.
    pub fn iter(&self) -> impl Iterator<Item = (E, u64)> + '_ {
        E::ALL.iter().map(move |&e| (e, self.v[Self::slot(e)]))
    }

    pub fn merge(&mut self, other: &Counters<E>) {
        for (a, b) in self.v.iter_mut().zip(other.v.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// Two lines in /proc/net/snmp format: names, then values.
    pub fn snmp_lines(&self, out: &mut String) {
        let _ = write!(out, "{}:", E::PREFIX);
        for &e in E::ALL {
            let _ = write!(out, " {}", e.name());
        }
        let _ = write!(out, "\n{}:", E::PREFIX);
        for &e in E::ALL {
            let _ = write!(out, " {}", self.v[Self::slot(e)]);
        }
        out.push('\n');
    }

    pub fn total(&self) -> u64 {
        self.v.iter().sum()
    }
}

impl<E: MibEnum> Index<E> for Counters<E> {
    type Output = u64;
    fn index(&self, e: E) -> &u64 {
        &self.v[Self::slot(e)]
    }
}

impl<E: MibEnum> IndexMut<E> for Counters<E> {
    fn index_mut(&mut self, e: E) -> &mut u64 {
        &mut self.v[Self::slot(e)]
    }
}

/// All counters of one core.
/// Where drops happened (dropwatch's "N drops at function+offset"): the call site of each
/// `kfree_skb_reason`, found by `#[track_caller]`, with its reason and count. Bounded by the
/// number of drop sites in the code; touched only when a packet is dropped.
#[derive(Clone, Default)]
pub struct DropSites {
    /// (file, line, reason) -> count: a site may drop for more than one reason.
    map: hashbrown::HashMap<(&'static str, u32, DropReason), u64>,
}

impl DropSites {
    #[cold]
    fn add(&mut self, at: &'static std::panic::Location<'static>, reason: DropReason, n: u64) {
        *self.map.entry((at.file(), at.line(), reason)).or_insert(0) += n;
    }

    fn merge(&mut self, o: &DropSites) {
        for (k, n) in &o.map {
            *self.map.entry(*k).or_insert(0) += n;
        }
    }

    /// (file, line, reason, count), most frequent first.
    pub fn list(&self) -> Vec<(&'static str, u32, DropReason, u64)> {
        let mut v: Vec<_> = self.map.iter().map(|(&(f, l, r), &n)| (f, l, r, n)).collect();
        v.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(b.0)).then(a.1.cmp(&b.1)));
        v
    }
}

#[derive(Clone, Default)]
pub struct Mib {
    pub ip: Counters<IpMib>,
    pub icmp: Counters<IcmpMib>,
    pub tcp: Counters<TcpMib>,
    pub udp: Counters<UdpMib>,
    pub tcp_ext: Counters<TcpExtMib>,
    pub arp: Counters<ArpMib>,
    pub softnet: Counters<SoftnetMib>,
    pub exc: Counters<ExcMib>,
    pub drops: Counters<DropReason>,
    /// Where the drops happened.
    pub drop_sites: DropSites,
    /// The packet tracer, when one runs on this core.
    pub trace: crate::trace::TraceSlot,
}

impl Mib {
    /// Linux: kfree_skb_reason(). Free the packet's buffers and count why, and where.
    #[inline]
    #[track_caller]
    pub fn kfree_skb_reason(&mut self, skb: SkBuff, reason: DropReason) {
        self.kfree_skb_note(&skb, reason);
        drop(skb);
    }

    /// What kfree_skb_reason records before it frees: the drop counted, a traced skb's path
    /// ended with `kfree_skb` and the reason.
    #[inline]
    #[track_caller]
    pub fn kfree_skb_note(&mut self, skb: &SkBuff, reason: DropReason) {
        self.drop_count(reason);
        if skb.trace {
            self.trace_event(skb, "kfree_skb", reason.name());
        }
    }

    /// Linux: consume_skb(). Free a packet whose journey ended normally (delivered, answered,
    /// acknowledged): not a drop, so no counter moves, but a traced packet's path ends with
    /// `consume_skb` rather than silently, and never looks like a `kfree_skb`.
    #[inline]
    pub fn consume_skb(&mut self, skb: SkBuff) {
        if skb.trace {
            self.trace_event(&skb, "consume_skb", "");
        }
        drop(skb);
    }

    /// Record that a traced `skb` passed `func` (callers test `skb.trace` first).
    #[cold]
    pub fn trace_event(&mut self, skb: &SkBuff, func: &'static str, detail: &'static str) {
        if let Some(t) = self.trace.0.as_mut() {
            t.event(skb.host_addr(), func, detail);
        }
    }

    /// The tracer's entry point: mark `skb` (whose `ip` is its IPv4 header) when a tracer
    /// runs and its filter takes it, and record `func`. Off, one test of an empty Option.
    #[inline]
    pub fn trace_select(&mut self, skb: &mut SkBuff, ip_off: usize, func: &'static str) {
        if self.trace.0.is_some() {
            self.trace_select_slow(skb, ip_off, func);
        }
    }

    #[cold]
    fn trace_select_slow(&mut self, skb: &mut SkBuff, ip_off: usize, func: &'static str) {
        let Some(t) = self.trace.0.as_mut() else { return };
        if skb.trace {
            t.event(skb.host_addr(), func, "");
            return;
        }
        let d = skb.data();
        if d.len() > ip_off && t.select(&d[ip_off..]) {
            skb.trace = true;
            t.event(skb.host_addr(), func, "");
        }
    }

    /// Count a drop that has no skb to free (the buffer for it could not be had).
    #[inline]
    #[track_caller]
    pub fn drop_count(&mut self, reason: DropReason) {
        self.drops.inc(reason);
        self.drop_sites.add(std::panic::Location::caller(), reason, 1);
    }

    /// Sum another core's counters into these.
    pub fn merge(&mut self, o: &Mib) {
        self.drop_sites.merge(&o.drop_sites);
        self.ip.merge(&o.ip);
        self.icmp.merge(&o.icmp);
        self.tcp.merge(&o.tcp);
        self.udp.merge(&o.udp);
        self.tcp_ext.merge(&o.tcp_ext);
        self.arp.merge(&o.arp);
        self.softnet.merge(&o.softnet);
        self.exc.merge(&o.exc);
        self.drops.merge(&o.drops);
    }

    /// The whole MIB in /proc/net/snmp format (name line + value line per section).
    pub fn snmp(&self) -> String {
        let mut s = String::new();
        self.ip.snmp_lines(&mut s);
        self.icmp.snmp_lines(&mut s);
        self.tcp.snmp_lines(&mut s);
        self.udp.snmp_lines(&mut s);
        self.tcp_ext.snmp_lines(&mut s);
        self.arp.snmp_lines(&mut s);
        self.softnet.snmp_lines(&mut s);
        self.exc.snmp_lines(&mut s);
        self.drops.snmp_lines(&mut s);
        s
    }

    /// A counter by its `Section.Name` (`Tcp.RetransSegs`, `Drop.IpCsum`), zero or not; None
    /// when no counter has that name, so a misspelt name in a check fails instead of
    /// reading 0.
    pub fn by_name(&self, name: &str) -> Option<u64> {
        fn find<E: MibEnum>(c: &Counters<E>, name: &str) -> Option<u64> {
            let rest = name.strip_prefix(E::PREFIX)?.strip_prefix('.')?;
            c.iter().find(|(e, _)| e.name() == rest).map(|(_, v)| v)
        }
        find(&self.ip, name)
            .or_else(|| find(&self.icmp, name))
            .or_else(|| find(&self.tcp, name))
            .or_else(|| find(&self.udp, name))
            .or_else(|| find(&self.tcp_ext, name))
            .or_else(|| find(&self.arp, name))
            .or_else(|| find(&self.softnet, name))
            .or_else(|| find(&self.drops, name))
    }

    /// Non-zero counters as `Section.Name value` pairs, for compact reports.
    pub fn nonzero(&self) -> Vec<(String, u64)> {
        fn push<E: MibEnum>(c: &Counters<E>, out: &mut Vec<(String, u64)>) {
            for (e, v) in c.iter() {
                if v != 0 {
                    out.push((format!("{}.{}", E::PREFIX, e.name()), v));
                }
            }
        }
        let mut v = Vec::new();
        push(&self.ip, &mut v);
        push(&self.icmp, &mut v);
        push(&self.tcp, &mut v);
        push(&self.udp, &mut v);
        push(&self.tcp_ext, &mut v);
        push(&self.arp, &mut v);
        push(&self.softnet, &mut v);
        push(&self.exc, &mut v);
        push(&self.drops, &mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::{Mempool, MempoolConfig};

    #[test]
    fn counters_and_snmp_format() {
        let mut m = Mib::default();
        m.ip.inc(IpMib::InReceives);
        m.ip.add(IpMib::InDelivers, 3);
        m.icmp.inc(IcmpMib::InEchos);
        assert_eq!(m.ip[IpMib::InReceives], 1);
        let s = m.snmp();
        let mut lines = s.lines();
        let names = lines.next().unwrap();
        let values = lines.next().unwrap();
        assert!(names.starts_with("Ip: InReceives InHdrErrors"));
        assert!(values.starts_with("Ip: 1 0"));
        assert_eq!(names.split(' ').count(), values.split(' ').count());
        let nz = m.nonzero();
        assert!(nz.contains(&("Ip.InDelivers".to_string(), 3)));
        assert!(nz.contains(&("Icmp.InEchos".to_string(), 1)));
        assert_eq!(m.by_name("Ip.InDelivers"), Some(3));
        assert_eq!(m.by_name("Tcp.RetransSegs"), Some(0), "zero counters too");
        assert_eq!(m.by_name("Drop.IpCsum"), Some(0));
        // Misspelt, or in the wrong section: no such counter.
        for bad in [
            "Ip.InDeliver",
            "Tcp.InDelivers",
            "IpInDelivers",
            "Ip.",
            "Ipx.InDelivers",
        ] {
            assert_eq!(m.by_name(bad), None, "{bad}");
        }
        let mut sum = Mib::default();
        sum.merge(&m);
        sum.merge(&m);
        assert_eq!(sum.ip[IpMib::InDelivers], 6);
    }

    #[test]
    fn drop_frees_and_counts() {
        let p = Mempool::new(&MempoolConfig {
            n: 4,
            ..Default::default()
        })
        .unwrap();
        let mut c = p.cache();
        let skb = SkBuff::from_slice(&mut c, b"bad").unwrap();
        let mut m = Mib::default();
        m.kfree_skb_reason(skb, DropReason::IpCsum);
        assert_eq!(m.drops[DropReason::IpCsum], 1);
        drop(c);
        assert_eq!(p.in_use(), 0);
    }
}
