//! How a connection ends without losing what was said last, written once for every front
//! end: after its write side is shut down (close_notify and FIN, or an alert or FAILURE
//! frame and FIN), a side keeps reading and discarding what its peer still sends until the
//! peer closes too, for a bounded time and, after a refusal, a bounded number of bytes.
//! Closing a TCP socket with unread input makes the kernel send a reset, and a reset can
//! destroy data still in flight — the application's last bytes, or the alert that tells a
//! refused peer why.
//!
//! The front end shuts its write side, then asks [`Drain::wait`] how long it may wait for
//! the next read, reads (with that timeout, or under `tokio::time::timeout_at`), and gives
//! the result to [`Drain::read`], until either says to stop.

use std::io;
use std::time::{Duration, Instant};

use crate::error::{Error, NegotiationError};

/// How long a side that refused its peer during the handshake keeps reading (and
/// discarding) what the peer still sends before it closes.
pub(crate) const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The most a refusing side reads from its peer while it lingers: a peer that keeps
/// sending gets its reset, and the refusing side its resources back.
pub(crate) const REFUSAL_DRAIN: usize = 64 * 1024;

/// The discarding read that ends one connection; see the module.
#[derive(Debug)]
pub(crate) struct Drain {
    until: Instant,
    /// Bytes still to discard before giving up on the peer (None: no limit).
    budget: Option<usize>,
}

impl Drain {
    /// After a refusal while securing the connection (`error`): `None` when the peer has
    /// nothing to learn or the socket is no longer worth reading — the handshake timed out
    /// or the socket itself failed.
    pub(crate) fn after_refusal(error: &Error, now: Instant) -> Option<Self> {
        let worth = match error {
            Error::Negotiation(NegotiationError::Timeout { .. }) => false,
            Error::Negotiation(_) => true,
            _ => false,
        };
        worth.then(|| Drain {
            until: now + REFUSAL_LINGER,
            budget: Some(REFUSAL_DRAIN),
        })
    }

    /// After a clean close (`closesocket`): waits up to `linger` (the policy's handshake
    /// timeout) for the peer's end; the peer's data meanwhile is discarded.
    pub(crate) fn after_close(linger: Duration, now: Instant) -> Self {
        Drain {
            until: now + linger,
            budget: None,
        }
    }

    /// The instant the drain gives up.
    pub(crate) fn until(&self) -> Instant {
        self.until
    }

    /// How long the next read may wait; `None`: stop now.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        if self.budget == Some(0) {
            return None;
        }
        self.until
            .checked_duration_since(now)
            .filter(|left| !left.is_zero())
    }

    /// Takes a read's result; whether to read again.
    pub(crate) fn read(&mut self, result: io::Result<usize>) -> bool {
        match result {
            Ok(0) => false,
            Ok(n) => match &mut self.budget {
                Some(budget) => {
                    *budget = budget.saturating_sub(n);
                    *budget > 0
                }
                None => true,
            },
            Err(e) => e.kind() == io::ErrorKind::Interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Peer;

    #[test]
    fn a_refusal_drains_a_bounded_amount_for_a_bounded_time() {
        let t0 = Instant::now();
        let refused =
            Error::Negotiation(NegotiationError::CertificateRevoked { peer: Peer::Client });
        let mut drain = Drain::after_refusal(&refused, t0).expect("an alert was sent");
        assert_eq!(drain.wait(t0), Some(REFUSAL_LINGER));
        assert_eq!(drain.until(), t0 + REFUSAL_LINGER);
        assert!(drain.read(Ok(REFUSAL_DRAIN - 1)));
        assert!(drain.wait(t0 + Duration::from_millis(500)).is_some());
        // The budget is spent: the peer that keeps sending gets its reset.
        assert!(!drain.read(Ok(1)));
        assert_eq!(drain.wait(t0), None);
        // Time is up.
        let drain = Drain::after_refusal(&refused, t0).unwrap();
        assert_eq!(drain.wait(t0 + REFUSAL_LINGER), None);
    }

    #[test]
    fn nothing_is_drained_after_a_timeout_or_a_broken_socket() {
        let t0 = Instant::now();
        let timeout = Error::Negotiation(NegotiationError::Timeout {
            after: Duration::from_secs(1),
        });
        assert!(Drain::after_refusal(&timeout, t0).is_none());
        let broken = Error::Io(io::ErrorKind::ConnectionReset.into());
        assert!(Drain::after_refusal(&broken, t0).is_none());
    }

    #[test]
    fn a_close_waits_for_the_peer_and_discards_without_limit() {
        let t0 = Instant::now();
        let mut drain = Drain::after_close(Duration::from_secs(5), t0);
        assert!(drain.read(Ok(1 << 30)));
        assert!(drain.read(Err(io::ErrorKind::Interrupted.into())));
        assert_eq!(
            drain.wait(t0 + Duration::from_secs(1)),
            Some(Duration::from_secs(4))
        );
        // The peer's end, an error, or the time up: stop.
        assert!(!drain.read(Ok(0)));
        assert!(!drain.read(Err(io::ErrorKind::ConnectionReset.into())));
        assert_eq!(drain.wait(t0 + Duration::from_secs(5)), None);
    }
}
