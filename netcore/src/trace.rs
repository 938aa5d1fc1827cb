//! Per-packet tracing, pwru-style: packets matching a filter are marked when they enter the
//! stack (`netif_receive_skb`, or `dev_queue_xmit` on the way out), and every function a marked
//! skb passes records an event (core, time, skb, function; the reason when it is dropped).
//!
//! Off, it costs one test of an empty `Option` per received or sent frame, and one test of the
//! skb's own `trace` flag at each step (a byte of the metadata already in cache).

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Instant;

/// tcpdump-like filter over IPv4: every given term must match (`and` between terms is
/// optional): `tcp`, `udp`, `icmp`, `proto N`, `port N` (either end), `host A.B.C.D` (either end).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pub proto: Option<u8>,
    pub port: Option<u16>,
    pub host: Option<Ipv4Addr>,
}

impl FromStr for TraceFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<TraceFilter, String> {
        let mut f = TraceFilter::default();
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            match w {
                "and" | "ip" => {}
                "tcp" => f.proto = Some(6),
                "udp" => f.proto = Some(17),
                "icmp" => f.proto = Some(1),
                "proto" | "port" | "host" => {
                    let v = words.next().ok_or_else(|| format!("`{w}` needs a value"))?;
                    match w {
                        "proto" => f.proto = Some(v.parse().map_err(|_| format!("proto `{v}` is not 0..255"))?),
                        "port" => f.port = Some(v.parse().map_err(|_| format!("port `{v}` is not 0..65535"))?),
                        _ => f.host = Some(v.parse().map_err(|_| format!("host `{v}` is not an IPv4 address"))?),
                    }
                }
                other => {
                    return Err(format!(
                        "`{other}`: terms are tcp, udp, icmp, proto N, port N, host A.B.C.D (joined by and)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

impl TraceFilter {
    /// Does the IPv4 packet starting at `ip` match?
    pub fn matches(&self, ip: &[u8]) -> bool {
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return false;
        }
        let proto = ip[9];
        if self.proto.is_some_and(|p| p != proto) {
            return false;
        }
        if let Some(h) = self.host {
            let (s, d) = (&ip[12..16], &ip[16..20]);
            if s != h.octets() && d != h.octets() {
                return false;
            }
        }
        if let Some(port) = self.port {
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let first = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
            if !(proto == 6 || proto == 17) || !first || ip.len() < ihl + 4 {
                return false;
            }
            let sp = u16::from_be_bytes([ip[ihl], ip[ihl + 1]]);
            let dp = u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]);
            if sp != port && dp != port {
                return false;
            }
        }
        true
    }
}

/// One step of a traced packet.
#[derive(Clone, Debug)]
pub struct TraceEvent {
    /// The skb's identity (its host buffer address, as pwru prints the skb pointer).
    pub skb: usize,
    pub cpu: u16,
    /// Nanoseconds since tracing started on this core.
    pub ns: u64,
    pub func: &'static str,
    /// What happened there when it is more than passing through (a drop's reason).
    pub detail: &'static str,
}

/// Events kept per core between two reads; past it, the oldest are dropped (and counted).
pub const TRACE_EVENTS_MAX: usize = 65536;

/// One core's tracer.
#[derive(Debug)]
pub struct Tracer {
    pub filter: TraceFilter,
    /// Packets still to mark.
    pub remaining: u32,
    pub events: Vec<TraceEvent>,
    /// Events lost to `TRACE_EVENTS_MAX`.
    pub lost: u64,
    cpu: u16,
    start: Instant,
}

impl Tracer {
    pub fn new(filter: TraceFilter, count: u32, cpu: u16) -> Tracer {
        Tracer {
            filter,
            remaining: count,
            events: Vec::new(),
            lost: 0,
            cpu,
            start: Instant::now(),
        }
    }

    /// Record that `skb` passed `func`.
    #[cold]
    pub fn event(&mut self, skb: usize, func: &'static str, detail: &'static str) {
        if self.events.len() >= TRACE_EVENTS_MAX {
            self.lost += 1;
            return;
        }
        self.events.push(TraceEvent {
            skb,
            cpu: self.cpu,
            ns: self.start.elapsed().as_nanos() as u64,
            func,
            detail,
        });
    }

    /// Should the packet at `ip` (an IPv4 header) be traced? Counts it when so.
    #[cold]
    pub fn select(&mut self, ip: &[u8]) -> bool {
        if self.remaining == 0 || !self.filter.matches(ip) {
            return false;
        }
        self.remaining -= 1;
        true
    }
}

/// The tracer slot of a core's counters: cloning a `Mib` (for reports) leaves it behind.
#[derive(Debug, Default)]
pub struct TraceSlot(pub Option<Box<Tracer>>);

impl Clone for TraceSlot {
    fn clone(&self) -> Self {
        TraceSlot(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn filters_parse_and_match() {
        let f: TraceFilter = "tcp port 80".parse().unwrap();
        assert!(f.matches(&pkt(6, 1234, 80)));
        assert!(f.matches(&pkt(6, 80, 1234)));
        assert!(!f.matches(&pkt(17, 1234, 80)));
        assert!(!f.matches(&pkt(6, 1234, 81)));
        let f: TraceFilter = "udp and host 10.0.0.2".parse().unwrap();
        assert!(f.matches(&pkt(17, 1, 2)));
        let f: TraceFilter = "host 10.9.9.9".parse().unwrap();
        assert!(!f.matches(&pkt(17, 1, 2)));
        assert!(TraceFilter::from_str("").unwrap().matches(&pkt(1, 0, 0)));
        for bad in ["port", "port x", "host 1.2.3", "sctp", "proto 300"] {
            assert!(bad.parse::<TraceFilter>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tracer_marks_count_packets_and_bounds_its_events() {
        let mut t = Tracer::new("tcp".parse().unwrap(), 2, 0);
        assert!(t.select(&pkt(6, 1, 2)));
        assert!(!t.select(&pkt(17, 1, 2)));
        assert!(t.select(&pkt(6, 1, 2)));
        assert!(!t.select(&pkt(6, 1, 2)), "count reached");
        for _ in 0..TRACE_EVENTS_MAX + 5 {
            t.event(1, "ip_rcv", "");
        }
        assert_eq!(t.events.len(), TRACE_EVENTS_MAX);
        assert_eq!(t.lost, 5);
    }
}
