//! Errors: what went wrong, with the facts a person needs to fix it.
//!
//! [`Error`] is what every fallible secsock call returns. Its variants separate the
//! caller's mistakes ([`UsageError`], bad settings, bad names), the platform's
//! configuration ([`PolicyError`]), the network ([`std::io::Error`]) and the peer
//! ([`NegotiationError`]: why securing the connection failed).

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime};

use crate::name::NameError;
use crate::policy::PolicyError;
use crate::settings::SettingsError;

/// Everything a secsock call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket or the network failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The security settings are invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A principal name could not be parsed.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The policy file is missing or wrong.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Securing the connection failed; no application byte was exchanged.
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    /// Calls were made in an order the API forbids.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The policy's credentials or crypto could not be turned into a TLS configuration.
    #[error("cannot build the TLS configuration from {policy}: {reason}")]
    Config {
        /// The policy file.
        policy: String,
        /// What rustls refused.
        reason: String,
    },
}

impl Error {
    /// The negotiation error, if this is one.
    pub fn negotiation(&self) -> Option<&NegotiationError> {
        match self {
            Error::Negotiation(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            Error::Negotiation(NegotiationError::Timeout { .. }) => {
                io::Error::new(io::ErrorKind::TimedOut, e)
            }
            Error::Negotiation(_) => io::Error::new(io::ErrorKind::PermissionDenied, e),
            Error::Usage(_) | Error::Settings(_) | Error::Name(_) => {
                io::Error::new(io::ErrorKind::InvalidInput, e)
            }
            Error::Policy(_) | Error::Config { .. } => io::Error::other(e),
        }
    }
}

/// A call made in an order the API forbids. Each message names the rule, as the Windows
/// error codes (`WSAEISCONN`, `WSAEINVAL`) do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// `set_security` was called a second time.
    #[error("set_security was already called on this socket: security is set once per socket, before bind or connect")]
    AlreadyConfigured,
    /// A call that must come before connect came after it.
    #[error("{call} must be called before connect: this socket is already connected")]
    AlreadyConnected {
        /// The call made too late.
        call: &'static str,
    },
    /// A call that must come before bind came after it.
    #[error("{call} must be called before bind: this socket is already bound to {addr}")]
    AlreadyBound {
        /// The call made too late.
        call: &'static str,
        /// Where the socket is bound.
        addr: String,
    },
    /// `connect` or `listen` without `set_security` first.
    #[error("{call} needs security turned on first: call set_security on this socket (SecuritySettings::new() for the policy's defaults)")]
    NotConfigured {
        /// The call made too early.
        call: &'static str,
    },
    /// `listen` on a socket that was not bound.
    #[error("listen needs a local address first: call bind")]
    NotBound,
    /// The call would start threads, and the calling thread is impersonating a peer: every
    /// thread it started would run as that peer (a new thread copies the creating thread's
    /// credentials), and could never revert.
    #[error(
        "{call} starts threads and must not be called from a thread that acts as a peer: {reason}"
    )]
    WouldSpawnImpersonated {
        /// The call.
        call: &'static str,
        /// Why the thread counts as impersonating.
        reason: String,
    },
    /// The peer address is of another family than the socket.
    #[error("cannot {call} {addr} with an {family} socket")]
    WrongFamily {
        /// The call.
        call: &'static str,
        /// The address given.
        addr: String,
        /// The socket's family.
        family: &'static str,
    },
}

/// Which side of the connection a fact is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The side that connected.
    Client,
    /// The side that accepted.
    Server,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Client => "client",
            Peer::Server => "server",
        })
    }
}

