//! The user-authentication step (SPEC §2, §6): after the TLS handshake a client proves who
//! runs the application — a password (SCRAM-SHA-256-PLUS) or a user certificate — bound
//! to the TLS connection, before any application byte. Real secsock peers, real OpenSSL
//! peers and a rustls attacker in the middle, over TCP on loopback.

use crate::support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use secsock::scram::{Client as ScramClient, DEFAULT_ITERATIONS};
use secsock::{
    Error, InfoFlags, NegotiationError, PeerIdentity, Platform, PrincipalName, ProofMethod,
    SecureStream, SecurityInfo, SecuritySettings,
};
use support::enforcement_fixtures::{
    connect_from, serve_listener, target, ListenerServer, FROM_127_0_0_1, FROM_127_0_0_2,
};
use support::user_fixtures::*;
use support::*;

const REALM: &str = "EXAMPLE.TEST";

/// A trust domain with a server whose policy has `server_policy` and a users file with
/// alice (password `pencil`), and a client machine identity.
struct Setup {
    domain: TrustDomain,
    server: Host,
    client: Arc<Platform>,
    client_host: Host,
}

fn setup(server_policy: &str) -> Setup {
    let domain = TrustDomain::new("example.test");
    let server = domain.host_with(
        "server",
        &[San::Dns("server.example.test")],
        server_policy,
        |_| {},
    );
    add_test_user(&users_file(&server), "alice", REALM, "pencil");
    let client_host = domain.host("client", &[San::Dns("client.example.test")]);
    Setup {
        client: client_host.platform(),
        client_host,
        server,
        domain,
    }
}

fn password(user: &str, password: &str) -> SecuritySettings {
    SecuritySettings::new().user_credentials(user, REALM, password)
}

fn alice() -> SecuritySettings {
    password("alice", "pencil")
}

/// A secured server (typed outcomes) with `platform`, serving with `handler`.
fn server_with(
    platform: Arc<Platform>,
    handler: impl Fn(SecureStream) + Send + Sync + 'static,
) -> ListenerServer {
    serve_listener(listen(platform, &SecuritySettings::new()), handler)
}

fn connect_as(
    client: &Arc<Platform>,
    settings: &SecuritySettings,
    addr: SocketAddr,
) -> Result<SecureStream, Error> {
    connect_with(client, settings, target("server.example.test"), addr)
}

/// One echo exchange over `stream`, then a clean close.
fn echo_once(mut stream: SecureStream, payload: &[u8]) {
    stream.write_all(payload).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(back, payload);
    stream.close().unwrap();
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

/// The server's outcome for the last connection, expected to be a success.
fn served(server: &ListenerServer) -> SecurityInfo {
    match server.outcome().result {
        Ok(info) => info,
        Err(e) => panic!("the server refused the connection: {e}"),
    }
}

/// The server's outcome for the last connection, expected to be a refusal.
fn refused(server: &ListenerServer) -> NegotiationError {
    match server.outcome().result {
        Ok(info) => panic!("the server served the connection: {info}"),
        Err(Error::Negotiation(e)) => e,
        Err(e) => panic!("not a negotiation error: {e:?}"),
    }
}

fn client_refusal(result: Result<SecureStream, Error>) -> NegotiationError {
    match result {
        Ok(stream) => panic!("the client got a stream: {}", stream.query_security()),
        Err(Error::Negotiation(e)) => e,
        Err(e) => panic!("not a negotiation error: {e:?}"),
    }
}

/// The server-side reason of a failed user authentication.
fn failure_reason(e: &NegotiationError) -> &str {
    match e {
        NegotiationError::UserAuthenticationFailed { reason } => reason,
        other => panic!("expected UserAuthenticationFailed, got {other:?}"),
    }
}

/// A handler that counts its calls (each is a stream the application got) and echoes.
fn counting_echo() -> (
    Arc<AtomicUsize>,
    impl Fn(SecureStream) + Send + Sync + 'static,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    (count, move |stream| {
        seen.fetch_add(1, Ordering::SeqCst);
        echo(stream)
    })
}

// ---------------------------------------------------------------------------------------
// Password

