//! Interoperability with real OpenSSL peers (`openssl s_client` / `s_server`) and with
//! certificates made by the `openssl` command-line tools.

use crate::support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use secsock::{NegotiationError, PrincipalName};
use support::*;

fn pem(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn openssl_client_with_a_certificate_is_served() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let srv = echo_server(server.platform());
    let (out, err) = openssl_client(
        srv.addr,
        &[
            "-quiet",
            "-tls1_3",
            "-cert",
            pem(&client.cert),
            "-key",
            pem(&client.key),
            "-CAfile",
            pem(&client.ca),
            "-verify_return_error",
            "-verify_hostname",
            "server.example.test",
            "-servername",
            "server.example.test",
        ],
        b"hello from openssl\n",
        b"hello from openssl\n",
    );
    assert!(
        contains(&out, b"hello from openssl\n"),
        "no echo; stderr: {err}"
    );
    let info = srv.outcome().unwrap();
    let names: Vec<String> = info
        .peer_machine
        .unwrap()
        .names
        .iter()
        .map(PrincipalName::to_string)
        .collect();
    assert_eq!(names, ["client.example.test"]);
}

#[test]
fn openssl_client_without_a_certificate_is_refused() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let srv = echo_server(server.platform());
    let (out, _err) = openssl_client(
        srv.addr,
        &[
            "-quiet",
            "-tls1_3",
            "-CAfile",
            pem(&server.ca),
            "-servername",
            "server.example.test",
        ],
        b"let me in\n",
        b"let me in\n",
    );
    assert!(
        !contains(&out, b"let me in"),
        "an unauthenticated client got data back"
    );
    let refusal = srv.outcome().unwrap_err();
    assert!(refusal.contains("presented no certificate"), "{refusal}");
}

/// Starts `openssl s_server -Verify 1 -rev` (reverses each line) with `server`'s identity,
/// trusting `ca` for client certificates.
fn reversing_openssl_server(cert: &Path, key: &Path, ca: &Path) -> OpensslServer {
    openssl_server(&[
        "-tls1_3",
        "-cert",
        pem(cert),
        "-key",
        pem(key),
        "-CAfile",
        pem(ca),
        "-Verify",
        "1",
        "-rev",
    ])
}

#[test]
fn secsock_client_with_openssl_server_requiring_client_certificates() {
    let domain = TrustDomain::new("example.test");
    let server = domain.host("server", &[San::Dns("server.example.test")]);
    let client = domain
        .host("client", &[San::Dns("client.example.test")])
        .platform();
    let s_server = reversing_openssl_server(&server.cert, &server.key, &server.ca);
    let mut stream = connect(&client, "host/server.example.test", s_server.addr).unwrap();
    let info = stream.query_security();
    let names: Vec<String> = info
        .peer_machine
        .as_ref()
        .unwrap()
        .names
        .iter()
        .map(PrincipalName::to_string)
        .collect();
    assert_eq!(names, ["server.example.test"]);
    // OpenSSL 3.0 has no ML-KEM: the hybrid is offered, X25519 is what both support.
    assert_eq!(info.key_exchange_group.as_ref().unwrap().name, "X25519");
    stream.write_all(b"secsock\n").unwrap();
    let mut back = [0u8; 8];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"kcosces\n");
    drop(stream);
}

fn connect_error(
    server_cert: &Path,
    server_key: &Path,
    server_ca: &Path,
    client: &Host,
    target: &str,
) -> NegotiationError {
    let s_server = reversing_openssl_server(server_cert, server_key, server_ca);
    let err = connect(&client.platform(), target, s_server.addr).unwrap_err();
    err.negotiation()
        .cloned()
        .unwrap_or_else(|| panic!("not a negotiation error: {err}"))
}

#[test]
fn openssl_server_from_an_untrusted_ca_is_refused() {
    let domain = TrustDomain::new("example.test");
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    // A CA of another name, and a rogue CA that copies our CA's name.
    for (rogue, expected) in [
        (
            TrustDomain::new("rogue.test"),
            "not issued by (a chain leading to) one of the policy's trust anchors",
        ),
        (
            TrustDomain::new("example.test"),
            "does not verify against the policy's trust anchors",
        ),
    ] {
        let server = rogue.host("server", &[San::Dns("server.example.test")]);
        match connect_error(
            &server.cert,
            &server.key,
            &domain.ca_path,
            &client,
            "server.example.test",
        ) {
            NegotiationError::UntrustedChain { reason, .. } => {
                assert!(reason.contains(expected), "{reason}")
            }
            other => panic!("expected UntrustedChain, got {other:?}"),
        }
    }
}

