//! The user-authentication step: after the TLS handshake and before any application byte,
//! the client proves an application (user) identity inside the TLS channel, bound to that
//! channel so that the proof cannot be replayed or relayed on another connection.
//!
//! Negotiated by ALPN ([`ALPN`]): secsock clients offer it; a listener whose policy has
//! user authentication off configures no ALPN, so it never selects it and plain TLS peers
//! see nothing different. When selected, the client speaks first:
//!
//! ```text
//! client                                   server
//! HELLO { mechanism, data }        ---->
//!                                  <----   CHALLENGE { data }        (SCRAM only)
//! RESPONSE { data }                ---->                            (SCRAM only)
//!                                  <----   SUCCESS { data } | FAILURE { reason }
//! ```
//!
//! Frames: type (1 byte), length (2 bytes, big-endian, at most [`MAX_FRAME`]), payload.
//! Mechanisms:
//! - `SCRAM-SHA-256-PLUS` (see [`crate::user::scram`]) with the RFC 9266 `tls-exporter` channel
//!   binding: the password never crosses the wire, the server stores only verifiers, and
//!   both sides prove knowledge of the verifier.
//! - `USER-CERT`: a user certificate chain, and a signature with its key over
//!   [`CERT_CONTEXT`] followed by the channel binding. The server validates the chain for
//!   client authentication against its anchors, and the leaf must name a user (email or
//!   UPN SAN).
//! - `NONE`: the client has no user identity (accepted unless the listener requires one).
//!
//! A failure is reported to the client as "user authentication failed", whatever the
//! cause — unknown user, wrong password or unacceptable certificate look the same (the
//! server's log has the detail). The connection is then closed: no application byte was
//! exchanged. Failures are rate limited ([`crate::user::throttle`]): an address with too many
//! recent failures is refused at once ("user authentication throttled"), and each
//! failure in a user name's run is answered after a growing pause.
//!
//! No I/O here: [`ClientExchange`] and [`ServerExchange`] consume frames and say what to
//! send, and for how long to wait first; the front ends wait, and move the frames through
//! the TLS stream.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::SignatureScheme;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use webpki::EndEntityCert;

use crate::error::{NegotiationError, Peer};
use crate::info::{PeerIdentity, ProofMethod};
use crate::name::{CertificateNames, PrincipalName};
use crate::policy::UserAuthentication;
use crate::settings::UserCredentials;
use crate::user::scram;
use crate::user::users::{canonical_user, UserDirectory};
use crate::verify::{ChainValidator, Usage};

/// The ALPN protocol that announces the user-authentication step.
pub(crate) const ALPN: &[u8] = b"secsock-user/1";

/// The largest frame payload.
pub const MAX_FRAME: usize = 16 * 1024;

/// What a user certificate's key signs, before the channel binding.
pub const CERT_CONTEXT: &[u8] = b"secsock user certificate, RFC 9266 tls-exporter\0";

/// The RFC 9266 exporter label; the context is empty, the output 32 bytes.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

const MECH_SCRAM: &str = scram::MECHANISM;
const MECH_CERT: &str = "USER-CERT";
const MECH_NONE: &str = "NONE";

/// The kinds of frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client: the mechanism and its first message.
    Hello = 1,
    /// Server: the SCRAM server-first message.
    Challenge = 2,
    /// Client: the SCRAM client-final message.
    Response = 3,
    /// Server: authenticated (SCRAM: with the server-final message).
    Success = 4,
    /// Server: not authenticated, with a reason.
    Failure = 5,
}

/// One message of the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// Its content.
    pub payload: Vec<u8>,
}

