//! Fairness between tenants: how many exclusive server connections of one pool a tenant org,
//! and a login, hold at once (`[tenancy] max_server_connections_per_org` / `_per_user`).
//!
//! Invariant: a checkout for a tenant or switcher takes its org's and its user's share first,
//! and only then a pool permit, so a tenant at its cap waits without holding anything another
//! tenant could use. The share travels with the `Lease` and is given back when it is dropped
//! (released to the pool or closed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::UpstreamError;

/// Who a checkout is for: the session's tenant org and its login.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub org: &'a str,
    pub user: &'a str,
    /// The login's own cap (`[[users]] max_server_connections`) instead of `_per_user`.
    pub user_cap: Option<usize>,
}

/// What each org and user holds now, and the caps.
#[derive(Debug)]
pub struct Caps {
    per_org: AtomicUsize,
    per_user: AtomicUsize,
    held: Mutex<Held>,
    /// Woken whenever a share is given back.
    freed: Notify,
}

#[derive(Debug, Default)]
struct Held {
    orgs: HashMap<String, usize>,
    users: HashMap<String, usize>,
}

/// One org's and one user's share of a connection; given back when dropped.
#[derive(Debug)]
pub struct Share {
    caps: Arc<Caps>,
    org: String,
    user: String,
}

impl Caps {
    pub fn new(per_org: usize, per_user: usize) -> Arc<Caps> {
        Arc::new(Caps {
            per_org: AtomicUsize::new(per_org.max(1)),
            per_user: AtomicUsize::new(per_user.max(1)),
            held: Mutex::new(Held::default()),
            freed: Notify::new(),
        })
    }

    /// Takes a share for `who`, waiting until `deadline` while its org or user is at its cap.
    pub async fn take(
        self: &Arc<Self>,
        who: Holder<'_>,
        deadline: Instant,
    ) -> Result<Share, UpstreamError> {
        loop {
            // Registered before the check, so a share given back in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let full = match self.try_take(who) {
                Ok(share) => return Ok(share),
                Err(full) => full,
            };
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(full);
            }
        }
    }

    /// A share for `who` if neither its org nor its user is at its cap.
    fn try_take(self: &Arc<Self>, who: Holder<'_>) -> Result<Share, UpstreamError> {
        let mut held = self.lock();
        let (per_org, per_user) = (
            self.per_org.load(Ordering::Relaxed),
            who.user_cap
                .unwrap_or_else(|| self.per_user.load(Ordering::Relaxed)),
        );
        let org = held.orgs.get(who.org).copied().unwrap_or(0);
        if org >= per_org {
            return Err(UpstreamError::TenantCap {
                key: "[tenancy] max_server_connections_per_org",
                what: format!("org \"{}\"", who.org),
                cap: per_org,
            });
        }
        let user = held.users.get(who.user).copied().unwrap_or(0);
        if user >= per_user {
            return Err(UpstreamError::TenantCap {
                key: match who.user_cap {
                    Some(_) => "[[users]] max_server_connections",
                    None => "[tenancy] max_server_connections_per_user",
                },
                what: format!("user \"{}\"", who.user),
                cap: per_user,
            });
        }
        *held.orgs.entry(who.org.to_string()).or_default() += 1;
        *held.users.entry(who.user.to_string()).or_default() += 1;
        Ok(Share {
            caps: self.clone(),
            org: who.org.to_string(),
            user: who.user.to_string(),
        })
    }

    /// New caps (reload); shares already held are kept, the next checkouts see the new caps.
    pub fn set_limits(&self, per_org: usize, per_user: usize) {
        self.per_org.store(per_org.max(1), Ordering::Relaxed);
        self.per_user.store(per_user.max(1), Ordering::Relaxed);
    }

    /// Connections held now by `org`.
    #[cfg(test)]
    fn held_by_org(&self, org: &str) -> usize {
        self.lock().orgs.get(org).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        {
            let mut guard = self.caps.lock();
            let held = &mut *guard;
            for (map, key) in [(&mut held.orgs, &self.org), (&mut held.users, &self.user)] {
                if let Some(n) = map.get_mut(key) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(key);
                    }
                }
            }
        }
        self.caps.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn who<'a>(org: &'a str, user: &'a str) -> Holder<'a> {
        Holder {
            org,
            user,
            user_cap: None,
        }
    }

    #[test]
    fn a_login_s_own_cap_replaces_the_per_user_one() {
        let caps = Caps::new(10, 5);
        let capped = |org| Holder {
            org,
            user: "svc",
            user_cap: Some(1),
        };
        let first = caps.try_take(capped("a")).unwrap();
        let err = caps.try_take(capped("b")).unwrap_err();
        assert!(
            err.to_string().contains("[[users]] max_server_connections"),
            "{err}"
        );
        // Another login is held to `max_server_connections_per_user` (5).
        let _others: Vec<_> = (0..5)
            .map(|_| caps.try_take(who("a", "x")).unwrap())
            .collect();
        drop(first);
        caps.try_take(capped("b")).unwrap();
    }

    #[tokio::test]
    async fn an_org_at_its_cap_waits_and_others_do_not() {
        let caps = Caps::new(2, 5);
        let soon = || Instant::now() + Duration::from_millis(50);
        let a1 = caps.take(who("a", "a1"), soon()).await.unwrap();
        let _a2 = caps.take(who("a", "a2"), soon()).await.unwrap();
        let err = caps.take(who("a", "a3"), soon()).await.unwrap_err();
        assert!(
            err.to_string().contains("max_server_connections_per_org"),
            "{err}"
        );
        let _b = caps.take(who("b", "b1"), soon()).await.unwrap();
        // A waiting checkout gets the share given back.
        let waiter = {
            let caps = caps.clone();
            tokio::spawn(async move {
                let late = Instant::now() + Duration::from_secs(30);
                caps.take(who("a", "a3"), late).await.map(|_| ())
            })
        };
        tokio::task::yield_now().await;
        drop(a1);
        waiter.await.unwrap().unwrap();
        assert_eq!(caps.held_by_org("a"), 1, "the waiter's share went with it");
    }

    #[tokio::test]
    async fn a_user_has_its_own_cap() {
        let caps = Caps::new(10, 1);
        let soon = Instant::now() + Duration::from_millis(20);
        let _s = caps.take(who("a", "svc"), soon).await.unwrap();
        let err = caps.take(who("b", "svc"), soon).await.unwrap_err();
        assert!(
            err.to_string().contains("max_server_connections_per_user"),
            "{err}"
        );
        assert!(caps.take(who("b", "other"), soon).await.is_ok());
    }
}
