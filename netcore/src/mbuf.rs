//! Packet buffers: `Mempool` and `Mbuf`, over a heap pool or (feature `dpdk`) DPDK's
//! `rte_mempool` / `rte_mbuf`.
//!
//! The model is DPDK's `rte_mempool` + `rte_mbuf`: a pool pre-allocates `n` fixed-size buffers
//! once, each with a small descriptor (refcount, data offset, data length, next segment) and
//! a private area holding the `SkBuff` metadata of the skb that lives in it (DPDK's
//! `priv_size`). Allocation and free move a 32-bit index between a lock-free free ring and a
//! per-core cache, so the per-packet path never calls the system allocator.
//!
//! Sharing follows `rte_mbuf_refcnt`: cloning an `Mbuf` handle shares the *same* buffer and
//! descriptor. Anything that changes a buffer's bytes or its descriptor needs a unique handle
//! (`refcnt == 1`), which is how `skb_clone` keeps retransmit queues and in-flight packets
//! from stepping on each other, and how this module stays sound with shared buffers.
//!
//! The DPDK backend (`Mempool::new_dpdk`) keeps the same descriptor, placed in the private area
//! of each `rte_mbuf` (`priv_size = size_of::<MbufHdr>()`), with `buf` pointing at the
//! rte_mbuf's own data room. A frame the PMD delivered is adopted as an `Mbuf` in place
//! (`Mbuf::from_rte`): no copy, and everything above netcore sees the usual API. Rust handles
//! together hold one DPDK reference; when the last handle goes, the segment goes back through
//! `rte_pktmbuf_free_seg`, which returns it to the pool unless a PMD still holds an indirect
//! mbuf attached to it for transmit (see drivers/dpdk.rs).

use std::cell::UnsafeCell;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::skbuff::SkbMeta;
use crate::stack_lf::StackLf;

#[cfg(feature = "dpdk")]
use blink_dpdk_sys as dpdk;

/// Headroom reserved in front of received or freshly allocated data (DPDK's default).
pub const RTE_PKTMBUF_HEADROOM: u16 = 128;
/// Default data room: one standard Ethernet frame plus headroom fits.
pub const RTE_MBUF_DEFAULT_DATAROOM: u16 = 2048;
/// Default buffer size (`RTE_MBUF_DEFAULT_BUF_SIZE`).
pub const RTE_MBUF_DEFAULT_BUF_SIZE: u16 = RTE_MBUF_DEFAULT_DATAROOM + RTE_PKTMBUF_HEADROOM;

/// Errors creating a pool. Each names the configuration field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MempoolError {
    #[error("mempool {name}: field `n` must be between 1 and {max} (got {got})")]
    BadCount { name: String, got: usize, max: usize },
    #[error("mempool {name}: field `buf_size` must be between 64 and 65535 and larger than `headroom` (got buf_size {buf_size}, headroom {headroom})")]
    BadSize {
        name: String,
        buf_size: usize,
        headroom: u16,
    },
    #[error("mempool {name}: rte_pktmbuf_pool_create failed: {reason} (with --no-huge give EAL enough memory, e.g. -m 512; or lower the pool size)")]
    Dpdk { name: String, reason: String },
}

/// Pool configuration (`rte_pktmbuf_pool_create` arguments).
#[derive(Debug, Clone)]
pub struct MempoolConfig {
    pub name: String,
    /// Number of buffers.
    pub n: usize,
    /// Bytes per buffer, headroom included.
    pub buf_size: usize,
    /// Headroom a freshly allocated mbuf starts with.
    pub headroom: u16,
    /// Per-core cache size (refills move half of it at a time).
    pub cache_size: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            name: "mbuf_pool".into(),
            n: 8192,
            buf_size: RTE_MBUF_DEFAULT_BUF_SIZE as usize,
            headroom: RTE_PKTMBUF_HEADROOM,
            cache_size: 256,
        }
    }
}

/// One buffer's descriptor. Fields behind `UnsafeCell` change only through a unique handle.
#[repr(C, align(64))]
pub(crate) struct MbufHdr {
    refcnt: AtomicU32,
    idx: u32,
    buf: *mut u8,
    buf_len: u16,
    data_off: UnsafeCell<u16>,
    data_len: UnsafeCell<u16>,
    next: UnsafeCell<Option<Mbuf>>,
    pool: *const PoolInner,
    /// The cache slot of the cache that allocated the buffer ([`NO_HOME`] when allocated
    /// without one): where it returns when freed. Written by `take` through the unique handle.
    home: UnsafeCell<u16>,
    /// DPDK backend: the `rte_mbuf` whose private area holds this descriptor (null on the heap).
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    rte: *mut u8,
    /// The private area: metadata of the skb hosted by this mbuf (see skbuff.rs).
    pub(crate) skb: UnsafeCell<SkbMeta>,
}

/// Most per-core caches a pool serves from their own slot; further caches (and
/// `Mempool::alloc`) use the shared free stack and count in `in_use` directly.
const MAX_CACHES: usize = 64;
/// `home` of a buffer allocated without a cache slot.
const NO_HOME: u16 = u16::MAX;
/// Most buffers of another cache a cache holds back before handing them home
/// (`MempoolCache::deferred`; Linux's NAPI_SKB_CACHE_SIZE is 64 too).
const DEFER_MAX: usize = 64;
/// Bit of `CacheSlot::out` set while no cache owns the slot.
const CLOSED: u64 = 1 << 63;

/// One per-core cache's share of the pool (DPDK: the per-lcore `rte_mempool_cache`), on its
/// own cache lines so that cores never write each other's:
///
/// - a return stack: a buffer freed goes back to the slot of the cache that allocated it,
///   which refills from there first. In the shared-nothing case the freeing core is the
///   allocating core, so the push touches only that core's line (the shared free stack and
///   an `in_use` counter updated by every core were half the cost of rr on two cores);
/// - `out`: buffers in this slot's custody, plus [`CLOSED`] while no cache owns the slot:
///   those outstanding (allocated and not yet freed) and those in the owning cache's local
///   list. The cache charges `out` once per refill, for the whole batch, so an allocation
///   from the local list costs no locked instruction (DPDK's per-lcore cache is likewise
///   free of atomics); a free still discharges its buffer (`release`), which is how the last
///   buffer of a closed slot knows it is the last;
/// - `cached`: buffers the owning cache holds that are not in use: its local list and the
///   other slots' buffers it has freed but not yet handed back (`MempoolCache::deferred`,
///   still counted in their home slot's `out`); stored (not added: only the owner writes it)
///   on every change, so `Mempool::in_use` can leave them out.
#[repr(C, align(128))]
struct CacheSlot {
    head: AtomicU64,
    out: AtomicU64,
    cached: AtomicU64,
}

