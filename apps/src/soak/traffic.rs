//! The soak's traffic (see `soak.rs`): each application's state and its turn, and how each
//! checks the bytes it receives.

use std::collections::{HashMap, VecDeque};

use blink_glue::{Glue, GlueError, Socket};

/// Largest churn request, bytes.
pub(super) const MAX_REQUEST: u32 = 16 * 1024;

/// A failed check: what went wrong, in words.
pub(super) struct Fail(pub(super) String);

macro_rules! fail {
    ($($t:tt)*) => { return Err(Fail(format!($($t)*))) };
}

/// Byte `off` of stream `id`: a multiplicative hash of both, so a byte that moved, repeated
/// or came from another connection does not match.
pub(super) fn pat(id: u64, off: u64) -> u8 {
    let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(off);
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
}

pub(super) fn fill(id: u64, off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pat(id, off + i as u64);
    }
}

/// Check `got` against stream `id` from `off`; the first wrong byte names itself.
pub(super) fn check(what: &str, id: u64, off: u64, got: &[u8]) -> Result<(), Fail> {
    for (i, &b) in got.iter().enumerate() {
        let want = pat(id, off + i as u64);
        if b != want {
            // Every other wrong byte too (up to 8), with its XOR: two single-bit errors that
            // cancel in the 16-bit ones' complement sum look different from a shifted stream.
            let others: Vec<String> = got[i + 1..]
                .iter()
                .enumerate()
                .filter_map(|(j, &g)| {
                    let k = off + (i + 1 + j) as u64;
                    let w = pat(id, k);
                    (g != w).then(|| format!("{k} (xor {:#04x})", g ^ w))
                })
                .take(8)
                .collect();
            fail!(
                "{what} {id}: byte {} is {b:#04x}, expected {want:#04x} (xor {:#04x}); other wrong bytes: [{}]",
                off + i as u64,
                b ^ want,
                others.join(", ")
            );
        }
    }
    Ok(())
}

/// CRC-32 (IEEE), bitwise: raw packets carry it because IP checks only its header.
pub(super) fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = (c >> 1) ^ (0xEDB8_8320 & (c & 1).wrapping_neg());
        }
    }
    !c
}

/// xorshift64*: the traffic's choices.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED | 1)
    }
    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How a churn connection ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum CloseMode {
    /// The client half-closes after its request; the server closes at the end of the stream.
    ClientFirst = 0,
    /// The server closes once it has echoed the whole request (TIME-WAIT on the server).
    ServerFirst = 1,
    /// The client closes after `abort_at` request bytes (a reset if echoed data is unread).
    Abort = 2,
}

/// Request header: id, payload length, close mode (little endian u32 each).
pub(super) const HDR: usize = 12;

pub(super) struct ChurnClient {
    pub(super) id: u32,
    pub(super) len: u32,
    pub(super) mode: CloseMode,
    pub(super) abort_at: u32,
    /// Request bytes (header included) handed to TCP.
    pub(super) sent: usize,
    /// Echoed bytes checked.
    pub(super) echoed: u32,
    pub(super) shut: bool,
}

pub(super) struct ChurnServer {
    pub(super) hdr: Vec<u8>,
    pub(super) id: u32,
    pub(super) len: u32,
    pub(super) mode: CloseMode,
    /// Payload bytes checked.
    pub(super) got: u32,
    /// Checked bytes not yet echoed (TCP refused them for now).
    pub(super) pending: VecDeque<u8>,
    pub(super) eof: bool,
}

pub(super) struct BulkTx {
    pub(super) id: u32,
    /// Bytes handed to TCP, the 4-byte id first.
    pub(super) sent: u64,
}

pub(super) struct BulkRx {
    pub(super) hdr: Vec<u8>,
    /// Stream bytes checked (after the id).
    pub(super) got: u64,
}

pub(super) enum Conn {
    ChurnClient(ChurnClient),
    ChurnServer(ChurnServer),
    BulkTx(BulkTx),
    BulkRx(BulkRx),
}

