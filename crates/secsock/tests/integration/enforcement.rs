//! Enforcement (SPEC §1 and §5), blocking API: what `ALLOW_INSECURE`,
//! `GUARANTEE_ENCRYPTION`, `OPTIONAL_PEER_NAME_VERIFICATION`, `SKIP_ENFORCEMENT`, a
//! listener's peer target names and its exclusive port let through, and what they never
//! let through. Every peer is real and on loopback: secsock sockets, plain std TCP clients
//! and servers that record what they received, and an active relay in the middle.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secsock::error::Peer;
use secsock::fallback::CLEAR_TEXT_WAIT;
use secsock::{
    AddressPrefix, Domain, Error, InfoFlags, NegotiationError, OptionFlags, Platform, SecureSocket,
    SecureStream, SecurityFlags, SecuritySettings, SettingsError,
};
use support::enforcement_fixtures::*;
use support::*;

fn echo_listener(platform: Arc<Platform>, settings: &SecuritySettings) -> ListenerServer {
    serve_listener(listen(platform, settings), echo)
}

/// The error a client sees once a server refused it: in TLS 1.3 the client finishes its
/// handshake first, so the refusal may arrive as an alert on the first read.
fn refusal_seen_by_client(result: Result<SecureStream, Error>) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(mut stream) => {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 16];
            match stream.read(&mut buf) {
                Ok(n) => panic!("a refused client read {n} bytes"),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
                    e.to_string()
                }
            }
        }
    }
}

/// One echo through `stream`, then a clean close.
fn echo_once(mut stream: SecureStream) {
    stream.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    stream.close().unwrap();
}

// ---------------------------------------------------------------------------------------
// 1. A plain TCP client against a secured listener without ALLOW_INSECURE.

