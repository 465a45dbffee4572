//! Checking a library file before the dynamic linker maps it.
//!
//! The linker maps a library's segments straight from the file: a segment
//! that reaches past the end of the file (a truncated copy, a file still
//! being written) maps pages with no data behind them, and the first access
//! to one kills the process with SIGBUS. So every file is parsed first, with
//! the `object` crate, and refused unless it is a shared library for this
//! platform whose headers, segments and sections all lie inside it.
//!
//! This catches damaged and foreign files; it is not a verifier of code (a
//! well-formed library can still do anything once loaded).

use object::{
    Architecture, BinaryFormat, Object, ObjectKind, ObjectSection, ObjectSegment, ReadRef,
};

/// Why the file `data` (of `len` bytes) cannot be mapped as a shared
/// library here, in one line; `Ok` when it can. `data` is read on demand
/// (only the headers and tables are), see [`object::ReadCache`].
pub(crate) fn check_library<'d, R: ReadRef<'d>>(data: R, len: u64) -> Result<(), String> {
    let file = object::File::parse(data).map_err(|e| {
        if len < 64 {
            format!("not a shared library: the file has only {len} bytes")
        } else {
            format!("not a shared library for this platform, or truncated ({e})")
        }
    })?;
    let native = BinaryFormat::native_object();
    if file.format() != native {
        return Err(format!(
            "a {:?} file, but this platform loads {native:?} libraries",
            file.format()
        ));
    }
    if let Some(arch) = host_architecture()
        && file.architecture() != arch
    {
        return Err(format!(
            "built for {:?}, but this host is {arch:?}",
            file.architecture()
        ));
    }
    if file.is_64() != cfg!(target_pointer_width = "64")
        || file.is_little_endian() != cfg!(target_endian = "little")
    {
        return Err("built for another word size or byte order than this host".to_string());
    }
    if file.kind() != ObjectKind::Dynamic {
        return Err(format!(
            "a {:?} object, not a shared library (build the plugin crate as a cdylib)",
            file.kind()
        ));
    }
    for (i, segment) in file.segments().enumerate() {
        let (offset, size) = segment.file_range();
        inside(len, offset, size, || format!("segment {i}"))?;
    }
    for section in file.sections() {
        if let Some((offset, size)) = section.file_range() {
            inside(len, offset, size, || {
                format!("section {}", section.name().unwrap_or("?"))
            })?;
        }
    }
    // The program and section header tables themselves are bounds-checked
    // by the parser.
    Ok(())
}

fn inside(len: u64, offset: u64, size: u64, what: impl FnOnce() -> String) -> Result<(), String> {
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        Some(end) => Err(format!(
            "truncated or damaged: {} ends at byte {end}, past the end of the file ({len} bytes)",
            what()
        )),
        None => Err(format!(
            "damaged: {} has an impossible offset and size",
            what()
        )),
    }
}

/// The `object` architecture of this host, when it is one we can name.
fn host_architecture() -> Option<Architecture> {
    Some(match std::env::consts::ARCH {
        "x86_64" => Architecture::X86_64,
        "x86" => Architecture::I386,
        "aarch64" => Architecture::Aarch64,
        "arm" => Architecture::Arm,
        "riscv64" => Architecture::Riscv64,
        "powerpc64" => Architecture::PowerPc64,
        "s390x" => Architecture::S390x,
        "loongarch64" => Architecture::LoongArch64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary is an executable, not a library; its bytes truncated
    /// are damaged. The real libraries are checked by the integration tests.
    #[test]
    fn refuses_what_is_not_a_whole_shared_library() {
        let check_library = |b: &[u8]| check_library(b, b.len() as u64);
        assert!(
            check_library(b"garbage")
                .unwrap_err()
                .contains("only 7 bytes")
        );
        assert!(
            check_library(&[0x5a; 8192])
                .unwrap_err()
                .contains("not a shared library")
        );
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let cut = &exe[..exe.len() / 20];
        let why = check_library(cut).unwrap_err();
        assert!(
            why.contains("truncated") || why.contains("past the end"),
            "{why}"
        );
    }

    #[test]
    fn bounds() {
        assert!(inside(10, 0, 10, String::new).is_ok());
        assert!(
            inside(10, 5, 6, String::new)
                .unwrap_err()
                .contains("past the end")
        );
        assert!(
            inside(10, u64::MAX, 2, String::new)
                .unwrap_err()
                .contains("impossible")
        );
    }
}
