//! Scripted tests of urgent data (issue 20). blink keeps urgent data in line (RFC 6093 6: new
//! applications should, as with SO_OOBINLINE on Linux): the URG flag and the urgent pointer
//! change nothing about delivery, so every byte reaches the application once, in order,
//! whatever the pointer says. The harness checks every byte read against the one sent at its
//! sequence number, so a byte lost, moved out of band or delivered twice fails the script.

mod script;

use script::{cfg, run, ACCEPTED_SACK};

/// The urgent pointer inside the segment: all 100 bytes read in line, the urgent one too.
#[test]
fn urgent_byte_inside_the_segment_is_read_in_line() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < UP. 1:101(100) ack 1 win 65535 urg 50
0.14  > . 1:1(0) ack 101 win 65435 <>
0.15  read 100
0.15  read none
0.2   close
0.2   > F. 1:1(0) ack 101 win 65535 <>
0.21  < F. 101:101(0) ack 2 win 65535
0.21  > . 2:2(0) ack 102 win 65535 <>
1.3   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 0), ("TcpExt.TCPAbortOnData", 0)]);
    s.assert_clean();
}

/// The pointer beyond the segment (RFC 6093 4: urgent data goes on into the next ones), then
/// moved back in the next segment, then a segment without URG: 3000 bytes, in order.
#[test]
fn urgent_pointer_beyond_the_segment() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < U. 1:1001(1000) ack 1 win 65535 urg 2500
0.1   < U. 1001:2001(1000) ack 1 win 65535 urg 1500
0.1   > . 1:1(0) ack 2001 win 63535 <>
0.1   < P. 2001:3001(1000) ack 1 win 65535
0.14  > . 1:1(0) ack 3001 win 62535 <>
0.2   read 3000
0.2   read none
0.3   < R. 3001:3001(0) ack 1 win 0
0.3   close
0.3   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 0), ("Tcp.EstabResets", 1)]);
    s.assert_clean();
}

/// URG with a zero pointer (meaningless, RFC 6093 says so) and URG on a pure ACK: the data is
/// delivered, the bare ACK draws nothing.
#[test]
fn urgent_pointer_zero_and_urg_without_data() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < U. 1:101(100) ack 1 win 65535 urg 0
0.11  < U. 101:101(0) ack 1 win 65535 urg 10
0.14  > . 1:1(0) ack 101 win 65435 <>
0.2   read 100
0.2   read none
0.3   < R. 101:101(0) ack 1 win 0
0.3   close
0.3   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 0), ("Tcp.EstabResets", 1)]);
    s.assert_clean();
}

/// Urgent segments out of order, then a retransmission overlapping what arrived: the hole is
/// filled, the overlap is reported as a D-SACK and not delivered again.
#[test]
fn urgent_data_out_of_order_and_duplicated_is_read_once() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < U. 1001:2001(1000) ack 1 win 65535 urg 200
0.1   > . 1:1(0) ack 1 win 65535 <sack 1001:2001>
0.11  < U. 1:1001(1000) ack 1 win 65535 urg 1200
0.11  > . 1:1(0) ack 2001 win 63535 <>
0.12  < U. 501:1501(1000) ack 1 win 65535 urg 700
0.12  > . 1:1(0) ack 2001 win 63535 <sack 501:1501>
0.2   read 2000
0.2   read none
0.3   < R. 2001:2001(0) ack 1 win 0
0.3   close
0.3   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 0), ("TcpExt.TCPDSACKOldSent", 1)]);
    s.assert_clean();
}
