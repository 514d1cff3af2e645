//! What `all` reports, pure: each measure's runs per column, their medians, the ratios, the
//! issue's targets checked against them, and the two outputs (one JSON object, or a table).
//!
//! The JSON object has `machine` and `results`, an array of
//! `{measure, unit, secsock, rustls, openssl, tcp, ratio_vs_rustls, ratio_vs_openssl}`
//! (null where a figure does not apply), and beside them the details: every run's figure
//! (`per_run`), the targets (`targets`), what each stack negotiated, the machine's other CPU
//! use during the run, and notes. Ratios are secsock / baseline in the measure's own unit:
//! above 1 is better for throughput and handshakes per second, below 1 for latency and
//! memory.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats;
use crate::machine::{CpuUse, Machine};

/// A column of the results: secsock or one of its baselines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Column {
    /// secsock (blocking or tokio, as the measure says).
    Secsock,
    /// Plain rustls (blocking `StreamOwned`, or tokio-rustls for the tokio rows).
    Rustls,
    /// The system's OpenSSL through its command line.
    Openssl,
    /// Plain TCP.
    Tcp,
}

impl Column {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Column::Secsock => "secsock",
            Column::Rustls => "rustls",
            Column::Openssl => "openssl",
            Column::Tcp => "tcp",
        }
    }
}

/// Which way is better for a measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Throughput, handshakes per second.
    Higher,
    /// Latency, memory.
    Lower,
}

/// A target: secsock / `against` at least (`Higher`) or at most (`Lower`) `ratio`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// The baseline.
    pub against: Column,
    /// The bound on secsock / baseline.
    pub ratio: f64,
    /// An aim rather than a requirement (bulk against TCP).
    pub aim: bool,
}

/// One measure: what it is and every run's figure per column.
#[derive(Clone, Debug)]
pub struct Measure {
    /// e.g. `bulk_16KiB_blocking`.
    pub name: String,
    /// e.g. `MiB/s`.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// The targets for it.
    pub targets: Vec<Target>,
    /// The figure of every run, per column and run number (absent: the column does not
    /// apply, or its run failed).
    pub runs: BTreeMap<Column, BTreeMap<usize, f64>>,
    /// Why a column is null or what it means here, if it needs saying.
    pub notes: Vec<String>,
    /// The unit of the CPU cost per operation, if measured (e.g. `ns/KiB`).
    pub cpu_unit: Option<&'static str>,
    /// The CPU cost per operation of every run, per column: [client, server].
    pub cpu: BTreeMap<Column, Vec<[f64; 2]>>,
}

impl Measure {
    /// A measure without runs yet.
    pub fn new(name: impl Into<String>, unit: &'static str, better: Better) -> Self {
        Self {
            name: name.into(),
            unit,
            better,
            targets: Vec::new(),
            runs: BTreeMap::new(),
            notes: Vec::new(),
            cpu_unit: None,
            cpu: BTreeMap::new(),
        }
    }

    /// Says that the measure also records CPU cost per operation, in `unit`.
    pub fn with_cpu(mut self, unit: &'static str) -> Self {
        self.cpu_unit = Some(unit);
        self
    }

    /// Records one run's CPU cost per operation of a column's client and server.
    pub fn record_cpu(&mut self, column: Column, client: f64, server: f64) {
        self.cpu.entry(column).or_default().push([client, server]);
    }

    /// The medians of a column's CPU cost per operation: [client, server].
    pub fn cpu_median(&self, column: Column) -> Option<[f64; 2]> {
        let runs = self.cpu.get(&column)?;
        let side = |i: usize| stats::median(&runs.iter().map(|r| r[i]).collect::<Vec<_>>());
        Some([side(0)?, side(1)?])
    }

    /// Adds a target.
    pub fn target(mut self, against: Column, ratio: f64) -> Self {
        self.targets.push(Target {
            against,
            ratio,
            aim: false,
        });
        self
    }

    /// Adds an aim (reported like a target, marked as an aim).
    pub fn aim(mut self, against: Column, ratio: f64) -> Self {
        self.targets.push(Target {
            against,
            ratio,
            aim: true,
        });
        self
    }

    /// Records the figure of a column in run number `run`.
    pub fn record(&mut self, column: Column, run: usize, value: f64) {
        self.runs.entry(column).or_default().insert(run, value);
    }

