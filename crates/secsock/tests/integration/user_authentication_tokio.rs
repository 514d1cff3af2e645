//! The user-authentication step with the async API (`secsock::tokio`): the blocking
//! tests' main scenarios — password and user certificate, failures that reveal nothing,
//! a required user, a relayed channel binding — with async peers on both sides and each
//! API against the other.
#![cfg(feature = "tokio")]

use crate::support;

use std::sync::Arc;

use secsock::{
    Error, InfoFlags, NegotiationError, PeerIdentity, Platform, PrincipalName, ProofMethod,
    SecurityInfo, SecuritySettings,
};
use support::async_enforcement_fixtures::*;
use support::async_fixtures::*;
use support::enforcement_fixtures::{target, FROM_127_0_0_1, FROM_127_0_0_2};
use support::user_fixtures::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REALM: &str = "EXAMPLE.TEST";

struct Setup {
    domain: TrustDomain,
    server: Host,
    client: Arc<Platform>,
}

/// A server whose policy has `server_policy` and a users file with alice (`pencil`), and
/// a client machine identity.
fn setup(server_policy: &str) -> Setup {
    let domain = TrustDomain::new("example.test");
    let server = domain.host_with(
        "server",
        &[San::Dns("server.example.test")],
        server_policy,
        |_| {},
    );
    add_test_user(&users_file(&server), "alice", REALM, "pencil");
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    Setup {
        domain,
        server,
        client,
    }
}

fn password(user: &str, password: &str) -> SecuritySettings {
    SecuritySettings::new().user_credentials(user, REALM, password)
}

fn async_server(platform: Arc<Platform>) -> AsyncListenerServer {
    serve_async_listener(
        listen_async(platform, &SecuritySettings::new(), 128),
        echo_async,
    )
}

async fn connect_as(
    client: &Arc<Platform>,
    settings: &SecuritySettings,
    srv: &AsyncListenerServer,
) -> Result<AsyncStream, Error> {
    connect_async_with(client, settings, target("server.example.test"), srv.addr).await
}

async fn echo_once(mut stream: AsyncStream, payload: &[u8]) {
    stream.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, payload);
    stream.close().await.unwrap();
}

fn names(identity: &PeerIdentity) -> Vec<String> {
    identity
        .names
        .iter()
        .map(PrincipalName::to_string)
        .collect()
}

fn application(info: &SecurityInfo) -> &PeerIdentity {
    info.peer_application
        .as_ref()
        .unwrap_or_else(|| panic!("no application identity: {info}"))
}

fn negotiation<T: std::fmt::Debug>(result: Result<T, Error>) -> NegotiationError {
    match result {
        Err(Error::Negotiation(e)) => e,
        other => panic!("expected a negotiation error, got {other:?}"),
    }
}

