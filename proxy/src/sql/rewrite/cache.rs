//! A bounded rewrite cache keyed by SQL text and catalog version. It stores templates (and
//! refusals), never a tenant: the tenant is substituted by `Template::render` on every use.
//! Least-recently-used entries are evicted in batches when the cache is full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{rewrite, Catalog, Refusal, Template};

type Outcome = Result<Arc<Template>, Refusal>;

struct Entry {
    version: u64,
    outcome: Outcome,
    last_used: u64,
}

struct Inner {
    map: HashMap<String, Entry>,
    tick: u64,
}

/// Shared by all sessions; every method takes `&self`.
pub struct RewriteCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl RewriteCache {
    /// A cache holding at most `capacity` statements (at least one).
    pub fn new(capacity: usize) -> RewriteCache {
        RewriteCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
            }),
        }
    }

    /// The cached outcome for `sql` under this catalog, or a fresh rewrite (then cached).
    pub fn get_or_rewrite(&self, sql: &str, catalog: &Catalog) -> Outcome {
        let version = catalog.version();
        if let Some(hit) = self.lookup(sql, version) {
            return hit;
        }
        // Rewrite outside the lock: other sessions keep hitting the cache meanwhile.
        let outcome = rewrite(sql, catalog).map(Arc::new);
        self.store(sql, version, outcome.clone());
        outcome
    }

    /// Number of cached statements.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent (every mutation is
        // a single HashMap call), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, sql: &str, version: u64) -> Option<Outcome> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let e = inner.map.get_mut(sql)?;
        if e.version != version {
            return None;
        }
        e.last_used = tick;
        Some(e.outcome.clone())
    }

    fn store(&self, sql: &str, version: u64, outcome: Outcome) {
        let mut inner = self.lock();
        if inner.map.len() >= self.capacity && !inner.map.contains_key(sql) {
            evict(&mut inner.map, self.capacity);
        }
        inner.tick += 1;
        let last_used = inner.tick;
        inner.map.insert(
            sql.to_string(),
            Entry {
                version,
                outcome,
                last_used,
            },
        );
    }
}

/// Drops the least recently used eighth (at least one entry), so eviction cost is amortized.
fn evict(map: &mut HashMap<String, Entry>, capacity: usize) {
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
    use super::*;

    #[test]
    fn cache_stores_templates_not_tenants() {
        let cat = Catalog::seed_for_tests();
        let cache = RewriteCache::new(4);
        let sql = "SELECT id FROM items";
        let a = cache.get_or_rewrite(sql, &cat).map(|t| t.render("org_a"));
        let b = cache.get_or_rewrite(sql, &cat).map(|t| t.render("org_b"));
        assert_eq!(
            a.ok().as_deref(),
            Some("SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items")
        );
        assert_eq!(
            b.ok().as_deref(),
            Some("SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_b') AS items")
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn refusals_are_cached_and_capacity_is_bounded() {
        let cat = Catalog::seed_for_tests();
        let cache = RewriteCache::new(4);
        for i in 0..20 {
            let _ = cache.get_or_rewrite(&format!("SELECT {i} FROM items"), &cat);
            assert!(cache.len() <= 4);
        }
        let r = cache.get_or_rewrite("DROP TABLE items", &cat);
        assert_eq!(r.err().map(|e| e.code), Some("42501"));
        let r = cache.get_or_rewrite("DROP TABLE items", &cat);
        assert_eq!(r.err().map(|e| e.code), Some("42501"));
    }

    #[test]
    fn catalog_reload_invalidates() {
        let cat = Catalog::seed_for_tests();
        let cache = RewriteCache::new(4);
        assert!(cache.get_or_rewrite("SELECT * FROM items", &cat).is_ok());
        // A catalog in which items is unknown: the cached template must not be reused.
        let empty = Catalog::new(vec![], vec![], vec![]);
        assert_ne!(empty.version(), cat.version());
        let r = cache.get_or_rewrite("SELECT * FROM items", &empty);
        assert_eq!(r.err().map(|e| e.code), Some("42501"));
    }
}
