//! Scripted tests of illegal flag combinations (issue 20): SYN+FIN, SYN+RST, no flags, and
//! FIN/PSH/URG without ACK, with and without data, in every state from LISTEN to TIME-WAIT.
//! The expected outcomes are the table in tests/flags, which `kernel_flags.rs` checks against
//! Linux itself: one test per combination here, each driving a fresh stack into each state.

mod flags;
mod script;

use blink_tcp::inet_hashtables::FourTuple;
use blink_tcp::tcphdr::{TCPHDR_ACK, TCPHDR_FIN, TCPHDR_PSH, TCPHDR_RST, TCPHDR_SYN, TCPHDR_URG};
use blink_tcp::with_tcp;
use flags::{expected, reply_segment, Combo, Reply, State, COMBOS, STATES, WATCHED};
use script::{cfg, Script, ACCEPTED_PLAIN, REMOTE_IP, STACK_IP};

/// Script lines that drive a fresh stack into `state` by 0.15 s (the peer's ISN 0, MSS 1000,
/// no SACK or timestamps; the connection's RTO is the 200 ms floor, so nothing is
/// retransmitted before 0.3 s).
fn preamble(state: State) -> String {
    let fin_wait_1 = format!(
        "{ACCEPTED_PLAIN}
0.1   shutdown
0.1   > F. 1:1(0) ack 1 win 65535 <>
"
    );
    let fin_wait_2 = format!("{fin_wait_1}0.1   < . 1:1(0) ack 2 win 65535\n");
    let close_wait = format!(
        "{ACCEPTED_PLAIN}
0.1   < F. 1:1(0) ack 1 win 65535
0.14  > . 1:1(0) ack 2 win 65535 <>
"
    );
    match state {
        State::Listen => "0 socket listen 8080\n".into(),
        State::SynSent => "
0     connect 10.0.0.1:8080
0     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val * ecr 0,nop,wscale 0>
"
        .into(),
        State::SynRecvSim => "
0     connect 10.0.0.1:8080
0     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val * ecr 0,nop,wscale 0>
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
"
        .into(),
        State::SynRecv => "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
"
        .into(),
        State::Estab => ACCEPTED_PLAIN.into(),
        State::FinWait1 => fin_wait_1,
        State::FinWait2 => fin_wait_2,
        State::FinWait2Orphan => format!(
            "{ACCEPTED_PLAIN}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.1   < . 1:1(0) ack 2 win 65535
"
        ),
        State::CloseWait => close_wait,
        State::LastAck => format!(
            "{close_wait}0.15  shutdown
0.15  > F. 1:1(0) ack 2 win 65535 <>
"
        ),
        State::Closing => format!(
            "{fin_wait_1}0.1   < F. 1:1(0) ack 1 win 65535
0.1   > . 2:2(0) ack 2 win 65535 <>
"
        ),
        State::TimeWait => format!(
            "{fin_wait_2}0.15  < F. 1:1(0) ack 2 win 65535
0.15  > . 2:2(0) ack 2 win 65535 <>
"
        ),
    }
}

