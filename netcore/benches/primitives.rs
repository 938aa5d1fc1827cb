//! criterion micro-benchmarks of the primitives every packet uses, so a regression in one
//! shows as a number: skb alloc + free, a buffer freed by another core's cache, push/pull, clone, checksums, Toeplitz + RETA, timer
//! arm/cancel. `cargo bench -p blink-netcore --bench primitives` (figures only; nothing here
//! asserts a time).

use std::hint::black_box;

use blink_netcore::checksum::{csum_fold, csum_partial, ip_fast_csum};
use blink_netcore::mbuf::{Mempool, MempoolConfig};
use blink_netcore::rss::{hash2cpu, Reta, Toeplitz};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::timer::Timers;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn pool() -> Mempool {
    Mempool::new(&MempoolConfig {
        name: "bench".into(),
        n: 4096,
        ..Default::default()
    })
    .expect("pool")
}

fn skb(c: &mut Criterion) {
    let p = pool();
    let mut cache = p.cache();
    c.bench_function("skb_alloc_free", |b| {
        b.iter(|| {
            let s = SkBuff::alloc(&mut cache).expect("mbuf");
            black_box(&s);
            drop(s);
        })
    });
    // A buffer allocated by one core's cache and freed by another (the peer stack's frame
    // on the in-memory wire, a re-injected packet): the ordinary release (a locked push and
    // a locked discharge per buffer) against the freeing cache's deferred batch.
    let mut other = p.cache();
    c.bench_function("mbuf_cross_cache_release", |b| {
        b.iter(|| {
            let m = other.alloc().expect("mbuf");
            drop(black_box(m));
        })
    });
    c.bench_function("mbuf_cross_cache_free_deferred", |b| {
        b.iter(|| {
            let m = other.alloc().expect("mbuf");
            cache.free(black_box(m));
        })
    });
    c.bench_function("skb_push_pull_54", |b| {
        let mut s = SkBuff::alloc(&mut cache).expect("mbuf");
        s.skb_put(64).expect("room");
        b.iter(|| {
            // Ethernet + IPv4 + TCP headers on, then off again, as transmit and receive do.
            black_box(s.skb_push(54).expect("headroom"));
            black_box(s.skb_pull(54));
        })
    });
    c.bench_function("skb_clone_free", |b| {
        let mut s = SkBuff::alloc(&mut cache).expect("mbuf");
        s.skb_put(1460).expect("room");
        b.iter(|| {
            let c = s.skb_clone(&mut cache).expect("mbuf");
            black_box(&c);
            drop(c);
        })
    });
}

fn checksum(c: &mut Criterion) {
    let data: Vec<u8> = (0..1500u32).map(|i| (i * 7) as u8).collect();
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(1500));
    g.bench_function("csum_partial_1500", |b| {
        b.iter(|| csum_fold(csum_partial(black_box(&data), 0)))
    });
    g.finish();
    let hdr = [
        0x45u8, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    c.bench_function("ip_fast_csum_20", |b| b.iter(|| ip_fast_csum(black_box(&hdr))));
}

fn rss(c: &mut Criterion) {
    let t = Toeplitz::default();
    let reta = Reta::new(2).expect("reta");
    let mut port = 1024u16;
    c.bench_function("toeplitz_l4_and_reta", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            let h = t.hash_ipv4_l4([10, 0, 0, 1], [10, 0, 0, 2], black_box(port), 80);
            hash2cpu(&reta, h)
        })
    });
}

struct Ctx {
    timers: Timers<Ctx>,
}

fn noop(_: &mut Ctx, _: u64) {}

fn timers(c: &mut Criterion) {
    let mut ctx = Ctx { timers: Timers::new(0) };
    let ids: Vec<_> = (0..1024).map(|i| ctx.timers.timer_setup(noop, i)).collect();
    let mut i = 0usize;
    c.bench_function("mod_timer_del_timer", |b| {
        b.iter(|| {
            let id = ids[i & 1023];
            i += 1;
            // A retransmission timer armed 200 ms out and cancelled by the ACK.
            ctx.timers.mod_timer(id, 200 + (i as u64 & 63));
            ctx.timers.del_timer(id)
        })
    });
}

criterion_group!(benches, skb, checksum, rss, timers);
criterion_main!(benches);
