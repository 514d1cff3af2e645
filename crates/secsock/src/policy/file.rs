//! The policy file as written: its TOML structure as serde types, every value that can be
//! wrong with its span, so that errors point at its line. [`super::de`] reads the text into
//! them, [`super::build`] checks them; [`PolicyFile`] also writes them, for the tools that
//! make policy files (`secsock init`), so that one description serves both.
//!
//! Not here: what the values mean or whether they are acceptable ([`super::build`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::units::show_duration;
use super::PolicyErrorKind;

/// A policy file as written: its sections and keys, each value with where it was in the
/// text (a value built to be written has no place yet). [`Policy::load`](super::Policy::load) reads one and checks it; tools that make
/// policy files build one and write it with [`PolicyFile::to_toml`], so that the file
/// they write and the file secsock reads have one description.
///
/// ```
/// use secsock::policy::PolicyFile;
/// use std::time::Duration;
///
/// let text = PolicyFile::new("identity/host.crt", "identity/host.key", &["trust/ca.crt"])
///     .with_defaults("standard", Duration::from_secs(10))
///     .to_toml()?;
/// assert!(text.starts_with("[identity]\ncertificate = \"identity/host.crt\"\n"));
/// assert!(text.contains("[defaults]\ncrypto = \"standard\"\nhandshake_timeout = \"10s\"\n"));
/// # Ok::<(), secsock::policy::PolicyErrorKind>(())
/// ```
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub(super) identity: Option<IdentitySection>,
    pub(super) trust: Option<TrustSection>,
    pub(super) defaults: Option<DefaultsSection>,
    pub(super) crypto: Option<BTreeMap<Spanned<String>, Spanned<CryptoSection>>>,
    pub(super) authority: Option<AuthoritySection>,
    pub(super) users: Option<UsersSection>,
    pub(super) accounts: Option<Vec<Spanned<AccountEntry>>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsersSection {
    pub(super) file: Option<Spanned<String>>,
    pub(super) authentication: Option<Spanned<String>>,
    pub(super) domain: Option<Spanned<String>>,
    pub(super) failures_per_address: Option<Spanned<i64>>,
    pub(super) failure_window: Option<Spanned<Scalar>>,
    pub(super) failure_delay: Option<Spanned<Scalar>>,
    pub(super) failure_delay_max: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountEntry {
    pub(super) principal: Spanned<String>,
    pub(super) user: Spanned<String>,
    pub(super) allow_system_account: Option<bool>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthoritySection {
    pub(super) certificate: Spanned<String>,
    pub(super) private_key: Spanned<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentitySection {
    pub(super) certificate: Spanned<String>,
    pub(super) private_key: Spanned<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrustSection {
    pub(super) anchors: Spanned<Vec<Spanned<String>>>,
    pub(super) crls: Option<Vec<Spanned<String>>>,
    pub(super) expired_crls: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DefaultsSection {
    pub(super) crypto: Option<Spanned<String>>,
    pub(super) handshake_timeout: Option<Spanned<Scalar>>,
    pub(super) user_max_iterations: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CryptoSection {
    pub(super) id: Option<Spanned<String>>,
    pub(super) key_exchange: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) cipher_suites: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) session_lifetime: Option<Spanned<Scalar>>,
    pub(super) rekey_after: Option<RekeySection>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RekeySection {
    pub(super) bytes: Option<Spanned<Scalar>>,
    pub(super) time: Option<Spanned<Scalar>>,
}

/// A duration or size as written: a string, or a bare integer (so that `bytes = 1000`
/// works and `handshake_timeout = 10` gets "has no unit" rather than a type error).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(super) struct Scalar(pub(super) String);

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

impl PolicyFile {
    /// A policy with an `[identity]` (the certificate chain and private key files) and a
    /// `[trust]` (the anchor files, and `crls = []`). Paths are written as given: relative
    /// ones are read relative to the policy file's directory.
    pub fn new(certificate: &str, private_key: &str, anchors: &[&str]) -> PolicyFile {
        PolicyFile {
            identity: Some(IdentitySection {
                certificate: written(certificate),
                private_key: written(private_key),
            }),
            trust: Some(TrustSection {
                anchors: written(anchors.iter().map(|a| written(*a)).collect::<Vec<_>>()),
                crls: Some(Vec::new()),
                expired_crls: None,
            }),
            ..PolicyFile::default()
        }
    }

    /// The same policy with a `[defaults]` section: the default crypto policy's name and
    /// the handshake timeout.
    pub fn with_defaults(mut self, crypto: &str, handshake_timeout: Duration) -> PolicyFile {
        self.defaults = Some(DefaultsSection {
            crypto: Some(written(crypto)),
            handshake_timeout: Some(written(Scalar(show_duration(handshake_timeout)))),
            user_max_iterations: None,
        });
        self
    }

    /// The same policy with an `[authority]` section: the trust domain's CA certificate
    /// and key files, for `secsock issue`.
    pub fn with_authority(mut self, certificate: &str, private_key: &str) -> PolicyFile {
        self.authority = Some(AuthoritySection {
            certificate: written(certificate),
            private_key: written(private_key),
        });
        self
    }

    /// The policy as TOML text, sections in the order of the file format.
    ///
    /// # Errors
    ///
    /// [`PolicyErrorKind::InvalidValue`] if TOML cannot represent a value (not the case for
    /// anything the constructors above build).
    pub fn to_toml(&self) -> Result<String, PolicyErrorKind> {
        toml::to_string(self)
            .map_err(|e| PolicyErrorKind::InvalidValue(format!("cannot write the policy: {e}")))
    }
}

/// A value to write: where it is in a text does not apply yet.
fn written<T>(value: impl Into<T>) -> Spanned<T> {
    Spanned::new(0..0, value.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::*;
    use crate::policy::Policy;
    use std::time::Duration;

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
    fn what_a_tool_writes_is_what_load_reads() {
        let dir = trust_domain();
        let file = PolicyFile::new("identity/host.crt", "identity/host.key", &["trust/ca.crt"])
            .with_defaults("standard", Duration::from_millis(2500))
            .with_authority("ca/ca \"quoted\" \\ dir/ca.crt", "ca/ca.key");
        let text = file.to_toml().unwrap();
        assert_eq!(
            text,
            "[identity]\ncertificate = \"identity/host.crt\"\nprivate_key = \"identity/host.key\"\n\n\
             [trust]\nanchors = [\"trust/ca.crt\"]\ncrls = []\n\n\
             [defaults]\ncrypto = \"standard\"\nhandshake_timeout = \"2500ms\"\n\n\
             [authority]\ncertificate = 'ca/ca \"quoted\" \\ dir/ca.crt'\nprivate_key = \"ca/ca.key\"\n"
        );
        let policy = Policy::from_toml(&text, &dir.path().join("policy.toml")).unwrap();
        assert_eq!(
            policy.defaults.handshake_timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(
            policy.authority.map(|a| a.certificate_file),
            Some(dir.path().join("ca/ca \"quoted\" \\ dir/ca.crt"))
        );
        assert_eq!(policy.trust.anchor_files, [dir.path().join("trust/ca.crt")]);
        // Control characters are escaped, not written raw.
        let odd = PolicyFile::new("a\nb\u{1}", "k", &[]).to_toml().unwrap();
        let read: PolicyFile = super::super::de::from_str(&odd).unwrap();
        let identity = read.identity.unwrap();
        assert_eq!(identity.certificate.get_ref(), "a\nb\u{1}");
    }
}
