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

pub(crate) mod constraints;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use constraints::PathConstraints;

/// Longest DNS name, in octets, without the trailing dot (RFC 1035).
const MAX_DNS_NAME_LEN: usize = 253;
/// Longest DNS label, in octets (RFC 1035).
const MAX_LABEL_LEN: usize = 63;
/// Longest SPIFFE ID, in bytes (SPIFFE ID specification).
const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Longest SPIFFE trust domain, in bytes (SPIFFE ID specification).
const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// How much of a rejected input an error message repeats.
const MAX_SHOWN_INPUT: usize = 256;
/// How much of a rejected part an error reason repeats.
const MAX_SHOWN_PART: usize = 80;

/// Content octets of the UPN otherName OID, 1.3.6.1.4.1.311.20.2.3 (Microsoft).
const OID_UPN: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03];
/// Content octets of id-pkinit-san, 1.3.6.1.5.2.2 (RFC 4556).
const OID_KRB5_PRINCIPAL_NAME: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x02, 0x02];

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
        match self {
            PrincipalName::Spn(spn) => spn.is_proven_by(cert),
            PrincipalName::Dns(name) => {
                // `server.example.test` means `host/server.example.test`.
                cert.dns.iter().any(|san| name.matches_san(san))
                    || (!name.is_wildcard()
                        && cert
                            .kerberos
                            .iter()
                            .filter_map(Spn::from_kerberos)
                            .any(|spn| {
                                spn.service_class == "host"
                                    && matches!(&spn.host, Host::Dns(host) if host == name)
                                    && spn.port.is_none()
                                    && spn.service_name.is_none()
                            }))
            }
            PrincipalName::Ip(ip) => cert.ips.contains(ip),
            PrincipalName::Spiffe(id) => id.is_proven_by(cert),
            PrincipalName::User(user) => user.is_proven_by(cert),
        }
    }
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

/// A service principal name, `service/host[:port][/service-name][@REALM]`.
///
/// The service class is compared case-insensitively and kept in lowercase; the host is a
/// canonical DNS name or an IP address; the service name and the realm keep their case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spn {
    service_class: String,
    host: Host,
    port: Option<u16>,
    service_name: Option<String>,
    realm: Option<String>,
}

impl Spn {
    /// The service class (`host`, `http`, `ldap`, ...), in lowercase.
    pub fn service_class(&self) -> &str {
        &self.service_class
    }

    /// The host the service runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, if the SPN names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The service name after the host, if any (`ldap/dc1.example.test/example.test`).
    pub fn service_name(&self) -> Option<&str> {
        self.service_name.as_deref()
    }

    /// The Kerberos realm after the last `@`, if any, as given.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    fn parse(text: &str) -> Result<Spn, String> {
        let (body, realm) = match text.rsplit_once('@') {
            Some((body, realm)) => (body, Some(check_realm(realm)?)),
            None => (text, None),
        };
        let Some((class, rest)) = body.split_once('/') else {
            return Err(format!(
                "SPN `{}` has no `/` between service class and host",
                shown(body)
            ));
        };
        let (host_port, service_name) = match rest.split_once('/') {
            Some((host_port, service_name)) => (host_port, Some(service_name)),
            None => (rest, None),
        };
        Spn::from_parts(class, host_port, service_name, realm, Origin::Target)
    }

    fn from_parts(
        class: &str,
        host_port: &str,
        service_name: Option<&str>,
        realm: Option<String>,
        origin: Origin,
    ) -> Result<Spn, String> {
        let service_class = check_service_class(class)?;
        let (host, port) = parse_host_port(host_port, origin)?;
        let service_name = service_name.map(check_service_name).transpose()?;
        Ok(Spn {
            service_class,
            host,
            port,
            service_name,
            realm,
        })
    }

    /// The SPN a Kerberos principal name SAN states (`service/host[:port][/name]@REALM`),
    /// if it is a well-formed one.
    fn from_kerberos(principal: &KerberosPrincipal) -> Option<Spn> {
        let realm = check_realm(&principal.realm).ok()?;
        match principal.components.as_slice() {
            [class, host_port] => {
                Spn::from_parts(class, host_port, None, Some(realm), Origin::Certificate).ok()
            }
            [class, host_port, name] => Spn::from_parts(
                class,
                host_port,
                Some(name),
                Some(realm),
                Origin::Certificate,
            )
            .ok(),
            _ => None,
        }
    }

    fn is_proven_by(&self, cert: &CertificateNames) -> bool {
        // A DNS SAN proves the host for every service, port and realm.
        let by_host = match &self.host {
            Host::Dns(name) => cert.dns.iter().any(|san| name.matches_san(san)),
            Host::Ip(ip) => cert.ips.contains(ip),
        };
        by_host
            || cert
                .kerberos
                .iter()
                .filter_map(Spn::from_kerberos)
                .any(|stated| {
                    stated.service_class == self.service_class
                        && stated.host == self.host
                        && stated.port == self.port
                        && stated.service_name == self.service_name
                        && self
                            .realm
                            .as_ref()
                            .is_none_or(|realm| stated.realm.as_ref() == Some(realm))
                })
    }
}

impl fmt::Display for Spn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.service_class)?;
        match &self.host {
            // Always bracketed, so that a port or a second colon can never be misread.
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            host => write!(f, "{host}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(name) = &self.service_name {
            write!(f, "/{name}")?;
        }
        if let Some(realm) = &self.realm {
            write!(f, "@{realm}")?;
        }
        Ok(())
    }
}

/// The host part of an [`Spn`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, in canonical form.
    Dns(DnsName),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Dns(name) => name.fmt(f),
            Host::Ip(ip) => ip.fmt(f),
        }
    }
}

