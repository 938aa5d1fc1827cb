//! The exception path through real TAPs (root): `blink httpd` serves port 80 in namespace A,
//! and the kernel of a second namespace B, behind blink's exception TAP (moved there and given
//! blink's address; blink gave it its MAC), serves a TCP echo. A client in A reaches both on
//! one address, both transfers arrive intact, ping is answered once, and `blink stat` counts
//! each direction. Once with a port rule (`tcp:22`), once with `unclaimed`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

/// A bare network namespace (loopback up), deleted on drop.
struct BareNs {
    name: String,
}

impl BareNs {
    fn new(tag: &str) -> BareNs {
        let name = format!("blink-{tag}-{}", std::process::id());
        let _ = run(&["ip", "netns", "del", &name]);
        run_ok(&["ip", "netns", "add", &name]);
        run_ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        BareNs { name }
    }
}

impl Drop for BareNs {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("blink-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sha256_file(path: &Path) -> String {
    let out = run_ok(&["sha256sum", path.to_str().unwrap()]);
    out.split_whitespace().next().unwrap_or_default().to_string()
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

/// A child killed and reaped on drop (a failed assertion must not leave it running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the kernel's echo server in `ns` on `port` and wait until it listens.
fn kernel_echo_server(ns: &str, port: u16) -> Reaped {
    let mut c = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "python3",
            "-u",
            "-c",
            common::ECHO_SERVER_PY,
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY");
    Reaped(c)
}

/// How blink is told about the exception path: options, or a config file's lines.
enum Setup<'a> {
    Options {
        rules: &'a str,
        kernel_if: Option<&'a str>,
    },
    /// The file's text, whose `kernel-if` (if any) is given too; `--cores N` on a multi-queue TAP.
    Config {
        text: String,
        kernel_if: Option<&'a str>,
        cores: u16,
    },
}

/// What blink's instruments said after both transfers and the ping.
struct Seen {
    stat: String,
    neigh: String,
    route: String,
}

/// One run: blink httpd on 80 in A, sharing with the kernel of B behind the exception TAP,
/// which echoes on `kernel_port`.
fn shared_address(tag: &str, net: u8, setup: Setup, kernel_port: u16) -> Seen {
    let (kernel_if, cores) = match &setup {
        Setup::Options { kernel_if, .. } => (*kernel_if, 1),
        Setup::Config { kernel_if, cores, .. } => (*kernel_if, *cores),
    };
    let a = if cores > 1 {
        Netns::new_multi_queue(tag, &format!("10.200.{net}.1/24"))
    } else {
        Netns::new(tag, &format!("10.200.{net}.1/24"))
    };
    let b = BareNs::new(&format!("{tag}k"));
    let dir = temp_dir(tag);
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    run_ok(&[
        "sh",
        "-c",
        &format!("head -c 2000000 /dev/urandom > {}", root.join("file.bin").display()),
    ]);
    let ctl = dir.join("ctl.sock");
    let conf = dir.join("blink.conf");
    let (tap, ip) = (format!("tap:{}", a.tap), format!("10.200.{net}.2/24"));
    let cores_s = cores.to_string();
    let mut args = vec![
        "httpd",
        "--dev",
        &tap,
        "--port",
        "80",
        "--root",
        root.to_str().unwrap(),
        "--duration",
        "120",
        "--ctl",
        ctl.to_str().unwrap(),
        "--cores",
        &cores_s,
    ];
    match &setup {
        Setup::Options { rules, kernel_if } => {
            // A smaller MTU than the TAP's: the kernel's side must take blink's.
            // --kernel-addr: blink gives its TAP the address too (checked before the move).
            args.extend_from_slice(&["--ip", &ip, "--mtu", "1400", "--to-kernel", rules, "--kernel-addr"]);
            if let Some(k) = kernel_if {
                args.extend_from_slice(&["--kernel-if", k]);
            }
        }
        Setup::Config { text, .. } => {
            std::fs::write(&conf, text).unwrap();
            args.extend_from_slice(&["--config", conf.to_str().unwrap()]);
        }
    }
    let kif = kernel_if.unwrap_or("blink-kni0");
    let mut blink_proc = BlinkProc::spawn(&a, &args);
    blink_proc.wait_line("blink httpd", Duration::from_secs(10));
    // The kernel's share: blink's exception TAP moves to B and takes blink's address; its
    // MAC is blink's already.
    let blink_mac = a.exec_ok(&["cat", &format!("/sys/class/net/{kif}/address")]);
    // blink brought its TAP up (IFF_UP), and addressed it when told to.
    let flags = a.exec_ok(&["cat", &format!("/sys/class/net/{kif}/flags")]);
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "{kif} is up: flags {flags:#x}");
    let addrs = a.exec_ok(&["ip", "-4", "-o", "addr", "show", "dev", kif]);
    let kernel_addr = matches!(setup, Setup::Options { .. });
    assert_eq!(addrs.contains(&format!("inet {ip}")), kernel_addr, "{addrs}");
    run_ok(&["ip", "-n", &a.name, "link", "set", kif, "netns", &b.name]);
    run_ok(&["ip", "-n", &b.name, "addr", "add", &ip, "dev", kif]);
    run_ok(&["ip", "-n", &b.name, "link", "set", kif, "up"]);
    let mac_in_b = run_ok(&[
        "ip",
        "netns",
        "exec",
        &b.name,
        "cat",
        &format!("/sys/class/net/{kif}/address"),
    ]);
    assert_eq!(blink_mac.trim(), mac_in_b.trim(), "one MAC for both");
    let mtu_in_b = run_ok(&[
        "ip",
        "netns",
        "exec",
        &b.name,
        "cat",
        &format!("/sys/class/net/{kif}/mtu"),
    ]);
    let want_mtu = if matches!(setup, Setup::Options { .. }) {
        "1400"
    } else {
        "1500"
    };
    assert_eq!(mtu_in_b.trim(), want_mtu, "the kernel's side has blink's MTU");
    let server = kernel_echo_server(&b.name, kernel_port);
    let addr = format!("10.200.{net}.2");

