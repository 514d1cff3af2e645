//! The `all` command (issue 5): every measure of the suite, secsock against plain TCP, plain
//! rustls and OpenSSL on loopback, each figure the median of at least five runs with all
//! baselines measured in the same run, reported as a table or one JSON object, and
//! optionally drawn (`--plot`).
//!
//! The measures:
//! - **bulk** throughput over one connection, 1 GiB (256 MiB with `--quick`) in 16 KiB and
//!   64 KiB writes: TCP, blocking rustls (`StreamOwned`), secsock's blocking API, tokio-rustls,
//!   secsock's tokio API, OpenSSL (`s_server`/`s_client`);
//! - **handshakes** per second, full and resumed, with one and two client threads, with the
//!   post-quantum hybrid X25519MLKEM768 and with X25519 alone: blocking rustls, blocking
//!   secsock, OpenSSL (`s_server -WWW` / `s_time`, X25519 only); and from the one-thread
//!   runs the latency of a connection, connect to first byte, p50 and p99;
//! - **rtt**: one-byte round trips over one connection, p50 and p99: TCP, rustls, secsock;
//! - **memory** per idle connection on each endpoint at 10,000 connections (2,000 with
//!   `--quick`): the `load` scenario, secsock's tokio API against tokio-rustls.
//!
//! Every figure of our stacks comes from two fresh processes of this program, a server and a
//! client (`endpoint`), as `load` runs them; OpenSSL's from fresh `openssl` processes. Within
//! a run the stacks take turns, in an order rotated from run to run, so that no stack always
//! goes first. Handshakes and round trips are taken in slices, by turns: every stack's
//! processes are started, then the stacks run one short slice each, back and forth, until
//! each has run its share (`Suite::ours_by_turns`), so that the machine's drift within a run
//! weighs on all of them alike. Each stack's endpoints report what they negotiated, and the
//! report lists it.
//!
//! Modules: `floor` (the AES-GCM record crypto alone, which bounds every TLS stack against
//! TCP), `measures` (each part of the suite: who takes part, in which order, what is
//! recorded), `stacks` (what is compared, configured alike), `endpoint` (the child
//! processes), `openssl` (the OpenSSL runs), `stats` (medians, percentiles), `report` (rows,
//! targets, JSON, table), `plot` (the SVG). This module: the options, the run, and how one
//! figure of our stacks is obtained (`Suite::ours`).

pub mod endpoint;
mod floor;
mod measures;
mod openssl;
mod plot;
mod report;
pub mod stacks;
mod stats;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;

use self::endpoint::{ClientReport, Common, Go, Ready, ServerSummary, SliceDone, Warmed, Workload};
use self::report::{Measure, Report};
use self::stacks::{Kx, Stack};
use crate::child::{Child, CLIENT_WRAPPER_VAR, SERVER_WRAPPER_VAR};
use crate::domain::TrustDomain;
use crate::load::Negotiated;
use crate::machine::{CpuSample, CpuUse, Machine};

/// A part of the suite, for running only some (`--only`, for profiling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Bulk,
    Handshakes,
    Rtt,
    Memory,
}

/// Where the servers and the clients run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pinning {
    /// Bulk and round trips on one CPU (`same`), handshakes unpinned (`none`): see
    /// [`Pinning::for_part`].
    Auto,
    /// Servers on one CPU, clients on another.
    Split,
    /// Servers and clients on one CPU.
    Same,
    /// Wherever the scheduler puts them.
    None,
}

/// What `all` was asked to do.
#[derive(Clone, Debug)]
pub struct AllOptions {
    /// Where servers and clients run.
    pub pinning: Pinning,
    /// Smaller sizes and shorter runs (still at least five runs).
    pub quick: bool,
    /// One JSON object instead of the table.
    pub json: bool,
    /// Where to write the SVG plot.
    pub plot: Option<PathBuf>,
    /// Runs per figure.
    pub runs: usize,
    /// Only these parts (all when empty).
    pub only: Vec<Part>,
    /// Only these entrants, by name (all when empty; for profiling).
    pub stacks: Vec<String>,
    /// Only the bulk and handshake measures whose name contains this (for profiling).
    pub filter: Option<String>,
    /// The command line, for the report.
    pub command: String,
}

