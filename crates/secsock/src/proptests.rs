//! Property tests (issue 12): the code that reads what a caller, a certificate, a policy
//! file or a peer says never panics, whatever it is given, and what it prints parses back
//! to the same thing.
//!
//! - `names`: principal and peer target names, certificate names, matching.
//! - `policy_file`: the policy file, durations and sizes.
//! - `user_auth`: user-authentication frames, HELLO payloads, SCRAM messages and verifiers.
//! - `client_hello`: the listener's peek at the first bytes and at a ClientHello's ALPN.
//!
//! Every property runs a CI-sized number of cases, chosen per property; `PROPTEST_CASES=N`
//! runs N cases of every one (the long run, DESIGN.md §10). A failure prints its input,
//! shrunk: keep it as a regression case in the unit tests of the module that failed.
//!
//! Each parser is called through one helper here, so that a change of its signature is
//! one edit.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The configuration of a property that runs `cases` cases unless `PROPTEST_CASES` says.
fn config(cases: u32) -> Config {
    // `Config::default()` reads the PROPTEST_* variables.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    // A failure is printed and becomes a unit test; nothing is written beside the source.
    config.failure_persistence = None;
    config
}

/// Runs `property` on `cases` values of `strategy`, as `proptest!` does; a plain function,
/// so that a property can share a fixture made once.
fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(config(cases));
    if let Err(error) = runner.run(&strategy, property) {
        panic!("{error}");
    }
}

/// Arbitrary text: any Unicode scalar values, control characters and NUL included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..=max).prop_map(String::from_iter)
}

/// Random text made mostly of `pieces`, what a parser looks for, so that it gets far in.
fn soup(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(pieces).prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
        ],
        0..=max,
    )
    .prop_map(|parts| parts.concat())
}

/// `Some` value of `strategy` one time in ten, else `None`.
fn rarely<S: Strategy>(strategy: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::weighted(0.1, strategy)
}

/// One edit of a text, at a position chosen among its characters.
#[derive(Debug, Clone)]
enum TextEdit {
    Insert(Index, String),
    Delete(Index, usize),
    Replace(Index, usize, String),
    Duplicate(Index, usize),
}

/// `text` after one to `max_edits` edits that insert or replace `pieces`.
fn mutated_text(
    text: impl Strategy<Value = String>,
    pieces: &'static [&'static str],
    max_edits: usize,
) -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        (any::<Index>(), soup(pieces, 2)).prop_map(|(at, s)| TextEdit::Insert(at, s)),
        (any::<Index>(), 1usize..8).prop_map(|(at, n)| TextEdit::Delete(at, n)),
        (any::<Index>(), 1usize..4, soup(pieces, 1))
            .prop_map(|(at, n, s)| TextEdit::Replace(at, n, s)),
        (any::<Index>(), 1usize..40).prop_map(|(at, n)| TextEdit::Duplicate(at, n)),
    ];
    (text, prop::collection::vec(edit, 1..=max_edits))
        .prop_map(|(text, edits)| apply_text_edits(&text, &edits))
}

