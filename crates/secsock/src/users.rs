//! The users a listener can authenticate: the `[users]` file of SCRAM-SHA-256 verifiers
//! (never passwords), and the server-wide secret behind the decoy verifiers of users that
//! do not exist.
//!
//! The file is read at each authentication, so `secsock user add` takes effect without a
//! restart; it is written atomically (a new file renamed into place) with mode 0600:
//! verifiers allow offline guessing of weak passwords, so they are as private as a key.
//!
//! ```toml
//! # SCRAM-SHA-256 verifiers; never passwords. Managed by `secsock user add/remove`.
//! [users]
//! "alice@EXAMPLE.TEST" = "SCRAM-SHA-256$600000:<salt>$<StoredKey>:<ServerKey>"
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::impersonate::AccountRule;
use crate::policy::{UserAuthentication, Users};
use crate::scram::Verifier;

/// A user's key in the file: `name@DOMAIN`, the domain upper-cased (realms are, by
/// convention; user names keep their case).
pub fn user_key(name: &str, domain: &str) -> String {
    format!("{name}@{}", domain.to_ascii_uppercase())
}

/// Splits `name@domain` (the last `@`), or takes `default_domain`.
pub fn split_user(text: &str, default_domain: Option<&str>) -> Result<(String, String), String> {
    let text = text.strip_prefix("user:").unwrap_or(text);
    let (name, domain) = match text.rsplit_once('@') {
        Some((name, domain)) => (name, domain),
        None => match default_domain {
            Some(domain) => (text, domain),
            None => {
                return Err(format!(
                    "`{text}` has no domain: write NAME@DOMAIN, or set `domain` in the policy's [users]"
                ))
            }
        },
    };
    if name.is_empty() || domain.is_empty() {
        return Err(format!(
            "`{text}`: the user name and the domain must not be empty"
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/')
    {
        return Err(format!(
            "`{name}` is not a usable user name (no spaces, control characters or `/`)"
        ));
    }
    Ok((name.to_string(), domain.to_string()))
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    /// Hex: the secret behind unknown users' decoy verifiers. Kept in the file so that an
    /// unknown user's (fake) salt stays the same across server restarts: a salt that
    /// changed would give away that the user does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decoy_secret: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, String>,
}

/// The content of a users file.
#[derive(Debug, Clone, Default)]
pub struct UsersData {
    /// Verifiers by user key (`name@DOMAIN`).
    pub users: BTreeMap<String, Verifier>,
    /// The decoy secret, once the file has one.
    pub decoy_secret: Option<[u8; 32]>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads a users file. A missing file is an empty one.
pub fn read_users(path: &Path) -> Result<UsersData, String> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(UsersData::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: UsersFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let decoy_secret = match file.decoy_secret {
        None => None,
        Some(text) => Some(
            unhex(&text)
                .ok_or_else(|| format!("{}: decoy_secret is not 64 hex digits", path.display()))?,
        ),
    };
    let users = file
        .users
        .into_iter()
        .map(|(user, text)| {
            let verifier = Verifier::parse(&text)
                .map_err(|e| format!("{}: user `{user}`: {e}", path.display()))?;
            Ok((user, verifier))
        })
        .collect::<Result<_, String>>()?;
    Ok(UsersData {
        users,
        decoy_secret,
    })
}

/// Adds or replaces a user's verifier (creating the file, and its decoy secret from
/// `random`, if needed).
pub fn add_user(
    path: &Path,
    key: &str,
    verifier: Verifier,
    random: &dyn Fn(&mut [u8]),
) -> Result<(), String> {
    let mut data = read_users(path)?;
    if data.decoy_secret.is_none() {
        let mut secret = [0u8; 32];
        random(&mut secret);
        data.decoy_secret = Some(secret);
    }
    data.users.insert(key.to_string(), verifier);
    write_users(path, &data)
}

/// Removes a user; returns whether it was there.
pub fn remove_user(path: &Path, key: &str) -> Result<bool, String> {
    let mut data = read_users(path)?;
    let removed = data.users.remove(key).is_some();
    if removed {
        write_users(path, &data)?;
    }
    Ok(removed)
}

/// Writes a users file atomically, mode 0600.
pub fn write_users(path: &Path, data: &UsersData) -> Result<(), String> {
    let file = UsersFile {
        decoy_secret: data.decoy_secret.map(|s| hex(&s)),
        users: data
            .users
            .iter()
            .map(|(u, v)| (u.clone(), v.to_text()))
            .collect(),
    };
    let body = toml::to_string(&file).map_err(|e| e.to_string())?;
    let text = format!(
        "# SCRAM-SHA-256 verifiers; never passwords. Managed by `secsock user add/remove`.\n{body}"
    );
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let temp = dir.join(format!(
        ".{}.new",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("users")
    ));
    let _ = fs::remove_file(&temp);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
    out.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
    fs::rename(&temp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// What a listener needs to authenticate users and map peers to accounts.
#[derive(Debug)]
pub(crate) struct UserDirectory {
    pub authentication: UserAuthentication,
    file: Option<PathBuf>,
    /// The decoy secret when the file has none (no user was ever added: every user is
    /// unknown, so a secret that changes with restarts gives nothing away).
    fallback_secret: [u8; 32],
    pub accounts: Vec<AccountRule>,
}

/// The users file as read for one authentication.
pub(crate) struct Snapshot {
    pub users: BTreeMap<String, Verifier>,
    pub decoy_secret: [u8; 32],
}

impl Snapshot {
    /// The verifier of `user` (`name@DOMAIN`, as SCRAM gives it).
    pub(crate) fn lookup(&self, user: &str) -> Option<Verifier> {
        let (name, domain) = split_user(user, None).ok()?;
        self.users.get(&user_key(&name, &domain)).cloned()
    }

    /// The iteration count decoys use: that of the users that exist, so that an unknown
    /// user's challenge looks like a real one.
    pub(crate) fn decoy_iterations(&self) -> u32 {
        self.users
            .values()
            .next()
            .map(|v| v.iterations)
            .unwrap_or(crate::scram::DEFAULT_ITERATIONS)
    }
}

impl UserDirectory {
    pub(crate) fn new(users: &Users, accounts: &[AccountRule], fallback_secret: [u8; 32]) -> Self {
        Self {
            authentication: users.authentication,
            file: users.file.clone(),
            fallback_secret,
            accounts: accounts.to_vec(),
        }
    }

    /// Reads the users file. A file that cannot be read yields no users (logged): it
    /// fails the authentication, it does not open the door.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let data = match &self.file {
            None => UsersData::default(),
            Some(file) => read_users(file).unwrap_or_else(|e| {
                tracing::error!("user authentication: {e}");
                UsersData::default()
            }),
        };
        Snapshot {
            users: data.users,
            decoy_secret: data.decoy_secret.unwrap_or(self.fallback_secret),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_split_at_the_last_at() {
        assert_eq!(
            split_user("alice@example.test", None).unwrap(),
            ("alice".into(), "example.test".into())
        );
        assert_eq!(
            split_user("user:alice@EXAMPLE.TEST", None).unwrap(),
            ("alice".into(), "EXAMPLE.TEST".into())
        );
        assert_eq!(
            split_user("alice", Some("EXAMPLE.TEST")).unwrap(),
            ("alice".into(), "EXAMPLE.TEST".into())
        );
        assert!(split_user("alice", None)
            .unwrap_err()
            .contains("has no domain"));
        for bad in ["@EXAMPLE.TEST", "alice@", "al ice@X", "a/b@X"] {
            assert!(split_user(bad, None).is_err(), "{bad}");
        }
        assert_eq!(user_key("Alice", "example.test"), "Alice@EXAMPLE.TEST");
    }

    #[test]
    fn the_file_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        assert!(
            read_users(&path).unwrap().users.is_empty(),
            "missing file: no users"
        );
        let verifier = Verifier::new("pencil", b"0123456789abcdef", 4096).unwrap();
        add_user(
            &path,
            &user_key("alice", "EXAMPLE.TEST"),
            verifier.clone(),
            &|b| b.fill(7),
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = read_users(&path).unwrap();
        assert_eq!(
            back.users.get("alice@EXAMPLE.TEST").map(Verifier::to_text),
            Some(verifier.to_text())
        );
        assert_eq!(
            back.decoy_secret,
            Some([7u8; 32]),
            "the decoy secret is kept"
        );
        // A second user keeps the same decoy secret.
        add_user(&path, "bob@EXAMPLE.TEST", verifier.clone(), &|b| b.fill(9)).unwrap();
        assert_eq!(read_users(&path).unwrap().decoy_secret, Some([7u8; 32]));
        assert!(remove_user(&path, "bob@EXAMPLE.TEST").unwrap());
        assert!(!remove_user(&path, "bob@EXAMPLE.TEST").unwrap());
        assert!(!fs::read_to_string(&path).unwrap().contains("pencil"));
        fs::write(&path, "[users]\nbob = \"not a verifier\"\n").unwrap();
        assert!(read_users(&path).unwrap_err().contains("user `bob`"));
    }
}
