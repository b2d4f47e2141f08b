//! How errors reach a client. Each module's `thiserror` enum implements [`UserFacing`] next to
//! its variants (its SQLSTATE, whether the connection ends, the message a client may read);
//! [`ClientError`] is what they become: an `orgwall:`-prefixed ErrorResponse.
//!
//! A leaf module: it imports nothing of the crate, so every module may depend on it (neon's
//! proxy splits it the same way, `ReportableError`/`UserFacingError` beside each error type).

use bytes::BytesMut;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::Message;

/// How an error reaches a client. Implemented beside each error type, so the SQLSTATE a
/// variant earns is picked where the variant is defined, once.
pub trait UserFacing {
    /// The SQLSTATE the client sees.
    fn sqlstate(&self) -> &'static str;

    /// Whether the connection ends after the error (`FATAL`), or only the statement (`ERROR`).
    fn fatal(&self) -> bool {
        false
    }

    /// What follows `orgwall: ` in the message: only what a client may know (an upstream's
    /// host or login failure, for instance, stays in the log).
    fn client_message(&self) -> String;

    /// The ErrorResponse-ready error.
    fn to_client(&self) -> ClientError {
        ClientError {
            code: self.sqlstate(),
            message: format!("orgwall: {}", self.client_message()),
            fatal: self.fatal(),
        }
    }
}

impl<T: UserFacing + ?Sized> UserFacing for &T {
    fn sqlstate(&self) -> &'static str {
        (**self).sqlstate()
    }
    fn fatal(&self) -> bool {
        (**self).fatal()
    }
    fn client_message(&self) -> String {
        (**self).client_message()
    }
}

/// Any error that says how it reaches a client becomes a [`ClientError`] by `?` or `from`,
/// owned or borrowed.
impl<E: UserFacing> From<E> for ClientError {
    fn from(e: E) -> Self {
        e.to_client()
    }
}

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
        put_error(out, sev, self.code, &self.message);
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

/// The SQLSTATE-carrying fields of an ErrorResponse or NoticeResponse.
pub fn error_fields(severity: &str, code: &str, message: &str) -> Vec<(u8, String)> {
    vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
    ]
}

/// Appends an ErrorResponse (the one message this module encodes itself, so that it needs
/// nothing of `wire`, which sits above it).
pub fn put_error(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    let e = ErrorResponse::new(error_fields(severity, code, message));
    if let Err(e) = e.encode(out) {
        tracing::error!(error = %e, "failed to encode an ErrorResponse");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error type as a module would write it.
    struct Shut;

    impl UserFacing for Shut {
        fn sqlstate(&self) -> &'static str {
            code::ADMIN_SHUTDOWN
        }
        fn fatal(&self) -> bool {
            true
        }
        fn client_message(&self) -> String {
            "shutting down".into()
        }
    }

    #[test]
    fn messages_are_prefixed_and_carry_the_code() {
        let e = ClientError::error(code::FEATURE_NOT_SUPPORTED, "LISTEN needs session pooling");
        let frame = e.to_frame();
        assert_eq!(frame[0], b'E');
        let fields = &frame[5..];
        assert!(fields.windows(7).any(|w| w == b"C0A000\0"));
        assert!(fields.windows(6).any(|w| w == b"SERROR"));
        assert!(e.message.starts_with("orgwall: "));
        let f = ClientError::from(&Shut);
        assert_eq!(
            f,
            ClientError::fatal(code::ADMIN_SHUTDOWN, "shutting down"),
            "the trait's parts make the same error as the constructors"
        );
        assert!(f.to_frame().windows(6).any(|w| w == b"SFATAL"));
    }
}
