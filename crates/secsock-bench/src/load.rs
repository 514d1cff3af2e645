//! The load scenario of issue 4: open N secured connections to an in-process server, hold
//! them all idle, and measure how fast they were opened and how much memory each costs on
//! each endpoint — for secsock and, in the same run, for plain tokio-rustls with the same
//! certificates and crypto.
//!
//! Two processes share the work, because one process cannot hold both ends of 10,000
//! connections under a 20,000 open-file limit: the benchmark process runs the server, and
//! for each stack a fresh client process (this binary's hidden `load-client` command)
//! opens the connections and reports its figures as one JSON line on stdout. Every phase
//! has its own listener and its own client process; between phases every connection is
//! closed, the server's memory is left to settle and the allocator's free memory is given
//! back to the kernel (`malloc_trim`), so that the second phase does not grow into the
//! first one's freed pages. What remains is measured: the second phase's server figure
//! reads about 4 % low at 10,000 connections (see `--order`).
//!
//! Each stack's connections are held by tasks of their own function, so that a task's
//! size is that stack's alone (a future holding either stack would be as large as the
//! larger one).
//!
//! Not here: machine facts and limits (`machine`), certificates (`domain`).

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, HandshakeKind, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use secsock::{Domain, PeerTargetName, Platform, SecuritySettings};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::domain::{IdentityFiles, TrustDomain, SERVER_NAME};
use crate::machine::{self, FdLimit, HeapGrowth, Machine};

/// The listen backlog of both servers (the kernel caps it at net.core.somaxconn).
const BACKLOG: u32 = 4096;
/// The baseline's bound on one connect plus handshake: secsock's default policy
/// `handshake_timeout`, so both stacks give up on a connection at the same point.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to work that follows the last handshake (session tickets on their way and
/// being stored) before memory is read.
const SETTLE: Duration = Duration::from_millis(500);
/// Time the server's memory is left to settle after a phase's connections are gone (then
/// the allocator's free memory is released).
const SETTLE_BETWEEN_PHASES: Duration = Duration::from_secs(1);
/// Worker threads of each process's runtime.
pub const WORKER_THREADS: usize = 2;

/// A TLS stack under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// secsock's async API (`secsock::tokio`), configured by a policy file.
    Secsock,
    /// Plain tokio-rustls: `WebPkiClientVerifier` / `WebPkiServerVerifier` over the same CA.
    Rustls,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Secsock => "secsock",
            Stack::Rustls => "rustls",
        }
    }
}

/// Which stack's phase runs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// The baseline first, then secsock.
    RustlsFirst,
    /// secsock first, then the baseline.
    SecsockFirst,
}

impl Order {
    fn stacks(self) -> [Stack; 2] {
        match self {
            Order::RustlsFirst => [Stack::Rustls, Stack::Secsock],
            Order::SecsockFirst => [Stack::Secsock, Stack::Rustls],
        }
    }
}

/// What one run of `load` was asked to do.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Connections opened and held, per stack.
    pub connections: usize,
    /// Connects-plus-handshakes the client keeps in flight.
    pub concurrency: usize,
    /// Which stack goes first.
    pub order: Order,
    /// Whether clients may resume sessions from earlier connections' tickets (each
    /// stack's default); without, every handshake is a full one and no tickets are sent.
    pub resumption: bool,
    /// The command line, for the report.
    pub command: String,
}

/// What the client process of the `load-client` command is asked to do.
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
    /// The client identity's directory (certificate, key, CA, policy).
    pub identity: std::path::PathBuf,
    /// See [`LoadOptions::resumption`] (secsock's is in the policy file).
    pub resumption: bool,
}

/// The protocol parameters a connection ended up with, as its own side reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Negotiated {
    /// e.g. `TLSv1.3`.
    pub protocol: String,
    /// e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// e.g. `X25519MLKEM768`.
    pub key_exchange: String,
}

impl Negotiated {
    fn of_secsock(info: &secsock::SecurityInfo) -> Self {
        let text = |value: Option<&String>| value.cloned().unwrap_or_else(|| "none".into());
        Self {
            protocol: text(info.protocol_version.as_ref()),
            cipher_suite: text(info.cipher_suite.as_ref()),
            key_exchange: info
                .key_exchange_group
                .as_ref()
                .map(|g| g.name.clone())
                .unwrap_or_else(|| "none".into()),
        }
    }