#[test]
fn plain_client_speaking_first_gets_no_application_byte_from_a_secured_listener() {
    let d = example("");
    let srv = echo_listener(d.server.clone(), &SecuritySettings::new());
    let mut plain = TcpStream::connect(srv.addr).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: server.example.test\r\n\r\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let ended = plain.read_to_end(&mut answer); // EOF, or a reset: the connection ends
    assert!(
        !matches!(&ended, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
        "the server did not close the connection: {ended:?}"
    );
    assert!(
        !contains(&answer, b"GET /"),
        "the request came back in clear"
    );
    // At most a TLS alert comes back, never application data.
    if !answer.is_empty() {
        let records = tls_records(&answer).expect("only TLS records");
        assert!(
            records.iter().all(|(kind, _)| *kind == 0x15),
            "only an alert may be sent: {answer:02x?}"
        );
    }
    let accepted = srv.outcome();
    let err = accepted
        .result
        .expect_err("the application must get no stream");
    assert!(
        matches!(
            err.negotiation(),
            Some(NegotiationError::PeerNotTls {
                peer: Peer::Client,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not speak TLS"), "{err}");
}

#[test]
fn plain_client_waiting_for_a_greeting_is_closed_at_the_handshake_timeout() {
    let d = example("[defaults]\nhandshake_timeout = \"1500ms\"\n");
    let srv = echo_listener(d.server.clone(), &SecuritySettings::new());
    let started = Instant::now();
    let mut plain = TcpStream::connect(srv.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let ended = plain.read_to_end(&mut answer);
    let took = started.elapsed();
    assert!(ended.is_ok(), "the connection was not closed: {ended:?}");
    assert!(answer.is_empty(), "the client received {answer:02x?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(3500),
        "closed after {took:?}, expected at the 1.5 s handshake timeout"
    );
    let err = srv
        .outcome()
        .result
        .expect_err("the application must get no stream");
    assert!(
        matches!(err.negotiation(), Some(NegotiationError::Timeout { after }) if *after == Duration::from_millis(1500)),
        "{err:?}"
    );
}

#[test]
fn allow_first_inbound_packet_unencrypted_never_lets_a_plain_client_in() {
    // Meaningless for TLS and accepted as a no-op: never a silent downgrade.
    let d = example("");
    let option =
        SecuritySettings::new().with_options(OptionFlags::ALLOW_FIRST_INBOUND_PKT_UNENCRYPTED);
    let srv = echo_listener(d.server.clone(), &option);
    let mut plain = TcpStream::connect(srv.addr).unwrap();
    plain.write_all(PAYLOAD).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !contains(&answer, PAYLOAD),
        "the payload came back in clear"
    );
    let err = srv
        .outcome()
        .result
        .expect_err("the application must get no stream");
    assert!(
        matches!(err.negotiation(), Some(NegotiationError::PeerNotTls { .. })),
        "{err:?}"
    );
    // And a TLS client is secured as usual.
    let stream = connect(&d.client, "server.example.test", srv.addr).unwrap();
    assert_secured(&stream.query_security());
    echo_once(stream);
}

// ---------------------------------------------------------------------------------------
// 2. The same clients against a listener with ALLOW_INSECURE, and a TLS client.

#[test]
fn allow_insecure_listener_serves_a_plain_client_that_speaks_first_in_clear() {
    let d = example("");
    let srv = echo_listener(d.server.clone(), &allow_insecure());
    let mut plain = TcpStream::connect(srv.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: server.example.test\r\n\r\n";
    plain.write_all(request).unwrap();
    let mut echoed = vec![0u8; request.len()];
    plain.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, request, "the application echoes in clear");
    plain.shutdown(Shutdown::Write).unwrap();
    assert_eq!(plain.read(&mut [0u8; 1]).unwrap(), 0, "nothing else came");

    let info = srv.outcome().result.expect("served in clear");
    assert_clear(&info, |e| {
        matches!(e, NegotiationError::PeerNotTls { peer: Peer::Client, detail }
            if detail.contains("not a TLS ClientHello"))
    });
}

#[test]
fn allow_insecure_listener_greets_a_waiting_plain_client_in_clear_after_the_clear_text_wait() {
    let d = example("");
    let srv = serve_listener(listen(d.server.clone(), &allow_insecure()), |mut s| {
        s.write_all(GREETING).unwrap();
        echo(s);
    });
    let started = Instant::now();
    let mut plain = TcpStream::connect(srv.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut greeting = [0u8; GREETING.len()];
    plain.read_exact(&mut greeting).unwrap();
    let took = started.elapsed();
    assert_eq!(&greeting, GREETING, "the application's greeting, in clear");
    assert!(
        took >= CLEAR_TEXT_WAIT && took < CLEAR_TEXT_WAIT + Duration::from_secs(2),
        "greeted after {took:?}, expected after about {CLEAR_TEXT_WAIT:?}"
    );
    let info = srv.outcome().result.expect("served in clear");
    assert_clear(&info, |e| {
        matches!(e, NegotiationError::PeerNotTls { peer: Peer::Client, detail }
            if detail.contains("sent nothing"))
    });
}

#[test]
fn allow_insecure_listener_still_secures_a_tls_client() {
    let d = example("");
    let srv = echo_listener(d.server.clone(), &allow_insecure());
    let stream = connect(&d.client, "server.example.test", srv.addr).unwrap();
    assert_secured(&stream.query_security());
    echo_once(stream);
    assert_secured(&srv.outcome().result.expect("secured"));
}

#[test]
fn allow_insecure_listener_reports_a_client_reset_before_its_first_bytes_as_that_clients_failure() {
    // Without ALLOW_INSECURE the handshake maps a reset to the peer closing; peeking at the
    // first bytes (ALLOW_INSECURE) must do the same, not fail like the listener's own I/O.
    let d = example("");
    for (settings, label) in [
        (SecuritySettings::new(), "without ALLOW_INSECURE"),
        (allow_insecure(), "with ALLOW_INSECURE"),
    ] {
        let listener = listen(d.server.clone(), &settings);
        connect_and_reset(listener.local_addr().unwrap());
        let err = listener
            .accept_pending()
            .unwrap()
            .handshake()
            .expect_err("a reset connection yields no stream");
        assert!(
            matches!(
                err,
                Error::Negotiation(NegotiationError::PeerClosed { peer: Peer::Client })
            ),
            "{label}: a client's reset must be that client's failure (PeerClosed), got {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. A plain TCP server against a secsock client, with and without ALLOW_INSECURE.

/// A secsock client without ALLOW_INSECURE against a plain server: connect fails with
/// `expected`, the server saw one connection carrying only the ClientHello, and the payload
/// (which the application would send on success) never arrives.
fn plain_server_never_receives_the_payload(
    behaviour: fn(&mut PlainConnection),
    expected: fn(&NegotiationError) -> bool,
) {
    let d = example("");
    let server = plain_server(behaviour);
    // An application sends its payload as soon as it has a stream.
    let result = connect(&d.client, "server.example.test", server.addr).map(|mut stream| {
        let _ = stream.write_all(PAYLOAD);
        let _ = stream.close();
    });
    let err = result.expect_err("no clear text without ALLOW_INSECURE");
    assert!(
        err.negotiation().is_some_and(expected),
        "unexpected error: {err:?}"
    );
    let connections = server.connections();
    assert_eq!(connections.len(), 1, "no second attempt: {connections:?}");
    assert_only_a_client_hello(&connections[0].bytes);
}

#[test]
fn plain_server_speaking_first_never_receives_the_payload_without_allow_insecure() {
    plain_server_never_receives_the_payload(speaks_first, |e| {
        matches!(
            e,
            NegotiationError::PeerNotTls {
                peer: Peer::Server,
                ..
            }
        )
    });
}

#[test]
fn plain_server_hanging_up_on_the_client_hello_never_receives_the_payload_without_allow_insecure() {
    plain_server_never_receives_the_payload(hangs_up_on_tls, |e| {
        matches!(e, NegotiationError::PeerClosed { peer: Peer::Server })
    });
}

/// A secsock client with ALLOW_INSECURE, bound to 127.0.0.2, against a plain server:
/// connect succeeds on a second connection (from the same local address), in clear, with
/// `reason`; the first connection carried only the ClientHello, the second the payload as
/// written.
fn allow_insecure_client_reconnects_in_clear(
    behaviour: fn(&mut PlainConnection),
    greeting: &[u8],
    reason: &str,
) {
    let d = example("");
    let server = plain_server(behaviour);
    let mut stream = connect_from(
        &d.client,
        &allow_insecure(),
        target("server.example.test"),
        FROM_127_0_0_2,
        server.addr,
    )
    .expect("ALLOW_INSECURE connects in clear to a server that does not speak TLS");
    assert_clear(&stream.query_security(), |e| {
        matches!(e, NegotiationError::PeerNotTls { peer: Peer::Server, detail }
            if detail.contains(reason) && detail.contains("ALLOW_INSECURE"))
    });
    if !greeting.is_empty() {
        let mut got = vec![0u8; greeting.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, greeting, "the server's greeting arrives in clear");
    }
    stream.write_all(PAYLOAD).unwrap();
    stream.close().unwrap();

    let connections = server.connections();
    assert_eq!(connections.len(), 2, "{connections:?}");
    assert_only_a_client_hello(&connections[0].bytes);
    assert_eq!(
        connections[1].bytes, PAYLOAD,
        "the payload, as written, on the new connection"
    );
    for connection in &connections {
        assert_eq!(
            connection.peer.ip(),
            FROM_127_0_0_2,
            "from the bound address"
        );
    }
}

#[test]
fn allow_insecure_client_reconnects_in_clear_to_a_plain_server_that_speaks_first() {
    allow_insecure_client_reconnects_in_clear(
        speaks_first,
        b"220 ready\r\n",
        "bytes that are not TLS",
    );
}

#[test]
fn allow_insecure_client_reconnects_in_clear_to_a_plain_server_that_hangs_up() {
    allow_insecure_client_reconnects_in_clear(hangs_up_on_tls, b"", "closed the connection");
}

// ---------------------------------------------------------------------------------------
// 4. Fallback is never a reaction to a failed verification, nor to a timeout.

/// A client with ALLOW_INSECURE against a real TLS server (a secsock listener) presenting
/// `server`'s certificate fails with `expected`, and the server saw exactly one connection.
fn allow_insecure_client_does_not_fall_back(
    server: Arc<Platform>,
    client: &Arc<Platform>,
    expected: fn(&NegotiationError) -> bool,
) {
    let srv = serve_listener(listen(server, &SecuritySettings::new()), |mut s| {
        let _ = s.write_all(SERVER_PAYLOAD);
        echo(s);
    });
    let err = connect_with(
        client,
        &allow_insecure(),
        target("server.example.test"),
        srv.addr,
    )
    .expect_err("a failed verification is never a reason for clear text");
    assert!(
        err.negotiation().is_some_and(expected),
        "unexpected error: {err:?}"
    );
    let refused = srv.outcome();
    assert!(refused.result.is_err(), "{:?}", refused.result);
    assert_eq!(
        srv.connections(),
        [refused.peer],
        "exactly one connection: no second, clear attempt"
    );
}

#[test]
fn allow_insecure_client_does_not_fall_back_on_a_wrong_server_name() {
    let domain = TrustDomain::new("example.test");
    let impostor = domain
        .host("impostor", &[San::Dns("impostor.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    allow_insecure_client_does_not_fall_back(impostor, &client, |e| {
        matches!(e, NegotiationError::PeerNameMismatch { expected, presented }
            if expected == "server.example.test"
                && presented.contains(&"DNS:impostor.example.test".to_string()))
    });
}

#[test]
fn allow_insecure_client_does_not_fall_back_on_an_untrusted_server_ca() {
    let domain = TrustDomain::new("example.test");
    let stranger = TrustDomain::new("example.test"); // same name, another CA
    let server = stranger
        .host("server", &[San::Dns("server.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    allow_insecure_client_does_not_fall_back(server, &client, |e| {
        matches!(
            e,
            NegotiationError::UntrustedChain {
                peer: Peer::Server,
                ..
            }
        )
    });
}

#[test]
fn allow_insecure_client_does_not_fall_back_on_an_expired_server_certificate() {
    let domain = TrustDomain::new("example.test");
    let server = domain
        .host_with("server", &[San::Dns("server.example.test")], "", |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    allow_insecure_client_does_not_fall_back(server, &client, |e| {
        matches!(
            e,
            NegotiationError::CertificateExpired {
                peer: Peer::Server,
                ..
            }
        )
    });
}

#[test]
fn allow_insecure_client_does_not_fall_back_on_a_silent_server() {
    let domain = TrustDomain::new("example.test");
    let client = domain
        .host_with(
            "client",
            &[San::Dns("client.example.test")],
            "[defaults]\nhandshake_timeout = \"500ms\"\n",
            |_| {},
        )
        .platform();
    let silent = plain_server(|c| c.read_to_end());
    let err = connect_with(
        &client,
        &allow_insecure(),
        target("server.example.test"),
        silent.addr,
    )
    .expect_err("a timeout is never a reason for clear text");
    assert!(
        matches!(err.negotiation(), Some(NegotiationError::Timeout { .. })),
        "{err:?}"
    );
    let connections = silent.connections();
    assert_eq!(
        connections.len(),
        1,
        "no second, clear attempt: {connections:?}"
    );
    assert_only_a_client_hello(&connections[0].bytes);
}

// ---------------------------------------------------------------------------------------
// 5. OPTIONAL_PEER_NAME_VERIFICATION.

#[test]
fn optional_name_verification_accepts_a_wrong_name_and_reports_it() {
    let d = example("");
    let srv = echo_listener(d.server.clone(), &SecuritySettings::new());
    let stream = connect_with(
        &d.client,
        &optional_name(),
        target("other.example.test"),
        srv.addr,
    )
    .expect("a trusted peer with another name is accepted");
    let info = stream.query_security();
    assert_eq!(
        info.flags,
        InfoFlags::SECURED | InfoFlags::ENCRYPTED,
        "{info}"
    );
    match &info.negotiation_error {
        Some(NegotiationError::PeerNameMismatch {
            expected,
            presented,
        }) => {
            assert_eq!(expected, "other.example.test");
            assert!(
                presented.contains(&"DNS:server.example.test".to_string()),
                "{presented:?}"
            );
        }
        other => panic!("the mismatch must be reported, got {other:?}"),
    }
    echo_once(stream);
    assert_secured(&srv.outcome().result.expect("secured"));

    // A resumed session proves nothing new: the mismatch is still reported.
    let again = connect_with(
        &d.client,
        &optional_name(),
        target("other.example.test"),
        srv.addr,
    )
    .expect("resumed");
    let info = again.query_security();
    assert!(info.resumed, "{info}");
    assert!(
        matches!(&info.negotiation_error, Some(NegotiationError::PeerNameMismatch { expected, .. })
            if expected == "other.example.test"),
        "{info}"
    );
    echo_once(again);
}

#[test]
fn optional_name_verification_still_refuses_an_untrusted_chain() {
    let domain = TrustDomain::new("example.test");
    let stranger = TrustDomain::new("example.test");
    let server = stranger
        .host("server", &[San::Dns("server.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let srv = echo_listener(server, &SecuritySettings::new());
    let err = connect_with(
        &client,
        &optional_name(),
        target("server.example.test"),
        srv.addr,
    )
    .expect_err("optional name verification does not make an untrusted chain trusted");
    assert!(
        matches!(
            err.negotiation(),
            Some(NegotiationError::UntrustedChain {
                peer: Peer::Server,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(srv.outcome().result.is_err());
}

// ---------------------------------------------------------------------------------------
// 6. A listener's peer target names.

fn connect_as(who: &Arc<Platform>, from: IpAddr, addr: SocketAddr) -> Result<SecureStream, Error> {
    connect_from(
        who,
        &SecuritySettings::new(),
        target("server.example.test"),
        from,
        addr,
    )
}

/// `who` connecting from `from` is admitted: echo works, and the server saw it from there.
/// Returns whether the client resumed a session.
fn admitted(srv: &ListenerServer, who: &Arc<Platform>, from: IpAddr) -> bool {
    let stream = connect_as(who, from, srv.addr).expect("admitted");
    let resumed = stream.query_security().resumed;
    echo_once(stream);
    let accepted = srv.outcome();
    assert_eq!(accepted.peer.ip(), from);
    assert_secured(&accepted.result.expect("the server admitted it"));
    resumed
}

/// `who` connecting from `from` is refused with a reason on both sides: the client hears
/// that the server refused its certificate; the server's accept fails with
/// `PeerNotAllowed` naming what was presented (`presented`) and what is allowed.
fn refused(
    srv: &ListenerServer,
    who: &Arc<Platform>,
    from: IpAddr,
    presented: &str,
    allowed: &[&str],
) {
    let client_side = refusal_seen_by_client(connect_as(who, from, srv.addr));
    assert!(
        client_side.contains("the server refused our certificate"),
        "{client_side}"
    );
    let accepted = srv.outcome();
    assert_eq!(accepted.peer.ip(), from);
    let err = accepted
        .result
        .expect_err("the application must get no stream");
    match err.negotiation() {
        Some(NegotiationError::PeerNotAllowed {
            presented: p,
            allowed: a,
        }) => {
            assert!(p.contains(&presented.to_string()), "{p:?}");
            assert_eq!(a, allowed);
        }
        _ => panic!("expected PeerNotAllowed, got {err:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(presented) && allowed.iter().all(|a| message.contains(a)),
        "{message}"
    );
}

#[test]
fn listener_peer_name_admits_its_principal_and_refuses_another_on_both_sides() {
    let p = alice_and_bob();
    let srv = echo_listener(p.server.clone(), &SecuritySettings::new());
    // No name yet: any principal proven under the anchors. bob comes back with a ticket.
    admitted(&srv, &p.bob, FROM_127_0_0_1);
    assert!(
        admitted(&srv, &p.bob, FROM_127_0_0_1),
        "bob resumed his session"
    );
    srv.listener
        .set_peer_target_name(name("alice.example.test"), AddressPrefix::Any);
    admitted(&srv, &p.alice, FROM_127_0_0_1);
    // bob still holds a ticket; resuming must not skip the check.
    refused(
        &srv,
        &p.bob,
        FROM_127_0_0_1,
        "DNS:bob.example.test",
        &["alice.example.test"],
    );
}

#[test]
fn listener_peer_name_set_on_the_socket_before_listen_applies_to_every_address() {
    let p = alice_and_bob();
    let mut socket = SecureSocket::with_platform(Domain::IPV4, p.server.clone()).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    socket
        .set_peer_target_name(name("alice.example.test"))
        .unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let srv = serve_listener(socket.listen(16).unwrap(), echo);
    assert_eq!(
        srv.listener.peer_target_names().bindings(),
        [(name("alice.example.test"), AddressPrefix::Any)]
    );
    for from in [FROM_127_0_0_1, FROM_127_0_0_2] {
        admitted(&srv, &p.alice, from);
        refused(
            &srv,
            &p.bob,
            from,
            "DNS:bob.example.test",
            &["alice.example.test"],
        );
    }
    // It is the binding for every address, deleted as such.
    assert_eq!(srv.listener.delete_peer_target_name(AddressPrefix::Any), 1);
    admitted(&srv, &p.bob, FROM_127_0_0_2);
}

#[test]
fn address_bound_peer_name_applies_only_to_its_addresses_until_deleted() {
    let p = alice_and_bob();
    let srv = echo_listener(p.server.clone(), &SecuritySettings::new());
    let only_127_0_0_2: AddressPrefix = "127.0.0.2/32".parse().unwrap();
    srv.listener
        .set_peer_target_name(name("alice.example.test"), only_127_0_0_2);
    // From 127.0.0.2 only alice; from 127.0.0.1 anyone proven.
    admitted(&srv, &p.alice, FROM_127_0_0_2);
    admitted(&srv, &p.bob, FROM_127_0_0_1);
    refused(
        &srv,
        &p.bob,
        FROM_127_0_0_2,
        "DNS:bob.example.test",
        &["alice.example.test"],
    );
    // Another prefix is another binding: deleting it removes nothing.
    assert_eq!(
        srv.listener
            .delete_peer_target_name("127.0.0.0/8".parse().unwrap()),
        0
    );
    refused(
        &srv,
        &p.bob,
        FROM_127_0_0_2,
        "DNS:bob.example.test",
        &["alice.example.test"],
    );
    assert_eq!(srv.listener.delete_peer_target_name(only_127_0_0_2), 1);
    assert!(srv.listener.peer_target_names().is_empty());
    admitted(&srv, &p.bob, FROM_127_0_0_2);
}

#[test]
fn address_bound_peer_name_applies_to_ipv4_clients_of_a_dual_stack_listener() {
    // An IPv6 listener on [::] sees IPv4 clients as ::ffff:a.b.c.d; an IPv4 prefix still
    // applies to them.
    let p = alice_and_bob();
    let mut socket = SecureSocket::with_platform(Domain::IPV6, p.server.clone()).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    socket.bind("[::]:0".parse().unwrap()).unwrap();
    let srv = serve_listener(socket.listen(16).unwrap(), echo);
    srv.listener
        .set_peer_target_name(name("alice.example.test"), "127.0.0.2/32".parse().unwrap());
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, srv.addr.port()));
    let client_side = refusal_seen_by_client(connect_as(&p.bob, FROM_127_0_0_2, v4));
    assert!(
        client_side.contains("the server refused our certificate"),
        "{client_side}"
    );
    let accepted = srv.outcome();
    assert_eq!(accepted.peer.ip().to_string(), "::ffff:127.0.0.2");
    assert!(
        matches!(
            accepted.result.as_ref().map_err(Error::negotiation),
            Err(Some(NegotiationError::PeerNotAllowed { .. }))
        ),
        "{:?}",
        accepted.result
    );
    echo_once(connect_as(&p.bob, FROM_127_0_0_1, v4).expect("another address is unrestricted"));
    assert_secured(&srv.outcome().result.expect("admitted"));
}

#[test]
fn raw_listener_peer_names_are_compared_raw_with_the_clients_common_name() {
    // Neither client has a DNS name: alice is CN=alice.example.test with only a URI SAN.
    let domain = TrustDomain::new("example.test");
    let server = domain
        .host("server", &[San::Dns("server.example.test")])
        .platform();
    let alice = domain
        .host(
            "alice.example.test",
            &[San::Uri("spiffe://example.test/alice".into())],
        )
        .platform();
    let bob = domain
        .host(
            "bob.example.test",
            &[San::Uri("spiffe://example.test/bob".into())],
        )
        .platform();
    let raw = SecuritySettings::new().with_options(OptionFlags::PEER_NAME_IS_RAW_FORMAT);
    let srv = echo_listener(server.clone(), &raw);
    srv.listener
        .set_peer_target_name(name("alice.example.test"), AddressPrefix::Any);
    admitted(&srv, &alice, FROM_127_0_0_1);
    refused(
        &srv,
        &bob,
        FROM_127_0_0_1,
        "CN:bob.example.test",
        &["alice.example.test"],
    );
    // Parsed, the same name is a DNS name, which a CN does not prove.
    let parsed = echo_listener(server, &SecuritySettings::new());
    parsed
        .listener
        .set_peer_target_name(name("alice.example.test"), AddressPrefix::Any);
    refused(
        &parsed,
        &alice,
        FROM_127_0_0_1,
        "CN:alice.example.test",
        &["alice.example.test"],
    );
}

// ---------------------------------------------------------------------------------------
// 7. A secured listener's port is exclusive.

#[test]
fn a_secured_port_cannot_be_bound_again_even_with_so_reuseport() {
    let d = example("");
    let srv = echo_listener(d.server.clone(), &SecuritySettings::new());
    let addr = srv.addr;

    let mut second = SecureSocket::with_platform(Domain::IPV4, d.server.clone()).unwrap();
    second.set_security(&SecuritySettings::new()).unwrap();
    let err = second
        .bind(addr)
        .expect_err("a second listener on the same port");
    match &err {
        Error::Io(e) => assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("in use") && message.contains(&addr.to_string()),
        "{message}"
    );

    for bind_to in [addr, SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()))] {
        let plain = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        plain.set_reuse_port(true).unwrap();
        plain.set_reuse_address(true).unwrap();
        let shared = plain.bind(&bind_to.into());
        assert_eq!(
            shared.map_err(|e| e.kind()),
            Err(ErrorKind::AddrInUse),
            "an SO_REUSEPORT socket shared the secured port via {bind_to}"
        );
    }
    // The listener is unaffected.
    echo_once(connect(&d.client, "server.example.test", addr).unwrap());
    assert_secured(&srv.outcome().result.unwrap());
}

// ---------------------------------------------------------------------------------------
// 8. Downgrade attempts by an active relay, neither side allowing clear text.

/// Through a relay that does `first_flight` to the client's first flight: the client's
/// connect fails, the server's accept fails, and no application byte crosses in clear in
/// either direction.
fn downgrade_fails(
    first_flight: impl Fn(Vec<u8>) -> FirstFlight + Send + Sync + 'static,
    client_error: fn(&NegotiationError) -> bool,
) {
    let d = example("[defaults]\nhandshake_timeout = \"2s\"\n");
    let srv = serve_listener(
        listen(d.server.clone(), &SecuritySettings::new()),
        |mut s| {
            let _ = s.write_all(SERVER_PAYLOAD);
            echo(s);
        },
    );
    let relay = active_relay(srv.addr, first_flight);
    match connect(&d.client, "server.example.test", relay.addr) {
        Ok(mut stream) => {
            let _ = stream.write_all(PAYLOAD);
            drop(stream);
            panic!("the client connected through the relay");
        }
        Err(err) => assert!(
            err.negotiation().is_some_and(client_error),
            "unexpected client error: {err:?}"
        ),
    }
    let server_side = srv.outcome();
    assert!(
        server_side.result.is_err(),
        "the server accepted: {:?}",
        server_side.result
    );
    relay.wait_idle();
    let from_client = relay.from_client.lock().unwrap();
    let to_client = relay.to_client.lock().unwrap();
    assert!(
        !contains(&from_client, PAYLOAD),
        "the payload crossed in clear"
    );
    assert!(
        !contains(&to_client, SERVER_PAYLOAD),
        "the server's payload crossed in clear"
    );
    assert!(
        tls_records(&from_client).is_some(),
        "the client sent only TLS records: {:02x?}",
        &from_client[..from_client.len().min(32)]
    );
}

#[test]
fn relay_corrupting_the_client_hello_random_cannot_make_either_side_clear() {
    // The ClientHello's random (bytes 11..43 of the record): the server handshakes with a
    // transcript the client does not share, and the client cannot read its answer.
    downgrade_fails(
        |mut hello| {
            for b in &mut hello[11..15] {
                *b ^= 0xff;
            }
            FirstFlight::Forward(hello)
        },
        |e| {
            matches!(
                e,
                NegotiationError::Protocol { .. } | NegotiationError::PeerClosed { .. }
            )
        },
    );
}

#[test]
fn relay_corrupting_the_client_hello_record_header_cannot_make_either_side_clear() {
    // The record header no longer says TLS: the server must not take it for a plain client.
    downgrade_fails(
        |mut hello| {
            hello[0] = b'G';
            FirstFlight::Forward(hello)
        },
        |_| true,
    );
}

#[test]
fn relay_answering_in_clear_instead_of_the_server_cannot_make_either_side_clear() {
    downgrade_fails(
        |_| FirstFlight::Answer(b"HTTP/1.0 200 OK\r\n\r\n".to_vec()),
        |e| {
            matches!(
                e,
                NegotiationError::PeerNotTls {
                    peer: Peer::Server,
                    ..
                }
            )
        },
    );
}

// ---------------------------------------------------------------------------------------
// 9. SKIP_ENFORCEMENT and GUARANTEE_ENCRYPTION.

#[test]
fn skip_enforcement_client_sends_its_bytes_as_written_and_says_so() {
    let d = example("");
    let server = plain_server(|c| c.read_to_end());
    let mut stream = connect_with(
        &d.client,
        &skip_enforcement(),
        target("server.example.test"),
        server.addr,
    )
    .unwrap();
    assert_clear(&stream.query_security(), |e| {
        *e == NegotiationError::EnforcementSkipped
    });
    stream.write_all(PAYLOAD).unwrap();
    stream.close().unwrap();
    let connections = server.connections();
    assert_eq!(connections.len(), 1);
    assert_eq!(
        connections[0].bytes, PAYLOAD,
        "no handshake, the bytes as written"
    );
}

#[test]
fn skip_enforcement_listener_serves_a_plain_client_and_says_so() {
    let d = example("");
    let srv = echo_listener(d.server.clone(), &skip_enforcement());
    let mut plain = TcpStream::connect(srv.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(PAYLOAD).unwrap();
    let mut echoed = vec![0u8; PAYLOAD.len()];
    plain.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, PAYLOAD);
    let info = srv.outcome().result.expect("served without a handshake");
    assert_clear(&info, |e| *e == NegotiationError::EnforcementSkipped);
}

#[test]
fn guarantee_encryption_conflicts_with_skip_enforcement_and_allow_insecure() {
    let d = example("");
    let guarantee = SecuritySettings::new().with_flags(SecurityFlags::GUARANTEE_ENCRYPTION);
    let cases = [
        (
            guarantee
                .clone()
                .with_options(OptionFlags::SKIP_ENFORCEMENT),
            "SKIP_ENFORCEMENT",
        ),
        (
            guarantee
                .with_flags(SecurityFlags::GUARANTEE_ENCRYPTION | SecurityFlags::ALLOW_INSECURE),
            "ALLOW_INSECURE",
        ),
    ];
    for (settings, other) in cases {
        let mut socket = SecureSocket::with_platform(Domain::IPV4, d.client.clone()).unwrap();
        let err = socket.set_security(&settings).unwrap_err();
        match &err {
            Error::Settings(SettingsError::ConflictingFlags { first, second, .. }) => {
                assert_eq!(*first, "GUARANTEE_ENCRYPTION");
                assert_eq!(*second, other);
            }
            _ => panic!("expected a settings error, got {err:?}"),
        }
        assert!(
            socket.security_settings().is_none(),
            "nothing was turned on"
        );
    }
}

#[test]
fn guarantee_encryption_alone_yields_a_secured_encrypted_connection() {
    let d = example("");
    let guarantee = SecuritySettings::new().with_flags(SecurityFlags::GUARANTEE_ENCRYPTION);
    let srv = echo_listener(d.server.clone(), &guarantee);
    let stream = connect_with(
        &d.client,
        &guarantee,
        target("server.example.test"),
        srv.addr,
    )
    .unwrap();
    assert_secured(&stream.query_security());
    echo_once(stream);
    assert_secured(&srv.outcome().result.expect("secured"));
}