fn apply_text_edits(text: &str, edits: &[TextEdit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let len = chars.len();
        match edit {
            TextEdit::Insert(at, s) => {
                let i = at.index(len + 1);
                chars.splice(i..i, s.chars());
            }
            TextEdit::Delete(at, n) | TextEdit::Replace(at, n, _) | TextEdit::Duplicate(at, n)
                if len > 0 =>
            {
                let i = at.index(len);
                let end = (i + n).min(len);
                let with: Vec<char> = match edit {
                    TextEdit::Replace(_, _, s) => s.chars().collect(),
                    TextEdit::Duplicate(..) => chars[i..end].repeat(2),
                    _ => Vec::new(),
                };
                chars.splice(i..end, with);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// One edit of bytes, at a position chosen among them.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
}

/// `bytes` after one to four edits.
fn mutated_bytes(bytes: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edit = prop_oneof![
        4 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| ByteEdit::Flip(at, mask)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| ByteEdit::Set(at, b)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| ByteEdit::Insert(at, b)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(at, n)| ByteEdit::Delete(at, n)),
        1 => any::<Index>().prop_map(ByteEdit::Truncate),
    ];
    (bytes, prop::collection::vec(edit, 1..=4)).prop_map(|(mut bytes, edits)| {
        for edit in edits {
            let len = bytes.len();
            match edit {
                ByteEdit::Insert(at, b) => {
                    let i = at.index(len + 1);
                    bytes.splice(i..i, b);
                }
                _ if len == 0 => {}
                ByteEdit::Flip(at, mask) => bytes[at.index(len)] ^= mask,
                ByteEdit::Set(at, b) => bytes[at.index(len)] = b,
                ByteEdit::Delete(at, n) => {
                    let i = at.index(len);
                    bytes.drain(i..(i + n).min(len));
                }
                ByteEdit::Truncate(at) => bytes.truncate(at.index(len)),
            }
        }
        bytes
    })
}

use crate::name::tests::{krb5_san, tlv};

mod names {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::LazyLock;

    use rcgen::{
        BasicConstraints, CertificateParams, CidrSubnet, CustomExtension, DnType,
        ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, NameConstraints, OtherNameValue,
        SanType,
    };

    use super::*;
    use crate::name::constraints::PathConstraints;
    use crate::name::{CertificateNames, KerberosPrincipal, PeerTargetName, PrincipalName};

    /// What names are made of, and what their parsers look for.
    #[rustfmt::skip]
    const PIECES: &[&str] = &[
        "a", "Z", "7", "0", ".", "..", "-", "_", "/", "//", ":", "::", "@", "[", "]", "*",
        "*.", "%", "=", ",", "+", "?", "#", " ", "\u{a0}", "\u{ad}", "\u{200b}", "\u{200d}",
        "\u{202e}", "\u{fe0f}", "\u{fffd}", "é", "ß", "ſ", "ﬁ", "\u{212a}", "İ", "。", "．", "１",
        "٣", "\u{ff0f}", "\u{ff1a}", "\u{ff20}", "😀", "xn--", "XN--", "xn--nxasmq6b",
        "xn--bcher-kva", "user:", "USER:", "spiffe://", "SPIFFE://", "http://", "host/",
        "HTTP/", "::ffff:", "127.0.0.1", "[::1]", "2001:db8::1", ":443", ":0", ":0443",
        ":65536", "@EXAMPLE.TEST", "example.test", "bücher", "пример", "例え", "ns", "sa",
    ];

    // ---- generators --------------------------------------------------------------------

    fn ascii_label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([a-zA-Z0-9_-]{0,14}[a-zA-Z0-9])?"
            .prop_filter("an A-label needs valid punycode", |label| {
                !label.to_ascii_lowercase().starts_with("xn--")
            })
    }

    /// An ASCII DNS name a target may give (any case, maybe a trailing dot): it parses.
    fn ascii_dns_name() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => prop::sample::select(&[
                "example.test", "db.example.test", "a.dept.example.test", "other.test", "localhost",
            ][..])
            .prop_map(str::to_owned),
            4 => (
                prop::collection::vec(ascii_label(), 0..4),
                // The last label is not all digits (that would be an IP address) and, like
                // every label here, no A-label prefix without valid punycode after it.
                "[a-zA-Z]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?"
                    .prop_filter("an A-label needs valid punycode", |label| {
                        !label.to_ascii_lowercase().starts_with("xn--")
                    }),
                any::<bool>(),
            )
                .prop_map(|(labels, last, dot)| dns_name_of(&labels, &last, dot)),
        ]
    }

    #[rustfmt::skip]
    const IDN_LABELS: &[&str] = &[
        "bücher", "münchen", "пример", "例え", "ελληνικά", "straße", "faß", "ß", "☃", "日本語",
        "مثال", "xn--bcher-kva", "XN--BCHER-KVA", "xn--nxasmq6b", "ＥＸＡＭＰＬＥ", "ﬁnance",
        "İstanbul", "Ⅻ", "ǅ", "a\u{200d}b", "ex\u{ad}ample", "xn--a", "xn--",
    ];

    /// A DNS name with internationalized labels, which IDNA may refuse.
    fn idn_dns_name() -> impl Strategy<Value = String> {
        let label = || {
            prop_oneof![
                ascii_label(),
                prop::sample::select(IDN_LABELS).prop_map(str::to_owned)
            ]
        };
        (prop::collection::vec(label(), 0..3), label(), any::<bool>())
            .prop_map(|(labels, last, dot)| dns_name_of(&labels, &last, dot))
    }

    fn dns_name_of(labels: &[String], last: &str, trailing_dot: bool) -> String {
        let mut name: String = labels.iter().map(|label| format!("{label}.")).collect();
        name.push_str(last);
        if trailing_dot {
            name.push('.');
        }
        name
    }

    /// An IPv6 address as text: compressed, expanded, uppercase or IPv4-mapped.
    fn ipv6_text() -> impl Strategy<Value = String> {
        let segment = prop_oneof![2 => Just(0u16), 1 => any::<u16>()];
        prop_oneof![
            4 => (prop::array::uniform8(segment), 0u8..4).prop_map(|(segments, form)| {
                let ip = Ipv6Addr::from(segments);
                let each = |f: fn(&u16) -> String| {
                    segments.iter().map(f).collect::<Vec<_>>().join(":")
                };
                match form {
                    0 => ip.to_string(),
                    1 => each(|s| format!("{s:x}")),
                    2 => each(|s| format!("{s:04X}")),
                    _ => ip.to_string().to_uppercase(),
                }
            }),
            1 => any::<[u8; 4]>().prop_map(|o| format!("::ffff:{}", Ipv4Addr::from(o))),
        ]
    }

    /// An IP address target: IPv4, IPv6, or bracketed IPv6.
    fn ip_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
            ipv6_text(),
            ipv6_text().prop_map(|ip| format!("[{ip}]")),
        ]
    }

    /// The parts of an SPN as generated, to compare with what the parser made of them.
    #[derive(Debug, Clone)]
    struct SpnParts {
        text: String,
        class: String,
        /// Whether the host is ASCII (then the SPN must parse).
        ascii: bool,
        port: Option<u16>,
        service_name: Option<String>,
        realm: Option<String>,
    }

    fn spn() -> impl Strategy<Value = SpnParts> {
        // (host, ascii, a bare IPv6 address)
        let host = prop_oneof![
            3 => ascii_dns_name().prop_map(|h| (h, true, false)),
            1 => idn_dns_name().prop_map(|h| (h, false, false)),
            1 => any::<[u8; 4]>().prop_map(|o| (Ipv4Addr::from(o).to_string(), true, false)),
            1 => ipv6_text().prop_map(|h| (h, true, true)),
        ];
        (
            "[A-Za-z0-9_.-]{1,10}",
            host,
            any::<bool>(),
            proptest::option::of((1u16..=65535, 0usize..3)),
            proptest::option::of(prop_oneof![
                "[A-Za-z0-9._:=-]{1,16}",
                "[\\p{L}\\p{N}._-]{1,8}"
            ]),
            proptest::option::of(prop_oneof!["[A-Z0-9.-]{1,16}", "[\\p{L}\\p{N}.:]{1,8}"]),
        )
            .prop_map(
                |(class, (host, ascii, bare_v6), bracket, port, service_name, realm)| {
                    let mut text = format!("{class}/");
                    if bare_v6 && (bracket || port.is_some()) {
                        text.push_str(&format!("[{host}]"));
                    } else {
                        text.push_str(&host);
                    }
                    if let Some((port, zeros)) = port {
                        text.push_str(&format!(":{}{port}", "0".repeat(zeros)));
                    }
                    if let Some(name) = &service_name {
                        text.push_str(&format!("/{name}"));
                    }
                    if let Some(realm) = &realm {
                        text.push_str(&format!("@{realm}"));
                    }
                    SpnParts {
                        text,
                        class,
                        ascii,
                        port: port.map(|(port, _)| port),
                        service_name,
                        realm,
                    }
                },
            )
    }

    fn spiffe_id() -> impl Strategy<Value = String> {
        let segment = "[A-Za-z0-9._-]{1,10}"
            .prop_filter("`.` and `..` are refused", |s| s != "." && s != "..");
        (
            prop::sample::select(&["spiffe://", "SPIFFE://", "Spiffe://"][..]),
            "[a-z0-9][a-z0-9._-]{0,20}",
            prop::collection::vec(segment, 0..4),
        )
            .prop_map(|(scheme, domain, segments)| {
                let path: String = segments.iter().map(|s| format!("/{s}")).collect();
                format!("{scheme}{domain}{path}")
            })
    }

    fn user_principal() -> impl Strategy<Value = String> {
        (
            prop::sample::select(&["user:", "USER:", "User:"][..]),
            "[\\p{L}\\p{N}._+=:-]{1,16}",
            "[\\p{L}\\p{N}.-]{1,16}",
        )
            .prop_map(|(prefix, name, domain)| format!("{prefix}{name}@{domain}"))
    }

    /// A name made to be valid, and the kind it must parse to (`None`: IDNA may refuse it).
    fn valid_name() -> impl Strategy<Value = (String, Option<&'static str>)> {
        prop_oneof![
            3 => spn().prop_map(|spn| (spn.text, spn.ascii.then_some("SPN"))),
            2 => ascii_dns_name().prop_map(|name| (name, Some("DNS name"))),
            2 => idn_dns_name().prop_map(|name| (name, None)),
            2 => ip_text().prop_map(|ip| (ip, Some("IP address"))),
            1 => spiffe_id().prop_map(|id| (id, Some("SPIFFE ID"))),
            1 => user_principal().prop_map(|user| (user, Some("user principal"))),
        ]
    }

    /// Text a caller might give: arbitrary, made of name pieces, very long, or a valid
    /// name with a few edits.
    fn any_name_text() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => any_text(40),
            4 => soup(PIECES, 16),
            1 => (soup(PIECES, 3), prop::sample::select(PIECES), 50usize..1200, soup(PIECES, 3))
                .prop_map(|(head, piece, n, tail)| format!("{head}{}{tail}", piece.repeat(n))),
            4 => mutated_text(valid_name().prop_map(|(text, _)| text), PIECES, 3),
        ]
    }

    // ---- the parsers, one helper each ----------------------------------------------------

    /// Parses `text` as a principal and as a peer target name (they must agree), and checks
    /// that what parses prints as a name that parses to itself and prints the same way.
    fn parse_and_round_trip(text: &str) -> Result<Option<PrincipalName>, TestCaseError> {
        let parsed = PrincipalName::parse(text);
        let target = PeerTargetName::parse(text);
        prop_assert_eq!(
            parsed.as_ref().ok(),
            target.as_ref().ok().and_then(PeerTargetName::principal)
        );
        let name = match parsed {
            Ok(name) => name,
            Err(error) => {
                let shown = error.to_string();
                prop_assert!(
                    !shown.chars().any(char::is_control),
                    "an error shows a control character: {:?}",
                    shown
                );
                return Ok(None);
            }
        };
        let printed = name.to_string();
        let again = PrincipalName::parse(&printed).map_err(|e| {
            TestCaseError::fail(format!(
                "`{text}` prints as `{printed}`, which does not parse: {e}"
            ))
        })?;
        prop_assert_eq!(&again, &name, "`{}` printed as `{}`", text, printed);
        prop_assert_eq!(again.to_string(), printed);
        let target = target.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(target.as_str(), text);
        prop_assert_eq!(target.to_string(), text);
        let _ = target.sni_host();
        Ok(Some(name))
    }

    /// A raw name is any non-empty text without control characters, kept exactly.
    fn check_raw(text: &str) -> Result<(), TestCaseError> {
        let acceptable = !text.is_empty() && !text.chars().any(char::is_control);
        match PeerTargetName::raw(text) {
            Ok(raw) => {
                prop_assert!(acceptable, "raw name {:?} was accepted", text);
                prop_assert!(raw.is_raw());
                prop_assert_eq!(raw.as_str(), text);
                prop_assert_eq!(raw.sni_host(), None);
            }
            Err(error) => {
                prop_assert!(!acceptable, "raw name {:?} was refused: {}", text, error);
                prop_assert!(!error.to_string().chars().any(char::is_control));
            }
        }
        Ok(())
    }

    #[test]
    fn principal_names_never_panic_and_round_trip_through_display() {
        check(4096, any_name_text(), |text| {
            parse_and_round_trip(&text)?;
            check_raw(&text)
        });
    }

    #[test]
    fn generated_names_parse_to_their_kind_and_round_trip_through_display() {
        check(2048, valid_name(), |(text, kind)| {
            let parsed = parse_and_round_trip(&text)?;
            if let Some(kind) = kind {
                prop_assert_eq!(parsed.map(|name| name.kind()), Some(kind), "`{}`", text);
            }
            Ok(())
        });
    }

    #[test]
    fn spns_parse_into_the_parts_they_were_made_of() {
        check(2048, spn(), |parts| {
            let Some(name) = parse_and_round_trip(&parts.text)? else {
                prop_assert!(!parts.ascii, "`{}` was refused", parts.text);
                return Ok(());
            };
            let PrincipalName::Spn(spn) = &name else {
                return Err(TestCaseError::fail(format!(
                    "`{}` is a {}",
                    parts.text,
                    name.kind()
                )));
            };
            prop_assert_eq!(spn.service_class(), parts.class.to_ascii_lowercase());
            prop_assert_eq!(spn.port(), parts.port);
            prop_assert_eq!(spn.service_name(), parts.service_name.as_deref());
            prop_assert_eq!(spn.realm(), parts.realm.as_deref());
            Ok(())
        });
    }

    // ---- certificates and matching ---------------------------------------------------

    /// A DNS SAN as certificates write them, good or bad.
    fn dns_san() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => ascii_dns_name(),
            2 => ascii_dns_name().prop_map(|name| format!("*.{name}")),
            1 => idn_dns_name(),
            1 => soup(PIECES, 8),
            1 => any_text(20),
        ]
    }

    /// `name@domain` as an email or UPN SAN, good or bad.
    fn address() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => (
                prop_oneof!["[a-z]{1,8}", "[\\p{L}\\p{N}._=-]{1,8}"],
                prop_oneof![ascii_dns_name(), "[A-Z.]{1,12}"],
            )
                .prop_map(|(name, domain)| format!("{name}@{domain}")),
            1 => soup(PIECES, 8),
            1 => any_text(16),
        ]
    }

    fn kerberos_principal() -> impl Strategy<Value = KerberosPrincipal> {
        let component = prop_oneof![
            2 => prop::sample::select(&["host", "HTTP", "ldap", "alice", "krbtgt"][..])
                .prop_map(str::to_owned),
            3 => ascii_dns_name(),
            1 => (ascii_dns_name(), 1u16..=65535).prop_map(|(h, p)| format!("{h}:{p}")),
            1 => ipv6_text().prop_map(|ip| format!("[{ip}]")),
            1 => soup(PIECES, 6),
            1 => any_text(10),
        ];
        (
            prop_oneof![3 => "[A-Z.]{1,12}", 1 => soup(PIECES, 4)],
            prop::collection::vec(component, 0..4),
        )
            .prop_map(|(realm, components)| KerberosPrincipal { realm, components })
    }

    /// Names as a certificate may state them: mostly plausible, some broken; its public
    /// fields allow any combination, which is what matching must survive.
    fn certificate_names() -> impl Strategy<Value = CertificateNames> {
        (
            prop::collection::vec(dns_san(), 0..4),
            prop::collection::vec(any::<IpAddr>(), 0..3),
            prop::collection::vec(
                prop_oneof![3 => spiffe_id(), 1 => soup(PIECES, 8), 1 => any_text(16)],
                0..3,
            ),
            prop::collection::vec(address(), 0..3),
            prop::collection::vec(address(), 0..3),
            prop::collection::vec(kerberos_principal(), 0..3),
            prop::collection::vec(prop_oneof![soup(PIECES, 6), any_text(12)], 0..2),
            any::<bool>(),
        )
            .prop_map(
                |(dns, ips, uris, emails, upns, kerberos, common_names, user_certificate)| {
                    CertificateNames {
                        dns,
                        ips,
                        uris,
                        emails,
                        upns,
                        kerberos,
                        common_names,
                        user_certificate,
                    }
                },
            )
    }

    /// Texts to try as targets against `cert`: everything it states, in every form, and
    /// everything it proves, printed.
    fn targets_for(cert: &CertificateNames) -> Vec<String> {
        let mut texts: Vec<String> = cert
            .dns
            .iter()
            .chain(&cert.uris)
            .chain(&cert.emails)
            .chain(&cert.upns)
            .chain(&cert.common_names)
            .cloned()
            .collect();
        texts.extend(cert.ips.iter().map(ToString::to_string));
        texts.extend(cert.kerberos.iter().map(ToString::to_string));
        texts.extend(
            cert.emails
                .iter()
                .chain(&cert.upns)
                .map(|a| format!("user:{a}")),
        );
        texts.extend(cert.proven().iter().map(ToString::to_string));
        texts
    }

    /// Matching never panics; a certificate proves every name it lists as proven, and a
    /// raw name equal to one of its SANs or CNs.
    fn check_matching(cert: &CertificateNames, extra: &str) -> Result<(), TestCaseError> {
        let presented = cert.presented();
        prop_assert!(
            presented.iter().all(|p| !p.chars().any(char::is_control)),
            "presented names show control characters: {:?}",
            presented
        );
        for name in cert.proven() {
            prop_assert!(name.is_proven_by(cert), "`{}` listed, not proven", name);
            prop_assert!(
                PeerTargetName::from(name.clone()).is_proven_by(cert),
                "`{}` as a target",
                name
            );
        }
        let stated: Vec<&String> = cert
            .dns
            .iter()
            .chain(&cert.uris)
            .chain(&cert.emails)
            .chain(&cert.upns)
            .chain(&cert.common_names)
            .collect();
        let mut texts = targets_for(cert);
        texts.push(extra.to_owned());
        for text in &texts {
            if let Ok(target) = PeerTargetName::parse(text) {
                let _ = target.is_proven_by(cert);
            }
            if let Ok(raw) = PeerTargetName::raw(text) {
                let proven = raw.is_proven_by(cert);
                if stated.contains(&text) && !text.contains(char::REPLACEMENT_CHARACTER) {
                    prop_assert!(proven, "raw `{}` is stated but not proven", text);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn matching_never_panics_and_certificates_prove_what_they_list() {
        check(
            1024,
            (certificate_names(), any_name_text()),
            |(cert, text)| check_matching(&cert, &text),
        );
    }

    /// Certificates made by rcgen once: a machine, a user, Kerberos SANs, a constrained CA.
    static CERTIFICATES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
        let key = KeyPair::generate().unwrap();
        let mut machine = CertificateParams::new(vec![
            "server.example.test".to_owned(),
            "*.example.test".to_owned(),
        ])
        .unwrap();
        machine.subject_alt_names.extend([
            SanType::IpAddress("192.0.2.1".parse().unwrap()),
            SanType::IpAddress("2001:db8::1".parse().unwrap()),
            SanType::URI("spiffe://example.test/ns/prod/sa/web".try_into().unwrap()),
        ]);
        machine
            .distinguished_name
            .push(DnType::CommonName, "Legacy Server");

        let mut user = CertificateParams::default();
        user.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        user.subject_alt_names = vec![
            SanType::Rfc822Name("alice@example.test".try_into().unwrap()),
            SanType::OtherName((
                vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                OtherNameValue::Utf8String("alice@EXAMPLE.TEST".into()),
            )),
        ];

        let mut kerberos = CertificateParams::default();
        let sans = [
            krb5_san("EXAMPLE.TEST", &["host", "db.example.test"]),
            krb5_san(
                "EXAMPLE.TEST",
                &["ldap", "dc1.example.test", "example.test"],
            ),
            krb5_san("EXAMPLE.TEST", &["alice"]),
        ]
        .concat();
        kerberos.custom_extensions = vec![CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            tlv(0x30, &sans),
        )];

        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![
                GeneralSubtree::DnsName(".example.test".into()),
                GeneralSubtree::Rfc822Name("example.test".into()),
                GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                    "192.0.2.0".parse().unwrap(),
                    24,
                )),
            ],
            excluded_subtrees: vec![GeneralSubtree::DnsName("secret.example.test".into())],
        });
        [machine, user, kerberos, ca]
            .iter()
            .map(|params| params.self_signed(&key).unwrap().der().to_vec())
            .collect()
    });

    /// Reads a certificate's names; when it reads, they survive matching.
    fn read_certificate(der: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(cert) = CertificateNames::from_der(der) {
            check_matching(&cert, "server.example.test")?;
        }
        Ok(())
    }

    #[test]
    fn certificate_reader_never_panics_on_any_bytes() {
        let bytes = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            // A SEQUENCE header first, so that the parser goes further.
            prop::collection::vec(any::<u8>(), 0..600).prop_map(|b| tlv(0x30, &b)),
        ];
        check(2048, bytes, |der| read_certificate(&der));
    }

    #[test]
    fn certificate_reader_never_panics_on_mutated_certificates() {
        // The machine, user and Kerberos certificates prove names; the CA parses.
        for der in &CERTIFICATES[..3] {
            let cert = CertificateNames::from_der(der).unwrap();
            assert!(!cert.proven().is_empty(), "{:?}", cert.presented());
        }
        assert!(CertificateNames::from_der(&CERTIFICATES[3]).is_ok());
        let real = prop::sample::select(CERTIFICATES.clone());
        check(2048, mutated_bytes(real), |der| read_certificate(&der));
    }

    // ---- name constraints --------------------------------------------------------------

    /// A subtree of a CA's name constraints.
    #[derive(Debug, Clone)]
    enum Subtree {
        Dns(String),
        Ip(IpAddr, u8),
        Mailbox(String),
    }

    fn subtree() -> impl Strategy<Value = Subtree> {
        prop_oneof![
            2 => prop::sample::select(&[
                "example.test", ".example.test", "", "test", "dept.example.test",
                ".dept.example.test", "db.example.test", "other.test",
            ][..])
            .prop_map(|s| Subtree::Dns(s.to_owned())),
            1 => ascii_dns_name().prop_map(Subtree::Dns),
            1 => (any::<IpAddr>(), 0u8..=128).prop_map(|(ip, len)| {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                Subtree::Ip(ip, len.min(max))
            }),
            2 => prop::sample::select(&[
                "example.test", ".example.test", "alice@example.test", "EXAMPLE.TEST",
                "alice@EXAMPLE.TEST", "other.test",
            ][..])
            .prop_map(|s| Subtree::Mailbox(s.to_owned())),
        ]
    }

    /// The constraints of a path of CAs with these (permitted, excluded) subtrees, or
    /// `None` when rcgen or the reader refuses one.
    fn path_constraints(levels: &[(Vec<Subtree>, Vec<Subtree>)]) -> Option<PathConstraints> {
        static KEY: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::generate().unwrap());
        let convert = |subtrees: &[Subtree]| -> Vec<GeneralSubtree> {
            subtrees
                .iter()
                .map(|subtree| match subtree {
                    Subtree::Dns(dns) => GeneralSubtree::DnsName(dns.clone()),
                    Subtree::Ip(ip, len) => {
                        GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, *len))
                    }
                    Subtree::Mailbox(mailbox) => GeneralSubtree::Rfc822Name(mailbox.clone()),
                })
                .collect()
        };
        let mut path = PathConstraints::default();
        for (permitted, excluded) in levels {
            let mut params = CertificateParams::default();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.name_constraints = Some(NameConstraints {
                permitted_subtrees: convert(permitted),
                excluded_subtrees: convert(excluded),
            });
            let der = params.self_signed(&*KEY).ok()?.der().to_vec();
            path.add_certificate_der(&der).ok()?;
        }
        Some(path)
    }

    /// Whether `part` is `whole` with some entries removed, the rest in order.
    fn is_subsequence<T: PartialEq>(part: &[T], whole: &[T]) -> bool {
        let mut rest = whole.iter();
        part.iter()
            .all(|item| rest.any(|candidate| candidate == item))
    }

    #[test]
    fn path_constraints_only_ever_remove_names() {
        let levels = prop::collection::vec(
            (
                prop::collection::vec(subtree(), 0..4),
                prop::collection::vec(subtree(), 0..3),
            ),
            0..3,
        );
        check(512, (certificate_names(), levels), |(cert, levels)| {
            let Some(constraints) = path_constraints(&levels) else {
                return Err(TestCaseError::reject("constraints rcgen cannot write"));
            };
            let kept = cert.clone().within(&constraints);
            prop_assert_eq!(kept.user_certificate, cert.user_certificate);
            prop_assert!(is_subsequence(&kept.dns, &cert.dns));
            prop_assert!(is_subsequence(&kept.ips, &cert.ips));
            prop_assert!(is_subsequence(&kept.uris, &cert.uris));
            prop_assert!(is_subsequence(&kept.emails, &cert.emails));
            prop_assert!(is_subsequence(&kept.upns, &cert.upns));
            prop_assert!(is_subsequence(&kept.kerberos, &cert.kerberos));
            prop_assert!(is_subsequence(&kept.common_names, &cert.common_names));
            let proven = cert.proven();
            for name in kept.proven() {
                prop_assert!(proven.contains(&name), "`{}` appeared", name);
            }
            if levels.is_empty() {
                prop_assert_eq!(&kept, &cert);
            }
            check_matching(&kept, "")
        });
    }
}

