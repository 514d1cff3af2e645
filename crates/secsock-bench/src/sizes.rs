//! The hidden `sizes` command: the in-memory sizes of each stack's per-connection types and
//! of the futures a connection task holds while it connects or accepts. A task is one
//! allocation as large as its largest state, so these sizes are paid for as long as the
//! connection is held.

use std::mem::{size_of, size_of_val};
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use secsock::{Domain, PeerTargetName, Platform, SecuritySettings};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::domain::{TrustDomain, SERVER_NAME};
use crate::load::baseline;

/// Prints the sizes, one per line: bytes, then the type or future.
pub fn print_sizes() -> anyhow::Result<()> {
    let domain = TrustDomain::create(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let mut rows: Vec<(&str, usize)> = vec![
        ("tokio::net::TcpStream", size_of::<TcpStream>()),
        (
            "rustls::ClientConnection",
            size_of::<rustls::ClientConnection>(),
        ),
        (
            "rustls::ServerConnection",
            size_of::<rustls::ServerConnection>(),
        ),
        ("rustls::ClientConfig", size_of::<ClientConfig>()),
        (
            "tokio_rustls::client::TlsStream<TcpStream>",
            size_of::<tokio_rustls::client::TlsStream<TcpStream>>(),
        ),
        (
            "tokio_rustls::server::TlsStream<TcpStream>",
            size_of::<tokio_rustls::server::TlsStream<TcpStream>>(),
        ),
        (
            "secsock::tokio::SecureStream",
            size_of::<secsock::tokio::SecureStream>(),
        ),
        ("secsock::SecurityInfo", size_of::<secsock::SecurityInfo>()),
        ("secsock::PeerIdentity", size_of::<secsock::PeerIdentity>()),
    ];
    runtime.block_on(async {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));

        let platform = Platform::load(&domain.server.policy)?;
        let mut socket = secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform)?;
        socket.set_security(&SecuritySettings::new())?;
        socket.bind(local)?;
        let listener = socket.listen(16)?;
        let addr = listener.local_addr()?;
        let _peer = TcpStream::connect(addr).await?;
        let pending = listener.accept_pending().await?;
        let handshake = pending.handshake();
        rows.push((
            "secsock PendingStream::handshake() future",
            size_of_val(&handshake),
        ));
        drop(handshake);

        let platform = Platform::load(&domain.client.policy)?;
        let mut socket = secsock::tokio::SecureSocket::with_platform(Domain::IPV4, platform)?;
        socket.set_security(&SecuritySettings::new())?;
        socket.set_peer_target_name(PeerTargetName::parse(SERVER_NAME)?)?;
        let connect = socket.connect(addr);
        rows.push((
            "secsock SecureSocket::connect() future",
            size_of_val(&connect),
        ));
        drop(connect);

        let plain = tokio::net::TcpListener::bind(local).await?;
        let plain_addr = plain.local_addr()?;
        let client_tcp = TcpStream::connect(plain_addr).await?;
        let (server_tcp, _) = plain.accept().await?;
        let acceptor = TlsAcceptor::from(baseline::server_config(&domain.server, true)?);
        let accept = acceptor.accept(server_tcp);
        rows.push((
            "tokio-rustls TlsAcceptor::accept() future",
            size_of_val(&accept),
        ));
        drop(accept);
        let connector = TlsConnector::from(baseline::client_config(&domain.client, true)?);
        let connect = connector.connect(ServerName::try_from(SERVER_NAME)?, client_tcp);
        rows.push((
            "tokio-rustls TlsConnector::connect() future",
            size_of_val(&connect),
        ));
        drop(connect);
        Ok::<_, anyhow::Error>(())
    })?;
    for (name, size) in rows {
        println!("{size:>7}  {name}");
    }
    Ok(())
}
