//! The transaction status PostgreSQL last reported (ReadyForQuery), named.

/// Where the client's transaction stands, as of the last ReadyForQuery (or Orgwall's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum TxnStatus {
    /// `I`: not in a transaction block.
    #[default]
    Idle,
    /// `T`: in a transaction block.
    InBlock,
    /// `E`: in a failed transaction block; statements are refused until it ends.
    Failed,
}

impl TxnStatus {
    /// The status a ReadyForQuery frame reports (a byte PostgreSQL never sends reads as idle,
    /// as `wire::put_ready` writes it).
    pub(super) fn of_ready(frame: &[u8]) -> TxnStatus {
        match crate::wire::ready_status(frame) {
            b'T' => TxnStatus::InBlock,
            b'E' => TxnStatus::Failed,
            _ => TxnStatus::Idle,
        }
    }

    /// The ReadyForQuery byte for it.
    pub(super) fn byte(self) -> u8 {
        match self {
            TxnStatus::Idle => b'I',
            TxnStatus::InBlock => b'T',
            TxnStatus::Failed => b'E',
        }
    }

    /// Inside a transaction block, failed or not.
    pub(super) fn in_block(self) -> bool {
        self != TxnStatus::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_for_query_round_trips() {
        for status in [TxnStatus::Idle, TxnStatus::InBlock, TxnStatus::Failed] {
            let mut frame = bytes::BytesMut::new();
            crate::wire::put_ready(&mut frame, status.byte());
            assert_eq!(TxnStatus::of_ready(&frame), status);
        }
        assert_eq!(TxnStatus::of_ready(b"Z\0\0\0\x05X"), TxnStatus::Idle);
        assert!(TxnStatus::Failed.in_block() && !TxnStatus::Idle.in_block());
    }
}
