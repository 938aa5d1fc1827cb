//! `SkBuff`: the kernel's socket buffer, ported over mbufs.
//!
//! Linux: include/linux/skbuff.h, net/core/skbuff.c.
//!
//! An skb is metadata that points into mbufs: a linear area (`data..tail` inside a header
//! mbuf, with `head..end` as its bounds) followed by page-like fragments, each an
//! `(Mbuf, offset, len)`. The metadata itself lives in the private area of the mbuf that hosts
//! the skb (DPDK's `priv_size`), so allocating an skb is allocating an mbuf and an `SkBuff`
//! handle is one pointer: bursts, rings and queues move 8 bytes per packet, and `SkBuffHead`
//! links skbs intrusively through that private area with no allocation.
//!
//! `skb_clone` allocates a new host for the clone's metadata and shares the linear buffer and
//! the fragments by refcount (DPDK's indirect mbufs): TCP keeps the clone in its retransmit
//! queue while the original goes down the stack. A shared buffer is read-only until the
//! other reference goes away, exactly like `skb_header_cloned()`.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use arrayvec::ArrayVec;
use intrusive_collections::linked_list::{Link, LinkOps};
use intrusive_collections::{Adapter, LinkedList, PointerOps};

use crate::mbuf::{Mbuf, MbufHdr, MempoolCache};
use crate::rss::RssHashType;

/// Fragments per skb. Linux has 17 page frags plus a `frag_list` of whole skbs for
/// reassembled datagrams; blink has no frag_list, so the array is big enough for what
/// reassembly chains without copying: a 65,535-byte datagram in 1,480-byte IP fragments is
/// the first fragment's mbuf plus 44 more (and a 65,507-byte UDP send in 2 KiB mbufs needs
/// 32). Only used slots are ever touched (cleared, cloned), so the size costs memory in the
/// mbuf's private area, not time; `ip_defrag` copies into fewer mbufs when a datagram comes
/// in more, smaller fragments.
pub const MAX_SKB_FRAGS: usize = 48;

/// Bytes of the per-packet control block (Linux: `skb->cb[48]`).
pub const SKB_CB_SIZE: usize = 48;

const UNSET: u16 = u16::MAX;

/// Checksum state (Linux: `skb->ip_summed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpSummed {
    /// Nothing known: software must verify (rx) or fill (tx) the checksum.
    #[default]
    None,
    /// The device verified it (rx).
    Unnecessary,
    /// The device will fill it in on transmit (tx offload).
    Partial,
    /// The device supplied the checksum of the whole packet in `csum` (rx).
    Complete,
}

/// Who the frame was addressed to (Linux: `skb->pkt_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PacketType {
    #[default]
    Host,
    Broadcast,
    Multicast,
    OtherHost,
    Outgoing,
}

/// A typed control block stored in `skb->cb` (e.g. TCP's seq/end_seq/flags).
///
/// # Safety
/// Implementors must be plain old data: `Copy`, no padding-dependent invariants, and every
/// bit pattern (including all zeroes) must be a valid value, with size <= 48 and align <= 8.
pub unsafe trait SkbCb: Copy + 'static {}

/// One fragment (Linux: `skb_frag_t`): `len` bytes at `off` inside `mbuf`'s buffer.
#[derive(Clone, Debug)]
pub struct Frag {
    mbuf: Mbuf,
    off: u32,
    len: u32,
}

impl Frag {
    /// A fragment over `mbuf`'s current data window.
    pub fn from_mbuf(mbuf: Mbuf) -> Frag {
        let (off, len) = (mbuf.data_off() as u32, mbuf.data_len() as u32);
        Frag { mbuf, off, len }
    }

    /// A fragment over `len` bytes at `off` (from the start of the buffer); None when out of
    /// bounds.
    pub fn new(mbuf: Mbuf, off: usize, len: usize) -> Option<Frag> {
        if off + len > mbuf.buf_len() {
            return None;
        }
        Some(Frag {
            mbuf,
            off: off as u32,
            len: len as u32,
        })
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.mbuf.buf()[self.off as usize..(self.off + self.len) as usize]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn offset(&self) -> usize {
        self.off as usize
    }

    pub fn mbuf(&self) -> &Mbuf {
        &self.mbuf
    }

    pub fn into_mbuf(self) -> Mbuf {
        self.mbuf
    }
}

/// skb metadata, stored in the private area of the host mbuf. Reach it through [`SkBuff`]
/// (which derefs to it) or a queue peek.
#[repr(C)]
pub struct SkbMeta {
    /// Queue link. The plain (`Cell`) link, not the atomic one: a queue and the skbs on it
    /// belong to one owner at a time (threads exchange unlinked skbs or whole queues), so
    /// linking needs no locked instruction; the atomic link's `lock cmpxchg` on every enqueue
    /// was ~4% of a request/response transaction's CPU time (perf).
    link: Link,
    /// Buffer of the linear area when it is not the host itself (clones).
    head: Option<Mbuf>,
    /// The mbuf hosting this metadata: a copy of the host handle's pointer, set whenever an
    /// skb is made in it. Not derived from `&self`: a reference to the metadata may only
    /// reach the metadata's own bytes (Miri's stacked borrows rejects the `container_of`).
    host: *const MbufHdr,
    /// Start and length of the linear buffer (the host's, or `head`'s for a clone), copied
    /// from its descriptor whenever the linear buffer is set: every header view reads the
    /// linear area, and this spares each one the `head` match and the descriptor loads.
    lin: *mut u8,
    lin_len: u16,
    data: u16,
    tail: u16,
    end: u16,
    /// Bytes in `frags` (Linux: `skb->data_len`).
    frags_len: u32,
    mac_header: u16,
    network_header: u16,
    transport_header: u16,
    /// EtherType in host byte order (Linux: `skb->protocol`, there big-endian).
    pub protocol: u16,
    /// Ingress/egress device index (Linux: `skb->dev`, here an ifindex into the core's devices).
    pub dev: u16,
    /// Device queue the frame arrived on or leaves by.
    pub queue: u16,
    /// RSS hash of the flow (from the NIC or software Toeplitz) and what it covers.
    pub rss_hash: u32,
    pub hash_type: RssHashType,
    pub ip_summed: IpSummed,
    /// With `IpSummed::Complete`: the device's checksum of the packet.
    pub csum: u32,
    pub pkt_type: PacketType,
    /// Receive/transmit time in nanoseconds of the core's clock.
    pub tstamp: u64,
    /// Selected by the packet tracer (see trace.rs): each step records an event.
    pub trace: bool,
    cb: [u64; SKB_CB_SIZE / 8],
    /// Last: 48 slots of 16 bytes, of which a packet uses the first few (or none). Every
    /// field above fits in the descriptor's first three cache lines, so an skb that is made,
    /// parsed and freed touches those and no more.
    frags: ArrayVec<Frag, MAX_SKB_FRAGS>,
}

impl SkbMeta {
    pub(crate) fn new() -> SkbMeta {
        SkbMeta {
            link: Link::new(),
            head: None,
            host: std::ptr::null(),
            lin: std::ptr::null_mut(),
            lin_len: 0,
            data: 0,
            tail: 0,
            end: 0,
            frags: ArrayVec::new(),
            frags_len: 0,
            mac_header: UNSET,
            network_header: UNSET,
            transport_header: UNSET,
            protocol: 0,
            dev: 0,
            queue: 0,
            rss_hash: 0,
            hash_type: RssHashType::None,
            ip_summed: IpSummed::None,
            csum: 0,
            pkt_type: PacketType::Host,
            tstamp: 0,
            trace: false,
            cb: [0; SKB_CB_SIZE / 8],
        }
    }

