//! Expired CRLs (issue 12, item 14): a CRL past its nextUpdate may miss revocations made
//! since. With `[trust] expired_crls = "refuse"` the peers of its issuer are refused; by
//! default it is still used (and the log says so at load and once a day). Real secsock
//! peers over TCP on loopback.

use crate::support;

use std::io::{Read, Write};
use std::sync::Arc;

use secsock::Platform;
use support::*;

/// A server whose `[trust]` has `ca.crl`, current until `next_update` from now, and
/// `extra`; and a client of the same trust domain.
fn server_and_client(
    next_update: time::Duration,
    extra: &str,
) -> (TrustDomain, Host, Arc<Platform>) {
    let domain = TrustDomain::new("example.test");
    let server = domain.host_with(
        "server",
        &[San::Dns("server.example.test")],
        &format!("crls = [\"ca.crl\"]\n{extra}"),
        |_| {},
    );
    let crl = domain.crl(time::OffsetDateTime::now_utc() + next_update);
    std::fs::write(server.dir.join("ca.crl"), crl).unwrap();
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    (domain, server, client)
}

/// One echo over a new connection: the client's and the server's outcomes.
fn attempt(server: &Host, client: &Arc<Platform>) -> (Result<(), String>, Result<(), String>) {
    let srv = echo_server(server.platform());
    let client_result = connect(client, "server.example.test", srv.addr)
        .map_err(|e| e.to_string())
        .and_then(|mut stream| {
            // TLS 1.3 clients finish first: a refusal of our certificate shows at the
            // first read.
            let mut back = [0u8; 4];
            stream
                .write_all(b"ping")
                .and_then(|()| stream.read_exact(&mut back))
                .map_err(|e| e.to_string())
        });
    (client_result, srv.outcome().map(|_| ()))
}

#[test]
fn an_expired_crl_refuses_its_issuers_peers_when_the_policy_says_refuse() {
    let (_domain, server, client) =
        server_and_client(-time::Duration::hours(1), "expired_crls = \"refuse\"\n");
    let (client_result, server_result) = attempt(&server, &client);
    let refused = client_result.unwrap_err();
    assert!(refused.contains("refused our certificate"), "{refused}");
    let why = server_result.unwrap_err();
    assert!(why.contains("the CRL for its issuer has expired"), "{why}");
}

/// The default until CRLs can be reloaded without a restart: used, with a warning.
#[test]
fn an_expired_crl_is_still_used_by_default() {
    let (_domain, server, client) = server_and_client(-time::Duration::hours(1), "");
    let (client_result, server_result) = attempt(&server, &client);
    client_result.unwrap();
    server_result.unwrap();
}

#[test]
fn a_current_crl_refuses_nobody_when_the_policy_says_refuse() {
    let (_domain, server, client) =
        server_and_client(time::Duration::days(3), "expired_crls = \"refuse\"\n");
    let (client_result, server_result) = attempt(&server, &client);
    client_result.unwrap();
    server_result.unwrap();
}