#[test]
fn openssl_server_with_an_expired_certificate_is_refused() {
    let domain = TrustDomain::new("example.test");
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let server = domain.host_with("server", &[San::Dns("server.example.test")], "", |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    match connect_error(
        &server.cert,
        &server.key,
        &server.ca,
        &client,
        "server.example.test",
    ) {
        e @ NegotiationError::CertificateExpired {
            not_after: Some(_), ..
        } => {
            assert!(
                e.to_string().contains("expired at 2021-01-01T00:00:00Z"),
                "{e}"
            )
        }
        other => panic!("expected CertificateExpired, got {other:?}"),
    }
}

#[test]
fn openssl_server_for_another_name_is_refused() {
    let domain = TrustDomain::new("example.test");
    let client = domain.host("client", &[San::Dns("client.example.test")]);
    let server = domain.host("server", &[San::Dns("impostor.example.test")]);
    match connect_error(
        &server.cert,
        &server.key,
        &server.ca,
        &client,
        "host/server.example.test",
    ) {
        NegotiationError::PeerNameMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, "host/server.example.test");
            assert!(
                presented.contains(&"DNS:impostor.example.test".to_string()),
                "{presented:?}"
            );
        }
        other => panic!("expected PeerNameMismatch, got {other:?}"),
    }
}

/// A CA and identities made only with the `openssl` command line, including a SPIFFE
/// URI SAN and a Kerberos principal-name SAN.
struct OpensslDomain {
    dir: tempfile::TempDir,
}

impl OpensslDomain {
    fn run(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn new() -> Self {
        let d = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        d.run(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ca.key",
        ]);
        d.run(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=OpenSSL Test CA",
            "-days",
            "30",
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        d
    }

    /// Issues `label` with the given `subjectAltName` config lines (an `[alt]` section body
    /// plus any extra sections), returns its policy host.
    fn issue(&self, label: &str, alt: &str, serial: &str) -> Host {
        let ext = format!(
            "[v3]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = @alt\n[alt]\n{alt}\n"
        );
        std::fs::write(self.dir.path().join(format!("{label}.cnf")), ext).unwrap();
        self.run(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{label}.key"),
        ]);
        self.run(&[
            "req",
            "-new",
            "-key",
            &format!("{label}.key"),
            "-subj",
            &format!("/CN={label}"),
            "-out",
            &format!("{label}.csr"),
        ]);
        self.run(&[
            "x509",
            "-req",
            "-in",
            &format!("{label}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "30",
            "-out",
            &format!("{label}.crt"),
            "-extfile",
            &format!("{label}.cnf"),
            "-extensions",
            "v3",
        ]);
        let dir = self.dir.path().join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let cert = self.dir.path().join(format!("{label}.crt"));
        let key = dir.join("host.key");
        write_private(
            &key,
            &std::fs::read_to_string(self.dir.path().join(format!("{label}.key"))).unwrap(),
        );
        let ca = self.dir.path().join("ca.crt");
        let policy = write_policy(&dir, &cert, &key, &[&ca], "");
        Host {
            dir,
            cert,
            key,
            ca,
            policy,
        }
    }
}

#[test]
fn openssl_made_certificates_with_spiffe_and_kerberos_names() {
    let d = OpensslDomain::new();
    let server = d.issue(
        "server",
        "URI.1 = spiffe://example.test/server\notherName.1 = 1.3.6.1.5.2.2;SEQUENCE:princ_name\n\
         [princ_name]\nrealm = EXP:0, GeneralString:EXAMPLE.TEST\nprincipal_name = EXP:1, SEQUENCE:principal_seq\n\
         [principal_seq]\nname_type = EXP:0, INTEGER:2\nname_string = EXP:1, SEQUENCE:principals\n\
         [principals]\nprinc1 = GeneralString:host\nprinc2 = GeneralString:server.example.test",
        "0x1001",
    );
    let client = d.issue("client", "URI.1 = spiffe://example.test/client", "0x1002");
    let srv = echo_server(server.platform());
    let client = client.platform();

    // A URI-only server certificate is matched by its SPIFFE ID (no DNS name needed).
    let stream = connect(&client, "spiffe://example.test/server", srv.addr).unwrap();
    let names: Vec<String> = stream
        .query_security()
        .peer_machine
        .unwrap()
        .names
        .iter()
        .map(PrincipalName::to_string)
        .collect();
    assert!(
        names.contains(&"spiffe://example.test/server".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"host/server.example.test@EXAMPLE.TEST".to_string()),
        "{names:?}"
    );
    stream.close().unwrap();
    let server_saw = srv.outcome().unwrap();
    let client_names: Vec<String> = server_saw
        .peer_machine
        .unwrap()
        .names
        .iter()
        .map(PrincipalName::to_string)
        .collect();
    assert_eq!(client_names, ["spiffe://example.test/client"]);

    // The Kerberos principal-name SAN proves the SPN, with or without the realm.
    for target in [
        "host/server.example.test@EXAMPLE.TEST",
        "host/server.example.test",
    ] {
        connect(&client, target, srv.addr)
            .unwrap_or_else(|e| panic!("{target}: {e}"))
            .close()
            .unwrap();
    }
    // But not another realm, another service, or another SPIFFE path.
    for target in [
        "host/server.example.test@OTHER.TEST",
        "http/server.example.test",
        "spiffe://example.test/other",
    ] {
        let err = connect(&client, target, srv.addr).unwrap_err();
        assert!(
            matches!(
                err.negotiation(),
                Some(NegotiationError::PeerNameMismatch { .. })
            ),
            "{target}: {err}"
        );
    }
}
