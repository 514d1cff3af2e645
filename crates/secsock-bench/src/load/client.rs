//! The client process of a phase (the hidden `load-client` command): opens the
//! connections to the phase's server with one stack, at most `concurrency` connects plus
//! handshakes at a time, holds them all idle, prints its [`ClientReport`] as one JSON line
//! and keeps holding them until its stdin closes.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use secsock::{Domain, PeerTargetName, Platform, SecuritySettings};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use super::{
    baseline, endpoint_runtime, hold, seed_random, EndpointStats, Negotiated, Stack,
    HANDSHAKE_TIMEOUT, SETTLE,
};
use crate::domain::{IdentityFiles, SERVER_NAME};
use crate::machine::{self, FdLimit};

/// What the `load-client` process is asked to do.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The server.
    pub addr: SocketAddr,
    /// Connections to open and hold.
    pub connections: usize,
    /// Connects-plus-handshakes in flight.
    pub concurrency: usize,
    /// The stack to connect with.
    pub stack: Stack,
    /// The client identity's directory (host.crt, host.key, ca.crt, policy.toml).
    pub identity: PathBuf,
    /// Whether the baseline client resumes sessions (secsock's policy file says it).
    pub resumption: bool,
}

/// What the client process reports, as one JSON line on stdout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientReport {
    /// The stack it connected with.
    pub stack: Stack,
    /// Connections whose handshake completed and that were still open when measured.
    pub held: usize,
    /// Connections that failed.
    pub failures: usize,
    /// Why the first failure failed.
    pub first_error: Option<String>,
    /// Handshakes that resumed a session (the client side's view).
    pub resumed: usize,
    /// [`machine::monotonic_ns`] just before the first connect.
    pub first_connect_ns: u64,
    /// [`machine::monotonic_ns`] of the last completed client handshake.
    pub last_handshake_ns: u64,
    /// VmRSS before the first connect, in bytes.
    pub rss_before: u64,
    /// VmRSS with every connection held, in bytes.
    pub rss_after: u64,
    /// What the first connection negotiated.
    pub negotiated: Option<Negotiated>,
    /// Size of one connection task's future, in bytes.
    pub task_bytes: usize,
    /// The open-file limit the client ran under.
    pub fd_limit: FdLimit,
}

/// How the client connects, set up once per process.
enum Connector {
    Secsock {
        platform: Arc<Platform>,
        target: PeerTargetName,
    },
    Rustls {
        connector: TlsConnector,
        name: ServerName<'static>,
    },
}

/// The `load-client` command: raises the open-file limit, opens and holds the
/// connections, prints its [`ClientReport`], then holds them until stdin closes.
pub fn run_client(options: &ClientOptions) -> anyhow::Result<()> {
    let fd_limit = machine::raise_fd_limit(options.connections as u64)?;
    let runtime = endpoint_runtime()?;
    let files = IdentityFiles::in_dir(&options.identity);
    let report = runtime.block_on(open_and_hold(options, &files, fd_limit))?;
    println!("{}", serde_json::to_string(&report)?);
    // Hold every connection until the orchestrator closes our stdin (or exits).
    let mut rest = String::new();
    let _ = std::io::stdin().lock().read_line(&mut rest);
    // The kernel closes the sockets; no need to tear down 10,000 connections one by one.
    std::process::exit(0);
}

