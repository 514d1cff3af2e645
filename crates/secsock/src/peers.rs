//! Which principals may connect to a listener, from which addresses: the listener side of
//! `WSASetSocketPeerTargetName` / `WSADeleteSocketPeerTargetName`.
//!
//! A listener holds bindings of a peer target name to an address prefix (or to every
//! address). For a connection from address A, the names that apply are those bound to a
//! prefix containing A. If none applies, any principal proven under the trust anchors may
//! connect (as when no name is set at all); otherwise the client must prove one of them.
//! Pure data and decisions; the listener enforces them in the handshake.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::name::PeerTargetName;

/// An IP address prefix (`192.0.2.0/24`, `2001:db8::/32`, `192.0.2.7` = `/32`), or every
/// address.
///
/// IPv4 and IPv6 live in one address space here, as on a dual-stack socket: the IPv4
/// address `a.b.c.d` is the IPv6 address `::ffff:a.b.c.d`. So `::/0` contains every IPv4
/// address too, and a prefix within `::ffff:0:0/96` is the IPv4 prefix it maps
/// (`::ffff:10.0.0.0/104` is `10.0.0.0/8`, and is shown and compared as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressPrefix {
    /// Every address, of both families.
    Any,
    /// The addresses whose first `len` bits equal those of `addr`.
    Prefix {
        /// The network address (bits beyond `len` are zero).
        addr: IpAddr,
        /// The prefix length.
        len: u8,
    },
}

impl AddressPrefix {
    /// The prefix `addr/len`; bits of `addr` beyond `len` are cleared, and a prefix within
    /// `::ffff:0:0/96` becomes the IPv4 prefix it maps. Errors if `len` exceeds the
    /// family's width.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, String> {
        let width = if addr.is_ipv4() { 32 } else { 128 };
        if len > width {
            return Err(format!(
                "prefix length /{len} is longer than {width} bits for {addr}"
            ));
        }
        let (addr, len) = match addr {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), len - 96),
                None => (addr, len),
            },
            _ => (addr, len),
        };
        Ok(AddressPrefix::Prefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// Whether `ip` is within the prefix, both taken in the one address space where the
    /// IPv4 address `a.b.c.d` is `::ffff:a.b.c.d` (so an IPv4 client of a dual-stack
    /// listener, seen as `::ffff:a.b.c.d`, matches IPv4 prefixes, and `::/0` contains it).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match *self {
            AddressPrefix::Any => true,
            AddressPrefix::Prefix { addr, len } => {
                let (network, bits) = as_ipv6(addr, len);
                let bits = u32::from(bits.min(128));
                let keep = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                as_ipv6(ip, 0).0 & keep == network & keep
            }
        }
    }
}

/// `addr/len` in the IPv6 address space: an IPv4 prefix is its IPv4-mapped IPv6 prefix.
fn as_ipv6(addr: IpAddr, len: u8) -> (u128, u8) {
    match addr {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), len.saturating_add(96)),
        IpAddr::V6(v6) => (u128::from(v6), len),
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if len == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(len)))
            };
            IpAddr::V4(kept.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = if len == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(len)))
            };
            IpAddr::V6(kept.into())
        }
    }
}

impl From<IpAddr> for AddressPrefix {
    /// The single address (an IPv4-mapped IPv6 address is its IPv4 address).
    fn from(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let len = if ip.is_ipv4() { 32 } else { 128 };
        AddressPrefix::Prefix { addr: ip, len }
    }
}

impl FromStr for AddressPrefix {
    type Err = String;

    /// `192.0.2.0/24`, `2001:db8::/32`, a single address, or `*` for any.
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(AddressPrefix::Any);
        }
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or prefix (e.g. 192.0.2.0/24)"))?;
        match len {
            None => Ok(addr.into()),
            Some(len) => {
                let len: u8 = len
                    .parse()
                    .map_err(|_| format!("`{text}`: `{len}` is not a prefix length"))?;
                AddressPrefix::new(addr, len)
            }
        }
    }
}

impl fmt::Display for AddressPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressPrefix::Any => f.write_str("*"),
            AddressPrefix::Prefix { addr, len } => write!(f, "{addr}/{len}"),
        }
    }
}

/// A listener's peer target names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerNames {
    bindings: Vec<(PeerTargetName, AddressPrefix)>,
}

impl PeerNames {
    /// No binding: any principal proven under the anchors may connect.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `name` to connect from `peers` (added to any names already allowed there).
    pub fn bind(&mut self, name: PeerTargetName, peers: AddressPrefix) {
        if !self.bindings.iter().any(|(n, p)| *n == name && *p == peers) {
            self.bindings.push((name, peers));
        }
    }

