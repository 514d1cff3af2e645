//! What a socket asks for: the equivalent of Windows' `SOCKET_SECURITY_SETTINGS` and
//! `SOCKET_SECURITY_SETTINGS_IPSEC`.
//!
//! This module is pure: it holds the settings and decides whether a combination is
//! valid. It does not know about sockets or the policy file; the socket checks a
//! crypto policy key against the policy when `set_security` is called.

use std::fmt;

use zeroize::Zeroizing;

/// Which security protocol a socket uses (`SOCKET_SECURITY_PROTOCOL`).
///
/// Windows has `DEFAULT` (what the system policy says; today IPsec) and `IPSEC`.
/// Here both mean TLS 1.3 with mutual authentication: `Default` takes the crypto
/// policy named by the policy file's `[defaults]`, `Tls13` says so explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    /// What the policy's `[defaults]` section says (`SOCKET_SECURITY_PROTOCOL_DEFAULT`).
    #[default]
    Default,
    /// TLS 1.3, mutual authentication (the counterpart of `SOCKET_SECURITY_PROTOCOL_IPSEC`).
    Tls13,
}

/// What bitflags does not write for a flag set: `Debug` as `A | B` (`(empty)` when none
/// is set) and `TryFrom<u32>`, which refuses bits this version does not define with a
/// [`SettingsError::UnknownFlags`] naming the set (bitflags' `from_bits` says only `None`).
macro_rules! flag_set_extras {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.is_empty() {
                    f.write_str("(empty)")
                } else {
                    bitflags::parser::to_writer(self, f)
                }
            }
        }

        impl TryFrom<u32> for $name {
            type Error = SettingsError;

            /// Flags from raw bits, as the Windows API encodes them; bits this version
            /// does not define are an error.
            fn try_from(bits: u32) -> Result<Self, SettingsError> {
                let unknown = bits & !Self::all().bits();
                if unknown != 0 {
                    return Err(SettingsError::UnknownFlags {
                        field: stringify!($name),
                        bits: unknown,
                    });
                }
                Ok(Self::from_bits_retain(bits))
            }
        }
    };
}

/// `SecurityFlags` of `SOCKET_SECURITY_SETTINGS`: what protection the socket demands or allows.
///
/// A [`bitflags`] set: `|` combines flags, [`contains`](Self::contains) tests them, and
/// [`TryFrom<u32>`] reads raw bits (refusing undefined ones).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SecurityFlags(u32);

bitflags::bitflags! {
    impl SecurityFlags: u32 {
        /// `SOCKET_SETTINGS_GUARANTEE_ENCRYPTION` (0x1): refuse any outcome without encryption,
        /// including a fallback to clear text. Every TLS 1.3 cipher suite encrypts, so a
        /// secured connection always satisfies it.
        const GUARANTEE_ENCRYPTION = 0x1;
        /// `SOCKET_SETTINGS_ALLOW_INSECURE` (0x2): clear text is allowed where the peer plainly
        /// does not speak TLS; never on a failed verification. A listener serves a client in
        /// clear when its first bytes are not a ClientHello (or it sends nothing for a
        /// moment); a client connects again in clear when the server answers the ClientHello
        /// with non-TLS bytes or closes without a byte. See [`crate::core::fallback`]. Conflicts
        /// with `GUARANTEE_ENCRYPTION`.
        const ALLOW_INSECURE = 0x2;
    }
}

flag_set_extras!(SecurityFlags);

/// The option flags of `SOCKET_SECURITY_SETTINGS_IPSEC` (`IpsecFlags` on Windows).
///
/// A [`bitflags`] set, like [`SecurityFlags`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OptionFlags(u32);

