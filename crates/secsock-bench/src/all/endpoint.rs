//! The two child processes of one figure of the suite (the hidden `bench-server` and
//! `bench-client` commands): a server of one stack on 127.0.0.1 and a client of the same
//! stack that measures itself, each in a fresh process as `load` runs them.
//!
//! The workloads, the same for every stack:
//! - **bulk**: one connection; the client writes `bytes` in writes of `chunk` bytes, the
//!   server reads with a `chunk`-byte buffer and, once it has everything, answers one byte.
//!   The client's figure is the time from its first write to that byte (the handshake is
//!   over before the clock starts).
//! - **handshakes**: `threads` client threads each open connections one after another for
//!   `seconds` (after `warmup` connections each that are not counted): TCP connect, mutual
//!   TLS handshake, a one-byte request, the server's one-byte answer, then close_notify and
//!   close. The latency of one connection is connect to that first byte. A last connection
//!   after the window (the probe) reports what was negotiated and whether it resumed.
//! - **rtt**: one connection; one byte there and back, `iterations` times after `warmup`.
//!
//! The server answers on the same connection (echo) for handshakes and rtt. The blocking
//! stacks serve each connection on the accepting thread (`threads` accept threads); the
//! tokio stacks run a current-thread runtime and serve bulk only.
//!
//! Conversation with the orchestrator (`run`), JSON lines: the server prints [`Ready`] and
//! serves until its stdin closes, then prints [`ServerSummary`] and exits. The bulk client
//! runs and prints [`ClientReport`]. The handshakes and rtt clients measure in slices, so
//! that the orchestrator can run the stacks of a figure by turns within one run: the client
//! warms up and prints [`Warmed`], then runs one slice for each [`Go`] on its stdin (a
//! window of `seconds`, or `iterations` round trips) and prints [`SliceDone`]; when its
//! stdin closes it prints [`ClientReport`] over all its slices.

use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection, StreamOwned,
};
use rustls_pki_types::ServerName;
use secsock::{Domain, PeerTargetName, Platform, SecuritySettings};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::stacks::{self, Kx, Stack};
use super::stats;
use crate::domain::{IdentityFiles, SERVER_NAME};
use crate::load::Negotiated;

/// What one figure measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// One connection, `bytes` one way in `chunk`-byte writes.
    Bulk,
    /// Connections one after another per client thread.
    Handshakes,
    /// One-byte round trips over one connection.
    Rtt,
}

/// The arguments both endpoints take.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// The stack.
    #[arg(long, value_enum)]
    pub stack: Stack,
    /// What is measured.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// The identity's directory (host.crt, host.key, ca.crt, policy.toml).
    #[arg(long)]
    pub identity: PathBuf,
    /// The key exchange variant.
    #[arg(long, value_enum, default_value_t = Kx::Pq)]
    pub kx: Kx,
    /// No session resumption (secsock: the variant's `_full` policy; rustls: no tickets
    /// sent, none used).
    #[arg(long)]
    pub no_resumption: bool,
    /// Bulk: bytes sent over the connection.
    #[arg(long, default_value_t = 0)]
    pub bytes: u64,
    /// Bulk: the size of each write (client) and read buffer (server).
    #[arg(long, default_value_t = 16384)]
    pub chunk: usize,
    /// Client: threads opening connections; server: accepting threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Runs the whole process on this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Server: counts its CPU time from the connection after this many (the clients'
    /// warm-up), for the CPU per connection of its summary.
    #[arg(long, default_value_t = 0)]
    pub cpu_mark: u64,
}

/// The client's own arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientOnly {
    /// The server.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Handshakes: seconds of each slice's window.
    #[arg(long, default_value_t = 0.25)]
    pub seconds: f64,
    /// Handshakes: connections per thread before the window; rtt: round trips before the
    /// samples.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Rtt: round trips sampled in each slice.
    #[arg(long, default_value_t = 10_000)]
    pub iterations: usize,
}

/// The handshakes or rtt client's word that it has warmed up and waits for [`Go`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Warmed {}

/// The orchestrator's word to a warmed-up client: run one slice.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Go {
    /// The slice's number in the run, from 0 (for messages).
    pub slice: usize,
}

/// What one slice did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SliceDone {
    /// Handshakes: connections completed; rtt: round trips.
    pub operations: u64,
    /// Wall time of the slice: from its start to the last thread's end.
    pub seconds: f64,
}

/// The server's first line: it listens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ready {
    /// Where.
    pub addr: SocketAddr,
}

