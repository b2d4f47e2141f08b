//! Which client batches may run on a multiplexed server connection (`upstream::mux`): the
//! complete messages waiting from the client end in Query or Sync, and every statement they
//! run is `sql::Summary::batchable`, so the batch is a run of implicit transactions that leaves
//! no session state and no open transaction behind.

use super::Session;
use crate::config::PoolMode;
use crate::wire;

/// How statements may use a multiplexed connection (from `sql::Summary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sharing {
    /// May share a connection (`sql::Summary::batchable`).
    pub batchable: bool,
    /// Certainly only reads (`sql::Summary::read_only`): may run in a group.
    pub read_only: bool,
}

impl Sharing {
    pub(super) fn of(s: &crate::sql::Summary) -> Sharing {
        Sharing {
            batchable: s.batchable,
            read_only: s.read_only,
        }
    }
}

/// The SQL texts of the client's waiting batch, classified once: `route_sql` finds them here.
pub(super) type Summaries = Vec<(String, crate::sql::Summary)>;

impl Session<'_> {
    /// Whether every complete message in the client buffer may go to a multiplexed connection;
    /// records each SQL text it classifies in `memo`.
    pub(super) fn batch_is_shareable(&self, memo: &mut Summaries) -> Option<Sharing> {
        if self.state.config.upstream.multiplex == 0
            || self.mode != PoolMode::Transaction
            || self.server.is_some()
            || !self.settled()
            || self.skipping
            || self.copy_in
            || !self.to_server.is_empty()
        {
            return None;
        }
        let mut parsed: Vec<(&[u8], bool)> = Vec::new();
        let mut read_only = true;
        // Extended-protocol messages since the last Sync: a batch is a run of whole units,
        // each one Query or extended messages ending in Sync. A Query behind unsynced
        // extended messages is skipped by PostgreSQL if they fail, and the answers on the
        // shared connection would then belong to the wrong batches.
        let mut open_extended = false;
        let mut any = false;
        let mut msgs = wire::frames(&self.cbuf);
        for (tag, body) in msgs.by_ref() {
            if !wire::well_formed_client(tag, body) {
                return None;
            }
            any = true;
            open_extended = match tag {
                b'Q' if open_extended => return None,
                b'Q' | b'S' => false,
                _ => true,
            };
            let sharing = match tag {
                b'Q' => cstr(body).and_then(|(q, _)| summarize(q, memo)),
                b'P' => cstr(body).and_then(|(name, rest)| {
                    let s = summarize(cstr(rest)?.0, memo)?;
                    parsed.push((name, s.read_only));
                    Some(s)
                }),
                b'B' => cstr(body)
                    .and_then(|(_portal, rest)| cstr(rest))
                    .and_then(|(stmt, _)| self.bound_statement(stmt, &parsed)),
                b'D' | b'E' | b'C' | b'S' => Some(Sharing {
                    batchable: true,
                    read_only: true,
                }),
                _ => None,
            };
            let sharing = sharing.filter(|s| s.batchable)?;
            read_only &= sharing.read_only;
        }
        if !msgs.at_end() {
            return None; // a message still arriving
        }
        (any && !open_extended).then_some(Sharing {
            batchable: true,
            read_only,
        })
    }

    /// What a Bind in the batch runs: a statement parsed earlier in it (the last one of that
    /// name), or one the client prepared before.
    fn bound_statement(&self, stmt: &[u8], parsed: &[(&[u8], bool)]) -> Option<Sharing> {
        if let Some(&(_, read_only)) = parsed.iter().rev().find(|(n, _)| *n == stmt) {
            return Some(Sharing {
                batchable: true,
                read_only,
            });
        }
        Some(
            self.statements
                .get(std::str::from_utf8(stmt).ok()?)?
                .sharing,
        )
    }
}

fn summarize(sql: &[u8], memo: &mut Summaries) -> Option<Sharing> {
    let text = std::str::from_utf8(sql).ok()?;
    let s = crate::sql::summarize(text);
    let sharing = Sharing::of(&s);
    memo.push((text.to_string(), s));
    Some(sharing)
}

/// A NUL-terminated string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}
