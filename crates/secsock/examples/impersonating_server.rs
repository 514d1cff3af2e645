//! A secured file server that reads files as its peers (WSAImpersonateSocketPeer): each
//! client sends a path, and the server reads that file as the local account the policy's
//! `[[accounts]]` map the client to, so the kernel's file permissions decide, not the
//! server. Run it as root (it needs CAP_SETUID and CAP_SETGID); for example the policy
//!
//! ```toml
//! [[accounts]]
//! principal = "host/client.example.test"   # the client machine's proven name ...
//! user = "alice"                           # ... acts as the local account alice
//! ```
//!
//! ```sh
//! sudo target/debug/examples/impersonating_server --policy server/policy.toml 127.0.0.1:27015
//! cargo run -p secsock --example blocking_client -- \
//!     --policy client/policy.toml host/server.example.test 127.0.0.1:27015 /etc/shadow
//! ```
//!
//! Without `--policy` the platform's policy is used: `$SECSOCK_POLICY`, else
//! `~/.config/secsock/policy.toml`, else `/etc/secsock/policy.toml`.

use std::error::Error;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;

use secsock::{Domain, Platform, SecureSocket, SecureStream, SecuritySettings};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("impersonating_server: {e}"); // the error names what to fix
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let policy = take_option(&mut args, "--policy")?;
    let addr: SocketAddr = args
        .first()
        .map_or("127.0.0.1:27015", |a| a.as_str())
        .parse()?;

    let mut socket = match policy {
        Some(path) => SecureSocket::with_platform(Domain::IPV4, Platform::load(path)?)?,
        None => SecureSocket::new(Domain::IPV4)?,
    };
    socket.set_security(&SecuritySettings::new())?;
    socket.bind(addr)?;
    let listener = socket.listen(128)?;
    println!("listening on {}", listener.local_addr()?);

    loop {
        // Accept on a thread that impersonates nobody: threads started while
        // impersonating would run as the peer (accept refuses to).
        match listener.accept() {
            Ok(stream) => {
                thread::spawn(move || {
                    let peer = stream.peer_addr();
                    if let Err(e) = serve_file(stream) {
                        eprintln!("{peer}: {e}");
                    }
                });
            }
            Err(e) => eprintln!("refused a connection: {e}"),
        }
    }
}

/// Reads the request (a path), reads that file as the peer, answers with its contents or
/// with why the peer may not read it.
fn serve_file(mut stream: SecureStream) -> Result<(), Box<dyn Error>> {
    println!(
        "{} connected\n{}",
        stream.peer_addr(),
        stream.query_security()
    );
    let mut path = String::new();
    (&mut stream).take(4096).read_to_string(&mut path)?;

    let answer = match stream.impersonate_peer() {
        Ok(guard) => {
            // From here until the guard drops, this thread (and only this thread)
            // accesses files as the peer's account.
            let account = guard.account().name.clone();
            let read = std::fs::read_to_string(path.trim());
            drop(guard);
            match read {
                Ok(contents) => format!("as {account}: {contents}"),
                Err(e) => format!("as {account}: cannot read {}: {e}", path.trim()),
            }
        }
        // No rule maps the peer, no such account, the server lacks the capabilities, ...
        Err(e) => format!("refused: {e}"),
    };
    println!("{}: {answer}", stream.peer_addr());
    stream.write_all(answer.as_bytes())?;
    stream.close()?;
    Ok(())
}

/// Removes `name VALUE` from `args`, returning VALUE.
fn take_option(args: &mut Vec<String>, name: &str) -> Result<Option<String>, String> {
    let Some(at) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    if at + 1 >= args.len() {
        return Err(format!("{name} needs a value"));
    }
    let value = args.remove(at + 1);
    args.remove(at);
    Ok(Some(value))
}
