//! Small tests for Miri: every `unsafe` block of the heap mempool (mbuf.rs), `SkBuff`
//! (skbuff.rs), and the lock-free structures they rest on (stack_lf.rs, ring.rs) runs here at
//! least once, with pools of a handful of tiny buffers so that Miri (~100x slower than a
//! native run) gets through them in a couple of minutes:
//!
//! ```sh
//! cargo +nightly miri test -p blink-netcore --lib miri_tests
//! ```
//!
//! They also run natively with the other unit tests. What each one covers is named in its
//! doc comment; the `unsafe` they exercise is named by function.

use std::sync::Arc;
use std::thread;

use crate::mbuf::{Mbuf, Mempool, MempoolCache, MempoolConfig};
use crate::ring::Ring;
use crate::skbuff::{Frag, SkBuff, SkBuffHead, SkbCb, MAX_SKB_FRAGS};
use crate::stack_lf::StackLf;

/// A pool of `n` buffers of 256 bytes (64 of headroom): big enough for every operation,
/// small enough that Miri initialises it quickly.
fn pool(n: usize) -> Mempool {
    Mempool::new(&MempoolConfig {
        name: "miri".into(),
        n,
        buf_size: 256,
        headroom: 64,
        cache_size: 4,
    })
    .unwrap()
}

fn filled(c: &mut MempoolCache, bytes: &[u8]) -> Mbuf {
    let mut m = c.alloc().unwrap();
    assert!(m.append_slice(bytes));
    m
}

#[derive(Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Cb {
    seq: u32,
    end_seq: u32,
    when: u64,
}
// SAFETY: plain integers; every bit pattern (all zeroes included) is valid; 16 bytes, align 8.
unsafe impl SkbCb for Cb {}

// ---------------------------------------------------------------------------------------------
// mbuf.rs

/// `Mempool::new` (buffer pointers into the raw data rooms), `PoolInner::take` (the strong
/// count an unhomed buffer takes, the descriptor writes), `Mbuf::buf_mut`/`set_data`/`data`,
/// `release` + `release_unhomed` (the count given back), and `PoolInner::drop` (the data rooms
/// freed) once the last buffer is gone after the pool handle.
#[test]
fn mbuf_alloc_write_read_free_unhomed() {
    let p = pool(4);
    let mut a = p.alloc().unwrap();
    let mut b = p.alloc().unwrap();
    assert!(a.append_slice(b"hello"));
    b.append(3).unwrap().copy_from_slice(b"abc");
    b.prepend(2).unwrap().copy_from_slice(b"<<");
    assert!(b.adj(1) && b.trim(1));
    assert_eq!((a.data(), b.data()), (&b"hello"[..], &b"<ab"[..]));
    assert!(a.set_data(0, 256));
    a.buf_mut().unwrap()[255] = 7;
    assert_eq!(a.data()[255], 7);
    assert!(!a.set_data(1, 256), "past the end of the buffer");
    assert_eq!(p.in_use(), 2);
    assert_eq!(a.pool_name(), "miri");
    drop(p);
    // The pool handle is gone: the buffers keep the pool alive, and the last one frees it.
    assert_eq!(b.data(), b"<ab");
    drop(a);
    drop(b);
}

/// Clones share one descriptor (`Clone`, the refcount), a shared buffer refuses writes, and
/// the last handle releases: dropped on another thread (`Send`/`Sync` of `Mbuf`).
#[test]
fn mbuf_clone_and_free_on_another_thread() {
    let p = pool(4);
    let mut c = p.cache();
    let m = filled(&mut c, b"shared");
    let mut m2 = m.clone();
    assert_eq!(m.refcnt(), 2);
    assert!(m2.buf_mut().is_none() && m2.data_mut().is_none() && !m2.set_data(0, 1));
    let t = thread::spawn(move || {
        assert_eq!(m.data(), b"shared");
        drop(m);
    });
    // Read concurrently with the other thread's read and drop.
    assert_eq!(m2.data(), b"shared");
    t.join().unwrap();
    assert!(m2.is_unique());
    m2.data_mut().unwrap()[0] = b'S';
    // Both handles of one buffer dropped on two threads at once: exactly one releases it.
    let m3 = m2.clone();
    let t = thread::spawn(move || drop(m3));
    drop(m2);
    t.join().unwrap();
    assert_eq!(p.in_use(), 0);
    drop(c);
}

