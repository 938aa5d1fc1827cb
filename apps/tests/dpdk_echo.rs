//! `blink echo --dev dpdk` on DPDK's net_tap vdev against the Linux kernel, in a network
//! namespace the test creates: EAL runs inside it (`ip netns exec`), so the vdev's kernel-side
//! interface appears there, and the test gives it an address once blink is up.
//! No hugepages: EAL runs with `--no-huge -m 512`. Compiled only with the `dpdk` feature.
#![cfg(feature = "dpdk")]

mod common;

use std::time::Duration;

use common::*;

/// A bare namespace (no TAP of its own: DPDK's net_tap creates `iface`).
fn bare_netns(tag: &str, iface: &str) -> Netns {
    let name = format!("blink-{tag}-{}", std::process::id());
    let _ = run(&["ip", "netns", "del", &name]);
    run_ok(&["ip", "netns", "add", &name]);
    let ns = Netns {
        name,
        tap: iface.to_string(),
    };
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    ns
}

fn eal(tag: &str, iface: &str) -> String {
    format!(
        "--no-huge -m 512 --no-pci --vdev=net_tap0,iface={iface} -l 0 --file-prefix=blink-{tag}-{} --no-telemetry",
        std::process::id()
    )
}

/// Start `blink echo --tcp 7 --dev dpdk` and bring up the kernel side at 10.200.NET.1/24.
fn start_echo(tag: &str, net: u8, extra: &[&str]) -> (Netns, BlinkProc) {
    let iface = format!("dtap{net}");
    let ns = bare_netns(tag, &iface);
    let ip = format!("10.200.{net}.2/24");
    let eal = eal(tag, &iface);
    let mut args = vec![
        "echo",
        "--dev",
        "dpdk",
        "--eal",
        &eal,
        "--ip",
        &ip,
        "--tcp",
        "7",
        "--duration",
        "600",
        "--stats",
        "0.5",
    ];
    args.extend_from_slice(extra);
    let mut b = BlinkProc::spawn(&ns, &args);
    b.wait_line("tcp echo 7", Duration::from_secs(60));
    ns.exec_ok(&["ip", "addr", "add", &format!("10.200.{net}.1/24"), "dev", &iface]);
    ns.exec_ok(&["ip", "link", "set", &iface, "up"]);
    (ns, b)
}

