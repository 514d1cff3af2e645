//! The `secsock` command, run as a user would: init, issue, serve, connect, query,
//! doctor, demo. Real processes, real TCP on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[path = "../../secsock/tests/support/flood.rs"]
mod flood;

fn secsock() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_secsock"));
    // Never discover the developer's own policy.
    cmd.env_remove("SECSOCK_POLICY")
        .env("XDG_CONFIG_HOME", "/nonexistent-secsock-test")
        .env("HOME", "/nonexistent-secsock-test");
    cmd
}

fn run(args: &[&str]) -> Output {
    secsock().args(args).output().expect("run secsock")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A trust domain made with `secsock init` (server identity) and `secsock issue` (client).
struct Domain {
    dir: tempfile::TempDir,
}

impl Domain {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca-host");
        let out = run(&[
            "init",
            "--dir",
            p(&ca),
            "--domain",
            "example.test",
            "--name",
            "host/server.example.test",
        ]);
        assert!(out.status.success(), "init: {}", text(&out.stderr));
        let d = Self { dir };
        d.issue("host/client.example.test", "client", &[]);
        d
    }

    fn server_policy(&self) -> PathBuf {
        self.dir.path().join("ca-host/policy.toml")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn issue(&self, principal: &str, out: &str, extra: &[&str]) -> PathBuf {
        let out_dir = self.path(out);
        let server_policy = self.server_policy();
        let mut args = vec![
            "issue",
            principal,
            "--policy",
            p(&server_policy),
            "--out",
            p(&out_dir),
        ];
        args.extend_from_slice(extra);
        let result = run(&args);
        assert!(result.status.success(), "issue: {}", text(&result.stderr));
        out_dir.join("policy.toml")
    }
}

/// `secsock serve`, killed on drop; its stdout lines arrive on `lines`.
struct Server {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(policy: &Path, extra: &[&str]) -> Server {
    let mut child = secsock()
        .args(["serve", "--policy", p(policy), "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (addr_tx, addr_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("secsock: listening on ") {
                let _ = addr_tx.send(addr.to_string());
            }
        }
    });
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve did not start");
    Server { child, addr, lines }
}

fn connect(policy: &Path, peer: &str, addr: &str, input: &[u8]) -> Output {
    connect_args(&["--policy", p(policy), "--peer-name", peer, addr], input)
}

/// `secsock connect ARGS` with `input` on its standard input (then closed); its output.
fn connect_args(args: &[&str], input: &[u8]) -> Output {
    let mut child = secsock()
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn help_is_available_for_every_command() {
    for cmd in [
        "", "demo", "init", "issue", "doctor", "serve", "connect", "query",
    ] {
        let args: Vec<&str> = if cmd.is_empty() {
            vec!["--help"]
        } else {
            vec![cmd, "--help"]
        };
        let out = run(&args);
        assert!(out.status.success(), "{cmd} --help");
        assert!(text(&out.stdout).contains("Usage:"), "{cmd} --help");
    }
}

#[test]
fn demo_prints_the_sample_lines_and_leaves_nothing_behind() {
    let out = run(&["demo"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        text(&out.stderr)
    );
    for line in [
        "Secure connection established to the server",
        "Sent 8 bytes of data to the server",
        "Received 8 bytes of data from the server",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing `{line}` in:\n{stdout}"
        );
    }
    assert!(stdout.contains("SECURED | ENCRYPTED"));
    assert!(stdout.contains("X25519MLKEM768 (post-quantum hybrid)"));
    assert!(stdout.contains("client proved: client.example.test"));
    assert!(
        stdout.contains("peer name mismatch: expected `host/other.example.test`"),
        "{stdout}"
    );
    let temp = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Creating a trust domain `example.test` in "))
        .and_then(|rest| rest.split(" (").next())
        .expect("the demo names its directory");
    assert!(!Path::new(temp).exists(), "{temp} was left behind");
}

#[test]
fn init_issue_serve_connect_round_trip_across_two_identities() {
    let domain = Domain::new();
    let server = serve(&domain.server_policy(), &[]);
    let out = connect(
        &domain.path("client/policy.toml"),
        "host/server.example.test",
        &server.addr,
        b"hello over secsock\n",
    );
    assert!(out.status.success(), "connect: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello over secsock\n");
    let line = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        line.contains("127.0.0.1:") && line.ends_with("secured: client.example.test"),
        "{line}"
    );

    // A larger input crosses intact (the client interleaves sending and receiving).
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = connect(
        &domain.path("client/policy.toml"),
        "server.example.test",
        &server.addr,
        &big,
    );
    assert!(out.status.success(), "connect: {}", text(&out.stderr));
    assert!(
        out.stdout == big,
        "echo of 3 MB differs ({} bytes back)",
        out.stdout.len()
    );
}

#[test]
fn connect_naming_the_wrong_peer_fails_with_both_names() {
    let domain = Domain::new();
    let server = serve(&domain.server_policy(), &[]);
    let out = connect(
        &domain.path("client/policy.toml"),
        "host/db.example.test",
        &server.addr,
        b"secret",
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("expected `host/db.example.test`") && err.contains("DNS:server.example.test"),
        "{err}"
    );
}

