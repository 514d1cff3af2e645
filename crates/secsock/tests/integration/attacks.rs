//! The attacks an outside review found (issue 12), each reproduced from outside over real
//! TCP on loopback with real certificates, real secsock peers and raw rustls or plain TCP
//! attackers. Every test here failed before its defence; `docs/DESIGN.md` §5 ("Threat
//! model") lists them with the defence each one covers. (Slow and silent peers, item 6, are
//! in `slow_peers.rs`; user authentication and impersonation attacks beside those features.)

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use secsock::{
    AddressPrefix, Error, NegotiationError, PeerTargetName, PrincipalName, SecuritySettings,
};
use support::enforcement_fixtures::*;
use support::*;

fn names(info: &secsock::SecurityInfo) -> Vec<String> {
    info.peer_machine
        .as_ref()
        .map(|m| m.names.iter().map(PrincipalName::to_string).collect())
        .unwrap_or_default()
}

fn is_mismatch(e: &Error) -> bool {
    matches!(
        e.negotiation(),
        Some(NegotiationError::PeerNameMismatch { .. })
    )
}

// ---------------------------------------------------------------------------------------
// Item 1: name constraints bypassed through cross-form names.

/// A sub-CA constrained to `DNS:.dept.example.test` issues a leaf whose only name is the
/// Kerberos principal SAN `host/db.example.test@ANY`. Through it, the leaf must not prove
/// `db.example.test`; the same leaf under an unconstrained certificate of the same sub-CA
/// (same name, same key) does.
#[test]
fn a_name_constrained_sub_ca_cannot_vouch_for_another_host_through_a_kerberos_san() {
    let domain = TrustDomain::new("example.test");
    let narrow = domain.sub_ca("dept CA", &[".dept.example.test"], None);
    let open = domain.sub_ca("dept CA", &[], Some(&narrow));
    let evil = domain.host_under("db-narrow", &narrow, &[], |p| {
        p.custom_extensions = vec![raw_san::extension(&[raw_san::kerberos(
            "ANY",
            &["host", "db.example.test"],
        )])]
    });
    let fine = domain.same_leaf_under(&evil, "db-open", &open);
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();

    let constrained = echo_server(evil.platform());
    for target in [
        "db.example.test",
        "host/db.example.test",
        "host/db.example.test@ANY",
    ] {
        let err = connect(&client, target, constrained.addr).expect_err(target);
        assert!(is_mismatch(&err), "{target}: {err}");
    }
    let unconstrained = echo_server(fine.platform());
    for target in ["db.example.test", "host/db.example.test@ANY"] {
        let stream = connect(&client, target, unconstrained.addr)
            .unwrap_or_else(|e| panic!("{target} under the open sub-CA: {e}"));
        assert!(names(&stream.query_security()).contains(&"host/db.example.test@ANY".to_string()));
        stream.close().unwrap();
    }

    // The server side: a client certificate with that SAN under the constrained sub-CA
    // proves no such name either (the query is what impersonation maps).
    let server = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let evil_client = evil.platform();
    connect(&evil_client, "server.example.test", server.addr)
        .unwrap()
        .close()
        .unwrap();
    let seen = server.outcome().unwrap();
    assert!(
        !names(&seen).iter().any(|n| n.contains("db.example.test")),
        "{:?}",
        names(&seen)
    );
}

// ---------------------------------------------------------------------------------------
// Item 2: Unicode in certificate DNS SANs mapped to ASCII.

