//! Bounded lock-free rings between cores, in the manner of DPDK's `rte_ring`.
//!
//! blink's cores share nothing; they meet only through typed messages on rings: the poller
//! hands received packets to the worker cores, workers return packets to transmit, IP
//! reassembly and tunnel decapsulation re-inject datagrams into the owning core, and
//! application threads post requests to a core. A ring is bounded so that a slow consumer
//! pushes back on its producer instead of growing memory without limit: a full ring hands the
//! item back and the producer drops it through its own counted drop path.
//!
//! The queue itself is `crossbeam_queue::ArrayQueue` (a fixed array with per-slot sequence
//! stamps, multi-producer multi-consumer, no allocation after creation); this type adds the
//! name, burst operations and the statistics that `rte_ring` has.
//!
//! DPDK: `rte_ring_create()`, `rte_ring_enqueue()`, `rte_ring_dequeue()`,
//! `rte_ring_enqueue_burst()`, `rte_ring_dequeue_burst()`, `rte_ring_count()`,
//! `rte_ring_free_count()` in lib/ring/rte_ring.h.

use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Errors creating a ring. Configuration errors name the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RingError {
    /// A ring must hold at least one item.
    #[error("ring {name}: capacity must be at least 1")]
    ZeroCapacity {
        /// Name of the ring.
        name: String,
    },
}

/// A bounded, lock-free FIFO between cores, shared by `Arc<Ring<T>>`.
///
/// Any number of producers and consumers may use it at once; with one of each (the usual
/// case: one ring per direction per core pair) items come out in the order they went in.
/// `Ring<T>` is `Send + Sync` whenever `T: Send`. No operation allocates except
/// [`dequeue_burst`](Self::dequeue_burst) when its output vector is too small.
#[derive(Debug)]
pub struct Ring<T> {
    name: String,
    queue: ArrayQueue<T>,
    /// Items refused because the ring was full. Written only on that slow path and read only
    /// for statistics, so relaxed ordering is enough. DPDK: `enq_fail_objs` in the ring
    /// debug statistics.
    enq_fail: AtomicU64,
}

impl<T> Ring<T> {
    /// Creates a ring called `name` (used in statistics and errors) holding at most
    /// `capacity` items. Unlike `rte_ring` the capacity need not be a power of two, and all
    /// of it is usable. The slots are allocated here, once. Share the ring between cores by
    /// wrapping it in an `Arc`.
    pub fn new(name: &str, capacity: usize) -> Result<Self, RingError> {
        if capacity == 0 {
            return Err(RingError::ZeroCapacity { name: name.to_owned() });
        }
        Ok(Ring {
            name: name.to_owned(),
            queue: ArrayQueue::new(capacity),
            enq_fail: AtomicU64::new(0),
        })
    }

