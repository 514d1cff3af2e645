//! The parts of the suite: for each measure, who takes part, in which order the entrants
//! take turns run after run, what each figure is, and what is noted beside it. Obtaining a
//! figure is `Suite::ours` (our stacks) or the `openssl` module.

use super::endpoint::{Common, Workload};
use super::report::{Better, Column, Measure};
use super::stacks::{Kx, Stack};
use super::{floor, openssl};
use super::{rotated, Entrant, Suite};
use crate::load::{self, LoadOptions, Negotiated, Order};

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
                        m.record(column, value);
                        if let Some([client, server]) = cpu {
                            m.record_cpu(column, client, server);
                        }
                    };
                    match entrant {
                        Entrant::Ours(Stack::Tcp) => {
                            record(&mut blocking, Column::Tcp);
                            tokio.record(Column::Tcp, value);
                        }
                        Entrant::Ours(Stack::Rustls) => record(&mut blocking, Column::Rustls),
                        Entrant::Ours(Stack::Secsock) => record(&mut blocking, Column::Secsock),
                        Entrant::Ours(Stack::RustlsTokio) => record(&mut tokio, Column::Rustls),
                        Entrant::Ours(Stack::SecsockTokio) => record(&mut tokio, Column::Secsock),
                        Entrant::Openssl => {
                            blocking.record(Column::Openssl, value);
                            tokio.record(Column::Openssl, value);
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
        let mut entrants = vec![Entrant::Ours(Stack::Rustls), Entrant::Ours(Stack::Secsock)];
        if openssl {
            entrants.push(Entrant::Openssl);
        }
        for run in 0..self.options.runs {
            for entrant in rotated(&entrants, run) {
                if !self.takes_part(entrant) {
                    continue;
                }
                let figure = self
                    .handshake_figure(entrant, kx, resumption, threads, run == 0)
                    .await;
                let (hs, latency, cpu) = match figure {
                    Ok(f) => f,
                    Err(e) => {
                        self.failures
                            .push(format!("{} {}: {e:#}", rate.name, entrant.name()));
                        continue;
                    }
                };
                eprintln!(
                    "{}, run {}/{}: {:<8} {hs:7.0} hs/s{}",
                    rate.name,
                    run + 1,
                    self.options.runs,
                    entrant.name(),
                    latency
                        .map(|(a, b)| format!(", p50 {a:.0} us, p99 {b:.0} us"))
                        .unwrap_or_default()
                );
                let column = match entrant {
                    Entrant::Ours(Stack::Secsock) => Column::Secsock,
                    Entrant::Ours(_) => Column::Rustls,
                    Entrant::Openssl => Column::Openssl,
                };
                rate.record(column, hs);
                if let Some([client, server]) = cpu {
                    rate.record_cpu(column, client, server);
                }
                if threads == 1 {
                    if let Some((a, b)) = latency {
                        p50.record(column, a);
                        p99.record(column, b);
                    }
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

    /// One handshakes figure: connections per second, with one thread (p50, p99) of the
    /// latency in microseconds, and for our stacks the CPU time per connection of the
    /// client and the server in microseconds.
    async fn handshake_figure(
        &mut self,
        entrant: Entrant,
        kx: Kx,
        resumption: bool,
        threads: usize,
        first_run: bool,
    ) -> anyhow::Result<(f64, Option<(f64, f64)>, Option<[f64; 2]>)> {
        let kind = if resumption { "resumed" } else { "full" };
        let us = |(a, b): (u64, u64)| (a as f64 / 1e3, b as f64 / 1e3);
        let stack = match entrant {
            Entrant::Openssl => {
                let figure = openssl::handshakes(
                    &self.domain,
                    &self.scratch,
                    resumption,
                    threads,
                    self.sizes.handshake_seconds,
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
                return Ok((figure.rate, figure.latency_ns.map(us), None));
            }
            Entrant::Ours(stack) => stack,
        };
        let server = self.common(
            stack,
            Workload::Handshakes,
            kx,
            resumption,
            self.sizes.server_threads,
            0,
            0,
        );
        let server = Common {
            cpu_mark: (self.sizes.handshake_warmup * threads) as u64,
            ..server
        };
        let client = Common {
            threads,
            ..server.clone()
        };
        let seconds = self.sizes.handshake_seconds.to_string();
        let warmup = self.sizes.handshake_warmup.to_string();
        let extra = ["--seconds", seconds.as_str(), "--warmup", warmup.as_str()];
        let (report, summary) = self.ours(&server, &client, &extra).await?;
        self.note_failures(
            &format!(
                "handshakes {kind} {threads}t {} {}",
                kx.name(),
                stack.name()
            ),
            &report,
            &summary,
        );
        if report.resumed != Some(resumption) {
            self.failures.push(format!(
                "handshakes {kind} {} {}: the probe connection resumed: {:?}",
                kx.name(),
                stack.name(),
                report.resumed
            ));
        }
        if first_run {
            self.negotiated(
                format!(
                    "handshakes {kind} {threads}t {}/{}",
                    kx.name(),
                    stack.name()
                ),
                report.negotiated.as_ref(),
                summary.negotiated.as_ref(),
                "TLS13_AES_128_GCM_SHA256",
                kx.name(),
            );
        }
        if report.seconds <= 0.0 || report.connections == 0 {
            anyhow::bail!("no connection completed in the window");
        }
        let per_connection = |ns: u64, n: u64| ns as f64 / 1e3 / n.max(1) as f64;
        let cpu = [
            per_connection(report.cpu_ns, report.connections),
            per_connection(summary.cpu_ns, summary.cpu_ops),
        ];
        Ok((
            report.connections as f64 / report.seconds,
            report.latency_ns.map(us),
            Some(cpu),
        ))
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
        let iterations = self.sizes.rtt_iterations.to_string();
        let warmup = self.sizes.rtt_warmup.to_string();
        for run in 0..self.options.runs {
            for stack in rotated(&entrants, run) {
                if !self.takes_part(Entrant::Ours(stack)) {
                    continue;
                }
                let common = self.common(stack, Workload::Rtt, Kx::Pq, true, 1, 0, 0);
                let extra = [
                    "--iterations",
                    iterations.as_str(),
                    "--warmup",
                    warmup.as_str(),
                ];
                let (report, summary) = match self.ours(&common, &common, &extra).await {
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
                let Some((a, b)) = report.latency_ns else {
                    self.failures
                        .push(format!("rtt {}: no samples", stack.name()));
                    continue;
                };
                let (a, b) = (a as f64 / 1e3, b as f64 / 1e3);
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
                p50.record(column, a);
                p99.record(column, b);
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
                report.secsock.server_memory_per_connection_bytes as f64,
            );
            server.record(
                Column::Rustls,
                report.rustls.server_memory_per_connection_bytes as f64,
            );
            client.record(
                Column::Secsock,
                report.secsock.client_memory_per_connection_bytes as f64,
            );
            client.record(
                Column::Rustls,
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
