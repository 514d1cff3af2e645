//! Service principal names, `service/host[:port][/service-name][@REALM]` ([`Spn`]): their
//! parsing, their host and port, and which certificate names prove them (a DNS or IP SAN
//! for the host, or a Kerberos principal-name SAN for the exact principal).
//!
//! Not here: the DNS name rules of the host ([`super::dns`]) and the decoding of the
//! Kerberos SAN itself ([`super::san`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::dns::DnsName;
use super::ip::parse_ipv6_in_brackets;
use super::san::KerberosPrincipal;
use super::{shown, Origin};

/// A service principal name, `service/host[:port][/service-name][@REALM]`.
///
/// The service class is compared case-insensitively and kept in lowercase; the host is a
/// canonical DNS name or an IP address; the service name and the realm keep their case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spn {
    pub(super) service_class: String,
    pub(super) host: Host,
    pub(super) port: Option<u16>,
    pub(super) service_name: Option<String>,
    pub(super) realm: Option<String>,
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

    pub(super) fn parse(text: &str) -> Result<Spn, String> {
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

    pub(super) fn from_parts(
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
    pub(super) fn from_kerberos(principal: &KerberosPrincipal) -> Option<Spn> {
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

    /// Whether `stated`, an SPN a certificate states (in a Kerberos principal name SAN),
    /// is this one: the same service, host, port and service name, and the realm when this
    /// SPN names one.
    pub(super) fn is_stated_by(&self, stated: &Spn) -> bool {
        stated.service_class == self.service_class
            && stated.host == self.host
            && stated.port == self.port
            && stated.service_name == self.service_name
            && self
                .realm
                .as_ref()
                .is_none_or(|realm| stated.realm.as_ref() == Some(realm))
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

/// Parses an SPN's `host[:port]`: a DNS name, an IPv4 address, a bracketed IPv6 address,
/// each with an optional port, or a bare IPv6 address without one.
pub(super) fn parse_host_port(text: &str, origin: Origin) -> Result<(Host, Option<u16>), String> {
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

pub(super) fn parse_port(text: &str) -> Result<u16, String> {
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

pub(super) fn check_service_class(text: &str) -> Result<String, String> {
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

pub(super) fn check_service_name(text: &str) -> Result<String, String> {
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

pub(super) fn check_realm(text: &str) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use crate::name::tests::*;

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
}