pub(crate) struct PoolInner {
    name: String,
    hdrs: Box<[MbufHdr]>,
    /// Backing store of all data rooms; never touched directly after set-up.
    /// Held as a raw pointer, not a `Box`: moving a `Box` asserts unique access to its
    /// contents, which the descriptors' `buf` pointers into it would violate (Miri's stacked
    /// borrows reports it). Freed in `Drop`.
    mem: *mut [UnsafeCell<u8>],
    /// Free buffers, most recently freed on top (see stack_lf.rs for why LIFO).
    free: StackLf,
    /// Buffers outstanding that were allocated without a cache slot (the slots count theirs).
    in_use: AtomicUsize,
    slots: Box<[CacheSlot]>,
    /// Slots ever claimed are `0..slots_used` (claims take the lowest free one).
    slots_used: AtomicUsize,
    /// Strong counts parked by caches that closed while buffers they allocated were still
    /// out: the last of those buffers to come back takes one and drops it, so the pool
    /// outlives every buffer (see `MempoolCache::drop` and `release`).
    parked: Mutex<Vec<Arc<PoolInner>>>,
    headroom: u16,
    buf_size: usize,
    cache_size: usize,
    /// DPDK backend: the `rte_mempool` (null for the heap backend; then `hdrs` holds the buffers).
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    rte_mp: *mut u8,
    /// DPDK backend: the address of every rte_mbuf of the pool, ascending, so an address
    /// inside a data room finds its buffer ([`Mempool::mbuf_containing`]); empty on the heap.
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    rte_objs: Box<[usize]>,
    /// Number of buffers (`hdrs.len()` on the heap).
    n: usize,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: `mem` came from `Box::into_raw` in the constructor and is freed only here;
        // no buffer is outstanding (outstanding buffers keep the pool alive).
        drop(unsafe { Box::from_raw(self.mem) });
    }
}

// SAFETY: the raw pointers inside the descriptors point into `mem`, owned by the same
// PoolInner. Mutable descriptor state (`UnsafeCell` fields, the skb private area) is only
// accessed through a unique `Mbuf` handle (refcnt == 1) or through the single `SkBuff`
// hosted in the mbuf, so sharing the pool between threads cannot create data races.
unsafe impl Sync for PoolInner {}
// SAFETY: as above; the pool owns all its memory.
unsafe impl Send for PoolInner {}

/// A pool of packet buffers. Cheap to clone (shared handle); each core should allocate
/// through its own [`MempoolCache`].
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.inner.name)
            .field("n", &self.capacity())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Mempool {
    /// Linux/DPDK: rte_pktmbuf_pool_create(). Pre-allocates every buffer now.
    pub fn new(cfg: &MempoolConfig) -> Result<Mempool, MempoolError> {
        const MAX: usize = u32::MAX as usize / 2;
        if cfg.n == 0 || cfg.n > MAX {
            return Err(MempoolError::BadCount {
                name: cfg.name.clone(),
                got: cfg.n,
                max: MAX,
            });
        }
        if cfg.buf_size < 64 || cfg.buf_size > u16::MAX as usize || cfg.headroom as usize >= cfg.buf_size {
            return Err(MempoolError::BadSize {
                name: cfg.name.clone(),
                buf_size: cfg.buf_size,
                headroom: cfg.headroom,
            });
        }
        let mem: Box<[UnsafeCell<u8>]> = (0..cfg.n * cfg.buf_size).map(|_| UnsafeCell::new(0)).collect();
        // Raw from here on (see `PoolInner::mem`): the buffers' pointers derive from it.
        let mem = Box::into_raw(mem);
        let base = mem as *mut u8;
        let free = StackLf::new(cfg.n);
        // Pushed highest first so the first allocations come out in address order.
        for i in (0..cfg.n).rev() {
            free.push(i as u32);
        }
        let hdrs: Box<[MbufHdr]> = (0..cfg.n)
            .map(|i| {
                MbufHdr {
                    refcnt: AtomicU32::new(0),
                    idx: i as u32,
                    // SAFETY: i * buf_size + buf_size <= n * buf_size, the length of `mem`, so the
                    // pointer stays in bounds.
                    buf: unsafe { base.add(i * cfg.buf_size) },
                    buf_len: cfg.buf_size as u16,
                    data_off: UnsafeCell::new(cfg.headroom),
                    data_len: UnsafeCell::new(0),
                    next: UnsafeCell::new(None),
                    pool: std::ptr::null(),
                    home: UnsafeCell::new(NO_HOME),
                    rte: std::ptr::null_mut(),
                    skb: UnsafeCell::new(SkbMeta::new()),
                }
            })
            .collect();
        let inner = Arc::new(PoolInner {
            name: cfg.name.clone(),
            hdrs,
            mem,
            free,
            in_use: AtomicUsize::new(0),
            slots: new_slots(),
            slots_used: AtomicUsize::new(0),
            parked: Mutex::new(Vec::new()),
            headroom: cfg.headroom,
            buf_size: cfg.buf_size,
            cache_size: cfg.cache_size.clamp(1, cfg.n),
            rte_mp: std::ptr::null_mut(),
            rte_objs: Box::new([]),
            n: cfg.n,
        });
        let mut inner = inner;
        let p = Arc::as_ptr(&inner);
        // Back-pointers are written once, before any handle exists: the Arc is not shared yet,
        // so a unique borrow writes them (a write through a pointer derived from a shared
        // borrow is undefined behaviour, which Miri reported here).
        let unique = Arc::get_mut(&mut inner).expect("a fresh Arc is unique");
        for h in unique.hdrs.iter_mut() {
            h.pool = p;
        }
        Ok(Mempool { inner })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Number of buffers the pool was created with.
    pub fn capacity(&self) -> usize {
        self.inner.n
    }

    /// Buffers currently held by the stack or an application (not in the ring or a cache).
    /// Tests use it to prove nothing leaks.
    pub fn in_use(&self) -> usize {
        let used = self.inner.slots_used.load(Ordering::Acquire);
        // Summed signed: a cache's deferred buffers are charged to their home slot but left
        // out in the cache's own slot. Read apart, the counts can disagree for a moment while
        // another core's cache works: a snapshot, exact once that core is quiet.
        let slots: i64 = self.inner.slots[..used]
            .iter()
            .map(|s| (s.out.load(Ordering::Acquire) & !CLOSED) as i64 - s.cached.load(Ordering::Acquire) as i64)
            .sum();
        self.inner.in_use.load(Ordering::Acquire) + slots.max(0) as usize
    }

    /// The buffer of this pool that `bytes` lies in, as a new handle, with the offset of
    /// `bytes` from the buffer's start; None when `bytes` is not (wholly) inside one buffer
    /// of this pool.
    ///
    /// This is how a slice handed out earlier (a `bytes::Bytes` over received payload, say)
    /// is recognised when it comes back, with no registry: the heap pool's data rooms are one
    /// array, so an address says which buffer it is in. Sound for any slice: a live `&[u8]`
    /// into a buffer means no `&mut` to those bytes exists, and the count is raised only
    /// from a live handle's (never from 0, a free buffer), so the new handle shares a buffer
    /// that is already in use, read-only while shared, as any clone does.
    pub fn mbuf_containing(&self, bytes: &[u8]) -> Option<(Mbuf, usize)> {
        let inner = &self.inner;
        #[cfg(feature = "dpdk")]
        if !inner.rte_mp.is_null() {
            return inner.rte_mbuf_containing(bytes);
        }
        if inner.hdrs.is_empty() || bytes.is_empty() {
            return None;
        }
        // Addresses only: the user's pointer is compared, never dereferenced; the handle is
        // made from the descriptor, whose `buf` carries the region's provenance.
        let base = inner.mem as *const u8 as usize;
        let addr = bytes.as_ptr() as usize;
        let off_in_pool = addr.checked_sub(base)?;
        let idx = off_in_pool / inner.buf_size;
        let h = inner.hdrs.get(idx)?;
        let off = off_in_pool - idx * inner.buf_size;
        if off + bytes.len() > h.buf_len as usize {
            return None;
        }
        // Weak::upgrade's pattern: take a reference only if one is still held.
        h.refcnt
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n != 0 && n < u32::MAX / 2).then_some(n + 1)
            })
            .ok()?;
        Some((Mbuf(NonNull::from(h)), off))
    }

    /// Buffers waiting in the shared free ring (excludes per-core caches).
    pub fn available(&self) -> usize {
        #[cfg(feature = "dpdk")]
        if !self.inner.rte_mp.is_null() {
            // SAFETY: rte_mp is the live pool created in new_dpdk (never freed).
            return unsafe { dpdk::rte_mempool_avail_count(self.inner.rte_mp as *const _) } as usize;
        }
        self.inner.free.len()
    }

    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// Allocate straight from the shared ring (slow path; cores use a [`MempoolCache`]).
    pub fn alloc(&self) -> Option<Mbuf> {
        #[cfg(feature = "dpdk")]
        if !self.inner.rte_mp.is_null() {
            return self.inner.alloc_rte();
        }
        let idx = self.inner.free.pop()?;
        Some(self.inner.take(idx, NO_HOME))
    }

    /// A per-core cache in front of this pool (`rte_mempool_cache`), with a slot of its own
    /// while the pool has one free (see `CacheSlot`).
    pub fn cache(&self) -> MempoolCache {
        let slot = self
            .inner
            .slots
            .iter()
            .position(|s| {
                s.out
                    .compare_exchange(CLOSED, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })
            .map_or(NO_HOME, |i| i as u16);
        if slot != NO_HOME {
            self.inner.slots_used.fetch_max(slot as usize + 1, Ordering::AcqRel);
        }
        MempoolCache {
            pool: self.clone(),
            local: Vec::with_capacity(self.inner.cache_size),
            // At most half a cache's worth: a small pool must not sit idle in another core's
            // hands (a pool without a per-core cache defers nothing).
            deferred: Vec::with_capacity(DEFER_MAX.min(self.inner.cache_size / 2)),
            deferred_home: NO_HOME,
            slot,
            allocs: 0,
            failures: 0,
        }
    }

    /// True when `m` came from this pool.
    pub fn owns(&self, m: &Mbuf) -> bool {
        std::ptr::eq(m.hdr().pool, Arc::as_ptr(&self.inner))
    }
}

