//! DPDK driver: any poll-mode driver (real NICs bound to vfio-pci, and the `net_tap`,
//! `net_af_packet`, `net_memif`, `net_ring` vdevs) behind the `NetDevice` trait.
//!
//! Zero-copy both ways, over the DPDK mempool backend of `Mempool` (mbuf.rs):
//! - receive: each `rte_mbuf` the PMD fills is adopted as an `Mbuf` in place and becomes the
//!   host of its skb (multi-segment frames become fragments); nothing is copied.
//! - transmit: every byte segment of an skb (linear area, then each fragment) is described by
//!   an indirect rte_mbuf attached to the buffer holding it (`rte_pktmbuf_attach`, as DPDK's
//!   `rte_pktmbuf_clone` does), chained into one multi-segment packet. Indirect mbufs are
//!   needed because one buffer can be in flight in several packets at once with different
//!   windows (TCP's retransmit clones share payload mbufs), and an rte_mbuf has one window.
//!   A buffer that did not come from the DPDK pool (cannot happen when the stack allocates
//!   from the port's pool, but a foreign skb could) is copied into a fresh rte_mbuf.
//!
//! Offloads are enabled when the PMD advertises them: rx IPv4/TCP/UDP checksum (frames the NIC
//! says are good get `CHECKSUM_UNNECESSARY`), rx RSS hash (stored in `skb->rss_hash`), tx
//! IPv4/TCP/UDP checksum for skbs marked `CHECKSUM_PARTIAL` (software fills them when the PMD
//! lacks the offload; logged once), and multi-segment transmit (without it, a chained skb is
//! linearised by copy into one mbuf; logged once). RSS is configured with the stack's Toeplitz
//! key (rss.rs) when the PMD supports it.
//!
//! Multi-core: with N queue pairs the NIC's redirection table is programmed with the stack's
//! (`Reta::new(N)`), so that the queue the NIC picks for a flow is the core software would pick
//! (`NetdevFeatures::RSS_QUEUES`); when that cannot be done exactly the device says so and the
//! stack steers in software. [`DpdkDev::into_queues`] splits the port into one handle per queue
//! pair, each driven by one core with no lock (DPDK's model: rx/tx burst on a queue is not
//! thread-safe, different queues are independent); the port is stopped when the last goes.

use std::ffi::{CStr, CString};
use std::fmt;
use std::sync::Arc;

use blink_dpdk_sys as ffi;

use crate::checksum::{csum_block_add, csum_fold, csum_partial, pseudo_header_ipv4};
use crate::if_ether::EthAddr;
use crate::mbuf::{Mbuf, Mempool, MempoolCache};
use crate::netdevice::{Burst, DevStats, NetDevice, NetdevFeatures, BURST};
use crate::rss::{Reta, RssHashType, RETA_SIZE, RSS_KEY_DEFAULT};
use crate::skbuff::{IpSummed, SkBuff};

/// Errors bringing up EAL or a port, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// EAL rejected its arguments (exit code 2); DPDK printed the reason on stderr.
    #[error("dpdk: EAL rejected the arguments `{args}`: {reason} (DPDK's own message is above)")]
    EalArgs { args: String, reason: String },
    #[error("dpdk: EAL could not set up memory: {reason}. No hugepages? Either add `--no-huge -m 512` to --eal, or reserve them: echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")]
    NoHugepages { reason: String },
    #[error("dpdk: EAL initialisation failed: {reason} (DPDK's own message is above)")]
    Eal { reason: String },
    #[error("dpdk: EAL is already initialised in this process (one --eal per process)")]
    EalAgain,
    #[error("dpdk: no ports found. A NIC must be bound to a DPDK-capable driver (vfio-pci): see `dpdk-devbind.py --status`, then `dpdk-devbind.py --bind=vfio-pci 0000:01:00.0`; or use a virtual device for a quick try, e.g. --eal \"--no-huge -m 512 --no-pci --vdev=net_tap0,iface=dtap0\"")]
    NoPorts,
    #[error("dpdk: port {port} does not exist ({avail} port(s) available)")]
    BadPort { port: u16, avail: u16 },
    #[error("dpdk: port {port} ({driver}) supports at most {max_rx} rx / {max_tx} tx queues; {want} requested (use fewer --cores)")]
    Queues {
        port: u16,
        driver: String,
        want: u16,
        max_rx: u16,
        max_tx: u16,
    },
    #[error("dpdk: port {port}: {op} failed: {reason}")]
    Port {
        port: u16,
        op: &'static str,
        reason: String,
    },
}

impl DpdkError {
    /// True for configuration mistakes (exit code 2), false for runtime failures.
    pub fn is_usage(&self) -> bool {
        !matches!(self, DpdkError::Port { .. } | DpdkError::Eal { .. })
    }
}

fn strerror(e: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or per-thread buffer.
    unsafe { CStr::from_ptr(ffi::rte_strerror(e.abs())) }
        .to_string_lossy()
        .into_owned()
}

/// Linux/DPDK: rte_eal_init(). `args` are the EAL options as one string (split on white space:
/// EAL options carry no spaces inside values). Once per process.
pub fn eal_init(args: &str) -> Result<(), DpdkError> {
    let mut owned: Vec<CString> = vec![CString::new("blink").expect("no NUL")];
    for a in args.split_whitespace() {
        owned.push(CString::new(a).map_err(|_| DpdkError::EalArgs {
            args: args.into(),
            reason: "argument contains NUL".into(),
        })?);
    }
    // EAL keeps pointers into argv (device arguments, log names) for the life of the process,
    // and EAL initialises once: leaking these few strings is the documented contract.
    let mut argv: Vec<*mut libc::c_char> = owned.into_iter().map(|c| c.into_raw()).collect();
    let argc = argv.len() as libc::c_int;
    argv.push(std::ptr::null_mut());
    let argv = Box::leak(argv.into_boxed_slice());
    // SAFETY: argv is a NULL-terminated array of NUL-terminated strings that lives forever.
    let r = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
    if r >= 0 {
        return Ok(());
    }
    // SAFETY: reads DPDK's per-thread errno.
    let e = unsafe { ffi::blink_rte_errno() };
    let reason = strerror(e);
    Err(match e as u32 {
        ffi::EINVAL => DpdkError::EalArgs {
            args: args.into(),
            reason,
        },
        ffi::EALREADY => DpdkError::EalAgain,
        ffi::EACCES | ffi::ENOMEM => DpdkError::NoHugepages { reason },
        _ => DpdkError::Eal { reason },
    })
}

/// The ports EAL probed (valid port ids, ascending): `--vdev`s and bound PCI devices. EAL
/// must be initialised.
pub fn eth_dev_ports() -> Vec<u16> {
    // SAFETY: plain ethdev queries on port ids, after EAL init.
    let avail = unsafe { ffi::rte_eth_dev_count_avail() };
    (0..ffi::RTE_MAX_ETHPORTS as u16)
        .filter(|&p| unsafe { ffi::rte_eth_dev_is_valid_port(p) } != 0)
        .take(avail as usize)
        .collect()
}

