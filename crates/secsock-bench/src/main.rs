//! `secsock-bench`: benchmarks of secsock against its baselines, measured in the same run
//! and reported with their ratios and the machine that produced them.
//!
//! ```text
//! secsock-bench all [--quick] [--json] [--plot FILE.svg]
//! secsock-bench load --connections 10000 [--json]
//! ```
//!
//! `all` runs the whole suite of issue 5 (bulk throughput, handshakes, latency, round trips,
//! memory) against plain TCP, plain rustls and OpenSSL; see the `all` module. Its figures
//! come from fresh processes of this program too (the hidden `bench-server` and
//! `bench-client` commands) and from the `openssl` command.
//!
//! `load` orchestrates: each stack's server and client run in fresh processes of this
//! program (the hidden `load-server` and `load-client` commands), which measure themselves.
//! For profiling, `load --only STACK` runs one stack's phase, and the environment variables
//! `SECSOCK_BENCH_SERVER_WRAPPER` and `SECSOCK_BENCH_CLIENT_WRAPPER` (e.g.
//! `heaptrack -o /tmp/server`) run the server or client process under another program.
//! `SECSOCK_BENCH_POOL_ACCEPT=1` makes `all`'s blocking secsock servers secure connections
//! through `SecureListener::accept` (concurrent handshakes on worker threads) instead of
//! `accept_pending` + `handshake` on each server thread, as the rustls baseline does.
//!
//! No `unsafe` here: every measurement comes from /proc or from rustix's safe wrappers.
//!
//! Modules: `all` (the suite), `load` (the load scenario), `sizes` (type and future sizes),
//! `machine` (machine facts, memory, clocks, limits, CPU use), `domain` (the temporary trust
//! domain every stack uses), `child` (child processes spoken to in JSON lines).

#![forbid(unsafe_code)]

mod all;
mod child;
mod domain;
mod load;
mod machine;
mod sizes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::all::endpoint::{ClientOnly, Common};
use crate::all::{AllOptions, Part, Pinning};
use crate::load::client::ClientOptions;
use crate::load::server::ServerOptions;
use crate::load::{LoadOptions, Order, Stack};

