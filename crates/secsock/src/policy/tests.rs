//! The policy tests' fixtures (a trust domain on disk, helpers to write a policy next to it
//! and see the error it gets; the property tests use [`trust_domain`] too), and the tests
//! of the entry points: load, diagnose, crypto_policy.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use tempfile::TempDir;

/// A trust domain on disk: `trust/ca.crt`, `identity/host.crt` (leaf + CA),
/// `identity/host.key` (0600), `trust/ca.crl` (PEM), `trust/ca.crl.der` (DER),
/// and `identity/other.key` (0600, belongs to no certificate).
pub(crate) fn trust_domain() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("identity")).unwrap();
    fs::create_dir(dir.path().join("trust")).unwrap();

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let host_key = KeyPair::generate().unwrap();
    let host_params = CertificateParams::new(vec!["host.example.test".to_owned()]).unwrap();
    let host_cert = host_params.signed_by(&host_key, &issuer).unwrap();

    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2034, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();

    let write = |name: &str, contents: &[u8]| fs::write(dir.path().join(name), contents).unwrap();
    write("trust/ca.crt", ca_cert.pem().as_bytes());
    write(
        "identity/host.crt",
        format!("{}{}", host_cert.pem(), ca_cert.pem()).as_bytes(),
    );
    write("trust/ca.crl", crl.pem().unwrap().as_bytes());
    write("trust/ca.crl.der", crl.der());
    for (name, key) in [
        ("identity/host.key", &host_key),
        ("identity/other.key", &KeyPair::generate().unwrap()),
    ] {
        write(name, key.serialize_pem().as_bytes());
        set_mode(&dir.path().join(name), 0o600);
    }
    dir
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) const IDENTITY_AND_TRUST: &str = r#"[identity]
certificate = "identity/host.crt"
private_key = "identity/host.key"

[trust]
anchors = ["trust/ca.crt"]
"#;

pub(crate) fn write_policy(dir: &TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("policy.toml");
    fs::write(&path, text).unwrap();
    path
}

pub(crate) fn load_err(dir: &TempDir, text: &str) -> PolicyError {
    let path = write_policy(dir, text);
    match Policy::load(&path) {
        Ok(_) => panic!("policy was accepted:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, path);
            e
        }
    }
}

/// The error's display without the (temporary) directory.
pub(crate) fn shown(dir: &TempDir, e: &PolicyError) -> String {
    e.to_string()
        .replace(&format!("{}/", dir.path().display()), "")
}

pub(crate) const FAST_ID: u128 = 0x5f1c2e3a_0000_4000_8000_00000000abcd;

// ---- the entry points: load, diagnose, crypto_policy ----

use crate::settings::{CryptoPolicyKey, SettingsError};
use rustls::crypto::aws_lc_rs::{cipher_suite, kx_group};
use rustls_pki_types::PrivateKeyDer;
use std::io;
use std::time::Duration;

#[test]
fn full_policy_loads_with_paths_relative_to_the_file() {
    let dir = trust_domain();
    let text = r#"
[identity]
certificate = "identity/host.crt"
private_key = "identity/host.key"

[trust]
anchors = ["trust/ca.crt"]
crls = ["trust/ca.crl", "trust/ca.crl.der"]

[defaults]
crypto = "fast"
handshake_timeout = "2500ms"

[crypto.fast]
id = "5F1C2E3A-0000-4000-8000-00000000ABCD"
key_exchange = ["x25519", "P-256"]
cipher_suites = ["TLS13_CHACHA20_POLY1305_SHA256"]
session_lifetime = "0s"
rekey_after = { bytes = "1MiB" }

[crypto.archive]
session_lifetime = "7d"
"#;
    let path = write_policy(&dir, text);
    let policy = Policy::load(&path).unwrap();
    assert_eq!(policy.source, path);

    let d = dir.path();
    assert_eq!(
        policy.identity.certificate_file,
        d.join("identity/host.crt")
    );
    assert_eq!(
        policy.identity.private_key_file,
        d.join("identity/host.key")
    );
    assert_eq!(policy.identity.chain.len(), 2, "leaf and CA");
    assert!(matches!(
        policy.identity.private_key,
        PrivateKeyDer::Pkcs8(_)
    ));
    assert_eq!(policy.trust.anchor_files, vec![d.join("trust/ca.crt")]);
    assert_eq!(policy.trust.anchors, vec![policy.identity.chain[1].clone()]);
    assert_eq!(
        policy.trust.crl_files,
        vec![d.join("trust/ca.crl"), d.join("trust/ca.crl.der")]
    );
    assert_eq!(policy.trust.crls.len(), 2);
    assert_eq!(
        policy.trust.crls[0], policy.trust.crls[1],
        "PEM and DER hold the same CRL"
    );

    assert_eq!(
        policy.defaults,
        Defaults {
            crypto: "fast".to_owned(),
            handshake_timeout: Duration::from_millis(2500),
            user_max_iterations: DEFAULT_USER_MAX_ITERATIONS,
        }
    );

    let names: Vec<&str> = policy.crypto.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["standard", "fast", "archive"],
        "built-in first, then file order"
    );
    let fast = &policy.crypto[1];
    assert_eq!(fast.id, Some(FAST_ID));
    let groups: Vec<_> = fast.key_exchange.iter().map(|g| g.name()).collect();
    assert_eq!(
        groups,
        [kx_group::X25519.name(), kx_group::SECP256R1.name()]
    );
    let suites: Vec<_> = fast.cipher_suites.iter().map(|s| s.suite()).collect();
    assert_eq!(
        suites,
        [cipher_suite::TLS13_CHACHA20_POLY1305_SHA256.suite()]
    );
    assert_eq!(fast.session_lifetime, Duration::ZERO);
    assert_eq!(
        fast.rekey_after,
        RekeyLimits {
            bytes: Some(1 << 20),
            time: None
        }
    );

    // A section takes the built-in values for what it omits.
    let archive = &policy.crypto[2];
    let standard = CryptoPolicy::standard();
    assert_eq!(archive.session_lifetime, Duration::from_secs(7 * 86_400));
    assert_eq!(archive.key_exchange.len(), standard.key_exchange.len());
    assert_eq!(archive.cipher_suites.len(), 3);
    assert_eq!(archive.rekey_after, standard.rekey_after);
    assert_eq!(archive.id, None);
}