mod policy_file {
    use std::fs;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::policy::{parse_duration, parse_size, Policy, PolicyError};

    /// A policy using every section, valid against [`trust_domain`].
    const VALID_POLICY: &str = r#"# secsock policy
[identity]
certificate = "identity/host.crt"
private_key = "identity/host.key"

[trust]
anchors = ["trust/ca.crt"]
crls = ["trust/ca.crl"]

[defaults]
crypto = "fast"
handshake_timeout = "2500ms"

[crypto.fast]
id = "5F1C2E3A-0000-4000-8000-00000000ABCD"
key_exchange = ["x25519", "P-256"]
cipher_suites = ["TLS13_CHACHA20_POLY1305_SHA256"]
session_lifetime = "0s"
rekey_after = { bytes = "1MiB", time = "1h" }

[crypto.archive]
session_lifetime = "7d"

[authority]
certificate = "ca/ca.crt"
private_key = "ca/ca.key"

[users]
file = "users.toml"
authentication = "optional"
domain = "EXAMPLE.TEST"

[[accounts]]
principal = "user:*@EXAMPLE.TEST"
user = "{name}"

[[accounts]]
principal = "host/db.example.test"
user = "dbhost"
allow_system_account = true
"#;

    /// What TOML and the policy's keys and values are made of.
    #[rustfmt::skip]
    const PIECES: &[&str] = &[
        "\n", "\r\n", " ", "\t", "[", "]", "[[", "]]", "=", " = ", "\"", "'", "\"\"\"", "'''",
        "#", ",", "{", "}", ".", "\\", "\\u", "\\U0010FFFF", "\\x", "\0", "\u{7f}", "\u{feff}",
        "é", "0", "1", "-1", "+", "1.5", "1e1000", "0x10", "inf", "nan", "true", "false",
        "1979-05-27T07:32:00Z", "99999999999999999999", "identity", "trust", "defaults",
        "crypto", "users", "accounts", "authority", "certificate", "private_key", "anchors",
        "crls", "handshake_timeout", "session_lifetime", "rekey_after", "bytes", "time", "id",
        "key_exchange", "cipher_suites", "principal", "user", "allow_system_account", "file",
        "authentication", "domain", "standard", "fast", "\"10s\"", "\"1MiB\"", "\"x25519\"",
        "\"P-384\"", "\"TLS13_AES_128_GCM_SHA256\"", "\"identity/host.key\"",
        "\"trust/ca.crt\"", "\"trust/ca.crl\"", "\"trust\"", "\"\"", "\"required\"",
        "\"{name}\"", "\"user:*@X\"",
    ];

