//! A listening secured socket: what `bind` + `listen` give on a Windows socket whose
//! security was set before bind. Every accepted connection inherits the listener's
//! settings and is handshaked and checked before the application sees it.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Instant;

use crate::error::Error;
use crate::session::Session;
use crate::settings::SecuritySettings;
use crate::socket::Secured;
use crate::stream::SecureStream;

/// A listening socket whose accepted connections are secured.
pub struct SecureListener {
    listener: TcpListener,
    secured: Secured,
}

impl std::fmt::Debug for SecureListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureListener")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("settings", &self.secured.settings)
            .finish()
    }
}

impl SecureListener {
    pub(crate) fn new(listener: TcpListener, secured: Secured) -> Self {
        Self { listener, secured }
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
            secured: self.secured.clone(),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The settings every accepted connection inherits.
    pub fn security_settings(&self) -> &SecuritySettings {
        &self.secured.settings
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
    secured: Secured,
}

impl PendingStream {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Runs and checks the handshake, within the policy's handshake timeout counted from
    /// the moment the connection was accepted.
    pub fn handshake(self) -> Result<SecureStream, Error> {
        let session = Session::server(self.secured.ctx.clone())?;
        SecureStream::handshake(self.socket, self.peer_addr, session, self.accepted)
    }
}
