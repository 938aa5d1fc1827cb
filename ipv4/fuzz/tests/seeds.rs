//! The seed corpora of every blink fuzz target (`ipv4/fuzz`, `tcp/fuzz`, `udp/fuzz`,
//! `glue/fuzz`), written with the encoder that mirrors the targets' input decoding
//! ([`blink_ipv4_fuzz::Enc`]): a few dozen inputs per target, each a meaningful exchange
//! (a ping, an ARP resolution, a datagram in fragments, a TCP transfer with loss...), from
//! which libFuzzer's mutations start.
//!
//! `cargo test --manifest-path ipv4/fuzz/Cargo.toml --test seeds` checks that the committed
//! seeds are the ones this file writes; with `BLINK_FUZZ_WRITE_SEEDS=1` it (re)writes them
//! (`corpus/<target>/seed-<name>`). The inputs that found bugs are kept beside them as
//! `corpus/<target>/regress-<what>` (each replayed by every run) and left alone here.

use std::path::PathBuf;

use blink_ipv4_fuzz::Enc;

fn e() -> Enc {
    Enc::default()
}

// ---------------------------------------------------------------------------------------------
// Pieces shared by the IPv4-level targets

/// `IpSpec::decode` with mode 0: a valid header from the peer to us.
fn ip_default(e: &mut Enc) {
    e.u8(0);
}

/// `IpSpec::decode` with options (NOP words, then an end of list).
fn ip_options(e: &mut Enc, words: u8) {
    e.u8(2).u8(words);
    let mut o = vec![1u8; words as usize * 4];
    if let Some(l) = o.last_mut() {
        *l = 0;
    }
    e.bytes(&o);
}

/// `IpSpec::decode` with addresses from the tables (`SRC_ADDRS`, `DST_ADDRS` indices).
fn ip_addrs(e: &mut Enc, src: u8, dst: u8) {
    e.u8(1).u8(src).u8(dst);
}

/// `IpSpec::decode` with an id and fragment field.
fn ip_frag(e: &mut Enc, id: u16, frag_off: u16) {
    e.u8(4).u16(id).u16(frag_off);
}

fn echo_body(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    blink_ipv4_fuzz::icmp_msg(8, 0, (id as u32) << 16 | seq as u32, payload)
}

// ---------------------------------------------------------------------------------------------
// ipv4/fuzz

fn eth_arp() -> Vec<(&'static str, Enc)> {
    // op 0: ARP: op sel, sha sel, spa sel, tha sel, tpa sel, mode, [fields by mode].
    // MAC selectors: 0 peer, 1 other, 2 broadcast, 3 multicast, 4 ours. ARP addresses:
    // 0 peer, 1 us, 2 .3, 3 .4, 4 .255, 5 0.0.0.0, 6 bcast, 7 mcast, 8 off-link, 9 .5.
    let arp = |e: &mut Enc, op: u8, sha: u8, spa: u8, tha: u8, tpa: u8, mode: u8| {
        e.u8(0).u8(op).u8(sha).u8(spa).u8(tha).u8(tpa).u8(mode);
    };
    let mut v = Vec::new();
    let mut s = e();
    s.u8(0);
    arp(&mut s, 0, 0, 0, 4, 1, 0);
    v.push(("request-for-us", s));
    let mut s = e();
    s.u8(1); // no static peer: learn it
    arp(&mut s, 0, 0, 0, 4, 1, 0);
    s.u8(5).u8(0); // a ping from the peer: answered from what the request taught
    v.push(("learn-from-request", s));
    let mut s = e();
    s.u8(0);
    s.u8(5).u8(2); // ping from .3: the reply waits for ARP
    s.u8(6).u16(300);
    arp(&mut s, 2, 1, 2, 4, 1, 0); // .3 answers
    v.push(("resolve-then-reply", s));
    let mut s = e();
    s.u8(0);
    s.u8(7).u8(3); // we ping .4
    s.u8(6).u16(2000); // retries run out
    v.push(("resolution-fails", s));
    let mut s = e();
    s.u8(0);
    arp(&mut s, 0, 1, 2, 2, 2, 0); // gratuitous ARP of .3
    arp(&mut s, 2, 1, 2, 4, 1, 0);
    v.push(("gratuitous", s));
    let mut s = e();
    s.u8(0);
    arp(&mut s, 0, 0, 0, 4, 9, 0); // for someone else
    arp(&mut s, 0, 3, 2, 4, 1, 0); // multicast sender MAC
    arp(&mut s, 0, 0, 6, 4, 1, 0); // broadcast sender IP
    arp(&mut s, 0, 0, 1, 4, 1, 0); // our own address claimed
    v.push(("martians", s));
    let mut s = e();
    s.u8(0);
    arp(&mut s, 0, 0, 0, 4, 1, 1);
    s.bytes(&[0, 6, 8, 0, 6, 4]); // hardware type 6
    arp(&mut s, 0, 0, 0, 4, 1, 2);
    s.u8(20); // truncated to 20 bytes
    arp(&mut s, 0, 0, 0, 4, 1, 4); // padded
    v.push(("odd-headers", s));
    let mut s = e();
    s.u8(0);
    s.u8(4).blob(1, &[0xff; 6]);
    s.u8(4)
        .blob(1, &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5, 1, 2, 3]);
    s.u8(4).blob(1, &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]);
    v.push(("raw-frames", s));
    let mut s = e();
    s.u8(4); // table of 4 entries
    for i in 0..6u8 {
        s.u8(5).u8(255).u32(u32::from_be_bytes([10, 0, 0, 10 + i]));
    }
    s.u8(6).u16(5000);
    v.push(("table-full", s));
    let mut s = e();
    s.u8(0);
    arp(&mut s, 2, 1, 2, 4, 1, 0); // reply from .3 nobody asked for
    s.u8(6).u16(30000); // ages
    s.u8(5).u8(2);
    v.push(("unsolicited-reply-ages", s));
    v
}