/// A certificate whose dNSName is `ex<soft hyphen>ample.test` or full-width `ｅｘample.test`
/// must not prove `example.test` (UTS-46 maps both to it).
#[test]
fn unicode_dns_sans_do_not_prove_their_ascii_mapping() {
    let domain = TrustDomain::new("example.test");
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    for (label, san) in [
        ("soft-hyphen", "ex\u{AD}ample.test"),
        ("full-width", "\u{FF45}\u{FF58}ample.test"),
    ] {
        let server = domain.host_with(label, &[], "", |p| {
            p.custom_extensions = vec![raw_san::extension(&[raw_san::dns_bytes(san.as_bytes())])]
        });
        let srv = echo_server(server.platform());
        let err = connect(&client, "example.test", srv.addr).expect_err(label);
        assert!(is_mismatch(&err), "{label}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 3: machine certificates proving user names.

/// A machine certificate (server and client authentication, a DNS name) with an email SAN
/// does not make its holder that user: the server's query reports no user principal, so
/// impersonation cannot map it to the user's account.
#[test]
fn a_machine_certificate_with_an_email_san_proves_no_user() {
    let domain = TrustDomain::new("example.test");
    let server = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let machine = domain
        .host(
            "laptop",
            &[
                San::Dns("laptop.example.test"),
                San::Email("alice@example.test"),
            ],
        )
        .platform();
    connect(&machine, "server.example.test", server.addr)
        .unwrap()
        .close()
        .unwrap();
    let seen = server.outcome().unwrap();
    assert_eq!(names(&seen), ["laptop.example.test"]);
    assert!(seen.peer_application.is_none());
}

// ---------------------------------------------------------------------------------------
// Item 5: the verified-chain cache filled by anyone.

/// A client certificate resolver that presents a chain it does not hold the key of.
#[derive(Debug)]
struct Impostor(Arc<CertifiedKey>);

impl ResolvesClientCert for Impostor {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(host: &Host) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(host_chain(&host.ca).remove(0)).unwrap();
    Arc::new(roots)
}

fn host_chain(path: &std::path::Path) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A raw rustls client presenting `chain`, signing with `key` (not the chain's), that
/// drives its handshake against `addr` until it ends.
fn present_without_the_key(
    host: &Host,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    addr: SocketAddr,
) {
    let signer = provider().key_provider.load_private_key(key).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(host))
        .with_client_cert_resolver(Arc::new(Impostor(Arc::new(CertifiedKey::new(
            chain, signer,
        )))));
    config.resumption = rustls::client::Resumption::disabled();
    let name = ServerName::try_from("server.example.test").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The client's handshake ends after its Finished; the server's refusal follows.
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return;
        }
    }
    let mut buf = [0u8; 64];
    let _ = conn.reader().read(&mut buf);
    while conn.complete_io(&mut tcp).is_ok_and(|(read, _)| read > 0) {}
}

/// 300 handshakes, each presenting a valid client chain plus a distinct 40 KiB junk
/// certificate, by a client that does not hold the leaf's key: the server's chain cache
/// does not grow by a byte. A client that proves its key is then cached once.
#[test]
fn handshakes_without_the_key_do_not_fill_the_chain_cache() {
    let domain = TrustDomain::new("example.test");
    let server_host = domain.host("server", &[San::Dns("server.example.test")]);
    let platform = server_host.platform();
    let server = echo_server(platform.clone());
    let victim = domain.host("victim", &[San::Dns("victim.example.test")]);
    let leaf = host_chain(&victim.cert).remove(0);
    let impostor_key = || {
        let key = rcgen::KeyPair::generate().unwrap();
        PrivateKeyDer::Pkcs8(key.serialize_der().into())
    };
    let before = platform.chain_cache_stats();
    for n in 0..300u32 {
        let junk = junk_certificate(n, 40 * 1024);
        present_without_the_key(
            &server_host,
            vec![leaf.clone(), junk],
            impostor_key(),
            server.addr,
        );
        let outcome = server.outcome();
        assert!(outcome.is_err(), "handshake {n} was accepted: {outcome:?}");
    }
    let after = platform.chain_cache_stats();
    assert_eq!(
        (after.entries, after.bytes),
        (before.entries, before.bytes),
        "unproven handshakes changed the cache"
    );
    // The same chain, from the holder of its key, is cached once, without the junk.
    connect(&victim.platform(), "server.example.test", server.addr)
        .unwrap()
        .close()
        .unwrap();
    server.outcome().unwrap();
    let proven = platform.chain_cache_stats();
    assert_eq!(proven.entries, before.entries + 1);
    assert!(proven.bytes - before.bytes < 4096, "{proven:?}");
}

/// A well-formed certificate (a webpki-parsable intermediate candidate) of about `size`
/// bytes, distinct per `n`, that no path uses.
fn junk_certificate(n: u32, size: usize) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("junk {n}"));
    let filler: Vec<u8> = (0..size).map(|i| (i as u32 ^ n) as u8).collect();
    let mut content = vec![0x04, 0x82, (filler.len() >> 8) as u8, filler.len() as u8];
    content.extend_from_slice(&filler);
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 55555, 1],
        content,
    )];
    params.self_signed(&key).unwrap().der().clone()
}

// ---------------------------------------------------------------------------------------
// Item 8: ALLOW_INSECURE downgraded by a forged reset.

/// A relay to `upstream` that forwards its first connection faithfully and resets every
/// later one right after the client's ClientHello: a forged reset.
fn faithful_once_then_resetting(upstream: SocketAddr) -> ActiveRelay {
    let relayed = AtomicUsize::new(0);
    active_relay(upstream, move |hello| {
        if relayed.fetch_add(1, Ordering::SeqCst) == 0 {
            FirstFlight::Forward(hello)
        } else {
            FirstFlight::Reset
        }
    })
}