#[cfg(feature = "dpdk")]
impl Mempool {
    /// DPDK: rte_pktmbuf_pool_create() with a private area large enough for blink's descriptor
    /// (and the skb metadata inside it). EAL must be initialised. Headroom is DPDK's
    /// RTE_PKTMBUF_HEADROOM, as PMDs assume.
    pub fn new_dpdk(cfg: &MempoolConfig) -> Result<Mempool, MempoolError> {
        let bad_size = cfg.buf_size <= RTE_PKTMBUF_HEADROOM as usize || cfg.buf_size > u16::MAX as usize;
        if bad_size {
            return Err(MempoolError::BadSize {
                name: cfg.name.clone(),
                buf_size: cfg.buf_size,
                headroom: RTE_PKTMBUF_HEADROOM,
            });
        }
        if cfg.n == 0 || cfg.n > u32::MAX as usize / 2 {
            return Err(MempoolError::BadCount {
                name: cfg.name.clone(),
                got: cfg.n,
                max: u32::MAX as usize / 2,
            });
        }
        let priv_size = std::mem::size_of::<MbufHdr>();
        const { assert!(std::mem::size_of::<MbufHdr>().is_multiple_of(8) && std::mem::size_of::<MbufHdr>() < 65536) };
        // The private area starts right after the 128-byte, cache-aligned rte_mbuf, so it is
        // 64-byte aligned like MbufHdr.
        const { assert!(dpdk::RTE_MBUF_SIZE.is_multiple_of(std::mem::align_of::<MbufHdr>())) };
        let cname = std::ffi::CString::new(cfg.name.as_str()).map_err(|_| MempoolError::Dpdk {
            name: cfg.name.clone(),
            reason: "name contains NUL".into(),
        })?;
        let cache = cfg.cache_size.min(dpdk::RTE_MEMPOOL_CACHE_MAX_SIZE as usize) as u32;
        // SAFETY: plain FFI call with valid arguments; EAL is initialised by the caller (a
        // failure is reported through a NULL return and rte_errno).
        let mp = unsafe {
            dpdk::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                cfg.n as u32,
                cache,
                priv_size as u16,
                cfg.buf_size as u16,
                dpdk::rte_socket_id() as i32,
            )
        };
        if mp.is_null() {
            // SAFETY: rte_strerror returns a static or thread-local string.
            let reason = unsafe {
                let e = dpdk::blink_rte_errno();
                std::ffi::CStr::from_ptr(dpdk::rte_strerror(e))
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(MempoolError::Dpdk {
                name: cfg.name.clone(),
                reason,
            });
        }
        Ok(Mempool {
            inner: Arc::new(PoolInner {
                name: cfg.name.clone(),
                hdrs: Box::new([]),
                mem: Box::into_raw(Box::new([]) as Box<[UnsafeCell<u8>]>),
                free: StackLf::new(1),
                in_use: AtomicUsize::new(0),
                slots: Box::new([]),
                slots_used: AtomicUsize::new(0),
                parked: Mutex::new(Vec::new()),
                headroom: RTE_PKTMBUF_HEADROOM,
                buf_size: cfg.buf_size,
                cache_size: cache as usize,
                rte_mp: mp as *mut u8,
                rte_objs: rte_objects(mp),
                n: cfg.n,
            }),
        })
    }

    /// The `rte_mempool` behind a DPDK pool (null for a heap pool): what rx queues take.
    pub fn rte_mempool(&self) -> *mut dpdk::rte_mempool {
        self.inner.rte_mp as *mut dpdk::rte_mempool
    }

    /// DPDK's own in-use count (rte_mempool_in_use_count): buffers held by blink *and* by the
    /// PMD (posted rx descriptors, frames in flight). 0 for a heap pool.
    pub fn rte_in_use(&self) -> usize {
        if self.inner.rte_mp.is_null() {
            return 0;
        }
        // SAFETY: the pool is live (never freed).
        unsafe { dpdk::rte_mempool_in_use_count(self.inner.rte_mp as *const _) as usize }
    }
}

/// Every object (rte_mbuf) of a DPDK pool, by address, ascending (rte_mempool_obj_iter).
#[cfg(feature = "dpdk")]
fn rte_objects(mp: *mut dpdk::rte_mempool) -> Box<[usize]> {
    unsafe extern "C" fn collect(
        _mp: *mut dpdk::rte_mempool,
        arg: *mut std::ffi::c_void,
        obj: *mut std::ffi::c_void,
        _idx: std::ffi::c_uint,
    ) {
        // SAFETY: `arg` is the Vec passed below, alive for the whole iteration.
        unsafe { (*(arg as *mut Vec<usize>)).push(obj as usize) };
    }
    let mut v: Vec<usize> = Vec::new();
    // SAFETY: mp is a live, populated pool; the callback only records addresses.
    unsafe { dpdk::rte_mempool_obj_iter(mp, Some(collect), &mut v as *mut Vec<usize> as *mut _) };
    v.sort_unstable();
    v.into_boxed_slice()
}