    fn of_rustls(conn: &rustls::CommonState) -> Self {
        Self {
            protocol: conn
                .protocol_version()
                .map(|v| match v {
                    rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_else(|| "none".into()),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map(|s| {
                    let suite = s.suite();
                    suite
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{suite:?}"))
                })
                .unwrap_or_else(|| "none".into()),
            key_exchange: conn
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
                .unwrap_or_else(|| "none".into()),
        }
    }
}

/// Counters shared by one endpoint's connection tasks.
#[derive(Default)]
struct EndpointStats {
    /// Connections whose handshake completed and that are still open.
    held: AtomicUsize,
    /// Handshakes completed.
    completed: AtomicUsize,
    /// Connections that failed before their handshake completed.
    failures: AtomicUsize,
    /// Completed handshakes that resumed a session.
    resumed: AtomicUsize,
    /// [`machine::monotonic_ns`] of the latest completed handshake.
    last_handshake_ns: AtomicU64,
    /// The first failure, to say why.
    first_error: Mutex<Option<String>>,
    /// The parameters of the first completed handshake.
    negotiated: OnceLock<Negotiated>,
    /// `size_of_val` of one connection task's future: the task's allocation.
    task_bytes: AtomicUsize,
}

impl EndpointStats {
    fn handshake_done(&self, resumed: bool, negotiated: impl FnOnce() -> Negotiated) {
        self.negotiated.get_or_init(negotiated);
        if resumed {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        self.last_handshake_ns
            .fetch_max(machine::monotonic_ns(), Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Release);
    }

    fn failed(&self, error: impl std::fmt::Display) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(error.to_string());
        }
        drop(first);
        self.failures.fetch_add(1, Ordering::Release);
    }

    fn released(&self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }

    fn finished(&self) -> usize {
        self.completed.load(Ordering::Acquire) + self.failures.load(Ordering::Acquire)
    }

    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn note_task_size<F>(&self, future: &F) {
        self.task_bytes
            .store(std::mem::size_of_val(future), Ordering::Relaxed);
    }
}

/// Holds a connection idle: waits for data that never comes, until the peer goes away.
/// Session tickets and other post-handshake messages are processed on the way.
async fn hold<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 16];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The baseline's configurations.

/// The baseline's crypto: rustls's default aws-lc-rs provider, with the TLS 1.3 suites in
/// the order of secsock's standard crypto policy (AES-128-GCM first; rustls's default
/// puts AES-256-GCM first), so that both stacks negotiate the same suite. Key exchange
/// is rustls's default (X25519MLKEM768 first), as secsock's policy.
fn baseline_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let first = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    provider
        .cipher_suites
        .sort_by_key(|s| if s.suite() == first { 0 } else { 1 });
    Arc::new(provider)
}

/// The certificate chain, key and trust anchors of an identity, read from its PEM files.
struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Credentials {
    fn read(files: &IdentityFiles) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_file_iter(&files.certificate)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading {}", files.certificate.display()))?;
        let key = PrivateKeyDer::from_pem_file(&files.private_key)
            .with_context(|| format!("reading {}", files.private_key.display()))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&files.ca)
            .with_context(|| format!("reading {}", files.ca.display()))?
        {
            let ca = ca.with_context(|| format!("reading {}", files.ca.display()))?;
            roots
                .add(ca)
                .with_context(|| format!("using {} as a trust anchor", files.ca.display()))?;
        }
        Ok(Self {
            chain,
            key,
            roots: Arc::new(roots),
        })
    }
}

