//! The name constraints of a validated certification path, for the names secsock reads
//! across forms.
//!
//! A CA certificate's name constraints (RFC 5280 §4.2.1.10) limit the names the certificates
//! below it may carry, form by form: a `dNSName` subtree limits DNS names, an `iPAddress`
//! subtree IP addresses, an `rfc822Name` subtree mailboxes. webpki enforces them for the
//! names it knows, each against subtrees of its own form. secsock also reads names *across*
//! forms: a Kerberos principal-name SAN `host/db.example.test@REALM` proves the DNS name
//! `db.example.test`, a UPN SAN or a single-component Kerberos SAN proves a user (a
//! mailbox-like `name@domain`), and a raw target name may match the subject CN. webpki does
//! not look at those through the form they stand for, so a sub-CA constrained to
//! `DNS:.dept.example.test` could vouch for `db.example.test` through a Kerberos SAN.
//!
//! [`PathConstraints`] collects the constraints of every CA on the path that validated a
//! certificate (the trust anchor's included), and answers whether a name read across forms
//! satisfies the constraints of the form it stands for. [`CertificateNames::within`]
//! (crate::name::CertificateNames::within) drops the names that do not.
//!
//! Pure code: no I/O, no panics on any input.

use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, NameConstraints};

/// The constraints of every constrained CA on one path, from the anchor down. Empty: the
/// path constrains nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathConstraints {
    levels: Vec<Level>,
}

/// A path without name constraints.
pub(crate) static UNCONSTRAINED: PathConstraints = PathConstraints { levels: Vec::new() };

/// One CA's name constraints, in the forms secsock reads across.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Level {
    permitted: Vec<Subtree>,
    excluded: Vec<Subtree>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subtree {
    /// A `dNSName` subtree, lowercase, trailing dot dropped: `example.test` (the name and
    /// every name below it), `.example.test` (only names below it), empty (every name).
    Dns(String),
    /// An `iPAddress` subtree: address and mask, 4 + 4 or 16 + 16 bytes.
    Ip(Vec<u8>),
    /// An `rfc822Name` subtree: a mailbox (`alice@example.test`), a host (`example.test`)
    /// or a domain (`.example.test`).
    Mailbox(String),
    /// Another form (URI, directory name, otherName...): webpki handles it or refuses the
    /// chain; nothing read across forms stands for one.
    Other,
}

/// The form a name read across forms stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Dns,
    Ip,
    Mailbox,
}

impl Subtree {
    fn form(&self) -> Option<Form> {
        match self {
            Subtree::Dns(_) => Some(Form::Dns),
            Subtree::Ip(_) => Some(Form::Ip),
            Subtree::Mailbox(_) => Some(Form::Mailbox),
            Subtree::Other => None,
        }
    }

    fn from_general_name(name: &GeneralName<'_>) -> Subtree {
        match name {
            GeneralName::DNSName(dns) => Subtree::Dns(normalized_domain(dns)),
            GeneralName::IPAddress(bytes) if bytes.len() == 8 || bytes.len() == 32 => {
                Subtree::Ip(bytes.to_vec())
            }
            GeneralName::RFC822Name(mailbox) => Subtree::Mailbox(normalized_mailbox(mailbox)),
            _ => Subtree::Other,
        }
    }
}

