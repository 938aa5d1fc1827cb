//! blink as the TCP client: a blink stack inside the test's namespace connects to a kernel
//! listener (`nc -l`) through TAP and sends data; the kernel's copy must hash the same.

mod common;

use std::time::{Duration, Instant};

use blink_glue::ipv4::{Stack, StackConfig};
use blink_glue::netcore::drivers::impair::{Impair, ImpairConfig};
use blink_glue::netcore::drivers::tap::TapDev;
use blink_glue::netcore::jiffies::Clock;
use blink_glue::netcore::netdevice::NetDevice;
use blink_glue::tcp::{self, TcpConfig, TcpErr, TcpState};
use common::*;
use sha2::{Digest, Sha256};

/// Move this thread into the namespace (only this thread: setns affects the caller).
fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}")).expect("netns file");
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd for this thread only.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn blink_client_to_kernel(tag: &str, net: u8, bytes: usize, impair: Option<&str>) {
    let ns = Netns::new(tag, &format!("10.200.{net}.1/24"));
    let out = std::env::temp_dir().join(format!("blink-{tag}-{}.out", std::process::id()));
    let out_s = out.to_str().unwrap().to_string();
    let mut nc = ns
        .cmd(&["sh", "-c", &format!("exec nc -l 5001 > {out_s}")])
        .spawn()
        .expect("nc -l");
    // Wait until the kernel listens.
    let t0 = Instant::now();
    while !ns.exec_ok(&["ss", "-ltn"]).contains(":5001") {
        assert!(t0.elapsed() < Duration::from_secs(10), "nc did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ns_name = ns.name.clone();
    let tap = ns.tap.clone();
    let impair: Option<ImpairConfig> = impair.map(|s| s.parse().unwrap());
    let (sent_hash, report) = std::thread::spawn(move || {
        enter_netns(&ns_name);
        let pool = blink_apps::setup::new_pool(16384);
        let clock = Clock::monotonic();
        let mut stack = Stack::new(0, 1, clock.clone(), &pool, StackConfig::default());
        let ip = format!("10.200.{net}.2/24").parse().unwrap();
        let mac = blink_apps::setup::mac_for(Some(ip));
        let dev: Box<dyn NetDevice> = Box::new(TapDev::open(&tap, 1, mac, 1500, pool.cache()).expect("tap"));
        let dev: Box<dyn NetDevice> = match impair {
            Some(c) => Box::new(Impair::new(dev, c, clock.clone(), pool.cache())),
            None => dev,
        };
        let i = stack.add_device(dev, 0);
        stack.add_addr(i, ip).unwrap();
        tcp::tcp_init(
            &mut stack,
            TcpConfig {
                seed: Some(tcp_seed()),
                ..Default::default()
            },
        );
        let c = tcp::tcp_connect(&mut stack, format!("10.200.{net}.1").parse().unwrap(), 5001).unwrap();
        let mut h = Sha256::new();
        let mut rng = 0x9e3779b97f4a7c15u64 ^ bytes as u64;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut pending = 0..0;
        let mut sent = 0usize;
        let mut shut = false;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            assert!(Instant::now() < deadline, "blink client timed out after {sent} bytes");
            stack.poll();
            let st = tcp::tcp_state(&mut stack, c).unwrap();
            if st == TcpState::Established && sent < bytes {
                if pending.is_empty() {
                    let n = (bytes - sent).min(chunk.len());
                    for w in chunk[..n].chunks_mut(8) {
                        let v = xorshift(&mut rng).to_le_bytes();
                        w.copy_from_slice(&v[..w.len()]);
                    }
                    h.update(&chunk[..n]);
                    pending = 0..n;
                }
                let k = tcp::tcp_send(&mut stack, c, &chunk[pending.clone()]).unwrap();
                pending.start += k;
                sent += k;
            }
            if sent == bytes && !shut {
                tcp::tcp_shutdown(&mut stack, c).unwrap();
                shut = true;
            }
            if shut {
                // The kernel closes after our FIN; wait for its FIN (end of stream).
                let mut b = [0u8; 64];
                match tcp::tcp_recv(&mut stack, c, &mut b) {
                    Ok(0) => break,
                    Ok(_) | Err(TcpErr::WouldBlock) => {}
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
        tcp::tcp_close(&mut stack, c).unwrap();
        for _ in 0..1000 {
            stack.poll();
        }
        let report = format!("{:?}", stack.core.mib.nonzero());
        drop(stack);
        assert_eq!(pool.in_use(), 0, "mbufs leaked");
        (format!("{:x}", h.finalize()), report)
    })
    .join()
    .expect("client thread");
    let st = nc.wait().expect("nc");
    assert!(st.success(), "nc -l failed");
    let got = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        got.len(),
        bytes,
        "kernel received {} of {bytes} bytes; blink: {report}",
        got.len()
    );
    assert_eq!(
        format!("{:x}", Sha256::digest(&got)),
        sent_hash,
        "sha256 differs; blink: {report}"
    );
}

#[test]
fn blink_client_sends_100mib_to_kernel_listener() {
    if !require_root("blink_client_sends_100mib_to_kernel_listener") {
        return;
    }
    blink_client_to_kernel("tcpcli", 5, 100 << 20, None);
}

#[test]
fn blink_client_to_kernel_under_loss_and_reordering() {
    if !require_root("blink_client_to_kernel_under_loss_and_reordering") {
        return;
    }
    blink_client_to_kernel(
        "tcpclil",
        6,
        100 << 20,
        Some("loss=0.05,reorder=0.1,dup=0.01,corrupt=0.001,delay=1ms,seed=6"),
    );
}
