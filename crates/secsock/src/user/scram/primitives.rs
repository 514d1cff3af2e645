//! What the client, the server and the verifier share: HMAC-SHA-256, SHA-256 and the
//! PBKDF2 key derivation (RFC 5802 §3), SASLprep of names and passwords (RFC 4013), the
//! parameter checks, and nonces.
//!
//! Not here: the messages (`message`) or any state of an exchange.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{
    malformed, RandomSource, ScramError, MAX_ITERATIONS, MIN_ITERATIONS, MIN_SALT_LEN, NONCE_LEN,
};

pub(super) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of every length (long keys are hashed), so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(super) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The keys RFC 5802 §3 derives from a password.
pub(super) struct Keys {
    pub(super) client_key: [u8; 32],
    pub(super) stored_key: [u8; 32],
    pub(super) server_key: [u8; 32],
}

pub(super) fn derive_keys(prepared_password: &str, salt: &[u8], iterations: u32) -> Keys {
    let mut salted_password = [0u8; 32];
    // aws-lc's PBKDF2, compiled C: a debug build derives the default 600,000 rounds in a
    // fraction of a second (the generic Rust code, instantiated unoptimised here, took
    // seconds, and every unknown user's decoy challenge asks for the default count).
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN),
        salt,
        prepared_password.as_bytes(),
        &mut salted_password,
    );
    let client_key = hmac_sha256(&salted_password, &[b"Client Key"]);
    let server_key = hmac_sha256(&salted_password, &[b"Server Key"]);
    salted_password.zeroize();
    Keys {
        client_key,
        stored_key: sha256(&client_key),
        server_key,
    }
}

pub(super) fn saslprep_password(password: &str) -> Result<String, ScramError> {
    match stringprep::saslprep(password) {
        Ok(prepared) if prepared.is_empty() => {
            Err(ScramError::InvalidPassword("empty".to_string()))
        }
        Ok(prepared) => Ok(prepared.into_owned()),
        // stringprep's message names the offending character; a password's characters
        // must not end up in logs, so only the kind of problem is reported.
        Err(error) if error.to_string().starts_with("prohibited character") => {
            Err(ScramError::InvalidPassword(
                "contains a character SASLprep prohibits (control, private-use, unassigned, ...)"
                    .to_string(),
            ))
        }
        Err(error) => Err(ScramError::InvalidPassword(format!("SASLprep: {error}"))),
    }
}

pub(super) fn saslprep_user(user: &str) -> Result<String, ScramError> {
    match stringprep::saslprep(user) {
        Ok(prepared) if prepared.is_empty() => Err(malformed("n: empty user name")),
        Ok(prepared) => Ok(prepared.into_owned()),
        Err(error) => Err(malformed(format!(
            "n: user name refused by SASLprep: {}",
            error.to_string().escape_debug()
        ))),
    }
}

pub(super) fn check_iterations(iterations: u32) -> Result<(), ScramError> {
    if iterations < MIN_ITERATIONS {
        return Err(ScramError::WeakParameters(format!(
            "{iterations} iterations, fewer than the minimum {MIN_ITERATIONS}"
        )));
    }
    if iterations > MAX_ITERATIONS {
        return Err(ScramError::WeakParameters(format!(
            "{iterations} iterations, more than the {MAX_ITERATIONS} a client will compute"
        )));
    }
    Ok(())
}

pub(super) fn check_salt(salt: &[u8]) -> Result<(), ScramError> {
    if salt.len() < MIN_SALT_LEN {
        return Err(ScramError::WeakParameters(format!(
            "salt of {} bytes, shorter than the minimum {MIN_SALT_LEN}",
            salt.len()
        )));
    }
    Ok(())
}

/// A fresh nonce: [`NONCE_LEN`] random bytes in base64 (printable, without `,`).
pub(super) fn new_nonce(random: &(impl RandomSource + ?Sized)) -> Result<String, ScramError> {
    let mut bytes = [0u8; NONCE_LEN];
    random.fill_random(&mut bytes)?;
    Ok(BASE64.encode(bytes))
}
