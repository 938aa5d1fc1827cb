//! Looking into a running blink: `blink echo --cores 2 --name N` on a TAP in a namespace the
//! test makes, the kernel holding TCP connections open to it; meanwhile `blink stat`, `blink
//! ss`, `blink neigh` and `blink link` read the live instance through its control socket
//! (JSON parsed and checked against what the kernel did), and the socket file is gone once
//! blink exits.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Open N connections to HOST:7, echo one line on each, print READY, hold them until stdin
/// closes.
const HOLD_PY: &str = r#"
import socket, sys
host, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    s = socket.create_connection((host, 7), timeout=10)
    s.sendall(b"conn %d\n" % i)
    assert s.recv(64) == b"conn %d\n" % i
    conns.append(s)
print("READY", flush=True)
sys.stdin.read()
"#;

fn field(json: &str, key: &str) -> u64 {
    let at = json
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    json[at + key.len() + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {json}"))
}

/// Wait (10 s at most) until instance `name` answers on its control socket.
fn wait_for_ctl(name: &str) {
    let t0 = std::time::Instant::now();
    while !run(&[blink(), "stat", name]).status.success() {
        let path = blink_apps::ctl::ctl_path(name).display().to_string();
        assert!(t0.elapsed() < Duration::from_secs(10), "no control socket at {path}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stat_ss_neigh_link_read_a_running_instance() {
    if !require_root("stat_ss_neigh_link_read_a_running_instance") {
        return;
    }
    let ns = Netns::new_multi_queue("ctl", "10.200.50.1/24");
    let name = format!("ctltest{}", std::process::id());
    let tap = format!("tap:{}", ns.tap);
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "echo",
            "--dev",
            &tap,
            "--ip",
            "10.200.50.2/24",
            "--tcp",
            "7",
            "--cores",
            "2",
            "--name",
            &name,
        ],
    );
    b.wait_line("answering", Duration::from_secs(10));
    let path = blink_apps::ctl::ctl_path(&name).display().to_string();
    // The control socket is up once `blink stat` gets an answer.
    wait_for_ctl(&name);
    assert!(std::path::Path::new(&path).exists(), "{path}");
    let mut hold = ns
        .cmd(&["python3", "-u", "-c", HOLD_PY, "10.200.50.2", "6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    let mut ready = String::new();
    BufReader::new(hold.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "READY");

    // Counters, live, per core and in total: the 6 connections the kernel made.
    let stat = run_ok(&[blink(), "stat", &name, "--json"]);
    let total = &stat[stat.find("\"total\": ").expect("total")..];
    assert_eq!(field(total, "PassiveOpens"), 6, "{stat}");
    assert_eq!(stat.matches("\"core\": ").count(), 2, "both cores answered: {stat}");
    let text = run_ok(&[blink(), "stat", &name]);
    assert!(
        text.contains("# core 0") && text.contains("# core 1") && text.contains("# total"),
        "{text}"
    );

    // Sockets: a listener on each core and the 6 connections, each on the core its hash picks.
    let ss = run_ok(&[blink(), "ss", &name, "--json"]);
    assert_eq!(ss.matches("\"state\": \"LISTEN\"").count(), 2, "{ss}");
    assert_eq!(ss.matches("\"state\": \"ESTAB\"").count(), 6, "{ss}");
    assert_eq!(ss.matches("\"peer\": \"10.200.50.1:").count(), 6, "{ss}");
    assert!(ss.contains("\"rtt_us\": ") && ss.contains("\"cwnd\": "), "{ss}");
    let ss_text = run_ok(&[blink(), "ss", &name]);
    assert!(ss_text.starts_with("Netid State"), "{ss_text}");
    assert_eq!(ss_text.lines().filter(|l| l.contains("ESTAB")).count(), 6, "{ss_text}");

    // The kernel's side of the TAP, learned by ARP and known to both cores.
    let neigh = run_ok(&[blink(), "neigh", &name]);
    assert!(
        neigh.contains("10.200.50.1") && neigh.contains(&ns.tap_mac()),
        "{neigh}"
    );
    assert!(neigh.contains("cores [0, 1]"), "{neigh}");
    // The connected route of the TAP's address, on both cores, as `ip route` prints it.
    let route = run_ok(&[blink(), "route", &name]);
    assert!(
        route.contains("10.200.50.0/24 dev btap0 proto kernel scope link src 10.200.50.2 cores [0, 1]"),
        "{route}"
    );
    let route_json = run_ok(&[blink(), "route", &name, "--json"]);
    assert!(
        route_json.starts_with("{\"routes\": [{\"route\": \"10.200.50.0/24"),
        "{route_json}"
    );
    let link = run_ok(&[blink(), "link", &name, "--json"]);
    assert_eq!(link.matches("\"name\": \"btap0\"").count(), 2, "{link}");
    assert!(field(&link, "rx_packets") > 0, "{link}");

    // A UDP datagram with a wrong checksum (from a raw socket, the kernel adds the IP header):
    // `blink drops` shows it under its reason, at the line of udp.rs that dropped it.
    ns.exec_ok(&[
        "python3",
        "-c",
        "import socket,struct; s=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP); \
         s.sendto(struct.pack('!HHHH', 4000, 9, 12, 0x1234) + b'oops', ('10.200.50.2', 0))",
    ]);
    let mut drops = String::new();
    for _ in 0..50 {
        drops = run_ok(&[blink(), "drops", &name, "--json"]);
        if drops.contains("\"UdpCsum\": 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(drops.contains("\"UdpCsum\": 1"), "{drops}");
    assert!(
        drops.contains("\"file\": \"udp/src/udp.rs\"") && drops.contains("\"reason\": \"UdpCsum\", \"count\": 1"),
        "{drops}"
    );
    let text = run_ok(&[blink(), "drops", &name]);
    assert!(text.contains("UdpCsum") && text.contains("udp/src/udp.rs:"), "{text}");

    // pwru's view: a datagram to a closed port, followed function by function to its drop.
    let tracer = std::process::Command::new(blink())
        .args([
            "trace",
            &name,
            "--filter",
            "udp port 9",
            "--count",
            "1",
            "--timeout",
            "10",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("blink trace");
    std::thread::sleep(Duration::from_millis(500));
    ns.exec_ok(&[
        "python3",
        "-c",
        "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('10.200.50.2', 9))",
    ]);
    let out = tracer.wait_with_output().expect("trace output");
    let trace = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{trace}");
    let funcs: Vec<&str> = trace
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(
        funcs,
        [
            "netif_receive_skb",
            "ip_rcv",
            "ip_local_deliver",
            "udp_rcv",
            "kfree_skb"
        ],
        "{trace}"
    );
    assert!(trace.lines().last().unwrap_or("").ends_with("NoSocket"), "{trace}");
    // A TCP exchange: the data segment goes up to the socket queue and is read by the echo.
    let tracer = std::process::Command::new(blink())
        .args([
            "trace",
            &name,
            "--filter",
            "tcp port 7",
            "--count",
            "4",
            "--timeout",
            "10",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("blink trace");
    std::thread::sleep(Duration::from_millis(500));
    ns.exec_ok(&[
        "python3",
        "-c",
        "import socket; s=socket.create_connection(('10.200.50.2', 7)); s.sendall(b'traced'); \
         assert s.recv(16) == b'traced'; s.close()",
    ]);
    let out = tracer.wait_with_output().expect("trace output");
    let trace = String::from_utf8_lossy(&out.stdout);
    for f in [
        "tcp_v4_rcv",
        "tcp_queue_rcv",
        "tcp_recvmsg",
        "consume_skb",
        "dev_queue_xmit",
    ] {
        assert!(trace.contains(f), "{f} missing:\n{trace}");
    }
    let bad = run(&[blink(), "trace", &name, "--filter", "sctp"]);
    assert_eq!(bad.status.code(), Some(2), "a bad filter is a usage error");

    // Name-less: the one running instance is found (others may run in parallel tests, so
    // only check it answers or names the choice).
    let any = run(&[blink(), "stat"]);
    let e = String::from_utf8_lossy(&any.stderr);
    assert!(any.status.success() || e.contains("several blinks"), "{e}");

    drop(hold.stdin.take());
    let _ = hold.wait();
    let (code, report) = b.stop();
    assert_eq!(code, Some(0), "{report}");
    assert!(
        !std::path::Path::new(&path).exists(),
        "the control socket is removed at exit"
    );
}

/// The issue's acceptance run: `blink httpd` under `ab`, read live. After ab's 200 requests
/// (a connection each), `blink stat --json` counts exactly 200 passive opens; `blink ss` and
/// `blink neigh` show the listener and the kernel's side; `blink drops` counts a UDP datagram
/// to a closed port under NoSocket; `blink trace --filter 'tcp port 80' --count 20` follows 20
/// packets of a new request, each path in the order the stack takes it.
#[test]
fn httpd_under_ab_read_live() {
    if !require_root("httpd_under_ab_read_live") {
        return;
    }
    let ns = Netns::new("ctlab", "10.200.51.1/24");
    let name = format!("ctlab{}", std::process::id());
    let tap = format!("tap:{}", ns.tap);
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "httpd",
            "--dev",
            &tap,
            "--ip",
            "10.200.51.2/24",
            "--port",
            "80",
            "--size",
            "512",
            "--name",
            &name,
        ],
    );
    b.wait_line("blink httpd", Duration::from_secs(10));
    wait_for_ctl(&name);
    // The connections ab makes, counted by the kernel it runs on (its ActiveOpens).
    let active_opens = || {
        let snmp = ns.exec_ok(&["cat", "/proc/net/snmp"]);
        let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
        let col = tcp[0]
            .split_whitespace()
            .position(|h| h == "ActiveOpens")
            .expect("ActiveOpens");
        tcp[1]
            .split_whitespace()
            .nth(col)
            .and_then(|v| v.parse::<u64>().ok())
            .expect("a count")
    };
    let before = active_opens();
    let ab = ns.exec(&[
        "timeout",
        "60",
        "ab",
        "-q",
        "-n",
        "200",
        "-c",
        "4",
        "http://10.200.51.2/",
    ]);
    let abo = String::from_utf8_lossy(&ab.stdout);
    assert!(
        ab.status.success() && abo.contains("Failed requests:        0"),
        "{abo}"
    );
    let made = active_opens() - before;
    assert!(made >= 200, "{made} connections for 200 requests");

    let stat = run_ok(&[blink(), "stat", &name, "--json"]);
    let total = &stat[stat.find("\"total\": ").expect("total")..];
    assert_eq!(field(total, "PassiveOpens"), made, "one per connection ab made: {stat}");
    let ss = run_ok(&[blink(), "ss", &name, "--json"]);
    assert!(
        ss.contains("\"state\": \"LISTEN\"") && ss.contains("0.0.0.0:80"),
        "{ss}"
    );
    let neigh = run_ok(&[blink(), "neigh", &name]);
    assert!(neigh.contains("10.200.51.1"), "{neigh}");

    ns.exec_ok(&[
        "python3",
        "-c",
        "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('10.200.51.2', 9))",
    ]);
    let t0 = std::time::Instant::now();
    loop {
        let drops = run_ok(&[blink(), "drops", &name, "--json"]);
        if drops.contains("\"NoSocket\"") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no NoSocket drop: {drops}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let tracer = std::process::Command::new(blink())
        .args([
            "trace",
            &name,
            "--filter",
            "tcp port 80",
            "--count",
            "20",
            "--timeout",
            "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("blink trace");
    std::thread::sleep(Duration::from_millis(500));
    // Keep-alive requests on one connection: far more than 20 packets.
    ns.exec_ok(&["ab", "-q", "-k", "-n", "50", "-c", "1", "http://10.200.51.2/"]);
    let out = tracer.wait_with_output().expect("trace output");
    let trace = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{trace}");
    // One line per step: "SKB CPU TIME FUNC DETAIL"; a packet's steps share its skb (a buffer
    // is reused once a packet ends, so a new path starts after consume_skb or kfree_skb).
    let mut paths: Vec<(String, Vec<String>)> = Vec::new();
    for l in trace.lines().skip(1) {
        let w: Vec<&str> = l.split_whitespace().collect();
        let (Some(skb), Some(func)) = (w.first(), w.get(3)) else {
            continue;
        };
        match paths.iter_mut().rev().find(|(s, _)| s == skb) {
            Some((_, fs)) if fs.last().is_some_and(|f| f != "consume_skb" && f != "kfree_skb") => {
                fs.push(func.to_string())
            }
            _ => paths.push((skb.to_string(), vec![func.to_string()])),
        }
    }
    // Complete paths only: the trace stops after its 20th packet, possibly mid-path.
    let received: Vec<&Vec<String>> = paths
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f[0] == "netif_receive_skb" && f.last().is_some_and(|l| l == "consume_skb" || l == "kfree_skb"))
        .collect();
    assert!(received.len() >= 10, "{trace}");
    for f in &received {
        // The order the stack takes: device, IP, TCP, and then its end.
        let at = |name: &str| f.iter().position(|x| x == name);
        assert_eq!(at("ip_rcv"), Some(1), "{f:?}\n{trace}");
        assert!(at("tcp_v4_rcv").is_some_and(|t| t > 1), "{f:?}\n{trace}");
    }
    let (code, report) = b.stop();
    assert_eq!(code, Some(0), "{report}");
}
