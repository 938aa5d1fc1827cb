//! The `blink` command.

mod args;
mod demo;
mod echo;
mod setup;

use clap::{Parser, Subcommand};

use setup::SetupError;

#[derive(Parser, Debug)]
#[command(
    name = "blink",
    version,
    about = "blink: a user-space TCP/IPv4 stack built the way Linux builds its own"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Two blink hosts on the in-memory wire: ARP, ping, ICMP errors, per-core counters.
    Demo(demo::DemoArgs),
    /// Echo host on a device (answers ping).
    Echo(echo::EchoArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Demo(a) => demo::run(a),
        Cmd::Echo(a) => echo::run(a),
    };
    match r {
        Ok(()) => {}
        Err(SetupError::Usage(e)) => {
            eprintln!("blink: {e}");
            std::process::exit(2);
        }
        Err(SetupError::Runtime(e)) => {
            eprintln!("blink: {e}");
            std::process::exit(1);
        }
    }
}
