//! What crosses the wire: a relay between client and server records every byte.

use crate::support;

use std::io::{Read, Write};
use std::net::Shutdown;

use support::*;

#[test]
fn payload_never_appears_in_clear_and_the_first_byte_is_a_handshake_record() {
    let domain = TrustDomain::new("example.test");
    let srv = echo_server(
        domain
            .host("server", &[San::Dns("server.example.test")])
            .platform(),
    );
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let relay = relay(srv.addr);

    let secret = b"TOP-SECRET-PAYLOAD-0123456789-do-not-leak";
    let mut stream = connect(&client, "server.example.test", relay.addr).unwrap();
    for _ in 0..50 {
        stream.write_all(secret).unwrap();
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), secret.len() * 50);
    stream.close().unwrap();
    relay.wait_idle();

    let up = relay.to_server.lock().unwrap().clone();
    let down = relay.to_client.lock().unwrap().clone();
    assert_only_tls_records(&up, &down, &[b"TOP-SECRET", b"do-not-leak"]);
}
