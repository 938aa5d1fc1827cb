//! `blink httpd --dev dpdk` and `blink load --dev dpdk` on DPDK's net_tap vdev against the Linux
//! kernel, each in a network namespace the test creates (EAL runs inside it, so the vdev's
//! kernel-side interface appears there). No hugepages: EAL runs with `--no-huge -m 512`.
//! Compiled only with the `dpdk` feature.
#![cfg(feature = "dpdk")]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn eal(tag: &str, iface: &str) -> String {
    format!(
        "--no-huge -m 512 --no-pci --vdev=net_tap0,iface={iface} -l 0 --file-prefix=blink-{tag}-{} --no-telemetry",
        std::process::id()
    )
}

/// A namespace with loopback up; `tap`, if given, is made there first (multi-queue, as
/// net_tap opens it) with `kernel_cidr`, so the kernel side is ready before blink starts.
fn netns(tag: &str, tap: Option<(&str, &str)>) -> Netns {
    let name = format!("blink-{tag}-{}", std::process::id());
    let _ = run(&["ip", "netns", "del", &name]);
    run_ok(&["ip", "netns", "add", &name]);
    let ns = Netns {
        name,
        tap: tap.map_or("dtap", |t| t.0).to_string(),
    };
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    if let Some((iface, cidr)) = tap {
        ns.exec_ok(&["ip", "tuntap", "add", "dev", iface, "mode", "tap", "multi_queue"]);
        ns.exec_ok(&["ip", "addr", "add", cidr, "dev", iface]);
        ns.exec_ok(&["ip", "link", "set", iface, "up"]);
    }
    ns
}

/// A counter from blink's end-of-run report (`  name value` lines; zero ones are omitted).
fn counter(report: &str, name: &str) -> u64 {
    report
        .lines()
        .filter_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// The value of `ab`'s `key:` line.
fn ab_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{key}` in ab output:\n{out}"))
}

#[test]
fn dpdk_httpd_serves_curl_and_ab() {
    if !require_root("dpdk_httpd_serves_curl_and_ab") {
        return;
    }
    let (net, iface) = (81, "dtap81");
    let ns = netns("dpdkhttpd", None);
    let eal = eal("dpdkhttpd", iface);
    let ip = format!("10.200.{net}.2/24");
    let name = format!("dpdkhttpd-{}", std::process::id());
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "httpd",
            "--dev",
            "dpdk",
            "--eal",
            &eal,
            "--ip",
            &ip,
            "--port",
            "80",
            "--size",
            "1024",
            "--duration",
            "300",
            "--name",
            &name,
        ],
    );
    b.wait_line("blink httpd", Duration::from_secs(60));
    // The kernel side of net_tap exists once EAL is up.
    ns.exec_ok(&["ip", "addr", "add", &format!("10.200.{net}.1/24"), "dev", iface]);
    ns.exec_ok(&["ip", "link", "set", iface, "up"]);
    let url = format!("http://10.200.{net}.2/any/path");
    let curl = ns.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        &url,
    ]);
    let got = String::from_utf8_lossy(&curl.stdout).into_owned();
    assert!(
        curl.status.success(),
        "curl: {got} {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert_eq!(got, "200 1024");

    let url = format!("http://10.200.{net}.2/");
    let t0 = Instant::now();
    let ab = ns.exec(&["timeout", "120", "ab", "-q", "-n", "5000", "-c", "20", "-s", "20", &url]);
    let secs = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&ab.stdout).into_owned();
    let (code, stdout) = b.stop();
    assert!(
        ab.status.success(),
        "ab failed: {}\n{text}\nblink:\n{stdout}",
        String::from_utf8_lossy(&ab.stderr)
    );
    assert_eq!(ab_field(&text, "Complete requests"), "5000", "{text}");
    assert_eq!(ab_field(&text, "Failed requests"), "0", "{text}\nblink:\n{stdout}");
    assert!(!text.contains("Non-2xx responses"), "{text}");
    assert_eq!(ab_field(&text, "Document Length"), "1024 bytes");
    eprintln!(
        "dpdk httpd: ab -n 5000 -c 20: {} requests/s ({secs:.1} s)",
        ab_field(&text, "Requests per second")
    );
    assert_eq!(code, Some(0), "{stdout}");
    // Every request went through the DPDK port (5,000 connections: several frames each).
    assert!(counter(&stdout, "dpdk.ipackets") > 15_000, "{stdout}");
    assert!(counter(&stdout, "dpdk.opackets") > 15_000, "{stdout}");
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");
}

#[test]
fn dpdk_load_against_kernel_http_server() {
    if !require_root("dpdk_load_against_kernel_http_server") {
        return;
    }
    let (net, iface) = (82, "dtap82");
    // The TAP is made (and addressed) before blink: load starts connecting at once, and
    // net_tap takes over an existing interface of its name.
    let ns = netns("dpdkload", Some((iface, &format!("10.200.{net}.1/24"))));
    let dir = std::env::temp_dir().join(format!("blink-dpdkload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f.bin");
    run_ok(&["sh", "-c", &format!("head -c 200000 /dev/urandom > {}", file.display())]);
    let sha = run_ok(&["sha256sum", file.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let mut server = ns
        .cmd(&[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            &format!("10.200.{net}.1"),
            "--directory",
            dir.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 http.server");
    let t0 = Instant::now();
    while !ns.exec_ok(&["ss", "-ltn"]).contains(":8000") {
        assert!(t0.elapsed() < Duration::from_secs(15), "http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let eal = eal("dpdkload", iface);
    let ip = format!("10.200.{net}.2/24");
    let url = format!("http://10.200.{net}.1:8000/f.bin");
    let name = format!("dpdkload-{}", std::process::id());
    // http.server speaks HTTP/1.0 and closes after each response (--keepalive 4 carries the
    // rest on new connections), and listens with a backlog of 5: -c 4 stays under it.
    let out = ns.exec(&[
        blink(),
        "load",
        "--dev",
        "dpdk",
        "--eal",
        &eal,
        "--ip",
        &ip,
        "--url",
        &url,
        "-n",
        "400",
        "-c",
        "4",
        "--keepalive",
        "4",
        "--sha256",
        "--timeout",
        "100",
        "--name",
        &name,
    ]);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "blink load failed:\n{text}\n{err}");
    assert!(
        format!("{text}{err}").contains("dpdk: port 0 (net_tap)"),
        "went through DPDK:\n{text}\n{err}"
    );
    assert!(text.contains("requests: 400 ok, 0 failed"), "{text}\n{err}");
    assert!(text.contains("(0 sha256 mismatches)"), "{text}");
    assert!(text.contains(&format!("sha256: {sha}")), "expected {sha}:\n{text}");
    assert!(text.contains("bytes: 80000000 body"), "{text}");
    eprintln!("{}", text.lines().find(|l| l.starts_with("requests/s")).unwrap_or(""));
}
