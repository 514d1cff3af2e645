//! Impersonation: the calling thread acts as the peer (`WSAImpersonateSocketPeer`,
//! `WSARevertImpersonation`; SPEC §8).
//!
//! On Windows a server impersonates the peer's token, and the OS then checks every file
//! access against the peer, not the server. secsock does the same on Linux in two steps:
//!
//! 1. **Mapping.** The peer's principal (its application identity, else its machine
//!    identity, e.g. `user:alice@EXAMPLE.TEST` or `host/db.example.test`) is mapped through
//!    the policy's `[[accounts]]` rules ([`AccountRule`], [`map_principal`]) to the name of
//!    a local account, which the name service turns into ids ([`LocalAccount::lookup`]).
//! 2. **Switching.** [`ImpersonationGuard::begin`] gives the *calling thread only* the
//!    account's file-system uid, file-system gid and supplementary groups. The kernel
//!    checks file access against exactly these three, so opening, creating and listing
//!    files now happens as the peer. Dropping the guard (or [`ImpersonationGuard::revert`],
//!    or [`revert_impersonation`]) restores the identity the thread had before.
//!
//! ```no_run
//! use secsock::impersonate::{account_for_peer, AccountRule, ImpersonationGuard};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rules = [AccountRule::new("user:*@EXAMPLE.TEST", "{name}")];
//! let account = account_for_peer(&rules, &["user:alice@EXAMPLE.TEST"])?;
//! {
//!     let _as_alice = ImpersonationGuard::begin(&account)?;
//!     // Files opened here are checked against alice's uid, gid and groups.
//!     let _ = std::fs::read("/home/alice/notes.txt");
//! } // back to the server's own identity
//! # Ok(()) }
//! ```
//!
//! # Decisions
//!
//! - **Only the file-system identity changes.** The effective, real and saved ids stay the
//!   server's: `setfsuid`/`setfsgid` exist for exactly this (NFS servers acting for a
//!   client), they cannot be used to give up the server's own privileges by mistake, and
//!   the thread can always switch back. Signals, `ptrace`, process limits and the ids
//!   reported by `getuid`/`geteuid` are still the server's.
//! - **Raw per-thread syscalls.** glibc's `setgroups` changes every thread of the
//!   process; the crate's `sys` module calls the kernel directly (see there).
//! - **Capabilities are checked first.** `setfsuid` reports no errors, and a half-done
//!   switch is worse than none, so [`ImpersonationGuard::begin`] first asks the kernel
//!   (`capget`) whether the thread has `CAP_SETUID` and `CAP_SETGID` in its effective set,
//!   and fails with [`ImpersonationError::NotPermitted`] before changing anything. The
//!   switch itself then goes groups, fsgid, fsuid, reading each id back; a failure midway
//!   (for example a uid not mapped in a user namespace) undoes the steps already taken.
//! - **Root is never impersonated, nor group 0.** A file-system uid of 0 gives the thread
//!   back every file-system capability, so "impersonating" root is no impersonation at
//!   all, and with a `{name}` template a peer that proved `user:root@REALM` would otherwise
//!   become root. An account with uid 0 fails with
//!   [`ImpersonationError::PrivilegedAccount`]; one whose primary or supplementary groups
//!   include gid 0 with [`ImpersonationError::PrivilegedGroup`] (group root owns most of
//!   the system's files). Both hold whatever the policy says.
//! - **System accounts only by a rule that says so.** An account below the system's
//!   `UID_MIN` (`/etc/login.defs`, 1000 when unset) belongs to a daemon, and a peer that
//!   proved `user:daemon@REALM` must not become `daemon` through `{name}`. The mapping
//!   ([`account_for_peer`]) refuses it with [`ImpersonationError::SystemAccount`] unless
//!   the rule that named the account has [`AccountRule::allow_system_account`]; another
//!   rule's permission does not count, so [`map_principal`] returns the rule with the
//!   name. [`ImpersonationGuard::begin`] does not apply this: it does not know the rule.
//! - **File-system capabilities are checked after the switch.** A root server's thread
//!   loses `CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`, `CAP_FOWNER` and the other
//!   file-system capabilities when its fsuid leaves 0, which is what makes the access
//!   checks apply; a thread with `SECBIT_NO_SETUID_FIXUP`, or a non-root server holding
//!   them, keeps them and would bypass every check as the "peer". So after switching,
//!   [`ImpersonationGuard::begin`] reads the effective set back, and if any of them is
//!   still there it switches back and fails with
//!   [`ImpersonationError::FileCapabilitiesKept`]. All eight the kernel clears are
//!   checked, not only the three that bypass permission bits: `CAP_CHOWN` or `CAP_FSETID`
//!   kept would as surely let the thread act beyond the peer's rights.
//! - **Account names match exactly.** A name service that matches case-insensitively
//!   (SSSD, some LDAP schemas) may answer `Alice` for `alice`; principals are
//!   case-sensitive, so such an answer is [`ImpersonationError::NoSuchAccount`].
//! - **Accounts come from NSS** (`getpwnam_r`, `getgrouplist`), not from parsing
//!   `/etc/passwd`: the accounts a server maps Kerberos or certificate principals to
//!   usually live in LDAP, SSSD or systemd-homed, and reading files would silently miss
//!   them or their groups.
//! - **Nesting is a per-thread stack.** Each guard saves the identity it replaced. Dropping
//!   a guard restores what it saved and also ends every guard begun after it (they then do
//!   nothing when dropped), so guards may be dropped in any order without leaving the
//!   thread in between. [`revert_impersonation`] ends them all.
//! - **A failed revert aborts the process.** If the thread cannot get its own identity
//!   back (only possible if the application dropped `CAP_SETGID` meanwhile), it must not
//!   run on as someone else; as Microsoft advises for a failed `RevertToSelf`, the process
//!   is ended.
//!
//! # Limits the caller must know
//!
//! - **Threads spawned while impersonating start as the peer.** The kernel copies the
//!   creating thread's credentials into a new thread, but not this module's bookkeeping:
//!   such a thread runs as the peer until it exits and cannot revert. Do not start threads
//!   (or thread pools that start them lazily, such as `tokio::task::spawn_blocking`) while
//!   impersonating. (Windows differs: a new thread gets the process token.) secsock's own
//!   code that starts threads checks first and refuses on an impersonating thread
//!   (`thread_may_spawn`).
//! - **Async code: never hold the guard across an `.await`.** The task may resume on
//!   another thread, leaving this one the peer. The guard is `!Send`, so a spawned task
//!   that tries does not compile; use `secsock::tokio::SecureStream::run_as_peer`
//!   (feature `tokio`), which does the work on a blocking thread that begins and ends the
//!   impersonation itself.
//! - A `setuid`/`seteuid` by any thread of the process (glibc broadcasts it) resets every
//!   thread's file-system uid to the new effective uid, ending impersonation silently.
//! - Changing the file-system uid between 0 and non-zero makes the kernel drop and later
//!   re-raise the file-system capabilities (`CAP_DAC_OVERRIDE`, `CAP_CHOWN`, `CAP_FOWNER`,
//!   ...) in the effective set: that is what makes the checks apply to a root server. After
//!   the revert they are raised from the permitted set, even if the thread had lowered
//!   them from its effective set before.
//!
//! What it is not for: proving who the peer is (the handshake and the user-authentication
//! step do that) or reading the policy file (the policy module builds the [`AccountRule`]s
//! and checks them with [`validate_rule`]).

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::path::Path;

