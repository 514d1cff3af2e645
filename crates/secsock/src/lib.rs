//! secsock: secure socket extensions for Rust on Linux.
//!
//! An application takes an ordinary TCP socket, asks the platform to secure it, names the
//! peer it expects, and afterwards asks who the peer turned out to be. The platform
//! (this crate and its policy file), not the application, owns the credentials, the trust
//! anchors, the crypto choices and the enforcement. It is the model of the Windows Winsock
//! Secure Socket Extensions (`WSASetSocketSecurity`, `WSASetSocketPeerTargetName`,
//! `WSAQuerySocketSecurity`, ...), rebuilt on TLS 1.3 (rustls) with mutual authentication.
//!
//! ```no_run
//! use secsock::{Domain, PeerTargetName, SecureSocket, SecurityFlags, SecuritySettings};
//! use std::io::{Read, Write};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut socket = SecureSocket::new(Domain::IPV4)?;
//! socket.set_security(&SecuritySettings::new().with_flags(SecurityFlags::GUARANTEE_ENCRYPTION))?;
//! socket.set_peer_target_name(PeerTargetName::parse("host/server.example.test")?)?;
//! let mut stream = socket.connect("127.0.0.1:27015".parse()?)?;
//! stream.write_all(b"12345678")?;
//! let info = stream.query_security();
//! println!("peer proved {:?}", info.peer_machine.map(|m| m.names));
//! let mut reply = [0u8; 8];
//! stream.read_exact(&mut reply)?;
//! stream.close()?;
//! # Ok(()) }
//! ```
//!
//! Module map (each replaces one Windows concept):
//! - [`settings`]: `SOCKET_SECURITY_SETTINGS` — what a socket asks for, validated.
//! - [`name`]: SPNs and other principal names, and how a certificate proves them.
//! - [`policy`]: the policy file — identity, trust anchors, crypto policies.
//! - [`verify`]: chain validation and name matching (the keying module's authentication);
//!   [`crl`]: the freshness of its CRLs.
//! - [`info`]: `SOCKET_SECURITY_QUERY_INFO` — what a connection got.
//! - [`socket`], [`stream`], [`listener`]: the blocking front end.
//! - `tokio` (feature `tokio`): the async front end, the same names.
//! - [`scram`], [`users`]: user (application) authentication after the handshake.
//! - [`impersonate`]: `WSAImpersonateSocketPeer` — acting as the peer's local account;
//!   [`accounts`]: the policy's rules mapping principals to local accounts.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod accounts;
pub mod blocking;
pub mod core;
pub mod crl;
pub mod error;
pub mod impersonate;
pub mod info;
pub mod name;
pub mod peers;
pub mod platform;
pub mod policy;
#[cfg(test)]
mod proptests;
pub mod settings;
mod setup;
mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod user;
pub mod verify;

// The public paths of the modules that moved into `core`, `blocking` and `user`.
pub use blocking::{listener, socket, stream};
pub use core::{fallback, handshakes};
pub use user::{scram, users};

pub use error::{Error, NegotiationError, UsageError};
pub use info::{InfoFlags, PeerIdentity, ProofMethod, SecurityInfo};
pub use listener::{PendingStream, SecureListener};
pub use name::{NameError, PeerTargetName, PrincipalName};
pub use peers::AddressPrefix;
pub use platform::Platform;
pub use policy::{Policy, PolicyError};
pub use settings::{
    CryptoPolicyKey, OptionFlags, SecurityFlags, SecurityProtocol, SecuritySettings, SettingsError,
};
pub use socket::SecureSocket;
pub use socket2::Domain;
pub use stream::SecureStream;
