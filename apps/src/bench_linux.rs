//! `blink bench --peer linux-lo` and `--peer linux-veth`: the same workloads on the Linux
//! kernel's sockets, client and server on two threads (std::net), every byte checked by the
//! same functions as blink's (bench.rs).
//!
//! - linux-lo: both ends on 127.0.0.1 in this process's network namespace.
//! - linux-veth (root only; otherwise "n/a (needs root)"): two network namespaces,
//!   `blink-bench-PID-c` and `blink-bench-PID-s`, joined by a veth pair (`bbvPIDc` /
//!   `bbvPIDs`, MTU 1500) with 10.201.0.1/24 (client) and 10.201.0.2/24 (server); nothing is
//!   ever sent to any other address. Made with iproute2's `ip` for each workload and deleted
//!   afterwards, also when the workload fails (a drop guard). The workload runs on a thread
//!   that entered the client's namespace (setns on /var/run/netns/NAME; the threads it starts
//!   inherit it); server sockets are opened after switching that thread to the server's
//!   namespace for the call, and a socket stays in the namespace it was opened in. veth keeps
//!   its default offloads (TSO/GSO), as a container's veth has.
//!
//! - bulk: SO_SNDBUF/SO_RCVBUF set to `--buf` (the kernel doubles it for its bookkeeping and
//!   turns autotuning off for the socket).
//! - rr, crr: TCP_NODELAY. crr's client closes first; a connection counts once the client
//!   has read the server's FIN, which the server sends only after reading the client's.
//! - udp: the sender does not wait for the receiver; datagrams the receiving socket drops
//!   are counted as lost, not an error (order and content are still checked).
//! - frag: 4,000-byte UDP datagrams over veth's MTU 1500 (three fragments each), sent and
//!   checked as udp's; not run on lo, whose MTU is 65536, so nothing is fragmented.
//!
//! Frames per unit: linux-lo counts lo's tx_packets over the run, the whole host's traffic on
//! lo, so another process using 127.0.0.1 at the same time adds to it; linux-veth counts the
//! client end's rx + tx packets (/proc/thread-self/net/dev in the client's namespace), where
//! a GSO/TSO super-packet counts once.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::bench::{
    check_dgram, check_msg, fill_dgram, fill_msg, BenchResult, Limit, Meter, Outcome, Pattern, Stage, FRAG_DGRAM, MSG,
    REQ, RESP,
};

/// linux-lo.
pub(crate) fn run(w: &str, lim: Limit) -> Result<Outcome, String> {
    if w == "frag" {
        return Ok(Outcome::NotApplicable("lo does not fragment"));
    }
    let net = Net {
        server_ip: Ipv4Addr::LOCALHOST,
        client_ip: Ipv4Addr::LOCALHOST,
        ns: None,
        frames: FrameCounter::Lo,
    };
    run_on(&net, w, lim)
}

/// Run workload `w` on `net`; a workload the kernel peers do not have is "blink only".
fn run_on(net: &Net, w: &str, lim: Limit) -> Result<Outcome, String> {
    let r = match w {
        "bulk" => bulk(net, lim),
        "rr" => rr(net, lim),
        "crr" => crr(net, lim),
        "udp" => udp(net, lim, 64),
        "frag" => udp(net, lim, FRAG_DGRAM),
        _ => return Ok(Outcome::NotApplicable("blink only")),
    };
    r.map(Outcome::Done)
}

/// The client's and the server's veth end.
const VETH_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const VETH_SERVER: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);