/// A counter from blink's end-of-run report (`  name value` lines; zero ones are omitted).
fn counter(report: &str, name: &str) -> u64 {
    assert_counter_name(name);
    report
        .lines()
        .filter_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

fn sha256_of(ns: &Netns, path: &str) -> String {
    ns.exec_ok(&["sha256sum", path])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn dpdk_net_tap_answers_ping_echoes_udp_and_100_mib() {
    if !require_root("dpdk_net_tap_answers_ping_echoes_udp_and_100_mib") {
        return;
    }
    let (ns, b) = start_echo("dpdkecho", 61, &["--udp", "7"]);
    let ping = ns.exec(&["ping", "-c", "20", "-i", "0.05", "-W", "2", "10.200.61.2"]);
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert!(ping.status.success(), "ping failed:\n{ping_out}");
    assert!(ping_out.contains(" 0% packet loss"), "{ping_out}");
    // UDP echo of every datagram size 1..=1472 through the PMD.
    let out = ns.exec_ok(&["python3", "-c", UDP_SIZES_PY, "10.200.61.2"]);
    assert!(out.contains("UDP_OK 1472"), "{out}");

    let dir = std::env::temp_dir().join(format!("blink-dpdkecho-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in"), dir.join("out"));
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    ns.exec_ok(&["sh", "-c", &format!("head -c {} /dev/urandom > {i}", 100 << 20)]);
    let t0 = std::time::Instant::now();
    let r = ns.exec(&["sh", "-c", &format!("timeout 300 nc -N 10.200.61.2 7 < {i} > {o}")]);
    let secs = t0.elapsed().as_secs_f64();
    let (code, stdout) = b.stop();
    assert!(
        r.status.success(),
        "nc failed: {}\nblink:\n{stdout}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(code, Some(0), "{stdout}");
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    let (hi, ho) = (sha256_of(&ns, i), sha256_of(&ns, o));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(size, 100 << 20, "echoed size; blink:\n{stdout}");
    assert_eq!(hi, ho, "sha256 of the echo differs; blink:\n{stdout}");
    eprintln!("dpdk net_tap: 100 MiB echoed in {secs:.2} s");
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");
    // Every frame went through the DPDK port: the PMD's counters saw the transfer.
    assert!(counter(&stdout, "dpdk.ipackets") > 50_000, "{stdout}");
    assert!(counter(&stdout, "dpdk.opackets") > 50_000, "{stdout}");
    // The periodic --stats line carries the port's drop counters.
    let line = stdout.lines().find(|l| l.contains("missed") && l.contains("nombuf"));
    assert!(line.is_some(), "no --stats line with port counters:\n{stdout}");
}

/// net_tap advertises IPv4/TCP/UDP checksum offloads: blink enables them, marks the frames the
/// PMD verified as CHECKSUM_UNNECESSARY, and the kernel accepts what blink sends (the transfer
/// is intact, the kernel's TCP drops segments with bad checksums).
#[test]
fn dpdk_net_tap_checksum_offloads_are_used() {
    if !require_root("dpdk_net_tap_checksum_offloads_are_used") {
        return;
    }
    let (ns, b) = start_echo("dpdkcsum", 62, &[]);
    let dir = std::env::temp_dir().join(format!("blink-dpdkcsum-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in"), dir.join("out"));
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    ns.exec_ok(&["sh", "-c", &format!("head -c {} /dev/urandom > {i}", 4 << 20)]);
    let r = ns.exec(&["sh", "-c", &format!("timeout 120 nc -N 10.200.62.2 7 < {i} > {o}")]);
    let (code, stdout) = b.stop();
    assert!(r.status.success(), "nc failed; blink:\n{stdout}");
    assert_eq!(code, Some(0), "{stdout}");
    let (hi, ho) = (sha256_of(&ns, i), sha256_of(&ns, o));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(hi, ho, "{stdout}");

    const RX_CKSUM: u64 = (1 << 1) | (1 << 2) | (1 << 3); // RTE_ETH_RX_OFFLOAD_{IPV4,UDP,TCP}_CKSUM
    const TX_CKSUM: u64 = (1 << 1) | (1 << 2) | (1 << 3); // RTE_ETH_TX_OFFLOAD_{IPV4,UDP,TCP}_CKSUM
    const MULTI_SEGS: u64 = 1 << 15; // RTE_ETH_TX_OFFLOAD_MULTI_SEGS
    let (rx_capa, tx_capa) = (
        counter(&stdout, "dpdk.offload.rx_capa"),
        counter(&stdout, "dpdk.offload.tx_capa"),
    );
    let (rx_on, tx_on) = (
        counter(&stdout, "dpdk.offload.rx_enabled"),
        counter(&stdout, "dpdk.offload.tx_enabled"),
    );
    eprintln!("net_tap advertised rx {rx_capa:#x} tx {tx_capa:#x}; blink enabled rx {rx_on:#x} tx {tx_on:#x}");
    assert_eq!(
        rx_capa & RX_CKSUM,
        RX_CKSUM,
        "net_tap advertises rx checksum offloads\n{stdout}"
    );
    assert_eq!(tx_capa & (TX_CKSUM | MULTI_SEGS), TX_CKSUM | MULTI_SEGS, "{stdout}");
    assert_eq!(rx_on & RX_CKSUM, RX_CKSUM, "blink enabled them\n{stdout}");
    assert_eq!(tx_on & (TX_CKSUM | MULTI_SEGS), TX_CKSUM | MULTI_SEGS, "{stdout}");
    // The PMD verified the kernel's segments and blink skipped its own verification for them.
    let good = counter(&stdout, "dpdk.rx_csum_good");
    assert!(good > 1000, "rx frames marked good by the PMD: {good}\n{stdout}");
    assert_eq!(counter(&stdout, "dpdk.rx_csum_bad"), 0, "{stdout}");
    // TCP hands its checksums to the NIC (CHECKSUM_PARTIAL): the echoed 4 MiB is ~2,900
    // segments, all offloaded, none filled in software -- and the kernel accepted them (the
    // sha256 above matched).
    let off = counter(&stdout, "dpdk.tx_csum_offload");
    assert!(off > 2_000, "TCP segments with tx checksum offload: {off}\n{stdout}");
    assert_eq!(counter(&stdout, "dpdk.tx_csum_sw"), 0, "{stdout}");
    // Echoed data went out as multi-segment packets (header mbuf + payload mbufs).
    assert!(
        counter(&stdout, "dpdk.tx_segs") > counter(&stdout, "dpdk.opackets"),
        "{stdout}"
    );
    assert_eq!(counter(&stdout, "dpdk.tx_copied"), 0, "{stdout}");
    // Link up, and RSS configured (with the stack's Toeplitz key) for the IPv4 flow types
    // net_tap offers; net_tap does not deliver a per-packet hash (no RSS_HASH rx offload).
    assert_eq!(counter(&stdout, "dpdk.link_up"), 1, "{stdout}");
    assert_ne!(counter(&stdout, "dpdk.rss_hf"), 0, "{stdout}");
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");
}

/// Bad EAL arguments: exit code 2 with DPDK's own complaint.
#[test]
fn dpdk_bad_eal_args_exit_2() {
    let out = std::process::Command::new(blink())
        .args([
            "echo",
            "--dev",
            "dpdk",
            "--eal",
            "--no-huge --this-is-not-an-eal-option",
            "--ip",
            "10.200.63.2/24",
            "--tcp",
            "7",
        ])
        .output()
        .expect("run blink");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("EAL rejected the arguments"), "{err}");
}

/// No port (no --vdev, no PCI): the message says how to bind a NIC.
#[test]
fn dpdk_no_ports_names_devbind() {
    if !require_root("dpdk_no_ports_names_devbind") {
        return;
    }
    let eal = format!(
        "--no-huge -m 512 --no-pci -l 0 --file-prefix=blink-noport-{} --no-telemetry",
        std::process::id()
    );
    let out = std::process::Command::new(blink())
        .args([
            "echo",
            "--dev",
            "dpdk",
            "--eal",
            &eal,
            "--ip",
            "10.200.64.2/24",
            "--tcp",
            "7",
        ])
        .output()
        .expect("run blink");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("dpdk-devbind.py"), "{err}");
}

/// EAL without `--no-huge` on a machine without hugepages: exit 2, and the message says how to
/// run without them or reserve them.
#[test]
fn dpdk_no_hugepages_suggests_no_huge() {
    if !require_root("dpdk_no_hugepages_suggests_no_huge") {
        return;
    }
    let reserved = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    // Not a missing tool, so not tied to BLINK_REQUIRE_ROOT: what this test checks (EAL's
    // failure to find hugepages) cannot happen on a machine that has them reserved, and
    // reserving or releasing them for a test would change the machine for everything else
    // running on it. The other DPDK tests pass --no-huge and run either way; CI's machine has
    // none reserved, so there this test runs. It says so when it does not.
    if reserved > 0 {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "dpdk_no_hugepages_suggests_no_huge: SKIPPED, not applicable: this machine has {reserved} hugepages reserved, so EAL finds them"
        );
        return;
    }
    let eal = format!(
        "--no-pci -l 0 --file-prefix=blink-nohuge-{} --no-telemetry",
        std::process::id()
    );
    let out = std::process::Command::new(blink())
        .args([
            "echo",
            "--dev",
            "dpdk",
            "--eal",
            &eal,
            "--ip",
            "10.200.67.2/24",
            "--tcp",
            "7",
        ])
        .output()
        .expect("run blink");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--no-huge -m 512"), "{err}");
}

