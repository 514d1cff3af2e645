//! The parts of the suite: for each measure, who takes part, in which order the entrants
//! take turns run after run, what each figure is, and what is noted beside it. Obtaining a
//! figure is `Suite::ours` (our stacks) or the `openssl` module.

use super::endpoint::{Common, Workload};
use super::report::{Better, Column, Measure};
use super::stacks::{Kx, Stack};
use super::{floor, openssl};
use super::{rotated, Entrant, Suite};
use crate::load::{self, LoadOptions, Negotiated, Order};

/// One handshakes figure: connections per second, with one thread the latency (p50, p99)
/// in microseconds, and for our stacks the CPU time per connection of the client and the
/// server in microseconds.
struct HandshakeFigure {
    rate: f64,
    latency_us: Option<(f64, f64)>,
    cpu_us: Option<[f64; 2]>,
}

/// (p50, p99) in nanoseconds, in microseconds.
fn micros((p50, p99): (u64, u64)) -> (f64, f64) {
    (p50 as f64 / 1e3, p99 as f64 / 1e3)
}

impl Suite {
    // -- bulk ------------------------------------------------------------------------------

    pub(super) async fn bulk(&mut self) -> anyhow::Result<()> {
        let entrants = [
            Entrant::Ours(Stack::Tcp),
            Entrant::Ours(Stack::Rustls),
            Entrant::Ours(Stack::Secsock),
            Entrant::Ours(Stack::RustlsTokio),
            Entrant::Ours(Stack::SecsockTokio),
            Entrant::Openssl,
        ];
        let bytes = self.sizes.bulk_bytes;
        let floor = floor::measure(64 << 20, self.options.runs);
        if let Err(e) = &floor {
            self.failures.push(format!("crypto floor: {e:#}"));
        }
        for chunk in self.sizes.chunks {
            let kib = chunk >> 10;
            let targets = |m: Measure| {
                m.with_cpu("ns/KiB")
                    .target(Column::Rustls, 1.0)
                    .aim(Column::Tcp, 0.85)
                    .target(Column::Openssl, 1.0)
            };
            if !self.selected(&format!("bulk_{kib}KiB_blocking"))
                && !self.selected(&format!("bulk_{kib}KiB_tokio"))
            {
                continue;
            }
            let mut blocking = targets(Measure::new(
                format!("bulk_{kib}KiB_blocking"),
                "MiB/s",
                Better::Higher,
            ));
            let mut tokio = targets(Measure::new(
                format!("bulk_{kib}KiB_tokio"),
                "MiB/s",
                Better::Higher,
            ));
            tokio.notes.push(
                "secsock's tokio API against tokio-rustls; tcp and openssl are the blocking row's runs"
                    .into(),
            );
            blocking.notes.push(format!(
                "openssl: s_client sends 8 KiB records whatever the write size (it reads its input \
                 in 8 KiB pieces) and X25519 (no ML-KEM in OpenSSL 3.0); the others {kib} KiB writes"
            ));
            for run in 0..self.options.runs {
                for entrant in rotated(&entrants, run) {
                    if (entrant == Entrant::Openssl && !self.openssl) || !self.takes_part(entrant) {
                        continue;
                    }
                    let figure = self.bulk_figure(entrant, chunk, bytes, run == 0).await;
                    let (value, cpu) = match figure {
                        Ok(v) => v,
                        Err(e) => {
                            self.failures
                                .push(format!("bulk {kib} KiB {}: {e:#}", entrant.name()));
                            continue;
                        }
                    };
                    eprintln!(
                        "bulk {kib} KiB, run {}/{}: {:<13} {value:8.0} MiB/s",
                        run + 1,
                        self.options.runs,
                        entrant.name()
                    );
                    let record = |m: &mut Measure, column: Column| {
                        m.record(column, run, value);
                        if let Some([client, server]) = cpu {
                            m.record_cpu(column, client, server);
                        }
                    };
                    match entrant {
                        Entrant::Ours(Stack::Tcp) => {
                            record(&mut blocking, Column::Tcp);
                            tokio.record(Column::Tcp, run, value);
                        }
                        Entrant::Ours(Stack::Rustls) => record(&mut blocking, Column::Rustls),
                        Entrant::Ours(Stack::Secsock) => record(&mut blocking, Column::Secsock),
                        Entrant::Ours(Stack::RustlsTokio) => record(&mut tokio, Column::Rustls),
                        Entrant::Ours(Stack::SecsockTokio) => record(&mut tokio, Column::Secsock),
                        Entrant::Openssl => {
                            blocking.record(Column::Openssl, run, value);
                            tokio.record(Column::Openssl, run, value);
                        }
                    }
                }
            }
            if let (Ok(floor), Some(tcp)) = (&floor, blocking.cpu_median(Column::Tcp)) {
                blocking.notes.push(format!(
                    "crypto floor (aws-lc-rs AES-128-GCM, 16 KiB records in memory, median of {} \
                     runs): seal {:.0} + open {:.0} ns/KiB; on top of TCP's {:.0} + {:.0} ns/KiB \
                     in this row, a TLS stack with both ends on one CPU reaches at most {:.2} x TCP",
                    self.options.runs,
                    floor.seal_ns_per_kib,
                    floor.open_ns_per_kib,
                    tcp[0],
                    tcp[1],
                    floor.ceiling_vs_tcp(tcp),
                ));
            }
            self.measures.push(blocking);
            self.measures.push(tokio);
        }
        Ok(())
    }