    // blink's share: HTTP on port 80, 2 MB checked by hash.
    let got = dir.join("got.bin");
    a.exec_ok(&[
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "30",
        "-o",
        got.to_str().unwrap(),
        &format!("http://{addr}/file.bin"),
    ]);
    assert_eq!(
        sha256_file(&got),
        sha256_file(&root.join("file.bin")),
        "HTTP body differs"
    );
    // The kernel's share: 1 MiB echoed by B's kernel, on the same address.
    let echo = a.exec_ok(&[
        "python3",
        "-c",
        common::ECHO_CLIENT_PY,
        &addr,
        &kernel_port.to_string(),
        "1048576",
    ]);
    assert_eq!(echo.trim(), "OK 1048576", "kernel echo");
    drop(server);
    // Ping: blink answers, the kernel never sees the request, so one reply each.
    let ping = a.exec_ok(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &addr]);
    assert!(ping.contains("3 packets transmitted, 3 received"), "{ping}");
    assert!(!ping.contains("DUP"), "answered twice: {ping}");
    let ask = |what: &str| run_ok(&[blink(), what, "--ctl", ctl.to_str().unwrap()]);
    // `blink link`: the kernel's TAP, with what blink handed it and what it sent.
    let link = ask("link");
    // One line per core; the traffic may be on any core's queue.
    let klines: Vec<&str> = link
        .lines()
        .filter(|l| l.contains(&format!("({kif})")) && l.contains("kernel side of dev 0"))
        .collect();
    assert_eq!(klines.len(), cores as usize, "one kernel side per core:\n{link}");
    assert!(klines.iter().any(|l| !l.contains(" rx 0 pkts")), "{link}");
    assert!(klines.iter().any(|l| !l.contains(" tx 0 pkts")), "{link}");
    let seen = Seen {
        stat: ask("stat"),
        neigh: ask("neigh"),
        route: ask("route"),
    };
    let (code, out) = blink_proc.stop();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("mbufs in use after shutdown: 0"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    seen
}

#[test]
fn blink_and_the_kernel_share_one_address_by_port() {
    if !require_root("blink_and_the_kernel_share_one_address_by_port") {
        return;
    }
    let setup = Setup::Options {
        rules: "tcp:22",
        kernel_if: Some("bkni0"),
    };
    let stat = shared_address("exc", 61, setup, 22).stat;
    // Each direction counted; blink itself opened only the HTTP connection and never
    // answered port 22 (no RST), and it answered each ping once.
    assert!(total(&stat, "Exc", "ToKernelRule") > 100, "{stat}");
    assert!(total(&stat, "Exc", "FromKernel") > 100, "{stat}");
    assert!(
        total(&stat, "Exc", "ToKernelCopy") >= 1,
        "the kernel's ARP reply: {stat}"
    );
    assert_eq!(total(&stat, "Exc", "ToKernelUnclaimed"), 0, "{stat}");
    assert_eq!(total(&stat, "Tcp", "PassiveOpens"), 1, "{stat}");
    assert_eq!(total(&stat, "Tcp", "OutRsts"), 0, "{stat}");
    assert_eq!(total(&stat, "Icmp", "OutEchoReps"), 3, "{stat}");
}

/// `unclaimed`, set in the config file with static neighbour and route lines, on two cores
/// (each with its own queue of both TAPs), with the default kernel interface name.
#[test]
fn ports_blink_does_not_serve_reach_the_kernel_with_unclaimed() {
    if !require_root("ports_blink_does_not_serve_reach_the_kernel_with_unclaimed") {
        return;
    }
    let text = "# blink's address, a static neighbour and route, and the kernel's share\n\
                0 10.200.62.2 255.255.255.0\n\
                arp 10.200.62.9 02:00:00:00:00:09\n\
                route 10.201.0.0/16 via 10.200.62.1\n\
                to-kernel unclaimed\n"
        .to_string();
    let cores = if blink_glue::runtime::allowed_cpus().len() >= 2 {
        2
    } else {
        1
    };
    let setup = Setup::Config {
        text,
        kernel_if: None,
        cores,
    };
    let seen = shared_address("excu", 62, setup, 5555);
    let stat = &seen.stat;
    assert!(total(stat, "Exc", "ToKernelUnclaimed") > 100, "{stat}");
    assert_eq!(total(stat, "Exc", "ToKernelRule"), 0, "{stat}");
    assert!(total(stat, "Exc", "FromKernel") > 100, "{stat}");
    assert_eq!(total(stat, "Tcp", "PassiveOpens"), 1, "{stat}");
    assert_eq!(total(stat, "Tcp", "OutRsts"), 0, "no RST for the kernel's port: {stat}");
    assert_eq!(total(stat, "Icmp", "OutEchoReps"), 3, "{stat}");
    assert_eq!(total(stat, "Softnet", "WrongCore"), 0, "{stat}");
    // The config file's static entries are in place.
    assert!(
        seen.neigh.contains("10.200.62.9")
            && seen.neigh.contains("02:00:00:00:00:09")
            && seen.neigh.contains("PERMANENT"),
        "{}",
        seen.neigh
    );
    assert!(seen.route.contains("10.201.0.0/16 via 10.200.62.1"), "{}", seen.route);
}
