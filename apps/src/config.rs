//! The `--config` file: IPAugenblick's interface lines (`<port> <ip> <mask>`), mTCP's static
//! ARP and route entries (its arp.conf and route.conf, one line each here), and the exception
//! path's settings. `#` starts a comment; errors name the line and the field.
//!
//! ```text
//! 0 10.200.0.2 255.255.255.0          # port 0's address
//! arp 10.200.0.9 02:00:00:00:00:09    # a permanent neighbour
//! route 10.201.0.0/16 via 10.200.0.1  # a route through a gateway
//! to-kernel tcp:22,arp                # the kernel's share of the NIC
//! kernel-if blink-kni0                # and the name of its TAP (one per port: a,b,...)
//! kernel-addr                         # and the TAP takes its port's address (--kernel-addr)
//! ```

use std::net::Ipv4Addr;

use blink_ipv4::ip_exception::ExcRules;
use blink_ipv4::iphdr::{mask_to_prefix, Ipv4Cidr};
use blink_netcore::EthAddr;

/// What a `--config` file says.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// `<port> <ip> <mask>`: an address of a port (device).
    pub ports: Vec<(u16, Ipv4Cidr)>,
    /// `arp <ip> <mac>`: permanent neighbours.
    pub arp: Vec<(Ipv4Addr, EthAddr)>,
    /// `route <dst>/<len> via <gw>` (`default` for 0.0.0.0/0).
    pub routes: Vec<(Ipv4Cidr, Ipv4Addr)>,
    /// `to-kernel RULES`.
    pub to_kernel: Option<ExcRules>,
    /// `kernel-if NAME[,NAME2...]`: one per port.
    pub kernel_if: Option<String>,
    /// `kernel-addr`: each kernel TAP takes its port's first address (`--kernel-addr`).
    pub kernel_addr: bool,
}

/// A kernel interface name as Linux takes it: 1..15 bytes, no '/', no whitespace.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
        return Err(format!("`{name}` must be 1..15 characters without '/' or spaces"));
    }
    Ok(())
}

/// Parse a whole file.
pub fn parse_config_file(text: &str) -> Result<ConfigFile, String> {
    let mut c = ConfigFile::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "arp" => {
                let [_, ip, mac] = f[..] else {
                    return Err(format!("line {n}: expected `arp <ip> <mac>`, got `{line}`"));
                };
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| format!("line {n}: arp: field `ip`: `{ip}` is not an IPv4 address"))?;
                let mac: EthAddr = mac.parse().map_err(|_| {
                    format!("line {n}: arp: field `mac`: `{mac}` is not a MAC address (02:00:00:00:00:09)")
                })?;
                if mac.is_multicast() || mac == EthAddr::ZERO {
                    return Err(format!("line {n}: arp: field `mac`: {mac} is not a unicast address"));
                }
                c.arp.push((ip, mac));
            }
            "route" => {
                let [_, dst, "via", gw] = f[..] else {
                    return Err(format!("line {n}: expected `route <dst>/<len> via <gw>`, got `{line}`"));
                };
                let dst: Ipv4Cidr = if dst == "default" {
                    Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is valid")
                } else {
                    dst.parse()
                        .map_err(|e| format!("line {n}: route: field `dst`: `{dst}`: {e}"))?
                };
                let gw: Ipv4Addr = gw
                    .parse()
                    .map_err(|_| format!("line {n}: route: field `gw`: `{gw}` is not an IPv4 address"))?;
                c.routes.push((dst, gw));
            }
            "to-kernel" => {
                let [_, rules] = f[..] else {
                    return Err(format!(
                        "line {n}: expected `to-kernel RULES` (no spaces in RULES), got `{line}`"
                    ));
                };
                c.to_kernel = Some(rules.parse().map_err(|e| format!("line {n}: to-kernel: {e}"))?);
            }
            "kernel-if" => {
                let [_, name] = f[..] else {
                    return Err(format!("line {n}: expected `kernel-if NAME`, got `{line}`"));
                };
                // One name per port, comma-separated.
                for one in name.split(',') {
                    check_ifname(one).map_err(|e| format!("line {n}: kernel-if: {e}"))?;
                }
                c.kernel_if = Some(name.to_string());
            }
            "kernel-addr" => {
                if f.len() != 1 {
                    return Err(format!("line {n}: expected `kernel-addr` alone, got `{line}`"));
                }
                c.kernel_addr = true;
            }
            // An interface line, or one whose port field is wrong (then that field is named).
            w if w.starts_with(|ch: char| ch.is_ascii_digit())
                || (f.len() == 3 && f[1].parse::<Ipv4Addr>().is_ok()) =>
            {
                c.ports.push(port_line(n, line, &f)?)
            }
            w => {
                return Err(format!(
                    "line {n}: `{w}` is not a config line (`<port> <ip> <mask>`, arp, route, to-kernel, kernel-if, kernel-addr)"
                ))
            }
        }
    }
    Ok(c)
}