    /// One bulk figure in MiB/s, and for our stacks the CPU cost of the client and the
    /// server in ns/KiB.
    async fn bulk_figure(
        &mut self,
        entrant: Entrant,
        chunk: usize,
        bytes: u64,
        first_run: bool,
    ) -> anyhow::Result<(f64, Option<[f64; 2]>)> {
        let stack = match entrant {
            Entrant::Openssl => {
                let (mib_s, negotiated) =
                    openssl::bulk(&self.domain, &mut self.scratch, bytes, self.cpus).await?;
                if first_run {
                    self.negotiated(
                        "bulk/openssl".into(),
                        negotiated.as_ref(),
                        None,
                        "TLS_AES_128_GCM_SHA256",
                        "X25519",
                    );
                }
                return Ok((mib_s, None));
            }
            Entrant::Ours(stack) => stack,
        };
        let common = self.common(stack, Workload::Bulk, Kx::Pq, true, 1, bytes, chunk);
        let (report, summary) = self.ours(&common, &common, &[]).await?;
        self.note_failures(
            &format!("bulk {} KiB {}", chunk >> 10, stack.name()),
            &report,
            &summary,
        );
        if first_run && stack != Stack::Tcp {
            self.negotiated(
                format!("bulk/{}", stack.name()),
                report.negotiated.as_ref(),
                summary.negotiated.as_ref(),
                "TLS13_AES_128_GCM_SHA256",
                Kx::Pq.name(),
            );
        }
        if report.seconds <= 0.0 || report.bytes != bytes {
            anyhow::bail!(
                "sent {} of {bytes} bytes in {} s",
                report.bytes,
                report.seconds
            );
        }
        let per_kib = |ns: u64, bytes: u64| ns as f64 / (bytes.max(1) as f64 / 1024.0);
        let cpu = [
            per_kib(report.cpu_ns, report.bytes),
            per_kib(summary.cpu_ns, summary.cpu_ops),
        ];
        Ok((
            report.bytes as f64 / (1 << 20) as f64 / report.seconds,
            Some(cpu),
        ))
    }

    // -- handshakes ------------------------------------------------------------------------

    pub(super) async fn handshakes(&mut self) -> anyhow::Result<()> {
        for kx in [Kx::Pq, Kx::X25519] {
            for resumption in [false, true] {
                for threads in [1usize, 2] {
                    self.handshake_measure(kx, resumption, threads).await?;
                }
            }
        }
        Ok(())
    }

