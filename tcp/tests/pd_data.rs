//! Scripted (packetdrill-style) tests of data transfer: delayed and quick ACKs, data in both
//! directions, out-of-order data and SACK, sequence number wraparound, PAWS.

mod script;

use blink_tcp::TcpConfig;
use script::{cfg, run, ACCEPTED_SACK};

/// A lone segment is ACKed after the 40 ms delayed-ACK timer, every second full segment at
/// once (Linux: __tcp_ack_snd_check), and data going the other way carries the ACK.
#[test]
fn delayed_ack_and_quick_ack() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < P. 1:101(100) ack 1 win 65535
0.14  > . 1:1(0) ack 101 win 65435 <>
0.2   < . 101:1101(1000) ack 1 win 65535
0.2   < . 1101:2101(1000) ack 1 win 65535
0.2   > . 1:1(0) ack 2101 win 63435 <>
0.3   < . 2101:3101(1000) ack 1 win 65535
0.34  > . 1:1(0) ack 3101 win 62435 <>
# Reading everything reopens less than twice the advertised window: no window update.
0.4   read 3100
0.5   < P. 3101:3201(100) ack 1 win 65535
0.52  write 200
0.52  > P. 1:201(200) ack 3201 win 65435 <>
0.6   < . 3201:3201(0) ack 201 win 65535
0.7   read 100
0.8   < F. 3201:3201(0) ack 201 win 65535
0.8   read eof
0.8   close
0.8   > F. 201:201(0) ack 3202 win 65535 <>
0.85  < . 3202:3202(0) ack 202 win 65535
0.85  expect_state gone
0.9   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.DelayedACKs", 2), ("Tcp.RetransSegs", 0), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// Nagle, Minshall's variant (Linux: tcp_nagle_check): a small segment is held while an earlier
/// small one is unacknowledged, and later writes join it; with TCP_NODELAY it goes at once.
#[test]
fn nagle_holds_small_segments() {
    let tail = "
0.16  < . 1:1(0) ack 301 win 65535
0.4   < R 1:1(0) win 0
0.4   close
0.4   close listener
";
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   write 100
0.1   > P. 1:101(100) ack 1 win 65535 <>
0.11  write 100
0.12  write 100
0.15  < . 1:1(0) ack 101 win 65535
0.15  > P. 101:301(200) ack 1 win 65535 <>
{tail}"
        ),
    );
    s.assert_counters(&[("Tcp.RetransSegs", 0)]);
    s.assert_clean();
    let nodelay = blink_tcp::TcpConfig { nodelay: true, ..cfg() };
    let mut s = run(
        nodelay,
        &format!(
            "{ACCEPTED_SACK}
0.1   write 100
0.1   > P. 1:101(100) ack 1 win 65535 <>
0.11  write 100
0.11  > P. 101:201(100) ack 1 win 65535 <>
0.12  write 100
0.12  > P. 201:301(100) ack 1 win 65535 <>
{tail}"
        ),
    );
    s.assert_clean();
}

/// A reader that does not read closes the window; reading reopens it with a window update.
#[test]
fn receive_window_fills_and_reopens() {
    let c = blink_tcp::TcpConfig { rcvbuf: 4000, ..cfg() };
    let mut s = run(
        c,
        "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 4000 <mss 1460>
0     < . 1:1(0) ack 1 win 65535
0     accept
0.1   < . 1:1001(1000) ack 1 win 65535
0.1   < . 1001:2001(1000) ack 1 win 65535
0.1   > . 1:1(0) ack 2001 win 2000 <>
0.1   < . 2001:3001(1000) ack 1 win 65535
0.1   < . 3001:4001(1000) ack 1 win 65535
0.1   > . 1:1(0) ack 4001 win 0 <>
# Beyond the window: dropped, and ACKed at once.
0.2   < . 4001:5001(1000) ack 1 win 65535
0.2   > . 1:1(0) ack 4001 win 0 <>
0.3   read 4000
0.3   > . 1:1(0) ack 4001 win 4000 <>
0.4   < . 4001:5001(1000) ack 1 win 65535
0.44  > . 1:1(0) ack 5001 win 3000 <>
0.5   read 1000
0.5   < R 5001:5001(0) win 0
0.5   close
0.5   close listener
",
    );
    s.assert_counters(&[("Tcp.EstabResets", 1), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// Out-of-order segments are ACKed at once with SACK blocks, the block holding the newest
/// segment first (RFC 2018 4); filling a hole is ACKed at once too.
#[test]
fn out_of_order_sack_then_fill() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < . 1001:2001(1000) ack 1 win 65535
0.1   > . 1:1(0) ack 1 win 65535 <sack 1001:2001>
0.1   < . 2001:3001(1000) ack 1 win 65535
0.1   > . 1:1(0) ack 1 win 65535 <sack 1001:3001>
0.11  < . 4001:5001(1000) ack 1 win 65535
0.11  > . 1:1(0) ack 1 win 65535 <sack 4001:5001 1001:3001>
# A duplicate of out-of-order data changes nothing but is ACKed, the block holding it first,
# after a D-SACK block reporting the duplicate (RFC 2883; Linux: tcp_data_queue_ofo).
0.115 < . 2001:3001(1000) ack 1 win 65535
0.115 > . 1:1(0) ack 1 win 65535 <sack 2001:3001 1001:3001 4001:5001>
0.12  < . 1:1001(1000) ack 1 win 65535
0.12  > . 1:1(0) ack 3001 win 62535 <sack 4001:5001>
0.13  < P. 3001:4001(1000) ack 1 win 65535
0.13  > . 1:1(0) ack 5001 win 60535 <>
0.2   read 5000
0.3   < F. 5001:5001(0) ack 1 win 65535
0.3   close
0.3   > F. 1:1(0) ack 5002 win 65535 <>
0.35  < . 5002:5002(0) ack 2 win 65535
0.4   close listener
"
        ),
    );
    s.assert_counters(&[("Tcp.CurrEstab", 0), ("Tcp.RetransSegs", 0)]);
    s.assert_clean();
}

