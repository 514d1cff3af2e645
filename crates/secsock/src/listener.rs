//! A listening secured socket: what `bind` + `listen` give on a Windows socket whose
//! security was set before bind. Every accepted connection inherits the listener's
//! settings and is handshaked and checked before the application sees it.
//!
//! What an accepted connection must satisfy is the listener's [`Admission`], shared with
//! the async front end: the mode (TLS; peek first with `ALLOW_INSECURE`; none with
//! `SKIP_ENFORCEMENT`) and the peer target names that apply to the client's address.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::ServerConfig;

use crate::error::Peer;
use crate::error::{Error, NegotiationError};
use crate::fallback::{self, FirstBytes, CLEAR_TEXT_WAIT};
use crate::name::PeerTargetName;
use crate::peers::{AddressPrefix, PeerNames};
use crate::session::{negotiation_io_error, Clear, Session};
use crate::settings::SecuritySettings;
use crate::socket::Secured;
use crate::stream::SecureStream;
use crate::tls::client_hello_offers;

/// How an accepted connection is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// TLS, always.
    Tls,
    /// Look at the first bytes: TLS for a ClientHello, clear for anything else
    /// (`ALLOW_INSECURE`).
    Peek,
    /// No handshake (`SKIP_ENFORCEMENT`).
    Skip,
}

/// The names a configuration admits, and whether it carries the user-authentication ALPN.
type RestrictedKey = (Vec<PeerTargetName>, bool);

/// What a listener requires of the connections it accepts.
#[derive(Debug)]
pub(crate) struct Admission {
    pub secured: Secured,
    names: RwLock<PeerNames>,
    /// Server configurations restricted to a set of names, built once per set (and per
    /// whether the user-authentication ALPN is offered).
    restricted: Mutex<HashMap<RestrictedKey, Arc<ServerConfig>>>,
}

impl Admission {
    pub(crate) fn new(secured: Secured, name: Option<PeerTargetName>) -> Arc<Self> {
        let admission = Self {
            secured,
            names: RwLock::default(),
            restricted: Mutex::default(),
        };
        if let Some(name) = name {
            admission.bind(name, AddressPrefix::Any);
        }
        Arc::new(admission)
    }

    /// How a connection from `ip` is treated. An address that peer target names apply to
    /// always gets TLS, also with `ALLOW_INSECURE`: a client restricted to proving a name
    /// must not get in by not speaking TLS at all.
    pub(crate) fn mode_for(&self, ip: IpAddr) -> Mode {
        let settings = &self.secured.settings;
        if settings.skips_enforcement() {
            Mode::Skip
        } else if settings.allows_insecure() && !self.restricts(ip) {
            Mode::Peek
        } else {
            Mode::Tls
        }
    }

    /// Whether peer target names apply to `ip`.
    fn restricts(&self, ip: IpAddr) -> bool {
        self.names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .bindings()
            .iter()
            .any(|(_, prefix)| prefix.contains(ip))
    }

    pub(crate) fn bind(&self, name: PeerTargetName, peers: AddressPrefix) {
        let name = if self.secured.settings.raw_peer_name() {
            name.to_raw()
        } else {
            name
        };
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .bind(name, peers);
    }

    pub(crate) fn delete(&self, peers: AddressPrefix) -> usize {
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .delete(peers)
    }

    pub(crate) fn names(&self) -> PeerNames {
        self.names.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The server session for a client at `ip` (restricted to the names that apply
    /// there) that does or does not offer the user-authentication ALPN.
    pub(crate) fn session_for(&self, ip: IpAddr, user_alpn: bool) -> Result<Session, Error> {
        let ctx = &self.secured.ctx;
        let allowed = self
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .applicable(ip);
        if allowed.is_empty() {
            return Session::server(ctx.clone(), Some(ctx.server_config(user_alpn)));
        }
        let mut restricted = self.restricted.lock().unwrap_or_else(|p| p.into_inner());
        let key = (allowed, user_alpn);
        let config = match restricted.get(&key) {
            Some(config) => config.clone(),
            None => {
                let config = ctx
                    .restricted_server_config(key.0.clone(), user_alpn)
                    .map_err(|e| Error::Config {
                        policy: ctx.policy.name.clone(),
                        reason: e.to_string(),
                    })?;
                restricted.insert(key, config.clone());
                config
            }
        };
        Session::server(ctx.clone(), Some(config))
    }

    /// A connection in clear text, with `reason`.
    pub(crate) fn clear(&self, reason: NegotiationError) -> Clear {
        Clear::new(reason, &self.secured.ctx)
    }
}

/// A listening socket whose accepted connections are secured.
pub struct SecureListener {
    listener: TcpListener,
    admission: Arc<Admission>,
}

impl std::fmt::Debug for SecureListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureListener")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("settings", &self.admission.secured.settings)
            .finish()
    }
}

impl SecureListener {
    pub(crate) fn new(listener: TcpListener, admission: Arc<Admission>) -> Self {
        Self {
            listener,
            admission,
        }
    }

    /// Accepts one connection and secures it in the calling thread. A peer that fails the
    /// handshake yields an error for that connection only; keep accepting. Servers that
    /// must not let one slow peer delay the next use [`accept_pending`](Self::accept_pending)
    /// and run each handshake on its own thread.
    pub fn accept(&self) -> Result<SecureStream, Error> {
        self.accept_pending()?.handshake()
    }

    /// Accepts one TCP connection without securing it yet: call
    /// [`PendingStream::handshake`] (for instance on a worker thread). No application byte
    /// can be read or written before that succeeds.
    pub fn accept_pending(&self) -> io::Result<PendingStream> {
        let (socket, peer_addr) = self.listener.accept()?;
        Ok(PendingStream {
            socket,
            peer_addr,
            accepted: Instant::now(),
            admission: self.admission.clone(),
        })
    }

