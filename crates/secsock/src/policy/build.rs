//! From the file as written to a checked [`Policy`]: every value's meaning and limits, the
//! files each section names read and checked, and every problem reported with the file,
//! line and key ([`Checker`]).
//!
//! Not here: the file's structure ([`super::file`], read by [`super::de`]), how a credential
//! file is read ([`super::credentials`]), or the units and crypto names
//! ([`super::units`], [`super::crypto_names`]).

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::crypto::aws_lc_rs;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use toml::Spanned;

use super::credentials::{self, read_private_key_file};
use super::crypto_names::{cipher_suite_named, kx_group_named};
use super::de::{self, FileError, FileErrorKind};
use super::file::{
    AccountEntry, CryptoSection, DefaultsSection, IdentitySection, PolicyFile, Scalar,
    TrustSection, UsersSection,
};
use super::types::{
    MAX_FAILURES_PER_ADDRESS, MAX_FAILURE_DELAY, MAX_FAILURE_WINDOW, MAX_HANDSHAKE_TIMEOUT,
    MAX_SESSION_LIFETIME, STANDARD,
};
use super::units::{parse_size, show_duration};
use super::*;
use crate::accounts::{validate_rule, AccountRule};
use crate::settings::{format_uuid, parse_uuid};

/// Checks a policy file as written and builds the [`Policy`]: it holds the text and where
/// it came from, everything an error needs for its line.
pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a Path,
}

impl Checker<'_> {
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
    pub(super) fn resolve_path(
        &self,
        written: &Spanned<String>,
        key: &str,
    ) -> Result<PathBuf, PolicyError> {
        if written.get_ref().is_empty() {
            return Err(self.invalid(written.span(), key, "the path is empty"));
        }
        let dir = self.source.parent().unwrap_or(Path::new(""));
        Ok(dir.join(written.get_ref()))
    }

    /// The file's syntax and structure (keys, types), in one parse.
    pub(super) fn parse(&self) -> Result<PolicyFile, PolicyError> {
        de::from_str(self.text).map_err(|e| self.file_error(e))
    }

    /// Names the key and the line of a structural error; the table path and the key come
    /// from the reader as facts, not from its message.
    fn file_error(&self, e: FileError) -> PolicyError {
        let path: Vec<&str> = e.path.iter().map(String::as_str).collect();
        match e.kind {
            FileErrorKind::Syntax(message) => {
                self.error(e.span, None, PolicyErrorKind::Syntax(message))
            }
            FileErrorKind::UnknownKey { key, expected } => {
                let full = dotted(&[&path[..], &[key.as_str()]].concat());
                let kind = PolicyErrorKind::UnknownKey {
                    table: table_name(&path).into(),
                    expected: expected.iter().map(|k| (*k).to_owned()).collect(),
                    key,
                };
                self.error(e.span, Some(full), kind)
            }
            FileErrorKind::MissingKey(key) => self.error(
                e.span,
                Some(dotted(&[&path[..], &[key]].concat())),
                PolicyErrorKind::MissingKey(format!(
                    "required key `{key}` is missing from {}",
                    table_name(&path)
                )),
            ),
            FileErrorKind::Invalid(message) => self.error(
                e.span,
                (!path.is_empty()).then(|| dotted(&path)),
                PolicyErrorKind::InvalidValue(message),
            ),
        }
    }

    pub(super) fn build(&self, raw: PolicyFile) -> Result<Policy, PolicyError> {
        let (policy, mut errors) = self.build_all(raw);
        match policy {
            Some(policy) => Ok(policy),
            None => Err(errors.remove(0)),
        }
    }

    /// Checks every section, collecting every problem; the policy only if there is none.
    pub(super) fn build_all(&self, raw: PolicyFile) -> (Option<Policy>, Vec<PolicyError>) {
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
    fn users(&self, raw: Option<UsersSection>) -> Result<Users, PolicyError> {
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
    fn failure_limits(&self, raw: &UsersSection) -> Result<FailureLimits, PolicyError> {
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
        raw: Vec<Spanned<AccountEntry>>,
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
        sections: BTreeMap<Spanned<String>, Spanned<CryptoSection>>,
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
        raw: CryptoSection,
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
        raw: Option<DefaultsSection>,
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
    fn identity(&self, raw: IdentitySection) -> Result<Identity, Vec<PolicyError>> {
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
    fn trust(&self, raw: TrustSection) -> Result<Trust, Vec<PolicyError>> {
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

    /// Every certificate of a PEM file the policy names (at least one); with `owner_only`
    /// (what the file is), refused when group or others may write it.
    fn certificates(
        &self,
        written: &Spanned<String>,
        key: &str,
        path: &Path,
        owner_only: Option<&'static str>,
    ) -> Result<Vec<CertificateDer<'static>>, PolicyError> {
        credentials::read_certificates(path, owner_only)
            .map_err(|kind| self.error(Some(written.span()), Some(key.to_owned()), kind))
    }

    /// Every CRL of a PEM file, or the one CRL of a DER file, that the policy names.
    fn crls(
        &self,
        written: &Spanned<String>,
        key: &str,
        path: &Path,
    ) -> Result<Vec<CertificateRevocationListDer<'static>>, PolicyError> {
        credentials::read_crls(path)
            .map_err(|kind| self.error(Some(written.span()), Some(key.to_owned()), kind))
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

/// `crypto.fast` style, quoting keys that are not bare TOML keys.
fn dotted(path: &[&str]) -> String {
    path.iter()
        .map(|k| toml_key(k))
        .collect::<Vec<_>>()
        .join(".")
}

/// `[crypto.fast]`, or `the top level`.
fn table_name(path: &[&str]) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("[{}]", dotted(path))
    }
}

pub(super) fn toml_key(key: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::*;
    use rustls::crypto::aws_lc_rs::{cipher_suite, kx_group};

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
        let checker = Checker { text: "", source };
        let written = Spanned::new(0..1, "identity/host.crt".to_owned());
        assert_eq!(
            checker.resolve_path(&written, "k").unwrap(),
            PathBuf::from("identity/host.crt")
        );
        let checker = Checker {
            text: "",
            source: Path::new("/etc/secsock/policy.toml"),
        };
        assert_eq!(
            checker.resolve_path(&written, "k").unwrap(),
            PathBuf::from("/etc/secsock/identity/host.crt")
        );
        let absolute = Spanned::new(0..1, "/srv/host.crt".to_owned());
        assert_eq!(
            checker.resolve_path(&absolute, "k").unwrap(),
            PathBuf::from("/srv/host.crt")
        );
        let empty = Spanned::new(0..1, String::new());
        assert!(checker
            .resolve_path(&empty, "k")
            .unwrap_err()
            .to_string()
            .contains("empty"));
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
}
