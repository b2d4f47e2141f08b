//! The one place where errors become what a client sees: SQLSTATE, severity and an
//! `orgwall:`-prefixed message. Modules define their own `thiserror` enums; this file maps them.

use bytes::BytesMut;

use crate::admission::AdmissionError;
use crate::balances::drift::DriftError;
use crate::jwt::TokenError;
use crate::policy::Refusal as PolicyRefusal;
use crate::scram::ScramError;
use crate::sql::rewrite::Refusal;
use crate::upstream::{SettingError, UpstreamError};
use crate::wire::{self, WireError};

/// An error ready to be sent to a client as an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: &'static str,
    pub message: String,
    /// FATAL errors end the client's connection after being sent.
    pub fatal: bool,
}

impl ClientError {
    pub fn error(code: &'static str, message: impl std::fmt::Display) -> Self {
        ClientError {
            code,
            message: format!("orgwall: {message}"),
            fatal: false,
        }
    }

    pub fn fatal(code: &'static str, message: impl std::fmt::Display) -> Self {
        ClientError {
            fatal: true,
            ..Self::error(code, message)
        }
    }

    /// Appends the ErrorResponse to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        let sev = if self.fatal { "FATAL" } else { "ERROR" };
        wire::put_error(out, sev, self.code, &self.message);
    }

    /// The ErrorResponse as its own buffer.
    pub fn to_frame(&self) -> BytesMut {
        let mut b = BytesMut::new();
        self.write(&mut b);
        b
    }
}

/// SQLSTATE codes Orgwall produces.
pub mod code {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CANNOT_CONNECT: &str = "08001";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const INVALID_STATEMENT_NAME: &str = "26000";
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
    pub const DUPLICATE_CURSOR: &str = "42P03";
    pub const UNDEFINED_DATABASE: &str = "3D000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    pub const CONFIG_FILE_ERROR: &str = "F0000";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
}

impl From<&TokenError> for ClientError {
    fn from(e: &TokenError) -> Self {
        ClientError::error(
            code::INSUFFICIENT_PRIVILEGE,
            format!("tenant token rejected: {e}"),
        )
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::fatal(code::PROTOCOL_VIOLATION, format!("invalid message: {e}"))
    }
}

/// A message from PostgreSQL longer than `max_message_bytes`: the session ends, its server
/// connection closed mid-answer (the message is never buffered whole).
pub fn answer_too_large(e: &WireError) -> ClientError {
    ClientError::fatal(
        code::PROGRAM_LIMIT_EXCEEDED,
        format!("an answer from PostgreSQL is too large: {e} (max_message_bytes)"),
    )
}

impl From<&UpstreamError> for ClientError {
    fn from(e: &UpstreamError) -> Self {
        match e {
            UpstreamError::PoolTimeout(_) | UpstreamError::TenantCap { .. } => ClientError::error(
                code::TOO_MANY_CONNECTIONS,
                format!("no PostgreSQL connection available: {e}"),
            ),
            // What went wrong upstream (a wrong password, the upstream role's name, a host) is
            // the operator's business: it is in the log, the client gets a generic error.
            _ => upstream_unavailable(),
        }
    }
}

/// `08006 orgwall: upstream unavailable`: PostgreSQL cannot be reached or refused Orgwall's
/// login; the reason is logged, never shown to clients.
pub fn upstream_unavailable() -> ClientError {
    ClientError::error(code::CONNECTION_FAILURE, "upstream unavailable")
}

impl From<&crate::admin::reload::ReloadError> for ClientError {
    fn from(e: &crate::admin::reload::ReloadError) -> Self {
        ClientError::error(
            code::CONFIG_FILE_ERROR,
            format!("RELOAD: {e}; the running config stays"),
        )
    }
}

/// A startup setting PostgreSQL refused: the login fails as PostgreSQL would fail it, with
/// its SQLSTATE (the codes `set_config` raises) and its message.
impl From<&SettingError> for ClientError {
    fn from(e: &SettingError) -> Self {
        match e {
            SettingError::Upstream(u) => ClientError {
                fatal: true,
                ..ClientError::from(u)
            },
            SettingError::Refused { code: c, message } => {
                let code = match c.as_str() {
                    "42704" => code::UNDEFINED_OBJECT,
                    "55P02" => code::CANT_CHANGE_RUNTIME_PARAM,
                    "42501" => code::INSUFFICIENT_PRIVILEGE,
                    _ => code::INVALID_PARAMETER_VALUE,
                };
                ClientError::fatal(code, format!("startup setting refused: {message}"))
            }
        }
    }
}

impl From<&AdmissionError> for ClientError {
    fn from(e: &AdmissionError) -> Self {
        // Like PostgreSQL's own refusals: the connection ends.
        ClientError::fatal(code::TOO_MANY_CONNECTIONS, e)
    }
}

impl From<&crate::boundary::WallError> for ClientError {
    fn from(e: &crate::boundary::WallError) -> Self {
        use crate::boundary::WallError;
        match e {
            WallError::Connect(u) => ClientError {
                fatal: true,
                ..ClientError::from(u)
            },
            WallError::Unreachable => ClientError {
                fatal: true,
                ..upstream_unavailable()
            },
            WallError::Unsafe(_) => ClientError::fatal(
                code::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("tenant logins are refused: {e}"),
            ),
        }
    }
}

impl From<&DriftError> for ClientError {
    fn from(e: &DriftError) -> Self {
        match e {
            DriftError::Upstream(u) => {
                let inner = ClientError::from(u);
                ClientError::error(inner.code, format!("balance drift check: {e}"))
            }
            _ => ClientError::error(
                code::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("balance drift check: {e}"),
            ),
        }
    }
}

impl From<Refusal> for ClientError {
    fn from(r: Refusal) -> Self {
        let code = match r.code {
            "42601" => "42601",
            "0A000" => code::FEATURE_NOT_SUPPORTED,
            "54001" => code::STATEMENT_TOO_COMPLEX,
            _ => code::INSUFFICIENT_PRIVILEGE,
        };
        ClientError::error(code, r.message)
    }
}

impl From<PolicyRefusal> for ClientError {
    fn from(r: PolicyRefusal) -> Self {
        // The code is the plugin's (validated, interned) SQLSTATE.
        ClientError::error(r.code, r.message)
    }
}

impl From<ScramError> for ClientError {
    fn from(_: ScramError) -> Self {
        // Never say which part failed: it would help a password guesser.
        ClientError::fatal(code::INVALID_PASSWORD, "password authentication failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_prefixed_and_carry_the_code() {
        let e = ClientError::error(code::FEATURE_NOT_SUPPORTED, "LISTEN needs session pooling");
        let frame = e.to_frame();
        assert_eq!(wire::error_code(&frame), Some("0A000"));
        assert!(e.message.starts_with("orgwall: "));
        let f: ClientError = WireError::BadLength(-1).into();
        assert!(f.fatal);
        assert_eq!(f.code, "08P01");
    }
}
