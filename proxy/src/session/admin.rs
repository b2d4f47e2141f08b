//! The admin console: statements Orgwall answers itself for admin logins, in the simple and
//! the extended protocol (through `commands.rs`'s local statements). PgBouncer-style
//! `SHOW CLIENTS`, `SHOW SERVERS`, `SHOW POOLS`, `SHOW STATS`, `SHOW CONFIG` and `RELOAD`, and Orgwall's own
//! `SHOW orgwall_pool` (checkouts, multiplexing), `SHOW orgwall_balances` (the balance cache)
//! and `SHOW orgwall.balances_drift` (the cache against `inventory_balances`, see
//! `balances::drift`). Any other login gets 42501; they never reach PostgreSQL.

use bytes::BytesMut;
use pgwire::messages::response::CommandComplete;

use super::error::SessionError;
use super::respond::{Ask, Reply, Responder};
use super::tenant::OrgwallCommand;
use super::{ClientIo, Session};
use crate::admin::console::{self, Rows};
use crate::balances::answer;
use crate::balances::drift::{self, DriftError};
use crate::config::Role;
use crate::errors::ClientError;
use crate::wire;

/// An admin statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminCommand {
    /// `SHOW orgwall_pool`
    PoolStats,
    /// `SHOW orgwall_balances`
    BalanceStats,
    /// `SHOW orgwall.balances_drift`
    BalanceDrift,
    /// `SHOW CLIENTS`
    Clients,
    /// `SHOW SERVERS`
    Servers,
    /// `SHOW POOLS`
    Pools,
    /// `SHOW STATS`
    Stats,
    /// `SHOW CONFIG`
    Config,
    /// `RELOAD`
    Reload,
}

const NAME_VALUE: &[&str] = &["name", "value"];

impl AdminCommand {
    fn sql(self) -> &'static str {
        match self {
            AdminCommand::PoolStats => "SHOW orgwall_pool",
            AdminCommand::BalanceStats => "SHOW orgwall_balances",
            AdminCommand::BalanceDrift => "SHOW orgwall.balances_drift",
            AdminCommand::Clients => "SHOW CLIENTS",
            AdminCommand::Servers => "SHOW SERVERS",
            AdminCommand::Pools => "SHOW POOLS",
            AdminCommand::Stats => "SHOW STATS",
            AdminCommand::Config => "SHOW CONFIG",
            AdminCommand::Reload => "RELOAD",
        }
    }

    /// The result's columns (all text); empty for a command without rows.
    pub(super) fn columns(self) -> &'static [&'static str] {
        match self {
            AdminCommand::PoolStats | AdminCommand::BalanceStats => NAME_VALUE,
            AdminCommand::BalanceDrift => &[
                "org_id",
                "item_id",
                "location_id",
                "lot_id",
                "cached",
                "actual",
            ],
            AdminCommand::Clients => &[
                "type",
                "user",
                "database",
                "role",
                "org_id",
                "current_org_id",
                "addr",
                "port",
                "connect_time",
                "last_request_time",
                "statements",
                "pid",
                "tls",
                "application_name",
            ],
            AdminCommand::Servers => &[
                "type",
                "user",
                "database",
                "pool",
                "state",
                "addr",
                "port",
                "connect_time",
                "remote_pid",
                "id",
            ],
            AdminCommand::Pools => &[
                "database",
                "user",
                "pool",
                "cl_active",
                "cl_waiting",
                "sv_active",
                "sv_idle",
                "pool_size",
                "pool_mode",
                "total_checkouts",
                "total_wait_time_us",
                "connect_errors",
            ],
            AdminCommand::Stats => &[
                "database",
                "role",
                "total_query_count",
                "total_refused_count",
                "tenants",
            ],
            AdminCommand::Config => &["key", "value", "changeable"],
            AdminCommand::Reload => &[],
        }
    }
}

/// Recognises an admin statement (case-insensitive, optional trailing `;`).
pub(super) fn parse(sql: &str) -> Option<AdminCommand> {
    let text = sql.trim().trim_end_matches(';');
    let words: Vec<String> = text
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["reload"] => Some(AdminCommand::Reload),
        ["show", name] => match *name {
            "orgwall_pool" => Some(AdminCommand::PoolStats),
            "orgwall_balances" => Some(AdminCommand::BalanceStats),
            "orgwall.balances_drift" => Some(AdminCommand::BalanceDrift),
            "clients" => Some(AdminCommand::Clients),
            "servers" => Some(AdminCommand::Servers),
            "pools" => Some(AdminCommand::Pools),
            "stats" => Some(AdminCommand::Stats),
            "config" => Some(AdminCommand::Config),
            _ => None,
        },
        _ => None,
    }
}