/// linux-veth: a fresh pair of namespaces for each workload, deleted afterwards.
pub(crate) fn run_veth(w: &str, lim: Limit) -> Result<Outcome, String> {
    if !matches!(w, "bulk" | "rr" | "crr" | "udp" | "frag") {
        return Ok(Outcome::NotApplicable("blink only"));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        static TOLD: std::sync::Once = std::sync::Once::new();
        TOLD.call_once(|| eprintln!("bench: linux-veth needs root (it creates network namespaces): not run"));
        return Ok(Outcome::NotApplicable("needs root"));
    }
    let pair = VethPair::create()?;
    let open = |name: &str| {
        File::open(format!("/var/run/netns/{name}")).map_err(|err| format!("linux-veth: namespace {name}: {err}"))
    };
    let net = Net {
        server_ip: VETH_SERVER,
        client_ip: VETH_CLIENT,
        ns: Some((open(&pair.ns[1])?, open(&pair.ns[0])?)),
        frames: FrameCounter::Veth(pair.client_dev.clone()),
    };
    // On a thread of its own, which enters the client's namespace: this thread (and the
    // rest of the bench) stays where it was.
    let r = thread::scope(|sc| {
        sc.spawn(|| {
            if let Some((_, client)) = &net.ns {
                enter_ns(client)?;
            }
            run_on(&net, w, lim)
        })
        .join()
    })
    .map_err(|_| "linux-veth: the workload's thread panicked".to_string())?;
    // Close the namespace files before the guard deletes the namespaces.
    drop(net);
    drop(pair);
    r
}

/// The two namespaces and the veth pair between them; dropping it deletes the namespaces
/// (and with them the veth pair), whatever happened in between.
struct VethPair {
    /// [client's, server's] namespace names; only those created are deleted.
    ns: Vec<String>,
    client_dev: String,
}

/// Run `ip ARGS`: Err with its message when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|err| format!("linux-veth: cannot run `ip` (iproute2): {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "linux-veth: `ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl VethPair {
    fn create() -> Result<VethPair, String> {
        let pid = std::process::id();
        let mut pair = VethPair {
            ns: Vec::new(),
            client_dev: format!("bbv{pid}c"),
        };
        let server_dev = format!("bbv{pid}s");
        for side in ["c", "s"] {
            let name = format!("blink-bench-{pid}-{side}");
            ip(&["netns", "add", &name])?;
            pair.ns.push(name);
        }
        let (cns, sns) = (pair.ns[0].clone(), pair.ns[1].clone());
        // Both ends are created straight into their namespaces: nothing appears in ours.
        ip(&[
            "link",
            "add",
            &pair.client_dev,
            "netns",
            &cns,
            "type",
            "veth",
            "peer",
            "name",
            &server_dev,
            "netns",
            &sns,
        ])?;
        let ends = [
            (&cns, &pair.client_dev, format!("{VETH_CLIENT}/24")),
            (&sns, &server_dev, format!("{VETH_SERVER}/24")),
        ];
        for (ns, dev, addr) in ends {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "mtu", "1500", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for name in self.ns.iter().rev() {
            if let Err(err) = ip(&["netns", "del", name]) {
                eprintln!("bench: {err} (delete it by hand: ip netns del {name})");
            }
        }
    }
}

/// Where the two ends of a kernel peer live.
struct Net {
    server_ip: Ipv4Addr,
    client_ip: Ipv4Addr,
    /// (server's, client's) network namespace when the ends live apart: the thread running
    /// the workload is in the client's and visits the server's to open server sockets.
    ns: Option<(File, File)>,
    frames: FrameCounter,
}

enum FrameCounter {
    /// lo's tx_packets (the host's).
    Lo,
    /// rx + tx packets of this veth end, read in the calling thread's namespace.
    Veth(String),
}

/// Move the calling thread into the network namespace `ns` (an nsfs file).
fn enter_ns(ns: &File) -> Result<(), String> {
    // SAFETY: setns on a valid descriptor; CLONE_NEWNET only moves this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Net {
    /// Open a server-side socket: in the server's namespace when there is one (the thread
    /// comes back to the client's afterwards; the socket stays where it was opened).
    fn on_server<T>(&self, f: impl FnOnce() -> std::io::Result<T>) -> Result<T, String> {
        let Some((server, client)) = &self.ns else {
            return f().map_err(e);
        };
        enter_ns(server)?;
        let r = f();
        enter_ns(client).map_err(|err| format!("back to the client's namespace: {err}"))?;
        r.map_err(e)
    }

    /// A listener on the server's address with a kernel-chosen port.
    fn listen(&self) -> Result<(TcpListener, SocketAddr), String> {
        let ip = self.server_ip;
        let l = self.on_server(|| TcpListener::bind((ip, 0)))?;
        let addr = l.local_addr().map_err(e)?;
        Ok((l, addr))
    }

    /// Frames on the wire so far (None where they cannot be read).
    fn frames(&self) -> Option<u64> {
        match &self.frames {
            FrameCounter::Lo => lo_frames(),
            FrameCounter::Veth(dev) => veth_frames(dev),
        }
    }

    fn frames_since(&self, f0: Option<u64>) -> Option<u64> {
        Some(self.frames()?.saturating_sub(f0?))
    }
}

