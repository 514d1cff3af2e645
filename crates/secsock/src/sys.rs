//! Per-thread credential calls and account lookups: the only `unsafe` in secsock.
//!
//! Linux keeps credentials per thread (per task). POSIX wants `setuid`, `setgid` and
//! `setgroups` to change the whole process, so glibc (and musl) make their wrappers
//! broadcast the change to every thread (glibc's "setxid" signal, musl's `__synccall`).
//! Impersonation needs the opposite — only the calling thread may become the peer — so this
//! module calls the kernel directly, which changes the calling task and nothing else:
//! through rustix where it has a safe wrapper (`setgroups` and `getgroups` of this thread,
//! `capget`, the effective ids, the securebits), and with `libc::syscall` for
//! `setfsuid`/`setfsgid`, which rustix does not offer (their libc wrappers happen to be
//! per-thread already, but the raw call keeps their behaviour independent of the C library).
//!
//! It also holds the NSS lookups (`getpwnam_r`, `getgrouplist`: C library calls, which no
//! safe wrapper in the tree makes) that turn an account name into ids, and the one socket
//! option neither std, socket2 nor rustix offers (`SO_RCVLOWAT`).
//!
//! What it is not for: deciding anything. Which identity to switch to, in which order, and
//! how to undo it is [`crate::impersonate`]'s business; these functions only make one call
//! each and turn the kernel's answer into an `io::Result`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::ptr;

use libc::{c_int, c_long, gid_t};
use rustix::process::Gid;

/// Syscall numbers. On 32-bit x86, ARM and SPARC the plain `setfsuid`/`getgroups`/... calls
/// take 16-bit ids; their 32-bit forms are the `*32` calls. Everywhere else the plain calls
/// take 32-bit ids. (On any other architecture with 16-bit legacy calls, a truncated id
/// would not read back equal, so `set_thread_fs*` would fail closed rather than switch.)
#[cfg(any(target_arch = "x86", target_arch = "arm", target_arch = "sparc"))]
mod nr {
    pub(super) const SETFSUID: libc::c_long = libc::SYS_setfsuid32;
    pub(super) const SETFSGID: libc::c_long = libc::SYS_setfsgid32;
}
#[cfg(not(any(target_arch = "x86", target_arch = "arm", target_arch = "sparc")))]
mod nr {
    pub(super) const SETFSUID: libc::c_long = libc::SYS_setfsuid;
    pub(super) const SETFSGID: libc::c_long = libc::SYS_setfsgid;
}

/// The kernel's limit on supplementary groups (`NGROUPS_MAX` since Linux 2.6.4).
const MAX_GROUPS: usize = 65536;

/// `(uid_t)-1`: for `setfsuid`/`setfsgid` it means "change nothing, tell me the current
/// value", so it can never be an id to switch to.
const NO_ID: u32 = u32::MAX;

/// Capability numbers (`linux/capability.h`).
pub(crate) const CAP_SETGID: u32 = 6;
/// See [`CAP_SETGID`].
pub(crate) const CAP_SETUID: u32 = 7;

