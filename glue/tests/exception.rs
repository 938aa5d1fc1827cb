//! The exception path on the in-memory wire: host B talks to blink A, whose "kernel" is the
//! far end of a second wire the test reads and writes itself. Checks what the kernel gets
//! (and what blink then never sees), what it sends leaving A unchanged, that ping is answered
//! once, the ARP mirror, `unclaimed` instead of RST and port unreachable, and the counters.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_glue::ipv4::ip_exception::ExcRules;
use blink_glue::netcore::checksum::ip_fast_csum;
use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::netdevice::{Burst, NetDevice};
use blink_glue::netcore::skbuff::SkBuff;
use blink_glue::netcore::snmp::{ExcMib, IcmpMib, TcpMib, UdpMib};
use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
use blink_glue::{Glue, GlueBuilder, KernelSide};
use common::{A_IP, A_MAC, B_IP, B_MAC};

const K_MAC: EthAddr = EthAddr([2, 0, 0, 0, 0, 0x4b]);

struct Net {
    pool: Mempool,
    vc: VirtualClock,
    a: Glue<()>,
    b: Glue<()>,
    /// The kernel's end of the exception path.
    kernel: WireDev,
}

fn net(rules: &str) -> Net {
    let pool = Mempool::new(&MempoolConfig {
        n: 4096,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let clock = Clock::virtual_clock(&vc);
    let (wa, wb) = wire_pair(("a", "b"), (A_MAC, B_MAC), &WireConfig::default());
    let (ka, kk) = wire_pair(("a-kni", "kernel"), (A_MAC, K_MAC), &WireConfig::default());
    let a = GlueBuilder::new()
        .device(Box::new(wa))
        .addr("10.0.0.1/24".parse().unwrap())
        .to_kernel(
            rules.parse::<ExcRules>().unwrap(),
            KernelSide::Devices(vec![Box::new(ka)]),
        )
        .pool(pool.clone())
        .clock(clock.clone())
        .tcp(common::seeded(Default::default()))
        .build()
        .unwrap();
    let b = GlueBuilder::new()
        .device(Box::new(wb))
        .addr("10.0.0.2/24".parse().unwrap())
        .pool(pool.clone())
        .clock(clock)
        .tcp(common::seeded(Default::default()))
        .build()
        .unwrap();
    Net {
        pool,
        vc,
        a,
        b,
        kernel: kk,
    }
}

impl Net {
    fn step(&mut self, n: usize) {
        for _ in 0..n {
            self.a.periodic();
            self.b.periodic();
            self.vc.advance_ms(1);
        }
    }

    /// Frames the kernel received so far.
    fn kernel_rx(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut burst = Burst::new();
            if self.kernel.rx_burst(0, &mut burst) == 0 {
                return out;
            }
            out.extend(burst.drain(..).map(|s| s.data().to_vec()));
        }
    }

    fn kernel_tx(&mut self, frame: &[u8]) {
        let mut c = self.pool.cache();
        let mut burst = Burst::new();
        burst.push(SkBuff::from_slice(&mut c, frame).unwrap());
        assert_eq!(self.kernel.tx_burst(0, &mut burst), 1);
    }

    fn exc(&self, c: ExcMib) -> u64 {
        self.a.stack().core.mib.exc[c]
    }
}

/// An Ethernet + IPv4 + UDP frame with checksum 0 (none, RFC 768), as a kernel would write.
fn udp_frame(src: (EthAddr, Ipv4Addr, u16), dst: (EthAddr, Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0 .0);
    f.extend_from_slice(&src.0 .0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let tot = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.1.octets());
    ip[16..20].copy_from_slice(&dst.1.octets());
    let c = ip_fast_csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src.2.to_be_bytes());
    f.extend_from_slice(&dst.2.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// (protocol, destination port) of an IPv4 frame, or None.
fn l4_of(f: &[u8]) -> Option<(u8, u16)> {
    if f.len() < 14 + 20 + 4 || f[12..14] != [8, 0] {
        return None;
    }
    let ihl = (f[14] & 0xf) as usize * 4;
    Some((f[14 + 9], u16::from_be_bytes([f[14 + ihl + 2], f[14 + ihl + 3]])))
}

#[test]
fn a_port_rule_gives_the_kernel_its_segments_and_blink_never_sees_them() {
    let mut n = net("tcp:22");
    n.a.tcp_listen(80, 16).unwrap();
    // B connects to both ports of one address.
    n.b.tcp_connect(A_IP, 22, None).unwrap();
    n.b.tcp_connect(A_IP, 80, None).unwrap();
    n.step(20);
    let frames = n.kernel_rx();
    let to22: Vec<_> = frames.iter().filter(|f| l4_of(f) == Some((6, 22))).collect();
    assert!(!to22.is_empty(), "the SYN to port 22 reached the kernel");
    assert!(
        to22.iter().all(|f| f[0..6] == A_MAC.0 && f[6..12] == B_MAC.0),
        "as it arrived"
    );
    assert!(
        frames.iter().all(|f| l4_of(f) != Some((6, 80))),
        "port 80 stays blink's"
    );
    assert_eq!(n.exc(ExcMib::ToKernelRule), to22.len() as u64);
    // blink saw only port 80's segments: no RST for 22, and 80 connected.
    assert_eq!(n.a.stack().core.mib.tcp[TcpMib::OutRsts], 0);
    assert_eq!(n.a.stack().core.mib.tcp[TcpMib::PassiveOpens], 1);
    // Without `arp`, B's ARP request was blink's alone (it answered; the kernel got no copy).
    assert!(frames.iter().all(|f| f[12..14] != [8, 6]));
}

#[test]
fn what_the_kernel_sends_leaves_unchanged() {
    let mut n = net("tcp:22");
    let s = n.b.udp_socket(None).unwrap();
    n.b.udp_bind(s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7000)).unwrap();
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    n.kernel_tx(&udp_frame((A_MAC, A_IP, 22), (B_MAC, B_IP, 7000), &payload));
    n.step(5);
    let mut buf = [0u8; 2048];
    let r = n.b.recv_from(s, &mut buf).expect("B got the kernel's datagram");
    assert_eq!(&buf[..r.len], &payload[..]);
    assert_eq!(r.from, SocketAddrV4::new(A_IP, 22));
    assert_eq!(n.exc(ExcMib::FromKernel), 1);
    assert_eq!(n.a.stack().core.mib.udp[UdpMib::OutDatagrams], 0, "not blink's own");
    n.b.close(s).unwrap();
    n.step(5);
    drop(n.kernel_rx());
    assert_eq!(n.pool.in_use(), 0, "mbufs leaked");
}

#[test]
fn ping_is_answered_once_and_other_icmp_and_arp_replies_are_copied() {
    let mut n = net("tcp:22,icmp-copy");
    // A pings B first, so A must resolve B: B's echo reply and ARP reply are copied to the
    // kernel (they answer its own pings and resolutions), and blink still gets them.
    blink_glue::ipv4::icmp::icmp_send_echo(n.a.stack_mut(), B_IP, 9, 1, 56).unwrap();
    n.step(10);
    assert_eq!(n.a.stack().core.mib.icmp[IcmpMib::InEchoReps], 1);
    let frames = n.kernel_rx();
    let arp_replies = frames
        .iter()
        .filter(|f| f[12..14] == [8, 6] && f[20..22] == [0, 2])
        .count();
    let echo_replies = frames
        .iter()
        .filter(|f| l4_of(f).map(|(p, _)| p) == Some(1) && f[34] == 0)
        .count();
    assert_eq!(arp_replies, 1, "the ARP reply is mirrored");
    assert_eq!(echo_replies, 1, "the echo reply is copied");
    assert_eq!(n.exc(ExcMib::ToKernelCopy), 2);
    assert!(n.a.stack().neigh.lookup(B_IP).is_some(), "blink resolved B too");
    // B pings A: blink answers each request once; the kernel never sees them.
    for seq in 0..3 {
        blink_glue::ipv4::icmp::icmp_send_echo(n.b.stack_mut(), A_IP, 7, seq, 56).unwrap();
        n.step(5);
    }
    assert_eq!(
        n.b.stack().core.mib.icmp[IcmpMib::InEchoReps],
        3,
        "one reply per request"
    );
    assert_eq!(n.a.stack().core.mib.icmp[IcmpMib::OutEchoReps], 3);
    let frames = n.kernel_rx();
    assert!(
        frames.iter().all(|f| l4_of(f).map(|(p, _)| p) != Some(1)),
        "the kernel got no echo request (it would answer a second time)"
    );
    n.step(5);
    assert_eq!(n.pool.in_use(), 0, "mbufs leaked");
}

#[test]
fn unclaimed_segments_and_datagrams_go_to_the_kernel_instead_of_rst_and_unreachable() {
    let mut n = net("unclaimed");
    n.a.tcp_listen(80, 16).unwrap();
    n.b.tcp_connect(A_IP, 5555, None).unwrap();
    n.b.tcp_connect(A_IP, 80, None).unwrap();
    let s = n.b.udp_socket(None).unwrap();
    n.b.send_to(s, b"hello kernel", Some(SocketAddrV4::new(A_IP, 5556)))
        .unwrap();
    n.step(20);
    let frames = n.kernel_rx();
    assert!(frames.iter().any(|f| l4_of(f) == Some((6, 5555))), "the SYN to 5555");
    assert!(
        frames.iter().any(|f| l4_of(f) == Some((17, 5556))),
        "the datagram to 5556"
    );
    assert!(frames.iter().all(|f| l4_of(f) != Some((6, 80))), "80 is claimed");
    let a = &n.a.stack().core.mib;
    assert_eq!(a.tcp[TcpMib::OutRsts], 0, "no RST for the kernel's port");
    assert_eq!(a.icmp[IcmpMib::OutDestUnreachs], 0, "no port unreachable");
    assert_eq!(a.udp[UdpMib::NoPorts], 0);
    assert_eq!(a.tcp[TcpMib::PassiveOpens], 1);
    assert!(n.exc(ExcMib::ToKernelUnclaimed) >= 2);
    assert_eq!(n.exc(ExcMib::ToKernel), n.exc(ExcMib::ToKernelUnclaimed));
}

#[test]
fn without_unclaimed_blink_still_resets() {
    let mut n = net("tcp:22");
    n.b.tcp_connect(A_IP, 5555, None).unwrap();
    n.step(10);
    assert_eq!(n.a.stack().core.mib.tcp[TcpMib::OutRsts], 1);
    assert_eq!(n.exc(ExcMib::ToKernel), 0);
}

#[test]
fn arp_requests_and_a_whole_protocol_go_to_the_kernel_by_rule() {
    let mut n = net("arp,proto:89,udp:67-68");
    // B resolves A: with `arp` the kernel sees B's request too, and blink still answers it.
    let r = n.b.raw_socket(89, None).unwrap();
    n.b.send_to(r, b"ospf hello", Some(SocketAddrV4::new(A_IP, 0))).unwrap();
    let u = n.b.udp_socket(None).unwrap();
    n.b.send_to(u, b"dhcp", Some(SocketAddrV4::new(A_IP, 67))).unwrap();
    n.step(10);
    let frames = n.kernel_rx();
    // ARP target protocol address at bytes 38..42 of the frame.
    let arp_requests = |tpa: Ipv4Addr| {
        frames
            .iter()
            .filter(|f| f[12..14] == [8, 6] && f[20..22] == [0, 1] && f[38..42] == tpa.octets())
            .count()
    };
    assert_eq!(arp_requests(A_IP), 1, "B's request for A, mirrored");
    assert_eq!(arp_requests(B_IP), 1, "B's gratuitous ARP, mirrored");
    assert_eq!(
        n.a.stack().core.mib.arp[blink_glue::netcore::snmp::ArpMib::OutReplies],
        1,
        "blink answered it"
    );
    let ospf: Vec<_> = frames
        .iter()
        .filter(|f| f.len() > 23 && f[12..14] == [8, 0] && f[23] == 89)
        .collect();
    assert_eq!(ospf.len(), 1, "protocol 89 is the kernel's");
    assert!(ospf[0].ends_with(b"ospf hello"));
    assert!(
        frames.iter().any(|f| l4_of(f) == Some((17, 67))),
        "udp:67 is the kernel's"
    );
    let a = &n.a.stack().core.mib;
    assert_eq!(a.icmp[IcmpMib::OutDestUnreachs], 0, "no protocol or port unreachable");
    assert_eq!(
        a.ip[blink_glue::netcore::snmp::IpMib::InDelivers],
        0,
        "blink delivered none of it"
    );
    assert_eq!(n.exc(ExcMib::ToKernelRule), 2);
    assert_eq!(n.exc(ExcMib::ToKernelCopy), 2);
    n.b.close(r).unwrap();
    n.b.close(u).unwrap();
    n.step(5);
    assert_eq!(n.pool.in_use(), 0, "mbufs leaked");
}
