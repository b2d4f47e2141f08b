//! What a client is told at login about the settings it sent in its startup packet: the value
//! as PostgreSQL reports it (`client_encoding=utf8` is reported as `UTF8`, `DateStyle=iso` as
//! `ISO, MDY`), asked of PostgreSQL itself once per pool and spelling, so Orgwall keeps no
//! table of PostgreSQL's spellings that could drift from the server's.

use super::{Pool, UpstreamError};
use crate::errors::{code, UserFacing};
use crate::sql::quote_literal;

/// Why a client's startup settings could not be reported.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// PostgreSQL refused a value (it would have refused the login the same way).
    #[error("{message}")]
    Refused { code: String, message: String },
}

/// A startup setting PostgreSQL refused: the login fails as PostgreSQL would fail it, with
/// its SQLSTATE (the codes `set_config` raises) and its message.
impl UserFacing for SettingError {
    fn sqlstate(&self) -> &'static str {
        match self {
            SettingError::Upstream(u) => u.sqlstate(),
            SettingError::Refused { code: c, .. } => match c.as_str() {
                "42704" => code::UNDEFINED_OBJECT,
                "55P02" => code::CANT_CHANGE_RUNTIME_PARAM,
                "42501" => code::INSUFFICIENT_PRIVILEGE,
                _ => code::INVALID_PARAMETER_VALUE,
            },
        }
    }
    fn fatal(&self) -> bool {
        true
    }
    fn client_message(&self) -> String {
        match self {
            SettingError::Upstream(u) => u.client_message(),
            SettingError::Refused { message, .. } => format!("startup setting refused: {message}"),
        }
    }
}

/// Spellings remembered per pool; past this many the memory starts over (a client can send any
/// value, so it must not grow without bound).
const REMEMBERED: usize = 1024;

/// Settings reported as sent (PostgreSQL only drops non-ASCII from it; asking would cost a
/// round trip for nearly every login).
const AS_SENT: &[&str] = &["application_name"];

impl Pool {
    /// The ParameterStatus values for a client: the server's (`server`), each overridden by
    /// the client's own startup setting of that name, spelled as PostgreSQL reports it. A
    /// value PostgreSQL refuses is its error, as PostgreSQL would refuse the login.
    pub async fn reported_values(
        &self,
        server: &[(String, String)],
        settings: &[(String, String)],
    ) -> Result<Vec<(String, String)>, SettingError> {
        let mut out = Vec::with_capacity(server.len());
        let mut ask = Vec::new();
        for (name, value) in server {
            let sent = settings
                .iter()
                .rfind(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v);
            match sent {
                Some(v) if v != value && !AS_SENT.iter().any(|n| n.eq_ignore_ascii_case(name)) => {
                    match self.remembered(name, v) {
                        Some(known) => out.push((name.clone(), known)),
                        None => {
                            ask.push((out.len(), v.clone()));
                            out.push((name.clone(), v.clone()));
                        }
                    }
                }
                Some(v) => out.push((name.clone(), v.clone())),
                None => out.push((name.clone(), value.clone())),
            }
        }
        if ask.is_empty() {
            return Ok(out);
        }
        let sql = canonical_query(ask.iter().map(|(i, v)| (out[*i].0.as_str(), v.as_str())));
        let mut lease = self.acquire().await?;
        let rows = lease.conn.query_text(&sql).await;
        self.release(lease);
        let row = match rows {
            Ok(rows) => rows.into_iter().next().unwrap_or_default(),
            Err(UpstreamError::Rejected { code, message }) => {
                return Err(SettingError::Refused { code, message })
            }
            Err(e) => return Err(e.into()),
        };
        let mut memory = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if memory.len() + ask.len() > REMEMBERED {
            memory.clear();
        }
        for ((i, sent), got) in ask.into_iter().zip(row) {
            if let Some(got) = got {
                memory.insert((out[i].0.to_ascii_lowercase(), sent), got.clone());
                out[i].1 = got;
            }
        }
        Ok(out)
    }

    fn remembered(&self, name: &str, value: &str) -> Option<String> {
        let memory = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        memory
            .get(&(name.to_ascii_lowercase(), value.to_string()))
            .cloned()
    }
}

/// One row: each setting set for the statement alone (`set_config(…, true)` in the query's
/// implicit transaction, undone when it ends) and read back as PostgreSQL now shows it.
fn canonical_query<'a>(settings: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let items: Vec<String> = settings
        .map(|(name, value)| {
            format!(
                "pg_catalog.set_config({}, {}, true)",
                quote_literal(name),
                quote_literal(value)
            )
        })
        .collect();
    format!("SELECT {}", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_set_config_per_setting_with_quoted_values() {
        let sql =
            canonical_query([("client_encoding", "euc-jp"), ("DateStyle", "iso', 'x")].into_iter());
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config('client_encoding', 'euc-jp', true), \
             pg_catalog.set_config('DateStyle', 'iso'', ''x', true)"
        );
    }
}
