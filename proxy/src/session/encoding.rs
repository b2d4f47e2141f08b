//! The encoding of the SQL text clients send. Orgwall reads SQL as UTF-8: text that is not is
//! refused as PostgreSQL refuses it, except from an admin login whose `client_encoding` is
//! another encoding, whose SQL passes through as written (PostgreSQL converts it; Orgwall's own
//! reading of it is a lossy UTF-8 copy, never sent).

use super::error::SessionError;
use super::Session;
use crate::config::Role;
use crate::errors::ClientError;

impl Session<'_> {
    /// An admin login whose `client_encoding` is not UTF8 sends SQL in that encoding: it passes
    /// through as written (PostgreSQL converts it). Tenant logins are held to UTF8.
    pub(super) fn passes_other_encodings(&self) -> bool {
        self.principal.role == Role::Admin && !self.settings.client_text_is_utf8()
    }
}

/// The `i`-th NUL-terminated string of a message's body.
pub(super) fn nth_string(frame: &[u8], i: usize) -> Option<&[u8]> {
    frame.get(5..)?.split(|&b| b == 0).nth(i)
}

/// Refuses (22021, as PostgreSQL does) a message whose first `n` strings are not UTF-8: the
/// codec would replace the bad bytes with U+FFFD and Orgwall would then confine and forward
/// text the client never sent.
pub(super) fn text_is_utf8(frame: &[u8], n: usize) -> Result<(), ClientError> {
    let mut rest = frame.get(5..).unwrap_or_default();
    for _ in 0..n {
        let Some(end) = rest.iter().position(|&c| c == 0) else {
            return Ok(()); // malformed: the decoder says so
        };
        if std::str::from_utf8(&rest[..end]).is_err() {
            return Err(SessionError::NotUtf8.into());
        }
        rest = &rest[end + 1..];
    }
    Ok(())
}
