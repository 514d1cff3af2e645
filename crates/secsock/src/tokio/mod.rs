//! The async front end (feature `tokio`): the blocking API's types, name for name, with
//! `async` connect, accept and close, and a [`SecureStream`] that implements tokio's
//! `AsyncRead`/`AsyncWrite`.
//!
//! The rules and checks are the blocking API's: configuration goes through the same
//! socket code, and every connection is driven by the same session core; only the moving
//! of bytes differs. Handshakes are bounded by the policy's handshake timeout, and a
//! listener runs them concurrently, so a slow or silent peer never delays others.
//!
//! ```no_run
//! use secsock::tokio::SecureSocket;
//! use secsock::{Domain, PeerTargetName, SecuritySettings};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut socket = SecureSocket::new(Domain::IPV4)?;
//! socket.set_security(&SecuritySettings::new())?;
//! socket.set_peer_target_name(PeerTargetName::parse("host/server.example.test")?)?;
//! let mut stream = socket.connect("127.0.0.1:27015".parse()?).await?;
//! stream.write_all(b"12345678").await?;
//! let mut reply = [0u8; 8];
//! stream.read_exact(&mut reply).await?;
//! println!("{}", stream.query_security());
//! stream.close().await?;
//! # Ok(()) }
//! ```

use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::net::{TcpListener, TcpSocket, TcpStream};
use ::tokio::sync::Mutex;
use ::tokio::task::JoinSet;

use crate::core::admission::{Accept, AcceptStep, Admission, SourceSlot};
use crate::core::connect::Plan;
use crate::core::drain::Drain;
use crate::core::fallback::CLEAR_TEXT_WAIT;
use crate::core::readahead::ReadAhead;
use crate::core::session::Session;
use crate::core::session::{negotiation_io_error, Clear, Link, Need};
use crate::core::user_auth::{UserAuth, UserNeed};
use crate::error::Peer;
use crate::error::{Error, NegotiationError};
use crate::impersonate::{ImpersonationError, ImpersonationGuard};
use crate::info::SecurityInfo;
use crate::name::PeerTargetName;
use crate::peers::{AddressPrefix, PeerNames};
use crate::platform::Platform;
use crate::settings::SecuritySettings;
use crate::settings::UserCredentials;
use crate::setup::{connect_timed_out, fallback_socket, SocketSetup};
use socket2::{Domain, Socket};

/// An unconnected TCP socket on which security can be turned on (async).
/// See [`crate::SecureSocket`]: the same calls, the same rules.
#[derive(Debug)]
pub struct SecureSocket {
    inner: SocketSetup,
}

impl SecureSocket {
    /// A new TCP socket of `domain` using the process-wide [`Platform::global`].
    pub fn new(domain: Domain) -> Result<Self, Error> {
        Ok(Self {
            inner: SocketSetup::new(domain)?,
        })
    }

    /// A new TCP socket of `domain` using `platform`.
    pub fn with_platform(domain: Domain, platform: Arc<Platform>) -> Result<Self, Error> {
        Ok(Self {
            inner: SocketSetup::with_platform(domain, platform)?,
        })
    }

    /// Takes an ordinary TCP socket made elsewhere.
    pub fn from_socket(socket: Socket, platform: Option<Arc<Platform>>) -> Result<Self, Error> {
        Ok(Self {
            inner: SocketSetup::from_socket(socket, platform)?,
        })
    }

    /// `WSASetSocketSecurity`: once, before bind or connect.
    pub fn set_security(&mut self, settings: &SecuritySettings) -> Result<(), Error> {
        self.inner.set_security(settings)
    }

    /// `WSASetSocketPeerTargetName`: before connect.
    pub fn set_peer_target_name(&mut self, name: PeerTargetName) -> Result<(), Error> {
        self.inner.set_peer_target_name(name)
    }

    /// The peer target name set so far.
    pub fn peer_target_name(&self) -> Option<&PeerTargetName> {
        self.inner.peer_target_name()
    }

    /// The settings, once security is on.
    pub fn security_settings(&self) -> Option<&SecuritySettings> {
        self.inner.security_settings()
    }