/// Chains (`next`, `set_next`, `take_next` on the descriptor's `UnsafeCell`), and `release`
/// walking a chain whose middle segment is still shared.
#[test]
fn mbuf_chains() {
    let p = pool(8);
    let mut c = p.cache();
    let mut a = filled(&mut c, b"aa");
    let mut b = filled(&mut c, b"bbb");
    let d = filled(&mut c, b"d");
    b.set_next(Some(d)).unwrap();
    let b_extra = b.clone();
    // A shared segment cannot be relinked.
    let mut b_again = b_extra.clone();
    assert!(b_again.set_next(None).is_err());
    drop(b_again);
    a.set_next(Some(b)).unwrap();
    assert_eq!((a.nb_segs(), a.pkt_len()), (3, 6));
    assert_eq!(a.next().unwrap().next().unwrap().data(), b"d");
    drop(a);
    // `b` (and `d` behind it) survive through the extra handle.
    assert_eq!(p.in_use(), 2);
    assert_eq!(b_extra.next().unwrap().data(), b"d");
    drop(b_extra);
    assert_eq!(p.in_use(), 0);
    let mut x = filled(&mut c, b"x");
    x.set_next(Some(filled(&mut c, b"y"))).unwrap();
    let y = x.take_next().unwrap();
    assert!(x.next().is_none());
    assert_eq!(y.data(), b"y");
    drop((x, y, c));
    assert_eq!(p.in_use(), 0);
}

/// Per-cache slots: buffers go home to the slot that allocated them wherever they are freed,
/// another cache steals from a slot when the shared stack is empty, a cache that closes with
/// buffers out parks a strong count (`MempoolCache::drop`), and the last of its buffers to
/// come back (from another thread) drains the slot and drops that count (`release`).
#[test]
fn cache_slots_park_and_release_across_threads() {
    let p = pool(6);
    let mut a = p.cache();
    let mut b = p.cache();
    let held: Vec<Mbuf> = (0..6).map(|_| a.alloc().unwrap()).collect();
    assert!(b.alloc().is_none(), "exhausted");
    assert_eq!(b.stats(), (0, 1));
    drop(held);
    let stolen: Vec<Mbuf> = (0..3).map(|_| b.alloc().expect("from a's slot")).collect();
    let mine: Vec<Mbuf> = (0..2).map(|_| a.alloc().unwrap()).collect();
    drop(a);
    drop(b);
    assert_eq!(p.in_use(), 5);
    // No handle but the buffers': the last of them to come back frees the pool (Miri checks
    // there is no use after free, and its leak check that the pool did go).
    drop(p);
    assert_eq!(mine[0].data_len(), 0);
    let t = thread::spawn(move || drop(stolen));
    drop(mine);
    t.join().unwrap();
}

/// More caches than the pool has slots: the extra ones work through the shared stack
/// (`NO_HOME`, counted in `in_use` directly).
#[test]
fn caches_beyond_the_slots() {
    let p = pool(2);
    let mut caches: Vec<MempoolCache> = (0..66).map(|_| p.cache()).collect();
    let mut last = caches.pop().unwrap();
    let m = last.alloc().unwrap();
    assert_eq!(p.in_use(), 1);
    drop(caches);
    let m2 = last.alloc().unwrap();
    drop(last);
    assert_eq!(p.in_use(), 2);
    drop((m, m2));
    assert_eq!(p.in_use(), 0);
    assert_eq!(p.available(), 2);
}

/// Two threads with their own caches trading buffers through a ring: allocations, frees on
/// the other core (a push on a slot the freeing thread does not own), and steals.
#[test]
fn two_caches_trade_buffers_through_a_ring() {
    let p = pool(8);
    let ring: Arc<Ring<Mbuf>> = Arc::new(Ring::new("trade", 4).unwrap());
    let (p2, r2) = (p.clone(), ring.clone());
    let t = thread::spawn(move || {
        let mut c = p2.cache();
        let mut sent = 0;
        while sent < 12 {
            if let Some(mut m) = c.alloc() {
                m.append_slice(&[sent as u8; 3]);
                let mut item = m;
                loop {
                    match r2.enqueue(item) {
                        Ok(()) => break,
                        Err(back) => {
                            item = back;
                            thread::yield_now();
                        }
                    }
                }
                sent += 1;
            } else {
                thread::yield_now();
            }
        }
    });
    let mut c = p.cache();
    let mut got = 0;
    while got < 12 {
        match ring.dequeue() {
            Some(m) => {
                assert_eq!(m.data(), &[got as u8; 3]);
                let mine = c.alloc();
                drop(m);
                drop(mine);
                got += 1;
            }
            None => thread::yield_now(),
        }
    }
    t.join().unwrap();
    drop(c);
    assert_eq!(p.in_use(), 0);
}

// ---------------------------------------------------------------------------------------------
// skbuff.rs