impl Frame {
    fn new(kind: Kind, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            kind,
            payload: payload.into(),
        }
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len().min(MAX_FRAME) as u16;
        let mut out = Vec::with_capacity(3 + self.payload.len());
        out.push(self.kind as u8);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload[..usize::from(len)]);
        out
    }

    /// Parses one frame from the front of `bytes`: `Ok(None)` if incomplete, else the
    /// frame and how many bytes it used.
    pub fn decode(bytes: &[u8]) -> Result<Option<(Frame, usize)>, String> {
        let Some((&kind, rest)) = bytes.split_first() else {
            return Ok(None);
        };
        let kind = match kind {
            1 => Kind::Hello,
            2 => Kind::Challenge,
            3 => Kind::Response,
            4 => Kind::Success,
            5 => Kind::Failure,
            other => return Err(format!("unknown message type {other}")),
        };
        if rest.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if len > MAX_FRAME {
            return Err(format!("a message of {len} bytes exceeds {MAX_FRAME}"));
        }
        if rest.len() < 2 + len {
            return Ok(None);
        }
        Ok(Some((Frame::new(kind, &rest[2..2 + len]), 3 + len)))
    }
}

/// A malformed frame from `peer`, as the socket error the exchange reports.
pub(crate) fn frame_error(peer: Peer, detail: &str) -> std::io::Error {
    invalid(peer, detail)
}

fn invalid(peer: Peer, detail: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, protocol(peer, detail))
}

/// Maps an I/O failure during the exchange to the reason the caller gets.
pub(crate) fn exchange_io_error(
    e: std::io::Error,
    peer: Peer,
    timeout: std::time::Duration,
) -> NegotiationError {
    use std::io::ErrorKind as K;
    if let Some(inner) = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<NegotiationError>())
    {
        return inner.clone();
    }
    match e.kind() {
        K::WouldBlock | K::TimedOut => NegotiationError::Timeout { after: timeout },
        _ => protocol(
            peer,
            &format!("the connection failed during user authentication: {e}"),
        ),
    }
}

fn protocol(peer: Peer, detail: &str) -> NegotiationError {
    NegotiationError::UserAuthenticationProtocol {
        peer,
        detail: detail.to_string(),
    }
}

fn hello(mechanism: &str, data: &[u8]) -> Frame {
    let mut payload = Vec::with_capacity(1 + mechanism.len() + data.len());
    payload.push(mechanism.len() as u8);
    payload.extend_from_slice(mechanism.as_bytes());
    payload.extend_from_slice(data);
    Frame::new(Kind::Hello, payload)
}

fn parse_hello(payload: &[u8]) -> Result<(&str, &[u8]), String> {
    let (&len, rest) = payload.split_first().ok_or("an empty HELLO")?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err("a truncated mechanism name".into());
    }
    let mechanism =
        std::str::from_utf8(&rest[..len]).map_err(|_| "a mechanism name that is not text")?;
    Ok((mechanism, &rest[len..]))
}

/// The user-certificate HELLO data: the chain, the signature scheme and the signature.
fn encode_cert_proof(
    chain: &[CertificateDer<'_>],
    scheme: SignatureScheme,
    signature: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(chain.len().min(8) as u8);
    for cert in chain.iter().take(8) {
        out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
        out.extend_from_slice(cert);
    }
    out.extend_from_slice(&u16::from(scheme).to_be_bytes());
    out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
    out.extend_from_slice(signature);
    out
}

type CertProof = (Vec<CertificateDer<'static>>, SignatureScheme, Vec<u8>);

fn decode_cert_proof(data: &[u8]) -> Result<CertProof, String> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let slice = data
            .get(at..at + n)
            .ok_or("a truncated user certificate proof")?;
        at += n;
        Ok(slice)
    };
    let count = usize::from(take(1)?[0]);
    if count == 0 {
        return Err("no user certificate".into());
    }
    let mut chain = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes(take(2)?.try_into().unwrap_or([0, 0])));
        chain.push(CertificateDer::from(take(len)?.to_vec()));
    }
    let scheme = SignatureScheme::from(u16::from_be_bytes(take(2)?.try_into().unwrap_or([0, 0])));
    let len = usize::from(u16::from_be_bytes(take(2)?.try_into().unwrap_or([0, 0])));
    let signature = take(len)?.to_vec();
    if at != data.len() {
        return Err("trailing bytes after the user certificate proof".into());
    }
    Ok((chain, scheme, signature))
}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Send this frame and wait for the next one.
    Send(Frame),
    /// Done: send the frame (server: SUCCESS), if any, then application data may flow.
    Done(Option<Frame>, Option<PeerIdentity>),
}

