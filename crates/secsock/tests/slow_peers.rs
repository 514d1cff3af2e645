//! Slow and silent peers (issue 12, item 6): one host opening silent connections faster
//! than the handshake timeout closes them must not starve anybody else. 1,500 silent
//! connections from 127.0.0.2 and 100 more every second for 10 s, while a client from
//! 127.0.0.1 connects, handshakes and gets an echo, within 1 s every time, on both front
//! ends' `accept` (`secsock serve` is checked in the command's tests). Each listener admits
//! at most `DEFAULT_MAX_HANDSHAKES_PER_SOURCE` handshakes from one source at once and
//! closes the rest at once; the blocking `accept` runs handshakes concurrently.
//!
//! The tests need about 3,000 open files; they raise the soft limit, and skip, saying so,
//! where the hard limit does not allow it.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secsock::{Platform, SecuritySettings};
use support::enforcement_fixtures::*;
use support::flood::{raise_open_files, Flood};
use support::*;

/// The floods are heavy: one at a time.
static ONE_FLOOD: Mutex<()> = Mutex::new(());

const INITIAL: usize = 1500;
const PER_SECOND: usize = 100;
const FLOOD_FOR: Duration = Duration::from_secs(10);
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// Whether this process may open enough files; says so when it may not.
fn enough_files() -> bool {
    let limit = raise_open_files(16_384);
    if limit < 4_096 {
        eprintln!("skipped: the flood needs about 4,096 open files and the limit is {limit}");
        return false;
    }
    true
}

/// While `flood` runs, a client from 127.0.0.1 connects to `addr` again and again; each
/// connect, handshake and echo must take less than [`SERVED_WITHIN`].
fn honest_client_is_served_promptly(client: &Arc<Platform>, addr: SocketAddr, flood: &Flood) {
    let mut rounds = 0;
    while flood.is_running() {
        let started = Instant::now();
        let mut stream = connect_from(
            client,
            &SecuritySettings::new(),
            target("server.example.test"),
            FROM_127_0_0_1,
            addr,
        )
        .unwrap_or_else(|e| panic!("round {rounds}: {e}"));
        stream.write_all(b"ping").unwrap();
        let mut pong = [0u8; 4];
        stream.read_exact(&mut pong).unwrap();
        let took = started.elapsed();
        assert_eq!(&pong, b"ping");
        assert!(
            took < SERVED_WITHIN,
            "round {rounds}: served after {took:?}, with {} flood connections opened",
            flood.opened()
        );
        stream.close().unwrap();
        rounds += 1;
        // A client every quarter of a second (pacing, not synchronisation).
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(rounds >= 10, "only {rounds} rounds during the flood");
}

#[test]
fn blocking_accept_serves_honest_clients_through_a_flood_of_silent_connections() {
    let _one = ONE_FLOOD.lock().unwrap_or_else(|p| p.into_inner());
    if !enough_files() {
        return;
    }
    let ex = example("");
    let listener = listen_with_backlog(ex.server.clone(), &SecuritySettings::new(), 4096);
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || loop {
        if let Ok(stream) = listener.accept() {
            std::thread::spawn(move || echo(stream));
        }
    });
    let flood = Flood::start(FROM_127_0_0_2, addr, INITIAL, PER_SECOND, FLOOD_FOR);
    honest_client_is_served_promptly(&ex.client, addr, &flood);
}

#[cfg(feature = "tokio")]
#[test]
fn async_accept_serves_honest_clients_through_a_flood_of_silent_connections() {
    use support::async_fixtures::{echo_async, listen_async};
    let _one = ONE_FLOOD.lock().unwrap_or_else(|p| p.into_inner());
    if !enough_files() {
        return;
    }
    let ex = example("");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener =
        runtime.block_on(async { listen_async(ex.server.clone(), &SecuritySettings::new(), 4096) });
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            if let Ok(stream) = listener.accept().await {
                tokio::spawn(echo_async(stream));
            }
        }
    });
    let flood = Flood::start(FROM_127_0_0_2, addr, INITIAL, PER_SECOND, FLOOD_FOR);
    honest_client_is_served_promptly(&ex.client, addr, &flood);
    drop(flood);
    runtime.shutdown_background();
}
