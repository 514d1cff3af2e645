//! What the benchmark's processes know about the machine and themselves: the machine's
//! description for reports, a process's resident memory, a clock shared by processes,
//! and the file-descriptor limit that bounds how many connections one process can hold.
//! Everything is read from /proc or through rustix's safe system-call wrappers.
//!
//! Not here: anything about TLS or connections (see `load`).

use std::fs;

use anyhow::{bail, Context};
use rustix::process::{geteuid, getrlimit, setrlimit, Resource, Rlimit};
use serde::{Deserialize, Serialize};

/// File descriptors each process keeps for things other than the connections it holds:
/// the listener, the runtime's epoll and wake-up descriptors, stdio, the pipes between
/// the processes, /proc reads, shared libraries.
pub const FD_RESERVE: u64 = 256;

/// Where and with what a report was produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` of the first processor in /proc/cpuinfo.
    pub cpu_model: String,
    /// Processors listed in /proc/cpuinfo.
    pub cores: usize,
    /// Processors this process may run on (affinity and cgroup quota respected).
    pub available_parallelism: usize,
    /// /proc/sys/kernel/osrelease.
    pub kernel: String,
    /// MemTotal from /proc/meminfo, in bytes.
    pub memory_bytes: Option<u64>,
    /// The resolved versions of the TLS stack (from Cargo.lock at build time).
    pub rustls_version: String,
    /// tokio-rustls, the baseline's async front end.
    pub tokio_rustls_version: String,
    /// aws-lc-rs, the crypto provider of both stacks.
    pub aws_lc_rs_version: String,
    /// tokio.
    pub tokio_version: String,
    /// The system's OpenSSL, the `openssl` command's `openssl version` (None if absent).
    pub openssl_version: Option<String>,
}

impl Machine {
    /// One line for a report: the CPU, cores, kernel, memory and the TLS stack's versions.
    pub fn summary(&self) -> String {
        format!(
            "{}, {} cores ({} usable), Linux {}, {} GiB; rustls {} + aws-lc-rs {}, tokio-rustls {}, tokio {}",
            self.cpu_model,
            self.cores,
            self.available_parallelism,
            self.kernel,
            self.memory_bytes.map(|b| b / (1 << 30)).unwrap_or(0),
            self.rustls_version,
            self.aws_lc_rs_version,
            self.tokio_rustls_version,
            self.tokio_version,
        )
    }

    /// Reads the description of this machine. Missing /proc entries become "unknown"
    /// rather than failing the benchmark.
    pub fn describe() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let cores = cpuinfo
            .lines()
            .filter(|line| line.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        let memory_bytes = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| kib_field(&text, "MemTotal:"));
        Self {
            cpu_model,
            cores,
            available_parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel,
            memory_bytes,
            rustls_version: env!("BENCH_RUSTLS_VERSION").to_string(),
            tokio_rustls_version: env!("BENCH_TOKIO_RUSTLS_VERSION").to_string(),
            aws_lc_rs_version: env!("BENCH_AWS_LC_RS_VERSION").to_string(),
            tokio_version: env!("BENCH_TOKIO_VERSION").to_string(),
            openssl_version: openssl_version(),
        }
    }
}

/// The CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&cpu| set.is_set(cpu))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Restricts a thread to one CPU: `pid` None is the calling thread (threads it starts
/// later inherit the mask, so call it before starting any), else the process with that id
/// (its main thread).
pub fn pin_to_cpu(pid: Option<u32>, cpu: usize) -> anyhow::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let pid = match pid {
        Some(raw) => Some(
            i32::try_from(raw)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .with_context(|| format!("{raw} is not a process id"))?,
        ),
        None => None,
    };
    rustix::thread::sched_setaffinity(pid, &set).with_context(|| {
        format!(
            "pinning {} to CPU {cpu}",
            pid.map_or("this process".to_string(), |p| p
                .as_raw_nonzero()
                .to_string())
        )
    })
}

/// The first line of `openssl version`, e.g. `OpenSSL 3.0.19 27 Jan 2026 (Library: ...)`.
fn openssl_version() -> Option<String> {
    let out = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_string())
}

