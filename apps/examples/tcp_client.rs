//! A TCP client written on glue's callbacks with zero-copy send (`get_buffer` + `send_mbuf`),
//! IPAugenblick's benchmark client, against a discard server (pull API) on the other end of
//! the in-memory wire, so it runs without privileges:
//!
//!     cargo run --release --example tcp_client -- [MIB] [CONNECTIONS]

use std::time::Instant;

use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
use blink_glue::netcore::mbuf::Mbuf;
use blink_glue::netcore::EthAddr;
use blink_glue::tcp::TcpConfig;
use blink_glue::{Closed, Glue, GlueBuilder, GlueError, GlueHandler, Socket};

/// Per connection: bytes still to send, and a filled buffer the send buffer refused.
struct Flow {
    left: u64,
    held: Option<Mbuf>,
}

struct Client {
    done: usize,
    failed: usize,
    /// Connections that found the pool empty: no callback will come for them (TCP refused
    /// nothing), so the loop pumps them again on the next pass.
    starved: Vec<Socket>,
}

impl Client {
    /// Fill buffers and hand them to TCP until it refuses one (writable resumes us).
    fn pump(&mut self, g: &mut Glue<Flow>, s: Socket) {
        let Ok(mss) = g.max_mbuf_payload(s) else { return };
        let Some(mut f) = g.take_user_data(s) else { return };
        while f.left > 0 {
            let m = match f.held.take() {
                Some(m) => m,
                None => {
                    let Some(mut m) = g.get_buffer() else {
                        self.starved.push(s);
                        break;
                    };
                    let n = (f.left as usize).min(mss);
                    m.append(n).expect("a buffer holds one MSS").fill(0x5a);
                    m
                }
            };
            let n = m.data_len() as u64;
            match g.send_mbuf(s, m) {
                Ok(()) => f.left -= n,
                Err((m, GlueError::WouldBlock)) => {
                    f.held = Some(m);
                    break;
                }
                Err(_) => {
                    self.failed += 1;
                    let _ = g.close(s);
                    return;
                }
            }
        }
        if f.left == 0 {
            let _ = g.close(s);
            self.done += 1;
        } else {
            let _ = g.set_user_data(s, f);
        }
    }
}

impl GlueHandler<Flow> for Client {
    fn on_connected(&mut self, g: &mut Glue<Flow>, s: Socket) {
        self.pump(g, s);
    }
    fn on_writable(&mut self, g: &mut Glue<Flow>, s: Socket) {
        self.pump(g, s);
    }
    fn on_closed(&mut self, _g: &mut Glue<Flow>, c: Closed<Flow>) {
        eprintln!("connection {:?} failed: {:?}", c.sock, c.reason);
        self.failed += 1;
    }
}

/// Buffers per side. More connections than the pool can fill all buffers of (256 KiB each,
/// ~180 mbufs) are fine: TCP's memory limit (`TcpConfig::tcp_mem_pct`) refuses writes under
/// pressure and wakes the writers when memory is back.
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
    let mib: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(16);
    let conns: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(4);
    assert!((1..=4096).contains(&conns), "CONNECTIONS: 1..=4096");
    let (wa, wb) = wire_pair(
        ("client", "server"),
        (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
        &WireConfig::default(),
    );
    let mut client: Glue<Flow> = GlueBuilder::new()
        .device(Box::new(wa))
        .addr("10.0.0.1/24".parse().unwrap())
        .pool_size(POOL)
        .tcp(tcp_config())
        .build()
        .expect("client glue");
    let mut server: Glue<()> = GlueBuilder::new()
        .device(Box::new(wb))
        .addr("10.0.0.2/24".parse().unwrap())
        .pool_size(POOL)
        .tcp(tcp_config())
        .build()
        .expect("server glue");
    server.tcp_listen(9, 128).expect("listen");
    for _ in 0..conns {
        let flow = Flow {
            left: mib << 20,
            held: None,
        };
        client
            .tcp_connect("10.0.0.2".parse().unwrap(), 9, Some(flow))
            .expect("connect");
    }
    let mut c = Client {
        done: 0,
        failed: 0,
        starved: Vec::new(),
    };
    let mut discarded = 0u64;
    let mut eofs = 0;
    let t0 = Instant::now();
    while eofs < conns && c.failed == 0 {
        client.periodic_with(&mut c);
        for s in std::mem::take(&mut c.starved) {
            c.pump(&mut client, s);
        }
        client.flush();
        server.periodic();
        // The discard server uses the pull lists.
        while let Some(l) = server.next_listener() {
            while let Ok(Some(_)) = server.accept(l) {}
        }
        while let Some(s) = server.next_reader() {
            // Zero-copy receive: the payload stays in the buffers the wire delivered.
            loop {
                match server.recv_skb(s) {
                    Ok(Some(skb)) => discarded += skb.len() as u64,
                    Ok(None) => {
                        eofs += 1;
                        let _ = server.close(s);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "tcp_client: {} of {conns} connections sent {} MiB zero-copy in {secs:.2} s ({:.0} Mbit/s), {} failed",
        c.done,
        discarded >> 20,
        (discarded as f64) * 8.0 / secs / 1e6,
        c.failed
    );
    assert_eq!(discarded, (mib << 20) * conns as u64, "the server got every byte");
}
