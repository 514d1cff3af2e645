//! The deadline of a blocking handshake, kept with socket timeouts, and what becomes of
//! those timeouts once the handshake is over.
//!
//! The blocking front end bounds `connect` plus handshake (and a listener's handshake) by
//! the policy's handshake timeout through the socket's `SO_RCVTIMEO` and `SO_SNDTIMEO`
//! ([`HandshakeDeadline`]). Every `setsockopt` costs a system call, and on a loaded CPU more
//! than its 0.3 µs alone: the eight a resumed handshake used to add (both timeouts set,
//! then cleared, on each side) cost secsock 3 % of the CPU time of a resumed handshake
//! (docs/PERFORMANCE.md). So:
//! - **Writes during the handshake** try `MSG_DONTWAIT` first ([`HandshakeWriter`]): a
//!   handshake flight fits in the socket's send buffer, so they do not block and need no
//!   timeout; only a write that would block arms `SO_SNDTIMEO` and waits.
//! - **After the handshake** the timeouts it armed stay set ([`LeftTimeouts`]): clearing
//!   them would cost one call each on every connection, while an application read or
//!   write rarely waits longer than the handshake timeout. When one does, the kernel ends
//!   it with EAGAIN; [`SocketIo`] then checks (`getsockopt`) that the timeout is still the
//!   one the handshake set, not one the application set through the descriptor, clears it
//!   and goes on waiting. The application sees a blocking socket, as before.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, NegotiationError};

/// The deadline of a blocking handshake (the policy's handshake timeout counted from the
/// start of `connect` or `accept`), enforced through the socket's `SO_RCVTIMEO` and
/// `SO_SNDTIMEO`.
///
/// Setting one costs a system call, so a timeout armed once is kept for later reads (or
/// writes) until it could let one of them end more than a thirty-second of the handshake
/// timeout past the deadline; only then is it armed again with what is left. A handshake
/// on a fast network arms each timeout at most once; a peer that trickles bytes still
/// meets the deadline within 3 %.
pub(crate) struct HandshakeDeadline {
    deadline: Instant,
    timeout: Duration,
    /// When `SO_RCVTIMEO` / `SO_SNDTIMEO` were last set, and to what.
    read_armed: Option<(Instant, Duration)>,
    write_armed: Option<(Instant, Duration)>,
}

/// The shortest timeout armed: a shorter one would round to zero microseconds, which the
/// kernel takes as "no timeout".
const SHORTEST: Duration = Duration::from_millis(1);

impl HandshakeDeadline {
    /// A deadline `timeout` after `started`.
    pub(crate) fn new(started: Instant, timeout: Duration) -> Self {
        Self {
            deadline: started + timeout,
            timeout,
            read_armed: None,
            write_armed: None,
        }
    }

    /// The handshake timeout this deadline enforces.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The time left, or the timeout error if none is.
    fn left(&self, now: Instant) -> Result<Duration, NegotiationError> {
        self.deadline
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
            .ok_or(NegotiationError::Timeout {
                after: self.timeout,
            })
    }

    /// Whether a timeout armed at `armed` may serve an operation starting at `now`: it
    /// ends that operation at most `now - armed` after the deadline.
    fn still_armed(&self, armed: Option<(Instant, Duration)>, now: Instant) -> bool {
        armed.is_some_and(|(at, _)| now.saturating_duration_since(at) <= self.timeout / 32)
    }

    /// Makes the next blocking read end by the deadline (within the slack above).
    pub(crate) fn arm_read(&mut self, socket: &impl AsFd) -> Result<(), Error> {
        let now = Instant::now();
        let left = self.left(now)?.max(SHORTEST);
        if !self.still_armed(self.read_armed, now) {
            socket2::SockRef::from(socket).set_read_timeout(Some(left))?;
            self.read_armed = Some((now, left));
        }
        Ok(())
    }

    /// Makes the next blocking write (or a blocking `connect`, which Linux bounds by
    /// `SO_SNDTIMEO`) end by the deadline (within the slack above).
    pub(crate) fn arm_write(&mut self, socket: &impl AsFd) -> Result<(), Error> {
        let now = Instant::now();
        let left = self.left(now)?.max(SHORTEST);
        if !self.still_armed(self.write_armed, now) {
            socket2::SockRef::from(socket).set_write_timeout(Some(left))?;
            self.write_armed = Some((now, left));
        }
        Ok(())
    }

    /// The timeouts this deadline left set on the socket, for the established stream.
    pub(crate) fn left_armed(&self) -> LeftTimeouts {
        let nanos = |armed: Option<(Instant, Duration)>| {
            armed.map_or(0, |(_, d)| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        LeftTimeouts {
            read: AtomicU64::new(nanos(self.read_armed)),
            write: AtomicU64::new(nanos(self.write_armed)),
        }
    }
}

/// The socket timeouts a handshake left set on an established stream, until each fires or
/// the application sets its own. Nanoseconds of the value set, 0 for none.
#[derive(Debug, Default)]
pub(crate) struct LeftTimeouts {
    read: AtomicU64,
    write: AtomicU64,
}

/// Which way a socket timeout bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl LeftTimeouts {
    fn slot(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Read => &self.read,
            Direction::Write => &self.write,
        }
    }

    /// The application sets the timeout of `direction` itself: the handshake's is gone.
    pub(crate) fn forget(&self, direction: Direction) {
        self.slot(direction).store(0, Ordering::Relaxed);
    }

