//! Scripted (packetdrill-style) tests of connection teardown: active close through TIME-WAIT,
//! passive close, simultaneous close, half-close, orphan timeouts, resets on close.

mod script;

use blink_tcp::TcpConfig;
use script::{cfg, run, ACCEPTED_SACK};

/// FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT, which lasts TcpConfig::timewait_ms; then the socket
/// is gone and its tuple answers with resets.
#[test]
fn active_close_time_wait() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.1   expect_state FIN-WAIT-1
0.15  < . 1:1(0) ack 2 win 65535
0.15  expect_state FIN-WAIT-2
0.2   < F. 1:1(0) ack 2 win 65535
0.2   > . 2:2(0) ack 2 win 65535 <>
0.2   expect_state TIME-WAIT
0.2   expect_counter Tcp.CurrEstab 0
1.19  expect_state TIME-WAIT
1.2   expect_state gone
1.3   < . 2:2(0) ack 2 win 65535
1.3   > R 2:2(0) win 0 <>
1.3   close listener
"
        ),
    );
    s.assert_counters(&[
        ("TcpExt.TW", 1),
        ("Tcp.EstabResets", 0),
        ("Tcp.CurrEstab", 0),
        ("Tcp.OutRsts", 1),
    ]);
    s.assert_clean();
}

/// In TIME-WAIT a retransmitted FIN (the peer missed our ACK) is ACKed again and restarts the
/// TIME-WAIT timer (RFC 9293 3.10.7.4, Linux: tcp_timewait_state_process).
#[test]
fn time_wait_acks_retransmitted_fin() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.1   < F. 1:1(0) ack 2 win 65535
0.1   > . 2:2(0) ack 2 win 65535 <>
0.1   expect_state TIME-WAIT
0.6   < F. 1:1(0) ack 2 win 65535
0.6   > . 2:2(0) ack 2 win 65535 <>
1.59  expect_state TIME-WAIT
1.6   expect_state gone
1.6   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TW", 1), ("Tcp.EstabResets", 0), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// CLOSE-WAIT -> LAST-ACK -> CLOSED: the peer's FIN is ACKed after the delayed-ACK timeout
/// (Linux's tcp_fin enters pingpong mode), we may still send after it, a retransmitted FIN is
/// ACKed again at once, and our own FIN is retransmitted on timeout.
#[test]
fn passive_close() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < F. 1:1(0) ack 1 win 65535
0.1   expect_state CLOSE-WAIT
0.1   read eof
0.14  > . 1:1(0) ack 2 win 65535 <>
0.2   write 100
0.2   > P. 1:101(100) ack 2 win 65535 <>
0.2   < . 2:2(0) ack 101 win 65535
0.25  < F. 1:1(0) ack 101 win 65535
0.25  > . 101:101(0) ack 2 win 65535 <>
0.3   close
0.3   > F. 101:101(0) ack 2 win 65535 <>
0.3   expect_state LAST-ACK
0.5   > F. 101:101(0) ack 2 win 65535 <>
0.55  < . 2:2(0) ack 102 win 65535
0.55  expect_state gone
0.6   close listener
"
        ),
    );
    s.assert_counters(&[
        ("Tcp.RetransSegs", 1),
        ("TcpExt.TCPTimeouts", 1),
        ("Tcp.EstabResets", 0),
        ("Tcp.CurrEstab", 0),
        ("TcpExt.TW", 0),
    ]);
    s.assert_clean();
}