#[test]
fn password_authentication_proves_the_user_to_the_server() {
    let s = setup(&users_section("optional"));
    // The server's application speaks first, the moment it gets the stream; then echoes.
    let srv = server_with(s.server.platform(), |mut stream| {
        stream.write_all(b"220 ready\r\n").unwrap();
        echo(stream)
    });

    let mut stream = connect_as(&s.client, &alice(), srv.addr).unwrap();
    // The client's application writes the moment it gets the stream.
    stream.write_all(b"first words").unwrap();
    let mut greeting = [0u8; 11];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(
        &greeting, b"220 ready\r\n",
        "the server's first bytes arrive intact"
    );
    let mut echoed = [0u8; 11];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(
        &echoed, b"first words",
        "the client's first bytes arrive intact"
    );

    let info = srv.outcome().result.unwrap();
    assert_eq!(
        info.flags,
        InfoFlags::SECURED | InfoFlags::ENCRYPTED | InfoFlags::IMPERSONATED,
        "{info}"
    );
    let user = application(&info);
    assert_eq!(names(user), ["user:alice@EXAMPLE.TEST"]);
    assert_eq!(user.proven_by, ProofMethod::Password);
    assert!(user.chain.is_empty(), "a password has no certificate");
    assert_eq!((user.not_before, user.not_after), (None, None));
    let machine = info.peer_machine.as_ref().unwrap();
    assert_eq!(names(machine), ["client.example.test"]);
    assert_eq!(machine.proven_by, ProofMethod::Certificate);
    assert_eq!(info.alpn.as_deref(), Some(USER_ALPN));

    // The client's view: the server is a machine, not a user.
    let mine = stream.query_security();
    assert_eq!(
        mine.flags,
        InfoFlags::SECURED | InfoFlags::ENCRYPTED,
        "{mine}"
    );
    assert!(mine.peer_application.is_none());

    // Bulk data both ways after the exchange.
    let data = pattern(64 * 1024, 7);
    stream.write_all(&data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), data.len());
    assert_eq!(checksum(&back), checksum(&data));
    stream.close().unwrap();
}

#[test]
fn a_wrong_password_and_an_unknown_user_fail_alike_before_any_application_byte() {
    let s = setup(&users_section("optional"));
    add_test_user(&users_file(&s.server), "bob", REALM, "correct horse");
    let (handled, handler) = counting_echo();
    let srv = server_with(s.server.platform(), handler);

    let wrong_password = client_refusal(connect_as(&s.client, &password("alice", "pen"), srv.addr));
    let server_wrong_password = refused(&srv);
    let unknown_user = client_refusal(connect_as(
        &s.client,
        &password("mallory", "pencil"),
        srv.addr,
    ));
    let server_unknown_user = refused(&srv);
    // Another user's password.
    let crossed = client_refusal(connect_as(
        &s.client,
        &password("alice", "correct horse"),
        srv.addr,
    ));
    refused(&srv);
    // The right name and password in another realm.
    let other_realm = client_refusal(connect_with(
        &s.client,
        &SecuritySettings::new().user_credentials("alice", "OTHER.TEST", "pencil"),
        target("server.example.test"),
        srv.addr,
    ));
    refused(&srv);

    // The client learns that it failed, and nothing about why.
    assert!(
        matches!(
            wrong_password,
            NegotiationError::UserAuthenticationFailed { .. }
        ),
        "{wrong_password:?}"
    );
    for other in [&unknown_user, &crossed, &other_realm] {
        assert_eq!(
            other, &wrong_password,
            "the client can tell the failures apart"
        );
        assert_eq!(other.to_string(), wrong_password.to_string());
    }
    // The server has a reason for its log, on both.
    assert!(!failure_reason(&server_wrong_password).is_empty());
    assert!(!failure_reason(&server_unknown_user).is_empty());

    assert_eq!(
        handled.load(Ordering::SeqCst),
        0,
        "the server's application got a stream for a failed user"
    );
    // The right password still works on the same server.
    echo_once(connect_as(&s.client, &alice(), srv.addr).unwrap(), b"ok");
    assert_eq!(
        names(application(&served(&srv))),
        ["user:alice@EXAMPLE.TEST"]
    );
}

/// The server-first message a raw client gets for `user` on a fresh connection:
/// (salt, iterations).
fn challenge_for(client: &Host, addr: SocketAddr, user: &str) -> (String, String) {
    let mut tls = raw_tls_client(client, "server.example.test", addr, &[USER_ALPN]).unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(USER_ALPN));
    let binding = channel_binding(&tls.conn);
    let random = |buf: &mut [u8]| buf.copy_from_slice(&pattern(buf.len(), 99));
    let scram = ScramClient::new(user, "any password", &binding, &random).unwrap();
    let hello = hello_payload("SCRAM-SHA-256-PLUS", scram.client_first().as_bytes());
    write_user_frame(&mut tls, HELLO, &hello).unwrap();
    let (kind, payload) = read_user_frame(&mut tls).unwrap();
    assert_eq!(kind, CHALLENGE, "{}", String::from_utf8_lossy(&payload));
    let text = String::from_utf8(payload).unwrap();
    let field = |key: &str| {
        text.split(',')
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_string()
    };
    (field("s="), field("i="))
}

