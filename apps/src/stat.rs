//! `blink stat`: the counters of a running blink, per core and in total, in /proc/net/snmp
//! names plus blink's own, read through its control socket (see ctl.rs); `--watch SECS`
//! prints what changed in each interval, as `nstat` does.
//!
//! `blink demo --stat` runs the demo's exchange quietly and prints the same tables for its
//! hosts (what `blink stat` printed before it could read a live instance).

use std::time::Duration;

use blink_netcore::snmp::{Counters, Mib, MibEnum};
use clap::Args;

use crate::args::usage;
use crate::ctl::{ask, CtlArgs};
use crate::demo::{self, DemoArgs};
use crate::setup::SetupError;

#[derive(Args, Debug)]
pub struct StatArgs {
    #[command(flatten)]
    pub ctl: CtlArgs,
    /// Print the counters that changed, every SECS seconds, until interrupted (like nstat).
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,
}

/// One section as a JSON object member: `"Ip": {"InReceives": 3, ...}`. Section and counter
/// names are Rust identifiers, so they need no escaping.
fn json_section<E: MibEnum>(c: &Counters<E>) -> String {
    let fields: Vec<String> = c.iter().map(|(e, v)| format!("\"{}\": {v}", e.name())).collect();
    format!("\"{}\": {{{}}}", E::PREFIX, fields.join(", "))
}

/// Every section of `m` as one JSON object, in /proc/net/snmp order then blink's own.
pub fn mib_json(m: &Mib) -> String {
    let s = [
        json_section(&m.ip),
        json_section(&m.icmp),
        json_section(&m.tcp),
        json_section(&m.udp),
        json_section(&m.tcp_ext),
        json_section(&m.arp),
        json_section(&m.softnet),
        json_section(&m.exc),
        json_section(&m.drops),
    ];
    format!("{{{}}}", s.join(", "))
}

pub fn run(a: StatArgs) -> Result<(), SetupError> {
    let Some(secs) = a.watch else {
        print!("{}", ask(&a.ctl, "stat")?);
        return Ok(());
    };
    if !(secs > 0.0 && secs.is_finite()) || a.ctl.json {
        return Err(usage("--watch: a positive number of seconds, without --json").into());
    }
    // nstat's way: the totals' deltas over each interval, non-zero ones only.
    let mut last = parse_totals(&ask(&a.ctl, "stat")?);
    loop {
        std::thread::sleep(Duration::from_secs_f64(secs));
        let now = parse_totals(&ask(&a.ctl, "stat")?);
        println!("# {secs} s");
        for (k, v) in &now {
            let before = last.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
            if *v != before {
                println!("{k:<32}{:>12}", v.wrapping_sub(before));
            }
        }
        last = now;
    }
}

/// `Section.Name value` pairs of the `# total` tables of a `stat` answer (name and value lines
/// as in /proc/net/snmp).
fn parse_totals(text: &str) -> Vec<(String, u64)> {
    let Some((_, total)) = text.split_once("# total\n") else {
        return Vec::new();
    };
    let lines: Vec<&str> = total.lines().collect();
    let mut out = Vec::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let mut n = names.split_whitespace();
        let mut v = values.split_whitespace();
        let (Some(sec), Some(_)) = (n.next(), v.next()) else {
            continue;
        };
        let sec = sec.trim_end_matches(':');
        for (name, val) in n.zip(v) {
            out.push((format!("{sec}.{name}"), val.parse().unwrap_or(0)));
        }
    }
    out
}

/// `blink demo --stat`: the demo's exchange, quietly, then every core's tables.
pub fn demo_tables(a: &DemoArgs, json: bool) -> Result<(), SetupError> {
    let h = demo::exchange(a, true)?;
    // core id, host name, counters: the demo runs host A on core 0 and host B on core 1.
    let mut cores: Vec<(String, String, Mib)> = vec![
        (h.a.core.cpu.to_string(), "A".into(), h.a.core.mib.clone()),
        (h.b.core.cpu.to_string(), "B".into(), h.b.core.mib.clone()),
    ];
    if a.dev.cores > 1 {
        let (sa, sb, _) = crate::demo_cores::exchange(a, true)?;
        for (host, cs) in [("A2", &sa), ("B2", &sb)] {
            for c in cs.iter() {
                cores.push((c.cpu.to_string(), host.into(), c.mib.clone()));
            }
            cores.push(("total".into(), host.into(), crate::cores::total_mib(cs)));
        }
    }
    if json {
        let items: Vec<String> = cores
            .iter()
            .map(|(id, host, m)| {
                let id = if id.parse::<u16>().is_ok() {
                    id.clone()
                } else {
                    format!("\"{id}\"")
                };
                format!(
                    "{{\"core\": {id}, \"host\": \"{host}\", \"counters\": {}}}",
                    mib_json(m)
                )
            })
            .collect();
        println!("{{\"cores\": [{}]}}", items.join(", "));
    } else {
        for (id, host, m) in &cores {
            if id == "total" {
                println!("# total (host {host})");
            } else {
                println!("# core {id} (host {host})");
            }
            print!("{}", m.snmp());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blink_netcore::snmp::{DropReason, UdpMib};

    #[test]
    fn json_names_every_counter_with_its_value() {
        let mut m = Mib::default();
        m.udp.add(UdpMib::NoPorts, 3);
        m.drops.inc(DropReason::NoMem);
        let j = mib_json(&m);
        assert!(j.starts_with("{\"Ip\": {\"InReceives\": 0"), "{j}");
        assert!(j.contains("\"Udp\": {\"InDatagrams\": 0, \"NoPorts\": 3,"), "{j}");
        assert!(j.contains("\"NoMem\": 1"), "{j}");
        let sections = j.matches("\": {").count();
        assert_eq!(sections, 9, "Ip Icmp Tcp Udp TcpExt Arp Softnet Exc Drop: {j}");
    }
}
