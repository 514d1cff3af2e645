//! A child process of this program, spoken to in JSON lines: how every scenario runs its
//! servers and clients in fresh processes. A child's stderr is the parent's; lines on its
//! stdout that do not start with `{` (a profiler's chatter) are passed on to stderr.
//! Children are killed if the parent gives up on them (or drops them).
//!
//! Not here: what the children say (each scenario defines its messages).

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

/// The environment variable naming a program (with arguments, split at spaces) to run the
/// client process under, e.g. `heaptrack -o /tmp/client` or `perf record -g`; for profiling.
pub const CLIENT_WRAPPER_VAR: &str = "SECSOCK_BENCH_CLIENT_WRAPPER";
/// Likewise for the server process.
pub const SERVER_WRAPPER_VAR: &str = "SECSOCK_BENCH_SERVER_WRAPPER";

/// How long a child may take to exit once told to (a profiler wrapping it writes its data
/// then; killing it would lose the profile).
const EXIT_PATIENCE: Duration = Duration::from_secs(600);

/// A child process of this program, spoken to in JSON lines.
pub struct Child {
    /// "server" or "client", for messages.
    role: &'static str,
    process: tokio::process::Child,
    /// Closed (dropped) to tell the child to finish.
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Child {
    /// Starts this program with `args`, under the wrapper named by `wrapper_var` if set.
    pub fn start(role: &'static str, wrapper_var: &str, args: &[OsString]) -> anyhow::Result<Self> {
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
    pub async fn read<T: DeserializeOwned>(
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
    pub async fn send<T: Serialize>(&mut self, message: &T) -> anyhow::Result<()> {
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

    /// Closes the child's input, its word to finish, without waiting for it to exit (it
    /// may still have something to say).
    pub fn close_input(&mut self) {
        drop(self.stdin.take());
    }

    /// Closes the child's input and waits for it to exit successfully.
    pub async fn finish(mut self) -> anyhow::Result<()> {
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