/// A client with `ALLOW_INSECURE` that has spoken TLS with a target never falls back to
/// clear text for it when the connection is reset after its ClientHello: the server is
/// known to speak TLS, so the reset is an attack (as HSTS remembers a site's HTTPS).
#[test]
fn a_forged_reset_cannot_downgrade_a_target_known_to_speak_tls() {
    let ex = example("");
    let server = echo_server(ex.server.clone());
    let relay = faithful_once_then_resetting(server.addr);
    let settings = allow_insecure();
    let first = connect_with(
        &ex.client,
        &settings,
        target("server.example.test"),
        relay.addr,
    )
    .expect("the first connection is relayed faithfully");
    assert!(first.query_security().is_secured());
    first.close().unwrap();
    let err = connect_with(
        &ex.client,
        &settings,
        target("server.example.test"),
        relay.addr,
    )
    .expect_err("a forged reset must not yield a clear connection");
    assert!(
        matches!(
            err.negotiation(),
            Some(NegotiationError::DowngradeRefused { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("spoke TLS"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Item 9: clear text bypassing a listener's peer restrictions.

/// A listener with `ALLOW_INSECURE` and a peer target name bound to 127.0.0.2: a client
/// from 127.0.0.2 that does not speak TLS is refused, never served in clear; one from
/// another address still is.
#[test]
fn clear_text_does_not_bypass_an_address_bound_peer_name() {
    let ex = example("");
    let listener = listen(ex.server.clone(), &allow_insecure());
    listener.set_peer_target_name(
        PeerTargetName::parse("client.example.test").unwrap(),
        AddressPrefix::from(FROM_127_0_0_2),
    );
    let srv = serve_listener(listener, echo);
    for (from, served_in_clear) in [(FROM_127_0_0_2, false), (FROM_127_0_0_1, true)] {
        let mut plain = plain_tcp_from(from, srv.addr);
        plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let outcome = srv.outcome();
        assert_eq!(outcome.peer.ip(), from);
        match outcome.result {
            Ok(info) => {
                assert!(served_in_clear, "{from} was served: {info:?}");
                assert!(!info.is_secured());
            }
            Err(e) => assert!(!served_in_clear, "{from} was refused: {e}"),
        }
    }
}

fn plain_tcp_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

// ---------------------------------------------------------------------------------------
// Item 10: IPv4-mapped allow-list bindings never matching.

/// Names bound to `::/0` or to `::ffff:127.0.0.0/104` apply to IPv4 clients too (they are
/// within those prefixes); before, such a binding never matched and the listener admitted
/// any proven principal (it failed open).
#[test]
fn ipv6_prefixes_covering_ipv4_addresses_restrict_ipv4_clients() {
    let ex = example("");
    let outsider = ex
        .domain
        .host("outsider", &[San::Dns("outsider.example.test")])
        .platform();
    for prefix in ["::/0", "::ffff:127.0.0.0/104"] {
        let listener = listen(ex.server.clone(), &SecuritySettings::new());
        listener.set_peer_target_name(
            PeerTargetName::parse("client.example.test").unwrap(),
            prefix.parse().unwrap(),
        );
        let srv = serve_listener(listener, echo);
        let _ = connect_with(
            &outsider,
            &SecuritySettings::new(),
            target("server.example.test"),
            srv.addr,
        )
        .and_then(|mut s| {
            s.write_all(b"x")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            Ok(())
        });
        let outcome = srv.outcome();
        assert!(
            matches!(
                outcome.result.as_ref().map_err(|e| e.negotiation()),
                Err(Some(NegotiationError::PeerNotAllowed { .. }))
            ),
            "{prefix}: {:?}",
            outcome.result
        );
        let admitted = connect_with(
            &ex.client,
            &SecuritySettings::new(),
            target("server.example.test"),
            srv.addr,
        )
        .unwrap();
        admitted.close().unwrap();
        assert!(srv.outcome().result.is_ok(), "{prefix}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 11: a refused peer not learning why.

/// A plain rustls client with no certificate sends its Finished and 48 KiB of application
/// data at once; the server refuses it (`certificate_required`). When the client goes on
/// writing and then reads, only after the server has finished with the connection, it
/// must read that alert, not a reset (closing with unread input makes the kernel send a
/// reset, and the client's next write fails on it before it reads the alert).
#[test]
fn a_refused_client_reads_the_alert_not_a_reset() {
    let ex = example("");
    let server_host = ex
        .domain
        .host("server2", &[San::Dns("server.example.test")]);
    let server = echo_server(server_host.platform());
    let (roots, addr) = (roots(&server_host), server.addr);
    let (server_done, done) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || refused_client(roots, addr, done));
    // The outcome comes once the server is done with the connection (refused, closed).
    let refusal = server.outcome().expect_err("a client without certificate");
    assert!(refusal.contains("no certificate"), "{refusal}");
    server_done.send(()).unwrap();
    let seen = client.join().unwrap();
    assert!(
        seen.contains("CertificateRequired"),
        "the client saw {seen} instead of the alert"
    );
}

/// The client of `a_refused_client_reads_the_alert_not_a_reset`: a plain rustls client
/// without a certificate that sends its Finished and 48 KiB (more than the server reads at
/// once) together, waits until the server is done with the connection (`server_done`),
/// goes on with its request, and then reads; it returns what it saw.
fn refused_client(
    roots: Arc<RootCertStore>,
    addr: SocketAddr,
    server_done: std::sync::mpsc::Receiver<()>,
) -> String {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("server.example.test").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    conn.writer().write_all(&[b'x'; 48 * 1024]).unwrap();
    while conn.wants_write() {
        conn.write_tls(&mut tcp).unwrap();
    }
    server_done.recv().unwrap();
    // Like most clients, it goes on with its request before it reads the answer: a reset
    // sent by the server's close fails that write, and the alert is never read.
    conn.writer().write_all(b"rest of the request").unwrap();
    let mut buf = [0u8; 64];
    let seen = loop {
        match conn.complete_io(&mut tcp) {
            Ok(_) => match conn.reader().read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                other => break format!("{other:?}"),
            },
            Err(e) => break format!("{e:?}"),
        }
    };
    let _ = tcp.shutdown(Shutdown::Both);
    seen
}

// ---------------------------------------------------------------------------------------
// The async front end: items 8, 9 and 11 again (the decisions are shared; the moving of
// bytes, the peek and the linger are each front end's own).

#[cfg(feature = "tokio")]
mod async_front_end {
    use super::*;
    use support::async_enforcement_fixtures::*;
    use support::async_fixtures::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forged_reset_cannot_downgrade_a_target_known_to_speak_tls() {
        let ex = example("");
        let server = echo_server(ex.server.clone());
        let relay = faithful_once_then_resetting(server.addr);
        let settings = allow_insecure();
        let first = connect_async_with(
            &ex.client,
            &settings,
            target("server.example.test"),
            relay.addr,
        )
        .await
        .expect("the first connection is relayed faithfully");
        assert!(first.query_security().is_secured());
        first.close().await.unwrap();
        let err = connect_async_with(
            &ex.client,
            &settings,
            target("server.example.test"),
            relay.addr,
        )
        .await
        .expect_err("a forged reset must not yield a clear connection");
        assert!(
            matches!(
                err.negotiation(),
                Some(NegotiationError::DowngradeRefused { .. })
            ),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clear_text_does_not_bypass_an_address_bound_peer_name() {
        let ex = example("");
        let listener = listen_async(ex.server.clone(), &allow_insecure(), 128);
        listener.set_peer_target_name(
            PeerTargetName::parse("client.example.test").unwrap(),
            AddressPrefix::from(FROM_127_0_0_2),
        );
        let mut srv = serve_async_listener(listener, echo_async);
        for (from, served_in_clear) in [(FROM_127_0_0_2, false), (FROM_127_0_0_1, true)] {
            let mut plain = plain_tcp_from(from, srv.addr);
            plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let outcome = srv.outcome().await;
            assert_eq!(outcome.peer.ip(), from);
            match outcome.result {
                Ok(info) => {
                    assert!(served_in_clear, "{from} was served: {info:?}");
                    assert!(!info.is_secured());
                }
                Err(e) => assert!(!served_in_clear, "{from} was refused: {e}"),
            }
        }
    }

    /// As the blocking test, against the async listener.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_client_reads_the_alert_not_a_reset() {
        let ex = example("");
        let server_host = ex
            .domain
            .host("server2", &[San::Dns("server.example.test")]);
        let mut srv = serve_async(
            listen_async(server_host.platform(), &SecuritySettings::new(), 128),
            echo_async,
        );
        let addr = srv.addr;
        let roots = roots(&server_host);
        let (server_done, done) = std::sync::mpsc::channel();
        let client = tokio::task::spawn_blocking(move || refused_client(roots, addr, done));
        // The accept loop gets the refusal once the server is done with the connection.
        let refusal = srv
            .outcome()
            .await
            .expect_err("a client without certificate");
        assert!(refusal.contains("no certificate"), "{refusal}");
        server_done.send(()).unwrap();
        let seen = client.await.unwrap();
        assert!(
            seen.contains("CertificateRequired"),
            "the client saw {seen} instead of the alert"
        );
    }
}
