//! The per-core glue between protocols and the application (IPAugenblick's app_glue.c).
//!
//! Protocols raise events on their sockets (Linux's `sk_data_ready`, `sk_write_space`,
//! `sk_state_change`); [`Glue::periodic`] collects them into event lists, and the application
//! either pulls them (`next_reader`, `next_writer`, `next_listener`, `next_connected`,
//! `next_closed`, `next_error`) or has [`Glue::dispatch`] call its [`GlueHandler`]. TCP, UDP
//! and raw sockets share the lists; UDP and raw calls live in `dgram.rs`.
//!
//! Events are edge-triggered, as in app_glue: a socket is put on the readable list when data
//! arrives, and on the writable list when send space opens after a send was refused (or
//! [`Glue::calc_size_of_data_to_send`] reported none) — never on every poll.

use std::any::Any;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use blink_ipv4::inbox::{CoreMsg, CoreSet};
use blink_ipv4::Stack;
use blink_netcore::mbuf::Mbuf;
use blink_netcore::skbuff::SkBuff;
use blink_netcore::sock::SockHandle;
use blink_netcore::Mempool;
use blink_tcp::tcp::{ev, TcpState};
use blink_tcp::{with_tcp, TcpErr};

use crate::poller::Poller;
use crate::socket::{evbit, SockKind, SockTable, Socket};
use crate::{CloseReason, GlueError};

// TCP's event bits serve as glue's list bits as they are, and UDP's and raw's readable and
// writable bits too: keep them in step (UDP's ERROR is translated, it collides with ACCEPT).
const _: () = assert!(
    ev::READABLE == evbit::READABLE
        && ev::WRITABLE == evbit::WRITABLE
        && ev::ACCEPT == evbit::ACCEPT
        && ev::CONNECTED == evbit::CONNECTED
        && ev::CLOSED == evbit::CLOSED
        && blink_udp::ev::READABLE == evbit::READABLE
        && blink_udp::ev::WRITABLE == evbit::WRITABLE
        && blink_raw::ev::READABLE == evbit::READABLE
        && blink_raw::ev::WRITABLE == evbit::WRITABLE
);

/// A socket that finished, as the closed list and [`GlueHandler::on_closed`] report it. The
/// socket is already released: its handle is stale, and its user data comes back here.
#[derive(Debug)]
pub struct Closed<U> {
    pub sock: Socket,
    pub reason: CloseReason,
    pub data: Option<U>,
}

/// What an application implements to be called from [`Glue::dispatch`]. Every method has an
/// empty default, so an application implements only what it needs. `U` is the per-socket
/// user data type.
pub trait GlueHandler<U> {
    /// `sock` was accepted from `listener` (app_glue: `on_accept`). It starts with no data.
    fn on_accept(&mut self, _glue: &mut Glue<U>, _listener: Socket, _sock: Socket) {}
    /// An active open completed.
    fn on_connected(&mut self, _glue: &mut Glue<U>, _sock: Socket) {}
    /// Data (or the end of the stream) arrived (app_glue: `data_available`). Read until
    /// `WouldBlock`: the socket is listed again only when more arrives.
    fn on_readable(&mut self, _glue: &mut Glue<U>, _sock: Socket) {}
    /// Send space opened (app_glue: `transmission_opportunity`).
    fn on_writable(&mut self, _glue: &mut Glue<U>, _sock: Socket) {}
    /// The connection ended by itself (reset, timeout, or finished after a shutdown). Not
    /// called for sockets the application closed.
    fn on_closed(&mut self, _glue: &mut Glue<U>, _closed: Closed<U>) {}
    /// A UDP socket has an ICMP error pending (port unreachable, ...): the next call on it
    /// returns it as `GlueError::Icmp`, once; the socket stays open (Linux: sk_error_report).
    fn on_error(&mut self, _glue: &mut Glue<U>, _sock: Socket) {}
    /// A message another core (or thread) posted to this core with [`Glue::post`].
    fn on_message(&mut self, _glue: &mut Glue<U>, _msg: Box<dyn Any + Send>) {}
}

