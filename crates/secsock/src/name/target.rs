//! The name a peer must prove (`WSASetSocketPeerTargetName`, [`PeerTargetName`]): a parsed
//! [`PrincipalName`], or the text as given for `IPSEC_PEER_NAME_IS_RAW_FORMAT`, compared
//! exactly with every name of the certificate; and the SNI host it implies.
//!
//! Not here: the parsing of each kind of name (their own modules).

use std::fmt;
use std::str::FromStr;

use super::certificate::CertificateNames;
use super::spn::Host;
use super::{control_character_reason, NameError, PrincipalName};

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
    pub(super) text: String,
    pub(super) principal: Option<PrincipalName>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::*;

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
}