#[test]
fn an_unknown_users_challenge_looks_like_a_real_one_and_stays_the_same() {
    let s = setup(&users_section("optional"));
    let srv = server_with(s.server.platform(), echo);

    let (alice_salt, _) = challenge_for(&s.client_host, srv.addr, "alice@EXAMPLE.TEST");
    refused(&srv);
    let (salt, iterations) = challenge_for(&s.client_host, srv.addr, "mallory@EXAMPLE.TEST");
    refused(&srv);
    assert_eq!(
        iterations,
        DEFAULT_ITERATIONS.to_string(),
        "the iteration count `secsock user add` gives real users"
    );
    assert_eq!(
        salt.len(),
        alice_salt.len(),
        "same salt length as real users"
    );
    assert_ne!(salt, alice_salt);
    let (again, _) = challenge_for(&s.client_host, srv.addr, "mallory@EXAMPLE.TEST");
    refused(&srv);
    assert_eq!(
        again, salt,
        "an unknown user's salt changes from one try to the next"
    );

    // Nor across a restart of the server (a new platform from the same policy).
    let restarted = server_with(s.server.platform(), echo);
    let (after_restart, _) = challenge_for(&s.client_host, restarted.addr, "mallory@EXAMPLE.TEST");
    refused(&restarted);
    assert_eq!(
        after_restart, salt,
        "an unknown user's salt changed with a restart"
    );
}

/// The oracle of issue 12 (item 4): every user here has a 4,096-iteration verifier, and a
/// server that gave unknown users the count of its real ones told an attacker what the
/// real ones have; any other count than the default then marks a name as unknown.
#[test]
fn an_unknown_users_challenge_has_the_default_count_whatever_the_real_users_have() {
    let s = setup(&users_section("optional"));
    add_test_user(&users_file(&s.server), "bob", REALM, "builder");
    let srv = server_with(s.server.platform(), echo);
    let (_, alice) = challenge_for(&s.client_host, srv.addr, "alice@EXAMPLE.TEST");
    refused(&srv);
    assert_eq!(alice, TEST_ITERATIONS.to_string());
    for unknown in ["mallory@EXAMPLE.TEST", "alice@OTHER.TEST", "x@Y"] {
        let (_, iterations) = challenge_for(&s.client_host, srv.addr, unknown);
        refused(&srv);
        assert_eq!(iterations, DEFAULT_ITERATIONS.to_string(), "{unknown}");
    }
}

/// Issue 12, item 4: the lookup canonicalised the name (`user:` prefix, the domain's case)
/// but the decoy and the proven name used the raw text, so `X@example.test` against
/// `X@EXAMPLE.TEST` told whether X exists, and alice could prove
/// `user:user:alice@EXAMPLE.TEST`. One canonical form now serves all three.
#[test]
fn a_user_name_has_one_canonical_form_for_the_lookup_the_decoy_and_the_proof() {
    // Every challenge below counts as an attempt from 127.0.0.1: room for them all.
    let s = setup(&format!(
        "{}failures_per_address = 100\n",
        users_section("optional")
    ));
    let srv = server_with(s.server.platform(), echo);
    let challenge = |user: &str| {
        let answer = challenge_for(&s.client_host, srv.addr, user);
        refused(&srv);
        answer
    };
    for (canonical, spellings) in [
        (
            "mallory@EXAMPLE.TEST",
            [
                "mallory@example.test",
                "user:mallory@Example.Test",
                "USER:mallory@EXAMPLE.TEST",
            ],
        ),
        (
            "alice@EXAMPLE.TEST",
            [
                "alice@example.test",
                "user:alice@Example.Test",
                "USER:alice@EXAMPLE.TEST",
            ],
        ),
    ] {
        let expected = challenge(canonical);
        for spelling in spellings {
            assert_eq!(
                challenge(spelling),
                expected,
                "`{spelling}` is challenged unlike `{canonical}`"
            );
        }
    }

    // Whatever the spelling, the principal proven is the canonical one.
    for spelling in ["alice@example.test", "user:alice@EXAMPLE.TEST"] {
        assert_eq!(
            raw_login(&s.client_host, srv.addr, spelling, "pencil", || {}),
            SUCCESS
        );
        assert_eq!(
            names(application(&served(&srv))),
            ["user:alice@EXAMPLE.TEST"],
            "{spelling}"
        );
    }
    // `user:` is a prefix once: `user:user:alice` is nobody, not alice under a new name.
    assert_eq!(
        raw_login(
            &s.client_host,
            srv.addr,
            "user:user:alice@EXAMPLE.TEST",
            "pencil",
            || {}
        ),
        FAILURE
    );
    refused(&srv);
    // The library's own client, given the prefixed name, proves plain alice.
    let prefixed = connect_as(&s.client, &password("user:alice", "pencil"), srv.addr);
    echo_once(prefixed.unwrap(), b"x");
    assert_eq!(
        names(application(&served(&srv))),
        ["user:alice@EXAMPLE.TEST"]
    );
}