/// CPU time counters at one moment: the whole machine's (/proc/stat) and this process's
/// own plus its waited-for children's (/proc/self/stat), all in clock ticks. Two samples
/// tell how much of the machine's busy time during a benchmark was not the benchmark's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// Busy ticks of all CPUs: user, nice, system, irq, softirq, steal.
    pub machine_busy: u64,
    /// Of those, irq and softirq: interrupt handling, which on loopback is mostly the
    /// network stack working for whoever sends, and is charged to no process.
    pub machine_interrupts: u64,
    /// All ticks of all CPUs: busy plus idle and iowait.
    pub machine_total: u64,
    /// utime + stime + cutime + cstime of this process (children count once waited for).
    pub own: u64,
    /// utime + stime of this process alone.
    pub own_self: u64,
}

impl CpuSample {
    /// Reads the counters now (zeros where /proc cannot be read).
    pub fn now() -> Self {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/stat").unwrap_or_default();
        Self::parse(&stat, &own).unwrap_or_default()
    }

    /// Parses /proc/stat's `cpu` line and /proc/self/stat.
    fn parse(proc_stat: &str, self_stat: &str) -> Option<Self> {
        let cpu = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| fields.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let machine_busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
        let machine_total = machine_busy + at(3) + at(4);
        let machine_interrupts = at(5) + at(6);
        // After the command name in parentheses: state is field 3, utime field 14.
        let rest = &self_stat[self_stat.rfind(')')? + 1..];
        let own_fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let field = |n: usize| own_fields.get(n - 3).copied().unwrap_or(0);
        let own_self = field(14) + field(15);
        let own = own_self + field(16) + field(17);
        Some(Self {
            own_self,
            machine_busy,
            machine_interrupts,
            machine_total,
            own,
        })
    }
}

/// How busy the machine was between two [`CpuSample`]s, in percent of all its CPU time.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CpuUse {
    /// Wall time covered, in seconds.
    pub seconds: f64,
    /// The whole machine's busy share.
    pub machine_busy_percent: f64,
    /// The benchmark's own processes (this one and its children).
    pub benchmark_percent: f64,
    /// Interrupt handling (irq, softirq), charged to no process: on loopback mostly the
    /// network stack carrying the benchmark's own traffic.
    pub interrupts_percent: f64,
    /// Everything else: other processes, what disturbed the measurement.
    pub other_percent: f64,
}

impl CpuUse {
    /// The use between `before` and `after`, `seconds` apart.
    pub fn between(before: CpuSample, after: CpuSample, seconds: f64) -> Self {
        let total = after
            .machine_total
            .saturating_sub(before.machine_total)
            .max(1) as f64;
        let busy = after.machine_busy.saturating_sub(before.machine_busy) as f64;
        let own = after.own.saturating_sub(before.own) as f64;
        let interrupts = after
            .machine_interrupts
            .saturating_sub(before.machine_interrupts) as f64;
        let percent = |x: f64| (x / total * 1000.0).round() / 10.0;
        Self {
            seconds,
            machine_busy_percent: percent(busy),
            benchmark_percent: percent(own),
            interrupts_percent: percent(interrupts),
            other_percent: percent((busy - own - interrupts).max(0.0)),
        }
    }
}

