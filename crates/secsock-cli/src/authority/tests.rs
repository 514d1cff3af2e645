//! The authority's test fixtures (CAs of both key algorithms, every principal form, the
//! leaf profile every issued certificate has) and the end-to-end tests: what an issued
//! identity proves, read back by the library, and real handshakes with it.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use secsock::name::{CertificateNames, KerberosPrincipal, PrincipalName};
use secsock::{Domain, PeerTargetName, Platform, SecureSocket, SecuritySettings};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ca::{parse_certificate, IssuedIdentity};
use super::sans::{subject_alt_names, SubjectAltName};
use super::*;
pub(crate) const ALGORITHMS: [KeyAlgorithm; 2] = [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519];
pub(crate) const REALM: &str = "EXAMPLE.TEST";
/// Every principal form `secsock issue` accepts.
pub(crate) const FORMS: &[&str] = &[
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

pub(crate) fn principal(text: &str) -> PrincipalName {
    PrincipalName::parse(text).unwrap()
}

pub(crate) fn new_ca(algorithm: KeyAlgorithm) -> CertificateAuthority {
    CertificateAuthority::create("example.test", algorithm, 30).unwrap()
}

pub(crate) fn issue(ca: &CertificateAuthority, name: &str) -> IssuedIdentity {
    ca.issue(&principal(name), REALM, KeyAlgorithm::EcdsaP256, 7)
        .unwrap()
}

pub(crate) fn der_of(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

pub(crate) fn names_of(identity: &IssuedIdentity) -> CertificateNames {
    CertificateNames::from_der(&der_of(&identity.certificate_pem)).unwrap()
}

pub(crate) fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

pub(crate) fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

pub(crate) fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

/// Everything about a leaf except its names: profile, linkage to the CA, validity.
pub(crate) fn assert_leaf_profile(ca: &CertificateAuthority, identity: &IssuedIdentity) {
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
