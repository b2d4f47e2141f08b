//! Which client batches may run on a multiplexed server connection (`upstream::mux`): the
//! complete messages waiting from the client end in Query or Sync, and every statement they
//! run is `sql::Summary::batchable`, so the batch is a run of implicit transactions that leaves
//! no session state and no open transaction behind.

use super::Session;
use crate::config::PoolMode;
use crate::wire;

impl Session<'_> {
    /// Whether every complete message in the client buffer may go to a multiplexed connection.
    pub(super) fn batch_is_shareable(&self) -> bool {
        if self.state.config.upstream.multiplex == 0
            || self.mode != PoolMode::Transaction
            || self.server.is_some()
            || self.status != b'I'
            || !self.pending.is_empty()
            || self.skipping
            || self.copy_in
            || !self.to_server.is_empty()
        {
            return false;
        }
        let mut parsed: Vec<&[u8]> = Vec::new();
        let mut last = 0u8;
        let mut msgs = wire::frames(&self.cbuf);
        for (tag, body) in msgs.by_ref() {
            last = tag;
            let ok = match tag {
                b'Q' => cstr(body).is_some_and(|(q, _)| batchable(q)),
                b'P' => {
                    cstr(body).and_then(|(name, rest)| {
                        let (q, _) = cstr(rest)?;
                        parsed.push(name);
                        Some(batchable(q))
                    }) == Some(true)
                }
                b'B' => cstr(body)
                    .and_then(|(_portal, rest)| cstr(rest))
                    .is_some_and(|(stmt, _)| {
                        parsed.contains(&stmt)
                            || std::str::from_utf8(stmt)
                                .ok()
                                .and_then(|n| self.statements.get(n))
                                .is_some_and(|s| s.batchable)
                    }),
                b'D' | b'E' | b'C' | b'S' => true,
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        if !msgs.at_end() {
            return false; // a message still arriving
        }
        matches!(last, b'Q' | b'S')
    }
}

fn batchable(sql: &[u8]) -> bool {
    std::str::from_utf8(sql).is_ok_and(|q| crate::sql::summarize(q).batchable)
}

/// A NUL-terminated string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}
