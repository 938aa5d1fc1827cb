//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Linux: `csum_partial()` (arch/x86/lib/csum-partial_64.c), `csum_fold()`,
//! `ip_fast_csum()`, `csum_tcpudp_magic()` (include/asm-generic/checksum.h),
//! `csum_replace2()`/`csum_replace4()` (include/net/checksum.h).
//!
//! # Conventions
//!
//! * Every 16-bit value here is the *host* value of a big-endian (network order)
//!   word: a checksum field is read with `u16::from_be_bytes` and written with
//!   `to_be_bytes`, exactly like any other header field. (Linux sums in native
//!   order and keeps `__sum16` in network order; the ones'-complement sum is
//!   byte-order independent, so both give the same bytes on the wire.)
//! * A partial sum (`u32`, Linux `__wsum`) is an *unfolded* ones'-complement
//!   accumulator: only its value modulo `0xffff` matters. Feed it back into
//!   [`csum_partial`], combine two with [`csum_add`], and turn it into the value
//!   to store with [`csum_fold`].
//! * [`csum_fold`] returns the complemented sum. Run over data whose checksum
//!   field is already filled in, it yields `0` when the checksum is correct.
//!
//! # Chaining segments
//!
//! `csum_partial(b, csum_partial(a, 0))` equals the one-shot sum of `a ++ b`
//! only when `a.len()` is even: an odd-length segment leaves its last byte as
//! the high half of a 16-bit word whose low half is the first byte of the next
//! segment. Use [`Csum`] (or [`csum_block_add`] with the byte offset) to chain
//! segments of arbitrary length, e.g. the mbufs of an skb's frag list.

/// Adds two partial sums with end-around carry.
///
/// Linux: `csum_add()` in include/net/checksum.h.
#[inline]
pub fn csum_add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + carry as u32
}

/// Adds the partial sum `csum2` of a block that starts `offset` bytes into the
/// data summed by `csum`.
///
/// A block at an odd offset has its bytes in the opposite halves of the 16-bit
/// words; ones'-complement sums commute with byte swapping, so rotating the
/// 32-bit partial sum by 8 bits puts it back in place.
///
/// Linux: `csum_block_add()` in include/net/checksum.h.
#[inline]
pub fn csum_block_add(csum: u32, csum2: u32, offset: usize) -> u32 {
    if offset & 1 == 1 {
        csum_add(csum, csum2.rotate_right(8))
    } else {
        csum_add(csum, csum2)
    }
}

/// Folds a 64-bit ones'-complement accumulator to 32 bits (value kept mod 0xffff).
#[inline]
fn fold64(acc: u64) -> u32 {
    let s = (acc & 0xffff_ffff) + (acc >> 32); // <= 0x1_ffff_fffe
    let s = (s & 0xffff_ffff) + (s >> 32); // <= 0xffff_ffff
    s as u32
}

/// Bytes summed per block: each 8-byte word adds at most 2 * (2^32 - 1) to a u64 lane, so
/// 2^30 bytes (2^27 words) cannot overflow it. Only buffers past 1 GiB take a second block.
const BLOCK: usize = 1 << 30;

/// Ones'-complement sum of `data` as little-endian 16-bit words, unfolded (value mod 0xffff).
///
/// Each 8-byte little-endian load is split into its two 32-bit halves, both added to a u64
/// with no carry handling (a 64-bit lane cannot overflow within a block, see [`BLOCK`]); two
/// independent accumulators let the compiler vectorize the loop (mask, shift, two adds per
/// 16 bytes with SSE2). The tail is read as one 4-, 2- and 1-byte load each, never copied:
/// short buffers (headers, 64-byte payloads) are most of the calls.
#[inline(always)]
fn sum_le(data: &[u8]) -> u64 {
    // Eight u64 lanes, one per 32-bit word of a 32-byte chunk: the compiler turns the inner
    // loop into vector loads, zero-extending unpacks and 64-bit adds.
    let mut lanes = [0u64; 8];
    let mut words = data.chunks_exact(32);
    for w in &mut words {
        for (i, l) in lanes.iter_mut().enumerate() {
            *l += u32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]) as u64;
        }
    }
    let mut acc: u64 = lanes.iter().sum();
    let mut t = words.remainder();
    while t.len() >= 8 {
        let x = u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]);
        acc += (x & 0xffff_ffff) + (x >> 32);
        t = &t[8..];
    }
    if t.len() >= 4 {
        acc += u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as u64;
        t = &t[4..];
    }
    if t.len() >= 2 {
        acc += u16::from_le_bytes([t[0], t[1]]) as u64;
        t = &t[2..];
    }
    // Zero padding on the right is exactly RFC 1071's odd-byte rule (the low byte of a
    // little-endian word).
    if let Some(&last) = t.first() {
        acc += last as u64;
    }
    acc
}

