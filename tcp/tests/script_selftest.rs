//! The script harness (tests/script) tested: each check it makes fails a script when the
//! stack's segment breaks it, and passes when the segment keeps it. A stack that gets
//! something wrong is played by `Script::tamper`, which rewrites the frames blink sent before
//! the harness reads them; the harness's option decoder is tested on bytes.

mod script;

use std::panic::{catch_unwind, AssertUnwindSafe};

use blink_tcp::{tcp_setsockopt, TcpSockOpt};
use script::segment::{decode_options, fix_checksums, Opt};
use script::{cfg, run, Script, ACCEPTED_SACK};

/// Run `text` on `s`; the message it fails with (the test fails if it passes).
fn failure(mut s: Script, text: &str) -> String {
    match catch_unwind(AssertUnwindSafe(|| s.run(text))) {
        Ok(()) => panic!("the script passed:\n{text}"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

fn fails(text: &str) -> String {
    failure(Script::new(cfg()), text)
}

/// `fails`, checking the message holds each of `want`.
#[track_caller]
fn assert_fails(msg: &str, want: &[&str]) {
    for w in want {
        assert!(msg.contains(w), "expected `{w}` in the failure, got:\n{msg}");
    }
}

/// One segment of data after the handshake, as the stack really sends it.
const DATA: &str = "
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.2   < . 1:1(0) ack 1001 win 65535
";

/// A second segment of the same connection.
const DATA2: &str = "
0.3   write 1000
0.3   > P. 1001:2001(1000) ack 1 win 65535 <>
0.4   < . 1:1(0) ack 2001 win 65535
";

#[test]
fn control_the_scripts_below_pass_as_written() {
    run(cfg(), &format!("{ACCEPTED_SACK}{DATA}{DATA2}"));
}

/// A wrong expectation fails with the script line and what was seen.
#[test]
fn reports_the_line_and_what_was_sent() {
    let m = fails(
        "
0     socket listen 8080
0.1   < S 1000:1000(0) win 8192
0.1   > S. 0:0(0) ack 1001 win 65535 <mss 1400>
",
    );
    assert_fails(
        &m,
        &[
            "script line 4: `0.1   > S. 0:0(0) ack 1001 win 65535 <mss 1400>`",
            "expected options <mss 1400>",
            "got at 100 ms: [8080>40000] S. 0:0(0) ack 1001 win 65535 <mss 1460>",
        ],
    );
}

/// A segment sent earlier than scripted (beyond the tolerance) fails.
#[test]
fn rejects_an_early_segment() {
    let m = fails(&format!(
        "{ACCEPTED_SACK}
0.1   < P. 1:11(10) ack 1 win 65535
0.2   > . 1:1(0) ack 11 win 65525 <>
"
    ));
    assert_fails(&m, &["sent too early, at 140 ms"]);
}

/// A segment the script does not expect fails it, whether the script goes on (the next line
/// reports it) or ends there.
#[test]
fn rejects_an_unexpected_segment_mid_script() {
    let m = fails(&format!(
        "{ACCEPTED_SACK}
0.1   write 2000
0.1   > . 1:1001(1000) ack 1 win 65535 <>
0.2   < . 1:1(0) ack 1001 win 65535
"
    ));
    assert_fails(
        &m,
        &["script line 11: `0.2   < . 1:1(0) ack 1001 win 65535`\n    unexpected segment at 100 ms: [8080>40000] P. 1001:2001(1000)"],
    );
}

#[test]
fn rejects_an_unexpected_segment_at_the_end() {
    let m = fails(&format!(
        "{ACCEPTED_SACK}
0.1   write 2000
0.1   > . 1:1001(1000) ack 1 win 65535 <>
"
    ));
    assert_fails(
        &m,
        &["after the last line: unexpected segment at 100 ms: [8080>40000] P. 1001:2001(1000)"],
    );
}

/// `>` lines must say what window and options they expect: leaving one out is an error, not
/// a wildcard.
#[test]
fn a_sent_segment_without_win_or_options_does_not_parse() {
    let m = fails(&format!(
        "{ACCEPTED_SACK}0.1 write 1000\n0.1 > P. 1:1001(1000) ack 1 <>\n"
    ));
    assert_fails(&m, &["a `>` line must state `win N` (or `win *`)"]);
    let m = fails(&format!(
        "{ACCEPTED_SACK}0.1 write 1000\n0.1 > P. 1:1001(1000) ack 1 win 65535\n"
    ));
    assert_fails(&m, &["a `>` line must state its options"]);
    let m = fails(&format!(
        "{ACCEPTED_SACK}0.1 write 1000\n0.1 > P. 1:1001(1000) win 65535 <>\n"
    ));
    assert_fails(&m, &["a `>` line with `.` must state `ack N` (or `ack *`)"]);
}

#[test]
fn a_wrong_window_fails() {
    let m = fails(&format!(
        "{ACCEPTED_SACK}0.1 write 1000\n0.1 > P. 1:1001(1000) ack 1 win 65534 <>\n"
    ));
    assert_fails(&m, &["expected win 65534", "win 65535 <>"]);
    // `win *` opts out.
    run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}0.1 write 1000\n0.1 > P. 1:1001(1000) ack 1 win * <>\n0.2 < . 1:1(0) ack 1001 win 65535\n"
        ),
    );
}

