//! Several DPDK ports (root, `--features dpdk`): two `net_tap` vdevs are ports 0 and 1, each
//! given its own network by a `--config` line; `blink echo --dev dpdk` echoes 1 MiB on each
//! address, each answered out of the port it came in on, with per-port counters in
//! `blink link`.

#![cfg(feature = "dpdk")]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn two_dpdk_ports_each_serve_their_own_network() {
    if !require_root("two_dpdk_ports_each_serve_their_own_network") {
        return;
    }
    let (a, b) = (74, 75);
    let name = format!("blink-dports-{}", std::process::id());
    let _ = run(&["ip", "netns", "del", &name]);
    run_ok(&["ip", "netns", "add", &name]);
    // The net_tap interfaces appear in blink's namespace; the test's kernel uses both.
    let ns = Netns {
        name,
        tap: "dtp0".to_string(),
    };
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let cfg = std::env::temp_dir().join(format!("blink-dports-{}.conf", std::process::id()));
    std::fs::write(
        &cfg,
        format!("0 10.200.{a}.2 255.255.255.0   # net_tap0\n1 10.200.{b}.2 255.255.255.0   # net_tap1\n"),
    )
    .unwrap();
    let eal = format!(
        "--no-huge -m 512 --no-pci --vdev=net_tap0,iface=dtp0 --vdev=net_tap1,iface=dtp1 -l 0 \
         --file-prefix=blink-dports-{} --no-telemetry",
        std::process::id()
    );
    let ctl = std::env::temp_dir().join(format!("blink-dports-{}.sock", std::process::id()));
    let mut proc = BlinkProc::spawn(
        &ns,
        &[
            "echo",
            "--dev",
            "dpdk",
            "--eal",
            &eal,
            "--config",
            cfg.to_str().unwrap(),
            "--tcp",
            "7",
            "--duration",
            "120",
            "--ctl",
            ctl.to_str().unwrap(),
        ],
    );
    proc.wait_line("tcp echo 7", Duration::from_secs(60));
    for (dev, net) in [("dtp0", a), ("dtp1", b)] {
        ns.exec_ok(&["ip", "addr", "add", &format!("10.200.{net}.1/24"), "dev", dev]);
        ns.exec_ok(&["ip", "link", "set", dev, "up"]);
    }
    for net in [a, b] {
        let out = ns.exec_ok(&[
            "python3",
            "-c",
            common::ECHO_CLIENT_PY,
            &format!("10.200.{net}.2"),
            "7",
            "1048576",
        ]);
        assert_eq!(out.trim(), "OK 1048576", "port of 10.200.{net}.0/24");
    }
    // Per-port counters: each port carried its own network's megabyte (both ways).
    let link = run_ok(&[blink(), "link", "--ctl", ctl.to_str().unwrap()]);
    let rx_bytes = |dev: &str| -> u64 {
        let l = link
            .lines()
            .find(|l| l.contains(&format!("({dev}")))
            .unwrap_or_else(|| panic!("{dev}: {link}"));
        l.split(" pkts ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(rx_bytes("dpdk0") > 1_000_000, "{link}");
    assert!(rx_bytes("dpdk1") > 1_000_000, "{link}");
    assert!(link.contains(&format!("inet 10.200.{a}.2/24")), "{link}");
    assert!(link.contains(&format!("inet 10.200.{b}.2/24")), "{link}");
    let (code, out) = proc.stop();
    let _ = std::fs::remove_file(&cfg);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("mbufs in use after shutdown: 0"), "{out}");
}
