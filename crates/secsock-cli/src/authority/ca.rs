//! The trust domain's CA: [`CertificateAuthority::create`] makes one,
//! [`CertificateAuthority::load`] reads one back (refusing a key that others can read, a
//! certificate that is no CA, a key of another CA), and [`CertificateAuthority::issue`]
//! signs an identity with exactly the SANs of [`subject_alt_names`].
//!
//! Not here: which SANs those are (`sans`) or where the files go (`files`).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::Read;
use std::str::FromStr;
use std::time::SystemTime;

use anyhow::{anyhow, bail, ensure, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use secsock::name::PrincipalName;
use secsock::policy::{read_private_key_pem, PolicyErrorKind};
use time::OffsetDateTime;
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::X509Name;

use super::sans::{subject_alt_names, SubjectAltName};
use std::path::Path;

/// How far back a new certificate's validity starts, so that a peer whose clock is a little
/// behind does not see it as not yet valid.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// What follows the trust domain in a CA's common name.
const CA_NAME_SUFFIX: &str = " secsock CA";
/// subjectAltName, 2.5.29.17.
const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];

/// Key algorithm for the CA and identities.
///
/// ```ignore
/// assert_eq!("Ed25519".parse::<KeyAlgorithm>()?, KeyAlgorithm::Ed25519);
/// assert_eq!(KeyAlgorithm::default().to_string(), "p256");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256: understood by every TLS stack (the default).
    #[default]
    EcdsaP256,
    /// Ed25519: small and fast, but not accepted by some older TLS peers.
    Ed25519,
}

impl KeyAlgorithm {
    /// A description for people: `ECDSA P-256` or `Ed25519`.
    pub fn description(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::Ed25519 => "Ed25519",
        }
    }

    pub(super) fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    fn generate_key(self) -> Result<KeyPair> {
        KeyPair::generate_for(self.signature_algorithm())
            .with_context(|| format!("cannot generate an {} key", self.description()))
    }
}

/// Displays the name [`FromStr`] reads back: `p256` or `ed25519`.
impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "p256",
            KeyAlgorithm::Ed25519 => "ed25519",
        })
    }
}

/// Reads `p256` or `ecdsa-p256`, and `ed25519`, in any case.
impl FromStr for KeyAlgorithm {
    type Err = UnknownKeyAlgorithm;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "p256" | "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            _ => Err(UnknownKeyAlgorithm(text.to_owned())),
        }
    }
}

/// A key algorithm name that is neither `p256` (`ecdsa-p256`) nor `ed25519`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKeyAlgorithm(pub String);

impl fmt::Display for UnknownKeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown key algorithm `{}`; use `p256` (ECDSA P-256, the default) or `ed25519`",
            self.0.escape_debug()
        )
    }
}

impl std::error::Error for UnknownKeyAlgorithm {}

/// A trust domain's certificate authority: its certificate and the key that signs with it.
pub struct CertificateAuthority {
    pub(super) certificate_pem: String,
    certificate_der: CertificateDer<'static>,
    pub(super) private_key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's subjectKeyIdentifier, repeated as each identity's authorityKeyIdentifier.
    subject_key_id: Option<Vec<u8>>,
    not_after: OffsetDateTime,
    domain: String,
}