use crate::accounts::{login_defs_value, map_with_rule, DEFAULT_UID_MIN};
use crate::sys;

// The rules moved to `accounts` (pure); their public paths here stay.
pub use crate::accounts::{map_principal, validate_rule, AccountMapping, AccountRule};

/// A local account: what impersonation switches the thread to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAccount {
    /// The account's name, as the name service spells it.
    pub name: String,
    /// Its user id: the thread's file-system uid while impersonating.
    pub uid: u32,
    /// Its primary group id: the thread's file-system gid while impersonating.
    pub gid: u32,
    /// Every group it belongs to, the primary group included: the thread's supplementary
    /// groups while impersonating.
    pub groups: Vec<u32>,
}

impl LocalAccount {
    /// Looks the account up through the name service (NSS: `/etc/passwd` and
    /// `/etc/group`, LDAP, SSSD, systemd, whatever `/etc/nsswitch.conf` names), with its
    /// supplementary groups and its primary group among them.
    ///
    /// Fails with [`ImpersonationError::NoSuchAccount`] when there is no such account.
    pub fn lookup(name: &str) -> Result<LocalAccount, ImpersonationError> {
        LocalAccount::lookup_through(name, sys::lookup_user, sys::group_list)
    }

    /// [`LocalAccount::lookup`] with the two name-service calls passed in, so that tests
    /// can stand in for a name service that matches names case-insensitively.
    fn lookup_through(
        name: &str,
        lookup_user: impl FnOnce(&CStr) -> io::Result<Option<sys::PasswdEntry>>,
        group_list: impl FnOnce(&CStr, u32) -> io::Result<Vec<u32>>,
    ) -> Result<LocalAccount, ImpersonationError> {
        let no_such_account = || ImpersonationError::NoSuchAccount {
            account: name.to_owned(),
        };
        if name.is_empty() {
            return Err(no_such_account());
        }
        let c_name = CString::new(name).map_err(|_| no_such_account())?;
        let entry = lookup_user(&c_name)?.ok_or_else(no_such_account)?;
        if !is_exact_name(name, &entry.name) {
            // A case-insensitive name service answered for another spelling: `Alice` is
            // not `alice` (Kerberos and certificate names are case-sensitive, and the
            // account's files belong to the spelling the service stores).
            tracing::warn!(
                requested = name,
                returned = %entry.name.to_string_lossy(),
                "the name service answered for another spelling of the account name; not using it"
            );
            return Err(no_such_account());
        }
        let listed = group_list(&entry.name, entry.gid)?;
        // Primary group first, then the others once each, in the order NSS gave them.
        let mut groups = vec![entry.gid];
        for gid in listed {
            if !groups.contains(&gid) {
                groups.push(gid);
            }
        }
        Ok(LocalAccount {
            name: name.to_owned(),
            uid: entry.uid,
            gid: entry.gid,
            groups,
        })
    }
}

