//! Where the policy file is when no one names it: `$SECSOCK_POLICY`, then the per-user
//! config, then `/etc/secsock/policy.toml` ([`Policy::discover`]).
//!
//! Not here: reading or checking the file found ([`Policy::load`]).

use std::fs;
use std::io;
use std::path::PathBuf;

use super::error::FROM_ENV;
use super::{Policy, PolicyError, PolicyErrorKind};

impl Policy {
    /// Finds the policy file the way an application without an explicit path does, and
    /// loads it: the first existing file of [`Policy::discovery_candidates`].
    ///
    /// When `$SECSOCK_POLICY` is set, the file it names must exist; secsock does not fall
    /// back to another file then. When no candidate exists, the error
    /// ([`PolicyErrorKind::NotFound`]) lists every place looked at.
    pub fn discover() -> Result<Policy, PolicyError> {
        discover_in(&Policy::discovery_candidates())
    }

    /// The places [`Policy::discover`] looks at, in order, each with why it is looked at:
    /// `$SECSOCK_POLICY` (`"$SECSOCK_POLICY"`), then
    /// `$XDG_CONFIG_HOME/secsock/policy.toml` or `~/.config/secsock/policy.toml`
    /// (`"per-user config"`), then `/etc/secsock/policy.toml` (`"system"`).
    ///
    /// Unset or empty variables are skipped; a relative `$XDG_CONFIG_HOME` is ignored, as
    /// the XDG base directory specification says.
    pub fn discovery_candidates() -> Vec<(PathBuf, &'static str)> {
        candidates_from(
            std::env::var_os("SECSOCK_POLICY").map(PathBuf::from),
            std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
    }
}

fn candidates_from(
    env_policy: Option<PathBuf>,
    xdg_config_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Vec<(PathBuf, &'static str)> {
    let mut candidates = Vec::new();
    if let Some(path) = env_policy.filter(|p| !p.as_os_str().is_empty()) {
        candidates.push((path, FROM_ENV));
    }
    let config_dir = match xdg_config_home.filter(|p| p.is_absolute()) {
        Some(dir) => Some(dir),
        None => home
            .filter(|h| !h.as_os_str().is_empty())
            .map(|h| h.join(".config")),
    };
    if let Some(dir) = config_dir {
        candidates.push((dir.join("secsock").join("policy.toml"), "per-user config"));
    }
    candidates.push((PathBuf::from("/etc/secsock/policy.toml"), "system"));
    candidates
}

fn discover_in(candidates: &[(PathBuf, &'static str)]) -> Result<Policy, PolicyError> {
    for (path, why) in candidates {
        match fs::metadata(path) {
            Ok(_) => return Policy::load(path),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                // An explicit choice that points nowhere is a mistake to report, not a
                // reason to pick up some other policy.
                if *why == FROM_ENV {
                    let looked_in = vec![(path.clone(), *why)];
                    return Err(PolicyError::new(
                        PathBuf::new(),
                        PolicyErrorKind::NotFound { looked_in },
                    ));
                }
            }
            // E.g. a directory we may not search: say so rather than silently skip it.
            Err(e) => return Err(PolicyError::new(path, PolicyErrorKind::Io(e))),
        }
    }
    Err(PolicyError::new(
        PathBuf::new(),
        PolicyErrorKind::NotFound {
            looked_in: candidates.to_vec(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::*;

    #[test]
    fn discovery_candidates_follow_the_environment() {
        let etc = (PathBuf::from("/etc/secsock/policy.toml"), "system");
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            candidates_from(p("/x/p.toml"), p("/xdg"), p("/home/a")),
            vec![
                (PathBuf::from("/x/p.toml"), "$SECSOCK_POLICY"),
                (PathBuf::from("/xdg/secsock/policy.toml"), "per-user config"),
                etc.clone()
            ]
        );
        assert_eq!(
            candidates_from(None, None, p("/home/a")),
            vec![
                (
                    PathBuf::from("/home/a/.config/secsock/policy.toml"),
                    "per-user config"
                ),
                etc.clone()
            ]
        );
        // Empty variables count as unset; a relative XDG_CONFIG_HOME is ignored.
        assert_eq!(
            candidates_from(p(""), p("relative"), p("/home/a")),
            vec![
                (
                    PathBuf::from("/home/a/.config/secsock/policy.toml"),
                    "per-user config"
                ),
                etc.clone()
            ]
        );
        assert_eq!(candidates_from(None, None, None), vec![etc.clone()]);
        // The real environment gives the same shape: the system file is always last.
        assert_eq!(Policy::discovery_candidates().last(), Some(&etc));
    }

    #[test]
    fn discovery_takes_the_first_existing_file() {
        let dir = trust_domain();
        let missing = dir.path().join("missing.toml");
        let present = write_policy(&dir, IDENTITY_AND_TRUST);
        let later = dir.path().join("later.toml");

        let policy = discover_in(&[
            (missing.clone(), "per-user config"),
            (present.clone(), "system"),
        ])
        .unwrap();
        assert_eq!(policy.source, present);

        // Nothing exists: every place is listed, with the way out.
        let e = discover_in(&[
            (missing.clone(), "per-user config"),
            (later.clone(), "system"),
        ])
        .unwrap_err();
        match &e.kind {
            PolicyErrorKind::NotFound { looked_in } => assert_eq!(looked_in.len(), 2),
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.contains(&format!("{} (per-user config)", missing.display())),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} (system)", later.display())),
            "{text}"
        );
        assert!(text.contains("secsock init"), "{text}");

        // $SECSOCK_POLICY naming a missing file is an error even though a later file exists.
        let e = discover_in(&[
            (missing.clone(), "$SECSOCK_POLICY"),
            (present.clone(), "system"),
        ])
        .unwrap_err();
        assert!(matches!(&e.kind, PolicyErrorKind::NotFound { looked_in } if looked_in.len() == 1));
        assert!(e.to_string().starts_with(&format!(
            "$SECSOCK_POLICY names {}, which does not exist",
            missing.display()
        )));

        // An explicit path wins over discovery.
        assert_eq!(Policy::resolve(Some(&present)).unwrap().source, present);
        assert!(matches!(
            Policy::resolve(Some(&missing)).unwrap_err().kind,
            PolicyErrorKind::Io(_)
        ));
    }
}