/// The client's side of one exchange.
pub struct ClientExchange {
    state: ClientState,
}

enum ClientState {
    AwaitChallenge(Box<scram::Client>),
    AwaitServerFinal(Box<scram::Client>),
    AwaitSuccess,
    Finished,
}

impl ClientExchange {
    /// Starts: the HELLO to send, for `credentials` (none: `NONE`), bound to `binding`.
    /// A server asking for more than `max_iterations` PBKDF2 iterations (the policy's
    /// `[defaults] user_max_iterations`) is refused.
    pub fn start(
        credentials: Option<&UserCredentials>,
        binding: &[u8],
        provider: &CryptoProvider,
        max_iterations: u32,
    ) -> Result<(ClientExchange, Frame), NegotiationError> {
        let local = |detail: String| NegotiationError::UserAuthenticationFailed { reason: detail };
        match credentials {
            None => Ok((
                ClientExchange {
                    state: ClientState::AwaitSuccess,
                },
                hello(MECH_NONE, &[]),
            )),
            Some(UserCredentials::Password {
                user,
                domain,
                password,
            }) => {
                let password = std::str::from_utf8(password.expose())
                    .map_err(|_| local("the password is not UTF-8".into()))?;
                // A name the server cannot take is refused here, with the reason.
                let name =
                    crate::user::users::canonical_user(&crate::user::users::user_key(user, domain))
                        .map_err(|e| local(format!("the user name: {e}")))?;
                // A failed random source is an error here, never a zero nonce.
                let client = scram::Client::new(&name, password, binding, provider.secure_random)
                    .map_err(|e| local(e.to_string()))?
                    .with_max_iterations(max_iterations);
                let first = client.client_first();
                Ok((
                    ClientExchange {
                        state: ClientState::AwaitChallenge(Box::new(client)),
                    },
                    hello(MECH_SCRAM, first.as_bytes()),
                ))
            }
            Some(UserCredentials::Certificate { chain, key }) => {
                let size: usize = chain.iter().map(|c| 2 + c.len()).sum();
                if chain.len() > 8 || size > MAX_FRAME - 1024 {
                    return Err(local(format!(
                        "the user certificate chain is too large to send ({} certificates, {size} bytes; at most 8 and {} bytes)",
                        chain.len(),
                        MAX_FRAME - 1024
                    )));
                }
                let key = PrivateKeyDer::try_from(key.expose().to_vec())
                    .map_err(|e| local(format!("the user key cannot be read: {e}")))?;
                let signing = provider
                    .key_provider
                    .load_private_key(key)
                    .map_err(|e| local(format!("the user key cannot be used: {e}")))?;
                let offered = [
                    SignatureScheme::ECDSA_NISTP256_SHA256,
                    SignatureScheme::ECDSA_NISTP384_SHA384,
                    SignatureScheme::ED25519,
                    SignatureScheme::RSA_PSS_SHA256,
                ];
                let signer = signing
                    .choose_scheme(&offered)
                    .ok_or_else(|| local("the user key's algorithm is not supported".into()))?;
                let mut message = CERT_CONTEXT.to_vec();
                message.extend_from_slice(binding);
                let signature = signer
                    .sign(&message)
                    .map_err(|e| local(format!("signing failed: {e}")))?;
                let data = encode_cert_proof(chain, signer.scheme(), &signature);
                Ok((
                    ClientExchange {
                        state: ClientState::AwaitSuccess,
                    },
                    hello(MECH_CERT, &data),
                ))
            }
        }
    }

    /// Whether [`on_frame`](Self::on_frame) derives the password's keys for `frame`: it
    /// then runs PBKDF2 (up to the client's maximum of iterations), which an async front
    /// end keeps off its runtime's threads.
    pub fn derives_keys(&self, frame: &Frame) -> bool {
        matches!(self.state, ClientState::AwaitChallenge(_)) && frame.kind == Kind::Challenge
    }

