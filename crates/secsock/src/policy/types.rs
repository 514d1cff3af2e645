//! What a loaded policy is: [`Policy`] and its parts ([`Identity`], [`Trust`], [`Defaults`],
//! [`CryptoPolicy`], [`Users`], [`FailureLimits`], ...), with the defaults and limits of
//! each value.
//!
//! Not here: reading the file ([`super::file`]) or checking it ([`super::build`]).

use std::path::PathBuf;
use std::time::Duration;

use rustls::crypto::aws_lc_rs::{cipher_suite, kx_group};
use rustls::crypto::SupportedKxGroup;
use rustls::SupportedCipherSuite;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::PolicyError;
use crate::accounts::AccountRule;

/// The name of the crypto policy that exists even when the file defines none.
pub(super) const STANDARD: &str = "standard";
/// `[defaults] handshake_timeout` when the file does not say.
pub(super) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A handshake that needs longer than this is a stuck peer, not a slow one.
pub(super) const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// RFC 8446 §4.6.1: a resumption ticket lives at most seven days.
pub(super) const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// `[defaults] user_max_iterations` when the file does not say: four times the count new
/// verifiers get, so verifiers made stronger than today's default still work, while a
/// hostile server can make a client spend at most about four logins' worth of CPU.
pub const DEFAULT_USER_MAX_ITERATIONS: u32 = 4 * crate::user::scram::DEFAULT_ITERATIONS;
/// The longest `[users] failure_window`.
pub(super) const MAX_FAILURE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest `[users] failure_delay` and `failure_delay_max` (the longest handshake).
pub(super) const MAX_FAILURE_DELAY: Duration = MAX_HANDSHAKE_TIMEOUT;
/// The largest `[users] failures_per_address`.
pub(super) const MAX_FAILURES_PER_ADDRESS: i64 = 100_000;

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
/// main-mode/quick-mode policy, chosen by a socket through a [`CryptoPolicyKey`](crate::settings::CryptoPolicyKey).
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