impl PathConstraints {
    /// Adds the constraints of one CA certificate of the path (none: no change).
    ///
    /// # Errors
    ///
    /// When the certificate's name constraints extension cannot be read: then nothing
    /// read across forms can be trusted under it, and the caller refuses the path.
    pub(crate) fn add_certificate(&mut self, cert: &X509Certificate<'_>) -> Result<(), String> {
        match cert.name_constraints() {
            Ok(Some(extension)) => {
                self.add(extension.value);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(format!(
                "the name constraints of `{}` cannot be read: {e}",
                cert.subject()
            )),
        }
    }

    /// Adds the constraints of one CA certificate given as DER.
    pub(crate) fn add_certificate_der(&mut self, der: &[u8]) -> Result<(), String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("a CA certificate of the path cannot be parsed: {e}"))?;
        self.add_certificate(&cert)
    }

    fn add(&mut self, constraints: &NameConstraints<'_>) {
        let subtrees = |list: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
            list.iter()
                .flatten()
                .map(|subtree| Subtree::from_general_name(&subtree.base))
                .collect::<Vec<_>>()
        };
        let level = Level {
            permitted: subtrees(&constraints.permitted_subtrees),
            excluded: subtrees(&constraints.excluded_subtrees),
        };
        if !(level.permitted.is_empty() && level.excluded.is_empty()) {
            self.levels.push(level);
        }
    }

    /// Whether no CA of the path has name constraints.
    pub(crate) fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Whether some CA of the path constrains DNS names.
    pub(crate) fn constrains_dns(&self) -> bool {
        self.levels.iter().any(|level| {
            level
                .permitted
                .iter()
                .chain(&level.excluded)
                .any(|s| s.form() == Some(Form::Dns))
        })
    }

    /// Whether the DNS name `host` (ASCII, any case) satisfies every DNS constraint of the
    /// path.
    pub(crate) fn allows_dns(&self, host: &str) -> bool {
        let host = normalized_domain(host);
        self.allows(Form::Dns, |subtree| match subtree {
            Subtree::Dns(base) => dns_within(&host, base),
            _ => false,
        })
    }

    /// Whether `ip` satisfies every IP address constraint of the path. An IPv4 address
    /// is compared with IPv4 subtrees, an IPv6 address with IPv6 subtrees (RFC 5280).
    pub(crate) fn allows_ip(&self, ip: IpAddr) -> bool {
        let octets = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        self.allows(Form::Ip, |subtree| match subtree {
            Subtree::Ip(bytes) if bytes.len() == 2 * octets.len() => {
                let (address, mask) = bytes.split_at(octets.len());
                octets
                    .iter()
                    .zip(address)
                    .zip(mask)
                    .all(|((o, a), m)| o & m == a & m)
            }
            _ => false,
        })
    }

    /// Whether the mailbox `local@domain` satisfies every rfc822Name constraint of the
    /// path. A user principal read from a UPN or Kerberos SAN stands for such a mailbox.
    pub(crate) fn allows_mailbox(&self, local: &str, domain: &str) -> bool {
        let domain = normalized_domain(domain);
        let mailbox = format!("{local}@{domain}");
        self.allows(Form::Mailbox, |subtree| match subtree {
            Subtree::Mailbox(base) if base.contains('@') => *base == mailbox,
            Subtree::Mailbox(base) => match base.strip_prefix('.') {
                Some(_) => domain.ends_with(base.as_str()),
                None => domain == *base,
            },
            _ => false,
        })
    }

    /// RFC 5280: at each level, a name of a form with permitted subtrees must lie in one of
    /// them, and it must lie in none of the excluded ones.
    fn allows(&self, form: Form, within: impl Fn(&Subtree) -> bool) -> bool {
        self.levels.iter().all(|level| {
            let of_form = |s: &&Subtree| s.form() == Some(form);
            let permitted: Vec<&Subtree> = level.permitted.iter().filter(of_form).collect();
            let in_permitted = permitted.is_empty() || permitted.iter().any(|s| within(s));
            let in_excluded = level.excluded.iter().filter(of_form).any(&within);
            in_permitted && !in_excluded
        })
    }
}

/// A mailbox or host constraint with its domain part normalized; the local part keeps its
/// case (RFC 5280 compares it exactly).
fn normalized_mailbox(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", normalized_domain(domain)),
        None => normalized_domain(text),
    }
}

/// Lowercase, one trailing dot dropped.
fn normalized_domain(text: &str) -> String {
    let text = text.strip_suffix('.').unwrap_or(text);
    text.to_ascii_lowercase()
}

