//! The queue of responses a session expects from its server connection, in protocol order,
//! and what to do with each server message: forward it, swallow it, or complete an entry.
//!
//! Why a queue: Orgwall answers some messages itself (a Parse of a statement the server already
//! has, a Close of a pooled statement, refusals) and injects others (re-preparing a statement on
//! a different server connection, replaying settings). Those answers must reach the client in
//! exactly the order PostgreSQL would have produced them.

use bytes::BytesMut;

use crate::sql::SessionEffect;

/// One expected response (or group of responses).
#[derive(Debug)]
pub enum Pending {
    /// A simple Query; everything up to ReadyForQuery belongs to it. `effects`: its `SET`s
    /// and `RESET`s not yet confirmed, in order.
    Query {
        effects: Vec<SessionEffect>,
    },
    /// A Parse; `forward = false` for one Orgwall injected (its ParseComplete is swallowed).
    /// `server_name` is forgotten from the statement cache if the Parse fails.
    Parse {
        server_name: Option<String>,
        forward: bool,
    },
    Bind,
    /// Describe of a statement: ParameterDescription, then RowDescription or NoData.
    DescribeStatement,
    /// Describe of a portal: RowDescription or NoData.
    DescribePortal,
    /// Execute: rows/copy traffic until CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute {
        effect: Option<SessionEffect>,
    },
    Close,
    /// A Close Orgwall sent before preparing a statement: of the same name on a multiplexed
    /// connection, or of the `evicted` one on a full connection (which is still prepared if
    /// PostgreSQL skips the Close).
    CloseQuietly {
        evicted: Option<String>,
    },
    Sync,
    /// Orgwall's settings replay: every response is swallowed, except ParameterStatus when
    /// `report` (a replay after the client's own `RESET`, whose reports it has seen).
    Settings {
        report: bool,
    },
    /// Orgwall setting the tenant context (`boundary::put_set_context`): every response is
    /// swallowed; `synced` when it ends with its own Sync (and ReadyForQuery). `closes`: the
    /// CloseComplete messages still to come (the last one ends an unsynced entry).
    Context {
        synced: bool,
        closes: u8,
    },
    /// A deliberately failing statement standing in for a refused one, so PostgreSQL aborts the
    /// transaction exactly as it would have; its ErrorResponse is replaced by `error`.
    Refused {
        error: BytesMut,
        simple: bool,
    },
    /// A response Orgwall produces itself, sent when it reaches the head of the queue.
    Synthetic(BytesMut),
    /// Marks where the client ended a COPY (CopyDone/CopyFail); expects no response.
    CopyEnd,
    /// A tenant's COPY FROM STDIN run as its expansion (`copy_in.rs`): everything up to
    /// ReadyForQuery, which is swallowed when `extended` (an Execute; the client's Sync gets
    /// its own).
    CopyIn {
        extended: bool,
    },
}

/// What the session does with one server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    Swallow,
    /// Forward, and the head entry is complete.
    ForwardPop,
    /// Swallow, and the head entry is complete.
    SwallowPop,
    /// An ErrorResponse: see `Session::on_server_error`.
    Error,
    /// ReadyForQuery completing the head entry; forward unless `swallow`.
    Ready {
        swallow: bool,
    },
    /// A message that fits no expectation (logged; forwarded).
    Unexpected,
}

impl Pending {
    /// Orgwall's own statements (settings' replay, tenant context): their answers are
    /// swallowed, and nothing in them is the client's.
    pub fn is_orgwalls(&self) -> bool {
        matches!(self, Pending::Settings { .. } | Pending::Context { .. })
    }
}