/// Shows the certificate's facts, never the key.
impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("issuer", &self.issuer)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA for `domain` (CN "<domain> secsock CA", O "secsock"), valid `days`,
    /// basicConstraints CA critical with pathLen 0, keyUsage keyCertSign+cRLSign critical,
    /// nameConstraints: none.
    ///
    /// ```ignore
    /// let ca = CertificateAuthority::create("example.test", KeyAlgorithm::EcdsaP256, 3650)?;
    /// let name = PrincipalName::parse("host/server.example.test")?;
    /// let identity = ca.issue(&name, "EXAMPLE.TEST", KeyAlgorithm::EcdsaP256, 365)?;
    /// write_ca(dir, &ca, false)?;
    /// write_identity_dir(dir, &identity, ca.certificate_pem(), Some(("ca/ca.crt", "ca/ca.key")), false)?;
    /// ```
    pub fn create(domain: &str, algorithm: KeyAlgorithm, days: u32) -> Result<Self> {
        ensure!(!domain.trim().is_empty(), "the trust domain name is empty");
        ensure!(days > 0, "a CA must be valid for at least one day");
        let key = algorithm.generate_key()?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "secsock");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{domain}{CA_NAME_SUFFIX}"));
        params.serial_number = Some(random_serial()?);
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + time::Duration::days(i64::from(days));
        // pathLen 0: this CA signs identities only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let certificate = params
            .self_signed(&key)
            .context("cannot sign the CA certificate")?;
        let private_key_pem = key.serialize_pem();
        // The same checks as for a loaded CA, so that both kinds issue the same way.
        Self::from_parts(
            certificate.der().clone(),
            certificate.pem(),
            key,
            private_key_pem,
        )
        .map_err(|reason| anyhow!("the new CA certificate cannot be used: {reason}"))
    }

    /// Loads an existing CA (certificate PEM file + key file).
    ///
    /// The key file is read with [`read_private_key_pem`], which refuses keys readable by
    /// group or others; the error names the file and says how to fix it. Checks that the
    /// certificate file holds exactly one certificate, that it is a CA (basicConstraints
    /// CA:TRUE, keyCertSign if it has a keyUsage) and that the key matches it.
    pub fn load(certificate: &Path, private_key: &Path) -> Result<Self> {
        let bytes = fs::read(certificate)
            .with_context(|| format!("cannot read the CA certificate {}", certificate.display()))?;
        let mut found = Vec::new();
        for item in CertificateDer::pem_slice_iter(&bytes) {
            let der = item.map_err(|e| {
                anyhow!(
                    "{}: not a readable PEM certificate file ({e})",
                    certificate.display()
                )
            })?;
            found.push(der);
        }
        let der = match <[_; 1]>::try_from(found) {
            Ok([der]) => der,
            Err(found) if found.is_empty() => bail!(
                "{} holds no PEM certificate (expected one \"CERTIFICATE\" block: the CA certificate)",
                certificate.display()
            ),
            Err(found) => bail!(
                "{} holds {} certificates; the CA certificate file must hold exactly one",
                certificate.display(),
                found.len()
            ),
        };
        let certificate_pem = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{} is not a text (PEM) file", certificate.display()))?;
        check_is_ca(&der).map_err(|reason| anyhow!("{}: {reason}", certificate.display()))?;

        let (key_der, private_key_pem) =
            read_private_key_pem(private_key).map_err(|kind| ca_key_error(private_key, kind))?;
        let key = KeyPair::try_from(&key_der).map_err(|_| {
            anyhow!(
                "{}: the CA private key is not one secsock can sign with \
                 (ECDSA P-256/P-384/P-521, Ed25519 or RSA)",
                private_key.display()
            )
        })?;
        Self::from_parts(der, certificate_pem, key, private_key_pem).map_err(|reason| {
            anyhow!(
                "cannot use {} with {}: {reason}",
                certificate.display(),
                private_key.display()
            )
        })
    }

    /// The CA certificate, PEM: what every host of the trust domain trusts.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA private key, PEM (PKCS#8 for a new CA; as read for a loaded one).
    pub fn private_key_pem(&self) -> String {
        self.private_key_pem.clone()
    }

    /// The trust domain, as named by the CA's subject CN `<domain> secsock CA`. For a CA
    /// not made by secsock, its whole CN (empty without one).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// When the CA certificate expires; no identity it issues outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after.into()
    }

    /// Issues an identity for `principal`, valid `days` (not_before = now - 5 minutes for
    /// clock skew, not_after never later than the CA's), with the subject CN = the
    /// principal's canonical text and the SANs of [`subject_alt_names`]. `realm` is the
    /// Kerberos realm for SPNs that name none (the trust domain uppercased).
    ///
    /// Machine identities (DNS name, SPN, IP address, SPIFFE ID) may serve and connect
    /// (serverAuth + clientAuth); a user identity only connects (clientAuth).
    pub fn issue(
        &self,
        principal: &PrincipalName,
        realm: &str,
        algorithm: KeyAlgorithm,
        days: u32,
    ) -> Result<IssuedIdentity> {
        ensure!(days > 0, "an identity must be valid for at least one day");
        let now = OffsetDateTime::now_utc();
        if self.not_after <= now {
            bail!(
                "the CA certificate expired on {}; create a new trust domain with `secsock init`",
                rfc3339(self.not_after)
            );
        }
        let sans = subject_alt_names(principal, realm)?;
        let key = algorithm.generate_key()?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, principal.to_string());
        params.serial_number = Some(random_serial()?);
        params.not_before = now - CLOCK_SKEW;
        params.not_after = (now + time::Duration::days(i64::from(days))).min(self.not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match principal {
            PrincipalName::User(_) => vec![ExtendedKeyUsagePurpose::ClientAuth],
            _ => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.use_authority_key_identifier_extension = self.subject_key_id.is_some();
        // rcgen's own `subject_alt_names` cannot write Kerberos principal names.
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            OID_SUBJECT_ALT_NAME,
            SubjectAltName::extension_value(&sans),
        )];
        let certificate = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("cannot sign the certificate for {principal}"))?;
        self.check_issued_by_me(certificate.der())?;

        Ok(IssuedIdentity {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
            principal: principal.clone(),
            not_after: strip_subseconds(params.not_after).into(),
        })
    }

    /// Builds the CA from its certificate and key, checking that they belong together.
    fn from_parts(
        certificate_der: CertificateDer<'static>,
        certificate_pem: String,
        key: KeyPair,
        private_key_pem: String,
    ) -> Result<Self, String> {
        let cert = parse_certificate(&certificate_der)?;
        check_ca_certificate(&cert)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(
                "the private key does not match the certificate's public key \
                        (is it the key of another CA?)"
                    .to_owned(),
            );
        }
        let subject_key_id =
            cert.iter_extensions()
                .find_map(|extension| match extension.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                    _ => None,
                });
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name_of(cert.subject()).map_err(|reason| {
            format!("its subject cannot be copied into certificates it issues: {reason}")
        })?;
        params.key_identifier_method = match &subject_key_id {
            Some(id) => KeyIdMethod::PreSpecified(id.clone()),
            None => KeyIdMethod::Sha256,
        };
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|_| "its expiry date is out of range".to_owned())?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default();
        let domain = common_name
            .strip_suffix(CA_NAME_SUFFIX)
            .unwrap_or(common_name)
            .to_owned();
        Ok(CertificateAuthority {
            domain,
            certificate_pem,
            certificate_der,
            private_key_pem,
            issuer: Issuer::new(params, key),
            subject_key_id,
            not_after,
        })
    }

    /// Chains are built by name: an issued certificate's issuer must be byte for byte the
    /// CA's subject. rcgen re-encodes the name, so make sure it did so faithfully.
    fn check_issued_by_me(&self, issued: &CertificateDer<'_>) -> Result<()> {
        let ca = parse_certificate(&self.certificate_der).map_err(|e| anyhow!(e))?;
        let issued = parse_certificate(issued).map_err(|e| anyhow!(e))?;
        ensure!(
            issued.issuer().as_raw() == ca.subject().as_raw(),
            "the CA's subject `{}` cannot be reproduced exactly in the certificates it issues, \
             so they would not chain to it; use a CA made by `secsock init`",
            ca.subject()
        );
        Ok(())
    }
}