    use crate::policy::tests::trust_domain;

    /// Loads `text` as `dir/policy.toml` (and, written there, diagnoses it): the two agree,
    /// and every error names the file and, when it names a line, one within the text.
    fn load_policy(dir: &Path, text: &str) -> Result<bool, TestCaseError> {
        let source = dir.join("policy.toml");
        let loaded = Policy::from_toml(text, &source);
        fs::write(&source, text).unwrap();
        let diagnosis = Policy::diagnose(&source);
        match &loaded {
            Ok(_) => {
                prop_assert!(diagnosis.policy.is_some());
                prop_assert!(diagnosis.errors.is_empty());
            }
            Err(first) => {
                prop_assert!(diagnosis.policy.is_none());
                prop_assert_eq!(
                    diagnosis.errors.first().map(ToString::to_string),
                    Some(first.to_string())
                );
            }
        }
        let lines = text.matches('\n').count() + 1;
        for error in loaded.as_ref().err().into_iter().chain(&diagnosis.errors) {
            check_error(error, &source, lines)?;
        }
        Ok(loaded.is_ok())
    }

    fn check_error(error: &PolicyError, source: &Path, lines: usize) -> Result<(), TestCaseError> {
        let shown = error.to_string();
        prop_assert_eq!(&error.file, source);
        let place = match error.line {
            Some(line) => {
                prop_assert!(
                    (1..=lines).contains(&line),
                    "line {} of {}: {}",
                    line,
                    lines,
                    shown
                );
                format!("{}:{line}: ", source.display())
            }
            None => format!("{}: ", source.display()),
        };
        prop_assert!(shown.starts_with(&place), "{}", shown);
        prop_assert!(shown.len() > place.len(), "an error that says nothing");
        Ok(())
    }

