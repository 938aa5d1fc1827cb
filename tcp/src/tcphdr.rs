//! The TCP header view, TCP options, the TCP/IPv4 checksum and sequence-number
//! arithmetic.
//!
//! Linux: `struct tcphdr` in include/uapi/linux/tcp.h, `TCPHDR_*`, `TCPOPT_*`,
//! `TCPOLEN_*`, `before()`/`after()`/`between()` in include/net/tcp.h,
//! `tcp_parse_options()` in net/ipv4/tcp_input.c, `tcp_options_write()` in
//! net/ipv4/tcp_output.c, `tcp_v4_check()` in include/net/tcp.h.
//!
//! As with the IPv4 view, [`TcpHdr::new_checked`] validates the lengths once
//! (the fixed header is present, the data offset is sane and the buffer holds
//! it); after that the accessors cannot panic. A segment in blink is a header
//! in one buffer plus payload fragments elsewhere, so the checksum helpers take
//! a list of segments rather than one slice.

use core::fmt;
use core::ops::Range;

use blink_netcore::checksum::{csum_add, pseudo_header_ipv4, Csum};
use blink_netcore::if_ether::WireError;
use blink_netcore::skbuff::SkbMeta;

/// `IPPROTO_TCP`; kept local so this file needs only netcore.
const IPPROTO_TCP: u8 = 6;

/// Flag bit FIN. Linux: `TCPHDR_FIN` in include/net/tcp.h.
pub const TCPHDR_FIN: u8 = 0x01;
/// Flag bit SYN. Linux: `TCPHDR_SYN`.
pub const TCPHDR_SYN: u8 = 0x02;
/// Flag bit RST. Linux: `TCPHDR_RST`.
pub const TCPHDR_RST: u8 = 0x04;
/// Flag bit PSH. Linux: `TCPHDR_PSH`.
pub const TCPHDR_PSH: u8 = 0x08;
/// Flag bit ACK. Linux: `TCPHDR_ACK`.
pub const TCPHDR_ACK: u8 = 0x10;
/// Flag bit URG. Linux: `TCPHDR_URG`.
pub const TCPHDR_URG: u8 = 0x20;
/// Flag bit ECE (RFC 3168). Linux: `TCPHDR_ECE`.
pub const TCPHDR_ECE: u8 = 0x40;
/// Flag bit CWR (RFC 3168). Linux: `TCPHDR_CWR`.
pub const TCPHDR_CWR: u8 = 0x80;

/// Octets in a header without options (`sizeof(struct tcphdr)`).
pub const TCP_HLEN_MIN: usize = 20;
/// Octets in a header with the most options (data offset 15).
pub const TCP_HLEN_MAX: usize = 60;
/// Octets of option space. Linux: `MAX_TCP_OPTION_SPACE`.
pub const MAX_TCP_OPTION_SPACE: usize = 40;

/// End of option list. Linux: `TCPOPT_EOL`.
pub const TCPOPT_EOL: u8 = 0;
/// Padding. Linux: `TCPOPT_NOP`.
pub const TCPOPT_NOP: u8 = 1;
/// Maximum segment size (RFC 9293). Linux: `TCPOPT_MSS`.
pub const TCPOPT_MSS: u8 = 2;
/// Window scale (RFC 7323). Linux: `TCPOPT_WINDOW`.
pub const TCPOPT_WINDOW: u8 = 3;
/// SACK permitted (RFC 2018). Linux: `TCPOPT_SACK_PERM`.
pub const TCPOPT_SACK_PERM: u8 = 4;
/// SACK blocks (RFC 2018). Linux: `TCPOPT_SACK`.
pub const TCPOPT_SACK: u8 = 5;
/// Timestamps (RFC 7323). Linux: `TCPOPT_TIMESTAMP`.
pub const TCPOPT_TIMESTAMP: u8 = 8;

/// Linux: `TCPOLEN_MSS`.
pub const TCPOLEN_MSS: usize = 4;
/// Linux: `TCPOLEN_WINDOW`.
pub const TCPOLEN_WINDOW: usize = 3;
/// Linux: `TCPOLEN_SACK_PERM`.
pub const TCPOLEN_SACK_PERM: usize = 2;
/// Linux: `TCPOLEN_TIMESTAMP`.
pub const TCPOLEN_TIMESTAMP: usize = 10;
/// Linux: `TCPOLEN_SACK_BASE`.
pub const TCPOLEN_SACK_BASE: usize = 2;
/// Linux: `TCPOLEN_SACK_PERBLOCK`.
pub const TCPOLEN_SACK_PERBLOCK: usize = 8;
/// Linux: `TCPOLEN_MSS_ALIGNED`.
pub const TCPOLEN_MSS_ALIGNED: usize = 4;
/// NOP NOP TS, or SACK_PERM TS. Linux: `TCPOLEN_TSTAMP_ALIGNED`.
pub const TCPOLEN_TSTAMP_ALIGNED: usize = 12;
/// NOP NOP SACK_PERM. Linux: `TCPOLEN_SACKPERM_ALIGNED`.
pub const TCPOLEN_SACKPERM_ALIGNED: usize = 4;
/// NOP WS. Linux: `TCPOLEN_WSCALE_ALIGNED`.
pub const TCPOLEN_WSCALE_ALIGNED: usize = 4;
/// NOP NOP SACK-kind SACK-len. Linux: `TCPOLEN_SACK_BASE_ALIGNED`.
pub const TCPOLEN_SACK_BASE_ALIGNED: usize = 4;

