//! Authentication of the peer: chain validation against the policy's trust anchors, and
//! our own principal-name matching on top (the part Windows' keying modules do).
//!
//! rustls's own `WebPkiServerVerifier` insists that the TLS server name match a DNS or IP
//! SAN, which cannot express SPNs, SPIFFE IDs or raw names, so secsock validates the chain
//! with rustls-webpki directly (for the right extended key usage, with the policy's CRLs)
//! and then matches names with [`crate::name`], as ztunnel's `IdentityVerifier` does.
//! The handshake signature is always checked by the provider's algorithms.
//!
//! Not here: building TLS configurations (`crate::core::tls`) or deciding what to do with a
//! failure (the session reports it).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertRevocationListError, CertificateError, DigitallySignedStruct, DistinguishedName,
    SignatureScheme,
};
use rustls_pki_types::TrustAnchor;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{CertRevocationList, EndEntityCert, KeyUsage, RevocationOptionsBuilder};

use crate::crl::CrlFreshness;
use crate::error::{NegotiationError, Peer};
use crate::name::constraints::{PathConstraints, UNCONSTRAINED};
use crate::name::{CertificateNames, PeerTargetName};
use crate::policy::ExpiredCrls;

/// Which extended key usage a chain must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// TLS server authentication (id-kp-serverAuth): the peer accepted our connection.
    ServerAuth,
    /// TLS client authentication (id-kp-clientAuth): the peer connected to us.
    ClientAuth,
}

/// Validates certificate chains against one set of trust anchors and CRLs.
///
/// Successful validations can be remembered (see `ChainCache`): a path validated once
/// is not validated again until its earliest certificate expires. The anchors and CRLs of
/// a validator never change — a changed policy makes a new `Platform`, hence a new
/// validator with an empty cache — so the only thing that can turn a valid chain invalid
/// is time.
pub struct ChainValidator {
    anchors: Vec<TrustAnchor<'static>>,
    /// The name constraints each anchor imposes (same order as `anchors`).
    anchor_constraints: Vec<PathConstraints>,
    crls: Vec<CertRevocationList<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    root_hints: Vec<DistinguishedName>,
    cache: ChainCache,
    /// What expired CRLs do, and the warnings about them.
    crl_freshness: CrlFreshness,
}

