//! A statement the client prepared: its SQL as PostgreSQL gets it, the name it has on every
//! server connection (derived from the SQL, so clients share it; an admin's in session pooling
//! keeps the client's own), how it may share a connection, and the tenant it was rendered for.

use std::hash::{Hash, Hasher};

use super::route::Rendered;
use super::shared::Sharing;
use crate::sql::SessionEffect;

/// A statement the client prepared, by the client's name.
#[derive(Debug)]
pub(super) struct Statement {
    pub(super) sql: String,
    /// The SQL as sent, when in a client encoding other than UTF-8 (`sql` is then a lossy
    /// reading of it; see `Statement::with_raw_sql`).
    pub(super) raw_sql: Option<Vec<u8>>,
    pub(super) types: Vec<u32>,
    pub(super) hash: u64,
    /// Name on every server connection (derived from the SQL, so clients share them).
    pub(super) server_name: String,
    /// How it may use a multiplexed connection.
    pub(super) sharing: Sharing,
    /// Running it may write the ledger or `inventory_balances` (`balances::names_ledger`,
    /// read-your-writes).
    pub(super) writes_ledger: bool,
    pub(super) effect: Option<SessionEffect>,
    /// The tenant and template this statement was rendered with (tenant/switcher logins).
    pub(super) tenant: Option<Rendered>,
    /// `EXECUTE other` in its SQL, mapped to `other`'s server name: the client's statement
    /// `other` must be prepared on whichever connection runs this one.
    pub(super) executes: Option<String>,
}

impl Statement {
    pub(super) fn new(
        sql: String,
        types: Vec<u32>,
        effect: Option<SessionEffect>,
        tenant: Option<Rendered>,
        sharing: Sharing,
    ) -> Statement {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&sql, &types).hash(&mut h);
        let hash = h.finish();
        Statement {
            server_name: format!("{SERVER_NAME_PREFIX}{hash:016x}"),
            sharing,
            writes_ledger: crate::balances::names_ledger(&sql),
            sql,
            raw_sql: None,
            executes: None,
            types,
            hash,
            effect,
            tenant,
        }
    }
}

/// How Orgwall's own server-side statement names begin (the rest is a hash of the SQL).
const SERVER_NAME_PREFIX: &str = "orgwall_";

/// A server-side statement name of Orgwall's (not a client's own, see `keeping_client_name`).
pub(super) fn is_orgwall_name(name: &str) -> bool {
    name.starts_with(SERVER_NAME_PREFIX)
}

impl Statement {
    /// With session pooling an admin's named statement keeps the client's name on the server
    /// connection, which is the client's alone: `pg_prepared_statements`, `EXECUTE name` and
    /// `DEALLOCATE name` see what the client prepared, as on PostgreSQL. (Orgwall's names could
    /// be mistaken for the client's, so a client name with their prefix is still renamed.) A
    /// session-pooled server connection is closed when its session ends, never reused.
    pub(super) fn keeping_client_name(mut self, client_name: &str) -> Statement {
        if !client_name.is_empty() && !client_name.starts_with(SERVER_NAME_PREFIX) {
            self.server_name = client_name.to_string();
        }
        self
    }

    /// SQL the client sent in a client encoding other than UTF-8 (admin logins): `sql` is a
    /// lossy UTF-8 reading of it for Orgwall's own classification, `raw` what PostgreSQL gets,
    /// and the server name is derived from `raw` (two texts with the same lossy reading must
    /// not share a statement).
    pub(super) fn with_raw_sql(mut self, raw: Vec<u8>) -> Statement {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&raw, &self.types).hash(&mut h);
        self.hash = h.finish();
        self.server_name = format!("{SERVER_NAME_PREFIX}{:016x}", self.hash);
        self.raw_sql = Some(raw);
        self
    }

    /// The statement is prepared on the server under the client's own name.
    pub(super) fn has_client_name(&self) -> bool {
        !is_orgwall_name(&self.server_name)
    }
}
