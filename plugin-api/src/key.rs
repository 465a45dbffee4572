//! How a key is shown in messages and logs.

use std::fmt;

/// A key as every message and log line shows it, in the host and in the
/// plugins alike: quoted and escaped like a Rust string (so control
/// characters and quotes cannot forge a line), and cut after
/// [`ShownKey::MAX_BYTES`] bytes on a character boundary, with its length
/// following (`"abc…"… (4096 bytes)`), so a long key does not flood a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShownKey<'a>(&'a str);

impl<'a> ShownKey<'a> {
    /// The longest part of a key shown, in bytes of UTF-8.
    pub const MAX_BYTES: usize = 120;

    /// `key`, to be shown.
    pub fn new(key: &'a str) -> Self {
        ShownKey(key)
    }
}

impl fmt::Display for ShownKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.0;
        if key.len() <= Self::MAX_BYTES {
            return write!(f, "{key:?}");
        }
        let mut end = Self::MAX_BYTES;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &key[..end], key.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_quoted_and_escaped() {
        assert_eq!(ShownKey::new("k").to_string(), r#""k""#);
        assert_eq!(ShownKey::new("a\"b\n").to_string(), r#""a\"b\n""#);
        assert_eq!(ShownKey::new("").to_string(), r#""""#);
    }

    #[test]
    fn long_keys_are_cut_on_a_char_boundary() {
        let exact = "a".repeat(ShownKey::MAX_BYTES);
        assert_eq!(ShownKey::new(&exact).to_string(), format!("{exact:?}"));
        // 2-byte characters: byte 120 is a boundary, 121 is not.
        let shown = ShownKey::new(&"é".repeat(500)).to_string();
        assert_eq!(shown, format!("{:?}… (1000 bytes)", "é".repeat(60)));
        let shown = ShownKey::new(&format!("a{}", "é".repeat(100))).to_string();
        assert_eq!(
            shown,
            format!("{:?}… (201 bytes)", format!("a{}", "é".repeat(59)))
        );
    }
}
