//! IP options on TCP and UDP packets, sent by a hand-driven peer on the in-memory wire to a
//! glue instance with a TCP listener and a bound UDP socket. Valid lists (NOP, EOL, record
//! route, timestamp, router alert, unknown options) change nothing: the transport header is
//! found after IHL * 4 bytes, UDP datagrams and TCP connections deliver their data intact.
//! Malformed lists (option length 0 or 1, an option running past the header, a lone option
//! type at the end, bad pointers) are refused as Linux's ip_options_compile refuses them: an
//! ICMP parameter problem pointing at the bad byte, Ip.InHdrErrors and Drop.IpInHdr, nothing
//! delivered and no connection started. A source route is dropped silently
//! (Drop.IpSourceRoute: Linux's default accept_source_route = 0). Every buffer comes back.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig, WireDev};
use blink_glue::netcore::jiffies::{Clock, VirtualClock};
use blink_glue::netcore::netdevice::{Burst, NetDevice};
use blink_glue::netcore::skbuff::SkBuff;
use blink_glue::netcore::snmp::{DropReason, IcmpMib, IpMib, TcpMib, UdpMib};
use blink_glue::netcore::{EthAddr, Mempool, MempoolCache, MempoolConfig};
use blink_glue::{Glue, GlueBuilder, GlueError, Socket};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const TCP_PORT: u16 = 80;
const UDP_PORT: u16 = 53;

struct Rig {
    g: Glue<()>,
    peer: WireDev,
    cache: MempoolCache,
    vc: VirtualClock,
    pool: Mempool,
    listener: Socket,
    udp: Socket,
}

fn rig() -> Rig {
    let pool = Mempool::new(&MempoolConfig {
        n: 2048,
        ..Default::default()
    })
    .unwrap();
    let vc = VirtualClock::new();
    let (wa, wb) = wire_pair(
        ("host", "peer"),
        (EthAddr(HOST_MAC), EthAddr(PEER_MAC)),
        &WireConfig::default(),
    );
    let mut g = GlueBuilder::new()
        .device(Box::new(wa))
        .addr("10.0.0.1/24".parse().unwrap())
        .static_arp(PEER_IP, EthAddr(PEER_MAC))
        .pool(pool.clone())
        .clock(Clock::virtual_clock(&vc))
        .tcp(common::seeded(common::cfg()))
        .build()
        .unwrap();
    let listener = g.tcp_listen(TCP_PORT, 16).unwrap();
    let udp = g.udp_socket(None).unwrap();
    g.udp_bind(udp, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, UDP_PORT))
        .unwrap();
    let cache = pool.cache();
    let mut r = Rig {
        g,
        peer: wb,
        cache,
        vc,
        pool,
        listener,
        udp,
    };
    r.poll();
    r.recv(); // the gratuitous ARP
    r
}

impl Rig {
    fn poll(&mut self) {
        for _ in 0..4 {
            self.g.periodic();
        }
    }

    fn send(&mut self, frame: &[u8]) {
        let skb = SkBuff::from_slice(&mut self.cache, frame).expect("frame fits one mbuf");
        let mut burst = Burst::new();
        burst.push(skb);
        assert_eq!(self.peer.tx_burst(0, &mut burst), 1);
        self.poll();
    }

    fn recv(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut burst = Burst::new();
            if self.peer.rx_burst(0, &mut burst) == 0 {
                break;
            }
            for skb in burst {
                let mut v = Vec::new();
                for s in skb.segments() {
                    v.extend_from_slice(s);
                }
                out.push(v);
            }
        }
        out
    }

    fn mib(&self) -> blink_glue::netcore::snmp::Mib {
        self.g.stack().core.mib.clone()
    }
}

