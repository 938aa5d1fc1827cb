//! The `blink` command: the demo runs, and bad configuration exits with code 2 naming the field.

mod common;

use common::*;

/// `blink demo --cores 2` in both modes: the multi-core part echoes every connection and
/// datagram from both cores, each core of each host did work, and nothing is left.
#[test]
fn demo_on_two_cores_in_both_modes() {
    for mode in ["rss", "poller"] {
        let out = run(&[blink(), "demo", "--cores", "2", "--mode", mode]);
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {s}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            s.contains("200 of 200 connections and 200 of 200 datagrams echoed intact")
                && s.contains("wrong-core segments 0"),
            "{mode}: {s}"
        );
        // Fragmented datagrams and the IPIP tunnel: all back, and B shows where each was
        // reassembled, decapsulated and re-injected.
        assert!(
            s.contains("20 of 20 datagrams of 4000 B and 20 of 20 through the IPIP tunnel echoed intact"),
            "{mode}: {s}"
        );
        assert!(
            s.contains("decapsulated") && s.contains("Softnet.ReinjectRemote"),
            "{mode}: {s}"
        );
        for core in [
            "core 0: A opened 100 connections (100 echoed intact), 100 of 100 datagrams back",
            "core 1: A opened 100 connections (100 echoed intact), 100 of 100 datagrams back",
        ] {
            assert!(s.contains(core), "{mode}: {s}");
        }
        // Per-core report lines of both hosts: every core accepted connections.
        let accepted: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("core ") && l.contains("Tcp.PassiveOpens"))
            .collect();
        assert_eq!(accepted.len(), 2, "{mode}: B's two cores accepted: {s}");
        // The single-core part reports its hosts while the closing segments may still hold
        // mbufs; what counts there is the figure after both hosts stopped. The multi-core
        // hosts are reported after they stopped, so each must be at 0.
        assert!(s.contains("mbufs in use after both hosts stopped: 0"), "{mode}: {s}");
        let multi = s.split_once("== multi-core host A ==").map(|(_, m)| m).unwrap_or("");
        let in_use: Vec<&str> = multi.lines().filter(|l| l.starts_with("mbufs in use")).collect();
        assert_eq!(in_use, ["mbufs in use: 0", "mbufs in use: 0"], "{mode}: {s}");
    }
}

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
    assert!(
        s.contains("tcp echo 10.0.0.2:7: 1048576 of 1048576 bytes back, intact"),
        "{s}"
    );
    assert!(
        s.contains("Tcp.ActiveOpens 1") && s.contains("Tcp.PassiveOpens 1"),
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
    expect_usage(&["echo", "--dev", "tap:x", "--ip", "10.0.0.0/24"], "--ip");
    expect_usage(&["echo", "--dev", "tap:x", "--ip", "10.0.0.255/24"], "--ip");
    // Malformed tunnel specs are refused before any device is opened.
    for bad in [
        "vxlan:10.0.0.9:10.9.0.1/30",
        "ipip:10.0.0.9",
        "gre:10.0.0.9:10.9.0.1/30,key=x",
    ] {
        expect_usage(
            &["echo", "--dev", "tap:x", "--ip", "10.0.0.1/24", "--tunnel", bad],
            "--tunnel",
        );
    }
    expect_usage(&["echo", "--dev", "tap:x", "--ip", "10.0.0.1"], "--ip");
    // The form expected is said once, not once per layer.
    let out = run(&[blink(), "echo", "--dev", "tap:x", "--ip", "10.0.0.1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("expected A.B.C.D/LEN").count(), 1, "{err}");
    // echo, httpd and load need a device of their own: no silent default to the demo's wire.
    for cmd in ["echo", "httpd", "load"] {
        let mut args = vec![cmd, "--ip", "10.0.0.1/24"];
        match cmd {
            "load" => args.extend_from_slice(&["--url", "http://10.0.0.2/"]),
            "httpd" => args.extend_from_slice(&["--size", "10"]),
            _ => {}
        }
        expect_usage(&args, "--dev");
    }
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
    // Several ports: one TAP each (`--dev tap:A,tap:B`); a line for a port with no device
    // names the port and the devices there are.
    std::fs::write(
        &cfg,
        "0 10.0.0.1 255.255.255.0\n1 10.0.1.1 255.255.255.0\n2 10.0.2.1 255.255.255.0\n",
    )
    .unwrap();
    expect_usage(
        &["echo", "--dev", "tap:x,tap:y", "--config", cfg.to_str().unwrap()],
        "port 2: no such port (2 device(s): tap:x,tap:y)",
    );
    expect_usage(&["echo", "--dev", "tap:x,y", "--ip", "10.0.0.1/24"], "--dev: `y`");
    expect_usage(&["echo", "--dev", "tap:x,tap:x", "--ip", "10.0.0.1/24"], "given twice");
    // One kernel TAP per port: as many --kernel-if names as ports.
    expect_usage(
        &[
            "echo",
            "--dev",
            "tap:x,tap:y",
            "--ip",
            "10.0.0.1/24",
            "--to-kernel",
            "tcp:22",
            "--kernel-if",
            "k0",
        ],
        "--kernel-if: 2 port(s) need 2 name(s)",
    );
    expect_usage(
        &[
            "echo",
            "--dev",
            "tap:x,tap:y",
            "--ip",
            "10.0.0.1/24",
            "--to-kernel",
            "tcp:22",
            "--kernel-if",
            "k0,y",
        ],
        "blink's own device",
    );
    let _ = std::fs::remove_file(&cfg);
}

/// The exception path's options and the config file's other lines are checked before any
/// device is opened (no root needed): a malformed rule, a bad interface name, `--kernel-if`
/// alone, the demo's wire, and config lines that are malformed, unknown, for a port that does
/// not exist, or off every connected network each exit 2 naming what is wrong.
#[test]
fn bad_exception_path_and_config_lines_exit_2_naming_them() {
    let base = ["echo", "--dev", "tap:x", "--ip", "10.0.0.1/24"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { base.iter().chain(extra).copied().collect() };
    for (rules, says) in [
        ("tcp:99999", "`tcp:99999`"),
        ("udp:68-67", "range 68-67"),
        ("proto:256", "`proto:256`"),
        ("ssh", "`ssh` is not a rule"),
        ("", "no rules"),
    ] {
        expect_usage(&with(&["--to-kernel", rules]), says);
        expect_usage(&with(&["--to-kernel", rules]), "--to-kernel");
    }
    expect_usage(
        &with(&["--to-kernel", "tcp:22", "--kernel-if", "a-name-far-too-long"]),
        "--kernel-if",
    );
    expect_usage(&with(&["--kernel-if", "kni0"]), "only meaningful with --to-kernel");
    expect_usage(
        &with(&["--to-kernel", "tcp:22", "--kernel-if", "x"]),
        "blink's own device",
    );
    expect_usage(&["demo", "--to-kernel", "tcp:22"], "--to-kernel");

    let cfg = std::env::temp_dir().join(format!("blink-bad-exc-config-{}", std::process::id()));
    let path = cfg.to_str().unwrap().to_string();
    for (text, says) in [
        (
            "0 10.0.0.1 255.255.255.0\nto-kernel tcp:22,bogus\n",
            "line 2: to-kernel: `bogus`",
        ),
        ("0 10.0.0.1 255.255.255.0\n2 10.0.1.1 255.255.255.0\n", "port 2"),
        (
            "0 10.0.0.1 255.255.255.0\narp 10.0.0.9 02:00:00:00:00\n",
            "line 2: arp: field `mac`",
        ),
        (
            "0 10.0.0.1 255.255.255.0\narp 10.9.0.9 02:00:00:00:00:09\n",
            "arp 10.9.0.9",
        ),
        (
            "0 10.0.0.1 255.255.255.0\nroute 10.8.0.0/16 via 10.9.0.1\n",
            "gateway 10.9.0.1",
        ),
        (
            "0 10.0.0.1 255.255.255.0\nroute 10.8.0.0/16 10.0.0.9\n",
            "line 2: expected `route",
        ),
        (
            "0 10.0.0.1 255.255.255.0\nkernel-if kni0\n",
            "only meaningful with --to-kernel",
        ),
        (
            "0 10.0.0.1 255.255.255.0\nmtu 9000\n",
            "line 2: `mtu` is not a config line",
        ),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let args = ["echo", "--dev", "tap:x", "--config", path.as_str()];
        expect_usage(&args, says);
        expect_usage(&args, "--config");
    }
    let _ = std::fs::remove_file(&cfg);
}

/// The multi-core options are checked before any device is opened (no root needed): a core
/// count of 0 or above the CPUs this process may use, and an unknown steering mode.
#[test]
fn bad_core_options_exit_2_and_name_the_field() {
    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let base = [
            "echo",
            "--dev",
            "tap:x",
            "--ip",
            "10.0.0.1/24",
            "--tcp",
            "7",
            "--udp",
            "7",
        ];
        base.iter().chain(extra).copied().collect()
    }
    expect_usage(&with(&["--cores", "0"]), "--cores: must be at least 1");
    // More cores than this process may run on (the affinity mask, as blink counts them).
    let cpus = blink_glue::runtime::allowed_cpus().len();
    let too_many = (cpus + 1).max(64).to_string();
    expect_usage(&with(&["--cores", &too_many]), "--cores");
    expect_usage(&with(&["--cores", &too_many]), "cores requested");
    expect_usage(&with(&["--cores", &too_many, "--mode", "poller"]), "--cores");
    // Unknown mode: refused by the argument parser, which names the option and the choices.
    expect_usage(&with(&["--mode", "bogus"]), "--mode");
    expect_usage(&with(&["--cores", "2", "--mode", "bogus"]), "rss");
    expect_usage(&with(&["--mode", ""]), "--mode");
    // Not a number of cores at all.
    // (`--cores -1` would be taken for an unknown flag `-1`: give the value with `=`.)
    expect_usage(&with(&["--cores=-1"]), "--cores");
    expect_usage(&with(&["--cores", "two"]), "--cores");
}

/// `--mode poller` on a device with several queues used as one: the CLI cannot produce it
/// (blink opens a TAP single-queue in poller mode), so the glue builder's check is exercised
/// directly: the error names the field `mode` (which the CLI reports as `--mode`).
#[test]
fn poller_mode_refuses_a_multi_queue_device() {
    use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
    use blink_glue::netcore::netdevice::NetDevice;
    use blink_glue::netcore::EthAddr;
    use blink_glue::{Glue, GlueBuilder, GlueError, Steering};

    let two_queues = || {
        let cfg = WireConfig {
            queues: 2,
            ..Default::default()
        };
        wire_pair(
            ("a", "b"),
            (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
            &cfg,
        )
        .0
    };
    let config_err = |r: Result<Vec<Glue<()>>, GlueError>| -> (String, String) {
        match r {
            Err(GlueError::Config { field, msg }) => (field, msg),
            Err(e) => panic!("expected a configuration error, got {e}"),
            Ok(_) => panic!("poller mode built on a 2-queue device"),
        }
    };
    let mut core_counts = vec![1u16];
    if blink_glue::runtime::allowed_cpus().len() >= 2 {
        core_counts.push(2);
    }
    for cores in core_counts {
        // One handle driving both queues.
        let dev = two_queues();
        assert_eq!(dev.nb_queues(), 2);
        let (field, msg) = config_err(
            GlueBuilder::new()
                .device(Box::new(dev))
                .addr("10.0.0.1/24".parse().unwrap())
                .pool_size(1024)
                .cores(cores)
                .mode(Steering::Poller)
                .build_cores(),
        );
        assert_eq!(field, "mode", "{cores} core(s): {msg}");
        assert!(msg.contains("2 queue(s)") && msg.contains("rss"), "{msg}");
        // One handle per queue, given to a poller that drives one device.
        let queues: Vec<Box<dyn NetDevice>> = two_queues()
            .into_queues()
            .into_iter()
            .map(|q| Box::new(q) as Box<dyn NetDevice>)
            .collect();
        let (field, msg) = config_err(
            GlueBuilder::new()
                .device_queues(queues)
                .addr("10.0.0.1/24".parse().unwrap())
                .pool_size(1024)
                .cores(cores)
                .mode(Steering::Poller)
                .build_cores(),
        );
        assert_eq!(field, "mode", "{cores} core(s): {msg}");
        assert!(msg.contains("rss"), "{msg}");
    }
    // The same device in rss mode with one core per queue is fine.
    if blink_glue::runtime::allowed_cpus().len() >= 2 {
        let queues: Vec<Box<dyn NetDevice>> = two_queues()
            .into_queues()
            .into_iter()
            .map(|q| Box::new(q) as Box<dyn NetDevice>)
            .collect();
        let cores: Vec<Glue<()>> = GlueBuilder::new()
            .device_queues(queues)
            .addr("10.0.0.1/24".parse().unwrap())
            .pool_size(1024)
            .cores(2)
            .mode(Steering::Rss)
            .build_cores()
            .expect("rss on 2 queues");
        assert_eq!(cores.len(), 2);
    }
}

#[test]
fn bench_prints_json_for_every_workload() {
    let out = run(&[
        blink(),
        "bench",
        "--secs",
        "0.2",
        "--json",
        "--workloads",
        "bulk,rr,crr,udp,frag,fragflood",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.starts_with("{\"results\": ["), "{s}");
    for w in ["bulk", "rr", "crr", "udp", "frag", "fragflood"] {
        assert!(
            s.contains(&format!("\"workload\": \"{w}\", \"peer\": \"blink\"")),
            "{s}"
        );
    }
    // With checksum offload on the wire every byte is still verified by the bench itself.
    let out = run(&[
        blink(),
        "bench",
        "--secs",
        "0.1",
        "--offload",
        "--workloads",
        "bulk,udp",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.contains("checksum offload"), "{s}");
    expect_usage(&["bench", "--workloads", "bogus"], "--workloads");
}

/// `blink bench --quick --peer blink,smoltcp`: every workload on both peers, each with its
/// frames and CPU per unit of work; a workload smoltcp cannot run is left out of the JSON and
/// shown as n/a in the table; an unknown peer exits 2 naming `--peer`.
#[test]
fn bench_runs_every_workload_on_blink_and_smoltcp() {
    let out = run(&[
        blink(),
        "bench",
        "--quick",
        "--peer",
        "blink,smoltcp",
        "--json",
        "--secs",
        "0.2",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.starts_with("{\"results\": ["), "{s}");
    for w in ["bulk", "rr", "crr", "udp", "frag"] {
        for peer in ["blink", "smoltcp"] {
            let key = format!("\"workload\": \"{w}\", \"peer\": \"{peer}\", \"value\": ");
            let at = s.find(&key).unwrap_or_else(|| panic!("{w} on {peer} missing: {s}"));
            let rest = &s[at + key.len()..];
            let value: f64 = rest[..rest.find(',').expect("more fields")].parse().expect("a number");
            assert!(value > 0.0, "{w} on {peer}: {s}");
            let entry = &rest[..rest.find('}').expect("end of entry")];
            assert!(
                entry.contains("\"frames_per_unit\": ") && !entry.contains("null"),
                "{w} on {peer}: {entry}"
            );
            assert!(entry.contains("\"cpu_us_per_unit\": "), "{w} on {peer}: {entry}");
        }
    }
    // The text table: a ratio column, and n/a for what smoltcp cannot run.
    let out = run(&[
        blink(),
        "bench",
        "--quick",
        "--secs",
        "0.1",
        "--workloads",
        "udp,fragflood",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.contains("blink/smoltcp"), "{s}");
    assert!(s.contains("frames/dgram") && s.contains("CPU-us/dgram"), "{s}");
    assert!(s.contains("n/a (blink only)"), "{s}");
    expect_usage(&["bench", "--peer", "nonsense"], "--peer");
}

/// One section's counters: (section, [(name, value)]).
type Table = (String, Vec<(String, u64)>);

/// `blink stat`'s text output split per core: (core header, its tables).
fn stat_tables(s: &str) -> Vec<(String, Vec<Table>)> {
    let mut cores: Vec<(String, Vec<Table>)> = Vec::new();
    let mut names: Option<(String, Vec<String>)> = None;
    for line in s.lines() {
        if let Some(core) = line.strip_prefix("# ") {
            cores.push((core.to_string(), Vec::new()));
            continue;
        }
        let (sec, rest) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not a table line: {line}"));
        let fields: Vec<String> = rest.split_whitespace().map(String::from).collect();
        match names.take() {
            None => names = Some((sec.to_string(), fields)),
            Some((nsec, n)) => {
                assert_eq!(nsec, sec, "a names line then a values line of the same section");
                assert_eq!(n.len(), fields.len(), "{sec}: as many values as names");
                let vals = n
                    .into_iter()
                    .zip(
                        fields
                            .iter()
                            .map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{sec}: {v}"))),
                    )
                    .collect();
                cores
                    .last_mut()
                    .expect("a core header first")
                    .1
                    .push((sec.to_string(), vals));
            }
        }
    }
    assert!(names.is_none(), "a names line without values");
    cores
}

fn counter(tables: &[Table], sec: &str, name: &str) -> u64 {
    let (_, vals) = tables
        .iter()
        .find(|(s, _)| s == sec)
        .unwrap_or_else(|| panic!("no {sec}"));
    vals.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {sec}.{name}"))
        .1
}

#[test]
fn demo_stat_prints_every_table_per_core() {
    let out = run(&[blink(), "demo", "--stat"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!s.contains("ping:"), "the exchange runs quietly: {s}");
    let cores = stat_tables(&s);
    assert_eq!(cores.len(), 2, "{s}");
    assert_eq!(cores[0].0, "core 0 (host A)");
    assert_eq!(cores[1].0, "core 1 (host B)");
    for (core, tables) in &cores {
        let secs: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            secs,
            ["Ip", "Icmp", "Tcp", "Udp", "TcpExt", "Arp", "Softnet", "Exc", "Drop"],
            "{core}"
        );
    }
    let (a, b) = (&cores[0].1, &cores[1].1);
    // The demo's exchange, seen from both ends: 5 pings answered; B refused protocol 253 and
    // port 9; 4 UDP datagrams echoed; A's raw socket and B's raw echo each took one packet.
    assert_eq!(counter(a, "Icmp", "OutEchos"), 5, "{s}");
    assert_eq!(counter(a, "Icmp", "InEchoReps"), 5, "{s}");
    assert_eq!(counter(b, "Icmp", "InEchos"), 5, "{s}");
    assert_eq!(counter(b, "Icmp", "OutDestUnreachs"), 2, "{s}");
    assert_eq!(counter(a, "Icmp", "InDestUnreachs"), 2, "{s}");
    assert_eq!(counter(b, "Udp", "NoPorts"), 1, "{s}");
    assert!(counter(a, "Udp", "InDatagrams") >= 4, "{s}");
    assert!(counter(b, "Udp", "OutDatagrams") >= 4, "{s}");
    assert!(counter(a, "Ip", "InReceives") >= 12, "{s}");
}

#[test]
fn demo_stat_json_has_every_counter_per_core() {
    let out = run(&[blink(), "demo", "--stat", "--json"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    let s = s.trim();
    assert!(
        s.starts_with("{\"cores\": [{\"core\": 0, \"host\": \"A\", \"counters\": {\"Ip\": {"),
        "{s}"
    );
    assert!(
        s.contains("{\"core\": 1, \"host\": \"B\", \"counters\": {\"Ip\": {"),
        "{s}"
    );
    assert_eq!(s.lines().count(), 1, "one JSON document");
    assert_eq!(s.matches('{').count(), s.matches('}').count(), "balanced: {s}");
    for sec in ["Ip", "Icmp", "Tcp", "Udp", "TcpExt", "Arp", "Softnet", "Exc", "Drop"] {
        assert_eq!(
            s.matches(&format!("\"{sec}\": {{")).count(),
            2,
            "{sec} on both cores: {s}"
        );
    }
    // The text and JSON forms carry the same figures: B answered 5 echo requests.
    let b = &s[s.find("\"host\": \"B\"").unwrap()..];
    assert!(b.contains("\"InEchos\": 5,"), "{s}");
}

/// `blink stat|ss|neigh|link` read a running instance: with none running they say so and exit
/// 1; a bad --name is a usage error (2).
#[test]
fn live_commands_without_an_instance_exit_1() {
    for cmd in ["stat", "ss", "neigh", "link"] {
        let out = run(&[blink(), cmd, "no-such-blink-instance"]);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {e}");
        assert!(e.contains("no running blink"), "{cmd}: {e}");
    }
    let out = run(&[
        blink(),
        "echo",
        "--dev",
        "tap:x",
        "--ip",
        "10.0.0.1/24",
        "--name",
        "a/b",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--name"));
}
