//! The core shared by every front end: one TLS connection with secsock's rules around it.
//!
//! A `Session` owns the rustls connection and knows, for its side, what must be true
//! before the connection may carry application data: the handshake completed, a resumed
//! session's stored chain still validates against the current anchors and target name,
//! and (client) the peer proved the target name or the mismatch was explicitly tolerated.
//! It turns rustls failures into [`NegotiationError`]s and builds the [`SecurityInfo`].
//! It does no I/O: the blocking and async front ends move the bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::{ClientConnection, Connection, HandshakeKind, ServerConnection};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::accounts::AccountRule;
use crate::core::tls::{ConnectionTickets, CryptoContext};
use crate::error::{Error, NegotiationError, Peer};
use crate::info::{Id128, InfoFlags, KeyExchange, PeerIdentity, ProofMethod, SecurityInfo};
use crate::name::constraints::{PathConstraints, UNCONSTRAINED};
use crate::name::{CertificateNames, PeerTargetName, PrincipalName};
use crate::verify::{negotiation_error_from_tls, ServerIdentityVerifier, Usage};

/// What only the client side keeps.
struct ClientSide {
    target: Option<PeerTargetName>,
    target_key: String,
    optional_name: bool,
    tickets: Arc<ConnectionTickets>,
    /// The target and the server's address: what the context remembers once a handshake
    /// completed, so that `ALLOW_INSECURE` never falls back for it (see `fallback`).
    tls_peer: String,
}

/// What carries a connection's bytes: TLS, or clear text where the settings allowed it
/// (`ALLOW_INSECURE` fallback, `SKIP_ENFORCEMENT`).
// TLS is the common case: boxing it would cost every connection an allocation to save
// space only in the rare clear one.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Link {
    /// Secured.
    Tls(Session),
    /// Clear text, and why.
    Clear(Clear),
}

/// A connection in clear text.
pub(crate) struct Clear {
    /// Why it is not secured.
    pub reason: NegotiationError,
    /// How long `close` waits for the peer.
    pub linger: Duration,
    connection_id: u128,
}

impl Clear {
    pub(crate) fn new(reason: NegotiationError, ctx: &CryptoContext) -> Self {
        Self {
            reason,
            linger: ctx.handshake_timeout,
            connection_id: ctx.new_id(),
        }
    }

    /// The truth: nothing protects it, and why.
    pub(crate) fn info(&self) -> SecurityInfo {
        SecurityInfo {
            connection_id: Some(Id128(self.connection_id)),
            negotiation_error: Some(self.reason.clone()),
            ..SecurityInfo::default()
        }
    }
}

impl Link {
    /// What acting as the peer maps (see [`Session::impersonation_request`]); a connection
    /// in clear text has proven nobody (`None`).
    pub(crate) fn impersonation_request(&self) -> Option<(&[AccountRule], Vec<String>)> {
        match self {
            Link::Tls(session) => Some(session.impersonation_request()),
            Link::Clear(_) => None,
        }
    }

    /// What protects the connection.
    pub(crate) fn info(&self) -> SecurityInfo {
        match self {
            Link::Tls(session) => session.info(),
            Link::Clear(clear) => clear.info(),
        }
    }

    /// How long a clean close waits for the peer.
    pub(crate) fn linger(&self) -> Duration {
        match self {
            Link::Tls(session) => session.handshake_timeout(),
            Link::Clear(clear) => clear.linger,
        }
    }
}

pub(crate) struct Session {
    conn: Connection,
    ctx: Arc<CryptoContext>,
    /// The other side of the connection.
    peer: Peer,
    client: Option<ClientSide>,
    /// Server side: the session id offered to tickets (replaced by the original one when
    /// the client resumes).
    server_session_id: u128,
    resumption_seen: bool,
    connection_id: u128,
    rekey: Rekey,
    key_updates: u64,
    /// The first byte the peer sent, if any: tells a peer that does not speak TLS from
    /// one that refused us (see `fallback`).
    first_peer_byte: Option<u8>,
    /// What the completed handshake established; `None` before.
    established: Option<Established>,
}