async fn open_and_hold(
    options: &ClientOptions,
    files: &IdentityFiles,
    fd_limit: FdLimit,
) -> anyhow::Result<ClientReport> {
    let connector = Arc::new(match options.stack {
        Stack::Secsock => Connector::Secsock {
            platform: Platform::load(&files.policy)
                .with_context(|| format!("loading {}", files.policy.display()))?,
            target: PeerTargetName::parse(SERVER_NAME)?,
        },
        Stack::Rustls => Connector::Rustls {
            connector: TlsConnector::from(baseline::client_config(files, options.resumption)?),
            name: ServerName::try_from(SERVER_NAME)?,
        },
    });
    seed_random()?;
    let stats = Arc::new(EndpointStats::default());
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let rss_before = machine::rss_bytes()?;
    let first_connect_ns = machine::monotonic_ns();
    for _ in 0..options.connections {
        let permit = slots.clone().acquire_owned().await?;
        let (connector, stats_for_task) = (connector.clone(), stats.clone());
        match &*connector {
            Connector::Secsock { .. } => {
                let task = connect_secsock(connector, options.addr, permit, stats_for_task);
                stats.note_task_size(&task);
                tokio::spawn(task);
            }
            Connector::Rustls { .. } => {
                let task = connect_rustls(connector, options.addr, permit, stats_for_task);
                stats.note_task_size(&task);
                tokio::spawn(task);
            }
        }
    }
    // Every connection is bounded by its handshake timeout, so this ends.
    while stats.finished() < options.connections {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let rss_after = machine::rss_bytes()?;
    Ok(ClientReport {
        stack: options.stack,
        held: stats.held.load(Ordering::Acquire),
        failures: stats.failures.load(Ordering::Acquire),
        first_error: stats.first_error(),
        resumed: stats.resumed.load(Ordering::Acquire),
        first_connect_ns,
        last_handshake_ns: stats.last_handshake_ns.load(Ordering::Acquire),
        rss_before,
        rss_after,
        negotiated: stats.negotiated.get().cloned(),
        task_bytes: stats.task_bytes.load(Ordering::Relaxed),
        fd_limit,
    })
}

// As on the server, the stream is bound with `let .. = match .. else return`. The
// handshake slot (the semaphore permit) goes into the connect future and is released when
// that future ends, rather than dropped by the task once the stream is bound: a permit
// alive at the same time as the stream conflicts with it in rustc's layout of the task's
// future, and one of the two is then kept out of the part that the connect state and the
// held stream share. The task then carried the connect state for the connection's whole
// life: 1,088 more bytes per tokio-rustls connection, 544 more per secsock connection.

async fn connect_secsock(
    connector: Arc<Connector>,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    stats: Arc<EndpointStats>,
) {
    let Connector::Secsock { platform, target } = &*connector else {
        return;
    };
    let mut stream = match secsock_connect(platform, target, addr, permit).await {
        Ok(stream) => stream,
        Err(e) => return stats.failed(e),
    };
    stats.secsock_handshake_done(&stream);
    hold(&mut stream).await;
    stats.released();
}

/// A secsock client connection as an application makes one: a socket secured by the
/// platform's policy, expecting the server's name, connected (the policy's handshake
/// timeout bounds the connect and the handshake). Holds the handshake slot until it ends.
async fn secsock_connect(
    platform: &Arc<Platform>,
    target: &PeerTargetName,
    addr: SocketAddr,
    _slot: OwnedSemaphorePermit,
) -> Result<secsock::tokio::SecureStream, secsock::Error> {
    let mut socket = secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform.clone())?;
    socket.set_security(&SecuritySettings::new())?;
    socket.set_peer_target_name(target.clone())?;
    socket.connect(addr).await
}

async fn connect_rustls(
    connector: Arc<Connector>,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    stats: Arc<EndpointStats>,
) {
    let Connector::Rustls {
        connector: tls,
        name,
    } = &*connector
    else {
        return;
    };
    let mut stream = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        rustls_connect(tls, name, addr, permit),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return stats.failed(format!("connect: {e}")),
        Err(_) => return stats.failed(format!("connect timed out after {HANDSHAKE_TIMEOUT:?}")),
    };
    let conn = stream.get_ref().1;
    stats.handshake_done(
        conn.handshake_kind() == Some(HandshakeKind::Resumed),
        || Negotiated::of_rustls(conn),
    );
    hold(&mut stream).await;
    stats.released();
}

/// A tokio-rustls client connection: TCP connect, `TCP_NODELAY` (as secsock sets it), and
/// the handshake. Holds the handshake slot until it ends.
async fn rustls_connect(
    tls: &TlsConnector,
    name: &ServerName<'static>,
    addr: SocketAddr,
    _slot: OwnedSemaphorePermit,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tls.connect(name.clone(), tcp).await
}
