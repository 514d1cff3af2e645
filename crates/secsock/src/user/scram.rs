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
//! let mut server = Server::new(&binding, b"server-wide decoy secret", &random);
//! let lookup = |user: &str| (user == "alice@EXAMPLE.TEST").then(|| stored.clone());
//!
//! let server_first = server.handle_client_first(&client.client_first(), &lookup)?;
//! let client_final = client.handle_server_first(&server_first)?;
//! let (server_final, user) = server.handle_client_final(&client_final)?;
//! client.handle_server_final(&server_final)?; // the server proved it knows the verifier
//! assert_eq!(user, "alice@EXAMPLE.TEST");
//! # Ok(()) }
//! ```

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
            | ScramError::TooManyIterations { .. } => "other-error",
        };
        format!("e={value}")
    }
}

fn malformed(what: impl Into<String>) -> ScramError {
    ScramError::Malformed(what.into())
}

// ---------------------------------------------------------------------------------------
// Primitives

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of every length (long keys are hashed), so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The keys RFC 5802 §3 derives from a password.
struct Keys {
    client_key: [u8; 32],
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

fn derive_keys(prepared_password: &str, salt: &[u8], iterations: u32) -> Keys {
    let mut salted_password = [0u8; 32];
    // aws-lc's PBKDF2, compiled C: a debug build derives the default 600,000 rounds in a
    // fraction of a second (the generic Rust code, instantiated unoptimised here, took
    // seconds, and every unknown user's decoy challenge asks for the default count).
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN),
        salt,
        prepared_password.as_bytes(),
        &mut salted_password,
    );
    let client_key = hmac_sha256(&salted_password, &[b"Client Key"]);
    let server_key = hmac_sha256(&salted_password, &[b"Server Key"]);
    wipe(&mut salted_password);
    Keys {
        client_key,
        stored_key: sha256(&client_key),
        server_key,
    }
}

/// Best-effort erasure of secret bytes (no `unsafe` here, so no volatile write; the
/// `black_box` keeps the compiler from dropping the stores as dead).
fn wipe(bytes: &mut [u8]) {
    bytes.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(bytes);
}

fn wipe_string(text: &mut String) {
    let mut bytes = std::mem::take(text).into_bytes();
    wipe(&mut bytes);
}

fn saslprep_password(password: &str) -> Result<String, ScramError> {
    match stringprep::saslprep(password) {
        Ok(prepared) if prepared.is_empty() => {
            Err(ScramError::InvalidPassword("empty".to_string()))
        }
        Ok(prepared) => Ok(prepared.into_owned()),
        // stringprep's message names the offending character; a password's characters
        // must not end up in logs, so only the kind of problem is reported.
        Err(error) if error.to_string().starts_with("prohibited character") => {
            Err(ScramError::InvalidPassword(
                "contains a character SASLprep prohibits (control, private-use, unassigned, ...)"
                    .to_string(),
            ))
        }
        Err(error) => Err(ScramError::InvalidPassword(format!("SASLprep: {error}"))),
    }
}

fn saslprep_user(user: &str) -> Result<String, ScramError> {
    match stringprep::saslprep(user) {
        Ok(prepared) if prepared.is_empty() => Err(malformed("n: empty user name")),
        Ok(prepared) => Ok(prepared.into_owned()),
        Err(error) => Err(malformed(format!(
            "n: user name refused by SASLprep: {}",
            error.to_string().escape_debug()
        ))),
    }
}

fn check_iterations(iterations: u32) -> Result<(), ScramError> {
    if iterations < MIN_ITERATIONS {
        return Err(ScramError::WeakParameters(format!(
            "{iterations} iterations, fewer than the minimum {MIN_ITERATIONS}"
        )));
    }
    if iterations > MAX_ITERATIONS {
        return Err(ScramError::WeakParameters(format!(
            "{iterations} iterations, more than the {MAX_ITERATIONS} a client will compute"
        )));
    }
    Ok(())
}

fn check_salt(salt: &[u8]) -> Result<(), ScramError> {
    if salt.len() < MIN_SALT_LEN {
        return Err(ScramError::WeakParameters(format!(
            "salt of {} bytes, shorter than the minimum {MIN_SALT_LEN}",
            salt.len()
        )));
    }
    Ok(())
}

fn new_nonce(random: &dyn Fn(&mut [u8])) -> String {
    let mut bytes = [0u8; NONCE_LEN];
    random(&mut bytes);
    BASE64.encode(bytes)
}

// ---------------------------------------------------------------------------------------
// Message grammar (RFC 5802 §7)

fn check_len(message: &str, which: &str) -> Result<(), ScramError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(malformed(format!(
            "{which}: {} bytes, more than {MAX_MESSAGE_LEN}",
            message.len()
        )));
    }
    Ok(())
}

/// The value of `field` if it is the attribute `name=`.
fn attribute<'a>(field: Option<&'a str>, name: char, what: &str) -> Result<&'a str, ScramError> {
    let field = field.ok_or_else(|| malformed(format!("{name}: missing ({what})")))?;
    let mut chars = field.chars();
    if chars.next() == Some(name) && chars.next() == Some('=') {
        Ok(&field[2..])
    } else if field.starts_with("m=") {
        Err(malformed("m: mandatory extensions are not supported"))
    } else {
        Err(malformed(format!(
            "{name}: expected {what} (`{name}=`), found `{}`",
            shorten(field)
        )))
    }
}

/// The rest of a message after its mandatory attributes: optional extensions
/// (`x=value`, ignored as RFC 5802 allows), which must still be well formed.
fn check_extensions<'a>(rest: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for field in rest {
        let bytes = field.as_bytes();
        if field.starts_with("m=") {
            return Err(malformed("m: mandatory extensions are not supported"));
        }
        if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
            return Err(malformed(format!(
                "extension: `{}` is not an attribute",
                shorten(field)
            )));
        }
    }
    Ok(())
}

/// At most 40 characters of peer text, for error messages.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    short.escape_debug().to_string()
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E.
fn check_nonce(nonce: &str, what: &str) -> Result<(), ScramError> {
    if nonce.is_empty() {
        return Err(malformed(format!("r: empty {what}")));
    }
    if !nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed(format!(
            "r: {what} has a non-printable character"
        )));
    }
    Ok(())
}

fn decode_base64(value: &str, field: &str) -> Result<Vec<u8>, ScramError> {
    BASE64
        .decode(value)
        .map_err(|_| malformed(format!("{field}: not base64")))
}

fn decode_key(value: &str, field: &str) -> Result<[u8; 32], ScramError> {
    let bytes = decode_base64(value, field)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| malformed(format!("{field}: {} bytes, expected 32", bytes.len())))
}

fn parse_iterations(value: &str) -> Result<u32, ScramError> {
    let digits_only = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || value.starts_with('0') {
        return Err(malformed(format!(
            "i: `{}` is not an iteration count",
            shorten(value)
        )));
    }
    value
        .parse::<u32>()
        .map_err(|_| malformed("i: iteration count out of range"))
}

