//! A bounded map from text to a cloneable value, shared by all sessions (`&self` methods,
//! one mutex). Least-recently-used entries are evicted in batches of an eighth when full, so
//! eviction cost is amortized. Used by the planner (`plan/`) for texts and shapes.

use std::collections::HashMap;
use std::sync::Mutex;

struct Entry<V> {
    value: V,
    last_used: u64,
}

struct Inner<V> {
    map: HashMap<String, Entry<V>>,
    tick: u64,
}

pub struct Lru<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

impl<V: Clone> Lru<V> {
    /// A map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Lru<V> {
        Lru {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
            }),
        }
    }

    /// The value stored for `key` (marking it used).
    pub fn get(&self, key: &str) -> Option<V> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let e = inner.map.get_mut(key)?;
        e.last_used = tick;
        Some(e.value.clone())
    }

    /// Stores `value` for `key`, evicting the least recently used eighth when full.
    pub fn insert(&self, key: &str, value: V) {
        let mut inner = self.lock();
        if inner.map.len() >= self.capacity && !inner.map.contains_key(key) {
            evict(&mut inner.map, self.capacity);
        }
        inner.tick += 1;
        let last_used = inner.tick;
        inner
            .map
            .insert(key.to_string(), Entry { value, last_used });
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // Every mutation is a single HashMap call, so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn evict<V>(map: &mut HashMap<String, Entry<V>>, capacity: usize) {
    let n = (capacity / 8).max(1).min(map.len());
    let mut ages: Vec<u64> = map.values().map(|e| e.last_used).collect();
    ages.sort_unstable();
    if let Some(&cutoff) = ages.get(n - 1) {
        let mut removed = 0;
        map.retain(|_, e| {
            if removed < n && e.last_used <= cutoff {
                removed += 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn bounded_and_evicts_the_least_recently_used() {
        let lru = Lru::new(8);
        for i in 0..8 {
            lru.insert(&i.to_string(), i);
        }
        assert_eq!(lru.get("0"), Some(0)); // 0 is now the most recent
        lru.insert("new", 99);
        assert_eq!(lru.len(), 8);
        assert_eq!(lru.get("1"), None, "the oldest entry went");
        assert_eq!(lru.get("0"), Some(0));
        assert_eq!(lru.get("new"), Some(99));
        lru.insert("new", 100);
        assert_eq!(lru.get("new"), Some(100));
        assert_eq!(lru.len(), 8);
    }
}
