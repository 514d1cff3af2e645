//! The examples (`crates/secsock/examples/`) run as a user runs them: a client example
//! against a server example, each a process of its own, on loopback, with policy files of
//! a temporary trust domain. `cargo test` builds the examples along with the tests (not
//! `cargo test --test integration`: then `cargo build -p secsock --examples --all-features`).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::support::{self, San, TrustDomain};

/// The built example `name`: cargo puts examples in `examples/` beside the test
/// binaries' `deps/`. Fails if it is missing or older than its source.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let edited = fs::metadata(&source).and_then(|m| m.modified()).unwrap();
    match fs::metadata(&binary).and_then(|m| m.modified()) {
        Ok(built) if built >= edited => Command::new(binary),
        _ => panic!(
            "{} is missing or older than its source: build the examples \
             (`cargo build -p secsock --examples --all-features`)",
            binary.display()
        ),
    }
}

/// A server example running on a free loopback port, killed on drop.
struct ExampleServer {
    child: Child,
    addr: String,
    /// The lines it prints after "listening on ...".
    lines: mpsc::Receiver<String>,
    /// What it wrote to its standard error so far.
    errors: Arc<Mutex<String>>,
}

impl ExampleServer {
    fn start(name: &str, policy: &Path) -> ExampleServer {
        let mut child = example(name)
            .arg("--policy")
            .arg(policy)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut stderr = child.stderr.take().unwrap();
        let errors = Arc::new(Mutex::new(String::new()));
        let written = errors.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                written.lock().unwrap().push_str(&text(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = ExampleServer {
            child,
            addr: String::new(),
            lines,
            errors,
        };
        let first = server.next_line();
        server.addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name} said {first:?}, not where it listens"))
            .to_owned();
        server
    }

    /// The next line the server prints (fails the test after 20 s without one).
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                let errors = self.errors.lock().unwrap();
                panic!("the server example printed nothing within 20 s; its errors:\n{errors}")
            })
    }

    /// Reads the server's lines until one contains `text`; returns the lines read.
    fn wait_for(&self, text: &str) -> String {
        let mut seen = String::new();
        loop {
            let line = self.next_line();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(text) {
                return seen;
            }
        }
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client example to its end (fails the test after 30 s).
fn run(mut client: Command) -> Output {
    let child = client
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client example");
    let (tx, done) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    done.recv_timeout(Duration::from_secs(30))
        .expect("the client example did not end within 30 s")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that the client example succeeded, and returns what it printed.
fn succeeded(output: Output) -> String {
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "the client example failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[test]
fn blocking_client_example_is_served_by_the_blocking_server_example() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let srv = ExampleServer::start("blocking_server", &server.policy);

    let stdout = succeeded(run({
        let mut c = example("blocking_client");
        c.arg("--policy").arg(&client.policy);
        c.args(["host/server.example.test", &srv.addr, "hello", "examples"]);
        c
    }));
    // The client's query: the server proved its name; then the echo.
    assert!(
        stdout.contains("peer machine:  server.example.test"),
        "{stdout}"
    );
    assert!(stdout.contains("answer: hello examples"), "{stdout}");
    // The server's query names the client.
    let seen = srv.wait_for("peer machine:");
    assert!(
        seen.contains("peer machine:  client.example.test"),
        "{seen}"
    );

    // Another name than the server proves: the client fails, saying which names.
    let output = run({
        let mut c = example("blocking_client");
        c.arg("--policy").arg(&client.policy);
        c.args(["host/other.example.test", &srv.addr]);
        c
    });
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.starts_with("blocking_client: ") && stderr.contains("other.example.test"),
        "{stderr}"
    );
}

/// The async twins, and the platform's policy found through `SECSOCK_POLICY`.
#[cfg(feature = "tokio")]
#[test]
fn tokio_client_example_is_served_by_the_tokio_server_example() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let srv = ExampleServer::start("tokio_server", &server.policy);

    let stdout = succeeded(run({
        let mut c = example("tokio_client");
        c.env("SECSOCK_POLICY", &client.policy);
        c.args(["host/server.example.test", &srv.addr, "hello", "tokio"]);
        c
    }));
    assert!(
        stdout.contains("peer machine:  server.example.test"),
        "{stdout}"
    );
    assert!(stdout.contains("answer: hello tokio"), "{stdout}");
    let seen = srv.wait_for("peer machine:");
    assert!(
        seen.contains("peer machine:  client.example.test"),
        "{seen}"
    );
}

#[test]
fn impersonating_server_example_reads_files_as_the_peers_account() {
    use crate::support::local_accounts::LocalUser;
    if !support::require_root("it creates a local user and impersonates it") {
        return;
    }
    let user = LocalUser::create();
    let domain = TrustDomain::new("example.test");
    let rule = format!(
        "[[accounts]]\nprincipal = \"host/client.example.test\"\nuser = \"{}\"\n",
        user.name
    );
    let server = domain.host_with("server", &[San::Dns("server.example.test")], &rule, |_| {});
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    // A directory the account may enter, with a file only root may read and one of its own.
    let scratch = tempfile::tempdir().unwrap();
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let roots = scratch.path().join("root-only");
    support::write_private(&roots, "root's secret");
    let users: PathBuf = scratch.path().join("users");
    support::write_private(&users, "the user's own");
    std::os::unix::fs::chown(&users, Some(user.uid), Some(user.gid)).unwrap();
    let srv = ExampleServer::start("impersonating_server", &server.policy);

    let ask = |path: &Path| {
        let mut c = example("blocking_client");
        c.arg("--policy").arg(&client.policy);
        c.args(["host/server.example.test", &srv.addr]);
        c.arg(path);
        succeeded(run(c))
    };
    let answer = ask(&users);
    assert!(
        answer.contains(&format!("answer: as {}: the user's own", user.name)),
        "{answer}"
    );
    let answer = ask(&roots);
    assert!(
        answer.contains(&format!("answer: as {}: cannot read", user.name))
            && answer.contains("Permission denied"),
        "{answer}"
    );
}
