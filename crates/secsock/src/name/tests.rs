//! The name tests' fixtures (certificates with given SANs, hand-built DER of the otherName
//! values) and the tests of [`PrincipalName::parse`] for every kind. `verify` and the
//! property tests use the DER helpers too.

use super::san::OID_KRB5_PRINCIPAL_NAME;
use super::spiffe::MAX_SPIFFE_ID_LEN;
use super::*;
use rcgen::{
    CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, KeyPair, OtherNameValue,
    SanType,
};

// ---- parsing -------------------------------------------------------------------

#[test]
fn parses_valid_names_to_canonical_form() {
    let long_ok = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
    assert_eq!(long_ok.len(), 253);
    let spiffe_long_ok = format!(
        "spiffe://example.org/{}",
        "p".repeat(MAX_SPIFFE_ID_LEN - 21)
    );
    let cases: &[(&str, &str, &str)] = &[
        // SPNs
        (
            "host/server.example.test",
            "host/server.example.test",
            "SPN",
        ),
        (
            "HOST/Server.Example.TEST",
            "host/server.example.test",
            "SPN",
        ),
        (
            "host/server.example.test.",
            "host/server.example.test",
            "SPN",
        ),
        ("host/localhost", "host/localhost", "SPN"),
        ("host/server:1", "host/server:1", "SPN"),
        ("host/server:65535", "host/server:65535", "SPN"),
        ("host/server:0443", "host/server:443", "SPN"),
        (
            "HTTP/Web.Example.Test:8080/API@Example.TEST",
            "http/web.example.test:8080/API@Example.TEST",
            "SPN",
        ),
        (
            "ldap/dc1.example.test/example.test@EXAMPLE.TEST",
            "ldap/dc1.example.test/example.test@EXAMPLE.TEST",
            "SPN",
        ),
        (
            "my_svc.v2-x/_srv.example.test",
            "my_svc.v2-x/_srv.example.test",
            "SPN",
        ),
        (
            "host/bücher.example:8443",
            "host/xn--bcher-kva.example:8443",
            "SPN",
        ),
        ("host/192.0.2.1", "host/192.0.2.1", "SPN"),
        ("host/192.0.2.1:443", "host/192.0.2.1:443", "SPN"),
        ("host/[2001:db8::1]:443", "host/[2001:db8::1]:443", "SPN"),
        ("host/[2001:DB8::1]", "host/[2001:db8::1]", "SPN"),
        ("host/2001:db8::1", "host/[2001:db8::1]", "SPN"),
        ("host/::1/svc@R", "host/[::1]/svc@R", "SPN"),
        // DNS names
        ("server.example.test", "server.example.test", "DNS name"),
        ("Server.Example.TEST.", "server.example.test", "DNS name"),
        ("localhost", "localhost", "DNS name"),
        (
            "_sip._tcp.example.test",
            "_sip._tcp.example.test",
            "DNS name",
        ),
        ("bücher.example", "xn--bcher-kva.example", "DNS name"),
        ("BÜCHER.example", "xn--bcher-kva.example", "DNS name"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example", "DNS name"),
        ("1.2.3.example", "1.2.3.example", "DNS name"),
        (&long_ok, &long_ok, "DNS name"),
        // IP addresses
        ("192.0.2.1", "192.0.2.1", "IP address"),
        ("2001:DB8::1", "2001:db8::1", "IP address"),
        ("[2001:db8::1]", "2001:db8::1", "IP address"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1", "IP address"),
        // SPIFFE IDs
        (
            "spiffe://example.org/ns/prod/sa/web",
            "spiffe://example.org/ns/prod/sa/web",
            "SPIFFE ID",
        ),
        (
            "SPIFFE://example.org/Path",
            "spiffe://example.org/Path",
            "SPIFFE ID",
        ),
        ("spiffe://example.org", "spiffe://example.org", "SPIFFE ID"),
        (
            "spiffe://my-td_1.example/a.b-c_D/..x",
            "spiffe://my-td_1.example/a.b-c_D/..x",
            "SPIFFE ID",
        ),
        (&spiffe_long_ok, &spiffe_long_ok, "SPIFFE ID"),
        // user principals
        (
            "user:alice@EXAMPLE.TEST",
            "user:alice@EXAMPLE.TEST",
            "user principal",
        ),
        (
            "USER:Alice@Example.Test",
            "user:Alice@Example.Test",
            "user principal",
        ),
        (
            "user:alice.smith+x@example.test",
            "user:alice.smith+x@example.test",
            "user principal",
        ),
    ];
    for &(input, display, kind) in cases {
        let name = PrincipalName::parse(input).unwrap_or_else(|e| panic!("`{input}`: {e}"));
        assert_eq!(name.to_string(), display, "display of `{input}`");
        assert_eq!(name.kind(), kind, "kind of `{input}`");
        let again: PrincipalName = display
            .parse()
            .unwrap_or_else(|e| panic!("`{display}`: {e}"));
        assert_eq!(
            again, name,
            "canonical form of `{input}` parses to the same name"
        );
    }
}

#[test]
fn refuses_invalid_names_with_a_precise_reason() {
    let long_label = format!("{}.test", "a".repeat(64));
    let long_name = format!("{0}.{0}.{0}.{0}", "a".repeat(63));
    let long_spiffe = format!("spiffe://example.org/{}", "p".repeat(MAX_SPIFFE_ID_LEN));
    let cases: &[(&str, &str)] = &[
        // whole input
        ("", "name is empty"),
        (" host/x", "leading or trailing whitespace"),
        ("host/x ", "leading or trailing whitespace"),
        ("server.example.test\n", "leading or trailing whitespace"),
        ("a\u{0}b", "control character (U+0000)"),
        ("a\u{7}b.test", "control character (U+0007)"),
        // DNS names and SPN hosts
        (
            "host/-bad.example.test",
            "label `-bad` starts with a hyphen",
        ),
        ("bad-.example.test", "label `bad-` ends with a hyphen"),
        ("a..b", "empty label"),
        (".a", "empty label"),
        ("a..", "empty label"),
        (".", "DNS name is empty"),
        (
            "*.example.test",
            "wildcards are not allowed in a target name",
        ),
        (
            "host/*.example.test",
            "wildcards are not allowed in a target name",
        ),
        (
            "f*.example.test",
            "wildcards are not allowed in a target name",
        ),
        ("1.2.3", "`1.2.3` is not a valid IP address"),
        ("host/1.2.3", "`1.2.3` is not a valid IP address"),
        ("256.1.1.1", "not a valid IP address"),
        ("01.2.3.4", "not a valid IP address"),
        (
            &long_label,
            "is 64 characters long, more than the 63 allowed",
        ),
        (
            &long_name,
            "DNS name is 255 characters long, more than the 253 allowed",
        ),
        ("a b.test", "label `a b` contains ' '"),
        ("bü cher.example", "label `bü cher` contains ' '"),
        ("Ａ＊.example", "label `a*` contains '*'"),
        ("a!.test", "label `a!` contains '!'"),
        (
            "xn--a.example",
            "label `xn--a` is not a valid internationalized label",
        ),
        (
            "xn--bcher-kva9999999999999.example",
            "is not a valid internationalized label",
        ),
        (
            "\u{301}bücher.example",
            "not a valid internationalized label",
        ),
        ("server.example.test:443", "a port belongs in an SPN"),
        ("fe80::1%eth0", "is not an IP address"),
        // SPN structure
        ("host/server:99999", "port `99999` is out of range 1-65535"),
        ("host/server:0", "port `0` is out of range 1-65535"),
        (
            "host/server:123456789012345678901234567890",
            "is out of range 1-65535",
        ),
        ("host/server:http", "port `http` is not a decimal number"),
        ("host/server:-1", "port `-1` is not a decimal number"),
        ("host/server:", "port after `:` is empty"),
        ("host/2001:db8::zz:443", "needs brackets"),
        ("host/[2001:db8::1", "has no closing `]`"),
        ("host/[192.0.2.1]", "brackets are only for IPv6 addresses"),
        ("host/[::1]x", "unexpected `x` after `]`"),
        ("host/[::1]:", "port after `:` is empty"),
        ("/server", "service class before the `/` is empty"),
        ("ho st/x", "service class `ho st` contains ' '"),
        ("ho:st/x", "service class `ho:st` contains ':'"),
        ("host/", "host is empty"),
        ("host/:443", "host is empty"),
        ("host/server@", "realm after `@` is empty"),
        (
            "host/server@EXAMPLE TEST",
            "realm `EXAMPLE TEST` contains ' '",
        ),
        ("host/a@b/c", "realm `b/c` contains '/'"),
        ("host/a@b@R", "label `a@b` contains '@'"),
        ("host/server/", "service name after the host is empty"),
        ("host/server/a/b", "service name `a/b` contains `/`"),
        // URIs
        (
            "https://example.test/x",
            "`https:` URIs are not principal names; use a SPIFFE ID",
        ),
        ("spiffe://", "SPIFFE trust domain is empty"),
        ("spiffe:///a", "SPIFFE trust domain is empty"),
        (
            "spiffe://Example.org/a",
            "contains uppercase letters; trust domains are lowercase (`example.org`)",
        ),
        ("spiffe://example.org:8080/a", "contains a port"),
        ("spiffe://user@example.org/a", "contains userinfo"),
        ("spiffe://exa%mple.org", "contains '%'"),
        ("spiffe://example.org/", "SPIFFE path must not end with `/`"),
        (
            "spiffe://example.org/a/",
            "SPIFFE path must not end with `/`",
        ),
        ("spiffe://example.org//a", "empty segment"),
        (
            "spiffe://example.org/a/../b",
            "SPIFFE path segment `..` is not allowed",
        ),
        (
            "spiffe://example.org/./b",
            "SPIFFE path segment `.` is not allowed",
        ),
        ("spiffe://example.org/a?b=c", "no query"),
        ("spiffe://example.org/a#b", "no fragment"),
        (
            "spiffe://example.org/a%20b",
            "SPIFFE path segment `a%20b` contains '%'",
        ),
        ("spiffe://example.org/a b", "contains ' '"),
        (&long_spiffe, "more than the 2048 allowed"),
        // user principals
        ("user:alice", "has no `@`"),
        ("user:a@b@c", "more than one `@`"),
        (
            "user:@EXAMPLE.TEST",
            "user name in the user principal is empty",
        ),
        ("user:alice@", "domain in the user principal is empty"),
        (
            "user:al ice@EXAMPLE.TEST",
            "user name `al ice` contains whitespace",
        ),
        ("user:a/b@EXAMPLE.TEST", "user name `a/b` contains `/`"),
        (
            "user:alice@EXAMPLE/TEST",
            "domain `EXAMPLE/TEST` contains `/`",
        ),
        // bracketed whole-target addresses
        (
            "[::1]:443",
            "a port is only allowed in an SPN, e.g. `host/[::1]:443`",
        ),
        ("[192.0.2.1]", "brackets are only for IPv6 addresses"),
        ("[::1", "has no closing `]`"),
    ];
    for &(input, expected) in cases {
        match PrincipalName::parse(input) {
            Ok(name) => {
                panic!("`{input}` parsed as {name:?}, expected an error with `{expected}`")
            }
            Err(error) => {
                assert!(
                    error.reason().contains(expected),
                    "`{input}`: reason `{}` lacks `{expected}`",
                    error.reason()
                );
                assert_eq!(error.input(), input);
            }
        }
    }
}

#[test]
fn error_display_names_the_input_and_the_reason() {
    let error = PrincipalName::parse("host/server:99999").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid principal name `host/server:99999`: port `99999` is out of range 1-65535"
    );
    let error = PrincipalName::parse("a\nb").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid principal name `a\\nb`: name contains a control character (U+000A)"
    );
    let error = CertificateNames::from_der(b"not a certificate").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid certificate (17 bytes of DER): "),
        "{error}"
    );
}

