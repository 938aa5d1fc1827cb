//! Illegal TCP flag combinations (issue 20): what Linux does with each, in each state it can
//! be driven to, written down once. `pd_flags.rs` checks blink against this table with
//! scripts; `kernel_flags.rs` (root) checks the same table against the running kernel, so the
//! table is what Linux does, and blink does what the table says.
//!
//! Every combination lacks ACK. The segment carries the sequence number the receiver expects
//! (`rcv_nxt`; 0, the peer's ISN, where nothing is synchronized yet), so it is in window,
//! except in the last row (old data, to show which checks come first). The peer's ISN is 0;
//! after the handshake both sides' data starts at relative sequence 1.
//!
//! Linux's order, which decides every row (net/ipv4/tcp_input.c, tcp_minisocks.c):
//! - LISTEN (tcp_rcv_state_process): ACK → reset; RST → drop; SYN with FIN → drop (it must not
//!   open a connection a filter meant to stop); SYN → SYN-ACK; anything else → drop.
//! - SYN-SENT (tcp_rcv_synsent_state_process): without ACK, RST → drop, SYN (FIN or not) →
//!   simultaneous open (SYN-RECV, SYN-ACK; the FIN is not processed), anything else → drop.
//! - SYN-RECV as a request sock (tcp_check_req): in window, RST or SYN ends the handshake
//!   (a SYN answered with a reset); no ACK → drop; out of window → ACK. SYN-RECV after a
//!   simultaneous open is a full socket, judged as the synchronized states below.
//! - synchronized states (tcp_rcv_established / tcp_rcv_state_process): neither ACK, RST nor
//!   SYN → drop before any check; RST at rcv_nxt → reset; SYN → challenge ACK (RFC 5961 4.2;
//!   counted in Tcp InErrs too when it reaches tcp_rcv_established, i.e. in ESTABLISHED).
//! - an orphan in FIN-WAIT-2 is a TIME-WAIT sock in substate FIN-WAIT-2 (the FIN_WAIT2
//!   branch of tcp_timewait_state_process): out of window → ACK; RST → gone; SYN at or after
//!   rcv_nxt → reset; no ACK → drop.
//! - TIME-WAIT (tcp_timewait_state_process): a bare in-window segment (no SYN, FIN or data)
//!   or a reset is accepted (a reset kills the TIME-WAIT sock, tcp_rfc1337 = 0); anything
//!   else is ACKed.

#![allow(dead_code)]

use blink_tcp::tcphdr::{TCPHDR_FIN, TCPHDR_PSH, TCPHDR_RST, TCPHDR_SYN, TCPHDR_URG};

/// One illegal combination: flags (never ACK), payload length, and where the segment starts
/// relative to what the receiver expects (`rcv_nxt`; 0: in window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Combo {
    pub name: &'static str,
    pub flags: u8,
    pub len: u32,
    pub seq_off: i32,
}

impl Combo {
    /// The segment's sequence number in `state`.
    pub fn seq(&self, state: State) -> u32 {
        state.seg_seq().wrapping_add_signed(self.seq_off)
    }
}

/// The combinations, in the table's row order.
#[rustfmt::skip]
pub const COMBOS: [Combo; 11] = [
    Combo { name: "syn_fin", flags: TCPHDR_SYN | TCPHDR_FIN, len: 0, seq_off: 0 },
    Combo { name: "syn_rst", flags: TCPHDR_SYN | TCPHDR_RST, len: 0, seq_off: 0 },
    Combo { name: "no_flags", flags: 0, len: 0, seq_off: 0 },
    Combo { name: "no_flags_data", flags: 0, len: 10, seq_off: 0 },
    Combo { name: "fin_no_ack", flags: TCPHDR_FIN, len: 0, seq_off: 0 },
    Combo { name: "fin_no_ack_data", flags: TCPHDR_FIN, len: 10, seq_off: 0 },
    Combo { name: "psh_no_ack", flags: TCPHDR_PSH, len: 0, seq_off: 0 },
    Combo { name: "psh_no_ack_data", flags: TCPHDR_PSH, len: 10, seq_off: 0 },
    Combo { name: "urg_no_ack", flags: TCPHDR_URG, len: 0, seq_off: 0 },
    Combo { name: "urg_no_ack_data", flags: TCPHDR_URG, len: 10, seq_off: 0 },
    // Old data, wholly before the window: judged before the sequence check, so no duplicate
    // ACK in a synchronized state; a request sock and TIME-WAIT answer it as out of window.
    Combo { name: "no_flags_old_data", flags: 0, len: 10, seq_off: -20 },
];

