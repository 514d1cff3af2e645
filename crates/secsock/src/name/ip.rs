//! IP address principals: the bracketed forms a target may use (`[2001:db8::1]`) and the
//! octets of an iPAddress SAN. An IP target is proven only by an IP SAN, byte for byte.
//!
//! Not here: the address as an SPN's host (`host/192.0.2.1`, [`super::spn`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::shown;

/// A bracketed address as a whole target, `[2001:db8::1]` (`inside` follows the `[`).
pub(super) fn parse_bracketed_ip(text: &str, inside: &str) -> Result<IpAddr, String> {
    let Some((address, tail)) = inside.split_once(']') else {
        return Err(format!("`[` in `{}` has no closing `]`", shown(text)));
    };
    let ip = parse_ipv6_in_brackets(address)?;
    if tail.starts_with(':') {
        return Err(format!(
            "a port is only allowed in an SPN, e.g. `host/[{ip}]{}`",
            shown(tail)
        ));
    }
    if !tail.is_empty() {
        return Err(format!("unexpected `{}` after `]`", shown(tail)));
    }
    Ok(IpAddr::V6(ip))
}

pub(super) fn parse_ipv6_in_brackets(address: &str) -> Result<Ipv6Addr, String> {
    address.parse::<Ipv6Addr>().map_err(|_| {
        if address.parse::<Ipv4Addr>().is_ok() {
            format!(
                "brackets are only for IPv6 addresses; write `{}` without them",
                shown(address)
            )
        } else {
            format!("`[{}]` is not an IPv6 address", shown(address))
        }
    })
}

pub(super) fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(octets).ok().map(IpAddr::from)
    }
}

#[cfg(test)]
mod tests {
    use crate::name::tests::*;

    #[test]
    fn ip_sans_match_byte_for_byte() {
        let cert = certificate(
            vec![
                ip("192.0.2.1"),
                ip("2001:db8::1"),
                ip("::ffff:198.51.100.9"),
            ],
            None,
        );
        check_matches(
            "IP SANs",
            &cert,
            &[
                ("192.0.2.1", true),
                ("host/192.0.2.1:443", true),
                ("2001:db8::1", true),
                ("[2001:DB8::1]", true),
                ("host/[2001:db8::1]", true),
                ("::ffff:192.0.2.1", false),
                ("192.0.2.2", false),
                ("2001:db8::2", false),
                ("::ffff:198.51.100.9", true),
                ("198.51.100.9", false),
                ("raw:192.0.2.1", true),
                ("raw:2001:db8::1", true),
                ("raw:2001:DB8::1", false),
            ],
        );
    }
}
