//! `blink bench --peer smoltcp`: the same workloads on smoltcp 0.14 in the arrangement blink's
//! stacks run in: two `Interface`s (10.0.0.1/24, 10.0.0.2/24) polled by one thread, joined by
//! an in-memory Ethernet pair (IP MTU 1500, software checksums), every byte checked by the
//! same functions as blink's (bench.rs).
//!
//! smoltcp is a dependency of the `blink` command only, never of the stack crates.
//!
//! How smoltcp is driven, where it differs from blink's sockets:
//! - a TCP socket is one connection: crr gives the server a listening socket that becomes the
//!   connection, and listens again once it is closed; the client's socket (in TIME-WAIT,
//!   which smoltcp holds for 10 s) is removed from the set once the close has completed at
//!   both ends, and the next connection gets a new one from the next local port;
//! - smoltcp's fragmenter holds one datagram: frag queues one 4,000-byte datagram and polls
//!   the sender until its fragments are all out before queuing the next (a second datagram
//!   queued earlier would overwrite the first's unsent fragments). Its fragmentation and
//!   reassembly buffers are 4 KiB (cargo features `fragmentation-buffer-size-4096`,
//!   `reassembly-buffer-size-4096`; a 4,000-byte datagram is 4,028 bytes of IP packet).
//! - ARP runs as for blink: the first packet resolves the neighbour before the timed part.

use std::cell::RefCell;
use std::collections::VecDeque;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::bench::{
    check_dgram, check_msg, fill_dgram, fill_msg, BenchResult, Limit, Meter, Outcome, Pattern, Stage, FRAG_DGRAM, MSG,
    REQ, RESP,
};

/// The two directions of the in-memory Ethernet pair: `q[i]` holds the frames waiting for
/// end `i`; `free` recycles frame buffers; `tx[i]` counts the frames end `i` sent.
#[derive(Default)]
struct Wire {
    q: [VecDeque<Vec<u8>>; 2],
    free: Vec<Vec<u8>>,
    tx: [u64; 2],
}

/// One end of the pair, as smoltcp's `phy::Device`.
struct End<'w> {
    w: &'w RefCell<Wire>,
    side: usize,
}

struct Rx<'w> {
    w: &'w RefCell<Wire>,
    frame: Vec<u8>,
}

struct Tx<'w> {
    w: &'w RefCell<Wire>,
    side: usize,
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(&self.frame);
        self.w.borrow_mut().free.push(self.frame);
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buf = self.w.borrow_mut().free.pop().unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        let r = f(&mut buf);
        let mut w = self.w.borrow_mut();
        w.q[1 - self.side].push_back(buf);
        w.tx[self.side] += 1;
        r
    }
}

impl Device for End<'_> {
    type RxToken<'a>
        = Rx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let frame = self.w.borrow_mut().q[self.side].pop_front()?;
        Some((
            Rx { w: self.w, frame },
            Tx {
                w: self.w,
                side: self.side,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx {
            w: self.w,
            side: self.side,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // Ethernet header included: an IP MTU of 1500, as blink's wire.
        caps.max_transmission_unit = 1514;
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

const A_IP: IpAddress = IpAddress::v4(10, 0, 0, 1);
const B_IP: IpAddress = IpAddress::v4(10, 0, 0, 2);

/// Two interfaces, their socket sets, and the wire between them.
struct SPair {
    wire: RefCell<Wire>,
    ia: Interface,
    ib: Interface,
    sa: SocketSet<'static>,
    sb: SocketSet<'static>,
}

fn iface(wire: &RefCell<Wire>, side: usize, last: u8, seed: u64) -> Interface {
    let mut dev = End { w: wire, side };
    let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, last])));
    cfg.random_seed = seed;
    let mut i = Interface::new(cfg, &mut dev, Instant::now());
    i.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(10, 0, 0, last), 24))
            .expect("one address");
    });
    i
}

impl SPair {
    fn new() -> SPair {
        let wire = RefCell::new(Wire::default());
        let ia = iface(&wire, 0, 1, 0x1234_5678);
        let ib = iface(&wire, 1, 2, 0x8765_4321);
        SPair {
            wire,
            ia,
            ib,
            sa: SocketSet::new(Vec::new()),
            sb: SocketSet::new(Vec::new()),
        }
    }

