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

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};

use crate::accounts::{validate_rule, AccountRule};
use rustls::crypto::SupportedKxGroup;
use rustls::SupportedCipherSuite;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::settings::{format_uuid, parse_uuid, CryptoPolicyKey, SettingsError};

/// The name of the crypto policy that exists even when the file defines none.
const STANDARD: &str = "standard";
/// `[defaults] handshake_timeout` when the file does not say.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A handshake that needs longer than this is a stuck peer, not a slow one.
const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// RFC 8446 §4.6.1: a resumption ticket lives at most seven days.
const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// `[defaults] user_max_iterations` when the file does not say: four times the count new
/// verifiers get, so verifiers made stronger than today's default still work, while a
/// hostile server can make a client spend at most about four logins' worth of CPU.
pub const DEFAULT_USER_MAX_ITERATIONS: u32 = 4 * crate::user::scram::DEFAULT_ITERATIONS;
/// The longest `[users] failure_window`.
const MAX_FAILURE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest `[users] failure_delay` and `failure_delay_max` (the longest handshake).
const MAX_FAILURE_DELAY: Duration = MAX_HANDSHAKE_TIMEOUT;
/// The largest `[users] failures_per_address`.
const MAX_FAILURES_PER_ADDRESS: i64 = 100_000;
/// The `why` of the `$SECSOCK_POLICY` discovery candidate.
const FROM_ENV: &str = "$SECSOCK_POLICY";

const KX_NAMES: &str =
    "X25519MLKEM768, X25519, secp256r1 (P-256), secp384r1 (P-384), SECP256R1MLKEM768, MLKEM768, MLKEM1024";
const SUITE_NAMES: &str =
    "TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256";

/// A loaded and checked policy file.
///
/// Everything the file names has been read: the identity's chain and key, the trust
/// anchors and the CRLs. Nothing is re-read later; load the policy again to pick up
/// changes.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file the policy was loaded from, as given (not canonicalized).
    pub source: PathBuf,
    /// This machine's credential (`[identity]`).
    pub identity: Identity,
    /// The trust anchors and CRLs (`[trust]`).
    pub trust: Trust,
    /// What "default" means (`[defaults]`).
    pub defaults: Defaults,
    /// The crypto policies (`[crypto.NAME]`) in file order. When the file does not define
    /// `[crypto.standard]`, the built-in [`CryptoPolicy::standard`] comes first.
    pub crypto: Vec<CryptoPolicy>,
    /// The trust domain's CA (`[authority]`), present only on the host that issues
    /// identities (`secsock init` writes it; `secsock issue` uses it). Not read at load.
    pub authority: Option<Authority>,
    /// User authentication (`[users]`).
    pub users: Users,
    /// Principal patterns mapped to local accounts, for impersonation (`[[accounts]]`), in
    /// file order; the first match wins.
    pub accounts: Vec<AccountRule>,
}

/// Whether a listener requires clients to prove a user (application) identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserAuthentication {
    /// No user authentication: the listener does not offer it (plain TLS clients see no
    /// difference). The default without a `[users]` section.
    #[default]
    Off,
    /// Clients may prove a user; those that do not are served with their machine
    /// identity only. The default when `[users]` exists.
    Optional,
    /// Every client must prove a user, or the connection fails before any application byte.
    Required,
}

/// The `[users]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Users {
    /// Whether clients must prove a user. Without a `[users]` section: off.
    pub authentication: UserAuthentication,
    /// The file of SCRAM-SHA-256 verifiers (`secsock user add` writes it); read again
    /// whenever it changes, so added users need no restart.
    pub file: Option<PathBuf>,
    /// The domain of user names given without one (`secsock user add alice`).
    pub domain: Option<String>,
    /// How failed user authentications are slowed down.
    pub failures: FailureLimits,
}

/// How a listener slows down failed user authentications (`[users] failures_per_address`,
/// `failure_window`, `failure_delay`, `failure_delay_max`): per source address a budget
/// of failures, after which that address is refused at once until its window slides;
/// per user name a pause before each failure is answered, doubling with every consecutive
/// failure (a pause, never a refusal: nobody can lock a user out by failing in its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failures one source (an IPv4 address, an IPv6 /64) may have within `window` before
    /// its further attempts are refused without being checked; 0: no such limit.
    pub per_address: u32,
    /// The sliding window of `per_address`; also how long a user name's run of failures
    /// is remembered after its last failure.
    pub window: Duration,
    /// The pause before a user name's first failure is answered; zero: no pauses.
    pub delay: Duration,
    /// The longest pause (it is also cut to fit the handshake timeout).
    pub delay_max: Duration,
}

impl Default for FailureLimits {
    /// 10 failures per address within 15 minutes; pauses of 1 s, 2 s, 4 s, then 8 s.
    fn default() -> Self {
        FailureLimits {
            per_address: 10,
            window: Duration::from_secs(15 * 60),
            delay: Duration::from_secs(1),
            delay_max: Duration::from_secs(8),
        }
    }
}

/// Where the trust domain's CA certificate and key are (`[authority]`). The files are
/// not read when the policy loads: only `secsock issue` and `secsock doctor` need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The CA certificate, resolved against the policy file's directory.
    pub certificate_file: PathBuf,
    /// The CA private key (mode 0600 or stricter).
    pub private_key_file: PathBuf,
}

/// Everything wrong with a policy, for `secsock doctor`: unlike [`Policy::load`], which
/// stops at the first problem, [`Policy::diagnose`] checks every section and every file.
#[derive(Debug)]
pub struct Diagnosis {
    /// The policy, when nothing is wrong with it.
    pub policy: Option<Policy>,
    /// Every problem found, in file order of the sections.
    pub errors: Vec<PolicyError>,
}

/// This machine's credential: the `[identity]` section, with its files read.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain file, resolved against the policy file's directory.
    pub certificate_file: PathBuf,
    /// The private key file, resolved against the policy file's directory.
    pub private_key_file: PathBuf,
    /// The certificate chain, leaf first; never empty.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf certificate (PKCS#8, SEC1 or PKCS#1); it has been
    /// checked to match the leaf's public key.
    pub private_key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            certificate_file: self.certificate_file.clone(),
            private_key_file: self.private_key_file.clone(),
            chain: self.chain.clone(),
            // `PrivateKeyDer` is deliberately not `Clone`; copying a key is explicit.
            private_key: self.private_key.clone_key(),
        }
    }
}

/// Whom this machine trusts: the `[trust]` section, with its files read.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The anchor files, resolved against the policy file's directory, in file order.
    pub anchor_files: Vec<PathBuf>,
    /// Every certificate of every anchor file; never empty.
    pub anchors: Vec<CertificateDer<'static>>,
    /// The CRL files, resolved against the policy file's directory, in file order.
    pub crl_files: Vec<PathBuf>,
    /// Every CRL of every CRL file (possibly none).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// The file each CRL of `crls` was read from, in the same order.
    pub crl_origins: Vec<PathBuf>,
    /// What an expired CRL (its nextUpdate passed) does (`expired_crls`).
    pub expired_crls: ExpiredCrls,
}

/// What an expired CRL does (`[trust] expired_crls`): a CRL past its nextUpdate may miss
/// revocations made since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiredCrls {
    /// Use it anyway and log a warning at each load and once a day (`"warn"`): CRLs are
    /// read only when the policy loads, so refusing would stop every peer of that issuer
    /// until a restart with a fresh CRL.
    #[default]
    Warn,
    /// Refuse every certificate whose issuer's CRL has expired (`"refuse"`).
    Refuse,
}

/// What "default" means: the `[defaults]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// The crypto policy used when a socket names none (`"standard"` unless the file says).
    pub crypto: String,
    /// How long a handshake may take before the connection fails (10 s unless the file says).
    pub handshake_timeout: Duration,
    /// The most PBKDF2 iterations this machine's clients compute when a server's SCRAM
    /// challenge asks for them ([`DEFAULT_USER_MAX_ITERATIONS`] unless the file says); a
    /// server asking more is refused.
    pub user_max_iterations: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            crypto: STANDARD.to_owned(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            user_max_iterations: DEFAULT_USER_MAX_ITERATIONS,
        }
    }
}

/// A named crypto policy (a `[crypto.NAME]` section): the counterpart of a Windows
/// main-mode/quick-mode policy, chosen by a socket through a [`CryptoPolicyKey`].
#[derive(Debug, Clone)]
pub struct CryptoPolicy {
    /// The section name, e.g. `standard` for `[crypto.standard]`.
    pub name: String,
    /// The policy key GUID (`id`), if the section has one; never zero.
    pub id: Option<u128>,
    /// The key exchange groups, in order of preference; never empty, no duplicates.
    pub key_exchange: Vec<&'static dyn SupportedKxGroup>,
    /// The TLS 1.3 cipher suites, in order of preference; never empty, no duplicates.
    pub cipher_suites: Vec<SupportedCipherSuite>,
    /// How long a resumption ticket is valid; zero disables resumption. At most 7 days.
    pub session_lifetime: Duration,
    /// When to update the traffic keys (TLS 1.3 KeyUpdate).
    pub rekey_after: RekeyLimits,
}

impl CryptoPolicy {
    /// The built-in `standard` policy, used when the file does not define
    /// `[crypto.standard]`, and the source of every value a `[crypto.NAME]` section omits.
    ///
    /// Key exchange X25519MLKEM768 (post-quantum hybrid), X25519, secp256r1; the three
    /// TLS 1.3 cipher suites (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305); tickets valid
    /// for 2 hours; new traffic keys after 64 GiB or 1 hour.
    ///
    /// ```
    /// let standard = secsock::policy::CryptoPolicy::standard();
    /// assert_eq!(standard.name, "standard");
    /// assert_eq!(standard.session_lifetime.as_secs(), 2 * 60 * 60);
    /// ```
    pub fn standard() -> CryptoPolicy {
        CryptoPolicy {
            name: STANDARD.to_owned(),
            id: None,
            key_exchange: vec![
                kx_group::X25519MLKEM768,
                kx_group::X25519,
                kx_group::SECP256R1,
            ],
            cipher_suites: vec![
                cipher_suite::TLS13_AES_128_GCM_SHA256,
                cipher_suite::TLS13_AES_256_GCM_SHA384,
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ],
            session_lifetime: Duration::from_secs(2 * 60 * 60),
            rekey_after: RekeyLimits {
                bytes: Some(64 << 30),
                time: Some(Duration::from_secs(60 * 60)),
            },
        }
    }
}