/// webpki's (and mozilla::pkix's) DNS name constraint match: an empty base matches every
/// name; `example.test` matches itself and every name below it; `.example.test` only
/// the names below it. Both sides lowercase.
fn dns_within(host: &str, base: &str) -> bool {
    if base.is_empty() {
        return true;
    }
    if base.starts_with('.') {
        return host.len() > base.len() && host.ends_with(base);
    }
    host == base
        || host
            .strip_suffix(base)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(permitted: Vec<Subtree>, excluded: Vec<Subtree>) -> PathConstraints {
        PathConstraints {
            levels: vec![Level {
                permitted,
                excluded,
            }],
        }
    }

    #[test]
    fn dns_constraints_follow_webpki() {
        let dept = level(vec![Subtree::Dns(".dept.example.test".into())], vec![]);
        let cases = [
            ("db.dept.example.test", true),
            ("a.b.dept.example.test", true),
            ("DB.Dept.Example.Test.", true),
            ("dept.example.test", false),
            ("db.example.test", false),
            ("xdept.example.test", false),
        ];
        for (host, expected) in cases {
            assert_eq!(dept.allows_dns(host), expected, "{host}");
        }
        let example = level(vec![Subtree::Dns("example.test".into())], vec![]);
        assert!(example.allows_dns("example.test"));
        assert!(example.allows_dns("db.example.test"));
        assert!(!example.allows_dns("badexample.test"));
        let excluded = level(vec![], vec![Subtree::Dns("secret.example.test".into())]);
        assert!(excluded.allows_dns("db.example.test"));
        assert!(!excluded.allows_dns("db.secret.example.test"));
        assert!(!excluded.allows_dns("secret.example.test"));
        let everything = level(vec![Subtree::Dns(String::new())], vec![]);
        assert!(everything.allows_dns("any.test"));
        // Constraints of other forms do not constrain DNS names.
        let ip_only = level(vec![Subtree::Ip(vec![10, 0, 0, 0, 255, 0, 0, 0])], vec![]);
        assert!(ip_only.allows_dns("db.example.test"));
        assert!(!ip_only.constrains_dns());
        assert!(dept.constrains_dns());
        // Every level must allow the name.
        let two = PathConstraints {
            levels: vec![
                Level {
                    permitted: vec![Subtree::Dns("example.test".into())],
                    excluded: vec![],
                },
                Level {
                    permitted: vec![Subtree::Dns("dept.example.test".into())],
                    excluded: vec![],
                },
            ],
        };
        assert!(two.allows_dns("db.dept.example.test"));
        assert!(!two.allows_dns("db.example.test"));
        assert!(PathConstraints::default().allows_dns("anything.test"));
    }

    #[test]
    fn ip_constraints_compare_within_their_family() {
        let ten = level(vec![Subtree::Ip(vec![10, 0, 0, 0, 255, 0, 0, 0])], vec![]);
        assert!(ten.allows_ip("10.1.2.3".parse().unwrap()));
        assert!(!ten.allows_ip("192.0.2.1".parse().unwrap()));
        // An IPv6 address meets only IPv6 subtrees, and none is permitted here.
        assert!(!ten.allows_ip("2001:db8::1".parse().unwrap()));
        let mut v6 = vec![0x20, 0x01, 0x0d, 0xb8];
        v6.extend([0; 12]);
        v6.extend([0xff; 4]);
        v6.extend([0; 12]);
        let doc = level(vec![], vec![Subtree::Ip(v6)]);
        assert!(!doc.allows_ip("2001:db8::1".parse().unwrap()));
        assert!(doc.allows_ip("2001:db9::1".parse().unwrap()));
        assert!(doc.allows_ip("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn mailbox_constraints_take_mailboxes_hosts_and_domains() {
        let host = level(vec![Subtree::Mailbox("example.test".into())], vec![]);
        assert!(host.allows_mailbox("alice", "EXAMPLE.TEST"));
        assert!(!host.allows_mailbox("alice", "sub.example.test"));
        let domain = level(vec![Subtree::Mailbox(".example.test".into())], vec![]);
        assert!(domain.allows_mailbox("alice", "sub.example.test"));
        assert!(!domain.allows_mailbox("alice", "example.test"));
        let one = level(vec![Subtree::Mailbox("alice@example.test".into())], vec![]);
        assert!(one.allows_mailbox("alice", "Example.Test"));
        assert!(
            !one.allows_mailbox("Alice", "example.test"),
            "the local part is exact"
        );
        assert!(!one.allows_mailbox("bob", "example.test"));
        let dns_only = level(vec![Subtree::Dns(".dept.example.test".into())], vec![]);
        assert!(dns_only.allows_mailbox("alice", "EXAMPLE.TEST"));
    }
}
