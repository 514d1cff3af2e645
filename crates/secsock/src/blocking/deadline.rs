//! The deadline of a blocking handshake, kept with socket timeouts, and what becomes of
//! those timeouts once the handshake is over.
//!
//! The blocking front end bounds `connect` plus handshake (and a listener's handshake) by
//! the policy's handshake timeout through the socket's `SO_RCVTIMEO` and `SO_SNDTIMEO`
//! ([`HandshakeDeadline`]). Every `setsockopt` costs a system call, and on a loaded CPU more
//! than its 0.3 µs alone: the eight a resumed handshake used to add (both timeouts set,
//! then cleared, on each side) cost 2-3.5 % of the CPU time of a resumed handshake with
//! both ends on one CPU (docs/PERFORMANCE.md). So:
//! - **Writes during the handshake** try `MSG_DONTWAIT` first ([`HandshakeWriter`]): a
//!   handshake flight fits in the socket's send buffer, so they do not block and need no
//!   timeout; only a write that would block arms `SO_SNDTIMEO` and waits.
//! - **After the handshake** `SO_RCVTIMEO` is cleared ([`HandshakeDeadline::finish`]): a
//!   blocking read under a timeout arms a kernel timer every time it waits (measured: a
//!   one-byte round trip took 0.3 µs longer). `SO_SNDTIMEO` costs nothing until a write
//!   blocks, so it stays set ([`LeftWriteTimeout`]) instead of costing every connection a
//!   system call: when a write blocks that long, the kernel ends it with EAGAIN, and
//!   [`SocketWriter`] checks (`getsockopt`) that the timeout is still the one the
//!   handshake set, not one the application set through the descriptor, clears it and
//!   goes on waiting. The application sees a blocking socket, as before.