#[test]
fn query_json_has_the_documented_keys() {
    let domain = Domain::new();
    let server = serve(&domain.server_policy(), &["--json"]);
    let out = run(&[
        "query",
        "--policy",
        p(&domain.path("client/policy.toml")),
        "--peer-name",
        "host/server.example.test",
        "--json",
        &server.addr,
    ]);
    assert!(out.status.success(), "query: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["secured"], true);
    assert_eq!(v["encrypted"], true);
    assert_eq!(v["impersonated"], false);
    assert_eq!(
        v["peer_machine"]["names"],
        serde_json::json!(["server.example.test"])
    );
    assert!(v["peer_machine"]["not_before"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(v["peer_machine"]["not_after"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(v["peer_application"].is_null());
    assert_eq!(v["protocol_version"], "TLSv1.3");
    assert_eq!(v["cipher_suite"], "TLS13_AES_128_GCM_SHA256");
    assert_eq!(v["key_exchange_group"], "X25519MLKEM768");
    assert_eq!(v["resumed"], false);
    assert_eq!(v["session_id"].as_str().unwrap().len(), 32);
    assert_eq!(v["connection_id"].as_str().unwrap().len(), 32);
    assert!(v["negotiation_error"].is_null());
    // serve --json prints the server side's view, one object per line.
    let line = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    let s: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        s["peer_machine"]["names"],
        serde_json::json!(["client.example.test"])
    );
    assert!(s["peer_address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("domain");
    let args = ["init", "--dir", p(&target), "--domain", "example.test"];
    assert!(run(&args).status.success());
    let before = std::fs::read(target.join("ca/ca.crt")).unwrap();
    let again = run(&args);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read(target.join("ca/ca.crt")).unwrap(),
        before,
        "the CA was not touched"
    );
    let forced = run(&[
        "init",
        "--dir",
        p(&target),
        "--domain",
        "example.test",
        "--force",
    ]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_ne!(std::fs::read(target.join("ca/ca.crt")).unwrap(), before);
    let mode = std::fs::metadata(target.join("ca/ca.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn init_defaults_to_the_per_user_config_that_discovery_finds() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_secsock"))
        .args([
            "init",
            "--domain",
            "example.test",
            "--name",
            "host/server.example.test",
        ])
        .env_remove("SECSOCK_POLICY")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(home.path().join(".config/secsock/policy.toml").exists());
    // doctor with no --policy finds it.
    let doctor = Command::new(env!("CARGO_BIN_EXE_secsock"))
        .arg("doctor")
        .env_remove("SECSOCK_POLICY")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(doctor.status.success(), "{}", text(&doctor.stdout));
    assert!(text(&doctor.stdout).contains("healthy"));
}

#[test]
fn init_and_issue_report_what_they_wrote_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "init",
        "--dir",
        p(&dir.path().join("d")),
        "--domain",
        "example.test",
        "--algorithm",
        "ed25519",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["domain"], "example.test");
    let policy = PathBuf::from(v["policy"].as_str().unwrap());
    assert!(policy.exists() && Path::new(v["ca_private_key"].as_str().unwrap()).exists());
    assert!(v["principal"].as_str().unwrap().starts_with("host/"));
    let issued = run(&[
        "issue",
        "spiffe://example.test/api",
        "--policy",
        p(&policy),
        "--out",
        p(&dir.path().join("api")),
        "--json",
    ]);
    assert!(issued.status.success(), "{}", text(&issued.stderr));
    let v: serde_json::Value = serde_json::from_slice(&issued.stdout).unwrap();
    assert_eq!(v["principal"], "spiffe://example.test/api");
    for key in ["policy", "certificate", "private_key", "trust_anchor"] {
        assert!(Path::new(v[key].as_str().unwrap()).exists(), "{key}");
    }
    assert!(v["not_after"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn issue_covers_every_principal_form() {
    let domain = Domain::new();
    for (i, principal) in [
        "db.example.test",
        "http/web.example.test:8080",
        "192.0.2.7",
        "spiffe://example.test/ns/db",
        "user:alice@EXAMPLE.TEST",
    ]
    .iter()
    .enumerate()
    {
        let policy = domain.issue(principal, &format!("id{i}"), &[]);
        let doctor = run(&["doctor", "--policy", p(&policy)]);
        assert!(
            doctor.status.success(),
            "{principal}: {}",
            text(&doctor.stdout)
        );
    }
}

#[test]
fn policy_errors_name_file_line_and_key() {
    let domain = Domain::new();
    let client = domain.path("client/policy.toml");
    let original = std::fs::read_to_string(&client).unwrap();
    let query = |policy: &Path| {
        run(&[
            "query",
            "--policy",
            p(policy),
            "--peer-name",
            "server.example.test",
            "127.0.0.1:9",
        ])
    };

    let missing = query(&domain.path("nowhere/policy.toml"));
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("nowhere/policy.toml: cannot read the policy file"),
        "{}",
        text(&missing.stderr)
    );

    std::fs::write(&client, format!("{original}\n[defaults\n")).unwrap();
    let syntax = text(&query(&client).stderr);
    let line = original.lines().count() + 2;
    assert!(
        syntax.contains(&format!("policy.toml:{line}:")) && syntax.contains("TOML"),
        "{syntax}"
    );

    std::fs::write(
        &client,
        original.replace("handshake_timeout", "handshake_timout"),
    )
    .unwrap();
    let unknown = text(&query(&client).stderr);
    assert!(
        unknown.contains("unknown key `handshake_timout`"),
        "{unknown}"
    );

    std::fs::write(&client, &original).unwrap();
    let key = domain.path("client/identity/host.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mode = text(&query(&client).stderr);
    assert!(
        mode.contains("identity.private_key")
            && mode.contains("0644")
            && mode.contains("chmod 600"),
        "{mode}"
    );
}

// ---- doctor: each broken case on its own ----

fn doctor(policy: &Path, extra: &[&str]) -> (bool, String, serde_json::Value) {
    let mut args = vec!["doctor", "--policy", p(policy)];
    args.extend_from_slice(extra);
    let human = run(&args);
    let mut json_args = args.clone();
    json_args.push("--json");
    let json = run(&json_args);
    assert_eq!(human.status.success(), json.status.success());
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["healthy"], human.status.success());
    (human.status.success(), text(&human.stdout), value)
}

fn assert_finding(policy: &Path, extra: &[&str], problem: &str, fix: &str) {
    let (ok, human, json) = doctor(policy, extra);
    assert!(!ok, "doctor called this healthy:\n{human}");
    assert!(human.contains(problem), "no `{problem}` in:\n{human}");
    assert!(
        human.contains(&format!("fix: {fix}")) || human.contains(fix),
        "no fix `{fix}` in:\n{human}"
    );
    let findings = json["findings"].as_array().unwrap();
    assert!(findings
        .iter()
        .any(|f| f["problem"].as_str().unwrap().contains(problem)
            && !f["fix"].as_str().unwrap().is_empty()));
}

#[test]
fn doctor_says_healthy_and_exits_0() {
    let domain = Domain::new();
    for policy in [domain.server_policy(), domain.path("client/policy.toml")] {
        let (ok, human, json) = doctor(&policy, &[]);
        assert!(ok, "{human}");
        assert!(human.contains("healthy"));
        assert_eq!(json["findings"], serde_json::json!([]));
    }
}

#[test]
fn doctor_finds_a_missing_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_finding(
        &dir.path().join("policy.toml"),
        &[],
        "cannot read the policy file",
        "secsock init",
    );
}

#[test]
fn doctor_finds_a_missing_referenced_file() {
    let domain = Domain::new();
    std::fs::remove_file(domain.path("client/trust/ca.crt")).unwrap();
    assert_finding(
        &domain.path("client/policy.toml"),
        &[],
        "No such file",
        "correct the path",
    );
}

#[test]
fn doctor_finds_an_unreadable_file() {
    let domain = Domain::new();
    // A directory where the certificate should be cannot be read (even by root).
    let cert = domain.path("client/identity/host.crt");
    std::fs::remove_file(&cert).unwrap();
    std::fs::create_dir(&cert).unwrap();
    assert_finding(
        &domain.path("client/policy.toml"),
        &[],
        "Is a directory",
        "identity.certificate",
    );
}

#[test]
fn doctor_finds_a_key_readable_by_others() {
    let domain = Domain::new();
    let key = domain.path("client/identity/host.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_finding(
        &domain.path("client/policy.toml"),
        &[],
        "0644",
        &format!("chmod 600 {}", key.display()),
    );
}

#[test]
fn doctor_finds_a_key_that_does_not_match_the_certificate() {
    let domain = Domain::new();
    domain.issue("host/other.example.test", "other", &[]);
    std::fs::copy(
        domain.path("other/identity/host.key"),
        domain.path("client/identity/host.key"),
    )
    .unwrap();
    assert_finding(
        &domain.path("client/policy.toml"),
        &[],
        "is not the private key of the certificate",
        "key that belongs",
    );
}

#[test]
fn doctor_finds_a_chain_that_does_not_lead_to_an_anchor() {
    let domain = Domain::new();
    let stranger = Domain::new();
    std::fs::copy(
        stranger.path("ca-host/ca/ca.crt"),
        domain.path("client/trust/ca.crt"),
    )
    .unwrap();
    assert_finding(
        &domain.path("client/policy.toml"),
        &[],
        "does not lead to any of the policy's trust anchors",
        "[trust] anchors",
    );
}

#[test]
fn doctor_finds_an_expired_certificate() {
    let domain = Domain::new();
    let policy = domain.issue("host/short.example.test", "short", &["--days", "1"]);
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_finding(
        &policy,
        &["--at", &later],
        "the identity certificate expired at",
        "secsock issue",
    );
}

#[test]
fn doctor_finds_a_certificate_expiring_within_7_days() {
    let domain = Domain::new();
    let policy = domain.issue("host/short.example.test", "short", &["--days", "3"]);
    assert_finding(&policy, &[], "expires within 7 days", "secsock issue");
}

#[test]
fn doctor_finds_a_certificate_not_yet_valid() {
    let domain = Domain::new();
    assert_finding(
        &domain.path("client/policy.toml"),
        &["--at", "2001-01-01T00:00:00Z"],
        "is not valid until",
        "clock",
    );
}

#[test]
fn doctor_finds_a_certificate_without_principal_names() {
    let domain = Domain::new();
    // Made with openssl from the domain's CA: a certificate with no SAN at all.
    let dir = domain.path("client/identity");
    let ca = domain.path("ca-host/ca");
    let key = dir.join("host.key");
    let csr = dir.join("bare.csr");
    // An X.509 v3 certificate with extensions, but no subjectAltName.
    let v3 = dir.join("v3.cnf");
    std::fs::write(
        &v3,
        "[v3]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth,clientAuth\n",
    )
    .unwrap();
    let ok = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-key",
            p(&key),
            "-subj",
            "/CN=bare",
            "-out",
            p(&csr),
        ])
        .status()
        .unwrap()
        .success()
        && Command::new("openssl")
            .args([
                "x509",
                "-req",
                "-in",
                p(&csr),
                "-CA",
                p(&ca.join("ca.crt")),
                "-CAkey",
                p(&ca.join("ca.key")),
                "-set_serial",
                "77",
                "-days",
                "30",
                "-out",
                p(&dir.join("host.crt")),
                "-extfile",
                p(&v3),
                "-extensions",
                "v3",
            ])
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl failed");
    assert_finding(
        &domain.path("client/policy.toml"),
        &[],
        "proves no principal name",
        "secsock issue",
    );
}

/// A CRL of the domain's CA made by `openssl ca -gencrl`, current for `hours` from now,
/// written as `client/trust/ca.crl` and named in the client's `[trust]` (with `extra`).
fn client_with_crl(domain: &Domain, hours: u32, extra: &str) -> PathBuf {
    let work = domain.path("crl-work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("index.txt"), "").unwrap();
    std::fs::write(work.join("crlnumber"), "01\n").unwrap();
    let config = work.join("ca.cnf");
    std::fs::write(
        &config,
        format!(
            "[ca]\ndefault_ca = ca_default\n[ca_default]\ndatabase = {}\ncrlnumber = {}\ndefault_md = sha256\n",
            work.join("index.txt").display(),
            work.join("crlnumber").display()
        ),
    )
    .unwrap();
    let ca = domain.path("ca-host/ca");
    let crl = domain.path("client/trust/ca.crl");
    let hours = hours.to_string();
    let out = Command::new("openssl")
        .args(["ca", "-gencrl", "-config", p(&config), "-crlhours", &hours])
        .args([
            "-keyfile",
            p(&ca.join("ca.key")),
            "-cert",
            p(&ca.join("ca.crt")),
        ])
        .args(["-out", p(&crl)])
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl ca: {}", text(&out.stderr));
    let policy = domain.path("client/policy.toml");
    let body: Vec<String> = std::fs::read_to_string(&policy)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("expired_crls"))
        .map(|line| match line.starts_with("crls = ") {
            true => format!("crls = [\"trust/ca.crl\"]\n{extra}"),
            false => line.to_string(),
        })
        .collect();
    std::fs::write(&policy, body.join("\n")).unwrap();
    policy
}

fn in_days(days: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn doctor_finds_a_crl_expiring_within_7_days() {
    let domain = Domain::new();
    let policy = client_with_crl(&domain, 1, "");
    assert_finding(&policy, &[], "expires within 7 days", "fresh CRL");
}

#[test]
fn doctor_finds_an_expired_crl_and_says_what_secsock_does_with_it() {
    let domain = Domain::new();
    let policy = client_with_crl(&domain, 1, "");
    assert_finding(
        &policy,
        &["--at", &in_days(2)],
        "secsock still uses it",
        "fresh CRL",
    );
    let policy = client_with_crl(&domain, 1, "expired_crls = \"refuse\"");
    let (ok, human, json) = doctor(&policy, &["--at", &in_days(2)]);
    assert!(!ok);
    assert!(human.contains("are refused"), "{human}");
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "reported once, as the CRL's: {human}");
    assert_eq!(findings[0]["check"], "crl-expiry");
    assert_eq!(findings[0]["severity"], "error");
}

#[test]
fn doctor_finds_a_policy_or_anchor_writable_by_others() {
    let domain = Domain::new();
    let policy = domain.path("client/policy.toml");
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o664)).unwrap();
    assert_finding(
        &policy,
        &[],
        "writable by group or others (mode 0664)",
        &format!("chmod go-w {}", policy.display()),
    );
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let anchor = domain.path("client/trust/ca.crt");
    std::fs::set_permissions(&anchor, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_finding(
        &policy,
        &[],
        "a trust anchor file must be writable by its owner only",
        &format!("chmod go-w {}", anchor.display()),
    );
}

#[test]
fn doctor_finds_users_file_problems() {
    let domain = Domain::new();
    with_users(&domain, "", "pencil");
    let policy = domain.server_policy();
    // `with_users` used 4096 iterations: a count that tells alice exists.
    assert_finding(
        &policy,
        &[],
        "user:alice@EXAMPLE.TEST's verifier has 4096 PBKDF2 iterations",
        "secsock user add alice@EXAMPLE.TEST",
    );
    let users = domain.path("ca-host/users.toml");
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_finding(
        &policy,
        &[],
        "the users file holds password verifiers",
        &format!("chmod 600 {}", users.display()),
    );
}

#[test]
fn doctor_finds_toml_errors_with_their_line() {
    let domain = Domain::new();
    let policy = domain.path("client/policy.toml");
    let original = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{original}\n[crypto.standard\n")).unwrap();
    let (ok, human, json) = doctor(&policy, &[]);
    assert!(!ok);
    let line = original.lines().count() + 2;
    assert_eq!(json["findings"][0]["line"], line, "{human}");
    assert!(
        human.contains(&format!("correct the TOML syntax at line {line}")),
        "{human}"
    );
}

#[test]
fn doctor_finds_unknown_crypto_names() {
    let domain = Domain::new();
    let policy = domain.path("client/policy.toml");
    let original = std::fs::read_to_string(&policy).unwrap();
    // Two wrong sections: both are reported in one run.
    std::fs::write(
        &policy,
        format!("{original}\n[crypto.strict]\nkey_exchange = [\"X448\"]\n[crypto.old]\ncipher_suites = [\"TLS_RSA_WITH_AES_128_CBC_SHA\"]\n"),
    )
    .unwrap();
    assert_finding(
        &policy,
        &[],
        "unknown key exchange group `X448`",
        "values the message lists",
    );
    assert_finding(&policy, &[], "TLS 1.3 only", "values the message lists");
}

#[test]
fn serve_reports_each_refused_connection_and_keeps_serving() {
    let domain = Domain::new();
    let server = serve(&domain.server_policy(), &[]);
    // A plain TCP client that talks HTTP.
    let mut plain = std::net::TcpStream::connect(&server.addr).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut back = Vec::new();
    let _ = plain.read_to_end(&mut back);
    assert!(!String::from_utf8_lossy(&back).contains("GET"));
    // Still serving.
    let out = connect(
        &domain.path("client/policy.toml"),
        "host/server.example.test",
        &server.addr,
        b"after\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "after\n");
}

/// Slow and silent peers (issue 12, item 6) through `secsock serve`: 1,500 silent
/// connections from 127.0.0.2 and 100 more each second for 10 s, while a client from
/// 127.0.0.1 is served (connect, handshake, echo) within 1 s every time. Needs about
/// 3,000 open files; skipped, saying so, where the hard limit does not allow them.
#[test]
fn serve_serves_honest_clients_through_a_flood_of_silent_connections() {
    use secsock::{Domain as Family, PeerTargetName, Platform, SecureSocket, SecuritySettings};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Instant;
    let limit = flood::raise_open_files(16_384);
    if limit < 4_096 {
        eprintln!("skipped: the flood needs about 4,096 open files and the limit is {limit}");
        return;
    }
    let domain = Domain::new();
    let server = serve(&domain.server_policy(), &[]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    let client = Platform::load(domain.path("client/policy.toml")).unwrap();
    let flood = flood::Flood::start(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        addr,
        1500,
        100,
        Duration::from_secs(10),
    );
    let mut rounds = 0;
    while flood.is_running() {
        let started = Instant::now();
        let mut socket = SecureSocket::with_platform(Family::IPV4, client.clone()).unwrap();
        socket.set_security(&SecuritySettings::new()).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket
            .set_peer_target_name(PeerTargetName::parse("host/server.example.test").unwrap())
            .unwrap();
        let mut stream = socket
            .connect(addr)
            .unwrap_or_else(|e| panic!("round {rounds}: {e}"));
        stream.write_all(b"ping").unwrap();
        let mut pong = [0u8; 4];
        stream.read_exact(&mut pong).unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "round {rounds}: served after {took:?}, with {} flood connections opened",
            flood.opened()
        );
        stream.close().unwrap();
        rounds += 1;
        thread::sleep(Duration::from_millis(250)); // a client every quarter of a second
    }
    assert!(rounds >= 10, "only {rounds} rounds during the flood");
}

#[test]
fn serve_refuses_connections_beyond_its_cap_cleanly_and_recovers() {
    let domain = Domain::new();
    let mut server = secsock()
        .args([
            "serve",
            "--policy",
            p(&domain.server_policy()),
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(server.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("serve did not start");
        if let Some(addr) = line.strip_prefix("secsock: listening on ") {
            break addr.to_string();
        }
    };
    let client_policy = domain.path("client/policy.toml");
    // Two clients hold their connections open (stdin stays open).
    let hold = |input: &str| {
        let mut child = secsock()
            .args([
                "connect",
                "--policy",
                p(&client_policy),
                "--peer-name",
                "server.example.test",
                &addr,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut echoed = String::new();
        out.read_line(&mut echoed).unwrap();
        assert_eq!(echoed, input, "held connection echoes");
        (child, stdin)
    };
    let first = hold("one\n");
    let second = hold("two\n");
    // The third is refused at once, without hanging, and the server says why.
    let started = std::time::Instant::now();
    let refused = connect(&client_policy, "server.example.test", &addr, b"three\n");
    assert!(!refused.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the refusal took {:?}",
        started.elapsed()
    );
    assert!(
        text(&refused.stderr).contains("closed the connection during the handshake"),
        "{}",
        text(&refused.stderr)
    );
    let log = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no refusal logged");
        if line.contains("refused") {
            break line;
        }
    };
    assert!(log.contains("at the connection cap (2)"), "{log}");
    // When one closes, a new client is served again.
    let (mut child, stdin) = first;
    drop(stdin);
    assert!(child.wait().unwrap().success());
    // The server frees the slot when that connection's task ends, a moment after the
    // client exits: retry briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = connect(&client_policy, "server.example.test", &addr, b"four\n");
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "four\n");
    let (mut child, stdin) = second;
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let _ = server.kill();
    let _ = server.wait();
}

// ---- enforcement flags ----

#[test]
fn serve_with_allow_insecure_serves_a_plain_client_in_clear_and_says_so() {
    let domain = Domain::new();
    let server = serve(&domain.server_policy(), &["--allow-insecure"]);
    let mut plain = std::net::TcpStream::connect(&server.addr).unwrap();
    plain.write_all(b"plain hello\n").unwrap();
    plain.shutdown(std::net::Shutdown::Write).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut back = Vec::new();
    plain.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"plain hello\n");
    let line = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        line.contains("NOT secured") && line.contains("not a TLS ClientHello"),
        "{line}"
    );
    // A secsock client is still secured.
    let out = connect(
        &domain.path("client/policy.toml"),
        "server.example.test",
        &server.addr,
        b"tls\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(line.ends_with("secured: client.example.test"), "{line}");
}

/// A plain TCP server that greets, then records what it receives until EOF.
fn plain_greeting_server() -> (String, mpsc::Receiver<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.write_all(b"220 plain service ready\r\n");
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let _ = conn.read_to_end(&mut got);
            let _ = tx.send(got);
        }
    });
    (addr, rx)
}

#[test]
fn connect_falls_back_to_clear_only_with_allow_insecure() {
    let domain = Domain::new();
    let (addr, received) = plain_greeting_server();
    let policy = domain.path("client/policy.toml");
    let refused = connect(&policy, "server.example.test", &addr, b"PAYLOAD-123\n");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("does not speak TLS"),
        "{}",
        text(&refused.stderr)
    );
    let first = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        !contains(&first, b"PAYLOAD-123"),
        "the payload reached a plain server without --allow-insecure"
    );
    assert_eq!(first.first(), Some(&0x16));

    let out = connect_args(
        &[
            "--policy",
            p(&policy),
            "--peer-name",
            "server.example.test",
            "--allow-insecure",
            &addr,
        ],
        b"PAYLOAD-123\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "220 plain service ready\r\n");
    // The first connection carried only the ClientHello; the second, the payload in clear.
    let hello = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(hello.first(), Some(&0x16));
    assert!(!contains(&hello, b"PAYLOAD-123"));
    let clear = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(clear, b"PAYLOAD-123\n");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn query_reports_a_clear_fallback_as_not_secured() {
    let domain = Domain::new();
    let (addr, _received) = plain_greeting_server();
    let out = run(&[
        "query",
        "--policy",
        p(&domain.path("client/policy.toml")),
        "--peer-name",
        "server.example.test",
        "--allow-insecure",
        "--json",
        &addr,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["secured"], false);
    assert_eq!(v["encrypted"], false);
    assert!(v["peer_machine"].is_null());
    assert!(
        v["negotiation_error"].as_str().unwrap().contains("not TLS"),
        "{v}"
    );
}

#[test]
fn guarantee_encryption_with_allow_insecure_is_refused_on_the_command_line() {
    let domain = Domain::new();
    let out = run(&[
        "query",
        "--policy",
        p(&domain.path("client/policy.toml")),
        "--peer-name",
        "server.example.test",
        "--allow-insecure",
        "--guarantee-encryption",
        "127.0.0.1:9",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be set together"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn optional_peer_name_verification_on_the_command_line() {
    let domain = Domain::new();
    let server = serve(&domain.server_policy(), &[]);
    let out = run(&[
        "query",
        "--policy",
        p(&domain.path("client/policy.toml")),
        "--peer-name",
        "host/other.example.test",
        "--optional-peer-name-verification",
        "--json",
        &server.addr,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["secured"], true);
    assert!(
        v["negotiation_error"]
            .as_str()
            .unwrap()
            .contains("expected `host/other.example.test`"),
        "{v}"
    );
}

#[test]
fn serve_allow_peer_admits_only_the_named_principal() {
    let domain = Domain::new();
    let other = domain.issue("host/other.example.test", "other", &[]);
    let server = serve(
        &domain.server_policy(),
        &["--allow-peer", "host/client.example.test"],
    );
    let ok = connect(
        &domain.path("client/policy.toml"),
        "server.example.test",
        &server.addr,
        b"in\n",
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "in\n");
    let refused = connect(&other, "server.example.test", &server.addr, b"out\n");
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    assert!(
        text(&refused.stderr).contains("refused our certificate"),
        "{}",
        text(&refused.stderr)
    );
}

// ---- user authentication and impersonation ----

/// Appends `[users]` (and `extra`) to the server policy, and adds alice with `password`.
fn with_users(domain: &Domain, extra: &str, password: &str) -> PathBuf {
    let policy = domain.server_policy();
    let mut body = std::fs::read_to_string(&policy).unwrap();
    body.push_str(&format!(
        "\n[users]\nfile = \"users.toml\"\ndomain = \"EXAMPLE.TEST\"\n{extra}\n"
    ));
    std::fs::write(&policy, body).unwrap();
    let pw = domain.path("alice.pw");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let out = run(&[
        "user",
        "add",
        "alice",
        "--policy",
        p(&policy),
        "--password-file",
        p(&pw),
        "--iterations",
        "4096",
    ]);
    assert!(out.status.success(), "user add: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("user:alice@EXAMPLE.TEST added"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("tells anyone who asks that user:alice@EXAMPLE.TEST exists"),
        "4096 is not the default: {}",
        text(&out.stderr)
    );
    pw
}

#[test]
fn user_add_stores_a_verifier_never_the_password_and_remove_takes_it_out() {
    let domain = Domain::new();
    with_users(&domain, "", "correct horse battery staple");
    let users = domain.path("ca-host/users.toml");
    let stored = std::fs::read_to_string(&users).unwrap();
    assert!(
        stored.contains("\"alice@EXAMPLE.TEST\" = \"SCRAM-SHA-256$4096:"),
        "{stored}"
    );
    assert!(!stored.contains("correct horse"), "the password was stored");
    assert_eq!(
        std::fs::metadata(&users).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let policy = domain.server_policy();
    let out = run(&[
        "user",
        "remove",
        "alice@example.test",
        "--policy",
        p(&policy),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!std::fs::read_to_string(&users).unwrap().contains("alice@"));
    let again = run(&["user", "remove", "alice", "--policy", p(&policy)]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("is not in"),
        "{}",
        text(&again.stderr)
    );
    // Without [users] file, user add says what to add.
    let client_policy = domain.path("client/policy.toml");
    let pw = domain.path("alice.pw");
    let out = run(&[
        "user",
        "add",
        "bob@EXAMPLE.TEST",
        "--policy",
        p(&client_policy),
        "--password-file",
        p(&pw),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("[users]"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 12, item 15: `secsock user add` read, changed and replaced the users file with
/// nothing to stop another `user add` doing the same in between: concurrent adds lost
/// users. Eight at once, all kept.
#[test]
fn concurrent_user_adds_all_take_effect() {
    let domain = Domain::new();
    let pw = with_users(&domain, "", "pencil");
    let policy = domain.server_policy();
    let adds: Vec<_> = (0..8)
        .map(|i| {
            secsock()
                .args(["user", "add", &format!("user{i}"), "--policy", p(&policy)])
                .args(["--password-file", p(&pw), "--iterations", "4096"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for add in adds {
        let out = add.wait_with_output().unwrap();
        assert!(out.status.success(), "user add: {}", text(&out.stderr));
    }
    let stored = std::fs::read_to_string(domain.path("ca-host/users.toml")).unwrap();
    for name in ["alice".to_string()]
        .into_iter()
        .chain((0..8).map(|i| format!("user{i}")))
    {
        assert!(
            stored.contains(&format!("\"{name}@EXAMPLE.TEST\"")),
            "{name} was lost:\n{stored}"
        );
    }
}

#[test]
fn connect_and_query_prove_a_user_by_password() {
    let domain = Domain::new();
    let pw = with_users(&domain, "authentication = \"required\"", "pencil");
    let server = serve(&domain.server_policy(), &[]);
    let client = domain.path("client/policy.toml");
    let out = connect_args(
        &[
            "--policy",
            p(&client),
            "--peer-name",
            "server.example.test",
            "--user",
            "alice@EXAMPLE.TEST",
            "--password-file",
            p(&pw),
            &server.addr,
        ],
        b"as alice\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "as alice\n");
    let line = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        line.ends_with("secured: client.example.test; user user:alice@EXAMPLE.TEST"),
        "{line}"
    );

    // Without credentials, a server that requires them refuses, saying so.
    let out = connect(&client, "server.example.test", &server.addr, b"anonymous\n");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("requires user authentication"),
        "{}",
        text(&out.stderr)
    );

    // A wrong password: refused, generically.
    let wrong = domain.path("wrong.pw");
    std::fs::write(&wrong, "pencils\n").unwrap();
    let out = run(&[
        "query",
        "--policy",
        p(&client),
        "--peer-name",
        "server.example.test",
        "--user",
        "alice@EXAMPLE.TEST",
        "--password-file",
        p(&wrong),
        &server.addr,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("user authentication failed"),
        "{}",
        text(&out.stderr)
    );
    let unknown = run(&[
        "query",
        "--policy",
        p(&client),
        "--peer-name",
        "server.example.test",
        "--user",
        "mallory@EXAMPLE.TEST",
        "--password-file",
        p(&wrong),
        &server.addr,
    ]);
    let reason = |s: &str| {
        s.lines()
            .last()
            .unwrap_or_default()
            .replace("mallory", "alice")
    };
    assert_eq!(
        reason(&text(&unknown.stderr)),
        reason(&text(&out.stderr)),
        "no oracle between unknown user and wrong password"
    );
}

#[test]
fn serve_json_and_query_report_the_proven_user() {
    let domain = Domain::new();
    let pw = with_users(&domain, "", "pencil");
    let server = serve(&domain.server_policy(), &["--json"]);
    let out = run(&[
        "query",
        "--policy",
        p(&domain.path("client/policy.toml")),
        "--peer-name",
        "server.example.test",
        "--user",
        "alice@EXAMPLE.TEST",
        "--password-file",
        p(&pw),
        "--json",
        &server.addr,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["impersonated"], true);
    assert_eq!(
        v["peer_application"]["names"],
        serde_json::json!(["user:alice@EXAMPLE.TEST"])
    );
    assert!(v["peer_application"]["proven_by"]
        .as_str()
        .unwrap()
        .starts_with("password"));
    assert!(v["peer_application"]["not_after"].is_null());
    assert_eq!(
        v["peer_machine"]["names"],
        serde_json::json!(["client.example.test"])
    );
}

#[test]
fn connect_proves_a_user_with_a_user_certificate() {
    let domain = Domain::new();
    domain.issue("user:carol@EXAMPLE.TEST", "carol", &[]);
    with_users(&domain, "authentication = \"required\"", "pencil");
    let server = serve(&domain.server_policy(), &["--json"]);
    let out = run(&[
        "query",
        "--policy",
        p(&domain.path("client/policy.toml")),
        "--peer-name",
        "server.example.test",
        "--user-cert",
        p(&domain.path("carol/identity/host.crt")),
        "--user-key",
        p(&domain.path("carol/identity/host.key")),
        &server.addr,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&server.lines.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(
        v["peer_application"]["names"],
        serde_json::json!(["user:carol@EXAMPLE.TEST"])
    );
    assert!(v["peer_application"]["proven_by"]
        .as_str()
        .unwrap()
        .starts_with("user certificate"));
}

/// A local account for the test, removed when dropped.
struct LocalUser(String);

impl LocalUser {
    fn new(tag: &str) -> Self {
        let name = format!("ssc{}{tag}", std::process::id() % 100000);
        let ok = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "useradd {name}");
        Self(name)
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

#[test]
fn impersonation_serve_runs_each_connection_as_its_peer() {
    // As the library's tests do (`require_root` in their support module): without root,
    // say so and pass; CI runs as root.
    if !rustix::process::geteuid().is_root() {
        let line = "skipped impersonation_serve_runs_each_connection_as_its_peer: it needs root (it creates a local user and serves as it)\n";
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let local = LocalUser::new("a");
    let uid: u32 = text(
        &Command::new("id")
            .args(["-u", &local.0])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .parse()
    .unwrap();
    let domain = Domain::new();
    let policy = domain.server_policy();
    let pw = with_users(
        &domain,
        "\n[[accounts]]\nprincipal = \"user:*@EXAMPLE.TEST\"\nuser = \"{name}\"",
        "pencil",
    );
    // The SCRAM user is named like the local account.
    let pw_local = domain.path("local.pw");
    std::fs::copy(&pw, &pw_local).unwrap();
    let out = run(&[
        "user",
        "add",
        &local.0,
        "--policy",
        p(&policy),
        "--password-file",
        p(&pw_local),
        "--iterations",
        "4096",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server = serve(&policy, &["--impersonate"]);
    let out = connect_args(
        &[
            "--policy",
            p(&domain.path("client/policy.toml")),
            "--peer-name",
            "server.example.test",
            "--user",
            &format!("{}@EXAMPLE.TEST", local.0),
            "--password-file",
            p(&pw_local),
            &server.addr,
        ],
        b"hi\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    let _secured = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    let line = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        line.contains(&format!(
            "impersonating user:{}@EXAMPLE.TEST as {} (uid {uid}, fsuid {uid})",
            local.0, local.0
        )),
        "{line}"
    );
    // alice authenticates, but has no local account: she is not served (the server's log
    // says why), and nothing is echoed.
    assert!(
        !Command::new("id")
            .arg("alice")
            .output()
            .unwrap()
            .status
            .success(),
        "a local alice exists here"
    );
    let out = connect_args(
        &[
            "--policy",
            p(&domain.path("client/policy.toml")),
            "--peer-name",
            "server.example.test",
            "--user",
            "alice@EXAMPLE.TEST",
            "--password-file",
            p(&pw),
            &server.addr,
        ],
        b"not served\n",
    );
    assert!(
        !contains(&out.stdout, b"not served"),
        "served without a local account"
    );
}
