//! Orgwall's own admin statements, answered by the proxy for admin logins in the simple query
//! protocol: `SHOW orgwall_pool` (server connections: checkouts, multiplexing),
//! `SHOW orgwall_balances` (the balance cache's state and counters) and
//! `SHOW orgwall.balances_drift` (the cache against `inventory_balances`, see
//! `balances::drift`). Any other login gets 42501; they never reach PostgreSQL.

use bytes::BytesMut;

use super::Session;
use crate::balances::answer;
use crate::balances::drift::{self, DriftError};
use crate::config::Role;
use crate::errors::{code, ClientError};
use crate::wire;

/// An admin statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AdminCommand {
    /// `SHOW orgwall_pool`
    PoolStats,
    /// `SHOW orgwall_balances`
    BalanceStats,
    /// `SHOW orgwall.balances_drift`
    BalanceDrift,
}

impl AdminCommand {
    fn sql(self) -> &'static str {
        match self {
            AdminCommand::PoolStats => "SHOW orgwall_pool",
            AdminCommand::BalanceStats => "SHOW orgwall_balances",
            AdminCommand::BalanceDrift => "SHOW orgwall.balances_drift",
        }
    }
}

/// Recognises an admin statement (case-insensitive, optional trailing `;`).
pub(super) fn parse(sql: &str) -> Option<AdminCommand> {
    let mut words = sql.trim().trim_end_matches(';').split_whitespace();
    let (Some(show), Some(name), None) = (words.next(), words.next(), words.next()) else {
        return None;
    };
    if !show.eq_ignore_ascii_case("show") {
        return None;
    }
    match name.to_ascii_lowercase().as_str() {
        "orgwall_pool" => Some(AdminCommand::PoolStats),
        "orgwall_balances" => Some(AdminCommand::BalanceStats),
        "orgwall.balances_drift" => Some(AdminCommand::BalanceDrift),
        _ => None,
    }
}

/// A RowDescription of text columns, DataRows (NULL = `None`) and CommandComplete.
fn text_result(columns: &[&str], rows: &[Vec<Option<String>>]) -> BytesMut {
    let mut out = row_description(columns);
    for r in rows {
        out.extend_from_slice(&data_row(r));
    }
    out.extend_from_slice(&answer::command_complete(rows.len()));
    out
}

/// A RowDescription of text columns.
pub(super) fn row_description(columns: &[&str]) -> BytesMut {
    let mut out = BytesMut::new();
    let mut body = Vec::new();
    body.extend_from_slice(&(columns.len() as i16).to_be_bytes());
    for name in columns {
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]); // NUL, table oid, attnum
        body.extend_from_slice(&25u32.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
    }
    out.extend_from_slice(&wire::frame(b'T', &body));
    out
}

/// A DataRow of text values (NULL = `None`).
pub(super) fn data_row(values: &[Option<String>]) -> BytesMut {
    let mut row = Vec::new();
    row.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        match v {
            Some(v) => {
                row.extend_from_slice(&(v.len() as i32).to_be_bytes());
                row.extend_from_slice(v.as_bytes());
            }
            None => row.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    BytesMut::from(&wire::frame(b'D', &row)[..])
}

/// A two-column (name, value) result.
fn name_values(stats: Vec<(&'static str, String)>) -> BytesMut {
    let rows: Vec<Vec<Option<String>>> = stats
        .into_iter()
        .map(|(k, v)| vec![Some(k.to_string()), Some(v)])
        .collect();
    text_result(&["name", "value"], &rows)
}

impl Session<'_> {
    /// Answers an admin statement (`simple`: a Query; else a Parse, which is refused).
    pub(super) async fn on_admin_command(
        &mut self,
        cmd: AdminCommand,
        simple: bool,
    ) -> Result<(), ClientError> {
        if self.principal.role != Role::Admin {
            let e = ClientError::error(
                code::INSUFFICIENT_PRIVILEGE,
                format!("{} is only for admin logins", cmd.sql()),
            );
            return self.refuse(e, simple).await;
        }
        if !simple {
            let e = ClientError::error(
                code::FEATURE_NOT_SUPPORTED,
                format!(
                    "{} is answered in the simple query protocol only",
                    cmd.sql()
                ),
            );
            return self.refuse(e, false).await;
        }
        let mut out = match cmd {
            AdminCommand::PoolStats => name_values(self.state.pool.stats()),
            AdminCommand::BalanceStats => self.balance_stats(),
            AdminCommand::BalanceDrift => match self.balance_drift().await {
                Ok(out) => out,
                Err(e) => return self.refuse(ClientError::from(&e), true).await,
            },
        };
        wire::put_ready(&mut out, self.status);
        self.push_synthetic(out);
        Ok(())
    }

    fn balance_stats(&self) -> BytesMut {
        let stats = match &self.state.balances {
            Some(b) => b.stats(),
            None => vec![
                ("serving", "false".into()),
                ("off_reason", "disabled".into()),
            ],
        };
        name_values(stats)
    }

    async fn balance_drift(&self) -> Result<BytesMut, DriftError> {
        let b = self.state.balances.as_ref().ok_or(DriftError::Disabled)?;
        let drift = drift::check(b, &self.state.pool).await?;
        let rows: Vec<Vec<Option<String>>> = drift
            .into_iter()
            .map(|d| {
                let (org, item, location, lot) = d.key;
                vec![
                    Some(org),
                    Some(item),
                    Some(location),
                    lot,
                    d.cached,
                    d.actual,
                ]
            })
            .collect();
        Ok(text_result(
            &[
                "org_id",
                "item_id",
                "location_id",
                "lot_id",
                "cached",
                "actual",
            ],
            &rows,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_orgwall_show_statements() {
        assert_eq!(parse("SHOW orgwall_pool"), Some(AdminCommand::PoolStats));
        assert_eq!(
            parse("show ORGWALL_BALANCES;"),
            Some(AdminCommand::BalanceStats)
        );
        assert_eq!(
            parse("  SHOW orgwall.balances_drift ; "),
            Some(AdminCommand::BalanceDrift)
        );
        assert_eq!(parse("SHOW orgwall.balances_drift x"), None);
        assert_eq!(parse("SHOW search_path"), None);
        assert_eq!(parse("SELECT orgwall_balances"), None);
    }

    #[test]
    fn text_results_carry_nulls() {
        let out = text_result(&["a", "b"], &[vec![Some("x".into()), None]]);
        let d = out.iter().position(|&b| b == b'D').expect("a DataRow");
        // 'D', length, 2 columns, len 1 "x", len -1
        assert_eq!(
            &out[d + 5..d + 16],
            &[0, 2, 0, 0, 0, 1, b'x', 255, 255, 255, 255]
        );
    }
}