/// The remote's ISN is just below 2^32: in-order and out-of-order data across the wrap.
#[test]
fn sequence_wraparound() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0     < S 4294966000:4294966000(0) win 65535 <mss 1000,sackOK,nop,nop>
0     > S. 0:0(0) ack 4294966001 win 65535 <mss 1460,sackOK>
0     < . 4294966001:4294966001(0) ack 1 win 65535
0     accept
0.1   < . 4294966001:4294967001(1000) ack 1 win 65535
0.1   < . 4294967001:4294968001(1000) ack 1 win 65535
0.1   > . 1:1(0) ack 4294968001 win 63535 <>
0.2   < . 4294969001:4294970001(1000) ack 1 win 65535
0.2   > . 1:1(0) ack 4294968001 win 63535 <sack 4294969001:4294970001>
0.2   < . 4294968001:4294969001(1000) ack 1 win 65535
0.2   > . 1:1(0) ack 4294970001 win 61535 <>
0.3   read 4000
0.3   write 1500
0.3   > . 1:1001(1000) ack 4294970001 win 65535 <>
0.3   > P. 1001:1501(500) ack 4294970001 win 65535 <>
0.35  < . 4294970001:4294970001(0) ack 1501 win 65535
0.4   < F. 4294970001:4294970001(0) ack 1501 win 65535
0.4   close
0.4   > F. 1501:1501(0) ack 4294970002 win 65535 <>
0.45  < . 4294970002:4294970002(0) ack 1502 win 65535
0.45  expect_state gone
0.5   close listener
",
    );
    s.assert_counters(&[("Tcp.CurrEstab", 0), ("Tcp.RetransSegs", 0)]);
    s.assert_clean();
}

