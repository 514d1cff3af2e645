//! Impersonation (SPEC §8): a thread that impersonates a peer's local account accesses
//! files as that account, and only that thread, until the guard ends.
//!
//! These tests run as root. Each creates its own local users and groups (`sstest_PID_N`)
//! with `useradd`/`groupadd` and removes them when it ends, also when it fails. The
//! identity a thread has is read from `/proc/thread-self/status` (`Uid:`/`Gid:` field 4
//! is the file-system id, `Groups:` the supplementary groups), not from secsock.
//!
//! Run them alone with `cargo test -p secsock --all-features --test integration impersonation::`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;

use secsock::impersonate::{
    account_for_peer, is_impersonating, revert_impersonation, AccountRule, ImpersonationError,
    ImpersonationGuard, LocalAccount,
};
use tempfile::TempDir;

use crate::support;
use support::local_accounts::{unique_account_name, LocalGroup, LocalUser};
use support::require_root;

// --- fixtures ---------------------------------------------------------------------------

/// One line of the calling thread's `/proc/thread-self/status`, as numbers.
fn status_ids(key: &str) -> Vec<u32> {
    let status = fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no `{key}:` line"))
        .split_whitespace()
        .map(|field| field.parse().unwrap())
        .collect()
}

/// The calling thread's file-system identity, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ThreadIdentity {
    fsuid: u32,
    fsgid: u32,
    groups: Vec<u32>,
}

fn thread_identity() -> ThreadIdentity {
    let mut groups = status_ids("Groups");
    groups.sort_unstable();
    ThreadIdentity {
        fsuid: status_ids("Uid")[3],
        fsgid: status_ids("Gid")[3],
        groups,
    }
}

/// The identity impersonating `account` must give the thread.
fn identity_of(account: &LocalAccount) -> ThreadIdentity {
    let mut groups = account.groups.clone();
    groups.sort_unstable();
    ThreadIdentity {
        fsuid: account.uid,
        fsgid: account.gid,
        groups,
    }
}

/// Why these tests need root, for [`require_root`]'s message when they skip.
const NEEDS_ROOT: &str = "it creates local users and switches thread identities";

/// A scratch directory every test user can enter, holding a file only root can read
/// and a world-writable directory.
struct Scratch {
    _dir: TempDir,
    root_only: PathBuf,
    writable: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root_only = dir.path().join("root-only");
        fs::write(&root_only, b"root's secret").unwrap();
        fs::set_permissions(&root_only, fs::Permissions::from_mode(0o600)).unwrap();
        let writable = dir.path().join("writable");
        fs::create_dir(&writable).unwrap();
        fs::set_permissions(&writable, fs::Permissions::from_mode(0o777)).unwrap();
        Scratch {
            _dir: dir,
            root_only,
            writable,
        }
    }
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut content = Vec::new();
    File::open(path)?.read_to_end(&mut content)?;
    Ok(content)
}

const EACCES: i32 = 13;

fn assert_access_denied(path: &Path) {
    match read(path) {
        Err(e) => assert_eq!(e.raw_os_error(), Some(EACCES), "{}: {e}", path.display()),
        Ok(_) => panic!("{} was readable", path.display()),
    }
}

// --- the thread acts as the account ------------------------------------------------------

#[test]
fn impersonation_creates_files_as_the_mapped_user() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = Scratch::new();
    // Mapped the way a server maps a peer: principal -> [[accounts]] -> NSS.
    let rules = [AccountRule::new("user:*@EXAMPLE.TEST", "{name}")];
    let principal = format!("user:{}@example.test", user.account.name);
    let account = account_for_peer(&rules, &[principal]).unwrap();
    assert_eq!(account, user.account);

    let created = scratch.writable.join("created-by-peer");
    {
        let guard = ImpersonationGuard::begin(&account).unwrap();
        assert_eq!(guard.account(), &account);
        assert!(is_impersonating());
        assert_eq!(thread_identity(), identity_of(&account));
        File::create(&created)
            .unwrap()
            .write_all(b"written as the peer")
            .unwrap();
    }
    let metadata = fs::metadata(&created).unwrap();
    assert_eq!(
        (metadata.uid(), metadata.gid()),
        (user.account.uid, user.account.gid)
    );
}