    /// The median of a column's runs.
    pub fn median(&self, column: Column) -> Option<f64> {
        stats::median(
            &self
                .runs
                .get(&column)?
                .values()
                .copied()
                .collect::<Vec<_>>(),
        )
    }

    /// secsock's figure over the baseline's in each run that has both, in run order.
    pub fn run_ratios(&self, against: Column) -> Vec<f64> {
        let (Some(ours), Some(theirs)) = (self.runs.get(&Column::Secsock), self.runs.get(&against))
        else {
            return Vec::new();
        };
        ours.iter()
            .filter_map(|(run, &v)| stats::ratio(Some(v), theirs.get(run).copied()))
            .collect()
    }

    /// The ratio to a baseline: the median of the runs' own ratios. Every run measures
    /// every stack, by turns, so each run's ratio compares figures taken under the same
    /// conditions; the median of those pairs is not moved by the machine's drift between
    /// runs, which the ratio of the two columns' medians (taken from different runs) is.
    pub fn ratio(&self, against: Column) -> Option<f64> {
        stats::median(&self.run_ratios(against))
    }

    /// Every run's figure per column (null where a run has none), and secsock's ratio to
    /// each baseline in each run (`secsock/rustls`, ...), for the JSON output.
    fn per_run(&self, runs: usize) -> BTreeMap<String, Vec<Option<f64>>> {
        let runs = runs.max(
            self.runs
                .values()
                .filter_map(|r| r.keys().max())
                .max()
                .map_or(0, |m| m + 1),
        );
        let mut out: BTreeMap<String, Vec<Option<f64>>> = self
            .runs
            .iter()
            .map(|(c, r)| {
                (
                    c.name().to_string(),
                    (0..runs).map(|i| r.get(&i).copied()).collect(),
                )
            })
            .collect();
        for against in self.runs.keys().filter(|&&c| c != Column::Secsock) {
            let theirs = &self.runs[against];
            let ratios = (0..runs)
                .map(|i| {
                    let ours = self.runs.get(&Column::Secsock)?.get(&i).copied();
                    stats::ratio(ours, theirs.get(&i).copied()).map(|r| round(r, 4))
                })
                .collect();
            out.insert(format!("secsock/{}", against.name()), ratios);
        }
        out
    }

    /// The result row of the JSON output.
    pub fn row(&self) -> ResultRow {
        let value = |c| self.median(c).map(|v| round(v, decimals(self.unit)));
        ResultRow {
            measure: self.name.clone(),
            unit: self.unit,
            secsock: value(Column::Secsock),
            rustls: value(Column::Rustls),
            openssl: value(Column::Openssl),
            tcp: value(Column::Tcp),
            ratio_vs_rustls: self.ratio(Column::Rustls).map(|r| round(r, 3)),
            ratio_vs_openssl: self.ratio(Column::Openssl).map(|r| round(r, 3)),
        }
    }

    /// Each target checked against the ratio (the median of the runs' ratios).
    pub fn checks(&self) -> Vec<TargetCheck> {
        self.targets
            .iter()
            .map(|t| {
                let ratio = self.ratio(t.against);
                let met = ratio.map(|r| match self.better {
                    Better::Higher => r >= t.ratio,
                    Better::Lower => r <= t.ratio,
                });
                let op = match self.better {
                    Better::Higher => ">=",
                    Better::Lower => "<=",
                };
                TargetCheck {
                    measure: self.name.clone(),
                    against: t.against,
                    wanted: format!("secsock/{} {op} {:.3}", t.against.name(), t.ratio),
                    aim: t.aim,
                    ratio: ratio.map(|r| round(r, 3)),
                    met,
                }
            })
            .collect()
    }
}

/// Decimals shown for a unit.
fn decimals(unit: &str) -> i32 {
    match unit {
        "us" => 1,
        _ => 0,
    }
}