/// The metadata in the host's private area (`meta`/`meta_mut`), its way back to the host
/// (`set_host`, `SkbMeta::host`), the host buffer read and written through it (`host_buf`,
/// `host_buf_mut`, `h_refcnt`), and the control block (`cb`/`cb_mut`).
#[test]
fn skb_linear_ops_and_cb() {
    let p = pool(4);
    let mut c = p.cache();
    let mut skb = SkBuff::alloc(&mut c).unwrap();
    assert!(skb.skb_put_data(b"payload"));
    skb.skb_push(4).unwrap().copy_from_slice(b"TCPH");
    skb.skb_reset_network_header();
    skb.skb_network_header_mut().unwrap()[0] = b't';
    skb.skb_set_transport_header(4);
    skb.skb_transport_header_mut().unwrap()[0] = b'P';
    skb.data_mut().unwrap()[1] = b'c';
    assert_eq!(skb.data(), b"tcPHPayload");
    assert!(skb.skb_pull(4));
    assert_eq!(skb.skb_network_header(), b"tcPHPayload");
    assert!(skb.skb_unpull(4));
    skb.skb_trim(6);
    assert_eq!(skb.data(), b"tcPHPa");
    skb.cb_mut::<Cb>().seq = 7;
    skb.cb_mut::<Cb>().when = u64::MAX;
    assert_eq!(
        *skb.cb::<Cb>(),
        Cb {
            seq: 7,
            end_seq: 0,
            when: u64::MAX
        }
    );
    assert!(!skb.skb_header_cloned());
    drop(skb);
    let mut e = SkBuff::alloc(&mut c).unwrap();
    assert!(e.skb_reserve(8));
    let room = e.skb_tailroom();
    assert!(e.skb_put(room).is_some());
    assert!(e.skb_put(1).is_none());
    drop((e, c));
    assert_eq!(p.in_use(), 0);
}

/// `skb_clone` (the clone's linear area is the original's host, through `head`), a clone of
/// a clone, reads of a shared host through both, writes refused while shared and allowed
/// once the other side is gone, and `skb_copy`.
#[test]
fn skb_clone_copy_and_shared_host() {
    let p = pool(8);
    let mut c = p.cache();
    let mut skb = SkBuff::from_slice(&mut c, b"header").unwrap();
    skb.skb_add_frag(Frag::from_mbuf(filled(&mut c, b"-frag"))).unwrap();
    skb.cb_mut::<Cb>().end_seq = 99;
    let clone = skb.skb_clone(&mut c).unwrap();
    let clone2 = clone.skb_clone(&mut c).unwrap();
    assert_eq!(p.in_use(), 4);
    assert!(skb.skb_header_cloned() && clone.skb_header_cloned());
    assert!(skb.data_mut().is_none() && skb.skb_push(1).is_none());
    let mut all = [0u8; 11];
    assert!(clone2.skb_copy_bits(0, &mut all));
    assert_eq!(&all, b"header-frag");
    assert_eq!(clone2.cb::<Cb>().end_seq, 99);
    let copy = clone.skb_copy(&mut c).unwrap();
    assert_eq!(copy.data(), b"header-frag");
    drop(skb);
    assert_eq!(clone.data(), b"header");
    drop(clone);
    // clone2 is now the only reader of the original host: its linear area is writable again.
    let mut clone2 = clone2;
    assert!(!clone2.skb_header_cloned());
    clone2.data_mut().unwrap()[0] = b'H';
    assert_eq!(clone2.data(), b"Header");
    drop((clone2, copy, c));
    assert_eq!(p.in_use(), 0);
}

