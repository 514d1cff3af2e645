//! The subjectAltName values secsock writes and reads itself, in DER with asn1-rs: the
//! GeneralNames of a certificate its CA issues ([`SubjectAltName`], for `secsock issue`),
//! and the two otherName values x509-parser leaves undecoded, the Kerberos principal name
//! (id-pkinit-san, RFC 4556: [`KerberosPrincipal`]) and the UPN (Microsoft).
//!
//! One owner per format: the CA writes a Kerberos principal with the same type and code
//! that [`CertificateNames`](super::CertificateNames) reads it with. Only DER is read:
//! a value must re-encode to exactly its input (definite, minimal lengths, minimal
//! integers, single-byte tags, no trailing bytes), since DER has one encoding per value.
//!
//! Not here: which SANs prove which principal (each kind's module, and `secsock issue`'s
//! choice of SANs) and the rest of a certificate (x509-parser reads it, rcgen writes it).

use std::fmt;
use std::net::IpAddr;

use x509_parser::asn1_rs::{Any, Class, FromDer, Header, Length, Tag, ToDer};

/// Content octets of the UPN otherName OID, 1.3.6.1.4.1.311.20.2.3 (Microsoft).
pub(super) const OID_UPN: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03];
/// Content octets of id-pkinit-san, 1.3.6.1.5.2.2 (RFC 4556).
pub(super) const OID_KRB5_PRINCIPAL_NAME: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x02, 0x02];

/// Universal tag numbers used here.
const OBJECT_IDENTIFIER: u32 = 6;
const UTF8_STRING: u32 = 12;
const SEQUENCE: u32 = 16;
const GENERAL_STRING: u32 = 27;

/// One subject alternative name to encode: the CA's side of the names a certificate
/// presents (a certificate's names are read by [`CertificateNames`](super::CertificateNames)).
///
/// ```
/// use secsock::name::{KerberosPrincipal, SubjectAltName};
///
/// let spn = KerberosPrincipal {
///     realm: "EXAMPLE.TEST".into(),
///     components: vec!["http".into(), "web.example.test".into()],
/// };
/// let sans = [
///     SubjectAltName::Dns("web.example.test".into()),
///     SubjectAltName::Kerberos { principal: spn, name_type: KerberosPrincipal::NT_SRV_INST },
/// ];
/// let extension = SubjectAltName::extension_value(&sans);
/// assert_eq!(extension[0], 0x30); // GeneralNames ::= SEQUENCE OF GeneralName
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectAltName {
    /// dNSName.
    Dns(String),
    /// iPAddress.
    Ip(IpAddr),
    /// uniformResourceIdentifier.
    Uri(String),
    /// rfc822Name (an email address).
    Email(String),
    /// otherName UPN (1.3.6.1.4.1.311.20.2.3), a UTF8String `name@domain`.
    Upn(String),
    /// otherName KRB5PrincipalName (id-pkinit-san, 1.3.6.1.5.2.2).
    Kerberos {
        /// The principal.
        principal: KerberosPrincipal,
        /// Its name type ([`KerberosPrincipal::NT_SRV_INST`] for services).
        name_type: i32,
    },
}

impl SubjectAltName {
    /// The GeneralName (RFC 5280 §4.2.1.6), DER.
    pub fn to_der(&self) -> Vec<u8> {
        let context = |tag, content: &[u8]| der(Class::ContextSpecific, false, tag, content);
        match self {
            SubjectAltName::Email(address) => context(1, address.as_bytes()),
            SubjectAltName::Dns(name) => context(2, name.as_bytes()),
            SubjectAltName::Uri(uri) => context(6, uri.as_bytes()),
            SubjectAltName::Ip(IpAddr::V4(ip)) => context(7, &ip.octets()),
            SubjectAltName::Ip(IpAddr::V6(ip)) => context(7, &ip.octets()),
            SubjectAltName::Upn(upn) => other_name_der(
                OID_UPN,
                &der(Class::Universal, false, UTF8_STRING, upn.as_bytes()),
            ),
            SubjectAltName::Kerberos {
                principal,
                name_type,
            } => other_name_der(OID_KRB5_PRINCIPAL_NAME, &principal.to_der(*name_type)),
        }
    }

    /// The subjectAltName extension's value: GeneralNames ::= SEQUENCE OF GeneralName.
    pub fn extension_value(names: &[SubjectAltName]) -> Vec<u8> {
        let names: Vec<u8> = names.iter().flat_map(SubjectAltName::to_der).collect();
        der(Class::Universal, true, SEQUENCE, &names)
    }
}

