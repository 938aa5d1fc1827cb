//! The Linux kernel talks UDP and raw IPv4 to `blink echo --udp 7 --raw 89` through a TAP
//! device in a namespace the test creates: every datagram size 1..=1472 comes back
//! identical, `nc -u` gets its line back, a kernel raw socket of protocol 89 gets its payload
//! echoed, a datagram to a closed port makes the kernel socket see ConnectionRefused (ICMP
//! port unreachable), and ping is still answered.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const BLINK_IP: &str = "10.200.3.2";

/// A kernel raw socket of protocol 89: the echo comes back from blink with the same payload.
const RAW_89: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 89)
s.settimeout(3.0)
payload = b"raw protocol 89 through blink"
s.sendto(payload, (sys.argv[1], 0))
while True:
    pkt, src = s.recvfrom(4096)
    if src[0] != sys.argv[1]:
        continue
    ihl = (pkt[0] & 0x0f) * 4
    assert pkt[9] == 89, pkt[9]
    if pkt[ihl:] != payload:
        print("RAW_MISMATCH", pkt[ihl:])
        sys.exit(1)
    print("RAW_OK", len(pkt) - ihl)
    break
"#;

/// A connected UDP socket to a closed port: the ICMP port unreachable blink sends becomes
/// ConnectionRefusedError on the next call.
const CLOSED_PORT: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3.0)
s.connect((sys.argv[1], 9))
s.send(b"anyone on 9?")
try:
    s.recv(100)
    print("NO_ERROR")
except ConnectionRefusedError:
    print("REFUSED")
except socket.timeout:
    print("TIMEOUT")
"#;

#[test]
fn kernel_talks_udp_and_raw_to_blink_over_tap() {
    if !require_root("kernel_talks_udp_and_raw_to_blink_over_tap") {
        return;
    }
    let ns = Netns::new("udpraw", "10.200.3.1/24");
    let tap = format!("tap:{}", ns.tap);
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "echo",
            "--dev",
            &tap,
            "--ip",
            "10.200.3.2/24",
            "--udp",
            "7",
            "--raw",
            "89",
            "--duration",
            "120",
        ],
    );
    let banner = b.wait_line("answering", Duration::from_secs(10));
    assert!(
        banner.contains("udp echo 7") && banner.contains("raw echo protocol 89"),
        "{banner}"
    );

    let out = ns.exec_ok(&["python3", "-c", UDP_SIZES_PY, BLINK_IP]);
    assert!(out.contains("UDP_OK 1472"), "{out}");

    // nc -u: one line out, the same line back.
    let mut nc = ns
        .cmd(&["nc", "-u", "-w", "2", BLINK_IP, "7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc");
    nc.stdin.take().unwrap().write_all(b"hello from nc\n").unwrap();
    let nc_out = nc.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&nc_out.stdout), "hello from nc\n");

    let out = ns.exec_ok(&["python3", "-c", RAW_89, BLINK_IP]);
    assert!(out.contains("RAW_OK 29"), "{out}");

    let out = ns.exec_ok(&["python3", "-c", CLOSED_PORT, BLINK_IP]);
    assert!(out.contains("REFUSED"), "{out}");

    let ping = ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", BLINK_IP]);
    let text = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert!(text.contains("3 packets transmitted, 3 received"), "{text}");

    let (code, stdout) = b.stop();
    assert_eq!(code, Some(0), "blink exit status; output:\n{stdout}");
    // 1472 sizes (plus any retries) and the nc line.
    let echoed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("udp: ")?.strip_suffix(" datagrams echoed")?.parse().ok())
        .unwrap_or_else(|| panic!("no udp summary:\n{stdout}"));
    assert!(echoed >= 1473, "{echoed} datagrams echoed:\n{stdout}");
    assert!(stdout.contains("raw: 1 packets echoed"), "{stdout}");
    assert!(stdout.contains("Udp.NoPorts 1"), "{stdout}");
    assert!(stdout.contains("Icmp.OutDestUnreachs 1"), "{stdout}");
    assert!(!stdout.contains("Udp.InErrors"), "{stdout}");
    assert!(stdout.contains("Icmp.OutEchoReps 3"), "{stdout}");
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");
}