#[derive(Default, Clone, Copy)]
pub(super) struct Totals {
    pub(super) conns_done: u64,
    pub(super) conns_aborted: u64,
    pub(super) server_early_ends: u64,
    pub(super) bytes_verified: u64,
    pub(super) udp_sent: u64,
    pub(super) udp_answered: u64,
    pub(super) udp_lost: u64,
    pub(super) udp_extra: u64,
    pub(super) raw_sent: u64,
    pub(super) raw_answered: u64,
    pub(super) raw_lost: u64,
    pub(super) raw_bad_crc: u64,
    /// UDP datagrams damaged on the wire in a way the UDP checksum cannot detect.
    pub(super) udp_csum_blind: u64,
    pub(super) no_ports: u64,
}

/// What a connection's turn decided.
pub(super) enum Turn {
    Keep,
    /// Closed by the application (the socket is gone).
    Done,
}

pub(super) fn kind(raw: bool) -> &'static str {
    if raw {
        "raw"
    } else {
        "udp"
    }
}

/// Stream ids of datagram payloads (apart from TCP's).
pub(super) const UDP_TAG: u64 = 1 << 40;
pub(super) const RAW_TAG: u64 = 2 << 40;
/// Datagram header: sequence (u64), payload length (u32), and for raw a CRC-32 (u32) of all
/// the rest.
pub(super) const DGRAM_HDR: usize = 12;

pub(super) fn build_dgram(raw: bool, seq: u64, len: usize) -> Vec<u8> {
    let crc_len = if raw { 4 } else { 0 };
    let mut p = vec![0u8; DGRAM_HDR + crc_len + len];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    let tag = if raw { RAW_TAG } else { UDP_TAG };
    fill(tag ^ seq, 0, &mut p[DGRAM_HDR + crc_len..]);
    if raw {
        let c = crc32(&[&p[..DGRAM_HDR], &p[DGRAM_HDR + 4..]].concat());
        p[DGRAM_HDR..DGRAM_HDR + 4].copy_from_slice(&c.to_le_bytes());
    }
    p
}

/// Check a datagram's payload: its sequence, or None for a raw packet whose CRC shows the
/// wire damaged it (counted; UDP's own checksum keeps damaged datagrams away).
pub(super) fn check_dgram(raw: bool, p: &[u8], t: &mut Totals) -> Result<Option<u64>, Fail> {
    let crc_len = if raw { 4 } else { 0 };
    if raw {
        let ok = p.len() >= DGRAM_HDR + 4 && {
            let want = u32::from_le_bytes(p[DGRAM_HDR..DGRAM_HDR + 4].try_into().expect("4 bytes"));
            crc32(&[&p[..DGRAM_HDR], &p[DGRAM_HDR + 4..]].concat()) == want
        };
        if !ok {
            t.raw_bad_crc += 1;
            return Ok(None);
        }
    }
    if p.len() < DGRAM_HDR + crc_len {
        fail!("{} datagram of {} bytes, shorter than its header", kind(raw), p.len());
    }
    let seq = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(p[8..12].try_into().expect("4 bytes")) as usize;
    let data = &p[DGRAM_HDR + crc_len..];
    if data.len() != len {
        fail!(
            "{} datagram {seq}: {} payload bytes, its header says {len}",
            kind(raw),
            data.len()
        );
    }
    let tag = if raw { RAW_TAG } else { UDP_TAG };
    if !raw {
        // The 16-bit ones' complement checksum cannot see errors that cancel in its sum (two
        // frames of one fragmented datagram each with a flipped bit, 0->1 in one and 1->0 in
        // the other, at the same place of a 16-bit word): the wire can deliver those, and
        // the stack cannot know. Counted apart; any other difference is the stack's fault.
        let want = build_dgram(false, seq, len);
        if p != &want[..] && ones_sum(p) == ones_sum(&want) {
            t.udp_csum_blind += 1;
            return Ok(None);
        }
    }
    check(&format!("{} datagram (stream id)", kind(raw)), tag ^ seq, 0, data)?;
    t.bytes_verified += len as u64;
    Ok(Some(seq))
}

