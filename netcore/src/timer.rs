//! Kernel-style timers on a cascading timer wheel per core.
//!
//! Linux: kernel/time/timer.c and include/linux/timer.h (the wheel is the cascading one Linux
//! had before 4.8).
//!
//! Each core owns one [`Timers`]. The timers themselves live in a per-core slab of
//! `TimerList`s addressed by [`TimerId`]. Like the `entry` list_head of Linux's
//! `struct timer_list`, every `TimerList` carries its own links (`next`/`prev`, slab indices),
//! so a timer sits on at most one list: a wheel bucket, the expired queue or the deferred
//! queue. The buckets and queues are nothing but list heads (two `u32`s each). Filing, moving
//! and removing a timer is an O(1) link or unlink whatever the number of armed timers, and
//! nothing allocates after construction except the slab (and its free list) growing when
//! [`Timers::timer_setup`] needs more slots.
//!
//! # The wheel: two levels, long delays hop
//!
//! `tv1` has 64 buckets of one jiffy, `tv2` 4096 buckets of 64 jiffies (2^18 jiffies, 4.4
//! minutes, in all), both rings indexed by the expiry's bits as in Linux. When tv1's index
//! wraps, the tv2 bucket of the next 64 jiffies is cascaded down into tv1 (Linux: cascade()).
//!
//! Why not Linux's tv3..tv5: a cascade moves a whole upper-level bucket down in one tick. A
//! tv3 bucket spans 2^14 jiffies, so every timer filed more than 2^14 jiffies out waits there
//! and comes down in one piece: with 1M timers under a minute that is about a quarter of them
//! at once, a stall of many milliseconds every 16 s. So there is no third level: a delay
//! beyond tv2's reach is filed into a tv2 bucket in the second half of that reach, spread by a
//! hash so that timers armed together do not all hop on the same tick, and re-filed for the
//! rest of the delay when its bucket is cascaded (TCP's timers, under two minutes, never hop;
//! a 2-hour keepalive hops about 37 times over its life). A cascade then moves the timers due
//! in one 64-jiffy window plus the hops that happen to land there: the work per tick is
//! proportional to the timers due around that tick, never to the number armed.
//!
//! Why 64 one-jiffy buckets rather than Linux's 256 (64 is its `CONFIG_BASE_SMALL` size): a
//! cascade walks a linked list, one dependent cache miss per timer, so its cost is the number
//! of timers due in one tv1 span. With 1M timers under a minute a 256-jiffy span holds ~4,300
//! of them, and its cascade took over a millisecond on the development VM; a 64-jiffy span
//! holds ~1,100 (well under 0.5 ms). tv2 is wide in exchange, so that its reach still covers
//! TCP's timers.
//!
//! An occupancy bitmap per level lets [`Timers::advance`] jump straight to the next non-empty
//! bucket instead of ticking through empty jiffies; a very long gap re-files the pending timers
//! from the slab instead (see there).
//!
//! Timers fire only inside the poll loop of their core: the loop calls [`run_timers`] (or
//! [`Timers::advance`] and then [`Timers::next_expired`] itself) with the current jiffy.
//!
//! # Exactness
//!
//! A timer armed for jiffy `e` runs during the first `advance(now)` with `now >= e`: exactly at
//! `e` when the loop advances every jiffy, never earlier. Three situations bring a timer out of
//! its bucket before its expiry; it is then re-filed for the rest of the delay, so the owner
//! never notices:
//! - a tv2 bucket is cascaded (its timers are due somewhere in the next 64 jiffies);
//! - a delay longer than tv2 can hold (above);
//! - `mod_timer` moving a pending timer *later* only records the new expiry (see there).
//!
//! # Re-arming from a callback
//!
//! The `Timers` lives inside the owner's context `C`, and a callback receives `&mut C`, so it
//! can call any method on the timers, including `mod_timer` on its own timer:
//!
//! ```
//! use blink_netcore::timer::{run_timers, TimerId, Timers};
//!
//! struct Core {
//!     timers: Timers<Core>,
//!     keepalive: TimerId,
//!     probes: u32,
//! }
//!
//! /// `data` is whatever the owner needs to find the object: here unused, usually a socket
//! /// handle whose socket stores its `TimerId`s.
//! fn keepalive_timer(core: &mut Core, _data: u64) {
//!     core.probes += 1;
//!     let now = core.timers.now();
//!     let id = core.keepalive;
//!     core.timers.mod_timer(id, now + 75); // periodic: re-arm from inside the callback
//! }
//!
//! let mut timers = Timers::new(0);
//! let keepalive = timers.timer_setup(keepalive_timer, 0);
//! let mut core = Core { timers, keepalive, probes: 0 };
//! core.timers.mod_timer(keepalive, 75);
//! for jiffy in 1..=300 {
//!     run_timers(&mut core, |c| &mut c.timers, jiffy);
//! }
//! assert_eq!(core.probes, 4); // 75, 150, 225, 300
//! assert!(core.timers.timer_pending(keepalive));
//! ```
//!
//! [`Timers::next_expired`] hands out the function and data *by value*, so nothing borrows the
//! `Timers` while the callback runs.

use std::fmt;

/// A timer callback: the owner's context and the timer's opaque data.
///
/// Linux: `timer_list.function` with the pre-4.15 `data` argument (include/linux/timer.h).
pub type TimerFn<C> = fn(&mut C, u64);

/// A timer: an index into its core's timer slab.
///
/// Only meaningful on the [`Timers`] that created it, and only until [`Timers::timer_free`].
/// Using a freed id is harmless (the calls become no-ops) until the slot is handed out again
/// by [`Timers::timer_setup`]; owners free a timer together with the object that holds its id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId(u32);

/// Linux (before 4.8): `TVR_BITS`, the first level (`tv1`) of one-jiffy buckets. 6 as with
/// Linux's `CONFIG_BASE_SMALL`, not 8: it bounds the timers one cascade moves (module doc).
const TVR_BITS: u32 = 6;
const TVR_SIZE: usize = 1 << TVR_BITS;
const TVR_MASK: u64 = TVR_SIZE as u64 - 1;

/// Linux (before 4.8): `TVN_BITS`, the second level (`tv2`) of `TVR_SIZE`-jiffy buckets.
/// Linux has 6 bits and three more such levels; here tv2 is the last level, so it is wider:
/// 2^18 jiffies in all, beyond TCP's longest usual timers (RTO at most 120 s, TIME_WAIT and
/// FIN_WAIT2 60 s).
const TVN_BITS: u32 = 12;
const TVN_SIZE: usize = 1 << TVN_BITS;
const TVN_MASK: u64 = TVN_SIZE as u64 - 1;

// The occupancy bitmaps give each level whole 64-bit words.
const _: () = assert!(TVR_SIZE.is_multiple_of(64) && TVN_SIZE.is_multiple_of(64));

/// Jiffies the two levels span: an advance over a longer gap may re-file from the slab.
const WHEEL_SPAN: u64 = 1 << (TVR_BITS + TVN_BITS);

/// An advance over more than `WHEEL_SPAN` jiffies and more than this many jiffies per slab
/// slot re-files every pending timer from the slab instead of walking the wheel through the
/// gap.
const REBASE_JIFFIES_PER_SLOT: u64 = 64;

/// List numbers: tv1's buckets, then tv2's, then the two queues.
const TV2: usize = TVR_SIZE;
const WHEEL_LISTS: usize = TVR_SIZE + TVN_SIZE;
/// Timers due to run, in order (Linux: the local list expire_timers() walks).
const EXPIRED: usize = WHEEL_LISTS;
/// Timers that fell due again after already running in the current run epoch: they move to
/// `EXPIRED` at the next advance.
const DEFERRED: usize = WHEEL_LISTS + 1;
const LISTS: usize = WHEEL_LISTS + 2;

/// A link (`next`/`prev`, a list head's `first`/`last`) with this bit set refers to the head
/// of list `link & !HEAD` rather than to a slab slot: the lists are circular through their
/// head, like Linux's list_head, so linking and unlinking need no special cases.
const HEAD: u32 = 1 << 31;
/// `prev` of a timer on no list.
const UNLINKED: u32 = u32::MAX;

/// One list head: the first and last timer, or `HEAD | list` (itself) when empty.
///
/// Linux: `struct list_head` of a `tvec` bucket.
#[derive(Clone, Copy)]
struct ListHead {
    first: u32,
    last: u32,
}