/// Decides what to do with a server message of type `tag`, given the head of the queue.
pub fn classify(head: Option<&Pending>, tag: u8) -> Action {
    use Action::*;
    let swallowing = head.is_some_and(Pending::is_orgwalls);
    match tag {
        b'E' => return Error,
        b'S' if matches!(head, Some(Pending::Settings { report: true })) => return Forward,
        b'N' | b'A' | b'S' => return if swallowing { Swallow } else { Forward },
        _ => {}
    }
    let Some(head) = head else { return Unexpected };
    match (head, tag) {
        (Pending::Settings { .. }, b'Z') => Ready { swallow: true },
        (Pending::Settings { .. }, _) => Swallow,
        (Pending::Context { synced: true, .. }, b'Z') => Ready { swallow: true },
        // (`closes` already counts this one: see `Session::on_server_message`.)
        (
            Pending::Context {
                synced: false,
                closes: 0,
            },
            b'3',
        ) => SwallowPop,
        (Pending::Context { .. }, b'1' | b'2' | b'3' | b'D' | b'C') => Swallow,
        (Pending::Query { .. } | Pending::Sync | Pending::Refused { simple: true, .. }, b'Z') => {
            Ready { swallow: false }
        }
        (Pending::Query { .. }, _) => Forward,
        (Pending::Parse { forward: true, .. }, b'1') => ForwardPop,
        (Pending::Parse { forward: false, .. }, b'1') => SwallowPop,
        (Pending::Bind, b'2') | (Pending::Close, b'3') => ForwardPop,
        (Pending::CloseQuietly { .. }, b'3') => SwallowPop,
        (Pending::DescribeStatement, b't') => Forward,
        (Pending::DescribeStatement | Pending::DescribePortal, b'T' | b'n') => ForwardPop,
        (Pending::Execute { .. }, b'C' | b'I' | b's') => ForwardPop,
        (Pending::Execute { .. }, _) => Forward,
        (Pending::CopyIn { extended }, b'Z') => Ready { swallow: *extended },
        (Pending::CopyIn { .. }, _) => Forward,
        _ => Unexpected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    #[test]
    fn server_messages_map_to_actions() {
        let q = Pending::Query { effects: vec![] };
        let cases: Vec<(Option<Pending>, u8, Action)> = vec![
            (Some(Pending::Query { effects: vec![] }), b'D', Forward),
            (
                Some(Pending::Query { effects: vec![] }),
                b'Z',
                Ready { swallow: false },
            ),
            (
                Some(Pending::Parse {
                    server_name: None,
                    forward: true,
                }),
                b'1',
                ForwardPop,
            ),
            (
                Some(Pending::Parse {
                    server_name: None,
                    forward: false,
                }),
                b'1',
                SwallowPop,
            ),
            (Some(Pending::Bind), b'2', ForwardPop),
            (
                Some(Pending::CloseQuietly { evicted: None }),
                b'3',
                SwallowPop,
            ),
            (Some(Pending::DescribeStatement), b't', Forward),
            (Some(Pending::DescribeStatement), b'n', ForwardPop),
            (Some(Pending::DescribePortal), b'T', ForwardPop),
            (Some(Pending::Execute { effect: None }), b'D', Forward),
            (Some(Pending::Execute { effect: None }), b'G', Forward),
            (Some(Pending::Execute { effect: None }), b's', ForwardPop),
            (Some(Pending::Settings { report: false }), b'S', Swallow),
            (Some(Pending::Settings { report: true }), b'S', Forward),
            (Some(Pending::Settings { report: true }), b'N', Swallow),
            (Some(Pending::Settings { report: true }), b'C', Swallow),
            (
                Some(Pending::Settings { report: false }),
                b'Z',
                Ready { swallow: true },
            ),
            (Some(Pending::Sync), b'N', Forward),
            (
                Some(Pending::Context {
                    synced: false,
                    closes: 1,
                }),
                b'3',
                Swallow,
            ),
            (
                Some(Pending::Context {
                    synced: false,
                    closes: 0,
                }),
                b'3',
                SwallowPop,
            ),
            (
                Some(Pending::Context {
                    synced: true,
                    closes: 0,
                }),
                b'3',
                Swallow,
            ),
            (
                Some(Pending::Context {
                    synced: true,
                    closes: 0,
                }),
                b'Z',
                Ready { swallow: true },
            ),
            (
                Some(Pending::Context {
                    synced: true,
                    closes: 2,
                }),
                b'D',
                Swallow,
            ),
            (Some(Pending::Bind), b'E', Error),
            (Some(Pending::CopyIn { extended: true }), b'G', Forward),
            (
                Some(Pending::CopyIn { extended: true }),
                b'Z',
                Ready { swallow: true },
            ),
            (
                Some(Pending::CopyIn { extended: false }),
                b'Z',
                Ready { swallow: false },
            ),
            (Some(Pending::Bind), b'Z', Unexpected),
            (None, b'D', Unexpected),
        ];
        drop(q);
        for (head, tag, want) in cases {
            assert_eq!(
                classify(head.as_ref(), tag),
                want,
                "{head:?} {}",
                tag as char
            );
        }
    }
}
