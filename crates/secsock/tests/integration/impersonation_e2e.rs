//! Impersonating a connection's peer end to end (SPEC §8): a secsock server thread calls
//! `impersonate_peer()` on a stream whose client proved a user (password or user
//! certificate) or only its machine, and then touches files as the local account the
//! policy's `[[accounts]]` map that identity to.
//!
//! These tests run as root: each creates its own local users (`sstest_PID_N`) and
//! removes them when it ends. The thread's identity is read from
//! `/proc/thread-self/status`, file owners from the file system. Run them alone with
//! `cargo test -p secsock --all-features --test integration impersonation_e2e::`.

use crate::support;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use secsock::impersonate::{is_impersonating, ImpersonationError};
use secsock::{InfoFlags, Platform, SecurityInfo, SecuritySettings};
use support::enforcement_fixtures::{serve_listener, target, ListenerServer};
use support::local_accounts::*;
use support::user_fixtures::*;
use support::*;
use tempfile::TempDir;

const ROOT: (u32, u32) = (0, 0);

/// Why these tests need root, for [`require_root`]'s message when they skip.
const NEEDS_ROOT: &str = "it creates local users and impersonates them";

/// A directory every account may write to (mode 1777), holding a file only root may
/// read.
struct Scratch {
    dir: TempDir,
    secret: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let secret = dir.path().join("root-only");
    write_private(&secret, "root's secret");
    Scratch { dir, secret }
}

/// What the server's thread saw while serving one connection.
#[derive(Debug)]
struct Served {
    info: SecurityInfo,
    before: (u32, u32),
    outcome: Result<Impersonated, Refused>,
}

/// A successful impersonation: the thread's ids during and after, and what file access
/// did meanwhile.
#[derive(Debug)]
struct Impersonated {
    during: (u32, u32),
    after: (u32, u32),
    /// Owner (uid, gid) of a file the thread created while impersonating.
    created_during: io::Result<(u32, u32)>,
    /// Reading the root-only file while impersonating.
    secret_during: io::Result<Vec<u8>>,
    /// Owner of a file the thread created after the guard was dropped.
    created_after: io::Result<(u32, u32)>,
}

/// A refused impersonation: the error, and the thread's ids afterwards.
#[derive(Debug)]
struct Refused {
    error: ImpersonationError,
    after: (u32, u32),
    still_impersonating: bool,
}

/// A secured server whose handler impersonates each peer, works in `scratch`, and
/// reports. While it impersonates it pauses until the test says go on (so that the test
/// thread can look at its own identity meanwhile).
struct ImpersonatingServer {
    server: ListenerServer,
    served: mpsc::Receiver<Served>,
    /// Whether the handler is impersonating (and waiting for `go_on`).
    holding: mpsc::Receiver<bool>,
    go_on: mpsc::Sender<()>,
}

fn impersonating_server(platform: Arc<Platform>, scratch: &Scratch) -> ImpersonatingServer {
    let (served_tx, served) = mpsc::channel();
    let (holding_tx, holding) = mpsc::channel();
    let (go_on, go_on_rx) = mpsc::channel::<()>();
    let go_on_rx = Mutex::new(go_on_rx);
    let dir = scratch.dir.path().to_path_buf();
    let secret = scratch.secret.clone();
    let files = AtomicUsize::new(0);
    let server = serve_listener(listen(platform, &SecuritySettings::new()), move |stream| {
        let n = files.fetch_add(1, Ordering::SeqCst);
        let owner = |path: PathBuf| -> io::Result<(u32, u32)> {
            fs::write(&path, b"x")?;
            let meta = fs::metadata(&path)?;
            Ok((meta.uid(), meta.gid()))
        };
        let before = thread_fs_ids();
        let outcome = match stream.impersonate_peer() {
            Err(error) => {
                let _ = holding_tx.send(false);
                Err(Refused {
                    error,
                    after: thread_fs_ids(),
                    still_impersonating: is_impersonating(),
                })
            }
            Ok(guard) => {
                let during = thread_fs_ids();
                let created_during = owner(dir.join(format!("during-{n}")));
                let secret_during = fs::read(&secret);
                let _ = holding_tx.send(true);
                let _ = go_on_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(20));
                drop(guard);
                Ok(Impersonated {
                    during,
                    after: thread_fs_ids(),
                    created_during,
                    secret_during,
                    created_after: owner(dir.join(format!("after-{n}"))),
                })
            }
        };
        let _ = served_tx.send(Served {
            info: stream.query_security(),
            before,
            outcome,
        });
        let _ = stream.close();
    });
    ImpersonatingServer {
        server,
        served,
        holding,
        go_on,
    }
}