/// Whether the name service's spelling of an account is byte for byte the one asked for.
fn is_exact_name(requested: &str, returned: &CStr) -> bool {
    returned.to_bytes() == requested.as_bytes()
}

/// The account the peer maps to: the first rule (in policy order) that matches any of
/// the peer's proven principals decides, and its account is looked up.
///
/// `principals` are the names of the identity to impersonate — the peer's application
/// identity if it proved one, else its machine identity — in canonical text. No names is
/// [`ImpersonationError::NoIdentity`]; no matching rule is
/// [`ImpersonationError::NoMapping`]; a rule naming an account this machine does not have
/// is [`ImpersonationError::NoSuchAccount`] (later rules are not tried: the first match
/// decides, as in [`map_principal`]).
///
/// The account must also be one a peer may become: never root
/// ([`ImpersonationError::PrivilegedAccount`]) or a member of group 0
/// ([`ImpersonationError::PrivilegedGroup`]), and a system account (uid below the
/// system's `UID_MIN`, read from `/etc/login.defs`) only when the rule that named it has
/// [`AccountRule::allow_system_account`] ([`ImpersonationError::SystemAccount`]).
pub fn account_for_peer<S: AsRef<str>>(
    rules: &[AccountRule],
    principals: &[S],
) -> Result<LocalAccount, ImpersonationError> {
    if principals.is_empty() {
        return Err(ImpersonationError::NoIdentity);
    }
    let mapped = rules.iter().find_map(|rule| {
        principals
            .iter()
            .find_map(|principal| map_with_rule(rule, principal.as_ref()))
    });
    match mapped {
        Some(mapping) => {
            let account = LocalAccount::lookup(&mapping.account)?;
            check_mapped_account(&account, mapping.rule, uid_min_at(Path::new(LOGIN_DEFS)))?;
            Ok(account)
        }
        None => Err(ImpersonationError::NoMapping {
            principal: principals
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join("`, `"),
        }),
    }
}

/// Where the system's account ranges are set (shadow-utils' `login.defs(5)`).
const LOGIN_DEFS: &str = "/etc/login.defs";

/// The system's `UID_MIN`, from the `login.defs` file at `path`: the first uid of
/// ordinary (not system) accounts. 1000 (`DEFAULT_UID_MIN`) when the file or the key is missing
/// or its value is not a number, as shadow-utils itself does.
fn uid_min_at(path: &Path) -> u32 {
    // Read at each mapping, not cached: a few kilobytes next to a TLS handshake and NSS
    // lookups, and an edited file applies at once.
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| login_defs_value(&text, "UID_MIN"))
        .unwrap_or(DEFAULT_UID_MIN)
}

/// Refuses the accounts that are root in all but name, whoever asks: uid 0, and group 0
/// as the primary or a supplementary group (group root owns most of the system's files;
/// those whose mode lets the group read or write would be the peer's to read or write).
fn refuse_privileged(account: &LocalAccount) -> Result<(), ImpersonationError> {
    if account.uid == 0 {
        return Err(ImpersonationError::PrivilegedAccount {
            account: account.name.clone(),
        });
    }
    if account.gid == 0 || account.groups.contains(&0) {
        return Err(ImpersonationError::PrivilegedGroup {
            account: account.name.clone(),
            primary: account.gid == 0,
        });
    }
    Ok(())
}

/// Whether `rule` may map a peer to `account`: [`refuse_privileged`], and a uid below
/// `uid_min` only when the rule allows system accounts.
fn check_mapped_account(
    account: &LocalAccount,
    rule: &AccountRule,
    uid_min: u32,
) -> Result<(), ImpersonationError> {
    refuse_privileged(account)?;
    if account.uid < uid_min && !rule.allow_system_account {
        return Err(ImpersonationError::SystemAccount {
            account: account.name.clone(),
            uid: account.uid,
            uid_min,
            rule: rule.principal.clone(),
        });
    }
    Ok(())
}

/// A thread's file-system identity: what the kernel checks file access against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FsIdentity {
    fsuid: u32,
    fsgid: u32,
    groups: Vec<u32>,
}

impl FsIdentity {
    fn of_this_thread() -> io::Result<FsIdentity> {
        Ok(FsIdentity {
            fsuid: sys::thread_fsuid(),
            fsgid: sys::thread_fsgid(),
            groups: sys::thread_groups()?,
        })
    }
}

/// One begun impersonation: the guard it belongs to and the identity it replaced.
struct Saved {
    guard: u64,
    before: FsIdentity,
}

/// The calling thread's impersonations, innermost last.
struct ThreadImpersonation {
    stack: Vec<Saved>,
    /// Numbers guards, so that a guard whose entry is gone (ended by an outer guard or by
    /// `revert_impersonation`) knows it has nothing left to do.
    next_guard: u64,
}

thread_local! {
    static THREAD: RefCell<ThreadImpersonation> = const {
        RefCell::new(ThreadImpersonation { stack: Vec::new(), next_guard: 0 })
    };
}