    fn poll_a(&mut self) {
        let mut d = End { w: &self.wire, side: 0 };
        self.ia.poll(Instant::now(), &mut d, &mut self.sa);
    }

    fn poll_b(&mut self) {
        let mut d = End { w: &self.wire, side: 1 };
        self.ib.poll(Instant::now(), &mut d, &mut self.sb);
    }

    fn poll(&mut self) {
        self.poll_a();
        self.poll_b();
    }

    fn frames(&self) -> u64 {
        let w = self.wire.borrow();
        w.tx[0] + w.tx[1]
    }

    fn tcp(&mut self, on_a: bool, h: SocketHandle) -> &mut tcp::Socket<'static> {
        if on_a {
            self.sa.get_mut::<tcp::Socket>(h)
        } else {
            self.sb.get_mut::<tcp::Socket>(h)
        }
    }

    /// A client socket on A (nodelay unless `nagle`) connected from `lport` to B:`port`.
    fn connect(&mut self, port: u16, lport: u16, buf: usize, nagle: bool) -> Result<SocketHandle, String> {
        let mut c = tcp_socket(buf);
        c.set_nagle_enabled(nagle);
        c.connect(self.ia.context(), (B_IP, port), lport)
            .map_err(|e| format!("connect: {e}"))?;
        Ok(self.sa.add(c))
    }

    /// Poll until both ends are established.
    fn establish(&mut self, c: SocketHandle, s: SocketHandle) -> Result<(), String> {
        for _ in 0..100_000 {
            self.poll();
            if self.tcp(true, c).state() == tcp::State::Established
                && self.tcp(false, s).state() == tcp::State::Established
            {
                return Ok(());
            }
        }
        Err("connection did not establish".into())
    }
}

fn tcp_socket(buf: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; buf]),
        tcp::SocketBuffer::new(vec![0u8; buf]),
    )
}

/// A listening socket on B.
fn listener(p: &mut SPair, port: u16, buf: usize, nagle: bool) -> Result<SocketHandle, String> {
    let mut s = tcp_socket(buf);
    s.set_nagle_enabled(nagle);
    s.listen(port).map_err(|e| format!("listen: {e}"))?;
    Ok(p.sb.add(s))
}

/// Poll until `buf.len()` bytes arrive on `h`.
fn recv_exact(p: &mut SPair, on_a: bool, h: SocketHandle, buf: &mut [u8]) -> Result<(), String> {
    let mut got = 0;
    for _ in 0..1_000_000 {
        p.poll();
        let s = p.tcp(on_a, h);
        if !s.may_recv() && !s.can_recv() {
            return Err("end of stream".into());
        }
        got += s.recv_slice(&mut buf[got..]).map_err(|e| e.to_string())?;
        if got == buf.len() {
            return Ok(());
        }
    }
    Err("timed out waiting for data".into())
}

pub(crate) fn run(w: &str, lim: Limit) -> Result<Outcome, String> {
    let r = match w {
        "bulk" => bulk(lim),
        "rr" => rr(lim),
        "crr" => crr(lim),
        "udp" => dgrams(lim, 64, 32),
        "frag" => dgrams(lim, FRAG_DGRAM, 8),
        _ => return Ok(Outcome::NotApplicable("blink only")),
    };
    r.map(Outcome::Done)
}