// ---------------------------------------------------------------------------------------
// Online guessing

/// Issue 12, item 4: nothing limited how fast a client could guess passwords. After
/// `failures_per_address` failures from 127.0.0.1, even the right password from there is
/// refused, unchecked, and says why; the same user from 127.0.0.2 logs in at once.
#[test]
fn an_address_with_too_many_failures_is_refused_while_another_logs_in() {
    let s = setup(&format!(
        "{}failures_per_address = 3\nfailure_delay = \"0s\"\n",
        users_section("optional")
    ));
    let (handled, handler) = counting_echo();
    let srv = server_with(s.server.platform(), handler);
    let from = |ip, settings: &SecuritySettings| {
        connect_from(
            &s.client,
            settings,
            target("server.example.test"),
            ip,
            srv.addr,
        )
    };
    for guess in ["a", "b", "c"] {
        let refusal = client_refusal(from(FROM_127_0_0_1, &password("alice", guess)));
        assert!(
            matches!(refusal, NegotiationError::UserAuthenticationFailed { .. }),
            "{refusal:?}"
        );
        failure_reason(&refused(&srv));
    }

    let throttled = client_refusal(from(FROM_127_0_0_1, &alice()));
    let NegotiationError::UserAuthenticationThrottled { retry_after } = throttled else {
        panic!("not throttled: {throttled:?}");
    };
    assert!(
        retry_after > std::time::Duration::from_secs(14 * 60),
        "the default window is 15 minutes: {retry_after:?}"
    );
    assert!(
        throttled
            .to_string()
            .contains("too many failed user authentications"),
        "{throttled}"
    );
    assert!(matches!(
        refused(&srv),
        NegotiationError::UserAuthenticationThrottled { .. }
    ));
    // Proving no user is not an attempt, and is still served.
    echo_once(
        from(FROM_127_0_0_1, &SecuritySettings::new()).unwrap(),
        b"anon",
    );
    assert!(served(&srv).peer_application.is_none());

    let stream = from(FROM_127_0_0_2, &alice()).unwrap();
    echo_once(stream, b"alice");
    assert_eq!(
        names(application(&served(&srv))),
        ["user:alice@EXAMPLE.TEST"]
    );
    assert_eq!(
        handled.load(Ordering::SeqCst),
        2,
        "only anon and alice got a stream"
    );
}

/// Each failure in a user name's run is answered after a pause (here 300 ms, then
/// 600 ms): a pause, never a refusal — the right password still gets in.
#[test]
fn a_failed_password_is_answered_after_a_pause_that_grows() {
    let s = setup(&format!(
        "{}failure_delay = \"300ms\"\nfailure_delay_max = \"600ms\"\n",
        users_section("optional")
    ));
    let srv = server_with(s.server.platform(), echo);
    for least in [300, 600] {
        let started = std::time::Instant::now();
        client_refusal(connect_as(&s.client, &password("alice", "guess"), srv.addr));
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(least),
            "the failure was answered after {took:?}, before the {least} ms pause"
        );
        refused(&srv);
    }
    echo_once(connect_as(&s.client, &alice(), srv.addr).unwrap(), b"in");
    served(&srv);
}

// ---------------------------------------------------------------------------------------
// User certificate

#[test]
fn a_user_certificate_proves_the_user_to_the_server() {
    let s = setup(&users_section("optional"));
    let srv = server_with(s.server.platform(), echo);
    let cert = s
        .domain
        .user_certificate(&[San::Email("alice@example.test")]);
    let settings = SecuritySettings::new().user_certificate(cert.chain.clone(), cert.key());

    echo_once(
        connect_as(&s.client, &settings, srv.addr).unwrap(),
        b"hello",
    );
    let info = served(&srv);
    assert_eq!(
        info.flags,
        InfoFlags::SECURED | InfoFlags::ENCRYPTED | InfoFlags::IMPERSONATED,
        "{info}"
    );
    let user = application(&info);
    assert!(
        names(user).contains(&"user:alice@example.test".to_string()),
        "{:?}",
        names(user)
    );
    assert_eq!(user.proven_by, ProofMethod::UserCertificate);
    assert!(user.not_before.is_some() && user.not_after.is_some());
    assert_eq!(user.chain, cert.chain);
    assert!(user.subject.contains("test user"), "{}", user.subject);
    assert_eq!(
        names(info.peer_machine.as_ref().unwrap()),
        ["client.example.test"]
    );
}

