//! Fragments and tunnels against the Linux kernel, through a TAP in a namespace the test makes.
//!
//! - `blink echo --udp 7 --tcp 7 --cores 2`: the kernel's UDP datagrams of 3,000..60,000 bytes
//!   (which the kernel fragments) come back exactly (blink fragments its answer, the kernel
//!   reassembles it); the kernel answers blink's 4,000-byte ping and blink answers the
//!   kernel's; TCP still works alongside.
//! - Tunnels: this kernel has no ipip/gre modules, so a small user-space tunnel end runs in
//!   the namespace: a TUN device `btun0` whose packets a script wraps in IPIP or GRE and sends
//!   to blink over a raw socket, unwrapping what comes back (checking that it comes from
//!   blink's underlay address, with the right GRE key). The kernel's own ping, UDP and TCP
//!   then run through it against `blink echo --tunnel ...` on 2 cores.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// UDP datagrams of the given sizes to HOST:7, each back byte for byte (3 tries each).
const UDP_BIG_PY: &str = r#"
import os, socket, sys
host = sys.argv[1]
sizes = [int(x) for x in sys.argv[2].split(",")]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
for n in sizes:
    data = os.urandom(n)
    for attempt in range(3):
        s.sendto(data, (host, 7))
        try:
            back, src = s.recvfrom(70000)
        except socket.timeout:
            continue
        if back != data:
            print("UDP_MISMATCH size", n, "got", len(back))
            sys.exit(1)
        print("UDP_OK", n)
        break
    else:
        print("UDP_TIMEOUT size", n)
        sys.exit(1)
"#;

/// One TCP connection to HOST:7: N random bytes, echoed back exactly.
const TCP_ECHO_PY: &str = r#"
import os, socket, sys
host, n = sys.argv[1], int(sys.argv[2])
data = os.urandom(n)
s = socket.create_connection((host, 7), timeout=30)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
back = bytearray()
while True:
    b = s.recv(65536)
    if not b:
        break
    back += b
s.close()
if bytes(back) != data:
    print("TCP_MISMATCH", len(back), "of", n)
    sys.exit(1)
print("TCP_OK", n)
"#;

/// A user-space tunnel end: TUN `btun0` <-> IPIP/GRE over a raw socket to blink.
/// argv: kind (ipip|gre), blink's underlay address, key (or "-").
const TUNNEL_PY: &str = r#"
import fcntl, os, select, socket, struct, sys
kind, remote, key = sys.argv[1], sys.argv[2], sys.argv[3]
key = None if key == "-" else int(key)
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454ca, 0x0001, 0x1000
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"btun0", IFF_TUN | IFF_NO_PI))
proto = 4 if kind == "ipip" else 47
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
# Python relays slowly: a big receive buffer keeps blink's bursts from overflowing it.
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
print("READY", flush=True)
while True:
    r, _, _ = select.select([fd, raw], [], [])
    if fd in r:
        pkt = os.read(fd, 65535)
        if kind == "gre":
            flags = 0x2000 if key is not None else 0
            pkt = struct.pack("!HH", flags, 0x0800) + (struct.pack("!I", key) if key is not None else b"") + pkt
        raw.sendto(pkt, (remote, 0))
    if raw in r:
        data, src = raw.recvfrom(65535)
        if src[0] != remote:
            print("FOREIGN", src[0], flush=True)
            continue
        inner = data[(data[0] & 15) * 4:]
        if kind == "gre":
            flags, p = struct.unpack("!HH", inner[:4])
            off, k = 4, None
            if flags & 0x8000:
                off += 4
            if flags & 0x2000:
                k = struct.unpack("!I", inner[off:off + 4])[0]
                off += 4
            if flags & 0x1000:
                off += 4
            if p != 0x0800 or k != key or flags & 0x4007:
                print("BAD_GRE", hex(flags), hex(p), k, flush=True)
                continue
            inner = inner[off:]
        os.write(fd, inner)
"#;

fn lines_with<'a>(s: &'a str, prefix: &str) -> Vec<&'a str> {
    s.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn kernel_fragments_both_ways_on_two_cores() {
    if !require_root("kernel_fragments_both_ways_on_two_cores") {
        return;
    }
    let ns = Netns::new_multi_queue("frag", "10.200.40.1/24");
    let tap = format!("tap:{}", ns.tap);
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "echo",
            "--dev",
            &tap,
            "--ip",
            "10.200.40.2/24",
            "--tcp",
            "7",
            "--udp",
            "7",
            "--cores",
            "2",
            "--ping",
            "10.200.40.1",
            "--ping-size",
            "4000",
            "--ping-count",
            "3",
        ],
    );
    b.wait_line("answering", Duration::from_secs(10));
    // blink's own 4,000-byte pings, answered by the kernel (in fragments both ways).
    for _ in 0..3 {
        b.wait_line("ping reply from 10.200.40.1: 4000 bytes", Duration::from_secs(10));
    }
    let ping = ns.exec(&["ping", "-c", "3", "-i", "0.3", "-W", "2", "-s", "4000", "10.200.40.2"]);
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    let udp = ns.exec(&[
        "timeout",
        "60",
        "python3",
        "-c",
        UDP_BIG_PY,
        "10.200.40.2",
        "3000,8000,20000,60000,65507",
    ]);
    let udp_out = String::from_utf8_lossy(&udp.stdout).into_owned();
    let tcp = ns.exec(&["timeout", "60", "python3", "-c", TCP_ECHO_PY, "10.200.40.2", "1000000"]);
    let tcp_out = String::from_utf8_lossy(&tcp.stdout).into_owned();
    let (code, report) = b.stop();
    eprintln!("{ping_out}{udp_out}{tcp_out}");
    assert!(
        ping.status.success(),
        "kernel's ping -s 4000:\n{ping_out}\nblink:\n{report}"
    );
    assert!(ping_out.contains("3 received"), "{ping_out}");
    assert!(udp.status.success(), "{udp_out}\nblink:\n{report}");
    assert_eq!(lines_with(&udp_out, "UDP_OK").len(), 5, "{udp_out}");
    assert!(tcp.status.success(), "{tcp_out}\nblink:\n{report}");
    assert_eq!(code, Some(0), "{report}");
    eprintln!("blink's per-core counters:");
    for l in per_core_lines(&report) {
        eprintln!("  {l}");
    }
    assert!(report_total(&report, "Ip.ReasmOKs") >= 8, "{report}");
    assert!(report_total(&report, "Ip.FragOKs") >= 8, "{report}");
    assert_eq!(report_total(&report, "Ip.ReasmFails"), 0, "{report}");
    assert_eq!(report_total(&report, "Softnet.WrongCore"), 0, "{report}");
    assert!(report.contains("mbufs in use after shutdown: 0"), "{report}");
}