    /// Reset to the state of `new()` in place, field by field. The metadata of a free mbuf
    /// holds no buffer references (`clear` ran when its last skb went, or it was never used),
    /// so nothing needs dropping, and writing ~30 bytes of fields instead of building and
    /// copying the whole struct (frag array included, ~400 bytes) matters once per packet.
    #[inline]
    fn reinit(&mut self) {
        debug_assert!(self.head.is_none() && self.frags.is_empty() && !self.link.is_linked());
        self.frags_len = 0;
        self.mac_header = UNSET;
        self.network_header = UNSET;
        self.transport_header = UNSET;
        self.protocol = 0;
        self.dev = 0;
        self.queue = 0;
        self.rss_hash = 0;
        self.hash_type = RssHashType::None;
        self.ip_summed = IpSummed::None;
        self.csum = 0;
        self.pkt_type = PacketType::Host;
        self.tstamp = 0;
        self.trace = false;
        self.cb = [0; SKB_CB_SIZE / 8];
    }

    /// The mbuf hosting this metadata.
    #[inline]
    fn host(&self) -> &MbufHdr {
        // SAFETY: `host` was set from the host handle when this skb was made (`set_host`);
        // an SkbMeta is only reachable through that handle (an SkBuff or a queue holding it),
        // so the descriptor is alive.
        unsafe { &*self.host }
    }

    /// Buffer of the linear area.
    #[inline]
    fn head_buf(&self) -> &[u8] {
        // SAFETY: `lin`/`lin_len` were copied from the descriptor of the linear buffer (see
        // `set_lin`), which this skb holds a reference to (the host itself, or `head`) for as
        // long as `self` lives; the buffer is readable, and writes to it require a unique
        // buffer and `&mut self` (see head_buf_mut), which cannot coexist with this borrow.
        unsafe { std::slice::from_raw_parts(self.lin, self.lin_len as usize) }
    }

    /// Record where the linear buffer lives (after `host` or `head` changed).
    #[inline]
    fn set_lin(&mut self) {
        let (p, n) = match &self.head {
            Some(m) => (m.buf_ptr(), m.buf_len()),
            None => {
                // SAFETY: `host` is live (set by set_host before this is called); the handle
                // is a borrowed copy, never dropped.
                let m = std::mem::ManuallyDrop::new(unsafe { Mbuf::from_raw(self.host) });
                (m.buf_ptr(), m.buf_len())
            }
        };
        self.lin = p;
        self.lin_len = n as u16;
    }

    /// The linear buffer, writable only when nobody else shares it.
    #[inline]
    fn head_buf_mut(&mut self) -> Option<&mut [u8]> {
        if self.skb_header_cloned() {
            return None;
        }
        // SAFETY: the linear buffer's refcount is 1 (checked just above), held by the SkBuff
        // that owns `self`, which is borrowed mutably here: no clone reads these bytes. `lin`
        // is the descriptor's own raw pointer (as `Mbuf::buf_mut` uses it; see `set_lin`).
        Some(unsafe { std::slice::from_raw_parts_mut(self.lin, self.lin_len as usize) })
    }

    /// Total bytes: linear + fragments (Linux: `skb->len`).
    #[inline]
    pub fn len(&self) -> usize {
        (self.tail - self.data) as usize + self.frags_len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in the linear area (Linux: `skb_headlen`).
    #[inline]
    pub fn headlen(&self) -> usize {
        (self.tail - self.data) as usize
    }

    /// Bytes in fragments (Linux: `skb->data_len`).
    #[inline]
    pub fn data_len(&self) -> usize {
        self.frags_len as usize
    }

    #[inline]
    pub fn is_nonlinear(&self) -> bool {
        self.frags_len != 0 || !self.frags.is_empty()
    }

    /// The linear data (`skb->data .. skb->tail`).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.head_buf()[self.data as usize..self.tail as usize]
    }

    /// The linear data, writable; None when the buffer is shared with a clone.
    #[inline]
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        let (d, t) = (self.data as usize, self.tail as usize);
        self.head_buf_mut().map(|b| &mut b[d..t])
    }

    /// True when the linear buffer is shared with a clone (Linux: `skb_header_cloned`).
    #[inline]
    pub fn skb_header_cloned(&self) -> bool {
        match &self.head {
            Some(m) => !m.is_unique(),
            None => h_refcnt(self.host()) != 1,
        }
    }

    #[inline]
    pub fn frags(&self) -> &[Frag] {
        &self.frags
    }

