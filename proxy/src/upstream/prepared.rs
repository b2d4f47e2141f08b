//! Which statements are prepared on one server connection, bounded by
//! `[upstream] max_prepared_statements`: on a connection a session holds alone the least
//! recently used statement is given up (closed) to make room; on a multiplexed one nothing is
//! given up (another client's batch may be about to use it), a statement beyond the bound runs
//! as the unnamed statement instead.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// Server-side names of the statements prepared on a connection. On a multiplexed connection
/// (`mux/`) the set is shared by every client batch that runs on it and holds only names
/// PostgreSQL confirmed with ParseComplete; `own` holds those this holder has sent.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Name → when it was last used (`clock` at the time), for eviction.
    own: HashMap<String, u64>,
    clock: u64,
    shared: Option<Arc<RwLock<HashSet<String>>>>,
    /// The DDL epoch (`ProxyState::ddl_epoch`) these statements were checked against.
    epoch: u64,
}

impl Prepared {
    pub fn shared(set: Arc<RwLock<HashSet<String>>>) -> Prepared {
        Prepared {
            shared: Some(set),
            ..Prepared::default()
        }
    }

    /// True for a multiplexed connection: another client's batch may prepare the same name
    /// concurrently, so a Parse of a named statement is preceded by a Close of that name, and
    /// no statement is evicted.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.own.contains_key(name)
            || self
                .shared
                .as_ref()
                .is_some_and(|s| s.read().unwrap_or_else(|p| p.into_inner()).contains(name))
    }

    /// [`Prepared::contains`], and marks `name` as just used when it is this holder's.
    pub fn use_name(&mut self, name: &str) -> bool {
        self.clock += 1;
        match self.own.get_mut(name) {
            Some(last) => {
                *last = self.clock;
                true
            }
            None => self.contains(name),
        }
    }

    /// How many statements are known to be prepared on the connection (about: on a
    /// multiplexed one, a name sent but not yet confirmed may be counted once or twice).
    pub fn len(&self) -> usize {
        let shared = self
            .shared
            .as_ref()
            .map_or(0, |s| s.read().unwrap_or_else(|p| p.into_inner()).len());
        self.own.len().max(shared)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A Parse of `name` was sent (or a Close meant to evict it was skipped: it is still there).
    pub fn insert(&mut self, name: String) {
        self.clock += 1;
        self.own.insert(name, self.clock);
    }

    /// A Parse of `name` was skipped or failed.
    pub fn remove(&mut self, name: &str) {
        self.own.remove(name);
    }

    /// PostgreSQL answered a Parse of `name` with ParseComplete.
    pub fn confirm(&mut self, name: &str) {
        if let Some(s) = &self.shared {
            s.write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string());
        }
    }

    /// PostgreSQL dropped every statement (`DISCARD ALL`, `DEALLOCATE ALL`). Not for a
    /// multiplexed connection, which never runs those.
    pub fn clear(&mut self) {
        self.own.clear();
    }

    /// Whether DDL ran since the statements were last checked (`epoch` is the current DDL
    /// epoch); the connection counts as checked from now on.
    pub fn outdated_by(&mut self, epoch: u64) -> bool {
        std::mem::replace(&mut self.epoch, epoch) != epoch
    }

    /// Forgets the statements whose name `stale` accepts and returns them, for the caller to
    /// close on the server.
    pub fn take_where(&mut self, stale: impl Fn(&str) -> bool) -> Vec<String> {
        let names: Vec<String> = self.own.keys().filter(|n| stale(n)).cloned().collect();
        for n in &names {
            self.own.remove(n);
        }
        names
    }

    /// Forgets the least recently used statement and returns its name, for the caller to close
    /// on the server; `None` on a multiplexed connection or an empty set. A linear scan: it runs
    /// only when a full connection needs a statement it does not have.
    pub fn evict(&mut self) -> Option<String> {
        if self.is_shared() {
            return None;
        }
        let victim = self
            .own
            .iter()
            .min_by_key(|(_, &last)| last)
            .map(|(name, _)| name.clone())?;
        self.own.remove(&victim);
        Some(victim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Prepared) -> Vec<&str> {
        let mut v: Vec<&str> = p.own.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn eviction_takes_the_least_recently_used() {
        let mut p = Prepared::default();
        for n in ["a", "b", "c"] {
            p.insert(n.to_string());
        }
        assert!(p.use_name("a"));
        assert!(!p.use_name("z"));
        assert_eq!(p.evict().as_deref(), Some("b"));
        assert_eq!(names(&p), ["a", "c"]);
        assert!(p.use_name("c"));
        assert_eq!(p.evict().as_deref(), Some("a"));
        // A Close that was skipped puts its statement back, as the newest.
        p.insert("a".into());
        assert_eq!(p.evict().as_deref(), Some("c"));
        assert_eq!(p.evict().as_deref(), Some("a"));
        assert_eq!(p.evict(), None);
        assert!(p.is_empty());
    }

    #[test]
    fn a_multiplexed_connection_never_evicts() {
        let set = Arc::new(RwLock::new(HashSet::new()));
        let mut p = Prepared::shared(set.clone());
        p.insert("a".into());
        p.confirm("a");
        assert_eq!(p.evict(), None);
        let other = Prepared::shared(set);
        assert!(other.contains("a"));
        assert_eq!(other.len(), 1);
    }
}
