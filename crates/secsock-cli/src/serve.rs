//! `secsock serve`: a secured echo server on the async API, with bounded resources.
//!
//! - Handshakes run concurrently, at most `--max-handshakes` at once and at most
//!   `--max-handshakes-per-source` from one source address (more connections from it are
//!   closed at once: one host cannot hold every slot), each bounded by the policy's
//!   handshake timeout (counted from the accept, so time spent waiting for a handshake slot
//!   counts too: an overloaded server sheds load instead of queuing it).
//! - At most `--max-connections` connections are open at once. The default is what the
//!   file-descriptor limit allows (the soft limit is first raised to the hard limit). A
//!   connection beyond the cap is accepted and closed at once, with a log line: the client
//!   gets a prompt, clean refusal instead of a hanging backlog, and the server never runs
//!   out of descriptors.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use secsock::tokio::{SecureSocket, SecureStream};
use secsock::{AddressPrefix, PeerTargetName, Platform, SecurityInfo, SecuritySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Descriptors kept free for the process itself (stdio, the listener, the runtime, logs).
pub const FD_RESERVE: u64 = 64;

/// What `serve` needs to run.
pub struct Options {
    /// The platform (policy) to serve with.
    pub platform: Arc<Platform>,
    /// The address to listen on.
    pub addr: SocketAddr,
    /// One JSON object per connection instead of a line of text.
    pub json: bool,
    /// The connection cap; `None`: what the descriptor limit allows.
    pub max_connections: Option<usize>,
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
    /// Handshakes in progress at once from one source address.
    pub max_handshakes_per_source: usize,
    /// The listener's security settings.
    pub settings: SecuritySettings,
    /// The principals allowed to connect, and from where (empty: any proven principal).
    pub allow_peers: Vec<(PeerTargetName, AddressPrefix)>,
    /// Handle each connection as its peer (the mapped local account).
    pub impersonate: bool,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let current = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: current.maximum,
        maximum: current.maximum,
    };
    if raised.current != current.current && setrlimit(Resource::Nofile, raised).is_ok() {
        return raised.current.unwrap_or(u64::MAX);
    }
    current.current.unwrap_or(u64::MAX)
}