/// The ones' complement sum of `b` as 16-bit big-endian words, modulo 0xffff (where +0 and
/// -0 are one number). The payload starts at an even offset of the UDP datagram (after the
/// 8-byte header), so its words are the checksum's words.
fn ones_sum(b: &[u8]) -> u64 {
    let s: u64 = b
        .chunks(2)
        .map(|w| ((w[0] as u64) << 8) | w.get(1).copied().unwrap_or(0) as u64)
        .sum();
    s % 0xffff
}

pub(super) fn send_err(what: &str, e: GlueError) -> Fail {
    Fail(format!("{what}: {e}"))
}

pub(super) fn churn_client(
    g: &mut Glue<()>,
    s: Socket,
    c: &mut ChurnClient,
    t: &mut Totals,
    buf: &mut [u8],
) -> Result<Turn, Fail> {
    let total = HDR + c.len as usize;
    if c.mode == CloseMode::Abort && c.sent >= c.abort_at as usize {
        g.close(s).map_err(|e| send_err("close (abort)", e))?;
        t.conns_aborted += 1;
        return Ok(Turn::Done);
    }
    let state = g.tcp_state(s).map_err(|e| send_err("tcp_state", e))?;
    let limit = if c.mode == CloseMode::Abort {
        c.abort_at as usize
    } else {
        total
    };
    if c.sent < limit && state.can_send() {
        let n = (limit - c.sent).min(buf.len());
        let chunk = &mut buf[..n];
        let mut hdr = [0u8; HDR];
        hdr[..4].copy_from_slice(&c.id.to_le_bytes());
        hdr[4..8].copy_from_slice(&c.len.to_le_bytes());
        hdr[8..].copy_from_slice(&(c.mode as u32).to_le_bytes());
        for (i, b) in chunk.iter_mut().enumerate() {
            let off = c.sent + i;
            *b = if off < HDR {
                hdr[off]
            } else {
                pat(c.id as u64, (off - HDR) as u64)
            };
        }
        match g.send(s, chunk) {
            Ok(n) => c.sent += n,
            Err(GlueError::WouldBlock) => {}
            Err(e) => fail!("churn connection {} ({:?}): send: {e}", c.id, c.mode),
        }
    }
    if c.sent == total && c.mode == CloseMode::ClientFirst && !c.shut {
        g.shutdown(s).map_err(|e| send_err("shutdown", e))?;
        c.shut = true;
    }
    loop {
        match g.recv(s, buf) {
            Ok(0) => {
                if c.echoed != c.len || c.mode == CloseMode::Abort {
                    fail!(
                        "churn connection {} ({:?}): end of stream after {} of {} echoed bytes",
                        c.id,
                        c.mode,
                        c.echoed,
                        c.len
                    );
                }
                g.close(s).map_err(|e| send_err("close", e))?;
                t.conns_done += 1;
                return Ok(Turn::Done);
            }
            Ok(n) => {
                if c.echoed as usize + n > c.len as usize {
                    fail!(
                        "churn connection {}: {} bytes echoed, {} sent",
                        c.id,
                        c.echoed as usize + n,
                        c.len
                    );
                }
                check("churn connection (echo)", c.id as u64, c.echoed as u64, &buf[..n])?;
                c.echoed += n as u32;
                t.bytes_verified += n as u64;
            }
            Err(GlueError::WouldBlock) => break,
            Err(e) => fail!(
                "churn connection {} ({:?}, {} of {} request bytes sent, {} echoed): receive: {e}",
                c.id,
                c.mode,
                c.sent,
                total,
                c.echoed
            ),
        }
    }
    Ok(Turn::Keep)
}

