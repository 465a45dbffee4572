//! The limits of the `redis` backend, checked before anything is sent.
//!
//! Why these numbers: Redis itself takes keys and string values of up to
//! 512 MB each (`proto-max-bulk-len`), far more than a key-value store of
//! agent data should ever send. What bounds the plugin sooner:
//!
//! - Every operation of a backend shares one multiplexed connection. A value
//!   is written to that socket in one piece, and every command queued behind
//!   it waits until it is through: a huge value stalls all other operations
//!   (and must itself fit in `timeout_ms`). It also crosses the plugin
//!   boundary as one buffer and sits in Redis's memory, where a cache is
//!   usually capped by `maxmemory`.
//! - Redis compares whole keys on lookups and stores each one in full: long
//!   keys cost memory per entry and time per operation.
//!
//! So the limits are those of the `local` durable store (4 KiB keys, 64 MiB
//! values): a Redis cache in front of a local or Supabase primary (Supabase
//! takes keys of up to 2 KiB) accepts every key its primary does. Under
//! `PreferCache` a value too large for the cache is simply not cached (the
//! host drops any older cached copy of the key). `key_prefix` is bounded
//! separately ([`MAX_KEY_PREFIX_LEN`]), so a Redis key is at most 5 KiB.

use storage_plugin_api::{Error, ShownKey};

/// The longest key the backend accepts, in bytes of UTF-8 (4 KiB), not
/// counting the configured `key_prefix`.
pub const MAX_KEY_LEN: usize = 4 * 1024;

/// The largest value the backend accepts, in bytes (64 MiB). A value this
/// large takes about half a second to send over a 1 Gbit/s link; raise
/// `timeout_ms` (default 2 s) if values near the limit travel over slow links.
pub const MAX_VALUE_LEN: usize = 64 * 1024 * 1024;

/// The longest `key_prefix` accepted, in bytes (1 KiB): with
/// [`MAX_KEY_LEN`], every Redis key the backend writes is at most 5 KiB.
pub const MAX_KEY_PREFIX_LEN: usize = 1024;

/// Rejects a key longer than [`MAX_KEY_LEN`] with
/// [`ErrorKind::InvalidInput`](storage_plugin_api::ErrorKind::InvalidInput).
/// `op` is `get`, `put`, `delete` or `list` (whose prefix is checked too: no
/// key this backend accepts can start with a longer one).
pub(crate) fn check_key(op: &'static str, key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_LEN {
        let what = if op == "list" {
            format!("list of keys starting with {}", ShownKey::new(key))
        } else {
            format!("{op} of key {}", ShownKey::new(key))
        };
        let noun = if op == "list" { "prefix" } else { "key" };
        return Err(Error::invalid_input(format!(
            "redis: {what} refused before sending: the {noun} is {} bytes long and this backend accepts keys of at most {MAX_KEY_LEN} bytes (4 KiB, not counting `key_prefix`); use a shorter key, e.g. a hash of the long one",
            key.len()
        )));
    }
    Ok(())
}

/// Rejects a value larger than [`MAX_VALUE_LEN`] with
/// [`ErrorKind::InvalidInput`](storage_plugin_api::ErrorKind::InvalidInput).
pub(crate) fn check_value(key: &str, len: usize) -> Result<(), Error> {
    if len > MAX_VALUE_LEN {
        return Err(Error::invalid_input(format!(
            "redis: put of key {} refused before sending: the value is {len} bytes and this backend accepts values of at most {MAX_VALUE_LEN} bytes (64 MiB); keep values this large in another backend, or split them over several keys",
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
        assert!(check_key("get", "").is_ok());
        assert!(check_key("put", &"k".repeat(MAX_KEY_LEN)).is_ok());
        for op in ["get", "put", "delete"] {
            let e = check_key(op, &"k".repeat(MAX_KEY_LEN + 1)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let m = e.message();
            assert!(m.starts_with(&format!("redis: {op} of key \"kkk")), "{e}");
            assert!(m.contains("(4097 bytes)"), "{e}");
            assert!(m.contains("at most 4096 bytes"), "{e}");
            assert!(m.contains("use a shorter key"), "{e}");
            assert!(m.len() < 500, "the key is shortened: {e}");
        }
    }

    #[test]
    fn limits_count_bytes_not_characters() {
        // 2 bytes each: 2048 of them are exactly the limit.
        assert!(check_key("put", &"é".repeat(MAX_KEY_LEN / 2)).is_ok());
        let e = check_key("put", &"é".repeat(MAX_KEY_LEN / 2 + 1)).unwrap_err();
        assert!(e.message().contains("4098 bytes"), "{e}");
    }

    #[test]
    fn a_list_prefix_longer_than_any_key_is_refused() {
        assert!(check_key("list", &"p".repeat(MAX_KEY_LEN)).is_ok());
        let e = check_key("list", &"p".repeat(MAX_KEY_LEN + 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.message()
                .starts_with("redis: list of keys starting with \"ppp"),
            "{e}"
        );
        assert!(e.message().contains("the prefix is 4097 bytes"), "{e}");
    }

    #[test]
    fn values_up_to_the_limit_pass() {
        assert!(check_value("k", 0).is_ok());
        assert!(check_value("k", MAX_VALUE_LEN).is_ok());
        let e = check_value("big\n", MAX_VALUE_LEN + 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let m = e.message();
        assert!(m.starts_with("redis: put of key \"big\\n\""), "{e}");
        assert!(m.contains("67108865 bytes"), "{e}");
        assert!(m.contains("at most 67108864 bytes (64 MiB)"), "{e}");
    }
}
