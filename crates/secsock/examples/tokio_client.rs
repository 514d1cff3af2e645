//! A secured client on the async API (`secsock::tokio`, feature `tokio`): the blocking
//! client's twin, name for name.
//!
//! ```sh
//! cargo run -p secsock --features tokio --example tokio_client -- \
//!     --policy client/policy.toml host/server.example.test 127.0.0.1:27015 hello
//! ```
//!
//! Without `--policy` the platform's policy is used: `$SECSOCK_POLICY`, else
//! `~/.config/secsock/policy.toml`, else `/etc/secsock/policy.toml`.

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;

use secsock::tokio::SecureSocket;
use secsock::{Domain, PeerTargetName, Platform, SecurityFlags, SecuritySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_client: {e}"); // the error names what to fix
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let policy = take_option(&mut args, "--policy")?;
    let [peer, addr, message @ ..] = args.as_slice() else {
        return Err("usage: tokio_client [--policy FILE] PEER-NAME ADDRESS [MESSAGE]".into());
    };
    let addr: SocketAddr = addr.parse()?;
    let message = if message.is_empty() {
        "hello".to_owned()
    } else {
        message.join(" ")
    };

    let mut socket = match policy {
        Some(path) => SecureSocket::with_platform(Domain::IPV4, Platform::load(path)?)?,
        None => SecureSocket::new(Domain::IPV4)?,
    };
    // Never in clear; and the server must prove the name `peer`.
    socket
        .set_security(&SecuritySettings::new().with_flags(SecurityFlags::GUARANTEE_ENCRYPTION))?;
    socket.set_peer_target_name(PeerTargetName::parse(peer)?)?;
    let mut stream = socket.connect(addr).await?;
    println!("{}", stream.query_security());

    stream.write_all(message.as_bytes()).await?;
    stream.shutdown().await?; // close_notify: nothing more from this side
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    println!("answer: {answer}");
    stream.close().await?;
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
