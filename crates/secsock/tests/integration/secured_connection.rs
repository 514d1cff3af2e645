//! secsock client <-> secsock server over real TCP on loopback: both identities proven,
//! data of every size arrives intact, closes are clean, truncation is an error.

use crate::support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use secsock::{InfoFlags, NegotiationError, PrincipalName, ProofMethod};
use support::*;

fn names(info: &secsock::SecurityInfo) -> Vec<String> {
    info.peer_machine
        .as_ref()
        .unwrap()
        .names
        .iter()
        .map(PrincipalName::to_string)
        .collect()
}

#[test]
fn both_sides_prove_their_identity_and_query_reports_it() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host(
        "server",
        &[
            San::Dns("server.example.test"),
            San::Uri("spiffe://example.test/server".into()),
        ],
    );
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let srv = echo_server(server.platform());

    let mut stream = connect(&client.platform(), "host/server.example.test", srv.addr).unwrap();
    let info = stream.query_security();
    assert_eq!(info.flags, InfoFlags::SECURED | InfoFlags::ENCRYPTED);
    assert_eq!(
        names(&info),
        ["server.example.test", "spiffe://example.test/server"]
    );
    let id = info.peer_machine.as_ref().unwrap();
    assert_eq!(id.proven_by, ProofMethod::Certificate);
    assert!(
        id.not_before.unwrap() < std::time::SystemTime::now()
            && std::time::SystemTime::now() < id.not_after.unwrap()
    );
    assert_eq!(id.chain.len(), 1);
    assert_eq!(info.protocol_version.as_deref(), Some("TLSv1.3"));
    let kx = info.key_exchange_group.as_ref().unwrap();
    assert_eq!(
        kx.name, "X25519MLKEM768",
        "post-quantum hybrid first by default"
    );
    assert!(kx.post_quantum);
    assert_eq!(
        info.cipher_suite.as_deref(),
        Some("TLS13_AES_128_GCM_SHA256")
    );
    assert!(!info.resumed);
    assert!(info.session_id.is_some() && info.connection_id.is_some());
    assert_eq!(info.negotiation_error, None);

    let server_info = srv.outcome().unwrap();
    assert_eq!(
        names(&server_info),
        ["client.example.test"],
        "the server records the client's machine identity"
    );
    assert!(server_info.is_encrypted());

    stream.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"x");
    stream.close().unwrap();
}

#[test]
fn transfers_of_1_byte_16_kib_and_64_mib_arrive_intact() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    // The server reads everything until close_notify, then answers with the length and
    // checksum of what it got, and closes.
    let srv = serve(server.platform(), |mut stream| {
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        let reply = format!("{} {:016x}", all.len(), checksum(&all));
        stream.write_all(reply.as_bytes()).unwrap();
        stream.close().unwrap();
    });
    for (len, seed) in [(1usize, 1u64), (16 * 1024, 2), (64 * 1024 * 1024, 3)] {
        let data = pattern(len, seed);
        let mut stream = connect(&client, "server.example.test", srv.addr).unwrap();
        stream.write_all(&data).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert_eq!(
            reply,
            format!("{len} {:016x}", checksum(&data)),
            "transfer of {len} bytes"
        );
        stream.close().unwrap();
    }
}

#[test]
fn echo_round_trips_with_vectored_writes() {
    let domain = TrustDomain::new("example.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let mut stream = connect(&client, "server.example.test", srv.addr).unwrap();
    let parts = [
        std::io::IoSlice::new(b"hello, "),
        std::io::IoSlice::new(b"secured "),
        std::io::IoSlice::new(b"world"),
    ];
    let mut written = stream.write_vectored(&parts).unwrap();
    let total = b"hello, secured world";
    if written < total.len() {
        stream.write_all(&total[written..]).unwrap();
        written = total.len();
    }
    let mut back = vec![0u8; written];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, total);
    stream.close().unwrap();
}

#[test]
fn many_connections_in_a_row() {
    let domain = TrustDomain::new("example.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    for i in 0..100u32 {
        let mut stream = connect(&client, "host/server.example.test", srv.addr).unwrap();
        let msg = format!("message {i}");
        stream.write_all(msg.as_bytes()).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        stream.read_to_string(&mut back).unwrap();
        assert_eq!(back, msg);
        stream.close().unwrap();
    }
}

#[test]
fn eof_without_close_notify_is_reported_as_truncation() {
    let domain = TrustDomain::new("example.test");
    // The server writes, then drops the connection without close_notify.
    let srv = serve(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
        |mut stream| {
            stream.write_all(b"partial").unwrap();
            drop(stream);
        },
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let mut stream = connect(&client, "server.example.test", srv.addr).unwrap();
    let mut got = Vec::new();
    let err = stream.read_to_end(&mut got).unwrap_err();
    assert_eq!(got, b"partial", "data before the cut is delivered");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("without close_notify"), "{err}");
}

