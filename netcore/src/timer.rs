//! Kernel-style timers on a hierarchical timer wheel per core.
//!
//! Linux: kernel/time/timer.c and include/linux/timer.h.
//!
//! Each core owns one [`Timers`]. The timers themselves live in a per-core slab of
//! `TimerList`s addressed by [`TimerId`]; the wheel (`hierarchical_hash_wheel_timer`'s plain
//! `QuadWheelWithOverflow`, one tick per jiffy) holds only a `Copy` pair
//! `(slab index, generation)`. Nothing is ever removed from the wheel: `mod_timer` filing a new
//! entry (and `timer_free`) bumps the slot's generation, and an entry whose generation no
//! longer matches, or whose timer is not pending, is dropped when its slot comes round.
//! `del_timer` only clears the pending flag, so a timer re-armed after it may adopt its entry.
//! That keeps every operation O(1) whatever the number of armed timers, with no allocation
//! beyond the wheel's own slot vectors.
//!
//! # Bounded ticks: two wheels half a block apart
//!
//! A cascading wheel moves a whole upper-level slot down in one tick. Used naively, every
//! entry filed across a 2^16-jiffy boundary of the wheel's position waits in the third level
//! and comes down in one piece when the boundary is reached: with 1M timers under a minute
//! that is nearly all of them, a 10 ms stall every 65.5 s. So the wheel's third and fourth
//! levels (and its overflow list) are never used. There are two wheels whose positions differ
//! by half a block (2^15 jiffies); an entry goes to one whose current 2^16-jiffy block it
//! does not leave, so it stays in the two lower levels, whose cascades move at most the
//! entries due in one 256-jiffy window. One of the two wheels always has 2^15 - 1 jiffies of
//! room; a longer delay is filed at a spread-out point in the second half of that room and
//! re-filed for the rest when it surfaces (a 2-hour keepalive hops about 200 times over its
//! life). The work per tick is then proportional to the timers due around that tick, never
//! to the number armed.
//!
//! Timers fire only inside the poll loop of their core: the loop calls [`run_timers`] (or
//! [`Timers::advance`] and then [`Timers::next_expired`] itself) with the current jiffy.
//!
//! # Exactness
//!
//! A timer armed for jiffy `e` runs during the first `advance(now)` with `now >= e`: exactly at
//! `e` when the loop advances every jiffy, never earlier. Two situations bring an entry out
//! of the wheel before the timer's expiry; it is then re-filed for the rest of the delay, so
//! the owner never notices:
//! - a delay longer than the wheel it went to can hold in its current block (above);
//! - `mod_timer` moving a pending timer *later* only records the new expiry (see there).
//!
//! (Keeping to the lower levels also avoids two faults of the crate's upper ones: delays of
//! 2^32 - 2^24 and more are filed into a lower level and come out early once
//! `position + delay` wraps, and its overflow arithmetic underflows for a delay of exactly
//! `u32::MAX` at cycle position 0.)
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

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use hierarchical_hash_wheel_timer::wheels::quad_wheel::QuadWheelWithOverflow;
use hierarchical_hash_wheel_timer::wheels::Skip;
use hierarchical_hash_wheel_timer::TimerError;

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

/// Jiffies covered by the wheel's two lower levels: an entry whose expiry stays within the
/// wheel's current block of this size never reaches the third level.
const BLOCK: u64 = 1 << 16;

/// Offset between the positions of the two wheels.
const HALF_BLOCK: u64 = BLOCK / 2;

/// An advance over more than `BLOCK` jiffies and more than this many jiffies per slab slot
/// re-files every pending timer from the slab instead of ticking through the gap.
const REBASE_JIFFIES_PER_SLOT: u64 = 64;

type Wheel = QuadWheelWithOverflow<(u32, u32)>;