/// A Kerberos principal name from a certificate's id-pkinit-san SAN (RFC 4556).
///
/// Displays as `comp1/comp2@REALM`, with `\`, `/` and `@` inside a component or the realm
/// escaped by a backslash, as Kerberos tools write them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KerberosPrincipal {
    /// The realm (`EXAMPLE.TEST`), case-sensitive.
    pub realm: String,
    /// The name components (`["host", "server.example.test"]`), at least one.
    pub components: Vec<String>,
}

impl fmt::Display for KerberosPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
            for c in text.chars() {
                if matches!(c, '\\' | '/' | '@') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            Ok(())
        }
        for (index, component) in self.components.iter().enumerate() {
            if index > 0 {
                f.write_str("/")?;
            }
            write_escaped(f, component)?;
        }
        f.write_str("@")?;
        write_escaped(f, &self.realm)
    }
}

impl KerberosPrincipal {
    /// NT-PRINCIPAL (RFC 4120 §6.2): a user.
    pub const NT_PRINCIPAL: i32 = 1;
    /// NT-SRV-INST (RFC 4120 §6.2): a service and instance, as `secsock issue` writes SPNs.
    pub const NT_SRV_INST: i32 = 2;

    /// The KRB5PrincipalName, DER (RFC 4556 §3.2.2, RFC 4120 §5.2.2):
    ///
    /// ```text
    /// KRB5PrincipalName ::= SEQUENCE { realm [0] Realm, principalName [1] PrincipalName }
    /// PrincipalName ::= SEQUENCE { name-type [0] Int32,
    ///                              name-string [1] SEQUENCE OF KerberosString }
    /// ```
    ///
    /// with the realm and the name strings as GeneralStrings (written as given: UTF-8).
    pub fn to_der(&self, name_type: i32) -> Vec<u8> {
        let general_string =
            |text: &str| der(Class::Universal, false, GENERAL_STRING, text.as_bytes());
        let strings: Vec<u8> = self
            .components
            .iter()
            .flat_map(|c| general_string(c))
            .collect();
        let principal_name = [
            explicit(0, &integer(name_type)),
            explicit(1, &der(Class::Universal, true, SEQUENCE, &strings)),
        ]
        .concat();
        let content = [
            explicit(0, &general_string(&self.realm)),
            explicit(1, &der(Class::Universal, true, SEQUENCE, &principal_name)),
        ]
        .concat();
        der(Class::Universal, true, SEQUENCE, &content)
    }
}

/// Why an otherName value was refused (for tests and debugging; callers skip the entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DerError(pub(super) &'static str);

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

type Result<T> = std::result::Result<T, DerError>;

/// Decodes an id-pkinit-san otherName value (with or without its `[0] EXPLICIT` wrapper).
pub(super) fn kerberos_principal_name(value: &[u8]) -> Result<KerberosPrincipal> {
    let encoded = unwrap_explicit(value)?;
    let (principal_name, _) = element(encoded, Class::Universal, SEQUENCE)?;
    let (realm, rest) = element(principal_name, Class::ContextSpecific, 0)?;
    let (realm, _) = element(realm, Class::Universal, GENERAL_STRING)?;
    let realm = text(realm)?;
    let (principal, _) = element(rest, Class::ContextSpecific, 1)?;
    let (principal, _) = element(principal, Class::Universal, SEQUENCE)?;
    let (name_type, rest) = element(principal, Class::ContextSpecific, 0)?;
    let (_, name_type) =
        i32::from_der(name_type).map_err(|_| DerError("name-type is not a 32-bit INTEGER"))?;
    let (strings, _) = element(rest, Class::ContextSpecific, 1)?;
    let (mut strings, _) = element(strings, Class::Universal, SEQUENCE)?;
    let mut components = Vec::new();
    while !strings.is_empty() {
        let (component, rest) = element(strings, Class::Universal, GENERAL_STRING)?;
        let component = text(component)?;
        if component.is_empty() {
            return Err(DerError("empty name component"));
        }
        components.push(component.to_string());
        strings = rest;
    }
    if realm.is_empty() {
        return Err(DerError("empty realm"));
    }
    if components.is_empty() {
        return Err(DerError("no name components"));
    }
    let principal = KerberosPrincipal {
        realm: realm.to_string(),
        components,
    };
    // What the reads above passed over (trailing bytes, extra fields, long-form lengths,
    // a wrong constructed bit) makes the encoding differ from the input.
    if principal.to_der(name_type) != encoded {
        return Err(DerError("not the DER encoding of a KRB5PrincipalName"));
    }
    Ok(principal)
}