    /// Name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends `item`, or hands it back when the ring is full so the caller can drop it
    /// through its counted drop path (the ring does not know what the item is or why it was
    /// sent). DPDK: `rte_ring_enqueue()`.
    #[inline]
    pub fn enqueue(&self, item: T) -> Result<(), T> {
        self.queue.push(item).inspect_err(|_| {
            self.enq_fail.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// Takes the oldest item, or `None` when the ring is empty. DPDK: `rte_ring_dequeue()`.
    #[inline]
    pub fn dequeue(&self) -> Option<T> {
        self.queue.pop()
    }

    /// Moves as many items as fit from the front of `items` into the ring, in order, and
    /// returns how many moved; those that did not fit stay in `items`, still in order, for the
    /// caller to retry or drop. Each item left behind counts once in
    /// [`enq_fail`](Self::enq_fail). Never allocates: `items` keeps its capacity and can be
    /// reused as the next burst. DPDK: `rte_ring_enqueue_burst()`.
    pub fn enqueue_burst(&self, items: &mut Vec<T>) -> usize {
        // A Vec can only give up items from its back without shifting, and a refused item
        // must go back where it came from. Reversing makes the front the back: pop in FIFO
        // order, push a refused item back into the slot it just left (no allocation), and
        // reverse again. For a burst of a few dozen handles both reversals are negligible.
        // Pushing one by one, rather than first checking free space, also stays correct when
        // other producers fill the ring concurrently.
        items.reverse();
        let mut moved = 0;
        while let Some(item) = items.pop() {
            if let Err(item) = self.queue.push(item) {
                items.push(item);
                break;
            }
            moved += 1;
        }
        items.reverse();
        if !items.is_empty() {
            self.enq_fail.fetch_add(items.len() as u64, Ordering::Relaxed);
        }
        moved
    }

    /// Appends up to `max` of the oldest items to `out` and returns how many. Give `out` a
    /// capacity of at least `max` once (e.g. `Vec::with_capacity(BURST)`, cleared between
    /// bursts) and this never allocates. DPDK: `rte_ring_dequeue_burst()`.
    pub fn dequeue_burst(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut taken = 0;
        // At most what the ring holds now: a pop that finds it empty costs a full fence.
        let max = max.min(self.queue.len());
        while taken < max {
            match self.queue.pop() {
                Some(item) => out.push(item),
                None => break,
            }
            taken += 1;
        }
        taken
    }

    /// Items in the ring now (a snapshot: other cores may change it at once).
    /// DPDK: `rte_ring_count()`.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when the ring holds no item (a snapshot). DPDK: `rte_ring_empty()`.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// True when the ring has no free slot (a snapshot). DPDK: `rte_ring_full()`.
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// Most items the ring holds. DPDK: `rte_ring_get_capacity()`.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Free slots now (a snapshot). DPDK: `rte_ring_free_count()`.
    pub fn free_count(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Total items refused because the ring was full, by [`enqueue`](Self::enqueue) and
    /// [`enqueue_burst`](Self::enqueue_burst), since creation.
    pub fn enq_fail(&self) -> u64 {
        self.enq_fail.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn ring_is_send_and_sync_for_send_items() {
        fn assert_send_sync<X: Send + Sync>() {}
        assert_send_sync::<Ring<u64>>();
        assert_send_sync::<Ring<Box<[u8]>>>();
        assert_send_sync::<Arc<Ring<Vec<u8>>>>();
    }

    #[test]
    fn zero_capacity_is_an_error_naming_the_ring() {
        let err = Ring::<u32>::new("rx0", 0).unwrap_err();
        assert_eq!(err.to_string(), "ring rx0: capacity must be at least 1");
    }

    #[test]
    fn single_enqueue_dequeue_and_full_ring() {
        let ring = Ring::new("test", 3).unwrap();
        assert_eq!(ring.name(), "test");
        assert_eq!(ring.capacity(), 3);
        assert!(ring.is_empty());
        assert_eq!(ring.free_count(), 3);
        for i in 0..3 {
            ring.enqueue(i).unwrap();
        }
        assert!(ring.is_full());
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.enqueue(99), Err(99));
        assert_eq!(ring.enqueue(100), Err(100));
        assert_eq!(ring.enq_fail(), 2);
        assert_eq!(ring.dequeue(), Some(0));
        ring.enqueue(3).unwrap();
        assert_eq!(ring.dequeue(), Some(1));
        assert_eq!(ring.dequeue(), Some(2));
        assert_eq!(ring.dequeue(), Some(3));
        assert_eq!(ring.dequeue(), None);
        assert!(ring.is_empty());
        assert_eq!(ring.enq_fail(), 2);
    }

    #[test]
    fn bursts_keep_order_and_leave_what_does_not_fit() {
        let ring = Ring::new("burst", 5).unwrap();
        let mut items: Vec<u32> = (0..8).collect();
        let cap_before = items.capacity();
        assert_eq!(ring.enqueue_burst(&mut items), 5);
        assert_eq!(items, [5, 6, 7]);
        assert_eq!(items.capacity(), cap_before);
        assert_eq!(ring.enq_fail(), 3);

        let mut out = Vec::with_capacity(8);
        assert_eq!(ring.dequeue_burst(&mut out, 2), 2);
        assert_eq!(out, [0, 1]);
        assert_eq!(ring.enqueue_burst(&mut items), 2);
        assert_eq!(items, [7]);
        assert_eq!(ring.enq_fail(), 4);

        out.clear();
        assert_eq!(ring.dequeue_burst(&mut out, 100), 5);
        assert_eq!(out, [2, 3, 4, 5, 6]);
        assert_eq!(ring.dequeue_burst(&mut out, 100), 0);
        assert_eq!(ring.enqueue_burst(&mut items), 1);
        assert!(items.is_empty());
        assert_eq!(ring.enqueue_burst(&mut items), 0);
        assert_eq!(ring.enq_fail(), 4);
        assert_eq!(ring.dequeue(), Some(7));
    }

    #[test]
    fn dropping_a_ring_drops_its_items() {
        let item = Arc::new(());
        let ring = Ring::new("drop", 4).unwrap();
        ring.enqueue(Arc::clone(&item)).unwrap();
        ring.enqueue(Arc::clone(&item)).unwrap();
        assert_eq!(Arc::strong_count(&item), 3);
        drop(ring);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    /// One producer core, one consumer core, a ring much smaller than the traffic: every item
    /// arrives exactly once and in order, whatever the interleaving.
    #[test]
    fn spsc_two_threads_preserve_order() {
        const N: u64 = 1_000_000;
        let ring = Arc::new(Ring::new("spsc", 256).unwrap());
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                for i in 0..N {
                    let mut item = i;
                    while let Err(back) = ring.enqueue(item) {
                        item = back;
                        thread::yield_now();
                    }
                }
            })
        };
        let mut expected = 0;
        while expected < N {
            match ring.dequeue() {
                Some(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(ring.is_empty());
    }

    /// The same with bursts on both sides, as the poller and the workers use the rings.
    #[test]
    fn spsc_two_threads_bursts_preserve_order() {
        const N: u64 = 1_000_000;
        const BURST: usize = 32;
        let ring = Arc::new(Ring::new("spsc-burst", 128).unwrap());
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut batch = Vec::with_capacity(BURST);
                let mut next = 0;
                while next < N || !batch.is_empty() {
                    while batch.len() < BURST && next < N {
                        batch.push(next);
                        next += 1;
                    }
                    if ring.enqueue_burst(&mut batch) == 0 {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut out = Vec::with_capacity(BURST);
        let mut expected = 0;
        while expected < N {
            out.clear();
            if ring.dequeue_burst(&mut out, BURST) == 0 {
                thread::yield_now();
            }
            for &v in &out {
                assert_eq!(v, expected);
                expected += 1;
            }
        }
        producer.join().unwrap();
        assert!(ring.is_empty());
    }
}
