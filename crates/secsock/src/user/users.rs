//! The users a listener can authenticate: the `[users]` file of SCRAM-SHA-256 verifiers
//! (never passwords), the server-wide secret behind the decoy verifiers of users that do
//! not exist, and the failure throttle of the listener's platform.
//!
//! A user has one name, its canonical form `NAME@DOMAIN` ([`canonical_user`]): no `user:`
//! prefix, the domain upper-cased (realms are, by convention), the name as given. The
//! server computes it once from what a client sends, and looks it up, makes the decoy and
//! reports the proven principal from it: two spellings of one user neither tell whether it
//! exists nor prove two principals.
//!
//! The file is parsed again only when it changes (checked at each authentication with one
//! `stat`: device, inode, size, mode, modification and change times), so `secsock user add`
//! takes effect without a restart and a busy listener does not parse it at every
//! authentication. It is written atomically (a new file renamed into place, under a lock
//! so that concurrent changes are not lost) with mode 0600, and refused when group or
//! others may access it: verifiers allow offline guessing of weak passwords, so they are as
//! private as a key.
//!
//! ```toml
//! # SCRAM-SHA-256 verifiers; never passwords. Managed by `secsock user add/remove`.
//! [users]
//! "alice@EXAMPLE.TEST" = "SCRAM-SHA-256$600000:<salt>$<StoredKey>:<ServerKey>"
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::accounts::AccountRule;
use crate::policy::{PolicyErrorKind, UserAuthentication, Users};
use crate::user::scram::{RandomSource, Verifier};
use crate::user::throttle::FailureThrottle;

/// A user's key in the file: `name@DOMAIN`, the domain upper-cased (realms are, by
/// convention; user names keep their case).
pub fn user_key(name: &str, domain: &str) -> String {
    format!("{name}@{}", domain.to_ascii_uppercase())
}

/// `text` without one leading `user:` (in any case), as principal names are written.
fn strip_user_prefix(text: &str) -> &str {
    match text.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("user:") => &text[5..],
        _ => text,
    }
}

/// Splits `[user:]name@domain` at its `@`, or takes `default_domain` for a name without
/// one. Refused: an empty part, a second `@`, a second `user:` prefix, and whitespace,
/// control characters or `/` (none of which a user principal may hold).
pub fn split_user(text: &str, default_domain: Option<&str>) -> Result<(String, String), String> {
    let text = strip_user_prefix(text);
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
    if name.contains('@') {
        return Err(format!("`{text}` has more than one `@`"));
    }
    if strip_user_prefix(name).len() != name.len() {
        return Err(format!(
            "`{text}`: `user:` may prefix a user name once, and a name cannot begin with it"
        ));
    }
    for part in [name, domain] {
        if part
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/')
        {
            return Err(format!(
                "`{part}` is not usable in a user name (no spaces, control characters or `/`)"
            ));
        }
    }
    Ok((name.to_string(), domain.to_string()))
}