#[test]
fn unacceptable_user_certificates_fail_like_a_wrong_password() {
    let s = setup(&users_section("optional"));
    let (handled, handler) = counting_echo();
    let srv = server_with(s.server.platform(), handler);
    let generic = client_refusal(connect_as(&s.client, &password("alice", "pen"), srv.addr));
    refused(&srv);

    let foreign = TrustDomain::new("other.test");
    let alice = s
        .domain
        .user_certificate(&[San::Email("alice@example.test")]);
    let cases = [
        (
            "issued by an untrusted CA",
            foreign.user_certificate(&[San::Email("alice@example.test")]),
            "not trusted",
        ),
        (
            "naming no user",
            s.domain.user_certificate(&[San::Dns("alice.example.test")]),
            "proves no user",
        ),
        (
            // Attack (issue 12, item 3): a machine's email address is no user proof.
            "a machine certificate with an email address",
            s.domain
                .user_certificate_with(&[San::Email("alice@example.test")], |p| {
                    p.extended_key_usages = vec![
                        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
                    ]
                }),
            "proves no user",
        ),
        (
            "not for client authentication",
            s.domain
                .user_certificate_with(&[San::Email("alice@example.test")], |p| {
                    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]
                }),
            "not trusted",
        ),
        (
            "with a key that is not the certificate's",
            UserCert {
                chain: alice.chain.clone(),
                key: s
                    .domain
                    .user_certificate(&[San::Email("eve@example.test")])
                    .key,
            },
            "does not verify",
        ),
    ];
    for (what, cert, why) in cases {
        let settings = SecuritySettings::new().user_certificate(cert.chain.clone(), cert.key());
        let client = client_refusal(connect_as(&s.client, &settings, srv.addr));
        let server = refused(&srv);
        assert_eq!(
            client, generic,
            "{what}: the client's reason is not the generic one"
        );
        assert!(
            failure_reason(&server).contains(why),
            "{what}: the server's reason `{server}` does not say `{why}`"
        );
    }
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------
// Relay: an authentication made for one TLS connection is refused on another.

#[test]
fn a_channel_binding_from_another_connection_is_refused() {
    let s = setup(&users_section("optional"));
    let (handled, handler) = counting_echo();
    let srv = server_with(s.server.platform(), handler);
    // The attacker has a genuine identity of the same trust domain; the victim means to
    // talk to it, and the attacker relays the victim's user authentication to the server.
    let attacker = s
        .domain
        .host("attacker", &[San::Dns("attacker.example.test")]);
    let victim = |settings: &SecuritySettings| {
        let relay = user_auth_relay(&attacker, srv.addr, "server.example.test");
        let result = connect_with(
            &s.client,
            settings,
            target("attacker.example.test"),
            relay.addr,
        );
        (result, relay.report())
    };

    // Control: the relay works — relaying "no user" gets the attacker served as itself.
    let (result, report) = victim(&SecuritySettings::new());
    assert!(result.is_ok(), "{:?}", result.err());
    assert_eq!(
        (report.from_victim.as_slice(), report.from_server.as_slice()),
        (&[HELLO][..], &[SUCCESS][..]),
        "{report:?}"
    );
    let info = served(&srv);
    assert!(info.peer_application.is_none());
    assert_eq!(
        names(info.peer_machine.as_ref().unwrap()),
        ["attacker.example.test"]
    );

    // A password: the SCRAM proof is bound to the victim-attacker connection.
    let (result, report) = victim(&alice());
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(report.from_victim, [HELLO, RESPONSE], "{report:?}");
    assert_eq!(
        report.from_server,
        [CHALLENGE, FAILURE],
        "the attacker got {report:?}"
    );
    let server = refused(&srv);
    assert!(
        failure_reason(&server).contains("channel binding"),
        "the server's reason: {server}"
    );
    assert!(matches!(
        client_refusal(result),
        NegotiationError::UserAuthenticationFailed { .. }
    ));

    // A user certificate: its signature covers the victim-attacker channel binding.
    let cert = s
        .domain
        .user_certificate(&[San::Email("alice@example.test")]);
    let (result, report) =
        victim(&SecuritySettings::new().user_certificate(cert.chain.clone(), cert.key()));
    assert_eq!(report.from_victim, [HELLO], "{report:?}");
    assert_eq!(report.from_server, [FAILURE], "the attacker got {report:?}");
    let server = refused(&srv);
    assert!(
        failure_reason(&server).contains("channel binding"),
        "the server's reason: {server}"
    );
    assert!(matches!(
        client_refusal(result),
        NegotiationError::UserAuthenticationFailed { .. }
    ));

    assert_eq!(
        handled.load(Ordering::SeqCst),
        1,
        "only the control was served"
    );
}