/// The capabilities that exempt a thread from file access checks: exactly those the
/// kernel clears from the effective set when the file-system uid changes from 0 to
/// another id (`capabilities(7)`, "Effect of user ID changes on capabilities").
pub(crate) const FILE_SYSTEM_CAPABILITIES: [(u32, &str); 8] = [
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (2, "CAP_DAC_READ_SEARCH"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (9, "CAP_LINUX_IMMUTABLE"),
    (27, "CAP_MKNOD"),
    (32, "CAP_MAC_OVERRIDE"),
];

/// The calling thread's file-system uid (the uid the kernel checks file access against).
pub(crate) fn thread_fsuid() -> u32 {
    // SAFETY: setfsuid takes one integer and touches no memory of ours. With the invalid
    // id -1 it changes nothing and returns the current fsuid; it cannot fail.
    let current = unsafe { libc::syscall(nr::SETFSUID, NO_ID as c_long) };
    current as u32
}

/// The calling thread's file-system gid.
pub(crate) fn thread_fsgid() -> u32 {
    // SAFETY: as in `thread_fsuid`: one integer argument, no memory, -1 changes nothing.
    let current = unsafe { libc::syscall(nr::SETFSGID, NO_ID as c_long) };
    current as u32
}

/// Sets the calling thread's file-system uid, and only this thread's.
///
/// `setfsuid` never reports an error: it returns the previous value whether or not it
/// changed anything. So the new value is read back, and an unchanged one is an error.
pub(crate) fn set_thread_fsuid(uid: u32) -> io::Result<()> {
    if uid == NO_ID {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "4294967295 ((uid_t)-1) is not a user id",
        ));
    }
    // SAFETY: one integer argument, no memory; the return value (the previous fsuid) is
    // deliberately unused because it says nothing about success.
    unsafe { libc::syscall(nr::SETFSUID, uid as c_long) };
    let now = thread_fsuid();
    if now == uid {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the kernel kept the thread's file-system uid at {now} instead of {uid}: \
                 switching it needs CAP_SETUID (and the uid must be mapped in this user namespace)"
            ),
        ))
    }
}

/// Sets the calling thread's file-system gid, and only this thread's (read back, as
/// [`set_thread_fsuid`]).
pub(crate) fn set_thread_fsgid(gid: u32) -> io::Result<()> {
    if gid == NO_ID {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "4294967295 ((gid_t)-1) is not a group id",
        ));
    }
    // SAFETY: one integer argument, no memory; the return value is the previous fsgid.
    unsafe { libc::syscall(nr::SETFSGID, gid as c_long) };
    let now = thread_fsgid();
    if now == gid {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the kernel kept the thread's file-system gid at {now} instead of {gid}: \
                 switching it needs CAP_SETGID (and the gid must be mapped in this user namespace)"
            ),
        ))
    }
}

/// The calling thread's supplementary groups (rustix asks the kernel directly: the
/// `getgroups` syscall answers for the calling thread).
pub(crate) fn thread_groups() -> io::Result<Vec<u32>> {
    // Another thread's glibc `setgroups` may change ours (the setxid broadcast) between
    // asking for the count and reading the list; the kernel then says EINVAL and we ask
    // again. A few rounds are plenty.
    for _ in 0..8 {
        match rustix::process::getgroups() {
            Ok(groups) => return Ok(groups.into_iter().map(Gid::as_raw).collect()),
            Err(rustix::io::Errno::INVAL) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(io::Error::other(
        "the thread's supplementary groups kept changing while they were read",
    ))
}

/// Sets the calling thread's supplementary groups, and only this thread's.
pub(crate) fn set_thread_groups(groups: &[u32]) -> io::Result<()> {
    if groups.len() > MAX_GROUPS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} supplementary groups is more than the kernel's limit of {MAX_GROUPS}",
                groups.len()
            ),
        ));
    }
    // rustix's `set_thread_groups` is the raw `setgroups` syscall: this thread only, not
    // glibc's process-wide broadcast.
    let groups: Vec<Gid> = groups
        .iter()
        .map(|&gid| Gid::from_raw_unchecked(gid))
        .collect();
    rustix::thread::set_thread_groups(&groups)?;
    Ok(())
}

/// The calling thread's effective capability set, bit `n` for capability `n`.
///
/// Asked of the kernel with `capget` (through rustix) rather than read from
/// `/proc/thread-self/status`, so that it works where `/proc` is not mounted (chroots,
/// minimal containers).
pub(crate) fn thread_effective_capabilities() -> io::Result<u64> {
    let sets = rustix::thread::capabilities(None)?;
    Ok(sets.effective.bits())
}