impl ImpersonatingServer {
    /// Connects with `settings`, lets the handler run (checking, while it impersonates,
    /// that this thread is still root), and returns what it saw.
    fn serve(&self, client: &Arc<Platform>, settings: &SecuritySettings) -> Served {
        assert_eq!(thread_fs_ids(), ROOT, "the tests run as root");
        let mut stream = connect_with(
            client,
            settings,
            target("server.example.test"),
            self.server.addr,
        )
        .unwrap_or_else(|e| panic!("connect: {e}"));
        let holding = self
            .holding
            .recv_timeout(Duration::from_secs(20))
            .expect("the handler did not run");
        if holding {
            assert_eq!(
                thread_fs_ids(),
                ROOT,
                "another thread of the process lost root's identity"
            );
            self.go_on.send(()).unwrap();
        }
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        self.served
            .recv_timeout(Duration::from_secs(20))
            .expect("the handler reported nothing")
    }
}

fn impersonated(served: Served) -> Impersonated {
    assert_eq!(served.before, ROOT);
    match served.outcome {
        Ok(done) => done,
        Err(refused) => panic!("impersonation refused: {}", refused.error),
    }
}

fn refused(served: Served) -> Refused {
    assert_eq!(served.before, ROOT);
    match served.outcome {
        Ok(done) => panic!("impersonation happened: {done:?}"),
        Err(refused) => {
            assert_eq!(
                refused.after, ROOT,
                "a refused impersonation changed the thread"
            );
            assert!(!refused.still_impersonating);
            refused
        }
    }
}

/// Asserts that the handler acted as `user` while impersonating, and as root after.
fn assert_acted_as(user: &LocalUser, done: &Impersonated) {
    assert_eq!(
        done.during,
        (user.uid, user.gid),
        "the thread's ids while impersonating"
    );
    assert_eq!(
        done.created_during.as_ref().unwrap(),
        &(user.uid, user.gid),
        "a file created while impersonating belongs to the peer's account"
    );
    assert_eq!(
        done.secret_during.as_ref().map_err(io::Error::kind),
        Err(io::ErrorKind::PermissionDenied),
        "the peer's account read a root-only file"
    );
    assert_eq!(done.after, ROOT, "the guard did not revert");
    assert_eq!(done.created_after.as_ref().unwrap(), &ROOT);
}

fn server_host(domain: &TrustDomain, policy: &str) -> Host {
    domain.host_with("server", &[San::Dns("server.example.test")], policy, |_| {})
}

fn client_platform(domain: &TrustDomain) -> Arc<Platform> {
    domain
        .host("client", &[San::Dns("client.example.test")])
        .platform()
}

fn user_rule(realm_pattern: &str) -> String {
    format!("[[accounts]]\nprincipal = \"user:*@{realm_pattern}\"\nuser = \"{{name}}\"\n")
}

fn machine_rule(principal: &str, account: &str) -> String {
    format!("[[accounts]]\nprincipal = \"{principal}\"\nuser = \"{account}\"\n")
}

#[test]
fn impersonation_acts_as_the_password_user_on_the_server_thread_only() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = scratch();
    let domain = TrustDomain::new("example.test");
    let server = server_host(
        &domain,
        &format!("{}{}", users_section("required"), user_rule("EXAMPLE.TEST")),
    );
    add_test_user(&users_file(&server), &user.name, "EXAMPLE.TEST", "pencil");
    let srv = impersonating_server(server.platform(), &scratch);

    let served = srv.serve(
        &client_platform(&domain),
        &SecuritySettings::new().user_credentials(&user.name, "EXAMPLE.TEST", "pencil"),
    );
    assert!(served.info.flags.contains(InfoFlags::IMPERSONATED));
    assert_acted_as(&user, &impersonated(served));
}

