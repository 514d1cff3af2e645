//! The credential files a policy names, read and checked: PEM certificates, PEM or DER
//! CRLs, private keys, and the mode each may have (a private key 0600 or stricter; the
//! policy, an anchor or a CRL writable by its owner only), checked on the file opened.
//!
//! Not here: which files the policy names or which key names them (the errors' line and
//! key are [`super::build`]'s).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::{PolicyError, PolicyErrorKind};

/// Reads a private key file (PEM: PKCS#8, SEC1 or PKCS#1), refusing it if group or others
/// have any permission on it, and returns the key with the file's PEM text.
///
/// The mode checked is that of the file actually opened, not of whatever the path names
/// later. Used for the machine identity and for the trust domain's CA key.
pub fn read_private_key_file(path: &Path) -> Result<PrivateKeyDer<'static>, PolicyErrorKind> {
    read_private_key_pem(path).map(|(key, _)| key)
}

/// Like [`read_private_key_file`], also returning the PEM text (for tools that re-encode
/// the key, such as the CA of `secsock issue`).
pub fn read_private_key_pem(
    path: &Path,
) -> Result<(PrivateKeyDer<'static>, String), PolicyErrorKind> {
    let missing = |error| PolicyErrorKind::MissingFile {
        path: path.to_path_buf(),
        error,
    };
    let mut file = fs::File::open(path).map_err(missing)?;
    let mode = file.metadata().map_err(missing)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(PolicyErrorKind::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(missing)?;
    let bad_pem = |what: &str| PolicyErrorKind::BadPem {
        path: path.to_path_buf(),
        what: what.to_owned(),
    };
    let key = match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(private_key) => private_key,
        Err(pem::Error::NoItemsFound) if bytes.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY") => {
            return Err(bad_pem(
                "the private key is encrypted; secsock needs an unencrypted key, protected by the file's mode",
            ))
        }
        Err(pem::Error::NoItemsFound) => {
            return Err(bad_pem(
                "no private key found (expected a PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" block)",
            ))
        }
        Err(e) => return Err(bad_pem(&pem_error_text(&e))),
    };
    let text = String::from_utf8(bytes).map_err(|_| bad_pem("the file is not text"))?;
    Ok((key, text))
}

/// Reads a file; with `owner_only` (what the file is, for the message), refuses it when
/// group or others may write it. The mode checked is that of the file opened.
pub(super) fn read_file(
    path: &Path,
    owner_only: Option<&'static str>,
) -> Result<Vec<u8>, PolicyErrorKind> {
    let missing = |error| PolicyErrorKind::MissingFile {
        path: path.to_path_buf(),
        error,
    };
    let mut file = fs::File::open(path).map_err(missing)?;
    if let Some(what) = owner_only {
        let mode = file.metadata().map_err(missing)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(PolicyErrorKind::WritableByOthers {
                path: path.to_path_buf(),
                mode,
                what,
            });
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(missing)?;
    Ok(bytes)
}

/// Reads the policy file: its text, and the error for a file that group or others may
/// write (the text is still returned, so that `diagnose` can go on).
pub(super) fn read_policy_text(path: &Path) -> Result<(String, Option<PolicyError>), PolicyError> {
    let io = |e: io::Error| PolicyError::new(path, PolicyErrorKind::Io(e));
    let mut file = fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode();
    let unsafe_mode = (mode & 0o022 != 0).then(|| {
        let kind = PolicyErrorKind::WritableByOthers {
            path: path.to_path_buf(),
            mode,
            what: "the policy file",
        };
        PolicyError::new(path, kind)
    });
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    Ok((text, unsafe_mode))
}

/// Every certificate of a PEM file; at least one. With `owner_only` (what the file is),
/// refused when group or others may write it.
pub(super) fn read_certificates(
    path: &Path,
    owner_only: Option<&'static str>,
) -> Result<Vec<CertificateDer<'static>>, PolicyErrorKind> {
    let bytes = read_file(path, owner_only)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, pem_error_text(&e)))?;
    if certs.is_empty() {
        return Err(bad_pem(
            path,
            "no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)".to_owned(),
        ));
    }
    Ok(certs)
}