    /// Every byte segment of the packet in order: the linear area, then each fragment.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.data())
            .chain(self.frags.iter().map(|f| f.bytes()))
            .filter(|s| !s.is_empty())
    }

    /// Offset of `data` from the start of the linear buffer (to build fragments that point
    /// into it).
    #[inline]
    pub fn data_offset(&self) -> usize {
        self.data as usize
    }

    #[inline]
    pub fn skb_headroom(&self) -> usize {
        self.data as usize
    }

    /// Room after the linear data; 0 for a non-linear skb, as in Linux.
    #[inline]
    pub fn skb_tailroom(&self) -> usize {
        if self.is_nonlinear() {
            0
        } else {
            (self.end - self.tail) as usize
        }
    }

    /// Linux: skb_put(). Extend the linear data at the tail; None if non-linear, shared or
    /// without room.
    #[inline]
    pub fn skb_put(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.skb_tailroom() || self.skb_header_cloned() {
            return None;
        }
        let t = self.tail as usize;
        self.tail += len as u16;
        self.head_buf_mut().map(|b| &mut b[t..t + len])
    }

    /// skb_put + copy (Linux: skb_put_data()).
    pub fn skb_put_data(&mut self, bytes: &[u8]) -> bool {
        match self.skb_put(bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// Linux: skb_push(). Prepend `len` bytes of header in the headroom.
    #[inline]
    pub fn skb_push(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.data as usize || self.skb_header_cloned() {
            return None;
        }
        self.data -= len as u16;
        let d = self.data as usize;
        self.head_buf_mut().map(|b| &mut b[d..d + len])
    }

    /// Linux: __skb_push() over headers already in the buffer: move `data` back by `len`
    /// bytes (e.g. to the network header after the stack pulled past it) without writing, so
    /// it is allowed on a clone. False if that would pass the start of the buffer.
    #[inline]
    pub fn skb_unpull(&mut self, len: usize) -> bool {
        if len > self.data as usize {
            return false;
        }
        self.data -= len as u16;
        true
    }

    /// Linux: skb_pull(). Remove `len` bytes from the front of the linear area; pulling the
    /// whole linear area (a payload-less segment) is legal. False if `len > headlen`.
    #[inline]
    pub fn skb_pull(&mut self, len: usize) -> bool {
        if len > self.headlen() {
            return false;
        }
        self.data += len as u16;
        true
    }

    /// Linux: __pskb_pull(). Remove `len` bytes from the front of the packet, across the linear
    /// area and into fragments (TCP trims the part of a segment it already has). False if the
    /// packet is shorter.
    pub fn pskb_pull(&mut self, len: usize) -> bool {
        if len > self.len() {
            return false;
        }
        let lin = len.min(self.headlen());
        self.data += lin as u16;
        let mut left = len - lin;
        while left > 0 {
            let f = &mut self.frags[0];
            let n = left.min(f.len());
            f.off += n as u32;
            f.len -= n as u32;
            self.frags_len -= n as u32;
            left -= n;
            if f.len == 0 {
                self.frags.remove(0);
            }
        }
        true
    }

    /// Linux: skb_reserve(). Only on an empty skb: move data and tail forward.
    pub fn skb_reserve(&mut self, len: usize) -> bool {
        if !self.is_empty() || self.tail as usize + len > self.end as usize {
            return false;
        }
        self.data += len as u16;
        self.tail += len as u16;
        true
    }

    /// Linux: skb_trim() / pskb_trim(). Cut the packet to `len` bytes, dropping fragments past it.
    #[inline]
    pub fn skb_trim(&mut self, len: usize) {
        // ip_rcv and udp_rcv trim every packet to the length its header declares, which it
        // nearly always is already: that answer inline, the cutting out of line.
        if len < self.len() {
            self.skb_trim_slow(len);
        }
    }

    #[inline(never)]
    fn skb_trim_slow(&mut self, len: usize) {
        let hl = self.headlen();
        if len <= hl {
            self.tail = self.data + len as u16;
            self.frags.clear();
            self.frags_len = 0;
            return;
        }
        let mut left = len - hl;
        let mut keep = 0;
        for f in self.frags.iter_mut() {
            if left == 0 {
                break;
            }
            if f.len() > left {
                f.len = left as u32;
            }
            left -= f.len();
            keep += 1;
        }
        self.frags.truncate(keep);
        self.frags_len = (len - hl) as u32;
    }

    /// Linux: skb_copy_bits(). Copy `to.len()` bytes starting at `offset` (from `data`),
    /// across fragments. False when the packet is shorter.
    #[inline]
    pub fn skb_copy_bits(&self, offset: usize, to: &mut [u8]) -> bool {
        // The common case first, as Linux does: everything asked for is in the linear area.
        // Inline, so a receive copy (every datagram read) is a bounds check and the memcpy.
        if offset + to.len() <= self.headlen() {
            to.copy_from_slice(&self.data()[offset..offset + to.len()]);
            return true;
        }
        self.skb_copy_bits_frags(offset, to)
    }

    /// The slow half of skb_copy_bits: a copy that reaches into the fragments.
    #[inline(never)]
    fn skb_copy_bits_frags(&self, offset: usize, to: &mut [u8]) -> bool {
        if offset + to.len() > self.len() {
            return false;
        }
        let mut skip = offset;
        let mut done = 0;
        for seg in self.segments() {
            if done == to.len() {
                break;
            }
            if skip >= seg.len() {
                skip -= seg.len();
                continue;
            }
            let n = (seg.len() - skip).min(to.len() - done);
            to[done..done + n].copy_from_slice(&seg[skip..skip + n]);
            done += n;
            skip = 0;
        }
        done == to.len()
    }

    /// Linux: pskb_may_pull(). Make sure the first `len` bytes are linear, copying the
    /// missing bytes from fragments into the tailroom when needed (rare: only devices that
    /// split headers across segments need it). False when the packet is shorter or there is
    /// no room.
    #[inline]
    pub fn pskb_may_pull(&mut self, len: usize) -> bool {
        // Every layer asks on every packet, and the header is nearly always linear already:
        // keep that answer inline and the copying out of line (Linux does the same split).
        len <= self.headlen() || self.__pskb_pull_tail(len)
    }

    /// The slow half of pskb_may_pull (Linux: __pskb_pull_tail()).
    #[cold]
    #[inline(never)]
    fn __pskb_pull_tail(&mut self, len: usize) -> bool {
        let hl = self.headlen();
        if len > self.len() || self.skb_header_cloned() {
            return false;
        }
        let need = len - hl;
        if self.tail as usize + need > self.end as usize {
            return false;
        }
        let mut copied = 0;
        while copied < need {
            let f = &self.frags[0];
            let n = f.len().min(need - copied);
            let (src_off, t) = (f.off as usize, self.tail as usize);
            let src = f.mbuf.clone();
            let Some(buf) = self.head_buf_mut() else {
                return false;
            };
            buf[t..t + n].copy_from_slice(&src.buf()[src_off..src_off + n]);
            drop(src);
            self.tail += n as u16;
            copied += n;
            let f = &mut self.frags[0];
            f.off += n as u32;
            f.len -= n as u32;
            self.frags_len -= n as u32;
            if f.len == 0 {
                self.frags.remove(0);
            }
        }
        true
    }

    /// Linux: skb_add_rx_frag() / skb_fill_page_desc(). Append a fragment; gives it back when
    /// all MAX_SKB_FRAGS slots are used.
    #[inline]
    pub fn skb_add_frag(&mut self, frag: Frag) -> Result<(), Frag> {
        if self.frags.is_full() {
            return Err(frag);
        }
        self.frags_len += frag.len;
        self.frags.push(frag);
        Ok(())
    }

    // ---- header offsets (Linux: skb_reset_*_header, skb_*_header, skb_*_offset) ----

    #[inline]
    pub fn skb_reset_mac_header(&mut self) {
        self.mac_header = self.data;
    }

    #[inline]
    pub fn skb_reset_network_header(&mut self) {
        self.network_header = self.data;
    }

    /// Network header at `offset` bytes past `data`.
    #[inline]
    pub fn skb_set_network_header(&mut self, offset: usize) {
        self.network_header = self.data + offset as u16;
    }

    #[inline]
    pub fn skb_reset_transport_header(&mut self) {
        self.transport_header = self.data;
    }

    #[inline]
    pub fn skb_set_transport_header(&mut self, offset: usize) {
        self.transport_header = self.data + offset as u16;
    }

    pub fn skb_mac_header_was_set(&self) -> bool {
        self.mac_header != UNSET
    }

    pub fn skb_network_header_was_set(&self) -> bool {
        self.network_header != UNSET
    }

    pub fn skb_transport_header_was_set(&self) -> bool {
        self.transport_header != UNSET
    }

    #[inline]
    fn from_mark(&self, mark: u16) -> &[u8] {
        if mark == UNSET || mark > self.tail {
            return &[];
        }
        &self.head_buf()[mark as usize..self.tail as usize]
    }

    /// Linear bytes from the MAC header to the tail (empty when unset).
    pub fn skb_mac_header(&self) -> &[u8] {
        self.from_mark(self.mac_header)
    }

    /// Linear bytes from the network header to the tail (empty when unset).
    #[inline]
    pub fn skb_network_header(&self) -> &[u8] {
        self.from_mark(self.network_header)
    }

    /// Linear bytes from the transport header to the tail (empty when unset).
    #[inline]
    pub fn skb_transport_header(&self) -> &[u8] {
        self.from_mark(self.transport_header)
    }

    /// Writable bytes from the network header to the tail (None when unset or shared).
    pub fn skb_network_header_mut(&mut self) -> Option<&mut [u8]> {
        let (m, t) = (self.network_header, self.tail);
        if m == UNSET || m > t {
            return None;
        }
        self.head_buf_mut().map(|b| &mut b[m as usize..t as usize])
    }

    /// Writable bytes from the transport header to the tail.
    pub fn skb_transport_header_mut(&mut self) -> Option<&mut [u8]> {
        let (m, t) = (self.transport_header, self.tail);
        if m == UNSET || m > t {
            return None;
        }
        self.head_buf_mut().map(|b| &mut b[m as usize..t as usize])
    }

    /// Offset of the network header from `data` (negative once pulled past it).
    pub fn skb_network_offset(&self) -> isize {
        self.network_header as isize - self.data as isize
    }

    /// Offset of the MAC header from `data` (negative once pulled past it; Linux:
    /// skb_mac_offset()).
    pub fn skb_mac_offset(&self) -> isize {
        self.mac_header as isize - self.data as isize
    }

    pub fn skb_transport_offset(&self) -> isize {
        self.transport_header as isize - self.data as isize
    }

    /// Linux: skb_network_header_len().
    pub fn skb_network_header_len(&self) -> usize {
        self.transport_header.saturating_sub(self.network_header) as usize
    }

    /// The control block as `T` (Linux: `TCP_SKB_CB(skb)` and friends).
    pub fn cb<T: SkbCb>(&self) -> &T {
        const { assert!(std::mem::size_of::<T>() <= SKB_CB_SIZE && std::mem::align_of::<T>() <= 8) };
        // SAFETY: size and alignment checked above; SkbCb guarantees every bit pattern is valid.
        unsafe { &*(self.cb.as_ptr() as *const T) }
    }

    pub fn cb_mut<T: SkbCb>(&mut self) -> &mut T {
        const { assert!(std::mem::size_of::<T>() <= SKB_CB_SIZE && std::mem::align_of::<T>() <= 8) };
        // SAFETY: as in `cb`, and we hold `&mut self`.
        unsafe { &mut *(self.cb.as_mut_ptr() as *mut T) }
    }

    /// Forget per-layer state when a frame crosses a device boundary (the in-memory wire hands
    /// the sender's skb to the receiver): header marks, control block, hash, checksum state.
    pub fn reset_for_rx(&mut self) {
        self.mac_header = UNSET;
        self.network_header = UNSET;
        self.transport_header = UNSET;
        self.cb = [0; SKB_CB_SIZE / 8];
        self.rss_hash = 0;
        self.hash_type = RssHashType::None;
        self.ip_summed = IpSummed::None;
        self.csum = 0;
        self.pkt_type = PacketType::Host;
        self.protocol = 0;
    }

    /// Linux: __copy_skb_header(). The per-packet fields a clone or copy inherits (buffer
    /// offsets and header marks are set by the caller).
    fn copy_header_fields(&mut self, m: &SkbMeta) {
        self.protocol = m.protocol;
        self.dev = m.dev;
        self.queue = m.queue;
        self.rss_hash = m.rss_hash;
        self.hash_type = m.hash_type;
        self.ip_summed = m.ip_summed;
        self.csum = m.csum;
        self.pkt_type = m.pkt_type;
        self.tstamp = m.tstamp;
        self.trace = m.trace;
        self.cb = m.cb;
    }

    /// Drop every buffer reference (on free).
    fn clear(&mut self) {
        self.head = None;
        self.lin = std::ptr::null_mut();
        self.lin_len = 0;
        self.frags.clear();
        self.frags_len = 0;
    }
}

#[inline]
fn h_refcnt(h: &MbufHdr) -> u32 {
    // SAFETY: `h` is a live descriptor; refcount reads are atomic.
    let m = std::mem::ManuallyDrop::new(unsafe { Mbuf::from_raw(h as *const MbufHdr) });
    m.refcnt()
}

/// An owned socket buffer: one pointer to the mbuf hosting its metadata.
pub struct SkBuff {
    host: Mbuf,
}

impl SkBuff {
    /// Linux: alloc_skb(). An empty skb whose linear area is a fresh mbuf, with the pool's
    /// headroom reserved for headers.
    #[inline]
    pub fn alloc(cache: &mut MempoolCache) -> Option<SkBuff> {
        let m = cache.alloc()?;
        Some(Self::host_init(m, None))
    }

    fn host_init(host: Mbuf, head: Option<Mbuf>) -> SkBuff {
        let (d, t, e) = (host.data_off(), host.data_off() + host.data_len(), host.buf_len());
        let mut skb = SkBuff { host };
        skb.set_host();
        let meta = skb.meta_mut();
        meta.reinit();
        meta.head = head;
        meta.set_lin();
        meta.data = d as u16;
        meta.tail = t as u16;
        meta.end = e as u16;
        skb
    }

    /// A received frame: the mbuf (and its chained segments, as fragments) becomes an skb
    /// without copying. Gives the mbuf back if it is shared or has more segments than
    /// MAX_SKB_FRAGS + 1.
    pub fn from_mbuf(mut m: Mbuf) -> Result<SkBuff, Mbuf> {
        if !m.is_unique() || m.nb_segs() > MAX_SKB_FRAGS + 1 {
            return Err(m);
        }
        let mut rest = m.take_next();
        let mut skb = Self::host_init(m, None);
        while let Some(mut seg) = rest {
            rest = seg.take_next();
            let f = Frag::from_mbuf(seg);
            if f.is_empty() {
                continue;
            }
            // Cannot fail: the segment count was checked above.
            let _ = skb.skb_add_frag(f);
        }
        Ok(skb)
    }

    /// An skb over a copy of `bytes` (tests, TAP receive). None if it does not fit.
    pub fn from_slice(cache: &mut MempoolCache, bytes: &[u8]) -> Option<SkBuff> {
        let mut skb = Self::alloc(cache)?;
        if bytes.len() > skb.skb_tailroom() {
            return None;
        }
        skb.skb_put_data(bytes);
        Some(skb)
    }

    /// Record the host handle's pointer in the metadata (see `SkbMeta::host`).
    #[inline]
    fn set_host(&mut self) {
        // SAFETY: a bitwise copy of the handle, turned into its pointer (with the provenance of
        // the whole descriptor) and forgotten at once: the refcount is untouched.
        let host = unsafe { std::ptr::read(&self.host) }.into_raw();
        self.meta_mut().host = host;
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut SkbMeta {
        // SAFETY: the metadata in the private area belongs to the one SkBuff hosted by this
        // mbuf; other handles to the host (clones' `head`) only read its data buffer.
        unsafe { &mut *self.host.hdr().skb.get() }
    }

    #[inline]
    fn meta(&self) -> &SkbMeta {
        // SAFETY: as in meta_mut.
        unsafe { &*self.host.hdr().skb.get() }
    }

    /// Linux: skb_clone(). A new skb sharing the linear buffer and fragments by refcount;
    /// needs one mbuf from `cache` to host the clone's metadata.
    pub fn skb_clone(&self, cache: &mut MempoolCache) -> Option<SkBuff> {
        let host = cache.alloc()?;
        let m = self.meta();
        let head = match &m.head {
            Some(h) => h.clone(),
            None => self.host.clone(),
        };
        let mut c = SkBuff { host };
        c.set_host();
        let cm = c.meta_mut();
        cm.reinit();
        cm.head = Some(head);
        cm.set_lin();
        cm.data = m.data;
        cm.tail = m.tail;
        cm.end = m.end;
        // Element by element: assigning a cloned ArrayVec would copy all MAX_SKB_FRAGS slots.
        for f in m.frags.iter() {
            cm.frags.push(f.clone());
        }
        cm.frags_len = m.frags_len;
        cm.mac_header = m.mac_header;
        cm.network_header = m.network_header;
        cm.transport_header = m.transport_header;
        cm.copy_header_fields(m);
        Some(c)
    }

    /// Linux: skb_copy(). A private, linear copy of the whole packet in one fresh mbuf
    /// (same headroom); None if it does not fit or the pool is empty.
    pub fn skb_copy(&self, cache: &mut MempoolCache) -> Option<SkBuff> {
        let mut c = Self::alloc(cache)?;
        let hr = self.skb_headroom().min(c.skb_headroom());
        let delta = c.skb_headroom() - hr;
        if self.len() > c.skb_tailroom() + delta {
            return None;
        }
        let (d, len) = (c.data - delta as u16, self.len());
        c.data = d;
        c.tail = d;
        let dst = c.skb_put(len)?;
        let mut o = 0;
        for s in self.segments() {
            dst[o..o + s.len()].copy_from_slice(s);
            o += s.len();
        }
        let m = self.meta();
        let base = m.data as isize;
        let shift = |mark: u16| -> u16 {
            if mark == UNSET {
                UNSET
            } else {
                (mark as isize - base + d as isize) as u16
            }
        };
        let (mh, nh, th) = (shift(m.mac_header), shift(m.network_header), shift(m.transport_header));
        let cm = c.meta_mut();
        cm.mac_header = mh;
        cm.network_header = nh;
        cm.transport_header = th;
        cm.copy_header_fields(m);
        Some(c)
    }

    /// Address of the host mbuf (identity in zero-copy tests).
    pub fn host_addr(&self) -> usize {
        self.host.buf_addr()
    }

    /// The buffer holding the linear area (the host itself, or the original for a clone).
    pub fn head_mbuf(&self) -> &Mbuf {
        self.meta().head.as_ref().unwrap_or(&self.host)
    }
}

impl std::ops::Deref for SkBuff {
    type Target = SkbMeta;
    #[inline]
    fn deref(&self) -> &SkbMeta {
        self.meta()
    }
}

impl std::ops::DerefMut for SkBuff {
    #[inline]
    fn deref_mut(&mut self) -> &mut SkbMeta {
        self.meta_mut()
    }
}

impl SkBuff {
    /// Free this skb through `cache` (Linux: __kfree_skb returning to the per-CPU page
    /// cache): the buffers it references are released as usual, and the buffer hosting it
    /// goes back onto the core's local list when it is the cache's own (`MempoolCache::free`).
    #[inline]
    pub fn free_to(self, cache: &mut MempoolCache) {
        let mut me = std::mem::ManuallyDrop::new(self);
        me.meta_mut().clear();
        // SAFETY: `me` is never used or dropped again: the host handle moves out once.
        let host = unsafe { std::ptr::read(&me.host) };
        cache.free(host);
    }
}

impl Drop for SkBuff {
    #[inline]
    fn drop(&mut self) {
        // Release the buffers the metadata references; the host itself goes when `host`
        // drops right after (possibly later, if a clone still reads its buffer).
        self.meta_mut().clear();
    }
}

impl fmt::Debug for SkBuff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkBuff")
            .field("len", &self.len())
            .field("headlen", &self.headlen())
            .field("nr_frags", &self.frags.len())
            .field("headroom", &self.skb_headroom())
            .field("protocol", &format_args!("{:#06x}", self.protocol))
            .field("dev", &self.dev)
            .finish()
    }
}