#[cfg(feature = "dpdk")]
impl PoolInner {
    /// [`Mempool::mbuf_containing`] for a DPDK pool: its buffers lie in memory chunks DPDK
    /// chose, each object an rte_mbuf, blink's descriptor in its private area, then the data
    /// room; the object list found at creation gives the one below the address (a binary
    /// search), and its descriptor's own data room is checked before any use.
    fn rte_mbuf_containing(&self, bytes: &[u8]) -> Option<(Mbuf, usize)> {
        if bytes.is_empty() {
            return None;
        }
        let addr = bytes.as_ptr() as usize;
        let i = self.rte_objs.partition_point(|&o| o <= addr).checked_sub(1)?;
        let m = self.rte_objs[i];
        // Only addresses so far: whether `bytes` lies in this object's data room is decided
        // from the object's own layout (a pktmbuf pool puts the room right after the private
        // area), before the descriptor is read.
        let room = m + dpdk::RTE_MBUF_SIZE + std::mem::size_of::<MbufHdr>();
        let off = addr.checked_sub(room)?;
        if off + bytes.len() > self.buf_size {
            return None;
        }
        // SAFETY: a live slice into the data room means a live handle to this buffer (the
        // only way to reach a pool's memory from safe code), so its descriptor is the one
        // `adopt` wrote and stays valid while the count is raised from a non-zero value.
        let h = unsafe { &*((m + dpdk::RTE_MBUF_SIZE) as *const MbufHdr) };
        if h.buf as usize != room || h.rte as usize != m {
            return None;
        }
        h.refcnt
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n != 0 && n < u32::MAX / 2).then_some(n + 1)
            })
            .ok()?;
        Some((Mbuf(NonNull::from(h)), off))
    }

    fn alloc_rte(self: &Arc<Self>) -> Option<Mbuf> {
        // SAFETY: rte_mp is a live pktmbuf pool.
        let m = unsafe { dpdk::blink_rte_pktmbuf_alloc(self.rte_mp as *mut dpdk::rte_mempool) };
        if m.is_null() {
            return None;
        }
        // SAFETY: a freshly allocated segment of this pool with no other owner.
        Some(unsafe { self.adopt(m) })
    }

    /// Make an `Mbuf` of one rte_mbuf segment this pool owns: (re)write the descriptor in its
    /// private area from the rte_mbuf's own fields. No data is copied.
    ///
    /// # Safety
    /// `m` must be a segment of this pool with rte refcnt 1 that nothing else uses.
    unsafe fn adopt(self: &Arc<Self>, m: *mut dpdk::rte_mbuf) -> Mbuf {
        let mut info = dpdk::blink_rx_info::default();
        dpdk::blink_rte_mbuf_rx_info(m, &mut info);
        let hdr = (m as *mut u8).add(dpdk::RTE_MBUF_SIZE) as *mut MbufHdr;
        if self.in_use.fetch_add(1, Ordering::AcqRel) == 0 {
            // As in `take`: outstanding buffers keep the pool descriptor alive.
            Arc::increment_strong_count(Arc::as_ptr(self));
        }
        // The previous owner's descriptor is dead (its last handle released it, leaving the
        // skb metadata empty); overwrite it without dropping. Costs one write of the private
        // area per packet, as DPDK's own per-mbuf init does.
        std::ptr::write(
            hdr,
            MbufHdr {
                refcnt: AtomicU32::new(1),
                idx: u32::MAX,
                buf: info.buf_addr as *mut u8,
                buf_len: info.buf_len,
                data_off: UnsafeCell::new(info.data_off),
                data_len: UnsafeCell::new(info.data_len),
                next: UnsafeCell::new(None),
                pool: Arc::as_ptr(self),
                home: UnsafeCell::new(NO_HOME),
                rte: m as *mut u8,
                skb: UnsafeCell::new(SkbMeta::new()),
            },
        );
        Mbuf(NonNull::new_unchecked(hdr))
    }
}

#[cfg(feature = "dpdk")]
impl Mbuf {
    /// Adopt a frame a PMD delivered (all its segments, chained with `next`) without copying.
    ///
    /// # Safety
    /// `m` must come from `rte_eth_rx_burst` on a queue set up with `pool`'s rte_mempool, and
    /// be used once.
    pub unsafe fn from_rte(pool: &Mempool, m: *mut dpdk::rte_mbuf) -> Mbuf {
        let mut head = pool.inner.adopt(m);
        let mut info = dpdk::blink_rx_info::default();
        dpdk::blink_rte_mbuf_rx_info(m, &mut info);
        let mut segs: arrayvec::ArrayVec<Mbuf, 64> = arrayvec::ArrayVec::new();
        let mut next = info.next;
        while !next.is_null() {
            dpdk::blink_rte_mbuf_rx_info(next, &mut info);
            let seg = pool.inner.adopt(next);
            next = info.next;
            if segs.try_push(seg).is_err() {
                // Longer than any PMD chains a frame: the rest goes back; the caller sees a
                // short frame and its length checks drop it.
                dpdk::blink_rte_pktmbuf_free(next);
                break;
            }
        }
        // Link back to front so each set_next sees a unique handle.
        let mut rest: Option<Mbuf> = None;
        while let Some(mut s) = segs.pop() {
            let _ = s.set_next(rest);
            rest = Some(s);
        }
        let _ = head.set_next(rest);
        head
    }

    /// The rte_mbuf behind this buffer (null for a heap buffer): what the PMD sees.
    #[inline]
    pub fn rte_mbuf(&self) -> *mut dpdk::rte_mbuf {
        self.hdr().rte as *mut dpdk::rte_mbuf
    }
}

fn new_slots() -> Box<[CacheSlot]> {
    (0..MAX_CACHES)
        .map(|_| CacheSlot {
            head: StackLf::empty_head(),
            out: AtomicU64::new(CLOSED),
            cached: AtomicU64::new(0),
        })
        .collect()
}

impl PoolInner {
    /// Hand out buffer `idx`, freshly reset, as a unique handle of cache slot `home`.
    #[inline]
    fn take(self: &Arc<Self>, idx: u32, home: u16) -> Mbuf {
        let h = &self.hdrs[idx as usize];
        match self.slots.get(home as usize) {
            // The owning cache holds the pool alive, and charged `out` for this buffer when it
            // took it into its local list (see `CacheSlot`).
            Some(_) => {}
            None => {
                // An mbuf in flight keeps the pool's memory alive: the first outstanding buffer
                // takes a strong count, the last one to return gives it back (see `release`).
                if self.in_use.fetch_add(1, Ordering::AcqRel) == 0 {
                    // SAFETY: `self` is a live Arc, so incrementing its strong count is valid.
                    unsafe { Arc::increment_strong_count(Arc::as_ptr(self)) };
                }
            }
        }
        h.refcnt.store(1, Ordering::Relaxed);
        // SAFETY: the index came from a free stack, so no handle refers to this descriptor.
        unsafe {
            *h.data_off.get() = self.headroom;
            *h.data_len.get() = 0;
            *h.home.get() = home;
        }
        Mbuf(NonNull::from(h))
    }

