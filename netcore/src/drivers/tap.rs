//! Linux TAP driver: `/dev/net/tun` with `IFF_TAP | IFF_NO_PI` (and `IFF_MULTI_QUEUE` for more
//! than one queue). The kernel is the peer: whatever it routes to the interface arrives here
//! as Ethernet frames, and frames written here enter the kernel's stack.
//!
//! Receive copies each frame once, from the kernel into a fresh mbuf (a read(2) cannot DMA into
//! our buffers). Transmit writes an skb's segments with writev(2), so payload fragments are
//! not copied by blink. No vnet header is used, so every frame must carry complete checksums
//! and the device advertises no offloads.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::if_ether::EthAddr;
use crate::mbuf::MempoolCache;
use crate::netdevice::{Burst, DevStats, NetDevice, NetdevFeatures};
use crate::skbuff::{SkBuff, MAX_SKB_FRAGS};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Errors opening a TAP device, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap: interface name `{0}` must be 1..15 characters without '/' or spaces")]
    BadName(String),
    #[error("tap {name}: cannot open /dev/net/tun: {source} (needs root or CAP_NET_ADMIN, and the tun module)")]
    Open { name: String, source: io::Error },
    #[error("tap {name}: TUNSETIFF failed: {source} ({})", setiff_hint(name, source))]
    SetIff { name: String, source: io::Error },
}

/// What a TUNSETIFF failure most likely means, by its errno.
fn setiff_hint(name: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EBUSY) => format!(
            "{name} is in use by another process: another blink, or a program holding its queue; \
             stop it or choose another --dev tap:NAME"
        ),
        Some(libc::EPERM) => format!("a persistent tap {name} owned by another user or group"),
        Some(libc::EINVAL) => format!(
            "several queues on a tap made without `ip tuntap add dev {name} mode tap multi_queue`, \
             or {name} exists and is not a tap"
        ),
        _ => format!("a persistent tap owned by another user, or several queues on a tap made without multi_queue"),
    }
}

/// True when the kernel side of interface `name` is administratively up (IFF_UP in
/// /sys/class/net/NAME/flags). A tap whose kernel side is down drops everything blink sends
/// (`write` fails with EIO) and never delivers anything.
pub fn tap_kernel_side_up(name: &str) -> Option<bool> {
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
    Some(flags & libc::IFF_UP as u32 != 0)
}

/// Give the kernel side of interface `name` a MAC address and an MTU (Linux: SIOCSIFHWADDR
/// and SIOCSIFMTU, what `ip link set NAME address MAC mtu N` does). The exception path's TAP
/// takes blink's MAC this way, so the kernel and blink answer for one address on the wire, and
/// its MTU, so the kernel never sends a frame blink's device would refuse.
pub fn tap_set_kernel_link(name: &str, mac: EthAddr, mtu: usize) -> io::Result<()> {
    const SIOCSIFHWADDR: libc::c_ulong = 0x8924;
    const SIOCSIFMTU: libc::c_ulong = 0x8922;
    const ARPHRD_ETHER: u16 = 1;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let ifreq = || {
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        req
    };
    // SAFETY: a plain socket(2) whose fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, owned descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq();
    // SAFETY: writing the sockaddr member of the union of a zeroed ifreq.
    unsafe {
        req.ifr_ifru.ifru_hwaddr.sa_family = ARPHRD_ETHER;
        for (d, s) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac.0) {
            *d = s as libc::c_char;
        }
    }
    // SAFETY: SIOCSIFHWADDR reads an ifreq, which `req` is.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFHWADDR as _, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut req = ifreq();
    req.ifr_ifru.ifru_mtu = mtu.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: SIOCSIFMTU reads an ifreq, which `req` is.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFMTU as _, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An ioctl socket and an `ifreq` naming `name`, for the SIOCSIF* calls below.
fn ifreq_sock(name: &str) -> io::Result<(OwnedFd, libc::ifreq)> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: a plain socket(2) whose fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, owned descriptor.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, req))
}

