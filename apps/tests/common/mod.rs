//! Helpers for tests that run the real `blink` binary against the Linux kernel in a network
//! namespace the test creates (root only; traffic stays inside 10.200.0.0/16 in that namespace).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn blink() -> &'static str {
    env!("CARGO_BIN_EXE_blink")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Root tests run in CI (root). Elsewhere they say on stderr that they were skipped and
/// pass, since cargo has no runtime "ignored"; where a skip must not pass for a success
/// (`.ci/run` exports BLINK_REQUIRE_ROOT=1; CI=true too) it fails the test instead.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let required =
        std::env::var("BLINK_REQUIRE_ROOT").is_ok_and(|v| v == "1") || std::env::var("CI").is_ok_and(|v| v == "true");
    if required {
        panic!("{test}: needs root, and BLINK_REQUIRE_ROOT=1 (or CI=true) says it must not be skipped here");
    }
    // Straight to stderr: the test harness captures eprintln!, and hides it for a pass.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{test}: SKIPPED, not run: needs root for network namespaces and TAP"
    );
    false
}

/// The TCP seed of the stacks these tests build in-process (`TcpConfig::seed`): BLINK_SEED,
/// else 1, as in the other crates' wire tests. Printed with the test's output (shown when it
/// fails), so a run can be replayed on blink's side; the kernel's ISNs stay its own.
pub fn tcp_seed() -> u64 {
    let seed = match std::env::var("BLINK_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("BLINK_SEED: `{v}` is not an integer")),
        Err(_) => 1,
    };
    println!("TCP seed {seed} (replay with BLINK_SEED={seed})");
    seed
}

pub fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

pub fn run_ok(cmd: &[&str]) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace with a persistent TAP device `tap` at `kernel_ip` (e.g. 10.200.1.1/24),
/// deleted on drop.
pub struct Netns {
    pub name: String,
    pub tap: String,
}