#[test]
fn impersonation_without_a_usable_mapping_fails_clearly_and_changes_nothing() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = scratch();
    let domain = TrustDomain::new("example.test");
    let client = client_platform(&domain);

    // No rule for the user's realm (nor for the machine: the user identity decides).
    let server = server_host(
        &domain,
        &format!("{}{}", users_section("required"), user_rule("OTHER.TEST")),
    );
    add_test_user(&users_file(&server), &user.name, "EXAMPLE.TEST", "pencil");
    let srv = impersonating_server(server.platform(), &scratch);
    let settings = SecuritySettings::new().user_credentials(&user.name, "EXAMPLE.TEST", "pencil");
    let no_rule = refused(srv.serve(&client, &settings));
    match &no_rule.error {
        ImpersonationError::NoMapping { principal } => {
            assert_eq!(principal, &format!("user:{}@EXAMPLE.TEST", user.name))
        }
        other => panic!("expected NoMapping, got {other:?}"),
    }
    assert!(no_rule.error.to_string().contains("[[accounts]]"));

    // A rule naming an account this machine does not have.
    let server = domain.host_with(
        "server-2",
        &[San::Dns("server.example.test")],
        &format!(
            "{}{}",
            users_section("required"),
            machine_rule("user:*@EXAMPLE.TEST", "sstest_no_such_account")
        ),
        |_| {},
    );
    add_test_user(&users_file(&server), &user.name, "EXAMPLE.TEST", "pencil");
    let srv = impersonating_server(server.platform(), &scratch);
    let missing = refused(srv.serve(&client, &settings));
    assert!(
        matches!(&missing.error, ImpersonationError::NoSuchAccount { account } if account == "sstest_no_such_account"),
        "{:?}",
        missing.error
    );

    // A user who calls itself root maps, through `{name}`, to root: never impersonated.
    let server = domain.host_with(
        "server-3",
        &[San::Dns("server.example.test")],
        &format!("{}{}", users_section("required"), user_rule("EXAMPLE.TEST")),
        |_| {},
    );
    add_test_user(&users_file(&server), "root", "EXAMPLE.TEST", "pencil");
    let srv = impersonating_server(server.platform(), &scratch);
    let root = refused(srv.serve(
        &client,
        &SecuritySettings::new().user_credentials("root", "EXAMPLE.TEST", "pencil"),
    ));
    assert!(
        matches!(&root.error, ImpersonationError::PrivilegedAccount { account } if account == "root"),
        "{:?}",
        root.error
    );
}

#[test]
fn impersonation_falls_back_to_the_machine_identity() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = scratch();
    let domain = TrustDomain::new("example.test");
    // No user authentication; the client's certificate has the DNS SAN
    // client.example.test, which its machine identity proves as `client.example.test`.
    let server = server_host(&domain, &machine_rule("client.example.test", &user.name));
    let srv = impersonating_server(server.platform(), &scratch);

    let served = srv.serve(&client_platform(&domain), &SecuritySettings::new());
    assert!(served.info.peer_application.is_none());
    assert!(!served.info.flags.contains(InfoFlags::IMPERSONATED));
    assert_acted_as(&user, &impersonated(served));
}

/// SPEC §3: a DNS name is shorthand for `host/NAME`, and the policy's own examples map
/// machines with `host/...` rules: a rule for `host/client.example.test` must match the
/// machine whose certificate proves client.example.test.
#[test]
fn impersonation_maps_a_machine_by_its_host_spn() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = scratch();
    let domain = TrustDomain::new("example.test");
    let server = server_host(
        &domain,
        &machine_rule("host/client.example.test", &user.name),
    );
    let srv = impersonating_server(server.platform(), &scratch);
    let served = srv.serve(&client_platform(&domain), &SecuritySettings::new());
    assert_acted_as(&user, &impersonated(served));
}

