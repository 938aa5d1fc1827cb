//! Zero-copy proof on DPDK: the skbs the application takes from a TCP socket
//! (`tcp_recv_skb`) live in the very rte_mbufs the PMD delivered, and both blink's and DPDK's
//! in-use counts return to where they started.
//!
//! The stack runs in this process: the test thread moves into a fresh network namespace
//! (unshare), initialises EAL there with a net_tap vdev (its kernel interface appears in that
//! namespace), and the kernel's `nc` sends to blink through it. A recording wrapper around the
//! DPDK device notes which rte_mbufs the driver handed up. A second net_tap port then checks
//! the transmit checksum paths: a CHECKSUM_PARTIAL UDP datagram leaves through the PMD's
//! offload (port 0) and through blink's software fallback (port 1, offload turned off), and
//! the kernel, which drops datagrams with bad checksums, receives both. Compiled only with
//! `dpdk`; one test function, because EAL initialises once per process.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blink_glue::ipv4::{Stack, StackConfig};
use blink_glue::netcore::checksum::{csum_fold, ip_fast_csum, pseudo_header_ipv4};
use blink_glue::netcore::drivers::dpdk::{eal_init, DpdkConfig, DpdkDev};
use blink_glue::netcore::if_ether::EthAddr;
use blink_glue::netcore::jiffies::Clock;
use blink_glue::netcore::netdevice::{Burst, DevStats, NetDevice, NetdevFeatures};
use blink_glue::netcore::skbuff::IpSummed;
use blink_glue::netcore::{Mempool, MempoolConfig, SkBuff};
use blink_glue::tcp::{tcp, tcp_accept, tcp_close, tcp_init, tcp_listen, tcp_state, with_tcp, TcpConfig, TcpState};
use common::require_root;

/// rte_mbuf address -> (address, length) of the bytes it held when the driver handed it up
/// last (buffers are recycled, so only the latest delivery counts).
type Seen = Arc<Mutex<HashMap<usize, (usize, usize)>>>;

/// Passes everything through to the DPDK device, remembering the rte_mbuf behind every
/// buffer of every received skb and where its bytes were.
struct Recorder {
    inner: DpdkDev,
    seen: Seen,
}

impl NetDevice for Recorder {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn mac(&self) -> EthAddr {
        self.inner.mac()
    }
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn features(&self) -> NetdevFeatures {
        self.inner.features()
    }
    fn rx_burst(&mut self, queue: u16, out: &mut Burst) -> usize {
        let start = out.len();
        let n = self.inner.rx_burst(queue, out);
        let mut seen = self.seen.lock().unwrap();
        for skb in &out[start..] {
            let d = skb.data();
            seen.insert(skb.head_mbuf().rte_mbuf() as usize, (d.as_ptr() as usize, d.len()));
            for f in skb.frags() {
                let b = f.bytes();
                seen.insert(f.mbuf().rte_mbuf() as usize, (b.as_ptr() as usize, b.len()));
            }
        }
        n
    }
    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst) -> usize {
        self.inner.tx_burst(queue, pkts)
    }
    fn stats(&self) -> DevStats {
        self.inner.stats()
    }
    fn extra_stats(&self) -> Vec<(String, u64)> {
        self.inner.extra_stats()
    }
}

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().expect("sh");
    assert!(st.success(), "{cmd}");
}

