//! Enforcement (SPEC §1 and §5) with the async API (`secsock::tokio`): the blocking
//! tests' scenarios for `ALLOW_INSECURE` on both sides, no fallback after a failed
//! verification, a listener's peer target names, and `SKIP_ENFORCEMENT`. Peers are real
//! and on loopback: secsock async sockets, plain tokio TCP clients, plain TCP servers that
//! record what they received.
#![cfg(feature = "tokio")]

use crate::support;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secsock::error::Peer;
use secsock::fallback::CLEAR_TEXT_WAIT;
use secsock::{AddressPrefix, Domain, Error, NegotiationError, Platform, SecuritySettings};
use support::async_enforcement_fixtures::*;
use support::async_fixtures::*;
use support::enforcement_fixtures::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn echo_listener(platform: Arc<Platform>, settings: &SecuritySettings) -> AsyncListenerServer {
    serve_async_listener(listen_async(platform, settings, 128), echo_async)
}

/// What a plain server received on each connection; its fixture waits on std threads.
fn received(server: &PlainServer) -> Vec<Received> {
    tokio::task::block_in_place(|| server.connections())
}

/// One echo through `stream`, then a clean close.
async fn echo_once(mut stream: AsyncStream) {
    stream.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
    stream.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// A plain tokio TCP client against an async listener with ALLOW_INSECURE, and a TLS client.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_listener_serves_a_plain_client_that_speaks_first_in_clear() {
    let d = example("");
    let mut srv = echo_listener(d.server.clone(), &allow_insecure());
    let mut plain = TcpStream::connect(srv.addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: server.example.test\r\n\r\n";
    plain.write_all(request).await.unwrap();
    let mut echoed = vec![0u8; request.len()];
    plain.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, request, "the application echoes in clear");
    plain.shutdown().await.unwrap();
    assert_eq!(plain.read(&mut [0u8; 1]).await.unwrap(), 0);

    let info = srv.outcome().await.result.expect("served in clear");
    assert_clear(&info, |e| {
        matches!(e, NegotiationError::PeerNotTls { peer: Peer::Client, detail }
            if detail.contains("not a TLS ClientHello"))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_listener_greets_a_waiting_plain_client_in_clear_after_the_clear_text_wait()
{
    let d = example("");
    let listener = listen_async(d.server.clone(), &allow_insecure(), 128);
    let mut srv = serve_async_listener(listener, |mut s| async move {
        s.write_all(GREETING).await.unwrap();
        echo_async(s).await;
    });
    let started = Instant::now();
    let mut plain = TcpStream::connect(srv.addr).await.unwrap();
    let mut greeting = [0u8; GREETING.len()];
    tokio::time::timeout(Duration::from_secs(5), plain.read_exact(&mut greeting))
        .await
        .expect("greeted within 5 s")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(&greeting, GREETING, "the application's greeting, in clear");
    assert!(
        took >= CLEAR_TEXT_WAIT && took < CLEAR_TEXT_WAIT + Duration::from_secs(2),
        "greeted after {took:?}, expected after about {CLEAR_TEXT_WAIT:?}"
    );
    let info = srv.outcome().await.result.expect("served in clear");
    assert_clear(&info, |e| {
        matches!(e, NegotiationError::PeerNotTls { peer: Peer::Client, detail }
            if detail.contains("sent nothing"))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_listener_still_secures_a_tls_client() {
    let d = example("");
    let mut srv = echo_listener(d.server.clone(), &allow_insecure());
    let stream = connect_async(&d.client, "server.example.test", srv.addr)
        .await
        .unwrap();
    assert_secured(&stream.query_security());
    echo_once(stream).await;
    assert_secured(&srv.outcome().await.result.expect("secured"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_listener_reports_a_client_reset_before_its_first_bytes_as_that_clients_failure(
) {
    // `accept` fails with an I/O error only when the listening socket itself fails; a
    // client's reset is that client's failure, with or without ALLOW_INSECURE.
    let d = example("");
    for (settings, label) in [
        (SecuritySettings::new(), "without ALLOW_INSECURE"),
        (allow_insecure(), "with ALLOW_INSECURE"),
    ] {
        let listener = listen_async(d.server.clone(), &settings, 16);
        connect_and_reset(listener.local_addr().unwrap());
        let err = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("accept returns within 5 s")
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
// A plain TCP server against an async secsock client, with and without ALLOW_INSECURE.

/// Without ALLOW_INSECURE: connect fails with `expected`, and the plain server saw one
/// connection carrying only the ClientHello, never the payload.
async fn plain_server_never_receives_the_payload(
    behaviour: fn(&mut PlainConnection),
    expected: fn(&NegotiationError) -> bool,
) {
    let d = example("");
    let server = plain_server(behaviour);
    let result = match connect_async(&d.client, "server.example.test", server.addr).await {
        // An application sends its payload as soon as it has a stream.
        Ok(mut stream) => {
            let _ = stream.write_all(PAYLOAD).await;
            let _ = stream.close().await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    let err = result.expect_err("no clear text without ALLOW_INSECURE");
    assert!(
        err.negotiation().is_some_and(expected),
        "unexpected error: {err:?}"
    );
    let connections = received(&server);
    assert_eq!(connections.len(), 1, "no second attempt: {connections:?}");
    assert_only_a_client_hello(&connections[0].bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_server_speaking_first_never_receives_the_payload_without_allow_insecure() {
    plain_server_never_receives_the_payload(speaks_first, |e| {
        matches!(
            e,
            NegotiationError::PeerNotTls {
                peer: Peer::Server,
                ..
            }
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_server_hanging_up_on_the_client_hello_never_receives_the_payload_without_allow_insecure(
) {
    plain_server_never_receives_the_payload(hangs_up_on_tls, |e| {
        matches!(e, NegotiationError::PeerClosed { peer: Peer::Server })
    })
    .await;
}

/// With ALLOW_INSECURE, bound to 127.0.0.2: connect succeeds on a second connection from
/// the same local address, in clear, with `reason`; the first connection carried only the
/// ClientHello, the second the payload as written.
async fn allow_insecure_client_reconnects_in_clear(
    behaviour: fn(&mut PlainConnection),
    greeting: &[u8],
    reason: &str,
) {
    let d = example("");
    let server = plain_server(behaviour);
    let mut stream = connect_async_from(
        &d.client,
        &allow_insecure(),
        target("server.example.test"),
        FROM_127_0_0_2,
        server.addr,
    )
    .await
    .expect("ALLOW_INSECURE connects in clear to a server that does not speak TLS");
    assert_clear(&stream.query_security(), |e| {
        matches!(e, NegotiationError::PeerNotTls { peer: Peer::Server, detail }
            if detail.contains(reason) && detail.contains("ALLOW_INSECURE"))
    });
    if !greeting.is_empty() {
        let mut got = vec![0u8; greeting.len()];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, greeting, "the server's greeting arrives in clear");
    }
    stream.write_all(PAYLOAD).await.unwrap();
    stream.close().await.unwrap();

    let connections = received(&server);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_client_reconnects_in_clear_to_a_plain_server_that_speaks_first() {
    allow_insecure_client_reconnects_in_clear(
        speaks_first,
        b"220 ready\r\n",
        "bytes that are not TLS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_client_reconnects_in_clear_to_a_plain_server_that_hangs_up() {
    allow_insecure_client_reconnects_in_clear(hangs_up_on_tls, b"", "closed the connection").await;
}

// ---------------------------------------------------------------------------------------
// No fallback after a failed verification.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_client_does_not_fall_back_on_a_wrong_server_name() {
    let domain = TrustDomain::new("example.test");
    let impostor = domain
        .host("impostor", &[San::Dns("impostor.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let listener = listen_async(impostor, &SecuritySettings::new(), 128);
    let mut srv = serve_async_listener(listener, |mut s| async move {
        let _ = s.write_all(SERVER_PAYLOAD).await;
        echo_async(s).await;
    });
    let err = connect_async_with(
        &client,
        &allow_insecure(),
        target("server.example.test"),
        srv.addr,
    )
    .await
    .expect_err("a wrong name is never a reason for clear text");
    assert!(
        matches!(err.negotiation(), Some(NegotiationError::PeerNameMismatch { expected, presented })
            if expected == "server.example.test"
                && presented.contains(&"DNS:impostor.example.test".to_string())),
        "{err:?}"
    );
    let refused = srv.outcome().await;
    assert!(refused.result.is_err(), "{:?}", refused.result);
    assert_eq!(
        srv.connections().await,
        [refused.peer],
        "exactly one connection: no second, clear attempt"
    );
}

// ---------------------------------------------------------------------------------------
// A listener's peer target names.

async fn connect_as(
    who: &Arc<Platform>,
    from: IpAddr,
    addr: SocketAddr,
) -> Result<AsyncStream, Error> {
    connect_async_from(
        who,
        &SecuritySettings::new(),
        target("server.example.test"),
        from,
        addr,
    )
    .await
}

/// `who` connecting from `from` is admitted: echo works, and the server saw it from there.
async fn admitted(srv: &mut AsyncListenerServer, who: &Arc<Platform>, from: IpAddr) {
    let stream = connect_as(who, from, srv.addr).await.expect("admitted");
    echo_once(stream).await;
    let accepted = srv.outcome().await;
    assert_eq!(accepted.peer.ip(), from);
    assert_secured(&accepted.result.expect("the server admitted it"));
}

/// `who` connecting from `from` is refused with a reason on both sides: the client hears
/// that the server refused its certificate (in TLS 1.3 on its first read); the server's
/// accept fails with `PeerNotAllowed` naming `presented` and `allowed`.
async fn refused(
    srv: &mut AsyncListenerServer,
    who: &Arc<Platform>,
    from: IpAddr,
    presented: &str,
    allowed: &[&str],
) {
    let client_side = match connect_as(who, from, srv.addr).await {
        Err(e) => e.to_string(),
        Ok(mut stream) => {
            let mut buf = [0u8; 16];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf));
            match read.await.expect("the refusal arrives within 5 s") {
                Ok(n) => panic!("a refused client read {n} bytes"),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
                    e.to_string()
                }
            }
        }
    };
    assert!(
        client_side.contains("the server refused our certificate"),
        "{client_side}"
    );
    let accepted = srv.outcome().await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_peer_name_admits_its_principal_and_refuses_another_on_both_sides() {
    let p = alice_and_bob();
    let mut srv = echo_listener(p.server.clone(), &SecuritySettings::new());
    admitted(&mut srv, &p.bob, FROM_127_0_0_1).await;
    srv.listener
        .set_peer_target_name(name("alice.example.test"), AddressPrefix::Any);
    admitted(&mut srv, &p.alice, FROM_127_0_0_1).await;
    refused(
        &mut srv,
        &p.bob,
        FROM_127_0_0_1,
        "DNS:bob.example.test",
        &["alice.example.test"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_peer_name_set_on_the_socket_before_listen_applies_to_every_address() {
    let p = alice_and_bob();
    let mut socket = AsyncSocket::with_platform(Domain::IPV4, p.server.clone()).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    socket
        .set_peer_target_name(name("alice.example.test"))
        .unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let mut srv = serve_async_listener(socket.listen(16).unwrap(), echo_async);
    for from in [FROM_127_0_0_1, FROM_127_0_0_2] {
        admitted(&mut srv, &p.alice, from).await;
        refused(
            &mut srv,
            &p.bob,
            from,
            "DNS:bob.example.test",
            &["alice.example.test"],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_bound_peer_name_applies_only_to_its_addresses_until_deleted() {
    let p = alice_and_bob();
    let mut srv = echo_listener(p.server.clone(), &SecuritySettings::new());
    let only_127_0_0_2: AddressPrefix = "127.0.0.2/32".parse().unwrap();
    srv.listener
        .set_peer_target_name(name("alice.example.test"), only_127_0_0_2);
    admitted(&mut srv, &p.alice, FROM_127_0_0_2).await;
    admitted(&mut srv, &p.bob, FROM_127_0_0_1).await;
    refused(
        &mut srv,
        &p.bob,
        FROM_127_0_0_2,
        "DNS:bob.example.test",
        &["alice.example.test"],
    )
    .await;
    assert_eq!(srv.listener.delete_peer_target_name(only_127_0_0_2), 1);
    assert!(srv.listener.peer_target_names().is_empty());
    admitted(&mut srv, &p.bob, FROM_127_0_0_2).await;
}

// ---------------------------------------------------------------------------------------
// SKIP_ENFORCEMENT.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_enforcement_client_sends_its_bytes_as_written_and_says_so() {
    let d = example("");
    let server = plain_server(|c| c.read_to_end());
    let mut stream = connect_async_with(
        &d.client,
        &skip_enforcement(),
        target("server.example.test"),
        server.addr,
    )
    .await
    .unwrap();
    assert_clear(&stream.query_security(), |e| {
        *e == NegotiationError::EnforcementSkipped
    });
    stream.write_all(PAYLOAD).await.unwrap();
    stream.close().await.unwrap();
    let connections = received(&server);
    assert_eq!(connections.len(), 1);
    assert_eq!(
        connections[0].bytes, PAYLOAD,
        "no handshake, the bytes as written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_enforcement_listener_serves_a_plain_client_and_says_so() {
    let d = example("");
    let mut srv = echo_listener(d.server.clone(), &skip_enforcement());
    let mut plain = TcpStream::connect(srv.addr).await.unwrap();
    plain.write_all(PAYLOAD).await.unwrap();
    let mut echoed = vec![0u8; PAYLOAD.len()];
    plain.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, PAYLOAD);
    let info = srv
        .outcome()
        .await
        .result
        .expect("served without a handshake");
    assert_clear(&info, |e| *e == NegotiationError::EnforcementSkipped);
}