/// PAWS (RFC 7323 5): a segment whose timestamp is older than the last one is dropped and
/// answered with a duplicate ACK; the same data with a fresh timestamp is accepted.
#[test]
fn paws_drops_old_timestamp() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 0>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 0 ecr 1000,nop,wscale 0>
0     < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 1010 ecr *>
0     accept
0.1   < P. 1:101(100) ack 1 win 65535 <nop,nop,TS val 1100 ecr *>
0.14  > . 1:1(0) ack 101 win 65435 <nop,nop,TS val 140 ecr 1100>
0.2   < P. 101:201(100) ack 1 win 65535 <nop,nop,TS val 900 ecr *>
0.2   > . 1:1(0) ack 101 win 65435 <nop,nop,TS val 200 ecr 1100>
0.2   expect_counter TcpExt.PAWSEstab 1
0.3   < P. 101:201(100) ack 1 win 65535 <nop,nop,TS val 1200 ecr *>
0.34  > . 1:1(0) ack 201 win 65335 <nop,nop,TS val 340 ecr 1200>
0.4   read 200
0.5   < F. 201:201(0) ack 1 win 65535 <nop,nop,TS val 1300 ecr *>
0.5   close
0.5   > F. 1:1(0) ack 202 win 65535 <nop,nop,TS val 500 ecr 1300>
0.55  < . 202:202(0) ack 2 win 65535 <nop,nop,TS val 1350 ecr *>
0.55  expect_state gone
0.6   close listener
",
    );
    s.assert_counters(&[("TcpExt.PAWSEstab", 1), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// Tiny out-of-order segments cannot pin the mbuf pool: the receive and out-of-order queues
/// hold at most `rcv_skb_limit()` skbs (127 for a 64 KiB buffer) whatever their byte count;
/// beyond it out-of-order data is dropped (TcpExt TCPOFODrop), and in-order data reclaims the
/// out-of-order queue (OfoPruned) — the SACK blocks that described it go too.
#[test]
fn tiny_out_of_order_segments_are_bounded_and_pruned() {
    let mut script = String::from(ACCEPTED_SACK);
    for i in 0..140u32 {
        let s = 2 + 2 * i;
        // The newest block first, then the three reported before it, most recent first (RFC
        // 2018 4); from the 128th segment on the queue is full, the segment is dropped and
        // the blocks stay as they were.
        let newest = 2 + 2 * i.min(126);
        let blocks: Vec<String> = (0..4)
            .filter(|k| newest >= 2 + 2 * k)
            .map(|k| format!("{}:{}", newest - 2 * k, newest - 2 * k + 1))
            .collect();
        let sack = blocks.join(" ");
        script += &format!(
            "0.1   < . {s}:{}(1) ack 1 win 65535\n0.1   > . 1:1(0) ack 1 win 65535 <nop,nop,sack {sack}>\n",
            s + 1
        );
    }
    script += "
0.1   expect_counter TcpExt.TCPOFODrop 13
0.2   < . 1:2(1) ack 1 win 65535
0.2   > . 1:1(0) ack 2 win 65534 <>
0.2   expect_counter TcpExt.OfoPruned 1
0.2   expect_counter TcpExt.TCPOFODrop 140
0.3   read 1
0.3   close
0.3   > F. 1:1(0) ack 2 win 65535 <>
0.35  < F. 2:2(0) ack 2 win 65535
0.35  > . 2:2(0) ack 3 win 65535 <>
1.4   close listener
";
    let mut s = run(cfg(), &script);
    s.assert_counters(&[("TcpExt.TCPRcvQDrop", 0), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// Global memory pressure (TcpConfig::tcp_mem_pct, here 0%: always): a socket with data
/// queued takes no more (a short write; the ACK wakes the writer), and received data is
/// dropped (TcpExt TCPRcvQDrop) with an ACK that tells the peer what is missing.
#[test]
fn memory_pressure_short_writes_and_drops_received_data() {
    let c = TcpConfig {
        tcp_mem_pct: (0, 0),
        ..cfg()
    };
    let mut s = run(
        c,
        &format!(
            "{ACCEPTED_SACK}
0.1   write 3000 => 1000
0.1   > P. 1:1001(1000) ack 1 win 65535 <>
0.15  < P. 1:101(100) ack 1001 win 65535
0.15  > . 1001:1001(0) ack 1 win 65535 <>
0.15  expect_counter TcpExt.TCPRcvQDrop 1
0.2   write 3000 => 1000
0.2   > P. 1001:2001(1000) ack 1 win 65535 <>
0.25  < . 1:1(0) ack 2001 win 65535
0.3   < R 1:1(0) win 0
0.3   close
0.3   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TCPRcvQDrop", 1)]);
    s.assert_clean();
}

/// Out-of-order segments that overlap one another (a sender re-segmenting its
/// retransmissions, duplicates) can fill the receive memory bound on their own. The in-order
/// segment that fills the hole must still get in: the out-of-order queue is pruned for it
/// (Linux: tcp_prune_ofo_queue from tcp_try_rmem_schedule), else the connection stalls for
/// good, the hole dropped on every retransmission.
#[test]
fn in_order_data_prunes_overlapping_out_of_order_data_to_fit() {
    let mut script = String::from(ACCEPTED_SACK);
    for k in 0..66u32 {
        let s = 1001 + 100 * k;
        script += &format!(
            "0.1   < . {s}:{}(1000) ack 1 win 65535\n0.1   > . 1:1(0) ack 1 win 65535 <nop,nop,sack 1001:{}>\n",
            s + 1000,
            s + 1000
        );
    }
    script += "
0.2   < . 1:1001(1000) ack 1 win 65535
0.2   > . 1:1(0) ack 1001 win 64535 <>
0.2   expect_counter TcpExt.OfoPruned 1
0.3   read 1000
0.3   close
0.3   > F. 1:1(0) ack 1001 win 65535 <>
0.35  < F. 1001:1001(0) ack 2 win 65535
0.35  > . 2:2(0) ack 1002 win 65535 <>
1.4   close listener
";
    let mut s = run(cfg(), &script);
    s.assert_counters(&[("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}
