//! A bounded rewrite cache keyed by SQL text and catalog version. It stores templates (and
//! refusals), never a tenant: the tenant is substituted by `Template::render` on every use.
//! Bounded by [`crate::lru::Lru`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::shaped::{self, Shaped};
use super::{rewrite, Catalog, Refusal, Template};
use crate::lru::Lru;
use crate::sql::shape_key::fast_key_of;

type Outcome = Result<Arc<Template>, Refusal>;

/// Shared by all sessions; every method takes `&self`.
pub struct RewriteCache {
    /// SQL text → (catalog version, outcome).
    map: Lru<(u64, Outcome)>,
    /// Shape key of plain text → (catalog version, shaped template or "rewrite each text").
    shapes: Lru<(u64, Option<Arc<Shaped>>)>,
    /// Lookups answered by text, by shape, and rewritten afresh (`/metrics`).
    hits: AtomicU64,
    shape_hits: AtomicU64,
    misses: AtomicU64,
}

/// How the rewrite cache's lookups went since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: u64,
    pub shape_hits: u64,
    pub misses: u64,
    pub entries: usize,
}

impl RewriteCache {
    /// A cache holding at most `capacity` statements (at least one).
    pub fn new(capacity: usize) -> RewriteCache {
        RewriteCache {
            map: Lru::new(capacity),
            shapes: Lru::new(capacity),
            hits: AtomicU64::new(0),
            shape_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached outcome for `sql` under this catalog; else, for text with literals, its
    /// shape's template with these literals (see [`super::shaped`]); else a fresh rewrite
    /// (then cached).
    pub fn get_or_rewrite(&self, sql: &str, catalog: &Catalog) -> Outcome {
        let version = catalog.version();
        if let Some((v, hit)) = self.map.get(sql) {
            if v == version {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return hit;
            }
        }
        if let Some(literals) = shaped::literals_of(sql) {
            let key = fast_key_of(sql, &literals);
            let (shape, new) = match self.shapes.get(&key) {
                Some((v, s)) if v == version => (s, false),
                _ => {
                    let s = shaped::shape(sql, &literals, catalog).map(Arc::new);
                    self.shapes.insert(&key, (version, s.clone()));
                    (s, true)
                }
            };
            if let Some(s) = shape {
                if !new {
                    self.shape_hits.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                }
                let outcome = Ok(Arc::new(s.instantiate(sql, &literals)));
                // The first text of a shape is cached as text too (a statement prepared with
                // literals repeats its text); later ones are not, so varying literals cannot
                // flood the text cache.
                if new {
                    self.map.insert(sql, (version, outcome.clone()));
                }
                return outcome;
            }
        }
        // Rewrite outside the lock: other sessions keep hitting the cache meanwhile.
        self.misses.fetch_add(1, Ordering::Relaxed);
        let outcome = rewrite(sql, catalog).map(Arc::new);
        self.map.insert(sql, (version, outcome.clone()));
        outcome
    }

    /// Lookups since start and statements cached now.
    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            shape_hits: self.shape_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.map.len(),
        }
    }

    /// Number of cached statements.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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
            Some("SELECT id FROM public.items AS items WHERE items.org_id = 'org_a'")
        );
        assert_eq!(
            b.ok().as_deref(),
            Some("SELECT id FROM public.items AS items WHERE items.org_id = 'org_b'")
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
    fn texts_differing_in_literals_share_a_shape() {
        let cat = Catalog::seed_for_tests();
        let cache = RewriteCache::new(4);
        for (id, qty) in [("a", "1"), ("it''s", "22.5")] {
            let sql = format!("SELECT id FROM items WHERE id = '{id}' AND 1 < {qty}");
            let got = cache.get_or_rewrite(&sql, &cat).map(|t| t.render("org_b"));
            let want = rewrite(&sql, &cat).map(|t| t.render("org_b"));
            assert_eq!(got, want);
            assert!(got.is_ok_and(|s| s.contains(&format!("id = '{id}' AND 1 < {qty}"))));
        }
        assert_eq!((cache.map.len(), cache.shapes.len()), (1, 1));
        // A literal tenant value is the rewriter's to check: never shaped.
        for org in ["org_a", "org_b"] {
            let sql = format!("INSERT INTO items (org_id, id) VALUES ('{org}', 'x')");
            let t = cache.get_or_rewrite(&sql, &cat).expect("rewrite");
            assert_eq!(t.render_checked("org_a").is_ok(), org == "org_a", "{sql}");
        }
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
