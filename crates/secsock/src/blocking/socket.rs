//! A TCP socket that security can be turned on for, before it connects or listens (the
//! blocking front end): the Windows sequence `WSASocket` → `WSASetSocketSecurity` →
//! `WSASetSocketPeerTargetName` → `WSAConnect` (or `bind` → `listen`).
//!
//! The rules of that sequence are enforced at run time with errors that name them
//! ([`UsageError`](crate::UsageError)): security is set once, before bind or connect; the
//! peer target name before connect; connect and listen need security.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use socket2::{Domain, SockAddr, Socket};

use crate::blocking::deadline::HandshakeDeadline;
use crate::blocking::listener::SecureListener;
use crate::blocking::stream::{drive_handshake, linger_after_refusal, SecureStream};
use crate::core::connect::Plan;
use crate::error::Error;
use crate::error::NegotiationError;
use crate::name::PeerTargetName;
use crate::platform::Platform;
use crate::settings::SecuritySettings;
use crate::setup::{connect_timed_out, fallback_socket, SocketSetup};

/// An unconnected TCP socket on which security can be turned on.
///
/// ```no_run
/// use secsock::{Domain, PeerTargetName, SecureSocket, SecuritySettings};
/// # fn main() -> Result<(), secsock::Error> {
/// let mut socket = SecureSocket::new(Domain::IPV6)?;
/// socket.set_security(&SecuritySettings::new())?;
/// socket.set_peer_target_name(PeerTargetName::parse("spiffe://example.test/db")?)?;
/// let stream = socket.connect("[::1]:5432".parse().unwrap())?;
/// # Ok(()) }
/// ```
pub struct SecureSocket {
    setup: SocketSetup,
}

impl std::fmt::Debug for SecureSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.setup.fmt(f)
    }
}

impl SecureSocket {
    /// A new TCP socket of `domain` (IPv4 or IPv6) using the process-wide
    /// [`Platform::global`] (the discovered policy), loaded when security is turned on.
    pub fn new(domain: Domain) -> Result<Self, Error> {
        Ok(Self {
            setup: SocketSetup::new(domain)?,
        })
    }

    /// A new TCP socket of `domain` that uses `platform` (an explicitly loaded policy).
    pub fn with_platform(domain: Domain, platform: Arc<Platform>) -> Result<Self, Error> {
        Ok(Self {
            setup: SocketSetup::with_platform(domain, platform)?,
        })
    }

    /// Takes an ordinary TCP socket made elsewhere, to turn security on for it, and puts it
    /// in blocking mode. The rules still apply: if it is already bound or connected,
    /// `set_security` says so.
    pub fn from_socket(socket: Socket, platform: Option<Arc<Platform>>) -> Result<Self, Error> {
        let setup = SocketSetup::from_socket(socket, platform)?;
        // The blocking API blocks, its connect included (bounded by SO_SNDTIMEO).
        socket2::SockRef::from(&setup).set_nonblocking(false)?;
        Ok(Self { setup })
    }

    /// Turns security on (`WSASetSocketSecurity`). Once per socket, before bind or connect.
    /// The settings are validated, and their crypto policy key must name a crypto policy
    /// of the policy file.
    pub fn set_security(&mut self, settings: &SecuritySettings) -> Result<(), Error> {
        self.setup.set_security(settings)
    }

    /// Names the peer the connection must prove (`WSASetSocketPeerTargetName`). Before
    /// connect; may be replaced until then. With `PEER_NAME_IS_RAW_FORMAT` in the settings
    /// the name's text is compared raw.
    pub fn set_peer_target_name(&mut self, name: PeerTargetName) -> Result<(), Error> {
        self.setup.set_peer_target_name(name)
    }

    /// The peer target name set so far.
    pub fn peer_target_name(&self) -> Option<&PeerTargetName> {
        self.setup.peer_target_name()
    }

    /// The settings, once security is on.
    pub fn security_settings(&self) -> Option<&SecuritySettings> {
        self.setup.security_settings()
    }

