//! A secured client on the blocking API: it names the peer it expects, connects (the
//! handshake proves both machines to each other, as the policy says), prints what the
//! query says about the connection, sends a message and prints the answer.
//!
//! ```sh
//! cargo run -p secsock --example blocking_client -- \
//!     --policy client/policy.toml host/server.example.test 127.0.0.1:27015 hello
//! ```
//!
//! Without `--policy` the platform's policy is used: `$SECSOCK_POLICY`, else
//! `~/.config/secsock/policy.toml`, else `/etc/secsock/policy.toml`.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;

use secsock::{Domain, PeerTargetName, Platform, SecureSocket, SecurityFlags, SecuritySettings};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blocking_client: {e}"); // the error names what to fix
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let policy = take_option(&mut args, "--policy")?;
    let [peer, addr, message @ ..] = args.as_slice() else {
        return Err("usage: blocking_client [--policy FILE] PEER-NAME ADDRESS [MESSAGE]".into());
    };
    let addr: SocketAddr = addr.parse()?;
    let message = if message.is_empty() {
        "hello".to_owned()
    } else {
        message.join(" ")
    };

    // WSASocket: a TCP socket, secured by the given policy or the platform's.
    let mut socket = match policy {
        Some(path) => SecureSocket::with_platform(Domain::IPV4, Platform::load(path)?)?,
        None => SecureSocket::new(Domain::IPV4)?,
    };
    // WSASetSocketSecurity: never in clear, whatever the policy would allow.
    socket
        .set_security(&SecuritySettings::new().with_flags(SecurityFlags::GUARANTEE_ENCRYPTION))?;
    // WSASetSocketPeerTargetName: the connection fails unless the server proves this name.
    socket.set_peer_target_name(PeerTargetName::parse(peer)?)?;
    // WSAConnect: TCP connect and handshake; an error names what went wrong (an expired
    // certificate, another name than the one expected, ...).
    let mut stream = socket.connect(addr)?;
    // WSAQuerySocketSecurity: who the server proved to be, the protocol and the crypto.
    println!("{}", stream.query_security());

    stream.write_all(message.as_bytes())?;
    stream.shutdown(Shutdown::Write)?; // close_notify: nothing more from this side
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    println!("answer: {answer}");
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