    /// TOML values for any key: right and wrong types, files that are and are not there,
    /// names that are and are not known.
    #[rustfmt::skip]
    const VALUES: &[&str] = &[
        "\"\"", "\"10s\"", "\"0s\"", "\"10\"", "10", "-1", "0", "1.5", "true", "[]", "{}",
        "[\"x25519\"]", "[\"P-256\", \"P-384\", \"X25519MLKEM768\"]",
        "[\"x25519\", \"x25519\"]", "[\"TLS13_AES_256_GCM_SHA384\"]",
        "[\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]", "{ bytes = 1 }",
        "{ time = \"1s\", bytes = \"1GiB\" }", "{ bits = 1 }", "{ time = 10 }",
        "\"99999999999999999999s\"", "9223372036854775807", "\"16777216TiB\"", "\"11m\"",
        "\"identity/host.key\"", "\"identity/host.crt\"", "\"trust/ca.crt\"",
        "\"trust/ca.crl\"", "\"trust\"", "\"/nonexistent\"",
        "[\"trust/ca.crt\", \"trust/ca.crl\"]", "[\"identity/host.crt\"]",
        "[\"trust/ca.crl\"]", "[1, 2]", "[[]]", "\"user:*@X\"", "\"user:alice@EXAMPLE.TEST\"",
        "\"host/*.example.test\"", "\"{name}\"", "\"{name}x\"", "\"root\"", "\"standard\"",
        "\"fast\"", "\"archive\"", "\"nothere\"", "\"00000000-0000-0000-0000-000000000000\"",
        "\"5F1C2E3A-0000-4000-8000-00000000ABCD\"", "\"not-a-uuid\"", "1979-05-27",
        "\"required\"", "\"off\"", "\"sometimes\"", "\"é\"",
    ];

    /// Section headers and keys, known and unknown.
    #[rustfmt::skip]
    const HEADERS: &[&str] = &[
        "[identity]", "[trust]", "[defaults]", "[crypto.standard]", "[crypto.fast]",
        "[crypto.\"a b\"]", "[crypto.fast.rekey_after]", "[users]", "[[accounts]]",
        "[authority]", "[[identity]]", "[unknown]", "[crypto]",
    ];
    #[rustfmt::skip]
    const KEYS: &[&str] = &[
        "certificate", "private_key", "anchors", "crls", "crypto", "handshake_timeout", "id",
        "key_exchange", "cipher_suites", "session_lifetime", "rekey_after", "bytes", "time",
        "file", "authentication", "domain", "principal", "user", "allow_system_account",
        "anchor", "\"quoted key\"", "a.b",
    ];

    /// What becomes of one line of [`VALID_POLICY`].
    #[derive(Debug, Clone)]
    enum LineEdit {
        Drop,
        Twice,
        /// A header becomes another header; a key's value another value.
        Replace(Index),
        /// A key's value becomes a TOML string of arbitrary text.
        Text(String),
        Rename(Index),
    }

    /// [`VALID_POLICY`] with a few lines dropped, repeated or changed, still TOML most of
    /// the time: these get past the syntax to the checks of keys, values and files.
    fn edited_policy() -> impl Strategy<Value = String> {
        let edit = prop_oneof![
            2 => Just(LineEdit::Drop),
            1 => Just(LineEdit::Twice),
            6 => any::<Index>().prop_map(LineEdit::Replace),
            1 => any_text(12).prop_map(LineEdit::Text),
            1 => any::<Index>().prop_map(LineEdit::Rename),
        ];
        prop::collection::vec((any::<Index>(), edit), 1..4).prop_map(|edits| {
            let mut lines: Vec<String> = VALID_POLICY.lines().map(str::to_owned).collect();
            for (at, edit) in edits {
                let line = at.get(&lines).clone();
                let header = line.starts_with('[');
                let (key, value) = line.split_once(" = ").unwrap_or((&line, ""));
                let edited = match edit {
                    LineEdit::Drop => String::new(),
                    LineEdit::Twice => format!("{line}\n{line}"),
                    LineEdit::Replace(at) if header => at.get(HEADERS).to_string(),
                    LineEdit::Replace(at) if !value.is_empty() => {
                        format!("{key} = {}", at.get(VALUES))
                    }
                    LineEdit::Text(text) if !value.is_empty() => {
                        format!("{key} = {}", toml::Value::String(text))
                    }
                    LineEdit::Rename(at) if !value.is_empty() => {
                        format!("{} = {value}", at.get(KEYS))
                    }
                    _ => line.clone(),
                };
                *at.get_mut(&mut lines) = edited;
            }
            lines.join("\n")
        })
    }

    fn policy_texts() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => any_text(300),
            1 => soup(PIECES, 60),
            1 => soup(PIECES, 20).prop_map(|tail| format!("{VALID_POLICY}{tail}")),
            3 => mutated_text(Just(VALID_POLICY.to_owned()), PIECES, 4),
            8 => edited_policy(),
        ]
    }

    #[test]
    fn policy_parser_never_panics_and_its_errors_name_a_line_in_the_text() {
        let dir = trust_domain();
        assert!(
            load_policy(dir.path(), VALID_POLICY).unwrap(),
            "the fixture loads"
        );
        check(1024, policy_texts(), |text| {
            load_policy(dir.path(), &text).map(|_| ())
        });
    }

    /// A number, a unit and spaces, as a duration or size is written.
    #[derive(Debug, Clone)]
    struct Part {
        number: String,
        gap: &'static str,
        unit: String,
        after: &'static str,
    }

    fn parts(units: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<Part>> {
        let part = (
            "[0-9]{1,22}",
            prop::sample::select(&["", " ", "\t"][..]),
            prop::sample::select(units),
            any::<[bool; 3]>(),
            prop::sample::select(&["", " ", "  "][..]),
        )
            .prop_map(|(number, gap, unit, upper, after)| Part {
                number,
                gap,
                unit: unit
                    .chars()
                    .zip(upper)
                    .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                    .collect(),
                after,
            });
        prop::collection::vec(part, 1..=max)
    }

    fn written(parts: &[Part]) -> String {
        parts
            .iter()
            .map(|p| format!("{}{}{}{}", p.number, p.gap, p.unit, p.after))
            .collect()
    }

    /// The value of parts, computed apart from the parsers: `None` when over `u64::MAX`.
    fn value(parts: &[Part], unit_value: impl Fn(&str) -> u128) -> Option<u64> {
        let mut total: u128 = 0;
        for part in parts {
            let number: u128 = part.number.parse().ok()?;
            total =
                total.checked_add(number.checked_mul(unit_value(&part.unit.to_lowercase()))?)?;
        }
        u64::try_from(total).ok()
    }

    fn duration_of(text: &str) -> Result<Duration, String> {
        parse_duration(text)
    }

    fn size_of(text: &str) -> Result<u64, String> {
        parse_size(text)
    }

    #[test]
    fn durations_parse_to_their_value_or_are_too_large() {
        check(4096, parts(&["ms", "s", "m", "h", "d"], 4), |parts| {
            let text = written(&parts);
            let ms = value(&parts, |unit| match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => 86_400_000,
            });
            match (duration_of(&text), ms) {
                (Ok(duration), Some(ms)) => {
                    prop_assert_eq!(duration, Duration::from_millis(ms), "{}", text)
                }
                (Err(e), None) => prop_assert!(e.contains("too large"), "{}: {}", text, e),
                (result, ms) => {
                    return Err(TestCaseError::fail(format!(
                        "`{text}`: {result:?}, not {ms:?} ms"
                    )))
                }
            }
            Ok(())
        });
    }

    #[test]
    fn sizes_parse_to_their_value_or_are_too_large() {
        const UNITS: &[&str] = &["", "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "tib"];
        check(4096, parts(UNITS, 1), |parts| {
            let text = written(&parts);
            let bytes = value(&parts, |unit| match unit {
                "" | "b" => 1,
                "kb" => 1_000,
                "mb" => 1_000_000,
                "gb" => 1_000_000_000,
                "tb" => 1_000_000_000_000,
                "kib" => 1 << 10,
                "mib" => 1 << 20,
                "gib" => 1 << 30,
                _ => 1 << 40,
            });
            match (size_of(&text), bytes) {
                (Ok(size), Some(bytes)) => prop_assert_eq!(size, bytes, "{}", text),
                (Err(e), None) => prop_assert!(e.contains("too large"), "{}: {}", text, e),
                (result, bytes) => {
                    return Err(TestCaseError::fail(format!(
                        "`{text}`: {result:?}, not {bytes:?}"
                    )))
                }
            }
            Ok(())
        });
    }

    #[test]
    fn durations_and_sizes_never_panic_and_errors_quote_the_text() {
        #[rustfmt::skip]
        const UNIT_PIECES: &[&str] = &[
            "0", "1", "9", "10", "18446744073709551615", "99999999999999999999", " ", "\t",
            "\u{a0}", "\u{3000}", ".", ",", "-", "+", "ms", "s", "m", "h", "d", "MS", "b",
            "kb", "KiB", "MiB", "GiB", "TiB", "TB", "é", "\0",
        ];
        let texts = prop_oneof![any_text(30), soup(UNIT_PIECES, 12)];
        check(4096, texts, |text| {
            if let Err(e) = duration_of(&text) {
                let quoted = format!("invalid duration `{text}`: ");
                prop_assert!(e.starts_with(&quoted), "{}", e);
            }
            if let Err(e) = size_of(&text) {
                prop_assert!(e.starts_with(&format!("invalid size `{text}`: ")), "{}", e);
            }
            Ok(())
        });
    }
}