    /// Binds a local address (`SO_REUSEADDR`, never `SO_REUSEPORT`).
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), Error> {
        self.inner.bind(addr)
    }

    /// The local address, once bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Starts listening; accepted connections inherit this socket's settings. Must be
    /// called within a tokio runtime.
    pub fn listen(self, backlog: i32) -> Result<SecureListener, Error> {
        let (socket, admission) = self.inner.into_listening(backlog)?;
        socket.set_nonblocking(true)?;
        let listener = TcpListener::from_std(socket.into())?;
        Ok(SecureListener {
            listener,
            admission,
            handshakes: Mutex::new(JoinSet::new()),
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        })
    }

    /// Connects and secures the connection, within the policy's handshake timeout (TCP
    /// connect and handshake together).
    pub async fn connect(self, addr: SocketAddr) -> Result<SecureStream, Error> {
        // Boxed: the connect-and-handshake state (the TLS connection, the timer) is large,
        // and a future awaited inline would keep its size in the caller's task for the
        // connection's whole life.
        Box::pin(self.connect_boxed(addr)).await
    }

    async fn connect_boxed(self, addr: SocketAddr) -> Result<SecureStream, Error> {
        let started = Instant::now();
        let (socket, bound_ip, first, plan) = self.inner.into_connecting(addr)?;
        let timeout = plan.ctx.handshake_timeout;
        let mut io = tcp_connect(socket, addr, timeout).await?;
        let mut session = match first {
            Plan::Skip(clear) => return Ok(SecureStream::clear(io, addr, clear)),
            Plan::Tls(session) => session,
        };
        let secured = drive_handshake(&mut io, &mut session, started)
            .await
            .and_then(|()| Ok(session.complete()?));
        if let Err(e) = secured {
            let clear = match plan.after_failure(e, &session) {
                Ok(clear) => clear,
                Err(e) => {
                    linger_after_refusal(&mut io, &e).await;
                    return Err(e);
                }
            };
            drop(io);
            let socket = fallback_socket(addr, bound_ip)?;
            let left = timeout
                .saturating_sub(started.elapsed())
                .max(std::time::Duration::from_millis(1));
            let io = tcp_connect(socket, addr, left).await?;
            return Ok(SecureStream::clear(io, addr, clear));
        }
        let mut stream = SecureStream::established(io, addr, session);
        stream
            .authenticate_user(plan.user.as_ref(), started + timeout)
            .await?;
        Ok(stream)
    }
}

/// Connects a socket2 socket with tokio, within `timeout`.
async fn tcp_connect(
    socket: Socket,
    addr: SocketAddr,
    timeout: std::time::Duration,
) -> Result<TcpStream, Error> {
    // tokio requires a non-blocking socket and does not make it one: a blocking one
    // would block a runtime worker in connect and in every full-buffer write.
    socket.set_nonblocking(true)?;
    let socket = TcpSocket::from_std_stream(socket.into());
    match ::tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(io) => Ok(io?),
        Err(_) => Err(connect_timed_out(addr, timeout)),
    }
}

pub use crate::core::handshakes::DEFAULT_MAX_HANDSHAKES;

type Handshake = Result<SecureStream, Error>;

/// A listening secured socket (async). [`accept`](Self::accept) returns connections whose
/// handshake completed; handshakes run concurrently in the background (at most
/// [`max_concurrent_handshakes`](Self::set_max_concurrent_handshakes) at once), so a slow
/// peer never delays the others.
#[derive(Debug)]
pub struct SecureListener {
    listener: TcpListener,
    admission: Arc<Admission>,
    handshakes: Mutex<JoinSet<Handshake>>,
    max_handshakes: usize,
}

impl SecureListener {
    /// The next connection whose handshake completed, or the error of one that failed (a
    /// peer's failure is that connection's only: keep accepting). Fails with an I/O error
    /// only when the listening socket itself fails.
    pub async fn accept(&self) -> Result<SecureStream, Error> {
        let mut handshakes = self.handshakes.lock().await;
        loop {
            let room = handshakes.len() < self.max_handshakes;
            ::tokio::select! {
                accepted = self.accept_pending(), if room => {
                    handshakes.spawn(accepted?.handshake());
                }
                Some(done) = handshakes.join_next() => {
                    return done.unwrap_or_else(|e| Err(Error::Io(io::Error::other(format!("handshake task failed: {e}")))));
                }
            }
        }
    }

