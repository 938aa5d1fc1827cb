//! The builder's device options at work: a transfer through its fault injection (loss,
//! reordering, duplication, corruption), captured to pcap, arrives intact.

mod common;

use blink_glue::netcore::drivers::impair::ImpairConfig;
use blink_glue::GlueError;
use common::*;

#[test]
fn transfer_through_builder_impairment_and_pcap() {
    let seed = 11;
    let imp = ImpairConfig {
        loss: 0.03,
        reorder: 0.05,
        dup: 0.01,
        corrupt: 0.001,
        seed,
        ..Default::default()
    };
    eprintln!("impair seed {seed}: {imp}");
    let pcap = std::env::temp_dir().join(format!("blink-glue-impair-{}.pcap", std::process::id()));
    let mut p = pair_with::<()>(cfg(), cfg(), Some(imp), Some(&pcap));
    let l = p.b.tcp_listen(6000, 4).unwrap();
    let c = p.a.tcp_connect(B_IP, 6000, None).unwrap();
    let total = 2u64 << 20;
    let (mut sent, mut rcvd) = (0u64, 0u64);
    let mut server = None;
    let mut buf = vec![0u8; 32 * 1024];
    let mut rbuf = vec![0u8; 32 * 1024];
    let (mut closed, mut eof) = (false, false);
    for _ in 0..2_000_000 {
        p.step();
        if let Some(ls) = p.b.next_listener() {
            server = p.b.accept(ls).unwrap();
        }
        if p.a.tcp_state(c).is_ok_and(|s| s.can_send()) && sent < total {
            let n = ((total - sent) as usize).min(buf.len());
            fill(sent, &mut buf[..n]);
            sent += p.a.send(c, &buf[..n]).unwrap() as u64;
        }
        if sent == total && !closed {
            p.a.close(c).unwrap();
            closed = true;
        }
        let Some(s) = server else { continue };
        loop {
            match p.b.recv(s, &mut rbuf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    for (i, &b) in rbuf[..n].iter().enumerate() {
                        assert_eq!(
                            b,
                            pattern_byte(rcvd + i as u64),
                            "seed {seed}: byte {}",
                            rcvd + i as u64
                        );
                    }
                    rcvd += n as u64;
                }
                Err(GlueError::WouldBlock) => break,
                Err(e) => panic!("seed {seed}: recv: {e}"),
            }
        }
        if eof {
            break;
        }
    }
    assert!(eof, "seed {seed}: transfer did not finish ({rcvd} of {total})");
    assert_eq!(rcvd, total);
    let retrans = p.a.stack().core.mib.tcp[blink_glue::netcore::snmp::TcpMib::RetransSegs];
    assert!(retrans > 0, "seed {seed}: the impairment was in the path");
    p.b.close(server.unwrap()).unwrap();
    p.b.close(l).unwrap();
    p.drain_and_check();
    drop(p);
    let cap = std::fs::read(&pcap).unwrap();
    let _ = std::fs::remove_file(&pcap);
    assert!(
        cap.len() > 1 << 20,
        "the capture holds the transfer ({} bytes)",
        cap.len()
    );
    assert_eq!(&cap[..4], &0xa1b2c3d4u32.to_le_bytes(), "pcap magic");
}