// ---- SkBuffHead: intrusive queues through the metadata's link ----

/// Pointer conversions between an owned `SkBuff` and its metadata, for intrusive lists.
pub struct SkbPointerOps(PhantomData<SkBuff>);

// SAFETY: into_raw/from_raw round-trip the host mbuf handle without touching its refcount;
// the metadata address is stable for as long as the host lives.
unsafe impl PointerOps for SkbPointerOps {
    type Value = SkbMeta;
    type Pointer = SkBuff;

    unsafe fn from_raw(&self, value: *const SkbMeta) -> SkBuff {
        let hdr = (value as *const u8).sub(std::mem::offset_of!(MbufHdr, skb)) as *const MbufHdr;
        SkBuff {
            host: Mbuf::from_raw(hdr),
        }
    }

    fn into_raw(&self, skb: SkBuff) -> *const SkbMeta {
        let skb = std::mem::ManuallyDrop::new(skb);
        // SAFETY: reading the field out of a ManuallyDrop moves the host handle without
        // running SkBuff's Drop (which would release the buffers).
        let host = unsafe { std::ptr::read(&skb.host) };
        let hdr = host.into_raw();
        // SAFETY: `hdr` is a live descriptor; its `skb` field is the metadata. A raw place,
        // not `(*hdr).skb.get()`: a reference to the field would narrow the pointer to it, and
        // `from_raw` needs its way back to the whole descriptor.
        unsafe { std::cell::UnsafeCell::raw_get(std::ptr::addr_of!((*hdr).skb)) as *const SkbMeta }
    }
}

