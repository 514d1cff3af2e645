//! DNS names ([`DnsName`]): a target's name mapped to A-labels by IDNA (UTS-46), a
//! certificate's dNSName read as the ASCII it must be, the label rules both obey, and
//! RFC 6125 matching of a name against a DNS SAN (wildcards only as the whole left-most
//! label).
//!
//! Not here: where a DNS name appears (an SPN's host, a whole target) and the certificate
//! itself ([`super::certificate`]).

use std::fmt;

use super::{code_point, shown, Origin};

/// Longest DNS name, in octets, without the trailing dot (RFC 1035).
pub(super) const MAX_DNS_NAME_LEN: usize = 253;
/// Longest DNS label, in octets (RFC 1035).
pub(super) const MAX_LABEL_LEN: usize = 63;

/// A DNS name in canonical form: lowercase, A-labels (punycode) for internationalized
/// labels, no trailing dot.
///
/// A name parsed from a target is never a wildcard. A name taken from a certificate's DNS
/// SAN (see [`CertificateNames::proven`](super::CertificateNames::proven)) may be a wildcard pattern such as
/// `*.example.test`; [`DnsName::is_wildcard`] tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsName(pub(super) String);

impl DnsName {
    /// The name as text, in canonical form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a certificate's wildcard pattern (`*.example.test`).
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// Parses a DNS name given as (part of) a target name: wildcards are refused.
    pub(super) fn parse_target(text: &str) -> Result<DnsName, String> {
        canonical_dns_name(text).map(DnsName)
    }

    /// Parses a DNS name as `origin` allows: IDNA for a target, ASCII only for a name
    /// read from a certificate.
    pub(super) fn parse(text: &str, origin: Origin) -> Result<DnsName, String> {
        match origin {
            Origin::Target => DnsName::parse_target(text),
            Origin::Certificate => certificate_dns_name(text).map(DnsName),
        }
    }

    /// Canonicalizes a certificate's DNS SAN, keeping a wildcard pattern that RFC 6125
    /// allows (`*` as the whole left-most label, at least two labels after it). Returns
    /// `None` for a SAN that can match nothing. A dNSName is an IA5String: a SAN with a
    /// character beyond ASCII matches nothing (it is never mapped to ASCII the way a
    /// target name is: `ex\u{AD}ample.test` must not prove `example.test`).
    pub(crate) fn from_certificate_san(san: &str) -> Option<DnsName> {
        let san = san.strip_suffix('.').unwrap_or(san);
        match san.strip_prefix("*.") {
            Some(suffix) => {
                let suffix = certificate_dns_name(suffix).ok()?;
                // `*.test` would match a whole top-level domain.
                if !suffix.contains('.') {
                    return None;
                }
                Some(DnsName(format!("*.{suffix}")))
            }
            None => certificate_dns_name(san).ok().map(DnsName),
        }
    }

    /// Whether the certificate DNS SAN `san` covers this name (RFC 6125).
    pub(super) fn matches_san(&self, san: &str) -> bool {
        let Some(san) = DnsName::from_certificate_san(san) else {
            return false;
        };
        match san.0.strip_prefix("*.") {
            // A wildcard target (only ever taken from a certificate) matches only itself.
            Some(_) if self.is_wildcard() => self.0 == san.0,
            // The `*` stands for exactly one non-empty label.
            Some(suffix) => self
                .0
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
            None => self.0 == san.0,
        }
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Canonicalizes a DNS name: one trailing dot dropped, IDNA (UTS-46) to A-labels,
/// lowercase, and then checked label by label. Refuses wildcards.
pub(super) fn canonical_dns_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err("DNS name is empty".to_string());
    }
    if name.contains('*') {
        return Err("wildcards are not allowed in a target name".to_string());
    }
    // ASCII that no DNS label may hold is reported in the label as written, before IDNA
    // turns the label into punycode; IDNA itself judges the non-ASCII characters.
    for label in name.split('.') {
        if let Some(c) = label
            .chars()
            .find(|c| c.is_ascii() && !is_label_character(*c))
        {
            return Err(invalid_label_character(label, c));
        }
    }
    let has_a_label = name.split('.').any(|label| {
        label
            .as_bytes()
            .get(..4)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"xn--"))
    });
    let ascii = if name.is_ascii() && !has_a_label {
        name.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_cow(name.as_bytes(), idna::AsciiDenyList::EMPTY)
            .map_err(|_| idna_reason(name))?
            .into_owned()
    };
    check_ascii_dns_name(ascii, text)
}

/// Canonicalizes a DNS name read from a certificate (a dNSName SAN, the host of a
/// Kerberos principal-name SAN): one trailing dot dropped, lowercase, checked label by
/// label. A dNSName is an IA5String (RFC 5280 §4.2.1.6), so only ASCII is accepted and it
/// is compared as such; IDNA applies only to the target name an application gives.
/// Refuses wildcards (the caller handles a wildcard's left-most label).
pub(super) fn certificate_dns_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err("DNS name is empty".to_string());
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "`{}` contains {} beyond ASCII; a certificate's DNS names are IA5Strings",
            shown(text),
            code_point(c)
        ));
    }
    if name.contains('*') {
        return Err("a wildcard is only allowed as the whole left-most label".to_string());
    }
    check_ascii_dns_name(name.to_ascii_lowercase(), text)
}

/// The checks every canonical DNS name passes: length, labels, not all-numeric at the end.
pub(super) fn check_ascii_dns_name(ascii: String, text: &str) -> Result<String, String> {
    if ascii.len() > MAX_DNS_NAME_LEN {
        return Err(format!(
            "DNS name is {} characters long, more than the {MAX_DNS_NAME_LEN} allowed",
            ascii.len()
        ));
    }
    for label in ascii.split('.') {
        check_label(label)?;
    }
    if ascii
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "`{}` is not a valid IP address, and a DNS name cannot end in an all-numeric label",
            shown(text)
        ));
    }
    Ok(ascii)
}