const SYN: &str = "
0     socket listen 8080
0.1   < S 1000:1000(0) win 8192 <mss 1000,sackOK,TS val 500 ecr 0,nop,wscale 2>
";

/// The SYN-ACK blink sends to [`SYN`]: all four options, its timestamp clock reading 100 ms.
const SYNACK: &str = "0.1 > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val 100 ecr 500,nop,wscale 0>";

#[test]
fn options_are_compared_whole() {
    run(cfg(), &format!("{SYN}{SYNACK}\n0.2 close listener\n"));
    // An option the stack sent that the script does not list.
    let m = fails(&format!(
        "{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val 100 ecr 500>\n"
    ));
    assert_fails(&m, &["expected options <mss 1460,sackOK,TS val 100 ecr 500>"]);
    // An option the script lists that the stack did not send.
    let m = fails(&format!(
        "{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val 100 ecr 500,nop,wscale 0,sack 1:2>\n"
    ));
    assert_fails(
        &m,
        &["expected options <mss 1460,sackOK,TS val 100 ecr 500,wscale 0,sack 1:2>"],
    );
    // `<>` is no options, not any.
    let m = fails(&format!("{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <>\n"));
    assert_fails(&m, &["expected options <>"]);
    // A wrong value, and the order matters.
    let m = fails(&format!(
        "{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val 100 ecr 500,wscale 1>\n"
    ));
    assert_fails(&m, &["expected options"]);
    let m = fails(&format!(
        "{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <sackOK,mss 1460,TS val 100 ecr 500,wscale 0>\n"
    ));
    assert_fails(&m, &["expected options"]);
    // The opt-outs: all options, or one value.
    run(
        cfg(),
        &format!("{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <*>\n0.2 close listener\n"),
    );
    run(
        cfg(),
        &format!(
            "{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <mss *,sackOK,TS val * ecr *,wscale *>\n0.2 close listener\n"
        ),
    );
}

/// TS val follows the stack's clock (ms, from the connection's first TS val), and ecr is what
/// the script says the remote sent.
#[test]
fn timestamps_are_checked() {
    let m = fails(&format!(
        "{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val 100 ecr 501,nop,wscale 0>\n"
    ));
    assert_fails(&m, &["expected options", "TS val 100 ecr 500"]);
    // A later segment stamped with the clock at its own send time: 300, not 200.
    let later = "
0.2   < . 1001:1001(0) ack 1 win 8192 <nop,nop,TS val 600 ecr *>
0.2   accept
0.3   write 100
0.3   > P. 1:101(100) ack 1001 win 65535 <nop,nop,TS val 200 ecr 600>
";
    let m = fails(&format!("{SYN}{SYNACK}{later}"));
    assert_fails(
        &m,
        &["expected options <TS val 200 ecr 600>", "<nop,nop,TS val 300 ecr 600>"],
    );
    run(
        cfg(),
        &format!(
            "{SYN}{SYNACK}{}0.4 < . 1001:1001(0) ack 101 win 8192 <nop,nop,TS val 700 ecr *>\n0.5 close listener\n",
            later.replace("TS val 200", "TS val 300")
        ),
    );
}