    /// Takes the server's next frame.
    pub fn on_frame(&mut self, frame: Frame) -> Result<Step, NegotiationError> {
        let unexpected = |what: &str| protocol(Peer::Server, &format!("unexpected {what}"));
        if frame.kind == Kind::Failure {
            let reason = String::from_utf8_lossy(&frame.payload).into_owned();
            self.state = ClientState::Finished;
            return Err(if reason == REQUIRED {
                NegotiationError::UserAuthenticationRequired
            } else if let Some(retry_after) = throttled_retry_after(&reason) {
                NegotiationError::UserAuthenticationThrottled { retry_after }
            } else {
                NegotiationError::UserAuthenticationFailed { reason }
            });
        }
        let text = || {
            String::from_utf8(frame.payload.clone())
                .map_err(|_| protocol(Peer::Server, "a message that is not text"))
        };
        match (
            std::mem::replace(&mut self.state, ClientState::Finished),
            frame.kind,
        ) {
            (ClientState::AwaitChallenge(mut client), Kind::Challenge) => {
                let response = client.handle_server_first(&text()?).map_err(|e| {
                    let reason = match e {
                        scram::ScramError::TooManyIterations { .. } => format!(
                            "{e} (the limit is the policy's [defaults] user_max_iterations)"
                        ),
                        e => e.to_string(),
                    };
                    NegotiationError::UserAuthenticationFailed { reason }
                })?;
                self.state = ClientState::AwaitServerFinal(client);
                Ok(Step::Send(Frame::new(
                    Kind::Response,
                    response.into_bytes(),
                )))
            }
            (ClientState::AwaitServerFinal(client), Kind::Success) => {
                // The server proves it knows the verifier too: mutual authentication.
                client.handle_server_final(&text()?).map_err(|e| {
                    NegotiationError::UserAuthenticationFailed {
                        reason: format!("the server's proof: {e}"),
                    }
                })?;
                Ok(Step::Done(None, None))
            }
            (ClientState::AwaitSuccess, Kind::Success) => Ok(Step::Done(None, None)),
            (_, kind) => Err(unexpected(&format!("{kind:?}"))),
        }
    }
}

/// The FAILURE reason for a listener that requires a user identity.
const REQUIRED: &str = "user authentication required";
/// The FAILURE reason for every other failure: no oracle.
const FAILED: &str = "user authentication failed";
/// The start of the FAILURE reason for an address refused for its recent failures; the
/// rest says when to try again: `: retry in N s`.
const THROTTLED: &str = "user authentication throttled";

/// The time a client is told to wait, read from a throttled FAILURE reason.
fn throttled_retry_after(reason: &str) -> Option<Duration> {
    let seconds = reason
        .strip_prefix(THROTTLED)?
        .strip_prefix(": retry in ")?
        .strip_suffix(" s")?;
    seconds.parse().ok().map(Duration::from_secs)
}

/// A failure: what the server logs, the FAILURE frame the client gets, and how long to
/// wait before sending it (the throttle's pause for the user name; zero when none).
#[derive(Debug)]
pub struct ServerFailure {
    /// Why, for the server's caller and log.
    pub reason: NegotiationError,
    /// What the client is told.
    pub frame: Frame,
    /// The pause before the frame is sent (see [`failure_pause`]).
    pub delay: Duration,
}

/// How long a front end really pauses before a FAILURE: the throttle's `delay`, cut so the
/// answer still leaves a tenth of the handshake `timeout` before the `deadline` (the
/// client's own deadline started a little earlier, at its connect).
pub(crate) fn failure_pause(
    delay: Duration,
    now: Instant,
    deadline: Instant,
    timeout: Duration,
) -> Duration {
    let left = deadline.saturating_duration_since(now);
    delay.min(left.saturating_sub(timeout / 10))
}

/// The server's side of one exchange.
pub struct ServerExchange {
    directory: Arc<UserDirectory>,
    validator: Arc<ChainValidator>,
    binding: Vec<u8>,
    provider: Arc<CryptoProvider>,
    /// The client's address: failures are counted per source.
    peer: IpAddr,
    scram: Option<scram::Server>,
    /// The canonical user name the client gave, once it gave one.
    user: Option<String>,
    /// When the throttle admitted (and counted) this attempt to prove a user.
    admitted: Option<Instant>,
}