/// The one name a user is known by: `NAME@DOMAIN`, without a `user:` prefix, the domain
/// upper-cased. `alice@example.test`, `user:alice@Example.Test` and `alice@EXAMPLE.TEST`
/// are all `alice@EXAMPLE.TEST`; the form is its own canonical form.
///
/// ```
/// use secsock::users::canonical_user;
/// assert_eq!(canonical_user("USER:alice@example.test").unwrap(), "alice@EXAMPLE.TEST");
/// assert!(canonical_user("user:user:alice@EXAMPLE.TEST").is_err());
/// ```
pub fn canonical_user(text: &str) -> Result<String, String> {
    let (name, domain) = split_user(text, None)?;
    Ok(user_key(&name, &domain))
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
    /// Verifiers by canonical user name (`name@DOMAIN`).
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

/// What identifies one version of a file without reading it: a new file (secsock's writer
/// always renames a new file into place) has a new inode while the old one still exists,
/// and an edit in place changes the size or the times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(metadata: &fs::Metadata) -> Self {
        FileStamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mode: metadata.mode(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// The stamp of what `path` names now; `None` when nothing is there.
    fn at(path: &Path) -> Option<Self> {
        fs::metadata(path).ok().map(|m| Self::of(&m))
    }
}

/// Reads a users file, and the stamp of the version read. A missing file is an empty one.
fn load(path: &Path) -> (Option<FileStamp>, Result<UsersData, String>) {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (None, Ok(UsersData::default())),
        Err(e) => {
            let error = format!("cannot read {}: {e}", path.display());
            return (FileStamp::at(path), Err(error));
        }
    };
    let metadata = match file.metadata() {
        Ok(metadata) => metadata,
        Err(e) => return (None, Err(format!("cannot read {}: {e}", path.display()))),
    };
    let stamp = Some(FileStamp::of(&metadata));
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        let kind = PolicyErrorKind::UsersFilePermissions {
            path: path.to_path_buf(),
            mode,
        };
        return (stamp, Err(kind.to_string()));
    }
    let mut text = String::new();
    if let Err(e) = file.read_to_string(&mut text) {
        return (stamp, Err(format!("cannot read {}: {e}", path.display())));
    }
    (stamp, parse_users(&text, path))
}

fn parse_users(text: &str, path: &Path) -> Result<UsersData, String> {
    let file: UsersFile = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let decoy_secret = match file.decoy_secret {
        None => None,
        Some(text) => Some(
            unhex(&text)
                .ok_or_else(|| format!("{}: decoy_secret is not 64 hex digits", path.display()))?,
        ),
    };
    let mut users = BTreeMap::new();
    for (key, text) in file.users {
        let user =
            canonical_user(&key).map_err(|e| format!("{}: user `{key}`: {e}", path.display()))?;
        let verifier =
            Verifier::parse(&text).map_err(|e| format!("{}: user `{key}`: {e}", path.display()))?;
        if users.insert(user.clone(), verifier).is_some() {
            return Err(format!(
                "{}: user `{key}`: another entry names the same user, {user}; remove one",
                path.display()
            ));
        }
    }
    Ok(UsersData {
        users,
        decoy_secret,
    })
}

/// Reads a users file. A missing file is an empty one; a file group or others may access
/// is refused (fix: `chmod 600`). Entries are keyed by their canonical names.
pub fn read_users(path: &Path) -> Result<UsersData, String> {
    load(path).1
}

/// The exclusive lock on a users file, held while it is read, changed and replaced: an
/// `flock` on the sibling file `NAME.lock` (the users file itself is replaced by a rename,
/// so a lock on it would not exclude a writer that opened the new one). Released on drop.
struct WriteLock(#[allow(dead_code)] fs::File);

fn lock(path: &Path) -> Result<WriteLock, String> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock_path = sibling(path, "", ".lock");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", lock_path.display()))?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(WriteLock(file)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("cannot lock {}: {e}", lock_path.display())),
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `dir/<prefix>NAME<suffix>` beside `path`.
fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("users");
    parent_dir(path).join(format!("{prefix}{name}{suffix}"))
}

/// Adds or replaces a user's verifier (creating the file, and its decoy secret from
/// `random`, if needed; a failed random source is an error, never a zero secret). `user`
/// is stored under its canonical name.
pub fn add_user(
    path: &Path,
    user: &str,
    verifier: Verifier,
    random: &(impl RandomSource + ?Sized),
) -> Result<(), String> {
    let user = canonical_user(user)?;
    let _lock = lock(path)?;
    let mut data = read_users(path)?;
    if data.decoy_secret.is_none() {
        let mut secret = [0u8; 32];
        random
            .fill_random(&mut secret)
            .map_err(|e| format!("cannot make the decoy secret: {e}"))?;
        data.decoy_secret = Some(secret);
    }
    data.users.insert(user, verifier);
    write_unlocked(path, &data)
}

/// Removes a user (any spelling of its name); returns whether it was there.
pub fn remove_user(path: &Path, user: &str) -> Result<bool, String> {
    let user = canonical_user(user)?;
    let _lock = lock(path)?;
    let mut data = read_users(path)?;
    let removed = data.users.remove(&user).is_some();
    if removed {
        write_unlocked(path, &data)?;
    }
    Ok(removed)
}

