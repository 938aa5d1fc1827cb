//! A lock-free LIFO of buffer indices: the heap mempool's shared free list.
//!
//! DPDK: the `stack` mempool driver over `rte_stack_lf` (lib/stack/rte_stack_lf_generic.h).
//!
//! Why a stack and not a FIFO ring: a freed buffer goes back on top and is the next one handed
//! out, so the buffers a core cycles through stay the few it last touched, in cache. A FIFO
//! walks through every buffer of the pool before reusing one: with a 64 Ki-buffer pool that is
//! 140 MB of data rooms and 30 MB of descriptors streamed through the caches, and every
//! allocation starts with a miss on its descriptor (measured: `SkBuff::host_init`'s first read
//! of a fresh mbuf was the hottest instruction of `blink bench` bulk).
//!
//! The links live beside the stack (one `AtomicU32` per index), so no unsafe code is needed.
//! The head packs the top index with a tag bumped on every change; a pop that raced with a
//! pop + push of the same index sees the tag moved and retries (the classic ABA guard). Indices
//! are never freed, so reading a stale link is harmless: the CAS that would use it fails.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

const NIL: u32 = u32::MAX;

#[inline]
fn pack(idx: u32, tag: u32) -> u64 {
    ((tag as u64) << 32) | idx as u64
}