/// TTL: 64 (the stack's default) unless configured, and as configured.
#[test]
fn ip_ttl_is_checked() {
    let mut s = Script::new(cfg());
    s.tamper = Some(Box::new(|f: &mut Vec<u8>| {
        f[22] = 63;
        fix_checksums(f);
    }));
    assert_fails(
        &failure(s, &format!("{SYN}{SYNACK}\n")),
        &["IPv4 header: TTL 63 (expected 64)"],
    );
    // IP_TTL on the listener, inherited by the connection: the harness must be told.
    let set_ttl = |s: &mut Script| {
        s.run("0 socket listen 8080");
        let l = s.listener.unwrap();
        tcp_setsockopt(&mut s.stack, l, TcpSockOpt::Ttl(9)).unwrap();
    };
    let mut s = Script::new(cfg());
    set_ttl(&mut s);
    let rest = ACCEPTED_SACK.replace("0     socket listen 8080\n", "");
    assert_fails(&failure(s, &rest), &["TTL 9 (expected 64)"]);
    let mut s = Script::new(cfg());
    set_ttl(&mut s);
    s.ip_ttl = 9;
    s.run(&format!("{rest}{DATA}"));
}

#[test]
fn ip_df_tos_and_fragments_are_checked() {
    let tampered = |bit: fn(&mut Vec<u8>), want: &str| {
        let mut s = Script::new(cfg());
        s.tamper = Some(Box::new(move |f: &mut Vec<u8>| {
            bit(f);
            fix_checksums(f);
        }));
        assert_fails(&failure(s, &format!("{SYN}{SYNACK}\n")), &[want]);
    };
    tampered(|f| f[20] &= !0x40, "DF 0 MF 0 offset 0 (expected DF set");
    tampered(|f| f[20] |= 0x20, "DF 1 MF 1 offset 0");
    tampered(|f| f[15] = 0x10, "TOS 0x10 (expected 0x00)");
    // IP options (NOP, NOP, NOP, EOL) where blink sends none.
    tampered(
        |f| {
            f.splice(34..34, [1, 1, 1, 0]);
            f[14] = 0x46;
            let len = u16::from_be_bytes([f[16], f[17]]) + 4;
            f[16..18].copy_from_slice(&len.to_be_bytes());
        },
        "IHL 6 (expected 5: no IP options)",
    );
}

/// Frame `n` (1 = the first the stack sends) with its IP ID plus one.
fn bump_ip_id(s: &mut Script, n: usize) {
    let mut seen = 0;
    s.tamper = Some(Box::new(move |f: &mut Vec<u8>| {
        seen += 1;
        if seen == n {
            let id = u16::from_be_bytes([f[18], f[19]]).wrapping_add(1);
            f[18..20].copy_from_slice(&id.to_be_bytes());
            fix_checksums(f);
        }
    }));
}

/// The IP ID steps by one per segment of a connection (the socket's own counter).
#[test]
fn ip_id_is_checked() {
    let mut s = Script::new(cfg());
    bump_ip_id(&mut s, 3);
    let m = failure(s, &format!("{ACCEPTED_SACK}{DATA}{DATA2}"));
    assert_fails(
        &m,
        &[
            "IPv4 header: ID",
            "the connection's previous segment's + 1",
            "P. 1001:2001(1000)",
        ],
    );
}

