//! The order of calls (`WSASetSocketSecurity` once, before bind/connect; the peer target
//! name before connect) is enforced with errors that name the rule.

use crate::support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use secsock::{
    CryptoPolicyKey, Domain, Error, PeerTargetName, SecureSocket, SecurityFlags, SecuritySettings,
    SettingsError, UsageError,
};
use socket2::{Protocol, Socket, Type};
use support::*;

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

#[test]
fn security_is_set_once() {
    let domain = TrustDomain::new("example.test");
    let platform = domain.host("h", &[San::Dns("h.example.test")]).platform();
    let mut socket = SecureSocket::with_platform(Domain::IPV4, platform).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    let err = socket.set_security(&SecuritySettings::new()).unwrap_err();
    assert!(
        matches!(err, Error::Usage(UsageError::AlreadyConfigured)),
        "{err}"
    );
}

#[test]
fn security_after_bind_is_refused() {
    let domain = TrustDomain::new("example.test");
    let platform = domain.host("h", &[San::Dns("h.example.test")]).platform();
    let mut socket = SecureSocket::with_platform(Domain::IPV4, platform).unwrap();
    socket.bind(loopback()).unwrap();
    let err = socket.set_security(&SecuritySettings::new()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::AlreadyBound {
                call: "set_security",
                ..
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("must be called before bind"),
        "{err}"
    );
}

#[test]
fn an_already_connected_socket_names_the_rule() {
    let domain = TrustDomain::new("example.test");
    let platform = domain.host("h", &[San::Dns("h.example.test")]).platform();
    let listener = TcpListener::bind(loopback()).unwrap();
    let raw = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    raw.connect(&listener.local_addr().unwrap().into()).unwrap();
    let mut socket = SecureSocket::from_socket(raw, Some(platform)).unwrap();
    let err = socket.set_security(&SecuritySettings::new()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::AlreadyConnected {
                call: "set_security"
            })
        ),
        "{err}"
    );
    let err = socket
        .set_peer_target_name(PeerTargetName::parse("h.example.test").unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::AlreadyConnected {
                call: "set_peer_target_name"
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("must be called before connect"));
}

#[test]
fn connect_and_listen_need_security_first() {
    let domain = TrustDomain::new("example.test");
    let platform = domain.host("h", &[San::Dns("h.example.test")]).platform();
    let listener = TcpListener::bind(loopback()).unwrap();
    let socket = SecureSocket::with_platform(Domain::IPV4, platform.clone()).unwrap();
    let err = socket.connect(listener.local_addr().unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::NotConfigured { call: "connect" })
        ),
        "{err}"
    );
    let mut socket = SecureSocket::with_platform(Domain::IPV4, platform.clone()).unwrap();
    socket.bind(loopback()).unwrap();
    let err = socket.listen(8).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::NotConfigured { call: "listen" })
        ),
        "{err}"
    );
    let mut socket = SecureSocket::with_platform(Domain::IPV4, platform).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    assert!(matches!(
        socket.listen(8).unwrap_err(),
        Error::Usage(UsageError::NotBound)
    ));
}