/// lo's tx_packets (None where /sys is not readable).
fn lo_frames() -> Option<u64> {
    std::fs::read_to_string("/sys/class/net/lo/statistics/tx_packets")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// rx_packets + tx_packets of `dev` in the calling thread's namespace.
fn veth_frames(dev: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
    parse_net_dev(&text, dev)
}

/// From /proc/net/dev's text: `dev`'s received + transmitted packets (fields 2 and 10).
fn parse_net_dev(text: &str, dev: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != dev {
            return None;
        }
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().ok()).collect::<Option<_>>()?;
        Some(f.get(1)? + f.get(9)?)
    })
}

fn e(err: std::io::Error) -> String {
    err.to_string()
}

fn set_buf(s: &TcpStream, bytes: u32) -> Result<(), String> {
    let v = bytes as libc::c_int;
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: a valid socket and a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!("setsockopt: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn join<T>(h: thread::JoinHandle<Result<T, String>>) -> Result<T, String> {
    h.join().map_err(|_| "server thread panicked".to_string())?
}

fn bulk(net: &Net, lim: Limit) -> Result<BenchResult, String> {
    let (l, addr) = net.listen()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let buf = lim.buf;
    // The sender runs on its own thread; the receiver (this thread) checks every byte.
    let sender = thread::spawn(move || -> Result<u64, String> {
        let c = TcpStream::connect(addr).map_err(e)?;
        set_buf(&c, buf)?;
        let mut c = c;
        let pat = Pattern::new();
        let mut stage = Stage::new();
        let mut sent = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            sent += c.write(stage.at(&pat, sent)).map_err(e)? as u64;
        }
        c.shutdown(Shutdown::Write).map_err(e)?;
        Ok(sent)
    });
    let (mut s, _) = l.accept().map_err(e)?;
    set_buf(&s, buf)?;
    let pat = Pattern::new();
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut rcvd = 0u64;
    let f0 = net.frames();
    let m = Meter::start();
    loop {
        if !lim.more(m.t0, rcvd >> 20) {
            stop.store(true, Ordering::Relaxed);
        }
        let n = match s.read(&mut rbuf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err.to_string()),
        };
        pat.check(rcvd, &rbuf[..n])
            .map_err(|at| format!("data mismatch at byte {at}"))?;
        rcvd += n as u64;
    }
    let (el, cpu) = m.stop();
    let frames = net.frames_since(f0);
    let sent = join(sender)?;
    if sent != rcvd {
        return Err(format!("{sent} bytes sent, {rcvd} received"));
    }
    Ok(BenchResult {
        workload: "bulk",
        value: rcvd as f64 * 8.0 / el / 1e9,
        unit: "Gbit/s",
        note: format!(
            "{} MiB verified in {el:.2} s, SO_SNDBUF/SO_RCVBUF {} KiB",
            rcvd >> 20,
            buf >> 10
        ),
        work: rcvd as f64 / (1u64 << 20) as f64,
        per: "MiB",
        frames,
        cpu_s: cpu,
    })
}

/// Read one message into `buf` (cleared first): Ok(false) at a clean end of stream.
fn read_msg(s: &mut TcpStream, buf: &mut [u8; MSG]) -> Result<bool, String> {
    *buf = [0; MSG];
    let mut got = 0;
    while got < MSG {
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(format!("end of stream after {got} bytes of a message")),
            Ok(n) => got += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err.to_string()),
        }
    }
    Ok(true)
}

