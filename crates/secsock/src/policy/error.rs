//! [`PolicyError`]: why a policy could not be loaded, with the file, line and key, and
//! [`PolicyErrorKind`]: what is wrong, with the facts a person needs to fix it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a policy could not be loaded: where (file, line, key) and what ([`PolicyErrorKind`]).
///
/// Displayed as `FILE:LINE: KEY: MESSAGE`, with the parts that are known, e.g.
/// `/etc/secsock/policy.toml:7: trust.anchors: cannot read /etc/secsock/trust/ca.crt: No
/// such file or directory (os error 2)`.
#[derive(Debug)]
pub struct PolicyError {
    /// The policy file, as given; empty when no file is concerned
    /// ([`PolicyErrorKind::NotFound`]).
    pub file: PathBuf,
    /// The 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// The dotted key concerned, e.g. `trust.anchors` or `crypto.fast.key_exchange`.
    pub key: Option<String>,
    /// What is wrong.
    pub kind: PolicyErrorKind,
}

impl PolicyError {
    pub(super) fn new(file: impl Into<PathBuf>, kind: PolicyErrorKind) -> Self {
        PolicyError {
            file: file.into(),
            line: None,
            key: None,
            kind,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has_file = !self.file.as_os_str().is_empty();
        match (has_file, self.line) {
            (true, Some(line)) => write!(f, "{}:{line}: ", self.file.display())?,
            (true, None) => write!(f, "{}: ", self.file.display())?,
            (false, Some(line)) => write!(f, "line {line}: ")?,
            (false, None) => {}
        }
        let names_its_key = matches!(
            self.kind,
            PolicyErrorKind::UnknownKey { .. } | PolicyErrorKind::Unsupported(_)
        );
        if let Some(key) = self.key.as_deref().filter(|_| !names_its_key) {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for PolicyError {}

/// What is wrong with a policy; the facts a person needs to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// No policy file exists in any place discovery looked at (each with why it was
    /// looked at), or `$SECSOCK_POLICY` names a file that does not exist (then it is the
    /// only place listed).
    #[error("{}", not_found_message(looked_in))]
    NotFound {
        /// The places looked at, in order, with why.
        looked_in: Vec<(PathBuf, &'static str)>,
    },
    /// The policy file itself could not be read (missing, not readable, not UTF-8).
    #[error("cannot read the policy file: {0}")]
    Io(io::Error),
    /// The file is not valid TOML.
    #[error("TOML syntax error: {0}")]
    Syntax(String),
    /// A key or section this version does not know (often a typo).
    #[error("unknown key `{key}` {} {table}{}", if table.starts_with('[') { "in" } else { "at" }, expected_list(expected))]
    UnknownKey {
        /// The unknown key, as written.
        key: String,
        /// Where it is: `[trust]`, `[crypto.fast]`, or `the top level`.
        table: Box<str>,
        /// The keys allowed there.
        expected: Box<[String]>,
    },
    /// A required section or key is absent.
    #[error("{0}")]
    MissingKey(String),
    /// A value has the wrong type or an unacceptable value (a bad duration, an unknown
    /// key exchange group, a TLS 1.2 cipher suite, a duplicate id, a private key that
    /// does not match the certificate, ...).
    #[error("{0}")]
    InvalidValue(String),
    /// A file named by the policy could not be read.
    #[error("cannot read {}: {error}", path.display())]
    MissingFile {
        /// The file, resolved against the policy file's directory.
        path: PathBuf,
        /// Why it could not be read.
        error: io::Error,
    },
    /// The private key file is accessible by group or others (`mode & 0o077 != 0`).
    #[error(
        "{} is {} by group or others (mode {:04o}); a private key must be 0600 or stricter: run `chmod 600 {}`",
        path.display(),
        if mode & 0o044 != 0 { "readable" } else { "accessible" },
        mode & 0o7777,
        path.display()
    )]
    KeyPermissions {
        /// The private key file.
        path: PathBuf,
        /// Its permission bits (`st_mode`).
        mode: u32,
    },
    /// The policy file, a trust anchor file or a CRL file may be written by group or others
    /// (`mode & 0o022 != 0`): whoever can write it decides whom this machine trusts.
    #[error(
        "{} is writable by group or others (mode {:04o}); {what} must be writable by its owner only: run `chmod go-w {}`",
        path.display(),
        mode & 0o7777,
        path.display()
    )]
    WritableByOthers {
        /// The file.
        path: PathBuf,
        /// Its permission bits (`st_mode`).
        mode: u32,
        /// What the file is, e.g. "the policy file".
        what: &'static str,
    },
    /// The users file is accessible by group or others (`mode & 0o077 != 0`): its
    /// verifiers allow offline guessing of the passwords, so it is as private as a key.
    #[error(
        "{} is {} by group or others (mode {:04o}); the users file holds password verifiers and must be 0600 or stricter: run `chmod 600 {}`",
        path.display(),
        if mode & 0o044 != 0 { "readable" } else { "accessible" },
        mode & 0o7777,
        path.display()
    )]
    UsersFilePermissions {
        /// The users file.
        path: PathBuf,
        /// Its permission bits (`st_mode`).
        mode: u32,
    },
    /// A file holds no usable PEM item of the kind expected, or malformed PEM.
    #[error("{}: {what}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A section this version of secsock does not support (`[[accounts]]`, `[users]`).
    #[error("{0}")]
    Unsupported(String),
}

fn expected_list(expected: &[String]) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!(" (expected one of: {})", expected.join(", "))
    }
}

/// The `why` of the `$SECSOCK_POLICY` discovery candidate.
pub(super) const FROM_ENV: &str = "$SECSOCK_POLICY";

/// [`PolicyErrorKind::NotFound`]'s message: every place discovery looked in, with why.
pub(super) fn not_found_message(looked_in: &[(PathBuf, &'static str)]) -> String {
    if let [(path, FROM_ENV)] = looked_in {
        return format!(
            "$SECSOCK_POLICY names {}, which does not exist; correct or unset $SECSOCK_POLICY, \
             or create a policy with `secsock init`",
            path.display()
        );
    }
    let places: Vec<String> = looked_in
        .iter()
        .map(|(path, why)| format!("{} ({why})", path.display()))
        .collect();
    format!(
        "no secsock policy file found; looked in: {}; create one with `secsock init`, \
         or name one with $SECSOCK_POLICY",
        places.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_shows_the_known_parts() {
        let e = |file: &str, line, key: Option<&str>| PolicyError {
            file: PathBuf::from(file),
            line,
            key: key.map(str::to_owned),
            kind: PolicyErrorKind::InvalidValue("bad".into()),
        };
        assert_eq!(
            e("p.toml", Some(3), Some("a.b")).to_string(),
            "p.toml:3: a.b: bad"
        );
        assert_eq!(
            e("p.toml", None, Some("a.b")).to_string(),
            "p.toml: a.b: bad"
        );
        assert_eq!(e("p.toml", None, None).to_string(), "p.toml: bad");
        assert_eq!(e("", None, None).to_string(), "bad");
    }
}
