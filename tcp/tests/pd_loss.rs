//! Scripted (packetdrill-style) tests of loss recovery and timers: RTO and its backoff, fast
//! retransmit, SACK recovery, zero-window probing, keepalive.

mod script;

use blink_tcp::inet_hashtables::FourTuple;
use blink_tcp::secure_seq::{secure_tcp_seq, SecretKey};
use blink_tcp::TcpConfig;
use script::{cfg, cfg_tlp, run, Script, ACCEPTED_PLAIN, ACCEPTED_SACK, REMOTE_IP, STACK_IP};

/// After an RTT sample of ~0 the RTO is the 200 ms floor; it doubles on every timeout.
/// Without timestamps the ACK of a retransmitted segment is no RTT sample (Karn), so the
/// backed-off RTO stays until a segment sent once is acknowledged (RFC 6298 5.7).
#[test]
fn rto_backoff_and_karn() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.3   > P. 1:1001(1000) ack 1 win 65535 <>
0.7   > P. 1:1001(1000) ack 1 win 65535 <>
1.5   > P. 1:1001(1000) ack 1 win 65535 <>
1.6   < . 1:1(0) ack 1001 win 65535
1.7   write 1000
1.7   > P. 1001:2001(1000) ack 1 win 65535 <>
3.3   > P. 1001:2001(1000) ack 1 win 65535 <>
3.3   < . 1:1(0) ack 2001 win 65535
3.4   write 1000
3.4   > P. 2001:3001(1000) ack 1 win 65535 <>
3.4   < . 1:1(0) ack 3001 win 65535
3.5   write 1000
3.5   > P. 3001:4001(1000) ack 1 win 65535 <>
3.7   > P. 3001:4001(1000) ack 1 win 65535 <>
3.7   < . 1:1(0) ack 4001 win 65535
3.8   < R 1:1(0) win 0
3.8   close
3.8   close listener
"
        ),
    );
    s.assert_counters(&[
        ("Tcp.RetransSegs", 5),
        ("TcpExt.TCPTimeouts", 5),
        ("TcpExt.TCPSackRecovery", 0),
        ("Tcp.EstabResets", 1),
    ]);
    s.assert_clean();
}

/// The handshake is an RTT sample (Linux: tcp_synack_rtt_meas / the SYN's sample in tcp_ack):
/// after a 100 ms handshake the first data segment's RTO is 100 + 200 ms, not the initial 1 s.
#[test]
fn handshake_rtt_sets_first_rto() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.1   < . 1:1(0) ack 1 win 65535
0.1   accept
0.2   write 1000
0.2   > P. 1:1001(1000) ack 1 win 65535 <>
0.5   > P. 1:1001(1000) ack 1 win 65535 <>
0.5   < . 1:1(0) ack 1001 win 65535
0.6   < R 1:1(0) win 0
0.6   close
0.6   close listener
",
    );
    s.assert_counters(&[("Tcp.RetransSegs", 1), ("TcpExt.TCPTimeouts", 1)]);
    s.assert_clean();
}