#[test]
fn dpdk_rx_payload_is_the_pmd_mbuf_and_pools_drain() {
    if !require_root("dpdk_rx_payload_is_the_pmd_mbuf_and_pools_drain") {
        return;
    }
    // SAFETY: unshare(2) moves only this thread into a new network namespace; the processes
    // and DPDK threads it starts from here on inherit it.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET)");
    sh("ip link set lo up");
    let eal = format!(
        "--no-huge -m 512 --no-pci --vdev=net_tap0,iface=zctap0 --vdev=net_tap1,iface=zctap1 -l 0 --file-prefix=blink-zc-{} --no-telemetry",
        std::process::id()
    );
    eal_init(&eal).expect("EAL");
    let pool = Mempool::new_dpdk(&MempoolConfig {
        name: "zc".into(),
        n: 4096,
        ..Default::default()
    })
    .expect("DPDK mempool");
    let mut stack = Stack::new(0, 1, Clock::monotonic(), &pool, StackConfig::default());
    tcp_init(
        &mut stack,
        TcpConfig {
            seed: Some(common::tcp_seed()),
            ..Default::default()
        },
    );
    let dev = DpdkDev::open(&DpdkConfig::default(), &pool).expect("port 0");
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let ifindex = stack.add_device(
        Box::new(Recorder {
            inner: dev,
            seen: seen.clone(),
        }),
        0,
    );
    stack.add_addr(ifindex, "10.200.65.2/24".parse().unwrap()).unwrap();
    // What the PMD holds (its rx ring): DPDK's count less blink's own (blink may hold a
    // queued gratuitous ARP, sent on the first poll).
    let rte_start = pool.rte_in_use() - pool.in_use();
    sh("ip addr add 10.200.65.1/24 dev zctap0 && ip link set zctap0 up");

    let listener = tcp_listen(&mut stack, 9, 16).unwrap();
    let dir = std::env::temp_dir().join(format!("blink-zc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in");
    let payload: Vec<u8> = (0..(512u32 << 10))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&input, &payload).unwrap();
    let mut nc = Command::new("sh")
        .args(["-c", &format!("timeout 60 nc -N 10.200.65.2 9 < {}", input.display())])
        .spawn()
        .expect("nc");

    let mut got = Vec::new();
    let (mut skbs, mut foreign) = (0usize, 0usize);
    let mut conn = None;
    let mut closed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !closed {
        if stack.poll() == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
        if conn.is_none() {
            conn = tcp_accept(&mut stack, listener).unwrap();
            continue;
        }
        let h = conn.unwrap();
        // Zero-copy receive: the application takes the skbs themselves.
        while let Some(skb) = with_tcp(&mut stack, |t, s| tcp::tcp_recv_skb(t.socks.get_mut(h)?, s)).unwrap() {
            let seen = seen.lock().unwrap();
            let mut bufs = vec![(skb.head_mbuf(), skb.data())];
            bufs.extend(skb.frags().iter().map(|f| (f.mbuf(), f.bytes())));
            for (m, bytes) in bufs {
                let rte = m.rte_mbuf() as usize;
                assert_ne!(rte, 0, "payload in a heap buffer: copied");
                // Same rte_mbuf, and the payload lies inside the frame the PMD put there.
                let (p, len) = (bytes.as_ptr() as usize, bytes.len());
                match seen.get(&rte) {
                    Some(&(fp, flen)) if p >= fp && p + len <= fp + flen => {}
                    _ => foreign += 1,
                }
            }
            skbs += 1;
            for s in skb.segments() {
                got.extend_from_slice(s);
            }
        }
        if tcp_state(&mut stack, h).unwrap() == TcpState::CloseWait {
            tcp_close(&mut stack, h).unwrap();
            closed = true;
        }
    }
    // Keep polling so our FIN goes out and nc (which waits for it) exits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        stack.poll();
        if let Some(st) = nc.try_wait().expect("nc") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = nc.kill();
            break nc.wait().expect("nc");
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    assert!(st.success(), "nc failed");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(closed, "peer never finished; got {} bytes", got.len());
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "payload differs");
    assert!(skbs > 10, "{skbs} skbs");
    assert_eq!(foreign, 0, "buffers the PMD did not deliver reached the application");
    tcp_close(&mut stack, listener).unwrap();

    // Clear errors for ports and queues the device does not have.
    let e = DpdkDev::open(
        &DpdkConfig {
            port: 1,
            nb_queues: 64,
            ..Default::default()
        },
        &pool,
    )
    .err()
    .expect("64 queues on net_tap");
    assert!(e.to_string().contains("supports at most"), "{e}");
    let e = DpdkDev::open(
        &DpdkConfig {
            port: 7,
            ..Default::default()
        },
        &pool,
    )
    .err()
    .expect("port 7 does not exist");
    assert!(e.to_string().contains("port 7 does not exist"), "{e}");

    // Transmit checksums: port 0 (the stack's, offload on) and port 1 (offload off).
    let mut soft = DpdkDev::open(
        &DpdkConfig {
            port: 1,
            // Two queue pairs, as two stack cores would use.
            nb_queues: 2,
            tx_csum_offload: false,
            ..Default::default()
        },
        &pool,
    )
    .expect("port 1");
    assert_eq!(soft.nb_queues(), 2);
    sh("ip addr add 10.200.66.1/24 dev zctap1 && ip link set zctap1 up");
    let extra = |d: &dyn NetDevice, k: &str| d.extra_stats().into_iter().find(|(n, _)| n == k).map(|(_, v)| v);
    // The TCP transfer above already went through the offload (TCP uses CHECKSUM_PARTIAL).
    let tcp_offloaded = extra(&*stack.devs[0].dev, "dpdk.tx_csum_offload").unwrap_or(0);
    assert!(tcp_offloaded > 0, "TCP segments used the tx checksum offload");
    let offloaded = send_partial_udp(
        &mut stack,
        None,
        "zctap0",
        [10, 200, 65, 2],
        [10, 200, 65, 1],
        b"offloaded",
    );
    assert_eq!(
        offloaded.trim(),
        "offloaded",
        "kernel did not accept the offloaded datagram"
    );
    let software = send_partial_udp(
        &mut stack,
        Some(&mut soft),
        "zctap1",
        [10, 200, 66, 2],
        [10, 200, 66, 1],
        b"software",
    );
    assert_eq!(
        software.trim(),
        "software",
        "kernel did not accept the software-checksummed datagram"
    );
    assert_eq!(
        extra(&*stack.devs[0].dev, "dpdk.tx_csum_offload"),
        Some(tcp_offloaded + 1)
    );
    assert_eq!(extra(&soft, "dpdk.tx_csum_sw"), Some(1));
    assert_eq!(extra(&soft, "dpdk.tx_csum_offload"), Some(0));
    drop(soft);

    // Let the last ACKs and the FIN exchange finish, then every buffer must be back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (pool.in_use() != 0 || pool.rte_in_use() != rte_start) {
        stack.poll();
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!(
        "zero-copy: {skbs} skbs, {} rx mbufs recorded; blink in use {}, DPDK in use {} (start {rte_start})",
        seen.lock().unwrap().len(),
        pool.in_use(),
        pool.rte_in_use()
    );
    assert_eq!(stack.pool_in_use(), 0, "blink still holds mbufs");
    assert_eq!(
        pool.rte_in_use(),
        rte_start,
        "DPDK pool in-use count did not return to its start"
    );
}