mod user_auth {
    use std::cell::RefCell;
    use std::sync::{Arc, LazyLock};

    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    use rustls::crypto::CryptoProvider;
    use rustls_pki_types::CertificateDer;

    use super::*;
    use crate::policy::{UserAuthentication, Users};
    use crate::settings::{Secret, UserCredentials};
    use crate::user::scram::{self, Verifier};
    use crate::user::step::{ClientExchange, Frame, Kind, ServerExchange, Step, MAX_FRAME};
    use crate::user::users::UserDirectory;
    use crate::verify::ChainValidator;

    const KINDS: [Kind; 5] = [
        Kind::Hello,
        Kind::Challenge,
        Kind::Response,
        Kind::Success,
        Kind::Failure,
    ];
    const BINDING: [u8; 32] = [0x42; 32];

    // ---- frames ------------------------------------------------------------------------

    #[test]
    fn frames_round_trip_for_every_kind_and_payload_up_to_the_limit() {
        let payload = prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..64),
            1 => prop::collection::vec(any::<u8>(), 0..=MAX_FRAME),
            1 => any::<u8>().prop_map(|b| vec![b; MAX_FRAME]),
        ];
        let strategy = (
            prop::sample::select(&KINDS[..]),
            payload,
            any::<Index>(),
            prop::collection::vec(any::<u8>(), 0..8),
        );
        check(1024, strategy, |(kind, payload, cut, after)| {
            let frame = Frame { kind, payload };
            let wire = frame.encode();
            prop_assert_eq!(wire.len(), 3 + frame.payload.len());
            prop_assert_eq!(Frame::decode(&wire), Ok(Some((frame.clone(), wire.len()))));
            let cut = cut.index(wire.len());
            prop_assert_eq!(Frame::decode(&wire[..cut]), Ok(None), "cut at {}", cut);
            let followed = [wire.as_slice(), &after].concat();
            prop_assert_eq!(Frame::decode(&followed), Ok(Some((frame, wire.len()))));
            Ok(())
        });
    }

    #[test]
    fn frame_decoder_never_panics_and_reencodes_what_it_reads() {
        let bytes = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            (
                0u8..8,
                prop_oneof![
                    0u16..80,
                    (MAX_FRAME as u16 - 2)..=(MAX_FRAME as u16 + 2),
                    any::<u16>()
                ],
                prop::collection::vec(any::<u8>(), 0..80)
            )
                .prop_map(|(kind, len, rest)| [&[kind][..], &len.to_be_bytes(), &rest].concat()),
        ];
        check(4096, bytes, |bytes| {
            match Frame::decode(&bytes) {
                Ok(Some((frame, used))) => {
                    prop_assert!(used <= bytes.len());
                    prop_assert_eq!(frame.encode(), &bytes[..used]);
                }
                Ok(None) => {
                    let needed = bytes.get(1..3).map_or(3, |len| {
                        3 + usize::from(u16::from_be_bytes([len[0], len[1]]))
                    });
                    prop_assert!(bytes.len() < needed);
                }
                Err(_) => prop_assert!(
                    !(1..=5).contains(&bytes[0])
                        || (bytes.len() >= 3
                            && usize::from(u16::from_be_bytes([bytes[1], bytes[2]])) > MAX_FRAME)
                ),
            }
            Ok(())
        });
    }

    // ---- HELLO payloads and the server's side of the exchange --------------------------

    /// A CA, a user certificate it issued (clientAuth, `alice@example.test`) and its key,
    /// and a server's view of them.
    struct Realm {
        provider: Arc<CryptoProvider>,
        validator: Arc<ChainValidator>,
        directory: Arc<UserDirectory>,
        ca: CertificateDer<'static>,
        user: CertificateDer<'static>,
        user_key: Vec<u8>,
    }

    static REALM: LazyLock<Realm> = LazyLock::new(|| {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = ca_params.self_signed(&ca_key).unwrap().der().clone();
        let issuer = Issuer::new(ca_params, ca_key);
        let user_key = KeyPair::generate().unwrap();
        let mut user = CertificateParams::default();
        user.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        user.subject_alt_names = vec![SanType::Rfc822Name(
            "alice@example.test".try_into().unwrap(),
        )];
        let user = user.signed_by(&user_key, &issuer).unwrap().der().clone();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let validator = ChainValidator::new(
            std::slice::from_ref(&ca),
            &[],
            provider.signature_verification_algorithms,
        )
        .unwrap();
        Realm {
            validator: Arc::new(validator),
            directory: Arc::new(directory(UserAuthentication::Optional)),
            provider: Arc::new(provider),
            ca,
            user,
            user_key: user_key.serialize_der(),
        }
    });

    /// A listener's users: nobody in particular (every SCRAM user gets a decoy). Failures
    /// are not throttled: these properties are about the messages (`throttle` has its own).
    fn directory(authentication: UserAuthentication) -> UserDirectory {
        let users = Users {
            authentication,
            failures: crate::policy::FailureLimits {
                per_address: 0,
                delay: std::time::Duration::ZERO,
                ..crate::policy::FailureLimits::default()
            },
            ..Users::default()
        };
        UserDirectory::new(&users, &[], [7; 32])
    }

    /// The server's answers to `frames`, on a connection whose channel binding is
    /// `binding`, until the exchange ends.
    fn serve(frames: Vec<Frame>, binding: &[u8]) -> Vec<Result<Step, (String, Frame)>> {
        let realm = &*REALM;
        let peer = std::net::IpAddr::from([192, 0, 2, 1]);
        let mut exchange = ServerExchange::new(
            Arc::clone(&realm.directory),
            Arc::clone(&realm.validator),
            binding,
            Arc::clone(&realm.provider),
            peer,
        );
        let mut answers = Vec::new();
        for frame in frames {
            let answer = exchange
                .on_frame(frame, std::time::Instant::now())
                .map_err(|failure| (failure.reason.to_string(), failure.frame));
            let done = !matches!(answer, Ok(Step::Send(_)));
            answers.push(answer);
            if done {
                break;
            }
        }
        answers
    }

    /// A failure tells the client nothing but "failed" or "required" (no oracle).
    fn check_answers(answers: &[Result<Step, (String, Frame)>]) -> Result<(), TestCaseError> {
        for answer in answers {
            if let Err((_, frame)) = answer {
                prop_assert_eq!(frame.kind, Kind::Failure);
                let reason = String::from_utf8_lossy(&frame.payload);
                prop_assert!(
                    reason == "user authentication failed"
                        || reason == "user authentication required",
                    "the client is told `{}`",
                    reason
                );
            }
        }
        Ok(())
    }

    /// A user-certificate proof as the client writes it: a count, length-prefixed
    /// certificates, a signature scheme and a length-prefixed signature (any of them wrong).
    fn cert_proof() -> impl Strategy<Value = Vec<u8>> {
        let certificate = prop_oneof![
            2 => Just(REALM.user.to_vec()),
            1 => Just(REALM.ca.to_vec()),
            2 => mutated_bytes(Just(REALM.user.to_vec())),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ];
        (
            rarely(any::<u8>()),
            prop::collection::vec(certificate, 0..4),
            prop_oneof![Just(0x0403u16), Just(0x0807), Just(0x0804), any::<u16>()],
            prop::collection::vec(any::<u8>(), 0..80),
            rarely(prop::collection::vec(any::<u8>(), 1..3)),
        )
            .prop_map(|(count, chain, scheme, signature, trailing)| {
                let mut out = vec![count.unwrap_or(chain.len() as u8)];
                for cert in &chain {
                    out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
                    out.extend_from_slice(cert);
                }
                out.extend_from_slice(&scheme.to_be_bytes());
                out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
                out.extend_from_slice(&signature);
                out.extend(trailing.into_iter().flatten());
                out
            })
    }

    #[rustfmt::skip]
    const SCRAM_PIECES: &[&str] = &[
        "p=tls-exporter,,", "n,,", "y,,", "p=tls-unique,,", "a=x,", "n=", "r=", "c=", "p=",
        "s=", "i=", "m=", "e=", "v=", ",", "=", "=2C", "=3D", "=2", "alice@EXAMPLE.TEST",
        "QUJD", "cD10bHMtZXhwb3J0ZXIsLEJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC", "====",
        "4096", "0", "\0", "é", "\u{fffd}", " ", "\u{ad}", "\u{2028}",
    ];

    /// A HELLO payload: arbitrary, or a mechanism name and data of the right or wrong shape.
    fn hello_payload() -> impl Strategy<Value = Vec<u8>> {
        let mechanism = prop_oneof![
            8 => prop::sample::select(&["NONE", "SCRAM-SHA-256-PLUS", "USER-CERT"][..])
                .prop_map(str::to_owned),
            1 => prop::sample::select(&["SCRAM-SHA-256", "", "none"][..]).prop_map(str::to_owned),
            1 => any_text(8),
        ];
        let data = prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..60),
            2 => soup(SCRAM_PIECES, 12).prop_map(String::into_bytes),
            3 => cert_proof(),
        ];
        prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..60),
            4 => (mechanism, rarely(any::<u8>()), data).prop_map(
                |(mechanism, len, data)| {
                    let len = len.unwrap_or(mechanism.len() as u8);
                    [&[len][..], mechanism.as_bytes(), &data].concat()
                }
            ),
        ]
    }

    #[test]
    fn hello_payloads_never_panic_the_server_and_failures_say_only_failed() {
        let response = prop_oneof![any_text(60), soup(SCRAM_PIECES, 16)];
        let strategy = (
            prop::sample::select(&KINDS[..]),
            hello_payload(),
            prop::sample::select(&KINDS[..]),
            response,
        );
        check(2048, strategy, |(kind, payload, next_kind, response)| {
            // Mostly a HELLO first, as a client sends it.
            let kind = if next_kind == Kind::Response {
                Kind::Hello
            } else {
                kind
            };
            let frames = vec![
                Frame { kind, payload },
                Frame {
                    kind: next_kind,
                    payload: response.into_bytes(),
                },
            ];
            check_answers(&serve(frames, &BINDING))
        });
    }

    #[test]
    fn user_certificate_proofs_round_trip_through_the_exchange() {
        let strategy = (
            prop::collection::vec(any::<u8>(), 1..64),
            0usize..3,
            any::<bool>(),
        );
        check(512, strategy, |(binding, extra_cas, tampered)| {
            let realm = &*REALM;
            let mut chain = vec![realm.user.clone()];
            chain.extend(std::iter::repeat_n(realm.ca.clone(), extra_cas));
            let credentials = UserCredentials::Certificate {
                chain: chain.clone(),
                key: Secret::new(realm.user_key.clone()),
            };
            let (_, hello) = ClientExchange::start(
                Some(&credentials),
                &binding,
                &realm.provider,
                crate::user::scram::MAX_ITERATIONS,
            )
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let wire = hello.encode();
            prop_assert_eq!(Frame::decode(&wire), Ok(Some((hello.clone(), wire.len()))));
            let mut server_binding = binding.clone();
            if tampered {
                server_binding[0] ^= 1;
            }
            let answers = serve(vec![hello], &server_binding);
            check_answers(&answers)?;
            match answers.as_slice() {
                [Ok(Step::Done(Some(success), Some(identity)))] if !tampered => {
                    prop_assert_eq!(success.kind, Kind::Success);
                    prop_assert_eq!(&identity.chain, &chain);
                    let names: Vec<String> =
                        identity.names.iter().map(ToString::to_string).collect();
                    prop_assert_eq!(names, ["user:alice@example.test"]);
                }
                [Err((reason, _))] if tampered => {
                    prop_assert!(reason.contains("does not verify"), "{}", reason)
                }
                other => {
                    return Err(TestCaseError::fail(format!(
                        "tampered: {tampered}, answers: {other:?}"
                    )))
                }
            }
            Ok(())
        });
    }

    #[test]
    fn anonymous_and_password_hellos_are_understood_by_the_server() {
        let strategy = (
            soup(USER_PIECES, 6),
            soup(USER_PIECES, 3),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 1..64),
        );
        check(1024, strategy, |(user, domain, anonymous, binding)| {
            let realm = &*REALM;
            let credentials = UserCredentials::Password {
                user,
                domain,
                password: Secret::new(PASSWORD),
            };
            let credentials = (!anonymous).then_some(&credentials);
            let Ok((_, hello)) = ClientExchange::start(
                credentials,
                &binding,
                &realm.provider,
                crate::user::scram::MAX_ITERATIONS,
            ) else {
                // SASLprep refused the name: nothing is sent.
                prop_assert!(!anonymous);
                return Ok(());
            };
            let answers = serve(vec![hello], &binding);
            check_answers(&answers)?;
            match answers.as_slice() {
                [Ok(Step::Done(Some(success), None))] if anonymous => {
                    prop_assert_eq!(success.kind, Kind::Success)
                }
                [Ok(Step::Send(challenge))] if !anonymous => {
                    prop_assert_eq!(challenge.kind, Kind::Challenge);
                    prop_assert!(challenge.payload.starts_with(b"r="));
                }
                // A name that SASLprep turns into no `NAME@DOMAIN` (a space, an empty
                // part) is refused as malformed: by its syntax, whoever exists.
                [Err((reason, _))] if !anonymous && reason.contains("malformed") => {}
                other => {
                    return Err(TestCaseError::fail(format!(
                        "anonymous: {anonymous}, answers: {other:?}"
                    )))
                }
            }
            Ok(())
        });
    }

    // ---- SCRAM messages ----------------------------------------------------------------

    /// What user names are made of: SCRAM escapes, SASLprep mappings, prohibited characters.
    #[rustfmt::skip]
    const USER_PIECES: &[&str] = &[
        "alice", "@", "EXAMPLE.TEST", ",", "=", "=2C", "=3D", "\u{a0}", "\u{ad}", "ﬁ", "Å",
        "\u{212b}", "é", "e\u{301}", "\u{2160}", " ", "\u{200b}", "\u{5d0}", "1", "\0",
    ];

    /// Deterministic "random" bytes: every byte `seed` (nonces need not be random here).
    fn fill(seed: u8) -> impl Fn(&mut [u8]) {
        move |buf: &mut [u8]| buf.fill(seed)
    }

    const USER: &str = "alice@EXAMPLE.TEST";

    const PASSWORD: &str = "pencil";

    /// The verifier of [`USER`]'s [`PASSWORD`], made once (PBKDF2 is slow in debug builds).
    fn verifier() -> Verifier {
        static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
            Verifier::new(PASSWORD, &[1; scram::MIN_SALT_LEN], scram::MIN_ITERATIONS).unwrap()
        });
        VERIFIER.clone()
    }

    fn lookup(user: &str) -> Option<Verifier> {
        (user == USER).then(verifier)
    }

    fn new_client(user: &str) -> Result<scram::Client, scram::ScramError> {
        scram::Client::new(user, PASSWORD, &BINDING, &fill(1))
    }

    fn new_server() -> scram::Server {
        scram::Server::new(&BINDING, b"decoy secret", &fill(2))
            .unwrap()
            .with_decoy_iterations(scram::MIN_ITERATIONS)
    }

    /// One real exchange, made once (the client runs PBKDF2): its messages, and the client
    /// waiting for the server-final message.
    struct Exchange {
        client_first: String,
        client_final: String,
        server_final: String,
        client: scram::Client,
    }

    static EXCHANGE: LazyLock<Exchange> = LazyLock::new(|| {
        let mut client = new_client(USER).unwrap();
        let mut server = new_server();
        let client_first = client.client_first();
        let server_first = server.handle_client_first(&client_first, &lookup).unwrap();
        let client_final = client.handle_server_first(&server_first).unwrap();
        let (server_final, _) = server.handle_client_final(&client_final).unwrap();
        Exchange {
            client_first,
            client_final,
            server_final,
            client,
        }
    });

    fn scram_text(real: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![
            1 => any_text(80),
            2 => soup(SCRAM_PIECES, 16),
            4 => mutated_text(Just(real.to_owned()), SCRAM_PIECES, 3),
        ]
    }

    #[test]
    fn scram_server_never_panics_on_any_client_message() {
        let exchange = &*EXCHANGE;
        let strategy = (
            scram_text(&exchange.client_first),
            any::<bool>(),
            scram_text(&exchange.client_final),
        );
        check(
            2048,
            strategy,
            |(client_first, real_first, client_final)| {
                let mut server = new_server();
                let client_first = if real_first {
                    exchange.client_first.clone()
                } else {
                    client_first
                };
                if let Ok(server_first) = server.handle_client_first(&client_first, &lookup) {
                    prop_assert!(server_first.starts_with("r="), "{}", server_first);
                    if let Ok((_, user)) = server.handle_client_final(&client_final) {
                        // Only the real exchange proves the password.
                        prop_assert_eq!(&user, USER);
                        prop_assert_eq!(&client_first, &exchange.client_first);
                        prop_assert_eq!(&client_final, &exchange.client_final);
                    }
                }
                Ok(())
            },
        );
    }

    /// A server-first message close to a real one; its iteration count is never one that
    /// would make the client run PBKDF2 for long (a valid one, 4096, is drawn rarely).
    fn server_first() -> impl Strategy<Value = String> {
        let nonce = prop_oneof![
            3 => soup(SCRAM_PIECES, 2).prop_map(|tail| format!("{}{tail}", client_nonce())),
            1 => Just(client_nonce()),
            1 => soup(SCRAM_PIECES, 4),
        ];
        let salt = prop_oneof![
            2 => Just("AQEBAQEBAQEBAQEBAQEBAQ==".to_owned()),
            1 => Just("AQEB".to_owned()),
            1 => soup(SCRAM_PIECES, 3),
        ];
        let iterations = prop::sample::select(
            &[
                "4096",
                "4095",
                "0",
                "04096",
                "10000001",
                "99999999999",
                "-1",
                "",
                "4096 ",
            ][..],
        );
        let extensions = prop::sample::select(&["", ",x=y", ",m=z", ",", ",1=2", ",xy"][..]);
        (nonce, salt, iterations, extensions)
            .prop_map(|(r, s, i, ext)| format!("r={r},s={s},i={i}{ext}"))
    }

    fn client_nonce() -> String {
        let first = new_client(USER).unwrap().client_first();
        first.rsplit_once("r=").unwrap().1.to_owned()
    }

    #[test]
    fn scram_client_never_panics_on_any_server_message() {
        let exchange = &*EXCHANGE;
        let strategy = (
            prop_oneof![1 => any_text(80), 2 => soup(SCRAM_PIECES, 16), 4 => server_first()],
            scram_text(&exchange.server_final),
        );
        check(1024, strategy, |(server_first, server_final)| {
            let mut client = new_client(USER).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let _ = client.handle_server_first(&server_first);
            if exchange.client.handle_server_final(&server_final).is_ok() {
                // Only the server's signature proves it (extensions after it are ignored).
                let signature = server_final.split(',').next();
                prop_assert_eq!(signature, Some(exchange.server_final.as_str()));
            }
            Ok(())
        });
    }

    #[test]
    fn scram_user_names_reach_the_server_as_the_client_sent_them() {
        let users = prop_oneof![3 => soup(USER_PIECES, 8), 1 => any_text(12)];
        check(4096, users, |user| {
            let Ok(client) = new_client(&user) else {
                return Ok(());
            };
            let looked_up = RefCell::new(None);
            let lookup = |name: &str| {
                *looked_up.borrow_mut() = Some(name.to_owned());
                None
            };
            let answer = new_server().handle_client_first(&client.client_first(), &lookup);
            prop_assert!(answer.is_ok(), "{:?} for {:?}", answer, user);
            let prepared = stringprep::saslprep(&user).map(|p| p.into_owned()).ok();
            prop_assert_eq!(looked_up.into_inner(), prepared);
            Ok(())
        });
    }

    fn verifier_of(text: &str) -> Result<Verifier, scram::ScramError> {
        Verifier::parse(text)
    }

    #[test]
    fn verifier_texts_round_trip_both_ways() {
        let strategy = (
            scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS,
            prop::collection::vec(any::<u8>(), scram::MIN_SALT_LEN..40),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
        )
            .prop_map(|(iterations, salt, stored_key, server_key)| Verifier {
                iterations,
                salt,
                stored_key,
                server_key,
            });
        check(2048, strategy, |verifier| {
            let text = verifier.to_text();
            prop_assert_eq!(verifier_of(&text), Ok(verifier));
            Ok(())
        });
        #[rustfmt::skip]
        const PIECES: &[&str] = &[
            "SCRAM-SHA-256$", "$", ":", "4096", "0", "=", "==", "A", "/", "+", "-", "_",
            "AQEBAQEBAQEBAQEBAQEBAQ==", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "é",
        ];
        let texts = prop_oneof![
            any_text(80),
            soup(PIECES, 12),
            mutated_text(Just(verifier().to_text()), PIECES, 3)
        ];
        check(2048, texts, |text| {
            if let Ok(verifier) = verifier_of(&text) {
                prop_assert_eq!(verifier.to_text(), text);
            }
            Ok(())
        });
    }
}