impl fmt::Debug for ChainValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainValidator")
            .field("anchors", &self.anchors.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

/// A chain that validated: the path webpki found from the leaf to an anchor and that
/// path's name constraints, which the names read from the leaf must be filtered through
/// (`CertificateNames::within`) before they prove anything.
#[derive(Debug, Clone)]
pub struct ValidatedPath {
    key: CacheKey,
    /// The intermediates the path used, leaf side first (not every one presented).
    path: Arc<[CertificateDer<'static>]>,
    /// `None`: no CA of the path has name constraints.
    constraints: Option<Arc<PathConstraints>>,
    validated_at: u64,
    /// The earliest notAfter of the leaf and the path; `None` if one cannot be read (then
    /// the validation is not cached).
    expires: Option<u64>,
    /// Whether it came from the cache.
    cached: bool,
}

impl ValidatedPath {
    /// The name constraints of the path (empty for an unconstrained one).
    pub(crate) fn constraints(&self) -> &PathConstraints {
        self.constraints.as_deref().unwrap_or(&UNCONSTRAINED)
    }

    /// The same, shared.
    pub(crate) fn shared_constraints(&self) -> Option<Arc<PathConstraints>> {
        self.constraints.clone()
    }

    /// Whether the cache answered.
    pub fn from_cache(&self) -> bool {
        self.cached
    }
}

/// The names a leaf certificate proves under the constraints of its validated path.
pub(crate) fn names_within(
    leaf: &CertificateDer<'_>,
    path: &ValidatedPath,
) -> Result<CertificateNames, rustls::Error> {
    CertificateNames::from_der(leaf)
        .map(|names| names.within(path.constraints()))
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
}

impl ChainValidator {
    /// A validator trusting `anchors` (DER certificates) and honouring `crls`.
    ///
    /// Errors name the index of the anchor or CRL that could not be used.
    pub fn new(
        anchors: &[CertificateDer<'_>],
        crls: &[CertificateRevocationListDer<'_>],
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Result<Self, String> {
        let mut trust = Vec::with_capacity(anchors.len());
        let mut anchor_constraints = Vec::with_capacity(anchors.len());
        let mut root_hints = Vec::with_capacity(anchors.len());
        for (i, der) in anchors.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| format!("trust anchor #{} cannot be used: {e}", i + 1))?
                .to_owned();
            let mut constraints = PathConstraints::default();
            constraints
                .add_certificate_der(der)
                .map_err(|e| format!("trust anchor #{} cannot be used: {e}", i + 1))?;
            anchor_constraints.push(constraints);
            // webpki keeps the Name's contents; the TLS hint is the whole DER SEQUENCE.
            root_hints.push(DistinguishedName::in_sequence(anchor.subject.as_ref()));
            trust.push(anchor);
        }
        let mut revocation = Vec::with_capacity(crls.len());
        for (i, der) in crls.iter().enumerate() {
            let crl = webpki::OwnedCertRevocationList::from_der(der)
                .map_err(|e| format!("CRL #{} cannot be parsed: {e}", i + 1))?;
            revocation.push(CertRevocationList::from(crl));
        }
        Ok(Self {
            anchors: trust,
            anchor_constraints,
            crls: revocation,
            algorithms,
            root_hints,
            cache: ChainCache::default(),
            crl_freshness: CrlFreshness::new(crls, ExpiredCrls::default()),
        })
    }

    /// Sets what a CRL past its nextUpdate does (`[trust] expired_crls`; by default it is
    /// used, with a warning at the first validation and then once a day).
    pub fn with_expired_crls(mut self, policy: ExpiredCrls) -> Self {
        self.crl_freshness.set_policy(policy);
        self
    }

    /// Logs a warning for each expired CRL not warned about in the last day (the platform
    /// calls it when it loads; validations call it too).
    pub fn warn_about_expired_crls(&self, now: UnixTime) {
        self.crl_freshness.observe(now);
    }

    /// The signature algorithms used for chains and handshake signatures.
    pub fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algorithms
    }

    /// The subjects of the trust anchors, sent to clients as certificate authority hints.
    pub fn root_hints(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    /// Validates `end_entity` + `intermediates` up to an anchor, at `now`, for `usage`:
    /// from the cache if this leaf was validated for this usage through a path whose
    /// certificates are all among `intermediates` and has not expired since, else in full.
    ///
    /// Remembers nothing: a handshake calls it before the peer has proven it holds the
    /// leaf's key. Call [`ChainValidator::remember`] once that is proven (or
    /// `ChainValidator::hold` and then `ChainValidator::confirm`, crate-internal).
    pub fn validate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<ValidatedPath, rustls::Error> {
        self.crl_freshness.observe(now);
        let key = CacheKey::new(usage, end_entity);
        if let Some(hit) = self.cache.lookup(&key, intermediates, now.as_secs()) {
            return Ok(hit);
        }
        self.validate_full(key, end_entity, intermediates, now, usage)
    }

    /// Full validation, never from the cache.
    pub fn validate_uncached(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<ValidatedPath, rustls::Error> {
        let key = CacheKey::new(usage, end_entity);
        self.validate_full(key, end_entity, intermediates, now, usage)
    }

    fn validate_full(
        &self,
        key: CacheKey,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<ValidatedPath, rustls::Error> {
        let cert = EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = if crl_refs.is_empty() {
            None
        } else {
            // CRLs are opt-in per issuer: a certificate whose issuer has no CRL configured
            // is not refused for that.
            RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
                b.with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .with_expiration_policy(self.crl_freshness.expiration_policy())
                    .build()
            })
        };
        let eku = match usage {
            Usage::ServerAuth => KeyUsage::server_auth(),
            Usage::ClientAuth => KeyUsage::client_auth(),
        };
        let verified = cert
            .verify_for_usage(
                self.algorithms.all,
                &self.anchors,
                intermediates,
                now,
                eku,
                revocation,
                None,
            )
            .map_err(pki_error)?;
        let path: Vec<CertificateDer<'static>> = verified
            .intermediate_certificates()
            .map(|c| c.der().into_owned())
            .collect();
        let mut constraints = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, verified.anchor()))
            .map(|i| self.anchor_constraints[i].clone())
            .unwrap_or_default();
        // The leaf first, then the path: each certificate's notAfter, each CA's constraints.
        let mut expires = Some(u64::MAX);
        for (i, der) in std::iter::once(end_entity).chain(&path).enumerate() {
            let parsed = x509_parser::parse_x509_certificate(der).ok();
            let not_after = parsed
                .as_ref()
                .and_then(|(_, c)| u64::try_from(c.validity().not_after.timestamp()).ok());
            expires = expires.zip(not_after).map(|(e, t)| e.min(t));
            if i > 0 {
                let read = match &parsed {
                    Some((_, ca)) => constraints.add_certificate(ca),
                    None => Err("a CA certificate of the path cannot be parsed".to_string()),
                };
                // Constraints that cannot be read cannot be honoured: refuse the path.
                read.map_err(|e| {
                    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                        Arc::new(std::io::Error::other(e)),
                    )))
                })?;
            }
        }
        Ok(ValidatedPath {
            key,
            path: path.into(),
            constraints: (!constraints.is_empty()).then(|| Arc::new(constraints)),
            validated_at: now.as_secs(),
            // With expired CRLs refused, not past the earliest CRL's nextUpdate either.
            expires: expires.map(|e| self.crl_freshness.cache_until(e)),
            cached: false,
        })
    }

    /// Caches a validation whose peer has proven it holds the leaf's key (the handshake
    /// completed). A validation that came from the cache, or whose expiry is unknown, is
    /// not inserted again.
    pub fn remember(&self, validated: &ValidatedPath) {
        self.cache.remember(validated);
    }

    /// Keeps a validation made during a handshake until [`ChainValidator::confirm`] is
    /// called for the same leaf when the handshake has completed. A fixed number are kept;
    /// the oldest goes first. Nothing the peer presented beyond the path is kept.
    pub(crate) fn hold(&self, validated: ValidatedPath) {
        self.cache.hold(validated);
    }

    /// The validation of a chain whose handshake has completed (the peer proved it holds
    /// the leaf's key): from the cache, from what [`ChainValidator::hold`] kept, or in full;
    /// then remembered.
    pub(crate) fn confirm(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<ValidatedPath, rustls::Error> {
        let key = CacheKey::new(usage, end_entity);
        let at = now.as_secs();
        if let Some(hit) = self.cache.lookup(&key, intermediates, at) {
            return Ok(hit);
        }
        let validated = match self.cache.take_held(&key, intermediates, at) {
            Some(held) => held,
            None => self.validate_full(key, end_entity, intermediates, now, usage)?,
        };
        self.cache.remember(&validated);
        Ok(validated)
    }

    /// The cache's size and use.
    pub fn cache_stats(&self) -> ChainCacheStats {
        self.cache.stats()
    }

    /// How many validations the cache answered.
    pub fn cache_hits(&self) -> u64 {
        self.cache.hits.load(Ordering::Relaxed)
    }
}