fn tunnel_against_the_kernel(kind: &str, key: Option<u32>, net: u8) {
    let ns = Netns::new(
        &format!("tun{kind}{}", key.is_some() as u8),
        &format!("10.200.{net}.1/24"),
    );
    let blink_ul = format!("10.200.{net}.2");
    let mut tun = ns
        .cmd(&[
            "python3",
            "-u",
            "-c",
            TUNNEL_PY,
            kind,
            &blink_ul,
            &key.map_or("-".into(), |k| k.to_string()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tunnel script");
    let mut tun_out = BufReader::new(tun.stdout.take().expect("piped"));
    let mut first = String::new();
    tun_out.read_line(&mut first).expect("tunnel script output");
    assert_eq!(first.trim(), "READY", "tunnel script: {first}");
    let overhead = match (kind, key) {
        ("ipip", _) => 20,
        (_, None) => 24,
        _ => 28,
    };
    let mtu = (1500 - overhead).to_string();
    ns.exec_ok(&["ip", "addr", "add", &format!("10.201.{net}.1/30"), "dev", "btun0"]);
    ns.exec_ok(&["ip", "link", "set", "btun0", "mtu", &mtu, "up"]);
    let spec = format!(
        "{kind}:10.200.{net}.1:10.201.{net}.2/30{}",
        key.map_or(String::new(), |k| format!(",key={k}"))
    );
    let tap = format!("tap:{}", ns.tap);
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "echo",
            "--dev",
            &tap,
            "--ip",
            &format!("{blink_ul}/24"),
            "--tunnel",
            &spec,
            "--tcp",
            "7",
            "--udp",
            "7",
            "--cores",
            "2",
            "--mode",
            "poller",
        ],
    );
    b.wait_line("answering", Duration::from_secs(10));
    let inner = format!("10.201.{net}.2");
    let ping = ns.exec(&["ping", "-c", "3", "-i", "0.3", "-W", "2", "-s", "3000", &inner]);
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    let udp = ns.exec(&[
        "timeout",
        "60",
        "python3",
        "-c",
        UDP_BIG_PY,
        &inner,
        "100,1400,3000,9000",
    ]);
    let udp_out = String::from_utf8_lossy(&udp.stdout).into_owned();
    let tcp = ns.exec(&["timeout", "60", "python3", "-c", TCP_ECHO_PY, &inner, "2000000"]);
    let tcp_out = String::from_utf8_lossy(&tcp.stdout).into_owned();
    let (code, report) = b.stop();
    let _ = tun.kill();
    let _ = tun.wait();
    let mut rest = String::new();
    while tun_out.read_line(&mut rest).unwrap_or(0) > 0 {}
    let what = format!("{kind} key {key:?}");
    eprintln!("{what}: {ping_out}{udp_out}{tcp_out}");
    assert!(
        rest.is_empty(),
        "{what}: tunnel script saw foreign or bad packets:\n{rest}"
    );
    assert!(
        ping.status.success() && ping_out.contains("3 received"),
        "{what}: {ping_out}\n{report}"
    );
    assert!(udp.status.success(), "{what}: {udp_out}\n{report}");
    assert_eq!(lines_with(&udp_out, "UDP_OK").len(), 4, "{udp_out}");
    assert!(tcp.status.success(), "{what}: {tcp_out}\n{report}");
    assert_eq!(code, Some(0), "{report}");
    eprintln!("{what}: blink's per-core counters:");
    for l in per_core_lines(&report) {
        eprintln!("  {l}");
    }
    // Everything came through the tunnel device, in both directions.
    let dev = report
        .lines()
        .find(|l| l.contains(if kind == "ipip" { "(ipip0)" } else { "(gre0)" }))
        .unwrap_or_else(|| panic!("no tunnel device in the report:\n{report}"));
    assert!(!dev.contains("rx 0 pkts") && !dev.contains("tx 0 pkts"), "{dev}");
    assert_eq!(report_total(&report, "Softnet.WrongCore"), 0, "{report}");
    assert!(report.contains("mbufs in use after shutdown: 0"), "{report}");
}

#[test]
fn ipip_tunnel_against_the_kernel() {
    if !require_root("ipip_tunnel_against_the_kernel") {
        return;
    }
    tunnel_against_the_kernel("ipip", None, 41);
}

#[test]
fn gre_tunnel_against_the_kernel() {
    if !require_root("gre_tunnel_against_the_kernel") {
        return;
    }
    tunnel_against_the_kernel("gre", None, 42);
}

#[test]
fn gre_tunnel_with_key_against_the_kernel() {
    if !require_root("gre_tunnel_with_key_against_the_kernel") {
        return;
    }
    tunnel_against_the_kernel("gre", Some(4242), 43);
}
