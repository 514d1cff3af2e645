//! A trust domain's certificate authority, and the identities it issues: the certificate
//! and file logic behind `secsock init` and `secsock issue`.
//!
//! [`CertificateAuthority::create`] makes a new CA, [`CertificateAuthority::load`] reads one
//! back (refusing a key that others can read), and [`CertificateAuthority::issue`] makes an
//! identity for any principal form, with exactly the subject alternative names that prove
//! that principal and nothing more (`subject_alt_names` says which). [`write_ca`] and
//! [`write_identity_dir`] put them on disk the way mkcert does: ready to use, private keys
//! mode 0600 from the moment they exist, and a `policy.toml` that refers to its files by
//! relative paths so that the directory can be copied to another host as-is.
//!
//! What it is not: flag parsing and printing (`main.rs`), or a CA service. A trust domain
//! that outgrows local files moves to Kerberos or SPIFFE (SPEC §2).
//!
//! The files: `ca` ([`CertificateAuthority`]: making, loading and signing; [`KeyAlgorithm`]),
//! `sans` (`subject_alt_names`: which SANs prove which principal; their encoding is the
//! library's, `secsock::name::SubjectAltName`), `files` ([`write_ca`],
//! [`write_identity_dir`] and the policy they write; [`this_host_name`]).
// main.rs wires this module up (`secsock init`, `secsock issue`); until then parts are unused.
#![allow(dead_code)]

mod ca;
mod files;
mod sans;

pub use ca::{CertificateAuthority, KeyAlgorithm};
pub use files::{this_host_name, write_ca, write_identity_dir};

#[cfg(test)]
mod tests;
