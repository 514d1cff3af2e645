//! A secured echo server on the async API (`secsock::tokio`, feature `tokio`): the
//! blocking server's twin, name for name. Each connection is served on a task of its own.
//!
//! ```sh
//! cargo run -p secsock --features tokio --example tokio_server -- \
//!     --policy server/policy.toml 127.0.0.1:27015
//! ```
//!
//! Without `--policy` the platform's policy is used: `$SECSOCK_POLICY`, else
//! `~/.config/secsock/policy.toml`, else `/etc/secsock/policy.toml`. The address defaults
//! to 127.0.0.1:27015; port 0 picks a free one.

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;

use secsock::tokio::{SecureSocket, SecureStream};
use secsock::{Domain, Platform, SecuritySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_server: {e}"); // the error names what to fix
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
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
        // Handshakes run concurrently inside accept: a slow peer delays nobody, and a
        // failed one is that connection's problem only.
        match listener.accept().await {
            Ok(stream) => {
                tokio::spawn(async move {
                    let peer = stream.peer_addr();
                    if let Err(e) = echo(stream).await {
                        eprintln!("{peer}: {e}");
                    }
                });
            }
            Err(e) => eprintln!("refused a connection: {e}"),
        }
    }
}

/// Prints who the peer proved to be, echoes until the peer closes, and closes in turn.
async fn echo(mut stream: SecureStream) -> std::io::Result<()> {
    println!(
        "{} connected\n{}",
        stream.peer_addr(),
        stream.query_security()
    );
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await? {
            0 => break, // the peer's close_notify
            n => stream.write_all(&buf[..n]).await?,
        }
    }
    stream.close().await
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