/// Flags in script syntax (`-`: none).
fn flag_chars(f: u8) -> String {
    let s: String = [
        (TCPHDR_SYN, 'S'),
        (TCPHDR_FIN, 'F'),
        (TCPHDR_RST, 'R'),
        (TCPHDR_PSH, 'P'),
        (TCPHDR_URG, 'U'),
        (TCPHDR_ACK, '.'),
    ]
    .iter()
    .filter(|(b, _)| f & b != 0)
    .map(|&(_, c)| c)
    .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// The connection's state as `ss` would show it, found by tuple: a full socket, a request
/// sock (SYN-RECV), a TIME-WAIT sock, or "none".
fn state_of(s: &mut Script) -> String {
    let sock = s.sock;
    with_tcp(&mut s.stack, |t, _| {
        let tuple = sock
            .and_then(|h| t.socks.get(h))
            .map(|sk| sk.tuple())
            .unwrap_or(FourTuple {
                laddr: STACK_IP,
                lport: 8080,
                raddr: REMOTE_IP,
                rport: 40000,
            });
        if let Some(sk) = t.tables.ehash.get(&tuple).and_then(|&h| t.socks.get(h)) {
            sk.state.name().to_string()
        } else if t.tables.reqhash.contains_key(&tuple) {
            "SYN-RECV".into()
        } else if t.tables.twhash.contains_key(&tuple) {
            "TIME-WAIT".into()
        } else {
            "none".into()
        }
    })
    .unwrap()
}

/// The combination in every state; all mismatches with the table are reported together.
fn check(name: &str) {
    let combo: &Combo = COMBOS.iter().find(|c| c.name == name).unwrap();
    let mut bad = Vec::new();
    for &state in &STATES {
        let want = expected(combo, state);
        let mut s = Script::new(cfg());
        s.run(&preamble(state));
        // A listener has no connection for the tuple yet.
        let setup = if state == State::Listen { "none" } else { state.name() };
        assert_eq!(state_of(&mut s), setup, "set-up for {}", state.name());
        let before: Vec<u64> = WATCHED.iter().map(|w| s.counter(w)).collect();
        let seq = combo.seq(state);
        let mut lines = format!(
            "0.2 < {} {seq}:{}({}) win 65535\n",
            flag_chars(combo.flags),
            seq.wrapping_add(combo.len),
            combo.len
        );
        if let Some((f, rseq, ack)) = reply_segment(want.reply, combo, state) {
            // Script seqs are relative to the stack's ISN; a reset to a segment without ACK
            // has absolute seq 0. Windows and options are blink's (the table leaves them out).
            let isn = s.stack_isn().unwrap_or(0);
            let (rseq, win, opts) = match want.reply {
                Reply::RstAck => (rseq.wrapping_sub(isn), 0, "<>"),
                // The SYN-ACK carries only the options the peer's SYN offered: none but MSS.
                Reply::SynAck => (rseq, 65535, "<mss 1460>"),
                _ => (rseq, 65535, "<>"),
            };
            lines += &format!("0.2 > {} {rseq}:{rseq}(0) ack {ack} win {win} {opts}\n", flag_chars(f));
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.run(&lines);
            // Anything sent until just before the first retransmission timeout (a delayed
            // ACK, say) fails too.
            s.advance_to(280);
            s.run("");
        }));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            bad.push(format!("{}: {msg}", state.name()));
            continue;
        }
        let after = state_of(&mut s);
        if after != want.after {
            bad.push(format!(
                "{}: state after is {after}, table says {}",
                state.name(),
                want.after
            ));
        }
        for (w, b) in WATCHED.iter().zip(before) {
            let d = s.counter(w) - b;
            let wd = want.counters.contains(w) as u64;
            if d != wd {
                bad.push(format!("{}: {w} moved by {d}, table says {wd}", state.name()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: blink differs from the table:\n{}",
        bad.join("\n")
    );
}

#[test]
fn syn_fin() {
    check("syn_fin");
}

#[test]
fn syn_rst() {
    check("syn_rst");
}

#[test]
fn no_flags() {
    check("no_flags");
}

#[test]
fn no_flags_data() {
    check("no_flags_data");
}

#[test]
fn fin_no_ack() {
    check("fin_no_ack");
}

#[test]
fn fin_no_ack_data() {
    check("fin_no_ack_data");
}

#[test]
fn psh_no_ack() {
    check("psh_no_ack");
}

#[test]
fn psh_no_ack_data() {
    check("psh_no_ack_data");
}

#[test]
fn urg_no_ack() {
    check("urg_no_ack");
}

#[test]
fn urg_no_ack_data() {
    check("urg_no_ack_data");
}

#[test]
fn no_flags_old_data() {
    check("no_flags_old_data");
}
