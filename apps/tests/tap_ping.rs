//! The Linux kernel pings `blink echo` through a TAP device in a namespace the test creates.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn kernel_pings_blink_over_tap() {
    if !require_root("kernel_pings_blink_over_tap") {
        return;
    }
    let ns = Netns::new("ping", "10.200.1.1/24");
    let pcap = std::env::temp_dir().join(format!("blink-tap-ping-{}.pcap", std::process::id()));
    let pcap_s = pcap.to_str().unwrap().to_string();
    let tap = format!("tap:{}", ns.tap);
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "echo",
            "--dev",
            &tap,
            "--ip",
            "10.200.1.2/24",
            "--pcap",
            &pcap_s,
            "--duration",
            "60",
        ],
    );
    b.wait_line("answering ping", Duration::from_secs(10));

    let out = ns.exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.200.1.2"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ping failed:\n{text}");
    assert!(
        text.contains("5 packets transmitted, 5 received, 0% packet loss"),
        "{text}"
    );

    // The kernel learned blink's MAC (derived from 10.200.1.2).
    let neigh = ns.exec_ok(&["ip", "neigh", "show", "10.200.1.2"]);
    assert!(neigh.contains("02:62:6c:c8:01:02"), "kernel neighbour table: {neigh}");

    let kernel_mac = ns.tap_mac();
    let (code, stdout) = b.stop();
    assert_eq!(code, Some(0), "blink exit status; output:\n{stdout}");
    // blink resolved the kernel's MAC.
    let want = format!("10.200.1.1 dev 0 lladdr {kernel_mac}");
    assert!(stdout.contains(&want), "blink neighbours lack `{want}`:\n{stdout}");
    assert!(stdout.contains("Icmp.InEchos 5"), "{stdout}");
    assert!(stdout.contains("Icmp.OutEchoReps 5"), "{stdout}");
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");

    // The capture reads back with tcpdump and shows ARP and ICMP both ways.
    let dump = run_ok(&["tcpdump", "-nn", "-r", &pcap_s]);
    let _ = std::fs::remove_file(&pcap);
    assert!(dump.contains("ARP, Request who-has 10.200.1.2"), "{dump}");
    assert!(dump.contains("ARP, Reply 10.200.1.2 is-at 02:62:6c:c8:01:02"), "{dump}");
    assert_eq!(dump.matches("ICMP echo request").count(), 5, "{dump}");
    assert_eq!(dump.matches("ICMP echo reply").count(), 5, "{dump}");
}
