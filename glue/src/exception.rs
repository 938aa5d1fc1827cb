//! The exception path's kernel side: a TAP (or any device, in tests) through which the kernel
//! shares blink's NIC, its MAC and its IP address (DPDK's KNI / `virtio_user` exception path).
//!
//! IPv4 decides which frames are the kernel's ([`blink_ipv4::ip_exception`]) and hands them
//! to this core's [`KernelIf`]; each poll writes them to the kernel and sends what the kernel
//! transmitted out of blink's device unchanged. Every core has its own queue of the TAP, so
//! no core waits for another.

use std::any::Any;

use blink_ipv4::dev::dev_queue_xmit;
use blink_ipv4::ip_exception::ExceptionPath;
use blink_ipv4::Stack;
use blink_netcore::if_ether::ETH_HLEN;
use blink_netcore::netdevice::{Burst, NetDevice};
use blink_netcore::skbuff::SkBuff;
use blink_netcore::snmp::{DropReason, ExcMib};

/// Name of the kernel's TAP when `--kernel-if` is not given ("kernel network interface",
/// as DPDK's KNI named its devices).
pub const DEFAULT_KERNEL_IF: &str = "blink-kni0";

/// Where the kernel's side of the exception path comes from.
pub enum KernelSide {
    /// A Linux TAP opened at build time, one queue per core, with the first device's MAC:
    /// the kernel shares port 0 only.
    Tap(String),
    /// One Linux TAP per device (name `i` for the device added `i`-th), each with its
    /// device's MAC and MTU: every port has its own kernel interface.
    Taps(Vec<String>),
    /// One device per core made by the caller (a wire end in tests), sharing port 0.
    Devices(Vec<Box<dyn NetDevice>>),
}

/// One port's kernel side on one core.
struct KernelPort {
    dev: Box<dyn NetDevice>,
    queue: u16,
    /// blink's device the kernel shares: where its frames leave, and whose frames it gets.
    out: u16,
    /// Frames for the kernel, written at the end of each poll (or when full).
    txq: Burst,
    /// The device's tx_errors last seen, so each failed write is counted once.
    tx_errors: u64,
}

/// One core's end of the exception path: a kernel side per shared port.
pub struct KernelIf {
    /// Few (one per port): a linear search by ifindex is cheaper than any map.
    ports: Vec<KernelPort>,
}

impl KernelIf {
    /// The kernel's side `dev`, polled on `queue`; it shares ifindex `out`.
    pub fn new(dev: Box<dyn NetDevice>, queue: u16, out: u16) -> KernelIf {
        let mut k = KernelIf { ports: Vec::new() };
        k.add_port(dev, queue, out);
        k
    }

    /// Another port's kernel side: frames received on ifindex `out` that the rules give the
    /// kernel go to `dev`, and what the kernel sends there leaves through `out`.
    pub fn add_port(&mut self, dev: Box<dyn NetDevice>, queue: u16, out: u16) {
        let tx_errors = dev.stats().tx_errors;
        self.ports.push(KernelPort {
            dev,
            queue,
            out,
            txq: Burst::new(),
            tx_errors,
        });
    }

    /// The first kernel side's device (its counters).
    pub fn device(&self) -> &dyn NetDevice {
        self.ports[0].dev.as_ref()
    }

    /// Every kernel side's device with the ifindex it shares (for `blink link`).
    pub fn devices(&self) -> impl Iterator<Item = (u16, &dyn NetDevice)> {
        self.ports.iter().map(|p| (p.out, p.dev.as_ref()))
    }
}

impl KernelPort {
    /// Write what is queued for the kernel. Frames the TAP refuses for now stay queued;
    /// failed writes (the kernel side down) are drops with a reason.
    fn flush(&mut self, stack: &mut Stack) {
        if self.txq.is_empty() {
            return;
        }
        self.dev.tx_burst(self.queue, &mut self.txq);
        let errs = self.dev.stats().tx_errors;
        for _ in self.tx_errors..errs {
            stack.core.mib.drop_count(DropReason::ExcKernelTxError);
        }
        self.tx_errors = errs;
    }

    fn poll(&mut self, stack: &mut Stack) -> usize {
        self.flush(stack);
        let mut burst = Burst::new();
        let n = self.dev.rx_burst(self.queue, &mut burst);
        for mut skb in burst.drain(..) {
            if skb.len() < ETH_HLEN {
                stack.core.kfree_skb_reason(skb, DropReason::ExcFromKernelRunt);
                continue;
            }
            // Out unchanged: the kernel wrote a complete frame with blink's MAC as source.
            skb.dev = self.out;
            skb.skb_reset_mac_header();
            stack.core.mib.exc.inc(ExcMib::FromKernel);
            dev_queue_xmit(stack, skb);
        }
        n
    }
}

impl ExceptionPath for KernelIf {
    fn to_kernel(&mut self, stack: &mut Stack, skb: SkBuff) {
        // The kernel side of the port the frame arrived on: a port without one (a shared
        // port 0 only, or a tunnel) has no kernel to hand it to.
        let Some(port) = self.ports.iter_mut().find(|p| p.out == skb.dev) else {
            stack.core.kfree_skb_reason(skb, DropReason::DevNotUp);
            return;
        };
        if port.txq.is_full() {
            port.flush(stack);
        }
        if port.txq.is_full() {
            stack.core.kfree_skb_reason(skb, DropReason::ExcKernelTxFull);
            return;
        }
        port.txq.push(skb);
    }

    fn poll(&mut self, stack: &mut Stack) -> usize {
        self.ports.iter_mut().map(|p| p.poll(stack)).sum()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