/// Buffers shorter than this take `sum_le_short`: headers and small payloads (a 20-byte IP
/// header, a 32-byte TCP header, a 64-byte request) are most of the calls, and for them the
/// vector loop's setup and eight-lane reduction cost more than the words they sum.
const SHORT_MAX_LEN: usize = 128;

/// `sum_le` for short buffers: 64-bit words added with end-around carry (an add and an
/// add-with-carry each), so the result is the ones'-complement sum modulo 2^64 - 1, which
/// 0xffff divides. The tail is read as one 4-, 2- and 1-byte load each.
#[inline(always)]
fn sum_le_short(data: &[u8]) -> u64 {
    #[inline(always)]
    fn add_c(acc: u64, x: u64) -> u64 {
        let (s, carry) = acc.overflowing_add(x);
        s + carry as u64
    }
    #[inline(always)]
    fn word(w: &[u8], i: usize) -> u64 {
        u64::from_le_bytes([
            w[i],
            w[i + 1],
            w[i + 2],
            w[i + 3],
            w[i + 4],
            w[i + 5],
            w[i + 6],
            w[i + 7],
        ])
    }
    let mut acc: u64 = 0;
    // Four words per turn: the loop's own count, compare and branch are paid once per 32 bytes
    // (a 32-byte TCP header is one turn, a 64-byte payload two).
    let mut quads = data.chunks_exact(32);
    for w in &mut quads {
        acc = add_c(acc, word(w, 0));
        acc = add_c(acc, word(w, 8));
        acc = add_c(acc, word(w, 16));
        acc = add_c(acc, word(w, 24));
    }
    let mut words = quads.remainder().chunks_exact(8);
    for w in &mut words {
        acc = add_c(acc, word(w, 0));
    }
    let mut t = words.remainder();
    let mut tail: u64 = 0;
    if t.len() >= 4 {
        tail = u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as u64;
        t = &t[4..];
    }
    if t.len() >= 2 {
        tail += u16::from_le_bytes([t[0], t[1]]) as u64;
        t = &t[2..];
    }
    if let Some(&last) = t.first() {
        tail += last as u64;
    }
    add_c(acc, tail)
}

/// Payloads at least this long take the AVX2 build of `sum_le` where the CPU has it.
const AVX2_MIN_LEN: usize = 256;

/// `sum_le`, compiled for AVX2 (256-bit zero-extending loads and adds: half the instructions
/// of the SSE2 baseline per byte).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_le_avx2(data: &[u8]) -> u64 {
    sum_le(data)
}

/// `sum_le` in the widest form the CPU runs: headers and small payloads stay on the baseline
/// code (the feature check would cost more than it saves), payloads of a few hundred bytes
/// and up use AVX2 when `is_x86_feature_detected!` (one cached load) finds it.
#[inline]
fn sum_le_fast(data: &[u8]) -> u64 {
    if data.len() < SHORT_MAX_LEN {
        return sum_le_short(data);
    }
    #[cfg(target_arch = "x86_64")]
    if data.len() >= AVX2_MIN_LEN && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { sum_le_avx2(data) };
    }
    sum_le(data)
}

/// Accumulates the ones'-complement sum of `data` (as big-endian 16-bit words,
/// an odd trailing byte padded with zero) onto the partial sum `sum`.
///
/// Returns an unfolded partial sum; see the module docs for chaining segments
/// of odd length.
///
/// How: the data is summed as little-endian words with plain 64-bit adds (see `sum_le`).
/// Since 2^32 ≡ 1 and 2^16 ≡ 1 (mod 0xffff), that is the ones'-complement sum of the
/// byte-swapped 16-bit words, so the folded result is swapped back once at the end
/// (RFC 1071 section 2(B), byte-order independence).
///
/// Linux: `csum_partial()` in arch/x86/lib/csum-partial_64.c.
#[inline]
pub fn csum_partial(data: &[u8], sum: u32) -> u32 {
    let acc = if data.len() <= BLOCK {
        fold64(sum_le_fast(data))
    } else {
        data.chunks(BLOCK)
            .fold(0, |acc, block| csum_add(acc, fold64(sum_le(block))))
    };
    let le = (acc & 0xffff) + (acc >> 16); // <= 0x1_fffe
    let le = (le & 0xffff) + (le >> 16); // <= 0xffff
    csum_add((le as u16).swap_bytes() as u32, sum)
}

