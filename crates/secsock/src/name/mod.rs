//! Principal names: parsing, display and comparison, and deciding whether a certificate
//! proves a name.
//!
//! A peer target name (`WSASetSocketPeerTargetName`) is the principal the peer must
//! prove. This module turns the text a caller gives into a [`PrincipalName`] in canonical
//! form (an SPN, a DNS name, an IP address, a SPIFFE ID or a user principal), keeps
//! `IPSEC_PEER_NAME_IS_RAW_FORMAT` names as-is ([`PeerTargetName::raw`]), collects every
//! name a leaf certificate presents ([`CertificateNames`]) and decides whether those names
//! prove the target ([`PeerTargetName::is_proven_by`]).
//!
//! What it is not: it does no chain validation (a certificate's names mean nothing until
//! [`verify`](crate::verify) has checked its chain against the trust anchors) and no I/O.
//! Everything here is pure code, and no input, however malformed, makes it panic.
//!
//! Matching follows RFC 6125 for DNS names (SANs only, never the subject CN; a wildcard
//! only as the whole left-most label), the SPIFFE X509-SVID rules for SPIFFE IDs (exactly
//! one URI SAN), and RFC 4556 for Kerberos principal name SANs.
//!
//! One file per kind of principal: `spn` ([`Spn`], its [`Host`] and port), `dns`
//! ([`DnsName`]), `ip`, `spiffe` ([`SpiffeId`]) and `user` ([`UserPrincipal`]); then
//! `target` ([`PeerTargetName`]), `certificate` (what a certificate presents and proves:
//! [`CertificateNames`]), `san` (the SAN values secsock encodes and decodes itself:
//! [`SubjectAltName`], [`KerberosPrincipal`], the UPN) and `constraints` (a validated
//! path's name constraints). This file holds [`PrincipalName`], which of them a text is,
//! and [`NameError`].

mod certificate;
pub(crate) mod constraints;
mod dns;
mod ip;
mod san;
mod spiffe;
mod spn;
mod target;
mod user;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ip::parse_bracketed_ip;

pub use certificate::CertificateNames;
pub use dns::DnsName;
pub use san::{KerberosPrincipal, SubjectAltName};
pub use spiffe::SpiffeId;
pub use spn::{Host, Spn};
pub use target::PeerTargetName;
pub use user::UserPrincipal;

/// How much of a rejected input an error message repeats.
const MAX_SHOWN_INPUT: usize = 256;
/// How much of a rejected part an error reason repeats.
const MAX_SHOWN_PART: usize = 80;

/// A principal a peer can be asked to prove, in canonical form.
///
/// ```
/// use secsock::name::PrincipalName;
///
/// let name = PrincipalName::parse("HOST/Server.Example.TEST:8443")?;
/// assert_eq!(name.kind(), "SPN");
/// assert_eq!(name.to_string(), "host/server.example.test:8443");
///
/// let error = PrincipalName::parse("host/server:99999").unwrap_err();
/// assert_eq!(error.reason(), "port `99999` is out of range 1-65535");
/// # Ok::<(), secsock::name::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PrincipalName {
    /// A service principal name, `service/host[:port][/service-name][@REALM]`.
    Spn(Spn),
    /// A DNS name, `server.example.test`: shorthand for `host/server.example.test`.
    Dns(DnsName),
    /// An IP address, proven by an IP address SAN.
    Ip(IpAddr),
    /// A SPIFFE ID, `spiffe://trust-domain/path`.
    Spiffe(SpiffeId),
    /// A user principal, `user:alice@EXAMPLE.TEST` (an application identity).
    User(UserPrincipal),
}

impl PrincipalName {
    /// Parses a principal name, rejecting anything that is not exactly one of the forms.
    ///
    /// In order: `user:NAME@DOMAIN` is a user principal, `spiffe://...` a SPIFFE ID, text
    /// with a `/` an SPN, an IPv4 or IPv6 address (brackets allowed) an IP address, and
    /// anything else a DNS name. Whitespace around the name is an error, not trimmed.
    ///
    /// # Errors
    ///
    /// A [`NameError`] saying which part of `text` is wrong and why.
    pub fn parse(text: &str) -> Result<PrincipalName, NameError> {
        parse_principal(text).map_err(|reason| NameError::principal(text, reason))
    }