/// One timer in the slab.
///
/// Linux: `struct timer_list` in include/linux/timer.h.
// repr(C) keeps what a tick and mod_timer read (expiry, links, state) together at the front.
#[repr(C)]
struct TimerList<C> {
    /// Absolute jiffy at which the timer runs (meaningful while pending).
    expires: u64,
    /// Jiffy at which the list the timer is on comes round: its tv1 jiffy or the start of its
    /// tv2 bucket while on the wheel (always `> now` there), the jiffy it was queued while on
    /// the expired or deferred queue (`<= now`). `<= expires` while pending on the wheel.
    entry_at: u64,
    /// Linux: `timer_list.entry`. Next and previous timer on the same list (or `HEAD | list`);
    /// `prev` is `UNLINKED` when the timer is on no list.
    next: u32,
    prev: u32,
    /// Run epoch in which the callback last ran; a timer runs at most once per epoch.
    ran_epoch: u32,
    /// Linux: timer_pending(); true from `mod_timer` until the callback is handed out.
    pending: bool,
    /// False once `timer_free`d (the slot is on the free list).
    in_use: bool,
    func: TimerFn<C>,
    data: u64,
}

/// One core's timers: the slab, the wheel and the expired queue.
///
/// Linux: `struct tvec_base` (`struct timer_base` since 4.8) in kernel/time/timer.c, one per
/// CPU.
pub struct Timers<C> {
    slab: Vec<TimerList<C>>,
    free: Vec<u32>,
    /// tv1's buckets, tv2's buckets, `EXPIRED` and `DEFERRED`.
    lists: Box<[ListHead; LISTS]>,
    /// One bit per wheel list (tv1's, then tv2's): set while the bucket is not empty.
    occupied: [u64; WHEEL_LISTS / 64],
    /// The last jiffy the wheel was advanced to (Linux: `timer_jiffies`, less one).
    now: u64,
    epoch: u32,
    armed: usize,
    /// Jiffies the wheel actually processed (the rest were skipped).
    wheel_ticks: u64,
}

impl<C> fmt::Debug for Timers<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timers")
            .field("now", &self.now)
            .field("armed", &self.armed)
            .field("slots", &self.slab.len())
            .field("free", &self.free.len())
            .field("expired", &self.list_len(EXPIRED))
            .field("deferred", &self.list_len(DEFERRED))
            .field("wheel_ticks", &self.wheel_ticks)
            .finish_non_exhaustive()
    }
}

impl<C> Timers<C> {
    /// Timers whose wheel starts at jiffy `now_jiffies`.
    ///
    /// Linux: init_timer_cpu() in kernel/time/timer.c.
    pub fn new(now_jiffies: u64) -> Self {
        Self::with_capacity(now_jiffies, 0)
    }

    /// Like [`Timers::new`], with room for `timers` timers in the slab before it grows.
    pub fn with_capacity(now_jiffies: u64, timers: usize) -> Self {
        let mut lists = Box::new([ListHead { first: 0, last: 0 }; LISTS]);
        for (l, head) in lists.iter_mut().enumerate() {
            *head = empty_head(l);
        }
        Timers {
            slab: Vec::with_capacity(timers),
            free: Vec::new(),
            lists,
            occupied: [0; WHEEL_LISTS / 64],
            now: now_jiffies,
            // Fresh slots carry ran_epoch 0, so they may run before the first advance.
            epoch: 1,
            armed: 0,
            wheel_ticks: 0,
        }
    }

    /// The jiffy the wheel has been advanced to; callbacks use it as "now".
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of pending timers (armed and not yet handed out to run).
    pub fn armed(&self) -> usize {
        self.armed
    }

    /// Allocate a timer that will call `func(ctx, data)`. It starts not pending.
    ///
    /// Linux: timer_setup() in include/linux/timer.h.
    pub fn timer_setup(&mut self, func: TimerFn<C>, data: u64) -> TimerId {
        if let Some(idx) = self.free.pop() {
            let t = &mut self.slab[idx as usize];
            // timer_free unlinked it. Keep ran_epoch: a callback recycling slots cannot make
            // run_timers spin.
            debug_assert_eq!(t.prev, UNLINKED);
            t.func = func;
            t.data = data;
            t.expires = 0;
            t.entry_at = 0;
            t.pending = false;
            t.in_use = true;
            return TimerId(idx);
        }
        let idx = u32::try_from(self.slab.len())
            .ok()
            .filter(|&i| i & HEAD == 0)
            .expect("more than 2^31 timers on one core");
        self.slab.push(TimerList {
            expires: 0,
            entry_at: 0,
            next: UNLINKED,
            prev: UNLINKED,
            ran_epoch: 0,
            pending: false,
            in_use: true,
            func,
            data,
        });
        TimerId(idx)
    }

    /// Arm `id` to run at absolute jiffy `expires` (re-arming it if pending). Returns whether
    /// it was pending before. `expires <= now` makes it run at the next run of the timers.
    ///
    /// Moving a pending timer earlier than the jiffy its bucket comes round moves it to the
    /// bucket for the new expiry; moving it later (or keeping its expiry) only records the new
    /// expiry, and the timer is re-filed for the remainder when its bucket comes round. So the
    /// common "push the timeout back on every ACK" costs no wheel work at all.
    ///
    /// Linux: mod_timer() in kernel/time/timer.c.
    pub fn mod_timer(&mut self, id: TimerId, expires: u64) -> bool {
        let now = self.now;
        let Some(t) = self.slot_mut(id, "mod_timer") else {
            return false;
        };
        let was_pending = t.pending;
        if was_pending && expires >= t.entry_at {
            t.expires = expires;
            return true;
        }
        if !was_pending && t.entry_at > now && expires >= t.entry_at {
            // Deleted, but still in its wheel bucket (del_timer leaves it there), which comes
            // round no later than the new expiry: adopt it, as above. A timer deleted and
            // re-armed for every packet (the retransmission and delayed-ACK timers of a
            // request/response flow) then costs no wheel work. (`entry_at > now` only while on
            // the wheel: every other path leaves it at or before now.)
            debug_assert_ne!(t.prev, UNLINKED);
            t.expires = expires;
            t.pending = true;
            self.armed += 1;
            return false;
        }
        let linked = t.prev != UNLINKED;
        t.expires = expires;
        t.pending = true;
        if !was_pending {
            self.armed += 1;
        }
        if linked {
            self.unlink(id.0);
        }
        self.enqueue(id.0, expires);
        was_pending
    }

    /// Disarm `id`. Returns whether it was pending (including expired but not yet run: such a
    /// timer then does not run).
    ///
    /// Linux: del_timer() in kernel/time/timer.c (timer_delete() since 6.2).
    pub fn del_timer(&mut self, id: TimerId) -> bool {
        let Some(t) = self.slot_mut(id, "del_timer") else {
            return false;
        };
        // The timer stays on its list: it is dropped from there when the list comes round
        // (a timer that is not pending never runs), and mod_timer may adopt its place in the
        // wheel again (see there). Unlinking would cost the same work twice in the common
        // delete-then-re-arm pattern.
        let was_pending = t.pending;
        t.pending = false;
        if was_pending {
            self.armed -= 1;
        }
        was_pending
    }

    /// Whether `id` is armed and has not yet been handed out to run. False inside its own
    /// callback (unless the callback re-armed it) and for a freed id.
    ///
    /// Linux: timer_pending() in include/linux/timer.h.
    pub fn timer_pending(&self, id: TimerId) -> bool {
        self.slot(id, "timer_pending").is_some_and(|t| t.pending)
    }

    /// The jiffy a pending timer will run at; `None` if it is not pending or freed.
    ///
    /// Linux: reading `timer->expires` under timer_pending().
    pub fn timer_expires(&self, id: TimerId) -> Option<u64> {
        self.slot(id, "timer_expires").filter(|t| t.pending).map(|t| t.expires)
    }

    /// Disarm `id` and give its slot back. Later calls with this id are no-ops (logged at
    /// debug level) until `timer_setup` reuses the slot.
    ///
    /// Linux: del_timer() followed by freeing the object embedding the timer_list.
    pub fn timer_free(&mut self, id: TimerId) {
        if self.slot(id, "timer_free").is_none() {
            return;
        }
        self.del_timer(id);
        // Off whatever list it is on, so that the next owner starts clean.
        if self.slab[id.0 as usize].prev != UNLINKED {
            self.unlink(id.0);
        }
        let t = &mut self.slab[id.0 as usize];
        t.entry_at = 0;
        t.in_use = false;
        self.free.push(id.0);
    }