/// A cache entry's key: the usage and the SHA-256 of the leaf's DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    usage: Usage,
    leaf: [u8; 32],
}

impl CacheKey {
    fn new(usage: Usage, leaf: &CertificateDer<'_>) -> Self {
        Self {
            usage,
            leaf: Sha256::digest(leaf.as_ref()).into(),
        }
    }
}

/// How big the chain cache is, and how often it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainCacheStats {
    /// Validations remembered.
    pub entries: usize,
    /// The bytes they hold: keys, bookkeeping and the DER of each path's certificates.
    pub bytes: usize,
    /// Validations answered from the cache since the validator was made.
    pub hits: u64,
}

/// Successful chain validations, keyed by the leaf and the usage, each with the path
/// (intermediates) it used.
///
/// An entry answers "valid" for a presentation of the same leaf that includes every
/// certificate of the entry's path, while `validated_at <= now < expires`: time is the
/// only input of a validation that changes for a given validator (anchors and CRLs are
/// fixed, an expired CRL refuses only with `expired_crls = "refuse"` and then `expires` is
/// no later than the earliest nextUpdate, and the leaf and its path are the key), a chain
/// valid at `validated_at` was not-yet-valid at no earlier time for any certificate, and
/// it stays valid until its earliest notAfter. Extra certificates a peer presents beyond
/// the path change nothing and are never stored. A clock that went backwards misses.
///
/// Only validations whose peer proved possession of the leaf's key are inserted: a
/// handshake validates when the Certificate message arrives, before CertificateVerify, so
/// it [`hold`](ChainCache::hold)s its validation (a bounded queue of paths, never what was
/// presented beyond them) and the session confirms it once the handshake completed.
/// Failures are never cached. The handshake signature is checked by rustls on every
/// handshake, cached chain or not.
#[derive(Default)]
struct ChainCache {
    entries: Mutex<HashMap<CacheKey, CacheEntry>>,
    held: Mutex<VecDeque<ValidatedPath>>,
    hits: AtomicU64,
}

#[derive(Clone)]
struct CacheEntry {
    path: Arc<[CertificateDer<'static>]>,
    constraints: Option<Arc<PathConstraints>>,
    validated_at: u64,
    expires: u64,
}

impl CacheEntry {
    /// What the entry costs: its key, itself and its path's certificates.
    fn bytes(&self) -> usize {
        std::mem::size_of::<CacheKey>()
            + std::mem::size_of::<CacheEntry>()
            + self.path.iter().map(|c| c.len()).sum::<usize>()
    }
}

/// Chains remembered per validator; beyond it, expired entries go first, then any.
const CACHE_CAPACITY: usize = 4096;
/// Validations held between a handshake's Certificate message and its completion.
const HELD_CAPACITY: usize = 256;

/// Whether every certificate of `path` is among `presented`.
fn presents_path(path: &[CertificateDer<'_>], presented: &[CertificateDer<'_>]) -> bool {
    path.iter().all(|cert| presented.contains(cert))
}

impl ChainCache {
    fn lookup(
        &self,
        key: &CacheKey,
        presented: &[CertificateDer<'_>],
        now: u64,
    ) -> Option<ValidatedPath> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(key).filter(|e| {
            e.validated_at <= now && now < e.expires && presents_path(&e.path, presented)
        })?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(ValidatedPath {
            key: *key,
            path: entry.path.clone(),
            constraints: entry.constraints.clone(),
            validated_at: entry.validated_at,
            expires: Some(entry.expires),
            cached: true,
        })
    }

    fn remember(&self, validated: &ValidatedPath) {
        let Some(expires) = validated.expires.filter(|_| !validated.cached) else {
            return;
        };
        let now = validated.validated_at;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_CAPACITY && !entries.contains_key(&validated.key) {
            entries.retain(|_, e| now < e.expires);
            if entries.len() >= CACHE_CAPACITY {
                if let Some(any) = entries.keys().next().copied() {
                    entries.remove(&any);
                }
            }
        }
        entries.insert(
            validated.key,
            CacheEntry {
                path: validated.path.clone(),
                constraints: validated.constraints.clone(),
                validated_at: now,
                expires,
            },
        );
    }