/// `x` rounded to `digits` decimals.
pub fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// The JSON object, serialized field by field so that its keys keep this order.
#[derive(Serialize)]
struct Document<'a> {
    machine: &'a Machine,
    results: Vec<ResultRow>,
    command: &'a str,
    quick: bool,
    runs: usize,
    sizes: &'a BTreeMap<String, serde_json::Value>,
    targets: Vec<TargetCheck>,
    per_run: BTreeMap<&'a str, BTreeMap<String, Vec<Option<f64>>>>,
    cpu_per_operation: BTreeMap<&'a str, serde_json::Map<String, serde_json::Value>>,
    negotiated: &'a BTreeMap<String, String>,
    cpu: Option<&'a CpuUse>,
    failures: &'a [String],
    notes: Vec<String>,
}

/// One entry of `results`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResultRow {
    pub measure: String,
    pub unit: &'static str,
    pub secsock: Option<f64>,
    pub rustls: Option<f64>,
    pub openssl: Option<f64>,
    pub tcp: Option<f64>,
    pub ratio_vs_rustls: Option<f64>,
    pub ratio_vs_openssl: Option<f64>,
}

/// One target, checked.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub measure: String,
    pub against: Column,
    /// e.g. `secsock/rustls >= 1.100`.
    pub wanted: String,
    /// An aim rather than a requirement.
    pub aim: bool,
    /// The median of the runs' ratios (None when the baseline has no figure).
    pub ratio: Option<f64>,
    /// None when it cannot be checked.
    pub met: Option<bool>,
}

/// Everything `all` reports.
#[derive(Clone, Debug)]
pub struct Report {
    pub machine: Machine,
    pub command: String,
    pub quick: bool,
    pub runs: usize,
    /// The sizes and durations used, by name.
    pub sizes: BTreeMap<String, serde_json::Value>,
    pub measures: Vec<Measure>,
    /// What each endpoint negotiated, by "group/stack/side", from the first run.
    pub negotiated: BTreeMap<String, String>,
    /// Failures seen while measuring (a figure with failures is still reported).
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub cpu: Option<CpuUse>,
}

impl Report {
    /// The `results` array.
    pub fn rows(&self) -> Vec<ResultRow> {
        self.measures.iter().map(Measure::row).collect()
    }

    /// Every target of every measure.
    pub fn checks(&self) -> Vec<TargetCheck> {
        self.measures.iter().flat_map(Measure::checks).collect()
    }