#[test]
fn impersonation_cannot_read_a_root_only_file_and_can_again_after_revert() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = Scratch::new();
    let before = thread_identity();
    assert_eq!(before.fsuid, 0);

    let guard = ImpersonationGuard::begin(&user.account).unwrap();
    assert_access_denied(&scratch.root_only);
    guard.revert();

    assert!(!is_impersonating());
    assert_eq!(thread_identity(), before);
    assert_eq!(read(&scratch.root_only).unwrap(), b"root's secret");
}

#[test]
fn impersonation_leaves_the_other_threads_of_the_process_alone() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = Scratch::new();

    // The other thread exists before the impersonation begins: a thread spawned while
    // impersonating would inherit the identity (see the test below).
    let (ask, asked) = mpsc::channel::<()>();
    let (answer, answered) = mpsc::channel();
    let root_only = scratch.root_only.clone();
    let other = std::thread::spawn(move || {
        let own = thread_identity();
        for () in asked {
            let seen = (
                thread_identity() == own,
                thread_identity().fsuid,
                is_impersonating(),
                read(&root_only).map_err(|e| e.to_string()),
            );
            answer.send(seen).unwrap();
        }
    });

    {
        let _guard = ImpersonationGuard::begin(&user.account).unwrap();
        ask.send(()).unwrap();
        let (unchanged, fsuid, impersonating, content) = answered.recv().unwrap();
        assert!(
            unchanged,
            "the other thread's fsuid, fsgid and groups are its own"
        );
        assert_eq!(fsuid, 0, "the other thread's fsuid");
        assert!(!impersonating);
        assert_eq!(content.unwrap(), b"root's secret");
        // Meanwhile this thread is still the user.
        assert_eq!(thread_identity().fsuid, user.uid);
        assert_access_denied(&scratch.root_only);
        // And so is the process's main thread root (/proc/PID/status describes it).
        let main = fs::read_to_string(format!("/proc/{}/status", std::process::id())).unwrap();
        let main_fsuid = main
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap();
        assert_eq!(main_fsuid, "0");
    }
    drop(ask);
    other.join().unwrap();
    assert_eq!(thread_identity().fsuid, 0);
}

#[test]
fn impersonation_is_inherited_by_threads_spawned_while_impersonating() {
    // Pins a documented limit: the kernel copies the creating thread's credentials into a
    // new thread, but not secsock's bookkeeping. Such a thread is the peer and cannot
    // revert; it stays the peer until it exits.
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let guard = ImpersonationGuard::begin(&user.account).unwrap();
    let uid = user.uid;
    std::thread::spawn(move || {
        assert_eq!(thread_identity().fsuid, uid);
        assert!(!is_impersonating());
        revert_impersonation(); // a no-op there: this thread began nothing
        assert_eq!(thread_identity().fsuid, uid);
    })
    .join()
    .unwrap();
    drop(guard);
    assert_eq!(thread_identity().fsuid, 0);
}

#[test]
fn impersonation_reverts_when_the_thread_panics() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = Scratch::new();
    let before = thread_identity();

    let unwound = std::panic::catch_unwind(|| {
        let _guard = ImpersonationGuard::begin(&user.account).unwrap();
        assert_eq!(thread_identity().fsuid, user.uid);
        panic!("the request handler failed while impersonating (expected by this test)");
    });

    assert!(unwound.is_err());
    assert!(!is_impersonating());
    assert_eq!(thread_identity(), before);
    assert_eq!(read(&scratch.root_only).unwrap(), b"root's secret");
}

// --- nesting and WSARevertImpersonation ---------------------------------------------------

