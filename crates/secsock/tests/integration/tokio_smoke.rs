//! Smoke test of the async front end (the full suite is in tokio_api.rs).
#![cfg(feature = "tokio")]

use crate::support;

use secsock::tokio::SecureSocket;
use secsock::{Domain, PeerTargetName, SecuritySettings};
use std::net::{Ipv4Addr, SocketAddr};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_client_and_server_round_trip() {
    let domain = TrustDomain::new("example.test");
    let server = domain
        .host("server", &[San::Dns("server.example.test")])
        .platform();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let mut socket = SecureSocket::with_platform(Domain::IPV4, server).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        stream.write_all(&all).await.unwrap();
        stream.close().await.unwrap();
        all.len()
    });
    let mut socket = SecureSocket::with_platform(Domain::IPV4, client).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    socket
        .set_peer_target_name(PeerTargetName::parse("server.example.test").unwrap())
        .unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let data = pattern(5 * 1024 * 1024, 4);
    stream.write_all(&data).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(checksum(&back), checksum(&data));
    assert!(stream.query_security().is_encrypted());
    assert_eq!(server_task.await.unwrap(), data.len());
}