// ---------------------------------------------------------------------------------------
// What the listener's policy asks: required, optional, off

#[test]
fn required_user_authentication_refuses_a_client_without_credentials() {
    let s = setup(&users_section("required"));
    let (handled, handler) = counting_echo();
    let srv = server_with(s.server.platform(), handler);

    let client = client_refusal(connect_as(&s.client, &SecuritySettings::new(), srv.addr));
    assert_eq!(client, NegotiationError::UserAuthenticationRequired);
    assert_eq!(refused(&srv), NegotiationError::UserAuthenticationRequired);
    assert_eq!(handled.load(Ordering::SeqCst), 0);

    // With credentials: served.
    echo_once(connect_as(&s.client, &alice(), srv.addr).unwrap(), b"ok");
    assert_eq!(application(&served(&srv)).proven_by, ProofMethod::Password);
}

#[test]
fn required_user_authentication_gives_openssl_no_application_data() {
    let s = setup(&users_section("required"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    let srv = server_with(s.server.platform(), move |mut stream| {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            record.lock().unwrap().extend_from_slice(&buf[..n]);
            let _ = stream.write_all(&buf[..n]);
        }
    });
    let (out, err) = openssl_mtls_client(
        &s.client_host,
        srv.addr,
        &[],
        b"hello secsock\n",
        b"hello secsock\n",
    );
    assert!(
        out.is_empty(),
        "openssl got application data: {out:?}; stderr: {err}"
    );
    assert_eq!(refused(&srv), NegotiationError::UserAuthenticationRequired);
    assert!(received.lock().unwrap().is_empty());
}

#[test]
fn optional_user_authentication_serves_a_client_without_credentials() {
    let s = setup(&users_section("optional"));
    let srv = server_with(s.server.platform(), echo);
    echo_once(
        connect_as(&s.client, &SecuritySettings::new(), srv.addr).unwrap(),
        b"anonymous",
    );
    let info = served(&srv);
    assert!(info.peer_application.is_none(), "{info}");
    assert_eq!(
        info.flags,
        InfoFlags::SECURED | InfoFlags::ENCRYPTED,
        "{info}"
    );
    assert_eq!(
        names(info.peer_machine.as_ref().unwrap()),
        ["client.example.test"]
    );
}

#[test]
fn optional_user_authentication_serves_openssl_without_alpn() {
    let s = setup(&users_section("optional"));
    let srv = server_with(s.server.platform(), echo);
    let (out, err) = openssl_mtls_client(
        &s.client_host,
        srv.addr,
        &[],
        b"plain tls\n",
        b"plain tls\n",
    );
    assert!(contains(&out, b"plain tls\n"), "no echo; stderr: {err}");
    let info = served(&srv);
    assert!(info.peer_application.is_none());
    assert_eq!(info.alpn, None);
    assert_eq!(info.flags, InfoFlags::SECURED | InfoFlags::ENCRYPTED);
}

/// Most TLS clients offer ALPN (curl: `h2,http/1.1`); a listener that does not require a
/// user must not refuse them for not offering the user-authentication protocol.
#[test]
fn optional_user_authentication_serves_a_tls_client_offering_another_alpn() {
    let s = setup(&users_section("optional"));
    let srv = server_with(s.server.platform(), echo);
    let (out, err) = openssl_mtls_client(
        &s.client_host,
        srv.addr,
        &["-alpn", "h2,http/1.1"],
        b"http client\n",
        b"http client\n",
    );
    let outcome = srv.outcome().result;
    assert!(
        contains(&out, b"http client\n"),
        "a TLS client offering ALPN h2,http/1.1 was refused; server: {:?}; openssl: {err}",
        outcome.as_ref().err()
    );
    let info = outcome.unwrap();
    assert!(info.peer_application.is_none());
}

#[test]
fn without_users_the_clients_credentials_are_not_sent() {
    let s = setup("");
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    let srv = server_with(s.server.platform(), move |mut stream| {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            record.lock().unwrap().extend_from_slice(&buf[..n]);
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
        let _ = stream.close();
    });
    let stream = connect_as(&s.client, &alice(), srv.addr).unwrap();
    let mine = stream.query_security();
    echo_once(stream, b"just data");
    let info = served(&srv);
    assert!(info.peer_application.is_none(), "{info}");
    assert_eq!(info.flags, InfoFlags::SECURED | InfoFlags::ENCRYPTED);
    assert_eq!(
        (info.alpn, mine.alpn),
        (None, None),
        "no user ALPN without [users]"
    );
    assert_eq!(
        received.lock().unwrap().as_slice(),
        b"just data",
        "the server's application received more than the client's data"
    );
}

#[test]
fn without_users_openssl_interoperates() {
    let s = setup("");
    let srv = server_with(s.server.platform(), echo);
    for alpn in [&[][..], &["-alpn", "http/1.1"][..]] {
        let (out, err) = openssl_mtls_client(
            &s.client_host,
            srv.addr,
            alpn,
            b"plain tls\n",
            b"plain tls\n",
        );
        assert!(
            contains(&out, b"plain tls\n"),
            "{alpn:?}: no echo; stderr: {err}"
        );
        let info = served(&srv);
        assert_eq!(info.alpn, None);
        assert!(info.peer_application.is_none());
    }
}

// ---------------------------------------------------------------------------------------
// The users file is read again when it changes

#[test]
fn users_added_while_the_server_runs_are_accepted_without_restart() {
    let s = setup(&users_section("required"));
    let srv = server_with(s.server.platform(), echo);
    let bob = password("bob", "builder");

    client_refusal(connect_as(&s.client, &bob, srv.addr));
    refused(&srv);

    add_test_user(&users_file(&s.server), "bob", REALM, "builder");
    echo_once(connect_as(&s.client, &bob, srv.addr).unwrap(), b"bob");
    assert_eq!(names(application(&served(&srv))), ["user:bob@EXAMPLE.TEST"]);

    // A changed password takes effect at once, too.
    add_test_user(&users_file(&s.server), "bob", REALM, "new password");
    client_refusal(connect_as(&s.client, &bob, srv.addr));
    refused(&srv);
    echo_once(
        connect_as(&s.client, &password("bob", "new password"), srv.addr).unwrap(),
        b"bob",
    );
    served(&srv);

    // And a removed user is refused.
    assert!(secsock::users::remove_user(&users_file(&s.server), "bob@EXAMPLE.TEST").unwrap());
    client_refusal(connect_as(
        &s.client,
        &password("bob", "new password"),
        srv.addr,
    ));
    refused(&srv);
}

// ---------------------------------------------------------------------------------------
// Resumption

#[test]
fn a_resumed_connection_still_authenticates_the_user() {
    let s = setup(&users_section("optional"));
    let srv = server_with(s.server.platform(), echo);

    let first = connect_as(&s.client, &alice(), srv.addr).unwrap();
    assert!(!first.query_security().resumed);
    echo_once(first, b"one");
    assert!(!served(&srv).resumed);

    let second = connect_as(&s.client, &alice(), srv.addr).unwrap();
    let mine = second.query_security();
    echo_once(second, b"two");
    let info = served(&srv);
    assert!(
        mine.resumed && info.resumed,
        "the second connection did not resume"
    );
    assert_eq!(
        info.peer_machine.as_ref().unwrap().proven_by,
        ProofMethod::ResumedSession
    );
    let user = application(&info);
    assert_eq!(names(user), ["user:alice@EXAMPLE.TEST"]);
    assert_eq!(user.proven_by, ProofMethod::Password);
    assert!(info.flags.contains(InfoFlags::IMPERSONATED));

    // A resumed session does not carry the user over: a wrong password still fails.
    let wrong = connect_as(&s.client, &password("alice", "pen"), srv.addr);
    assert!(matches!(
        client_refusal(wrong),
        NegotiationError::UserAuthenticationFailed { .. }
    ));
    refused(&srv);
    // Nor does it leave the user out: without credentials, no application identity.
    let anonymous = connect_as(&s.client, &SecuritySettings::new(), srv.addr).unwrap();
    echo_once(anonymous, b"three");
    assert!(served(&srv).peer_application.is_none());
}

// ---------------------------------------------------------------------------------------
// Misbehaving peers

type FakeServerStream = rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>;

/// What a fake server does on its connection.
type FakeServer = fn(&mut FakeServerStream);

/// The client checks the server too: a server that does not hold the user's verifier
/// cannot make the client believe it was authenticated, nor make it compute without bound.
#[test]
fn a_fake_server_cannot_complete_a_password_exchange() {
    let s = setup("");
    // A genuine identity for server.example.test, but no users file behind it.
    let fake = s.domain.host("fake", &[San::Dns("server.example.test")]);
    let cases: [(&str, FakeServer, &str); 3] = [
        (
            "SUCCESS without a challenge",
            |tls| {
                read_user_frame(tls).unwrap();
                write_user_frame(tls, SUCCESS, b"").unwrap();
            },
            "unexpected",
        ),
        (
            "a wrong server signature",
            |tls| {
                challenge_with(tls, 4096);
                let (kind, _) = read_user_frame(tls).unwrap();
                assert_eq!(kind, RESPONSE);
                let signature = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
                write_user_frame(tls, SUCCESS, signature.as_bytes()).unwrap();
            },
            "signature",
        ),
        (
            "an iteration count beyond the client's limit",
            |tls| challenge_with(tls, 4_000_000_000),
            "iteration",
        ),
    ];
    for (what, behaviour, why) in cases {
        let addr = raw_user_auth_server(&fake, behaviour);
        let started = std::time::Instant::now();
        let error = client_refusal(connect_as(&s.client, &alice(), addr));
        assert!(
            error.to_string().contains(why),
            "{what}: `{error}` does not say `{why}`"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{what}: the client took {:?}",
            started.elapsed()
        );
    }
}

/// Issue 12, item 7: a server could make a client compute up to 10,000,000 PBKDF2
/// iterations. The client's policy bounds it (`[defaults] user_max_iterations`); a server
/// asking more is refused before any is computed, with an error naming the key.
#[test]
fn a_server_asking_more_iterations_than_the_clients_maximum_is_refused() {
    let s = setup("");
    let fake = s.domain.host("fake", &[San::Dns("server.example.test")]);
    let client = s
        .domain
        .host_with(
            "frugal",
            &[San::Dns("client.example.test")],
            "[defaults]\nuser_max_iterations = 10000\n",
            |_| {},
        )
        .platform();
    let addr = raw_user_auth_server(&fake, |tls| challenge_with(tls, 10_001));
    let error = client_refusal(connect_as(&client, &alice(), addr));
    let text = error.to_string();
    assert!(
        text.contains("10001") && text.contains("10000") && text.contains("user_max_iterations"),
        "{text}"
    );
    // At the limit, the client computes and answers.
    let (answered, on_answer) = std::sync::mpsc::channel();
    let addr = raw_user_auth_server(&fake, move |tls| {
        challenge_with(tls, 10_000);
        answered.send(read_user_frame(tls).unwrap().0).unwrap();
        let _ = write_user_frame(tls, FAILURE, b"user authentication failed");
    });
    client_refusal(connect_as(&client, &alice(), addr));
    assert_eq!(on_answer.recv().unwrap(), RESPONSE);
}

/// A client that stalls in, or breaks, the user-authentication step gets no stream, and
/// ties the server up no longer than the handshake timeout.
#[test]
fn a_client_that_breaks_the_user_authentication_step_is_refused() {
    let s = setup(&format!(
        "[defaults]\nhandshake_timeout = \"1s\"\n\n{}",
        users_section("optional")
    ));
    let (handled, handler) = counting_echo();
    let srv = server_with(s.server.platform(), handler);
    let raw = || {
        raw_tls_client(
            &s.client_host,
            "server.example.test",
            srv.addr,
            &[USER_ALPN],
        )
        .unwrap()
    };

    // Silent after the handshake.
    let started = std::time::Instant::now();
    let _silent = raw();
    let e = refused(&srv);
    assert!(matches!(e, NegotiationError::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Application data instead of a HELLO; an unknown mechanism; an oversized frame.
    let mut tls = raw();
    tls.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    tls.flush().unwrap();
    let e = refused(&srv);
    assert!(
        matches!(e, NegotiationError::UserAuthenticationProtocol { .. }),
        "{e:?}"
    );

    let mut tls = raw();
    write_user_frame(&mut tls, HELLO, &hello_payload("PLAIN", b"\0alice\0pencil")).unwrap();
    let e = refused(&srv);
    assert!(e.to_string().contains("PLAIN"), "{e}");
    // The client is told only that it failed.
    let (kind, reason) = read_user_frame(&mut tls).unwrap();
    assert_eq!(
        (kind, reason.as_slice()),
        (FAILURE, &b"user authentication failed"[..])
    );

    let mut tls = raw();
    tls.write_all(&[HELLO, 0xff, 0xff]).unwrap();
    tls.flush().unwrap();
    let e = refused(&srv);
    assert!(e.to_string().contains("exceeds"), "{e}");

    assert_eq!(handled.load(Ordering::SeqCst), 0);
}