/// Send one UDP datagram marked CHECKSUM_PARTIAL (its checksum field holds only the
/// pseudo-header sum, as Linux and DPDK expect) to a kernel socket at `dst`:5555 through
/// `dev` (or the stack's port 0), and return what the kernel socket received ("" if the
/// kernel dropped it, e.g. for a bad checksum).
fn send_partial_udp(
    stack: &mut Stack,
    dev: Option<&mut DpdkDev>,
    iface: &str,
    src: [u8; 4],
    dst: [u8; 4],
    payload: &[u8],
) -> String {
    let dst_s = format!("{}.{}.{}.{}", dst[0], dst[1], dst[2], dst[3]);
    let py = format!(
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('{dst_s}',5555));\
         s.settimeout(10);print(s.recv(2048).decode())"
    );
    let listener = Command::new("python3")
        .args(["-c", &py])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    // Give the socket a moment to bind (a lost race shows as an empty result, not a hang).
    std::thread::sleep(Duration::from_millis(500));
    // `ip` runs in this thread's namespace (/sys still shows the one it was mounted in).
    let link = Command::new("ip")
        .args(["-o", "link", "show", iface])
        .output()
        .expect("ip");
    let link = String::from_utf8_lossy(&link.stdout).into_owned();
    let kmac = link
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next());
    let kmac: Vec<u8> = kmac
        .unwrap_or_else(|| panic!("no MAC in {link}"))
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let smac = match &dev {
        Some(d) => d.mac(),
        None => stack.devs[0].dev.mac(),
    };
    let udp_len = 8 + payload.len();
    let mut f = Vec::new();
    f.extend_from_slice(&kmac);
    f.extend_from_slice(&smac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = (20 + udp_len) as u16;
    let mut ip = [0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = ip_fast_csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    // The pseudo-header sum, not complemented: a receiver would reject it as a checksum.
    let phdr = !csum_fold(pseudo_header_ipv4(src, dst, 17, udp_len as u16));
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5555u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&phdr.to_be_bytes());
    f.extend_from_slice(payload);
    let mut skb = SkBuff::from_slice(&mut stack.core.cache, &f).expect("skb");
    skb.ip_summed = IpSummed::Partial;
    // Like TCP's retransmit queue, keep a clone sharing the header: a software checksum must
    // not be written into the shared buffer.
    let keep = skb.skb_clone(&mut stack.core.cache).expect("clone");
    let mut burst = Burst::new();
    burst.push(skb);
    let sent = match dev {
        // The second port's datagram leaves by its second queue pair.
        Some(d) => d.tx_burst(1, &mut burst),
        None => stack.devs[0].dev.tx_burst(0, &mut burst),
    };
    assert_eq!(sent, 1, "tx_burst took the datagram");
    assert_eq!(
        &keep.data()[40..42],
        &phdr.to_be_bytes(),
        "the clone's header was written"
    );
    drop(keep);
    let out = listener.wait_with_output().expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