/// Mutual TLS server: rustls's defaults with `WebPkiClientVerifier` over the CA.
fn baseline_server_config(
    files: &IdentityFiles,
    resumption: bool,
) -> anyhow::Result<Arc<ServerConfig>> {
    let credentials = Credentials::read(files)?;
    let provider = baseline_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(credentials.roots.clone(), provider.clone())
            .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(credentials.chain, credentials.key)?;
    if !resumption {
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// Mutual TLS client: rustls's defaults with the CA as the only root and the client
/// certificate.
fn baseline_client_config(
    files: &IdentityFiles,
    resumption: bool,
) -> anyhow::Result<Arc<ClientConfig>> {
    let credentials = Credentials::read(files)?;
    let mut config = ClientConfig::builder_with_provider(baseline_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(credentials.roots)
        .with_client_auth_cert(credentials.chain, credentials.key)?;
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------------------
// The server side (in the benchmark process).

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
                let listener = socket.listen(BACKLOG as i32)?;
                let addr = listener.local_addr()?;
                (addr, tokio::spawn(accept_secsock(listener, stats.clone())))
            }
            Stack::Rustls => {
                let acceptor = TlsAcceptor::from(baseline_server_config(files, resumption)?);
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
    let info = stream.query_security();
    stats.handshake_done(info.resumed, || Negotiated::of_secsock(&info));
    drop(info);
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

// ---------------------------------------------------------------------------------------
// The client side (the `load-client` process).

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
    /// Live-heap growth per connection (feature `heap-profile`).
    pub heap: Option<HeapGrowth>,
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
    let runtime = runtime()?;
    let files = IdentityFiles::in_dir(&options.identity);
    let report = runtime.block_on(open_and_hold(options, &files, fd_limit))?;
    let line = serde_json::to_string(&report)?;
    println!("{line}");
    // Hold every connection until the benchmark process closes our stdin (or exits).
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
            connector: TlsConnector::from(baseline_client_config(files, options.resumption)?),
            name: ServerName::try_from(SERVER_NAME)?,
        },
    });
    // aws-lc seeds its random generator (CPU jitter entropy, tens of milliseconds) on first
    // use; loading a secsock platform does that already (it makes ticket keys), the
    // baseline's first handshake would pay it inside the measurement. Pay it here for both.
    let mut seed_probe = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut seed_probe)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    let stats = Arc::new(EndpointStats::default());
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let heap_before = machine::heap_mark();
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
    let held = stats.held.load(Ordering::Acquire);
    let heap = machine::heap_growth(&heap_before, &machine::heap_mark(), held);
    Ok(ClientReport {
        stack: options.stack,
        held,
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
        heap,
    })
}

async fn connect_secsock(
    connector: Arc<Connector>,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    stats: Arc<EndpointStats>,
) {
    let Connector::Secsock { platform, target } = &*connector else {
        return;
    };
    let connected = async {
        let mut socket =
            secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform.clone())?;
        socket.set_security(&SecuritySettings::new())?;
        socket.set_peer_target_name(target.clone())?;
        socket.connect(addr).await
    };
    let mut stream = match connected.await {
        Ok(stream) => stream,
        Err::<_, secsock::Error>(e) => return stats.failed(e),
    };
    let info = stream.query_security();
    stats.handshake_done(info.resumed, || Negotiated::of_secsock(&info));
    drop(info);
    drop(permit);
    hold(&mut stream).await;
    stats.released();
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
    let connected = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        tls.connect(name.clone(), tcp).await
    };
    let mut stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connected).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return stats.failed(format!("connect: {e}")),
        Err(_) => return stats.failed(format!("connect timed out after {HANDSHAKE_TIMEOUT:?}")),
    };
    let conn = stream.get_ref().1;
    stats.handshake_done(
        conn.handshake_kind() == Some(HandshakeKind::Resumed),
        || Negotiated::of_rustls(conn),
    );
    drop(permit);
    hold(&mut stream).await;
    stats.released();
}

/// The runtime of either process: multi-threaded, [`WORKER_THREADS`] workers.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

// ---------------------------------------------------------------------------------------
// The benchmark process: phases and the report.

/// One stack's figures.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    /// The stack.
    pub stack: Stack,
    /// Connections held by both endpoints when memory was measured.
    pub connections_held: usize,
    /// Connections asked for but not held (`connections - connections_held`).
    pub failures: usize,
    /// Failures as the client counted them.
    pub client_failures: usize,
    /// Failures as the server counted them (failed handshakes and accepts).
    pub server_failures: usize,
    /// The first failure's reason (client side first).
    pub first_error: Option<String>,
    /// Handshakes that resumed a session, as the server saw them.
    pub resumed_handshakes: usize,
    /// Handshakes completed per second while opening.
    pub handshakes_per_s: f64,
    /// From the first connect to the last completed handshake of either side.
    pub opening_seconds: f64,
    /// (server RSS with all held − RSS before) / held.
    pub server_memory_per_connection_bytes: i64,
    /// Likewise in the client process.
    pub client_memory_per_connection_bytes: i64,
    /// The mean of the two endpoints.
    pub memory_per_connection_bytes: i64,
    /// Server VmRSS before the phase, with all held, and after they were closed.
    pub server_rss_bytes: [u64; 3],
    /// Client VmRSS before the first connect and with all held.
    pub client_rss_bytes: [u64; 2],
    /// What the server side negotiated on its first connection.
    pub server_negotiated: Option<Negotiated>,
    /// What the client side negotiated on its first connection.
    pub client_negotiated: Option<Negotiated>,
    /// Size of one connection task's future (its allocation) on the server and client.
    pub task_bytes: [usize; 2],
    /// Live-heap growth per connection on the server (feature `heap-profile`).
    pub server_heap: Option<HeapGrowth>,
    /// Likewise on the client.
    pub client_heap: Option<HeapGrowth>,
}