mod client_hello {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;
    use crate::core::fallback::{classify_first_bytes, FirstBytes};
    use crate::core::tls::client_hello_offers;
    use crate::user::step::ALPN;

    /// The first flight of a rustls client offering `alpn` (TLS 1.3 only, or 1.2 and 1.3).
    fn client_hello(alpn: &[Vec<u8>], tls13_only: bool) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::ALL_VERSIONS
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.to_vec();
        let name = ServerName::try_from("server.example.test").unwrap();
        let mut connection = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        connection.write_tls(&mut hello).unwrap();
        hello
    }

    /// ALPN lists, with and without the user-authentication protocol.
    fn alpn_lists() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let protocol = prop_oneof![
            2 => Just(ALPN.to_vec()),
            1 => Just(b"h2".to_vec()),
            1 => Just(ALPN[..ALPN.len() - 1].to_vec()),
            2 => prop::collection::vec(any::<u8>(), 1..20),
        ];
        prop::collection::vec(protocol, 0..6)
    }

    fn hellos() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>)> {
        (alpn_lists(), any::<bool>()).prop_map(|(alpn, tls13_only)| {
            let hello = client_hello(&alpn, tls13_only);
            (alpn, hello)
        })
    }

    /// Bytes a client might send first: arbitrary, TLS-like, or a real ClientHello, whole,
    /// mutated or followed by more.
    fn first_bytes() -> impl Strategy<Value = Vec<u8>> {
        let hello = || hellos().prop_map(|(_, hello)| hello);
        prop_oneof![
            2 => prop::collection::vec(any::<u8>(), 0..64),
            2 => (0x14u8..=0x18, 0u8..6, any::<[u8; 3]>(), prop::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(kind, minor, rest, tail)| [&[kind, 3, minor][..], &rest, &tail].concat()),
            1 => hello(),
            3 => mutated_bytes(hello()),
            1 => (hello(), prop::collection::vec(any::<u8>(), 1..40))
                .prop_map(|(hello, tail)| [hello, tail].concat()),
        ]
    }

    fn classify(bytes: &[u8]) -> FirstBytes {
        classify_first_bytes(bytes)
    }

    fn offers_user_alpn(bytes: &[u8]) -> Option<bool> {
        client_hello_offers(bytes, ALPN)
    }

    #[test]
    fn peeks_never_panic_and_the_first_bytes_verdict_never_changes_once_given() {
        check(512, first_bytes(), |bytes| {
            let _ = offers_user_alpn(&bytes);
            let full = classify(&bytes);
            for cut in 0..=bytes.len() {
                let verdict = classify(&bytes[..cut]);
                if verdict != FirstBytes::NeedMore {
                    prop_assert_eq!(full, verdict, "prefix of {} bytes", cut);
                }
            }
            Ok(())
        });
    }

    #[test]
    fn a_client_hellos_prefixes_are_undecided_or_agree_with_it() {
        check(
            384,
            (hellos(), prop::collection::vec(any::<Index>(), 24)),
            |((alpn, hello), cuts)| {
                prop_assert_eq!(classify(&hello), FirstBytes::ClientHello);
                let offered = alpn.iter().any(|p| p == ALPN);
                prop_assert_eq!(offers_user_alpn(&hello), Some(offered));
                let mut cuts: Vec<usize> = cuts.iter().map(|at| at.index(hello.len())).collect();
                cuts.extend(0..8);
                cuts.extend(hello.len() - 8..hello.len());
                for cut in cuts {
                    let verdict = offers_user_alpn(&hello[..cut]);
                    prop_assert!(
                        verdict.is_none() || verdict == Some(offered),
                        "{} of {} bytes: {:?}, the whole hello: {}",
                        cut,
                        hello.len(),
                        verdict,
                        offered
                    );
                    prop_assert_ne!(classify(&hello[..cut]), FirstBytes::NotTls);
                }
                Ok(())
            },
        );
    }
}
