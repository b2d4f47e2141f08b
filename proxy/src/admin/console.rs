//! The rows of the admin console's `SHOW CLIENTS`, `SHOW SERVERS`, `SHOW POOLS` and
//! `SHOW STATS` (PgBouncer's columns where they mean the same, plus tenant columns), read
//! from the client registry, the pools and the metrics; `session/admin.rs` sends them.
//!
//! Invariant: nothing here reads statement text or secrets.

use crate::config::Role;
use crate::state::ProxyState;

/// Text rows (NULL = `None`).
pub type Rows = Vec<Vec<Option<String>>>;

fn unix_time(secs: u64) -> Option<String> {
    (secs > 0).then(|| secs.to_string())
}

/// The pools by name: `owner`, and `tenant` with the second wall.
pub(crate) fn named_pools(state: &ProxyState) -> Vec<(&'static str, &crate::upstream::Pool)> {
    let mut pools = vec![("owner", &state.pool)];
    if let Some(t) = &state.tenant_pool {
        pools.push(("tenant", t));
    }
    pools
}

pub fn clients(state: &ProxyState) -> Rows {
    let db = &state.config.upstream.database;
    state
        .registry
        .rows()
        .into_iter()
        .map(|c| {
            let (addr, port) = match c.addr.rsplit_once(':') {
                Some((a, p)) if p.parse::<u16>().is_ok() => (a.to_string(), p.to_string()),
                _ => (c.addr.clone(), String::new()),
            };
            vec![
                Some("C".into()),
                Some(c.user),
                Some(db.clone()),
                Some(c.role.as_str().into()),
                (!c.org_id.is_empty()).then_some(c.org_id),
                c.current_org,
                Some(addr),
                Some(port),
                unix_time(c.connected_at),
                unix_time(c.last_statement_at),
                Some(c.statements.to_string()),
                Some(c.pid.to_string()),
                Some(c.tls.to_string()),
                Some(c.application_name),
            ]
        })
        .collect()
}

pub fn servers(state: &ProxyState) -> Rows {
    named_pools(state)
        .into_iter()
        .flat_map(|(name, pool)| {
            let cfg = pool.config();
            pool.servers().into_iter().map(move |s| {
                vec![
                    Some("S".into()),
                    Some(cfg.user.clone()),
                    Some(cfg.database.clone()),
                    Some(name.into()),
                    Some(if s.active { "active" } else { "idle" }.into()),
                    Some(cfg.host.clone()),
                    Some(cfg.port.to_string()),
                    unix_time(s.connected_at),
                    Some(s.pid.to_string()),
                    Some(s.id.to_string()),
                ]
            })
        })
        .collect()
}

pub fn pools(state: &ProxyState) -> Rows {
    let reg = &state.registry;
    let (admins, tenants) = (
        reg.count(Role::Admin),
        reg.count(Role::Tenant) + reg.count(Role::Switcher),
    );
    named_pools(state)
        .into_iter()
        .map(|(name, pool)| {
            let snap = pool.snapshot();
            let cfg = pool.config();
            let clients = match (name, state.tenant_pool.is_some()) {
                ("owner", true) => admins,
                ("owner", false) => admins + tenants,
                _ => tenants,
            };
            let (_, wait) = state.metrics.pool_waits(name);
            vec![
                Some(cfg.database.clone()),
                Some(cfg.user.clone()),
                Some(name.into()),
                Some(clients.to_string()),
                Some(snap.waiting.to_string()),
                Some(snap.in_use.to_string()),
                Some(snap.idle.to_string()),
                Some(snap.size.to_string()),
                Some(format!("{:?}", cfg.pool_mode).to_lowercase()),
                Some(snap.checkouts.to_string()),
                Some(((wait * 1e6) as u64).to_string()),
                Some(snap.connect_errors.to_string()),
            ]
        })
        .collect()
}

pub fn stats(state: &ProxyState) -> Rows {
    let db = &state.config.upstream.database;
    let reg = &state.registry;
    [Role::Admin, Role::Tenant, Role::Switcher]
        .into_iter()
        .map(|role| {
            let (routed, refused) = state.metrics.statement_counts(role.as_str());
            let tenants = match role {
                Role::Admin => None,
                _ => Some(
                    reg.rows()
                        .into_iter()
                        .filter(|c| c.role == role)
                        .filter_map(|c| c.current_org)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len()
                        .to_string(),
                ),
            };
            vec![
                Some(db.clone()),
                Some(role.as_str().into()),
                Some(routed.to_string()),
                Some(refused.to_string()),
                tenants,
            ]
        })
        .collect()
}
