//! SCRAM-SHA-256-PLUS: the password mechanism of the user-authentication step.
//!
//! After the TLS 1.3 handshake has proven both machines, a peer may prove *who runs the
//! application* with a user name and a password. secsock does that with SCRAM-SHA-256-PLUS
//! (RFC 5802, RFC 7677), run inside the TLS channel and bound to it with the `tls-exporter`
//! channel binding (RFC 9266): the client's proof covers the connection's exporter value,
//! so a proof captured by a man in the middle cannot be replayed on another connection.
//! The server keeps only a salted [`Verifier`] per user, never a password.
//!
//! This module is the pure protocol: message building, parsing and checking, as state
//! machines ([`Client`], [`Server`]) fed one text message and answering with the next. It
//! does no I/O, no framing and no transport, does not fetch the exporter value (the caller
//! passes it in) and does not read the users file; it never panics on peer input: every
//! failure is a [`ScramError`].
//!
//! Only the `-PLUS` variant is spoken: a client always sends the GS2 header
//! `p=tls-exporter,,`, and a server refuses `n,,` / `y,,` (no or unused channel binding).
//! Unknown users get a decoy verifier ([`Verifier::decoy`]), so the exchange fails only at
//! the proof and the client cannot tell an unknown user from a wrong password.
//!
//! ```
//! use secsock::scram::{Client, Server, Verifier};
//! # fn main() -> Result<(), secsock::scram::ScramError> {
//! // Test-only randomness and a small iteration count; use a CSPRNG and the default.
//! let random = |buf: &mut [u8]| buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
//! let binding = [7u8; 32]; // both sides' tls-exporter value of the same TLS connection
//! let stored = Verifier::generate("pencil", 4096, &random)?;
//!
//! let mut client = Client::new("alice@EXAMPLE.TEST", "pencil", &binding, &random)?;
//! let mut server = Server::new(&binding, b"server-wide decoy secret", &random)?;
//! let lookup = |user: &str| (user == "alice@EXAMPLE.TEST").then(|| stored.clone());
//!
//! let server_first = server.handle_client_first(&client.client_first(), &lookup)?;
//! let client_final = client.handle_server_first(&server_first)?;
//! let (server_final, user) = server.handle_client_final(&client_final)?;
//! client.handle_server_final(&server_final)?; // the server proved it knows the verifier
//! assert_eq!(user, "alice@EXAMPLE.TEST");
//! # Ok(()) }
//! ```

//!
//! The files: `verifier` ([`Verifier`]: what a server stores), `client` ([`Client`]),
//! `server` ([`Server`]), and the pieces they share: `primitives` (PBKDF2, HMAC, SASLprep,
//! the parameter checks, nonces) and `message` (RFC 5802's message grammar).

mod client;
mod message;
mod primitives;
mod server;
mod verifier;

pub use client::Client;
pub use server::Server;
pub use verifier::Verifier;

use rustls::crypto::SecureRandom;

/// The SASL mechanism name (RFC 7677 §4, with channel binding).
pub const MECHANISM: &str = "SCRAM-SHA-256-PLUS";

/// The channel binding type (RFC 9266): the TLS 1.3 exporter with label
/// `EXPORTER-Channel-Binding`, empty context, 32 bytes.
pub const CHANNEL_BINDING: &str = "tls-exporter";

/// The PBKDF2-HMAC-SHA256 iteration count for new verifiers: 600,000, OWASP's current
/// recommendation for PBKDF2-HMAC-SHA256 (Password Storage Cheat Sheet). In SCRAM the
/// client pays it once per authentication; the server pays it only when a verifier is made.
pub const DEFAULT_ITERATIONS: u32 = 600_000;

/// The fewest iterations either side accepts (RFC 7677 §4: 4096 at least).
pub const MIN_ITERATIONS: u32 = 4096;

/// The most iterations a client computes: bounds the work a malicious server can impose
/// (about 17 times the default).
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// The shortest salt accepted, in bytes; new verifiers get exactly this many random bytes.
pub const MIN_SALT_LEN: usize = 16;

/// The longest SCRAM message either side accepts, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Random bytes in a nonce; base64 makes 32 printable characters without `,`.
const NONCE_LEN: usize = 24;

