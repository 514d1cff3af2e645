//! The orchestrator's side of one phase: start a fresh server process and a fresh client
//! process of one stack, carry the few facts each needs from the other, and turn their
//! reports into the phase's figures.
//!
//! The conversation, in JSON lines (the server's side is described in `server`):
//!
//! ```text
//! orchestrator            server (load-server)          client (load-client)
//!     start server  ───▶
//!                   ◀───  ServerReady {addr, rss_before}
//!     start client (addr)  ─────────────────────────────▶  opens, holds
//!                   ◀─────────────────────────────────────  ClientReport
//!     ClientHeld    ───▶  catches up, measures
//!                   ◀───  ServerReport
//!     closes the client's stdin  ───────────────────────▶  exits
//!                          sees its connections end
//!                   ◀───  ServerClosed; exits
//! ```
//!
//! A child's stderr is the orchestrator's, so its errors reach the user as they are. Lines
//! on a child's stdout that do not start with `{` (a profiler's chatter) are passed on to
//! stderr. Children are killed if the orchestrator gives up on them.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use super::client::ClientReport;
use super::report::PhaseResult;
use super::server::{ClientHeld, ServerClosed, ServerReady, ServerReport};
use super::{LoadOptions, Stack, HANDSHAKE_TIMEOUT};
use crate::domain::TrustDomain;

/// The environment variable naming a program (with arguments, split at spaces) to run the
/// client process under, e.g. `heaptrack -o /tmp/client` or `perf record -g`; for profiling.
pub const CLIENT_WRAPPER_VAR: &str = "SECSOCK_BENCH_CLIENT_WRAPPER";
/// Likewise for the server process.
pub const SERVER_WRAPPER_VAR: &str = "SECSOCK_BENCH_SERVER_WRAPPER";

/// How long a child may take to exit once told to (a profiler wrapping it writes its data
/// then; killing it would lose the profile).
const EXIT_PATIENCE: Duration = Duration::from_secs(600);

/// One stack's phase: a fresh server process and a fresh client process; measure; let both
/// go.
pub async fn run_phase(
    stack: Stack,
    options: &LoadOptions,
    domain: &TrustDomain,
) -> anyhow::Result<PhaseResult> {
    let mut server_args: Vec<OsString> = vec![
        "load-server".into(),
        "--stack".into(),
        stack.name().into(),
        "--connections".into(),
        options.connections.to_string().into(),
        "--identity".into(),
        domain.server.dir.clone().into(),
    ];
    if !options.resumption {
        server_args.push("--no-resumption".into());
    }
    let mut server = Child::start("server", SERVER_WRAPPER_VAR, &server_args)?;
    let ready: ServerReady = server.read("its address", Duration::from_secs(60)).await?;

    let mut client_args: Vec<OsString> = vec![
        "load-client".into(),
        "--addr".into(),
        ready.addr.to_string().into(),
        "--connections".into(),
        options.connections.to_string().into(),
        "--concurrency".into(),
        options.concurrency.to_string().into(),
        "--stack".into(),
        stack.name().into(),
        "--identity".into(),
        domain.client.dir.clone().into(),
    ];
    if !options.resumption {
        client_args.push("--no-resumption".into());
    }
    let mut client = Child::start("client", CLIENT_WRAPPER_VAR, &client_args)?;
    // Each connection is bounded by a 10 s handshake timeout; 64 or so run at once.
    let patience =
        Duration::from_secs(120) + Duration::from_millis(20) * options.connections as u32;
    let opened: ClientReport = client.read("its report", patience).await?;

    server
        .send(&ClientHeld {
            client_held: opened.held,
        })
        .await?;
    let measured: ServerReport = server
        .read(
            "its report",
            HANDSHAKE_TIMEOUT * 2 + Duration::from_secs(60),
        )
        .await?;

    // Let the client go: it exits and the kernel closes its sockets; the server's tasks
    // see the end of their connections and drop them.
    client.finish().await?;
    let closed: ServerClosed = server
        .read("its closing figures", Duration::from_secs(120))
        .await?;
    server.finish().await?;
    if closed.still_held > 0 {
        eprintln!(
            "secsock-bench: the {} server still held {} connections after the client exited",
            stack.name(),
            closed.still_held
        );
    }

    let held = opened.held.min(measured.held);
    let last_ns = opened.last_handshake_ns.max(measured.last_handshake_ns);
    let opening_seconds = last_ns.saturating_sub(opened.first_connect_ns) as f64 / 1e9;
    let server_per = per_connection(ready.rss_before, measured.rss_after, measured.held);
    let client_per = per_connection(opened.rss_before, opened.rss_after, opened.held);
    Ok(PhaseResult {
        stack,
        connections_held: held,
        failures: options.connections.saturating_sub(held),
        client_failures: opened.failures,
        server_failures: measured.failures,
        first_error: opened.first_error.clone().or(measured.first_error),
        resumed_handshakes: measured.resumed,
        handshakes_per_s: if opening_seconds > 0.0 {
            held as f64 / opening_seconds
        } else {
            0.0
        },
        opening_seconds,
        server_memory_per_connection_bytes: server_per,
        client_memory_per_connection_bytes: client_per,
        memory_per_connection_bytes: (server_per + client_per) / 2,
        server_rss_bytes: [ready.rss_before, measured.rss_after, closed.rss_closed],
        client_rss_bytes: [opened.rss_before, opened.rss_after],
        server_negotiated: measured.negotiated,
        client_negotiated: opened.negotiated,
        task_bytes: [measured.task_bytes, opened.task_bytes],
    })
}

