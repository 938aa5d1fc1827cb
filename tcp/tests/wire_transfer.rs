//! Two blink stacks move data over TCP on the in-memory wire, clean and under impairment,
//! bit-exact, and end with every mbuf back in the pool.

mod common;

use blink_netcore::drivers::impair::ImpairConfig;
use blink_tcp::*;
use common::*;

/// Move `total` bytes A -> B, closing both sides; returns (sent hash, received hash). Fails
/// after `max_steps` poll rounds (a bound on a stall, several times what the transfer needs:
/// each test states its measured figure).
fn transfer(p: &mut Pair, total: u64, max_steps: usize) -> (u64, u64) {
    let l = tcp_listen(&mut p.b, 5001, 16).unwrap();
    let c = tcp_connect(&mut p.a, B_IP, 5001).unwrap();
    let mut server = None;
    let (mut sent, mut rcvd) = (0u64, 0u64);
    let (mut hs, mut hr) = (0xcbf29ce484222325u64, 0xcbf29ce484222325u64);
    let mut buf = vec![0u8; 64 * 1024];
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut closed_a = false;
    let mut eof = false;
    let mut steps = 0;
    for _ in 0..max_steps {
        steps += 1;
        p.step();
        if server.is_none() {
            server = tcp_accept(&mut p.b, l).unwrap();
        }
        if sent < total && matches!(tcp_state(&mut p.a, c), Ok(TcpState::Established)) {
            // Generate only what the send buffer can take: the pattern costs more than TCP.
            let space = with_tcp(&mut p.a, |t, _| t.socks.get(c).map_or(0, |s| s.send_space())).unwrap();
            let n = ((total - sent) as usize).min(buf.len()).min(space as usize);
            pattern(sent, &mut buf[..n]);
            let k = tcp_send(&mut p.a, c, &buf[..n]).unwrap();
            fnv(&mut hs, &buf[..k]);
            sent += k as u64;
        }
        if sent == total && !closed_a {
            tcp_close(&mut p.a, c).unwrap();
            closed_a = true;
        }
        if let Some(s) = server {
            loop {
                match tcp_recv(&mut p.b, s, &mut rbuf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        fnv(&mut hr, &rbuf[..n]);
                        rcvd += n as u64;
                    }
                    Err(TcpErr::WouldBlock) => break,
                    Err(e) => panic!("recv: {e} after {rcvd} bytes"),
                }
            }
        }
        if eof {
            tcp_close(&mut p.b, server.unwrap()).unwrap();
            break;
        }
    }
    assert!(
        eof,
        "transfer did not finish in {max_steps} steps: sent {sent}, received {rcvd} of {total}"
    );
    eprintln!("transfer: {steps} steps of at most {max_steps}");
    assert_eq!(rcvd, total);
    tcp_close(&mut p.b, l).unwrap();
    // Let FIN/ACKs and TIME-WAIT (shortened in these tests) run out.
    p.run_until(200_000, |p| {
        with_tcp(&mut p.a, |t, _| t.socks.len()).unwrap() == 0 && with_tcp(&mut p.b, |t, _| t.socks.len()).unwrap() == 0
    });
    (hs, hr)
}

/// Bytes per transfer: `mib` MiB, or BLINK_WIRE_MIB for quick runs.
fn size(mib: u64) -> u64 {
    std::env::var("BLINK_WIRE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(mib)
        << 20
}

fn cfg() -> TcpConfig {
    TcpConfig {
        timewait_ms: 1000,
        ..Default::default()
    }
}

fn check_clean_end(p: &mut Pair) {
    // The last sockets may go while a final frame (an ACK, a duplicate the impairment made)
    // is still on the wire: let what is in flight arrive before counting buffers. A real
    // leak stays in use however long this runs.
    p.run_until(1000, |p| p.pool.in_use() == 0);
    assert_eq!(
        with_tcp(&mut p.a, |t, _| t.socks.len()).unwrap(),
        0,
        "A still has sockets"
    );
    assert_eq!(
        with_tcp(&mut p.b, |t, _| t.socks.len()).unwrap(),
        0,
        "B still has sockets"
    );
    assert_eq!(p.pool.in_use(), 0, "mbufs leaked");
}

#[test]
fn clean_transfer() {
    let mut p = pair(None, cfg());
    // 5,804 poll rounds measured (seed 1).
    let (hs, hr) = transfer(&mut p, size(256), 50_000);
    assert_eq!(hs, hr);
    let m = &p.a.core.mib;
    assert_eq!(m.tcp[blink_netcore::snmp::TcpMib::RetransSegs], 0);
    assert_eq!(m.tcp[blink_netcore::snmp::TcpMib::ActiveOpens], 1);
    assert_eq!(p.b.core.mib.tcp[blink_netcore::snmp::TcpMib::PassiveOpens], 1);
    check_clean_end(&mut p);
}

/// `max_steps`: several times the poll rounds measured (1%: 14,846; 5%: 90,452).
fn lossy(loss: f64, seed: u64, max_steps: usize) {
    let imp = ImpairConfig {
        loss,
        dup: 0.01,
        reorder: 0.02,
        corrupt: 0.001,
        seed,
        ..Default::default()
    };
    eprintln!("impair seed {seed}: {imp}");
    let mut p = pair(Some(imp), cfg());
    let (hs, hr) = transfer(&mut p, size(256), max_steps);
    assert_eq!(hs, hr, "seed {seed}");
    assert!(p.a.core.mib.tcp[blink_netcore::snmp::TcpMib::RetransSegs] > 0);
    eprintln!(
        "loss {loss}: virtual time {} ms; A: {:?}",
        p.vc.now_ns() / 1_000_000,
        p.a.core
            .mib
            .nonzero()
            .into_iter()
            .filter(|(k, _)| k.starts_with("TcpExt") || k.contains("Retrans"))
            .collect::<Vec<_>>()
    );
    check_clean_end(&mut p);
}

#[test]
fn transfer_1pct_loss() {
    lossy(0.01, 11, 150_000);
}

#[test]
fn transfer_5pct_loss() {
    lossy(0.05, 12, 500_000);
}

/// 20% loss in both directions plus duplication, reordering and corruption. With an RTT of
/// tens of microseconds every retransmission timeout costs 10^4 RTTs, so the timeouts left
/// (a lost probe or retransmission with nothing sent after it, ~2,000 per 256 MiB) still
/// set the virtual time: ~22 minutes; wall time stays a few seconds.
#[test]
fn transfer_20pct_loss_with_dup_reorder_corrupt() {
    let imp = ImpairConfig {
        loss: 0.2,
        dup: 0.05,
        reorder: 0.1,
        corrupt: 0.01,
        seed: 20,
        ..Default::default()
    };
    let mut p = pair(Some(imp), cfg());
    // 2,334,044 poll rounds measured (seed 1): most of them idle 1 ms steps across timeouts.
    let (hs, hr) = transfer(&mut p, size(256), 10_000_000);
    assert_eq!(hs, hr);
    eprintln!(
        "virtual time {} ms; A: {:?}",
        p.vc.now_ns() / 1_000_000,
        p.a.core
            .mib
            .nonzero()
            .into_iter()
            .filter(|(k, _)| k.starts_with("Tcp"))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "B: {:?}",
        p.b.core
            .mib
            .nonzero()
            .into_iter()
            .filter(|(k, _)| k.starts_with("Tcp") || k.starts_with("Drop"))
            .collect::<Vec<_>>()
    );
    check_clean_end(&mut p);
}