/// Port configuration.
#[derive(Debug, Clone)]
pub struct DpdkConfig {
    pub port: u16,
    /// rx/tx queue pairs (one per stack core).
    pub nb_queues: u16,
    pub mtu: usize,
    pub nb_rxd: u16,
    pub nb_txd: u16,
    /// Toeplitz key for RSS (the stack's key).
    pub rss_key: [u8; 40],
    /// Use the PMD's tx checksum offloads when offered (off: software fills them).
    pub tx_csum_offload: bool,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            port: 0,
            nb_queues: 1,
            mtu: 1500,
            nb_rxd: 1024,
            nb_txd: 1024,
            rss_key: RSS_KEY_DEFAULT,
            tx_csum_offload: true,
        }
    }
}

/// What the PMD advertised and what blink turned on, for `blink stat` and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    pub rx_capa: u64,
    pub tx_capa: u64,
    pub rx_enabled: u64,
    pub tx_enabled: u64,
    pub rss_capa: u64,
    pub rss_hf: u64,
}

impl fmt::Display for Offloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx capa {:#x} enabled {:#x}, tx capa {:#x} enabled {:#x}, rss flow types capa {:#x} enabled {:#x}",
            self.rx_capa, self.rx_enabled, self.tx_capa, self.tx_enabled, self.rss_capa, self.rss_hf
        )
    }
}

/// What became of the port's RSS redirection table (RETA), for `blink stat` and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetaInfo {
    /// Entries in the NIC's table (`rte_eth_dev_info.reta_size`; 0: the PMD exposes none).
    pub reta_size: u16,
    /// The table was written with the stack's RETA (`rte_eth_dev_rss_reta_update` returned 0).
    pub programmed: bool,
    /// Read back with `rte_eth_dev_rss_reta_query` and found equal (false when not read back:
    /// the PMD cannot, or nothing was programmed).
    pub verified: bool,
    /// The NIC's queue choice equals `Reta::new(nb_queues).lookup(toeplitz(key, tuple))` for
    /// every flow: the device advertises `NetdevFeatures::RSS_QUEUES`. Always true with one
    /// queue (everything lands on queue 0).
    pub rss_queues: bool,
}

impl fmt::Display for RetaInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reta size {} programmed {} verified {} rss-queues {}",
            self.reta_size, self.programmed, self.verified, self.rss_queues
        )
    }
}

/// The NIC's RETA contents that make its queue choice equal the stack's `soft` table, for a
/// NIC table of `size` entries. Configuration time only (allocates).
///
/// The NIC indexes its table with the hash's low bits, `hash % size` (`size` a power of two);
/// the stack indexes `soft` with `hash % 128` (rss.rs). For `size >= 128`, entry `i = soft[i %
/// 128]` agrees for every hash, since `(hash % size) % 128 == hash % 128`. For `size < 128` the
/// NIC ignores hash bits the stack uses, so equality holds only when `soft` repeats with period
/// `size` (true for `i % nb_queues` when `nb_queues` divides `size`). A size that is not a power
/// of two has no portable indexing rule: refused. DPDK: `rte_eth_dev_rss_reta_update()`;
/// Linux: `ethtool -X`, `ethtool_rxfh_indir_default()`.
fn nic_reta(size: usize, soft: &[u16; RETA_SIZE]) -> Result<Vec<u16>, String> {
    if size == 0 {
        return Err("the PMD exposes no redirection table (reta_size 0)".into());
    }
    if !size.is_power_of_two() {
        return Err(format!(
            "reta_size {size} is not a power of two (no known mapping of hashes to entries)"
        ));
    }
    if size < RETA_SIZE && (0..RETA_SIZE).any(|j| soft[j] != soft[j % size]) {
        return Err(format!(
            "reta_size {size} is smaller than blink's {RETA_SIZE} entries and blink's table does not repeat every {size} entries"
        ));
    }
    Ok((0..size).map(|i| soft[i % RETA_SIZE]).collect())
}

/// Program the port's RETA with the stack's (`Reta::new(nq)`) and check that the port took
/// the stack's Toeplitz key. Called after `rte_eth_dev_start` (some PMDs size the table by the
/// configured queues). Never fails the port: on any obstacle it logs one warning and reports
/// `rss_queues: false`, and the stack steers in software (Linux: RPS).
fn program_reta(port: u16, driver: &str, nq: u16, rss_hf: u64, key: &[u8; 40]) -> RetaInfo {
    let mut ri = RetaInfo::default();
    let mut info = ffi::rte_eth_dev_info::default();
    // SAFETY: control-path call on a started port, pointer to a live local.
    let r = unsafe { ffi::rte_eth_dev_info_get(port, &mut info) };
    if r == 0 {
        ri.reta_size = info.reta_size;
    }
    if nq == 1 {
        ri.rss_queues = true;
        return ri;
    }
    let fail = |why: String| {
        log::warn!(
            "dpdk port {port} ({driver}): {why}; the NIC cannot steer flows to their owner queue: software steering will be used (flows are re-hashed and forwarded between cores)"
        );
    };
    if rss_hf == 0 {
        fail("RSS is not enabled on the port".into());
        return ri;
    }
    if r != 0 {
        fail(format!("rte_eth_dev_info_get failed ({})", strerror(r)));
        return ri;
    }
    let soft = match Reta::new(nq) {
        Ok(t) => t,
        Err(e) => {
            fail(e.to_string());
            return ri;
        }
    };
    let want = match nic_reta(info.reta_size as usize, soft.entries()) {
        Ok(w) => w,
        Err(e) => {
            fail(e);
            return ri;
        }
    };
    // The key the port hashes with must be the stack's. Read it back where the PMD can; a
    // buffer left all zero means the PMD did not fill it (no real key is all zero).
    let mut got = [0u8; 64];
    let mut conf = ffi::rte_eth_rss_conf {
        rss_key: got.as_mut_ptr(),
        rss_key_len: got.len() as u8,
        rss_hf: 0,
    };
    // SAFETY: `conf.rss_key` points at `got`, 64 bytes, more than any PMD's key (40 or 52).
    let r = unsafe { ffi::rte_eth_dev_rss_hash_conf_get(port, &mut conf) };
    if r == 0 && got.iter().any(|&b| b != 0) && got[..key.len()] != key[..] {
        fail("the port did not take blink's RSS key".into());
        return ri;
    }
    let mut groups = vec![ffi::rte_eth_rss_reta_entry64::default(); want.len().div_ceil(64)];
    for (i, &q) in want.iter().enumerate() {
        let g = &mut groups[i / 64];
        g.mask |= 1u64 << (i % 64);
        g.reta[i % 64] = q;
    }
    // SAFETY: `groups` holds reta_size / 64 (rounded up) entries, as the call requires for a
    // table of `reta_size` entries; every queue id named is configured.
    let r = unsafe { ffi::rte_eth_dev_rss_reta_update(port, groups.as_mut_ptr(), info.reta_size) };
    if r != 0 {
        fail(format!(
            "rte_eth_dev_rss_reta_update of {} entries failed ({}{})",
            info.reta_size,
            strerror(r),
            if r == -(ffi::ENOTSUP as i32) {
                ": the PMD cannot program its RETA"
            } else {
                ""
            }
        ));
        return ri;
    }
    ri.programmed = true;
    for g in groups.iter_mut() {
        g.reta = [u16::MAX; 64];
    }
    // SAFETY: as for the update; the PMD fills the entries selected by each mask.
    let r = unsafe { ffi::rte_eth_dev_rss_reta_query(port, groups.as_mut_ptr(), info.reta_size) };
    if r == 0 {
        let back = (0..want.len()).map(|i| groups[i / 64].reta[i % 64]);
        if let Some(i) = back.zip(&want).position(|(b, &w)| b != w) {
            fail(format!(
                "RETA entry {i} reads back as queue {} after programming queue {}",
                groups[i / 64].reta[i % 64],
                want[i]
            ));
            return ri;
        }
        ri.verified = true;
    } else {
        log::info!(
            "dpdk port {port} ({driver}): RETA programmed but not read back ({}); trusting the update",
            strerror(r)
        );
    }
    ri.rss_queues = true;
    ri
}

