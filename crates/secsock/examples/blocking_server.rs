//! A secured echo server on the blocking API: it listens, secures every connection as the
//! policy says (TLS 1.3, the peer's certificate checked against the trust anchors), prints
//! what the query says about each peer, and echoes what it receives.
//!
//! ```sh
//! cargo run -p secsock --example blocking_server -- --policy server/policy.toml 127.0.0.1:27015
//! ```
//!
//! Without `--policy` the platform's policy is used: `$SECSOCK_POLICY`, else
//! `~/.config/secsock/policy.toml`, else `/etc/secsock/policy.toml` (`secsock init` writes
//! one). The address defaults to 127.0.0.1:27015; port 0 picks a free one.

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
            eprintln!("blocking_server: {e}"); // the error names what to fix
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

    // WSASocket: a TCP socket, secured by the given policy or the platform's.
    let mut socket = match policy {
        Some(path) => SecureSocket::with_platform(Domain::IPV4, Platform::load(path)?)?,
        None => SecureSocket::new(Domain::IPV4)?,
    };
    // WSASetSocketSecurity, before bind: the default settings let the policy decide.
    socket.set_security(&SecuritySettings::new())?;
    socket.bind(addr)?;
    let listener = socket.listen(128)?;
    println!("listening on {}", listener.local_addr()?);

    loop {
        // accept returns connections whose handshake succeeded; a peer that failed is
        // that connection's problem only, so the server keeps accepting.
        match listener.accept() {
            Ok(stream) => {
                thread::spawn(move || {
                    let peer = stream.peer_addr();
                    if let Err(e) = echo(stream) {
                        eprintln!("{peer}: {e}");
                    }
                });
            }
            Err(e) => eprintln!("refused a connection: {e}"),
        }
    }
}

/// Prints who the peer proved to be (WSAQuerySocketSecurity), then echoes until the peer
/// closes, and closes in turn (closesocket: close_notify, then the TCP close).
fn echo(mut stream: SecureStream) -> std::io::Result<()> {
    println!(
        "{} connected\n{}",
        stream.peer_addr(),
        stream.query_security()
    );
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf)? {
            0 => break, // the peer's close_notify: it sends nothing more
            n => stream.write_all(&buf[..n])?,
        }
    }
    stream.close()
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