/// Corruption after the NIC's checksum check (the --impair wrapper around the DPDK device):
/// the damaged frames lose the NIC's "verified" mark, software catches and counts them, and
/// TCP recovers the transfer intact.
#[test]
fn dpdk_net_tap_impaired_transfer_is_intact() {
    if !require_root("dpdk_net_tap_impaired_transfer_is_intact") {
        return;
    }
    let impair = "loss=0.01,reorder=0.01,dup=0.01,corrupt=0.01,seed=9";
    let (ns, b) = start_echo("dpdkimp", 68, &["--impair", impair]);
    let dir = std::env::temp_dir().join(format!("blink-dpdkimp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in"), dir.join("out"));
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    ns.exec_ok(&["sh", "-c", &format!("head -c {} /dev/urandom > {i}", 8 << 20)]);
    let r = ns.exec(&["sh", "-c", &format!("timeout 300 nc -N 10.200.68.2 7 < {i} > {o}")]);
    let (code, stdout) = b.stop();
    assert!(r.status.success(), "nc failed; blink:\n{stdout}");
    assert_eq!(code, Some(0), "{stdout}");
    let (hi, ho) = (sha256_of(&ns, i), sha256_of(&ns, o));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(hi, ho, "{stdout}");
    assert!(counter(&stdout, "impair.corrupted") > 0, "{stdout}");
    let caught = counter(&stdout, "Tcp.InCsumErrors") + counter(&stdout, "Ip.InCsumErrors");
    assert!(
        caught > 0,
        "corrupted frames must fail software verification:\n{stdout}"
    );
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");
}