/// Intrusive adapter: skbs link through `SkbMeta::link`.
pub struct SkbAdapter {
    link_ops: LinkOps,
    pointer_ops: SkbPointerOps,
}

// SAFETY: get_link/get_value convert between the metadata and its `link` field by a fixed
// offset; the pointer ops own the skb while it is linked.
unsafe impl Adapter for SkbAdapter {
    type LinkOps = LinkOps;
    type PointerOps = SkbPointerOps;

    unsafe fn get_value(&self, link: NonNull<Link>) -> *const SkbMeta {
        (link.as_ptr() as *const u8).sub(std::mem::offset_of!(SkbMeta, link)) as *const SkbMeta
    }

    unsafe fn get_link(&self, value: *const SkbMeta) -> NonNull<Link> {
        NonNull::new_unchecked(std::ptr::addr_of!((*value).link) as *mut Link)
    }

    fn link_ops(&self) -> &LinkOps {
        &self.link_ops
    }

    fn link_ops_mut(&mut self) -> &mut LinkOps {
        &mut self.link_ops
    }

    fn pointer_ops(&self) -> &SkbPointerOps {
        &self.pointer_ops
    }
}

/// A queue of skbs (Linux: `struct sk_buff_head`), with its length and byte count, linked
/// through the skbs themselves: enqueue and dequeue never allocate.
pub struct SkBuffHead {
    list: LinkedList<SkbAdapter>,
    qlen: usize,
    bytes: usize,
}

