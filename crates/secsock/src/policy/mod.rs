//! The policy store: the TOML file that says who this machine is, whom it trusts and
//! which crypto it may use (SPEC §4).
//!
//! The policy file is to secsock what the IPsec policy store is to Windows: the platform,
//! not the application, owns the credential, the trust anchors and the crypto choices.
//! This module finds the file ([`Policy::resolve`], [`Policy::discover`]), reads it and
//! everything it names (certificate chain, private key, trust anchors, CRLs), and checks
//! it ([`Policy::load`]). Every problem is reported as a [`PolicyError`] naming the file,
//! the line and the key, so that a person can fix it without guessing.
//!
//! What it is not for: it opens no sockets and builds no TLS configuration. Another module
//! turns a [`CryptoPolicy`], the [`Identity`] and the [`Trust`] into rustls configuration.
//! It does not validate the trust anchors as CA certificates or check expiry either; chain
//! validation belongs to the verifier.
//!
//! The file format:
//!
//! ```toml
//! [identity]                         # this machine's credential (required)
//! certificate = "identity/host.crt"  # PEM chain, leaf first
//! private_key = "identity/host.key"  # PEM private key, mode 0600 or stricter
//!
//! [trust]                            # required, at least one anchor
//! anchors = ["trust/ca.crt"]         # each file may hold several PEM certificates
//! crls = []                          # PEM or DER CRL files, optional
//! expired_crls = "warn"              # or "refuse"
//!
//! [defaults]                         # optional
//! crypto = "standard"                # default "standard"
//! handshake_timeout = "10s"          # default 10s; more than 0, at most 10 minutes
//! user_max_iterations = 2400000      # the most PBKDF2 iterations a server may ask of us
//!
//! [crypto.standard]                  # optional; a built-in "standard" exists otherwise
//! id = "5f1c2e3a-0000-4000-8000-00000000abcd"   # optional policy key (C ABI GUID)
//! key_exchange = ["X25519MLKEM768", "X25519", "secp256r1"]
//! cipher_suites = ["TLS13_AES_128_GCM_SHA256", "TLS13_AES_256_GCM_SHA384", "TLS13_CHACHA20_POLY1305_SHA256"]
//! session_lifetime = "2h"            # "0s" disables resumption; at most 7 days
//! rekey_after = { bytes = "64GiB", time = "1h" }
//! ```
//!
//! Relative paths are relative to the directory of the policy file. The policy file, the
//! anchor and CRL files are refused when group or others may write them, the users file
//! (password verifiers) and private keys when group or others have any permission on them.
//!
//! The module's files: `types` (what a loaded [`Policy`] is), `file` (the file's structure
//! as serde types, which [`PolicyFile`] also writes) and `de` (which reads the text into it,
//! parsing it once), `build` (the checks, and every error's line and key), `credentials`
//! (the PEM, CRL and key files it names, and their modes), `discovery` (where the file is),
//! `units` (durations, sizes), `crypto_names` (key exchange groups, cipher suites) and
//! `error` ([`PolicyError`]).

mod build;
mod credentials;
mod crypto_names;
mod de;
mod discovery;
mod error;
mod file;
mod types;
mod units;

use std::path::Path;

use build::Checker;
use credentials::read_policy_text;

pub use credentials::{read_private_key_file, read_private_key_pem};
pub use error::{PolicyError, PolicyErrorKind};
pub use file::PolicyFile;
pub use types::{
    Authority, CryptoPolicy, Defaults, Diagnosis, ExpiredCrls, FailureLimits, Identity, Policy,
    RekeyLimits, Trust, UserAuthentication, Users, DEFAULT_USER_MAX_ITERATIONS,
};
pub use units::{parse_duration, parse_size};

use crate::settings::{format_uuid, CryptoPolicyKey, SettingsError};