impl Netns {
    pub fn new(tag: &str, kernel_cidr: &str) -> Netns {
        let name = format!("blink-{tag}-{}", std::process::id());
        let _ = run(&["ip", "netns", "del", &name]);
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name,
            tap: "btap0".to_string(),
        };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns.exec_ok(&["ip", "tuntap", "add", "dev", &ns.tap, "mode", "tap"]);
        ns.exec_ok(&["ip", "addr", "add", kernel_cidr, "dev", &ns.tap]);
        ns.exec_ok(&["ip", "link", "set", &ns.tap, "up"]);
        ns
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "in netns {}: {args:?} failed: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// MAC address of the kernel's side of the TAP.
    pub fn tap_mac(&self) -> String {
        self.exec_ok(&["cat", &format!("/sys/class/net/{}/address", self.tap)])
            .trim()
            .to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A running `blink` whose stdout lines are collected in the background.
pub struct BlinkProc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl BlinkProc {
    pub fn spawn(ns: &Netns, args: &[&str]) -> BlinkProc {
        let mut full = vec![blink()];
        full.extend_from_slice(args);
        let mut child = ns
            .cmd(&full)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn blink");
        let out = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        BlinkProc {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Wait for a stdout line containing `pat`.
    pub fn wait_line(&mut self, pat: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(pat) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line containing {pat:?} within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// SIGINT, wait for exit, return (status code, all stdout).
    pub fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait().expect("wait blink");
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(l);
        }
        (st.code(), self.seen.join("\n"))
    }
}

impl Drop for BlinkProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every size 1..=1472 to UDP port 7; each must come back byte for byte. A datagram may be
/// retried (the first can wait on ARP), but a wrong payload fails at once.
pub const UDP_SIZES_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
dst = (sys.argv[1], 7)
ok = 0
for n in range(1, 1473):
    data = bytes(((i * 31 + n * 7) ^ (i >> 8)) & 0xff for i in range(n))
    for attempt in range(3):
        s.sendto(data, dst)
        try:
            back, src = s.recvfrom(4096)
        except socket.timeout:
            continue
        if src != dst or back != data:
            print("MISMATCH size", n, "from", src, "got", len(back), "bytes")
            sys.exit(1)
        ok += 1
        break
    else:
        print("TIMEOUT size", n)
        sys.exit(1)
print("UDP_OK", ok)
"#;

impl Netns {
    /// Like [`Netns::new`], but the TAP is created `multi_queue`, so blink can open it with
    /// one queue per core (`--cores N --mode rss`). A multi-queue TAP cannot be opened
    /// single-queue (poller mode): use [`Netns::new`] for that.
    pub fn new_multi_queue(tag: &str, kernel_cidr: &str) -> Netns {
        let name = format!("blink-{tag}-{}", std::process::id());
        let _ = run(&["ip", "netns", "del", &name]);
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name,
            tap: "btap0".to_string(),
        };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns.exec_ok(&["ip", "tuntap", "add", "dev", &ns.tap, "mode", "tap", "multi_queue"]);
        ns.exec_ok(&["ip", "addr", "add", kernel_cidr, "dev", &ns.tap]);
        ns.exec_ok(&["ip", "link", "set", &ns.tap, "up"]);
        ns
    }
}

/// A total from blink's end-of-run report: the unindented `name value` line (0 if absent:
/// the report leaves zero counters out).
pub fn report_total(report: &str, name: &str) -> u64 {
    report
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// The `core N: name value name value ...` line of a multi-core report, as (name, value).
pub fn report_core(report: &str, cpu: u16) -> Vec<(String, u64)> {
    let prefix = format!("core {cpu}: ");
    let line = report
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in the report:\n{report}"));
    let toks: Vec<&str> = line.split_whitespace().collect();
    toks.chunks(2)
        .map(|kv| {
            let v = kv
                .get(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("core {cpu}: `{}` has no value: {line}", kv[0]));
            (kv[0].to_string(), v)
        })
        .collect()
}

/// Panic unless `name` is a counter blink has: reports leave zero counters out, so a
/// misspelt name would read 0 and pass every `== 0` check. MIB names (`Tcp.RetransSegs`) are
/// checked against the MIB itself; device statistics (`dpdk.*`, `impair.*`) come from the
/// driver at run time and are only checked for their prefix.
pub fn assert_counter_name(name: &str) {
    let known = blink_netcore::snmp::Mib::default().by_name(name).is_some()
        || ["dpdk.", "impair."].iter().any(|p| name.starts_with(p));
    assert!(known, "no counter named `{name}` (Section.Name, as in `blink stat`)");
}

/// One counter of one core's report line (0 if absent: the report omits zeros).
pub fn core_counter(report: &str, cpu: u16, name: &str) -> u64 {
    assert_counter_name(name);
    report_core(report, cpu)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or(0)
}

/// The `per core:` section of a multi-core report (the `core N:` and `poller` lines).
pub fn per_core_lines(report: &str) -> Vec<&str> {
    report
        .lines()
        .skip_while(|l| *l != "per core:")
        .filter(|l| l.starts_with("core ") || l.starts_with("poller ") || *l == "per core:")
        .collect()
}

/// A kernel TCP echo server on PORT: prints READY once listening, echoes one connection.
pub const ECHO_SERVER_PY: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4)
print("READY", flush=True)
c, _ = s.accept()
while True:
    d = c.recv(65536)
    if not d:
        break
    c.sendall(d)
c.close()
"#;

/// Client (IP PORT N): send N pseudo-random bytes to IP:PORT from a thread, read the echo, compare.
pub const ECHO_CLIENT_PY: &str = r#"
import socket, sys, threading, random
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(port).randbytes(n)
s = socket.create_connection((ip, port), timeout=20)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = bytearray()
while True:
    d = s.recv(65536)
    if not d:
        break
    got += d
t.join()
print("OK" if bytes(got) == data else "MISMATCH", len(got))
"#;