/// The GS2 header of every production client-first message.
const GS2_HEADER_PLUS: &str = "p=tls-exporter,,";

/// The prefix of a verifier's text form (PostgreSQL's `pg_authid.rolpassword` format).
const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";

/// Why a SCRAM exchange, or making or reading a verifier, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// A message or verifier text does not follow the grammar; the text names the field
    /// (e.g. `"s: not base64"`). Also used for calls in the wrong order and for a
    /// user name that SASLprep refuses.
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// The client's `c=` attribute does not carry this connection's channel binding: the
    /// proof was made for another TLS connection (a relayed authentication).
    #[error("SCRAM channel binding does not match this TLS connection")]
    ChannelBindingMismatch,
    /// The client did not ask for `tls-exporter` channel binding (it sent `n` or `y`, or
    /// another binding type), or a side was given an empty binding value; secsock
    /// requires channel binding.
    #[error("SCRAM without tls-exporter channel binding is refused")]
    ChannelBindingNotSupported,
    /// The client's proof is wrong: a wrong password *or* an unknown user (one variant,
    /// so that nobody learns which).
    #[error("user authentication failed")]
    AuthenticationFailed,
    /// The server's signature (`v=`) is wrong: the server does not hold this user's
    /// verifier (client side; mutual authentication failed).
    #[error("the server's SCRAM signature is wrong: it does not know this user's verifier")]
    ServerSignatureMismatch,
    /// SASLprep (RFC 4013) refuses the password; the text says why, without echoing it.
    #[error("invalid password: {0}")]
    InvalidPassword(String),
    /// Parameters outside what this side accepts: fewer than [`MIN_ITERATIONS`]
    /// iterations, a salt shorter than [`MIN_SALT_LEN`], or (client side) more than
    /// [`MAX_ITERATIONS`].
    #[error("SCRAM parameters refused: {0}")]
    WeakParameters(String),
    /// The random source failed ([`RandomSource`]): no nonce, salt or secret is made
    /// without random bytes.
    #[error("the random number generator failed")]
    RandomFailed,
    /// (Client side) the server asks for more PBKDF2 iterations than this client computes
    /// ([`Client::with_max_iterations`]): a server must not be able to spend the client's
    /// CPU at will.
    #[error("the server asks for {iterations} PBKDF2 iterations, more than the {limit} this client computes")]
    TooManyIterations {
        /// What the server asked for.
        iterations: u32,
        /// This client's limit.
        limit: u32,
    },
}

impl ScramError {
    /// The RFC 5802 `server-error` message (`e=...`) a server may send instead of a
    /// server-final message when [`Server::handle_client_final`] or
    /// [`Server::handle_client_first`] fails. Unknown users and wrong passwords both give
    /// `e=invalid-proof`.
    pub fn server_error_message(&self) -> String {
        let value = match self {
            ScramError::Malformed(_) => "invalid-encoding",
            ScramError::ChannelBindingMismatch => "channel-bindings-dont-match",
            ScramError::ChannelBindingNotSupported => "server-does-support-channel-binding",
            ScramError::AuthenticationFailed => "invalid-proof",
            ScramError::ServerSignatureMismatch
            | ScramError::InvalidPassword(_)
            | ScramError::WeakParameters(_)
            | ScramError::RandomFailed
            | ScramError::TooManyIterations { .. } => "other-error",
        };
        format!("e={value}")
    }
}

fn malformed(what: impl Into<String>) -> ScramError {
    ScramError::Malformed(what.into())
}

/// Where SCRAM takes its random bytes (nonces, salts): a cryptographic random source.
///
/// A crypto provider's `secure_random` (rustls's [`SecureRandom`]) is one, and its
/// failure is an error ([`ScramError::RandomFailed`]): a nonce or salt is never left
/// zero. A function that fills the buffer is one too, for deterministic tests; it cannot
/// fail, so it must be infallible.
pub trait RandomSource {
    /// Fills `buf` with random bytes.
    ///
    /// # Errors
    ///
    /// [`ScramError::RandomFailed`] when the source cannot.
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), ScramError>;
}

impl RandomSource for dyn SecureRandom {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), ScramError> {
        self.fill(buf).map_err(|_| ScramError::RandomFailed)
    }
}

impl<F: Fn(&mut [u8])> RandomSource for F {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), ScramError> {
        self(buf);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