bitflags::bitflags! {
    impl OptionFlags: u32 {
        /// `IPSEC_SKIP_FILTER_INSTANTIATION` (0x1): the socket does no handshake itself, for
        /// traffic that a system policy (IPsec, WireGuard, a secsock proxy) already protects.
        /// secsock cannot see such a policy: the bytes leave as the application writes them,
        /// and the query reports the connection as not secured. Setting it is the caller's
        /// explicit consent to that; it conflicts with `GUARANTEE_ENCRYPTION`.
        const SKIP_ENFORCEMENT = 0x1;
        /// `IPSEC_OPTIONAL_PEER_NAME_VERIFICATION` (0x2): a peer whose chain is trusted but whose
        /// names do not match the target name is accepted; the mismatch is reported by
        /// [`SecurityInfo::negotiation_error`](crate::SecurityInfo::negotiation_error).
        const OPTIONAL_PEER_NAME_VERIFICATION = 0x2;
        /// `IPSEC_ALLOW_FIRST_INBOUND_PKT_UNENCRYPTED` (0x4): meaningless for TLS, where the first
        /// byte already belongs to the handshake. Accepted and ignored; it never lets clear
        /// application data in.
        const ALLOW_FIRST_INBOUND_PKT_UNENCRYPTED = 0x4;
        /// `IPSEC_PEER_NAME_IS_RAW_FORMAT` (0x8): the peer target name is compared as written
        /// with every name in the peer's certificate, not parsed as a principal name.
        const PEER_NAME_IS_RAW_FORMAT = 0x8;
    }
}

flag_set_extras!(OptionFlags);

/// A named crypto policy (a `[crypto.NAME]` section of the policy file), by name or by the
/// UUID the C ABI passes as a policy key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CryptoPolicyKey {
    /// The section name, e.g. `"standard"` for `[crypto.standard]`.
    Name(String),
    /// A policy key GUID, matched against the section's `id`. The all-zero key means
    /// "no policy key" (the policy's default), as on Windows.
    Uuid(u128),
}

impl CryptoPolicyKey {
    /// Whether this is the all-zero key, which means "none".
    pub fn is_none(&self) -> bool {
        matches!(self, CryptoPolicyKey::Uuid(0))
    }
}

impl fmt::Display for CryptoPolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoPolicyKey::Name(name) => write!(f, "{name}"),
            CryptoPolicyKey::Uuid(id) => f.write_str(&format_uuid(*id)),
        }
    }
}

/// Formats a UUID in its canonical 8-4-4-4-12 lowercase form.
pub(crate) fn format_uuid(id: u128) -> String {
    let h = format!("{id:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses a UUID in 8-4-4-4-12 form (braces allowed, case-insensitive).
pub(crate) fn parse_uuid(text: &str) -> Option<u128> {
    let t = text.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t);
    let groups: Vec<&str> = t.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    if groups.len() != 5 || groups.iter().zip(lengths).any(|(g, n)| g.len() != n) {
        return None;
    }
    let hex: String = groups.concat();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// What a socket asks for when security is turned on (`WSASetSocketSecurity`).
///
/// `SecuritySettings::new()` (or `default()`) is what Windows does with NULL settings: the
/// policy's defaults, no flags.
///
/// ```
/// use secsock::{SecurityFlags, SecuritySettings};
/// let settings = SecuritySettings::new().with_flags(SecurityFlags::GUARANTEE_ENCRYPTION);
/// assert!(settings.validate().is_ok());
/// let both = settings.with_flags(SecurityFlags::GUARANTEE_ENCRYPTION | SecurityFlags::ALLOW_INSECURE);
/// assert!(both.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecuritySettings {
    /// The protocol; `Default` follows the policy.
    pub protocol: SecurityProtocol,
    /// Encryption demanded / clear text allowed.
    pub flags: SecurityFlags,
    /// The `IpsecFlags` counterparts.
    pub options: OptionFlags,
    /// A crypto policy other than the policy's default (Windows' main/quick-mode policy keys).
    pub crypto_policy: Option<CryptoPolicyKey>,
    /// The application (user) identity to prove after the handshake, instead of none
    /// (the `UserName`/`DomainName`/`Password` of `SOCKET_SECURITY_SETTINGS_IPSEC`).
    pub user: Option<UserCredentials>,
}

/// An application (user) identity a client proves inside the TLS channel, bound to it.
#[derive(Clone, PartialEq, Eq)]
pub enum UserCredentials {
    /// User name, domain and password, proven with SCRAM-SHA-256-PLUS: the password
    /// never leaves the process.
    Password {
        /// The user name, e.g. `alice`.
        user: String,
        /// The user's domain (realm), e.g. `EXAMPLE.TEST`.
        domain: String,
        /// The password.
        password: Secret,
    },
    /// A user certificate chain (leaf first) and its key: the leaf's email or UPN SAN
    /// names the user; the key signs this connection's channel binding.
    Certificate {
        /// The chain, leaf first (DER).
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        /// The leaf's private key.
        key: Secret,
    },
}

impl UserCredentials {
    /// The principal these credentials claim, when the credentials say (passwords do;
    /// a certificate says it in its SANs).
    pub fn claimed_principal(&self) -> Option<String> {
        match self {
            UserCredentials::Password { user, domain, .. } => Some(format!("user:{user}@{domain}")),
            UserCredentials::Certificate { .. } => None,
        }
    }
}

impl fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserCredentials::Password { user, domain, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .field("domain", domain)
                .finish_non_exhaustive(),
            UserCredentials::Certificate { chain, .. } => f
                .debug_struct("Certificate")
                .field("chain", &chain.len())
                .finish_non_exhaustive(),
        }
    }
}