/// Two cores on two queue pairs of net_tap (`-l 0-1`, `--cores 2`, rss mode): 100 MiB over 8
/// parallel TCP connections (8 x 12.5 MiB, nc), each echoed intact (sha256). Whether 8 flows
/// land on both queues depends on the hash, so the per-core split is printed, not asserted;
/// what is certain: 8 connections in total, none on the wrong core, every buffer back.
#[test]
fn dpdk_net_tap_two_queues_two_cores_echo_100_mib_over_8_connections() {
    if !require_root("dpdk_net_tap_two_queues_two_cores_echo_100_mib_over_8_connections") {
        return;
    }
    let net = 69;
    let iface = format!("dtap{net}");
    let ns = bare_netns("dpdkmq", &iface);
    let eal = format!(
        "--no-huge -m 512 --no-pci --vdev=net_tap0,iface={iface} -l 0-1 --file-prefix=blink-dpdkmq-{} --no-telemetry",
        std::process::id()
    );
    let ip = format!("10.200.{net}.2/24");
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "echo",
            "--dev",
            "dpdk",
            "--eal",
            &eal,
            "--ip",
            &ip,
            "--tcp",
            "7",
            "--cores",
            "2",
            "--duration",
            "600",
        ],
    );
    // EAL pins the main thread to lcore 0; blink restores the process's CPU mask after
    // rte_eal_init so its two cores can run (and be pinned) on CPUs 0 and 1.
    let banner = b.wait_line("tcp echo 7", Duration::from_secs(60));
    assert!(banner.contains("on 2 cores (rss mode)"), "{banner}");
    ns.exec_ok(&["ip", "addr", "add", &format!("10.200.{net}.1/24"), "dev", &iface]);
    ns.exec_ok(&["ip", "link", "set", &iface, "up"]);

    const CONNS: usize = 8;
    const EACH: usize = 100 << 20 >> 3; // 12.5 MiB
    let dir = std::env::temp_dir().join(format!("blink-dpdkmq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let mut script = String::new();
    for k in 0..CONNS {
        script.push_str(&format!(
            "( timeout 300 nc -N 10.200.{net}.2 7 < {d}/in{k} > {d}/out{k}; echo $? > {d}/rc{k} ) &\n"
        ));
    }
    script.push_str("wait\n");
    for k in 0..CONNS {
        ns.exec_ok(&["sh", "-c", &format!("head -c {EACH} /dev/urandom > {d}/in{k}")]);
    }
    let t0 = std::time::Instant::now();
    ns.exec_ok(&["sh", "-c", &script]);
    let secs = t0.elapsed().as_secs_f64();
    let (code, stdout) = b.stop();
    let mut bad = Vec::new();
    for k in 0..CONNS {
        let rc = std::fs::read_to_string(dir.join(format!("rc{k}"))).unwrap_or_default();
        let size = std::fs::metadata(dir.join(format!("out{k}")))
            .map(|m| m.len())
            .unwrap_or(0);
        let (hi, ho) = (
            sha256_of(&ns, &format!("{d}/in{k}")),
            sha256_of(&ns, &format!("{d}/out{k}")),
        );
        if rc.trim() != "0" || size != EACH as u64 || hi != ho {
            bad.push(format!(
                "connection {k}: nc exit {:?}, {size} of {EACH} bytes back, sha256 {}",
                rc.trim(),
                if hi == ho { "equal" } else { "differs" }
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "dpdk net_tap 2 queues: 100 MiB over {CONNS} connections echoed in {secs:.2} s ({:.0} Mbit/s each way)",
        100.0 * 8.0 * 1.048576 / secs
    );
    for l in per_core_lines(&stdout) {
        eprintln!("  {l}");
    }
    assert!(bad.is_empty(), "{}\nblink:\n{stdout}", bad.join("\n"));
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "tcp: {CONNS} connections served, {} bytes received",
            100 << 20
        )),
        "{stdout}"
    );
    let opens: Vec<u64> = (0..2).map(|c| core_counter(&stdout, c, "Tcp.PassiveOpens")).collect();
    eprintln!("Tcp.PassiveOpens per core: {opens:?}");
    assert_eq!(opens.iter().sum::<u64>(), CONNS as u64, "{stdout}");
    assert_eq!(report_total(&stdout, "Tcp.PassiveOpens"), CONNS as u64, "{stdout}");
    assert_eq!(report_total(&stdout, "Softnet.WrongCore"), 0, "{stdout}");
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");
}
