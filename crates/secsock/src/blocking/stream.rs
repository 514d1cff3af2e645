//! A secured, connected TCP stream (blocking): what a Windows program gets back from
//! `WSAConnect`/`WSAAccept` on a socket with security turned on.
//!
//! [`SecureStream`] implements [`Read`] and [`Write`]; the handshake has already completed
//! and been checked when one exists. Reads end in `Ok(0)` only after the peer's
//! close_notify: a connection that ends without one is reported as an error (possible
//! truncation), never as a clean end of data. [`SecureStream::close`] sends close_notify
//! after everything written so far and waits (briefly) for the peer to finish, so nothing
//! written before a clean close is lost.
//!
//! Where the settings allowed clear text (`ALLOW_INSECURE` with a peer that does not speak
//! TLS, `SKIP_ENFORCEMENT`), the same type carries the connection in clear and its query
//! says so.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use crate::blocking::deadline::{
    HandshakeDeadline, HandshakeWriter, LeftWriteTimeout, SocketWriter,
};
use crate::core::drain::Drain;
use crate::core::readahead::ReadAhead;
use crate::core::session::{Clear, Link, Need, Session};
use crate::core::user_auth::{UserAuth, UserNeed};
use crate::error::Error;
use crate::impersonate::{account_for_peer, ImpersonationError, ImpersonationGuard};
use crate::info::SecurityInfo;
use crate::settings::UserCredentials;

/// A secured TCP connection (or, where the settings allowed it, one in clear text: the
/// query says which).
pub struct SecureStream {
    socket: TcpStream,
    link: Link,
    /// Large socket reads while data arrives in bulk (see `readahead`).
    ahead: ReadAhead,
    /// The `SO_SNDTIMEO` the handshake left set (see `deadline`).
    left: LeftWriteTimeout,
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

/// Runs the handshake on a connected socket, within `deadline`. On failure the session is
/// left for the caller to inspect (fallback).
pub(crate) fn drive_handshake(
    socket: &TcpStream,
    session: &mut Session,
    deadline: &mut HandshakeDeadline,
) -> Result<(), Error> {
    // Records are written whole; Nagle would only delay the last flight. A peer that
    // reset while waiting in the backlog fails here: that peer's failure.
    socket
        .set_nodelay(true)
        .map_err(|e| session.handshake_io_error(e))?;
    let mut io = socket;
    loop {
        match session.handshake_need() {
            Need::Send => {
                session
                    .send(&mut HandshakeWriter { socket, deadline })
                    .map_err(|e| session.handshake_io_error(e))?;
            }
            Need::Receive => {
                deadline.arm_read(socket)?;
                let received = session
                    .handshake_receive(&mut io)
                    .map_err(|e| session.handshake_io_error(e))?;
                if let Err(e) = received {
                    // Tell the peer why (rustls queued an alert), best effort; the caller
                    // lingers (see `linger_after_refusal`) unless it falls back to clear.
                    if session.wants_send() {
                        let _ = socket.set_write_timeout(Some(Duration::from_millis(200)));
                        let _ = session.send(&mut io);
                    }
                    return Err(e.into());
                }
            }
            Need::Done => return Ok(()),
        }
    }
}

/// Ends a connection refused while it was being secured so that the peer learns why: the
/// alert (or FAILURE frame) was written; now the write side is shut down (the peer reads
/// the alert, then the end) and what the peer still sends is discarded (see
/// [`Drain`]). Nothing is done when the refusal left the peer nothing to learn.
pub(crate) fn linger_after_refusal(socket: &TcpStream, error: &Error) {
    if let Some(drain) = Drain::after_refusal(error, Instant::now()) {
        let _ = socket.shutdown(Shutdown::Write);
        drain_socket(socket, drain);
    }
}

/// Reads and discards from `socket` as `drain` says.
fn drain_socket(mut socket: &TcpStream, mut drain: Drain) {
    let mut scratch = [0u8; 4096];
    while let Some(left) = drain.wait(Instant::now()) {
        if socket.set_read_timeout(Some(left)).is_err() || !drain.read(socket.read(&mut scratch)) {
            return;
        }
    }
}

impl SecureStream {
    /// Runs and checks the handshake (see [`drive_handshake`]) and the user-authentication
    /// step, all within the handshake timeout counted from `started` (a listener's side).
    pub(crate) fn handshake(
        socket: TcpStream,
        peer_addr: SocketAddr,
        mut session: Session,
        started: Instant,
    ) -> Result<Self, Error> {
        let mut deadline = HandshakeDeadline::new(started, session.handshake_timeout());
        let secured = drive_handshake(&socket, &mut session, &mut deadline)
            .and_then(|()| Ok(session.complete()?));
        if let Err(e) = secured {
            linger_after_refusal(&socket, &e);
            return Err(e);
        }
        let mut stream = Self::established(socket, peer_addr, session);
        stream.authenticate_user(None, &mut deadline)?;
        Ok(stream)
    }

