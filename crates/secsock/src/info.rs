//! What a connection got: the equivalent of Windows' `SOCKET_SECURITY_QUERY_INFO` (and its
//! IPSEC2 extension), answered by [`SecureStream::query_security`](crate::SecureStream::query_security).
//!
//! Pure data. It is built once, when the handshake completes, from what the TLS layer
//! negotiated and what the verifier proved.

use std::fmt;
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::error::{format_system_time, NegotiationError};
use crate::name::PrincipalName;

/// `SOCKET_INFO_CONNECTION_*` flags: what protected the connection. A [`bitflags`] set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InfoFlags(u32);

bitflags::bitflags! {
    impl InfoFlags: u32 {
        /// `SOCKET_INFO_CONNECTION_SECURED` (0x1): a security protocol protects the connection.
        const SECURED = 0x1;
        /// `SOCKET_INFO_CONNECTION_ENCRYPTED` (0x2): the traffic is encrypted; always with `SECURED`.
        const ENCRYPTED = 0x2;
        /// `SOCKET_INFO_CONNECTION_IMPERSONATED` (0x4): the peer proved an application (user)
        /// identity, so impersonation is possible.
        const IMPERSONATED = 0x4;
    }
}

impl fmt::Debug for InfoFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("(none)")
        } else {
            bitflags::parser::to_writer(self, f)
        }
    }
}

/// How an identity was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProofMethod {
    /// The peer signed the handshake with the key of a certificate whose chain was
    /// validated against the policy's trust anchors.
    Certificate,
    /// The connection resumed an earlier session; the certificate chain stored with it
    /// was validated again, against the current anchors and target name.
    ResumedSession,
    /// User name and password, with SCRAM-SHA-256-PLUS bound to this connection
    /// (RFC 9266 `tls-exporter`).
    Password,
    /// A user certificate whose chain was validated against the policy's anchors and whose
    /// key signed this connection's channel binding.
    UserCertificate,
}

impl ProofMethod {
    fn as_str(self) -> &'static str {
        match self {
            ProofMethod::Certificate => "certificate",
            ProofMethod::ResumedSession => "resumed session",
            ProofMethod::Password => "password (SCRAM-SHA-256-PLUS, channel-bound)",
            ProofMethod::UserCertificate => "user certificate (channel-bound signature)",
        }
    }
}

/// One proven identity of the peer (Windows returns these as access tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Every principal name the identity proves, in canonical form.
    pub names: Vec<PrincipalName>,
    /// The certificate chain, leaf first, as the peer presented it (DER); empty for an
    /// identity proven without a certificate (a password).
    pub chain: Vec<CertificateDer<'static>>,
    /// Start of the leaf certificate's validity (none without a certificate).
    pub not_before: Option<SystemTime>,
    /// End of the leaf certificate's validity (none without a certificate).
    pub not_after: Option<SystemTime>,
    /// The leaf certificate's subject, as a distinguished name string (empty without a
    /// certificate).
    pub subject: String,
    /// How it was proven.
    pub proven_by: ProofMethod,
}

/// A 128-bit identifier, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id128(pub u128);

impl fmt::Display for Id128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Id128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The negotiated key exchange group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchange {
    /// The IANA name, e.g. `X25519MLKEM768`.
    pub name: String,
    /// Whether the group includes a post-quantum KEM (ML-KEM), alone or as a hybrid.
    pub post_quantum: bool,
}

impl fmt::Display for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.post_quantum {
            write!(f, "{} (post-quantum hybrid)", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// What a connection got (`WSAQuerySocketSecurity`). The default is a connection in clear
/// text, with nothing proven.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityInfo {
    /// SECURED, ENCRYPTED, IMPERSONATED.
    pub flags: InfoFlags,
    /// The peer machine's proven identity.
    pub peer_machine: Option<PeerIdentity>,
    /// The peer application's (user's) proven identity, when it proved one.
    pub peer_application: Option<PeerIdentity>,
    /// `TLSv1.3`.
    pub protocol_version: Option<String>,
    /// The IANA name of the cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: Option<String>,
    /// The key exchange group.
    pub key_exchange_group: Option<KeyExchange>,
    /// Whether the connection resumed an earlier session.
    pub resumed: bool,
    /// The ALPN protocol, if one was negotiated.
    pub alpn: Option<Vec<u8>>,
    /// Identifies the TLS session on this side (like the main-mode SA id): the same for
    /// every connection resumed from it. Local, like Windows' SA ids: the two peers'
    /// values differ.
    pub session_id: Option<Id128>,
    /// Identifies this connection on this side (like the quick-mode SA id).
    pub connection_id: Option<Id128>,
    /// Why the connection is less than fully verified (optional name verification that
    /// failed) or, later, why it fell back to clear text.
    pub negotiation_error: Option<NegotiationError>,
}

impl SecurityInfo {
    /// Whether the connection is secured.
    pub fn is_secured(&self) -> bool {
        self.flags.contains(InfoFlags::SECURED)
    }

    /// Whether the connection is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.flags.contains(InfoFlags::ENCRYPTED)
    }
}

