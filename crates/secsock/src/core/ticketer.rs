//! Session tickets that honour the crypto policy's `session_lifetime` (Windows' main-mode
//! lifetime).
//!
//! rustls's stock ticketer has a fixed 6-hour key rotation. This one rotates its ticket
//! keys every `session_lifetime` (keeping the previous key so that tickets issued just
//! before a rotation still work) and, because a ticket encrypted just before a rotation
//! would otherwise live up to twice the lifetime, also stamps each ticket with its issue
//! time inside the encryption and refuses tickets older than the lifetime. A refused
//! ticket just means a full handshake.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::server::ProducesTickets;

/// Makes a fresh ticket encrypter with new random keys.
type Generator = fn() -> Result<Arc<dyn ProducesTickets>, rustls::Error>;

struct Keys {
    current: Arc<dyn ProducesTickets>,
    previous: Option<Arc<dyn ProducesTickets>>,
    since: Instant,
}

pub(crate) struct SessionTicketer {
    lifetime: Duration,
    generator: Generator,
    keys: RwLock<Keys>,
}

impl fmt::Debug for SessionTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTicketer")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

const STAMP: usize = 8;
/// Clock skew tolerated between the time a ticket says it was issued and now.
const SKEW: u64 = 60;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SessionTicketer {
    /// A ticketer whose tickets live `lifetime` (which must be non-zero).
    pub(crate) fn new(lifetime: Duration) -> Result<Self, rustls::Error> {
        Self::with_generator(lifetime, rustls::crypto::aws_lc_rs::Ticketer::new)
    }

    fn with_generator(lifetime: Duration, generator: Generator) -> Result<Self, rustls::Error> {
        Ok(Self {
            lifetime,
            generator,
            keys: RwLock::new(Keys {
                current: generator()?,
                previous: None,
                since: Instant::now(),
            }),
        })
    }

    /// Replaces the current key when it has been in use for a whole lifetime.
    fn rotate_if_due(&self) {
        let due = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            keys.since.elapsed() >= self.lifetime
        };
        if !due {
            return;
        }
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.since.elapsed() < self.lifetime {
            return; // another thread rotated meanwhile
        }
        match (self.generator)() {
            Ok(fresh) => {
                let old = std::mem::replace(&mut keys.current, fresh);
                keys.previous = Some(old);
                keys.since = Instant::now();
            }
            Err(e) => {
                tracing::warn!("cannot make new session ticket keys, keeping the old ones: {e}")
            }
        }
    }
}

impl ProducesTickets for SessionTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.lifetime.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.rotate_if_due();
        let mut stamped = Vec::with_capacity(STAMP + plain.len());
        stamped.extend_from_slice(&unix_now().to_be_bytes());
        stamped.extend_from_slice(plain);
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.current.encrypt(&stamped)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.rotate_if_due();
        let stamped = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            keys.current
                .decrypt(cipher)
                .or_else(|| keys.previous.as_ref().and_then(|p| p.decrypt(cipher)))?
        };
        if stamped.len() < STAMP {
            return None;
        }
        let (stamp, plain) = stamped.split_at(STAMP);
        let issued = u64::from_be_bytes(stamp.try_into().ok()?);
        let now = unix_now();
        if issued > now.saturating_add(SKEW) || now.saturating_sub(issued) > self.lifetime.as_secs()
        {
            return None;
        }
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lifetime_hint() {
        let t = SessionTicketer::new(Duration::from_secs(7200)).unwrap();
        assert_eq!(t.lifetime(), 7200);
        let ticket = t.encrypt(b"session state").unwrap();
        assert_eq!(t.decrypt(&ticket).unwrap(), b"session state");
        assert!(t.decrypt(b"garbage").is_none());
        assert!(t.decrypt(&[]).is_none());
    }

    #[test]
    fn tickets_older_than_the_lifetime_are_refused() {
        let t = SessionTicketer::new(Duration::from_secs(3600)).unwrap();
        // A ticket whose stamp says it was issued two hours ago, encrypted with the
        // current key: decrypts, but is too old.
        let mut stale = (unix_now() - 7200).to_be_bytes().to_vec();
        stale.extend_from_slice(b"state");
        let ticket = t.keys.read().unwrap().current.encrypt(&stale).unwrap();
        assert!(t.decrypt(&ticket).is_none());
        // One from the future (beyond the skew allowance) is refused too.
        let mut future = (unix_now() + 3600).to_be_bytes().to_vec();
        future.extend_from_slice(b"state");
        let ticket = t.keys.read().unwrap().current.encrypt(&future).unwrap();
        assert!(t.decrypt(&ticket).is_none());
    }

    #[test]
    fn rotation_keeps_the_previous_key_and_drops_the_one_before() {
        let t = SessionTicketer::new(Duration::from_millis(30)).unwrap();
        let first = t.encrypt(b"a").unwrap();
        std::thread::sleep(Duration::from_millis(40));
        let second = t.encrypt(b"b").unwrap(); // rotates: first's key is now "previous"
                                               // Lifetime (rounded down to whole seconds: 0) makes the age check refuse anything
                                               // not issued in the current second; both were, so only the keys matter here.
        let keys_after_one = t.keys.read().unwrap().previous.is_some();
        assert!(keys_after_one);
        std::thread::sleep(Duration::from_millis(40));
        let _third = t.encrypt(b"c").unwrap(); // rotates again: first's key is gone
        let k = t.keys.read().unwrap();
        assert!(
            k.current.decrypt(&first).is_none()
                && k.previous.as_ref().unwrap().decrypt(&first).is_none()
        );
        assert!(k.previous.as_ref().unwrap().decrypt(&second).is_some());
    }
}