fn ip_rcv() -> Vec<(&'static str, Enc)> {
    // op 0..3: proto selector ([1, 253, 6, 17, 4, 47, 89, 1]), IpSpec, payload, big, [csum],
    // eth dst, splits.
    let pkt = |e: &mut Enc, psel: u8, spec: &dyn Fn(&mut Enc), payload: &[u8], csum: Option<bool>, splits: &[u16]| {
        e.u8(0).u8(psel);
        spec(e);
        e.blob(1, payload).u8(0);
        if let Some(c) = csum {
            e.bool(c);
        }
        e.u8(0).u8(splits.len() as u8);
        for &s in splits {
            e.u16(s);
        }
    };
    let ping = echo_body(1, 1, b"abcdefgh");
    let mut v = Vec::new();
    let mut s = e();
    s.u8(0);
    pkt(&mut s, 0, &ip_default, &ping, Some(false), &[]);
    v.push(("ping", s));
    let mut s = e();
    s.u8(0);
    pkt(&mut s, 0, &|e| ip_options(e, 3), &ping, Some(false), &[]);
    pkt(&mut s, 1, &|e| ip_options(e, 10), b"probe", None, &[]);
    v.push(("options", s));
    let mut s = e();
    s.u8(0);
    pkt(&mut s, 1, &ip_default, b"to the probe", None, &[]);
    pkt(&mut s, 6, &ip_default, b"unknown protocol", None, &[]);
    pkt(&mut s, 2, &ip_default, &[0; 20], None, &[]);
    v.push(("protocols", s));
    let mut s = e();
    s.u8(2); // raw hook holds clones
    pkt(&mut s, 0, &ip_default, &ping, Some(false), &[]);
    pkt(&mut s, 1, &ip_default, b"cloned", None, &[]);
    pkt(&mut s, 6, &ip_default, b"raw only", None, &[]);
    s.u8(6);
    v.push(("raw-clones", s));
    let mut s = e();
    s.u8(0);
    pkt(&mut s, 1, &|e| ip_frag(e, 7, 0x2000), &[1; 16], None, &[]);
    pkt(&mut s, 1, &|e| ip_frag(e, 7, 2), &[2; 8], None, &[]);
    v.push(("fragments", s));
    let mut s = e();
    s.u8(0);
    pkt(&mut s, 1, &|e| ip_frag(e, 9, 0x2000), &[1; 16], None, &[]);
    s.u8(5).u16(40000); // reassembly times out: ICMP time exceeded
    v.push(("fragment-timeout", s));
    let mut s = e();
    s.u8(0);
    pkt(&mut s, 0, &ip_default, &ping, Some(false), &[10, 30, 40]);
    pkt(&mut s, 1, &ip_default, b"split over mbufs", None, &[14, 16]);
    v.push(("split", s));
    let mut s = e();
    s.u8(0);
    for src in [6u8, 7, 8, 9, 10, 11, 5, 3] {
        pkt(&mut s, 0, &|e| ip_addrs(e, src, 0), &ping, Some(false), &[]);
    }
    for dst in [4u8, 5, 6, 7] {
        pkt(&mut s, 0, &|e| ip_addrs(e, 0, dst), &ping, Some(false), &[]);
    }
    v.push(("addresses", s));
    let mut s = e();
    s.u8(0);
    pkt(
        &mut s,
        0,
        &|e| {
            e.u8(64).u16(0x1234);
        },
        &ping,
        Some(false),
        &[],
    ); // bad checksum
    pkt(
        &mut s,
        0,
        &|e| {
            e.u8(32).u8(0x40).u8(4).u16(100);
        },
        &ping,
        Some(false),
        &[],
    ); // ihl 4
    pkt(
        &mut s,
        0,
        &|e| {
            e.u8(32).u8(0x60).u8(5).u16(36);
        },
        &ping,
        Some(false),
        &[],
    ); // version 6
    pkt(
        &mut s,
        0,
        &|e| {
            e.u8(32).u8(0x40).u8(5).u16(1000);
        },
        &ping,
        Some(false),
        &[],
    ); // too long
    pkt(
        &mut s,
        0,
        &|e| {
            e.u8(32).u8(0x40).u8(5).u16(10);
        },
        &ping,
        Some(false),
        &[],
    ); // shorter than header
    pkt(
        &mut s,
        0,
        &|e| {
            e.u8(32).u8(0x40).u8(15).u16(36);
        },
        &ping,
        Some(false),
        &[],
    ); // ihl past the end
    v.push(("bad-headers", s));
    let mut s = e();
    s.u8(0);
    s.u8(0).u8(0);
    ip_default(&mut s);
    s.blob(1, &echo_body(2, 2, &[0x55; 100]))
        .u8(0xff)
        .u16(3000)
        .bool(true)
        .u8(0)
        .u8(0);
    v.push(("big-ping", s));
    let mut s = e();
    s.u8(1); // no static peer: the answer waits for ARP
    pkt(&mut s, 0, &ip_default, &ping, Some(false), &[]);
    s.u8(5).u16(5000);
    v.push(("answer-needs-arp", s));
    v
}