    async fn handshake_measure(
        &mut self,
        kx: Kx,
        resumption: bool,
        threads: usize,
    ) -> anyhow::Result<()> {
        let kind = if resumption { "resumed" } else { "full" };
        let threads_name = if threads == 1 {
            "1thread".to_string()
        } else {
            format!("{threads}threads")
        };
        let openssl = self.openssl && kx == Kx::X25519;
        let name = format!("handshakes_{kind}_{threads_name}_{}", kx.name());
        if !self.selected(&name) {
            return Ok(());
        }
        let mut rate = Measure::new(name, "hs/s", Better::Higher)
            .with_cpu("us/handshake")
            .target(Column::Rustls, if resumption { 0.97 } else { 1.1 })
            .target(Column::Openssl, 1.0);
        let mut p50 = Measure::new(
            format!("handshake_latency_{kind}_p50_{}", kx.name()),
            "us",
            Better::Lower,
        )
        .target(Column::Openssl, 1.0);
        let mut p99 = Measure::new(
            format!("handshake_latency_{kind}_p99_{}", kx.name()),
            "us",
            Better::Lower,
        )
        .target(Column::Openssl, 1.0);
        if kx == Kx::Pq {
            rate.notes
                .push("openssl: null, OpenSSL 3.0 has no ML-KEM (X25519MLKEM768)".into());
        } else if openssl {
            if threads == 2 {
                rate.notes.push(
                    "openssl: two s_time processes, each against its own s_server (s_server \
                     serves one connection at a time)"
                        .into(),
                );
            }
            p50.notes.push(
                "openssl: intervals between s_time's connections, an upper bound of connect to \
                 first byte (each also holds the client's close)"
                    .into(),
            );
        }
        let runs = self.options.runs;
        let record = |rate: &mut Measure,
                      p50: &mut Measure,
                      p99: &mut Measure,
                      run: usize,
                      entrant: Entrant,
                      figure: HandshakeFigure| {
            eprintln!(
                "{}, run {}/{}: {:<8} {:7.0} hs/s{}",
                rate.name,
                run + 1,
                runs,
                entrant.name(),
                figure.rate,
                figure
                    .latency_us
                    .map(|(a, b)| format!(", p50 {a:.0} us, p99 {b:.0} us"))
                    .unwrap_or_default()
            );
            let column = match entrant {
                Entrant::Ours(Stack::Secsock) => Column::Secsock,
                Entrant::Ours(_) => Column::Rustls,
                Entrant::Openssl => Column::Openssl,
            };
            rate.record(column, run, figure.rate);
            if let Some([client, server]) = figure.cpu_us {
                rate.record_cpu(column, client, server);
            }
            if let (1, Some((a, b))) = (threads, figure.latency_us) {
                p50.record(column, run, a);
                p99.record(column, run, b);
            }
        };
        for run in 0..self.options.runs {
            // rustls and secsock by turns, in slices over the run; OpenSSL's tools alone.
            let ours: Vec<Stack> = rotated(&[Stack::Rustls, Stack::Secsock], run)
                .into_iter()
                .filter(|&s| self.takes_part(Entrant::Ours(s)))
                .collect();
            let figures = self
                .handshake_figures(&ours, kx, resumption, threads, run == 0)
                .await;
            for (stack, figure) in ours.into_iter().zip(figures) {
                match figure {
                    Ok(f) => record(&mut rate, &mut p50, &mut p99, run, Entrant::Ours(stack), f),
                    Err(e) => self
                        .failures
                        .push(format!("{} {}: {e:#}", rate.name, stack.name())),
                }
            }
            if openssl && self.takes_part(Entrant::Openssl) {
                match self
                    .openssl_handshake_figure(kx, resumption, threads, run == 0)
                    .await
                {
                    Ok(f) => record(&mut rate, &mut p50, &mut p99, run, Entrant::Openssl, f),
                    Err(e) => self.failures.push(format!("{} openssl: {e:#}", rate.name)),
                }
            }
        }
        self.measures.push(rate);
        if threads == 1 {
            self.measures.push(p50);
            self.measures.push(p99);
        }
        Ok(())
    }

    /// OpenSSL's handshakes figure (`s_server` and `s_time`), run on its own.
    async fn openssl_handshake_figure(
        &mut self,
        kx: Kx,
        resumption: bool,
        threads: usize,
        first_run: bool,
    ) -> anyhow::Result<HandshakeFigure> {
        let kind = if resumption { "resumed" } else { "full" };
        let seconds = self.sizes.handshake_seconds().round().max(1.0) as u64;
        let figure = openssl::handshakes(
            &self.domain,
            &self.scratch,
            resumption,
            threads,
            seconds,
            self.sizes.handshake_warmup,
            self.cpus,
        )
        .await?;
        let expected_resumed = if resumption { figure.connections } else { 0 };
        if figure.resumed != expected_resumed {
            self.failures.push(format!(
                "handshakes {kind} openssl: {} of {} connections resumed",
                figure.resumed, figure.connections
            ));
        }
        if first_run {
            self.negotiated(
                format!("handshakes {kind} {threads}t {}/openssl", kx.name()),
                figure.negotiated.as_ref(),
                None,
                "TLS_AES_128_GCM_SHA256",
                "X25519",
            );
        }
        Ok(HandshakeFigure {
            rate: figure.rate,
            latency_us: figure.latency_ns.map(micros),
            cpu_us: None,
        })
    }

