//! How keys and values are written on the wire.
//!
//! Keys go into the query string of PostgREST filters (`key=eq.<key>`), so
//! each one is percent-encoded whole: no character of a key can end the
//! value, start another parameter or change the operator. Values travel as
//! PostgreSQL's hex form of `bytea` (`\x0a1b...`) inside JSON strings.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters (letters, digits, `-`, `.`,
/// `_`, `~`) is encoded: `+` (which form decoding would read as a space) as
/// `%2B`, and `&`, `=`, `,`, `(`, `)`, `*`, `%`, `"`, `\`, `/`, `#`, space and
/// every non-ASCII byte likewise.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The longest key accepted, in bytes. PostgreSQL refuses b-tree index entries
/// above about 2.7 kB (the primary key is one), and a key is sent up to three
/// times its size once percent-encoded in a URL.
pub const MAX_KEY_BYTES: usize = 2048;

/// The largest value accepted, in bytes (16 MiB), checked before anything is
/// sent. PostgreSQL's `bytea` would take up to 1 GB, but a value travels as
/// hex inside a JSON body twice its size, which PostgREST reads whole and
/// PostgreSQL parses and decodes in memory (several copies per request), and
/// gateways in front of the API cap request bodies (the local test gateway
/// at 64 MiB; a hosted project's may be lower, which its 413 reports). A
/// 16 MiB value is a 32 MiB body: half the test gateway's cap, and inside the default
/// 30 s per-attempt `timeout` (through the local test stack, a debug build
/// puts or gets one in about 5 s).
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// `s` percent-encoded for use as a query-string value.
pub fn query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Why `key` cannot be stored, if it cannot.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.contains('\0') {
        return Err("it contains a NUL character, which PostgreSQL text cannot hold".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "it is {} bytes long; this backend takes keys of at most {MAX_KEY_BYTES} bytes (a PostgreSQL index limit)",
            key.len()
        ));
    }
    Ok(())
}

/// A PostgREST `like` pattern matching every key that starts with `prefix`.
///
/// PostgREST turns every `*` of a pattern into SQL's `%` before PostgreSQL
/// sees it, so a literal `*` cannot be expressed: it becomes `_` (any one
/// character), and the caller drops the extra matches by checking the prefix.
/// `\`, `%` and `_` are escaped with `\`, LIKE's default escape character.
pub fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 8);
    for c in prefix.chars() {
        match c {
            '\\' | '%' | '_' => {
                p.push('\\');
                p.push(c);
            }
            '*' => p.push('_'),
            c => p.push(c),
        }
    }
    p.push('*');
    p
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `value` as PostgreSQL's hex `bytea` literal: `\x` then two digits a byte.
pub fn bytea_hex(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(2 + value.len() * 2);
    out.extend_from_slice(b"\\x");
    for &b in value {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0x0f) as usize]);
    }
    // Only ASCII was pushed.
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Decodes PostgreSQL's hex `bytea` output (`\x0a1b...`).
pub fn parse_bytea(text: &str) -> Result<Vec<u8>, String> {
    let Some(hex) = text.strip_prefix("\\x") else {
        return Err(format!(
            "a bytea value does not start with \\x (is the database's bytea_output set to 'escape'? it must be 'hex'): {:?}",
            text.chars().take(20).collect::<String>()
        ));
    };
    if hex.len() % 2 != 0 {
        return Err("a bytea value has an odd number of hex digits".into());
    }
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err("a bytea value has a character that is not a hex digit".to_string()),
        })
        .collect()
}

/// The current time as RFC 3339 UTC with microseconds (PostgreSQL's
/// `timestamptz` precision), e.g. `2025-01-31T12:00:00.123456Z`.
pub fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_micros())
}

fn rfc3339(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(27);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_hide_every_special_character() {
        assert_eq!(
            query_value("a+b c&d=e,f(g)*%\"\\/.._~-"),
            "a%2Bb%20c%26d%3De%2Cf%28g%29%2A%25%22%5C%2F.._~-"
        );
        assert_eq!(query_value("é"), "%C3%A9");
        for key in ["a&select=key", "x=eq.y", "k#f", "?", "\n"] {
            let v = query_value(key);
            assert!(
                v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"%-._~".contains(&b)),
                "{v}"
            );
        }
    }

    #[test]
    fn like_patterns() {
        assert_eq!(like_prefix(""), "*");
        assert_eq!(like_prefix("a_b%c\\d*e"), "a\\_b\\%c\\\\d_e*");
    }

    #[test]
    fn bytea_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(parse_bytea(&bytea_hex(&all)).unwrap(), all);
        assert_eq!(bytea_hex(&[]), "\\x");
        assert_eq!(parse_bytea("\\x").unwrap(), Vec::<u8>::new());
        assert_eq!(
            parse_bytea("\\xDEadbeef").unwrap(),
            vec![0xde, 0xad, 0xbe, 0xef]
        );
        assert!(parse_bytea("abc").is_err());
        assert!(parse_bytea("\\x0").is_err());
        assert!(parse_bytea("\\x0g").is_err());
    }

    #[test]
    fn keys() {
        assert!(check_key("").is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(
            check_key(&"k".repeat(MAX_KEY_BYTES + 1))
                .unwrap_err()
                .contains("2049 bytes")
        );
        assert!(check_key("a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(
            rfc3339(1_735_689_599, 999_999),
            "2024-12-31T23:59:59.999999Z"
        );
        assert_eq!(rfc3339(4_102_444_800, 0), "2100-01-01T00:00:00.000000Z");
        assert!(now_rfc3339().starts_with("20"));
    }
}

#[cfg(test)]
mod properties {
    //! Property tests: whatever the key, the encoded request addresses exactly it.

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_key_round_trips_and_cannot_change_the_query(key in "\\PC{0,64}|[&=,()*%\"\\/ .+#?:;!'~_-]{0,32}") {
            let encoded = query_value(&key);
            // Only unreserved characters and %XX escapes: nothing that could end
            // the value, start a parameter, or be read as a space.
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)), "{encoded}");
            let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
            prop_assert_eq!(decoded.as_ref(), key.as_str());
            // A query built from it has exactly the parameters we put in.
            let query = format!("select=value&key=eq.{encoded}");
            prop_assert_eq!(query.matches('&').count(), 1);
            prop_assert_eq!(query.matches('=').count(), 2);
        }

        #[test]
        fn bytea_round_trips(value in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert_eq!(parse_bytea(&bytea_hex(&value)).unwrap(), value);
        }
    }
}
