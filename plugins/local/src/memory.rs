//! The in-memory store: an ordered map behind a reader-writer lock.

use std::collections::BTreeMap;
use std::sync::RwLock;

use storage_plugin_api::Error;

/// An in-memory key-value store. Lost when the process exits; carried over a
/// hot swap through [`export_state`](Self::export_state).
#[derive(Default)]
pub struct MemoryBackend {
    // A BTreeMap keeps `list(prefix)` a range scan in key order.
    map: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.read().get(key).cloned()
    }

    /// Writes `key`.
    pub fn put(&self, key: &str, value: Vec<u8>) {
        self.write().insert(key.to_owned(), value);
    }

    /// Removes `key` if present.
    pub fn delete(&self, key: &str) {
        self.write().remove(key);
    }

    /// The keys starting with `prefix`, in order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.read()
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serializes the whole store: a sequence of (u32 LE key length, key,
    /// u64 LE value length, value).
    pub fn export_state(&self) -> Vec<u8> {
        let map = self.read();
        let size: usize = map.iter().map(|(k, v)| 12 + k.len() + v.len()).sum();
        let mut out = Vec::with_capacity(size);
        for (k, v) in map.iter() {
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
        let mut map = BTreeMap::new();
        while !state.is_empty() {
            let (len, rest) = state.split_first_chunk::<4>().ok_or_else(corrupt)?;
            let len = u32::from_le_bytes(*len) as usize;
            if rest.len() < len {
                return Err(corrupt());
            }
            let (key, rest) = rest.split_at(len);
            let key = std::str::from_utf8(key).map_err(|_| corrupt())?.to_owned();
            let (len, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
            let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| corrupt())?;
            if rest.len() < len {
                return Err(corrupt());
            }
            let (value, rest) = rest.split_at(len);
            map.insert(key, value.to_vec());
            state = rest;
        }
        Ok(MemoryBackend {
            map: RwLock::new(map),
        })
    }

    // A panic while holding the lock cannot leave the map half-updated (every
    // critical section is a single map call), so a poisoned lock is still good.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
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
