//! The Prometheus metrics behind `/metrics`: counters the proxy moves as it works (clients,
//! statements, refusals, per-tenant series, pool waits) and figures read at each scrape from
//! the pools and the balance cache (the same ones `SHOW orgwall_*` prints). The text format is
//! the `prometheus` crate's.
//!
//! Invariant: the number of series is bounded whatever clients do — labels come from fixed
//! sets (roles, pools, reasons, SQLSTATEs Orgwall emits) except `org_id`, which takes at most
//! `[admin] tenant_metrics` values plus `other`.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::plan::CacheCounts;
use crate::upstream::PoolSnapshot;

/// Every metric family Orgwall exports, registered once.
pub struct Metrics {
    registry: Registry,
    clients: IntGaugeVec,
    clients_refused: IntCounterVec,
    statements: IntCounterVec,
    refusals: IntCounterVec,
    tenant_statements: IntCounterVec,
    tenant_refusals: IntCounterVec,
    /// The orgs with their own series (at most `tenant_limit`).
    tenants: Mutex<HashSet<String>>,
    tenant_limit: usize,
    pool_wait: HistogramVec,
    server_connections: IntGaugeVec,
    pool_waiting: IntGaugeVec,
    pool_checkouts: IntCounterVec,
    upstream_connect_errors: IntCounterVec,
    balance_counters: IntCounterVec,
    balance_gauges: IntGaugeVec,
    rewrite_lookups: IntCounterVec,
    rewrite_entries: prometheus::IntGauge,
    plugin_decisions: IntCounterVec,
    plugin_seconds: prometheus::Histogram,
    /// Scrapes set the read-at-scrape counters; one at a time.
    scrape: Mutex<()>,
}