#[test]
fn invalid_settings_are_refused_before_anything_happens() {
    let domain = TrustDomain::new("example.test");
    let platform = domain.host("h", &[San::Dns("h.example.test")]).platform();
    let mut socket = SecureSocket::with_platform(Domain::IPV4, platform).unwrap();
    let both = SecuritySettings::new()
        .with_flags(SecurityFlags::GUARANTEE_ENCRYPTION | SecurityFlags::ALLOW_INSECURE);
    let err = socket.set_security(&both).unwrap_err();
    assert!(
        matches!(err, Error::Settings(SettingsError::ConflictingFlags { .. })),
        "{err}"
    );
    let unknown = SecuritySettings::new().with_crypto_policy(CryptoPolicyKey::Name("fips".into()));
    let err = socket.set_security(&unknown).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Settings(SettingsError::UnknownCryptoPolicy { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("fips") && err.to_string().contains("standard"),
        "{err}"
    );
    // Nothing was configured by the failed calls.
    socket.set_security(&SecuritySettings::new()).unwrap();
}

#[test]
fn a_family_mismatch_is_reported() {
    let domain = TrustDomain::new("example.test");
    let platform = domain.host("h", &[San::Dns("h.example.test")]).platform();
    let mut socket = SecureSocket::with_platform(Domain::IPV6, platform).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    let err = socket.connect("127.0.0.1:9".parse().unwrap()).unwrap_err();
    assert!(
        matches!(err, Error::Usage(UsageError::WrongFamily { .. })),
        "{err}"
    );
}

#[test]
fn a_named_crypto_policy_is_used() {
    let domain = TrustDomain::new("example.test");
    let strict = "[crypto.strict]\nkey_exchange = [\"secp384r1\"]\ncipher_suites = [\"TLS13_AES_256_GCM_SHA384\"]\n";
    // The server's default is the strict policy too (the built-in standard has no P-384).
    let server_policy = format!("[defaults]\ncrypto = \"strict\"\n\n{strict}");
    let server = domain.host_with(
        "server",
        &[San::Dns("server.example.test")],
        &server_policy,
        |_| {},
    );
    let client = domain
        .host_with("client", &[San::Dns("client.example.test")], strict, |_| {})
        .platform();
    let srv = echo_server(server.platform());
    let settings =
        SecuritySettings::new().with_crypto_policy(CryptoPolicyKey::Name("strict".into()));
    let stream = connect_with(
        &client,
        &settings,
        Some(PeerTargetName::parse("server.example.test").unwrap()),
        srv.addr,
    )
    .unwrap();
    let info = stream.query_security();
    assert_eq!(
        info.cipher_suite.as_deref(),
        Some("TLS13_AES_256_GCM_SHA384")
    );
    assert_eq!(info.key_exchange_group.as_ref().unwrap().name, "secp384r1");
    assert!(!info.key_exchange_group.unwrap().post_quantum);
    stream.close().unwrap();
}

#[test]
fn only_ip_stream_sockets_can_be_secured() {
    let err = SecureSocket::new(Domain::UNIX).unwrap_err();
    assert!(err.to_string().contains("WSAEAFNOSUPPORT"), "{err}");
    let udp = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    let err = SecureSocket::from_socket(udp, None).unwrap_err();
    assert!(err.to_string().contains("TCP stream sockets"), "{err}");
}

#[test]
fn a_socket_bound_elsewhere_names_the_rule() {
    let domain = TrustDomain::new("example.test");
    let platform = domain.host("h", &[San::Dns("h.example.test")]).platform();
    let raw = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    raw.bind(&loopback().into()).unwrap();
    let mut socket = SecureSocket::from_socket(raw, Some(platform)).unwrap();
    let err = socket.set_security(&SecuritySettings::new()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Usage(UsageError::AlreadyBound {
                call: "set_security",
                ..
            })
        ),
        "{err}"
    );
}

/// `connect` blocks (bounded by the handshake timeout) even if someone made the socket
/// non-blocking through its descriptor: the attempt under way is waited for, not
/// reported as a timeout.
#[test]
fn a_socket_made_non_blocking_through_its_descriptor_still_connects() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let srv = echo_server(server.platform());
    let mut socket = SecureSocket::with_platform(Domain::IPV4, client.platform()).unwrap();
    socket.set_security(&SecuritySettings::new()).unwrap();
    socket
        .set_peer_target_name(PeerTargetName::parse("server.example.test").unwrap())
        .unwrap();
    socket2::SockRef::from(&socket)
        .set_nonblocking(true)
        .unwrap();
    let mut stream = socket.connect(srv.addr).unwrap();
    stream.write_all(b"12345678").unwrap();
    let mut echoed = [0u8; 8];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"12345678");
    stream.close().unwrap();
    assert!(srv.outcome().is_ok());
}
