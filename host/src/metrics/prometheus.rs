//! Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use super::{BUCKET_BOUNDS_US, StorageMetrics};

/// `label` escaped for a Prometheus label value (text format 0.0.4): `\`,
/// `"` and newline are backslash-escaped. The one escaper of the host: the
/// program's `/metrics` uses it for the labels it adds.
pub fn escape_label_value(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) fn render(m: &StorageMetrics) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    counter(
        "storage_operations_total",
        "Operations made by callers.",
        m.operations,
    );
    counter(
        "storage_errors_total",
        "Operations that returned an error.",
        m.errors,
    );
    counter(
        "storage_cache_hits_total",
        "PreferCache gets answered by the cache.",
        m.cache_hits,
    );
    counter(
        "storage_cache_misses_total",
        "PreferCache gets not answered by the cache.",
        m.cache_misses,
    );

    let c = &m.consistency;
    counter(
        "storage_stale_reads_avoided_total",
        "Reads that skipped a backend behind on the key.",
        c.stale_reads_avoided,
    );
    counter(
        "storage_stale_marks_total",
        "Keys marked behind on a backend (a write or invalidation it missed).",
        c.stale_marks,
    );
    counter(
        "storage_repairs_total",
        "Copies repaired onto a backend that was behind.",
        c.repairs,
    );
    counter(
        "storage_repair_failures_total",
        "Repair attempts that failed (retried later).",
        c.repair_failures,
    );
    counter(
        "storage_cache_fills_dropped_total",
        "PreferCache fills dropped because a write overtook them.",
        c.fills_dropped,
    );
    let _ = writeln!(
        out,
        "# HELP storage_repair_backlog Keys behind on a backend, awaiting repair.\n# TYPE storage_repair_backlog gauge\nstorage_repair_backlog {}",
        c.repair_backlog
    );
    let _ = writeln!(
        out,
        "# HELP storage_untrusted_backends Backends read for no key (too many keys behind).\n# TYPE storage_untrusted_backends gauge\nstorage_untrusted_backends {}",
        c.untrusted_backends
    );

    let mut names: Vec<&String> = m.backend_operations.keys().collect();
    names.sort();
    out.push_str("# HELP storage_backend_operations_total Attempts per backend.\n# TYPE storage_backend_operations_total counter\n");
    for n in &names {
        let _ = writeln!(
            out,
            "storage_backend_operations_total{{backend=\"{}\"}} {}",
            escape_label_value(n),
            m.backend_operations[*n]
        );
    }
    out.push_str("# HELP storage_backend_errors_total Failed attempts per backend.\n# TYPE storage_backend_errors_total counter\n");
    for n in &names {
        let errors = m.backend_errors.get(*n).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "storage_backend_errors_total{{backend=\"{}\"}} {errors}",
            escape_label_value(n)
        );
    }
    out.push_str("# HELP storage_backend_latency_seconds Latency of attempts per backend.\n# TYPE storage_backend_latency_seconds histogram\n");
    for n in &names {
        let Some(h) = m.backend_latency.get(*n) else {
            continue;
        };
        let label = escape_label_value(n);
        let mut cumulative = 0;
        for (i, c) in h.counts.iter().enumerate() {
            cumulative += c;
            let le = match BUCKET_BOUNDS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "storage_backend_latency_seconds_bucket{{backend=\"{label}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "storage_backend_latency_seconds_sum{{backend=\"{label}\"}} {}",
            h.sum.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "storage_backend_latency_seconds_count{{backend=\"{label}\"}} {cumulative}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(super::escape_label_value("plain"), "plain");
    }
}
