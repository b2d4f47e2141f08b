//! Decoding of the replication stream: the CopyData payloads of `START_REPLICATION` (XLogData,
//! primary keepalive) and the pgoutput (protocol version 1) messages inside XLogData. Pure.

/// A replication-protocol CopyData payload from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerCopy<'a> {
    /// `w`: WAL data starting at `start`; `end` is the server's current WAL end.
    XLogData {
        start: u64,
        end: u64,
        data: &'a [u8],
    },
    /// `k`: the server's WAL end and whether it wants a reply now.
    Keepalive { end: u64, reply: bool },
}

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    /// An unchanged TOASTed value (updates only).
    Unchanged,
    Text(String),
}

/// A pgoutput message (only what the cache needs; the rest is `Other`).
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Begin {
        final_lsn: u64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
    },
    Relation {
        id: u32,
        schema: String,
        name: String,
        columns: Vec<String>,
    },
    Insert {
        relation: u32,
        tuple: Vec<Cell>,
    },
    /// `old`: the row before, when the relation's replica identity sends it (`None` for the
    /// default identity when the key did not change).
    Update {
        relation: u32,
        old: Option<OldRow>,
        new: Vec<Cell>,
    },
    Delete {
        relation: u32,
        old: OldRow,
    },
    Truncate {
        relations: Vec<u32>,
    },
    Other(u8),
}

/// The row before an UPDATE or DELETE, as the replica identity sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldRow {
    /// `K`: only the identity key's columns (the others NULL).
    Key(Vec<Cell>),
    /// `O`: the whole row (`REPLICA IDENTITY FULL`).
    Full(Vec<Cell>),
}

/// What went wrong decoding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated replication message")]
    Truncated,
    #[error("unexpected replication message {0:?}")]
    Unexpected(char),
    #[error("invalid text in replication message")]
    Utf8,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(
            self.take(2)?
                .try_into()
                .map_err(|_| DecodeError::Truncated)?,
        ))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| DecodeError::Truncated)?,
        ))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?
                .try_into()
                .map_err(|_| DecodeError::Truncated)?,
        ))
    }
    fn cstr(&mut self) -> Result<String, DecodeError> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated)?;
        let s = std::str::from_utf8(&self.0[..end]).map_err(|_| DecodeError::Utf8)?;
        self.0 = &self.0[end + 1..];
        Ok(s.to_string())
    }
    fn tuple(&mut self) -> Result<Vec<Cell>, DecodeError> {
        let n = self.u16()?;
        (0..n)
            .map(|_| {
                Ok(match self.u8()? {
                    b'n' => Cell::Null,
                    b'u' => Cell::Unchanged,
                    b't' | b'b' => {
                        let len = self.u32()? as usize;
                        let bytes = self.take(len)?;
                        Cell::Text(
                            std::str::from_utf8(bytes)
                                .map_err(|_| DecodeError::Utf8)?
                                .to_string(),
                        )
                    }
                    other => return Err(DecodeError::Unexpected(other as char)),
                })
            })
            .collect()
    }
}

impl Reader<'_> {
    fn old_row(&mut self, kind: u8) -> Result<OldRow, DecodeError> {
        match kind {
            b'K' => Ok(OldRow::Key(self.tuple()?)),
            b'O' => Ok(OldRow::Full(self.tuple()?)),
            other => Err(DecodeError::Unexpected(other as char)),
        }
    }
}

/// Decodes a CopyData payload of the replication stream.
pub fn server_copy(payload: &[u8]) -> Result<ServerCopy<'_>, DecodeError> {
    let mut r = Reader(payload);
    match r.u8()? {
        b'w' => {
            let start = r.u64()?;
            let end = r.u64()?;
            r.u64()?; // send time
            Ok(ServerCopy::XLogData {
                start,
                end,
                data: r.0,
            })
        }
        b'k' => {
            let end = r.u64()?;
            r.u64()?;
            Ok(ServerCopy::Keepalive {
                end,
                reply: r.u8()? == 1,
            })
        }
        other => Err(DecodeError::Unexpected(other as char)),
    }
}