/// Serve transactions on `s` from number `n`: check each request whole, answer the response
/// of the same number; returns at the end of stream with the next number.
fn serve(s: &mut TcpStream, mut n: u64, once: bool) -> Result<u64, String> {
    let mut buf = [0u8; MSG];
    let mut resp = [0u8; MSG];
    while read_msg(s, &mut buf)? {
        check_msg(n, REQ, &buf)?;
        fill_msg(n, RESP, &mut resp);
        s.write_all(&resp).map_err(e)?;
        n += 1;
        if once {
            break;
        }
    }
    Ok(n)
}

/// Client side of transaction `n`.
fn transact(c: &mut TcpStream, n: u64) -> Result<(), String> {
    let mut msg = [0u8; MSG];
    fill_msg(n, REQ, &mut msg);
    c.write_all(&msg).map_err(e)?;
    if !read_msg(c, &mut msg)? {
        return Err(format!("end of stream instead of response {n}"));
    }
    check_msg(n, RESP, &msg)
}

fn rr(net: &Net, lim: Limit) -> Result<BenchResult, String> {
    let (l, addr) = net.listen()?;
    let server = thread::spawn(move || -> Result<u64, String> {
        let (mut s, _) = l.accept().map_err(e)?;
        s.set_nodelay(true).map_err(e)?;
        serve(&mut s, 0, false)
    });
    let mut c = TcpStream::connect(addr).map_err(e)?;
    c.set_nodelay(true).map_err(e)?;
    let mut n = 0u64;
    let f0 = net.frames();
    let m = Meter::start();
    while lim.more(m.t0, n) {
        for _ in 0..64 {
            transact(&mut c, n)?;
            n += 1;
        }
    }
    let (el, cpu) = m.stop();
    let frames = net.frames_since(f0);
    drop(c);
    let served = join(server)?;
    if served != n {
        return Err(format!("{n} transactions made, {served} served"));
    }
    Ok(BenchResult {
        workload: "rr",
        value: n as f64 / el,
        unit: "trans/s",
        note: format!("{n} transactions of 64 B each way, each checked whole; TCP_NODELAY"),
        work: n as f64,
        per: "trans",
        frames,
        cpu_s: cpu,
    })
}

fn crr(net: &Net, lim: Limit) -> Result<BenchResult, String> {
    let (l, addr) = net.listen()?;
    let server = thread::spawn(move || -> Result<u64, String> {
        let mut n = 0u64;
        loop {
            let (mut s, _) = l.accept().map_err(e)?;
            s.set_nodelay(true).map_err(e)?;
            let next = serve(&mut s, n, true)?;
            if next == n {
                // A connection that closed without a request: the client is done.
                return Ok(n);
            }
            n = next;
            // The client's FIN next, then ours.
            let mut b = [0u8; 16];
            match s.read(&mut b) {
                Ok(0) => {}
                Ok(k) => return Err(format!("{k} bytes after the request of connection {n}")),
                Err(err) => return Err(err.to_string()),
            }
            s.shutdown(Shutdown::Write).map_err(e)?;
        }
    });
    let mut n = 0u64;
    let f0 = net.frames();
    let m = Meter::start();
    while lim.more(m.t0, n) {
        let mut c = TcpStream::connect(addr).map_err(e)?;
        c.set_nodelay(true).map_err(e)?;
        transact(&mut c, n)?;
        c.shutdown(Shutdown::Write).map_err(e)?;
        let mut b = [0u8; 16];
        match c.read(&mut b) {
            Ok(0) => {}
            Ok(k) => return Err(format!("{k} bytes after response {n}")),
            Err(err) => return Err(err.to_string()),
        }
        n += 1;
    }
    let (el, cpu) = m.stop();
    let frames = net.frames_since(f0);
    drop(TcpStream::connect(addr).map_err(e)?);
    let served = join(server)?;
    if served != n {
        return Err(format!("{n} connections made, {served} served"));
    }
    Ok(BenchResult {
        workload: "crr",
        value: n as f64 / el,
        unit: "conn/s",
        note: format!("{n} connections, 64 B each way checked whole, each closed at both ends; TCP_NODELAY"),
        work: n as f64,
        per: "conn",
        frames,
        cpu_s: cpu,
    })
}

