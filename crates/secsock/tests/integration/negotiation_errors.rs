//! Every way securing a connection can fail has its own `NegotiationError`, on the side
//! that can tell, and nothing of the application's crosses in clear.

use crate::support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use secsock::NegotiationError;
use support::*;

fn only_suite(name: &str, suite: &str) -> String {
    format!("[defaults]\ncrypto = \"{name}\"\n[crypto.{name}]\ncipher_suites = [\"{suite}\"]\n")
}

#[test]
fn no_common_cipher_suite_is_reported_on_both_sides() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host_with(
        "server",
        &[San::Dns("server.example.test")],
        &only_suite("chacha", "TLS13_CHACHA20_POLY1305_SHA256"),
        |_| {},
    );
    let client = domain.host_with(
        "client",
        &[San::Dns("client.example.test")],
        &only_suite("aes", "TLS13_AES_128_GCM_SHA256"),
        |_| {},
    );
    let srv = echo_server(server.platform());
    let err = connect(&client.platform(), "server.example.test", srv.addr).unwrap_err();
    assert!(
        matches!(
            err.negotiation(),
            Some(NegotiationError::NoCommonCrypto { .. })
        ),
        "{err}"
    );
    let server_side = srv.outcome().unwrap_err();
    assert!(server_side.contains("no common crypto"), "{server_side}");
}

#[test]
fn a_server_that_answers_in_clear_does_not_speak_tls() {
    let domain = TrustDomain::new("example.test");
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let plain = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = plain.local_addr().unwrap();
    // It answers, and keeps the connection open until the client has given up.
    let (done, until_done) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut s, _) = plain.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        let _ = until_done.recv_timeout(Duration::from_secs(10));
    });
    let err = connect(&client, "server.example.test", addr).unwrap_err();
    drop(done);
    server.join().unwrap();
    assert!(
        matches!(err.negotiation(), Some(NegotiationError::PeerNotTls { .. })),
        "{err}"
    );
}

#[test]
fn a_server_that_closes_at_once_is_reported() {
    let domain = TrustDomain::new("example.test");
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let plain = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = plain.local_addr().unwrap();
    thread::spawn(move || {
        let (s, _) = plain.accept().unwrap();
        drop(s);
    });
    let err = connect(&client, "server.example.test", addr).unwrap_err();
    assert!(
        matches!(err.negotiation(), Some(NegotiationError::PeerClosed { .. })),
        "{err}"
    );
}

#[test]
fn a_plain_tcp_client_gets_nothing_from_a_secured_server() {
    let domain = TrustDomain::new("example.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let mut plain = TcpStream::connect(srv.addr).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: server\r\n\r\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !contains(&answer, b"GET /"),
        "the request was echoed in clear"
    );
    // At most a TLS alert record comes back, never application data.
    if !answer.is_empty() {
        assert_eq!(answer[0], 0x15, "only an alert may be sent: {answer:?}");
    }
    let refusal = srv.outcome().unwrap_err();
    assert!(refusal.contains("does not speak TLS"), "{refusal}");
}

#[test]
fn a_silent_server_times_out_at_the_policys_handshake_timeout() {
    let domain = TrustDomain::new("example.test");
    let fast = "[defaults]\nhandshake_timeout = \"300ms\"\n";
    let client = domain
        .host_with("client", &[San::Dns("client.example.test")], fast, |_| {})
        .platform();
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = silent.local_addr().unwrap();
    // It accepts and says nothing until the client has given up (10 s at most).
    let (done, until_done) = mpsc::channel::<()>();
    let hold = thread::spawn(move || {
        let (s, _) = silent.accept().unwrap();
        let _ = until_done.recv_timeout(Duration::from_secs(10));
        drop(s);
    });
    let started = Instant::now();
    let err = connect(&client, "server.example.test", addr).unwrap_err();
    let took = started.elapsed();
    drop(done);
    match err.negotiation() {
        Some(NegotiationError::Timeout { after }) => assert_eq!(*after, Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?} ({err})"),
    }
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    hold.join().unwrap();
}

/// The blocking connect is bounded by SO_SNDTIMEO, armed with the handshake timeout: a
/// listener whose accept queue is full drops the SYN, and the connect gives up at the
/// timeout with an error that says so, instead of waiting for the kernel's retries.
#[test]
fn a_connect_that_gets_no_answer_times_out_at_the_policys_handshake_timeout() {
    let domain = TrustDomain::new("example.test");
    let fast = "[defaults]\nhandshake_timeout = \"300ms\"\n";
    let client = domain
        .host_with("client", &[San::Dns("client.example.test")], fast, |_| {})
        .platform();
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (one connection, never accepted; connect returns once it is
    // queued); later SYNs are dropped.
    let filler = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let err = connect(&client, "server.example.test", addr).unwrap_err();
    let took = started.elapsed();
    let text = err.to_string();
    assert!(
        text.contains(&format!("connecting to {addr} timed out after 300ms")),
        "{text}"
    );
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(900),
        "gave up after {took:?}, not at the 300 ms handshake timeout"
    );
    drop(filler);
}

