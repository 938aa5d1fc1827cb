//! `blink stat`: every per-core counter table, in /proc/net/snmp names plus blink's own.
//!
//! It runs the same exchange as `blink demo` (two hosts on the in-memory wire, one core each:
//! ARP, ping, ICMP errors, UDP and raw echo), quietly, then prints each core's tables: Linux's
//! sections (Ip, Icmp, Tcp, Udp, TcpExt) and blink's own (Arp, Drop: one counter per drop
//! reason), each as a line of names and a line of values as in /proc/net/snmp; or, with
//! `--json`, one object per core. With `--cores N` it also runs the demo's multi-core part
//! quietly and prints every core of its two hosts (`A2`, `B2`), then their total.

use blink_netcore::snmp::{Counters, Mib, MibEnum};
use clap::Args;

use crate::demo::{self, DemoArgs};
use crate::setup::SetupError;

#[derive(Args, Debug)]
pub struct StatArgs {
    #[command(flatten)]
    pub demo: DemoArgs,
    /// One JSON object: {"cores": [{"core": N, "host": "A", "counters": {"Ip": {...}, ...}}]}.
    #[arg(long)]
    pub json: bool,
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
        json_section(&m.drops),
    ];
    format!("{{{}}}", s.join(", "))
}

pub fn run(a: StatArgs) -> Result<(), SetupError> {
    let h = demo::exchange(&a.demo, true)?;
    // core id, host name, counters: the demo runs host A on core 0 and host B on core 1.
    let mut cores: Vec<(String, String, Mib)> = vec![
        (h.a.core.cpu.to_string(), "A".into(), h.a.core.mib.clone()),
        (h.b.core.cpu.to_string(), "B".into(), h.b.core.mib.clone()),
    ];
    if a.demo.dev.cores > 1 {
        let (sa, sb, _) = crate::demo_cores::exchange(&a.demo, true)?;
        for (host, cs) in [("A2", &sa), ("B2", &sb)] {
            for c in cs.iter() {
                cores.push((c.cpu.to_string(), host.into(), c.mib.clone()));
            }
            cores.push(("total".into(), host.into(), crate::cores::total_mib(cs)));
        }
    }
    if a.json {
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
        assert_eq!(sections, 8, "Ip Icmp Tcp Udp TcpExt Arp Softnet Drop: {j}");
    }
}
