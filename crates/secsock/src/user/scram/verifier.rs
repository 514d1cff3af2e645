//! [`Verifier`]: what a server stores for a user instead of a password, its text form
//! (PostgreSQL's), and the decoy that answers for a user who does not exist.
//!
//! Not here: the users file that holds verifiers (`crate::users`).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use zeroize::Zeroize;

use super::message::{decode_base64, decode_key, parse_iterations};
use super::primitives::{
    check_iterations, check_salt, derive_keys, hmac_sha256, saslprep_password,
};
use super::{malformed, RandomSource, ScramError, MIN_SALT_LEN, VERIFIER_PREFIX};
#[cfg(doc)]
use super::{DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS};

/// A stored verifier: what the server keeps instead of a password (RFC 5802
/// `StoredKey` = H(HMAC(SaltedPassword, "Client Key")) and `ServerKey` =
/// HMAC(SaltedPassword, "Server Key"), with SaltedPassword = PBKDF2-HMAC-SHA256).
///
/// Who holds a verifier can act as the server towards this user, and can run a
/// dictionary attack on the password, but cannot log in as the user. Its `Debug` output
/// leaves the keys out.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// The salt (16 random bytes for verifiers made here).
    pub salt: Vec<u8>,
    /// `StoredKey`: checks the client's proof.
    pub stored_key: [u8; 32],
    /// `ServerKey`: signs the server-final message.
    pub server_key: [u8; 32],
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .field("salt", &BASE64.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier of `password` with this salt and iteration count. The password is
    /// prepared with SASLprep (RFC 4013) first; the salt must have at least
    /// [`MIN_SALT_LEN`] bytes and the count lie in [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn new(password: &str, salt: &[u8], iterations: u32) -> Result<Verifier, ScramError> {
        check_salt(salt)?;
        check_iterations(iterations)?;
        let mut prepared = saslprep_password(password)?;
        let mut keys = derive_keys(&prepared, salt, iterations);
        prepared.zeroize();
        keys.client_key.zeroize();
        Ok(Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        })
    }

    /// A new verifier for `password` with a fresh salt of [`MIN_SALT_LEN`] bytes from
    /// `random` (which must be a cryptographic random source; its failure is
    /// [`ScramError::RandomFailed`]).
    pub fn generate(
        password: &str,
        iterations: u32,
        random: &(impl RandomSource + ?Sized),
    ) -> Result<Verifier, ScramError> {
        let mut salt = [0u8; MIN_SALT_LEN];
        random.fill_random(&mut salt)?;
        Verifier::new(password, &salt, iterations)
    }

    /// The text form, PostgreSQL's:
    /// `SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>`.
    pub fn to_text(&self) -> String {
        format!(
            "{VERIFIER_PREFIX}{}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }

    /// Reads the text form written by [`Verifier::to_text`] (and by PostgreSQL).
    /// Weak parameters (few iterations, short salt) are refused here already.
    pub fn parse(text: &str) -> Result<Verifier, ScramError> {
        let body = text
            .strip_prefix(VERIFIER_PREFIX)
            .ok_or_else(|| malformed("verifier: does not start with `SCRAM-SHA-256$`"))?;
        let (parameters, keys) = body
            .split_once('$')
            .ok_or_else(|| malformed("verifier: missing `$` before the keys"))?;
        let (iterations, salt) = parameters
            .split_once(':')
            .ok_or_else(|| malformed("verifier: missing `:` between iterations and salt"))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or_else(|| malformed("verifier: missing `:` between the two keys"))?;
        let iterations = parse_iterations(iterations)?;
        let salt = decode_base64(salt, "verifier salt")?;
        let stored_key = decode_key(stored_key, "verifier StoredKey")?;
        let server_key = decode_key(server_key, "verifier ServerKey")?;
        check_iterations(iterations)?;
        check_salt(&salt)?;
        Ok(Verifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// A verifier for a user that does not exist, indistinguishable to the client from a
    /// real one and stable per user name: salt and keys are HMAC-SHA256 values keyed by
    /// `secret` (a server-wide random, kept across restarts so that the decoy salt does
    /// not change) over a label and `user`. Nobody knows a password for it. Give it the
    /// iteration count real verifiers have ([`DEFAULT_ITERATIONS`] unless configured).
    pub fn decoy(secret: &[u8], user: &str, iterations: u32) -> Verifier {
        let salt = hmac_sha256(secret, &[b"secsock scram decoy salt\0", user.as_bytes()]);
        Verifier {
            iterations,
            salt: salt[..MIN_SALT_LEN].to_vec(),
            stored_key: hmac_sha256(
                secret,
                &[b"secsock scram decoy StoredKey\0", user.as_bytes()],
            ),
            server_key: hmac_sha256(
                secret,
                &[b"secsock scram decoy ServerKey\0", user.as_bytes()],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::scram::tests::*;
    use crate::user::scram::*;

    #[test]
    fn verifier_text_round_trip() {
        let stored = verifier(PASSWORD);
        let text = stored.to_text();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(Verifier::parse(&text).unwrap(), stored);
        // The RFC 7677 vector's keys, in PostgreSQL's format.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let rfc = Verifier::new("pencil", &salt, 4096).unwrap();
        assert_eq!(
            rfc.to_text(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
             WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
             wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        // Debug does not show the keys.
        let debug = format!("{rfc:?}");
        assert!(
            !debug.contains("WG5d8") && !debug.contains("stored_key"),
            "{debug}"
        );
    }

    #[test]
    fn bad_verifier_texts_are_refused() {
        let good = verifier(PASSWORD).to_text();
        let (head, keys) = good.rsplit_once('$').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        let cases = [
            String::new(),
            "SCRAM-SHA-256".to_string(),
            good.replacen("SCRAM-SHA-256", "SCRAM-SHA-1", 1),
            good.replacen('$', "#", 2),
            format!("{head}${stored}"),
            format!("{head}${stored}:{server}:extra"),
            format!("{head}${stored}:{}", &server[4..]),
            format!("{head}${stored}:!!!"),
            good.replacen("4096:", "4096", 1),
            good.replacen("4096:", "x:", 1),
            good.replacen("4096:", "-1:", 1),
            good.replacen("4096:", "99999999999:", 1),
            good.replacen("4096:", "4096:@:", 1),
        ];
        for case in cases {
            assert!(is_malformed(Verifier::parse(&case)), "{case:?}");
        }
        for weak in [
            good.replacen("4096:", "1000:", 1),
            format!("SCRAM-SHA-256$4096:{}${keys}", BASE64.encode([0u8; 8])),
        ] {
            assert!(
                matches!(Verifier::parse(&weak), Err(ScramError::WeakParameters(_))),
                "{weak}"
            );
        }
    }
}