    /// Removes every name bound to exactly `peers`; returns how many were removed.
    pub fn delete(&mut self, peers: AddressPrefix) -> usize {
        let before = self.bindings.len();
        self.bindings.retain(|(_, p)| *p != peers);
        before - self.bindings.len()
    }

    /// The names that apply to a client at `ip`; empty means "any proven principal".
    pub fn applicable(&self, ip: IpAddr) -> Vec<PeerTargetName> {
        let mut names: Vec<PeerTargetName> = Vec::new();
        for (name, prefix) in &self.bindings {
            if prefix.contains(ip) && !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Whether no name is bound.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Every binding, in the order made.
    pub fn bindings(&self) -> &[(PeerTargetName, AddressPrefix)] {
        &self.bindings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn prefixes_parse_and_contain() {
        let cases: &[(&str, &str, bool)] = &[
            ("192.0.2.0/24", "192.0.2.200", true),
            ("192.0.2.0/24", "192.0.3.1", false),
            ("192.0.2.77/24", "192.0.2.1", true), // host bits are cleared
            ("127.0.0.2", "127.0.0.2", true),
            ("127.0.0.2", "127.0.0.1", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("0.0.0.0/0", "::ffff:203.0.113.9", true),
            // One address space: `::/0` holds the IPv4 addresses too, and a prefix inside
            // `::ffff:0:0/96` is the IPv4 prefix it maps (issue 12, item 10).
            ("::/0", "203.0.113.9", true),
            ("::/0", "2001:db8::1", true),
            ("::/96", "203.0.113.9", false),
            ("::ffff:0:0/96", "203.0.113.9", true),
            ("::ffff:10.0.0.0/104", "10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "11.1.2.3", false),
            ("::ffff:127.0.0.1", "127.0.0.1", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("[::1]", "::1", true),
            ("127.0.0.0/8", "::ffff:127.0.0.5", true), // dual-stack listener view
            ("*", "198.51.100.1", true),
            ("*", "::1", true),
        ];
        for (prefix, addr, expected) in cases {
            let p: AddressPrefix = prefix.parse().unwrap();
            assert_eq!(p.contains(ip(addr)), *expected, "{prefix} contains {addr}");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/x",
            "host.example.test",
        ] {
            assert!(bad.parse::<AddressPrefix>().is_err(), "{bad}");
        }
        assert_eq!(
            "192.0.2.77/24"
                .parse::<AddressPrefix>()
                .unwrap()
                .to_string(),
            "192.0.2.0/24"
        );
        // Normalized alike, so that deleting by either spelling finds the binding.
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<AddressPrefix>().unwrap(),
            "10.0.0.0/8".parse::<AddressPrefix>().unwrap()
        );
        assert_eq!(
            AddressPrefix::from(ip("::ffff:192.0.2.1")),
            "192.0.2.1".parse::<AddressPrefix>().unwrap()
        );
        // A prefix built by hand, unnormalized, still matches in the one address space.
        let raw = AddressPrefix::Prefix {
            addr: ip("::ffff:10.0.0.0"),
            len: 104,
        };
        assert!(raw.contains(ip("10.9.9.9")));
    }

    #[test]
    fn names_apply_only_to_their_addresses() {
        let alice = PeerTargetName::parse("host/alice.example.test").unwrap();
        let bob = PeerTargetName::parse("host/bob.example.test").unwrap();
        let mut names = PeerNames::new();
        assert!(
            names.applicable(ip("127.0.0.1")).is_empty(),
            "no binding: anyone proven"
        );
        names.bind(alice.clone(), "127.0.0.2".parse().unwrap());
        assert_eq!(
            names.applicable(ip("127.0.0.2")),
            std::slice::from_ref(&alice)
        );
        assert!(
            names.applicable(ip("127.0.0.1")).is_empty(),
            "another address is unrestricted"
        );
        names.bind(bob.clone(), AddressPrefix::Any);
        names.bind(bob.clone(), AddressPrefix::Any); // twice is once
        assert_eq!(
            names.applicable(ip("127.0.0.2")),
            [alice.clone(), bob.clone()]
        );
        assert_eq!(
            names.applicable(ip("127.0.0.1")),
            std::slice::from_ref(&bob)
        );
        assert_eq!(names.delete("127.0.0.2".parse().unwrap()), 1);
        assert_eq!(names.applicable(ip("127.0.0.2")), [bob]);
        assert_eq!(names.delete(AddressPrefix::Any), 1);
        assert!(names.is_empty());
    }
}