pub(super) fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(
            "DNS name has an empty label (two dots in a row, or a leading dot)".to_string(),
        );
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label `{}` is {} characters long, more than the {MAX_LABEL_LEN} allowed",
            shown(label),
            label.len()
        ));
    }
    // After IDNA, a label is lowercase ASCII (mappings may still have produced a `*`).
    if let Some(c) = label
        .chars()
        .find(|c| !is_label_character(*c) || c.is_ascii_uppercase())
    {
        return Err(invalid_label_character(label, c));
    }
    if label.starts_with('-') {
        return Err(format!("label `{}` starts with a hyphen", shown(label)));
    }
    if label.ends_with('-') {
        return Err(format!("label `{}` ends with a hyphen", shown(label)));
    }
    Ok(())
}

pub(super) fn is_label_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}

pub(super) fn invalid_label_character(label: &str, c: char) -> String {
    format!(
        "label `{}` contains {c:?}; only letters, digits, `-` and `_` are allowed",
        shown(label)
    )
}

/// Names the label IDNA refused, if it refuses one on its own.
pub(super) fn idna_reason(name: &str) -> String {
    let refused = name.split('.').find(|label| {
        idna::domain_to_ascii_cow(label.as_bytes(), idna::AsciiDenyList::EMPTY).is_err()
    });
    match refused {
        Some(label) => format!(
            "label `{}` is not a valid internationalized label (IDNA refuses it: bad punycode or \
             disallowed characters)",
            shown(label)
        ),
        None => format!(
            "`{}` is not a valid internationalized domain name (IDNA refuses it)",
            shown(name)
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::name::tests::*;
    use crate::name::*;

    #[test]
    fn dns_sans_match_by_rfc_6125() {
        let cert = certificate(
            vec![
                dns("*.example.test"),
                dns("Exact.Example.ORG."),
                dns("*.test"),
                dns("f*.wild.test"),
                dns("*x.wild2.test"),
                dns("a.*.example.net"),
                dns("*.*.example.com"),
                dns("*"),
            ],
            Some("cn.example.com"),
        );
        check_matches(
            "DNS SANs",
            &cert,
            &[
                ("a.example.test", true),
                ("A.Example.Test.", true),
                ("host/a.example.test", true),
                ("http/a.example.test:8080/api@EXAMPLE.TEST", true),
                ("a.b.example.test", false),
                ("example.test", false),
                ("x.test", false),
                ("foo.wild.test", false),
                ("f.wild.test", false),
                ("ax.wild2.test", false),
                ("a.b.example.net", false),
                ("a.b.example.com", false),
                ("exact.example.org", true),
                ("EXACT.example.org.", true),
                ("host/Exact.Example.Org", true),
                ("other.example.org", false),
                // The subject CN is not a DNS identity (RFC 6125: SANs only).
                ("cn.example.com", false),
                ("raw:cn.example.com", true),
                ("192.0.2.1", false),
            ],
        );
    }

    #[test]
    fn internationalized_targets_match_a_label_sans() {
        let cert = CertificateNames {
            dns: vec![
                "XN--bcher-kva.example".into(),
                "*.xn--bcher-kva.test".into(),
            ],
            ..Default::default()
        };
        check_matches(
            "A-label SANs",
            &cert,
            &[
                ("xn--bcher-kva.example", true),
                ("bücher.example", true),
                ("BÜCHER.example", true),
                ("a.xn--bcher-kva.test", true),
                ("a.bücher.test", true),
                ("a.b.xn--bcher-kva.test", false),
                ("raw:XN--bcher-kva.example", true),
                ("raw:bücher.example", false),
            ],
        );
        assert_eq!(
            cert.proven()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["xn--bcher-kva.example", "*.xn--bcher-kva.test"]
        );
    }

    /// Attack (issue 12, item 2): UTS-46 mapping applied to a certificate's name would let
    /// `ex\u{AD}ample.test` (soft hyphen, mapped to nothing) or full-width letters prove
    /// `example.test`. A dNSName is an IA5String: a SAN beyond ASCII proves nothing; only
    /// the application's target name is mapped.
    #[test]
    fn unicode_in_certificate_dns_names_proves_nothing() {
        let sans = [
            "ex\u{AD}ample.test",
            "\u{FF45}\u{FF58}ample.test",
            "EXAMPLE\u{3002}test",
            "*.ex\u{AD}ample.test",
            "bücher.example",
        ];
        let cert = CertificateNames {
            dns: sans.iter().map(|s| s.to_string()).collect(),
            kerberos: vec![KerberosPrincipal {
                realm: "EXAMPLE.TEST".into(),
                components: vec!["host".into(), "ex\u{AD}ample.test".into()],
            }],
            ..Default::default()
        };
        check_matches(
            "non-ASCII SANs",
            &cert,
            &[
                ("example.test", false),
                ("host/example.test", false),
                ("www.example.test", false),
                ("xn--bcher-kva.example", false),
                ("bücher.example", false),
                ("host/example.test@EXAMPLE.TEST", false),
            ],
        );
        assert!(cert.proven().is_empty(), "{:?}", cert.proven());
        // The target side is mapped: a soft hyphen in the application's name is dropped.
        assert_eq!(
            PrincipalName::parse("ex\u{AD}ample.test")
                .unwrap()
                .to_string(),
            "example.test"
        );
        // The same names written in ASCII do prove it.
        let ascii = CertificateNames {
            dns: vec!["example.test".into()],
            ..Default::default()
        };
        check_matches("ASCII SAN", &ascii, &[("ex\u{AD}ample.test", true)]);
    }
}
