//! A listening secured socket: what `bind` + `listen` give on a Windows socket whose
//! security was set before bind. Every accepted connection inherits the listener's
//! settings and is handshaked and checked before the application sees it.
//!
//! What an accepted connection must satisfy is the listener's `Admission`, shared with
//! the async front end: the mode (TLS; peek first with `ALLOW_INSECURE`; none with
//! `SKIP_ENFORCEMENT`), the peer target names that apply to the client's address, and the
//! bound on handshakes in progress from the client's source (see `handshakes`).
//!
//! [`SecureListener::accept`] runs handshakes concurrently, each on a worker thread that
//! accepted it (workers are reused from one handshake to the next), and hands out
//! connections in the order their handshakes complete: a slow or silent peer delays nobody
//! else.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::ServerConfig;

use crate::blocking::socket::Secured;
use crate::blocking::stream::SecureStream;
use crate::core::fallback::{self, FirstBytes, CLEAR_TEXT_WAIT};
pub use crate::core::handshakes::DEFAULT_MAX_HANDSHAKES;
use crate::core::handshakes::{SourceCounts, SourceKey, DEFAULT_MAX_HANDSHAKES_PER_SOURCE};
use crate::core::session::{negotiation_io_error, Clear, Session};
use crate::core::tls::client_hello_offers;
use crate::error::Peer;
use crate::error::{Error, NegotiationError, UsageError};
use crate::name::PeerTargetName;
use crate::peers::{AddressPrefix, PeerNames};
use crate::settings::SecuritySettings;

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
    /// Handshakes in progress per source address.
    sources: Mutex<SourceCounts>,
}

/// One handshake in progress, counted against its source until dropped.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    admission: Arc<Admission>,
    key: SourceKey,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.admission
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .end(self.key);
    }
}

impl Admission {
    pub(crate) fn new(secured: Secured, name: Option<PeerTargetName>) -> Arc<Self> {
        let admission = Self {
            secured,
            names: RwLock::default(),
            restricted: Mutex::default(),
            sources: Mutex::new(SourceCounts::new(DEFAULT_MAX_HANDSHAKES_PER_SOURCE)),
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

    /// Counts a handshake from `ip` against its source, or refuses it (`None`: close the
    /// connection at once) when the source already has the most handshakes in progress it
    /// may have. Refusals are logged at most once a second.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let key = SourceKey::of(ip);
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.try_start(key) {
            return Some(SourceSlot {
                admission: self.clone(),
                key,
            });
        }
        if let Some(count) = sources.refused(Instant::now()) {
            tracing::warn!(
                "closed {count} connection(s) at once (the latest from {ip}): their source had \
                 {} handshakes in progress, the most one source may have \
                 (set_max_handshakes_per_source)",
                sources.limit()
            );
        }
        None
    }

    /// See [`SecureListener::set_max_handshakes_per_source`].
    pub(crate) fn set_max_handshakes_per_source(&self, max: usize) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_limit(max);
    }
}

/// Accepts the next TCP connection whose source may start a handshake; connections over
/// their source's limit are closed at once (shared by both accept calls; the async front
/// end does the same with its own accept).
fn accept_admitted(
    listener: &TcpListener,
    admission: &Arc<Admission>,
) -> io::Result<PendingStream> {
    loop {
        // An accepted socket inherits the listener's receive timeout (set by `accept`'s
        // workers); every way of securing it sets its own timeouts.
        let (socket, peer_addr) = listener.accept()?;
        if let Some(slot) = admission.admit(peer_addr.ip()) {
            return Ok(PendingStream {
                socket,
                peer_addr,
                accepted: Instant::now(),
                admission: admission.clone(),
                _slot: slot,
            });
        }
    }
}

