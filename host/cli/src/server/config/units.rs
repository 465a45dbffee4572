//! Sizes (`"4MiB"`) and durations (`"30s"`) as written in the file.

use std::time::Duration;

use toml::Value;

use super::fields::kind;

/// `4194304`, `"4MiB"`, `"512 KiB"`, `"1MB"`.
pub(super) fn parse_size(v: &Value) -> Result<u64, String> {
    let s = match v {
        Value::Integer(n) => return u64::try_from(*n).map_err(|_| format!("{n} is negative")),
        Value::String(s) => s.trim(),
        other => {
            return Err(format!(
                "expected a size like \"4MiB\" or a number of bytes, found {}",
                kind(other)
            ));
        }
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?} is not a size; expected e.g. \"4MiB\", \"512KiB\" or a number of bytes")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `"30s"`, `"500ms"`, `"2m"`: a duration always carries its unit. A bare
/// number (`30` or `"30"`) is refused with the fix in the message: it once
/// meant milliseconds as an integer and seconds as a string.
pub(super) fn parse_duration(v: &Value) -> Result<Duration, String> {
    let no_unit = |n: &dyn std::fmt::Display| {
        format!("{n} has no unit; write it with one, e.g. \"{n}s\" or \"{n}ms\"")
    };
    let d = match v {
        Value::Integer(n) => return Err(no_unit(n)),
        Value::String(s)
            if !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit()) =>
        {
            return Err(no_unit(&s.trim()));
        }
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().map_err(|_| {
                format!("{s:?} is not a duration; expected e.g. \"500ms\", \"30s\" or \"2m\"")
            })?;
            match unit.trim() {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
                other => return Err(format!("unknown unit {other:?} in {s:?}; use ms, s or m")),
            }
        }
        other => {
            return Err(format!(
                "expected a duration like \"30s\", found {}",
                kind(other)
            ));
        }
    };
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    if d > Duration::from_secs(3600) {
        return Err(format!("{d:?} is longer than the limit of one hour"));
    }
    Ok(d)
}
