//! SPIFFE IDs (`spiffe://trust-domain/path`, [`SpiffeId`]), checked against the SPIFFE ID
//! specification, and the X509-SVID rule that proves one: exactly one URI SAN.
//!
//! Not here: any other URI (they are not principal names).

use std::fmt;

use super::{shown, strip_prefix_ignore_case};

/// Longest SPIFFE ID, in bytes (SPIFFE ID specification).
pub(super) const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Longest SPIFFE trust domain, in bytes (SPIFFE ID specification).
pub(super) const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A SPIFFE ID, `spiffe://trust-domain/path`, checked against the SPIFFE ID specification:
/// a lowercase trust domain without port or userinfo, and a path of non-empty segments
/// other than `.` and `..`, without query, fragment or trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub(super) trust_domain: String,
    pub(super) path: String,
}

impl SpiffeId {
    /// The trust domain, in lowercase (`example.org`).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path, empty or starting with `/` (`/ns/prod/sa/web`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Parses a SPIFFE ID. A certificate's URI SAN is compared with the trust domain
    /// case-insensitively, so `from_certificate` lowercases it instead of refusing it.
    pub(super) fn parse(text: &str, from_certificate: bool) -> Result<SpiffeId, String> {
        if text.len() > MAX_SPIFFE_ID_LEN {
            return Err(format!(
                "SPIFFE ID is {} bytes long, more than the {MAX_SPIFFE_ID_LEN} allowed",
                text.len()
            ));
        }
        let Some(rest) = strip_prefix_ignore_case(text, "spiffe://") else {
            return Err("a SPIFFE ID starts with `spiffe://`".to_string());
        };
        if rest.contains('?') {
            return Err("a SPIFFE ID has no query (`?`)".to_string());
        }
        if rest.contains('#') {
            return Err("a SPIFFE ID has no fragment (`#`)".to_string());
        }
        let (trust_domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let trust_domain = if from_certificate {
            trust_domain.to_ascii_lowercase()
        } else {
            trust_domain.to_string()
        };
        check_trust_domain(&trust_domain)?;
        check_spiffe_path(path)?;
        Ok(SpiffeId {
            trust_domain,
            path: path.to_string(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

pub(super) fn check_trust_domain(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("SPIFFE trust domain is empty".to_string());
    }
    if text.contains('@') {
        return Err(format!(
            "SPIFFE trust domain `{}` contains userinfo (`@`), which is not allowed",
            shown(text)
        ));
    }
    if text.contains(':') {
        return Err(format!(
            "SPIFFE trust domain `{}` contains a port (`:`), which is not allowed",
            shown(text)
        ));
    }
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "SPIFFE trust domain `{}` contains uppercase letters; \
             trust domains are lowercase (`{}`)",
            shown(text),
            shown(&text.to_ascii_lowercase())
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "SPIFFE trust domain `{}` contains {c:?}; only a-z, 0-9, `.`, `-` and `_` are allowed",
            shown(text)
        ));
    }
    if text.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(format!(
            "SPIFFE trust domain is {} bytes long, more than the {MAX_TRUST_DOMAIN_LEN} allowed",
            text.len()
        ));
    }
    Ok(())
}

pub(super) fn check_spiffe_path(path: &str) -> Result<(), String> {
    let Some(segments) = path.strip_prefix('/') else {
        // Only an empty path can lack the leading `/` (the trust domain ends at the first `/`).
        return Ok(());
    };
    if path.ends_with('/') {
        return Err("SPIFFE path must not end with `/`".to_string());
    }
    for segment in segments.split('/') {
        if segment.is_empty() {
            return Err("SPIFFE path has an empty segment (`//`)".to_string());
        }
        if segment == "." || segment == ".." {
            return Err(format!("SPIFFE path segment `{segment}` is not allowed"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(format!(
                "SPIFFE path segment `{}` contains {c:?}; \
                 only letters, digits, `.`, `-` and `_` are allowed",
                shown(segment)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::name::tests::*;

    #[test]
    fn spiffe_ids_need_exactly_one_uri_san() {
        let single = certificate(
            vec![
                uri("spiffe://example.org/ns/prod/sa/web"),
                dns("web.example.test"),
            ],
            None,
        );
        check_matches(
            "one URI SAN",
            &single,
            &[
                ("spiffe://example.org/ns/prod/sa/web", true),
                ("SPIFFE://example.org/ns/prod/sa/web", true),
                ("spiffe://example.org/ns/prod/sa/Web", false),
                ("spiffe://example.org/ns/prod", false),
                ("spiffe://example.org", false),
                ("spiffe://example.com/ns/prod/sa/web", false),
                ("web.example.test", true),
                ("raw:spiffe://example.org/ns/prod/sa/web", true),
            ],
        );
        let upper = certificate(vec![uri("spiffe://Example.ORG/a")], None);
        check_matches(
            "upper-case trust domain SAN",
            &upper,
            &[
                ("spiffe://example.org/a", true),
                ("spiffe://example.org/A", false),
            ],
        );
        let two = certificate(
            vec![uri("spiffe://example.org/a"), uri("spiffe://example.org/b")],
            None,
        );
        check_matches(
            "two URI SANs",
            &two,
            &[
                ("spiffe://example.org/a", false),
                ("spiffe://example.org/b", false),
            ],
        );
        assert!(two.proven().is_empty());
        let mixed = certificate(
            vec![uri("spiffe://example.org/a"), uri("https://example.org/")],
            None,
        );
        check_matches(
            "SPIFFE and HTTPS URI SANs",
            &mixed,
            &[("spiffe://example.org/a", false)],
        );
        let malformed = certificate(vec![uri("spiffe://example.org/a/../b")], None);
        check_matches(
            "malformed SPIFFE SAN",
            &malformed,
            &[
                ("spiffe://example.org/b", false),
                ("raw:spiffe://example.org/a/../b", true),
            ],
        );
    }
}
