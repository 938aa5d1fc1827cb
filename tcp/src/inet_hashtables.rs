//! Per-core TCP lookup tables (Linux: net/ipv4/inet_hashtables.c): established connections by
//! 4-tuple, listeners by port, and bound ports with their use counts.

use std::net::Ipv4Addr;

use blink_netcore::sock::SockHandle;
use hashbrown::HashMap;

/// A connection's identity seen from our side (Linux: the inet_sock addr/port quadruple).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourTuple {
    pub laddr: Ipv4Addr,
    pub lport: u16,
    pub raddr: Ipv4Addr,
    pub rport: u16,
}

#[derive(Default)]
pub struct InetHashTables {
    /// Linux: ehash (ESTABLISHED .. TIME-WAIT, and SYN-SENT / SYN-RECV).
    pub ehash: HashMap<FourTuple, SockHandle>,
    /// Request socks (SYN-RECV; Linux keeps them in ehash too).
    pub reqhash: HashMap<FourTuple, SockHandle>,
    /// TIME-WAIT sockets (Linux keeps them in ehash too; a separate map keeps the established
    /// lookup free of a type check).
    pub twhash: HashMap<FourTuple, SockHandle>,
    /// Linux: listening_hash.
    pub lhash: HashMap<u16, SockHandle>,
    /// Linux: bhash — sockets using each local port.
    bhash: HashMap<u16, u32>,
}

impl InetHashTables {
    pub fn bind_ref(&mut self, port: u16) {
        *self.bhash.entry(port).or_insert(0) += 1;
    }

    pub fn unbind(&mut self, port: u16) {
        if let Some(n) = self.bhash.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.bhash.remove(&port);
            }
        }
    }

    pub fn is_bound(&self, port: u16) -> bool {
        self.bhash.contains_key(&port)
    }

    pub fn bound_ports(&self) -> usize {
        self.bhash.len()
    }
}
