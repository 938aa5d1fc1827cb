//! The multi-core runtime: one pinned thread per core, each running its own [`Glue`] (stack,
//! protocols, timers, counters, sockets) and the application's per-core code.
//!
//! Build the cores with [`crate::GlueBuilder::build_cores`], then hand them to [`run_cores`]
//! with the per-core entry point. A core reaches another only through its inbox
//! ([`Glue::post`]); other threads reach a core the same way, through
//! [`Glue::core_set`].
//!
//! ```
//! use blink_glue::{runtime, GlueBuilder, Glue};
//! use blink_glue::netcore::{drivers::wire::{wire_pair, WireConfig}, EthAddr};
//! let cfg = WireConfig { queues: 2, ..Default::default() };
//! let (a, _b) = wire_pair(("a", "b"), (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])), &cfg);
//! let queues = a.into_queues().into_iter().map(|q| Box::new(q) as _).collect();
//! let cores: Vec<Glue<()>> = GlueBuilder::new()
//!     .device_queues(queues)
//!     .addr("10.0.0.1/24".parse().unwrap())
//!     .cores(2)
//!     .build_cores()
//!     .unwrap();
//! // Every core listens on port 7 (per-core accept queues, as SO_REUSEPORT with RSS).
//! let listening = runtime::run_cores(cores, |mut glue| {
//!     let l = glue.tcp_listen(7, 128).unwrap();
//!     for _ in 0..10 {
//!         glue.periodic();
//!     }
//!     glue.cpu()
//! });
//! assert_eq!(listening, [0, 1]);
//! ```

use std::str::FromStr;

use crate::Glue;

/// How received frames reach their owner core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Steering {
    /// Each core polls its own device queue; where the device's queue choice is not blink's
    /// Toeplitz, the receiving core forwards frames to their owner's inbox.
    #[default]
    Rss,
    /// One poller (in core 0's loop) drives a single-queue device and a load balancer
    /// dispatches frames to per-core rings.
    Poller,
}

impl FromStr for Steering {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rss" => Ok(Steering::Rss),
            "poller" => Ok(Steering::Poller),
            _ => Err(format!("`{s}` is not a steering mode (rss or poller)")),
        }
    }
}

/// The CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed cpu_set_t we pass with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Let the calling thread run on exactly `cpus` again (e.g. after DPDK's `rte_eal_init`
/// pinned it to its main lcore, which would hide the other CPUs from [`allowed_cpus`]).
pub fn set_allowed_cpus(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t with the given bits set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pin the calling thread to `cpu` (Linux: sched_setaffinity).
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Run `f` on every core: core `i` on its own thread pinned to the `i`-th allowed CPU (see
/// [`allowed_cpus`]), with its own `Glue`. Returns what each core's `f` returned, in core
/// order, once all have finished. A pinning failure is logged and the thread runs unpinned.
pub fn run_cores<U, R, F>(cores: Vec<Glue<U>>, f: F) -> Vec<R>
where
    U: Send,
    R: Send,
    F: Fn(Glue<U>) -> R + Sync,
{
    let cpus = allowed_cpus();
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = cores
            .into_iter()
            .enumerate()
            .map(|(i, glue)| {
                let cpu = cpus.get(i).copied();
                std::thread::Builder::new()
                    .name(format!("blink-core{i}"))
                    .spawn_scoped(scope, move || {
                        if let Some(c) = cpu {
                            if let Err(e) = pin_to_cpu(c) {
                                log::warn!("core {i}: cannot pin to CPU {c}: {e}");
                            }
                        }
                        f(glue)
                    })
                    .expect("spawn a core thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steering_modes_parse() {
        assert_eq!("rss".parse::<Steering>(), Ok(Steering::Rss));
        assert_eq!("poller".parse::<Steering>(), Ok(Steering::Poller));
        assert!("rps".parse::<Steering>().unwrap_err().contains("rss or poller"));
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        pin_to_cpu(cpus[0]).unwrap();
    }
}