/// The handshakes `SecureListener::accept` runs, on worker threads. A worker accepts a
/// connection itself (several may wait in accept(2) on the listening socket; the kernel
/// wakes one), runs its handshake and queues the outcome for `accept`, in completion order.
/// So that one slow or silent peer delays nobody, a worker that takes a connection while
/// no other worker waits to accept starts one more (up to the limit); a worker idle for
/// [`WORKER_IDLE`] ends, if another still waits to accept. A connection costs one thread
/// wake-up more than an inline handshake: the hand-over of its outcome to `accept`.
#[derive(Debug)]
struct HandshakePool {
    state: Mutex<PoolState>,
    /// Signalled when an outcome is queued.
    outcome: Condvar,
    /// Signalled when an outcome is taken (room for more), and when the pool closes.
    room: Condvar,
    /// Handshakes running plus outcomes not yet taken, at most.
    max: Arc<AtomicUsize>,
    listener: Arc<TcpListener>,
    admission: Arc<Admission>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Workers alive, and how many of them wait to accept.
    workers: usize,
    accepting: usize,
    running: usize,
    done: VecDeque<Result<SecureStream, Error>>,
    closed: bool,
}

/// How long the workers wait after the listening socket failed (say, no descriptor left)
/// before they try again, rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a worker waits in accept(2) before it ends, if another still waits there.
const WORKER_IDLE: Duration = Duration::from_secs(10);

impl HandshakePool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a worker (the caller counted it in `workers`).
    fn start_worker(self: &Arc<Self>) -> io::Result<()> {
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name("secsock-handshake".into())
            .spawn(move || pool.work());
        if started.is_err() {
            self.lock().workers -= 1;
        }
        started.map(drop)
    }

    /// Queues an outcome for `accept`.
    fn finish(&self, state: &mut PoolState, outcome: Result<SecureStream, Error>) {
        if !state.closed {
            state.done.push_back(outcome);
            self.outcome.notify_one();
        }
    }

    /// A worker: accepts while there is room, and runs each handshake it accepted.
    fn work(self: Arc<Self>) {
        loop {
            {
                let mut state = self.lock();
                while !state.closed
                    && state.running + state.done.len() >= self.max.load(Ordering::Relaxed)
                {
                    state = self.room.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                if state.closed {
                    state.workers -= 1;
                    return;
                }
                state.accepting += 1;
            }
            let accepted = accept_admitted(&self.listener, &self.admission);
            let mut state = self.lock();
            state.accepting -= 1;
            match accepted {
                Ok(pending) => {
                    state.running += 1;
                    // Someone must go on accepting while this handshake runs.
                    let another =
                        state.accepting == 0 && state.workers <= self.max.load(Ordering::Relaxed);
                    if another {
                        state.workers += 1;
                    }
                    drop(state);
                    if another {
                        if let Err(e) = self.start_worker() {
                            tracing::warn!("cannot start a handshake thread: {e}");
                        }
                    }
                    let outcome = pending.handshake();
                    let mut state = self.lock();
                    state.running -= 1;
                    self.finish(&mut state, outcome);
                }
                Err(_) if state.closed => {
                    state.workers -= 1;
                    return;
                }
                // Idle: end, unless this is the last worker waiting to accept.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if state.accepting > 0 {
                        state.workers -= 1;
                        return;
                    }
                }
                Err(e) => {
                    self.finish(&mut state, Err(Error::Io(e)));
                    drop(state);
                    std::thread::sleep(ACCEPT_BACKOFF);
                }
            }
        }
    }
}

/// A listening socket whose accepted connections are secured.
pub struct SecureListener {
    listener: Arc<TcpListener>,
    admission: Arc<Admission>,
    /// Started by the first `accept`.
    pool: Mutex<Option<Arc<HandshakePool>>>,
    max_handshakes: Arc<AtomicUsize>,
}