/// The facts a completed handshake settled that the TLS connection does not keep.
struct Established {
    resumed: bool,
    session_id: u128,
    /// Boxed: rare, and every connection would carry its size.
    negotiation_error: Option<Box<NegotiationError>>,
    /// The user (application) identity the peer proved after the handshake.
    application: Option<Box<PeerIdentity>>,
    /// The name constraints of the path the peer's chain validated through (`None`: none),
    /// which the names its certificate proves are read under.
    constraints: Option<Arc<PathConstraints>>,
}

/// When to send a TLS KeyUpdate (the crypto policy's `rekey_after`).
struct Rekey {
    bytes_limit: Option<u64>,
    time_limit: Option<Duration>,
    bytes: u64,
    since: Instant,
}

/// See [`Session::user_step`].
pub(crate) enum UserStep {
    Skip,
    Refuse,
    Exchange { binding: [u8; 32] },
}

impl Session {
    /// A client session expecting `target` (or any peer proven under the anchors) at
    /// `peer`.
    pub(crate) fn client(
        ctx: Arc<CryptoContext>,
        target: Option<PeerTargetName>,
        optional_name: bool,
        peer: SocketAddr,
    ) -> Result<Self, Error> {
        let target_key = match &target {
            None => "any".to_string(),
            Some(t) => format!(
                "{}{}:{}",
                if t.is_raw() { "raw" } else { "name" },
                if optional_name { "/optional" } else { "" },
                t.as_str()
            ),
        };
        let sni = target
            .as_ref()
            .and_then(|t| t.sni_host())
            .and_then(|h| ServerName::try_from(h.to_string()).ok());
        let verifier =
            || ServerIdentityVerifier::new(ctx.validator.clone(), target.clone(), optional_name);
        let (config, tickets) = ctx.client_config(&target_key, verifier, sni.is_some());
        tickets.session.set(ctx.new_id());
        let server_name = sni.unwrap_or(ServerName::IpAddress(peer.ip().into()));
        let tls_peer = format!("{target_key} at {peer}");
        let conn = ClientConnection::new(config, server_name).map_err(|e| Error::Config {
            policy: ctx.policy.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::with(
            Connection::Client(conn),
            ctx,
            Peer::Server,
            Some(ClientSide {
                target,
                target_key,
                optional_name,
                tickets,
                tls_peer,
            }),
        ))
    }

    /// A server session for one accepted connection, with the context's configuration or
    /// `config` (one restricted to a listener's peer target names).
    pub(crate) fn server(
        ctx: Arc<CryptoContext>,
        config: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Self, Error> {
        let mut conn = ServerConnection::new(config.unwrap_or_else(|| ctx.server.clone()))
            .map_err(|e| Error::Config {
                policy: ctx.policy.name.clone(),
                reason: e.to_string(),
            })?;
        let session_id = ctx.new_id();
        conn.set_resumption_data(&session_id.to_be_bytes());
        let mut session = Self::with(Connection::Server(conn), ctx, Peer::Client, None);
        session.server_session_id = session_id;
        Ok(session)
    }

    fn with(
        conn: Connection,
        ctx: Arc<CryptoContext>,
        peer: Peer,
        client: Option<ClientSide>,
    ) -> Self {
        let connection_id = ctx.new_id();
        let rekey = Rekey {
            bytes_limit: ctx.policy.rekey_after.bytes,
            time_limit: ctx.policy.rekey_after.time,
            bytes: 0,
            since: Instant::now(),
        };
        Self {
            conn,
            ctx,
            peer,
            client,
            server_session_id: 0,
            resumption_seen: false,
            connection_id,
            rekey,
            key_updates: 0,
            first_peer_byte: None,
            established: None,
        }
    }

    /// The other side.
    pub(crate) fn peer(&self) -> Peer {
        self.peer
    }

    /// The policy's handshake timeout.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.ctx.handshake_timeout
    }

    /// What the handshake needs next: bytes sent (a flight is queued), bytes received, or
    /// nothing (it completed; then [`Session::complete`]). Sending comes first, so that a
    /// flight is never held back while waiting for the peer's.
    pub(crate) fn handshake_need(&self) -> Need {
        if self.conn.wants_write() {
            Need::Send
        } else if self.conn.is_handshaking() {
            Need::Receive
        } else {
            Need::Done
        }
    }

    /// Whether TLS bytes are queued to be sent.
    pub(crate) fn wants_send(&self) -> bool {
        self.conn.wants_write()
    }

    /// Sends queued TLS bytes to `io` (one write); returns how many.
    pub(crate) fn send(&mut self, io: &mut dyn std::io::Write) -> std::io::Result<usize> {
        self.conn.write_tls(io)
    }

    /// During the handshake: reads TLS bytes from `io` (remembering the first byte the peer
    /// sent) and processes them. The outer error is the socket's, as `io` gave it (the
    /// front end decides what `WouldBlock` means; see [`Session::handshake_io_error`]); the
    /// inner one is the negotiation's (the peer closed, or the handshake failed: rustls may
    /// have queued an alert that says why; send it, best effort).
    pub(crate) fn handshake_receive(
        &mut self,
        io: &mut dyn std::io::Read,
    ) -> std::io::Result<Result<(), NegotiationError>> {
        if self.read_handshake_bytes(io)? == 0 {
            return Ok(Err(NegotiationError::PeerClosed { peer: self.peer }));
        }
        if let Err(e) = self.conn.process_new_packets() {
            return Ok(Err(self.failure(&e)));
        }
        self.after_packets();
        Ok(Ok(()))
    }

    /// After the handshake: reads TLS bytes from `io` and processes them; returns how many
    /// were read (0: the peer closed TCP). A TLS failure is an `io::Error` that says what
    /// (an alert may be queued: send it). What the peer asked for (a KeyUpdate answer) is
    /// queued to be sent.
    pub(crate) fn receive(&mut self, io: &mut dyn std::io::Read) -> std::io::Result<usize> {
        let read = self.conn.read_tls(io)?;
        if let Err(e) = self.conn.process_new_packets() {
            return Err(protocol_error(self, &e));
        }
        Ok(read)
    }

    /// Plaintext the peer sent, into `buf`: `Ok(0)` only after its close_notify;
    /// `WouldBlock` when more TLS bytes are needed; a connection that ended without
    /// close_notify is an `UnexpectedEof` error that says the data may be truncated.
    pub(crate) fn read_plain(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Read;
        match self.conn.reader().read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(truncation_error(self.peer))
            }
            other => other,
        }
    }

    /// Encrypts application bytes into queued TLS records (a KeyUpdate first when the
    /// policy's `rekey_after` is reached); returns how many bytes it took.
    pub(crate) fn write_plain(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        use std::io::Write;
        let n = self.conn.writer().write_vectored(bufs)?;
        self.note_sent(n);
        Ok(n)
    }

    /// Queues close_notify: the peer reads a clean end of data after what was written.
    pub(crate) fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// On the server, a resumed session keeps its original session id, also in the tickets
    /// this connection will issue (they are sent when the client's Finished arrives, a
    /// later flight than the ClientHello that carried the ticket).
    fn after_packets(&mut self) {
        if self.resumption_seen {
            return;
        }
        if let Connection::Server(conn) = &mut self.conn {
            if let Some(data) = conn.received_resumption_data() {
                if let Ok(bytes) = <[u8; 16]>::try_from(data) {
                    self.server_session_id = u128::from_be_bytes(bytes);
                    conn.set_resumption_data(&bytes);
                }
                self.resumption_seen = true;
            }
        }
    }

    /// Reads TLS bytes from `io` into the connection during the handshake, remembering the
    /// first byte the peer sent.
    fn read_handshake_bytes(&mut self, io: &mut dyn std::io::Read) -> std::io::Result<usize> {
        let mut first = FirstByte { io, first: None };
        let read = self.conn.read_tls(&mut first);
        if self.first_peer_byte.is_none() {
            self.first_peer_byte = first.first;
        }
        read
    }

    /// The first byte the peer sent, if it sent any.
    pub(crate) fn first_peer_byte(&self) -> Option<u8> {
        self.first_peer_byte
    }

    /// Client side: whether a handshake with this target at this address completed before
    /// (then `ALLOW_INSECURE` never falls back; see [`crate::core::fallback::client_fallback`]).
    pub(crate) fn peer_spoke_tls_before(&self) -> bool {
        self.client
            .as_ref()
            .is_some_and(|client| self.ctx.spoke_tls(&client.tls_peer))
    }

    /// Maps a socket failure during the handshake (see [`negotiation_io_error`]).
    pub(crate) fn handshake_io_error(&self, e: std::io::Error) -> Error {
        negotiation_io_error(e, self.peer, self.handshake_timeout())
    }

    /// Whether the user-authentication step was negotiated (ALPN).
    pub(crate) fn user_auth_negotiated(&self) -> bool {
        self.conn.alpn_protocol() == Some(crate::user::step::ALPN)
    }

    /// What the user-authentication step must do after this handshake: nothing, refuse
    /// (a server whose policy requires it, with a client that did not negotiate it), or
    /// the exchange bound to this connection's channel binding. Both front ends ask this.
    pub(crate) fn user_step(&self) -> Result<UserStep, NegotiationError> {
        if self.user_auth_negotiated() {
            return Ok(UserStep::Exchange {
                binding: self.channel_binding()?,
            });
        }
        let required = self.ctx.users.authentication == crate::policy::UserAuthentication::Required;
        Ok(if self.peer == Peer::Client && required {
            UserStep::Refuse
        } else {
            UserStep::Skip
        })
    }

    /// This connection's RFC 9266 `tls-exporter` channel binding (32 bytes).
    pub(crate) fn channel_binding(&self) -> Result<[u8; 32], NegotiationError> {
        self.conn
            .export_keying_material([0u8; 32], crate::user::step::EXPORTER_LABEL, Some(b""))
            .map_err(|e| NegotiationError::Protocol {
                peer: self.peer,
                detail: format!("no channel binding: {e}"),
            })
    }

    /// The platform state this connection was made with.
    pub(crate) fn context(&self) -> Arc<CryptoContext> {
        self.ctx.clone()
    }

    /// Records the user identity the peer proved.
    pub(crate) fn set_application(&mut self, identity: Option<PeerIdentity>) {
        if let Some(established) = &mut self.established {
            established.application = identity.map(Box::new);
        }
    }

    /// What acting as the peer maps: the policy's `[[accounts]]` rules, and the peer's names
    /// (its application identity's if it proved one, else its machine identity's). The
    /// front end looks the account up and becomes it (`impersonate`), where blocking on
    /// the name service is allowed.
    pub(crate) fn impersonation_request(&self) -> (&[AccountRule], Vec<String>) {
        (&self.ctx.users.accounts, self.impersonation_names())
    }

    /// The peer's names to map for impersonation: its application identity's if it proved
    /// one, else its machine identity's.
    fn impersonation_names(&self) -> Vec<String> {
        let info = self.info();
        // A DNS name is shorthand for `host/NAME` (SPEC §3): rules may use either spelling,
        // and rule order still decides.
        let mut names: Vec<String> = Vec::new();
        if let Some(identity) = info
            .peer_application
            .as_ref()
            .or(info.peer_machine.as_ref())
        {
            for name in &identity.names {
                names.push(name.to_string());
                if let PrincipalName::Dns(dns) = name {
                    names.push(format!("host/{}", dns.as_str()));
                }
            }
        }
        names
    }

    /// The reason a failed handshake gives the caller.
    pub(crate) fn failure(&self, error: &rustls::Error) -> NegotiationError {
        negotiation_error_from_tls(error, self.peer)
    }

    /// Checks what rustls does not check on resumption and settles the ids. Called once,
    /// when the handshake has completed; afterwards [`Session::info`] describes the
    /// connection.
    pub(crate) fn complete(&mut self) -> Result<(), NegotiationError> {
        let resumed = self.conn.handshake_kind() == Some(HandshakeKind::Resumed);
        let chain = self.conn.peer_certificates().unwrap_or_default();
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(NegotiationError::PeerSentNoCertificate);
        };
        let usage = match self.client {
            Some(_) => Usage::ServerAuth,
            None => Usage::ClientAuth,
        };
        // The peer has now proven it holds the leaf's key (a resumed one did when its
        // ticket was issued), so the validation may be cached. A resumed session's stored
        // chain, which rustls restored without verifying it, is validated again: it may
        // have expired since.
        let path = self
            .ctx
            .validator
            .confirm(leaf, intermediates, UnixTime::now(), usage)
            .map_err(|e| negotiation_error_from_tls(&e, self.peer));
        let path = match (path, &self.client) {
            (Ok(path), _) => path,
            (Err(e), Some(client)) => {
                self.ctx.forget_tickets(&client.target_key);
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        };
        let mut negotiation_error = None;
        let session_id = match &self.client {
            Some(client) => {
                // On a full handshake the verifier refused a mismatch unless it was to be
                // tolerated; a resumed one skipped the verifier. Parse the names only when
                // there is something left to check.
                let mismatch = match &client.target {
                    // A leaf this target's verifier already proved needs no second look.
                    Some(_) if client.tickets.target_proves(leaf, &path) => None,
                    Some(target) if resumed || client.optional_name => {
                        let names = CertificateNames::from_der(leaf)
                            .map_err(|e| NegotiationError::UntrustedChain {
                                peer: self.peer,
                                reason: format!("its certificate cannot be parsed: {e}"),
                            })?
                            .within(path.constraints());
                        (!target.is_proven_by(&names)).then(|| NegotiationError::PeerNameMismatch {
                            expected: target.as_str().to_string(),
                            presented: names.presented(),
                        })
                    }
                    _ => None,
                };
                if let Some(m) = mismatch
                    .as_ref()
                    .filter(|_| resumed && !client.optional_name)
                {
                    self.ctx.forget_tickets(&client.target_key);
                    return Err(m.clone());
                }
                negotiation_error = mismatch;
                self.ctx.remember_tls_peer(&client.tls_peer);
                let id = match (resumed, client.tickets.offered_session()) {
                    (true, Some(original)) => original,
                    _ => client.tickets.session.get(),
                };
                client.tickets.session.set(id);
                id
            }
            None => self.server_session_id,
        };
        self.established = Some(Established {
            resumed,
            session_id,
            negotiation_error: negotiation_error.map(Box::new),
            application: None,
            constraints: path.shared_constraints(),
        });
        Ok(())
    }

    /// What protects the connection and who the peer proved to be, built from the TLS
    /// connection's state when asked (a stream keeps no second copy of the peer's chain).
    pub(crate) fn info(&self) -> SecurityInfo {
        let Some(established) = &self.established else {
            return SecurityInfo::default();
        };
        let proven_by = if established.resumed {
            ProofMethod::ResumedSession
        } else {
            ProofMethod::Certificate
        };
        let constraints = established.constraints.as_deref().unwrap_or(&UNCONSTRAINED);
        let peer_machine = self
            .conn
            .peer_certificates()
            .and_then(|chain| identity(chain, proven_by, constraints));
        let peer_application = established.application.as_deref().cloned();
        let flags = if peer_application.is_some() {
            InfoFlags::SECURED | InfoFlags::ENCRYPTED | InfoFlags::IMPERSONATED
        } else {
            InfoFlags::SECURED | InfoFlags::ENCRYPTED
        };
        SecurityInfo {
            flags,
            peer_machine,
            peer_application,
            protocol_version: self.conn.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                other => format!("{other:?}"),
            }),
            cipher_suite: self.conn.negotiated_cipher_suite().map(|s| {
                let suite = s.suite();
                suite
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{suite:?}"))
            }),
            key_exchange_group: self.conn.negotiated_key_exchange_group().map(|g| {
                let name = format!("{:?}", g.name());
                KeyExchange {
                    post_quantum: name.to_ascii_uppercase().contains("MLKEM"),
                    name,
                }
            }),
            resumed: established.resumed,
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            session_id: Some(Id128(established.session_id)),
            connection_id: Some(Id128(self.connection_id)),
            negotiation_error: established.negotiation_error.as_deref().cloned(),
        }
    }

    /// Counts application bytes sent and starts a KeyUpdate when the policy's
    /// `rekey_after` limit is reached.
    fn note_sent(&mut self, bytes: usize) {
        if !self.rekey.record(bytes as u64, Instant::now()) {
            return;
        }
        match self.conn.refresh_traffic_keys() {
            Ok(()) => {
                self.key_updates += 1;
                tracing::debug!(
                    updates = self.key_updates,
                    "sent TLS KeyUpdate (policy rekey_after)"
                );
            }
            Err(e) => tracing::warn!("cannot update traffic keys: {e}"),
        }
    }

    /// How many KeyUpdates this side has started.
    pub(crate) fn key_updates(&self) -> u64 {
        self.key_updates
    }
}

