//! Records the versions of the TLS stack the benchmark was built with (from the
//! workspace's Cargo.lock), so that every report says what it measured.

use std::path::PathBuf;

/// Packages whose resolved versions the report names.
const PACKAGES: &[(&str, &str)] = &[
    ("rustls", "BENCH_RUSTLS_VERSION"),
    ("tokio-rustls", "BENCH_TOKIO_RUSTLS_VERSION"),
    ("aws-lc-rs", "BENCH_AWS_LC_RS_VERSION"),
    ("tokio", "BENCH_TOKIO_VERSION"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let lock = manifest_dir.join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for (package, var) in PACKAGES {
        let version = locked_version(&text, package).unwrap_or_else(|| "unknown".to_string());
        println!("cargo:rustc-env={var}={version}");
    }
}

/// The version of the first `[[package]]` named `name` in a Cargo.lock text.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim();
            return version
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string);
        }
    }
    None
}