    /// Discharge `k` buffers pushed back onto `slot` (the pushes come first). If they were
    /// the last out of a closed cache's slot, drain the slot and hand back the strong count
    /// the cache parked, for the caller to drop once it no longer uses the pool (the pool may
    /// go with it).
    #[must_use]
    fn discharge(&self, slot: &CacheSlot, k: u64) -> Option<Arc<PoolInner>> {
        // AcqRel: every push before its `fetch_sub` (release), so the last sees them all.
        if slot.out.fetch_sub(k, Ordering::AcqRel) != CLOSED | k {
            return None;
        }
        self.drain_slot(slot);
        self.parked.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Move whatever a closed slot's return stack holds to the shared free stack.
    fn drain_slot(&self, slot: &CacheSlot) {
        let mut v = Vec::new();
        while self.free.pop_bulk_on(&slot.head, 64, &mut v) > 0 {
            for i in v.drain(..) {
                self.free.push(i);
            }
        }
    }
}

/// Per-core allocation cache: refills from the shared ring in bulk so the common case is a
/// `Vec::pop`. Dropping it returns what it holds to the pool.
pub struct MempoolCache {
    pool: Mempool,
    local: Vec<u32>,
    /// Buffers of another cache's slot (`deferred_home`) freed through this one and not yet
    /// handed back: returned in one batch by `flush_deferred` (one locked push and one
    /// discharge per batch instead of two locked instructions per buffer). Linux defers the
    /// same way: napi_consume_skb's per-cpu cache, flushed with kmem_cache_free_bulk.
    deferred: Vec<u32>,
    deferred_home: u16,
    /// This cache's slot in the pool, or `NO_HOME`.
    slot: u16,
    allocs: u64,
    failures: u64,
}

impl MempoolCache {
    /// rte_pktmbuf_alloc(): None when the pool is exhausted (the caller counts the drop).
    #[inline]
    pub fn alloc(&mut self) -> Option<Mbuf> {
        // One predictable branch per allocation: DPDK's rte_pktmbuf_alloc has its own per-lcore
        // cache, so the DPDK backend skips ours.
        #[cfg(feature = "dpdk")]
        if !self.pool.inner.rte_mp.is_null() {
            let m = self.pool.inner.alloc_rte();
            match m {
                Some(_) => self.allocs += 1,
                None => self.failures += 1,
            }
            return m;
        }
        let idx = match self.local.pop() {
            Some(i) => i,
            None => {
                let inner = &self.pool.inner;
                let want = (inner.cache_size / 2).max(1);
                // Our own returns first (buffers this core used last), then the shared stack.
                // Taken top first; reversed so the most recently freed buffer (warmest in
                // cache) is handed out first.
                let mut got = match inner.slots.get(self.slot as usize) {
                    Some(slot) => inner.free.pop_bulk_on(&slot.head, want, &mut self.local),
                    None => 0,
                };
                if got == 0 {
                    got = inner.free.pop_bulk(want, &mut self.local);
                }
                if got == 0 {
                    // Buffers freed on behalf of other caches wait in their slots: take some
                    // rather than fail while the pool still has free buffers (ours held back
                    // for another slot first).
                    if !self.deferred.is_empty() {
                        self.flush_deferred();
                    }
                    let inner = &self.pool.inner;
                    let used = inner.slots_used.load(Ordering::Acquire);
                    for slot in inner.slots[..used].iter() {
                        got = inner.free.pop_bulk_on(&slot.head, want, &mut self.local);
                        if got > 0 {
                            break;
                        }
                    }
                }
                if got > 1 {
                    self.local.reverse();
                }
                if let Some(slot) = self.pool.inner.slots.get(self.slot as usize).filter(|_| got > 0) {
                    // Charged once for the batch: allocations from the local list are then free
                    // of locked instructions.
                    slot.out.fetch_add(got as u64, Ordering::Relaxed);
                }
                match self.local.pop() {
                    Some(i) => i,
                    None => {
                        self.failures += 1;
                        return None;
                    }
                }
            }
        };
        self.allocs += 1;
        self.note_cached();
        Some(self.pool.inner.take(idx, self.slot))
    }

    /// rte_pktmbuf_free() through this core's cache (DPDK's per-lcore mempool cache put): the
    /// last handle of a single-segment buffer this cache handed out goes straight back onto
    /// the local list, with no locked instruction. Anything else (still shared, another
    /// cache's, chained, the DPDK backend, a full local list) takes the ordinary release,
    /// whose return stack and outstanding count cost two locked instructions per buffer.
    #[inline]
    pub fn free(&mut self, m: Mbuf) {
        let h = m.hdr();
        // Acquire: pairs with the release decrement of whichever handle went before (as in
        // Mbuf::drop), so every write to the buffer happened before it is handed out again.
        if h.refcnt.load(Ordering::Acquire) == 1
            && self.slot != NO_HOME
            && h.rte.is_null()
            && std::ptr::eq(h.pool, Arc::as_ptr(&self.pool.inner))
            && self.local.len() < self.local.capacity()
        {
            // SAFETY: a count of one means `m` is the only handle, so nothing else reads or
            // writes the descriptor's cells.
            let (home, chained) = unsafe { (*h.home.get(), (*h.next.get()).is_some()) };
            if home == self.slot && !chained {
                // Still charged to this slot's outstanding count, as every buffer on the
                // local list is (see `CacheSlot`): nothing to account.
                let idx = h.idx;
                std::mem::forget(m);
                self.local.push(idx);
                self.note_cached();
                return;
            }
            if !chained && (home as usize) < self.pool.inner.slots.len() && self.deferred.capacity() > 0 {
                // Another cache's buffer (the peer stack's frame on an in-memory wire, a
                // buffer re-injected from another core): held back and handed home in a
                // batch. It stays charged to its home slot until then.
                if self.deferred.len() == self.deferred.capacity()
                    || (home != self.deferred_home && !self.deferred.is_empty())
                {
                    self.flush_deferred();
                }
                let idx = h.idx;
                std::mem::forget(m);
                self.deferred_home = home;
                self.deferred.push(idx);
                self.note_cached();
                return;
            }
        }
        drop(m);
    }

    /// Hand the buffers held back by `free` to their home slot: one push of the whole chain
    /// and one discharge of its count (`release`'s two locked instructions, once per batch).
    /// The stack calls it at the end of every poll; the cache's drop does too.
    pub fn flush_deferred(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let inner = &self.pool.inner;
        let slot = &inner.slots[self.deferred_home as usize];
        let k = self.deferred.len() as u64;
        inner.free.push_chain_on(&slot.head, &self.deferred);
        self.deferred.clear();
        self.note_cached();
        // This cache holds a strong count of its own, so the pool outlives the parked one.
        drop(inner.discharge(slot, k));
    }

    /// Publish how many free buffers this cache holds (see `CacheSlot::cached`).
    #[inline]
    fn note_cached(&self) {
        if let Some(slot) = self.pool.inner.slots.get(self.slot as usize) {
            slot.cached
                .store((self.local.len() + self.deferred.len()) as u64, Ordering::Relaxed);
        }
    }

    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// (successful allocations, failed allocations) through this cache.
    pub fn stats(&self) -> (u64, u64) {
        (self.allocs, self.failures)
    }
}

impl Drop for MempoolCache {
    fn drop(&mut self) {
        self.flush_deferred();
        let inner = &self.pool.inner;
        let cached = self.local.len() as u64;
        for idx in self.local.drain(..) {
            inner.free.push(idx);
        }
        let Some(slot) = inner.slots.get(self.slot as usize) else {
            return;
        };
        // The local list no longer counts against the slot: what stays charged is what is
        // outstanding, so the last of those to come back can tell (`release`).
        slot.cached.store(0, Ordering::Relaxed);
        slot.out.fetch_sub(cached, Ordering::AcqRel);
        // Buffers this cache handed out may still be in flight: park a strong count first, so
        // the pool outlives them; the last of them to come back drops it (`release`).
        inner
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.pool.inner.clone());
        let prev = slot.out.fetch_or(CLOSED, Ordering::AcqRel);
        // What came back so far goes to the shared stack now; what comes back later is moved
        // there by the last buffer to return (`release`).
        inner.drain_slot(slot);
        if prev == 0 {
            // Nothing outstanding: no buffer will come back for the parked count.
            let arc = inner.parked.lock().unwrap_or_else(|e| e.into_inner()).pop();
            drop(arc);
        }
    }
}