/// The calling thread's effective uid and gid (per thread in the kernel, like the
/// file-system ids; rustix asks the kernel directly).
pub(crate) fn thread_effective_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// Whether the calling thread has `SECBIT_NO_SETUID_FIXUP` in its securebits (the
/// kernel then keeps capabilities when the thread's uids change).
pub(crate) fn thread_has_no_setuid_fixup() -> io::Result<bool> {
    use rustix::thread::{capabilities_secure_bits, CapabilitiesSecureBits};
    let bits = capabilities_secure_bits()?;
    Ok(bits.contains(CapabilitiesSecureBits::NO_SETUID_FIXUP))
}

/// A user account as the name service (NSS: files, LDAP, SSSD, systemd, ...) knows it.
#[derive(Debug)]
pub(crate) struct PasswdEntry {
    /// The account's name as NSS spells it (may differ in case from the name asked for).
    pub(crate) name: CString,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// `getpwnam_r`: the account called `name`, `None` when there is none.
pub(crate) fn lookup_user(name: &CStr) -> io::Result<Option<PasswdEntry>> {
    const MAX_BUFFER: usize = 1 << 20;
    let mut buffer_len = 1024;
    loop {
        let mut buffer: Vec<libc::c_char> = vec![0; buffer_len];
        let mut entry = MaybeUninit::<libc::passwd>::uninit();
        let mut result: *mut libc::passwd = ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `entry` is room for one passwd; `buffer` has
        // `buffer.len()` writable bytes, and that is the length we pass; `result` is a valid
        // out-pointer. getpwnam_r is thread-safe and keeps no pointer after returning.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                entry.as_mut_ptr(),
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buffer_len < MAX_BUFFER {
            buffer_len *= 2;
            continue;
        }
        if rc == libc::ENOENT || rc == libc::ESRCH || (rc == 0 && result.is_null()) {
            // getpwnam_r(3): 0 with a null result, ENOENT or ESRCH all mean "no such name".
            return Ok(None);
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: rc == 0 and a non-null result mean getpwnam_r filled `entry` (result
        // points to it), and its string fields point into `buffer`, still alive here.
        // pw_name is a NUL-terminated string; we copy it before `buffer` is dropped.
        let found = unsafe {
            let entry = &*result;
            PasswdEntry {
                name: CStr::from_ptr(entry.pw_name).to_owned(),
                uid: entry.pw_uid,
                gid: entry.pw_gid,
            }
        };
        return Ok(Some(found));
    }
}

/// `getgrouplist`: every group the account `name` belongs to, its primary group `gid`
/// included (first), through NSS.
pub(crate) fn group_list(name: &CStr, gid: u32) -> io::Result<Vec<u32>> {
    let mut capacity: usize = 32;
    loop {
        let mut groups: Vec<gid_t> = vec![0; capacity];
        let mut count = capacity as c_int;
        // SAFETY: `name` is NUL-terminated; `groups` has room for `count` gid_t values,
        // and `count` says exactly that; getgrouplist writes at most `count` entries and
        // stores the number it found (or needs) in `count`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate((count.max(0) as usize).min(capacity));
            return Ok(groups);
        }
        // -1: the list did not fit; glibc has put the size it needs in `count`.
        if capacity >= MAX_GROUPS {
            return Err(io::Error::other(format!(
                "the account belongs to more than {MAX_GROUPS} groups"
            )));
        }
        capacity = (count.max(0) as usize).max(capacity * 2).min(MAX_GROUPS);
    }
}

/// Sets `SO_RCVLOWAT` on a socket: a blocking receive, a peek included, then waits until at
/// least `bytes` bytes are available (or its timeout passes, or the peer closes), and
/// `poll` reports the socket readable only then. Neither std nor socket2 offers it; a
/// listener uses it to wait for *more* of a ClientHello than it already peeked at, instead
/// of peeking again and again at the same bytes.
pub(crate) fn set_receive_low_water_mark(
    socket: std::os::fd::BorrowedFd<'_>,
    bytes: usize,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = c_int::try_from(bytes).unwrap_or(c_int::MAX).max(1);
    // SAFETY: `socket` is a valid open descriptor for the duration of the call (it is
    // borrowed); the option value is a c_int on our stack, passed with its exact size; the
    // kernel only reads it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line of /proc/thread-self/status, split into fields after the key.
    fn status_fields(key: &str) -> Vec<u32> {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key}: line"));
        line.split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect()
    }

    /// The 4th field of `Uid:`/`Gid:` is the file-system id.
    fn proc_fsuid() -> u32 {
        status_fields("Uid")[3]
    }

    fn proc_fsgid() -> u32 {
        status_fields("Gid")[3]
    }

    fn proc_groups() -> Vec<u32> {
        status_fields("Groups")
    }

    fn is_root() -> bool {
        status_fields("Uid")[1] == 0
    }

    /// Runs `f` on a fresh thread, so that a failed assertion cannot leave a test
    /// harness thread with a foreign identity.
    fn on_own_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn impersonate_sys_thread_fsuid_and_fsgid_read_without_changing() {
        on_own_thread(|| {
            assert_eq!(thread_fsuid(), proc_fsuid());
            assert_eq!(thread_fsuid(), proc_fsuid(), "reading changed nothing");
            assert_eq!(thread_fsgid(), proc_fsgid());
            assert_eq!(thread_fsgid(), proc_fsgid());
        });
    }

    #[test]
    fn impersonate_sys_set_thread_fsuid_switches_this_thread_only() {
        assert!(is_root(), "these tests run as root");
        on_own_thread(|| {
            let before = thread_fsuid();
            set_thread_fsuid(54321).unwrap();
            assert_eq!(proc_fsuid(), 54321);
            assert_eq!(status_fields("Uid")[1], 0, "the effective uid is untouched");
            // /proc/PID/status describes the process's main thread, which this is not.
            let main_status =
                std::fs::read_to_string(format!("/proc/{}/status", std::process::id())).unwrap();
            let main_fsuid: u32 = main_status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .unwrap()
                .split_whitespace()
                .nth(3)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(main_fsuid, before, "the main thread keeps its fsuid");
            set_thread_fsuid(before).unwrap();
            assert_eq!(proc_fsuid(), before);
        });
    }

    #[test]
    fn impersonate_sys_set_thread_fsgid_switches_and_restores() {
        assert!(is_root(), "these tests run as root");
        on_own_thread(|| {
            let before = thread_fsgid();
            set_thread_fsgid(54322).unwrap();
            assert_eq!(proc_fsgid(), 54322);
            assert_eq!(status_fields("Gid")[1], 0, "the effective gid is untouched");
            set_thread_fsgid(before).unwrap();
            assert_eq!(proc_fsgid(), before);
        });
    }

    #[test]
    fn impersonate_sys_minus_one_is_not_an_id() {
        on_own_thread(|| {
            let uid = thread_fsuid();
            let gid = thread_fsgid();
            let e = set_thread_fsuid(u32::MAX).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            let e = set_thread_fsgid(u32::MAX).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert_eq!((thread_fsuid(), thread_fsgid()), (uid, gid));
        });
    }

    #[test]
    fn impersonate_sys_thread_groups_reads_this_threads_groups() {
        on_own_thread(|| {
            let mut groups = thread_groups().unwrap();
            groups.sort_unstable();
            let mut expected = proc_groups();
            expected.sort_unstable();
            assert_eq!(groups, expected);
        });
    }

    #[test]
    fn impersonate_sys_set_thread_groups_switches_and_restores() {
        assert!(is_root(), "these tests run as root");
        on_own_thread(|| {
            let before = thread_groups().unwrap();
            set_thread_groups(&[54323, 54324]).unwrap();
            assert_eq!(proc_groups(), vec![54323, 54324]);
            assert_eq!(thread_groups().unwrap(), vec![54323, 54324]);
            set_thread_groups(&[]).unwrap();
            assert_eq!(proc_groups(), Vec::<u32>::new());
            set_thread_groups(&before).unwrap();
            let mut now = proc_groups();
            now.sort_unstable();
            let mut expected = before.clone();
            expected.sort_unstable();
            assert_eq!(now, expected);
        });
    }

    #[test]
    fn impersonate_sys_set_thread_groups_refuses_too_many() {
        on_own_thread(|| {
            let too_many = vec![1u32; MAX_GROUPS + 1];
            let e = set_thread_groups(&too_many).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        });
    }

    #[test]
    fn impersonate_sys_effective_capabilities_match_proc() {
        on_own_thread(|| {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .unwrap()
                .trim();
            let expected = u64::from_str_radix(hex, 16).unwrap();
            assert_eq!(thread_effective_capabilities().unwrap(), expected);
        });
    }

    #[test]
    fn impersonate_sys_file_system_capabilities_are_what_the_kernel_clears() {
        assert!(is_root(), "these tests run as root");
        on_own_thread(|| {
            let before = thread_effective_capabilities().unwrap();
            set_thread_fsuid(54326).unwrap();
            let during = thread_effective_capabilities().unwrap();
            set_thread_fsuid(0).unwrap();
            assert_eq!(thread_effective_capabilities().unwrap(), before);
            let cleared = before & !during;
            let listed = FILE_SYSTEM_CAPABILITIES
                .iter()
                .fold(0u64, |mask, &(cap, _)| mask | 1 << cap);
            assert_eq!(cleared, listed, "cleared {cleared:#x}, listed {listed:#x}");
        });
    }

    #[test]
    fn impersonate_sys_effective_ids_and_securebits_match_proc() {
        on_own_thread(|| {
            let (euid, egid) = thread_effective_ids();
            assert_eq!(
                (euid, egid),
                (status_fields("Uid")[1], status_fields("Gid")[1])
            );
            assert!(!thread_has_no_setuid_fixup().unwrap());
            use rustix::thread::{set_capabilities_secure_bits, CapabilitiesSecureBits};
            set_capabilities_secure_bits(CapabilitiesSecureBits::NO_SETUID_FIXUP).unwrap();
            assert!(thread_has_no_setuid_fixup().unwrap());
            // The thread ends here, and its securebits with it.
        });
        assert!(!thread_has_no_setuid_fixup().unwrap(), "per thread");
    }

    #[test]
    fn impersonate_sys_lookup_user_finds_root_and_not_a_stranger() {
        let root = lookup_user(c"root").unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.name.as_c_str(), c"root");
        assert!(lookup_user(c"secsock-no-such-user-x9").unwrap().is_none());
    }