#[test]
fn accessors_expose_the_parts() {
    let Ok(PrincipalName::Spn(spn)) =
        PrincipalName::parse("HTTP/Web.Example.Test:8080/api@EXAMPLE.TEST")
    else {
        panic!("not an SPN");
    };
    assert_eq!(spn.service_class(), "http");
    assert_eq!(spn.host(), &Host::Dns(DnsName("web.example.test".into())));
    assert_eq!(spn.port(), Some(8080));
    assert_eq!(spn.service_name(), Some("api"));
    assert_eq!(spn.realm(), Some("EXAMPLE.TEST"));

    let Ok(PrincipalName::Spiffe(id)) = PrincipalName::parse("spiffe://example.org/ns/web") else {
        panic!("not a SPIFFE ID");
    };
    assert_eq!((id.trust_domain(), id.path()), ("example.org", "/ns/web"));

    let Ok(PrincipalName::User(user)) = PrincipalName::parse("user:alice@EXAMPLE.TEST") else {
        panic!("not a user principal");
    };
    assert_eq!((user.name(), user.domain()), ("alice", "EXAMPLE.TEST"));

    let principal = KerberosPrincipal {
        realm: "R".into(),
        components: vec!["host".into(), "a/b@c\\d".into()],
    };
    assert_eq!(principal.to_string(), "host/a\\/b\\@c\\\\d@R");
}

