//! Root: the table of illegal flag combinations (tests/flags) is what Linux does. Each
//! combination in each state, against a real kernel socket in a namespace this test makes:
//! namespace A holds the kernel's end (10.200.20.1 on a veth), namespace B the other veth,
//! where tests/flags/peer.py plays the remote 10.200.20.2 with an AF_PACKET socket. That
//! address is configured nowhere (A reaches it through a static neighbour entry), so B's
//! kernel never answers and the script sees every reply. `pd_flags.rs` checks blink against
//! the same table.

mod flags;

use std::io::Write;
use std::process::{Command, Stdio};

use flags::{expected, reply_segment, Reply, COMBOS, STATES, WATCHED};

fn run_ok(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// As apps/tests/common's require_root (this crate has no libc): root tests run in CI (root);
/// elsewhere they say so on stderr and pass, unless BLINK_REQUIRE_ROOT=1 or CI=true says a
/// skip must fail.
fn require_root(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    if euid.as_deref() == Some("0") {
        return true;
    }
    let required =
        std::env::var("BLINK_REQUIRE_ROOT").is_ok_and(|v| v == "1") || std::env::var("CI").is_ok_and(|v| v == "true");
    if required {
        panic!("{test}: needs root, and BLINK_REQUIRE_ROOT=1 (or CI=true) says it must not be skipped here");
    }
    let _ = writeln!(
        std::io::stderr(),
        "{test}: SKIPPED, not run: needs root for network namespaces"
    );
    false
}

/// Two namespaces joined by a veth pair, deleted on drop.
struct Namespaces {
    a: String,
    b: String,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn mac(ns: &str, dev: &str) -> String {
    let out = run_ok(&["ip", "-n", ns, "-br", "link", "show", dev]);
    out.split_whitespace().nth(2).expect("a MAC address").to_string()
}

#[test]
fn kernel_matches_the_flags_table() {
    if !require_root("kernel_matches_the_flags_table") {
        return;
    }
    let pid = std::process::id();
    let ns = Namespaces {
        a: format!("blink-flA-{pid}"),
        b: format!("blink-flB-{pid}"),
    };
    let (a, b) = (ns.a.as_str(), ns.b.as_str());
    for n in [a, b] {
        let _ = Command::new("ip")
            .args(["netns", "del", n])
            .stderr(Stdio::null())
            .status();
        run_ok(&["ip", "netns", "add", n]);
    }
    run_ok(&[
        "ip", "link", "add", "vflA", "netns", a, "type", "veth", "peer", "name", "vflB", "netns", b,
    ]);
    run_ok(&["ip", "-n", a, "link", "set", "lo", "up"]);
    run_ok(&["ip", "-n", a, "addr", "add", "10.200.20.1/24", "dev", "vflA"]);
    run_ok(&["ip", "-n", a, "link", "set", "vflA", "up"]);
    run_ok(&["ip", "-n", b, "link", "set", "vflB", "up"]);
    let (kmac, pmac) = (mac(a, "vflA"), mac(b, "vflB"));
    run_ok(&[
        "ip",
        "-n",
        a,
        "neigh",
        "add",
        "10.200.20.2",
        "lladdr",
        &pmac,
        "dev",
        "vflA",
        "nud",
        "permanent",
    ]);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flags/peer.py");
    let b_path = format!("/run/netns/{b}");
    let watched = WATCHED.join(",");
    let mut child = Command::new("ip")
        .args(["netns", "exec", a, "python3", script, &b_path, "vflB", &kmac, &pmac])
        .args(["10.200.20.1", "10.200.20.2", &watched])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut cases = Vec::new();
    let mut input = String::new();
    for c in &COMBOS {
        for &s in &STATES {
            input += &format!("{} {} {} {} {}\n", cases.len(), c.flags, c.len, s.key(), c.seq(s));
            cases.push((c, s));
        }
    }
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "peer.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut bad = Vec::new();
    let mut n = 0;
    for line in stdout.lines() {
        let mut w = line.split_whitespace();
        let id: usize = w.next().unwrap().parse().unwrap();
        let field = |w: &mut std::str::SplitWhitespace, k: &str| {
            w.next().and_then(|f| f.strip_prefix(k)).map(str::to_string).unwrap()
        };
        let (replies, after, counters) = (
            field(&mut w, "replies="),
            field(&mut w, "after="),
            field(&mut w, "counters="),
        );
        let (c, s) = cases[id];
        let want = expected(c, s);
        // The reply as peer.py prints it: FLAGS:SEQ:ACK:LEN, a reset's seq absolute.
        let want_replies = match reply_segment(want.reply, c, s) {
            None => String::new(),
            Some((f, seq, ack)) if want.reply == Reply::RstAck => format!("{f}:abs{seq}:{ack}:0"),
            Some((f, seq, ack)) => format!("{f}:{seq}:{ack}:0"),
        };
        let mut want_counters: Vec<String> = WATCHED
            .iter()
            .filter(|w| want.counters.contains(w))
            .map(|w| format!("{w}=1"))
            .collect();
        want_counters.sort();
        let mut got_counters: Vec<String> = counters
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        got_counters.sort();
        if replies != want_replies || after != want.after || got_counters != want_counters {
            bad.push(format!(
                "{} in {}: kernel replied [{replies}], after {after}, counters {got_counters:?}; \
                 table says [{want_replies}], after {}, counters {want_counters:?}",
                c.name,
                s.name(),
                want.after
            ));
        }
        n += 1;
    }
    assert_eq!(
        n,
        cases.len(),
        "peer.py answered {n} of {} cases:\n{stdout}",
        cases.len()
    );
    assert!(bad.is_empty(), "the kernel differs from the table:\n{}", bad.join("\n"));
}
