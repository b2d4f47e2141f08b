//! Why a server connection could not be had or used, and what a client is told of it: only
//! that PostgreSQL is busy or unavailable; the reason (a host, a login failure) is logged.

use std::time::Duration;

use crate::errors::{code, UserFacing};
use crate::wire::WireError;

/// Why a server connection could not be had or used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("all {0} server connections are busy")]
    PoolTimeout(usize),
    #[error("{what} already holds {cap} server connections, its cap ({key})")]
    TenantCap {
        key: &'static str,
        what: String,
        cap: usize,
    },
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("PostgreSQL said {code}: {message}")]
    Rejected { code: String, message: String },
    #[error("upstream asks for a password but the upstream URL has none")]
    PasswordRequired,
    #[error("unsupported upstream authentication method {0}")]
    UnsupportedAuth(String),
    #[error("SCRAM with PostgreSQL failed: {0}")]
    Scram(crate::scram::ScramError),
    #[error("unexpected message from PostgreSQL")]
    Protocol,
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("TLS with PostgreSQL: {0}")]
    Tls(String),
}

impl UserFacing for UpstreamError {
    fn sqlstate(&self) -> &'static str {
        match self {
            UpstreamError::PoolTimeout(_) | UpstreamError::TenantCap { .. } => {
                code::TOO_MANY_CONNECTIONS
            }
            _ => code::CONNECTION_FAILURE,
        }
    }
    fn client_message(&self) -> String {
        match self {
            UpstreamError::PoolTimeout(_) | UpstreamError::TenantCap { .. } => {
                format!("no PostgreSQL connection available: {self}")
            }
            // What went wrong upstream (a wrong password, the upstream role's name, a host) is
            // the operator's business: it is in the log, the client gets a generic error.
            _ => "upstream unavailable".into(),
        }
    }
}