/// RSS growth from `before` to `after` per connection of `count` (0 without connections).
fn per_connection(before: u64, after: u64, count: usize) -> i64 {
    if count == 0 {
        return 0;
    }
    ((after as f64 - before as f64) / count as f64).round() as i64
}

/// A child process of this program, spoken to in JSON lines.
struct Child {
    /// "server" or "client", for messages.
    role: &'static str,
    process: tokio::process::Child,
    /// Closed (dropped) to tell the child to finish.
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Child {
    /// Starts this program with `args`, under the wrapper named by `wrapper_var` if set.
    fn start(role: &'static str, wrapper_var: &str, args: &[OsString]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this program to start a child")?;
        let wrapper = std::env::var(wrapper_var).unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = tokio::process::Command::new(program);
                command.args(words).arg(exe);
                command
            }
            None => tokio::process::Command::new(exe),
        };
        let mut process = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {role} process"))?;
        let stdin = process.stdin.take();
        let stdout = process
            .stdout
            .take()
            .with_context(|| format!("the {role} process's stdout"))?;
        Ok(Self {
            role,
            process,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    /// Reads the child's next message (`what`, for errors), within `patience`.
    async fn read<T: DeserializeOwned>(
        &mut self,
        what: &str,
        patience: Duration,
    ) -> anyhow::Result<T> {
        let role = self.role;
        let next = async {
            while let Some(line) = self.stdout.next_line().await? {
                if line.starts_with('{') {
                    return Ok(Some(line));
                }
                eprintln!("{line}");
            }
            Ok::<_, std::io::Error>(None)
        };
        let line = match tokio::time::timeout(patience, next).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let status = self.process.wait().await?;
                bail!("the {role} process ended without sending {what} ({status})");
            }
            Ok(Err(e)) => bail!("reading {what} from the {role} process: {e}"),
            Err(_) => bail!("the {role} process did not send {what} within {patience:?}"),
        };
        serde_json::from_str(&line)
            .with_context(|| format!("{what} from the {role} process is not valid: {line}"))
    }

    /// Sends the child one message.
    async fn send<T: Serialize>(&mut self, message: &T) -> anyhow::Result<()> {
        let role = self.role;
        let stdin = self
            .stdin
            .as_mut()
            .with_context(|| format!("the {role} process's input is closed"))?;
        let mut line = serde_json::to_string(message)?;
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .await
            .with_context(|| format!("writing to the {role} process"))?;
        stdin.flush().await?;
        Ok(())
    }

    /// Closes the child's input and waits for it to exit successfully.
    async fn finish(mut self) -> anyhow::Result<()> {
        let role = self.role;
        drop(self.stdin.take());
        match tokio::time::timeout(EXIT_PATIENCE, self.process.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the {role} process failed ({status})");
                }
                Ok(())
            }
            Err(_) => bail!("the {role} process did not exit within {EXIT_PATIENCE:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::per_connection;

    #[test]
    fn growth_is_divided_by_the_connections_and_rounded() {
        assert_eq!(per_connection(1_000, 11_000, 4), 2_500);
        assert_eq!(per_connection(1_000, 1_003, 2), 2);
        assert_eq!(per_connection(2_000, 1_000, 10), -100);
        assert_eq!(per_connection(1_000, 5_000, 0), 0);
    }
}
