//! `bytes::Bytes` at the application edge: received payload handed out as `Bytes` backed by
//! the mbuf it arrived in, and `Bytes` taken to send, by reference when it is one of this
//! pool's buffers (an echo sending back what it received) and with one copy otherwise.
//!
//! - No copy on receive: the `Bytes` owns the skb (or the fragment's mbuf) that holds the
//!   payload (`Bytes::from_owner`). The buffer goes back to the pool when the last clone of
//!   the `Bytes` drops, on whichever thread: `Mbuf` is `Send`, and the heap pool's free path
//!   is lock-free and takes buffers from any thread (netcore/src/mbuf.rs, `release`). A
//!   segment whose payload is split over several buffers (IP reassembly, a multi-segment
//!   DPDK frame) is copied once into one `Bytes`: one `Bytes` is one contiguous slice.
//! - No copy on send when the `Bytes` lies in a buffer of this glue's pool:
//!   [`Mempool::mbuf_containing`](blink_netcore::Mempool::mbuf_containing) finds the buffer
//!   from the address alone (no registry, whoever made the `Bytes`), and each segment refers
//!   to it (a DPDK pool too: its rte_mbufs' addresses are searched). Any other `Bytes` is
//!   copied once, as [`Glue::send`] does.
//!
//! `Bytes::from_owner` allocates a small shared header per `Bytes` (its reference count): the
//! price of the ecosystem type, paid per segment handed out, never per byte.
//!
//! An echo that never copies what it echoes (what does not fit waits in the user data for the
//! writable event):
//!
//! ```
//! use blink_glue::bytes::Bytes;
//! use blink_glue::{Glue, GlueHandler, Socket};
//!
//! struct Echo;
//! impl GlueHandler<Vec<Bytes>> for Echo {
//!     fn on_readable(&mut self, glue: &mut Glue<Vec<Bytes>>, s: Socket) {
//!         while let Ok(Some(b)) = glue.recv_bytes(s) {
//!             glue.user_data_mut(s).unwrap().push(b);
//!         }
//!         self.on_writable(glue, s);
//!     }
//!     fn on_writable(&mut self, glue: &mut Glue<Vec<Bytes>>, s: Socket) {
//!         let mut pending = glue.take_user_data(s).unwrap_or_default();
//!         while let Some(b) = pending.first_mut() {
//!             let n = glue.send_bytes(s, b).unwrap_or(0);
//!             if n < b.len() {
//!                 *b = b.slice(n..); // the rest goes on the writable event
//!                 break;
//!             }
//!             pending.remove(0); // sent: its buffer returns to the pool once acknowledged
//!         }
//!         let _ = glue.set_user_data(s, pending);
//!     }
//!     fn on_accept(&mut self, glue: &mut Glue<Vec<Bytes>>, _l: Socket, s: Socket) {
//!         let _ = glue.set_user_data(s, Vec::new());
//!     }
//! }
//! # use blink_glue::netcore::{drivers::wire::{wire_pair, WireConfig}, EthAddr};
//! # let (a, _b) = wire_pair(("a", "b"), (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])), &WireConfig::default());
//! let mut glue: Glue<Vec<Bytes>> = blink_glue::GlueBuilder::new()
//!     .device(Box::new(a))
//!     .addr("10.0.0.1/24".parse().unwrap())
//!     .build()
//!     .unwrap();
//! glue.tcp_listen(7, 128).unwrap();
//! for _ in 0..10 {
//!     glue.periodic_with(&mut Echo);
//! }
//! ```

use bytes::Bytes;

use blink_netcore::skbuff::{Frag, SkBuff};
use blink_tcp::with_tcp;

use crate::socket::SockKind;
use crate::{Glue, GlueError, Socket};

/// A received skb as the owner of its linear payload.
struct SkbPayload(SkBuff);

impl AsRef<[u8]> for SkbPayload {
    fn as_ref(&self) -> &[u8] {
        self.0.data()
    }
}

/// A fragment as the owner of its bytes (the rest of its skb already freed).
struct FragPayload(Frag);

impl AsRef<[u8]> for FragPayload {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// The payload of `skb` as one `Bytes`: by reference when it is one contiguous piece (all in
/// the linear area, or all in a single fragment), else copied once.
pub fn skb_to_bytes(skb: SkBuff) -> Bytes {
    if !skb.is_nonlinear() {
        return Bytes::from_owner(SkbPayload(skb));
    }
    if skb.headlen() == 0 && skb.frags().len() == 1 {
        // Typical of a frame that came through a scatter-gather path (the in-memory wire, a
        // tunnel): headers pulled, payload in one fragment. Keep the fragment's buffer only;
        // the skb and its header buffer go back now.
        let f = skb.frags()[0].clone();
        drop(skb);
        return Bytes::from_owner(FragPayload(f));
    }
    let mut v = Vec::with_capacity(skb.len());
    for seg in skb.segments() {
        v.extend_from_slice(seg);
    }
    Bytes::from(v)
}

impl<U> Glue<U> {
    /// Zero-copy receive as `Bytes`: the next in-order segment's payload, in the buffer it
    /// arrived in (see the module doc). `Ok(None)` is the end of the stream;
    /// `Err(WouldBlock)` means nothing yet. Drop the `Bytes` (on any thread) to give the
    /// buffer back; holding many pins that many buffers of the pool.
    ///
    /// On a UDP or raw socket it reads one datagram (`Ok(Some)`, possibly empty; see
    /// [`Glue::recv_bytes_from`] for its source).
    pub fn recv_bytes(&mut self, s: Socket) -> Result<Option<Bytes>, GlueError> {
        if s.kind() != SockKind::Tcp {
            return self.recv_bytes_from(s).map(|(b, _)| Some(b));
        }
        Ok(self.recv_skb(s)?.map(skb_to_bytes))
    }

