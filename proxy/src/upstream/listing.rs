//! The pool's list of its exclusive server connections behind the admin console's
//! `SHOW SERVERS`: each connection's backend pid, when it connected, and whether a session holds
//! it now. An entry lives as long as its connection (its [`Listed`] guard travels in the
//! `ServerConn`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

#[derive(Debug)]
struct Entry {
    pid: i32,
    connected_at: u64,
    active: AtomicBool,
}

/// One row of `SHOW SERVERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    pub id: u64,
    pub pid: i32,
    pub connected_at: u64,
    pub active: bool,
}

/// A pool's connections, by Orgwall's connection id.
#[derive(Debug, Default)]
pub struct Listing {
    map: Arc<DashMap<u64, Entry>>,
}

/// Keeps a connection in its pool's listing until dropped.
#[derive(Debug)]
pub struct Listed {
    map: Arc<DashMap<u64, Entry>>,
    id: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.map.remove(&self.id);
    }
}

impl Listing {
    /// Lists connection `id` (backend `pid`), checked out.
    pub fn add(&self, id: u64, pid: i32) -> Listed {
        self.map.insert(
            id,
            Entry {
                pid,
                connected_at: super::context::unix_now(),
                active: AtomicBool::new(true),
            },
        );
        Listed {
            map: self.map.clone(),
            id,
        }
    }

    /// Connection `id` was checked out (`true`) or went back to the idle list.
    pub fn set_active(&self, id: u64, active: bool) {
        if let Some(e) = self.map.get(&id) {
            e.active.store(active, Ordering::Relaxed);
        }
    }

    pub fn rows(&self) -> Vec<ServerRow> {
        let mut rows: Vec<ServerRow> = self
            .map
            .iter()
            .map(|e| ServerRow {
                id: *e.key(),
                pid: e.pid,
                connected_at: e.connected_at,
                active: e.active.load(Ordering::Relaxed),
            })
            .collect();
        rows.sort_by_key(|r| r.id);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_their_connections() {
        let l = Listing::default();
        let a = l.add(2, 200);
        let b = l.add(1, 100);
        l.set_active(2, false);
        let rows = l.rows();
        assert_eq!(
            rows.iter()
                .map(|r| (r.id, r.pid, r.active))
                .collect::<Vec<_>>(),
            vec![(1, 100, true), (2, 200, false)]
        );
        drop(a);
        drop(b);
        assert!(l.rows().is_empty());
    }
}
