//! Which client batches may run on a multiplexed server connection (`upstream::mux`): the
//! complete messages waiting from the client end in Query or Sync, and every statement they
//! run is `sql::Summary::batchable`, so the batch is a run of implicit transactions that leaves
//! no session state and no open transaction behind.

use super::Session;
use crate::config::PoolMode;
use crate::wire;

/// A batch that may go to a multiplexed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Share {
    /// Every statement only reads (`sql::Summary::read_only`): it may run in a group.
    pub read_only: bool,
}

impl Session<'_> {
    /// Whether every complete message in the client buffer may go to a multiplexed connection.
    pub(super) fn batch_is_shareable(&self) -> Option<Share> {
        if self.state.config.upstream.multiplex == 0
            || self.mode != PoolMode::Transaction
            || self.server.is_some()
            || self.status != b'I'
            || !self.pending.is_empty()
            || self.skipping
            || self.copy_in
            || !self.to_server.is_empty()
        {
            return None;
        }
        let mut parsed: Vec<(&[u8], bool)> = Vec::new();
        let mut read_only = true;
        let mut last = 0u8;
        let mut msgs = wire::frames(&self.cbuf);
        for (tag, body) in msgs.by_ref() {
            last = tag;
            let summary = match tag {
                b'Q' => cstr(body).and_then(|(q, _)| summarize(q)),
                b'P' => cstr(body).and_then(|(name, rest)| {
                    let s = summarize(cstr(rest)?.0)?;
                    parsed.push((name, s.read_only));
                    Some(s)
                }),
                b'B' => cstr(body)
                    .and_then(|(_portal, rest)| cstr(rest))
                    .and_then(|(stmt, _)| self.bound_statement(stmt, &parsed)),
                b'D' | b'E' | b'C' | b'S' => Some(Summary {
                    batchable: true,
                    read_only: true,
                }),
                _ => None,
            };
            let summary = summary.filter(|s| s.batchable)?;
            read_only &= summary.read_only;
        }
        if !msgs.at_end() {
            return None; // a message still arriving
        }
        matches!(last, b'Q' | b'S').then_some(Share { read_only })
    }

    /// What a Bind in the batch runs: a statement parsed earlier in it (the last one of that
    /// name), or one the client prepared before.
    fn bound_statement(&self, stmt: &[u8], parsed: &[(&[u8], bool)]) -> Option<Summary> {
        if let Some(&(_, read_only)) = parsed.iter().rev().find(|(n, _)| *n == stmt) {
            return Some(Summary {
                batchable: true,
                read_only,
            });
        }
        let s = self.statements.get(std::str::from_utf8(stmt).ok()?)?;
        Some(Summary {
            batchable: s.batchable,
            read_only: s.read_only,
        })
    }
}

/// The two facts about a statement that decide sharing.
struct Summary {
    batchable: bool,
    read_only: bool,
}

fn summarize(sql: &[u8]) -> Option<Summary> {
    let s = crate::sql::summarize(std::str::from_utf8(sql).ok()?);
    Some(Summary {
        batchable: s.batchable,
        read_only: s.read_only,
    })
}

/// A NUL-terminated string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}