    /// One datagram as `Bytes` over the buffer it arrived in, with its source (UDP: the
    /// payload; raw: from the IP header on, port 0). `Err(WouldBlock)` when none is queued.
    pub fn recv_bytes_from(&mut self, s: Socket) -> Result<(Bytes, std::net::SocketAddrV4), GlueError> {
        let (skb, from) = self.recv_skb_from(s)?;
        Ok((skb_to_bytes(skb), from))
    }

    /// Send `data`; returns the bytes taken (fewer, possibly 0, when the send buffer fills:
    /// send the rest, `data.slice(n..)`, on the writable event). No copy when `data` lies in
    /// one of this pool's buffers (it came from [`Glue::recv_bytes`], say): the segments
    /// refer to that buffer. Otherwise one copy, as [`Glue::send`]. On a UDP or raw socket
    /// it is `send` (one copy).
    pub fn send_bytes(&mut self, s: Socket, data: &Bytes) -> Result<usize, GlueError> {
        if s.kind() != SockKind::Tcp {
            return self.send(s, data);
        }
        let Some((m, off)) = self.pool().mbuf_containing(data) else {
            return self.send(s, data);
        };
        let h = self.live(s)?;
        with_tcp(&mut self.stack, |t, st| {
            let sk = t.socks.get_mut(h).ok_or(GlueError::BadHandle)?;
            let mss = blink_tcp::tcp_output::tcp_current_mss(sk, st) as usize;
            let mut done = 0;
            let mut r = Ok(());
            while done < data.len() {
                let n = (data.len() - done).min(mss);
                if (sk.send_space() as usize) < n {
                    // Full: the writable event follows (Linux: SOCK_NOSPACE).
                    sk.snd_blocked = true;
                    break;
                }
                // Another handle on the same buffer per segment: a refcount, not a copy.
                let f = Frag::new(m.clone(), off + done, n).expect("inside the buffer it was found in");
                match blink_tcp::tcp::tcp_send_frag(sk, st, f) {
                    Ok(()) => done += n,
                    Err((_, blink_tcp::TcpErr::WouldBlock)) if done > 0 || sk.state.can_send() => break,
                    Err((_, e)) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            t.post_process(st, h);
            match r {
                Err(e) if done == 0 => Err(e.into()),
                _ => Ok(done),
            }
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blink_netcore::{Mempool, MempoolConfig};

    fn pool() -> Mempool {
        Mempool::new(&MempoolConfig {
            n: 16,
            cache_size: 4,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn linear_payload_is_shared_not_copied() {
        let p = pool();
        let mut c = p.cache();
        let mut skb = SkBuff::from_slice(&mut c, b"HEADERpayload").unwrap();
        skb.skb_pull(6);
        let addr = skb.data().as_ptr();
        let b = skb_to_bytes(skb);
        assert_eq!(&b[..], b"payload");
        assert_eq!(b.as_ptr(), addr, "the Bytes points into the mbuf");
        let b2 = b.slice(3..);
        drop(b);
        drop(c);
        assert_eq!(p.in_use(), 1, "a slice still holds the buffer");
        drop(b2);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn one_fragment_is_kept_alone_and_pieces_are_copied_once() {
        let p = pool();
        let mut c = p.cache();
        let mut m = c.alloc().unwrap();
        assert!(m.append_slice(b"fragment"));
        let addr = m.data().as_ptr();
        let mut skb = SkBuff::alloc(&mut c).unwrap();
        skb.skb_add_frag(Frag::from_mbuf(m)).unwrap();
        let b = skb_to_bytes(skb);
        assert_eq!((&b[..], b.as_ptr()), (&b"fragment"[..], addr));
        drop(c);
        assert_eq!(p.in_use(), 1, "only the fragment's buffer is held");
        drop(b);
        assert_eq!(p.in_use(), 0);

        let mut c = p.cache();
        let mut skb = SkBuff::from_slice(&mut c, b"head-").unwrap();
        let mut m = c.alloc().unwrap();
        assert!(m.append_slice(b"tail"));
        skb.skb_add_frag(Frag::from_mbuf(m)).unwrap();
        let b = skb_to_bytes(skb);
        assert_eq!(&b[..], b"head-tail");
        drop(c);
        assert_eq!(p.in_use(), 0, "two pieces: copied, the buffers are back");
        drop(b);
    }
}
