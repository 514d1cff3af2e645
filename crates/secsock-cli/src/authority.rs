//! A trust domain's certificate authority, and the identities it issues: the certificate
//! and file logic behind `secsock init` and `secsock issue`.
//!
//! [`CertificateAuthority::create`] makes a new CA, [`CertificateAuthority::load`] reads one
//! back (refusing a key that others can read), and [`CertificateAuthority::issue`] makes an
//! identity for any principal form, with exactly the subject alternative names that prove
//! that principal and nothing more ([`subject_alt_names`] says which). [`write_ca`] and
//! [`write_identity_dir`] put them on disk the way mkcert does: ready to use, private keys
//! mode 0600 from the moment they exist, and a `policy.toml` that refers to its files by
//! relative paths so that the directory can be copied to another host as-is.
//!
//! What it is not: flag parsing and printing (`main.rs`), or a CA service. A trust domain
//! that outgrows local files moves to Kerberos or SPIFFE (SPEC §2).
// main.rs wires this module up (`secsock init`, `secsock issue`); until then parts are unused.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, ensure, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use secsock::name::{Host, KerberosPrincipal, PrincipalName, Spn};
// The SAN encoding is the library's, the same code that reads them back.
pub use secsock::name::SubjectAltName;
use secsock::policy::{read_private_key_pem, PolicyErrorKind, PolicyFile};
use time::OffsetDateTime;
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::X509Name;

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

    fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
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
    certificate_pem: String,
    certificate_der: CertificateDer<'static>,
    private_key_pem: String,
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

/// Writes an identity directory that another host can copy and use as-is:
/// `DIR/identity/host.crt` (0644), `DIR/identity/host.key` (0600 from the moment it
/// exists), `DIR/trust/ca.crt` (0644) and `DIR/policy.toml` (0644) naming them by relative
/// paths, with an `[authority]` section when `authority` gives the CA's certificate and key
/// paths (relative to DIR). Directories are created 0755, `identity/` 0700 (less if the
/// umask says so). The policy is written last, so it never names a file not yet there.
///
/// Returns the path of `policy.toml`.
///
/// # Errors
///
/// Without `force`, when `DIR/policy.toml` or `DIR/identity/host.key` exists (an identity
/// is never silently replaced); when a file cannot be written.
pub fn write_identity_dir(
    dir: &Path,
    identity: &IssuedIdentity,
    ca_certificate_pem: &str,
    authority: Option<(&str, &str)>,
    force: bool,
) -> Result<PathBuf> {
    let policy = dir.join("policy.toml");
    let certificate = dir.join("identity/host.crt");
    let private_key = dir.join("identity/host.key");
    let anchor = dir.join("trust/ca.crt");
    if !force {
        refuse_to_replace(&[&policy, &private_key], "the identity")?;
    }
    create_dir(dir, 0o755)?;
    create_dir(&dir.join("identity"), 0o700)?;
    create_dir(&dir.join("trust"), 0o755)?;
    write_file(
        &private_key,
        identity.private_key_pem.as_bytes(),
        FileMode::Secret,
    )?;
    write_file(
        &certificate,
        identity.certificate_pem.as_bytes(),
        FileMode::Public,
    )?;
    write_file(&anchor, ca_certificate_pem.as_bytes(), FileMode::Public)?;
    write_file(
        &policy,
        policy_text(identity, authority)?.as_bytes(),
        FileMode::Public,
    )?;
    Ok(policy)
}

/// Writes the CA's files: `DIR/ca/ca.crt` (0644) and `DIR/ca/ca.key` (0600 from the moment
/// it exists), in `DIR/ca/` (0700).
///
/// # Errors
///
/// Without `force`, when either file exists: replacing a CA makes every identity it issued
/// untrusted. When a file cannot be written.
pub fn write_ca(dir: &Path, ca: &CertificateAuthority, force: bool) -> Result<()> {
    let ca_dir = dir.join("ca");
    let certificate = ca_dir.join("ca.crt");
    let private_key = ca_dir.join("ca.key");
    if !force {
        refuse_to_replace(
            &[&private_key, &certificate],
            "the CA (every identity it issued would stop being trusted)",
        )?;
    }
    create_dir(dir, 0o755)?;
    create_dir(&ca_dir, 0o700)?;
    write_file(
        &private_key,
        ca.private_key_pem.as_bytes(),
        FileMode::Secret,
    )?;
    write_file(
        &certificate,
        ca.certificate_pem.as_bytes(),
        FileMode::Public,
    )?;
    Ok(())
}