pub(super) fn churn_server(
    g: &mut Glue<()>,
    s: Socket,
    c: &mut ChurnServer,
    t: &mut Totals,
    buf: &mut [u8],
) -> Result<Turn, Fail> {
    let early_end = |g: &mut Glue<()>, t: &mut Totals| -> Result<Turn, Fail> {
        t.server_early_ends += 1;
        g.close(s).map_err(|e| send_err("close (server)", e))?;
        Ok(Turn::Done)
    };
    while !c.pending.is_empty() {
        let (front, _) = c.pending.as_slices();
        match g.send(s, front) {
            Ok(0) | Err(GlueError::WouldBlock) => break,
            Ok(n) => {
                c.pending.drain(..n);
            }
            Err(GlueError::Connection(_)) | Err(GlueError::NotConnected) => return early_end(g, t),
            Err(e) => fail!("churn server {}: send: {e}", c.id),
        }
    }
    while !c.eof && c.pending.len() < 64 * 1024 {
        match g.recv(s, buf) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                let mut data = &buf[..n];
                if c.hdr.len() < HDR {
                    let k = (HDR - c.hdr.len()).min(data.len());
                    c.hdr.extend_from_slice(&data[..k]);
                    data = &data[k..];
                    if c.hdr.len() == HDR {
                        c.id = u32::from_le_bytes(c.hdr[..4].try_into().expect("4"));
                        c.len = u32::from_le_bytes(c.hdr[4..8].try_into().expect("4"));
                        c.mode = match u32::from_le_bytes(c.hdr[8..].try_into().expect("4")) {
                            0 => CloseMode::ClientFirst,
                            1 => CloseMode::ServerFirst,
                            2 => CloseMode::Abort,
                            m => fail!("churn request {}: close mode {m} does not exist", c.id),
                        };
                        if c.len == 0 || c.len > MAX_REQUEST {
                            fail!("churn request {}: length {} out of range", c.id, c.len);
                        }
                    }
                }
                if !data.is_empty() {
                    if c.got as usize + data.len() > c.len as usize {
                        fail!(
                            "churn request {}: {} bytes, its header says {}",
                            c.id,
                            c.got as usize + data.len(),
                            c.len
                        );
                    }
                    check("churn connection (request)", c.id as u64, c.got as u64, data)?;
                    c.got += data.len() as u32;
                    t.bytes_verified += data.len() as u64;
                    c.pending.extend(data);
                }
            }
            Err(GlueError::WouldBlock) => break,
            Err(GlueError::Connection(_)) => return early_end(g, t),
            Err(e) => fail!("churn server {}: receive: {e}", c.id),
        }
    }
    let complete = c.hdr.len() == HDR && c.got == c.len;
    if c.pending.is_empty() && complete && (c.mode == CloseMode::ServerFirst || c.eof) {
        g.close(s).map_err(|e| send_err("close (server)", e))?;
        return Ok(Turn::Done);
    }
    if c.eof && !complete {
        return early_end(g, t);
    }
    Ok(Turn::Keep)
}

pub(super) fn bulk_tx(
    g: &mut Glue<()>,
    s: Socket,
    c: &mut BulkTx,
    draining: bool,
    buf: &mut [u8],
) -> Result<Turn, Fail> {
    let state = g.tcp_state(s).map_err(|e| send_err("tcp_state (bulk)", e))?;
    if !state.can_send() {
        return Ok(Turn::Keep);
    }
    if draining {
        // A graceful close: what is queued still goes out, then the FIN.
        g.close(s).map_err(|e| send_err("close (bulk)", e))?;
        return Ok(Turn::Done);
    }
    let room = g
        .calc_size_of_data_to_send(s)
        .map_err(|e| send_err("bulk send space", e))?;
    let n = room.min(buf.len());
    if n == 0 {
        return Ok(Turn::Keep);
    }
    let id = c.id.to_le_bytes();
    for (i, b) in buf[..n].iter_mut().enumerate() {
        let off = c.sent + i as u64;
        *b = if off < 4 {
            id[off as usize]
        } else {
            pat(c.id as u64, off - 4)
        };
    }
    match g.send(s, &buf[..n]) {
        Ok(k) => c.sent += k as u64,
        Err(GlueError::WouldBlock) => {}
        Err(e) => fail!("bulk stream {}: send: {e}", c.id),
    }
    Ok(Turn::Keep)
}

