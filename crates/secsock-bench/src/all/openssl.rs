//! The OpenSSL baseline: the system's OpenSSL through its `openssl` command, over loopback,
//! with the trust domain's certificates, TLS 1.3, TLS_AES_128_GCM_SHA256 and X25519 (OpenSSL
//! 3.0 has no ML-KEM), and client certificates required by the server (`-Verify 1`), so
//! that it is mutual TLS like the other stacks.
//!
//! - **bulk**: `s_server -naccept 1` writing what it receives to /dev/null, and `s_client`
//!   reading the data from a file (in /dev/shm when it exists) and exiting at its end. The
//!   figure is the time from starting `s_client` to `s_server`'s exit, less the same time
//!   for an empty file measured in the same run (process start, handshake, close), so that
//!   only the transfer counts. `s_client` reads its input in 8 KiB pieces and sends 8 KiB
//!   records whatever the suite's write size.
//! - **handshakes**: `s_server -WWW` serving a one-byte file, and `s_time -new` (full
//!   handshakes; the server sends no tickets, `-num_tickets 0`) or `-reuse` (resumed) with
//!   `-www /x`: connect, handshake, `GET /x`, the answer, close, per connection, as the
//!   other stacks' request and answer. `s_time` prints one character per connection; the
//!   orchestrator timestamps them as they arrive: the rate is taken after the warm-up
//!   connections, and the intervals between consecutive connections are the latency
//!   figures (an upper bound of connect-to-first-byte: each also holds `s_time`'s close).
//!   `s_server` serves one connection at a time, so two client threads get two `s_server`
//!   processes, one each (a two-thread server).
//!
//! Not here: the decision which figures OpenSSL has (`run`).

use std::fs::File;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::{stats, Cpus};
use crate::domain::{IdentityFiles, TrustDomain, SERVER_NAME};
use crate::load::Negotiated;

/// The TLS 1.3 suite every stack uses, as OpenSSL names it.
const SUITE: &str = "TLS_AES_128_GCM_SHA256";
/// The one group OpenSSL 3.0 shares with the others.
const GROUP: &str = "X25519";
/// The arguments every `openssl` command here shares: TLS 1.3 with [`SUITE`] only, and an
/// identity's certificate, key and CA file.
fn tls_args(files: &IdentityFiles) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["-tls1_3", "-ciphersuites", SUITE]
        .iter()
        .map(Into::into)
        .collect();
    for (flag, path) in [
        ("-cert", &files.certificate),
        ("-key", &files.private_key),
        ("-CAfile", &files.ca),
    ] {
        args.push(flag.into());
        args.push(path.into());
    }
    args
}

/// How long an `openssl` process may take to start listening.
const LISTEN_PATIENCE: Duration = Duration::from_secs(10);

/// Files the OpenSSL runs need besides the trust domain: the bulk data and the served file.
pub struct Scratch {
    dir: tempfile::TempDir,
    bulk: Option<(PathBuf, u64)>,
    empty: PathBuf,
    www: PathBuf,
}

impl Scratch {
    /// A scratch directory in /dev/shm (memory) when it exists, else the temporary directory.
    pub fn new() -> anyhow::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("secsock-bench-openssl-");
        let dir = match builder.tempdir_in("/dev/shm") {
            Ok(dir) => dir,
            Err(_) => builder.tempdir()?,
        };
        let empty = dir.path().join("empty");
        File::create(&empty)?;
        let www = dir.path().join("www");
        std::fs::create_dir(&www)?;
        std::fs::write(www.join("x"), b"x")?;
        Ok(Self {
            dir,
            bulk: None,
            empty,
            www,
        })
    }

    /// The bulk data file of `bytes` bytes (written once).
    fn bulk_file(&mut self, bytes: u64) -> anyhow::Result<PathBuf> {
        if let Some((path, size)) = &self.bulk {
            if *size == bytes {
                return Ok(path.clone());
            }
        }
        let path = self.dir.path().join("bulk");
        let mut file = std::io::BufWriter::new(File::create(&path)?);
        let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            file.write_all(&block[..n])?;
            left -= n as u64;
        }
        file.flush()?;
        self.bulk = Some((path.clone(), bytes));
        Ok(path)
    }
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Whether /proc/net/tcp lists a socket listening on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            fields.next() == Some(wanted.as_str()) && fields.nth(1) == Some("0A")
        })
}

