//! When clear text is allowed (`ALLOW_INSECURE`), and when it is not: the pure decisions
//! behind the insecure fallback, for both sides.
//!
//! - A listener with `ALLOW_INSECURE` looks at (peeks) the first bytes of a connection:
//!   a TLS ClientHello is handshaked; anything else, or nothing within
//!   [`CLEAR_TEXT_WAIT`], is served in clear ([`classify_first_bytes`]).
//! - A client with `ALLOW_INSECURE` falls back to clear, on a new connection, only when the
//!   peer plainly does not speak TLS: its first bytes are not a TLS record, or it closed
//!   before sending any byte ([`client_may_fall_back`]). A failed verification, a TLS alert
//!   or a timeout is never a reason: those are what an attacker or a broken TLS peer
//!   produce, not a legacy peer. Nor is anything from a peer this client has completed a
//!   TLS handshake with before ([`client_fallback`]): a server that speaks TLS does not
//!   forget it, so a reset or a clear answer from it is forged (HSTS reasons the same way).
//!
//! No I/O here; the front ends peek and reconnect.

use std::time::Duration;

use crate::error::{NegotiationError, Peer};

/// How long a listener with `ALLOW_INSECURE` waits for a client's first bytes before
/// deciding the client waits for the server to speak first (and serving it in clear).
/// A TLS client sends its ClientHello as soon as TCP connects.
pub const CLEAR_TEXT_WAIT: Duration = Duration::from_secs(1);

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// The start of a TLS handshake record carrying a ClientHello.
    ClientHello,
    /// Not TLS.
    NotTls,
    /// Too few bytes to tell; all of them are consistent with a ClientHello.
    NeedMore,
}

/// Classifies the first bytes a client sent: a TLS record header
/// (`0x16 0x03 0x00..=0x04 len_hi len_lo`) followed by handshake type 1 (ClientHello).
pub fn classify_first_bytes(bytes: &[u8]) -> FirstBytes {
    // handshake record, version 3.x (SSL 3.0 .. TLS 1.3), length at most 2^14 + 2048,
    // handshake type ClientHello.
    let expected = |i: usize, b: u8| match i {
        0 => b == 0x16,
        1 => b == 0x03,
        2 => b <= 0x04,
        3 => b <= 0x48,
        4 => true,
        _ => b == 0x01,
    };
    if bytes
        .iter()
        .take(6)
        .enumerate()
        .any(|(i, b)| !expected(i, *b))
    {
        FirstBytes::NotTls
    } else if bytes.len() >= 6 {
        FirstBytes::ClientHello
    } else {
        FirstBytes::NeedMore
    }
}

/// Whether a byte can start a TLS record (change_cipher_spec, alert, handshake,
/// application_data).
pub fn starts_tls_record(byte: u8) -> bool {
    (0x14..=0x17).contains(&byte)
}

/// Whether a client whose handshake failed with `error` may fall back to clear text,
/// given the first byte the server sent (`None`: the server sent nothing).
pub fn client_may_fall_back(error: &NegotiationError, first_server_byte: Option<u8>) -> bool {
    match (error, first_server_byte) {
        // It answered the ClientHello with something that is not TLS.
        (NegotiationError::PeerNotTls { .. }, Some(byte)) => !starts_tls_record(byte),
        // It closed (or reset) before sending a single byte.
        (NegotiationError::PeerClosed { .. }, None) => true,
        _ => false,
    }
}

/// What a client with `ALLOW_INSECURE` does after its handshake failed with `error`:
/// `Ok(reason)` to connect again in clear (the reason for the query), or `Err` with the
/// error to report. `spoke_tls_before`: this client completed a TLS handshake with the
/// same target at the same address before; then no failure is a reason to fall back, and
/// one that would have been is reported as [`NegotiationError::DowngradeRefused`].
pub fn client_fallback(
    error: NegotiationError,
    first_server_byte: Option<u8>,
    spoke_tls_before: bool,
) -> Result<NegotiationError, NegotiationError> {
    if !client_may_fall_back(&error, first_server_byte) {
        return Err(error);
    }
    if spoke_tls_before {
        let what = match error {
            NegotiationError::PeerClosed { .. } => {
                "closed the connection without answering our ClientHello"
            }
            _ => "answered our ClientHello with bytes that are not TLS",
        };
        return Err(NegotiationError::DowngradeRefused {
            detail: format!(
                "the server {what}, but it spoke TLS with us before at this address, and a \
                 server that speaks TLS does not forget it: the failure looks forged (a reset or \
                 an answer injected by a man in the middle)"
            ),
        });
    }
    Ok(client_fallback_reason(&error))
}