/// Bring the kernel side of interface `name` up (Linux: SIOCGIFFLAGS, then SIOCSIFFLAGS with
/// IFF_UP, what `ip link set NAME up` does).
pub fn tap_set_kernel_up(name: &str) -> io::Result<()> {
    let (sock, mut req) = ifreq_sock(name)?;
    // SAFETY: SIOCGIFFLAGS fills the flags member of the ifreq `req` is.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the flags member was just written by the kernel.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads an ifreq, which `req` is.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Give the kernel side of interface `name` the IPv4 address `addr/prefix_len` (Linux:
/// SIOCSIFADDR and SIOCSIFNETMASK, what `ip addr add ADDR/LEN dev NAME` does for a first
/// address; the kernel adds the connected route).
pub fn tap_set_kernel_addr(name: &str, addr: std::net::Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    let sin = |a: std::net::Ipv4Addr| {
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        sin
    };
    let mask = std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - prefix_len.min(32) as u32).unwrap_or(0));
    for (op, a) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, mask)] {
        let (sock, mut req) = ifreq_sock(name)?;
        // SAFETY: a sockaddr_in fits in the ifreq's sockaddr member (both 16 bytes).
        unsafe {
            std::ptr::write(
                &mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut libc::sockaddr_in,
                sin(a),
            )
        };
        // SAFETY: SIOCSIFADDR/SIOCSIFNETMASK read an ifreq, which `req` is.
        if unsafe { libc::ioctl(sock.as_raw_fd(), op as _, &mut req as *mut libc::ifreq) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A TAP device with one fd per queue. A handle from [`TapDev::into_queues`] holds the fd
/// of its own queue only (the others are `None`).
pub struct TapDev {
    name: String,
    mac: EthAddr,
    mtu: usize,
    fds: Vec<Option<OwnedFd>>,
    cache: MempoolCache,
    stats: DevStats,
}

impl TapDev {
    /// Open (or create) TAP interface `name` with `queues` queues. `mac` is the stack's own
    /// address on the link (not the kernel interface's). Receive buffers come from `cache`.
    pub fn open(name: &str, queues: u16, mac: EthAddr, mtu: usize, cache: MempoolCache) -> Result<TapDev, TapError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ']) {
            return Err(TapError::BadName(name.to_string()));
        }
        let queues = queues.max(1);
        let mut fds = Vec::new();
        for _ in 0..queues {
            let path = CString::new("/dev/net/tun").expect("no NUL");
            // SAFETY: plain open(2) of a NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(TapError::Open {
                    name: name.into(),
                    source: io::Error::last_os_error(),
                });
            }
            // SAFETY: fd is a fresh, owned descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut req = IfReq {
                name: [0; libc::IFNAMSIZ],
                flags: IFF_TAP | IFF_NO_PI,
                _pad: [0; 22],
            };
            if queues > 1 {
                req.flags |= IFF_MULTI_QUEUE;
            }
            for (d, s) in req.name.iter_mut().zip(name.bytes()) {
                *d = s as libc::c_char;
            }
            // SAFETY: TUNSETIFF reads an ifreq, which `req` is laid out as.
            let mut r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
            if r < 0 && queues == 1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                // A persistent TAP made with `multi_queue` accepts only multi-queue opens: one
                // queue of it serves as well.
                req.flags |= IFF_MULTI_QUEUE;
                // SAFETY: as above.
                r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
            }
            if r < 0 {
                return Err(TapError::SetIff {
                    name: name.into(),
                    source: io::Error::last_os_error(),
                });
            }
            fds.push(Some(fd));
        }
        Ok(TapDev {
            name: name.to_string(),
            mac,
            mtu,
            fds,
            cache,
            stats: DevStats::default(),
        })
    }
}

impl TapDev {
    /// One handle per queue, each owning that queue's fd, to be driven by one core: the
    /// kernel spreads flows over the fds by its own flow hash (not blink's Toeplitz), so the
    /// handles do not advertise `RSS_QUEUES` and the stack steers in software.
    pub fn into_queues(self) -> Vec<TapDev> {
        let n = self.fds.len();
        let pool = self.cache.pool().clone();
        self.fds
            .into_iter()
            .enumerate()
            .map(|(q, fd)| {
                let mut fds: Vec<Option<OwnedFd>> = (0..n).map(|_| None).collect();
                fds[q] = fd;
                TapDev {
                    name: self.name.clone(),
                    mac: self.mac,
                    mtu: self.mtu,
                    fds,
                    cache: pool.cache(),
                    stats: DevStats::default(),
                }
            })
            .collect()
    }
}