/// When to update the traffic keys: the `rekey_after` table of a crypto policy.
///
/// `None` means no limit of that kind (rustls still updates keys before the cipher's
/// confidentiality limit is reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RekeyLimits {
    /// After this many bytes in one direction; never zero.
    pub bytes: Option<u64>,
    /// After this much time; never zero.
    pub time: Option<Duration>,
}

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
        let ctx = Ctx { text, source };
        ctx.build(ctx.parse()?)
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
        let ctx = Ctx {
            text: &text,
            source: path,
        };
        let mut diagnosis = match ctx.parse() {
            Ok(raw) => {
                let (policy, errors) = ctx.build_all(raw);
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

    /// Finds the policy file the way an application without an explicit path does, and
    /// loads it: the first existing file of [`Policy::discovery_candidates`].
    ///
    /// When `$SECSOCK_POLICY` is set, the file it names must exist; secsock does not fall
    /// back to another file then. When no candidate exists, the error
    /// ([`PolicyErrorKind::NotFound`]) lists every place looked at.
    pub fn discover() -> Result<Policy, PolicyError> {
        discover_in(&Policy::discovery_candidates())
    }

    /// The places [`Policy::discover`] looks at, in order, each with why it is looked at:
    /// `$SECSOCK_POLICY` (`"$SECSOCK_POLICY"`), then
    /// `$XDG_CONFIG_HOME/secsock/policy.toml` or `~/.config/secsock/policy.toml`
    /// (`"per-user config"`), then `/etc/secsock/policy.toml` (`"system"`).
    ///
    /// Unset or empty variables are skipped; a relative `$XDG_CONFIG_HOME` is ignored, as
    /// the XDG base directory specification says.
    pub fn discovery_candidates() -> Vec<(PathBuf, &'static str)> {
        candidates_from(
            std::env::var_os("SECSOCK_POLICY").map(PathBuf::from),
            std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
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

fn candidates_from(
    env_policy: Option<PathBuf>,
    xdg_config_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Vec<(PathBuf, &'static str)> {
    let mut candidates = Vec::new();
    if let Some(path) = env_policy.filter(|p| !p.as_os_str().is_empty()) {
        candidates.push((path, FROM_ENV));
    }
    let config_dir = match xdg_config_home.filter(|p| p.is_absolute()) {
        Some(dir) => Some(dir),
        None => home
            .filter(|h| !h.as_os_str().is_empty())
            .map(|h| h.join(".config")),
    };
    if let Some(dir) = config_dir {
        candidates.push((dir.join("secsock").join("policy.toml"), "per-user config"));
    }
    candidates.push((PathBuf::from("/etc/secsock/policy.toml"), "system"));
    candidates
}

fn discover_in(candidates: &[(PathBuf, &'static str)]) -> Result<Policy, PolicyError> {
    for (path, why) in candidates {
        match fs::metadata(path) {
            Ok(_) => return Policy::load(path),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                // An explicit choice that points nowhere is a mistake to report, not a
                // reason to pick up some other policy.
                if *why == FROM_ENV {
                    let looked_in = vec![(path.clone(), *why)];
                    return Err(PolicyError::new(
                        PathBuf::new(),
                        PolicyErrorKind::NotFound { looked_in },
                    ));
                }
            }
            // E.g. a directory we may not search: say so rather than silently skip it.
            Err(e) => return Err(PolicyError::new(path, PolicyErrorKind::Io(e))),
        }
    }
    Err(PolicyError::new(
        PathBuf::new(),
        PolicyErrorKind::NotFound {
            looked_in: candidates.to_vec(),
        },
    ))
}

/// Parses a duration such as `"10s"`, `"500ms"`, `"2h"`, `"1h30m"`, `"7d"` or `"0s"`.
///
/// Units: `ms`, `s`, `m` (minutes), `h`, `d`; every number needs one. Components add up.
/// The error says what is wrong with the text.
///
/// ```
/// use secsock::policy::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(parse_duration("10").unwrap_err().contains("no unit"));
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: &str = "use ms, s, m, h or d";
    let invalid = |why: String| format!("invalid duration `{text}`: {why}");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid(format!(
            "it is empty (write e.g. \"10s\" or \"1h30m\"; {UNITS})"
        )));
    }
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let (number, after) =
            split_number(rest).ok_or_else(|| invalid(format!("expected a number at `{rest}`")))?;
        let after = after.trim_start();
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let ms_per_unit: u64 = match unit.to_ascii_lowercase().as_str() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" if after.starts_with('.') || after.starts_with(',') => {
                return Err(invalid(
                    "fractions are not supported (write e.g. \"1h30m\" or \"1500ms\")".to_owned(),
                ))
            }
            "" => {
                return Err(invalid(format!(
                    "`{number}` has no unit ({UNITS}, e.g. \"{number}s\")"
                )))
            }
            other => return Err(invalid(format!("unknown unit `{other}` ({UNITS})"))),
        };
        let too_large = || invalid("it is too large".to_owned());
        let n: u64 = number.parse().map_err(|_| too_large())?;
        let ms = n.checked_mul(ms_per_unit).ok_or_else(too_large)?;
        total_ms = total_ms.checked_add(ms).ok_or_else(too_large)?;
        rest = after.trim_start();
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a byte count such as `"64GiB"`, `"1MiB"`, `"512KiB"`, `"1000"`, `"10MB"` or `"1GB"`.
///
/// Units (case-insensitive): `B`, decimal `KB` `MB` `GB` `TB`, binary `KiB` `MiB` `GiB`
/// `TiB`; a bare number is bytes. More than `u64::MAX` bytes is an error.
///
/// ```
/// use secsock::policy::parse_size;
///
/// assert_eq!(parse_size("64GiB"), Ok(64 << 30));
/// assert_eq!(parse_size("10MB"), Ok(10_000_000));
/// assert!(parse_size("99999999TiB").unwrap_err().contains("too large"));
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    const UNITS: &str = "use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB";
    let invalid = |why: String| format!("invalid size `{text}`: {why}");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid(format!(
            "it is empty (write e.g. \"64GiB\"; {UNITS})"
        )));
    }
    let (number, unit) = split_number(trimmed)
        .ok_or_else(|| invalid(format!("expected a number at `{trimmed}`")))?;
    let unit = unit.trim();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ if unit.starts_with('.') || unit.starts_with(',') => {
            return Err(invalid(
                "fractions are not supported (write e.g. \"1536MiB\")".to_owned(),
            ))
        }
        _ => return Err(invalid(format!("unknown unit `{unit}` ({UNITS})"))),
    };
    let too_large = || invalid(format!("it is too large (at most {} bytes)", u64::MAX));
    let n: u64 = number.parse().map_err(|_| too_large())?;
    n.checked_mul(multiplier).ok_or_else(too_large)
}

/// Splits leading ASCII digits from the rest; `None` if there are none.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0).then(|| text.split_at(digits))
}

/// Why a policy could not be loaded: where (file, line, key) and what ([`PolicyErrorKind`]).
///
/// Displayed as `FILE:LINE: KEY: MESSAGE`, with the parts that are known, e.g.
/// `/etc/secsock/policy.toml:7: trust.anchors: cannot read /etc/secsock/trust/ca.crt: No
/// such file or directory (os error 2)`.
#[derive(Debug)]
pub struct PolicyError {
    /// The policy file, as given; empty when no file is concerned
    /// ([`PolicyErrorKind::NotFound`]).
    pub file: PathBuf,
    /// The 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// The dotted key concerned, e.g. `trust.anchors` or `crypto.fast.key_exchange`.
    pub key: Option<String>,
    /// What is wrong.
    pub kind: PolicyErrorKind,
}