#[inline]
fn unpack(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// A bounded lock-free stack of indices `0..capacity`.
pub struct StackLf {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
    /// Indices on the stack (statistics only: it may lag a concurrent push or pop).
    len: AtomicUsize,
}

impl StackLf {
    /// An empty stack that can hold indices `0..capacity` (capacity < u32::MAX).
    pub fn new(capacity: usize) -> StackLf {
        assert!(capacity < NIL as usize, "stack capacity must fit below u32::MAX");
        StackLf {
            head: AtomicU64::new(pack(NIL, 0)),
            next: (0..capacity).map(|_| AtomicU32::new(NIL)).collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// Indices currently on the stack.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Push `idx` (which must not already be on the stack).
    #[inline]
    pub fn push(&self, idx: u32) {
        self.push_on(&self.head, idx);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Push `idx` on another stack, `head`, that shares this one's links (an index is on at
    /// most one of them at a time): the mempool's per-cache return stacks. Such a stack keeps
    /// no length, so a push touches nothing but its own head.
    #[inline]
    pub fn push_on(&self, head: &AtomicU64, idx: u32) {
        self.publish_on(head, idx, idx);
    }

    /// Push `idxs` (none of them on any stack) on `head` with one compare-and-swap, `idxs[0]`
    /// ending on top: a batch of frees handed back at once (DPDK's bulk put,
    /// Linux's kmem_cache_free_bulk).
    pub fn push_chain_on(&self, head: &AtomicU64, idxs: &[u32]) {
        let (Some(&first), Some(&last)) = (idxs.first(), idxs.last()) else {
            return;
        };
        // The chain is private until the swap publishes it: plain link stores.
        for w in idxs.windows(2) {
            self.next[w[0] as usize].store(w[1], Ordering::Relaxed);
        }
        self.publish_on(head, first, last);
    }

    /// Put the private chain `first` ..= `last` (already linked) on top of `head`: `last`
    /// takes the old top as its successor and one compare-and-swap makes `first` the top.
    #[inline]
    fn publish_on(&self, head: &AtomicU64, first: u32, last: u32) {
        let link = &self.next[last as usize];
        let mut cur = head.load(Ordering::Relaxed);
        loop {
            let (top, tag) = unpack(cur);
            link.store(top, Ordering::Relaxed);
            // Release: whoever pops a buffer of the chain sees its link and every write made
            // to the buffer before it was freed.
            match head.compare_exchange_weak(
                cur,
                pack(first, tag.wrapping_add(1)),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
    }

    /// An empty head for [`push_on`](Self::push_on) / [`pop_bulk_on`](Self::pop_bulk_on).
    pub fn empty_head() -> AtomicU64 {
        AtomicU64::new(pack(NIL, 0))
    }

    /// Pop the most recently pushed index.
    #[inline]
    pub fn pop(&self) -> Option<u32> {
        let mut cur = self.head.load(Ordering::Acquire);
        loop {
            let (top, tag) = unpack(cur);
            if top == NIL {
                return None;
            }
            let next = self.next[top as usize].load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                cur,
                pack(next, tag.wrapping_add(1)),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    return Some(top);
                }
                Err(v) => cur = v,
            }
        }
    }

    /// Pop up to `n` indices with one compare-and-swap (a cache refill), appending them to
    /// `out` top first. Returns how many were taken.
    pub fn pop_bulk(&self, n: usize, out: &mut Vec<u32>) -> usize {
        let k = self.pop_bulk_on(&self.head, n, out);
        if k > 0 {
            self.len.fetch_sub(k, Ordering::Relaxed);
        }
        k
    }

    /// [`pop_bulk`](Self::pop_bulk) from another stack sharing this one's links.
    pub fn pop_bulk_on(&self, head: &AtomicU64, n: usize, out: &mut Vec<u32>) -> usize {
        let start = out.len();
        let mut cur = head.load(Ordering::Acquire);
        loop {
            out.truncate(start);
            let (top, tag) = unpack(cur);
            let mut at = top;
            // Walk the links: if the head has not moved when we swap it, nobody popped or
            // pushed meanwhile, so the chain we walked is exactly the top of the stack.
            while at != NIL && out.len() - start < n {
                out.push(at);
                at = self.next[at as usize].load(Ordering::Relaxed);
            }
            if out.len() == start {
                return 0;
            }
            match head.compare_exchange_weak(cur, pack(at, tag.wrapping_add(1)), Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return out.len() - start,
                Err(v) => cur = v,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_chain_pushed_at_once_pops_in_order_above_what_was_there() {
        let s = StackLf::new(8);
        let h = StackLf::empty_head();
        s.push_on(&h, 7);
        s.push_chain_on(&h, &[3, 1, 4]);
        s.push_chain_on(&h, &[]);
        let mut out = Vec::new();
        assert_eq!(s.pop_bulk_on(&h, 8, &mut out), 4);
        assert_eq!(out, [3, 1, 4, 7]);
    }

    #[test]
    fn lifo_order() {
        let s = StackLf::new(8);
        assert_eq!(s.pop(), None);
        for i in 0..4 {
            s.push(i);
        }
        assert_eq!(s.len(), 4);
        assert_eq!(s.pop(), Some(3));
        s.push(7);
        assert_eq!(s.pop(), Some(7));
        let mut v = Vec::new();
        assert_eq!(s.pop_bulk(2, &mut v), 2);
        assert_eq!(v, [2, 1]);
        assert_eq!(s.pop_bulk(5, &mut v), 1);
        assert_eq!(v, [2, 1, 0]);
        assert_eq!(s.pop_bulk(5, &mut v), 0);
        assert!(s.is_empty());
    }

    #[test]
    fn concurrent_push_pop_keeps_every_index_once() {
        const N: u32 = 1024;
        let s = Arc::new(StackLf::new(N as usize));
        for i in 0..N {
            s.push(i);
        }
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for round in 0..20_000u32 {
                        if (round + t) % 3 == 0 {
                            let mut v = Vec::new();
                            s.pop_bulk(4, &mut v);
                            mine.extend(v);
                        } else if let Some(i) = s.pop() {
                            mine.push(i);
                        }
                        if mine.len() > 8 || round % 5 == 0 {
                            while let Some(i) = mine.pop() {
                                s.push(i);
                            }
                        }
                    }
                    for i in mine {
                        s.push(i);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut seen = vec![false; N as usize];
        while let Some(i) = s.pop() {
            assert!(!seen[i as usize], "index {i} popped twice");
            seen[i as usize] = true;
        }
        assert!(seen.iter().all(|&b| b), "an index was lost");
        assert_eq!(s.len(), 0);
    }
}