impl ServerExchange {
    /// An exchange on a connection from `peer` whose channel binding is `binding`.
    pub fn new(
        directory: Arc<UserDirectory>,
        validator: Arc<ChainValidator>,
        binding: &[u8],
        provider: Arc<CryptoProvider>,
        peer: IpAddr,
    ) -> Self {
        Self {
            directory,
            validator,
            binding: binding.to_vec(),
            provider,
            peer,
            scram: None,
            user: None,
            admitted: None,
        }
    }

    /// A failed authentication: counted against the source and the user name it gave,
    /// answered generically after the throttle's pause.
    fn failure(&self, reason: NegotiationError, now: Instant) -> ServerFailure {
        let throttle = &self.directory.throttle;
        if self.admitted.is_none() {
            throttle.failed_unadmitted(self.peer, now);
        }
        let delay = match &self.user {
            Some(user) => throttle.failed_as(user, now),
            None => Duration::ZERO,
        };
        ServerFailure {
            reason,
            frame: Frame::new(Kind::Failure, FAILED.as_bytes()),
            delay,
        }
    }

    fn fail(&self, detail: impl Into<String>, now: Instant) -> ServerFailure {
        let reason = NegotiationError::UserAuthenticationFailed {
            reason: detail.into(),
        };
        self.failure(reason, now)
    }

    fn broken(&self, detail: &str, now: Instant) -> ServerFailure {
        self.failure(protocol(Peer::Client, detail), now)
    }

    /// Takes the client's next frame, which arrived at `now`.
    pub fn on_frame(&mut self, frame: Frame, now: Instant) -> Result<Step, ServerFailure> {
        match (frame.kind, self.scram.is_some()) {
            (Kind::Hello, false) => self.on_hello(&frame.payload, now),
            (Kind::Response, true) => {
                let text = std::str::from_utf8(&frame.payload)
                    .map_err(|_| self.broken("a message that is not text", now))?;
                let answer = match self.scram.as_mut() {
                    Some(server) => server.handle_client_final(text),
                    None => return Err(self.broken("unexpected RESPONSE", now)),
                };
                let (final_message, user) = answer.map_err(|e| self.fail(e.to_string(), now))?;
                // `user` is canonical (`canonical_user`), hence always a principal.
                let principal = PrincipalName::parse(&format!("user:{user}")).map_err(|e| {
                    self.fail(format!("the user name is not a principal: {e}"), now)
                })?;
                let admitted = self.admitted.unwrap_or(now);
                self.directory
                    .throttle
                    .succeeded(self.peer, admitted, Some(&user));
                let identity = PeerIdentity {
                    names: vec![principal],
                    chain: Vec::new(),
                    not_before: None,
                    not_after: None,
                    subject: String::new(),
                    proven_by: ProofMethod::Password,
                };
                Ok(Step::Done(
                    Some(Frame::new(Kind::Success, final_message.into_bytes())),
                    Some(identity),
                ))
            }
            (kind, _) => Err(self.broken(&format!("unexpected {kind:?}"), now)),
        }
    }

