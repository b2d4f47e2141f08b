//! Shared server-side statements versus DDL. A statement Orgwall prepared under its own name
//! (`orgwall_<hash of SQL and types>`) is reused by every client that sends the same SQL, so
//! it can outlive a type or table it was planned against: after `DROP TYPE t; CREATE TYPE t`
//! its parameter types name an OID that no longer exists ("cache lookup failed for type"),
//! where a client on PostgreSQL alone would have prepared it afresh. So every DDL a client runs
//! through Orgwall bumps one epoch (`ProxyState::ddl_epoch`), again when its transaction ends
//! (another session may have prepared against the old catalog meanwhile), and a server
//! connection whose statements predate the epoch has Orgwall's statements closed before its
//! next use. Statements under a client's own name (session pooling) are the client's, as on
//! PostgreSQL, and stay. DDL that bypasses Orgwall is not seen; on a multiplexed connection,
//! where another client's batch may be using them, nothing is closed.

use std::sync::atomic::Ordering;

use super::{ClientIo, Session};

/// Command tags of statements that can change what a prepared statement was planned against.
fn is_ddl(tag: &str) -> bool {
    ["CREATE ", "DROP ", "ALTER ", "IMPORT FOREIGN SCHEMA"]
        .iter()
        .any(|p| tag.starts_with(p))
}

impl<S: ClientIo> Session<'_, S> {
    /// A CommandComplete with `tag` arrived for this client.
    pub(super) fn note_command(&mut self, tag: &str) {
        if is_ddl(tag) {
            self.ddl_in_transaction = true;
            self.bump_ddl_epoch();
        }
    }

    /// The client's transaction ended (ReadyForQuery idle): DDL in it is visible to all now.
    pub(super) fn ddl_settled(&mut self) {
        if std::mem::take(&mut self.ddl_in_transaction) {
            self.bump_ddl_epoch();
        }
    }

    fn bump_ddl_epoch(&self) {
        self.state.ddl_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Before the held server connection runs anything of this client's: closes Orgwall's own
    /// statements there if DDL ran since they were prepared (the unnamed statement is parsed
    /// again too).
    pub(super) fn drop_outdated_statements(&mut self) {
        let epoch = self.state.ddl_epoch.load(Ordering::Acquire);
        let Some(lease) = self.server.as_mut() else {
            return;
        };
        let prepared = lease.conn.statements();
        if !prepared.outdated_by(epoch) || prepared.is_shared() {
            return;
        }
        let stale = prepared.take_where(super::statement::is_orgwall_name);
        lease.conn.unnamed_dropped();
        if !stale.is_empty() {
            tracing::debug!(
                statements = stale.len(),
                "closing statements prepared before DDL"
            );
        }
        for name in stale {
            self.put_close(Some(name.clone()), Some(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_ddl;

    #[test]
    fn ddl_tags() {
        for (tag, ddl) in [
            ("CREATE TABLE", true),
            ("DROP TYPE", true),
            ("ALTER TABLE", true),
            ("CREATE INDEX", true),
            ("IMPORT FOREIGN SCHEMA", true),
            ("SELECT 1", false),
            ("INSERT 0 1", false),
            ("DEALLOCATE ALL", false),
            ("CREATED", false),
        ] {
            assert_eq!(is_ddl(tag), ddl, "{tag}");
        }
    }
}