/// A `Key:   1234 kB` field of a /proc status-style text, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(key))?;
    let mut parts = line[key.len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// This process's resident set size (VmRSS of /proc/self/status), in bytes.
pub fn rss_bytes() -> anyhow::Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    kib_field(&status, "VmRSS:").context("/proc/self/status has no VmRSS line")
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine, so that
/// the client process's first connect and the server's last handshake can be compared.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// CPU time this process has used so far, all threads, user and system, in nanoseconds
/// (CLOCK_PROCESS_CPUTIME_ID).
///
/// Under valgrind (which cannot run rustix's direct vDSO call: the process crashes) it is
/// read from /proc/self/stat instead, in steps of one clock tick (10 ms).
pub fn process_cpu_ns() -> u64 {
    static UNDER_VALGRIND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let valgrind = *UNDER_VALGRIND.get_or_init(|| {
        std::env::var("LD_PRELOAD").is_ok_and(|preload| preload.contains("vgpreload"))
    });
    if valgrind {
        let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
        return CpuSample::parse("cpu  0\n", &stat)
            .map(|s| s.own_self * 10_000_000)
            .unwrap_or(0);
    }
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// The open-file limit in force after [`raise_fd_limit`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct FdLimit {
    /// The soft limit (what `open`/`accept` are held to).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit, and, when running as root
/// and the hard limit is too low, tries to raise the hard limit to `connections + 1024`
/// (keeping the old one if the kernel refuses). Fails, with the numbers, when
/// `connections` plus [`FD_RESERVE`] still do not fit.
pub fn raise_fd_limit(connections: u64) -> anyhow::Result<FdLimit> {
    let needed = connections.saturating_add(FD_RESERVE);
    let old = getrlimit(Resource::Nofile);
    let mut hard = old.maximum;
    let mut refused = None;
    if hard.is_some_and(|h| h < needed) && geteuid().is_root() {
        let wanted = connections.saturating_add(1024);
        let raised = Rlimit {
            current: Some(wanted),
            maximum: Some(wanted),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => hard = Some(wanted),
            Err(e) => refused = Some((wanted, e)),
        }
    }
    // An unlimited hard limit (never seen for NOFILE in practice) is still bounded by
    // fs.nr_open; ask for what is needed then.
    let soft_wanted = hard.unwrap_or(needed.max(old.current.unwrap_or(0)));
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft_wanted),
            maximum: hard,
        },
    );
    let now = getrlimit(Resource::Nofile);
    let limit = FdLimit {
        soft: now.current.unwrap_or(u64::MAX),
        hard: now.maximum.unwrap_or(u64::MAX),
    };
    if limit.soft < needed {
        let why = match refused {
            Some((wanted, e)) => {
                let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
                    .map(|n| n.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into());
                format!(
                    "raising the hard limit to {wanted} as root failed: {e} (fs.nr_open is \
                     {nr_open}; without CAP_SYS_RESOURCE not even root may raise it)"
                )
            }
            None => "only root can raise the hard limit (ulimit -Hn)".to_string(),
        };
        bail!(
            "{connections} connections need {needed} open files in each process \
             ({connections} sockets + {FD_RESERVE} reserved), but RLIMIT_NOFILE is {} \
             (hard limit {}) and {why}; use --connections {} or fewer",
            limit.soft,
            limit.hard,
            limit.soft.saturating_sub(FD_RESERVE),
        );
    }
    Ok(limit)
}

/// Fails, with the numbers, when one client cannot open `connections` connections to one
/// server address because the ephemeral port range (net.ipv4.ip_local_port_range) is
/// smaller: each connection to the same address and port needs its own local port.
pub fn check_ephemeral_ports(connections: u64) -> anyhow::Result<()> {
    let Ok(text) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return Ok(());
    };
    let mut bounds = text.split_whitespace().map(str::parse::<u64>);
    if let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) {
        let ports = high.saturating_sub(low) + 1;
        if connections > ports {
            bail!(
                "{connections} connections to one server address need {connections} local \
                 ports, but net.ipv4.ip_local_port_range ({low}-{high}) has {ports}; use \
                 --connections {ports} or fewer"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_are_read_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  2048 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(1234 * 1024));
        assert_eq!(kib_field(status, "VmSwap:"), None);
        assert_eq!(kib_field("VmRSS:\t12 MB\n", "VmRSS:"), None);
    }

    #[test]
    fn cpu_counters_are_read_from_proc_stat_and_self_stat() {
        let proc_stat = "cpu  100 5 50 1000 10 3 2 1 0 0\ncpu0 50 2 25 500 5 1 1 0 0 0\n";
        let self_stat = "42 (secsock (bench)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 20 10 20 0 1 0";
        let s = CpuSample::parse(proc_stat, self_stat).unwrap();
        assert_eq!(s.machine_busy, 100 + 5 + 50 + 3 + 2 + 1);
        assert_eq!(s.machine_interrupts, 3 + 2);
        assert_eq!(s.machine_total, 161 + 1000 + 10);
        assert_eq!(s.own, 7 + 3 + 20 + 10);
        assert_eq!(s.own_self, 7 + 3);
        let later = CpuSample {
            own_self: s.own_self + 1,
            machine_busy: s.machine_busy + 150,
            machine_interrupts: s.machine_interrupts + 4,
            machine_total: s.machine_total + 200,
            own: s.own + 140,
        };
        let used = CpuUse::between(s, later, 1.0);
        assert_eq!(used.machine_busy_percent, 75.0);
        assert_eq!(used.benchmark_percent, 70.0);
        assert_eq!(used.interrupts_percent, 2.0);
        assert_eq!(used.other_percent, 3.0);
    }

    #[test]
    fn a_thread_can_be_pinned_to_an_allowed_cpu() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        std::thread::spawn(move || {
            pin_to_cpu(None, cpus[0]).unwrap();
            assert_eq!(allowed_cpus(), vec![cpus[0]]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn this_process_has_a_resident_set_and_a_clock() {
        assert!(rss_bytes().unwrap() > 0);
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a);
        let spent = process_cpu_ns();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_ns() > spent);
    }
}