/// Sizes and durations of one suite run.
#[derive(Clone, Debug)]
struct Sizes {
    bulk_bytes: u64,
    chunks: [usize; 2],
    /// Handshakes and rtt run in slices, the stacks of a run taking turns
    /// ([`Suite::ours_by_turns`]): this many per stack and run.
    handshake_slices: usize,
    handshake_slice_seconds: f64,
    handshake_warmup: usize,
    server_threads: usize,
    rtt_slices: usize,
    /// Round trips per stack and run, all slices.
    rtt_iterations: usize,
    rtt_warmup: usize,
    memory_connections: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        Self {
            bulk_bytes: if quick { 256 << 20 } else { 1 << 30 },
            chunks: [16 << 10, 64 << 10],
            // 2 s per stack and run (1 s with --quick), in quarter seconds.
            handshake_slices: if quick { 10 } else { 20 },
            handshake_slice_seconds: 0.1,
            handshake_warmup: 20,
            server_threads: 4,
            rtt_slices: if quick { 10 } else { 40 },
            // p99 of a run is its 1,000th-slowest round trip at 100,000 (1.5 s): with
            // 20,000 (0.3 s), one burst of the VM's interrupts moved it by 20 %.
            rtt_iterations: if quick { 20_000 } else { 100_000 },
            rtt_warmup: if quick { 500 } else { 1_000 },
            memory_connections: if quick { 2_000 } else { 10_000 },
        }
    }

    /// Seconds of handshakes per stack and run, all slices.
    fn handshake_seconds(&self) -> f64 {
        self.handshake_slices as f64 * self.handshake_slice_seconds
    }

    fn to_json(&self) -> BTreeMap<String, serde_json::Value> {
        let mut m = BTreeMap::new();
        m.insert("bulk_bytes".into(), self.bulk_bytes.into());
        m.insert("bulk_write_sizes".into(), serde_json::json!(self.chunks));
        m.insert(
            "handshake_seconds_per_run".into(),
            self.handshake_seconds().into(),
        );
        m.insert(
            "handshake_slices_per_run".into(),
            self.handshake_slices.into(),
        );
        m.insert("rtt_slices_per_run".into(), self.rtt_slices.into());
        m.insert(
            "handshake_warmup_connections_per_client_thread".into(),
            self.handshake_warmup.into(),
        );
        m.insert(
            "handshake_server_threads".into(),
            self.server_threads.into(),
        );
        m.insert("rtt_iterations".into(), self.rtt_iterations.into());
        m.insert("rtt_warmup".into(), self.rtt_warmup.into());
        m.insert("memory_connections".into(), self.memory_connections.into());
        m
    }
}

/// Who takes part in a measure: one of our stacks (two processes of this program) or
/// OpenSSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entrant {
    Ours(Stack),
    Openssl,
}

impl Entrant {
    fn name(self) -> &'static str {
        match self {
            Entrant::Ours(stack) => stack.name(),
            Entrant::Openssl => "openssl",
        }
    }
}

/// `items` rotated left by `by` (run `r` starts with the `r`-th entrant).
fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let by = by % items.len();
    items[by..]
        .iter()
        .chain(items[..by].iter())
        .copied()
        .collect()
}

/// Which of `n` stacks run, in turn, in slice number `slice` of a run by turns: in the
/// given order for even slices, in the reverse order for odd ones, so that over each pair
/// of slices every stack has run as often early as late.
fn turn_order(n: usize, slice: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if slice % 2 == 1 {
        order.reverse();
    }
    order
}

/// The CPUs the servers and the clients run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpus {
    pub server: usize,
    pub client: usize,
}

