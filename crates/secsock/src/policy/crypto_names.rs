//! The names a crypto policy may use for key exchange groups and TLS 1.3 cipher suites,
//! and the rustls values they stand for.
//!
//! Not here: which of them a policy picks (the file) or how many (the checks in
//! [`super::build`]).

use rustls::crypto::aws_lc_rs::{cipher_suite, kx_group};
use rustls::crypto::SupportedKxGroup;
use rustls::SupportedCipherSuite;

const KX_NAMES: &str =
    "X25519MLKEM768, X25519, secp256r1 (P-256), secp384r1 (P-384), SECP256R1MLKEM768, MLKEM768, MLKEM1024";
const SUITE_NAMES: &str =
    "TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256";

pub(super) fn kx_group_named(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "x25519mlkem768" => kx_group::X25519MLKEM768,
        "x25519" => kx_group::X25519,
        "secp256r1" | "p-256" => kx_group::SECP256R1,
        "secp384r1" | "p-384" => kx_group::SECP384R1,
        "secp256r1mlkem768" => kx_group::SECP256R1MLKEM768,
        "mlkem768" => kx_group::MLKEM768,
        "mlkem1024" => kx_group::MLKEM1024,
        _ => {
            return Err(format!(
                "unknown key exchange group `{name}` (known: {KX_NAMES})"
            ))
        }
    })
}

pub(super) fn cipher_suite_named(name: &str) -> Result<SupportedCipherSuite, String> {
    let lower = name.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "tls13_aes_128_gcm_sha256" => cipher_suite::TLS13_AES_128_GCM_SHA256,
        "tls13_aes_256_gcm_sha384" => cipher_suite::TLS13_AES_256_GCM_SHA384,
        "tls13_chacha20_poly1305_sha256" => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        _ if lower.starts_with("tls_") || lower.contains("_with_") => {
            return Err(format!(
                "`{name}` is a TLS 1.2 cipher suite; secsock uses TLS 1.3 only (use one of: {SUITE_NAMES})"
            ))
        }
        _ => return Err(format!("unknown cipher suite `{name}` (known: {SUITE_NAMES})")),
    })
}