/// The reason a client fell back, for `SecurityInfo::negotiation_error`.
pub fn client_fallback_reason(error: &NegotiationError) -> NegotiationError {
    let detail = match error {
        NegotiationError::PeerClosed { .. } => {
            "it closed the connection without answering the TLS ClientHello; \
             connected again in clear text (ALLOW_INSECURE)"
        }
        _ => "it answered the TLS ClientHello with bytes that are not TLS; connected again in clear text (ALLOW_INSECURE)",
    };
    NegotiationError::PeerNotTls {
        peer: Peer::Server,
        detail: detail.to_string(),
    }
}

/// The reason a listener served a client in clear, for `SecurityInfo::negotiation_error`.
pub fn server_fallback_reason(sent_nothing: bool) -> NegotiationError {
    let detail = if sent_nothing {
        format!(
            "it sent nothing within {CLEAR_TEXT_WAIT:?} (it waits for the server to speak first); served in clear text (ALLOW_INSECURE)"
        )
    } else {
        "its first bytes are not a TLS ClientHello; served in clear text (ALLOW_INSECURE)"
            .to_string()
    };
    NegotiationError::PeerNotTls {
        peer: Peer::Client,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_table() {
        use FirstBytes::*;
        let cases: &[(&[u8], FirstBytes)] = &[
            (&[], NeedMore),
            (&[0x16], NeedMore),
            (&[0x16, 0x03, 0x01, 0x02, 0x00], NeedMore),
            (&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01], ClientHello),
            (
                &[0x16, 0x03, 0x03, 0x00, 0xc8, 0x01, 0x00, 0x00],
                ClientHello,
            ),
            (&[0x16, 0x03, 0x00, 0x00, 0x10, 0x01], ClientHello),
            (b"GET / HTTP/1.1\r\n", NotTls),
            (b"EHLO mail.example.test\r\n", NotTls),
            (&[0x16, 0x02], NotTls),
            (&[0x16, 0x03, 0x05], NotTls),
            (&[0x16, 0x03, 0x01, 0x49], NotTls),
            (&[0x16, 0x03, 0x01, 0x02, 0x00, 0x02], NotTls), // a ServerHello is not a ClientHello
            (&[0x17, 0x03, 0x03, 0x00, 0x10, 0x01], NotTls), // application data first
            (&[0x80, 0x2e, 0x01, 0x03, 0x01], NotTls),       // SSLv2-style hello: not accepted
        ];
        for (bytes, expected) in cases {
            assert_eq!(classify_first_bytes(bytes), *expected, "{bytes:02x?}");
        }
    }

    #[test]
    fn fallback_only_when_the_peer_plainly_does_not_speak_tls() {
        let not_tls = NegotiationError::PeerNotTls {
            peer: Peer::Server,
            detail: String::new(),
        };
        let closed = NegotiationError::PeerClosed { peer: Peer::Server };
        let cases = [
            (not_tls.clone(), Some(b'H'), true),
            (not_tls.clone(), Some(0x16), false), // TLS first, garbage later: not a legacy peer
            (not_tls, None, false),
            (closed.clone(), None, true),
            (closed, Some(0x16), false), // closed after TLS: refusal, not a legacy peer
            (
                NegotiationError::PeerNameMismatch {
                    expected: "a".into(),
                    presented: vec![],
                },
                Some(0x16),
                false,
            ),
            (
                NegotiationError::UntrustedChain {
                    peer: Peer::Server,
                    reason: String::new(),
                },
                Some(0x16),
                false,
            ),
            (
                NegotiationError::CertificateExpired {
                    peer: Peer::Server,
                    not_after: None,
                    now: None,
                },
                Some(0x16),
                false,
            ),
            (
                NegotiationError::Timeout {
                    after: Duration::from_secs(1),
                },
                None,
                false,
            ),
            (
                NegotiationError::PeerRefusedOurCertificate {
                    peer: Peer::Server,
                    alert: "x".into(),
                },
                Some(0x15),
                false,
            ),
            (
                NegotiationError::NoCommonCrypto {
                    peer: Peer::Server,
                    detail: String::new(),
                },
                Some(0x15),
                false,
            ),
        ];
        for (error, first, expected) in cases {
            assert_eq!(
                client_may_fall_back(&error, first),
                expected,
                "{error:?} after {first:?}"
            );
            assert_eq!(
                client_fallback(error.clone(), first, false).is_ok(),
                expected,
                "{error:?} after {first:?}"
            );
            // A peer known to speak TLS never gets clear text.
            match client_fallback(error.clone(), first, true) {
                Ok(reason) => panic!("fell back ({reason}) from a peer that spoke TLS"),
                Err(NegotiationError::DowngradeRefused { detail }) => {
                    assert!(expected, "{error:?}: {detail}");
                    assert!(detail.contains("spoke TLS with us before"), "{detail}");
                }
                Err(other) => assert_eq!(other, error),
            }
        }
    }
}