#[test]
fn impersonation_nested_guards_restore_the_previous_identity() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let alice = LocalUser::create();
    let bob = LocalUser::create();
    let scratch = Scratch::new();
    let root = thread_identity();

    let as_alice = ImpersonationGuard::begin(&alice.account).unwrap();
    assert_eq!(thread_identity(), identity_of(&alice.account));
    let as_bob = ImpersonationGuard::begin(&bob.account).unwrap();
    assert_eq!(thread_identity(), identity_of(&bob.account));
    let by_bob = scratch.writable.join("by-bob");
    File::create(&by_bob).unwrap();
    assert_eq!(fs::metadata(&by_bob).unwrap().uid(), bob.uid);

    drop(as_bob);
    assert_eq!(thread_identity(), identity_of(&alice.account));
    assert!(is_impersonating());
    let by_alice = scratch.writable.join("by-alice");
    File::create(&by_alice).unwrap();
    assert_eq!(fs::metadata(&by_alice).unwrap().uid(), alice.uid);

    drop(as_alice);
    assert_eq!(thread_identity(), root);
    assert!(!is_impersonating());
}

#[test]
fn impersonation_dropping_an_outer_guard_first_ends_the_inner_one_too() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let alice = LocalUser::create();
    let bob = LocalUser::create();
    let root = thread_identity();

    let as_alice = ImpersonationGuard::begin(&alice.account).unwrap();
    let as_bob = ImpersonationGuard::begin(&bob.account).unwrap();
    drop(as_alice);
    assert_eq!(thread_identity(), root);
    assert!(!is_impersonating());
    drop(as_bob); // ended already: does nothing
    assert_eq!(thread_identity(), root);
}

#[test]
fn impersonation_revert_is_a_no_op_when_not_impersonating() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let before = thread_identity();
    assert!(!is_impersonating());
    revert_impersonation();
    revert_impersonation();
    assert_eq!(thread_identity(), before);
    assert!(!is_impersonating());
}

#[test]
fn impersonation_revert_ends_all_nesting_and_later_drops_do_nothing() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let alice = LocalUser::create();
    let bob = LocalUser::create();
    let root = thread_identity();

    let as_alice = ImpersonationGuard::begin(&alice.account).unwrap();
    let as_bob = ImpersonationGuard::begin(&bob.account).unwrap();
    revert_impersonation();
    assert_eq!(thread_identity(), root);
    assert!(!is_impersonating());

    // A new impersonation, then the stale guards are dropped: were they still active,
    // dropping `as_bob` would switch to alice and dropping `as_alice` to root.
    let as_bob_again = ImpersonationGuard::begin(&bob.account).unwrap();
    drop(as_bob);
    assert_eq!(thread_identity(), identity_of(&bob.account));
    drop(as_alice);
    assert_eq!(thread_identity(), identity_of(&bob.account));
    assert!(is_impersonating());
    drop(as_bob_again);
    assert_eq!(thread_identity(), root);
}

// --- groups -------------------------------------------------------------------------------

#[test]
fn impersonation_uses_the_accounts_supplementary_groups() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let project = LocalGroup::create();
    let member = LocalUser::create_in(&[&project]);
    let outsider = LocalUser::create();
    let scratch = Scratch::new();
    let root = thread_identity();

    // Readable by the owner (root) and the group `project` only.
    let group_file = scratch.writable.join("project-file");
    fs::write(&group_file, b"for the project").unwrap();
    std::os::unix::fs::chown(&group_file, Some(0), Some(project.gid())).unwrap();
    fs::set_permissions(&group_file, fs::Permissions::from_mode(0o640)).unwrap();

    assert!(member.account.groups.contains(&project.gid()));
    assert!(member.account.groups.contains(&member.account.gid));
    {
        let _guard = ImpersonationGuard::begin(&member.account).unwrap();
        let now = thread_identity();
        assert!(now.groups.contains(&project.gid()), "{now:?}");
        assert_eq!(now, identity_of(&member.account));
        assert_eq!(read(&group_file).unwrap(), b"for the project");
    }
    assert_eq!(thread_identity(), root);
    {
        let _guard = ImpersonationGuard::begin(&outsider.account).unwrap();
        assert!(!thread_identity().groups.contains(&project.gid()));
        assert_access_denied(&group_file);
    }
    assert_eq!(thread_identity(), root);
}