    /// One run's handshakes figures of our `stacks`, taken by turns
    /// ([`Suite::ours_by_turns`]), in the order of `stacks`.
    async fn handshake_figures(
        &mut self,
        stacks: &[Stack],
        kx: Kx,
        resumption: bool,
        threads: usize,
        first_run: bool,
    ) -> Vec<anyhow::Result<HandshakeFigure>> {
        let kind = if resumption { "resumed" } else { "full" };
        let pairs: Vec<(Common, Common)> = stacks
            .iter()
            .map(|&stack| {
                let server = Common {
                    cpu_mark: (self.sizes.handshake_warmup * threads) as u64,
                    ..self.common(
                        stack,
                        Workload::Handshakes,
                        kx,
                        resumption,
                        self.sizes.server_threads,
                        0,
                        0,
                    )
                };
                let client = Common {
                    threads,
                    ..server.clone()
                };
                (server, client)
            })
            .collect();
        let seconds = self.sizes.handshake_slice_seconds.to_string();
        let warmup = self.sizes.handshake_warmup.to_string();
        let extra = ["--seconds", seconds.as_str(), "--warmup", warmup.as_str()];
        let results = self
            .ours_by_turns(&pairs, &extra, self.sizes.handshake_slices)
            .await;
        let mut figures = Vec::new();
        for (&stack, result) in stacks.iter().zip(results) {
            let what = format!(
                "handshakes {kind} {threads}t {}/{}",
                kx.name(),
                stack.name()
            );
            figures.push(result.and_then(|(report, summary, _)| {
                self.note_failures(&what, &report, &summary);
                if report.resumed != Some(resumption) {
                    self.failures.push(format!(
                        "{what}: the probe connection resumed: {:?}",
                        report.resumed
                    ));
                }
                if first_run {
                    self.negotiated(
                        what,
                        report.negotiated.as_ref(),
                        summary.negotiated.as_ref(),
                        "TLS13_AES_128_GCM_SHA256",
                        kx.name(),
                    );
                }
                if report.seconds <= 0.0 || report.connections == 0 {
                    anyhow::bail!("no connection completed in the slices");
                }
                let per_connection = |ns: u64, n: u64| ns as f64 / 1e3 / n.max(1) as f64;
                Ok(HandshakeFigure {
                    rate: report.connections as f64 / report.seconds,
                    latency_us: report.latency_ns.map(micros),
                    cpu_us: Some([
                        per_connection(report.cpu_ns, report.connections),
                        per_connection(summary.cpu_ns, summary.cpu_ops),
                    ]),
                })
            }));
        }
        figures
    }

    // -- rtt -------------------------------------------------------------------------------

    pub(super) async fn rtt(&mut self) -> anyhow::Result<()> {
        let bound = 1.0 / 0.97;
        let mut p50 = Measure::new("rtt_p50", "us", Better::Lower).target(Column::Rustls, bound);
        let mut p99 = Measure::new("rtt_p99", "us", Better::Lower).target(Column::Rustls, bound);
        p50.notes.push(
            "openssl: null, the issue's round-trip measure covers TCP, rustls and secsock (OpenSSL's \
             command line tools would add pipe hops to every round trip)"
                .into(),
        );
        let entrants = [Stack::Tcp, Stack::Rustls, Stack::Secsock];
        let slices = self.sizes.rtt_slices.max(1);
        let iterations = (self.sizes.rtt_iterations / slices).to_string();
        let warmup = self.sizes.rtt_warmup.to_string();
        let extra = [
            "--iterations",
            iterations.as_str(),
            "--warmup",
            warmup.as_str(),
        ];
        for run in 0..self.options.runs {
            let stacks: Vec<Stack> = rotated(&entrants, run)
                .into_iter()
                .filter(|&s| self.takes_part(Entrant::Ours(s)))
                .collect();
            let pairs: Vec<(Common, Common)> = stacks
                .iter()
                .map(|&stack| {
                    let common = self.common(stack, Workload::Rtt, Kx::Pq, true, 1, 0, 0);
                    (common.clone(), common)
                })
                .collect();
            let results = self.ours_by_turns(&pairs, &extra, slices).await;
            for (stack, result) in stacks.into_iter().zip(results) {
                let (report, summary, _) = match result {
                    Ok(x) => x,
                    Err(e) => {
                        self.failures.push(format!("rtt {}: {e:#}", stack.name()));
                        continue;
                    }
                };
                self.note_failures(&format!("rtt {}", stack.name()), &report, &summary);
                if run == 0 && stack != Stack::Tcp {
                    self.negotiated(
                        format!("rtt/{}", stack.name()),
                        report.negotiated.as_ref(),
                        summary.negotiated.as_ref(),
                        "TLS13_AES_128_GCM_SHA256",
                        Kx::Pq.name(),
                    );
                }
                let Some((a, b)) = report.latency_ns.map(micros) else {
                    self.failures
                        .push(format!("rtt {}: no samples", stack.name()));
                    continue;
                };
                eprintln!(
                    "rtt, run {}/{}: {:<8} p50 {a:6.1} us, p99 {b:6.1} us",
                    run + 1,
                    self.options.runs,
                    stack.name()
                );
                let column = match stack {
                    Stack::Tcp => Column::Tcp,
                    Stack::Rustls => Column::Rustls,
                    _ => Column::Secsock,
                };
                p50.record(column, run, a);
                p99.record(column, run, b);
            }
        }
        self.measures.push(p50);
        self.measures.push(p99);
        Ok(())
    }