/// The states a test drives a connection into before injecting the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Listen,
    SynSent,
    /// Passive open: a request sock, the SYN-ACK sent.
    SynRecv,
    /// Simultaneous open: a full socket (our SYN sent, the peer's SYN answered with a SYN-ACK).
    SynRecvSim,
    Estab,
    /// shutdown(SHUT_WR): our FIN sent, not acknowledged.
    FinWait1,
    /// Our FIN acknowledged (the socket is still open, not an orphan).
    FinWait2,
    /// close(), then our FIN acknowledged: an orphan, which Linux keeps as a TIME-WAIT sock
    /// in substate FIN-WAIT-2 (tcp_time_wait(sk, TCP_FIN_WAIT2, ...)).
    FinWait2Orphan,
    /// The peer's FIN received and ACKed.
    CloseWait,
    /// CLOSE-WAIT, then shutdown(SHUT_WR): our FIN not acknowledged.
    LastAck,
    /// FINs crossed: our FIN not acknowledged, the peer's ACKed.
    Closing,
    TimeWait,
}

/// The table's column order.
pub const STATES: [State; 12] = [
    State::Listen,
    State::SynSent,
    State::SynRecv,
    State::SynRecvSim,
    State::Estab,
    State::FinWait1,
    State::FinWait2,
    State::FinWait2Orphan,
    State::CloseWait,
    State::LastAck,
    State::Closing,
    State::TimeWait,
];

impl State {
    /// As `ss` prints it.
    pub fn name(self) -> &'static str {
        match self {
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynRecv | State::SynRecvSim => "SYN-RECV",
            State::Estab => "ESTAB",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 | State::FinWait2Orphan => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::LastAck => "LAST-ACK",
            State::Closing => "CLOSING",
            State::TimeWait => "TIME-WAIT",
        }
    }

    /// A name for each state, unique (the kernel test's set-up takes it).
    pub fn key(self) -> &'static str {
        match self {
            State::SynRecvSim => "SYN-RECV-SIM",
            State::FinWait2Orphan => "FIN-WAIT-2-ORPHAN",
            s => s.name(),
        }
    }

    /// (our snd_nxt, our rcv_nxt) in the state, relative to our ISN and the peer's (0).
    pub fn nxt(self) -> (u32, u32) {
        match self {
            State::Listen | State::SynSent => (1, 0),
            State::SynRecv | State::SynRecvSim | State::Estab => (1, 1),
            State::FinWait1 | State::FinWait2 | State::FinWait2Orphan => (2, 1),
            State::CloseWait => (1, 2),
            State::LastAck | State::Closing | State::TimeWait => (2, 2),
        }
    }

    /// The injected segment's sequence number: what the receiver expects next.
    pub fn seg_seq(self) -> u32 {
        self.nxt().1
    }
}

/// What the receiver sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Nothing,
    /// `. snd_nxt ack rcv_nxt` (a challenge ACK, or TIME-WAIT's ACK).
    Ack,
    /// `R. 0 ack SEG.SEQ+SEG.LEN` (absolute seq 0: the segment had no ACK, RFC 9293 3.10.7).
    RstAck,
    /// `S. ISN ack SEG.SEQ+1`: a simultaneous open.
    SynAck,
}

/// A cell of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Reply,
    /// The connection's state afterwards as `ss` shows it, or "none": no connection for the
    /// tuple (none made, reset, or the TIME-WAIT sock killed).
    pub after: &'static str,
    /// Counters that move by one (each of [`WATCHED`] not named stays put).
    pub counters: Vec<&'static str>,
}

/// The counters both tests compare, by `Section.Name` as in /proc/net/snmp and netstat.
pub const WATCHED: [&str; 7] = [
    "Tcp.InErrs",
    "Tcp.OutRsts",
    "Tcp.AttemptFails",
    "Tcp.EstabResets",
    "TcpExt.TCPSYNChallenge",
    "TcpExt.TCPChallengeACK",
    "TcpExt.EmbryonicRsts",
];