/// A DNS name in canonical form: lowercase, A-labels (punycode) for internationalized
/// labels, no trailing dot.
///
/// A name parsed from a target is never a wildcard. A name taken from a certificate's DNS
/// SAN (see [`CertificateNames::proven`]) may be a wildcard pattern such as
/// `*.example.test`; [`DnsName::is_wildcard`] tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsName(String);

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
    fn parse_target(text: &str) -> Result<DnsName, String> {
        canonical_dns_name(text).map(DnsName)
    }

    /// Parses a DNS name as `origin` allows: IDNA for a target, ASCII only for a name
    /// read from a certificate.
    fn parse(text: &str, origin: Origin) -> Result<DnsName, String> {
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
    fn matches_san(&self, san: &str) -> bool {
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

/// A SPIFFE ID, `spiffe://trust-domain/path`, checked against the SPIFFE ID specification:
/// a lowercase trust domain without port or userinfo, and a path of non-empty segments
/// other than `.` and `..`, without query, fragment or trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

impl SpiffeId {
    /// The trust domain, in lowercase (`example.org`).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path, empty or starting with `/` (`/ns/prod/sa/web`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Parses a SPIFFE ID. A certificate's URI SAN is compared with the trust domain
    /// case-insensitively, so `from_certificate` lowercases it instead of refusing it.
    fn parse(text: &str, from_certificate: bool) -> Result<SpiffeId, String> {
        if text.len() > MAX_SPIFFE_ID_LEN {
            return Err(format!(
                "SPIFFE ID is {} bytes long, more than the {MAX_SPIFFE_ID_LEN} allowed",
                text.len()
            ));
        }
        let Some(rest) = strip_prefix_ignore_case(text, "spiffe://") else {
            return Err("a SPIFFE ID starts with `spiffe://`".to_string());
        };
        if rest.contains('?') {
            return Err("a SPIFFE ID has no query (`?`)".to_string());
        }
        if rest.contains('#') {
            return Err("a SPIFFE ID has no fragment (`#`)".to_string());
        }
        let (trust_domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let trust_domain = if from_certificate {
            trust_domain.to_ascii_lowercase()
        } else {
            trust_domain.to_string()
        };
        check_trust_domain(&trust_domain)?;
        check_spiffe_path(path)?;
        Ok(SpiffeId {
            trust_domain,
            path: path.to_string(),
        })
    }

    /// X509-SVID: a certificate proves a SPIFFE ID only with exactly one URI SAN.
    fn is_proven_by(&self, cert: &CertificateNames) -> bool {
        match cert.uris.as_slice() {
            [uri] => SpiffeId::parse(uri, true).is_ok_and(|stated| stated == *self),
            _ => false,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

/// A user principal, `user:NAME@DOMAIN`: the application (user) identity, proven by the
/// user-authentication step or by an email, UPN or single-component Kerberos SAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserPrincipal {
    name: String,
    domain: String,
}

impl UserPrincipal {
    /// The user name before the `@`, as given (compared exactly).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The domain or realm after the `@`, as given (compared case-insensitively).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Parses `NAME@DOMAIN` (without the `user:` prefix).
    fn parse(text: &str) -> Result<UserPrincipal, String> {
        let Some((name, domain)) = text.split_once('@') else {
            return Err(format!(
                "a user principal is `user:NAME@DOMAIN`, and `{}` has no `@`",
                shown(text)
            ));
        };
        if domain.contains('@') {
            return Err(format!(
                "user principal `{}` has more than one `@`",
                shown(text)
            ));
        }
        check_user_part("user name", name)?;
        check_user_part("domain", domain)?;
        Ok(UserPrincipal {
            name: name.to_string(),
            domain: domain.to_string(),
        })
    }

    /// Whether an email or UPN SAN (`name@domain`) states this user.
    fn matches_address(&self, address: &str) -> bool {
        UserPrincipal::parse(address).is_ok_and(|stated| {
            stated.name == self.name && stated.domain.eq_ignore_ascii_case(&self.domain)
        })
    }

    /// Only a user certificate proves a user (see [`CertificateNames::user_certificate`]).
    fn is_proven_by(&self, cert: &CertificateNames) -> bool {
        cert.user_certificate
            && (cert
                .emails
                .iter()
                .chain(&cert.upns)
                .any(|address| self.matches_address(address))
                || cert.kerberos.iter().any(|principal| {
                    matches!(principal.components.as_slice(), [name] if *name == self.name)
                        && principal.realm.eq_ignore_ascii_case(&self.domain)
                }))
    }
}

impl fmt::Display for UserPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user:{}@{}", self.name, self.domain)
    }
}

/// The name a peer must prove (`WSASetSocketPeerTargetName`): either a parsed
/// [`PrincipalName`] or, for `IPSEC_PEER_NAME_IS_RAW_FORMAT`, the text as given.
///
/// ```
/// use secsock::name::{CertificateNames, PeerTargetName};
///
/// let target = PeerTargetName::parse("host/a.example.test")?;
/// assert_eq!(target.sni_host(), Some("a.example.test"));
///
/// let cert = CertificateNames { dns: vec!["*.example.test".into()], ..Default::default() };
/// assert!(target.is_proven_by(&cert));
/// assert!(!PeerTargetName::parse("a.b.example.test")?.is_proven_by(&cert));
///
/// // A raw name is compared as-is with every SAN and the subject CN.
/// let legacy = CertificateNames {
///     common_names: vec!["Legacy Server".into()],
///     ..Default::default()
/// };
/// assert!(PeerTargetName::raw("Legacy Server")?.is_proven_by(&legacy));
/// # Ok::<(), secsock::name::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerTargetName {
    text: String,
    principal: Option<PrincipalName>,
}

impl PeerTargetName {
    /// Parses `text` as a [`PrincipalName`], keeping the text as given.
    ///
    /// # Errors
    ///
    /// As [`PrincipalName::parse`].
    pub fn parse(text: &str) -> Result<PeerTargetName, NameError> {
        let principal = PrincipalName::parse(text)?;
        Ok(PeerTargetName {
            text: text.to_string(),
            principal: Some(principal),
        })
    }

    /// Takes `text` as a raw name (`IPSEC_PEER_NAME_IS_RAW_FORMAT`): not parsed, matched
    /// by exact, case-sensitive comparison. Refused only when empty or when it contains a
    /// control character (NUL included).
    ///
    /// # Errors
    ///
    /// A [`NameError`] when `text` is empty or contains a control character.
    pub fn raw(text: &str) -> Result<PeerTargetName, NameError> {
        if text.is_empty() {
            return Err(NameError::principal(text, "name is empty"));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(NameError::principal(text, control_character_reason(c)));
        }
        Ok(PeerTargetName {
            text: text.to_string(),
            principal: None,
        })
    }

    /// The name as the caller gave it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed name, or `None` for a raw name.
    pub fn principal(&self) -> Option<&PrincipalName> {
        self.principal.as_ref()
    }

    /// Whether this is a raw name.
    pub fn is_raw(&self) -> bool {
        self.principal.is_none()
    }

    /// The same text, treated as a raw name.
    pub fn to_raw(&self) -> PeerTargetName {
        PeerTargetName {
            text: self.text.clone(),
            principal: None,
        }
    }

    /// The DNS host to send as TLS SNI: the name of a DNS name target, or the host of an
    /// SPN whose host is a DNS name. `None` for IP addresses, SPIFFE IDs, user principals
    /// and raw names.
    pub fn sni_host(&self) -> Option<&str> {
        match &self.principal {
            Some(PrincipalName::Dns(name)) if !name.is_wildcard() => Some(name.as_str()),
            Some(PrincipalName::Spn(spn)) => match &spn.host {
                Host::Dns(name) => Some(name.as_str()),
                Host::Ip(_) => None,
            },
            _ => None,
        }
    }

    /// Whether a certificate presenting `cert` proves this name. A raw name must equal,
    /// exactly, a DNS, URI, email or UPN SAN, a Kerberos principal SAN (`a/b@R`), the text
    /// form of an IP SAN, or a subject CN.
    pub fn is_proven_by(&self, cert: &CertificateNames) -> bool {
        match &self.principal {
            Some(principal) => principal.is_proven_by(cert),
            None => {
                let text = self.text.as_str();
                // A name x509-parser could only decode lossily is never an exact match.
                let equal =
                    |san: &String| san == text && !san.contains(char::REPLACEMENT_CHARACTER);
                cert.dns
                    .iter()
                    .chain(&cert.uris)
                    .chain(&cert.emails)
                    .chain(&cert.upns)
                    .chain(&cert.common_names)
                    .any(equal)
                    || cert.ips.iter().any(|ip| ip.to_string() == text)
                    || cert
                        .kerberos
                        .iter()
                        .any(|principal| principal.to_string() == text)
            }
        }
    }
}

impl From<PrincipalName> for PeerTargetName {
    fn from(principal: PrincipalName) -> Self {
        PeerTargetName {
            text: principal.to_string(),
            principal: Some(principal),
        }
    }
}

impl FromStr for PeerTargetName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PeerTargetName::parse(text)
    }
}

impl fmt::Display for PeerTargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Every name a leaf certificate presents, as written in it: its subject alternative
/// names by type, and its subject common names.
///
/// The fields hold the certificate's text unchanged (a DNS SAN keeps its case and trailing
/// dot); [`CertificateNames::proven`] gives the canonical names they prove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateNames {
    /// DNS name SANs (dNSName), possibly wildcard patterns.
    pub dns: Vec<String>,
    /// IP address SANs (iPAddress).
    pub ips: Vec<IpAddr>,
    /// URI SANs (uniformResourceIdentifier).
    pub uris: Vec<String>,
    /// Email SANs (rfc822Name).
    pub emails: Vec<String>,
    /// User principal name SANs: otherName 1.3.6.1.4.1.311.20.2.3 (UTF8String).
    pub upns: Vec<String>,
    /// Kerberos principal name SANs: otherName 1.3.6.1.5.2.2 (KRB5PrincipalName, RFC 4556).
    pub kerberos: Vec<KerberosPrincipal>,
    /// The subject's common names (CN), used only for raw name matching.
    pub common_names: Vec<String>,
    /// Whether this is a user certificate: only then do its email, UPN and
    /// single-component Kerberos principal SANs prove user principals. A user certificate
    /// is good for TLS client authentication only (its extended key usage has clientAuth,
    /// and neither serverAuth nor anyExtendedKeyUsage) and names no machine (no DNS, IP or
    /// URI SAN, no Kerberos principal of more than one component), as `secsock issue
    /// user:NAME` makes them. A machine certificate's email address is contact data, not
    /// a proof that the machine's operator is that user.
    pub user_certificate: bool,
}

