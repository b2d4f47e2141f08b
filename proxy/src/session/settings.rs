//! Client settings that must follow the client across pooled server connections: those from its
//! startup packet and its session-level `SET`s. They are replayed on a server connection (after
//! `RESET ALL`) whenever that connection last served different settings. A switcher's tenant
//! binding (`SET orgwall.*`) is tracked here too, under the same commit / rollback / savepoint
//! rules, but never replayed: PostgreSQL never sees it.

use std::hash::{Hash, Hasher};

use super::tenant::Binding;
use crate::sql::quote_literal;
use crate::sql::SessionEffect;

/// The settings one client expects every server connection to have.
#[derive(Debug, Default)]
pub struct Settings {
    /// From the startup packet, applied with `set_config` (raw values, as libpq sends them).
    startup: Vec<(String, String)>,
    /// Session-level `SET name TO value`, replayed as written.
    session: Vec<(String, String)>,
    /// `session` as of the last commit: what a rollback returns to.
    committed: Vec<(String, String)>,
    fingerprint: u64,
    /// The switcher's tenant binding now.
    tenant: Tenant,
    /// The session-level binding as of the last commit.
    committed_tenant: Option<Binding>,
}

/// A switcher's tenant binding: `SET [SESSION] orgwall.*` and `SET LOCAL orgwall.*` (which
/// wins until its transaction ends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tenant {
    session: Option<Binding>,
    local: Option<Binding>,
}

/// The settings and tenant binding as they were at a savepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    session: Vec<(String, String)>,
    tenant: Tenant,
}

/// Marks a server connection whose settings are no longer known.
pub const DIRTY: u64 = u64::MAX;

impl Settings {
    pub fn new(startup: Vec<(String, String)>) -> Settings {
        let mut s = Settings {
            startup,
            ..Settings::default()
        };
        s.refresh();
        s
    }

    /// Whether the client's SQL text arrives as UTF-8: its `client_encoding` (the session's
    /// `SET`, else the startup packet's) is UTF8 or was never set (Orgwall's databases are
    /// UTF8). PostgreSQL reads the spellings `utf8`, `UTF-8`, `unicode` … alike.
    pub fn client_text_is_utf8(&self) -> bool {
        let named = |list: &[(String, String)]| {
            list.iter()
                .rev()
                .find(|(n, _)| n.eq_ignore_ascii_case("client_encoding"))
                .map(|(_, v)| v.clone())
        };
        named(&self.session)
            .or_else(|| named(&self.startup))
            .is_none_or(|v| {
                let folded: String = v
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_ascii_lowercase();
                matches!(folded.as_str(), "utf8" | "unicode" | "default")
            })
    }

