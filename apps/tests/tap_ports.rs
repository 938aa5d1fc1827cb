//! Several ports from the `--config` file: `blink httpd --dev tap:btap0,tap:btap1` with one
//! `<port> <ip> <mask>` line per port serves each port's network from its own namespace, each
//! answered out of the port it came in on, with per-port counters in `blink link`; and the
//! exception path with one kernel TAP per port, each getting its own port's frames.

mod common;

use std::time::Duration;

use common::*;

/// A second namespace (no devices but lo), deleted on drop.
struct PlainNs(String);

impl PlainNs {
    fn new(tag: &str) -> PlainNs {
        let name = format!("blink-{tag}-{}", std::process::id());
        let _ = run(&["ip", "netns", "del", &name]);
        run_ok(&["ip", "netns", "add", &name]);
        run_ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        PlainNs(name)
    }
}

impl Drop for PlainNs {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

/// `rx_packets` of each `"name": "..."` entry of `blink link --json`, summed over cores.
fn link_rx(json: &str, dev: &str) -> u64 {
    json.split('{')
        .filter(|e| e.contains(&format!("\"name\": \"{dev}\"")))
        .filter_map(|e| {
            let v = e.split("\"rx_packets\": ").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn two_tap_ports_each_serve_their_own_network() {
    if !require_root("two_tap_ports_each_serve_their_own_network") {
        return;
    }
    two_ports("ports", 1, (70, 71));
}

/// The same on two cores (rss): each core polls its own queue of both ports (and of both
/// kernel TAPs).
#[test]
fn two_tap_ports_on_two_cores() {
    if !require_root("two_tap_ports_on_two_cores") {
        return;
    }
    if blink_glue::runtime::allowed_cpus().len() < 2 {
        eprintln!("two_tap_ports_on_two_cores: one CPU only, the two-core run is not possible");
        return;
    }
    two_ports("portsmq", 2, (72, 73));
}

fn two_ports(tag: &str, cores: u16, (a, b): (u8, u8)) {
    // Port 0's TAP in blink's namespace; port 1's made there too (blink opens TAPs by name),
    // then moved into a namespace of its own once blink holds it.
    let (ns0, mq) = if cores > 1 {
        (
            Netns::new_multi_queue(&format!("{tag}0"), &format!("10.200.{a}.1/24")),
            &["multi_queue"][..],
        )
    } else {
        (Netns::new(&format!("{tag}0"), &format!("10.200.{a}.1/24")), &[][..])
    };
    ns0.exec_ok(&[&["ip", "tuntap", "add", "dev", "btap1", "mode", "tap"][..], mq].concat());
    let ns1 = PlainNs::new(&format!("{tag}1"));
    let cfg = std::env::temp_dir().join(format!("blink-{tag}-{}.conf", std::process::id()));
    std::fs::write(
        &cfg,
        format!("0 10.200.{a}.2 255.255.255.0   # port 0: btap0\n1 10.200.{b}.2 255.255.255.0   # port 1: btap1\n"),
    )
    .unwrap();
    let name = format!("{tag}-{}", std::process::id());
    let cores_s = cores.to_string();
    // A capture per port: port 0's at the path given, port 1's beside it.
    let pcap = std::env::temp_dir().join(format!("blink-{tag}-{}.pcap", std::process::id()));
    let pcap1 = std::env::temp_dir().join(format!("blink-{tag}-{}-port1.pcap", std::process::id()));
    let mut proc = BlinkProc::spawn(
        &ns0,
        &[
            "httpd",
            "--dev",
            "tap:btap0,tap:btap1",
            "--config",
            cfg.to_str().unwrap(),
            "--port",
            "8080",
            "--size",
            "100000",
            "--duration",
            "60",
            "--name",
            &name,
            "--cores",
            &cores_s,
            "--to-kernel",
            "tcp:22",
            "--kernel-if",
            "kx0,kx1",
            "--pcap",
            pcap.to_str().unwrap(),
        ],
    );
    proc.wait_line("blink httpd", Duration::from_secs(10));
    ns0.exec_ok(&["ip", "link", "set", "btap1", "netns", &ns1.0]);
    for args in [
        vec!["ip", "addr", "add", &*format!("10.200.{b}.1/24"), "dev", "btap1"],
        vec!["ip", "link", "set", "btap1", "up"],
    ] {
        run_ok(&[&["ip", "netns", "exec", &ns1.0][..], &args[..]].concat());
    }
    // The whole body from each namespace: port 0 from ns0, port 1 from ns1.
    let curl = |ns: &str, ip: String| {
        run_ok(&[
            "ip",
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            &format!("http://{ip}:8080/x"),
        ])
    };
    assert_eq!(curl(&ns0.name, format!("10.200.{a}.2")), "200 100000");
    assert_eq!(curl(&ns1.0, format!("10.200.{b}.2")), "200 100000");
    // Port 1's network is not reachable from port 0's namespace: each port its own network
    // (ns0 has no route to it, so this fails at once rather than by a timeout).
    let cross = run(&[
        "ip",
        "netns",
        "exec",
        &ns0.name,
        "curl",
        "-sS",
        "--max-time",
        "3",
        &format!("http://10.200.{b}.2:8080/x"),
    ]);
    assert!(!cross.status.success());

    // One kernel TAP per port, each with its port's MAC, brought up by blink.
    let text = run_ok(&[blink(), "link", &name]);
    let mac_of = |dev: &str| {
        let l = text
            .lines()
            .find(|l| l.contains(&format!("({dev})")))
            .unwrap_or_else(|| panic!("{dev}: {text}"));
        l.split(" mac ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    for (k, port) in [("kx0", "btap0"), ("kx1", "btap1")] {
        let mac = ns0.exec_ok(&["cat", &format!("/sys/class/net/{k}/address")]);
        assert_eq!(mac.trim(), mac_of(port), "{k} has {port}'s MAC");
        let flags = ns0.exec_ok(&["cat", &format!("/sys/class/net/{k}/flags")]);
        assert_eq!(
            u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap() & 1,
            1,
            "{k} up"
        );
    }
    assert_ne!(mac_of("btap0"), mac_of("btap1"));
    // Port 22 is the kernel's: SYNs from port 1's namespace go to port 1's kernel TAP only
    // (tx of blink's handle: what it wrote to the kernel).
    let to_kernel = |k: &str| -> u64 {
        let t = run_ok(&[blink(), "link", &name]);
        let lines: Vec<&str> = t.lines().filter(|l| l.contains(&format!("({k})"))).collect();
        assert_eq!(lines.len(), cores as usize, "one per core: {t}");
        lines
            .iter()
            .map(|l| {
                assert!(l.contains(&format!("kernel side of dev {}", &k[2..])), "{l}");
                l.split(" tx ")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    };
    let (k0, k1) = (to_kernel("kx0"), to_kernel("kx1"));
    let syn = format!(
        "import socket\nfor _ in range(3):\n    s = socket.socket()\n    s.settimeout(0.5)\n    try: s.connect(('10.200.{b}.2', 22))\n    except OSError: pass\n    s.close()\n"
    );
    run_ok(&["ip", "netns", "exec", &ns1.0, "python3", "-c", &syn]);
    let (d0, d1) = (to_kernel("kx0") - k0, to_kernel("kx1") - k1);
    assert!(d1 >= 3 && d0 < d1, "port 1's SYNs: kx0 +{d0}, kx1 +{d1}");

    // Per-port counters: each TAP received the requests of its own namespace.
    let link = run_ok(&[blink(), "link", &name, "--json"]);
    assert!(link_rx(&link, "btap0") > 10, "{link}");
    assert!(link_rx(&link, "btap1") > 10, "{link}");
    assert!(text.contains(&format!("inet 10.200.{a}.2/24")), "{text}");
    assert!(text.contains(&format!("inet 10.200.{b}.2/24")), "{text}");
    let (code, out) = proc.stop();
    let _ = std::fs::remove_file(&cfg);
    assert_eq!(code, Some(0), "{out}");
    // Each port's trace holds its own network's frames only.
    for (file, mine, other) in [(&pcap, a, b), (&pcap1, b, a)] {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let _ = std::fs::remove_file(file);
        let has = |net: u8| bytes.windows(3).any(|w| w == [10, 200, net]);
        assert!(bytes.len() > 24 + 16 * 10, "{}: {} bytes", file.display(), bytes.len());
        assert!(
            has(mine) && !has(other),
            "{}: frames of 10.200.{mine}/24 only",
            file.display()
        );
    }
    assert!(out.contains("mbufs in use after shutdown: 0"), "{out}");
    assert!(out.contains("btap1"), "the report shows port 1:\n{out}");
}
