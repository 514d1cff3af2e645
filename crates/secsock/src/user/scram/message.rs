//! The SCRAM message grammar (RFC 5802 §7) that the client, the server and the verifier's
//! text form share: attributes, extensions, nonces, base64, iteration counts, user names.
//!
//! Not here: what a message means to a side (`client`, `server`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{malformed, ScramError, MAX_MESSAGE_LEN};

pub(super) fn check_len(message: &str, which: &str) -> Result<(), ScramError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(malformed(format!(
            "{which}: {} bytes, more than {MAX_MESSAGE_LEN}",
            message.len()
        )));
    }
    Ok(())
}

/// The value of `field` if it is the attribute `name=`.
pub(super) fn attribute<'a>(
    field: Option<&'a str>,
    name: char,
    what: &str,
) -> Result<&'a str, ScramError> {
    let field = field.ok_or_else(|| malformed(format!("{name}: missing ({what})")))?;
    let mut chars = field.chars();
    if chars.next() == Some(name) && chars.next() == Some('=') {
        Ok(&field[2..])
    } else if field.starts_with("m=") {
        Err(malformed("m: mandatory extensions are not supported"))
    } else {
        Err(malformed(format!(
            "{name}: expected {what} (`{name}=`), found `{}`",
            shorten(field)
        )))
    }
}

/// The rest of a message after its mandatory attributes: optional extensions
/// (`x=value`, ignored as RFC 5802 allows), which must still be well formed.
pub(super) fn check_extensions<'a>(rest: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for field in rest {
        let bytes = field.as_bytes();
        if field.starts_with("m=") {
            return Err(malformed("m: mandatory extensions are not supported"));
        }
        if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
            return Err(malformed(format!(
                "extension: `{}` is not an attribute",
                shorten(field)
            )));
        }
    }
    Ok(())
}

/// At most 40 characters of peer text, for error messages.
pub(super) fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    short.escape_debug().to_string()
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E.
pub(super) fn check_nonce(nonce: &str, what: &str) -> Result<(), ScramError> {
    if nonce.is_empty() {
        return Err(malformed(format!("r: empty {what}")));
    }
    if !nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed(format!(
            "r: {what} has a non-printable character"
        )));
    }
    Ok(())
}

pub(super) fn decode_base64(value: &str, field: &str) -> Result<Vec<u8>, ScramError> {
    BASE64
        .decode(value)
        .map_err(|_| malformed(format!("{field}: not base64")))
}

pub(super) fn decode_key(value: &str, field: &str) -> Result<[u8; 32], ScramError> {
    let bytes = decode_base64(value, field)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| malformed(format!("{field}: {} bytes, expected 32", bytes.len())))
}

pub(super) fn parse_iterations(value: &str) -> Result<u32, ScramError> {
    let digits_only = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || value.starts_with('0') {
        return Err(malformed(format!(
            "i: `{}` is not an iteration count",
            shorten(value)
        )));
    }
    value
        .parse::<u32>()
        .map_err(|_| malformed("i: iteration count out of range"))
}

/// RFC 5802 `saslname`: `,` and `=` escaped as `=2C` and `=3D`.
pub(super) fn encode_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

pub(super) fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => {
                return Err(malformed(
                    "n: `=` not followed by 2C or 3D in the user name",
                ))
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.contains('\0') {
        return Err(malformed("n: NUL in the user name"));
    }
    Ok(out)
}
