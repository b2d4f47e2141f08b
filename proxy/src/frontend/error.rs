//! Why a handshake ends without a login, and what the client is told (always FATAL: nothing
//! before `ReadyForQuery` can be retried on the same connection).

use crate::admission::AdmissionError;
use crate::boundary::WallError;
use crate::errors::{code, ClientError, UserFacing};
use crate::scram::ScramError;
use crate::upstream::{SettingError, UpstreamError};
use crate::wire::WireError;

/// Why a handshake ended without a login.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("authentication: {0}")]
    Scram(#[from] ScramError),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    Refused(#[from] LoginRefused),
    /// The second wall is not known to stand: tenant and switcher logins wait for it.
    #[error("{0}")]
    Wall(WallError),
    /// No server connection to read the greeting's parameters from.
    #[error("greeting: {0}")]
    Greeting(UpstreamError),
    #[error("{0}")]
    Setting(SettingError),
    #[error("client closed the connection")]
    Closed,
    #[error("handshake timed out")]
    Timeout,
    #[error("{0}")]
    Admission(AdmissionError),
}

/// A login refused for what the client sent, as PostgreSQL refuses one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefused {
    #[error("SSL connection is required (use sslmode=require)")]
    TlsRequired,
    #[error("no user name in startup packet")]
    NoUser,
    #[error("replication connections are not supported")]
    Replication,
    #[error("password authentication failed for user \"{0}\"")]
    Password(String),
    #[error("password authentication failed")]
    NoSuchUser,
    #[error("database \"{0}\" does not exist")]
    NoDatabase(String),
    /// `options=` that cannot be read as PostgreSQL reads it.
    #[error("{0}")]
    Options(String),
    /// A startup setting outside the allow-list for the login's role.
    #[error("{0}")]
    Setting(String),
}

impl UserFacing for LoginRefused {
    fn sqlstate(&self) -> &'static str {
        match self {
            LoginRefused::TlsRequired | LoginRefused::NoUser => code::INVALID_AUTHORIZATION,
            LoginRefused::Replication | LoginRefused::Options(_) => code::FEATURE_NOT_SUPPORTED,
            LoginRefused::Password(_) | LoginRefused::NoSuchUser => code::INVALID_PASSWORD,
            LoginRefused::NoDatabase(_) => code::UNDEFINED_DATABASE,
            LoginRefused::Setting(_) => code::INSUFFICIENT_PRIVILEGE,
        }
    }
    fn fatal(&self) -> bool {
        true
    }
    fn client_message(&self) -> String {
        self.to_string()
    }
}

impl FrontendError {
    /// How `/metrics` counts a handshake Orgwall refused (`clients_refused`'s reason); `None`
    /// for one the client ended.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            FrontendError::Timeout => Some("startup_timeout"),
            FrontendError::Refused(LoginRefused::Password(_) | LoginRefused::NoSuchUser) => {
                Some("authentication")
            }
            FrontendError::Admission(_) => Some("connection_limit"),
            FrontendError::Refused(_)
            | FrontendError::Wall(_)
            | FrontendError::Greeting(_)
            | FrontendError::Setting(_) => Some("refused"),
            _ => None,
        }
    }

    /// What the client is told before its connection closes (`None`: it is gone, or its TLS
    /// failed). Every one is FATAL.
    pub(super) fn client_error(&self) -> Option<ClientError> {
        let e = match self {
            FrontendError::Refused(e) => e.to_client(),
            FrontendError::Wall(e) => e.to_client(),
            FrontendError::Greeting(e) => e.to_client(),
            FrontendError::Setting(e) => e.to_client(),
            FrontendError::Scram(e) => e.to_client(),
            FrontendError::Wire(e) => e.to_client(),
            FrontendError::Timeout => {
                ClientError::fatal(code::PROTOCOL_VIOLATION, "handshake timed out")
            }
            FrontendError::Admission(e) => e.to_client(),
            FrontendError::Io(_) | FrontendError::Tls(_) | FrontendError::Closed => return None,
        };
        Some(ClientError { fatal: true, ..e })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every handshake error a client is told of is FATAL, with PostgreSQL's code for it, and
    /// counted under its reason.
    #[test]
    fn login_refusals_are_fatal_with_postgresqls_code() {
        let cases = [
            (LoginRefused::TlsRequired.into(), "28000", "refused"),
            (LoginRefused::NoUser.into(), "28000", "refused"),
            (LoginRefused::Replication.into(), "0A000", "refused"),
            (
                LoginRefused::Password("u".into()).into(),
                "28P01",
                "authentication",
            ),
            (LoginRefused::NoSuchUser.into(), "28P01", "authentication"),
            (
                LoginRefused::NoDatabase("d".into()).into(),
                "3D000",
                "refused",
            ),
            (
                LoginRefused::Options("bad".into()).into(),
                "0A000",
                "refused",
            ),
            (
                LoginRefused::Setting("no".into()).into(),
                "42501",
                "refused",
            ),
            (
                FrontendError::Greeting(UpstreamError::Closed),
                "08006",
                "refused",
            ),
            (
                FrontendError::Wall(WallError::Unsafe("x".into())),
                "55000",
                "refused",
            ),
            (FrontendError::Timeout, "08P01", "startup_timeout"),
            (
                FrontendError::Admission(AdmissionError::Full),
                "53300",
                "connection_limit",
            ),
        ];
        for (e, code, reason) in cases {
            let c = e.client_error().expect("told to the client");
            assert_eq!((c.code, c.fatal), (code, true), "{e:?}");
            assert!(c.message.starts_with("orgwall: "), "{e:?}");
            assert_eq!(e.refusal(), Some(reason), "{e:?}");
        }
        let told = |e: FrontendError| e.client_error().map(|c| c.message);
        assert_eq!(
            told(LoginRefused::Password("u".into()).into()).as_deref(),
            Some("orgwall: password authentication failed for user \"u\"")
        );
        assert_eq!(
            told(FrontendError::Greeting(UpstreamError::Closed)).as_deref(),
            Some("orgwall: upstream unavailable"),
            "an upstream's reason stays in the log"
        );
        assert_eq!(told(FrontendError::Closed), None);
    }
}