fn csum(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    for c in data.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Ethernet + IPv4 with `opts` (padded to 4 bytes with EOL, IHL to match) + `l4`, whose
/// checksum at `l4_csum` (if any) is filled over the pseudo-header.
fn frame(proto: u8, opts: &[u8], l4: &[u8], l4_csum: Option<usize>) -> Vec<u8> {
    let mut o = opts.to_vec();
    while o.len() % 4 != 0 {
        o.push(0);
    }
    let hlen = 20 + o.len();
    let mut ip = vec![0u8; 20];
    ip[0] = 0x40 | (hlen / 4) as u8;
    ip[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&7u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&PEER_IP.octets());
    ip[16..20].copy_from_slice(&HOST_IP.octets());
    ip.extend_from_slice(&o);
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut l4 = l4.to_vec();
    if let Some(at) = l4_csum {
        let mut pseudo = 0u32;
        for w in [PEER_IP.octets(), HOST_IP.octets()] {
            pseudo += u16::from_be_bytes([w[0], w[1]]) as u32 + u16::from_be_bytes([w[2], w[3]]) as u32;
        }
        pseudo += proto as u32 + l4.len() as u32;
        let c = csum(&l4, pseudo);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut f = Vec::new();
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

fn udp_frame(opts: &[u8], sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&UDP_PORT.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    frame(17, opts, &u, Some(6))
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const RST: u8 = 0x04;

fn tcp_frame(opts: &[u8], sport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&TCP_PORT.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    if flags & SYN != 0 {
        // Data offset 6: MSS 1460.
        t.extend_from_slice(&[0x60, flags, 0xff, 0xff, 0, 0, 0, 0, 2, 4, 0x05, 0xb4]);
    } else {
        t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    }
    t.extend_from_slice(payload);
    frame(6, opts, &t, Some(16))
}

/// Option lists a host must accept.
fn valid_lists() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("NOPs and EOL", vec![1, 1, 1, 0]),
        ("EOL then garbage", vec![0, 0x44, 0xff, 0x07]),
        ("record route, room for 2", vec![7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("record route, full", vec![7, 7, 8, 10, 0, 0, 9]),
        ("timestamp only", vec![68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("timestamp and address", vec![68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("timestamp full, overflow 3", vec![68, 8, 9, 0x30, 0, 0, 0, 0]),
        ("router alert", vec![148, 4, 0, 0]),
        ("unknown option skipped", vec![0x9e, 6, 1, 2, 3, 4, 1, 0]),
        ("40 bytes of NOP", vec![1; 40]),
    ]
}

/// Option lists Linux's ip_options_compile refuses, with the parameter problem's pointer
/// (from the start of the IP header).
fn malformed_lists() -> Vec<(&'static str, Vec<u8>, u8)> {
    vec![
        ("option length 0", vec![7, 0, 4, 0], 20),
        ("option length 1", vec![1, 7, 1, 0], 21),
        ("length past IHL", vec![7, 11, 4, 0, 0, 0, 0, 0], 20),
        ("type with no length byte", vec![1, 1, 1, 0x88], 23),
        ("RR pointer below 4", vec![7, 7, 3, 0, 0, 0, 0, 0], 22),
        ("RR pointer leaves half an address", vec![7, 7, 6, 0, 0, 0, 0, 0], 22),
        ("timestamp pointer below 5", vec![68, 8, 4, 0, 0, 0, 0, 0], 22),
        (
            "timestamp+address with room for a stamp only",
            vec![68, 8, 5, 1, 0, 0, 0, 0],
            22,
        ),
        ("timestamp overflow 15", vec![68, 8, 9, 0xf0, 0, 0, 0, 0], 23),
        ("router alert length 3", vec![148, 3, 0, 0], 21),
        ("two record routes", vec![7, 3, 4, 7, 3, 4, 0, 0], 23),
    ]
}

fn parse_ipv4(f: &[u8]) -> SlicedPacket<'_> {
    let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("etherparse rejects {f:02x?}: {e}"));
    assert!(matches!(p.net, Some(NetSlice::Ipv4(_))), "not IPv4: {f:02x?}");
    p
}

#[test]
fn valid_options_deliver_udp_and_tcp_intact() {
    let mut r = rig();
    let base = r.pool.in_use();
    let mut buf = [0u8; 2048];
    for (i, (name, opts)) in valid_lists().into_iter().enumerate() {
        // UDP: the datagram arrives whole, from the right port.
        let payload: Vec<u8> = (0..100 + i).map(|k| (k * 7 + i) as u8).collect();
        let before = r.mib();
        r.send(&udp_frame(&opts, 4000 + i as u16, &payload));
        let got =
            r.g.recv_from(r.udp, &mut buf)
                .unwrap_or_else(|e| panic!("{name}: UDP: {e}"));
        assert_eq!(&buf[..got.len], &payload[..], "{name}: UDP payload");
        assert_eq!(got.from, SocketAddrV4::new(PEER_IP, 4000 + i as u16), "{name}");
        let m = r.mib();
        assert_eq!(
            m.udp[UdpMib::InDatagrams] - before.udp[UdpMib::InDatagrams],
            1,
            "{name}"
        );
        assert_eq!(m.ip[IpMib::InHdrErrors], 0, "{name}");

        // TCP: handshake and data, every segment carrying the options.
        let sport = 5000 + i as u16;
        r.send(&tcp_frame(&opts, sport, 1000, 0, SYN, &[]));
        let out = r.recv();
        assert_eq!(out.len(), 1, "{name}: one SYN-ACK");
        let p = parse_ipv4(&out[0]);
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("{name}: not TCP: {:02x?}", out[0]);
        };
        assert!(t.syn() && t.ack() && t.acknowledgment_number() == 1001, "{name}");
        let iss = t.sequence_number();
        r.send(&tcp_frame(&opts, sport, 1001, iss.wrapping_add(1), ACK | PSH, &payload));
        let s =
            r.g.accept(r.listener)
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: accepted"));
        let n = r.g.recv(s, &mut buf).unwrap();
        assert_eq!(&buf[..n], &payload[..], "{name}: TCP payload");
        // The peer aborts; the socket goes.
        r.send(&tcp_frame(
            &opts,
            sport,
            1001 + payload.len() as u32,
            iss.wrapping_add(1),
            RST | ACK,
            &[],
        ));
        assert_eq!(
            r.g.recv(s, &mut buf),
            Err(GlueError::Connection(blink_glue::CloseReason::Reset))
        );
        r.g.close(s).unwrap();
        r.vc.advance_ms(300); // let the delayed ACK and any timer fire
        r.poll();
        r.recv();
        let m = r.mib();
        assert_eq!(m.ip[IpMib::InHdrErrors], 0, "{name}");
        assert_eq!(m.drops.total(), 0, "{name}: drops {:?}", m.nonzero());
    }
    let m = r.mib();
    assert_eq!(m.tcp[TcpMib::PassiveOpens], valid_lists().len() as u64);
    assert_eq!(m.icmp[IcmpMib::OutMsgs], 0, "no ICMP about any valid list");
    r.g.close(r.listener).unwrap();
    r.g.close(r.udp).unwrap();
    r.poll();
    r.recv();
    assert_eq!(r.g.protocol_sockets(), 0);
    assert_eq!(r.pool.in_use(), base, "mbufs leaked");
}

#[test]
fn malformed_options_are_refused_with_a_parameter_problem() {
    let mut r = rig();
    let base = r.pool.in_use();
    let mut buf = [0u8; 2048];
    let cases = malformed_lists();
    for (i, (name, opts, ptr)) in cases.iter().enumerate() {
        for tcp in [false, true] {
            // A second apart: the ICMP rate limit is not what this test is about.
            r.vc.advance_ms(1000);
            let before = r.mib();
            let f = if tcp {
                tcp_frame(opts, 6000 + i as u16, 1000, 0, SYN, &[])
            } else {
                udp_frame(opts, 6000 + i as u16, b"must not arrive")
            };
            r.send(&f);
            let what = format!("{name} ({})", if tcp { "TCP SYN" } else { "UDP" });
            let out = r.recv();
            assert_eq!(
                out.len(),
                1,
                "{what}: one answer, the parameter problem; got {out:02x?}"
            );
            let p = parse_ipv4(&out[0]);
            let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
                panic!("{what}: not ICMP: {:02x?}", out[0]);
            };
            assert_eq!((icmp.type_u8(), icmp.code_u8()), (12, 0), "{what}: parameter problem");
            assert_eq!(icmp.bytes5to8()[0], *ptr, "{what}: pointer");
            // The quote starts with the offending header, options included.
            assert_eq!(
                &icmp.payload()[..20 + opts.len().div_ceil(4) * 4],
                &f[14..14 + 20 + opts.len().div_ceil(4) * 4],
                "{what}: quote"
            );
            let d = |m: &blink_glue::netcore::snmp::Mib| {
                (
                    m.ip[IpMib::InHdrErrors],
                    m.drops[DropReason::IpInHdr],
                    m.icmp[IcmpMib::OutParmProbs],
                    m.ip[IpMib::InDelivers],
                )
            };
            let (a, b) = (d(&before), d(&r.mib()));
            assert_eq!(
                (b.0 - a.0, b.1 - a.1, b.2 - a.2, b.3 - a.3),
                (1, 1, 1, 0),
                "{what}: InHdrErrors, Drop.IpInHdr, OutParmProbs, InDelivers"
            );
            assert_eq!(r.mib().drops.total() - before.drops.total(), 1, "{what}: one drop");
        }
    }
    // Nothing reached a socket: no datagram queued, no connection begun.
    assert_eq!(r.g.recv_from(r.udp, &mut buf), Err(GlueError::WouldBlock));
    assert_eq!(r.g.accept(r.listener), Ok(None));
    let m = r.mib();
    assert_eq!(m.udp[UdpMib::InDatagrams], 0);
    assert_eq!(m.tcp[TcpMib::InSegs], 0);
    r.g.close(r.listener).unwrap();
    r.g.close(r.udp).unwrap();
    r.poll();
    assert_eq!(r.g.protocol_sockets(), 0);
    assert_eq!(r.pool.in_use(), base, "mbufs leaked");
}

/// A truncated header (IHL beyond the bytes that arrived) never reaches option parsing; a
/// source route is refused without an answer. Both counted.
#[test]
fn truncated_headers_and_source_routes() {
    let mut r = rig();
    let base = r.pool.in_use();
    // IHL 15 in a 30-byte IP packet.
    let mut f = udp_frame(&[1, 1, 1, 1], 7000, b"");
    f[14] = 0x4f;
    let c = {
        f[24] = 0;
        f[25] = 0;
        csum(&f[14..], 0)
    };
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let before = r.mib();
    r.send(&f);
    assert!(r.recv().is_empty(), "no answer to a truncated header");
    let m = r.mib();
    assert_eq!(m.ip[IpMib::InHdrErrors] - before.ip[IpMib::InHdrErrors], 1);
    assert_eq!(m.drops.total() - before.drops.total(), 1);
    assert_eq!(m.icmp[IcmpMib::OutMsgs], 0);

    for (name, opts) in [
        ("loose source route", vec![131, 7, 4, 10, 0, 0, 9]),
        ("strict source route, finished", vec![137, 7, 8, 10, 0, 0, 9]),
    ] {
        for tcp in [false, true] {
            let before = r.mib();
            let f = if tcp {
                tcp_frame(&opts, 7001, 1000, 0, SYN, &[])
            } else {
                udp_frame(&opts, 7001, b"x")
            };
            r.send(&f);
            assert!(r.recv().is_empty(), "{name}: no answer");
            let m = r.mib();
            assert_eq!(
                m.drops[DropReason::IpSourceRoute] - before.drops[DropReason::IpSourceRoute],
                1,
                "{name}"
            );
            assert_eq!(m.drops.total() - before.drops.total(), 1, "{name}");
            assert_eq!(m.ip[IpMib::InDiscards] - before.ip[IpMib::InDiscards], 1, "{name}");
            assert_eq!(m.ip[IpMib::InDelivers], 0, "{name}");
        }
    }
    let mut buf = [0u8; 64];
    assert_eq!(r.g.recv_from(r.udp, &mut buf), Err(GlueError::WouldBlock));
    r.g.close(r.listener).unwrap();
    r.g.close(r.udp).unwrap();
    r.poll();
    assert_eq!(r.pool.in_use(), base, "mbufs leaked");
}
