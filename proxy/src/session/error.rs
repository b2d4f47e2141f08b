//! What a session refuses or ends a client with on its own account (statements it answers,
//! timeouts, shutdown, a lost or tripped server connection, a tenant statement refused on its
//! way to the SQL layer), each with its SQLSTATE.
//! Refusals from the layers below carry their own (`UserFacing` beside their types).

use crate::errors::{code, UserFacing};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("{0} is only for admin logins")]
    AdminOnly(String),
    #[error("prepared statement \"{0}\" already exists")]
    DuplicateStatement(String),
    #[error("prepared statement \"{0}\" does not exist")]
    UnknownStatement(String),
    #[error("unnamed prepared statement does not exist")]
    UnknownUnnamed,
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    #[error("invalid byte sequence for encoding \"UTF8\"")]
    NotUtf8,
    /// The server connection failed mid-transaction (FATAL).
    #[error("lost the connection to PostgreSQL; the current transaction was aborted")]
    ServerLost,
    /// A connection could not be brought to the session's settings (the previous holder's
    /// settings failed the restore, twice); the statement is refused, the session goes on.
    #[error("could not bring a server connection to this session's settings; retry")]
    SettingsNotRestored,
    /// Setting the tenant context failed where the client's messages would run without it
    /// (FATAL).
    #[error("could not set the tenant context on the server connection")]
    ContextNotSet,
    /// The tripwire: PostgreSQL reported a setting Orgwall never sets for a tenant (FATAL).
    #[error("the server connection reported {name} = {value}, which Orgwall never sets for a tenant; the session is closed")]
    Tripwire { name: String, value: String },
    /// Draining, and this client is idle (FATAL).
    #[error("the proxy is shutting down")]
    ShuttingDown,
    /// The drain timed out (FATAL).
    #[error("terminating connection: the proxy is shutting down")]
    Terminated,
    #[error("terminating connection due to idle-session timeout")]
    IdleSession,
    #[error("terminating connection due to idle-in-transaction timeout")]
    IdleInTransaction,
    // A tenant's statement refused on its way to the SQL layer (`route.rs`, `local/`).
    #[error(
        "statement is {len} bytes; tenants may send at most {max} ([tenancy] max_statement_bytes)"
    )]
    TooLong { len: usize, max: usize },
    #[error("this statement reads differently to Orgwall's lexer and its parser; refused")]
    ReadsDifferently,
    #[error("{0} cannot be used with transaction pooling (pool_mode = \"session\" allows it)")]
    NeedsSessionPooling(&'static str),
    #[error("the tenant token has expired: SET orgwall.tenant_token to a fresh token (or RESET orgwall.tenant_token)")]
    TokenExpired,
    #[error("no tenant is bound: SET orgwall.org_id or orgwall.tenant_token first")]
    NoTenant,
    #[error("portal \"{0}\" was bound for another tenant; bind it again")]
    PortalOfAnotherTenant(String),
    /// A Bind parameter (`$n`, never its value) supplies another tenant's id.
    #[error("parameter ${0} supplies the tenant column and must be the session's tenant")]
    TenantParameter(usize),
    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),
    /// A prepared tenant COPY FROM whose text, routed again at Execute, is no longer one
    /// (`copy_in.rs`: a policy plugin or the catalog changed in between).
    #[error("this COPY statement no longer routes as a tenant COPY; prepare it again")]
    CopyNoLongerRoutes,
}