    #[test]
    fn impersonate_sys_group_list_starts_with_the_primary_group() {
        let groups = group_list(c"root", 0).unwrap();
        assert_eq!(groups.first(), Some(&0));
        // A primary group the account does not otherwise have is still listed.
        let groups = group_list(c"root", 54325).unwrap();
        assert!(groups.contains(&54325));
    }

    #[test]
    fn receive_low_water_mark_makes_a_peek_wait_for_more_bytes() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"abc").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.peek(&mut buf).unwrap(), 3);
        set_receive_low_water_mark(server.as_fd(), 5).unwrap();
        // Fewer than five bytes: the peek waits for its timeout and gives what is there.
        let started = std::time::Instant::now();
        let partial = server.peek(&mut buf);
        assert!(started.elapsed() >= std::time::Duration::from_millis(150));
        assert!(matches!(partial, Ok(3) | Err(_)), "{partial:?}");
        // Once five are there, it returns at once with all of them.
        client.write_all(b"de").unwrap();
        assert_eq!(server.peek(&mut buf).unwrap(), 5);
        set_receive_low_water_mark(server.as_fd(), 1).unwrap();
        let not_a_socket = std::fs::File::open("/dev/null").unwrap();
        assert!(set_receive_low_water_mark(not_a_socket.as_fd(), 1).is_err());
    }
}