    /// Move the wheel to jiffy `now_jiffies`, queueing every timer that expires on the way
    /// (and the ones deferred by the previous run). Call [`Timers::next_expired`] afterwards.
    ///
    /// Only jiffies with a non-empty bucket are processed (a tv1 bucket, or the tv2 bucket
    /// cascaded at a multiple of 64); the occupancy bitmaps find the next one, so an empty
    /// stretch costs one search whatever its length. A gap longer than the wheel (2^18
    /// jiffies) and than 64 jiffies per slab slot does not walk the wheel at all: every
    /// pending timer is re-filed from the slab instead. A `now_jiffies` at or before the
    /// current jiffy only starts a new run epoch.
    ///
    /// Linux: __run_timers() in kernel/time/timer.c, collecting like collect_expired_timers().
    pub fn advance(&mut self, now_jiffies: u64) {
        self.epoch = self.epoch.wrapping_add(1);
        self.splice(DEFERRED, EXPIRED);
        let gap = now_jiffies.saturating_sub(self.now);
        if gap > WHEEL_SPAN && gap / REBASE_JIFFIES_PER_SLOT > self.slab.len() as u64 {
            self.rebase(now_jiffies);
            return;
        }
        while self.now < now_jiffies {
            let clk = self.now + 1;
            let next = if self.has_work_at(clk) {
                clk
            } else if clk == now_jiffies {
                // The poll loop's usual step: one empty jiffy, no search needed.
                u64::MAX
            } else {
                self.next_pending_jiffy(clk)
            };
            if next > now_jiffies {
                // Nothing filed up to now_jiffies. Skipping keeps every filed timer valid:
                // each one's bucket comes round at or after the new position.
                self.now = now_jiffies;
                break;
            }
            self.now = next;
            self.wheel_ticks += 1;
            self.run_jiffy(next);
        }
    }

    /// Pop the next timer due to run: mark it not pending and return its function and data
    /// for the owner to call as `func(ctx, data)`. `None` when nothing more is due in this
    /// run.
    ///
    /// Each timer runs at most once per run (between two calls of [`Timers::advance`]): a
    /// callback that re-arms its own timer at or before `now` runs again after the next
    /// advance, so draining this until `None` always terminates. A timer another callback arms
    /// at or before `now` runs in the same run.
    ///
    /// Linux: expire_timers() and call_timer_fn() in kernel/time/timer.c.
    pub fn next_expired(&mut self) -> Option<(TimerFn<C>, u64)> {
        loop {
            let idx = self.lists[EXPIRED].first;
            if idx & HEAD != 0 {
                return None;
            }
            self.unlink(idx);
            let t = &self.slab[idx as usize];
            if !t.pending {
                // Deleted while on the wheel or the queue.
                continue;
            }
            if t.expires > self.now {
                // Pushed later by mod_timer while in its tv1 bucket or on the queue.
                let expires = t.expires;
                self.enqueue(idx, expires);
                continue;
            }
            if t.ran_epoch == self.epoch {
                self.link_tail(DEFERRED, idx);
                continue;
            }
            let epoch = self.epoch;
            let t = &mut self.slab[idx as usize];
            t.pending = false;
            t.ran_epoch = epoch;
            self.armed -= 1;
            return Some((t.func, t.data));
        }
    }

    /// Whether jiffy `clk` (the next one) has a non-empty tv1 bucket or a tv2 bucket to
    /// cascade.
    fn has_work_at(&self, clk: u64) -> bool {
        self.is_occupied((clk & TVR_MASK) as usize)
            || (clk & TVR_MASK == 0 && self.is_occupied(TV2 + ((clk >> TVR_BITS) & TVN_MASK) as usize))
    }

    /// The first jiffy at or after `clk` (the next one) with work to do, `u64::MAX` if the
    /// wheel is empty.
    ///
    /// Linux: __next_timer_interrupt() in kernel/time/timer.c (before 4.8).
    fn next_pending_jiffy(&self, clk: u64) -> u64 {
        let (tv1, tv2) = self.occupied.split_at(TVR_SIZE / 64);
        // tv1 holds the jiffies [clk, clk + TVR_SIZE), bucket `jiffy & TVR_MASK`.
        let from = (clk & TVR_MASK) as usize;
        let in_tv1 = next_set(tv1, from).map_or(u64::MAX, |d| clk + d as u64);
        // tv2 holds the blocks of TVR_SIZE jiffies after the current one (bucket
        // `block & TVN_MASK`), and the current block itself when clk starts it (it is
        // cascaded at clk).
        let block = (clk >> TVR_BITS) + u64::from(clk & TVR_MASK != 0);
        let from = (block & TVN_MASK) as usize;
        let in_tv2 = next_set(tv2, from).map_or(u64::MAX, |d| (block + d as u64) << TVR_BITS);
        in_tv1.min(in_tv2)
    }

    /// Process jiffy `jiffy` (already `self.now`): queue its tv1 bucket, then, at the start
    /// of a block of `TVR_SIZE` jiffies, cascade the block's tv2 bucket into tv1.
    ///
    /// The tv1 bucket goes onto the expired queue whole, in O(1): deleted timers and timers
    /// pushed later are sorted out as `next_expired` pops them. It goes before the cascade, so
    /// a timer cascaded for `TVR_SIZE` jiffies from now can take the bucket's place.
    ///
    /// Linux: __run_timers() in kernel/time/timer.c (before 4.8).
    fn run_jiffy(&mut self, jiffy: u64) {
        let index = (jiffy & TVR_MASK) as usize;
        self.splice(index, EXPIRED);
        if index == 0 {
            self.cascade(TV2 + ((jiffy >> TVR_BITS) & TVN_MASK) as usize);
        }
    }

    /// Re-file every timer of tv2 bucket `list` for its expiry (into tv1, or further on for a
    /// hop), dropping the deleted ones.
    ///
    /// Linux: cascade() in kernel/time/timer.c (before 4.8).
    fn cascade(&mut self, list: usize) {
        let mut idx = self.lists[list].first;
        if idx & HEAD != 0 {
            return;
        }
        // Detach the whole list first (Linux: list_replace_init()); nothing is filed back into
        // this bucket, whose next block is a whole ring (TVN_SIZE blocks) away now.
        self.lists[list] = empty_head(list);
        self.clear_occupied(list);
        while idx & HEAD == 0 {
            let t = &mut self.slab[idx as usize];
            let next = t.next;
            t.prev = UNLINKED;
            if t.pending {
                let expires = t.expires;
                self.enqueue(idx, expires);
            }
            idx = next;
        }
    }

    /// Jump to `now` without walking the wheel: empty lists, and every pending timer re-filed
    /// from the slab. Those already due are queued in expiry order, as walking would have
    /// queued them.
    fn rebase(&mut self, now: u64) {
        for (l, head) in self.lists.iter_mut().enumerate() {
            *head = empty_head(l);
        }
        self.occupied = [0; WHEEL_LISTS / 64];
        self.now = now;
        for idx in 0..self.slab.len() as u32 {
            let t = &mut self.slab[idx as usize];
            t.prev = UNLINKED;
            t.next = UNLINKED;
            if !t.pending {
                // Its place in the wheel went with the old lists: nothing left to adopt.
                t.entry_at = 0;
                continue;
            }
            let expires = t.expires;
            // Due ones go onto the queue in slab order, sorted below.
            self.enqueue(idx, expires);
        }
        self.sort_expired();
    }

    /// Stable merge sort of the expired queue by expiry, in place on its links (no
    /// allocation). Only `rebase` needs it; it is O(n log n) in the timers due.
    fn sort_expired(&mut self) {
        let mut list = self.lists[EXPIRED].first;
        if list & HEAD != 0 {
            return;
        }
        // Singly linked, ended by UNLINKED, while sorting (bottom-up, after S. Tatham's
        // list merge sort); the prev links and the head are rebuilt afterwards.
        let last = self.lists[EXPIRED].last;
        self.slab[last as usize].next = UNLINKED;
        let mut run = 1usize;
        loop {
            let mut p = list;
            list = UNLINKED;
            let mut tail = UNLINKED;
            let mut merges = 0;
            while p != UNLINKED {
                merges += 1;
                let mut q = p;
                let mut psize = 0;
                while psize < run && q != UNLINKED {
                    psize += 1;
                    q = self.slab[q as usize].next;
                }
                let mut qsize = run;
                while psize > 0 || (qsize > 0 && q != UNLINKED) {
                    let take_p = qsize == 0
                        || q == UNLINKED
                        || (psize > 0 && self.slab[p as usize].expires <= self.slab[q as usize].expires);
                    let e = if take_p {
                        let e = p;
                        p = self.slab[p as usize].next;
                        psize -= 1;
                        e
                    } else {
                        let e = q;
                        q = self.slab[q as usize].next;
                        qsize -= 1;
                        e
                    };
                    if tail == UNLINKED {
                        list = e;
                    } else {
                        self.slab[tail as usize].next = e;
                    }
                    tail = e;
                }
                p = q;
            }
            self.slab[tail as usize].next = UNLINKED;
            if merges <= 1 {
                break;
            }
            run *= 2;
        }
        let head = HEAD | EXPIRED as u32;
        let mut prev = head;
        let mut idx = list;
        self.lists[EXPIRED].first = list;
        while idx != UNLINKED {
            let t = &mut self.slab[idx as usize];
            t.prev = prev;
            prev = idx;
            idx = t.next;
        }
        self.slab[prev as usize].next = head;
        self.lists[EXPIRED].last = prev;
    }

