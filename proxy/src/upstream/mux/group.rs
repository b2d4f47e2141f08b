//! Read-only statements of several clients run in one implicit transaction: the shape of a
//! batch that may join such a group, and where one member's answer ends.
//!
//! PostgreSQL flushes its output at every Sync: for a short lookup that `send` is about a third
//! of the backend's CPU (perf, pgbench -S prepared). When several clients' batches reach a
//! multiplexed connection together, a batch that is one read-only statement ([`fits`], and the
//! session vouched for the SQL, `sql::Summary::read_only`) is written without its Sync; the
//! group's last member (at most `[upstream] group_reads`) keeps it. PostgreSQL then runs the
//! members one after another in one implicit transaction and answers them in one flush.
//!
//! Why this is invisible to the clients: under READ COMMITTED every statement takes its own
//! snapshot, so a member sees exactly what it would alone; every member was received before
//! the group was written, so none can miss a commit its client had already seen; and a read-only
//! statement's result does not depend on whether its transaction later commits, so each member's
//! answer is passed on as soon as it arrives, ended by a ReadyForQuery Orgwall makes. When a
//! member fails, PostgreSQL skips the rest of the group up to the Sync: those members never ran
//! and are written again. The cost: a member's answer leaves PostgreSQL with the group's, so it
//! waits for the members after it.

/// Sync, as the client sent it and as the group's last member keeps it.
pub(super) const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// Whether `buf` is one statement run to completion: `[Parse] Bind [Describe] Execute Sync`,
/// with the Execute asking for every row (a suspended portal would not survive the group).
pub(super) fn fits(buf: &[u8]) -> bool {
    let mut msgs = crate::wire::frames(buf);
    let mut next = msgs.next();
    if let Some((b'P', _)) = next {
        next = msgs.next();
    }
    let Some((b'B', _)) = next else {
        return false;
    };
    next = msgs.next();
    if let Some((b'D', _)) = next {
        next = msgs.next();
    }
    let Some((b'E', body)) = next else {
        return false;
    };
    if !execute_all_rows(body) {
        return false;
    }
    matches!(msgs.next(), Some((b'S', _))) && msgs.next().is_none() && msgs.at_end()
}

/// An Execute body (portal name, row limit) whose limit is 0 (all rows).
fn execute_all_rows(body: &[u8]) -> bool {
    let Some(end) = body.iter().position(|&c| c == 0) else {
        return false;
    };
    body.get(end + 1..) == Some(&[0, 0, 0, 0][..])
}

/// How a message bears on a member whose Sync was not written.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Member {
    /// Part of its answer.
    Continues,
    /// Its Execute completed: the last message of its answer.
    Completed,
    /// It failed: the last message of its answer; PostgreSQL skips the rest of the group.
    Failed,
    /// The group ended without it running (a ReadyForQuery reached it).
    NotRun,
}

/// Classifies a message from the server for the group member at the head of the queue.
pub(super) fn member(tag: u8) -> Member {
    match tag {
        b'C' | b'I' | b's' => Member::Completed,
        b'E' => Member::Failed,
        b'Z' => Member::NotRun,
        _ => Member::Continues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        wire::frame(tag, body).to_vec()
    }

    #[test]
    fn only_one_statement_run_to_completion_fits_a_group() {
        let p = msg(b'P', b"s1\0select 1\0\0\0");
        let b = msg(b'B', b"\0s1\0\0\0\0\0\0\0");
        let d = msg(b'D', b"P\0");
        let e = msg(b'E', b"\0\0\0\0\0");
        let limited = msg(b'E', b"\0\0\0\0\x0a");
        let s = SYNC.to_vec();
        let q = msg(b'Q', b"select 1\0");
        let close = msg(b'C', b"Ss1\0");
        let h = msg(b'H', b"");
        let cases: &[(&[&[u8]], bool)] = &[
            (&[&b, &e, &s], true),
            (&[&p, &b, &e, &s], true),
            (&[&p, &b, &d, &e, &s], true),
            (&[&b, &d, &e, &s], true),
            (&[&b, &limited, &s], false),
            (&[&b, &e], false),
            (&[&b, &e, &s, &b, &e, &s], false),
            (&[&b, &e, &e, &s], false),
            (&[&p, &s], false),
            (&[&q], false),
            (&[&close, &p, &b, &e, &s], false),
            (&[&b, &h, &e, &s], false),
            (&[&d, &b, &e, &s], false),
        ];
        for (parts, want) in cases {
            let buf = parts.concat();
            assert_eq!(fits(&buf), *want, "{:?}", String::from_utf8_lossy(&buf));
        }
        let whole = [b.clone(), e.clone(), s.clone()].concat();
        assert!(!fits(&whole[..whole.len() - 1]), "cut short");
    }

    #[test]
    fn a_member_s_answer_ends_at_its_completion_or_error() {
        assert_eq!(member(b'2'), Member::Continues);
        assert_eq!(member(b'T'), Member::Continues);
        assert_eq!(member(b'D'), Member::Continues);
        assert_eq!(member(b'N'), Member::Continues);
        assert_eq!(member(b'C'), Member::Completed);
        assert_eq!(member(b'I'), Member::Completed);
        assert_eq!(member(b'E'), Member::Failed);
        assert_eq!(member(b'Z'), Member::NotRun);
    }
}