/// A request sock's SYN-ACK carries IP ID 0 (Linux: no socket, DF set).
#[test]
fn syn_ack_ip_id_is_zero() {
    let mut s = Script::new(cfg());
    bump_ip_id(&mut s, 1);
    let m = failure(s, &format!("{ACCEPTED_SACK}{DATA}"));
    assert_fails(&m, &["IPv4 header: ID 1", "a request sock's SYN-ACK", "S."]);
}

/// A malformed option from the stack fails the script whatever it expected (even `<*>`).
#[test]
fn malformed_options_from_the_stack_fail() {
    let mut s = Script::new(cfg());
    s.tamper = Some(Box::new(|f: &mut Vec<u8>| {
        // The SYN-ACK's first option, MSS: length 4 -> 5.
        assert_eq!(f[54..56], [2, 4]);
        f[55] = 5;
        fix_checksums(f);
    }));
    let m = failure(s, &format!("{SYN}0.1 > S. 0:0(0) ack 1001 win 65535 <*>\n"));
    assert_fails(
        &m,
        &["malformed TCP options", "option kind 2 at byte 0: length 5, must be 4"],
    );
}

#[test]
fn decoder_reads_every_kind() {
    // Linux's SYN layout: MSS, SACK permitted + TS, NOP, window scale.
    let syn = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7];
    assert_eq!(
        decode_options(&syn).unwrap(),
        [
            Opt::Mss(Some(1460)),
            Opt::SackOk,
            Opt::Ts(Some(1), Some(2)),
            Opt::Nop,
            Opt::Wscale(Some(7)),
        ]
    );
    let sack = [
        1, 1, 5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 5,
    ];
    assert_eq!(
        decode_options(&sack).unwrap(),
        [Opt::Nop, Opt::Nop, Opt::Sack(vec![(10, 20), (0xffff_ffff, 5)])]
    );
    // Unknown kinds are kept raw; EOL ends the list and zero padding may follow it.
    assert_eq!(
        decode_options(&[30, 4, 0xab, 0xcd, 99, 2, 0, 0, 0, 0]).unwrap(),
        [Opt::Raw(30, vec![0xab, 0xcd]), Opt::Raw(99, vec![]), Opt::Eol]
    );
    assert_eq!(decode_options(&[]).unwrap(), []);
}

#[test]
fn decoder_rejects_malformed_lengths() {
    let bad: &[(&[u8], &str)] = &[
        (&[2], "option kind 2 at byte 0: no length byte"),
        (&[1, 30, 0], "option kind 30 at byte 1: length 0"),
        (&[30, 1, 0, 0], "option kind 30 at byte 0: length 1"),
        (&[2, 4, 5], "length 4 (2 to 3 fit)"),
        (&[2, 3, 5, 1], "option kind 2 at byte 0: length 3, must be 4"),
        (&[3, 4, 7, 0], "option kind 3 at byte 0: length 4, must be 3"),
        (&[4, 3, 0, 1], "option kind 4 at byte 0: length 3, must be 2"),
        (
            &[8, 9, 0, 0, 0, 1, 0, 0, 0, 1],
            "option kind 8 at byte 0: length 9, must be 10",
        ),
        (&[5, 2, 1, 1], "option kind 5 at byte 0: length 2, must be 2 + 8n"),
        (&[5, 6, 0, 0, 0, 1], "option kind 5 at byte 0: length 6, must be 2 + 8n"),
        (&[0, 0, 1, 0], "option byte 2 after EOL is 0x01"),
    ];
    for (bytes, want) in bad {
        let e = decode_options(bytes).expect_err(&format!("{bytes:?} decoded"));
        assert!(e.contains(want), "{bytes:?}: `{e}` lacks `{want}`");
    }
    // Five SACK blocks cannot be: 42 bytes is past the 40 of option space, and the decoder
    // says so even when handed them.
    let five = [[5u8, 42].as_slice(), &[0; 40]].concat();
    assert!(decode_options(&five)
        .unwrap_err()
        .contains("must be 2 + 8n, n of 1 to 4"));
}