/// One timer in the slab.
///
/// Linux: `struct timer_list` in include/linux/timer.h.
// repr(C) keeps what a tick reads (generation, pending, expires) together at the front.
#[repr(C)]
struct TimerList<C> {
    /// Bumped on every `mod_timer` that files a new entry and on every `del_timer`; wheel and
    /// queue entries carrying an older value are stale and ignored.
    generation: u32,
    /// Run epoch in which the callback last ran; a timer runs at most once per epoch.
    ran_epoch: u32,
    /// Absolute jiffy at which the timer runs (meaningful while pending).
    expires: u64,
    /// Jiffy at which the live entry (the one carrying `generation`) comes out of the wheel or
    /// already sits on the expired queue; `<= expires` while pending.
    entry_at: u64,
    /// Linux: timer_pending(); true from `mod_timer` until the callback is handed out.
    pending: bool,
    /// False once `timer_free`d (the slot is on the free list).
    in_use: bool,
    func: TimerFn<C>,
    data: u64,
}

/// One core's timers: the slab, the wheels and the expired queue.
///
/// Linux: `struct timer_base` in kernel/time/timer.c (one per CPU).
pub struct Timers<C> {
    slab: Vec<TimerList<C>>,
    free: Vec<u32>,
    /// Ticked and skipped together; `wheels[1]`'s position is `HALF_BLOCK` ahead of
    /// `wheels[0]`'s, modulo `BLOCK`.
    wheels: [Wheel; 2],
    /// The last jiffy the wheels were advanced to (Linux: `timer_base.clk`, less one).
    now: u64,
    /// Entries due to run, in order; stale ones are skipped when popped.
    expired: VecDeque<(u32, u32)>,
    /// Entries whose timer already ran in the current epoch: they run after the next advance.
    deferred: VecDeque<(u32, u32)>,
    epoch: u32,
    armed: usize,
    /// Reused by `rebase` to order the timers that fell due in the gap.
    due: Vec<(u64, u32)>,
    /// Wheel ticks actually performed (the rest of the jiffies were skipped).
    wheel_ticks: u64,
}