/// Secret bytes (a password, a private key's DER): never printed, overwritten when dropped
/// ([`zeroize`]; copies made elsewhere, e.g. by the allocator on growth, are not).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl SecuritySettings {
    /// The policy's defaults and no flags: what Windows does with NULL settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same settings with `flags` (replacing any set before).
    pub fn with_flags(mut self, flags: SecurityFlags) -> Self {
        self.flags = flags;
        self
    }

    /// The same settings with `options` (replacing any set before).
    pub fn with_options(mut self, options: OptionFlags) -> Self {
        self.options = options;
        self
    }

    /// The same settings with an explicit protocol.
    pub fn with_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The same settings using the crypto policy `key` instead of the policy's default.
    pub fn with_crypto_policy(mut self, key: CryptoPolicyKey) -> Self {
        self.crypto_policy = if key.is_none() { None } else { Some(key) };
        self
    }

    /// The same settings, proving the user `user` of `domain` with `password` after the
    /// handshake (SCRAM-SHA-256-PLUS, bound to the connection).
    pub fn user_credentials(mut self, user: &str, domain: &str, password: &str) -> Self {
        self.user = Some(UserCredentials::Password {
            user: user.to_string(),
            domain: domain.to_string(),
            password: Secret::new(password.as_bytes()),
        });
        self
    }

    /// The same settings, proving the user named by a user certificate (email or UPN SAN)
    /// by signing the connection's channel binding with its key.
    pub fn user_certificate(
        mut self,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        self.user = Some(UserCredentials::Certificate {
            chain,
            key: Secret::new(key.secret_der()),
        });
        self
    }

    /// Checks the settings on their own, without a policy: conflicting flags and flags
    /// this version cannot honour.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self
            .flags
            .contains(SecurityFlags::GUARANTEE_ENCRYPTION | SecurityFlags::ALLOW_INSECURE)
        {
            return Err(SettingsError::ConflictingFlags {
                first: "GUARANTEE_ENCRYPTION",
                second: "ALLOW_INSECURE",
                why: "guaranteed encryption forbids the clear-text fallback that ALLOW_INSECURE permits",
            });
        }
        if self.flags.contains(SecurityFlags::GUARANTEE_ENCRYPTION)
            && self.options.contains(OptionFlags::SKIP_ENFORCEMENT)
        {
            return Err(SettingsError::ConflictingFlags {
                first: "GUARANTEE_ENCRYPTION",
                second: "SKIP_ENFORCEMENT",
                why:
                    "a socket that does no handshake cannot guarantee that its traffic is encrypted",
            });
        }
        match &self.user {
            Some(UserCredentials::Password { user, domain, .. })
                if user.is_empty() || domain.is_empty() =>
            {
                return Err(SettingsError::InvalidUserCredentials(
                    "the user name and the domain must not be empty".into(),
                ))
            }
            Some(UserCredentials::Password { user, .. }) if user.contains('@') => {
                return Err(SettingsError::InvalidUserCredentials(format!(
                    "the user name `{user}` contains `@`: give the domain separately"
                )))
            }
            Some(UserCredentials::Certificate { chain, .. }) if chain.is_empty() => {
                return Err(SettingsError::InvalidUserCredentials(
                    "the user certificate chain is empty".into(),
                ))
            }
            _ => {}
        }
        if let Some(CryptoPolicyKey::Name(name)) = &self.crypto_policy {
            if name.trim().is_empty() {
                return Err(SettingsError::EmptyCryptoPolicyName);
            }
        }
        Ok(())
    }

    /// Whether the socket skips its own handshake (`SKIP_ENFORCEMENT`).
    pub fn skips_enforcement(&self) -> bool {
        self.options.contains(OptionFlags::SKIP_ENFORCEMENT)
    }

    /// Whether the socket may run in clear text where the peer does not speak TLS.
    pub fn allows_insecure(&self) -> bool {
        self.flags.contains(SecurityFlags::ALLOW_INSECURE)
    }

    /// Whether a name mismatch is reported rather than fatal.
    pub fn optional_name_verification(&self) -> bool {
        self.options
            .contains(OptionFlags::OPTIONAL_PEER_NAME_VERIFICATION)
    }

    /// Whether the peer target name is compared raw.
    pub fn raw_peer_name(&self) -> bool {
        self.options.contains(OptionFlags::PEER_NAME_IS_RAW_FORMAT)
    }
}