fn failure_reason(e: &NegotiationError) -> &str {
    match e {
        NegotiationError::UserAuthenticationFailed { reason } => reason,
        other => panic!("expected UserAuthenticationFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_password_authentication_proves_the_user_to_the_server() {
    let s = setup(&users_section("optional"));
    // The server's application speaks first, the moment it has the stream.
    let mut srv = serve_async_listener(
        listen_async(s.server.platform(), &SecuritySettings::new(), 128),
        |mut stream| async move {
            stream.write_all(b"220 ready\r\n").await.unwrap();
            echo_async(stream).await
        },
    );
    let mut stream = connect_as(&s.client, &password("alice", "pencil"), &srv)
        .await
        .unwrap();
    stream.write_all(b"first words").await.unwrap();
    let mut greeting = [0u8; 11];
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"220 ready\r\n");
    let mut echoed = [0u8; 11];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"first words");
    stream.close().await.unwrap();

    let info = srv.outcome().await.result.unwrap();
    assert_eq!(
        info.flags,
        InfoFlags::SECURED | InfoFlags::ENCRYPTED | InfoFlags::IMPERSONATED,
        "{info}"
    );
    let user = application(&info);
    assert_eq!(names(user), ["user:alice@EXAMPLE.TEST"]);
    assert_eq!(user.proven_by, ProofMethod::Password);
    assert_eq!((user.not_before, user.not_after), (None, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_wrong_password_and_unknown_user_fail_alike() {
    let s = setup(&users_section("optional"));
    let mut srv = async_server(s.server.platform());

    let wrong = negotiation(connect_as(&s.client, &password("alice", "pen"), &srv).await);
    let server_wrong = negotiation(srv.outcome().await.result);
    let unknown = negotiation(connect_as(&s.client, &password("mallory", "pencil"), &srv).await);
    let server_unknown = negotiation(srv.outcome().await.result);

    assert!(matches!(
        wrong,
        NegotiationError::UserAuthenticationFailed { .. }
    ));
    assert_eq!(unknown, wrong, "the client can tell the failures apart");
    assert_eq!(unknown.to_string(), wrong.to_string());
    assert!(!failure_reason(&server_wrong).is_empty());
    assert!(!failure_reason(&server_unknown).is_empty());

    echo_once(
        connect_as(&s.client, &password("alice", "pencil"), &srv)
            .await
            .unwrap(),
        b"ok",
    )
    .await;
    assert!(srv
        .outcome()
        .await
        .result
        .unwrap()
        .peer_application
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_user_certificate_proves_the_user_and_a_foreign_one_fails() {
    let s = setup(&users_section("optional"));
    let mut srv = async_server(s.server.platform());
    let cert = s
        .domain
        .user_certificate(&[San::Email("alice@example.test")]);
    let settings = SecuritySettings::new().user_certificate(cert.chain.clone(), cert.key());
    echo_once(connect_as(&s.client, &settings, &srv).await.unwrap(), b"hi").await;
    let info = srv.outcome().await.result.unwrap();
    let user = application(&info);
    assert!(names(user).contains(&"user:alice@example.test".to_string()));
    assert_eq!(user.proven_by, ProofMethod::UserCertificate);
    assert!(user.not_after.is_some());

    let foreign =
        TrustDomain::new("other.test").user_certificate(&[San::Email("alice@example.test")]);
    let settings = SecuritySettings::new().user_certificate(foreign.chain.clone(), foreign.key());
    let client = negotiation(connect_as(&s.client, &settings, &srv).await);
    let server = negotiation(srv.outcome().await.result);
    assert!(matches!(
        client,
        NegotiationError::UserAuthenticationFailed { .. }
    ));
    assert!(failure_reason(&server).contains("not trusted"), "{server}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_required_user_authentication_refuses_a_client_without_credentials() {
    let s = setup(&users_section("required"));
    let mut srv = async_server(s.server.platform());
    let client = negotiation(connect_as(&s.client, &SecuritySettings::new(), &srv).await);
    assert_eq!(client, NegotiationError::UserAuthenticationRequired);
    assert_eq!(
        negotiation(srv.outcome().await.result),
        NegotiationError::UserAuthenticationRequired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_server_refuses_a_relayed_channel_binding() {
    let s = setup(&users_section("optional"));
    let mut srv = async_server(s.server.platform());
    let attacker = s
        .domain
        .host("attacker", &[San::Dns("attacker.example.test")]);
    let relay = user_auth_relay(&attacker, srv.addr, "server.example.test");
    let victim = connect_async_with(
        &s.client,
        &password("alice", "pencil"),
        target("attacker.example.test"),
        relay.addr,
    )
    .await;
    let report = tokio::task::block_in_place(|| relay.report());
    assert_eq!(report.from_server, [CHALLENGE, FAILURE], "{report:?}");
    let server = negotiation(srv.outcome().await.result);
    assert!(
        failure_reason(&server).contains("channel binding"),
        "{server}"
    );
    assert!(matches!(
        negotiation(victim),
        NegotiationError::UserAuthenticationFailed { .. }
    ));
}

/// The async listener throttles like the blocking one, and pauses on a timer: while a
/// failure from 127.0.0.1 waits out its 8 s pause, the same one-thread runtime serves
/// alice's login from 127.0.0.2 (a pause that blocked the thread would hold it 8 s), and
/// then refuses 127.0.0.1, whose one failure is its whole budget.
#[tokio::test(flavor = "current_thread")]
async fn async_listener_pauses_on_a_timer_and_throttles_an_address() {
    let s = setup(&format!(
        "[defaults]\nhandshake_timeout = \"20s\"\n\n{}failures_per_address = 1\n\
         failure_delay = \"8s\"\nfailure_delay_max = \"8s\"\n",
        users_section("optional")
    ));
    let pause = std::time::Duration::from_secs(8);
    let guesser = s
        .domain
        .host("guesser", &[San::Dns("guesser.example.test")]);
    let mut srv = async_server(s.server.platform());
    let addr = srv.addr;
    let (responded, on_response) = tokio::sync::oneshot::channel();
    let guess = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let verdict = raw_login(&guesser, addr, "alice@EXAMPLE.TEST", "guess", || {
            responded.send(()).unwrap()
        });
        (verdict, started.elapsed())
    });
    on_response.await.unwrap();

    let started = std::time::Instant::now();
    let stream = connect_async_from(
        &s.client,
        &password("alice", "pencil"),
        target("server.example.test"),
        FROM_127_0_0_2,
        addr,
    )
    .await
    .unwrap();
    echo_once(stream, b"alice").await;
    let login = started.elapsed();
    assert!(login < pause, "the login waited for the pause: {login:?}");

    let (verdict, took) = guess.await.unwrap();
    assert_eq!(verdict, FAILURE);
    assert!(took >= pause, "the failure was answered after {took:?}");
    let throttled = negotiation(
        connect_async_from(
            &s.client,
            &password("alice", "pencil"),
            target("server.example.test"),
            FROM_127_0_0_1,
            addr,
        )
        .await,
    );
    assert!(
        matches!(
            throttled,
            NegotiationError::UserAuthenticationThrottled { .. }
        ),
        "{throttled:?}"
    );
    let mut served = 0;
    for _ in 0..3 {
        served += usize::from(srv.outcome().await.result.is_ok());
    }
    assert_eq!(served, 1, "only alice from 127.0.0.2 was served");
}

/// The blocking client against the async server, and the async client against the
/// blocking server: one protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_api_authenticates_a_user_to_the_other() {
    let s = setup(&users_section("required"));

    let mut async_srv = async_server(s.server.platform());
    let (client, addr) = (s.client.clone(), async_srv.addr);
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = connect_with(
            &client,
            &password("alice", "pencil"),
            target("server.example.test"),
            addr,
        )
        .unwrap();
        stream.write_all(b"blocking").unwrap();
        let mut back = [0u8; 8];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"blocking");
        stream.close().unwrap();
    })
    .await
    .unwrap();
    let info = async_srv.outcome().await.result.unwrap();
    assert_eq!(names(application(&info)), ["user:alice@EXAMPLE.TEST"]);

    let blocking_srv = serve(s.server.platform(), echo);
    let stream = connect_async_with(
        &s.client,
        &password("alice", "pencil"),
        target("server.example.test"),
        blocking_srv.addr,
    )
    .await
    .unwrap();
    echo_once(stream, b"async").await;
    let info = tokio::task::block_in_place(|| blocking_srv.outcome()).unwrap();
    assert_eq!(names(application(&info)), ["user:alice@EXAMPLE.TEST"]);
}

/// Issue 12, item 7: the async client ran SCRAM's PBKDF2 (600,000 iterations by default,
/// more if a server asks) inline on a runtime thread, so every other task of that thread
/// stood still meanwhile. Here a fake server challenges the client and then, until the
/// client's answer arrives, hands another task of the client's current-thread runtime one
/// tick at a time; the runtime's only blocking thread is held until that task has ticked
/// 20 times. Off the runtime thread, the derivation waits for the blocking thread, so the
/// answer comes after all 20 ticks; inline, it comes at once and the ticks wait for it.
#[test]
fn the_clients_key_derivation_leaves_the_runtime_free() {
    use std::sync::mpsc;
    const TICKS: usize = 20;
    let s = setup("");
    let fake = s.domain.host("fake", &[San::Dns("server.example.test")]);
    let (tick, mut on_tick) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (ticked, on_ticked) = mpsc::channel::<()>();
    let (answered, on_answer) = mpsc::channel::<usize>();
    let addr = raw_user_auth_server(&fake, move |tls| {
        challenge_with(tls, 4096);
        let mut ticks = 0;
        loop {
            tls.sock.set_nonblocking(true).unwrap();
            let answer_arrived = matches!(tls.sock.peek(&mut [0u8; 1]), Ok(n) if n > 0);
            tls.sock.set_nonblocking(false).unwrap();
            // Every tick is acknowledged before the next is offered, and none is offered
            // once the answer is here: `ticks` is exact, whatever the threads' timing.
            if answer_arrived || tick.send(()).is_err() || on_ticked.recv().is_err() {
                break;
            }
            ticks += 1;
        }
        let (kind, _) = read_user_frame(tls).unwrap();
        assert_eq!(kind, RESPONSE);
        answered.send(ticks).unwrap();
        let _ = write_user_frame(tls, FAILURE, b"user authentication failed");
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let client = s.client.clone();
    runtime.block_on(async move {
        let (release, held) = mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || held.recv());
        let ticker = tokio::spawn(async move {
            for _ in 0..TICKS {
                // None: the fake server has its answer and offers no more ticks.
                if on_tick.recv().await.is_none() || ticked.send(()).is_err() {
                    break;
                }
                // Back to the scheduler, which polls the sockets before running it again:
                // a client task with its challenge in hand gets its turn between ticks.
                tokio::task::yield_now().await;
            }
            drop((on_tick, ticked));
            release.send(()).unwrap();
        });
        let result = connect_async_with(
            &client,
            &password("alice", "pencil"),
            target("server.example.test"),
            addr,
        )
        .await;
        assert!(
            matches!(
                negotiation(result),
                NegotiationError::UserAuthenticationFailed { .. }
            ),
            "the fake server refuses every proof"
        );
        ticker.await.unwrap();
        blocker.await.unwrap().unwrap();
    });
    assert_eq!(
        on_answer.recv().unwrap(),
        TICKS,
        "the client answered the challenge while the other task was starved"
    );
}