/// FINs cross: FIN-WAIT-1 -> CLOSING -> TIME-WAIT.
#[test]
fn simultaneous_close() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.1   < F. 1:1(0) ack 1 win 65535
0.1   > . 2:2(0) ack 2 win 65535 <>
0.1   expect_state CLOSING
0.15  < . 2:2(0) ack 2 win 65535
0.15  expect_state TIME-WAIT
1.14  expect_state TIME-WAIT
1.15  expect_state gone
1.2   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TW", 1), ("Tcp.EstabResets", 0), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// shutdown(SHUT_WR): our FIN goes out, data keeps coming in and is read, then the peer's FIN;
/// after TIME-WAIT the socket waits, closed, for the application to let go.
#[test]
fn half_close() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   shutdown
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.15  < . 1:1(0) ack 2 win 65535
0.15  expect_state FIN-WAIT-2
0.2   < P. 1:1001(1000) ack 2 win 65535
0.24  > . 2:2(0) ack 1001 win 64535 <>
0.25  read 1000
0.3   < P. 1001:1101(100) ack 2 win 65535
0.3   < F. 1101:1101(0) ack 2 win 65535
0.3   > . 2:2(0) ack 1102 win 65435 <>
0.3   read 100
0.3   read eof
0.3   expect_state TIME-WAIT
1.3   expect_state CLOSE
1.3   close
1.3   expect_state gone
1.3   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TW", 1), ("Tcp.EstabResets", 0), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// Keepalive on a half-closed connection: FIN-WAIT-2 (not orphaned) is probed like any other
/// idle connection, not torn down when the keepalive timer fires.
#[test]
fn half_close_with_keepalive() {
    let c = TcpConfig {
        keepalive: Some((2_000, 1_000, 2)),
        ..cfg()
    };
    let mut s = run(
        c,
        &format!(
            "{ACCEPTED_SACK}
0.1   shutdown
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.15  < . 1:1(0) ack 2 win 65535
0.2   < P. 1:101(100) ack 2 win 65535
0.24  > . 2:2(0) ack 101 win 65435 <>
2.2   > . 1:1(0) ack 101 win 65435 <>
2.2   < . 101:101(0) ack 2 win 65535
2.2   expect_state FIN-WAIT-2
3.0   < P. 101:201(100) ack 2 win 65535
3.04  > . 2:2(0) ack 201 win 65335 <>
3.1   read 200
3.1   < F. 201:201(0) ack 2 win 65535
3.1   > . 2:2(0) ack 202 win 65535 <>
3.1   read eof
3.1   close
4.1   expect_state gone
4.1   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TW", 1), ("Tcp.CurrEstab", 0), ("Tcp.OutRsts", 0)]);
    s.assert_clean();
}

/// An orphaned FIN-WAIT-2 connection lasts TcpConfig::fin_timeout_ms (Linux: tcp_fin_timeout).
#[test]
fn orphan_fin_wait2_timeout() {
    let c = TcpConfig {
        fin_timeout_ms: 2_000,
        ..cfg()
    };
    let mut s = run(
        c,
        &format!(
            "{ACCEPTED_SACK}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.15  < . 1:1(0) ack 2 win 65535
0.15  expect_state FIN-WAIT-2
2.14  expect_state FIN-WAIT-2
2.15  expect_state gone
2.15  close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.CurrEstab", 0), ("Tcp.OutRsts", 0), ("Tcp.EstabResets", 0)]);
    s.assert_clean();
}

/// close() with unread data resets the connection (RFC 2525 2.17, Linux: tcp_close).
#[test]
fn close_with_unread_data_sends_rst() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < P. 1:101(100) ack 1 win 65535
0.14  > . 1:1(0) ack 101 win 65435 <>
0.2   close
0.2   > R. 1:1(0) ack 101 win 0 <>
0.2   expect_state gone
0.3   < . 101:101(0) ack 1 win 65535
0.3   > R 1:1(0) win 0 <>
0.3   close listener
"
        ),
    );
    s.assert_counters(&[
        ("TcpExt.TCPAbortOnClose", 1),
        ("TcpExt.TCPAbortOnData", 0),
        ("Tcp.EstabResets", 1),
        ("Tcp.OutRsts", 2),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// Data arriving after close() cannot be delivered to anyone: the connection is reset
/// (RFC 1122 4.2.2.13, Linux: TCPAbortOnData in tcp_rcv_state_process).
#[test]
fn data_after_close_resets() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.15  < . 1:1(0) ack 2 win 65535
0.2   < P. 1:101(100) ack 2 win 65535
0.2   > R 2:2(0) win 0 <>
0.2   expect_state gone
0.2   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TCPAbortOnData", 1), ("Tcp.OutRsts", 1), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// A new SYN for a tuple in TIME-WAIT with a higher sequence number starts a new connection at
/// once (RFC 6191; Linux: TCP_TW_SYN) with an ISN beyond the old connection's sequence space
/// (old snd_nxt + 65537, i.e. 65539 relative to the old ISN). A SYN with an old sequence number
/// is answered like any old segment: the TIME-WAIT ACK.
#[test]
fn time_wait_taken_over_by_newer_syn() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.1   < F. 1:1(0) ack 2 win 65535
0.1   > . 2:2(0) ack 2 win 65535 <>
0.1   expect_state TIME-WAIT
0.2   < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop>
0.2   > . 2:2(0) ack 2 win 65535 <>
0.2   expect_state TIME-WAIT
0.3   < S 5000:5000(0) win 65535 <mss 1000,sackOK,nop,nop>
0.3   > S. 65539:65539(0) ack 5001 win 65535 <mss 1460,sackOK>
0.3   < . 5001:5001(0) ack 65540 win 65535
0.3   accept
0.3   expect_state ESTAB
0.4   < R. 5001:5001(0) ack 65540 win 0
0.4   expect_error reset
0.4   close
0.4   close listener
"
        ),
    );
    s.assert_counters(&[
        ("Tcp.PassiveOpens", 2),
        ("TcpExt.TW", 0),
        ("Tcp.EstabResets", 1),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// An in-window reset ends TIME-WAIT (RFC 1337's "assassination", which Linux allows with its
/// default tcp_rfc1337 = 0); the tuple then answers with resets.
#[test]
fn time_wait_killed_by_reset() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.1   < F. 1:1(0) ack 2 win 65535
0.1   > . 2:2(0) ack 2 win 65535 <>
0.1   expect_state TIME-WAIT
0.2   < R 2:2(0) win 0
0.2   expect_state gone
0.3   < . 2:2(0) ack 2 win 65535
0.3   > R 2:2(0) win 0 <>
0.3   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TW", 0), ("Tcp.OutRsts", 1), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// Keepalive stays quiet while data is in flight: the retransmission timer is what watches the
/// peer then (Linux: tcp_keepalive_timer reschedules when packets_out or the write queue is
/// non-empty). Here keepalive would fire at 1 s; only the RTO retransmissions go out.
#[test]
fn keepalive_silent_with_data_in_flight() {
    let c = TcpConfig {
        keepalive: Some((1_000, 500, 2)),
        ..cfg()
    };
    let mut s = run(
        c,
        &format!(
            "{ACCEPTED_SACK}
0.1   write 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.3   > P. 1:1001(1000) ack 1 win 65535 <>
0.7   > P. 1:1001(1000) ack 1 win 65535 <>
1.5   > P. 1:1001(1000) ack 1 win 65535 <>
2.0   < . 1:1(0) ack 1001 win 65535
2.0   expect_state ESTAB
3.0   > . 1000:1000(0) ack 1 win 65535 <>
3.0   < . 1:1(0) ack 1001 win 65535
3.1   < R 1:1(0) win 0
3.1   close
3.1   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 3), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}
