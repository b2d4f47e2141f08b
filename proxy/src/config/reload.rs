//! What a reload (SIGHUP, the console's `RELOAD`) may change in a running proxy: a new config
//! is validated whole by the loader, then [`merge_reloadable`] keeps the running values of the
//! settings that only a restart can change (listening sockets, threads, the upstream
//! identities, TLS, the balance cache, the admin endpoint) and names them.
//!
//! Reloadable: users (passwords, roles, orgs), `[tenancy]` (but `enforce_in_postgres` and
//! `rewrite_cache_size`), `[jwt]`, `[[plugins]]`, `pool_size` and the per-tenant caps,
//! `max_client_connections` and `reserved_admin_connections`, `audit_admin_statements`.

use super::Config;

/// The config to run with after a reload, and the keys whose change waits for a restart.
pub fn merge_reloadable(running: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut restart = Vec::new();
    let r = running;
    macro_rules! keep {
        ($key:literal, $($field:tt)+) => {
            if new.$($field)+ != r.$($field)+ {
                restart.push($key);
                new.$($field)+ = r.$($field)+.clone();
            }
        };
    }
    keep!("listen", listen);
    keep!("unix_socket_dir", unix_socket_dir);
    keep!("workers", workers);
    keep!("max_startup_connections", max_startup_connections);
    keep!("log_format", log_format);
    keep!("upstream.url", upstream.host);
    keep!("upstream.url", upstream.port);
    keep!("upstream.url", upstream.user);
    keep!("upstream.url", upstream.password);
    keep!("upstream.url", upstream.database);
    keep!("upstream.sslmode", upstream.sslmode);
    keep!("upstream.sslrootcert", upstream.ssl_root_cert);
    keep!("upstream.tenant_user", upstream.tenant_user);
    keep!("upstream.tenant_password", upstream.tenant_password);
    keep!("upstream.pool_mode", upstream.pool_mode);
    keep!("upstream.multiplex", upstream.multiplex);
    keep!("upstream.group_reads", upstream.group_reads);
    keep!("upstream.prepare_unnamed", upstream.prepare_unnamed);
    keep!(
        "upstream.max_prepared_statements",
        upstream.max_prepared_statements
    );
    keep!("upstream.connect_timeout_secs", upstream.connect_timeout);
    keep!("upstream.checkout_timeout_secs", upstream.checkout_timeout);
    keep!("startup_timeout_secs", startup_timeout);
    keep!("idle_client_timeout_secs", idle_client_timeout);
    keep!(
        "idle_in_transaction_timeout_secs",
        idle_in_transaction_timeout
    );
    keep!("shutdown_timeout_secs", shutdown_timeout);
    keep!("max_message_bytes", max_message_bytes);
    keep!("max_message_bytes", upstream.max_message_bytes);
    keep!("tenancy.enforce_in_postgres", tenancy.enforce_in_postgres);
    keep!("tenancy.rewrite_cache_size", tenancy.rewrite_cache_size);
    keep!("balances", balances);
    keep!("admin", admin);
    let tls = |c: &Config| {
        c.tls
            .as_ref()
            .map(|t| (t.cert_pem.clone(), t.key_pem.clone(), t.require))
    };
    if tls(&new) != tls(r) {
        restart.push("tls");
        new.tls = r.tls.clone();
    }
    restart.dedup();
    (new, restart)
}

/// Whether `SHOW CONFIG`'s `key` takes effect on reload (see [`merge_reloadable`]).
pub fn changeable(key: &str) -> bool {
    const RELOADABLE: &[&str] = &[
        "max_client_connections",
        "reserved_admin_connections",
        "audit_admin_statements",
        "upstream.pool_size",
        "jwt.",
        "plugins",
        "users",
    ];
    RELOADABLE.iter().any(|k| key.starts_with(k))
        || (key.starts_with("tenancy.")
            && !matches!(
                key,
                "tenancy.enforce_in_postgres" | "tenancy.rewrite_cache_size"
            ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvOverrides;

    fn load(text: &str) -> Config {
        Config::from_toml(text, std::path::Path::new("."), &EnvOverrides::default()).unwrap()
    }

    const BASE: &str = r#"
listen = "127.0.0.1:6432"
[upstream]
url = "postgres://owner:pw@127.0.0.1:5432/app"
pool_size = 8
[[users]]
name = "acme"
password = "acme-pw"
org_id = "org_a"
"#;

    #[test]
    fn users_pools_and_tenancy_change_the_rest_waits_for_a_restart() {
        let running = load(BASE);
        let text = BASE
            .replace("pool_size = 8", "pool_size = 2")
            .replace("127.0.0.1:6432", "127.0.0.1:7000")
            .replace("owner:pw", "other:pw")
            + "[[users]]\nname = \"new\"\npassword = \"p\"\norg_id = \"org_n\"\n\
               [tenancy]\nglobal_tables = [\"countries\"]\nenforce_in_postgres = false\n";
        let (merged, restart) = merge_reloadable(&running, load(&text));
        assert_eq!(merged.upstream.pool_size, 2);
        assert_eq!(merged.users.len(), 2);
        assert_eq!(merged.tenancy.global_tables, ["countries"]);
        // Kept, and named.
        assert_eq!(merged.listen, running.listen);
        assert_eq!(merged.upstream.user, "owner");
        assert!(merged.tenancy.enforce_in_postgres);
        assert_eq!(
            restart,
            ["listen", "upstream.url", "tenancy.enforce_in_postgres"]
        );
    }
}
