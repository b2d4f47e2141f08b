//! The registry of logged-in clients behind the admin console's `SHOW CLIENTS`: who each is,
//! from where, since when, the tenant it serves now and how many statements it sent.
//!
//! Invariant: an entry lives exactly as long as its session (the [`Registered`] guard removes
//! it), and holds no statement text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use crate::admission::AdmissionError;
use crate::config::Role;

/// One logged-in client.
#[derive(Debug)]
pub struct ClientInfo {
    pub user: String,
    pub role: Role,
    /// The configured org (a switcher's default; empty for an admin without one).
    pub org_id: String,
    pub addr: String,
    pub tls: bool,
    pub application_name: String,
    /// Unix seconds.
    pub connected_at: u64,
    statements: AtomicU64,
    /// Unix seconds of the last statement (0: none yet).
    last_statement_at: AtomicU64,
    /// The org the last statement ran for (a switcher's binding).
    current_org: Mutex<Option<String>>,
}

/// A row of `SHOW CLIENTS`, copied out of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub pid: i32,
    pub user: String,
    pub role: Role,
    pub org_id: String,
    pub current_org: Option<String>,
    pub addr: String,
    pub tls: bool,
    pub application_name: String,
    pub connected_at: u64,
    pub statements: u64,
    pub last_statement_at: u64,
}

/// Every logged-in client, keyed by the process id Orgwall gave it (BackendKeyData).
#[derive(Debug, Default)]
pub struct ClientRegistry {
    map: DashMap<i32, Arc<ClientInfo>>,
    /// Sessions per login, for `[[users]] max_client_connections`.
    per_user: Arc<DashMap<String, usize>>,
}

/// One of a login's `max_client_connections`; given back when dropped.
#[derive(Debug)]
pub struct UserSlot {
    per_user: Arc<DashMap<String, usize>>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.per_user.remove_if_mut(&self.user, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// Removes its client from the registry when dropped.
pub struct Registered {
    registry: Arc<ClientRegistry>,
    pid: i32,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.map.remove(&self.pid);
    }
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ClientRegistry {
    /// Adds a client under `pid` until the guard is dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        self: &Arc<Self>,
        pid: i32,
        user: &str,
        role: Role,
        org_id: &str,
        addr: String,
        tls: bool,
        application_name: &str,
    ) -> Registered {
        let info = ClientInfo {
            user: user.to_string(),
            role,
            org_id: org_id.to_string(),
            addr,
            tls,
            application_name: application_name.to_string(),
            connected_at: unix_secs(),
            statements: AtomicU64::new(0),
            last_statement_at: AtomicU64::new(0),
            current_org: Mutex::new((role == Role::Tenant).then(|| org_id.to_string())),
        };
        self.map.insert(pid, Arc::new(info));
        Registered {
            registry: self.clone(),
            pid,
        }
    }

    /// A session slot for `user` unless it already has `max` (`None`: no per-login limit).
    pub fn reserve(&self, user: &str, max: Option<usize>) -> Result<UserSlot, AdmissionError> {
        let mut n = self.per_user.entry(user.to_string()).or_insert(0);
        if let Some(max) = max.filter(|m| *n >= *m) {
            let user = user.to_string();
            drop(n);
            self.per_user.remove_if(&user, |_, n| *n == 0);
            return Err(AdmissionError::UserFull { user, max });
        }
        *n += 1;
        Ok(UserSlot {
            per_user: self.per_user.clone(),
            user: user.to_string(),
        })
    }

    /// Client `pid` sent a statement, for `org` (a switcher's current binding).
    pub fn statement(&self, pid: i32, org: Option<&str>) {
        let Some(info) = self.map.get(&pid) else {
            return;
        };
        info.statements.fetch_add(1, Ordering::Relaxed);
        info.last_statement_at.store(unix_secs(), Ordering::Relaxed);
        if info.role == Role::Switcher {
            let mut current = info.current_org.lock().unwrap_or_else(|p| p.into_inner());
            if current.as_deref() != org {
                *current = org.map(str::to_string);
            }
        }
    }

    /// Every client, by pid.
    pub fn rows(&self) -> Vec<ClientRow> {
        let mut rows: Vec<ClientRow> = self
            .map
            .iter()
            .map(|e| {
                let i = e.value();
                ClientRow {
                    pid: *e.key(),
                    user: i.user.clone(),
                    role: i.role,
                    org_id: i.org_id.clone(),
                    current_org: i
                        .current_org
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                    addr: i.addr.clone(),
                    tls: i.tls,
                    application_name: i.application_name.clone(),
                    connected_at: i.connected_at,
                    statements: i.statements.load(Ordering::Relaxed),
                    last_statement_at: i.last_statement_at.load(Ordering::Relaxed),
                }
            })
            .collect();
        rows.sort_by_key(|r| r.pid);
        rows
    }

    /// Logged-in clients of `role`.
    pub fn count(&self, role: Role) -> usize {
        self.map.iter().filter(|e| e.value().role == role).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_as_long_as_their_guard_and_follow_statements() {
        let r = Arc::new(ClientRegistry::default());
        let a = r.register(
            7,
            "svc",
            Role::Switcher,
            "org_default",
            "1.2.3.4:5".into(),
            true,
            "app",
        );
        let b = r.register(3, "acme", Role::Tenant, "org_a", "x".into(), false, "");
        r.statement(7, Some("org_b"));
        r.statement(7, Some("org_c"));
        r.statement(3, Some("org_a"));
        let rows = r.rows();
        assert_eq!(rows.iter().map(|r| r.pid).collect::<Vec<_>>(), vec![3, 7]);
        assert_eq!(rows[1].statements, 2);
        assert_eq!(rows[1].current_org.as_deref(), Some("org_c"));
        assert_eq!(rows[0].current_org.as_deref(), Some("org_a"));
        assert_eq!(r.count(Role::Tenant), 1);
        drop(a);
        assert_eq!(r.rows().len(), 1);
        drop(b);
        assert!(r.rows().is_empty());
    }

    #[test]
    fn per_login_session_limits() {
        let r = ClientRegistry::default();
        let one = r.reserve("acme", Some(2)).unwrap();
        let two = r.reserve("acme", Some(2)).unwrap();
        assert!(matches!(
            r.reserve("acme", Some(2)),
            Err(AdmissionError::UserFull { max: 2, .. })
        ));
        let _other = r.reserve("globex", Some(2)).unwrap();
        let _unlimited = r.reserve("svc", None).unwrap();
        drop(one);
        let _again = r.reserve("acme", Some(2)).unwrap();
        drop(two);
        assert_eq!(r.per_user.get("acme").map(|n| *n), Some(1));
    }
}
