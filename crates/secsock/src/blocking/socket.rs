//! A TCP socket that security can be turned on for, before it connects or listens: the
//! Windows sequence `WSASocket` → `WSASetSocketSecurity` → `WSASetSocketPeerTargetName` →
//! `WSAConnect` (or `bind` → `listen`).
//!
//! The rules of that sequence are enforced at run time with errors that name them
//! ([`UsageError`]): security is set once, before bind or connect; the peer target name
//! before connect; connect and listen need security.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::blocking::deadline::HandshakeDeadline;
use crate::blocking::listener::{Admission, SecureListener};
use crate::blocking::stream::{drive_handshake, linger_after_refusal, SecureStream};
use crate::core::fallback;
use crate::core::session::{Clear, Session};
use crate::core::tls::CryptoContext;
use crate::error::NegotiationError;
use crate::error::{Error, UsageError};
use crate::name::PeerTargetName;
use crate::platform::Platform;
use crate::settings::SecuritySettings;

/// Security turned on: the settings and the crypto they resolved to.
#[derive(Clone, Debug)]
pub(crate) struct Secured {
    pub settings: SecuritySettings,
    pub ctx: Arc<CryptoContext>,
}

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
    socket: Socket,
    family: &'static str,
    platform: Option<Arc<Platform>>,
    secured: Option<Secured>,
    target: Option<PeerTargetName>,
    /// Made elsewhere and handed over with `from_socket`: its state is asked of the kernel.
    foreign: bool,
    /// Where `bind` bound it.
    bound: Option<SocketAddr>,
}

impl std::fmt::Debug for SecureSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureSocket")
            .field("family", &self.family)
            .field("settings", &self.secured.as_ref().map(|s| &s.settings))
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The family's name; only IPv4 and IPv6 sockets can be secured (`WSAEAFNOSUPPORT`).
fn family_name(domain: Domain) -> io::Result<&'static str> {
    if domain == Domain::IPV4 {
        Ok("IPv4")
    } else if domain == Domain::IPV6 {
        Ok("IPv6")
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "secured sockets are IPv4 or IPv6 (WSAEAFNOSUPPORT)",
        ))
    }
}

impl SecureSocket {
    /// A new TCP socket of `domain` (IPv4 or IPv6) using the process-wide
    /// [`Platform::global`] (the discovered policy), loaded when security is turned on.
    pub fn new(domain: Domain) -> Result<Self, Error> {
        Self::create(domain, None)
    }

    /// A new TCP socket of `domain` that uses `platform` (an explicitly loaded policy).
    pub fn with_platform(domain: Domain, platform: Arc<Platform>) -> Result<Self, Error> {
        Self::create(domain, Some(platform))
    }

    fn create(domain: Domain, platform: Option<Arc<Platform>>) -> Result<Self, Error> {
        let family = family_name(domain)?;
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        Ok(Self::wrap(socket, family, platform, false))
    }

    fn wrap(
        socket: Socket,
        family: &'static str,
        platform: Option<Arc<Platform>>,
        foreign: bool,
    ) -> Self {
        Self {
            socket,
            family,
            platform,
            secured: None,
            target: None,
            foreign,
            bound: None,
        }
    }