    /// File slot `idx` (on no list) for `expires`: into the wheel, or straight onto the
    /// expired queue if it is already due.
    ///
    /// Linux: internal_add_timer() in kernel/time/timer.c (before 4.8).
    fn enqueue(&mut self, idx: u32, expires: u64) {
        let now = self.now;
        let (list, entry_at) = if expires <= now {
            (EXPIRED, now)
        } else {
            // Linux's base->timer_jiffies: the next jiffy to process.
            let clk = now + 1;
            if expires - clk < TVR_SIZE as u64 {
                ((expires & TVR_MASK) as usize, expires)
            } else {
                // expires >= clk + TVR_SIZE, so its block is after the current one.
                let current = clk >> TVR_BITS;
                let mut block = expires >> TVR_BITS;
                if block - current >= TVN_SIZE as u64 {
                    // Beyond tv2 (whose bucket for `current + TVN_SIZE` is the current
                    // block's, cascaded already or right now): hop to a block in the second
                    // half of tv2's reach, spread by a hash so that timers armed together do
                    // not all come out (and hop) on the same tick.
                    let h = (u64::from(idx) ^ expires.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    block = current + (TVN_SIZE / 2) as u64 + (h >> 32) % (TVN_SIZE / 2) as u64;
                }
                (TV2 + (block & TVN_MASK) as usize, block << TVR_BITS)
            }
        };
        self.link_tail(list, idx);
        self.slab[idx as usize].entry_at = entry_at;
    }

    /// Append slot `idx` (on no list) to list `list`.
    ///
    /// Linux: list_add_tail().
    fn link_tail(&mut self, list: usize, idx: u32) {
        let last = self.lists[list].last;
        let t = &mut self.slab[idx as usize];
        t.prev = last;
        t.next = HEAD | list as u32;
        self.set_next(last, idx);
        self.lists[list].last = idx;
        if list < WHEEL_LISTS {
            self.occupied[list / 64] |= 1 << (list % 64);
        }
    }

    /// Take slot `idx` off its list.
    ///
    /// Linux: detach_timer() / list_del().
    fn unlink(&mut self, idx: u32) {
        let t = &mut self.slab[idx as usize];
        let (prev, next) = (t.prev, t.next);
        debug_assert_ne!(prev, UNLINKED);
        t.prev = UNLINKED;
        self.set_next(prev, next);
        self.set_prev(next, prev);
        if prev == next {
            // Both are the head: the list is empty now.
            let list = (prev & !HEAD) as usize;
            if list < WHEEL_LISTS {
                self.clear_occupied(list);
            }
        }
    }

    /// Move all of list `from` to the tail of list `to`, in O(1).
    ///
    /// Linux: list_splice_tail_init().
    fn splice(&mut self, from: usize, to: usize) {
        let ListHead { first, last } = self.lists[from];
        if first & HEAD != 0 {
            return;
        }
        self.lists[from] = empty_head(from);
        if from < WHEEL_LISTS {
            self.clear_occupied(from);
        }
        let to_last = self.lists[to].last;
        self.set_next(to_last, first);
        self.slab[first as usize].prev = to_last;
        self.slab[last as usize].next = HEAD | to as u32;
        self.lists[to].last = last;
    }

    /// Set the `next` of a slot, or the `first` of a head.
    fn set_next(&mut self, link: u32, next: u32) {
        if link & HEAD != 0 {
            self.lists[(link & !HEAD) as usize].first = next;
        } else {
            self.slab[link as usize].next = next;
        }
    }

    /// Set the `prev` of a slot, or the `last` of a head.
    fn set_prev(&mut self, link: u32, prev: u32) {
        if link & HEAD != 0 {
            self.lists[(link & !HEAD) as usize].last = prev;
        } else {
            self.slab[link as usize].prev = prev;
        }
    }

    fn is_occupied(&self, list: usize) -> bool {
        self.occupied[list / 64] & (1 << (list % 64)) != 0
    }

    fn clear_occupied(&mut self, list: usize) {
        self.occupied[list / 64] &= !(1 << (list % 64));
    }

    /// Timers on list `list` (walks it; for Debug and tests).
    fn list_len(&self, list: usize) -> usize {
        let mut n = 0;
        let mut idx = self.lists[list].first;
        while idx & HEAD == 0 {
            n += 1;
            idx = self.slab[idx as usize].next;
        }
        n
    }

    fn slot(&self, id: TimerId, op: &str) -> Option<&TimerList<C>> {
        match self.slab.get(id.0 as usize) {
            Some(t) if t.in_use => Some(t),
            _ => {
                log::debug!("{op}: timer {} is freed or unknown; ignored", id.0);
                None
            }
        }
    }

    fn slot_mut(&mut self, id: TimerId, op: &str) -> Option<&mut TimerList<C>> {
        match self.slab.get_mut(id.0 as usize) {
            Some(t) if t.in_use => Some(t),
            _ => {
                log::debug!("{op}: timer {} is freed or unknown; ignored", id.0);
                None
            }
        }
    }
}

/// The head of an empty list `list`: it points at itself.
///
/// Linux: INIT_LIST_HEAD().
fn empty_head(list: usize) -> ListHead {
    let me = HEAD | list as u32;
    ListHead { first: me, last: me }
}

/// Circular search of a bitmap ring (`words.len() * 64` bits) for the first set bit at or
/// after bit `from`: its distance from `from`, or `None` if no bit is set.
fn next_set(words: &[u64], from: usize) -> Option<usize> {
    let size = words.len() * 64;
    let (first, bit) = (from / 64, from % 64);
    let w = words[first] & (!0u64 << bit);
    if w != 0 {
        return Some(first * 64 + w.trailing_zeros() as usize - from);
    }
    for k in 1..=words.len() {
        let i = (first + k) % words.len();
        // Back at the first word: only the bits before `from` are left.
        let w = if k == words.len() {
            words[i] & ((1u64 << bit) - 1)
        } else {
            words[i]
        };
        if w != 0 {
            return Some((i * 64 + w.trailing_zeros() as usize + size - from) % size);
        }
    }
    None
}

/// Advance `ctx`'s timers to `now` and run every callback due, returning how many ran.
///
/// `timers` finds the [`Timers`] inside the context (`|c| &mut c.timers`); it is called again
/// around every callback, so callbacks are free to use the timers. Runs the timers that
/// expired on the way to `now`, those armed with `expires <= now` since the last run, and
/// those that callbacks of this run arm at or before `now` — but each timer at most once per
/// call, so a callback re-arming itself at `now` runs at the next call instead of spinning.
///
/// Linux: run_timer_softirq() / __run_timers() in kernel/time/timer.c.
pub fn run_timers<C>(ctx: &mut C, timers: fn(&mut C) -> &mut Timers<C>, now: u64) -> usize {
    let t = timers(ctx);
    if now <= t.now && t.lists[EXPIRED].first & HEAD != 0 && t.lists[DEFERRED].first & HEAD != 0 {
        // Same jiffy and nothing queued: nothing can run (the poll loop comes here many times
        // per jiffy). Skipping the epoch bump changes nothing: epochs only order queued entries.
        return 0;
    }
    t.advance(now);
    let mut ran = 0;
    while let Some((func, data)) = timers(ctx).next_expired() {
        func(ctx, data);
        ran += 1;
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test owner: records `(data, jiffy)` of every run.
    struct Ctx {
        timers: Timers<Ctx>,
        fired: Vec<(u64, u64)>,
        ids: Vec<TimerId>,
        /// Jiffies to re-arm by, read by `rearm_by`.
        period: u64,
        /// Pending state of ids[0] seen from inside a callback.
        seen_pending: Option<bool>,
    }

    impl Ctx {
        fn new(now: u64) -> Self {
            Ctx {
                timers: Timers::new(now),
                fired: Vec::new(),
                ids: Vec::new(),
                period: 0,
                seen_pending: None,
            }
        }

        fn setup(&mut self, func: TimerFn<Ctx>, data: u64) -> TimerId {
            let id = self.timers.timer_setup(func, data);
            self.ids.push(id);
            id
        }

        fn run(&mut self, now: u64) -> usize {
            run_timers(self, timers_of, now)
        }
    }

    fn timers_of(ctx: &mut Ctx) -> &mut Timers<Ctx> {
        &mut ctx.timers
    }

    fn record(ctx: &mut Ctx, data: u64) {
        let now = ctx.timers.now();
        ctx.fired.push((data, now));
    }

    /// Records, then re-arms ids[data] `period` jiffies from now.
    fn rearm_by(ctx: &mut Ctx, data: u64) {
        record(ctx, data);
        let id = ctx.ids[data as usize];
        ctx.seen_pending = Some(ctx.timers.timer_pending(id));
        let expires = ctx.timers.now() + ctx.period;
        ctx.timers.mod_timer(id, expires);
    }

    /// Records, then arms ids[data + 1] at now (zero delay).
    fn arm_next_now(ctx: &mut Ctx, data: u64) {
        record(ctx, data);
        let id = ctx.ids[data as usize + 1];
        let now = ctx.timers.now();
        ctx.timers.mod_timer(id, now);
    }

    /// Records, then deletes ids[data + 1].
    fn del_next(ctx: &mut Ctx, data: u64) {
        record(ctx, data);
        let id = ctx.ids[data as usize + 1];
        assert!(ctx.timers.del_timer(id), "queued timer counts as pending");
    }

    /// Records, then pushes ids[data + 1] back by `period`.
    fn postpone_next(ctx: &mut Ctx, data: u64) {
        record(ctx, data);
        let id = ctx.ids[data as usize + 1];
        let expires = ctx.timers.now() + ctx.period;
        assert!(ctx.timers.mod_timer(id, expires));
    }

    impl<C> Timers<C> {
        /// Check the lists, the occupancy bitmaps and every timer's state against each other.
        fn check_invariants(&self) {
            let now = self.now;
            let mut on_list = vec![usize::MAX; self.slab.len()];
            for list in 0..LISTS {
                let head = HEAD | list as u32;
                let mut prev = head;
                let mut idx = self.lists[list].first;
                while idx & HEAD == 0 {
                    assert_eq!(on_list[idx as usize], usize::MAX, "timer {idx} on two lists");
                    on_list[idx as usize] = list;
                    assert_eq!(self.slab[idx as usize].prev, prev, "list {list}: prev of {idx}");
                    prev = idx;
                    idx = self.slab[idx as usize].next;
                }
                assert_eq!(idx, head, "list {list} ends at its head");
                assert_eq!(self.lists[list].last, prev, "list {list}: last");
                if list < WHEEL_LISTS {
                    assert_eq!(self.is_occupied(list), prev != head, "list {list}: occupancy bit");
                }
            }
            let mut pending = 0;
            for (i, t) in self.slab.iter().enumerate() {
                let list = on_list[i];
                if list == usize::MAX {
                    assert_eq!(t.prev, UNLINKED, "timer {i} on no list");
                    assert!(!t.pending, "pending timer {i} on no list");
                    continue;
                }
                assert!(t.in_use, "freed timer {i} on list {list}");
                if t.pending {
                    pending += 1;
                    if list < WHEEL_LISTS {
                        assert!(t.entry_at <= t.expires, "timer {i} comes round after its expiry");
                    }
                }
                if list < TV2 {
                    assert!(t.entry_at > now && t.entry_at - now <= TVR_SIZE as u64, "tv1 timer {i}");
                    assert_eq!((t.entry_at & TVR_MASK) as usize, list, "tv1 timer {i}: bucket");
                } else if list < WHEEL_LISTS {
                    assert!(t.entry_at > now && t.entry_at - now <= WHEEL_SPAN, "tv2 timer {i}");
                    assert_eq!(t.entry_at & TVR_MASK, 0, "tv2 timer {i}: block start");
                    let bucket = ((t.entry_at >> TVR_BITS) & TVN_MASK) as usize;
                    assert_eq!(TV2 + bucket, list, "tv2 timer {i}: bucket");
                } else {
                    assert!(t.entry_at <= now, "queued timer {i}");
                }
            }
            assert_eq!(pending, self.armed, "armed count");
        }
    }

    /// Small deterministic PRNG (xorshift64).
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Tick the wheel itself `n` jiffies (one advance per jiffy), so later inserts see a
    /// wheel position that is not byte-aligned.
    fn tick_n(ctx: &mut Ctx, n: u64) {
        let base = ctx.timers.now();
        for j in 1..=n {
            ctx.run(base + j);
        }
    }

    #[test]
    fn fires_at_exact_jiffy_when_advanced_every_jiffy() {
        let delays = [1u64, 2, 3, 255, 256, 257, 511, 65_535, 65_536, 65_537, 600_000];
        for &(start, offset) in &[(0u64, 0u64), (1_000_000, 77), (5, 65_500)] {
            for &delay in &delays {
                let mut ctx = Ctx::new(start);
                // A keeper timer far away makes the wheel really tick through `offset`.
                let keeper = ctx.setup(record, 99);
                ctx.timers.mod_timer(keeper, start + 10_000_000);
                tick_n(&mut ctx, offset);
                let now = ctx.timers.now();
                let id = ctx.setup(record, 7);
                assert!(!ctx.timers.mod_timer(id, now + delay));
                assert_eq!(ctx.timers.timer_expires(id), Some(now + delay));
                for j in 1..delay {
                    assert_eq!(ctx.run(now + j), 0, "delay {delay} offset {offset}: early");
                }
                assert_eq!(ctx.run(now + delay), 1, "delay {delay} offset {offset}");
                assert_eq!(ctx.fired, vec![(7, now + delay)]);
                assert!(!ctx.timers.timer_pending(id));
                assert_eq!(ctx.run(now + delay + 1), 0);
                assert_eq!(ctx.timers.armed(), 1);
            }
        }
    }

    #[test]
    fn long_delays_fire_exactly_including_beyond_the_wheel() {
        let ten_min = 600_000u64;
        let delays = [
            ten_min,
            1 << 24,
            (1 << 24) + 1,
            u32::MAX as u64 - 2,
            u32::MAX as u64 - 1,
            u32::MAX as u64,
            1 << 32,
            (1 << 32) + 1,
            (1 << 32) + 1000,
            3 * (1 << 32) + 12_345,
        ];
        for &start in &[0u64, 123_456_789] {
            for &delay in &delays {
                let mut ctx = Ctx::new(start);
                let id = ctx.setup(record, 1);
                let expires = start + delay;
                ctx.timers.mod_timer(id, expires);
                // Jump most of the way, then walk the last jiffies one by one.
                for probe in [start + delay / 3, start + delay / 2, expires - 300] {
                    assert_eq!(ctx.run(probe), 0, "delay {delay}: early at {probe}");
                }
                for j in expires - 299..expires {
                    assert_eq!(ctx.run(j), 0, "delay {delay}: early at {j}");
                }
                assert!(ctx.timers.timer_pending(id));
                assert_eq!(ctx.run(expires), 1, "delay {delay}");
                assert_eq!(ctx.fired, vec![(1, expires)]);
            }
        }
    }

    #[test]
    fn late_advance_fires_at_first_advance_after_expiry() {
        let mut ctx = Ctx::new(0);
        let a = ctx.setup(record, 0);
        let b = ctx.setup(record, 1);
        ctx.timers.mod_timer(a, 1000);
        ctx.timers.mod_timer(b, 70_000);
        assert_eq!(ctx.run(999), 0);
        assert_eq!(ctx.run(69_000), 1);
        assert_eq!(ctx.run(1_000_000), 1);
        assert_eq!(ctx.fired, vec![(0, 69_000), (1, 1_000_000)]);
    }

    #[test]
    fn expires_at_or_before_now_runs_at_next_run() {
        let mut ctx = Ctx::new(100);
        let a = ctx.setup(record, 0);
        let b = ctx.setup(record, 1);
        assert!(!ctx.timers.mod_timer(a, 100));
        assert!(!ctx.timers.mod_timer(b, 3));
        assert!(ctx.timers.timer_pending(a));
        assert_eq!(ctx.timers.armed(), 2);
        assert_eq!(ctx.run(100), 2);
        assert_eq!(ctx.fired, vec![(0, 100), (1, 100)]);
        assert_eq!(ctx.timers.armed(), 0);
    }

    #[test]
    fn mod_timer_earlier_and_later() {
        let mut ctx = Ctx::new(0);
        let earlier = ctx.setup(record, 0);
        let later = ctx.setup(record, 1);
        let later_then_back = ctx.setup(record, 2);
        let later_then_before_entry = ctx.setup(record, 3);
        let same = ctx.setup(record, 4);

        assert!(!ctx.timers.mod_timer(earlier, 100));
        assert!(ctx.timers.mod_timer(earlier, 50));

        assert!(!ctx.timers.mod_timer(later, 50));
        assert!(ctx.timers.mod_timer(later, 100));

        ctx.timers.mod_timer(later_then_back, 50);
        ctx.timers.mod_timer(later_then_back, 100);
        assert!(ctx.timers.mod_timer(later_then_back, 70));

        ctx.timers.mod_timer(later_then_before_entry, 50);
        ctx.timers.mod_timer(later_then_before_entry, 100);
        assert!(ctx.timers.mod_timer(later_then_before_entry, 30));

        ctx.timers.mod_timer(same, 60);
        assert!(ctx.timers.mod_timer(same, 60));

        assert_eq!(ctx.timers.timer_expires(later), Some(100));
        assert_eq!(ctx.timers.armed(), 5);
        for j in 1..=300 {
            ctx.run(j);
        }
        assert_eq!(ctx.fired, vec![(3, 30), (0, 50), (4, 60), (2, 70), (1, 100)]);
        assert_eq!(ctx.timers.armed(), 0);
    }

    #[test]
    fn del_timer_prevents_firing() {
        let mut ctx = Ctx::new(0);
        let a = ctx.setup(record, 0);
        let b = ctx.setup(record, 1);
        assert!(!ctx.timers.del_timer(a), "never armed");
        ctx.timers.mod_timer(a, 10);
        ctx.timers.mod_timer(b, 70_000);
        assert!(ctx.timers.del_timer(a));
        assert!(!ctx.timers.del_timer(a));
        assert!(ctx.timers.del_timer(b));
        assert_eq!(ctx.timers.armed(), 0);
        assert_eq!(ctx.timers.timer_expires(a), None);
        for j in 1..=200 {
            assert_eq!(ctx.run(j), 0);
        }
        assert_eq!(ctx.run(1_000_000), 0);
        // Re-armed after delete, it fires normally.
        ctx.timers.mod_timer(a, 1_000_005);
        assert_eq!(ctx.run(1_000_004), 0);
        assert_eq!(ctx.run(1_000_005), 1);
        assert_eq!(ctx.fired, vec![(0, 1_000_005)]);
    }

    #[test]
    fn delete_and_rearm_adopts_the_entry_and_fires_exactly() {
        // The request/response pattern: armed, deleted, re-armed later, many times over.
        let mut ctx = Ctx::new(0);
        let a = ctx.setup(record, 0);
        let mut expires = 0;
        for j in 1..=100u64 {
            ctx.timers.mod_timer(a, j + 40);
            assert!(ctx.timers.del_timer(a));
            assert_eq!(ctx.run(j), 0, "a deleted timer never runs");
            expires = j + 40 + j % 3;
            assert!(!ctx.timers.mod_timer(a, expires), "was not pending");
            assert_eq!(ctx.timers.timer_expires(a), Some(expires));
            assert!(ctx.timers.del_timer(a));
        }
        assert_eq!(ctx.timers.armed(), 0);
        // Re-armed for good: runs once, at exactly its jiffy, and no earlier entry fires it.
        let now = ctx.timers.now();
        assert!(!ctx.timers.mod_timer(a, expires));
        for j in now + 1..expires {
            assert_eq!(ctx.run(j), 0, "jiffy {j}");
        }
        assert_eq!(ctx.run(expires), 1);
        for j in expires + 1..expires + 300 {
            assert_eq!(ctx.run(j), 0, "jiffy {j}");
        }
        assert_eq!(ctx.fired, vec![(0, expires)]);
        // Deleted and re-armed *earlier* than its entry: a new entry fires it on time.
        let now = ctx.timers.now();
        ctx.timers.mod_timer(a, now + 50);
        ctx.timers.del_timer(a);
        ctx.timers.mod_timer(a, now + 5);
        for j in now + 1..now + 5 {
            assert_eq!(ctx.run(j), 0);
        }
        assert_eq!(ctx.run(now + 5), 1);
        for j in now + 6..now + 100 {
            assert_eq!(ctx.run(j), 0, "the old entry must not fire it again");
        }
        assert_eq!(ctx.fired.len(), 2);
        assert_eq!(ctx.timers.armed(), 0);
    }

    #[test]
    fn timer_pending_transitions() {
        let mut ctx = Ctx::new(0);
        ctx.period = 0;
        let a = ctx.setup(rearm_by, 0);
        assert!(!ctx.timers.timer_pending(a));
        ctx.timers.mod_timer(a, 5);
        assert!(ctx.timers.timer_pending(a));
        // Expired but not yet run: still pending.
        ctx.timers.advance(5);
        assert!(ctx.timers.timer_pending(a));
        let (func, data) = ctx.timers.next_expired().expect("due");
        assert!(!ctx.timers.timer_pending(a), "handed out to run");
        ctx.period = 10;
        func(&mut ctx, data);
        assert_eq!(ctx.seen_pending, Some(false), "not pending inside its callback");
        assert!(ctx.timers.timer_pending(a), "re-armed by its callback");
        assert_eq!(ctx.timers.timer_expires(a), Some(15));
        assert!(ctx.timers.next_expired().is_none());
        ctx.timers.del_timer(a);
        assert!(!ctx.timers.timer_pending(a));
    }

    #[test]
    fn periodic_rearm_from_callback() {
        let mut ctx = Ctx::new(0);
        ctx.period = 10;
        let a = ctx.setup(rearm_by, 0);
        ctx.timers.mod_timer(a, 10);
        for j in 1..=1000 {
            ctx.run(j);
        }
        let expect: Vec<(u64, u64)> = (1..=100).map(|k| (0, 10 * k)).collect();
        assert_eq!(ctx.fired, expect);
        assert_eq!(ctx.timers.timer_expires(a), Some(1010));
    }

    #[test]
    fn self_rearm_at_now_runs_next_call_not_same_loop() {
        let mut ctx = Ctx::new(0);
        ctx.period = 0;
        let a = ctx.setup(rearm_by, 0);
        ctx.timers.mod_timer(a, 3);
        assert_eq!(ctx.run(3), 1);
        assert_eq!(ctx.run(3), 1, "same jiffy, next call");
        assert_eq!(ctx.run(4), 1);
        assert_eq!(ctx.fired, vec![(0, 3), (0, 3), (0, 4)]);
        assert!(ctx.timers.timer_pending(a));
    }

    #[test]
    fn callback_arming_another_at_now_runs_in_same_call() {
        let mut ctx = Ctx::new(0);
        let a = ctx.setup(arm_next_now, 0);
        ctx.setup(arm_next_now, 1);
        ctx.setup(record, 2);
        ctx.timers.mod_timer(a, 5);
        assert_eq!(ctx.run(5), 3);
        assert_eq!(ctx.fired, vec![(0, 5), (1, 5), (2, 5)]);
    }

    #[test]
    fn ping_pong_at_now_terminates() {
        // 0 arms 1 at now, 1 arms 0 at now: each runs once per call.
        fn arm_other(ctx: &mut Ctx, data: u64) {
            record(ctx, data);
            let id = ctx.ids[(data ^ 1) as usize];
            let now = ctx.timers.now();
            ctx.timers.mod_timer(id, now);
        }
        let mut ctx = Ctx::new(0);
        let a = ctx.setup(arm_other, 0);
        ctx.setup(arm_other, 1);
        ctx.timers.mod_timer(a, 1);
        assert_eq!(ctx.run(1), 2);
        assert_eq!(ctx.run(1), 2);
        assert_eq!(ctx.fired, vec![(0, 1), (1, 1), (0, 1), (1, 1)]);
    }

    #[test]
    fn callback_deleting_or_postponing_a_queued_timer() {
        let mut ctx = Ctx::new(0);
        ctx.period = 20;
        let a = ctx.setup(del_next, 0);
        let b = ctx.setup(record, 1);
        let c = ctx.setup(postpone_next, 2);
        let d = ctx.setup(record, 3);
        for id in [a, b, c, d] {
            ctx.timers.mod_timer(id, 10);
        }
        assert_eq!(ctx.run(10), 2, "b deleted, d postponed while queued");
        assert!(!ctx.timers.timer_pending(b));
        assert_eq!(ctx.timers.timer_expires(d), Some(30));
        for j in 11..=29 {
            assert_eq!(ctx.run(j), 0);
        }
        assert_eq!(ctx.run(30), 1);
        assert_eq!(ctx.fired, vec![(0, 10), (2, 10), (3, 30)]);
    }

    #[test]
    fn ten_thousand_random_timers_fire_once_at_their_jiffy() {
        let seed = 0x9E37_79B9_7F4A_7C15;
        let mut rng = XorShift(seed);
        let n = 10_000u64;
        let horizon = 140_000u64; // spans the first three wheel levels
        let start = 42u64;
        let mut ctx = Ctx::new(start);
        let mut expect = Vec::with_capacity(n as usize);
        for i in 0..n {
            let id = ctx.setup(record, i);
            let expires = start + 1 + rng.below(horizon);
            ctx.timers.mod_timer(id, expires);
            expect.push((i, expires));
        }
        assert_eq!(ctx.timers.armed(), n as usize);
        for j in start + 1..=start + horizon + 10 {
            ctx.run(j);
        }
        assert_eq!(ctx.timers.armed(), 0);
        expect.sort_by_key(|&(i, e)| (e, i));
        let mut fired = ctx.fired.clone();
        fired.sort_by_key(|&(i, e)| (e, i));
        assert_eq!(fired, expect, "seed {seed:#x}");
    }

    #[test]
    fn random_operations_match_a_model() {
        random_model(0xDEAD_BEEF_1234_5678, 0);
    }

    #[test]
    fn random_operations_match_a_model_ticking_long_gaps() {
        // Enough idle slots that no advance below 12.8M jiffies rebases: long gaps are walked
        // through, with far timers hopping through tv2.
        random_model(0x0123_4567_89AB_CDEF, 200_000);
    }

    #[test]
    #[ignore = "soak (64 seeds, seconds): run with --ignored after changing the wheel"]
    fn random_operations_match_a_model_many_seeds() {
        for k in 0..64u64 {
            let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k + 1);
            random_model(seed, if k % 4 == 0 { 200_000 } else { (k as usize % 3) * 300 });
        }
    }

    /// Random mod/del/free/setup and advances by random steps (some long, crossing block
    /// boundaries and the skip and rebase paths); each run must fire exactly the timers whose
    /// expiry is in (previous now, now]. `padding` idle slots raise the rebase threshold.
    fn random_model(seed: u64, padding: usize) {
        let mut rng = XorShift(seed);
        let mut ctx = Ctx::new(1_000);
        for _ in 0..padding {
            ctx.timers.timer_setup(record, u64::MAX);
        }
        let mut model: Vec<Option<u64>> = Vec::new();
        for i in 0..500u64 {
            ctx.setup(record, i);
            model.push(None);
        }
        for round in 0..20_000 {
            let now = ctx.timers.now();
            let i = rng.below(model.len() as u64) as usize;
            let id = ctx.ids[i];
            match rng.below(10) {
                0..=5 => {
                    let delay = match rng.below(4) {
                        0 => rng.below(300),
                        1 => rng.below(70_000),
                        2 => rng.below(3_000),
                        _ => rng.below(20_000_000),
                    };
                    let was = ctx.timers.mod_timer(id, now + delay);
                    assert_eq!(was, model[i].is_some(), "round {round} seed {seed:#x}");
                    model[i] = Some(now + delay);
                }
                6 => {
                    let was = ctx.timers.del_timer(id);
                    assert_eq!(was, model[i].is_some(), "round {round} seed {seed:#x}");
                    model[i] = None;
                }
                7 => {
                    // Free and set up again: same slot, fresh timer, stale entries ignored.
                    ctx.timers.timer_free(id);
                    let again = ctx.timers.timer_setup(record, i as u64);
                    assert_eq!(again, id);
                    model[i] = None;
                }
                _ => {
                    let step = match rng.below(8) {
                        0 => rng.below(200_000),
                        1..=3 => rng.below(2_000),
                        _ => 1,
                    };
                    ctx.fired.clear();
                    ctx.run(now + step);
                    let to = now + step;
                    let mut want: Vec<u64> = Vec::new();
                    for (k, m) in model.iter_mut().enumerate() {
                        if let Some(e) = *m {
                            if e <= to {
                                want.push(k as u64);
                                *m = None;
                            }
                        }
                    }
                    let mut got: Vec<u64> = ctx.fired.iter().map(|&(d, _)| d).collect();
                    got.sort_unstable();
                    assert_eq!(got, want, "round {round} ({now} -> {to}) seed {seed:#x}");
                }
            }
            let armed = model.iter().filter(|m| m.is_some()).count();
            assert_eq!(ctx.timers.armed(), armed, "round {round} seed {seed:#x}");
            if round % 97 == 0 {
                ctx.timers.check_invariants();
            }
        }
    }

    #[test]
    fn entries_stay_in_the_two_lower_levels() {
        // With entries only in tv1 and tv2, every bucket in use comes round within the
        // wheel's 2^18 jiffies; an entry filed further out (a third level, or a tv2 bucket a whole ring
        // ahead) would let the wheel skip past it or cascade it early.
        let mut rng = XorShift(0x5EED);
        for round in 0..200 {
            let mut ctx = Ctx::new(rng.below(1 << 40));
            tick_n(&mut ctx, rng.below(70_000));
            let id = ctx.setup(record, 0);
            let delay = match round % 4 {
                0 => 1 + rng.below(300),
                1 => 1 + rng.below(70_000),
                2 => 1 + rng.below(1 << 20),
                _ => 1 + rng.below(1 << 34),
            };
            let expires = ctx.timers.now() + delay;
            ctx.timers.mod_timer(id, expires);
            while ctx.fired.is_empty() {
                ctx.timers.check_invariants();
                let now = ctx.timers.now();
                let next = ctx.timers.next_pending_jiffy(now + 1);
                assert!(
                    next - now <= WHEEL_SPAN,
                    "round {round}: next bucket at {next}, now {now}"
                );
                let step = rng.below((delay / 40).max(40_000));
                let to = (ctx.timers.now() + 1 + step).min(expires);
                ctx.run(to);
            }
            assert_eq!(ctx.fired, vec![(0, expires)], "round {round}");
        }
    }

    #[test]
    fn freed_slot_reuse_ignores_stale_entries() {
        let mut ctx = Ctx::new(0);
        let old = ctx.setup(record, 1);
        ctx.timers.mod_timer(old, 10);
        ctx.timers.timer_free(old);
        assert_eq!(ctx.timers.armed(), 0);
        let new = ctx.timers.timer_setup(record, 2);
        assert_eq!(new, old, "slot reused");
        assert!(!ctx.timers.timer_pending(new));
        ctx.timers.mod_timer(new, 20);
        for j in 1..=19 {
            assert_eq!(ctx.run(j), 0, "previous owner's entry fired at {j}");
        }
        assert_eq!(ctx.run(20), 1);
        assert_eq!(ctx.fired, vec![(2, 20)]);

        // Same with the new owner armed at the very jiffy of the stale entry, and before it.
        let mut ctx = Ctx::new(0);
        let old = ctx.setup(record, 1);
        ctx.timers.mod_timer(old, 300);
        ctx.timers.timer_free(old);
        let new = ctx.timers.timer_setup(record, 2);
        ctx.timers.mod_timer(new, 300);
        ctx.timers.del_timer(new);
        ctx.timers.mod_timer(new, 100);
        for j in 1..=400 {
            ctx.run(j);
        }
        assert_eq!(ctx.fired, vec![(2, 100)]);
    }

    #[test]
    fn freed_id_is_a_no_op() {
        let mut ctx = Ctx::new(0);
        let a = ctx.setup(record, 1);
        ctx.timers.timer_free(a);
        assert!(!ctx.timers.mod_timer(a, 5));
        assert!(!ctx.timers.timer_pending(a));
        assert_eq!(ctx.timers.timer_expires(a), None);
        assert!(!ctx.timers.del_timer(a));
        ctx.timers.timer_free(a); // double free: no second free-list entry
        assert_eq!(ctx.timers.armed(), 0);
        assert_eq!(ctx.run(10), 0);
        let b = ctx.timers.timer_setup(record, 2);
        let c = ctx.timers.timer_setup(record, 3);
        assert_ne!(b, c);
        // An id from nowhere is ignored too.
        let bogus = TimerId(1_000_000);
        assert!(!ctx.timers.mod_timer(bogus, 5));
        assert!(!ctx.timers.del_timer(bogus));
        ctx.timers.timer_free(bogus);
    }

    #[test]
    fn freeing_inside_callback_and_reusing_slot() {
        fn free_self_and_setup(ctx: &mut Ctx, data: u64) {
            record(ctx, data);
            let id = ctx.ids[data as usize];
            ctx.timers.timer_free(id);
            let fresh = ctx.timers.timer_setup(record, 100 + data);
            let now = ctx.timers.now();
            ctx.timers.mod_timer(fresh, now + 1);
        }
        let mut ctx = Ctx::new(0);
        let a = ctx.setup(free_self_and_setup, 0);
        ctx.timers.mod_timer(a, 2);
        for j in 1..=5 {
            ctx.run(j);
        }
        assert_eq!(ctx.fired, vec![(0, 2), (100, 3)]);
    }

    #[test]
    fn idle_gaps_fast_forward() {
        let mut ctx = Ctx::new(0);
        // Nothing armed: an enormous gap is one step.
        ctx.run(1 << 50);
        assert_eq!(ctx.timers.now(), 1 << 50);
        let a = ctx.setup(record, 0);
        let b = ctx.setup(record, 1);
        ctx.timers.mod_timer(a, (1 << 50) + 5);
        ctx.timers.mod_timer(b, (1 << 50) + 100_000_000_000);
        ctx.run((1 << 50) + 4);
        assert!(ctx.fired.is_empty());
        ctx.run((1 << 50) + 5);
        ctx.run((1 << 50) + 99_999_999_999);
        assert_eq!(ctx.fired.len(), 1);
        ctx.run((1 << 50) + 100_000_000_000);
        assert_eq!(ctx.fired, vec![(0, (1 << 50) + 5), (1, (1 << 50) + 100_000_000_000)]);
        // 10^11 jiffies with one far timer: skipped a level at a time, not ticked.
        let ticks = ctx.timers.wheel_ticks;
        assert!(ticks < 100_000, "{ticks} wheel ticks");
    }

    #[test]
    fn delays_near_the_wheel_edge_are_not_filed_early() {
        // Delays whose wheel position wraps into the same top-level block, from a wheel
        // position that is not zero: must neither fire early nor churn the wheel.
        for &delay in &[
            (1u64 << 32) - (1 << 24),
            u32::MAX as u64 - 1,
            u32::MAX as u64,
            1 << 32,
            (1 << 32) + (1 << 20),
        ] {
            let mut ctx = Ctx::new(0);
            tick_n(&mut ctx, 5);
            let id = ctx.setup(record, 0);
            ctx.timers.mod_timer(id, 5 + delay);
            let before = ctx.timers.wheel_ticks;
            assert_eq!(ctx.run(5 + delay - 1), 0, "delay {delay}");
            assert_eq!(ctx.run(5 + delay), 1, "delay {delay}");
            let ticks = ctx.timers.wheel_ticks - before;
            assert!(ticks < 10_000, "delay {delay}: {ticks} wheel ticks");
        }
    }

    #[test]
    fn time_going_backwards_is_ignored() {
        let mut ctx = Ctx::new(50);
        let a = ctx.setup(record, 0);
        ctx.timers.mod_timer(a, 60);
        assert_eq!(ctx.run(10), 0);
        assert_eq!(ctx.timers.now(), 50);
        assert_eq!(ctx.run(60), 1);
    }

    #[test]
    fn no_allocation_after_warm_up() {
        // Buckets and queues are fixed arrays of list heads and the timers carry their own
        // links: once the slab and its free list have their slots, no operation allocates,
        // so no capacity may change over any mix of operations (short, cascading and hopping
        // delays, deletes, frees, callbacks re-arming, walked gaps and rebases).
        let mut ctx = Ctx::new(0);
        ctx.period = 7;
        let n = 1000u64;
        for i in 0..n {
            ctx.setup(if i.is_multiple_of(3) { rearm_by } else { record }, i);
        }
        let id = ctx.ids[1];
        ctx.timers.timer_free(id);
        assert_eq!(ctx.timers.timer_setup(record, 1), id);
        let caps = |t: &Timers<Ctx>| (t.slab.capacity(), t.free.capacity(), t.slab.len());
        let before = caps(&ctx.timers);
        let mut rng = XorShift(0xA110_C8ED);
        for round in 0..100_000 {
            let now = ctx.timers.now();
            let i = rng.below(n) as usize;
            let id = ctx.ids[i];
            match rng.below(10) {
                0..=3 => {
                    let delay = match rng.below(4) {
                        0 => rng.below(300),
                        1 => rng.below(60_000),
                        2 => rng.below(1 << 20),
                        _ => rng.below(1 << 34),
                    };
                    ctx.timers.mod_timer(id, now + delay);
                }
                4 | 5 => {
                    ctx.timers.del_timer(id);
                }
                6 => {
                    ctx.timers.timer_free(id);
                    let func = if i.is_multiple_of(3) { rearm_by } else { record };
                    assert_eq!(ctx.timers.timer_setup(func, i as u64), id);
                }
                _ => {
                    let step = match rng.below(100) {
                        0 => WHEEL_SPAN + 70_000 + rng.below(1 << 24), // rebases
                        1..=10 => rng.below(5_000),
                        _ => rng.below(3),
                    };
                    ctx.run(now + step);
                    ctx.fired.clear();
                }
            }
            assert_eq!(caps(&ctx.timers), before, "round {round}");
        }
        ctx.timers.check_invariants();
    }

    #[test]
    fn a_rebase_queues_due_timers_in_expiry_order() {
        // Few timers, and a gap that rebases instead of walking; the same with enough idle
        // slots to walk the gap. Both queue what fell due in expiry order.
        for padding in [0usize, 100_000] {
            let mut ctx = Ctx::new(0);
            for _ in 0..padding {
                ctx.timers.timer_setup(record, u64::MAX);
            }
            let expiries = [500_000u64, 70_000, 3, 900_000, 70_000, 1_000_000, 2_000_000];
            for (i, &e) in expiries.iter().enumerate() {
                let id = ctx.setup(record, i as u64);
                ctx.timers.mod_timer(id, e);
            }
            ctx.timers.advance(1_500_000);
            assert_eq!(ctx.timers.wheel_ticks == 0, padding == 0, "rebased iff few slots");
            ctx.timers.check_invariants();
            let mut order = Vec::new();
            while let Some((_, data)) = ctx.timers.next_expired() {
                order.push(data);
            }
            assert_eq!(order, vec![2, 1, 4, 0, 3, 5], "padding {padding}");
            assert_eq!(ctx.run(1_999_999), 0);
            assert_eq!(ctx.run(2_000_000), 1);
        }

        // Many: the in-place merge sort of the queue against a sorted copy.
        let mut rng = XorShift(0x50_27ED);
        let mut ctx = Ctx::new(0);
        let mut expect = Vec::new();
        for i in 0..3000u64 {
            let id = ctx.setup(record, i);
            let e = 1 + rng.below(3_000_000);
            if i.is_multiple_of(5) {
                ctx.timers.mod_timer(id, e);
                ctx.timers.del_timer(id);
                continue;
            }
            ctx.timers.mod_timer(id, e);
            if e <= 2_000_000 {
                expect.push((e, i));
            }
        }
        expect.sort_unstable();
        ctx.timers.advance(2_000_000);
        assert_eq!(ctx.timers.wheel_ticks, 0, "rebased");
        ctx.timers.check_invariants();
        let mut order = Vec::new();
        while let Some((_, data)) = ctx.timers.next_expired() {
            order.push(data);
        }
        let want: Vec<u64> = expect.iter().map(|&(_, i)| i).collect();
        assert_eq!(order, want);
        ctx.timers.check_invariants();
    }

    #[test]
    fn deleted_and_moved_timers_leave_no_trace() {
        // Timers moved earlier, deleted, freed from every kind of list; the lists and bitmaps
        // stay consistent and only the live timers fire.
        let mut ctx = Ctx::new(1_000);
        let ids: Vec<TimerId> = (0..6).map(|i| ctx.setup(record, i)).collect();
        ctx.timers.mod_timer(ids[0], 1_100); // tv1
        ctx.timers.mod_timer(ids[1], 40_000); // tv2
        ctx.timers.mod_timer(ids[2], 10_000_000); // hop
        ctx.timers.mod_timer(ids[3], 900); // queued at once
        ctx.timers.mod_timer(ids[4], 1_100);
        ctx.timers.mod_timer(ids[5], 40_000);
        ctx.timers.check_invariants();
        assert!(ctx.timers.mod_timer(ids[1], 1_050)); // tv2 -> tv1
        assert!(ctx.timers.mod_timer(ids[2], 30_000)); // hop -> tv2
        ctx.timers.timer_free(ids[0]);
        ctx.timers.timer_free(ids[3]);
        assert!(ctx.timers.del_timer(ids[5]));
        ctx.timers.check_invariants();
        assert_eq!(ctx.timers.armed(), 3);
        for j in 1_001..=50_000 {
            ctx.run(j);
        }
        assert_eq!(ctx.fired, vec![(1, 1_050), (4, 1_100), (2, 30_000)]);
        ctx.timers.check_invariants();
        assert!(ctx.timers.occupied.iter().all(|&w| w == 0), "wheel empty");
    }
}