#[test]
fn impersonation_lookup_agrees_with_id() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let project = LocalGroup::create();
    let user = LocalUser::create_in(&[&project]);
    let id = |flag: &str| {
        let output = Command::new("id")
            .args([flag, &user.account.name])
            .output()
            .unwrap();
        assert!(output.status.success());
        let mut ids: Vec<u32> = String::from_utf8(output.stdout)
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(vec![user.account.uid], id("-u"));
    assert_eq!(vec![user.account.gid], id("-g"));
    let mut groups = user.account.groups.clone();
    groups.sort_unstable();
    assert_eq!(groups, id("-G"));
    assert_eq!(
        user.account.groups[0], user.account.gid,
        "primary group first"
    );
}

// --- refusals -----------------------------------------------------------------------------

#[test]
fn impersonation_unknown_account_and_missing_mapping_are_clear_errors() {
    let missing = unique_account_name();
    match LocalAccount::lookup(&missing) {
        Err(ImpersonationError::NoSuchAccount { account }) => assert_eq!(account, missing),
        other => panic!("{other:?}"),
    }

    let rules = [
        AccountRule::new("host/db.example.test", missing.clone()),
        AccountRule::new("user:*@EXAMPLE.TEST", "{name}"),
    ];
    let e = account_for_peer(&rules, &["host/db.example.test"]).unwrap_err();
    assert!(
        matches!(&e, ImpersonationError::NoSuchAccount { account } if *account == missing),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains(&format!("there is no local account `{missing}`")),
        "{e}"
    );

    let e = account_for_peer(&rules, &["user:bob@OTHER.TEST"]).unwrap_err();
    assert!(matches!(&e, ImpersonationError::NoMapping { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "no [[accounts]] rule maps `user:bob@OTHER.TEST` to a local account; add one to the policy"
    );

    let none: [&str; 0] = [];
    assert!(matches!(
        account_for_peer(&rules, &none),
        Err(ImpersonationError::NoIdentity)
    ));
    assert!(!is_impersonating());
}

/// The test binary's name for this module's test `name` (`impersonation::name`: libtest
/// names a test by its module path without the crate), to run it alone in a child.
fn test_name(name: &str) -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::{name}")
}

/// Set in a child run of this test binary: the capabilities the child was started
/// without, as `ImpersonationError::NotPermitted` should name them.
const CHILD_MISSING: &str = "SECSOCK_TEST_IMPERSONATION_MISSING_CAPS";

#[test]
fn impersonation_without_setuid_or_setgid_capability_fails_and_changes_nothing() {
    if let Ok(expected) = std::env::var(CHILD_MISSING) {
        return without_capabilities_child(&expected);
    }
    if !require_root(NEEDS_ROOT) {
        return;
    }
    // Run this same test again in a child process started by util-linux `setpriv`
    // without the capabilities (removed from the bounding and inheritable sets, so a
    // root process's exec does not get them back).
    let exe = std::env::current_exe().unwrap();
    for (drop_caps, missing) in [
        ("-setuid,-setgid", "CAP_SETUID and CAP_SETGID"),
        ("-setuid", "CAP_SETUID"),
        ("-setgid", "CAP_SETGID"),
    ] {
        let output = Command::new("setpriv")
            .arg("--inh-caps=-all")
            .arg(format!("--bounding-set={drop_caps}"))
            .arg("--")
            .arg(&exe)
            .arg("--exact")
            .arg(test_name(
                "impersonation_without_setuid_or_setgid_capability_fails_and_changes_nothing",
            ))
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD_MISSING, missing)
            .output()
            .expect("run setpriv (util-linux)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child without {missing} failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
    }
}

/// In the child: the capabilities are really gone, `begin` says which are missing, and
/// the thread's identity did not change.
fn without_capabilities_child(expected_missing: &str) {
    let status = fs::read_to_string("/proc/thread-self/status").unwrap();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    let (setgid, setuid) = (effective & (1 << 6) != 0, effective & (1 << 7) != 0);
    assert_eq!(
        !setuid,
        expected_missing.contains("CAP_SETUID"),
        "CapEff {effective:x}"
    );
    assert_eq!(
        !setgid,
        expected_missing.contains("CAP_SETGID"),
        "CapEff {effective:x}"
    );

    let nobody = LocalAccount {
        name: "nobody".into(),
        uid: 65534,
        gid: 65534,
        groups: vec![65534],
    };
    let before = thread_identity();
    let e = ImpersonationGuard::begin(&nobody).unwrap_err();
    match &e {
        ImpersonationError::NotPermitted { missing } => assert_eq!(*missing, expected_missing),
        other => panic!("{other:?}"),
    }
    let message = e.to_string();
    assert!(
        message.contains(&format!("it lacks {expected_missing}")),
        "{message}"
    );
    assert!(
        message.contains("needs CAP_SETUID and CAP_SETGID"),
        "{message}"
    );
    assert_eq!(thread_identity(), before, "nothing changed");
    assert!(!is_impersonating());
    println!("child without {expected_missing}: {message}");
}

// --- accounts that are root in all but name (issue 12) -----------------------------------

/// A file owned by root and group root, readable by that group only (mode 0640).
fn group_root_file(scratch: &Scratch) -> PathBuf {
    let path = scratch.writable.join("group-root-only");
    fs::write(&path, b"for group root").unwrap();
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    path
}

/// The peer's principal that the `{name}` rule maps to `user`.
fn peer_of(user: &LocalUser) -> String {
    format!("user:{}@EXAMPLE.TEST", user.name)
}

/// Asserts that `user`, whose groups include group 0, is neither mapped to nor
/// impersonated: a thread in group 0 reads and writes what root's group may.
fn assert_group_root_refused(user: &LocalUser) {
    let scratch = Scratch::new();
    let secret = group_root_file(&scratch);
    let before = thread_identity();

    let rules = [AccountRule::new("user:*@EXAMPLE.TEST", "{name}")];
    let e = account_for_peer(&rules, &[peer_of(user)])
        .expect_err("a peer was mapped to an account in group 0");
    assert!(
        matches!(&e, ImpersonationError::PrivilegedGroup { account, primary }
            if *account == user.name && *primary == (user.gid == 0)),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(message.contains(&user.name), "{message}");
    assert!(message.contains("group 0"), "{message}");

    let attempt = ImpersonationGuard::begin(&user.account).map(|guard| {
        let leaked = read(&secret).is_ok();
        drop(guard);
        leaked
    });
    let e = attempt
        .expect_err("impersonated an account in group 0 (Ok(true): it read a group-root file)");
    assert!(
        matches!(&e, ImpersonationError::PrivilegedGroup { .. }),
        "{e:?}"
    );
    assert_eq!(thread_identity(), before, "nothing changed");
    assert!(!is_impersonating());
}

#[test]
fn impersonation_refuses_an_account_whose_primary_group_is_root() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create_with(&["--no-user-group", "--gid", "0"]);
    assert_eq!(user.account.gid, 0);
    assert_group_root_refused(&user);
}

#[test]
fn impersonation_refuses_an_account_in_the_supplementary_group_root() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create_with(&["--user-group", "--groups", "root"]);
    assert_ne!(user.account.gid, 0);
    assert!(user.account.groups.contains(&0), "{:?}", user.account);
    assert_group_root_refused(&user);
}

