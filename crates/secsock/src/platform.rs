//! The platform: one loaded policy, turned into what connections need (trust anchors,
//! TLS configurations per crypto policy, resumption state), shared by every socket.
//!
//! Windows keeps this state in the system (the Base Filtering Engine and IKEEXT); here it
//! lives in the process. Sockets made with [`SecureSocket::new`](crate::SecureSocket::new)
//! use [`Platform::global`], which discovers the policy file the first time it is needed;
//! a program that names its policy explicitly loads a `Platform` and passes it to
//! [`SecureSocket::with_platform`](crate::SecureSocket::with_platform).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::core::tls::CryptoContext;
use crate::error::Error;
use crate::policy::Policy;
use crate::settings::{CryptoPolicyKey, SettingsError};
use crate::user::users::UserDirectory;
use crate::verify::{ChainCacheStats, ChainValidator};

/// A loaded policy and the TLS state built from it.
pub struct Platform {
    policy: Policy,
    contexts: Vec<Arc<CryptoContext>>,
    validator: Arc<ChainValidator>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("policy", &self.policy.source)
            .finish()
    }
}

static GLOBAL: OnceLock<Arc<Platform>> = OnceLock::new();

impl Platform {
    /// Builds the TLS state for `policy`: fails if the identity's key does not match its
    /// certificate, an anchor or CRL is unusable, or a crypto policy cannot be used.
    pub fn new(policy: Policy) -> Result<Arc<Self>, Error> {
        let config_error = |reason: String| Error::Config {
            policy: policy.source.display().to_string(),
            reason,
        };
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        let validator = Arc::new(
            ChainValidator::new(&policy.trust.anchors, &policy.trust.crls, algorithms)
                .map_err(config_error)?
                .with_expired_crls(policy.trust.expired_crls),
        );
        validator.warn_about_expired_crls(rustls_pki_types::UnixTime::now());
        // The users' decoy secret when the users file has none: never left zero.
        let mut fallback_secret = [0u8; 32];
        rustls::crypto::aws_lc_rs::default_provider()
            .secure_random
            .fill(&mut fallback_secret)
            .map_err(|_| config_error("the crypto provider's random generator failed".into()))?;
        let users = Arc::new(UserDirectory::new(
            &policy.users,
            &policy.accounts,
            fallback_secret,
        ));
        let mut contexts = Vec::with_capacity(policy.crypto.len());
        for crypto in &policy.crypto {
            let ctx = CryptoContext::new(
                crypto,
                &policy.identity,
                validator.clone(),
                policy.defaults.handshake_timeout,
                policy.defaults.user_max_iterations,
                users.clone(),
            )
            .map_err(|e| config_error(format!("[crypto.{}]: {e}", crypto.name)))?;
            contexts.push(Arc::new(ctx));
        }
        Ok(Arc::new(Self {
            policy,
            contexts,
            validator,
        }))
    }

    /// Loads the policy file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Arc<Self>, Error> {
        Self::new(Policy::load(path)?)
    }

    /// Loads the policy found by the discovery order (`$SECSOCK_POLICY`, the per-user
    /// config, `/etc/secsock/policy.toml`).
    pub fn discover() -> Result<Arc<Self>, Error> {
        Self::new(Policy::discover()?)
    }

    /// The process-wide platform: the one installed by [`Platform::install`], else the
    /// discovered policy, loaded on first use. A failed discovery is not remembered, so a
    /// later call sees a policy created meanwhile.
    pub fn global() -> Result<Arc<Self>, Error> {
        if let Some(platform) = GLOBAL.get() {
            return Ok(platform.clone());
        }
        let platform = Self::discover()?;
        Ok(GLOBAL.get_or_init(|| platform).clone())
    }

    /// Makes `self` the process-wide platform. Returns it back if one was already in use.
    pub fn install(self: Arc<Self>) -> Result<(), Arc<Self>> {
        GLOBAL.set(self)
    }

    /// The policy this platform was built from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The size and use of the cache of validated certificate chains (see
    /// [`ChainValidator`]): how many paths it holds, the bytes they take, how often it
    /// answered.
    pub fn chain_cache_stats(&self) -> ChainCacheStats {
        self.validator.cache_stats()
    }

    /// The TLS state for the crypto policy `key` (None: the policy's default).
    pub(crate) fn context(
        &self,
        key: Option<&CryptoPolicyKey>,
    ) -> Result<Arc<CryptoContext>, SettingsError> {
        let wanted = self.policy.crypto_policy(key)?;
        self.contexts
            .iter()
            .find(|c| c.policy.name == wanted.name)
            .cloned()
            .ok_or_else(|| SettingsError::UnknownCryptoPolicy {
                key: wanted.name.clone(),
                policy: self.policy.source.display().to_string(),
                known: self
                    .policy
                    .crypto
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}