/// Why settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Two flags were set that contradict each other.
    #[error("security settings: {first} and {second} cannot be set together: {why}")]
    ConflictingFlags {
        /// The first flag.
        first: &'static str,
        /// The second flag.
        second: &'static str,
        /// Why they conflict.
        why: &'static str,
    },
    /// Raw flag bits that this version does not define.
    #[error("security settings: {field} has undefined bits {bits:#x}")]
    UnknownFlags {
        /// `SecurityFlags` or `OptionFlags`.
        field: &'static str,
        /// The undefined bits.
        bits: u32,
    },
    /// A flag this version cannot honour; refusing it is better than pretending.
    #[error("security settings: {option} is not supported: {why}")]
    Unsupported {
        /// The flag.
        option: &'static str,
        /// Why not.
        why: &'static str,
    },
    /// A crypto policy key naming no section of the policy.
    #[error("security settings: crypto policy `{key}` is not defined in {policy} (define [crypto.{key}] or use one of: {known})")]
    UnknownCryptoPolicy {
        /// The key asked for.
        key: String,
        /// The policy file.
        policy: String,
        /// The crypto policies the file defines.
        known: String,
    },
    /// `CryptoPolicyKey::Name("")`.
    #[error("security settings: the crypto policy name is empty")]
    EmptyCryptoPolicyName,
    /// User credentials that cannot be used.
    #[error("security settings: user credentials: {0}")]
    InvalidUserCredentials(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let ge = SecurityFlags::GUARANTEE_ENCRYPTION;
        let ai = SecurityFlags::ALLOW_INSECURE;
        let cases: Vec<(SecuritySettings, Result<(), &str>)> = vec![
            (SecuritySettings::new(), Ok(())),
            (SecuritySettings::new().with_flags(ge), Ok(())),
            (SecuritySettings::new().with_flags(ai), Ok(())),
            (
                SecuritySettings::new().with_flags(ge | ai),
                Err("cannot be set together"),
            ),
            (
                SecuritySettings::new().with_options(OptionFlags::OPTIONAL_PEER_NAME_VERIFICATION),
                Ok(()),
            ),
            (
                SecuritySettings::new()
                    .with_options(OptionFlags::ALLOW_FIRST_INBOUND_PKT_UNENCRYPTED),
                Ok(()),
            ),
            (
                SecuritySettings::new().with_options(OptionFlags::PEER_NAME_IS_RAW_FORMAT),
                Ok(()),
            ),
            (
                SecuritySettings::new().with_options(OptionFlags::SKIP_ENFORCEMENT),
                Ok(()),
            ),
            (
                SecuritySettings::new()
                    .with_options(OptionFlags::SKIP_ENFORCEMENT)
                    .with_flags(ge),
                Err("cannot guarantee"),
            ),
            (
                SecuritySettings::new()
                    .with_protocol(SecurityProtocol::Tls13)
                    .with_flags(ge),
                Ok(()),
            ),
            (
                SecuritySettings::new().with_crypto_policy(CryptoPolicyKey::Name("strict".into())),
                Ok(()),
            ),
            (
                SecuritySettings::new().with_crypto_policy(CryptoPolicyKey::Name(" ".into())),
                Err("name is empty"),
            ),
        ];
        for (settings, expected) in cases {
            let got = settings.validate();
            match (expected, got) {
                (Ok(()), Ok(())) => {}
                (Err(needle), Err(e)) => {
                    assert!(
                        e.to_string().contains(needle),
                        "{settings:?}: {e} lacks {needle:?}"
                    )
                }
                (want, got) => panic!("{settings:?}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn zero_uuid_means_no_policy_key() {
        let s = SecuritySettings::new().with_crypto_policy(CryptoPolicyKey::Uuid(0));
        assert_eq!(s.crypto_policy, None);
        let s = SecuritySettings::new().with_crypto_policy(CryptoPolicyKey::Uuid(7));
        assert_eq!(s.crypto_policy, Some(CryptoPolicyKey::Uuid(7)));
    }

    #[test]
    fn raw_bits_are_checked() {
        assert_eq!(SecurityFlags::try_from(0x3).unwrap().bits(), 0x3);
        let err = SecurityFlags::try_from(0x10).unwrap_err();
        assert_eq!(
            err,
            SettingsError::UnknownFlags {
                field: "SecurityFlags",
                bits: 0x10
            }
        );
        assert!(OptionFlags::try_from(0xf).is_ok());
        assert_eq!(OptionFlags::from_bits(0x30), None, "bitflags' own check");
        assert!(OptionFlags::try_from(0x30)
            .unwrap_err()
            .to_string()
            .contains("0x30"));
    }

    #[test]
    fn flags_debug_names_each_flag() {
        let f = SecurityFlags::GUARANTEE_ENCRYPTION | SecurityFlags::ALLOW_INSECURE;
        assert_eq!(format!("{f:?}"), "GUARANTEE_ENCRYPTION | ALLOW_INSECURE");
        assert_eq!(format!("{:?}", OptionFlags::empty()), "(empty)");
    }

    #[test]
    fn uuid_round_trip() {
        let text = "5F1C2E3A-0000-4000-8000-00000000ABCD";
        let id = parse_uuid(text).unwrap();
        assert_eq!(format_uuid(id), text.to_lowercase());
        assert_eq!(
            parse_uuid("{5f1c2e3a-0000-4000-8000-00000000abcd}"),
            Some(id)
        );
        for bad in [
            "",
            "5f1c2e3a00004000800000000000abcd",
            "5f1c2e3a-0000-4000-8000-00000000abcg",
            "5f1c2e3a-000-40000-8000-00000000abcd",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }
}
