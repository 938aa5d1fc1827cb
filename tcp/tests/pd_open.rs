//! Scripted (packetdrill-style) tests of connection set-up and resets: passive and active open
//! with and without options, simultaneous open, SYN and SYN-ACK retransmission, RST handling
//! (RFC 9293, RFC 5961), resets for closed ports, the listener backlog.

mod script;

use blink_tcp::TcpConfig;
use script::{cfg, run, ACCEPTED_SACK};

/// The peer offers MSS, SACK, timestamps and window scaling; blink takes them all, answers in
/// kind, and the connection uses them (scaled windows, TS echo, a 1448-byte MSS).
#[test]
fn passive_open_with_options() {
    let big = TcpConfig {
        timewait_ms: 1000,
        seed: Some(script::seed()),
        ..Default::default()
    };
    let mut s = run(
        big,
        "
0     socket listen 8080
0.1   < S 1000:1000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
0.1   > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val 100 ecr 100,nop,wscale 5>
0.15  < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 110 ecr *>
0.15  accept
0.15  expect_state ESTAB
0.15  expect_counter Tcp.CurrEstab 1
# Two full segments and the rest at once (the peer's window is 512 << 7 = 65536, and
# Minshall's Nagle lets the small tail go: no small segment is in flight).
0.3   write 3000
0.3   > . 1:1449(1448) ack 1001 win 32768 <nop,nop,TS val 300 ecr 110>
0.3   > . 1449:2897(1448) ack 1001 win 32768 <nop,nop,TS val 300 ecr 110>
0.3   > P. 2897:3001(104) ack 1001 win 32768 <nop,nop,TS val 300 ecr 110>
0.35  < . 1001:1001(0) ack 3001 win 512 <nop,nop,TS val 150 ecr *>
# Our window is scaled by 5: 1 MiB of buffer, less 100 unread bytes, rounded up (the right
# edge never moves left) reads as 32765.
0.4   < P. 1001:1101(100) ack 3001 win 512 <nop,nop,TS val 160 ecr *>
0.44  > . 3001:3001(0) ack 1101 win 32765 <nop,nop,TS val 440 ecr 160>
0.5   read 100
0.5   close
0.5   > F. 3001:3001(0) ack 1101 win 32768 <nop,nop,TS val 500 ecr 160>
0.55  < F. 1101:1101(0) ack 3002 win 512 <nop,nop,TS val 190 ecr *>
0.55  > . 3002:3002(0) ack 1102 win 32768 <nop,nop,TS val 550 ecr 190>
0.55  expect_state TIME-WAIT
1.55  expect_state gone
1.55  close listener
",
    );
    s.assert_counters(&[
        ("Tcp.PassiveOpens", 1),
        ("Tcp.ActiveOpens", 0),
        ("Tcp.CurrEstab", 0),
        ("Tcp.RetransSegs", 0),
        ("Tcp.EstabResets", 0),
        ("TcpExt.TW", 1),
    ]);
    s.assert_clean();
}

/// A SYN without options: blink still announces its MSS, sends no other option, uses the
/// default MSS of 536 and unscaled windows.
#[test]
fn passive_open_without_options() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0.1   < S 1000:1000(0) win 8192
0.1   > S. 0:0(0) ack 1001 win 65535 <mss 1460>
0.2   < . 1001:1001(0) ack 1 win 8192
0.2   accept
0.3   write 1000
0.3   > . 1:537(536) ack 1001 win 65535 <>
0.3   > P. 537:1001(464) ack 1001 win 65535 <>
0.35  < . 1001:1001(0) ack 1001 win 8192
0.4   < P. 1001:1101(100) ack 1001 win 8192
0.44  > . 1001:1001(0) ack 1101 win 65435 <>
0.5   read 100
0.5   < F. 1101:1101(0) ack 1001 win 8192
0.5   read eof
0.54  > . 1001:1001(0) ack 1102 win 65535 <>
0.6   close
0.6   > F. 1001:1001(0) ack 1102 win 65535 <>
0.65  < . 1102:1102(0) ack 1002 win 8192
0.65  expect_state gone
0.7   close listener
",
    );
    s.assert_counters(&[("Tcp.PassiveOpens", 1), ("Tcp.CurrEstab", 0), ("TcpExt.TW", 0)]);
    s.assert_clean();
}