/// Why securing a connection failed (or, with optional name verification, what was
/// tolerated). Each variant carries what a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The peer's chain does not lead to one of the policy's trust anchors, or is malformed.
    #[error("the {peer}'s certificate is not trusted: {reason}")]
    UntrustedChain {
        /// Whose certificate.
        peer: Peer,
        /// Why (unknown issuer, bad signature, wrong key usage, ...).
        reason: String,
    },
    /// The peer's certificate (or one in its chain) has expired.
    #[error("the {peer}'s certificate expired{}", after_time(.not_after, .now))]
    CertificateExpired {
        /// Whose certificate.
        peer: Peer,
        /// When it expired, if known.
        not_after: Option<SystemTime>,
        /// The time used for the check.
        now: Option<SystemTime>,
    },
    /// The peer's certificate (or one in its chain) is not valid yet.
    #[error("the {peer}'s certificate is not valid yet{}", before_time(.not_before, .now))]
    CertificateNotYetValid {
        /// Whose certificate.
        peer: Peer,
        /// When it becomes valid, if known.
        not_before: Option<SystemTime>,
        /// The time used for the check.
        now: Option<SystemTime>,
    },
    /// The peer's certificate is on a CRL of the policy.
    #[error("the {peer}'s certificate has been revoked")]
    CertificateRevoked {
        /// Whose certificate.
        peer: Peer,
    },
    /// The peer proved names, but not the one the socket asked for.
    #[error("peer name mismatch: expected `{expected}`, the peer's certificate presents {}", presented_list(.presented))]
    PeerNameMismatch {
        /// The peer target name.
        expected: String,
        /// Every name the certificate presents, typed (`DNS:...`, `URI:...`).
        presented: Vec<String>,
    },
    /// The client proved its identity, but the listener's peer target names do not allow
    /// it to connect (from its address).
    #[error("the client's certificate presents {}, but only {} may connect from its address", presented_list(.presented), .allowed.join(", "))]
    PeerNotAllowed {
        /// The names the client's certificate presents.
        presented: Vec<String>,
        /// The names the listener allows from that address.
        allowed: Vec<String>,
    },
    /// The user (application) identity was not proven. Deliberately the same for a wrong
    /// password, an unknown user and an unacceptable user certificate: no oracle.
    #[error("user authentication failed{}", reason_suffix(.reason))]
    UserAuthenticationFailed {
        /// What the side that saw it may say: on the client, the server's reason (always
        /// generic); on the server, what went wrong, for its log.
        reason: String,
    },
    /// The listener requires a user identity and the client offered none.
    #[error("the server requires user authentication and the client offered none (give the client user credentials)")]
    UserAuthenticationRequired,
    /// Too many user authentications failed from the client's address within the
    /// listener's window (`[users] failures_per_address`, `failure_window`): this attempt
    /// was refused before its credentials were looked at, whatever they were. Not an
    /// oracle: it depends on the address only, never on the user.
    #[error("too many failed user authentications from this address: try again in {} s", .retry_after.as_secs().max(1))]
    UserAuthenticationThrottled {
        /// How long until the address may try again (rounded up to a second).
        retry_after: Duration,
    },
    /// The user-authentication exchange broke its protocol (malformed or unexpected message).
    #[error("user authentication protocol error from the {peer}: {detail}")]
    UserAuthenticationProtocol {
        /// The side that broke it.
        peer: Peer,
        /// What was wrong.
        detail: String,
    },
    /// The socket was set to `SKIP_ENFORCEMENT`: secsock did not secure it.
    #[error("SKIP_ENFORCEMENT: secsock did not secure this connection; it is protected only if a system policy (IPsec, WireGuard, a secsock proxy) covers it, which secsock cannot see")]
    EnforcementSkipped,
    /// The client connected without a certificate; mutual authentication is required.
    #[error("the client presented no certificate: secsock requires mutual authentication")]
    PeerSentNoCertificate,
    /// The peer rejected our certificate (it sent a certificate-related alert).
    #[error("the {peer} refused our certificate ({alert}): {}", refusal_hint(.alert))]
    PeerRefusedOurCertificate {
        /// Who refused.
        peer: Peer,
        /// The TLS alert it sent.
        alert: String,
    },
    /// No protocol version, cipher suite or key exchange group in common.
    #[error("no common crypto with the {peer}: {detail}")]
    NoCommonCrypto {
        /// The other side.
        peer: Peer,
        /// What did not match.
        detail: String,
    },
    /// The peer answered with bytes that are not TLS.
    #[error("the {peer} does not speak TLS: {detail}")]
    PeerNotTls {
        /// The other side.
        peer: Peer,
        /// What it sent instead.
        detail: String,
    },
    /// `ALLOW_INSECURE` would have fallen back to clear text, but this client completed a
    /// TLS handshake with the same target at the same address before: a server that speaks
    /// TLS does not forget it, so the failure (a reset, a clear answer) is taken as forged.
    #[error("refusing to fall back to clear text: {detail}")]
    DowngradeRefused {
        /// What happened, and why it is not believed.
        detail: String,
    },
    /// The peer closed the connection during the handshake without saying why.
    #[error("the {peer} closed the connection during the handshake")]
    PeerClosed {
        /// The other side.
        peer: Peer,
    },
    /// The handshake did not finish in time.
    #[error("the handshake did not complete within {after:?} (the policy's handshake_timeout)")]
    Timeout {
        /// The limit that was reached.
        after: Duration,
    },
    /// Any other TLS protocol failure.
    #[error("TLS handshake with the {peer} failed: {detail}")]
    Protocol {
        /// The other side.
        peer: Peer,
        /// What rustls reported.
        detail: String,
    },
}