struct IdentityJson<'a>(&'a PeerIdentity);

impl Serialize for IdentityJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let id = self.0;
        let mut map = s.serialize_map(Some(5))?;
        let names: Vec<String> = id.names.iter().map(|n| n.to_string()).collect();
        map.serialize_entry("names", &names)?;
        map.serialize_entry("subject", &id.subject)?;
        map.serialize_entry("not_before", &id.not_before.map(format_system_time))?;
        map.serialize_entry("not_after", &id.not_after.map(format_system_time))?;
        map.serialize_entry("proven_by", id.proven_by.as_str())?;
        map.end()
    }
}

/// The JSON form used by `secsock query --json` and `secsock serve --json`: keys
/// `secured`, `encrypted`, `impersonated`, `peer_machine` (`names`, `subject`,
/// `not_before`, `not_after`, `proven_by`), `peer_application`, `protocol_version`,
/// `cipher_suite`, `key_exchange_group`, `post_quantum`, `resumed`, `alpn`, `session_id`,
/// `connection_id`, `negotiation_error`.
impl Serialize for SecurityInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("secured", &self.is_secured())?;
        map.serialize_entry("encrypted", &self.is_encrypted())?;
        map.serialize_entry(
            "impersonated",
            &self.flags.contains(InfoFlags::IMPERSONATED),
        )?;
        map.serialize_entry(
            "peer_machine",
            &self.peer_machine.as_ref().map(IdentityJson),
        )?;
        map.serialize_entry(
            "peer_application",
            &self.peer_application.as_ref().map(IdentityJson),
        )?;
        map.serialize_entry("protocol_version", &self.protocol_version)?;
        map.serialize_entry("cipher_suite", &self.cipher_suite)?;
        map.serialize_entry(
            "key_exchange_group",
            &self.key_exchange_group.as_ref().map(|k| &k.name),
        )?;
        map.serialize_entry(
            "post_quantum",
            &self.key_exchange_group.as_ref().map(|k| k.post_quantum),
        )?;
        map.serialize_entry("resumed", &self.resumed)?;
        map.serialize_entry(
            "alpn",
            &self
                .alpn
                .as_ref()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
        )?;
        map.serialize_entry("session_id", &self.session_id.map(|i| i.to_string()))?;
        map.serialize_entry("connection_id", &self.connection_id.map(|i| i.to_string()))?;
        map.serialize_entry(
            "negotiation_error",
            &self.negotiation_error.as_ref().map(|e| e.to_string()),
        )?;
        map.end()
    }
}

impl fmt::Display for SecurityInfo {
    /// A short human summary, one fact per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "flags:         {:?}", self.flags)?;
        match &self.peer_machine {
            Some(id) => {
                let names: Vec<String> = id.names.iter().map(|n| n.to_string()).collect();
                writeln!(
                    f,
                    "peer machine:  {} (proven by {})",
                    names.join(", "),
                    id.proven_by.as_str()
                )?;
                if let (Some(from), Some(until)) = (id.not_before, id.not_after) {
                    writeln!(
                        f,
                        "  valid:       {} .. {}",
                        format_system_time(from),
                        format_system_time(until)
                    )?;
                }
            }
            None => writeln!(f, "peer machine:  (none)")?,
        }
        if let Some(id) = &self.peer_application {
            let names: Vec<String> = id.names.iter().map(|n| n.to_string()).collect();
            writeln!(
                f,
                "peer user:     {} (proven by {})",
                names.join(", "),
                id.proven_by.as_str()
            )?;
        }
        let none = || "(none)".to_string();
        writeln!(
            f,
            "protocol:      {}",
            self.protocol_version.clone().unwrap_or_else(none)
        )?;
        writeln!(
            f,
            "cipher suite:  {}",
            self.cipher_suite.clone().unwrap_or_else(none)
        )?;
        writeln!(
            f,
            "key exchange:  {}",
            self.key_exchange_group
                .as_ref()
                .map(|k| k.to_string())
                .unwrap_or_else(none)
        )?;
        writeln!(
            f,
            "resumed:       {}",
            if self.resumed { "yes" } else { "no" }
        )?;
        if let Some(id) = self.session_id {
            writeln!(f, "session id:    {id}")?;
        }
        if let Some(id) = self.connection_id {
            writeln!(f, "connection id: {id}")?;
        }
        if let Some(e) = &self.negotiation_error {
            writeln!(f, "negotiation:   {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_flags_keep_the_windows_bits_and_print_their_names() {
        let flags = InfoFlags::SECURED | InfoFlags::ENCRYPTED;
        assert_eq!(flags.bits(), 0x3);
        assert!(flags.contains(InfoFlags::ENCRYPTED));
        assert!(!flags.contains(InfoFlags::IMPERSONATED));
        assert_eq!(format!("{flags:?}"), "SECURED | ENCRYPTED");
        assert_eq!(format!("{:?}", InfoFlags::empty()), "(none)");
        assert_eq!(InfoFlags::IMPERSONATED.bits(), 0x4);
    }
}