/// The server's last line, once its stdin closed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerSummary {
    /// Connections whose handshake completed.
    pub connections: u64,
    /// Failed accepts, handshakes and connections.
    pub failures: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// What the server side of its first connection negotiated.
    pub negotiated: Option<Negotiated>,
    /// CPU time of the measured work, nanoseconds: bulk, from the connection's handshake to
    /// the answer; handshakes, from the `cpu_mark`-th connection to the summary.
    pub cpu_ns: u64,
    /// The operations `cpu_ns` covers: bytes received (bulk) or connections (handshakes).
    pub cpu_ops: u64,
}

/// The client's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientReport {
    /// Bulk: first write to the server's answer; handshakes: the slices' windows, added.
    pub seconds: f64,
    /// Bulk: bytes sent.
    pub bytes: u64,
    /// Handshakes: connections completed in the slices (all threads).
    pub connections: u64,
    /// Connections (or exchanges) that failed.
    pub failures: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Handshakes: connect to first byte; rtt: one round trip. (p50, p99) in nanoseconds,
    /// over the samples of all slices.
    pub latency_ns: Option<(u64, u64)>,
    /// Latency samples behind `latency_ns`.
    pub samples: usize,
    /// What the client side negotiated (bulk and rtt: the connection; handshakes: the probe).
    pub negotiated: Option<Negotiated>,
    /// Whether that connection resumed a session.
    pub resumed: Option<bool>,
    /// CPU time of this process during the measurement (bulk: first write to the answer;
    /// handshakes: the slices), nanoseconds, all threads.
    pub cpu_ns: u64,
}

// ---------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------

/// Counters of the server process.
#[derive(Default)]
struct ServerStats {
    connections: AtomicU64,
    failures: AtomicU64,
    first_error: Mutex<Option<String>>,
    negotiated: OnceLock<Negotiated>,
    /// Connections counted before the CPU mark (`Common::cpu_mark`).
    mark: u64,
    /// Process CPU time when the mark was passed.
    cpu_at_mark: OnceLock<u64>,
    /// Bulk: CPU time and bytes of the (first) transfer.
    bulk_cpu: OnceLock<(u64, u64)>,
}

impl ServerStats {
    fn failed(&self, error: impl std::fmt::Display) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(error.to_string());
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection whose handshake completed, and passes the CPU mark.
    fn connected(&self) {
        let n = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.mark {
            self.cpu_at_mark.get_or_init(crate::machine::process_cpu_ns);
        }
    }

    fn summary(&self) -> ServerSummary {
        let (cpu_ns, cpu_ops) = match (self.bulk_cpu.get(), self.cpu_at_mark.get()) {
            (Some(&(ns, bytes)), _) => (ns, bytes),
            (None, Some(&at)) => (
                crate::machine::process_cpu_ns().saturating_sub(at),
                // The connection that passed the mark had done its handshake: not counted.
                self.connections
                    .load(Ordering::Relaxed)
                    .saturating_sub(self.mark + 1),
            ),
            (None, None) => (0, 0),
        };
        ServerSummary {
            cpu_ns,
            cpu_ops,
            connections: self.connections.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            negotiated: self.negotiated.get().cloned(),
        }
    }
}

/// The `bench-server` command: listens, prints [`Ready`], serves until stdin closes, prints
/// [`ServerSummary`] and exits (connections still open are cut).
pub fn run_server(common: &Common) -> anyhow::Result<()> {
    check_bulk(common)?;
    if let Some(cpu) = common.cpu {
        crate::machine::pin_to_cpu(None, cpu)?;
    }
    // aws-lc seeds its generator (CPU jitter, tens of milliseconds) on first use: before
    // anything is measured, for every stack alike.
    crate::load::seed_random()?;
    let files = IdentityFiles::in_dir(&common.identity);
    let stats = Arc::new(ServerStats {
        mark: common.cpu_mark,
        ..ServerStats::default()
    });
    let addr = if common.stack.is_async() {
        start_async_server(common, &files, stats.clone())?
    } else {
        start_blocking_server(common, &files, stats.clone())?
    };
    say(&Ready { addr })?;
    let mut line = String::new();
    let stdin = io::stdin();
    while stdin.lock().read_line(&mut line).unwrap_or(0) > 0 {
        line.clear();
    }
    say(&stats.summary())?;
    io::stdout().flush()?;
    std::process::exit(0);
}

fn say<T: Serialize>(message: &T) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(message)?)?;
    out.flush()?;
    Ok(())
}

fn local() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A blocking listener of one stack.
enum Listener {
    Tcp(TcpListener),
    Rustls(TcpListener, Arc<ServerConfig>),
    Secsock(secsock::SecureListener),
}