impl Default for SkBuffHead {
    fn default() -> Self {
        Self::new()
    }
}

impl SkBuffHead {
    pub fn new() -> SkBuffHead {
        SkBuffHead {
            list: LinkedList::new(SkbAdapter {
                link_ops: LinkOps,
                pointer_ops: SkbPointerOps(PhantomData),
            }),
            qlen: 0,
            bytes: 0,
        }
    }

    /// Linux: skb_queue_tail().
    pub fn skb_queue_tail(&mut self, skb: SkBuff) {
        self.qlen += 1;
        self.bytes += skb.len();
        self.list.push_back(skb);
    }

    /// Linux: skb_queue_head().
    pub fn skb_queue_head(&mut self, skb: SkBuff) {
        self.qlen += 1;
        self.bytes += skb.len();
        self.list.push_front(skb);
    }

    /// Linux: skb_dequeue().
    pub fn skb_dequeue(&mut self) -> Option<SkBuff> {
        let skb = self.list.pop_front()?;
        self.qlen -= 1;
        self.bytes -= skb.len();
        Some(skb)
    }

    /// Linux: skb_dequeue_tail().
    pub fn skb_dequeue_tail(&mut self) -> Option<SkBuff> {
        let skb = self.list.pop_back()?;
        self.qlen -= 1;
        self.bytes -= skb.len();
        Some(skb)
    }

    /// Linux: skb_peek().
    pub fn skb_peek(&self) -> Option<&SkbMeta> {
        self.list.front().get()
    }

    pub fn skb_peek_tail(&self) -> Option<&SkbMeta> {
        self.list.back().get()
    }

    pub fn iter(&self) -> impl Iterator<Item = &SkbMeta> {
        self.list.iter()
    }

    /// Linux: skb_queue_len().
    pub fn len(&self) -> usize {
        self.qlen
    }

    pub fn is_empty(&self) -> bool {
        self.qlen == 0
    }