// ---- certificates ----------------------------------------------------------------

pub(crate) fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap_or_else(|e| panic!("{e}")))
}
pub(crate) fn uri(uri: &str) -> SanType {
    SanType::URI(uri.try_into().unwrap_or_else(|e| panic!("{e}")))
}
pub(crate) fn email(email: &str) -> SanType {
    SanType::Rfc822Name(email.try_into().unwrap_or_else(|e| panic!("{e}")))
}
pub(crate) fn ip(ip: &str) -> SanType {
    SanType::IpAddress(ip.parse().unwrap_or_else(|e| panic!("{e}")))
}
pub(crate) fn upn(upn: &str) -> SanType {
    SanType::OtherName((
        vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
        OtherNameValue::Utf8String(upn.into()),
    ))
}

/// A self-signed certificate with these SANs and subject CN, read back from its DER.
pub(crate) fn certificate(sans: Vec<SanType>, common_name: Option<&str>) -> CertificateNames {
    certificate_for(sans, common_name, vec![])
}

/// A user certificate (clientAuth only) with these SANs.
pub(crate) fn user_certificate(sans: Vec<SanType>) -> CertificateNames {
    certificate_for(sans, None, vec![ExtendedKeyUsagePurpose::ClientAuth])
}

/// Like [`certificate`], with these extended key usages.
pub(crate) fn certificate_for(
    sans: Vec<SanType>,
    common_name: Option<&str>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
) -> CertificateNames {
    let mut params = CertificateParams::default();
    params.extended_key_usages = ekus;
    params.subject_alt_names = sans;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(common_name) = common_name {
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
    }
    sign(params)
}

