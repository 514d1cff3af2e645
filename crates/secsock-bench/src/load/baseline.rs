//! The baseline's configurations: plain rustls (through tokio-rustls in `load`, blocking
//! `StreamOwned` or tokio-rustls in `all`) with the same certificates, key, trust anchor
//! and crypto as secsock's policy files.
//!
//! Not here: secsock's side, which is configured by the policy files alone (`domain`).

use std::sync::Arc;

use anyhow::Context;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::domain::IdentityFiles;

/// The baseline's crypto: rustls's default aws-lc-rs provider, with the TLS 1.3 suites in
/// the order of secsock's standard crypto policy (AES-128-GCM first; rustls's default
/// puts AES-256-GCM first), so that both stacks negotiate the same suite. Key exchange
/// is rustls's default (X25519MLKEM768 first), as secsock's policy, unless `kx_groups`
/// names the groups (in order).
fn provider(kx_groups: Option<&[&'static dyn SupportedKxGroup]>) -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(groups) = kx_groups {
        provider.kx_groups = groups.to_vec();
    }
    let first = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    provider
        .cipher_suites
        .sort_by_key(|s| if s.suite() == first { 0 } else { 1 });
    Arc::new(provider)
}

/// The certificate chain, key and trust anchors of an identity, read from its PEM files.
struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Credentials {
    fn read(files: &IdentityFiles) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_file_iter(&files.certificate)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading {}", files.certificate.display()))?;
        let key = PrivateKeyDer::from_pem_file(&files.private_key)
            .with_context(|| format!("reading {}", files.private_key.display()))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&files.ca)
            .with_context(|| format!("reading {}", files.ca.display()))?
        {
            let ca = ca.with_context(|| format!("reading {}", files.ca.display()))?;
            roots
                .add(ca)
                .with_context(|| format!("using {} as a trust anchor", files.ca.display()))?;
        }
        Ok(Self {
            chain,
            key,
            roots: Arc::new(roots),
        })
    }
}

/// Mutual TLS server: rustls's defaults with `WebPkiClientVerifier` over the CA and, as
/// secsock, stateless session tickets. Without `resumption` it sends no session tickets.
pub fn server_config(files: &IdentityFiles, resumption: bool) -> anyhow::Result<Arc<ServerConfig>> {
    server_config_with(files, resumption, None)
}

/// [`server_config`] with the key exchange groups `kx_groups` (rustls's default if None).
pub fn server_config_with(
    files: &IdentityFiles,
    resumption: bool,
    kx_groups: Option<&[&'static dyn SupportedKxGroup]>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let credentials = Credentials::read(files)?;
    let provider = provider(kx_groups);
    let verifier =
        WebPkiClientVerifier::builder_with_provider(credentials.roots.clone(), provider.clone())
            .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(credentials.chain, credentials.key)?;
    if resumption {
        // Stateless tickets, as secsock's listeners issue them (rustls's own aws-lc-rs
        // ticketer; secsock wraps it to honour the policy's session lifetime): the session,
        // the client's certificate chain included, travels encrypted in the ticket. rustls's
        // default instead keeps sessions in a 256-entry server-side cache and sends a 32-byte
        // ID, which costs less per handshake but resumes only the last 256 clients; the two
        // are measured against each other in docs/PERFORMANCE.md.
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        config.session_storage = Arc::new(NoServerSessionStorage {});
    } else {
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// Mutual TLS client: rustls's defaults with the CA as the only root and the client
/// certificate. Without `resumption` it never resumes a session.
pub fn client_config(files: &IdentityFiles, resumption: bool) -> anyhow::Result<Arc<ClientConfig>> {
    client_config_with(files, resumption, None)
}

/// [`client_config`] with the key exchange groups `kx_groups` (rustls's default if None).
pub fn client_config_with(
    files: &IdentityFiles,
    resumption: bool,
    kx_groups: Option<&[&'static dyn SupportedKxGroup]>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let credentials = Credentials::read(files)?;
    let mut config = ClientConfig::builder_with_provider(provider(kx_groups))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(credentials.roots)
        .with_client_auth_cert(credentials.chain, credentials.key)?;
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}
