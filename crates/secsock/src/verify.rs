//! Authentication of the peer: chain validation against the policy's trust anchors, and
//! our own principal-name matching on top (the part Windows' keying modules do).
//!
//! rustls's own `WebPkiServerVerifier` insists that the TLS server name match a DNS or IP
//! SAN, which cannot express SPNs, SPIFFE IDs or raw names, so secsock validates the chain
//! with rustls-webpki directly (for the right extended key usage, with the policy's CRLs)
//! and then matches names with [`crate::name`], as ztunnel's `IdentityVerifier` does.
//! The handshake signature is always checked by the provider's algorithms.
//!
//! Not here: building TLS configurations ([`crate::tls`]) or deciding what to do with a
//! failure (the session reports it).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertRevocationListError, CertificateError, DigitallySignedStruct, DistinguishedName,
    SignatureScheme,
};
use rustls_pki_types::TrustAnchor;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use webpki::{CertRevocationList, EndEntityCert, KeyUsage, RevocationOptionsBuilder};

use crate::error::{NegotiationError, Peer};
use crate::name::{CertificateNames, PeerTargetName};

/// Which extended key usage a chain must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server authentication (id-kp-serverAuth): the peer accepted our connection.
    ServerAuth,
    /// TLS client authentication (id-kp-clientAuth): the peer connected to us.
    ClientAuth,
}

/// Validates certificate chains against one set of trust anchors and CRLs.
pub struct ChainValidator {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    root_hints: Vec<DistinguishedName>,
}

impl fmt::Debug for ChainValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainValidator")
            .field("anchors", &self.anchors.len())
            .field("crls", &self.crls.len())
            .finish()
    }
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
        let mut root_hints = Vec::with_capacity(anchors.len());
        for (i, der) in anchors.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| format!("trust anchor #{} cannot be used: {e}", i + 1))?
                .to_owned();
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
            crls: revocation,
            algorithms,
            root_hints,
        })
    }

    /// The signature algorithms used for chains and handshake signatures.
    pub fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algorithms
    }

    /// The subjects of the trust anchors, sent to clients as certificate authority hints.
    pub fn root_hints(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    /// Validates `end_entity` + `intermediates` up to an anchor, at `now`, for `usage`.
    pub fn validate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<(), rustls::Error> {
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
                    .build()
            })
        };
        let eku = match usage {
            Usage::ServerAuth => KeyUsage::server_auth(),
            Usage::ClientAuth => KeyUsage::client_auth(),
        };
        cert.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            intermediates,
            now,
            eku,
            revocation,
            None,
        )
        .map(|_| ())
        .map_err(pki_error)
    }

    /// Validates a chain (leaf first) and checks `target` against it, for use after
    /// resumption, where rustls restores a stored chain without verifying it again.
    pub fn revalidate(
        &self,
        chain: &[CertificateDer<'static>],
        usage: Usage,
        target: Option<&PeerTargetName>,
        peer: Peer,
    ) -> Result<(), NegotiationError> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(NegotiationError::PeerSentNoCertificate)?;
        self.validate(leaf, intermediates, UnixTime::now(), usage)
            .map_err(|e| negotiation_error_from_tls(&e, peer))?;
        if let Some(target) = target {
            let names =
                CertificateNames::from_der(leaf).map_err(|e| NegotiationError::UntrustedChain {
                    peer,
                    reason: format!("the certificate cannot be parsed: {e}"),
                })?;
            if !target.is_proven_by(&names) {
                return Err(NegotiationError::PeerNameMismatch {
                    expected: target.as_str().to_string(),
                    presented: names.presented(),
                });
            }
        }
        Ok(())
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
        self.validator
            .validate(end_entity, intermediates, now, Usage::ServerAuth)?;
        if let Some(target) = &self.target {
            let names = CertificateNames::from_der(end_entity)
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if !target.is_proven_by(&names) && !self.optional_name {
                let mismatch = NegotiationError::PeerNameMismatch {
                    expected: target.as_str().to_string(),
                    presented: names.presented(),
                };
                return Err(CertificateError::Other(rustls::OtherError(Arc::new(mismatch))).into());
            }
        }
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

/// Server side: requires a client certificate and checks its chain. The names it proves
/// are read from the chain after the handshake.
#[derive(Debug)]
pub(crate) struct ClientIdentityVerifier {
    pub validator: Arc<ChainValidator>,
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
        self.validator
            .validate(end_entity, intermediates, now, Usage::ClientAuth)?;
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