impl Policy {
    /// Reads the policy file at `path` and every file it names, and checks them.
    ///
    /// ```no_run
    /// use secsock::policy::Policy;
    ///
    /// let policy = Policy::load("/etc/secsock/policy.toml")?;
    /// println!("identity: {}", policy.identity.certificate_file.display());
    /// println!("default crypto policy: {}", policy.defaults.crypto);
    /// # Ok::<(), secsock::policy::PolicyError>(())
    /// ```
    ///
    /// Errors name the file, the line and the key:
    ///
    /// ```
    /// use secsock::policy::{Policy, PolicyErrorKind};
    ///
    /// let err = Policy::load("/nonexistent/secsock/policy.toml").unwrap_err();
    /// assert!(matches!(err.kind, PolicyErrorKind::Io(_)));
    /// assert!(err.to_string().starts_with("/nonexistent/secsock/policy.toml: cannot read the policy file"));
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        match read_policy_text(path)? {
            (_, Some(unsafe_mode)) => Err(unsafe_mode),
            (text, None) => Policy::from_toml(&text, path),
        }
    }

    /// Checks policy text as if it had been read from `source`, and reads the files it
    /// names; relative paths are resolved against `source`'s directory.
    pub fn from_toml(text: &str, source: &Path) -> Result<Policy, PolicyError> {
        let checker = Checker { text, source };
        checker.build(checker.parse()?)
    }

    /// Checks the policy file at `path` like [`Policy::load`], but goes on after a
    /// problem to report every problem it can find: a missing certificate does not hide a
    /// private key with a bad mode. A file that cannot be read or parsed gives one error.
    pub fn diagnose(path: impl AsRef<Path>) -> Diagnosis {
        let path = path.as_ref();
        let (text, unsafe_mode) = match read_policy_text(path) {
            Ok(read) => read,
            Err(e) => {
                return Diagnosis {
                    policy: None,
                    errors: vec![e],
                }
            }
        };
        let checker = Checker {
            text: &text,
            source: path,
        };
        let mut diagnosis = match checker.parse() {
            Ok(raw) => {
                let (policy, errors) = checker.build_all(raw);
                Diagnosis { policy, errors }
            }
            Err(e) => Diagnosis {
                policy: None,
                errors: vec![e],
            },
        };
        if let Some(e) = unsafe_mode {
            diagnosis.policy = None;
            diagnosis.errors.insert(0, e);
        }
        diagnosis
    }

    /// Loads the policy at `explicit` if given (an API or command-line argument),
    /// otherwise [`Policy::discover`]s it.
    pub fn resolve(explicit: Option<&Path>) -> Result<Policy, PolicyError> {
        match explicit {
            Some(path) => Policy::load(path),
            None => Policy::discover(),
        }
    }

    /// The crypto policy a socket asked for.
    ///
    /// `None` and the all-zero UUID mean the default (`[defaults] crypto`);
    /// `Name` picks a section by name, `Uuid` by its `id`.
    pub fn crypto_policy(
        &self,
        key: Option<&CryptoPolicyKey>,
    ) -> Result<&CryptoPolicy, SettingsError> {
        let found = match key {
            None | Some(CryptoPolicyKey::Uuid(0)) => {
                self.crypto.iter().find(|c| c.name == self.defaults.crypto)
            }
            Some(CryptoPolicyKey::Name(name)) => self.crypto.iter().find(|c| &c.name == name),
            Some(CryptoPolicyKey::Uuid(id)) => self.crypto.iter().find(|c| c.id == Some(*id)),
        };
        found.ok_or_else(|| {
            let by_id = matches!(key, Some(CryptoPolicyKey::Uuid(_)));
            let known: Vec<String> = self
                .crypto
                .iter()
                .map(|c| match c.id {
                    Some(id) if by_id => format!("{} (id {})", c.name, format_uuid(id)),
                    _ => c.name.clone(),
                })
                .collect();
            SettingsError::UnknownCryptoPolicy {
                key: match key {
                    Some(key) => key.to_string(),
                    None => self.defaults.crypto.clone(),
                },
                policy: self.source.display().to_string(),
                known: known.join(", "),
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