    /// Whether `error`, from a read or write on `socket`, is the handshake's timeout of
    /// `direction` firing; if so the timeout is cleared, and the caller tries again.
    ///
    /// The kernel keeps a timeout in clock ticks (at least 100 per second), rounded up:
    /// the value read back is the one set, up to 10 ms more. Any other value was set by the
    /// application through the descriptor, and its timeout is reported as such.
    fn fired(&self, direction: Direction, error: &io::Error, socket: &TcpStream) -> bool {
        if !matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return false;
        }
        let set = self.slot(direction).swap(0, Ordering::Relaxed);
        if set == 0 {
            return false;
        }
        let set = Duration::from_nanos(set);
        let socket = socket2::SockRef::from(socket);
        let now = match direction {
            Direction::Read => socket.read_timeout(),
            Direction::Write => socket.write_timeout(),
        };
        let ours = matches!(now, Ok(Some(now))
            if now + Duration::from_micros(1) >= set && now <= set + Duration::from_millis(11));
        if !ours {
            return false;
        }
        let cleared = match direction {
            Direction::Read => socket.set_read_timeout(None),
            Direction::Write => socket.set_write_timeout(None),
        };
        cleared.is_ok()
    }
}

/// An established stream's socket, for rustls to read from and write to: a read or write
/// ended by the timeout the handshake left (see [`LeftTimeouts`]) goes on waiting.
pub(crate) struct SocketIo<'a> {
    pub socket: &'a TcpStream,
    pub left: &'a LeftTimeouts,
}

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&mut &*self.socket).read(buf) {
                Err(e) if self.left.fired(Direction::Read, &e, self.socket) => {}
                other => return other,
            }
        }
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match (&mut &*self.socket).write_vectored(bufs) {
                Err(e) if self.left.fired(Direction::Write, &e, self.socket) => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The handshake's writer: sends without blocking first, and only if the socket's send
/// buffer is full arms `SO_SNDTIMEO` (by the deadline) and waits.
pub(crate) struct HandshakeWriter<'a> {
    pub socket: &'a TcpStream,
    pub deadline: &'a mut HandshakeDeadline,
}

impl Write for HandshakeWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let socket = socket2::SockRef::from(self.socket);
        match socket.send_vectored_with_flags(bufs, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        self.deadline.arm_write(self.socket).map_err(|e| match e {
            Error::Io(e) => e,
            timeout => io::Error::new(io::ErrorKind::TimedOut, timeout.to_string()),
        })?;
        socket.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_left_read_timeout_that_fires_is_cleared_and_the_read_goes_on() {
        let (client, server) = pair();
        let mut deadline = HandshakeDeadline::new(Instant::now(), Duration::from_millis(100));
        deadline.arm_read(&client).unwrap();
        let left = deadline.left_armed();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            (&server).write_all(b"late").unwrap();
            server
        });
        let started = Instant::now();
        let mut buf = [0u8; 4];
        let mut io = SocketIo {
            socket: &client,
            left: &left,
        };
        io.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
        assert!(started.elapsed() >= Duration::from_millis(350));
        assert_eq!(
            client.read_timeout().unwrap(),
            None,
            "the handshake's timeout is gone"
        );
        drop(writer.join().unwrap());
    }

    #[test]
    fn a_timeout_the_application_set_through_the_descriptor_is_honoured() {
        let (client, _server) = pair();
        let mut deadline = HandshakeDeadline::new(Instant::now(), Duration::from_secs(5));
        deadline.arm_read(&client).unwrap();
        let left = deadline.left_armed();
        // The application's own, through the descriptor (not through SecureStream).
        socket2::SockRef::from(&client)
            .set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        let started = Instant::now();
        let mut io = SocketIo {
            socket: &client,
            left: &left,
        };
        let e = io.read(&mut [0u8; 4]).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
        // (The kernel keeps it in clock ticks: 150 ms reads back as up to 160.)
        let kept = client
            .read_timeout()
            .unwrap()
            .expect("the application's timeout stays");
        assert!(kept >= Duration::from_millis(150) && kept <= Duration::from_millis(160));
    }

    #[test]
    fn a_forgotten_timeout_is_left_alone() {
        let (client, _server) = pair();
        let mut deadline = HandshakeDeadline::new(Instant::now(), Duration::from_millis(100));
        deadline.arm_read(&client).unwrap();
        let left = deadline.left_armed();
        left.forget(Direction::Read);
        let mut io = SocketIo {
            socket: &client,
            left: &left,
        };
        assert!(
            io.read(&mut [0u8; 4]).is_err(),
            "the timeout fires, and is reported"
        );
    }

    #[test]
    fn a_handshake_write_that_would_block_waits_until_the_deadline() {
        let (client, _server) = pair();
        socket2::SockRef::from(&client)
            .set_send_buffer_size(4096)
            .unwrap();
        let mut deadline = HandshakeDeadline::new(Instant::now(), Duration::from_millis(300));
        let mut writer = HandshakeWriter {
            socket: &client,
            deadline: &mut deadline,
        };
        // The peer never reads: the buffers fill, and the writer must stop at the deadline.
        let chunk = vec![0u8; 64 * 1024];
        let started = Instant::now();
        let error = loop {
            if let Err(e) = writer.write(&chunk) {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "never blocked");
        };
        assert!(matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
