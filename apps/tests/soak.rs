//! `blink soak`: a short run over the faulty wire passes with every figure in its lines, and
//! bad options exit with code 2 naming the field.

mod common;

use common::*;

#[test]
fn short_soak_passes_and_returns_every_buffer() {
    // 24 s of traffic in 6 intervals: long enough for the growth checks to compare intervals.
    let out = run(&[blink(), "soak", "--secs", "24", "--interval", "4", "--seed", "3"]);
    let s = String::from_utf8_lossy(&out.stdout);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "seed 3: {s}\n{e}");
    assert!(s.contains("soak passed"), "{s}");
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with('[')).collect();
    assert!(lines.len() >= 5, "one line per interval: {s}");
    for l in &lines {
        for field in ["conns ", "verified ", "udp ", "raw ", "retrans ", "mbufs ", "rss "] {
            assert!(l.contains(field), "`{field}` missing from: {l}");
        }
    }
    // Work was done and checked, the faults were in the path, and everything came back.
    let last = lines.last().expect("lines");
    let figure = |name: &str| -> u64 {
        last.split(name)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("`{name}` in: {last}"))
    };
    assert!(figure("conns ") > 0 && figure("retrans ") > 0, "{last}");
    assert!(
        s.contains("end: mbufs in use 0 (baseline 0), sockets left A 0 B 0"),
        "{s}"
    );
}

#[test]
fn bad_soak_options_exit_2_naming_the_field() {
    for (args, field) in [
        (&["--secs", "0"][..], "--secs"),
        (&["--minutes=-1"][..], "--minutes"),
        (&["--interval", "0"][..], "--interval"),
        (&["--conns", "0"][..], "--conns"),
        (&["--impair", "loss=2"][..], "`loss`"),
    ] {
        let mut cmd = vec![blink(), "soak"];
        cmd.extend_from_slice(args);
        let out = run(&cmd);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(field), "{args:?}: {e}");
    }
}