#[test]
fn authority_paths_are_resolved_but_not_read() {
    let dir = trust_domain();
    let text = format!("{IDENTITY_AND_TRUST}\n[authority]\ncertificate = \"ca/ca.crt\"\nprivate_key = \"ca/ca.key\"\n");
    let policy = Policy::from_toml(&text, &dir.path().join("policy.toml")).unwrap();
    let authority = policy.authority.unwrap();
    assert_eq!(authority.certificate_file, dir.path().join("ca/ca.crt"));
    assert_eq!(authority.private_key_file, dir.path().join("ca/ca.key"));
    let none = Policy::from_toml(IDENTITY_AND_TRUST, &dir.path().join("policy.toml")).unwrap();
    assert_eq!(none.authority, None);
}

#[test]
fn diagnose_reports_every_problem_not_just_the_first() {
    let dir = trust_domain();
    set_mode(&dir.path().join("identity/host.key"), 0o644);
    let path = write_policy(
        &dir,
        "[identity]\ncertificate = \"identity/missing.crt\"\nprivate_key = \"identity/host.key\"\n\n\
         [trust]\nanchors = [\"trust/ca.crt\", \"trust/gone.crt\"]\n\n\
         [defaults]\nhandshake_timeout = \"soon\"\n",
    );
    let diagnosis = Policy::diagnose(&path);
    assert!(diagnosis.policy.is_none());
    let found: Vec<(Option<usize>, Option<String>)> = diagnosis
        .errors
        .iter()
        .map(|e| (e.line, e.key.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (Some(9), Some("defaults.handshake_timeout".to_owned())),
            (Some(2), Some("identity.certificate".to_owned())),
            (Some(3), Some("identity.private_key".to_owned())),
            (Some(6), Some("trust.anchors".to_owned())),
        ]
    );
    assert!(matches!(
        diagnosis.errors[2].kind,
        PolicyErrorKind::KeyPermissions { .. }
    ));
    // The first of them is what `load` reports.
    let first = Policy::load(&path).unwrap_err();
    assert_eq!(first.to_string(), diagnosis.errors[0].to_string());

    // A healthy policy diagnoses to itself and no errors.
    set_mode(&dir.path().join("identity/host.key"), 0o600);
    let healthy = write_policy(&dir, IDENTITY_AND_TRUST);
    let diagnosis = Policy::diagnose(&healthy);
    assert!(diagnosis.errors.is_empty(), "{:?}", diagnosis.errors);
    assert!(diagnosis.policy.is_some());
    // An unreadable or unparsable file is one error.
    assert_eq!(
        Policy::diagnose(dir.path().join("none.toml")).errors.len(),
        1
    );
    let broken = write_policy(&dir, "[identity\n");
    assert!(matches!(
        Policy::diagnose(&broken).errors[..],
        [PolicyError {
            kind: PolicyErrorKind::Syntax(_),
            ..
        }]
    ));
}

#[test]
fn missing_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere.toml");
    let e = Policy::load(&path).unwrap_err();
    assert!(
        matches!(&e.kind, PolicyErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert_eq!(e.file, path);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: cannot read the policy file: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn crypto_policy_lookup() {
    let dir = trust_domain();
    let id = "5f1c2e3a-0000-4000-8000-00000000abcd";
    let text = format!(
        "{IDENTITY_AND_TRUST}\n[defaults]\ncrypto = \"fast\"\n\n[crypto.fast]\nid = \"{id}\"\n"
    );
    let policy = Policy::from_toml(&text, &dir.path().join("policy.toml")).unwrap();
    let name_of =
        |key: Option<&CryptoPolicyKey>| policy.crypto_policy(key).map(|c| c.name.as_str());
    assert_eq!(name_of(None), Ok("fast"));
    assert_eq!(name_of(Some(&CryptoPolicyKey::Uuid(0))), Ok("fast"));
    assert_eq!(
        name_of(Some(&CryptoPolicyKey::Name("standard".into()))),
        Ok("standard")
    );
    assert_eq!(name_of(Some(&CryptoPolicyKey::Uuid(FAST_ID))), Ok("fast"));

    let e = policy
        .crypto_policy(Some(&CryptoPolicyKey::Name("strict".into())))
        .unwrap_err();
    assert_eq!(
        e,
        SettingsError::UnknownCryptoPolicy {
            key: "strict".into(),
            policy: dir.path().join("policy.toml").display().to_string(),
            known: "standard, fast".into(),
        }
    );
    let e = policy
        .crypto_policy(Some(&CryptoPolicyKey::Uuid(7)))
        .unwrap_err();
    assert!(
        matches!(&e, SettingsError::UnknownCryptoPolicy { key, known, .. }
            if key == "00000000-0000-0000-0000-000000000007" && known == &format!("standard, fast (id {id})")),
        "{e:?}"
    );
}
