//! The client-side limits (`max_client_connections`, `max_startup_connections`,
//! `reserved_admin_connections`, `startup_timeout_secs`), validated together: the admin
//! reserve depends on the maximum.

use super::*;

/// The client-side limits, validated together (the admin reserve depends on the maximum).
pub(super) struct ClientLimits {
    pub(super) max_clients: usize,
    pub(super) max_startup: usize,
    pub(super) reserved_admin: usize,
    pub(super) startup_timeout: Duration,
}

impl ClientLimits {
    pub(super) fn from_raw(raw: &RawConfig) -> Result<ClientLimits, ConfigError> {
        let invalid = |key: &str, why: String| ConfigError::Invalid {
            key: key.into(),
            why,
        };
        let max_clients = raw.max_client_connections.unwrap_or(1000);
        if max_clients == 0 {
            return Err(invalid(
                "max_client_connections",
                "must be at least 1".into(),
            ));
        }
        let max_startup = raw.max_startup_connections.unwrap_or(100);
        if max_startup == 0 {
            return Err(invalid(
                "max_startup_connections",
                "must be at least 1".into(),
            ));
        }
        // As PostgreSQL's superuser_reserved_connections (default 3), but never the whole limit.
        let reserved_admin = match raw.reserved_admin_connections {
            None => 3.min(max_clients / 2),
            Some(n) if n < max_clients => n,
            Some(n) => {
                return Err(invalid(
                    "reserved_admin_connections",
                    format!("{n} must be less than max_client_connections ({max_clients})"),
                ))
            }
        };
        let startup_timeout = match raw.startup_timeout_secs.unwrap_or(5) {
            0 => return Err(invalid("startup_timeout_secs", "must be at least 1".into())),
            s => Duration::from_secs(s),
        };
        Ok(ClientLimits {
            max_clients,
            max_startup,
            reserved_admin,
            startup_timeout,
        })
    }
}
