//! The server process of a phase (the hidden `load-server` command): one stack's listener
//! on 127.0.0.1, every accepted connection held idle by a task of its own, and the
//! process's own memory measured around them.
//!
//! Its conversation with the orchestrator (`phase`), one JSON line at a time:
//! 1. once listening, it prints [`ServerReady`]: its address and its VmRSS before any
//!    connection;
//! 2. it reads [`ClientHeld`] from stdin: how many connections the client holds;
//! 3. it waits for its own side of those handshakes to complete (the server finishes each
//!    one after the client), lets post-handshake work settle, and prints [`ServerReport`];
//! 4. it waits for its connections to end (the orchestrator lets the client exit), prints
//!    [`ServerClosed`] and exits.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::HandshakeKind;
use secsock::{Domain, Platform, SecuritySettings};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::{
    baseline, endpoint_runtime, hold, seed_random, EndpointStats, Negotiated, Stack,
    HANDSHAKE_TIMEOUT, SETTLE,
};
use crate::domain::IdentityFiles;
use crate::machine::{self, FdLimit};

/// The listen backlog of both servers (the kernel caps it at net.core.somaxconn).
const BACKLOG: u32 = 4096;
/// How long the server waits for its connections to end once the client is let go.
const CLOSE_PATIENCE: Duration = Duration::from_secs(60);

/// What the `load-server` process is asked to do.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The stack to serve with.
    pub stack: Stack,
    /// The server identity's directory (host.crt, host.key, ca.crt, policy.toml).
    pub identity: PathBuf,
    /// Connections it must be able to hold (for the open-file limit).
    pub connections: usize,
    /// Whether the baseline sends session tickets (secsock's policy file says it).
    pub resumption: bool,
}

/// The first line the server prints: it is listening.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerReady {
    /// Where it listens.
    pub addr: SocketAddr,
    /// VmRSS when listening, before any connection, in bytes.
    pub rss_before: u64,
    /// The open-file limit it runs under.
    pub fd_limit: FdLimit,
}

/// The orchestrator's one line to the server: the client has opened its connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientHeld {
    /// Connections the client holds; the server waits for as many handshakes to finish.
    pub client_held: usize,
}

/// The server's figures with every connection held.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerReport {
    /// Connections whose handshake completed and that were still open when measured.
    pub held: usize,
    /// Failed accepts and handshakes.
    pub failures: usize,
    /// Why the first failure failed.
    pub first_error: Option<String>,
    /// Handshakes that resumed a session (the server side's view).
    pub resumed: usize,
    /// [`machine::monotonic_ns`] of the last completed server handshake.
    pub last_handshake_ns: u64,
    /// VmRSS with every connection held, in bytes.
    pub rss_after: u64,
    /// What the first connection negotiated.
    pub negotiated: Option<Negotiated>,
    /// Size of one connection task's future, in bytes.
    pub task_bytes: usize,
}

/// The server's last line: its connections have ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerClosed {
    /// VmRSS after every connection was closed and the listener dropped, in bytes.
    pub rss_closed: u64,
    /// Connections still open when it gave up waiting (0 when all ended).
    pub still_held: usize,
}

/// The `load-server` command: raises the open-file limit, listens, and holds what the
/// client opens, reporting to the orchestrator as described in the module documentation.
pub fn run_server(options: &ServerOptions) -> anyhow::Result<()> {
    let fd_limit = machine::raise_fd_limit(options.connections as u64)?;
    let files = IdentityFiles::in_dir(&options.identity);
    endpoint_runtime()?.block_on(serve(options, &files, fd_limit))
}

async fn serve(
    options: &ServerOptions,
    files: &IdentityFiles,
    fd_limit: FdLimit,
) -> anyhow::Result<()> {
    seed_random()?;
    let server = Server::start(options.stack, files, options.resumption).await?;
    // Let the accept loop park on the listener before the baseline is read.
    tokio::time::sleep(Duration::from_millis(50)).await;
    say(&ServerReady {
        addr: server.addr,
        rss_before: machine::rss_bytes()?,
        fd_limit,
    })?;

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let Some(line) = stdin.next_line().await? else {
        bail!("the benchmark closed the server's input before the client opened anything");
    };
    let ClientHeld { client_held } = serde_json::from_str(&line)
        .with_context(|| format!("the benchmark's message is not valid: {line}"))?;

    // The server finishes each handshake after the client does (the client's Finished
    // comes last in TLS 1.3); wait for it to catch up with what the client completed.
    let stats = &server.stats;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT * 2;
    while stats.finished() < client_held && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let rss_after = machine::rss_bytes()?;
    say(&ServerReport {
        held: stats.held.load(Ordering::Acquire),
        failures: stats.failures.load(Ordering::Acquire),
        first_error: stats.first_error(),
        resumed: stats.resumed.load(Ordering::Acquire),
        last_handshake_ns: stats.last_handshake_ns.load(Ordering::Acquire),
        rss_after,
        negotiated: stats.negotiated.get().cloned(),
        task_bytes: stats.task_bytes.load(Ordering::Relaxed),
    })?;

    // The orchestrator now lets the client exit; the kernel closes its sockets, and the
    // connection tasks here see the end of their connections and drop them.
    let deadline = tokio::time::Instant::now() + CLOSE_PATIENCE;
    while stats.held.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let still_held = stats.held.load(Ordering::Acquire);
    drop(server);
    tokio::time::sleep(SETTLE).await;
    say(&ServerClosed {
        rss_closed: machine::rss_bytes()?,
        still_held,
    })
}