/// A self-signed certificate whose only SAN extension is `general_names` (hand-built).
pub(crate) fn certificate_with_raw_sans(general_names: &[Vec<u8>]) -> CertificateNames {
    certificate_with_raw_sans_for(general_names, vec![])
}

pub(crate) fn certificate_with_raw_sans_for(
    general_names: &[Vec<u8>],
    ekus: Vec<ExtendedKeyUsagePurpose>,
) -> CertificateNames {
    let mut params = CertificateParams::default();
    params.extended_key_usages = ekus;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let content = tlv(0x30, &general_names.concat());
    params.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 17], content)];
    sign(params)
}

pub(crate) fn sign(params: CertificateParams) -> CertificateNames {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
    CertificateNames::from_der(cert.der()).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xFF => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// KRB5PrincipalName DER (RFC 4556), without the otherName `[0]` wrapper.
pub(crate) fn krb5_principal_name(realm: &str, components: &[&str]) -> Vec<u8> {
    let strings: Vec<u8> = components
        .iter()
        .flat_map(|c| tlv(0x1B, c.as_bytes()))
        .collect();
    let name_type = if components.len() == 1 { 1 } else { 3 };
    let principal = tlv(
        0x30,
        &[
            tlv(0xA0, &tlv(0x02, &[name_type])),
            tlv(0xA1, &tlv(0x30, &strings)),
        ]
        .concat(),
    );
    tlv(
        0x30,
        &[
            tlv(0xA0, &tlv(0x1B, realm.as_bytes())),
            tlv(0xA1, &principal),
        ]
        .concat(),
    )
}

/// A GeneralName otherName entry: `[0] { type-id, [0] EXPLICIT value }`.
pub(crate) fn other_name(oid: &[u8], value: &[u8]) -> Vec<u8> {
    tlv(0xA0, &[tlv(0x06, oid), tlv(0xA0, value)].concat())
}

/// A Kerberos principal-name SAN (a GeneralName), for hand-built SAN extensions.
pub(crate) fn krb5_san(realm: &str, components: &[&str]) -> Vec<u8> {
    other_name(
        OID_KRB5_PRINCIPAL_NAME,
        &krb5_principal_name(realm, components),
    )
}

/// Checks each (target, expected) against `cert`, with parsed targets and, for raw
/// ones, targets written `raw:TEXT`.
pub(crate) fn check_matches(what: &str, cert: &CertificateNames, cases: &[(&str, bool)]) {
    for &(target, expected) in cases {
        let name = match target.strip_prefix("raw:") {
            Some(text) => PeerTargetName::raw(text),
            None => PeerTargetName::parse(target),
        }
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            name.is_proven_by(cert),
            expected,
            "{what}: `{target}` against {:?}",
            cert.presented()
        );
    }
}
