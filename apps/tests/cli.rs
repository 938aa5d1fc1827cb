//! The `blink` command: the demo runs, and bad configuration exits with code 2 naming the field.

mod common;

use common::*;

#[test]
fn demo_runs_and_leaks_nothing() {
    let out = run(&[blink(), "demo"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.contains("ping: 5 sent, 5 received, 0% loss"), "{s}");
    assert!(s.contains("ICMP protocol unreachable received"), "{s}");
    // Protocol 253 and the UDP datagram to closed port 9.
    assert!(s.contains("Icmp.OutDestUnreachs 2"), "{s}");
    assert!(s.contains("udp: 4 of 4 datagrams echoed"), "{s}");
    assert!(s.contains("udp to closed port 10.0.0.2:9: connection refused"), "{s}");
    assert!(
        s.contains("raw protocol 89 from 10.0.0.2: 38 bytes (20-byte IP header + payload), payload intact"),
        "{s}"
    );
    assert!(s.contains("10.0.0.2 dev 0 lladdr 02:62:6c:00:00:02 REACHABLE"), "{s}");
    assert!(s.contains("mbufs in use after both hosts stopped: 0"), "{s}");
}

#[test]
fn demo_under_impairment_still_reports() {
    let out = run(&[
        blink(),
        "demo",
        "--count",
        "20",
        "--impair",
        "loss=0.2,dup=0.1,reorder=0.1,seed=9",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("ping: 20 sent"), "{s}");
    assert!(s.contains("impair.lost"), "{s}");
    assert!(s.contains("mbufs in use after both hosts stopped: 0"), "{s}");
}

fn expect_usage(args: &[&str], field: &str) {
    let mut full = vec![blink()];
    full.extend_from_slice(args);
    let out = run(&full);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(field), "{args:?}: message should name {field}: {err}");
}

#[test]
fn bad_configuration_exits_2_and_names_the_field() {
    expect_usage(&["echo", "--dev", "tap:x", "--ip", "10.0.0.300/24"], "--ip");
    expect_usage(&["echo", "--dev", "tap:x", "--ip", "10.0.0.1"], "--ip");
    expect_usage(&["echo", "--dev", "tap:x", "--ip", "10.0.0.1/33"], "--ip");
    expect_usage(&["echo", "--dev", "tap:x"], "--ip");
    expect_usage(&["echo", "--dev", "bogus", "--ip", "10.0.0.1/24"], "--dev");
    expect_usage(
        &["echo", "--dev", "tap:x", "--ip", "10.0.0.1/24", "--impair", "loss=7"],
        "loss",
    );
    expect_usage(
        &["echo", "--dev", "tap:x", "--ip", "10.0.0.1/24", "--gw", "192.168.9.1"],
        "gw",
    );
    expect_usage(
        &["echo", "--dev", "tap:x", "--ip", "10.0.0.1/24", "--mtu", "20"],
        "--mtu",
    );
    expect_usage(&["demo", "--count", "0"], "--count");
    expect_usage(
        &["echo", "--dev", "tap:x", "--ip", "10.0.0.1/24", "--raw", "255"],
        "--raw",
    );

    let dir = std::env::temp_dir();
    let cfg = dir.join(format!("blink-bad-config-{}", std::process::id()));
    std::fs::write(&cfg, "0 10.0.0.1 255.255.255.0\n0 10.0.0.2 255.0.255.0\n").unwrap();
    expect_usage(&["echo", "--dev", "tap:x", "--config", cfg.to_str().unwrap()], "`mask`");
    std::fs::write(&cfg, "1 10.0.0.1 255.255.255.0\n").unwrap();
    expect_usage(&["echo", "--dev", "tap:x", "--config", cfg.to_str().unwrap()], "port 1");
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn bench_prints_json_for_every_workload() {
    let out = run(&[blink(), "bench", "--secs", "0.2", "--json"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.starts_with("{\"results\": ["), "{s}");
    for w in ["bulk", "rr", "crr"] {
        assert!(
            s.contains(&format!("\"workload\": \"{w}\", \"peer\": \"blink\"")),
            "{s}"
        );
    }
    expect_usage(&["bench", "--workloads", "bogus"], "--workloads");
}