/// Decodes a UPN otherName value: a UTF8String (with or without its `[0] EXPLICIT`).
pub(super) fn user_principal_name(value: &[u8]) -> Result<String> {
    let encoded = unwrap_explicit(value)?;
    let (content, _) = element(encoded, Class::Universal, UTF8_STRING)?;
    let upn = text(content)?;
    if der(Class::Universal, false, UTF8_STRING, upn.as_bytes()) != encoded {
        return Err(DerError("not the DER encoding of a UTF8String"));
    }
    Ok(upn.to_string())
}

/// otherName [0] { type-id OBJECT IDENTIFIER, value [0] EXPLICIT ANY }.
fn other_name_der(oid: &[u8], value: &[u8]) -> Vec<u8> {
    let content = [
        der(Class::Universal, false, OBJECT_IDENTIFIER, oid),
        explicit(0, value),
    ]
    .concat();
    der(Class::ContextSpecific, true, 0, &content)
}

/// `[tag] EXPLICIT`: a context-specific, constructed wrapper.
fn explicit(tag: u32, inner: &[u8]) -> Vec<u8> {
    der(Class::ContextSpecific, true, tag, inner)
}

/// An INTEGER in its minimal two's-complement form.
fn integer(value: i32) -> Vec<u8> {
    // Writing to a Vec cannot fail.
    value.to_der_vec().expect("DER of an INTEGER fits in a Vec")
}

/// Identifier, definite length (short form below 128, else the fewest octets), content.
fn der(class: Class, constructed: bool, tag: u32, content: &[u8]) -> Vec<u8> {
    let header = Header::new(
        class,
        constructed,
        Tag(tag),
        Length::Definite(content.len()),
    );
    let mut out = Vec::with_capacity(content.len() + 6);
    // Writing to a Vec cannot fail, and every tag used here has the one-octet form.
    header
        .write_der_header(&mut out)
        .expect("a DER header fits in a Vec");
    out.extend_from_slice(content);
    out
}

/// x509-parser hands over an otherName value as the bytes after the type OID: the
/// `[0] EXPLICIT` wrapper and what it wraps. Both that and the bare value are accepted.
fn unwrap_explicit(value: &[u8]) -> Result<&[u8]> {
    if value.first() != Some(&0xA0) {
        return Ok(value);
    }
    let (inner, _) = element(value, Class::ContextSpecific, 0)?;
    if explicit(0, inner) != value {
        return Err(DerError("not the DER encoding of an [0] EXPLICIT value"));
    }
    Ok(inner)
}

/// One element of `class` and `tag` at the start of `input`: its content and what follows.
fn element(input: &[u8], class: Class, tag: u32) -> Result<(&[u8], &[u8])> {
    let (rest, any) = Any::from_der(input).map_err(|_| DerError("not a DER element"))?;
    if any.header.class() != class || any.header.tag() != Tag(tag) {
        return Err(DerError("unexpected tag"));
    }
    Ok((any.data, rest))
}

