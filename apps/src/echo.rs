//! `blink echo`: an echo host. For now it answers ping (and ARP); TCP, UDP and raw echo
//! arrive with their protocols.

use std::time::Duration;

use clap::Args;

use crate::args::DevArgs;
use crate::setup::{build_stack, report, run_loop, stop_flag, SetupError};

#[derive(Args, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    pub dev: DevArgs,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

pub fn run(a: EchoArgs) -> Result<(), SetupError> {
    let mut stack = build_stack(&a.dev)?;
    let d = &stack.devs[0];
    println!(
        "blink echo: {} mac {} addr {} (answering ping)",
        d.name(),
        d.mac,
        d.addrs.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
    );
    let stop = stop_flag();
    let dur = a.duration.filter(|d| *d > 0.0).map(Duration::from_secs_f64);
    run_loop(&mut stack, &stop, dur, a.dev.stats);
    // Let queued frames leave before reporting.
    stack.flush_tx();
    report(&stack, "blink echo");
    Ok(())
}