pub(crate) fn format_system_time(t: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(t);
    odt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

fn after_time(not_after: &Option<SystemTime>, now: &Option<SystemTime>) -> String {
    match (not_after, now) {
        (Some(a), Some(n)) => format!(
            " at {} (now {})",
            format_system_time(*a),
            format_system_time(*n)
        ),
        (Some(a), None) => format!(" at {}", format_system_time(*a)),
        _ => String::new(),
    }
}

fn before_time(not_before: &Option<SystemTime>, now: &Option<SystemTime>) -> String {
    match (not_before, now) {
        (Some(b), Some(n)) => format!(
            ": valid from {} (now {})",
            format_system_time(*b),
            format_system_time(*n)
        ),
        (Some(b), None) => format!(": valid from {}", format_system_time(*b)),
        _ => String::new(),
    }
}

/// What a certificate-related alert from the peer most likely means.
fn refusal_hint(alert: &str) -> &'static str {
    match alert.strip_prefix("alert ").unwrap_or(alert) {
        "unknown_ca" => "it does not trust the CA that issued this host's identity",
        "certificate_expired" => {
            "it considers our certificate expired or not yet valid (check it, and both clocks)"
        }
        "certificate_revoked" => "our certificate is on its revocation list",
        "certificate_required" => "it requires a client certificate",
        "access_denied" => "it does not allow this host's identity",
        "decrypt_error" => "our handshake signature did not verify",
        "unsupported_certificate" => "our certificate is not valid for this use (key usage)",
        _ => "it rejected our certificate, for example because it expected another name",
    }
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

fn presented_list(presented: &[String]) -> String {
    if presented.is_empty() {
        "no names".to_string()
    } else {
        presented.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_facts() {
        let e = NegotiationError::PeerNameMismatch {
            expected: "host/server.example.test".into(),
            presented: vec![
                "DNS:other.example.test".into(),
                "URI:spiffe://example.test/x".into(),
            ],
        };
        assert_eq!(
            e.to_string(),
            "peer name mismatch: expected `host/server.example.test`, the peer's certificate presents DNS:other.example.test, URI:spiffe://example.test/x"
        );
        let e = NegotiationError::CertificateExpired {
            peer: Peer::Server,
            not_after: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86400)),
            now: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2 * 86400)),
        };
        assert_eq!(
            e.to_string(),
            "the server's certificate expired at 1970-01-02T00:00:00Z (now 1970-01-03T00:00:00Z)"
        );
        let e = Error::from(UsageError::AlreadyConnected {
            call: "set_peer_target_name",
        });
        assert!(e
            .to_string()
            .contains("set_peer_target_name must be called before connect"));
    }

    #[test]
    fn io_error_kinds() {
        let timeout: io::Error = Error::from(NegotiationError::Timeout {
            after: Duration::from_secs(1),
        })
        .into();
        assert_eq!(timeout.kind(), io::ErrorKind::TimedOut);
        let refused: io::Error = Error::from(NegotiationError::PeerSentNoCertificate).into();
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
    }
}