    fn hold(&self, validated: ValidatedPath) {
        if validated.cached || validated.expires.is_none() {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() >= HELD_CAPACITY {
            held.pop_front();
        }
        held.push_back(validated);
    }

    fn take_held(
        &self,
        key: &CacheKey,
        presented: &[CertificateDer<'_>],
        now: u64,
    ) -> Option<ValidatedPath> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let index = held.iter().rposition(|v| {
            v.key == *key
                && v.validated_at <= now
                && v.expires.is_some_and(|e| now < e)
                && presents_path(&v.path, presented)
        })?;
        held.remove(index)
    }

    fn stats(&self) -> ChainCacheStats {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        ChainCacheStats {
            entries: entries.len(),
            bytes: entries.values().map(CacheEntry::bytes).sum(),
            hits: self.hits.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// Maps a webpki failure to the rustls error that carries the right TLS alert.
fn pki_error(error: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    match error {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding.into(),
        E::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }.into()
        }
        E::CertExpired { time, not_after } => {
            CertificateError::ExpiredContext { time, not_after }.into()
        }
        E::InvalidCertValidity => CertificateError::Expired.into(),
        E::UnknownIssuer => CertificateError::UnknownIssuer.into(),
        E::CertRevoked => CertificateError::Revoked.into(),
        E::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus.into(),
        E::CrlExpired { time, next_update } => {
            CertificateError::ExpiredRevocationListContext { time, next_update }.into()
        }
        E::IssuerNotCrlSigner => CertRevocationListError::IssuerInvalidForCrl.into(),
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature.into(),
        E::UnsupportedSignatureAlgorithmContext(cx) => {
            CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: cx.signature_algorithm_id,
                supported_algorithms: cx.supported_algorithms,
            }
            .into()
        }
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose.into()
        }
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))).into(),
    }
}

/// Turns a rustls handshake error into the reason a person can act on. `peer` is the other
/// side of the connection.
pub(crate) fn negotiation_error_from_tls(error: &rustls::Error, peer: Peer) -> NegotiationError {
    use rustls::AlertDescription as A;
    use rustls::Error as E;
    let untrusted = |reason: &str| NegotiationError::UntrustedChain {
        peer,
        reason: reason.to_string(),
    };
    let usage = match peer {
        Peer::Server => "server",
        Peer::Client => "client",
    };
    match error {
        E::InvalidCertificate(CertificateError::Other(other)) => {
            let inner: &(dyn std::error::Error + 'static) = &*other.0;
            match inner.downcast_ref::<NegotiationError>() {
                Some(ours) => ours.clone(),
                None => untrusted(&other.to_string()),
            }
        }
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                untrusted("it is not issued by (a chain leading to) one of the policy's trust anchors")
            }
            CertificateError::BadSignature => untrusted(
                "a signature in the chain does not verify against the policy's trust anchors \
                 (is it from another CA with the same name?)",
            ),
            CertificateError::BadEncoding => untrusted("the certificate is malformed"),
            #[allow(deprecated)]
            CertificateError::UnsupportedSignatureAlgorithm
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. } => {
                untrusted("the chain uses a signature algorithm that is not supported")
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => NegotiationError::UntrustedChain {
                peer,
                reason: format!("the certificate is not valid for TLS {usage} authentication (extended key usage)"),
            },
            CertificateError::Expired => NegotiationError::CertificateExpired { peer, not_after: None, now: None },
            CertificateError::ExpiredContext { time, not_after } => NegotiationError::CertificateExpired {
                peer,
                not_after: Some(system_time(not_after)),
                now: Some(system_time(time)),
            },
            CertificateError::NotValidYet => NegotiationError::CertificateNotYetValid { peer, not_before: None, now: None },
            CertificateError::NotValidYetContext { time, not_before } => NegotiationError::CertificateNotYetValid {
                peer,
                not_before: Some(system_time(not_before)),
                now: Some(system_time(time)),
            },
            CertificateError::Revoked => NegotiationError::CertificateRevoked { peer },
            CertificateError::UnknownRevocationStatus => untrusted("its revocation status is unknown"),
            CertificateError::ExpiredRevocationList | CertificateError::ExpiredRevocationListContext { .. } => {
                untrusted("the CRL for its issuer has expired")
            }
            other => untrusted(&other.to_string()),
        },
        E::InvalidCertRevocationList(e) => untrusted(&format!("a CRL of the policy is unusable: {e:?}")),
        E::NoCertificatesPresented => NegotiationError::PeerSentNoCertificate,
        E::AlertReceived(alert) => match alert {
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::DecryptError => NegotiationError::PeerRefusedOurCertificate { peer, alert: alert_name(*alert) },
            A::HandshakeFailure | A::InsufficientSecurity | A::ProtocolVersion | A::IllegalParameter => {
                NegotiationError::NoCommonCrypto { peer, detail: format!("the {peer} sent {}", alert_name(*alert)) }
            }
            other => NegotiationError::Protocol { peer, detail: format!("the {peer} sent {}", alert_name(*other)) },
        },
        E::PeerIncompatible(why) => NegotiationError::NoCommonCrypto { peer, detail: format!("{why:?}") },
        E::InvalidMessage(rustls::InvalidMessage::MessageTooLarge) => NegotiationError::Protocol {
            peer,
            detail: format!("the {peer} sent a TLS record larger than TLS allows (16 KiB plus overhead)"),
        },
        E::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
        | E::InvalidMessage(rustls::InvalidMessage::UnknownProtocolVersion) => {
            NegotiationError::PeerNotTls { peer, detail: "it sent bytes that are not a TLS record".into() }
        }
        other => NegotiationError::Protocol { peer, detail: other.to_string() },
    }
}