impl UserFacing for SessionError {
    fn sqlstate(&self) -> &'static str {
        use SessionError as E;
        match self {
            E::AdminOnly(_)
            | E::Tripwire { .. }
            | E::TokenExpired
            | E::NoTenant
            | E::PortalOfAnotherTenant(_)
            | E::TenantParameter(_) => code::INSUFFICIENT_PRIVILEGE,
            E::TooLong { .. } => code::PROGRAM_LIMIT_EXCEEDED,
            E::ReadsDifferently => code::SYNTAX_ERROR,
            E::NeedsSessionPooling(_) | E::CopyNoLongerRoutes => code::FEATURE_NOT_SUPPORTED,
            E::DuplicateCursor(_) => code::DUPLICATE_CURSOR,
            E::DuplicateStatement(_) => code::DUPLICATE_PREPARED_STATEMENT,
            E::UnknownStatement(_) | E::UnknownUnnamed => code::INVALID_STATEMENT_NAME,
            E::InFailedTransaction => code::IN_FAILED_SQL_TRANSACTION,
            E::NotUtf8 => code::CHARACTER_NOT_IN_REPERTOIRE,
            E::ServerLost | E::ContextNotSet | E::SettingsNotRestored => code::CONNECTION_FAILURE,
            E::ShuttingDown | E::Terminated => code::ADMIN_SHUTDOWN,
            E::IdleSession => code::IDLE_SESSION_TIMEOUT,
            E::IdleInTransaction => code::IDLE_IN_TRANSACTION_TIMEOUT,
        }
    }
    fn fatal(&self) -> bool {
        use SessionError as E;
        matches!(
            self,
            E::ServerLost
                | E::ContextNotSet
                | E::Tripwire { .. }
                | E::ShuttingDown
                | E::Terminated
                | E::IdleSession
                | E::IdleInTransaction
        )
    }
    fn client_message(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ClientError;

    /// What a client reads: PostgreSQL's code for the same condition, FATAL where the
    /// connection ends.
    #[test]
    fn each_error_reaches_the_client_with_postgresqls_code() {
        use SessionError as E;
        let cases = [
            (E::AdminOnly("RELOAD".into()), "42501", false, "RELOAD is only for admin logins"),
            (E::DuplicateStatement("s".into()), "42P05", false, "prepared statement \"s\" already exists"),
            (E::UnknownStatement("s".into()), "26000", false, "prepared statement \"s\" does not exist"),
            (E::UnknownUnnamed, "26000", false, "unnamed prepared statement does not exist"),
            (E::SettingsNotRestored, "08006", false, "could not bring a server connection to this session's settings; retry"),
            (E::InFailedTransaction, "25P02", false, "current transaction is aborted, commands ignored until end of transaction block"),
            (E::NotUtf8, "22021", false, "invalid byte sequence for encoding \"UTF8\""),
            (E::ServerLost, "08006", true, "lost the connection to PostgreSQL; the current transaction was aborted"),
            (E::ContextNotSet, "08006", true, "could not set the tenant context on the server connection"),
            (
                E::Tripwire { name: "is_superuser".into(), value: "on".into() },
                "42501",
                true,
                "the server connection reported is_superuser = on, which Orgwall never sets for a tenant; the session is closed",
            ),
            (E::ShuttingDown, "57P01", true, "the proxy is shutting down"),
            (E::Terminated, "57P01", true, "terminating connection: the proxy is shutting down"),
            (E::IdleSession, "57P05", true, "terminating connection due to idle-session timeout"),
            (E::IdleInTransaction, "25P03", true, "terminating connection due to idle-in-transaction timeout"),
            (E::CopyNoLongerRoutes, "0A000", false, "this COPY statement no longer routes as a tenant COPY; prepare it again"),
            (E::TooLong { len: 9, max: 8 }, "54000", false, "statement is 9 bytes; tenants may send at most 8 ([tenancy] max_statement_bytes)"),
            (E::ReadsDifferently, "42601", false, "this statement reads differently to Orgwall's lexer and its parser; refused"),
            (E::NeedsSessionPooling("LISTEN"), "0A000", false, "LISTEN cannot be used with transaction pooling (pool_mode = \"session\" allows it)"),
            (E::TokenExpired, "42501", false, "the tenant token has expired: SET orgwall.tenant_token to a fresh token (or RESET orgwall.tenant_token)"),
            (E::NoTenant, "42501", false, "no tenant is bound: SET orgwall.org_id or orgwall.tenant_token first"),
            (E::PortalOfAnotherTenant("p".into()), "42501", false, "portal \"p\" was bound for another tenant; bind it again"),
            (E::TenantParameter(2), "42501", false, "parameter $2 supplies the tenant column and must be the session's tenant"),
            (E::DuplicateCursor("c".into()), "42P03", false, "cursor \"c\" already exists"),
        ];
        for (e, code, fatal, message) in cases {
            let want = ClientError {
                code,
                message: format!("orgwall: {message}"),
                fatal,
            };
            assert_eq!(ClientError::from(&e), want, "{e:?}");
        }
    }
}
