//! A TCP socket before it connects or listens, with the Windows call sequence and its
//! rules: `WSASocket` → `WSASetSocketSecurity` → `WSASetSocketPeerTargetName` → `bind` →
//! `WSAConnect` or `listen`. Both front ends' `SecureSocket`s are this, plus their own
//! `connect` and `listen`.
//!
//! The rules are enforced at run time with errors that name them ([`UsageError`]):
//! security is set once, before bind or connect; the peer target name before connect;
//! connect and listen need security.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::core::admission::Admission;
use crate::core::connect::{ConnectPlan, Plan, Secured};
use crate::error::{Error, UsageError};
use crate::name::PeerTargetName;
use crate::platform::Platform;
use crate::settings::SecuritySettings;

/// An unconnected TCP socket on which security can be turned on (see the module).
pub(crate) struct SocketSetup {
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

impl std::fmt::Debug for SocketSetup {
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

impl SocketSetup {
    /// A new TCP socket of `domain` (IPv4 or IPv6) using the process-wide
    /// [`Platform::global`] (the discovered policy), loaded when security is turned on.
    pub(crate) fn new(domain: Domain) -> Result<Self, Error> {
        Self::create(domain, None)
    }

    /// A new TCP socket of `domain` that uses `platform` (an explicitly loaded policy).
    pub(crate) fn with_platform(domain: Domain, platform: Arc<Platform>) -> Result<Self, Error> {
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

    /// Takes an ordinary TCP socket made elsewhere, to turn security on for it. The rules
    /// still apply: if it is already bound or connected, `set_security` says so.
    pub(crate) fn from_socket(
        socket: Socket,
        platform: Option<Arc<Platform>>,
    ) -> Result<Self, Error> {
        let family = family_name(socket.domain()?)?;
        if socket.r#type()? != Type::STREAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "secured sockets are TCP stream sockets (WSAEINVAL)",
            )
            .into());
        }
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
    pub(crate) fn set_security(&mut self, settings: &SecuritySettings) -> Result<(), Error> {
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
    pub(crate) fn set_peer_target_name(&mut self, name: PeerTargetName) -> Result<(), Error> {
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
    pub(crate) fn peer_target_name(&self) -> Option<&PeerTargetName> {
        self.target.as_ref()
    }

    /// The settings, once security is on.
    pub(crate) fn security_settings(&self) -> Option<&SecuritySettings> {
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
    pub(crate) fn bind(&mut self, addr: SocketAddr) -> Result<(), Error> {
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
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
    }

    /// The checks of `listen`, then listening. A peer target name set on the socket becomes
    /// the listener's name for every address.
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

    /// The checks of `connect`, and what to do for `addr`: the unconnected socket, the
    /// local address the caller bound (a fallback binds it again), and the plan.
    pub(crate) fn into_connecting(
        self,
        addr: SocketAddr,
    ) -> Result<(Socket, Option<std::net::IpAddr>, Plan, ConnectPlan), Error> {
        if self.connected_to().is_some() {
            return Err(UsageError::AlreadyConnected { call: "connect" }.into());
        }
        self.check_family("connect", addr)?;
        let bound_ip = self.bound_to().map(|a| a.ip());
        let secured = self
            .secured
            .ok_or(UsageError::NotConfigured { call: "connect" })?;
        let (first, plan) = ConnectPlan::new(secured, self.target, addr)?;
        Ok((self.socket, bound_ip, first, plan))
    }
}

impl AsFd for SocketSetup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
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

/// The error for a TCP connect that did not complete within the handshake timeout.
pub(crate) fn connect_timed_out(addr: SocketAddr, timeout: std::time::Duration) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "connecting to {addr} timed out after {timeout:?} (the policy's handshake_timeout)"
        ),
    ))
}