    /// The one JSON object, as a value (for tests; the output is [`Report::to_json_text`]).
    #[cfg(test)]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.document()).unwrap_or_default()
    }

    /// The JSON object as text, its keys in the agreed order (`machine`, `results`, then
    /// the details; each result's keys as the issue lists them).
    pub fn to_json_text(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&self.document())
    }

    fn document(&self) -> Document<'_> {
        let per_run = self
            .measures
            .iter()
            .map(|m| (m.name.as_str(), m.per_run(self.runs)))
            .collect();
        let mut notes = self.notes.clone();
        for m in &self.measures {
            notes.extend(m.notes.iter().map(|n| format!("{}: {n}", m.name)));
        }
        let mut cpu_per_operation = BTreeMap::new();
        for m in self.measures.iter().filter(|m| !m.cpu.is_empty()) {
            let mut entry = serde_json::Map::new();
            entry.insert("unit".into(), m.cpu_unit.unwrap_or("").into());
            for column in m.cpu.keys() {
                if let Some([client, server]) = m.cpu_median(*column) {
                    entry.insert(
                        column.name().into(),
                        serde_json::json!({"client": round(client, 1), "server": round(server, 1)}),
                    );
                }
            }
            cpu_per_operation.insert(m.name.as_str(), entry);
        }
        Document {
            machine: &self.machine,
            results: self.rows(),
            command: &self.command,
            quick: self.quick,
            runs: self.runs,
            sizes: &self.sizes,
            targets: self.checks(),
            per_run,
            cpu_per_operation,
            negotiated: &self.negotiated,
            cpu: self.cpu.as_ref(),
            failures: &self.failures,
            notes,
        }
    }

    /// The human table, with the machine, the targets and the notes.
    pub fn to_table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        out.push_str(&format!("command: {}\n", self.command));
        out.push_str(&format!(
            "machine: {}; {}\n",
            m.summary(),
            m.openssl_version.as_deref().unwrap_or("no openssl command"),
        ));
        out.push_str(&format!(
            "each figure: the median of {} runs{}\n\n",
            self.runs,
            if self.quick { " (--quick sizes)" } else { "" }
        ));
        let headers = [
            "measure", "unit", "secsock", "rustls", "openssl", "tcp", "/rustls", "/openssl",
            "targets",
        ];
        let mut lines: Vec<[String; 9]> = Vec::new();
        for measure in &self.measures {
            let row = measure.row();
            let value = |v: Option<f64>| match v {
                Some(v) => format_value(v, row.unit),
                None => "-".to_string(),
            };
            let ratio = |r: Option<f64>| r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "-".into());
            let targets = measure
                .checks()
                .iter()
                .map(|c| {
                    let verdict = match c.met {
                        Some(true) => "met",
                        Some(false) if c.aim => "short",
                        Some(false) => "MISSED",
                        None => "n/a",
                    };
                    let op = if measure.better == Better::Higher {
                        ">="
                    } else {
                        "<="
                    };
                    let bound = measure
                        .targets
                        .iter()
                        .find(|t| t.against == c.against)
                        .map(|t| t.ratio)
                        .unwrap_or(f64::NAN);
                    format!("{}{op}{bound:.2} {verdict}", c.against.name())
                })
                .collect::<Vec<_>>()
                .join(", ");
            lines.push([
                row.measure.clone(),
                row.unit.to_string(),
                value(row.secsock),
                value(row.rustls),
                value(row.openssl),
                value(row.tcp),
                ratio(row.ratio_vs_rustls),
                ratio(row.ratio_vs_openssl),
                targets,
            ]);
        }
        let mut widths = headers.map(str::len);
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let render = |cells: &[String]| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths.iter()).enumerate() {
                if i == 0 || i == 1 || i == 8 {
                    s.push_str(&format!("{cell:<w$}"));
                } else {
                    s.push_str(&format!("{cell:>w$}"));
                }
                if i + 1 < cells.len() {
                    s.push_str("  ");
                }
            }
            s.trim_end().to_string() + "\n"
        };
        out.push_str(&render(&headers.map(String::from)));
        for line in &lines {
            out.push_str(&render(line));
        }
        out.push_str(
            "\nratios are secsock / baseline, the median of the runs' own ratios (not the ratio of the \
             medians shown): above 1 is better for MiB/s and hs/s, below 1 for us and bytes\n",
        );
        let with_cpu: Vec<&Measure> = self.measures.iter().filter(|m| !m.cpu.is_empty()).collect();
        if !with_cpu.is_empty() {
            out.push_str(
                "\nCPU per operation, client / server (medians; each process's own CPU time):\n",
            );
            for m in with_cpu {
                let figures: Vec<String> = m
                    .cpu
                    .keys()
                    .filter_map(|c| {
                        let [client, server] = m.cpu_median(*c)?;
                        Some(format!("{} {client:.0} / {server:.0}", c.name()))
                    })
                    .collect();
                out.push_str(&format!(
                    "  {} ({}): {}\n",
                    m.name,
                    m.cpu_unit.unwrap_or(""),
                    figures.join(", ")
                ));
            }
        }
        if !self.negotiated.is_empty() {
            out.push_str("\nnegotiated (first run, as each endpoint reports it):\n");
            for (value, keys) in group_by_value(&self.negotiated) {
                out.push_str(&format!("  {value}: {}\n", keys.join(", ")));
            }
        }
        let mut notes = self.notes.clone();
        for m in &self.measures {
            notes.extend(m.notes.iter().map(|n| format!("{}: {n}", m.name)));
        }
        if !notes.is_empty() {
            out.push_str("\nnotes:\n");
            for note in &notes {
                out.push_str(&format!("  - {note}\n"));
            }
        }
        if let Some(cpu) = &self.cpu {
            out.push_str(&format!(
                "\nCPU during the run ({:.0} s, % of all cores): machine busy {:.1} %: the benchmark's processes {:.1} %, interrupt handling {:.1} %, everything else {:.1} %\n",
                cpu.seconds,
                cpu.machine_busy_percent,
                cpu.benchmark_percent,
                cpu.interrupts_percent,
                cpu.other_percent
            ));
        }
        if !self.failures.is_empty() {
            out.push_str("\nfailures:\n");
            for f in &self.failures {
                out.push_str(&format!("  - {f}\n"));
            }
        }
        out
    }
}

