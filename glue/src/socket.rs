//! Socket handles as the application sees them, and glue's per-socket record (user data and
//! which event lists the socket already sits on).
//!
//! Each protocol keeps its sockets in its own generational slab, so a [`Socket`] is the
//! protocol's handle plus the kind that says which slab it belongs to. glue keeps one
//! [`SockTable`] per kind; the event lists and callbacks are kind-neutral.

use blink_netcore::sock::SockHandle;

/// Which protocol a socket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SockKind {
    /// A TCP connection or listener.
    Tcp,
    /// A UDP socket (bound, connected or neither).
    Udp,
    /// A raw IPv4 socket of one protocol number.
    Raw,
}

/// An application's handle to a socket: cheap to copy, and stale (an error, never a crash)
/// once the socket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Socket {
    kind: SockKind,
    handle: SockHandle,
}

impl Socket {
    pub(crate) fn tcp(handle: SockHandle) -> Socket {
        Socket {
            kind: SockKind::Tcp,
            handle,
        }
    }

    pub(crate) fn udp(handle: SockHandle) -> Socket {
        Socket {
            kind: SockKind::Udp,
            handle,
        }
    }

    pub(crate) fn raw(handle: SockHandle) -> Socket {
        Socket {
            kind: SockKind::Raw,
            handle,
        }
    }

    pub fn kind(self) -> SockKind {
        self.kind
    }

    /// The protocol's own handle (for calls straight into `blink_tcp`, `blink_udp` or
    /// `blink_raw`, as [`Socket::kind`] says).
    pub fn handle(self) -> SockHandle {
        self.handle
    }
}

/// Event bits glue tracks per socket: the same meaning as TCP's `ev` bits; UDP's and raw's
/// READABLE/WRITABLE share the values, UDP's ERROR maps onto [`evbit::ERROR`].
pub mod evbit {
    pub const READABLE: u8 = 0x01;
    pub const WRITABLE: u8 = 0x02;
    pub const ACCEPT: u8 = 0x04;
    pub const CONNECTED: u8 = 0x08;
    /// On the closed list.
    pub const CLOSED: u8 = 0x10;
    /// On the error list: a datagram socket has an ICMP error pending (sk_error_report).
    pub const ERROR: u8 = 0x20;
}

/// glue's record of one open socket.
pub(crate) struct Entry<U> {
    pub handle: SockHandle,
    pub data: Option<U>,
    /// Event lists the socket is on right now (evbit), so each list holds it at most once.
    pub queued: u8,
}

/// Records of one protocol's sockets, indexed like the protocol's slab (the handle's index),
/// so a lookup is an index and a generation compare: no hashing on the event path.
pub(crate) struct SockTable<U> {
    slots: Vec<Option<Entry<U>>>,
    len: usize,
}

impl<U> Default for SockTable<U> {
    fn default() -> Self {
        SockTable {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<U> SockTable<U> {
    pub fn insert(&mut self, h: SockHandle, data: Option<U>) {
        let i = h.index() as usize;
        if i >= self.slots.len() {
            // Grows to the high-water mark of open sockets once, then is reused.
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].is_none() {
            self.len += 1;
        }
        self.slots[i] = Some(Entry {
            handle: h,
            data,
            queued: 0,
        });
    }

    pub fn get(&self, h: SockHandle) -> Option<&Entry<U>> {
        self.slots
            .get(h.index() as usize)
            .and_then(|s| s.as_ref())
            .filter(|e| e.handle == h)
    }

    pub fn get_mut(&mut self, h: SockHandle) -> Option<&mut Entry<U>> {
        self.slots
            .get_mut(h.index() as usize)
            .and_then(|s| s.as_mut())
            .filter(|e| e.handle == h)
    }

    pub fn remove(&mut self, h: SockHandle) -> Option<Entry<U>> {
        let slot = self.slots.get_mut(h.index() as usize)?;
        if slot.as_ref().is_some_and(|e| e.handle == h) {
            self.len -= 1;
            return slot.take();
        }
        None
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blink_netcore::sock::SockSlab;

    #[test]
    fn stale_handle_finds_nothing() {
        let mut slab = SockSlab::<()>::default();
        let a = slab.insert(()).unwrap();
        let mut t = SockTable::<&str>::default();
        t.insert(a, Some("a"));
        assert_eq!(t.get(a).unwrap().data, Some("a"));
        slab.remove(a);
        let b = slab.insert(()).unwrap();
        assert_eq!(a.index(), b.index(), "slab reuses the slot");
        assert!(t.get(b).is_none(), "a new socket in the slot is not the old one");
        assert_eq!(t.remove(a).unwrap().data, Some("a"));
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 0);
    }
}