/// An identity issued by a [`CertificateAuthority`]: what `write_identity_dir` writes.
pub struct IssuedIdentity {
    /// The leaf certificate only, PEM.
    pub certificate_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub private_key_pem: String,
    /// The principal it proves.
    pub principal: PrincipalName,
    /// When the certificate expires.
    pub not_after: SystemTime,
}

/// Shows everything but the private key.
impl fmt::Debug for IssuedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedIdentity")
            .field("principal", &self.principal)
            .field("not_after", &self.not_after)
            .field("certificate_pem", &self.certificate_pem)
            .finish_non_exhaustive()
    }
}

/// The CA key file could not be used: say which file and how to fix it.
fn ca_key_error(path: &Path, kind: PolicyErrorKind) -> anyhow::Error {
    match kind {
        // Says the file, its mode and `run chmod 600 FILE`.
        PolicyErrorKind::KeyPermissions { .. } => anyhow!("the CA private key {kind}"),
        PolicyErrorKind::MissingFile { error, .. } => anyhow!(
            "cannot read the CA private key {}: {error}; give the path of the CA's key \
             (`secsock init` writes it as ca/ca.key)",
            path.display()
        ),
        PolicyErrorKind::BadPem { what, .. } => anyhow!(
            "{}: {what}; the CA private key must be an unencrypted PEM key \
             (PKCS#8, SEC1 or PKCS#1), mode 0600",
            path.display()
        ),
        other => anyhow!("cannot use the CA private key {}: {other}", path.display()),
    }
}