#[test]
fn peer_name_mismatch_fails_closed_with_both_names() {
    let domain = TrustDomain::new("example.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let err = connect(&client, "host/other.example.test", srv.addr).unwrap_err();
    match err.negotiation() {
        Some(NegotiationError::PeerNameMismatch {
            expected,
            presented,
        }) => {
            assert_eq!(expected, "host/other.example.test");
            assert_eq!(
                presented,
                &[
                    "DNS:server.example.test".to_string(),
                    "CN:server".to_string()
                ]
            );
        }
        other => panic!("expected a name mismatch, got {other:?} ({err})"),
    }
    // The server saw the client abort the handshake; nothing was delivered.
    assert!(srv.outcome().is_err());
}

#[test]
fn optional_name_verification_reports_the_mismatch() {
    let domain = TrustDomain::new("example.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let settings = secsock::SecuritySettings::new()
        .with_options(secsock::OptionFlags::OPTIONAL_PEER_NAME_VERIFICATION);
    let stream = connect_with(
        &client,
        &settings,
        Some(secsock::PeerTargetName::parse("other.example.test").unwrap()),
        srv.addr,
    )
    .unwrap();
    let info = stream.query_security();
    assert!(info.is_secured());
    match &info.negotiation_error {
        Some(NegotiationError::PeerNameMismatch { expected, .. }) => {
            assert_eq!(expected, "other.example.test")
        }
        other => panic!("expected the mismatch to be reported, got {other:?}"),
    }
    stream.close().unwrap();
}

#[test]
fn a_client_from_another_trust_domain_is_refused_on_both_sides() {
    let domain = TrustDomain::new("example.test");
    let stranger = TrustDomain::new("elsewhere.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    // The stranger trusts our CA (so it accepts the server), but the server does not trust it.
    let client = stranger.host("client", &[San::Dns("client.elsewhere.test")]);
    let policy = write_policy(
        &client.dir,
        &client.cert,
        &client.key,
        &[&domain.ca_path],
        "",
    );
    let platform = secsock::Platform::load(policy).unwrap();
    let result = connect(&platform, "server.example.test", srv.addr).and_then(|mut s| {
        // TLS 1.3: the client finishes first; the server's refusal arrives as an alert.
        s.write_all(b"hello")?;
        let mut buf = [0u8; 8];
        let _ = s.read(&mut buf)?;
        Ok(())
    });
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains("refused our certificate")
            && err.to_string().contains("unknown_ca"),
        "{err}"
    );
    let server_side = srv.outcome().unwrap_err();
    assert!(
        server_side.contains("client's certificate is not trusted"),
        "{server_side}"
    );
}

#[test]
fn concurrent_clients_are_served_independently() {
    let domain = TrustDomain::new("example.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let client = client.clone();
            let addr = srv.addr;
            thread::spawn(move || {
                let data = pattern(256 * 1024 + i as usize, i);
                let mut stream = connect(&client, "server.example.test", addr).unwrap();
                let mut back = vec![0u8; data.len()];
                // Read each chunk's echo before sending the next, so no buffer fills.
                let mut at = 0;
                for chunk in data.chunks(16 * 1024) {
                    stream.write_all(chunk).unwrap();
                    stream.read_exact(&mut back[at..at + chunk.len()]).unwrap();
                    at += chunk.len();
                }
                assert_eq!(checksum(&back), checksum(&data));
                stream.close().unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// The socket timeouts that bound the handshake do not bound the connection: with a
/// 200 ms handshake timeout, each side waits 600 ms for the other's data and gets it (the
/// stream clears a handshake timeout when it fires, instead of on every connection).
#[test]
fn reads_after_the_handshake_wait_longer_than_the_handshake_timeout() {
    use std::time::{Duration, Instant};
    let domain = TrustDomain::new("example.test");
    let fast = "[defaults]\nhandshake_timeout = \"200ms\"\n";
    let server = domain.host_with("server", &[San::Dns("server.example.test")], fast, |_| {});
    let client = domain
        .host_with("client", &[San::Dns("client.example.test")], fast, |_| {})
        .platform();
    let srv = serve(server.platform(), |mut stream| {
        let mut request = [0u8; 5];
        if stream.read_exact(&mut request).is_ok() {
            thread::sleep(Duration::from_millis(600));
            let _ = stream.write_all(&request);
            let _ = stream.close();
        }
    });
    let mut stream = connect(&client, "server.example.test", srv.addr).unwrap();
    srv.outcome().unwrap();
    thread::sleep(Duration::from_millis(600));
    stream.write_all(b"hello").unwrap();
    let asked = Instant::now();
    let mut answer = [0u8; 5];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"hello");
    assert!(asked.elapsed() >= Duration::from_millis(500));
    assert_eq!(stream.read(&mut answer).unwrap(), 0, "then close_notify");
}

/// A read timeout the application sets after the handshake is its own: it fires.
#[test]
fn a_read_timeout_set_after_the_handshake_fires() {
    use std::time::{Duration, Instant};
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    // The server stays silent until the test is done (drops `done`), 10 s at most.
    let (done, until_done) = std::sync::mpsc::channel::<()>();
    let until_done = std::sync::Mutex::new(until_done);
    let srv = serve(server.platform(), move |stream| {
        let _ = until_done
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        drop(stream);
    });
    let mut stream = connect(&client, "server.example.test", srv.addr).unwrap();
    srv.outcome().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let started = Instant::now();
    let e = stream.read(&mut [0u8; 8]).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(140) && took < Duration::from_secs(1),
        "{took:?}"
    );
    drop(done);
}