/// Prints one message to the orchestrator, as one JSON line.
fn say<T: Serialize>(message: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(message)?);
    Ok(())
}

/// A listening server of one stack, accepting on its own task until dropped.
struct Server {
    addr: SocketAddr,
    stats: Arc<EndpointStats>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl Server {
    /// Binds 127.0.0.1 on a free port and starts accepting.
    async fn start(stack: Stack, files: &IdentityFiles, resumption: bool) -> anyhow::Result<Self> {
        let stats = Arc::new(EndpointStats::default());
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let (addr, accept_loop) = match stack {
            Stack::Secsock => {
                let platform = Platform::load(&files.policy)
                    .with_context(|| format!("loading {}", files.policy.display()))?;
                let mut socket =
                    secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform)?;
                socket.set_security(&SecuritySettings::new())?;
                socket.bind(local)?;
                let mut listener = socket.listen(BACKLOG as i32)?;
                // Every client comes from the one load generator, thousands at once.
                listener.set_max_handshakes_per_source(usize::MAX);
                let addr = listener.local_addr()?;
                (addr, tokio::spawn(accept_secsock(listener, stats.clone())))
            }
            Stack::Rustls => {
                let acceptor = TlsAcceptor::from(baseline::server_config(files, resumption)?);
                let socket = TcpSocket::new_v4()?;
                socket.set_reuseaddr(true)?;
                socket.bind(local)?;
                let listener = socket.listen(BACKLOG)?;
                let addr = listener.local_addr()?;
                (
                    addr,
                    tokio::spawn(accept_rustls(listener, acceptor, stats.clone())),
                )
            }
        };
        Ok(Self {
            addr,
            stats,
            accept_loop,
        })
    }
}

/// Sleeps briefly after a failed accept (e.g. out of file descriptors) instead of spinning.
async fn accept_failed(stats: &EndpointStats, error: std::io::Error) {
    stats.failed(format!("accept: {error}"));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn accept_secsock(listener: secsock::tokio::SecureListener, stats: Arc<EndpointStats>) {
    loop {
        match listener.accept_pending().await {
            Ok(pending) => {
                let task = serve_secsock(pending, stats.clone());
                stats.note_task_size(&task);
                tokio::spawn(task);
            }
            Err(e) => accept_failed(&stats, e).await,
        }
    }
}

// The connection tasks bind the stream with `let .. = match .. else return`, not inside a
// `match` arm: a scrutinee lives until the end of its `match`, so holding the connection
// inside an arm would keep a second, moved-from copy of the stream in the task.

async fn serve_secsock(pending: secsock::tokio::PendingStream, stats: Arc<EndpointStats>) {
    let mut stream = match pending.handshake().await {
        Ok(stream) => stream,
        Err(e) => return stats.failed(e),
    };
    stats.secsock_handshake_done(&stream);
    hold(&mut stream).await;
    stats.released();
}

async fn accept_rustls(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    stats: Arc<EndpointStats>,
) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let task = serve_rustls(tcp, acceptor.clone(), stats.clone());
                stats.note_task_size(&task);
                tokio::spawn(task);
            }
            Err(e) => accept_failed(&stats, e).await,
        }
    }
}

async fn serve_rustls(tcp: TcpStream, acceptor: TlsAcceptor, stats: Arc<EndpointStats>) {
    // As secsock does: whole flights go out at once, Nagle would only delay the last one.
    let _ = tcp.set_nodelay(true);
    let mut stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return stats.failed(format!("handshake: {e}")),
        Err(_) => return stats.failed(format!("handshake timed out after {HANDSHAKE_TIMEOUT:?}")),
    };
    let conn = stream.get_ref().1;
    stats.handshake_done(
        conn.handshake_kind() == Some(HandshakeKind::Resumed),
        || Negotiated::of_rustls(conn),
    );
    hold(&mut stream).await;
    stats.released();
}