/// The keys of `map` grouped by equal values, in the order of each value's first key.
fn group_by_value(map: &BTreeMap<String, String>) -> Vec<(&str, Vec<&str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (key, value) in map {
        match groups.iter_mut().find(|(v, _)| *v == value.as_str()) {
            Some((_, keys)) => keys.push(key),
            None => groups.push((value, vec![key])),
        }
    }
    groups
}

/// A figure as the table shows it.
fn format_value(v: f64, unit: &str) -> String {
    match decimals(unit) {
        0 => format!("{v:.0}"),
        d => format!("{v:.prec$}", prec = d as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpu_model: "Test CPU".into(),
            cores: 2,
            available_parallelism: 2,
            kernel: "6.0".into(),
            memory_bytes: Some(1 << 30),
            rustls_version: "0.23.0".into(),
            tokio_rustls_version: "0.26.0".into(),
            aws_lc_rs_version: "1.0.0".into(),
            tokio_version: "1.0.0".into(),
            openssl_version: Some("OpenSSL 3.0.0".into()),
        }
    }

    fn report() -> Report {
        let mut bulk = Measure::new("bulk_16KiB_blocking", "MiB/s", Better::Higher)
            .target(Column::Rustls, 1.0)
            .aim(Column::Tcp, 0.85)
            .target(Column::Openssl, 1.0);
        for (run, (s, r, o, t)) in [
            (10.0, 10.0, 8.0, 20.0),
            (12.0, 9.0, 8.0, 20.0),
            (11.0, 10.0, 9.0, 22.0),
        ]
        .into_iter()
        .enumerate()
        {
            bulk.record(Column::Secsock, run, s);
            bulk.record(Column::Rustls, run, r);
            bulk.record(Column::Openssl, run, o);
            bulk.record(Column::Tcp, run, t);
        }
        bulk = bulk.with_cpu("ns/KiB");
        bulk.record_cpu(Column::Secsock, 300.0, 500.0);
        bulk.record_cpu(Column::Secsock, 310.0, 520.0);
        bulk.record_cpu(Column::Secsock, 320.0, 480.0);
        let mut rtt =
            Measure::new("rtt_p50", "us", Better::Lower).target(Column::Rustls, 1.0 / 0.97);
        rtt.record(Column::Secsock, 0, 21.0);
        rtt.record(Column::Rustls, 0, 20.0);
        Report {
            machine: machine(),
            command: "secsock-bench all".into(),
            quick: false,
            runs: 3,
            sizes: BTreeMap::new(),
            measures: vec![bulk, rtt],
            negotiated: [
                ("bulk/rustls", "client A; server A"),
                ("bulk/openssl", "client B; server not reported"),
                ("bulk/secsock", "client A; server A"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            failures: Vec::new(),
            notes: vec!["a note".into()],
            cpu: None,
        }
    }

    #[test]
    fn ratios_pair_the_figures_of_the_same_run() {
        let mut m = Measure::new("handshakes", "hs/s", Better::Higher);
        // Run 1 lost its rustls figure; run 3 its secsock figure.
        for (run, s, r) in [
            (0, Some(100.0), Some(100.0)),
            (1, Some(80.0), None),
            (2, Some(90.0), Some(100.0)),
            (3, None, Some(50.0)),
            (4, Some(99.0), Some(90.0)),
        ] {
            if let Some(s) = s {
                m.record(Column::Secsock, run, s);
            }
            if let Some(r) = r {
                m.record(Column::Rustls, run, r);
            }
        }
        assert_eq!(m.run_ratios(Column::Rustls), vec![1.0, 0.9, 1.1]);
        assert_eq!(m.ratio(Column::Rustls), Some(1.0));
        assert_eq!(m.ratio(Column::Openssl), None);
        let per_run = m.per_run(5);
        assert_eq!(
            per_run["rustls"],
            vec![Some(100.0), None, Some(100.0), Some(50.0), Some(90.0)]
        );
        assert_eq!(
            per_run["secsock/rustls"],
            vec![Some(1.0), None, Some(0.9), None, Some(1.1)]
        );
    }

    #[test]
    fn the_json_has_machine_and_results_of_exactly_the_agreed_shape() {
        let json = report().to_json();
        let machine = json["machine"].as_object().unwrap();
        for key in [
            "cpu_model",
            "cores",
            "kernel",
            "rustls_version",
            "openssl_version",
        ] {
            assert!(machine.contains_key(key), "machine.{key}");
        }
        let results = json["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        let keys = [
            "measure",
            "unit",
            "secsock",
            "rustls",
            "openssl",
            "tcp",
            "ratio_vs_rustls",
            "ratio_vs_openssl",
        ];
        for result in results {
            let object = result.as_object().unwrap();
            let mut have: Vec<&str> = object.keys().map(String::as_str).collect();
            have.sort_unstable();
            let mut want = keys.to_vec();
            want.sort_unstable();
            assert_eq!(have, want);
        }
        let bulk = &results[0];
        assert_eq!(bulk["measure"], "bulk_16KiB_blocking");
        assert_eq!(bulk["unit"], "MiB/s");
        assert_eq!(bulk["secsock"], 11.0);
        assert_eq!(bulk["rustls"], 10.0);
        assert_eq!(bulk["openssl"], 8.0);
        assert_eq!(bulk["tcp"], 20.0);
        // Medians of the runs' own ratios: 10/10, 12/9, 11/10 and 10/8, 12/8, 11/9 (the
        // ratio of the medians shown, 11/8, would be 1.375).
        assert_eq!(bulk["ratio_vs_rustls"], 1.1);
        assert_eq!(bulk["ratio_vs_openssl"], 1.25);
        let rtt = &results[1];
        assert!(rtt["openssl"].is_null() && rtt["tcp"].is_null());
        assert!(rtt["ratio_vs_openssl"].is_null());
        assert_eq!(rtt["ratio_vs_rustls"], 1.05);
        assert_eq!(json["per_run"]["bulk_16KiB_blocking"]["secsock"][1], 12.0);
        // The text keeps the agreed order of keys.
        let text = report().to_json_text().unwrap();
        let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
        assert!(at("machine") < at("results") && at("results") < at("command"));
        let order = keys.map(at);
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        let cpu = &json["cpu_per_operation"]["bulk_16KiB_blocking"];
        assert_eq!(cpu["unit"], "ns/KiB");
        assert_eq!(cpu["secsock"]["client"], 310.0);
        assert_eq!(cpu["secsock"]["server"], 500.0);
        assert!(json["cpu_per_operation"]["rtt_p50"].is_null());
    }

    #[test]
    fn targets_respect_the_direction_of_each_measure() {
        let checks = report().checks();
        let find = |m: &str, c: Column| {
            checks
                .iter()
                .find(|x| x.measure == m && x.against == c)
                .unwrap()
                .clone()
        };
        assert_eq!(find("bulk_16KiB_blocking", Column::Rustls).met, Some(true));
        let tcp = find("bulk_16KiB_blocking", Column::Tcp);
        assert_eq!((tcp.met, tcp.aim), (Some(false), true));
        assert_eq!(find("bulk_16KiB_blocking", Column::Openssl).met, Some(true));
        // 21 us against 20 us is 1.05 > 1/0.97: missed.
        assert_eq!(find("rtt_p50", Column::Rustls).met, Some(false));
    }

    #[test]
    fn the_table_lists_every_measure_with_its_verdicts() {
        let table = report().to_table();
        assert!(table.contains("machine: Test CPU, 2 cores"), "{table}");
        assert!(table.contains("OpenSSL 3.0.0"));
        let bulk = table
            .lines()
            .find(|l| l.starts_with("bulk_16KiB_blocking"))
            .unwrap();
        assert!(bulk.contains("rustls>=1.00 met"), "{bulk}");
        assert!(bulk.contains("tcp>=0.85 short"), "{bulk}");
        let rtt = table.lines().find(|l| l.starts_with("rtt_p50")).unwrap();
        assert!(rtt.contains("21.0") && rtt.contains("MISSED"), "{rtt}");
        assert!(table.contains("a note"));
        assert!(
            table.contains("  bulk_16KiB_blocking (ns/KiB): secsock 310 / 500\n"),
            "{table}"
        );
        assert!(
            table.contains("  client A; server A: bulk/rustls, bulk/secsock\n"),
            "{table}"
        );
        assert!(table.contains("  client B; server not reported: bulk/openssl\n"));
    }
}
