//! The units the policy file writes durations and sizes in: [`parse_duration`]
//! (`"1h30m"`), [`parse_size`] (`"64GiB"`), and a duration written back the same way.
//!
//! Pure text to numbers; not what the numbers may be (that is [`super::build`]'s).

use std::time::Duration;

/// Parses a duration such as `"10s"`, `"500ms"`, `"2h"`, `"1h30m"`, `"7d"` or `"0s"`.
///
/// Units: `ms`, `s`, `m` (minutes), `h`, `d`; every number needs one. Components add up.
/// The error says what is wrong with the text.
///
/// ```
/// use secsock::policy::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(parse_duration("10").unwrap_err().contains("no unit"));
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: &str = "use ms, s, m, h or d";
    let invalid = |why: String| format!("invalid duration `{text}`: {why}");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid(format!(
            "it is empty (write e.g. \"10s\" or \"1h30m\"; {UNITS})"
        )));
    }
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let (number, after) =
            split_number(rest).ok_or_else(|| invalid(format!("expected a number at `{rest}`")))?;
        let after = after.trim_start();
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let ms_per_unit: u64 = match unit.to_ascii_lowercase().as_str() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" if after.starts_with('.') || after.starts_with(',') => {
                return Err(invalid(
                    "fractions are not supported (write e.g. \"1h30m\" or \"1500ms\")".to_owned(),
                ))
            }
            "" => {
                return Err(invalid(format!(
                    "`{number}` has no unit ({UNITS}, e.g. \"{number}s\")"
                )))
            }
            other => return Err(invalid(format!("unknown unit `{other}` ({UNITS})"))),
        };
        let too_large = || invalid("it is too large".to_owned());
        let n: u64 = number.parse().map_err(|_| too_large())?;
        let ms = n.checked_mul(ms_per_unit).ok_or_else(too_large)?;
        total_ms = total_ms.checked_add(ms).ok_or_else(too_large)?;
        rest = after.trim_start();
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a byte count such as `"64GiB"`, `"1MiB"`, `"512KiB"`, `"1000"`, `"10MB"` or `"1GB"`.
///
/// Units (case-insensitive): `B`, decimal `KB` `MB` `GB` `TB`, binary `KiB` `MiB` `GiB`
/// `TiB`; a bare number is bytes. More than `u64::MAX` bytes is an error.
///
/// ```
/// use secsock::policy::parse_size;
///
/// assert_eq!(parse_size("64GiB"), Ok(64 << 30));
/// assert_eq!(parse_size("10MB"), Ok(10_000_000));
/// assert!(parse_size("99999999TiB").unwrap_err().contains("too large"));
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    const UNITS: &str = "use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB";
    let invalid = |why: String| format!("invalid size `{text}`: {why}");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid(format!(
            "it is empty (write e.g. \"64GiB\"; {UNITS})"
        )));
    }
    let (number, unit) = split_number(trimmed)
        .ok_or_else(|| invalid(format!("expected a number at `{trimmed}`")))?;
    let unit = unit.trim();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ if unit.starts_with('.') || unit.starts_with(',') => {
            return Err(invalid(
                "fractions are not supported (write e.g. \"1536MiB\")".to_owned(),
            ))
        }
        _ => return Err(invalid(format!("unknown unit `{unit}` ({UNITS})"))),
    };
    let too_large = || invalid(format!("it is too large (at most {} bytes)", u64::MAX));
    let n: u64 = number.parse().map_err(|_| too_large())?;
    n.checked_mul(multiplier).ok_or_else(too_large)
}

/// Splits leading ASCII digits from the rest; `None` if there are none.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0).then(|| text.split_at(digits))
}

/// `15m`, `8s`, `1500ms`: a duration as the policy file writes it.
pub(super) fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms % 86_400_000 == 0 && ms > 0 => format!("{}d", ms / 86_400_000),
        _ if ms % 3_600_000 == 0 && ms > 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 && ms > 0 => format!("{}m", ms / 60_000),
        _ if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("10s", 10_000),
            ("500ms", 500),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("7d", 604_800_000),
            ("0s", 0),
            ("1m", 60_000),
            (" 1h 30m ", 5_400_000),
            ("1H", 3_600_000),
            ("1s500ms", 1_500),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        let bad = [
            ("", "it is empty"),
            ("10", "`10` has no unit"),
            ("10x", "unknown unit `x`"),
            ("1.5h", "fractions are not supported"),
            ("-1s", "expected a number at `-1s`"),
            ("h", "expected a number at `h`"),
            ("1h foo", "expected a number at `foo`"),
            ("99999999999999999999s", "too large"),
            ("213503982335d", "too large"),
            ("18446744073709551615ms1ms", "too large"),
        ];
        for (text, needle) in bad {
            let e = parse_duration(text).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid duration `{text}`: ")),
                "{e}"
            );
            assert!(e.contains(needle), "{text}: {e} lacks {needle}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("64GiB", 64 << 30),
            ("1MiB", 1 << 20),
            ("512KiB", 512 << 10),
            ("1000", 1000),
            ("10MB", 10_000_000),
            ("1GB", 1_000_000_000),
            ("2TB", 2_000_000_000_000),
            ("1TiB", 1 << 40),
            ("7B", 7),
            ("64 gib", 64 << 30),
            ("0", 0),
            ("18446744073709551615", u64::MAX),
            ("16777215TiB", 16_777_215 << 40),
        ];
        for (text, bytes) in ok {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        let bad = [
            ("", "it is empty"),
            ("GiB", "expected a number"),
            ("-1", "expected a number"),
            ("1.5GiB", "fractions are not supported"),
            ("10 parsecs", "unknown unit `parsecs`"),
            ("1Gb2", "unknown unit `Gb2`"),
            ("16777216TiB", "too large"),
            ("18446744073709551616", "too large"),
        ];
        for (text, needle) in bad {
            let e = parse_size(text).unwrap_err();
            assert!(e.starts_with(&format!("invalid size `{text}`: ")), "{e}");
            assert!(e.contains(needle), "{text}: {e} lacks {needle}");
        }
    }
}