/// Everything `load` reports.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// What was asked.
    pub options: LoadOptions,
    /// Where it ran.
    pub machine: Machine,
    /// The open-file limit of the benchmark process.
    pub fd_limit: FdLimit,
    /// secsock's figures.
    pub secsock: PhaseResult,
    /// The baseline's.
    pub rustls: PhaseResult,
}

/// The environment variable naming a program (with arguments, split at spaces) to run the
/// client process under, e.g. `heaptrack -o /tmp/client` or `perf record -g`; for profiling.
pub const CLIENT_WRAPPER_VAR: &str = "SECSOCK_BENCH_CLIENT_WRAPPER";

/// The command that starts the client process: this program, under the wrapper of
/// [`CLIENT_WRAPPER_VAR`] if one is set.
fn client_command(exe: std::path::PathBuf) -> tokio::process::Command {
    let wrapper = std::env::var(CLIENT_WRAPPER_VAR).unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = tokio::process::Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => tokio::process::Command::new(exe),
    }
}

/// One stack's phase alone (for profiling one stack, e.g. under heaptrack).
pub fn run_one(stack: Stack, options: &LoadOptions) -> anyhow::Result<PhaseResult> {
    machine::check_ephemeral_ports(options.connections as u64)?;
    machine::raise_fd_limit(options.connections as u64)?;
    let domain = TrustDomain::create(options.resumption)?;
    runtime()?.block_on(run_phase(stack, options, &domain))
}

/// The `load` command: both phases, in order.
pub fn run_load(options: LoadOptions) -> anyhow::Result<LoadReport> {
    machine::check_ephemeral_ports(options.connections as u64)?;
    let fd_limit = machine::raise_fd_limit(options.connections as u64)?;
    let domain = TrustDomain::create(options.resumption)?;
    let runtime = runtime()?;
    let mut secsock = None;
    let mut rustls = None;
    for stack in options.order.stacks() {
        let result = runtime
            .block_on(run_phase(stack, &options, &domain))
            .with_context(|| format!("the {} phase", stack.name()))?;
        match stack {
            Stack::Secsock => secsock = Some(result),
            Stack::Rustls => rustls = Some(result),
        }
    }
    let (Some(secsock), Some(rustls)) = (secsock, rustls) else {
        bail!("a phase did not run");
    };
    Ok(LoadReport {
        options,
        machine: Machine::describe(),
        fd_limit,
        secsock,
        rustls,
    })
}