fn system_time(t: &UnixTime) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs())
}

fn alert_name(alert: rustls::AlertDescription) -> String {
    let debug = format!("{alert:?}");
    // `BadCertificate` -> `bad_certificate`, the RFC spelling.
    let mut out = String::new();
    let mut previous_lower = false;
    for c in debug.chars() {
        if c.is_ascii_uppercase() && previous_lower {
            out.push('_');
        }
        previous_lower = c.is_ascii_lowercase();
        out.push(c.to_ascii_lowercase());
    }
    format!("alert {out}")
}

/// Client side: checks the server's chain and that it proves the peer target name. One
/// per target name (rustls resumes a session only with the verifier that verified it). A
/// fatal mismatch travels inside the rustls error (as `CertificateError::Other`, sent as
/// a `certificate_unknown` alert) so the caller gets the expected and presented names; a
/// tolerated one is found again when the handshake completes.
#[derive(Debug)]
pub(crate) struct ServerIdentityVerifier {
    pub validator: Arc<ChainValidator>,
    pub target: Option<PeerTargetName>,
    pub optional_name: bool,
    /// Leaf certificates (exact DER) already found to prove `target`, each with the name
    /// constraints of the path it was validated through: a repeated handshake to the same
    /// server, or a resumed session's check, need not parse them again.
    proven: Mutex<VecDeque<ProvenLeaf>>,
}

/// A leaf that proved the target, and the constraints it proved it under.
#[derive(Debug)]
struct ProvenLeaf {
    der: Vec<u8>,
    constraints: Option<Arc<PathConstraints>>,
}

/// Leaves remembered per target name (a server's certificate, a few renewals of it).
const PROVEN_LEAVES: usize = 8;

impl ServerIdentityVerifier {
    pub(crate) fn new(
        validator: Arc<ChainValidator>,
        target: Option<PeerTargetName>,
        optional_name: bool,
    ) -> Self {
        Self {
            validator,
            target,
            optional_name,
            proven: Mutex::default(),
        }
    }

    /// Whether `leaf`, validated through `path`, was already found to prove the target
    /// name (always, without one). A leaf proven under other name constraints (another
    /// path to an anchor) is checked again.
    pub(crate) fn proves_target(&self, leaf: &[u8], path: &ValidatedPath) -> bool {
        self.target.is_none()
            || self
                .proven
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|l| l.der == leaf && l.constraints.as_deref() == path.constraints.as_deref())
    }

    fn remember(&self, leaf: &[u8], path: &ValidatedPath) {
        let mut proven = self.proven.lock().unwrap_or_else(|p| p.into_inner());
        if proven.len() >= PROVEN_LEAVES {
            proven.pop_front();
        }
        proven.push_back(ProvenLeaf {
            der: leaf.to_vec(),
            constraints: path.shared_constraints(),
        });
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let path = self
            .validator
            .validate(end_entity, intermediates, now, Usage::ServerAuth)?;
        if let Some(target) = self
            .target
            .as_ref()
            .filter(|_| !self.proves_target(end_entity, &path))
        {
            let names = names_within(end_entity, &path)?;
            if target.is_proven_by(&names) {
                self.remember(end_entity, &path);
            } else if !self.optional_name {
                let mismatch = NegotiationError::PeerNameMismatch {
                    expected: target.as_str().to_string(),
                    presented: names.presented(),
                };
                return Err(CertificateError::Other(rustls::OtherError(Arc::new(mismatch))).into());
            }
        }
        // Cached only once the server proved it holds the key (the session confirms it).
        self.validator.hold(path);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, self.validator.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, self.validator.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.validator.algorithms().supported_schemes()
    }
}

/// Server side: requires a client certificate and checks its chain, and, where the
/// listener's peer target names apply to the client's address, that it proves one of
/// them (`allowed`; empty: any proven principal). A refusal travels inside the rustls
/// error, as for the client's name mismatch.
#[derive(Debug)]
pub(crate) struct ClientIdentityVerifier {
    pub validator: Arc<ChainValidator>,
    pub allowed: Vec<PeerTargetName>,
}

