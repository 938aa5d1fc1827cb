//! The pieces of the `blink` command, as a library so `apps/examples/` can reuse them.

pub mod args;
pub mod bench;
pub mod bench_conns;
pub mod bench_cores;
pub mod bench_linux;
pub mod bench_plot;
pub mod bench_smoltcp;
pub mod config;
pub mod cores;
pub mod ctl;
pub mod demo;
pub mod demo_cores;
pub mod echo;
pub mod httpd;
pub mod load;
pub mod setup;
pub mod soak;
pub mod stat;