pub(super) fn parse_certificate<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => {
            Err("the certificate has trailing data after it".to_owned())
        }
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(format!("not a well-formed X.509 certificate ({e})")),
    }
}

fn check_is_ca(der: &[u8]) -> Result<(), String> {
    check_ca_certificate(&parse_certificate(der)?)
}

/// A CA certificate: basicConstraints CA:TRUE, and keyCertSign if it has a keyUsage.
fn check_ca_certificate(cert: &X509Certificate<'_>) -> Result<(), String> {
    let subject = cert.subject();
    match cert.basic_constraints() {
        Ok(Some(constraints)) if constraints.value.ca => {}
        Ok(_) => {
            return Err(format!(
                "`{subject}` is not a CA certificate (no basicConstraints CA:TRUE); \
                 give the trust domain's CA certificate, e.g. ca/ca.crt"
            ))
        }
        Err(e) => return Err(format!("its basicConstraints cannot be read ({e})")),
    }
    match cert.key_usage() {
        Ok(Some(usage)) if !usage.value.key_cert_sign() => Err(format!(
            "`{subject}` may not sign certificates (its keyUsage lacks keyCertSign)"
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("its keyUsage cannot be read ({e})")),
    }
}

/// The CA's subject as rcgen writes it, keeping each attribute's string type so that the
/// issuer name of what it signs is the same bytes.
fn distinguished_name_of(name: &X509Name<'_>) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    let mut seen = HashSet::new();
    for rdn in name.iter() {
        let mut attributes = rdn.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return Err("it has a multi-valued RDN".to_owned());
        };
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or("an attribute type is too large")?
            .collect();
        let dn_type = DnType::from_oid(&oid);
        if !seen.insert(dn_type.clone()) {
            return Err(format!("attribute {} appears twice", attribute.attr_type()));
        }
        let value = attribute.attr_value();
        let text = || {
            std::str::from_utf8(value.data)
                .map_err(|_| format!("attribute {} is not text", attribute.attr_type()))
        };
        let unsupported = |_| format!("attribute {} cannot be re-encoded", attribute.attr_type());
        let dn_value = match value.header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            Tag::PrintableString => {
                DnValue::PrintableString(text()?.try_into().map_err(unsupported)?)
            }
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into().map_err(unsupported)?),
            Tag::T61String => DnValue::TeletexString(text()?.try_into().map_err(unsupported)?),
            Tag::BmpString => DnValue::BmpString(
                rcgen::string::BmpString::from_utf16be(value.data.to_vec()).map_err(|_| {
                    format!("attribute {} is not valid UCS-2", attribute.attr_type())
                })?,
            ),
            Tag::UniversalString => DnValue::UniversalString(
                rcgen::string::UniversalString::from_utf32be(value.data.to_vec()).map_err(
                    |_| format!("attribute {} is not valid UCS-4", attribute.attr_type()),
                )?,
            ),
            tag => {
                return Err(format!(
                    "attribute {} has an unsupported string type ({tag})",
                    attribute.attr_type()
                ))
            }
        };
        dn.push(dn_type, dn_value);
    }
    Ok(dn)
}