    /// Allows `name` to connect from `peers` (`WSASetSocketPeerTargetName` on a listener).
    /// Once any name applies to a client's address, that client must prove one of the
    /// names that apply there; from addresses no name applies to, any principal proven
    /// under the trust anchors may connect. Takes effect for handshakes that start later.
    pub fn set_peer_target_name(&self, name: PeerTargetName, peers: AddressPrefix) {
        self.admission.bind(name, peers);
    }

    /// Removes every name bound to exactly `peers` (`WSADeleteSocketPeerTargetName`);
    /// returns how many were removed.
    pub fn delete_peer_target_name(&self, peers: AddressPrefix) -> usize {
        self.admission.delete(peers)
    }

    /// The peer target names in force.
    pub fn peer_target_names(&self) -> PeerNames {
        self.admission.names()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The settings every accepted connection inherits.
    pub fn security_settings(&self) -> &SecuritySettings {
        &self.admission.secured.settings
    }
}

impl AsFd for SecureListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl AsRawFd for SecureListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

/// An accepted TCP connection whose handshake has not run yet.
#[derive(Debug)]
pub struct PendingStream {
    socket: TcpStream,
    peer_addr: SocketAddr,
    accepted: Instant,
    admission: Arc<Admission>,
}

/// What a listener with `ALLOW_INSECURE` saw first.
pub(crate) enum Peeked {
    ClientHello,
    NotTls,
    Nothing,
}

impl Peeked {
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Peeked> {
        match fallback::classify_first_bytes(bytes) {
            FirstBytes::ClientHello => Some(Peeked::ClientHello),
            FirstBytes::NotTls => Some(Peeked::NotTls),
            FirstBytes::NeedMore => None,
        }
    }
}

impl PendingStream {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Runs and checks the handshake, within the policy's handshake timeout counted from
    /// the moment the connection was accepted (or, as the listener's settings say, serves
    /// it in clear: the query tells which).
    pub fn handshake(self) -> Result<SecureStream, Error> {
        let admission = self.admission.clone();
        match admission.mode_for(self.peer_addr.ip()) {
            Mode::Skip => {
                let clear = admission.clear(NegotiationError::EnforcementSkipped);
                return SecureStream::clear(self.socket, self.peer_addr, clear);
            }
            Mode::Peek => match self.peek()? {
                Peeked::ClientHello => {}
                seen @ (Peeked::NotTls | Peeked::Nothing) => {
                    let reason = fallback::server_fallback_reason(matches!(seen, Peeked::Nothing));
                    return SecureStream::clear(
                        self.socket,
                        self.peer_addr,
                        admission.clear(reason),
                    );
                }
            },
            Mode::Tls => {}
        }
        let user_alpn = self.offers_user_alpn()?;
        let session = admission.session_for(self.peer_addr.ip(), user_alpn)?;
        SecureStream::handshake(self.socket, self.peer_addr, session, self.accepted)
    }

    /// Looks at the client's first bytes without consuming them, for at most
    /// [`CLEAR_TEXT_WAIT`] (and the handshake timeout).
    fn peek(&self) -> Result<Peeked, Error> {
        let limit = CLEAR_TEXT_WAIT.min(self.admission.secured.ctx.handshake_timeout);
        Ok(
            match self.peek_until(self.accepted + limit, 6, Peeked::from_bytes)? {
                (Some(verdict), _) => verdict,
                (None, 0) => Peeked::Nothing,
                // Some bytes consistent with a ClientHello: the handshake is left to judge.
                (None, _) => Peeked::ClientHello,
            },
        )
    }

    /// Whether the client's ClientHello offers the user-authentication ALPN (only asked
    /// on listeners with user authentication on; see `CryptoContext::server_config`).
    fn offers_user_alpn(&self) -> Result<bool, Error> {
        let ctx = &self.admission.secured.ctx;
        if !ctx.needs_alpn_choice() {
            return Ok(true);
        }
        let decide = |bytes: &[u8]| client_hello_offers(bytes, crate::userauth::ALPN);
        // Undecided at the deadline: the handshake will time out anyway.
        Ok(self
            .peek_until(self.accepted + ctx.handshake_timeout, PEEK_LIMIT, decide)?
            .0
            .unwrap_or(false))
    }

    /// Peeks at up to `limit` bytes until `decide` gives an answer or `deadline` passes;
    /// also says how many bytes it last saw.
    fn peek_until<T>(
        &self,
        deadline: Instant,
        limit: usize,
        decide: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<(Option<T>, usize), Error> {
        let mut buf = vec![0u8; limit];
        let mut seen = 0;
        loop {
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Ok((None, seen));
            };
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.peek(&mut buf) {
                Ok(0) => return Err(NegotiationError::PeerClosed { peer: Peer::Client }.into()),
                Ok(n) => {
                    seen = n;
                    if let Some(verdict) = decide(&buf[..n]) {
                        return Ok((Some(verdict), n));
                    }
                    if n == limit {
                        return Ok((None, n));
                    }
                    // More is arriving in pieces: look again shortly.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A client that resets while we look is that client's failure.
                Err(e) => return Err(negotiation_io_error(e, Peer::Client, CLEAR_TEXT_WAIT)),
            }
        }
    }
}

/// The most a listener peeks at to read a ClientHello's ALPN (a ClientHello with a
/// post-quantum key share is about 1.5 KB; rustls refuses more than 64 KiB anyway).
pub(crate) const PEEK_LIMIT: usize = 16 * 1024;