    fn on_hello(&mut self, payload: &[u8], now: Instant) -> Result<Step, ServerFailure> {
        let (mechanism, data) = parse_hello(payload).map_err(|e| self.broken(&e, now))?;
        // Proving nothing (NONE) is never refused for the address's failures; every proof
        // is, before it is looked at.
        if mechanism != MECH_NONE {
            if let Err(retry_after) = self.directory.throttle.admit(self.peer, now) {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let text = format!("{THROTTLED}: retry in {} s", seconds.max(1));
                return Err(ServerFailure {
                    reason: NegotiationError::UserAuthenticationThrottled {
                        retry_after: Duration::from_secs(seconds.max(1)),
                    },
                    frame: Frame::new(Kind::Failure, text.into_bytes()),
                    delay: Duration::ZERO,
                });
            }
            self.admitted = Some(now);
        }
        match mechanism {
            MECH_NONE => match self.directory.authentication {
                UserAuthentication::Required => Err(ServerFailure {
                    reason: NegotiationError::UserAuthenticationRequired,
                    frame: Frame::new(Kind::Failure, REQUIRED.as_bytes()),
                    delay: Duration::ZERO,
                }),
                _ => Ok(Step::Done(
                    Some(Frame::new(Kind::Success, Vec::new())),
                    None,
                )),
            },
            MECH_SCRAM => {
                let text = std::str::from_utf8(data)
                    .map_err(|_| self.broken("a message that is not text", now))?;
                let snapshot = self.directory.snapshot();
                // Decoys get the count `secsock user add` gives new users
                // (`scram::DEFAULT_ITERATIONS`, the server's default), whatever the real
                // users have: a count copied from them would itself tell them apart.
                let random = self.provider.secure_random;
                let mut server =
                    scram::Server::new(&self.binding, &snapshot.decoy_secret(), random)
                        .map_err(|e| self.fail(e.to_string(), now))?
                        .with_canonical_names(canonical_user);
                let lookup = |user: &str| snapshot.lookup(user);
                let challenge = server
                    .handle_client_first(text, &lookup)
                    .map_err(|e| self.fail(e.to_string(), now))?;
                self.user = server.user().map(str::to_owned);
                self.scram = Some(server);
                Ok(Step::Send(Frame::new(
                    Kind::Challenge,
                    challenge.into_bytes(),
                )))
            }
            MECH_CERT => {
                let identity = self
                    .check_certificate(data)
                    .map_err(|e| self.fail(e, now))?;
                let admitted = self.admitted.unwrap_or(now);
                self.directory.throttle.succeeded(self.peer, admitted, None);
                Ok(Step::Done(
                    Some(Frame::new(Kind::Success, Vec::new())),
                    Some(identity),
                ))
            }
            other => Err(self.broken(&format!("unknown mechanism `{other}`"), now)),
        }
    }

