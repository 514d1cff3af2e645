//! The implementations the suite compares and how each is configured: the key exchange
//! variants, the secsock crypto policies that select them, and the plain rustls
//! configurations with the same groups and suites.
//!
//! Both TLS stacks use the trust domain's files (`domain`), ECDSA P-256 certificates, the
//! TLS 1.3 suites in secsock's standard order (AES-128-GCM first) and the same key
//! exchange groups in the same order, so they negotiate the same parameters (each
//! endpoint reports what it negotiated). Not here: connecting and serving (`endpoint`),
//! OpenSSL (`openssl`).

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::kx_group;
use rustls::crypto::SupportedKxGroup;
use rustls::{ClientConfig, ServerConfig};
use secsock::{CryptoPolicyKey, SecuritySettings};
use serde::{Deserialize, Serialize};

use crate::domain::IdentityFiles;
use crate::load::baseline;

/// An implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    /// Plain TCP (`std::net::TcpStream`): the limit.
    Tcp,
    /// Plain rustls, blocking: `rustls::StreamOwned` over a `std::net::TcpStream`.
    Rustls,
    /// secsock's blocking API: `secsock::SecureSocket` / `SecureListener` / `SecureStream`.
    Secsock,
    /// Plain rustls, async: tokio-rustls.
    RustlsTokio,
    /// secsock's async API: `secsock::tokio`.
    SecsockTokio,
}

impl Stack {
    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Tcp => "tcp",
            Stack::Rustls => "rustls",
            Stack::Secsock => "secsock",
            Stack::RustlsTokio => "rustls-tokio",
            Stack::SecsockTokio => "secsock-tokio",
        }
    }

    /// Whether it runs on tokio.
    pub fn is_async(self) -> bool {
        matches!(self, Stack::RustlsTokio | Stack::SecsockTokio)
    }
}

/// A key exchange variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Kx {
    /// The post-quantum hybrid X25519MLKEM768 first, then X25519 and secp256r1 (secsock's
    /// standard policy; the client sends an X25519MLKEM768 and an X25519 key share).
    #[value(name = "X25519MLKEM768")]
    #[serde(rename = "X25519MLKEM768")]
    Pq,
    /// X25519 alone.
    #[value(name = "X25519")]
    #[serde(rename = "X25519")]
    X25519,
}

impl Kx {
    /// The group both stacks are expected to negotiate, as rustls names it.
    pub fn name(self) -> &'static str {
        match self {
            Kx::Pq => "X25519MLKEM768",
            Kx::X25519 => "X25519",
        }
    }

    /// The groups offered and accepted, in order of preference.
    pub fn groups(self) -> Vec<&'static dyn SupportedKxGroup> {
        match self {
            Kx::Pq => vec![
                kx_group::X25519MLKEM768,
                kx_group::X25519,
                kx_group::SECP256R1,
            ],
            Kx::X25519 => vec![kx_group::X25519],
        }
    }

    /// The `[crypto.NAME]` section of [`POLICY_SECTIONS`] that selects this variant, with
    /// or without session resumption.
    pub fn policy(self, resumption: bool) -> &'static str {
        match (self, resumption) {
            (Kx::Pq, true) => "pq",
            (Kx::Pq, false) => "pq_full",
            (Kx::X25519, true) => "x25519",
            (Kx::X25519, false) => "x25519_full",
        }
    }
}

/// The crypto policies of the suite's policy files: one per key exchange variant, with
/// resumption (tickets valid 2 h, the default) and without (`session_lifetime = "0s"`: the
/// server sends no tickets and the client never resumes). Suites and everything else are
/// the standard policy's.
pub const POLICY_SECTIONS: &str = r#"
[crypto.pq]
key_exchange = ["X25519MLKEM768", "X25519", "secp256r1"]

[crypto.pq_full]
key_exchange = ["X25519MLKEM768", "X25519", "secp256r1"]
session_lifetime = "0s"

[crypto.x25519]
key_exchange = ["X25519"]

[crypto.x25519_full]
key_exchange = ["X25519"]
session_lifetime = "0s"
"#;

/// The settings a secsock socket of the suite asks for: the variant's crypto policy by
/// name, everything else the defaults (mutual TLS, enforcement, no fallback).
pub fn secsock_settings(kx: Kx, resumption: bool) -> SecuritySettings {
    SecuritySettings::new().with_crypto_policy(CryptoPolicyKey::Name(kx.policy(resumption).into()))
}

/// The plain rustls server configuration of a variant (`WebPkiClientVerifier` over the same
/// CA; stateless session tickets as secsock's (see `baseline`), two per connection, none without
/// `resumption`).
pub fn rustls_server(
    files: &IdentityFiles,
    kx: Kx,
    resumption: bool,
) -> anyhow::Result<Arc<ServerConfig>> {
    baseline::server_config_with(files, resumption, Some(&kx.groups()))
}

/// The plain rustls client configuration of a variant (the CA as the only root, the client
/// certificate; rustls's default in-memory session cache, or none without `resumption`).
pub fn rustls_client(
    files: &IdentityFiles,
    kx: Kx,
    resumption: bool,
) -> anyhow::Result<Arc<ClientConfig>> {
    baseline::client_config_with(files, resumption, Some(&kx.groups()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TrustDomain;

    #[test]
    fn every_variant_has_a_policy_section_that_loads() {
        let domain = TrustDomain::create_with_policy(POLICY_SECTIONS).unwrap();
        let platform = secsock::Platform::load(&domain.server.policy).unwrap();
        for kx in [Kx::Pq, Kx::X25519] {
            for resumption in [true, false] {
                let name = kx.policy(resumption);
                let policy = platform
                    .policy()
                    .crypto_policy(Some(&CryptoPolicyKey::Name(name.into())))
                    .unwrap_or_else(|e| panic!("[crypto.{name}]: {e}"));
                let groups: Vec<String> = policy
                    .key_exchange
                    .iter()
                    .map(|g| format!("{:?}", g.name()))
                    .collect();
                let expected: Vec<String> = kx
                    .groups()
                    .iter()
                    .map(|g| format!("{:?}", g.name()))
                    .collect();
                assert_eq!(groups, expected, "[crypto.{name}]");
                assert_eq!(policy.session_lifetime.is_zero(), !resumption);
            }
        }
    }
}