/// One core's stack with its sockets' event lists and user data.
pub struct Glue<U> {
    pub(crate) stack: Stack,
    pool: Mempool,
    tcp: SockTable<U>,
    pub(crate) udp: SockTable<U>,
    pub(crate) raw: SockTable<U>,
    readers: VecDeque<Socket>,
    writers: VecDeque<Socket>,
    listeners: VecDeque<Socket>,
    connected: VecDeque<Socket>,
    /// Sockets that ended by themselves, with why; released when taken.
    closed: VecDeque<(Socket, CloseReason)>,
    /// Datagram sockets with an ICMP error pending.
    errors: VecDeque<Socket>,
    /// Scratch for collecting protocol events (reused: no allocation per poll).
    events: Vec<(SockHandle, u8)>,
    /// Poller mode: the poller + load balancer of each device, run by core 0.
    pub(crate) pollers: Vec<Poller>,
    /// What the builder opened, one line each (DPDK ports: driver, MAC, link, queues,
    /// offloads), for the application to show.
    pub(crate) notes: Vec<String>,
}

impl<U> Glue<U> {
    pub(crate) fn from_parts(stack: Stack, pool: Mempool) -> Glue<U> {
        Glue {
            stack,
            pool,
            tcp: SockTable::default(),
            udp: SockTable::default(),
            raw: SockTable::default(),
            readers: VecDeque::new(),
            writers: VecDeque::new(),
            listeners: VecDeque::new(),
            connected: VecDeque::new(),
            closed: VecDeque::new(),
            errors: VecDeque::new(),
            events: Vec::new(),
            pollers: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Run `f` with this core's end of the exception path (its kernel TAPs and their
    /// counters); None without one.
    pub fn with_kernel_if<R>(&mut self, f: impl FnOnce(&crate::exception::KernelIf) -> R) -> Option<R> {
        self.stack
            .with_exception(|_, h| {
                h.as_any_mut()
                    .downcast_mut::<crate::exception::KernelIf>()
                    .map(|k| f(k))
            })
            .flatten()
    }

    /// What the builder opened, one line per device that has something to say (a DPDK port:
    /// `dpdk: port 0 (net_tap) mac .. link up, 2 queue(s); offloads: ..`). Core 0's only.
    pub fn device_notes(&self) -> &[String] {
        &self.notes
    }

    /// This core's id (0-based).
    pub fn cpu(&self) -> u16 {
        self.stack.core.cpu
    }

    /// Cores of this instance.
    pub fn nb_cores(&self) -> u16 {
        self.stack.nb_cores()
    }

    /// Every core's inbox: clone it to reach the cores from another thread
    /// (`post(cpu, CoreMsg::App(..))`).
    pub fn core_set(&self) -> Arc<CoreSet> {
        self.stack.cores.clone()
    }

    /// The pollers this core runs (poller mode, core 0 only).
    pub fn pollers(&self) -> &[Poller] {
        &self.pollers
    }

    /// Post `msg` to core `cpu`'s application: it arrives there as
    /// [`GlueHandler::on_message`] (or [`Glue::next_message`]). A full inbox or unknown core
    /// is `GlueError::InboxFull` (counted as `Softnet.RingDrops`).
    pub fn post(&mut self, cpu: u16, msg: Box<dyn Any + Send>) -> Result<(), GlueError> {
        if cpu >= self.nb_cores() {
            return Err(GlueError::Config {
                field: "cpu".into(),
                msg: format!("core {cpu} does not exist ({} cores)", self.nb_cores()),
            });
        }
        if self.stack.post_to_core(cpu, CoreMsg::App(msg)) {
            self.stack
                .core
                .mib
                .softnet
                .inc(blink_netcore::snmp::SoftnetMib::AppMsgsSent);
            Ok(())
        } else {
            Err(GlueError::InboxFull(cpu))
        }
    }

    /// Next message posted to this core (pull alternative to `on_message`).
    pub fn next_message(&mut self) -> Option<Box<dyn Any + Send>> {
        self.stack.app_msgs.pop_front()
    }

    /// The stack underneath (counters, devices, neighbours).
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    pub fn stack_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }

    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Buffers of the pool in use (zero when nothing leaked and everything is closed).
    pub fn pool_in_use(&self) -> usize {
        self.pool.in_use()
    }

    /// Sockets the application holds (open, not yet closed or reported closed).
    pub fn open_sockets(&self) -> usize {
        self.tcp.len() + self.udp.len() + self.raw.len()
    }

    /// Sockets the protocols still hold, including ones closing on their own (TIME-WAIT,
    /// FIN-WAIT): zero once every connection has fully finished.
    pub fn protocol_sockets(&mut self) -> usize {
        with_tcp(&mut self.stack, |t, _| t.socks.len()).unwrap_or(0)
            + blink_udp::with_udp(&mut self.stack, |u, _| u.socks.len()).unwrap_or(0)
            + blink_raw::with_raw(&mut self.stack, |r, _| r.socks.len()).unwrap_or(0)
    }

    /// glue's record table for sockets of `kind`.
    pub(crate) fn table(&self, kind: SockKind) -> &SockTable<U> {
        match kind {
            SockKind::Tcp => &self.tcp,
            SockKind::Udp => &self.udp,
            SockKind::Raw => &self.raw,
        }
    }

    pub(crate) fn table_mut(&mut self, kind: SockKind) -> &mut SockTable<U> {
        match kind {
            SockKind::Tcp => &mut self.tcp,
            SockKind::Udp => &mut self.udp,
            SockKind::Raw => &mut self.raw,
        }
    }

    /// `s`'s protocol handle if `s` is open, else `BadHandle`.
    pub(crate) fn live(&self, s: Socket) -> Result<SockHandle, GlueError> {
        match self.table(s.kind()).get(s.handle()) {
            Some(_) => Ok(s.handle()),
            None => Err(GlueError::BadHandle),
        }
    }

    // ------------------------------------------------------------------ poll

    /// One poll pass (app_glue_periodic): refresh time, run due timers, receive and process a
    /// burst from every device, transmit, then collect the sockets' events into the lists.
    /// Returns the frames received.
    pub fn periodic(&mut self) -> usize {
        let mut n = 0;
        for p in &mut self.pollers {
            p.flush_tx();
            n += p.poll_rx(&mut self.stack);
        }
        n += self.stack.poll();
        for p in &mut self.pollers {
            p.flush_tx();
        }
        self.collect_events();
        n
    }

    /// [`Glue::periodic`] followed by [`Glue::dispatch`].
    pub fn periodic_with<H: GlueHandler<U>>(&mut self, handler: &mut H) -> usize {
        let n = self.periodic();
        self.dispatch(handler);
        n
    }

    /// Call `handler` for every listed event, then transmit what the callbacks sent.
    /// Order: connected, accept, readable, writable, error, closed.
    pub fn dispatch<H: GlueHandler<U>>(&mut self, handler: &mut H) {
        // Only messages already here: one a callback posts to this core waits for the next poll.
        for _ in 0..self.stack.app_msgs.len() {
            let Some(m) = self.stack.app_msgs.pop_front() else {
                break;
            };
            handler.on_message(self, m);
        }
        // The lists are only filled by collect_events, so callbacks cannot make these loop.
        while let Some(s) = self.next_connected() {
            handler.on_connected(self, s);
        }
        while let Some(l) = self.next_listener() {
            while let Ok(Some(c)) = self.accept(l) {
                handler.on_accept(self, l, c);
            }
        }
        while let Some(s) = self.next_reader() {
            handler.on_readable(self, s);
        }
        while let Some(s) = self.next_writer() {
            handler.on_writable(self, s);
        }
        while let Some(s) = self.next_error() {
            handler.on_error(self, s);
        }
        while let Some(c) = self.next_closed() {
            handler.on_closed(self, c);
        }
        self.flush();
    }

    /// Transmit what was sent since the last poll without waiting for the next one.
    pub fn flush(&mut self) {
        self.stack.flush_tx();
        for p in &mut self.pollers {
            p.flush_tx();
        }
    }

    fn collect_events(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let _ = blink_tcp::tcp_events(&mut self.stack, &mut events);
        for &(h, bits) in &events {
            let Some(e) = self.tcp.get_mut(h) else {
                // Not one of ours (made straight through blink_tcp) or closed meanwhile.
                continue;
            };
            let s = Socket::tcp(h);
            if bits & ev::CLOSED != 0 && e.queued & evbit::CLOSED == 0 {
                // Released when the application takes the event (next_closed), not here: a
                // FIN often ends the connection in the same pass (TIME-WAIT), and the reader
                // must still see the end of the stream first.
                e.queued |= evbit::CLOSED;
                let reason = with_tcp(&mut self.stack, |t, _| t.socks.get(h).and_then(|sk| sk.error))
                    .ok()
                    .flatten();
                self.closed.push_back((s, reason.into()));
                if reason.is_some() {
                    // A failed connection has nothing to read or write: the closed event
                    // says it all.
                    continue;
                }
            }
            let Some(e) = self.tcp.get_mut(h) else { continue };
            let new = bits & !e.queued;
            e.queued |= new & (evbit::READABLE | evbit::WRITABLE | evbit::ACCEPT | evbit::CONNECTED);
            if new & ev::CONNECTED != 0 {
                self.connected.push_back(s);
            }
            if new & ev::ACCEPT != 0 {
                self.listeners.push_back(s);
            }
            if new & ev::READABLE != 0 {
                self.readers.push_back(s);
            }
            if new & ev::WRITABLE != 0 {
                self.writers.push_back(s);
            }
        }
        // Datagram sockets: no connection state, just readable/writable and UDP's errors.
        events.clear();
        let _ = blink_udp::udp_events(&mut self.stack, &mut events);
        for &(h, bits) in &events {
            let mut b = bits & (evbit::READABLE | evbit::WRITABLE);
            if bits & blink_udp::ev::ERROR != 0 {
                b |= evbit::ERROR;
            }
            self.list_dgram(Socket::udp(h), b);
        }
        events.clear();
        let _ = blink_raw::raw_events(&mut self.stack, &mut events);
        for &(h, bits) in &events {
            self.list_dgram(Socket::raw(h), bits & (evbit::READABLE | evbit::WRITABLE));
        }
        self.events = events;
    }

    /// Put datagram socket `s` on the lists of `bits` (evbit) it is not on yet.
    fn list_dgram(&mut self, s: Socket, bits: u8) {
        let Some(e) = self.table_mut(s.kind()).get_mut(s.handle()) else {
            // Not one of ours (made straight through blink_udp/blink_raw) or closed meanwhile.
            return;
        };
        let new = bits & !e.queued;
        e.queued |= new;
        if new & evbit::READABLE != 0 {
            self.readers.push_back(s);
        }
        if new & evbit::WRITABLE != 0 {
            self.writers.push_back(s);
        }
        if new & evbit::ERROR != 0 {
            self.errors.push_back(s);
        }
    }

    /// Pop `list` until a socket that is still open and still flagged for it.
    fn next_from(&mut self, which: u8) -> Option<Socket> {
        loop {
            let list = match which {
                evbit::READABLE => &mut self.readers,
                evbit::WRITABLE => &mut self.writers,
                evbit::ACCEPT => &mut self.listeners,
                evbit::ERROR => &mut self.errors,
                _ => &mut self.connected,
            };
            let s = list.pop_front()?;
            if let Some(e) = self.table_mut(s.kind()).get_mut(s.handle()) {
                if e.queued & which != 0 {
                    e.queued &= !which;
                    return Some(s);
                }
            }
        }
    }

    // ------------------------------------------------------------------ pull API

    /// Next socket with data (or end of stream) to read (app_glue_get_next_reader).
    ///
    /// The pull loop of a discard server (no callbacks):
    ///
    /// ```
    /// # use blink_glue::netcore::{drivers::wire::{wire_pair, WireConfig}, EthAddr};
    /// # let (a, _b) = wire_pair(("a", "b"), (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])), &WireConfig::default());
    /// use blink_glue::{Glue, GlueBuilder, GlueError};
    /// let mut glue: Glue<u64> = GlueBuilder::new().device(Box::new(a)).addr("10.0.0.1/24".parse().unwrap()).build().unwrap();
    /// glue.tcp_listen(9, 128).unwrap();
    /// let mut buf = [0u8; 4096];
    /// for _ in 0..10 {
    ///     glue.periodic();
    ///     while let Some(l) = glue.next_listener() {
    ///         while let Ok(Some(s)) = glue.accept(l) {
    ///             glue.set_user_data(s, 0).unwrap(); // bytes discarded so far
    ///         }
    ///     }
    ///     while let Some(s) = glue.next_reader() {
    ///         loop {
    ///             match glue.recv(s, &mut buf) {
    ///                 Ok(0) => {
    ///                     let total = glue.close(s).unwrap();
    ///                     println!("discarded {total:?} bytes");
    ///                     break;
    ///                 }
    ///                 Ok(n) => *glue.user_data_mut(s).unwrap() += n as u64,
    ///                 Err(GlueError::WouldBlock) => break,
    ///                 Err(_) => {
    ///                     let _ = glue.close(s);
    ///                     break;
    ///                 }
    ///             }
    ///         }
    ///     }
    ///     while let Some(closed) = glue.next_closed() {
    ///         println!("{:?} ended: {:?}", closed.sock, closed.reason);
    ///     }
    /// }
    /// ```
    pub fn next_reader(&mut self) -> Option<Socket> {
        self.next_from(evbit::READABLE)
    }

    /// Next socket whose send space opened (app_glue_get_next_writer).
    pub fn next_writer(&mut self) -> Option<Socket> {
        self.next_from(evbit::WRITABLE)
    }

    /// Next listener with connections to accept (app_glue_get_next_listener); accept them
    /// with [`Glue::accept`] until it returns `Ok(None)`.
    pub fn next_listener(&mut self) -> Option<Socket> {
        self.next_from(evbit::ACCEPT)
    }

    /// Next datagram socket with an ICMP error pending; the next call on it returns the
    /// error (`GlueError::Icmp`), and the socket stays open.
    pub fn next_error(&mut self) -> Option<Socket> {
        self.next_from(evbit::ERROR)
    }

    /// Next socket whose active open completed.
    pub fn next_connected(&mut self) -> Option<Socket> {
        self.next_from(evbit::CONNECTED)
    }

    /// Next socket that ended by itself (app_glue_get_next_closed). Taking it releases the
    /// socket: take readers first, so the end of the stream is read before.
    pub fn next_closed(&mut self) -> Option<Closed<U>> {
        loop {
            let (sock, reason) = self.closed.pop_front()?;
            // Closed by the application in the meantime: it needs no news of it.
            let Some(e) = self.tcp.remove(sock.handle()) else {
                continue;
            };
            // Release the protocol's socket now that the application has let go of it.
            let _ = blink_tcp::tcp_close(&mut self.stack, sock.handle());
            return Some(Closed {
                sock,
                reason,
                data: e.data,
            });
        }
    }

    // ------------------------------------------------------------------ sockets

    fn tcp_handle(&self, s: Socket) -> Result<SockHandle, GlueError> {
        let h = self.live(s)?;
        match s.kind() {
            SockKind::Tcp => Ok(h),
            SockKind::Udp | SockKind::Raw => Err(GlueError::NotSupported("a TCP call on a datagram socket")),
        }
    }

    /// Run a user call on TCP socket `s`, then let TCP tidy up after it.
    fn on_tcp<R>(
        &mut self,
        s: Socket,
        f: impl FnOnce(&mut blink_tcp::tcp::TcpSock, &mut Stack) -> Result<R, GlueError>,
    ) -> Result<R, GlueError> {
        let h = self.tcp_handle(s)?;
        with_tcp(&mut self.stack, |t, st| {
            let sk = t.socks.get_mut(h).ok_or(GlueError::BadHandle)?;
            let r = f(sk, st);
            t.post_process(st, h);
            r
        })?
    }

    /// A TCP server socket listening on `port` of every local address (app_glue's
    /// `create_server_socket`).
    pub fn tcp_listen(&mut self, port: u16, backlog: u32) -> Result<Socket, GlueError> {
        let h = blink_tcp::tcp_listen(&mut self.stack, port, backlog)?;
        self.tcp.insert(h, None);
        Ok(Socket::tcp(h))
    }

    /// Start a TCP connection to `daddr:dport` (app_glue's `create_client_socket`); the
    /// connected event (or closed, with the reason) follows.
    pub fn tcp_connect(&mut self, daddr: Ipv4Addr, dport: u16, data: Option<U>) -> Result<Socket, GlueError> {
        let h = blink_tcp::tcp_connect(&mut self.stack, daddr, dport)?;
        self.tcp.insert(h, data);
        Ok(Socket::tcp(h))
    }

    /// The next established connection of `listener`, if any.
    pub fn accept(&mut self, listener: Socket) -> Result<Option<Socket>, GlueError> {
        let l = self.tcp_handle(listener)?;
        let c = blink_tcp::tcp_accept(&mut self.stack, l)?;
        Ok(c.map(|h| {
            self.tcp.insert(h, None);
            Socket::tcp(h)
        }))
    }

    /// Close: TCP closes gracefully (FIN after queued data), or resets if unread data
    /// remains; UDP and raw sockets free their queued datagrams. The handle is stale
    /// afterwards; its user data is returned.
    pub fn close(&mut self, s: Socket) -> Result<Option<U>, GlueError> {
        let h = self.live(s)?;
        let r: Result<(), GlueError> = match s.kind() {
            SockKind::Tcp => blink_tcp::tcp_close(&mut self.stack, h).map_err(Into::into),
            SockKind::Udp => blink_udp::udp_close(&mut self.stack, h).map_err(Into::into),
            SockKind::Raw => blink_raw::raw_close(&mut self.stack, h).map_err(Into::into),
        };
        let data = self.table_mut(s.kind()).remove(h).and_then(|e| e.data);
        r?;
        Ok(data)
    }

    /// shutdown(SHUT_WR): FIN after the queued data; reading goes on.
    pub fn shutdown(&mut self, s: Socket) -> Result<(), GlueError> {
        let h = self.tcp_handle(s)?;
        Ok(blink_tcp::tcp_shutdown(&mut self.stack, h)?)
    }

    pub fn tcp_state(&mut self, s: Socket) -> Result<TcpState, GlueError> {
        let h = self.tcp_handle(s)?;
        Ok(blink_tcp::tcp_state(&mut self.stack, h)?)
    }

    /// Local and remote (address, port) of a connection.
    pub fn addrs(&mut self, s: Socket) -> Result<(SocketAddrV4, SocketAddrV4), GlueError> {
        self.on_tcp(s, |sk, _| {
            Ok((
                SocketAddrV4::new(sk.saddr, sk.sport),
                SocketAddrV4::new(sk.daddr, sk.dport),
            ))
        })
    }

    // ------------------------------------------------------------------ user data

    /// Attach `data` to `s`; returns what was attached before.
    pub fn set_user_data(&mut self, s: Socket, data: U) -> Result<Option<U>, GlueError> {
        let e = self
            .table_mut(s.kind())
            .get_mut(s.handle())
            .ok_or(GlueError::BadHandle)?;
        Ok(e.data.replace(data))
    }

    pub fn user_data(&self, s: Socket) -> Option<&U> {
        self.table(s.kind()).get(s.handle()).and_then(|e| e.data.as_ref())
    }

    pub fn user_data_mut(&mut self, s: Socket) -> Option<&mut U> {
        self.table_mut(s.kind())
            .get_mut(s.handle())
            .and_then(|e| e.data.as_mut())
    }

    pub fn take_user_data(&mut self, s: Socket) -> Option<U> {
        self.table_mut(s.kind()).get_mut(s.handle()).and_then(|e| e.data.take())
    }

    // ------------------------------------------------------------------ send

    /// Bytes `s` accepts right now (app_glue_calc_size_of_data_to_send). When it is 0 the
    /// writable event follows once space opens.
    pub fn calc_size_of_data_to_send(&mut self, s: Socket) -> Result<usize, GlueError> {
        self.on_tcp(s, |sk, _| {
            if let Some(e) = sk.error {
                return Err(GlueError::Connection(Some(e).into()));
            }
            if !sk.state.can_send() || sk.fin_queued {
                return Ok(0);
            }
            let space = sk.send_space() as usize;
            if space == 0 {
                // The application found no room: wake it when there is (sk_stream_wspace +
                // SOCK_NOSPACE in Linux's tcp_poll).
                sk.snd_blocked = true;
            }
            Ok(space)
        })
    }

    /// Copying send; returns the bytes taken (fewer than `data.len()`, possibly 0, when the
    /// send buffer fills: the writable event follows). On a connected UDP or raw socket it
    /// sends one datagram to the peer (see [`Glue::send_to`]).
    pub fn send(&mut self, s: Socket, data: &[u8]) -> Result<usize, GlueError> {
        if s.kind() != SockKind::Tcp {
            return self.send_to(s, data, None);
        }
        let h = self.tcp_handle(s)?;
        Ok(blink_tcp::tcp_send(&mut self.stack, h, data)?)
    }

    /// An mbuf to fill with payload for [`Glue::send_mbuf`] (app_glue_get_buffer); the pool's
    /// headroom is reserved. None when the pool is exhausted.
    pub fn get_buffer(&mut self) -> Option<Mbuf> {
        self.stack.core.cache.alloc()
    }

    /// Payload bytes one buffer passed to [`Glue::send_mbuf`] may carry on `s` (its MSS).
    pub fn max_mbuf_payload(&mut self, s: Socket) -> Result<usize, GlueError> {
        self.on_tcp(s, |sk, _| Ok(sk.mss_cache as usize))
    }

    /// Zero-copy send: `m`'s data becomes one segment's payload (1..=MSS bytes). On failure
    /// the mbuf comes back with the reason (`WouldBlock` when the send buffer is full).
    pub fn send_mbuf(&mut self, s: Socket, m: Mbuf) -> Result<(), (Mbuf, GlueError)> {
        let h = match self.tcp_handle(s) {
            Ok(h) => h,
            Err(e) => return Err((m, e)),
        };
        let mut m = Some(m);
        let r = with_tcp(&mut self.stack, |t, st| {
            let m = m.take().expect("taken once");
            let Some(sk) = t.socks.get_mut(h) else {
                return Err((m, GlueError::BadHandle));
            };
            let r = blink_tcp::tcp::tcp_send_mbuf(sk, st, m).map_err(|(m, e)| (m, GlueError::from(e)));
            t.post_process(st, h);
            r
        });
        match r {
            Ok(r) => r,
            Err(e) => Err((m.take().expect("closure did not run"), e.into())),
        }
    }

    // ------------------------------------------------------------------ receive

    /// Copying receive. `Ok(0)` is the end of the stream; `Err(WouldBlock)` means nothing yet.
    /// On a UDP or raw socket it reads one datagram (an empty one is `Ok(0)`; use
    /// [`Glue::recv_from`] for its source and truncation).
    pub fn recv(&mut self, s: Socket, buf: &mut [u8]) -> Result<usize, GlueError> {
        if s.kind() != SockKind::Tcp {
            return self.recv_from(s, buf).map(|r| r.len);
        }
        let h = self.tcp_handle(s)?;
        match blink_tcp::tcp_recv(&mut self.stack, h, buf) {
            Ok(n) => Ok(n),
            Err(TcpErr::WouldBlock) => Err(GlueError::WouldBlock),
            Err(e) => Err(e.into()),
        }
    }

    /// Zero-copy receive: the next in-order segment as an skb whose data is the payload, in
    /// the buffers the device delivered (read it with `skb_copy_bits`, or `data()` and
    /// `frags()`). `Ok(None)` is the end of the stream; `Err(WouldBlock)` means nothing yet.
    pub fn recv_skb(&mut self, s: Socket) -> Result<Option<SkBuff>, GlueError> {
        self.on_tcp(s, |sk, st| {
            if let Some(skb) = blink_tcp::tcp::tcp_recv_skb(sk, st) {
                return Ok(Some(skb));
            }
            if let Some(e) = sk.error {
                return Err(GlueError::Connection(Some(e).into()));
            }
            if sk.rcv_shutdown || sk.state == TcpState::Closed {
                return Ok(None);
            }
            Err(GlueError::WouldBlock)
        })
    }

    /// Bytes waiting to be read on `s`.
    pub fn recv_queued(&mut self, s: Socket) -> Result<usize, GlueError> {
        self.on_tcp(s, |sk, _| Ok(sk.recv_queued()))
    }
}