#[test]
fn impersonation_prefers_the_application_identity_to_the_machine() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let machine_account = LocalUser::create();
    let user = LocalUser::create();
    let scratch = scratch();
    let domain = TrustDomain::new("example.test");
    // The machine's rule comes first: were both identities offered to the rules, it
    // would win.
    let server = server_host(
        &domain,
        &format!(
            "{}{}{}",
            users_section("optional"),
            machine_rule("client.example.test", &machine_account.name),
            user_rule("EXAMPLE.TEST")
        ),
    );
    add_test_user(&users_file(&server), &user.name, "EXAMPLE.TEST", "pencil");
    let srv = impersonating_server(server.platform(), &scratch);
    let client = client_platform(&domain);

    let served = srv.serve(
        &client,
        &SecuritySettings::new().user_credentials(&user.name, "EXAMPLE.TEST", "pencil"),
    );
    assert_acted_as(&user, &impersonated(served));

    // The same client without a user: its machine.
    let served = srv.serve(&client, &SecuritySettings::new());
    assert_acted_as(&machine_account, &impersonated(served));
}

#[test]
fn impersonation_acts_as_the_user_of_a_user_certificate() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let user = LocalUser::create();
    let scratch = scratch();
    let domain = TrustDomain::new("example.test");
    let server = server_host(
        &domain,
        &format!("{}{}", users_section("required"), user_rule("EXAMPLE.TEST")),
    );
    let srv = impersonating_server(server.platform(), &scratch);
    // The email SAN's domain is lower case; the rule's realm matches it regardless.
    let email: &'static str = Box::leak(format!("{}@example.test", user.name).into_boxed_str());
    let cert = domain.user_certificate(&[San::Email(email)]);

    let served = srv.serve(
        &client_platform(&domain),
        &SecuritySettings::new().user_certificate(cert.chain.clone(), cert.key()),
    );
    assert_acted_as(&user, &impersonated(served));
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_through_the_async_api() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    use support::async_enforcement_fixtures::serve_async_listener;
    use support::async_fixtures::{connect_async_with, listen_async};
    use tokio::io::AsyncReadExt;

    let user = LocalUser::create();
    let scratch = scratch();
    let domain = TrustDomain::new("example.test");
    let server = server_host(
        &domain,
        &format!("{}{}", users_section("required"), user_rule("EXAMPLE.TEST")),
    );
    add_test_user(&users_file(&server), &user.name, "EXAMPLE.TEST", "pencil");
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let dir = scratch.dir.path().to_path_buf();
    let srv = serve_async_listener(
        listen_async(server.platform(), &SecuritySettings::new(), 16),
        move |stream| {
            // No await while the guard lives: it belongs to this thread.
            let report = match stream.impersonate_peer() {
                Ok(guard) => {
                    let path = dir.join("async");
                    let owner = fs::write(&path, b"x")
                        .and_then(|()| fs::metadata(&path))
                        .map(|m| (m.uid(), m.gid()));
                    let during = thread_fs_ids();
                    drop(guard);
                    Ok((owner.map_err(|e| e.to_string()), during, thread_fs_ids()))
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.lock().unwrap().send(report);
            async move {
                let _ = stream.close().await;
            }
        },
    );
    let mut stream = connect_async_with(
        &client_platform(&domain),
        &SecuritySettings::new().user_credentials(&user.name, "EXAMPLE.TEST", "pencil"),
        target("server.example.test"),
        srv.addr,
    )
    .await
    .unwrap();
    let _ = stream.read_to_end(&mut Vec::new()).await;
    let (owner, during, after) = tokio::task::block_in_place(|| {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the handler reported nothing")
    })
    .unwrap();
    assert_eq!(owner.unwrap(), (user.uid, user.gid));
    assert_eq!(during, (user.uid, user.gid));
    assert_eq!(after, ROOT);
}

#[test]
fn impersonation_of_a_system_account_needs_allow_system_account_in_the_policy() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    let system = LocalUser::create_with(&["--user-group", "--system"]);
    let scratch = scratch();
    let domain = TrustDomain::new("example.test");
    let client = client_platform(&domain);
    let settings = SecuritySettings::new().user_credentials(&system.name, "EXAMPLE.TEST", "pencil");

    // `{name}` maps the peer to a system account: refused, naming the policy key.
    let server = server_host(
        &domain,
        &format!("{}{}", users_section("required"), user_rule("EXAMPLE.TEST")),
    );
    add_test_user(&users_file(&server), &system.name, "EXAMPLE.TEST", "pencil");
    let srv = impersonating_server(server.platform(), &scratch);
    let system_refused = refused(srv.serve(&client, &settings));
    assert!(
        matches!(&system_refused.error, ImpersonationError::SystemAccount { account, uid, .. }
            if *account == system.name && *uid == system.uid),
        "{:?}",
        system_refused.error
    );
    assert!(system_refused
        .error
        .to_string()
        .contains("allow_system_account = true"));

    // The rule that names it with `allow_system_account = true`: impersonated.
    let server = domain.host_with(
        "server-2",
        &[San::Dns("server.example.test")],
        &format!(
            "{}[[accounts]]\nprincipal = \"user:{name}@EXAMPLE.TEST\"\nuser = \"{name}\"\nallow_system_account = true\n",
            users_section("required"),
            name = system.name
        ),
        |_| {},
    );
    add_test_user(&users_file(&server), &system.name, "EXAMPLE.TEST", "pencil");
    let srv = impersonating_server(server.platform(), &scratch);
    assert_acted_as(&system, &impersonated(srv.serve(&client, &settings)));
}