    // -- memory ----------------------------------------------------------------------------

    pub(super) fn memory(&mut self) -> anyhow::Result<()> {
        let connections = self.sizes.memory_connections;
        let mut server = Measure::new("memory_per_connection_server", "bytes", Better::Lower)
            .target(Column::Rustls, 1.25);
        let mut client = Measure::new("memory_per_connection_client", "bytes", Better::Lower)
            .target(Column::Rustls, 1.25);
        server.notes.push(format!(
            "the load scenario: {connections} idle connections, secsock's tokio API against \
             tokio-rustls, RSS growth per connection of each endpoint's fresh process; openssl: \
             null, not part of the issue's memory measure"
        ));
        for run in 0..self.options.runs {
            let order = if run % 2 == 0 {
                Order::RustlsFirst
            } else {
                Order::SecsockFirst
            };
            let result = load::run_load(LoadOptions {
                connections,
                concurrency: 64,
                order,
                resumption: true,
                command: self.options.command.clone(),
            });
            let report = match result {
                Ok(r) => r,
                Err(e) => {
                    self.failures.push(format!("memory: {e:#}"));
                    continue;
                }
            };
            if !report.all_held() {
                self.failures.push(format!(
                    "memory run {}: not every connection was held (secsock {}, rustls {})",
                    run + 1,
                    report.secsock.connections_held,
                    report.rustls.connections_held
                ));
            }
            eprintln!(
                "memory, run {}/{}: server B/conn secsock {} rustls {}; client B/conn secsock {} rustls {}",
                run + 1,
                self.options.runs,
                report.secsock.server_memory_per_connection_bytes,
                report.rustls.server_memory_per_connection_bytes,
                report.secsock.client_memory_per_connection_bytes,
                report.rustls.client_memory_per_connection_bytes,
            );
            server.record(
                Column::Secsock,
                run,
                report.secsock.server_memory_per_connection_bytes as f64,
            );
            server.record(
                Column::Rustls,
                run,
                report.rustls.server_memory_per_connection_bytes as f64,
            );
            client.record(
                Column::Secsock,
                run,
                report.secsock.client_memory_per_connection_bytes as f64,
            );
            client.record(
                Column::Rustls,
                run,
                report.rustls.client_memory_per_connection_bytes as f64,
            );
            if run == 0 {
                let show = |n: &Option<Negotiated>| {
                    n.as_ref()
                        .map(|n| format!("{} {} {}", n.protocol, n.cipher_suite, n.key_exchange))
                        .unwrap_or_else(|| "not reported".into())
                };
                for phase in [&report.secsock, &report.rustls] {
                    self.negotiated.insert(
                        format!("memory/{}", phase.stack.name()),
                        format!(
                            "client {}; server {}",
                            show(&phase.client_negotiated),
                            show(&phase.server_negotiated)
                        ),
                    );
                }
            }
        }
        self.measures.push(server);
        self.measures.push(client);
        Ok(())
    }
}
