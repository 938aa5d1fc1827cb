//! Socket base: a per-core slab of sockets addressed by generational handles.
//!
//! Hash tables, timers and event lists hold a [`SockHandle`] (index + generation), never a
//! pointer. When a socket is freed its slot's generation moves on, so a stale handle (a timer
//! that fired late, an application using a closed socket) finds nothing: an error, not a crash.

use std::fmt;

/// A generational socket handle.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SockHandle {
    idx: u32,
    gen: u32,
}

impl SockHandle {
    /// Pack into 56 bits (24-bit index, 32-bit generation) so a timer's `data` word can carry
    /// the handle plus an 8-bit timer kind.
    pub fn to_u56(self) -> u64 {
        ((self.gen as u64) << 24) | (self.idx as u64 & 0xff_ffff)
    }

    pub fn from_u56(v: u64) -> SockHandle {
        SockHandle {
            idx: (v & 0xff_ffff) as u32,
            gen: (v >> 24) as u32,
        }
    }

    pub fn index(self) -> u32 {
        self.idx
    }
}

impl fmt::Debug for SockHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sk#{}.{}", self.idx, self.gen)
    }
}

enum Slot<T> {
    Used { gen: u32, val: T },
    Free { gen: u32, next_free: u32 },
}

const NIL: u32 = u32::MAX;
/// Indices must fit the 24 bits of [`SockHandle::to_u56`].
pub const SLAB_MAX: usize = 1 << 24;

/// The slab of one core.
pub struct SockSlab<T> {
    slots: Vec<Slot<T>>,
    free_head: u32,
    len: usize,
}

impl<T> Default for SockSlab<T> {
    fn default() -> Self {
        SockSlab {
            slots: Vec::new(),
            free_head: NIL,
            len: 0,
        }
    }
}

impl<T> SockSlab<T> {
    pub fn with_capacity(n: usize) -> Self {
        SockSlab {
            slots: Vec::with_capacity(n),
            free_head: NIL,
            len: 0,
        }
    }

    /// Store `val`; None when the slab is at [`SLAB_MAX`].
    pub fn insert(&mut self, val: T) -> Option<SockHandle> {
        if self.free_head != NIL {
            let idx = self.free_head;
            let slot = &mut self.slots[idx as usize];
            let Slot::Free { gen, next_free } = *slot else {
                unreachable!("free list holds free slots")
            };
            self.free_head = next_free;
            *slot = Slot::Used { gen, val };
            self.len += 1;
            return Some(SockHandle { idx, gen });
        }
        if self.slots.len() >= SLAB_MAX {
            return None;
        }
        let idx = self.slots.len() as u32;
        self.slots.push(Slot::Used { gen: 0, val });
        self.len += 1;
        Some(SockHandle { idx, gen: 0 })
    }

    pub fn get(&self, h: SockHandle) -> Option<&T> {
        match self.slots.get(h.idx as usize) {
            Some(Slot::Used { gen, val }) if *gen == h.gen => Some(val),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, h: SockHandle) -> Option<&mut T> {
        match self.slots.get_mut(h.idx as usize) {
            Some(Slot::Used { gen, val }) if *gen == h.gen => Some(val),
            _ => None,
        }
    }

    pub fn contains(&self, h: SockHandle) -> bool {
        self.get(h).is_some()
    }

    /// Remove and return the socket; the handle (and every copy of it) goes stale.
    pub fn remove(&mut self, h: SockHandle) -> Option<T> {
        let slot = self.slots.get_mut(h.idx as usize)?;
        match slot {
            Slot::Used { gen, .. } if *gen == h.gen => {
                let next_gen = gen.wrapping_add(1);
                let old = std::mem::replace(
                    slot,
                    Slot::Free {
                        gen: next_gen,
                        next_free: self.free_head,
                    },
                );
                self.free_head = h.idx;
                self.len -= 1;
                match old {
                    Slot::Used { val, .. } => Some(val),
                    Slot::Free { .. } => unreachable!(),
                }
            }
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Handles of every live socket.
    pub fn handles(&self) -> impl Iterator<Item = SockHandle> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            Slot::Used { gen, .. } => Some(SockHandle {
                idx: i as u32,
                gen: *gen,
            }),
            Slot::Free { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_find_nothing() {
        let mut s = SockSlab::default();
        let a = s.insert("a").unwrap();
        let b = s.insert("b").unwrap();
        assert_eq!(s.get(a), Some(&"a"));
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.get(a), None);
        assert_eq!(s.remove(a), None);
        let c = s.insert("c").unwrap();
        assert_eq!(c.index(), a.index(), "slot reused");
        assert_ne!(c, a);
        assert_eq!(s.get(a), None, "old handle stays stale after reuse");
        assert_eq!(s.get(c), Some(&"c"));
        assert_eq!(s.len(), 2);
        assert_eq!(s.handles().count(), 2);
        let _ = b;
    }

    #[test]
    fn handle_packs_into_timer_data() {
        let mut s = SockSlab::default();
        for _ in 0..5 {
            let h = s.insert(1).unwrap();
            s.remove(h);
        }
        let h = s.insert(2).unwrap();
        let v = h.to_u56();
        assert!(v < 1 << 56);
        assert_eq!(SockHandle::from_u56(v), h);
    }
}
