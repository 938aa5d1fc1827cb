//! IPv4 options on receive. Linux: net/ipv4/ip_options.c (`ip_options_compile`) and
//! `ip_rcv_options` in ip_input.c.
//!
//! A host checks every option's framing and the fields a router would use, as Linux does, and
//! rejects a malformed list with an ICMP parameter problem pointing at the bad byte (counted in
//! Ip.InHdrErrors). blink records nothing into the options (no record-route or timestamp
//! entries: Linux writes them only into packets it forwards or echoes, and blink does
//! neither), and refuses source-routed packets, as Linux does with its default
//! `accept_source_route = 0`.

/// End of the option list.
pub const IPOPT_END: u8 = 0;
/// No operation (padding between options).
pub const IPOPT_NOOP: u8 = 1;
/// Record route.
pub const IPOPT_RR: u8 = 7;
/// Internet timestamp.
pub const IPOPT_TIMESTAMP: u8 = 68;
/// Loose source and record route.
pub const IPOPT_LSRR: u8 = 131;
/// Strict source and record route.
pub const IPOPT_SSRR: u8 = 137;
/// Router alert (RFC 2113).
pub const IPOPT_RA: u8 = 148;

/// Timestamp flags (the low nibble of the option's fourth byte).
const IPOPT_TS_TSONLY: u8 = 0;
const IPOPT_TS_TSANDADDR: u8 = 1;
const IPOPT_TS_PRESPEC: u8 = 3;

/// What a valid option list carries that matters to a host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IpOptions {
    /// Offset (from the IP header) of a source route option, 0 if none.
    pub srr: u8,
    /// Offset of a record route option, 0 if none.
    pub rr: u8,
    /// Offset of a timestamp option, 0 if none.
    pub ts: u8,
    /// Offset of a router alert option with value 0, 0 if none.
    pub router_alert: u8,
}