    /// Bytes queued (sum of skb->len).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Linux: skb_queue_purge(). Frees everything queued.
    pub fn purge(&mut self) {
        self.list.clear();
        self.qlen = 0;
        self.bytes = 0;
    }

    /// Insert `skb` into a sorted queue: after the last queued skb for which `goes_after`
    /// is false, walking from the tail (so in-order arrival costs one comparison). Linux
    /// keeps IP fragments in an rbtree of runs; a datagram has a few dozen at most.
    pub fn skb_insert_sorted_from_tail(&mut self, skb: SkBuff, goes_after: impl Fn(&SkbMeta) -> bool) {
        self.qlen += 1;
        self.bytes += skb.len();
        let mut c = self.list.back_mut();
        while let Some(e) = c.get() {
            if !goes_after(e) {
                break;
            }
            c.move_prev();
        }
        // At the null position (every queued skb goes after), insert_after puts it first.
        c.insert_after(skb);
    }

    /// Move all skbs of `other` to the tail of this queue (Linux: skb_queue_splice_tail_init).
    pub fn splice_tail(&mut self, other: &mut SkBuffHead) {
        while let Some(skb) = other.skb_dequeue() {
            self.skb_queue_tail(skb);
        }
    }
}

impl fmt::Debug for SkBuffHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkBuffHead")
            .field("qlen", &self.qlen)
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::{Mempool, MempoolConfig, RTE_PKTMBUF_HEADROOM};

    fn pool(n: usize) -> Mempool {
        Mempool::new(&MempoolConfig {
            name: "skb-test".into(),
            n,
            cache_size: 4,
            ..Default::default()
        })
        .unwrap()
    }

    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    #[repr(C)]
    struct TcpCb {
        seq: u32,
        end_seq: u32,
        when: u64,
        flags: u8,
    }
    // SAFETY: plain integers; any bit pattern is valid.
    unsafe impl SkbCb for TcpCb {}

    #[test]
    fn put_push_pull_headroom_tailroom() {
        let p = pool(8);
        let mut c = p.cache();
        let mut skb = SkBuff::alloc(&mut c).unwrap();
        let hr = RTE_PKTMBUF_HEADROOM as usize;
        assert_eq!(skb.skb_headroom(), hr);
        let room = skb.skb_tailroom();
        assert!(skb.skb_put_data(b"payload"));
        assert_eq!(skb.skb_tailroom(), room - 7);
        skb.skb_push(4).unwrap().copy_from_slice(b"TCPH");
        skb.skb_push(2).unwrap().copy_from_slice(b"IP");
        assert_eq!(skb.data(), b"IPTCPHpayload");
        assert_eq!(skb.skb_headroom(), hr - 6);
        assert!(skb.skb_pull(2));
        assert_eq!(skb.data(), b"TCPHpayload");
        assert!(!skb.skb_pull(100));
        assert!(skb.skb_push(hr).is_none(), "cannot push past the headroom");
        assert!(skb.skb_put(room).is_none(), "cannot put past the tailroom");
        drop(skb);
        drop(c);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn pull_all_headers_of_a_syn() {
        let p = pool(4);
        let mut c = p.cache();
        // Ethernet 14 + IP 20 + TCP 40 with no payload.
        let frame = [0u8; 74];
        let mut skb = SkBuff::from_slice(&mut c, &frame).unwrap();
        skb.skb_reset_mac_header();
        assert!(skb.skb_pull(14));
        skb.skb_reset_network_header();
        assert!(skb.skb_pull(20));
        skb.skb_reset_transport_header();
        assert_eq!(skb.skb_network_header_len(), 20);
        assert!(
            skb.skb_pull(40),
            "pulling every byte of a payload-less segment is legal"
        );
        assert_eq!(skb.len(), 0);
        assert!(skb.is_empty());
        assert_eq!(skb.data(), b"");
        // The headers stay readable through their marks after the pull.
        assert_eq!(skb.skb_transport_header().len(), 40);
        assert_eq!(skb.skb_mac_header().len(), 74);
        drop(skb);
        drop(c);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn reserve_and_trim() {
        let p = pool(8);
        let mut c = p.cache();
        let mut skb = SkBuff::alloc(&mut c).unwrap();
        assert!(skb.skb_reserve(10));
        assert_eq!(skb.skb_headroom(), RTE_PKTMBUF_HEADROOM as usize + 10);
        skb.skb_put_data(b"0123456789");
        assert!(!skb.skb_reserve(1), "reserve only on an empty skb");
        let mut f = c.alloc().unwrap();
        f.append_slice(b"abcdef");
        skb.skb_add_frag(Frag::from_mbuf(f)).unwrap();
        assert_eq!(skb.len(), 16);
        assert_eq!(skb.skb_tailroom(), 0, "non-linear skbs have no tailroom");
        skb.skb_trim(13);
        assert_eq!(skb.len(), 13);
        let mut out = [0u8; 13];
        assert!(skb.skb_copy_bits(0, &mut out));
        assert_eq!(&out, b"0123456789abc");
        skb.skb_trim(4);
        assert_eq!(skb.len(), 4);
        assert!(skb.frags().is_empty());
        assert_eq!(p.in_use(), 1, "the trimmed fragment went back to the pool");
        drop(skb);
        drop(c);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn clone_shares_buffers_and_frees_on_last_reference() {
        let p = pool(8);
        let mut c = p.cache();
        let mut skb = SkBuff::alloc(&mut c).unwrap();
        skb.skb_put_data(b"hdr");
        let mut payload = c.alloc().unwrap();
        payload.append_slice(b"DATA");
        let payload_addr = payload.buf_addr();
        skb.skb_add_frag(Frag::from_mbuf(payload)).unwrap();
        skb.cb_mut::<TcpCb>().seq = 1000;
        assert_eq!(p.in_use(), 2);

        let clone = skb.skb_clone(&mut c).unwrap();
        assert_eq!(p.in_use(), 3, "a clone costs one metadata host, no data copy");
        assert_eq!(clone.frags()[0].mbuf().buf_addr(), payload_addr);
        assert_eq!(clone.head_mbuf().buf_addr(), skb.host_addr());
        assert_eq!(clone.frags()[0].mbuf().refcnt(), 2);
        assert_eq!(clone.cb::<TcpCb>().seq, 1000);
        let mut all = [0u8; 7];
        assert!(clone.skb_copy_bits(0, &mut all));
        assert_eq!(&all, b"hdrDATA");
        assert!(skb.skb_header_cloned());
        assert!(skb.data_mut().is_none(), "shared header is read-only");
        assert!(skb.skb_push(1).is_none());

        drop(skb);
        // The original's host stays: the clone still reads its linear buffer.
        assert_eq!(p.in_use(), 3);
        assert_eq!(clone.data(), b"hdr");
        drop(clone);
        drop(c);
        assert_eq!(p.in_use(), 0, "every mbuf returns when the last reference drops");
    }

    #[test]
    fn copy_is_private_and_linear() {
        let p = pool(8);
        let mut c = p.cache();
        let mut skb = SkBuff::from_slice(&mut c, b"head").unwrap();
        skb.skb_reset_network_header();
        let mut f = c.alloc().unwrap();
        f.append_slice(b"tail");
        skb.skb_add_frag(Frag::from_mbuf(f)).unwrap();
        let mut cp = skb.skb_copy(&mut c).unwrap();
        assert!(!cp.is_nonlinear());
        assert_eq!(cp.data(), b"headtail");
        assert_eq!(cp.skb_network_header(), b"headtail");
        cp.data_mut().unwrap()[0] = b'H';
        assert_eq!(skb.data(), b"head");
        drop((skb, cp, c));
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn from_mbuf_chain_and_may_pull() {
        let p = pool(8);
        let mut c = p.cache();
        let mut a = c.alloc().unwrap();
        let mut b = c.alloc().unwrap();
        a.append_slice(&[1, 2, 3]);
        b.append_slice(&[4, 5, 6, 7]);
        a.set_next(Some(b)).unwrap();
        let mut skb = SkBuff::from_mbuf(a).unwrap();
        assert_eq!(skb.headlen(), 3);
        assert_eq!(skb.len(), 7);
        assert!(skb.pskb_may_pull(5));
        assert_eq!(skb.data(), &[1, 2, 3, 4, 5]);
        assert_eq!(skb.len(), 7);
        assert!(skb.pskb_may_pull(7));
        assert!(!skb.is_nonlinear());
        assert_eq!(p.in_use(), 1, "the emptied segment was freed");
        assert!(!skb.pskb_may_pull(8));
        let shared = c.alloc().unwrap();
        let keep = shared.clone();
        assert!(SkBuff::from_mbuf(shared).is_err(), "shared mbufs cannot become skbs");
        drop((skb, keep, c));
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn too_many_frags_is_refused() {
        let p = pool(64);
        let mut c = p.cache();
        let mut skb = SkBuff::alloc(&mut c).unwrap();
        for _ in 0..MAX_SKB_FRAGS {
            skb.skb_add_frag(Frag::from_mbuf(c.alloc().unwrap())).unwrap();
        }
        let extra = Frag::from_mbuf(c.alloc().unwrap());
        assert!(skb.skb_add_frag(extra).is_err());
        drop((skb, c));
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn pskb_pull_crosses_into_frags() {
        let p = pool(8);
        let mut c = p.cache();
        let mut skb = SkBuff::from_slice(&mut c, b"abc").unwrap();
        let mut f = c.alloc().unwrap();
        f.append_slice(b"defgh");
        skb.skb_add_frag(Frag::from_mbuf(f)).unwrap();
        assert!(skb.pskb_pull(5));
        assert_eq!(skb.len(), 3);
        let mut out = [0u8; 3];
        assert!(skb.skb_copy_bits(0, &mut out));
        assert_eq!(&out, b"fgh");
        assert!(skb.pskb_pull(3));
        assert!(skb.frags().is_empty());
        assert!(!skb.pskb_pull(1));
        drop((skb, c));
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn header_marks() {
        let p = pool(4);
        let mut c = p.cache();
        let mut skb = SkBuff::from_slice(&mut c, &[0u8; 54]).unwrap();
        assert!(!skb.skb_network_header_was_set());
        skb.skb_reset_mac_header();
        skb.skb_set_network_header(14);
        skb.skb_set_transport_header(34);
        assert_eq!(skb.skb_network_offset(), 14);
        assert_eq!(skb.skb_network_header().len(), 40);
        skb.skb_network_header_mut().unwrap()[0] = 0x45;
        assert!(skb.skb_pull(34));
        assert_eq!(skb.skb_network_offset(), -20);
        assert_eq!(skb.skb_network_header()[0], 0x45);
        assert_eq!(skb.skb_transport_offset(), 0);
        skb.reset_for_rx();
        assert!(!skb.skb_mac_header_was_set());
        drop((skb, c));
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn queue_is_fifo_and_frees_on_purge() {
        let p = pool(16);
        let mut c = p.cache();
        let mut q = SkBuffHead::new();
        for i in 0..5u8 {
            let skb = SkBuff::from_slice(&mut c, &[i; 3]).unwrap();
            q.skb_queue_tail(skb);
        }
        let front = SkBuff::from_slice(&mut c, &[9]).unwrap();
        q.skb_queue_head(front);
        assert_eq!(q.len(), 6);
        assert_eq!(q.bytes(), 16);
        assert_eq!(q.skb_peek().unwrap().data(), &[9]);
        assert_eq!(q.skb_dequeue().unwrap().data(), &[9]);
        assert_eq!(q.skb_dequeue().unwrap().data(), &[0, 0, 0]);
        assert_eq!(q.skb_dequeue_tail().unwrap().data(), &[4, 4, 4]);
        assert_eq!(q.iter().count(), 3);
        assert_eq!(p.in_use(), 3);
        q.purge();
        assert!(q.is_empty());
        assert_eq!(p.in_use(), 0);
        let skb = SkBuff::from_slice(&mut c, &[1]).unwrap();
        q.skb_queue_tail(skb);
        drop(q);
        drop(c);
        assert_eq!(p.in_use(), 0, "dropping a queue frees what it holds");
    }

    #[test]
    fn skbs_cross_threads() {
        let p = pool(16);
        let mut c = p.cache();
        let skb = SkBuff::from_slice(&mut c, b"x").unwrap();
        let len = std::thread::spawn(move || skb.len()).join().unwrap();
        assert_eq!(len, 1);
        drop(c);
        assert_eq!(p.in_use(), 0);
    }
}