    /// A stream over a socket whose handshake completed and whose session was checked
    /// (`Session::complete`). The handshake's socket timeouts stay armed:
    /// [`authenticate_user`](Self::authenticate_user), which follows, runs under them and
    /// then ends the handshake's use of them.
    pub(crate) fn established(socket: TcpStream, peer_addr: SocketAddr, session: Session) -> Self {
        Self {
            socket,
            link: Link::Tls(session),
            ahead: ReadAhead::default(),
            left: LeftWriteTimeout::default(),
            peer_addr,
            write_closed: false,
        }
    }

    /// A stream in clear text, where the settings allowed it; `clear` says why.
    pub(crate) fn clear(
        socket: TcpStream,
        peer_addr: SocketAddr,
        clear: Clear,
    ) -> Result<Self, Error> {
        socket.set_read_timeout(None)?;
        socket.set_write_timeout(None)?;
        Ok(Self {
            socket,
            link: Link::Clear(clear),
            ahead: ReadAhead::default(),
            left: LeftWriteTimeout::default(),
            peer_addr,
            write_closed: false,
        })
    }

    /// Runs the user-authentication step when it was negotiated (see `userauth`), before
    /// the application sees the stream, within the handshake's `deadline`; then ends the
    /// handshake's use of the socket timeouts (`HandshakeDeadline::finish`: the read
    /// timeout is cleared, the write timeout stays until it fires). The client proves
    /// `credentials` (none: it says so); the server checks them against its policy.
    pub(crate) fn authenticate_user(
        &mut self,
        credentials: Option<&UserCredentials>,
        deadline: &mut HandshakeDeadline,
    ) -> Result<(), Error> {
        self.user_step(credentials, deadline)?;
        self.left = deadline.finish(&self.socket)?;
        Ok(())
    }

    fn user_step(
        &mut self,
        credentials: Option<&UserCredentials>,
        deadline: &mut HandshakeDeadline,
    ) -> Result<(), Error> {
        let Link::Tls(session) = &mut self.link else {
            return Ok(());
        };
        let mut auth = UserAuth::start(session, credentials, self.peer_addr.ip(), deadline.at());
        let mut armed = false;
        let mut io = &self.socket;
        loop {
            let need = auth.next(session, Instant::now());
            if matches!(need, UserNeed::Send | UserNeed::Receive) && !armed {
                deadline.arm_read(&self.socket)?;
                deadline.arm_write(&self.socket)?;
                armed = true;
            }
            let failed = match need {
                UserNeed::Send => {
                    let mut writer = SocketWriter {
                        socket: &self.socket,
                        left: &self.left,
                    };
                    session.send(&mut writer).err().map(|e| auth.io_failed(e))
                }
                UserNeed::Receive => session
                    .receive(&mut self.ahead.reader(&mut io))
                    .err()
                    .map(|e| auth.io_failed(e)),
                UserNeed::Pause(until) => {
                    // The throttle's pause: this thread is the connection's.
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    None
                }
                UserNeed::Derive(derivation) => {
                    auth.derived(session, derivation.run());
                    None
                }
                UserNeed::Done => return Ok(()),
                failed @ UserNeed::Failed { .. } => Some(failed),
            };
            if let Some(UserNeed::Failed { error, linger }) = failed {
                if linger {
                    let _ = self.shutdown(Shutdown::Write);
                    linger_after_refusal(&self.socket, &error);
                }
                return Err(error);
            }
        }
    }