/// Options switched off in TcpConfig are not agreed to on a passive open, whatever the peer
/// offers (Linux: the tcp_sack / tcp_timestamps / tcp_window_scaling sysctls).
#[test]
fn passive_open_options_disabled_by_config() {
    let c = TcpConfig {
        sack: false,
        timestamps: false,
        window_scaling: false,
        ..cfg()
    };
    let mut s = run(
        c,
        "
0     socket listen 8080
0     < S 1000:1000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>
0.1   < . 1001:1001(0) ack 1 win 65535
0.1   accept
0.2   write 100
0.2   > P. 1:101(100) ack 1001 win 65535 <>
0.25  < . 1001:1001(0) ack 101 win 65535
0.3   < R 1001:1001(0) win 0
0.3   close
0.3   close listener
",
    );
    s.assert_counters(&[("Tcp.PassiveOpens", 1), ("Tcp.EstabResets", 1), ("Tcp.CurrEstab", 0)]);
    s.assert_clean();
}

/// connect(): SYN with every option, the peer's SYN-ACK settles them (its MSS of 1400 wins),
/// then a passive close from the peer's side.
#[test]
fn active_open() {
    let mut s = run(
        cfg(),
        "
0     connect 10.0.0.1:80
0     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 0>
0     expect_state SYN-SENT
0.1   < S. 5000:5000(0) ack 1 win 65535 <mss 1400,sackOK,TS val 700 ecr *,nop,wscale 2>
0.1   > . 1:1(0) ack 5001 win 65535 <nop,nop,TS val 100 ecr 700>
0.1   expect_state ESTAB
0.1   expect_counter Tcp.CurrEstab 1
0.2   write 2000
0.2   > . 1:1389(1388) ack 5001 win 65535 <nop,nop,TS val 200 ecr 700>
0.2   > P. 1389:2001(612) ack 5001 win 65535 <nop,nop,TS val 200 ecr 700>
0.3   < . 5001:5001(0) ack 2001 win 1000 <nop,nop,TS val 800 ecr *>
0.3   < F. 5001:5001(0) ack 2001 win 1000 <nop,nop,TS val 810 ecr *>
0.3   expect_state CLOSE-WAIT
0.3   read eof
0.34  > . 2001:2001(0) ack 5002 win 65535 <nop,nop,TS val 340 ecr 810>
0.4   close
0.4   > F. 2001:2001(0) ack 5002 win 65535 <nop,nop,TS val 400 ecr 810>
0.4   expect_state LAST-ACK
0.45  < . 5002:5002(0) ack 2002 win 1000 <nop,nop,TS val 850 ecr *>
0.45  expect_state gone
",
    );
    s.assert_counters(&[
        ("Tcp.ActiveOpens", 1),
        ("Tcp.PassiveOpens", 0),
        ("Tcp.CurrEstab", 0),
        ("Tcp.AttemptFails", 0),
        ("Tcp.RetransSegs", 0),
    ]);
    s.assert_clean();
}

/// Simultaneous open (RFC 9293 3.5 figure 8): SYNs cross, each side answers with a SYN-ACK,
/// and the peer's SYN-ACK completes the handshake. It is an active open only.
#[test]
fn simultaneous_open() {
    let mut s = run(
        cfg(),
        "
0     connect 10.0.0.1:80
0     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 0>
0.05  < S 5000:5000(0) win 65535 <mss 1460,sackOK,TS val 700 ecr 0,nop,wscale 2>
0.05  > S. 0:0(0) ack 5001 win 65535 <mss 1460,sackOK,TS val 50 ecr 700,nop,wscale 0>
0.05  expect_state SYN-RECV
0.1   < S. 5000:5000(0) ack 1 win 65535 <mss 1460,sackOK,TS val 710 ecr *,nop,wscale 2>
0.1   expect_state ESTAB
0.2   write 100
0.2   > P. 1:101(100) ack 5001 win 65535 <nop,nop,TS val 200 ecr 710>
0.25  < . 5001:5001(0) ack 101 win 1000 <nop,nop,TS val 750 ecr *>
0.3   < R 5001:5001(0) win 0
0.3   read error reset
0.3   close
",
    );
    s.assert_counters(&[
        ("Tcp.ActiveOpens", 1),
        ("Tcp.PassiveOpens", 0),
        ("Tcp.EstabResets", 1),
        ("Tcp.CurrEstab", 0),
        ("Tcp.RetransSegs", 0),
    ]);
    s.assert_clean();
}

