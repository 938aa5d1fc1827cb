//! HTTP between the Linux kernel and blink through a TAP device in a namespace the test
//! creates: curl and ab against `blink httpd`, and `blink load` against python's http.server.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn sha256_file(path: &Path) -> String {
    let out = run_ok(&["sha256sum", path.to_str().unwrap()]);
    out.split_whitespace().next().unwrap_or_default().to_string()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("blink-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Stop blink and check it exited cleanly with every buffer back.
fn stop_clean(b: BlinkProc) -> String {
    let (code, stdout) = b.stop();
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("mbufs in use after shutdown: 0"), "{stdout}");
    stdout
}

/// The value of `ab`'s `key:` line.
fn ab_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{key}` in ab output:\n{out}"))
}

#[test]
fn curl_fetches_files_from_blink_httpd_root() {
    if !require_root("curl_fetches_files_from_blink_httpd_root") {
        return;
    }
    let net = 21;
    let ns = Netns::new("httproot", &format!("10.200.{net}.1/24"));
    let dir = temp_dir("httproot");
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    run_ok(&[
        "sh",
        "-c",
        &format!("head -c 3000000 /dev/urandom > {}", root.join("file.bin").display()),
    ]);
    std::fs::write(root.join("a.txt"), b"first\n").unwrap();
    std::fs::write(root.join("b.txt"), b"second\n").unwrap();
    std::fs::write(dir.join("secret"), b"outside the root\n").unwrap();
    let tap = format!("tap:{}", ns.tap);
    let ip = format!("10.200.{net}.2/24");
    let root_s = root.to_str().unwrap();
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "httpd",
            "--dev",
            &tap,
            "--ip",
            &ip,
            "--port",
            "8080",
            "--root",
            root_s,
            "--duration",
            "120",
        ],
    );
    b.wait_line("blink httpd", Duration::from_secs(10));
    let base = format!("http://10.200.{net}.2:8080");
    let got = dir.join("got.bin");
    ns.exec_ok(&[
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "30",
        "-o",
        got.to_str().unwrap(),
        &format!("{base}/file.bin"),
    ]);
    assert_eq!(
        sha256_file(&got),
        sha256_file(&root.join("file.bin")),
        "file.bin differs"
    );
    let code = |path: &str, extra: &[&str]| {
        let url = format!("{base}{path}");
        let mut args = vec![
            "curl",
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        ns.exec_ok(&args)
    };
    assert_eq!(code("/missing", &[]), "404");
    assert_eq!(code("/../secret", &["--path-as-is"]), "403", "path traversal refused");
    assert_eq!(code("/%2e%2e/secret", &["--path-as-is"]), "403");
    assert_eq!(code("/a.txt", &["-I"]), "200", "HEAD");
    // HTTP/1.1 keep-alive: curl reuses one connection for two URLs.
    let both = ns.exec_ok(&[
        "curl",
        "-sS",
        "-v",
        "--max-time",
        "10",
        &format!("{base}/a.txt"),
        &format!("{base}/b.txt"),
    ]);
    assert_eq!(both, "first\nsecond\n");
    // Pipelined requests answered in order; `Connection: close` honoured on the last one.
    let pipelined = "GET /b.txt HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /a.txt HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /b.txt HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n";
    let out = ns.exec_ok(&[
        "sh",
        "-c",
        &format!("printf '{pipelined}' | timeout 10 nc 10.200.{net}.2 8080"),
    ]);
    let bodies: Vec<&str> = out
        .split("\r\n\r\n")
        .skip(1)
        .map(|s| s.split("HTTP/1.1").next().unwrap_or(""))
        .collect();
    assert_eq!(
        bodies,
        vec!["second\n", "first\n", "second\n"],
        "responses out of order:\n{out}"
    );
    assert_eq!(out.matches("Connection: close").count(), 1, "{out}");
    // Garbage gets a 400 and the connection is closed (nc returns without -N).
    let bad = ns.exec_ok(&[
        "sh",
        "-c",
        &format!("printf '\\001\\002 nonsense\\r\\n\\r\\n' | timeout 10 nc 10.200.{net}.2 8080"),
    ]);
    assert!(bad.starts_with("HTTP/1.1 400 Bad Request"), "{bad}");
    let stdout = stop_clean(b);
    assert!(stdout.contains("404") || stdout.contains("4xx"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn ab_against_blink_httpd(tag: &str, net: u8, keepalive: bool) {
    let ns = Netns::new(tag, &format!("10.200.{net}.1/24"));
    let tap = format!("tap:{}", ns.tap);
    let ip = format!("10.200.{net}.2/24");
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "httpd",
            "--dev",
            &tap,
            "--ip",
            &ip,
            "--port",
            "80",
            "--size",
            "1024",
            "--duration",
            "120",
        ],
    );
    b.wait_line("blink httpd", Duration::from_secs(10));
    let url = format!("http://10.200.{net}.2/");
    let mut args = vec!["timeout", "90", "ab", "-q", "-n", "20000", "-c", "50", "-s", "20"];
    if keepalive {
        args.push("-k");
    }
    args.push(&url);
    let t0 = Instant::now();
    let out = ns.exec(&args);
    let secs = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stdout = stop_clean(b);
    assert!(
        out.status.success(),
        "ab failed: {}\n{text}\nblink:\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ab_field(&text, "Complete requests"), "20000", "{text}");
    assert_eq!(ab_field(&text, "Failed requests"), "0", "{text}\nblink:\n{stdout}");
    assert!(!text.contains("Non-2xx responses"), "{text}");
    assert_eq!(ab_field(&text, "Document Length"), "1024 bytes");
    if keepalive {
        assert_eq!(ab_field(&text, "Keep-Alive requests"), "20000", "{text}");
    }
    eprintln!(
        "{tag}: ab -n 20000 -c 50{}: {} requests/s ({secs:.1} s)",
        if keepalive { " -k" } else { "" },
        ab_field(&text, "Requests per second")
    );
}

#[test]
fn ab_keepalive_against_blink_httpd() {
    if !require_root("ab_keepalive_against_blink_httpd") {
        return;
    }
    ab_against_blink_httpd("httpab-k", 22, true);
}

#[test]
fn ab_new_connection_per_request_against_blink_httpd() {
    if !require_root("ab_new_connection_per_request_against_blink_httpd") {
        return;
    }
    ab_against_blink_httpd("httpab", 23, false);
}

#[test]
fn bad_usage_exits_2_naming_the_option() {
    let out = run(&[blink(), "httpd", "--port", "80"]);
    assert_eq!(out.status.code(), Some(2), "httpd needs --size or --root");
    let out = run(&[blink(), "httpd", "--size", "10", "--root", "/tmp"]);
    assert_eq!(out.status.code(), Some(2), "--size and --root exclude each other");
    let out = run(&[
        blink(),
        "httpd",
        "--size",
        "10",
        "--dev",
        "wire",
        "--ip",
        "10.200.9.2/24",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dev wire"));
    for (url, what) in [
        ("https://10.200.9.1/", "http://"),
        ("http://example.org/", "IPv4"),
        ("http://10.200.9.1:x/", "port"),
    ] {
        let out = run(&[blink(), "load", "--url", url, "--dev", "tap:x", "--ip", "10.200.9.2/24"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--url") && err.contains(what), "{url}: {err}");
    }
    let out = run(&[
        blink(),
        "load",
        "--url",
        "http://10.200.9.1/",
        "-n",
        "0",
        "--dev",
        "tap:x",
        "--ip",
        "10.200.9.2/24",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn blink_load_against_python_http_server() {
    if !require_root("blink_load_against_python_http_server") {
        return;
    }
    let net = 24;
    let ns = Netns::new("httpload", &format!("10.200.{net}.1/24"));
    let dir = temp_dir("httpload");
    let file = dir.join("f.bin");
    run_ok(&["sh", "-c", &format!("head -c 200000 /dev/urandom > {}", file.display())]);
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
    let tap = format!("tap:{}", ns.tap);
    let ip = format!("10.200.{net}.2/24");
    let url = format!("http://10.200.{net}.1:8000/f.bin");
    // --keepalive 4: http.server speaks HTTP/1.0 and closes after each response, so load
    // must carry the rest of each connection's requests on new connections.
    let out = ns.exec(&[
        blink(),
        "load",
        "--dev",
        &tap,
        "--ip",
        &ip,
        "--url",
        &url,
        "-n",
        "400",
        "-c",
        // http.server listens with a backlog of 5: stay under it.
        "4",
        "--keepalive",
        "4",
        "--sha256",
        "--timeout",
        "50",
    ]);
    // The same as one JSON object.
    let json = ns.exec(&[
        blink(),
        "load",
        "--dev",
        &tap,
        "--ip",
        &ip,
        "--url",
        &url,
        "-n",
        "40",
        "-c",
        "4",
        "--sha256",
        "--json",
        "--name",
        "loadjson",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    // Nobody listens any more: the kernel refuses every connection, and load says so.
    let refused = ns.exec(&[
        blink(),
        "load",
        "--dev",
        &tap,
        "--ip",
        &ip,
        "--url",
        &url,
        "-n",
        "5",
        "-c",
        "1",
        "--timeout",
        "20",
        "--name",
        "loadrefused",
    ]);
    let rtext = String::from_utf8_lossy(&refused.stdout).into_owned();
    let rerr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{rtext}\n{rerr}");
    assert!(rtext.contains("requests: 0 ok, 5 failed: refused 5"), "{rtext}");
    assert!(rerr.contains("5 requests failed (refused 5)"), "{rerr}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "blink load failed:\n{text}\n{err}");
    assert!(text.contains("requests: 400 ok, 0 failed"), "{text}");
    let j = String::from_utf8_lossy(&json.stdout).into_owned();
    // stdout is the JSON document alone.
    assert_eq!(j.lines().count(), 1, "{j}");
    let line = j.trim();
    assert!(json.status.success(), "{j}");
    assert!(
        line.contains("\"requests_ok\": 40, \"failed\": 0, \"failures\": {\"connect\": 0, \"refused\": 0,"),
        "{line}"
    );
    assert!(line.contains("\"body_bytes\": 8000000,"), "{line}");
    assert!(
        line.contains(&format!("\"sha256\": \"{}\"", sha256_file(&file))),
        "{line}"
    );
    let sha = sha256_file(&file);
    assert!(
        text.contains(&format!("sha256: {sha}")),
        "expected sha256 {sha}:\n{text}"
    );
    assert!(text.contains("bytes: 80000000 body"), "{text}");
    eprintln!("{}", text.lines().find(|l| l.starts_with("requests/s")).unwrap_or(""));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The namespace for `--mode`: rss opens one TAP queue per core, so the TAP must be
/// multi-queue; poller mode opens a single queue, which a multi-queue TAP refuses.
fn netns_for(mode: &str, tag: &str, kernel_cidr: &str) -> Netns {
    if mode == "rss" {
        Netns::new_multi_queue(tag, kernel_cidr)
    } else {
        Netns::new(tag, kernel_cidr)
    }
}

/// The per-core counters a test prints, for the log.
fn core_line(out: &str, core: u16) -> String {
    [
        "Tcp.ActiveOpens",
        "Tcp.PassiveOpens",
        "Softnet.Processed",
        "Softnet.RssForwarded",
        "Softnet.ReceivedRps",
        "Softnet.WrongCore",
    ]
    .iter()
    .map(|k| format!("{k} {}", core_counter(out, core, k)))
    .collect::<Vec<_>>()
    .join(" ")
}

fn blink_load_two_cores(mode: &str, net: u8) {
    let ns = netns_for(mode, &format!("httpload2{mode}"), &format!("10.200.{net}.1/24"));
    let dir = temp_dir(&format!("httpload2{mode}"));
    let file = dir.join("f.bin");
    run_ok(&["sh", "-c", &format!("head -c 100000 /dev/urandom > {}", file.display())]);
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
    let tap = format!("tap:{}", ns.tap);
    let ip = format!("10.200.{net}.2/24");
    let url = format!("http://10.200.{net}.1:8000/f.bin");
    // -c 4 (2 per core) stays under http.server's backlog of 5; HTTP/1.0 closes after each
    // response, so every request is a connection of its own.
    let out = ns.exec(&[
        blink(),
        "load",
        "--dev",
        &tap,
        "--ip",
        &ip,
        "--cores",
        "2",
        "--mode",
        mode,
        "--url",
        &url,
        "-n",
        "400",
        "-c",
        "4",
        "--keepalive",
        "2",
        "--sha256",
        "--timeout",
        "50",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    // Nobody listens any more: the kernel refuses every connection, and load says so.
    let refused = ns.exec(&[
        blink(),
        "load",
        "--dev",
        &tap,
        "--ip",
        &ip,
        "--url",
        &url,
        "-n",
        "5",
        "-c",
        "1",
        "--timeout",
        "20",
        "--name",
        "loadrefused",
    ]);
    let rtext = String::from_utf8_lossy(&refused.stdout).into_owned();
    let rerr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{rtext}\n{rerr}");
    assert!(rtext.contains("requests: 0 ok, 5 failed: refused 5"), "{rtext}");
    assert!(rerr.contains("5 requests failed (refused 5)"), "{rerr}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "blink load --cores 2 --mode {mode} failed:\n{text}\n{err}"
    );
    assert!(text.contains("requests: 400 ok, 0 failed"), "{text}");
    let sha = sha256_file(&file);
    assert!(
        text.contains(&format!("sha256: {sha}")),
        "expected sha256 {sha}:\n{text}"
    );
    assert!(text.contains("bytes: 40000000 body"), "{text}");
    assert!(text.contains("per core:"), "{text}");
    for core in 0..2 {
        assert!(
            core_counter(&text, core, "Tcp.ActiveOpens") > 0,
            "core {core} opened no connection:\n{text}"
        );
        assert_eq!(core_counter(&text, core, "Softnet.WrongCore"), 0, "{text}");
    }
    eprintln!(
        "load --cores 2 --mode {mode}: {}\n  core 0: {}\n  core 1: {}",
        text.lines().find(|l| l.starts_with("requests/s")).unwrap_or(""),
        core_line(&text, 0),
        core_line(&text, 1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn blink_load_two_cores_rss_against_python_http_server() {
    if !require_root("blink_load_two_cores_rss_against_python_http_server") {
        return;
    }
    blink_load_two_cores("rss", 25);
}

#[test]
fn blink_load_two_cores_poller_against_python_http_server() {
    if !require_root("blink_load_two_cores_poller_against_python_http_server") {
        return;
    }
    blink_load_two_cores("poller", 26);
}

fn ab_against_two_core_httpd(mode: &str, net: u8) {
    let ns = netns_for(mode, &format!("httpab2{mode}"), &format!("10.200.{net}.1/24"));
    let tap = format!("tap:{}", ns.tap);
    let ip = format!("10.200.{net}.2/24");
    let mut b = BlinkProc::spawn(
        &ns,
        &[
            "httpd",
            "--dev",
            &tap,
            "--ip",
            &ip,
            "--cores",
            "2",
            "--mode",
            mode,
            "--port",
            "80",
            "--size",
            "1024",
            "--duration",
            "120",
        ],
    );
    b.wait_line("blink httpd", Duration::from_secs(10));
    // A new connection per request: 20000 connections spread over both cores by their hash.
    let url = format!("http://10.200.{net}.2/");
    let t0 = Instant::now();
    let out = ns.exec(&["timeout", "90", "ab", "-q", "-n", "20000", "-c", "50", "-s", "20", &url]);
    let secs = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stdout = stop_clean(b);
    assert!(
        out.status.success(),
        "ab failed: {}\n{text}\nblink:\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ab_field(&text, "Complete requests"), "20000", "{text}");
    assert_eq!(ab_field(&text, "Failed requests"), "0", "{text}\nblink:\n{stdout}");
    assert!(!text.contains("Non-2xx responses"), "{text}");
    // ab opens a few connections more than it needs at the end (it does with one core too):
    // they are accepted and closed without a request.
    assert!(
        stdout.contains(" connections, 20000 requests (20000 2xx, 0 4xx/5xx)"),
        "{stdout}"
    );
    let conns: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("httpd: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no httpd: line in:\n{stdout}"));
    assert!(conns >= 20000, "{stdout}");
    assert!(stdout.contains("per core:"), "{stdout}");
    let mut opens = 0;
    for core in 0..2 {
        let n = core_counter(&stdout, core, "Tcp.PassiveOpens");
        assert!(n > 0, "core {core} accepted nothing:\n{stdout}");
        assert_eq!(core_counter(&stdout, core, "Softnet.WrongCore"), 0, "{stdout}");
        opens += n;
    }
    assert_eq!(opens, conns, "every connection accepted once, by one core:\n{stdout}");
    eprintln!(
        "httpd --cores 2 --mode {mode}: ab -n 20000 -c 50: {} requests/s ({secs:.1} s)\n  core 0: {}\n  core 1: {}",
        ab_field(&text, "Requests per second"),
        core_line(&stdout, 0),
        core_line(&stdout, 1)
    );
}

#[test]
fn ab_against_two_core_blink_httpd_rss() {
    if !require_root("ab_against_two_core_blink_httpd_rss") {
        return;
    }
    ab_against_two_core_httpd("rss", 27);
}

#[test]
fn ab_against_two_core_blink_httpd_poller() {
    if !require_root("ab_against_two_core_blink_httpd_poller") {
        return;
    }
    ab_against_two_core_httpd("poller", 28);
}
