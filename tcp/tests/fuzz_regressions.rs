//! Inputs the fuzz targets in `tcp/fuzz/` found wrong, replayed as plain tests (each names
//! the target and the invariant it broke).

mod script;

use std::net::Ipv4Addr;

use blink_ipv4::{Ipv4Cidr, Stack, StackConfig};
use blink_netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_netcore::jiffies::{Clock, VirtualClock};
use blink_netcore::netdevice::{Burst, NetDevice};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::{EthAddr, Mempool, MempoolCache, MempoolConfig};
use blink_tcp::*;
use etherparse::{PacketBuilder, TcpSlice};

const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const STACK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

struct Peer {
    stack: Stack,
    clock: VirtualClock,
    wire: WireDev,
    cache: MempoolCache,
}

impl Peer {
    /// A plain segment (no options) from 10.0.0.1:40000 to port 80.
    fn send(&mut self, syn: bool, seq: u32, ack: Option<u32>) {
        let mut b = PacketBuilder::ethernet2(PEER_MAC, STACK_MAC)
            .ipv4(PEER_IP.octets(), STACK_IP.octets(), 64)
            .tcp(40000, 80, seq, 65535);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        let mut f = Vec::new();
        b.write(&mut f, &[]).unwrap();
        let mut burst = Burst::new();
        burst.push(SkBuff::from_slice(&mut self.cache, &f).unwrap());
        assert_eq!(self.wire.tx_burst(0, &mut burst), 1);
        self.stack.poll();
    }

    /// Segments the stack sent: (seq, flags byte).
    fn recv(&mut self) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        let mut burst = Burst::new();
        while self.wire.rx_burst(0, &mut burst) > 0 {
            for skb in burst.drain(..) {
                let f: Vec<u8> = skb.segments().flatten().copied().collect();
                if let Ok(t) = TcpSlice::from_slice(&f[34..]) {
                    out.push((t.sequence_number(), t.syn()));
                }
            }
        }
        out
    }
}

/// Target `tcp_conn`: "left_out > packets_out" (Linux's tcp_verify_left_out). Without SACK, a
/// duplicate ACK after a retransmission timeout (every segment marked lost) still counted as
/// a segment that left the network, so sacked_out + lost_out exceeded packets_out and the
/// in-flight estimate came out short.
#[test]
fn reno_dupack_after_timeout_keeps_left_out_within_packets_out() {
    let pool = Mempool::new(&MempoolConfig {
        n: 512,
        ..Default::default()
    })
    .unwrap();
    let clock = VirtualClock::new();
    let (a, wire) = wire_pair(
        ("blink0", "peer0"),
        (EthAddr(STACK_MAC), EthAddr(PEER_MAC)),
        &WireConfig::default(),
    );
    let mut stack = Stack::new(0, 1, Clock::virtual_clock(&clock), &pool, StackConfig::default());
    let dev = stack.add_device(Box::new(a), 0);
    stack.add_addr(dev, Ipv4Cidr::new(STACK_IP, 24).unwrap()).unwrap();
    blink_ipv4::neighbour::neigh_add_static(&mut stack, PEER_IP, EthAddr(PEER_MAC), dev);
    tcp_init(
        &mut stack,
        TcpConfig {
            seed: Some(script::seed()),
            ..Default::default()
        },
    );
    let mut p = Peer {
        stack,
        clock,
        wire,
        cache: pool.cache(),
    };
    let l = tcp_listen(&mut p.stack, 80, 8).unwrap();
    p.recv();
    p.send(true, 1000, None);
    let isn = p.recv().iter().find(|s| s.1).expect("SYN-ACK").0;
    p.send(false, 1001, Some(isn.wrapping_add(1)));
    let s = tcp_accept(&mut p.stack, l).unwrap().expect("established");
    // Segments out (MSS 536: no MSS option), then 30 s without an ACK: timeouts mark them
    // all lost.
    assert_eq!(tcp_send(&mut p.stack, s, &[0x61; 1711]).unwrap(), 1711);
    for _ in 0..30_000 {
        p.clock.advance_ms(1);
        p.stack.poll();
    }
    p.recv();
    // A duplicate ACK.
    p.send(false, 1001, Some(isn.wrapping_add(1)));
    let (packets, sacked, lost) = with_tcp(&mut p.stack, |t, _| {
        let sk = t.socks.get(s).unwrap();
        (sk.packets_out, sk.sacked_out, sk.lost_out)
    })
    .unwrap();
    assert!(
        packets >= 2 && lost == packets,
        "every segment out is lost: {packets} out, {lost} lost"
    );
    assert!(
        sacked + lost <= packets,
        "sacked_out {sacked} + lost_out {lost} > packets_out {packets}"
    );
}

/// Target `tcp_conn`: "application read a wrong byte at offset 0". Data held out of order
/// beyond a hole became readable when the hole was filled by a bare FIN: the application read
/// bytes from after the end of the stream, and the FIN was acknowledged with them. Nothing
/// follows a FIN (Linux: tcp_fin purges the out-of-order queue).
#[test]
fn out_of_order_data_beyond_a_fin_is_not_delivered() {
    let mut s = script::run(
        script::cfg(),
        &format!(
            "{}
0.1   < . 2:152(150) ack 1 win 65535
0.1   > . 1:1(0) ack 1 win 65535 <>
0.2   < F. 1:1(0) ack 1 win 65535
0.2   > . 1:1(0) ack 2 win 65535 <>
0.2   expect_state CLOSE-WAIT
0.2   read eof
0.3   close
0.3   > F. 1:1(0) ack 2 win 65535 <>
0.4   < . 2:2(0) ack 2 win 65535
0.4   expect_state gone
0.4   close listener
",
            script::ACCEPTED_PLAIN
        ),
    );
    s.assert_counters(&[("Drop.TcpOfoDrop", 1)]);
    s.assert_clean();
}

/// Target `tcp_conn`: "sockets ... left" (a socket in CLOSING, everything acknowledged, no
/// timer armed, forever). A close that found the pool empty could not allocate its FIN and
/// nothing ever tried again: the connection stayed in FIN-WAIT-1 (then CLOSING on the
/// peer's FIN) with its port bound. The FIN now goes out once a buffer is free, from the next
/// ACK or the retransmission timer.
#[test]
fn fin_that_found_no_buffer_goes_out_later() {
    let mut s = script::Script::new(script::cfg());
    s.run(script::ACCEPTED_PLAIN);
    // Every free buffer taken: the FIN finds none.
    let mut hoard = Vec::new();
    while let Some(m) = s.stack.core.cache.alloc() {
        hoard.push(m);
    }
    s.run("0.1   close\n0.1   expect_state FIN-WAIT-1\n");
    drop(hoard);
    s.run(
        "
0.3   > F. 1:1(0) ack 1 win 65535 <>
0.35  < . 1:1(0) ack 2 win 65535
0.35  expect_state FIN-WAIT-2
0.4   < F. 1:1(0) ack 2 win 65535
0.4   > . 2:2(0) ack 2 win 65535 <>
0.4   expect_state TIME-WAIT
1.5   expect_state gone
1.5   close listener
",
    );
    s.assert_clean();
}
