//! Per-core inboxes: the only way one core reaches another.
//!
//! blink's cores share nothing. What one core must hand to another — a frame that arrived on
//! its queue but belongs to a flow the other core owns, a neighbour it learned, an
//! application's message — travels as a typed [`CoreMsg`] on the receiver's inbox, a bounded
//! lock-free ring drained by the receiver's poll loop. A full inbox is a counted drop
//! (`Softnet.RingDrops`, and `Drop.RingFull` for frames), never a block and never a leak.
//!
//! Linux: the per-CPU `softnet_data` backlog that `enqueue_to_backlog()` fills when RPS
//! steers a packet to another CPU (net/core/dev.c), and the IPI queues of
//! `smp_call_function_single()`; Seastar: `smp::submit_to()` over per-core-pair queues.

use std::any::Any;
use std::fmt;
use std::net::Ipv4Addr;

use blink_netcore::ring::Ring;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::EthAddr;

/// Messages a core may receive.
pub enum CoreMsg {
    /// A frame (data at the Ethernet header) another core received on its queue of device
    /// `ifindex` but this core owns: it re-enters `netif_receive_skb` here (Linux: RPS).
    Frame { ifindex: u16, skb: SkBuff },
    /// An IP packet (data at the IP header, `skb.dev` set) that re-enters `ip_rcv` on the core
    /// that owns it: an ICMP error about a flow another core owns (so its socket hears of
    /// it); decapsulated tunnel packets take the same way.
    Reinject(SkBuff),
    /// A reassembled datagram (data at the IP header) whose transport tuple, known only now,
    /// belongs to this core: it continues at `ip_local_deliver` here, as it would have on
    /// the core that reassembled it.
    LocalDeliver(SkBuff),
    /// A neighbour another core learned from ARP (Linux's one `arp_tbl` shared by all CPUs,
    /// made shared-nothing): applied with `neigh_update`, which also sends what waited here
    /// for that neighbour.
    Neigh {
        ip: Ipv4Addr,
        mac: EthAddr,
        dev: u16,
        create: bool,
    },
    /// An application's message for this core's application (glue hands it over).
    App(Box<dyn Any + Send>),
}

impl fmt::Debug for CoreMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreMsg::Frame { ifindex, skb } => write!(f, "Frame(dev {ifindex}, {} bytes)", skb.len()),
            CoreMsg::Reinject(skb) => write!(f, "Reinject({} bytes)", skb.len()),
            CoreMsg::LocalDeliver(skb) => write!(f, "LocalDeliver({} bytes)", skb.len()),
            CoreMsg::Neigh { ip, mac, dev, .. } => write!(f, "Neigh({ip} at {mac} dev {dev})"),
            CoreMsg::App(_) => f.write_str("App(..)"),
        }
    }
}

/// Messages each inbox holds before senders see it full.
pub const INBOX_SIZE: usize = 4096;

/// The inboxes of every core of one stack instance, shared (`Arc`) by its cores and by any
/// other thread that needs to reach them.
#[derive(Debug)]
pub struct CoreSet {
    inboxes: Vec<Ring<CoreMsg>>,
}

impl CoreSet {
    /// Inboxes for `nb_cores` cores, `size` messages each (both at least 1).
    pub fn new(nb_cores: u16, size: usize) -> CoreSet {
        CoreSet {
            inboxes: (0..nb_cores.max(1))
                .map(|c| Ring::new(&format!("inbox{c}"), size.max(1)).expect("size >= 1"))
                .collect(),
        }
    }

    pub fn nb_cores(&self) -> u16 {
        self.inboxes.len() as u16
    }

    /// Post `msg` to core `cpu`'s inbox; a full inbox (or an unknown core) hands it back.
    pub fn post(&self, cpu: u16, msg: CoreMsg) -> Result<(), CoreMsg> {
        match self.inboxes.get(cpu as usize) {
            Some(r) => r.enqueue(msg),
            None => Err(msg),
        }
    }

    /// The inbox of core `cpu` (its poll loop drains it).
    pub fn inbox(&self, cpu: u16) -> &Ring<CoreMsg> {
        &self.inboxes[cpu as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_to_unknown_or_full_inbox_hands_the_message_back() {
        let set = CoreSet::new(2, 1);
        assert_eq!(set.nb_cores(), 2);
        let msg = || CoreMsg::App(Box::new(7u32));
        assert!(set.post(1, msg()).is_ok());
        assert!(set.post(1, msg()).is_err(), "full");
        assert!(set.post(2, msg()).is_err(), "no such core");
        match set.inbox(1).dequeue() {
            Some(CoreMsg::App(b)) => assert_eq!(*b.downcast::<u32>().unwrap(), 7),
            m => panic!("unexpected {m:?}"),
        }
    }
}