impl ClientCertVerifier for ClientIdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.validator.root_hints()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let path = self
            .validator
            .validate(end_entity, intermediates, now, Usage::ClientAuth)?;
        if !self.allowed.is_empty() {
            let names = names_within(end_entity, &path)?;
            if !self.allowed.iter().any(|name| name.is_proven_by(&names)) {
                let refusal = NegotiationError::PeerNotAllowed {
                    presented: names.presented(),
                    allowed: self
                        .allowed
                        .iter()
                        .map(|n| n.as_str().to_string())
                        .collect(),
                };
                return Err(CertificateError::Other(rustls::OtherError(Arc::new(refusal))).into());
            }
        }
        // Cached only once the client proved it holds the key (the session confirms it).
        self.validator.hold(path);
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, self.validator.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, self.validator.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.validator.algorithms().supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevocationReason, RevokedCertParams, SerialNumber,
    };

    const T0: i64 = 1_900_000_000; // a fixed "now", in 2030

    fn at(offset: i64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs((T0 + offset) as u64))
    }

    fn date(offset: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(T0 + offset).unwrap()
    }

    /// A CA certificate's parameters: `name`, valid from `from` to `until`.
    fn ca_params(name: &str, from: i64, until: i64) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = date(from);
        params.not_after = date(until);
        params
    }

    fn ca(
        name: &str,
        from: i64,
        until: i64,
    ) -> (CertificateParams, KeyPair, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name, from, until);
        let cert = params.self_signed(&key).unwrap().der().clone();
        (params, key, cert)
    }

    fn leaf(
        issuer: &(CertificateParams, KeyPair, CertificateDer<'static>),
        serial: u64,
        ekus: Vec<ExtendedKeyUsagePurpose>,
        from: i64,
        until: i64,
    ) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["host.example.test".to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = ekus;
        params.not_before = date(from);
        params.not_after = date(until);
        let issuer = Issuer::from_params(&issuer.0, &issuer.1);
        params.signed_by(&key, &issuer).unwrap().der().clone()
    }

    fn intermediate(
        issuer: &(CertificateParams, KeyPair, CertificateDer<'static>),
        from: i64,
        until: i64,
    ) -> (CertificateParams, KeyPair, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params = ca_params("intermediate", from, until);
        let signer = Issuer::from_params(&issuer.0, &issuer.1);
        let cert = params.signed_by(&key, &signer).unwrap().der().clone();
        (params, key, cert)
    }

    /// The cache never answers differently from a full validation: one long-lived validator
    /// (whose cache fills as it goes) against a full validation of every case, over chains
    /// that are good, expiring, not yet valid, for one usage only, untrusted, revoked, or
    /// that expire through their intermediate, at times that go forward and back.
    #[test]
    fn the_cache_never_accepts_what_a_full_validation_refuses() {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let day = 86_400;
        let root = ca("root", -10 * day, 10 * day);
        let rogue = ca("root", -10 * day, 10 * day); // same name, other key
        let inter = intermediate(&root, -day, 50);
        let chains: Vec<(&str, CertificateDer<'static>, Vec<CertificateDer<'static>>)> = vec![
            (
                "good",
                leaf(&root, 1, vec![ServerAuth, ClientAuth], -day, day),
                vec![],
            ),
            (
                "expires at +100",
                leaf(&root, 2, vec![ServerAuth, ClientAuth], -day, 100),
                vec![],
            ),
            (
                "valid from +100",
                leaf(&root, 3, vec![ServerAuth, ClientAuth], 100, day),
                vec![],
            ),
            (
                "server only",
                leaf(&root, 4, vec![ServerAuth], -day, day),
                vec![],
            ),
            (
                "client only",
                leaf(&root, 5, vec![ClientAuth], -day, day),
                vec![],
            ),
            (
                "rogue issuer",
                leaf(&rogue, 6, vec![ServerAuth, ClientAuth], -day, day),
                vec![],
            ),
            (
                "revoked",
                leaf(&root, 7, vec![ServerAuth, ClientAuth], -day, day),
                vec![],
            ),
            (
                "via intermediate expiring at +50",
                leaf(&inter, 8, vec![ServerAuth, ClientAuth], -day, day),
                vec![inter.2.clone()],
            ),
            (
                "good, extra unused intermediate",
                leaf(&root, 9, vec![ServerAuth, ClientAuth], -day, day),
                vec![inter.2.clone()],
            ),
        ];
        let crl = CertificateRevocationListParams {
            this_update: date(-day),
            next_update: date(day),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(7u64),
                revocation_time: date(-day),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&root.0, &root.1))
        .unwrap();
        let crls = [CertificateRevocationListDer::from(crl.der().to_vec())];
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        let anchors = [root.2.clone()];
        let cached = ChainValidator::new(&anchors, &crls, algorithms).unwrap();
        let fresh = || ChainValidator::new(&anchors, &crls, algorithms).unwrap();

        // Forward, back past every boundary, and forward again.
        let times = [
            0,
            1,
            49,
            50,
            51,
            99,
            100,
            101,
            day - 1,
            day,
            day + 1,
            60,
            10,
            -1,
            -20 * day,
            0,
            99,
            100,
            20 * day,
        ];
        let mut checked = 0;
        for offset in times {
            for usage in [Usage::ServerAuth, Usage::ClientAuth] {
                for (name, leaf, intermediates) in &chains {
                    let full = fresh().validate_uncached(leaf, intermediates, at(offset), usage);
                    let answer = cached.validate(leaf, intermediates, at(offset), usage);
                    if let Ok(validated) = &answer {
                        cached.remember(validated);
                    }
                    assert_eq!(
                        answer.is_ok(),
                        full.is_ok(),
                        "{name}, {usage:?}, at +{offset}: cache {answer:?}, full {full:?}"
                    );
                    if let (Err(a), Err(f)) = (&answer, &full) {
                        assert_eq!(
                            a.to_string(),
                            f.to_string(),
                            "{name} at +{offset}: the same reason"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, times.len() * 2 * chains.len());
        // The cache was really used, and only successes were kept.
        assert!(
            cached.cache_hits() > 20,
            "only {} hits",
            cached.cache_hits()
        );
        // One entry per (chain, usage) that ever validated: good, expiring, valid-from,
        // via intermediate and extra intermediate for both usages; server-only and
        // client-only for one each. Rogue and revoked never.
        assert_eq!(cached.cache.len(), 12);
        // Sanity of the fixture: each kind of refusal occurs.
        let verdict = |name: &str, offset, usage| {
            let (_, leaf, inter) = chains.iter().find(|c| c.0 == name).unwrap();
            fresh().validate_uncached(leaf, inter, at(offset), usage)
        };
        assert!(verdict("good", 0, Usage::ServerAuth).is_ok());
        assert!(verdict("expires at +100", 101, Usage::ServerAuth).is_err());
        assert!(verdict("valid from +100", 99, Usage::ServerAuth).is_err());
        assert!(verdict("server only", 0, Usage::ClientAuth).is_err());
        assert!(verdict("rogue issuer", 0, Usage::ServerAuth).is_err());
        assert!(matches!(
            verdict("revoked", 0, Usage::ServerAuth),
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
        ));
        assert!(verdict("via intermediate expiring at +50", 49, Usage::ServerAuth).is_ok());
        assert!(verdict("via intermediate expiring at +50", 51, Usage::ServerAuth).is_err());
    }

    #[test]
    fn a_remembered_leaf_never_excuses_another_certificate() {
        use ExtendedKeyUsagePurpose::ServerAuth;
        let day = 86_400;
        let root = ca("root", -day, day);
        let right = leaf(&root, 1, vec![ServerAuth], -day, day); // host.example.test
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        let validator =
            Arc::new(ChainValidator::new(std::slice::from_ref(&root.2), &[], algorithms).unwrap());
        let target = PeerTargetName::parse("host.example.test").unwrap();
        let verifier = ServerIdentityVerifier::new(validator.clone(), Some(target), false);
        let name = ServerName::try_from("host.example.test").unwrap();
        let now = at(0);
        let path = |leaf: &CertificateDer<'_>| {
            validator
                .validate(leaf, &[], now, Usage::ServerAuth)
                .unwrap()
        };
        assert!(!verifier.proves_target(&right, &path(&right)));
        verifier
            .verify_server_cert(&right, &[], &name, &[], now)
            .unwrap();
        assert!(
            verifier.proves_target(&right, &path(&right)),
            "remembered after proving"
        );
        // A certificate for another name from the same CA is still refused, every time.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["other.example.test".to_string()]).unwrap();
        params.extended_key_usages = vec![ServerAuth];
        let wrong = params
            .signed_by(&key, &Issuer::from_params(&root.0, &root.1))
            .unwrap()
            .der()
            .clone();
        for _ in 0..2 {
            let err = verifier
                .verify_server_cert(&wrong, &[], &name, &[], now)
                .unwrap_err();
            assert!(
                matches!(
                    negotiation_error_from_tls(&err, Peer::Server),
                    NegotiationError::PeerNameMismatch { .. }
                ),
                "{err}"
            );
            assert!(!verifier.proves_target(&wrong, &path(&wrong)));
        }
        // Without a target there is nothing to prove.
        assert!(ServerIdentityVerifier::new(validator.clone(), None, false)
            .proves_target(&wrong, &path(&wrong)));
    }

    /// A validation with no path, as if of leaf `n`, made at `validated_at`.
    fn validation(n: u64, validated_at: i64, expires: i64) -> ValidatedPath {
        let mut leaf = [0u8; 32];
        leaf[..8].copy_from_slice(&n.to_be_bytes());
        ValidatedPath {
            key: CacheKey {
                usage: Usage::ServerAuth,
                leaf,
            },
            path: Arc::from(Vec::new()),
            constraints: None,
            validated_at: (T0 + validated_at) as u64,
            expires: Some((T0 + expires) as u64),
            cached: false,
        }
    }

    #[test]
    fn a_full_cache_makes_room() {
        let cache = ChainCache::default();
        for i in 0..(CACHE_CAPACITY as u64 + 10) {
            cache.remember(&validation(i, 0, 100));
        }
        assert_eq!(cache.len(), CACHE_CAPACITY);
        // Expired entries are dropped first.
        let new = validation(u64::MAX, 200, 300);
        cache.remember(&new);
        assert_eq!(cache.len(), 1);
        let at = |t: i64| (T0 + t) as u64;
        assert!(cache.lookup(&new.key, &[], at(201)).is_some());
        assert!(
            cache.lookup(&new.key, &[], at(300)).is_none(),
            "expires at its earliest notAfter"
        );
        assert!(
            cache.lookup(&new.key, &[], at(199)).is_none(),
            "a clock gone back misses"
        );
        // Held validations are bounded too, and never counted as cached.
        for i in 0..(HELD_CAPACITY as u64 + 10) {
            cache.hold(validation(i, 0, 100));
        }
        assert_eq!(cache.held.lock().unwrap().len(), HELD_CAPACITY);
        assert_eq!(cache.len(), 1);
    }

    /// Attack (issue 12, item 5): the cache was keyed on the whole presented chain and
    /// filled before the peer proved it holds the key, so anyone with a copy of a valid
    /// chain could grow it by presenting junk intermediates. Now it is keyed on the leaf
    /// and the path used, and filled only on confirmation.
    #[test]
    fn the_cache_keeps_the_path_used_and_only_confirmed_validations() {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let day = 86_400;
        let root = ca("root", -day, day);
        let inter = intermediate(&root, -day, day);
        let good = leaf(&inter, 1, vec![ServerAuth, ClientAuth], -day, day);
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        let validator =
            ChainValidator::new(std::slice::from_ref(&root.2), &[], algorithms).unwrap();
        let junk = |n: u64| leaf(&root, 100 + n, vec![ServerAuth], -day, day);
        let presented = |n: u64| vec![junk(n), inter.2.clone()];
        let stats = || validator.cache_stats();
        // Validated, held, never confirmed (the handshake failed): nothing is cached.
        for n in 0..5 {
            let path = validator
                .validate(&good, &presented(n), at(0), Usage::ClientAuth)
                .unwrap();
            assert!(!path.from_cache());
            assert_eq!(
                path.path.as_ref(),
                std::slice::from_ref(&inter.2),
                "the path used"
            );
            validator.hold(path);
        }
        assert_eq!(stats().entries, 0);
        assert_eq!(stats().bytes, 0);
        // Confirmed: one entry, holding the leaf's key and the path, not the junk.
        let confirmed = validator
            .confirm(&good, &presented(4), at(1), Usage::ClientAuth)
            .unwrap();
        assert!(!confirmed.from_cache());
        assert_eq!(stats().entries, 1);
        let bytes = stats().bytes;
        assert!(bytes < inter.2.len() + 512, "{bytes} bytes");
        // Another presentation with other junk is a hit and changes nothing.
        let again = validator
            .validate(&good, &presented(9), at(2), Usage::ClientAuth)
            .unwrap();
        assert!(again.from_cache());
        assert_eq!(stats().bytes, bytes);
        // Without the path's intermediate it is no hit (and webpki refuses the chain).
        assert!(validator
            .validate(&good, &[junk(1)], at(2), Usage::ClientAuth)
            .is_err());
        // Another usage is another entry.
        assert!(!validator
            .validate(&good, &presented(1), at(2), Usage::ServerAuth)
            .unwrap()
            .from_cache());
    }

    /// A CA certificate's parameters with a name constraint permitting only `dns`.
    fn constrained(params: &mut CertificateParams, dns: &str) {
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName(dns.to_string())],
            excluded_subtrees: vec![],
        });
    }

    /// Attack (issue 12, item 1), through the verifier: the same leaf with a Kerberos SAN
    /// `host/db.example.test@ANY`, under an intermediate constrained to
    /// `.dept.example.test`, is refused for `db.example.test`; under an unconstrained
    /// intermediate of the same name and key it is accepted; the verifier's memory of a
    /// proven leaf does not carry over from one path to the other.
    #[test]
    fn a_constrained_path_does_not_prove_names_read_across_forms() {
        let day = 86_400;
        let root = ca("root", -day, day);
        let sub_key = KeyPair::generate().unwrap();
        let mut open_params = ca_params("sub", -day, day);
        let mut narrow_params = ca_params("sub", -day, day);
        constrained(&mut narrow_params, ".dept.example.test");
        let root_issuer = Issuer::from_params(&root.0, &root.1);
        let open = open_params
            .clone()
            .signed_by(&sub_key, &root_issuer)
            .unwrap();
        let narrow = narrow_params
            .clone()
            .signed_by(&sub_key, &root_issuer)
            .unwrap();
        // The leaf: signed by the sub-CA's key, whichever of the two certificates is used.
        let leaf_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = date(-day);
        params.not_after = date(day);
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            krb5_san_sequence("ANY", &["host", "db.example.test"]),
        )];
        open_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let leaf = params
            .signed_by(&leaf_key, &Issuer::from_params(&open_params, &sub_key))
            .unwrap()
            .der()
            .clone();
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        let validator =
            Arc::new(ChainValidator::new(std::slice::from_ref(&root.2), &[], algorithms).unwrap());
        let name = ServerName::try_from("db.example.test").unwrap();
        for target in ["db.example.test", "host/db.example.test"] {
            let verifier = ServerIdentityVerifier::new(
                validator.clone(),
                Some(PeerTargetName::parse(target).unwrap()),
                false,
            );
            for _ in 0..2 {
                verifier
                    .verify_server_cert(&leaf, &[open.der().clone()], &name, &[], at(0))
                    .unwrap_or_else(|e| panic!("{target} via the open sub-CA: {e}"));
                let err = verifier
                    .verify_server_cert(&leaf, &[narrow.der().clone()], &name, &[], at(0))
                    .expect_err("via the constrained sub-CA");
                assert!(
                    matches!(
                        negotiation_error_from_tls(&err, Peer::Server),
                        NegotiationError::PeerNameMismatch { .. }
                    ),
                    "{target}: {err}"
                );
            }
        }
        let narrow_path = validator
            .validate(&leaf, &[narrow.der().clone()], at(0), Usage::ServerAuth)
            .unwrap();
        assert!(!narrow_path.constraints().is_empty());
        assert!(names_within(&leaf, &narrow_path)
            .unwrap()
            .proven()
            .is_empty());
    }

    /// A SubjectAltName extension's content with one Kerberos principal-name SAN.
    fn krb5_san_sequence(realm: &str, components: &[&str]) -> Vec<u8> {
        use crate::name::tests::{krb5_san, tlv};
        tlv(0x30, &krb5_san(realm, components))
    }

    #[test]
    fn alert_names_use_rfc_spelling() {
        assert_eq!(
            alert_name(rustls::AlertDescription::BadCertificate),
            "alert bad_certificate"
        );
        assert_eq!(
            alert_name(rustls::AlertDescription::UnknownCA),
            "alert unknown_ca"
        );
    }
}
