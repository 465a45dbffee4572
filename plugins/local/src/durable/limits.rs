//! The limits of the durable store, checked before anything is queued or read.
//!
//! Why limits at all: redb itself accepts keys and values up to about 3 GiB,
//! but every value crosses the plugin boundary as one buffer, sits in memory
//! while its group commit is pending, and long keys shrink the fan-out of the
//! B-tree's branch pages (every lookup pays for them). The numbers below are
//! generous for a key-value store of agent data and keep a single request from
//! monopolising memory or a commit.

use storage_plugin_api::{Error, ShownKey};

/// The longest key the durable store accepts, in bytes of UTF-8 (4 KiB).
pub const MAX_KEY_LEN: usize = 4 * 1024;

/// The largest value the durable store accepts, in bytes (64 MiB).
pub const MAX_VALUE_LEN: usize = 64 * 1024 * 1024;

/// Rejects a key longer than [`MAX_KEY_LEN`] with [`ErrorKind::InvalidInput`](storage_plugin_api::ErrorKind::InvalidInput).
pub(crate) fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid_input(format!(
            "local: key {} is {} bytes long; the durable store accepts keys of at most {MAX_KEY_LEN} bytes",
            ShownKey::new(key),
            key.len()
        )));
    }
    Ok(())
}

/// Rejects a value larger than [`MAX_VALUE_LEN`] with [`ErrorKind::InvalidInput`](storage_plugin_api::ErrorKind::InvalidInput).
pub(crate) fn check_value(key: &str, len: usize) -> Result<(), Error> {
    if len > MAX_VALUE_LEN {
        return Err(Error::invalid_input(format!(
            "local: the value for key {} is {len} bytes; the durable store accepts values of at most {MAX_VALUE_LEN} bytes (64 MiB)",
            ShownKey::new(key)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_plugin_api::ErrorKind;

    #[test]
    fn keys_up_to_the_limit_pass() {
        assert!(check_key("").is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        let e = check_key(&"k".repeat(MAX_KEY_LEN + 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("4097 bytes"), "{e}");
        assert!(e.message().contains("at most 4096"), "{e}");
    }

    #[test]
    fn values_up_to_the_limit_pass() {
        assert!(check_value("k", 0).is_ok());
        assert!(check_value("k", MAX_VALUE_LEN).is_ok());
        let e = check_value("big", MAX_VALUE_LEN + 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("\"big\""), "{e}");
    }

    #[test]
    fn long_keys_are_shortened_on_a_char_boundary() {
        let key = "é".repeat(300);
        let shown = ShownKey::new(&key).to_string();
        assert!(shown.contains("(600 bytes)"), "{shown}");
        assert!(shown.len() < 200, "{shown}");
    }
}