/// While alive, the calling thread's file-system identity (fsuid, fsgid, supplementary
/// groups) is the account's; dropping it restores exactly the identity the thread had
/// before, also when the thread unwinds from a panic.
///
/// It is `!Send` and `!Sync`: the identity belongs to the thread that began it.
///
/// ```compile_fail,E0277
/// fn send<T: Send>(_: T) {}
/// let account = secsock::impersonate::LocalAccount::lookup("nobody").unwrap();
/// send(secsock::impersonate::ImpersonationGuard::begin(&account).unwrap());
/// ```
///
/// Guards nest: each restores what it replaced. Dropping an outer guard before an inner
/// one ends both (the inner one then does nothing when dropped), and so does
/// [`revert_impersonation`] for all of them.
#[must_use = "the impersonation ends when the guard is dropped"]
pub struct ImpersonationGuard {
    account: LocalAccount,
    id: u64,
    /// `*const ()` makes the guard `!Send` and `!Sync`.
    _this_thread_only: PhantomData<*const ()>,
}

impl fmt::Debug for ImpersonationGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpersonationGuard")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl ImpersonationGuard {
    /// Switches the calling thread's file-system identity to `account`.
    ///
    /// Checks first that the thread may (`CAP_SETUID` and `CAP_SETGID` in its effective
    /// set) and that `account` is neither root nor in group 0; if not, fails with nothing
    /// changed. Then sets the supplementary groups, the fsgid and the fsuid, in that
    /// order, undoing the earlier steps if a later one fails. Last, it checks that the
    /// thread no longer has any file-system capability (`CAP_DAC_OVERRIDE`,
    /// `CAP_DAC_READ_SEARCH`, `CAP_FOWNER`, ...) in its effective set, which would let it
    /// bypass the very checks impersonation is for; if it does, it switches back and fails
    /// with [`ImpersonationError::FileCapabilitiesKept`].
    ///
    /// It does not apply the policy's `UID_MIN` rule: that belongs to the mapping
    /// ([`account_for_peer`]), which knows the rule that named the account.
    pub fn begin(account: &LocalAccount) -> Result<ImpersonationGuard, ImpersonationError> {
        refuse_privileged(account)?;
        check_capabilities()?;
        let before = FsIdentity::of_this_thread()?;
        let target = FsIdentity {
            fsuid: account.uid,
            fsgid: account.gid,
            groups: account.groups.clone(),
        };
        switch_to(&target, &before)?;
        if let Err(e) = check_file_capabilities_dropped(account) {
            restore(&before);
            return Err(e);
        }
        let id = THREAD.with(|thread| {
            let mut thread = thread.borrow_mut();
            thread.next_guard += 1;
            let id = thread.next_guard;
            thread.stack.push(Saved { guard: id, before });
            id
        });
        Ok(ImpersonationGuard {
            account: account.clone(),
            id,
            _this_thread_only: PhantomData,
        })
    }

    /// The account the thread is acting as.
    pub fn account(&self) -> &LocalAccount {
        &self.account
    }

    /// Ends the impersonation now (the same as dropping the guard).
    pub fn revert(self) {
        drop(self);
    }
}

impl Drop for ImpersonationGuard {
    fn drop(&mut self) {
        // `try_with`: during thread exit the bookkeeping may already be gone, and so are
        // the thread's credentials a moment later; there is nothing to restore.
        let before = THREAD
            .try_with(|thread| {
                let mut thread = thread.borrow_mut();
                let position = thread.stack.iter().position(|s| s.guard == self.id)?;
                // This guard's entry, and those of guards begun after it, which it ends.
                let ended = thread.stack.split_off(position);
                ended.into_iter().next().map(|s| s.before)
            })
            .ok()
            .flatten();
        if let Some(before) = before {
            restore(&before);
        }
    }
}

/// `WSARevertImpersonation`: ends the calling thread's impersonation, however deeply
/// nested, restoring the identity it had before its first guard. Does nothing when the
/// thread is not impersonating. Guards still alive afterwards do nothing when dropped.
pub fn revert_impersonation() {
    let before = THREAD
        .try_with(|thread| {
            let mut thread = thread.borrow_mut();
            let ended = std::mem::take(&mut thread.stack);
            ended.into_iter().next().map(|s| s.before)
        })
        .ok()
        .flatten();
    if let Some(before) = before {
        restore(&before);
    }
}

/// Whether the calling thread is impersonating (has a guard that has not ended).
pub fn is_impersonating() -> bool {
    THREAD
        .try_with(|thread| !thread.borrow().stack.is_empty())
        .unwrap_or(false)
}

/// Fails unless the calling thread has `CAP_SETUID` and `CAP_SETGID` in its effective set.
fn check_capabilities() -> Result<(), ImpersonationError> {
    let effective = sys::thread_effective_capabilities()?;
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let missing = match (has(sys::CAP_SETUID), has(sys::CAP_SETGID)) {
        (true, true) => return Ok(()),
        (false, true) => "CAP_SETUID",
        (true, false) => "CAP_SETGID",
        (false, false) => "CAP_SETUID and CAP_SETGID",
    };
    Err(ImpersonationError::NotPermitted { missing })
}

