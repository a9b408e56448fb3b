//! A least-recently-used cache bounded by the bytes its values hold, and the counters of cache
//! lookups.
//!
//! Entries are few (one per table version being read), so eviction scans the map instead of
//! keeping an intrusive list.

use std::collections::HashMap;
use std::hash::Hash;

/// An LRU map whose budget is in bytes, as reported by the caller for each value.
#[derive(Debug)]
pub struct ByteLru<K, V> {
    budget: usize,
    used: usize,
    tick: u64,
    entries: HashMap<K, Entry<V>>,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    bytes: usize,
    last_used: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> ByteLru<K, V> {
    pub fn new(budget_bytes: usize) -> Self {
        ByteLru { budget: budget_bytes, used: 0, tick: 0, entries: HashMap::new() }
    }

    /// The value for `key`, marking it as the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|e| {
            e.last_used = tick;
            e.value.clone()
        })
    }

    /// Inserts a value of `bytes` bytes, evicting the least recently used entries until it fits.
    /// A value larger than the whole budget is not cached at all.
    pub fn insert(&mut self, key: K, value: V, bytes: usize) {
        if bytes > self.budget {
            return;
        }
        if let Some(old) = self.entries.remove(&key) {
            self.used -= old.bytes;
        }
        while self.used + bytes > self.budget {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used -= e.bytes;
            }
        }
        self.tick += 1;
        self.used += bytes;
        self.entries.insert(key, Entry { value, bytes, last_used: self.tick });
    }

    /// Removes every entry whose key matches.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let used = &mut self.used;
        self.entries.retain(|k, e| {
            let k_keep = keep(k);
            if !k_keep {
                *used -= e.bytes;
            }
            k_keep
        });
    }

    /// The keys held, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held by the cached values.
    pub fn used_bytes(&self) -> usize {
        self.used
    }
}

/// Counts a lookup in one of the caches, by name: `d2o_cache_hits_total` or
/// `d2o_cache_misses_total`. Through the `metrics` facade: nearly free unless the process
/// installed a recorder (the server does).
pub(crate) fn count_lookup(cache: &'static str, hit: bool) {
    if hit {
        metrics::counter!("d2o_cache_hits_total", "cache" => cache).increment(1);
    } else {
        metrics::counter!("d2o_cache_misses_total", "cache" => cache).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let mut c = ByteLru::new(10);
        c.insert("a", 1, 4);
        c.insert("b", 2, 4);
        assert_eq!(c.get(&"a"), Some(1));
        c.insert("c", 3, 4);
        assert_eq!(c.get(&"b"), None, "b was least recently used");
        assert_eq!(c.get(&"a"), Some(1));
        assert_eq!(c.get(&"c"), Some(3));
        assert_eq!(c.used_bytes(), 8);
        c.insert("huge", 4, 11);
        assert_eq!(c.get(&"huge"), None);
        c.retain(|k| *k != "a");
        assert_eq!(c.len(), 1);
        assert_eq!(c.used_bytes(), 4);
    }
}
