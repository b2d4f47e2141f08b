//! What `orgwall serve` checks before it accepts connections: that PostgreSQL accepts every
//! upstream identity Orgwall will log in as (the owner and, with the second wall, the tenant
//! identity), optionally waiting for it; and that the process may open enough files.
//!
//! Invariant: a proxy that says "accepting connections" has logged in upstream as each
//! identity at least once; a failure names the identity and PostgreSQL's reason.

use std::time::Duration;

use crate::config::{Config, UpstreamConfig};
use crate::upstream::{Pool, UpstreamError};

/// An upstream identity that could not log in.
#[derive(Debug, thiserror::Error)]
#[error("cannot log in to PostgreSQL at {host}:{port} as {identity} `{user}`: {source}{hint}")]
pub struct UpstreamCheckError {
    identity: &'static str,
    user: String,
    host: String,
    port: u16,
    source: UpstreamError,
    hint: &'static str,
}

/// The identities `config` logs in as: the owner (`[upstream] url`) and, with
/// `enforce_in_postgres`, the tenant identity (`tenant_user`).
fn identities(config: &Config) -> Vec<(&'static str, UpstreamConfig)> {
    let mut out = vec![("the owner login ([upstream] url)", config.upstream.clone())];
    if config.tenancy.enforce_in_postgres {
        out.push((
            "the tenant identity ([upstream] tenant_user)",
            config.upstream.for_tenants(),
        ));
    }
    out
}

/// Logs in once as each identity and closes the connection.
pub async fn check_upstream(config: &Config) -> Result<(), UpstreamCheckError> {
    for (identity, cfg) in identities(config) {
        let fail = |source: UpstreamError, cfg: &UpstreamConfig| UpstreamCheckError {
            identity,
            user: cfg.user.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            hint: match &source {
                UpstreamError::Rejected { code, .. } if code.starts_with("28") => {
                    if cfg.user == config.upstream.tenant_user {
                        " (its password is `[upstream] tenant_password` or ORGWALL_TENANT_PASSWORD; `orgwall migrate up --tenant-password` creates the role)"
                    } else {
                        " (check the user and password in `[upstream] url` or DATABASE_URL)"
                    }
                }
                _ => "",
            },
            source,
        };
        let pool = Pool::new(cfg.clone()).map_err(|e| fail(e, &cfg))?;
        pool.connect_dedicated(false)
            .await
            .map_err(|e| fail(e, &cfg))?;
    }
    Ok(())
}

/// [`check_upstream`], and with `wait` again every `every` until it passes (a line at WARN for
/// each failed try).
pub async fn wait_for_upstream(
    config: &Config,
    wait: bool,
    every: Duration,
) -> Result<(), UpstreamCheckError> {
    let mut tries = 1u64;
    loop {
        match check_upstream(config).await {
            Ok(()) => return Ok(()),
            Err(e) if wait => {
                tracing::warn!(error = %e, tries, "upstream not ready; trying again (--wait-for-upstream)");
            }
            Err(e) => return Err(e),
        }
        tries += 1;
        tokio::time::sleep(every).await;
    }
}

/// File descriptors the config may hold at once: every client and connection still logging
/// in, each pool full, and a margin for listeners, the balance cache's feed, plugins and logs.
pub fn descriptors_needed(config: &Config) -> u64 {
    let pools = 1 + usize::from(config.tenancy.enforce_in_postgres);
    let margin = 32;
    (config.max_client_connections
        + config.max_startup_connections
        + pools * config.upstream.pool_size
        + margin) as u64
}

/// The soft `RLIMIT_NOFILE` to ask for: the hard limit (unless the soft one is already there).
pub fn raised_soft_limit(soft: u64, hard: u64) -> Option<u64> {
    (soft < hard).then_some(hard)
}

/// Raises the soft file-descriptor limit to the hard one and warns when the result is below
/// what `config` may need (clients past it would fail to connect).
pub fn raise_fd_limit(config: &Config) {
    // SAFETY: getrlimit/setrlimit write and read only the struct we pass.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the file-descriptor limit");
        return;
    }
    let (soft, hard): (u64, u64) = (lim.rlim_cur, lim.rlim_max);
    let mut now = soft;
    if let Some(want) = raised_soft_limit(soft, hard) {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                from = soft,
                to = want,
                "raised the file-descriptor limit (RLIMIT_NOFILE) to its hard limit"
            );
            now = want;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the file-descriptor limit");
        }
    }
    let needed = descriptors_needed(config);
    if now < needed {
        tracing::warn!(
            limit = now,
            needed,
            "the file-descriptor limit (ulimit -n) is below max_client_connections + max_startup_connections + the pools; connections past it are refused: raise the hard limit or lower those settings"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_goes_to_the_hard_one() {
        assert_eq!(raised_soft_limit(1024, 524288), Some(524288));
        assert_eq!(raised_soft_limit(4096, 4096), None);
    }

    #[test]
    fn descriptors_count_clients_startups_and_pools() {
        let text = r#"
max_client_connections = 100
max_startup_connections = 10
[upstream]
url = "postgres://u:p@127.0.0.1:5432/app"
pool_size = 5
"#;
        let env = crate::config::EnvOverrides::default();
        let c = Config::from_toml(text, std::path::Path::new("."), &env).unwrap();
        // Two pools with the second wall (the default).
        assert_eq!(descriptors_needed(&c), 100 + 10 + 2 * 5 + 32);
    }
}