/// Fails if the thread, now acting as `account`, still has a file-system capability in
/// its effective set. For a root server the kernel clears them when the fsuid leaves 0;
/// they stay when the thread has `SECBIT_NO_SETUID_FIXUP`, or when the server is not root
/// (the clearing only happens on leaving 0) and holds them, e.g. as ambient capabilities.
fn check_file_capabilities_dropped(account: &LocalAccount) -> Result<(), ImpersonationError> {
    let effective = sys::thread_effective_capabilities()?;
    let kept: Vec<&'static str> = sys::FILE_SYSTEM_CAPABILITIES
        .iter()
        .filter(|(cap, _)| effective & (1u64 << cap) != 0)
        .map(|&(_, name)| name)
        .collect();
    if kept.is_empty() {
        return Ok(());
    }
    let (euid, _) = sys::thread_effective_ids();
    Err(ImpersonationError::FileCapabilitiesKept {
        account: account.name.clone(),
        capabilities: kept,
        euid,
        no_setuid_fixup: sys::thread_has_no_setuid_fixup()?,
    })
}

/// Fails when the calling thread acts as another account, so that it must not start a
/// thread: a new thread gets a copy of the creating thread's credentials (so it would be
/// the peer) but not this module's bookkeeping (so it could never revert).
///
/// Two views are checked: this module's ([`is_impersonating`]), and the kernel's — a
/// file-system uid or gid other than the effective one — which also catches a thread that
/// was itself started by an impersonating thread and so inherited the peer's identity.
///
/// Every place in secsock that starts a thread or hands work to a pool that may start
/// one must call this first, on the thread that would start it, and give up on an error:
/// the tokio helper [`crate::tokio::SecureStream::run_as_peer`] does; so must the blocking
/// listener's concurrent handshakes. A pool thread about to act for an async helper calls
/// it too: a thread that inherited an identity must not impersonate (reverting would
/// bring it back to the inherited identity, not to the server's).
pub(crate) fn thread_may_spawn() -> Result<(), ImpersonationError> {
    let (fsuid, fsgid) = (sys::thread_fsuid(), sys::thread_fsgid());
    let (euid, egid) = sys::thread_effective_ids();
    let tracked = is_impersonating();
    if tracked || fsuid != euid || fsgid != egid {
        return Err(ImpersonationError::ThreadImpersonating {
            fsuid,
            fsgid,
            euid,
            egid,
            inherited: !tracked,
        });
    }
    Ok(())
}

/// Sets groups, fsgid, fsuid; on a failure, puts back what was already changed.
fn switch_to(target: &FsIdentity, before: &FsIdentity) -> io::Result<()> {
    sys::set_thread_groups(&target.groups)?;
    if let Err(e) = sys::set_thread_fsgid(target.fsgid) {
        restore(before);
        return Err(e);
    }
    if let Err(e) = sys::set_thread_fsuid(target.fsuid) {
        restore(before);
        return Err(e);
    }
    Ok(())
}

/// Puts the thread's identity back, in the reverse order of `switch_to`. A thread that
/// cannot get its own identity back must not run on as someone else: the process ends.
fn restore(before: &FsIdentity) {
    let result = sys::set_thread_fsuid(before.fsuid)
        .and_then(|()| sys::set_thread_fsgid(before.fsgid))
        .and_then(|()| sys::set_thread_groups(&before.groups));
    if let Err(e) = result {
        let message = format!(
            "secsock: cannot restore this thread's identity after impersonation \
             (fsuid {}, fsgid {}, groups {:?}): {e}; ending the process rather than running on \
             as the impersonated account",
            before.fsuid, before.fsgid, before.groups
        );
        tracing::error!("{message}");
        eprintln!("{message}");
        std::process::abort();
    }
}

