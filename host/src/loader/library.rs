//! The part of loading that talks to the dynamic linker (through abi_stable).

use std::path::Path;

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use storage_plugin_api::ffi::PluginModRef;

use super::LoadFailure;

/// Whether `path` has a dynamic-library extension.
pub fn is_library_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib" | "dll")
    ) && path.is_file()
}

/// Maps the library at `path` and checks its root module.
///
/// `path` must be a file nobody else can change, checked beforehand (what
/// [`load_staged`](super::load_staged) does): the dynamic linker
/// maps it as it is.
pub(crate) fn load_module(path: &Path) -> Result<PluginModRef, LoadFailure> {
    // abi_stable opens the library and leaks it on purpose: a plugin's code
    // may still run (spawned tasks, thread-local destructors) long after we
    // stop using it, so unloading is never sound.
    let header = lib_header_from_path(path).map_err(classify)?;
    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(classify)?;
    let found = module.api_version().as_str();
    if !api_compatible(storage_plugin_api::API_VERSION, found) {
        return Err(LoadFailure::IncompatibleApiVersion {
            expected: storage_plugin_api::API_VERSION.to_string(),
            found: found.to_string(),
        });
    }
    Ok(module)
}

/// Semver compatibility as cargo sees it: same major, and for 0.x same minor.
fn api_compatible(host: &str, plugin: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parse(host), parse(plugin)) {
        (Some((hm, hn)), Some((pm, pn))) => hm == pm && (hm != 0 || hn == pn),
        _ => false,
    }
}

fn classify(e: LibraryError) -> LoadFailure {
    match e {
        LibraryError::OpenError { err, .. } => LoadFailure::NotALibrary(err.to_string()),
        LibraryError::GetSymbolError { .. } => LoadFailure::NoRootModule,
        LibraryError::InvalidAbiHeader(h) => LoadFailure::IncompatibleAbiStable(format!("{h:?}")),
        LibraryError::InvalidCAbi { expected, found } => LoadFailure::IncompatibleAbiStable(
            format!("C ABI differs: expected {expected}, found {found}"),
        ),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadFailure::IncompatibleApiVersion {
            expected: expected_version.to_string(),
            found: actual_version.to_string(),
        },
        LibraryError::ParseVersionError(e) => LoadFailure::IncompatibleApiVersion {
            expected: PluginModRef::VERSION_STRINGS.version.to_string(),
            found: format!("unparseable ({e})"),
        },
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            LoadFailure::LayoutMismatch {
                summary: summarize_layout_report(&report),
                report,
            }
        }
        LibraryError::RootModule { err, .. } => LoadFailure::InitFailed(err.to_string()),
        LibraryError::Many(errors) => errors
            .into_iter()
            .next()
            .map(classify)
            .unwrap_or_else(|| LoadFailure::InitFailed("unknown error".into())),
    }
}

/// Picks the concrete mismatch out of abi_stable's (very long) report: its
/// `Error:` line and the expected/found types after it.
fn summarize_layout_report(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let Some(at) = lines.iter().position(|l| l.starts_with("Error:")) else {
        return "the type layouts differ".to_string();
    };
    let what = lines[at].trim_start_matches("Error:").trim();
    let after = |label: &str| {
        lines[at..]
            .iter()
            .position(|l| *l == label)
            .and_then(|i| lines.get(at + i + 1))
            .copied()
    };
    let mut s = match (after("Expected:"), after("Found:")) {
        (Some(e), Some(f)) => format!("{what}: expected {e}, found {f}"),
        _ => what.to_string(),
    };
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_summary() {
        let report = "Compared <this>:\n  lots\nError:mismatched type\nExpected:\n    PluginMod\nFound:\n    OtherMod\n";
        assert_eq!(
            summarize_layout_report(report),
            "mismatched type: expected PluginMod, found OtherMod"
        );
        assert_eq!(
            summarize_layout_report("nothing useful"),
            "the type layouts differ"
        );
    }

    #[test]
    fn api_versions() {
        assert!(api_compatible("0.1.0", "0.1.7"));
        assert!(!api_compatible("0.1.0", "0.2.0"));
        assert!(api_compatible("1.2.0", "1.0.0"));
        assert!(!api_compatible("1.2.0", "2.0.0"));
        assert!(!api_compatible("0.1.0", "garbage"));
    }
}