impl CertificateNames {
    /// Reads the names of a DER-encoded X.509 certificate.
    ///
    /// Fails only when the certificate itself cannot be parsed (or has trailing data); a
    /// malformed subject alternative name extension yields no SANs, so it proves nothing.
    ///
    /// # Errors
    ///
    /// A [`NameError`] when `der` is not exactly one well-formed X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<CertificateNames, NameError> {
        match x509_parser::parse_x509_certificate(der) {
            Ok((rest, _)) if !rest.is_empty() => Err(NameError::certificate(
                der.len(),
                format!(
                    "{} bytes of trailing data after the certificate",
                    rest.len()
                ),
            )),
            Ok((_, cert)) => Ok(CertificateNames::from_x509(&cert)),
            Err(error) => Err(NameError::certificate(
                der.len(),
                format!("not a well-formed X.509 certificate ({error})"),
            )),
        }
    }

    /// Reads the names of a parsed certificate.
    ///
    /// Entries that cannot be decoded are skipped, except that DNS, URI and email SANs
    /// that are not valid UTF-8 are kept in lossy form, so that they still count (a second
    /// URI SAN, however malformed, means the certificate is no X509-SVID) and still show in
    /// [`CertificateNames::presented`].
    pub fn from_x509(cert: &X509Certificate<'_>) -> CertificateNames {
        let mut names = CertificateNames::default();
        let mut names_a_machine = false;
        // Absent, malformed or duplicated: a certificate without trustworthy SANs.
        if let Ok(Some(extension)) = cert.subject_alternative_name() {
            for general_name in &extension.value.general_names {
                names_a_machine |= matches!(
                    general_name,
                    GeneralName::DNSName(_) | GeneralName::IPAddress(_) | GeneralName::URI(_)
                ) || matches!(general_name, GeneralName::Invalid(tag, _) if matches!(tag.0, 2 | 6 | 7));
                names.add(general_name);
            }
        }
        for attribute in cert.subject().iter_common_name() {
            if let Ok(common_name) = attribute.as_str() {
                names.common_names.push(common_name.to_string());
            }
        }
        let client_auth_only =
            cert.extended_key_usage().ok().flatten().is_some_and(|eku| {
                eku.value.client_auth && !eku.value.server_auth && !eku.value.any
            });
        names.user_certificate = client_auth_only
            && !names_a_machine
            && names.kerberos.iter().all(|p| p.components.len() == 1);
        names
    }

    /// The names that the validated path's name constraints allow, where a name is read
    /// across forms: a Kerberos principal's host must satisfy the DNS (or IP) constraints,
    /// a user principal read from a UPN or a single-component Kerberos principal the
    /// mailbox (rfc822Name) constraints, and, where DNS names are constrained, a subject CN
    /// (which only raw target names compare with) the DNS constraints as a DNS name.
    /// Names of the same form as a constraint (DNS, IP, email, URI SANs) were checked by
    /// the chain validation itself.
    pub(crate) fn within(mut self, constraints: &PathConstraints) -> CertificateNames {
        if constraints.is_empty() {
            return self;
        }
        self.kerberos
            .retain(|principal| match principal.components.as_slice() {
                [name] => constraints.allows_mailbox(name, &principal.realm),
                _ => match Spn::from_kerberos(principal) {
                    Some(spn) => match &spn.host {
                        Host::Dns(host) => constraints.allows_dns(host.as_str()),
                        Host::Ip(ip) => constraints.allows_ip(*ip),
                    },
                    // Proves no SPN, but still compares with raw names: not from here.
                    None => false,
                },
            });
        self.upns.retain(|upn| {
            upn.rsplit_once('@')
                .is_some_and(|(name, domain)| constraints.allows_mailbox(name, domain))
        });
        if constraints.constrains_dns() {
            self.common_names.retain(|cn| {
                certificate_dns_name(cn).is_ok_and(|host| constraints.allows_dns(&host))
            });
        }
        self
    }

    fn add(&mut self, general_name: &GeneralName<'_>) {
        match general_name {
            GeneralName::DNSName(name) => self.dns.push(name.to_string()),
            GeneralName::IPAddress(octets) => {
                if let Some(ip) = ip_from_octets(octets) {
                    self.ips.push(ip);
                }
            }
            GeneralName::URI(uri) => self.uris.push(uri.to_string()),
            GeneralName::RFC822Name(email) => self.emails.push(email.to_string()),
            GeneralName::OtherName(oid, value) => {
                if oid.as_bytes() == OID_UPN {
                    if let Ok(upn) = der::user_principal_name(value) {
                        self.upns.push(upn);
                    }
                } else if oid.as_bytes() == OID_KRB5_PRINCIPAL_NAME {
                    if let Ok(principal) = der::kerberos_principal_name(value) {
                        self.kerberos.push(principal);
                    }
                }
            }
            GeneralName::Invalid(tag, content) => {
                let lossy = String::from_utf8_lossy(content).into_owned();
                match tag.0 {
                    1 => self.emails.push(lossy),
                    2 => self.dns.push(lossy),
                    6 => self.uris.push(lossy),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// What this certificate proves, in canonical form: DNS SANs as DNS names (wildcard
    /// patterns kept; ASCII only), IP SANs as IP addresses, the URI SAN as a SPIFFE ID
    /// (when it is the only URI SAN and a valid one), Kerberos principal SANs of two or
    /// three components as SPNs with their realm, and, on a user certificate only (see
    /// [`CertificateNames::user_certificate`]), email and UPN SANs and single-component
    /// Kerberos principal SANs (`name@REALM`) as user principals.
    ///
    /// Entries that prove nothing (malformed names, `*.test`, `f*.example.test`) are
    /// skipped; duplicates are dropped. The order is that of the fields, and within each
    /// field that of the certificate.
    pub fn proven(&self) -> Vec<PrincipalName> {
        let mut proven = Vec::new();
        let mut seen = HashSet::new();
        let mut push = |name: PrincipalName| {
            if seen.insert(name.clone()) {
                proven.push(name);
            }
        };
        for san in &self.dns {
            if let Some(name) = DnsName::from_certificate_san(san) {
                push(PrincipalName::Dns(name));
            }
        }
        for ip in &self.ips {
            push(PrincipalName::Ip(*ip));
        }
        if let [uri] = self.uris.as_slice() {
            if let Ok(id) = SpiffeId::parse(uri, true) {
                push(PrincipalName::Spiffe(id));
            }
        }
        // Only a user certificate proves users (see `user_certificate`).
        let addresses = self.emails.iter().chain(&self.upns);
        for address in addresses.filter(|_| self.user_certificate) {
            if let Ok(user) = UserPrincipal::parse(address) {
                push(PrincipalName::User(user));
            }
        }
        for principal in &self.kerberos {
            match principal.components.as_slice() {
                [name] if self.user_certificate => {
                    if let Ok(user) = UserPrincipal::parse(&format!("{name}@{}", principal.realm)) {
                        push(PrincipalName::User(user));
                    }
                }
                [_] => {}
                _ => {
                    if let Some(spn) = Spn::from_kerberos(principal) {
                        push(PrincipalName::Spn(spn));
                    }
                }
            }
        }
        proven
    }

    /// Every name the certificate presents, with its type, for error messages:
    /// `DNS:server.example.test`, `IP:192.0.2.1`, `URI:spiffe://...`, `email:a@b`,
    /// `UPN:a@b`, `KRB5:host/x@REALM`, `CN:...`. Control characters are escaped.
    pub fn presented(&self) -> Vec<String> {
        let typed =
            |kind: &str, text: &str| format!("{kind}:{}", escape_controls(text, usize::MAX));
        let mut presented = Vec::new();
        presented.extend(self.dns.iter().map(|name| typed("DNS", name)));
        presented.extend(self.ips.iter().map(|ip| format!("IP:{ip}")));
        presented.extend(self.uris.iter().map(|uri| typed("URI", uri)));
        presented.extend(self.emails.iter().map(|email| typed("email", email)));
        presented.extend(self.upns.iter().map(|upn| typed("UPN", upn)));
        presented.extend(
            self.kerberos
                .iter()
                .map(|principal| typed("KRB5", &principal.to_string())),
        );
        presented.extend(self.common_names.iter().map(|cn| typed("CN", cn)));
        presented
    }
}

/// A Kerberos principal name from a certificate's id-pkinit-san SAN (RFC 4556).
///
/// Displays as `comp1/comp2@REALM`, with `\`, `/` and `@` inside a component or the realm
/// escaped by a backslash, as Kerberos tools write them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KerberosPrincipal {
    /// The realm (`EXAMPLE.TEST`), case-sensitive.
    pub realm: String,
    /// The name components (`["host", "server.example.test"]`), at least one.
    pub components: Vec<String>,
}

impl fmt::Display for KerberosPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
            for c in text.chars() {
                if matches!(c, '\\' | '/' | '@') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            Ok(())
        }
        for (index, component) in self.components.iter().enumerate() {
            if index > 0 {
                f.write_str("/")?;
            }
            write_escaped(f, component)?;
        }
        f.write_str("@")?;
        write_escaped(f, &self.realm)
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

/// A bracketed address as a whole target, `[2001:db8::1]` (`inside` follows the `[`).
fn parse_bracketed_ip(text: &str, inside: &str) -> Result<IpAddr, String> {
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

fn parse_ipv6_in_brackets(address: &str) -> Result<Ipv6Addr, String> {
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

/// Where a name comes from, which decides how a DNS name in it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Given by the application: IDNA maps internationalized names to A-labels.
    Target,
    /// Read from a certificate: ASCII only, compared as such.
    Certificate,
}

/// Parses an SPN's `host[:port]`: a DNS name, an IPv4 address, a bracketed IPv6 address,
/// each with an optional port, or a bare IPv6 address without one.
fn parse_host_port(text: &str, origin: Origin) -> Result<(Host, Option<u16>), String> {
    if text.is_empty() {
        return Err("host is empty".to_string());
    }
    if let Some(inside) = text.strip_prefix('[') {
        let Some((address, tail)) = inside.split_once(']') else {
            return Err(format!("`[` in host `{}` has no closing `]`", shown(text)));
        };
        let ip = IpAddr::V6(parse_ipv6_in_brackets(address)?);
        let port = match tail.strip_prefix(':') {
            Some(port) => Some(parse_port(port)?),
            None if tail.is_empty() => None,
            None => return Err(format!("unexpected `{}` after `]` in host", shown(tail))),
        };
        return Ok((Host::Ip(ip), port));
    }
    if let Ok(ip) = text.parse::<Ipv6Addr>() {
        return Ok((Host::Ip(IpAddr::V6(ip)), None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            return Err(format!(
                "host `{}` is not a valid IPv6 address (an IPv6 address followed by a port \
                 needs brackets, e.g. `[2001:db8::1]:443`)",
                shown(text)
            ));
        }
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (text, None),
    };
    if host.is_empty() {
        return Err("host is empty".to_string());
    }
    let host = match host.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(IpAddr::V4(ip)),
        Err(_) => Host::Dns(DnsName::parse(host, origin)?),
    };
    Ok((host, port))
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("port after `:` is empty".to_string());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port `{}` is not a decimal number", shown(text)));
    }
    let significant = text.trim_start_matches('0');
    let value = if significant.is_empty() {
        Some(0)
    } else if significant.len() > 5 {
        None
    } else {
        significant.parse::<u32>().ok()
    };
    match value.and_then(|value| u16::try_from(value).ok()) {
        Some(port) if port != 0 => Ok(port),
        _ => Err(format!("port `{}` is out of range 1-65535", shown(text))),
    }
}

fn check_service_class(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("service class before the `/` is empty".to_string());
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "service class `{}` contains {c:?}; only letters, digits, `_`, `.` and `-` are allowed",
            shown(text)
        ));
    }
    Ok(text.to_ascii_lowercase())
}

fn check_service_name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("service name after the host is empty".to_string());
    }
    if text.contains('/') {
        return Err(format!(
            "service name `{}` contains `/` (an SPN is service/host[:port][/service-name][@REALM])",
            shown(text)
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '@')
    {
        return Err(format!("service name `{}` contains {c:?}", shown(text)));
    }
    Ok(text.to_string())
}

fn check_realm(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("realm after `@` is empty".to_string());
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@'))
    {
        return Err(format!("realm `{}` contains {c:?}", shown(text)));
    }
    Ok(text.to_string())
}

fn check_user_part(what: &str, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{what} in the user principal is empty"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!("{what} `{}` contains whitespace", shown(text)));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{what} `{}` contains a control character ({})",
            shown(text),
            code_point(c)
        ));
    }
    if text.contains('/') {
        return Err(format!("{what} `{}` contains `/`", shown(text)));
    }
    Ok(())
}

fn check_trust_domain(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("SPIFFE trust domain is empty".to_string());
    }
    if text.contains('@') {
        return Err(format!(
            "SPIFFE trust domain `{}` contains userinfo (`@`), which is not allowed",
            shown(text)
        ));
    }
    if text.contains(':') {
        return Err(format!(
            "SPIFFE trust domain `{}` contains a port (`:`), which is not allowed",
            shown(text)
        ));
    }
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "SPIFFE trust domain `{}` contains uppercase letters; \
             trust domains are lowercase (`{}`)",
            shown(text),
            shown(&text.to_ascii_lowercase())
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "SPIFFE trust domain `{}` contains {c:?}; only a-z, 0-9, `.`, `-` and `_` are allowed",
            shown(text)
        ));
    }
    if text.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(format!(
            "SPIFFE trust domain is {} bytes long, more than the {MAX_TRUST_DOMAIN_LEN} allowed",
            text.len()
        ));
    }
    Ok(())
}