/// An unanswered SYN is retransmitted after 1, 2, 4 ... 32 s with the same options (six
/// retries, net.ipv4.tcp_syn_retries), and the attempt fails after 127 s.
#[test]
fn syn_retransmission_backoff_and_timeout() {
    let mut s = run(
        cfg(),
        "
0     connect 10.0.0.1:80
0     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 0>
1     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 0>
3     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 3000 ecr 0,nop,wscale 0>
7     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 7000 ecr 0,nop,wscale 0>
15    > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 15000 ecr 0,nop,wscale 0>
31    > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 31000 ecr 0,nop,wscale 0>
63    > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 63000 ecr 0,nop,wscale 0>
126.9 expect_state SYN-SENT
127   expect_state CLOSE
127   expect_error timeout
127   read error timeout
127   close
127   expect_state gone
",
    );
    s.assert_counters(&[
        ("Tcp.ActiveOpens", 1),
        ("Tcp.AttemptFails", 1),
        ("Tcp.RetransSegs", 6),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// A SYN-ACK nobody acknowledges is retransmitted with a doubling timeout (five retries,
/// net.ipv4.tcp_synack_retries); a retransmitted SYN is answered at once and restarts the
/// timer from then (Linux: inet_rtx_syn_ack + mod_timer_pending), so the retries come at 1, 2
/// (the answer), 4, 8, 16 and 32 s; the request sock is dropped at 64 s — silently, as in
/// Linux (no AttemptFails) — and a late ACK then gets a reset from the listener.
#[test]
fn synack_retransmission_and_timeout() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
1     > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
2     < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop>
2     > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
# A second copy within 500 ms is not answered (TCPACKSkippedSynRecv).
2.2   < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop>
4     > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
8     > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
16    > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
32    > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
63.9  expect_counter TcpExt.TCPTimeouts 5
64    accept none
64    expect_counter TcpExt.TCPTimeouts 6
64.1  < . 1:1(0) ack 1 win 65535
64.1  > R 1:1(0) win 0 <>
65    close listener
",
    );
    s.assert_counters(&[
        ("Tcp.PassiveOpens", 0),
        ("Tcp.RetransSegs", 6),
        ("TcpExt.TCPSynRetrans", 6),
        ("TcpExt.TCPACKSkippedSynRecv", 1),
        ("Tcp.AttemptFails", 0),
        ("Tcp.OutRsts", 1),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// SYN-SENT (RFC 9293 3.10.7.3): an ACK for something never sent gets a reset, a RST with a
/// bad ACK or no ACK is ignored, a RST acknowledging the SYN refuses the connection.
#[test]
fn rst_in_syn_sent_refuses() {
    let mut s = run(
        cfg(),
        "
0     connect 10.0.0.1:80
0     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 0>
0.01  < . 0:0(0) ack 100 win 65535
0.01  > R 100:100(0) win 0 <>
0.02  < R. 0:0(0) ack 5 win 0
0.03  < R 0:0(0) win 0
0.04  expect_state SYN-SENT
0.1   < R. 0:0(0) ack 1 win 0
0.1   expect_state CLOSE
0.1   expect_error refused
0.1   read error refused
0.1   close
0.1   expect_state gone
",
    );
    s.assert_counters(&[
        ("Tcp.ActiveOpens", 1),
        ("Tcp.AttemptFails", 1),
        ("Tcp.EstabResets", 0),
        ("Tcp.CurrEstab", 0),
        ("Tcp.OutRsts", 1),
    ]);
    s.assert_clean();
}

/// RFC 5961 3.2: a RST in the window but not at rcv_nxt gets a challenge ACK, one outside the
/// window is dropped silently, one exactly at rcv_nxt resets the connection.
#[test]
fn rst_in_established_exact_vs_in_window() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < R. 500:500(0) ack 1 win 0
0.1   > . 1:1(0) ack 1 win 65535 <>
0.1   expect_state ESTAB
0.2   < R 100000:100000(0) win 0
0.2   expect_state ESTAB
0.3   < R 1:1(0) win 0
0.3   expect_state CLOSE
0.3   expect_error reset
0.3   read error reset
0.3   close
0.3   expect_state gone
0.3   close listener
"
        ),
    );
    s.assert_counters(&[
        ("Tcp.PassiveOpens", 1),
        ("TcpExt.TCPChallengeACK", 1),
        ("Tcp.EstabResets", 1),
        ("Tcp.CurrEstab", 0),
        ("Tcp.OutRsts", 0),
    ]);
    s.assert_clean();
}

/// RFC 5961 4: a SYN on an established connection gets a challenge ACK, and the connection
/// carries on.
#[test]
fn syn_in_established_challenge_ack() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < S 500:500(0) win 65535 <mss 1000>
0.1   > . 1:1(0) ack 1 win 65535 <>
0.1   expect_state ESTAB
0.2   < P. 1:11(10) ack 1 win 65535
0.24  > . 1:1(0) ack 11 win 65525 <>
0.3   read 10
0.3   < F. 11:11(0) ack 1 win 65535
0.3   close
0.3   > F. 1:1(0) ack 12 win 65535 <>
0.35  < . 12:12(0) ack 2 win 65535
0.35  expect_state gone
0.4   close listener
"
        ),
    );
    s.assert_counters(&[
        ("TcpExt.TCPChallengeACK", 1),
        ("Tcp.EstabResets", 0),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// RFC 5961 5.2: an ACK for data never sent is answered with a challenge ACK and dropped
/// (its payload is not taken).
#[test]
fn ack_of_unsent_data_challenge_ack() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < P. 1:11(10) ack 5000 win 65535
0.1   > . 1:1(0) ack 1 win 65535 <>
0.2   read none
0.2   < R 1:1(0) win 0
0.2   close
0.2   close listener
"
        ),
    );
    s.assert_counters(&[("TcpExt.TCPChallengeACK", 1), ("Tcp.EstabResets", 1)]);
    s.assert_clean();
}