// --- the async helper `run_as_peer` (issue 12, item 13) ----------------------------------

#[cfg(feature = "tokio")]
mod run_as_peer {
    use super::*;
    use secsock::impersonate::ImpersonationGuard;
    use std::sync::atomic::AtomicBool;
    use support::async_fixtures::{connect_async_with, listen_async, AsyncStream};
    use tokio::runtime::{Builder, Runtime};

    /// A server host whose policy maps `user`'s password identity to `user`.
    fn server_for(domain: &TrustDomain, user: &LocalUser) -> Host {
        let server = server_host(
            domain,
            &format!("{}{}", users_section("required"), user_rule("EXAMPLE.TEST")),
        );
        add_test_user(&users_file(&server), &user.name, "EXAMPLE.TEST", "pencil");
        server
    }

    /// One connection from a client that proves `user`: the server's and the client's
    /// streams, made on `runtime`.
    fn accepted(runtime: &Runtime, user: &LocalUser) -> (AsyncStream, AsyncStream) {
        let domain = TrustDomain::new("example.test");
        let server = server_for(&domain, user);
        let client = client_platform(&domain);
        let name = user.name.clone();
        runtime.block_on(async move {
            let listener = listen_async(server.platform(), &SecuritySettings::new(), 4);
            let addr = listener.local_addr().unwrap();
            let settings =
                SecuritySettings::new().user_credentials(&name, "EXAMPLE.TEST", "pencil");
            let (accepted, connected) = tokio::join!(
                listener.accept(),
                connect_async_with(&client, &settings, target("server.example.test"), addr)
            );
            (accepted.unwrap(), connected.unwrap())
        })
    }

