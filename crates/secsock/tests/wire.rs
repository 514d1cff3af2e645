//! What crosses the wire: a relay between client and server records every byte.

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

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
    std::thread::sleep(Duration::from_millis(100));

    let up = relay.to_server.lock().unwrap().clone();
    let down = relay.to_client.lock().unwrap().clone();
    // 0x16 = TLS handshake record, 0x03 0x01 = the record-layer version of a ClientHello.
    assert_eq!(
        &up[..3],
        &[0x16, 0x03, 0x01],
        "the client's first bytes are a TLS ClientHello record"
    );
    assert_eq!(
        down[0], 0x16,
        "the server's first bytes are a TLS handshake record"
    );
    for (direction, bytes) in [("client to server", &up), ("server to client", &down)] {
        assert!(
            !contains(bytes, b"TOP-SECRET"),
            "payload visible in clear, {direction}"
        );
        assert!(
            !contains(bytes, b"do-not-leak"),
            "payload visible in clear, {direction}"
        );
        // Every record is a TLS record: after the handshake, application data (0x17).
        let mut at = 0;
        while at + 5 <= bytes.len() {
            let kind = bytes[at];
            assert!(
                matches!(kind, 0x14..=0x17),
                "{direction}: byte {at} starts a non-TLS record {kind:#x}"
            );
            let len = usize::from(u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]));
            at += 5 + len;
        }
        assert_eq!(
            at,
            bytes.len(),
            "{direction}: the stream is whole TLS records"
        );
    }
}
