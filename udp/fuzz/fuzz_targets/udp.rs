//! UDP receive and the socket API around it: datagrams with lying length fields, zero, right
//! or wrong checksums, to bound, wildcard, connected, broadcast-listening and shared
//! (SO_REUSEADDR) sockets or to closed ports (port unreachable), broadcast and unicast, split
//! over several mbufs; sockets that read (into short buffers: truncation), send, close and
//! reopen; ICMP errors about datagrams a connected socket sent; small receive buffers.
//! Invariants, beyond the harness's: a datagram an application reads is one the fuzzer sent
//! to that port with a valid length and checksum, from the address it says, with its
//! payload intact (truncated only when the buffer is short, and then flagged); a socket's
//! receive memory stays within its buffer (plus the one datagram an empty queue always
//! takes); closing every socket frees everything.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use blink_ipv4_fuzz::*;
use blink_netcore::sock::SockHandle;
use blink_udp::*;
use libfuzzer_sys::fuzz_target;

const PORTS: [u16; 8] = [53, 54, 5000, 67, 9, 53, 5000, 68];

struct Sent {
    src: SocketAddrV4,
    dport: u16,
    payload: Vec<u8>,
}

fn open(h: &mut Host, which: u8) -> Option<SockHandle> {
    let st = &mut h.stack;
    let s = udp_socket(st).ok()?;
    let r = match which % 5 {
        0 => udp_bind(st, s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53)).map(|_| ()),
        1 => udp_bind(st, s, SocketAddrV4::new(STACK_IP, 54)).map(|_| ()),
        2 => udp_bind(st, s, SocketAddrV4::new(STACK_IP, 5000))
            .and_then(|_| udp_connect(st, s, SocketAddrV4::new(PEER_IP, 6000))),
        3 => udp_bind(st, s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67)).map(|_| ()),
        _ => udp_set_reuseaddr(st, s, true)
            .and_then(|_| udp_bind(st, s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000)).map(|_| ())),
    };
    if r.is_err() {
        let _ = udp_close(st, s);
        return None;
    }
    Some(s)
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let ucfg = UdpConfig {
        rcvbuf: if cfg & 1 != 0 { 4096 } else { 212_992 },
        ..Default::default()
    };
    let opts = HostOpts {
        probes: Vec::new(),
        ..Default::default()
    };
    let mut h = Host::with_setup(opts, move |st| udp_init(st, ucfg));
    let mut socks: Vec<SockHandle> = (0..5).filter_map(|i| open(&mut h, i)).collect();
    let mut sent: Vec<Sent> = Vec::new();
    let mut buf = vec![0u8; 70_000];
    let mut ops = 0;
    while !inp.is_empty() && ops < 64 {
        ops += 1;
        match inp.u8() % 10 {
            0..=4 => {
                let mut spec = IpSpec::decode(&mut inp, 17);
                if inp.u8() % 4 == 0 {
                    spec.dst = inp.pick(&[Ipv4Addr::BROADCAST, Ipv4Addr::new(10, 0, 0, 255), STACK_IP]);
                }
                let sport = match inp.u8() % 4 {
                    0 | 1 => 6000,
                    2 => 68,
                    _ => inp.u16(),
                };
                let dport = match inp.u8() {
                    255 => inp.u16(),
                    s => PORTS[s as usize % PORTS.len()],
                };
                let mut payload = inp.blob(1);
                if inp.u8() == 0xbb {
                    let n = inp.u16() as usize % 9000;
                    payload = payload
                        .iter()
                        .copied()
                        .cycle()
                        .take(if payload.is_empty() { 0 } else { n })
                        .collect();
                }
                let mut u = Vec::with_capacity(8 + payload.len());
                u.extend_from_slice(&sport.to_be_bytes());
                u.extend_from_slice(&dport.to_be_bytes());
                let len_mode = inp.u8() % 8;
                let ulen = match len_mode {
                    0..=5 => (8 + payload.len()) as u16,
                    6 => inp.u16(),
                    _ => (8 + payload.len() / 2) as u16,
                };
                u.extend_from_slice(&ulen.to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                u.extend_from_slice(&payload);
                // The checksum over what the length field covers, as the receiver checks it.
                let covered = (ulen as usize) >= 8 && (ulen as usize) <= u.len();
                let right = {
                    let n = (ulen as usize).clamp(8, u.len());
                    match l4_csum(spec.src, spec.dst, 17, &u[..n]) {
                        0 => 0xffff,
                        c => c,
                    }
                };
                let c = match inp.u8() % 8 {
                    0..=4 => right,
                    5 | 6 => 0,
                    _ => inp.u16(),
                };
                u[6..8].copy_from_slice(&c.to_be_bytes());
                if covered && (c == 0 || c == right) {
                    // A datagram the stack may deliver: what the length field covers.
                    sent.push(Sent {
                        src: SocketAddrV4::new(spec.src, sport),
                        dport,
                        payload: u[8..ulen as usize].to_vec(),
                    });
                }
                let dst = eth_dst(&mut inp);
                let frame = eth_frame(dst, PEER_MAC, ETH_P_IP, &spec.build(&u));
                let splits = [inp.u16() as usize % (frame.len() + 1)];
                h.inject_split(&frame, &splits);
            }
            5 => {
                // Read one datagram from a socket, into a buffer of the fuzzer's size.
                if socks.is_empty() {
                    continue;
                }
                let s = socks[inp.u8() as usize % socks.len()];
                let cap = if inp.bool() { buf.len() } else { inp.u8() as usize };
                let port = udp_local_addr(&mut h.stack, s).map(|a| a.port()).unwrap_or(0);
                if let Ok(r) = udp_recvmsg(&mut h.stack, s, &mut buf[..cap]) {
                    assert!(r.len <= cap && r.len <= r.datagram_len);
                    assert_eq!(r.truncated, r.datagram_len > cap, "MSG_TRUNC");
                    let got = &buf[..r.len];
                    let ok = sent.iter().any(|d| {
                        d.src == r.from
                            && d.dport == port
                            && d.payload.len() == r.datagram_len
                            && d.payload[..r.len] == *got
                    });
                    assert!(
                        ok,
                        "socket on port {port} read a datagram nobody sent: from {} len {}",
                        r.from, r.datagram_len
                    );
                }
            }
            6 => {
                // Send from a socket to the peer (or wherever it is connected).
                if socks.is_empty() {
                    continue;
                }
                let s = socks[inp.u8() as usize % socks.len()];
                let n = inp.u16() as usize % 3000;
                let to = if inp.bool() {
                    None
                } else {
                    Some(SocketAddrV4::new(PEER_IP, inp.u16()))
                };
                let _ = udp_sendmsg(&mut h.stack, s, &buf[..n], to);
                h.poll();
            }
            7 => {
                // Close one socket, open another.
                if !socks.is_empty() {
                    let i = inp.u8() as usize % socks.len();
                    let s = socks.swap_remove(i);
                    assert!(udp_close(&mut h.stack, s).is_ok());
                }
                if let Some(s) = open(&mut h, inp.u8()) {
                    socks.push(s);
                }
            }
            8 => {
                // Port unreachable about a datagram the connected socket sent.
                let code = inp.pick(&[3u8, 3, 1, 4, 2, 13]);
                let mut q = IpSpec::new(17);
                (q.src, q.dst) = (STACK_IP, PEER_IP);
                let mut uh = Vec::new();
                uh.extend_from_slice(&5000u16.to_be_bytes());
                uh.extend_from_slice(&6000u16.to_be_bytes());
                uh.extend_from_slice(&[0, 8, 0, 0]);
                let ip = IpSpec::new(1).build(&icmp_msg(3, code, inp.u16() as u32, &q.build(&uh)));
                h.inject(&eth_frame(STACK_MAC, PEER_MAC, ETH_P_IP, &ip));
            }
            _ => h.advance(inp.u16() as u64),
        }
        // Receive memory within the buffer (an empty queue takes one datagram whatever its size).
        let _ = with_udp(&mut h.stack, |u, st| {
            let ts = st.core.cache.pool().buf_size() * (1 + blink_netcore::skbuff::MAX_SKB_FRAGS);
            for &s in &socks {
                if let Some(sk) = u.socks.get(s) {
                    assert!(sk.rmem_alloc <= sk.rcvbuf + ts, "receive memory over rcvbuf");
                    assert_eq!(
                        sk.rmem_alloc == 0,
                        sk.rx_queued() == 0,
                        "receive memory and queue disagree"
                    );
                }
            }
        });
    }
    for s in socks {
        assert!(udp_close(&mut h.stack, s).is_ok());
    }
    let left = with_udp(&mut h.stack, |u, _| u.socks.len()).unwrap();
    assert_eq!(left, 0, "UDP sockets left after closing all");
    h.settle_and_check();
});