fn text(content: &[u8]) -> Result<&str> {
    let text = std::str::from_utf8(content).map_err(|_| DerError("string is not UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(DerError("string contains a control character"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::tests::*;

    #[test]
    fn oids_are_the_documented_ones() {
        use x509_parser::asn1_rs::Oid;
        assert_eq!(
            Oid::new(OID_UPN.into()).to_id_string(),
            "1.3.6.1.4.1.311.20.2.3"
        );
        assert_eq!(
            Oid::new(OID_KRB5_PRINCIPAL_NAME.into()).to_id_string(),
            "1.3.6.1.5.2.2"
        );
    }

    #[test]
    fn malformed_other_names_are_skipped() {
        let good = krb5_principal_name("EXAMPLE.TEST", &["host", "server.example.test"]);
        let cert = certificate_with_raw_sans(&[
            // Truncated KRB5PrincipalName inside a well-formed otherName.
            other_name(OID_KRB5_PRINCIPAL_NAME, &good[..good.len() - 3]),
            // Trailing garbage after the KRB5PrincipalName.
            other_name(
                OID_KRB5_PRINCIPAL_NAME,
                &[good.as_slice(), &[0x05, 0x00]].concat(),
            ),
            // A UPN that is an IA5String, not a UTF8String.
            other_name(OID_UPN, &tlv(0x16, b"mallory@EXAMPLE.TEST")),
            // An unknown otherName type.
            other_name(&[0x2B, 0x06, 0x01, 0x04, 0x01, 0x09], &tlv(0x0C, b"x")),
            tlv(0x82, b"ok.example.test"),
        ]);
        assert!(
            cert.kerberos.is_empty() && cert.upns.is_empty(),
            "{:?}",
            cert.presented()
        );
        assert_eq!(cert.dns, ["ok.example.test"]);
        check_matches(
            "malformed other names",
            &cert,
            &[
                ("host/server.example.test", false),
                ("ok.example.test", true),
            ],
        );
    }

    #[test]
    fn kerberos_reader_refuses_every_malformed_encoding() {
        let bare = krb5_principal_name("EXAMPLE.TEST", &["host", "server.example.test"]);
        let wrapped = tlv(0xA0, &bare);
        let expected = KerberosPrincipal {
            realm: "EXAMPLE.TEST".into(),
            components: vec!["host".into(), "server.example.test".into()],
        };
        assert_eq!(kerberos_principal_name(&bare).as_ref(), Ok(&expected));
        assert_eq!(kerberos_principal_name(&wrapped).as_ref(), Ok(&expected));

        for encoding in [&bare, &wrapped] {
            for cut in 0..encoding.len() {
                assert!(
                    kerberos_principal_name(&encoding[..cut]).is_err(),
                    "truncated at {cut}"
                );
            }
            assert!(
                kerberos_principal_name(&[encoding.as_slice(), &[0]].concat()).is_err(),
                "trailing byte"
            );
            // No single-byte change may panic (most are refused, a few still decode).
            for index in 0..encoding.len() {
                for value in [
                    0x00, 0x01, 0x1B, 0x30, 0x7F, 0x80, 0x81, 0x84, 0xA0, 0xA1, 0xFF,
                ] {
                    let mut mutated = encoding.clone();
                    mutated[index] = value;
                    let _ = kerberos_principal_name(&mutated);
                }
            }
        }

        let name_type = |content: &[u8]| tlv(0xA0, &tlv(0x02, content));
        let strings = |components: &[&[u8]]| {
            tlv(
                0xA1,
                &tlv(
                    0x30,
                    &components
                        .iter()
                        .flat_map(|c| tlv(0x1B, c))
                        .collect::<Vec<_>>(),
                ),
            )
        };
        let build = |realm: Vec<u8>, principal: Vec<u8>| {
            tlv(
                0x30,
                &[tlv(0xA0, &realm), tlv(0xA1, &tlv(0x30, &principal))].concat(),
            )
        };
        let realm = tlv(0x1B, b"R");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty input", vec![]),
            (
                "indefinite length",
                [&[0x30, 0x80][..], &bare[2..], &[0, 0]].concat(),
            ),
            (
                "realm as UTF8String",
                build(
                    tlv(0x0C, b"R"),
                    [name_type(&[1]), strings(&[b"a"])].concat(),
                ),
            ),
            (
                "empty realm",
                build(tlv(0x1B, b""), [name_type(&[1]), strings(&[b"a"])].concat()),
            ),
            (
                "no components",
                build(realm.clone(), [name_type(&[1]), strings(&[])].concat()),
            ),
            (
                "empty component",
                build(realm.clone(), [name_type(&[1]), strings(&[b""])].concat()),
            ),
            (
                "non-UTF-8 component",
                build(
                    realm.clone(),
                    [name_type(&[1]), strings(&[&[0xC3, 0x28]])].concat(),
                ),
            ),
            (
                "control character",
                build(
                    realm.clone(),
                    [name_type(&[1]), strings(&[b"a\0b"])].concat(),
                ),
            ),
            (
                "empty name-type",
                build(realm.clone(), [name_type(&[]), strings(&[b"a"])].concat()),
            ),
            (
                "huge name-type",
                build(
                    realm.clone(),
                    [name_type(&[1, 2, 3, 4, 5]), strings(&[b"a"])].concat(),
                ),
            ),
            ("missing name-type", build(realm.clone(), strings(&[b"a"]))),
            (
                "extra field",
                build(
                    realm.clone(),
                    [name_type(&[1]), strings(&[b"a"]), tlv(0xA2, &[])].concat(),
                ),
            ),
            (
                "length beyond input",
                vec![0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0xA0],
            ),
        ];
        for (what, encoding) in cases {
            assert!(
                kerberos_principal_name(&encoding).is_err(),
                "{what} was accepted"
            );
        }
        assert!(kerberos_principal_name(&build(
            realm,
            [name_type(&[1]), strings(&[b"a"])].concat()
        ))
        .is_ok());
    }

    #[test]
    fn reads_only_der_lengths() {
        // Each header variant of one UTF8String (a UPN): only DER's is read.
        let cases: &[(&[u8], Option<&str>)] = &[
            (&[0x0C, 0x00], Some("")),
            (&[0x0C, 0x01, b'a'], Some("a")),
            (&[0x0C, 0x01, b'a', 0xBB], None), // trailing byte
            (&[0x0C], None),                   // missing length
            (&[], None),                       // missing tag
            (&[0x0D, 0x00], None),             // unexpected tag
            (&[0x3F, 0x0C, 0x00], None),       // multi-byte tag
            (&[0x2C, 0x80, 0x00, 0x00], None), // indefinite length
            (&[0x0C, 0x81, 0x01, b'a'], None), // long form for a short length
            (&[0x0C, 0x82, 0x00, 0x01, b'a'], None), // leading zero length octet
            (&[0x0C, 0x85, 1, 1, 1, 1, 1], None), // five length octets
            (&[0x0C, 0x82, 0x01], None),       // truncated length
            (&[0x0C, 0x02, b'a'], None),       // runs past the end
            (&[0x0C, 0x84, 0xFF, 0xFF, 0xFF, 0xFF], None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                user_principal_name(input).ok().as_deref(),
                *expected,
                "input {input:02X?}"
            );
        }
        let long = "a".repeat(300);
        let encoded = der(Class::Universal, false, UTF8_STRING, long.as_bytes());
        assert_eq!(&encoded[..4], [0x0C, 0x82, 0x01, 0x2C]);
        assert_eq!(user_principal_name(&encoded), Ok(long));
    }

    #[test]
    fn upn_with_and_without_explicit_wrapper() {
        let bare = tlv(0x0C, "alice@EXAMPLE.TEST".as_bytes());
        let wrapped = tlv(0xA0, &bare);
        assert_eq!(
            user_principal_name(&bare).as_deref(),
            Ok("alice@EXAMPLE.TEST")
        );
        assert_eq!(
            user_principal_name(&wrapped).as_deref(),
            Ok("alice@EXAMPLE.TEST")
        );
        assert!(
            user_principal_name(&tlv(0x16, b"alice@x")).is_err(),
            "IA5String is not a UPN"
        );
        assert!(user_principal_name(&tlv(0x0C, &[0xFF, 0xFE])).is_err());
        assert!(user_principal_name(&tlv(0x0C, b"a\nb@x")).is_err());
        assert!(user_principal_name(&[wrapped.as_slice(), &[0]].concat()).is_err());
        // A long-form wrapper length is not DER.
        let long_wrapper = [&[0xA0, 0x81, bare.len() as u8][..], &bare].concat();
        assert!(user_principal_name(&long_wrapper).is_err());
    }

    #[test]
    fn lengths_use_the_short_form_below_128_and_the_fewest_long_form_octets_above() {
        for (len, header) in [
            (0, vec![0x82, 0x00]),
            (1, vec![0x82, 0x01]),
            (127, vec![0x82, 0x7F]),
            (128, vec![0x82, 0x81, 0x80]),
            (255, vec![0x82, 0x81, 0xFF]),
            (256, vec![0x82, 0x82, 0x01, 0x00]),
            (300, vec![0x82, 0x82, 0x01, 0x2C]),
            (65_535, vec![0x82, 0x82, 0xFF, 0xFF]),
            (65_536, vec![0x82, 0x83, 0x01, 0x00, 0x00]),
        ] {
            let encoded = SubjectAltName::Dns("a".repeat(len)).to_der();
            assert_eq!(encoded[..header.len()], header, "length {len}");
            assert_eq!(encoded.len(), header.len() + len);
        }
        assert_eq!(
            SubjectAltName::Dns("a.test".into()).to_der(),
            b"\x82\x06a.test"
        );
    }

    #[test]
    fn name_types_are_minimal_integers() {
        let principal = KerberosPrincipal {
            realm: "R".into(),
            components: vec!["a".into()],
        };
        for (value, expected) in [
            (0, vec![0x02, 0x01, 0x00]),
            (2, vec![0x02, 0x01, 0x02]),
            (127, vec![0x02, 0x01, 0x7F]),
            (128, vec![0x02, 0x02, 0x00, 0x80]),
            (256, vec![0x02, 0x02, 0x01, 0x00]),
            (-1, vec![0x02, 0x01, 0xFF]),
            (i32::MAX, vec![0x02, 0x04, 0x7F, 0xFF, 0xFF, 0xFF]),
        ] {
            let encoded = principal.to_der(value);
            // SEQUENCE, [0] realm (5 octets), [1], SEQUENCE, [0]: the INTEGER follows.
            let at = 2 + 5 + 4 + 2;
            assert_eq!(
                encoded[at..at + expected.len()],
                expected,
                "name type {value}"
            );
            assert_eq!(kerberos_principal_name(&encoded), Ok(principal.clone()));
        }
    }

    #[test]
    fn krb5_principal_name_is_encoded_as_rfc_4556_says() {
        let principal = KerberosPrincipal {
            realm: "R".into(),
            components: vec!["a".into(), "b".into()],
        };
        #[rustfmt::skip]
        let expected = [
            0x30, 0x18,                                     // KRB5PrincipalName
              0xA0, 0x03, 0x1B, 0x01, b'R',                 //   realm [0] GeneralString
              0xA1, 0x11, 0x30, 0x0F,                       //   principalName [1] SEQUENCE
                0xA0, 0x03, 0x02, 0x01, 0x02,               //     name-type [0] INTEGER 2
                0xA1, 0x08, 0x30, 0x06,                     //     name-string [1] SEQUENCE OF
                  0x1B, 0x01, b'a', 0x1B, 0x01, b'b',       //       GeneralString x2
        ];
        assert_eq!(principal.to_der(KerberosPrincipal::NT_SRV_INST), expected);
        #[rustfmt::skip]
        let expected = [
            0xA0, 0x13,                                     // otherName [0]
              0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03,
              0xA0, 0x05, 0x0C, 0x03, b'a', b'@', b'B',     //   [0] EXPLICIT UTF8String
        ];
        assert_eq!(SubjectAltName::Upn("a@B".into()).to_der(), expected);
    }

    #[test]
    fn what_is_encoded_decodes_to_itself() {
        let long = "x".repeat(300);
        let principals = [
            ("EXAMPLE.TEST", vec!["alice"]),
            ("EXAMPLE.TEST", vec!["host", "server.example.test"]),
            ("EXAMPLE.TEST", vec!["http", "[2001:db8::1]:443", "api"]),
            ("ÉXAMPLE.TEST", vec!["http", "web.example.test", "sérvice"]),
            ("R", vec![long.as_str()]),
        ];
        for (realm, components) in principals {
            let principal = KerberosPrincipal {
                realm: realm.into(),
                components: components.iter().map(|c| c.to_string()).collect(),
            };
            for name_type in [
                KerberosPrincipal::NT_PRINCIPAL,
                KerberosPrincipal::NT_SRV_INST,
            ] {
                let value = principal.to_der(name_type);
                assert_eq!(kerberos_principal_name(&value).as_ref(), Ok(&principal));
                let general_name = SubjectAltName::Kerberos {
                    principal: principal.clone(),
                    name_type,
                }
                .to_der();
                // x509-parser reads what we write as one otherName.
                let extension = SubjectAltName::extension_value(&[SubjectAltName::Kerberos {
                    principal: principal.clone(),
                    name_type,
                }]);
                let (_, names) =
                    x509_parser::extensions::SubjectAlternativeName::from_der(&extension)
                        .map_err(|e| e.to_string())
                        .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(names.general_names.len(), 1, "{general_name:02X?}");
                assert!(matches!(
                    names.general_names[0],
                    x509_parser::extensions::GeneralName::OtherName(..)
                ));
            }
        }
        for upn in ["alice@EXAMPLE.TEST", "jörg@EXAMPLE.TEST"] {
            let value = der(Class::Universal, false, UTF8_STRING, upn.as_bytes());
            assert_eq!(user_principal_name(&value).as_deref(), Ok(upn));
        }
    }
}
