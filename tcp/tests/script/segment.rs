//! The script's segment syntax (`<` and `>` lines) and the segments the stack sends. A sent
//! frame is read without blink's code: etherparse reads and checksums the IPv4 and TCP
//! headers, and [`decode_options`] (this harness's own) reads the TCP options from the raw
//! bytes, so a bug in blink's `TcpOptions` cannot hide itself.

use std::fmt::{self, Display};

use etherparse::{IpNumber, Ipv4Header, Ipv4Slice, TcpSlice};

use super::{err, REMOTE_IP, REMOTE_MAC, STACK_IP};

pub const TCPHDR_FIN: u8 = 0x01;
pub const TCPHDR_SYN: u8 = 0x02;
pub const TCPHDR_RST: u8 = 0x04;
pub const TCPHDR_PSH: u8 = 0x08;
pub const TCPHDR_ACK: u8 = 0x10;
pub const TCPHDR_URG: u8 = 0x20;

/// A number in a script; `None` is `*`.
pub type Val = Option<u64>;

/// One TCP option: as a script states it (`*` allowed) or as [`decode_options`] read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Opt {
    /// Kind 2.
    Mss(Val),
    /// Kind 4.
    SackOk,
    /// Kind 8: TS val, TS ecr.
    Ts(Val, Val),
    /// Kind 1.
    Nop,
    /// Kind 0 (and the zero padding after it).
    Eol,
    /// Kind 3.
    Wscale(Val),
    /// Kind 5: (left, right) edges.
    Sack(Vec<(u64, u64)>),
    /// Any other kind, with its data bytes (after kind and length): script syntax `kind K
    /// [HEX]`.
    Raw(u8, Vec<u8>),
}

/// The options part of a `<`/`>` line.
#[derive(Debug, Clone, PartialEq)]
pub enum Opts {
    /// No `<...>` on the line: allowed on `<` lines (no options), a parse error on `>` lines.
    Missing,
    /// `<*>`: the options are not checked.
    Any,
    /// `<...>`, perhaps empty: exactly these options, in this order (padding aside).
    List(Vec<Opt>),
}

/// A `<` or `>` line.
pub struct SegSpec {
    pub flags: u8,
    pub seq: Val,
    pub end: Val,
    pub len: Val,
    pub ack: Option<Val>,
    pub win: Option<Val>,
    pub opts: Opts,
    /// The urgent pointer (`urg N`, `<` lines only; 0 without).
    pub urg: u16,
}

/// A segment the stack sent, with the IPv4 header fields the harness checks.
pub struct Out {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    /// Every option in wire order, padding (nop, eol) included.
    pub opts: Vec<Opt>,
    pub payload: Vec<u8>,
    pub ip: IpFields,
}

/// The IPv4 header fields of a sent segment that [`super::Script`] checks against its rules.
#[derive(Debug, Clone, Copy)]
pub struct IpFields {
    pub ihl: u8,
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    pub mf: bool,
    pub frag_off: u16,
    pub ttl: u8,
}

pub const FLAG_CHARS: [(u8, char); 6] = [
    (TCPHDR_SYN, 'S'),
    (TCPHDR_FIN, 'F'),
    (TCPHDR_RST, 'R'),
    (TCPHDR_PSH, 'P'),
    (TCPHDR_URG, 'U'),
    (TCPHDR_ACK, '.'),
];

pub fn fmt_flags(f: u8) -> String {
    FLAG_CHARS.iter().filter(|(b, _)| f & b != 0).map(|&(_, c)| c).collect()
}

pub fn val(s: &str) -> Result<Val, String> {
    if s == "*" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| format!("bad number `{s}`"))
}

pub fn parse_seg(s: &str) -> Result<SegSpec, String> {
    let (main, opts) = match s.split_once('<') {
        Some((main, o)) => {
            let o = o.trim_end().strip_suffix('>').ok_or("options must end with `>`")?;
            if o.trim() == "*" {
                (main, Opts::Any)
            } else {
                let opts = o.split(',').map(str::trim).filter(|o| !o.is_empty()).map(parse_opt);
                (main, Opts::List(opts.collect::<Result<_, _>>()?))
            }
        }
        None => (s, Opts::Missing),
    };
    let w: Vec<&str> = main.split_whitespace().collect();
    let [flags, range, rest @ ..] = w.as_slice() else {
        return Err("FLAGS SEQ:END(LEN) ...".into());
    };
    let mut f = 0;
    // `-`: no flags at all (an illegal segment, tests/pd_flags.rs).
    for c in flags.chars().filter(|_| *flags != "-") {
        f |= FLAG_CHARS
            .iter()
            .find(|(_, ch)| *ch == c)
            .ok_or(format!("bad flag `{c}`"))?
            .0;
    }
    let bad = || format!("`{range}`: SEQ:END(LEN) expected");
    let (seq, r) = range.split_once(':').ok_or_else(bad)?;
    let (end, len) = r.strip_suffix(')').and_then(|r| r.split_once('(')).ok_or_else(bad)?;
    let (seq, end, len) = (val(seq)?, val(end)?, val(len)?);
    if let (Some(a), Some(b), Some(l)) = (seq, end, len) {
        if b.wrapping_sub(a) != l {
            return Err(format!("{range}: END - SEQ != LEN"));
        }
    }
    let mut spec = SegSpec {
        flags: f,
        seq,
        end,
        len,
        ack: None,
        win: None,
        opts,
        urg: 0,
    };
    for kv in rest.chunks(2) {
        match kv {
            ["ack", v] => spec.ack = Some(val(v)?),
            ["urg", v] => spec.urg = val(v)?.and_then(|v| u16::try_from(v).ok()).ok_or("urg: 0..65535")?,
            ["win", v] => spec.win = Some(val(v)?),
            _ => return Err(format!("unexpected `{}`", kv.join(" "))),
        }
    }
    Ok(spec)
}