impl PolicyError {
    fn new(file: impl Into<PathBuf>, kind: PolicyErrorKind) -> Self {
        PolicyError {
            file: file.into(),
            line: None,
            key: None,
            kind,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has_file = !self.file.as_os_str().is_empty();
        match (has_file, self.line) {
            (true, Some(line)) => write!(f, "{}:{line}: ", self.file.display())?,
            (true, None) => write!(f, "{}: ", self.file.display())?,
            (false, Some(line)) => write!(f, "line {line}: ")?,
            (false, None) => {}
        }
        let names_its_key = matches!(
            self.kind,
            PolicyErrorKind::UnknownKey { .. } | PolicyErrorKind::Unsupported(_)
        );
        if let Some(key) = self.key.as_deref().filter(|_| !names_its_key) {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for PolicyError {}

/// What is wrong with a policy; the facts a person needs to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// No policy file exists in any place discovery looked at (each with why it was
    /// looked at), or `$SECSOCK_POLICY` names a file that does not exist (then it is the
    /// only place listed).
    #[error("{}", not_found_message(looked_in))]
    NotFound {
        /// The places looked at, in order, with why.
        looked_in: Vec<(PathBuf, &'static str)>,
    },
    /// The policy file itself could not be read (missing, not readable, not UTF-8).
    #[error("cannot read the policy file: {0}")]
    Io(io::Error),
    /// The file is not valid TOML.
    #[error("TOML syntax error: {0}")]
    Syntax(String),
    /// A key or section this version does not know (often a typo).
    #[error("unknown key `{key}` {} {table}{}", if table.starts_with('[') { "in" } else { "at" }, expected_list(expected))]
    UnknownKey {
        /// The unknown key, as written.
        key: String,
        /// Where it is: `[trust]`, `[crypto.fast]`, or `the top level`.
        table: Box<str>,
        /// The keys allowed there.
        expected: Box<[String]>,
    },
    /// A required section or key is absent.
    #[error("{0}")]
    MissingKey(String),
    /// A value has the wrong type or an unacceptable value (a bad duration, an unknown
    /// key exchange group, a TLS 1.2 cipher suite, a duplicate id, a private key that
    /// does not match the certificate, ...).
    #[error("{0}")]
    InvalidValue(String),
    /// A file named by the policy could not be read.
    #[error("cannot read {}: {error}", path.display())]
    MissingFile {
        /// The file, resolved against the policy file's directory.
        path: PathBuf,
        /// Why it could not be read.
        error: io::Error,
    },
    /// The private key file is accessible by group or others (`mode & 0o077 != 0`).
    #[error(
        "{} is {} by group or others (mode {:04o}); a private key must be 0600 or stricter: run `chmod 600 {}`",
        path.display(),
        if mode & 0o044 != 0 { "readable" } else { "accessible" },
        mode & 0o7777,
        path.display()
    )]
    KeyPermissions {
        /// The private key file.
        path: PathBuf,
        /// Its permission bits (`st_mode`).
        mode: u32,
    },
    /// The policy file, a trust anchor file or a CRL file may be written by group or others
    /// (`mode & 0o022 != 0`): whoever can write it decides whom this machine trusts.
    #[error(
        "{} is writable by group or others (mode {:04o}); {what} must be writable by its owner only: run `chmod go-w {}`",
        path.display(),
        mode & 0o7777,
        path.display()
    )]
    WritableByOthers {
        /// The file.
        path: PathBuf,
        /// Its permission bits (`st_mode`).
        mode: u32,
        /// What the file is, e.g. "the policy file".
        what: &'static str,
    },
    /// The users file is accessible by group or others (`mode & 0o077 != 0`): its
    /// verifiers allow offline guessing of the passwords, so it is as private as a key.
    #[error(
        "{} is {} by group or others (mode {:04o}); the users file holds password verifiers and must be 0600 or stricter: run `chmod 600 {}`",
        path.display(),
        if mode & 0o044 != 0 { "readable" } else { "accessible" },
        mode & 0o7777,
        path.display()
    )]
    UsersFilePermissions {
        /// The users file.
        path: PathBuf,
        /// Its permission bits (`st_mode`).
        mode: u32,
    },
    /// A file holds no usable PEM item of the kind expected, or malformed PEM.
    #[error("{}: {what}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A section this version of secsock does not support (`[[accounts]]`, `[users]`).
    #[error("{0}")]
    Unsupported(String),
}

fn not_found_message(looked_in: &[(PathBuf, &'static str)]) -> String {
    if let [(path, FROM_ENV)] = looked_in {
        return format!(
            "$SECSOCK_POLICY names {}, which does not exist; correct or unset $SECSOCK_POLICY, \
             or create a policy with `secsock init`",
            path.display()
        );
    }
    let places: Vec<String> = looked_in
        .iter()
        .map(|(path, why)| format!("{} ({why})", path.display()))
        .collect();
    format!(
        "no secsock policy file found; looked in: {}; create one with `secsock init`, \
         or name one with $SECSOCK_POLICY",
        places.join(", ")
    )
}

fn expected_list(expected: &[String]) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!(" (expected one of: {})", expected.join(", "))
    }
}

// ---------------------------------------------------------------------------------------
// The file as written. Every value that can be wrong carries its span, so that errors
// point at its line.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    identity: Option<RawIdentity>,
    trust: Option<RawTrust>,
    defaults: Option<RawDefaults>,
    crypto: Option<BTreeMap<Spanned<String>, Spanned<RawCrypto>>>,
    authority: Option<RawAuthority>,
    users: Option<RawUsers>,
    accounts: Option<Vec<Spanned<RawAccount>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    file: Option<Spanned<String>>,
    authentication: Option<Spanned<String>>,
    domain: Option<Spanned<String>>,
    failures_per_address: Option<Spanned<i64>>,
    failure_window: Option<Spanned<Scalar>>,
    failure_delay: Option<Spanned<Scalar>>,
    failure_delay_max: Option<Spanned<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    principal: Spanned<String>,
    user: Spanned<String>,
    allow_system_account: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    certificate: Spanned<String>,
    private_key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    certificate: Spanned<String>,
    private_key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    anchors: Spanned<Vec<Spanned<String>>>,
    crls: Option<Vec<Spanned<String>>>,
    expired_crls: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    crypto: Option<Spanned<String>>,
    handshake_timeout: Option<Spanned<Scalar>>,
    user_max_iterations: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrypto {
    id: Option<Spanned<String>>,
    key_exchange: Option<Spanned<Vec<Spanned<String>>>>,
    cipher_suites: Option<Spanned<Vec<Spanned<String>>>>,
    session_lifetime: Option<Spanned<Scalar>>,
    rekey_after: Option<RawRekey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRekey {
    bytes: Option<Spanned<Scalar>>,
    time: Option<Spanned<Scalar>>,
}

/// A duration or size as written: a string, or a bare integer (so that `bytes = 1000`
/// works and `handshake_timeout = 10` gets "has no unit" rather than a type error).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string such as \"10s\" or \"64GiB\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

// ---------------------------------------------------------------------------------------
// From the file as written to a checked `Policy`.

/// The text being checked and where it came from: everything an error needs.
struct Ctx<'a> {
    text: &'a str,
    source: &'a Path,
}