/// Folds a partial sum to 16 bits and complements it: the value to store in
/// a checksum field (or `0` when verifying data that includes a correct one).
///
/// Linux: `csum_fold()` in include/asm-generic/checksum.h.
#[inline]
pub fn csum_fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Checksum of an IPv4 header (pass exactly `ihl * 4` bytes).
///
/// With the checksum field zeroed this returns the value to store; over a
/// header whose checksum field is filled in it returns `0` exactly when the
/// checksum is valid.
///
/// Linux: `ip_fast_csum()` in arch/x86/include/asm/checksum_64.h (which takes
/// the header length in 32-bit words instead of a slice).
#[inline]
pub fn ip_fast_csum(hdr: &[u8]) -> u16 {
    // The option-less header of nearly every packet: five 32-bit words, summed in one
    // expression as Linux's ihl=5 case does (no length dispatch or loop).
    if let Ok(w) = <&[u8; 20]>::try_from(hdr) {
        let word = |i: usize| u32::from_le_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]) as u64;
        let le = fold64(word(0) + word(4) + word(8) + word(12) + word(16));
        let le = (le & 0xffff) + (le >> 16);
        let le = (le & 0xffff) + (le >> 16);
        return !(le as u16).swap_bytes();
    }
    csum_fold(csum_partial(hdr, 0))
}

/// Partial sum of the IPv4 pseudo-header (RFC 793 / RFC 768) plus `sum`:
/// source and destination address, protocol and the L4 length.
///
/// Linux: `csum_tcpudp_nofold()` in include/asm-generic/checksum.h.
#[inline]
pub fn csum_tcpudp_nofold(src: [u8; 4], dst: [u8; 4], len: u16, proto: u8, sum: u32) -> u32 {
    let acc = sum as u64 + u32::from_be_bytes(src) as u64 + u32::from_be_bytes(dst) as u64 + proto as u64 + len as u64;
    fold64(acc)
}

/// Partial sum of the IPv4 pseudo-header alone; feed it to [`csum_partial`]
/// or [`Csum::with_sum`] before the TCP/UDP header and payload.
#[inline]
pub fn pseudo_header_ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    csum_tcpudp_nofold(src, dst, len, proto, 0)
}

/// Folded TCP/UDP checksum: pseudo-header plus the partial sum `sum` of the
/// L4 header and payload.
///
/// Computed with the checksum field zeroed, the result is the value to store
/// (UDP must then send `0` as `0xffff`, Linux `CSUM_MANGLED_0`); computed over
/// a segment whose field is filled in, it is `0` when the checksum is valid.
///
/// Linux: `csum_tcpudp_magic()` in include/asm-generic/checksum.h.
#[inline]
pub fn csum_tcpudp_magic(src: [u8; 4], dst: [u8; 4], len: u16, proto: u8, sum: u32) -> u16 {
    csum_fold(csum_tcpudp_nofold(src, dst, len, proto, sum))
}

/// Updates checksum field value `check` after a 16-bit word of the covered
/// data changed from `old` to `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
///
/// Linux: `csum_replace2()` in include/net/checksum.h.
#[inline]
pub fn csum_replace2(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check) as u32 + (!old) as u32 + new as u32;
    csum_fold(sum)
}

/// Like [`csum_replace2`] for a 32-bit word (e.g. an IPv4 address, as
/// `u32::from(addr)`), which must start at an even offset of the covered data.
///
/// Linux: `csum_replace4()` in include/net/checksum.h.
#[inline]
pub fn csum_replace4(check: u16, old: u32, new: u32) -> u16 {
    let sum =
        (!check) as u64 + (!old >> 16) as u64 + (!old & 0xffff) as u64 + (new >> 16) as u64 + (new & 0xffff) as u64;
    csum_fold(fold64(sum))
}