/// An accepted blocking connection whose handshake completed. Every variant is boxed, so
/// that every stack's data path goes through the same one indirection.
enum ServerConn {
    Tcp(Box<TcpStream>),
    Rustls(Box<StreamOwned<ServerConnection, TcpStream>>),
    Secsock(Box<secsock::SecureStream>),
}

/// Why an accept produced no connection.
enum AcceptError {
    /// The listener's accept failed (retry after a pause).
    Accept(io::Error),
    /// The peer's connection or handshake failed.
    Peer(String),
}

impl Listener {
    fn new(common: &Common, files: &IdentityFiles) -> anyhow::Result<Self> {
        let resumption = !common.no_resumption;
        Ok(match common.stack {
            Stack::Tcp => Listener::Tcp(TcpListener::bind(local())?),
            Stack::Rustls => Listener::Rustls(
                TcpListener::bind(local())?,
                stacks::rustls_server(files, common.kx, resumption)?,
            ),
            Stack::Secsock => {
                let platform = Platform::load(&files.policy)
                    .with_context(|| format!("loading {}", files.policy.display()))?;
                let mut socket = secsock::SecureSocket::with_platform(Domain::IPV4, platform)?;
                socket.set_security(&stacks::secsock_settings(common.kx, resumption))?;
                socket.bind(local())?;
                let mut listener = socket.listen(1024)?;
                // Every client comes from the one load generator.
                listener.set_max_handshakes_per_source(usize::MAX);
                Listener::Secsock(listener)
            }
            other => bail!("{} has no blocking server", other.name()),
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(l) | Listener::Rustls(l, _) => l.local_addr(),
            Listener::Secsock(l) => l.local_addr(),
        }
    }

    fn accept(&self) -> Result<ServerConn, AcceptError> {
        match self {
            Listener::Tcp(l) => {
                let (tcp, _) = l.accept().map_err(AcceptError::Accept)?;
                tcp.set_nodelay(true)
                    .map_err(|e| AcceptError::Peer(e.to_string()))?;
                Ok(ServerConn::Tcp(Box::new(tcp)))
            }
            Listener::Rustls(l, config) => {
                let (tcp, _) = l.accept().map_err(AcceptError::Accept)?;
                let handshake = || -> anyhow::Result<ServerConn> {
                    // As secsock does: whole flights go out at once.
                    tcp.set_nodelay(true)?;
                    let conn = ServerConnection::new(config.clone())?;
                    let mut stream = StreamOwned::new(conn, tcp);
                    while stream.conn.is_handshaking() {
                        stream.conn.complete_io(&mut stream.sock)?;
                    }
                    Ok(ServerConn::Rustls(Box::new(stream)))
                };
                handshake().map_err(|e| AcceptError::Peer(format!("handshake: {e}")))
            }
            Listener::Secsock(l) => match secsock_accept(l) {
                Ok(stream) => Ok(ServerConn::Secsock(Box::new(stream))),
                Err(secsock::Error::Io(e)) => Err(AcceptError::Accept(e)),
                Err(e) => Err(AcceptError::Peer(e.to_string())),
            },
        }
    }
}

/// The environment variable that makes the blocking secsock server use
/// `SecureListener::accept` (its concurrent handshakes, on worker threads) instead of
/// `accept_pending` + `handshake` on the calling thread.
pub const POOL_ACCEPT_VAR: &str = "SECSOCK_BENCH_POOL_ACCEPT";

/// One secsock connection, secured: by default as the rustls baseline does it, each server
/// thread accepting and handshaking on its own (`accept_pending` + `handshake`), so that
/// the figures compare handshakes, not server designs; with [`POOL_ACCEPT_VAR`] set,
/// through `accept`'s concurrent handshakes (what a blocking secsock server gets by
/// default, which no silent peer can stall: docs/PERFORMANCE.md measures what it costs).
fn secsock_accept(
    listener: &secsock::SecureListener,
) -> Result<secsock::SecureStream, secsock::Error> {
    if std::env::var_os(POOL_ACCEPT_VAR).is_some() {
        return listener.accept();
    }
    listener
        .accept_pending()
        .map_err(secsock::Error::Io)
        .and_then(|pending| pending.handshake())
}

/// Runs `$body` with `$s` bound to the connection's stream, whichever stack it is (each arm
/// is compiled for its own stream type: no dynamic dispatch on the data path).
macro_rules! with_stream {
    ($conn:expr, $enum:ident, $s:ident => $body:expr) => {
        match $conn {
            $enum::Tcp($s) => $body,
            $enum::Rustls($s) => $body,
            $enum::Secsock($s) => $body,
        }
    };
}

impl ServerConn {
    fn negotiated(&self) -> Option<Negotiated> {
        match self {
            ServerConn::Tcp(_) => None,
            ServerConn::Rustls(s) => Some(Negotiated::of_rustls(&s.conn)),
            ServerConn::Secsock(s) => Some(Negotiated::of_secsock(&s.query_security())),
        }
    }
}

fn start_blocking_server(
    common: &Common,
    files: &IdentityFiles,
    stats: Arc<ServerStats>,
) -> anyhow::Result<SocketAddr> {
    let listener = Arc::new(Listener::new(common, files)?);
    let addr = listener.local_addr()?;
    for _ in 0..common.threads.max(1) {
        let (listener, stats, common) = (listener.clone(), stats.clone(), common.clone());
        std::thread::spawn(move || loop {
            match listener.accept() {
                Ok(mut conn) => {
                    if stats.negotiated.get().is_none() {
                        if let Some(n) = conn.negotiated() {
                            let _ = stats.negotiated.set(n);
                        }
                    }
                    stats.connected();
                    let served =
                        with_stream!(&mut conn, ServerConn, s => serve(&mut **s, &common, &stats));
                    if let Err(e) = served {
                        stats.failed(format!("serving: {e}"));
                    }
                }
                Err(AcceptError::Accept(e)) => {
                    stats.failed(format!("accept: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(AcceptError::Peer(e)) => stats.failed(e),
            }
        });
    }
    Ok(addr)
}

/// Serves one blocking connection: bulk sink or echo, then waits for the client to close.
fn serve<S: Read + Write + ?Sized>(
    s: &mut S,
    common: &Common,
    stats: &ServerStats,
) -> io::Result<()> {
    match common.workload {
        Workload::Bulk => {
            let cpu = crate::machine::process_cpu_ns();
            let mut buf = vec![0u8; common.chunk.max(1)];
            let mut got = 0u64;
            while got < common.bytes {
                match s.read(&mut buf)? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => got += n as u64,
                }
            }
            // Counted before the answer: once it is sent, the client may finish (and the
            // orchestrator ask for the summary) before this thread runs again.
            let _ = stats
                .bulk_cpu
                .set((crate::machine::process_cpu_ns().saturating_sub(cpu), got));
            s.write_all(&[1])?;
            s.flush()?;
            drain(s);
            Ok(())
        }
        Workload::Handshakes | Workload::Rtt => {
            let mut buf = [0u8; 64];
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    // A client that closes without close_notify (or resets) is done too.
                    Err(e) if ends_connection(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                s.write_all(&buf[..n])?;
                s.flush()?;
            }
        }
    }
}

fn ends_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Reads until the peer closes (or fails).
fn drain<S: Read + ?Sized>(s: &mut S) {
    let mut buf = [0u8; 256];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
    }
}

fn start_async_server(
    common: &Common,
    files: &IdentityFiles,
    stats: Arc<ServerStats>,
) -> anyhow::Result<SocketAddr> {
    if common.workload != Workload::Bulk {
        bail!("the tokio stacks serve bulk only");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let resumption = !common.no_resumption;
    let common = common.clone();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
    let files = files.clone();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            match common.stack {
                Stack::RustlsTokio => {
                    let setup = async {
                        let config = stacks::rustls_server(&files, common.kx, resumption)?;
                        let listener = tokio::net::TcpListener::bind(local()).await?;
                        Ok::<_, anyhow::Error>((listener, tokio_rustls::TlsAcceptor::from(config)))
                    };
                    let (listener, acceptor) = match setup.await {
                        Ok(x) => x,
                        Err(e) => return drop(addr_tx.send(Err(e))),
                    };
                    let _ = addr_tx.send(listener.local_addr().map_err(Into::into));
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, stats, common) =
                            (acceptor.clone(), stats.clone(), common.clone());
                        tokio::spawn(async move {
                            let _ = tcp.set_nodelay(true);
                            let mut stream = match acceptor.accept(tcp).await {
                                Ok(s) => s,
                                Err(e) => return stats.failed(format!("handshake: {e}")),
                            };
                            let _ = stats
                                .negotiated
                                .set(Negotiated::of_rustls(stream.get_ref().1));
                            stats.connected();
                            if let Err(e) = sink_async(&mut stream, &common, &stats).await {
                                stats.failed(format!("serving: {e}"));
                            }
                        });
                    }
                }
                Stack::SecsockTokio => {
                    let setup = || {
                        let platform = Platform::load(&files.policy)
                            .with_context(|| format!("loading {}", files.policy.display()))?;
                        let mut socket =
                            secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform)?;
                        socket.set_security(&stacks::secsock_settings(common.kx, resumption))?;
                        socket.bind(local())?;
                        let mut listener = socket.listen(1024)?;
                        // Every client comes from the one load generator.
                        listener.set_max_handshakes_per_source(usize::MAX);
                        Ok::<_, anyhow::Error>(listener)
                    };
                    let listener = match setup() {
                        Ok(l) => l,
                        Err(e) => return drop(addr_tx.send(Err(e))),
                    };
                    let _ = addr_tx.send(listener.local_addr().map_err(Into::into));
                    loop {
                        let mut stream = match listener.accept().await {
                            Ok(s) => s,
                            Err(e) => {
                                stats.failed(e);
                                continue;
                            }
                        };
                        let (stats, common) = (stats.clone(), common.clone());
                        tokio::spawn(async move {
                            let _ = stats
                                .negotiated
                                .set(Negotiated::of_secsock(&stream.query_security()));
                            stats.connected();
                            if let Err(e) = sink_async(&mut stream, &common, &stats).await {
                                stats.failed(format!("serving: {e}"));
                            }
                        });
                    }
                }
                other => {
                    let _ = addr_tx.send(Err(anyhow::anyhow!(
                        "{} is not a tokio stack",
                        other.name()
                    )));
                }
            }
        })
    });
    addr_rx
        .recv()
        .context("the server's runtime thread ended before listening")?
}

