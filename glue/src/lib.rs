//! app_glue: where every protocol meets the application (IPAugenblick's app_glue, re-made).
//!
//! - [`GlueBuilder`] assembles one core's stack: devices (wire, TAP, fault injection, pcap),
//!   addresses, routes, static neighbours, the buffer pool, the clock and TCP settings.
//! - [`Glue::periodic`] is one poll pass; events land on lists the application pulls
//!   (`next_reader`, ...) or that [`Glue::dispatch`] turns into [`GlueHandler`] calls.
//! - [`exception`]: the kernel's side of a shared NIC (`GlueBuilder::to_kernel`).
//! - Sockets (TCP, UDP, raw) are [`Socket`] handles with typed per-socket user data
//!   (`Glue<U>`); UDP and raw calls are in [`dgram`], socket options (setsockopt) and
//!   bind-before-connect in [`sockopt`]; received payload as `bytes::Bytes` over the
//!   mbuf, and `Bytes` sent without a copy when it is one of the pool's, in [`app_bytes`].
//!
//! A TCP echo server, driven by callbacks:
//!
//! ```
//! use blink_glue::{Glue, GlueHandler, Socket};
//!
//! struct Echo;
//! impl GlueHandler<()> for Echo {
//!     fn on_readable(&mut self, glue: &mut Glue<()>, s: Socket) {
//!         let mut buf = [0u8; 2048];
//!         while let Ok(n) = glue.recv(s, &mut buf) {
//!             if n == 0 {
//!                 let _ = glue.close(s);
//!                 break;
//!             }
//!             // An echo that drops what does not fit keeps the example short.
//!             let _ = glue.send(s, &buf[..n]);
//!         }
//!     }
//! }
//!
//! # use blink_glue::netcore::{drivers::wire::{wire_pair, WireConfig}, EthAddr};
//! # let (a, _b) = wire_pair(("a", "b"), (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])), &WireConfig::default());
//! let mut glue: Glue<()> = blink_glue::GlueBuilder::new()
//!     .device(Box::new(a))
//!     .addr("10.0.0.1/24".parse().unwrap())
//!     .build()
//!     .unwrap();
//! glue.tcp_listen(7, 128).unwrap();
//! for _ in 0..10 {
//!     glue.periodic_with(&mut Echo);
//! }
//! ```
//!
//! Multi-core: each core owns one `Glue` (shared nothing).
//! [`GlueBuilder::build_cores`] makes them (per-queue devices, or a [`poller`] in front of a
//! single-queue device), [`runtime::run_cores`] runs each on its own pinned thread, and
//! [`Glue::post`] carries application messages between cores through their inboxes.

pub mod app_bytes;
pub mod app_glue;
pub mod builder;
pub mod dgram;
pub mod error;
pub mod exception;
pub mod poller;
pub mod runtime;
pub mod socket;
pub mod sockopt;

pub use app_glue::{Closed, Glue, GlueHandler};
pub use blink_ipv4::ip_tunnel::{TunnelKind, TunnelSpec};
pub use builder::{mac_for, GlueBuilder};
pub use dgram::RecvFrom;
pub use error::{CloseReason, GlueError};
pub use exception::{KernelSide, DEFAULT_KERNEL_IF};
pub use runtime::{run_cores, Steering};
pub use socket::{SockKind, Socket};
pub use sockopt::{Keepalive, SockOpt};

pub use blink_ipv4 as ipv4;
pub use blink_netcore as netcore;
pub use blink_raw as raw;
pub use blink_tcp as tcp;
pub use blink_udp as udp;
/// The `bytes` crate glue's [`Glue::recv_bytes`] and [`Glue::send_bytes`] use.
pub use bytes;
