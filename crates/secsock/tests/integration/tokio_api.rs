//! The async front end (`secsock::tokio`) passes the blocking API's tests for every
//! behaviour they share: async client and async server over real TCP on loopback, each
//! against the other, against the blocking API, and against real OpenSSL peers.
#![cfg(feature = "tokio")]

use crate::support;

use std::io::{IoSlice, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secsock::{
    Domain, Error, InfoFlags, NegotiationError, OptionFlags, PeerTargetName, Platform,
    PrincipalName, ProofMethod, SecurityInfo, SecuritySettings, UsageError,
};
use support::async_fixtures::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn names(info: &SecurityInfo) -> Vec<String> {
    info.peer_machine
        .as_ref()
        .unwrap()
        .names
        .iter()
        .map(PrincipalName::to_string)
        .collect()
}

fn pem(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A server and a client identity of one trust domain.
fn server_and_client(domain: &TrustDomain) -> (Arc<Platform>, Arc<Platform>) {
    (
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
        domain
            .host("client", &[San::Dns("client.example.test")])
            .platform(),
    )
}

// ---------------------------------------------------------------------------------------
// secsock::tokio client <-> secsock::tokio server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_prove_their_identity_and_query_reports_it() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host(
        "server",
        &[
            San::Dns("server.example.test"),
            San::Uri("spiffe://example.test/server".into()),
        ],
    );
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let mut srv = echo_server_async(server.platform());

    let mut stream = connect_async(&client.platform(), "host/server.example.test", srv.addr)
        .await
        .unwrap();
    let info = stream.query_security();
    assert_eq!(info.flags, InfoFlags::SECURED | InfoFlags::ENCRYPTED);
    assert_eq!(
        names(&info),
        ["server.example.test", "spiffe://example.test/server"]
    );
    let id = info.peer_machine.as_ref().unwrap();
    assert_eq!(id.proven_by, ProofMethod::Certificate);
    let now = std::time::SystemTime::now();
    assert!(id.not_before.unwrap() < now && now < id.not_after.unwrap());
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
    assert_eq!(stream.peer_addr(), srv.addr);

    let server_info = srv.outcome().await.unwrap();
    assert_eq!(
        names(&server_info),
        ["client.example.test"],
        "the server records the client's machine identity"
    );
    assert!(server_info.is_encrypted());
    assert_eq!(
        server_info.peer_machine.as_ref().unwrap().proven_by,
        ProofMethod::Certificate
    );

    stream.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"x");
    stream.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_of_1_byte_16_kib_and_64_mib_arrive_intact() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    // The server reads everything until close_notify, then answers with the length and
    // checksum of what it got, and closes.
    let listener = listen_async(server, &SecuritySettings::new(), 16);
    let srv = serve_async(listener, |mut stream| async move {
        let mut sum = Fnv::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await.unwrap() {
                0 => break,
                n => sum.update(&buf[..n]),
            }
        }
        let reply = format!("{} {:016x}", sum.bytes(), sum.finish());
        stream.write_all(reply.as_bytes()).await.unwrap();
        stream.close().await.unwrap();
    });
    for (len, seed) in [(1usize, 1u64), (16 * 1024, 2), (64 * 1024 * 1024, 3)] {
        let data = pattern(len, seed);
        let mut stream = connect_async(&client, "server.example.test", srv.addr)
            .await
            .unwrap();
        stream.write_all(&data).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert_eq!(
            reply,
            format!("{len} {:016x}", checksum(&data)),
            "transfer of {len} bytes"
        );
        stream.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trips_with_vectored_writes() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let srv = echo_server_async(server);
    let mut stream = connect_async(&client, "server.example.test", srv.addr)
        .await
        .unwrap();
    assert!(stream.is_write_vectored());
    let parts = [
        IoSlice::new(b"hello, "),
        IoSlice::new(b"secured "),
        IoSlice::new(b"world"),
    ];
    let written = stream.write_vectored(&parts).await.unwrap();
    let total = b"hello, secured world";
    assert_eq!(
        written,
        total.len(),
        "a small vectored write is taken whole, not slice by slice"
    );
    let mut back = vec![0u8; total.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, total);
    stream.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_in_a_row() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let mut srv = echo_server_async(server);
    for i in 0..100u32 {
        let mut stream = connect_async(&client, "host/server.example.test", srv.addr)
            .await
            .unwrap();
        let msg = format!("message {i}");
        stream.write_all(msg.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut back = String::new();
        stream.read_to_string(&mut back).await.unwrap();
        assert_eq!(back, msg);
        stream.close().await.unwrap();
        assert!(srv.outcome().await.is_ok(), "connection {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_without_close_notify_is_reported_as_truncation() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    // The server writes, then drops the connection without close_notify.
    let listener = listen_async(server, &SecuritySettings::new(), 16);
    let srv = serve_async(listener, |mut stream| async move {
        stream.write_all(b"partial").await.unwrap();
        stream.flush().await.unwrap();
        drop(stream);
    });
    let mut stream = connect_async(&client, "server.example.test", srv.addr)
        .await
        .unwrap();
    let mut got = Vec::new();
    let err = stream.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(got, b"partial", "data before the cut is delivered");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("without close_notify"), "{err}");
    assert!(err.to_string().contains("server"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_eof_without_close_notify_is_reported_to_the_server_as_truncation() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let listener = listen_async(server, &SecuritySettings::new(), 16);
    let srv = serve_async(listener, move |mut stream| {
        let tx = tx.lock().unwrap().take();
        async move {
            let mut got = Vec::new();
            let result = stream.read_to_end(&mut got).await;
            let _ = tx.unwrap().send((got, result));
        }
    });
    let mut stream = connect_async(&client, "server.example.test", srv.addr)
        .await
        .unwrap();
    stream.write_all(b"half a message").await.unwrap();
    stream.flush().await.unwrap();
    // A TCP FIN without close_notify first (dropping the stream could make the kernel
    // send a reset instead, if the server's session tickets are still unread).
    socket2::SockRef::from(&stream)
        .shutdown(Shutdown::Write)
        .unwrap();
    let (got, result) = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"half a message");
    let err = result.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(
        err.to_string()
            .contains("the client closed the connection without close_notify"),
        "{err}"
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_name_mismatch_fails_closed_with_both_names() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    // A server that would report any byte it received.
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    let listener = listen_async(server, &SecuritySettings::new(), 16);
    let mut srv = serve_async(listener, move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut got = Vec::new();
            let _ = stream.read_to_end(&mut got).await;
            let _ = tx.send(got);
        }
    });
    let err = connect_async(&client, "host/other.example.test", srv.addr)
        .await
        .unwrap_err();
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
    let server_side = srv.outcome().await.unwrap_err();
    assert!(
        server_side.contains("refused our certificate")
            && server_side.contains("certificate_unknown"),
        "{server_side}"
    );
    assert!(received.try_recv().is_err(), "no connection was served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_name_verification_reports_the_mismatch() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let srv = echo_server_async(server);
    let settings =
        SecuritySettings::new().with_options(OptionFlags::OPTIONAL_PEER_NAME_VERIFICATION);
    let mut stream = connect_async_with(
        &client,
        &settings,
        Some(PeerTargetName::parse("other.example.test").unwrap()),
        srv.addr,
    )
    .await
    .unwrap();
    let info = stream.query_security();
    assert!(info.is_secured() && info.is_encrypted());
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
        other => panic!("expected the mismatch to be reported, got {other:?}"),
    }
    // The connection carries data.
    stream.write_all(b"ok?").await.unwrap();
    let mut back = [0u8; 3];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ok?");
    stream.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_from_another_trust_domain_is_refused_on_both_sides() {
    let domain = TrustDomain::new("example.test");
    let stranger = TrustDomain::new("elsewhere.test");
    let mut srv = echo_server_async(
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
    let platform = Platform::load(policy).unwrap();
    let result = async {
        let mut s = connect_async(&platform, "server.example.test", srv.addr).await?;
        // TLS 1.3: the client finishes first; the server's refusal arrives as an alert.
        s.write_all(b"hello").await?;
        let mut buf = [0u8; 8];
        let n = s.read(&mut buf).await?;
        Ok::<usize, std::io::Error>(n)
    }
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.to_string().contains("refused our certificate")
            && err.to_string().contains("unknown_ca"),
        "{err}"
    );
    let server_side = srv.outcome().await.unwrap_err();
    assert!(
        server_side.contains("client's certificate is not trusted"),
        "{server_side}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_are_served_independently() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let srv = echo_server_async(server);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..8u64 {
        let client = client.clone();
        let addr = srv.addr;
        clients.spawn(async move {
            let data = pattern(256 * 1024 + i as usize, i);
            let mut stream = connect_async(&client, "server.example.test", addr)
                .await
                .unwrap();
            let mut back = vec![0u8; data.len()];
            // Read each chunk's echo before sending the next, so no buffer fills.
            let mut at = 0;
            for chunk in data.chunks(16 * 1024) {
                stream.write_all(chunk).await.unwrap();
                stream
                    .read_exact(&mut back[at..at + chunk.len()])
                    .await
                    .unwrap();
                at += chunk.len();
            }
            assert_eq!(checksum(&back), checksum(&data), "client {i}");
            stream.close().await.unwrap();
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_updates_follow_the_policys_rekey_limit_and_lose_nothing() {
    let domain = TrustDomain::new("example.test");
    let rekey = "[crypto.standard]\nrekey_after = { bytes = \"64KiB\" }\n";
    let server = domain
        .host_with("server", &[San::Dns("server.example.test")], rekey, |_| {})
        .platform();
    let client = domain
        .host_with("client", &[San::Dns("client.example.test")], rekey, |_| {})
        .platform();
    let listener = listen_async(server, &SecuritySettings::new(), 16);
    let srv = serve_async(listener, |mut s| async move {
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        s.write_all(&checksum(&all).to_be_bytes()).await.unwrap();
        let updates = s.key_updates_sent();
        s.write_all(&updates.to_be_bytes()).await.unwrap();
        s.close().await.unwrap();
    });
    let data = pattern(4 * 1024 * 1024, 9);
    let mut stream = connect_async(&client, "server.example.test", srv.addr)
        .await
        .unwrap();
    stream.write_all(&data).await.unwrap();
    assert!(
        stream.key_updates_sent() >= 60,
        "client sent {} key updates for 4 MiB at 64 KiB",
        stream.key_updates_sent()
    );
    stream.shutdown().await.unwrap();
    let mut reply = [0u8; 16];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(
        u64::from_be_bytes(reply[..8].try_into().unwrap()),
        checksum(&data)
    );
    assert_eq!(
        u64::from_be_bytes(reply[8..].try_into().unwrap()),
        0,
        "the server sent only 8 bytes before counting"
    );
    stream.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Mixed: the async front end against the blocking one

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_client_with_the_blocking_server() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let srv = echo_server(server);
    let mut stream = connect_async(&client, "host/server.example.test", srv.addr)
        .await
        .unwrap();
    assert_eq!(names(&stream.query_security()), ["server.example.test"]);
    let data = pattern(3 * 1024 * 1024 + 7, 11);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (_, back) = tokio::join!(
        async {
            writer.write_all(&data).await.unwrap();
            writer.shutdown().await.unwrap();
        },
        async {
            let mut back = Vec::new();
            reader.read_to_end(&mut back).await.unwrap();
            back
        }
    );
    assert_eq!(back.len(), data.len());
    assert_eq!(checksum(&back), checksum(&data));
    stream = reader.unsplit(writer);
    stream.close().await.unwrap();
    let server_info = tokio::task::block_in_place(|| srv.outcome()).unwrap();
    assert_eq!(names(&server_info), ["client.example.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_with_an_async_server_using_accept_pending() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let listener = listen_async(server, &SecuritySettings::new(), 16);
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let pending = listener.accept_pending().await.unwrap();
        let peer = pending.peer_addr();
        let mut stream = pending.handshake().await.unwrap();
        assert_eq!(stream.peer_addr(), peer);
        let info = stream.query_security();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        all.reverse();
        stream.write_all(&all).await.unwrap();
        stream.close().await.unwrap();
        (peer, info)
    });
    let (local, info, back) = tokio::task::spawn_blocking(move || {
        let mut stream = connect(&client, "server.example.test", addr).unwrap();
        let local = stream.local_addr().unwrap();
        let info = stream.query_security();
        stream.write_all(b"blocking to async").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        stream.read_to_string(&mut back).unwrap();
        stream.close().unwrap();
        (local, info, back)
    })
    .await
    .unwrap();
    assert_eq!(back, "cnysa ot gnikcolb");
    assert_eq!(names(&info), ["server.example.test"]);
    let (peer, server_info) = server_task.await.unwrap();
    assert_eq!(
        peer, local,
        "PendingStream::peer_addr is the client's address"
    );
    assert_eq!(names(&server_info), ["client.example.test"]);
    assert!(server_info.is_encrypted());
}

// ---------------------------------------------------------------------------------------
// Real OpenSSL peers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_client_with_a_certificate_is_served_by_the_async_server() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let mut srv = echo_server_async(server.platform());
    let addr = srv.addr;
    let (out, err) = tokio::task::spawn_blocking(move || {
        openssl_client(
            addr,
            &[
                "-quiet",
                "-tls1_3",
                "-cert",
                pem(&client.cert),
                "-key",
                pem(&client.key),
                "-CAfile",
                pem(&client.ca),
                "-verify_return_error",
                "-verify_hostname",
                "server.example.test",
                "-servername",
                "server.example.test",
            ],
            b"hello from openssl\n",
            b"hello from openssl\n",
        )
    })
    .await
    .unwrap();
    assert!(
        contains(&out, b"hello from openssl\n"),
        "no echo; stderr: {err}"
    );
    let info = srv.outcome().await.unwrap();
    assert_eq!(names(&info), ["client.example.test"]);
    // OpenSSL 3.0 has no ML-KEM: X25519 is what both support.
    assert_eq!(info.key_exchange_group.as_ref().unwrap().name, "X25519");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_client_without_a_certificate_is_refused_by_the_async_server() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let mut srv = echo_server_async(server.platform());
    let addr = srv.addr;
    let ca = server.ca.clone();
    let (out, _err) = tokio::task::spawn_blocking(move || {
        openssl_client(
            addr,
            &[
                "-quiet",
                "-tls1_3",
                "-CAfile",
                pem(&ca),
                "-servername",
                "server.example.test",
            ],
            b"let me in\n",
            b"let me in\n",
        )
    })
    .await
    .unwrap();
    assert!(
        !contains(&out, b"let me in"),
        "an unauthenticated client got data back"
    );
    let refusal = srv.outcome().await.unwrap_err();
    assert!(refusal.contains("presented no certificate"), "{refusal}");
}

/// Starts `openssl s_server -Verify 1 -rev` (reverses each line) with the given identity,
/// trusting `ca` for client certificates.
async fn reversing_openssl_server(cert: &Path, key: &Path, ca: &Path) -> OpensslServer {
    let args: Vec<String> = [
        "-tls1_3",
        "-cert",
        pem(cert),
        "-key",
        pem(key),
        "-CAfile",
        pem(ca),
        "-Verify",
        "1",
        "-rev",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl_server(&args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_client_with_openssl_server_requiring_client_certificates() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let s_server = reversing_openssl_server(&server.cert, &server.key, &server.ca).await;
    let mut stream = connect_async(&client, "host/server.example.test", s_server.addr)
        .await
        .unwrap();
    let info = stream.query_security();
    assert_eq!(names(&info), ["server.example.test"]);
    assert_eq!(info.key_exchange_group.as_ref().unwrap().name, "X25519");
    stream.write_all(b"secsock\n").await.unwrap();
    let mut back = [0u8; 8];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"kcosces\n");
    drop(stream);
}

async fn async_connect_error(
    server_cert: &Path,
    server_key: &Path,
    server_ca: &Path,
    client: &Host,
    target: &str,
) -> NegotiationError {
    let s_server = reversing_openssl_server(server_cert, server_key, server_ca).await;
    let err = connect_async(&client.platform(), target, s_server.addr)
        .await
        .unwrap_err();
    err.negotiation()
        .cloned()
        .unwrap_or_else(|| panic!("not a negotiation error: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_server_from_an_untrusted_ca_is_refused() {
    let domain = TrustDomain::new("example.test");
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    // A CA of another name, and a rogue CA that copies our CA's name.
    for (rogue, expected) in [
        (
            TrustDomain::new("rogue.test"),
            "not issued by (a chain leading to) one of the policy's trust anchors",
        ),
        (
            TrustDomain::new("example.test"),
            "does not verify against the policy's trust anchors",
        ),
    ] {
        let server = rogue.host("server", &[San::Dns("server.example.test")]);
        match async_connect_error(
            &server.cert,
            &server.key,
            &domain.ca_path,
            &client,
            "server.example.test",
        )
        .await
        {
            NegotiationError::UntrustedChain { reason, .. } => {
                assert!(reason.contains(expected), "{reason}")
            }
            other => panic!("expected UntrustedChain, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_server_with_an_expired_certificate_is_refused() {
    let domain = TrustDomain::new("example.test");
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let server = domain.host_with("server", &[San::Dns("server.example.test")], "", |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    match async_connect_error(
        &server.cert,
        &server.key,
        &server.ca,
        &client,
        "server.example.test",
    )
    .await
    {
        e @ NegotiationError::CertificateExpired {
            not_after: Some(_), ..
        } => {
            assert!(
                e.to_string().contains("expired at 2021-01-01T00:00:00Z"),
                "{e}"
            )
        }
        other => panic!("expected CertificateExpired, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_server_for_another_name_is_refused() {
    let domain = TrustDomain::new("example.test");
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let server = domain.host("server", &[San::Dns("impostor.example.test")]);
    match async_connect_error(
        &server.cert,
        &server.key,
        &server.ca,
        &client,
        "host/server.example.test",
    )
    .await
    {
        NegotiationError::PeerNameMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, "host/server.example.test");
            assert!(
                presented.contains(&"DNS:impostor.example.test".to_string()),
                "{presented:?}"
            );
        }
        other => panic!("expected PeerNameMismatch, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// What crosses the wire

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_never_appears_in_clear_and_the_first_byte_is_a_handshake_record() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let srv = echo_server_async(server);
    let relay = relay(srv.addr);

    let secret = b"TOP-SECRET-PAYLOAD-0123456789-do-not-leak";
    let mut stream = connect_async(&client, "server.example.test", relay.addr)
        .await
        .unwrap();
    for _ in 0..50 {
        stream.write_all(secret).await.unwrap();
    }
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), secret.len() * 50);
    stream.close().await.unwrap();
    relay.wait_idle(); // blocks this thread, not the runtime's workers

    let up = relay.to_server.lock().unwrap().clone();
    let down = relay.to_client.lock().unwrap().clone();
    assert_only_tls_records(&up, &down, &[b"TOP-SECRET", b"do-not-leak"]);
}

// ---------------------------------------------------------------------------------------
// Resumption

/// One echo exchange (which also receives the server's session tickets), then a clean close.
async fn exchange(client: &Arc<Platform>, target: &str, addr: SocketAddr) -> SecurityInfo {
    let mut stream = connect_async(client, target, addr)
        .await
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    stream.write_all(b"ping").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"ping");
    let info = stream.query_security();
    stream.close().await.unwrap();
    info
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_resumes_with_the_same_session_id() {
    let domain = TrustDomain::new("example.test");
    let (server, client) = server_and_client(&domain);
    let mut srv = echo_server_async(server);

    let first = exchange(&client, "server.example.test", srv.addr).await;
    let first_server = srv.outcome().await.unwrap();
    assert!(!first.resumed && !first_server.resumed);

    let second = exchange(&client, "server.example.test", srv.addr).await;
    let second_server = srv.outcome().await.unwrap();
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
    assert_ne!(second_server.connection_id, first_server.connection_id);
    assert_eq!(names(&second), names(&first));
    assert_eq!(names(&second_server), names(&first_server));

    // Resumed from a resumed connection: still the original session.
    let third = exchange(&client, "server.example.test", srv.addr).await;
    let third_server = srv.outcome().await.unwrap();
    assert!(third.resumed && third_server.resumed);
    assert_eq!(third.session_id, first.session_id);
    assert_eq!(third_server.session_id, first_server.session_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_for_one_name_is_never_used_for_another() {
    let domain = TrustDomain::new("example.test");
    // One server, one address, one certificate proving two names.
    let srv = echo_server_async(
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

    let a1 = exchange(&client, "a.example.test", srv.addr).await;
    assert!(!a1.resumed);
    let b1 = exchange(&client, "b.example.test", srv.addr).await;
    assert!(
        !b1.resumed,
        "a session proven for a.example.test must not be resumed for b.example.test"
    );
    assert_ne!(b1.session_id, a1.session_id);
    // The same host under another spelling is another target name too.
    let spn = exchange(&client, "host/a.example.test", srv.addr).await;
    assert!(!spn.resumed);
    let a2 = exchange(&client, "a.example.test", srv.addr).await;
    assert!(a2.resumed && a2.session_id == a1.session_id);
    let b2 = exchange(&client, "b.example.test", srv.addr).await;
    assert!(b2.resumed && b2.session_id == b1.session_id);
}

// ---------------------------------------------------------------------------------------
// Timeouts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out_at_the_policys_handshake_timeout() {
    let domain = TrustDomain::new("example.test");
    let fast = "[defaults]\nhandshake_timeout = \"300ms\"\n";
    let client = domain
        .host_with("client", &[San::Dns("client.example.test")], fast, |_| {})
        .platform();
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = silent.local_addr().unwrap();
    // It accepts and says nothing until the client has given up (10 s at most).
    let (done, until_done) = std::sync::mpsc::channel::<()>();
    let hold = std::thread::spawn(move || {
        let (s, _) = silent.accept().unwrap();
        let _ = until_done.recv_timeout(Duration::from_secs(10));
        drop(s);
    });
    let started = Instant::now();
    let err = connect_async(&client, "server.example.test", addr)
        .await
        .unwrap_err();
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
    tokio::task::spawn_blocking(move || hold.join().unwrap())
        .await
        .unwrap();
}

/// The handshake timeout bounds the TCP connect too (DESIGN decision 7): a peer whose
/// kernel never answers the SYN fails the connect at the policy's timeout, not after the
/// kernel's two minutes of retransmissions, and without blocking the calling thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_the_peer_never_answers_times_out_at_the_handshake_timeout() {
    let domain = TrustDomain::new("example.test");
    let fast = "[defaults]\nhandshake_timeout = \"300ms\"\n";
    let client = domain
        .host_with("client", &[San::Dns("client.example.test")], fast, |_| {})
        .platform();
    // A listener that never accepts, its accept queue full: Linux drops further SYNs, so
    // a connect to it stays in SYN_SENT.
    let full = socket2::Socket::new(Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&loopback().into()).unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let _queued = std::net::TcpStream::connect(addr).unwrap();
    let probe = socket2::Socket::new(Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    assert!(
        probe
            .connect_timeout(&addr.into(), Duration::from_millis(200))
            .is_err(),
        "precondition: a connect to the full listener hangs"
    );
    drop(probe);
    // Empty the queue if the connect has not returned after 2 s: a connect that blocks its
    // thread (the failure this test looks for) then ends at the next SYN retransmission
    // instead of hanging the test. A connect that returns in time ends this at once.
    let (returned, connect_returned) = std::sync::mpsc::channel::<()>();
    let release = std::thread::spawn(move || {
        use std::sync::mpsc::RecvTimeoutError::Timeout;
        if connect_returned.recv_timeout(Duration::from_secs(2)) != Err(Timeout) {
            return;
        }
        full.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(4);
        let mut accepted = Vec::new();
        while Instant::now() < until {
            if let Ok(conn) = full.accept() {
                accepted.push(conn);
            }
            // Polls the queue every 20 ms until the connect returned.
            if connect_returned.recv_timeout(Duration::from_millis(20)) != Err(Timeout) {
                return;
            }
        }
    });

    let started = Instant::now();
    let err = connect_async(&client, "server.example.test", addr)
        .await
        .unwrap_err();
    let took = started.elapsed();
    drop(returned);
    assert!(
        took < Duration::from_secs(1),
        "connect took {took:?} against a handshake timeout of 300ms ({err})"
    );
    assert!(
        err.to_string().contains("timed out after 300ms"),
        "expected the connect timeout, got: {err}"
    );
    tokio::task::spawn_blocking(move || release.join().unwrap())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Usage rules

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn any_platform() -> (TrustDomain, Arc<Platform>) {
    let domain = TrustDomain::new("example.test");
    let platform = domain.host("h", &[San::Dns("h.example.test")]).platform();
    (domain, platform)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_is_set_once() {
    let (_domain, platform) = any_platform();
    let mut socket = AsyncSocket::with_platform(Domain::IPV4, platform).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    let err = socket.set_security(&SecuritySettings::new()).unwrap_err();
    assert!(
        matches!(err, Error::Usage(UsageError::AlreadyConfigured)),
        "{err}"
    );
    assert!(socket.security_settings().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_after_bind_is_refused() {
    let (_domain, platform) = any_platform();
    let mut socket = AsyncSocket::with_platform(Domain::IPV4, platform).unwrap();
    socket.bind(loopback()).unwrap();
    let err = socket.set_security(&SecuritySettings::new()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::AlreadyBound {
                call: "set_security",
                ..
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("must be called before bind"),
        "{err}"
    );
    assert!(socket.security_settings().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_listen_need_security_first() {
    let (_domain, platform) = any_platform();
    let listener = TcpListener::bind(loopback()).unwrap();
    let socket = AsyncSocket::with_platform(Domain::IPV4, platform.clone()).unwrap();
    let err = socket
        .connect(listener.local_addr().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::NotConfigured { call: "connect" })
        ),
        "{err}"
    );
    // Nothing reached the listener: no TCP connection was made.
    listener.set_nonblocking(true).unwrap();
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "connect without security must not even open a TCP connection"
    );
    let mut socket = AsyncSocket::with_platform(Domain::IPV4, platform.clone()).unwrap();
    socket.bind(loopback()).unwrap();
    let err = socket.listen(8).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::NotConfigured { call: "listen" })
        ),
        "{err}"
    );
    let mut socket = AsyncSocket::with_platform(Domain::IPV4, platform).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    assert!(matches!(
        socket.listen(8).unwrap_err(),
        Error::Usage(UsageError::NotBound)
    ));
}