/// RFC 5802 `saslname`: `,` and `=` escaped as `=2C` and `=3D`.
fn encode_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => {
                return Err(malformed(
                    "n: `=` not followed by 2C or 3D in the user name",
                ))
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.contains('\0') {
        return Err(malformed("n: NUL in the user name"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Verifier

/// A stored verifier: what the server keeps instead of a password (RFC 5802
/// `StoredKey` = H(HMAC(SaltedPassword, "Client Key")) and `ServerKey` =
/// HMAC(SaltedPassword, "Server Key"), with SaltedPassword = PBKDF2-HMAC-SHA256).
///
/// Who holds a verifier can act as the server towards this user, and can run a
/// dictionary attack on the password, but cannot log in as the user. Its `Debug` output
/// leaves the keys out.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// The salt (16 random bytes for verifiers made here).
    pub salt: Vec<u8>,
    /// `StoredKey`: checks the client's proof.
    pub stored_key: [u8; 32],
    /// `ServerKey`: signs the server-final message.
    pub server_key: [u8; 32],
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .field("salt", &BASE64.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier of `password` with this salt and iteration count. The password is
    /// prepared with SASLprep (RFC 4013) first; the salt must have at least
    /// [`MIN_SALT_LEN`] bytes and the count lie in [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn new(password: &str, salt: &[u8], iterations: u32) -> Result<Verifier, ScramError> {
        check_salt(salt)?;
        check_iterations(iterations)?;
        let mut prepared = saslprep_password(password)?;
        let mut keys = derive_keys(&prepared, salt, iterations);
        wipe_string(&mut prepared);
        wipe(&mut keys.client_key);
        Ok(Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        })
    }

    /// A new verifier for `password` with a fresh salt of [`MIN_SALT_LEN`] bytes from
    /// `random` (which must be a cryptographic random source).
    pub fn generate(
        password: &str,
        iterations: u32,
        random: &dyn Fn(&mut [u8]),
    ) -> Result<Verifier, ScramError> {
        let mut salt = [0u8; MIN_SALT_LEN];
        random(&mut salt);
        Verifier::new(password, &salt, iterations)
    }

    /// The text form, PostgreSQL's:
    /// `SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>`.
    pub fn to_text(&self) -> String {
        format!(
            "{VERIFIER_PREFIX}{}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }

    /// Reads the text form written by [`Verifier::to_text`] (and by PostgreSQL).
    /// Weak parameters (few iterations, short salt) are refused here already.
    pub fn parse(text: &str) -> Result<Verifier, ScramError> {
        let body = text
            .strip_prefix(VERIFIER_PREFIX)
            .ok_or_else(|| malformed("verifier: does not start with `SCRAM-SHA-256$`"))?;
        let (parameters, keys) = body
            .split_once('$')
            .ok_or_else(|| malformed("verifier: missing `$` before the keys"))?;
        let (iterations, salt) = parameters
            .split_once(':')
            .ok_or_else(|| malformed("verifier: missing `:` between iterations and salt"))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or_else(|| malformed("verifier: missing `:` between the two keys"))?;
        let iterations = parse_iterations(iterations)?;
        let salt = decode_base64(salt, "verifier salt")?;
        let stored_key = decode_key(stored_key, "verifier StoredKey")?;
        let server_key = decode_key(server_key, "verifier ServerKey")?;
        check_iterations(iterations)?;
        check_salt(&salt)?;
        Ok(Verifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// A verifier for a user that does not exist, indistinguishable to the client from a
    /// real one and stable per user name: salt and keys are HMAC-SHA256 values keyed by
    /// `secret` (a server-wide random, kept across restarts so that the decoy salt does
    /// not change) over a label and `user`. Nobody knows a password for it. Give it the
    /// iteration count real verifiers have ([`DEFAULT_ITERATIONS`] unless configured).
    pub fn decoy(secret: &[u8], user: &str, iterations: u32) -> Verifier {
        let salt = hmac_sha256(secret, &[b"secsock scram decoy salt\0", user.as_bytes()]);
        Verifier {
            iterations,
            salt: salt[..MIN_SALT_LEN].to_vec(),
            stored_key: hmac_sha256(
                secret,
                &[b"secsock scram decoy StoredKey\0", user.as_bytes()],
            ),
            server_key: hmac_sha256(
                secret,
                &[b"secsock scram decoy ServerKey\0", user.as_bytes()],
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Client

enum ClientState {
    /// `client_first` sent (or about to be); waiting for server-first.
    AwaitingServerFirst,
    /// Client-final sent; the server-final must carry this signature.
    AwaitingServerFinal { server_signature: [u8; 32] },
    /// A step failed; the exchange is over.
    Failed,
}

/// Client side of one SCRAM-SHA-256-PLUS authentication.
///
/// Steps: [`Client::client_first`] → send; feed the answer to
/// [`Client::handle_server_first`] → send its client-final; feed the answer to
/// [`Client::handle_server_final`], which proves the server knew the verifier.
pub struct Client {
    gs2_header: String,
    binding: Vec<u8>,
    /// SASLprep'ed; wiped once used.
    password: String,
    client_first_bare: String,
    client_nonce: String,
    max_iterations: u32,
    state: ClientState,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ClientState::AwaitingServerFirst => "awaiting server-first",
            ClientState::AwaitingServerFinal { .. } => "awaiting server-final",
            ClientState::Failed => "failed",
        };
        f.debug_struct("Client")
            .field("client_first_bare", &self.client_first_bare)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        wipe_string(&mut self.password);
    }
}

impl Client {
    /// Starts an authentication. `user` is the SCRAM user name (already the full principal
    /// text the server looks up, e.g. `alice@EXAMPLE.TEST`); `binding` is the 32-byte
    /// `tls-exporter` value of this TLS connection; `random` must be a cryptographic
    /// random source (it makes the client nonce). User name and password are prepared
    /// with SASLprep; a refused password is [`ScramError::InvalidPassword`], a refused
    /// user name [`ScramError::Malformed`], an empty `binding`
    /// [`ScramError::ChannelBindingNotSupported`].
    pub fn new(
        user: &str,
        password: &str,
        binding: &[u8],
        random: &dyn Fn(&mut [u8]),
    ) -> Result<Client, ScramError> {
        if binding.is_empty() {
            return Err(ScramError::ChannelBindingNotSupported);
        }
        Client::with_parts(user, password, GS2_HEADER_PLUS, binding, new_nonce(random))
    }

    fn with_parts(
        user: &str,
        password: &str,
        gs2_header: &str,
        binding: &[u8],
        client_nonce: String,
    ) -> Result<Client, ScramError> {
        let user = saslprep_user(user)?;
        let password = saslprep_password(password)?;
        let client_first_bare = format!("n={},r={client_nonce}", encode_saslname(&user));
        check_len(&client_first_bare, "client-first")?;
        Ok(Client {
            gs2_header: gs2_header.to_string(),
            binding: binding.to_vec(),
            password,
            client_first_bare,
            client_nonce,
            max_iterations: MAX_ITERATIONS,
            state: ClientState::AwaitingServerFirst,
        })
    }

    /// Sets the most PBKDF2 iterations this client computes for a server that asks
    /// ([`MAX_ITERATIONS`] unless set; a larger `limit` counts as that): a server asking
    /// for more is refused with [`ScramError::TooManyIterations`] before any is computed.
    pub fn with_max_iterations(mut self, limit: u32) -> Client {
        self.max_iterations = limit.min(MAX_ITERATIONS);
        self
    }

    /// The client-first message: `p=tls-exporter,,n=<user>,r=<nonce>`.
    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2_header, self.client_first_bare)
    }

    /// Reads the server-first message (`r=..,s=..,i=..`), computes the proof and returns
    /// the client-final message (`c=..,r=..,p=..`). This runs PBKDF2 with the server's
    /// iteration count, which must lie in [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn handle_server_first(&mut self, message: &str) -> Result<String, ScramError> {
        if !matches!(self.state, ClientState::AwaitingServerFirst) {
            return Err(malformed("server-first: unexpected at this step"));
        }
        self.state = ClientState::Failed;
        let result = self.answer_server_first(message);
        wipe_string(&mut self.password);
        let (client_final, server_signature) = result?;
        self.state = ClientState::AwaitingServerFinal { server_signature };
        Ok(client_final)
    }

    fn answer_server_first(&self, message: &str) -> Result<(String, [u8; 32]), ScramError> {
        check_len(message, "server-first")?;
        let mut fields = message.split(',');
        let nonce = attribute(fields.next(), 'r', "the nonce")?;
        let salt = attribute(fields.next(), 's', "the salt")?;
        let iterations = attribute(fields.next(), 'i', "the iteration count")?;
        check_extensions(fields)?;

        check_nonce(nonce, "nonce")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(malformed(
                "r: the server nonce does not extend the client nonce",
            ));
        }
        let salt = decode_base64(salt, "s")?;
        let iterations = parse_iterations(iterations)?;
        check_iterations(iterations)?;
        if iterations > self.max_iterations {
            return Err(ScramError::TooManyIterations {
                iterations,
                limit: self.max_iterations,
            });
        }
        check_salt(&salt)?;

        let mut keys = derive_keys(&self.password, &salt, iterations);
        let mut channel_binding = self.gs2_header.as_bytes().to_vec();
        channel_binding.extend_from_slice(&self.binding);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(&channel_binding));
        let auth_message = [
            self.client_first_bare.as_bytes(),
            b",",
            message.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac_sha256(&keys.stored_key, &auth_message);
        let mut proof = keys.client_key;
        proof
            .iter_mut()
            .zip(client_signature)
            .for_each(|(p, s)| *p ^= s);
        let server_signature = hmac_sha256(&keys.server_key, &auth_message);
        wipe(&mut keys.client_key);
        wipe(&mut keys.server_key);
        Ok((
            format!("{without_proof},p={}", BASE64.encode(proof)),
            server_signature,
        ))
    }

    /// Checks the server-final message: `v=<server signature>` must match (constant-time
    /// comparison), which proves the server holds this user's verifier. A server error
    /// (`e=...`) becomes the matching [`ScramError`] (`invalid-proof` →
    /// [`ScramError::AuthenticationFailed`]).
    pub fn handle_server_final(&self, message: &str) -> Result<(), ScramError> {
        let ClientState::AwaitingServerFinal { server_signature } = &self.state else {
            return Err(malformed("server-final: unexpected at this step"));
        };
        check_len(message, "server-final")?;
        let mut fields = message.split(',');
        let first = fields.next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(match error {
                "channel-bindings-dont-match" => ScramError::ChannelBindingMismatch,
                "server-does-support-channel-binding"
                | "channel-binding-not-supported"
                | "unsupported-channel-binding-type" => ScramError::ChannelBindingNotSupported,
                "invalid-encoding" | "extensions-not-supported" | "invalid-username-encoding" => {
                    malformed(format!("the server found our message malformed ({error})"))
                }
                _ => ScramError::AuthenticationFailed,
            });
        }
        let signature = attribute(Some(first), 'v', "the server signature")?;
        check_extensions(fields)?;
        let signature = decode_base64(signature, "v")?;
        if bool::from(signature.as_slice().ct_eq(server_signature)) {
            Ok(())
        } else {
            Err(ScramError::ServerSignatureMismatch)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server

enum ServerState {
    AwaitingClientFirst,
    AwaitingClientFinal {
        /// The GS2 header exactly as the client sent it; `c=` must repeat it.
        gs2_header: String,
        user: String,
        verifier: Verifier,
        is_decoy: bool,
        nonce: String,
        /// client-first-bare "," server-first: the start of the AuthMessage.
        auth_message_start: String,
    },
    Done,
    Failed,
}

/// Server side of one SCRAM-SHA-256-PLUS authentication.
///
/// Steps: feed the client-first message to [`Server::handle_client_first`] → send its
/// server-first; feed the client-final to [`Server::handle_client_final`] → send its
/// server-final and take the authenticated user name. On an error, send
/// [`ScramError::server_error_message`] (or the transport's own failure) and stop.
pub struct Server {
    binding: Vec<u8>,
    decoy_secret: Vec<u8>,
    decoy_iterations: u32,
    canonical: fn(&str) -> Result<String, String>,
    server_nonce: String,
    /// Test hook: accept the `n,,` header so that the RFC 7677 vector (plain
    /// SCRAM-SHA-256) can run; never set outside tests.
    accept_unbound: bool,
    state: ServerState,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ServerState::AwaitingClientFirst => "awaiting client-first".to_string(),
            ServerState::AwaitingClientFinal { user, .. } => {
                format!("awaiting client-final from {user:?}")
            }
            ServerState::Done => "done".to_string(),
            ServerState::Failed => "failed".to_string(),
        };
        f.debug_struct("Server")
            .field("decoy_iterations", &self.decoy_iterations)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts serving one authentication on a TLS connection whose `tls-exporter` value
    /// is `binding`. `decoy_secret` is a server-wide random (see [`Verifier::decoy`]);
    /// `random` must be a cryptographic random source (it makes the server nonce).
    /// Unknown users get decoys with [`DEFAULT_ITERATIONS`]; see
    /// [`Server::with_decoy_iterations`]. An empty `binding` refuses every client with
    /// [`ScramError::ChannelBindingNotSupported`].
    pub fn new(binding: &[u8], decoy_secret: &[u8], random: &dyn Fn(&mut [u8])) -> Server {
        Server {
            binding: binding.to_vec(),
            decoy_secret: decoy_secret.to_vec(),
            decoy_iterations: DEFAULT_ITERATIONS,
            canonical: |user| Ok(user.to_string()),
            server_nonce: new_nonce(random),
            accept_unbound: false,
            state: ServerState::AwaitingClientFirst,
        }
    }

    /// Sets the iteration count of decoy verifiers ([`DEFAULT_ITERATIONS`] unless set).
    /// Make it the count new verifiers get, never one read from the existing users: a
    /// decoy count copied from them tells an attacker that count, and any user whose
    /// verifier has another count stands out from the decoys (keep it within
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`] too, or clients refuse decoys with
    /// [`ScramError::WeakParameters`] — an oracle).
    pub fn with_decoy_iterations(mut self, iterations: u32) -> Server {
        self.decoy_iterations = iterations;
        self
    }

    /// Sets how a user name (as sent, after SASLprep) becomes the one name the server
    /// knows it by: that name is looked up, makes the decoy and is the name proven, so
    /// that two spellings of one user can neither be told apart nor prove two principals.
    /// An `Err` refuses the name as [`ScramError::Malformed`]. Unless set, names are taken
    /// as they are.
    pub fn with_canonical_names(mut self, canonical: fn(&str) -> Result<String, String>) -> Server {
        self.canonical = canonical;
        self
    }

    /// The (canonical) name of the user being authenticated, once the client-first message
    /// was accepted and until the exchange ends.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            ServerState::AwaitingClientFinal { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Reads the client-first message and returns the server-first message
    /// (`r=<client nonce><server nonce>,s=<salt>,i=<iterations>`). `lookup` gives the
    /// verifier of a user name (SASLprep'ed, then made canonical, see
    /// [`Server::with_canonical_names`]), or `None`: then a decoy verifier answers and
    /// the exchange fails only at the proof, as with a wrong password.
    pub fn handle_client_first(
        &mut self,
        message: &str,
        lookup: &dyn Fn(&str) -> Option<Verifier>,
    ) -> Result<String, ScramError> {
        if !matches!(self.state, ServerState::AwaitingClientFirst) {
            return Err(malformed("client-first: unexpected at this step"));
        }
        self.state = ServerState::Failed;
        check_len(message, "client-first")?;

        // gs2-header = gs2-cbind-flag "," [authzid] ","
        let (flag, rest) = message
            .split_once(',')
            .ok_or_else(|| malformed("gs2 header: missing"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| malformed("gs2 header: missing second `,`"))?;
        let unbound_allowed = self.accept_unbound && flag == "n";
        if !unbound_allowed {
            match flag.strip_prefix("p=") {
                Some(CHANNEL_BINDING) => {}
                // `n`: the client does not do channel binding; `y`: it could, but thinks
                // the server cannot; `p=other`: a binding type secsock does not use.
                Some(_) => return Err(ScramError::ChannelBindingNotSupported),
                None if flag == "n" || flag == "y" => {
                    return Err(ScramError::ChannelBindingNotSupported)
                }
                None => {
                    return Err(malformed(format!(
                        "gs2 header: `{}` is not a channel binding flag",
                        shorten(flag)
                    )))
                }
            }
            if self.binding.is_empty() {
                return Err(ScramError::ChannelBindingNotSupported);
            }
        }
        if !authzid.is_empty() {
            return Err(malformed("a: authorization identities are not supported"));
        }
        let gs2_header = &message[..flag.len() + authzid.len() + 2];

        let mut fields = bare.split(',');
        let user = attribute(fields.next(), 'n', "the user name")?;
        let client_nonce = attribute(fields.next(), 'r', "the nonce")?;
        check_extensions(fields)?;
        let user = saslprep_user(&decode_saslname(user)?)?;
        let user = (self.canonical)(&user).map_err(|e| malformed(format!("n: {e}")))?;
        check_nonce(client_nonce, "client nonce")?;

        let (verifier, is_decoy) = match lookup(&user) {
            Some(verifier) => (verifier, false),
            None => (
                Verifier::decoy(&self.decoy_secret, &user, self.decoy_iterations),
                true,
            ),
        };
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&verifier.salt),
            verifier.iterations
        );
        self.state = ServerState::AwaitingClientFinal {
            gs2_header: gs2_header.to_string(),
            user,
            verifier,
            is_decoy,
            nonce,
            auth_message_start: format!("{bare},{server_first}"),
        };
        Ok(server_first)
    }

    /// Reads the client-final message, checks the channel binding (constant time; a
    /// binding from another connection is [`ScramError::ChannelBindingMismatch`]) and the
    /// proof (constant time; wrong password and unknown user are both
    /// [`ScramError::AuthenticationFailed`]). On success returns the server-final message
    /// (`v=<server signature>`) and the authenticated user name.
    pub fn handle_client_final(&mut self, message: &str) -> Result<(String, String), ScramError> {
        if !matches!(self.state, ServerState::AwaitingClientFinal { .. }) {
            return Err(malformed("client-final: unexpected at this step"));
        }
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        let ServerState::AwaitingClientFinal {
            gs2_header,
            user,
            verifier,
            is_decoy,
            nonce,
            auth_message_start,
        } = state
        else {
            return Err(malformed("client-final: unexpected at this step"));
        };
        check_len(message, "client-final")?;

        // c=..,r=..[,extensions],p=..
        let (without_proof, proof) = message
            .rsplit_once(',')
            .ok_or_else(|| malformed("client-final: too few attributes"))?;
        let proof = attribute(Some(proof), 'p', "the proof (last)")?;
        let mut fields = without_proof.split(',');
        let channel_binding = attribute(fields.next(), 'c', "the channel binding")?;
        let final_nonce = attribute(fields.next(), 'r', "the nonce")?;
        check_extensions(fields)?;
        let channel_binding = decode_base64(channel_binding, "c")?;
        let proof = decode_key(proof, "p")?;
        if final_nonce != nonce {
            return Err(malformed("r: not the nonce of this exchange"));
        }

        let mut expected_binding = gs2_header.into_bytes();
        expected_binding.extend_from_slice(&self.binding);
        if !bool::from(channel_binding.as_slice().ct_eq(&expected_binding)) {
            return Err(ScramError::ChannelBindingMismatch);
        }

        let auth_message = [
            auth_message_start.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac_sha256(&verifier.stored_key, &auth_message);
        let mut client_key = proof;
        client_key
            .iter_mut()
            .zip(client_signature)
            .for_each(|(k, s)| *k ^= s);
        let proof_ok = sha256(&client_key).ct_eq(&verifier.stored_key);
        wipe(&mut client_key);
        // A decoy's StoredKey is unknowable, so its check cannot pass; refusing decoys
        // explicitly as well costs nothing and survives any mistake in that reasoning.
        if !bool::from(proof_ok) || is_decoy {
            return Err(ScramError::AuthenticationFailed);
        }
        let server_signature = hmac_sha256(&verifier.server_key, &auth_message);
        self.state = ServerState::Done;
        Ok((format!("v={}", BASE64.encode(server_signature)), user))
    }
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
impl Client {
    /// The RFC 7677 vector's client: fixed nonce and GS2 header (plain SCRAM-SHA-256).
    fn for_test(
        user: &str,
        password: &str,
        gs2_header: &str,
        binding: &[u8],
        nonce: &str,
    ) -> Result<Client, ScramError> {
        Client::with_parts(user, password, gs2_header, binding, nonce.to_string())
    }
}

#[cfg(test)]
impl Server {
    /// A server with a fixed nonce that also accepts `n,,` (for the RFC 7677 vector).
    fn for_test(binding: &[u8], server_nonce: &str, accept_unbound: bool) -> Server {
        Server {
            binding: binding.to_vec(),
            decoy_secret: b"decoy secret".to_vec(),
            decoy_iterations: MIN_ITERATIONS,
            canonical: |user| Ok(user.to_string()),
            server_nonce: server_nonce.to_string(),
            accept_unbound,
            state: ServerState::AwaitingClientFirst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Deterministic "random" bytes for tests (xorshift, distinct per call).
    fn test_random(seed: u64) -> impl Fn(&mut [u8]) {
        let state = Cell::new(seed | 1);
        move |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                let mut x = state.get();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                state.set(x);
                *b = (x >> 24) as u8;
            }
        }
    }

    const USER: &str = "alice@EXAMPLE.TEST";
    const PASSWORD: &str = "correct horse battery staple";
    const BINDING: [u8; 32] = [0x42; 32];

    fn verifier(password: &str) -> Verifier {
        Verifier::generate(password, MIN_ITERATIONS, &test_random(7)).unwrap()
    }

    fn lookup_alice(stored: Verifier) -> impl Fn(&str) -> Option<Verifier> {
        move |user: &str| (user == USER).then(|| stored.clone())
    }

    fn new_server(binding: &[u8], seed: u64) -> Server {
        Server::new(binding, b"decoy secret", &test_random(seed))
            .with_decoy_iterations(MIN_ITERATIONS)
    }

    /// One full exchange; the client's result of the last step, the server's of its last.
    struct Outcome {
        server: Result<(String, String), ScramError>,
        client: Option<Result<(), ScramError>>,
    }

    fn exchange(
        user: &str,
        password: &str,
        client_binding: &[u8],
        server_binding: &[u8],
        stored: Verifier,
    ) -> Outcome {
        let mut client = Client::new(user, password, client_binding, &test_random(1)).unwrap();
        let mut server = new_server(server_binding, 2);
        let server_first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored))
            .unwrap();
        let client_final = client.handle_server_first(&server_first).unwrap();
        let result = server.handle_client_final(&client_final);
        let client_result = result
            .as_ref()
            .ok()
            .map(|(server_final, _)| client.handle_server_final(server_final));
        Outcome {
            server: result,
            client: client_result,
        }
    }

    #[test]
    fn rfc7677_test_vector_client() {
        let mut client =
            Client::for_test("user", "pencil", "n,,", b"", "rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(client.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let client_final = client
            .handle_server_first(
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                 s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .handle_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    #[test]
    fn rfc7677_test_vector_server() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let stored = Verifier::new("pencil", &salt, 4096).unwrap();
        let mut server = Server::for_test(b"", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", true);
        let lookup = |user: &str| (user == "user").then(|| stored.clone());
        let server_first = server
            .handle_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &lookup)
            .unwrap();
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (server_final, user) = server
            .handle_client_final(
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                 p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(user, "user");
    }

    /// The RFC 7677 inputs with `p=tls-exporter` and a binding of 32 bytes 0x42; the
    /// expected messages were computed independently (Python `hashlib`/`hmac`).
    #[test]
    fn rfc7677_inputs_with_tls_exporter_binding() {
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let expected_final = format!(
            "c=cD10bHMtZXhwb3J0ZXIsLEJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC,r={nonce},\
             p=PZrlVaXtxMwGz+LaWPYvrCWPtN8/P9APl62cS5ZoWjY="
        );
        let expected_server_final = "v=7NeTrl5Wk3xVix31uV9Sz7hKGyIJXrmtYvGXqSSkpN4=";

        let mut client = Client::for_test(
            "user",
            "pencil",
            GS2_HEADER_PLUS,
            &BINDING,
            "rOprNGfwEbeRWgbNEkqO",
        )
        .unwrap();
        let client_final = client
            .handle_server_first(&format!("r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))
            .unwrap();
        assert_eq!(client_final, expected_final);
        client.handle_server_final(expected_server_final).unwrap();

        // The production server path (no test hook for the header) agrees.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let stored = Verifier::new("pencil", &salt, 4096).unwrap();
        let mut server = Server::for_test(&BINDING, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", false);
        server
            .handle_client_first(&client.client_first(), &|_| Some(stored.clone()))
            .unwrap();
        let (server_final, user) = server.handle_client_final(&client_final).unwrap();
        assert_eq!(server_final, expected_server_final);
        assert_eq!(user, "user");
    }

    #[test]
    fn rfc7677_vector_is_refused_by_the_production_server() {
        // Plain SCRAM-SHA-256 (`n,,`) is the RFC's example, not something secsock accepts.
        let mut server = new_server(&BINDING, 2);
        let stored = verifier("pencil");
        assert_eq!(
            server.handle_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &|_| Some(
                stored.clone()
            )),
            Err(ScramError::ChannelBindingNotSupported)
        );
    }

    #[test]
    fn plus_exchange_succeeds_and_both_sides_agree_on_the_user() {
        let outcome = exchange(USER, PASSWORD, &BINDING, &BINDING, verifier(PASSWORD));
        let (server_final, user) = outcome.server.unwrap();
        assert!(server_final.starts_with("v="));
        assert_eq!(user, USER);
        assert_eq!(outcome.client, Some(Ok(())));
    }

    #[test]
    fn client_first_uses_tls_exporter_binding_and_a_printable_nonce() {
        let client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let first = client.client_first();
        let bare = first
            .strip_prefix("p=tls-exporter,,n=alice@EXAMPLE.TEST,r=")
            .unwrap();
        assert_eq!(bare.len(), 32);
        check_nonce(bare, "nonce").unwrap();
    }

    #[test]
    fn wrong_password_is_authentication_failed() {
        let outcome = exchange(USER, "wrong", &BINDING, &BINDING, verifier(PASSWORD));
        assert_eq!(outcome.server, Err(ScramError::AuthenticationFailed));
        assert_eq!(
            ScramError::AuthenticationFailed.server_error_message(),
            "e=invalid-proof"
        );
    }

    #[test]
    fn unknown_user_is_authentication_failed_and_looks_like_a_real_one() {
        let outcome = exchange(
            "mallory@EXAMPLE.TEST",
            PASSWORD,
            &BINDING,
            &BINDING,
            verifier(PASSWORD),
        );
        assert_eq!(outcome.server, Err(ScramError::AuthenticationFailed));

        // The server-first message has the same shape for real and unknown users, and the
        // unknown user's salt is stable across attempts (no "new salt = unknown" oracle).
        let stored = verifier(PASSWORD);
        let server_first = |user: &str, seed: u64| {
            let client = Client::new(user, "x", &BINDING, &test_random(seed)).unwrap();
            let mut server = new_server(&BINDING, seed + 100);
            let first = server
                .handle_client_first(&client.client_first(), &lookup_alice(stored.clone()))
                .unwrap();
            let fields: Vec<String> = first.split(',').map(str::to_string).collect();
            (fields[0].len(), fields[1].clone(), fields[2].clone())
        };
        let (real_nonce_len, real_salt, real_iterations) = server_first(USER, 1);
        let (nonce_len, salt, iterations) = server_first("mallory@EXAMPLE.TEST", 1);
        assert_eq!(nonce_len, real_nonce_len);
        assert_eq!(salt.len(), real_salt.len());
        assert_eq!(iterations, real_iterations);
        assert_eq!(server_first("mallory@EXAMPLE.TEST", 5).1, salt);
        assert_ne!(server_first("eve@EXAMPLE.TEST", 5).1, salt);
    }

    #[test]
    fn binding_from_another_connection_is_refused() {
        // The relay attack: the client authenticates on its connection to the attacker,
        // who forwards the messages on its own connection to the server.
        let other_connection = [0x17; 32];
        let outcome = exchange(
            USER,
            PASSWORD,
            &other_connection,
            &BINDING,
            verifier(PASSWORD),
        );
        assert_eq!(outcome.server, Err(ScramError::ChannelBindingMismatch));
    }

    #[test]
    fn clients_without_channel_binding_are_refused() {
        for header in ["n,,", "y,,", "p=tls-unique,,", "p=tls-server-end-point,,"] {
            let mut server = new_server(&BINDING, 2);
            let message = format!("{header}n=user,r=abcdef");
            assert_eq!(
                server.handle_client_first(&message, &|_| None),
                Err(ScramError::ChannelBindingNotSupported),
                "{header}"
            );
        }
        assert!(matches!(
            Client::new(USER, PASSWORD, b"", &test_random(1)),
            Err(ScramError::ChannelBindingNotSupported)
        ));
        let mut server = new_server(b"", 2);
        let client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        assert_eq!(
            server.handle_client_first(&client.client_first(), &|_| None),
            Err(ScramError::ChannelBindingNotSupported)
        );
    }

    #[test]
    fn client_final_claiming_another_gs2_header_is_a_binding_mismatch() {
        // A client-final whose c= says "n,," although the client-first said p=tls-exporter.
        let stored = verifier(PASSWORD);
        let client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = new_server(&BINDING, 2);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored))
            .unwrap();
        let nonce = first.split(',').next().unwrap();
        let message = format!("c=biws,{nonce},p={}", BASE64.encode([0u8; 32]));
        assert_eq!(
            server.handle_client_final(&message),
            Err(ScramError::ChannelBindingMismatch)
        );
    }

    #[test]
    fn tampered_server_signature_is_refused_by_the_client() {
        let stored = verifier(PASSWORD);
        let mut client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = new_server(&BINDING, 2);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored))
            .unwrap();
        let client_final = client.handle_server_first(&first).unwrap();
        let (server_final, _) = server.handle_client_final(&client_final).unwrap();
        let mut signature = BASE64.decode(&server_final[2..]).unwrap();
        signature[0] ^= 1;
        let tampered = format!("v={}", BASE64.encode(&signature));
        assert_eq!(
            client.handle_server_final(&tampered),
            Err(ScramError::ServerSignatureMismatch)
        );
        // Shorter or empty signatures too.
        assert_eq!(
            client.handle_server_final("v="),
            Err(ScramError::ServerSignatureMismatch)
        );
        assert_eq!(
            client.handle_server_final(&format!("v={}", BASE64.encode(&signature[..31]))),
            Err(ScramError::ServerSignatureMismatch)
        );
        // A server that holds another verifier for the user (knows a different password).
        let impostor = verifier("another password");
        let mut client = Client::new(USER, PASSWORD, &BINDING, &test_random(3)).unwrap();
        let mut server = new_server(&BINDING, 4);
        let salt_of_real = verifier(PASSWORD);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(salt_of_real))
            .unwrap();
        let client_final = client.handle_server_first(&first).unwrap();
        server.handle_client_final(&client_final).unwrap();
        let forged = hmac_sha256(&impostor.server_key, &[b"anything"]);
        assert_eq!(
            client.handle_server_final(&format!("v={}", BASE64.encode(forged))),
            Err(ScramError::ServerSignatureMismatch)
        );
        // The final `e=` errors map to variants.
        assert_eq!(
            client.handle_server_final("e=invalid-proof"),
            Err(ScramError::AuthenticationFailed)
        );
        assert_eq!(
            client.handle_server_final("e=channel-bindings-dont-match"),
            Err(ScramError::ChannelBindingMismatch)
        );
    }

    /// Server after a valid client-first, and that message's full nonce.
    fn server_awaiting_final() -> (Server, String) {
        let client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = new_server(&BINDING, 2);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(verifier(PASSWORD)))
            .unwrap();
        let nonce = first.split(',').next().unwrap()[2..].to_string();
        (server, nonce)
    }

    fn is_malformed<T: fmt::Debug>(result: Result<T, ScramError>) -> bool {
        matches!(result, Err(ScramError::Malformed(_)))
    }

    #[test]
    fn malformed_client_first_messages_are_refused() {
        let huge = format!("p=tls-exporter,,n=user,r={}", "a".repeat(MAX_MESSAGE_LEN));
        let cases = [
            "",
            ",",
            "p=tls-exporter",
            "p=tls-exporter,",
            "p=tls-exporter,,",
            "p=tls-exporter,,n=user",
            "p=tls-exporter,,r=abc,n=user",
            "p=tls-exporter,,n=user,r=",
            "p=tls-exporter,,n=,r=abc",
            "p=tls-exporter,,n=us=er,r=abc",
            "p=tls-exporter,,n=us=2,r=abc",
            "p=tls-exporter,,n=us=2c,r=abc",
            "p=tls-exporter,,n=u\0ser,r=abc",
            "p=tls-exporter,,n=u\u{0007}ser,r=abc",
            "p=tls-exporter,,n=user,r=ab\u{e9}c",
            "p=tls-exporter,,n=user,r=ab c",
            "p=tls-exporter,,n=user,r=ab\u{7f}c",
            "p=tls-exporter,,m=ext,n=user,r=abc",
            "p=tls-exporter,,n=user,r=abc,x",
            "p=tls-exporter,,n=user,r=abc,",
            "p=tls-exporter,a=admin,n=user,r=abc",
            "q,,n=user,r=abc",
            "\u{fffd},,n=user,r=abc",
            &huge,
        ];
        for case in cases {
            let mut server = new_server(&BINDING, 2);
            let result = server.handle_client_first(case, &|_| Some(verifier(PASSWORD)));
            assert!(is_malformed(result.clone()), "{case:?}: {result:?}");
            // A failed server stays failed.
            assert!(is_malformed(server.handle_client_final("c=biws,r=x,p=x")));
        }
    }

    #[test]
    fn extensions_after_the_mandatory_attributes_are_ignored() {
        let mut server = new_server(&BINDING, 2);
        let first = server
            .handle_client_first("p=tls-exporter,,n=user,r=abc,x=future", &|_| None)
            .unwrap();
        assert!(first.starts_with("r=abc"));
    }

    #[test]
    fn malformed_client_final_messages_are_refused() {
        let (_, nonce) = server_awaiting_final();
        let c = BASE64.encode([GS2_HEADER_PLUS.as_bytes(), &BINDING].concat());
        let p = BASE64.encode([0u8; 32]);
        let huge = format!("c={c},r={nonce},x={},p={p}", "a".repeat(MAX_MESSAGE_LEN));
        let cases = [
            String::new(),
            format!("c={c},r={nonce}"),
            format!("r={nonce},c={c},p={p}"),
            format!("c={c},p={p}"),
            format!("c={c},r={nonce},p=!!!"),
            format!("c={c},r={nonce},p={}", BASE64.encode([0u8; 31])),
            format!("c=@@@,r={nonce},p={p}"),
            format!("c={c},r={nonce}x,p={p}"),
            format!("c={c},r=other,p={p}"),
            format!("c={c},r={nonce},m=ext,p={p}"),
            format!("c={c},r={nonce},p={p},x=1"),
            format!("c={c},r={nonce},,p={p}"),
            format!("c={c}\0,r={nonce},p={p}"),
            huge,
        ];
        for case in cases {
            let (mut server, _) = server_awaiting_final();
            let result = server.handle_client_final(&case);
            assert!(is_malformed(result.clone()), "{case:?}: {result:?}");
        }
        // Extensions between r and p are ignored.
        let (mut server, _) = server_awaiting_final();
        assert_eq!(
            server.handle_client_final(&format!("c={c},r={nonce},x=1,p={p}")),
            Err(ScramError::AuthenticationFailed)
        );
    }

    #[test]
    fn malformed_server_first_messages_are_refused() {
        let salt = BASE64.encode([1u8; 16]);
        let new_client =
            || Client::for_test("user", "pencil", GS2_HEADER_PLUS, &BINDING, "cnonce").unwrap();
        let huge = format!(
            "r=cnonceS,s={salt},i=4096,x={}",
            "a".repeat(MAX_MESSAGE_LEN)
        );
        let cases = [
            String::new(),
            "r=cnonceS".to_string(),
            format!("r=cnonceS,s={salt}"),
            format!("s={salt},r=cnonceS,i=4096"),
            format!("r=cnonce,s={salt},i=4096"),
            format!("r=other,s={salt},i=4096"),
            format!("r=cnonce S,s={salt},i=4096"),
            "r=cnonceS,s=***,i=4096".to_string(),
            format!("r=cnonceS,s={salt},i="),
            format!("r=cnonceS,s={salt},i=4k"),
            format!("r=cnonceS,s={salt},i=+4096"),
            format!("r=cnonceS,s={salt},i=04096"),
            format!("r=cnonceS,s={salt},i=99999999999999999999"),
            format!("m=ext,r=cnonceS,s={salt},i=4096"),
            format!("r=cnonceS,s={salt},i=4096,"),
            format!("r=cnonceS,s={salt},i=4096,\u{e9}=1"),
            huge,
        ];
        for case in cases {
            let mut client = new_client();
            let result = client.handle_server_first(&case);
            assert!(is_malformed(result.clone()), "{case:?}: {result:?}");
            // A failed client stays failed.
            assert!(is_malformed(client.handle_server_first("r=cnonceS")));
            assert!(is_malformed(client.handle_server_final("v=")));
        }
    }

    #[test]
    fn malformed_server_final_messages_are_refused() {
        let mut client =
            Client::for_test("user", "pencil", "n,,", b"", "rOprNGfwEbeRWgbNEkqO").unwrap();
        // Out of order: no server-first yet.
        assert!(is_malformed(client.handle_server_final("v=AAAA")));
        client
            .handle_server_first(
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        let good = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        let huge = format!("{good},x={}", "a".repeat(MAX_MESSAGE_LEN));
        for case in [
            "",
            "v",
            "v=***",
            "x=1",
            "m=1,v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,",
            "e=invalid-encoding",
            &huge,
        ] {
            assert!(is_malformed(client.handle_server_final(case)), "{case:?}");
        }
        // A second server-first is out of order.
        assert!(is_malformed(client.handle_server_first("r=x,s=x,i=4096")));
        client.handle_server_final(good).unwrap();
        client
            .handle_server_final(&format!("{good},x=ext"))
            .unwrap();
    }

    #[test]
    fn weak_parameters_are_refused_on_both_sides() {
        // Client: a server asking for too few or too many iterations, or a short salt.
        let salt = BASE64.encode([1u8; 16]);
        for (case, expected) in [
            (format!("r=cnonceS,s={salt},i=4095"), "fewer"),
            (format!("r=cnonceS,s={salt},i=1"), "fewer"),
            (
                format!("r=cnonceS,s={salt},i={}", MAX_ITERATIONS + 1),
                "more",
            ),
            (
                format!("r=cnonceS,s={},i=4096", BASE64.encode([1u8; 15])),
                "salt",
            ),
            ("r=cnonceS,s=,i=4096".to_string(), "salt"),
        ] {
            let mut client =
                Client::for_test("user", "pencil", GS2_HEADER_PLUS, &BINDING, "cnonce").unwrap();
            match client.handle_server_first(&case) {
                Err(ScramError::WeakParameters(text)) => assert!(text.contains(expected), "{text}"),
                other => panic!("{case}: {other:?}"),
            }
        }
        // A client's own, lower limit: refused before any PBKDF2 is computed.
        let client = Client::for_test("user", "pencil", GS2_HEADER_PLUS, &BINDING, "cnonce")
            .unwrap()
            .with_max_iterations(8192);
        let mut client = client;
        assert_eq!(
            client.handle_server_first(&format!("r=cnonceS,s={salt},i=8193")),
            Err(ScramError::TooManyIterations {
                iterations: 8193,
                limit: 8192
            })
        );
        let mut client = Client::for_test("user", "pencil", GS2_HEADER_PLUS, &BINDING, "cnonce")
            .unwrap()
            .with_max_iterations(8192);
        assert!(client
            .handle_server_first(&format!("r=cnonceS,s={salt},i=8192"))
            .is_ok());
        // Verifier creation.
        assert!(matches!(
            Verifier::new("pencil", &[0u8; 16], 4095),
            Err(ScramError::WeakParameters(_))
        ));
        assert!(matches!(
            Verifier::new("pencil", &[0u8; 15], 4096),
            Err(ScramError::WeakParameters(_))
        ));
        assert!(matches!(
            Verifier::new("pencil", &[0u8; 16], MAX_ITERATIONS + 1),
            Err(ScramError::WeakParameters(_))
        ));
        assert!(matches!(
            Verifier::generate("pencil", 1000, &test_random(1)),
            Err(ScramError::WeakParameters(_))
        ));
    }

    #[test]
    fn canonical_names_serve_the_lookup_the_decoy_and_the_proof() {
        let stored = verifier(PASSWORD);
        let upper_domain = |user: &str| match user.rsplit_once('@') {
            Some((name, domain)) => Ok(format!("{name}@{}", domain.to_ascii_uppercase())),
            None => Err(format!("`{user}` has no domain")),
        };
        let challenge = |user: &str| {
            let client = Client::new(user, PASSWORD, &BINDING, &test_random(1)).unwrap();
            let mut server = new_server(&BINDING, 2).with_canonical_names(upper_domain);
            let first =
                server.handle_client_first(&client.client_first(), &lookup_alice(stored.clone()));
            (first, server.user().map(str::to_string))
        };
        let (alice, name) = challenge("alice@example.test");
        assert_eq!(
            name.as_deref(),
            Some(USER),
            "the lookup got the canonical name"
        );
        assert!(alice.unwrap().contains(&BASE64.encode(&stored.salt)));
        let (a, _) = challenge("mallory@example.test");
        let (b, _) = challenge("mallory@EXAMPLE.TEST");
        let salt = |first: String| first.split(',').nth(1).unwrap().to_string();
        assert_eq!(
            salt(a.unwrap()),
            salt(b.unwrap()),
            "one decoy per canonical name"
        );
        assert!(
            matches!(challenge("alice").0, Err(ScramError::Malformed(m)) if m.contains("no domain"))
        );
        // The name proven is the canonical one.
        let mut client =
            Client::new("alice@example.test", PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = new_server(&BINDING, 2).with_canonical_names(upper_domain);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored))
            .unwrap();
        let last = client.handle_server_first(&first).unwrap();
        assert_eq!(server.handle_client_final(&last).unwrap().1, USER);
        assert_eq!(server.user(), None, "the exchange is over");
    }

    #[test]
    fn verifier_text_round_trip() {
        let stored = verifier(PASSWORD);
        let text = stored.to_text();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(Verifier::parse(&text).unwrap(), stored);
        // The RFC 7677 vector's keys, in PostgreSQL's format.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let rfc = Verifier::new("pencil", &salt, 4096).unwrap();
        assert_eq!(
            rfc.to_text(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
             WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
             wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        // Debug does not show the keys.
        let debug = format!("{rfc:?}");
        assert!(
            !debug.contains("WG5d8") && !debug.contains("stored_key"),
            "{debug}"
        );
    }

    #[test]
    fn bad_verifier_texts_are_refused() {
        let good = verifier(PASSWORD).to_text();
        let (head, keys) = good.rsplit_once('$').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        let cases = [
            String::new(),
            "SCRAM-SHA-256".to_string(),
            good.replacen("SCRAM-SHA-256", "SCRAM-SHA-1", 1),
            good.replacen('$', "#", 2),
            format!("{head}${stored}"),
            format!("{head}${stored}:{server}:extra"),
            format!("{head}${stored}:{}", &server[4..]),
            format!("{head}${stored}:!!!"),
            good.replacen("4096:", "4096", 1),
            good.replacen("4096:", "x:", 1),
            good.replacen("4096:", "-1:", 1),
            good.replacen("4096:", "99999999999:", 1),
            good.replacen("4096:", "4096:@:", 1),
        ];
        for case in cases {
            assert!(is_malformed(Verifier::parse(&case)), "{case:?}");
        }
        for weak in [
            good.replacen("4096:", "1000:", 1),
            format!("SCRAM-SHA-256$4096:{}${keys}", BASE64.encode([0u8; 8])),
        ] {
            assert!(
                matches!(Verifier::parse(&weak), Err(ScramError::WeakParameters(_))),
                "{weak}"
            );
        }
    }

    #[test]
    fn saslprep_normalizes_and_refuses() {
        // U+00A0 (no-break space) maps to a space; U+00AD (soft hyphen) to nothing;
        // U+2168 (roman numeral nine) to "IX" under NFKC.
        let salt = [9u8; 16];
        let plain = Verifier::new("pen cil", &salt, 4096).unwrap();
        assert_eq!(Verifier::new("pen\u{a0}cil", &salt, 4096).unwrap(), plain);
        assert_eq!(Verifier::new("pen\u{ad} cil", &salt, 4096).unwrap(), plain);
        assert_eq!(
            Verifier::new("\u{2168}", &salt, 4096).unwrap(),
            Verifier::new("IX", &salt, 4096).unwrap()
        );
        // A client typing the no-break space logs in against a verifier made with a space.
        let outcome = exchange(USER, "pen\u{a0}cil", &BINDING, &BINDING, plain.clone());
        assert!(outcome.server.is_ok());
        assert_eq!(outcome.client, Some(Ok(())));

        for refused in ["pen\u{7}cil", "\u{0}", "\u{e000}", "", "\u{ad}", "\u{5d0}a"] {
            match Verifier::new(refused, &salt, 4096) {
                Err(ScramError::InvalidPassword(text)) => {
                    assert!(!text.contains(refused) || refused.is_empty(), "{text}");
                }
                other => panic!("{refused:?}: {other:?}"),
            }
            assert!(matches!(
                Client::new(USER, refused, &BINDING, &test_random(1)),
                Err(ScramError::InvalidPassword(_))
            ));
        }
        // User names: prepared too; a refused one is Malformed.
        assert!(is_malformed(Client::new(
            "al\u{7}ice",
            "x",
            &BINDING,
            &test_random(1)
        )));
        assert!(is_malformed(Client::new(
            "",
            "x",
            &BINDING,
            &test_random(1)
        )));
        let client = Client::new("al\u{a0}ice", "x", &BINDING, &test_random(1)).unwrap();
        assert!(client.client_first().contains(",n=al ice,"));
    }

    #[test]
    fn user_names_with_comma_and_equals_are_escaped() {
        let user = "o=u,x@EXAMPLE.TEST";
        let client = Client::new(user, PASSWORD, &BINDING, &test_random(1)).unwrap();
        assert!(client
            .client_first()
            .starts_with("p=tls-exporter,,n=o=3Du=2Cx@EXAMPLE.TEST,r="));
        let stored = verifier(PASSWORD);
        let lookup = move |name: &str| (name == user).then(|| stored.clone());
        let mut client = client;
        let mut server = new_server(&BINDING, 2);
        let first = server
            .handle_client_first(&client.client_first(), &lookup)
            .unwrap();
        let client_final = client.handle_server_first(&first).unwrap();
        let (server_final, authenticated) = server.handle_client_final(&client_final).unwrap();
        client.handle_server_final(&server_final).unwrap();
        assert_eq!(authenticated, user);
        assert_eq!(decode_saslname("=3D=2C=3D").unwrap(), "=,=");
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let (mut server, _) = server_awaiting_final();
        assert!(is_malformed(
            server.handle_client_first("p=tls-exporter,,n=user,r=abc", &|_| None)
        ));
        let mut fresh = server_with_seed(9);
        assert!(is_malformed(
            fresh.handle_client_final("c=biws,r=abc,p=abc")
        ));
        // After success, a second client-final is refused too.
        let outcome_server = {
            let stored = verifier(PASSWORD);
            let mut client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
            let mut server = server_with_seed(2);
            let first = server
                .handle_client_first(&client.client_first(), &lookup_alice(stored))
                .unwrap();
            let client_final = client.handle_server_first(&first).unwrap();
            server.handle_client_final(&client_final).unwrap();
            assert!(is_malformed(server.handle_client_final(&client_final)));
            server
        };
        assert!(format!("{outcome_server:?}").contains("done"));
    }

    fn server_with_seed(seed: u64) -> Server {
        new_server(&BINDING, seed)
    }

    /// Every truncation and many single-character corruptions of valid messages: errors,
    /// never panics.
    #[test]
    fn mangled_messages_never_panic() {
        let stored = verifier(PASSWORD);
        let mut client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = new_server(&BINDING, 2);
        let client_first = client.client_first();
        let server_first = server
            .handle_client_first(&client_first, &lookup_alice(stored.clone()))
            .unwrap();
        let client_final = client.handle_server_first(&server_first).unwrap();
        let (server_final, _) = server.handle_client_final(&client_final).unwrap();

        let replacements = [",", "=", "", "\0", "\u{e9}", "==", "=2C", "m=", "\u{ffff}"];
        let variants = |message: &str| {
            let mut out = Vec::new();
            for (at, _) in message.char_indices().chain([(message.len(), ' ')]) {
                out.push(message[..at].to_string());
                for replacement in replacements {
                    let next = message[at..].chars().next().map_or(0, char::len_utf8);
                    out.push(format!(
                        "{}{replacement}{}",
                        &message[..at],
                        &message[at + next..]
                    ));
                }
            }
            out
        };
        for mangled in variants(&client_first) {
            let mut server = server_with_seed(2);
            let _ = server.handle_client_first(&mangled, &lookup_alice(stored.clone()));
        }
        for mangled in variants(&client_final) {
            let mut server = server_with_seed(2);
            server
                .handle_client_first(&client_first, &lookup_alice(stored.clone()))
                .unwrap();
            let _ = server.handle_client_final(&mangled);
        }
        for mangled in variants(&server_final) {
            let _ = client.handle_server_final(&mangled);
        }
        // Server-first mangling makes the client run PBKDF2 when it still parses, so only
        // truncations (which never leave a valid salt and count at once).
        for at in 0..server_first.len() {
            let mut fresh = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
            let _ = fresh.handle_server_first(&server_first[..at]);
        }
    }
}