    /// Binds a local address. `SO_REUSEADDR` is set (a restarted server can bind while old
    /// connections linger in TIME_WAIT); `SO_REUSEPORT` never is, so no other socket can
    /// share a secured port.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), Error> {
        self.setup.bind(addr)
    }

    /// The local address, once bound or connected.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.setup.local_addr()
    }

    /// Starts listening; accepted connections inherit this socket's security settings.
    pub fn listen(self, backlog: i32) -> Result<SecureListener, Error> {
        let (socket, admission) = self.setup.into_listening(backlog)?;
        Ok(SecureListener::new(socket.into(), admission))
    }

    /// Connects and secures the connection (`WSAConnect`): the TCP connection and the
    /// handshake together must complete within the policy's handshake timeout. On success
    /// the peer has proven the target name (or, with optional name verification, the
    /// mismatch is reported by the query); on failure nothing of the application's has
    /// been sent. With `ALLOW_INSECURE`, a server that plainly does not speak TLS is
    /// connected to again in clear text (see [`crate::core::fallback`]); the query says so.
    pub fn connect(self, addr: SocketAddr) -> Result<SecureStream, Error> {
        let started = Instant::now();
        let (socket, bound_ip, first, plan) = self.setup.into_connecting(addr)?;
        let timeout = plan.ctx.handshake_timeout;
        let mut deadline = HandshakeDeadline::new(started, timeout);
        let tcp = tcp_connect(socket, addr, &mut deadline)?;
        let mut session = match first {
            Plan::Skip(clear) => return SecureStream::clear(tcp, addr, clear),
            Plan::Tls(session) => session,
        };
        let secured = drive_handshake(&tcp, &mut session, &mut deadline)
            .and_then(|()| Ok(session.complete()?));
        if let Err(e) = secured {
            let clear = match plan.after_failure(e, &session) {
                Ok(clear) => clear,
                Err(e) => {
                    linger_after_refusal(&tcp, &e);
                    return Err(e);
                }
            };
            drop(tcp);
            let socket = fallback_socket(addr, bound_ip)?;
            // The same deadline: the handshake timeout bounds the fallback too.
            let tcp = tcp_connect(socket, addr, &mut HandshakeDeadline::new(started, timeout))?;
            return SecureStream::clear(tcp, addr, clear);
        }
        let mut stream = SecureStream::established(tcp, addr, session);
        stream.authenticate_user(plan.user.as_ref(), &mut deadline)?;
        Ok(stream)
    }
}

/// Connects `socket` to `addr` by `deadline`: a blocking `connect`, which Linux bounds by
/// `SO_SNDTIMEO` (it then fails with EINPROGRESS), so that the timeout armed for it also
/// serves the handshake's first write. (socket2's `connect_timeout` instead switches the
/// socket to non-blocking and back and polls: five system calls more per connection.)
/// A socket someone made non-blocking (through its descriptor) is made blocking and waits
/// for the same attempt; so does an attempt interrupted by a signal.
fn tcp_connect(
    socket: Socket,
    addr: SocketAddr,
    deadline: &mut HandshakeDeadline,
) -> Result<TcpStream, Error> {
    let timed_out = |deadline: &HandshakeDeadline| connect_timed_out(addr, deadline.timeout());
    let mut made_blocking = false;
    loop {
        match deadline.arm_write(&socket) {
            Ok(()) => {}
            Err(Error::Negotiation(NegotiationError::Timeout { .. })) => {
                return Err(timed_out(deadline))
            }
            Err(e) => return Err(e),
        }
        let Err(e) = socket.connect(&SockAddr::from(addr)) else {
            return Ok(socket.into());
        };
        match connect_error(&e) {
            ConnectError::Interrupted => {}
            ConnectError::Connected => return Ok(socket.into()),
            // The armed timeout ran out (arming again finds the deadline passed), or the
            // socket did not block: make it block and wait for the attempt under way.
            ConnectError::Pending => {
                if !made_blocking {
                    socket.set_nonblocking(false)?;
                    made_blocking = true;
                }
            }
            ConnectError::TimedOut => return Err(timed_out(deadline)),
            ConnectError::Failed => return Err(Error::Io(e)),
        }
    }
}

/// What an error from a blocking `connect` means on Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectError {
    /// EINTR: a signal; the attempt goes on, and connecting again waits for it.
    Interrupted,
    /// EISCONN: the attempt completed while a signal interrupted the wait.
    Connected,
    /// EINPROGRESS (the `SO_SNDTIMEO` wait ran out, or the socket is non-blocking),
    /// EALREADY (the same after a retry), EAGAIN: the attempt is still under way.
    Pending,
    /// ETIMEDOUT: the kernel gave up retransmitting the SYN.
    TimedOut,
    /// Anything else (refused, unreachable, ...): the caller sees it as it is.
    Failed,
}

fn connect_error(e: &io::Error) -> ConnectError {
    match e.raw_os_error() {
        Some(libc::EINTR) => ConnectError::Interrupted,
        Some(libc::EISCONN) => ConnectError::Connected,
        Some(libc::EINPROGRESS | libc::EALREADY | libc::EAGAIN) => ConnectError::Pending,
        Some(libc::ETIMEDOUT) => ConnectError::TimedOut,
        _ => ConnectError::Failed,
    }
}

impl AsFd for SecureSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.setup.as_fd()
    }
}

impl AsRawFd for SecureSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.setup.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_mean_what_linux_means_by_them() {
        let cases = [
            (libc::EINTR, ConnectError::Interrupted),
            (libc::EISCONN, ConnectError::Connected),
            (libc::EINPROGRESS, ConnectError::Pending),
            (libc::EALREADY, ConnectError::Pending),
            (libc::EAGAIN, ConnectError::Pending),
            (libc::ETIMEDOUT, ConnectError::TimedOut),
            (libc::ECONNREFUSED, ConnectError::Failed),
            (libc::ENETUNREACH, ConnectError::Failed),
        ];
        for (errno, meaning) in cases {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(connect_error(&e), meaning, "{e}");
        }
        let custom = io::Error::new(io::ErrorKind::TimedOut, "not from the OS");
        assert_eq!(connect_error(&custom), ConnectError::Failed);
    }
}
