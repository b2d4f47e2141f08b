//! The settings as operators see them: [`settings`] (what `SHOW CONFIG` lists, secrets left
//! out) and the test that the README's configuration reference has a row for every key the
//! loader accepts, and no other.

use super::Config;

/// The settings in force, as `SHOW CONFIG` lists them (`key`, value): every scalar key of the
/// reference table that is not a secret (no passwords, no JWT keys, no user list).
pub fn settings(c: &Config) -> Vec<(&'static str, String)> {
    let secs = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_secs()).to_string();
    let u = &c.upstream;
    let t = &c.tenancy;
    vec![
        ("listen", c.listen.to_string()),
        (
            "unix_socket_dir",
            c.unix_socket_dir
                .as_ref()
                .map_or(String::new(), |d| d.display().to_string()),
        ),
        ("workers", c.workers.to_string()),
        (
            "max_client_connections",
            c.max_client_connections.to_string(),
        ),
        (
            "reserved_admin_connections",
            c.reserved_admin_connections.to_string(),
        ),
        (
            "max_startup_connections",
            c.max_startup_connections.to_string(),
        ),
        (
            "startup_timeout_secs",
            c.startup_timeout.as_secs().to_string(),
        ),
        ("idle_client_timeout_secs", secs(c.idle_client_timeout)),
        (
            "idle_in_transaction_timeout_secs",
            secs(c.idle_in_transaction_timeout),
        ),
        (
            "shutdown_timeout_secs",
            c.shutdown_timeout.as_secs().to_string(),
        ),
        ("max_message_bytes", c.max_message_bytes.to_string()),
        ("log_format", format!("{:?}", c.log_format).to_lowercase()),
        (
            "audit_admin_statements",
            c.audit_admin_statements.to_string(),
        ),
        ("upstream.host", u.host.clone()),
        ("upstream.port", u.port.to_string()),
        ("upstream.database", u.database.clone()),
        ("upstream.user", u.user.clone()),
        ("upstream.pool_size", u.pool_size.to_string()),
        (
            "upstream.pool_mode",
            format!("{:?}", u.pool_mode).to_lowercase(),
        ),
        ("upstream.multiplex", u.multiplex.to_string()),
        ("upstream.group_reads", u.group_reads.to_string()),
        ("upstream.prepare_unnamed", u.prepare_unnamed.to_string()),
        (
            "upstream.max_prepared_statements",
            u.max_prepared_statements.to_string(),
        ),
        (
            "upstream.connect_timeout_secs",
            u.connect_timeout.as_secs().to_string(),
        ),
        (
            "upstream.checkout_timeout_secs",
            u.checkout_timeout.as_secs().to_string(),
        ),
        (
            "upstream.sslmode",
            format!("{:?}", u.sslmode).to_lowercase(),
        ),
        ("upstream.tenant_user", u.tenant_user.clone()),
        ("tenancy.column", t.column.clone()),
        ("tenancy.schemas", t.schemas.join(",")),
        ("tenancy.global_tables", t.global_tables.join(",")),
        ("tenancy.allowed_functions", t.allowed_functions.join(",")),
        (
            "tenancy.rewrite_cache_size",
            t.rewrite_cache_size.to_string(),
        ),
        (
            "tenancy.enforce_in_postgres",
            t.enforce_in_postgres.to_string(),
        ),
        ("tenancy.allow_explain", t.allow_explain.to_string()),
        (
            "tenancy.max_statement_bytes",
            t.max_statement_bytes.to_string(),
        ),
        (
            "tenancy.max_server_connections_per_org",
            u.max_per_org.to_string(),
        ),
        (
            "tenancy.max_server_connections_per_user",
            u.max_per_user.to_string(),
        ),
        ("jwt.keys", c.jwt.keys.len().to_string()),
        ("jwt.require_token", c.jwt.require_token.to_string()),
        ("balances.enabled", c.balances.enabled.to_string()),
        (
            "plugins",
            c.plugins
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("users", c.users.len().to_string()),
        (
            "admin.listen",
            c.admin.listen.map_or(String::new(), |a| a.to_string()),
        ),
        ("admin.tenant_metrics", c.admin.tenant_metrics.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::RawConfig;

    const MIN: &str = "[upstream]\nurl = \"postgres://u@h/app\"\n";

    /// The keys a section accepts, read from serde's unknown-field error (`expected one of
    /// `a`, `b` …`), so the list is the struct's own.
    fn accepted(toml: &str) -> Vec<String> {
        let err = toml::from_str::<RawConfig>(toml)
            .expect_err("an unknown key is refused")
            .to_string();
        let list = err
            .split_once("expected")
            .unwrap_or_else(|| panic!("no field list in: {err}"))
            .1;
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    /// Every key, as the README writes it: `key` at top level, `section.key` in a section.
    fn struct_keys() -> Vec<String> {
        let bogus = "zz_unknown = 1\n";
        let mut keys: Vec<String> = accepted(&format!("{bogus}{MIN}"))
            .into_iter()
            // Sections are documented by their keys.
            .filter(|k| {
                !matches!(
                    k.as_str(),
                    "upstream"
                        | "tls"
                        | "tenancy"
                        | "jwt"
                        | "users"
                        | "balances"
                        | "plugins"
                        | "admin"
                )
            })
            .collect();
        let sections: [(&str, String); 9] = [
            ("admin", format!("{MIN}[admin]\n{bogus}")),
            ("upstream", format!("{MIN}{bogus}")),
            ("tls", format!("{MIN}[tls]\n{bogus}")),
            ("tenancy", format!("{MIN}[tenancy]\n{bogus}")),
            ("jwt", format!("{MIN}[jwt]\n{bogus}")),
            ("jwt.keys", format!("{MIN}[[jwt.keys]]\n{bogus}")),
            ("users", format!("{MIN}[[users]]\n{bogus}")),
            ("balances", format!("{MIN}[balances]\n{bogus}")),
            ("plugins", format!("{MIN}[[plugins]]\n{bogus}")),
        ];
        for (section, toml) in sections {
            keys.extend(
                accepted(&toml)
                    .into_iter()
                    .filter(|k| !(section == "jwt" && k == "keys"))
                    .map(|k| format!("{section}.{k}")),
            );
        }
        keys.sort();
        keys
    }

    /// The first column of the README's "Configuration reference" table.
    fn readme_keys() -> Vec<String> {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split_once("## Configuration reference")
            .expect("README has a Configuration reference")
            .1;
        let mut keys: Vec<String> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(1))
            .filter_map(|cell| cell.trim().strip_prefix('`')?.split('`').next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn readme_documents_every_config_key_and_no_other() {
        let code = struct_keys();
        let readme = readme_keys();
        let missing: Vec<_> = code.iter().filter(|k| !readme.contains(k)).collect();
        let unknown: Vec<_> = readme.iter().filter(|k| !code.contains(k)).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README's configuration reference: missing {missing:?}, not a key {unknown:?}"
        );
    }
}