    /// Takes an ordinary TCP socket made elsewhere, to turn security on for it, and puts it
    /// in blocking mode. The rules still apply: if it is already bound or connected,
    /// `set_security` says so.
    pub fn from_socket(socket: Socket, platform: Option<Arc<Platform>>) -> Result<Self, Error> {
        let family = family_name(socket.domain()?)?;
        if socket.r#type()? != Type::STREAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "secured sockets are TCP stream sockets (WSAEINVAL)",
            )
            .into());
        }
        // The blocking API blocks, its connect included (bounded by SO_SNDTIMEO); the
        // tokio API makes its sockets non-blocking itself.
        socket.set_nonblocking(false)?;
        Ok(Self::wrap(socket, family, platform, true))
    }

    /// Where the socket is connected. A socket this type created cannot be: `connect`
    /// consumes it. Only a socket from [`from_socket`](Self::from_socket) is asked (a
    /// `getpeername` per check would cost every connect its syscalls).
    fn connected_to(&self) -> Option<SocketAddr> {
        if !self.foreign {
            return None;
        }
        self.socket.peer_addr().ok().and_then(|a| a.as_socket())
    }

    /// Where the socket is bound: remembered by `bind`, asked of a foreign socket.
    fn bound_to(&self) -> Option<SocketAddr> {
        if !self.foreign {
            return self.bound;
        }
        self.socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .filter(|a| a.port() != 0)
    }

    /// Turns security on (`WSASetSocketSecurity`). Once per socket, before bind or connect.
    /// The settings are validated, and their crypto policy key must name a crypto policy
    /// of the policy file.
    pub fn set_security(&mut self, settings: &SecuritySettings) -> Result<(), Error> {
        if self.secured.is_some() {
            return Err(UsageError::AlreadyConfigured.into());
        }
        if self.connected_to().is_some() {
            return Err(UsageError::AlreadyConnected {
                call: "set_security",
            }
            .into());
        }
        if let Some(addr) = self.bound_to() {
            return Err(UsageError::AlreadyBound {
                call: "set_security",
                addr: addr.to_string(),
            }
            .into());
        }
        settings.validate()?;
        let platform = match &self.platform {
            Some(p) => p.clone(),
            None => Platform::global()?,
        };
        let ctx = platform.context(settings.crypto_policy.as_ref())?;
        self.secured = Some(Secured {
            settings: settings.clone(),
            ctx,
        });
        Ok(())
    }

    /// Names the peer the connection must prove (`WSASetSocketPeerTargetName`). Before
    /// connect; may be replaced until then. With `PEER_NAME_IS_RAW_FORMAT` in the settings
    /// the name's text is compared raw.
    pub fn set_peer_target_name(&mut self, name: PeerTargetName) -> Result<(), Error> {
        if self.connected_to().is_some() {
            return Err(UsageError::AlreadyConnected {
                call: "set_peer_target_name",
            }
            .into());
        }
        self.target = Some(name);
        Ok(())
    }

    /// The peer target name set so far.
    pub fn peer_target_name(&self) -> Option<&PeerTargetName> {
        self.target.as_ref()
    }

    /// The settings, once security is on.
    pub fn security_settings(&self) -> Option<&SecuritySettings> {
        self.secured.as_ref().map(|s| &s.settings)
    }

    fn check_family(&self, call: &'static str, addr: SocketAddr) -> Result<(), Error> {
        let matches = match addr {
            SocketAddr::V4(_) => self.family == "IPv4",
            SocketAddr::V6(_) => self.family == "IPv6",
        };
        if matches {
            Ok(())
        } else {
            Err(UsageError::WrongFamily {
                call,
                addr: addr.to_string(),
                family: self.family,
            }
            .into())
        }
    }

    /// Binds a local address. `SO_REUSEADDR` is set (a restarted server can bind while old
    /// connections linger in TIME_WAIT); `SO_REUSEPORT` never is, so no other socket can
    /// share a secured port.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), Error> {
        self.check_family("bind", addr)?;
        self.socket.set_reuse_address(true)?;
        self.socket.bind(&SockAddr::from(addr)).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "cannot bind {addr}: the port is in use by another socket \
                         (secured ports are exclusive: secsock never shares them with SO_REUSEPORT)"
                    ),
                )
            } else {
                e
            }
        })?;
        self.bound = Some(addr);
        Ok(())
    }

    /// The local address, once bound or connected.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
    }

    /// Starts listening; accepted connections inherit this socket's security settings.
    pub fn listen(self, backlog: i32) -> Result<SecureListener, Error> {
        let (socket, admission) = self.into_listening(backlog)?;
        Ok(SecureListener::new(socket.into(), admission))
    }

    /// The checks of `listen`, then listening; shared with the async front end. A peer
    /// target name set on the socket becomes the listener's name for every address.
    pub(crate) fn into_listening(self, backlog: i32) -> Result<(Socket, Arc<Admission>), Error> {
        let secured = self
            .secured
            .ok_or(UsageError::NotConfigured { call: "listen" })?;
        if self
            .socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_none_or(|a| a.port() == 0)
        {
            return Err(UsageError::NotBound.into());
        }
        self.socket.listen(backlog)?;
        Ok((self.socket, Admission::new(secured, self.target)))
    }

    /// The checks of `connect`, and what to do for `addr`; shared with the async front
    /// end. The socket is returned unconnected.
    pub(crate) fn into_connecting(self, addr: SocketAddr) -> Result<Connecting, Error> {
        if self.connected_to().is_some() {
            return Err(UsageError::AlreadyConnected { call: "connect" }.into());
        }
        self.check_family("connect", addr)?;
        let bound_ip = self.bound_to().map(|a| a.ip());
        let secured = self
            .secured
            .ok_or(UsageError::NotConfigured { call: "connect" })?;
        let settings = &secured.settings;
        let plan = if settings.skips_enforcement() {
            Plan::Skip(Clear::new(
                NegotiationError::EnforcementSkipped,
                &secured.ctx,
            ))
        } else {
            let target = self.target.map(|t| {
                if settings.raw_peer_name() {
                    t.to_raw()
                } else {
                    t
                }
            });
            Plan::Tls(Session::client(
                secured.ctx.clone(),
                target,
                settings.optional_name_verification(),
                addr,
            )?)
        };
        Ok(Connecting {
            socket: self.socket,
            plan,
            bound_ip,
            allow_insecure: settings.allows_insecure(),
            user: settings.user.clone(),
            ctx: secured.ctx,
        })
    }

    /// Connects and secures the connection (`WSAConnect`): the TCP connection and the
    /// handshake together must complete within the policy's handshake timeout. On success
    /// the peer has proven the target name (or, with optional name verification, the
    /// mismatch is reported by the query); on failure nothing of the application's has
    /// been sent. With `ALLOW_INSECURE`, a server that plainly does not speak TLS is
    /// connected to again in clear text (see [`crate::core::fallback`]); the query says so.
    pub fn connect(self, addr: SocketAddr) -> Result<SecureStream, Error> {
        let started = Instant::now();
        let connecting = self.into_connecting(addr)?;
        let timeout = connecting.ctx.handshake_timeout;
        let mut deadline = HandshakeDeadline::new(started, timeout);
        let tcp = tcp_connect(connecting.socket, addr, &mut deadline)?;
        let mut session = match connecting.plan {
            Plan::Skip(clear) => return SecureStream::clear(tcp, addr, clear),
            Plan::Tls(session) => session,
        };
        match drive_handshake(&tcp, &mut session, &mut deadline)
            .and_then(|()| Ok(session.complete()?))
        {
            Ok(()) => {
                let mut stream = SecureStream::established(tcp, addr, session);
                stream.authenticate_user(connecting.user.as_ref(), &mut deadline)?;
                Ok(stream)
            }
            Err(Error::Negotiation(e)) if connecting.allow_insecure => {
                let reason = fallback::client_fallback(
                    e,
                    session.first_peer_byte(),
                    session.peer_spoke_tls_before(),
                )?;
                drop(tcp);
                let socket = fallback_socket(addr, connecting.bound_ip)?;
                // The same deadline: the handshake timeout bounds the fallback too.
                let tcp = tcp_connect(socket, addr, &mut HandshakeDeadline::new(started, timeout))?;
                SecureStream::clear(tcp, addr, Clear::new(reason, &connecting.ctx))
            }
            Err(e) => {
                linger_after_refusal(&tcp, &e);
                Err(e)
            }
        }
    }
}