impl NetDevice for TapDev {
    fn name(&self) -> &str {
        &self.name
    }
    fn mac(&self) -> EthAddr {
        self.mac
    }
    fn mtu(&self) -> usize {
        self.mtu
    }
    fn nb_queues(&self) -> u16 {
        self.fds.len() as u16
    }
    fn features(&self) -> NetdevFeatures {
        NetdevFeatures::SG
    }

    fn rx_burst(&mut self, queue: u16, out: &mut Burst) -> usize {
        let Some(Some(fd)) = self.fds.get(queue as usize) else {
            return 0;
        };
        let fd = fd.as_raw_fd();
        let mut n = 0;
        while !out.is_full() {
            let Some(mut m) = self.cache.alloc() else {
                self.stats.rx_nombuf += 1;
                break;
            };
            let off = m.data_off();
            let room = m.tailroom();
            let buf = m.buf_mut().expect("fresh mbuf is unique");
            // SAFETY: reading at most `room` bytes into the mbuf's tailroom.
            let r = unsafe { libc::read(fd, buf[off..].as_mut_ptr() as *mut libc::c_void, room) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
                    self.stats.rx_errors += 1;
                }
                break;
            }
            let r = r as usize;
            if r == 0 {
                break;
            }
            if r >= room {
                // The frame filled the buffer: it may have been cut, so it cannot be trusted.
                self.stats.rx_dropped += 1;
                continue;
            }
            m.set_data(off, r);
            match SkBuff::from_mbuf(m) {
                Ok(skb) => {
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += r as u64;
                    out.push(skb);
                    n += 1;
                }
                Err(_) => self.stats.rx_dropped += 1,
            }
        }
        n
    }

    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst) -> usize {
        let Some(Some(fd)) = self.fds.get(queue as usize) else {
            return 0;
        };
        let fd = fd.as_raw_fd();
        let mut sent = 0;
        for skb in pkts.iter() {
            let mut iov: [libc::iovec; MAX_SKB_FRAGS + 1] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_SKB_FRAGS + 1];
            let mut cnt = 0;
            for seg in skb.segments() {
                iov[cnt] = libc::iovec {
                    iov_base: seg.as_ptr() as *mut libc::c_void,
                    iov_len: seg.len(),
                };
                cnt += 1;
            }
            // SAFETY: every iovec points at a live segment of `skb`, which outlives the call.
            let r = unsafe { libc::writev(fd, iov.as_ptr(), cnt as libc::c_int) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                // EIO while the interface is down, EINVAL for a bad frame: drop it, go on.
                self.stats.tx_errors += 1;
                sent += 1;
                continue;
            }
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += r as u64;
            sent += 1;
        }
        // Written frames are done; the kernel copied them.
        let rest: Burst = pkts.drain(..).skip(sent).collect();
        *pkts = rest;
        sent
    }

    fn stats(&self) -> DevStats {
        self.stats
    }

    /// The kernel side's administrative state (read from sysfs: this is for `blink link` and
    /// `--stats`, never the packet path).
    fn link_up(&self) -> bool {
        tap_kernel_side_up(&self.name).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setiff_failures_say_what_they_mean() {
        let busy = TapError::SetIff {
            name: "btap0".into(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert!(
            busy.to_string().contains("btap0 is in use by another process"),
            "{busy}"
        );
        let perm = TapError::SetIff {
            name: "btap0".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(perm.to_string().contains("owned by another user"), "{perm}");
        let inval = TapError::SetIff {
            name: "btap0".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(inval.to_string().contains("multi_queue"), "{inval}");
    }

    #[test]
    fn kernel_side_state_is_read_from_sysfs() {
        // The loopback interface is up in every network namespace; a missing one is unknown.
        assert_eq!(tap_kernel_side_up("lo"), Some(true));
        assert_eq!(tap_kernel_side_up("no-such-if0"), None);
    }
}