pub fn parse_opt(o: &str) -> Result<Opt, String> {
    let block = |b: &&str| -> Result<(u64, u64), String> {
        let (a, e) = b.split_once(':').ok_or("sack A:B")?;
        Ok((val(a)?.ok_or("sack `*`")?, val(e)?.ok_or("sack `*`")?))
    };
    let byte = |s: &str| s.parse::<u8>().map_err(|_| format!("bad option kind `{s}`"));
    Ok(match o.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["mss", v] => Opt::Mss(val(v)?),
        ["sackOK"] => Opt::SackOk,
        ["TS", "val", v, "ecr", e] => Opt::Ts(val(v)?, val(e)?),
        ["nop"] => Opt::Nop,
        ["eol"] => Opt::Eol,
        ["wscale", v] => Opt::Wscale(val(v)?),
        ["sack", blocks @ ..] => Opt::Sack(blocks.iter().map(block).collect::<Result<_, _>>()?),
        ["kind", k] => Opt::Raw(byte(k)?, Vec::new()),
        ["kind", k, hex] if hex.len() % 2 == 0 => {
            let data = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| format!("bad hex `{hex}`")))
                .collect::<Result<_, _>>()?;
            Opt::Raw(byte(k)?, data)
        }
        _ => return Err(format!("unknown option `{o}`")),
    })
}

/// The harness's own TCP option decoder (RFC 9293 3.1, RFC 7323, RFC 2018), over the raw
/// option bytes of a segment. Kinds 0 (and the zero padding after it), 1, 2, 3, 4, 5 and 8
/// are decoded; any other kind is kept raw. A length byte that is missing, under 2, past the
/// end, or wrong for its kind (MSS 4, window scale 3, SACK permitted 2, timestamps 10, SACK
/// 2 + 8n with n of 1 to 4), or a non-zero byte after EOL, is an error: the stack must never
/// send one.
pub fn decode_options(b: &[u8]) -> Result<Vec<Opt>, String> {
    let be32 = |d: &[u8]| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as u64;
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let kind = b[i];
        match kind {
            0 => {
                v.push(Opt::Eol);
                if let Some(j) = b[i + 1..].iter().position(|&x| x != 0) {
                    return Err(format!(
                        "option byte {} after EOL is {:#04x}, not padding",
                        i + 1 + j,
                        b[i + 1 + j]
                    ));
                }
                break;
            }
            1 => {
                v.push(Opt::Nop);
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = b.get(i + 1) else {
            return Err(format!("option kind {kind} at byte {i}: no length byte"));
        };
        let len = len as usize;
        if len < 2 || i + len > b.len() {
            return Err(format!(
                "option kind {kind} at byte {i}: length {len} (2 to {} fit)",
                b.len() - i
            ));
        }
        let d = &b[i + 2..i + len];
        let need = |ok: bool, what: &str| match ok {
            true => Ok(()),
            false => Err(format!("option kind {kind} at byte {i}: length {len}, must be {what}")),
        };
        v.push(match kind {
            2 => {
                need(len == 4, "4")?;
                Opt::Mss(Some(u16::from_be_bytes([d[0], d[1]]) as u64))
            }
            3 => {
                need(len == 3, "3")?;
                Opt::Wscale(Some(d[0] as u64))
            }
            4 => {
                need(len == 2, "2")?;
                Opt::SackOk
            }
            5 => {
                need(
                    (10..=34).contains(&len) && (len - 2).is_multiple_of(8),
                    "2 + 8n, n of 1 to 4",
                )?;
                Opt::Sack(d.chunks(8).map(|c| (be32(&c[..4]), be32(&c[4..]))).collect())
            }
            8 => {
                need(len == 10, "10")?;
                Opt::Ts(Some(be32(&d[..4])), Some(be32(&d[4..])))
            }
            _ => Opt::Raw(kind, d.to_vec()),
        });
        i += len;
    }
    Ok(v)
}

/// `want` (from a script, `*` allowed) against `got` (from a segment).
pub fn opt_matches(want: &Opt, got: &Opt) -> bool {
    let eq = |w: &Val, g: &Val| w.is_none() || w == g;
    match (want, got) {
        (Opt::Mss(w), Opt::Mss(g)) | (Opt::Wscale(w), Opt::Wscale(g)) => eq(w, g),
        (Opt::Ts(wv, we), Opt::Ts(gv, ge)) => eq(wv, gv) && eq(we, ge),
        (Opt::Sack(w), Opt::Sack(g)) => w
            .iter()
            .map(|&(a, b)| (a as u32 as u64, b as u32 as u64))
            .eq(g.iter().copied()),
        (w, g) => w == g,
    }
}

/// Options without their padding: scripts are compared on what the options say, not on
/// where the stack put its nops.
pub fn unpadded(o: &[Opt]) -> Vec<&Opt> {
    o.iter().filter(|o| !matches!(o, Opt::Nop | Opt::Eol)).collect()
}

impl Display for Opt {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let v = |v: &Val| v.map_or("*".to_string(), |v| v.to_string());
        match self {
            Opt::Mss(m) => write!(f, "mss {}", v(m)),
            Opt::SackOk => write!(f, "sackOK"),
            Opt::Ts(a, b) => write!(f, "TS val {} ecr {}", v(a), v(b)),
            Opt::Nop => write!(f, "nop"),
            Opt::Eol => write!(f, "eol"),
            Opt::Wscale(w) => write!(f, "wscale {}", v(w)),
            Opt::Sack(b) => write!(
                f,
                "sack {}",
                b.iter().map(|(a, b)| format!("{a}:{b}")).collect::<Vec<_>>().join(" ")
            ),
            Opt::Raw(k, d) if d.is_empty() => write!(f, "kind {k}"),
            Opt::Raw(k, d) => write!(
                f,
                "kind {k} {}",
                d.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        }
    }
}

pub fn join<T: Display>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter().map(|o| o.to_string()).collect::<Vec<_>>().join(",")
}