    /// What protects this connection and who the peer proved to be
    /// (`WSAQuerySocketSecurity`). A connection in clear text says so: no flags, and the
    /// reason in `negotiation_error`.
    pub fn query_security(&self) -> SecurityInfo {
        self.link.info()
    }

    /// Acts as the peer (`WSAImpersonateSocketPeer`): switches the calling thread's
    /// file-system identity (fsuid, fsgid, supplementary groups) to the local account the
    /// policy's `[[accounts]]` map the peer to — its user identity if it proved one, else
    /// its machine identity. The returned guard is `!Send`; dropping it (also during a
    /// panic) reverts. Fails, changing nothing, when there is no mapping, no such account,
    /// the process lacks CAP_SETUID/CAP_SETGID, or the connection is in clear text; and
    /// when the account is one no peer may become (root, group 0, a system account its
    /// rule does not allow) or the thread would keep file-system capabilities (see
    /// [`crate::impersonate`]).
    pub fn impersonate_peer(&self) -> Result<ImpersonationGuard, ImpersonationError> {
        let (rules, names) = self
            .link
            .impersonation_request()
            .ok_or(ImpersonationError::NoIdentity)?;
        ImpersonationGuard::begin(&account_for_peer(rules, &names)?)
    }

    /// How many TLS KeyUpdates this side has started because of the crypto policy's
    /// `rekey_after` limits (Windows renews quick-mode SAs likewise).
    pub fn key_updates_sent(&self) -> u64 {
        match &self.link {
            Link::Tls(session) => session.key_updates(),
            Link::Clear(_) => 0,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Timeout for each read (None: block).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }

    /// Timeout for each write (None: block).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.left.forget();
        self.socket.set_write_timeout(timeout)
    }

    /// Writes every queued TLS record to the socket.
    fn flush_tls(&mut self) -> io::Result<()> {
        if let Link::Tls(session) = &mut self.link {
            let mut io = SocketWriter {
                socket: &self.socket,
                left: &self.left,
            };
            while session.wants_send() {
                session.send(&mut io)?;
            }
        }
        Ok(())
    }

    /// Shuts down reading, writing or both. Shutting down writing sends close_notify after
    /// everything written so far, then a TCP FIN: the peer reads a clean end of data.
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Write | Shutdown::Both) && !self.write_closed {
            if let Link::Tls(session) = &mut self.link {
                session.send_close_notify();
            }
            self.flush_tls()?;
            self.write_closed = true;
        }
        match self.socket.shutdown(how) {
            // Shutting down a connection the peer already closed is not an error here.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }

    /// Closes the connection cleanly (`closesocket`): sends close_notify after all written
    /// data, then waits until the peer closes too (at most the policy's handshake timeout),
    /// so that closing cannot make the kernel reset the connection and discard data still
    /// in flight. Data the peer sends meanwhile is discarded.
    pub fn close(mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)?;
        drain_socket(
            &self.socket,
            Drain::after_close(self.link.linger(), Instant::now()),
        );
        Ok(())
    }
}

impl Read for SecureStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let session = match &mut self.link {
            Link::Tls(session) => session,
            Link::Clear(_) => return self.socket.read(buf),
        };
        let mut io = &self.socket;
        loop {
            match session.read_plain(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            let received = session.receive(&mut self.ahead.reader(&mut io));
            // Send what is queued: the alert on failure, or the answer to what the peer
            // asked for (KeyUpdate).
            let flushed = (|| {
                let mut writer = SocketWriter {
                    socket: &self.socket,
                    left: &self.left,
                };
                while session.wants_send() {
                    session.send(&mut writer)?;
                }
                Ok::<(), io::Error>(())
            })();
            received?;
            flushed?;
        }
    }
}

impl Write for SecureStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.write_closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            ));
        }
        let n = match &mut self.link {
            Link::Tls(session) => session.write_plain(bufs)?,
            Link::Clear(_) => return self.socket.write_vectored(bufs),
        };
        self.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()?;
        self.socket.flush()
    }
}

impl AsFd for SecureStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for SecureStream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