impl Rekey {
    /// Counts `bytes` sent at `now`; true when a KeyUpdate is due (and restarts the count).
    fn record(&mut self, bytes: u64, now: Instant) -> bool {
        self.bytes = self.bytes.saturating_add(bytes);
        let by_bytes = self.bytes_limit.is_some_and(|limit| self.bytes >= limit);
        let by_time = self
            .time_limit
            .is_some_and(|limit| now.saturating_duration_since(self.since) >= limit);
        if by_bytes || by_time {
            self.bytes = 0;
            self.since = now;
        }
        by_bytes || by_time
    }
}

/// The peer identity a chain proves under its path's name constraints (the leaf is parsed
/// once, for names and validity).
fn identity(
    chain: &[CertificateDer<'static>],
    proven_by: ProofMethod,
    constraints: &PathConstraints,
) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    let validity = cert.validity();
    Some(PeerIdentity {
        names: CertificateNames::from_x509(&cert)
            .within(constraints)
            .proven(),
        chain: chain.to_vec(),
        not_before: Some(system_time(validity.not_before.timestamp())),
        not_after: Some(system_time(validity.not_after.timestamp())),
        subject: cert.subject().to_string(),
        proven_by,
    })
}

fn system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

/// Maps a socket failure while a connection is being secured: the peer going away is the
/// peer's failure (`PeerClosed`), a socket timeout is the handshake timeout, anything else
/// is an I/O error.
pub(crate) fn negotiation_io_error(e: std::io::Error, peer: Peer, timeout: Duration) -> Error {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::WouldBlock | K::TimedOut => NegotiationError::Timeout { after: timeout }.into(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected => {
            NegotiationError::PeerClosed { peer }.into()
        }
        _ => Error::Io(e),
    }
}