fn check_spiffe_path(path: &str) -> Result<(), String> {
    let Some(segments) = path.strip_prefix('/') else {
        // Only an empty path can lack the leading `/` (the trust domain ends at the first `/`).
        return Ok(());
    };
    if path.ends_with('/') {
        return Err("SPIFFE path must not end with `/`".to_string());
    }
    for segment in segments.split('/') {
        if segment.is_empty() {
            return Err("SPIFFE path has an empty segment (`//`)".to_string());
        }
        if segment == "." || segment == ".." {
            return Err(format!("SPIFFE path segment `{segment}` is not allowed"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(format!(
                "SPIFFE path segment `{}` contains {c:?}; \
                 only letters, digits, `.`, `-` and `_` are allowed",
                shown(segment)
            ));
        }
    }
    Ok(())
}

/// Canonicalizes a DNS name: one trailing dot dropped, IDNA (UTS-46) to A-labels,
/// lowercase, and then checked label by label. Refuses wildcards.
fn canonical_dns_name(text: &str) -> Result<String, String> {
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
fn certificate_dns_name(text: &str) -> Result<String, String> {
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
fn check_ascii_dns_name(ascii: String, text: &str) -> Result<String, String> {
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

fn check_label(label: &str) -> Result<(), String> {
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

fn is_label_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}

fn invalid_label_character(label: &str, c: char) -> String {
    format!(
        "label `{}` contains {c:?}; only letters, digits, `-` and `_` are allowed",
        shown(label)
    )
}

/// Names the label IDNA refused, if it refuses one on its own.
fn idna_reason(name: &str) -> String {
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

fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(octets).ok().map(IpAddr::from)
    }
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

/// A strict, bounds-checked reader for the two otherName values we understand.
///
/// x509-parser hands over an otherName value as the bytes after the type OID, which is the
/// `[0] EXPLICIT` wrapper and what it wraps; both that and the bare value are accepted.
/// Only DER is accepted: definite, minimal lengths, single-byte tags, no trailing bytes.
mod der {
    use super::KerberosPrincipal;

    const INTEGER: u8 = 0x02;
    const UTF8_STRING: u8 = 0x0C;
    const GENERAL_STRING: u8 = 0x1B;
    const SEQUENCE: u8 = 0x30;
    const CONTEXT_0: u8 = 0xA0;
    const CONTEXT_1: u8 = 0xA1;

    /// Why a value was refused (for tests and debugging; callers skip the entry).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct DerError(pub(super) &'static str);

    impl std::fmt::Display for DerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    type Result<T> = std::result::Result<T, DerError>;

    /// KRB5PrincipalName ::= SEQUENCE { realm [0] Realm, principalName [1] PrincipalName }
    /// PrincipalName ::= SEQUENCE { name-type [0] Int32, name-string [1] SEQUENCE OF
    /// KerberosString }, realm and name strings being GeneralString (RFC 4556, RFC 4120).
    pub(super) fn kerberos_principal_name(value: &[u8]) -> Result<KerberosPrincipal> {
        let principal_name = read_all(unwrap_explicit(value)?, SEQUENCE)?;
        let (realm, rest) = read(principal_name, CONTEXT_0)?;
        let realm = text(read_all(realm, GENERAL_STRING)?)?;
        let principal = read_all(read_all(rest, CONTEXT_1)?, SEQUENCE)?;
        let (name_type, rest) = read(principal, CONTEXT_0)?;
        let name_type = read_all(name_type, INTEGER)?;
        if name_type.is_empty() || name_type.len() > 4 {
            return Err(DerError("name-type is not a 32-bit INTEGER"));
        }
        let mut strings = read_all(read_all(rest, CONTEXT_1)?, SEQUENCE)?;
        let mut components = Vec::new();
        while !strings.is_empty() {
            let (component, rest) = read(strings, GENERAL_STRING)?;
            let component = text(component)?;
            if component.is_empty() {
                return Err(DerError("empty name component"));
            }
            components.push(component.to_string());
            strings = rest;
        }
        if realm.is_empty() {
            return Err(DerError("empty realm"));
        }
        if components.is_empty() {
            return Err(DerError("no name components"));
        }
        Ok(KerberosPrincipal {
            realm: realm.to_string(),
            components,
        })
    }

    /// A UPN otherName value: a UTF8String.
    pub(super) fn user_principal_name(value: &[u8]) -> Result<String> {
        text(read_all(unwrap_explicit(value)?, UTF8_STRING)?).map(str::to_string)
    }

    fn unwrap_explicit(value: &[u8]) -> Result<&[u8]> {
        if value.first() == Some(&CONTEXT_0) {
            read_all(value, CONTEXT_0)
        } else {
            Ok(value)
        }
    }

    fn text(content: &[u8]) -> Result<&str> {
        let text = std::str::from_utf8(content).map_err(|_| DerError("string is not UTF-8"))?;
        if text.chars().any(char::is_control) {
            return Err(DerError("string contains a control character"));
        }
        Ok(text)
    }

    /// Reads one element with tag `expected` that must fill `input` exactly.
    fn read_all(input: &[u8], expected: u8) -> Result<&[u8]> {
        let (content, rest) = read(input, expected)?;
        if !rest.is_empty() {
            return Err(DerError("trailing bytes after an element"));
        }
        Ok(content)
    }

    /// Reads one element with tag `expected`: returns its content and what follows it.
    fn read(input: &[u8], expected: u8) -> Result<(&[u8], &[u8])> {
        let (&tag, rest) = input.split_first().ok_or(DerError("missing tag"))?;
        if tag & 0x1F == 0x1F {
            return Err(DerError("multi-byte tags are not used here"));
        }
        if tag != expected {
            return Err(DerError("unexpected tag"));
        }
        let (&first, rest) = rest.split_first().ok_or(DerError("missing length"))?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7F);
            if count == 0 {
                return Err(DerError("indefinite length is not DER"));
            }
            if count > 4 {
                return Err(DerError("length does not fit in four bytes"));
            }
            let (octets, rest) = rest
                .split_at_checked(count)
                .ok_or(DerError("truncated length"))?;
            if octets.first() == Some(&0) {
                return Err(DerError("length has a leading zero byte (not DER)"));
            }
            let length = octets
                .iter()
                .fold(0usize, |length, &octet| (length << 8) | usize::from(octet));
            if length < 0x80 {
                return Err(DerError("long form for a short length (not DER)"));
            }
            (length, rest)
        };
        rest.split_at_checked(length)
            .ok_or(DerError("length runs past the end of the input"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            match content.len() {
                n if n < 0x80 => out.push(n as u8),
                n if n <= 0xFF => out.extend([0x81, n as u8]),
                n => out.extend([0x82, (n >> 8) as u8, n as u8]),
            }
            out.extend_from_slice(content);
            out
        }

        #[test]
        fn reads_lengths_strictly() {
            type Read<'a> = Result<(&'a [u8], &'a [u8])>;
            let cases: &[(&[u8], Read<'_>)] = &[
                (&[0x30, 0x00], Ok((&[], &[]))),
                (&[0x30, 0x01, 0xAA, 0xBB], Ok((&[0xAA], &[0xBB]))),
                (&[0x30], Err(DerError("missing length"))),
                (&[], Err(DerError("missing tag"))),
                (&[0x31, 0x00], Err(DerError("unexpected tag"))),
                (
                    &[0x3F, 0x00],
                    Err(DerError("multi-byte tags are not used here")),
                ),
                (
                    &[0x30, 0x80, 0x00, 0x00],
                    Err(DerError("indefinite length is not DER")),
                ),
                (
                    &[0x30, 0x81, 0x05, 1, 2, 3, 4, 5],
                    Err(DerError("long form for a short length (not DER)")),
                ),
                (
                    &[0x30, 0x82, 0x00, 0x80],
                    Err(DerError("length has a leading zero byte (not DER)")),
                ),
                (
                    &[0x30, 0x85, 1, 1, 1, 1, 1],
                    Err(DerError("length does not fit in four bytes")),
                ),
                (&[0x30, 0x82, 0x01], Err(DerError("truncated length"))),
                (
                    &[0x30, 0x02, 0x00],
                    Err(DerError("length runs past the end of the input")),
                ),
                (
                    &[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF],
                    Err(DerError("length runs past the end of the input")),
                ),
            ];
            for (input, expected) in cases {
                assert_eq!(read(input, SEQUENCE), *expected, "input {input:02X?}");
            }
            let long = tlv(SEQUENCE, &[7; 300]);
            assert_eq!(read_all(&long, SEQUENCE).map(<[u8]>::len), Ok(300));
        }

        #[test]
        fn upn_with_and_without_explicit_wrapper() {
            let bare = tlv(UTF8_STRING, "alice@EXAMPLE.TEST".as_bytes());
            let wrapped = tlv(CONTEXT_0, &bare);
            assert_eq!(
                user_principal_name(&bare).as_deref(),
                Ok("alice@EXAMPLE.TEST")
            );
            assert_eq!(
                user_principal_name(&wrapped).as_deref(),
                Ok("alice@EXAMPLE.TEST")
            );
            assert!(
                user_principal_name(&tlv(0x16, b"alice@x")).is_err(),
                "IA5String is not a UPN"
            );
            assert!(user_principal_name(&tlv(UTF8_STRING, &[0xFF, 0xFE])).is_err());
            assert!(user_principal_name(&tlv(UTF8_STRING, b"a\nb@x")).is_err());
            assert!(user_principal_name(&[wrapped.as_slice(), &[0]].concat()).is_err());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{
        CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, KeyPair,
        OtherNameValue, SanType,
    };

    // ---- parsing -------------------------------------------------------------------

    #[test]
    fn parses_valid_names_to_canonical_form() {
        let long_ok = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
        assert_eq!(long_ok.len(), 253);
        let spiffe_long_ok = format!(
            "spiffe://example.org/{}",
            "p".repeat(MAX_SPIFFE_ID_LEN - 21)
        );
        let cases: &[(&str, &str, &str)] = &[
            // SPNs
            (
                "host/server.example.test",
                "host/server.example.test",
                "SPN",
            ),
            (
                "HOST/Server.Example.TEST",
                "host/server.example.test",
                "SPN",
            ),
            (
                "host/server.example.test.",
                "host/server.example.test",
                "SPN",
            ),
            ("host/localhost", "host/localhost", "SPN"),
            ("host/server:1", "host/server:1", "SPN"),
            ("host/server:65535", "host/server:65535", "SPN"),
            ("host/server:0443", "host/server:443", "SPN"),
            (
                "HTTP/Web.Example.Test:8080/API@Example.TEST",
                "http/web.example.test:8080/API@Example.TEST",
                "SPN",
            ),
            (
                "ldap/dc1.example.test/example.test@EXAMPLE.TEST",
                "ldap/dc1.example.test/example.test@EXAMPLE.TEST",
                "SPN",
            ),
            (
                "my_svc.v2-x/_srv.example.test",
                "my_svc.v2-x/_srv.example.test",
                "SPN",
            ),
            (
                "host/bücher.example:8443",
                "host/xn--bcher-kva.example:8443",
                "SPN",
            ),
            ("host/192.0.2.1", "host/192.0.2.1", "SPN"),
            ("host/192.0.2.1:443", "host/192.0.2.1:443", "SPN"),
            ("host/[2001:db8::1]:443", "host/[2001:db8::1]:443", "SPN"),
            ("host/[2001:DB8::1]", "host/[2001:db8::1]", "SPN"),
            ("host/2001:db8::1", "host/[2001:db8::1]", "SPN"),
            ("host/::1/svc@R", "host/[::1]/svc@R", "SPN"),
            // DNS names
            ("server.example.test", "server.example.test", "DNS name"),
            ("Server.Example.TEST.", "server.example.test", "DNS name"),
            ("localhost", "localhost", "DNS name"),
            (
                "_sip._tcp.example.test",
                "_sip._tcp.example.test",
                "DNS name",
            ),
            ("bücher.example", "xn--bcher-kva.example", "DNS name"),
            ("BÜCHER.example", "xn--bcher-kva.example", "DNS name"),
            ("XN--BCHER-KVA.example", "xn--bcher-kva.example", "DNS name"),
            ("1.2.3.example", "1.2.3.example", "DNS name"),
            (&long_ok, &long_ok, "DNS name"),
            // IP addresses
            ("192.0.2.1", "192.0.2.1", "IP address"),
            ("2001:DB8::1", "2001:db8::1", "IP address"),
            ("[2001:db8::1]", "2001:db8::1", "IP address"),
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1", "IP address"),
            // SPIFFE IDs
            (
                "spiffe://example.org/ns/prod/sa/web",
                "spiffe://example.org/ns/prod/sa/web",
                "SPIFFE ID",
            ),
            (
                "SPIFFE://example.org/Path",
                "spiffe://example.org/Path",
                "SPIFFE ID",
            ),
            ("spiffe://example.org", "spiffe://example.org", "SPIFFE ID"),
            (
                "spiffe://my-td_1.example/a.b-c_D/..x",
                "spiffe://my-td_1.example/a.b-c_D/..x",
                "SPIFFE ID",
            ),
            (&spiffe_long_ok, &spiffe_long_ok, "SPIFFE ID"),
            // user principals
            (
                "user:alice@EXAMPLE.TEST",
                "user:alice@EXAMPLE.TEST",
                "user principal",
            ),
            (
                "USER:Alice@Example.Test",
                "user:Alice@Example.Test",
                "user principal",
            ),
            (
                "user:alice.smith+x@example.test",
                "user:alice.smith+x@example.test",
                "user principal",
            ),
        ];
        for &(input, display, kind) in cases {
            let name = PrincipalName::parse(input).unwrap_or_else(|e| panic!("`{input}`: {e}"));
            assert_eq!(name.to_string(), display, "display of `{input}`");
            assert_eq!(name.kind(), kind, "kind of `{input}`");
            let again: PrincipalName = display
                .parse()
                .unwrap_or_else(|e| panic!("`{display}`: {e}"));
            assert_eq!(
                again, name,
                "canonical form of `{input}` parses to the same name"
            );
        }
    }

    #[test]
    fn refuses_invalid_names_with_a_precise_reason() {
        let long_label = format!("{}.test", "a".repeat(64));
        let long_name = format!("{0}.{0}.{0}.{0}", "a".repeat(63));
        let long_spiffe = format!("spiffe://example.org/{}", "p".repeat(MAX_SPIFFE_ID_LEN));
        let cases: &[(&str, &str)] = &[
            // whole input
            ("", "name is empty"),
            (" host/x", "leading or trailing whitespace"),
            ("host/x ", "leading or trailing whitespace"),
            ("server.example.test\n", "leading or trailing whitespace"),
            ("a\u{0}b", "control character (U+0000)"),
            ("a\u{7}b.test", "control character (U+0007)"),
            // DNS names and SPN hosts
            (
                "host/-bad.example.test",
                "label `-bad` starts with a hyphen",
            ),
            ("bad-.example.test", "label `bad-` ends with a hyphen"),
            ("a..b", "empty label"),
            (".a", "empty label"),
            ("a..", "empty label"),
            (".", "DNS name is empty"),
            (
                "*.example.test",
                "wildcards are not allowed in a target name",
            ),
            (
                "host/*.example.test",
                "wildcards are not allowed in a target name",
            ),
            (
                "f*.example.test",
                "wildcards are not allowed in a target name",
            ),
            ("1.2.3", "`1.2.3` is not a valid IP address"),
            ("host/1.2.3", "`1.2.3` is not a valid IP address"),
            ("256.1.1.1", "not a valid IP address"),
            ("01.2.3.4", "not a valid IP address"),
            (
                &long_label,
                "is 64 characters long, more than the 63 allowed",
            ),
            (
                &long_name,
                "DNS name is 255 characters long, more than the 253 allowed",
            ),
            ("a b.test", "label `a b` contains ' '"),
            ("bü cher.example", "label `bü cher` contains ' '"),
            ("Ａ＊.example", "label `a*` contains '*'"),
            ("a!.test", "label `a!` contains '!'"),
            (
                "xn--a.example",
                "label `xn--a` is not a valid internationalized label",
            ),
            (
                "xn--bcher-kva9999999999999.example",
                "is not a valid internationalized label",
            ),
            (
                "\u{301}bücher.example",
                "not a valid internationalized label",
            ),
            ("server.example.test:443", "a port belongs in an SPN"),
            ("fe80::1%eth0", "is not an IP address"),
            // SPN structure
            ("host/server:99999", "port `99999` is out of range 1-65535"),
            ("host/server:0", "port `0` is out of range 1-65535"),
            (
                "host/server:123456789012345678901234567890",
                "is out of range 1-65535",
            ),
            ("host/server:http", "port `http` is not a decimal number"),
            ("host/server:-1", "port `-1` is not a decimal number"),
            ("host/server:", "port after `:` is empty"),
            ("host/2001:db8::zz:443", "needs brackets"),
            ("host/[2001:db8::1", "has no closing `]`"),
            ("host/[192.0.2.1]", "brackets are only for IPv6 addresses"),
            ("host/[::1]x", "unexpected `x` after `]`"),
            ("host/[::1]:", "port after `:` is empty"),
            ("/server", "service class before the `/` is empty"),
            ("ho st/x", "service class `ho st` contains ' '"),
            ("ho:st/x", "service class `ho:st` contains ':'"),
            ("host/", "host is empty"),
            ("host/:443", "host is empty"),
            ("host/server@", "realm after `@` is empty"),
            (
                "host/server@EXAMPLE TEST",
                "realm `EXAMPLE TEST` contains ' '",
            ),
            ("host/a@b/c", "realm `b/c` contains '/'"),
            ("host/a@b@R", "label `a@b` contains '@'"),
            ("host/server/", "service name after the host is empty"),
            ("host/server/a/b", "service name `a/b` contains `/`"),
            // URIs
            (
                "https://example.test/x",
                "`https:` URIs are not principal names; use a SPIFFE ID",
            ),
            ("spiffe://", "SPIFFE trust domain is empty"),
            ("spiffe:///a", "SPIFFE trust domain is empty"),
            (
                "spiffe://Example.org/a",
                "contains uppercase letters; trust domains are lowercase (`example.org`)",
            ),
            ("spiffe://example.org:8080/a", "contains a port"),
            ("spiffe://user@example.org/a", "contains userinfo"),
            ("spiffe://exa%mple.org", "contains '%'"),
            ("spiffe://example.org/", "SPIFFE path must not end with `/`"),
            (
                "spiffe://example.org/a/",
                "SPIFFE path must not end with `/`",
            ),
            ("spiffe://example.org//a", "empty segment"),
            (
                "spiffe://example.org/a/../b",
                "SPIFFE path segment `..` is not allowed",
            ),
            (
                "spiffe://example.org/./b",
                "SPIFFE path segment `.` is not allowed",
            ),
            ("spiffe://example.org/a?b=c", "no query"),
            ("spiffe://example.org/a#b", "no fragment"),
            (
                "spiffe://example.org/a%20b",
                "SPIFFE path segment `a%20b` contains '%'",
            ),
            ("spiffe://example.org/a b", "contains ' '"),
            (&long_spiffe, "more than the 2048 allowed"),
            // user principals
            ("user:alice", "has no `@`"),
            ("user:a@b@c", "more than one `@`"),
            (
                "user:@EXAMPLE.TEST",
                "user name in the user principal is empty",
            ),
            ("user:alice@", "domain in the user principal is empty"),
            (
                "user:al ice@EXAMPLE.TEST",
                "user name `al ice` contains whitespace",
            ),
            ("user:a/b@EXAMPLE.TEST", "user name `a/b` contains `/`"),
            (
                "user:alice@EXAMPLE/TEST",
                "domain `EXAMPLE/TEST` contains `/`",
            ),
            // bracketed whole-target addresses
            (
                "[::1]:443",
                "a port is only allowed in an SPN, e.g. `host/[::1]:443`",
            ),
            ("[192.0.2.1]", "brackets are only for IPv6 addresses"),
            ("[::1", "has no closing `]`"),
        ];
        for &(input, expected) in cases {
            match PrincipalName::parse(input) {
                Ok(name) => {
                    panic!("`{input}` parsed as {name:?}, expected an error with `{expected}`")
                }
                Err(error) => {
                    assert!(
                        error.reason().contains(expected),
                        "`{input}`: reason `{}` lacks `{expected}`",
                        error.reason()
                    );
                    assert_eq!(error.input(), input);
                }
            }
        }
    }

    #[test]
    fn error_display_names_the_input_and_the_reason() {
        let error = PrincipalName::parse("host/server:99999").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid principal name `host/server:99999`: port `99999` is out of range 1-65535"
        );
        let error = PrincipalName::parse("a\nb").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid principal name `a\\nb`: name contains a control character (U+000A)"
        );
        let error = CertificateNames::from_der(b"not a certificate").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid certificate (17 bytes of DER): "),
            "{error}"
        );
    }

    #[test]
    fn accessors_expose_the_parts() {
        let Ok(PrincipalName::Spn(spn)) =
            PrincipalName::parse("HTTP/Web.Example.Test:8080/api@EXAMPLE.TEST")
        else {
            panic!("not an SPN");
        };
        assert_eq!(spn.service_class(), "http");
        assert_eq!(spn.host(), &Host::Dns(DnsName("web.example.test".into())));
        assert_eq!(spn.port(), Some(8080));
        assert_eq!(spn.service_name(), Some("api"));
        assert_eq!(spn.realm(), Some("EXAMPLE.TEST"));

        let Ok(PrincipalName::Spiffe(id)) = PrincipalName::parse("spiffe://example.org/ns/web")
        else {
            panic!("not a SPIFFE ID");
        };
        assert_eq!((id.trust_domain(), id.path()), ("example.org", "/ns/web"));

        let Ok(PrincipalName::User(user)) = PrincipalName::parse("user:alice@EXAMPLE.TEST") else {
            panic!("not a user principal");
        };
        assert_eq!((user.name(), user.domain()), ("alice", "EXAMPLE.TEST"));

        let principal = KerberosPrincipal {
            realm: "R".into(),
            components: vec!["host".into(), "a/b@c\\d".into()],
        };
        assert_eq!(principal.to_string(), "host/a\\/b\\@c\\\\d@R");
    }

    #[test]
    fn peer_target_name_keeps_the_text_and_knows_its_sni_host() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            (
                "HOST/Server.Example.Test:443",
                false,
                Some("server.example.test"),
            ),
            ("Server.Example.Test.", false, Some("server.example.test")),
            ("host/192.0.2.1", false, None),
            ("192.0.2.1", false, None),
            ("spiffe://example.org/web", false, None),
            ("user:alice@EXAMPLE.TEST", false, None),
        ];
        for &(text, raw, sni) in cases {
            let target = PeerTargetName::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(target.as_str(), text);
            assert_eq!(target.to_string(), text);
            assert_eq!(target.is_raw(), raw);
            assert_eq!(target.sni_host(), sni, "SNI for `{text}`");
            assert_eq!(
                target.principal(),
                Some(&PrincipalName::parse(text).unwrap_or_else(|e| panic!("{e}")))
            );
            let as_raw = target.to_raw();
            assert!(as_raw.is_raw() && as_raw.principal().is_none() && as_raw.sni_host().is_none());
            assert_eq!(as_raw.as_str(), text);
        }

        let from_principal = PeerTargetName::from(
            PrincipalName::parse("HOST/X.test").unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(from_principal.as_str(), "host/x.test");
        let parsed: PeerTargetName = "x.test"
            .parse()
            .unwrap_or_else(|e: NameError| panic!("{e}"));
        assert_eq!(parsed.sni_host(), Some("x.test"));

        assert!(PeerTargetName::raw(" Legacy Server / any@thing ").is_ok_and(|name| name.is_raw()));
        assert_eq!(
            PeerTargetName::raw("").unwrap_err().reason(),
            "name is empty"
        );
        assert!(PeerTargetName::raw("a\0b")
            .unwrap_err()
            .reason()
            .contains("U+0000"));
        assert!(PeerTargetName::raw("a\tb").is_err());
        assert!(PeerTargetName::parse("*.example.test").is_err());
    }

    // ---- certificates ----------------------------------------------------------------

    fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().unwrap_or_else(|e| panic!("{e}")))
    }
    fn uri(uri: &str) -> SanType {
        SanType::URI(uri.try_into().unwrap_or_else(|e| panic!("{e}")))
    }
    fn email(email: &str) -> SanType {
        SanType::Rfc822Name(email.try_into().unwrap_or_else(|e| panic!("{e}")))
    }
    fn ip(ip: &str) -> SanType {
        SanType::IpAddress(ip.parse().unwrap_or_else(|e| panic!("{e}")))
    }
    fn upn(upn: &str) -> SanType {
        SanType::OtherName((
            vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
            OtherNameValue::Utf8String(upn.into()),
        ))
    }

    /// A self-signed certificate with these SANs and subject CN, read back from its DER.
    fn certificate(sans: Vec<SanType>, common_name: Option<&str>) -> CertificateNames {
        certificate_for(sans, common_name, vec![])
    }

    /// A user certificate (clientAuth only) with these SANs.
    fn user_certificate(sans: Vec<SanType>) -> CertificateNames {
        certificate_for(sans, None, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// Like [`certificate`], with these extended key usages.
    fn certificate_for(
        sans: Vec<SanType>,
        common_name: Option<&str>,
        ekus: Vec<ExtendedKeyUsagePurpose>,
    ) -> CertificateNames {
        let mut params = CertificateParams::default();
        params.extended_key_usages = ekus;
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(common_name) = common_name {
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
        }
        sign(params)
    }

    /// A self-signed certificate whose only SAN extension is `general_names` (hand-built).
    fn certificate_with_raw_sans(general_names: &[Vec<u8>]) -> CertificateNames {
        certificate_with_raw_sans_for(general_names, vec![])
    }

    fn certificate_with_raw_sans_for(
        general_names: &[Vec<u8>],
        ekus: Vec<ExtendedKeyUsagePurpose>,
    ) -> CertificateNames {
        let mut params = CertificateParams::default();
        params.extended_key_usages = ekus;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let content = tlv(0x30, &general_names.concat());
        params.custom_extensions =
            vec![CustomExtension::from_oid_content(&[2, 5, 29, 17], content)];
        sign(params)
    }

    fn sign(params: CertificateParams) -> CertificateNames {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        CertificateNames::from_der(cert.der()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n <= 0xFF => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// KRB5PrincipalName DER (RFC 4556), without the otherName `[0]` wrapper.
    fn krb5_principal_name(realm: &str, components: &[&str]) -> Vec<u8> {
        let strings: Vec<u8> = components
            .iter()
            .flat_map(|c| tlv(0x1B, c.as_bytes()))
            .collect();
        let name_type = if components.len() == 1 { 1 } else { 3 };
        let principal = tlv(
            0x30,
            &[
                tlv(0xA0, &tlv(0x02, &[name_type])),
                tlv(0xA1, &tlv(0x30, &strings)),
            ]
            .concat(),
        );
        tlv(
            0x30,
            &[
                tlv(0xA0, &tlv(0x1B, realm.as_bytes())),
                tlv(0xA1, &principal),
            ]
            .concat(),
        )
    }

    /// A GeneralName otherName entry: `[0] { type-id, [0] EXPLICIT value }`.
    fn other_name(oid: &[u8], value: &[u8]) -> Vec<u8> {
        tlv(0xA0, &[tlv(0x06, oid), tlv(0xA0, value)].concat())
    }

    /// A Kerberos principal-name SAN (a GeneralName), for hand-built SAN extensions.
    pub(crate) fn krb5_san(realm: &str, components: &[&str]) -> Vec<u8> {
        other_name(
            OID_KRB5_PRINCIPAL_NAME,
            &krb5_principal_name(realm, components),
        )
    }

    /// Checks each (target, expected) against `cert`, with parsed targets and, for raw
    /// ones, targets written `raw:TEXT`.
    fn check_matches(what: &str, cert: &CertificateNames, cases: &[(&str, bool)]) {
        for &(target, expected) in cases {
            let name = match target.strip_prefix("raw:") {
                Some(text) => PeerTargetName::raw(text),
                None => PeerTargetName::parse(target),
            }
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                name.is_proven_by(cert),
                expected,
                "{what}: `{target}` against {:?}",
                cert.presented()
            );
        }
    }

    #[test]
    fn oids_are_the_documented_ones() {
        use x509_parser::asn1_rs::Oid;
        assert_eq!(
            Oid::new(OID_UPN.into()).to_id_string(),
            "1.3.6.1.4.1.311.20.2.3"
        );
        assert_eq!(
            Oid::new(OID_KRB5_PRINCIPAL_NAME.into()).to_id_string(),
            "1.3.6.1.5.2.2"
        );
    }

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

    #[test]
    fn spiffe_ids_need_exactly_one_uri_san() {
        let single = certificate(
            vec![
                uri("spiffe://example.org/ns/prod/sa/web"),
                dns("web.example.test"),
            ],
            None,
        );
        check_matches(
            "one URI SAN",
            &single,
            &[
                ("spiffe://example.org/ns/prod/sa/web", true),
                ("SPIFFE://example.org/ns/prod/sa/web", true),
                ("spiffe://example.org/ns/prod/sa/Web", false),
                ("spiffe://example.org/ns/prod", false),
                ("spiffe://example.org", false),
                ("spiffe://example.com/ns/prod/sa/web", false),
                ("web.example.test", true),
                ("raw:spiffe://example.org/ns/prod/sa/web", true),
            ],
        );
        let upper = certificate(vec![uri("spiffe://Example.ORG/a")], None);
        check_matches(
            "upper-case trust domain SAN",
            &upper,
            &[
                ("spiffe://example.org/a", true),
                ("spiffe://example.org/A", false),
            ],
        );
        let two = certificate(
            vec![uri("spiffe://example.org/a"), uri("spiffe://example.org/b")],
            None,
        );
        check_matches(
            "two URI SANs",
            &two,
            &[
                ("spiffe://example.org/a", false),
                ("spiffe://example.org/b", false),
            ],
        );
        assert!(two.proven().is_empty());
        let mixed = certificate(
            vec![uri("spiffe://example.org/a"), uri("https://example.org/")],
            None,
        );
        check_matches(
            "SPIFFE and HTTPS URI SANs",
            &mixed,
            &[("spiffe://example.org/a", false)],
        );
        let malformed = certificate(vec![uri("spiffe://example.org/a/../b")], None);
        check_matches(
            "malformed SPIFFE SAN",
            &malformed,
            &[
                ("spiffe://example.org/b", false),
                ("raw:spiffe://example.org/a/../b", true),
            ],
        );
    }

    #[test]
    fn users_are_proven_by_email_and_upn_sans_of_a_user_certificate() {
        let mut cert = user_certificate(vec![email("alice@Example.Test"), upn("bob@EXAMPLE.TEST")]);
        assert!(cert.user_certificate);
        cert.common_names.push("Alice".into());
        check_matches(
            "email and UPN SANs",
            &cert,
            &[
                ("user:alice@example.test", true),
                ("user:alice@EXAMPLE.TEST", true),
                ("user:Alice@example.test", false),
                ("user:bob@example.test", true),
                ("user:bob@EXAMPLE.TEST", true),
                ("user:Bob@EXAMPLE.TEST", false),
                ("user:carol@example.test", false),
                ("user:alice@example.org", false),
                ("raw:alice@Example.Test", true),
                ("raw:bob@EXAMPLE.TEST", true),
                ("raw:Alice", true),
                ("raw:alice", false),
            ],
        );
    }

    /// Attack (issue 12, item 3): a machine certificate's email, UPN or single-component
    /// Kerberos SAN would prove a user, whom impersonation then acts as. Only a user
    /// certificate (client authentication only, no machine names) proves users.
    #[test]
    fn only_a_user_certificate_proves_users() {
        use ExtendedKeyUsagePurpose::{Any, ClientAuth, ServerAuth};
        let user_sans = || vec![email("alice@example.test"), upn("alice@EXAMPLE.TEST")];
        let machines = [
            (
                "no extended key usage",
                certificate_for(user_sans(), None, vec![]),
            ),
            (
                "server and client",
                certificate_for(user_sans(), None, vec![ServerAuth, ClientAuth]),
            ),
            (
                "any usage",
                certificate_for(user_sans(), None, vec![ClientAuth, Any]),
            ),
            (
                "with a DNS name",
                certificate_for(
                    [user_sans(), vec![dns("alice.example.test")]].concat(),
                    None,
                    vec![ClientAuth],
                ),
            ),
            (
                "with an IP address",
                certificate_for(
                    [user_sans(), vec![ip("192.0.2.1")]].concat(),
                    None,
                    vec![ClientAuth],
                ),
            ),
            (
                "with a URI",
                certificate_for(
                    [user_sans(), vec![uri("spiffe://example.test/alice")]].concat(),
                    None,
                    vec![ClientAuth],
                ),
            ),
            (
                "with a host principal",
                certificate_with_raw_sans_for(
                    &[
                        krb5_san("EXAMPLE.TEST", &["alice"]),
                        krb5_san("EXAMPLE.TEST", &["host", "alice.example.test"]),
                    ],
                    vec![ClientAuth],
                ),
            ),
        ];
        for (what, cert) in &machines {
            assert!(!cert.user_certificate, "{what}");
            check_matches(
                what,
                cert,
                &[
                    ("user:alice@example.test", false),
                    ("user:alice@EXAMPLE.TEST", false),
                ],
            );
            assert!(
                !cert
                    .proven()
                    .iter()
                    .any(|n| matches!(n, PrincipalName::User(_))),
                "{what}: {:?}",
                cert.proven()
            );
        }
        let user = user_certificate(user_sans());
        assert!(user.user_certificate);
        check_matches(
            "user certificate",
            &user,
            &[("user:alice@example.test", true)],
        );
        let kerberos_user = certificate_with_raw_sans_for(
            &[krb5_san("EXAMPLE.TEST", &["alice"])],
            vec![ClientAuth],
        );
        assert!(kerberos_user.user_certificate);
        check_matches(
            "Kerberos user certificate",
            &kerberos_user,
            &[
                ("user:alice@EXAMPLE.TEST", true),
                ("user:alice@example.test", true),
                ("user:Alice@EXAMPLE.TEST", false),
                ("user:alice@OTHER.TEST", false),
            ],
        );
        assert_eq!(
            kerberos_user
                .proven()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["user:alice@EXAMPLE.TEST"]
        );
    }

    /// The constraints of a CA with these permitted DNS, IP and email subtrees.
    fn constraints(dns: &[&str], ips: &[(&str, u8)], emails: &[&str]) -> PathConstraints {
        use rcgen::{BasicConstraints, CidrSubnet, GeneralSubtree, IsCa, NameConstraints};
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut permitted: Vec<GeneralSubtree> = dns
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.to_string()))
            .collect();
        permitted.extend(ips.iter().map(|(ip, len)| {
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip.parse().unwrap(), *len))
        }));
        permitted.extend(
            emails
                .iter()
                .map(|e| GeneralSubtree::Rfc822Name(e.to_string())),
        );
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: vec![],
        });
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let mut path = PathConstraints::default();
        path.add_certificate_der(&der).unwrap();
        assert!(!path.is_empty());
        path
    }

    /// Attack (issue 12, item 1): webpki checks a name constraint only against names of
    /// the same form, so a CA constrained to `DNS:.dept.example.test` could vouch for
    /// `db.example.test` through a Kerberos principal SAN. A name read across forms must
    /// satisfy the constraints of the form it stands for.
    #[test]
    fn names_read_across_forms_must_satisfy_the_paths_constraints() {
        let cert = certificate_with_raw_sans_for(
            &[
                krb5_san("ANY", &["host", "db.example.test"]),
                krb5_san("ANY", &["host", "db.dept.example.test"]),
                krb5_san("ANY", &["host", "10.1.2.3"]),
                krb5_san("ANY", &["host", "192.0.2.1"]),
            ],
            vec![],
        );
        let dept = constraints(&[".dept.example.test"], &[("10.0.0.0", 8)], &[]);
        let within = cert.clone().within(&dept);
        for (name, unconstrained, constrained) in [
            ("db.example.test", true, false),
            ("host/db.example.test", true, false),
            ("host/db.example.test@ANY", true, false),
            ("db.dept.example.test", true, true),
            ("host/db.dept.example.test@ANY", true, true),
            ("host/10.1.2.3", true, true),
            ("host/192.0.2.1", true, false),
            ("raw:host/db.example.test@ANY", true, false),
        ] {
            check_matches("unconstrained", &cert, &[(name, unconstrained)]);
            check_matches("constrained", &within, &[(name, constrained)]);
        }
        // Users read from a UPN or a Kerberos SAN stand for mailboxes.
        let mut user = user_certificate(vec![upn("alice@EXAMPLE.TEST"), upn("bob@OTHER.TEST")]);
        user.kerberos.push(KerberosPrincipal {
            realm: "OTHER.TEST".into(),
            components: vec!["carol".into()],
        });
        let mailboxes = constraints(&[], &[], &["example.test"]);
        let within = user.clone().within(&mailboxes);
        check_matches(
            "mailbox constraints",
            &within,
            &[
                ("user:alice@EXAMPLE.TEST", true),
                ("user:bob@OTHER.TEST", false),
                ("user:carol@OTHER.TEST", false),
            ],
        );
        check_matches(
            "unconstrained users",
            &user,
            &[("user:bob@OTHER.TEST", true)],
        );
        // DNS constraints leave users alone; and raw names compare with CNs only where
        // the CN, as a DNS name, satisfies them.
        check_matches(
            "DNS constraints",
            &user.clone().within(&dept),
            &[("user:bob@OTHER.TEST", true)],
        );
        let legacy = CertificateNames {
            common_names: vec!["Legacy Server".into(), "db.dept.example.test".into()],
            ..Default::default()
        };
        check_matches(
            "CN under DNS constraints",
            &legacy.within(&dept),
            &[
                ("raw:Legacy Server", false),
                ("raw:db.dept.example.test", true),
            ],
        );
    }

    #[test]
    fn spns_are_proven_by_kerberos_principal_sans() {
        let cert = certificate_with_raw_sans(&[
            krb5_san("EXAMPLE.TEST", &["host", "server.example.test"]),
            krb5_san("EXAMPLE.TEST", &["HTTP", "Web.Example.Test:8080", "api"]),
            krb5_san("EXAMPLE.TEST", &["alice"]),
            krb5_san("EXAMPLE.TEST", &["host", "[2001:db8::1]"]),
        ]);
        assert_eq!(cert.kerberos.len(), 4, "{:?}", cert.presented());
        check_matches(
            "KRB5 SANs",
            &cert,
            &[
                ("host/server.example.test", true),
                ("host/server.example.test@EXAMPLE.TEST", true),
                ("HOST/Server.Example.Test.@EXAMPLE.TEST", true),
                ("host/server.example.test@example.test", false),
                ("host/server.example.test@OTHER.TEST", false),
                ("host/server.example.test:22", false),
                ("host/server.example.test/x", false),
                ("cifs/server.example.test", false),
                ("server.example.test", true),
                ("other.example.test", false),
                ("http/web.example.test:8080/api", true),
                ("http/web.example.test:8080/api@EXAMPLE.TEST", true),
                ("http/web.example.test/api", false),
                ("http/web.example.test:8080", false),
                ("http/web.example.test:8080/API", false),
                ("web.example.test", false),
                ("host/2001:db8::1", true),
                ("2001:db8::1", false),
                // A machine certificate proves no user (see only_a_user_certificate_...).
                ("user:alice@EXAMPLE.TEST", false),
                ("raw:host/server.example.test@EXAMPLE.TEST", true),
                ("raw:HTTP/Web.Example.Test:8080/api@EXAMPLE.TEST", true),
                ("raw:http/web.example.test:8080/api@EXAMPLE.TEST", false),
                ("raw:alice@EXAMPLE.TEST", true),
            ],
        );
        assert_eq!(
            cert.proven()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "host/server.example.test@EXAMPLE.TEST",
                "http/web.example.test:8080/api@EXAMPLE.TEST",
                "host/[2001:db8::1]@EXAMPLE.TEST",
            ]
        );
        assert_eq!(
            cert.presented(),
            [
                "KRB5:host/server.example.test@EXAMPLE.TEST",
                "KRB5:HTTP/Web.Example.Test:8080/api@EXAMPLE.TEST",
                "KRB5:alice@EXAMPLE.TEST",
                "KRB5:host/[2001:db8::1]@EXAMPLE.TEST",
            ]
        );
    }

    #[test]
    fn malformed_other_names_are_skipped() {
        let good = krb5_principal_name("EXAMPLE.TEST", &["host", "server.example.test"]);
        let cert = certificate_with_raw_sans(&[
            // Truncated KRB5PrincipalName inside a well-formed otherName.
            other_name(OID_KRB5_PRINCIPAL_NAME, &good[..good.len() - 3]),
            // Trailing garbage after the KRB5PrincipalName.
            other_name(
                OID_KRB5_PRINCIPAL_NAME,
                &[good.as_slice(), &[0x05, 0x00]].concat(),
            ),
            // A UPN that is an IA5String, not a UTF8String.
            other_name(OID_UPN, &tlv(0x16, b"mallory@EXAMPLE.TEST")),
            // An unknown otherName type.
            other_name(&[0x2B, 0x06, 0x01, 0x04, 0x01, 0x09], &tlv(0x0C, b"x")),
            tlv(0x82, b"ok.example.test"),
        ]);
        assert!(
            cert.kerberos.is_empty() && cert.upns.is_empty(),
            "{:?}",
            cert.presented()
        );
        assert_eq!(cert.dns, ["ok.example.test"]);
        check_matches(
            "malformed other names",
            &cert,
            &[
                ("host/server.example.test", false),
                ("ok.example.test", true),
            ],
        );
    }

    #[test]
    fn kerberos_reader_refuses_every_malformed_encoding() {
        let bare = krb5_principal_name("EXAMPLE.TEST", &["host", "server.example.test"]);
        let wrapped = tlv(0xA0, &bare);
        let expected = KerberosPrincipal {
            realm: "EXAMPLE.TEST".into(),
            components: vec!["host".into(), "server.example.test".into()],
        };
        assert_eq!(der::kerberos_principal_name(&bare).as_ref(), Ok(&expected));
        assert_eq!(
            der::kerberos_principal_name(&wrapped).as_ref(),
            Ok(&expected)
        );

        for encoding in [&bare, &wrapped] {
            for cut in 0..encoding.len() {
                assert!(
                    der::kerberos_principal_name(&encoding[..cut]).is_err(),
                    "truncated at {cut}"
                );
            }
            assert!(
                der::kerberos_principal_name(&[encoding.as_slice(), &[0]].concat()).is_err(),
                "trailing byte"
            );
            // No single-byte change may panic (most are refused, a few still decode).
            for index in 0..encoding.len() {
                for value in [
                    0x00, 0x01, 0x1B, 0x30, 0x7F, 0x80, 0x81, 0x84, 0xA0, 0xA1, 0xFF,
                ] {
                    let mut mutated = encoding.clone();
                    mutated[index] = value;
                    let _ = der::kerberos_principal_name(&mutated);
                }
            }
        }

        let name_type = |content: &[u8]| tlv(0xA0, &tlv(0x02, content));
        let strings = |components: &[&[u8]]| {
            tlv(
                0xA1,
                &tlv(
                    0x30,
                    &components
                        .iter()
                        .flat_map(|c| tlv(0x1B, c))
                        .collect::<Vec<_>>(),
                ),
            )
        };
        let build = |realm: Vec<u8>, principal: Vec<u8>| {
            tlv(
                0x30,
                &[tlv(0xA0, &realm), tlv(0xA1, &tlv(0x30, &principal))].concat(),
            )
        };
        let realm = tlv(0x1B, b"R");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty input", vec![]),
            (
                "indefinite length",
                [&[0x30, 0x80][..], &bare[2..], &[0, 0]].concat(),
            ),
            (
                "realm as UTF8String",
                build(
                    tlv(0x0C, b"R"),
                    [name_type(&[1]), strings(&[b"a"])].concat(),
                ),
            ),
            (
                "empty realm",
                build(tlv(0x1B, b""), [name_type(&[1]), strings(&[b"a"])].concat()),
            ),
            (
                "no components",
                build(realm.clone(), [name_type(&[1]), strings(&[])].concat()),
            ),
            (
                "empty component",
                build(realm.clone(), [name_type(&[1]), strings(&[b""])].concat()),
            ),
            (
                "non-UTF-8 component",
                build(
                    realm.clone(),
                    [name_type(&[1]), strings(&[&[0xC3, 0x28]])].concat(),
                ),
            ),
            (
                "control character",
                build(
                    realm.clone(),
                    [name_type(&[1]), strings(&[b"a\0b"])].concat(),
                ),
            ),
            (
                "empty name-type",
                build(realm.clone(), [name_type(&[]), strings(&[b"a"])].concat()),
            ),
            (
                "huge name-type",
                build(
                    realm.clone(),
                    [name_type(&[1, 2, 3, 4, 5]), strings(&[b"a"])].concat(),
                ),
            ),
            ("missing name-type", build(realm.clone(), strings(&[b"a"]))),
            (
                "extra field",
                build(
                    realm.clone(),
                    [name_type(&[1]), strings(&[b"a"]), tlv(0xA2, &[])].concat(),
                ),
            ),
            (
                "length beyond input",
                vec![0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0xA0],
            ),
        ];
        for (what, encoding) in cases {
            assert!(
                der::kerberos_principal_name(&encoding).is_err(),
                "{what} was accepted"
            );
        }
        assert!(der::kerberos_principal_name(&build(
            realm,
            [name_type(&[1]), strings(&[b"a"])].concat()
        ))
        .is_ok());
    }

    #[test]
    fn malformed_certificates_are_refused_without_panicking() {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let params = CertificateParams::new(vec!["server.example.test".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let der = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .der()
            .to_vec();
        assert!(CertificateNames::from_der(&der).is_ok());
        for cut in 0..der.len() {
            assert!(
                CertificateNames::from_der(&der[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
        let error = CertificateNames::from_der(&[der.as_slice(), &[0]].concat()).unwrap_err();
        assert!(
            error.reason().contains("1 bytes of trailing data"),
            "{error}"
        );
        for index in 0..der.len() {
            let mut mutated = der.clone();
            mutated[index] ^= 0xFF;
            let _ = CertificateNames::from_der(&mutated);
        }
        // A SAN extension that is not a GeneralNames sequence proves nothing.
        let cert = certificate_with_raw_sans(&[vec![0x30, 0x05, 0x01]]);
        assert_eq!(cert, CertificateNames::default());
    }

    #[test]
    fn proven_and_presented_list_every_name() {
        let mut cert = certificate(
            vec![
                dns("*.example.test"),
                dns("Server.Example.Test."),
                dns("server.example.test"),
                dns("*.test"),
                dns("1.2.3.4"),
                ip("192.0.2.1"),
                ip("2001:db8::1"),
                uri("spiffe://example.org/web"),
                email("alice@example.test"),
                email("not-an-address"),
                upn("bob@EXAMPLE.TEST"),
                upn("alice@example.test"),
            ],
            Some("Server"),
        );
        // A machine certificate: its email and UPN SANs prove no user.
        assert!(!cert.user_certificate);
        assert_eq!(cert.proven().len(), 5, "{:?}", cert.proven());
        cert.user_certificate = true; // as if it were one, to see every form listed
        let proven: Vec<String> = cert.proven().iter().map(ToString::to_string).collect();
        assert_eq!(
            proven,
            [
                "*.example.test",
                "server.example.test",
                "192.0.2.1",
                "2001:db8::1",
                "spiffe://example.org/web",
                "user:alice@example.test",
                "user:bob@EXAMPLE.TEST",
            ]
        );
        let kinds: Vec<&str> = cert.proven().iter().map(PrincipalName::kind).collect();
        assert_eq!(
            kinds,
            [
                "DNS name",
                "DNS name",
                "IP address",
                "IP address",
                "SPIFFE ID",
                "user principal",
                "user principal"
            ]
        );
        assert!(
            cert.proven().iter().all(|name| name.is_proven_by(&cert)),
            "a certificate proves what it lists"
        );
        assert!(matches!(&cert.proven()[0], PrincipalName::Dns(name) if name.is_wildcard()));
        assert_eq!(
            cert.presented(),
            [
                "DNS:*.example.test",
                "DNS:Server.Example.Test.",
                "DNS:server.example.test",
                "DNS:*.test",
                "DNS:1.2.3.4",
                "IP:192.0.2.1",
                "IP:2001:db8::1",
                "URI:spiffe://example.org/web",
                "email:alice@example.test",
                "email:not-an-address",
                "UPN:bob@EXAMPLE.TEST",
                "UPN:alice@example.test",
                "CN:Server",
            ]
        );
    }

    #[test]
    fn presented_escapes_control_characters() {
        let cert = CertificateNames {
            dns: vec!["evil\n.example".into()],
            common_names: vec!["a\u{1b}[31m".into()],
            ..Default::default()
        };
        assert_eq!(cert.presented(), ["DNS:evil\\n.example", "CN:a\\u{1b}[31m"]);
        assert!(cert.proven().is_empty());
    }
}