/// This host's name for the default principal: the kernel hostname
/// (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`), lowercased; with
/// `domain`, a hostname without a dot gets `.<domain>` appended.
pub fn this_host_name(domain: Option<&str>) -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let environment = std::env::var("HOSTNAME").ok();
    host_name_from(kernel.as_deref(), environment.as_deref(), domain)
}

/// [`this_host_name`]'s decision, from the sources it read.
fn host_name_from(kernel: Option<&str>, environment: Option<&str>, domain: Option<&str>) -> String {
    let host = [kernel, environment]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|name| !name.is_empty())
        .unwrap_or("localhost")
        .to_ascii_lowercase();
    let domain = domain.map(|d| d.trim().trim_matches('.').to_ascii_lowercase());
    match domain {
        Some(domain) if !domain.is_empty() && !host.contains('.') => format!("{host}.{domain}"),
        _ => host,
    }
}

/// The policy file of an identity directory: comments for the person who reads it, then
/// the policy, written by the library's own description of the file.
fn policy_text(identity: &IssuedIdentity, authority: Option<(&str, &str)>) -> Result<String> {
    let mut file = PolicyFile::new("identity/host.crt", "identity/host.key", &["trust/ca.crt"])
        .with_defaults("standard", Duration::from_secs(10));
    let mut text = format!(
        "# secsock policy: this host's identity and whom it trusts (SPEC §4).\n\
         # It proves {principal} (identity/host.crt, valid until {until}),\n\
         # and trusts the trust domain's CA in trust/ca.crt.\n\
         # Paths are relative to this file: copy the whole directory to the host it names,\n\
         # keeping identity/host.key mode 0600, and point $SECSOCK_POLICY (or --policy) here.\n",
        principal = identity.principal,
        until = rfc3339(OffsetDateTime::from(identity.not_after)),
    );
    if let Some((certificate, private_key)) = authority {
        file = file.with_authority(certificate, private_key);
        text.push_str(
            "# [authority] is the trust domain's CA, for `secsock issue`. Its key signs\n\
             # identities: keep it on this host only.\n",
        );
    }
    text.push('\n');
    text.push_str(&file.to_toml().map_err(|e| anyhow!("{e}"))?);
    Ok(text)
}

fn refuse_to_replace(paths: &[&Path], what: &str) -> Result<()> {
    for path in paths {
        if fs::symlink_metadata(path).is_ok() {
            bail!(
                "{} already exists; pass --force to replace {what}",
                path.display()
            );
        }
    }
    Ok(())
}

fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    match DirBuilder::new().recursive(true).mode(mode).create(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow!(
            "cannot create the directory {}: {e}",
            dir.display()
        )),
    }
}

/// Who may read a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileMode {
    /// 0600: a private key.
    Secret,
    /// 0644: certificates and policies.
    Public,
}

