//! What `load` reports: each stack's figures ([`PhaseResult`]) and the comparison
//! ([`LoadReport`]), as one JSON object or as a short human table.

use serde::Serialize;

use super::{LoadOptions, Negotiated, Order, Stack, WORKER_THREADS};
use crate::machine::{FdLimit, Machine};

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
    /// (server process's RSS with all held − its RSS when listening) / held.
    pub server_memory_per_connection_bytes: i64,
    /// (client process's RSS with all held − its RSS before the first connect) / held.
    pub client_memory_per_connection_bytes: i64,
    /// The mean of the two endpoints.
    pub memory_per_connection_bytes: i64,
    /// Server process VmRSS when listening, with all held, and after they were closed.
    pub server_rss_bytes: [u64; 3],
    /// Client VmRSS before the first connect and with all held.
    pub client_rss_bytes: [u64; 2],
    /// What the server side negotiated on its first connection.
    pub server_negotiated: Option<Negotiated>,
    /// What the client side negotiated on its first connection.
    pub client_negotiated: Option<Negotiated>,
    /// Size of one connection task's future (its allocation) on the server and client.
    pub task_bytes: [usize; 2],
}

/// Everything `load` reports.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// What was asked.
    pub options: LoadOptions,
    /// Where it ran.
    pub machine: Machine,
    /// The open-file limit of every process (raised by the orchestrator, inherited and
    /// raised again by its children).
    pub fd_limit: FdLimit,
    /// secsock's figures.
    pub secsock: PhaseResult,
    /// The baseline's.
    pub rustls: PhaseResult,
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
            "machine: {} ({} workers per process)\n",
            m.summary(),
            WORKER_THREADS,
        ));
        out.push_str(&format!(
            "open files: soft {} / hard {} per process (server and client in fresh processes per stack)\n\n",
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