/// The blocking listener's handshake meets its deadline against a client that sends its
/// hello a byte at a time, each byte well within any per-read timeout.
#[test]
fn a_client_trickling_its_hello_to_a_blocking_listener_is_cut_at_the_handshake_timeout() {
    let domain = TrustDomain::new("example.test");
    let fast = "[defaults]\nhandshake_timeout = \"500ms\"\n";
    let server = domain.host_with("server", &[San::Dns("server.example.test")], fast, |_| {});
    let srv = echo_server(server.platform());
    let mut stream = TcpStream::connect(srv.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let connected = Instant::now();
    // A handshake record announcing 512 bytes, sent one byte every 50 ms.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.resize(5 + 512, 0x2a);
    let mut sent = 0;
    let mut buf = [0u8; 64];
    let ended = loop {
        assert!(
            connected.elapsed() < Duration::from_secs(5),
            "never cut off"
        );
        match stream.read(&mut buf) {
            Ok(n) => break Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => break Err(e.kind()),
        }
        if stream.write_all(&hello[sent..sent + 1]).is_ok() {
            sent += 1;
        }
    };
    let after = connected.elapsed();
    assert!(
        matches!(ended, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "{ended:?}"
    );
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_millis(1500),
        "cut off after {after:?}, not at the 500 ms handshake timeout"
    );
    assert!(sent > 5 && sent < hello.len(), "sent {sent} bytes");
    let failure = srv.outcome().unwrap_err();
    assert!(
        failure.contains("did not complete within 500ms"),
        "{failure}"
    );
}

/// A read that starts late in the handshake is bounded by what is left, not by a timeout
/// armed earlier: the client sends a byte at once, another at 400 ms, then nothing. The
/// server's read after the second byte must end at the 500 ms deadline, not 500 ms later.
#[test]
fn a_client_that_stalls_late_in_its_hello_is_cut_at_the_deadline_not_later() {
    let domain = TrustDomain::new("example.test");
    let fast = "[defaults]\nhandshake_timeout = \"500ms\"\n";
    let server = domain.host_with("server", &[San::Dns("server.example.test")], fast, |_| {});
    let srv = echo_server(server.platform());
    let mut stream = TcpStream::connect(srv.addr).unwrap();
    let connected = Instant::now();
    stream.write_all(&[0x16]).unwrap();
    thread::sleep(Duration::from_millis(400));
    stream.write_all(&[0x03]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let ended = stream.read(&mut buf).map_err(|e| e.kind());
    let after = connected.elapsed();
    assert!(
        matches!(ended, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "{ended:?}"
    );
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_millis(700),
        "cut off after {after:?}, not at the 500 ms handshake timeout"
    );
    let failure = srv.outcome().unwrap_err();
    assert!(
        failure.contains("did not complete within 500ms"),
        "{failure}"
    );
}

#[test]
fn a_silent_client_times_out_on_the_server_while_others_are_served() {
    let domain = TrustDomain::new("example.test");
    let fast = "[defaults]\nhandshake_timeout = \"400ms\"\n";
    let server = domain.host_with("server", &[San::Dns("server.example.test")], fast, |_| {});
    let srv = echo_server(server.platform());
    let _silent = TcpStream::connect(srv.addr).unwrap();
    // Meanwhile a real client is served at once.
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let started = Instant::now();
    connect(&client, "server.example.test", srv.addr)
        .unwrap()
        .close()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the silent client delayed another"
    );
    let mut outcomes = [srv.outcome(), srv.outcome()];
    outcomes.sort_by_key(|o| o.is_ok());
    let timeout = outcomes[0].as_ref().unwrap_err();
    assert!(
        timeout.contains("did not complete within 400ms"),
        "{timeout}"
    );
    assert!(outcomes[1].is_ok());
}

#[test]
fn key_updates_follow_the_policys_rekey_limit_and_lose_nothing() {
    let domain = TrustDomain::new("example.test");
    let rekey = "[crypto.standard]\nrekey_after = { bytes = \"64KiB\" }\n";
    let srv = serve(
        domain
            .host_with("server", &[San::Dns("server.example.test")], rekey, |_| {})
            .platform(),
        |mut s| {
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            s.write_all(&checksum(&all).to_be_bytes()).unwrap();
            s.write_all(&s.key_updates_sent().to_be_bytes()).unwrap();
            s.close().unwrap();
        },
    );
    let client = domain
        .host_with("client", &[San::Dns("client.example.test")], rekey, |_| {})
        .platform();
    let data = pattern(4 * 1024 * 1024, 9);
    let mut stream = connect(&client, "server.example.test", srv.addr).unwrap();
    stream.write_all(&data).unwrap();
    assert!(
        stream.key_updates_sent() >= 60,
        "client sent {} key updates for 4 MiB at 64 KiB",
        stream.key_updates_sent()
    );
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = [0u8; 16];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(
        u64::from_be_bytes(reply[..8].try_into().unwrap()),
        checksum(&data)
    );
    assert_eq!(
        u64::from_be_bytes(reply[8..].try_into().unwrap()),
        0,
        "the server sent only 16 bytes"
    );
    stream.close().unwrap();
}

#[test]
fn a_server_certificate_not_yet_valid_is_refused_with_its_start_date() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host_with("server", &[San::Dns("server.example.test")], "", |p| {
        p.not_before = rcgen::date_time_ymd(2099, 1, 1);
        p.not_after = rcgen::date_time_ymd(2100, 1, 1);
    });
    let srv = echo_server(server.platform());
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let err = connect(&client, "server.example.test", srv.addr).unwrap_err();
    match err.negotiation() {
        Some(
            e @ NegotiationError::CertificateNotYetValid {
                not_before: Some(_),
                ..
            },
        ) => {
            assert!(
                e.to_string().contains("valid from 2099-01-01T00:00:00Z"),
                "{e}"
            )
        }
        other => panic!("expected CertificateNotYetValid, got {other:?} ({err})"),
    }
    // The server learns that its certificate was refused, and why.
    let server_side = srv.outcome().unwrap_err();
    assert!(
        server_side.contains("certificate_expired") && server_side.contains("not yet valid"),
        "{server_side}"
    );
}