/// The async bulk sink: reads `bytes` with a `chunk`-byte buffer, answers one byte, waits
/// for the client to close.
async fn sink_async<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    common: &Common,
    stats: &ServerStats,
) -> io::Result<()> {
    let cpu = crate::machine::process_cpu_ns();
    let mut buf = vec![0u8; common.chunk.max(1)];
    let mut got = 0u64;
    while got < common.bytes {
        match s.read(&mut buf).await? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n as u64,
        }
    }
    // Counted before the answer (see `serve`).
    let _ = stats
        .bulk_cpu
        .set((crate::machine::process_cpu_ns().saturating_sub(cpu), got));
    s.write_all(&[1]).await?;
    s.flush().await?;
    let mut rest = [0u8; 256];
    while let Ok(n) = s.read(&mut rest).await {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The client process
// ---------------------------------------------------------------------------------------

/// How a blocking client connects, set up once per process.
#[allow(clippy::large_enum_variant)] // one per process
enum Connector {
    Tcp,
    Rustls {
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    },
    Secsock {
        platform: Arc<Platform>,
        settings: SecuritySettings,
        target: PeerTargetName,
    },
}

/// A blocking client connection whose handshake completed (boxed as [`ServerConn`]).
enum ClientConn {
    Tcp(Box<TcpStream>),
    Rustls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Secsock(Box<secsock::SecureStream>),
}

impl Connector {
    fn new(common: &Common, files: &IdentityFiles) -> anyhow::Result<Self> {
        let resumption = !common.no_resumption;
        Ok(match common.stack {
            Stack::Tcp => Connector::Tcp,
            Stack::Rustls => Connector::Rustls {
                config: stacks::rustls_client(files, common.kx, resumption)?,
                name: ServerName::try_from(SERVER_NAME)?,
            },
            Stack::Secsock => Connector::Secsock {
                platform: Platform::load(&files.policy)
                    .with_context(|| format!("loading {}", files.policy.display()))?,
                settings: stacks::secsock_settings(common.kx, resumption),
                target: PeerTargetName::parse(SERVER_NAME)?,
            },
            other => bail!("{} has no blocking client", other.name()),
        })
    }

    /// Connects and completes the handshake, as an application of each stack would.
    fn connect(&self, addr: SocketAddr) -> anyhow::Result<ClientConn> {
        Ok(match self {
            Connector::Tcp => {
                let tcp = TcpStream::connect(addr)?;
                tcp.set_nodelay(true)?;
                ClientConn::Tcp(Box::new(tcp))
            }
            Connector::Rustls { config, name } => {
                let tcp = TcpStream::connect(addr)?;
                // As secsock does: whole flights go out at once.
                tcp.set_nodelay(true)?;
                let conn = ClientConnection::new(config.clone(), name.clone())?;
                let mut stream = StreamOwned::new(conn, tcp);
                while stream.conn.is_handshaking() {
                    stream.conn.complete_io(&mut stream.sock)?;
                }
                ClientConn::Rustls(Box::new(stream))
            }
            Connector::Secsock {
                platform,
                settings,
                target,
            } => {
                let mut socket =
                    secsock::SecureSocket::with_platform(Domain::IPV4, platform.clone())?;
                socket.set_security(settings)?;
                socket.set_peer_target_name(target.clone())?;
                ClientConn::Secsock(Box::new(socket.connect(addr)?))
            }
        })
    }
}

impl ClientConn {
    /// What this side negotiated and whether it resumed a session.
    fn negotiated(&self) -> (Option<Negotiated>, Option<bool>) {
        match self {
            ClientConn::Tcp(_) => (None, None),
            ClientConn::Rustls(s) => (
                Some(Negotiated::of_rustls(&s.conn)),
                Some(s.conn.handshake_kind() == Some(HandshakeKind::Resumed)),
            ),
            ClientConn::Secsock(s) => {
                let info = s.query_security();
                (Some(Negotiated::of_secsock(&info)), Some(info.resumed))
            }
        }
    }

    /// Sends close_notify (TLS) and the TCP FIN, and lets the connection go without
    /// waiting for the server's.
    fn close(self) -> io::Result<()> {
        match self {
            ClientConn::Tcp(s) => s.shutdown(Shutdown::Write),
            ClientConn::Rustls(mut s) => {
                s.conn.send_close_notify();
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut s.sock)?;
                }
                s.sock.shutdown(Shutdown::Write)
            }
            ClientConn::Secsock(mut s) => s.shutdown(Shutdown::Write),
        }
    }
}