#[test]
fn impersonation_does_not_map_peers_to_system_accounts() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    // `useradd --system` picks a uid below UID_MIN (1000 in the login.defs of CI).
    let system = LocalUser::create_with(&["--user-group", "--system"]);
    assert!(system.uid < 1000, "{:?}", system.account);
    for rules in [
        // A `{name}` template: a peer that proves `user:daemon@REALM` must not become
        // the daemon account.
        vec![AccountRule::new("user:*@EXAMPLE.TEST", "{name}")],
        // Naming the account is not enough either: the rule must say so.
        vec![AccountRule::new(
            format!("user:{}@EXAMPLE.TEST", system.name),
            system.name.clone(),
        )],
    ] {
        let e = account_for_peer(&rules, &[peer_of(&system)])
            .expect_err("a peer was mapped to a system account");
        assert!(
            matches!(&e, ImpersonationError::SystemAccount { account, uid, uid_min: 1000, rule }
                if *account == system.name && *uid == system.uid && *rule == rules[0].principal),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(message.contains(&system.name), "{message}");
        assert!(message.contains(&system.uid.to_string()), "{message}");
        assert!(message.contains("allow_system_account"), "{message}");
    }
}

#[test]
fn impersonation_maps_a_system_account_only_by_a_rule_that_allows_it() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let system = LocalUser::create_with(&["--user-group", "--system"]);
    let scratch = Scratch::new();
    let peer = peer_of(&system);

    // An allowing rule that does not match lends nothing to the rule that does.
    let rules = [
        AccountRule::new("host/backup.example.test", system.name.clone()).allowing_system_account(),
        AccountRule::new("user:*@EXAMPLE.TEST", "{name}"),
    ];
    let e = account_for_peer(&rules, &[&peer]).unwrap_err();
    assert!(
        matches!(&e, ImpersonationError::SystemAccount { rule, .. } if *rule == rules[1].principal),
        "{e:?}"
    );

    // The rule that names it and allows it: mapped, and impersonated for real.
    let rules = [AccountRule::new(peer.clone(), system.name.clone()).allowing_system_account()];
    let account = account_for_peer(&rules, &[&peer]).unwrap();
    assert_eq!(account, system.account);
    let created = scratch.writable.join("by-a-system-account");
    {
        let _guard = ImpersonationGuard::begin(&account).unwrap();
        File::create(&created).unwrap();
    }
    assert_eq!(fs::metadata(&created).unwrap().uid(), system.uid);

    // Even an allowing rule never maps to root.
    let rules = [AccountRule::new("user:*@EXAMPLE.TEST", "{name}").allowing_system_account()];
    let e = account_for_peer(&rules, &["user:root@EXAMPLE.TEST"]).unwrap_err();
    assert!(
        matches!(&e, ImpersonationError::PrivilegedAccount { account } if account == "root"),
        "{e:?}"
    );
}