/// The connection cap that a descriptor limit allows (one descriptor per connection).
pub fn cap_for(fd_limit: u64) -> usize {
    usize::try_from(fd_limit.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .max(1)
}

fn proven_names(info: &SecurityInfo) -> String {
    match &info.peer_machine {
        Some(id) if !id.names.is_empty() => id
            .names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        Some(_) => "(no principal names)".to_string(),
        None => "(unauthenticated)".to_string(),
    }
}

/// Runs the server until the process is stopped.
pub fn run(options: Options) -> Result<()> {
    let fd_limit = raise_fd_limit();
    let allowed = cap_for(fd_limit);
    let max_connections = match options.max_connections {
        Some(n) if n > allowed => {
            eprintln!(
                "secsock: warning: --max-connections {n} exceeds what the descriptor limit ({fd_limit}) allows; using {allowed}"
            );
            allowed
        }
        Some(n) => n.max(1),
        None => allowed,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(options, max_connections))
}

async fn serve(options: Options, max_connections: usize) -> Result<()> {
    let addr = options.addr;
    let domain = if addr.is_ipv4() {
        secsock::Domain::IPV4
    } else {
        secsock::Domain::IPV6
    };
    let mut socket = SecureSocket::with_platform(domain, options.platform)?;
    socket.set_security(&options.settings)?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot listen on {addr}"))?;
    let mut listener = socket.listen(4096)?;
    listener.set_max_handshakes_per_source(options.max_handshakes_per_source);
    for (name, peers) in options.allow_peers {
        eprintln!("secsock: allowing {name} from {peers}");
        listener.set_peer_target_name(name, peers);
    }
    eprintln!("secsock: listening on {}", listener.local_addr()?);
    eprintln!(
        "secsock: at most {max_connections} connections, {} handshakes at once, {} from one source",
        options.max_handshakes,
        options.max_handshakes_per_source.max(1)
    );
    let connections = Arc::new(Semaphore::new(max_connections));
    let handshakes = Arc::new(Semaphore::new(options.max_handshakes.max(1)));
    let json = options.json;
    let impersonate = options.impersonate;
    loop {
        let pending = match listener.accept_pending().await {
            Ok(pending) => pending,
            Err(e) => {
                // EMFILE/ENFILE and the like: back off rather than spin.
                eprintln!("secsock: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = pending.peer_addr();
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            eprintln!("secsock: {peer}: refused: at the connection cap ({max_connections})");
            drop(pending);
            continue;
        };
        let handshakes = handshakes.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let stream = {
                let Ok(_turn) = handshakes.acquire().await else {
                    return;
                };
                pending.handshake().await
            };
            match stream {
                Ok(stream) if impersonate => {
                    report(peer, &stream.query_security(), json);
                    // Impersonation is per thread: the whole connection is handled on one
                    // blocking thread, acting as the peer, and driven from there.
                    let runtime = tokio::runtime::Handle::current();
                    let handled =
                        tokio::task::spawn_blocking(move || serve_as_peer(peer, stream, &runtime))
                            .await;
                    if let Err(e) = handled {
                        eprintln!("secsock: {peer}: {e}");
                    }
                }
                Ok(stream) => {
                    report(peer, &stream.query_security(), json);
                    if let Err(e) = echo(stream).await {
                        eprintln!("secsock: {peer}: {e}");
                    }
                }
                Err(e) => eprintln!("secsock: {peer}: refused: {e}"),
            }
        });
    }
}

/// Handles one connection on the calling (blocking) thread, impersonating its peer; a
/// peer that cannot be impersonated is refused, and the connection closed.
fn serve_as_peer(peer: SocketAddr, stream: SecureStream, runtime: &tokio::runtime::Handle) {
    let info = stream.query_security();
    let principal = info
        .peer_application
        .as_ref()
        .or(info.peer_machine.as_ref())
        .and_then(|id| id.names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| "(none)".into());
    let guard = match stream.impersonate_peer() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("secsock: {peer}: refused: cannot impersonate {principal}: {e}");
            let _ = runtime.block_on(stream.close());
            return;
        }
    };
    let account = guard.account();
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "{peer} impersonating {principal} as {} (uid {}, fsuid {})",
        account.name,
        account.uid,
        thread_fsuid()
            .map(|u| u.to_string())
            .unwrap_or_else(|| "?".into())
    );
    let _ = out.flush();
    drop(out);
    if let Err(e) = runtime.block_on(echo(stream)) {
        eprintln!("secsock: {peer}: {e}");
    }
    drop(guard);
}

/// The calling thread's file-system uid, as the kernel reports it.
fn thread_fsuid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

fn report(peer: SocketAddr, info: &SecurityInfo, json: bool) {
    let line = if json {
        let mut value = serde_json::to_value(info).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("peer_address".into(), peer.to_string().into());
        }
        value.to_string()
    } else if info.is_secured() {
        match &info.peer_application {
            Some(user) => format!(
                "{peer} secured: {}; user {}",
                proven_names(info),
                user.names
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("{peer} secured: {}", proven_names(info)),
        }
    } else {
        let why = info
            .negotiation_error
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        format!("{peer} NOT secured: {why}")
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Echoes until the peer's close_notify, then closes cleanly. The buffer is small because
/// an idle connection holds it while it waits: 4 KiB × 10,000 connections is 40 MB.
async fn echo(mut stream: SecureStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.close().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_descriptor_limit() {
        assert_eq!(cap_for(20_000), 19_936);
        assert_eq!(cap_for(1_024), 960);
        assert_eq!(cap_for(10), 1, "never zero");
        assert!(cap_for(u64::MAX) > 10_000);
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        let soft = raise_fd_limit();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current, now.maximum);
        assert_eq!(Some(soft), now.current.or(Some(u64::MAX)));
    }
}