/// The `bench-client` command: measures and prints its [`ClientReport`].
/// The bulk workload sends whole writes: the server waits for exactly what they add up to.
fn check_bulk(common: &Common) -> anyhow::Result<()> {
    if common.workload == Workload::Bulk
        && (common.chunk == 0 || common.bytes % common.chunk as u64 != 0)
    {
        bail!(
            "--bytes {} is not a whole number of --chunk {} writes",
            common.bytes,
            common.chunk
        );
    }
    Ok(())
}

pub fn run_client(common: &Common, client: &ClientOnly) -> anyhow::Result<()> {
    check_bulk(common)?;
    if let Some(cpu) = common.cpu {
        crate::machine::pin_to_cpu(None, cpu)?;
    }
    crate::load::seed_random()?;
    let files = IdentityFiles::in_dir(&common.identity);
    let report = match (common.workload, common.stack.is_async()) {
        (Workload::Bulk, true) => bulk_async(common, client, &files)?,
        (Workload::Bulk, false) => bulk(common, client, &files)?,
        (Workload::Handshakes, false) => handshakes(common, client, &files)?,
        (Workload::Rtt, false) => rtt(common, client, &files)?,
        (workload, true) => bail!("the tokio stacks do not run {workload:?}"),
    };
    say(&report)
}