    /// Accepts one TCP connection without securing it yet; run
    /// [`PendingStream::handshake`] on a task of your own. A connection from a source that
    /// has [`max_handshakes_per_source`](Self::set_max_handshakes_per_source) handshakes
    /// pending already is closed at once, and the next one accepted.
    pub async fn accept_pending(&self) -> io::Result<PendingStream> {
        loop {
            let (io, peer_addr) = self.listener.accept().await?;
            if let Some(slot) = self.admission.admit(peer_addr.ip()) {
                return Ok(PendingStream {
                    io,
                    peer_addr,
                    accepted: Instant::now(),
                    admission: self.admission.clone(),
                    _slot: slot,
                });
            }
        }
    }

    /// Limits how many handshakes may be pending at once from one source (an IPv4 address
    /// or an IPv6 /64); see [`crate::SecureListener::set_max_handshakes_per_source`].
    pub fn set_max_handshakes_per_source(&mut self, max: usize) {
        self.admission.set_max_handshakes_per_source(max);
    }

    /// Allows `name` to connect from `peers`; see [`crate::SecureListener::set_peer_target_name`].
    pub fn set_peer_target_name(&self, name: PeerTargetName, peers: AddressPrefix) {
        self.admission.bind(name, peers);
    }

    /// Removes every name bound to exactly `peers`; returns how many were removed.
    pub fn delete_peer_target_name(&self, peers: AddressPrefix) -> usize {
        self.admission.delete(peers)
    }

    /// The peer target names in force.
    pub fn peer_target_names(&self) -> PeerNames {
        self.admission.names()
    }