/// A running `openssl s_server`.
struct SServer {
    child: Child,
    /// Its stdin, held apart from `child`: tokio's `Child::wait` closes the stdin it holds,
    /// and `s_server` ends its connection when its stdin ends.
    _stdin: Option<tokio::process::ChildStdin>,
    port: u16,
}

impl SServer {
    /// Starts `s_server` on a free loopback port with the domain's server identity and
    /// `extra` arguments, in `cwd`, and waits until it listens (watching /proc/net/tcp,
    /// so that no probe connection uses up an accept).
    async fn start(
        domain: &TrustDomain,
        extra: &[&str],
        cwd: &Path,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let s = &domain.server;
        let mut command = Command::new("openssl");
        command
            .arg("s_server")
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .args(["-groups", GROUP])
            .args(tls_args(s))
            .args(["-Verify", "1", "-verify_quiet", "-quiet"])
            .args(extra)
            .current_dir(cwd)
            // s_server ends its connection when its stdin ends: keep it open.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting openssl s_server")?;
        pin(&child, cpu)?;
        let stdin = child.stdin.take();
        let deadline = Instant::now() + LISTEN_PATIENCE;
        while !listening(port) {
            if let Some(status) = child.try_wait()? {
                bail!("openssl s_server exited before listening ({status})");
            }
            if Instant::now() > deadline {
                bail!("openssl s_server did not listen on port {port} within {LISTEN_PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Self {
            child,
            _stdin: stdin,
            port,
        })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Pins a just-started `openssl` process to `cpu` (its start-up may run elsewhere; what
/// is measured runs there).
fn pin(child: &Child, cpu: Option<usize>) -> anyhow::Result<()> {
    match (cpu, child.id()) {
        (Some(cpu), Some(pid)) => crate::machine::pin_to_cpu(Some(pid), cpu),
        _ => Ok(()),
    }
}

/// `s_client` arguments for the domain's client identity, verifying the server's chain and
/// name.
fn s_client(domain: &TrustDomain, port: u16) -> Command {
    let c = &domain.client;
    let mut command = Command::new("openssl");
    command
        .arg("s_client")
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(["-brief", "-no_ign_eof", "-nocommands"])
        .args(["-groups", GROUP])
        .args(tls_args(c))
        .args(["-verify_return_error", "-verify_hostname", SERVER_NAME])
        .args(["-servername", SERVER_NAME])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What `s_client -brief` says it negotiated.
pub fn parse_brief(text: &str) -> Option<Negotiated> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    Some(Negotiated {
        protocol: field("Protocol version:")?,
        cipher_suite: field("Ciphersuite:")?,
        key_exchange: field("Server Temp Key:")
            .or_else(|| field("Negotiated TLS1.3 group:"))
            .map(|k| k.split(',').next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|| "unknown".into()),
    })
}

/// One `s_client` run with `input` as its stdin; returns its stderr once it exited.
async fn run_s_client(
    domain: &TrustDomain,
    port: u16,
    input: &Path,
    cpu: Option<usize>,
) -> anyhow::Result<(Child, String)> {
    let mut child = s_client(domain, port)
        .stdin(File::open(input)?)
        .spawn()
        .context("starting openssl s_client")?;
    pin(&child, cpu)?;
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut err).await?;
    }
    Ok((child, err))
}

/// Seconds from starting `s_client` with `input` to the one-connection server's exit.
async fn timed_transfer(
    domain: &TrustDomain,
    scratch: &Scratch,
    input: &Path,
    cpus: Option<Cpus>,
) -> anyhow::Result<(f64, Option<Negotiated>)> {
    let mut server = SServer::start(
        domain,
        &["-naccept", "1"],
        scratch.dir.path(),
        cpus.map(|c| c.server),
    )
    .await?;
    let started = Instant::now();
    let client = run_s_client(domain, server.port, input, cpus.map(|c| c.client));
    let (client, server_status) = tokio::join!(
        client,
        tokio::time::timeout(Duration::from_secs(600), server.child.wait())
    );
    let seconds = started.elapsed().as_secs_f64();
    let (mut client, err) = client?;
    let client_status = client.wait().await?;
    let server_status = server_status.context("openssl s_server did not finish")??;
    if !client_status.success() || !server_status.success() {
        bail!(
            "openssl s_client ({client_status}) / s_server ({server_status}) failed: {}",
            err.trim()
        );
    }
    Ok((seconds, parse_brief(&err)))
}

/// One bulk figure: MiB/s of `bytes` through `s_client` to `s_server`.
pub async fn bulk(
    domain: &TrustDomain,
    scratch: &mut Scratch,
    bytes: u64,
    cpus: Option<Cpus>,
) -> anyhow::Result<(f64, Option<Negotiated>)> {
    let file = scratch.bulk_file(bytes)?;
    let (empty_seconds, _) = timed_transfer(domain, scratch, &scratch.empty.clone(), cpus).await?;
    let (seconds, negotiated) = timed_transfer(domain, scratch, &file, cpus).await?;
    let transfer = seconds - empty_seconds;
    if transfer <= 0.0 {
        bail!(
            "the OpenSSL transfer took no measurable time ({seconds} s, {empty_seconds} s empty)"
        );
    }
    Ok((bytes as f64 / (1 << 20) as f64 / transfer, negotiated))
}

/// One handshakes figure of OpenSSL.
#[derive(Clone, Debug, Default)]
pub struct HandshakeFigure {
    /// Connections per second, all client processes together.
    pub rate: f64,
    /// p50 and p99 of the intervals between connections (one client only), nanoseconds.
    pub latency_ns: Option<(u64, u64)>,
    /// Connections in the windows.
    pub connections: usize,
    /// Of all connections, those `s_time` reported as resumed.
    pub resumed: usize,
    /// What a probe `s_client` negotiated.
    pub negotiated: Option<Negotiated>,
}

/// What `s_time` printed: one character per connection, timestamped on arrival.
#[derive(Debug, Default)]
pub struct STimeOutput {
    /// The line text before the progress line started.
    line: String,
    in_progress: bool,
    finished: bool,
    /// Arrival time (ns) and character of each connection.
    pub events: Vec<(u64, u8)>,
}

impl STimeOutput {
    /// Feeds bytes read at `at_ns`. The progress line follows the line
    /// `Collecting connection statistics for N seconds` (-new) or `starting` (-reuse).
    pub fn feed(&mut self, bytes: &[u8], at_ns: u64) {
        for &b in bytes {
            if self.finished {
                return;
            }
            if self.in_progress {
                if b == b'\n' {
                    self.finished = true;
                } else {
                    self.events.push((at_ns, b));
                }
            } else if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                if line.starts_with("Collecting connection statistics") || line == "starting" {
                    self.in_progress = true;
                }
            } else {
                self.line.push(b as char);
            }
        }
    }

    /// Arrival times of the connections.
    pub fn times(&self) -> Vec<u64> {
        self.events.iter().map(|&(t, _)| t).collect()
    }

    /// Connections reported as resumed (`r`).
    pub fn resumed(&self) -> usize {
        self.events.iter().filter(|&&(_, c)| c == b'r').count()
    }
}

/// Runs `s_time` against `port` and collects its timestamped progress.
async fn run_s_time(
    domain: &TrustDomain,
    port: u16,
    resumed: bool,
    seconds: u64,
    base: Instant,
    cpu: Option<usize>,
) -> anyhow::Result<STimeOutput> {
    let c = &domain.client;
    let mut child = Command::new("openssl")
        .arg("s_time")
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .arg(if resumed { "-reuse" } else { "-new" })
        .args(["-www", "/x", "-time", &seconds.max(1).to_string()])
        .args(tls_args(c))
        .args(["-verify", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting openssl s_time")?;
    pin(&child, cpu)?;
    let mut stdout = child.stdout.take().context("s_time's stdout")?;
    let mut stderr = child.stderr.take().context("s_time's stderr")?;
    let mut output = STimeOutput::default();
    let mut buf = [0u8; 256];
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        output.feed(&buf[..n], base.elapsed().as_nanos() as u64);
    }
    let mut err = String::new();
    stderr.read_to_string(&mut err).await?;
    let status = child.wait().await?;
    if !status.success() {
        bail!("openssl s_time failed ({status}): {}", err.trim());
    }
    Ok(output)
}

/// One handshakes figure: `threads` `s_time` processes, each against its own `s_server`,
/// for `seconds`; rates after `skip` connections per process.
pub async fn handshakes(
    domain: &TrustDomain,
    scratch: &Scratch,
    resumption: bool,
    threads: usize,
    seconds: u64,
    skip: usize,
    cpus: Option<Cpus>,
) -> anyhow::Result<HandshakeFigure> {
    let tickets: &[&str] = if resumption {
        &["-WWW"]
    } else {
        &["-WWW", "-num_tickets", "0"]
    };
    let mut servers = Vec::new();
    for _ in 0..threads.max(1) {
        servers.push(SServer::start(domain, tickets, &scratch.www, cpus.map(|c| c.server)).await?);
    }
    let (probe, probe_err) = {
        let (mut child, err) = run_s_client(
            domain,
            servers[0].port,
            &scratch.empty,
            cpus.map(|c| c.client),
        )
        .await?;
        child.wait().await?;
        (parse_brief(&err), err)
    };
    let base = Instant::now();
    let runs = servers
        .iter()
        .map(|s| {
            run_s_time(
                domain,
                s.port,
                resumption,
                seconds,
                base,
                cpus.map(|c| c.client),
            )
        })
        .collect();
    let outputs = join_all(runs).await;
    for server in servers {
        server.stop().await;
    }
    let mut figure = HandshakeFigure {
        negotiated: probe,
        ..HandshakeFigure::default()
    };
    if figure.negotiated.is_none() {
        bail!(
            "the probe s_client negotiated nothing: {}",
            probe_err.trim()
        );
    }
    let single = outputs.len() == 1;
    for output in outputs {
        let output = output?;
        let times = output.times();
        figure.rate += stats::rate_after(&times, skip)
            .with_context(|| format!("s_time made only {} connections", times.len()))?;
        figure.connections += times.len();
        figure.resumed += output.resumed();
        if single {
            figure.latency_ns = stats::p50_p99(&mut stats::intervals_after(&times, skip));
        }
    }
    Ok(figure)
}

/// Runs the futures concurrently and returns their outputs in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s_time_progress_is_read_from_the_progress_line_only() {
        let mut out = STimeOutput::default();
        out.feed(b"Collecting connection statistics for 2 seconds\n**", 10);
        out.feed(b"*", 20);
        out.feed(
            b"\n\n12 connections in 0.3s; 3 connections/user sec, bytes read 47\n",
            30,
        );
        assert_eq!(out.times(), vec![10, 10, 20]);
        assert_eq!(out.resumed(), 0);

        let mut out = STimeOutput::default();
        out.feed(b"\n\nNow timing with session id reuse.\nst", 1);
        out.feed(b"arting\nrr", 5);
        out.feed(b"*r\n\n4 connections in", 9);
        assert_eq!(out.times(), vec![5, 5, 9, 9]);
        assert_eq!(out.resumed(), 3);
    }

    #[test]
    fn brief_output_names_protocol_suite_and_group() {
        let text = "CONNECTION ESTABLISHED\nProtocol version: TLSv1.3\nCiphersuite: TLS_AES_128_GCM_SHA256\n\
                    Peer certificate: CN = server.bench.test\nServer Temp Key: X25519, 253 bits\nDONE\n";
        let n = parse_brief(text).unwrap();
        assert_eq!(n.protocol, "TLSv1.3");
        assert_eq!(n.cipher_suite, "TLS_AES_128_GCM_SHA256");
        assert_eq!(n.key_exchange, "X25519");
        assert!(parse_brief("connect: Connection refused\n").is_none());
    }
}