/// Every CRL of a PEM file, or the one CRL of a DER file; refused when group or others
/// may write it.
pub(super) fn read_crls(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, PolicyErrorKind> {
    let bytes = read_file(path, Some("a CRL file"))?;
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_pem(path, pem_error_text(&e)))?;
        if crls.is_empty() {
            return Err(bad_pem(
                path,
                "no CRL found (expected PEM \"-----BEGIN X509 CRL-----\" blocks, or one DER CRL)"
                    .to_owned(),
            ));
        }
        Ok(crls)
    } else if bytes.first() == Some(&0x30) {
        // A DER SEQUENCE; its contents are checked by the verifier that uses it.
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    } else {
        Err(bad_pem(
            path,
            "neither a PEM nor a DER certificate revocation list".to_owned(),
        ))
    }
}

fn bad_pem(path: &Path, what: String) -> PolicyErrorKind {
    PolicyErrorKind::BadPem {
        path: path.to_path_buf(),
        what,
    }
}

fn pem_error_text(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!(
                "malformed PEM: missing \"{}\"",
                String::from_utf8_lossy(end_marker)
            )
        }
        pem::Error::IllegalSectionStart { line } => {
            format!(
                "malformed PEM: bad BEGIN line \"{}\"",
                String::from_utf8_lossy(line)
            )
        }
        other => format!("malformed PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::*;
    use crate::policy::Policy;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn missing_anchor_file_names_line_key_and_path() {
        let dir = trust_domain();
        let text = IDENTITY_AND_TRUST.replace(
            "[\"trust/ca.crt\"]",
            "[\n  \"trust/ca.crt\",\n  \"trust/gone.crt\",\n]",
        );
        let e = load_err(&dir, &text);
        assert_eq!(e.line, Some(8), "the line of the missing entry");
        assert_eq!(e.key.as_deref(), Some("trust.anchors"));
        assert!(
            matches!(&e.kind, PolicyErrorKind::MissingFile { path, .. } if *path == dir.path().join("trust/gone.crt"))
        );
        assert_eq!(
            shown(&dir, &e),
            "policy.toml:8: trust.anchors: cannot read trust/gone.crt: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn private_key_must_not_be_accessible_by_group_or_others() {
        let dir = trust_domain();
        let key = dir.path().join("identity/host.key");
        for (mode, accepted) in [
            (0o600, true),
            (0o400, true),
            (0o644, false),
            (0o640, false),
            (0o604, false),
            (0o610, false),
        ] {
            set_mode(&key, mode);
            let result = Policy::from_toml(IDENTITY_AND_TRUST, &dir.path().join("policy.toml"));
            match (accepted, result) {
                (true, Ok(_)) => {}
                (false, Err(e)) => {
                    assert!(
                        matches!(e.kind, PolicyErrorKind::KeyPermissions { mode: m, .. } if m & 0o777 == mode)
                    );
                    assert_eq!(e.line, Some(3));
                    assert_eq!(e.key.as_deref(), Some("identity.private_key"));
                    let text = e.to_string();
                    assert!(text.contains(&format!("(mode {mode:04o})")), "{text}");
                    assert!(text.contains("group or others"), "{text}");
                    assert!(
                        text.contains(&format!("run `chmod 600 {}`", key.display())),
                        "{text}"
                    );
                }
                (accepted, result) => {
                    panic!("mode {mode:o}: accepted={accepted}, got {:?}", result.err())
                }
            }
        }
        set_mode(&key, 0o644);
        let e = Policy::from_toml(IDENTITY_AND_TRUST, &dir.path().join("policy.toml")).unwrap_err();
        assert_eq!(
            shown(&dir, &e),
            "policy.toml:3: identity.private_key: identity/host.key is readable by group or others (mode 0644); \
             a private key must be 0600 or stricter: run `chmod 600 identity/host.key`"
        );
    }

    /// Issue 12, item 15: whoever may write the policy, an anchor or a CRL decides whom
    /// this machine trusts, and whoever may read the users file can guess its passwords
    /// offline; such files are refused like a private key open to others.
    #[test]
    fn policy_trust_and_users_files_open_to_others_are_refused() {
        let dir = trust_domain();
        let text = format!(
            "{IDENTITY_AND_TRUST}crls = [\"trust/ca.crl\"]\n\n[users]\nfile = \"users.toml\"\n"
        );
        let policy = write_policy(&dir, &text);
        fs::write(dir.path().join("users.toml"), "[users]\n").unwrap();
        set_mode(&dir.path().join("users.toml"), 0o600);
        for file in ["policy.toml", "trust/ca.crt", "trust/ca.crl"] {
            set_mode(&dir.path().join(file), 0o644);
        }
        Policy::load(&policy).unwrap();
        for (file, mode, line, key, fix) in [
            ("policy.toml", 0o664, None, None, "chmod go-w"),
            ("policy.toml", 0o646, None, None, "chmod go-w"),
            (
                "trust/ca.crt",
                0o664,
                Some(6),
                Some("trust.anchors"),
                "chmod go-w",
            ),
            (
                "trust/ca.crl",
                0o666,
                Some(7),
                Some("trust.crls"),
                "chmod go-w",
            ),
            (
                "users.toml",
                0o640,
                Some(10),
                Some("users.file"),
                "chmod 600",
            ),
            (
                "users.toml",
                0o604,
                Some(10),
                Some("users.file"),
                "chmod 600",
            ),
        ] {
            let path = dir.path().join(file);
            let before = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            set_mode(&path, mode);
            let e = Policy::load(&policy).expect_err(file);
            let text = e.to_string();
            assert_eq!((e.line, e.key.as_deref()), (line, key), "{text}");
            assert!(text.contains(&format!("{} ", path.display())), "{text}");
            assert!(text.contains(&format!("(mode {mode:04o})")), "{text}");
            assert!(
                text.contains(&format!("{fix} {}", path.display())),
                "{text}"
            );
            let diagnosed = Policy::diagnose(&policy);
            assert!(
                diagnosed.errors.iter().any(|d| d.to_string() == text),
                "diagnose misses {text}: {:?}",
                diagnosed.errors
            );
            set_mode(&path, before);
        }
        Policy::load(&policy).unwrap();
    }

    #[test]
    fn credential_files_must_hold_what_they_claim() {
        let dir = trust_domain();
        // A key that belongs to no certificate of the chain.
        let e = load_err(&dir, &IDENTITY_AND_TRUST.replace("host.key", "other.key"));
        assert_eq!(e.line, Some(3));
        assert!(
            shown(&dir, &e).contains("is not the private key of the certificate in"),
            "{e}"
        );

        // A certificate file without certificates, and a key file without a key.
        fs::write(dir.path().join("identity/empty.crt"), "nothing here\n").unwrap();
        let e = load_err(&dir, &IDENTITY_AND_TRUST.replace("host.crt", "empty.crt"));
        assert!(
            matches!(&e.kind, PolicyErrorKind::BadPem { path, .. } if path.ends_with("identity/empty.crt"))
        );
        assert!(shown(&dir, &e).starts_with(
            "policy.toml:2: identity.certificate: identity/empty.crt: no certificate"
        ));

        let not_a_key = dir.path().join("identity/cert-as.key");
        fs::copy(dir.path().join("identity/host.crt"), &not_a_key).unwrap();
        set_mode(&not_a_key, 0o600);
        let e = load_err(&dir, &IDENTITY_AND_TRUST.replace("host.key", "cert-as.key"));
        assert!(
            shown(&dir, &e).contains("identity/cert-as.key: no private key found"),
            "{e}"
        );

        // Truncated PEM.
        let pem = fs::read_to_string(dir.path().join("trust/ca.crt")).unwrap();
        fs::write(dir.path().join("trust/cut.crt"), &pem[..pem.len() / 2]).unwrap();
        let e = load_err(&dir, &IDENTITY_AND_TRUST.replace("ca.crt", "cut.crt"));
        assert!(
            shown(&dir, &e).contains("trust.anchors: trust/cut.crt: malformed PEM"),
            "{e}"
        );

        // A CRL file that is neither PEM nor DER.
        fs::write(dir.path().join("trust/bad.crl"), "garbage").unwrap();
        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}crls = [\"trust/bad.crl\"]\n"),
        );
        assert_eq!(e.key.as_deref(), Some("trust.crls"));
        assert!(shown(&dir, &e).contains("neither a PEM nor a DER"), "{e}");

        let e = load_err(
            &dir,
            &IDENTITY_AND_TRUST.replace("[\"trust/ca.crt\"]", "[]"),
        );
        assert!(
            shown(&dir, &e).starts_with("policy.toml:6: trust.anchors: the list is empty"),
            "{e}"
        );
    }
}