/// A RowDescription of text columns.
pub(super) fn row_description(columns: &[&str]) -> BytesMut {
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
    BytesMut::from(&wire::frame(b'T', &body)[..])
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

/// DataRows (NULL = `None`) and their CommandComplete.
fn data_rows(rows: &Rows) -> BytesMut {
    let mut out = BytesMut::new();
    for r in rows {
        out.extend_from_slice(&data_row(r));
    }
    out.extend_from_slice(&answer::command_complete(rows.len()));
    out
}

/// A RowDescription of text columns, DataRows and CommandComplete.
fn text_result(columns: &[&str], rows: &Rows) -> BytesMut {
    let mut out = row_description(columns);
    out.extend_from_slice(&data_rows(rows));
    out
}

fn name_values(stats: Vec<(&'static str, String)>) -> Rows {
    stats
        .into_iter()
        .map(|(k, v)| vec![Some(k.to_string()), Some(v)])
        .collect()
}

/// The admin console as a responder: answers its statements in a Query or a Parse (for admin
/// logins; 42501 for any other), before they are planned. It keeps no state: a statement
/// prepared in the extended protocol is held by the commands responder, which answers its
/// Bind, Describe and Execute.
pub(super) struct Console;

impl Responder for Console {
    async fn respond<S: ClientIo>(
        session: &mut Session<'_, S>,
        ask: Ask<'_>,
    ) -> Result<Reply, ClientError> {
        let (cmd, parse_name) = match ask {
            Ask::Query { sql, .. } => (parse(sql), None),
            Ask::Parse { name, sql } => (parse(sql), Some(name)),
            _ => return Ok(Reply::Pass),
        };
        let Some(cmd) = cmd else {
            return Ok(Reply::Pass);
        };
        let parse_name = parse_name.map(str::to_string);
        session.on_admin_command(cmd, parse_name).await?;
        Ok(Reply::Answered)
    }
}

/// What an admin statement answers: rows, or a command tag alone.
enum Answer {
    Rows(Rows),
    Done(&'static str),
}

impl<S: ClientIo> Session<'_, S> {
    /// An admin statement in a Query (`parse_name: None`) or a Parse under that name (then it
    /// is remembered, and Bind/Describe/Execute answered by `commands.rs`).
    async fn on_admin_command(
        &mut self,
        cmd: AdminCommand,
        parse_name: Option<String>,
    ) -> Result<(), ClientError> {
        let simple = parse_name.is_none();
        if self.principal.role != Role::Admin {
            let e = SessionError::AdminOnly(cmd.sql().to_string()).into();
            return self.refuse(e, simple).await;
        }
        if let Some(name) = parse_name {
            return self
                .parse_command_statement(name, Ok(OrgwallCommand::Admin(cmd)))
                .await;
        }
        let mut out = match self.admin_answer(cmd).await {
            Ok(Answer::Rows(rows)) => text_result(cmd.columns(), &rows),
            Ok(Answer::Done(tag)) => {
                let mut b = BytesMut::new();
                wire::put(&mut b, &CommandComplete::new(tag.into()));
                b
            }
            Err(e) => return self.refuse(e, true).await,
        };
        wire::put_ready(&mut out, self.status.byte());
        self.push_synthetic(out);
        Ok(())
    }

    /// Execute of an admin statement's portal: its rows (the RowDescription went with
    /// Describe) and CommandComplete.
    pub(super) async fn execute_admin(&mut self, cmd: AdminCommand) -> Result<(), ClientError> {
        let out = match self.admin_answer(cmd).await {
            Ok(Answer::Rows(rows)) => data_rows(&rows),
            Ok(Answer::Done(tag)) => {
                let mut b = BytesMut::new();
                wire::put(&mut b, &CommandComplete::new(tag.into()));
                b
            }
            Err(e) => return self.refuse(e, false).await,
        };
        self.push_synthetic(out);
        Ok(())
    }

    async fn admin_answer(&self, cmd: AdminCommand) -> Result<Answer, ClientError> {
        let state = self.state;
        Ok(Answer::Rows(match cmd {
            AdminCommand::PoolStats => name_values(state.pool.stats()),
            AdminCommand::BalanceStats => name_values(match &state.balances {
                Some(b) => b.stats(),
                None => vec![
                    ("serving", "false".into()),
                    ("off_reason", "disabled".into()),
                ],
            }),
            AdminCommand::BalanceDrift => self
                .balance_drift()
                .await
                .map_err(|e| ClientError::from(&e))?,
            AdminCommand::Clients => console::clients(state),
            AdminCommand::Servers => console::servers(state),
            AdminCommand::Pools => console::pools(state),
            AdminCommand::Stats => console::stats(state),
            AdminCommand::Config => crate::config::settings(&state.current())
                .into_iter()
                .map(|(k, v)| {
                    let changeable = crate::config::changeable(k);
                    vec![Some(k.to_string()), Some(v), Some(changeable.to_string())]
                })
                .collect(),
            AdminCommand::Reload => {
                // A rejected config is refused with the loader's reason; the running one stays.
                state.reload_config().map_err(|e| ClientError::from(&e))?;
                state.reload_now().await;
                return Ok(Answer::Done("RELOAD"));
            }
        }))
    }

    async fn balance_drift(&self) -> Result<Rows, DriftError> {
        let b = self.state.balances.as_ref().ok_or(DriftError::Disabled)?;
        let drift = drift::check(b, &self.state.pool).await?;
        Ok(drift
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
            .collect())
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
        assert_eq!(parse("show clients"), Some(AdminCommand::Clients));
        assert_eq!(parse("SHOW SERVERS"), Some(AdminCommand::Servers));
        assert_eq!(parse("SHOW  POOLS ;"), Some(AdminCommand::Pools));
        assert_eq!(parse("reload;"), Some(AdminCommand::Reload));
        assert_eq!(parse("RELOAD now"), None);
        assert_eq!(parse("SHOW config_file"), None);
        assert_eq!(parse("SELECT orgwall_balances"), None);
    }

    #[test]
    fn text_results_carry_nulls() {
        let out = text_result(&["a", "b"], &vec![vec![Some("x".into()), None]]);
        let d = out.iter().position(|&b| b == b'D').expect("a DataRow");
        // 'D', length, 2 columns, len 1 "x", len -1
        assert_eq!(
            &out[d + 5..d + 16],
            &[0, 2, 0, 0, 0, 1, b'x', 255, 255, 255, 255]
        );
    }
}