/// The bulk data: a repeating pattern (its content does not matter to AES-GCM).
fn bulk_buffer(chunk: usize) -> Vec<u8> {
    (0..chunk.max(1)).map(|i| (i % 251) as u8).collect()
}

fn bulk(
    common: &Common,
    client: &ClientOnly,
    files: &IdentityFiles,
) -> anyhow::Result<ClientReport> {
    let connector = Connector::new(common, files)?;
    let mut conn = connector.connect(client.addr)?;
    let buf = bulk_buffer(common.chunk);
    let writes = common.bytes / buf.len() as u64;
    let cpu = crate::machine::process_cpu_ns();
    let started = Instant::now();
    with_stream!(&mut conn, ClientConn, s => send_bulk(&mut **s, &buf, writes))?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_ns = crate::machine::process_cpu_ns().saturating_sub(cpu);
    let (negotiated, resumed) = conn.negotiated();
    conn.close()?;
    Ok(ClientReport {
        seconds,
        cpu_ns,
        bytes: writes * buf.len() as u64,
        negotiated,
        resumed,
        ..ClientReport::default()
    })
}

fn send_bulk<S: Read + Write + ?Sized>(s: &mut S, buf: &[u8], writes: u64) -> io::Result<()> {
    for _ in 0..writes {
        s.write_all(buf)?;
    }
    s.flush()?;
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack)
}