    /// Limits how many handshakes [`accept`](Self::accept) runs at once (at least 1). While
    /// at the limit, new TCP connections wait in the listen backlog.
    pub fn set_max_concurrent_handshakes(&mut self, max: usize) {
        self.max_handshakes = max.max(1);
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

/// An accepted TCP connection whose handshake has not run yet (async).
#[derive(Debug)]
pub struct PendingStream {
    io: TcpStream,
    peer_addr: SocketAddr,
    accepted: Instant,
    admission: Arc<Admission>,
    /// Counts this handshake against its source until it ended (or was dropped).
    _slot: SourceSlot,
}

impl PendingStream {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Runs and checks the handshake, within the policy's handshake timeout counted from
    /// the accept (or, as the listener's settings say, serves the connection in clear: the
    /// query tells which).
    pub async fn handshake(self) -> Result<SecureStream, Error> {
        // Boxed, for the reason given at `SecureSocket::connect`.
        Box::pin(self.handshake_boxed()).await
    }

    async fn handshake_boxed(mut self) -> Result<SecureStream, Error> {
        let timeout = self.admission.secured.ctx.handshake_timeout;
        let mut accept = Accept::new(self.admission.clone(), self.peer_addr.ip(), self.accepted);
        let mut peeker = Peeker::new(&self.io)?;
        let mut step = accept.start()?;
        let mut session = loop {
            step = match step {
                AcceptStep::Peek { limit, until } => {
                    let time_up = peeker.look(&self.io, limit, until).await?;
                    accept.peeked(peeker.seen(), time_up)?
                }
                AcceptStep::Clear(clear) => {
                    return Ok(SecureStream::clear(self.io, self.peer_addr, clear))
                }
                AcceptStep::Handshake(session) => break session,
            }
        };
        let secured = drive_handshake(&mut self.io, &mut session, self.accepted)
            .await
            .and_then(|()| Ok(session.complete()?));
        if let Err(e) = secured {
            linger_after_refusal(&mut self.io, &e).await;
            return Err(e);
        }
        let mut stream = SecureStream::established(self.io, self.peer_addr, session);
        stream
            .authenticate_user(None, self.accepted + timeout)
            .await?;
        Ok(stream)
    }
}

/// The async front end's look at what a client sent, for the accept sequence: each look
/// returns when more than the last one saw has arrived, or when its time is up. A look
/// that finds nothing new clears the socket's readiness in the same `try_io` (so that bytes
/// arriving meanwhile are not missed) and waits for the next readiness.
struct Peeker {
    /// A second descriptor of the same socket, for a synchronous peek inside `try_io`.
    peeker: std::net::TcpStream,
    buf: Vec<u8>,
    seen: usize,
}

impl Peeker {
    fn new(io: &TcpStream) -> io::Result<Self> {
        Ok(Self {
            peeker: std::net::TcpStream::from(io.as_fd().try_clone_to_owned()?),
            buf: Vec::new(),
            seen: 0,
        })
    }

    /// What the last look saw.
    fn seen(&self) -> &[u8] {
        &self.buf[..self.seen]
    }

    /// Peeks at up to `limit` bytes of `io`, waiting until more than were seen have arrived
    /// or `until` passes (then `Ok(true)`: the time is up).
    async fn look(&mut self, io: &TcpStream, limit: usize, until: Instant) -> Result<bool, Error> {
        use ::tokio::io::Interest;
        if self.buf.len() < limit {
            self.buf.resize(limit, 0);
        }
        let until = ::tokio::time::Instant::from_std(until);
        loop {
            match ::tokio::time::timeout_at(until, io.readable()).await {
                Err(_) => return Ok(true),
                Ok(Err(e)) => return Err(negotiation_io_error(e, Peer::Client, CLEAR_TEXT_WAIT)),
                Ok(Ok(())) => {}
            }
            let (peeker, buf, seen) = (&self.peeker, &mut self.buf[..limit], self.seen);
            let looked = io.try_io(Interest::READABLE, || match peeker.peek(buf)? {
                n if n > 0 && n <= seen && n < limit => Err(io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            });
            match looked {
                Ok(0) => return Err(NegotiationError::PeerClosed { peer: Peer::Client }.into()),
                Ok(n) => {
                    self.seen = n;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // A client that resets while we look is that client's failure.
                Err(e) => return Err(negotiation_io_error(e, Peer::Client, CLEAR_TEXT_WAIT)),
            }
        }
    }
}

/// A secured TCP connection (async). Reads end in EOF only after the peer's close_notify;
/// [`AsyncWrite::poll_shutdown`] sends close_notify.
pub struct SecureStream {
    io: TcpStream,
    link: Link,
    /// Large socket reads while data arrives in bulk (see `readahead`).
    ahead: ReadAhead,
    peer_addr: SocketAddr,
    write_closed: bool,
}

impl std::fmt::Debug for SecureStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureStream")
            .field("peer_addr", &self.peer_addr)
            .field("secured", &matches!(self.link, Link::Tls(_)))
            .finish_non_exhaustive()
    }
}

/// std::io over a tokio stream inside a poll: `Pending` becomes `WouldBlock` (the waker
/// is registered), which is what rustls's `read_tls`/`write_tls` understand.
struct SyncIo<'a, 'b> {
    io: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Maps `WouldBlock` back to `Pending`.
fn pending_on_would_block<T>(result: io::Result<T>) -> Poll<io::Result<T>> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

/// Writes queued TLS records until none is left or the socket would block.
fn poll_flush_tls(
    session: &mut Session,
    io: &mut TcpStream,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while session.wants_send() {
        let mut sync = SyncIo { io, cx };
        ready!(pending_on_would_block(session.send(&mut sync)))?;
    }
    Poll::Ready(Ok(()))
}

/// The handshake, as a poll function: ready once it completed or failed.
fn poll_handshake(
    session: &mut Session,
    io: &mut TcpStream,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    loop {
        match session.handshake_need() {
            Need::Send => {
                let mut sync = SyncIo { io, cx };
                if let Err(e) = ready!(pending_on_would_block(session.send(&mut sync))) {
                    return Poll::Ready(Err(session.handshake_io_error(e)));
                }
            }
            Need::Receive => {
                let mut sync = SyncIo { io, cx };
                match ready!(pending_on_would_block(session.handshake_receive(&mut sync))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        // Tell the peer why, best effort: the alert is queued; one try.
                        let _ = poll_flush_tls(session, io, cx);
                        return Poll::Ready(Err(e.into()));
                    }
                    Err(e) => return Poll::Ready(Err(session.handshake_io_error(e))),
                }
            }
            Need::Done => return Poll::Ready(Ok(())),
        }
    }
}

/// Runs the handshake within the policy's handshake timeout counted from `started`. On
/// failure the session is left for the caller to inspect (fallback).
async fn drive_handshake(
    io: &mut TcpStream,
    session: &mut Session,
    started: Instant,
) -> Result<(), Error> {
    let timeout = session.handshake_timeout();
    // A peer that reset while waiting in the backlog is that peer's failure, not the
    // listener's: map socket errors like the handshake's own.
    io.set_nodelay(true)
        .map_err(|e| session.handshake_io_error(e))?;
    let remaining = (started + timeout).saturating_duration_since(Instant::now());
    match ::tokio::time::timeout(remaining, poll_fn(|cx| poll_handshake(session, io, cx))).await {
        Ok(result) => result,
        Err(_) => Err(NegotiationError::Timeout { after: timeout }.into()),
    }
}

/// Ends a connection refused while it was being secured so that the peer learns why; see
/// the blocking `linger_after_refusal`.
async fn linger_after_refusal(io: &mut TcpStream, error: &Error) {
    if let Some(drain) = Drain::after_refusal(error, Instant::now()) {
        let _ = ::tokio::io::AsyncWriteExt::shutdown(io).await;
        drain_socket(io, drain).await;
    }
}

/// Reads and discards from `io` as `drain` says.
async fn drain_socket(io: &mut TcpStream, mut drain: Drain) {
    let mut scratch = [0u8; 4096];
    let until = ::tokio::time::Instant::from_std(drain.until());
    let reads =
        async { while drain.read(::tokio::io::AsyncReadExt::read(io, &mut scratch).await) {} };
    let _ = ::tokio::time::timeout_at(until, reads).await;
}

impl SecureStream {
    /// A stream over a connection whose handshake completed and whose session was checked
    /// (`Session::complete`).
    fn established(io: TcpStream, peer_addr: SocketAddr, session: Session) -> Self {
        Self {
            io,
            link: Link::Tls(session),
            ahead: ReadAhead::default(),
            peer_addr,
            write_closed: false,
        }
    }

    fn clear(io: TcpStream, peer_addr: SocketAddr, clear: Clear) -> Self {
        Self {
            io,
            link: Link::Clear(clear),
            ahead: ReadAhead::default(),
            peer_addr,
            write_closed: false,
        }
    }

    /// Runs the user-authentication step when it was negotiated (see
    /// [`crate::SecureStream`]'s blocking counterpart), within `deadline`.
    async fn authenticate_user(
        &mut self,
        credentials: Option<&UserCredentials>,
        deadline: Instant,
    ) -> Result<(), Error> {
        let Link::Tls(session) = &mut self.link else {
            return Ok(());
        };
        let timeout = session.handshake_timeout();
        let mut auth = UserAuth::start(session, credentials, self.peer_addr.ip(), deadline);
        let (io, ahead) = (&mut self.io, &mut self.ahead);
        let exchange = async {
            loop {
                let need = match auth.next(session, Instant::now()) {
                    UserNeed::Send => match poll_fn(|cx| poll_flush_tls(session, io, cx)).await {
                        Ok(()) => continue,
                        Err(e) => auth.io_failed(e),
                    },
                    UserNeed::Receive => {
                        let received = poll_fn(|cx| {
                            let mut sync = SyncIo { io, cx };
                            pending_on_would_block(session.receive(&mut ahead.reader(&mut sync)))
                        })
                        .await;
                        match received {
                            Ok(_) => continue,
                            Err(e) => auth.io_failed(e),
                        }
                    }
                    UserNeed::Pause(until) => {
                        // The throttle's pause, as a timer: the runtime thread serves others.
                        ::tokio::time::sleep_until(::tokio::time::Instant::from_std(until)).await;
                        continue;
                    }
                    UserNeed::Derive(derivation) => {
                        // PBKDF2 (up to `user_max_iterations`) would hold a runtime thread
                        // for as long: it runs on the blocking pool.
                        let derived = ::tokio::task::spawn_blocking(move || derivation.run())
                            .await
                            .map_err(|e| match e.try_into_panic() {
                                Ok(panic) => std::panic::resume_unwind(panic),
                                Err(e) => io::Error::other(format!(
                                    "the key derivation was cancelled: {e}"
                                )),
                            });
                        match derived {
                            Ok(derived) => {
                                auth.derived(session, derived);
                                continue;
                            }
                            Err(e) => auth.io_failed(e),
                        }
                    }
                    other => other,
                };
                match need {
                    UserNeed::Done => return Ok(()),
                    UserNeed::Failed { error, linger } => return Err((error, linger)),
                    _ => {}
                }
            }
        };
        let outcome =
            ::tokio::time::timeout_at(::tokio::time::Instant::from_std(deadline), exchange).await;
        match outcome {
            Err(_) => Err(NegotiationError::Timeout { after: timeout }.into()),
            Ok(Ok(())) => Ok(()),
            Ok(Err((error, linger))) => {
                if linger {
                    // Outside the deadline: lingering must not turn the refusal into a
                    // timeout.
                    let _ = ::tokio::io::AsyncWriteExt::shutdown(self).await;
                    linger_after_refusal(&mut self.io, &error).await;
                }
                Err(error)
            }
        }
    }

    /// Acts as the peer on the calling thread; see
    /// [`crate::SecureStream::impersonate_peer`]. The guard is `!Send`: keep the work
    /// that must run as the peer on one thread, never across an `.await` that may move
    /// the task to another thread. [`SecureStream::run_as_peer`] does that for you.
    pub fn impersonate_peer(&self) -> Result<ImpersonationGuard, ImpersonationError> {
        let (rules, names) = self
            .link
            .impersonation_request()
            .ok_or(ImpersonationError::NoIdentity)?;
        ImpersonationGuard::begin(&crate::impersonate::account_for_peer(rules, &names)?)
    }

    /// What protects this connection and who the peer proved to be. A connection in clear
    /// text says so: no flags, and the reason in `negotiation_error`.
    pub fn query_security(&self) -> SecurityInfo {
        self.link.info()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// KeyUpdates this side started because of the policy's `rekey_after`.
    pub fn key_updates_sent(&self) -> u64 {
        match &self.link {
            Link::Tls(session) => session.key_updates(),
            Link::Clear(_) => 0,
        }
    }

    /// Closes cleanly: close_notify after all written data, then waits (at most the
    /// policy's handshake timeout) for the peer to close too, discarding what it sends,
    /// so that the kernel cannot reset the connection and lose data in flight.
    pub async fn close(mut self) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut self).poll_shutdown(cx)).await?;
        let drain = Drain::after_close(self.link.linger(), Instant::now());
        drain_socket(&mut self.io, drain).await;
        Ok(())
    }
}

