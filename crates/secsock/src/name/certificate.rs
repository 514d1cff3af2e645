//! The names a leaf certificate presents ([`CertificateNames`]): its SANs by type and its
//! subject CNs, read with x509-parser; what they prove in canonical form; the rule that
//! makes a certificate a *user* certificate; and the narrowing of names read across
//! forms by the validated path's name constraints.
//!
//! Not here: chain validation ([`crate::verify`]), the decoding of the otherName values
//! ([`super::san`]) and each kind's matching rules (their own modules).

use std::collections::HashSet;
use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::constraints::PathConstraints;
use super::dns::{certificate_dns_name, DnsName};
use super::ip::ip_from_octets;
use super::san::{self, KerberosPrincipal, OID_KRB5_PRINCIPAL_NAME, OID_UPN};
use super::spn::{Host, Spn};
use super::{escape_controls, NameError, PrincipalName, SpiffeId, UserPrincipal};

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

    pub(super) fn add(&mut self, general_name: &GeneralName<'_>) {
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
                    if let Ok(upn) = san::user_principal_name(value) {
                        self.upns.push(upn);
                    }
                } else if oid.as_bytes() == OID_KRB5_PRINCIPAL_NAME {
                    if let Ok(principal) = san::kerberos_principal_name(value) {
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

    /// Whether these names prove `name` (see [`PrincipalName::is_proven_by`]).
    pub(super) fn proves(&self, name: &PrincipalName) -> bool {
        match name {
            PrincipalName::Spn(spn) => self.proves_spn(spn),
            PrincipalName::Dns(name) => {
                // `server.example.test` means `host/server.example.test`.
                self.dns.iter().any(|san| name.matches_san(san))
                    || (!name.is_wildcard()
                        && self.stated_spns().any(|spn| {
                            spn.service_class == "host"
                                && matches!(&spn.host, Host::Dns(host) if host == name)
                                && spn.port.is_none()
                                && spn.service_name.is_none()
                        }))
            }
            PrincipalName::Ip(ip) => self.ips.contains(ip),
            // X509-SVID: a certificate proves a SPIFFE ID only with exactly one URI SAN.
            PrincipalName::Spiffe(id) => match self.uris.as_slice() {
                [uri] => SpiffeId::parse(uri, true).is_ok_and(|stated| stated == *id),
                _ => false,
            },
            // Only a user certificate proves a user (see `user_certificate`).
            PrincipalName::User(user) => {
                self.user_certificate
                    && (self
                        .emails
                        .iter()
                        .chain(&self.upns)
                        .any(|address| user.matches_address(address))
                        || self.kerberos.iter().any(|p| user.matches_kerberos(p)))
            }
        }
    }

    fn proves_spn(&self, spn: &Spn) -> bool {
        // A DNS SAN proves the host for every service, port and realm.
        let by_host = match &spn.host {
            Host::Dns(name) => self.dns.iter().any(|san| name.matches_san(san)),
            Host::Ip(ip) => self.ips.contains(ip),
        };
        by_host || self.stated_spns().any(|stated| spn.is_stated_by(&stated))
    }

    /// The SPNs the Kerberos principal name SANs state.
    fn stated_spns(&self) -> impl Iterator<Item = Spn> + '_ {
        self.kerberos.iter().filter_map(Spn::from_kerberos)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::tests::*;
    use crate::name::*;
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};

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
