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
    /// A Linux TAP opened at build time, one queue per core, with blink's MAC.
    Tap(String),
    /// One device per core made by the caller (a wire end in tests).
    Devices(Vec<Box<dyn NetDevice>>),
}

/// One core's end of the exception path.
pub struct KernelIf {
    dev: Box<dyn NetDevice>,
    queue: u16,
    /// blink's device the kernel shares: where its frames leave.
    out: u16,
    /// Frames for the kernel, written at the end of each poll (or when full).
    txq: Burst,
    /// The device's tx_errors last seen, so each failed write is counted once.
    tx_errors: u64,
}

impl KernelIf {
    /// The kernel's side `dev`, polled on `queue`; its frames leave through ifindex `out`.
    pub fn new(dev: Box<dyn NetDevice>, queue: u16, out: u16) -> KernelIf {
        let tx_errors = dev.stats().tx_errors;
        KernelIf {
            dev,
            queue,
            out,
            txq: Burst::new(),
            tx_errors,
        }
    }

    /// The kernel side's device (its counters, for `blink link`).
    pub fn device(&self) -> &dyn NetDevice {
        self.dev.as_ref()
    }

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
}

impl ExceptionPath for KernelIf {
    fn to_kernel(&mut self, stack: &mut Stack, skb: SkBuff) {
        if self.txq.is_full() {
            self.flush(stack);
        }
        if self.txq.is_full() {
            stack.core.mib.kfree_skb_reason(skb, DropReason::ExcKernelTxFull);
            return;
        }
        self.txq.push(skb);
    }

    fn poll(&mut self, stack: &mut Stack) -> usize {
        self.flush(stack);
        let mut burst = Burst::new();
        let n = self.dev.rx_burst(self.queue, &mut burst);
        for mut skb in burst.drain(..) {
            if skb.len() < ETH_HLEN {
                stack.core.mib.kfree_skb_reason(skb, DropReason::ExcFromKernelRunt);
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

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