impl Drop for SecureListener {
    fn drop(&mut self) {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pool) = pool {
            let done = {
                let mut state = pool.lock();
                state.closed = true;
                std::mem::take(&mut state.done)
            };
            drop(done);
            pool.room.notify_all();
            // Wakes the workers blocked in accept(2) (Linux: the listening socket stops
            // listening); the descriptor closes when the last of them lets go of it.
            let _ = socket2::SockRef::from(&*self.listener).shutdown(Shutdown::Read);
        }
    }
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
            listener: Arc::new(listener),
            admission,
            pool: Mutex::new(None),
            max_handshakes: Arc::new(AtomicUsize::new(DEFAULT_MAX_HANDSHAKES)),
        }
    }

    /// The next connection whose handshake completed, or the error of one that failed (a
    /// peer's failure is that connection's only: keep accepting).
    ///
    /// Handshakes run concurrently, each on a worker thread of its own, at most
    /// [`max_concurrent_handshakes`](Self::set_max_concurrent_handshakes) at once and at
    /// most [`max_handshakes_per_source`](Self::set_max_handshakes_per_source) from one
    /// source; connections are handed out in the order their handshakes complete, so a
    /// slow or silent peer delays nobody. The first call starts the thread that accepts;
    /// it fails with [`UsageError::WouldSpawnImpersonated`] on a thread that is
    /// impersonating a peer (every thread it started would run as that peer). Fails with
    /// an I/O error when the listening socket itself fails.
    pub fn accept(&self) -> Result<SecureStream, Error> {
        let pool = self.pool()?;
        let mut state = pool.lock();
        loop {
            if let Some(outcome) = state.done.pop_front() {
                pool.room.notify_one();
                return outcome;
            }
            state = pool.outcome.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The handshake pool, started on first use.
    fn pool(&self) -> Result<Arc<HandshakePool>, Error> {
        let mut slot = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = slot.as_ref() {
            return Ok(pool.clone());
        }
        crate::impersonate::thread_may_spawn().map_err(|e| UsageError::WouldSpawnImpersonated {
            call: "accept",
            reason: e.to_string(),
        })?;
        // A worker waiting in accept(2) wakes up after WORKER_IDLE to see whether it is
        // still needed (the listening socket's receive timeout bounds accept).
        socket2::SockRef::from(&*self.listener).set_read_timeout(Some(WORKER_IDLE))?;
        let pool = Arc::new(HandshakePool {
            state: Mutex::new(PoolState {
                workers: 1,
                ..PoolState::default()
            }),
            outcome: Condvar::new(),
            room: Condvar::new(),
            max: self.max_handshakes.clone(),
            listener: self.listener.clone(),
            admission: self.admission.clone(),
        });
        pool.start_worker()?;
        *slot = Some(pool.clone());
        Ok(pool)
    }

    /// Accepts one TCP connection without securing it yet: call
    /// [`PendingStream::handshake`] (on a thread of your own). No application byte can be
    /// read or written before that succeeds. A connection from a source that has
    /// [`max_handshakes_per_source`](Self::set_max_handshakes_per_source) handshakes
    /// pending already is closed at once, and the next one accepted. Do not mix with
    /// [`accept`](Self::accept), whose thread accepts too.
    pub fn accept_pending(&self) -> io::Result<PendingStream> {
        loop {
            match accept_admitted(&self.listener, &self.admission) {
                // The receive timeout `accept`'s workers set on the listening socket.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Limits how many handshakes [`accept`](Self::accept) runs at once (at least 1;
    /// default [`DEFAULT_MAX_HANDSHAKES`]), outcomes waiting to be taken included. While
    /// at the limit, new TCP connections wait in the listen backlog.
    pub fn set_max_concurrent_handshakes(&mut self, max: usize) {
        self.max_handshakes.store(max.max(1), Ordering::Relaxed);
    }

    /// Limits how many handshakes may be pending at once from one source, an IPv4 address
    /// or an IPv6 /64 (at least 1; default
    /// [`DEFAULT_MAX_HANDSHAKES_PER_SOURCE`]):
    /// a connection beyond it is closed at once, so that one host cannot hold every
    /// handshake slot with idle connections. Counts what [`accept`](Self::accept) runs and
    /// every [`PendingStream`] not yet handshaked or dropped.
    pub fn set_max_handshakes_per_source(&mut self, max: usize) {
        self.admission.set_max_handshakes_per_source(max);
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
    /// Counts this handshake against its source until it ended (or was dropped).
    _slot: SourceSlot,
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
        let decide = |bytes: &[u8]| client_hello_offers(bytes, crate::user::step::ALPN);
        // Undecided at the deadline: the handshake will time out anyway.
        Ok(self
            .peek_until(self.accepted + ctx.handshake_timeout, PEEK_LIMIT, decide)?
            .0
            .unwrap_or(false))
    }

    /// See [`peek_until`].
    fn peek_until<T>(
        &self,
        deadline: Instant,
        limit: usize,
        decide: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<(Option<T>, usize), Error> {
        peek_until(&self.socket, deadline, limit, decide)
    }
}

/// Peeks at up to `limit` bytes of what the client sent until `decide` gives an answer or
/// `deadline` passes; also says how many bytes it last saw. `decide` sees the bytes only
/// when more have arrived: after each look, the socket's receive low-water mark is set one
/// byte above what was seen, so that the next peek waits for new bytes instead of
/// returning (and being parsed) again at once. The mark is back at one byte on return.
fn peek_until<T>(
    socket: &TcpStream,
    deadline: Instant,
    limit: usize,
    mut decide: impl FnMut(&[u8]) -> Option<T>,
) -> Result<(Option<T>, usize), Error> {
    let mut buf = vec![0u8; limit];
    let mut seen = 0;
    let outcome = (|| loop {
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Ok((None, seen));
        };
        socket.set_read_timeout(Some(left))?;
        match socket.peek(&mut buf) {
            Ok(0) => return Err(NegotiationError::PeerClosed { peer: Peer::Client }.into()),
            Ok(n) if n > seen => {
                seen = n;
                if let Some(verdict) = decide(&buf[..n]) {
                    return Ok((Some(verdict), n));
                }
                if n == limit {
                    return Ok((None, n));
                }
                crate::sys::set_receive_low_water_mark(socket.as_fd(), n + 1)?;
            }
            // Nothing new (the wait ended at the deadline): the loop checks it.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // A client that resets while we look is that client's failure.
            Err(e) => return Err(negotiation_io_error(e, Peer::Client, CLEAR_TEXT_WAIT)),
        }
    })();
    if seen > 0 {
        let _ = crate::sys::set_receive_low_water_mark(socket.as_fd(), 1);
    }
    outcome
}

/// The most a listener peeks at to read a ClientHello's ALPN (a ClientHello with a
/// post-quantum key share is about 1.5 KB; rustls refuses more than 64 KiB anyway).
pub(crate) const PEEK_LIMIT: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::mpsc;

    /// Attack (issue 12, item 6): the ClientHello peek re-read and re-parsed up to 16 KiB
    /// every 5 ms while a client trickled (or stalled in) its hello. Now it looks again only
    /// when new bytes arrived.
    #[test]
    fn the_peek_looks_again_only_when_more_bytes_arrived() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (looked, looks) = mpsc::channel();
        let peeking = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let outcome = peek_until(&server, deadline, 100, |bytes| {
                looked.send(bytes.len()).unwrap();
                (bytes.len() >= 10).then_some(bytes.len())
            });
            // The low-water mark is back at one byte: a read returns what is there.
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut all = [0u8; 16];
            let read = (&server).read(&mut all).unwrap();
            (outcome.unwrap(), read)
        });
        client.write_all(b"abc").unwrap();
        assert_eq!(looks.recv().unwrap(), 3);
        // Nothing new arrives: no second look (the old peek looked every 5 ms).
        assert!(looks.recv_timeout(Duration::from_millis(300)).is_err());
        client.write_all(b"defg").unwrap();
        assert_eq!(looks.recv().unwrap(), 7);
        client.write_all(b"hij").unwrap();
        assert_eq!(looks.recv().unwrap(), 10);
        let (outcome, read) = peeking.join().unwrap();
        assert_eq!(outcome, (Some(10), 10));
        assert_eq!(read, 10);
        assert!(looks.try_recv().is_err(), "exactly three looks");
    }
}