/// Read a frame the stack sent, with etherparse (IPv4 and TCP headers, both checksums) and
/// [`decode_options`]; nothing of blink's. Only what no script could expect fails here
/// (wrong addresses, bad checksums, malformed options); the IP rules are [`super::Script`]'s.
pub fn parse_out(frame: &[u8]) -> Result<Out, String> {
    if frame.len() < 14 || frame[12..14] != [8, 0] || frame[0..6] != REMOTE_MAC {
        return Err(format!("not an IPv4 frame to the remote: {frame:02x?}"));
    }
    let ip = Ipv4Slice::from_slice(&frame[14..]).map_err(err)?;
    let h = ip.header().to_header();
    if h.header_checksum != h.calc_header_checksum() || h.protocol != IpNumber::TCP {
        return Err("bad IPv4 checksum or not TCP".into());
    }
    if (h.source, h.destination) != (STACK_IP.octets(), REMOTE_IP.octets()) {
        return Err(format!("addresses {:?} -> {:?}", h.source, h.destination));
    }
    let seg = ip.payload().payload;
    let ep = TcpSlice::from_slice(seg).map_err(err)?;
    let csum = ep.calc_checksum_ipv4(h.source, h.destination).map_err(err)?;
    if csum != ep.checksum() {
        return Err(format!(
            "TCP checksum {:#06x}, etherparse computes {csum:#06x}",
            ep.checksum()
        ));
    }
    let opts = decode_options(ep.options()).map_err(|e| format!("malformed TCP options {:02x?}: {e}", ep.options()))?;
    Ok(Out {
        sport: ep.source_port(),
        dport: ep.destination_port(),
        seq: ep.sequence_number(),
        ack: ep.acknowledgment_number(),
        // Byte 13 whole: the six classic flags plus ECE/CWR, which no script expects.
        flags: seg[13],
        win: ep.window_size(),
        opts,
        payload: ep.payload().to_vec(),
        ip: IpFields {
            ihl: frame[14] & 0x0f,
            tos: frame[15],
            id: h.identification,
            df: h.dont_fragment,
            mf: h.more_fragments,
            frag_off: h.fragment_offset.value(),
            ttl: h.time_to_live,
        },
    })
}

/// Recompute the IPv4 header and TCP checksums of an Ethernet frame (for self-tests that
/// alter what the stack sent, so only the alteration is wrong).
pub fn fix_checksums(frame: &mut [u8]) {
    let ihl = (frame[14] & 0x0f) as usize * 4;
    frame[24..26].fill(0);
    let (h, _) = Ipv4Header::from_slice(&frame[14..]).expect("IPv4 header");
    frame[24..26].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    let tcp = 14 + ihl;
    let len = (h.total_len as usize).min(frame.len() - 14) - ihl;
    frame[tcp + 16..tcp + 18].fill(0);
    let csum = TcpSlice::from_slice(&frame[tcp..tcp + len])
        .map(|t| t.calc_checksum_ipv4(h.source, h.destination))
        .expect("TCP header")
        .expect("TCP length");
    frame[tcp + 16..tcp + 18].copy_from_slice(&csum.to_be_bytes());
}