/// Writes `path` by creating a new file beside it and renaming it over `path`: the file
/// has its final mode from the moment it exists (so a private key is never readable by
/// others, even when it replaces a looser file), and a reader never sees half a file.
fn write_file(path: &Path, contents: &[u8], mode: FileMode) -> Result<()> {
    let fail = |e: io::Error| anyhow!("cannot write {}: {e}", path.display());
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let temporary = path.with_file_name(format!(
        ".{}.{}.new",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover of an interrupted run of this same process id; `create_new` needs it gone.
    let _ = fs::remove_file(&temporary);
    let bits = match mode {
        FileMode::Secret => 0o600,
        FileMode::Public => 0o644,
    };
    let result = (|| {
        // `create_new` (O_EXCL) never follows a symlink planted at the temporary name.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(bits)
            .open(&temporary)?;
        if mode == FileMode::Public {
            // Readable by all whatever the umask: other users' programs must read the
            // trust anchor and the policy. (A key keeps the umask's narrowing, if any.)
            file.set_permissions(fs::Permissions::from_mode(bits))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temporary);
        return Err(fail(e));
    }
    Ok(())
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

fn parse_certificate<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, String> {
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

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, UNIX_EPOCH};

    use secsock::name::{CertificateNames, KerberosPrincipal};
    use secsock::policy::Policy;
    use secsock::{Domain, PeerTargetName, Platform, SecureSocket, SecuritySettings};

    use super::*;

    const ALGORITHMS: [KeyAlgorithm; 2] = [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519];
    const REALM: &str = "EXAMPLE.TEST";
    /// Every principal form `secsock issue` accepts.
    const FORMS: &[&str] = &[
        "host/server.example.test",
        "host/server.example.test@EXAMPLE.TEST",
        "server.example.test",
        "http/web.example.test",
        "http/web.example.test:8080/app@EXAMPLE.TEST",
        "host/192.0.2.7",
        "192.0.2.7",
        "2001:db8::1",
        "spiffe://example.test/ns/db",
        "user:alice@EXAMPLE.TEST",
    ];

    fn principal(text: &str) -> PrincipalName {
        PrincipalName::parse(text).unwrap()
    }

    fn new_ca(algorithm: KeyAlgorithm) -> CertificateAuthority {
        CertificateAuthority::create("example.test", algorithm, 30).unwrap()
    }

    fn issue(ca: &CertificateAuthority, name: &str) -> IssuedIdentity {
        ca.issue(&principal(name), REALM, KeyAlgorithm::EcdsaP256, 7)
            .unwrap()
    }

    fn der_of(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn names_of(identity: &IssuedIdentity) -> CertificateNames {
        CertificateNames::from_der(&der_of(&identity.certificate_pem)).unwrap()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
        cert.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
    }

    fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
        cert.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|id| id.0.to_vec())
                }
                _ => None,
            })
    }

    /// Everything about a leaf except its names: profile, linkage to the CA, validity.
    fn assert_leaf_profile(ca: &CertificateAuthority, identity: &IssuedIdentity) {
        let ca_der = der_of(ca.certificate_pem());
        let ca_cert = parse_certificate(&ca_der).unwrap();
        let leaf_der = der_of(&identity.certificate_pem);
        let leaf = parse_certificate(&leaf_der).unwrap();
        let what = identity.principal.to_string();

        assert_eq!(
            leaf.issuer().as_raw(),
            ca_cert.subject().as_raw(),
            "{what}: issuer"
        );
        let ca_key_id = subject_key_id(&ca_cert).expect("the CA has a subjectKeyIdentifier");
        assert_eq!(
            authority_key_id(&leaf),
            Some(ca_key_id),
            "{what}: AKI = CA SKI"
        );
        assert!(subject_key_id(&leaf).is_some(), "{what}: SKI");

        let common_names: Vec<_> = leaf
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(common_names, std::slice::from_ref(&what));

        let constraints = leaf.basic_constraints().unwrap().expect("basicConstraints");
        assert!(
            constraints.critical && !constraints.value.ca,
            "{what}: CA:FALSE"
        );
        let usage = leaf.key_usage().unwrap().expect("keyUsage");
        assert!(usage.critical, "{what}: keyUsage critical");
        assert!(usage.value.digital_signature() && !usage.value.key_cert_sign());
        let eku = leaf
            .extended_key_usage()
            .unwrap()
            .expect("extendedKeyUsage")
            .value;
        let is_user = matches!(identity.principal, PrincipalName::User(_));
        assert_eq!(eku.server_auth, !is_user, "{what}: serverAuth");
        assert!(eku.client_auth, "{what}: clientAuth");
        let san = leaf
            .subject_alternative_name()
            .unwrap()
            .expect("one SAN extension");
        assert!(
            !san.critical,
            "{what}: the subject is not empty, so SAN is not critical"
        );
        assert!(leaf.name_constraints().unwrap().is_none());

        let serial = leaf.raw_serial();
        assert_eq!(serial.len(), 16, "{what}: 16-octet serial");
        assert_eq!(serial[0] & 0x80, 0, "{what}: positive serial");

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let not_before = leaf.validity().not_before.timestamp();
        assert!(
            (now - 6 * 60..=now - 4 * 60).contains(&not_before),
            "{what}: backdated 5 min"
        );
        let not_after = leaf.validity().not_after.timestamp();
        assert_eq!(
            identity.not_after,
            UNIX_EPOCH + Duration::from_secs(not_after as u64),
            "{what}: not_after reported as written"
        );
    }

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

    #[test]
    fn every_principal_form_is_proven_by_the_identity_issued_for_it() {
        for algorithm in ALGORITHMS {
            let ca = new_ca(algorithm);
            for form in FORMS {
                let name = principal(form);
                let identity = ca.issue(&name, REALM, algorithm, 7).unwrap();
                assert_eq!(identity.principal, name);
                let names = names_of(&identity);
                assert!(
                    name.is_proven_by(&names),
                    "{algorithm}: {form} not proven by {:?}",
                    names.presented()
                );
                assert!(PeerTargetName::parse(form).unwrap().is_proven_by(&names));
                assert_leaf_profile(&ca, &identity);
                let key = KeyPair::from_pem(&identity.private_key_pem).unwrap();
                assert!(key.is_compatible(algorithm.signature_algorithm()));
            }
        }
    }

    #[test]
    fn identities_prove_nothing_wider_than_their_principal() {
        let ca = new_ca(KeyAlgorithm::EcdsaP256);
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "http/web.example.test",
                &["http/web.example.test@EXAMPLE.TEST"],
                &[
                    "host/web.example.test",
                    "web.example.test",
                    "ldap/web.example.test",
                    "http/web.example.test:8080",
                    "http/web.example.test/app",
                    "http/web.example.test@OTHER.TEST",
                    "http/other.example.test",
                ],
            ),
            (
                "http/web.example.test:8080/app@EXAMPLE.TEST",
                &["http/web.example.test:8080/app"],
                &[
                    "http/web.example.test:8080",
                    "http/web.example.test/app",
                    "http/web.example.test:8081/app",
                    "host/web.example.test",
                    "web.example.test",
                    "http/web.example.test:8080/app@OTHER.TEST",
                ],
            ),
            (
                "host/server.example.test",
                &["server.example.test", "http/server.example.test"],
                &[
                    "other.example.test",
                    "a.server.example.test",
                    "host/other.example.test",
                ],
            ),
            (
                "spiffe://example.test/ns/db",
                &[],
                &["spiffe://example.test/ns/other", "spiffe://example.test/ns"],
            ),
            (
                "user:alice@EXAMPLE.TEST",
                &["user:alice@example.test"],
                &["user:bob@EXAMPLE.TEST", "user:alice@OTHER.TEST"],
            ),
            (
                "192.0.2.7",
                &["host/192.0.2.7"],
                &["192.0.2.8", "host/192.0.2.8"],
            ),
        ];
        for (issued, also_proven, not_proven) in cases {
            let names = names_of(&issue(&ca, issued));
            for other in *also_proven {
                assert!(
                    principal(other).is_proven_by(&names),
                    "{issued} should prove {other}"
                );
            }
            for other in *not_proven {
                assert!(
                    !principal(other).is_proven_by(&names),
                    "{issued} must not prove {other}"
                );
            }
        }
        // By design a host's DNS SAN proves every service of that host (SPEC §3): that is
        // why only `host/NAME` gets one.
        let host = names_of(&issue(&ca, "host/server.example.test"));
        assert!(principal("ldap/server.example.test:389").is_proven_by(&host));
    }

    #[test]
    fn kerberos_sans_read_back_as_the_exact_principal() {
        let ca = new_ca(KeyAlgorithm::Ed25519);
        let krb5 = |realm: &str, components: &[&str]| KerberosPrincipal {
            realm: realm.to_owned(),
            components: components.iter().map(|c| c.to_string()).collect(),
        };
        let cases = [
            (
                "http/web.example.test",
                krb5(REALM, &["http", "web.example.test"]),
            ),
            (
                "http/web.example.test:8080/app@EXAMPLE.TEST",
                krb5(REALM, &["http", "web.example.test:8080", "app"]),
            ),
            (
                "http/[2001:db8::1]:443",
                krb5(REALM, &["http", "[2001:db8::1]:443"]),
            ),
            (
                "host/server.example.test@OTHER.TEST",
                krb5("OTHER.TEST", &["host", "server.example.test"]),
            ),
        ];
        for (name, expected) in cases {
            let names = names_of(&issue(&ca, name));
            assert_eq!(names.kerberos, [expected], "{name}");
            assert!(principal(name).is_proven_by(&names), "{name}");
            assert!(names.uris.is_empty() && names.emails.is_empty() && names.upns.is_empty());
        }
        let names = names_of(&issue(&ca, "http/web.example.test"));
        assert!(
            names.dns.is_empty() && names.ips.is_empty(),
            "no host-wide SAN"
        );
        let user = names_of(&issue(&ca, "user:alice@EXAMPLE.TEST"));
        assert_eq!(user.emails, ["alice@EXAMPLE.TEST"]);
        assert_eq!(user.upns, ["alice@EXAMPLE.TEST"]);
        assert!(user.kerberos.is_empty() && user.dns.is_empty());
    }

    #[test]
    fn long_names_use_long_form_der_lengths_and_still_read_back() {
        let ca = new_ca(KeyAlgorithm::EcdsaP256);
        // 4 x 60-octet labels: a DNS SAN of 244 octets (0x81 form), inside a SAN of more.
        let label = "a".repeat(60);
        let dns = format!("{label}.{label}.{label}.{label}");
        let identity = issue(&ca, &dns);
        assert!(principal(&dns).is_proven_by(&names_of(&identity)));
        // A 400-octet SPIFFE ID: a URI SAN with a 0x82 length.
        let path: Vec<String> = (0..40).map(|i| format!("segment{i:02}")).collect();
        let id = format!("spiffe://example.test/{}", path.join("/"));
        assert!(id.len() > 255);
        let value =
            SubjectAltName::extension_value(&subject_alt_names(&principal(&id), REALM).unwrap());
        assert_eq!(&value[..2], [0x30, 0x82]);
        assert_eq!(&value[4..6], [0x86, 0x82]);
        let identity = issue(&ca, &id);
        let names = names_of(&identity);
        assert_eq!(names.uris, std::slice::from_ref(&id));
        assert!(principal(&id).is_proven_by(&names));
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

    #[test]
    fn an_identity_directory_has_safe_modes_and_its_policy_loads() {
        for algorithm in ALGORITHMS {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("server");
            let ca = new_ca(algorithm);
            let identity = ca
                .issue(&principal("host/server.example.test"), REALM, algorithm, 7)
                .unwrap();
            let policy_path =
                write_identity_dir(&root, &identity, ca.certificate_pem(), None, false).unwrap();
            assert_eq!(policy_path, root.join("policy.toml"));

            assert_eq!(
                mode_of(&root.join("identity")) & 0o077,
                0,
                "identity/ is private"
            );
            assert_eq!(mode_of(&root.join("identity/host.key")), 0o600);
            assert_eq!(mode_of(&root.join("identity/host.crt")), 0o644);
            assert_eq!(mode_of(&root.join("trust/ca.crt")), 0o644);
            assert_eq!(mode_of(&policy_path), 0o644);
            assert_eq!(
                fs::read_to_string(root.join("trust/ca.crt")).unwrap(),
                ca.certificate_pem()
            );
            let leftovers: Vec<_> = fs::read_dir(root.join("identity"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");

            let text = fs::read_to_string(&policy_path).unwrap();
            assert!(text.starts_with("# secsock policy"), "{text}");
            assert!(
                text.contains("It proves host/server.example.test"),
                "{text}"
            );
            assert!(!text.contains("[authority]"));

            let policy = Policy::load(&policy_path).unwrap();
            assert_eq!(
                policy.identity.certificate_file,
                root.join("identity/host.crt")
            );
            assert_eq!(policy.trust.anchor_files, [root.join("trust/ca.crt")]);
            assert_eq!(policy.defaults.crypto, "standard");
            assert_eq!(policy.defaults.handshake_timeout, Duration::from_secs(10));
            assert_eq!(policy.authority, None);
            // Relative paths: the directory works wherever it is copied to.
            let moved = dir.path().join("elsewhere");
            fs::rename(&root, &moved).unwrap();
            let policy = Policy::load(moved.join("policy.toml")).unwrap();
            let names = CertificateNames::from_der(&policy.identity.chain[0]).unwrap();
            assert!(principal("host/server.example.test").is_proven_by(&names));
            Platform::new(policy).expect("key matches certificate; anchors usable");
        }
    }

    #[test]
    fn an_identity_directory_is_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(KeyAlgorithm::EcdsaP256);
        let first = issue(&ca, "a.example.test");
        let policy =
            write_identity_dir(dir.path(), &first, ca.certificate_pem(), None, false).unwrap();
        let second = issue(&ca, "b.example.test");
        let error = write_identity_dir(dir.path(), &second, ca.certificate_pem(), None, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains(&policy.display().to_string()), "{error}");
        assert!(error.contains("--force"), "{error}");
        let key = dir.path().join("identity/host.key");
        assert_eq!(
            fs::read_to_string(&key).unwrap(),
            first.private_key_pem,
            "untouched"
        );

        // A key without its policy is not replaced either.
        fs::remove_file(&policy).unwrap();
        let error = write_identity_dir(dir.path(), &second, ca.certificate_pem(), None, false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("identity/host.key") && error.contains("--force"),
            "{error}"
        );

        // With --force, even a key file someone loosened comes back 0600, never readable.
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        write_identity_dir(dir.path(), &second, ca.certificate_pem(), None, true).unwrap();
        assert_eq!(mode_of(&key), 0o600);
        assert_eq!(fs::read_to_string(&key).unwrap(), second.private_key_pem);
        let text = fs::read_to_string(&policy).unwrap();
        assert!(text.contains("It proves b.example.test"), "{text}");
    }

    #[test]
    fn init_writes_an_authority_section_that_issue_can_use() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(KeyAlgorithm::EcdsaP256);
        let identity = issue(&ca, "host/server.example.test");
        write_ca(dir.path(), &ca, false).unwrap();
        let policy_path = write_identity_dir(
            dir.path(),
            &identity,
            ca.certificate_pem(),
            Some(("ca/ca.crt", "ca/ca.key")),
            false,
        )
        .unwrap();
        let text = fs::read_to_string(&policy_path).unwrap();
        assert!(
            text.contains(
                "[authority]\ncertificate = \"ca/ca.crt\"\nprivate_key = \"ca/ca.key\"\n"
            ),
            "{text}"
        );
        // The `secsock issue` path: policy -> [authority] -> CA -> a new identity.
        let policy = Policy::load(&policy_path).unwrap();
        let authority = policy.authority.expect("[authority] loads");
        assert_eq!(authority.private_key_file, dir.path().join("ca/ca.key"));
        let loaded =
            CertificateAuthority::load(&authority.certificate_file, &authority.private_key_file)
                .unwrap();
        let realm = loaded.domain().to_ascii_uppercase();
        let other = loaded
            .issue(
                &principal("http/other.example.test"),
                &realm,
                KeyAlgorithm::Ed25519,
                7,
            )
            .unwrap();
        assert_eq!(names_of(&other).kerberos[0].realm, "EXAMPLE.TEST");
        assert_leaf_profile(&ca, &other);
    }

    #[test]
    fn ca_files_are_private_and_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(KeyAlgorithm::Ed25519);
        write_ca(dir.path(), &ca, false).unwrap();
        assert_eq!(mode_of(&dir.path().join("ca")) & 0o077, 0);
        assert_eq!(mode_of(&dir.path().join("ca/ca.key")), 0o600);
        assert_eq!(mode_of(&dir.path().join("ca/ca.crt")), 0o644);
        assert_eq!(
            fs::read_to_string(dir.path().join("ca/ca.key")).unwrap(),
            ca.private_key_pem()
        );

        let other = new_ca(KeyAlgorithm::Ed25519);
        let error = write_ca(dir.path(), &other, false).unwrap_err().to_string();
        assert!(
            error.contains("ca/ca.key") && error.contains("--force"),
            "{error}"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("ca/ca.crt")).unwrap(),
            ca.certificate_pem()
        );
        write_ca(dir.path(), &other, true).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("ca/ca.crt")).unwrap(),
            other.certificate_pem()
        );
        assert_eq!(mode_of(&dir.path().join("ca/ca.key")), 0o600);
    }

    #[test]
    fn this_host_name_prefers_the_kernel_and_qualifies_short_names() {
        let cases = [
            (Some("Server\n"), Some("env"), None, "server"),
            (
                Some("server\n"),
                None,
                Some("example.test"),
                "server.example.test",
            ),
            (
                Some("server.corp.test\n"),
                None,
                Some("example.test"),
                "server.corp.test",
            ),
            (
                Some("\n"),
                Some("Env-Host"),
                Some(".Example.Test."),
                "env-host.example.test",
            ),
            (None, None, Some("example.test"), "localhost.example.test"),
            (None, Some(""), None, "localhost"),
            (Some("server"), None, Some(""), "server"),
        ];
        for (kernel, environment, domain, expected) in cases {
            assert_eq!(
                host_name_from(kernel, environment, domain),
                expected,
                "{kernel:?} {environment:?} {domain:?}"
            );
        }
        let name = this_host_name(Some("example.test"));
        assert!(
            !name.is_empty() && name == name.to_ascii_lowercase() && name.contains('.'),
            "{name}"
        );
    }

    /// Runs one handshake between the two policies; returns what the server saw of the
    /// client (its proven names) or why the server refused it.
    fn handshake(
        server_policy: &Path,
        client_policy: &Path,
        target: &str,
    ) -> Result<Vec<String>, String> {
        let server = Platform::load(server_policy).unwrap();
        let client = Platform::load(client_policy).unwrap();
        let mut socket = SecureSocket::with_platform(Domain::IPV4, server).unwrap();
        socket.set_security(&SecuritySettings::new()).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(4).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let outcome = listener.accept().map(|stream| {
                let info = stream.query_security();
                let names = info.peer_machine.map(|id| id.names).unwrap_or_default();
                names.iter().map(PrincipalName::to_string).collect()
            });
            let _ = tx.send(outcome.map_err(|e| e.to_string()));
        });
        let mut socket = SecureSocket::with_platform(Domain::IPV4, client).unwrap();
        socket.set_security(&SecuritySettings::new()).unwrap();
        socket
            .set_peer_target_name(PeerTargetName::parse(target).unwrap())
            .unwrap();
        let connected = socket.connect(addr);
        let outcome = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server saw no connection");
        if outcome.is_ok() {
            connected.map_err(|e| format!("client: {e}"))?;
        }
        outcome
    }

    #[test]
    fn issued_identities_complete_a_real_handshake_and_a_foreign_signature_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(KeyAlgorithm::Ed25519);
        let server = ca
            .issue(
                &principal("host/server.example.test"),
                REALM,
                KeyAlgorithm::EcdsaP256,
                7,
            )
            .unwrap();
        let client = ca
            .issue(
                &principal("spiffe://example.test/client"),
                REALM,
                KeyAlgorithm::Ed25519,
                7,
            )
            .unwrap();
        let server_policy = write_identity_dir(
            &dir.path().join("server"),
            &server,
            ca.certificate_pem(),
            None,
            false,
        )
        .unwrap();
        let client_policy = write_identity_dir(
            &dir.path().join("client"),
            &client,
            ca.certificate_pem(),
            None,
            false,
        )
        .unwrap();
        let seen = handshake(&server_policy, &client_policy, "host/server.example.test").unwrap();
        assert_eq!(seen, ["spiffe://example.test/client"]);

        // Same CA name, other key: only the signature tells the rogue's identity apart.
        let rogue_ca = new_ca(KeyAlgorithm::Ed25519);
        assert_eq!(
            parse_certificate(&der_of(rogue_ca.certificate_pem()))
                .unwrap()
                .subject()
                .as_raw(),
            parse_certificate(&der_of(ca.certificate_pem()))
                .unwrap()
                .subject()
                .as_raw()
        );
        let rogue = rogue_ca
            .issue(
                &principal("spiffe://example.test/client"),
                REALM,
                KeyAlgorithm::Ed25519,
                7,
            )
            .unwrap();
        let rogue_policy = write_identity_dir(
            &dir.path().join("rogue"),
            &rogue,
            ca.certificate_pem(),
            None,
            false,
        )
        .unwrap();
        let refused = handshake(&server_policy, &rogue_policy, "host/server.example.test");
        assert!(
            refused.is_err(),
            "the server accepted a certificate its CA did not sign"
        );
    }
}