pub(super) fn bulk_rx(
    g: &mut Glue<()>,
    s: Socket,
    c: &mut BulkRx,
    sent: &HashMap<u32, u64>,
    t: &mut Totals,
    buf: &mut [u8],
) -> Result<Turn, Fail> {
    loop {
        match g.recv(s, buf) {
            Ok(0) => {
                let id = if c.hdr.len() == 4 {
                    u32::from_le_bytes(c.hdr[..].try_into().expect("4"))
                } else {
                    fail!("bulk stream ended after {} bytes, before its id", c.hdr.len())
                };
                match sent.get(&id) {
                    Some(&n) if n == c.got + 4 => {}
                    Some(&n) => fail!("bulk stream {id}: {} bytes received, {} sent", c.got + 4, n),
                    None => fail!("bulk stream {id}: end of stream while its sender is still sending"),
                }
                g.close(s).map_err(|e| send_err("close (bulk receiver)", e))?;
                return Ok(Turn::Done);
            }
            Ok(n) => {
                let mut data = &buf[..n];
                if c.hdr.len() < 4 {
                    let k = (4 - c.hdr.len()).min(data.len());
                    c.hdr.extend_from_slice(&data[..k]);
                    data = &data[k..];
                }
                if !data.is_empty() {
                    let id = u32::from_le_bytes(c.hdr[..].try_into().expect("4"));
                    check("bulk stream", id as u64, c.got, data)?;
                    c.got += data.len() as u64;
                    t.bytes_verified += data.len() as u64;
                }
            }
            Err(GlueError::WouldBlock) => return Ok(Turn::Keep),
            Err(e) => fail!("bulk stream: receive after {} bytes: {e}", c.got),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_first_wrong_byte() {
        let mut b = vec![0u8; 300];
        fill(5, 1000, &mut b);
        assert!(check("s", 5, 1000, &b).is_ok());
        // Another stream, or the same one shifted by a byte, does not pass.
        assert!(check("s", 6, 1000, &b).is_err());
        assert!(check("s", 5, 1001, &b).is_err());
        b[200] ^= 0x10;
        let Err(Fail(m)) = check("s", 5, 1000, &b) else {
            panic!("a flipped bit passed")
        };
        assert!(m.contains("byte 1200"), "{m}");
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn datagram_checks() {
        let mut t = Totals::default();
        for raw in [false, true] {
            let p = build_dgram(raw, 42, 500);
            assert_eq!(check_dgram(raw, &p, &mut t).ok().flatten(), Some(42));
            // Truncated: UDP's length no longer matches its header; raw's CRC fails (counted).
            let short = &p[..p.len() - 1];
            if raw {
                assert_eq!(check_dgram(true, short, &mut t).ok().flatten(), None);
            } else {
                assert!(check_dgram(false, short, &mut t).is_err());
            }
        }
        assert_eq!(t.bytes_verified, 1000);
        // A raw packet with any bit flipped fails its CRC and is counted, not taken.
        let p = build_dgram(true, 9, 64);
        for bit in [0, 7 * 8 + 3, (p.len() - 1) * 8] {
            let mut q = p.clone();
            q[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(check_dgram(true, &q, &mut t).ok().flatten(), None);
        }
        assert_eq!(t.raw_bad_crc, 3 + 1);
        // A UDP payload with a wrong byte (its checksum would have to have been fooled).
        let mut q = build_dgram(false, 3, 64);
        q[40] ^= 1;
        assert!(check_dgram(false, &q, &mut t).is_err());
        // Two flips the UDP checksum cannot see (same bit of a 16-bit word, 0->1 and 1->0)
        // are counted apart; the same two flips in different bits of the words are not.
        let p = build_dgram(false, 3, 64);
        let (i, j) = (21usize, 41usize);
        let bit = (0..8)
            .find(|b| (p[i] >> b) & 1 != (p[j] >> b) & 1)
            .expect("two bytes differing in a bit");
        let mut q = p.clone();
        q[i] ^= 1 << bit;
        q[j] ^= 1 << bit;
        assert_eq!(check_dgram(false, &q, &mut t).ok().flatten(), None);
        assert_eq!(t.udp_csum_blind, 1);
        let mut q = p.clone();
        q[i] ^= 1 << bit;
        q[j + 1] ^= 1 << bit;
        assert!(
            check_dgram(false, &q, &mut t).is_err(),
            "the checksum would have seen these"
        );
    }
}