impl Pinning {
    /// The pinning a part of the suite runs with. `Auto` is what the report uses, chosen
    /// by measuring on the 2-vCPU VM the targets are set for:
    /// - bulk and round trips: server and client on one CPU. With the two ends on two
    ///   vCPUs, every time the receiver waits its vCPU halts and waking it costs tens of
    ///   microseconds (a one-byte round trip takes about 55 us instead of 16 us), and bulk
    ///   figures of one configuration varied by 3x between runs; on one CPU they vary by a
    ///   few percent, and each figure is the CPU cost of sending plus receiving;
    /// - handshakes: unpinned, so that two client threads and the server can use both cores
    ///   (their runs varied by 5-10 % either way).
    pub fn for_part(self, part: Part) -> Pinning {
        match (self, part) {
            (Pinning::Auto, Part::Bulk | Part::Rtt) => Pinning::Same,
            (Pinning::Auto, _) => Pinning::None,
            (other, _) => other,
        }
    }
}

impl Pinning {
    /// What this pinning does on this machine, for the report.
    fn describe(self) -> String {
        match (self, Cpus::choose(self)) {
            (Pinning::Same, Some(c)) => format!("server and client processes on CPU {}", c.server),
            (Pinning::Split, Some(c)) => format!(
                "server processes on CPU {}, client processes on CPU {}",
                c.server, c.client
            ),
            _ => "server and client processes not pinned".to_string(),
        }
    }
}

impl Cpus {
    /// The CPUs for `pinning`: the first two this process may use (split), or the first.
    fn choose(pinning: Pinning) -> Option<Self> {
        let cpus = crate::machine::allowed_cpus();
        match (pinning, &cpus[..]) {
            (Pinning::Split, [server, client, ..]) => Some(Self {
                server: *server,
                client: *client,
            }),
            (Pinning::Same, [cpu, ..]) => Some(Self {
                server: *cpu,
                client: *cpu,
            }),
            _ => None,
        }
    }
}

/// What the suite collects while it runs.
struct Suite {
    options: AllOptions,
    sizes: Sizes,
    /// Where servers and clients of the part being run go (None: wherever the scheduler
    /// puts them); set by [`Suite::enter`].
    cpus: Option<Cpus>,
    domain: TrustDomain,
    scratch: openssl::Scratch,
    openssl: bool,
    measures: Vec<Measure>,
    negotiated: BTreeMap<String, String>,
    failures: Vec<String>,
    notes: Vec<String>,
}