/// Decodes one pgoutput message.
pub fn message(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader(data);
    let tag = r.u8()?;
    Ok(match tag {
        b'B' => {
            let final_lsn = r.u64()?;
            r.u64()?;
            Message::Begin {
                final_lsn,
                xid: r.u32()?,
            }
        }
        b'C' => {
            r.u8()?;
            let commit_lsn = r.u64()?;
            let end_lsn = r.u64()?;
            Message::Commit {
                commit_lsn,
                end_lsn,
            }
        }
        b'R' => {
            let id = r.u32()?;
            let schema = r.cstr()?;
            let name = r.cstr()?;
            r.u8()?; // replica identity
            let n = r.u16()?;
            let mut columns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                r.u8()?; // flags
                columns.push(r.cstr()?);
                r.u32()?; // type oid
                r.u32()?; // typmod
            }
            Message::Relation {
                id,
                schema,
                name,
                columns,
            }
        }
        b'I' => {
            let relation = r.u32()?;
            if r.u8()? != b'N' {
                return Err(DecodeError::Unexpected('I'));
            }
            Message::Insert {
                relation,
                tuple: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let mut kind = r.u8()?;
            let old = match kind {
                b'K' | b'O' => {
                    let old = r.old_row(kind)?;
                    kind = r.u8()?;
                    Some(old)
                }
                _ => None,
            };
            if kind != b'N' {
                return Err(DecodeError::Unexpected('U'));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            let kind = r.u8()?;
            Message::Delete {
                relation,
                old: r.old_row(kind)?,
            }
        }
        b'T' => {
            let n = r.u32()?;
            r.u8()?;
            Message::Truncate {
                relations: (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?,
            }
        }
        other => Message::Other(other),
    })
}

/// A standby status update acknowledging `lsn` as written, flushed and applied.
pub fn status_update(lsn: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(34);
    b.push(b'r');
    for _ in 0..3 {
        b.extend_from_slice(&lsn.to_be_bytes());
    }
    b.extend_from_slice(&pg_now_micros().to_be_bytes());
    b.push(0);
    b
}

/// Microseconds since 2000-01-01, PostgreSQL's epoch.
fn pg_now_micros() -> i64 {
    const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (unix.as_micros() as i64) - (PG_EPOCH_UNIX_SECS as i64) * 1_000_000
}

/// Parses an LSN as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Formats an LSN as PostgreSQL does.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("nope"), None);
    }

    fn relation_bytes() -> Vec<u8> {
        let mut b = vec![b'R'];
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(b"public\0inventory_ledger\0d");
        b.extend_from_slice(&2u16.to_be_bytes());
        for name in ["item_id", "lot_id"] {
            b.push(0);
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&25u32.to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
        }
        b
    }

    #[test]
    fn decodes_relation_insert_and_commit() {
        assert_eq!(
            message(&relation_bytes()).unwrap(),
            Message::Relation {
                id: 7,
                schema: "public".into(),
                name: "inventory_ledger".into(),
                columns: vec!["item_id".into(), "lot_id".into()]
            }
        );
        let mut ins = vec![b'I'];
        ins.extend_from_slice(&7u32.to_be_bytes());
        ins.push(b'N');
        ins.extend_from_slice(&2u16.to_be_bytes());
        ins.push(b't');
        ins.extend_from_slice(&2u32.to_be_bytes());
        ins.extend_from_slice(b"i1");
        ins.push(b'n');
        assert_eq!(
            message(&ins).unwrap(),
            Message::Insert {
                relation: 7,
                tuple: vec![Cell::Text("i1".into()), Cell::Null]
            }
        );
        let mut c = vec![b'C', 0];
        c.extend_from_slice(&5u64.to_be_bytes());
        c.extend_from_slice(&9u64.to_be_bytes());
        c.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(
            message(&c).unwrap(),
            Message::Commit {
                commit_lsn: 5,
                end_lsn: 9
            }
        );
        assert_eq!(message(&ins[..8]), Err(DecodeError::Truncated));
    }

    fn tuple_bytes(cells: &[Option<&str>]) -> Vec<u8> {
        let mut b = (cells.len() as u16).to_be_bytes().to_vec();
        for c in cells {
            match c {
                None => b.push(b'n'),
                Some(v) => {
                    b.push(b't');
                    b.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn decodes_updates_and_deletes_with_and_without_the_old_row() {
        let text = |v: &str| Cell::Text(v.into());
        let mut full = vec![b'U'];
        full.extend_from_slice(&7u32.to_be_bytes());
        full.push(b'O');
        full.extend(tuple_bytes(&[Some("i1"), None]));
        full.push(b'N');
        full.extend(tuple_bytes(&[Some("i2"), Some("L")]));
        assert_eq!(
            message(&full).unwrap(),
            Message::Update {
                relation: 7,
                old: Some(OldRow::Full(vec![text("i1"), Cell::Null])),
                new: vec![text("i2"), text("L")],
            }
        );
        let mut plain = vec![b'U'];
        plain.extend_from_slice(&7u32.to_be_bytes());
        plain.push(b'N');
        plain.extend(tuple_bytes(&[Some("i2"), None]));
        assert_eq!(
            message(&plain).unwrap(),
            Message::Update {
                relation: 7,
                old: None,
                new: vec![text("i2"), Cell::Null],
            }
        );
        let mut del = vec![b'D'];
        del.extend_from_slice(&7u32.to_be_bytes());
        del.push(b'K');
        del.extend(tuple_bytes(&[Some("i1"), None]));
        assert_eq!(
            message(&del).unwrap(),
            Message::Delete {
                relation: 7,
                old: OldRow::Key(vec![text("i1"), Cell::Null]),
            }
        );
        assert_eq!(
            message(&full[..full.len() - 3]),
            Err(DecodeError::Truncated)
        );
        del[5] = b'X';
        assert_eq!(message(&del), Err(DecodeError::Unexpected('X')));
    }

    #[test]
    fn decodes_copy_payloads() {
        let mut k = vec![b'k'];
        k.extend_from_slice(&42u64.to_be_bytes());
        k.extend_from_slice(&0u64.to_be_bytes());
        k.push(1);
        assert_eq!(
            server_copy(&k).unwrap(),
            ServerCopy::Keepalive {
                end: 42,
                reply: true
            }
        );
        let mut w = vec![b'w'];
        w.extend_from_slice(&1u64.to_be_bytes());
        w.extend_from_slice(&2u64.to_be_bytes());
        w.extend_from_slice(&0u64.to_be_bytes());
        w.extend_from_slice(b"B");
        assert_eq!(
            server_copy(&w).unwrap(),
            ServerCopy::XLogData {
                start: 1,
                end: 2,
                data: b"B"
            }
        );
        assert_eq!(status_update(3).len(), 34);
    }
}
