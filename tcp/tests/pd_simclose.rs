//! Scripted tests of simultaneous close under loss (issue 20): FINs cross, and an ACK or a FIN
//! is lost, so our FIN is retransmitted from CLOSING, backing off, until it is acknowledged
//! (RFC 9293 3.6; Linux: tcp_retransmit_timer in TCP_CLOSING).

mod script;

use script::{cfg, run, ACCEPTED_PLAIN, ACCEPTED_SACK};

/// FINs cross; the peer's ACK of our FIN is lost: CLOSING retransmits the FIN after the RTO
/// (200 ms), then after twice that, and the late ACK moves the connection to TIME-WAIT.
#[test]
fn closing_retransmits_fin_until_acked() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   close
0.1   > F. 1:1(0) ack 1 win 65535 <>
0.1   < F. 1:1(0) ack 1 win 65535
0.1   > . 2:2(0) ack 2 win 65535 <>
0.1   expect_state CLOSING
# The peer's ACK of our FIN is lost.
0.3   > F. 1:1(0) ack 2 win 65535 <>
0.3   expect_state CLOSING
0.7   > F. 1:1(0) ack 2 win 65535 <>
0.75  < . 2:2(0) ack 2 win 65535
0.75  expect_state TIME-WAIT
1.74  expect_state TIME-WAIT
1.75  expect_state gone
1.8   close listener
"
        ),
    );
    s.assert_counters(&[
        ("Tcp.RetransSegs", 2),
        ("TcpExt.TCPTimeouts", 2),
        ("TcpExt.TW", 1),
        ("Tcp.EstabResets", 0),
        ("Tcp.OutRsts", 0),
    ]);
    s.assert_clean();
}

/// Our FIN is lost and so is our ACK of the peer's FIN: the peer retransmits its FIN (ACKed
/// again from CLOSING), our FIN is retransmitted on timeout, and its ACK ends in TIME-WAIT.
#[test]
fn closing_after_our_fin_was_lost() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_PLAIN}
0.1   shutdown
0.1   > F. 1:1(0) ack 1 win 65535 <>
# Lost. The peer closes too, not having seen our FIN.
0.15  < F. 1:1(0) ack 1 win 65535
0.15  > . 2:2(0) ack 2 win 65535 <>
0.15  expect_state CLOSING
# That ACK is lost as well: the peer's FIN again.
0.25  < F. 1:1(0) ack 1 win 65535
0.25  > . 2:2(0) ack 2 win 65535 <>
0.25  expect_state CLOSING
0.3   > F. 1:1(0) ack 2 win 65535 <>
0.31  < . 2:2(0) ack 2 win 65535
0.31  expect_state TIME-WAIT
0.31  read eof
0.32  close
1.3   expect_state TIME-WAIT
1.32  expect_state gone
1.4   close listener
"
        ),
    );
    s.assert_counters(&[
        ("Tcp.RetransSegs", 1),
        ("TcpExt.TCPTimeouts", 1),
        ("TcpExt.TW", 1),
        ("Tcp.EstabResets", 0),
        ("Tcp.OutRsts", 0),
    ]);
    s.assert_clean();
}
