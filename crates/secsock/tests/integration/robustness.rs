//! An async secured server (a `secsock::tokio::SecureListener` whose `accept()` runs in a
//! loop and records every outcome) under hostile or careless peers: silent connections by
//! the thousand, bytes that are not TLS, truncated and oversized records, resets in the
//! middle of a handshake or a transfer, and many concurrent clients with large payloads.
//! Each time the server names what went wrong, keeps accepting, and serves the next
//! honest client at once.
#![cfg(feature = "tokio")]

use crate::support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secsock::{Platform, SecuritySettings};
use socket2::SockRef;
use support::async_fixtures::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A trust domain, an async echo server (with `server_policy` added to its policy, and
/// its listener adjusted by `configure`) and a client identity.
struct Setup {
    _domain: TrustDomain,
    server: AsyncServer,
    client: Arc<Platform>,
}

fn setup(server_policy: &str, configure: impl FnOnce(&mut AsyncListener)) -> Setup {
    let domain = TrustDomain::new("example.test");
    let server = domain
        .host_with(
            "server",
            &[San::Dns("server.example.test")],
            server_policy,
            |_| {},
        )
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let mut listener = listen_async(server, &SecuritySettings::new(), 1024);
    configure(&mut listener);
    Setup {
        _domain: domain,
        server: serve_async(listener, echo_async),
        client,
    }
}

const FAST: &str = "[defaults]\nhandshake_timeout = \"500ms\"\n";

/// An honest client: connect, one echo, clean close. Returns how long it took.
async fn served(client: &Arc<Platform>, addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut stream = connect_async(client, "server.example.test", addr)
        .await
        .expect("an honest client is served");
    stream.write_all(b"still there?").await.unwrap();
    let mut back = [0u8; 12];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still there?");
    let took = started.elapsed();
    stream.close().await.unwrap();
    took
}

/// After a hostile peer: the server recorded one failure (returned), did not panic,
/// keeps its accept loop, serves an honest client right away, and recorded nothing else.
async fn failure_then_served(setup: &mut Setup) -> String {
    let failure = setup
        .server
        .outcome()
        .await
        .expect_err("the server must record the hostile peer as a failure");
    assert!(
        !failure.contains("handshake task failed") && !failure.contains("panic"),
        "the handshake task panicked: {failure}"
    );
    assert!(setup.server.is_accepting(), "the accept loop ended");
    let took = served(&setup.client, setup.server.addr).await;
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert!(setup.server.outcome().await.is_ok());
    assert!(setup.server.try_outcome().is_none(), "one failure only");
    failure
}

/// Everything `stream` sends until it closes (EOF or reset) or 5 s pass.
async fn read_answer(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    answer
}

/// At most a TLS alert comes back to a peer that never completed a handshake.
fn assert_at_most_an_alert(answer: &[u8], sent: &[u8]) {
    if !answer.is_empty() {
        assert_eq!(answer[0], 0x15, "only an alert may be sent: {answer:?}");
        assert!(answer.len() <= 7, "one alert record at most: {answer:?}");
    }
    assert!(
        sent.len() < 8 || !contains(answer, &sent[..8]),
        "input echoed in clear"
    );
}

/// Closes `stream` with a TCP reset (SO_LINGER 0), losing whatever is unsent.
fn reset(stream: impl std::os::fd::AsFd) {
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// A real ClientHello record, captured from a secsock client by a plain TCP listener.
async fn captured_client_hello(client: &Arc<Platform>) -> Vec<u8> {
    let capture = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = capture.local_addr().unwrap();
    let client = client.clone();
    let connecting =
        tokio::spawn(async move { connect_async(&client, "server.example.test", addr).await });
    let (mut s, _) = capture.accept().await.unwrap();
    let mut header = [0u8; 5];
    s.read_exact(&mut header).await.unwrap();
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut record = header.to_vec();
    record.resize(5 + len, 0);
    s.read_exact(&mut record[5..]).await.unwrap();
    drop(s);
    assert!(
        connecting.await.unwrap().is_err(),
        "the capturing listener never answers"
    );
    assert_eq!(&record[..3], &[0x16, 0x03, 0x01], "a handshake record");
    assert_eq!(record[5], 0x01, "a ClientHello");
    record
}

// ---------------------------------------------------------------------------------------
// 1. Silent and slow connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_time_out_and_do_not_delay_an_honest_client() {
    const SILENT: usize = 1000; // below the listener's default of 1024 concurrent handshakes
                                // All from one source, with the per-source limit above them: this test is about the
                                // timeout (slow_peers.rs is about one source against the others).
    let mut setup = setup("[defaults]\nhandshake_timeout = \"1s\"\n", |listener| {
        listener.set_max_handshakes_per_source(SILENT + 1)
    });
    let addr = setup.server.addr;

    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        let stream = TcpStream::connect(addr).await.unwrap();
        silent.push((stream, Instant::now()));
    }
    let first_connected = silent[0].1;

    // While they all hang, an honest client is served at once.
    let took = served(&setup.client, addr).await;
    assert!(
        took < Duration::from_millis(500),
        "the silent connections delayed an honest client: {took:?}"
    );
    assert!(
        first_connected.elapsed() < Duration::from_secs(1),
        "the honest client must have been served while the silent ones were still pending \
         (opening {SILENT} connections took too long)"
    );
    assert!(setup.server.outcome().await.is_ok());

    // Each silent connection is dropped at the server's handshake timeout, having been
    // sent nothing.
    let mut waits = tokio::task::JoinSet::new();
    for (mut stream, connected) in silent {
        waits.spawn(async move {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            (connected.elapsed(), read.map(|r| r.map_err(|e| e.kind())))
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(done) = waits.join_next().await {
        let (after, read) = done.unwrap();
        match read {
            Ok(Ok(0)) | Ok(Err(ErrorKind::ConnectionReset)) => {}
            other => panic!("a silent connection got {other:?} instead of EOF or reset"),
        }
        assert!(
            after >= Duration::from_millis(950) && after < Duration::from_secs(3),
            "a silent connection was dropped after {after:?}, not at the 1 s timeout"
        );
        slowest = slowest.max(after);
    }

    // The server recorded one timeout for each of them, and nothing else.
    for i in 0..SILENT {
        let failure = setup.server.outcome().await.unwrap_err();
        assert!(
            failure.contains("the handshake did not complete within 1s"),
            "silent connection {i}: {failure}"
        );
    }
    assert!(
        setup.server.try_outcome().is_none(),
        "nothing else happened"
    );
    assert!(setup.server.is_accepting(), "the accept loop ended");
    served(&setup.client, addr).await;
    assert!(setup.server.outcome().await.is_ok());
    eprintln!("slowest silent connection dropped after {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_hello_is_cut_at_the_handshake_timeout() {
    let mut setup = setup(FAST, |_| {});
    let hello = captured_client_hello(&setup.client).await;
    let mut stream = TcpStream::connect(setup.server.addr).await.unwrap();
    let connected = Instant::now();
    // One byte every 50 ms: each arrives well within any idle timeout, the whole hello
    // would take over a minute.
    let mut buf = [0u8; 64];
    let mut next = 0;
    let ended = loop {
        tokio::select! {
            read = stream.read(&mut buf) => break read.map_err(|e| e.kind()),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                assert!(connected.elapsed() < Duration::from_secs(5), "never cut off");
                if stream.write_all(&hello[next..next + 1]).await.is_ok() {
                    next += 1;
                }
            }
        }
    };
    let after = connected.elapsed();
    assert!(
        matches!(ended, Ok(0) | Err(ErrorKind::ConnectionReset)),
        "{ended:?}"
    );
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_millis(1500),
        "cut off after {after:?}, not at the 500 ms handshake timeout"
    );
    assert!(next > 5 && next < hello.len(), "sent {next} bytes");
    let failure = failure_then_served(&mut setup).await;
    assert!(
        failure.contains("the handshake did not complete within 500ms"),
        "{failure}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Garbage

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_refused_as_not_tls() {
    let mut setup = setup(FAST, |_| {});
    let garbage = pattern(4096, 0x5eed);
    assert!(
        !(0x14..=0x18).contains(&garbage[0]),
        "the seed must give a first byte that is no TLS content type"
    );
    let mut stream = TcpStream::connect(setup.server.addr).await.unwrap();
    stream.write_all(&garbage).await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_at_most_an_alert(&answer, &garbage);
    let failure = failure_then_served(&mut setup).await;
    assert!(
        failure.contains("the client does not speak TLS"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_client_hello_is_refused() {
    let mut setup = setup(FAST, |_| {});
    let hello = captured_client_hello(&setup.client).await;
    let truncated = &hello[..hello.len() / 2];
    let mut stream = TcpStream::connect(setup.server.addr).await.unwrap();
    stream.write_all(truncated).await.unwrap();
    stream.shutdown().await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_at_most_an_alert(&answer, truncated);
    let failure = failure_then_served(&mut setup).await;
    assert!(
        failure.contains("the client closed the connection during the handshake"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_header_claiming_more_than_is_sent_is_refused() {
    let mut setup = setup(FAST, |_| {});
    // A handshake record header announcing 512 bytes, followed by 10, then FIN.
    let mut bytes = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    bytes.extend_from_slice(&[0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0]);
    let mut stream = TcpStream::connect(setup.server.addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    stream.shutdown().await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_at_most_an_alert(&answer, &bytes);
    let failure = failure_then_served(&mut setup).await;
    assert!(
        failure.contains("the client closed the connection during the handshake"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_followed_by_a_reset_is_recorded() {
    let mut setup = setup(FAST, |_| {});
    let hello = captured_client_hello(&setup.client).await;
    let mut stream = TcpStream::connect(setup.server.addr).await.unwrap();
    stream.write_all(&hello).await.unwrap();
    // Wait for the server's first flight (so the handshake is under way), then reset.
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(first[0], 0x16, "the server answered with a ServerHello");
    reset(stream);
    let failure = failure_then_served(&mut setup).await;
    assert!(
        failure.contains("the client closed the connection during the handshake"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_is_refused() {
    let mut setup = setup(FAST, |_| {});
    // 0xFFFF bytes announced: more than a TLS record may hold (2^14 + 256).
    let mut bytes = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    bytes.extend(pattern(0xffff, 7));
    let mut stream = TcpStream::connect(setup.server.addr).await.unwrap();
    // The server may refuse and close before reading it all: a failed write is fine.
    let _ = stream.write_all(&bytes).await;
    let answer = read_answer(&mut stream).await;
    assert_at_most_an_alert(&answer, &bytes[5..]);
    let failure = failure_then_served(&mut setup).await;
    assert!(
        failure.contains("TLS handshake with the client failed")
            && failure.contains("a TLS record larger than TLS allows"),
        "{failure}"
    );
}

/// A peer that connects and resets before the server got to its handshake (the
/// connection waited in the listen backlog while the listener was at its handshake
/// limit) is that peer's failure, reported as such, not an I/O error that reads like
/// the listener's own ("accept fails with an I/O error only when the listening socket
/// itself fails").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_while_waiting_in_the_backlog_is_a_peer_failure() {
    let mut setup = setup(FAST, |listener| listener.set_max_concurrent_handshakes(1));
    let addr = setup.server.addr;
    // The one handshake slot is taken by a silent connection for 500 ms...
    let silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so this one waits in the backlog, where its reset arrives.
    let doomed = TcpStream::connect(addr).await.unwrap();
    reset(doomed);
    let first = setup.server.outcome().await.unwrap_err();
    assert!(
        first.contains("did not complete within 500ms"),
        "the silent connection times out first: {first}"
    );
    let failure = failure_then_served(&mut setup).await;
    assert!(
        failure.contains("the client closed the connection during the handshake"),
        "a peer's reset must be reported as the peer closing, got: {failure}"
    );
    drop(silent);
}

// ---------------------------------------------------------------------------------------
// 3. Resets in the middle of a transfer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_mid_upload_is_an_error_for_the_server_not_a_clean_end() {
    let domain = TrustDomain::new("example.test");
    let server = domain
        .host("server", &[San::Dns("server.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let halfway = Arc::new(Notify::new());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let signal = halfway.clone();
    let srv = serve_async(
        listen_async(server, &SecuritySettings::new(), 16),
        move |mut stream| {
            let tx = tx.lock().unwrap().take().expect("one connection");
            let signal = signal.clone();
            async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0usize;
                let result = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            total += n;
                            if total >= 1024 * 1024 {
                                signal.notify_one();
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                let _ = tx.send((total, result));
            }
        },
    );
    let mut stream = connect_async(&client, "server.example.test", srv.addr)
        .await
        .unwrap();
    // Upload until the server has read 1 MiB, then reset.
    let chunk = pattern(64 * 1024, 1);
    let mut sent = 0usize;
    loop {
        tokio::select! {
            _ = halfway.notified() => break,
            written = stream.write_all(&chunk) => {
                written.unwrap();
                sent += chunk.len();
                assert!(sent < 256 * 1024 * 1024, "the server never got 1 MiB");
            }
        }
    }
    reset(stream);
    let (total, result) = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert!(total >= 1024 * 1024, "{total}");
    let err = result.expect_err("a reset connection must not end like a clean one");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reset_mid_download_is_an_error_for_the_client_not_a_clean_end() {
    let domain = TrustDomain::new("example.test");
    let server = domain
        .host("server", &[San::Dns("server.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let halfway = Arc::new(Notify::new());
    let signal = halfway.clone();
    let srv = serve_async(
        listen_async(server, &SecuritySettings::new(), 16),
        move |mut stream| {
            let signal = signal.clone();
            async move {
                // Send until the client has read 1 MiB, then reset.
                let chunk = pattern(64 * 1024, 2);
                loop {
                    tokio::select! {
                        _ = signal.notified() => break,
                        written = stream.write_all(&chunk) => if written.is_err() { return },
                    }
                }
                reset(stream);
            }
        },
    );
    let mut stream = connect_async(&client, "server.example.test", srv.addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    total += n;
                    if total >= 1024 * 1024 {
                        halfway.notify_one();
                    }
                }
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the client's read must end when the server resets");
    assert!(total >= 1024 * 1024, "{total}");
    let err = result.expect_err("a reset connection must not end like a clean one");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

/// A peer that stops reading makes writes to it wait, on that connection only: the
/// runtime's workers stay free for every other connection and timer. (A socket left in
/// blocking mode under tokio breaks this: `writev` then blocks a worker thread.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_stalls_only_its_own_connection() {
    const WORKERS: usize = 2;
    let domain = TrustDomain::new("example.test");
    // A blocking secsock server (threads of its own, independent of the runtime) that
    // accepts, never reads, and drops each connection when the test is done (drops
    // `done`), 10 s at most.
    let (done, until_done) = std::sync::mpsc::channel::<()>();
    let until_done = std::sync::Mutex::new(until_done);
    let deaf = serve(
        domain
            .host("deaf", &[San::Dns("server.example.test")])
            .platform(),
        move |stream| {
            let _ = until_done
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            drop(stream);
        },
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();

    // As many writers as the runtime has workers, each writing to the deaf server until
    // its buffers are full.
    let (started, started_writing) = std::sync::mpsc::channel::<()>();
    let mut writers = tokio::task::JoinSet::new();
    let addr = deaf.addr;
    for _ in 0..WORKERS {
        let client = client.clone();
        let started = started.clone();
        writers.spawn(async move {
            let mut stream = connect_async(&client, "server.example.test", addr)
                .await
                .unwrap();
            let chunk = vec![0u8; 256 * 1024];
            stream.write_all(&chunk).await.unwrap();
            let _ = started.send(());
            while stream.write_all(&chunk).await.is_ok() {}
        });
    }
    // Wait on this thread (the test's, not a runtime worker) until both write, and a
    // little longer (not observable from here) so that their socket buffers are full.
    for _ in 0..WORKERS {
        started_writing
            .recv_timeout(Duration::from_secs(10))
            .expect("the writers never started");
    }
    std::thread::sleep(Duration::from_millis(300));

    // The runtime still runs timers and other connections at once.
    let timer = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = timer.elapsed();
    assert!(
        late < Duration::from_millis(600),
        "a 100 ms timer fired after {late:?}: the writers to a peer that does not read \
         have blocked the runtime's worker threads"
    );
    let mut setup = setup(FAST, |_| {});
    let took = served(&setup.client, setup.server.addr).await;
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert!(setup.server.outcome().await.is_ok());
    // The writers are still waiting for the deaf peer, as they should.
    assert!(writers.try_join_next().is_none());
    writers.abort_all();
    // Which is what tokio requires of every socket it drives.
    let probe = connect_async(&setup.client, "server.example.test", setup.server.addr)
        .await
        .unwrap();
    assert!(
        SockRef::from(&probe).nonblocking().unwrap(),
        "the socket of a connected secsock::tokio::SecureStream is in blocking mode"
    );
    probe.close().await.unwrap();
    drop(done);
}

// ---------------------------------------------------------------------------------------
// 4. Many concurrent clients, large payloads

/// Deterministic payload sizes in 0..=max: xorshift from a fixed seed, plus both ends.
fn payload_sizes(count: usize, max: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    let mut sizes: Vec<usize> = (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (max as u64 + 1)) as usize
        })
        .collect();
    sizes[0] = 0;
    sizes[1] = max;
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_with_random_payloads_get_exact_echoes() {
    const CLIENTS: usize = 200;
    const MAX: usize = 4 * 1024 * 1024;
    let domain = TrustDomain::new("example.test");
    let server = domain
        .host("server", &[San::Dns("server.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let mut listener = listen_async(server, &SecuritySettings::new(), 1024);
    // Every client comes from one address, all at once: a load generator, not an attack.
    listener.set_max_handshakes_per_source(CLIENTS);
    let srv = serve_async(listener, echo_async);
    let sizes = payload_sizes(CLIENTS, MAX, 0x2545_f491_4f6c_dd1d);
    assert!(sizes.iter().filter(|&&s| s > MAX * 9 / 10).count() >= 5);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for (i, &size) in sizes.iter().enumerate() {
        let client = client.clone();
        let addr = srv.addr;
        clients.spawn(async move {
            let stream = connect_async(&client, "server.example.test", addr)
                .await
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
            let (mut reader, mut writer) = tokio::io::split(stream);
            // Write and read at once, so neither side's buffers fill up and stall.
            let send = async {
                let mut payload = PatternStream::new(size, i as u64 + 1);
                let mut sent = Fnv::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = payload.fill(&mut buf);
                    if n == 0 {
                        break;
                    }
                    sent.update(&buf[..n]);
                    writer.write_all(&buf[..n]).await.unwrap();
                }
                writer.shutdown().await.unwrap();
                sent
            };
            let receive = async {
                let mut received = Fnv::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => received.update(&buf[..n]),
                        Err(e) => panic!("client {i} ({size} bytes): {e}"),
                    }
                }
                received
            };
            let (sent, received) = tokio::join!(send, receive);
            assert_eq!(sent.bytes(), size as u64);
            assert_eq!(
                (received.bytes(), received.finish()),
                (sent.bytes(), sent.finish()),
                "client {i}: the echo of {size} bytes differs"
            );
            reader.unsplit(writer).close().await.unwrap();
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let total: usize = sizes.iter().sum();
    eprintln!(
        "{CLIENTS} clients echoed {} MiB in {:?}",
        total / (1024 * 1024),
        started.elapsed()
    );
}