/// The table: a row per combination (as [`COMBOS`]), a cell per state (as [`STATES`]).
/// A cell is `REPLY AFTER [COUNTER...]`: REPLY `-` (nothing), `ack`, `rst` or `synack`;
/// AFTER `=` (unchanged), `none`, or a state; counters by the short names of [`WATCHED`]
/// (`InErrs`, `SYNChallenge` for TCPSYNChallenge, `ChallengeACK` for TCPChallengeACK, ...).
/// A `rst` reply counts Tcp.OutRsts without saying so.
#[rustfmt::skip]
pub const TABLE: [[&str; 12]; 11] = [
   // LISTEN   SYN-SENT            SYN-RECV (req)                          SYN-RECV (sim)                      ESTAB                                      FIN-WAIT-1                          FIN-WAIT-2                          FIN-WAIT-2 (orphan)   CLOSE-WAIT                          LAST-ACK                            CLOSING                             TIME-WAIT
    ["- =",   "synack SYN-RECV",  "rst none AttemptFails EmbryonicRsts",  "ack = SYNChallenge ChallengeACK",  "ack = InErrs SYNChallenge ChallengeACK",  "ack = SYNChallenge ChallengeACK",  "ack = SYNChallenge ChallengeACK",  "rst none",           "ack = SYNChallenge ChallengeACK",  "ack = SYNChallenge ChallengeACK",  "ack = SYNChallenge ChallengeACK",  "ack ="], // SYN+FIN
    ["- =",   "- =",              "- none AttemptFails EmbryonicRsts",    "- none AttemptFails",              "- none EstabResets",                      "- none",                           "- none",                           "- none",             "- none EstabResets",               "- none",                           "- none",                           "- none"], // SYN+RST
    ["- =",   "- =",              "- =",                                  "- =",                              "- =",                                     "- =",                              "- =",                              "- =",                "- =",                              "- =",                              "- =",                              "- ="], // no flags
    ["- =",   "- =",              "- =",                                  "- =",                              "- =",                                     "- =",                              "- =",                              "- =",                "- =",                              "- =",                              "- =",                              "ack ="], // no flags, data
    ["- =",   "- =",              "- =",                                  "- =",                              "- =",                                     "- =",                              "- =",                              "- =",                "- =",                              "- =",                              "- =",                              "ack ="], // FIN
    ["- =",   "- =",              "- =",                                  "- =",                              "- =",                                     "- =",                              "- =",                              "- =",                "- =",                              "- =",                              "- =",                              "ack ="], // FIN, data
    ["- =",   "- =",              "- =",                                  "- =",                              "- =",                                     "- =",                              "- =",                              "- =",                "- =",                              "- =",                              "- =",                              "- ="], // PSH
    ["- =",   "- =",              "- =",                                  "- =",                              "- =",                                     "- =",                              "- =",                              "- =",                "- =",                              "- =",                              "- =",                              "ack ="], // PSH, data
    ["- =",   "- =",              "- =",                                  "- =",                              "- =",                                     "- =",                              "- =",                              "- =",                "- =",                              "- =",                              "- =",                              "- ="], // URG
    ["- =",   "- =",              "- =",                                  "- =",                              "- =",                                     "- =",                              "- =",                              "- =",                "- =",                              "- =",                              "- =",                              "ack ="], // URG, data
    ["- =",   "- =",              "ack =",                                "- =",                              "- =",                                     "- =",                              "- =",                              "ack =",              "- =",                              "- =",                              "- =",                              "ack ="], // no flags, old data
];

/// The cell for `combo` in `state`, parsed.
pub fn expected(combo: &Combo, state: State) -> Outcome {
    let row = COMBOS.iter().position(|c| c == combo).expect("a combination of COMBOS");
    let col = STATES.iter().position(|&s| s == state).expect("a state of STATES");
    let cell = TABLE[row][col];
    let mut w = cell.split_whitespace();
    let reply = match w.next() {
        Some("-") => Reply::Nothing,
        Some("ack") => Reply::Ack,
        Some("rst") => Reply::RstAck,
        Some("synack") => Reply::SynAck,
        r => panic!("cell `{cell}`: bad reply {r:?}"),
    };
    let after = match w.next() {
        Some("=") if state == State::Listen => "none",
        Some("=") => state.name(),
        Some(s) => STATES
            .iter()
            .map(|s| s.name())
            .chain(["none"])
            .find(|n| *n == s)
            .unwrap_or_else(|| panic!("cell `{cell}`: bad state {s}")),
        None => panic!("cell `{cell}`: no state"),
    };
    let mut counters: Vec<&'static str> = w
        .map(|short| {
            WATCHED
                .iter()
                .copied()
                .find(|n| n.ends_with(&format!(".{short}")) || n.ends_with(&format!(".TCP{short}")))
                .unwrap_or_else(|| panic!("cell `{cell}`: unknown counter {short}"))
        })
        .collect();
    if reply == Reply::RstAck {
        counters.push("Tcp.OutRsts");
    }
    Outcome { reply, after, counters }
}

/// The segment `reply` stands for (no payload), as (flags, seq, ack): seq relative to the receiver's
/// ISN (absolute for `RstAck`: 0), ack relative to the peer's ISN (0, so absolute too).
pub fn reply_segment(reply: Reply, combo: &Combo, state: State) -> Option<(u8, u32, u32)> {
    use blink_tcp::tcphdr::TCPHDR_ACK;
    let (snd_nxt, rcv_nxt) = state.nxt();
    let seq = combo.seq(state);
    let syn_fin = (combo.flags & TCPHDR_SYN != 0) as u32 + (combo.flags & TCPHDR_FIN != 0) as u32;
    match reply {
        Reply::Nothing => None,
        Reply::Ack => Some((TCPHDR_ACK, snd_nxt, rcv_nxt)),
        Reply::RstAck => Some((TCPHDR_RST | TCPHDR_ACK, 0, seq.wrapping_add(syn_fin + combo.len))),
        Reply::SynAck => Some((TCPHDR_SYN | TCPHDR_ACK, 0, seq.wrapping_add(1))),
    }
}