    /// A runtime with a single blocking thread, so that consecutive blocking tasks run on
    /// the same thread, counting the threads it starts.
    fn runtime_with_one_blocking_thread(started: Arc<AtomicUsize>) -> Runtime {
        Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .on_thread_start(move || {
                started.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap()
    }

    #[test]
    fn impersonation_run_as_peer_acts_as_the_peer_on_a_blocking_thread_and_reverts() {
        if !require_root(NEEDS_ROOT) {
            return;
        }
        assert_eq!(thread_fs_ids(), ROOT, "the tests run as root");
        let user = LocalUser::create();
        let scratch = scratch();
        let runtime = runtime_with_one_blocking_thread(Arc::default());
        let (server, _client) = accepted(&runtime, &user);

        let path = scratch.dir.path().join("by-run-as-peer");
        let secret = scratch.secret.clone();
        let (ids, impersonating, owner, secret_read) = runtime
            .block_on(server.run_as_peer({
                let path = path.clone();
                move || {
                    fs::write(&path, b"x").unwrap();
                    let owner = fs::metadata(&path).map(|m| (m.uid(), m.gid())).unwrap();
                    (
                        thread_fs_ids(),
                        is_impersonating(),
                        owner,
                        fs::read(&secret).map_err(|e| e.kind()),
                    )
                }
            }))
            .unwrap();
        assert_eq!(ids, (user.uid, user.gid));
        assert!(impersonating);
        assert_eq!(owner, (user.uid, user.gid));
        assert_eq!(secret_read, Err(io::ErrorKind::PermissionDenied));
        assert_eq!(
            thread_fs_ids(),
            ROOT,
            "the calling thread was never the peer"
        );
        // The blocking thread (the only one) is itself again.
        let after = runtime
            .block_on(runtime.spawn_blocking(|| (thread_fs_ids(), is_impersonating())))
            .unwrap();
        assert_eq!(after, (ROOT, false));
    }

    #[test]
    fn impersonation_run_as_peer_reverts_when_the_closure_panics_and_resumes_the_panic() {
        if !require_root(NEEDS_ROOT) {
            return;
        }
        let user = LocalUser::create();
        let runtime = runtime_with_one_blocking_thread(Arc::default());
        let (server, _client) = accepted(&runtime, &user);

        let panicked = runtime.block_on(async move {
            tokio::spawn(async move {
                server
                    .run_as_peer(|| -> () { panic!("the handler failed as the peer (expected)") })
                    .await
            })
            .await
        });
        let e = panicked.expect_err("the panic was resumed on the calling task");
        assert!(e.is_panic());
        let after = runtime
            .block_on(runtime.spawn_blocking(|| (thread_fs_ids(), is_impersonating())))
            .unwrap();
        assert_eq!(
            after,
            (ROOT, false),
            "the blocking thread reverted while unwinding"
        );
    }

    #[test]
    fn impersonation_run_as_peer_from_an_impersonating_thread_starts_no_thread() {
        if !require_root(NEEDS_ROOT) {
            return;
        }
        let user = LocalUser::create();
        let other = LocalUser::create();
        let started = Arc::new(AtomicUsize::new(0));
        // The connection is made on a runtime of its own (which starts threads of its
        // own); the helper is then called on a fresh runtime that counts its threads.
        let setup = Builder::new_multi_thread().enable_all().build().unwrap();
        let (server, _client) = accepted(&setup, &user);
        let ran = Arc::new(AtomicBool::new(false));
        let (started_in, ran_in) = (started.clone(), ran.clone());
        let other_account = other.account.clone();
        std::thread::spawn(move || {
            let runtime = runtime_with_one_blocking_thread(started_in.clone());
            let call = |server: &AsyncStream| {
                let ran = ran_in.clone();
                runtime.block_on(server.run_as_peer(move || ran.store(true, Ordering::SeqCst)))
            };

            // This thread impersonates (secsock's bookkeeping knows it).
            let guard = ImpersonationGuard::begin(&other_account).unwrap();
            let e = call(&server).expect_err("ran the helper from an impersonating thread");
            assert!(
                matches!(&e, ImpersonationError::ThreadImpersonating { fsuid, inherited: false, .. }
                    if *fsuid == other_account.uid),
                "{e:?}"
            );
            assert!(e.to_string().contains("acting as another account"), "{e}");
            assert_eq!(
                started_in.load(Ordering::SeqCst),
                0,
                "no thread was started"
            );

            // A thread started from here inherits the identity but not the bookkeeping:
            // the kernel's view refuses it too.
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let runtime = runtime_with_one_blocking_thread(started_in.clone());
                        let ran = ran_in.clone();
                        let e = runtime
                            .block_on(server.run_as_peer(move || ran.store(true, Ordering::SeqCst)))
                            .expect_err("ran the helper from a thread that inherited an identity");
                        assert!(
                            matches!(
                                &e,
                                ImpersonationError::ThreadImpersonating {
                                    inherited: true,
                                    ..
                                }
                            ),
                            "{e:?}"
                        );
                    })
                    .join()
                    .unwrap();
            });
            assert_eq!(
                started_in.load(Ordering::SeqCst),
                0,
                "no thread was started"
            );
            assert!(!ran_in.load(Ordering::SeqCst));

            // Reverted, the same call starts the blocking thread and runs.
            drop(guard);
            call(&server).unwrap();
            assert_eq!(started_in.load(Ordering::SeqCst), 1);
        })
        .join()
        .unwrap();
        assert!(ran.load(Ordering::SeqCst));
    }

    #[test]
    fn impersonation_run_as_peer_refuses_a_blocking_thread_that_inherited_an_identity() {
        if !require_root(NEEDS_ROOT) {
            return;
        }
        let user = LocalUser::create();
        let other = LocalUser::create();
        // The connection is made on a runtime of its own (its client may use blocking
        // threads of that runtime), so that the runtime under test starts its one blocking
        // thread below, from the impersonating thread.
        let setup = Builder::new_multi_thread().enable_all().build().unwrap();
        let (server, _client) = accepted(&setup, &user);
        let runtime = runtime_with_one_blocking_thread(Arc::default());

        // Misuse elsewhere: a thread that impersonates hands work to the pool, which
        // starts its (only) blocking thread from there — as `other`.
        let handle = runtime.handle().clone();
        let other_account = other.account.clone();
        let pool_ids = std::thread::spawn(move || {
            let _guard = ImpersonationGuard::begin(&other_account).unwrap();
            handle
                .block_on(handle.spawn_blocking(thread_fs_ids))
                .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(
            pool_ids,
            (other.uid, other.gid),
            "the pool thread inherited"
        );

        // The helper, called correctly, gets that thread: it refuses to work there.
        let ran = Arc::new(AtomicBool::new(false));
        let ran_in = ran.clone();
        let e = runtime
            .block_on(server.run_as_peer(move || ran_in.store(true, Ordering::SeqCst)))
            .expect_err("impersonated on a blocking thread that was someone else already");
        assert!(
            matches!(&e, ImpersonationError::ThreadImpersonating { fsuid, inherited: true, .. }
                if *fsuid == other.uid),
            "{e:?}"
        );
        assert!(!ran.load(Ordering::SeqCst));
    }
}

/// Item 13 of issue 12, for the blocking listener: `accept` runs handshakes on threads it
/// starts, so a thread that acts as a peer may not make it start them (they would run as
/// the peer and could never revert); the same listener accepts once the thread reverted.
#[test]
fn impersonation_blocks_the_first_accept_from_an_impersonating_thread() {
    if !require_root(NEEDS_ROOT) {
        return;
    }
    use secsock::impersonate::ImpersonationGuard;
    use secsock::{Error, UsageError};
    let user = LocalUser::create();
    let domain = TrustDomain::new("example.test");
    let server = domain
        .host("server", &[San::Dns("server.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let listener = listen(server, &SecuritySettings::new());
    let addr = listener.local_addr().unwrap();
    let account = user.account.clone();
    std::thread::spawn(move || {
        let guard = ImpersonationGuard::begin(&account).unwrap();
        let refused = listener.accept().expect_err("accept while impersonating");
        assert!(
            matches!(
                &refused,
                Error::Usage(UsageError::WouldSpawnImpersonated { call: "accept", .. })
            ),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("acts as a peer"), "{refused}");
        drop(guard);
        let stream = listener.accept().expect("accept after the revert");
        echo(stream);
    });
    let mut stream = connect(&client, "server.example.test", addr).unwrap();
    io::Write::write_all(&mut stream, b"ping").unwrap();
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"ping");
    stream.close().unwrap();
}
