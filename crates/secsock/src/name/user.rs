//! User principals (`user:NAME@DOMAIN`, [`UserPrincipal`]): the application identity a
//! peer proves by the user-authentication step or, on a user certificate, by an email,
//! UPN or single-component Kerberos principal-name SAN.
//!
//! Not here: which certificates count as user certificates ([`super::certificate`]).

use std::fmt;

use super::san::KerberosPrincipal;
use super::{code_point, shown};

/// A user principal, `user:NAME@DOMAIN`: the application (user) identity, proven by the
/// user-authentication step or by an email, UPN or single-component Kerberos SAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserPrincipal {
    pub(super) name: String,
    pub(super) domain: String,
}

impl UserPrincipal {
    /// The user name before the `@`, as given (compared exactly).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The domain or realm after the `@`, as given (compared case-insensitively).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Parses `NAME@DOMAIN` (without the `user:` prefix).
    pub(super) fn parse(text: &str) -> Result<UserPrincipal, String> {
        let Some((name, domain)) = text.split_once('@') else {
            return Err(format!(
                "a user principal is `user:NAME@DOMAIN`, and `{}` has no `@`",
                shown(text)
            ));
        };
        if domain.contains('@') {
            return Err(format!(
                "user principal `{}` has more than one `@`",
                shown(text)
            ));
        }
        check_user_part("user name", name)?;
        check_user_part("domain", domain)?;
        Ok(UserPrincipal {
            name: name.to_string(),
            domain: domain.to_string(),
        })
    }

    /// Whether an email or UPN SAN (`name@domain`) states this user.
    pub(super) fn matches_address(&self, address: &str) -> bool {
        UserPrincipal::parse(address).is_ok_and(|stated| {
            stated.name == self.name && stated.domain.eq_ignore_ascii_case(&self.domain)
        })
    }

    /// Whether a Kerberos principal name SAN (`name@REALM`, one component) states this
    /// user.
    pub(super) fn matches_kerberos(&self, principal: &KerberosPrincipal) -> bool {
        matches!(principal.components.as_slice(), [name] if *name == self.name)
            && principal.realm.eq_ignore_ascii_case(&self.domain)
    }
}

impl fmt::Display for UserPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user:{}@{}", self.name, self.domain)
    }
}

pub(super) fn check_user_part(what: &str, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{what} in the user principal is empty"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!("{what} `{}` contains whitespace", shown(text)));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{what} `{}` contains a control character ({})",
            shown(text),
            code_point(c)
        ));
    }
    if text.contains('/') {
        return Err(format!("{what} `{}` contains `/`", shown(text)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::name::tests::*;

    #[test]
    fn users_are_proven_by_email_and_upn_sans_of_a_user_certificate() {
        let mut cert = user_certificate(vec![email("alice@Example.Test"), upn("bob@EXAMPLE.TEST")]);
        assert!(cert.user_certificate);
        cert.common_names.push("Alice".into());
        check_matches(
            "email and UPN SANs",
            &cert,
            &[
                ("user:alice@example.test", true),
                ("user:alice@EXAMPLE.TEST", true),
                ("user:Alice@example.test", false),
                ("user:bob@example.test", true),
                ("user:bob@EXAMPLE.TEST", true),
                ("user:Bob@EXAMPLE.TEST", false),
                ("user:carol@example.test", false),
                ("user:alice@example.org", false),
                ("raw:alice@Example.Test", true),
                ("raw:bob@EXAMPLE.TEST", true),
                ("raw:Alice", true),
                ("raw:alice", false),
            ],
        );
    }
}