/// What a sequence needs from its front end next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Send the queued TLS bytes.
    Send,
    /// Receive TLS bytes.
    Receive,
    /// Nothing more: the sequence is done.
    Done,
}

/// The error a read or write reports for a TLS failure after the handshake.
fn protocol_error(session: &Session, e: &rustls::Error) -> std::io::Error {
    match e {
        rustls::Error::AlertReceived(_) | rustls::Error::InvalidCertificate(_) => {
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, session.failure(e))
        }
        _ => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("TLS error from the {}: {e}", session.peer()),
        ),
    }
}

/// The error for a connection that ended without close_notify.
pub(crate) fn truncation_error(peer: Peer) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!(
            "the {peer} closed the connection without close_notify: the data may have been truncated"
        ),
    )
}

/// A reader that remembers the first byte it delivered.
struct FirstByte<'a> {
    io: &'a mut dyn std::io::Read,
    first: Option<u8>,
}

impl std::io::Read for FirstByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.io.read(buf)?;
        if n > 0 && self.first.is_none() {
            self.first = Some(buf[0]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rekey_is_due_at_the_byte_limit_or_the_time_limit() {
        let start = Instant::now();
        let mut r = Rekey {
            bytes_limit: Some(1000),
            time_limit: Some(Duration::from_secs(60)),
            bytes: 0,
            since: start,
        };
        assert!(!r.record(600, start));
        assert!(r.record(400, start), "1000 bytes reached");
        assert!(!r.record(999, start), "the count restarted");
        assert!(
            r.record(0, start + Duration::from_secs(61)),
            "a minute passed"
        );
        assert!(
            !r.record(1, start + Duration::from_secs(62)),
            "the clock restarted"
        );

        let mut never = Rekey {
            bytes_limit: None,
            time_limit: None,
            bytes: 0,
            since: start,
        };
        assert!(!never.record(u64::MAX, start + Duration::from_secs(1 << 30)));
        assert!(!never.record(u64::MAX, start), "saturates, never wraps");
    }
}