/// IPAugenblick's interface line: `<port> <ip> <mask>`.
fn port_line(n: usize, line: &str, f: &[&str]) -> Result<(u16, Ipv4Cidr), String> {
    if f.len() != 3 {
        return Err(format!("line {n}: expected `<port> <ip> <mask>`, got `{line}`"));
    }
    let port: u16 = f[0]
        .parse()
        .map_err(|_| format!("line {n}: field `port`: `{}` is not a port number", f[0]))?;
    let ip: Ipv4Addr = f[1]
        .parse()
        .map_err(|_| format!("line {n}: field `ip`: `{}` is not an IPv4 address", f[1]))?;
    let len = mask_to_prefix(f[2])
        .ok_or_else(|| format!("line {n}: field `mask`: `{}` is not a contiguous netmask", f[2]))?;
    let cidr = Ipv4Cidr::new(ip, len).map_err(|e| format!("line {n}: {e}"))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(format!("line {n}: field `ip`: {ip} cannot be a host address"));
    }
    Ok((port, cidr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_line() {
        let c = parse_config_file(
            "# blink\n0 10.200.0.2 255.255.255.0\narp 10.200.0.9 02:00:00:00:00:09\n\
             route 10.201.0.0/16 via 10.200.0.1\nroute default via 10.200.0.1 # gw\n\
             to-kernel tcp:22,arp\nkernel-if kni7\nkernel-addr\n",
        )
        .unwrap();
        assert_eq!(c.ports.len(), 1);
        assert_eq!(
            c.arp,
            vec![("10.200.0.9".parse().unwrap(), EthAddr([2, 0, 0, 0, 0, 9]))]
        );
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].0.to_string(), "10.201.0.0/16");
        assert_eq!(c.routes[1].0.prefix_len, 0);
        assert_eq!(c.to_kernel.unwrap().to_string(), "tcp:22,arp");
        assert_eq!(c.kernel_if.as_deref(), Some("kni7"));
        assert!(c.kernel_addr);
        assert!(!parse_config_file("kernel-if kni7\n").unwrap().kernel_addr);
    }

    #[test]
    fn bad_lines_name_line_and_field() {
        for (bad, says) in [
            ("arp 10.0.0.1", "line 1: expected `arp <ip> <mac>`"),
            ("arp 10.0.0.1 02:00:00:00:00", "field `mac`"),
            ("arp 10.0.0.x 02:00:00:00:00:01", "field `ip`"),
            ("arp 10.0.0.1 01:00:5e:00:00:01", "not a unicast"),
            ("\nroute 10.1.0.0/16 10.0.0.1", "line 2: expected `route"),
            ("route 10.1.0.0/40 via 10.0.0.1", "field `dst`"),
            ("route 10.1.0.0/16 via x", "field `gw`"),
            ("to-kernel tcp:99999", "to-kernel: `tcp:99999`"),
            ("to-kernel tcp:22, arp", "no spaces"),
            ("kernel-if a-name-far-too-long", "kernel-if: `a-name-far-too-long`"),
            ("kernel-if k0,", "kernel-if: `` must be"),
            ("gateway 10.0.0.1", "`gateway` is not a config line"),
            ("kernel-addr yes", "expected `kernel-addr` alone"),
            ("0 1.2.3.4 255.0.255.0", "`mask`"),
        ] {
            let e = parse_config_file(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