/// A received chain becomes an skb (`from_mbuf`), `pskb_may_pull` copies from fragments into
/// the host (`host_buf_mut` through `__pskb_pull_tail`), `pskb_pull` and `skb_trim` drop
/// fragments, and a full frag array gives the fragment back.
#[test]
fn skb_frags_pull_and_trim() {
    let p = pool(8);
    let mut c = p.cache();
    let mut a = filled(&mut c, &[1, 2, 3]);
    let mut b = filled(&mut c, &[4, 5, 6, 7]);
    b.set_next(Some(filled(&mut c, &[8, 9]))).unwrap();
    a.set_next(Some(b)).unwrap();
    let mut skb = SkBuff::from_mbuf(a).unwrap();
    assert_eq!((skb.headlen(), skb.len(), skb.frags().len()), (3, 9, 2));
    assert!(skb.pskb_may_pull(8));
    assert_eq!(skb.data(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(p.in_use(), 2, "the emptied segment went back");
    assert!(skb.pskb_pull(8));
    assert_eq!(skb.len(), 1);
    let mut one = [0u8];
    assert!(skb.skb_copy_bits(0, &mut one) && one == [9]);
    skb.skb_trim(0);
    assert!(skb.frags().is_empty());
    assert_eq!(p.in_use(), 1);
    drop(skb);
    // A shared mbuf cannot become an skb.
    let m = filled(&mut c, b"s");
    let keep = m.clone();
    let m = SkBuff::from_mbuf(m).unwrap_err();
    drop((m, keep));
    // Fragments of one mbuf, more than the array holds.
    let mut skb = SkBuff::alloc(&mut c).unwrap();
    let f = filled(&mut c, b"0123456789");
    for _ in 0..MAX_SKB_FRAGS {
        skb.skb_add_frag(Frag::new(f.clone(), 64, 1).unwrap()).unwrap();
    }
    assert!(skb.skb_add_frag(Frag::new(f.clone(), 64, 1).unwrap()).is_err());
    assert!(Frag::new(f, 250, 10).is_none());
    assert_eq!(skb.len(), MAX_SKB_FRAGS);
    drop((skb, c));
    assert_eq!(p.in_use(), 0);
}

/// `SkBuffHead`: the intrusive list's pointer ops (`into_raw`/`from_raw`: the host handle in
/// and out of the list) and adapter (`get_link`/`get_value`), every queue operation, reads
/// through a peeked `&SkbMeta` (its `host`), a sorted insert, a splice, a purge, and a queue
/// dropped with skbs (and clones sharing their hosts) still on it.
#[test]
fn skb_queues() {
    let p = pool(16);
    let mut c = p.cache();
    let mut q = SkBuffHead::new();
    for i in [3u8, 1, 4] {
        let mut skb = SkBuff::from_slice(&mut c, &[i; 2]).unwrap();
        skb.cb_mut::<Cb>().seq = i as u32;
        q.skb_insert_sorted_from_tail(skb, |e| e.cb::<Cb>().seq > i as u32);
    }
    let mut f = SkBuff::from_slice(&mut c, &[0]).unwrap();
    f.cb_mut::<Cb>().seq = 0;
    q.skb_queue_head(f);
    q.skb_queue_tail(SkBuff::from_slice(&mut c, &[5, 5]).unwrap());
    let order: Vec<u8> = q.iter().map(|m| m.data()[0]).collect();
    assert_eq!(order, [0, 1, 3, 4, 5]);
    assert_eq!((q.len(), q.bytes()), (5, 9));
    assert_eq!(q.skb_peek().unwrap().data(), &[0]);
    assert_eq!(q.skb_peek_tail().unwrap().data(), &[5, 5]);
    let first = q.skb_dequeue().unwrap();
    let last = q.skb_dequeue_tail().unwrap();
    assert_eq!((first.data(), last.data()), (&[0u8][..], &[5u8, 5][..]));
    // A clone queued elsewhere while its original sits in another queue.
    let mut other = SkBuffHead::new();
    let peeked_clone = {
        let front = q.skb_dequeue().unwrap();
        let cl = front.skb_clone(&mut c).unwrap();
        q.skb_queue_head(front);
        cl
    };
    other.skb_queue_tail(peeked_clone);
    other.skb_queue_tail(last);
    q.splice_tail(&mut other);
    assert!(other.is_empty());
    let order: Vec<u8> = q.iter().map(|m| m.data()[0]).collect();
    assert_eq!(order, [1, 3, 4, 1, 5]);
    q.purge();
    assert_eq!(p.in_use(), 1, "only `first` is left");
    q.skb_queue_tail(first);
    let mut x = SkBuff::from_slice(&mut c, b"x").unwrap();
    x.skb_add_frag(Frag::from_mbuf(filled(&mut c, b"y"))).unwrap();
    let xc = x.skb_clone(&mut c).unwrap();
    q.skb_queue_tail(x);
    q.skb_queue_tail(xc);
    drop(q);
    drop(c);
    assert_eq!(p.in_use(), 0, "dropping a queue frees what it holds");
}

/// Skbs and whole queues moved to other threads (the cross-core inbox), read there, and
/// freed there or back here, while clones keep the shared hosts alive on both sides.
#[test]
fn skbs_and_queues_cross_threads() {
    let p = pool(16);
    let mut c = p.cache();
    let ring: Arc<Ring<SkBuff>> = Arc::new(Ring::new("inbox", 2).unwrap());
    let mut q = SkBuffHead::new();
    let mut keep = Vec::new();
    for i in 0..3u8 {
        let mut skb = SkBuff::from_slice(&mut c, &[i; 4]).unwrap();
        skb.skb_add_frag(Frag::from_mbuf(filled(&mut c, &[i + 10]))).unwrap();
        keep.push(skb.skb_clone(&mut c).unwrap());
        q.skb_queue_tail(skb);
    }
    let solo = SkBuff::from_slice(&mut c, b"solo").unwrap();
    ring.enqueue(solo).unwrap();
    let r2 = ring.clone();
    let t = thread::spawn(move || {
        let skb = r2.dequeue().unwrap();
        assert_eq!(skb.data(), b"solo");
        let mut sum = 0u32;
        while let Some(skb) = q.skb_dequeue() {
            let mut b = [0u8; 5];
            assert!(skb.skb_copy_bits(0, &mut b));
            sum += b.iter().map(|&x| x as u32).sum::<u32>();
            if b[0] == 1 {
                // Handed back to the other side.
                r2.enqueue(skb).unwrap();
            }
        }
        sum
    });
    for k in &keep {
        assert_eq!(k.len(), 5);
    }
    let sum = t.join().unwrap();
    assert_eq!(sum, (0 + 10) + (4 + 11) + (8 + 12));
    let back = ring.dequeue().unwrap();
    assert_eq!(back.data(), &[1; 4]);
    drop(back);
    drop(keep);
    drop(c);
    assert_eq!(p.in_use(), 0);
}

// ---------------------------------------------------------------------------------------------
// stack_lf.rs and ring.rs

/// The lock-free stack's push, pop, bulk pop and the shared-link stacks, from three threads.
#[test]
fn stack_lf_concurrent() {
    let s = Arc::new(StackLf::new(16));
    for i in 0..16 {
        s.push(i);
    }
    let side = Arc::new(StackLf::empty_head());
    let threads: Vec<_> = (0..3u32)
        .map(|t| {
            let (s, side) = (s.clone(), side.clone());
            thread::spawn(move || {
                let mut mine = Vec::new();
                for round in 0..8u32 {
                    match (round + t) % 3 {
                        0 => {
                            let mut v = Vec::new();
                            s.pop_bulk(3, &mut v);
                            mine.extend(v);
                        }
                        1 => mine.extend(s.pop()),
                        _ => {
                            if let Some(i) = mine.pop() {
                                s.push_on(&side, i);
                            }
                        }
                    }
                    if mine.len() > 4 {
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
    let mut seen = vec![false; 16];
    let mut v = Vec::new();
    while s.pop_bulk_on(&side, 5, &mut v) > 0 {}
    while let Some(i) = s.pop() {
        v.push(i);
    }
    for i in v {
        assert!(!seen[i as usize], "index {i} twice");
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|&b| b), "an index was lost");
}

/// A ring of skbs between two threads with bursts on both sides; a full ring hands items
/// back; a ring dropped with skbs inside frees them.
#[test]
fn ring_bursts_between_threads_and_drop_with_items() {
    let p = pool(12);
    let ring: Arc<Ring<SkBuff>> = Arc::new(Ring::new("rx", 3).unwrap());
    let (p2, r2) = (p.clone(), ring.clone());
    let producer = thread::spawn(move || {
        let mut c = p2.cache();
        let mut batch = Vec::with_capacity(4);
        let mut next = 0u8;
        while next < 8 || !batch.is_empty() {
            while batch.len() < 4 && next < 8 {
                match SkBuff::from_slice(&mut c, &[next]) {
                    Some(s) => {
                        batch.push(s);
                        next += 1;
                    }
                    None => break,
                }
            }
            if r2.enqueue_burst(&mut batch) == 0 {
                thread::yield_now();
            }
        }
    });
    let mut out = Vec::with_capacity(4);
    let mut expect = 0u8;
    while expect < 8 {
        out.clear();
        if ring.dequeue_burst(&mut out, 4) == 0 {
            thread::yield_now();
        }
        for s in out.drain(..) {
            assert_eq!(s.data(), &[expect]);
            expect += 1;
        }
    }
    producer.join().unwrap();
    let mut c = p.cache();
    for i in 0..3u8 {
        ring.enqueue(SkBuff::from_slice(&mut c, &[i]).unwrap()).unwrap();
    }
    let extra = SkBuff::from_slice(&mut c, b"x").unwrap();
    let fails = ring.enq_fail();
    let extra = ring.enqueue(extra).unwrap_err();
    assert_eq!(ring.enq_fail(), fails + 1);
    drop(extra);
    assert_eq!(p.in_use(), 3);
    drop(ring);
    drop(c);
    assert_eq!(p.in_use(), 0);
}
