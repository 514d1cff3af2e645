//! `secsock demo`: the client and server flow of the Windows sample "Using Secure Socket
//! Extensions", on a fresh trust domain in a temporary directory, on loopback.
//!
//! Nothing is written outside the temporary directory, which is removed at the end.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use secsock::{
    Domain, PeerTargetName, PrincipalName, SecureSocket, SecurityFlags, SecurityInfo,
    SecuritySettings,
};

use crate::authority::{write_identity_dir, CertificateAuthority, KeyAlgorithm};

/// The trust domain the demo creates.
pub const DOMAIN: &str = "example.test";

fn names(info: &SecurityInfo) -> String {
    info.peer_machine
        .as_ref()
        .map(|m| {
            m.names
                .iter()
                .map(PrincipalName::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "(none)".into())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Runs the demo, printing what each side sees.
pub fn run() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("secsock-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let realm = DOMAIN.to_ascii_uppercase();
    println!(
        "Creating a trust domain `{DOMAIN}` in {} (removed at the end)",
        dir.path().display()
    );
    let ca = CertificateAuthority::create(DOMAIN, KeyAlgorithm::EcdsaP256, 1)?;
    let server_name = PrincipalName::parse(&format!("host/server.{DOMAIN}"))?;
    let client_name = PrincipalName::parse(&format!("host/client.{DOMAIN}"))?;
    let mut policies = Vec::new();
    for (label, principal) in [("server", &server_name), ("client", &client_name)] {
        let identity = ca.issue(principal, &realm, KeyAlgorithm::EcdsaP256, 1)?;
        let policy = write_identity_dir(
            &dir.path().join(label),
            &identity,
            ca.certificate_pem(),
            None,
            false,
        )?;
        println!("  issued {principal} -> {}", policy.display());
        policies.push(policy);
    }
    let server_platform = secsock::Platform::load(&policies[0])?;
    let client_platform = secsock::Platform::load(&policies[1])?;
    let settings = SecuritySettings::new().with_flags(SecurityFlags::GUARANTEE_ENCRYPTION);

    // The server: security set on the listening socket before bind (stcpserver).
    let mut listen = SecureSocket::with_platform(Domain::IPV4, server_platform)?;
    listen.set_security(&settings)?;
    listen.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let listener = listen.listen(8)?;
    let addr = listener.local_addr()?;
    println!("Server listening on {addr}\n");
    let (report_tx, report_rx) = mpsc::channel::<Result<SecurityInfo, String>>();
    let server = thread::spawn(move || {
        for _ in 0..2 {
            match listener.accept() {
                Ok(mut stream) => {
                    let info = stream.query_security();
                    let mut buf = [0u8; 64];
                    let served = stream
                        .read(&mut buf)
                        .and_then(|n| stream.write_all(&buf[..n]).map(|()| n))
                        .and_then(|n| {
                            // Wait for the client's close, then close cleanly.
                            let mut rest = Vec::new();
                            stream.read_to_end(&mut rest)?;
                            stream.close().map(|()| n)
                        });
                    let _ = report_tx.send(served.map(|_| info).map_err(|e| e.to_string()));
                }
                Err(e) => {
                    let _ = report_tx.send(Err(e.to_string()));
                }
            }
        }
    });

    // The client: SecureTcpConnect from the sample.
    println!("Client: security GUARANTEE_ENCRYPTION, peer target name host/server.{DOMAIN}");
    let mut socket = SecureSocket::with_platform(Domain::IPV4, client_platform.clone())?;
    socket.set_security(&settings)?;
    socket.set_peer_target_name(PeerTargetName::from(server_name.clone()))?;
    let mut stream = socket
        .connect(addr)
        .context("connecting to the demo server")?;
    println!("Secure connection established to the server");
    let data = b"12345678";
    stream.write_all(data)?;
    println!("Sent {} bytes of data to the server", data.len());
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply)?;
    println!("Received {} bytes of data from the server", reply.len());
    let client_info = stream.query_security();
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    stream.close()?;

    let server_info = report_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("the demo server did not report"))?
        .map_err(|e| anyhow!("the demo server failed: {e}"))?;
    println!("\nWhat the client's query reports (the server's identity):");
    print!("{}", indent(&client_info.to_string()));
    println!("What the server's query reports (the client's identity):");
    print!("{}", indent(&server_info.to_string()));
    println!(
        "  client proved: {}\n  server proved: {}",
        names(&server_info),
        names(&client_info)
    );

    // Enforcement: the same server, but the client names another peer.
    let wrong = format!("host/other.{DOMAIN}");
    println!("\nEnforcement: connecting again, naming the peer `{wrong}`");
    let mut socket = SecureSocket::with_platform(Domain::IPV4, client_platform)?;
    socket.set_security(&settings)?;
    socket.set_peer_target_name(PeerTargetName::parse(&wrong)?)?;
    match socket.connect(addr) {
        Ok(_) => return Err(anyhow!("the connection naming the wrong peer was accepted")),
        Err(e) => println!("Refused, nothing was sent: {e}"),
    }
    match report_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Err(e)) => println!("The server saw: {e}"),
        Ok(Ok(_)) => return Err(anyhow!("the server accepted the refused connection")),
        Err(_) => {
            return Err(anyhow!(
                "the demo server did not report the refused connection"
            ))
        }
    }
    let _ = server.join();
    let path = dir.path().to_path_buf();
    dir.close().context("removing the temporary trust domain")?;
    println!("\nDemo complete; {} was removed.", path.display());
    Ok(())
}