    /// A fingerprint of the settings; 0 when there are none (server defaults).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn refresh(&mut self) {
        self.fingerprint = if self.startup.is_empty() && self.session.is_empty() {
            0
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.startup.hash(&mut h);
            self.session.hash(&mut h);
            h.finish().clamp(1, DIRTY - 1)
        };
    }

    /// Records a session effect that PostgreSQL has just confirmed.
    pub fn apply(&mut self, effect: &SessionEffect) {
        match effect {
            SessionEffect::Set { name, value } => {
                self.session.retain(|(n, _)| n != name);
                self.session.push((name.clone(), value.clone()));
            }
            SessionEffect::Reset { name } => self.session.retain(|(n, _)| n != name),
            SessionEffect::ResetAll => self.session.clear(),
            SessionEffect::Pinned(_)
            | SessionEffect::SetParam { .. }
            | SessionEffect::SetNamedParam { .. }
            | SessionEffect::Savepoint(_)
            | SessionEffect::RollbackTo(_)
            | SessionEffect::Release(_) => return,
        }
        self.refresh();
    }

    /// Whether PostgreSQL, confirming `effect`, dropped a startup-packet setting that it would
    /// have kept had the client connected directly (there `RESET` returns to the startup
    /// packet's value; on a pooled connection, to the server's default).
    pub fn resets_startup(&self, effect: &SessionEffect) -> bool {
        match effect {
            SessionEffect::ResetAll => !self.startup.is_empty(),
            SessionEffect::Reset { name } => self
                .startup
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name)),
            _ => false,
        }
    }

    /// The transaction the effects since the last commit ran in committed (`COMMIT`, or an
    /// implicit transaction that ended without error); a `SET LOCAL` binding ends with it.
    pub fn commit(&mut self) {
        if self.committed != self.session {
            self.committed.clone_from(&self.session);
        }
        if self.committed_tenant != self.tenant.session {
            self.committed_tenant.clone_from(&self.tenant.session);
        }
        self.tenant.local = None;
    }

    /// The session-level settings and binding now, for a savepoint to return to.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            session: self.session.clone(),
            tenant: self.tenant.clone(),
        }
    }

    /// A rollback to a savepoint taken with [`Settings::snapshot`].
    pub fn restore(&mut self, snapshot: &Snapshot) {
        if self.session != snapshot.session {
            self.session.clone_from(&snapshot.session);
            self.refresh();
        }
        self.tenant.clone_from(&snapshot.tenant);
    }

    /// It rolled back (`ROLLBACK`, an error): PostgreSQL undid its `SET`s and `RESET`s, so do
    /// we, `orgwall.*` ones included.
    pub fn rollback(&mut self) {
        if self.committed != self.session {
            self.session.clone_from(&self.committed);
            self.refresh();
        }
        self.tenant = Tenant {
            session: self.committed_tenant.clone(),
            local: None,
        };
    }

    /// `SET [LOCAL] orgwall.*` (`binding`) or `RESET orgwall.*` (`None`), applied now; it
    /// commits or rolls back with the transaction it ran in. A session-level one replaces a
    /// `SET LOCAL` of the same transaction, as in PostgreSQL.
    pub fn bind_tenant(&mut self, binding: Option<Binding>, local: bool) {
        if local {
            self.tenant.local = binding;
        } else {
            self.tenant = Tenant {
                session: binding,
                local: None,
            };
        }
    }

    /// The tenant binding in force (the transaction's `SET LOCAL` first).
    pub fn tenant(&self) -> Option<&Binding> {
        self.tenant.local.as_ref().or(self.tenant.session.as_ref())
    }

    /// Whether ending the transaction, or rolling back to one of `savepoints`, would leave the
    /// tenant binding as it is.
    pub fn tenant_settled<'a>(&self, mut savepoints: impl Iterator<Item = &'a Snapshot>) -> bool {
        self.tenant.local.is_none()
            && self.tenant.session == self.committed_tenant
            && savepoints.all(|s| s.tenant == self.tenant)
    }

    /// Whether statements run at REPEATABLE READ or SERIALIZABLE by default (a snapshot the
    /// balance cache cannot stand in for).
    pub fn strict_isolation(&self) -> bool {
        self.startup.iter().chain(&self.session).any(|(k, v)| {
            k.eq_ignore_ascii_case("default_transaction_isolation") && {
                let v = v.to_ascii_lowercase();
                v.contains("repeatable") || v.contains("serializable")
            }
        })
    }

    /// The SQL that brings a server connection to these settings (one simple Query).
    pub fn replay_sql(&self) -> String {
        let mut sql = String::new();
        for statement in self.replay_statements() {
            sql.push_str(&statement);
            sql.push(';');
        }
        sql
    }

    /// The statements that bring a server connection to these settings, one by one:
    /// `RESET ALL`, then each setting.
    pub fn replay_statements(&self) -> Vec<String> {
        let mut out = vec!["RESET ALL".to_string()];
        for (k, v) in &self.startup {
            out.push(format!(
                "SELECT pg_catalog.set_config({}, {}, false)",
                quote_literal(k),
                quote_literal(v)
            ));
        }
        for (k, v) in &self.session {
            if k == "timezone" {
                // The one form that takes every value `SET TIME ZONE` does (an INTERVAL too).
                out.push(format!("SET TIME ZONE {v}"));
            } else {
                out.push(format!("SET {k} TO {v}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_encoding_decides_whether_text_is_utf8() {
        let startup = |v: &str| Settings::new(vec![("client_encoding".into(), v.into())]);
        assert!(Settings::new(vec![]).client_text_is_utf8());
        assert!(startup("UTF-8").client_text_is_utf8());
        assert!(startup("'unicode'").client_text_is_utf8());
        assert!(!startup("euc_jp").client_text_is_utf8());
        let mut s = startup("utf8");
        s.apply(&SessionEffect::Set {
            name: "client_encoding".into(),
            value: "latin9".into(),
        });
        assert!(!s.client_text_is_utf8());
        s.apply(&SessionEffect::Reset {
            name: "client_encoding".into(),
        });
        assert!(s.client_text_is_utf8());
    }

    #[test]
    fn a_rollback_undoes_what_the_transaction_set() {
        let set = |v: &str| SessionEffect::Set {
            name: "statement_timeout".into(),
            value: v.into(),
        };
        let mut s = Settings::new(vec![]);
        s.apply(&set("'1s'"));
        s.commit();
        let committed = s.fingerprint();
        s.apply(&set("'2s'"));
        s.apply(&SessionEffect::Reset {
            name: "statement_timeout".into(),
        });
        s.rollback();
        assert_eq!(s.fingerprint(), committed);
        assert_eq!(s.replay_sql(), "RESET ALL;SET statement_timeout TO '1s';");
        s.apply(&SessionEffect::ResetAll);
        s.commit();
        s.rollback();
        assert_eq!(s.fingerprint(), 0);
    }

    #[test]
    fn tenant_bindings_follow_transactions_and_savepoints() {
        let b = |org: &str| {
            Some(Binding {
                org: org.into(),
                expires: None,
            })
        };
        let org = |s: &Settings| s.tenant().map(|b| b.org.clone());
        let mut s = Settings::new(vec![]);
        // Outside a transaction: applied and committed at once.
        s.bind_tenant(b("a"), false);
        s.commit();
        assert!(s.tenant_settled(std::iter::empty()));
        // BEGIN; SET b; ROLLBACK
        s.bind_tenant(b("b"), false);
        assert!(!s.tenant_settled(std::iter::empty()));
        s.rollback();
        assert_eq!(org(&s).as_deref(), Some("a"));
        // BEGIN; SET b; COMMIT
        s.bind_tenant(b("b"), false);
        s.commit();
        assert_eq!(org(&s).as_deref(), Some("b"));
        // BEGIN; SET LOCAL a; COMMIT: the session binding is back.
        s.bind_tenant(b("a"), true);
        assert_eq!(org(&s).as_deref(), Some("a"));
        assert!(!s.tenant_settled(std::iter::empty()));
        s.commit();
        assert_eq!(org(&s).as_deref(), Some("b"));
        // BEGIN; SAVEPOINT p; SET LOCAL a; RESET; ROLLBACK TO p: back to b; SET a; RELEASE
        let at_p = s.snapshot();
        s.bind_tenant(b("a"), true);
        s.bind_tenant(None, false);
        assert_eq!(org(&s), None);
        assert!(!s.tenant_settled([&at_p].into_iter()));
        s.restore(&at_p);
        assert_eq!(org(&s).as_deref(), Some("b"));
        assert!(s.tenant_settled([&at_p].into_iter()));
        s.bind_tenant(b("a"), false);
        s.commit();
        assert_eq!(org(&s).as_deref(), Some("a"));
        // Tenant bindings are never replayed on a server connection.
        assert_eq!(s.fingerprint(), 0);
        assert_eq!(s.replay_sql(), "RESET ALL;");
    }

    #[test]
    fn resets_of_startup_settings_are_recognised() {
        let reset = |n: &str| SessionEffect::Reset { name: n.into() };
        let s = Settings::new(vec![("application_name".into(), "app".into())]);
        assert!(s.resets_startup(&SessionEffect::ResetAll));
        assert!(s.resets_startup(&reset("application_name")));
        assert!(s.resets_startup(&reset("Application_Name")));
        assert!(!s.resets_startup(&reset("statement_timeout")));
        let set = SessionEffect::Set {
            name: "application_name".into(),
            value: "'x'".into(),
        };
        assert!(!s.resets_startup(&set));
        assert!(!Settings::new(vec![]).resets_startup(&SessionEffect::ResetAll));
    }

    #[test]
    fn strict_isolation_from_startup_or_session() {
        let mut s = Settings::new(vec![]);
        assert!(!s.strict_isolation());
        s.apply(&SessionEffect::Set {
            name: "default_transaction_isolation".into(),
            value: "'SERIALIZABLE'".into(),
        });
        assert!(s.strict_isolation());
        s.apply(&SessionEffect::ResetAll);
        assert!(!s.strict_isolation());
        let s = Settings::new(vec![(
            "default_transaction_isolation".into(),
            "repeatable read".into(),
        )]);
        assert!(s.strict_isolation());
    }

    #[test]
    fn replay_sql_resets_then_applies_startup_and_session_settings() {
        let mut s = Settings::new(vec![("application_name".into(), "it's".into())]);
        let f0 = s.fingerprint();
        assert_ne!(f0, 0);
        s.apply(&SessionEffect::Set {
            name: "statement_timeout".into(),
            value: "'5s'".into(),
        });
        s.apply(&SessionEffect::Set {
            name: "statement_timeout".into(),
            value: "'6s'".into(),
        });
        assert_eq!(
            s.replay_sql(),
            "RESET ALL;SELECT pg_catalog.set_config('application_name', 'it''s', false);SET statement_timeout TO '6s';"
        );
        s.apply(&SessionEffect::Set {
            name: "timezone".into(),
            value: "INTERVAL '+00:00' HOUR TO MINUTE".into(),
        });
        assert!(s
            .replay_sql()
            .ends_with(";SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE;"));
        s.apply(&SessionEffect::ResetAll);
        assert_eq!(s.fingerprint(), f0);
        assert_eq!(Settings::new(vec![]).fingerprint(), 0);
    }
}
