//! The load scenario of issue 4: open N secured connections, hold them all idle, and
//! measure how fast they were opened and how much memory each costs on each endpoint —
//! for secsock and, in the same run, for plain tokio-rustls with the same certificates and
//! crypto.
//!
//! Every stack's phase runs in two fresh processes of this program: a server (the hidden
//! `load-server` command) and a client (`load-client`). The `load` command only
//! orchestrates: it makes the trust domain, starts each phase's two processes, tells the
//! client where the server listens and the server how many connections the client holds,
//! and puts their reports together. Each process measures its own resident memory.
//!
//! Why fresh processes for both ends of every phase:
//! - every memory figure starts from an allocator that has never freed a connection, so no
//!   phase grows into memory an earlier phase freed, the order of the phases does not
//!   matter, and nothing has to be handed back to the kernel in between;
//! - one process cannot hold both ends of 10,000 connections under a 20,000 open-file
//!   limit.
//!
//! Each stack's connections are held by tasks of their own function, so that a task's size
//! is that stack's alone (a future holding either stack would be as large as the larger).
//!
//! Modules: `phase` (the orchestrator: one phase's processes and their conversation),
//! `server` and `client` (the two child processes), `baseline` (the tokio-rustls
//! configurations), `report` (the figures, as JSON and as a table). Not here: machine facts
//! and limits (`machine`), certificates (`domain`).

pub mod baseline;
pub mod client;
mod phase;
pub mod report;
pub mod server;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::domain::TrustDomain;
use crate::load::report::{LoadReport, PhaseResult};
use crate::machine::{self, Machine};

/// The baseline's bound on one connect plus handshake: secsock's default policy
/// `handshake_timeout`, so both stacks give up on a connection at the same point.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to work that follows the last handshake (session tickets on their way and
/// being stored) before memory is read.
const SETTLE: Duration = Duration::from_millis(500);
/// Worker threads of the server's and the client's runtime.
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
    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
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

/// The `load` command: both phases, in order, each in its own pair of processes.
pub fn run_load(options: LoadOptions) -> anyhow::Result<LoadReport> {
    let (fd_limit, domain) = prepare(&options)?;
    let runtime = orchestrator_runtime()?;
    let mut secsock = None;
    let mut rustls = None;
    for stack in options.order.stacks() {
        let result = runtime
            .block_on(phase::run_phase(stack, &options, &domain))
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

/// One stack's phase alone (`load --only STACK`, for profiling one stack).
pub fn run_one(stack: Stack, options: &LoadOptions) -> anyhow::Result<PhaseResult> {
    let (_, domain) = prepare(options)?;
    orchestrator_runtime()?.block_on(phase::run_phase(stack, options, &domain))
}

/// Checks, before any process starts, that N connections fit in the open-file limit and
/// the ephemeral ports (failing with the numbers if not), and creates the trust domain.
/// The raised open-file limit is inherited by the child processes.
fn prepare(options: &LoadOptions) -> anyhow::Result<(machine::FdLimit, TrustDomain)> {
    machine::check_ephemeral_ports(options.connections as u64)?;
    let fd_limit = machine::raise_fd_limit(options.connections as u64)?;
    let domain = TrustDomain::create(options.resumption)?;
    Ok((fd_limit, domain))
}

/// The orchestrator's runtime: one thread is plenty to wait for two children, and it
/// leaves the cores to them.
fn orchestrator_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// The runtime of the server and the client processes: multi-threaded,
/// [`WORKER_THREADS`] workers.
fn endpoint_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Seeds aws-lc's random generator (CPU jitter entropy, tens of milliseconds on first use)
/// before the measurement starts. Loading a secsock platform does it already (it makes
/// ticket keys); without this, the baseline's first handshake would pay it inside the
/// measurement. Called by both endpoints for both stacks.
pub(crate) fn seed_random() -> anyhow::Result<()> {
    let mut probe = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut probe)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))
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
    pub(crate) fn of_secsock(info: &secsock::SecurityInfo) -> Self {
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

    pub(crate) fn of_rustls(conn: &rustls::CommonState) -> Self {
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

    /// Counts a completed secsock handshake, asking the stream what it got once, as an
    /// application calling `WSAQuerySocketSecurity` would. A function of its own so that
    /// the `SecurityInfo` is not a local of the connection task: an async fn keeps a
    /// borrowed local's storage in its future until the local's scope ends, even after
    /// the value was dropped, and the task would carry those 448 bytes for as long as it
    /// holds the connection.
    fn secsock_handshake_done(&self, stream: &secsock::tokio::SecureStream) {
        let info = stream.query_security();
        self.handshake_done(info.resumed, || Negotiated::of_secsock(&info));
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