/// One logged-in client in `orgwall_client_connections`.
pub struct ClientGauge(prometheus::IntGauge);

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Balance-cache figures (names in `Balances::stats`) exported as counters; the others that
/// are numbers or booleans become gauges.
const BALANCE_COUNTERS: &[&str] = &[
    "hits",
    "fallbacks",
    "resyncs",
    "transactions_applied",
    "rows_applied",
    "read_your_writes_waits",
    "read_your_writes_timeouts",
    "drift_keys",
];

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new(tenant_limit: usize) -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(opts(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(opts(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let pool_wait = HistogramVec::new(
            HistogramOpts::new(
                "orgwall_pool_wait_seconds",
                "Time a checkout waited for a server connection",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
            &["pool"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(pool_wait.clone()))
            .expect("unique metric");
        let plugin_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "orgwall_plugin_check_seconds",
                "Time the policy plugins took per statement (all plugins, cache lookups included)",
            )
            .buckets(vec![
                0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(plugin_seconds.clone()))
            .expect("unique metric");
        let rewrite_entries = prometheus::IntGauge::new(
            "orgwall_rewrite_cache_entries",
            "SQL texts kept by the planner (plans)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(rewrite_entries.clone()))
            .expect("unique metric");
        Metrics {
            rewrite_lookups: counter(
                "orgwall_rewrite_cache_lookups_total",
                "Tenant rewrites asked of the planner: hit (plan held it), shape_hit (same statement, other literals), miss (rewritten)",
                &["result"],
            ),
            rewrite_entries,
            plugin_decisions: counter(
                "orgwall_plugin_decisions_total",
                "Policy plugin decisions per statement: allow, mask, deny (a trap or timeout is a deny)",
                &["decision"],
            ),
            plugin_seconds,
            clients: gauge("orgwall_client_connections", "Logged-in clients", &["role"]),
            clients_refused: counter(
                "orgwall_client_connections_refused_total",
                "Connections refused before or at login",
                &["reason"],
            ),
            statements: counter(
                "orgwall_statements_total",
                "Client SQL strings routed (passed or rewritten) or refused by Orgwall",
                &["role", "outcome"],
            ),
            refusals: counter(
                "orgwall_refusals_total",
                "Statements refused by Orgwall, by SQLSTATE",
                &["sqlstate"],
            ),
            tenant_statements: counter(
                "orgwall_tenant_statements_total",
                "Tenant and switcher statements routed, per org ([admin] tenant_metrics orgs, the rest as other)",
                &["org_id"],
            ),
            tenant_refusals: counter(
                "orgwall_tenant_refusals_total",
                "Tenant and switcher statements refused, per org",
                &["org_id"],
            ),
            tenants: Mutex::new(HashSet::new()),
            tenant_limit,
            server_connections: gauge(
                "orgwall_server_connections",
                "Server connections per pool by state (active: checked out)",
                &["pool", "state"],
            ),
            pool_waiting: gauge(
                "orgwall_pool_waiting_clients",
                "Checkouts waiting for a server connection now",
                &["pool"],
            ),
            pool_checkouts: counter(
                "orgwall_pool_checkouts_total",
                "Server connections checked out",
                &["pool"],
            ),
            upstream_connect_errors: counter(
                "orgwall_upstream_connect_errors_total",
                "Failed attempts to open a server connection (unreachable, refused login)",
                &["pool"],
            ),
            balance_counters: counter(
                "orgwall_balance_cache_events_total",
                "Balance cache events (hits, fallbacks, resyncs, rows applied ...)",
                &["event"],
            ),
            balance_gauges: gauge(
                "orgwall_balance_cache",
                "Balance cache state (serving, replication_lag_bytes, balances ...)",
                &["figure"],
            ),
            pool_wait,
            registry,
            scrape: Mutex::new(()),
        }
    }

    /// The wait histogram of pool `name`, for [`crate::upstream::Pool::observed_by`].
    pub fn pool_wait(&self, name: &str) -> prometheus::Histogram {
        self.pool_wait.with_label_values(&[name])
    }

    /// Counts a logged-in client of `role` until the returned guard is dropped (the session
    /// ended, or its task unwound).
    pub fn client(&self, role: &str) -> ClientGauge {
        let g = self.clients.with_label_values(&[role]);
        g.inc();
        ClientGauge(g)
    }

    /// A connection refused before or at login (`connection_limit`, `authentication`,
    /// `startup_timeout`, `refused`).
    pub fn client_refused(&self, reason: &str) {
        self.clients_refused.with_label_values(&[reason]).inc();
    }

    /// One client SQL string through `route_sql`: `refused` carries the SQLSTATE; `org` is the
    /// tenant it ran for (tenants and bound switchers).
    pub fn statement(&self, role: &str, org: Option<&str>, refused: Option<&str>) {
        let outcome = if refused.is_some() {
            "refused"
        } else {
            "routed"
        };
        self.statements.with_label_values(&[role, outcome]).inc();
        if let Some(code) = refused {
            self.refusals.with_label_values(&[code]).inc();
        }
        if let Some(label) = org.and_then(|o| self.tenant_label(o)) {
            let family = match refused {
                Some(_) => &self.tenant_refusals,
                None => &self.tenant_statements,
            };
            family.with_label_values(&[&label]).inc();
        }
    }

    /// The plugins decided `decision` (`allow`, `mask`, `deny`) about one statement in
    /// `seconds`.
    pub fn plugin_decision(&self, decision: &str, seconds: f64) {
        self.plugin_decisions.with_label_values(&[decision]).inc();
        self.plugin_seconds.observe(seconds);
    }

    /// Statements of `role` routed and refused since start (`SHOW STATS`).
    pub fn statement_counts(&self, role: &str) -> (u64, u64) {
        let n = |outcome| self.statements.with_label_values(&[role, outcome]).get();
        (n("routed"), n("refused"))
    }

    /// Checkouts of pool `name` and their total wait in seconds (`SHOW POOLS`).
    pub fn pool_waits(&self, name: &str) -> (u64, f64) {
        let h = self.pool_wait.with_label_values(&[name]);
        (h.get_sample_count(), h.get_sample_sum())
    }

    /// The `org_id` label for `org`: its own while fewer than `tenant_metrics` orgs have one,
    /// else `other`; `None` when per-tenant series are off.
    fn tenant_label(&self, org: &str) -> Option<String> {
        if self.tenant_limit == 0 {
            return None;
        }
        let mut seen = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(org) {
            return Some(org.to_string());
        }
        if seen.len() < self.tenant_limit {
            seen.insert(org.to_string());
            return Some(org.to_string());
        }
        Some("other".into())
    }

    /// The text exposition, after reading the pools' and the balance cache's figures.
    pub fn render(
        &self,
        pools: &[(&str, PoolSnapshot)],
        balances: Option<Vec<(&str, String)>>,
        rewrites: CacheCounts,
    ) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        for (name, p) in pools {
            let conns = |state: &str, n: usize| {
                self.server_connections
                    .with_label_values(&[name, state])
                    .set(n as i64)
            };
            conns("active", p.in_use);
            conns("idle", p.idle);
            self.pool_waiting
                .with_label_values(&[name])
                .set(p.waiting as i64);
            set_counter(&self.pool_checkouts, name, p.checkouts);
            set_counter(&self.upstream_connect_errors, name, p.connect_errors);
        }
        for (result, n) in [
            ("hit", rewrites.hits),
            ("shape_hit", rewrites.shape_hits),
            ("miss", rewrites.misses),
        ] {
            set_counter(&self.rewrite_lookups, result, n);
        }
        self.rewrite_entries.set(rewrites.entries as i64);
        for (name, value) in balances.unwrap_or_default() {
            let n = match value.as_str() {
                "true" => 1,
                "false" => 0,
                v => match v.parse::<i64>() {
                    Ok(n) => n,
                    Err(_) => continue,
                },
            };
            if BALANCE_COUNTERS.contains(&name) {
                set_counter(&self.balance_counters, name, n.max(0) as u64);
            } else {
                self.balance_gauges.with_label_values(&[name]).set(n);
            }
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

/// Brings a counter read from elsewhere (a pool's atomics) to `value`.
fn set_counter(family: &IntCounterVec, label: &str, value: u64) {
    let c = family.with_label_values(&[label]);
    let now = c.get();
    if value >= now {
        c.inc_by(value - now);
    } else {
        c.reset();
        c.inc_by(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_REWRITES: CacheCounts = CacheCounts {
        hits: 0,
        shape_hits: 0,
        misses: 0,
        entries: 0,
    };

    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
    }

    #[test]
    fn tenant_series_are_bounded_by_the_limit() {
        let m = Metrics::new(2);
        for org in ["a", "b", "c", "d", "a"] {
            m.statement("switcher", Some(org), None);
        }
        m.statement("tenant", Some("zzz"), Some("42501"));
        let text = m.render(&[], None, NO_REWRITES);
        assert_eq!(
            sample(&text, "orgwall_tenant_statements_total{org_id=\"a\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "orgwall_tenant_statements_total{org_id=\"b\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "orgwall_tenant_statements_total{org_id=\"other\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "orgwall_tenant_refusals_total{org_id=\"other\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "orgwall_refusals_total{sqlstate=\"42501\"}"),
            Some(1.0)
        );
        assert!(!text.contains("org_id=\"c\""), "{text}");
    }

    #[test]
    fn no_tenant_series_unless_asked() {
        let m = Metrics::new(0);
        m.statement("tenant", Some("a"), None);
        let text = m.render(&[], None, NO_REWRITES);
        assert!(!text.contains("org_id="), "{text}");
        assert_eq!(
            sample(
                &text,
                "orgwall_statements_total{outcome=\"routed\",role=\"tenant\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn scraped_figures_follow_their_source() {
        let m = Metrics::new(0);
        let pool = |checkouts| PoolSnapshot {
            size: 4,
            in_use: 1,
            idle: 2,
            waiting: 0,
            checkouts,
            connect_errors: 0,
        };
        m.render(
            &[("owner", pool(5))],
            Some(vec![("hits", "7".into()), ("serving", "true".into())]),
            NO_REWRITES,
        );
        let text = m.render(
            &[("owner", pool(9))],
            Some(vec![("hits", "8".into()), ("off_reason", "x".into())]),
            CacheCounts {
                hits: 3,
                ..NO_REWRITES
            },
        );
        assert_eq!(
            sample(&text, "orgwall_rewrite_cache_lookups_total{result=\"hit\"}"),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, "orgwall_pool_checkouts_total{pool=\"owner\"}"),
            Some(9.0)
        );
        assert_eq!(
            sample(
                &text,
                "orgwall_server_connections{pool=\"owner\",state=\"idle\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "orgwall_balance_cache_events_total{event=\"hits\"}"),
            Some(8.0)
        );
        assert_eq!(
            sample(&text, "orgwall_balance_cache{figure=\"serving\"}"),
            Some(1.0)
        );
        assert!(!text.contains("off_reason"), "{text}");
    }
}