/// Checksum accumulator over a sequence of segments of any length (an skb's
/// linear part and frags), tracking whether the next segment starts at an odd
/// byte offset.
///
/// ```
/// # use blink_netcore::checksum::{csum_fold, csum_partial, Csum};
/// let data = b"an odd-length example!";
/// let mut c = Csum::new();
/// c.add(&data[..7]);
/// c.add(&data[7..]);
/// assert_eq!(c.finish(), csum_fold(csum_partial(data, 0)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Csum {
    /// Ones'-complement sum (mod 2^64 - 1) of the data as little-endian 16-bit words, never
    /// folded until the end: each segment costs its words and one add-with-carry.
    acc: u64,
    odd: bool,
}

/// `a + b` with end-around carry: the sum modulo 2^64 - 1, which 0xffff divides.
#[inline(always)]
fn add64(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + carry as u64
}

impl Csum {
    /// An empty accumulator.
    pub const fn new() -> Self {
        Csum { acc: 0, odd: false }
    }

    /// An accumulator starting from a partial sum, e.g. [`pseudo_header_ipv4`].
    /// The byte offset starts even.
    pub const fn with_sum(sum: u32) -> Self {
        // `sum` counts big-endian words; the accumulator little-endian ones. Swapping the
        // bytes of a 16-bit word multiplies it by 2^8 mod 0xffff, and rotating a 64-bit
        // ones'-complement value left by 8 multiplies it by 2^8 mod 2^64 - 1.
        Csum {
            acc: (sum as u64).rotate_left(8),
            odd: false,
        }
    }

    /// Adds the next segment.
    #[inline]
    pub fn add(&mut self, data: &[u8]) {
        let part = if data.len() <= BLOCK {
            sum_le_fast(data)
        } else {
            data.chunks(BLOCK)
                .fold(0, |acc, block| add64(acc, fold64(sum_le(block)) as u64))
        };
        // A segment at an odd offset has its bytes in the other halves of the 16-bit words:
        // a byte swap of every word, i.e. a multiplication by 2^8 (see `with_sum`).
        self.acc = add64(self.acc, if self.odd { part.rotate_left(8) } else { part });
        self.odd ^= data.len() & 1 == 1;
    }

    /// The unfolded partial sum so far (Linux `__wsum`, e.g. for `skb->csum`).
    #[inline]
    pub fn sum(&self) -> u32 {
        let le = fold64(self.acc);
        let le = (le & 0xffff) + (le >> 16);
        let le = (le & 0xffff) + (le >> 16);
        (le as u16).swap_bytes() as u32
    }

    /// Folded and complemented: the value to store, or `0` when verifying.
    #[inline]
    pub fn finish(&self) -> u16 {
        csum_fold(self.sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward RFC 1071 reference: 16-bit words, end-around carry.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u16::from_be_bytes([data[i], data[i + 1]]) as u32;
            sum = (sum & 0xffff) + (sum >> 16);
            i += 2;
        }
        if i < data.len() {
            sum += (data[i] as u32) << 8;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// Deterministic pseudo-random bytes (xorshift), no extra dependency.
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    // Wikipedia's example IPv4 header, checksum 0xb861.
    static IPV4_HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
        0x00, 0xc7,
    ];

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let sum = csum_partial(&data, 0);
        assert_eq!(!csum_fold(sum), 0xddf2);
        assert_eq!(csum_fold(sum), 0x220d);
        assert_eq!(reference(&data), 0x220d);
    }

    #[test]
    fn ipv4_header_known() {
        assert_eq!(ip_fast_csum(&IPV4_HDR), 0, "valid header verifies to 0");
        let mut hdr = IPV4_HDR;
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(ip_fast_csum(&hdr), 0xb861);
        hdr[8] = 0x3f; // TTL changed, checksum not: no longer verifies
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_ne!(ip_fast_csum(&hdr), 0);
    }