impl AsyncRead for SecureStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let session = match &mut this.link {
            Link::Tls(session) => session,
            Link::Clear(_) => return Pin::new(&mut this.io).poll_read(cx, buf),
        };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Data written but not yet sent (the socket was full) goes out before we wait for
        // an answer to it.
        if let Poll::Ready(Err(e)) = poll_flush_tls(session, &mut this.io, cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            match session.read_plain(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let mut sync = SyncIo {
                io: &mut this.io,
                cx,
            };
            match session.receive(&mut this.ahead.reader(&mut sync)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => {
                    // Send the alert rustls queued, best effort.
                    let _ = poll_flush_tls(session, &mut this.io, cx);
                    return Poll::Ready(Err(e));
                }
            }
            // Answer what the peer asked for (KeyUpdate); what cannot be sent now is sent
            // with the next write or flush.
            if let Poll::Ready(Err(e)) = poll_flush_tls(session, &mut this.io, cx) {
                return Poll::Ready(Err(e));
            }
        }
    }
}

impl SecureStream {
    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        let session = match &mut self.link {
            Link::Tls(session) => session,
            Link::Clear(_) => return Pin::new(&mut self.io).poll_write_vectored(cx, bufs),
        };
        // Send what is already queued first: rustls buffers a bounded amount, so a peer
        // that does not read makes writes pend instead of growing memory.
        ready!(poll_flush_tls(session, &mut self.io, cx))?;
        let n = session.write_plain(bufs)?;
        // Start sending; whatever the socket does not take now stays queued.
        if let Poll::Ready(Err(e)) = poll_flush_tls(session, &mut self.io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    /// Sends every queued TLS record (none in clear).
    fn poll_flush_link(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.link {
            Link::Tls(session) => poll_flush_tls(session, &mut self.io, cx),
            Link::Clear(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for SecureStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_slices(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush_link(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Sends close_notify after everything written, then shuts down the TCP write side.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.write_closed {
            if let Link::Tls(session) = &mut self.link {
                session.send_close_notify();
            }
            self.write_closed = true;
        }
        ready!(self.poll_flush_link(cx))?;
        match ready!(Pin::new(&mut self.io).poll_shutdown(cx)) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}

impl AsFd for SecureStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for SecureStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

// ---------------------------------------------------------------------------------------
// Impersonation from async code. Impersonation belongs to one thread, and an async task
// may move between threads at every `.await`, so the work to do as the peer runs on a
// blocking thread that begins and ends the impersonation itself.

impl SecureStream {
    /// Runs `f` as the peer (`WSAImpersonateSocketPeer` for async code): on a blocking
    /// thread (`tokio::task::spawn_blocking`), that thread maps the peer through the
    /// policy's `[[accounts]]` (the name-service lookups may block, so they run there too),
    /// begins the impersonation, runs `f`, and reverts — also when `f` panics — before the
    /// thread goes back to the pool. Returns what `f` returned.
    ///
    /// Fails, without running `f`, for every reason [`crate::SecureStream::impersonate_peer`]
    /// fails, and with [`ImpersonationError::ThreadImpersonating`] when the calling thread is
    /// itself impersonating (the blocking pool may start its new thread from the calling
    /// thread, and that thread would inherit the identity; nothing is started then), or when
    /// the pool thread it got is not itself (it was started by an impersonating thread).
    /// If `f` panics, the panic is resumed on the calling task, as if `f` had run there.
    ///
    /// `f` itself must not start threads: they would run as the peer with no way back.
    ///
    /// ```no_run
    /// # async fn handle(stream: secsock::tokio::SecureStream) -> Result<(), Box<dyn std::error::Error>> {
    /// let listing = stream
    ///     .run_as_peer(|| std::fs::read_dir("/srv/share").map(|d| d.count()))
    ///     .await??;
    /// println!("the peer may list {listing} entries");
    /// # Ok(()) }
    /// ```
    ///
    /// Why not hold [`SecureStream::impersonate_peer`]'s guard in async code: it is
    /// `!Send`, so a spawned task that holds it across an `.await` does not compile — the
    /// task could resume on another thread, which is not the peer, while this one stays it:
    ///
    /// ```compile_fail,E0277
    /// # async fn handle(stream: secsock::tokio::SecureStream) {
    /// tokio::spawn(async move {
    ///     let guard = stream.impersonate_peer().unwrap();
    ///     tokio::task::yield_now().await; // may move the task to another thread
    ///     drop(guard);
    /// });
    /// # }
    /// ```
    pub async fn run_as_peer<F, T>(&self, f: F) -> Result<T, ImpersonationError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (rules, names) = self
            .link
            .impersonation_request()
            .ok_or(ImpersonationError::NoIdentity)?;
        let rules = rules.to_vec();
        crate::impersonate::thread_may_spawn()?;
        let ran = ::tokio::task::spawn_blocking(move || {
            // A pool thread started by an impersonating thread would be the peer already,
            // and reverting would bring it back to the peer.
            crate::impersonate::thread_may_spawn()?;
            let account = crate::impersonate::account_for_peer(&rules, &names)?;
            let guard = ImpersonationGuard::begin(&account)?;
            // A panic in `f` drops the guard while unwinding: the thread reverts before
            // the pool gets it back. So does an impersonation `f` began and leaked: the
            // guard ends every impersonation begun after it.
            let result = f();
            drop(guard);
            Ok(result)
        })
        .await;
        match ran {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(ImpersonationError::Io(io::Error::other(format!(
                "the blocking task acting as the peer did not finish: {e}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::tokio::io::AsyncWriteExt;
    use std::time::Duration;

    /// The async listener's peek looks again only when new bytes arrived (issue 12,
    /// item 6): see the blocking counterpart in `listener.rs`.
    #[::tokio::test]
    async fn the_peek_looks_again_only_when_more_bytes_arrived() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (looked, mut looks) = ::tokio::sync::mpsc::unbounded_channel();
        let peeking = ::tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut peeker = Peeker::new(&server).unwrap();
            // As the accept sequence does: look again until ten bytes were seen.
            loop {
                let time_up = peeker.look(&server, 100, deadline).await.unwrap();
                assert!(!time_up);
                let seen = peeker.seen().len();
                looked.send(seen).unwrap();
                if seen >= 10 {
                    return (Some(seen), seen);
                }
            }
        });
        client.write_all(b"abc").await.unwrap();
        assert_eq!(looks.recv().await, Some(3));
        // Nothing new arrives: no second look (the old peek looked every 5 ms).
        let quiet = ::tokio::time::timeout(Duration::from_millis(300), looks.recv()).await;
        assert!(quiet.is_err(), "looked again at {quiet:?} bytes");
        client.write_all(b"defg").await.unwrap();
        assert_eq!(looks.recv().await, Some(7));
        client.write_all(b"hij").await.unwrap();
        assert_eq!(looks.recv().await, Some(10));
        assert_eq!(peeking.await.unwrap(), (Some(10), 10));
        assert!(looks.try_recv().is_err(), "exactly three looks");
    }
}