/// What `connect` will do, decided before any byte is sent.
pub(crate) struct Connecting {
    pub socket: Socket,
    pub plan: Plan,
    /// The local address the caller bound, reused (with a new port) for a fallback.
    pub bound_ip: Option<std::net::IpAddr>,
    pub allow_insecure: bool,
    /// The user identity to prove after the handshake.
    pub user: Option<crate::settings::UserCredentials>,
    pub ctx: Arc<CryptoContext>,
}

/// TLS, or clear because the socket skips enforcement.
#[allow(clippy::large_enum_variant)] // short-lived, and TLS is the common case
pub(crate) enum Plan {
    Tls(Session),
    Skip(Clear),
}

/// A new, unconnected socket for the clear-text connection of a fallback: the same family,
/// bound to the same local IP if the first one was.
pub(crate) fn fallback_socket(
    addr: SocketAddr,
    bound_ip: Option<std::net::IpAddr>,
) -> Result<Socket, Error> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = bound_ip {
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    Ok(socket)
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

/// The error for a TCP connect that did not complete within the handshake timeout.
pub(crate) fn connect_timed_out(addr: SocketAddr, timeout: std::time::Duration) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "connecting to {addr} timed out after {timeout:?} (the policy's handshake_timeout)"
        ),
    ))
}

impl AsFd for SecureSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for SecureSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
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