/// Without SACK: the third duplicate ACK triggers a fast retransmit of the missing segment
/// (RFC 5681 3.2), no timeout.
#[test]
fn fast_retransmit_three_dupacks() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_PLAIN}
0.1   write 5000
0.1   > . 1:1001(1000) ack 1 win 65535 <>
0.1   > . 1001:2001(1000) ack 1 win 65535 <>
0.1   > . 2001:3001(1000) ack 1 win 65535 <>
0.1   > . 3001:4001(1000) ack 1 win 65535 <>
0.1   > P. 4001:5001(1000) ack 1 win 65535 <>
0.15  < . 1:1(0) ack 1001 win 65535
0.15  < . 1:1(0) ack 1001 win 65535
0.15  < . 1:1(0) ack 1001 win 65535
0.15  < . 1:1(0) ack 1001 win 65535
0.15  > . 1001:2001(1000) ack 1 win 65535 <>
0.2   < . 1:1(0) ack 5001 win 65535
0.3   < F. 1:1(0) ack 5001 win 65535
0.3   close
0.3   > F. 5001:5001(0) ack 2 win 65535 <>
0.35  < . 2:2(0) ack 5002 win 65535
0.4   close listener
"
        ),
    );
    s.assert_counters(&[
        ("TcpExt.TCPRenoRecovery", 1),
        ("TcpExt.TCPFastRetrans", 1),
        ("Tcp.RetransSegs", 1),
        ("TcpExt.TCPTimeouts", 0),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// With SACK, recovery retransmits exactly the holes the peer reports (RFC 6675), once.
/// Run with several (random) ISNs: a bug once made half of the sequence space retransmit
/// everything unSACKed.
#[test]
fn sack_recovery_retransmits_only_holes() {
    for _ in 0..8 {
        sack_recovery_once();
    }
}

fn sack_recovery_once() {
    let mut s = run(cfg(), &format!("{ACCEPTED_SACK}{SACK_RECOVERY}"));
    assert_sack_recovery(&mut s);
}

/// 8,000 bytes in eight segments; the remote reports two holes (1001:2001 and 4001:5001) and
/// gets exactly those again, then everything is acknowledged and the connection closes.
const SACK_RECOVERY: &str = "
0.1   write 8000
0.1   > . 1:1001(1000) ack 1 win 65535 <>
0.1   > . 1001:2001(1000) ack 1 win 65535 <>
0.1   > . 2001:3001(1000) ack 1 win 65535 <>
0.1   > . 3001:4001(1000) ack 1 win 65535 <>
0.1   > . 4001:5001(1000) ack 1 win 65535 <>
0.1   > . 5001:6001(1000) ack 1 win 65535 <>
0.1   > . 6001:7001(1000) ack 1 win 65535 <>
0.1   > P. 7001:8001(1000) ack 1 win 65535 <>
0.15  < . 1:1(0) ack 1001 win 65535
0.15  < . 1:1(0) ack 1001 win 65535 <sack 2001:3001>
0.15  < . 1:1(0) ack 1001 win 65535 <sack 2001:4001>
0.15  < . 1:1(0) ack 1001 win 65535 <sack 5001:6001 2001:4001>
0.15  > . 1001:2001(1000) ack 1 win 65535 <>
0.15  > . 4001:5001(1000) ack 1 win 65535 <>
0.16  < . 1:1(0) ack 1001 win 65535 <sack 5001:8001 2001:4001>
0.2   < . 1:1(0) ack 4001 win 65535 <sack 5001:8001>
0.2   < . 1:1(0) ack 8001 win 65535
0.3   < F. 1:1(0) ack 8001 win 65535
0.3   close
0.3   > F. 8001:8001(0) ack 2 win 65535 <>
0.35  < . 2:2(0) ack 8002 win 65535
0.4   close listener
";

fn assert_sack_recovery(s: &mut Script) {
    s.assert_counters(&[
        ("TcpExt.TCPSackRecovery", 1),
        ("TcpExt.TCPFastRetrans", 1),
        ("Tcp.RetransSegs", 2),
        ("TcpExt.TCPTimeouts", 0),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// A TCP seed whose ISN for the scripts' passive open (10.0.0.2:8080 from 10.0.0.1:40000, SYN
/// at time 0) lies in `want`: the search runs the stack's own ISN function.
fn seed_with_isn_in(want: std::ops::Range<u32>) -> u64 {
    let t = FourTuple {
        laddr: STACK_IP,
        lport: 8080,
        raddr: REMOTE_IP,
        rport: 40000,
    };
    (0..100_000_000u64)
        .find(|&seed| want.contains(&secure_tcp_seq(&SecretKey::new(Some(seed), "isn"), &t, 0).0))
        .expect("a seed within 10^8 (each one has a chance of 1 in ~4 million)")
}

/// blink's own sequence numbers wrap in the middle of SACK recovery: its ISN is 4,001 to 5,000
/// below 2^32, so the second hole (relative 4001:5001) straddles 2^32. Only the holes are
/// retransmitted, each with its own bytes (the harness checks payload by sequence number), and
/// the cumulative ACK across the wrap ends recovery.
#[test]
fn sack_recovery_across_blinks_sequence_wraparound() {
    let seed = seed_with_isn_in(u32::MAX - 5000..u32::MAX - 4000);
    let mut s = Script::new(TcpConfig {
        seed: Some(seed),
        ..cfg()
    });
    s.run(&format!("{ACCEPTED_SACK}{SACK_RECOVERY}"));
    let isn = s.stack_isn().expect("the SYN-ACK was seen");
    assert!(
        (u32::MAX - 5000..u32::MAX - 4000).contains(&isn),
        "seed {seed}: ISN {isn} is not the one the seed gives"
    );
    assert_sack_recovery(&mut s);
}

/// The same seed gives the same ISN; another seed another one.
#[test]
fn tcp_seed_reproduces_the_isn() {
    let isn = |seed| {
        let mut s = Script::new(TcpConfig {
            seed: Some(seed),
            ..cfg()
        });
        s.run(&format!(
            "{ACCEPTED_SACK}0.1 close\n0.1 > F. 1:1(0) ack 1 win 65535 <>\n"
        ));
        s.stack_isn().expect("the SYN-ACK was seen")
    };
    assert_eq!(isn(7), isn(7));
    assert_ne!(isn(7), isn(8));
}

/// A zero window is probed with an already-acknowledged sequence number at RTO, 2 RTO,
/// 4 RTO ...; when the window opens the data goes out and is guarded by a fresh RTO, not by
/// what was left of the probe timer.
#[test]
fn zero_window_probes_then_window_opens() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.1   < . 1:1(0) ack 1001 win 0
0.2   write 500
0.4   > . 1000:1000(0) ack 1 win 65535 <>
0.4   < . 1:1(0) ack 1001 win 0
0.8   > . 1000:1000(0) ack 1 win 65535 <>
0.8   < . 1:1(0) ack 1001 win 0
1.6   > . 1000:1000(0) ack 1 win 65535 <>
1.6   < . 1:1(0) ack 1001 win 0
3.1   < . 1:1(0) ack 1001 win 65535
3.1   > P. 1001:1501(500) ack 1 win 65535 <>
3.3   > P. 1001:1501(500) ack 1 win 65535 <>
3.35  < . 1:1(0) ack 1501 win 65535
3.4   < R 1:1(0) win 0
3.4   close
3.4   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 1), ("TcpExt.TCPTimeouts", 1), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// RFC 1122 4.2.2.17: a sender keeps probing a zero window as long as the receiver answers
/// (Linux resets icsk_probes_out on every ACK); the interval backs off up to 120 s.
#[test]
fn zero_window_probing_continues_while_answered() {
    let mut script = format!(
        "{ACCEPTED_SACK}
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.1   < . 1:1(0) ack 1001 win 0
0.2   write 500
"
    );
    let (mut t, mut intvl) = (200u64, 200u64);
    for _ in 0..20 {
        t += intvl;
        let s = t as f64 / 1000.0;
        script += &format!("{s}  > . 1000:1000(0) ack 1 win 65535 <>\n{s}  < . 1:1(0) ack 1001 win 0\n");
        intvl = (intvl * 2).min(120_000);
    }
    let s = (t + 1000) as f64 / 1000.0;
    script += &format!(
        "{s}  < . 1:1(0) ack 1001 win 65535
{s}  > P. 1001:1501(500) ack 1 win 65535 <>
{s}  < . 1:1(0) ack 1501 win 65535
{s}  < R 1:1(0) win 0
{s}  close
{s}  close listener
"
    );
    let mut s = run(cfg(), &script);
    s.assert_counters(&[("Tcp.RetransSegs", 0), ("TcpExt.TCPAbortOnTimeout", 0)]);
    s.assert_clean();
}

/// A window smaller than the next segment (but not zero): the probe timer sends what fits
/// (Linux: tcp_write_wakeup), then the rest as the window allows.
#[test]
fn window_smaller_than_segment() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.1   < . 1:1(0) ack 1001 win 500
0.2   write 1000
0.4   > P. 1001:1501(500) ack 1 win 65535 <>
0.4   < . 1:1(0) ack 1501 win 500
0.4   > P. 1501:2001(500) ack 1 win 65535 <>
0.4   < . 1:1(0) ack 2001 win 65535
0.5   < R 1:1(0) win 0
0.5   close
0.5   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 0), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// Keepalive (idle 10 s, interval 1 s, 3 probes): a probe after 10 s idle, answered; probes
/// again 10 s after the answer; unanswered, the connection is reset after the third.
#[test]
fn keepalive_probes_and_abort() {
    let c = TcpConfig {
        keepalive: Some((10_000, 1_000, 3)),
        ..cfg()
    };
    let mut s = run(
        c,
        &format!(
            "{ACCEPTED_SACK}
10    > . 0:0(0) ack 1 win 65535 <>
10    < . 1:1(0) ack 1 win 65535
20    > . 0:0(0) ack 1 win 65535 <>
21    > . 0:0(0) ack 1 win 65535 <>
22    > . 0:0(0) ack 1 win 65535 <>
23    > R. 1:1(0) ack 1 win 0 <>
23    expect_state CLOSE
23    expect_error timeout
23    read error timeout
23    close
23    close listener
"
        ),
    );
    s.assert_counters(&[
        ("Tcp.EstabResets", 1),
        ("Tcp.OutRsts", 1),
        ("Tcp.CurrEstab", 0),
        ("Tcp.RetransSegs", 0),
    ]);
    s.assert_clean();
}

/// Data keeps a connection from sending keepalives: the idle time counts from the last
/// segment received.
#[test]
fn keepalive_waits_for_idle() {
    let c = TcpConfig {
        keepalive: Some((2_000, 1_000, 2)),
        ..cfg()
    };
    let mut s = run(
        c,
        &format!(
            "{ACCEPTED_SACK}
1.5   < P. 1:11(10) ack 1 win 65535
1.54  > . 1:1(0) ack 11 win 65525 <>
3.0   < P. 11:21(10) ack 1 win 65535
3.04  > . 1:1(0) ack 21 win 65515 <>
5.0   > . 0:0(0) ack 21 win 65515 <>
5.5   < . 21:21(0) ack 1 win 65535
7.5   > . 0:0(0) ack 21 win 65515 <>
7.6   read 20
7.6   < R 21:21(0) win 0
7.6   close
7.6   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.EstabResets", 1), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// A window update that only closes the window (same seq, same ack, window 0) is taken
/// (Linux: tcp_may_update_window accepts a zero window), so nothing is sent into it.
#[test]
fn zero_window_by_pure_window_update() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.1   < . 1:1(0) ack 1001 win 65535
0.2   < . 1:1(0) ack 1001 win 0
0.3   write 500
0.5   > . 1000:1000(0) ack 1 win 65535 <>
0.5   < . 1:1(0) ack 1001 win 65535
0.5   > P. 1001:1501(500) ack 1 win 65535 <>
0.5   < . 1:1(0) ack 1501 win 65535
0.6   < R 1:1(0) win 0
0.6   close
0.6   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 0), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// RACK (RFC 8985) finds a lost retransmission without a second timeout: after the RTO the
/// sender slow-starts its retransmissions; when the peer SACKs the later one, the earlier one,
/// sent before it and not delivered an RTT later, is lost again and goes out at once
/// (TCPLostRetransmit). Without RACK it would wait for the backed-off RTO at 0.8 s.
#[test]
fn rack_detects_lost_retransmission() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
# One exchange gives an RTT sample (5 ms): RACK needs min_rtt to trust retransmissions.
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.105 < . 1:1(0) ack 1001 win 65535
0.2   write 5000
0.2   > . 1001:2001(1000) ack 1 win 65535 <>
0.2   > . 2001:3001(1000) ack 1 win 65535 <>
0.2   > . 3001:4001(1000) ack 1 win 65535 <>
0.2   > . 4001:5001(1000) ack 1 win 65535 <>
0.2   > P. 5001:6001(1000) ack 1 win 65535 <>
# Nothing comes back: timeout, everything is lost, restart from one segment.
0.4   > . 1001:2001(1000) ack 1 win 65535 <>
0.4   < . 1:1(0) ack 2001 win 65535
0.4   > . 2001:3001(1000) ack 1 win 65535 <>
0.4   > . 3001:4001(1000) ack 1 win 65535 <>
# 3001:4001 arrived, 2001:3001 (sent just before it) did not: lost again.
0.41  < . 1:1(0) ack 2001 win 65535 <sack 3001:4001>
0.41  > . 2001:3001(1000) ack 1 win 65535 <>
0.41  > . 4001:5001(1000) ack 1 win 65535 <>
0.42  < . 1:1(0) ack 6001 win 65535
0.5   < R 1:1(0) win 0
0.5   close
0.5   close listener
"
        ),
    );
    s.assert_counters(&[
        ("TcpExt.TCPTimeouts", 1),
        ("TcpExt.TCPLostRetransmit", 1),
        ("Tcp.RetransSegs", 5),
    ]);
    s.assert_clean();
}

/// Tail loss probe (RFC 8985 7): the last segments of a burst are lost and no ACK comes; after
/// PTO = max(2 SRTT, 10 ms) the last segment is sent again, its SACK lets RACK mark the hole
/// lost, and fast recovery repairs it -- no RTO (it would come at 0.4 s).
#[test]
fn tlp_recovers_tail_loss_without_rto() {
    let mut s = run(
        cfg_tlp(),
        &format!(
            "{ACCEPTED_SACK}
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.105 < . 1:1(0) ack 1001 win 65535
0.2   write 3000
0.2   > . 1001:2001(1000) ack 1 win 65535 <>
0.2   > . 2001:3001(1000) ack 1 win 65535 <>
0.2   > P. 3001:4001(1000) ack 1 win 65535 <>
0.21  > P. 3001:4001(1000) ack 1 win 65535 <>
0.215 < . 1:1(0) ack 2001 win 65535 <sack 3001:4001>
0.215 > . 2001:3001(1000) ack 1 win 65535 <>
0.22  < . 1:1(0) ack 4001 win 65535
0.3   < R 1:1(0) win 0
0.3   close
0.3   close listener
"
        ),
    );
    s.assert_counters(&[
        ("TcpExt.TCPLossProbes", 1),
        ("TcpExt.TCPSackRecovery", 1),
        ("TcpExt.TCPTimeouts", 0),
        ("Tcp.RetransSegs", 2),
    ]);
    s.assert_clean();
}

/// The receiver reports duplicates with D-SACK (RFC 2883): a segment it already acknowledged
/// (the block below the ACK, TCPDSACKOldSent) and one it already holds out of order (the first
/// block inside the second, TCPDSACKOfoSent). Each is reported once.
#[test]
fn dsack_sent_for_duplicate_segments() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < . 1:1001(1000) ack 1 win 65535
0.14  > . 1:1(0) ack 1001 win 64535 <>
0.2   < . 1:1001(1000) ack 1 win 65535
0.2   > . 1:1(0) ack 1001 win 64535 <sack 1:1001>
0.3   < . 2001:3001(1000) ack 1 win 65535
0.3   > . 1:1(0) ack 1001 win 64535 <sack 2001:3001>
0.31  < . 2001:3001(1000) ack 1 win 65535
0.31  > . 1:1(0) ack 1001 win 64535 <sack 2001:3001 2001:3001>
0.4   < . 1001:2001(1000) ack 1 win 65535
0.4   > . 1:1(0) ack 3001 win 62535 <>
0.5   read 3000
0.5   < R 3001:3001(0) win 0
0.5   close
0.5   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TCPDSACKOldSent", 1), ("TcpExt.TCPDSACKOfoSent", 1)]);
    s.assert_clean();
}

/// A fast retransmit caused by reordering is undone (Linux: tcp_try_undo_dsack): the original
/// arrives late (the ACK jumps past the hole), then the D-SACK for the retransmission shows it
/// was not needed, and the window the recovery took is given back (TCPDSACKUndo).
#[test]
fn dsack_undoes_spurious_fast_retransmit() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.105 < . 1:1(0) ack 1001 win 65535
0.2   write 5000
0.2   > . 1001:2001(1000) ack 1 win 65535 <>
0.2   > . 2001:3001(1000) ack 1 win 65535 <>
0.2   > . 3001:4001(1000) ack 1 win 65535 <>
0.2   > . 4001:5001(1000) ack 1 win 65535 <>
0.2   > P. 5001:6001(1000) ack 1 win 65535 <>
0.21  < . 1:1(0) ack 1001 win 65535 <sack 2001:3001>
0.21  < . 1:1(0) ack 1001 win 65535 <sack 2001:4001>
0.21  < . 1:1(0) ack 1001 win 65535 <sack 2001:5001>
0.21  > . 1001:2001(1000) ack 1 win 65535 <>
0.21  < . 1:1(0) ack 1001 win 65535 <sack 2001:6001>
0.215 < . 1:1(0) ack 6001 win 65535
0.216 < . 1:1(0) ack 6001 win 65535 <sack 1001:2001>
0.3   < R 1:1(0) win 0
0.3   close
0.3   close listener
"
        ),
    );
    s.assert_counters(&[
        ("TcpExt.TCPSackRecovery", 1),
        ("TcpExt.TCPDSACKRecv", 1),
        ("TcpExt.TCPDSACKUndo", 1),
        ("Tcp.RetransSegs", 1),
    ]);
    s.assert_clean();
}