/// A reference-counted handle to one packet buffer.
pub struct Mbuf(NonNull<MbufHdr>);

// SAFETY: the descriptor lives in a pool that outlives every handle (see PoolInner::take);
// the refcount is atomic and mutation requires a unique handle.
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only allows reads of the buffer and atomic refcount updates.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    #[inline]
    pub(crate) fn hdr(&self) -> &MbufHdr {
        // SAFETY: the pool keeps descriptors alive while any handle exists.
        unsafe { self.0.as_ref() }
    }

    /// Rebuild a handle from a pointer produced by `into_raw`.
    ///
    /// # Safety
    /// `p` must come from `Mbuf::into_raw` and be used once.
    #[inline]
    pub(crate) unsafe fn from_raw(p: *const MbufHdr) -> Mbuf {
        Mbuf(NonNull::new_unchecked(p as *mut MbufHdr))
    }

    #[inline]
    pub(crate) fn into_raw(self) -> *const MbufHdr {
        let p = self.0.as_ptr() as *const MbufHdr;
        std::mem::forget(self);
        p
    }

    /// Number of handles sharing this buffer (rte_mbuf_refcnt_read).
    #[inline]
    pub fn refcnt(&self) -> u32 {
        self.hdr().refcnt.load(Ordering::Acquire)
    }

    /// True when this handle is the only one: the buffer may be written.
    #[inline]
    pub fn is_unique(&self) -> bool {
        self.refcnt() == 1
    }

    /// Address of the buffer: identity for zero-copy checks.
    #[inline]
    pub fn buf_addr(&self) -> usize {
        self.hdr().buf as usize
    }

    /// Index of this buffer inside its pool.
    pub fn index(&self) -> u32 {
        self.hdr().idx
    }

    #[inline]
    pub fn buf_len(&self) -> usize {
        self.hdr().buf_len as usize
    }

    #[inline]
    pub fn data_off(&self) -> usize {
        // SAFETY: only written through a unique handle, which cannot coexist with `&self`.
        unsafe { *self.hdr().data_off.get() as usize }
    }

    #[inline]
    pub fn data_len(&self) -> usize {
        // SAFETY: as for data_off.
        unsafe { *self.hdr().data_len.get() as usize }
    }

    #[inline]
    pub fn headroom(&self) -> usize {
        self.data_off()
    }

    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf_len() - self.data_off() - self.data_len()
    }

    /// Start of the buffer as the raw pointer the descriptor holds (its provenance is the
    /// pool's memory, as `buf_mut` uses it), for skbs that cache it.
    #[inline]
    pub(crate) fn buf_ptr(&self) -> *mut u8 {
        self.hdr().buf
    }

    /// The whole buffer, headroom included.
    #[inline]
    pub fn buf(&self) -> &[u8] {
        let h = self.hdr();
        // SAFETY: `buf` points at `buf_len` bytes owned by the pool; writes need a unique
        // handle, which cannot exist while this shared borrow does.
        unsafe { std::slice::from_raw_parts(h.buf, h.buf_len as usize) }
    }

    /// The whole buffer, writable; None when the buffer is shared.
    #[inline]
    pub fn buf_mut(&mut self) -> Option<&mut [u8]> {
        if !self.is_unique() {
            return None;
        }
        let h = self.hdr();
        // SAFETY: refcnt == 1 and we hold `&mut self`: no other reference to these bytes.
        Some(unsafe { std::slice::from_raw_parts_mut(h.buf, h.buf_len as usize) })
    }

    /// The data bytes (`rte_pktmbuf_mtod` .. + data_len) of this segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let (o, l) = (self.data_off(), self.data_len());
        &self.buf()[o..o + l]
    }

    #[inline]
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        let (o, l) = (self.data_off(), self.data_len());
        self.buf_mut().map(|b| &mut b[o..o + l])
    }

    /// Set the data window directly (unique handles only).
    pub fn set_data(&mut self, off: usize, len: usize) -> bool {
        if !self.is_unique() || off + len > self.buf_len() {
            return false;
        }
        let h = self.hdr();
        // SAFETY: unique handle, see buf_mut.
        unsafe {
            *h.data_off.get() = off as u16;
            *h.data_len.get() = len as u16;
        }
        true
    }

    /// rte_pktmbuf_append(): grow the data at the tail, returning the new bytes.
    pub fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.tailroom() {
            return None;
        }
        let (o, l) = (self.data_off(), self.data_len());
        if !self.set_data(o, l + len) {
            return None;
        }
        self.buf_mut().map(|b| &mut b[o + l..o + l + len])
    }

    /// rte_pktmbuf_prepend(): grow the data at the front.
    pub fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.headroom() {
            return None;
        }
        let (o, l) = (self.data_off(), self.data_len());
        if !self.set_data(o - len, l + len) {
            return None;
        }
        self.buf_mut().map(|b| &mut b[o - len..o])
    }

    /// rte_pktmbuf_adj(): remove `len` bytes from the front.
    pub fn adj(&mut self, len: usize) -> bool {
        let (o, l) = (self.data_off(), self.data_len());
        len <= l && self.set_data(o + len, l - len)
    }

    /// rte_pktmbuf_trim(): remove `len` bytes from the tail.
    pub fn trim(&mut self, len: usize) -> bool {
        let (o, l) = (self.data_off(), self.data_len());
        len <= l && self.set_data(o, l - len)
    }

    /// Fill the data area from a slice (after `reset`): a copying helper for tests and the
    /// TAP driver's receive.
    pub fn append_slice(&mut self, bytes: &[u8]) -> bool {
        match self.append(bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// Next segment of a chained packet.
    pub fn next(&self) -> Option<&Mbuf> {
        // SAFETY: `next` changes only through a unique handle.
        unsafe { (*self.hdr().next.get()).as_ref() }
    }

    /// Chain `seg` after this segment (unique handles only); returns it back on failure.
    pub fn set_next(&mut self, seg: Option<Mbuf>) -> Result<Option<Mbuf>, Option<Mbuf>> {
        if !self.is_unique() {
            return Err(seg);
        }
        // SAFETY: unique handle.
        Ok(unsafe { std::mem::replace(&mut *self.hdr().next.get(), seg) })
    }

    /// Detach and return the rest of the chain (unique handles only).
    pub fn take_next(&mut self) -> Option<Mbuf> {
        self.set_next(None).ok().flatten()
    }

    /// Number of segments in the chain starting here.
    pub fn nb_segs(&self) -> usize {
        let mut n = 1;
        let mut cur = self.next();
        while let Some(m) = cur {
            n += 1;
            cur = m.next();
        }
        n
    }

    /// Total data bytes of the chain starting here (rte_pktmbuf_pkt_len).
    pub fn pkt_len(&self) -> usize {
        let mut n = self.data_len();
        let mut cur = self.next();
        while let Some(m) = cur {
            n += m.data_len();
            cur = m.next();
        }
        n
    }

    /// The pool this buffer belongs to.
    pub fn pool_name(&self) -> &str {
        // SAFETY: the pool outlives every handle.
        unsafe { &(*self.hdr().pool).name }
    }
}

impl Clone for Mbuf {
    /// rte_mbuf_refcnt_update(+1): another handle to the same buffer.
    #[inline]
    fn clone(&self) -> Mbuf {
        // Relaxed is enough for an increment (same reasoning as Arc::clone).
        let old = self.hdr().refcnt.fetch_add(1, Ordering::Relaxed);
        assert!(old < u32::MAX / 2, "mbuf refcount overflow");
        Mbuf(self.0)
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // DPDK's rte_pktmbuf_prefree_seg: a count of one means this is the only handle, and no
        // other can appear (cloning needs a handle), so the locked decrement is skipped. The
        // acquire load pairs with the release decrement of whichever handle went before.
        if self.hdr().refcnt.load(Ordering::Acquire) != 1 {
            if self.hdr().refcnt.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            fence(Ordering::Acquire);
        }
        // SAFETY: the count reached zero, so this was the last handle.
        unsafe { release(self.0) }
    }
}

/// Return a buffer whose last handle went away to its pool.
///
/// # Safety
/// No handle to `p` may remain.
unsafe fn release(p: NonNull<MbufHdr>) {
    let h = p.as_ref();
    // Dropping the rest of the chain frees each segment whose count also reaches zero.
    let rest = (*h.next.get()).take();
    drop(rest);
    // Read everything needed before the buffer goes back: with DPDK, the next owner rewrites
    // the whole descriptor.
    let pool_ptr = h.pool;
    let pool = &*pool_ptr;
    #[cfg(feature = "dpdk")]
    if !h.rte.is_null() {
        // Our handles held one DPDK reference: give it back. The segment returns to the pool
        // now, or when the PMD frees the last indirect mbuf still attached to it (transmit).
        dpdk::blink_rte_pktmbuf_free_seg(h.rte as *mut dpdk::rte_mbuf);
        release_unhomed(pool_ptr);
        return;
    }
    let (idx, home) = (h.idx, *h.home.get());
    let Some(slot) = pool.slots.get(home as usize) else {
        pool.free.push(idx);
        release_unhomed(pool_ptr);
        return;
    };
    // Back to the slot of the cache that allocated it. If that cache has closed, the last of
    // its buffers to come back moves the slot's stack to the shared one: every push here
    // happens before its `fetch_sub` (release), so the last one sees them all (acquire).
    pool.free.push_on(&slot.head, idx);
    // The last access unless this was the closed cache's last buffer out: then the slot is
    // drained and the strong count the cache parked dropped here (the pool may go with it).
    let parked = pool.discharge(slot, 1);
    drop(parked);
}

/// The accounting of a buffer allocated without a cache slot: the last one outstanding gives
/// back the strong count the first one took.
///
/// # Safety
/// `pool_ptr` must be the live pool of the buffer just released.
#[inline]
unsafe fn release_unhomed(pool_ptr: *const PoolInner) {
    // Only a raw pointer comes in: a reference argument would have to outlive the call,
    // during which the pool may be freed.
    if (*pool_ptr).in_use.fetch_sub(1, Ordering::AcqRel) == 1 {
        // Last outstanding buffer: give back the strong count taken in `take`. This may free
        // the pool, so it must be the very last access.
        Arc::decrement_strong_count(pool_ptr);
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("idx", &self.index())
            .field("refcnt", &self.refcnt())
            .field("data_off", &self.data_off())
            .field("data_len", &self.data_len())
            .field("nb_segs", &self.nb_segs())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbuf_containing_finds_the_buffer_of_a_slice() {
        let p = pool(4);
        let mut m = p.alloc().unwrap();
        assert!(m.append_slice(b"hello, world"));
        let (found, off) = p.mbuf_containing(&m.data()[7..]).expect("inside the buffer");
        assert_eq!(found.buf_addr(), m.buf_addr());
        assert_eq!(off, m.data_off() + 7);
        assert_eq!(m.refcnt(), 2, "a new handle, as a clone");
        assert_eq!(&found.buf()[off..off + 5], b"world");
        drop(found);
        assert!(m.is_unique());
        // Not in the pool: a heap slice, another pool's buffer, an empty slice.
        assert!(p.mbuf_containing(b"hello").is_none());
        let other = pool(1);
        let o = other.alloc().unwrap();
        assert!(p.mbuf_containing(&o.buf()[..8]).is_none());
        assert!(p.mbuf_containing(&m.data()[..0]).is_none());
        drop((m, o));
        assert_eq!(p.in_use(), 0);
    }

    fn pool(n: usize) -> Mempool {
        Mempool::new(&MempoolConfig {
            name: "test".into(),
            n,
            cache_size: 8,
            ..Default::default()
        })
        .unwrap()
    }

    /// `MempoolCache::free` puts a buffer of its own, last handle, back on the local list (the
    /// next allocation hands it out again); a shared buffer, another cache's buffer or a chain
    /// takes the ordinary release, and the pool's count is right either way.
    #[test]
    fn cache_free_recycles_only_its_own_last_handles() {
        let p = pool(32);
        let mut a = p.cache();
        let mut b = p.cache();
        let m = a.alloc().unwrap();
        let addr = m.buf_addr();
        a.free(m);
        assert_eq!(p.in_use(), 0);
        let m = a.alloc().unwrap();
        assert_eq!(m.buf_addr(), addr, "the freed buffer is handed out next");
        // Shared: the clone keeps it; freeing the last handle later still returns it.
        let c = m.clone();
        a.free(m);
        assert_eq!(p.in_use(), 1);
        a.free(c);
        assert_eq!(p.in_use(), 0);
        // Another cache's buffer goes home through the ordinary release.
        let mb = b.alloc().unwrap();
        let baddr = mb.buf_addr();
        a.free(mb);
        assert_eq!(p.in_use(), 0);
        assert!(a.local.iter().all(|&i| p.inner.hdrs[i as usize].buf as usize != baddr));
        // A chain is released segment by segment.
        let mut head = a.alloc().unwrap();
        head.set_next(Some(a.alloc().unwrap())).unwrap();
        a.free(head);
        assert_eq!(p.in_use(), 0);
        drop(a);
        drop(b);
        assert_eq!(p.in_use(), 0);
    }

    /// Another cache's buffers freed through a cache are held back and go home in one batch:
    /// the pool's count leaves them out at once, the home cache allocates them again after the
    /// flush, a full batch or a buffer of a third cache flushes, and a home cache that closed
    /// meanwhile leaves the pool alive until the batch comes back.
    #[test]
    fn cache_free_defers_other_caches_buffers_to_one_batch() {
        let p = pool(32); // cache_size 8: batches of at most 4
        let mut a = p.cache();
        let mut b = p.cache();
        let mut c = p.cache();
        let bufs: Vec<_> = (0..3).map(|_| b.alloc().unwrap()).collect();
        let addrs: Vec<_> = bufs.iter().map(|m| m.buf_addr()).collect();
        for m in bufs {
            a.free(m);
        }
        assert_eq!((a.deferred.len(), p.in_use()), (3, 0));
        a.flush_deferred();
        assert_eq!((a.deferred.len(), p.in_use()), (0, 0));
        // b's refill took 4: one is left locally, the next refill finds the three returned.
        let kept = b.alloc().unwrap();
        let back = b.alloc().unwrap();
        assert!(
            addrs.contains(&back.buf_addr()),
            "the flushed buffers are back in b's slot"
        );
        drop((kept, back));
        // A full batch flushes before the fifth; a third cache's buffer flushes too.
        let bufs: Vec<_> = (0..5).map(|_| b.alloc().unwrap()).collect();
        for m in bufs {
            a.free(m);
        }
        assert_eq!((a.deferred.len(), p.in_use()), (1, 0));
        a.free(c.alloc().unwrap());
        assert_eq!((a.deferred.len(), a.deferred_home, p.in_use()), (1, c.slot, 0));
        a.flush_deferred();
        // b closes with two buffers out; a holds them back; the pool lives on until a flushes.
        let out: Vec<_> = (0..2).map(|_| b.alloc().unwrap()).collect();
        drop(b);
        for m in out {
            a.free(m);
        }
        assert_eq!(p.in_use(), 0);
        drop(p);
        a.flush_deferred();
        let m = a.alloc().unwrap();
        drop(m);
        drop((a, c));
    }

    /// Buffers go back to the slot of the cache that allocated them, wherever they are freed;
    /// another cache takes them from there when the rest of the pool is empty; a cache that
    /// closes with buffers still out keeps the pool alive until the last comes back.
    #[test]
    fn cache_slots_return_steal_and_outlive() {
        let p = pool(8);
        let mut a = p.cache();
        let mut b = p.cache();
        let held: Vec<_> = (0..8).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(p.in_use(), 8);
        assert!(b.alloc().is_none(), "pool exhausted");
        drop(held);
        assert_eq!(p.in_use(), 0);
        // Everything sits in a's slot (and none in the shared stack): b steals it.
        let got: Vec<_> = (0..8).map(|_| b.alloc().expect("stolen from a's slot")).collect();
        assert_eq!(p.in_use(), 8);
        drop(got);
        // A cache closing with a buffer out: the buffer outlives cache and pool handle.
        let mut c = p.cache();
        let m = c.alloc().unwrap();
        drop(c);
        drop(a);
        drop(b);
        assert_eq!(p.in_use(), 1);
        let weak = Arc::downgrade(&p.inner);
        drop(p);
        assert!(weak.upgrade().is_some(), "the outstanding buffer keeps the pool alive");
        drop(m);
        assert!(weak.upgrade().is_none(), "the last buffer back lets the pool go");
    }

    /// Two threads allocating and freeing through their own caches, buffers crossing between
    /// them: every buffer comes back, counts end at zero.
    #[test]
    #[cfg_attr(miri, ignore = "200k operations: too slow under Miri")]
    fn cache_slots_across_threads() {
        let p = pool(256);
        let ring = Arc::new(crate::ring::Ring::new("x", 64).unwrap());
        let (p2, r2) = (p.clone(), ring.clone());
        let t = std::thread::spawn(move || {
            let mut c = p2.cache();
            let mut sent = 0;
            while sent < 100_000 {
                if let Some(m) = c.alloc() {
                    let mut m = Some(m);
                    while let Some(x) = m.take() {
                        if let Err(x) = r2.enqueue(x) {
                            m = Some(x);
                            std::thread::yield_now();
                        }
                    }
                    sent += 1;
                }
            }
        });
        let mut c = p.cache();
        let mut got = 0;
        while got < 100_000 {
            if let Some(m) = ring.dequeue() {
                let mine = c.alloc();
                drop(m);
                drop(mine);
                got += 1;
            }
        }
        t.join().unwrap();
        drop(c);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn alloc_free_counts() {
        let p = pool(16);
        let mut c = p.cache();
        let a = c.alloc().unwrap();
        let b = c.alloc().unwrap();
        assert_eq!(p.in_use(), 2);
        assert_eq!(a.headroom(), RTE_PKTMBUF_HEADROOM as usize);
        assert_eq!(a.data_len(), 0);
        assert_ne!(a.buf_addr(), b.buf_addr());
        drop(a);
        assert_eq!(p.in_use(), 1);
        drop(b);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn exhaustion_returns_none_and_recovers() {
        let p = pool(4);
        let mut c = p.cache();
        let v: Vec<_> = (0..4).map(|_| c.alloc().unwrap()).collect();
        assert!(c.alloc().is_none());
        assert_eq!(c.stats().1, 1);
        drop(v);
        assert!(c.alloc().is_some());
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn clone_shares_and_blocks_writes() {
        let p = pool(4);
        let mut a = p.alloc().unwrap();
        assert!(a.append_slice(b"hello"));
        let b = a.clone();
        assert_eq!(a.refcnt(), 2);
        assert_eq!(b.data(), b"hello");
        assert_eq!(a.buf_addr(), b.buf_addr());
        assert!(a.data_mut().is_none(), "shared buffer must not be writable");
        assert!(!a.adj(1));
        drop(b);
        assert_eq!(p.in_use(), 1, "buffer stays until the last handle drops");
        assert!(a.data_mut().is_some());
        drop(a);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn data_window_ops() {
        let p = pool(2);
        let mut m = p.alloc().unwrap();
        m.append(10).unwrap().fill(7);
        m.prepend(4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(m.data_len(), 14);
        assert_eq!(&m.data()[..5], &[1, 2, 3, 4, 7]);
        assert!(m.adj(4));
        assert!(m.trim(2));
        assert_eq!(m.data(), &[7; 8]);
        assert!(m.prepend(RTE_PKTMBUF_HEADROOM as usize + 10).is_none());
        assert!(m.append(m.tailroom() + 1).is_none());
    }

    #[test]
    fn chains_free_every_segment() {
        let p = pool(8);
        let mut a = p.alloc().unwrap();
        let mut b = p.alloc().unwrap();
        let c = p.alloc().unwrap();
        a.append_slice(b"aa");
        b.append_slice(b"bbb");
        b.set_next(Some(c)).unwrap();
        a.set_next(Some(b)).unwrap();
        assert_eq!(a.nb_segs(), 3);
        assert_eq!(a.pkt_len(), 5);
        assert_eq!(p.in_use(), 3);
        drop(a);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn pool_outlives_handles() {
        let p = pool(2);
        let m = p.alloc().unwrap();
        drop(p);
        // The buffer is still readable and its free does not touch freed memory.
        assert_eq!(m.data_len(), 0);
        drop(m);
    }

    #[test]
    fn cross_thread_free() {
        let p = pool(64);
        let bufs: Vec<_> = (0..64).map(|_| p.alloc().unwrap()).collect();
        std::thread::spawn(move || drop(bufs)).join().unwrap();
        assert_eq!(p.in_use(), 0);
        assert_eq!(p.available(), 64);
    }

    #[test]
    fn bad_config_names_field() {
        let e = Mempool::new(&MempoolConfig {
            n: 0,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`n`"));
        let e = Mempool::new(&MempoolConfig {
            buf_size: 100,
            headroom: 128,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`buf_size`"));
    }
}