/// 16 random octets, positive and always 16 octets long in DER (top bits 01).
fn random_serial() -> Result<SerialNumber> {
    let mut octets = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut octets))
        .context("cannot read /dev/urandom for a certificate serial number")?;
    octets[0] = (octets[0] & 0x3F) | 0x40;
    Ok(SerialNumber::from_slice(&octets))
}

/// Certificates hold whole seconds.
fn strip_subseconds(time: OffsetDateTime) -> OffsetDateTime {
    time.replace_nanosecond(0).unwrap_or(time)
}

pub(super) fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::tests::*;
    use crate::authority::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_algorithm_parses_in_any_case_and_displays_what_it_parses() {
        for (text, algorithm) in [
            ("p256", KeyAlgorithm::EcdsaP256),
            ("P256", KeyAlgorithm::EcdsaP256),
            ("ecdsa-p256", KeyAlgorithm::EcdsaP256),
            ("ECDSA-P256", KeyAlgorithm::EcdsaP256),
            ("ed25519", KeyAlgorithm::Ed25519),
            ("Ed25519", KeyAlgorithm::Ed25519),
        ] {
            assert_eq!(text.parse::<KeyAlgorithm>().unwrap(), algorithm, "{text}");
        }
        for algorithm in ALGORITHMS {
            assert_eq!(
                algorithm.to_string().parse::<KeyAlgorithm>().unwrap(),
                algorithm
            );
        }
        assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::EcdsaP256);
        let error = "rsa".parse::<KeyAlgorithm>().unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown key algorithm `rsa`; use `p256` (ECDSA P-256, the default) or `ed25519`"
        );
    }

    #[test]
    fn a_new_ca_is_a_path_length_zero_ca_named_after_its_domain() {
        for algorithm in ALGORITHMS {
            let ca = new_ca(algorithm);
            assert_eq!(ca.domain(), "example.test");
            let der = der_of(ca.certificate_pem());
            let cert = parse_certificate(&der).unwrap();
            assert_eq!(
                cert.subject().to_string(),
                "O=secsock, CN=example.test secsock CA"
            );
            assert_eq!(
                cert.issuer().as_raw(),
                cert.subject().as_raw(),
                "self-signed"
            );
            let constraints = cert.basic_constraints().unwrap().unwrap();
            assert!(constraints.critical && constraints.value.ca);
            assert_eq!(constraints.value.path_len_constraint, Some(0));
            let usage = cert.key_usage().unwrap().unwrap();
            assert!(usage.critical && usage.value.key_cert_sign() && usage.value.crl_sign());
            assert!(!usage.value.digital_signature());
            assert!(cert.name_constraints().unwrap().is_none());
            assert!(cert.subject_alternative_name().unwrap().is_none());
            assert_eq!(cert.raw_serial().len(), 16);
            let days = (cert.validity().not_after.timestamp()
                - cert.validity().not_before.timestamp())
                / 86_400;
            assert_eq!(days, 30, "30 days and 5 minutes");
            assert!(ca
                .private_key_pem()
                .starts_with("-----BEGIN PRIVATE KEY-----"));
        }
        assert!(CertificateAuthority::create("", KeyAlgorithm::EcdsaP256, 30).is_err());
        assert!(CertificateAuthority::create("example.test", KeyAlgorithm::EcdsaP256, 0).is_err());
    }

    #[test]
    fn an_identity_never_outlives_its_ca() {
        let ca = CertificateAuthority::create("example.test", KeyAlgorithm::EcdsaP256, 10).unwrap();
        let identity = ca
            .issue(
                &principal("a.example.test"),
                REALM,
                KeyAlgorithm::Ed25519,
                365,
            )
            .unwrap();
        assert_eq!(identity.not_after, ca.not_after());
        let error = ca
            .issue(
                &principal("a.example.test"),
                REALM,
                KeyAlgorithm::Ed25519,
                0,
            )
            .unwrap_err();
        assert!(error.to_string().contains("at least one day"), "{error}");
    }

    #[test]
    fn a_written_ca_loads_back_and_issues_chaining_identities() {
        for algorithm in ALGORITHMS {
            let dir = tempfile::tempdir().unwrap();
            let ca = new_ca(algorithm);
            write_ca(dir.path(), &ca, false).unwrap();
            let loaded = CertificateAuthority::load(
                &dir.path().join("ca/ca.crt"),
                &dir.path().join("ca/ca.key"),
            )
            .unwrap();
            assert_eq!(loaded.certificate_pem(), ca.certificate_pem());
            assert_eq!(loaded.private_key_pem(), ca.private_key_pem());
            assert_eq!(loaded.domain(), "example.test");
            assert_eq!(loaded.not_after(), ca.not_after());
            for form in FORMS {
                let identity = loaded.issue(&principal(form), REALM, algorithm, 7).unwrap();
                assert_leaf_profile(&ca, &identity);
            }
        }
    }

    #[test]
    fn load_refuses_a_ca_key_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        write_ca(dir.path(), &new_ca(KeyAlgorithm::EcdsaP256), false).unwrap();
        let key = dir.path().join("ca/ca.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let error = CertificateAuthority::load(&dir.path().join("ca/ca.crt"), &key)
            .unwrap_err()
            .to_string();
        assert!(error.contains("chmod 600"), "{error}");
        assert!(error.contains(&key.display().to_string()), "{error}");
        assert!(error.contains("CA private key"), "{error}");
    }

    #[test]
    fn load_refuses_a_key_of_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        write_ca(
            &dir.path().join("one"),
            &new_ca(KeyAlgorithm::EcdsaP256),
            false,
        )
        .unwrap();
        write_ca(
            &dir.path().join("two"),
            &new_ca(KeyAlgorithm::EcdsaP256),
            false,
        )
        .unwrap();
        let error = CertificateAuthority::load(
            &dir.path().join("one/ca/ca.crt"),
            &dir.path().join("two/ca/ca.key"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("does not match"), "{error}");
        assert!(error.contains("two/ca/ca.key"), "{error}");
    }

    #[test]
    fn load_refuses_a_certificate_that_is_not_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let identity = issue(&new_ca(KeyAlgorithm::EcdsaP256), "server.example.test");
        let policy = write_identity_dir(dir.path(), &identity, "", None, false).unwrap();
        let error = CertificateAuthority::load(
            &dir.path().join("identity/host.crt"),
            &dir.path().join("identity/host.key"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("not a CA certificate"), "{error}");
        assert!(error.contains("identity/host.crt"), "{error}");
        // Not a certificate at all, and a missing key.
        let error = CertificateAuthority::load(&policy, &dir.path().join("identity/host.key"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        let ca_dir = tempfile::tempdir().unwrap();
        write_ca(ca_dir.path(), &new_ca(KeyAlgorithm::Ed25519), false).unwrap();
        let missing = ca_dir.path().join("ca/missing.key");
        let error = CertificateAuthority::load(&ca_dir.path().join("ca/ca.crt"), &missing)
            .unwrap_err()
            .to_string();
        assert!(error.contains(&missing.display().to_string()), "{error}");
    }

    #[test]
    fn load_refuses_a_certificate_file_with_several_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(KeyAlgorithm::EcdsaP256);
        write_ca(dir.path(), &ca, false).unwrap();
        let bundle = dir.path().join("bundle.crt");
        let other = new_ca(KeyAlgorithm::EcdsaP256);
        fs::write(
            &bundle,
            format!("{}{}", ca.certificate_pem(), other.certificate_pem()),
        )
        .unwrap();
        let error = CertificateAuthority::load(&bundle, &dir.path().join("ca/ca.key"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("holds 2 certificates"), "{error}");
    }
}