impl<C> fmt::Debug for Timers<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timers")
            .field("now", &self.now)
            .field("armed", &self.armed)
            .field("slots", &self.slab.len())
            .field("free", &self.free.len())
            .field("expired", &self.expired.len())
            .field("deferred", &self.deferred.len())
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
        Timers {
            slab: Vec::with_capacity(timers),
            free: Vec::new(),
            wheels: new_wheels(),
            now: now_jiffies,
            expired: VecDeque::new(),
            deferred: VecDeque::new(),
            // Fresh slots carry ran_epoch 0, so they may run before the first advance.
            epoch: 1,
            armed: 0,
            due: Vec::new(),
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
            // Keep generation (stale entries of the previous owner must stay stale) and
            // ran_epoch (a callback recycling slots cannot make run_timers spin).
            t.func = func;
            t.data = data;
            t.expires = 0;
            t.entry_at = 0;
            t.pending = false;
            t.in_use = true;
            return TimerId(idx);
        }
        let idx = u32::try_from(self.slab.len()).expect("more than 2^32 timers on one core");
        self.slab.push(TimerList {
            func,
            data,
            expires: 0,
            entry_at: 0,
            generation: 0,
            ran_epoch: 0,
            pending: false,
            in_use: true,
        });
        TimerId(idx)
    }

    /// Arm `id` to run at absolute jiffy `expires` (re-arming it if pending). Returns whether
    /// it was pending before. `expires <= now` makes it run at the next run of the timers.
    ///
    /// Moving a pending timer earlier files a new wheel entry and makes the old one stale;
    /// moving it later (or keeping its expiry) only records the new expiry, and the old entry
    /// is re-filed for the remainder when it surfaces. So the common "push the timeout back on
    /// every ACK" costs no wheel work at all.
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
            // Deleted, but its entry (carrying the current generation: del_timer leaves it)
            // is still on a wheel and surfaces no later than the new expiry: adopt it, as
            // above. A timer deleted and re-armed for every packet (the retransmission and
            // delayed-ACK timers of a request/response flow) then costs no wheel work.
            t.expires = expires;
            t.pending = true;
            self.armed += 1;
            return false;
        }
        t.generation = t.generation.wrapping_add(1);
        t.expires = expires;
        t.pending = true;
        let generation = t.generation;
        if !was_pending {
            self.armed += 1;
        }
        self.enqueue(id.0, generation, expires);
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
        // The generation stays: the timer's entry, wherever it is, is ignored while the timer
        // is not pending, and mod_timer may adopt it again (see there).
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
        let t = &mut self.slab[id.0 as usize];
        // Entries of this owner must never be adopted by the next one.
        t.generation = t.generation.wrapping_add(1);
        t.in_use = false;
        self.free.push(id.0);
    }

    /// Move the wheel to jiffy `now_jiffies`, queueing every timer that expires on the way
    /// (and the ones deferred by the previous run). Call [`Timers::next_expired`] afterwards.
    ///
    /// The wheels tick one jiffy at a time while anything is in the next slot and skip ahead
    /// over empty stretches (a 256-jiffy stretch costs a skip and a tick). A gap longer than
    /// 2^16 jiffies and than 64 jiffies per slab slot is not ticked through: every pending
    /// timer is re-filed from the slab instead. A `now_jiffies` at or before the current jiffy
    /// only starts a new run epoch.
    ///
    /// Linux: __run_timers() in kernel/time/timer.c, collecting like collect_expired_timers().
    pub fn advance(&mut self, now_jiffies: u64) {
        self.epoch = self.epoch.wrapping_add(1);
        if !self.deferred.is_empty() {
            self.expired.extend(self.deferred.drain(..));
        }
        let gap = now_jiffies.saturating_sub(self.now);
        if gap > BLOCK && gap / REBASE_JIFFIES_PER_SLOT > self.slab.len() as u64 {
            self.rebase(now_jiffies);
            return;
        }
        while self.now < now_jiffies {
            let gap = now_jiffies - self.now;
            if gap > 1 {
                let skip = skippable(&self.wheels[0]).min(skippable(&self.wheels[1]));
                if skip == u64::MAX {
                    // Nothing filed: the wheels' positions do not matter (delays are relative
                    // to them), only their offset, which standing still keeps.
                    self.now = now_jiffies;
                    break;
                }
                if skip > 0 {
                    // skip < 2^32 (one wheel is not empty).
                    let s = gap.min(skip) as u32;
                    self.wheels[0].skip(s);
                    self.wheels[1].skip(s);
                    self.now += u64::from(s);
                    continue;
                }
            }
            self.now += 1;
            self.wheel_ticks += 1;
            for w in 0..2 {
                let fired = self.wheels[w].tick();
                if fired.is_empty() {
                    continue;
                }
                // The slab entries of a batch are cold and scattered. A first pass of
                // independent loads (counting what falls due, to size the queue once) lets
                // their cache misses overlap instead of queueing up one by one behind the
                // wheel inserts of the second pass.
                let now = self.now;
                let due = fired
                    .iter()
                    .filter(|&&(idx, generation)| {
                        let t = &self.slab[idx as usize];
                        t.generation == generation && t.expires <= now
                    })
                    .count();
                self.expired.reserve(due);
                for (idx, generation) in fired {
                    self.file_fired(idx, generation);
                }
            }
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
        while let Some((idx, generation)) = self.expired.pop_front() {
            let t = &self.slab[idx as usize];
            if t.generation != generation || !t.pending {
                continue;
            }
            if t.expires > self.now {
                // Pushed later by mod_timer after its entry was queued.
                let expires = t.expires;
                self.enqueue(idx, generation, expires);
                continue;
            }
            if t.ran_epoch == self.epoch {
                self.deferred.push_back((idx, generation));
                continue;
            }
            let epoch = self.epoch;
            let t = &mut self.slab[idx as usize];
            t.pending = false;
            t.ran_epoch = epoch;
            self.armed -= 1;
            return Some((t.func, t.data));
        }
        None
    }

    /// Jump to `now` without ticking: fresh wheels, and every pending timer re-filed under a
    /// new generation (so every older wheel or queue entry is stale). Those already due are
    /// queued in expiry order, as ticking would have queued them.
    fn rebase(&mut self, now: u64) {
        self.wheels = new_wheels();
        self.expired.clear();
        self.now = now;
        let mut due = std::mem::take(&mut self.due);
        for idx in 0..self.slab.len() as u32 {
            let t = &mut self.slab[idx as usize];
            if !t.pending {
                // Its entry went with the old wheels: nothing left for mod_timer to adopt.
                t.entry_at = 0;
                continue;
            }
            t.generation = t.generation.wrapping_add(1);
            if t.expires <= now {
                t.entry_at = now;
                due.push((t.expires, idx));
            } else {
                let (generation, expires) = (t.generation, t.expires);
                self.enqueue(idx, generation, expires);
            }
        }
        due.sort_unstable();
        for &(_, idx) in &due {
            self.expired.push_back((idx, self.slab[idx as usize].generation));
        }
        due.clear();
        self.due = due;
    }

    /// File the live entry of slot `idx` for `expires`: on a wheel, or straight onto the
    /// expired queue if it is already due.
    ///
    /// Linux: enqueue_timer() in kernel/time/timer.c.
    fn enqueue(&mut self, idx: u32, generation: u32, expires: u64) {
        let entry_at = if expires <= self.now {
            self.expired.push_back((idx, generation));
            self.now
        } else {
            // Room: the longest delay that stays in the wheel's current block.
            let room = |w: &Wheel| BLOCK - 1 - u64::from(w.current_time_in_cycle() & 0xFFFF);
            let (r0, r1) = (room(&self.wheels[0]), room(&self.wheels[1]));
            let (w, room) = if r0 >= r1 { (0, r0) } else { (1, r1) };
            debug_assert!(room >= HALF_BLOCK - 1);
            let want = expires - self.now;
            let delay = if want <= room {
                want
            } else {
                // Surface somewhere in the second half of the room, spread by a hash so that
                // timers armed together do not all come out (and hop) on the same tick.
                let h = (u64::from(idx) ^ expires.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                room - (h >> 32) % (room / 2)
            };
            if let Err(err) = self.wheels[w].insert_with_delay((idx, generation), Duration::from_millis(delay)) {
                match err {
                    // Only a zero delay expires, and delay >= 1 here; keep it correct anyway.
                    TimerError::Expired(entry) => self.expired.push_back(entry),
                    TimerError::NotFound => unreachable!("wheel insert never reports NotFound"),
                }
            }
            self.now + delay
        };
        self.slab[idx as usize].entry_at = entry_at;
    }

    /// A wheel entry came out at `self.now`: queue it, re-file it (a hop of a long delay, or a
    /// timer pushed later), or drop it if stale.
    fn file_fired(&mut self, idx: u32, generation: u32) {
        let t = &self.slab[idx as usize];
        if t.generation != generation || !t.pending {
            return;
        }
        if t.expires > self.now {
            let expires = t.expires;
            self.enqueue(idx, generation, expires);
        } else {
            self.expired.push_back((idx, generation));
        }
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

/// Two empty wheels, the second `HALF_BLOCK` ahead of the first.
fn new_wheels() -> [Wheel; 2] {
    let mut ahead = Wheel::default();
    ahead.skip(HALF_BLOCK as u32);
    [Wheel::default(), ahead]
}

/// How many ticks `wheel` can skip without missing anything; `u64::MAX` if it is empty.
fn skippable(wheel: &Wheel) -> u64 {
    match wheel.can_skip() {
        Skip::Empty => u64::MAX,
        Skip::Millis(k) => u64::from(k),
        Skip::None => 0,
    }
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
    if now <= t.now && t.expired.is_empty() && t.deferred.is_empty() {
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
        // Enough idle slots that no advance below 12.8M jiffies rebases: long gaps are ticked
        // through, with far timers hopping between the wheels.
        random_model(0x0123_4567_89AB_CDEF, 200_000);
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
        }
    }

    #[test]
    fn entries_stay_in_the_two_lower_levels() {
        // With entries only in levels 0 and 1, a wheel can never skip more than 255 ticks;
        // an entry in level 2 or 3 would let it skip to the end of a 2^16 or 2^24 block.
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
                for w in &ctx.timers.wheels {
                    let skip = skippable(w);
                    assert!(skip <= 255 || skip == u64::MAX, "round {round}: skip {skip}");
                }
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
}
