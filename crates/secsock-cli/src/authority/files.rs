//! The trust domain on disk, the way mkcert does it: [`write_ca`] and
//! [`write_identity_dir`] write ready-to-use files (private keys 0600 from the moment they
//! exist, never replaced without `force`, never half-written) and a `policy.toml` that names
//! them by relative paths, written through the library's own description of the file
//! (`secsock::policy::PolicyFile`); and [`this_host_name`], for the default principal.
//!
//! Not here: what goes into the certificates (`ca`, `sans`).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use secsock::policy::PolicyFile;
use time::OffsetDateTime;

use super::ca::{rfc3339, CertificateAuthority, IssuedIdentity};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::tests::*;
    use crate::authority::*;
    use secsock::name::CertificateNames;
    use secsock::policy::Policy;
    use secsock::Platform;

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
}
