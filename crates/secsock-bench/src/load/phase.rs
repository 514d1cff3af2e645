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
use std::time::Duration;

use super::client::ClientReport;
use super::report::PhaseResult;
use super::server::{ClientHeld, ServerClosed, ServerReady, ServerReport};
use super::{LoadOptions, Stack, HANDSHAKE_TIMEOUT};
use crate::child::{Child, CLIENT_WRAPPER_VAR, SERVER_WRAPPER_VAR};
use crate::domain::TrustDomain;

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