/// Why impersonating the peer failed. Nothing about the thread changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImpersonationError {
    /// No `[[accounts]]` rule matches the peer's principal.
    #[error("no [[accounts]] rule maps `{principal}` to a local account; add one to the policy")]
    NoMapping {
        /// The principal (or principals, separated by "`, `") that found no rule.
        principal: String,
    },
    /// The account a rule maps the peer to does not exist on this machine.
    #[error(
        "there is no local account `{account}` (the name service does not know it); \
         create it, or change the [[accounts]] rule that names it"
    )]
    NoSuchAccount {
        /// The account name.
        account: String,
    },
    /// The calling thread lacks a capability impersonation needs.
    #[error(
        "impersonation needs CAP_SETUID and CAP_SETGID in the calling thread's effective \
         capabilities, and it lacks {missing}; run the server as root or grant them \
         (for example AmbientCapabilities=CAP_SETUID CAP_SETGID in its systemd unit)"
    )]
    NotPermitted {
        /// `"CAP_SETUID"`, `"CAP_SETGID"` or `"CAP_SETUID and CAP_SETGID"`.
        missing: &'static str,
    },
    /// The mapping leads to root (uid 0), which secsock never impersonates.
    #[error(
        "refusing to impersonate `{account}`: it has uid 0, and a thread acting as root has \
         every file-system privilege back; map the peer to an unprivileged account"
    )]
    PrivilegedAccount {
        /// The account name.
        account: String,
    },
    /// The mapping leads to an account in group 0 (root), as its primary group or a
    /// supplementary one, which secsock never impersonates.
    #[error(
        "refusing to impersonate `{account}`: {} is group 0 (root), and a thread in group 0 \
         may read and write whatever root's group may; map the peer to an account outside \
         group 0 (change the [[accounts]] rule), or take `{account}` out of group 0",
        if *primary { "its primary group" } else { "one of its supplementary groups" }
    )]
    PrivilegedGroup {
        /// The account name.
        account: String,
        /// Whether group 0 is the account's primary group (else a supplementary one).
        primary: bool,
    },
    /// The mapping leads to a system account (uid below the system's `UID_MIN`) and the
    /// rule that named it does not allow that.
    #[error(
        "refusing to impersonate `{account}`: its uid {uid} is below UID_MIN {uid_min} \
         (/etc/login.defs), so it is a system account; if the [[accounts]] rule with \
         principal = \"{rule}\" is meant to map peers to it, add \
         `allow_system_account = true` to that rule"
    )]
    SystemAccount {
        /// The account name.
        account: String,
        /// Its uid.
        uid: u32,
        /// The system's `UID_MIN`.
        uid_min: u32,
        /// The `principal` pattern of the rule that named the account.
        rule: String,
    },
    /// After switching, the thread still had file-system capabilities in its effective
    /// set, which would exempt it from the access checks; the switch was undone.
    #[error(
        "refusing to impersonate `{account}`: after the switch the thread still had {} in \
         its effective capabilities, which bypass the file access checks impersonation is \
         for; {}",
        capabilities.join(", "),
        kept_capabilities_fix(*euid, *no_setuid_fixup)
    )]
    FileCapabilitiesKept {
        /// The account name.
        account: String,
        /// The file-system capabilities still effective, e.g. `CAP_DAC_OVERRIDE`.
        capabilities: Vec<&'static str>,
        /// The thread's effective uid.
        euid: u32,
        /// Whether the thread has `SECBIT_NO_SETUID_FIXUP` in its securebits.
        no_setuid_fixup: bool,
    },
    /// The calling thread acts as another account, so secsock starts no thread from it
    /// and does no work for a peer on it.
    #[error(
        "this thread is acting as another account (file-system uid {fsuid}, gid {fsgid}; \
         the process runs as uid {euid}, gid {egid}){}: a thread started from it would be \
         that account with no way back, so secsock starts none from it and does no work as \
         a peer on it; start threads, and call `run_as_peer`, only from threads that are \
         not impersonating",
        if *inherited { ", an identity it inherited from the thread that started it" } else { "" }
    )]
    ThreadImpersonating {
        /// The thread's file-system uid.
        fsuid: u32,
        /// The thread's file-system gid.
        fsgid: u32,
        /// The thread's effective uid.
        euid: u32,
        /// The thread's effective gid.
        egid: u32,
        /// Whether secsock's bookkeeping on this thread knows no impersonation (the thread
        /// was started by an impersonating thread and inherited its identity).
        inherited: bool,
    },
    /// The peer proved no principal, so there is nobody to impersonate.
    #[error(
        "the peer proved no identity (neither an application nor a machine principal), \
         so there is nobody to impersonate"
    )]
    NoIdentity,
    /// Looking the account up or switching the thread failed.
    #[error("impersonation failed: {0}")]
    Io(#[from] io::Error),
}

