//! TCP between the Linux kernel and blink through a TAP device in a namespace the test creates.

mod common;

use std::time::Duration;

use common::*;

fn sha256_of(ns: &Netns, path: &str) -> String {
    let out = ns.exec_ok(&["sha256sum", path]);
    out.split_whitespace().next().unwrap_or_default().to_string()
}

/// `nc` in the kernel's namespace sends `mib` MiB to `blink echo --tcp 7` and reads the echo.
fn kernel_nc_to_blink_echo(tag: &str, net: u8, mib: usize, impair: Option<&str>) -> String {
    let ns = Netns::new(tag, &format!("10.200.{net}.1/24"));
    let tap = format!("tap:{}", ns.tap);
    let ip = format!("10.200.{net}.2/24");
    let pcap = std::env::temp_dir().join(format!("blink-{tag}-{}.pcap", std::process::id()));
    let pcap_s = pcap.to_str().unwrap().to_string();
    let mut args = vec!["echo", "--dev", &tap, "--ip", &ip, "--tcp", "7", "--duration", "600"];
    if mib <= 1 {
        args.extend_from_slice(&["--pcap", &pcap_s]);
    }
    if let Some(i) = impair {
        args.extend_from_slice(&["--impair", i]);
    }
    let mut b = BlinkProc::spawn(&ns, &args);
    b.wait_line("tcp echo 7", Duration::from_secs(10));
    let dir = std::env::temp_dir().join(format!("blink-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in");
    let output = dir.join("out");
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    ns.exec_ok(&["sh", "-c", &format!("head -c {} /dev/urandom > {i}", mib << 20)]);
    let t0 = std::time::Instant::now();
    let r = ns.exec(&["sh", "-c", &format!("timeout 600 nc -N 10.200.{net}.2 7 < {i} > {o}")]);
    let secs = t0.elapsed().as_secs_f64();
    let (code, stdout) = b.stop();
    assert!(
        r.status.success(),
        "nc failed: {}\nblink:\n{stdout}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(code, Some(0), "{stdout}");
    let (hi, ho) = (sha256_of(&ns, i), sha256_of(&ns, o));
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(size, (mib as u64) << 20, "echoed size; blink:\n{stdout}");
    assert_eq!(hi, ho, "sha256 of the echo differs; blink:\n{stdout}");
    eprintln!(
        "{tag}: {mib} MiB echoed in {secs:.2} s ({:.0} Mbit/s each way)",
        (mib as f64) * 8.0 * 1.048576 / secs
    );
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");
    if mib <= 1 {
        let dump = run_ok(&["tcpdump", "-nn", "-v", "-r", &pcap_s, "tcp[tcpflags] & tcp-syn != 0"]);
        let _ = std::fs::remove_file(&pcap);
        return dump;
    }
    String::new()
}

#[test]
fn kernel_negotiates_wscale_timestamps_sack_with_blink() {
    if !require_root("kernel_negotiates_wscale_timestamps_sack_with_blink") {
        return;
    }
    let syns = kernel_nc_to_blink_echo("tcpopts", 4, 1, None);
    let lines: Vec<&str> = syns.lines().filter(|l| l.contains("Flags [S")).collect();
    assert!(lines.len() >= 2, "expected the SYN and the SYN-ACK:\n{syns}");
    let synack = lines
        .iter()
        .find(|l| l.contains("Flags [S.]"))
        .expect("SYN-ACK captured");
    for opt in ["mss 1460", "sackOK", "TS val", "wscale"] {
        assert!(synack.contains(opt), "blink's SYN-ACK lacks {opt}: {synack}");
    }
    let syn = lines.iter().find(|l| l.contains("Flags [S],")).expect("SYN captured");
    for opt in ["sackOK", "TS val", "wscale"] {
        assert!(syn.contains(opt), "kernel SYN lacks {opt}: {syn}");
    }
}

#[test]
fn kernel_nc_echo_100mib_clean() {
    if !require_root("kernel_nc_echo_100mib_clean") {
        return;
    }
    kernel_nc_to_blink_echo("tcpclean", 2, 100, None);
}

#[test]
fn kernel_nc_echo_under_loss_and_reordering() {
    if !require_root("kernel_nc_echo_under_loss_and_reordering") {
        return;
    }
    kernel_nc_to_blink_echo(
        "tcplossy",
        3,
        100,
        Some("loss=0.05,reorder=0.1,dup=0.01,corrupt=0.001,delay=1ms,seed=5"),
    );
}
