//! The encoding of the SQL text clients send. Orgwall reads SQL as UTF-8: text that is not is
//! refused as PostgreSQL refuses it, except from an admin login whose `client_encoding` is
//! another encoding, whose SQL passes through as written (PostgreSQL converts it; Orgwall's own
//! reading of it is a lossy UTF-8 copy, never sent).

use std::borrow::Cow;

use super::error::SessionError;
use super::{ClientIo, Session};
use crate::config::Role;
use crate::errors::ClientError;

impl<S: ClientIo> Session<'_, S> {
    /// An admin login whose `client_encoding` is not UTF8 sends SQL in that encoding: it passes
    /// through as written (PostgreSQL converts it). Tenant logins are held to UTF8.
    pub(super) fn passes_other_encodings(&self) -> bool {
        self.principal.role == Role::Admin && !self.settings.client_text_is_utf8()
    }

    /// The SQL of a Query or Parse as Orgwall reads it: borrowed when it is UTF-8; a lossy
    /// copy (`Cow::Owned`) for an admin login in another client encoding, whose bytes are then
    /// sent as written; refused (22021, as PostgreSQL does) otherwise — a decoder would replace
    /// the bad bytes with U+FFFD and Orgwall would confine and forward text never sent.
    pub(super) fn sql_text<'t>(&self, sql: &'t [u8]) -> Result<Cow<'t, str>, ClientError> {
        match std::str::from_utf8(sql) {
            Ok(t) => Ok(Cow::Borrowed(t)),
            Err(_) if self.passes_other_encodings() => Ok(String::from_utf8_lossy(sql)),
            Err(_) => Err(SessionError::NotUtf8.into()),
        }
    }
}