/// Writes a users file atomically, mode 0600, under its lock.
pub fn write_users(path: &Path, data: &UsersData) -> Result<(), String> {
    let _lock = lock(path)?;
    write_unlocked(path, data)
}

fn write_unlocked(path: &Path, data: &UsersData) -> Result<(), String> {
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
    let temp = sibling(path, ".", ".new");
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

/// The users file as last read: the version's stamp and what it held (or why it could
/// not be used).
struct Cached {
    stamp: Option<FileStamp>,
    data: Arc<UsersData>,
}

/// What a listener needs to authenticate users and map peers to accounts.
pub(crate) struct UserDirectory {
    pub authentication: UserAuthentication,
    file: Option<PathBuf>,
    /// The decoy secret when the file has none (no user was ever added: every user is
    /// unknown, so a secret that changes with restarts gives nothing away).
    fallback_secret: [u8; 32],
    pub accounts: Vec<AccountRule>,
    /// Failed authentications, per source address and per user name.
    pub throttle: FailureThrottle,
    cache: Mutex<Option<Cached>>,
    /// How many times the file was parsed (a test's window onto the cache).
    parses: AtomicUsize,
}

impl std::fmt::Debug for UserDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDirectory")
            .field("authentication", &self.authentication)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// The users file as read for one authentication.
pub(crate) struct Snapshot {
    data: Arc<UsersData>,
    fallback_secret: [u8; 32],
}

impl Snapshot {
    /// The verifier of `user`, a canonical name ([`canonical_user`]).
    pub(crate) fn lookup(&self, user: &str) -> Option<Verifier> {
        self.data.users.get(user).cloned()
    }

    /// The secret behind decoys.
    pub(crate) fn decoy_secret(&self) -> [u8; 32] {
        self.data.decoy_secret.unwrap_or(self.fallback_secret)
    }
}

impl UserDirectory {
    pub(crate) fn new(users: &Users, accounts: &[AccountRule], fallback_secret: [u8; 32]) -> Self {
        Self {
            authentication: users.authentication,
            file: users.file.clone(),
            fallback_secret,
            accounts: accounts.to_vec(),
            throttle: FailureThrottle::new(users.failures),
            cache: Mutex::new(None),
            parses: AtomicUsize::new(0),
        }
    }

    /// The users file's content: the cached one while the file has not changed, else read
    /// again. A file that cannot be used yields no users (logged when read): it fails the
    /// authentication, it does not open the door.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let data = match &self.file {
            None => Arc::default(),
            Some(file) => self.current(file),
        };
        Snapshot {
            data,
            fallback_secret: self.fallback_secret,
        }
    }

    fn current(&self, file: &Path) -> Arc<UsersData> {
        let now = FileStamp::at(file);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = cache.as_ref().filter(|c| c.stamp == now) {
            return cached.data.clone();
        }
        self.parses.fetch_add(1, Ordering::Relaxed);
        let (stamp, read) = load(file);
        let data = Arc::new(read.unwrap_or_else(|e| {
            tracing::error!("user authentication: {e}; no user can log in until it is fixed");
            UsersData::default()
        }));
        *cache = Some(Cached {
            stamp,
            data: data.clone(),
        });
        data
    }

    /// How many times the users file was parsed.
    #[cfg(test)]
    pub(crate) fn parses(&self) -> usize {
        self.parses.load(Ordering::Relaxed)
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
        for bad in [
            "@EXAMPLE.TEST",
            "alice@",
            "al ice@X",
            "a/b@X",
            "a@b@X",
            "alice@EX AMPLE",
            "user:user:alice@X",
            "user:USER:alice@X",
        ] {
            assert!(split_user(bad, None).is_err(), "{bad}");
        }
        assert_eq!(user_key("Alice", "example.test"), "Alice@EXAMPLE.TEST");
    }

    #[test]
    fn every_spelling_of_a_user_has_one_canonical_name() {
        for spelling in [
            "alice@EXAMPLE.TEST",
            "alice@example.test",
            "user:alice@Example.Test",
            "USER:alice@EXAMPLE.TEST",
            "User:alice@example.TEST",
        ] {
            assert_eq!(
                canonical_user(spelling).unwrap(),
                "alice@EXAMPLE.TEST",
                "{spelling}"
            );
        }
        // Names keep their case; the canonical form is its own canonical form, and always
        // a user principal.
        assert_eq!(canonical_user("Alice@x").unwrap(), "Alice@X");
        for text in ["alice@EXAMPLE.TEST", "Émile@exemple.fr", "a.b+c@d"] {
            let once = canonical_user(text).unwrap();
            assert_eq!(canonical_user(&once).unwrap(), once);
            let principal = crate::name::PrincipalName::parse(&format!("user:{once}")).unwrap();
            assert_eq!(principal.to_string(), format!("user:{once}"));
        }
        assert!(canonical_user("user:user:alice@EXAMPLE.TEST").is_err());
        assert!(canonical_user("alice").is_err());
    }

    #[test]
    fn hand_written_spellings_are_read_canonical_and_duplicates_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let verifier = Verifier::new("pencil", b"0123456789abcdef", 4096).unwrap();
        let text = |keys: &[&str]| {
            let lines: Vec<String> = keys
                .iter()
                .map(|k| format!("\"{k}\" = \"{}\"", verifier.to_text()))
                .collect();
            format!("[users]\n{}\n", lines.join("\n"))
        };
        write_private_file(
            &path,
            &text(&["alice@example.test", "user:bob@EXAMPLE.TEST"]),
        );
        let users = read_users(&path).unwrap().users;
        assert_eq!(
            users.keys().collect::<Vec<_>>(),
            ["alice@EXAMPLE.TEST", "bob@EXAMPLE.TEST"]
        );
        write_private_file(&path, &text(&["alice@example.test", "alice@EXAMPLE.TEST"]));
        let e = read_users(&path).unwrap_err();
        assert!(e.contains("names the same user, alice@EXAMPLE.TEST"), "{e}");
        write_private_file(&path, &text(&["user:user:alice@X"]));
        assert!(read_users(&path)
            .unwrap_err()
            .contains("`user:user:alice@X`"));
        // Removing takes any spelling.
        write_private_file(&path, &text(&["alice@EXAMPLE.TEST"]));
        assert!(remove_user(&path, "user:alice@example.test").unwrap());
    }

    fn write_private_file(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn directory(file: &Path) -> UserDirectory {
        let users = Users {
            file: Some(file.to_path_buf()),
            ..Users::default()
        };
        UserDirectory::new(&users, &[], [1; 32])
    }

    /// Issue 12, item 7: the server read and parsed the whole users file at every SCRAM
    /// hello. It is parsed again only when it changed; a file that turns bad fails closed
    /// until it is fixed.
    #[test]
    fn the_users_file_is_parsed_again_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let directory = directory(&path);
        let verifier = Verifier::new("pencil", b"0123456789abcdef", 4096).unwrap();
        let knows = |user: &str| directory.snapshot().lookup(user).is_some();

        assert!(!knows("alice@EXAMPLE.TEST"), "no file, no users");
        assert!(!knows("alice@EXAMPLE.TEST"));
        assert_eq!(
            directory.parses(),
            1,
            "a missing file is looked at, not read again"
        );

        add_user(
            &path,
            "alice@EXAMPLE.TEST",
            verifier.clone(),
            &|b: &mut [u8]| b.fill(7),
        )
        .unwrap();
        assert!(knows("alice@EXAMPLE.TEST"), "a new user without a restart");
        for _ in 0..5 {
            assert!(knows("alice@EXAMPLE.TEST"));
        }
        assert_eq!(directory.parses(), 2, "parsed once for the new file");
        assert_eq!(directory.snapshot().decoy_secret(), [7; 32]);

        add_user(
            &path,
            "bob@EXAMPLE.TEST",
            verifier.clone(),
            &|b: &mut [u8]| b.fill(9),
        )
        .unwrap();
        assert!(knows("bob@EXAMPLE.TEST") && knows("alice@EXAMPLE.TEST"));
        assert_eq!(directory.parses(), 3);

        // Opened to others: no users (logged), however often asked, until fixed.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!knows("alice@EXAMPLE.TEST"));
        assert!(!knows("alice@EXAMPLE.TEST"));
        assert_eq!(directory.parses(), 4);
        assert_eq!(
            directory.snapshot().decoy_secret(),
            [1; 32],
            "the fallback secret"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(knows("alice@EXAMPLE.TEST"));
        assert_eq!(directory.parses(), 5);

        // Edited in place into something unreadable: no users either.
        fs::write(&path, "this is not TOML").unwrap();
        assert!(!knows("alice@EXAMPLE.TEST"));
        fs::remove_file(&path).unwrap();
        assert!(!knows("alice@EXAMPLE.TEST"));
        assert_eq!(directory.parses(), 7);
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
            &|b: &mut [u8]| b.fill(7),
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
        add_user(
            &path,
            "bob@EXAMPLE.TEST",
            verifier.clone(),
            &|b: &mut [u8]| b.fill(9),
        )
        .unwrap();
        assert_eq!(read_users(&path).unwrap().decoy_secret, Some([7u8; 32]));
        assert!(remove_user(&path, "bob@EXAMPLE.TEST").unwrap());
        assert!(!remove_user(&path, "bob@EXAMPLE.TEST").unwrap());
        assert!(!fs::read_to_string(&path).unwrap().contains("pencil"));
        fs::write(&path, "[users]\nbob = \"not a verifier\"\n").unwrap();
        assert!(read_users(&path).unwrap_err().contains("user `bob`"));
    }

    /// Issue 12, item 15: `add_user` read, changed and replaced the file with nothing to
    /// stop another writer doing the same in between, so concurrent adds were lost (or
    /// failed on each other's temporary file).
    #[test]
    fn concurrent_adds_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let verifier = Verifier::new("pencil", b"0123456789abcdef", 4096).unwrap();
        let (threads, each) = (8, 12);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (path, verifier) = (&path, &verifier);
                scope.spawn(move || {
                    for i in 0..each {
                        let key = user_key(&format!("user{t}x{i}"), "EXAMPLE.TEST");
                        add_user(path, &key, verifier.clone(), &|b: &mut [u8]| b.fill(7)).unwrap();
                    }
                });
            }
        });
        let users = read_users(&path).unwrap().users;
        assert_eq!(users.len(), threads * each, "adds were lost");
    }

    #[test]
    fn a_failing_random_source_makes_no_decoy_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let verifier = Verifier::new("pencil", b"0123456789abcdef", 4096).unwrap();
        let failing: &dyn rustls::crypto::SecureRandom = &crate::user::scram::tests::FailingRandom;
        let e = add_user(&path, "alice@EXAMPLE.TEST", verifier, failing).unwrap_err();
        assert!(e.contains("random number generator failed"), "{e}");
        assert!(!path.exists(), "nothing written");
    }

    /// Issue 12, item 15: the users file holds verifiers, which allow offline guessing:
    /// it is refused, like a private key, when group or others may access it.
    #[test]
    fn a_users_file_open_to_group_or_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let verifier = Verifier::new("pencil", b"0123456789abcdef", 4096).unwrap();
        add_user(&path, "alice@EXAMPLE.TEST", verifier, &|b: &mut [u8]| {
            b.fill(7)
        })
        .unwrap();
        for (mode, refused) in [
            (0o600, false),
            (0o400, false),
            (0o640, true),
            (0o604, true),
            (0o620, true),
            (0o660, true),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let result = read_users(&path);
            assert_eq!(result.is_err(), refused, "mode {mode:o}: {result:?}");
            if let Err(e) = result {
                assert!(e.contains(&format!("mode {mode:04o}")), "{e}");
                assert!(e.contains(&format!("chmod 600 {}", path.display())), "{e}");
            }
        }
    }
}
