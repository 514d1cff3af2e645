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

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::blocking::stream::SecureStream;
use crate::core::admission::{Accept, AcceptStep, Admission, SourceSlot};
use crate::core::fallback::CLEAR_TEXT_WAIT;
pub use crate::core::handshakes::DEFAULT_MAX_HANDSHAKES;
#[cfg(doc)]
use crate::core::handshakes::DEFAULT_MAX_HANDSHAKES_PER_SOURCE;
use crate::core::session::negotiation_io_error;
use crate::error::Peer;
use crate::error::{Error, NegotiationError, UsageError};
use crate::name::PeerTargetName;
use crate::peers::{AddressPrefix, PeerNames};
use crate::settings::SecuritySettings;

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

impl PendingStream {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Runs and checks the handshake, within the policy's handshake timeout counted from
    /// the moment the connection was accepted (or, as the listener's settings say, serves
    /// it in clear: the query tells which).
    pub fn handshake(self) -> Result<SecureStream, Error> {
        let mut accept = Accept::new(self.admission.clone(), self.peer_addr.ip(), self.accepted);
        let mut peeker = Peeker::new(&self.socket);
        let mut step = accept.start()?;
        let session = loop {
            step = match step {
                AcceptStep::Peek { limit, until } => {
                    let time_up = peeker.look(limit, until)?;
                    accept.peeked(peeker.seen(), time_up)?
                }
                AcceptStep::Clear(clear) => {
                    drop(peeker);
                    return SecureStream::clear(self.socket, self.peer_addr, clear);
                }
                AcceptStep::Handshake(session) => break session,
            }
        };
        drop(peeker);
        SecureStream::handshake(self.socket, self.peer_addr, session, self.accepted)
    }
}

/// The blocking front end's look at what a client sent, for the accept sequence: each
/// look returns when more than the last one saw has arrived, or when its time is up. The
/// socket's receive low-water mark is set one byte above what was seen, so that a peek
/// waits for a new byte instead of returning (and the sequence parsing) the same bytes
/// again at once; it is back at one byte when the peeker is dropped.
struct Peeker<'a> {
    socket: &'a TcpStream,
    buf: Vec<u8>,
    seen: usize,
}

impl<'a> Peeker<'a> {
    fn new(socket: &'a TcpStream) -> Self {
        Self {
            socket,
            buf: Vec::new(),
            seen: 0,
        }
    }

    /// What the last look saw.
    fn seen(&self) -> &[u8] {
        &self.buf[..self.seen]
    }

    /// Peeks at up to `limit` bytes, waiting until more than were seen have arrived or
    /// `until` passes (then `Ok(true)`: the time is up).
    fn look(&mut self, limit: usize, until: Instant) -> Result<bool, Error> {
        if self.buf.len() < limit {
            self.buf.resize(limit, 0);
        }
        loop {
            let Some(left) = until
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Ok(true);
            };
            let wanted = (self.seen + 1).min(limit);
            crate::sys::set_receive_low_water_mark(self.socket.as_fd(), wanted)?;
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.peek(&mut self.buf[..limit]) {
                Ok(0) => return Err(NegotiationError::PeerClosed { peer: Peer::Client }.into()),
                Ok(n) if n > self.seen || n == limit => {
                    self.seen = n;
                    return Ok(false);
                }
                // Nothing new (the wait ended at its timeout): the loop checks the time.
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
        }
    }
}

impl Drop for Peeker<'_> {
    fn drop(&mut self) {
        if self.seen > 0 || !self.buf.is_empty() {
            let _ = crate::sys::set_receive_low_water_mark(self.socket.as_fd(), 1);
        }
    }
}

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
            let mut peeker = Peeker::new(&server);
            // As the accept sequence does: look again until ten bytes were seen.
            loop {
                let time_up = peeker.look(100, deadline).unwrap();
                assert!(!time_up);
                let seen = peeker.seen().len();
                looked.send(seen).unwrap();
                if seen >= 10 {
                    break;
                }
            }
            drop(peeker);
            // The low-water mark is back at one byte: a read returns what is there.
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut all = [0u8; 16];
            let read = (&server).read(&mut all).unwrap();
            (Some(10), read)
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
        assert_eq!(outcome, Some(10));
        assert_eq!(read, 10);
        assert!(looks.try_recv().is_err(), "exactly three looks");
    }
}