/// RFC 9293 3.10.7.1: a segment for a closed port is answered by <SEQ=SEG.ACK><CTL=RST> if it
/// has an ACK, else by <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; a RST is never answered.
#[test]
fn closed_port_rst() {
    let mut s = run(
        cfg(),
        "
0     ports 9999 40000
0     < S 100:100(0) win 65535 <mss 1460>
0     > R. 0:0(0) ack 101 win 0 <>
0.1   < . 200:200(0) ack 5000 win 65535
0.1   > R 5000:5000(0) win 0 <>
0.2   < P. 300:310(10) ack 7000 win 65535
0.2   > R 7000:7000(0) win 0 <>
0.3   < F 400:400(0) win 65535
0.3   > R. 0:0(0) ack 401 win 0 <>
0.35  < P 500:510(10) win 65535
0.35  > R. 0:0(0) ack 510 win 0 <>
0.4   < R. 600:600(0) ack 1 win 0
0.4   < R 600:600(0) win 0
",
    );
    s.assert_counters(&[
        ("Tcp.InSegs", 7),
        ("Tcp.OutRsts", 5),
        ("Tcp.OutSegs", 5),
        ("Drop.NoSocket", 7),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// A listener whose accept queue is full drops new SYNs (ListenOverflows, ListenDrops); the
/// client's retransmitted SYN gets through once the application accepted. (SYN cookies off:
/// with them a full backlog is answered statelessly, see tests/syncookies.rs.)
#[test]
fn listen_backlog_overflow() {
    let c = TcpConfig {
        syncookies: false,
        ..cfg()
    };
    let mut s = run(
        c,
        "
0     socket listen 8080 backlog 1
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0     < . 1:1(0) ack 1 win 65535
0.1   ports 8080 40001
0.1   < S 0:0(0) win 65535 <mss 1000>
0.1   expect_counter TcpExt.ListenOverflows 1
0.2   ports 8080 40000
0.2   accept
0.2   < R 1:1(0) win 0
0.2   close
0.3   accept none
0.3   ports 8080 40001
1.1   < S 0:0(0) win 65535 <mss 1000>
1.1   > S. 0:0(0) ack 1 win 65535 <mss 1460>
1.1   < . 1:1(0) ack 1 win 65535
1.1   accept
1.2   < R 1:1(0) win 0
1.2   close
1.3   close listener
",
    );
    s.assert_counters(&[
        ("TcpExt.ListenOverflows", 1),
        ("TcpExt.ListenDrops", 1),
        ("Tcp.PassiveOpens", 2),
        ("Tcp.EstabResets", 2),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// Closing a listener resets the connections it had not handed out yet (Linux:
/// inet_csk_listen_stop): an established one gets a RST at once, and one still in SYN-RECV is
/// forgotten, so the handshake's final ACK is answered by a reset.
#[test]
fn listener_close_drops_pending_connections() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0     < . 1:1(0) ack 1 win 65535
0.1   ports 8080 40001
0.1   < S 0:0(0) win 65535 <mss 1000>
0.1   > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.2   ports 8080 40000
0.2   close listener
0.2   > R. 1:1(0) ack 1 win 0 <>
0.3   ports 8080 40001
0.3   < . 1:1(0) ack 1 win 65535
0.3   > R 1:1(0) win 0 <>
",
    );
    s.assert_counters(&[("Tcp.CurrEstab", 0), ("Tcp.OutRsts", 2)]);
    s.assert_clean();
}

/// With SYN cookies on, a full accept queue still drops the SYN rather than answering with a
/// cookie: the connection the cookie would make could not be queued either (Linux:
/// tcp_conn_request checks sk_acceptq_is_full first). Cookies are for a full SYN backlog.
#[test]
fn full_accept_queue_drops_syn_even_with_cookies() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080 backlog 1
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0     < . 1:1(0) ack 1 win 65535
0.1   ports 8080 40001
0.1   < S 0:0(0) win 65535 <mss 1000>
0.1   expect_counter TcpExt.ListenOverflows 1
0.2   ports 8080 40000
0.2   accept
0.2   < R 1:1(0) win 0
0.2   close
0.3   close listener
",
    );
    s.assert_counters(&[
        ("TcpExt.ListenOverflows", 1),
        ("TcpExt.ListenDrops", 1),
        ("TcpExt.SyncookiesSent", 0),
        ("Tcp.PassiveOpens", 1),
    ]);
    s.assert_clean();
}

/// Challenge ACKs are rate limited per socket: at most one per 500 ms (Linux:
/// tcp_invalid_ratelimit); the ones held back count as TcpExt TCPACKSkippedChallenge.
#[test]
fn challenge_acks_rate_limited() {
    let mut s = run(
        cfg(),
        &format!(
            "{ACCEPTED_SACK}
0.1   < R. 500:500(0) ack 1 win 0
0.1   > . 1:1(0) ack 1 win 65535 <>
0.2   < R. 600:600(0) ack 1 win 0
0.3   < S 700:700(0) win 65535
0.59  expect_state ESTAB
0.6   < R. 800:800(0) ack 1 win 0
0.6   > . 1:1(0) ack 1 win 65535 <>
0.7   < R 1:1(0) win 0
0.7   close
0.7   close listener
"
        ),
    );
    s.assert_counters(&[
        ("TcpExt.TCPChallengeACK", 2),
        ("TcpExt.TCPACKSkippedChallenge", 2),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// SYN-RECV is a request sock (Linux: tcp_check_req): a reset in window, or a SYN (here with
/// an ACK) in window, ends the handshake (Tcp AttemptFails, TcpExt EmbryonicRsts; a SYN is
/// answered with a reset), and the peer's final ACK then finds no connection.
#[test]
fn syn_recv_reset_and_syn_in_window_end_the_handshake() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.1   < R 1:1(0) win 0
0.2   < . 1:1(0) ack 1 win 65535
0.2   > R 1:1(0) win 0 <>
0.3   ports 8080 40001
0.3   < S 0:0(0) win 65535 <mss 1000>
0.3   > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.4   < S. 100:100(0) ack 1 win 65535
0.4   > R 1:1(0) win 0 <>
0.5   accept none
0.5   close listener
",
    );
    s.assert_counters(&[
        ("Tcp.AttemptFails", 2),
        ("TcpExt.EmbryonicRsts", 2),
        ("Tcp.OutRsts", 2),
        ("Tcp.PassiveOpens", 0),
        ("Tcp.CurrEstab", 0),
    ]);
    s.assert_clean();
}

/// In SYN-RECV an ACK of something never sent gets a reset (RFC 9293 3.10.7.4) and an
/// out-of-window segment an ACK; neither ends the handshake, which the right ACK completes.
#[test]
fn syn_recv_bad_ack_and_out_of_window() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.1   < . 1:1(0) ack 5 win 65535
0.1   > R 5:5(0) win 0 <>
0.2   < . 100000:100000(0) ack 1 win 65535
0.2   > . 1:1(0) ack 1 win 65535 <>
0.3   < . 1:1(0) ack 1 win 65535
0.3   accept
0.3   expect_state ESTAB
0.4   < R 1:1(0) win 0
0.4   close
0.5   close listener
",
    );
    s.assert_counters(&[
        ("Tcp.PassiveOpens", 1),
        ("Tcp.AttemptFails", 0),
        ("Tcp.OutRsts", 1),
        ("Tcp.EstabResets", 1),
    ]);
    s.assert_clean();
}

/// The SYN queue and the accept queue are bounded by the backlog separately (Linux). A final
/// ACK that finds the accept queue full is dropped (ListenOverflows) and the request sock
/// stays; its retransmitted SYN-ACK draws another ACK, which gets in once the application
/// accepted.
#[test]
fn final_ack_with_full_accept_queue_waits_for_synack_retransmission() {
    let mut s = run(
        cfg(),
        "
0     socket listen 8080 backlog 2
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0     ports 8080 40001
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.1   ports 8080 40000
0.1   < . 1:1(0) ack 1 win 65535
0.2   ports 8080 40002
0.2   < S 0:0(0) win 65535 <mss 1000>
0.2   > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.3   ports 8080 40001
0.3   < . 1:1(0) ack 1 win 65535
0.4   ports 8080 40002
0.4   < . 1:1(0) ack 1 win 65535
0.4   expect_counter TcpExt.ListenOverflows 1
0.5   ports 8080 40000
0.5   accept
0.5   < R 1:1(0) win 0
0.5   close
1.1   ports 8080 40002
1.2   > S. 0:0(0) ack 1 win 65535 <mss 1460>
1.25  < . 1:1(0) ack 1 win 65535
1.3   ports 8080 40001
1.3   accept
1.3   < R 1:1(0) win 0
1.3   close
1.4   ports 8080 40002
1.4   accept
1.4   expect_state ESTAB
1.4   < R 1:1(0) win 0
1.4   close
1.5   close listener
",
    );
    s.assert_counters(&[
        ("TcpExt.ListenOverflows", 1),
        ("TcpExt.ListenDrops", 1),
        ("Tcp.PassiveOpens", 3),
        ("Tcp.EstabResets", 3),
        ("TcpExt.TCPSynRetrans", 1),
    ]);
    s.assert_clean();
}

/// Without SYN cookies a full SYN queue drops new SYNs (TcpExt TCPReqQFullDrop, ListenDrops),
/// while the connection already in SYN-RECV completes.
#[test]
fn full_syn_queue_without_cookies_drops_syn() {
    let c = TcpConfig {
        syncookies: false,
        ..cfg()
    };
    let mut s = run(
        c,
        "
0     socket listen 8080 backlog 1
0     < S 0:0(0) win 65535 <mss 1000>
0     > S. 0:0(0) ack 1 win 65535 <mss 1460>
0     ports 8080 40001
0     < S 0:0(0) win 65535 <mss 1000>
0     expect_counter TcpExt.TCPReqQFullDrop 1
0.1   ports 8080 40000
0.1   < . 1:1(0) ack 1 win 65535
0.1   accept
0.1   < R 1:1(0) win 0
0.1   close
0.2   close listener
",
    );
    s.assert_counters(&[
        ("TcpExt.TCPReqQFullDrop", 1),
        ("TcpExt.ListenDrops", 1),
        ("TcpExt.ListenOverflows", 0),
        ("Tcp.PassiveOpens", 1),
    ]);
    s.assert_clean();
}
