//! The script's segment syntax (`<` and `>` lines) and the segments the stack sends, parsed
//! with the crate's own `TcpHdr`/`TcpOptions` and checked with etherparse.

use std::fmt::{self, Display};

use blink_tcp::tcphdr::*;
use etherparse::{IpNumber, Ipv4Slice, TcpSlice};

use super::{err, REMOTE_IP, REMOTE_MAC, STACK_IP};

/// A number in a script; `None` is `*`.
pub(super) type Val = Option<u64>;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Opt {
    Mss(Val),
    SackOk,
    Ts(Val, Val),
    Nop,
    Eol,
    Wscale(Val),
    Sack(Vec<(u64, u64)>),
}

/// A `<` or `>` line.
pub(super) struct SegSpec {
    pub(super) flags: u8,
    pub(super) seq: Val,
    pub(super) end: Val,
    pub(super) len: Val,
    pub(super) ack: Option<Val>,
    pub(super) win: Option<Val>,
    pub(super) opts: Option<Vec<Opt>>,
    /// The urgent pointer (`urg N`, `<` lines only; 0 without).
    pub(super) urg: u16,
}

/// A segment the stack sent.
pub(super) struct Out {
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: u8,
    pub(super) win: u16,
    pub(super) opts: Vec<Opt>,
    pub(super) payload: Vec<u8>,
}

pub(super) const FLAG_CHARS: [(u8, char); 6] = [
    (TCPHDR_SYN, 'S'),
    (TCPHDR_FIN, 'F'),
    (TCPHDR_RST, 'R'),
    (TCPHDR_PSH, 'P'),
    (TCPHDR_URG, 'U'),
    (TCPHDR_ACK, '.'),
];

pub(super) fn fmt_flags(f: u8) -> String {
    FLAG_CHARS.iter().filter(|(b, _)| f & b != 0).map(|&(_, c)| c).collect()
}

pub(super) fn val(s: &str) -> Result<Val, String> {
    if s == "*" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| format!("bad number `{s}`"))
}

pub(super) fn parse_seg(s: &str) -> Result<SegSpec, String> {
    let (main, opts) = match s.split_once('<') {
        Some((main, o)) => {
            let o = o.trim_end().strip_suffix('>').ok_or("options must end with `>`")?;
            let opts = o.split(',').map(str::trim).filter(|o| !o.is_empty()).map(parse_opt);
            (main, Some(opts.collect::<Result<_, _>>()?))
        }
        None => (s, None),
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

pub(super) fn parse_opt(o: &str) -> Result<Opt, String> {
    let block = |b: &&str| -> Result<(u64, u64), String> {
        let (a, e) = b.split_once(':').ok_or("sack A:B")?;
        Ok((val(a)?.ok_or("sack `*`")?, val(e)?.ok_or("sack `*`")?))
    };
    Ok(match o.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["mss", v] => Opt::Mss(val(v)?),
        ["sackOK"] => Opt::SackOk,
        ["TS", "val", v, "ecr", e] => Opt::Ts(val(v)?, val(e)?),
        ["nop"] => Opt::Nop,
        ["eol"] => Opt::Eol,
        ["wscale", v] => Opt::Wscale(val(v)?),
        ["sack", blocks @ ..] => Opt::Sack(blocks.iter().map(block).collect::<Result<_, _>>()?),
        _ => return Err(format!("unknown option `{o}`")),
    })
}

/// The options of a sent segment, in the order Linux writes them (MSS, SACK permitted,
/// timestamps, window scale, SACK blocks), which is also how scripts list them.
pub(super) fn opts_of(t: &TcpOptions) -> Vec<Opt> {
    let n = |v: u32| Some(v as u64);
    let mut v = Vec::new();
    v.extend(t.mss.map(|m| Opt::Mss(n(m as u32))));
    v.extend(t.sack_ok.then_some(Opt::SackOk));
    v.extend(t.ts.map(|(a, b)| Opt::Ts(n(a), n(b))));
    v.extend(t.wscale.map(|w| Opt::Wscale(n(w as u32))));
    if t.num_sacks > 0 {
        v.push(Opt::Sack(
            t.sack_blocks().iter().map(|b| (b.start as u64, b.end as u64)).collect(),
        ));
    }
    v
}

/// `want` (from a script, `*` allowed) against `got` (from a segment).
pub(super) fn opt_matches(want: &Opt, got: &Opt) -> bool {
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
        }
    }
}

pub(super) fn join<T: Display>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter().map(|o| o.to_string()).collect::<Vec<_>>().join(",")
}

/// Read a frame the stack sent: IPv4 and TCP checksums verified by etherparse, TCP fields and
/// options read with blink's own views (and cross-checked with etherparse's).
pub(super) fn parse_out(frame: &[u8]) -> Result<Out, String> {
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
    let th = TcpHdr::new_checked(seg).map_err(|e| format!("TcpHdr: {e:?}"))?;
    let ours = (th.seq(), th.ack_seq(), th.window(), th.flags());
    assert_eq!(
        ours,
        (
            ep.sequence_number(),
            ep.acknowledgment_number(),
            ep.window_size(),
            seg[13]
        )
    );
    Ok(Out {
        sport: th.src_port(),
        dport: th.dst_port(),
        seq: th.seq(),
        ack: th.ack_seq(),
        flags: th.flags(),
        win: th.window(),
        opts: opts_of(&TcpOptions::parse(th.options(), th.syn())),
        payload: th.payload().to_vec(),
    })
}