use std::io::{self, IoSlice, Write};
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

    /// When the handshake must be done.
    pub(crate) fn at(&self) -> Instant {
        self.deadline
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

    /// Ends the handshake's use of the socket timeouts: clears `SO_RCVTIMEO` if it was
    /// set, and hands over the `SO_SNDTIMEO` it leaves set (if any) to the established
    /// stream.
    pub(crate) fn finish(&self, socket: &TcpStream) -> io::Result<LeftWriteTimeout> {
        if self.read_armed.is_some() {
            socket.set_read_timeout(None)?;
        }
        let nanos = self
            .write_armed
            .map_or(0, |(_, d)| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Ok(LeftWriteTimeout(AtomicU64::new(nanos)))
    }
}

/// The `SO_SNDTIMEO` a handshake left set on an established stream, until it fires or the
/// application sets its own: nanoseconds of the value set, 0 for none.
#[derive(Debug, Default)]
pub(crate) struct LeftWriteTimeout(AtomicU64);

impl LeftWriteTimeout {
    /// The application sets its own write timeout: the handshake's is gone.
    pub(crate) fn forget(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Whether `error`, from a write on `socket`, is the handshake's timeout firing; if so
    /// the timeout is cleared, and the caller tries again.
    ///
    /// The kernel keeps a timeout in clock ticks (at least 100 per second), rounded up:
    /// the value read back is the one set, up to 10 ms more. Any other value was set by the
    /// application through the descriptor, and its timeout is reported as such.
    fn fired(&self, error: &io::Error, socket: &TcpStream) -> bool {
        // EAGAIN: a timeout ran out (ETIMEDOUT would be the connection's failure).
        if error.kind() != io::ErrorKind::WouldBlock {
            return false;
        }
        let set = self.0.swap(0, Ordering::Relaxed);
        if set == 0 {
            return false;
        }
        let set = Duration::from_nanos(set);
        let ours = matches!(socket.write_timeout(), Ok(Some(now))
            if now + Duration::from_micros(1) >= set && now <= set + Duration::from_millis(11));
        ours && socket.set_write_timeout(None).is_ok()
    }
}

/// An established stream's socket, for rustls to write to: a write ended by the timeout
/// the handshake left (see [`LeftWriteTimeout`]) goes on waiting.
pub(crate) struct SocketWriter<'a> {
    pub socket: &'a TcpStream,
    pub left: &'a LeftWriteTimeout,
}

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match (&mut &*self.socket).write_vectored(bufs) {
                Err(e) if self.left.fired(&e, self.socket) => {}
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

    /// A connection with a small send buffer on the client's side: writes block as soon
    /// as the peer's receive window (about 128 KiB before it reads) is full.
    fn stalled_pair() -> (TcpStream, TcpStream) {
        let (client, server) = pair();
        socket2::SockRef::from(&client)
            .set_send_buffer_size(4096)
            .unwrap();
        (client, server)
    }

    /// Writes `total` bytes through a `SocketWriter`.
    fn write_through(client: &TcpStream, left: &LeftWriteTimeout, total: usize) -> io::Result<()> {
        let mut writer = SocketWriter {
            socket: client,
            left,
        };
        writer.write_all(&vec![7u8; total])
    }

    /// Reads `total` bytes from `server`, starting after `delay`.
    fn read_later(
        server: TcpStream,
        delay: Duration,
        total: usize,
    ) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let mut got = 0;
            let mut buf = [0u8; 65536];
            while got < total {
                match std::io::Read::read(&mut &server, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        })
    }

    #[test]
    fn the_handshake_clears_its_read_timeout_and_leaves_its_write_timeout() {
        let (client, _server) = pair();
        let mut deadline = HandshakeDeadline::new(Instant::now(), Duration::from_secs(5));
        deadline.arm_read(&client).unwrap();
        deadline.arm_write(&client).unwrap();
        let left = deadline.finish(&client).unwrap();
        assert_eq!(client.read_timeout().unwrap(), None);
        assert!(client.write_timeout().unwrap().is_some());
        assert_ne!(left.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_left_write_timeout_that_fires_is_cleared_and_the_write_goes_on() {
        let (client, server) = stalled_pair();
        let mut deadline = HandshakeDeadline::new(Instant::now(), Duration::from_millis(100));
        deadline.arm_write(&client).unwrap();
        let left = deadline.finish(&client).unwrap();
        let total = 1 << 20;
        // The peer starts reading only after 600 ms: the write blocks past the 100 ms the
        // handshake left, and must go on until everything is written.
        let reader = read_later(server, Duration::from_millis(600), total);
        let started = Instant::now();
        write_through(&client, &left, total).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert_eq!(
            client.write_timeout().unwrap(),
            None,
            "the handshake's timeout is gone"
        );
        drop(client);
        assert_eq!(reader.join().unwrap(), total);
    }

    #[test]
    fn a_write_timeout_the_application_set_through_the_descriptor_is_honoured() {
        let (client, server) = stalled_pair();
        let mut deadline = HandshakeDeadline::new(Instant::now(), Duration::from_secs(5));
        deadline.arm_write(&client).unwrap();
        let left = deadline.finish(&client).unwrap();
        // The application's own, through the descriptor (not through SecureStream).
        socket2::SockRef::from(&client)
            .set_write_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        let started = Instant::now();
        let e = write_through(&client, &left, 64 << 20).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
        // (The kernel keeps it in clock ticks: 150 ms reads back as up to 160.)
        let kept = client
            .write_timeout()
            .unwrap()
            .expect("the application's timeout stays");
        assert!(kept >= Duration::from_millis(150) && kept <= Duration::from_millis(160));
        drop(server);
    }

    #[test]
    fn a_forgotten_write_timeout_is_left_alone() {
        let (client, server) = stalled_pair();
        let mut deadline = HandshakeDeadline::new(Instant::now(), Duration::from_millis(150));
        deadline.arm_write(&client).unwrap();
        let left = deadline.finish(&client).unwrap();
        left.forget();
        assert!(
            write_through(&client, &left, 64 << 20).is_err(),
            "the timeout fires, and is reported"
        );
        drop(server);
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