/// A receiver may drop data it has SACKed (reneging, RFC 2018 8; blink does under memory
/// pressure). The cumulative ACK then stops at a SACKed segment; at the next timeout the SACK
/// marks are forgotten and that segment is sent again, instead of waiting forever for an ACK
/// of data the sender believes delivered (Linux: tcp_check_sack_reneging).
#[test]
fn sack_reneging_resends_sacked_data_after_timeout() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   write 2000
0.1   > . 1:1001(1000) ack 1 win 65535 <>
0.1   > P. 1001:2001(1000) ack 1 win 65535 <>
0.15  < . 1:1(0) ack 1 win 65535 <sack 1001:2001,nop,nop>
# RACK: the first segment, sent before the SACKed one, is lost after the reordering window.
0.158 > . 1:1001(1000) ack 1 win 65535 <>
# The ACK stops at the SACKed segment: the receiver dropped it.
0.2   < . 1:1(0) ack 1001 win 65535
0.406 > P. 1001:2001(1000) ack 1 win 65535 <>
0.45  < . 1:1(0) ack 2001 win 65535
0.5   < R 1:1(0) win 0
0.5   close
0.5   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TCPSACKReneging", 1), ("Tcp.RetransSegs", 2)]);
    s.assert_clean();
}

/// tcp_retries2 is a time, not a count (Linux: retransmits_timed_out with tcp_model_timeout):
/// an unanswered connection gives up 924.6 s after the first lost transmission, what 15
/// timeouts from the 200 ms floor would take. With a 0.9 s handshake RTT the RTO starts at
/// 2.7 s, so only 12 retransmissions fit before the connection times out.
#[test]
fn retries2_is_a_time_not_a_count() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
0.9   < . 1:1(0) ack 1 win 65535
0.9   accept
1     write 1000
1     > P. 1:1001(1000) ack 1 win 65535 <>
3.7   > P. 1:1001(1000) ack 1 win 65535 <>
9.1   > P. 1:1001(1000) ack 1 win 65535 <>
19.9  > P. 1:1001(1000) ack 1 win 65535 <>
41.5  > P. 1:1001(1000) ack 1 win 65535 <>
84.7  > P. 1:1001(1000) ack 1 win 65535 <>
171.1 > P. 1:1001(1000) ack 1 win 65535 <>
291.1 > P. 1:1001(1000) ack 1 win 65535 <>
411.1 > P. 1:1001(1000) ack 1 win 65535 <>
531.1 > P. 1:1001(1000) ack 1 win 65535 <>
651.1 > P. 1:1001(1000) ack 1 win 65535 <>
771.1 > P. 1:1001(1000) ack 1 win 65535 <>
891.1 > P. 1:1001(1000) ack 1 win 65535 <>
1011.1 expect_state CLOSE
1011.1 expect_error timeout
1011.1 read error timeout
1011.2 close
1011.2 close listener
",
    );
    s.assert_counters(&[
        ("Tcp.RetransSegs", 12),
        ("TcpExt.TCPAbortOnTimeout", 1),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}
