//! The exception path on DPDK (root, `--features dpdk`): `blink echo --dev dpdk` on a
//! `net_tap` vdev in namespace A serves TCP echo on port 7, and the kernel of namespace B,
//! behind blink's exception TAP (given blink's address; blink gave it its MAC), echoes on
//! port 22. A client in A reaches both on one address, 1 MiB each way intact; ping is
//! answered once; `blink stat` counts each direction.

#![cfg(feature = "dpdk")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

/// A bare namespace (loopback up) whose `tap` field names an interface made later.
fn bare_netns(tag: &str, iface: &str) -> Netns {
    let name = format!("blink-{tag}-{}", std::process::id());
    let _ = run(&["ip", "netns", "del", &name]);
    run_ok(&["ip", "netns", "add", &name]);
    run_ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
    Netns {
        name,
        tap: iface.to_string(),
    }
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `Section.Name` of the `# total` tables of `blink stat`.
fn total(stat: &str, sec: &str, name: &str) -> u64 {
    let (_, t) = stat
        .split_once("# total\n")
        .unwrap_or_else(|| panic!("no total: {stat}"));
    let lines: Vec<&str> = t.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        if names.split_whitespace().next() != Some(&format!("{sec}:")) {
            continue;
        }
        let i = names
            .split_whitespace()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no {sec}.{name}: {stat}"));
        return values.split_whitespace().nth(i).unwrap().parse().unwrap();
    }
    panic!("no section {sec}: {stat}")
}

#[test]
fn dpdk_port_shared_with_the_kernel_by_port() {
    if !require_root("dpdk_port_shared_with_the_kernel_by_port") {
        return;
    }
    let net = 65;
    let iface = format!("dtap{net}");
    let a = bare_netns("dexc", &iface);
    let b = bare_netns("dexck", "dkni0");
    let ctl = std::env::temp_dir().join(format!("blink-dexc-{}.sock", std::process::id()));
    let eal = format!(
        "--no-huge -m 512 --no-pci --vdev=net_tap0,iface={iface} -l 0 --file-prefix=blink-dexc-{} --no-telemetry",
        std::process::id()
    );
    let ip = format!("10.200.{net}.2/24");
    let mut blink_proc = BlinkProc::spawn(
        &a,
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
            "--duration",
            "120",
            "--ctl",
            ctl.to_str().unwrap(),
            "--to-kernel",
            "tcp:22",
            "--kernel-if",
            "dkni0",
        ],
    );
    blink_proc.wait_line("tcp echo 7", Duration::from_secs(60));
    a.exec_ok(&["ip", "addr", "add", &format!("10.200.{net}.1/24"), "dev", &iface]);
    a.exec_ok(&["ip", "link", "set", &iface, "up"]);
    run_ok(&["ip", "-n", &a.name, "link", "set", "dkni0", "netns", &b.name]);
    run_ok(&["ip", "-n", &b.name, "addr", "add", &ip, "dev", "dkni0"]);
    run_ok(&["ip", "-n", &b.name, "link", "set", "dkni0", "up"]);
    let kni_mac = b.exec_ok(&["cat", "/sys/class/net/dkni0/address"]);
    // Blink gave the exception TAP the DPDK port's MAC, which its banner names.
    let banner = blink_proc
        .seen
        .iter()
        .find(|l| l.contains("blink echo"))
        .cloned()
        .unwrap_or_default();
    assert!(
        banner.contains(kni_mac.trim()),
        "one MAC for both: {banner} vs {kni_mac}"
    );
    let mut server = b
        .cmd(&["python3", "-u", "-c", common::ECHO_SERVER_PY, "22"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY");
    let server = Reaped(server);
    let addr = format!("10.200.{net}.2");
    for port in ["7", "22"] {
        let out = a.exec_ok(&["python3", "-c", common::ECHO_CLIENT_PY, &addr, port, "1048576"]);
        assert_eq!(out.trim(), "OK 1048576", "port {port}");
    }
    drop(server);
    let ping = a.exec_ok(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &addr]);
    assert!(ping.contains("3 packets transmitted, 3 received"), "{ping}");
    assert!(!ping.contains("DUP"), "answered twice: {ping}");
    let stat = run_ok(&[blink(), "stat", "--ctl", ctl.to_str().unwrap()]);
    assert!(total(&stat, "Exc", "ToKernelRule") > 100, "{stat}");
    assert!(total(&stat, "Exc", "FromKernel") > 100, "{stat}");
    assert_eq!(total(&stat, "Tcp", "PassiveOpens"), 1, "only port 7 is blink's: {stat}");
    assert_eq!(total(&stat, "Icmp", "OutEchoReps"), 3, "{stat}");
    let (code, out) = blink_proc.stop();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("mbufs in use after shutdown: 0"), "{out}");
}