/// Linux: ip_options_compile() for a received packet. `opts` are the header's bytes after the
/// first 20 (IHL * 4 - 20 of them). On error, the offset from the start of the IP header of
/// the byte at fault, what an ICMP parameter problem's pointer carries.
pub fn ip_options_compile(opts: &[u8]) -> Result<IpOptions, u8> {
    const BASE: usize = 20;
    let mut o = IpOptions::default();
    let mut i = 0;
    // The pointer of a parameter problem, from the IP header's first byte.
    let at = |off: usize| (BASE + off) as u8;
    while i < opts.len() {
        let l = opts.len() - i;
        match opts[i] {
            // The rest is padding (Linux overwrites anything after it with END; nothing
            // reads it here).
            IPOPT_END => break,
            IPOPT_NOOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if l < 2 {
            return Err(at(i));
        }
        let optlen = opts[i + 1] as usize;
        if optlen < 2 || optlen > l {
            return Err(at(i));
        }
        let opt = &opts[i..i + optlen];
        match opt[0] {
            IPOPT_SSRR | IPOPT_LSRR => {
                if optlen < 3 {
                    return Err(at(i + 1));
                }
                if opt[2] < 4 {
                    return Err(at(i + 2));
                }
                // One source route per packet (RFC 1812 5.2.4.1).
                if o.srr != 0 {
                    return Err(at(i));
                }
                o.srr = at(i);
            }
            IPOPT_RR => {
                if o.rr != 0 {
                    return Err(at(i));
                }
                if optlen < 3 {
                    return Err(at(i + 1));
                }
                if opt[2] < 4 {
                    return Err(at(i + 2));
                }
                // Room left (pointer within the option) must be room for a whole address.
                if opt[2] as usize <= optlen && opt[2] as usize + 3 > optlen {
                    return Err(at(i + 2));
                }
                o.rr = at(i);
            }
            IPOPT_TIMESTAMP => {
                if o.ts != 0 {
                    return Err(at(i));
                }
                if optlen < 4 {
                    return Err(at(i + 1));
                }
                if opt[2] < 5 {
                    return Err(at(i + 2));
                }
                let (ptr, flags, overflow) = (opt[2] as usize, opt[3] & 0xf, opt[3] >> 4);
                if ptr <= optlen {
                    if ptr + 3 > optlen {
                        return Err(at(i + 2));
                    }
                    let entry = match flags {
                        IPOPT_TS_TSONLY => 4,
                        IPOPT_TS_TSANDADDR | IPOPT_TS_PRESPEC => 8,
                        // Unknown flags: Linux accepts them on receive.
                        _ => 4,
                    };
                    if ptr + entry - 1 > optlen {
                        return Err(at(i + 2));
                    }
                } else if flags != IPOPT_TS_PRESPEC && overflow == 15 {
                    // The full option's overflow counter cannot count one more hop.
                    return Err(at(i + 3));
                }
                o.ts = at(i);
            }
            IPOPT_RA => {
                if optlen < 4 {
                    return Err(at(i + 1));
                }
                if opt[2] == 0 && opt[3] == 0 {
                    o.router_alert = at(i);
                }
            }
            // Security, stream id, CIPSO and unknown options: skipped on receive.
            _ => {}
        }
        i += optlen;
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_lists() {
        assert_eq!(ip_options_compile(&[]), Ok(IpOptions::default()));
        assert_eq!(ip_options_compile(&[1, 1, 1, 0]), Ok(IpOptions::default()));
        // Garbage after END is padding.
        assert_eq!(ip_options_compile(&[0, 0x44, 0xff, 7]), Ok(IpOptions::default()));
        let rr = [IPOPT_RR, 7, 4, 0, 0, 0, 0, 0];
        assert_eq!(ip_options_compile(&rr).unwrap().rr, 20);
        // A full record route (pointer past the end) is valid.
        assert!(ip_options_compile(&[IPOPT_RR, 7, 8, 1, 2, 3, 4, 0]).is_ok());
        let ts = [IPOPT_TIMESTAMP, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(ip_options_compile(&ts).unwrap().ts, 20);
        let ra = [IPOPT_RA, 4, 0, 0];
        assert_eq!(ip_options_compile(&ra).unwrap().router_alert, 20);
        let lsrr = [1, IPOPT_LSRR, 7, 4, 10, 0, 0, 9];
        assert_eq!(ip_options_compile(&lsrr).unwrap().srr, 21);
        // Unknown options are skipped by their length.
        assert!(ip_options_compile(&[0x99, 3, 0, 0]).is_ok());
    }

    #[test]
    fn malformed_lists_point_at_the_bad_byte() {
        // Length 0 and 1, length past the end, a lone option type at the end.
        assert_eq!(ip_options_compile(&[IPOPT_RR, 0, 4, 0]), Err(20));
        assert_eq!(ip_options_compile(&[1, IPOPT_RR, 1, 0]), Err(21));
        assert_eq!(ip_options_compile(&[IPOPT_RR, 9, 4, 0]), Err(20));
        assert_eq!(ip_options_compile(&[1, 1, 1, 0x99]), Err(23));
        // Pointer below its minimum, or leaving less than an address.
        assert_eq!(ip_options_compile(&[IPOPT_RR, 7, 3, 0, 0, 0, 0, 0]), Err(22));
        assert_eq!(ip_options_compile(&[IPOPT_RR, 7, 6, 0, 0, 0, 0, 0]), Err(22));
        assert_eq!(ip_options_compile(&[IPOPT_TIMESTAMP, 4, 4, 0]), Err(22));
        assert_eq!(ip_options_compile(&[IPOPT_TIMESTAMP, 8, 5, 1, 0, 0, 0, 0]), Err(22));
        // Overflow counter exhausted.
        assert_eq!(ip_options_compile(&[IPOPT_TIMESTAMP, 8, 9, 0xf0, 0, 0, 0, 0]), Err(23));
        assert_eq!(ip_options_compile(&[IPOPT_RA, 3, 0, 0]), Err(21));
        // Two record routes.
        let two = [IPOPT_RR, 3, 4, IPOPT_RR, 3, 4, 0, 0];
        assert_eq!(ip_options_compile(&two), Err(23));
    }
}