// --- file-system capabilities after the switch (issue 12) ---------------------------------

/// The calling thread's effective capabilities, from `/proc/thread-self/status`.
fn effective_capabilities() -> u64 {
    let status = fs::read_to_string("/proc/thread-self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

const CAP_DAC_OVERRIDE: u64 = 1 << 1;

#[test]
fn impersonation_with_secbit_no_setuid_fixup_is_refused_and_changes_nothing() {
    // With SECBIT_NO_SETUID_FIXUP the kernel no longer drops CAP_DAC_OVERRIDE and the
    // other file-system capabilities when the fsuid leaves 0: the "peer" would read
    // anything. Securebits are per-thread credentials, so a thread of its own sets it.
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = Scratch::new();
    let account = user.account.clone();
    let secret = scratch.root_only.clone();
    std::thread::spawn(move || {
        use rustix::thread::{
            capabilities_secure_bits, set_capabilities_secure_bits, CapabilitiesSecureBits,
        };
        let bits = capabilities_secure_bits().unwrap();
        set_capabilities_secure_bits(bits | CapabilitiesSecureBits::NO_SETUID_FIXUP).unwrap();
        let before = thread_identity();
        let capabilities = effective_capabilities();
        assert_ne!(capabilities & CAP_DAC_OVERRIDE, 0);

        let attempt = ImpersonationGuard::begin(&account).map(|guard| {
            let leaked = read(&secret).is_ok();
            drop(guard);
            leaked
        });
        let e = attempt.expect_err(
            "impersonated while keeping CAP_DAC_OVERRIDE (Ok(true): it read a root-only file)",
        );
        assert!(
            matches!(&e, ImpersonationError::FileCapabilitiesKept { capabilities, euid: 0, no_setuid_fixup: true, .. }
                if capabilities.contains(&"CAP_DAC_OVERRIDE")
                    && capabilities.contains(&"CAP_DAC_READ_SEARCH")
                    && capabilities.contains(&"CAP_FOWNER")),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(message.contains("CAP_DAC_OVERRIDE"), "{message}");
        assert!(message.contains("SECBIT_NO_SETUID_FIXUP"), "{message}");
        assert_eq!(thread_identity(), before, "the identity was restored");
        assert_eq!(effective_capabilities(), capabilities);
        assert!(!is_impersonating());
    })
    .join()
    .unwrap();
}

/// Set in a child run of this test binary: the account (uid:gid:groups) to try to
/// impersonate while the child runs as a non-root user that holds the capabilities.
const CHILD_TARGET: &str = "SECSOCK_TEST_IMPERSONATION_NON_ROOT_TARGET";

#[test]
fn impersonation_by_a_non_root_server_with_file_capabilities_is_refused() {
    if let Ok(target) = std::env::var(CHILD_TARGET) {
        return non_root_with_capabilities_child(&target);
    }
    if !require_root(NEEDS_ROOT) {
        return;
    }
    // A server that runs as `nobody` with CAP_SETUID, CAP_SETGID and CAP_DAC_OVERRIDE
    // (e.g. systemd's AmbientCapabilities=): the kernel drops file-system capabilities
    // only when the fsuid leaves 0, so the impersonating thread would keep them.
    let user = LocalUser::create();
    let target = format!("{}:{}:{}", user.uid, user.gid, user.name);
    let caps = "+setuid,+setgid,+dac_override";
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .arg("--exact")
        .arg(test_name(
            "impersonation_by_a_non_root_server_with_file_capabilities_is_refused",
        ))
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_TARGET, target)
        .output()
        .expect("run setpriv (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child as nobody with CAP_DAC_OVERRIDE failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// In the child (uid 65534 with CAP_SETUID, CAP_SETGID, CAP_DAC_OVERRIDE effective).
fn non_root_with_capabilities_child(target: &str) {
    let mut fields = target.splitn(3, ':');
    let uid: u32 = fields.next().unwrap().parse().unwrap();
    let gid: u32 = fields.next().unwrap().parse().unwrap();
    let name = fields.next().unwrap().to_owned();
    assert_eq!(status_ids("Uid")[1], 65534);
    assert_ne!(effective_capabilities() & CAP_DAC_OVERRIDE, 0);
    let account = LocalAccount {
        name,
        uid,
        gid,
        groups: vec![gid],
    };
    let before = thread_identity();
    let attempt = ImpersonationGuard::begin(&account).map(|guard| {
        let during = thread_identity().fsuid;
        drop(guard);
        during
    });
    let e = attempt.expect_err("impersonated while keeping CAP_DAC_OVERRIDE");
    assert!(
        matches!(&e, ImpersonationError::FileCapabilitiesKept { capabilities, euid: 65534, no_setuid_fixup: false, .. }
            if *capabilities == ["CAP_DAC_OVERRIDE"]),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(message.contains("CAP_DAC_OVERRIDE"), "{message}");
    assert!(message.contains("65534"), "{message}");
    assert_eq!(thread_identity(), before, "the identity was restored");
    assert!(!is_impersonating());
    println!("child as nobody: {message}");
}

// --- exact account names (issue 12) -------------------------------------------------------

#[test]
fn impersonation_account_names_match_exactly() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    for spelling in [user.name.to_uppercase(), format!("{} ", user.name)] {
        match LocalAccount::lookup(&spelling) {
            Err(ImpersonationError::NoSuchAccount { account }) => assert_eq!(account, spelling),
            other => panic!("`{spelling}`: {other:?}"),
        }
    }
    assert!(matches!(
        LocalAccount::lookup("ROOT"),
        Err(ImpersonationError::NoSuchAccount { .. })
    ));
}
