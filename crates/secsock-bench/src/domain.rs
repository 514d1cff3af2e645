//! A temporary trust domain for the benchmark: one CA and two identities (the server's
//! and the client's), written as PEM files with a secsock policy file per identity, in a
//! directory that is removed when the domain is dropped.
//!
//! Both stacks use exactly these files: secsock through the policy file, the plain
//! rustls baseline by reading the same certificate, key and CA. All keys are ECDSA P-256
//! (rcgen's default), the certificates are issued by rcgen directly, as the library's
//! test fixtures do (`crates/secsock/tests/support/mod.rs`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tempfile::TempDir;

/// The DNS name in the server's certificate, and what clients expect.
pub const SERVER_NAME: &str = "server.bench.test";
/// The DNS name in the client's certificate.
pub const CLIENT_NAME: &str = "client.bench.test";

/// The files of one identity, all in one directory.
#[derive(Clone, Debug)]
pub struct IdentityFiles {
    /// The directory holding the files below.
    pub dir: PathBuf,
    /// The certificate (PEM, leaf only; the CA is the anchor).
    pub certificate: PathBuf,
    /// The private key (PKCS#8 PEM, mode 0600).
    pub private_key: PathBuf,
    /// The CA certificate (PEM), the only trust anchor.
    pub ca: PathBuf,
    /// The secsock policy naming the three files above.
    pub policy: PathBuf,
}

impl IdentityFiles {
    /// The file names an identity directory made by [`TrustDomain::create`] holds.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            certificate: dir.join("host.crt"),
            private_key: dir.join("host.key"),
            ca: dir.join("ca.crt"),
            policy: dir.join("policy.toml"),
        }
    }
}

/// A CA with a server and a client identity, in a temporary directory.
pub struct TrustDomain {
    /// Removed on drop.
    _dir: TempDir,
    /// The server's identity (DNS SAN [`SERVER_NAME`]).
    pub server: IdentityFiles,
    /// The client's identity (DNS SAN [`CLIENT_NAME`]).
    pub client: IdentityFiles,
}

impl TrustDomain {
    /// Creates the CA and both identities, and writes their files and policies. Without
    /// `resumption` the policies turn it off (`session_lifetime = "0s"`).
    pub fn create(resumption: bool) -> anyhow::Result<Self> {
        let extra = if resumption {
            ""
        } else {
            "\n[crypto.standard]\nsession_lifetime = \"0s\"\n"
        };
        Self::create_with_policy(extra)
    }

    /// Creates the CA and both identities, and writes their files and policies, with
    /// `extra_policy` (e.g. `[crypto.NAME]` sections) appended to both policy files.
    pub fn create_with_policy(extra_policy: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("secsock-bench-")
            .tempdir()
            .context("creating a temporary directory for the trust domain")?;
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "secsock-bench CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca_params.self_signed(&ca_key)?.pem();
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let server = issue(
            dir.path(),
            "server",
            SERVER_NAME,
            &issuer,
            &ca_pem,
            extra_policy,
        )?;
        let client = issue(
            dir.path(),
            "client",
            CLIENT_NAME,
            &issuer,
            &ca_pem,
            extra_policy,
        )?;
        Ok(Self {
            _dir: dir,
            server,
            client,
        })
    }
}

/// Issues an identity for `dns_name` into `<root>/<label>/` with its policy file.
fn issue(
    root: &Path,
    label: &str,
    dns_name: &str,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    ca_pem: &str,
    extra_policy: &str,
) -> anyhow::Result<IdentityFiles> {
    let dir = root.join(label);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = IdentityFiles::in_dir(&dir);

    let key = KeyPair::generate().context("generating an identity key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![SanType::DnsName(dns_name.to_string().try_into()?)];
    params.distinguished_name.push(DnType::CommonName, dns_name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, issuer)?;

    write(&files.certificate, &cert.pem())?;
    write(&files.private_key, &key.serialize_pem())?;
    fs::set_permissions(&files.private_key, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", files.private_key.display()))?;
    write(&files.ca, ca_pem)?;
    // The policy's defaults: the standard crypto policy, a 10 s handshake timeout.
    let policy = format!(
        "[identity]\ncertificate = {}\nprivate_key = {}\n\n[trust]\nanchors = [{}]\n{extra_policy}",
        toml_string(&files.certificate)?,
        toml_string(&files.private_key)?,
        toml_string(&files.ca)?,
    );
    write(&files.policy, &policy)?;
    Ok(files)
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// A TOML basic string holding `path`.
fn toml_string(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_loads_as_two_secsock_platforms() {
        for resumption in [true, false] {
            let domain = TrustDomain::create(resumption).unwrap();
            for identity in [&domain.server, &domain.client] {
                secsock::Platform::load(&identity.policy)
                    .unwrap_or_else(|e| panic!("{}: {e}", identity.policy.display()));
            }
        }
    }

    #[test]
    fn paths_are_quoted_for_toml() {
        assert_eq!(
            toml_string(Path::new("/tmp/a \"b\"\\c")).unwrap(),
            "\"/tmp/a \\\"b\\\"\\\\c\""
        );
    }
}