/// One stack: a fresh listener and a fresh client process; measure; close everything.
async fn run_phase(
    stack: Stack,
    options: &LoadOptions,
    domain: &TrustDomain,
) -> anyhow::Result<PhaseResult> {
    let server = Server::start(stack, &domain.server, options.resumption).await?;
    // Let the accept loop park on the listener, and give freed memory (an earlier phase's)
    // back to the kernel, before the baseline is read.
    tokio::time::sleep(Duration::from_millis(50)).await;
    crate::sys::release_free_memory();
    let server_heap_before = machine::heap_mark();
    let server_rss_before = machine::rss_bytes()?;

    let exe = std::env::current_exe().context("finding this program to start the client")?;
    let mut command = client_command(exe);
    let mut child = command
        .arg("load-client")
        .args(["--addr", &server.addr.to_string()])
        .args(["--connections", &options.connections.to_string()])
        .args(["--concurrency", &options.concurrency.to_string()])
        .args(["--stack", stack.name()])
        .arg("--identity")
        .arg(&domain.client.dir)
        .args((!options.resumption).then_some("--no-resumption"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the client process")?;
    let stdout = child.stdout.take().context("the client's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // Each connection is bounded by a 10 s handshake timeout; 64 or so run at once.
    let patience =
        Duration::from_secs(120) + Duration::from_millis(20) * options.connections as u32;
    let report = async {
        // The report is the one JSON line; a wrapper's chatter is passed on to stderr.
        while let Some(line) = lines.next_line().await? {
            if line.starts_with('{') {
                return Ok(Some(line));
            }
            eprintln!("{line}");
        }
        Ok::<_, std::io::Error>(None)
    };
    let line = match tokio::time::timeout(patience, report).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => {
            let status = child.wait().await?;
            bail!("the client process ended without a report ({status})");
        }
        Ok(Err(e)) => bail!("reading the client's report: {e}"),
        Err(_) => bail!("the client process did not report within {patience:?}"),
    };
    let client: ClientReport = serde_json::from_str(&line)
        .with_context(|| format!("the client's report is not valid: {line}"))?;

    // The server finishes each handshake after the client does (the client's Finished
    // comes last in TLS 1.3); wait for it to catch up with what the client completed.
    let stats = &server.stats;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT * 2;
    while stats.finished() < client.held && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let server_rss_after = machine::rss_bytes()?;
    let server_held = stats.held.load(Ordering::Acquire);
    let server_heap = machine::heap_growth(&server_heap_before, &machine::heap_mark(), server_held);
    let server_last_ns = stats.last_handshake_ns.load(Ordering::Acquire);

    // Let the client go: it exits and the kernel closes its sockets; the server's tasks
    // see the end of their connections and drop them.
    drop(child.stdin.take());
    match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => {
            let status = status?;
            if !status.success() {
                bail!("the client process failed ({status})");
            }
        }
        Err(_) => {
            let _ = child.start_kill();
            bail!("the client process did not exit within 60 s of being told to");
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stats.held.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let server_failures = stats.failures.load(Ordering::Acquire);
    let server_first_error = stats.first_error();
    let resumed_handshakes = stats.resumed.load(Ordering::Acquire);
    let server_negotiated = stats.negotiated.get().cloned();
    let server_task_bytes = stats.task_bytes.load(Ordering::Relaxed);
    drop(server);
    tokio::time::sleep(SETTLE_BETWEEN_PHASES).await;
    crate::sys::release_free_memory();
    let server_rss_closed = machine::rss_bytes()?;

    let held = client.held.min(server_held);
    let last_ns = client.last_handshake_ns.max(server_last_ns);
    let opening_seconds = last_ns.saturating_sub(client.first_connect_ns) as f64 / 1e9;
    let per_connection = |before: u64, after: u64, count: usize| -> i64 {
        if count == 0 {
            return 0;
        }
        ((after as f64 - before as f64) / count as f64).round() as i64
    };
    let server_per = per_connection(server_rss_before, server_rss_after, server_held);
    let client_per = per_connection(client.rss_before, client.rss_after, client.held);
    Ok(PhaseResult {
        stack,
        connections_held: held,
        failures: options.connections.saturating_sub(held),
        client_failures: client.failures,
        server_failures,
        first_error: client.first_error.clone().or(server_first_error),
        resumed_handshakes,
        handshakes_per_s: if opening_seconds > 0.0 {
            held as f64 / opening_seconds
        } else {
            0.0
        },
        opening_seconds,
        server_memory_per_connection_bytes: server_per,
        client_memory_per_connection_bytes: client_per,
        memory_per_connection_bytes: (server_per + client_per) / 2,
        server_rss_bytes: [server_rss_before, server_rss_after, server_rss_closed],
        client_rss_bytes: [client.rss_before, client.rss_after],
        server_negotiated,
        client_negotiated: client.negotiated.clone(),
        task_bytes: [server_task_bytes, client.task_bytes],
        server_heap,
        client_heap: client.heap.clone(),
    })
}

impl LoadReport {
    /// secsock's memory per connection over the baseline's (both endpoints' mean).
    pub fn memory_ratio(&self) -> f64 {
        ratio(
            self.secsock.memory_per_connection_bytes as f64,
            self.rustls.memory_per_connection_bytes as f64,
        )
    }

    /// secsock's handshakes per second over the baseline's.
    pub fn handshakes_ratio(&self) -> f64 {
        ratio(self.secsock.handshakes_per_s, self.rustls.handshakes_per_s)
    }

    /// True when both stacks held every connection.
    pub fn all_held(&self) -> bool {
        self.secsock.failures == 0 && self.rustls.failures == 0
    }

    /// The report as one JSON object: the headline figures flat, details per phase.
    pub fn to_json(&self) -> serde_json::Value {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        serde_json::json!({
            "command": self.options.command,
            "connections": self.options.connections,
            "concurrency": self.options.concurrency,
            "order": self.options.order,
            "resumption": self.options.resumption,
            "worker_threads": WORKER_THREADS,
            "connections_held": self.secsock.connections_held,
            "failures": self.secsock.failures,
            "handshakes_per_s": round(self.secsock.handshakes_per_s),
            "memory_per_connection_bytes": self.secsock.memory_per_connection_bytes,
            "server_memory_per_connection_bytes": self.secsock.server_memory_per_connection_bytes,
            "client_memory_per_connection_bytes": self.secsock.client_memory_per_connection_bytes,
            "rustls_connections_held": self.rustls.connections_held,
            "rustls_failures": self.rustls.failures,
            "rustls_handshakes_per_s": round(self.rustls.handshakes_per_s),
            "rustls_memory_per_connection_bytes": self.rustls.memory_per_connection_bytes,
            "rustls_server_memory_per_connection_bytes": self.rustls.server_memory_per_connection_bytes,
            "rustls_client_memory_per_connection_bytes": self.rustls.client_memory_per_connection_bytes,
            "memory_ratio": round(self.memory_ratio()),
            "handshakes_ratio": round(self.handshakes_ratio()),
            "machine": self.machine,
            "fd_limit": self.fd_limit,
            "phases": { "secsock": self.secsock, "rustls": self.rustls },
        })
    }

    /// The report as a short human table.
    pub fn to_table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let o = &self.options;
        out.push_str(&format!(
            "load: {} idle connections per stack, {} handshakes in flight, {} phase first, {}\n",
            o.connections,
            o.concurrency,
            match o.order {
                Order::RustlsFirst => "rustls",
                Order::SecsockFirst => "secsock",
            },
            if o.resumption {
                "resumption on (each stack's default)"
            } else {
                "full handshakes only"
            }
        ));
        out.push_str(&format!("command: {}\n", o.command));
        out.push_str(&format!(
            "machine: {}, {} cores ({} usable), Linux {}, {} GiB; rustls {} + aws-lc-rs {}, tokio-rustls {}, tokio {} ({} workers per process)\n",
            m.cpu_model,
            m.cores,
            m.available_parallelism,
            m.kernel,
            m.memory_bytes.map(|b| b / (1 << 30)).unwrap_or(0),
            m.rustls_version,
            m.aws_lc_rs_version,
            m.tokio_rustls_version,
            m.tokio_version,
            WORKER_THREADS,
        ));
        out.push_str(&format!(
            "open files: soft {} / hard {} per process (server here, client in a child process)\n\n",
            self.fd_limit.soft, self.fd_limit.hard
        ));
        out.push_str(&format!(
            "{:<8} {:>7} {:>8} {:>8} {:>12} {:>13} {:>13} {:>13}\n",
            "stack",
            "held",
            "failed",
            "resumed",
            "handshakes/s",
            "server B/conn",
            "client B/conn",
            "mean B/conn"
        ));
        for p in [&self.secsock, &self.rustls] {
            out.push_str(&format!(
                "{:<8} {:>7} {:>8} {:>8} {:>12.0} {:>13} {:>13} {:>13}\n",
                p.stack.name(),
                p.connections_held,
                p.failures,
                p.resumed_handshakes,
                p.handshakes_per_s,
                p.server_memory_per_connection_bytes,
                p.client_memory_per_connection_bytes,
                p.memory_per_connection_bytes,
            ));
        }
        out.push_str(&format!(
            "{:<8} {:>7} {:>8} {:>8} {:>12.3} {:>13.3} {:>13.3} {:>13.3}\n",
            "ratio",
            "",
            "",
            "",
            self.handshakes_ratio(),
            ratio(
                self.secsock.server_memory_per_connection_bytes as f64,
                self.rustls.server_memory_per_connection_bytes as f64
            ),
            ratio(
                self.secsock.client_memory_per_connection_bytes as f64,
                self.rustls.client_memory_per_connection_bytes as f64
            ),
            self.memory_ratio(),
        ));
        out.push('\n');
        for p in [&self.secsock, &self.rustls] {
            let show = |n: &Option<Negotiated>| {
                n.as_ref()
                    .map(|n| format!("{} {} {}", n.protocol, n.cipher_suite, n.key_exchange))
                    .unwrap_or_else(|| "nothing".into())
            };
            out.push_str(&format!(
                "{}: server negotiated {}; client negotiated {}; opened in {:.2} s\n",
                p.stack.name(),
                show(&p.server_negotiated),
                show(&p.client_negotiated),
                p.opening_seconds,
            ));
            for (side, heap) in [("server", &p.server_heap), ("client", &p.client_heap)] {
                if let Some(heap) = heap {
                    out.push_str(&format!(
                        "{} {side} live heap: {:.0} B/conn in",
                        p.stack.name(),
                        heap.live_bytes_per_connection
                    ));
                    for c in &heap.classes {
                        out.push_str(&format!(
                            " [{}: {:.2} x, {:.0} B]",
                            c.up_to_bytes
                                .map(|b| format!("<={b}"))
                                .unwrap_or_else(|| "larger".into()),
                            c.allocations_per_connection,
                            c.bytes_per_connection
                        ));
                    }
                    out.push('\n');
                }
            }
            if let Some(e) = &p.first_error {
                out.push_str(&format!("{}: first failure: {e}\n", p.stack.name()));
            }
        }
        out
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

/// The hidden `sizes` command: the in-memory sizes of each stack's per-connection types
/// and of the futures a connection task holds while it connects or accepts. A task is one
/// allocation as large as its largest state, so these sizes are paid for as long as the
/// connection is held.
pub fn print_sizes() -> anyhow::Result<()> {
    use std::mem::{size_of, size_of_val};
    let domain = TrustDomain::create(true)?;
    let runtime = runtime()?;
    let mut rows: Vec<(&str, usize)> = vec![
        ("tokio::net::TcpStream", size_of::<TcpStream>()),
        (
            "rustls::ClientConnection",
            size_of::<rustls::ClientConnection>(),
        ),
        (
            "rustls::ServerConnection",
            size_of::<rustls::ServerConnection>(),
        ),
        ("rustls::ClientConfig", size_of::<ClientConfig>()),
        (
            "tokio_rustls::client::TlsStream<TcpStream>",
            size_of::<tokio_rustls::client::TlsStream<TcpStream>>(),
        ),
        (
            "tokio_rustls::server::TlsStream<TcpStream>",
            size_of::<tokio_rustls::server::TlsStream<TcpStream>>(),
        ),
        (
            "secsock::tokio::SecureStream",
            size_of::<secsock::tokio::SecureStream>(),
        ),
        ("secsock::SecurityInfo", size_of::<secsock::SecurityInfo>()),
        ("secsock::PeerIdentity", size_of::<secsock::PeerIdentity>()),
    ];
    runtime.block_on(async {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));

        let platform = Platform::load(&domain.server.policy)?;
        let mut socket = secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform)?;
        socket.set_security(&SecuritySettings::new())?;
        socket.bind(local)?;
        let listener = socket.listen(16)?;
        let addr = listener.local_addr()?;
        let _peer = TcpStream::connect(addr).await?;
        let pending = listener.accept_pending().await?;
        let handshake = pending.handshake();
        rows.push((
            "secsock PendingStream::handshake() future",
            size_of_val(&handshake),
        ));
        drop(handshake);

        let platform = Platform::load(&domain.client.policy)?;
        let mut socket = secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform)?;
        socket.set_security(&SecuritySettings::new())?;
        socket.set_peer_target_name(PeerTargetName::parse(SERVER_NAME)?)?;
        let connect = socket.connect(addr);
        rows.push((
            "secsock SecureSocket::connect() future",
            size_of_val(&connect),
        ));
        drop(connect);

        let plain = tokio::net::TcpListener::bind(local).await?;
        let plain_addr = plain.local_addr()?;
        let client_tcp = TcpStream::connect(plain_addr).await?;
        let (server_tcp, _) = plain.accept().await?;
        let acceptor = TlsAcceptor::from(baseline_server_config(&domain.server, true)?);
        let accept = acceptor.accept(server_tcp);
        rows.push((
            "tokio-rustls TlsAcceptor::accept() future",
            size_of_val(&accept),
        ));
        drop(accept);
        let connector = TlsConnector::from(baseline_client_config(&domain.client, true)?);
        let connect = connector.connect(ServerName::try_from(SERVER_NAME)?, client_tcp);
        rows.push((
            "tokio-rustls TlsConnector::connect() future",
            size_of_val(&connect),
        ));
        drop(connect);
        Ok::<_, anyhow::Error>(())
    })?;
    for (name, size) in rows {
        println!("{size:>7}  {name}");
    }
    Ok(())
}
