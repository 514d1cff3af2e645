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
}

impl Machine {
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
    fn this_process_has_a_resident_set_and_a_clock() {
        assert!(rss_bytes().unwrap() > 0);
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a);
    }
}