fn bulk_async(
    common: &Common,
    client: &ClientOnly,
    files: &IdentityFiles,
) -> anyhow::Result<ClientReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let resumption = !common.no_resumption;
    let buf = bulk_buffer(common.chunk);
    let writes = common.bytes / buf.len() as u64;
    runtime.block_on(async {
        let (seconds, cpu_ns, negotiated, resumed) = match common.stack {
            Stack::RustlsTokio => {
                let connector = tokio_rustls::TlsConnector::from(stacks::rustls_client(
                    files, common.kx, resumption,
                )?);
                let tcp = tokio::net::TcpStream::connect(client.addr).await?;
                tcp.set_nodelay(true)?;
                let mut stream = connector
                    .connect(ServerName::try_from(SERVER_NAME)?, tcp)
                    .await?;
                let cpu = crate::machine::process_cpu_ns();
                let started = Instant::now();
                send_bulk_async(&mut stream, &buf, writes).await?;
                let seconds = started.elapsed().as_secs_f64();
                let cpu_ns = crate::machine::process_cpu_ns().saturating_sub(cpu);
                let conn = stream.get_ref().1;
                let negotiated = Negotiated::of_rustls(conn);
                let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
                stream.shutdown().await?;
                (seconds, cpu_ns, negotiated, resumed)
            }
            Stack::SecsockTokio => {
                let platform = Platform::load(&files.policy)
                    .with_context(|| format!("loading {}", files.policy.display()))?;
                let mut socket =
                    secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform)?;
                socket.set_security(&stacks::secsock_settings(common.kx, resumption))?;
                socket.set_peer_target_name(PeerTargetName::parse(SERVER_NAME)?)?;
                let mut stream = socket.connect(client.addr).await?;
                let cpu = crate::machine::process_cpu_ns();
                let started = Instant::now();
                send_bulk_async(&mut stream, &buf, writes).await?;
                let seconds = started.elapsed().as_secs_f64();
                let cpu_ns = crate::machine::process_cpu_ns().saturating_sub(cpu);
                let info = stream.query_security();
                stream.shutdown().await?;
                (seconds, cpu_ns, Negotiated::of_secsock(&info), info.resumed)
            }
            other => bail!("{} is not a tokio stack", other.name()),
        };
        Ok(ClientReport {
            seconds,
            cpu_ns,
            bytes: writes * buf.len() as u64,
            negotiated: Some(negotiated),
            resumed: Some(resumed),
            ..ClientReport::default()
        })
    })
}

async fn send_bulk_async<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &[u8],
    writes: u64,
) -> io::Result<()> {
    for _ in 0..writes {
        s.write_all(buf).await?;
    }
    s.flush().await?;
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await?;
    Ok(())
}

/// One connection of the handshakes workload: connect, handshake, one byte there and back,
/// close. Returns the time from `started` to the answer's byte, and with `probe` what was
/// negotiated.
fn exchange(
    connector: &Connector,
    addr: SocketAddr,
    probe: bool,
) -> anyhow::Result<(Duration, Option<Negotiated>, Option<bool>)> {
    let started = Instant::now();
    let mut conn = connector.connect(addr)?;
    with_stream!(&mut conn, ClientConn, s => one_byte_round_trip(&mut **s))?;
    let latency = started.elapsed();
    let (negotiated, resumed) = if probe {
        conn.negotiated()
    } else {
        (None, None)
    };
    conn.close()?;
    Ok((latency, negotiated, resumed))
}

fn one_byte_round_trip<S: Read + Write + ?Sized>(s: &mut S) -> io::Result<()> {
    s.write_all(b"?")?;
    s.flush()?;
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer)
}

/// The slices a warmed-up client is told to run: one per [`Go`] line on stdin, until stdin
/// closes. `run` measures one slice and says what it did.
fn run_slices(mut run: impl FnMut(usize) -> anyhow::Result<SliceDone>) -> anyhow::Result<()> {
    for line in io::stdin().lock().lines() {
        let line = line.context("reading the orchestrator's input")?;
        let go: Go = serde_json::from_str(&line)
            .with_context(|| format!("the orchestrator's input is not a Go message: {line}"))?;
        say(&run(go.slice)?)?;
    }
    Ok(())
}

/// What one client thread of the handshakes workload did in its slices.
#[derive(Default)]
struct ThreadResult {
    failures: u64,
    first_error: Option<String>,
    latencies_ns: Vec<u64>,
}

impl ThreadResult {
    fn failed(&mut self, e: anyhow::Error) {
        self.failures += 1;
        self.first_error.get_or_insert_with(|| format!("{e:#}"));
    }
}

/// What the handshakes client's threads share: the current slice's deadline (None: stop),
/// the barriers that start and end a slice, and the slice's counts.
struct SliceControl {
    deadline: Mutex<Option<Instant>>,
    /// Every thread and the main one: a slice (or the stop) begins.
    go: Barrier,
    /// Every thread and the main one: the warm-up or a slice is over.
    done: Barrier,
    /// Connections completed, all slices.
    connections: AtomicU64,
    /// When the last thread ended the current slice.
    ended: Mutex<Option<Instant>>,
}