    #[test]
    fn ip_fast_csum_20_bytes_matches_the_general_sum() {
        // The ihl=5 shortcut against the general path: random headers, all zeros, all ones
        // (the carries), and every single byte at 0xff.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut cases = vec![[0u8; 20], [0xff; 20]];
        for i in 0..20 {
            let mut h = [0u8; 20];
            h[i] = 0xff;
            cases.push(h);
        }
        for _ in 0..1000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            cases.push(h);
        }
        for h in cases {
            assert_eq!(ip_fast_csum(&h), csum_fold(csum_partial(&h, 0)), "{h:02x?}");
            assert_eq!(ip_fast_csum(&h), reference(&h), "{h:02x?}");
        }
    }

    #[test]
    fn odd_lengths_match_reference() {
        // Partial sums are only defined mod 0xffff: compare them folded.
        assert_eq!(!csum_fold(csum_partial(&[0x01], 0)), 0x0100);
        assert_eq!(!csum_fold(csum_partial(&[0xab, 0xcd, 0xef], 0)), 0x9ace); // abcd + ef00 with end-around carry
        assert_eq!(csum_fold(csum_partial(&[], 0)), 0xffff);
        for len in 0..=80 {
            let data = bytes(len, len as u64 + 7);
            assert_eq!(csum_fold(csum_partial(&data, 0)), reference(&data), "len {len}");
        }
    }

    #[test]
    fn large_buffers_and_carries() {
        // All-ones words force a carry on every 64-bit add.
        let ff = vec![0xffu8; 65535];
        assert_eq!(csum_fold(csum_partial(&ff, 0)), reference(&ff));
        assert_eq!(csum_fold(csum_partial(&ff, 0xffff_ffff)), reference(&ff));
        for (len, seed) in [(1500, 1), (1501, 2), (9000, 3), (65535, 4)] {
            let data = bytes(len, seed);
            assert_eq!(csum_fold(csum_partial(&data, 0)), reference(&data));
        }
    }

    #[test]
    fn wide_path_boundary_matches_reference() {
        // Around AVX2_MIN_LEN, and at odd starting addresses, the wide and baseline builds
        // must agree with the reference.
        let data = bytes(AVX2_MIN_LEN + 80, 11);
        for start in 0..3 {
            for len in AVX2_MIN_LEN - 40..=AVX2_MIN_LEN + 40 {
                let d = &data[start..start + len];
                assert_eq!(csum_fold(csum_partial(d, 0)), reference(d), "start {start} len {len}");
                assert_eq!(fold64(sum_le(d)), fold64(sum_le_fast(d)), "start {start} len {len}");
            }
        }
    }

    #[test]
    fn short_path_matches_reference() {
        // Every length the short path takes and a few past it, random and all-ones bytes
        // (a carry out of every 64-bit add), at odd starting addresses too.
        let data = bytes(SHORT_MAX_LEN + 40, 5);
        let ff = vec![0xffu8; SHORT_MAX_LEN + 40];
        for start in 0..3 {
            for len in 0..SHORT_MAX_LEN + 8 {
                for d in [&data[start..start + len], &ff[start..start + len]] {
                    assert_eq!(csum_fold(csum_partial(d, 0)), reference(d), "start {start} len {len}");
                    assert_eq!(
                        fold64(sum_le(d)) % 0xffff,
                        fold64(sum_le_short(d)) % 0xffff,
                        "len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn initial_sum_is_added() {
        let data = bytes(37, 9);
        let a = csum_partial(&data, 0x1234_5678);
        let b = csum_add(csum_partial(&data, 0), 0x1234_5678);
        assert_eq!(csum_fold(a), csum_fold(b));
    }

    #[test]
    fn etherparse_oracle() {
        for (len, seed) in [(0, 1), (1, 2), (2, 3), (63, 4), (1499, 5), (1500, 6)] {
            let data = bytes(len, seed);
            let theirs = etherparse::checksum::Sum16BitWords::new()
                .add_slice(&data)
                .ones_complement()
                .to_be();
            assert_eq!(csum_fold(csum_partial(&data, 0)), theirs, "len {len}");
        }
    }

    #[test]
    fn multi_segment_equals_one_shot() {
        let data = bytes(101, 42);
        let want = csum_fold(csum_partial(&data, 0));
        for i in 0..=data.len() {
            let mut c = Csum::new();
            c.add(&data[..i]);
            c.add(&data[i..]);
            assert_eq!(c.finish(), want, "split at {i}");
            for j in i..=data.len() {
                let mut c = Csum::new();
                c.add(&data[..i]);
                c.add(&data[i..j]);
                c.add(&data[j..]);
                assert_eq!(c.finish(), want, "split at {i}, {j}");
            }
        }
        // The plain chaining pitfall the module docs warn about.
        let naive = csum_partial(&data[51..], csum_partial(&data[..51], 0));
        assert_ne!(csum_fold(naive), want);
        // csum_block_add with explicit offsets.
        let s = csum_block_add(csum_partial(&data[..51], 0), csum_partial(&data[51..], 0), 51);
        assert_eq!(csum_fold(s), want);
    }

    #[test]
    fn accumulator_with_initial_sum_and_long_segments() {
        // A starting partial sum, segments on both sides of the short and wide paths, odd
        // splits, and all-ones data (carries everywhere): the same as one csum_partial.
        for (len, seed) in [(700usize, 3u64), (1501, 4)] {
            let data = bytes(len, seed);
            let ff = vec![0xffu8; len];
            for d in [&data[..], &ff[..]] {
                for init in [0u32, 0x1234_5678, 0xffff_ffff] {
                    let want = csum_fold(csum_partial(d, init));
                    for cuts in [[1, 2], [7, 300], [127, 128], [255, 600], [3, len - 1]] {
                        let mut c = Csum::with_sum(init);
                        c.add(&d[..cuts[0]]);
                        c.add(&d[cuts[0]..cuts[1]]);
                        c.add(&d[cuts[1]..]);
                        assert_eq!(c.finish(), want, "len {len} init {init:#x} cuts {cuts:?}");
                        assert_eq!(c.sum() % 0xffff, csum_partial(d, init) % 0xffff);
                    }
                }
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let data = bytes(33, 5);
        let mut c = Csum::new();
        for b in &data {
            c.add(std::slice::from_ref(b));
        }
        assert_eq!(c.finish(), reference(&data));
    }

    #[test]
    fn pseudo_header_udp() {
        // UDP 10.0.0.1:1234 -> 10.0.0.2:80, payload "hi", checksum field zero.
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        let mut udp = [0x04, 0xd2, 0x00, 0x50, 0x00, 0x0a, 0x00, 0x00, b'h', b'i'];
        // Reference: checksum over the explicit pseudo-header ++ segment.
        let mut whole = Vec::new();
        whole.extend_from_slice(&src);
        whole.extend_from_slice(&dst);
        whole.extend_from_slice(&[0, 17, 0, 10]);
        whole.extend_from_slice(&udp);
        let want = reference(&whole);

        let got = csum_tcpudp_magic(src, dst, 10, 17, csum_partial(&udp, 0));
        assert_eq!(got, want);
        let mut c = Csum::with_sum(pseudo_header_ipv4(src, dst, 17, 10));
        c.add(&udp[..3]);
        c.add(&udp[3..]);
        assert_eq!(c.finish(), want);

        udp[6..8].copy_from_slice(&got.to_be_bytes());
        assert_eq!(csum_tcpudp_magic(src, dst, 10, 17, csum_partial(&udp, 0)), 0);
    }

    #[test]
    fn incremental_update_equals_recompute() {
        let mut hdr = IPV4_HDR;
        for step in 0..300u32 {
            let check = u16::from_be_bytes([hdr[10], hdr[11]]);
            let mut new = hdr;
            if step % 2 == 0 {
                // TTL/protocol word (ip_decrease_ttl).
                let old = u16::from_be_bytes([hdr[8], hdr[9]]);
                new[8] = hdr[8].wrapping_sub(1);
                let nw = u16::from_be_bytes([new[8], new[9]]);
                new[10..12].copy_from_slice(&csum_replace2(check, old, nw).to_be_bytes());
            } else {
                // Destination address (NAT-style rewrite).
                let old = u32::from_be_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]);
                let nw = old.wrapping_mul(2_654_435_761).wrapping_add(step);
                new[16..20].copy_from_slice(&nw.to_be_bytes());
                new[10..12].copy_from_slice(&csum_replace4(check, old, nw).to_be_bytes());
            }
            assert_eq!(ip_fast_csum(&new), 0, "step {step}");
            let mut zeroed = new;
            zeroed[10] = 0;
            zeroed[11] = 0;
            assert_eq!(
                u16::from_be_bytes([new[10], new[11]]),
                ip_fast_csum(&zeroed),
                "step {step}: incremental differs from recompute"
            );
            hdr = new;
        }
    }
}