    fn check_certificate(&self, data: &[u8]) -> Result<PeerIdentity, String> {
        let (chain, scheme, signature) = decode_cert_proof(data)?;
        let (leaf, intermediates) = chain.split_first().ok_or("no user certificate")?;
        let path = self
            .validator
            .validate(leaf, intermediates, UnixTime::now(), Usage::ClientAuth)
            .map_err(|e| format!("the user certificate is not trusted: {e}"))?;
        let names: Vec<PrincipalName> = CertificateNames::from_der(leaf)
            .map_err(|e| e.to_string())?
            .within(path.constraints())
            .proven()
            .into_iter()
            .filter(|n| matches!(n, PrincipalName::User(_)))
            .collect();
        if names.is_empty() {
            return Err(
                "the certificate proves no user: a user certificate names a user (email, UPN \
                 or single-component Kerberos SAN), is for client authentication only and \
                 names no machine"
                    .into(),
            );
        }
        let mut message = CERT_CONTEXT.to_vec();
        message.extend_from_slice(&self.binding);
        let cert = EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
        let algorithms = self
            .validator
            .algorithms()
            .mapping
            .iter()
            .find(|(s, _)| *s == scheme)
            .map(|(_, algs)| *algs)
            .ok_or_else(|| format!("unsupported signature scheme {scheme:?}"))?;
        if !algorithms
            .iter()
            .any(|alg| cert.verify_signature(*alg, &message, &signature).is_ok())
        {
            return Err(
                "the signature over this connection's channel binding does not verify".into(),
            );
        }
        // The key's holder signed this connection's binding: the validation may be cached.
        self.validator.remember(&path);
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
        let at = |t: i64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
        Ok(PeerIdentity {
            names,
            chain: chain.clone(),
            not_before: Some(at(parsed.validity().not_before.timestamp())),
            not_after: Some(at(parsed.validity().not_after.timestamp())),
            subject: parsed.subject().to_string(),
            proven_by: ProofMethod::UserCertificate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_input_is_refused() {
        let frame = Frame::new(Kind::Challenge, b"r=abc,s=def,i=4096".to_vec());
        let wire = frame.encode();
        assert_eq!(
            Frame::decode(&wire).unwrap(),
            Some((frame.clone(), wire.len()))
        );
        for cut in 0..wire.len() {
            assert_eq!(
                Frame::decode(&wire[..cut]).unwrap(),
                None,
                "incomplete at {cut}"
            );
        }
        assert!(Frame::decode(&[9, 0, 0])
            .unwrap_err()
            .contains("unknown message type 9"));
        assert!(Frame::decode(&[1, 0xff, 0xff])
            .unwrap_err()
            .contains("exceeds"));
    }

    #[test]
    fn hello_and_certificate_proofs_parse_strictly() {
        let h = hello(MECH_SCRAM, b"p=tls-exporter,,n=a,r=b");
        assert_eq!(
            parse_hello(&h.payload).unwrap(),
            (MECH_SCRAM, &b"p=tls-exporter,,n=a,r=b"[..])
        );
        assert!(parse_hello(&[]).is_err());
        assert!(parse_hello(&[10, b'a']).is_err());
        let chain = vec![CertificateDer::from(vec![1u8, 2, 3])];
        let proof = encode_cert_proof(&chain, SignatureScheme::ED25519, &[9; 64]);
        let (back, scheme, sig) = decode_cert_proof(&proof).unwrap();
        assert_eq!(
            (back, scheme, sig.len()),
            (chain, SignatureScheme::ED25519, 64)
        );
        for cut in 0..proof.len() {
            assert!(
                decode_cert_proof(&proof[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
        let mut long = proof.clone();
        long.push(0);
        assert!(decode_cert_proof(&long).unwrap_err().contains("trailing"));
        assert!(decode_cert_proof(&[0])
            .unwrap_err()
            .contains("no user certificate"));
    }
}

#[cfg(test)]
mod throttling_tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::policy::{FailureLimits, Users};
    use crate::user::users::{add_user, UserDirectory};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const BINDING: [u8; 32] = [0x42; 32];

    struct Server {
        directory: Arc<UserDirectory>,
        validator: Arc<ChainValidator>,
        provider: Arc<CryptoProvider>,
    }

    fn server(file: &Path, per_address: u32) -> Server {
        let verifier = scram::Verifier::new("pencil", b"0123456789abcdef", 4096).unwrap();
        add_user(file, "alice@EXAMPLE.TEST", verifier, &|b: &mut [u8]| {
            b.fill(3)
        })
        .unwrap();
        let users = Users {
            authentication: UserAuthentication::Optional,
            file: Some(file.to_path_buf()),
            domain: None,
            failures: FailureLimits {
                per_address,
                window: Duration::from_secs(60),
                delay: Duration::from_secs(1),
                delay_max: Duration::from_secs(4),
            },
        };
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        Server {
            directory: Arc::new(UserDirectory::new(&users, &[], [1; 32])),
            validator: Arc::new(
                ChainValidator::new(&[], &[], provider.signature_verification_algorithms).unwrap(),
            ),
            provider: Arc::new(provider),
        }
    }

    /// One password exchange from `from` at `now`: the server's last answer.
    fn login(
        server: &Server,
        from: IpAddr,
        user: &str,
        password: &str,
        now: Instant,
    ) -> Result<Option<PeerIdentity>, ServerFailure> {
        let random = |b: &mut [u8]| b.fill(5);
        let mut client = scram::Client::new(user, password, &BINDING, &random).unwrap();
        let mut exchange = ServerExchange::new(
            Arc::clone(&server.directory),
            Arc::clone(&server.validator),
            &BINDING,
            Arc::clone(&server.provider),
            from,
        );
        let hello = hello(MECH_SCRAM, client.client_first().as_bytes());
        let Step::Send(challenge) = exchange.on_frame(hello, now)? else {
            panic!("no challenge");
        };
        let response = client
            .handle_server_first(std::str::from_utf8(&challenge.payload).unwrap())
            .unwrap();
        match exchange.on_frame(Frame::new(Kind::Response, response), now)? {
            Step::Done(_, identity) => Ok(identity),
            Step::Send(frame) => panic!("unexpected {frame:?}"),
        }
    }

    /// Issue 12, item 4: nothing limited online guessing. After `per_address` failures an
    /// address is refused at once, even with the right password, until its window
    /// slides; another address is not; and each failure in a name's run waits longer.
    #[test]
    fn an_address_with_too_many_failures_is_refused_and_a_name_is_slowed_never_locked() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(&dir.path().join("users.toml"), 3);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);

        let mut pauses = Vec::new();
        for (i, user) in ["alice@EXAMPLE.TEST", "alice@example.test", "mallory@X"]
            .into_iter()
            .enumerate()
        {
            let failure = login(&server, A, user, "guess", at(i as u64)).unwrap_err();
            assert!(matches!(
                failure.reason,
                NegotiationError::UserAuthenticationFailed { .. }
            ));
            assert_eq!(failure.frame.payload, FAILED.as_bytes(), "no oracle");
            pauses.push(failure.delay.as_secs());
        }
        // alice's run (both spellings are alice) doubles; mallory's starts at the base.
        assert_eq!(pauses, [1, 2, 1]);

        // A's budget is spent: the right password is refused, unchecked, at once.
        let refused = login(&server, A, "alice@EXAMPLE.TEST", "pencil", at(3)).unwrap_err();
        assert_eq!(
            refused.reason,
            NegotiationError::UserAuthenticationThrottled {
                retry_after: Duration::from_secs(57)
            }
        );
        assert_eq!(refused.delay, Duration::ZERO);
        let told = String::from_utf8(refused.frame.payload.clone()).unwrap();
        assert_eq!(told, "user authentication throttled: retry in 57 s");
        assert_eq!(throttled_retry_after(&told), Some(Duration::from_secs(57)));
        // The client reads it as such.
        let mut client = ClientExchange {
            state: ClientState::AwaitSuccess,
        };
        assert_eq!(
            client.on_frame(refused.frame).unwrap_err(),
            NegotiationError::UserAuthenticationThrottled {
                retry_after: Duration::from_secs(57)
            }
        );

        // B is not A: alice logs in from B, at once, despite her run of failures.
        let identity = login(&server, B, "user:alice@example.test", "pencil", at(3)).unwrap();
        let names: Vec<String> = identity
            .unwrap()
            .names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["user:alice@EXAMPLE.TEST"]);
        // That success ended her run: her next failure pauses for the base again.
        let failure = login(&server, B, "alice@EXAMPLE.TEST", "guess", at(4)).unwrap_err();
        assert_eq!(failure.delay, Duration::from_secs(1));

        // A may try again once its first failure is a window old.
        assert!(login(&server, A, "alice@EXAMPLE.TEST", "pencil", at(59)).is_err());
        assert!(login(&server, A, "alice@EXAMPLE.TEST", "pencil", at(60)).is_ok());
    }

    #[test]
    fn proving_nothing_is_not_throttled_and_a_pause_fits_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(&dir.path().join("users.toml"), 1);
        let t0 = Instant::now();
        login(&server, A, "alice@EXAMPLE.TEST", "guess", t0).unwrap_err();
        let mut exchange = ServerExchange::new(
            Arc::clone(&server.directory),
            Arc::clone(&server.validator),
            &BINDING,
            Arc::clone(&server.provider),
            A,
        );
        assert!(matches!(
            exchange.on_frame(hello(MECH_NONE, &[]), t0),
            Ok(Step::Done(_, None))
        ));

        let second = Duration::from_secs(1);
        let deadline = t0 + 10 * second;
        assert_eq!(
            failure_pause(2 * second, t0, deadline, 10 * second),
            2 * second
        );
        assert_eq!(
            failure_pause(8 * second, t0 + 5 * second, deadline, 10 * second),
            4 * second,
            "the answer leaves a tenth of the timeout before the deadline"
        );
        assert_eq!(
            failure_pause(second, t0 + 11 * second, deadline, 10 * second),
            Duration::ZERO
        );
    }
}