/// Owns the started port: stops and closes it when the last handle goes.
struct PortGuard {
    port: u16,
    /// Serialises `rte_eth_stats_get` between the handles of different cores: ethdev's
    /// control path is not thread-safe (some PMDs accumulate clear-on-read registers).
    stats_lock: std::sync::Mutex<()>,
}

impl Drop for PortGuard {
    /// Stop and close the port (net_tap removes its kernel interface); buffers the PMD held go
    /// back to the pool. Buffers blink still holds stay valid: the pool is never freed.
    /// DPDK: `rte_eth_dev_stop()`, `rte_eth_dev_close()`.
    fn drop(&mut self) {
        // SAFETY: the port was started by `open`; this runs once, after every handle that
        // could poll one of its queues is gone.
        unsafe {
            ffi::rte_eth_dev_stop(self.port);
            ffi::rte_eth_dev_close(self.port);
        }
    }
}

/// Outcome of turning one skb into an rte_mbuf chain.
enum Built {
    Chain(*mut ffi::rte_mbuf),
    /// The pool is empty: keep the skb for a later try.
    NoBuf,
    /// The frame can never be sent (empty, or too large for a PMD that cannot chain):
    /// consumed and counted.
    Drop,
}

/// Driver counters beyond the port's own statistics.
#[derive(Debug, Clone, Copy, Default)]
struct SwStats {
    rx_csum_good: u64,
    rx_csum_bad: u64,
    rx_csum_unknown: u64,
    rx_nic_hash: u64,
    rx_segs: u64,
    tx_csum_offload: u64,
    tx_csum_sw: u64,
    tx_segs: u64,
    tx_copied: u64,
    tx_nombuf: u64,
    tx_full: u64,
    tx_prepare_err: u64,
    tx_too_big: u64,
    tx_empty: u64,
    /// CHECKSUM_PARTIAL frames whose checksum could not be filled (unparsable, or no buffer
    /// for a private copy): sent as they are, the receiver drops them.
    tx_csum_err: u64,
    rx_dropped: u64,
}

/// One DPDK port, one rx/tx queue pair per stack core.
///
/// From [`DpdkDev::open`], one handle serves every queue of the port; [`DpdkDev::into_queues`]
/// splits it into one handle per queue pair, each to be driven by exactly one core.
pub struct DpdkDev {
    /// Declared first so that it drops first: the port is closed (buffers back to the pool)
    /// while this handle's pool reference still stands.
    guard: Arc<PortGuard>,
    name: String,
    driver: String,
    port: u16,
    /// The port's queue pairs (also on a per-queue handle).
    nb_queues: u16,
    /// `Some(q)`: this handle may only use queue pair `q`. `None`: every queue.
    queue: Option<u16>,
    reta: RetaInfo,
    mac: EthAddr,
    mtu: usize,
    pool: Mempool,
    /// For the software-checksum fallback's private copies.
    cache: MempoolCache,
    features: NetdevFeatures,
    offloads: Offloads,
    sw: SwStats,
    /// Frames this handle received / sent (the per-queue figures when the PMD keeps none).
    rx_packets: u64,
    tx_packets: u64,
    rx_bytes: u64,
    tx_bytes: u64,
    warned_csum: bool,
    warned_sg: bool,
}

// SAFETY: a handle's queues are driven only by the core that owns the value (one handle per
// queue pair after `into_queues`, and DPDK's queues are independent of each other); what
// handles share is the port guard (an Arc, whose lock serialises the statistics calls) and
// DPDK's thread-safe mempool behind `pool`.
unsafe impl Send for DpdkDev {}

const WANT_RX: u64 = ffi::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM
    | ffi::RTE_ETH_RX_OFFLOAD_TCP_CKSUM
    | ffi::RTE_ETH_RX_OFFLOAD_UDP_CKSUM
    | ffi::RTE_ETH_RX_OFFLOAD_RSS_HASH;
const WANT_TX: u64 = ffi::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM
    | ffi::RTE_ETH_TX_OFFLOAD_TCP_CKSUM
    | ffi::RTE_ETH_TX_OFFLOAD_UDP_CKSUM
    | ffi::RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
const WANT_RSS: u64 = ffi::RTE_ETH_RSS_IPV4
    | ffi::RTE_ETH_RSS_FRAG_IPV4
    | ffi::RTE_ETH_RSS_NONFRAG_IPV4_TCP
    | ffi::RTE_ETH_RSS_NONFRAG_IPV4_UDP
    | ffi::RTE_ETH_RSS_NONFRAG_IPV4_OTHER;

