//! IPAugenblick's UDP benchmark app on glue: a UDP echo server driven by callbacks, and an
//! in-process client (pull API) on the other end of the in-memory wire, so it runs without
//! privileges:
//!
//!     cargo run --release --example udp -- [DATAGRAMS] [SIZE] [WINDOW]
//!
//! The client keeps WINDOW datagrams in flight, checks every echoed byte, and prints what
//! happened: datagrams echoed, lost (UDP may drop; each drop is in a counter printed below),
//! the rate, and both sides' Udp counters.

use std::net::SocketAddrV4;
use std::time::Instant;

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::snmp::UdpMib;
use blink_glue::netcore::EthAddr;
use blink_glue::{Glue, GlueBuilder, GlueError, GlueHandler, Socket};

const PORT: u16 = 7;

/// The server: echo each datagram to its sender; the socket's user data counts them.
struct EchoServer {
    buf: Vec<u8>,
}

impl GlueHandler<u64> for EchoServer {
    fn on_readable(&mut self, g: &mut Glue<u64>, s: Socket) {
        // Read until WouldBlock: the socket is listed again only when more arrives.
        while let Ok(r) = g.recv_from(s, &mut self.buf) {
            if g.send_to(s, &self.buf[..r.len], Some(r.from)).is_ok() {
                if let Some(n) = g.user_data_mut(s) {
                    *n += 1;
                }
            }
        }
    }
}

/// Datagram `seq`'s payload: its sequence number, then bytes derived from it.
fn fill(seq: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = if i < 8 {
            seq.to_le_bytes()[i]
        } else {
            (seq as usize + i) as u8
        };
    }
}

fn udp_counters(g: &Glue<u64>) -> String {
    let m = &g.stack().core.mib.udp;
    format!(
        "InDatagrams {} OutDatagrams {} NoPorts {} InErrors {} RcvbufErrors {}",
        m[UdpMib::InDatagrams],
        m[UdpMib::OutDatagrams],
        m[UdpMib::NoPorts],
        m[UdpMib::InErrors],
        m[UdpMib::RcvbufErrors]
    )
}

/// Every non-zero drop counter (each dropped packet is counted by reason), or "none".
fn drops(g: &Glue<u64>) -> String {
    let d: Vec<String> = g
        .stack()
        .core
        .mib
        .nonzero()
        .into_iter()
        .filter(|(k, _)| k.starts_with("Drop."))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if d.is_empty() {
        "none".into()
    } else {
        d.join(", ")
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let size: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let window: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(64);
    assert!(
        (8..=1472).contains(&size),
        "SIZE: 8..=1472 (one datagram per Ethernet frame)"
    );
    assert!(window >= 1, "WINDOW: at least 1");
    let (wa, wb) = wire_pair(
        ("client", "server"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig::default(),
    );
    let mut client: Glue<u64> = GlueBuilder::new()
        .device(Box::new(wa))
        .addr("10.0.0.1/24".parse().unwrap())
        .build()
        .expect("client glue");
    let mut server: Glue<u64> = GlueBuilder::new()
        .device(Box::new(wb))
        .addr("10.0.0.2/24".parse().unwrap())
        .build()
        .expect("server glue");
    let ss = server.udp_socket(Some(0)).expect("server socket");
    server
        .udp_bind(ss, SocketAddrV4::new("0.0.0.0".parse().unwrap(), PORT))
        .expect("bind");
    let cs = client.udp_socket(None).expect("client socket");
    client
        .udp_connect(cs, SocketAddrV4::new("10.0.0.2".parse().unwrap(), PORT))
        .expect("connect");

    let mut echo = EchoServer { buf: vec![0u8; 2048] };
    let (mut sent, mut echoed, mut corrupt) = (0u64, 0u64, 0u64);
    let mut out = vec![0u8; size];
    let mut inb = vec![0u8; 2048];
    let mut want = vec![0u8; size];
    let mut idle = 0u32;
    let t0 = Instant::now();
    // Ends when every datagram is echoed, or nothing moved for a while (the rest were lost).
    while echoed < count && idle < 10_000 {
        while sent < count && sent - echoed < window {
            fill(sent, &mut out);
            match client.send(cs, &out) {
                Ok(_) => sent += 1,
                Err(GlueError::NoMemory) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        let n = client.periodic() + server.periodic_with(&mut echo);
        let mut got = false;
        while let Some(s) = client.next_reader() {
            while let Ok(r) = client.recv_from(s, &mut inb) {
                let seq = u64::from_le_bytes(inb[..8].try_into().unwrap());
                fill(seq, &mut want);
                if inb[..r.len] != want[..] {
                    corrupt += 1;
                }
                echoed += 1;
                got = true;
            }
        }
        // Each lost datagram shrinks the window by one for good; once nothing moves, the rest
        // are lost and the run ends (the counters below say where they went).
        idle = if n > 0 || got { 0 } else { idle + 1 };
    }
    let secs = t0.elapsed().as_secs_f64();
    let served = *server.user_data(ss).unwrap();
    println!(
        "udp: sent {sent} datagrams of {size} bytes, server echoed {served}, client got {echoed} back \
         ({} lost, {corrupt} corrupted) in {secs:.2} s: {:.0} datagrams/s, {:.0} Mbit/s each way",
        sent - echoed,
        served as f64 / secs,
        (served as f64) * (size as f64) * 8.0 / secs / 1e6
    );
    println!("client Udp: {}", udp_counters(&client));
    println!("server Udp: {}", udp_counters(&server));
    println!("client drops: {}", drops(&client));
    println!("server drops: {}", drops(&server));
    client.close(cs).unwrap();
    server.close(ss).unwrap();
    for _ in 0..10 {
        client.periodic();
        server.periodic();
    }
    println!(
        "mbufs in use after close: client {}, server {}",
        client.pool_in_use(),
        server.pool_in_use()
    );
    assert_eq!(corrupt, 0, "echo corrupted");
}