impl Ctx<'_> {
    /// The 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        kind: PolicyErrorKind,
    ) -> PolicyError {
        PolicyError {
            file: self.source.to_path_buf(),
            line: span.map(|s| self.line_of(s.start)),
            key,
            kind,
        }
    }

    fn invalid(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> PolicyError {
        self.error(
            Some(span),
            Some(key.to_owned()),
            PolicyErrorKind::InvalidValue(message.into()),
        )
    }

    /// Resolves a path written in the policy against the policy file's directory.
    fn resolve_path(&self, written: &Spanned<String>, key: &str) -> Result<PathBuf, PolicyError> {
        if written.get_ref().is_empty() {
            return Err(self.invalid(written.span(), key, "the path is empty"));
        }
        let dir = self.source.parent().unwrap_or(Path::new(""));
        Ok(dir.join(written.get_ref()))
    }

    /// Turns a serde error (unknown key, missing key, wrong type) into a `PolicyError`
    /// naming the key, found by looking up the error's position in the parsed document.
    fn serde_error(&self, doc: &DeTable<'_>, e: &toml::de::Error) -> PolicyError {
        let message = e.message().trim_end();
        let path = match e.span() {
            Some(span) => {
                let mut path = Vec::new();
                locate(doc, span.start, &mut Vec::new(), &mut path);
                path
            }
            None => Vec::new(),
        };
        let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
        let kind = if message.starts_with("unknown field") {
            let key = quoted.first().map_or_else(String::new, |k| (*k).to_owned());
            let table_path = match path.split_last() {
                Some((last, parent)) if *last == key => parent,
                _ => &path[..],
            };
            PolicyErrorKind::UnknownKey {
                key,
                table: table_name(table_path).into(),
                expected: quoted.iter().skip(1).map(|k| (*k).to_owned()).collect(),
            }
        } else if message.starts_with("missing field") {
            let key = quoted.first().copied().unwrap_or("?");
            let key_path = path
                .iter()
                .map(String::as_str)
                .chain([key])
                .collect::<Vec<_>>();
            let full = dotted(&key_path);
            return self.error(
                e.span(),
                Some(full),
                PolicyErrorKind::MissingKey(format!(
                    "required key `{key}` is missing from {}",
                    table_name(&path)
                )),
            );
        } else {
            PolicyErrorKind::InvalidValue(plain_type_words(message))
        };
        let key = (!path.is_empty())
            .then(|| dotted(&path.iter().map(String::as_str).collect::<Vec<_>>()));
        self.error(e.span(), key, kind)
    }

    /// The file's syntax and structure: keys, types, sections of later features.
    fn parse(&self) -> Result<RawPolicy, PolicyError> {
        let doc = DeTable::parse(self.text).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            self.error(e.span(), None, PolicyErrorKind::Syntax(message))
        })?;
        toml::from_str(self.text).map_err(|e| self.serde_error(doc.get_ref(), &e))
    }

    fn build(&self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let (policy, mut errors) = self.build_all(raw);
        match policy {
            Some(policy) => Ok(policy),
            None => Err(errors.remove(0)),
        }
    }

    /// Checks every section, collecting every problem; the policy only if there is none.
    fn build_all(&self, raw: RawPolicy) -> (Option<Policy>, Vec<PolicyError>) {
        let mut errors = Vec::new();
        let crypto = self
            .crypto_policies(raw.crypto.unwrap_or_default())
            .map_err(|e| errors.extend(e))
            .ok();
        // Without the crypto policies, `defaults.crypto` cannot be checked.
        let defaults = crypto.as_ref().and_then(|crypto| {
            self.defaults(raw.defaults, crypto)
                .map_err(|e| errors.push(e))
                .ok()
        });
        let identity = match raw.identity {
            Some(identity) => self.identity(identity).map_err(|e| errors.extend(e)).ok(),
            None => {
                errors.push(self.error(
                    None,
                    Some("identity".to_owned()),
                    PolicyErrorKind::MissingKey(
                        "the [identity] section is required (certificate = \"...\", private_key = \"...\")".to_owned(),
                    ),
                ));
                None
            }
        };
        let trust = match raw.trust {
            Some(trust) => self.trust(trust).map_err(|e| errors.extend(e)).ok(),
            None => {
                errors.push(self.error(
                    None,
                    Some("trust".to_owned()),
                    PolicyErrorKind::MissingKey(
                        "the [trust] section is required (anchors = [\"...\"])".to_owned(),
                    ),
                ));
                None
            }
        };
        let users = self
            .users(raw.users)
            .map_err(|e| errors.push(e))
            .unwrap_or_default();
        let accounts = self.accounts(raw.accounts.unwrap_or_default(), &mut errors);
        let authority = match raw.authority {
            None => Some(None),
            Some(raw) => {
                let certificate = self.resolve_path(&raw.certificate, "authority.certificate");
                let private_key = self.resolve_path(&raw.private_key, "authority.private_key");
                match (certificate, private_key) {
                    (Ok(certificate_file), Ok(private_key_file)) => Some(Some(Authority {
                        certificate_file,
                        private_key_file,
                    })),
                    (certificate, private_key) => {
                        errors.extend(certificate.err());
                        errors.extend(private_key.err());
                        None
                    }
                }
            }
        };
        match (crypto, defaults, identity, trust, authority) {
            (Some(crypto), Some(defaults), Some(identity), Some(trust), Some(authority))
                if errors.is_empty() =>
            {
                let policy = Policy {
                    source: self.source.to_path_buf(),
                    identity,
                    trust,
                    defaults,
                    crypto,
                    authority,
                    users,
                    accounts,
                };
                (Some(policy), errors)
            }
            _ => (None, errors),
        }
    }

    /// `[users]`: whether clients must prove a user, and where the verifiers are.
    fn users(&self, raw: Option<RawUsers>) -> Result<Users, PolicyError> {
        let Some(raw) = raw else {
            return Ok(Users::default());
        };
        let authentication = match &raw.authentication {
            None => UserAuthentication::Optional,
            Some(value) => match value.get_ref().as_str() {
                "off" => UserAuthentication::Off,
                "optional" => UserAuthentication::Optional,
                "required" => UserAuthentication::Required,
                other => {
                    return Err(self.invalid(
                        value.span(),
                        "users.authentication",
                        format!("`{other}` is not one of: off, optional, required"),
                    ))
                }
            },
        };
        let file = match &raw.file {
            Some(written) => {
                let file = self.resolve_path(written, "users.file")?;
                // Read at each authentication, not here (it may not exist yet); a mode
                // that would refuse it then is better reported now, with its line.
                if let Ok(metadata) = fs::metadata(&file) {
                    let mode = metadata.permissions().mode();
                    if metadata.is_file() && mode & 0o077 != 0 {
                        let kind = PolicyErrorKind::UsersFilePermissions { path: file, mode };
                        return Err(self.error(
                            Some(written.span()),
                            Some("users.file".to_owned()),
                            kind,
                        ));
                    }
                }
                Some(file)
            }
            None => None,
        };
        let failures = self.failure_limits(&raw)?;
        let domain = raw.domain.map(|d| d.into_inner()).filter(|d| !d.is_empty());
        Ok(Users {
            authentication,
            file,
            domain,
            failures,
        })
    }

    /// The `[users]` keys that slow down failed authentications.
    fn failure_limits(&self, raw: &RawUsers) -> Result<FailureLimits, PolicyError> {
        let mut limits = FailureLimits::default();
        if let Some(count) = &raw.failures_per_address {
            let value = *count.get_ref();
            if !(0..=MAX_FAILURES_PER_ADDRESS).contains(&value) {
                return Err(self.invalid(
                    count.span(),
                    "users.failures_per_address",
                    format!(
                        "{value} is not a count from 0 (no limit per address) to {MAX_FAILURES_PER_ADDRESS}"
                    ),
                ));
            }
            limits.per_address = value as u32;
        }
        let bounded = |value: &Spanned<Scalar>, key: &str, max: Duration, zero_ok: bool| {
            let duration = self.duration(value, key)?;
            if duration.is_zero() && !zero_ok {
                return Err(self.invalid(value.span(), key, "must be more than 0s"));
            }
            if duration > max {
                return Err(self.invalid(
                    value.span(),
                    key,
                    format!(
                        "`{}` is longer than the maximum of {}",
                        value.get_ref().0,
                        show_duration(max)
                    ),
                ));
            }
            Ok(duration)
        };
        if let Some(window) = &raw.failure_window {
            limits.window = bounded(window, "users.failure_window", MAX_FAILURE_WINDOW, false)?;
        }
        if let Some(delay) = &raw.failure_delay {
            limits.delay = bounded(delay, "users.failure_delay", MAX_FAILURE_DELAY, true)?;
        }
        if let Some(max) = &raw.failure_delay_max {
            limits.delay_max = bounded(max, "users.failure_delay_max", MAX_FAILURE_DELAY, true)?;
        }
        if limits.delay > limits.delay_max {
            let (key, span) = match (&raw.failure_delay, &raw.failure_delay_max) {
                (Some(delay), _) => ("users.failure_delay", delay.span()),
                (None, Some(max)) => ("users.failure_delay_max", max.span()),
                (None, None) => unreachable!("the defaults are ordered"),
            };
            return Err(self.invalid(
                span,
                key,
                format!(
                    "failure_delay ({}) is longer than failure_delay_max ({}): the first pause would exceed the longest",
                    show_duration(limits.delay),
                    show_duration(limits.delay_max)
                ),
            ));
        }
        Ok(limits)
    }

    /// `[[accounts]]`, each rule checked; problems are added to `errors`.
    fn accounts(
        &self,
        raw: Vec<Spanned<RawAccount>>,
        errors: &mut Vec<PolicyError>,
    ) -> Vec<AccountRule> {
        let mut rules = Vec::with_capacity(raw.len());
        for entry in raw {
            let span = entry.span();
            let entry = entry.into_inner();
            let rule = AccountRule {
                principal: entry.principal.into_inner(),
                user: entry.user.into_inner(),
                allow_system_account: entry.allow_system_account.unwrap_or(false),
            };
            match validate_rule(&rule) {
                Ok(()) => rules.push(rule),
                Err(why) => errors.push(self.invalid(span, "accounts", why)),
            }
        }
        rules
    }

    /// Every `[crypto.NAME]` section; each section is checked even if another is wrong.
    fn crypto_policies(
        &self,
        sections: BTreeMap<Spanned<String>, Spanned<RawCrypto>>,
    ) -> Result<Vec<CryptoPolicy>, Vec<PolicyError>> {
        // The map is ordered by name; the file order is the order of the names' spans.
        let mut sections: Vec<_> = sections.into_iter().collect();
        sections.sort_by_key(|(name, _)| name.span().start);
        let mut policies: Vec<CryptoPolicy> = Vec::with_capacity(sections.len() + 1);
        let mut errors = Vec::new();
        for (name, raw) in sections {
            let prefix = format!("crypto.{}", toml_key(name.get_ref()));
            if name.get_ref().is_empty() {
                errors.push(self.invalid(
                    name.span(),
                    &prefix,
                    "a crypto policy needs a non-empty name",
                ));
                continue;
            }
            let id_span = raw.get_ref().id.as_ref().map(Spanned::span);
            let policy = match self.crypto_policy(name.get_ref(), &prefix, raw.into_inner()) {
                Ok(policy) => policy,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if let (Some(id), Some(span)) = (policy.id, id_span) {
                if let Some(other) = policies.iter().find(|p| p.id == Some(id)) {
                    errors.push(self.invalid(
                        span,
                        &format!("{prefix}.id"),
                        format!(
                            "id {} is already used by [crypto.{}]",
                            format_uuid(id),
                            toml_key(&other.name)
                        ),
                    ));
                    continue;
                }
            }
            policies.push(policy);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if !policies.iter().any(|p| p.name == STANDARD) {
            policies.insert(0, CryptoPolicy::standard());
        }
        Ok(policies)
    }

    fn crypto_policy(
        &self,
        name: &str,
        prefix: &str,
        raw: RawCrypto,
    ) -> Result<CryptoPolicy, PolicyError> {
        let mut policy = CryptoPolicy::standard();
        policy.name = name.to_owned();
        if let Some(id) = raw.id {
            let key = format!("{prefix}.id");
            policy.id =
                Some(match parse_uuid(id.get_ref()) {
                    None => {
                        return Err(self.invalid(
                            id.span(),
                            &key,
                            format!(
                                "`{}` is not a UUID (write 8-4-4-4-12 hex digits, e.g. \
                             5f1c2e3a-0000-4000-8000-00000000abcd)",
                                id.get_ref()
                            ),
                        ))
                    }
                    Some(0) => return Err(self.invalid(
                        id.span(),
                        &key,
                        "the all-zero UUID means \"no policy key\" and cannot name a crypto policy",
                    )),
                    Some(value) => value,
                });
        }
        if let Some(list) = raw.key_exchange {
            let key = format!("{prefix}.key_exchange");
            policy.key_exchange =
                self.named_list(list, &key, "key exchange group", kx_group_named, |a, b| {
                    a.name() == b.name()
                })?;
        }
        if let Some(list) = raw.cipher_suites {
            let key = format!("{prefix}.cipher_suites");
            policy.cipher_suites =
                self.named_list(list, &key, "cipher suite", cipher_suite_named, |a, b| {
                    a.suite() == b.suite()
                })?;
        }
        if let Some(lifetime) = raw.session_lifetime {
            let key = format!("{prefix}.session_lifetime");
            let value = self.duration(&lifetime, &key)?;
            if value > MAX_SESSION_LIFETIME {
                return Err(self.invalid(
                    lifetime.span(),
                    &key,
                    format!(
                        "`{}` is longer than 7 days, the most TLS 1.3 allows",
                        lifetime.get_ref().0
                    ),
                ));
            }
            policy.session_lifetime = value;
        }
        if let Some(rekey) = raw.rekey_after {
            // A `rekey_after` table says exactly which limits apply: an omitted member
            // means no limit of that kind.
            policy.rekey_after = RekeyLimits::default();
            if let Some(bytes) = rekey.bytes {
                let key = format!("{prefix}.rekey_after.bytes");
                let value = parse_size(&bytes.get_ref().0)
                    .map_err(|e| self.invalid(bytes.span(), &key, e))?;
                if value == 0 {
                    return Err(self.invalid(
                        bytes.span(),
                        &key,
                        "must be more than 0 (omit it for no byte limit)",
                    ));
                }
                policy.rekey_after.bytes = Some(value);
            }
            if let Some(time) = rekey.time {
                let key = format!("{prefix}.rekey_after.time");
                let value = self.duration(&time, &key)?;
                if value.is_zero() {
                    return Err(self.invalid(
                        time.span(),
                        &key,
                        "must be more than 0s (omit it for no time limit)",
                    ));
                }
                policy.rekey_after.time = Some(value);
            }
        }
        Ok(policy)
    }

    /// Maps a non-empty list of names to values, rejecting unknown names and duplicates
    /// (`same` says when two values are the same thing under different names).
    fn named_list<T>(
        &self,
        list: Spanned<Vec<Spanned<String>>>,
        key: &str,
        what: &str,
        lookup: impl Fn(&str) -> Result<T, String>,
        same: impl Fn(&T, &T) -> bool,
    ) -> Result<Vec<T>, PolicyError> {
        if list.get_ref().is_empty() {
            return Err(self.invalid(
                list.span(),
                key,
                format!("the list is empty; name at least one {what}"),
            ));
        }
        let mut values: Vec<T> = Vec::with_capacity(list.get_ref().len());
        for name in list.get_ref() {
            let value = lookup(name.get_ref()).map_err(|e| self.invalid(name.span(), key, e))?;
            if let Some(j) = values.iter().position(|earlier| same(earlier, &value)) {
                let earlier = list.get_ref()[j].get_ref();
                let message = if earlier == name.get_ref() {
                    format!("{what} `{earlier}` is listed twice")
                } else {
                    format!(
                        "{what} `{}` is the same as `{earlier}`, listed before it",
                        name.get_ref()
                    )
                };
                return Err(self.invalid(name.span(), key, message));
            }
            values.push(value);
        }
        Ok(values)
    }

    fn duration(&self, value: &Spanned<Scalar>, key: &str) -> Result<Duration, PolicyError> {
        parse_duration(&value.get_ref().0).map_err(|e| self.invalid(value.span(), key, e))
    }

    fn defaults(
        &self,
        raw: Option<RawDefaults>,
        crypto: &[CryptoPolicy],
    ) -> Result<Defaults, PolicyError> {
        let mut defaults = Defaults::default();
        let Some(raw) = raw else { return Ok(defaults) };
        if let Some(name) = raw.crypto {
            if !crypto.iter().any(|c| &c.name == name.get_ref()) {
                let known: Vec<&str> = crypto.iter().map(|c| c.name.as_str()).collect();
                return Err(self.invalid(
                    name.span(),
                    "defaults.crypto",
                    format!(
                        "no crypto policy is named `{}` (define [crypto.{}] or use one of: {})",
                        name.get_ref(),
                        toml_key(name.get_ref()),
                        known.join(", ")
                    ),
                ));
            }
            defaults.crypto = name.into_inner();
        }
        if let Some(timeout) = raw.handshake_timeout {
            let key = "defaults.handshake_timeout";
            let value = self.duration(&timeout, key)?;
            if value.is_zero() {
                return Err(self.invalid(timeout.span(), key, "must be more than 0s"));
            }
            if value > MAX_HANDSHAKE_TIMEOUT {
                return Err(self.invalid(
                    timeout.span(),
                    key,
                    format!(
                        "`{}` is longer than the maximum of 10 minutes",
                        timeout.get_ref().0
                    ),
                ));
            }
            defaults.handshake_timeout = value;
        }
        if let Some(count) = raw.user_max_iterations {
            let (min, max) = (
                crate::user::scram::MIN_ITERATIONS,
                crate::user::scram::MAX_ITERATIONS,
            );
            let value = *count.get_ref();
            if value < i64::from(min) || value > i64::from(max) {
                return Err(self.invalid(
                    count.span(),
                    "defaults.user_max_iterations",
                    format!(
                        "{value} is outside {min}..={max} (SCRAM's minimum, and the most a client ever computes)"
                    ),
                ));
            }
            defaults.user_max_iterations = value as u32;
        }
        Ok(defaults)
    }

    /// The certificate chain and key; both files are checked even if one is wrong.
    fn identity(&self, raw: RawIdentity) -> Result<Identity, Vec<PolicyError>> {
        let cert_key = "identity.certificate";
        let key_key = "identity.private_key";
        let chain = self
            .resolve_path(&raw.certificate, cert_key)
            .and_then(|file| {
                let chain = self.certificates(&raw.certificate, cert_key, &file, None)?;
                Ok((chain, file))
            });
        let span = raw.private_key.span();
        let private_key = self
            .resolve_path(&raw.private_key, key_key)
            .and_then(|file| Ok((self.private_key(span.clone(), key_key, &file)?, file)));
        let ((chain, certificate_file), (private_key, private_key_file)) =
            match (chain, private_key) {
                (Ok(chain), Ok(key)) => (chain, key),
                (chain, key) => return Err(chain.err().into_iter().chain(key.err()).collect()),
            };

        // Refuse a key the TLS stack cannot use, or one that belongs to another
        // certificate, now rather than at the first handshake.
        let provider = aws_lc_rs::default_provider();
        let signer = provider
            .key_provider
            .load_private_key(private_key.clone_key())
            .map_err(|e| {
                vec![self.invalid(
                    span.clone(),
                    key_key,
                    format!("{}: unusable private key: {e}", private_key_file.display()),
                )]
            })?;
        match rustls::sign::CertifiedKey::new(chain.clone(), signer).keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(vec![self.invalid(
                    span,
                    key_key,
                    format!(
                        "{} is not the private key of the certificate in {}",
                        private_key_file.display(),
                        certificate_file.display()
                    ),
                )])
            }
            Err(e) => {
                return Err(vec![self.invalid(
                    raw.certificate.span(),
                    cert_key,
                    format!(
                        "{}: the first certificate cannot be used: {e}",
                        certificate_file.display()
                    ),
                )])
            }
        }
        Ok(Identity {
            certificate_file,
            private_key_file,
            chain,
            private_key,
        })
    }

    /// The anchors and CRLs; every file is checked even if one is wrong.
    fn trust(&self, raw: RawTrust) -> Result<Trust, Vec<PolicyError>> {
        let key = "trust.anchors";
        if raw.anchors.get_ref().is_empty() {
            return Err(vec![self.invalid(
                raw.anchors.span(),
                key,
                "the list is empty; name at least one file of trusted CA certificates",
            )]);
        }
        let mut errors = Vec::new();
        let expired_crls = match &raw.expired_crls {
            None => ExpiredCrls::default(),
            Some(value) => match value.get_ref().as_str() {
                "warn" => ExpiredCrls::Warn,
                "refuse" => ExpiredCrls::Refuse,
                other => {
                    return Err(vec![self.invalid(
                        value.span(),
                        "trust.expired_crls",
                        format!("`{other}` is not one of: warn, refuse"),
                    )])
                }
            },
        };
        let mut trust = Trust {
            anchor_files: Vec::new(),
            anchors: Vec::new(),
            crl_files: Vec::new(),
            crls: Vec::new(),
            crl_origins: Vec::new(),
            expired_crls,
        };
        for written in raw.anchors.get_ref() {
            let loaded = self.resolve_path(written, key).and_then(|path| {
                let owner_only = Some("a trust anchor file");
                Ok((self.certificates(written, key, &path, owner_only)?, path))
            });
            match loaded {
                Ok((anchors, path)) => {
                    trust.anchors.extend(anchors);
                    trust.anchor_files.push(path);
                }
                Err(e) => errors.push(e),
            }
        }
        let key = "trust.crls";
        for written in raw.crls.unwrap_or_default() {
            let loaded = self
                .resolve_path(&written, key)
                .and_then(|path| Ok((self.crls(&written, key, &path)?, path)));
            match loaded {
                Ok((crls, path)) => {
                    trust.crl_origins.extend(crls.iter().map(|_| path.clone()));
                    trust.crls.extend(crls);
                    trust.crl_files.push(path);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(trust)
        } else {
            Err(errors)
        }
    }

    /// Reads a file the policy names. With `owner_only` (what the file is), the file is
    /// refused when group or others may write it, checked on the file opened.
    fn read(
        &self,
        written: &Spanned<String>,
        key: &str,
        path: &Path,
        owner_only: Option<&'static str>,
    ) -> Result<Vec<u8>, PolicyError> {
        read_file(path, owner_only)
            .map_err(|kind| self.error(Some(written.span()), Some(key.to_owned()), kind))
    }

    fn bad_pem(&self, span: Range<usize>, key: &str, path: &Path, what: String) -> PolicyError {
        let kind = PolicyErrorKind::BadPem {
            path: path.to_path_buf(),
            what,
        };
        self.error(Some(span), Some(key.to_owned()), kind)
    }

    /// Every certificate of a PEM file; at least one.
    fn certificates(
        &self,
        written: &Spanned<String>,
        key: &str,
        path: &Path,
        owner_only: Option<&'static str>,
    ) -> Result<Vec<CertificateDer<'static>>, PolicyError> {
        let bytes = self.read(written, key, path, owner_only)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.bad_pem(written.span(), key, path, pem_error_text(&e)))?;
        if certs.is_empty() {
            return Err(self.bad_pem(
                written.span(),
                key,
                path,
                "no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)"
                    .to_owned(),
            ));
        }
        Ok(certs)
    }

    /// Every CRL of a PEM file, or the one CRL of a DER file.
    fn crls(
        &self,
        written: &Spanned<String>,
        key: &str,
        path: &Path,
    ) -> Result<Vec<CertificateRevocationListDer<'static>>, PolicyError> {
        let bytes = self.read(written, key, path, Some("a CRL file"))?;
        if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.bad_pem(written.span(), key, path, pem_error_text(&e)))?;
            if crls.is_empty() {
                return Err(self.bad_pem(
                    written.span(),
                    key,
                    path,
                    "no CRL found (expected PEM \"-----BEGIN X509 CRL-----\" blocks, or one DER CRL)".to_owned(),
                ));
            }
            Ok(crls)
        } else if bytes.first() == Some(&0x30) {
            // A DER SEQUENCE; its contents are checked by the verifier that uses it.
            Ok(vec![CertificateRevocationListDer::from(bytes)])
        } else {
            Err(self.bad_pem(
                written.span(),
                key,
                path,
                "neither a PEM nor a DER certificate revocation list".to_owned(),
            ))
        }
    }

    /// Reads the private key, refusing it if group or others may access the file.
    fn private_key(
        &self,
        span: Range<usize>,
        key: &str,
        path: &Path,
    ) -> Result<PrivateKeyDer<'static>, PolicyError> {
        read_private_key_file(path)
            .map_err(|kind| self.error(Some(span), Some(key.to_owned()), kind))
    }
}

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
fn read_file(path: &Path, owner_only: Option<&'static str>) -> Result<Vec<u8>, PolicyErrorKind> {
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
fn read_policy_text(path: &Path) -> Result<(String, Option<PolicyError>), PolicyError> {
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

/// `15m`, `8s`, `1500ms`: a duration as the policy file writes it.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms % 86_400_000 == 0 && ms > 0 => format!("{}d", ms / 86_400_000),
        _ if ms % 3_600_000 == 0 && ms > 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 && ms > 0 => format!("{}m", ms / 60_000),
        _ if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

/// Finds the deepest key path whose key or value span contains `offset`.
fn locate(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>, best: &mut Vec<String>) {
    let contains =
        |span: Range<usize>| span.contains(&offset) || (span.is_empty() && span.start == offset);
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if (contains(key.span()) || contains(value.span())) && path.len() > best.len() {
            best.clone_from(path);
        }
        locate_value(value.get_ref(), offset, path, best);
        path.pop();
    }
}

fn locate_value(
    value: &DeValue<'_>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Vec<String>,
) {
    match value {
        DeValue::Table(table) => locate(table, offset, path, best),
        DeValue::Array(array) => {
            for element in array.iter() {
                locate_value(element.get_ref(), offset, path, best);
            }
        }
        _ => {}
    }
}

/// `crypto.fast` style, quoting keys that are not bare TOML keys.
fn dotted(path: &[&str]) -> String {
    path.iter()
        .map(|k| toml_key(k))
        .collect::<Vec<_>>()
        .join(".")
}

/// `[crypto.fast]`, or `the top level`.
fn table_name(path: &[String]) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!(
            "[{}]",
            dotted(&path.iter().map(String::as_str).collect::<Vec<_>>())
        )
    }
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// Serde speaks of sequences, maps and structs; the file has arrays and tables.
fn plain_type_words(message: &str) -> String {
    let message = message
        .replace("a sequence", "an array")
        .replace("a map", "a table");
    match message.find("expected struct ") {
        Some(at) => format!("{}expected a table", &message[..at]),
        None => message,
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

fn kx_group_named(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "x25519mlkem768" => kx_group::X25519MLKEM768,
        "x25519" => kx_group::X25519,
        "secp256r1" | "p-256" => kx_group::SECP256R1,
        "secp384r1" | "p-384" => kx_group::SECP384R1,
        "secp256r1mlkem768" => kx_group::SECP256R1MLKEM768,
        "mlkem768" => kx_group::MLKEM768,
        "mlkem1024" => kx_group::MLKEM1024,
        _ => {
            return Err(format!(
                "unknown key exchange group `{name}` (known: {KX_NAMES})"
            ))
        }
    })
}