/// Benchmarks of secsock against plain TCP, plain rustls and OpenSSL, from the same run.
#[derive(Parser, Debug)]
#[command(name = "secsock-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole suite: bulk throughput, handshakes per second, handshake latency, round
    /// trips and memory per connection, secsock against plain TCP, plain rustls and
    /// OpenSSL on loopback; each figure the median of 5 runs, with ratios and targets.
    All {
        /// Smaller sizes and shorter runs (still 5 runs per figure).
        #[arg(long)]
        quick: bool,
        /// One JSON object on stdout (the table then goes to stderr).
        #[arg(long)]
        json: bool,
        /// Also draws the throughput and handshake figures into this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Runs per figure (fewer than 5 only to try things out).
        #[arg(long, default_value_t = 5, hide = true)]
        runs: usize,
        /// Only these parts of the suite (for profiling).
        #[arg(long, value_enum, hide = true)]
        only: Vec<Part>,
        /// Only these stacks (tcp, rustls, secsock, rustls-tokio, secsock-tokio, openssl; for
        /// profiling).
        #[arg(long, hide = true)]
        stacks: Vec<String>,
        /// Only the bulk and handshake measures whose name contains this (for profiling).
        #[arg(long, hide = true)]
        filter: Option<String>,
        /// Where the server and client processes run.
        #[arg(long, value_enum, default_value_t = Pinning::Auto, hide = true)]
        pin: Pinning,
    },
    /// The server of one figure of `all`, run by it in a child process.
    #[command(hide = true)]
    BenchServer {
        #[command(flatten)]
        common: Common,
    },
    /// The client of one figure of `all`, run by it in a child process.
    #[command(hide = true)]
    BenchClient {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        client: ClientOnly,
    },
    /// Opens N mutual-TLS connections and holds them idle, with secsock and with plain
    /// tokio-rustls, each stack's server and client in fresh processes: handshakes per
    /// second while opening, memory per connection on each endpoint, and their ratios.
    Load {
        /// Connections to open and hold, per stack.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Connects-plus-handshakes the client keeps in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Which stack's phase runs first.
        #[arg(long, value_enum, default_value_t = Order::RustlsFirst)]
        order: Order,
        /// Full handshakes only: clients do not resume sessions from earlier connections'
        /// tickets and servers send none (secsock: `session_lifetime = "0s"`).
        #[arg(long)]
        full_handshakes: bool,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Runs only this stack's phase and prints its JSON figures (for profiling).
        #[arg(long, value_enum, hide = true)]
        only: Option<Stack>,
    },
    /// The server side of one `load` phase, run by it in a child process.
    #[command(hide = true)]
    LoadServer {
        /// The stack to serve with.
        #[arg(long, value_enum)]
        stack: Stack,
        /// Connections it must be able to hold.
        #[arg(long)]
        connections: usize,
        /// The server identity's directory (host.crt, host.key, ca.crt, policy.toml).
        #[arg(long)]
        identity: PathBuf,
        /// The baseline server sends no session tickets (secsock: said by the policy).
        #[arg(long)]
        no_resumption: bool,
    },
    /// The client side of one `load` phase, run by it in a child process.
    #[command(hide = true)]
    LoadClient {
        /// The server.
        #[arg(long)]
        addr: SocketAddr,
        /// Connections to open and hold.
        #[arg(long)]
        connections: usize,
        /// Connects-plus-handshakes in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// The stack to connect with.
        #[arg(long, value_enum)]
        stack: Stack,
        /// The client identity's directory (host.crt, host.key, ca.crt, policy.toml).
        #[arg(long)]
        identity: PathBuf,
        /// The baseline client does not resume sessions (secsock: said by the policy).
        #[arg(long)]
        no_resumption: bool,
    },
    /// Prints the in-memory sizes of each stack's connection types and futures.
    #[command(hide = true)]
    Sizes,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::All {
            quick,
            json,
            plot,
            runs,
            only,
            stacks,
            filter,
            pin,
        } => all::run_all(AllOptions {
            pinning: pin,
            stacks,
            filter,
            quick,
            json,
            plot,
            runs: runs.max(1),
            only,
            command: command_line(),
        })
        .map(|()| ExitCode::SUCCESS),
        Command::BenchServer { common } => {
            all::endpoint::run_server(&common).map(|()| ExitCode::SUCCESS)
        }
        Command::BenchClient { common, client } => {
            all::endpoint::run_client(&common, &client).map(|()| ExitCode::SUCCESS)
        }
        Command::Load {
            connections,
            concurrency,
            order,
            full_handshakes,
            json,
            only,
        } => run_load(
            LoadOptions {
                connections,
                concurrency,
                order,
                resumption: !full_handshakes,
                command: command_line(),
            },
            json,
            only,
        ),
        Command::LoadServer {
            stack,
            connections,
            identity,
            no_resumption,
        } => load::server::run_server(&ServerOptions {
            stack,
            identity,
            connections,
            resumption: !no_resumption,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::LoadClient {
            addr,
            connections,
            concurrency,
            stack,
            identity,
            no_resumption,
        } => load::client::run_client(&ClientOptions {
            addr,
            connections,
            concurrency,
            stack,
            identity,
            resumption: !no_resumption,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Sizes => sizes::print_sizes().map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("secsock-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// This command line as typed, with the program named `secsock-bench`.
fn command_line() -> String {
    std::iter::once("secsock-bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `load` and prints its report; fails (exit 1) if either stack did not hold every
/// connection, after printing what it measured.
fn run_load(options: LoadOptions, json: bool, only: Option<Stack>) -> anyhow::Result<ExitCode> {
    if let Some(stack) = only {
        let phase = load::run_one(stack, &options)?;
        println!("{}", serde_json::to_string_pretty(&phase)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report = load::run_load(options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_table());
    }
    if report.all_held() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("secsock-bench: not every connection was held (see failures above)");
        Ok(ExitCode::FAILURE)
    }
}