    /// What kind of name this is, for messages: `"SPN"`, `"DNS name"`, `"IP address"`,
    /// `"SPIFFE ID"` or `"user principal"`.
    pub fn kind(&self) -> &'static str {
        match self {
            PrincipalName::Spn(_) => "SPN",
            PrincipalName::Dns(_) => "DNS name",
            PrincipalName::Ip(_) => "IP address",
            PrincipalName::Spiffe(_) => "SPIFFE ID",
            PrincipalName::User(_) => "user principal",
        }
    }

    /// Whether a certificate presenting `cert` proves this name. The certificate's chain
    /// must have been validated separately.
    pub fn is_proven_by(&self, cert: &CertificateNames) -> bool {
        cert.proves(self)
    }
}

/// Where a name comes from, which decides how a DNS name in it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Given by the application: IDNA maps internationalized names to A-labels.
    Target,
    /// Read from a certificate: ASCII only, compared as such.
    Certificate,
}

impl fmt::Display for PrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrincipalName::Spn(spn) => spn.fmt(f),
            PrincipalName::Dns(name) => name.fmt(f),
            PrincipalName::Ip(ip) => ip.fmt(f),
            PrincipalName::Spiffe(id) => id.fmt(f),
            PrincipalName::User(user) => user.fmt(f),
        }
    }
}

impl FromStr for PrincipalName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PrincipalName::parse(text)
    }
}

/// A principal name (or certificate) that cannot be used, with the reason.
///
/// Displays as ``invalid principal name `INPUT`: REASON``; the reason says which part
/// was wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct NameError {
    input: String,
    reason: String,
    subject: ErrorSubject,
}

/// What a [`NameError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorSubject {
    PrincipalName,
    Certificate,
}

impl NameError {
    fn principal(input: &str, reason: impl Into<String>) -> NameError {
        NameError {
            input: input.to_string(),
            reason: reason.into(),
            subject: ErrorSubject::PrincipalName,
        }
    }

    fn certificate(der_len: usize, reason: String) -> NameError {
        NameError {
            input: format!("{der_len} bytes of DER"),
            reason,
            subject: ErrorSubject::Certificate,
        }
    }

    /// The text that was refused, as given (for a certificate, its size).
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was refused: which part was wrong and why.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn describe(&self) -> String {
        match self.subject {
            ErrorSubject::PrincipalName => format!(
                "invalid principal name `{}`: {}",
                escape_controls(&self.input, MAX_SHOWN_INPUT),
                self.reason
            ),
            ErrorSubject::Certificate => {
                format!("invalid certificate ({}): {}", self.input, self.reason)
            }
        }
    }
}

fn parse_principal(text: &str) -> Result<PrincipalName, String> {
    if text.is_empty() {
        return Err("name is empty".to_string());
    }
    if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        return Err("name has leading or trailing whitespace".to_string());
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(control_character_reason(c));
    }
    if let Some(rest) = strip_prefix_ignore_case(text, "user:") {
        return UserPrincipal::parse(rest).map(PrincipalName::User);
    }
    if strip_prefix_ignore_case(text, "spiffe://").is_some() {
        return SpiffeId::parse(text, false).map(PrincipalName::Spiffe);
    }
    if let Some((scheme, _)) = text.split_once("://") {
        if is_uri_scheme(scheme) {
            return Err(format!(
                "`{}:` URIs are not principal names; use a SPIFFE ID \
                 (`spiffe://trust-domain/path`) \
                 or a raw name",
                shown(scheme)
            ));
        }
    }
    if text.contains('/') {
        return Spn::parse(text).map(PrincipalName::Spn);
    }
    if let Some(inside) = text.strip_prefix('[') {
        return parse_bracketed_ip(text, inside).map(PrincipalName::Ip);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(PrincipalName::Ip(ip));
    }
    if text.contains(':') {
        return Err(format!(
            "`{}` is not an IP address, and `:` is not allowed in a DNS name \
             (a port belongs in an SPN, e.g. `host/server.example.test:443`)",
            shown(text)
        ));
    }
    DnsName::parse_target(text).map(PrincipalName::Dns)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_uri_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn control_character_reason(c: char) -> String {
    format!("name contains a control character ({})", code_point(c))
}

fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// A part of the input as an error reason repeats it: control characters escaped, long
/// parts cut short.
fn shown(text: &str) -> String {
    escape_controls(text, MAX_SHOWN_PART)
}

fn escape_controls(text: &str, limit: usize) -> String {
    let mut out = String::new();
    for (index, c) in text.chars().enumerate() {
        if index == limit {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