impl DpdkDev {
    /// Configure and start `cfg.port` with `cfg.nb_queues` queue pairs whose receive buffers
    /// come from `pool` (a DPDK pool: `Mempool::new_dpdk`). EAL must be initialised.
    pub fn open(cfg: &DpdkConfig, pool: &Mempool) -> Result<DpdkDev, DpdkError> {
        let port = cfg.port;
        let perr = |op: &'static str, r: i32| DpdkError::Port {
            port,
            op,
            reason: strerror(r),
        };
        assert!(
            !pool.rte_mempool().is_null(),
            "DpdkDev needs a DPDK mempool (Mempool::new_dpdk)"
        );
        // SAFETY (all FFI calls below): plain ethdev control-path calls on a port id checked
        // to be valid, with pointers to live, properly typed locals.
        let avail = unsafe { ffi::rte_eth_dev_count_avail() };
        if avail == 0 {
            return Err(DpdkError::NoPorts);
        }
        if unsafe { ffi::rte_eth_dev_is_valid_port(port) } == 0 {
            return Err(DpdkError::BadPort { port, avail });
        }
        let mut info = ffi::rte_eth_dev_info::default();
        let r = unsafe { ffi::rte_eth_dev_info_get(port, &mut info) };
        if r != 0 {
            return Err(perr("rte_eth_dev_info_get", r));
        }
        let driver = if info.driver_name.is_null() {
            "unknown".to_string()
        } else {
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        let nq = cfg.nb_queues.max(1);
        if nq > info.max_rx_queues || nq > info.max_tx_queues {
            return Err(DpdkError::Queues {
                port,
                driver,
                want: nq,
                max_rx: info.max_rx_queues,
                max_tx: info.max_tx_queues,
            });
        }
        let mut off = Offloads {
            rx_capa: info.rx_offload_capa,
            tx_capa: info.tx_offload_capa,
            rx_enabled: info.rx_offload_capa & WANT_RX,
            tx_enabled: info.tx_offload_capa
                & if cfg.tx_csum_offload {
                    WANT_TX
                } else {
                    ffi::RTE_ETH_TX_OFFLOAD_MULTI_SEGS
                },
            rss_capa: info.flow_type_rss_offloads,
            rss_hf: info.flow_type_rss_offloads & WANT_RSS,
        };
        // A key of another length than the stack's 40 bytes would hash differently from the
        // software Toeplitz; then leave RSS off rather than disagree with it.
        let key_ok = info.hash_key_size == 0 || info.hash_key_size as usize == cfg.rss_key.len();
        if !key_ok {
            log::warn!(
                "dpdk port {port} ({driver}): RSS key is {} bytes, blink's is {}: RSS left off, software hashing",
                info.hash_key_size,
                cfg.rss_key.len()
            );
            off.rss_hf = 0;
        }
        let mut key = cfg.rss_key;
        let mut conf = ffi::rte_eth_conf::default();
        let fill = |conf: &mut ffi::rte_eth_conf, off: &Offloads, key: &mut [u8; 40]| {
            conf.rxmode.offloads = off.rx_enabled;
            conf.txmode.offloads = off.tx_enabled;
            conf.rxmode.mtu = cfg.mtu as u32;
            if off.rss_hf != 0 {
                conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
                conf.rx_adv_conf.rss_conf.rss_hf = off.rss_hf;
            } else {
                conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_NONE;
            }
        };
        fill(&mut conf, &off, &mut key);
        let mut r = unsafe { ffi::rte_eth_dev_configure(port, nq, nq, &conf) };
        if r != 0 && off.rss_hf != 0 {
            log::warn!(
                "dpdk port {port} ({driver}): configure with RSS failed ({}); retrying without RSS",
                strerror(r)
            );
            off.rss_hf = 0;
            off.rx_enabled &= !ffi::RTE_ETH_RX_OFFLOAD_RSS_HASH;
            conf = ffi::rte_eth_conf::default();
            fill(&mut conf, &off, &mut key);
            r = unsafe { ffi::rte_eth_dev_configure(port, nq, nq, &conf) };
        }
        if r != 0 {
            return Err(perr("rte_eth_dev_configure", r));
        }
        let (mut nb_rxd, mut nb_txd) = (cfg.nb_rxd, cfg.nb_txd);
        let r = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut nb_rxd, &mut nb_txd) };
        if r != 0 {
            return Err(perr("rte_eth_dev_adjust_nb_rx_tx_desc", r));
        }
        let socket = unsafe { ffi::rte_eth_dev_socket_id(port) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..nq {
            // NULL rx/tx conf: the PMD's defaults with the port-level offloads set above.
            let r =
                unsafe { ffi::rte_eth_rx_queue_setup(port, q, nb_rxd, socket, std::ptr::null(), pool.rte_mempool()) };
            if r != 0 {
                return Err(perr(
                    "rte_eth_rx_queue_setup (is the mempool large enough for the rx ring?)",
                    r,
                ));
            }
            let r = unsafe { ffi::rte_eth_tx_queue_setup(port, q, nb_txd, socket, std::ptr::null()) };
            if r != 0 {
                return Err(perr("rte_eth_tx_queue_setup", r));
            }
        }
        let r = unsafe { ffi::rte_eth_dev_start(port) };
        if r != 0 {
            return Err(perr("rte_eth_dev_start", r));
        }
        // From here on the guard stops and closes the port on every path, errors included.
        let guard = Arc::new(PortGuard {
            port,
            stats_lock: std::sync::Mutex::new(()),
        });
        let reta = program_reta(port, &driver, nq, off.rss_hf, &key);
        let mut addr = ffi::rte_ether_addr::default();
        let r = unsafe { ffi::rte_eth_macaddr_get(port, &mut addr) };
        if r != 0 {
            return Err(perr("rte_eth_macaddr_get", r));
        }
        let mut mtu16: u16 = 0;
        let mtu = if unsafe { ffi::rte_eth_dev_get_mtu(port, &mut mtu16) } == 0 && mtu16 != 0 {
            (mtu16 as usize).min(cfg.mtu)
        } else {
            cfg.mtu
        };
        let mut features = NetdevFeatures::NONE;
        for (bit, f) in [
            (ffi::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM, NetdevFeatures::RXCSUM_IPV4),
            (ffi::RTE_ETH_RX_OFFLOAD_TCP_CKSUM, NetdevFeatures::RXCSUM_TCP),
            (ffi::RTE_ETH_RX_OFFLOAD_UDP_CKSUM, NetdevFeatures::RXCSUM_UDP),
            (ffi::RTE_ETH_RX_OFFLOAD_RSS_HASH, NetdevFeatures::RXHASH),
        ] {
            if off.rx_enabled & bit != 0 {
                features = features | f;
            }
        }
        for (bit, f) in [
            (ffi::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM, NetdevFeatures::TXCSUM_IPV4),
            (ffi::RTE_ETH_TX_OFFLOAD_TCP_CKSUM, NetdevFeatures::TXCSUM_TCP),
            (ffi::RTE_ETH_TX_OFFLOAD_UDP_CKSUM, NetdevFeatures::TXCSUM_UDP),
            (ffi::RTE_ETH_TX_OFFLOAD_MULTI_SEGS, NetdevFeatures::SG),
        ] {
            if off.tx_enabled & bit != 0 {
                features = features | f;
            }
        }
        if reta.rss_queues {
            features = features | NetdevFeatures::RSS_QUEUES;
        }
        log::info!(
            "dpdk port {port} ({driver}): {nq} queue(s), {nb_rxd}/{nb_txd} descriptors, {off}, {reta}, features {features:?}"
        );
        Ok(DpdkDev {
            guard,
            name: format!("dpdk{port}"),
            driver,
            port,
            nb_queues: nq,
            queue: None,
            reta,
            mac: EthAddr(addr.addr_bytes),
            mtu,
            pool: pool.clone(),
            cache: pool.cache(),
            features,
            offloads: off,
            sw: SwStats::default(),
            rx_packets: 0,
            tx_packets: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            warned_csum: false,
            warned_sg: false,
        })
    }

    /// One handle per queue pair, handle `q` serving queue `q` only, each to be moved to and
    /// driven by one core: its own mempool cache and software counters, no lock on the packet
    /// path. `rx_burst`/`tx_burst` with another queue id return 0; `nb_queues()` still gives
    /// the port's count. The port is stopped and closed when the last handle is dropped.
    /// Statistics are per queue (`rte_eth_stats.q_*[q]` where the PMD keeps them, else the
    /// handle's own counts), with the port-wide drop and error counters on queue 0's handle
    /// only, so that the handles' figures add up to the port's. Counters start at zero: split
    /// before use. A one-queue port (or a handle already split) gives back itself.
    /// DPDK: one lcore per rx/tx queue, `rte_eth_rx_burst(port, queue, ...)`.
    pub fn into_queues(self) -> Vec<DpdkDev> {
        if self.nb_queues == 1 || self.queue.is_some() {
            return vec![self];
        }
        let n = self.nb_queues;
        (0..n)
            .map(|q| DpdkDev {
                guard: self.guard.clone(),
                name: format!("{}q{q}", self.name),
                driver: self.driver.clone(),
                port: self.port,
                nb_queues: n,
                queue: Some(q),
                reta: self.reta,
                mac: self.mac,
                mtu: self.mtu,
                pool: self.pool.clone(),
                cache: self.pool.cache(),
                features: self.features,
                offloads: self.offloads,
                sw: SwStats::default(),
                rx_packets: 0,
                tx_packets: 0,
                rx_bytes: 0,
                tx_bytes: 0,
                warned_csum: self.warned_csum,
                warned_sg: self.warned_sg,
            })
            .collect()
    }

    /// The queue pair this handle is restricted to: `Some(q)` for a handle from
    /// [`DpdkDev::into_queues`] of a multi-queue port, `None` for one serving every queue.
    pub fn queue(&self) -> Option<u16> {
        self.queue
    }

    /// What became of the NIC's redirection table (whether the device steers flows to their
    /// owner queue: `NetdevFeatures::RSS_QUEUES`).
    pub fn reta(&self) -> RetaInfo {
        self.reta
    }

    /// May this handle use `queue`?
    #[inline]
    fn owns(&self, queue: u16) -> bool {
        match self.queue {
            Some(q) => q == queue,
            None => queue < self.nb_queues,
        }
    }

    pub fn driver(&self) -> &str {
        &self.driver
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The offloads the PMD advertised and those blink enabled.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// rte_eth_stats_get(): the port's own counters (port-wide on every handle).
    pub fn port_stats(&self) -> ffi::rte_eth_stats {
        let mut s = ffi::rte_eth_stats::default();
        let _g = self.guard.stats_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: valid port, pointer to a live local; the lock keeps other handles' stats
        // calls out.
        unsafe { ffi::rte_eth_stats_get(self.port, &mut s) };
        s
    }

    /// Checksum state from the PMD's rx flags: `CHECKSUM_UNNECESSARY` only when both the IP
    /// header and the L4 checksum were verified good (ICMP and others are checked in software).
    #[inline]
    fn rx_csum(&mut self, ol: u64) -> IpSummed {
        let ip = ol & ffi::RTE_MBUF_F_RX_IP_CKSUM_MASK;
        let l4 = ol & ffi::RTE_MBUF_F_RX_L4_CKSUM_MASK;
        if ip == ffi::RTE_MBUF_F_RX_IP_CKSUM_GOOD && l4 == ffi::RTE_MBUF_F_RX_L4_CKSUM_GOOD {
            self.sw.rx_csum_good += 1;
            IpSummed::Unnecessary
        } else {
            // A "bad" verdict is left to software too: it counts the drop under its own name
            // (Linux does the same with CHECKSUM_NONE).
            if ip == ffi::RTE_MBUF_F_RX_IP_CKSUM_BAD || l4 == ffi::RTE_MBUF_F_RX_L4_CKSUM_BAD {
                self.sw.rx_csum_bad += 1;
            } else {
                self.sw.rx_csum_unknown += 1;
            }
            IpSummed::None
        }
    }

    /// Fill a `CHECKSUM_PARTIAL` skb's L4 checksum in software (the PMD lacks the offload).
    /// Returns false when the frame cannot be parsed or written (then it goes out as it is).
    fn tx_csum_sw(skb: &mut SkBuff) -> bool {
        let Some((l3, l4, proto, csum_off)) = parse_l4(skb.data()) else {
            return false;
        };
        let total = skb.len();
        let src: [u8; 4] = skb.data()[l3 + 12..l3 + 16].try_into().expect("4 bytes");
        let dst: [u8; 4] = skb.data()[l3 + 16..l3 + 20].try_into().expect("4 bytes");
        let l4_len = total - l4;
        let Some(d) = skb.data_mut() else { return false };
        d[l4 + csum_off] = 0;
        d[l4 + csum_off + 1] = 0;
        let mut sum = pseudo_header_ipv4(src, dst, proto, l4_len as u16);
        let mut off = 0usize;
        for seg in skb.segments() {
            let s_end = off + seg.len();
            if s_end > l4 {
                let from = l4.saturating_sub(off);
                // csum_block_add rotates a block that starts at an odd offset (Linux's helper).
                sum = csum_block_add(sum, csum_partial(&seg[from..], 0), off + from - l4);
            }
            off = s_end;
        }
        let c = csum_fold(sum);
        let c = if c == 0 && proto == 17 { 0xffff } else { c };
        let Some(d) = skb.data_mut() else { return false };
        d[l4 + csum_off..l4 + csum_off + 2].copy_from_slice(&c.to_be_bytes());
        skb.ip_summed = IpSummed::None;
        true
    }

    /// Build the rte_mbuf chain for one skb. None when the pool is empty (counted).
    fn build_chain(&mut self, skb: &SkBuff, ol_flags: u64, hdr_lens: (u8, u16, u8)) -> Built {
        let mp = self.pool.rte_mempool();
        let mut first: *mut ffi::rte_mbuf = std::ptr::null_mut();
        let mut last: *mut ffi::rte_mbuf = std::ptr::null_mut();
        let mut nb: u16 = 0;
        let linear = (skb.head_mbuf(), skb.data_offset(), skb.headlen());
        let frags = skb.frags().iter().map(|f| (f.mbuf(), f.offset(), f.len()));
        let sg = self.features.has(NetdevFeatures::SG);
        if !sg && skb.is_nonlinear() {
            return self.build_copy(skb, ol_flags, hdr_lens);
        }
        for (m, off, len) in std::iter::once(linear).chain(frags) {
            if len == 0 {
                continue;
            }
            let direct = m.rte_mbuf();
            if direct.is_null() || !self.pool.owns(m) {
                // A buffer from another pool: no rte_mbuf to point at.
                if !first.is_null() {
                    // SAFETY: `first` heads a chain we built and still own.
                    unsafe { ffi::blink_rte_pktmbuf_free(first) };
                }
                return self.build_copy(skb, ol_flags, hdr_lens);
            }
            // SAFETY: mp is the port's live pool.
            let mi = unsafe { ffi::blink_rte_pktmbuf_alloc(mp) };
            if mi.is_null() {
                self.sw.tx_nombuf += 1;
                if !first.is_null() {
                    // SAFETY: as above.
                    unsafe { ffi::blink_rte_pktmbuf_free(first) };
                }
                return Built::NoBuf;
            }
            // SAFETY: mi is fresh and direct; `direct` is a live segment of the same pool
            // (held by `skb` for the duration of this call, and by the attach afterwards).
            unsafe {
                ffi::blink_rte_pktmbuf_attach(mi, direct);
                ffi::blink_rte_mbuf_set_seg(mi, off as u16, len as u16, std::ptr::null_mut());
                if last.is_null() {
                    first = mi;
                } else {
                    ffi::blink_rte_mbuf_set_seg_next(last, mi);
                }
            }
            last = mi;
            nb += 1;
        }
        if first.is_null() {
            self.sw.tx_empty += 1;
            return Built::Drop;
        }
        let (l2, l3, l4) = hdr_lens;
        // SAFETY: `first` heads the chain just built.
        unsafe { ffi::blink_rte_mbuf_set_pkt(first, skb.len() as u32, nb, ol_flags, l2, l3, l4) };
        self.sw.tx_segs += nb as u64;
        Built::Chain(first)
    }

    /// Copy the whole frame into one fresh rte_mbuf (foreign buffers, or a PMD without
    /// multi-segment transmit).
    fn build_copy(&mut self, skb: &SkBuff, ol_flags: u64, hdr_lens: (u8, u16, u8)) -> Built {
        let mut m = match self.pool.alloc() {
            Some(m) => m,
            None => {
                self.sw.tx_nombuf += 1;
                return Built::NoBuf;
            }
        };
        let len = skb.len();
        if len > m.tailroom() {
            // Larger than one buffer and the PMD cannot chain: it cannot be sent.
            self.sw.tx_too_big += 1;
            return Built::Drop;
        }
        let dst = m.append(len).expect("room checked");
        let mut o = 0;
        for s in skb.segments() {
            dst[o..o + s.len()].copy_from_slice(s);
            o += s.len();
        }
        self.sw.tx_copied += 1;
        let rte = m.rte_mbuf();
        // Hand the buffer to the PMD: an indirect mbuf keeps it alive after our handle goes.
        let mp = self.pool.rte_mempool();
        // SAFETY: as in build_chain.
        let mi = unsafe { ffi::blink_rte_pktmbuf_alloc(mp) };
        if mi.is_null() {
            self.sw.tx_nombuf += 1;
            return Built::NoBuf;
        }
        let (l2, l3, l4) = hdr_lens;
        // SAFETY: as in build_chain; `m` keeps `rte` alive until the attach holds it.
        unsafe {
            ffi::blink_rte_pktmbuf_attach(mi, rte);
            ffi::blink_rte_mbuf_set_seg(mi, m.data_off() as u16, len as u16, std::ptr::null_mut());
            ffi::blink_rte_mbuf_set_pkt(mi, len as u32, 1, ol_flags, l2, l3, l4);
        }
        drop(m);
        Built::Chain(mi)
    }

    /// Offload flags and header lengths for one skb; fills the checksum in software when the
    /// PMD cannot.
    fn tx_offload(&mut self, skb: &mut SkBuff) -> (u64, (u8, u16, u8)) {
        if skb.ip_summed != IpSummed::Partial {
            return (0, (0, 0, 0));
        }
        let Some((l3, l4, proto, _)) = parse_l4(skb.data()) else {
            return (0, (0, 0, 0));
        };
        let (bit, flag) = match proto {
            6 => (NetdevFeatures::TXCSUM_TCP, ffi::RTE_MBUF_F_TX_TCP_CKSUM),
            _ => (NetdevFeatures::TXCSUM_UDP, ffi::RTE_MBUF_F_TX_UDP_CKSUM),
        };
        if self.features.has(bit) {
            self.sw.tx_csum_offload += 1;
            let l4_len = if proto == 6 {
                ((skb.data()[l4 + 12] >> 4) as usize * 4) as u8
            } else {
                8
            };
            return (ffi::RTE_MBUF_F_TX_IPV4 | flag, (l3 as u8, (l4 - l3) as u16, l4_len));
        }
        if !self.warned_csum {
            log::warn!(
                "{} ({}): no tx checksum offload for protocol {proto}; filling checksums in software",
                self.name,
                self.driver
            );
            self.warned_csum = true;
        }
        if skb.skb_header_cloned() {
            // TCP keeps a clone of what it sends: writing the checksum needs a private header
            // (Linux: skb_checksum_help's skb_cow_head). Only on this fallback path.
            match skb.skb_copy(&mut self.cache) {
                Some(c) => *skb = c,
                None => {
                    self.sw.tx_csum_err += 1;
                    return (0, (0, 0, 0));
                }
            }
        }
        if Self::tx_csum_sw(skb) {
            self.sw.tx_csum_sw += 1;
        } else {
            self.sw.tx_csum_err += 1;
        }
        (0, (0, 0, 0))
    }
}

