//! Test fixture: a valid dynamic library that is not a storage plugin.

/// Something for the library to contain.
pub fn add(a: u32, b: u32) -> u32 {
    a + b
}