fn icmp() -> Vec<(&'static str, Enc)> {
    // op 0..3: type sel (TYPES index), code sel, rest, body kind (0 = raw, else quote),
    // [quote: proto sel ([6, 17, 253, 1, 99, 6]), IpSpec, l4 blob, truncate bool, [n]],
    // corrupt byte, outer IpSpec, eth dst.
    let msg = |e: &mut Enc, tsel: u8, code: u8, rest: u32, quote: Option<(u8, &[u8])>, raw: &[u8]| {
        e.u8(0).u8(tsel).u8(code).u32(rest);
        match quote {
            Some((psel, l4)) => {
                e.u8(1).u8(psel);
                ip_default(e);
                e.blob(1, l4).bool(false);
            }
            None => {
                e.u8(0).blob(1, raw);
            }
        }
        e.u8(0);
        ip_default(e);
        e.u8(0);
    };
    let tcp_hdr: &[u8] = &[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let udp_hdr: &[u8] = &[0x17, 0x70, 0, 53, 0, 8, 0, 0];
    let mut v = Vec::new();
    let mut s = e();
    s.u8(0);
    s.u8(4).u16(7).u16(1).blob(1, b"0123456789").u8(0).u8(0).u8(0);
    v.push(("echo", s));
    let mut s = e();
    s.u8(0);
    s.u8(4).u16(0).u16(0).blob(1, &[]).u8(0).u8(0).u8(0);
    v.push(("echo-all-zero", s));
    let mut s = e();
    s.u8(0);
    msg(&mut s, 1, 3, 0, Some((0, tcp_hdr)), &[]);
    msg(&mut s, 2, 3, 0, Some((1, udp_hdr)), &[]);
    msg(&mut s, 3, 2, 0, Some((2, &[0; 8])), &[]);
    v.push(("unreachables", s));
    let mut s = e();
    s.u8(0);
    msg(&mut s, 8, 0, 0, Some((0, tcp_hdr)), &[]);
    msg(&mut s, 10, 0, 0x1400_0000, Some((1, udp_hdr)), &[]);
    msg(&mut s, 5, 1, 0x0a00_0003, Some((0, tcp_hdr)), &[]);
    msg(&mut s, 4, 0, 0, Some((0, tcp_hdr)), &[]);
    v.push(("errors", s));
    let mut s = e();
    s.u8(0);
    s.u8(5).u8(0).u16(1200).u16(1500);
    s.u8(5).u8(1).u16(0).u16(1500);
    s.u8(5).u8(0).u16(100).u16(600);
    v.push(("frag-needed", s));
    let mut s = e();
    s.u8(0);
    msg(&mut s, 1, 3, 0, Some((0, &[1, 2, 3])), &[]); // fewer than 8 bytes
    msg(&mut s, 1, 3, 0, None, &[0x4f, 0, 0, 20]); // quote shorter than its IHL
    msg(&mut s, 1, 3, 0, None, &[]);
    v.push(("short-quotes", s));
    let mut s = e();
    s.u8(0);
    msg(&mut s, 11, 0, 0, None, &[0; 12]); // timestamp
    msg(&mut s, 0, 0, 0x0001_0001, None, b"reply"); // echo reply
    msg(&mut s, 13, 0, 0, None, &[]); // information request
    v.push(("others", s));
    let mut s = e();
    s.u8(4); // small ICMP burst
    s.u8(0).u8(255).u8(99).u8(255).u8(7).u32(0).u8(0).blob(1, &[]).u8(0xee);
    ip_default(&mut s);
    s.u8(0);
    for _ in 0..5 {
        // An echo request whose IP header says protocol 200: protocol unreachable.
        s.u8(0)
            .u8(6)
            .u8(0)
            .u32(0)
            .u8(0)
            .blob(1, b"?")
            .u8(0)
            .u8(16)
            .u8(200)
            .u8(0);
    }
    v.push(("rate-limit", s));
    let mut s = e();
    s.u8(2); // raw socket for ICMP
    s.u8(4).u16(9).u16(9).blob(1, &[7; 64]).u8(0).u8(0).u8(0);
    s.u8(7);
    v.push(("raw-icmp", s));
    v
}

fn tunnel() -> Vec<(&'static str, Enc)> {
    // packet(): t byte (0 ipip, 1 gre, 2 keyed gre, 3 then kind byte), outer mode byte (%4 == 0
    // -> IpSpec), nest byte (%4 == 0 -> nested), [inner: proto sel ([1, 253, 17, 1]), mode byte,
    // blob, [icmp byte (even -> echo), rest u32]], [gre: mode, ptype byte, [key byte, key]...].
    let inner_ping = |e: &mut Enc| {
        e.u8(1).u8(0).u8(1).blob(1, b"inner").u8(0).u32(0x0001_0001);
    };
    let mut v = Vec::new();
    let mut s = e();
    s.u8(0);
    s.u8(0).u8(0).u8(1);
    inner_ping(&mut s);
    s.u8(0).u16(0);
    v.push(("ipip-ping", s));
    let mut s = e();
    s.u8(0);
    s.u8(0).u8(1).u8(1);
    inner_ping(&mut s);
    s.u8(0).u8(1); // gre mode 0, ptype byte
    s.u8(0).u16(0);
    v.push(("gre-ping", s));
    let mut s = e();
    s.u8(0);
    s.u8(0).u8(2).u8(1);
    inner_ping(&mut s);
    s.u8(1).u8(1).u8(1); // key, ptype, key selector (KEY)
    s.u8(0).u16(0);
    v.push(("gre-key-ping", s));
    let mut s = e();
    s.u8(0);
    s.u8(0).u8(1).u8(1);
    inner_ping(&mut s);
    s.u8(3).u8(1).u8(1); // checksum, ptype, right checksum
    s.u8(0).u16(0);
    s.u8(0).u8(1).u8(1);
    inner_ping(&mut s);
    s.u8(3).u8(1).u8(0); // wrong checksum
    s.u8(0).u16(0);
    v.push(("gre-csum", s));
    let mut s = e();
    s.u8(0);
    s.u8(0).u8(2).u8(1);
    inner_ping(&mut s);
    s.u8(4).u8(1).u8(1).u32(42).u8(1); // csum + key + seq: ptype, key, seq, right checksum
    s.u8(0).u16(0);
    v.push(("gre-all-flags", s));
    let mut s = e();
    s.u8(0);
    s.u8(0).u8(0).u8(1).u8(0); // ipip around...
    s.u8(1).u8(1); // ...gre around...
    inner_ping(&mut s);
    s.u8(0).u8(1); // (inner gre)
    s.u8(0).u16(0);
    v.push(("nested", s));
    let mut s = e();
    s.u8(0);
    s.u8(0).u8(2).u8(1);
    inner_ping(&mut s);
    s.u8(1).u8(1).u8(0).u32(99); // wrong key
    s.u8(0).u16(0);
    s.u8(0).u8(1).u8(1);
    inner_ping(&mut s);
    s.u8(7).u16(0x4000).u8(1); // routing bit
    s.u8(0).u16(0);
    s.u8(0).u8(1).u8(1);
    inner_ping(&mut s);
    s.u8(0).u8(0).u16(0x86dd); // not IPv4 inside
    s.u8(0).u16(0);
    v.push(("gre-refused", s));
    let mut s = e();
    s.u8(1); // raw clones of tunnel packets
    s.u8(0).u8(0).u8(1).u8(1).u8(1).u8(1).blob(1, b"probe inside");
    s.u8(0).u16(0);
    s.u8(5);
    v.push(("ipip-probe-raw", s));
    v
}

fn defrag() -> Vec<(&'static str, Enc)> {
    // cfg, n byte, per datagram: id, proto sel ([253, 253, 1, 17]), src byte (%8 != 0 -> peer),
    // len mode (7 -> u16, else u16 % 4000); ops: 0..3 one fragment (d, off/8 u16, len mode,
    // [len], mf mode, options byte, corrupt byte); 4/5 whole (d, size u16, reverse); 6 time.
    let dg = |e: &mut Enc, id: u16, psel: u8, len: u16| {
        e.u16(id).u8(psel).u8(1).u8(0).u16(len);
    };
    let whole = |e: &mut Enc, d: u8, size: u16, rev: bool| {
        e.u8(4).u8(d).u16(size).bool(rev);
    };
    let frag = |e: &mut Enc, d: u8, off8: u16, len: u16, mf: u8| {
        e.u8(0).u8(d).u16(off8).u8(1).u16(len).u8(mf).u8(1).u8(0);
    };
    let mut v = Vec::new();
    let mut s = e();
    s.u8(0).u8(0);
    dg(&mut s, 0x100, 0, 3000);
    whole(&mut s, 0, 1472, false);
    v.push(("in-order", s));
    let mut s = e();
    s.u8(0).u8(0);
    dg(&mut s, 0x101, 0, 3000);
    whole(&mut s, 0, 992, true);
    v.push(("reversed", s));
    let mut s = e();
    s.u8(0).u8(0);
    dg(&mut s, 0x102, 2, 2500);
    whole(&mut s, 0, 592, false);
    v.push(("icmp-echo", s));
    let mut s = e();
    s.u8(0).u8(1);
    dg(&mut s, 0x103, 0, 2000);
    dg(&mut s, 0x104, 0, 2000);
    frag(&mut s, 0, 0, 800, 0);
    frag(&mut s, 1, 0, 800, 0);
    frag(&mut s, 0, 100, 800, 0);
    frag(&mut s, 1, 100, 800, 0);
    frag(&mut s, 0, 200, 400, 1);
    frag(&mut s, 1, 200, 400, 1);
    v.push(("interleaved", s));
    let mut s = e();
    s.u8(0).u8(0);
    dg(&mut s, 0x105, 0, 2000);
    frag(&mut s, 0, 0, 1000, 0);
    frag(&mut s, 0, 0, 1000, 0); // duplicate
    frag(&mut s, 0, 64, 800, 0); // inside: duplicate too
    frag(&mut s, 0, 120, 800, 1);
    v.push(("duplicates", s));
    let mut s = e();
    s.u8(0).u8(0);
    dg(&mut s, 0x106, 0, 2000);
    frag(&mut s, 0, 0, 1000, 0);
    frag(&mut s, 0, 100, 1000, 1); // overlaps the first
    v.push(("overlap", s));
    let mut s = e();
    s.u8(0).u8(0);
    dg(&mut s, 0x107, 0, 2000);
    frag(&mut s, 0, 0, 1000, 0);
    s.u8(6).u16(10000); // 40 s: time exceeded
    v.push(("timeout", s));
    let mut s = e();
    s.u8(2).u8(1); // 16 KiB threshold
    dg(&mut s, 0x108, 0, 3900);
    dg(&mut s, 0x109, 0, 3900);
    whole(&mut s, 0, 8, false); // hundreds of tiny fragments
    whole(&mut s, 1, 1472, false);
    v.push(("evictor", s));
    let mut s = e();
    s.u8(0).u8(0);
    s.u16(0x10a).u8(0).u8(1).u8(7).u16(65000);
    whole(&mut s, 0, 1472, false);
    v.push(("64k", s));
    let mut s = e();
    s.u8(0).u8(0);
    s.u16(0x10b).u8(0).u8(1).u8(7).u16(65530);
    frag(&mut s, 0, 8100, 1400, 1); // past 65,535
    v.push(("ping-of-death", s));
    let mut s = e();
    s.u8(0).u8(0);
    dg(&mut s, 0x10c, 0, 1600);
    s.u8(0).u8(0).u16(0).u8(1).u16(1000).u8(0).u8(0).u8(10).u8(0); // 10 option words
    s.u8(0).u8(0).u16(125).u8(1).u16(600).u8(1).u8(1).u8(0);
    v.push(("options", s));
    let mut s = e();
    s.u8(4).u8(1); // ipfrag_max_dist 4, two datagrams
    dg(&mut s, 0x10d, 0, 2000);
    dg(&mut s, 0x200, 0, 64);
    frag(&mut s, 0, 0, 800, 0);
    for _ in 0..6 {
        frag(&mut s, 1, 0, 8, 0); // other fragments from the same source
    }
    frag(&mut s, 0, 100, 1200, 1);
    v.push(("max-dist", s));
    let mut s = e();
    s.u8(8).u8(0); // raw socket holds the first fragment's clone
    dg(&mut s, 0x10e, 0, 3000);
    whole(&mut s, 0, 1472, false);
    s.u8(7);
    v.push(("raw-shared-header", s));
    let mut s = e();
    s.u8(0).u8(0);
    dg(&mut s, 0x10f, 0, 3000);
    s.u8(0).u8(0).u16(0).u8(0).u8(1).u8(1).u8(0); // one jumbo fragment (chained mbufs)
    v.push(("jumbo", s));
    let mut s = e();
    s.u8(0).u8(0);
    s.u16(0x110).u8(0).u8(1).u8(7).u16(65515);
    // The first fragment with 40 bytes of options, the others with none: each fits in 65,535
    // bytes with its own header, the datagram with the first one's does not.
    s.u8(0).u8(0).u16(0).u8(1).u16(1472).u8(0).u8(0).u8(10).u8(0);
    whole(&mut s, 0, 1464, false);
    v.push(("oversize-first-header", s));
    v
}

// ---------------------------------------------------------------------------------------------
// tcp/fuzz

fn tcp_header() -> Vec<(&'static str, Enc)> {
    let opt = |syn: bool, o: &[u8], rest: &[u8]| {
        let mut s = e();
        s.bool(syn).u8(o.len() as u8).bytes(o).bytes(rest);
        s
    };
    let hdr = |doff: u8, flags: u8, opts: &[u8], payload: &[u8]| {
        let mut h = vec![
            0x9c,
            0x40,
            0,
            80,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            doff << 4,
            flags,
            0xff,
            0xff,
            0,
            0,
            0,
            0,
        ];
        h.extend_from_slice(opts);
        h.extend_from_slice(payload);
        h
    };
    let syn_opts = [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
    let ts = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8];
    let sack = [1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
    vec![
        ("syn", opt(true, &syn_opts, &hdr(10, 2, &syn_opts, b""))),
        ("ts", opt(false, &ts, &hdr(8, 0x10, &ts, b"data"))),
        ("sack", opt(false, &sack, &hdr(10, 0x10, &sack, b""))),
        ("wscale-15", opt(true, &[3, 3, 15, 0], &[])),
        ("eol", opt(true, &[2, 4, 0, 0, 0, 3, 3, 7], &[])),
        (
            "bad-lengths",
            opt(true, &[2, 3, 1, 4, 3, 8, 1], &hdr(5, 0x18, b"", b"x")),
        ),
        ("doff-lies", opt(false, &[], &hdr(15, 0x10, &[], b"short"))),
        ("sack-5", opt(false, &[5, 42], &[])),
    ]
}

/// tcp_conn steps. The header: c1, c2, mss u16, wscale, isn u32.
struct Tcp(Enc);

impl Tcp {
    fn new(c1: u8, c2: u8) -> Tcp {
        let mut e = e();
        e.u8(c1).u8(c2).u16(1460 - 536).u8(7).u32(1_000_000);
        Tcp(e)
    }
    /// A segment: flags sel, seq mode, [seq], ack mode, [ack], win mode, [win], opts mode,
    /// [opts], plen mode, [plen], doff byte, bad byte.
    #[allow(clippy::too_many_arguments)]
    fn seg(&mut self, flags: u8, seq: u8, ack: u8, win: u8, opts: u8, plen: Option<u16>) -> &mut Self {
        let e = &mut self.0;
        e.u8(0).u8(flags).u8(seq);
        if (4..=6).contains(&seq) {
            e.u16(3000);
        } else if seq == 7 {
            e.u16(1);
        }
        e.u8(ack);
        if ack == 5 {
            e.u16(100);
        } else if ack == 6 {
            e.u32(12345);
        }
        e.u8(win);
        if win == 7 {
            e.u16(1000);
        }
        e.u8(opts);
        if opts == 4 {
            e.u8(0).u16(0).u16(1000);
        } else if opts == 5 {
            e.u8(0);
        } else if opts == 6 {
            e.u32(0).u32(0);
        }
        match plen {
            None => {
                e.u8(0);
            }
            Some(n) => {
                e.u8(4).u16(n);
            }
        }
        e.u8(0).u8(0);
        self
    }
    fn send(&mut self, n: u16) -> &mut Self {
        self.0.u8(7).u16(n);
        self
    }
    fn recv(&mut self) -> &mut Self {
        self.0.u8(9);
        self
    }
    fn wait(&mut self, ms: u16) -> &mut Self {
        self.0.u8(12).u8(0).u16(ms);
        self
    }
    fn op(&mut self, op: u8) -> &mut Self {
        self.0.u8(op);
        self
    }
}

fn tcp_conn() -> Vec<(&'static str, Enc)> {
    // Flags selectors: 0 ACK, 5 ACK|PSH, 8 ACK|FIN, 9 RST, 11 SYN. Seq modes: 0 next, 4 ahead,
    // 5 behind, 6 anywhere, 7 near the ISN. Ack modes: 0 stack's next, 5 near, 6 anywhere.
    let mut v = Vec::new();
    let mut t = Tcp::new(0, 0);
    t.seg(5, 0, 0, 0, 0, Some(1000))
        .recv()
        .send(3000)
        .wait(50)
        .seg(0, 0, 0, 0, 0, None)
        .wait(300);
    v.push(("passive-echo", t.0));
    let mut t = Tcp::new(1, 0);
    t.send(5000)
        .wait(20)
        .seg(0, 0, 0, 0, 0, None)
        .seg(5, 0, 0, 0, 0, Some(500))
        .recv();
    v.push(("active-transfer", t.0));
    let mut t = Tcp::new(0, 0);
    t.seg(5, 4, 0, 0, 0, Some(1000)).seg(5, 0, 0, 0, 0, Some(1000)).recv();
    v.push(("out-of-order", t.0));
    let mut t = Tcp::new(0, 0);
    t.send(8000)
        .wait(5)
        .seg(0, 0, 7, 0, 4, None)
        .seg(0, 0, 7, 0, 4, None)
        .seg(0, 0, 7, 0, 4, None)
        .wait(500);
    v.push(("sack-recovery", t.0));
    let mut t = Tcp::new(0x24, 0); // no SACK, no timestamps
    t.send(8000)
        .wait(5)
        .seg(0, 0, 7, 0, 7, None)
        .seg(0, 0, 7, 0, 7, None)
        .seg(0, 0, 7, 0, 7, None)
        .wait(500);
    v.push(("reno-dupacks", t.0));
    let mut t = Tcp::new(0, 0);
    t.send(3000).wait(30000).seg(0, 0, 0, 0, 0, None);
    v.push(("rto-backoff", t.0));
    let mut t = Tcp::new(0, 0);
    t.seg(0, 0, 0, 6, 0, None)
        .send(3000)
        .wait(10000)
        .seg(0, 0, 0, 0, 0, None);
    v.push(("zero-window", t.0));
    let mut t = Tcp::new(0x10, 0); // small buffers
    t.seg(5, 0, 0, 0, 0, Some(1400))
        .seg(5, 0, 0, 0, 0, Some(1400))
        .seg(5, 0, 0, 0, 0, Some(1400))
        .seg(5, 0, 0, 0, 0, Some(1400))
        .recv();
    v.push(("small-rcvbuf", t.0));
    let mut t = Tcp::new(0, 0);
    t.seg(8, 0, 0, 0, 0, Some(10)).recv().op(11).wait(100);
    v.push(("peer-fin", t.0));
    let mut t = Tcp::new(0, 0);
    t.op(10).wait(10).seg(8, 0, 0, 0, 0, None).wait(3000);
    v.push(("our-fin-first", t.0));
    let mut t = Tcp::new(0, 0);
    t.seg(9, 0, 0, 0, 0, None);
    v.push(("rst", t.0));
    let mut t = Tcp::new(0, 0);
    t.seg(9, 4, 0, 0, 0, None)
        .seg(11, 6, 0, 0, 0, None)
        .seg(0, 6, 6, 0, 0, Some(100));
    v.push(("blind-attacks", t.0));
    let mut t = Tcp::new(0, 0);
    t.seg(0, 0, 0, 0, 6, None).seg(5, 0, 0, 0, 6, Some(10));
    v.push(("paws", t.0));
    let mut t = Tcp::new(0, 4); // keepalive
    t.wait(6000).wait(2000).wait(2000);
    v.push(("keepalive", t.0));
    let mut t = Tcp::new(0, 0);
    t.send(4000).op(14).u8x(0).u16x(1000).bool_x(true).wait(300);
    v.push(("frag-needed", t.0));
    let mut t = Tcp::new(0, 0);
    t.op(11)
        .seg(8, 0, 0, 0, 0, None)
        .wait(500)
        .seg(11, 7, 0, 0, 0, None)
        .op(15);
    v.push(("timewait-syn", t.0));
    v
}

impl Tcp {
    fn u8x(&mut self, v: u8) -> &mut Self {
        self.0.u8(v);
        self
    }
    fn u16x(&mut self, v: u16) -> &mut Self {
        self.0.u16(v);
        self
    }
    fn bool_x(&mut self, v: bool) -> &mut Self {
        self.0.bool(v);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// udp/fuzz

fn udp() -> Vec<(&'static str, Enc)> {
    // Datagram: op 0, IpSpec, bcast byte (%4 == 0 -> bcast sel), sport sel, dport sel (PORTS
    // index: 0 53, 1 54, 2 5000, 3 67, 4 9), blob, big byte, len mode, csum mode, eth dst,
    // split u16. Read: op 5, socket, bool (full buffer) or size.
    let dgram = |e: &mut Enc, dsel: u8, payload: &[u8], len_mode: u8, csum_mode: u8| {
        e.u8(0);
        ip_default(e);
        e.u8(1).u8(0).u8(dsel).blob(1, payload).u8(0).u8(len_mode);
        if len_mode == 6 {
            e.u16(200);
        }
        e.u8(csum_mode);
        if csum_mode == 7 {
            e.u16(1);
        }
        e.u8(0).u16(0);
    };
    let read = |e: &mut Enc, sock: u8| {
        e.u8(5).u8(sock).bool(true);
    };
    let mut v = Vec::new();
    let mut s = e();
    s.u8(0);
    dgram(&mut s, 0, b"query", 0, 0);
    read(&mut s, 0);
    v.push(("to-53", s));
    let mut s = e();
    s.u8(0);
    dgram(&mut s, 4, b"nobody", 0, 0);
    v.push(("port-unreachable", s));
    let mut s = e();
    s.u8(0);
    s.u8(0);
    ip_default(&mut s);
    s.u8(0)
        .u8(0)
        .u8(2)
        .u8(3)
        .blob(1, b"dhcp")
        .u8(0)
        .u8(0)
        .u8(0)
        .u8(0)
        .u16(0);
    read(&mut s, 3);
    v.push(("broadcast-67", s));
    let mut s = e();
    s.u8(0);
    dgram(&mut s, 2, b"connected", 0, 0);
    read(&mut s, 2);
    read(&mut s, 4);
    v.push(("connected-and-reuse", s));
    let mut s = e();
    s.u8(0);
    dgram(&mut s, 0, b"no checksum", 0, 5);
    dgram(&mut s, 0, b"bad checksum", 0, 7);
    dgram(&mut s, 0, b"length lies", 6, 0);
    dgram(&mut s, 0, b"length short", 7, 0);
    read(&mut s, 0);
    read(&mut s, 0);
    v.push(("bad-datagrams", s));
    let mut s = e();
    s.u8(0);
    dgram(&mut s, 1, b"0123456789", 0, 0);
    s.u8(5).u8(1).u8(0).u8(4); // read into 4 bytes: truncated
    v.push(("truncated-read", s));
    let mut s = e();
    s.u8(1); // small rcvbuf
    for _ in 0..6 {
        dgram(&mut s, 0, &[0x42; 200], 0, 0);
    }
    read(&mut s, 0);
    v.push(("rcvbuf-full", s));
    let mut s = e();
    s.u8(0);
    s.u8(6).u8(2).u16(100).bool(true);
    s.u8(6).u8(0).u16(2000).u8(0).u16(7777);
    s.u8(8).u8(0).u16(0);
    s.u8(6).u8(2).u16(10).bool(true);
    v.push(("send-and-error", s));
    let mut s = e();
    s.u8(0);
    s.u8(7).u8(0).u8(0);
    dgram(&mut s, 0, b"after reopen", 0, 0);
    read(&mut s, 4);
    v.push(("close-reopen", s));
    let mut s = e();
    s.u8(0);
    s.u8(0);
    ip_default(&mut s);
    s.u8(1)
        .u8(0)
        .u8(0)
        .blob(1, &[7; 255])
        .u8(0xbb)
        .u16(5000)
        .u8(0)
        .u8(0)
        .u8(0)
        .u16(600);
    read(&mut s, 0);
    v.push(("big-split", s));
    v
}

// ---------------------------------------------------------------------------------------------
// glue/fuzz

fn whole_stack() -> Vec<(&'static str, Enc)> {
    // Steps: 0..4 a packet (kind byte: 0..2 TCP, 3 UDP, 4 ICMP, 5 raw 253, 6.. IpSpec), then
    // an eth byte; 5 through the tunnel; 6 in fragments; 7 reflect; 8 ARP or bytes; 9 app;
    // 10 time; 11 accept.
    let tcp_data = |e: &mut Enc, conn: u8, n: u16| {
        // conn, flags (ACK|PSH), seq mode 0, ack mode 0, win, opts (TS), plen.
        e.u8(0).u8(conn).u8(1).u8(0).u8(0).u8(1).bool(true).u8(2).u16(n).u16(0);
    };
    let udp = |e: &mut Enc, payload: &[u8]| {
        e.u8(3).u8(0).blob(1, payload).u16(5353).bool(true);
    };
    let ping = |e: &mut Enc| {
        e.u8(4).bool(true).blob(1, b"ping!").u32(0x0001_0002);
    };
    let mut v = Vec::new();
    let mut s = e();
    s.u8(0);
    s.u8(0);
    tcp_data(&mut s, 0, 500);
    s.u8(1);
    s.u8(0);
    tcp_data(&mut s, 1, 300);
    s.u8(1);
    s.u8(10).u16(100);
    v.push(("tcp-echo", s));
    let mut s = e();
    s.u8(0);
    s.u8(0);
    udp(&mut s, b"hello");
    s.u8(1);
    s.u8(0);
    ping(&mut s);
    s.u8(1);
    s.u8(0).u8(5).blob(1, b"raw").u8(1);
    v.push(("udp-ping-raw", s));
    let mut s = e();
    s.u8(0);
    s.u8(5);
    ping(&mut s);
    s.u8(5);
    udp(&mut s, b"tunnelled");
    v.push(("tunnel", s));
    let mut s = e();
    s.u8(0);
    s.u8(6);
    udp(&mut s, &[9; 200]);
    s.u8(10).bool(false).u16(7);
    s.u8(6);
    tcp_data(&mut s, 0, 1200);
    s.u8(20).bool(true).u16(8);
    v.push(("fragments", s));
    let mut s = e();
    s.u8(0);
    s.u8(0);
    ping(&mut s);
    s.u8(1);
    s.u8(7).u8(0).u16(20).u8(1);
    s.u8(7).u8(1).u16(40).u8(0x80);
    v.push(("reflect", s));
    let mut s = e();
    s.u8(0);
    s.u8(9).u8(0).u8(0).u16(3000);
    s.u8(10).u16(1000);
    s.u8(9).u8(1).u8(3);
    s.u8(0);
    s.u8(4).bool(false).u8(0).u8(0).u16(1000);
    s.u8(1);
    v.push(("app-send-close-icmp", s));
    let mut s = e();
    s.u8(0);
    s.u8(8).bool(true).u8(0).u8(0);
    s.u8(8).bool(false).blob(1, &[0xff; 14]);
    s.u8(0);
    s.u8(7).u8(0x45);
    ip_default(&mut s);
    s.blob(1, b"anything").u8(0);
    v.push(("arp-and-junk", s));
    let mut s = e();
    s.u8(1); // small buffers
    for _ in 0..4 {
        s.u8(0);
        tcp_data(&mut s, 0, 1400);
        s.u8(1);
    }
    s.u8(10).u16(5000);
    v.push(("small-buffers", s));
    v
}

// ---------------------------------------------------------------------------------------------

fn targets() -> Vec<(&'static str, &'static str, Vec<(&'static str, Enc)>)> {
    vec![
        ("ipv4", "eth_arp", eth_arp()),
        ("ipv4", "ip_rcv", ip_rcv()),
        ("ipv4", "icmp", icmp()),
        ("ipv4", "tunnel", tunnel()),
        ("ipv4", "defrag", defrag()),
        ("tcp", "tcp_header", tcp_header()),
        ("tcp", "tcp_conn", tcp_conn()),
        ("udp", "udp", udp()),
        ("glue", "whole_stack", whole_stack()),
    ]
}

fn corpus_dir(krate: &str, target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(krate)
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn seeds_are_current() {
    let write = std::env::var("BLINK_FUZZ_WRITE_SEEDS").is_ok_and(|v| v == "1");
    for (krate, target, seeds) in targets() {
        let dir = corpus_dir(krate, target);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            for f in std::fs::read_dir(&dir).unwrap() {
                let p = f.unwrap().path();
                if p.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        for (name, e) in seeds {
            let p = dir.join(format!("seed-{name}"));
            if write {
                std::fs::write(&p, &e.0).unwrap();
            } else {
                let got = std::fs::read(&p).unwrap_or_else(|_| panic!("{} missing: rewrite the seeds", p.display()));
                assert_eq!(got, e.0, "{} is stale: rewrite the seeds", p.display());
            }
        }
    }
}
