//! The in-memory store: ordered maps behind reader-writer locks, sharded by
//! key so that threads working on different keys do not contend on one lock.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use storage_plugin_api::{Error, KeyPage};

const SHARDS: usize = 16;

type Map = BTreeMap<String, Vec<u8>>;

/// One shard on its own cache line (its lock word is written on every access).
#[derive(Default)]
#[repr(align(128))]
struct Shard(RwLock<Map>);

/// An in-memory key-value store. Lost when the process exits; carried over a
/// hot swap through [`export_state`](Self::export_state).
#[derive(Default)]
pub struct MemoryBackend {
    // BTreeMaps keep `list(prefix)` a range scan per shard, merged in order.
    shards: Box<[Shard; SHARDS]>,
}

/// FNV-1a: a few nanoseconds for a short key, and spreads keys well enough
/// for picking a shard (this is not a defence against adversarial keys, which
/// could only make one shard busier).
fn shard_of(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h as usize) % SHARDS
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.read(shard_of(key)).get(key).cloned()
    }

    /// Writes `key`.
    pub fn put(&self, key: &str, value: Vec<u8>) {
        self.write(shard_of(key)).insert(key.to_owned(), value);
    }

    /// Removes `key` if present.
    pub fn delete(&self, key: &str) {
        self.write(shard_of(key)).remove(key);
    }

    /// The keys starting with `prefix`, in order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for i in 0..SHARDS {
            keys.extend(
                self.read(i)
                    .range::<str, _>((
                        std::ops::Bound::Included(prefix),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, _)| k.clone()),
            );
        }
        keys.sort_unstable();
        keys
    }

    /// Up to `limit` keys starting with `prefix` after `after`, in order:
    /// each shard contributes at most `limit + 1` keys (one past the page
    /// tells whether more follow), so the work is bounded by the page, not
    /// the store.
    pub fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> KeyPage {
        use std::ops::Bound;
        // Start at the prefix, or just past the cursor when that is later.
        let from = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let take = limit.saturating_add(1);
        let mut keys = Vec::new();
        for i in 0..SHARDS {
            keys.extend(
                self.read(i)
                    .range::<str, _>((from, Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .take(take)
                    .map(|(k, _)| k.clone()),
            );
        }
        keys.sort_unstable();
        KeyPage::from_overfetch(keys, limit)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.read(i).len()).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serializes the whole store: a sequence of (u32 LE key length, key,
    /// u64 LE value length, value).
    pub fn export_state(&self) -> Vec<u8> {
        let shards: Vec<_> = (0..SHARDS).map(|i| self.read(i)).collect();
        let size: usize = shards
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| 12 + k.len() + v.len())
            .sum();
        let mut out = Vec::with_capacity(size);
        for (k, v) in shards.iter().flat_map(|m| m.iter()) {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    /// Rebuilds a store from [`export_state`](Self::export_state) output.
    pub fn from_state(mut state: &[u8]) -> Result<Self, Error> {
        let corrupt =
            || Error::other("local: the state handed over by the previous instance is corrupt");
        let store = MemoryBackend::new();
        while !state.is_empty() {
            let (len, rest) = state.split_first_chunk::<4>().ok_or_else(corrupt)?;
            let len = u32::from_le_bytes(*len) as usize;
            if rest.len() < len {
                return Err(corrupt());
            }
            let (key, rest) = rest.split_at(len);
            let key = std::str::from_utf8(key).map_err(|_| corrupt())?;
            let (len, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
            let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| corrupt())?;
            if rest.len() < len {
                return Err(corrupt());
            }
            let (value, rest) = rest.split_at(len);
            store.put(key, value.to_vec());
            state = rest;
        }
        Ok(store)
    }

    // A panic while holding a lock cannot leave a map half-updated (every
    // critical section is a single map call), so a poisoned lock is still good.
    fn read(&self, shard: usize) -> RwLockReadGuard<'_, Map> {
        self.shards[shard]
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Map> {
        self.shards[shard]
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let m = MemoryBackend::new();
        m.put("a", vec![]);
        m.put("b/c", vec![0, 255, 7]);
        m.put("ünï", vec![1; 1000]);
        let restored = MemoryBackend::from_state(&m.export_state()).unwrap();
        assert_eq!(restored.len(), 3);
        assert_eq!(restored.get("a"), Some(vec![]));
        assert_eq!(restored.get("b/c"), Some(vec![0, 255, 7]));
        assert_eq!(restored.get("ünï"), Some(vec![1; 1000]));
    }

    #[test]
    fn corrupt_state_is_an_error() {
        assert!(MemoryBackend::from_state(&[5, 0, 0, 0, b'a']).is_err());
    }

    #[test]
    fn list_page_walks_every_key_once_in_order() {
        let m = MemoryBackend::new();
        let mut all: Vec<String> = (0..200).map(|i| format!("p/{i:03}")).collect();
        for k in &all {
            m.put(k, vec![]);
        }
        m.put("o", vec![]);
        m.put("q", vec![]);
        all.sort();
        for limit in [1, 7, 64, 200, 500] {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = m.list_page("p/", after.as_deref(), limit);
                assert!(page.keys.len() <= limit);
                seen.extend(page.keys.iter().cloned());
                match page.next_after() {
                    Some(k) => after = Some(k.to_owned()),
                    None => break,
                }
            }
            assert_eq!(seen, all, "limit {limit}");
        }
        // A cursor before the prefix starts at the prefix.
        assert_eq!(m.list_page("p/", Some("a"), 2).keys, vec!["p/000", "p/001"]);
        // A cursor past every key: an empty last page.
        let end = m.list_page("p/", Some("p/999"), 5);
        assert!(end.keys.is_empty() && !end.more);
    }

    #[test]
    fn list_is_a_prefix_range() {
        let m = MemoryBackend::new();
        for k in ["a", "ab", "abc", "b", "aa"] {
            m.put(k, vec![]);
        }
        assert_eq!(m.list("ab"), vec!["ab", "abc"]);
        assert_eq!(m.list(""), vec!["a", "aa", "ab", "abc", "b"]);
        assert!(m.list("z").is_empty());
    }
}