fn handshakes(
    common: &Common,
    client: &ClientOnly,
    files: &IdentityFiles,
) -> anyhow::Result<ClientReport> {
    let connector = Arc::new(Connector::new(common, files)?);
    let threads = common.threads.max(1);
    let window = Duration::try_from_secs_f64(client.seconds.max(0.01))
        .with_context(|| format!("--seconds {}: not a duration", client.seconds))?;
    let control = Arc::new(SliceControl {
        deadline: Mutex::new(None),
        go: Barrier::new(threads + 1),
        done: Barrier::new(threads + 1),
        connections: AtomicU64::new(0),
        ended: Mutex::new(None),
    });
    let lock = |m: &Mutex<Option<Instant>>| *m.lock().unwrap_or_else(|p| p.into_inner());
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (connector, control) = (connector.clone(), control.clone());
        let (addr, warmup) = (client.addr, client.warmup);
        workers.push(std::thread::spawn(move || {
            let mut result = ThreadResult::default();
            for _ in 0..warmup {
                if let Err(e) = exchange(&connector, addr, false) {
                    result.failed(e);
                }
            }
            control.done.wait();
            loop {
                control.go.wait();
                let Some(deadline) = lock(&control.deadline) else {
                    break;
                };
                while Instant::now() < deadline {
                    match exchange(&connector, addr, false) {
                        Ok((latency, _, _)) => {
                            control.connections.fetch_add(1, Ordering::Relaxed);
                            result.latencies_ns.push(latency.as_nanos() as u64);
                        }
                        Err(e) => result.failed(e),
                    }
                }
                let now = Instant::now();
                let mut ended = control.ended.lock().unwrap_or_else(|p| p.into_inner());
                *ended = Some(ended.map_or(now, |e| e.max(now)));
                drop(ended);
                control.done.wait();
            }
            result
        }));
    }
    control.done.wait();
    let mut report = ClientReport::default();
    say(&Warmed {})?;
    run_slices(|_| {
        let before = control.connections.load(Ordering::Relaxed);
        *control.ended.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let cpu = crate::machine::process_cpu_ns();
        let started = Instant::now();
        *control.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(started + window);
        control.go.wait();
        control.done.wait();
        let seconds = (lock(&control.ended).unwrap_or(started) - started).as_secs_f64();
        report.seconds += seconds;
        report.cpu_ns += crate::machine::process_cpu_ns().saturating_sub(cpu);
        Ok(SliceDone {
            operations: control.connections.load(Ordering::Relaxed) - before,
            seconds,
        })
    })?;
    *control.deadline.lock().unwrap_or_else(|p| p.into_inner()) = None;
    control.go.wait();
    let mut latencies = Vec::new();
    for worker in workers {
        let result = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        report.failures += result.failures;
        if report.first_error.is_none() {
            report.first_error = result.first_error;
        }
        latencies.extend(result.latencies_ns);
    }
    report.connections = control.connections.load(Ordering::Relaxed);
    report.samples = latencies.len();
    report.latency_ns = stats::p50_p99(&mut latencies);
    match exchange(&connector, client.addr, true) {
        Ok((_, negotiated, resumed)) => {
            report.negotiated = negotiated;
            report.resumed = resumed;
        }
        Err(e) => {
            report.failures += 1;
            report
                .first_error
                .get_or_insert_with(|| format!("probe: {e:#}"));
        }
    }
    Ok(report)
}

fn rtt(
    common: &Common,
    client: &ClientOnly,
    files: &IdentityFiles,
) -> anyhow::Result<ClientReport> {
    let connector = Connector::new(common, files)?;
    let mut conn = connector.connect(client.addr)?;
    let mut latencies = Vec::new();
    with_stream!(&mut conn, ClientConn, s => {
        round_trips(&mut **s, client.warmup, &mut Vec::new())?;
        say(&Warmed {})?;
        run_slices(|_| {
            let started = Instant::now();
            round_trips(&mut **s, client.iterations, &mut latencies)?;
            Ok(SliceDone {
                operations: client.iterations as u64,
                seconds: started.elapsed().as_secs_f64(),
            })
        })
    })?;
    let (negotiated, resumed) = conn.negotiated();
    conn.close()?;
    let samples = latencies.len();
    Ok(ClientReport {
        latency_ns: stats::p50_p99(&mut latencies),
        samples,
        negotiated,
        resumed,
        ..ClientReport::default()
    })
}

/// `iterations` one-byte round trips, each one's time added to `latencies`.
fn round_trips<S: Read + Write + ?Sized>(
    s: &mut S,
    iterations: usize,
    latencies: &mut Vec<u64>,
) -> io::Result<()> {
    let mut byte = [0u8; 1];
    latencies.reserve(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        s.write_all(b".")?;
        s.flush()?;
        s.read_exact(&mut byte)?;
        latencies.push(started.elapsed().as_nanos() as u64);
    }
    Ok(())
}