/// udp (64-byte datagrams) and frag (4,000-byte ones, fragmented over veth's MTU).
fn udp(net: &Net, lim: Limit, len: usize) -> Result<BenchResult, String> {
    let server_ip = net.server_ip;
    let rx = net.on_server(|| UdpSocket::bind((server_ip, 0)))?;
    rx.set_read_timeout(Some(Duration::from_millis(50))).map_err(e)?;
    let dst = rx.local_addr().map_err(e)?;
    let sent = Arc::new(AtomicU64::new(0));
    let rcvd = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent2, rcvd2, stop2) = (sent.clone(), rcvd.clone(), stop.clone());
    let receiver = thread::spawn(move || -> Result<(u64, u64), String> {
        let pat = Pattern::new();
        let mut buf = vec![0u8; len + 1];
        let (mut got, mut lost) = (0u64, 0u64);
        loop {
            buf.fill(0);
            match rx.recv(&mut buf) {
                Ok(n) => {
                    let hi = sent2.load(Ordering::Acquire);
                    let seq = check_dgram(&pat, &buf[..n], len, got + lost, hi)?;
                    lost += seq - (got + lost);
                    got += 1;
                    rcvd2.store(got, Ordering::Relaxed);
                }
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stop2.load(Ordering::Acquire) {
                        return Ok((got, lost));
                    }
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err.to_string()),
            }
        }
    });
    let tx = UdpSocket::bind((net.client_ip, 0)).map_err(e)?;
    tx.connect(dst).map_err(e)?;
    let pat = Pattern::new();
    let mut out = vec![0u8; len];
    let mut seq = 0u64;
    let f0 = net.frames();
    let m = Meter::start();
    while lim.more(m.t0, rcvd.load(Ordering::Relaxed) / 1000) {
        for _ in 0..32 {
            fill_dgram(&pat, seq, &mut out);
            // Counted as sent before it is: the receiver may see it before send returns.
            sent.store(seq + 1, Ordering::Release);
            match tx.send(&out) {
                Ok(_) => {}
                // Loopback reports a full receiver as ECONNREFUSED/ENOBUFS at times: lost.
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(err) => return Err(err.to_string()),
            }
            seq += 1;
        }
    }
    let (el, _) = m.stop();
    stop.store(true, Ordering::Release);
    let (got, lost) = join(receiver)?;
    // The receiver's CPU time up to its last datagram counts: measure after it finished (it
    // waits at most one read timeout, idle).
    let cpu = crate::bench::cpu_secs() - m.cpu0();
    let frames = net.frames_since(f0);
    let lost = lost + (seq - got - lost);
    let (workload, unit) = if len > 1500 {
        ("frag", "dgram/s")
    } else {
        ("udp", "pkt/s")
    };
    Ok(BenchResult {
        workload,
        value: got as f64 / el,
        unit,
        note: format!(
            "{got} datagrams of {len} B verified, {lost} of {seq} lost (the sender does not wait for the receiver)"
        ),
        work: got as f64,
        per: "dgram",
        frames,
        cpu_s: cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_counts_both_directions() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\nbbv42c: 5000 7 0 0 0 0 0 0 9000 11 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(text, "bbv42c"), Some(18));
        assert_eq!(parse_net_dev(text, "lo"), Some(20));
        assert_eq!(parse_net_dev(text, "eth0"), None);
    }

    /// Workloads the kernel peers do not have are "blink only", before anything is set up
    /// (no namespace is created for them, root or not).
    #[test]
    fn veth_skips_blink_only_workloads() {
        let lim = Limit {
            dur: Duration::from_millis(10),
            iters: Some(1),
            buf: 4096,
            offload: false,
        };
        for w in ["conns", "timers", "fragflood"] {
            assert!(
                matches!(run_veth(w, lim), Ok(Outcome::NotApplicable("blink only"))),
                "{w}"
            );
        }
    }
}
