//! Session resumption: a second connection resumes, a session proven for one name is
//! never used for another, and a resumed session is checked again.

use crate::support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use secsock::{NegotiationError, Platform, ProofMethod, SecurityInfo};
use support::*;

/// One echo exchange (which also receives the server's session tickets), then a clean close.
fn exchange(client: &Arc<Platform>, target: &str, addr: SocketAddr) -> SecurityInfo {
    let mut stream = connect(client, target, addr).unwrap_or_else(|e| panic!("{target}: {e}"));
    stream.write_all(b"ping").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"ping");
    let info = stream.query_security();
    stream.close().unwrap();
    info
}

#[test]
fn a_second_connection_resumes_with_the_same_session_id() {
    let domain = TrustDomain::new("example.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();

    let first = exchange(&client, "server.example.test", srv.addr);
    let first_server = srv.outcome().unwrap();
    assert!(!first.resumed && !first_server.resumed);

    let second = exchange(&client, "server.example.test", srv.addr);
    let second_server = srv.outcome().unwrap();
    assert!(second.resumed, "the client resumed");
    assert!(second_server.resumed, "the server saw a resumption");
    assert_eq!(
        second.peer_machine.as_ref().unwrap().proven_by,
        ProofMethod::ResumedSession
    );
    assert_eq!(second.session_id, first.session_id, "client: same session");
    assert_eq!(
        second_server.session_id, first_server.session_id,
        "server: same session"
    );
    assert_ne!(
        second.connection_id, first.connection_id,
        "a new connection"
    );
    assert_eq!(
        second.peer_machine.unwrap().names,
        first.peer_machine.unwrap().names
    );
    assert_eq!(
        second_server.peer_machine.unwrap().names,
        first_server.peer_machine.unwrap().names
    );

    // Resumed from a resumed connection: still the original session.
    let third = exchange(&client, "server.example.test", srv.addr);
    let third_server = srv.outcome().unwrap();
    assert!(third.resumed);
    assert_eq!(third.session_id, first.session_id);
    assert_eq!(third_server.session_id, first_server.session_id);
}

#[test]
fn a_session_for_one_name_is_never_used_for_another() {
    let domain = TrustDomain::new("example.test");
    // One server, one address, one certificate proving two names.
    let srv = echo_server(
        domain
            .host(
                "server",
                &[San::Dns("a.example.test"), San::Dns("b.example.test")],
            )
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();

    let a1 = exchange(&client, "a.example.test", srv.addr);
    assert!(!a1.resumed);
    let b1 = exchange(&client, "b.example.test", srv.addr);
    assert!(
        !b1.resumed,
        "a session proven for a.example.test must not be resumed for b.example.test"
    );
    assert_ne!(b1.session_id, a1.session_id);
    // The same host under another spelling is another target name too.
    let spn = exchange(&client, "host/a.example.test", srv.addr);
    assert!(!spn.resumed);
    let a2 = exchange(&client, "a.example.test", srv.addr);
    assert!(a2.resumed && a2.session_id == a1.session_id);
    let b2 = exchange(&client, "b.example.test", srv.addr);
    assert!(b2.resumed && b2.session_id == b1.session_id);
}

#[test]
fn a_resumed_session_is_checked_again_and_refused_once_the_certificate_expired() {
    let domain = TrustDomain::new("example.test");
    // The server's certificate expires three seconds from now.
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let server = domain.host_with("server", &[San::Dns("server.example.test")], "", |p| {
        p.not_after = expiry
    });
    let srv = echo_server(server.platform());
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();

    let first = exchange(&client, "server.example.test", srv.addr);
    assert!(!first.resumed);
    std::thread::sleep(Duration::from_millis(4500));
    // The client holds a valid ticket; rustls alone would resume without looking at the
    // (now expired) stored chain.
    let err = connect(&client, "server.example.test", srv.addr).unwrap_err();
    assert!(
        matches!(
            err.negotiation(),
            Some(NegotiationError::CertificateExpired { .. })
        ),
        "expected the expired chain to be refused, got {err}"
    );
}

#[test]
fn resumption_can_be_turned_off_by_policy() {
    let domain = TrustDomain::new("example.test");
    let no_tickets = "[crypto.standard]\nsession_lifetime = \"0s\"\n";
    let srv = echo_server(
        domain
            .host_with(
                "server",
                &[San::Dns("server.example.test")],
                no_tickets,
                |_| {},
            )
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    exchange(&client, "server.example.test", srv.addr);
    let second = exchange(&client, "server.example.test", srv.addr);
    assert!(!second.resumed);
}