fn bulk(lim: Limit) -> Result<BenchResult, String> {
    let mut p = SPair::new();
    let buf = lim.buf as usize;
    let s = listener(&mut p, 5001, buf, true)?;
    let c = p.connect(5001, 49152, buf, true)?;
    p.establish(c, s)?;
    let pat = Pattern::new();
    let mut stage = Stage::new();
    let mut rbuf = vec![0u8; 256 * 1024];
    let (mut sent, mut rcvd) = (0u64, 0u64);
    let f0 = p.frames();
    let m = Meter::start();
    let mut sending = true;
    while sending || rcvd < sent {
        sending = sending && lim.more(m.t0, rcvd >> 20);
        if sending {
            loop {
                let data = stage.at(&pat, sent);
                let n =
                    p.sa.get_mut::<tcp::Socket>(c)
                        .send_slice(data)
                        .map_err(|e| e.to_string())?;
                sent += n as u64;
                if n == 0 {
                    break;
                }
            }
        }
        p.poll();
        loop {
            let n = p.tcp(false, s).recv_slice(&mut rbuf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            pat.check(rcvd, &rbuf[..n])
                .map_err(|at| format!("data mismatch at byte {at}"))?;
            rcvd += n as u64;
        }
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    Ok(BenchResult {
        workload: "bulk",
        value: rcvd as f64 * 8.0 / el / 1e9,
        unit: "Gbit/s",
        note: format!(
            "{} MiB verified in {el:.2} s, {} KiB buffers",
            rcvd >> 20,
            lim.buf >> 10
        ),
        work: rcvd as f64 / (1u64 << 20) as f64,
        per: "MiB",
        frames: Some(frames),
        cpu_s: cpu,
    })
}

/// rr's and crr's socket buffers (messages are 64 bytes).
const RR_BUF: usize = 4096;

/// One transaction `n`: request checked whole by the server, response checked whole by the
/// client, receive buffers cleared before each read.
fn transact(p: &mut SPair, c: SocketHandle, s: SocketHandle, n: u64) -> Result<(), String> {
    let mut msg = [0u8; MSG];
    fill_msg(n, REQ, &mut msg);
    if p.tcp(true, c).send_slice(&msg).map_err(|e| e.to_string())? != MSG {
        return Err("request not accepted".into());
    }
    let mut buf = [0u8; MSG];
    recv_exact(p, false, s, &mut buf)?;
    check_msg(n, REQ, &buf)?;
    fill_msg(n, RESP, &mut msg);
    if p.tcp(false, s).send_slice(&msg).map_err(|e| e.to_string())? != MSG {
        return Err("response not accepted".into());
    }
    buf = [0u8; MSG];
    recv_exact(p, true, c, &mut buf)?;
    check_msg(n, RESP, &buf)
}

fn rr(lim: Limit) -> Result<BenchResult, String> {
    let mut p = SPair::new();
    let s = listener(&mut p, 5002, RR_BUF, false)?;
    let c = p.connect(5002, 49152, RR_BUF, false)?;
    p.establish(c, s)?;
    let mut n = 0u64;
    let f0 = p.frames();
    let m = Meter::start();
    while lim.more(m.t0, n) {
        for _ in 0..64 {
            transact(&mut p, c, s, n)?;
            n += 1;
        }
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    Ok(BenchResult {
        workload: "rr",
        value: n as f64 / el,
        unit: "trans/s",
        note: format!("{n} transactions of 64 B each way, each checked whole; Nagle off"),
        work: n as f64,
        per: "trans",
        frames: Some(frames),
        cpu_s: cpu,
    })
}

fn crr(lim: Limit) -> Result<BenchResult, String> {
    let mut p = SPair::new();
    let s = listener(&mut p, 5003, RR_BUF, false)?;
    let mut lport = 49152u16;
    let mut one = |p: &mut SPair, n: u64| -> Result<(), String> {
        lport = if lport == 65535 { 49152 } else { lport + 1 };
        let c = p.connect(5003, lport, RR_BUF, false)?;
        p.establish(c, s)?;
        transact(p, c, s, n)?;
        // The client closes first; the server reads the end of stream and closes; counted
        // once the client is in TIME-WAIT and the server closed (both FINs acknowledged).
        p.tcp(true, c).close();
        let mut done = false;
        for _ in 0..100_000 {
            p.poll();
            let ss = p.tcp(false, s);
            if ss.state() == tcp::State::CloseWait {
                ss.close();
            }
            if p.tcp(false, s).state() == tcp::State::Closed && p.tcp(true, c).state() == tcp::State::TimeWait {
                done = true;
                break;
            }
        }
        if !done {
            return Err(format!("connection {n}: close did not complete at both ends"));
        }
        p.sa.remove(c);
        p.tcp(false, s).listen(5003).map_err(|e| format!("listen: {e}"))?;
        Ok(())
    };
    // One connection before the clock starts: ARP.
    one(&mut p, u64::MAX)?;
    let mut n = 0u64;
    let f0 = p.frames();
    let m = Meter::start();
    while lim.more(m.t0, n) {
        one(&mut p, n)?;
        n += 1;
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    Ok(BenchResult {
        workload: "crr",
        value: n as f64 / el,
        unit: "conn/s",
        note: format!(
            "{n} connections, 64 B each way checked whole, each closed at both ends; a new client socket per connection"
        ),
        work: n as f64,
        per: "conn",
        frames: Some(frames),
        cpu_s: cpu,
    })
}

/// udp (64-byte datagrams, 32 per round) and frag (4,000-byte datagrams, 8 per round, one in
/// smoltcp's fragmenter at a time).
fn dgrams(lim: Limit, len: usize, burst: usize) -> Result<BenchResult, String> {
    let mut p = SPair::new();
    let dst = IpEndpoint::new(B_IP, 5004);
    let slots = burst * 2;
    let mk =
        |slots: usize, bytes: usize| udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; slots], vec![0u8; bytes]);
    let mut rx = udp::Socket::new(mk(slots, slots * len), mk(1, 16));
    rx.bind(5004).map_err(|e| e.to_string())?;
    let rx = p.sb.add(rx);
    let mut tx = udp::Socket::new(mk(1, 16), mk(slots, slots * len));
    tx.bind(IpEndpoint::new(A_IP, 5005)).map_err(|e| e.to_string())?;
    let tx = p.sa.add(tx);
    let pat = Pattern::new();
    let (mut out, mut buf) = (vec![0u8; len], vec![0u8; len + 1]);
    let frag = len > 1472;
    // ARP before the clock starts: one datagram, checked and not counted.
    let mut warm = [0u8; 8];
    warm.copy_from_slice(b"warm-up!");
    p.sa.get_mut::<udp::Socket>(tx)
        .send_slice(&warm, dst)
        .map_err(|e| e.to_string())?;
    let mut warmed = false;
    for _ in 0..1000 {
        p.poll();
        if let Ok((d, _)) = p.sb.get_mut::<udp::Socket>(rx).recv() {
            if d != warm {
                return Err("warm-up datagram altered".into());
            }
            warmed = true;
            break;
        }
    }
    if !warmed {
        return Err("warm-up datagram did not arrive".into());
    }
    let (mut sent, mut rcvd, mut lost) = (0u64, 0u64, 0u64);
    let f0 = p.frames();
    let m = Meter::start();
    while lim.more(m.t0, rcvd / 1000) {
        for _ in 0..burst {
            fill_dgram(&pat, sent, &mut out);
            p.sa.get_mut::<udp::Socket>(tx)
                .send_slice(&out, dst)
                .map_err(|e| e.to_string())?;
            sent += 1;
            if frag {
                // Out with all its fragments before the next datagram enters the fragmenter.
                let mut spins = 0;
                loop {
                    p.poll_a();
                    if p.ia.poll_at(Instant::now(), &p.sa) != Some(Instant::ZERO) {
                        break;
                    }
                    spins += 1;
                    if spins > 100 {
                        return Err("the fragmenter did not drain".into());
                    }
                }
            }
        }
        p.poll();
        loop {
            buf.fill(0);
            match p.sb.get_mut::<udp::Socket>(rx).recv_slice(&mut buf) {
                Ok((n, _)) => {
                    let seq = check_dgram(&pat, &buf[..n], len, rcvd + lost, sent)?;
                    lost += seq - (rcvd + lost);
                    rcvd += 1;
                }
                Err(udp::RecvError::Exhausted) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let (el, cpu) = m.stop();
    let frames = p.frames() - f0;
    let (workload, unit) = if frag { ("frag", "dgram/s") } else { ("udp", "pkt/s") };
    Ok(BenchResult {
        workload,
        value: rcvd as f64 / el,
        unit,
        note: format!("{rcvd} datagrams of {len} B verified, {lost} lost"),
        work: rcvd as f64,
        per: "dgram",
        frames: Some(frames),
        cpu_s: cpu,
    })
}