/// (IP header offset, L4 header offset, protocol, checksum offset in the L4 header) of an
/// untagged Ethernet IPv4 TCP/UDP frame whose headers are in the linear area.
fn parse_l4(d: &[u8]) -> Option<(usize, usize, u8, usize)> {
    const ETH: usize = 14;
    if d.len() < ETH + 20 || d[12] != 0x08 || d[13] != 0x00 || d[ETH] >> 4 != 4 {
        return None;
    }
    let ihl = (d[ETH] & 0x0f) as usize * 4;
    let proto = d[ETH + 9];
    let l4 = ETH + ihl;
    let csum_off = match proto {
        6 => 16,
        17 => 6,
        _ => return None,
    };
    if ihl < 20 || d.len() < l4 + csum_off + 2 {
        return None;
    }
    Some((ETH, l4, proto, csum_off))
}

impl NetDevice for DpdkDev {
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
        self.nb_queues
    }
    fn features(&self) -> NetdevFeatures {
        self.features
    }

    fn rx_burst(&mut self, queue: u16, out: &mut Burst) -> usize {
        let want = out.remaining_capacity().min(BURST);
        if want == 0 || !self.owns(queue) {
            return 0;
        }
        let mut pkts: [*mut ffi::rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
        // SAFETY: `pkts` has room for `want` pointers; port and queue are configured.
        let n = unsafe { ffi::blink_rte_eth_rx_burst(self.port, queue, pkts.as_mut_ptr(), want as u16) } as usize;
        self.rx_packets += n as u64;
        let mut info = ffi::blink_rx_info::default();
        for &p in &pkts[..n] {
            // SAFETY: `p` was just delivered by the PMD from our pool.
            unsafe { ffi::blink_rte_mbuf_rx_info(p, &mut info) };
            // SAFETY: as above; used once.
            let m = unsafe { Mbuf::from_rte(&self.pool, p) };
            self.sw.rx_segs += info.nb_segs as u64;
            match SkBuff::from_mbuf(m) {
                Ok(mut skb) => {
                    skb.queue = queue;
                    skb.ip_summed = self.rx_csum(info.ol_flags);
                    if info.ol_flags & ffi::RTE_MBUF_F_RX_RSS_HASH != 0 {
                        self.sw.rx_nic_hash += 1;
                        skb.rss_hash = info.rss_hash;
                        // The NIC hashes TCP/UDP over the 4-tuple and other IPv4 over the
                        // addresses (the flow types configured above).
                        skb.hash_type = match parse_l4(skb.data()) {
                            Some((_, _, 6, _)) => RssHashType::L4Ipv4Tcp,
                            Some((_, _, 17, _)) => RssHashType::L4Ipv4Udp,
                            _ => RssHashType::L3Ipv4,
                        };
                    }
                    self.rx_bytes += info.pkt_len as u64;
                    out.push(skb);
                }
                // More segments than an skb has fragments: counted, buffers freed.
                Err(_) => self.sw.rx_dropped += 1,
            }
        }
        n
    }

    fn tx_burst(&mut self, queue: u16, pkts: &mut Burst) -> usize {
        if pkts.is_empty() || !self.owns(queue) {
            return 0;
        }
        let mut chains: [*mut ffi::rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
        let mut built = 0usize;
        let mut bad_at = None;
        for skb in pkts.iter_mut() {
            let (ol, lens) = self.tx_offload(skb);
            if skb.is_nonlinear() && !self.features.has(NetdevFeatures::SG) && !self.warned_sg {
                log::warn!(
                    "{} ({}): no multi-segment transmit; copying chained frames",
                    self.name,
                    self.driver
                );
                self.warned_sg = true;
            }
            match self.build_chain(skb, ol, lens) {
                Built::Chain(c) => {
                    chains[built] = c;
                    built += 1;
                }
                Built::NoBuf => break,
                Built::Drop => {
                    bad_at = Some(built);
                    break;
                }
            }
        }
        if built == 0 {
            // An unsendable frame at the head is consumed (counted above) so it cannot block
            // the queue, as the TAP driver does with frames the kernel refuses.
            if bad_at == Some(0) {
                pkts.remove(0);
                return 1;
            }
            return 0;
        }
        let mut ready = built as u16;
        if self.offloads.tx_enabled != 0 {
            // SAFETY: `chains[..built]` are valid packets for this port.
            ready = unsafe { ffi::blink_rte_eth_tx_prepare(self.port, queue, chains.as_mut_ptr(), built as u16) };
            if (ready as usize) < built {
                // rte_eth_tx_prepare stops at the first packet the NIC cannot take as built.
                self.sw.tx_prepare_err += 1;
                bad_at = Some(ready as usize);
            }
        }
        // SAFETY: as above.
        let sent = unsafe { ffi::blink_rte_eth_tx_burst(self.port, queue, chains.as_mut_ptr(), ready) } as usize;
        for &c in &chains[sent..built] {
            // Not taken: release our indirect mbufs; the skbs stay for the caller.
            // SAFETY: chains the PMD did not take are still ours.
            unsafe { ffi::blink_rte_pktmbuf_free(c) };
        }
        if sent < built {
            self.sw.tx_full += 1;
        }
        self.tx_packets += sent as u64;
        // Sent skbs are done: the indirect mbufs keep their buffers alive until the PMD frees
        // them, so dropping the skbs now only releases blink's references.
        for skb in pkts.drain(..sent) {
            self.tx_bytes += skb.len() as u64;
        }
        // The PMD took everything before an unsendable frame: consume that one too.
        if bad_at == Some(sent) && !pkts.is_empty() {
            pkts.remove(0);
            return sent + 1;
        }
        sent
    }

    /// A handle serving every queue: the port's counters. A per-queue handle: its queue's
    /// (`q_ipackets[q]` etc. where the PMD keeps them, at least the handle's own counts) and,
    /// on queue 0's handle only, the port-wide errors and drops, so the handles add up.
    fn stats(&self) -> DevStats {
        let s = self.port_stats();
        let sw_rx_dropped = self.sw.rx_dropped;
        let sw_tx_dropped = self.sw.tx_too_big + self.sw.tx_empty + self.sw.tx_prepare_err;
        let Some(q) = self.queue else {
            return DevStats {
                rx_packets: s.ipackets,
                rx_bytes: s.ibytes.max(self.rx_bytes),
                tx_packets: s.opackets,
                tx_bytes: s.obytes.max(self.tx_bytes),
                rx_dropped: sw_rx_dropped,
                tx_dropped: sw_tx_dropped,
                rx_errors: s.ierrors,
                tx_errors: s.oerrors,
                rx_nombuf: s.rx_nombuf,
                rx_missed: s.imissed,
            };
        };
        // Queues past RTE_ETHDEV_QUEUE_STAT_CNTRS have no per-queue slot: own counts only.
        let per = |a: &[u64]| a.get(q as usize).copied().unwrap_or(0);
        let port_wide = |v: u64| if q == 0 { v } else { 0 };
        DevStats {
            rx_packets: per(&s.q_ipackets).max(self.rx_packets),
            rx_bytes: per(&s.q_ibytes).max(self.rx_bytes),
            tx_packets: per(&s.q_opackets).max(self.tx_packets),
            tx_bytes: per(&s.q_obytes).max(self.tx_bytes),
            rx_dropped: sw_rx_dropped,
            tx_dropped: sw_tx_dropped,
            // q_errors[] means rx errors to some PMDs and tx errors to others: port-wide only.
            rx_errors: port_wide(s.ierrors),
            tx_errors: port_wide(s.oerrors),
            rx_nombuf: port_wide(s.rx_nombuf),
            rx_missed: port_wide(s.imissed),
        }
    }

    fn link_up(&self) -> bool {
        let mut link = ffi::rte_eth_link::default();
        // SAFETY: valid port, pointer to a live local.
        unsafe { ffi::rte_eth_link_get_nowait(self.port, &mut link) };
        link.link_status() != 0
    }

    /// Counters as in `stats()` (per queue on a per-queue handle), then the port's setup:
    /// offloads, RSS flow types and what became of the RETA.
    fn extra_stats(&self) -> Vec<(String, u64)> {
        let s = self.stats();
        let mut v = vec![
            ("dpdk.ipackets".into(), s.rx_packets),
            ("dpdk.opackets".into(), s.tx_packets),
            ("dpdk.imissed".into(), s.rx_missed),
            ("dpdk.rx_nombuf".into(), s.rx_nombuf),
            ("dpdk.ierrors".into(), s.rx_errors),
            ("dpdk.oerrors".into(), s.tx_errors),
            ("dpdk.link_up".into(), self.link_up() as u64),
            ("dpdk.nb_queues".into(), self.nb_queues as u64),
            ("dpdk.reta_size".into(), self.reta.reta_size as u64),
            ("dpdk.reta_programmed".into(), self.reta.programmed as u64),
            ("dpdk.reta_verified".into(), self.reta.verified as u64),
            ("dpdk.rss_queues".into(), self.reta.rss_queues as u64),
            ("dpdk.offload.rx_capa".into(), self.offloads.rx_capa),
            ("dpdk.offload.tx_capa".into(), self.offloads.tx_capa),
            ("dpdk.offload.rx_enabled".into(), self.offloads.rx_enabled),
            ("dpdk.offload.tx_enabled".into(), self.offloads.tx_enabled),
            ("dpdk.rss_hf".into(), self.offloads.rss_hf),
            ("dpdk.rx_csum_good".into(), self.sw.rx_csum_good),
            ("dpdk.rx_csum_bad".into(), self.sw.rx_csum_bad),
            ("dpdk.rx_csum_unknown".into(), self.sw.rx_csum_unknown),
            ("dpdk.rx_nic_hash".into(), self.sw.rx_nic_hash),
            ("dpdk.rx_segs".into(), self.sw.rx_segs),
            ("dpdk.tx_csum_offload".into(), self.sw.tx_csum_offload),
            ("dpdk.tx_csum_sw".into(), self.sw.tx_csum_sw),
            ("dpdk.tx_segs".into(), self.sw.tx_segs),
            ("dpdk.tx_copied".into(), self.sw.tx_copied),
            ("dpdk.tx_nombuf".into(), self.sw.tx_nombuf),
            ("dpdk.tx_full".into(), self.sw.tx_full),
            ("dpdk.tx_prepare_err".into(), self.sw.tx_prepare_err),
            ("dpdk.tx_too_big".into(), self.sw.tx_too_big),
            ("dpdk.tx_empty".into(), self.sw.tx_empty),
            ("dpdk.tx_csum_err".into(), self.sw.tx_csum_err),
            ("dpdk.rx_dropped".into(), self.sw.rx_dropped),
        ];
        if let Some(q) = self.queue {
            v.push(("dpdk.queue".into(), q as u64));
        }
        v.push(("dpdk.mempool_in_use".into(), self.pool.rte_in_use() as u64));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_l4_finds_tcp_and_udp() {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 9] = 6;
        assert_eq!(parse_l4(&f), Some((14, 34, 6, 16)));
        f[14 + 9] = 17;
        assert_eq!(parse_l4(&f), Some((14, 34, 17, 6)));
        f[14 + 9] = 1;
        assert_eq!(parse_l4(&f), None);
        f[12] = 0x86;
        assert_eq!(parse_l4(&f), None);
        assert_eq!(parse_l4(&f[..20]), None);
    }

    #[test]
    fn odd_offset_sum_matches_contiguous_sum() {
        let data: Vec<u8> = (0..101u32).map(|i| (i * 37 + 11) as u8).collect();
        let whole = csum_fold(csum_partial(&data, 0));
        // Split at an odd boundary: the second block starts at an odd offset.
        let (a, b) = data.split_at(51);
        let s = csum_partial(a, 0);
        let s = csum_block_add(s, csum_partial(b, 0), a.len());
        assert_eq!(csum_fold(s), whole);
    }

    /// The NIC's pick, `table[hash % size]`, equals the stack's `Reta::lookup(hash)` for
    /// every hash whenever `nic_reta` accepts a size, and it refuses where none can.
    #[test]
    fn nic_reta_matches_the_stacks_lookup() {
        let hashes = (0..4096u32).map(|i| i.wrapping_mul(0x9e37_79b9) ^ (i << 7));
        for nq in [2u16, 3, 4, 5, 8, 16] {
            let soft = Reta::new(nq).unwrap();
            for size in [64usize, 128, 256, 512, 2048] {
                match nic_reta(size, soft.entries()) {
                    Ok(t) => {
                        assert_eq!(t.len(), size);
                        for h in hashes.clone() {
                            assert_eq!(t[h as usize % size], soft.lookup(h), "nq {nq} size {size}");
                        }
                    }
                    Err(e) => {
                        // Only a table smaller than 128 whose entries do not repeat.
                        assert!(size < RETA_SIZE && size % nq as usize != 0, "nq {nq} size {size}: {e}");
                    }
                }
            }
        }
        let soft = Reta::new(2).unwrap();
        assert!(nic_reta(0, soft.entries()).unwrap_err().contains("reta_size 0"));
        assert!(nic_reta(96, soft.entries()).unwrap_err().contains("power of two"));
        assert!(nic_reta(64, Reta::new(3).unwrap().entries()).is_err());
        assert_eq!(nic_reta(64, soft.entries()).unwrap().len(), 64);
        // A hand-set table that does not repeat cannot be squeezed into 64 entries.
        let mut odd = Reta::new(2).unwrap();
        odd.set(101, 0).unwrap();
        assert!(nic_reta(64, odd.entries()).is_err());
        assert_eq!(nic_reta(512, odd.entries()).unwrap()[101 + 384], 0);
    }

    #[test]
    fn errors_name_the_fix() {
        assert!(DpdkError::NoPorts.to_string().contains("dpdk-devbind.py"));
        let e = DpdkError::NoHugepages { reason: "x".into() };
        assert!(e.to_string().contains("--no-huge -m 512"));
        assert!(e.is_usage());
        let e = DpdkError::Queues {
            port: 0,
            driver: "net_tap".into(),
            want: 32,
            max_rx: 16,
            max_tx: 16,
        };
        assert!(e.to_string().contains("at most 16"));
    }
}