/// The `all` command.
pub fn run_all(options: AllOptions) -> anyhow::Result<()> {
    // Is anything else using the machine? One second of /proc/stat before starting.
    let quiet_from = CpuSample::now();
    std::thread::sleep(Duration::from_secs(1));
    let before = CpuUse::between(quiet_from, CpuSample::now(), 1.0);
    let started = Instant::now();
    let cpu_before = CpuSample::now();
    let machine = Machine::describe();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let mut suite = Suite {
        sizes: Sizes::new(options.quick),
        cpus: None,
        domain: TrustDomain::create_with_policy(stacks::POLICY_SECTIONS)?,
        scratch: openssl::Scratch::new()?,
        openssl: machine.openssl_version.is_some(),
        options,
        measures: Vec::new(),
        negotiated: BTreeMap::new(),
        failures: Vec::new(),
        notes: Vec::new(),
    };
    if before.machine_busy_percent > 5.0 {
        let warning = format!(
            "the machine was {:.0} % busy in the second before the suite started: figures may be disturbed",
            before.machine_busy_percent
        );
        eprintln!("secsock-bench: {warning}");
        suite.notes.push(warning);
    }
    if suite.options.runs < 5 {
        suite.notes.push(format!(
            "only {} runs per figure (--runs): not a report figure",
            suite.options.runs
        ));
    }
    suite.notes.push(format!(
        "bulk and rtt: {}; handshakes: {} (the same for OpenSSL's processes); memory: the load \
         scenario, not pinned",
        suite.options.pinning.for_part(Part::Bulk).describe(),
        suite.options.pinning.for_part(Part::Handshakes).describe(),
    ));
    if !suite.openssl {
        suite
            .notes
            .push("no openssl command: the OpenSSL column is empty".into());
    }
    let wants = |part| suite.options.only.is_empty() || suite.options.only.contains(&part);
    let (bulk, handshakes, rtt, memory) = (
        wants(Part::Bulk),
        wants(Part::Handshakes),
        wants(Part::Rtt),
        wants(Part::Memory),
    );
    if bulk {
        suite.enter(Part::Bulk);
        runtime.block_on(suite.bulk())?;
    }
    if handshakes {
        suite.enter(Part::Handshakes);
        runtime.block_on(suite.handshakes())?;
    }
    if rtt {
        suite.enter(Part::Rtt);
        runtime.block_on(suite.rtt())?;
    }
    if memory {
        suite.memory()?;
    }
    let cpu = CpuUse::between(
        cpu_before,
        CpuSample::now(),
        started.elapsed().as_secs_f64(),
    );
    suite.notes.push(
        "ratios are secsock / baseline in the measure's unit, the median of the runs' own \
         ratios (every run measures every stack): above 1 is better for MiB/s and hs/s, below 1 \
         for us and bytes"
            .into(),
    );
    let report = Report {
        machine,
        command: suite.options.command.clone(),
        quick: suite.options.quick,
        runs: suite.options.runs,
        sizes: suite.sizes.to_json(),
        measures: suite.measures,
        negotiated: suite.negotiated,
        failures: suite.failures,
        notes: suite.notes,
        cpu: Some(cpu),
    };
    if suite.options.json {
        // The JSON on stdout; the table, for the person watching, on stderr.
        println!("{}", report.to_json_text()?);
        eprint!("\n{}", report.to_table());
    } else {
        print!("{}", report.to_table());
    }
    if let Some(path) = &suite.options.plot {
        std::fs::write(path, plot::of_report(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("secsock-bench: plot written to {}", path.display());
    }
    Ok(())
}

impl Suite {
    /// Whether `--filter` lets the measure `name` run.
    fn selected(&self, name: &str) -> bool {
        self.options
            .filter
            .as_deref()
            .is_none_or(|f| name.contains(f))
    }

    /// Whether `--stacks` lets `entrant` run.
    fn takes_part(&self, entrant: Entrant) -> bool {
        self.options.stacks.is_empty() || self.options.stacks.iter().any(|s| s == entrant.name())
    }

    /// Sets where the processes of `part` run.
    fn enter(&mut self, part: Part) {
        self.cpus = Cpus::choose(self.options.pinning.for_part(part));
    }

    /// Records what an entrant negotiated (first run only) and checks it is what every stack
    /// of the measure should negotiate.
    fn negotiated(
        &mut self,
        key: String,
        client: Option<&Negotiated>,
        server: Option<&Negotiated>,
        suite: &str,
        kx: &str,
    ) {
        let show = |n: Option<&Negotiated>| {
            n.map(|n| format!("{} {} {}", n.protocol, n.cipher_suite, n.key_exchange))
                .unwrap_or_else(|| "not reported".into())
        };
        for (side, n) in [("client", client), ("server", server)] {
            if let Some(n) = n {
                if n.protocol != "TLSv1.3" || n.cipher_suite != suite || n.key_exchange != kx {
                    self.failures.push(format!(
                        "{key}: the {side} negotiated {} (expected TLSv1.3 {suite} {kx})",
                        show(Some(n))
                    ));
                }
            }
        }
        self.negotiated
            .entry(key)
            .or_insert_with(|| format!("client {}; server {}", show(client), show(server)));
    }

    fn note_failures(&mut self, what: &str, report: &ClientReport, summary: &ServerSummary) {
        if report.failures > 0 {
            self.failures.push(format!(
                "{what}: {} client failures, first: {}",
                report.failures,
                report.first_error.as_deref().unwrap_or("?")
            ));
        }
        if summary.failures > 0 {
            self.failures.push(format!(
                "{what}: {} server failures, first: {}",
                summary.failures,
                summary.first_error.as_deref().unwrap_or("?")
            ));
        }
    }

    // -- our endpoints ---------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn common(
        &self,
        stack: Stack,
        workload: Workload,
        kx: Kx,
        resumption: bool,
        threads: usize,
        bytes: u64,
        chunk: usize,
    ) -> Common {
        Common {
            stack,
            workload,
            identity: self.domain.server.dir.clone(),
            kx,
            no_resumption: !resumption,
            bytes,
            chunk: chunk.max(1),
            threads,
            cpu: None,
            cpu_mark: 0,
        }
    }

    /// Runs one figure of our stacks: a fresh server process for `server`, a fresh client
    /// process for `client` (with `client_extra` arguments), and their reports.
    async fn ours(
        &self,
        server: &Common,
        client: &Common,
        client_extra: &[&str],
    ) -> anyhow::Result<(ClientReport, ServerSummary)> {
        let (server, client) = self.start_endpoints(server, client, client_extra).await?;
        let lane = Lane {
            server,
            client,
            slices: Vec::new(),
        };
        let (report, summary, _) = Self::finish_lane(lane).await?;
        Ok((report, summary))
    }

    /// Starts a fresh server process for `server`, then a fresh client process for
    /// `client` (with `client_extra` arguments) pointed at it, each on its CPU.
    async fn start_endpoints(
        &self,
        server: &Common,
        client: &Common,
        client_extra: &[&str],
    ) -> anyhow::Result<(Child, Child)> {
        let server = Common {
            cpu: self.cpus.map(|c| c.server),
            ..server.clone()
        };
        let client = Common {
            cpu: self.cpus.map(|c| c.client),
            ..client.clone()
        };
        let mut server = Child::start(
            "server",
            SERVER_WRAPPER_VAR,
            &endpoint_args("bench-server", &server, &self.domain.server.dir),
        )?;
        let ready: Ready = server.read("its address", Duration::from_secs(60)).await?;
        let mut args = endpoint_args("bench-client", &client, &self.domain.client.dir);
        args.push("--addr".into());
        args.push(ready.addr.to_string().into());
        args.extend(client_extra.iter().map(OsString::from));
        let client = Child::start("client", CLIENT_WRAPPER_VAR, &args)?;
        Ok((server, client))
    }
}

/// The two processes of one stack in a run by turns ([`Suite::ours_by_turns`]).
struct Lane {
    server: Child,
    client: Child,
    slices: Vec<SliceDone>,
}

/// How long a slice, a warm-up or a bulk transfer may take (a profiler wrapping the client
/// slows it by orders of magnitude).
const SLICE_PATIENCE: Duration = Duration::from_secs(900);

impl Suite {
    /// One run of a measure taken in slices (handshakes, rtt) for several of our stacks,
    /// by turns: for each `(server, client)`, a fresh server process and a fresh client
    /// process (with `client_extra` arguments), all started before any slice runs, the
    /// clients warming up one after the other; then `slices` slices per stack, the stacks
    /// taking turns in the order given for even slices and in the reverse order for odd ones
    /// (A B, B A, A B, ...). Each stack's slices are spread over the whole run, so a drift of
    /// the machine during the run (this VM's speed wanders by several percent over seconds)
    /// weighs on every stack alike instead of on whichever ran while it lasted.
    ///
    /// Returns, for each pair, the client's report over all its slices, the server's
    /// summary and the slices; a stack whose processes fail is left out of the remaining
    /// turns and its error returned, and the others go on.
    async fn ours_by_turns(
        &self,
        pairs: &[(Common, Common)],
        client_extra: &[&str],
        slices: usize,
    ) -> Vec<anyhow::Result<(ClientReport, ServerSummary, Vec<SliceDone>)>> {
        let mut lanes = Vec::new();
        for (server, client) in pairs {
            lanes.push(self.start_lane(server, client, client_extra).await);
        }
        for slice in 0..slices {
            for i in turn_order(lanes.len(), slice) {
                let Ok(lane) = &mut lanes[i] else {
                    continue;
                };
                let done = async {
                    lane.client.send(&Go { slice }).await?;
                    lane.client
                        .read::<SliceDone>("the end of a slice", SLICE_PATIENCE)
                        .await
                }
                .await;
                match done {
                    Ok(done) => lane.slices.push(done),
                    Err(e) => lanes[i] = Err(e.context(format!("slice {}", slice + 1))),
                }
            }
        }
        let mut results = Vec::new();
        for lane in lanes {
            results.push(match lane {
                Ok(lane) => Self::finish_lane(lane).await,
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Starts a stack's server, then its client, and waits until the client has warmed up.
    async fn start_lane(
        &self,
        server: &Common,
        client: &Common,
        client_extra: &[&str],
    ) -> anyhow::Result<Lane> {
        let (server, mut client) = self.start_endpoints(server, client, client_extra).await?;
        let _: Warmed = client
            .read("the end of its warm-up", SLICE_PATIENCE)
            .await?;
        Ok(Lane {
            server,
            client,
            slices: Vec::new(),
        })
    }

    /// Tells a stack's client, then its server, to finish, and collects what they say.
    async fn finish_lane(
        mut lane: Lane,
    ) -> anyhow::Result<(ClientReport, ServerSummary, Vec<SliceDone>)> {
        lane.client.close_input();
        let report: ClientReport = lane.client.read("its report", SLICE_PATIENCE).await?;
        lane.client.finish().await?;
        lane.server.close_input();
        let summary: ServerSummary = lane
            .server
            .read("its summary", Duration::from_secs(60))
            .await?;
        lane.server.finish().await?;
        Ok((report, summary, lane.slices))
    }
}

/// The command line of an endpoint process for `common`, with `identity` as its identity.
fn endpoint_args(command: &str, common: &Common, identity: &std::path::Path) -> Vec<OsString> {
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|v| v.get_name().to_string()).unwrap_or_default()
    };
    let mut args: Vec<OsString> = vec![
        command.into(),
        "--stack".into(),
        name(common.stack.to_possible_value()).into(),
        "--workload".into(),
        name(common.workload.to_possible_value()).into(),
        "--identity".into(),
        identity.into(),
        "--kx".into(),
        name(common.kx.to_possible_value()).into(),
        "--bytes".into(),
        common.bytes.to_string().into(),
        "--chunk".into(),
        common.chunk.to_string().into(),
        "--threads".into(),
        common.threads.to_string().into(),
    ];
    if common.no_resumption {
        args.push("--no-resumption".into());
    }
    if let Some(cpu) = common.cpu {
        args.push("--cpu".into());
        args.push(cpu.to_string().into());
    }
    if common.cpu_mark > 0 {
        args.push("--cpu-mark".into());
        args.push(common.cpu_mark.to_string().into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_rotate_the_order_of_the_entrants() {
        assert_eq!(rotated(&[1, 2, 3], 0), vec![1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 1), vec![2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 5), vec![3, 1, 2]);
        assert_eq!(rotated::<u8>(&[], 2), Vec::<u8>::new());
    }

    #[test]
    fn stacks_take_turns_forward_then_backward() {
        assert_eq!(turn_order(2, 0), vec![0, 1]);
        assert_eq!(turn_order(2, 1), vec![1, 0]);
        assert_eq!(turn_order(3, 4), vec![0, 1, 2]);
        assert_eq!(turn_order(3, 7), vec![2, 1, 0]);
        // Over two slices, each stack's positions add up to the same.
        for n in 1..5 {
            let mut sums = vec![0; n];
            for slice in 0..2 {
                for (position, stack) in turn_order(n, slice).into_iter().enumerate() {
                    sums[stack] += position;
                }
            }
            assert!(sums.iter().all(|&s| s == n - 1), "{sums:?}");
        }
    }

    #[test]
    fn endpoint_arguments_parse_back() {
        use clap::Parser;
        #[derive(Parser)]
        struct Probe {
            #[command(flatten)]
            common: Common,
        }
        let common = Common {
            stack: Stack::SecsockTokio,
            workload: Workload::Bulk,
            identity: "/tmp/x".into(),
            kx: Kx::X25519,
            no_resumption: true,
            bytes: 5,
            chunk: 7,
            threads: 3,
            cpu: Some(1),
            cpu_mark: 9,
        };
        let args = endpoint_args("probe", &common, std::path::Path::new("/tmp/id"));
        let parsed = Probe::try_parse_from(&args).unwrap().common;
        assert_eq!(parsed.stack, Stack::SecsockTokio);
        assert_eq!(parsed.workload, Workload::Bulk);
        assert_eq!(parsed.identity, PathBuf::from("/tmp/id"));
        assert_eq!(parsed.kx, Kx::X25519);
        assert!(parsed.no_resumption);
        assert_eq!((parsed.bytes, parsed.chunk, parsed.threads), (5, 7, 3));
        assert_eq!(parsed.cpu, Some(1));
        assert_eq!(parsed.cpu_mark, 9);
    }
}