/// What to do about file-system capabilities that survived the switch, given why.
fn kept_capabilities_fix(euid: u32, no_setuid_fixup: bool) -> String {
    if no_setuid_fixup {
        "the thread runs with SECBIT_NO_SETUID_FIXUP (securebits), which stops the kernel \
         from clearing them when the file-system uid leaves 0; do not set that bit in a \
         server that impersonates"
            .to_owned()
    } else if euid != 0 {
        format!(
            "the server runs as uid {euid}, not root, and the kernel clears them only when \
             the file-system uid leaves 0; remove them from the server's effective and \
             ambient capabilities (e.g. AmbientCapabilities= in its systemd unit: \
             CAP_SETUID CAP_SETGID suffice)"
        )
    } else {
        "the kernel did not clear them (the thread's file-system uid was not 0 before); \
         lower them from the thread's effective set before impersonating"
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(principal: &str, user: &str) -> AccountRule {
        AccountRule::new(principal, user)
    }

    #[test]
    fn impersonate_account_for_peer_errors() {
        let rules = [rule("user:*@EXAMPLE.TEST", "{name}")];
        let none: [&str; 0] = [];
        assert!(matches!(
            account_for_peer(&rules, &none),
            Err(ImpersonationError::NoIdentity)
        ));
        let e = account_for_peer(&rules, &["user:bob@OTHER.TEST"]).unwrap_err();
        assert!(
            matches!(&e, ImpersonationError::NoMapping { principal } if principal == "user:bob@OTHER.TEST")
        );
        assert_eq!(
            e.to_string(),
            "no [[accounts]] rule maps `user:bob@OTHER.TEST` to a local account; add one to the policy"
        );
        let e = account_for_peer(&rules, &["host/a.test", "host/b.test"]).unwrap_err();
        assert!(
            e.to_string().contains("`host/a.test`, `host/b.test`"),
            "{e}"
        );
        let e =
            account_for_peer(&rules, &["user:secsock-no-such-user-x9@EXAMPLE.TEST"]).unwrap_err();
        assert!(
            matches!(&e, ImpersonationError::NoSuchAccount { account } if account == "secsock-no-such-user-x9"),
            "{e}"
        );
    }

    #[test]
    fn impersonate_account_for_peer_rule_order_beats_name_order() {
        // The machine has two names; the first rule matching either decides.
        let rules = [
            rule("host/b.test", "nobody"),
            rule("host/a.test", "secsock-no-such-user-x9"),
        ];
        let account = account_for_peer(&rules, &["host/a.test", "host/b.test"]).unwrap();
        assert_eq!(account.name, "nobody");
    }

    #[test]
    fn impersonate_account_for_peer_refuses_root() {
        // With `{name}`, `user:root@REALM` maps to root: refused at the mapping, even by a
        // rule that allows system accounts.
        for rules in [
            [rule("user:*@EXAMPLE.TEST", "{name}")],
            [rule("user:*@EXAMPLE.TEST", "{name}").allowing_system_account()],
        ] {
            let e = account_for_peer(&rules, &["user:root@EXAMPLE.TEST"]).unwrap_err();
            assert!(
                matches!(&e, ImpersonationError::PrivilegedAccount { account } if account == "root"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn impersonate_uid_min_defaults_to_1000() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(uid_min_at(&dir.path().join("missing")), 1000);
        let defs = dir.path().join("login.defs");
        std::fs::write(&defs, "MAIL_DIR /var/mail\nUID_MAX 60000\n").unwrap();
        assert_eq!(uid_min_at(&defs), 1000);
        std::fs::write(&defs, "UID_MIN 500\n").unwrap();
        assert_eq!(uid_min_at(&defs), 500);
        // A directory cannot be read: the default.
        assert_eq!(uid_min_at(dir.path()), 1000);
    }

    #[test]
    fn impersonate_check_mapped_account_table() {
        let account = |uid: u32, gid: u32, groups: &[u32]| LocalAccount {
            name: "acct".into(),
            uid,
            gid,
            groups: groups.to_vec(),
        };
        let plain = rule("user:*@EXAMPLE.TEST", "{name}");
        let allowing = plain.clone().allowing_system_account();
        // (account, rule, UID_MIN, expected error variant or "ok")
        let cases: &[(LocalAccount, &AccountRule, u32, &str)] = &[
            (account(1000, 1000, &[1000]), &plain, 1000, "ok"),
            (account(65534, 65534, &[65534]), &plain, 1000, "ok"),
            (account(999, 999, &[999]), &plain, 1000, "system"),
            (account(1, 1, &[1]), &plain, 1000, "system"),
            (account(999, 999, &[999]), &allowing, 1000, "ok"),
            (account(600, 600, &[600]), &plain, 500, "ok"),
            (account(600, 600, &[600]), &plain, 1000, "system"),
            // Root and group 0, whatever the rule and UID_MIN say.
            (account(0, 0, &[0]), &plain, 1000, "root"),
            (account(0, 0, &[0]), &allowing, 0, "root"),
            (account(0, 1000, &[1000]), &allowing, 0, "root"),
            (account(1000, 0, &[0]), &plain, 1000, "primary group 0"),
            (account(1000, 0, &[0]), &allowing, 0, "primary group 0"),
            (account(1000, 1000, &[1000, 0]), &plain, 1000, "group 0"),
            (account(1000, 1000, &[1000, 27, 0]), &allowing, 0, "group 0"),
            (account(5, 5, &[5, 0]), &allowing, 1000, "group 0"),
        ];
        for (account, rule, uid_min, expected) in cases {
            let result = check_mapped_account(account, rule, *uid_min);
            let got = match &result {
                Ok(()) => "ok",
                Err(ImpersonationError::SystemAccount { .. }) => "system",
                Err(ImpersonationError::PrivilegedAccount { .. }) => "root",
                Err(ImpersonationError::PrivilegedGroup { primary: true, .. }) => "primary group 0",
                Err(ImpersonationError::PrivilegedGroup { primary: false, .. }) => "group 0",
                Err(_) => "other",
            };
            assert_eq!(
                got, *expected,
                "{account:?} {rule:?} UID_MIN {uid_min}: {result:?}"
            );
        }
    }

    #[test]
    fn impersonate_lookup_takes_only_the_exact_name() {
        // A name service may match names case-insensitively (SSSD with
        // `case_sensitive = false`, some LDAP schemas) and answer `Alice` for `alice`.
        // (requested, the name NSS returns, accepted)
        let cases: &[(&str, &str, bool)] = &[
            ("alice", "alice", true),
            ("alice", "Alice", false),
            ("ALICE", "alice", false),
            ("ROOT", "root", false),
            ("jürgen", "jürgen", true),
            ("jürgen", "JÜRGEN", false),
            ("alice ", "alice", false),
            ("alice", "alice@example.test", false),
        ];
        for &(requested, returned, accepted) in cases {
            let returned_name = CString::new(returned).unwrap();
            let fake_user = |asked: &CStr| {
                assert_eq!(asked.to_str().unwrap(), requested);
                Ok(Some(sys::PasswdEntry {
                    name: returned_name.clone(),
                    uid: 54340,
                    gid: 54340,
                }))
            };
            let fake_groups = |_: &CStr, gid: u32| Ok(vec![gid]);
            let result = LocalAccount::lookup_through(requested, fake_user, fake_groups);
            match (accepted, &result) {
                (true, Ok(account)) => assert_eq!(account.name, requested),
                (false, Err(ImpersonationError::NoSuchAccount { account })) => {
                    assert_eq!(account, requested)
                }
                _ => panic!("`{requested}` answered as `{returned}`: {result:?}"),
            }
        }
    }

    #[test]
    fn impersonate_lookup_includes_the_primary_group() {
        let root = LocalAccount::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.groups.first(), Some(&0));
        for bad in ["", "ro\0ot", "secsock-no-such-user-x9"] {
            assert!(matches!(
                LocalAccount::lookup(bad),
                Err(ImpersonationError::NoSuchAccount { .. })
            ));
        }
    }

    #[test]
    fn impersonate_root_is_refused_before_anything_changes() {
        let root = LocalAccount::lookup("root").unwrap();
        let e = ImpersonationGuard::begin(&root).unwrap_err();
        assert!(
            matches!(e, ImpersonationError::PrivilegedAccount { .. }),
            "{e}"
        );
        assert!(!is_impersonating());
    }

    /// The identity of the calling thread, read through `sys` (not through this module).
    fn thread_identity() -> FsIdentity {
        FsIdentity::of_this_thread().unwrap()
    }

    #[test]
    fn impersonate_failure_midway_undoes_the_steps_taken() {
        // (uid_t)-1 is refused by the last step (fsuid), after the groups and the fsgid
        // were switched; (gid_t)-1 by the second, after the groups. Both must be undone.
        std::thread::spawn(|| {
            let before = thread_identity();
            for (uid, gid) in [(u32::MAX, 54330), (54331, u32::MAX)] {
                let account = LocalAccount {
                    name: "unswitchable".into(),
                    uid,
                    gid,
                    groups: vec![54332, 54333],
                };
                let e = ImpersonationGuard::begin(&account).unwrap_err();
                assert!(
                    matches!(&e, ImpersonationError::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
                    "{e:?}"
                );
                assert_eq!(thread_identity(), before);
                assert!(!is_impersonating());
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn impersonate_thread_may_spawn_sees_secsocks_and_the_kernels_view() {
        std::thread::spawn(|| {
            assert!(thread_may_spawn().is_ok(), "a thread that is itself");
            let account = LocalAccount {
                name: "someone".into(),
                uid: 54350,
                gid: 54351,
                groups: vec![54351],
            };
            let guard = ImpersonationGuard::begin(&account).unwrap();
            let e = thread_may_spawn().unwrap_err();
            assert!(
                matches!(
                    e,
                    ImpersonationError::ThreadImpersonating {
                        fsuid: 54350,
                        fsgid: 54351,
                        inherited: false,
                        ..
                    }
                ),
                "{e:?}"
            );
            // A thread started now inherits the ids but not the bookkeeping: only the
            // kernel's view tells.
            std::thread::spawn(|| {
                assert!(!is_impersonating());
                let e = thread_may_spawn().unwrap_err();
                assert!(
                    matches!(
                        e,
                        ImpersonationError::ThreadImpersonating {
                            fsuid: 54350,
                            inherited: true,
                            ..
                        }
                    ),
                    "{e:?}"
                );
                assert!(e.to_string().contains("inherited"), "{e}");
            })
            .join()
            .unwrap();
            drop(guard);
            assert!(thread_may_spawn().is_ok());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn impersonate_errors_read_as_sentences() {
        let e = ImpersonationError::SystemAccount {
            account: "daemon".into(),
            uid: 1,
            uid_min: 1000,
            rule: "user:*@EXAMPLE.TEST".into(),
        };
        assert_eq!(
            e.to_string(),
            "refusing to impersonate `daemon`: its uid 1 is below UID_MIN 1000 (/etc/login.defs), \
             so it is a system account; if the [[accounts]] rule with principal = \
             \"user:*@EXAMPLE.TEST\" is meant to map peers to it, add \
             `allow_system_account = true` to that rule"
        );
        let e = ImpersonationError::PrivilegedGroup {
            account: "alice".into(),
            primary: false,
        };
        assert!(
            e.to_string().starts_with(
                "refusing to impersonate `alice`: one of its supplementary groups is group 0 (root)"
            ),
            "{e}"
        );
        let kept = |euid, no_setuid_fixup| ImpersonationError::FileCapabilitiesKept {
            account: "alice".into(),
            capabilities: vec!["CAP_DAC_OVERRIDE", "CAP_FOWNER"],
            euid,
            no_setuid_fixup,
        };
        let e = kept(0, true).to_string();
        assert!(e.contains("still had CAP_DAC_OVERRIDE, CAP_FOWNER"), "{e}");
        assert!(e.contains("SECBIT_NO_SETUID_FIXUP"), "{e}");
        let e = kept(995, false).to_string();
        assert!(e.contains("runs as uid 995, not root"), "{e}");
        assert!(e.contains("AmbientCapabilities="), "{e}");
        let e = ImpersonationError::NotPermitted {
            missing: "CAP_SETGID",
        };
        assert!(e.to_string().contains("it lacks CAP_SETGID"), "{e}");
        let e = ImpersonationError::NoSuchAccount {
            account: "alice".into(),
        };
        assert!(
            e.to_string()
                .starts_with("there is no local account `alice`"),
            "{e}"
        );
    }
}
