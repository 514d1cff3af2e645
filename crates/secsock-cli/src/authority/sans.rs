//! Which subject alternative names prove a principal, and nothing wider
//! ([`subject_alt_names`]). Encoding them is the library's (`secsock::name::SubjectAltName`,
//! the same code that reads them back).
//!
//! Not here: signing the certificate (`ca`).

use std::net::IpAddr;

use anyhow::{bail, ensure, Result};
use secsock::name::{Host, KerberosPrincipal, PrincipalName, Spn};

pub use secsock::name::SubjectAltName;

/// The subject alternative names that prove `principal`, and nothing wider.
///
/// - a DNS name: a DNS SAN;
/// - `host/NAME` (no port, no service name): a DNS SAN, plus the exact principal as a
///   Kerberos SAN when the SPN names a realm; `host/ADDRESS`: an IP SAN (likewise);
/// - any other SPN: only the exact principal as a Kerberos SAN (realm: the SPN's, else
///   `realm`), since a DNS SAN would prove every service of the host;
/// - an IP address: an IP SAN;
/// - a SPIFFE ID: its URI SAN, the only one (X509-SVID);
/// - a user: an email SAN (when the address is ASCII) and a UPN SAN, `name@domain`.
///
/// # Errors
///
/// When a Kerberos SAN is needed and `realm` cannot be a Kerberos realm.
pub fn subject_alt_names(principal: &PrincipalName, realm: &str) -> Result<Vec<SubjectAltName>> {
    Ok(match principal {
        PrincipalName::Dns(name) => vec![SubjectAltName::Dns(name.as_str().to_owned())],
        PrincipalName::Ip(ip) => vec![SubjectAltName::Ip(*ip)],
        PrincipalName::Spiffe(id) => vec![SubjectAltName::Uri(id.to_string())],
        PrincipalName::User(user) => {
            let address = format!("{}@{}", user.name(), user.domain());
            // rfc822Name is an IA5String; the UPN (UTF-8) alone proves a non-ASCII user.
            let mut sans = Vec::with_capacity(2);
            if address.is_ascii() {
                sans.push(SubjectAltName::Email(address.clone()));
            }
            sans.push(SubjectAltName::Upn(address));
            sans
        }
        PrincipalName::Spn(spn) => {
            let whole_host = spn.service_class() == "host"
                && spn.port().is_none()
                && spn.service_name().is_none();
            if whole_host {
                let mut sans = vec![match spn.host() {
                    Host::Dns(name) => SubjectAltName::Dns(name.as_str().to_owned()),
                    Host::Ip(ip) => SubjectAltName::Ip(*ip),
                }];
                if let Some(own_realm) = spn.realm() {
                    sans.push(kerberos_san(spn, own_realm));
                }
                sans
            } else {
                let realm = match spn.realm() {
                    Some(own_realm) => own_realm,
                    None => check_realm(realm)?,
                };
                vec![kerberos_san(spn, realm)]
            }
        }
    })
}

/// The Kerberos SAN stating exactly `spn` in `realm`.
fn kerberos_san(spn: &Spn, realm: &str) -> SubjectAltName {
    let mut host = match spn.host() {
        // Brackets, so that `host:port` can always be split again.
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        host => host.to_string(),
    };
    if let Some(port) = spn.port() {
        host.push_str(&format!(":{port}"));
    }
    let mut components = vec![spn.service_class().to_owned(), host];
    components.extend(spn.service_name().map(str::to_owned));
    SubjectAltName::Kerberos {
        principal: KerberosPrincipal {
            realm: realm.to_owned(),
            components,
        },
        name_type: KerberosPrincipal::NT_SRV_INST,
    }
}

/// Refuses a realm that a Kerberos SAN cannot carry so that it reads back (as secsock's
/// name matching reads it).
fn check_realm(realm: &str) -> Result<&str> {
    ensure!(
        !realm.is_empty(),
        "the Kerberos realm is empty; SPNs without `@REALM` need one"
    );
    if let Some(c) = realm
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@'))
    {
        bail!(
            "the Kerberos realm `{}` contains {c:?}; name the realm in the SPN (`...@REALM`)",
            realm.escape_debug()
        );
    }
    Ok(realm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::tests::*;

    #[test]
    fn each_principal_form_gets_exactly_the_sans_that_prove_it() {
        let dns = |name: &str| SubjectAltName::Dns(name.to_owned());
        let ip = |text: &str| SubjectAltName::Ip(text.parse().unwrap());
        let krb5 = |realm: &str, components: &[&str]| SubjectAltName::Kerberos {
            principal: KerberosPrincipal {
                realm: realm.to_owned(),
                components: components.iter().map(|c| c.to_string()).collect(),
            },
            name_type: KerberosPrincipal::NT_SRV_INST,
        };
        let cases = [
            ("host/server.example.test", vec![dns("server.example.test")]),
            (
                "host/server.example.test@OTHER.TEST",
                vec![
                    dns("server.example.test"),
                    krb5("OTHER.TEST", &["host", "server.example.test"]),
                ],
            ),
            ("Server.Example.TEST", vec![dns("server.example.test")]),
            (
                "http/web.example.test",
                vec![krb5(REALM, &["http", "web.example.test"])],
            ),
            (
                "host/web.example.test:22",
                vec![krb5(REALM, &["host", "web.example.test:22"])],
            ),
            (
                "host/web.example.test/ssh",
                vec![krb5(REALM, &["host", "web.example.test", "ssh"])],
            ),
            (
                "http/web.example.test:8080/app@OTHER.TEST",
                vec![krb5(
                    "OTHER.TEST",
                    &["http", "web.example.test:8080", "app"],
                )],
            ),
            ("host/192.0.2.7", vec![ip("192.0.2.7")]),
            (
                "host/192.0.2.7@EXAMPLE.TEST",
                vec![ip("192.0.2.7"), krb5(REALM, &["host", "192.0.2.7"])],
            ),
            (
                "http/[2001:db8::1]:443",
                vec![krb5(REALM, &["http", "[2001:db8::1]:443"])],
            ),
            (
                "ldap/2001:db8::1",
                vec![krb5(REALM, &["ldap", "[2001:db8::1]"])],
            ),
            ("192.0.2.7", vec![ip("192.0.2.7")]),
            ("2001:db8::1", vec![ip("2001:db8::1")]),
            (
                "spiffe://example.test/ns/db",
                vec![SubjectAltName::Uri("spiffe://example.test/ns/db".into())],
            ),
            (
                "user:alice@EXAMPLE.TEST",
                vec![
                    SubjectAltName::Email("alice@EXAMPLE.TEST".into()),
                    SubjectAltName::Upn("alice@EXAMPLE.TEST".into()),
                ],
            ),
            (
                "user:jörg@EXAMPLE.TEST",
                vec![SubjectAltName::Upn("jörg@EXAMPLE.TEST".into())],
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(
                subject_alt_names(&principal(name), REALM).unwrap(),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn an_spn_without_realm_needs_a_usable_default_realm() {
        for realm in ["", "EXAMPLE TEST", "A/B", "A@B"] {
            let error = subject_alt_names(&principal("http/web.example.test"), realm).unwrap_err();
            assert!(error.to_string().contains("realm"), "{realm:?}: {error}");
        }
        // Only SPNs that need a Kerberos SAN need the default realm.
        assert!(subject_alt_names(&principal("host/web.example.test"), "").is_ok());
        assert!(subject_alt_names(&principal("http/web.example.test@R"), "").is_ok());
    }
}