/// Largest window scale shift (RFC 7323 section 2.3). Linux: `TCP_MAX_WSCALE`.
pub const TCP_MAX_WSCALE: u8 = 14;
/// SACK blocks kept per segment. Linux: `TCP_NUM_SACKS`.
pub const TCP_NUM_SACKS: usize = 4;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ: Field = 4..8;
    pub const ACK_SEQ: Field = 8..12;
    /// High nibble: data offset in words; low nibble: reserved bits (and AE).
    pub const DOFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECK: Field = 16..18;
    pub const URG_PTR: Field = 18..20;
    pub const OPTIONS: usize = 20;
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A view of a TCP header and whatever payload follows it in the same buffer.
///
/// Linux: `struct tcphdr` and `tcp_hdr(skb)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpHdr<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is
    /// shorter than [`TCP_HLEN_MIN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpHdr { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let hdr = Self::new_unchecked(buffer);
        hdr.check_len()?;
        Ok(hdr)
    }

    /// `Err(Truncated)` if the buffer cannot hold the fixed header or the
    /// header length it declares; `Err(Malformed)` if the data offset is
    /// below 5. Linux: the `th->doff < sizeof(struct tcphdr) / 4` and
    /// `pskb_may_pull()` checks in `tcp_v4_rcv()`.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < TCP_HLEN_MIN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < TCP_HLEN_MIN {
            return Err(WireError::Malformed);
        }
        if len < hl {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// `source`.
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// `dest`.
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// `seq`.
    pub fn seq(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ])
    }

    /// `ack_seq`.
    pub fn ack_seq(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::ACK_SEQ])
    }

    /// `doff`: header length in 32-bit words, as declared (valid: 5..=15).
    pub fn doff(&self) -> u8 {
        self.buffer.as_ref()[field::DOFF] >> 4
    }

    /// Header length in bytes (`doff * 4`), as declared; may be below 20 in
    /// an unchecked view. Linux: `__tcp_hdrlen()`.
    pub fn header_len(&self) -> usize {
        self.doff() as usize * 4
    }

    /// The eight flag bits (`TCPHDR_*`). Linux: `tcp_flag_byte(th)`.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// FIN set.
    pub fn fin(&self) -> bool {
        self.flags() & TCPHDR_FIN != 0
    }

    /// SYN set.
    pub fn syn(&self) -> bool {
        self.flags() & TCPHDR_SYN != 0
    }

    /// RST set.
    pub fn rst(&self) -> bool {
        self.flags() & TCPHDR_RST != 0
    }

    /// PSH set.
    pub fn psh(&self) -> bool {
        self.flags() & TCPHDR_PSH != 0
    }

    /// ACK set.
    pub fn ack(&self) -> bool {
        self.flags() & TCPHDR_ACK != 0
    }

    /// URG set.
    pub fn urg(&self) -> bool {
        self.flags() & TCPHDR_URG != 0
    }

    /// ECE set.
    pub fn ece(&self) -> bool {
        self.flags() & TCPHDR_ECE != 0
    }

    /// CWR set.
    pub fn cwr(&self) -> bool {
        self.flags() & TCPHDR_CWR != 0
    }

    /// `window`, unscaled.
    pub fn window(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::WINDOW])
    }

    /// `check` as stored.
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECK])
    }

    /// `urg_ptr`.
    pub fn urg_ptr(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::URG_PTR])
    }

    /// True when the whole buffer (header and payload) checksums correctly
    /// against the given IPv4 pseudo-header. For a payload held elsewhere use
    /// [`tcp_v4_verify`].
    pub fn verify_checksum(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        tcp_v4_verify(src, dst, &[self.buffer.as_ref()])
    }

    /// Options: bytes 20..header_len, or empty if the data offset is 5 or
    /// less or the buffer does not hold the whole header.
    fn options_range(&self) -> Range<usize> {
        let hl = self.header_len();
        if hl > TCP_HLEN_MIN && hl <= self.buffer.as_ref().len() {
            field::OPTIONS..hl
        } else {
            0..0
        }
    }

    /// Payload: header_len..end of buffer, or empty if the data offset is
    /// below 5 or the header reaches past the buffer.
    fn payload_range(&self) -> Range<usize> {
        let hl = self.header_len();
        let len = self.buffer.as_ref().len();
        if hl >= TCP_HLEN_MIN && hl <= len {
            hl..len
        } else {
            0..0
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpHdr<&'a T> {
    /// Raw option bytes (parse them with [`TcpOptions::parse`]); empty unless
    /// the data offset is above 5 and the buffer holds the whole header.
    pub fn options(&self) -> &'a [u8] {
        let r = self.options_range();
        &self.buffer.as_ref()[r]
    }

    /// Everything after the header in this buffer (empty in an unchecked view
    /// whose data offset is invalid).
    pub fn payload(&self) -> &'a [u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpHdr<T> {
    /// Sets `source`.
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `dest`.
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `seq`.
    pub fn set_seq(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `ack_seq`.
    pub fn set_ack_seq(&mut self, v: u32) {
        self.buffer.as_mut()[field::ACK_SEQ].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `doff` (32-bit words), keeping the reserved bits.
    pub fn set_doff(&mut self, words: u8) {
        let b = &mut self.buffer.as_mut()[field::DOFF];
        *b = (*b & 0x0f) | (words << 4);
    }

    /// Sets `doff` from a length in bytes (a multiple of 4, at most 60).
    pub fn set_header_len(&mut self, bytes: usize) {
        self.set_doff(((bytes / 4) & 0x0f) as u8);
    }

    /// Sets all eight flag bits (`TCPHDR_*`).
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    fn set_flag(&mut self, bit: u8, on: bool) {
        let f = self.flags() & !bit;
        self.set_flags(if on { f | bit } else { f });
    }

    /// Sets or clears FIN.
    pub fn set_fin(&mut self, on: bool) {
        self.set_flag(TCPHDR_FIN, on);
    }

    /// Sets or clears SYN.
    pub fn set_syn(&mut self, on: bool) {
        self.set_flag(TCPHDR_SYN, on);
    }

    /// Sets or clears RST.
    pub fn set_rst(&mut self, on: bool) {
        self.set_flag(TCPHDR_RST, on);
    }

    /// Sets or clears PSH.
    pub fn set_psh(&mut self, on: bool) {
        self.set_flag(TCPHDR_PSH, on);
    }

    /// Sets or clears ACK.
    pub fn set_ack(&mut self, on: bool) {
        self.set_flag(TCPHDR_ACK, on);
    }

    /// Sets or clears URG.
    pub fn set_urg(&mut self, on: bool) {
        self.set_flag(TCPHDR_URG, on);
    }

    /// Sets or clears ECE.
    pub fn set_ece(&mut self, on: bool) {
        self.set_flag(TCPHDR_ECE, on);
    }

    /// Sets or clears CWR.
    pub fn set_cwr(&mut self, on: bool) {
        self.set_flag(TCPHDR_CWR, on);
    }

    /// Sets `window`.
    pub fn set_window(&mut self, v: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `check`.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECK].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `urg_ptr`.
    pub fn set_urg_ptr(&mut self, v: u16) {
        self.buffer.as_mut()[field::URG_PTR].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes and stores `check` over the whole buffer (header and payload).
    /// For a payload held elsewhere use [`tcp_v4_check`].
    pub fn fill_checksum(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let c = tcp_v4_check(src, dst, &[self.buffer.as_ref()]);
        self.set_checksum(c);
    }

    /// Raw option bytes, writable (same clamping as [`TcpHdr::options`]).
    pub fn options_mut(&mut self) -> &mut [u8] {
        let r = self.options_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Payload in this buffer, writable (same clamping as [`TcpHdr::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpHdr<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// tcpdump-style flags, e.g. `S.` for SYN|ACK, `.` for a bare ACK.
fn fmt_flags(f: &mut fmt::Formatter<'_>, flags: u8) -> fmt::Result {
    const NAMES: [(u8, char); 7] = [
        (TCPHDR_FIN, 'F'),
        (TCPHDR_SYN, 'S'),
        (TCPHDR_RST, 'R'),
        (TCPHDR_PSH, 'P'),
        (TCPHDR_URG, 'U'),
        (TCPHDR_ECE, 'E'),
        (TCPHDR_CWR, 'W'),
    ];
    for (bit, c) in NAMES {
        if flags & bit != 0 {
            write!(f, "{c}")?;
        }
    }
    if flags & TCPHDR_ACK != 0 {
        write!(f, ".")?;
    }
    if flags == 0 {
        write!(f, "none")?;
    }
    Ok(())
}

impl<T: AsRef<[u8]>> fmt::Display for TcpHdr<T> {
    /// One line in the spirit of tcpdump: ports, flags, seq, ack, window,
    /// options, payload length. Never panics, even on an unchecked view.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buf = self.buffer.as_ref();
        if buf.len() < TCP_HLEN_MIN {
            return write!(f, "TCP truncated ({} bytes)", buf.len());
        }
        write!(f, "TCP {} > {} [", self.src_port(), self.dst_port())?;
        fmt_flags(f, self.flags())?;
        write!(f, "] seq {} ack {} win {}", self.seq(), self.ack_seq(), self.window())?;
        let r = self.options_range();
        if !r.is_empty() {
            let o = TcpOptions::parse(&buf[r], self.syn());
            write!(f, " {o}")?;
        }
        match self.check_len() {
            Ok(()) => write!(f, " length {}", buf.len() - self.header_len()),
            Err(e) => write!(f, " ({e}, doff {})", self.doff()),
        }
    }
}

/// Full checksum of a TCP segment held in several pieces (header first, with
/// its checksum field zero, then payload fragments): the value to store in
/// `check`. Pieces may have any length; odd lengths are handled.
///
/// The pseudo-header length is the sum of the pieces' lengths, truncated to
/// 16 bits as the field is; an IPv4 segment never exceeds 65535 bytes.
///
/// Linux: `tcp_v4_check()` in include/net/tcp.h over `skb_checksum()`.
pub fn tcp_v4_check(src: [u8; 4], dst: [u8; 4], segments: &[&[u8]]) -> u16 {
    let len: usize = segments.iter().map(|s| s.len()).sum();
    let mut c = Csum::with_sum(pseudo_header_ipv4(src, dst, IPPROTO_TCP, len as u16));
    for s in segments {
        c.add(s);
    }
    c.finish()
}

/// [`tcp_v4_check`] over an skb whose data starts at the TCP header: its linear area, then
/// its fragments, summed in place (no list of pieces is built on the per-packet path).
///
/// Linux: `tcp_v4_send_check()` / `__tcp_v4_send_check()` with a software checksum.
pub fn tcp_v4_check_skb(src: [u8; 4], dst: [u8; 4], skb: &SkbMeta) -> u16 {
    // The same sum with no header words given: everything from the header on is read.
    tcp_v4_check_skb_hsum(src, dst, skb, 0, 0)
}

/// The ones'-complement sum of the header `tcp_build_header` writes for these values
/// (checksum and urgent pointer zero), computed from the values rather than read back; None
/// unless the options are none or timestamps alone (every established segment without SACK
/// blocks). Reading back a header just written field by field stalls: its small stores are
/// still in the store buffer, and the checksum's 8-byte loads over them cannot be forwarded.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn tcp_header_sum(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: &TcpOptions,
) -> Option<u32> {
    if opts.mss.is_some() || opts.wscale.is_some() || opts.sack_ok || opts.num_sacks != 0 {
        return None;
    }
    let words = |v: u32| (v >> 16) + (v & 0xffff);
    let mut sum = sport as u32 + dport as u32 + words(seq) + words(ack) + window as u32;
    let hl = match opts.ts {
        Some((tsval, tsecr)) => {
            sum += ((TCPOPT_NOP as u32) << 8 | TCPOPT_NOP as u32)
                + ((TCPOPT_TIMESTAMP as u32) << 8 | TCPOLEN_TIMESTAMP as u32)
                + words(tsval)
                + words(tsecr);
            TCP_HLEN_MIN + TCPOLEN_TSTAMP_ALIGNED
        }
        None => TCP_HLEN_MIN,
    };
    Some(sum + (((hl / 4) as u32) << 12 | flags as u32))
}

/// [`tcp_v4_check_skb`] with the sum `hsum` of the first `hlen` bytes (the header, see
/// [`tcp_header_sum`]) given: only what follows them is read.
pub fn tcp_v4_check_skb_hsum(src: [u8; 4], dst: [u8; 4], skb: &SkbMeta, hlen: usize, hsum: u32) -> u16 {
    let mut c = Csum::with_sum(csum_add(
        pseudo_header_ipv4(src, dst, IPPROTO_TCP, skb.len() as u16),
        hsum,
    ));
    c.add(&skb.data()[hlen..]);
    for f in skb.frags() {
        c.add(f.bytes());
    }
    c.finish()
}

/// True when the checksum stored in the header (the first piece) is correct
/// for the whole segment. Linux: `tcp_v4_check()`/`__skb_checksum_complete()`
/// in `tcp_v4_rcv()` (via `skb_checksum_init()`).
pub fn tcp_v4_verify(src: [u8; 4], dst: [u8; 4], segments: &[&[u8]]) -> bool {
    tcp_v4_check(src, dst, segments) == 0
}

/// One SACK block `[start, end)` in sequence space.
/// Linux: `struct tcp_sack_block` (`start_seq`, `end_seq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SackBlock {
    pub start: u32,
    pub end: u32,
}

/// TCP options of one segment, parsed or to be written.
///
/// Linux: the received half is `struct tcp_options_received`
/// (include/linux/tcp.h), the sent half `struct tcp_out_options`
/// (net/ipv4/tcp_output.c).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only). Linux: `mss_clamp` / `opts->mss`.
    pub mss: Option<u16>,
    /// Window scale shift, at most [`TCP_MAX_WSCALE`] (SYN only).
    /// Linux: `wscale_ok` + `snd_wscale` / `OPTION_WSCALE` + `opts->ws`.
    pub wscale: Option<u8>,
    /// SACK permitted (SYN only). Linux: `sack_ok` / `OPTION_SACK_ADVERTISE`.
    pub sack_ok: bool,
    /// Timestamps `(tsval, tsecr)`. Linux: `saw_tstamp`, `rcv_tsval`,
    /// `rcv_tsecr` / `OPTION_TS`, `opts->tsval`, `opts->tsecr`.
    pub ts: Option<(u32, u32)>,
    /// SACK blocks; the first `num_sacks` are meaningful.
    pub sack: [SackBlock; TCP_NUM_SACKS],
    /// Number of valid entries in `sack` (0..=4). Linux: `num_sacks` /
    /// `opts->num_sack_blocks`.
    pub num_sacks: u8,
}

impl TcpOptions {
    /// Parses the option bytes of a segment (`TcpHdr::options()`).
    ///
    /// Follows Linux's `tcp_parse_options()`: parsing stops silently at EOL,
    /// at an option whose length is below 2, or at one that runs past the
    /// end; options with the wrong length are skipped; what was parsed before
    /// the stop is kept, and a repeated option overrides the earlier one.
    /// MSS (non-zero), window scale and SACK-permitted count only when `syn`
    /// is set; a window scale above 14 is clamped to 14 (Linux logs it and
    /// clamps). Timestamps need length 10, SACK `2 + 8n` with `1 <= n <= 4`.
    /// Whether timestamps or SACK were negotiated on the connection is the
    /// caller's business (Linux checks `tstamp_ok`/`sack_ok` here).
    pub fn parse(opts: &[u8], syn: bool) -> TcpOptions {
        let mut o = TcpOptions::default();
        // Fast path: an established segment from a Linux-like peer carries exactly NOP NOP
        // TIMESTAMP, 12 bytes (Linux: tcp_parse_aligned_timestamp() in tcp_fast_parse_options).
        if opts.len() == TCPOLEN_TSTAMP_ALIGNED
            && opts[..4] == [TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP as u8]
        {
            o.ts = Some((be32(&opts[4..8]), be32(&opts[8..12])));
            return o;
        }
        let mut i = 0;
        while i < opts.len() {
            let kind = opts[i];
            match kind {
                TCPOPT_EOL => break,
                TCPOPT_NOP => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let rest = &opts[i..];
            if rest.len() < 2 {
                break;
            }
            let size = rest[1] as usize;
            if size < 2 || size > rest.len() {
                // "silly options" / "don't parse partial options"
                break;
            }
            let body = &rest[2..size];
            match kind {
                TCPOPT_MSS if size == TCPOLEN_MSS && syn => {
                    let mss = be16(body);
                    if mss != 0 {
                        o.mss = Some(mss);
                    }
                }
                TCPOPT_WINDOW if size == TCPOLEN_WINDOW && syn => {
                    o.wscale = Some(body[0].min(TCP_MAX_WSCALE));
                }
                TCPOPT_SACK_PERM if size == TCPOLEN_SACK_PERM && syn => {
                    o.sack_ok = true;
                }
                TCPOPT_TIMESTAMP if size == TCPOLEN_TIMESTAMP => {
                    o.ts = Some((be32(&body[0..4]), be32(&body[4..8])));
                }
                TCPOPT_SACK
                    if size >= TCPOLEN_SACK_BASE + TCPOLEN_SACK_PERBLOCK
                        && (size - TCPOLEN_SACK_BASE) % TCPOLEN_SACK_PERBLOCK == 0
                        && (size - TCPOLEN_SACK_BASE) / TCPOLEN_SACK_PERBLOCK <= TCP_NUM_SACKS =>
                {
                    let n = (size - TCPOLEN_SACK_BASE) / TCPOLEN_SACK_PERBLOCK;
                    for (k, blk) in body.chunks_exact(TCPOLEN_SACK_PERBLOCK).enumerate() {
                        o.sack[k] = SackBlock {
                            start: be32(&blk[0..4]),
                            end: be32(&blk[4..8]),
                        };
                    }
                    o.num_sacks = n as u8;
                }
                _ => {}
            }
            i += size;
        }
        o
    }

    /// Bytes before the SACK option, and the number of SACK blocks that fit
    /// after it. Linux: the `remaining` arithmetic of `tcp_syn_options()` and
    /// `tcp_established_options()`.
    fn layout(&self) -> (usize, usize) {
        let mut n = 0;
        if self.mss.is_some() {
            n += TCPOLEN_MSS_ALIGNED;
        }
        if self.ts.is_some() {
            n += TCPOLEN_TSTAMP_ALIGNED;
        } else if self.sack_ok {
            n += TCPOLEN_SACKPERM_ALIGNED;
        }
        if self.wscale.is_some() {
            n += TCPOLEN_WSCALE_ALIGNED;
        }
        let want = (self.num_sacks as usize).min(TCP_NUM_SACKS);
        let room = MAX_TCP_OPTION_SPACE.saturating_sub(n + TCPOLEN_SACK_BASE_ALIGNED) / TCPOLEN_SACK_PERBLOCK;
        (n, want.min(room))
    }

    /// Bytes [`emit`](Self::emit) writes: always a multiple of 4, at most
    /// [`MAX_TCP_OPTION_SPACE`]. Linux: `tcp_syn_options()` /
    /// `tcp_established_options()` return value.
    pub fn len(&self) -> usize {
        let (n, sacks) = self.layout();
        if sacks > 0 {
            n + TCPOLEN_SACK_BASE_ALIGNED + sacks * TCPOLEN_SACK_PERBLOCK
        } else {
            n
        }
    }

    /// True when no option would be written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the options in Linux's order and alignment and returns the bytes
    /// written ([`len`](Self::len)):
    ///
    /// ```text
    /// MSS                 02 04 mm mm
    /// SACK_PERM + TS      04 02 08 0a <tsval> <tsecr>   (NOP NOP TS without SACK_PERM)
    /// SACK_PERM alone     01 01 04 02
    /// WS                  01 03 03 ws
    /// SACK                01 01 05 <2+8n> <blocks>
    /// ```
    ///
    /// Every group is a whole number of 32-bit words, so no trailing padding
    /// is needed. SACK blocks that would take the options past 40 bytes are
    /// dropped (the first ones are kept), and a window scale above 14 is
    /// written as 14.
    ///
    /// Panics if `buf` is shorter than [`len`](Self::len).
    ///
    /// Linux: `tcp_options_write()` in net/ipv4/tcp_output.c.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        // Every segment of an established connection with timestamps and no SACK blocks to
        // report carries exactly NOP NOP TS: written in one go.
        if let (Some((tsval, tsecr)), None, None, false, 0) =
            (self.ts, self.mss, self.wscale, self.sack_ok, self.num_sacks)
        {
            if let Some(b) = buf.get_mut(..TCPOLEN_TSTAMP_ALIGNED) {
                let (v, e) = (tsval.to_be_bytes(), tsecr.to_be_bytes());
                b.copy_from_slice(&[
                    TCPOPT_NOP,
                    TCPOPT_NOP,
                    TCPOPT_TIMESTAMP,
                    TCPOLEN_TIMESTAMP as u8,
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    e[0],
                    e[1],
                    e[2],
                    e[3],
                ]);
                return TCPOLEN_TSTAMP_ALIGNED;
            }
        }
        let (_, sacks) = self.layout();
        let mut p = 0;
        let mut put = |bytes: &[u8]| {
            buf[p..p + bytes.len()].copy_from_slice(bytes);
            p += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[TCPOPT_MSS, TCPOLEN_MSS as u8, m[0], m[1]]);
        }
        if let Some((tsval, tsecr)) = self.ts {
            if self.sack_ok {
                put(&[TCPOPT_SACK_PERM, TCPOLEN_SACK_PERM as u8]);
            } else {
                put(&[TCPOPT_NOP, TCPOPT_NOP]);
            }
            put(&[TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP as u8]);
            put(&tsval.to_be_bytes());
            put(&tsecr.to_be_bytes());
        } else if self.sack_ok {
            put(&[TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK_PERM, TCPOLEN_SACK_PERM as u8]);
        }
        if let Some(ws) = self.wscale {
            put(&[TCPOPT_NOP, TCPOPT_WINDOW, TCPOLEN_WINDOW as u8, ws.min(TCP_MAX_WSCALE)]);
        }
        if sacks > 0 {
            let olen = (TCPOLEN_SACK_BASE + sacks * TCPOLEN_SACK_PERBLOCK) as u8;
            put(&[TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK, olen]);
            for b in &self.sack[..sacks] {
                put(&b.start.to_be_bytes());
                put(&b.end.to_be_bytes());
            }
        }
        p
    }

    /// The valid SACK blocks.
    pub fn sack_blocks(&self) -> &[SackBlock] {
        &self.sack[..(self.num_sacks as usize).min(TCP_NUM_SACKS)]
    }
}

impl fmt::Display for TcpOptions {
    /// tcpdump-like: `[mss 1460,sackOK,TS val 1 ecr 0,wscale 7]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        let mut sep = "";
        if let Some(m) = self.mss {
            write!(f, "{sep}mss {m}")?;
            sep = ",";
        }
        if self.sack_ok {
            write!(f, "{sep}sackOK")?;
            sep = ",";
        }
        if let Some((v, e)) = self.ts {
            write!(f, "{sep}TS val {v} ecr {e}")?;
            sep = ",";
        }
        if let Some(w) = self.wscale {
            write!(f, "{sep}wscale {w}")?;
            sep = ",";
        }
        if self.num_sacks > 0 {
            write!(f, "{sep}sack {}", self.num_sacks)?;
            for b in self.sack_blocks() {
                write!(f, " {{{}:{}}}", b.start, b.end)?;
            }
        }
        write!(f, "]")
    }
}

/// Writes a complete TCP header with options into `buf` (checksum 0, urgent
/// pointer 0, reserved bits clear) and returns its length, `20 + opts.len()`.
///
/// Panics if `buf` is shorter than that. Linux: the header part of
/// `__tcp_transmit_skb()` in net/ipv4/tcp_output.c.
#[allow(clippy::too_many_arguments)]
pub fn tcp_build_header(
    buf: &mut [u8],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: &TcpOptions,
) -> usize {
    let hl = TCP_HLEN_MIN + opts.len();
    let written = opts.emit(&mut buf[TCP_HLEN_MIN..hl]);
    debug_assert_eq!(written, hl - TCP_HLEN_MIN);
    let mut th = TcpHdr::new_unchecked(&mut buf[..hl]);
    th.set_src_port(sport);
    th.set_dst_port(dport);
    th.set_seq(seq);
    th.set_ack_seq(ack);
    th.buffer[field::DOFF] = ((hl / 4) as u8) << 4;
    th.set_flags(flags);
    th.set_window(window);
    th.set_checksum(0);
    th.set_urg_ptr(0);
    hl
}

/// `a` comes before `b` in sequence space (RFC 1982 serial arithmetic).
/// Linux: `before()` in include/net/tcp.h.
#[inline]
pub fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` comes after `b` in sequence space. Linux: `after()`.
#[inline]
pub fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// `low <= seq <= high` modulo 2^32. Linux: `between()` (`seq3 - seq2 >= seq1 - seq2`).
#[inline]
pub fn between(seq: u32, low: u32, high: u32) -> bool {
    high.wrapping_sub(low) >= seq.wrapping_sub(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sum_from_values_equals_sum_of_written_header() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for i in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let opts = TcpOptions {
                ts: (i % 2 == 0).then_some(((x >> 3) as u32, (x >> 29) as u32)),
                ..Default::default()
            };
            let (sp, dp, seq, ack, fl, win) = (
                x as u16,
                (x >> 16) as u16,
                (x >> 7) as u32,
                (x >> 33) as u32,
                (x >> 50) as u8,
                (x >> 40) as u16,
            );
            let mut buf = [0xa5u8; 60];
            let hl = tcp_build_header(&mut buf, sp, dp, seq, ack, fl, win, &opts);
            let mut c = Csum::new();
            c.add(&buf[..hl]);
            let hsum = tcp_header_sum(sp, dp, seq, ack, fl, win, &opts).expect("plain options");
            assert_eq!(c.sum() % 0xffff, hsum % 0xffff, "case {i}");
        }
        let syn = TcpOptions {
            mss: Some(1460),
            ..Default::default()
        };
        assert_eq!(tcp_header_sum(1, 2, 3, 4, TCPHDR_SYN, 5, &syn), None);
    }

    const SRC: [u8; 4] = [192, 168, 1, 10];
    const DST: [u8; 4] = [192, 168, 1, 20];

    #[test]
    fn check_skb_equals_check_over_pieces() {
        use blink_netcore::skbuff::{Frag, SkBuff};
        use blink_netcore::{Mempool, MempoolConfig};
        let pool = Mempool::new(&MempoolConfig {
            n: 8,
            ..Default::default()
        })
        .unwrap();
        let mut cache = pool.cache();
        // Odd-length header and fragments: the pieces meet at odd offsets.
        let hdr: Vec<u8> = (0..33u8).collect();
        let p1: Vec<u8> = (0..101u8).map(|b| b.wrapping_mul(7)).collect();
        let p2: Vec<u8> = (0..64u8).map(|b| b ^ 0xa5).collect();
        let mut skb = SkBuff::from_slice(&mut cache, &hdr).unwrap();
        for p in [&p1, &p2] {
            let mut m = cache.alloc().unwrap();
            assert!(m.append_slice(p));
            skb.skb_add_frag(Frag::from_mbuf(m)).unwrap();
        }
        let want = tcp_v4_check(SRC, DST, &[&hdr, &p1, &p2]);
        assert_eq!(tcp_v4_check_skb(SRC, DST, &skb), want);
        drop(skb);
        drop(cache);
        assert_eq!(pool.in_use(), 0);
    }

    /// A Linux SYN: 40000 -> 80, seq 0x11223344, window 64240,
    /// options mss 1460, sackOK, TS val 0x01020304 ecr 0, nop, wscale 7.
    static SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x00, 0x00,
        0x00, 0x00, // fixed header
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03,
        0x03, 0x07,
    ];

    fn syn_opts() -> TcpOptions {
        TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_ok: true,
            ts: Some((0x0102_0304, 0)),
            ..Default::default()
        }
    }

    /// Deterministic xorshift64 generator.
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

    #[test]
    fn deconstruct_syn() {
        let th = TcpHdr::new_checked(&SYN[..]).unwrap();
        assert_eq!(th.src_port(), 40000);
        assert_eq!(th.dst_port(), 80);
        assert_eq!(th.seq(), 0x1122_3344);
        assert_eq!(th.ack_seq(), 0);
        assert_eq!(th.doff(), 10);
        assert_eq!(th.header_len(), 40);
        assert_eq!(th.flags(), TCPHDR_SYN);
        assert!(th.syn() && !th.ack() && !th.fin() && !th.rst() && !th.psh() && !th.urg());
        assert!(!th.ece() && !th.cwr());
        assert_eq!(th.window(), 64240);
        assert_eq!(th.urg_ptr(), 0);
        assert_eq!(th.options(), &SYN[20..]);
        assert!(th.payload().is_empty());
        assert_eq!(TcpOptions::parse(th.options(), th.syn()), syn_opts());
        // Not a SYN: only the timestamp counts.
        let o = TcpOptions::parse(th.options(), false);
        assert_eq!(
            o,
            TcpOptions {
                ts: Some((0x0102_0304, 0)),
                ..Default::default()
            }
        );
        assert_eq!(
            th.to_string(),
            "TCP 40000 > 80 [S] seq 287454020 ack 0 win 64240 [mss 1460,sackOK,TS val 16909060 ecr 0,wscale 7] length 0"
        );
    }

    #[test]
    fn construct_syn() {
        let mut buf = [0xa5u8; 40];
        let n = tcp_build_header(&mut buf, 40000, 80, 0x1122_3344, 0, TCPHDR_SYN, 64240, &syn_opts());
        assert_eq!(n, 40);
        assert_eq!(buf, SYN);

        // The same with the setters.
        let mut buf = [0xa5u8; 44];
        let mut th = TcpHdr::new_unchecked(&mut buf[..]);
        th.set_src_port(40000);
        th.set_dst_port(80);
        th.set_seq(0x1122_3344);
        th.set_ack_seq(0);
        th.set_header_len(40);
        th.buffer[12] &= 0xf0; // clear reserved bits left from 0xa5 fill
        th.set_flags(0);
        th.set_syn(true);
        th.set_window(64240);
        th.set_checksum(0);
        th.set_urg_ptr(0);
        th.options_mut().copy_from_slice(&SYN[20..]);
        th.payload_mut().copy_from_slice(b"data");
        assert_eq!(&buf[..40], &SYN[..]);
        let th = TcpHdr::new_checked(&buf[..]).unwrap();
        assert_eq!(th.payload(), b"data");
    }

    #[test]
    fn flag_setters() {
        let mut buf = [0u8; 20];
        let mut th = TcpHdr::new_unchecked(&mut buf[..]);
        th.set_fin(true);
        th.set_ack(true);
        th.set_psh(true);
        th.set_urg(true);
        th.set_ece(true);
        th.set_cwr(true);
        th.set_rst(true);
        th.set_syn(true);
        assert_eq!(th.flags(), 0xff);
        th.set_urg(false);
        th.set_syn(false);
        th.set_ece(false);
        assert_eq!(
            th.flags(),
            TCPHDR_FIN | TCPHDR_RST | TCPHDR_PSH | TCPHDR_ACK | TCPHDR_CWR
        );
        th.set_doff(5);
        th.set_flags(TCPHDR_SYN | TCPHDR_ACK);
        assert_eq!(th.to_string(), "TCP 0 > 0 [S.] seq 0 ack 0 win 0 length 0");
    }

    #[test]
    fn checked_lengths() {
        assert_eq!(TcpHdr::new_checked(&SYN[..19]).err(), Some(WireError::Truncated));
        assert_eq!(TcpHdr::new_checked(&SYN[..39]).err(), Some(WireError::Truncated));
        assert!(TcpHdr::new_checked(&SYN[..40]).is_ok());
        for doff in 0..5u8 {
            let mut b = SYN;
            b[12] = doff << 4;
            assert_eq!(TcpHdr::new_checked(&b[..]).err(), Some(WireError::Malformed));
            // The unchecked view still cannot panic on options/payload.
            let th = TcpHdr::new_unchecked(&b[..]);
            assert!(th.options().is_empty() && th.payload().is_empty());
            assert!(th.to_string().contains("malformed"));
        }
        let mut b = SYN;
        b[12] = 0xf0; // doff 15 = 60 bytes > 40
        let th = TcpHdr::new_unchecked(&b[..]);
        assert!(th.options().is_empty() && th.payload().is_empty());
        assert!(th.to_string().contains("truncated"));
        assert_eq!(TcpHdr::new_unchecked(&b[..7]).to_string(), "TCP truncated (7 bytes)");
    }

    #[test]
    fn parse_linux_syn_options() {
        let o = TcpOptions::parse(&SYN[20..], true);
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_ok);
        assert_eq!(o.ts, Some((0x0102_0304, 0)));
        assert_eq!(o.wscale, Some(7));
        assert_eq!(o.num_sacks, 0);
        assert_eq!(o.len(), 20);
    }

    #[test]
    fn parse_rules() {
        // wscale clamped to 14.
        let o = TcpOptions::parse(&[1, 3, 3, 15], true);
        assert_eq!(o.wscale, Some(14));
        // MSS 0 ignored; wrong-size MSS skipped but parsing continues.
        let o = TcpOptions::parse(&[2, 4, 0, 0, 2, 5, 1, 2, 3, 4, 2], true);
        assert_eq!(o.mss, None);
        assert!(o.sack_ok);
        // Timestamp of wrong size skipped, next one taken; the later one wins.
        let mut b = vec![8, 8, 0, 0, 0, 1, 0, 0];
        b.extend_from_slice(&[8, 10, 0, 0, 0, 2, 0, 0, 0, 3]);
        b.extend_from_slice(&[8, 10, 0, 0, 0, 4, 0, 0, 0, 5]);
        assert_eq!(TcpOptions::parse(&b, false).ts, Some((4, 5)));
        // EOL stops parsing.
        let o = TcpOptions::parse(&[0, 2, 4, 5, 0xb4], true);
        assert_eq!(o, TcpOptions::default());
        // Zero and one lengths stop parsing, keeping what came before.
        let o = TcpOptions::parse(&[2, 4, 5, 0xb4, 3, 0, 4, 2], true);
        assert_eq!(o.mss, Some(1460));
        assert!(!o.sack_ok);
        let o = TcpOptions::parse(&[4, 2, 3, 1, 2, 4, 5, 0xb4], true);
        assert!(o.sack_ok && o.mss.is_none());
        // Length past the end: stop.
        let o = TcpOptions::parse(&[4, 2, 2, 40, 5, 0xb4], true);
        assert!(o.sack_ok && o.mss.is_none());
        // A lone kind byte at the end.
        let o = TcpOptions::parse(&[1, 1, 4, 2, 2], true);
        assert!(o.sack_ok);
        // Unknown options are skipped by their length.
        let o = TcpOptions::parse(&[30, 6, 9, 9, 9, 9, 2, 4, 1, 0], true);
        assert_eq!(o.mss, Some(256));
        // SACK: 2 + 8n only, n <= 4.
        let mut s = vec![1, 1, 5, 18];
        for v in [10u32, 20, 30, 40] {
            s.extend_from_slice(&v.to_be_bytes());
        }
        let o = TcpOptions::parse(&s, false);
        assert_eq!(
            o.sack_blocks(),
            &[SackBlock { start: 10, end: 20 }, SackBlock { start: 30, end: 40 }]
        );
        s[3] = 17;
        assert_eq!(TcpOptions::parse(&s, false).num_sacks, 0);
        s[3] = 10;
        assert_eq!(TcpOptions::parse(&s, false).num_sacks, 1);
        s[3] = 2;
        assert_eq!(TcpOptions::parse(&s, false).num_sacks, 0);
        let mut big = vec![5u8, 42];
        big.extend_from_slice(&[0u8; 40]);
        assert_eq!(TcpOptions::parse(&big, false).num_sacks, 0, "5 blocks: ignored");
    }

    #[test]
    fn emit_layouts() {
        let mut buf = [0u8; 40];
        // SYN layout: exactly Linux's bytes.
        let o = syn_opts();
        assert_eq!(o.emit(&mut buf), 20);
        assert_eq!(&buf[..20], &SYN[20..]);

        // No SACK_PERM: NOP NOP TS.
        let o = TcpOptions {
            ts: Some((1, 2)),
            ..Default::default()
        };
        assert_eq!(o.len(), 12);
        assert_eq!(o.emit(&mut buf), 12);
        assert_eq!(&buf[..12], &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);

        // SACK_PERM without TS: NOP NOP SACK_PERM; then NOP WS.
        let o = TcpOptions {
            mss: Some(536),
            sack_ok: true,
            wscale: Some(20),
            ..Default::default()
        };
        assert_eq!(o.emit(&mut buf), 12);
        assert_eq!(&buf[..12], &[2, 4, 2, 24, 1, 1, 4, 2, 1, 3, 3, 14]);

        // TS + SACK: 12 + 4 + 3*8 = 40, the fourth block is dropped.
        let mut o = TcpOptions {
            ts: Some((7, 8)),
            num_sacks: 4,
            ..Default::default()
        };
        for (k, b) in o.sack.iter_mut().enumerate() {
            *b = SackBlock {
                start: 100 * k as u32,
                end: 100 * k as u32 + 50,
            };
        }
        assert_eq!(o.len(), 40);
        assert_eq!(o.emit(&mut buf), 40);
        assert_eq!(&buf[12..16], &[1, 1, 5, 26]);
        let back = TcpOptions::parse(&buf, false);
        assert_eq!(back.ts, Some((7, 8)));
        assert_eq!(back.sack_blocks(), &o.sack[..3]);

        // SACK alone: 4 blocks fit (4 + 32 = 36).
        o.ts = None;
        assert_eq!(o.len(), 36);
        assert_eq!(o.emit(&mut buf), 36);
        assert_eq!(TcpOptions::parse(&buf[..36], false).sack_blocks(), &o.sack[..]);

        // MSS + TS + WS + SACK: 20 bytes used, 2 blocks fit.
        o.mss = Some(1000);
        o.ts = Some((1, 1));
        o.wscale = Some(2);
        assert_eq!(o.len(), 40);
        let n = o.emit(&mut buf);
        assert_eq!(TcpOptions::parse(&buf[..n], true).num_sacks, 2);

        // num_sacks out of range is capped, never indexes past the array.
        o.num_sacks = 200;
        assert!(o.len() <= MAX_TCP_OPTION_SPACE);
        assert_eq!(o.sack_blocks().len(), 4);

        assert_eq!(TcpOptions::default().len(), 0);
        assert!(TcpOptions::default().is_empty());
        assert_eq!(TcpOptions::default().emit(&mut []), 0);
    }

    #[test]
    fn emit_parse_round_trip() {
        let mut rng = XorShift(0x5eed_1234_abcd_0001);
        let mut buf = [0u8; 40];
        for _ in 0..5000 {
            let r = rng.next();
            let mut o = TcpOptions {
                mss: (r & 1 != 0).then(|| (rng.below(65535) + 1) as u16),
                wscale: (r & 2 != 0).then(|| rng.below(15) as u8),
                sack_ok: r & 4 != 0,
                ts: (r & 8 != 0).then(|| (rng.next() as u32, rng.next() as u32)),
                num_sacks: rng.below(5) as u8,
                ..Default::default()
            };
            for b in o.sack.iter_mut() {
                *b = SackBlock {
                    start: rng.next() as u32,
                    end: rng.next() as u32,
                };
            }
            let n = o.emit(&mut buf);
            assert_eq!(n, o.len());
            assert!(n <= MAX_TCP_OPTION_SPACE && n % 4 == 0);
            let back = TcpOptions::parse(&buf[..n], true);
            let kept = back.num_sacks as usize;
            assert!(kept <= o.num_sacks as usize);
            let mut want = o;
            want.num_sacks = kept as u8;
            for b in want.sack[kept..].iter_mut() {
                *b = SackBlock::default();
            }
            assert_eq!(back, want, "{o:?}");
            // All requested blocks kept whenever they fit.
            let fixed = o.len() - if kept > 0 { 4 + 8 * kept } else { 0 };
            if fixed + 4 + 8 * o.num_sacks as usize <= MAX_TCP_OPTION_SPACE {
                assert_eq!(kept, o.num_sacks as usize);
            }
        }
    }

    #[test]
    fn fuzz_options_never_panic() {
        let mut rng = XorShift(0x0dd_ba11_cafe_f00d);
        const KINDS: [u8; 9] = [0, 1, 2, 3, 4, 5, 8, 30, 255];
        let mut raw = [0u8; 64];
        for _ in 0..100_000 {
            let len = rng.below(raw.len() as u64 + 1) as usize;
            for b in raw[..len].iter_mut() {
                *b = match rng.below(4) {
                    0 => KINDS[rng.below(KINDS.len() as u64) as usize],
                    1 => rng.below(12) as u8,
                    _ => rng.next() as u8,
                };
            }
            for syn in [false, true] {
                let o = TcpOptions::parse(&raw[..len], syn);
                assert!(o.num_sacks as usize <= TCP_NUM_SACKS);
                assert!(o.wscale.unwrap_or(0) <= TCP_MAX_WSCALE);
                assert!(syn || (o.mss.is_none() && o.wscale.is_none() && !o.sack_ok));
                let mut hdr = [0u8; TCP_HLEN_MAX];
                let hl = tcp_build_header(&mut hdr, 1, 2, 3, 4, TCPHDR_ACK, 5, &o);
                let th = TcpHdr::new_checked(&hdr[..hl]).unwrap();
                let again = TcpOptions::parse(th.options(), syn);
                assert_eq!(
                    (again.mss, again.wscale, again.sack_ok, again.ts),
                    (o.mss, o.wscale, o.sack_ok, o.ts)
                );
            }
            // The whole header view on random bytes: never panics.
            let th = TcpHdr::new_unchecked(&raw[..len.max(20)]);
            let _ = (th.check_len(), th.options(), th.payload(), th.to_string());
        }
    }

    fn payload(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = XorShift(seed);
        (0..len).map(|_| rng.next() as u8).collect()
    }

    /// Straightforward reference: pseudo-header and segment in one buffer,
    /// RFC 1071 over 16-bit words.
    fn reference(src: [u8; 4], dst: [u8; 4], seg: &[u8]) -> u16 {
        let mut all = Vec::new();
        all.extend_from_slice(&src);
        all.extend_from_slice(&dst);
        all.extend_from_slice(&[0, IPPROTO_TCP]);
        all.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        all.extend_from_slice(seg);
        if all.len() % 2 == 1 {
            all.push(0);
        }
        let mut sum: u32 = 0;
        for w in all.chunks(2) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn checksum_split_segments() {
        let seg = payload(101, 77);
        let want = tcp_v4_check(SRC, DST, &[&seg]);
        assert_eq!(want, reference(SRC, DST, &seg));
        for i in 0..=seg.len() {
            assert_eq!(tcp_v4_check(SRC, DST, &[&seg[..i], &seg[i..]]), want, "split at {i}");
            for j in (i..=seg.len()).step_by(7) {
                assert_eq!(
                    tcp_v4_check(SRC, DST, &[&seg[..i], &seg[i..j], &seg[j..]]),
                    want,
                    "split {i},{j}"
                );
            }
        }
        // Empty pieces anywhere are harmless.
        assert_eq!(tcp_v4_check(SRC, DST, &[&[], &seg[..33], &[], &seg[33..], &[]]), want);
    }

    #[test]
    fn checksum_fill_and_verify() {
        let data = payload(333, 5);
        let mut hdr = [0u8; TCP_HLEN_MAX];
        let opts = TcpOptions {
            ts: Some((123, 456)),
            ..Default::default()
        };
        let hl = tcp_build_header(&mut hdr, 5555, 80, 1, 2, TCPHDR_ACK | TCPHDR_PSH, 1000, &opts);
        let hdr = &mut hdr[..hl];
        let c = tcp_v4_check(SRC, DST, &[hdr, &data[..100], &data[100..201], &data[201..]]);
        TcpHdr::new_unchecked(&mut hdr[..]).set_checksum(c);
        assert!(tcp_v4_verify(SRC, DST, &[hdr, &data[..7], &data[7..]]));
        assert!(!tcp_v4_verify(DST, [192, 168, 1, 21], &[hdr, &data]));
        let mut bad = data.clone();
        bad[200] ^= 0x10;
        assert!(!tcp_v4_verify(SRC, DST, &[hdr, &bad]));

        // Single-buffer helpers agree.
        let mut whole = hdr.to_vec();
        whole.extend_from_slice(&data);
        let th = TcpHdr::new_checked(&whole[..]).unwrap();
        assert!(th.verify_checksum(SRC, DST));
        let mut th = TcpHdr::new_checked(&mut whole[..]).unwrap();
        th.set_checksum(0xdead);
        assert!(!th.verify_checksum(SRC, DST));
        th.fill_checksum(SRC, DST);
        assert_eq!(th.checksum(), c);
    }

    #[test]
    fn etherparse_oracle() {
        let mut rng = XorShift(99);
        for (plen, opts) in [
            (0usize, syn_opts()),
            (1, TcpOptions::default()),
            (
                100,
                TcpOptions {
                    ts: Some((1, 2)),
                    ..Default::default()
                },
            ),
            (
                1447,
                TcpOptions {
                    ts: Some((u32::MAX, 7)),
                    num_sacks: 1,
                    ..Default::default()
                },
            ),
        ] {
            let data = payload(plen, rng.next());
            let mut hdr = [0u8; TCP_HLEN_MAX];
            let (seq, ack) = (rng.next() as u32, rng.next() as u32);
            let hl = tcp_build_header(&mut hdr, 1234, 443, seq, ack, TCPHDR_ACK | TCPHDR_PSH, 29200, &opts);
            let ours = tcp_v4_check(SRC, DST, &[&hdr[..hl], &data]);

            let (eh, rest) = etherparse::TcpHeader::from_slice(&hdr[..hl]).unwrap();
            assert!(rest.is_empty());
            assert_eq!((eh.source_port, eh.destination_port), (1234, 443));
            assert_eq!((eh.sequence_number, eh.acknowledgment_number), (seq, ack));
            assert!(eh.ack && eh.psh && !eh.syn);
            assert_eq!(eh.window_size, 29200);
            assert_eq!(eh.header_len(), hl);
            assert_eq!(eh.calc_checksum_ipv4_raw(SRC, DST, &data).unwrap(), ours);
        }

        // etherparse decodes our SYN options to the same elements.
        use etherparse::TcpOptionElement::*;
        let (eh, _) = etherparse::TcpHeader::from_slice(&SYN).unwrap();
        let elems: Vec<_> = eh.options_iterator().map(|e| e.unwrap()).collect();
        assert_eq!(
            elems,
            vec![
                MaximumSegmentSize(1460),
                SelectiveAcknowledgementPermitted,
                Timestamp(0x0102_0304, 0),
                Noop,
                WindowScale(7)
            ]
        );
    }

    #[test]
    fn sequence_arithmetic() {
        assert!(before(1, 2) && !before(2, 1) && !before(5, 5));
        assert!(after(2, 1) && !after(1, 2) && !after(5, 5));
        // Across the wrap.
        assert!(before(0xffff_fff0, 0x10));
        assert!(after(0x10, 0xffff_fff0));
        assert!(before(u32::MAX, 0));
        assert!(after(0, u32::MAX));
        // Half the space apart: 2^31 ahead counts as "before" (i32::MIN < 0).
        assert!(before(0, 0x8000_0000) && before(0x8000_0000, 0));
        assert!(before(0, 0x7fff_ffff) && !before(0x7fff_ffff, 0));

        assert!(between(5, 5, 10) && between(10, 5, 10) && between(7, 5, 10));
        assert!(!between(4, 5, 10) && !between(11, 5, 10));
        assert!(between(0xffff_fffe, 0xffff_fff0, 0x10));
        assert!(between(3, 0xffff_fff0, 0x10));
        assert!(between(0x10, 0xffff_fff0, 0x10));
        assert!(!between(0x11, 0xffff_fff0, 0x10));
        assert!(!between(0xffff_ffef, 0xffff_fff0, 0x10));
    }
}