fn cipher_suite_named(name: &str) -> Result<SupportedCipherSuite, String> {
    let lower = name.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "tls13_aes_128_gcm_sha256" => cipher_suite::TLS13_AES_128_GCM_SHA256,
        "tls13_aes_256_gcm_sha384" => cipher_suite::TLS13_AES_256_GCM_SHA384,
        "tls13_chacha20_poly1305_sha256" => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        _ if lower.starts_with("tls_") || lower.contains("_with_") => {
            return Err(format!(
                "`{name}` is a TLS 1.2 cipher suite; secsock uses TLS 1.3 only (use one of: {SUITE_NAMES})"
            ))
        }
        _ => return Err(format!("unknown cipher suite `{name}` (known: {SUITE_NAMES})")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
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

        let write =
            |name: &str, contents: &[u8]| fs::write(dir.path().join(name), contents).unwrap();
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

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    const IDENTITY_AND_TRUST: &str = r#"[identity]
certificate = "identity/host.crt"
private_key = "identity/host.key"

[trust]
anchors = ["trust/ca.crt"]
"#;

    fn write_policy(dir: &TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("policy.toml");
        fs::write(&path, text).unwrap();
        path
    }

    fn load_err(dir: &TempDir, text: &str) -> PolicyError {
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
    fn shown(dir: &TempDir, e: &PolicyError) -> String {
        e.to_string()
            .replace(&format!("{}/", dir.path().display()), "")
    }

    const FAST_ID: u128 = 0x5f1c2e3a_0000_4000_8000_00000000abcd;

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
    fn minimal_policy_gets_the_defaults_and_the_built_in_standard() {
        let dir = trust_domain();
        let policy =
            Policy::from_toml(IDENTITY_AND_TRUST, &dir.path().join("policy.toml")).unwrap();
        assert_eq!(policy.defaults, Defaults::default());
        assert_eq!(policy.defaults.crypto, "standard");
        assert_eq!(policy.defaults.handshake_timeout, Duration::from_secs(10));
        assert_eq!(policy.crypto.len(), 1);
        let standard = &policy.crypto[0];
        assert_eq!(standard.name, "standard");
        let groups: Vec<_> = standard.key_exchange.iter().map(|g| g.name()).collect();
        assert_eq!(
            groups,
            [
                kx_group::X25519MLKEM768.name(),
                kx_group::X25519.name(),
                kx_group::SECP256R1.name()
            ]
        );
        let suites: Vec<_> = standard.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites,
            [
                cipher_suite::TLS13_AES_128_GCM_SHA256.suite(),
                cipher_suite::TLS13_AES_256_GCM_SHA384.suite(),
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256.suite()
            ]
        );
        assert_eq!(standard.session_lifetime, Duration::from_secs(7200));
        assert_eq!(
            standard.rekey_after,
            RekeyLimits {
                bytes: Some(64 << 30),
                time: Some(Duration::from_secs(3600))
            }
        );
        assert!(policy.trust.crls.is_empty());
    }

    #[test]
    fn a_file_defined_standard_replaces_the_built_in() {
        let dir = trust_domain();
        let text = format!("{IDENTITY_AND_TRUST}\n[crypto.other]\n[crypto.standard]\nkey_exchange = [\"X25519\"]\n");
        let policy = Policy::from_toml(&text, &dir.path().join("policy.toml")).unwrap();
        let names: Vec<&str> = policy.crypto.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["other", "standard"]);
        assert_eq!(policy.crypto[1].key_exchange.len(), 1);
    }

    #[test]
    fn paths_are_relative_to_the_policy_files_directory() {
        let source = Path::new("policy.toml");
        let ctx = Ctx { text: "", source };
        let written = Spanned::new(0..1, "identity/host.crt".to_owned());
        assert_eq!(
            ctx.resolve_path(&written, "k").unwrap(),
            PathBuf::from("identity/host.crt")
        );
        let ctx = Ctx {
            text: "",
            source: Path::new("/etc/secsock/policy.toml"),
        };
        assert_eq!(
            ctx.resolve_path(&written, "k").unwrap(),
            PathBuf::from("/etc/secsock/identity/host.crt")
        );
        let absolute = Spanned::new(0..1, "/srv/host.crt".to_owned());
        assert_eq!(
            ctx.resolve_path(&absolute, "k").unwrap(),
            PathBuf::from("/srv/host.crt")
        );
        let empty = Spanned::new(0..1, String::new());
        assert!(ctx
            .resolve_path(&empty, "k")
            .unwrap_err()
            .to_string()
            .contains("empty"));
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
    fn syntax_error_names_its_line() {
        let dir = trust_domain();
        let text = format!(
            "{IDENTITY_AND_TRUST}\n[defaults]\ncrypto = \"standard\nhandshake_timeout = \"1s\"\n"
        );
        let e = load_err(&dir, &text);
        assert!(matches!(e.kind, PolicyErrorKind::Syntax(_)), "{e:?}");
        assert_eq!(e.line, Some(9));
        assert!(
            shown(&dir, &e).starts_with("policy.toml:9: TOML syntax error: "),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_names_line_table_and_expected_keys() {
        let dir = trust_domain();
        let text = "[identity]\ncertificate = \"identity/host.crt\"\nprivate_key = \"identity/host.key\"\n[trust]\nancors = [\"trust/ca.crt\"]\n";
        let e = load_err(&dir, text);
        assert_eq!(
            shown(&dir, &e),
            "policy.toml:5: unknown key `ancors` in [trust] (expected one of: anchors, crls, expired_crls)"
        );
        assert_eq!(e.key.as_deref(), Some("trust.ancors"));
        match &e.kind {
            PolicyErrorKind::UnknownKey {
                key,
                table,
                expected,
            } => {
                assert_eq!(key, "ancors");
                assert_eq!(&**table, "[trust]");
                assert_eq!(**expected, ["anchors", "crls", "expired_crls"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_section_and_nested_unknown_keys() {
        let dir = trust_domain();
        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[trst]\nanchors = []\n"),
        );
        assert_eq!(
            shown(&dir, &e),
            "policy.toml:8: unknown key `trst` at the top level (expected one of: identity, trust, defaults, crypto, authority, users, accounts)"
        );

        let text = format!("{IDENTITY_AND_TRUST}\n[crypto.fast]\nrekey_after = {{ bytes = \"1GiB\", tim = \"1h\" }}\n");
        let e = load_err(&dir, &text);
        assert_eq!(e.line, Some(9));
        assert_eq!(e.key.as_deref(), Some("crypto.fast.rekey_after.tim"));
        assert!(
            shown(&dir, &e).ends_with(
                "unknown key `tim` in [crypto.fast.rekey_after] (expected one of: bytes, time)"
            ),
            "{e}"
        );

        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[crypto.\"my fast\"]\nciphers = []\n"),
        );
        assert!(
            shown(&dir, &e)
                .starts_with("policy.toml:9: unknown key `ciphers` in [crypto.\"my fast\"]"),
            "{e}"
        );
    }

    #[test]
    fn missing_sections_and_keys() {
        let dir = trust_domain();
        let e = load_err(&dir, "[trust]\nanchors = [\"trust/ca.crt\"]\n");
        assert!(matches!(e.kind, PolicyErrorKind::MissingKey(_)));
        assert_eq!(e.key.as_deref(), Some("identity"));
        assert!(
            shown(&dir, &e)
                .starts_with("policy.toml: identity: the [identity] section is required"),
            "{e}"
        );

        let e = load_err(&dir, "[identity]\ncertificate = \"identity/host.crt\"\nprivate_key = \"identity/host.key\"\n");
        assert_eq!(e.key.as_deref(), Some("trust"));

        let e = load_err(
            &dir,
            "[identity]\ncertificate = \"identity/host.crt\"\n\n[trust]\nanchors = []\n",
        );
        assert_eq!(e.line, Some(1));
        assert_eq!(e.key.as_deref(), Some("identity.private_key"));
        assert_eq!(
            shown(&dir, &e),
            "policy.toml:1: identity.private_key: required key `private_key` is missing from [identity]"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let dir = trust_domain();
        let text = IDENTITY_AND_TRUST
            .replace("anchors = [\"trust/ca.crt\"]", "anchors = \"trust/ca.crt\"");
        let e = load_err(&dir, &text);
        assert_eq!(e.line, Some(6));
        assert_eq!(e.key.as_deref(), Some("trust.anchors"));
        assert!(shown(&dir, &e).contains("expected an array"), "{e}");

        let e = load_err(&dir, &format!("{IDENTITY_AND_TRUST}\n[crypto]\nfast = 1\n"));
        assert_eq!(e.key.as_deref(), Some("crypto.fast"));
        assert!(shown(&dir, &e).ends_with("expected a table"), "{e}");
    }

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

    #[test]
    fn bad_durations_name_line_and_key() {
        let dir = trust_domain();
        for (value, needle) in [
            ("\"10x\"", "unknown unit `x`"),
            ("10", "`10` has no unit"),
            ("\"0s\"", "must be more than 0s"),
            ("\"11m\"", "longer than the maximum of 10 minutes"),
            ("true", "invalid type"),
        ] {
            let e = load_err(
                &dir,
                &format!("{IDENTITY_AND_TRUST}\n[defaults]\nhandshake_timeout = {value}\n"),
            );
            assert_eq!(e.line, Some(9), "{value}");
            assert_eq!(
                e.key.as_deref(),
                Some("defaults.handshake_timeout"),
                "{value}"
            );
            let text = shown(&dir, &e);
            assert!(
                text.starts_with("policy.toml:9: defaults.handshake_timeout: "),
                "{text}"
            );
            assert!(text.contains(needle), "{value}: {text} lacks {needle}");
        }
        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[crypto.long]\nsession_lifetime = \"8d\"\n"),
        );
        assert!(shown(&dir, &e).starts_with(
            "policy.toml:9: crypto.long.session_lifetime: `8d` is longer than 7 days"
        ));
        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[crypto.r]\nrekey_after = {{ time = \"0s\" }}\n"),
        );
        assert_eq!(e.key.as_deref(), Some("crypto.r.rekey_after.time"));
        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[crypto.r]\nrekey_after = {{ bytes = \"1QB\" }}\n"),
        );
        assert!(
            shown(&dir, &e)
                .contains("crypto.r.rekey_after.bytes: invalid size `1QB`: unknown unit `QB`"),
            "{e}"
        );
    }

    #[test]
    fn crypto_names_are_checked() {
        let dir = trust_domain();
        let cases = [
            (
                "key_exchange = [\n  \"X25519\",\n  \"X448\",\n]",
                11,
                "crypto.c.key_exchange: unknown key exchange group `X448` (known: X25519MLKEM768, X25519",
            ),
            ("key_exchange = []", 9, "crypto.c.key_exchange: the list is empty; name at least one key exchange group"),
            (
                "key_exchange = [\"secp256r1\", \"P-256\"]",
                9,
                "key exchange group `P-256` is the same as `secp256r1`, listed before it",
            ),
            ("key_exchange = [\"x25519\", \"x25519\"]", 9, "key exchange group `x25519` is listed twice"),
            (
                "cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]",
                9,
                "`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256` is a TLS 1.2 cipher suite; secsock uses TLS 1.3 only",
            ),
            (
                "cipher_suites = [\"TLS13_AES_128_CCM_SHA256\"]",
                9,
                "unknown cipher suite `TLS13_AES_128_CCM_SHA256` (known: TLS13_AES_128_GCM_SHA256",
            ),
            ("cipher_suites = []", 9, "the list is empty; name at least one cipher suite"),
            (
                "cipher_suites = [\"tls13_aes_256_gcm_sha384\", \"TLS13_AES_256_GCM_SHA384\"]",
                9,
                "is the same as `tls13_aes_256_gcm_sha384`",
            ),
        ];
        for (line, at, needle) in cases {
            let e = load_err(&dir, &format!("{IDENTITY_AND_TRUST}\n[crypto.c]\n{line}\n"));
            assert_eq!(e.line, Some(at), "{line}: {e}");
            assert!(matches!(e.kind, PolicyErrorKind::InvalidValue(_)), "{e:?}");
            assert!(
                shown(&dir, &e).contains(needle),
                "{line}: {e} lacks {needle}"
            );
        }
    }

    #[test]
    fn crypto_ids_are_valid_nonzero_and_unique() {
        let dir = trust_domain();
        let id = "5f1c2e3a-0000-4000-8000-00000000abcd";
        let text = format!(
            "{IDENTITY_AND_TRUST}\n[crypto.a]\nid = \"{id}\"\n\n[crypto.b]\nid = \"{{{id}}}\"\n"
        );
        let e = load_err(&dir, &text);
        assert_eq!(e.line, Some(12));
        assert_eq!(
            shown(&dir, &e),
            format!("policy.toml:12: crypto.b.id: id {id} is already used by [crypto.a]")
        );

        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[crypto.a]\nid = \"not-a-uuid\"\n"),
        );
        assert!(
            shown(&dir, &e).starts_with("policy.toml:9: crypto.a.id: `not-a-uuid` is not a UUID"),
            "{e}"
        );
        let e = load_err(
            &dir,
            &format!(
                "{IDENTITY_AND_TRUST}\n[crypto.a]\nid = \"00000000-0000-0000-0000-000000000000\"\n"
            ),
        );
        assert!(
            shown(&dir, &e).contains("all-zero UUID means \"no policy key\""),
            "{e}"
        );
    }

    #[test]
    fn default_crypto_must_exist() {
        let dir = trust_domain();
        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[defaults]\ncrypto = \"fast\"\n\n[crypto.slow]\n"),
        );
        assert_eq!(
            shown(&dir, &e),
            "policy.toml:9: defaults.crypto: no crypto policy is named `fast` (define [crypto.fast] or use one of: standard, slow)"
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

    #[test]
    fn users_and_accounts_are_read_and_checked() {
        let dir = trust_domain();
        let text = format!(
            "{IDENTITY_AND_TRUST}\n[users]\nfile = \"users.toml\"\nauthentication = \"required\"\ndomain = \"EXAMPLE.TEST\"\n\n\
             [[accounts]]\nprincipal = \"user:*@EXAMPLE.TEST\"\nuser = \"{{name}}\"\n\n\
             [[accounts]]\nprincipal = \"host/db.example.test\"\nuser = \"dbhost\"\n\n\
             [[accounts]]\nprincipal = \"host/backup.example.test\"\nuser = \"backup\"\nallow_system_account = true\n"
        );
        let policy = Policy::from_toml(&text, &dir.path().join("policy.toml")).unwrap();
        assert_eq!(policy.users.authentication, UserAuthentication::Required);
        assert_eq!(policy.users.file, Some(dir.path().join("users.toml")));
        assert_eq!(policy.users.domain.as_deref(), Some("EXAMPLE.TEST"));
        assert_eq!(
            policy.accounts,
            [
                AccountRule::new("user:*@EXAMPLE.TEST", "{name}"),
                AccountRule::new("host/db.example.test", "dbhost"),
                AccountRule::new("host/backup.example.test", "backup").allowing_system_account(),
            ]
        );
        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[[accounts]]\nprincipal = \"host/b.test\"\nuser = \"b\"\nallow_system_account = \"yes\"\n"),
        );
        assert!(
            shown(&dir, &e).contains("allow_system_account"),
            "{}",
            shown(&dir, &e)
        );
        // Without [users], user authentication is off; [users] alone makes it optional.
        let plain = Policy::from_toml(IDENTITY_AND_TRUST, &dir.path().join("policy.toml")).unwrap();
        assert_eq!(plain.users.authentication, UserAuthentication::Off);
        let users_only = format!("{IDENTITY_AND_TRUST}\n[users]\nfile = \"users.toml\"\n");
        let p = Policy::from_toml(&users_only, &dir.path().join("policy.toml")).unwrap();
        assert_eq!(p.users.authentication, UserAuthentication::Optional);

        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}\n[users]\nauthentication = \"sometimes\"\n"),
        );
        assert_eq!(shown(&dir, &e), "policy.toml:9: users.authentication: `sometimes` is not one of: off, optional, required");
        let e = load_err(&dir, &format!("{IDENTITY_AND_TRUST}\n[[accounts]]\nprincipal = \"user:alice@X\"\nuser = \"{{name}}\"\n"));
        assert!(
            shown(&dir, &e).starts_with("policy.toml:8: accounts: "),
            "{}",
            shown(&dir, &e)
        );
        assert!(shown(&dir, &e).contains("{name}"), "{}", shown(&dir, &e));
    }

    #[test]
    fn the_keys_of_issue_12_have_safe_defaults_and_are_checked() {
        let dir = trust_domain();
        let source = dir.path().join("policy.toml");
        let plain = Policy::from_toml(IDENTITY_AND_TRUST, &source).unwrap();
        assert_eq!(plain.defaults.user_max_iterations, 2_400_000);
        assert_eq!(plain.trust.expired_crls, ExpiredCrls::Warn);
        let limits = plain.users.failures;
        assert_eq!(
            (
                limits.per_address,
                limits.window,
                limits.delay,
                limits.delay_max
            ),
            (
                10,
                Duration::from_secs(900),
                Duration::from_secs(1),
                Duration::from_secs(8)
            )
        );

        let text = format!(
            "{IDENTITY_AND_TRUST}expired_crls = \"refuse\"\n\n[defaults]\nuser_max_iterations = 700000\n\n\
             [users]\nfailures_per_address = 0\nfailure_window = \"1h\"\nfailure_delay = \"0s\"\nfailure_delay_max = \"2s\"\n"
        );
        let set = Policy::from_toml(&text, &source).unwrap();
        assert_eq!(set.trust.expired_crls, ExpiredCrls::Refuse);
        assert_eq!(set.defaults.user_max_iterations, 700_000);
        assert_eq!(
            set.users.failures,
            FailureLimits {
                per_address: 0,
                window: Duration::from_secs(3600),
                delay: Duration::ZERO,
                delay_max: Duration::from_secs(2),
            }
        );

        for (extra, expected) in [
            (
                "[defaults]\nuser_max_iterations = 4095\n",
                "policy.toml:9: defaults.user_max_iterations: 4095 is outside 4096..=10000000",
            ),
            (
                "[defaults]\nuser_max_iterations = 10000001\n",
                "policy.toml:9: defaults.user_max_iterations: 10000001 is outside",
            ),
            (
                "[defaults]\nuser_max_iterations = \"many\"\n",
                "policy.toml:9: defaults.user_max_iterations: invalid type",
            ),
            (
                "[users]\nfailures_per_address = -1\n",
                "policy.toml:9: users.failures_per_address: -1 is not a count from 0",
            ),
            (
                "[users]\nfailure_window = \"0s\"\n",
                "policy.toml:9: users.failure_window: must be more than 0s",
            ),
            (
                "[users]\nfailure_window = \"2d\"\n",
                "policy.toml:9: users.failure_window: `2d` is longer than the maximum of 1d",
            ),
            (
                "[users]\nfailure_delay = \"10s\"\n",
                "policy.toml:9: users.failure_delay: failure_delay (10s) is longer than failure_delay_max (8s)",
            ),
            (
                "[users]\nfailure_delay_max = \"500ms\"\n",
                "policy.toml:9: users.failure_delay_max: failure_delay (1s) is longer than failure_delay_max (500ms)",
            ),
            (
                "[users]\nfailure_delay_max = \"11m\"\n",
                "policy.toml:9: users.failure_delay_max: `11m` is longer than the maximum of 10m",
            ),
        ] {
            let e = load_err(&dir, &format!("{IDENTITY_AND_TRUST}\n{extra}"));
            assert!(shown(&dir, &e).starts_with(expected), "{}", shown(&dir, &e));
        }
        let e = load_err(
            &dir,
            &format!("{IDENTITY_AND_TRUST}expired_crls = \"ignore\"\n"),
        );
        assert_eq!(
            shown(&dir, &e),
            "policy.toml:7: trust.expired_crls: `ignore` is not one of: warn, refuse"
        );
    }

    #[test]
    fn discovery_candidates_follow_the_environment() {
        let etc = (PathBuf::from("/etc/secsock/policy.toml"), "system");
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            candidates_from(p("/x/p.toml"), p("/xdg"), p("/home/a")),
            vec![
                (PathBuf::from("/x/p.toml"), "$SECSOCK_POLICY"),
                (PathBuf::from("/xdg/secsock/policy.toml"), "per-user config"),
                etc.clone()
            ]
        );
        assert_eq!(
            candidates_from(None, None, p("/home/a")),
            vec![
                (
                    PathBuf::from("/home/a/.config/secsock/policy.toml"),
                    "per-user config"
                ),
                etc.clone()
            ]
        );
        // Empty variables count as unset; a relative XDG_CONFIG_HOME is ignored.
        assert_eq!(
            candidates_from(p(""), p("relative"), p("/home/a")),
            vec![
                (
                    PathBuf::from("/home/a/.config/secsock/policy.toml"),
                    "per-user config"
                ),
                etc.clone()
            ]
        );
        assert_eq!(candidates_from(None, None, None), vec![etc.clone()]);
        // The real environment gives the same shape: the system file is always last.
        assert_eq!(Policy::discovery_candidates().last(), Some(&etc));
    }

    #[test]
    fn discovery_takes_the_first_existing_file() {
        let dir = trust_domain();
        let missing = dir.path().join("missing.toml");
        let present = write_policy(&dir, IDENTITY_AND_TRUST);
        let later = dir.path().join("later.toml");

        let policy = discover_in(&[
            (missing.clone(), "per-user config"),
            (present.clone(), "system"),
        ])
        .unwrap();
        assert_eq!(policy.source, present);

        // Nothing exists: every place is listed, with the way out.
        let e = discover_in(&[
            (missing.clone(), "per-user config"),
            (later.clone(), "system"),
        ])
        .unwrap_err();
        match &e.kind {
            PolicyErrorKind::NotFound { looked_in } => assert_eq!(looked_in.len(), 2),
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.contains(&format!("{} (per-user config)", missing.display())),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} (system)", later.display())),
            "{text}"
        );
        assert!(text.contains("secsock init"), "{text}");

        // $SECSOCK_POLICY naming a missing file is an error even though a later file exists.
        let e = discover_in(&[
            (missing.clone(), "$SECSOCK_POLICY"),
            (present.clone(), "system"),
        ])
        .unwrap_err();
        assert!(matches!(&e.kind, PolicyErrorKind::NotFound { looked_in } if looked_in.len() == 1));
        assert!(e.to_string().starts_with(&format!(
            "$SECSOCK_POLICY names {}, which does not exist",
            missing.display()
        )));

        // An explicit path wins over discovery.
        assert_eq!(Policy::resolve(Some(&present)).unwrap().source, present);
        assert!(matches!(
            Policy::resolve(Some(&missing)).unwrap_err().kind,
            PolicyErrorKind::Io(_)
        ));
    }

    #[test]
    fn durations() {
        let ok = [
            ("10s", 10_000),
            ("500ms", 500),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("7d", 604_800_000),
            ("0s", 0),
            ("1m", 60_000),
            (" 1h 30m ", 5_400_000),
            ("1H", 3_600_000),
            ("1s500ms", 1_500),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        let bad = [
            ("", "it is empty"),
            ("10", "`10` has no unit"),
            ("10x", "unknown unit `x`"),
            ("1.5h", "fractions are not supported"),
            ("-1s", "expected a number at `-1s`"),
            ("h", "expected a number at `h`"),
            ("1h foo", "expected a number at `foo`"),
            ("99999999999999999999s", "too large"),
            ("213503982335d", "too large"),
            ("18446744073709551615ms1ms", "too large"),
        ];
        for (text, needle) in bad {
            let e = parse_duration(text).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid duration `{text}`: ")),
                "{e}"
            );
            assert!(e.contains(needle), "{text}: {e} lacks {needle}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("64GiB", 64 << 30),
            ("1MiB", 1 << 20),
            ("512KiB", 512 << 10),
            ("1000", 1000),
            ("10MB", 10_000_000),
            ("1GB", 1_000_000_000),
            ("2TB", 2_000_000_000_000),
            ("1TiB", 1 << 40),
            ("7B", 7),
            ("64 gib", 64 << 30),
            ("0", 0),
            ("18446744073709551615", u64::MAX),
            ("16777215TiB", 16_777_215 << 40),
        ];
        for (text, bytes) in ok {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        let bad = [
            ("", "it is empty"),
            ("GiB", "expected a number"),
            ("-1", "expected a number"),
            ("1.5GiB", "fractions are not supported"),
            ("10 parsecs", "unknown unit `parsecs`"),
            ("1Gb2", "unknown unit `Gb2`"),
            ("16777216TiB", "too large"),
            ("18446744073709551616", "too large"),
        ];
        for (text, needle) in bad {
            let e = parse_size(text).unwrap_err();
            assert!(e.starts_with(&format!("invalid size `{text}`: ")), "{e}");
            assert!(e.contains(needle), "{text}: {e} lacks {needle}");
        }
    }

    #[test]
    fn error_display_shows_the_known_parts() {
        let e = |file: &str, line, key: Option<&str>| PolicyError {
            file: PathBuf::from(file),
            line,
            key: key.map(str::to_owned),
            kind: PolicyErrorKind::InvalidValue("bad".into()),
        };
        assert_eq!(
            e("p.toml", Some(3), Some("a.b")).to_string(),
            "p.toml:3: a.b: bad"
        );
        assert_eq!(
            e("p.toml", None, Some("a.b")).to_string(),
            "p.toml: a.b: bad"
        );
        assert_eq!(e("p.toml", None, None).to_string(), "p.toml: bad");
        assert_eq!(e("", None, None).to_string(), "bad");
    }
}
