//! A TCP echo server written on glue's callbacks (IPAugenblick's benchmark server), with an
//! in-process client on the other end of the in-memory wire so it runs without privileges:
//!
//!     cargo run --release --example tcp_server -- [MIB] [CONNECTIONS]
//!
//! The client (pull API) sends MIB MiB on each connection and checks every echoed byte.

use std::time::Instant;

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::EthAddr;
use blink_glue::tcp::TcpConfig;
use blink_glue::{Glue, GlueBuilder, GlueError, GlueHandler, Socket};

/// Per-connection state of the server: received bytes the send buffer has not taken yet.
#[derive(Default)]
struct Pending(Vec<u8>);

struct EchoServer {
    buf: Vec<u8>,
    echoed: u64,
}

impl EchoServer {
    fn pump(&mut self, g: &mut Glue<Pending>, s: Socket) {
        // The state is taken out while glue is called, and put back if the connection lives.
        let Some(mut p) = g.take_user_data(s) else { return };
        if self.pump_conn(g, s, &mut p) {
            let _ = g.set_user_data(s, p);
        } else {
            let _ = g.close(s);
        }
    }

    /// false when the connection is over.
    fn pump_conn(&mut self, g: &mut Glue<Pending>, s: Socket, p: &mut Pending) -> bool {
        loop {
            // Flush what is waiting first, so a slow peer throttles us rather than memory.
            if !p.0.is_empty() {
                let Ok(n) = g.send(s, &p.0) else { return false };
                p.0.drain(..n);
                self.echoed += n as u64;
                if !p.0.is_empty() {
                    return true; // on_writable resumes
                }
            }
            match g.recv(s, &mut self.buf) {
                Ok(0) => return false,
                Ok(n) => p.0.extend_from_slice(&self.buf[..n]),
                Err(GlueError::WouldBlock) => return true,
                Err(_) => return false,
            }
        }
    }
}

impl GlueHandler<Pending> for EchoServer {
    fn on_accept(&mut self, g: &mut Glue<Pending>, _l: Socket, s: Socket) {
        let _ = g.set_user_data(s, Pending::default());
    }
    fn on_readable(&mut self, g: &mut Glue<Pending>, s: Socket) {
        self.pump(g, s);
    }
    fn on_writable(&mut self, g: &mut Glue<Pending>, s: Socket) {
        self.pump(g, s);
    }
}

fn byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Buffers per side. More connections than the pool can fill all buffers of (256 KiB each,
/// ~180 mbufs) are fine: TCP's memory limit (`TcpConfig::tcp_mem_pct`) refuses writes under
/// pressure, drops what arrives above its maximum, and wakes the writers when memory is back.
const POOL: usize = 32768;

fn tcp_config() -> TcpConfig {
    TcpConfig {
        sndbuf: 256 * 1024,
        rcvbuf: 256 * 1024,
        ..Default::default()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(8);
    let conns: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(4);
    assert!((1..=4096).contains(&conns), "CONNECTIONS: 1..=4096");
    let total = mib << 20;
    let (wa, wb) = wire_pair(
        ("client", "server"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig::default(),
    );
    let mut client: Glue<(u64, u64)> = GlueBuilder::new()
        .device(Box::new(wa))
        .addr("10.0.0.1/24".parse().unwrap())
        .pool_size(POOL)
        .tcp(tcp_config())
        .build()
        .expect("client glue");
    let mut server: Glue<Pending> = GlueBuilder::new()
        .device(Box::new(wb))
        .addr("10.0.0.2/24".parse().unwrap())
        .pool_size(POOL)
        .tcp(tcp_config())
        .build()
        .expect("server glue");
    server.tcp_listen(7777, 128).expect("listen");
    let mut socks: Vec<Socket> = (0..conns)
        .map(|_| {
            client
                .tcp_connect("10.0.0.2".parse().unwrap(), 7777, Some((0, 0)))
                .expect("connect")
        })
        .collect();
    let mut echo = EchoServer {
        buf: vec![0u8; 64 * 1024],
        echoed: 0,
    };
    let mut out = vec![0u8; 64 * 1024];
    let mut inb = vec![0u8; 64 * 1024];
    let t0 = Instant::now();
    while !socks.is_empty() {
        client.periodic();
        server.periodic_with(&mut echo);
        // The client simply tries every connection each pass (the pull API's writer and
        // reader lists would do as well; this keeps the example short).
        socks.retain(|&s| {
            let (sent, rcvd) = *client.user_data(s).unwrap();
            let mut sent2 = sent;
            if sent < total {
                let n = (total - sent).min(out.len() as u64) as usize;
                for (i, b) in out[..n].iter_mut().enumerate() {
                    *b = byte(sent + i as u64);
                }
                sent2 += client.send(s, &out[..n]).unwrap_or(0) as u64;
            }
            let mut rcvd2 = rcvd;
            while let Ok(n) = client.recv(s, &mut inb) {
                assert!(n > 0, "server closed early");
                for (i, &b) in inb[..n].iter().enumerate() {
                    assert_eq!(b, byte(rcvd2 + i as u64), "echo corrupted");
                }
                rcvd2 += n as u64;
            }
            client.set_user_data(s, (sent2, rcvd2)).unwrap();
            if rcvd2 == total {
                client.close(s).unwrap();
                return false;
            }
            true
        });
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "tcp_server: echoed {} MiB on {conns} connections in {secs:.2} s ({:.0} Mbit/s each way), every byte checked",
        echo.echoed >> 20,
        (echo.echoed as f64) * 8.0 / secs / 1e6
    );
}
